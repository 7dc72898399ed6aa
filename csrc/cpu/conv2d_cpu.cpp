// CPU kernels of the torchconv ops: the vectorised float32 / float64 paths where they apply
// (fast_paths.h), the portable kernels (generic_kernels.h) for everything else.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../op_entry.h"
#include "fast_paths.h"
#include "generic_kernels.h"

namespace torchconv::cpu {
namespace {

// The portable kernels want dense NCHW operands without a conjugate bit.
at::Tensor dense(const at::Tensor& t) {
  return t.resolve_conj().contiguous();
}

// Runs `compute` into `result` directly when it is dense NCHW, else through a dense temporary.
template <typename F>
void write_dense(at::Tensor& result, F compute) {
  if (result.is_contiguous()) {
    compute(result);
  } else {
    at::Tensor tmp = at::empty(result.sizes(), result.options());
    compute(tmp);
    result.copy_(tmp);
  }
}

// float16 / bfloat16 run on the float32 fast paths: operands are widened exactly, the kernels
// accumulate in float32 and the result is rounded once (as the portable kernels and PyTorch
// do). Costs one float32 copy of each operand (of weights: kept between calls, see
// fast::kept_float32_copy); returns false where no fast path applies.
bool is_half(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}
at::Tensor widened(const at::Tensor& t) {
  return t.to(at::kFloat);  // keeps the memory format
}
template <typename F>
bool via_float32(at::Tensor& result, F fast_path) {
  if (!is_half(result)) return false;
  at::Tensor tmp = at::empty_strided(result.sizes(), result.strides(),
                                     result.options().dtype(at::kFloat));
  if (!fast_path(tmp)) return false;
  result.copy_(tmp);
  return true;
}

// complex64 / complex128 on the float32 / float64 fast paths, by Gauss's three real products
// (as PyTorch computes complex convolutions): for a real-bilinear op f and a = ar + i*ai,
// b = br + i*bi,
// f(a, b) = f(ar, br) - f(ai, bi) + i*(f(ar + ai, br + bi) - f(ar, br) - f(ai, bi)).
// real_op(a_part, b_part, out) returns false where no fast path applies.
template <typename F>
bool complex_via_real(const at::Tensor& a, const at::Tensor& b, at::Tensor& result,
                      F real_op) {
  if (!result.is_complex()) return false;
  const at::Tensor ac = a.resolve_conj(), bc = b.resolve_conj();
  const at::Tensor ar = at::real(ac), ai = at::imag(ac), br = at::real(bc), bi = at::imag(bc);
  const auto part = [&] {
    return at::empty_strided(result.sizes(), result.strides(),
                             result.options().dtype(c10::toRealValueType(result.scalar_type())));
  };
  at::Tensor k1 = part(), k2 = part(), k3 = part();
  if (!real_op(ar, br, k1)) return false;
  real_op(ai, bi, k2);
  real_op(ar + ai, br + bi, k3);
  at::real(result).copy_(k1 - k2);
  at::imag(result).copy_(k3 - k1 - k2);
  return true;
}

// A bilinear op f(a, b) -> result on the fast paths where one applies: float32 / float64
// directly, float16 / bfloat16 widened to float32, complex through real products. fast(a, b, out)
// returns false where no fast path applies (other dtypes, ISA "generic", empty dims).
// b_is: whether b is the convolution's weight, whose float32 copy is kept between calls (from a
// fresh copy every call, the packings, e.g. Winograd's transformed weights, were made anew).
enum class Operand { weight, activation };
template <typename F>
bool on_fast_paths(const at::Tensor& a, const at::Tensor& b, Operand b_is, at::Tensor& result,
                   F fast) {
  if (result.scalar_type() == at::kFloat || result.scalar_type() == at::kDouble)
    return fast(a, b, result);
  if (fast::cpu_isa() == "generic") return false;  // no copies for nothing
  if (is_half(result)) {
    const at::Tensor b32 = b_is == Operand::weight ? fast::kept_float32_copy(b) : widened(b);
    return via_float32(result, [&](at::Tensor& out) { return fast(widened(a), b32, out); });
  }
  const fast::WeightCacheBypass operands_are_copies;
  return complex_via_real(a, b, result, fast);
}

#define TORCHCONV_DISPATCH_CPU(dtype, name, ...) \
  AT_DISPATCH_ALL_TYPES_AND_COMPLEX_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

// The fast kernels multiply the zero padding like any input: an infinite or NaN weight
// (forward, input gradient) or grad_output value (weight gradient) times a zero is NaN where
// F.conv2d has no such product. Such calls run on the portable kernels, which skip the padding.
bool windows_reach_padding(const Geometry& g) { return fast::padding_frame_pixels(g) > 0; }

struct CpuBackend {
  static void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::Tensor& output) {
    if (!windows_reach_padding(g) || fast::weight_is_finite(weight)) {
      if (fast_forward(g, input, weight, bias, output)) return;
    }
    const at::Tensor x = dense(input), w = dense(weight);
    const at::Tensor b = bias.has_value() ? dense(*bias) : at::Tensor();
    write_dense(output, [&](at::Tensor& out) {
      TORCHCONV_DISPATCH_CPU(x.scalar_type(), "conv2d", [&] {
        generic::forward<scalar_t>(g, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                   b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                                   out.mutable_data_ptr<scalar_t>());
      });
    });
  }

