// The one place where torchconv validates convolution arguments and computes shapes and layouts.
// Used by the CPU and CUDA kernels and, through the Python bindings in bindings.cpp, by the fake
// (meta) kernels, so compiled graphs see exactly the sizes, strides and errors of eager mode.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>

#include <optional>
#include <string>
#include <vector>

#include "conv2d_shape.h"

namespace torchconv {

using SymGeometry = ConvGeometry<c10::SymInt>;

// A validated call: the geometry (always 4-D, batch 1 for unbatched input), whether the user's
// tensors were batched, and the memory format of the tensor the op returns.
struct ConvPlan {
  SymGeometry geometry;
  bool batched = true;
  bool channels_last = false;

  std::vector<c10::SymInt> output_size() const;  // forward result, 3-D when unbatched
  std::vector<c10::SymInt> input_size() const;
  std::vector<c10::SymInt> weight_size() const;
};

// Forward. `padding_mode` is "" for numeric padding (then `padding` holds F.conv2d's 1 or 2
// values) or the string given to F.conv2d ('same' / 'valid'; anything else is an error).
// Checks run in F.conv2d's order and raise its messages.
ConvPlan plan_forward(const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                      c10::SymIntArrayRef padding, const std::string& padding_mode,
                      c10::SymIntArrayRef dilation, const c10::SymInt& groups);

// Backward ops. `padding` is the resolved leading padding (top, left); 3-D grad_output and
// 3-element input_size mean unbatched.
ConvPlan plan_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                         c10::SymIntArrayRef input_size, c10::SymIntArrayRef stride,
                         c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                         const c10::SymInt& groups);
ConvPlan plan_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                          c10::SymIntArrayRef weight_size, c10::SymIntArrayRef stride,
                          c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                          const c10::SymInt& groups);

// The (top, left) padding that the backward ops need for a forward call planned as `plan`.
std::vector<c10::SymInt> leading_padding(const ConvPlan& plan);

// Concrete sizes for real kernels (fails if a size is symbolic, which cannot happen outside
// tracing).
Geometry concrete(const SymGeometry& g);

// Allocates an op result of `size` (3-D or 4-D) in the layout chosen by the plan.
at::Tensor empty_result(const ConvPlan& plan, c10::SymIntArrayRef size,
                        const at::TensorOptions& options);

}  // namespace torchconv
