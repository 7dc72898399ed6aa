// Portable scalar instantiation of the fast CPU kernels (kernels_impl.h): same tiling and
// summation order as the vector TUs, one lane per "vector" (plain multiply-add, no FMA).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positives: the tile
#pragma GCC diagnostic ignored "-Wuninitialized"        // sums are read only once written

#include <stdint.h>

#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace scalar {

// Tile sizes, for both element types (same register count: the same tiles).
#define DIRECT_NV 4
#define DIRECT_NP 4
#define DIRECT_WIDE_NV 4
#define DIRECT_WIDE_NP 4
#define DIRECT_MID_NV 4
#define DIRECT_MID_NP 4
#define DIRECT_NARROW_NP 4
#define REDUCE_NP 1
#define GW_WIDE_NV 4
#define GW_WIDE_NC 4
#define GW_NV 4
#define GW_NC 4
#define GW_NARROW_NC 4
#define PD_NK 4
#define PD_NV 4
#define PG_NK 4
#define PG_NC 4
#define DW_NP 4
#define DW3_NP 4
#define FMA_CHAINS 8
#define PLANE_ROWS 4
#define PLANE_NS 4
#define GP_NS 1
#define TC_HAS_PERMUTE 0
#define TC_ISA_NAME "scalar"

// One lane of element type E.
template <typename E>
struct Lane {
  typedef E T;
  static const int N = 1;
  typedef E reg;
  static inline reg zero() { return E(0); }
  static inline reg set1(E f) { return f; }
  static inline reg load(const E* p) { return *p; }
  static inline reg load_n(const E* p, int n) { return n > 0 ? *p : E(0); }
  static inline reg bcast(const E* p) { return *p; }
  static inline reg fma_bcast(const E* p, reg b, reg c) { return fma(bcast(p), b, c); }
  static inline void store(E* p, reg v) { *p = v; }
  static inline void stream(E* p, reg v) { *p = v; }
  static inline void fence() {}
  static inline void load_even_odd(const E* p, reg& even, reg& odd) {
    even = p[0];
    odd = p[1];
  }
  static inline void transpose(const E* src, int64_t, E* dst, int64_t, int, int) {
    *dst = *src;
  }
  static inline void store_n(E* p, reg v, int n) {
    if (n > 0) *p = v;
  }
  static inline reg hsums(const reg* v) { return v[0]; }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg sub(reg a, reg b) { return a - b; }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
};

namespace f32 {
typedef Lane<float> V;
#include "kernels_impl.h"
}  // namespace f32

namespace f64 {
typedef Lane<double> V;
#include "kernels_impl.h"
}  // namespace f64
}  // namespace scalar

IsaKernels kernels_scalar() { return {&scalar::f32::kTable, &scalar::f64::kTable}; }

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
