// Portable direct-convolution kernels for every dtype (the correctness reference for the fast
// paths). Operands are contiguous NCHW / KCRS; accumulation is in at::opmath_type (float for
// half and bfloat16). Each output element is owned by exactly one task and summed in a fixed
// order, so results do not depend on the number of threads. Workspace: a block of accumulator
// rows (~64 KiB) per thread.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../conv2d_shape.h"

namespace torchconv::cpu::generic {

// Range [first, last) of output positions o whose input position o*stride - pad + offset lies
// inside [0, size).
struct ValidRange {
  int64_t first;
  int64_t last;
};

inline ValidRange valid_outputs(int64_t out_size, int64_t in_size, int64_t stride, int64_t pad,
                                int64_t offset) {
  // o*stride + (offset - pad) >= 0   and   o*stride + (offset - pad) <= in_size - 1
  const int64_t shift = offset - pad;
  int64_t first = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  int64_t last = in_size - 1 - shift < 0 ? 0 : (in_size - 1 - shift) / stride + 1;
  first = std::min(first, out_size);
  last = std::min(last, out_size);
  return {first, std::max(first, last)};
}

// Rows of a plane processed at once: bounds the accumulator workspace to ~64 KiB per thread
// whatever the image size.
inline int64_t rows_per_block(int64_t width) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1));
}

template <typename scalar_t>
void forward(const Geometry& g, const scalar_t* input, const scalar_t* weight,
             const scalar_t* bias, scalar_t* output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const int64_t plane_in = g.in_height * g.in_width, plane_out = g.out_height * g.out_width;
  const int64_t rs = g.kernel_height * g.kernel_width;
  const int64_t block = rows_per_block(g.out_width);

  at::parallel_for(0, g.batch * g.out_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(std::min(block, g.out_height) * g.out_width);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.out_channels, k = task % g.out_channels;
      const int64_t c0 = (k / kpg) * cpg;
      for (int64_t oh0 = 0; oh0 < g.out_height; oh0 += block) {
        const int64_t oh1 = std::min(oh0 + block, g.out_height);
        std::fill(acc.begin(), acc.end(), bias ? acc_t(bias[k]) : acc_t(0));
        for (int64_t c = 0; c < cpg; ++c) {
          const scalar_t* x = input + (n * g.in_channels + c0 + c) * plane_in;
          const scalar_t* w = weight + (k * cpg + c) * rs;
          for (int64_t r = 0; r < g.kernel_height; ++r) {
            const auto rows = valid_outputs(g.out_height, g.in_height, g.stride_h, g.pad_top,
                                            r * g.dilation_h);
            for (int64_t s = 0; s < g.kernel_width; ++s) {
              const acc_t wv = acc_t(w[r * g.kernel_width + s]);
              const auto cols = valid_outputs(g.out_width, g.in_width, g.stride_w, g.pad_left,
                                              s * g.dilation_w);
              for (int64_t oh = std::max(rows.first, oh0); oh < std::min(rows.last, oh1); ++oh) {
                const scalar_t* xrow = x + (oh * g.stride_h - g.pad_top + r * g.dilation_h) *
                                               g.in_width - g.pad_left + s * g.dilation_w;
                acc_t* arow = acc.data() + (oh - oh0) * g.out_width;
                for (int64_t ow = cols.first; ow < cols.last; ++ow) {
                  arow[ow] += wv * acc_t(xrow[ow * g.stride_w]);
                }
              }
            }
          }
        }
        scalar_t* out = output + task * plane_out + oh0 * g.out_width;
        for (int64_t i = 0; i < (oh1 - oh0) * g.out_width; ++i) {
          out[i] = scalar_t(acc[i]);
        }
      }
    }
  });
}

