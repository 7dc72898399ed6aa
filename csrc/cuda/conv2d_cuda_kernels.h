// Interface between the host side of the CUDA backend (conv2d_cuda.cu: tensors, layouts,
// dispatch) and the kernel translation units (conv2d_gemm_*.cu, conv2d_direct.cu).
//
// Deliberately light: no ATen tensor headers, so the kernel TUs compile quickly. Every launcher
// is a function template declared here and explicitly instantiated in one kernel TU for the
// scalar types and index types it supports (int32_t, or int64_t when some tensor or index
// exceeds the 32-bit range).
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

namespace torchconv::cuda {

// One convolution: int64 sizes and element strides. "x" is the input (or grad_input), "w" the
// weight, "y" the output (or grad_output). Strides are in elements, in logical dimension order
// x: (n, c, h, w), w: (k, c, r, s), y: (n, k, h, w); kernels never assume a memory layout.
struct ConvDesc {
  int64_t N, C, H, W;   // input
  int64_t K, R, S;      // weight: out channels, kernel height / width
  int64_t OH, OW;       // output plane
  int64_t sh, sw;       // stride
  int64_t pt, pl;       // leading padding (top, left); trailing padding is implied by OH / OW
  int64_t dh, dw;       // dilation
  int64_t groups;
  int64_t xs[4], ws[4], ys[4];
};

// Whether a pointer allows 16-byte vector accesses (the channel-vector and CUTLASS kernels).
inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Implicit-GEMM block tile (M x N); shared by the SIMT and tensor-core kernels and used by the
// host to size the split-K workspace of the weight gradient.
constexpr int64_t kGemmTileM = 64;
constexpr int64_t kGemmTileN = 64;
constexpr int64_t kGemmTileK = 16;

// Split of a weight-gradient reduction of length `length` (N*OH*OW) into `slices` consecutive
// chunks of `chunk` elements (the last one may be shorter). Depends on the shape only, so the
// summation order -- and the result -- is the same on every run and every GPU.
struct SplitK {
  int64_t slices;
  int64_t chunk;
};

inline SplitK plan_split_k(int64_t length, int64_t output_tiles) {
  constexpr int64_t kMaxSlices = 64;      // workspace <= kMaxSlices * weight size
  constexpr int64_t kTargetBlocks = 1024;  // enough blocks to fill a large GPU a few times
  constexpr int64_t kMinChunk = 1024;      // below this a slice is not worth its workspace
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  int64_t slices = ceil_div(kTargetBlocks, output_tiles < 1 ? 1 : output_tiles);
  slices = slices < kMaxSlices ? slices : kMaxSlices;
  const int64_t by_length = ceil_div(length, kMinChunk);
  slices = slices < by_length ? slices : by_length;
  slices = slices < 1 ? 1 : slices;
  int64_t chunk = ceil_div(length, slices);
  chunk = ceil_div(chunk, kGemmTileK) * kGemmTileK;
  return {ceil_div(length, chunk), chunk};
}

// ---- implicit GEMM (any groups), SIMT: every floating and complex dtype ---------------------
// fprop: y = conv(x, w) + bias (bias may be null). dgrad: x = grad_input from y = grad_output.
// wgrad: writes acc_t partial sums to `workspace` ([slices][K][R][S][C/groups], dense).
template <typename scalar_t, typename index_t>
void fprop_simt(const ConvDesc&, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                scalar_t* y, cudaStream_t);
template <typename scalar_t, typename index_t>
void dgrad_simt(const ConvDesc&, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
                cudaStream_t);
template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_simt(const ConvDesc&, const SplitK&, const scalar_t* dy, const scalar_t* x,
                acc_t* workspace, cudaStream_t);

// ---- implicit GEMM on tensor cores (sm_80+, wmma): Half, BFloat16, and float as TF32 --------
template <typename scalar_t, typename index_t>
void fprop_tc(const ConvDesc&, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
              scalar_t* y, cudaStream_t);
template <typename scalar_t, typename index_t>
void dgrad_tc(const ConvDesc&, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
              cudaStream_t);
template <typename scalar_t, typename index_t>
void wgrad_tc(const ConvDesc&, const SplitK&, const scalar_t* dy, const scalar_t* x,
              float* workspace, cudaStream_t);

// ---- direct kernels: depthwise (C/groups == 1, any channel multiplier) and small groups ------
// w_rsc (may be null): the weight as a dense (R, S, C) array, which lets NHWC depthwise problems
// with channel multiplier 1 use the channel-vector kernels.
template <typename scalar_t, typename index_t>
void fprop_direct(const ConvDesc&, const scalar_t* x, const scalar_t* w, const scalar_t* w_rsc,
                  const scalar_t* bias, scalar_t* y, cudaStream_t);
template <typename scalar_t, typename index_t>
void dgrad_direct(const ConvDesc&, const scalar_t* dy, const scalar_t* w, const scalar_t* w_rsc,
                  scalar_t* dx, cudaStream_t);
// Output tiles for plan_split_k, then the partial sums ([slices][K][R][S][C/groups], dense).
int64_t wgrad_direct_tiles(const ConvDesc&);
template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_direct(const ConvDesc&, const SplitK&, const scalar_t* dy, const scalar_t* x,
                  acc_t* workspace, cudaStream_t);

// ---- CUTLASS tier (conv2d_cutlass*.cu, built when CUTLASS's headers are found) ------------
// Half / BFloat16 / float as TF32, groups == 1, dense NHWC / KRSC operands, C and K multiples of
// kCutlassChannelAlignment. Each returns false, having launched nothing, for a problem outside
// what its kernels implement; the caller then runs the kernels above.
constexpr int64_t kCutlassChannelAlignment = 8;
// The tier's widest thread-block tile: what the host sizes the weight gradient's split by.
constexpr int64_t kCutlassTileM = 128;
constexpr int64_t kCutlassTileN = 128;
template <typename scalar_t>
bool fprop_cutlass(const ConvDesc&, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                   scalar_t* y, cudaStream_t);
template <typename scalar_t>
bool dgrad_cutlass(const ConvDesc&, const scalar_t* dy, const scalar_t* w, scalar_t* dx,
                   cudaStream_t);
// Partial sums of `slices` split-K slices into workspace ([slices][K][R][S][C], float).
template <typename scalar_t>
bool wgrad_cutlass(const ConvDesc&, int64_t slices, const scalar_t* dy, const scalar_t* x,
                   float* workspace, cudaStream_t);

// Whether the ops may use the CUTLASS tier: built with it, and not switched off (environment
// TORCHCONV_CUDA_CUTLASS=0 at import, or torchconv._C.set_cuda_cutlass(False)).
bool cutlass_tier_built();
bool cutlass_tier_enabled();
void set_cutlass_tier_enabled(bool enabled);
// Whether channel counts that are not multiples of kCutlassChannelAlignment are zero-padded
// into the tier (environment TORCHCONV_CUDA_CUTLASS_PAD=1, or
// torchconv._C.set_cuda_cutlass_padding(True); off by default: not yet run on a GPU).
bool cutlass_padding_enabled();
void set_cutlass_padding_enabled(bool enabled);

// ---- second pass of every weight gradient: dw = sum over slices, in slice order -------------
template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_reduce(const ConvDesc&, int64_t slices, const acc_t* workspace, scalar_t* dw,
                  cudaStream_t);

}  // namespace torchconv::cuda
