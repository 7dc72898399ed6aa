// CUTLASS tier, forward (see conv2d_cutlass.cuh).
#include "conv2d_cutlass.cuh"

namespace torchconv::cuda {

namespace {

template <typename scalar_t, class Config>
bool fprop_with(const ConvDesc& d, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                scalar_t* y, cudaStream_t stream) {
  using namespace cutlass_tier;
  using E = typename ElementOf<scalar_t>::type;
  using Kernel = FpropKernel<E, Config>;
  if (!tier_applies(d) || !aligned16(x) || !aligned16(w) || !aligned16(y) ||
      (bias != nullptr && !aligned16(bias))) {
    return false;
  }
  const auto out = packed<E>(y, d.N, d.OH, d.OW, d.K);
  // The bias enters as the epilogue's source tensor C with all strides 0 (every output
  // position reads bias[k]), scaled by beta = 1; without a bias C is not read (beta = 0).
  const auto source =
      bias != nullptr
          ? cutlass::TensorRef<E, NHWC>(reinterpret_cast<E*>(const_cast<scalar_t*>(bias)),
                                        NHWC(NHWC::Stride(0)))
          : out;
  const typename Kernel::Arguments args(problem_size(d, 1), packed<E>(x, d.N, d.H, d.W, d.C),
                                        packed<E>(w, d.K, d.R, d.S, d.C), source, out,
                                        {1.0f, bias != nullptr ? 1.0f : 0.0f});
  return launch<Kernel>(args, nullptr, 0, stream);
}

}  // namespace

template <typename scalar_t>
bool fprop_cutlass(const ConvDesc& d, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                   scalar_t* y, cudaStream_t stream) {
  using E = typename cutlass_tier::ElementOf<scalar_t>::type;
  // GEMM N = output channels
  return d.K <= 64 ? fprop_with<scalar_t, cutlass_tier::Narrow<E>>(d, x, w, bias, y, stream)
                   : fprop_with<scalar_t, cutlass_tier::Wide<E>>(d, x, w, bias, y, stream);
}

template bool fprop_cutlass<c10::Half>(const ConvDesc&, const c10::Half*, const c10::Half*,
                                       const c10::Half*, c10::Half*, cudaStream_t);
template bool fprop_cutlass<c10::BFloat16>(const ConvDesc&, const c10::BFloat16*,
                                           const c10::BFloat16*, const c10::BFloat16*,
                                           c10::BFloat16*, cudaStream_t);
template bool fprop_cutlass<float>(const ConvDesc&, const float*, const float*, const float*,
                                   float*, cudaStream_t);

}  // namespace torchconv::cuda
