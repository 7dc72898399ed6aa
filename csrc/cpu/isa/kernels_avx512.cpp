// AVX-512 instantiation of the fast CPU kernels (kernels_impl.h). Code generation for this TU
// only is switched on by the pragma below; nothing but C-level headers is included (ODR
// safety: no inline library function may be emitted here with AVX-512 instructions).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positives in the
#pragma GCC diagnostic ignored "-Wuninitialized"        // intrinsics headers (vpermps, reduce)

#include <immintrin.h>
#include <stdint.h>

#include "avx512_tiles.h"
#include "avx512_transpose.h"
#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace avx512 {

#define TC_HAS_PERMUTE 1
#define TC_ISA_NAME "avx512"

namespace f32 {

struct V {
  typedef float T;
  static const int N = 16;
  typedef __m512 reg;
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg set1(float f) { return _mm512_set1_ps(f); }
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline reg load_n(const float* p, int n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
  }
  static inline reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  // c + (*p broadcast) * b with the broadcast embedded in the multiply-add's memory operand
  // (no separate broadcast instruction; compilers keep one broadcast register per scalar when
  // it feeds several multiply-adds, hence the asm). Loads the scalar once per multiply-add:
  // see fma_scalar in kernels_impl.h for where that pays.
  static inline reg fma_bcast(const float* p, reg b, reg c) {
    __asm__("vfmadd231ps %[x]%{1to16%}, %[b], %[c]" : [c] "+v"(c) : [b] "v"(b), [x] "m"(*p));
    return c;
  }
  static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static inline void stream(float* p, reg v) {
    if (((uintptr_t)p & 63) == 0) _mm512_stream_ps(p, v);
    else _mm512_storeu_ps(p, v);
  }
  // even = p[0], p[2], ..., p[30]; odd = p[1], p[3], ..., p[31] (a row split into its two
  // stride-2 column phases)
  static inline void load_even_odd(const float* p, reg& even, reg& odd) {
    const reg a = load(p), b = load(p + 16);
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b);
  }
  static inline void fence() { _mm_sfence(); }
  // 16 x 16 in registers (avx512_transpose.h); blocks with nc < 16 rows or nw < 16 columns
  // load and store through masks.
  static inline void transpose(const float* src, int64_t sc, float* dst, int64_t dc, int nc,
                               int nw) {
    __m512 r[16];
    const __mmask16 in = (__mmask16)((1u << nw) - 1u);
    for (int k = 0; k < 16; ++k)
      r[k] = k < nc ? _mm512_maskz_loadu_ps(in, src + k * sc) : _mm512_setzero_ps();
    transpose16_store(r, dst, dc, nc, nw);
  }
  static inline void store_n(float* p, reg v, int n) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
  }
  // dst[i*C + c] = src[c*sc + i] for c < C, i < W, where 2 <= C <= 4 (the NCHW rows of an RGB
  // image into pixel-major order): per 16 pixels, C row loads and C output vectors of C
  // permutes each (lane l of output vector v takes pixel (16v + l) / C of row (16v + l) % C),
  // where the 16 x 16 register transpose spends 64 shuffles and 16 masked stores of C
  // elements. Whole groups of 16 pixels; returns how many (kernels_impl.h interleave_rows
  // copies the rest). STREAM: non-temporal stores.
  template <int NC, bool STREAM = false>
  static inline int64_t interleave_rows_n(const float* src, int64_t sc, int64_t W, float* dst) {
    __m512i pixel[NC];
    __mmask16 row[NC][NC];
    for (int v = 0; v < NC; ++v) {
      alignas(64) int p[16];
      unsigned bits[NC] = {};
      for (int l = 0; l < 16; ++l) {
        p[l] = (16 * v + l) / NC;
        bits[(16 * v + l) % NC] |= 1u << l;
      }
      pixel[v] = _mm512_load_si512(p);
      for (int k = 0; k < NC; ++k) row[v][k] = (__mmask16)bits[k];
    }
    int64_t i0 = 0;
    for (; i0 + 16 <= W; i0 += 16) {
      __m512 r[NC];
      for (int k = 0; k < NC; ++k) r[k] = _mm512_loadu_ps(src + k * sc + i0);
      for (int v = 0; v < NC; ++v) {
        __m512 o = _mm512_permutexvar_ps(pixel[v], r[0]);
        for (int k = 1; k < NC; ++k) o = _mm512_mask_permutexvar_ps(o, row[v][k], pixel[v], r[k]);
        if (STREAM) stream(dst + i0 * NC + 16 * v, o);
        else _mm512_storeu_ps(dst + i0 * NC + 16 * v, o);
      }
    }
    return i0;
  }
  typedef __m512i ireg;
  static inline ireg iload(const int* p) { return _mm512_loadu_si512(p); }
  static inline reg permute(reg v, ireg i) { return _mm512_permutexvar_ps(i, v); }
  static inline float hsum(reg v) { return _mm512_reduce_add_ps(v); }
  // Lane i = the sum of the lanes of v[i], for 16 vectors: four rounds that each add pairs of
  // halves (256-, 128-, 64-, 32-bit), leaving lane 4j + m with v[4m + j], then one permute.
  static inline reg hsums(const reg* v) {
    reg w[8], x[4], y[2];
    for (int i = 0; i < 8; ++i)
      w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                           _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; ++i)
      x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; ++i)
      y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                           _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
    const reg z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88),
                                _mm512_shuffle_ps(y[0], y[1], 0xDD));
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
  }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
};

