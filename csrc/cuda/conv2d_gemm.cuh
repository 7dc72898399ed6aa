// Implicit-GEMM convolution kernels (no im2col buffer): the three convolution products are
// GEMMs whose operands are gathered from the activation / weight tensors on the fly, tile by
// tile, into shared memory.
//
//   fprop  C[m, n] = sum_k A[m, k] B[k, n]   m = (n, oh, ow)   n = k_out   k = (r, s, c)
//          A = input gathered at (oh*sh - pt + r*dh, ow*sw - pl + s*dw), B = weight
//   dgrad  per stride phase (see DgradProblem): m = (n, ih, iw) of the phase, n = c,
//          k = (valid r, valid s, k_out); A = grad_output, B = weight
//   wgrad  m = k_out, n = (r, s, c), k = (n, oh, ow) of one split-K slice;
//          A = grad_output, B = input; partial sums go to a workspace slice
//
// A "problem" class describes one of the three: the grid decomposition (init), how each thread
// fetches its share of an A / B tile from global memory (ALoader / BLoader; out-of-range
// elements -- padding, tile edges -- read as zero), and where a result element goes (store).
// Two interchangeable main loops run any problem: a SIMT kernel for every dtype (accumulating
// in at::opmath_type) and a tensor-core kernel (nvcuda::wmma, fp32 accumulation) for
// Half / BFloat16 / float-as-TF32 on sm_80+.
//
// Every output element is computed by one thread (or one warp's fragment) with a fixed
// summation order, and no atomics are used: results are bitwise reproducible.
//
// The problem classes (index arithmetic, gathers, stores) are __host__ __device__ so that they
// can also be exercised block by block on the CPU against a reference convolution.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/complex.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <type_traits>

#include "conv2d_cuda_kernels.h"

// Unrolling hint for the __host__ __device__ functions (the host compiler does not know the
// pragma).
#if defined(__CUDA_ARCH__)
#define TORCHCONV_UNROLL _Pragma("unroll")
#else
#define TORCHCONV_UNROLL
#endif

