// CUDA kernels of the torchconv ops: host side (layouts, kernel choice, dtype dispatch,
// workspaces) of the backend registered for DispatchKey::CUDA.
//
// Kernel choice, per op:
//   depthwise (groups > 1, C/groups == 1), and the forward of small groups (C/groups and
//   K/groups <= 16):                       direct kernels on the tensors as they are laid out
//   otherwise                              implicit GEMM on NHWC (channels_last) operands:
//     tensor cores (wmma) for Half / BFloat16, and for float when TF32 is allowed for cuDNN
//     convolutions (torch.backends.cudnn.allow_tf32), on sm_80+;
//     the SIMT kernel for everything else (float64, complex, float with TF32 off, older GPUs);
//     before the wmma kernel, tensor-core problems (Half, BFloat16, TF32) with groups == 1 and
//     channel counts that are multiples of 8 go to the CUTLASS tier (conv2d_cutlass.cuh)
//     where it is built.
// Results are written straight into the preallocated output through its strides (every
// kernel's store takes arbitrary strides), so no temporary / copy_ is needed for either layout.
// Weight gradients use a fixed, shape-determined split of N*OH*OW into workspace slices that a
// second kernel sums in slice order: no atomics, bitwise reproducible results.
//
// This translation unit has no device code: the device compilation passes skip it entirely
// (they would otherwise parse the ATen headers once per GPU architecture).
#if !defined(__CUDA_ARCH__)

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "../op_entry.h"
#include "conv2d_cuda_kernels.h"

namespace torchconv::cuda {

bool cutlass_tier_built() {
#ifdef TORCHCONV_WITH_CUTLASS
  return true;
#else
  return false;
#endif
}

namespace {
// A switch initialised from an environment variable ("0": off, "1": on, unset: the default).
std::atomic<bool> switch_from_env(const char* name, bool default_value) {
  const char* env = std::getenv(name);
  return env == nullptr ? default_value : std::strcmp(env, "0") != 0;
}

std::atomic<bool>& cutlass_switch() {
  static std::atomic<bool> enabled{switch_from_env("TORCHCONV_CUDA_CUTLASS", true)};
  return enabled;
}

std::atomic<bool>& cutlass_padding_switch() {
  static std::atomic<bool> enabled{switch_from_env("TORCHCONV_CUDA_CUTLASS_PAD", false)};
  return enabled;
}
}  // namespace

bool cutlass_tier_enabled() {
  return cutlass_tier_built() && cutlass_switch().load(std::memory_order_relaxed);
}

void set_cutlass_tier_enabled(bool enabled) {
  TORCH_CHECK(!enabled || cutlass_tier_built(),
              "torchconv was built without the CUTLASS tier (CUTLASS headers not found)");
  cutlass_switch().store(enabled, std::memory_order_relaxed);
}

bool cutlass_padding_enabled() {
  return cutlass_padding_switch().load(std::memory_order_relaxed);
}

void set_cutlass_padding_enabled(bool enabled) {
  cutlass_padding_switch().store(enabled, std::memory_order_relaxed);
}

namespace {

// 32-bit kernels are used only when every element offset and index stays below this bound; the
// margin covers the few tile-sized overshoots that kernels compute before their range checks.
constexpr int64_t kInt32Limit = std::numeric_limits<int32_t>::max() - (int64_t(1) << 26);

// One past the largest element offset of `t` (0 when empty).
int64_t extent(const at::Tensor& t) {
  if (t.numel() == 0) {
    return 0;
  }
  int64_t e = 1;
  for (int64_t d = 0; d < t.dim(); ++d) {
    e += (t.size(d) - 1) * t.stride(d);
  }
  return e;
}

bool needs_int64(const Geometry& g, std::initializer_list<int64_t> extents) {
  int64_t largest = 0;
  for (const int64_t e : extents) {
    largest = std::max(largest, e);
  }
  // Magnitudes of intermediate input coordinates (oh*sh - pt + r*dh and the like).
  const int64_t rows = g.in_height + g.pad_top + (g.out_height - 1) * g.stride_h +
                       (g.kernel_height - 1) * g.dilation_h + g.stride_h;
  const int64_t cols = g.in_width + g.pad_left + (g.out_width - 1) * g.stride_w +
                       (g.kernel_width - 1) * g.dilation_w + g.stride_w;
  largest = std::max({largest, rows, cols, g.batch * g.out_height * g.out_width,
                      g.batch * g.in_height * g.in_width});
  return largest > kInt32Limit;
}

void copy_strides(int64_t* dst, const at::Tensor& t) {
  for (int64_t d = 0; d < 4; ++d) {
    dst[d] = t.stride(d);
  }
}

// x: input or grad_input, w: weight or grad_weight, y: output or grad_output (all 4-D).
ConvDesc make_desc(const Geometry& g, const at::Tensor& x, const at::Tensor& w,
                   const at::Tensor& y) {
  ConvDesc d;
  d.N = g.batch;
  d.C = g.in_channels;
  d.H = g.in_height;
  d.W = g.in_width;
  d.K = g.out_channels;
  d.R = g.kernel_height;
  d.S = g.kernel_width;
  d.OH = g.out_height;
  d.OW = g.out_width;
  d.sh = g.stride_h;
  d.sw = g.stride_w;
  d.pt = g.pad_top;
  d.pl = g.pad_left;
  d.dh = g.dilation_h;
  d.dw = g.dilation_w;
  d.groups = g.groups;
  copy_strides(d.xs, x);
  copy_strides(d.ws, w);
  copy_strides(d.ys, y);
  return d;
}

void check_same_device(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(),
              "Expected all tensors to be on the same device, but found at least two devices, ",
              a.device(), " and ", b.device(), "!");
}

// Operand of the implicit-GEMM kernels: no conjugate bit, NHWC (channels_last) memory, which
// makes the gathered reduction / channel dimension contiguous.
at::Tensor gemm_operand(const at::Tensor& t) {
  return t.resolve_conj().contiguous(at::MemoryFormat::ChannelsLast);
}

// Whether float32 convolutions may use TF32, as for cuDNN (torch.backends.cudnn.allow_tf32).
// Recent PyTorch raises from allowTF32CuDNN() when the legacy flag and the per-operator
// fp32_precision flags were set inconsistently; full float32 precision is kept then.
bool tf32_allowed() {
  try {
    return at::globalContext().allowTF32CuDNN();
  } catch (const c10::Error&) {
    return false;
  }
}

bool use_tensor_cores(at::ScalarType dtype, const at::Device& device) {
  if (dtype == at::kFloat) {
    if (!tf32_allowed()) {
      return false;
    }
  } else if (dtype != at::kHalf && dtype != at::kBFloat16) {
    return false;
  }
  int major = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index()));
  return major >= 8;
}

