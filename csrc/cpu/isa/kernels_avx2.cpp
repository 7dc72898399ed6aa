// AVX2+FMA instantiation of the fast CPU kernels (kernels_impl.h); see kernels_avx512.cpp.
#pragma GCC target("avx2,fma")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12: direct_tile's block sums

#include <immintrin.h>
#include <stdint.h>

#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace avx2 {

// Tile sizes, for both element types (same register count: the same tiles).
#define DIRECT_NV 2
#define DIRECT_NP 6
#define DIRECT_WIDE_NV 2
#define DIRECT_WIDE_NP 6
// The mid tile (3 vectors x 4 pixels: 16 registers with the broadcast) where K is a multiple
// of 24 but not of 16: 4 broadcasts per 12 multiply-adds instead of 6, and no half-empty
// k-block for K = 24 (Zen 2, 2 threads, alternating processes: MBv2 pointwise input gradient
// 144 -> 24 channels_last 2.7-2.8 -> 1.4 ms, a 3x3 stride-2 64 -> 96 forward 4.3-4.5 -> 3.9-4.0
// channels_last and 5.4-5.8 -> 4.9-5.2 NCHW; 1x1 96 -> 192 and 24 -> 144 forwards the same).
#define DIRECT_MID_NV 3
#define DIRECT_MID_NP 4
#define DIRECT_NARROW_NP 12
#define REDUCE_NP 3
#define GW_WIDE_NV 2
#define GW_WIDE_NC 6
#define GW_NV 2
#define GW_NC 6
#define GW_NARROW_NC 8
// The NCHW 1x1 tile (direct_planes): 4 output channels x 3 vectors of pixels, 12 sums (was
// 4 x 2: 8 chains of 5-cycle multiply-adds keep the two FMA pipes 80% busy at best). Zen 2,
// alternating processes against 4 x 2, NCHW forward: R50 1x1 64 -> 256 over 56 x 56 at 1
// thread 12.9-13.4 -> 11.6-12.1 ms, 2 threads 7.4-7.6 -> 6.8-6.9; MBv2 pointwise 1 thread
// 3.4-3.55 -> 3.06-3.15, 2 threads 1.94-2.1 -> 1.72-2.0; R50 1x1 256 -> 64 input gradient
// 7.33-7.36 -> 6.91-6.93. Still 4 x 2 (PD_NV_NARROW) where only its input rows fit in L1 with
// the weight panel: MBv2 pointwise input gradient NCHW (144 channels, 24-lane panel) ran 8%
// slower as 4 x 3 (2.37-2.53 -> 2.54-2.79 ms).
#define PD_NK 4
#define PD_NV 3
#define PD_NV_NARROW 2
// The NCHW 1x1 weight gradient tile: 3 output x 4 input channels, 12 sums (was 2 x 4: 8
// chains of 5-cycle multiply-adds keep the two FMA pipes 80% busy at best). Zen 2, R50 1x1
// 64 -> 256 NCHW weight gradient, 1 thread: 14.0-14.2 -> 12.4-12.8 ms.
#define PG_NK 3
#define PG_NC 4
// Depthwise tiles of 3 pixels x 4 channel vectors (kernels_impl.h dw_tile), was 6 x 2: a
// channels_last stride-2 tile then reads 7 columns x 2 lines per window row for 12
// multiply-adds per tap instead of 13 x 1 for 6, half the L1 misses per multiply-add of an
// input streamed from memory (Zen 2, 2 threads, alternating processes: MBv2 dw s2 112 x 112 x
// 96 channels_last forward 3.7-4.0 -> 2.7-2.9 ms; stride 1 and its input gradients the same).
#define DW_NP 3
#define DW3_NP 4
#define FMA_CHAINS 10
#define PLANE_ROWS 3
#define PLANE_NS 8
#define GP_NS 2
#define TC_HAS_PERMUTE 1
#define TC_ISA_NAME "avx2"

