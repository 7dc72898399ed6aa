// Per-element work of the depthwise kernels and of the weight-gradient reduction
// (conv2d_depthwise.cu). __host__ __device__, so that it can also be checked on the CPU.
#pragma once

#include "conv2d_gemm.cuh"  // Geo

namespace torchconv::cuda::detail {

// Decodes a linear element index into (n, c, h, w) of a (N, C, H, W) tensor, enumerated with
// c fastest (channels_fast) or w fastest.
template <typename I>
C10_HOST_DEVICE inline void decode(I e, I C, I H, I W, bool channels_fast, I& n, I& c, I& h,
                                   I& w) {
  if (channels_fast) {
    c = e % C;
    e /= C;
    w = e % W;
    e /= W;
    h = e % H;
    n = e / H;
  } else {
    w = e % W;
    e /= W;
    h = e % H;
    e /= H;
    c = e % C;
    n = e / C;
  }
}

// Output element e: sum over the R x S taps.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_fprop_element(const Geo<I>& g, bool channels_fast, I e,
                                             const scalar_t* x, const scalar_t* w,
                                             const scalar_t* bias, scalar_t* y) {
  using acc_t = at::opmath_type<scalar_t>;
  I n, k, oh, ow;
  decode(e, g.K, g.OH, g.OW, channels_fast, n, k, oh, ow);
  const I c = k / g.Kpg;
  acc_t acc = bias != nullptr ? static_cast<acc_t>(bias[k]) : acc_t(0);
  const scalar_t* xp = x + n * g.xs[0] + c * g.xs[1];
  const scalar_t* wp = w + k * g.ws[0];
  for (I r = 0; r < g.R; ++r) {
    const I ih = oh * g.sh - g.pt + r * g.dh;
    if (ih < 0 || ih >= g.H) {
      continue;
    }
    for (I s = 0; s < g.S; ++s) {
      const I iw = ow * g.sw - g.pl + s * g.dw;
      if (iw >= 0 && iw < g.W) {
        acc += static_cast<acc_t>(xp[ih * g.xs[2] + iw * g.xs[3]]) *
               static_cast<acc_t>(wp[r * g.ws[2] + s * g.ws[3]]);
      }
    }
  }
  y[n * g.ys[0] + k * g.ys[1] + oh * g.ys[2] + ow * g.ys[3]] = static_cast<scalar_t>(acc);
}

// grad_input element e: gather over (multiplier j, r, s), keeping the taps whose output
// position (ih + pt - r*dh) / sh is integral and in range.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_dgrad_element(const Geo<I>& g, bool channels_fast, I e,
                                             const scalar_t* dy, const scalar_t* w,
                                             scalar_t* dx) {
  using acc_t = at::opmath_type<scalar_t>;
  I n, c, ih, iw;
  decode(e, g.C, g.H, g.W, channels_fast, n, c, ih, iw);
  acc_t acc(0);
  for (I j = 0; j < g.Kpg; ++j) {
    const I k = c * g.Kpg + j;
    const scalar_t* dyp = dy + n * g.ys[0] + k * g.ys[1];
    const scalar_t* wp = w + k * g.ws[0];
    for (I r = 0; r < g.R; ++r) {
      const I th = ih + g.pt - r * g.dh;  // = oh * sh for a contributing tap
      if (th < 0) {
        break;  // decreasing in r
      }
      if (th % g.sh != 0 || th / g.sh >= g.OH) {
        continue;
      }
      const I oh = th / g.sh;
      for (I s = 0; s < g.S; ++s) {
        const I tw = iw + g.pl - s * g.dw;
        if (tw < 0) {
          break;
        }
        if (tw % g.sw == 0 && tw / g.sw < g.OW) {
          acc += static_cast<acc_t>(dyp[oh * g.ys[2] + (tw / g.sw) * g.ys[3]]) *
                 static_cast<acc_t>(wp[r * g.ws[2] + s * g.ws[3]]);
        }
      }
    }
  }
  dx[n * g.xs[0] + c * g.xs[1] + ih * g.xs[2] + iw * g.xs[3]] = static_cast<scalar_t>(acc);
}

// Weight gradient of channel k at tap (r, s): the partial sum of one lane over the positions
// p = pbeg + lane, pbeg + lane + lanes, ... < pend of the flattened (n, oh, ow) range.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline at::opmath_type<scalar_t> dw_wgrad_lane(const Geo<I>& g, I k, I r, I s,
                                                               I pbeg, I pend, int lane,
                                                               int lanes, const scalar_t* dy,
                                                               const scalar_t* x) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t acc(0);
  const I OHW = g.OH * g.OW;
  const scalar_t* dyp = dy + k * g.ys[1];
  const scalar_t* xp = x + (k / g.Kpg) * g.xs[1];
  for (I p = pbeg + lane; p < pend; p += lanes) {
    const I n = p / OHW, rem = p % OHW;
    const I oh = rem / g.OW, ow = rem % g.OW;
    const I ih = oh * g.sh - g.pt + r * g.dh, iw = ow * g.sw - g.pl + s * g.dw;
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
      acc += static_cast<acc_t>(dyp[n * g.ys[0] + oh * g.ys[2] + ow * g.ys[3]]) *
             static_cast<acc_t>(xp[n * g.xs[0] + ih * g.xs[2] + iw * g.xs[3]]);
    }
  }
  return acc;
}

// dw[k, c, r, s] = sum over z of workspace[z][k][(r*S + s)*Cpg + c], z in increasing order.
template <typename scalar_t, typename acc_t, typename I>
C10_HOST_DEVICE inline void wgrad_reduce_element(const Geo<I>& g, I slices, I e,
                                                 const acc_t* ws, scalar_t* dw) {
  const I RSC = g.R * g.S * g.Cpg, total = g.K * RSC;
  acc_t sum(0);
  for (I z = 0; z < slices; ++z) {
    sum += ws[z * total + e];
  }
  const I k = e / RSC, col = e % RSC;
  const I c = col % g.Cpg, rs = col / g.Cpg;
  dw[k * g.ws[0] + c * g.ws[1] + (rs / g.S) * g.ws[2] + (rs % g.S) * g.ws[3]] =
      static_cast<scalar_t>(sum);
}

}  // namespace torchconv::cuda::detail
