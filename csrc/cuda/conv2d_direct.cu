// Direct kernels for grouped convolutions -- depthwise (C/groups == 1, any channel multiplier
// K/groups) and groups with few channels each -- on tensors of any strides, and the second
// (reduction) pass shared by every weight gradient.
//
//   fprop  one thread per output element: sum over the R x S taps and the group's channels
//   dgrad  one thread per grad_input element: gather over (the group's output channels, r, s),
//          keeping the taps whose output position is integral and in range
//   wgrad  per (weight-channel tile, tap, slice of N*OH*OW): a block sums its slice in a fixed
//          order (per-thread strided partial sums, then a fixed-order sum over the threads)
//          into a workspace slice; wgrad_reduce then adds the slices in slice order.
//
// Threads map to consecutive channels when the tensor is channels-fast (NHWC) and to
// consecutive columns otherwise, so global accesses coalesce in both layouts. NHWC problems
// with channel multiplier 1 (the common depthwise layer) whose channel vectors are 16-byte
// aligned use the channel-vector forms instead: one thread per 16 bytes of channels (and, in
// the forward, per run of output columns), same summation order, same results.
#include "conv2d_direct.cuh"

#include <type_traits>

namespace torchconv::cuda {
namespace detail {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridStride = 65535;  // blocks of a grid-stride loop

// Grid-stride loop over [0, total): first index and step (the grid is capped at kMaxGridStride
// blocks, so the step never overflows the index type near the 32-bit limit used by the host).
template <typename I>
__device__ inline I grid_first() {
  return static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x);
}
template <typename I>
__device__ inline I grid_step() {
  return static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x);
}

template <typename scalar_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_fprop_kernel(Geo<I> g, bool channels_fast, const scalar_t* x, const scalar_t* w,
                    const scalar_t* bias, scalar_t* y) {
  const I total = g.N * g.K * g.OH * g.OW;
  for (I e = grid_first<I>(); e < total; e += grid_step<I>()) {
    dw_fprop_element(g, channels_fast, e, x, w, bias, y);
  }
}

template <typename scalar_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_fprop_channels_kernel(Geo<I> g, const scalar_t* x, const scalar_t* w_rsc,
                             const scalar_t* bias, scalar_t* y) {
  const I total = g.N * g.OH * ((g.OW + kDwColumnRun - 1) / kDwColumnRun) *
                  (g.C / ChannelVec<scalar_t>::kN);
  for (I e = grid_first<I>(); e < total; e += grid_step<I>()) {
    dw_fprop_channels(g, e, x, w_rsc, bias, y);
  }
}

template <typename scalar_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_dgrad_channels_kernel(Geo<I> g, const scalar_t* dy, const scalar_t* w_rsc, scalar_t* dx) {
  const I total = g.N * g.H * g.W * (g.C / ChannelVec<scalar_t>::kN);
  for (I e = grid_first<I>(); e < total; e += grid_step<I>()) {
    dw_dgrad_channels(g, e, dy, w_rsc, dx);
  }
}

template <typename scalar_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_dgrad_kernel(Geo<I> g, bool channels_fast, const scalar_t* dy, const scalar_t* w,
                    scalar_t* dx) {
  const I total = g.N * g.C * g.H * g.W;
  for (I e = grid_first<I>(); e < total; e += grid_step<I>()) {
    dw_dgrad_element(g, channels_fast, e, dy, w, dx);
  }
}

// Block blockIdx.x of a weight-gradient grid over (channel tile, tap, slice of N*OH*OW): its
// coordinates and its range [pbeg, pend) of flattened output positions.
template <typename I>
struct WgradBlock {
  I tile, rs, slice, pbeg, pend;
  __device__ WgradBlock(const Geo<I>& g, I tiles, I chunk) {
    I b = blockIdx.x;
    tile = b % tiles;
    b /= tiles;
    rs = b % (g.R * g.S);
    slice = b / (g.R * g.S);
    const I positions = g.N * g.OH * g.OW;
    pbeg = slice * chunk;
    pend = positions - pbeg < chunk ? positions : pbeg + chunk;
  }
};

// Block = kc weight-channel lanes x (kThreads / kc) position lanes; blockIdx.x = (weight-channel
// tile, tap, slice), a weight channel being q = k*Cpg + c. Each lane sums its strided share of
// the slice, then lane 0 of each weight channel adds the lanes' sums in lane order. Partial
// sums: workspace[slice][k][(r*S + s)*Cpg + c].
template <typename scalar_t, typename acc_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_wgrad_kernel(Geo<I> g, int kc, I qtiles, I chunk, const scalar_t* dy, const scalar_t* x,
                    acc_t* ws) {
  __shared__ __align__(16) unsigned char smem[kThreads * sizeof(acc_t)];
  acc_t* partial = reinterpret_cast<acc_t*>(smem);
  const int lanes = kThreads / kc;
  const int ql = threadIdx.x % kc, pl = threadIdx.x / kc;
  const WgradBlock<I> blk(g, qtiles, chunk);
  const I RS = g.R * g.S, rs = blk.rs, slice = blk.slice;
  const I q = blk.tile * kc + ql, Q = g.K * g.Cpg;
  acc_t lane_sum(0);
  if (q < Q) {
    lane_sum = dw_wgrad_lane(g, q, rs / g.S, rs % g.S, blk.pbeg, blk.pend, pl, lanes, dy, x);
  }
  partial[threadIdx.x] = lane_sum;
  __syncthreads();
  if (pl == 0 && q < Q) {
    acc_t sum(0);
    for (int t = 0; t < lanes; ++t) {
      sum += partial[t * kc + ql];
    }
    ws[((slice * g.K + q / g.Cpg) * RS + rs) * g.Cpg + q % g.Cpg] = sum;
  }
}

