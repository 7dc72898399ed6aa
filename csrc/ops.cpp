// Schemas of the torchconv op family, and the autocast rules (which are device-generic).
//
//   conv2d            F.conv2d with numeric padding
//   conv2d.padding    F.conv2d with padding='same' / 'valid'
//   conv2d_grad_input / conv2d_grad_weight
//                     the two adjoints of conv2d (no conjugation: autograd conjugates the other
//                     operand). `padding` there is the resolved leading (top, left) padding.
//
// Kernels: csrc/cpu/ (CPU), csrc/cuda/ (CUDA). Fake kernels, autograd and vmap rules:
// torchconv/_meta.py and torchconv/_autograd.py.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace torchconv {
namespace {

// aten::conv2d is on autocast's lower-precision list on CPU and CUDA: cast the floating-point
// operands to the autocast dtype and run the op with autocast off.
template <c10::DeviceType device, typename PaddingT>
at::Tensor conv2d_autocast(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, c10::SymIntArrayRef stride,
                           PaddingT padding, c10::SymIntArrayRef dilation, c10::SymInt groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device));
  const auto dtype = at::autocast::get_autocast_dtype(device);
  static const auto op = [] {
    constexpr bool numeric = std::is_same_v<PaddingT, c10::SymIntArrayRef>;
    return c10::Dispatcher::singleton()
        .findSchemaOrThrow("torchconv::conv2d", numeric ? "" : "padding")
        .template typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                   const std::optional<at::Tensor>&, c10::SymIntArrayRef,
                                   PaddingT, c10::SymIntArrayRef, c10::SymInt)>();
  }();
  return op.call(at::autocast::cached_cast(dtype, input, device),
                 at::autocast::cached_cast(dtype, weight, device),
                 at::autocast::cached_cast(dtype, bias, device), stride, padding, dilation,
                 std::move(groups));
}

}  // namespace

TORCH_LIBRARY(torchconv, m) {
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[] stride=[1], "
      "SymInt[] padding=[0], SymInt[] dilation=[1], SymInt groups=1) -> Tensor");
  m.def(
      "conv2d.padding(Tensor input, Tensor weight, Tensor? bias=None, SymInt[] stride=[1], "
      "str padding=\"valid\", SymInt[] dilation=[1], SymInt groups=1) -> Tensor");
  m.def(
      "conv2d_grad_input(Tensor grad_output, Tensor weight, SymInt[] input_size, "
      "SymInt[] stride, SymInt[] padding, SymInt[] dilation, SymInt groups) -> Tensor");
  m.def(
      "conv2d_grad_weight(Tensor grad_output, Tensor input, SymInt[] weight_size, "
      "SymInt[] stride, SymInt[] padding, SymInt[] dilation, SymInt groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(torchconv, AutocastCPU, m) {
  m.impl("conv2d", TORCH_FN((conv2d_autocast<c10::DeviceType::CPU, c10::SymIntArrayRef>)));
  m.impl("conv2d.padding", TORCH_FN((conv2d_autocast<c10::DeviceType::CPU, c10::string_view>)));
}

TORCH_LIBRARY_IMPL(torchconv, AutocastCUDA, m) {
  m.impl("conv2d", TORCH_FN((conv2d_autocast<c10::DeviceType::CUDA, c10::SymIntArrayRef>)));
  m.impl("conv2d.padding",
         TORCH_FN((conv2d_autocast<c10::DeviceType::CUDA, c10::string_view>)));
}

}  // namespace torchconv
