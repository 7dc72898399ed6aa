#include "conv2d_checks.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <array>
#include <sstream>

#include "cpu/fast_paths.h"

namespace torchconv {
namespace {

using c10::SymInt;
using c10::SymIntArrayRef;

bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

// Whether F.conv2d returns channels_last for operands `a`, `b` (input and weight, or grad_output
// and the other operand in the backward ops) when their layouts alone decide: channels_last when
// either one is, except float64 on CUDA (cuDNN has no channels_last double kernels, and native
// falls back to contiguous).
bool result_is_channels_last(const at::Tensor& a, const at::Tensor& b) {
  if (a.is_cuda() && c10::toRealValueType(a.scalar_type()) == at::kDouble) {
    return false;
  }
  return is_channels_last(a) || is_channels_last(b);
}

// --- F.conv2d's result layout on CPU for strides that do not decide it ------------------------
// A tensor with size-1 dimensions can look channels_last and contiguous at once; native's result
// then depends on the backend it picks. oneDNN follows the rule above. Its fallback (float64,
// float16/bfloat16 without oneDNN support, some small float32 calls) first makes both operands
// dense in the format the rule above chose, and a grouped call then runs each group on a dense
// copy of its slice and concatenates the results: a slice can stop looking channels_last (an
// N x 1 x 1 x 1 one does), and the result follows the slices. Complex calls combine three real
// convolutions (Gauss) with elementwise ops, whose layout is TensorIterator's. These rules are
// replayed on data-less meta twins of the operands, so PyTorch's own stride logic answers.

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// False when a size or stride of `t` is symbolic (then the plain rule holds).
bool has_concrete_layout(const at::Tensor& t) {
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (!t.sym_size(d).maybe_as_int() || !t.sym_stride(d).maybe_as_int()) return false;
  }
  return true;
}

// The dense copy `t.contiguous(format)` would give (or `t` itself when it already is dense).
at::Tensor dense_as(const at::Tensor& t, at::MemoryFormat format) {
  return t.is_contiguous(format) ? t : at::empty(t.sizes(), t.options().memory_format(format));
}

#if defined(__x86_64__) || defined(__i386__)
// AVX-VNNI-INT8 with AVX-NE-CONVERT: the AVX2 level at which oneDNN runs bfloat16/float16.
bool cpu_has_avx2_vnni_2() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (edx & (1u << 4)) && (edx & (1u << 5)) && __builtin_cpu_supports("avx2");
}
// PyTorch's oneDNN device checks for reduced-precision convolutions.
bool cpu_has_onednn_bf16() {
  static const bool has = cpu::fast::cpu_has_avx512_core() || cpu_has_avx2_vnni_2();
  return has;
}
bool cpu_has_onednn_fp16() {
  static const bool has =
      (cpu::fast::cpu_has_avx512_core() && __builtin_cpu_supports("avx512fp16")) ||
      cpu_has_avx2_vnni_2();
  return has;
}
#else
bool cpu_has_onednn_bf16() { return false; }
bool cpu_has_onednn_fp16() { return false; }
#endif

// PyTorch's CPU backend choice for a real convolution of `x` (ConvParams::use_mkldnn), of
// element type `type` (x's, or the real parts' of a complex x).
bool native_cpu_uses_onednn(const at::Tensor& x, const at::Tensor& w, bool strided, bool dilated,
                            int64_t groups, at::ScalarType type) {
  if (!at::globalContext().userEnabledMkldnn()) return false;
  switch (type) {
    case at::kBFloat16: return cpu_has_onednn_bf16();
    case at::kHalf: return cpu_has_onednn_fp16();
    case at::kFloat: break;
    default: return false;
  }
  const int64_t batch = x.size(0);
  const bool one_by_one = w.size(2) == 1 && w.size(3) == 1;
  return (strided || dilated || batch >= 16 || !one_by_one || at::get_num_threads() > 1) &&
         (groups > 1 || (w.size(2) > 3 && w.size(3) > 3) || batch > 1 || x.numel() > 20480);
}

