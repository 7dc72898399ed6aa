// AVX-512 BF16 kernels of bfloat16 operands (see Bf16Kernels in kernel_api.h): the direct
// convolution, its NCHW input staging (pair_rows) and the channels_last depthwise forward and
// weight gradient. Code generation as in kernels_avx512.cpp (pragma, C-level headers only).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positives in the
#pragma GCC diagnostic ignored "-Wuninitialized"        // intrinsics headers

#include <immintrin.h>
#include <stdint.h>

#include "avx512_transpose.h"
#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace {

// (every loop over the tile fully unrolled, or GCC keeps the sums in memory)
#define TC_UNROLL _Pragma("GCC unroll 32")

// Register tile: 12 pixels x 2 vectors of 16 output channels (24 sums, 2 weight registers).
enum { kNP = int(kBf16PixelBlock), kNV = int(kBf16KernelBlock / 16) };
static_assert(kNV == 2, "the inner loop holds two weight vectors");
// Pairs per block of the three-level sums (64 products per lane, as TC_BLOCK), blocks per group.
enum { kBlockPairs = 32, kMidBlocks = 16 };

// acc + (the pair at x, broadcast) . w, pair by pair, with the broadcast embedded in vdpbf16ps.
static inline __m512 dot_pairs(const uint32_t* x, __m512i w, __m512 acc) {
  __asm__("vdpbf16ps %[x]%{1to16%}, %[w], %[a]" : [a] "+v"(acc) : [w] "v"(w), [x] "m"(*x));
  return acc;
}

// Results go to yp[p] (bfloat16, through yk), or with `fout`, as float32 rows of channels:
// pixel p of the tile, channel k at fout[k * ldr + p].
template <int NP>
void tile(const Bf16DirectArgs* a, const uint32_t* const* xp, uint16_t* const* yp,
          const uint32_t* wpanel, const float* bias, int64_t kvalid, float* fout, int64_t ldr) {
  __m512 acc[NP][kNV];
  alignas(64) float tot[NP][kNV * 16];  // sums of the blocks of the current group
  alignas(64) float mid[NP][kNV * 16];  // sums of the groups
  bool mid_started = false;
  int blocks = 0;
  const int64_t C2 = a->C2;
  const bool one_block = a->R * a->S * C2 <= kBlockPairs;
  const int64_t block = one_block ? a->R * a->S * C2 + 1 : kBlockPairs;
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int j = 0; j < kNV; ++j) {
      acc[p][j] = _mm512_setzero_ps();
      if (!one_block) _mm512_store_ps(&tot[p][j * 16], _mm512_setzero_ps());
    }
  }
  const uint32_t* w = wpanel;
  // Dense columns without dilation: the S taps x C2 pairs of a window row are consecutive, one
  // loop (the pairs of an RGB stem would otherwise pay the tap loop every 2 steps). Same order.
  const bool row_runs = a->xw == C2 && a->dw == 1;
  const int64_t S = row_runs ? 1 : a->S, run = row_runs ? a->S * C2 : C2;
  int64_t pending = 0;  // pairs in acc since the last block
  for (int64_t r = 0; r < a->R; ++r) {
    for (int64_t s = 0; s < S; ++s) {
      const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw;
      const uint32_t* xq[NP];
      TC_UNROLL for (int p = 0; p < NP; ++p) xq[p] = xp[p] + toff;
      for (int64_t c0 = 0; c0 < run;) {
        const int64_t c1 = run < c0 + (block - pending) ? run : c0 + (block - pending);
        for (int64_t c = c0; c < c1; ++c) {
          const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 16);
          TC_UNROLL for (int p = 0; p < NP; ++p) {
            acc[p][0] = dot_pairs(xq[p] + c, w0, acc[p][0]);
            acc[p][1] = dot_pairs(xq[p] + c, w1, acc[p][1]);
          }
          w += kBf16KernelBlock;
        }
        pending += c1 - c0;
        c0 = c1;
        if (pending == block) {
          const bool group_ends = ++blocks == kMidBlocks;
          TC_UNROLL for (int p = 0; p < NP; ++p) {
            TC_UNROLL for (int j = 0; j < kNV; ++j) {
              const __m512 t = _mm512_add_ps(_mm512_load_ps(&tot[p][j * 16]), acc[p][j]);
              acc[p][j] = _mm512_setzero_ps();
              if (!group_ends) {
                _mm512_store_ps(&tot[p][j * 16], t);
                continue;
              }
              _mm512_store_ps(&mid[p][j * 16],
                              mid_started ? _mm512_add_ps(_mm512_load_ps(&mid[p][j * 16]), t) : t);
              _mm512_store_ps(&tot[p][j * 16], _mm512_setzero_ps());
            }
          }
          if (group_ends) mid_started = true, blocks = 0;
          pending = 0;
        }
      }
    }
  }
  TC_UNROLL for (int j = 0; j < kNV; ++j) {
    const int64_t n = kvalid - j * 16;
    if (n <= 0) break;
    const __m512 b = bias ? _mm512_loadu_ps(bias + j * 16) : _mm512_setzero_ps();
    const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
    __m512 rows[16];
    TC_UNROLL for (int p = 0; p < NP; ++p) {
      __m512 v = acc[p][j];
      if (!one_block) {
        v = _mm512_add_ps(_mm512_load_ps(&tot[p][j * 16]), v);
        if (mid_started) v = _mm512_add_ps(_mm512_load_ps(&mid[p][j * 16]), v);
      }
      if (fout) {
        rows[p] = _mm512_add_ps(v, b);
        continue;
      }
      const __m256i bits = (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(v, b));
      uint16_t* dst = yp[p] + j * 16 * a->yk;
      if (a->yk == 1) {
        _mm256_mask_storeu_epi16(dst, m, bits);
      } else {
        alignas(32) uint16_t out[16];
        _mm256_store_si256((__m256i*)out, bits);
        for (int64_t k = 0; k < (n < 16 ? n : 16); ++k) dst[k * a->yk] = out[k];
      }
    }
    if (fout) {
      for (int p = NP; p < 16; ++p) rows[p] = _mm512_setzero_ps();
      transpose16_store(rows, fout + j * 16 * ldr, ldr, NP, (int)(n < 16 ? n : 16));
    }
  }
}

