// Eager calls of conv2d (torchconv._C.conv2d_eager): reverse-mode autograd as a C++ graph node,
// and calls that record nothing straight below the autograd key.
//
// The registered formula of torchconv/_autograd.py costs, in Python, about 45 us in the forward
// (autograd.Function.apply, the context) and 50 us in the backward (the engine calling into
// Python, the formula, two op calls through their Python autograd kernels): for small layers
// that is 20-30% of a training step (MBv2 dw 7x7 x 960 forward+backward took 0.41 ms against
// 0.34 ms for its three ops). This node records and runs the same formula in C++ (a tiny
// input's training step: 144-148 -> 113-127 us; F.conv2d 87 us).
//
// It handles plain backward passes only: no graph is recorded (GradMode off), no functorch
// transform and no forward-mode dual level is active. Anything else (create_graph=True,
// torch.func transforms over the backward, forward-over-reverse) calls the Python formula
// with the eager autograd.Functions (set_recorded_backward), as the Python node did, so
// derivatives of any order, jvp and vmap keep working. (A backward with is_grads_batched
// batches below autograd: the ops' vmap rules handle it here as they did there.)
#include "recorded_conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/forward_grad.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "conv2d_checks.h"
#include "cpu/fast_paths.h"

namespace torchconv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Python's conv2d_operand_grads(grad, input, weight, params, has_bias, needs, EAGER).
py::object& recorded_backward() {
  static py::object* fn = new py::object();  // never destroyed: outlives the interpreter
  return *fn;
}

std::vector<int64_t> concrete_ints(const std::vector<c10::SymInt>& values) {
  std::vector<int64_t> ints;
  for (const c10::SymInt& v : values) ints.push_back(v.expect_int());
  return ints;
}

// int64 lists as the ops' SymInt arguments (a view of the list, no copy)
c10::SymIntArrayRef sym_ints(const std::vector<int64_t>& values) {
  return c10::fromIntArrayRefSlow(values);
}

template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

using BackwardOpSignature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                                       c10::SymIntArrayRef, c10::SymIntArrayRef,
                                       c10::SymIntArrayRef, c10::SymInt);

// The forward op below the autograd key, for both eager callers: a recorded call (the node
// records it) and one that records nothing. Above it, the op's Python autograd kernel would
// only redispatch, at 25 us per call; autocast and dispatch modes sit above autograd and still
// see the call.
at::Tensor forward_below_autograd(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  c10::SymIntArrayRef stride, c10::SymIntArrayRef padding,
                                  const std::string& padding_mode, c10::SymIntArrayRef dilation,
                                  int64_t groups) {
  at::AutoDispatchBelowAutograd below_autograd;
  if (padding_mode.empty()) {
    static const auto op =
        op_handle<at::Tensor(const at::Tensor&, const at::Tensor&,
                             const std::optional<at::Tensor>&, c10::SymIntArrayRef,
                             c10::SymIntArrayRef, c10::SymIntArrayRef, c10::SymInt)>(
            "torchconv::conv2d");
    return op.call(input, weight, bias, stride, padding, dilation, groups);
  }
  static const auto op =
      op_handle<at::Tensor(const at::Tensor&, const at::Tensor&,
                           const std::optional<at::Tensor>&, c10::SymIntArrayRef,
                           c10::string_view, c10::SymIntArrayRef, c10::SymInt)>(
          "torchconv::conv2d", "padding");
  return op.call(input, weight, bias, stride, padding_mode, dilation, groups);
}

// Whether the backward must go through the Python formula (see the top of the file).
bool backward_needs_python() {
  return torch::autograd::GradMode::is_enabled() ||
         // functorch includes this key while any transform (vmap, grad, jvp) is active
         c10::impl::tls_is_dispatch_key_included(
             c10::DispatchKey::FuncTorchDynamicLayerFrontMode) ||
         torch::autograd::ForwardADLevel::has_any_level();
}

