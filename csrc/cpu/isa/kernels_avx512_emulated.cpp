// The AVX-512 kernels' schedule on emulated 512-bit vectors: kernels_impl.h instantiated with
// the AVX-512 tile sizes (avx512_tiles.h) and 16 float / 8 double lanes, each vector two AVX2
// halves. It exists for testing: machines without AVX-512 run every AVX-512 code path of
// kernels_impl.h and fast_paths.cpp (tile shapes, 16-lane tails and panels) through
// TORCHCONV_CPU_ISA=avx512-emulated or set_cpu_isa. What it cannot check is
// kernels_avx512.cpp's intrinsics themselves.
#pragma GCC target("avx2,fma")
// -O1 for this testing aid only: at the build's -O3 this TU compiled for more than 28 minutes
// (Zen 2, one core); at -O1 in about 8, and the tests it runs need no speed.
#pragma GCC optimize("O1")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12: the tiles' block sums
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>
#include <stdint.h>

#include "avx512_tiles.h"
#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace avx512_emulated {

#define TC_HAS_PERMUTE 1
#define TC_ISA_NAME "avx512-emulated"
#define TC_EMULATED_VECTORS 1  // vectors wider than a register (no register asm constraints)

// One 256-bit half of an emulated vector, per element type.
template <typename E>
struct Half;
template <>
struct Half<float> {
  typedef __m256 h;
  static h zero() { return _mm256_setzero_ps(); }
  static h set1(float f) { return _mm256_set1_ps(f); }
  static h load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, h v) { _mm256_storeu_ps(p, v); }
  static h add(h a, h b) { return _mm256_add_ps(a, b); }
  static h sub(h a, h b) { return _mm256_sub_ps(a, b); }
  static h fma(h a, h b, h c) { return _mm256_fmadd_ps(a, b, c); }
};
template <>
struct Half<double> {
  typedef __m256d h;
  static h zero() { return _mm256_setzero_pd(); }
  static h set1(double f) { return _mm256_set1_pd(f); }
  static h load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, h v) { _mm256_storeu_pd(p, v); }
  static h add(h a, h b) { return _mm256_add_pd(a, b); }
  static h sub(h a, h b) { return _mm256_sub_pd(a, b); }
  static h fma(h a, h b, h c) { return _mm256_fmadd_pd(a, b, c); }
};

// 512 bits of E (16 floats / 8 doubles) as two AVX2 halves, with the operations
// kernels_impl.h needs; multiply-adds are fused, as on the hardware. Lane-wise operations go
// through arrays. (GCC generic 512-bit vectors took 13 minutes to compile.)
template <typename E, typename I>
struct Lanes {
  typedef E T;
  typedef Half<E> H;
  static const int HN = int(32 / sizeof(E));
  static const int N = 2 * HN;
  struct reg {
    typename H::h lo, hi;
  };
  struct ireg {
    I i[N];
  };
  static inline reg zero() { return {H::zero(), H::zero()}; }
  static inline reg set1(E f) { return {H::set1(f), H::set1(f)}; }
  static inline reg load(const E* p) { return {H::load(p), H::load(p + HN)}; }
  static inline void store(E* p, reg v) { H::store(p, v.lo), H::store(p + HN, v.hi); }
  static inline reg load_n(const E* p, int n) {
    E t[N] = {};
    for (int i = 0; i < n && i < N; ++i) t[i] = p[i];
    return load(t);
  }
  static inline void store_n(E* p, reg v, int n) {
    E t[N];
    store(t, v);
    for (int i = 0; i < n && i < N; ++i) p[i] = t[i];
  }
  static inline reg bcast(const E* p) { return set1(*p); }
  static inline reg add(reg a, reg b) { return {H::add(a.lo, b.lo), H::add(a.hi, b.hi)}; }
  static inline reg sub(reg a, reg b) { return {H::sub(a.lo, b.lo), H::sub(a.hi, b.hi)}; }
  static inline reg fma(reg a, reg b, reg c) {
    return {H::fma(a.lo, b.lo, c.lo), H::fma(a.hi, b.hi, c.hi)};
  }
  static inline reg fma_bcast(const E* p, reg b, reg c) { return fma(bcast(p), b, c); }
  static inline void stream(E* p, reg v) { store(p, v); }
  static inline void fence() {}
  static inline void load_even_odd(const E* p, reg& even, reg& odd) {
    E e[N], o[N];
    for (int i = 0; i < N; ++i) e[i] = p[2 * i], o[i] = p[2 * i + 1];
    even = load(e), odd = load(o);
  }
  static inline void transpose(const E* src, int64_t sc, E* dst, int64_t dc, int nc, int nw) {
    for (int i = 0; i < nw; ++i) {
      for (int c = 0; c < nc; ++c) dst[i * dc + c] = src[c * sc + i];
    }
  }
  // lane indices from N ints (64-bit lanes for double, as the AVX-512 TU widens them)
  static inline ireg iload(const int* p) {
    ireg v;
    for (int i = 0; i < N; ++i) v.i[i] = p[i];
    return v;
  }
  static inline reg permute(reg v, ireg idx) {
    E t[N], r[N];
    store(t, v);
    for (int i = 0; i < N; ++i) r[i] = t[idx.i[i] & (N - 1)];
    return load(r);
  }
  // halves added pairwise, as a vector reduction does
  static inline E hsum(reg v) {
    E t[N];
    store(t, v);
    for (int w = N / 2; w > 0; w /= 2) {
      for (int i = 0; i < w; ++i) t[i] += t[i + w];
    }
    return t[0];
  }
  static inline reg hsums(const reg* v) {
    E r[N];
    for (int i = 0; i < N; ++i) r[i] = hsum(v[i]);
    return load(r);
  }
};

namespace f32 {
typedef Lanes<float, int32_t> V;
#include "kernels_impl.h"
}  // namespace f32

namespace f64 {
typedef Lanes<double, int64_t> V;
#include "kernels_impl.h"
}  // namespace f64
}  // namespace avx512_emulated

IsaKernels kernels_avx512_emulated() {
  return {&avx512_emulated::f32::kTable, &avx512_emulated::f64::kTable};
}

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
