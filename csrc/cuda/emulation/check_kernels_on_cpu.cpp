// CPU check of the CUDA kernels' index logic -- not part of the extension (setup.py compiles
// only csrc/cuda/**/*.cu). tests/test_cuda.py builds it with `nvcc -x cu` and runs it, so it
// runs without a GPU.
//
// The implicit-GEMM problem classes (grid decomposition, per-thread tile gathers, stores, stride
// phases, split-K slices) and the depthwise / reduction element functions are
// __host__ __device__. Here they are driven exactly as the kernels drive them -- block by block,
// thread by thread, tile by tile, for the SIMT (256 threads) and tensor-core (128 threads, both
// shared-memory paddings) thread maps and both index types -- with double data, and the results
// are compared with a naive reference convolution. What this does not cover: the
// __syncthreads / register-prefetch choreography of the main loops and the wmma fragment
// arithmetic (emulated here by the plain product of the two shared-memory tiles).
//
// Usage: check_kernels_on_cpu [number of random cases]   (exit status 0 when all pass)
#include "../conv2d_direct.cuh"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

using namespace torchconv::cuda;
using namespace torchconv::cuda::detail;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
int failures = 0;

// A 4-D tensor of doubles with explicit strides.
struct Tensor4 {
  int64_t size[4];
  int64_t stride[4];
  std::vector<double> data;
  double& at(int64_t a, int64_t b, int64_t c, int64_t d) {
    return data[a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3]];
  }
};

// Layouts: 0 NCHW, 1 NHWC, 2 NCHW with padded rows, 3 NHWC with padded channels (non-dense).
Tensor4 make_tensor(int64_t a, int64_t b, int64_t c, int64_t d, int layout, double fill) {
  Tensor4 t{{a, b, c, d}, {}, {}};
  int64_t total;
  if (layout == 0 || layout == 2) {
    const int64_t dd = d + (layout == 2 ? 3 : 0);
    t.stride[3] = 1;
    t.stride[2] = dd;
    t.stride[1] = c * dd;
    t.stride[0] = b * c * dd;
    total = a * b * c * dd;
  } else {
    const int64_t bb = b + (layout == 3 ? 2 : 0);
    t.stride[1] = 1;
    t.stride[3] = bb;
    t.stride[2] = d * bb;
    t.stride[0] = c * d * bb;
    total = a * bb * c * d;
  }
  t.data.assign(total, fill);
  return t;
}

void randomize(Tensor4& t, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  for (double& v : t.data) {
    v = u(rng);
  }
}

struct Case {
  int64_t N, C, H, W, K, R, S, sh, sw, pt, pb, pl, pr, dh, dw, groups;
  int layout_x, layout_w, layout_y;
  int64_t OH() const { return (H + pt + pb - dh * (R - 1) - 1) / sh + 1; }
  int64_t OW() const { return (W + pl + pr - dw * (S - 1) - 1) / sw + 1; }
};

ConvDesc describe(const Case& c, const Tensor4& x, const Tensor4& w, const Tensor4& y) {
  ConvDesc d;
  d.N = c.N;
  d.C = c.C;
  d.H = c.H;
  d.W = c.W;
  d.K = c.K;
  d.R = c.R;
  d.S = c.S;
  d.OH = c.OH();
  d.OW = c.OW();
  d.sh = c.sh;
  d.sw = c.sw;
  d.pt = c.pt;
  d.pl = c.pl;
  d.dh = c.dh;
  d.dw = c.dw;
  d.groups = c.groups;
  for (int i = 0; i < 4; ++i) {
    d.xs[i] = x.stride[i];
    d.ws[i] = w.stride[i];
    d.ys[i] = y.stride[i];
  }
  return d;
}

