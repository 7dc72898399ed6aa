// CUTLASS tier, input gradient (see conv2d_cutlass.cuh).
#include "conv2d_cutlass.cuh"

namespace torchconv::cuda {

namespace {

template <typename scalar_t, class Config>
bool dgrad_with(const ConvDesc& d, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
                cudaStream_t stream) {
  using namespace cutlass_tier;
  using E = typename ElementOf<scalar_t>::type;
  if (!tier_applies(d) || !aligned16(dy) || !aligned16(w) || !aligned16(dx)) {
    return false;
  }
  // Where some grad_input rows receive no tap at all (stride larger than the dilated kernel)
  // the problem stays with our kernel, which writes their zeros explicitly; the strided
  // CUTLASS kernel is not relied on for them.
  if (d.sh > (d.R - 1) * d.dh + 1 || d.sw > (d.S - 1) * d.dw + 1) {
    return false;
  }
  const auto out = packed<E>(dx, d.N, d.H, d.W, d.C);
  const auto grad_output = packed<E>(dy, d.N, d.OH, d.OW, d.K);
  const auto weight = packed<E>(w, d.K, d.R, d.S, d.C);
  if (d.sh == 1 && d.sw == 1) {
    using Kernel = DgradKernel<E, Config, cutlass::conv::StrideSupport::kUnity>;
    const typename Kernel::Arguments args(problem_size(d, 1), grad_output, weight, out, out,
                                          {1.0f, 0.0f});
    return launch<Kernel>(args, nullptr, 0, stream);
  }
  using Kernel = DgradKernel<E, Config, cutlass::conv::StrideSupport::kStrided>;
  const typename Kernel::Arguments args(problem_size(d, 1), grad_output, weight, out, out,
                                        {1.0f, 0.0f});
  return launch<Kernel>(args, nullptr, 0, stream);
}

}  // namespace

template <typename scalar_t>
bool dgrad_cutlass(const ConvDesc& d, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
                   cudaStream_t stream) {
  using E = typename cutlass_tier::ElementOf<scalar_t>::type;
  // GEMM N = input channels
  return d.C <= 64 ? dgrad_with<scalar_t, cutlass_tier::Narrow<E>>(d, dy, w, dx, stream)
                   : dgrad_with<scalar_t, cutlass_tier::Wide<E>>(d, dy, w, dx, stream);
}

template bool dgrad_cutlass<c10::Half>(const ConvDesc&, const c10::Half*, const c10::Half*,
                                       c10::Half*, cudaStream_t);
template bool dgrad_cutlass<c10::BFloat16>(const ConvDesc&, const c10::BFloat16*,
                                           const c10::BFloat16*, c10::BFloat16*, cudaStream_t);
template bool dgrad_cutlass<float>(const ConvDesc&, const float*, const float*, float*,
                                   cudaStream_t);

}  // namespace torchconv::cuda