namespace torchconv::cuda::detail {

constexpr int kBM = static_cast<int>(kGemmTileM);
constexpr int kBN = static_cast<int>(kGemmTileN);
constexpr int kBK = static_cast<int>(kGemmTileK);
constexpr int kSimtThreads = 256;  // 16 x 16 threads, 4 x 4 results each
constexpr int kTcThreads = 128;    // 4 warps, 32 x 32 results (2 x 2 wmma tiles) each

// ---- geometry in the kernel's index type ------------------------------------------------------

template <typename I>
struct Geo {
  I N, C, H, W, K, R, S, OH, OW, sh, sw, pt, pl, dh, dw, groups, Cpg, Kpg;
  I xs[4], ws[4], ys[4];
};

template <typename I>
Geo<I> make_geo(const ConvDesc& d) {
  Geo<I> g;
  g.N = static_cast<I>(d.N);
  g.C = static_cast<I>(d.C);
  g.H = static_cast<I>(d.H);
  g.W = static_cast<I>(d.W);
  g.K = static_cast<I>(d.K);
  g.R = static_cast<I>(d.R);
  g.S = static_cast<I>(d.S);
  g.OH = static_cast<I>(d.OH);
  g.OW = static_cast<I>(d.OW);
  g.sh = static_cast<I>(d.sh);
  g.sw = static_cast<I>(d.sw);
  g.pt = static_cast<I>(d.pt);
  g.pl = static_cast<I>(d.pl);
  g.dh = static_cast<I>(d.dh);
  g.dw = static_cast<I>(d.dw);
  g.groups = static_cast<I>(d.groups);
  g.Cpg = static_cast<I>(d.C / d.groups);
  g.Kpg = static_cast<I>(d.K / d.groups);
  for (int i = 0; i < 4; ++i) {
    g.xs[i] = static_cast<I>(d.xs[i]);
    g.ws[i] = static_cast<I>(d.ws[i]);
    g.ys[i] = static_cast<I>(d.ys[i]);
  }
  return g;
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- value conversion into shared memory ------------------------------------------------------

// Cvt<T>::from(v) turns a tensor element into the shared-memory element type T: opmath_type for
// the SIMT kernel, the bit-identical CUDA type for wmma Half / BFloat16, float for TF32.
template <typename T>
struct Cvt {
  template <typename S>
  C10_HOST_DEVICE static T from(S v) {
    return static_cast<T>(v);
  }
  C10_HOST_DEVICE static T zero() {
    return T(0);
  }
};

template <>
struct Cvt<__half> {
  C10_HOST_DEVICE static __half from(c10::Half v) {
    __half_raw raw;
    raw.x = v.x;
    return __half(raw);
  }
  C10_HOST_DEVICE static __half zero() {
    __half_raw raw;
    raw.x = 0;
    return __half(raw);
  }
};

template <>
struct Cvt<__nv_bfloat16> {
  C10_HOST_DEVICE static __nv_bfloat16 from(c10::BFloat16 v) {
    __nv_bfloat16_raw raw;
    raw.x = v.x;
    return __nv_bfloat16(raw);
  }
  C10_HOST_DEVICE static __nv_bfloat16 zero() {
    __nv_bfloat16_raw raw;
    raw.x = 0;
    return __nv_bfloat16(raw);
  }
};

// ---- which tile element each thread fetches ---------------------------------------------------

// A shared-memory tile holds BK x ROWS elements at tile[k * LD + row] (k-major: "row" is the
// M or N index). Thread t fetches kPer of them. CONTIG_K: consecutive threads take consecutive
// k (for operands contiguous along the reduction, e.g. NHWC input in fprop), each thread keeps
// one k and several rows. Otherwise consecutive threads take consecutive rows, each thread
// keeps one row and several k.
template <int ROWS, int BK, int NT, bool CONTIG_K>
struct TileMap {
  static_assert(ROWS * BK % NT == 0, "tile must split evenly over the threads");
  static constexpr int kPer = ROWS * BK / NT;
  static_assert(!CONTIG_K || (NT % BK == 0 && (NT / BK) * kPer == ROWS), "bad CONTIG_K map");
  static_assert(CONTIG_K || (NT % ROWS == 0 && (NT / ROWS) * kPer == BK), "bad row map");
  C10_HOST_DEVICE static int k(int t, int i) {
    return CONTIG_K ? t % BK : t / ROWS + i * (NT / ROWS);
  }
  C10_HOST_DEVICE static int row(int t, int i) {
    return CONTIG_K ? t / BK + i * (NT / BK) : t % ROWS;
  }
};

template <class Map, int LD, typename T>
C10_HOST_DEVICE inline void smem_store(T* tile, const T* v, int t) {
  TORCHCONV_UNROLL
  for (int i = 0; i < Map::kPer; ++i) {
    tile[Map::k(t, i) * LD + Map::row(t, i)] = v[i];
  }
}

template <typename I>
C10_HOST_DEVICE inline bool inside(I h, I w, I H, I W) {
  return h >= 0 && h < H && w >= 0 && w < W;
}

// ===============================================================================================
// fprop: m = (n, oh, ow), n = k_out within the group, k = (r, s, c) with c fastest.
// ===============================================================================================
template <typename scalar_t, typename I>
struct FpropProblem {
  using acc_t = at::opmath_type<scalar_t>;
  using index_t = I;
  Geo<I> g;
  const scalar_t* x;
  const scalar_t* w;
  const scalar_t* bias;  // may be null
  scalar_t* y;
  I M, OHW, Kg;
  I tiles_m, tiles_n;
  bool out_m_fast;  // output is not channels-fast: let consecutive threads write consecutive m

  struct Block {
    I m0, n0, grp, kbeg, kend;
  };

  C10_HOST_DEVICE bool init(int64_t b, Block& blk) const {
    blk.m0 = static_cast<I>(b % tiles_m) * kBM;
    b /= tiles_m;
    blk.n0 = static_cast<I>(b % tiles_n) * kBN;
    blk.grp = static_cast<I>(b / tiles_n);
    blk.kbeg = 0;
    blk.kend = Kg;
    return true;
  }

  // A: input, gathered; one k (and so one (r, s, c)) per thread, kPer output positions.
  template <int BK, int NT>
  struct ALoader {
    using Map = TileMap<kBM, BK, NT, true>;
    I off[Map::kPer], ih[Map::kPer], iw[Map::kPer];
    bool ok[Map::kPer];
    int kl;
    C10_HOST_DEVICE ALoader(const FpropProblem& p, const Block& blk, int t) : kl(Map::k(t, 0)) {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        const I m = blk.m0 + Map::row(t, i);
        ok[i] = m < p.M;
        const I n = m / p.OHW, rem = m % p.OHW;
        off[i] = n * p.g.xs[0] + blk.grp * p.g.Cpg * p.g.xs[1];
        ih[i] = (rem / p.g.OW) * p.g.sh - p.g.pt;
        iw[i] = (rem % p.g.OW) * p.g.sw - p.g.pl;
      }
    }
    template <typename T>
    C10_HOST_DEVICE void load(const FpropProblem& p, const Block& blk, I k0, T* v) const {
      const I kk = k0 + kl;
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
      }
      if (kk >= blk.kend) {
        return;
      }
      const I c = kk % p.g.Cpg, rs = kk / p.g.Cpg;
      const I dr = (rs / p.g.S) * p.g.dh, ds = (rs % p.g.S) * p.g.dw;
      const I coff = c * p.g.xs[1];
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        const I h = ih[i] + dr, w = iw[i] + ds;
        if (ok[i] && inside(h, w, p.g.H, p.g.W)) {
          v[i] = Cvt<T>::from(p.x[off[i] + h * p.g.xs[2] + w * p.g.xs[3] + coff]);
        }
      }
    }
  };

  // B: weight[k_out, c, r, s]; one k per thread, kPer output channels.
  template <int BK, int NT>
  struct BLoader {
    using Map = TileMap<kBN, BK, NT, true>;
    I off[Map::kPer];
    bool ok[Map::kPer];
    int kl;
    C10_HOST_DEVICE BLoader(const FpropProblem& p, const Block& blk, int t) : kl(Map::k(t, 0)) {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        const I ko = blk.n0 + Map::row(t, i);
        ok[i] = ko < p.g.Kpg;
        off[i] = (blk.grp * p.g.Kpg + ko) * p.g.ws[0];
      }
    }
    template <typename T>
    C10_HOST_DEVICE void load(const FpropProblem& p, const Block& blk, I k0, T* v) const {
      const I kk = k0 + kl;
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
      }
      if (kk >= blk.kend) {
        return;
      }
      const I c = kk % p.g.Cpg, rs = kk / p.g.Cpg;
      const I koff = c * p.g.ws[1] + (rs / p.g.S) * p.g.ws[2] + (rs % p.g.S) * p.g.ws[3];
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        if (ok[i]) {
          v[i] = Cvt<T>::from(p.w[off[i] + koff]);
        }
      }
    }
  };

  C10_HOST_DEVICE void store(const Block& blk, int ml, int nl, acc_t v) const {
    const I m = blk.m0 + ml, ko = blk.n0 + nl;
    if (m >= M || ko >= g.Kpg) {
      return;
    }
    const I n = m / OHW, rem = m % OHW;
    const I k = blk.grp * g.Kpg + ko;
    if (bias != nullptr) {
      v += static_cast<acc_t>(bias[k]);
    }
    y[n * g.ys[0] + k * g.ys[1] + (rem / g.OW) * g.ys[2] + (rem % g.OW) * g.ys[3]] =
        static_cast<scalar_t>(v);
  }
};