// Runs a GEMM problem the way gemm_simt_kernel / gemm_tc_kernel do, with NT threads and
// shared-memory leading dimensions LDA / LDB. Also checks that the threads fill every element
// of every shared-memory tile.
template <class P, int NT, int LDA, int LDB>
bool run_gemm_on_cpu(const P& p, int64_t blocks) {
  constexpr int BK = kBK;
  using ALd = typename P::template ALoader<BK, NT>;
  using BLd = typename P::template BLoader<BK, NT>;
  using I = typename P::index_t;
  std::vector<double> As(BK * LDA), Bs(BK * LDB), acc(kBM * kBN);
  for (int64_t b = 0; b < blocks; ++b) {
    typename P::Block blk;
    if (!p.init(b, blk)) {
      continue;
    }
    std::vector<ALd> a;
    std::vector<BLd> bl;
    for (int t = 0; t < NT; ++t) {
      a.emplace_back(p, blk, t);
      bl.emplace_back(p, blk, t);
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    for (I k0 = blk.kbeg; k0 < blk.kend; k0 += BK) {
      std::fill(As.begin(), As.end(), kNaN);
      std::fill(Bs.begin(), Bs.end(), kNaN);
      for (int t = 0; t < NT; ++t) {
        double ra[ALd::Map::kPer], rb[BLd::Map::kPer];
        a[t].load(p, blk, k0, ra);
        bl[t].load(p, blk, k0, rb);
        smem_store<typename ALd::Map, LDA>(As.data(), ra, t);
        smem_store<typename BLd::Map, LDB>(Bs.data(), rb, t);
      }
      for (int k = 0; k < BK; ++k) {
        for (int m = 0; m < kBM; ++m) {
          if (std::isnan(As[k * LDA + m])) {
            std::printf("A tile element (k=%d, m=%d) not loaded\n", k, m);
            return false;
          }
        }
        for (int n = 0; n < kBN; ++n) {
          if (std::isnan(Bs[k * LDB + n])) {
            std::printf("B tile element (k=%d, n=%d) not loaded\n", k, n);
            return false;
          }
        }
      }
      for (int m = 0; m < kBM; ++m) {
        for (int n = 0; n < kBN; ++n) {
          for (int k = 0; k < BK; ++k) {
            acc[m * kBN + n] += As[k * LDA + m] * Bs[k * LDB + n];
          }
        }
      }
    }
    for (int m = 0; m < kBM; ++m) {
      for (int n = 0; n < kBN; ++n) {
        p.store(blk, m, n, acc[m * kBN + n]);
      }
    }
  }
  return true;
}

// Naive reference: output (with bias), grad_input and grad_weight for grad_output dy.
void reference(const Case& c, Tensor4& x, Tensor4& w, const std::vector<double>& bias,
               Tensor4& dy, Tensor4& y, Tensor4& dx, Tensor4& dw) {
  const int64_t Cpg = c.C / c.groups, Kpg = c.K / c.groups;
  for (int64_t n = 0; n < c.N; ++n) {
    for (int64_t k = 0; k < c.K; ++k) {
      for (int64_t oh = 0; oh < c.OH(); ++oh) {
        for (int64_t ow = 0; ow < c.OW(); ++ow) {
          double sum = bias[k];
          for (int64_t ci = 0; ci < Cpg; ++ci) {
            for (int64_t r = 0; r < c.R; ++r) {
              for (int64_t s = 0; s < c.S; ++s) {
                const int64_t ih = oh * c.sh - c.pt + r * c.dh, iw = ow * c.sw - c.pl + s * c.dw;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) {
                  continue;
                }
                const int64_t cc = (k / Kpg) * Cpg + ci;
                sum += x.at(n, cc, ih, iw) * w.at(k, ci, r, s);
                dx.at(n, cc, ih, iw) += dy.at(n, k, oh, ow) * w.at(k, ci, r, s);
                dw.at(k, ci, r, s) += dy.at(n, k, oh, ow) * x.at(n, cc, ih, iw);
              }
            }
          }
          y.at(n, k, oh, ow) = sum;
        }
      }
    }
  }
}

