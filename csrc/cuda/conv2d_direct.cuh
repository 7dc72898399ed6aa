// Per-element work of the direct kernels -- depthwise and other grouped convolutions with few
// channels per group -- and of the weight-gradient reduction (conv2d_direct.cu).
// __host__ __device__, so that it can also be checked on the CPU.
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

// Output element e: sum over the R x S taps and the group's Cpg input channels.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_fprop_element(const Geo<I>& g, bool channels_fast, I e,
                                             const scalar_t* x, const scalar_t* w,
                                             const scalar_t* bias, scalar_t* y) {
  using acc_t = at::opmath_type<scalar_t>;
  I n, k, oh, ow;
  decode(e, g.K, g.OH, g.OW, channels_fast, n, k, oh, ow);
  const I c0 = (k / g.Kpg) * g.Cpg;  // first input channel of k's group
  acc_t acc = bias != nullptr ? static_cast<acc_t>(bias[k]) : acc_t(0);
  const scalar_t* xp = x + n * g.xs[0] + c0 * g.xs[1];
  const scalar_t* wp = w + k * g.ws[0];
  for (I r = 0; r < g.R; ++r) {
    const I ih = oh * g.sh - g.pt + r * g.dh;
    if (ih < 0 || ih >= g.H) {
      continue;
    }
    for (I s = 0; s < g.S; ++s) {
      const I iw = ow * g.sw - g.pl + s * g.dw;
      if (iw >= 0 && iw < g.W) {
        const scalar_t* xt = xp + ih * g.xs[2] + iw * g.xs[3];
        const scalar_t* wt = wp + r * g.ws[2] + s * g.ws[3];
        for (I c = 0; c < g.Cpg; ++c) {
          acc += static_cast<acc_t>(xt[c * g.xs[1]]) * static_cast<acc_t>(wt[c * g.ws[1]]);
        }
      }
    }
  }
  y[n * g.ys[0] + k * g.ys[1] + oh * g.ys[2] + ow * g.ys[3]] = static_cast<scalar_t>(acc);
}