template <typename scalar_t>
constexpr bool kHasTensorCoreKernels = std::is_same_v<scalar_t, float> ||
                                       std::is_same_v<scalar_t, c10::Half> ||
                                       std::is_same_v<scalar_t, c10::BFloat16>;

enum class Kind { Direct, Simt, TensorCore };

template <typename scalar_t, typename index_t>
void run_forward(Kind kind, const ConvDesc& d, const scalar_t* x, const scalar_t* w,
                 const scalar_t* w_rsc, const scalar_t* b, scalar_t* y, cudaStream_t stream) {
  if (kind == Kind::Direct) {
    fprop_direct<scalar_t, index_t>(d, x, w, w_rsc, b, y, stream);
    return;
  }
  if constexpr (kHasTensorCoreKernels<scalar_t>) {
    if (kind == Kind::TensorCore) {
      fprop_tc<scalar_t, index_t>(d, x, w, b, y, stream);
      return;
    }
  }
  fprop_simt<scalar_t, index_t>(d, x, w, b, y, stream);
}

template <typename scalar_t, typename index_t>
void run_grad_input(Kind kind, const ConvDesc& d, const scalar_t* dy, const scalar_t* w,
                    const scalar_t* w_rsc, scalar_t* dx, cudaStream_t stream) {
  if (kind == Kind::Direct) {
    dgrad_direct<scalar_t, index_t>(d, dy, w, w_rsc, dx, stream);
    return;
  }
  if constexpr (kHasTensorCoreKernels<scalar_t>) {
    if (kind == Kind::TensorCore) {
      dgrad_tc<scalar_t, index_t>(d, dy, w, dx, stream);
      return;
    }
  }
  dgrad_simt<scalar_t, index_t>(d, dy, w, dx, stream);
}