#include "kernels_impl.h"

}  // namespace f32

namespace f64 {

// float64: 8 lanes, the same register tiles as float32 (same register count).
struct V {
  typedef double T;
  static const int N = 8;
  typedef __m512d reg;
  static inline __mmask8 first(int n) { return (__mmask8)((1u << n) - 1u); }
  static inline reg zero() { return _mm512_setzero_pd(); }
  static inline reg set1(double f) { return _mm512_set1_pd(f); }
  static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
  static inline reg load_n(const double* p, int n) { return _mm512_maskz_loadu_pd(first(n), p); }
  static inline reg bcast(const double* p) { return _mm512_set1_pd(*p); }
  static inline reg fma_bcast(const double* p, reg b, reg c) {
    __asm__("vfmadd231pd %[x]%{1to8%}, %[b], %[c]" : [c] "+v"(c) : [b] "v"(b), [x] "m"(*p));
    return c;
  }
  static inline void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static inline void store_n(double* p, reg v, int n) { _mm512_mask_storeu_pd(p, first(n), v); }
  static inline void stream(double* p, reg v) {
    if (((uintptr_t)p & 63) == 0) _mm512_stream_pd(p, v);
    else _mm512_storeu_pd(p, v);
  }
  static inline void load_even_odd(const double* p, reg& even, reg& odd) {  // as for float32
    const reg a = load(p), b = load(p + 8);
    const __m512i e = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    even = _mm512_permutex2var_pd(a, e, b);
    odd = _mm512_permutex2var_pd(a, _mm512_add_epi64(e, _mm512_set1_epi64(1)), b);
  }
  static inline void fence() { _mm_sfence(); }
  // 8 x 8: interleave pairs of rows, t[2k + e] holds rows 2k, 2k+1 of columns 2L + e in its
  // 128-bit blocks L; two rounds of block shuffles gather column 2L + e from the blocks L of
  // t[e], t[2 + e], t[4 + e], t[6 + e]. Masked as the float32 transpose.
  static inline void transpose(const double* src, int64_t sc, double* dst, int64_t dc, int nc,
                               int nw) {
    __m512d r[8], t[8];
    for (int k = 0; k < 8; ++k) r[k] = k < nc ? load_n(src + k * sc, nw) : zero();
    for (int k = 0; k < 8; k += 2) {
      t[k] = _mm512_unpacklo_pd(r[k], r[k + 1]);
      t[k + 1] = _mm512_unpackhi_pd(r[k], r[k + 1]);
    }
    for (int e = 0; e < 2; ++e) {
      const __m512d u0 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88);
      const __m512d u1 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xDD);
      const __m512d v0 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88);
      const __m512d v1 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xDD);
      if (e < nw) store_n(dst + e * dc, _mm512_shuffle_f64x2(u0, v0, 0x88), nc);
      if (2 + e < nw) store_n(dst + (2 + e) * dc, _mm512_shuffle_f64x2(u1, v1, 0x88), nc);
      if (4 + e < nw) store_n(dst + (4 + e) * dc, _mm512_shuffle_f64x2(u0, v0, 0xDD), nc);
      if (6 + e < nw) store_n(dst + (6 + e) * dc, _mm512_shuffle_f64x2(u1, v1, 0xDD), nc);
    }
  }
  typedef __m512i ireg;  // 64-bit lane indices, from 8 ints
  static inline ireg iload(const int* p) {
    return _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i*)p));
  }
  static inline reg permute(reg v, ireg i) { return _mm512_permutexvar_pd(i, v); }
  static inline double hsum(reg v) { return _mm512_reduce_add_pd(v); }
  // Lane i = the sum of the lanes of v[i], for 8 vectors: three rounds that each add pairs of
  // halves (256-, 128-, 64-bit), leaving lane 2j + m with v[4m + j], then one permute.
  static inline reg hsums(const reg* v) {
    reg w[4], x[2];
    for (int i = 0; i < 4; ++i)
      w[i] = _mm512_add_pd(_mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0x44),
                           _mm512_shuffle_f64x2(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; ++i)
      x[i] = _mm512_add_pd(_mm512_shuffle_f64x2(w[2 * i], w[2 * i + 1], 0x88),
                           _mm512_shuffle_f64x2(w[2 * i], w[2 * i + 1], 0xDD));
    const reg z = _mm512_add_pd(_mm512_shuffle_pd(x[0], x[1], 0x00),
                                _mm512_shuffle_pd(x[0], x[1], 0xFF));
    return _mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), z);
  }
  static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
};

#include "kernels_impl.h"

}  // namespace f64
}  // namespace avx512

IsaKernels kernels_avx512() { return {&avx512::f32::kTable, &avx512::f64::kTable}; }

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
