// Eager conv2d calls: recorded for reverse-mode autograd by a C++ graph node, or run below the
// autograd key when nothing is recorded (recorded_conv2d.cpp).
#pragma once

#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <string>
#include <vector>

namespace torchconv {

// F.conv2d's call on torchconv's op in eager mode (no forward-mode AD, no functorch transform):
// recorded for backward when grad mode is on and an operand requires grad, else run below the
// autograd key. `padding_mode` is "" for numeric `padding`, else 'same' / 'valid' (and
// `padding` is empty).
at::Tensor conv2d_eager(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, const std::vector<int64_t>& stride,
                        const std::vector<int64_t>& padding, const std::string& padding_mode,
                        const std::vector<int64_t>& dilation, int64_t groups);

// The Python formula for backward passes that record a graph or run under functorch / forward
// AD: fn(grad, input, weight, stride, padding, dilation, groups, has_bias, needs) -> the
// gradients of input, weight and bias (None where not needed).
void set_recorded_backward(py::object fn);

}  // namespace torchconv
