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

namespace f32 {

struct V {
  typedef float T;
  static const int N = 1;
  typedef float reg;
  static inline reg zero() { return 0.0f; }
  static inline reg set1(float f) { return f; }
  static inline reg load(const float* p) { return *p; }
  static inline reg load_n(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  static inline reg bcast(const float* p) { return *p; }
  static inline void store(float* p, reg v) { *p = v; }
  static inline void stream(float* p, reg v) { *p = v; }
  static inline void fence() {}
  static inline void transpose(const float* src, int64_t, float* dst, int64_t, int, int) {
    *dst = *src;
  }
  static inline void store_n(float* p, reg v, int n) {
    if (n > 0) *p = v;
  }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
};

#define DIRECT_NV 4
#define DIRECT_NP 4
#define DIRECT_WIDE_NV 4
#define DIRECT_WIDE_NP 4
#define REDUCE_NP 1
#define GW_WIDE_NV 4
#define GW_WIDE_NC 4
#define GW_NV 4
#define GW_NC 4
#define DW_NP 4
#define FMA_CHAINS 8
#define PLANE_NS 4
#define TC_HAS_PERMUTE 0
#define TC_ISA_NAME "scalar"
#include "kernels_impl.h"

}  // namespace f32

namespace f64 {

struct V {
  typedef double T;
  static const int N = 1;
  typedef double reg;
  static inline reg zero() { return 0.0; }
  static inline reg set1(double f) { return f; }
  static inline reg load(const double* p) { return *p; }
  static inline reg load_n(const double* p, int n) { return n > 0 ? *p : 0.0; }
  static inline reg bcast(const double* p) { return *p; }
  static inline void store(double* p, reg v) { *p = v; }
  static inline void stream(double* p, reg v) { *p = v; }
  static inline void fence() {}
  static inline void transpose(const double* src, int64_t, double* dst, int64_t, int, int) {
    *dst = *src;
  }
  static inline void store_n(double* p, reg v, int n) {
    if (n > 0) *p = v;
  }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
};

#define DIRECT_NV 4
#define DIRECT_NP 4
#define DIRECT_WIDE_NV 4
#define DIRECT_WIDE_NP 4
#define REDUCE_NP 1
#define GW_WIDE_NV 4
#define GW_WIDE_NC 4
#define GW_NV 4
#define GW_NC 4
#define DW_NP 4
#define FMA_CHAINS 8
#define PLANE_NS 4
#define TC_HAS_PERMUTE 0
#include "kernels_impl.h"

}  // namespace f64
}  // namespace scalar

IsaKernels kernels_scalar() { return {&scalar::f32::kTable, &scalar::f64::kTable}; }

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