// As dw_wgrad_kernel with kWgradChannelLanes lanes of channel vectors: lane (kv, pl) sums
// channels [(kt*lanes + kv)*kN, +kN) over its positions; the same position lanes (kThreads /
// kWgradChannelLanes) and lane order as the scalar kernel, hence the same sums.
template <typename scalar_t, typename acc_t, typename I>
__global__ void __launch_bounds__(kThreads)
    dw_wgrad_channels_kernel(Geo<I> g, I ktiles, I chunk, const scalar_t* dy, const scalar_t* x,
                             acc_t* ws) {
  constexpr int V = ChannelVec<scalar_t>::kN, KC = kWgradChannelLanes, LANES = kThreads / KC;
  __shared__ acc_t partial[kThreads][V];
  const int kv = threadIdx.x % KC, pl = threadIdx.x / KC;
  const WgradBlock<I> blk(g, ktiles, chunk);
  const I RS = g.R * g.S, rs = blk.rs, slice = blk.slice;
  const I c0 = (blk.tile * KC + kv) * V;
  if (c0 < g.C) {
    dw_wgrad_channels(g, c0, rs / g.S, rs % g.S, blk.pbeg, blk.pend, pl, LANES, dy, x,
                      partial[threadIdx.x]);
  }
  __syncthreads();
  if (pl == 0 && c0 < g.C) {
    for (int i = 0; i < V; ++i) {
      acc_t sum(0);
      for (int q = 0; q < LANES; ++q) {
        sum += partial[q * KC + kv][i];
      }
      ws[(slice * g.K + c0 + i) * RS + rs] = sum;
    }
  }
}

template <typename scalar_t, typename acc_t, typename I>
__global__ void __launch_bounds__(kThreads)
    wgrad_reduce_kernel(Geo<I> g, I slices, const acc_t* ws, scalar_t* dw) {
  const I total = g.K * g.R * g.S * g.Cpg;
  for (I e = grid_first<I>(); e < total; e += grid_step<I>()) {
    wgrad_reduce_element(g, slices, e, ws, dw);
  }
}

unsigned grid_for(int64_t total) {
  const int64_t blocks = ceil_div(total, kThreads);
  return static_cast<unsigned>(blocks < kMaxGridStride ? blocks : kMaxGridStride);
}

// Weight-channel lanes of the weight-gradient block: kWgradChannelLanes when both operands are
// channels-fast.
int wgrad_channel_lanes(const ConvDesc& d) {
  return d.xs[1] == 1 && d.ys[1] == 1 && d.K * (d.C / d.groups) > 1 ? kWgradChannelLanes : 1;
}

// The channel-vector kernels are defined for the real floating types.
template <typename scalar_t>
constexpr bool kHasChannelVectors = std::is_floating_point_v<scalar_t> ||
                                    std::is_same_v<scalar_t, c10::Half> ||
                                    std::is_same_v<scalar_t, c10::BFloat16>;

}  // namespace
}  // namespace detail

