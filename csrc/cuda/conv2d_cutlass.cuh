// The CUTLASS tier: implicit-GEMM convolutions from CUTLASS's C++ headers (sm_80 tensor-core
// kernels: cp.async multistage pipeline, ldmatrix, mma.sync) for Half / BFloat16, and float as
// TF32 (only where TF32 is allowed, as for the wmma kernel), fp32 accumulation, groups == 1, dense NHWC activations and KRSC weights with channel counts that
// allow 16-byte accesses. Everything else -- and any problem these kernels' can_implement()
// refuses -- runs on torchconv's own kernels (conv2d_gemm.cuh), which the launchers below signal
// by returning false without launching anything.
//
// Why CUTLASS here: a multistage tensor-core pipeline reaches several times the throughput of
// the portable wmma kernel, and CUTLASS's kernels are the maintained, tested form of exactly
// that; the tier choice, layouts, bias, determinism and the fallbacks remain ours.
//
// Determinism: forward and input-gradient kernels run without split-K (one thread block owns
// each output tile and its whole reduction). The weight gradient uses CUTLASS's *parallel*
// split-K: slice z of the N*OH*OW reduction writes its own partial sums to workspace slice z,
// and torchconv's wgrad_reduce adds the slices in slice order. No atomics, no semaphores.
#pragma once

// torch's extension flags hide the half-precision operators that CUTLASS's numeric types use.
#undef __CUDA_NO_HALF_OPERATORS__
#undef __CUDA_NO_HALF_CONVERSIONS__
#undef __CUDA_NO_BFLOAT16_CONVERSIONS__
#undef __CUDA_NO_HALF2_OPERATORS__

#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cutlass/conv/conv2d_problem_size.h>
#include <cutlass/conv/device/implicit_gemm_convolution.h>
#include <cutlass/conv/kernel/default_conv2d_dgrad.h>
#include <cutlass/conv/kernel/default_conv2d_fprop.h>
#include <cutlass/conv/kernel/default_conv2d_wgrad.h>
#include <cutlass/conv/threadblock/threadblock_swizzle.h>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/threadblock/threadblock_swizzle.h>

#include <cstdint>

#include "conv2d_cuda_kernels.h"