// Layout of a real CPU convolution of meta twins `x` (after any 'same' padding copy) and `w`.
bool native_cpu_real_channels_last(const at::Tensor& x, const at::Tensor& w,
                                   at::IntArrayRef out_size, bool strided, bool dilated,
                                   int64_t groups) {
  const bool by_operands = is_channels_last(x) || is_channels_last(w);
  if (native_cpu_uses_onednn(x, w, strided, dilated, groups, x.scalar_type())) return by_operands;
  at::Tensor xd = dense_as(x, format_of(by_operands));
  at::Tensor wd = dense_as(w, format_of(by_operands));
  if (groups == 1) return is_channels_last(xd) || is_channels_last(wd);
  const at::Tensor x_group = dense_as(xd.narrow(1, 0, xd.size(1) / groups),
                                      xd.suggest_memory_format());
  const at::Tensor w_group = dense_as(wd.narrow(0, 0, wd.size(0) / groups),
                                      wd.suggest_memory_format());
  const bool group_channels_last = is_channels_last(x_group) || is_channels_last(w_group);
  std::vector<int64_t> group_size(out_size.begin(), out_size.end());
  group_size[1] /= groups;
  const at::Tensor group_result = at::empty(
      group_size, x.options().memory_format(format_of(group_channels_last)));
  return is_channels_last(group_result);  // at::cat keeps the format its pieces suggest
}

// Result layout of F.conv2d on CPU for concrete 4-D `input`, `weight`; `padded_size` is the
// size of the zero-padded copy an asymmetric 'same' makes of the input (empty when none).
bool native_cpu_result_channels_last(const at::Tensor& input, const at::Tensor& weight,
                                     at::IntArrayRef padded_size, at::IntArrayRef out_size,
                                     bool strided, bool dilated, int64_t groups) {
  // The replay must not reach FakeTensorMode or functionalization when tracing.
  c10::impl::ExcludeDispatchKeyGuard plain_dispatch(
      c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                           c10::DispatchKey::Functionalize}));
  const auto twin = [](const at::Tensor& t) {
    at::Tensor m = at::empty_strided(t.sizes(), t.strides(),
                                     at::TensorOptions().device(at::kMeta).dtype(t.dtype()));
    return t.is_conj() ? at::empty_like(m) : m;  // resolve_conj() makes a copy
  };
  at::Tensor x = twin(input);
  const at::Tensor w = twin(weight);
  if (!padded_size.empty()) {
    x = at::empty(padded_size, x.options().memory_format(x.suggest_memory_format()));
  }
  if (!x.is_complex()) {
    return native_cpu_real_channels_last(x, w, out_size, strided, dilated, groups);
  }
  const auto parts = [](const at::Tensor& t) {
    const at::Tensor pairs = at::view_as_real(t);
    return std::make_pair(pairs.select(-1, 0), pairs.select(-1, 1));
  };
  const auto [x_re, x_im] = parts(x);
  const auto [w_re, w_im] = parts(w);
  const auto real_result = [&](const at::Tensor& a, const at::Tensor& b) {
    const bool cl = native_cpu_real_channels_last(a, b, out_size, strided, dilated, groups);
    return at::empty(out_size, a.options().memory_format(format_of(cl)));
  };
  const at::Tensor re_re = real_result(x_re, w_re);
  const at::Tensor im_im = real_result(x_im, w_im);
  const at::Tensor sums = real_result(x_re + x_im, w_re + w_im);
  const at::Tensor result =
      re_re - im_im + c10::Scalar(c10::complex<double>(0, 1)) * (sums - re_re - im_im);
  return result.is_contiguous(at::MemoryFormat::ChannelsLast) && !result.is_contiguous();
}

// Whether a 4-D input's batch / channel count is 0: PyTorch's empty backend then runs, on every
// device (a symbolic size is never 0: torch.compile specializes 0 and 1).
struct EmptyInput {
  bool batch, channels;
  EmptyInput(const SymInt& batch_size, const SymInt& channel_count) {
    const auto n = batch_size.maybe_as_int(), c = channel_count.maybe_as_int();
    batch = n && *n == 0;
    channels = c && *c == 0;
  }
  explicit EmptyInput(const at::Tensor& input) : EmptyInput(input.sym_size(0), input.sym_size(1)) {}
  bool any() const { return batch || channels; }
};

