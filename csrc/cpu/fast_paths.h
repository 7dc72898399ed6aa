// Vectorised float32 / float64 fast paths of the CPU backend (runtime ISA dispatch: AVX-512,
// AVX2+FMA, portable scalar). Each try_* returns false when the case is not handled (the caller
// then uses the portable generic kernels).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "../conv2d_shape.h"

namespace torchconv::cpu::fast {

bool try_forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                 const std::optional<at::Tensor>& bias, at::Tensor& output);
// bfloat16 forward of one group on AVX-512 BF16 dot products, or depthwise over channels_last
// operands (ISA avx512 selected and the CPU has AVX512_BF16), else false.
bool try_forward_bf16(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::Tensor& output);
// bfloat16 input gradient of a stride-1 convolution of one group on the same kernel (padding
// at most d*(R-1)), else false.
bool try_grad_input_bf16(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, at::Tensor& grad_input);
// bfloat16 weight gradient of one group with at least 9 taps on the same kernel, else false.
bool try_grad_weight_bf16(const Geometry& g, const at::Tensor& grad_output,
                          const at::Tensor& input, at::Tensor& grad_weight);
bool try_grad_input(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                    at::Tensor& grad_input);
bool try_grad_weight(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& input,
                     at::Tensor& grad_weight);

// The sums of a 4-D channels_last float32 / float64 CPU tensor over its images and pixels (the
// bias gradient of grad_output): fixed blocks of rows, each summed in order, the block sums
// added pairwise, so the result does not depend on the number of threads; nullopt for any
// other tensor (or with the fast paths off).
std::optional<at::Tensor> try_channel_sums(const at::Tensor& t);

// A float32 copy of float16 / bfloat16 weights, kept between calls with the packed weights
// (see WeightCache in fast_paths.cpp: found again for the same, unchanged weights). The same
// copy comes back call after call, so the packings made from it are found again too.
at::Tensor kept_float32_copy(const at::Tensor& weight);

// Whether every element of a weight is finite, kept between calls with the packed weights
// (found again for the same, unchanged weights). Any floating or complex dtype.
bool weight_is_finite(const at::Tensor& weight);

// Whether grad_output is finite at every output pixel whose window reaches into the padding
// (none: true). Any floating or complex dtype, any strides.
bool padding_frame_is_finite(const Geometry& g, const at::Tensor& grad_output);
// How many output pixels per image and channel that is.
int64_t padding_frame_pixels(const Geometry& g);
// Whether every element of t (any floating or complex dtype) is finite.
bool is_finite(const at::Tensor& t);

// While one lives on a thread, the fast paths do not keep packed weights between calls (see
// WeightCache in fast_paths.cpp): for weights that are fresh copies every call (sums of complex
// parts), where a kept entry would never be found again.
class WeightCacheBypass {
 public:
  WeightCacheBypass();
  ~WeightCacheBypass();
  WeightCacheBypass(const WeightCacheBypass&) = delete;
  WeightCacheBypass& operator=(const WeightCacheBypass&) = delete;

 private:
  bool previous_;
};

// AVX-512 F/BW/VL/DQ: part of the "avx512" path's requirement, and oneDNN's "avx512_core" (the
// native CPU backend's choice that conv2d_checks.cpp replays).
bool cpu_has_avx512_core();

// ISA control: "avx512" | "avx2" | "scalar" | "generic" (fast paths off). set_cpu_isa throws
// for an unknown name or an ISA this CPU lacks. Initial value: env TORCHCONV_CPU_ISA, else the
// best the CPU supports.
void set_cpu_isa(const std::string& name);
std::string cpu_isa();
std::vector<std::string> available_cpu_isas();

// Winograd F(2x2, 3x3) for eligible float32 3x3 convolutions (default on; initial value: env
// TORCHCONV_CPU_WINOGRAD, 0 = off). Off: the direct kernels.
void set_cpu_winograd(bool on);
bool cpu_winograd();

// Peak float32 (or float64) FMA throughput of the current ISA measured with a register-only
// loop on all threads.
double fma_peak_gflops(double seconds, bool float64 = false);

}  // namespace torchconv::cpu::fast