// Largest absolute difference; infinity when an element was never written (NaN).
double max_difference(Tensor4& a, Tensor4& b) {
  double e = 0;
  for (int64_t i = 0; i < a.size[0]; ++i) {
    for (int64_t j = 0; j < a.size[1]; ++j) {
      for (int64_t k = 0; k < a.size[2]; ++k) {
        for (int64_t l = 0; l < a.size[3]; ++l) {
          const double u = a.at(i, j, k, l), v = b.at(i, j, k, l);
          if (std::isnan(u) || std::isnan(v)) {
            return INFINITY;
          }
          e = std::max(e, std::fabs(u - v));
        }
      }
    }
  }
  return e;
}

// The three products of one case with one thread map and index type. `forced_chunk` > 0
// replaces the split-K chunk of plan_split_k (small shapes would otherwise use one slice).
// The channel-vector depthwise forms (what the kernels run for NHWC problems with channel
// multiplier 1), driven as dw_*_channels_kernel drive them, must reproduce the element forms'
// results -- y, dx and the weight-gradient workspace `ws` -- bit for bit.
template <typename I>
bool channel_vectors_match(const Case& c, const Geo<I>& gf, const Geo<I>& gd, const Geo<I>& gw,
                           const SplitK& split, Tensor4& x, Tensor4& w,
                           const std::vector<double>& bias, Tensor4& dy, Tensor4& y, Tensor4& dx,
                           const std::vector<double>& ws) {
  constexpr int V = ChannelVec<double>::kN;
  const int64_t OH = c.OH(), OW = c.OW(), RS = c.R * c.S, CV = c.C / V;
  std::vector<double> w_rsc(RS * c.C);
  for (int64_t ch = 0; ch < c.C; ++ch) {
    for (int64_t rs = 0; rs < RS; ++rs) {
      w_rsc[rs * c.C + ch] = w.at(ch, 0, rs / c.S, rs % c.S);
    }
  }
  Tensor4 yv = make_tensor(c.N, c.K, OH, OW, c.layout_y, kNaN);
  Tensor4 dxv = make_tensor(c.N, c.C, c.H, c.W, c.layout_x, kNaN);
  for (int64_t e = 0; e < c.N * OH * ceil_div(OW, kDwColumnRun) * CV; ++e) {
    dw_fprop_channels<double, I>(gf, static_cast<I>(e), x.data.data(), w_rsc.data(),
                                 bias.data(), yv.data.data());
  }
  for (int64_t e = 0; e < c.N * c.H * c.W * CV; ++e) {
    dw_dgrad_channels<double, I>(gd, static_cast<I>(e), dy.data.data(), w_rsc.data(),
                                 dxv.data.data());
  }
  const int64_t NP = c.N * OH * OW, ktiles = ceil_div(c.C, kWgradChannelLanes * V);
  const int lanes = 256 / kWgradChannelLanes;
  std::vector<double> wsv(ws.size(), kNaN);
  std::vector<std::array<double, V>> partial(256);
  for (int64_t b = 0; b < ktiles * RS * split.slices; ++b) {
    const int64_t kt = b % ktiles, rs = (b / ktiles) % RS, slice = b / ktiles / RS;
    const int64_t pbeg = slice * split.chunk, pend = std::min(NP, pbeg + split.chunk);
    for (int t = 0; t < 256; ++t) {
      const int64_t c0 = (kt * kWgradChannelLanes + t % kWgradChannelLanes) * V;
      if (c0 < c.C) {
        dw_wgrad_channels<double, I>(gw, static_cast<I>(c0), static_cast<I>(rs / c.S),
                                     static_cast<I>(rs % c.S), static_cast<I>(pbeg),
                                     static_cast<I>(pend), t / kWgradChannelLanes, lanes,
                                     dy.data.data(), x.data.data(), partial[t].data());
      }
    }
    for (int kv = 0; kv < kWgradChannelLanes; ++kv) {
      const int64_t c0 = (kt * kWgradChannelLanes + kv) * V;
      for (int i = 0; i < V && c0 < c.C; ++i) {
        double sum = 0;
        for (int q = 0; q < lanes; ++q) {
          sum += partial[q * kWgradChannelLanes + kv][i];
        }
        wsv[(slice * c.K + c0 + i) * RS + rs] = sum;
      }
    }
  }
  bool same = max_difference(yv, y) == 0 && max_difference(dxv, dx) == 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    same &= wsv[i] == ws[i];  // (a NaN left unwritten compares unequal)
  }
  if (!same) {
    std::printf("FAIL: channel-vector depthwise forms differ from the element forms\n");
  }
  return same;
}