// The layout of F.conv2d's result for an input with a batch of 0 and some channels: PyTorch's
// empty backend returns (input * w[0]).view(output size), which keeps the input's layout
// (TensorIterator's) where the output has the input's size, as a view of an unchanged shape
// keeps its strides, and is contiguous otherwise. A layout that is neither contiguous nor
// channels_last (a permuted empty input) comes out contiguous here.
bool empty_batch_result_channels_last(const at::Tensor& input, at::IntArrayRef out_size) {
  if (input.sizes() != out_size) return false;
  c10::impl::ExcludeDispatchKeyGuard plain_dispatch(
      c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                           c10::DispatchKey::Functionalize}));
  // (an empty CPU twin, no data: meta tensors' TensorIterator makes empty results contiguous)
  const at::Tensor twin = at::empty_strided(input.sizes(), input.strides(),
                                            at::TensorOptions().dtype(input.dtype()));
  const auto empty_backend = [](const at::Tensor& x) { return x * at::ones({}, x.options()); };
  at::Tensor result;
  if (twin.is_complex()) {  // three real convolutions combined (Gauss), as PyTorch's
    const at::Tensor re = at::real(twin), im = at::imag(twin);
    const at::Tensor a = empty_backend(re), b = empty_backend(im), c = empty_backend(re + im);
    result = a - b + c10::Scalar(c10::complex<double>(0, 1)) * (c - a - b);
  } else {
    result = empty_backend(twin);
  }
  // (strides compared: an empty tensor counts as contiguous in every format)
  return result.strides() ==
         at::empty(out_size, twin.options().memory_format(at::MemoryFormat::ChannelsLast))
             .strides();
}

// The checks of the backend that F.conv2d picks, made after its common ones (the caller's): an
// empty batch or channel set takes the empty backend, which checks nothing more but, with no
// batch, reads the flattened weight's first element; the other backends reject empty planes,
// then each checks kernel and dilation in its own words. `input` is 4-D; `input_size` is the
// size of the tensor PyTorch convolves (a 'same' path's copy).
void check_backend(SymIntArrayRef input_size, const EmptyInput& empty, const at::Tensor& input,
                   const at::Tensor& weight, const std::vector<SymInt>& stride,
                   const std::vector<SymInt>& dilation, const SymInt& groups) {
  if (empty.any()) {
    TORCH_CHECK_INDEX(empty.channels || weight.sym_numel() != 0,
                      "select(): index 0 out of range for tensor of size [0] at dimension 0");
    return;
  }
  TORCH_CHECK(input_size[2] != 0 && input_size[3] != 0,
              "Only zero batch or zero channel inputs are supported, but got input shape: ",
              input_size);
  const SymInt kh = weight.sym_size(2), kw = weight.sym_size(3);
  const bool kernel_empty = kh == 0 || kw == 0;
  const bool dilation_nonpositive = dilation[0] <= 0 || dilation[1] <= 0;
  if (!kernel_empty && !dilation_nonpositive) return;
  const auto slow_conv2d_kernel_check = [&] {
    TORCH_CHECK(!kernel_empty, "kernel size should be greater than zero, but got kernel_height: ",
                kh, " kernel_width: ", kw);
  };
  if (!input.device().is_cpu()) {  // CUDA: cuDNN's own words are not replayed
    TORCH_CHECK(!dilation_nonpositive, "non-positive dilation is not supported");
    slow_conv2d_kernel_check();
    return;
  }
  const bool dilated = dilation[0] != 1 || dilation[1] != 1;
  const auto g = groups.maybe_as_int();
  const bool onednn =
      !g || !has_concrete_layout(input) || !has_concrete_layout(weight) ||
      native_cpu_uses_onednn(input, weight, stride[0] != 1 || stride[1] != 1, dilated, *g,
                             c10::toRealValueType(input.scalar_type()));
  if (onednn) {
    TORCH_CHECK(!dilation_nonpositive, "non-positive dilation is not supported");
    TORCH_CHECK(!kernel_empty,
                "could not create a primitive descriptor for the convolution forward "
                "propagation primitive. Run workload with environment variable ONEDNN_VERBOSE=all "
                "to get additional diagnostic information.");
  } else if (dilated) {  // slow_conv_dilated2d
    TORCH_CHECK(!kernel_empty, "kernel size should be greater than zero, but got ",
                weight.sym_sizes().slice(2));
    TORCH_CHECK(!dilation_nonpositive, "dilation should be greater than zero, but got ",
                SymIntArrayRef(dilation));
  } else {  // slow_conv2d
    slow_conv2d_kernel_check();
  }
}

