// Portable scalar instantiation of the fast CPU kernels (kernels_impl.h): same tiling and
// summation order as the vector TUs, one lane per "vector" (plain multiply-add, no FMA).
#include <stdint.h>

#include "kernel_api.h"

namespace torchconv {
namespace cpu {
namespace isa {
namespace scalar {

struct V {
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

}  // namespace scalar

const KernelTable* kernels_scalar() { return &scalar::kTable; }

}  // namespace isa
}  // namespace cpu
}  // namespace torchconv