// First pass of the weight gradient: one partial sum per split-K slice into the workspace.
template <typename scalar_t, typename index_t>
void wgrad_partial_sums(Kind kind, const ConvDesc& d, const SplitK& split, const scalar_t* dy,
                        const scalar_t* x, at::opmath_type<scalar_t>* ws, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  if (kind == Kind::Direct) {
    wgrad_direct<scalar_t, acc_t, index_t>(d, split, dy, x, ws, stream);
    return;
  }
  if constexpr (kHasTensorCoreKernels<scalar_t>) {
    if (kind == Kind::TensorCore) {
      wgrad_tc<scalar_t, index_t>(d, split, dy, x, ws, stream);
      return;
    }
  }
  wgrad_simt<scalar_t, acc_t, index_t>(d, split, dy, x, ws, stream);
}

template <typename scalar_t, typename index_t>
void run_grad_weight(Kind kind, const ConvDesc& d, const SplitK& split, const scalar_t* dy,
                     const scalar_t* x, at::opmath_type<scalar_t>* ws, scalar_t* dw,
                     cudaStream_t stream) {
  wgrad_partial_sums<scalar_t, index_t>(kind, d, split, dy, x, ws, stream);
  // Second pass: sum the slices in slice order (no atomics: bitwise reproducible).
  wgrad_reduce<scalar_t, at::opmath_type<scalar_t>, index_t>(d, split.slices, ws, dw, stream);
}

#define TORCHCONV_DISPATCH_CUDA(dtype, name, ...) \
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

enum class Op { Forward, GradInput, GradWeight };

// Depthwise convolutions run the direct kernels. So do forwards with groups of a few channels,
// which leave most of an implicit-GEMM tile (64 x 64) empty: on an H200 (float16, ResNeXt's
// 4-channel groups) the direct forward measured 0.14x cuDNN against the GEMM's 0.08x, while
// the direct gradients measured 0.03x against the GEMM's 0.07-0.08x, so those stay on the GEMM.
constexpr int64_t kDirectMaxGroupChannels = 16;

bool uses_direct_kernels(Op op, const Geometry& g) {
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  return g.groups > 1 && (cpg == 1 || (op == Op::Forward && cpg <= kDirectMaxGroupChannels &&
                                       kpg <= kDirectMaxGroupChannels));
}

Kind choose_kind(Op op, const Geometry& g, const at::Tensor& t) {
  if (uses_direct_kernels(op, g)) {
    return Kind::Direct;
  }
  return use_tensor_cores(t.scalar_type(), t.device()) ? Kind::TensorCore : Kind::Simt;
}

// ---- CUTLASS tier (the tensor-core path's Half, BFloat16 and TF32 problems) ------------------
// Its kernels need channel counts that are multiples of kCutlassChannelAlignment. With channel
// padding switched on (TORCHCONV_CUDA_CUTLASS_PAD=1; off by default because it has not yet run
// on a GPU), other counts are zero-padded up to one -- copies of the operands with zero
// channels appended, which add exact zeros to every sum -- as long as that at most triples a
// channel count (C >= 3).

int64_t padded_channels(int64_t channels) {
  return (channels + kCutlassChannelAlignment - 1) / kCutlassChannelAlignment *
         kCutlassChannelAlignment;
}

// The tensor-core dtypes (float as TF32: Kind::TensorCore says TF32 is allowed).
#define TORCHCONV_DISPATCH_CUTLASS(dtype, name, ...)              \
  AT_DISPATCH_SWITCH(dtype, name,                                 \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)     \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__))

bool cutlass_candidate(Kind kind, const Geometry& g, at::ScalarType dtype, bool wide) {
  const bool pad = cutlass_padding_enabled();
  const auto paddable = [pad](int64_t c) {
    return c % kCutlassChannelAlignment == 0 || (pad && padded_channels(c) <= 3 * c);
  };
  return kind == Kind::TensorCore && !wide && cutlass_tier_enabled() && g.groups == 1 &&
         (dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat) &&
         paddable(g.in_channels) && paddable(g.out_channels);
}

// The geometry with both channel counts padded.
Geometry padded_geometry(const Geometry& g) {
  Geometry p = g;
  p.in_channels = padded_channels(g.in_channels);
  p.out_channels = padded_channels(g.out_channels);
  return p;
}

// `t` (4-D) with dims 0 and 1 zero-padded to (d0, d1), channels_last; `t` itself when already
// that size. (at::empty, then zero_: at::zeros ignores the options' memory format.)
at::Tensor zero_padded(const at::Tensor& t, int64_t d0, int64_t d1) {
  if (t.size(0) == d0 && t.size(1) == d1) {
    return t;
  }
  at::Tensor p = at::empty({d0, d1, t.size(2), t.size(3)},
                           t.options().memory_format(at::MemoryFormat::ChannelsLast))
                     .zero_();
  p.narrow(0, 0, t.size(0)).narrow(1, 0, t.size(1)).copy_(t);
  return p;
}