// The direct kernels (depthwise and grouped convolutions), driven as the kernels in
// conv2d_direct.cu drive them, writing y, dx and dw.
template <typename I>
SplitK run_direct_on_cpu(const Case& c, int64_t forced_chunk, Tensor4& x, Tensor4& w,
                         const std::vector<double>& bias, Tensor4& dy, Tensor4& y, Tensor4& dx,
                         Tensor4& dw, bool& complete) {
  const int64_t OH = c.OH(), OW = c.OW(), NP = c.N * OH * OW, Cpg = c.C / c.groups;
  const ConvDesc fd = describe(c, x, w, y), dd = describe(c, dx, w, dy),
                 wd = describe(c, x, dw, dy);
  SplitK split;
  const Geo<I> gf = make_geo<I>(fd), gd = make_geo<I>(dd), gw = make_geo<I>(wd);
  for (int64_t e = 0; e < c.N * c.K * OH * OW; ++e) {
    dw_fprop_element<double, I>(gf, fd.ys[1] == 1, static_cast<I>(e), x.data.data(),
                                w.data.data(), bias.data(), y.data.data());
  }
  for (int64_t e = 0; e < c.N * c.C * c.H * c.W; ++e) {
    dw_dgrad_element<double, I>(gd, dd.xs[1] == 1, static_cast<I>(e), dy.data.data(),
                                w.data.data(), dx.data.data());
  }
  // As dw_wgrad_kernel: kc channel lanes x (256 / kc) position lanes per block, lane sums
  // added in lane order (kc mirrors wgrad_channel_lanes in conv2d_direct.cu).
  const int64_t Q = c.K * Cpg;  // weight channels (k, c in group)
  const int kc = wd.xs[1] == 1 && wd.ys[1] == 1 && Q > 1 ? kWgradChannelLanes : 1;
  const int lanes = 256 / kc;
  const int64_t ktiles = ceil_div(Q, kc), RS = c.R * c.S;
  split = plan_split_k(NP, ktiles * RS);
  if (forced_chunk > 0) {
    split = {ceil_div(NP, forced_chunk), forced_chunk};
  }
  std::vector<double> ws(split.slices * Q * RS, kNaN), lane_sum(256);
  for (int64_t b = 0; b < ktiles * RS * split.slices; ++b) {
    const int64_t kt = b % ktiles, rs = (b / ktiles) % RS, slice = b / ktiles / RS;
    const int64_t pbeg = slice * split.chunk, pend = std::min(NP, pbeg + split.chunk);
    for (int t = 0; t < 256; ++t) {
      const int64_t q = kt * kc + t % kc;
      lane_sum[t] = q < Q ? dw_wgrad_lane<double, I>(
                                  gw, static_cast<I>(q), static_cast<I>(rs / c.S),
                                  static_cast<I>(rs % c.S), static_cast<I>(pbeg),
                                  static_cast<I>(pend), t / kc, lanes, dy.data.data(),
                                  x.data.data())
                            : 0.0;
    }
    for (int ql = 0; ql < kc && kt * kc + ql < Q; ++ql) {
      double sum = 0;
      for (int t = 0; t < lanes; ++t) {
        sum += lane_sum[t * kc + ql];
      }
      const int64_t q = kt * kc + ql;
      ws[((slice * c.K + q / Cpg) * RS + rs) * Cpg + q % Cpg] = sum;
    }
  }
  for (int64_t e = 0; e < Q * RS; ++e) {
    wgrad_reduce_element<double, double, I>(gw, static_cast<I>(split.slices),
                                            static_cast<I>(e), ws.data(), dw.data.data());
  }
  if (dw_channel_vectors_apply<double>(fd) && dw_channel_vectors_apply<double>(dd) &&
      dw_channel_vectors_apply<double>(wd)) {
    complete &= channel_vectors_match(c, gf, gd, gw, split, x, w, bias, dy, y, dx, ws);
  }
  return split;
}