// plan_forward's layout on CPU: the replay above when every size is known, else `plain`.
bool cpu_result_is_channels_last(const at::Tensor& input, const at::Tensor& weight,
                                 const ConvPlan& plan, const std::vector<SymInt>& pad_lead,
                                 const std::vector<SymInt>& pad_trail, bool plain) {
  const auto& g = plan.geometry;
  const auto groups = g.groups.maybe_as_int();
  const auto out_h = g.out_height.maybe_as_int(), out_w = g.out_width.maybe_as_int();
  if (!has_concrete_layout(input) || !has_concrete_layout(weight) ||
      !groups || !out_h || !out_w || input.numel() == 0) {
    return plain;
  }
  std::vector<int64_t> padded_size;
  bool strided = false, dilated = false;
  const SymInt* dilation[2] = {&g.dilation_h, &g.dilation_w};
  const SymInt* stride[2] = {&g.stride_h, &g.stride_w};
  for (int d = 0; d < 2; ++d) {
    const auto lead = pad_lead[d].maybe_as_int(), trail = pad_trail[d].maybe_as_int();
    const auto s = stride[d]->maybe_as_int(), dil = dilation[d]->maybe_as_int();
    if (!lead || !trail || !s || !dil) return plain;
    strided = strided || *s != 1;
    dilated = dilated || *dil != 1;
    if (*lead != *trail) padded_size = input.sizes().vec();  // asymmetric 'same'
  }
  if (!padded_size.empty()) {
    for (int d = 0; d < 2; ++d) {
      padded_size[d + 2] += (pad_trail[d] - pad_lead[d]).expect_int();
    }
  }
  if (padded_size.empty() &&
      native_cpu_uses_onednn(input, weight, strided, dilated, *groups, input.scalar_type())) {
    return plain;  // the common case needs no replay
  }
  const std::vector<int64_t> out_size{input.size(0), weight.size(0), *out_h, *out_w};
  return native_cpu_result_channels_last(input, weight, padded_size, out_size, strided, dilated,
                                         *groups);
}

// F.conv2d accepts one value (broadcast) or one per spatial dimension.
std::vector<SymInt> expand_param(SymIntArrayRef values, const char* name, int64_t dims) {
  if (values.size() == 1) {
    return std::vector<SymInt>(dims, values[0]);
  }
  TORCH_CHECK(static_cast<int64_t>(values.size()) == dims, "expected ", name,
              " to be a single integer value or a list of ", dims,
              " values to match the convolution dimensions, but got ", name, "=", values);
  return values.vec();
}

// The weight-dtype message differs by backend in PyTorch; we reproduce the CPU and CUDA ones.
void check_same_type(const at::Tensor& input, const at::Tensor& other, const char* what) {
  if (input.options().type_equal(other.options())) {
    return;
  }
  const auto dtype = input.scalar_type();
  if (input.device().is_cpu() && other.device().is_cpu()) {
    if (dtype != at::kFloat && dtype != at::kBFloat16 && !c10::isComplexType(dtype)) {
      TORCH_CHECK(false, "expected scalar type ", dtype, " but found ", other.scalar_type());
    }
    if (!c10::isComplexType(dtype)) {
      TORCH_CHECK(false, "Input type (", input.toString(), ") and ", what, " type (",
                  other.toString(), ") should be the same or input should be a MKLDNN tensor and ",
                  what, " is a dense tensor");
    }
  }
  TORCH_CHECK(false, "Input type (", input.toString(), ") and ", what, " type (", other.toString(),
              ") should be the same");
}

void check_leading_bias_dtype(const at::Tensor& input, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(!bias.has_value() || bias->dtype() == input.dtype(), "Input type (",
              input.dtype().name(), ") and bias type (", bias->dtype().name(),
              ") should be the same");
}