template <typename scalar_t>
void grad_input(const Geometry& g, const scalar_t* grad_output, const scalar_t* weight,
                scalar_t* grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const int64_t plane_in = g.in_height * g.in_width, plane_out = g.out_height * g.out_width;
  const int64_t rs = g.kernel_height * g.kernel_width;
  const int64_t block = rows_per_block(g.in_width);

  at::parallel_for(0, g.batch * g.in_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(std::min(block, g.in_height) * g.in_width);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.in_channels, c = task % g.in_channels;
      const int64_t group = c / cpg, c_in_group = c % cpg;
      for (int64_t ih0 = 0; ih0 < g.in_height; ih0 += block) {
        const int64_t ih1 = std::min(ih0 + block, g.in_height);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t k = group * kpg; k < (group + 1) * kpg; ++k) {
          const scalar_t* dy = grad_output + (n * g.out_channels + k) * plane_out;
          const scalar_t* w = weight + (k * cpg + c_in_group) * rs;
          for (int64_t r = 0; r < g.kernel_height; ++r) {
            // output rows whose input row falls inside [ih0, ih1)
            const auto rows = valid_outputs(g.out_height, ih1 - ih0, g.stride_h,
                                            g.pad_top + ih0, r * g.dilation_h);
            for (int64_t s = 0; s < g.kernel_width; ++s) {
              const acc_t wv = acc_t(w[r * g.kernel_width + s]);
              const auto cols = valid_outputs(g.out_width, g.in_width, g.stride_w, g.pad_left,
                                              s * g.dilation_w);
              for (int64_t oh = rows.first; oh < rows.last; ++oh) {
                acc_t* arow = acc.data() +
                              (oh * g.stride_h - g.pad_top + r * g.dilation_h - ih0) *
                                  g.in_width - g.pad_left + s * g.dilation_w;
                const scalar_t* dyrow = dy + oh * g.out_width;
                for (int64_t ow = cols.first; ow < cols.last; ++ow) {
                  arow[ow * g.stride_w] += wv * acc_t(dyrow[ow]);
                }
              }
            }
          }
        }
        scalar_t* out = grad_input + task * plane_in + ih0 * g.in_width;
        for (int64_t i = 0; i < (ih1 - ih0) * g.in_width; ++i) {
          out[i] = scalar_t(acc[i]);
        }
      }
    }
  });
}

template <typename scalar_t>
void grad_weight(const Geometry& g, const scalar_t* grad_output, const scalar_t* input,
                 scalar_t* grad_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const int64_t plane_in = g.in_height * g.in_width, plane_out = g.out_height * g.out_width;
  const int64_t rs = g.kernel_height * g.kernel_width;

  // One task per (k, c) filter slice: a fixed-order sum over batch and output positions.
  at::parallel_for(0, g.out_channels * cpg, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(rs);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / cpg, c_in_group = task % cpg;
      const int64_t c = (k / kpg) * cpg + c_in_group;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t n = 0; n < g.batch; ++n) {
        const scalar_t* dy = grad_output + (n * g.out_channels + k) * plane_out;
        const scalar_t* x = input + (n * g.in_channels + c) * plane_in;
        for (int64_t r = 0; r < g.kernel_height; ++r) {
          const auto rows = valid_outputs(g.out_height, g.in_height, g.stride_h, g.pad_top,
                                          r * g.dilation_h);
          for (int64_t s = 0; s < g.kernel_width; ++s) {
            const auto cols = valid_outputs(g.out_width, g.in_width, g.stride_w, g.pad_left,
                                            s * g.dilation_w);
            acc_t sum(0);
            for (int64_t oh = rows.first; oh < rows.last; ++oh) {
              const scalar_t* xrow = x + (oh * g.stride_h - g.pad_top + r * g.dilation_h) *
                                             g.in_width - g.pad_left + s * g.dilation_w;
              const scalar_t* dyrow = dy + oh * g.out_width;
              for (int64_t ow = cols.first; ow < cols.last; ++ow) {
                sum += acc_t(dyrow[ow]) * acc_t(xrow[ow * g.stride_w]);
              }
            }
            acc[r * g.kernel_width + s] += sum;
          }
        }
      }
      scalar_t* out = grad_weight + task * rs;
      for (int64_t i = 0; i < rs; ++i) {
        out[i] = scalar_t(acc[i]);
      }
    }
  });
}

}  // namespace torchconv::cpu::generic