// grad_input element e: gather over (the group's output channel j, r, s), keeping the taps
// whose output position (ih + pt - r*dh) / sh is integral and in range.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_dgrad_element(const Geo<I>& g, bool channels_fast, I e,
                                             const scalar_t* dy, const scalar_t* w,
                                             scalar_t* dx) {
  using acc_t = at::opmath_type<scalar_t>;
  I n, c, ih, iw;
  decode(e, g.C, g.H, g.W, channels_fast, n, c, ih, iw);
  const I k0 = (c / g.Cpg) * g.Kpg;  // first output channel of c's group
  acc_t acc(0);
  for (I j = 0; j < g.Kpg; ++j) {
    const I k = k0 + j;
    const scalar_t* dyp = dy + n * g.ys[0] + k * g.ys[1];
    const scalar_t* wp = w + k * g.ws[0] + (c % g.Cpg) * g.ws[1];
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

// Weight gradient of weight channel q = k*Cpg + c (output channel k, input channel c of its
// group) at tap (r, s): the partial sum of one lane over the positions p = pbeg + lane,
// pbeg + lane + lanes, ... < pend of the flattened (n, oh, ow) range.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline at::opmath_type<scalar_t> dw_wgrad_lane(const Geo<I>& g, I q, I r, I s,
                                                               I pbeg, I pend, int lane,
                                                               int lanes, const scalar_t* dy,
                                                               const scalar_t* x) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t acc(0);
  const I OHW = g.OH * g.OW;
  const I k = q / g.Cpg;
  const scalar_t* dyp = dy + k * g.ys[1];
  const scalar_t* xp = x + ((k / g.Kpg) * g.Cpg + q % g.Cpg) * g.xs[1];
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

// ---- channel-vector forms (NHWC, channel multiplier 1) ----------------------------------------
// One thread handles kN = 16 / sizeof(scalar_t) consecutive channels with 16-byte loads and
// stores, instead of one channel with scalar accesses. Per channel, the products are added in
// exactly the order of the element functions above, so both forms give bitwise equal results.
// Weights come as w_rsc[(r*S + s)*C + c] (the host's (R, S, C) copy of the weight).

template <typename scalar_t>
struct alignas(16) ChannelVec {
  static constexpr int kN = 16 / static_cast<int>(sizeof(scalar_t));
  scalar_t v[kN];
};

template <typename scalar_t>
C10_HOST_DEVICE inline ChannelVec<scalar_t> load_channels(const scalar_t* p) {
  return *reinterpret_cast<const ChannelVec<scalar_t>*>(p);
}

// Output columns per thread in the channel-vector forward (the R x S weights of a channel
// vector are loaded once per run).
constexpr int kDwColumnRun = 4;

// Channel lanes of a depthwise weight-gradient block (the rest of its 256 threads are position
// lanes), when both operands are channels-fast.
constexpr int kWgradChannelLanes = 32;

// Whether a problem's layout suits the channel-vector kernels (the caller also checks that its
// pointers are 16-byte aligned): every channel vector contiguous and aligned.
template <typename scalar_t>
inline bool dw_channel_vectors_apply(const ConvDesc& d) {
  const int64_t v = ChannelVec<scalar_t>::kN;
  const auto aligned = [v](const int64_t* st) {
    return st[1] == 1 && st[0] % v == 0 && st[2] % v == 0 && st[3] % v == 0;
  };
  return d.groups == d.C && d.K == d.C && d.C % v == 0 && aligned(d.xs) && aligned(d.ys);
}

// Thread e of the forward: channels [c0, c0 + kN) of output columns [ow0, ow0 + kDwColumnRun)
// in row oh of image n; e enumerates (n, oh, column run, channel vector), channel vector fastest.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_fprop_channels(const Geo<I>& g, I e, const scalar_t* x,
                                              const scalar_t* w_rsc, const scalar_t* bias,
                                              scalar_t* y) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = ChannelVec<scalar_t>;
  constexpr int V = Vec::kN, RUN = kDwColumnRun;
  const I CV = g.C / V, runs = (g.OW + RUN - 1) / RUN;
  const I c0 = (e % CV) * V;
  e /= CV;
  const I ow0 = (e % runs) * RUN;
  e /= runs;
  const I oh = e % g.OH, n = e / g.OH;
  acc_t acc[RUN][V];
  TORCHCONV_UNROLL
  for (int i = 0; i < V; ++i) {
    const acc_t b = bias != nullptr ? static_cast<acc_t>(bias[c0 + i]) : acc_t(0);
    TORCHCONV_UNROLL
    for (int j = 0; j < RUN; ++j) {
      acc[j][i] = b;
    }
  }
  const scalar_t* xn = x + n * g.xs[0] + c0;
  for (I r = 0; r < g.R; ++r) {
    const I ih = oh * g.sh - g.pt + r * g.dh;
    if (ih < 0 || ih >= g.H) {
      continue;
    }
    const scalar_t* xrow = xn + ih * g.xs[2];
    for (I s = 0; s < g.S; ++s) {
      const Vec wv = load_channels(w_rsc + (r * g.S + s) * g.C + c0);
      TORCHCONV_UNROLL
      for (int j = 0; j < RUN; ++j) {
        const I iw = (ow0 + j) * g.sw - g.pl + s * g.dw;
        if (ow0 + j < g.OW && iw >= 0 && iw < g.W) {
          const Vec xv = load_channels(xrow + iw * g.xs[3]);
          TORCHCONV_UNROLL
          for (int i = 0; i < V; ++i) {
            acc[j][i] += static_cast<acc_t>(xv.v[i]) * static_cast<acc_t>(wv.v[i]);
          }
        }
      }
    }
  }
  scalar_t* yrow = y + n * g.ys[0] + oh * g.ys[2] + c0;
  TORCHCONV_UNROLL
  for (int j = 0; j < RUN; ++j) {
    if (ow0 + j < g.OW) {
      Vec out;
      TORCHCONV_UNROLL
      for (int i = 0; i < V; ++i) {
        out.v[i] = static_cast<scalar_t>(acc[j][i]);
      }
      *reinterpret_cast<Vec*>(yrow + (ow0 + j) * g.ys[3]) = out;
    }
  }
}