namespace f32 {

struct V {
  typedef float T;
  static const int N = 8;
  typedef __m256 reg;
  static inline __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg set1(float f) { return _mm256_set1_ps(f); }
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  // Whole vectors without masks: AMD's vmaskmovps store is microcoded (Zen 4: the AVX2
  // grouped-planes path, ResNeXt channels_last, spent 56% of its time in 8 x 8 transposes).
  static inline reg load_n(const float* p, int n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n));
  }
  static inline reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static inline reg fma_bcast(const float* p, reg b, reg c) { return fma(bcast(p), b, c); }
  static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static inline void stream(float* p, reg v) {
    if (((uintptr_t)p & 31) == 0) _mm256_stream_ps(p, v);
    else _mm256_storeu_ps(p, v);
  }
  // even = p[0], p[2], ..., p[14]; odd = p[1], ..., p[15] (the two stride-2 column phases
  // of a row): pairs picked within 128-bit lanes, then the lanes' 64-bit halves reordered
  static inline void load_even_odd(const float* p, reg& even, reg& odd) {
    const reg a = load(p), b = load(p + 8);
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
  }
  static inline void fence() { _mm_sfence(); }
  // 8 x 8: 32-bit then 64-bit interleaves within 128-bit lanes, then the lanes swapped.
  // Blocks with nc < 8 rows or nw < 8 columns load and store through masks.
  static inline void transpose(const float* src, int64_t sc, float* dst, int64_t dc, int nc,
                               int nw) {
    __m256 r[8], t[8];
    for (int k = 0; k < 8; ++k) r[k] = k < nc ? load_n(src + k * sc, nw) : _mm256_setzero_ps();
    for (int k = 0; k < 8; k += 2) {
      t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
      t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
      r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
      r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
      r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
      r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      if (j < nw) store_n(dst + j * dc, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20), nc);
      if (j + 4 < nw) store_n(dst + (j + 4) * dc, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31), nc);
    }
  }
  // The first n lanes in pieces of 4, 2 and 1: a masked store (vmaskmovps) is microcoded on
  // AMD (Zen 2, 1 thread, medians of interleaved calls: the 100 -> 50 3x3 over 30 x 30 NCHW
  // forward 6.72 -> 6.40 ms, channels_last 5.95 -> 5.75, MBv2 dw 7 x 7 NCHW forward, whose
  // 49-pixel planes end in 1-pixel tails, 0.449 -> 0.432; layers without tails the same).
  static inline void store_n(float* p, reg v, int n) {
    if (n >= 8) {
      _mm256_storeu_ps(p, v);
      return;
    }
    __m128 part = _mm256_castps256_ps128(v);
    if (n >= 4) {
      _mm_storeu_ps(p, part);
      part = _mm256_extractf128_ps(v, 1), p += 4, n -= 4;
    }
    if (n >= 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
      part = _mm_movehl_ps(part, part), p += 2, n -= 2;
    }
    if (n >= 1) _mm_store_ss(p, part);
  }
  // dst[i*C + c] = src[c*sc + i] for c < C, i < W, where 2 <= C <= 4 (an RGB image's NCHW rows
  // into pixel-major order): per 8 pixels, C row loads and C output vectors, lane l of output
  // vector v taking pixel (8v + l) / C of row (8v + l) % C through one permute per row and
  // blends. The 8 x 8 transpose would store C elements per pixel through masks (microcoded on
  // AMD: the AVX2 R50 stem NCHW forward spent 5% of its time there). Whole groups of 8 pixels;
  // returns how many (kernels_impl.h interleave_rows copies the rest). STREAM: non-temporal
  // stores.
  template <int NC, bool STREAM = false>
  static inline int64_t interleave_rows_n(const float* src, int64_t sc, int64_t W, float* dst) {
    __m256i pixel[NC];
    __m256 row[NC][NC];
    for (int v = 0; v < NC; ++v) {
      alignas(32) int p[8];
      alignas(32) int bits[NC][8];
      for (int l = 0; l < 8; ++l) {
        p[l] = (8 * v + l) / NC;
        for (int k = 0; k < NC; ++k) bits[k][l] = (8 * v + l) % NC == k ? -1 : 0;
      }
      pixel[v] = _mm256_load_si256((const __m256i*)p);
      for (int k = 0; k < NC; ++k)
        row[v][k] = _mm256_castsi256_ps(_mm256_load_si256((const __m256i*)bits[k]));
    }
    int64_t i0 = 0;
    for (; i0 + 8 <= W; i0 += 8) {
      __m256 r[NC];
      for (int k = 0; k < NC; ++k) r[k] = _mm256_loadu_ps(src + k * sc + i0);
      for (int v = 0; v < NC; ++v) {
        __m256 o = _mm256_permutevar8x32_ps(r[0], pixel[v]);
        for (int k = 1; k < NC; ++k)
          o = _mm256_blendv_ps(o, _mm256_permutevar8x32_ps(r[k], pixel[v]), row[v][k]);
        if (STREAM) stream(dst + i0 * NC + 8 * v, o);
        else _mm256_storeu_ps(dst + i0 * NC + 8 * v, o);
      }
    }
    return i0;
  }
  typedef __m256i ireg;
  static inline ireg iload(const int* p) { return _mm256_loadu_si256((const __m256i*)p); }
  static inline reg permute(reg v, ireg i) { return _mm256_permutevar8x32_ps(v, i); }
  static inline float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  // Lane i = the sum of the lanes of v[i], for 8 vectors: the 128-bit halves of pairs added,
  // two rounds of pairwise adds (lane t of half h then holds v[2t + h]), one permute.
  static inline reg hsums(const reg* v) {
    reg w[4];
    for (int i = 0; i < 4; ++i)
      w[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                           _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    const reg z = _mm256_hadd_ps(_mm256_hadd_ps(w[0], w[1]), _mm256_hadd_ps(w[2], w[3]));
    return _mm256_permutevar8x32_ps(z, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
};

#include "kernels_impl.h"

}  // namespace f32

namespace f64 {

// float64: 4 lanes, the same register tiles as float32.
struct V {
  typedef double T;
  static const int N = 4;
  typedef __m256d reg;
  static inline __m256i mask(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static inline reg zero() { return _mm256_setzero_pd(); }
  static inline reg set1(double f) { return _mm256_set1_pd(f); }
  static inline reg load(const double* p) { return _mm256_loadu_pd(p); }
  static inline reg load_n(const double* p, int n) {  // unmasked when whole, as for float32
    return n >= 4 ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, mask(n));
  }
  static inline reg bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static inline reg fma_bcast(const double* p, reg b, reg c) { return fma(bcast(p), b, c); }
  static inline void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static inline void store_n(double* p, reg v, int n) {  // (in pieces, as for float32)
    if (n >= 4) {
      _mm256_storeu_pd(p, v);
      return;
    }
    __m128d part = _mm256_castpd256_pd128(v);
    if (n >= 2) {
      _mm_storeu_pd(p, part);
      part = _mm256_extractf128_pd(v, 1), p += 2, n -= 2;
    }
    if (n >= 1) _mm_store_sd(p, part);
  }
  static inline void stream(double* p, reg v) {
    if (((uintptr_t)p & 31) == 0) _mm256_stream_pd(p, v);
    else _mm256_storeu_pd(p, v);
  }
  static inline void load_even_odd(const double* p, reg& even, reg& odd) {  // as for float32
    const reg a = load(p), b = load(p + 4);
    even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
    odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
  }
  static inline void fence() { _mm_sfence(); }
  // 4 x 4: interleave pairs of rows, then combine their 128-bit halves.
  static inline void transpose(const double* src, int64_t sc, double* dst, int64_t dc, int nc,
                               int nw) {
    __m256d r[4];
    for (int k = 0; k < 4; ++k) r[k] = k < nc ? load_n(src + k * sc, nw) : zero();
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    const __m256d col[4] = {_mm256_permute2f128_pd(t0, t2, 0x20),
                            _mm256_permute2f128_pd(t1, t3, 0x20),
                            _mm256_permute2f128_pd(t0, t2, 0x31),
                            _mm256_permute2f128_pd(t1, t3, 0x31)};
    for (int i = 0; i < nw; ++i) store_n(dst + i * dc, col[i], nc);
  }
  // Lane permutations of doubles as pairs of 32-bit lanes: index i -> (2i, 2i + 1).
  typedef __m256i ireg;
  static inline ireg iload(const int* p) {
    const __m256i i = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i*)p));
    const __m256i lo = _mm256_slli_epi64(i, 1);
    return _mm256_or_si256(lo, _mm256_slli_epi64(_mm256_add_epi64(lo, _mm256_set1_epi64x(1)), 32));
  }
  static inline reg permute(reg v, ireg i) {
    return _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), i));
  }
  static inline double hsum(reg v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  // Lane i = the sum of the lanes of v[i], for 4 vectors: pairwise adds, then the 128-bit
  // halves added.
  static inline reg hsums(const reg* v) {
    const reg h0 = _mm256_hadd_pd(v[0], v[1]), h1 = _mm256_hadd_pd(v[2], v[3]);
    return _mm256_add_pd(_mm256_permute2f128_pd(h0, h1, 0x20),
                         _mm256_permute2f128_pd(h0, h1, 0x31));
  }
  static inline reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
};

#include "kernels_impl.h"

}  // namespace f64
}  // namespace avx2

IsaKernels kernels_avx2() { return {&avx2::f32::kTable, &avx2::f64::kTable}; }

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