// ===============================================================================================
// dgrad by stride phases. grad_input[ih] receives grad_output[oh] * w[r] exactly when
// ih + pt - r*dh = oh*sh. Split the grad_input rows by phase p = (ih + pt) mod sh: the rows of a
// phase are ih = i0 + t*sh, and the taps that reach them are the r with r*dh = p (mod sh), i.e.
// r = r0 + j*P with P = sh / gcd(sh, dh); then oh = ob + t - j*q with q = dh / gcd(sh, dh).
// Every phase is a dense stride-1 problem over its own taps (no wasted multiply by zero), and
// every grad_input element belongs to exactly one phase and is written once (a phase without
// taps writes zeros). Same for columns. Grid: (m tile, n tile, group, phase).
// ===============================================================================================
template <typename I>
struct PhaseAxis {
  I i0;  // first input row of the phase
  I n;   // number of input rows in the phase
  I r0;  // first tap of the phase
  I taps;
  I P;   // tap step
  I q;   // output-row step per tap step
  I ob;  // output row of (i0, r0)
};

template <typename I>
C10_HOST_DEVICE inline PhaseAxis<I> phase_axis(I phase, I stride, I pad, I dil, I R, I size) {
  PhaseAxis<I> a;
  a.i0 = ((phase - pad) % stride + stride) % stride;
  a.n = a.i0 < size ? (size - a.i0 + stride - 1) / stride : I(0);
  I x = stride, y = dil;  // gcd
  while (y != 0) {
    const I t = x % y;
    x = y;
    y = t;
  }
  a.P = stride / x;
  a.q = dil / x;
  // r*dil mod stride has period P in r, so the first solution (if any) is below P.
  a.r0 = 0;
  a.taps = 0;
  for (I r = 0; r < R && r < a.P; ++r) {
    if ((r * dil) % stride == phase) {
      a.r0 = r;
      a.taps = (R - 1 - r) / a.P + 1;
      break;
    }
  }
  a.ob = (a.i0 + pad - a.r0 * dil) / stride;  // exact when taps > 0
  return a;
}