// Output pixels [p0, p1) (p = oh * OW + ow) in tiles of nearly equal size; with `fout`, into
// float32 rows (pixel p at fout[k * ldr + p - p0]).
void tiles(const Bf16DirectArgs* a, const uint32_t* x, uint16_t* y, const uint32_t* wpanel,
           const float* bias, int64_t kvalid, int64_t p0, int64_t p1, float* fout,
           int64_t ldr) {
  const uint32_t* xp[kNP];
  uint16_t* yp[kNP];
  int64_t oh = p0 / a->OW, ow = p0 % a->OW;
  const int64_t ntiles = (p1 - p0 + kNP - 1) / kNP;
  for (int64_t t = 0, p = p0; p < p1; ++t) {
    const int np = (int)((p1 - p0) * (t + 1) / ntiles - (p1 - p0) * t / ntiles);
    for (int i = 0; i < np; ++i) {
      xp[i] = x + oh * a->sh * a->xh + ow * a->sw * a->xw;
      yp[i] = y + oh * a->yh + ow * a->yw;
      if (++ow == a->OW) ow = 0, ++oh;
    }
    float* tile_out = fout ? fout + (p - p0) : nullptr;
    with_count<kNP>(np, [&](auto k) {
      tile<decltype(k)::value>(a, xp, yp, wpanel, bias, kvalid, tile_out, ldr);
    });
    p += np;
  }
}