namespace torchconv::cuda::cutlass_tier {

using NHWC = cutlass::layout::TensorNHWC;

template <typename scalar_t>
struct ElementOf;
template <>
struct ElementOf<c10::Half> {
  using type = cutlass::half_t;
};
template <>
struct ElementOf<c10::BFloat16> {
  using type = cutlass::bfloat16_t;
};
template <>
struct ElementOf<float> {
  using type = float;  // multiplied as TF32 (m16n8k8 instructions)
};

// Thread-block tiles (M x N x 128 bytes of reduction, four warps, 96 KiB of shared memory for
// the pipeline; m16n8k16 instructions for 16-bit types, m16n8k8 for TF32). Wide is the
// default; a GEMM whose N (forward: K, input gradient: C) is at most 64 takes Narrow, a weight
// gradient with at most 64 output channels (its M) takes Short, so that half of every tile is
// not spent on padding.
template <typename E, int M, int N, int WarpM, int WarpN, int Stages>
struct TileConfig {
  static constexpr int kK = 1024 / cutlass::sizeof_bits<E>::value;
  using Tile = cutlass::gemm::GemmShape<M, N, kK>;
  using Warp = cutlass::gemm::GemmShape<WarpM, WarpN, kK>;
  using Instruction = cutlass::gemm::GemmShape<16, 8, 256 / cutlass::sizeof_bits<E>::value>;
  static constexpr int kStages = Stages;
};
template <typename E>
using Wide = TileConfig<E, 128, 128, 64, 64, 3>;
template <typename E>
using Narrow = TileConfig<E, 128, 64, 64, 32, 4>;
template <typename E>
using Short = TileConfig<E, 64, 128, 32, 64, 4>;
// Channel counts must be multiples of this (16 bytes of 16-bit elements; float needs only 4).
constexpr int kAlignment = 8;

template <typename E>
using StoreEpilogue = cutlass::epilogue::thread::LinearCombination<E, 128 / cutlass::sizeof_bits<E>::value,
                                                                   float, float>;

template <typename E, class Config>
using FpropKernel = typename cutlass::conv::kernel::DefaultConv2dFprop<
    E, NHWC, E, NHWC, E, NHWC, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    typename Config::Tile, typename Config::Warp, typename Config::Instruction, StoreEpilogue<E>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<4>, Config::kStages,
    cutlass::arch::OpMultiplyAdd, cutlass::conv::IteratorAlgorithm::kOptimized,
    cutlass::conv::StrideSupport::kStrided>::Kernel;

// Input gradient: stride 1 and strided problems have different kernels (the strided one walks
// the stride phases, with its own grid swizzle).
template <typename E, class Config, cutlass::conv::StrideSupport kStride>
using DgradKernel = typename cutlass::conv::kernel::DefaultConv2dDgrad<
    E, NHWC, E, NHWC, E, NHWC, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    typename Config::Tile, typename Config::Warp, typename Config::Instruction, StoreEpilogue<E>,
    std::conditional_t<kStride == cutlass::conv::StrideSupport::kStrided,
                       cutlass::conv::threadblock::StridedDgradIdentityThreadblockSwizzle<1>,
                       cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<4>>,
    Config::kStages, cutlass::arch::OpMultiplyAdd, cutlass::conv::IteratorAlgorithm::kOptimized,
    kStride>::Kernel;

// Weight gradient: fp32 partial sums into the split-K workspace.
template <typename E, class Config>
using WgradKernel = typename cutlass::conv::kernel::DefaultConv2dWgrad<
    E, NHWC, E, NHWC, float, NHWC, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    typename Config::Tile, typename Config::Warp, typename Config::Instruction,
    StoreEpilogue<float>, cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<4>,
    Config::kStages, cutlass::arch::OpMultiplyAdd, cutlass::conv::IteratorAlgorithm::kOptimized,
    cutlass::conv::StrideSupport::kStrided>::Kernel;

// ---- host helpers -----------------------------------------------------------------------------

// Strides (logical order n, c, h, w) of a dense NHWC tensor of sizes (n, c, h, w); dimensions of
// size 1 may have any stride.
inline bool dense_nhwc(const int64_t* s, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t want[4] = {h * w * c, 1, w * c, c};
  const int64_t size[4] = {n, c, h, w};
  for (int d = 0; d < 4; ++d) {
    if (size[d] > 1 && s[d] != want[d]) {
      return false;
    }
  }
  return true;
}

// The problem as CUTLASS sees it, or false where the tier does not apply at all.
inline bool tier_applies(const ConvDesc& d) {
  constexpr int64_t kIntMax = 2147483647;
  static_assert(kAlignment == kCutlassChannelAlignment);
  return d.N > 0 && d.OH > 0 && d.OW > 0 && d.groups == 1 && d.C % kAlignment == 0 &&
         d.K % kAlignment == 0 &&
         dense_nhwc(d.xs, d.N, d.C, d.H, d.W) && dense_nhwc(d.ws, d.K, d.C, d.R, d.S) &&
         dense_nhwc(d.ys, d.N, d.K, d.OH, d.OW) && d.N * d.H * d.W * d.C < kIntMax &&
         d.N * d.OH * d.OW * d.K < kIntMax && d.K * d.R * d.S * d.C < kIntMax;
}

inline cutlass::conv::Conv2dProblemSize problem_size(const ConvDesc& d, int split_k_slices) {
  // Only the leading padding is passed: the output size (OH, OW) implies the trailing one,
  // which is how asymmetric ('same' with even kernels) padding reaches the kernels.
  return cutlass::conv::Conv2dProblemSize(
      int(d.N), int(d.H), int(d.W), int(d.C), int(d.K), int(d.R), int(d.S), int(d.OH),
      int(d.OW), int(d.pt), int(d.pl), int(d.sh), int(d.sw), int(d.dh), int(d.dw),
      cutlass::conv::Mode::kCrossCorrelation, split_k_slices, 1);
}

template <typename E>
cutlass::TensorRef<E, NHWC> packed(const void* p, int64_t n, int64_t h, int64_t w, int64_t c) {
  return cutlass::TensorRef<E, NHWC>(
      static_cast<E*>(const_cast<void*>(p)),
      NHWC::packed(cutlass::Tensor4DCoord(int(n), int(h), int(w), int(c))));
}

// Checks, initialises and launches one CUTLASS convolution; false (nothing launched) when the
// kernel cannot implement the problem or would need a workspace other than `workspace`.
template <typename Kernel>
bool launch(const typename Kernel::Arguments& args, void* workspace, size_t workspace_bytes,
            cudaStream_t stream) {
  using Op = cutlass::conv::device::ImplicitGemmConvolution<Kernel>;
  if (Op::can_implement(args) != cutlass::Status::kSuccess) {
    return false;
  }
  if (Op::get_workspace_size(args) > workspace_bytes) {
    return false;
  }
  Op op;
  if (op.initialize(args, workspace, stream) != cutlass::Status::kSuccess) {
    // only a failed cudaFuncSetAttribute / cudaMemsetAsync gets here
    C10_CUDA_CHECK(cudaGetLastError());
    return false;
  }
  const cutlass::Status status = op.run(stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  TORCH_CHECK(status == cutlass::Status::kSuccess, "torchconv: CUTLASS launch failed: ",
              cutlass::cutlassGetStatusString(status));
  return true;
}

}  // namespace torchconv::cuda::cutlass_tier
