// The AVX-512 kernels' schedule on emulated 512-bit vectors: kernels_impl.h instantiated with
// the AVX-512 tile sizes (avx512_tiles.h) and 16 float / 8 double lanes, each vector a GCC
// generic vector that the compiler lowers to AVX2 halves. It exists for testing: machines
// without AVX-512 run every AVX-512 code path of kernels_impl.h and fast_paths.cpp (tile
// shapes, 16-lane tails and panels) through TORCHCONV_CPU_ISA=avx512-emulated or
// set_cpu_isa. What it cannot check is kernels_avx512.cpp's intrinsics themselves.
#pragma GCC target("avx2,fma")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12: the tiles' block sums
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"  // 512-bit vectors passed by value (internal only)

#include <stdint.h>
#include <string.h>

#include "avx512_tiles.h"
#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace avx512_emulated {

#define TC_HAS_PERMUTE 1
#define TC_ISA_NAME "avx512-emulated"
#define TC_EMULATED_VECTORS 1  // vectors wider than a register (no register asm constraints)

// L lanes of E with the operations kernels_impl.h needs; multiply-adds are fused, as on the
// hardware (a * b + c contracts to FMA under -ffp-contract=fast, GCC's default).
template <typename E, typename I, int L>
struct Lanes {
  typedef E T;
  static const int N = L;
  typedef E reg __attribute__((vector_size(L * sizeof(E))));
  typedef I ireg __attribute__((vector_size(L * sizeof(I))));
  static inline reg zero() { return reg{}; }
  static inline reg set1(E f) { return reg{} + f; }
  static inline reg load(const E* p) {
    reg v;
    memcpy(&v, p, sizeof v);
    return v;
  }
  static inline reg load_n(const E* p, int n) {
    reg v{};
    for (int i = 0; i < n && i < L; ++i) v[i] = p[i];
    return v;
  }
  static inline reg bcast(const E* p) { return set1(*p); }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
  static inline reg fma_bcast(const E* p, reg b, reg c) { return fma(bcast(p), b, c); }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg sub(reg a, reg b) { return a - b; }
  static inline void store(E* p, reg v) { memcpy(p, &v, sizeof v); }
  static inline void store_n(E* p, reg v, int n) {
    for (int i = 0; i < n && i < L; ++i) p[i] = v[i];
  }
  static inline void stream(E* p, reg v) { store(p, v); }
  static inline void fence() {}
  static inline void load_even_odd(const E* p, reg& even, reg& odd) {
    for (int i = 0; i < L; ++i) even[i] = p[2 * i], odd[i] = p[2 * i + 1];
  }
  static inline void transpose(const E* src, int64_t sc, E* dst, int64_t dc, int nc, int nw) {
    for (int i = 0; i < nw; ++i) {
      for (int c = 0; c < nc; ++c) dst[i * dc + c] = src[c * sc + i];
    }
  }
  // lane indices from L ints (64-bit lanes for double, as the AVX-512 TU widens them)
  static inline ireg iload(const int* p) {
    ireg v;
    for (int i = 0; i < L; ++i) v[i] = p[i];
    return v;
  }
  static inline reg permute(reg v, ireg idx) {
    reg r;
    for (int i = 0; i < L; ++i) r[i] = v[idx[i] & (L - 1)];
    return r;
  }
  // halves added pairwise, as a vector reduction does
  static inline E hsum(reg v) {
    E t[L];
    memcpy(t, &v, sizeof v);
    for (int w = L / 2; w > 0; w /= 2) {
      for (int i = 0; i < w; ++i) t[i] += t[i + w];
    }
    return t[0];
  }
  static inline reg hsums(const reg* v) {
    reg r;
    for (int i = 0; i < L; ++i) r[i] = hsum(v[i]);
    return r;
  }
};

namespace f32 {
typedef Lanes<float, int32_t, 16> V;
#include "kernels_impl.h"
}  // namespace f32

namespace f64 {
typedef Lanes<double, int64_t, 8> V;
#include "kernels_impl.h"
}  // namespace f64
}  // namespace avx512_emulated

IsaKernels kernels_avx512_emulated() {
  return {&avx512_emulated::f32::kTable, &avx512_emulated::f64::kTable};
}

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