template <typename I, int NT, int LDA, int LDB>
void check_case(const Case& c, uint32_t seed, int64_t forced_chunk) {
  std::mt19937 rng(seed);
  const int64_t Cpg = c.C / c.groups, Kpg = c.K / c.groups, OH = c.OH(), OW = c.OW();
  Tensor4 x = make_tensor(c.N, c.C, c.H, c.W, c.layout_x, 0);
  Tensor4 w = make_tensor(c.K, Cpg, c.R, c.S, c.layout_w, 0);
  Tensor4 dy = make_tensor(c.N, c.K, OH, OW, c.layout_y, 0);
  randomize(x, rng);
  randomize(w, rng);
  randomize(dy, rng);
  std::vector<double> bias(c.K);
  for (double& v : bias) {
    v = std::uniform_real_distribution<double>(-1, 1)(rng);
  }
  Tensor4 y_ref = make_tensor(c.N, c.K, OH, OW, c.layout_y, 0);
  Tensor4 dx_ref = make_tensor(c.N, c.C, c.H, c.W, c.layout_x, 0);
  Tensor4 dw_ref = make_tensor(c.K, Cpg, c.R, c.S, c.layout_w, 0);
  reference(c, x, w, bias, dy, y_ref, dx_ref, dw_ref);
  // Results start as NaN: an element that no thread writes fails the comparison.
  Tensor4 y = make_tensor(c.N, c.K, OH, OW, c.layout_y, kNaN);
  Tensor4 dx = make_tensor(c.N, c.C, c.H, c.W, c.layout_x, kNaN);
  Tensor4 dw = make_tensor(c.K, Cpg, c.R, c.S, c.layout_w, kNaN);

  const ConvDesc fd = describe(c, x, w, y), dd = describe(c, dx, w, dy),
                 wd = describe(c, x, dw, dy);
  const int64_t NP = c.N * OH * OW, RSC = c.R * c.S * Cpg;
  const bool depthwise = c.groups > 1 && Cpg == 1;
  SplitK split;
  bool complete = true;
  if (!depthwise) {
    FpropProblem<double, I> fp;
    fp.g = make_geo<I>(fd);
    fp.x = x.data.data();
    fp.w = w.data.data();
    fp.bias = bias.data();
    fp.y = y.data.data();
    fp.M = static_cast<I>(NP);
    fp.OHW = static_cast<I>(OH * OW);
    fp.Kg = static_cast<I>(RSC);
    fp.tiles_m = static_cast<I>(ceil_div(NP, kBM));
    fp.tiles_n = static_cast<I>(ceil_div(Kpg, kBN));
    fp.out_m_fast = fd.ys[1] != 1;
    complete &= run_gemm_on_cpu<FpropProblem<double, I>, NT, LDA, LDB>(
        fp, ceil_div(NP, kBM) * ceil_div(Kpg, kBN) * c.groups);

    DgradProblem<double, I> dp;
    dp.g = make_geo<I>(dd);
    dp.dy = dy.data.data();
    dp.w = w.data.data();
    dp.dx = dx.data.data();
    const int64_t Mmax = c.N * ceil_div(c.H, c.sh) * ceil_div(c.W, c.sw);
    dp.tiles_m = static_cast<I>(ceil_div(Mmax, kBM));
    dp.tiles_n = static_cast<I>(ceil_div(Cpg, kBN));
    dp.out_m_fast = dd.xs[1] != 1;
    complete &= run_gemm_on_cpu<DgradProblem<double, I>, NT, LDA, LDB>(
        dp, ceil_div(Mmax, kBM) * ceil_div(Cpg, kBN) * c.groups * c.sh * c.sw);

    const int64_t tiles = ceil_div(Kpg, kBM) * ceil_div(RSC, kBN) * c.groups;
    split = plan_split_k(NP, tiles);
    if (forced_chunk > 0) {
      split = {ceil_div(NP, forced_chunk), forced_chunk};
    }
    std::vector<double> ws(split.slices * c.K * RSC, kNaN);
    WgradProblem<double, I, double> wp;
    wp.g = make_geo<I>(wd);
    wp.dy = dy.data.data();
    wp.x = x.data.data();
    wp.ws = ws.data();
    wp.NP = static_cast<I>(NP);
    wp.OHW = static_cast<I>(OH * OW);
    wp.RSC = static_cast<I>(RSC);
    wp.chunk = static_cast<I>(split.chunk);
    wp.tiles_m = static_cast<I>(ceil_div(Kpg, kBM));
    wp.tiles_n = static_cast<I>(ceil_div(RSC, kBN));
    complete &= run_gemm_on_cpu<WgradProblem<double, I, double>, NT, LDA, LDB>(
        wp, tiles * split.slices);
    const Geo<I> g = make_geo<I>(wd);
    for (int64_t e = 0; e < c.K * RSC; ++e) {
      wgrad_reduce_element<double, double, I>(g, static_cast<I>(split.slices),
                                              static_cast<I>(e), ws.data(), dw.data.data());
    }
  } else {
    split = run_direct_on_cpu<I>(c, forced_chunk, x, w, bias, dy, y, dx, dw, complete);
  }
  if (c.groups > 1 && Cpg > 1) {
    // grouped: the direct kernels as well (the host picks them for small groups)
    Tensor4 y2 = make_tensor(c.N, c.K, OH, OW, c.layout_y, kNaN);
    Tensor4 dx2 = make_tensor(c.N, c.C, c.H, c.W, c.layout_x, kNaN);
    Tensor4 dw2 = make_tensor(c.K, Cpg, c.R, c.S, c.layout_w, kNaN);
    run_direct_on_cpu<I>(c, forced_chunk, x, w, bias, dy, y2, dx2, dw2, complete);
    complete &= max_difference(y2, y_ref) < 1e-9 && max_difference(dx2, dx_ref) < 1e-9 &&
                max_difference(dw2, dw_ref) < 1e-9;
  }

  const double ey = max_difference(y, y_ref), ex = max_difference(dx, dx_ref),
               ew = max_difference(dw, dw_ref);
  const bool ok = complete && ey < 1e-9 && ex < 1e-9 && ew < 1e-9;
  failures += !ok;
  if (!ok || std::getenv("VERBOSE") != nullptr) {
    std::printf(
        "%s N%ld C%ld H%ld W%ld K%ld R%ld S%ld stride %ld,%ld pad %ld/%ld,%ld/%ld dil %ld,%ld "
        "groups %ld layouts %d%d%d index %zu threads %d slices %ld: errors y %.1e dx %.1e "
        "dw %.1e\n",
        ok ? "ok  " : "FAIL", (long)c.N, (long)c.C, (long)c.H, (long)c.W, (long)c.K,
        (long)c.R, (long)c.S, (long)c.sh, (long)c.sw, (long)c.pt, (long)c.pb, (long)c.pl,
        (long)c.pr, (long)c.dh, (long)c.dw, (long)c.groups, c.layout_x, c.layout_w,
        c.layout_y, sizeof(I), NT, (long)split.slices, ey, ex, ew);
  }
}