// Thread e of the input gradient: channels [c0, c0 + kN) of grad_input pixel (n, ih, iw); e
// enumerates (n, ih, iw, channel vector), channel vector fastest.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_dgrad_channels(const Geo<I>& g, I e, const scalar_t* dy,
                                              const scalar_t* w_rsc, scalar_t* dx) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = ChannelVec<scalar_t>;
  constexpr int V = Vec::kN;
  const I CV = g.C / V;
  const I c0 = (e % CV) * V;
  e /= CV;
  const I iw = e % g.W;
  e /= g.W;
  const I ih = e % g.H, n = e / g.H;
  acc_t acc[V];
  TORCHCONV_UNROLL
  for (int i = 0; i < V; ++i) {
    acc[i] = acc_t(0);
  }
  const scalar_t* dyn = dy + n * g.ys[0] + c0;
  for (I r = 0; r < g.R; ++r) {
    const I th = ih + g.pt - r * g.dh;
    if (th < 0) {
      break;
    }
    if (th % g.sh != 0 || th / g.sh >= g.OH) {
      continue;
    }
    const scalar_t* dyrow = dyn + (th / g.sh) * g.ys[2];
    for (I s = 0; s < g.S; ++s) {
      const I tw = iw + g.pl - s * g.dw;
      if (tw < 0) {
        break;
      }
      if (tw % g.sw == 0 && tw / g.sw < g.OW) {
        const Vec dv = load_channels(dyrow + (tw / g.sw) * g.ys[3]);
        const Vec wv = load_channels(w_rsc + (r * g.S + s) * g.C + c0);
        TORCHCONV_UNROLL
        for (int i = 0; i < V; ++i) {
          acc[i] += static_cast<acc_t>(dv.v[i]) * static_cast<acc_t>(wv.v[i]);
        }
      }
    }
  }
  Vec out;
  TORCHCONV_UNROLL
  for (int i = 0; i < V; ++i) {
    out.v[i] = static_cast<scalar_t>(acc[i]);
  }
  *reinterpret_cast<Vec*>(dx + n * g.xs[0] + ih * g.xs[2] + iw * g.xs[3] + c0) = out;
}

// The weight gradient's lane sums (dw_wgrad_lane) for channels [c0, c0 + kN) at once.
template <typename scalar_t, typename I>
C10_HOST_DEVICE inline void dw_wgrad_channels(const Geo<I>& g, I c0, I r, I s, I pbeg, I pend,
                                              int lane, int lanes, const scalar_t* dy,
                                              const scalar_t* x,
                                              at::opmath_type<scalar_t>* sums) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = ChannelVec<scalar_t>;
  constexpr int V = Vec::kN;
  acc_t acc[V];
  TORCHCONV_UNROLL
  for (int i = 0; i < V; ++i) {
    acc[i] = acc_t(0);
  }
  const I OHW = g.OH * g.OW;
  for (I p = pbeg + lane; p < pend; p += lanes) {
    const I n = p / OHW, rem = p % OHW;
    const I oh = rem / g.OW, ow = rem % g.OW;
    const I ih = oh * g.sh - g.pt + r * g.dh, iw = ow * g.sw - g.pl + s * g.dw;
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
      const Vec dv = load_channels(dy + n * g.ys[0] + oh * g.ys[2] + ow * g.ys[3] + c0);
      const Vec xv = load_channels(x + n * g.xs[0] + ih * g.xs[2] + iw * g.xs[3] + c0);
      TORCHCONV_UNROLL
      for (int i = 0; i < V; ++i) {
        acc[i] += static_cast<acc_t>(dv.v[i]) * static_cast<acc_t>(xv.v[i]);
      }
    }
  }
  TORCHCONV_UNROLL
  for (int i = 0; i < V; ++i) {
    sums[i] = acc[i];
  }
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