void check_input_dims(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 3 || input.dim() == 4,
              "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: ",
              input.sym_sizes());
}

void check_weight_rank_and_groups(const at::Tensor& weight, const SymInt& groups) {
  TORCH_CHECK(weight.dim() >= 3, "weight should have at least three dimensions");
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
}

}  // namespace

std::vector<SymInt> ConvPlan::output_size() const {
  const auto& g = geometry;
  // Like F.conv2d, a convolution over zero input channels returns zero output channels.
  const SymInt channels = g.in_channels == 0 ? SymInt(0) : g.out_channels;
  if (batched) {
    return {g.batch, channels, g.out_height, g.out_width};
  }
  return {channels, g.out_height, g.out_width};
}

std::vector<SymInt> ConvPlan::input_size() const {
  const auto& g = geometry;
  if (batched) {
    return {g.batch, g.in_channels, g.in_height, g.in_width};
  }
  return {g.in_channels, g.in_height, g.in_width};
}

std::vector<SymInt> ConvPlan::weight_size() const {
  const auto& g = geometry;
  return {g.out_channels, g.in_channels_per_group(), g.kernel_height, g.kernel_width};
}

ConvPlan plan_forward(const at::Tensor& input_, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias_in, SymIntArrayRef stride_in,
                      SymIntArrayRef padding_in, const std::string& padding_mode,
                      SymIntArrayRef dilation_in, const SymInt& groups) {
  // An undefined tensor passed for an optional bias means "no bias".
  const std::optional<at::Tensor> bias =
      bias_in.has_value() && bias_in->defined() ? bias_in : std::nullopt;
  const bool numeric_padding = padding_mode.empty();
  const bool same = padding_mode == "same";

  // --- argument checks, in F.conv2d's order -------------------------------------------------
  if (numeric_padding) {
    check_leading_bias_dtype(input_, bias);
  }
  check_input_dims(input_);
  TORCH_CHECK(numeric_padding || same || padding_mode == "valid",
              "Invalid padding string: '", padding_mode, "'");
  check_weight_rank_and_groups(weight, groups);

  const int64_t dims = weight.dim() - 2;
  const at::Tensor input = input_.dim() == 3 ? input_.unsqueeze(0) : input_;
  const auto check_input_rank = [&] {
    TORCH_CHECK(weight.dim() == input.dim(), "Expected ", weight.dim(),
                "-dimensional input for ", weight.dim(), "-dimensional weight",
                (same ? "" : " "), weight.sym_sizes(), ", but got ", input.dim(),
                "-dimensional input of size ", input.sym_sizes(), " instead");
  };
  std::vector<SymInt> stride, padding, dilation;
  if (same) {  // (PyTorch's 'same' path checks the input's rank first)
    check_input_rank();
    TORCH_CHECK(stride_in.size() == 1 || static_cast<int64_t>(stride_in.size()) == dims,
                "stride cannot broadcast to ", dims, " dimensions");
    TORCH_CHECK(dilation_in.size() == 1 || static_cast<int64_t>(dilation_in.size()) == dims,
                "dilation cannot broadcast to ", dims, " dimensions");
    stride = expand_param(stride_in, "stride", dims);
    dilation = expand_param(dilation_in, "dilation", dims);
  } else {
    stride = expand_param(stride_in, "stride", dims);
    if (numeric_padding) {
      padding = expand_param(padding_in, "padding", dims);
    }
    dilation = expand_param(dilation_in, "dilation", dims);
    check_input_rank();
  }

  // Leading and trailing padding per spatial dimension.
  std::vector<SymInt> pad_lead(2, SymInt(0)), pad_trail(2, SymInt(0));
  if (same) {
    for (const auto& s : stride) {
      TORCH_CHECK(s == 1, "padding='same' is not supported for strided convolutions");
    }
    for (int64_t d = 0; d < 2; ++d) {
      // The extra element of an odd total goes to the trailing side, as in PyTorch.
      const SymInt total = dilation[d] * (weight.sym_size(d + 2) - 1);
      pad_lead[d] = total / 2;
      pad_trail[d] = total - pad_lead[d];
    }
  } else if (numeric_padding) {
    pad_lead = padding;
    pad_trail = padding;
  }
  // The size of the input as PyTorch's checks below see it: its 'same' path first pads a copy of
  // the input by the extra trailing element of an odd total padding. An empty kernel dimension
  // makes the total negative (-dilation) and an odd one's extra element a missing one: the copy
  // is cropped by it (a 1-wide kernel-0 dimension then convolves with padding 0, and the
  // backend reports the kernel).
  const std::array<SymInt, 4> copy_size{input.sym_size(0), input.sym_size(1),
                                        input.sym_size(2) + (pad_trail[0] - pad_lead[0]),
                                        input.sym_size(3) + (pad_trail[1] - pad_lead[1])};
  TORCH_CHECK(copy_size[2] >= 0 && copy_size[3] >= 0, "narrow(): length must be non-negative.");
  for (int64_t d = 0; d < 2; ++d) {
    TORCH_CHECK(pad_lead[d] >= 0 && (same || pad_trail[d] >= 0),
                "negative padding is not supported");
  }
  for (const auto& s : stride) {
    TORCH_CHECK(s > 0, "non-positive stride is not supported");
  }
  for (const auto& d : dilation) {
    TORCH_CHECK(d >= 0, "dilation should be greater than zero");
  }

  const auto w = weight.sym_sizes();
  TORCH_CHECK(w[0] >= groups, "Given groups=", groups, ", expected weight to be at least ",
              groups, " at dimension 0, but got weight of size ", w, " instead");
  TORCH_CHECK(w[0] % groups == 0, "Given groups=", groups, ", expected weight to be divisible by ",
              groups, " at dimension 0, but got weight of size [", w, "] instead");
  TORCH_CHECK(input.sym_size(1) == w[1] * groups, "Given groups=", groups, ", weight of size ", w,
              ", expected input", SymIntArrayRef(copy_size), " to have ", w[1] * groups,
              " channels, but got ", input.sym_size(1), " channels instead");
  TORCH_CHECK(!bias.has_value() || (bias->dim() == 1 && bias->sym_size(0) == w[0]),
              "Given weight of size ", w, ", expected bias to be 1-dimensional with ", w[0],
              " elements, but got bias of size ", bias->sym_sizes(), " instead");

  auto check_kernel_fits = [&] {
    std::vector<SymInt> padded(2), extent(2);
    bool fits = true;
    for (int64_t d = 0; d < 2; ++d) {
      padded[d] = input.sym_size(d + 2) + pad_lead[d] + pad_trail[d];
      extent[d] = dilation[d] * (w[d + 2] - 1) + 1;
      fits = fits && !(padded[d] < extent[d]);
    }
    TORCH_CHECK(fits, "Calculated padded input size per channel: (", padded[0], " x ", padded[1],
                "). Kernel size: (", extent[0], " x ", extent[1],
                "). Kernel size can't be greater than actual input size");
  };
  // PyTorch's 'same' path compares dtypes before sizes; the other paths the other way round.
  if (same) {
    check_same_type(input, weight, "weight");
    check_kernel_fits();
  } else {
    check_kernel_fits();
    check_same_type(input, weight, "weight");
  }
  if (bias.has_value()) {
    check_same_type(input, *bias, "bias");
  }
  const EmptyInput empty(input);
  check_backend(copy_size, empty, input, weight, stride, dilation, groups);

  // --- geometry -------------------------------------------------------------------------------
  ConvPlan plan;
  plan.batched = input_.dim() == 4;
  plan.channels_last = result_is_channels_last(input, weight);
  auto& g = plan.geometry;
  g.batch = input.sym_size(0);
  g.in_channels = input.sym_size(1);
  g.in_height = input.sym_size(2);
  g.in_width = input.sym_size(3);
  g.out_channels = w[0];
  g.kernel_height = w[2];
  g.kernel_width = w[3];
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_top = pad_lead[0];
  g.pad_left = pad_lead[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;
  g.out_height = (g.in_height + pad_lead[0] + pad_trail[0] - dilation[0] * (w[2] - 1) - 1) /
                     stride[0] + 1;
  g.out_width = (g.in_width + pad_lead[1] + pad_trail[1] - dilation[1] * (w[3] - 1) - 1) /
                    stride[1] + 1;
  // PyTorch's empty backend (see EmptyInput): with no channels its result is contiguous, with
  // no batch see empty_batch_result_channels_last.
  if (empty.channels) {
    plan.channels_last = false;
  } else if (empty.batch) {
    const auto k = w[0].maybe_as_int();
    const auto out_h = g.out_height.maybe_as_int(), out_w = g.out_width.maybe_as_int();
    bool symmetric = true;  // (else an asymmetric 'same' convolves a larger copy of the input)
    for (int64_t d = 0; d < 2; ++d) {
      const auto lead = pad_lead[d].maybe_as_int(), trail = pad_trail[d].maybe_as_int();
      symmetric = symmetric && lead && trail && *lead == *trail;
    }
    plan.channels_last = symmetric && k && out_h && out_w && has_concrete_layout(input) &&
                         empty_batch_result_channels_last(input, {0, *k, *out_h, *out_w});
  } else if (input.device().is_cpu()) {
    plan.channels_last = cpu_result_is_channels_last(input, weight, plan, pad_lead, pad_trail,
                                                     plan.channels_last);
  }
  return plan;
}

namespace {

// The parameter checks of the two backward plans (`input_size`: the forward input's size).
void check_backward_params(SymIntArrayRef input_size, SymIntArrayRef stride,
                           SymIntArrayRef padding, SymIntArrayRef dilation, const SymInt& groups) {
  // (a forward over no batch or channels runs with dilation 0, as PyTorch's empty backend; the
  // sizes' rank is checked in backward_geometry)
  const auto empty_input = [&] {
    const size_t rank = input_size.size();
    return (rank == 3 || rank == 4) &&
           EmptyInput(rank == 4 ? input_size[0] : SymInt(1), input_size[rank - 3]).any();
  };
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "torchconv backward ops expect 2 values for stride, padding (top, left) and "
              "dilation");
  for (int64_t d = 0; d < 2; ++d) {
    TORCH_CHECK(stride[d] > 0, "non-positive stride is not supported");
    TORCH_CHECK(padding[d] >= 0, "negative padding is not supported");
    TORCH_CHECK(dilation[d] > 0 || (dilation[d] == 0 && empty_input()),
                "non-positive dilation is not supported");
  }
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
}

SymGeometry backward_geometry(SymIntArrayRef input_size, SymIntArrayRef weight_size,
                              const at::Tensor& grad_output, SymIntArrayRef stride,
                              SymIntArrayRef padding, SymIntArrayRef dilation,
                              const SymInt& groups) {
  const bool batched = input_size.size() == 4;
  TORCH_CHECK(input_size.size() == 3 || input_size.size() == 4,
              "torchconv: input_size must have 3 or 4 elements, got ", input_size);
  TORCH_CHECK(grad_output.dim() == static_cast<int64_t>(input_size.size()),
              "torchconv: grad_output of size ", grad_output.sym_sizes(),
              " does not match input_size ", input_size);
  TORCH_CHECK(weight_size.size() == 4, "torchconv: expected a 4-D weight, got size ",
              weight_size);
  const int64_t o = batched ? 0 : 1;  // offset of the channel dim in a 4-D view
  SymGeometry g;
  g.batch = batched ? input_size[0] : SymInt(1);
  g.in_channels = input_size[1 - o];
  g.in_height = input_size[2 - o];
  g.in_width = input_size[3 - o];
  g.out_channels = weight_size[0];
  g.kernel_height = weight_size[2];
  g.kernel_width = weight_size[3];
  g.out_height = grad_output.sym_size(2 - o);
  g.out_width = grad_output.sym_size(3 - o);
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_top = padding[0];
  g.pad_left = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;
  TORCH_CHECK(weight_size[0] % groups == 0 && g.in_channels == weight_size[1] * groups,
              "torchconv: weight of size ", weight_size, " and groups=", groups,
              " do not match input of size ", input_size);
  // The trailing padding is not passed; it is at most one more than the leading one ('same').
  const SymInt max_rows = (g.in_height + 2 * g.pad_top + 1 -
                           g.dilation_h * (g.kernel_height - 1) - 1) / g.stride_h + 1;
  const SymInt max_cols = (g.in_width + 2 * g.pad_left + 1 -
                           g.dilation_w * (g.kernel_width - 1) - 1) / g.stride_w + 1;
  TORCH_CHECK(g.out_height <= max_rows && g.out_width <= max_cols,
              "torchconv: grad_output of size ", grad_output.sym_sizes(),
              " is larger than a convolution of input size ", input_size, " with weight of size ",
              weight_size, " can produce");
  TORCH_CHECK((!batched || grad_output.sym_size(0) == g.batch) &&
                  (grad_output.sym_size(1 - o) == g.out_channels || g.in_channels == 0),
              "torchconv: grad_output of size ", grad_output.sym_sizes(),
              " does not match input of size ", input_size, " and weight of size ", weight_size);
  return g;
}

// Both backward ops: `other` is the forward operand they take (weight or input), named `what`
// in errors; the result's layout follows the same rule as the forward's.
ConvPlan plan_backward(const at::Tensor& grad_output, const at::Tensor& other, const char* what,
                       SymIntArrayRef input_size, SymIntArrayRef weight_size,
                       SymIntArrayRef stride, SymIntArrayRef padding, SymIntArrayRef dilation,
                       const SymInt& groups) {
  check_backward_params(input_size, stride, padding, dilation, groups);
  ConvPlan plan;
  plan.batched = input_size.size() == 4;
  plan.geometry = backward_geometry(input_size, weight_size, grad_output, stride, padding,
                                    dilation, groups);
  check_same_type(grad_output, other, what);
  const auto batched = [&](const at::Tensor& t) {
    return t.dim() == 3 ? t.unsqueeze(0) : t;
  };
  plan.channels_last = result_is_channels_last(batched(grad_output), batched(other));
  return plan;
}

}  // namespace

