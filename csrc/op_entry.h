// The boxed-op entry points shared by every backend. A backend provides three kernels that work
// on validated 4-D tensors and write into a preallocated result; this template does the rest
// (argument checks, unbatched input, result allocation in the right layout, empty shapes) the
// same way for CPU and CUDA.
//
//   struct Backend {
//     static void forward(const Geometry&, const at::Tensor& input, const at::Tensor& weight,
//                         const std::optional<at::Tensor>& bias, at::Tensor& output);
//     static void grad_input(const Geometry&, const at::Tensor& grad_output,
//                            const at::Tensor& weight, at::Tensor& grad_input);
//     static void grad_weight(const Geometry&, const at::Tensor& grad_output,
//                             const at::Tensor& input, at::Tensor& grad_weight);
//   };
//
// Tensors handed to a backend may have any strides (channels_last, expanded, sliced) and may
// carry the conjugate bit; `output` is non-empty and has the layout the op promises.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include "conv2d_checks.h"

namespace torchconv {

inline at::Tensor as_batched(const at::Tensor& t, bool batched) {
  return batched ? t : t.unsqueeze(0);
}

template <typename Backend>
at::Tensor run_forward(const ConvPlan& plan, const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  at::Tensor output = empty_result(plan, plan.output_size(), input.options());
  if (output.numel() == 0) {
    return output;
  }
  at::Tensor output4 = as_batched(output, plan.batched);
  const std::optional<at::Tensor> defined_bias =
      bias.has_value() && bias->defined() ? bias : std::nullopt;
  Backend::forward(concrete(plan.geometry), as_batched(input, plan.batched), weight, defined_bias,
                   output4);
  return output;
}

template <typename Backend>
at::Tensor conv2d_numeric_padding(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  c10::SymIntArrayRef stride, c10::SymIntArrayRef padding,
                                  c10::SymIntArrayRef dilation, c10::SymInt groups) {
  const ConvPlan plan = plan_forward(input, weight, bias, stride, padding, "", dilation, groups);
  return run_forward<Backend>(plan, input, weight, bias);
}

template <typename Backend>
at::Tensor conv2d_string_padding(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias,
                                 c10::SymIntArrayRef stride, c10::string_view padding,
                                 c10::SymIntArrayRef dilation, c10::SymInt groups) {
  const ConvPlan plan = plan_forward(input, weight, bias, stride, {}, std::string(padding),
                                     dilation, groups);
  return run_forward<Backend>(plan, input, weight, bias);
}

template <typename Backend>
at::Tensor conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                             c10::SymIntArrayRef input_size, c10::SymIntArrayRef stride,
                             c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                             c10::SymInt groups) {
  const ConvPlan plan =
      plan_grad_input(grad_output, weight, input_size, stride, padding, dilation, groups);
  at::Tensor grad_input = empty_result(plan, input_size, grad_output.options());
  if (grad_input.numel() == 0) {
    return grad_input;
  }
  if (grad_output.numel() == 0) {  // no output channels: nothing flows back
    return grad_input.zero_();
  }
  at::Tensor grad_input4 = as_batched(grad_input, plan.batched);
  Backend::grad_input(concrete(plan.geometry), as_batched(grad_output, plan.batched), weight,
                      grad_input4);
  return grad_input;
}

template <typename Backend>
at::Tensor conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              c10::SymIntArrayRef weight_size, c10::SymIntArrayRef stride,
                              c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                              c10::SymInt groups) {
  const ConvPlan plan =
      plan_grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups);
  at::Tensor grad_weight = empty_result(plan, weight_size, grad_output.options());
  if (grad_weight.numel() == 0) {
    return grad_weight;
  }
  if (grad_output.numel() == 0) {  // empty batch or empty output plane: the sum is empty
    return grad_weight.zero_();
  }
  Backend::grad_weight(concrete(plan.geometry), as_batched(grad_output, plan.batched),
                       as_batched(input, plan.batched), grad_weight);
  return grad_weight;
}

template <typename Backend>
void register_backend(torch::Library& m) {
  m.impl("conv2d", TORCH_FN(conv2d_numeric_padding<Backend>));
  m.impl("conv2d.padding", TORCH_FN(conv2d_string_padding<Backend>));
  m.impl("conv2d_grad_input", TORCH_FN(conv2d_grad_input<Backend>));
  m.impl("conv2d_grad_weight", TORCH_FN(conv2d_grad_weight<Backend>));
}

}  // namespace torchconv