// Where a CUTLASS kernel writes a (d0, d1, h, w) result that `result` holds the leading part of:
// `result` itself when it is that size and dense channels_last, else a channels_last buffer
// (deliver() copies the part back).
at::Tensor nhwc_target(const at::Tensor& result, int64_t d0, int64_t d1) {
  if (result.size(0) == d0 && result.size(1) == d1 &&
      result.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return result;
  }
  return at::empty({d0, d1, result.size(2), result.size(3)},
                   result.options().memory_format(at::MemoryFormat::ChannelsLast));
}

void deliver(const at::Tensor& buffer, at::Tensor& result) {
  if (!buffer.is_same(result)) {
    result.copy_(buffer.narrow(0, 0, result.size(0)).narrow(1, 0, result.size(1)));
  }
}

bool cutlass_forward(const Geometry& g, const at::Tensor& x, const at::Tensor& w,
                     const at::Tensor& b, at::Tensor& output, cudaStream_t stream) {
#ifdef TORCHCONV_WITH_CUTLASS
  const Geometry gp = padded_geometry(g);
  const at::Tensor xp = zero_padded(x, gp.batch, gp.in_channels);
  const at::Tensor wp = zero_padded(w, gp.out_channels, gp.in_channels);
  at::Tensor bp = b;
  if (b.defined() && gp.out_channels != g.out_channels) {
    bp = at::zeros({gp.out_channels}, b.options());
    bp.narrow(0, 0, g.out_channels).copy_(b);
  }
  const at::Tensor y = nhwc_target(output, gp.batch, gp.out_channels);
  const ConvDesc d = make_desc(gp, xp, wp, y);
  bool ran = false;
  TORCHCONV_DISPATCH_CUTLASS(x.scalar_type(), "torchconv_conv2d_cutlass", [&] {
    ran = fprop_cutlass<scalar_t>(d, xp.const_data_ptr<scalar_t>(),
                                  wp.const_data_ptr<scalar_t>(),
                                  bp.defined() ? bp.const_data_ptr<scalar_t>() : nullptr,
                                  y.mutable_data_ptr<scalar_t>(), stream);
  });
  if (ran) {
    deliver(y, output);
  }
  return ran;
#else
  (void)g, (void)x, (void)w, (void)b, (void)output, (void)stream;
  return false;
#endif
}

bool cutlass_grad_input(const Geometry& g, const at::Tensor& dy, const at::Tensor& w,
                        at::Tensor& grad_input, cudaStream_t stream) {
#ifdef TORCHCONV_WITH_CUTLASS
  const Geometry gp = padded_geometry(g);
  const at::Tensor dyp = zero_padded(dy, gp.batch, gp.out_channels);
  const at::Tensor wp = zero_padded(w, gp.out_channels, gp.in_channels);
  const at::Tensor dx = nhwc_target(grad_input, gp.batch, gp.in_channels);
  const ConvDesc d = make_desc(gp, dx, wp, dyp);
  bool ran = false;
  TORCHCONV_DISPATCH_CUTLASS(dy.scalar_type(), "torchconv_conv2d_grad_input_cutlass", [&] {
    ran = dgrad_cutlass<scalar_t>(d, dyp.const_data_ptr<scalar_t>(),
                                  wp.const_data_ptr<scalar_t>(), dx.mutable_data_ptr<scalar_t>(),
                                  stream);
  });
  if (ran) {
    deliver(dx, grad_input);
  }
  return ran;
#else
  (void)g, (void)dy, (void)w, (void)grad_input, (void)stream;
  return false;
#endif
}

// A 1x1 kernel without padding and with stride > 1 (a ResNet downsampling shortcut) reaches
// only the grad_input pixels (oh*sh, ow*sw): their gradient is the stride-1 input gradient over
// the output grid, and every other pixel is zero.
bool is_strided_1x1(const Geometry& g) {
  return g.kernel_height == 1 && g.kernel_width == 1 && g.pad_top == 0 && g.pad_left == 0 &&
         (g.stride_h > 1 || g.stride_w > 1);
}