// The bit-exact operand conversions of the tensor-core path.
void check_conversions() {
  const float values[] = {0.f, 1.5f, -2.25f, 65504.f, 1e-7f};
  for (const float v : values) {
    const c10::Half h(v);
    const c10::BFloat16 b(v);
    if (__half2float(Cvt<__half>::from(h)) != static_cast<float>(h) ||
        __bfloat162float(Cvt<__nv_bfloat16>::from(b)) != static_cast<float>(b)) {
      std::printf("FAIL: operand conversion of %g\n", v);
      ++failures;
    }
  }
  if (__half2float(Cvt<__half>::zero()) != 0.f ||
      __bfloat162float(Cvt<__nv_bfloat16>::zero()) != 0.f) {
    std::printf("FAIL: zero operand\n");
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int random_cases = argc > 1 ? std::atoi(argv[1]) : 300;
  check_conversions();
  // N C H W K R S sh sw pt pb pl pr dh dw groups layouts(x w y)
  std::vector<Case> cases = {
      {2, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {2, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
      {1, 20, 17, 13, 70, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0},    // K > 64, uneven pads
      {3, 8, 12, 12, 12, 4, 4, 2, 2, 1, 2, 1, 2, 1, 1, 4, 1, 0, 1},     // groups, even kernel
      {2, 6, 10, 9, 6, 3, 3, 3, 2, 2, 2, 0, 1, 2, 3, 3, 0, 1, 1},       // strides 3x2, dil 2x3
      {2, 4, 11, 7, 8, 1, 1, 3, 3, 0, 0, 0, 0, 1, 1, 2, 1, 1, 1},       // phases without taps
      {2, 5, 16, 16, 4, 16, 16, 16, 16, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1},  // patchify
      {2, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0},        // depthwise NCHW
      {2, 8, 9, 9, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 8, 1, 1, 1},       // depthwise x3 NHWC
      {2, 40, 9, 9, 40, 5, 5, 2, 1, 2, 2, 2, 2, 2, 1, 40, 1, 1, 0},     // depthwise, mixed
      {2, 8, 9, 11, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 1, 0, 1},       // depthwise channel vectors
      {2, 6, 10, 9, 6, 5, 3, 2, 3, 2, 1, 1, 2, 2, 1, 6, 3, 1, 3},       // ... padded channels
      {1, 4, 7, 13, 4, 3, 3, 3, 3, 0, 0, 0, 0, 1, 1, 4, 1, 0, 1},       // ... rows without taps
      {3, 70, 5, 6, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 70, 1, 1, 1},     // ... two channel tiles
      {1, 130, 5, 6, 3, 2, 3, 1, 2, 0, 1, 2, 0, 2, 1, 1, 2, 3, 2},      // C > 64, non-dense
      {3, 70, 6, 5, 66, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},      // 2x2 N tiles, M tiles
  };
  std::mt19937 rng(1234);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  while (static_cast<int>(cases.size()) < 16 + random_cases) {
    Case c;
    c.groups = pick(0, 3) == 0 ? pick(2, 6) : 1;
    const bool depthwise = c.groups > 1 && pick(0, 1) == 1;
    const int64_t cpg = depthwise ? 1 : pick(1, 20), kpg = pick(1, depthwise ? 3 : 40);
    c.C = cpg * c.groups;
    c.K = kpg * c.groups;
    c.N = pick(1, 3);
    c.R = pick(1, 5);
    c.S = pick(1, 5);
    c.sh = pick(1, 4);
    c.sw = pick(1, 4);
    c.dh = pick(1, 3);
    c.dw = pick(1, 3);
    c.pt = pick(0, 3);
    c.pl = pick(0, 3);
    c.pb = std::max<int64_t>(0, c.pt + pick(-1, 1));  // trailing padding may differ
    c.pr = std::max<int64_t>(0, c.pl + pick(-1, 1));
    c.H = pick(1, 14);
    c.W = pick(1, 14);
    c.layout_x = pick(0, 3);
    c.layout_w = pick(0, 1);
    c.layout_y = pick(0, 3);
    if (c.H + c.pt + c.pb >= c.dh * (c.R - 1) + 1 && c.W + c.pl + c.pr >= c.dw * (c.S - 1) + 1) {
      cases.push_back(c);
    }
  }
  uint32_t seed = 100;
  for (const Case& c : cases) {
    ++seed;
    check_case<int32_t, kSimtThreads, kBM + 1, kBN + 1>(c, seed, 0);
    check_case<int64_t, kTcThreads, TcConfig<float>::kLdA, TcConfig<float>::kLdB>(
        c, seed, 16 * (1 + seed % 3));
    check_case<int32_t, kTcThreads, TcConfig<__half>::kLdA, TcConfig<__half>::kLdB>(
        c, seed, seed % 2 ? 48 : 0);
  }
  std::printf("%zu cases x 3 thread maps: %d failures\n", cases.size(), failures);
  return failures == 0 ? 0 : 1;
}
