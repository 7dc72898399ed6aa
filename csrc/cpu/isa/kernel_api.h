// Plain C-style interface between the torch-facing fast paths (fast_paths.cpp) and the per-ISA
// kernel translation units (kernels_avx512.cpp / kernels_avx2.cpp / kernels_scalar.cpp).
//
// This header includes only <stdint.h>: the ISA TUs are compiled with special code generation
// and must not instantiate any inline library function (ODR safety).
//
// Every kernel exists for float32 and float64 (T below): KernelTableT<float> / <double>.
//
// Conventions (all strides in elements):
//  * "x origin": pointer to the input element of channel 0 (of the group) at *padded* input
//    coordinate (0, 0); the caller guarantees that every window position a kernel reads is
//    in-bounds (either because no padding is needed or because it packed a zero-padded copy).
//    Output pixel p = (oh, ow) reads rows oh*sh + r*dh and columns ow*sw + s*dw.
//  * Every output element is produced by exactly one kernel call with a fixed summation order,
//    so results never depend on the number of threads.
#pragma once

#include <stdint.h>

#include <type_traits>

namespace torchconv {
namespace cpu {
namespace isa {

// Register tiles are templates over their size (loops over a compile-time count keep the
// accumulators in registers). with_count<K>(n, tile) calls tile(Count<n>()) for a runtime n
// in 1..K, the tile of that size: tiles read Count's value as decltype(k)::value.
template <int K>
struct Count {
  static constexpr int value = K;
};
template <int K, typename Tile>
static inline void with_count(int n, const Tile& tile) {
  if constexpr (K > 0) {
    if (n == K) tile(Count<K>());
    else with_count<K - 1>(n, tile);
  }
}

// Dense direct convolution of one image and one group (forward; also grad_input through
// rotated weights / phase decomposition).
struct DirectArgs {
  int64_t C;            // input channels of the group (reduction length per tap)
  int64_t R, S;         // taps
  int64_t OW;           // output width (pixels are numbered p = oh*OW + ow)
  int64_t sh, sw;       // stride
  int64_t dh, dw;       // dilation
  int64_t xc, xh, xw;   // input strides (channel, row, column)
  int64_t yk, yh, yw;   // output strides (output channel, row, column)
  // 1: write whole aligned vectors of the output with non-temporal (streaming) stores. For
  // outputs much larger than the caches: a normal store first reads its line from memory.
  int64_t stream;
  // Products per block of the three-level sums (see TC_BLOCK in kernels_impl.h); 0: TC_BLOCK.
  int64_t block;
  // 1: prefetch the next tile's input pixels (only for R = S = 1 and xc = 1): for inputs read
  // once from memory, where the tile would otherwise wait on its broadcasts' loads.
  int64_t prefetch;
  // Non-null (R = S = 1, xc = 1): input pixels [ahead_p0, ahead_p1) of the image at `ahead`
  // (strides as for x) are prefetched into L2, spread over this call's tiles: the input of
  // the task the thread runs next, so that it streams in over all of this task's k-blocks.
  const void* ahead;
  int64_t ahead_p0, ahead_p1;
  // k-blocks per pixel tile (0 counts as 1): more than one runs kblocks consecutive k-blocks'
  // panels (wpanel advanced R*S*C*KB, bias KB, y KB*yk per k-block) over each pixel tile
  // (NCHW output: each run of kNchwRunPixels) before the next; kvalid counts the last
  // k-block's valid output channels.
  int64_t kblocks;
};

// Packed weights for one k-block: [R][S][C][KB] (KB = kernel_block lanes, zero padded).
// bias: KB elements (zero padded) or null. kvalid: how many of the KB output channels exist.
template <typename T>
using DirectFn = void (*)(const DirectArgs* a, const T* x, T* y, const T* wpanel, const T* bias,
                          int64_t kvalid, int64_t p0, int64_t p1);
// Pixels per run in which the direct kernels store an NCHW output (yk != 1, dense rows): the
// tiles' transposed stores go to an L1 buffer of kernel-block channels x kNchwRunPixels, which
// leaves as one contiguous run per channel (the host counts that buffer when it picks a tile).
constexpr int64_t kNchwRunPixels = 96;

// A 1x1 stride-1 convolution over NCHW planes (the pixels of every channel contiguous in the
// input and the output), vectorised along the pixels: no transposes of either operand. Reads
// the direct kernel's packed weights of one k-block (wpanel[c*KB + k], R = S = 1) and bias;
// y[k*yk + p] = sum over c of wpanel[c*KB + k] * x[c*xc + p], then the bias, for k < kvalid
// and p < np (x, y: pixel 0 of input channel 0 / of the block's output channel 0). Same
// summation order as the direct kernel on a reduction of one block (channels in order, then
// the bias).
struct PlanesDirectArgs {
  int64_t C;       // input channels of the group, at most TC_BLOCK (64; one block of sums)
  int64_t xc, yk;  // input / output channel strides
  int64_t KB;      // lanes of a packed weight block (kvalid may span several, C x KB apart)
  int64_t stream;  // as DirectArgs::stream
  // Null, or scratch for C x planes_pixel_block elements: each pixel tile's input rows are
  // first copied there, contiguous (see direct_planes_tiles).
  void* tile_scratch;
};
template <typename T>
using PlanesDirectFn = void (*)(const PlanesDirectArgs* a, const T* x, T* y, const T* wpanel,
                                const T* bias, int64_t kvalid, int64_t np);

// Few output channels (kvalid <= 4, e.g. grad_input of an RGB stem): the same DirectFn
// signature, vectorised over the *reduction* channels instead (input channel stride xc must be
// 1), one accumulator vector per (pixel, output channel) reduced horizontally at the end.
// Packed weights per group: [kvalid][R][S][Cp] with Cp = C rounded up to VL (zero padded);
// bias: kvalid elements or null.

// Depthwise (one input and one output channel per group), channels vectorised: the input must
// have channel stride 1 (NHWC, possibly a zero-padded packed copy).
struct DepthwiseArgs {
  int64_t C;
  int64_t R, S, OW, sh, sw, dh, dw;
  int64_t xh, xw;       // input strides (row, column); channel stride is 1
  int64_t yc, yh, yw;   // output strides
  // Valid input rows / columns in the coordinates of the x origin: [top, top + H) x
  // [left, left + W). Window positions outside are padding (skipped): lets the kernel read an
  // unpadded channels_last input in place.
  int64_t top, left, H, W;
  int64_t stream;       // as DirectArgs::stream
  int64_t prefetch;     // 1: prefetch the input ahead (images much larger than L2)
};
// wpack: [ceil(C/VL)][R][S][VL]; bias: padded to a multiple of VL, or null.
template <typename T>
using DepthwiseFn = void (*)(const DepthwiseArgs* a, const T* x, T* y, const T* wpack,
                             const T* bias, int64_t p0, int64_t p1);

// grad_weight of a dense (grouped) convolution for one (group, k-block, channel block, tap),
// summed over `nimg` images and all their output pixels in a fixed order.
struct GradWeightArgs {
  int64_t OH, OW, sh, sw, dh, dw;
  int64_t xn, xc, xh, xw;  // input strides (image, channel, row, column) from the x origin
  int64_t dyn, dyp;        // grad_output strides (image, pixel); channel stride is 1
  int64_t nimg;
  int64_t acc_c;           // accumulator stride between channels (the k lanes are contiguous)
  int prefetch;            // kGwPrefetch* bits: operands streamed from memory (read in place)
};
// GradWeightArgs::prefetch: the tile prefetches the input's next line / grad_output ahead.
// Only for operands read in place: on per-pass copies, already in cache, the prefetches cost
// load slots that the tile's 8 loads per 12 multiply-adds cannot spare.
enum { kGwPrefetchX = 1, kGwPrefetchDy = 2 };
// acc: accumulators [nc][KB] with channel stride acc_c; `accumulate` = add to what is there.
template <typename T>
using GradWeightFn = void (*)(const GradWeightArgs* a, const T* x, const T* dy, T* acc,
                              int64_t nc, int64_t kvalid, int64_t r, int64_t s, int accumulate);

// grad_weight of a 1x1 stride-1 convolution over NCHW planes (the pixels of every channel
// contiguous in both operands), vectorised along the pixels, the reduction dimension: no
// transposes of either operand. acc[k*acc_k + c] (+)= sum over the pass of dy[k][p] * x[c][p]
// for k < nk, c < nc: each lane sums its pixels of the pass in order, the lanes are then summed
// in a fixed tree. A pass is `nimg` images of P consecutive pixels (image strides xn / dyn).
struct PlanesGradWeightArgs {
  int64_t P, nimg;
  int64_t xn, xc;    // input strides (image, channel); pixel stride 1
  int64_t dyn, dyk;  // grad_output strides (image, output channel); pixel stride 1
  int64_t acc_k;     // accumulator stride between output channels (channels contiguous)
};
template <typename T>
using PlanesGradWeightFn = void (*)(const PlanesGradWeightArgs* a, const T* x, const T* dy,
                                    T* acc, int64_t nk, int64_t nc, int accumulate);

// Depthwise on one NCHW plane, vectorised along output rows (no channel transposes). The
// input plane is staged zero-padded and split into sw column phases: padded position
// (row i, column j) lives at x[i*xh + (j % sw)*Wq + j / sw], so every tap of a vector of
// consecutive output columns is one contiguous load. Each phase row holds Wq >=
// ceil(OW / VL)*VL + ((S-1)*dw)/sw columns (zeros past the input): full-vector loads stay
// inside the staged plane.
struct PlaneArgs {
  int64_t R, S, OH, OW, sh, sw, dh, dw;
  int64_t xh;       // staged plane: row stride (all sw phase rows of one padded row)
  int64_t yh, yw;   // output strides (row, column); grad_weight: grad_output, yw must be 1
  const int64_t* tap_offset;  // R*S staged offsets of the taps (r, s), filled by the caller
  int64_t stream;             // as DirectArgs::stream
};
// w: R*S taps of the channel. Per output: taps in order, then the bias.
template <typename T>
using DepthwisePlaneFn = void (*)(const PlaneArgs* a, const T* x, T* y, const T* w, T bias);
// Stages one input plane (rows of W elements, row stride src_row) for the plane kernels: padded
// row i / column j = input row i - pt / column j - pl (zeros outside the input), Hp rows of sw
// phases of Wq columns. dst needs VL - 1 elements of slack past Hp*sw*Wq.
template <typename T>
using StagePlaneFn = void (*)(const T* src, int64_t src_row, int64_t H, int64_t W, int64_t pt,
                              int64_t pl, int64_t Hp, int64_t sw, int64_t Wq, T* dst);
// Grouped convolution on NCHW planes, one group and up to 4 of its output channels: x holds
// the group's cpg input planes staged as for depthwise_plane, xplane elements apart; y is the
// first output plane, the others yk apart, kn <= 4 of them stored. w: [R*S][cpg][4] (output
// channels past kn zero), bias: 4 values or null. Per output: taps in order, input channels in
// order, then the bias (the order of the channel-vectorised grouped kernel).
template <typename T>
using GroupedPlaneFn = void (*)(const PlaneArgs* a, const T* x, int64_t xplane, int64_t cpg,
                                T* y, int64_t yk, int64_t kn, const T* w, const T* bias);
// acc[R*S][VL] (+)= lane-wise sums of grad_output * input over the plane (the caller sums the
// lanes at the end).
template <typename T>
using DepthwisePlaneGradWeightFn = void (*)(const PlaneArgs* a, const T* x, const T* dy, T* acc,
                                            int accumulate);

// Depthwise grad_weight for one channel vector: acc[R*S][VL] (+)= sum over images and pixels.
struct DepthwiseGradWeightArgs {
  int64_t R, S, OH, OW, sh, sw, dh, dw;
  int64_t xn, xh, xw;      // input strides (channel stride 1)
  int64_t dyn, dyp;        // grad_output strides (channel stride 1)
  int64_t nimg;
  int64_t top, left, H, W;  // valid input rows / columns, as in DepthwiseArgs
};
template <typename T>
using DepthwiseGradWeightFn = void (*)(const DepthwiseGradWeightArgs* a, const T* x,
                                       const T* dy, T* acc, int64_t cvalid, int accumulate);

// Grouped convolution with few channels per group (kpg divides VL, cpg <= kpg), channels
// vectorised like the depthwise kernel: one output vector spans VL/kpg groups, its input
// channels are loaded as one vector (channel stride 1) and spread to the lanes of their group
// with one permutation per input channel of the group.
struct GroupedArgs {
  int64_t K, C, cpg, kpg;  // total output / input channels, per group
  int64_t R, S, OW, sh, sw, dh, dw;
  int64_t xh, xw;          // input strides (channel stride 1)
  int64_t yc, yh, yw;      // output strides
  int64_t stream;          // as DirectArgs::stream
};
// wpack: [ceil(K/VL)][R][S][cpg][VL]; bias padded to a multiple of VL, or null.
template <typename T>
using GroupedFn = void (*)(const GroupedArgs* a, const T* x, T* y, const T* wpack, const T* bias,
                           int64_t p0, int64_t p1);

// Grouped grad_weight for one output-channel vector cv and tap (r, s): acc[cpg][VL]
// (+)= sum over images and pixels. x, dy: origins of image 0 (channel stride 1).
struct GroupedGradWeightArgs {
  int64_t K, C, cpg, kpg, OH, OW, sh, sw, dh, dw;
  int64_t xn, xh, xw, dyn, dyp, nimg;
};
template <typename T>
using GroupedGradWeightFn = void (*)(const GroupedGradWeightArgs* a, const T* x, const T* dy,
                                     T* acc, int64_t cv, int64_t r, int64_t s, int accumulate);

// Winograd F(2x2, 3x3) transforms, channels vectorised (channel stride 1). A run of nt tiles
// along one row of tiles: tile t covers output rows 0..1 and columns 2t..2t+1 of the run and
// reads the 4x4 input window at rows 0..3, columns 2t..2t+3 (x origin: the run's first window,
// which may lie partly outside the input). The 16 transformed values of a tile are indexed
// xi = 4*i + j (row i, column j of the 4x4 transform).
struct WinogradArgs {
  int64_t C, K;     // input / output channels
  int64_t xh, xw;   // input strides (row, column)
  int64_t vs;       // v: [16][tiles][C], stride between the 16 planes
  int64_t ms, mt;   // m: [16][tiles][mt], mt >= K, stride between the 16 planes
  int64_t yh, yw;   // output strides (row, column)
  int64_t stream = 0;  // output transform: whole aligned vectors as non-temporal stores
};
// v[xi*vs + t*C + c] = (B^T d B)[xi] of channel c of tile t, where the window rows
// [inside[0], inside[1]) and the run's window columns [inside[2], inside[3]) are in the input
// and every other window element is zero padding (not read). Returns 0 if a transformed value
// is NaN or infinite (from such an input, which the transforms would spread over the tile or
// cancel, e.g. inf - inf, where a direct sum keeps it to its window; or from overflow), else 1.
template <typename T>
using WinogradInputFn = int (*)(const WinogradArgs* a, const T* x, int64_t nt,
                                const int64_t* inside, T* v);
// Output pixel (i, 2t + j) of the run (i < rows, 2t + j < cols; the others are dropped) at
// y + i*yh + (2t + j)*yw: (A^T m A) of tile t, then the bias (K elements, or null).
template <typename T>
using WinogradOutputFn = void (*)(const WinogradArgs* a, const T* m, int64_t nt, const T* bias,
                                  int64_t rows, int64_t cols, T* y);

// Winograd weights U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], for one block of
// KB output channels ("lanes", nl of them valid) and input channels [c0, c1): the 3x3 taps of
// (lane l, channel c) are 9 contiguous elements at w + l*ls + c*cs (row-major; rotate: read
// rotated by 180 degrees, for the input gradient). dst[xi*plane + c*KB + l] = U[xi], zero for
// l >= nl. Returns 0 if a transformed weight is NaN or infinite, else 1.
struct WinogradWeightArgs {
  int64_t KB, ls, cs, plane, rotate;
};
template <typename T>
using WinogradWeightFn = int (*)(const WinogradWeightArgs* a, const T* w, int64_t nl,
                                 int64_t c0, int64_t c1, T* dst);

// Weight gradient through Winograd: dL/dU = sum over tiles of (A dy A^T) . (B^T d B), then
// dL/dg = G^T (dL/dU) G.
// z[xi*ms + t*mt + k] = (A dy A^T)[xi] of the 2x2 grad_output tile t of a run (rows i < rows,
// columns 2t + j < cols of it; zeros beyond), read at dy + i*yh + (2t + j)*yw (channel
// stride 1; K channels). Returns 0 if a value is NaN or infinite, else 1.
template <typename T>
using WinogradGradOutputFn = int (*)(const WinogradArgs* a, const T* dy, int64_t nt,
                                     int64_t rows, int64_t cols, T* z);
// The weight gradient G^T m G of lanes (output channels) l < nl and input channels [c0, c1)
// of one block of KB lanes, from m[xi*plane + c*KB + l]; tap (r, s) goes to
// dst[l*ls + c*cs + 3*r + s] (a's rotate unused).
template <typename T>
using WinogradWeightGradFn = void (*)(const WinogradWeightArgs* a, const T* m, int64_t nl,
                                      int64_t c0, int64_t c1, T* dst);

// Channel-major rows to pixel-major: dst[i*dc + c] = src[c*sc + i] for c < C, i < W (an NCHW
// row or plane into NHWC order; weight-gradient accumulators into the weight's layout), in
// V::N x V::N register transposes.
template <typename T>
using TransposeFn = void (*)(const T* src, int64_t sc, int64_t C, int64_t W, T* dst, int64_t dc);

// The rows of P (2..4) column phases into whole rows: dst[i*dst_row + j*P + p] =
// src[p*phase_stride + i*src_row + j] for p < P, j < W, i < rows (the stride phases of an input
// gradient into its plane). `stream`: non-temporal stores where the V interleaves rows
// (kernels_impl.h interleave_rows), else as TransposeFn.
template <typename T>
using InterleavePhasesFn = void (*)(const T* src, int64_t phase_stride, int64_t src_row,
                                    int64_t P, int64_t W, int64_t rows, T* dst,
                                    int64_t dst_row, bool stream);

template <typename T>
struct KernelTableT {
  const char* name;
  int vec_lanes;      // VL
  int kernel_block;   // KB of the direct kernels (output channels per register tile)
  int pixel_block;    // pixels per register tile of the direct kernel
  int gw_channel_block;  // input channels per grad_weight register tile
  DirectFn<T> direct;
  int wide_kernel_block;  // KB and pixels of a second direct tile with more output channels
  int wide_pixel_block;   // (fewer pixels, fewer broadcasts per FMA)
  DirectFn<T> direct_wide;
  int mid_kernel_block;   // a third tile between the two (AVX-512: 3 vectors x 8 pixels;
  int mid_pixel_block;    // where there is none, the standard one's sizes)
  DirectFn<T> direct_mid;
  int narrow_pixel_block;    // pixels of a one-vector tile (KB = VL) for at most VL output
  DirectFn<T> direct_narrow;  // channels per group, which the standard tile would half fill
  DirectFn<T> direct_reduce;  // null where VL == 1
  int planes_kernel_block;    // output channels per tile of direct_planes (divides both KBs)
  int planes_pixel_block;     // pixels per tile of direct_planes
  PlanesDirectFn<T> direct_planes;
  DepthwiseFn<T> depthwise;
  DepthwiseFn<T> depthwise3x3;  // R = S = 3, undilated, sw 1 or 2, output channel stride 1
  GradWeightFn<T> grad_weight;          // KB = kernel_block, gw_channel_block channels
  int gw_wide_kernel_block;          // a wider tile (more output channels, fewer channels)
  int gw_wide_channel_block;
  GradWeightFn<T> grad_weight_wide;
  int gw_narrow_channel_block;        // a one-vector tile (KB = VL) for at most VL output
  GradWeightFn<T> grad_weight_narrow;  // channels (per group), which KB would leave half empty
  int planes_gw_kernel_block;  // output channels per tile of grad_weight_planes
  PlanesGradWeightFn<T> grad_weight_planes;
  DepthwiseGradWeightFn<T> depthwise_grad_weight;
  StagePlaneFn<T> stage_plane;
  DepthwisePlaneFn<T> depthwise_plane;
  GroupedPlaneFn<T> grouped_plane;
  DepthwisePlaneGradWeightFn<T> depthwise_plane_grad_weight;
  GroupedFn<T> grouped;                      // null where VL == 1
  GroupedGradWeightFn<T> grouped_grad_weight;
  TransposeFn<T> transpose;
  InterleavePhasesFn<T> interleave_phases;
  WinogradInputFn<T> winograd_input;
  WinogradOutputFn<T> winograd_output;
  WinogradWeightFn<T> winograd_weights;
  WinogradGradOutputFn<T> winograd_grad_output;
  WinogradWeightGradFn<T> winograd_weight_grad;
  // The same for stride 2 (3x3 taps, no dilation): windows of 5 x 5 inputs, 4 apart, 25
  // transformed values per tile (xi = 5*i + j), B^T, G and A^T of kernels_impl.h's
  // WinogradStride2; the products are 25 planes apart as the 16 above.
  WinogradInputFn<T> winograd_s2_input;
  WinogradOutputFn<T> winograd_s2_output;
  WinogradWeightFn<T> winograd_s2_weights;
  WinogradGradOutputFn<T> winograd_s2_grad_output;  // A dy A^T of 2x2 tiles: 25 values
  WinogradWeightGradFn<T> winograd_s2_weight_grad;
  // The input gradient of a 3x3 stride-2 convolution from grad_output (as "x": windows of 3 x 3
  // values, 2 apart) with winograd_s2_weights of the rotated taps: 25 values per tile, 4 x 4
  // grad_input pixels per tile (the output pixels are (i, 4t + j), i < rows, 4t + j < cols),
  // kernels_impl.h's WinogradStride2GradInput; "even" where a tile's first pixel is at an even
  // padded coordinate.
  WinogradInputFn<T> winograd_s2_gi_even_input;
  WinogradOutputFn<T> winograd_s2_gi_even_output;
  WinogradInputFn<T> winograd_s2_gi_odd_input;
  WinogradOutputFn<T> winograd_s2_gi_odd_output;
  // Register-only FMA loop: `iters` iterations, returns the number of flops executed (the
  // result is also written to *sink so the loop cannot be optimised away).
  double (*fma_loop)(int64_t iters, T* sink);
  // sums[c] = x[c] + x[ld + c] + ... + x[(rows-1)*ld + c] for c < C, rows added in order (the
  // bias gradient over channels_last rows of pixels).
  void (*column_sums)(const T* x, int64_t rows, int64_t ld, int64_t C, T* sums);
};

// bfloat16 direct convolution on AVX-512 BF16 dot products (forward, one group): per float32
// lane, vdpbf16ps adds the two products of a pair of adjacent input channels to the sum (input
// denormals read as zero, as oneDNN's bfloat16 kernels do); blocks of 64 products as TC_BLOCK,
// the bias added in float32 after the products, the result rounded once to bfloat16 (nearest
// even). x: a zero-padded NHWC copy holding pairs of channels (uint32, C2 per pixel; x origin as
// for DirectArgs); wpanel: one k-block [R][S][C2][kBf16KernelBlock] of channel pairs; bias:
// kBf16KernelBlock floats (zero padded) or null; y: bfloat16 bits through yk / yh / yw.
constexpr int64_t kBf16KernelBlock = 32;  // output channels per register tile
constexpr int64_t kBf16PixelBlock = 12;   // pixels per register tile
struct Bf16DirectArgs {
  int64_t C2;          // pairs of input channels
  int64_t R, S, OW, sh, sw, dh, dw;
  int64_t xh, xw;      // input strides in pairs (row, column)
  int64_t yk, yh, yw;  // output strides (output channel, row, column)
};
using Bf16DirectFn = void (*)(const Bf16DirectArgs* a, const uint32_t* x, uint16_t* y,
                              const uint32_t* wpanel, const float* bias, int64_t kvalid,
                              int64_t p0, int64_t p1);
// Channel-major bfloat16 rows (an NCHW row: x[c][i] = src[c*sc + i]) to pixel-major pairs:
// dst[i*dc + c2] = x[2*c2][i] | x[2*c2 + 1][i] << 16 for c2 < ceil(C/2), i < W (channel C of
// an odd C reads as zero).
using Bf16PairRowsFn = void (*)(const uint16_t* src, int64_t sc, int64_t C, int64_t W,
                                uint32_t* dst, int64_t dc);
// Depthwise bfloat16 over channels_last operands (channel stride 1 in and out), channels
// vectorised: output pixels (oh, ow) for ow in [ow0, ow1) of one image, every channel: the
// taps that fall inside the input, in order, widened exactly and multiplied with float32
// weights w[(r*S + s)*C + c] into float32 sums, then the bias (C floats, or null), rounded once.
struct Bf16DepthwiseArgs {
  int64_t C, H, W, R, S, sh, sw, dh, dw, pt, pl;
  int64_t xh, xw;  // input strides (row, column)
  int64_t yh, yw;  // output strides (row, column)
};
using Bf16DepthwiseFn = void (*)(const Bf16DepthwiseArgs* a, const uint16_t* x, uint16_t* y,
                                 const float* w, const float* bias, int64_t oh, int64_t ow0,
                                 int64_t ow1);
// Depthwise bfloat16 weight gradient over channels_last operands (channel stride 1), for the
// channel vector [c0, c0 + 16): sums[t*16 + l] = the sum over the output rows [g0, g1)
// (numbered n*OH + oh) and all their columns, in order, of dy[n][oh][ow][c0 + l] times the input
// pixel of tap t = r*S + s (taps inside the input), widened exactly, in float32; lanes past C
// are zero.
struct Bf16DepthwiseGradWeightArgs {
  int64_t C, H, W, R, S, sh, sw, dh, dw, pt, pl, OH, OW;
  int64_t xn, xh, xw;  // input strides (image, row, column)
  int64_t yn, yh, yw;  // grad_output strides (image, row, column)
};
using Bf16DepthwiseGradWeightFn = void (*)(const Bf16DepthwiseGradWeightArgs* a,
                                           const uint16_t* x, const uint16_t* dy, float* sums,
                                           int64_t c0, int64_t g0, int64_t g1);
struct Bf16Kernels {
  Bf16DirectFn direct;
  Bf16PairRowsFn pair_rows;
  Bf16DepthwiseFn depthwise;
  Bf16DepthwiseGradWeightFn depthwise_grad_weight;
};
Bf16Kernels kernels_avx512_bf16();

// One ISA's kernels for both element types.
struct IsaKernels {
  const KernelTableT<float>* f32;
  const KernelTableT<double>* f64;
};
IsaKernels kernels_avx512();
IsaKernels kernels_avx2();
IsaKernels kernels_scalar();
// The AVX-512 tiles on emulated vectors (AVX2 code), built with TORCHCONV_AVX512_EMULATED=1:
// tests the AVX-512 schedule on machines without AVX-512.
IsaKernels kernels_avx512_emulated();

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