template <typename scalar_t, typename index_t>
void fprop_direct(const ConvDesc& d, const scalar_t* x, const scalar_t* w,
                  const scalar_t* w_rsc, const scalar_t* bias, scalar_t* y, cudaStream_t stream) {
  if constexpr (detail::kHasChannelVectors<scalar_t>) {
    if (w_rsc != nullptr && detail::dw_channel_vectors_apply<scalar_t>(d) &&
        aligned16(x) && aligned16(w_rsc) && aligned16(y)) {
      const int64_t total = d.N * d.OH * detail::ceil_div(d.OW, detail::kDwColumnRun) *
                            (d.C / detail::ChannelVec<scalar_t>::kN);
      detail::dw_fprop_channels_kernel<scalar_t, index_t>
          <<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
              detail::make_geo<index_t>(d), x, w_rsc, bias, y);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  const int64_t total = d.N * d.K * d.OH * d.OW;
  detail::dw_fprop_kernel<scalar_t, index_t>
      <<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
          detail::make_geo<index_t>(d), d.ys[1] == 1, x, w, bias, y);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename index_t>
void dgrad_direct(const ConvDesc& d, const scalar_t* dy, const scalar_t* w,
                  const scalar_t* w_rsc, scalar_t* dx, cudaStream_t stream) {
  if constexpr (detail::kHasChannelVectors<scalar_t>) {
    if (w_rsc != nullptr && detail::dw_channel_vectors_apply<scalar_t>(d) &&
        aligned16(dy) && aligned16(w_rsc) && aligned16(dx)) {
      const int64_t total = d.N * d.H * d.W * (d.C / detail::ChannelVec<scalar_t>::kN);
      detail::dw_dgrad_channels_kernel<scalar_t, index_t>
          <<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
              detail::make_geo<index_t>(d), dy, w_rsc, dx);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  const int64_t total = d.N * d.C * d.H * d.W;
  detail::dw_dgrad_kernel<scalar_t, index_t>
      <<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
          detail::make_geo<index_t>(d), d.xs[1] == 1, dy, w, dx);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

int64_t wgrad_direct_tiles(const ConvDesc& d) {
  return detail::ceil_div(d.K * (d.C / d.groups), detail::wgrad_channel_lanes(d)) * d.R * d.S;
}

template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_direct(const ConvDesc& d, const SplitK& split, const scalar_t* dy,
                  const scalar_t* x, acc_t* workspace, cudaStream_t stream) {
  static_assert(std::is_same_v<acc_t, at::opmath_type<scalar_t>>);
  constexpr int64_t kMaxGrid = 2147483647;  // blocks of a 1-D grid
  if constexpr (detail::kHasChannelVectors<scalar_t>) {
    if (detail::dw_channel_vectors_apply<scalar_t>(d) && aligned16(dy) &&
        aligned16(x)) {
      const int64_t ktiles =
          detail::ceil_div(d.C, detail::kWgradChannelLanes * detail::ChannelVec<scalar_t>::kN);
      const int64_t blocks = ktiles * d.R * d.S * split.slices;
      TORCH_CHECK(blocks <= kMaxGrid, "torchconv: depthwise weight gradient too large");
      detail::dw_wgrad_channels_kernel<scalar_t, acc_t, index_t>
          <<<static_cast<unsigned>(blocks), detail::kThreads, 0, stream>>>(
              detail::make_geo<index_t>(d), static_cast<index_t>(ktiles),
              static_cast<index_t>(split.chunk), dy, x, workspace);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  const int kc = detail::wgrad_channel_lanes(d);
  const int64_t qtiles = detail::ceil_div(d.K * (d.C / d.groups), kc);
  const int64_t blocks = qtiles * d.R * d.S * split.slices;
  TORCH_CHECK(blocks <= kMaxGrid, "torchconv: depthwise weight gradient too large");
  detail::dw_wgrad_kernel<scalar_t, acc_t, index_t>
      <<<static_cast<unsigned>(blocks), detail::kThreads, 0, stream>>>(
          detail::make_geo<index_t>(d), kc, static_cast<index_t>(qtiles),
          static_cast<index_t>(split.chunk), dy, x, workspace);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t, typename index_t>
void wgrad_reduce(const ConvDesc& d, int64_t slices, const acc_t* workspace, scalar_t* dw,
                  cudaStream_t stream) {
  const int64_t total = d.K * (d.C / d.groups) * d.R * d.S;
  detail::wgrad_reduce_kernel<scalar_t, acc_t, index_t>
      <<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
          detail::make_geo<index_t>(d), static_cast<index_t>(slices), workspace, dw);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define TORCHCONV_DW_INSTANTIATE(scalar_t, index_t)                                               \
  template void fprop_direct<scalar_t, index_t>(const ConvDesc&, const scalar_t*,                 \
                                                const scalar_t*, const scalar_t*,                 \
                                                const scalar_t*, scalar_t*, cudaStream_t);        \
  template void dgrad_direct<scalar_t, index_t>(const ConvDesc&, const scalar_t*,                 \
                                                const scalar_t*, const scalar_t*, scalar_t*,      \
                                                cudaStream_t);                                    \
  template void wgrad_direct<scalar_t, at::opmath_type<scalar_t>, index_t>(                       \
      const ConvDesc&, const SplitK&, const scalar_t*, const scalar_t*,                           \
      at::opmath_type<scalar_t>*, cudaStream_t);                                                  \
  template void wgrad_reduce<scalar_t, at::opmath_type<scalar_t>, index_t>(                       \
      const ConvDesc&, int64_t, const at::opmath_type<scalar_t>*, scalar_t*, cudaStream_t);

#define TORCHCONV_DW_INSTANTIATE_BOTH(scalar_t) \
  TORCHCONV_DW_INSTANTIATE(scalar_t, int32_t)   \
  TORCHCONV_DW_INSTANTIATE(scalar_t, int64_t)

TORCHCONV_DW_INSTANTIATE_BOTH(float)
TORCHCONV_DW_INSTANTIATE_BOTH(double)
TORCHCONV_DW_INSTANTIATE_BOTH(c10::Half)
TORCHCONV_DW_INSTANTIATE_BOTH(c10::BFloat16)
TORCHCONV_DW_INSTANTIATE_BOTH(c10::complex<float>)
TORCHCONV_DW_INSTANTIATE_BOTH(c10::complex<double>)

}  // namespace torchconv::cuda