template <typename scalar_t, typename I>
struct DgradProblem {
  using acc_t = at::opmath_type<scalar_t>;
  using index_t = I;
  Geo<I> g;
  const scalar_t* dy;
  const scalar_t* w;
  scalar_t* dx;
  I tiles_m, tiles_n;
  bool out_m_fast;

  struct Block {
    I m0, n0, grp, kbeg, kend;
    PhaseAxis<I> ah, aw;
    I Mp, HWp;
  };

  C10_HOST_DEVICE bool init(int64_t b, Block& blk) const {
    blk.m0 = static_cast<I>(b % tiles_m) * kBM;
    b /= tiles_m;
    blk.n0 = static_cast<I>(b % tiles_n) * kBN;
    b /= tiles_n;
    blk.grp = static_cast<I>(b % g.groups);
    const I phase = static_cast<I>(b / g.groups);
    blk.ah = phase_axis<I>(phase / g.sw, g.sh, g.pt, g.dh, g.R, g.H);
    blk.aw = phase_axis<I>(phase % g.sw, g.sw, g.pl, g.dw, g.S, g.W);
    blk.HWp = blk.ah.n * blk.aw.n;
    blk.Mp = g.N * blk.HWp;
    blk.kbeg = 0;
    blk.kend = blk.ah.taps * blk.aw.taps * g.Kpg;
    return blk.m0 < blk.Mp;
  }

  // A: grad_output; k = (j_r, j_s, k_out) with k_out fastest (contiguous in NHWC).
  template <int BK, int NT>
  struct ALoader {
    using Map = TileMap<kBM, BK, NT, true>;
    I off[Map::kPer], oh[Map::kPer], ow[Map::kPer];
    bool ok[Map::kPer];
    int kl;
    C10_HOST_DEVICE ALoader(const DgradProblem& p, const Block& blk, int t) : kl(Map::k(t, 0)) {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        const I m = blk.m0 + Map::row(t, i);
        ok[i] = m < blk.Mp;
        const I n = m / blk.HWp, rem = m % blk.HWp;
        off[i] = n * p.g.ys[0] + blk.grp * p.g.Kpg * p.g.ys[1];
        oh[i] = blk.ah.ob + rem / blk.aw.n;
        ow[i] = blk.aw.ob + rem % blk.aw.n;
      }
    }
    template <typename T>
    C10_HOST_DEVICE void load(const DgradProblem& p, const Block& blk, I k0, T* v) const {
      const I kk = k0 + kl;
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
      }
      if (kk >= blk.kend) {
        return;
      }
      const I ko = kk % p.g.Kpg, j = kk / p.g.Kpg;
      const I dh = (j / blk.aw.taps) * blk.ah.q, dw = (j % blk.aw.taps) * blk.aw.q;
      const I koff = ko * p.g.ys[1];
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        const I h = oh[i] - dh, w = ow[i] - dw;
        if (ok[i] && inside(h, w, p.g.OH, p.g.OW)) {
          v[i] = Cvt<T>::from(p.dy[off[i] + h * p.g.ys[2] + w * p.g.ys[3] + koff]);
        }
      }
    }
  };

  // B: weight[k_out, c, r, s] as B[(j_r, j_s, k_out), c]; contiguous along c in KRSC.
  template <int BK, int NT>
  struct BLoader {
    using Map = TileMap<kBN, BK, NT, false>;
    I off;
    bool ok;
    int t;
    C10_HOST_DEVICE BLoader(const DgradProblem& p, const Block& blk, int t_) : t(t_) {
      const I c = blk.n0 + Map::row(t, 0);
      ok = c < p.g.Cpg;
      off = c * p.g.ws[1] + blk.grp * p.g.Kpg * p.g.ws[0];
    }
    template <typename T>
    C10_HOST_DEVICE void load(const DgradProblem& p, const Block& blk, I k0, T* v) const {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
        const I kk = k0 + Map::k(t, i);
        if (ok && kk < blk.kend) {
          const I ko = kk % p.g.Kpg, j = kk / p.g.Kpg;
          const I r = blk.ah.r0 + (j / blk.aw.taps) * blk.ah.P;
          const I s = blk.aw.r0 + (j % blk.aw.taps) * blk.aw.P;
          v[i] = Cvt<T>::from(p.w[off + ko * p.g.ws[0] + r * p.g.ws[2] + s * p.g.ws[3]]);
        }
      }
    }
  };

  C10_HOST_DEVICE void store(const Block& blk, int ml, int nl, acc_t v) const {
    const I m = blk.m0 + ml, c = blk.n0 + nl;
    if (m >= blk.Mp || c >= g.Cpg) {
      return;
    }
    const I n = m / blk.HWp, rem = m % blk.HWp;
    const I ih = blk.ah.i0 + (rem / blk.aw.n) * g.sh;
    const I iw = blk.aw.i0 + (rem % blk.aw.n) * g.sw;
    dx[n * g.xs[0] + (blk.grp * g.Cpg + c) * g.xs[1] + ih * g.xs[2] + iw * g.xs[3]] =
        static_cast<scalar_t>(v);
  }
};

