// Python module torchconv._C: exposes the shared argument checks and shape arithmetic
// (conv2d_checks.h) to the fake kernels in torchconv/_meta.py, and the C++ autograd node of
// eager training steps (recorded_conv2d.h). Loading this module also runs the TORCH_LIBRARY
// registrations of the ops.
#include <torch/csrc/utils/pybind.h>
#include <torch/extension.h>

#include "conv2d_checks.h"
#include "cpu/fast_paths.h"
#include "recorded_conv2d.h"
#ifdef TORCHCONV_WITH_CUDA
#include "cuda/conv2d_cuda_kernels.h"
#endif

namespace torchconv {
namespace {

using SymInts = std::vector<c10::SymInt>;

// (result size, result is channels_last, resolved leading padding (top, left))
py::tuple plan_forward_py(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, const SymInts& stride,
                          const SymInts& padding, const std::string& padding_mode,
                          const SymInts& dilation, const c10::SymInt& groups) {
  const ConvPlan plan =
      plan_forward(input, weight, bias, stride, padding, padding_mode, dilation, groups);
  return py::make_tuple(plan.output_size(), plan.channels_last, leading_padding(plan));
}

py::tuple plan_grad_input_py(const at::Tensor& grad_output, const at::Tensor& weight,
                             const SymInts& input_size, const SymInts& stride,
                             const SymInts& padding, const SymInts& dilation,
                             const c10::SymInt& groups) {
  const ConvPlan plan =
      plan_grad_input(grad_output, weight, input_size, stride, padding, dilation, groups);
  return py::make_tuple(plan.input_size(), plan.channels_last);
}

py::tuple plan_grad_weight_py(const at::Tensor& grad_output, const at::Tensor& input,
                              const SymInts& weight_size, const SymInts& stride,
                              const SymInts& padding, const SymInts& dilation,
                              const c10::SymInt& groups) {
  const ConvPlan plan =
      plan_grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups);
  return py::make_tuple(plan.weight_size(), plan.channels_last);
}

}  // namespace
}  // namespace torchconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "torchconv native extension: argument checks and shapes shared with the fake "
            "kernels, the eager autograd node, kernel settings";
  m.def("plan_forward", &torchconv::plan_forward_py);
  m.def("plan_grad_input", &torchconv::plan_grad_input_py);
  m.def("plan_grad_weight", &torchconv::plan_grad_weight_py);
  m.def("conv2d_eager", &torchconv::conv2d_eager,
        "eager conv2d: recorded for reverse-mode autograd by a C++ node, or below autograd",
        py::call_guard<py::gil_scoped_release>());
  m.def("set_recorded_backward", &torchconv::set_recorded_backward);
  m.def("set_cpu_isa", &torchconv::cpu::fast::set_cpu_isa,
        "Select the CPU kernels: 'avx512', 'avx2', 'scalar' or 'generic' (fast paths off)");
  m.def("cpu_isa", &torchconv::cpu::fast::cpu_isa, "The CPU kernels in use");
  m.def("available_cpu_isas", &torchconv::cpu::fast::available_cpu_isas);
  m.def("set_cpu_winograd", &torchconv::cpu::fast::set_cpu_winograd,
        "Use Winograd F(2x2, 3x3) for eligible float32 3x3 convolutions (False: direct kernels)");
  m.def("cpu_winograd", &torchconv::cpu::fast::cpu_winograd);
  m.def("fma_peak_gflops", &torchconv::cpu::fast::fma_peak_gflops, py::arg("seconds") = 0.5,
        py::arg("float64") = false,
        "Peak float32 (float64=True: float64) FMA GFLOP/s of the current ISA (register-only "
        "loop, all threads)",
        py::call_guard<py::gil_scoped_release>());
  m.def("cuda_built", [] {
#ifdef TORCHCONV_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
  m.def("cutlass_built", [] {
#ifdef TORCHCONV_WITH_CUDA
    return torchconv::cuda::cutlass_tier_built();
#else
    return false;
#endif
  }, "Whether the CUDA kernels include the CUTLASS tier (Half / BFloat16 tensor cores)");
  m.def("cuda_cutlass", [] {
#ifdef TORCHCONV_WITH_CUDA
    return torchconv::cuda::cutlass_tier_enabled();
#else
    return false;
#endif
  }, "Whether CUDA convolutions may use the CUTLASS tier");
  m.def("set_cuda_cutlass", [](bool enabled) {
#ifdef TORCHCONV_WITH_CUDA
    torchconv::cuda::set_cutlass_tier_enabled(enabled);
#else
    TORCH_CHECK(!enabled, "torchconv was built without its CUDA kernels");
#endif
  }, "Allow (True) or forbid (False) the CUTLASS tier; TORCHCONV_CUDA_CUTLASS=0 forbids it at "
     "import");
  m.def("cuda_cutlass_padding", [] {
#ifdef TORCHCONV_WITH_CUDA
    return torchconv::cuda::cutlass_padding_enabled();
#else
    return false;
#endif
  }, "Whether channel counts that are not multiples of 8 are zero-padded into the CUTLASS tier");
  m.def("set_cuda_cutlass_padding", [](bool enabled) {
#ifdef TORCHCONV_WITH_CUDA
    torchconv::cuda::set_cutlass_padding_enabled(enabled);
#else
    TORCH_CHECK(!enabled, "torchconv was built without its CUDA kernels");
#endif
  }, "Zero-pad channel counts into the CUTLASS tier (default off, TORCHCONV_CUDA_CUTLASS_PAD=1: "
     "on; not yet run on a GPU)");
}