bool cutlass_grad_input_strided_1x1(const Geometry& g, const at::Tensor& dy,
                                    const at::Tensor& w, at::Tensor& grad_input,
                                    cudaStream_t stream) {
  Geometry grid = g;
  grid.in_height = g.out_height;
  grid.in_width = g.out_width;
  grid.stride_h = grid.stride_w = 1;
  at::Tensor reached = at::empty({g.batch, g.in_channels, g.out_height, g.out_width},
                                 grad_input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (!cutlass_grad_input(grid, dy, w, reached, stream)) {
    return false;
  }
  grad_input.zero_();
  grad_input.slice(2, 0, g.out_height * g.stride_h, g.stride_h)
      .slice(3, 0, g.out_width * g.stride_w, g.stride_w)
      .copy_(reached);
  return true;
}

bool cutlass_grad_weight(const Geometry& g, const at::Tensor& dy, const at::Tensor& x,
                         at::Tensor& grad_weight, cudaStream_t stream) {
#ifdef TORCHCONV_WITH_CUTLASS
  const Geometry gp = padded_geometry(g);
  const at::Tensor dyp = zero_padded(dy, gp.batch, gp.out_channels);
  const at::Tensor xp = zero_padded(x, gp.batch, gp.in_channels);
  // the reduction writes grad_weight directly, or a padded buffer when channels were padded
  const bool padded = gp.in_channels != g.in_channels || gp.out_channels != g.out_channels;
  const at::Tensor dw = padded ? nhwc_target(grad_weight, gp.out_channels, gp.in_channels)
                               : grad_weight;
  const ConvDesc d = make_desc(gp, xp, dw, dyp);
  const int64_t rsc = gp.kernel_height * gp.kernel_width * gp.in_channels;
  const SplitK split = plan_split_k(gp.batch * gp.out_height * gp.out_width,
                                    ((gp.out_channels + kCutlassTileM - 1) / kCutlassTileM) *
                                        ((rsc + kCutlassTileN - 1) / kCutlassTileN));
  const at::Tensor ws =
      at::empty({split.slices * gp.out_channels * rsc}, dy.options().dtype(at::kFloat));
  bool ran = false;
  TORCHCONV_DISPATCH_CUTLASS(dy.scalar_type(), "torchconv_conv2d_grad_weight_cutlass", [&] {
    ran = wgrad_cutlass<scalar_t>(d, split.slices, dyp.const_data_ptr<scalar_t>(),
                                  xp.const_data_ptr<scalar_t>(), ws.mutable_data_ptr<float>(),
                                  stream);
    if (ran) {
      auto reduce = ws.numel() > kInt32Limit ? &wgrad_reduce<scalar_t, float, int64_t>
                                             : &wgrad_reduce<scalar_t, float, int32_t>;
      reduce(d, split.slices, ws.const_data_ptr<float>(), dw.mutable_data_ptr<scalar_t>(),
             stream);
    }
  });
  if (ran) {
    deliver(dw, grad_weight);
  }
  return ran;
#else
  (void)g, (void)dy, (void)x, (void)grad_weight, (void)stream;
  return false;
#endif
}

// The depthwise weight as a dense (R, S, C) array, for the channel-vector kernels: defined when
// they may apply (channel multiplier 1, real dtype, activations channels-fast).
at::Tensor depthwise_weight_rsc(const Geometry& g, const at::Tensor& activation,
                                const at::Tensor& weight) {
  if (g.in_channels != g.groups || g.out_channels != g.groups || weight.is_complex() ||
      activation.stride(1) != 1) {
    return at::Tensor();
  }
  return weight.resolve_conj().permute({2, 3, 0, 1}).contiguous();
}

template <typename scalar_t>
const scalar_t* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

struct CudaBackend {
  static void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::Tensor& output) {
    check_same_device(input, weight);
    if (bias.has_value()) {
      check_same_device(input, *bias);
    }
    const c10::cuda::CUDAGuard guard(input.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(input.device().index());
    const Kind kind = choose_kind(Op::Forward, g, input);
    const bool gemm = kind != Kind::Direct;
    const at::Tensor x = gemm ? gemm_operand(input) : input.resolve_conj();
    const at::Tensor w = gemm ? gemm_operand(weight) : weight.resolve_conj();
    const at::Tensor b = bias.has_value() ? bias->resolve_conj().contiguous() : at::Tensor();
    const ConvDesc d = make_desc(g, x, w, output);
    const bool wide = needs_int64(g, {extent(x), extent(w), extent(output)});
    if (cutlass_candidate(kind, g, x.scalar_type(), wide) &&
        cutlass_forward(g, x, w, b, output, stream)) {
      return;
    }
    const at::Tensor w_rsc = gemm ? at::Tensor() : depthwise_weight_rsc(g, x, w);
    TORCHCONV_DISPATCH_CUDA(x.scalar_type(), "torchconv_conv2d_cuda", [&] {
      auto run = wide ? &run_forward<scalar_t, int64_t> : &run_forward<scalar_t, int32_t>;
      run(kind, d, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
          data_or_null<scalar_t>(w_rsc), data_or_null<scalar_t>(b),
          output.mutable_data_ptr<scalar_t>(), stream);
    });
  }

  static void grad_input(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, at::Tensor& grad_input) {
    check_same_device(grad_output, weight);
    const c10::cuda::CUDAGuard guard(grad_output.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(grad_output.device().index());
    const Kind kind = choose_kind(Op::GradInput, g, grad_output);
    const bool gemm = kind != Kind::Direct;
    const at::Tensor dy = gemm ? gemm_operand(grad_output) : grad_output.resolve_conj();
    const at::Tensor w = gemm ? gemm_operand(weight) : weight.resolve_conj();
    const ConvDesc d = make_desc(g, grad_input, w, dy);
    const bool wide = needs_int64(g, {extent(dy), extent(w), extent(grad_input)});
    if (cutlass_candidate(kind, g, dy.scalar_type(), wide) &&
        (is_strided_1x1(g) ? cutlass_grad_input_strided_1x1(g, dy, w, grad_input, stream)
                           : cutlass_grad_input(g, dy, w, grad_input, stream))) {
      return;
    }
    const at::Tensor w_rsc = gemm ? at::Tensor() : depthwise_weight_rsc(g, dy, w);
    TORCHCONV_DISPATCH_CUDA(dy.scalar_type(), "torchconv_conv2d_grad_input_cuda", [&] {
      auto run = wide ? &run_grad_input<scalar_t, int64_t> : &run_grad_input<scalar_t, int32_t>;
      run(kind, d, dy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
          data_or_null<scalar_t>(w_rsc), grad_input.mutable_data_ptr<scalar_t>(), stream);
    });
  }

  static void grad_weight(const Geometry& g, const at::Tensor& grad_output,
                          const at::Tensor& input, at::Tensor& grad_weight) {
    check_same_device(grad_output, input);
    const c10::cuda::CUDAGuard guard(grad_output.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(grad_output.device().index());
    const Kind kind = choose_kind(Op::GradWeight, g, grad_output);
    const bool gemm = kind != Kind::Direct;
    const at::Tensor dy = gemm ? gemm_operand(grad_output) : grad_output.resolve_conj();
    const at::Tensor x = gemm ? gemm_operand(input) : input.resolve_conj();
    const ConvDesc d = make_desc(g, x, grad_weight, dy);
    if (cutlass_candidate(kind, g, dy.scalar_type(),
                          needs_int64(g, {extent(dy), extent(x), extent(grad_weight)})) &&
        cutlass_grad_weight(g, dy, x, grad_weight, stream)) {
      return;
    }

    // Split of the N*OH*OW reduction; the workspace holds one opmath-typed weight per slice.
    const int64_t length = g.batch * g.out_height * g.out_width;
    const int64_t kpg = g.out_channels_per_group();
    const int64_t rsc = g.kernel_height * g.kernel_width * g.in_channels_per_group();
    const int64_t tiles =
        gemm ? ((kpg + kGemmTileM - 1) / kGemmTileM) * ((rsc + kGemmTileN - 1) / kGemmTileN) *
                   g.groups
             : wgrad_direct_tiles(d);
    const SplitK split = plan_split_k(length, tiles);
    const at::Tensor ws = at::empty({split.slices * g.out_channels * rsc},
                                    dy.options().dtype(at::toOpMathType(dy.scalar_type())));
    const bool wide = needs_int64(g, {extent(dy), extent(x), extent(grad_weight), ws.numel()});
    TORCHCONV_DISPATCH_CUDA(dy.scalar_type(), "torchconv_conv2d_grad_weight_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto run =
          wide ? &run_grad_weight<scalar_t, int64_t> : &run_grad_weight<scalar_t, int32_t>;
      run(kind, d, split, dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
          static_cast<acc_t*>(ws.data_ptr()), grad_weight.mutable_data_ptr<scalar_t>(), stream);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(torchconv, CUDA, m) {
  register_backend<CudaBackend>(m);
}

}  // namespace torchconv::cuda

#endif  // !defined(__CUDA_ARCH__)
