// Resolved geometry of one 2-D convolution, shared by every kernel (CPU, CUDA, every ISA).
//
// This header deliberately includes nothing from torch or the standard library, so that the
// per-ISA translation units (compiled with AVX-512 / AVX2 code generation) can use it without
// instantiating any inline library function under their special flags.
#pragma once

#include <stdint.h>

namespace torchconv {

// T is int64_t for the real kernels and c10::SymInt for the fake (shape-only) kernels.
template <typename T>
struct ConvGeometry {
  T batch;
  T in_channels;
  T in_height;
  T in_width;
  T out_channels;
  T kernel_height;
  T kernel_width;
  T out_height;
  T out_width;
  T stride_h;
  T stride_w;
  // Only the leading paddings are stored: the trailing ones are implied by the output size
  // (and may differ from the leading ones for padding='same' with an even kernel).
  T pad_top;
  T pad_left;
  T dilation_h;
  T dilation_w;
  T groups;

  T in_channels_per_group() const { return in_channels / groups; }
  T out_channels_per_group() const { return out_channels / groups; }
};

using Geometry = ConvGeometry<int64_t>;

}  // namespace torchconv