struct RecordedConv2d : torch::autograd::Function<RecordedConv2d> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            std::vector<int64_t> stride, std::vector<int64_t> padding,
                            const std::string& padding_mode, std::vector<int64_t> dilation,
                            int64_t groups) {
    // the output first: it raises F.conv2d's errors, plan_forward (the backward's leading
    // padding) then sees a valid call
    const at::Tensor output =
        forward_below_autograd(input, weight, bias, sym_ints(stride), sym_ints(padding),
                               padding_mode, sym_ints(dilation), groups);
    const ConvPlan plan = plan_forward(input, weight, bias, sym_ints(stride), sym_ints(padding),
                                       padding_mode, sym_ints(dilation), c10::SymInt(groups));
    // F.conv2d broadcasts one stride / dilation value to both dimensions
    if (stride.size() == 1) stride.push_back(stride[0]);
    if (dilation.size() == 1) dilation.push_back(dilation[0]);
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = concrete_ints(leading_padding(plan));
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->save_for_backward({input, weight});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad = grads[0];
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const bool needs_input = ctx->needs_input_grad(0), needs_weight = ctx->needs_input_grad(1);
    const bool needs_bias = has_bias && ctx->needs_input_grad(2);
    at::Tensor grad_input, grad_weight, grad_bias;
    if (backward_needs_python()) {
      py::gil_scoped_acquire gil;
      const py::tuple grads_py = recorded_backward()(
          grad, input, weight, stride, padding, dilation, groups, has_bias,
          py::make_tuple(needs_input, needs_weight, needs_bias));
      const auto tensor_or_none = [](const py::handle& h) {
        return h.is_none() ? at::Tensor() : h.cast<at::Tensor>();
      };
      grad_input = tensor_or_none(grads_py[0]);
      grad_weight = tensor_or_none(grads_py[1]);
      grad_bias = tensor_or_none(grads_py[2]);
    } else {
      // no graph to record: straight to the kernels (their Python autograd kernels cost
      // 7-30 us per call)
      at::AutoDispatchBelowAutograd below_autograd;
      const c10::SymIntArrayRef st = sym_ints(stride), pd = sym_ints(padding),
                                dl = sym_ints(dilation);
      if (needs_input) {
        static const auto op = op_handle<BackwardOpSignature>("torchconv::conv2d_grad_input");
        grad_input = op.call(grad, weight.conj(), input.sym_sizes(), st, pd, dl, groups);
      }
      if (needs_weight) {
        static const auto op = op_handle<BackwardOpSignature>("torchconv::conv2d_grad_weight");
        grad_weight = op.call(grad, input.conj(), weight.sym_sizes(), st, pd, dl, groups);
      }
      if (needs_bias) {
        if (input.size(-3) == 0) {  // zero input channels: the output has no channels either
          grad_bias = at::zeros({weight.size(0)}, grad.options());
        } else if (std::optional<at::Tensor> sums = cpu::fast::try_channel_sums(grad)) {
          grad_bias = *sums;  // channels_last on CPU: at::sum took twice a full reduction
        } else {
          grad_bias = grad.dim() == 4 ? grad.sum({0, 2, 3}) : grad.sum({1, 2});
        }
      }
    }
    // one entry per forward argument (undefined for the non-tensor ones)
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor conv2d_eager(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, const std::vector<int64_t>& stride,
                        const std::vector<int64_t>& padding, const std::string& padding_mode,
                        const std::vector<int64_t>& dilation, int64_t groups) {
  const bool bias_requires_grad = bias.has_value() && bias->defined() && bias->requires_grad();
  if (torch::autograd::GradMode::is_enabled() &&
      (input.requires_grad() || weight.requires_grad() || bias_requires_grad)) {
    return RecordedConv2d::apply(input, weight, bias, stride, padding, padding_mode, dilation,
                                 groups);
  }
  return forward_below_autograd(input, weight, bias, sym_ints(stride), sym_ints(padding),
                                padding_mode, sym_ints(dilation), groups);
}

void set_recorded_backward(py::object fn) { recorded_backward() = std::move(fn); }

}  // namespace torchconv