// ===============================================================================================
// wgrad: m = k_out, n = (r, s, c) with c fastest, k = (n, oh, ow) restricted to one slice.
// Grid: (m tile, n tile, group, slice); slice z writes workspace[z] (acc_t, [K][R][S][C/g]).
// ===============================================================================================
template <typename scalar_t, typename I, typename out_t>
struct WgradProblem {
  using acc_t = at::opmath_type<scalar_t>;
  using index_t = I;
  Geo<I> g;
  const scalar_t* dy;
  const scalar_t* x;
  out_t* ws;
  I NP, OHW, RSC;  // reduction length N*OH*OW; GEMM columns R*S*Cpg
  I chunk;
  I tiles_m, tiles_n;
  static constexpr bool out_m_fast = false;  // workspace is contiguous along n

  struct Block {
    I m0, n0, grp, kbeg, kend, slice;
  };

  C10_HOST_DEVICE bool init(int64_t b, Block& blk) const {
    blk.m0 = static_cast<I>(b % tiles_m) * kBM;
    b /= tiles_m;
    blk.n0 = static_cast<I>(b % tiles_n) * kBN;
    b /= tiles_n;
    blk.grp = static_cast<I>(b % g.groups);
    blk.slice = static_cast<I>(b / g.groups);
    blk.kbeg = blk.slice * chunk;
    blk.kend = NP - blk.kbeg < chunk ? NP : blk.kbeg + chunk;
    return true;
  }

  // A: grad_output as A[k_out, (n, oh, ow)]; contiguous along k_out in NHWC.
  template <int BK, int NT>
  struct ALoader {
    using Map = TileMap<kBM, BK, NT, false>;
    I off;
    bool ok;
    int t;
    C10_HOST_DEVICE ALoader(const WgradProblem& p, const Block& blk, int t_) : t(t_) {
      const I ko = blk.m0 + Map::row(t, 0);
      ok = ko < p.g.Kpg;
      off = (blk.grp * p.g.Kpg + ko) * p.g.ys[1];
    }
    template <typename T>
    C10_HOST_DEVICE void load(const WgradProblem& p, const Block& blk, I k0, T* v) const {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
        const I kk = k0 + Map::k(t, i);
        if (ok && kk < blk.kend) {
          const I n = kk / p.OHW, rem = kk % p.OHW;
          v[i] = Cvt<T>::from(p.dy[off + n * p.g.ys[0] + (rem / p.g.OW) * p.g.ys[2] +
                                   (rem % p.g.OW) * p.g.ys[3]]);
        }
      }
    }
  };

  // B: input as B[(n, oh, ow), (r, s, c)]; contiguous along c in NHWC.
  template <int BK, int NT>
  struct BLoader {
    using Map = TileMap<kBN, BK, NT, false>;
    I off, dr, ds;
    bool ok;
    int t;
    C10_HOST_DEVICE BLoader(const WgradProblem& p, const Block& blk, int t_) : t(t_) {
      const I col = blk.n0 + Map::row(t, 0);
      ok = col < p.RSC;
      const I c = col % p.g.Cpg, rs = col / p.g.Cpg;
      dr = (rs / p.g.S) * p.g.dh - p.g.pt;
      ds = (rs % p.g.S) * p.g.dw - p.g.pl;
      off = (blk.grp * p.g.Cpg + c) * p.g.xs[1];
    }
    template <typename T>
    C10_HOST_DEVICE void load(const WgradProblem& p, const Block& blk, I k0, T* v) const {
      TORCHCONV_UNROLL
      for (int i = 0; i < Map::kPer; ++i) {
        v[i] = Cvt<T>::zero();
        const I kk = k0 + Map::k(t, i);
        if (ok && kk < blk.kend) {
          const I n = kk / p.OHW, rem = kk % p.OHW;
          const I h = (rem / p.g.OW) * p.g.sh + dr, w = (rem % p.g.OW) * p.g.sw + ds;
          if (inside(h, w, p.g.H, p.g.W)) {
            v[i] = Cvt<T>::from(p.x[off + n * p.g.xs[0] + h * p.g.xs[2] + w * p.g.xs[3]]);
          }
        }
      }
    }
  };

  C10_HOST_DEVICE void store(const Block& blk, int ml, int nl, acc_t v) const {
    const I ko = blk.m0 + ml, col = blk.n0 + nl;
    if (ko >= g.Kpg || col >= RSC) {
      return;
    }
    ws[(blk.slice * g.K + blk.grp * g.Kpg + ko) * RSC + col] = static_cast<out_t>(v);
  }
};