// Dense NCHW output rows (output channels strided, pixels consecutive): runs of kRun pixels
// leave the tiles as float32 channel rows in an L1 buffer (register transposes) and are
// rounded and stored a vector of pixels at a time, instead of one 2-byte store per channel
// and pixel.
constexpr int64_t kRun = 48;
static_assert(kRun % int64_t(kNP) == 0, "runs of whole tiles");
void direct(const Bf16DirectArgs* a, const uint32_t* x, uint16_t* y, const uint32_t* wpanel,
            const float* bias, int64_t kvalid, int64_t p0, int64_t p1) {
  if (a->yk == 1 || a->yw != 1 || a->yh != a->OW) {
    tiles(a, x, y, wpanel, bias, kvalid, p0, p1, nullptr, 0);
    return;
  }
  alignas(64) float run[kBf16KernelBlock * kRun];
  for (int64_t q0 = p0; q0 < p1; q0 += kRun) {
    const int64_t n = p1 - q0 < kRun ? p1 - q0 : kRun;
    tiles(a, x, y, wpanel, bias, kvalid, q0, q0 + n, run, kRun);
    for (int64_t k = 0; k < kvalid; ++k) {
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFFu : (1u << (n - i)) - 1u);
        const __m256i bits =
            (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, run + k * kRun + i));
        _mm256_mask_storeu_epi16(y + k * a->yk + q0 + i, m, bits);
      }
    }
  }
}

// Blocks of 16 pairs x 16 pixels: each pair row built from two channel rows (zero-extended
// to 32 bits, the odd channel shifted into the high half), then the 16 x 16 transpose.
void pair_rows(const uint16_t* src, int64_t sc, int64_t C, int64_t W, uint32_t* dst,
               int64_t dc) {
  const int64_t C2 = (C + 1) / 2;
  for (int64_t c0 = 0; c0 < C2; c0 += 16) {
    const int nc = (int)(C2 - c0 < 16 ? C2 - c0 : 16);
    for (int64_t i0 = 0; i0 < W; i0 += 16) {
      const int nw = (int)(W - i0 < 16 ? W - i0 : 16);
      const __mmask16 in = (__mmask16)((1u << nw) - 1u);
      __m512 r[16];
      for (int k = 0; k < 16; ++k) {
        const int64_t c = 2 * (c0 + k);
        if (k >= nc) {
          r[k] = _mm512_setzero_ps();
          continue;
        }
        const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in, src + c * sc + i0));
        const __m512i hi = c + 1 < C ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                                           in, src + (c + 1) * sc + i0))
                                     : _mm512_setzero_si512();
        r[k] = _mm512_castsi512_ps(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
      transpose16_store(r, reinterpret_cast<float*>(dst + i0 * dc + c0), dc, nc, nw);
    }
  }
}

static inline __m512 widen(__m256i bf16) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16));
}

// Groups of kDwPixels output pixels (independent sums: one chain of multiply-adds per pixel
// would wait on its own latency), all channel vectors of a group before the next (its input
// pixels are read whole, consecutive channels; channel vectors outer re-read the rows from
// L2 for every vector); each tap's weight vector is loaded once per group and vector.
enum { kDwPixels = 8 };
void depthwise(const Bf16DepthwiseArgs* a, const uint16_t* x, uint16_t* y, const float* w,
               const float* bias, int64_t oh, int64_t ow0, int64_t ow1) {
  const int64_t C = a->C;
  const int64_t ih0 = oh * a->sh - a->pt;
  for (int64_t q0 = ow0; q0 < ow1; q0 += kDwPixels) {
    const int np = (int)(ow1 - q0 < kDwPixels ? ow1 - q0 : kDwPixels);
    const bool interior = np == kDwPixels && q0 * a->sw - a->pl >= 0 &&
                          (q0 + kDwPixels - 1) * a->sw - a->pl + (a->S - 1) * a->dw < a->W;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 m = (__mmask16)(C - c0 >= 16 ? 0xFFFFu : (1u << (C - c0)) - 1u);
      const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + c0) : _mm512_setzero_ps();
      __m512 acc[kDwPixels];
      TC_UNROLL for (int i = 0; i < kDwPixels; ++i) acc[i] = _mm512_setzero_ps();
      for (int64_t r = 0; r < a->R; ++r) {
        const int64_t ih = ih0 + r * a->dh;
        if (ih < 0 || ih >= a->H) continue;
        const uint16_t* xr = x + ih * a->xh + c0;
        for (int64_t s = 0; s < a->S; ++s) {
          const __m512 wv = _mm512_maskz_loadu_ps(m, w + (r * a->S + s) * C + c0);
          const int64_t iw0 = q0 * a->sw - a->pl + s * a->dw;
          if (interior) {  // every pixel of the group reads inside the row
            const uint16_t* xs = xr + iw0 * a->xw;
            TC_UNROLL for (int i = 0; i < kDwPixels; ++i) {
              acc[i] = _mm512_fmadd_ps(
                  widen(_mm256_maskz_loadu_epi16(m, xs + i * a->sw * a->xw)), wv, acc[i]);
            }
            continue;
          }
          TC_UNROLL for (int i = 0; i < kDwPixels; ++i) {
            const int64_t iw = iw0 + i * a->sw;
            if (i < np && iw >= 0 && iw < a->W) {
              acc[i] = _mm512_fmadd_ps(widen(_mm256_maskz_loadu_epi16(m, xr + iw * a->xw)), wv,
                                       acc[i]);
            }
          }
        }
      }
      TC_UNROLL for (int i = 0; i < kDwPixels; ++i) {
        if (i < np) {
          _mm256_mask_storeu_epi16(y + oh * a->yh + (q0 + i) * a->yw + c0, m,
                                   (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(acc[i], b)));
        }
      }
    }
  }
}

