// Tensor-core implicit-GEMM kernels (nvcuda::wmma, sm_80+): Half and BFloat16 with fp32
// accumulation, and float as TF32 (used only when TF32 is allowed for convolutions).
// The kernels are in conv2d_gemm.cuh.
#include "conv2d_gemm.cuh"

namespace torchconv::cuda {
namespace {

// Shared-memory (wmma operand) type of each tensor dtype.
template <typename scalar_t>
struct TcOperand;
template <>
struct TcOperand<c10::Half> {
  using type = __half;
};
template <>
struct TcOperand<c10::BFloat16> {
  using type = __nv_bfloat16;
};
template <>
struct TcOperand<float> {
  using type = float;  // rounded to TF32 in the kernel
};

template <typename scalar_t>
using TcLoop = detail::Tc<typename TcOperand<scalar_t>::type>;

}  // namespace

template <typename scalar_t, typename index_t>
void fprop_tc(const ConvDesc& d, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
              scalar_t* y, cudaStream_t stream) {
  detail::fprop<scalar_t, index_t>(TcLoop<scalar_t>{}, d, x, w, bias, y, stream);
}

template <typename scalar_t, typename index_t>
void dgrad_tc(const ConvDesc& d, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
              cudaStream_t stream) {
  detail::dgrad<scalar_t, index_t>(TcLoop<scalar_t>{}, d, dy, w, dx, stream);
}

template <typename scalar_t, typename index_t>
void wgrad_tc(const ConvDesc& d, const SplitK& split, const scalar_t* dy, const scalar_t* x,
              float* workspace, cudaStream_t stream) {
  detail::wgrad<scalar_t, index_t>(TcLoop<scalar_t>{}, d, split, dy, x, workspace, stream);
}

#define TORCHCONV_TC_INSTANTIATE(scalar_t, index_t)                                           \
  template void fprop_tc<scalar_t, index_t>(const ConvDesc&, const scalar_t*, const scalar_t*, \
                                            const scalar_t*, scalar_t*, cudaStream_t);         \
  template void dgrad_tc<scalar_t, index_t>(const ConvDesc&, const scalar_t*, const scalar_t*, \
                                            scalar_t*, cudaStream_t);                          \
  template void wgrad_tc<scalar_t, index_t>(const ConvDesc&, const SplitK&, const scalar_t*,   \
                                            const scalar_t*, float*, cudaStream_t);

TORCHCONV_TC_INSTANTIATE(c10::Half, int32_t)
TORCHCONV_TC_INSTANTIATE(c10::Half, int64_t)
TORCHCONV_TC_INSTANTIATE(c10::BFloat16, int32_t)
TORCHCONV_TC_INSTANTIATE(c10::BFloat16, int64_t)
TORCHCONV_TC_INSTANTIATE(float, int32_t)
TORCHCONV_TC_INSTANTIATE(float, int64_t)

}  // namespace torchconv::cuda
