// CUTLASS tier, weight gradient: partial sums per split-K slice (see conv2d_cutlass.cuh).
#include "conv2d_cutlass.cuh"

#include <algorithm>

namespace torchconv::cuda {

namespace {

template <typename scalar_t, class Config>
bool wgrad_with(const ConvDesc& d, int64_t slices, const scalar_t* dy, const scalar_t* x,
                float* workspace, cudaStream_t stream) {
  using namespace cutlass_tier;
  using E = typename ElementOf<scalar_t>::type;
  using Kernel = WgradKernel<E, Config>;
  // The kernels write the workspace (dense KRSC), not grad_weight, whatever its layout.
  ConvDesc problem = d;
  const int64_t dense_krsc[4] = {d.R * d.S * d.C, 1, d.S * d.C, d.C};
  std::copy(dense_krsc, dense_krsc + 4, problem.ws);
  if (!tier_applies(problem) || !aligned16(dy) || !aligned16(x) || !aligned16(workspace) ||
      slices > 65535) {
    return false;
  }
  // Slice z's partial sums land at workspace + z * K*R*S*C (CUTLASS's parallel split-K), the
  // layout wgrad_reduce reads.
  const auto partial = packed<float>(workspace, d.K, d.R, d.S, d.C);
  const typename Kernel::Arguments args(problem_size(d, int(slices)),
                                        packed<E>(dy, d.N, d.OH, d.OW, d.K),
                                        packed<E>(x, d.N, d.H, d.W, d.C), partial, partial,
                                        {1.0f, 0.0f}, cutlass::conv::SplitKMode::kParallel);
  const size_t bytes = sizeof(float) * size_t(slices) * size_t(d.K * d.R * d.S * d.C);
  // With several slices CUTLASS clears its workspace first; the partial sums are that
  // workspace, so it is handed over as such (its size must be exactly ours).
  using Op = cutlass::conv::device::ImplicitGemmConvolution<Kernel>;
  if (Op::get_workspace_size(args) != bytes) {
    return false;
  }
  return launch<Kernel>(args, slices > 1 ? workspace : nullptr, bytes, stream);
}

}  // namespace

template <typename scalar_t>
bool wgrad_cutlass(const ConvDesc& d, int64_t slices, const scalar_t* dy, const scalar_t* x,
                   float* workspace, cudaStream_t stream) {
  using E = typename cutlass_tier::ElementOf<scalar_t>::type;
  // GEMM M = output channels
  return d.K <= 64
             ? wgrad_with<scalar_t, cutlass_tier::Short<E>>(d, slices, dy, x, workspace, stream)
             : wgrad_with<scalar_t, cutlass_tier::Wide<E>>(d, slices, dy, x, workspace, stream);
}

template bool wgrad_cutlass<c10::Half>(const ConvDesc&, int64_t, const c10::Half*,
                                       const c10::Half*, float*, cudaStream_t);
template bool wgrad_cutlass<c10::BFloat16>(const ConvDesc&, int64_t, const c10::BFloat16*,
                                           const c10::BFloat16*, float*, cudaStream_t);
template bool wgrad_cutlass<float>(const ConvDesc&, int64_t, const float*, const float*, float*,
                                   cudaStream_t);

}  // namespace torchconv::cuda