ConvPlan plan_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                         SymIntArrayRef input_size, SymIntArrayRef stride, SymIntArrayRef padding,
                         SymIntArrayRef dilation, const SymInt& groups) {
  return plan_backward(grad_output, weight, "weight", input_size, weight.sym_sizes(), stride,
                       padding, dilation, groups);
}

ConvPlan plan_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                          SymIntArrayRef weight_size, SymIntArrayRef stride,
                          SymIntArrayRef padding, SymIntArrayRef dilation, const SymInt& groups) {
  return plan_backward(grad_output, input, "input", input.sym_sizes(), weight_size, stride,
                       padding, dilation, groups);
}

std::vector<SymInt> leading_padding(const ConvPlan& plan) {
  return {plan.geometry.pad_top, plan.geometry.pad_left};
}

Geometry concrete(const SymGeometry& s) {
  auto c = [](const SymInt& v) { return v.guard_int(__FILE__, __LINE__); };
  Geometry g;
  g.batch = c(s.batch);
  g.in_channels = c(s.in_channels);
  g.in_height = c(s.in_height);
  g.in_width = c(s.in_width);
  g.out_channels = c(s.out_channels);
  g.kernel_height = c(s.kernel_height);
  g.kernel_width = c(s.kernel_width);
  g.out_height = c(s.out_height);
  g.out_width = c(s.out_width);
  g.stride_h = c(s.stride_h);
  g.stride_w = c(s.stride_w);
  g.pad_top = c(s.pad_top);
  g.pad_left = c(s.pad_left);
  g.dilation_h = c(s.dilation_h);
  g.dilation_w = c(s.dilation_w);
  g.groups = c(s.groups);
  return g;
}

at::Tensor empty_result(const ConvPlan& plan, SymIntArrayRef size,
                        const at::TensorOptions& options) {
  const auto format =
      plan.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  if (size.size() == 4) {
    return at::empty_symint(size, options.memory_format(format));
  }
  std::vector<SymInt> size4{SymInt(1)};
  size4.insert(size4.end(), size.begin(), size.end());
  return at::empty_symint(size4, options.memory_format(format)).squeeze(0);
}

}  // namespace torchconv