  static bool fast_forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, at::Tensor& output) {
    if (fast::try_forward_bf16(g, input, weight, bias, output)) return true;
    const bool complex = output.is_complex();  // bias added after the real products
    const auto fast = [&](const at::Tensor& x, const at::Tensor& w, at::Tensor& out) {
      std::optional<at::Tensor> b;
      if (bias.has_value() && !complex) b = is_half(*bias) ? widened(*bias) : *bias;
      return fast::try_forward(g, x, w, b, out);
    };
    if (!on_fast_paths(input, weight, Operand::weight, output, fast)) return false;
    if (complex && bias.has_value()) output.add_(bias->resolve_conj().view({1, -1, 1, 1}));
    return true;
  }

  static void grad_input(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, at::Tensor& grad_input) {
    // (grad_input is a convolution of grad_output padded by the kernel's extent)
    const bool one_tap = g.kernel_height == 1 && g.kernel_width == 1;
    if (one_tap || fast::weight_is_finite(weight)) {
      if (fast::try_grad_input_bf16(g, grad_output, weight, grad_input)) return;
      if (on_fast_paths(grad_output, weight, Operand::weight, grad_input,
                        [&](const at::Tensor& dy, const at::Tensor& w, at::Tensor& out) {
                          return fast::try_grad_input(g, dy, w, out);
                        })) {
        return;
      }
    }
    const at::Tensor dy = dense(grad_output), w = dense(weight);
    write_dense(grad_input, [&](at::Tensor& out) {
      TORCHCONV_DISPATCH_CPU(dy.scalar_type(), "conv2d_grad_input", [&] {
        generic::grad_input<scalar_t>(g, dy.const_data_ptr<scalar_t>(),
                                      w.const_data_ptr<scalar_t>(),
                                      out.mutable_data_ptr<scalar_t>());
      });
    });
  }

  static void grad_weight(const Geometry& g, const at::Tensor& grad_output,
                          const at::Tensor& input, at::Tensor& grad_weight) {
    // grad_output's frame is checked before where it is smaller than the weight gradient, else
    // the result after (all of it finite: no non-finite value took part; else recomputed)
    const int64_t frame = g.batch * g.out_channels * fast::padding_frame_pixels(g);
    const bool pads = frame > 0, frame_first = pads && frame < grad_weight.numel();
    if (!frame_first || fast::padding_frame_is_finite(g, grad_output)) {
      const bool done =
          fast::try_grad_weight_bf16(g, grad_output, input, grad_weight) ||
          on_fast_paths(grad_output, input, Operand::activation, grad_weight,
                        [&](const at::Tensor& dy, const at::Tensor& x, at::Tensor& out) {
                          return fast::try_grad_weight(g, dy, x, out);
                        });
      if (done && (!pads || frame_first || fast::is_finite(grad_weight))) return;
    }
    const at::Tensor dy = dense(grad_output), x = dense(input);
    write_dense(grad_weight, [&](at::Tensor& out) {
      TORCHCONV_DISPATCH_CPU(dy.scalar_type(), "conv2d_grad_weight", [&] {
        generic::grad_weight<scalar_t>(g, dy.const_data_ptr<scalar_t>(),
                                       x.const_data_ptr<scalar_t>(),
                                       out.mutable_data_ptr<scalar_t>());
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(torchconv, CPU, m) {
  register_backend<CpuBackend>(m);
}

}  // namespace torchconv::cpu