// ===============================================================================================
// Main loops. Both: prefetch the next k tile into registers while the current one is consumed
// from shared memory.
// ===============================================================================================

// SIMT: 16 x 16 threads; thread (tx, ty) owns rows ty + 16*i and columns tx + 16*j of the 64 x 64
// block tile (strided ownership: conflict-free shared-memory reads).
template <class P>
__global__ void __launch_bounds__(kSimtThreads) gemm_simt_kernel(P p, int64_t block_offset) {
  using acc_t = typename P::acc_t;
  using I = typename P::index_t;
  constexpr int NT = kSimtThreads, BK = kBK;
  using ALd = typename P::template ALoader<BK, NT>;
  using BLd = typename P::template BLoader<BK, NT>;
  constexpr int LDA = kBM + 1, LDB = kBN + 1;
  __shared__ __align__(16) unsigned char smem[(BK * LDA + BK * LDB) * sizeof(acc_t)];
  acc_t* As = reinterpret_cast<acc_t*>(smem);
  acc_t* Bs = As + BK * LDA;

  typename P::Block blk;
  if (!p.init(block_offset + blockIdx.x, blk)) {
    return;
  }
  const int t = threadIdx.x, tx = t % 16, ty = t / 16;
  const ALd a(p, blk, t);
  const BLd b(p, blk, t);
  acc_t ra[ALd::Map::kPer], rb[BLd::Map::kPer];
  acc_t acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      acc[i][j] = acc_t(0);
    }
  }

  I k0 = blk.kbeg;
  if (k0 < blk.kend) {
    a.load(p, blk, k0, ra);
    b.load(p, blk, k0, rb);
  }
  for (; k0 < blk.kend; k0 += BK) {
    __syncthreads();  // the previous tile has been consumed
    smem_store<typename ALd::Map, LDA>(As, ra, t);
    smem_store<typename BLd::Map, LDB>(Bs, rb, t);
    __syncthreads();
    if (k0 + BK < blk.kend) {
      a.load(p, blk, k0 + BK, ra);
      b.load(p, blk, k0 + BK, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      acc_t av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = As[kk * LDA + ty + 16 * i];
        bv[i] = Bs[kk * LDB + tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          acc[i][j] += av[i] * bv[j];
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      p.store(blk, ty + 16 * i, tx + 16 * j, acc[i][j]);
    }
  }
}

// Tensor cores via nvcuda::wmma (sm_80+). smem_t is __half, __nv_bfloat16, or float for TF32
// (elements rounded to TF32 after the fragment load, as the wmma API requires). A is stored
// k-major, which is a col_major 16 x 16 A fragment; B k-major is a row_major B fragment. Four
// warps in a 2 x 2 arrangement, each owning 2 x 2 accumulator fragments (fp32). The
// accumulators go through shared memory (reusing the A / B buffers) to the problem's store.
template <typename smem_t>
struct TcConfig {
  static constexpr bool kTf32 = std::is_same_v<smem_t, float>;
  static constexpr int kFragK = kTf32 ? 8 : 16;
  // Leading dimensions: multiples of 16 bytes (wmma requirement) plus padding; every fragment
  // pointer below is then 32-byte aligned.
  static constexpr int kLdA = kBM + (kTf32 ? 4 : 8);
  static constexpr int kLdB = kBN + (kTf32 ? 4 : 8);
  static constexpr int kLdC = kBN + 4;
  static constexpr int kBytesAB = (kBK * kLdA + kBK * kLdB) * static_cast<int>(sizeof(smem_t));
  static constexpr int kBytesC = kBM * kLdC * static_cast<int>(sizeof(float));
  static constexpr int kBytes = kBytesAB > kBytesC ? kBytesAB : kBytesC;
};

template <class P, typename smem_t>
__global__ void __launch_bounds__(kTcThreads) gemm_tc_kernel(P p, int64_t block_offset) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using Cfg = TcConfig<smem_t>;
  using I = typename P::index_t;
  // wmma::precision::tf32 (and the bf16 fragments) exist only when compiling for sm_80+.
  using frag_t = std::conditional_t<Cfg::kTf32, wmma::precision::tf32, smem_t>;
  constexpr int NT = kTcThreads, BK = kBK, FK = Cfg::kFragK;
  constexpr int LDA = Cfg::kLdA, LDB = Cfg::kLdB, LDC = Cfg::kLdC;
  using ALd = typename P::template ALoader<BK, NT>;
  using BLd = typename P::template BLoader<BK, NT>;
  __shared__ __align__(128) unsigned char smem[Cfg::kBytes];
  smem_t* As = reinterpret_cast<smem_t*>(smem);
  smem_t* Bs = As + BK * LDA;

  typename P::Block blk;
  if (!p.init(block_offset + blockIdx.x, blk)) {
    return;
  }
  const int t = threadIdx.x, warp = t / 32;
  const int wm = (warp % 2) * 32, wn = (warp / 2) * 32;
  const ALd a(p, blk, t);
  const BLd b(p, blk, t);
  smem_t ra[ALd::Map::kPer], rb[BLd::Map::kPer];
  wmma::fragment<wmma::accumulator, 16, 16, FK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::fill_fragment(acc[i][j], 0.0f);
    }
  }

  I k0 = blk.kbeg;
  if (k0 < blk.kend) {
    a.load(p, blk, k0, ra);
    b.load(p, blk, k0, rb);
  }
  for (; k0 < blk.kend; k0 += BK) {
    __syncthreads();
    smem_store<typename ALd::Map, LDA>(As, ra, t);
    smem_store<typename BLd::Map, LDB>(Bs, rb, t);
    __syncthreads();
    if (k0 + BK < blk.kend) {
      a.load(p, blk, k0 + BK, ra);
      b.load(p, blk, k0 + BK, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += FK) {
      wmma::fragment<wmma::matrix_a, 16, 16, FK, frag_t, wmma::col_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, FK, frag_t, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], As + kk * LDA + wm + 16 * i, LDA);
        wmma::load_matrix_sync(fb[i], Bs + kk * LDB + wn + 16 * i, LDB);
        if constexpr (Cfg::kTf32) {
#pragma unroll
          for (int e = 0; e < fa[i].num_elements; ++e) {
            fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
          }
#pragma unroll
          for (int e = 0; e < fb[i].num_elements; ++e) {
            fb[i].x[e] = wmma::__float_to_tf32(fb[i].x[e]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
      }
    }
  }

  __syncthreads();  // every warp is done with As / Bs: reuse the buffer for the results
  float* Cs = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * LDC + wn + 16 * j, acc[i][j], LDC,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int e = t; e < kBM * kBN; e += NT) {
    const int ml = p.out_m_fast ? e % kBM : e / kBN;
    const int nl = p.out_m_fast ? e / kBM : e % kBN;
    p.store(blk, ml, nl, Cs[ml * LDC + nl]);
  }
