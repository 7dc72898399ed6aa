// SIMT implicit-GEMM launchers (every floating and complex dtype), shared by
// conv2d_gemm_simt_real.cu and conv2d_gemm_simt_complex.cu, which instantiate them for their
// dtypes (two translation units so that the device compilation runs in parallel). The kernels
// themselves are in conv2d_gemm.cuh.
#pragma once

#include "conv2d_gemm.cuh"

namespace torchconv::cuda {

template <typename scalar_t, typename index_t>
void fprop_simt(const ConvDesc& d, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                scalar_t* y, cudaStream_t stream) {
  detail::fprop<scalar_t, index_t>(detail::Simt{}, d, x, w, bias, y, stream);
}

template <typename scalar_t, typename index_t>
void dgrad_simt(const ConvDesc& d, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
                cudaStream_t stream) {
  detail::dgrad<scalar_t, index_t>(detail::Simt{}, d, dy, w, dx, stream);
}

template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_simt(const ConvDesc& d, const SplitK& split, const scalar_t* dy, const scalar_t* x,
                acc_t* workspace, cudaStream_t stream) {
  static_assert(std::is_same_v<acc_t, at::opmath_type<scalar_t>>);
  detail::wgrad<scalar_t, index_t>(detail::Simt{}, d, split, dy, x, workspace, stream);
}

#define TORCHCONV_SIMT_INSTANTIATE(scalar_t, index_t)                                         \
  template void fprop_simt<scalar_t, index_t>(const ConvDesc&, const scalar_t*,             \
                                              const scalar_t*, const scalar_t*, scalar_t*,  \
                                              cudaStream_t);                                \
  template void dgrad_simt<scalar_t, index_t>(const ConvDesc&, const scalar_t*,             \
                                              const scalar_t*, scalar_t*, cudaStream_t);    \
  template void wgrad_simt<scalar_t, at::opmath_type<scalar_t>, index_t>(                   \
      const ConvDesc&, const SplitK&, const scalar_t*, const scalar_t*,                     \
      at::opmath_type<scalar_t>*, cudaStream_t);

#define TORCHCONV_SIMT_INSTANTIATE_BOTH(scalar_t) \
  TORCHCONV_SIMT_INSTANTIATE(scalar_t, int32_t)   \
  TORCHCONV_SIMT_INSTANTIATE(scalar_t, int64_t)

}  // namespace torchconv::cuda