// Up to kDwTaps taps at a time, each its own chain of multiply-adds over the pixels (9 chains
// for 3x3 cover the latency); more taps take further passes over the rows.
enum { kDwTaps = 16 };
void depthwise_grad_weight(const Bf16DepthwiseGradWeightArgs* a, const uint16_t* x,
                           const uint16_t* dy, float* sums, int64_t c0, int64_t g0, int64_t g1) {
  const int64_t C = a->C, T = a->R * a->S;
  const __mmask16 m = (__mmask16)(C - c0 >= 16 ? 0xFFFFu : (1u << (C - c0)) - 1u);
  for (int64_t t0 = 0; t0 < T; t0 += kDwTaps) {
    const int nt = (int)(T - t0 < kDwTaps ? T - t0 : kDwTaps);
    int64_t tr[kDwTaps], ts[kDwTaps], off[kDwTaps];  // tap offsets: rows, columns, elements
    for (int i = 0; i < nt; ++i) {
      tr[i] = (t0 + i) / a->S * a->dh, ts[i] = (t0 + i) % a->S * a->dw;
      off[i] = tr[i] * a->xh + ts[i] * a->xw;
    }
    __m512 acc[kDwTaps];
    TC_UNROLL for (int i = 0; i < kDwTaps; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t n = g / a->OH, oh = g % a->OH, ih0 = oh * a->sh - a->pt;
      const uint16_t* xn = x + n * a->xn + c0;
      const uint16_t* dr = dy + n * a->yn + oh * a->yh + c0;
      const bool rows_inside = ih0 >= 0 && ih0 + (a->R - 1) * a->dh < a->H;
      for (int64_t ow = 0; ow < a->OW; ++ow) {
        const int64_t iw0 = ow * a->sw - a->pl;
        const __m512 d = widen(_mm256_maskz_loadu_epi16(m, dr + ow * a->yw));
        if (rows_inside && iw0 >= 0 && iw0 + (a->S - 1) * a->dw < a->W) {
          const uint16_t* xp = xn + ih0 * a->xh + iw0 * a->xw;
          TC_UNROLL for (int i = 0; i < kDwTaps; ++i) {
            if (i < nt) {
              acc[i] = _mm512_fmadd_ps(d, widen(_mm256_maskz_loadu_epi16(m, xp + off[i])), acc[i]);
            }
          }
          continue;
        }
        TC_UNROLL for (int i = 0; i < kDwTaps; ++i) {
          const int64_t ih = ih0 + tr[i], iw = iw0 + ts[i];
          if (i < nt && ih >= 0 && ih < a->H && iw >= 0 && iw < a->W) {
            acc[i] = _mm512_fmadd_ps(
                d, widen(_mm256_maskz_loadu_epi16(m, xn + ih * a->xh + iw * a->xw)), acc[i]);
          }
        }
      }
    }
    TC_UNROLL for (int i = 0; i < kDwTaps; ++i) {
      if (i < nt) _mm512_storeu_ps(sums + (t0 + i) * 16, acc[i]);
    }
  }
}

}  // namespace

Bf16Kernels kernels_avx512_bf16() {
  return {&direct, &pair_rows, &depthwise, &depthwise_grad_weight};
}

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