#else
  // Never launched: the host selects this kernel only on sm_80+ devices.
  (void)p;
  (void)block_offset;
#endif
}

// ---- launching ------------------------------------------------------------------------------

// Launches `kernel` over `blocks` thread blocks (1-D grid, split into launches of at most
// 2^31 - 1 blocks; the kernel decodes its block's coordinates from block_offset + blockIdx.x).
template <class P>
void launch_blocks(void (*kernel)(P, int64_t), const P& p, int64_t blocks, int threads,
                   cudaStream_t stream) {
  constexpr int64_t kMaxGrid = 2147483647;
  for (int64_t offset = 0; offset < blocks; offset += kMaxGrid) {
    const int64_t n = blocks - offset < kMaxGrid ? blocks - offset : kMaxGrid;
    kernel<<<static_cast<unsigned>(n), threads, 0, stream>>>(p, offset);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// Which main loop runs a problem. Tc<smem_t> selects the tensor-core kernel with that
// shared-memory element type.
struct Simt {};
template <typename smem_t>
struct Tc {};

template <class P>
void run_gemm(Simt, const P& p, int64_t blocks, cudaStream_t stream) {
  launch_blocks(&gemm_simt_kernel<P>, p, blocks, kSimtThreads, stream);
}

template <class P, typename smem_t>
void run_gemm(Tc<smem_t>, const P& p, int64_t blocks, cudaStream_t stream) {
  launch_blocks(&gemm_tc_kernel<P, smem_t>, p, blocks, kTcThreads, stream);
}

// ---- the three convolution products on either main loop -------------------------------------

template <typename scalar_t, typename I, class Mainloop>
void fprop(Mainloop mainloop, const ConvDesc& d, const scalar_t* x, const scalar_t* w,
           const scalar_t* bias, scalar_t* y, cudaStream_t stream) {
  FpropProblem<scalar_t, I> p;
  p.g = make_geo<I>(d);
  p.x = x;
  p.w = w;
  p.bias = bias;
  p.y = y;
  const int64_t M = d.N * d.OH * d.OW, Kpg = d.K / d.groups;
  p.M = static_cast<I>(M);
  p.OHW = static_cast<I>(d.OH * d.OW);
  p.Kg = static_cast<I>(d.R * d.S * (d.C / d.groups));
  p.tiles_m = static_cast<I>(ceil_div(M, kBM));
  p.tiles_n = static_cast<I>(ceil_div(Kpg, kBN));
  p.out_m_fast = d.ys[1] != 1;
  run_gemm(mainloop, p, ceil_div(M, kBM) * ceil_div(Kpg, kBN) * d.groups, stream);
}

template <typename scalar_t, typename I, class Mainloop>
void dgrad(Mainloop mainloop, const ConvDesc& d, const scalar_t* dy, const scalar_t* w,
           scalar_t* dx, cudaStream_t stream) {
  DgradProblem<scalar_t, I> p;
  p.g = make_geo<I>(d);
  p.dy = dy;
  p.w = w;
  p.dx = dx;
  // The largest phase (phase of row 0) has ceil(H / sh) rows.
  const int64_t Mmax = d.N * ceil_div(d.H, d.sh) * ceil_div(d.W, d.sw), Cpg = d.C / d.groups;
  p.tiles_m = static_cast<I>(ceil_div(Mmax, kBM));
  p.tiles_n = static_cast<I>(ceil_div(Cpg, kBN));
  p.out_m_fast = d.xs[1] != 1;
  run_gemm(mainloop, p, ceil_div(Mmax, kBM) * ceil_div(Cpg, kBN) * d.groups * d.sh * d.sw,
           stream);
}

template <typename scalar_t, typename I, typename out_t, class Mainloop>
void wgrad(Mainloop mainloop, const ConvDesc& d, const SplitK& split, const scalar_t* dy,
           const scalar_t* x, out_t* ws, cudaStream_t stream) {
  WgradProblem<scalar_t, I, out_t> p;
  p.g = make_geo<I>(d);
  p.dy = dy;
  p.x = x;
  p.ws = ws;
  const int64_t Kpg = d.K / d.groups, RSC = d.R * d.S * (d.C / d.groups);
  p.NP = static_cast<I>(d.N * d.OH * d.OW);
  p.OHW = static_cast<I>(d.OH * d.OW);
  p.RSC = static_cast<I>(RSC);
  p.chunk = static_cast<I>(split.chunk);
  p.tiles_m = static_cast<I>(ceil_div(Kpg, kBM));
  p.tiles_n = static_cast<I>(ceil_div(RSC, kBN));
  run_gemm(mainloop, p, ceil_div(Kpg, kBM) * ceil_div(RSC, kBN) * d.groups * split.slices,
           stream);
}

}  // namespace torchconv::cuda::detail
