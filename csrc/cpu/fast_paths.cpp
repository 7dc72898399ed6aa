// Torch-facing side of the vectorised float32 / float64 CPU kernels: eligibility, layout handling,
// weight packing, ISA choice, threading. The arithmetic lives in the per-ISA translation units
// (isa/kernels_*.cpp, one templated implementation in isa/kernels_impl.h).
//
// Algorithm choice (simple, documented heuristic), first match wins:
//  * depthwise (one input and one output channel per group), memory bound:
//    - NCHW-like input and output (rows contiguous, not channels_last; use_plane): rows
//      vectorised, one plane at a time staged zero-padded and split into stride_w column
//      phases in per-worker scratch, so every tap of a vector of output columns is one
//      contiguous load (no transposes; grad_weight sums a channel's planes in order);
//    - otherwise channel-vectorised (DW_NP pixels x one channel vector per register tile),
//      padding handled in the kernel (row-wise interior segments + per-pixel border taps), so
//      a channels_last input is never copied; an NCHW output leaves per-worker scratch by
//      transposes, a task being a whole image (or blocks of its channels) where it fits;
//      the forward's packed taps are kept between calls (WeightCache).
//  * grouped with at most 16 channels per group in and out (use_grouped_planes): as the
//    depthwise plane path, a group's cpg input planes staged per task, its output channels 4
//    at a time over them (grouped_plane); NCHW rows are read in place, channels_last ones
//    staged (with stride_w > 1 through unpadded planes, then split into column phases) and
//    written back through transposes of about a vector of channels;
//  * grouped with few channels per group (kpg < VL, VL % kpg == 0, cpg <= kpg, e.g. ResNeXt
//    4/4): one output vector spans VL/kpg groups; its input channels are loaded as one vector
//    and spread to their lanes with one permutation per input channel (use_grouped).
//  * few output channels per group and a long reduction (kpg <= 4, cpg >= VL; e.g. grad_input
//    of an RGB stem): vectorised over the reduction channels, horizontal sum at the end
//    (use_reduce).
//  * float32 3x3, stride 1, one group, >= 16 input and output channels and >= 32 output tiles
//    of 2x2 (use_winograd; forward and grad_input): Winograd F(2x2, 3x3), 16 products per
//    tile instead of 36, as 16 GEMMs on the direct kernel (tiles as pixels, sums in blocks of
//    32 products, 16 in the stride-1 3x3 grad_input: kWinogradBlock); dilated ones as
//    dilation phases of undilated ones; inputs or weights with NaN / inf fall back to the
//    direct kernel. Larger odd kernels (5x5, 7x7, 3x5, ...; stride 1, no dilation) as 3x3
//    sub-kernels over the grid of transformed tiles (run_winograd_nested;
//    5x5: 64 products per tile instead of 100); the weight gradient of both from 256 tiles
//    (run_winograd_grad_weight). The forward, the input gradient and (from 256 tiles, both
//    operands channels_last) the weight gradient of undilated 3x3 stride-2 layers with the
//    same minimums (use_winograd_stride2, use_winograd_stride2_grad_input) run on stride-2
//    forms of those transforms, 25 products per tile instead of 36 (WinogradKind).
//    TORCHCONV_CPU_WINOGRAD=0 (or _C.set_cpu_winograd(False)) turns them all off.
//  * everything else (dense, grouped, 1x1, any R x S / stride / dilation / padding): direct
//    convolution with a register tile of DIRECT_NP output pixels x KB output channels, input
//    scalars broadcast, weights packed into [group][k-block][r][s][c][KB] panels (kept between
//    calls: WeightCache).
//    KB = 2 vectors x 12 pixels, or the "wide" 4 vectors x 6 pixels (fewer broadcasts per FMA)
//    when kpg is a multiple of 4 vectors, else the "mid" 3 vectors x 8 pixels (AVX-512) when
//    kpg is a multiple of 3 vectors, the panel staying L2-sized (direct_tile). 1x1
//    convolutions are the R = S = 1 case; they read a channels_last input in place, and an
//    NCHW one through per-task pixel-major panels (a task's pixels, all channels;
//    use_pixel_panel; small images where those would not fit L2 are staged pixel-major
//    instead, stage_small_images), or, with at most 256 input channels over large images,
//    vectorised along the pixels (use_direct_planes: rows of NCHW planes in and out, no
//    transposes; with >= 64 output channels each pixel tile's rows are first copied
//    contiguous, kPackedTilesMinOutputs).
//    Small images (<= 2 pixel chunks) iterate images inside k-blocks (panel reuse). Where a
//    task runs every k-block over its pixels (1x1s, or panels within kTileKBlocksPanelBytes)
//    and in the Winograd GEMMs, each pixel tile (NCHW output: each run of 96 pixels) takes all
//    k-blocks in turn (DirectArgs::kblocks).
//  * Input staging: when any window position falls into the padding (or a kernel needs unit
//    channel stride) the input is packed, a bounded chunk of images at a time
//    (<= kStageBytes, at least one image), into a zero-padded NHWC copy so the
//    kernels never bounds-check; otherwise the kernels read the input in place through its
//    strides (NCHW, channels_last or anything else). Outputs are written in place through
//    their strides (vector stores for channels_last, transposed stores for NCHW).
//  * grad_input = forward over grad_output with the weights rotated by 180 degrees and C/K
//    swapped per group; for stride > 1 it is split into stride_h * stride_w phases, each a
//    stride-1 convolution with the subset of taps that hit that phase (dilation dh/gcd(dh,sh)),
//    writing a strided view of grad_input; all phases share one staged copy of grad_output and
//    one parallel region; phases that no tap reaches are zero.
//  * grad_weight: register tile of GW_NC input channels x KB output channels for one tap,
//    streamed over images / output pixels in a fixed order; tasks are (group, k-block,
//    channel block, tap), each thread owning whole tasks (no cross-thread reduction), and
//    pixels are visited in row blocks so that a row block of input and grad_output stays in
//    cache while all of a thread's tasks pass over it. Depthwise / grouped have their own
//    channel-vectorised grad_weight kernels. 1x1 stride-1 convolutions over NCHW planes of at
//    least kPlanesMinPixels pixels (both operands with dense planes) are vectorised along the
//    pixels instead (use_planes_grad_weight): both operands read in place, no transposes;
//    over channels_last operands they may run with x and grad_output swapped (the same GEMM
//    with the other operand in the tile's vectors: swaps_1x1_grad_weight).
//  * Threading: at::parallel_for (honours torch.set_num_threads); compute tasks are handed out
//    dynamically (dynamic_for) so a descheduled thread on a shared machine does not stall the
//    others.
//  Results are bitwise independent of the number of threads: every output element is
//  computed by one kernel call in a fixed order.
//  Every path exists for float32 and float64 (the same code, templated on the element type;
//  budgets are in bytes). float16 / bfloat16 / complex reach these kernels through
//  conv2d_cpu.cpp (widened to float32 / real products).
#include "fast_paths.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "generic_kernels.h"
#include "isa/kernel_api.h"

namespace torchconv::cpu::fast {

bool cpu_has_avx512_core() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

namespace {

template <typename T>
using Table = isa::KernelTableT<T>;

template <typename T>
at::TensorOptions options_of() {
  return at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
}

constexpr int64_t kStageBytes = int64_t(16) << 20;  // per staged chunk of images
// Elements of T per cache line.
template <typename T>
constexpr int64_t kLineElems = 64 / int64_t(sizeof(T));
// Pixel tiles per task of the direct kernels (smaller tasks cost measurably more in scheduling
// and setup on short reductions).
constexpr int64_t kDirectTilesPerTask = 32;
// Staged chunks of the direct kernels where enough tasks remain: a copy that fits the caches
// is read back from them (R50 3x3 stride 2, 8 x 1.7 MB padded images, one 13.8 MB chunk:
// 0.89-0.91x native forward; image by image: 0.95-0.97x).
constexpr int64_t kStageCacheBytes = int64_t(2) << 20;
// bfloat16 weight gradients run as a convolution whose output pixels are the R x S taps (see
// try_grad_weight_bf16): a register tile of 12 pixels needs about that many taps.
constexpr int64_t kBf16GradWeightMinTaps = 9;
// The bfloat16 input gradient runs on the BF16 kernel from this many input channels (its
// output channels there; R50 stem, 3 channels, stride 2: 0.46-0.52x native, widened 0.8x+).
constexpr int64_t kBf16GradInputMinChannels = 16;

// Every ISA name set_cpu_isa accepts, best first (available_cpu_isas lists the supported ones).
constexpr const char* kIsaNames[] = {"avx512", "avx2", "scalar", "generic", "avx512-emulated"};

bool cpu_supports(const std::string& name) {
  if (name == "avx512") {
    return cpu_has_avx512_core() && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("avx2");
  }
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#ifdef TORCHCONV_AVX512_EMULATED
  if (name == "avx512-emulated") return cpu_supports("avx2");  // AVX2 code
#endif
  return name == "scalar" || name == "generic";
}

isa::IsaKernels kernels_of(const std::string& name) {
  if (name == "avx512") return isa::kernels_avx512();
  if (name == "avx2") return isa::kernels_avx2();
  if (name == "scalar") return isa::kernels_scalar();
#ifdef TORCHCONV_AVX512_EMULATED
  if (name == "avx512-emulated") return isa::kernels_avx512_emulated();
#endif
  return {nullptr, nullptr};  // "generic": fast paths off
}

std::string best_isa() {
  for (const char* n : {"avx512", "avx2"}) {
    if (cpu_supports(n)) return n;
  }
  return "scalar";
}

struct IsaState {
  std::mutex mu;
  std::string name;
  std::atomic<const Table<float>*> f32{nullptr};
  std::atomic<const Table<double>*> f64{nullptr};
  void select(const std::string& isa) {
    const isa::IsaKernels k = kernels_of(isa);
    name = isa;
    f32.store(k.f32, std::memory_order_release);
    f64.store(k.f64, std::memory_order_release);
  }
  IsaState() {
    const char* env = std::getenv("TORCHCONV_CPU_ISA");
    std::string want = env && *env ? std::string(env) : best_isa();
    if (!cpu_supports(want)) want = best_isa();  // unknown / unsupported request: best
    select(want);
  }
};

IsaState& isa_state() {
  static IsaState state;
  return state;
}

template <typename T>
const Table<T>* current() {
  if constexpr (std::is_same_v<T, float>) {
    return isa_state().f32.load(std::memory_order_acquire);
  } else {
    return isa_state().f64.load(std::memory_order_acquire);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How many workers dynamic_for uses for n tasks (1 inside an enclosing parallel region).
int64_t worker_count(int64_t n, int64_t min_tasks_per_thread) {
  if (n <= 0 || at::in_parallel_region()) return 1;
  return std::min<int64_t>(at::get_num_threads(),
                           std::max<int64_t>(1, n / std::max<int64_t>(1, min_tasks_per_thread)));
}

// Runs f(t, worker) for every task t in [0, n) on `workers` threads (worker in [0, workers):
// an index for per-worker scratch), handing tasks out dynamically (an atomic counter): a
// thread that is descheduled on a busy machine does not hold up the others. Every task
// computes a fixed set of outputs in a fixed order whichever thread runs it, so the results
// do not depend on the number of threads or on the schedule.
template <typename F>
void dynamic_for_workers(int64_t n, int64_t workers, const F& f) {
  if (n <= 0) return;
  if (workers <= 1) {
    for (int64_t t = 0; t < n; ++t) f(t, int64_t(0));
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t worker, int64_t) {
    for (int64_t t = next.fetch_add(1, std::memory_order_relaxed); t < n;
         t = next.fetch_add(1, std::memory_order_relaxed)) {
      f(t, worker);
    }
  });
}

// As dynamic_for_workers, but f(t, worker, ahead) also learns the task `ahead` the thread runs
// next (-1: none known), claimed before t runs so that t can prefetch its input. The last
// tasks are not claimed ahead, where a claimed task could keep one thread busy while the
// others have nothing left.
template <typename F>
void dynamic_for_workers_ahead(int64_t n, int64_t workers, const F& f) {
  if (n <= 0) return;
  if (workers <= 1) {
    for (int64_t t = 0; t < n; ++t) f(t, int64_t(0), t + 1 < n ? t + 1 : int64_t(-1));
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t worker, int64_t) {
    int64_t t = next.fetch_add(1, std::memory_order_relaxed);
    while (t < n) {
      int64_t ahead = -1;
      if (next.load(std::memory_order_relaxed) < n - 2 * workers) {
        ahead = next.fetch_add(1, std::memory_order_relaxed);
      }
      f(t, worker, ahead < n ? ahead : int64_t(-1));
      t = ahead >= 0 ? ahead : next.fetch_add(1, std::memory_order_relaxed);
    }
  });
}

// f(t) for every task t in [0, n), on as many workers as have min_tasks_per_thread tasks each.
template <typename F>
void dynamic_for(int64_t n, int64_t min_tasks_per_thread, const F& f) {
  dynamic_for_workers(n, worker_count(n, min_tasks_per_thread),
                      [&](int64_t t, int64_t) { f(t); });
}

// ---------------------------------------------------------------------------------------------
// Per-call workspaces that are reused between calls. A fresh multi-MB buffer is returned to
// the OS when freed and page-faults on every call (Zen 5: writing 16 MB takes 3.3 ms the first
// time, 0.9 ms in a reused buffer). Each calling thread keeps its largest buffer of every
// purpose up to kKeepBytes (so at most kKeepBytes per purpose and thread stay allocated
// between calls); a buffer that is still in use (a nested call) or larger is allocated anew.
// Asked for inside a task, it is the worker thread's own buffer: the lines it last wrote are in
// that core's caches (a per-call buffer split among the workers hands a worker lines that the
// other core wrote in an earlier call).
enum class Workspace {
  stage, grad_output, winograd_weights, winograd_scratch, pixel_panel,
  depthwise_input, depthwise_output,  // per task (run_depthwise)
  pass_groups,                        // (grad_weight_on's by_passes)
  count
};
constexpr int64_t kKeepBytes = int64_t(24) << 20;

// A byte buffer of at least `elements` T (see above), valid while the returned tensor lives.
template <typename T>
at::Tensor workspace(Workspace purpose, int64_t elements) {
  thread_local at::Tensor kept[int(Workspace::count)];
  at::Tensor& k = kept[int(purpose)];
  const int64_t bytes = elements * int64_t(sizeof(T));
  const auto fresh = [&] { return at::empty({bytes}, at::TensorOptions().dtype(at::kByte)); };
  if (bytes > kKeepBytes || (k.defined() && k.use_count() > 1)) return fresh();
  if (!k.defined() || k.numel() < bytes) k = fresh();
  return k;
}
template <typename T>
T* data_of(const at::Tensor& workspace_buffer) {
  return static_cast<T*>(workspace_buffer.data_ptr());
}

// ---------------------------------------------------------------------------------------------
// Packed weights kept between calls. Inference passes the same weights again and again, and
// packing them is repeated work (Winograd's transformed weights, 16/9 of the weights: 1.5 ms
// of R50 L4 3x3's 7.8 ms, 0.21 of the N=1 latency layer's 1.0). An entry is found again only
// for the same storage (held weakly: a freed storage never matches, even when its address
// comes back), the same version counter (in-place updates such as optimizer steps bump it),
// the same view of it (offset, sizes, strides, dtype), the same sample of values (updates
// through `.data` bypass the version counter, not the values; see sample_of) and the same
// packing (`what`).
// Entries of freed weights are dropped at the next call that packs weights; at most
// TORCHCONV_CPU_WEIGHT_CACHE_MB (default 256; 0 turns the cache off) stay allocated, least
// recently used out first. Calls on one weight from several threads at once may each pack it.
int64_t weight_cache_budget() {
  static const int64_t bytes = [] {
    const char* env = std::getenv("TORCHCONV_CPU_WEIGHT_CACHE_MB");
    return (env && *env ? std::max<int64_t>(0, std::atoll(env)) : 256) << 20;
  }();
  return bytes;
}

thread_local bool weight_cache_bypassed = false;

class WeightCache {
 public:
  // pack(owned) packs the weights; owned: into memory of its own (a cached entry), else it may
  // use a per-thread workspace. An undefined result (weights that cannot be packed) is not kept.
  template <typename Pack>
  at::Tensor get(const at::Tensor& weight, std::vector<int64_t> what, const Pack& pack) {
    const int64_t budget = weight_cache_budget();
    if (budget == 0 || weight_cache_bypassed || weight.is_inference() || !weight.has_storage()) {
      return pack(false);
    }
    append_view(weight, what);
    const c10::StorageImpl* storage = weight.storage().unsafeGetStorageImpl();
    const uint32_t version = weight.unsafeGetTensorImpl()->version_counter().current_version();
    const uint64_t sample = sample_of(weight);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      entries_.remove_if([](const Entry& e) { return e.storage.expired(); });
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->storage_impl == storage && it->version == version && it->sample == sample &&
            it->what == what) {
          entries_.splice(entries_.begin(), entries_, it);  // most recently used first
          return it->packed;
        }
      }
    }
    at::Tensor packed = pack(true);
    const int64_t bytes = packed.defined() ? packed.nbytes() : 0;
    if (bytes == 0 || bytes > budget) return packed;
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.remove_if([&](const Entry& e) {  // freed, or an older state of these weights
      return e.storage.expired() || (e.storage_impl == storage && e.what == what);
    });
    entries_.push_front(Entry{weight.storage().getWeakStorageImpl(), storage, version, sample,
                              std::move(what), packed});
    int64_t total = 0;  // keep the most recently used entries that fit the budget
    for (auto it = entries_.begin(); it != entries_.end();) {
      const int64_t entry_bytes = it->packed.nbytes();
      if (total + entry_bytes > budget) {
        it = entries_.erase(it);
      } else {
        total += entry_bytes;
        ++it;
      }
    }
    return packed;
  }

 private:
  struct Entry {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    const c10::StorageImpl* storage_impl;
    uint32_t version;
    uint64_t sample;
    std::vector<int64_t> what;
    at::Tensor packed;
  };

  static void append_view(const at::Tensor& w, std::vector<int64_t>& key) {
    key.push_back(static_cast<int64_t>(w.scalar_type()));
    key.push_back(w.storage_offset());
    for (int64_t d = 0; d < w.dim(); ++d) key.push_back(w.size(d)), key.push_back(w.stride(d));
  }

  // A hash of the bits of kSamples elements (all of them in smaller weights). Dense weights
  // (contiguous or channels_last: their elements fill [data, data + numel)) are sampled at
  // memory positions j * golden ratio (mod numel), a low-discrepancy sequence that lines up
  // with no channel or tap structure: an update through `.data` of one output channel, one
  // input channel or one tap of a weight with up to ~500 of them changes sampled elements.
  // (Evenly spaced samples took one per output channel: zeroing every other channel of a
  // 128-channel weight left all 64 samples unchanged.) Other views: evenly spread indices.
  static constexpr int64_t kSamples = 1024;
  static uint64_t sample_of(const at::Tensor& w) {
    switch (w.element_size()) {
      case 1: return sample_bits<uint8_t>(w);
      case 2: return sample_bits<uint16_t>(w);
      case 4: return sample_bits<uint32_t>(w);
      default: return sample_bits<uint64_t>(w);  // (complex128: the real parts)
    }
  }
  // Four interleaved FNV-1a chains (one serial chain of multiplies cost ~2 us a call: a
  // visible share of small layers).
  template <typename Bits>
  static uint64_t sample_bits(const at::Tensor& w) {
    const int64_t n = w.numel(), item = w.element_size();
    const char* base = static_cast<const char*>(w.const_data_ptr());
    uint64_t h[4] = {1469598103934665603ull, 1469598103934665603ull ^ 1,
                     1469598103934665603ull ^ 2, 1469598103934665603ull ^ 3};
    const auto mix = [&](int64_t j, int64_t offset) {
      Bits bits;
      std::memcpy(&bits, base + offset * item, sizeof(Bits));
      h[j & 3] = (h[j & 3] ^ uint64_t(bits)) * 1099511628211ull;
    };
    if (w.is_non_overlapping_and_dense()) {
      if (n <= kSamples) {
        for (int64_t i = 0; i < n; ++i) mix(i, i);
      } else {
        uint64_t frac = 0;  // j * golden ratio as a 64-bit fraction, scaled to [0, n)
        for (int64_t j = 0; j < kSamples; ++j, frac += 0x9E3779B97F4A7C15ull) {
          mix(j, static_cast<int64_t>((static_cast<unsigned __int128>(frac) * uint64_t(n)) >> 64));
        }
      }
    } else {
      const int64_t m = std::min<int64_t>(n, 64);  // index arithmetic per sample: fewer
      for (int64_t j = 0; j < m; ++j) {
        int64_t flat = j * n / m, offset = 0;
        for (int64_t d = w.dim() - 1; d >= 0; --d) {
          offset += flat % w.size(d) * w.stride(d);
          flat /= w.size(d);
        }
        mix(j, offset);
      }
    }
    return ((h[0] * 31 + h[1]) * 31 + h[2]) * 31 + h[3];
  }

  std::mutex mutex_;
  std::list<Entry> entries_;
};

// What a cached packing is (the first entry of `what`).
enum : int64_t {
  kPackDirect = 1, kPackDirectGradInput, kPackWinograd, kFloat32Copy, kPackBf16,
  kPackBf16Depthwise, kPackDepthwise, kPackDepthwiseGradInput, kPackDepthwiseRotated,
  kFiniteFlag
};
// The kernel table (ISA and element type) a packing was made for.
template <typename T>
int64_t table_id(const Table<T>* kt) {
  return static_cast<int64_t>(reinterpret_cast<intptr_t>(kt));
}

WeightCache& weight_cache() {
  static WeightCache* cache = new WeightCache();  // never destroyed: used until exit
  return *cache;
}

// ---------------------------------------------------------------------------------------------
// Operands as raw pointer + sizes + strides (elements).

template <typename T>
struct Act {
  const T* p;
  int64_t N, C, H, W, sn, sc, sh, sw;
};
// NCHW-like: each channel's plane is H * W consecutive elements
template <typename T>
bool dense_planes(const Act<T>& a) {
  return a.sw == 1 && a.sh == a.W;
}
template <typename T>
struct Out {
  T* p;
  int64_t N, C, H, W, sn, sc, sh, sw;
};

template <typename T>
Act<T> act_of(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.size(0), t.size(1), t.size(2), t.size(3),
          t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}
template <typename T>
Out<T> out_of(at::Tensor& t) {
  return {t.mutable_data_ptr<T>(), t.size(0), t.size(1), t.size(2), t.size(3),
          t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// Channel planes with dense rows (NCHW-like; see Spec::planar_out).
template <typename T>
bool planar_output(const Out<T>& y) {
  return y.C > 1 && y.sc != 1 && y.sw == 1 && y.sh == y.W;
}

// A convolution as the kernels see it (possibly a rewritten one: grad_input phases).
struct Spec {
  int64_t G, cpg, kpg, R, S, sh, sw, dh, dw, pt, pl;
  // The direct kernels' output is channel planes with dense rows (NCHW): their tiles leave
  // through an L1 buffer of channel runs (see direct_tile).
  bool planar_out = false;
  // The output leaves by streaming stores as runs of a tile's output channels of each pixel
  // (channels_last; see direct_tile).
  bool streamed_runs = false;
};

// dst[i*C + c] = src[c*sc + i*sw] for c < C, i < W: blocks of 16 channels so that every
// destination write is a contiguous run and every source row is read sequentially.
// Dense rows (sw == 1) take the ISA's register transposes.
template <typename T>
void transpose_rows(const Table<T>* kt, const T* src, int64_t sc, int64_t sw, int64_t C,
                    int64_t W, T* dst, int64_t dst_pixel = 0) {
  if (dst_pixel == 0) dst_pixel = C;
  if (sw == 1) {
    kt->transpose(src, sc, C, W, dst, dst_pixel);
    return;
  }
  constexpr int64_t B = 16;
  for (int64_t c0 = 0; c0 < C; c0 += B) {
    const int64_t nc = std::min(B, C - c0);
    const T* s0 = src + c0 * sc;
    for (int64_t i = 0; i < W; ++i) {
      T* dd = dst + i * dst_pixel + c0;
      for (int64_t c = 0; c < nc; ++c) dd[c] = s0[c * sc + i * sw];
    }
  }
}

// nb images of dense NCHW planes (P pixels, channel stride sc, image stride sn) into
// pixel-major images of dn elements: one register transpose per task of a few K elements.
// Small planes (a few cache lines each) go by blocks of whole planes instead: a block of
// pixels would read a piece of every channel's plane and split most of its lines with the
// next task (MBv2 dw 7x7 NCHW weight gradient, 960 planes of 49 pixels: the two transposes
// took twice the kernel's time).
template <typename T>
void planes_to_pixel_major(const Table<T>* kt, const T* src, int64_t sn, int64_t sc,
                           int64_t C, int64_t P, int64_t nb, T* dst, int64_t dn) {
  constexpr int64_t kSmallPlane = 256, kBlockElems = 4096;
  if (P < kSmallPlane && sc == P) {
    const int64_t CB = std::max<int64_t>(16, kBlockElems / P / 16 * 16), ncb = ceil_div(C, CB);
    dynamic_for(nb * ncb, 1, [&](int64_t t) {
      const int64_t n = t / ncb, c0 = t % ncb * CB;
      kt->transpose(src + n * sn + c0 * sc, sc, std::min(CB, C - c0), P, dst + n * dn + c0, C);
    });
    return;
  }
  const int64_t B = 16 * std::max<int64_t>(1, 1024 / C), nblk = ceil_div(P, B);
  dynamic_for(nb * nblk, 1, [&](int64_t t) {
    const int64_t n = t / nblk, p0 = t % nblk * B;
    kt->transpose(src + n * sn + p0, sc, C, std::min(B, P - p0), dst + n * dn + p0 * C, C);
  });
}

// ---------------------------------------------------------------------------------------------
// Input staging: in place, or a zero-padded NHWC copy of a chunk of images.

// Window extent of one convolution over its input, in input coordinates: rows
// [-pt, last_row], columns [-pl, last_col].
struct Need {
  int64_t pt, pl, last_row, last_col;
};
Need need_of(const Spec& sp, int64_t OH, int64_t OW) {
  return {sp.pt, sp.pl, (OH - 1) * sp.sh + (sp.R - 1) * sp.dh - sp.pt,
          (OW - 1) * sp.sw + (sp.S - 1) * sp.dw - sp.pl};
}

// Elements per task of Stager::prepare_planes, and the row length up to which it copies rows
// by element loops: GCC would turn such loops into memset / memcpy calls, which cost more than
// copies of a few pixels.
constexpr int64_t kStagePlanesTaskElems = 4096;
constexpr int64_t kShortRowElems = 64;
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
void copy_padded_row(T* d, const T* src, int64_t lo, int64_t hi, int64_t Wp) {
  for (int64_t j = 0; j < lo; ++j) d[j] = T(0);
  for (int64_t j = lo; j < hi; ++j) d[j] = src[j - lo];
  for (int64_t j = hi; j < Wp; ++j) d[j] = T(0);
}

template <typename T>
struct Stager {
  const Table<T>* kt;
  const Act<T>& x;
  bool direct = true;
  bool kernel_pads = false;  // the kernel bounds-checks windows: a copy holds the input only
  int64_t Hp = 0, Wp = 0, chunk = 1;
  int64_t PT = 0, PL = 0;  // input coordinate (-PT, -PL) is row 0 / column 0 of the copy
  at::Tensor buf;
  // strides seen by the kernels
  int64_t xn = 0, xc = 0, xh = 0, xw = 0;
  // A copy in channel blocks (see kGwPixelGapBytes): each block of cblock channels is a dense
  // [Hp][Wp][cblock] array, xcb elements after the one before (xc = 1 inside a block).
  int64_t cblock = 0, xcb = 0;
  // A copy in padded channel planes (NCHW; see kGwPlanesWork): xc = Hp * Wp, xw = 1.
  bool planes = false;
  const T* base = nullptr;  // input coordinate (-PT, -PL) of image 0 of the chunk

  // One or several convolutions over the same input (grad_input phases) share one staged
  // copy covering the union of their windows.
  // unit_channel: the kernel needs channel stride 1. padding_in_place: the kernel
  // bounds-checks windows itself (depthwise, the Winograd input transform), so an input with
  // unit channel stride is never copied.
  // cache_min_images > 0: chunks of about kStageCacheBytes where those hold at least that many
  // images (fewer would leave threads idle at the end of every chunk: GoogLeNet 5x5, 3 tasks
  // per image, ran 4% slower in chunks of 3 images).
  // pixel_gap: elements left between the pixels of a copy (see kGwPixelGapBytes).
  // channel_block: a copy is made in blocks of that many channels (0: pixel-major);
  // planes_copy: a copy of dense NCHW planes is made in padded planes.
  Stager(const Table<T>* kt_, const Act<T>& x_, const std::vector<Need>& needs, bool unit_channel,
         int64_t chunk_extra_per_image = 0, bool padding_in_place = false,
         int64_t cache_min_images = 0, int64_t pixel_gap = 0, int64_t channel_block = 0,
         bool planes_copy = false)
      : kt(kt_), x(x_) {
    int64_t top = 0, left = 0, bottom = -1, right = -1;
    for (const Need& n : needs) {
      top = std::max(top, n.pt), left = std::max(left, n.pl);
      bottom = std::max(bottom, n.last_row), right = std::max(right, n.last_col);
    }
    const bool pad = top > 0 || left > 0 || bottom >= x.H || right >= x.W;
    const bool unit_ok = !unit_channel || x.sc == 1 || x.C == 1;
    direct = unit_ok && (!pad || padding_in_place);
    kernel_pads = padding_in_place;
    Hp = padding_in_place ? x.H : top + bottom + 1;
    Wp = padding_in_place ? x.W : left + right + 1;
    if (direct || padding_in_place) pixel_gap = 0, channel_block = 0, planes_copy = false;
    planes = planes_copy && dense_planes(x) && x.sc != 1;
    cblock = planes ? 0 : channel_block;
    if (planes || cblock) pixel_gap = 0;
    const int64_t pixel = cblock ? ceil_div(x.C, cblock) * cblock : x.C + pixel_gap;
    const int64_t per_image = (direct ? 0 : Hp * Wp * pixel) + chunk_extra_per_image;
    const int64_t budget = kStageBytes / int64_t(sizeof(T));
    chunk = per_image > 0 ? std::clamp<int64_t>(budget / per_image, 1, x.N) : x.N;
    if (cache_min_images > 0 && per_image > 0) {
      const int64_t cached = kStageCacheBytes / int64_t(sizeof(T)) / per_image;
      if (cached >= cache_min_images) chunk = std::min(chunk, cached);
    }
    if (direct) {
      xn = x.sn, xc = x.sc, xh = x.sh, xw = x.sw;
    } else {
      PT = padding_in_place ? 0 : top, PL = padding_in_place ? 0 : left;
      xc = 1, xw = pixel, xh = Wp * pixel, xn = Hp * Wp * pixel;
      if (cblock) xw = cblock, xh = Wp * cblock, xcb = Hp * Wp * cblock;
      if (planes) xc = Hp * Wp, xw = 1, xh = Wp;
    }
  }
  Stager(const Table<T>* kt_, const Act<T>& x_, const Spec& sp, int64_t OH, int64_t OW,
         bool unit_channel, int64_t chunk_extra_per_image = 0,
         bool padding_in_place = false, int64_t cache_min_images = 0, int64_t pixel_gap = 0,
         int64_t channel_block = 0, bool planes_copy = false)
      : Stager(kt_, x_, std::vector<Need>{need_of(sp, OH, OW)}, unit_channel,
               chunk_extra_per_image, padding_in_place, cache_min_images, pixel_gap,
               channel_block, planes_copy) {}

  // Origin (padded coordinate (0, 0) = input coordinate (-pt, -pl)) of image 0 of the chunk.
  const T* origin(int64_t pt, int64_t pl) const {
    return base + (PT - pt) * xh + (PL - pl) * xw;
  }
  // Channel c of the pixel at p (p: a pixel's channel 0; in channel blocks, c's block's first
  // channel must start a block).
  const T* channel(const T* p, int64_t c) const {
    return cblock ? p + c / cblock * xcb + c % cblock : p + c * xc;
  }

  void prepare(int64_t n0, int64_t nb) {
    if (direct) {
      base = x.p + n0 * x.sn;
      return;
    }
    // (allocated on first use: a caller may copy per task instead, see winograd_gw_by_tiles)
    if (!buf.defined()) buf = workspace<T>(Workspace::stage, chunk * xn + 64);
    T* dst = data_of<T>(buf);
    base = dst;
    const int64_t C = x.C, rowlen = xh;
    // the copy's columns [lo, hi) hold input columns, the others are padding
    const int64_t lo = std::clamp<int64_t>(PL, 0, Wp), hi = std::clamp<int64_t>(PL + x.W, lo, Wp);
    if (cblock) {
      prepare_blocks(n0, nb, dst, lo, hi);
      return;
    }
    if (planes) {
      prepare_planes(n0, nb, dst, lo, hi);
      return;
    }
    // whole planes where the copy has no padding (always so where the kernel pads)
    const bool unpadded = PT == 0 && PL == 0 && Hp == x.H && Wp == x.W;
    if (unpadded && xw == C && dense_planes(x)) {
      planes_to_pixel_major(kt, x.p + n0 * x.sn, x.sn, x.sc, C, x.H * x.W, nb, dst, xn);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(rowlen, 1));
    dynamic_for(nb * Hp, grain, [&](int64_t row) {
      {
        const int64_t n = row / Hp, ihp = row % Hp, ih = ihp - PT;
        T* d = dst + row * rowlen;
        if (!zero_row_padding(d, xw, ih, lo, hi)) return;
        const T* src = x.p + (n0 + n) * x.sn + ih * x.sh + (lo - PL) * x.sw;
        if (x.sc == 1 && x.sw == C && xw == C) {
          std::memcpy(d + lo * C, src, sizeof(T) * (hi - lo) * C);
        } else if (x.sc == 1) {
          for (int64_t i = 0; i < hi - lo; ++i) {
            std::memcpy(d + (lo + i) * xw, src + i * x.sw, sizeof(T) * C);
          }
        } else {
          transpose_rows(kt, src, x.sc, x.sw, C, hi - lo, d + lo * xw, xw);
        }
      }
    });
  }

  // Zeros the padding of a copied row (Wp pixels of `pixel` elements) of input row ih: the
  // whole row where ih lies outside the input (returns false: nothing to copy), else the
  // columns outside [lo, hi).
  bool zero_row_padding(T* d, int64_t pixel, int64_t ih, int64_t lo, int64_t hi) const {
    if (ih < 0 || ih >= x.H || hi <= lo) {
      std::memset(d, 0, sizeof(T) * Wp * pixel);
      return false;
    }
    std::memset(d, 0, sizeof(T) * lo * pixel);
    std::memset(d + hi * pixel, 0, sizeof(T) * (Wp - hi) * pixel);
    return true;
  }

  // The copy in padded planes: tasks of whole planes, at least kStagePlanesTaskElems elements
  // each, rows of up to kShortRowElems copied by element loops. A task per plane and three
  // library calls per row took a third of the time of ResNeXt-50's last grouped weight
  // gradient (8 x 1024 planes of 7 x 7, padded 9 x 9; Zen 2, AVX2, 2 threads, NCHW: 4.6 -> 2.9
  // ms, 0.56x -> 0.9-1.1x native; 512 in 32 groups over 14 x 14 0.76x -> 0.98x).
  void prepare_planes(int64_t n0, int64_t nb, T* dst, int64_t lo, int64_t hi) {
    const int64_t planes = nb * x.C;
    const int64_t per_task = std::max<int64_t>(1, kStagePlanesTaskElems / (Hp * Wp));
    dynamic_for(ceil_div(planes, per_task), 1, [&](int64_t t) {
      for (int64_t i = t * per_task; i < std::min(planes, (t + 1) * per_task); ++i) {
        const int64_t n = i / x.C, c = i % x.C;
        for (int64_t ihp = 0; ihp < Hp; ++ihp) {
          T* d = dst + n * xn + c * xc + ihp * xh;
          const int64_t ih = ihp - PT;
          const bool inside = ih >= 0 && ih < x.H && hi > lo;
          const T* src =
              inside ? x.p + (n0 + n) * x.sn + c * x.sc + ih * x.sh + (lo - PL) : nullptr;
          if (Wp <= kShortRowElems) {
            copy_padded_row(d, src, inside ? lo : Wp, inside ? hi : Wp, Wp);
          } else if (zero_row_padding(d, 1, ih, lo, hi)) {
            std::memcpy(d + lo, src, sizeof(T) * (hi - lo));
          }
        }
      }
    });
  }

  // The copy in channel blocks: a task per (image, row) copies each pixel's channels block by
  // block (channel-strided rows are transposed whole into per-worker scratch first: the ISA
  // transposes store a pixel's channels through masks where there are fewer than a vector's
  // lanes, microcoded on AMD); a last block's missing channels are zeros.
  void prepare_blocks(int64_t n0, int64_t nb, T* dst, int64_t lo, int64_t hi) {
    const int64_t C = x.C, ncb = ceil_div(C, cblock);
    const int64_t workers = worker_count(nb * Hp, 1);
    at::Tensor scratch;
    if (x.sc != 1) scratch = at::empty({workers * (hi - lo) * C}, options_of<T>());
    dynamic_for_workers(nb * Hp, workers, [&](int64_t row, int64_t worker) {
      const int64_t n = row / Hp, ihp = row % Hp, ih = ihp - PT;
      T* d = dst + n * xn + ihp * xh;  // block 0's row
      bool inside = true;
      for (int64_t cb = 0; cb < ncb; ++cb) {
        T* db = d + cb * xcb;
        inside = zero_row_padding(db, cblock, ih, lo, hi);
        if (inside && (cb + 1) * cblock > C) {  // the last block's missing channels
          std::memset(db + lo * cblock, 0, sizeof(T) * (hi - lo) * cblock);
        }
      }
      if (!inside) return;
      const T* src = x.p + (n0 + n) * x.sn + ih * x.sh + (lo - PL) * x.sw;
      int64_t pixel = x.sw;
      if (x.sc != 1) {
        T* s = scratch.data_ptr<T>() + worker * (hi - lo) * C;
        transpose_rows(kt, src, x.sc, x.sw, C, hi - lo, s);
        src = s, pixel = C;
      }
      for (int64_t cb = 0; cb < ncb; ++cb) {
        copy_block_pixels(src + cb * cblock, pixel, hi - lo, std::min(cblock, C - cb * cblock),
                          d + cb * xcb + lo * cblock);
      }
    });
  }

  // dst[i*cblock + j] = src[i*pixel + j] for i < n, j < nc (fixed-size copies for whole
  // blocks of the tiles' widths).
  void copy_block_pixels(const T* src, int64_t pixel, int64_t n, int64_t nc, T* dst) const {
    const auto fixed = [&](auto width) {
      constexpr int64_t B = decltype(width)::value;
      for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * B, src + i * pixel, sizeof(T) * B);
    };
    if (nc == cblock && cblock == 4) return fixed(std::integral_constant<int64_t, 4>());
    if (nc == cblock && cblock == 6) return fixed(std::integral_constant<int64_t, 6>());
    if (nc == cblock && cblock == 12) return fixed(std::integral_constant<int64_t, 12>());
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * cblock, src + i * pixel, sizeof(T) * nc);
  }
};

// A grad_output with unit channel stride and a uniform pixel stride (NHWC), in place or packed
// a chunk at a time.
template <typename T>
struct PixelMajor {
  const Table<T>* kt;
  const Act<T>& d;
  bool direct;
  int64_t chunk, dyn = 0, dyp = 0;
  at::Tensor buf;
  const T* origin = nullptr;
  // grad_output that is read in place (pixel-major already: channel stride 1, dense rows)
  static bool in_place(const Act<T>& d) { return (d.sc == 1 || d.C == 1) && d.sh == d.W * d.sw; }
  PixelMajor(const Table<T>* kt_, const Act<T>& d_, int64_t chunk_)
      : kt(kt_), d(d_), chunk(chunk_) {
    direct = in_place(d);
    if (direct) {
      dyn = d.sn, dyp = d.sw;
    } else {
      dyp = d.C, dyn = d.H * d.W * d.C;
    }
  }
  void prepare(int64_t n0, int64_t nb) {
    if (direct) {
      origin = d.p + n0 * d.sn;
      return;
    }
    if (!buf.defined()) buf = workspace<T>(Workspace::grad_output, chunk * dyn + 64);  // first use
    T* dst = data_of<T>(buf);
    origin = dst;
    const int64_t C = d.C;
    if (dense_planes(d)) {
      planes_to_pixel_major(kt, d.p + n0 * d.sn, d.sn, d.sc, C, d.H * d.W, nb, dst, dyn);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(d.W * C, 1));
    at::parallel_for(0, nb * d.H, grain, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        const int64_t n = row / d.H, h = row % d.H;
        T* dd = dst + row * d.W * C;
        const T* src = d.p + (n0 + n) * d.sn + h * d.sh;
        transpose_rows(kt, src, d.sc, d.sw, C, d.W, dd);
      }
    });
  }
};

// ---------------------------------------------------------------------------------------------
// Weight packing, with ATen's (vectorised, parallel) copy kernels: the "canonical" weights of a
// spec are a (G, kpg, cpg, R, S) tensor (output channel, input channel within the group, taps
// in the order the spec applies them), built by reshape / transpose / index_select of the
// op's weight; the panels are zero-padded permutations of it.

at::Tensor pad_dim(const at::Tensor& t, int64_t dim, int64_t to) {
  const int64_t extra = to - t.size(dim);
  if (extra == 0) return t;
  std::vector<int64_t> pads(2 * t.dim(), 0);
  pads[2 * (t.dim() - 1 - dim) + 1] = extra;  // constant_pad_nd counts from the last dim
  return at::constant_pad_nd(t, pads, 0);
}

// A canonical weight read in place through its strides: element (g, k, c, m, ms) is
// p[g*s0 + k*s1 + c*s2 + rmap[m]*s3 + smap[ms]*s4] (rmap / smap select and order the taps).
template <typename T>
struct WSrc {
  const T* p;
  int64_t s0, s1, s2, s3, s4;
  int64_t G, kp, cp, R, S;
  std::vector<int64_t> rmap, smap;
};
template <typename T>
WSrc<T> wsrc_of(const at::Tensor& wc, std::vector<int64_t> rmap = {},
                std::vector<int64_t> smap = {}) {
  WSrc<T> w{wc.const_data_ptr<T>(), wc.stride(0), wc.stride(1), wc.stride(2), wc.stride(3),
         wc.stride(4), wc.size(0), wc.size(1), wc.size(2), wc.size(3), wc.size(4),
         std::move(rmap), std::move(smap)};
  if (w.rmap.empty()) for (int64_t r = 0; r < w.R; ++r) w.rmap.push_back(r);
  if (w.smap.empty()) for (int64_t t = 0; t < w.S; ++t) w.smap.push_back(t);
  w.R = w.rmap.size(), w.S = w.smap.size();
  return w;
}

// Direct kernel panels: [G][nKB][R][S][cpg][KB]. Destination runs of KB elements are written
// contiguously; the KB source rows being read stay in L1 while (c, r, s) advance.
template <typename T>
at::Tensor pack_direct(const WSrc<T>& w, int64_t KB) {
  const int64_t nKB = ceil_div(w.kp, KB), panel = w.R * w.S * w.cp * KB;
  at::Tensor buf = at::empty({w.G * nKB * panel}, options_of<T>());
  T* dst = buf.data_ptr<T>();
  at::parallel_for(0, w.G * nKB * w.R, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t m = t % w.R, kb = (t / w.R) % nKB, g = t / (w.R * nKB);
      const int64_t kn = std::min(KB, w.kp - kb * KB);
      T* d = dst + (g * nKB + kb) * panel;
      const T* src = w.p + g * w.s0 + kb * KB * w.s1 + w.rmap[m] * w.s3;
      for (int64_t ms = 0; ms < w.S; ++ms) {
        for (int64_t c = 0; c < w.cp; ++c) {
          T* dd = d + ((m * w.S + ms) * w.cp + c) * KB;
          const T* sp = src + c * w.s2 + w.smap[ms] * w.s4;
          int64_t l = 0;
          for (; l < kn; ++l) dd[l] = sp[l * w.s1];
          for (; l < KB; ++l) dd[l] = 0;
        }
      }
    }
  });
  return buf;
}

// Reduction-vectorised kernel: [G][kpg][R][S][Cp], Cp = cpg rounded up to VL.
template <typename T>
at::Tensor pack_reduce(const WSrc<T>& w, int64_t VL) {
  const int64_t Cp = ceil_div(w.cp, VL) * VL;
  at::Tensor buf = at::zeros({w.G * w.kp * w.R * w.S * Cp}, options_of<T>());
  T* dst = buf.data_ptr<T>();
  for (int64_t g = 0; g < w.G; ++g)
    for (int64_t k = 0; k < w.kp; ++k)
      for (int64_t m = 0; m < w.R; ++m)
        for (int64_t ms = 0; ms < w.S; ++ms)
          for (int64_t c = 0; c < w.cp; ++c)
            dst[(((g * w.kp + k) * w.R + m) * w.S + ms) * Cp + c] =
                w.p[g * w.s0 + k * w.s1 + c * w.s2 + w.rmap[m] * w.s3 + w.smap[ms] * w.s4];
  return buf;
}

// Grouped kernel, from (K, cpg, R, S): [K / VL][R][S][cpg][VL].
at::Tensor pack_grouped(const at::Tensor& wk, int64_t VL) {
  const int64_t K = wk.size(0), cp = wk.size(1), R = wk.size(2), S = wk.size(3);
  const int64_t nCV = ceil_div(K, VL);
  return pad_dim(wk, 0, nCV * VL).view({nCV, VL, cp, R, S}).permute({0, 3, 4, 2, 1}).contiguous();
}

// Depthwise kernel, from (C, R, S): [C / VL][R][S][VL].
at::Tensor pack_depthwise(const at::Tensor& wk, int64_t VL) {
  const int64_t C = wk.size(0), R = wk.size(1), S = wk.size(2);
  const int64_t nCV = ceil_div(C, VL);
  return pad_dim(wk, 0, nCV * VL).view({nCV, VL, R, S}).permute({0, 2, 3, 1}).contiguous();
}

// The bias per group, zero-padded to whole blocks of KB: [G][ceil(kpg / KB) * KB]; empty
// without a bias. (A loop: the ATen ops it took cost a few microseconds a call, ~2% of MBv2 dw
// 7x7's forward.)
template <typename T>
std::vector<T> pack_bias(const std::optional<at::Tensor>& bias, int64_t G, int64_t kpg,
                         int64_t KB) {
  if (!bias.has_value()) return {};
  const int64_t row = ceil_div(kpg, KB) * KB, stride = bias->stride(0);
  const T* b = bias->const_data_ptr<T>();
  std::vector<T> packed(G * row, T(0));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t k = 0; k < kpg; ++k) packed[g * row + k] = b[(g * kpg + k) * stride];
  }
  return packed;
}
// The kernels' bias pointer: null without a bias.
template <typename T>
const T* bias_data(const std::vector<T>& packed) {
  return packed.empty() ? nullptr : packed.data();
}


// ---------------------------------------------------------------------------------------------
// Engines.

// The wide direct tile (more output channels, fewer pixels) when the group's output channels
// fill it exactly; else the mid tile (AVX-512) when they fill that; the standard one
// otherwise (less padding waste on small / odd K). The mid tile took MBv2 pointwise 24 -> 144
// channels_last forward (144 = 9 vectors: 5 standard k-blocks, the last half padding, or 3
// mid ones) from 1.22-1.27 to 1.08-1.14 ms at 2 threads, 2.39-2.72 to 2.07-2.17 at 1.
// A larger tile only while its weight panel (R*S*C*KB elements, read whole by every tile)
// stays within a third of a 1 MB L2: past that the standard tile's twice as many pixels per
// panel pass win (AVX-512 R50 L4 1x1, C = 2048: 0.74x -> 0.83x of native).
// NCHW outputs also keep an L1 buffer of 96-pixel channel runs per k-block (isa
// direct_pixels_nchw): where the standard tile's panel and buffer fit a 32 KB L1 and the wide
// tile's do not, the standard one (R50 stem NCHW forward, 147 x 64 weights: 24.6-25.4 ->
// 21.5-23.0 ms of CPU per call; channels_last, without the buffer, stays wide: it measured
// 5% faster there, as did R50 1x1 256 -> 64 NCHW, whose standard panel alone fills L1).
constexpr int64_t kL1Bytes = int64_t(32) << 10;
template <typename T>
bool larger_tile_fits(const Table<T>* kt, const Spec& sp, int64_t KB) {
  const int64_t per_lane = (sp.R * sp.S * sp.cpg + (sp.planar_out ? isa::kNchwRunPixels : 0)) *
                           int64_t(sizeof(T));
  if (sp.planar_out && per_lane * KB > kL1Bytes && per_lane * kt->kernel_block <= kL1Bytes) {
    return false;
  }
  return KB != kt->kernel_block && sp.kpg % KB == 0 &&
         sp.R * sp.S * sp.cpg * KB * int64_t(sizeof(T)) <= (int64_t(288) << 10);
}

// The direct kernel's register tile for a spec: its function, output channels and pixels.
template <typename T>
struct DirectTile {
  isa::DirectFn<T> fn;
  int64_t KB, pixels;
};
// Where a pixel's output channels leave by streaming stores in several tiles' runs, only
// tiles whose runs are whole cache lines: a run that ends inside a line leaves it to the next
// tile's, and the write-combining buffer flushes the half-written line first (AVX2 mid tile,
// 24 channels of 144: MBv2 pointwise channels_last forward, Zen 2, 2 threads, alternating
// processes, 1.61-1.65 -> 1.47-1.50 ms with the 16-channel tile).
template <typename T>
bool whole_line_runs(const Spec& sp, int64_t KB) {
  return !sp.streamed_runs || sp.kpg <= KB || KB * int64_t(sizeof(T)) % 64 == 0;
}
template <typename T>
DirectTile<T> direct_tile(const Table<T>* kt, const Spec& sp) {
  // At most a vector of output channels per group: the one-vector tile (Zen 2, AVX2, 2
  // threads, switched within one process: 64 -> 8 3x3 over 8 x 56 x 56 forward NCHW 5.6 -> 4.7
  // ms, channels_last 4.9 -> 4.3; 256 -> 64 in 8 groups over 28 x 28 6.1 -> 5.0 and 4.8 -> 3.6)
  if (sp.kpg <= kt->vec_lanes && kt->kernel_block > kt->vec_lanes) {
    return {kt->direct_narrow, kt->vec_lanes, kt->narrow_pixel_block};
  }
  if (larger_tile_fits(kt, sp, kt->wide_kernel_block) &&
      whole_line_runs<T>(sp, kt->wide_kernel_block)) {
    return {kt->direct_wide, kt->wide_kernel_block, kt->wide_pixel_block};
  }
  if (larger_tile_fits(kt, sp, kt->mid_kernel_block) &&
      whole_line_runs<T>(sp, kt->mid_kernel_block)) {
    return {kt->direct_mid, kt->mid_kernel_block, kt->mid_pixel_block};
  }
  return {kt->direct, kt->kernel_block, kt->pixel_block};
}
template <typename T>
int64_t direct_block(const Table<T>* kt, const Spec& sp) {
  return direct_tile(kt, sp).KB;
}

// Few output channels per group and a long reduction: the reduction-vectorised kernel.
template <typename T>
bool use_reduce(const Table<T>* kt, const Spec& sp) {
  return kt->direct_reduce && sp.kpg <= 4 && sp.cpg >= kt->vec_lanes;
}

// Packs canonical weights (G, kpg, cpg, R, S) for the kernel run_direct_jobs will choose.
template <typename T>
at::Tensor pack_for_direct(const Table<T>* kt, const Spec& sp, const WSrc<T>& wc) {
  return use_reduce(kt, sp) ? pack_reduce(wc, kt->vec_lanes)
                            : pack_direct(wc, direct_block(kt, sp));
}

// Outputs of at least 2 MB are written with streaming stores: they do not stay
// in cache anyway, and a normal store that misses first reads its line from memory (measured
// on an AVX-512 Zen 5: 1x1 layers with MB-sized outputs ran up to twice as fast streamed).
constexpr int64_t kStreamBytes = int64_t(2) << 20;
template <typename T>
bool stream_output(int64_t elements) {
  return elements * int64_t(sizeof(T)) >= kStreamBytes;
}
// NCHW output planes that the plane kernels write in vectors along rows (stores of `width`
// columns per row: the output width, or less where a caller writes the rest itself): streamed
// only where every store is a whole vector and the planes are whole, aligned cache lines. A
// line that takes plain stores as well as streamed ones (a row's partial last vector, a scalar
// tail) leaves the write-combining buffer part-written and is merged in memory: with rows of
// 28 or 14 columns streamed, AVX2 planes ran at a third to half native's speed (Zen 2, AVX2, 2
// threads, medians of interleaved calls, NCHW forward, streamed -> not: MBv2 dw 192 x 28 x 28
// 4.9 -> 1.9 ms, dw 384 x 14 x 14 3.1 -> 0.94, dw s2 144 x 56 x 56 5.3 -> 2.8, ResNeXt 32
// groups of 8 over 28 x 28 8.9 -> 4.4; 56 x 56 planes, whole vectors, 3.4 -> 3.5).
template <typename T>
bool stream_planes(const Out<T>& y, int64_t width, int64_t VL) {
  constexpr int64_t line = 64 / int64_t(sizeof(T));
  const int64_t P = y.H * y.W;
  return stream_output<T>(y.N * y.C * P) && y.sw == 1 && y.sh == y.W && width == y.W &&
         y.W % VL == 0 && P % line == 0 && (y.C == 1 || y.sc % line == 0) &&
         (y.N == 1 || y.sn % line == 0) && reinterpret_cast<uintptr_t>(y.p) % 64 == 0;
}

// Spec::streamed_runs of an output: a pixel's channels contiguous, streamed.
template <typename T>
bool streamed_runs(const Out<T>& y) {
  return y.C > 1 && y.sc == 1 && stream_output<T>(y.N * y.C * y.H * y.W);
}

// A 1x1 convolution without padding over channel-strided input (NCHW): every task first packs
// its pixels' input, all channels of the group, into a pixel-major panel in per-worker scratch
// and runs all k-blocks on it. Read in place, every channel of a register tile is another
// plane, and the kernel waits on those scattered loads (Zen 5, R50 1x1 256 -> 64 over 56 x 56,
// NCHW: 2.6x the time of channels_last); staging whole images NHWC costs a pass over memory.
constexpr int64_t kPixelPanelBytes = int64_t(512) << 10;
template <typename T>
bool use_pixel_panel(const Spec& sp, int64_t xc, int64_t xw, int64_t task_pixels) {
  return sp.R == 1 && sp.S == 1 && sp.pt == 0 && sp.pl == 0 && xc != 1 && xw == 1 &&
         sp.cpg > 1 && sp.cpg * task_pixels * int64_t(sizeof(T)) <= kPixelPanelBytes;
}

// A 1x1 stride-1 convolution without padding whose input is read in place and whose input and
// output both have dense NCHW planes: the pixel-vectorised kernel (isa direct_planes), no
// pixel panels and no transposing stores. Tasks are (group, image, chunk of pixels) with every
// k-block inside; a chunk's input stays within kPlanesChunkBytes (L2) while the k-blocks pass
// over it. Only for short reductions over large images: a pixel tile's input rows then stay
// in L1 while every k-tile passes over them, and few of its lanes are masked. Measured in
// alternating processes, 2 threads (ms, panels -> planes): 64 -> 256 over 56x56 7.2-7.4 ->
// 5.3-5.8 (its input gradient 7.4-7.6 -> 5.9-6.3), MBv2 pointwise 24 -> 144 1.9-2.0 ->
// 1.5-1.7; 256 -> 64 over 56x56 and 128 -> 512 over 28x28 equal; 512 -> 128 over 28x28
// 5.2-5.7 -> 5.9-6.2, 256 -> 1024 over 14x14 5.0-6.3 -> 8.6-9.5. Up to 64 channels at first
// (one block of sums); with block sums up to 256 (2026-12-05, same measure, panels ->
// planes): R50 1x1 256 -> 64 over 56x56 forward 5.67-7.00 -> 4.78-4.84, its input gradient
// (64 -> 256) 5.73-6.11 -> 4.88-5.01, MBv2 pointwise input gradient (144 -> 24) 1.80-2.03 ->
// 1.44-1.62.
constexpr int64_t kPlanesChunkBytes = int64_t(256) << 10;
constexpr int64_t kPlanesChunkPixels = 1024;
constexpr int64_t kPlanesDirectMaxChannels = 256;  // 4 blocks of sums (the kernel: <= 16)
constexpr int64_t kPlanesDirectMinPixels = 512;
template <typename T>
bool use_direct_planes(const Table<T>* kt, const Spec& sp, int64_t xc, int64_t xh, int64_t xw,
                       int64_t W, const Out<T>& y) {
  return sp.R == 1 && sp.S == 1 && sp.sh == 1 && sp.sw == 1 && sp.pt == 0 && sp.pl == 0 &&
         sp.cpg <= kPlanesDirectMaxChannels && y.H * y.W >= kPlanesDirectMinPixels &&
         !use_reduce(kt, sp) && direct_block(kt, sp) % kt->planes_kernel_block == 0 &&
         xw == 1 && xh == W && (xc != 1 || sp.cpg == 1) &&
         y.sw == 1 && y.sh == y.W && (y.sc != 1 || sp.kpg == 1);
}

// Where the pixel-vectorised 1x1 has many output channels (at least 16 k-tiles of 4 per
// pixel tile), each pixel tile's input rows are copied into per-worker scratch, contiguous,
// and every k-block runs over them before the next tile (isa direct_planes with
// tile_scratch); otherwise the k-blocks pass over the task's chunk one after the other,
// reading the rows in place. Rows a plane apart map to few L1 sets (every row of 32 x 32
// planes to the same one): simulated with a 32 KiB 8-way L1 (callgrind), 64 -> 256 over 32 x
// 32 took 1.07 M read misses in place, 0.15 M copied. Zen 2, AVX2, switched in one process,
// 2 threads, ms in place -> copied (native): R50 1x1 256 -> 64 forward 9.08 -> 8.62 (10.2),
// the input gradient of 64 -> 256 9.37 -> 8.94 (11.8), 64 -> 256 forward 24.6 -> 23.3 (18.4, a
// noisy host), MBv2 16 -> 96 over 112 x 112 36.8 -> 34.8, 24 -> 144 11.5 -> 10.9; a kernel
// loop alone over 64 -> 256 (1 thread, a quiet host) 57 -> 77 GFLOP/s. Few output channels
// do not pay for the copy, which waits on memory with no multiply-adds beside it (MBv2 32 ->
// 16 over 112 x 112 forward 2.8 -> 3.8, the input gradient of 24 -> 144 2.3 -> 3.0). The copy stays
// L1-sized (AVX-512 tiles of 48 pixels: up to 128 channels; not timed there).
constexpr int64_t kPackedTilesMinOutputs = 64;
constexpr int64_t kPackedTileBytes = int64_t(24) << 10;

// Images of at most this many pixel tiles are small (see run_direct_jobs' task order).
constexpr int64_t kSmallImageTiles = 16;

// Pixels of a direct task at most: chunks of kDirectTilesPerTask tiles (chunk_begin in
// run_direct_jobs moves a chunk's start back by less than 16).
int64_t max_task_pixels(int64_t P, int64_t tile_pixels) {
  return ceil_div(P, ceil_div(P, tile_pixels * kDirectTilesPerTask)) + 16;
}

// A 1x1 over channel-strided (NCHW) small images whose pixel panels would not fit: the input
// is staged pixel-major a chunk of images at a time, and the tasks iterate images inside
// k-blocks as for channels_last inputs. Read in place, every broadcast came from another
// plane (Zen 2, 2 threads, alternating processes: R50 L4 1x1, 2048 -> 512 over 7 x 7, NCHW
// forward 6.6-6.8 -> 5.6-6.1 ms, 0.81-0.89x -> 0.96-1.01x native). Where the panels fit they
// stay (512 -> 2048 over 7 x 7: 5.8 ms with them, 6.1 staged).
template <typename T>
bool stage_small_images(const Spec& sp, const Act<T>& x, const Out<T>& y, int64_t tile_pixels) {
  const int64_t P = y.H * y.W;
  return sp.R == 1 && sp.S == 1 && x.sc != 1 && x.C > 1 && P <= kSmallImageTiles * tile_pixels &&
         !use_pixel_panel<T>(sp, x.sc, x.sw, max_task_pixels(P, tile_pixels));
}

template <typename T>
struct DirectJob {
  Spec sp;
  const T* wpack;
  const T* bpack;
  Out<T> y;
};

// Weight panels (all k-blocks of a group) up to this size go with kb_inner tasks.
constexpr int64_t kKbInnerPanelBytes = int64_t(256) << 10;
// At most this many bytes of panels (all k-blocks) for their k-blocks to run inside each pixel
// tile of a window larger than 1x1 (see run_direct_jobs): they stay in L1 or L2 together.
constexpr int64_t kTileKBlocksPanelBytes = int64_t(64) << 10;
// An image's input read by a k-block over more than this does not stay in L2 for the next
// k-block (see kb_inner in run_direct_jobs).
constexpr int64_t kImageInL2Bytes = int64_t(512) << 10;

// Pixel chunks of at least this many pixels (on average) start cache-line aligned.
constexpr int64_t kAlignedChunkPixels = 64;

// Images above this size are prefetched by single k-block 1x1 convolutions (see below).
constexpr int64_t kDirectPrefetchBytes = int64_t(1) << 20;

// Runs several direct convolutions over the same input (one job for a forward, one per phase
// for grad_input) with one staged input and one parallel region per chunk of images.
template <typename T>
void run_direct_jobs(const Table<T>* kt, const Act<T>& x, const std::vector<DirectJob<T>>& jobs) {
  struct Plan {
    isa::DirectFn<T> fn;
    int64_t KB, nKB, panel, P, nPC;
    bool panel_outer;
    bool pixel_panel;  // use_pixel_panel: tasks are (group, image, pixel chunk), k-blocks inside
    bool planes;       // use_direct_planes: the same tasks
    bool packed_tiles;  // planes: pixel tiles copied to scratch, every k-block inside (below)
    bool kb_inner;     // tasks (image, group, pixel chunk), every k-block inside (below)
    int64_t chunk;     // planes: pixels per chunk
    isa::DirectArgs a;
  };
  std::vector<Need> needs;
  bool unit = false;
  for (const DirectJob<T>& j : jobs) {
    needs.push_back(need_of(j.sp, j.y.H, j.y.W));
    unit = unit || use_reduce(kt, j.sp) ||
           stage_small_images(j.sp, x, j.y, direct_tile(kt, j.sp).pixels);
  }
  // tasks per image (about: see the plans below), for cache-sized staging chunks that still
  // give every thread 4 tasks
  int64_t tasks_per_image = 0;
  for (const DirectJob<T>& j : jobs) {
    const int64_t tile = direct_tile(kt, j.sp).pixels;
    tasks_per_image += j.sp.G * ceil_div(j.sp.kpg, direct_block(kt, j.sp)) *
                       ceil_div(j.y.H * j.y.W, tile * kDirectTilesPerTask);
  }
  Stager st(kt, x, needs, /*unit_channel=*/unit, 0, false,
            /*cache_min_images=*/ceil_div(4 * at::get_num_threads(),
                                          std::max<int64_t>(1, tasks_per_image)));
  // First pixel of chunk pc; chunks of >= 64 pixels start on a 16-pixel boundary (a cache
  // line of floats): an NCHW output's rows then start cache-line aligned and take streaming
  // stores (unaligned ones fall back to normal stores, which read every line first: R50 1x1
  // 64 -> 256 over 56 x 56 spent half its time there; with AVX2's 6-pixel tiles, chunks of
  // 192 pixels, the R50 stem NCHW forward a fifth of its time).
  const auto chunk_begin = [](const Plan& pl, int64_t pc) {
    const int64_t p = pl.P * pc / pl.nPC;
    return pc >= pl.nPC ? pl.P : pl.P >= kAlignedChunkPixels * pl.nPC ? p / 16 * 16 : p;
  };
  std::vector<Plan> plans;
  int64_t panel_elems = 0;  // per worker, for the pixel-panel jobs
  for (const DirectJob<T>& j : jobs) {
    const Spec& sp = j.sp;
    const DirectTile<T> tile = direct_tile(kt, sp);
    Plan pl;
    pl.packed_tiles = false;
    pl.fn = tile.fn;
    pl.KB = tile.KB;
    pl.nKB = ceil_div(sp.kpg, pl.KB);
    pl.panel = sp.R * sp.S * sp.cpg * pl.KB;
    if (use_reduce(kt, sp)) {
      pl.fn = kt->direct_reduce;
      pl.KB = sp.kpg, pl.nKB = 1;
      pl.panel = sp.kpg * sp.R * sp.S * ceil_div(sp.cpg, kt->vec_lanes) * kt->vec_lanes;
    }
    pl.P = j.y.H * j.y.W;
    // pixel chunks of kDirectTilesPerTask tiles per task
    const int64_t tile_pixels = tile.pixels;
    pl.nPC = ceil_div(pl.P, tile_pixels * kDirectTilesPerTask);
    // Task order: small images (<= 16 tiles) loop images inside k-blocks so that a weight
    // panel serves the whole chunk of images; large images keep the image outside (its input
    // stays in cache while the k-blocks pass over it). Where every k-block's panel fits in
    // L2 together (kb_inner), a task runs all k-blocks over its pixel chunk, whose input then
    // stays in L2 between them: an image does not on 512 KiB L2s (Zen 2, AVX2, 2 threads,
    // alternating processes: R50 1x1 256 -> 64 over 56 x 56 channels_last forward 6.7-8.2
    // -> 6.3-6.6 ms, 64 -> 256 6.5-6.6 -> 6.3-6.5).
    pl.panel_outer = pl.P <= kSmallImageTiles * tile_pixels;
    pl.a = isa::DirectArgs{sp.cpg, sp.R, sp.S, j.y.W, sp.sh, sp.sw, sp.dh, sp.dw,
                           st.xc, st.xh, st.xw, j.y.sc, j.y.sh, j.y.sw,
                           /*stream=*/stream_output<T>(j.y.N * sp.G * sp.kpg * pl.P)};
    // (output pixels are renumbered from the task's first one: dense output rows needed)
    const int64_t chunk_max = max_task_pixels(pl.P, tile_pixels);
    pl.planes = st.direct && use_direct_planes(kt, sp, st.xc, st.xh, st.xw, x.W, j.y);
    if (pl.planes) {  // chunks of whole pixel tiles: NCHW rows keep their alignment
      const int64_t tile = kt->planes_pixel_block;
      pl.chunk = std::clamp<int64_t>(kPlanesChunkBytes / (sp.cpg * int64_t(sizeof(T))) / tile,
                                     1, kPlanesChunkPixels / tile) * tile;
      pl.nPC = ceil_div(pl.P, pl.chunk);
      pl.packed_tiles = sp.kpg >= kPackedTilesMinOutputs &&
                        sp.cpg * tile * int64_t(sizeof(T)) <= kPackedTileBytes;
      if (pl.packed_tiles) panel_elems = std::max(panel_elems, sp.cpg * tile);
    }
    pl.pixel_panel = !pl.planes && st.direct && j.y.sh == j.y.W * j.y.sw &&
                     use_pixel_panel<T>(sp, st.xc, st.xw, chunk_max);
    if (pl.pixel_panel) {
      // the panel: pixel q of the task at q * cpg (the stride is applied by the packing)
      pl.a.xc = 1, pl.a.xw = sp.cpg, pl.a.xh = j.y.W * sp.cpg, pl.a.sh = pl.a.sw = 1;
      panel_elems = std::max(panel_elems, sp.cpg * chunk_max);
    }
    // A 1x1 with one k-block reads each input pixel once, from memory where the input is
    // large (MBv2 pointwise input gradient 144 -> 24 over 56 x 56, channels_last, 2 threads:
    // 0.95x -> 1.07x of native; with more k-blocks it only cost: 256 -> 1024 over 14 x 14).
    // Not a pixel panel: the task has just written it.
    pl.a.prefetch = sp.R * sp.S == 1 && pl.nKB == 1 && pl.a.xc == 1 && !pl.pixel_panel &&
                    x.H * x.W * sp.cpg * int64_t(sizeof(T)) > kDirectPrefetchBytes;
    // Larger panels go with kb_inner tasks too where an image's input does not stay in L2
    // and all panels per pixel chunk come to less than the image per k-block, as they stream
    // from L3 in order (R50 downsample 256 -> 512 channels_last, 784 KB of input per image:
    // 10.4-11.1 -> 9.7-9.8 ms, 0.91-0.96x -> 1.00-1.02x native).
    const int64_t panels = pl.nKB * pl.panel * int64_t(sizeof(T));
    const int64_t image_input = pl.P * sp.cpg * int64_t(sizeof(T));
    pl.kb_inner = !pl.planes && !pl.pixel_panel && !pl.panel_outer && pl.nKB > 1 &&
                  (panels <= kKbInnerPanelBytes ||
                   (image_input > kImageInL2Bytes && pl.nPC * panels < pl.nKB * image_input));
    plans.push_back(pl);
  }
  for (int64_t n0 = 0; n0 < x.N; n0 += st.chunk) {
    const int64_t nb = std::min(st.chunk, x.N - n0);
    st.prepare(n0, nb);
    std::vector<int64_t> first(jobs.size() + 1, 0);
    for (size_t i = 0; i < jobs.size(); ++i) {
      const bool inner_kb = plans[i].pixel_panel || plans[i].planes || plans[i].kb_inner;
      first[i + 1] = first[i] + nb * jobs[i].sp.G * (inner_kb ? 1 : plans[i].nKB) * plans[i].nPC;
    }
    const int64_t workers = worker_count(first.back(), 1);
    const at::Tensor panels =
        panel_elems > 0 ? workspace<T>(Workspace::pixel_panel, workers * panel_elems)
                        : at::Tensor();
    dynamic_for_workers_ahead(first.back(), workers, [&](int64_t t, int64_t worker,
                                                         int64_t ahead) {
      size_t ji = 0;
      {
        while (t >= first[ji + 1]) ++ji;
        const DirectJob<T>& j = jobs[ji];
        const Plan& pl = plans[ji];
        const Spec& sp = j.sp;
        const int64_t u = t - first[ji], nPC = pl.nPC, nKB = pl.nKB;
        if (pl.planes) {
          const int64_t pc = u % nPC, n = (u / nPC) % nb, g = u / (nPC * nb);
          const int64_t p0 = pc * pl.chunk, np = std::min(pl.chunk, pl.P - p0);
          const T* x0 = st.origin(0, 0) + n * st.xn + g * sp.cpg * st.xc + p0;
          T* y0 = j.y.p + (n0 + n) * j.y.sn + g * sp.kpg * j.y.sc + p0;
          if (pl.packed_tiles) {  // every k-block per pixel tile (the kernel loops them)
            const isa::PlanesDirectArgs a{sp.cpg, st.xc, j.y.sc, pl.KB, pl.a.stream,
                                          data_of<T>(panels) + worker * panel_elems};
            kt->direct_planes(&a, x0, y0, j.wpack + g * nKB * pl.panel,
                              j.bpack ? j.bpack + g * nKB * pl.KB : nullptr, sp.kpg, np);
            return;
          }
          const isa::PlanesDirectArgs a{sp.cpg, st.xc, j.y.sc, pl.KB, pl.a.stream, nullptr};
          for (int64_t kb = 0; kb < nKB; ++kb) {
            kt->direct_planes(&a, x0, y0 + kb * pl.KB * j.y.sc, j.wpack + (g * nKB + kb) * pl.panel,
                              j.bpack ? j.bpack + (g * nKB + kb) * pl.KB : nullptr,
                              std::min(pl.KB, sp.kpg - kb * pl.KB), np);
          }
          return;
        }
        if (pl.pixel_panel) {
          const int64_t pc = u % nPC, n = (u / nPC) % nb, g = u / (nPC * nb);
          const int64_t p0 = chunk_begin(pl, pc), p1 = chunk_begin(pl, pc + 1), OW = j.y.W;
          const T* x0 = st.origin(0, 0) + n * st.xn + g * sp.cpg * st.xc;
          T* panel = data_of<T>(panels) + worker * panel_elems;
          // one run per output row, or one for the task where stride 1 and dense input rows
          // make its pixels contiguous
          const bool one_run = sp.sh == 1 && sp.sw == 1 && st.xh == OW;
          for (int64_t p = p0; p < p1;) {
            const int64_t oh = p / OW, ow = p % OW;
            const int64_t len = one_run ? p1 - p : std::min(p1 - p, OW - ow);
            transpose_rows(kt, x0 + oh * sp.sh * st.xh + ow * sp.sw * st.xw, st.xc, sp.sw,
                           sp.cpg, len, panel + (p - p0) * sp.cpg);
            p += len;
          }
          T* y0 = j.y.p + (n0 + n) * j.y.sn + g * sp.kpg * j.y.sc + p0 * j.y.sw;
          isa::DirectArgs a = pl.a;  // every k-block over each pixel tile (or NCHW run)
          a.kblocks = nKB;
          pl.fn(&a, panel, y0, j.wpack + g * nKB * pl.panel,
                j.bpack ? j.bpack + g * nKB * pl.KB : nullptr, sp.kpg - (nKB - 1) * pl.KB, 0,
                p1 - p0);
          return;
        }
        int64_t pc, g, n, kb0, kb1;  // the task's k-blocks [kb0, kb1)
        if (pl.kb_inner) {
          pc = u % nPC, g = (u / nPC) % sp.G, n = u / (nPC * sp.G);
          kb0 = 0, kb1 = nKB;
        } else if (pl.panel_outer) {
          pc = u % nPC, n = (u / nPC) % nb, kb0 = (u / nPC / nb) % nKB, g = u / (nPC * nb * nKB);
          kb1 = kb0 + 1;
        } else {
          pc = u % nPC, kb0 = (u / nPC) % nKB, g = (u / nPC / nKB) % sp.G;
          n = u / (nPC * nKB * sp.G), kb1 = kb0 + 1;
        }
        const T* x0 = st.origin(sp.pt, sp.pl) + n * st.xn + g * sp.cpg * st.xc;
        isa::DirectArgs a = pl.a;
        // A 1x1 task with every k-block inside prefetches the input of the thread's next task
        // (of the same job), a k-block's share of it during each k-block. Otherwise the first
        // k-block waits on memory (its input comes from L3 or DRAM at more than one core's
        // bandwidth) while the others never touch it (Zen 2, AVX2, 2 threads, alternating
        // processes: R50 1x1 256 -> 64 channels_last forward 6.0-6.2 -> 5.3-5.5 ms, 0.94x ->
        // 1.08x native; 1 thread 12.0-12.2 -> 10.9-11.1; the input gradient of 64 -> 256, the
        // same product, 6.0-6.3 -> 5.3-5.5; 64 -> 256 forward, R50 downsample and 256 -> 1024
        // over 14 x 14 within noise). Only for pixels of at least 64 channels and at least 4
        // k-blocks: a pixel's index arithmetic and prefetch per line or two of channels, or
        // the next task's whole input during one or two k-blocks, cost more than they save
        // (switched in one process, with -> without: MBv2 32 -> 16 over 112 x 112 input
        // gradient 1.21 -> 1.09 ms, pointwise 24 -> 144 forward 1.70 -> 1.60, 96 -> 24 0.86 ->
        // 0.83, 144 -> 24 1.33 -> 1.29, 192 -> 32 0.54 -> 0.52; R50 1x1 256 -> 64 forward 5.6 ->
        // 5.9 and its input gradient 5.6 -> 6.0 keep it).
        const bool prefetch_ahead = pl.kb_inner && sp.R * sp.S == 1 && st.xc == 1 &&
                                    sp.cpg >= 64 && nKB >= 4 &&
                                    ahead >= first[ji] && ahead < first[ji + 1];
        int64_t next_p0 = 0, next_len = 0;  // the next task's pixels (prefetch_ahead)
        if (prefetch_ahead) {
          const int64_t v = ahead - first[ji], next_pc = v % nPC;
          const int64_t next_g = (v / nPC) % sp.G, next_n = v / (nPC * sp.G);
          a.ahead = st.origin(sp.pt, sp.pl) + next_n * st.xn + next_g * sp.cpg * st.xc;
          next_p0 = chunk_begin(pl, next_pc);
          next_len = chunk_begin(pl, next_pc + 1) - next_p0;
        }
        // A 1x1 task with every k-block inside runs them all over each pixel tile (NCHW
        // output: each run of pixels, see isa direct_pixels_nchw) before the next
        // (DirectArgs::kblocks), as the pixel-panel tasks above do: a tile's pixel pointers
        // are set up once for all k-blocks, whose short reductions (24 to 256 channels) paid
        // that per k-block, and the tile writes whole pixels instead of a line of each (Zen 2,
        // AVX2, switched within one process, channels_last forward, 2 threads: MBv2 pointwise
        // 24 -> 144 3.15-4.28 -> 2.48-3.68 ms, R50 1x1 64 -> 256 10.0-11.2 -> 9.8-10.0,
        // 256 -> 64 8.5-9.0 -> 8.1-8.3; 1 thread: 7.7 -> 6.9 and 20.3 -> 18.1). Larger
        // windows only where all panels fit L2 beside the input (kTileKBlocksPanelBytes): the
        // MBv2 stem's two 1.7 KB panels gain (3 -> 32 channels, 3 x 3 stride 2: 4.1 -> 3.9 ms),
        // and so does the R50 stem's 38 KB since the kernel runs a tile's k-blocks in one call
        // (isa direct_tile_rows; channels_last forward, 2 threads, calls alternating: 18.4 ->
        // 17.5, 19.3 -> 19.0; 16 -> 64 channels 3 x 3 stride 2 over 56 x 56, 36 KB, 2.08 ->
        // 2.16 and 2.54 -> 2.58), while a float64 3x3's megabytes would come from L3 for every
        // tile.
        const bool tile_kblocks =
            sp.R * sp.S == 1 || nKB * pl.panel * int64_t(sizeof(T)) <= kTileKBlocksPanelBytes;
        a.kblocks = tile_kblocks ? kb1 - kb0 : 1;
        for (int64_t kb = kb0; kb < kb1; kb += a.kblocks) {
          T* y0 = j.y.p + (n0 + n) * j.y.sn + (g * sp.kpg + kb * pl.KB) * j.y.sc;
          if (prefetch_ahead) {  // (the share of the call's k-blocks)
            a.ahead_p0 = next_p0 + next_len * kb / nKB;
            a.ahead_p1 = next_p0 + next_len * (kb + a.kblocks) / nKB;
          }
          pl.fn(&a, x0, y0, j.wpack + (g * nKB + kb) * pl.panel,
                j.bpack ? j.bpack + (g * nKB + kb) * pl.KB : nullptr,
                std::min(pl.KB, sp.kpg - (kb + a.kblocks - 1) * pl.KB), chunk_begin(pl, pc),
                chunk_begin(pl, pc + 1));
        }
      }
    });
  }
}

template <typename T>
void run_direct(const Table<T>* kt, const Act<T>& x, const Spec& sp, const T* wpack,
                const T* bpack, const Out<T>& y) {
  run_direct_jobs(kt, x, {DirectJob<T>{sp, wpack, bpack, y}});
}

// ---- Depthwise on NCHW planes (isa::PlaneArgs): one input plane at a time is staged
// zero-padded and split into stride_w column phases in per-worker scratch (L1/L2-sized), so
// NCHW operands are never transposed.

constexpr int64_t kPlaneBytes = int64_t(4) << 20;  // per staged plane

struct PlaneGeom {
  int64_t Hp, Wq, elems;  // padded rows, columns per phase, elements per staged plane + slack
};
PlaneGeom plane_geom(const Spec& sp, int64_t OH, int64_t OW, int64_t VL) {
  const int64_t Hp = (OH - 1) * sp.sh + (sp.R - 1) * sp.dh + 1;
  const int64_t Wq = ceil_div(OW, VL) * VL + (sp.S - 1) * sp.dw / sp.sw + 1;
  return {Hp, Wq, Hp * sp.sw * Wq + 16};  // slack: the staging kernel's last vector store
}

// Geometry, tap offsets and kernel arguments of the plane kernels for one convolution; yh / yw:
// strides of the output rows (grad_weight: of grad_output's rows, yw = 1). staged_Wq > 0: the
// staged plane's rows are that long (a plane staged once for several stride-1 convolutions).
struct PlanePlan {
  PlaneGeom pg;
  std::vector<int64_t> taps;  // staged offset of tap (r, s): row r*dh, phase / column of s*dw
  isa::PlaneArgs args;
  PlanePlan(const Spec& sp, int64_t OH, int64_t OW, int64_t VL, int64_t yh, int64_t yw,
            int64_t staged_Wq = 0)
      : pg(plane_geom(sp, OH, OW, VL)) {
    if (staged_Wq > 0) pg.Wq = staged_Wq;
    for (int64_t r = 0; r < sp.R; ++r) {
      for (int64_t s = 0; s < sp.S; ++s) {
        const int64_t cw = s * sp.dw;
        taps.push_back(r * sp.dh * sp.sw * pg.Wq + (cw % sp.sw) * pg.Wq + cw / sp.sw);
      }
    }
    args = isa::PlaneArgs{sp.R, sp.S, OH, OW, sp.sh, sp.sw, sp.dh, sp.dw,
                          sp.sw * pg.Wq, yh, yw, taps.data(), /*stream=*/0};
  }
  PlanePlan(const PlanePlan&) = delete;  // args points into taps
};

// The plane kernels fit: rows of input and output are contiguous / not channels_last, an
// output row fills at least one vector and its vectors are at least half used, and a staged
// plane stays small. (Rows shorter than a vector went through the plane kernels on AVX2, 7 x 7
// MBv2 planes: 1.5-3x the CPU time of the channel-vectorised kernels in every pass; AVX-512
// 14 x 14 x 576 measured equal or faster on the channel kernels too.)
template <typename T>
bool use_plane(const Table<T>* kt, const Act<T>& x, int64_t y_sc, int64_t y_C, const Spec& sp,
               int64_t OH, int64_t OW) {
  const int64_t VL = kt->vec_lanes;
  return x.sw == 1 && (x.sc != 1 || x.C == 1) && (y_sc != 1 || y_C == 1) && OW >= VL &&
         ceil_div(OW, VL) * VL <= 2 * OW &&
         plane_geom(sp, OH, OW, VL).elems * int64_t(sizeof(T)) <= kPlaneBytes;
}

// f(staged, i) for every plane i in [0, planes) of `outputs` outputs each, staged is the
// worker's scratch plane of `elems` (zeroed once first where `zeroed`). Small planes go several
// per task (about 2K outputs), so per-task overhead stays small.
template <typename T, typename F>
void for_each_plane(int64_t planes, int64_t outputs, int64_t elems, bool zeroed, const F& f) {
  const int64_t per_task = std::clamp<int64_t>(2048 / outputs, 1, 64);
  const int64_t ntasks = ceil_div(planes, per_task), workers = worker_count(ntasks, 1);
  const at::Tensor scratch = zeroed ? at::zeros({workers * elems}, options_of<T>())
                                    : at::empty({workers * elems}, options_of<T>());
  T* sc = scratch.data_ptr<T>();
  dynamic_for_workers(ntasks, workers, [&](int64_t t, int64_t worker) {
    for (int64_t i = t * per_task; i < std::min(planes, (t + 1) * per_task); ++i) {
      f(sc + worker * elems, i);
    }
  });
}

template <typename T>
void run_depthwise_planes(const Table<T>* kt, const Act<T>& x, const Spec& sp,
                          const at::Tensor& wk, const std::optional<at::Tensor>& bias,
                          const Out<T>& y) {
  const at::Tensor w = wk.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const T* wp = w.const_data_ptr<T>();
  const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
  PlanePlan plan(sp, y.H, y.W, kt->vec_lanes, y.sh, y.sw);
  plan.args.stream = stream_planes(y, y.W, kt->vec_lanes);
  const PlaneGeom& pg = plan.pg;
  for_each_plane<T>(x.N * x.C, y.H * y.W, pg.elems, false, [&](T* staged, int64_t i) {
    const int64_t n = i / x.C, c = i % x.C;
    kt->stage_plane(x.p + n * x.sn + c * x.sc, x.sh, x.H, x.W, sp.pt, sp.pl, pg.Hp, sp.sw,
                    pg.Wq, staged);
    kt->depthwise_plane(&plan.args, staged, y.p + n * y.sn + c * y.sc, wp + c * sp.R * sp.S,
                        bp ? bp[c] : T(0));
  });
}

// Input images above this size are prefetched by the channel-vectorised depthwise kernel.
constexpr int64_t kDwPrefetchBytes = int64_t(1) << 20;

// Per-worker scratch of the channel-vectorised depthwise kernel's NCHW output (see below).
constexpr int64_t kDwScratchBytes = int64_t(512) << 10;

// Depthwise convolution with per-channel taps taps() (C, R, S) and an optional bias (C). The
// taps are read from `weight` (the op's weight tensor) as `key` says (a cache key: the kind
// of packing and what selects the taps): their packing is kept between calls (a few ATen ops
// per call otherwise: ~5% of MBv2 dw 7x7 x 960 forward, ~25% of its input gradient, whose
// taps are a rotated selection).
template <typename T, typename Taps>
void run_depthwise(const Table<T>* kt, const Act<T>& x, const Spec& sp, const Taps& taps,
                   const std::optional<at::Tensor>& bias, const Out<T>& y,
                   const at::Tensor& weight, std::vector<int64_t> key) {
  if (use_plane(kt, x, y.sc, y.C, sp, y.H, y.W)) {
    run_depthwise_planes(kt, x, sp, taps(), bias, y);
    return;
  }
  const auto pack = [&](bool) { return pack_depthwise(taps(), kt->vec_lanes); };
  key.push_back(table_id(kt));
  const at::Tensor wpacked = weight_cache().get(weight, std::move(key), pack);
  const std::vector<T> bpacked = pack_bias<T>(bias, 1, x.C, kt->vec_lanes);
  const T* wpack = wpacked.const_data_ptr<T>();
  const T* bpack = bias_data(bpacked);
  const int64_t OH = y.H, OW = y.W, P = OH * OW;
  // Dense NCHW output planes: a task's pixels go to per-worker scratch in NHWC order and
  // leave it by register transposes (instead of one scalar store per output).
  const bool via_scratch = y.sc != 1 && y.C > 1 && y.sw == 1 && y.sh == y.W;
  // Pixels per task. Through scratch, a task writes one run per channel plane, and a run that
  // ends inside a cache line shares it with the next task's, which the other thread is
  // likely writing at the same time: chunks as large as kDwScratchBytes allows (whole images
  // where they fit). MBv2 7 x 7 x 960 NCHW in chunks of 32 pixels ran 0.28-0.41 ms in some
  // processes and 1.0 ms in others. Otherwise (channels_last output) chunks of 32 to 1024
  // pixels, about 8 per thread: each thread then walks long runs of input rows, which the
  // other one does not share (Zen 2, AVX2, 2 threads, alternating processes, chunks of 32 ->
  // 896 pixels: MBv2 dw s2 112 x 112 x 96 channels_last forward 4.9-6.2 -> 4.0-4.1 ms, 56 x
  // 56 x 144 2.5-3.5 -> 2.1-2.5).
  const int64_t PC =
      via_scratch
          ? std::min(P, std::max<int64_t>(32, kDwScratchBytes / (x.C * int64_t(sizeof(T)))))
          : std::clamp<int64_t>(y.N * P / (8 * at::get_num_threads()), 32, 1024);
  const int64_t nPC = ceil_div(P, PC);
  // Whole small NCHW images: every task copies its own channels of its image pixel-major into
  // per-worker scratch, so each thread reads back only what it wrote itself. (A staging pass
  // over the chunk by all threads first: MBv2 7 x 7 x 960 NCHW forward took 0.15 ms in most
  // processes and 0.40 ms in one of four to seven, both threads slower, 1 thread 0.22 ms.)
  const int64_t in_plane = x.H * x.W;
  const bool stage_in_task = via_scratch && PC == P && dense_planes(x) && x.sc != 1 &&
                             in_plane * x.C * int64_t(sizeof(T)) <= kDwScratchBytes;
  std::optional<Stager<T>> st;
  if (!stage_in_task) {
    st.emplace(kt, x, sp, OH, OW, /*unit_channel=*/true, 0, /*padding_in_place=*/true);
  }
  // the kernel skips the padding: valid input region [pt, pt + H) x [pl, pl + W) of the origin
  isa::DepthwiseArgs a{x.C, sp.R, sp.S, OW, sp.sh, sp.sw, sp.dh, sp.dw,
                       st ? st->xh : 0, st ? st->xw : 0, y.sc, y.sh, y.sw, sp.pt, sp.pl, x.H, x.W,
                       /*stream=*/stream_output<T>(y.N * y.C * P),
                       /*prefetch=*/x.H * x.W * x.C * int64_t(sizeof(T)) > kDwPrefetchBytes};
  isa::DepthwiseArgs a_scratch = a;
  a_scratch.yc = 1, a_scratch.yh = OW * x.C, a_scratch.yw = x.C, a_scratch.stream = 0;
  const int64_t VL = kt->vec_lanes, RS = sp.R * sp.S;
  // 3x3 (the common depthwise kernel) on images that need no prefetch: the taps stay in
  // registers per channel vector (MBv2 7 x 7 x 960, AVX-512, 1 thread, medians of CPU time per
  // call in alternating processes: channels_last forward 0.18 -> 0.12 ms, input gradient
  // 0.19 -> 0.13; NCHW 0.28 -> 0.25 and 0.33 -> 0.25). On prefetched images its channel-vector
  // order costs: MBv2 56 x 56 x 144 channels_last forward about equal, MBv2 dw s2 (112 x 112 x
  // 96) 2.9-3.5 -> 5.4-6.0 ms.
  const bool taps_in_registers = sp.R == 3 && sp.S == 3 && sp.dh == 1 && sp.dw == 1 &&
                                 (sp.sw == 1 || sp.sw == 2) && !a.prefetch;
  const isa::DepthwiseFn<T> kernel_out =
      taps_in_registers && y.sc == 1 ? kt->depthwise3x3 : kt->depthwise;
  const isa::DepthwiseFn<T> kernel_scratch =
      taps_in_registers ? kt->depthwise3x3 : kt->depthwise;
  const int64_t chunk = st ? st->chunk : x.N;
  for (int64_t n0 = 0; n0 < x.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, x.N - n0);
    if (st) st->prepare(n0, nb);
    // Through scratch, too few images x chunks for the threads (whole-image chunks of one
    // image) are split into blocks of channel vectors.
    const int64_t min_tasks = 2 * at::get_num_threads();
    const int64_t parts = via_scratch ? ceil_div(min_tasks, nb * nPC) : 1;
    const int64_t CB = ceil_div(ceil_div(x.C, parts), VL) * VL, nCB = ceil_div(x.C, CB);
    const int64_t workers = worker_count(nb * nPC * nCB, 1);
    dynamic_for_workers(nb * nPC * nCB, workers, [&](int64_t t, int64_t) {
      const int64_t cb = t % nCB, pc = (t / nCB) % nPC, n = t / (nCB * nPC);
      const int64_t p0 = pc * PC, p1 = std::min(P, p0 + PC);
      T* y0 = y.p + (n0 + n) * y.sn;
      if (!via_scratch) {
        kernel_out(&a, st->origin(sp.pt, sp.pl) + n * st->xn, y0, wpack, bpack, p0, p1);
        return;
      }
      // channels [c0, c0 + cn): their columns of the scratch pixels, then of the planes
      const int64_t c0 = cb * CB, cn = std::min(CB, x.C - c0);
      isa::DepthwiseArgs ac = a_scratch;
      ac.C = cn;
      const T* xc;  // channel c0 at the origin
      at::Tensor copy;  // (held for the task)
      if (stage_in_task) {
        copy = workspace<T>(Workspace::depthwise_input, in_plane * CB);
        T* xs = data_of<T>(copy);
        kt->transpose(x.p + (n0 + n) * x.sn + c0 * x.sc, x.sc, cn, in_plane, xs, CB);
        ac.xh = x.W * CB, ac.xw = CB;
        xc = xs - sp.pt * ac.xh - sp.pl * ac.xw;
      } else {
        xc = st->origin(sp.pt, sp.pl) + n * st->xn + c0;
      }
      const at::Tensor scratch = workspace<T>(Workspace::depthwise_output, PC * x.C);
      T* buf = data_of<T>(scratch);
      kernel_scratch(&ac, xc, buf - p0 * x.C + c0, wpack + c0 * RS,
                    bpack ? bpack + c0 : nullptr, p0, p1);
      kt->transpose(buf + c0, x.C, p1 - p0, cn, y0 + p0 + c0 * y.sc, y.sc);
    });
  }
}

// ---- Grouped with few channels per group on planes (isa grouped_plane): a task stages the
// cpg input planes of one group of one image (as for depthwise) and runs the group's output
// channels 4 at a time over them, so NCHW operands are never transposed (ResNeXt 4 -> 4 over
// 56 x 56 spent most of its time in the NHWC staging copy and the transposing stores), and
// channels_last ones are, a vector of channels at a time (one group of 4 channels per task
// took longer than the channel-vectorised kernel; about 16 channels per task beat it).
constexpr int64_t kGroupedPlaneMaxChannels = 16;  // per group, in and out

// Groups per task of the grouped plane path (run_grouped_planes): one where both operands are
// planes; with a channels_last operand about a vector of channels, and at least a cache line of
// them, so that the transposes that stage its input and (through per-worker scratch planes)
// write its output move whole vectors, and the two threads never read and write the two
// halves of the same lines at once (Zen 2, AVX2, 2 threads, alternating processes, ResNeXt
// 128 channels in groups of 4 over 56 x 56 channels_last, half a line per task -> a line:
// forward 7.9-8.3 -> 5.8-6.7 ms, input gradient 7.5-8.8 -> 5.9-6.4; two lines the same as one).
template <typename T>
int64_t grouped_plane_groups(const Table<T>* kt, const Spec& sp, const Act<T>& x,
                             const Out<T>& y) {
  const bool channels_last = x.sw != 1 || (y.sw != 1 && y.sc == 1);  // input or output
  if (!channels_last) return 1;
  return std::max<int64_t>(1, std::max<int64_t>(kt->vec_lanes, kLineElems<T>) /
                                  std::max(sp.cpg, sp.kpg));
}

template <typename T>
bool use_grouped_planes(const Table<T>* kt, const Act<T>& x, const Out<T>& y, const Spec& sp) {
  const int64_t VL = kt->vec_lanes;
  const bool rows_in = x.sw == 1 && (x.sc != 1 || x.C == 1);
  // channels_last staged through transposes (see stage_planes); with stride_w > 1 only where
  // the direct kernel's tile would be partly empty
  const bool channels_last_in = x.sc == 1 && (sp.sw == 1 || sp.kpg < kt->kernel_block);
  return sp.G > 1 && !(sp.cpg == 1 && sp.kpg == 1) && sp.cpg <= kGroupedPlaneMaxChannels &&
         sp.kpg <= kGroupedPlaneMaxChannels && (rows_in || channels_last_in) &&
         ceil_div(y.W, VL) * VL <= 2 * y.W &&
         grouped_plane_groups(kt, sp, x, y) * sp.cpg *
                 plane_geom(sp, y.H, y.W, VL).elems * int64_t(sizeof(T)) <=
             kPlaneBytes;  // the planes one task stages
}

// Whether stage_planes passes a channels_last input with column phases (stride_w > 1)
// through unpadded planes, and the elements of per-task scratch those take for n channels.
template <typename T>
bool stages_via_rows(const Act<T>& x, const Spec& sp) {
  return x.sw != 1 && sp.sw > 1;
}
template <typename T>
int64_t stage_planes_rows(const Act<T>& x, const Spec& sp, int64_t n) {
  return stages_via_rows(x, sp) ? n * x.H * x.W : 0;
}

// Input row ih's pixels [iw0, iw1), n channels each from src (pixel stride x.sw), into L2
// (prefetcht1; none past the last row). A task's n channels are a cache line or two of every
// pixel, a stride the hardware prefetchers follow late: the transposes waited on memory (Zen 2,
// AVX2, 2 threads, switched within one process, channels_last forward over 8 x 56 x 56,
// ResNeXt-50's 256 channels in 32 groups at stride 2: 12.4-15.0 -> 10.2-13.0 ms in five
// processes; 128 in 32 groups at stride 1 7.2-9.7 -> 6.6-8.8 in six; prefetching into L1 or two rows ahead measured the
// same or slower). Rows of 256 channels a pixel are 56 lines 1 KB apart, which L1 cannot
// hold along with the transposes' own.
template <typename T>
void prefetch_row_channels(const Act<T>& x, const T* src, int64_t ih, int64_t iw0, int64_t iw1,
                           int64_t n) {
  if (ih < 0 || ih >= x.H) return;
  for (int64_t iw = iw0; iw < iw1; ++iw) {
    const T* pixel = src + ih * x.sh + iw * x.sw;
    for (int64_t c = 0; c < n; c += kLineElems<T>) __builtin_prefetch(pixel + c, 0, 2);
  }
}

// Stages input channels [c0, c0 + n) of image `image` as planes `elems` apart (see
// StagePlaneFn); a channels_last input (unit channel stride) through transposes of its rows:
// with stride_w 1 (one column phase) straight into the staged planes, else into `rows`
// (stage_planes_rows) and from there split into phases as NCHW planes are. Channels_last input
// with stride_w > 1 went to the channel-vectorised grouped kernel (fewer than a vector of
// channels per group) or to the direct kernel, whose tile 8 channels per group fill half
// (Zen 2, AVX2, 2 threads, switched within one process, channels_last forward, stride 2 over
// 8 x 56 x 56: ResNeXt-50's 256 channels in 32 groups 17.9 -> 10.4 ms, 0.37x -> 0.64x native;
// 128 in 32 groups 5.5 -> 4.2, 96 in 8 groups 6.6 -> 4.5). 16 per group, which fill AVX2's
// tile, stay direct (512 channels over 28 x 28: 3.4 ms, 6.2 on planes). While a
// channels_last row is transposed, the next one goes into L2 (prefetch_row_channels).
template <typename T>
void stage_planes(const Table<T>* kt, const Act<T>& x, int64_t image, int64_t c0, int64_t n,
                  const Spec& sp, const PlaneGeom& pg, int64_t elems, T* dst, T* rows) {
  const T* src = x.p + image * x.sn + c0 * x.sc;
  const bool via_rows = stages_via_rows(x, sp);
  if (x.sw == 1 || via_rows) {
    int64_t sc = x.sc, sh = x.sh;
    if (via_rows) {
      const int64_t plane = x.H * x.W;
      for (int64_t ih = 0; ih < x.H; ++ih) {
        prefetch_row_channels(x, src, ih + 1, 0, x.W, n);
        kt->transpose(src + ih * x.sh, x.sw, x.W, n, rows + ih * x.W, plane);
      }
      src = rows, sc = plane, sh = x.W;
    }
    for (int64_t j = 0; j < n; ++j) {
      kt->stage_plane(src + j * sc, sh, x.H, x.W, sp.pt, sp.pl, pg.Hp, sp.sw, pg.Wq,
                      dst + j * elems);
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) std::memset(dst + j * elems, 0, sizeof(T) * elems);
  const int64_t col0 = std::max<int64_t>(0, -sp.pl), col1 = std::min(x.W, pg.Wq - sp.pl);
  for (int64_t ih = std::max<int64_t>(0, -sp.pt); ih < std::min(x.H, pg.Hp - sp.pt); ++ih) {
    prefetch_row_channels(x, src, ih + 1, col0, col1, n);
    if (col1 > col0) {
      kt->transpose(src + ih * x.sh + col0 * x.sw, x.sw, col1 - col0, n,
                    dst + (ih + sp.pt) * pg.Wq + col0 + sp.pl, elems);
    }
  }
}

// The grouped plane kernel's weights from wk (G, kpg, cpg, R, S), any strides:
// [G][k-block of 4][tap][cpg][4], zero past kpg.
at::Tensor pack_grouped_planes(const at::Tensor& wk, const Spec& sp) {
  const int64_t nKB = ceil_div(sp.kpg, 4);
  return pad_dim(wk.reshape({sp.G, sp.kpg, sp.cpg, sp.R * sp.S}), 1, nKB * 4)
      .view({sp.G, nKB, 4, sp.cpg, sp.R * sp.S})
      .permute({0, 1, 4, 3, 2})
      .contiguous();
}

// Output channels [k0, k0 + ng * kpg) of groups [g0, g0 + ng) from their staged input planes
// (cpg per group, `elems` apart) into planes yk apart at y, on the grouped plane kernel.
template <typename T>
void grouped_planes_of_groups(const Table<T>* kt, const isa::PlaneArgs* args, const Spec& sp,
                              const T* staged, int64_t elems, int64_t g0, int64_t ng,
                              const T* wp, const T* bp, T* y, int64_t yk) {
  const int64_t RS = sp.R * sp.S, nKB = ceil_div(sp.kpg, 4);
  for (int64_t g = g0; g < g0 + ng; ++g) {
    for (int64_t kb = 0; kb < nKB; ++kb) {
      const int64_t k = (g - g0) * sp.kpg + kb * 4;  // of the groups' outputs
      kt->grouped_plane(args, staged + (g - g0) * sp.cpg * elems, elems, sp.cpg, y + k * yk, yk,
                        std::min<int64_t>(4, sp.kpg - kb * 4),
                        wp + (g * nKB + kb) * RS * sp.cpg * 4,
                        bp ? bp + (g * nKB + kb) * 4 : nullptr);
    }
  }
}

// wk: (G, kpg, cpg, R, S), any strides; bias: G * kpg values or none.
template <typename T>
void run_grouped_planes(const Table<T>* kt, const Act<T>& x, const Spec& sp,
                        const at::Tensor& wk, const std::optional<at::Tensor>& bias,
                        const Out<T>& y) {
  const at::Tensor w = pack_grouped_planes(wk, sp);
  const std::vector<T> b = pack_bias<T>(bias, sp.G, sp.kpg, 4);
  const T* wp = w.const_data_ptr<T>();
  const T* bp = bias_data(b);
  const bool via_scratch = y.sw != 1 && y.sc == 1;
  const int64_t VL = kt->vec_lanes, P = y.H * y.W;
  const int64_t per_task = grouped_plane_groups(kt, sp, x, y);
  PlanePlan plan(sp, y.H, y.W, VL, via_scratch ? y.W : y.sh, via_scratch ? 1 : y.sw);
  plan.args.stream = !via_scratch && stream_planes(y, y.W, VL);
  const int64_t elems = plan.pg.elems, tasks_per_image = ceil_div(sp.G, per_task);
  const int64_t rows_elems = stage_planes_rows(x, sp, per_task * sp.cpg);
  const int64_t scratch_elems =
      per_task * (sp.cpg * elems + (via_scratch ? sp.kpg * P : 0)) + rows_elems;
  const int64_t ntasks = x.N * tasks_per_image, workers = worker_count(ntasks, 1);
  at::Tensor scratch = at::empty({workers * scratch_elems}, options_of<T>());
  dynamic_for_workers(ntasks, workers, [&](int64_t t, int64_t worker) {
    const int64_t n = t / tasks_per_image, g0 = t % tasks_per_image * per_task;
    const int64_t ng = std::min(per_task, sp.G - g0);
    T* staged = scratch.data_ptr<T>() + worker * scratch_elems;
    T* out = staged + per_task * sp.cpg * elems;  // via_scratch: [channel][pixel]
    T* rows = out + (via_scratch ? per_task * sp.kpg * P : 0);
    stage_planes(kt, x, n, g0 * sp.cpg, ng * sp.cpg, sp, plan.pg, elems, staged, rows);
    grouped_planes_of_groups(kt, &plan.args, sp, staged, elems, g0, ng, wp, bp,
                             via_scratch ? out : y.p + n * y.sn + g0 * sp.kpg * y.sc,
                             via_scratch ? P : y.sc);
    if (via_scratch) {
      T* y0 = y.p + n * y.sn + g0 * sp.kpg * y.sc;
      for (int64_t oh = 0; oh < y.H; ++oh) {
        kt->transpose(out + oh * y.W, P, ng * sp.kpg, y.W, y0 + oh * y.sh, y.sw);
      }
    }
  });
}

// One stride phase (a, b) of a depthwise or grouped input gradient: the stride-1 convolution
// ps of the gradient that gives input rows a + i*stride_h, columns b + j*stride_w (Hi x Wi of
// them), with its taps w (depthwise (C, J, JS), grouped (G, cpg, kpg, J, JS) of ps).
struct PlanePhase {
  Spec ps;
  int64_t a, b, Hi, Wi;
  at::Tensor w;
};

// One NCHW plane of an input gradient (rows `row` apart) from its stride phases' outputs, all
// phases in order (a, b), phase p's rows Wmax apart at src + p * phase_elems.
template <typename T>
void interleave_plane_phases(const Table<T>* kt, const T* src, int64_t phase_elems,
                             int64_t Wmax, const std::vector<PlanePhase>& phases,
                             int64_t stride_h, int64_t stride_w, T* plane, int64_t row,
                             bool stream) {
  for (int64_t a = 0; a < stride_h; ++a) {
    const int64_t first = a * stride_w, Wmin = phases[first + stride_w - 1].Wi;
    const T* pa = src + first * phase_elems;
    kt->interleave_phases(pa, phase_elems, Wmax, stride_w, Wmin, phases[first].Hi,
                          plane + a * row, stride_h * row, stream);
    for (int64_t i = 0; i < phases[first].Hi; ++i) {  // the longer phases' last columns
      T* r = plane + (a + i * stride_h) * row;
      for (int64_t b = 0; b < stride_w && phases[first + b].Wi > Wmin; ++b) {
        r[Wmin * stride_w + b] = pa[b * phase_elems + i * Wmax + Wmin];
      }
    }
  }
}

// What the phase runners below derive from their phases (stride 1 each): the one staged plane
// (Hp rows of Wq, padded by the largest phase padding) that holds every phase's plane from its
// own origin, each phase's plan over it with output rows Wmax apart (dense_rows) or as wide as
// the phase, and the largest phase output.
struct StagedPhases {
  int64_t Wmax = 0, narrowest, pt, pl, Hp = 0, Wq = 0, staged_elems, out_elems = 0;
  std::vector<std::unique_ptr<PlanePlan>> plans;
  StagedPhases(const std::vector<PlanePhase>& phases, int64_t VL, bool dense_rows)
      : narrowest(phases[0].Wi), pt(phases[0].ps.pt), pl(phases[0].ps.pl) {
    for (const PlanePhase& ph : phases) {
      TORCH_INTERNAL_ASSERT(ph.ps.sh == 1 && ph.ps.sw == 1);
      Wmax = std::max(Wmax, ph.Wi), narrowest = std::min(narrowest, ph.Wi);
      pt = std::max(pt, ph.ps.pt), pl = std::max(pl, ph.ps.pl);
    }
    for (const PlanePhase& ph : phases) {
      const PlaneGeom pg = plane_geom(ph.ps, ph.Hi, ph.Wi, VL);
      Hp = std::max(Hp, pg.Hp + pt - ph.ps.pt), Wq = std::max(Wq, pg.Wq + pl - ph.ps.pl);
    }
    staged_elems = Hp * Wq + 16;  // slack: as plane_geom's
    for (const PlanePhase& ph : phases) {
      const int64_t row = dense_rows ? Wmax : ph.Wi;
      plans.push_back(std::make_unique<PlanePlan>(ph.ps, ph.Hi, ph.Wi, VL, row, 1, Wq));
      out_elems = std::max(out_elems, ph.Hi * row);
    }
  }
  // phase ps's origin in a staged plane
  template <typename T>
  const T* origin(const T* staged, const Spec& ps) const {
    return staged + (pt - ps.pt) * Wq + (pl - ps.pl);
  }
  // grad_input is written once: past the caches where large (MBv2 dw s2, 38.5 MB), where its
  // interleaved rows take whole vectors only (see stream_planes: phases as wide as each other,
  // in whole vectors, that make up the rows: 56 x 56 s2 depthwise input gradients streamed ran
  // at 0.3x native; 112 x 112 ones ran 8.2 ms with plain stores, 5.9 streamed)
  template <typename T>
  bool streams(const Out<T>& o, int64_t stride_w, int64_t VL) const {
    return narrowest == Wmax && Wmax % VL == 0 && stream_planes(o, stride_w * Wmax, VL);
  }
};

// The phases of a depthwise input gradient over NCHW planes, one plane at a time: each phase
// into a dense scratch plane, then from there into its elements of grad_input's plane, which
// stays in cache. Every element is written once, by its phase, as in one pass per phase.
// The phases (stride-1 convolutions of grad_output with different leading paddings) read one
// staged copy of the grad_output plane, padded by the largest of them, each from its own
// origin in it (a copy per phase: MBv2 dw s2 spent 24% of its 1-thread time staging).
template <typename T>
void run_depthwise_phases_on_planes(const Table<T>* kt, const Act<T>& d,
                                    const std::vector<PlanePhase>& phases, int64_t stride_h,
                                    int64_t stride_w, const Out<T>& o) {
  const int64_t VL = kt->vec_lanes, planes = d.N * d.C;
  // Every phase present (in order a, b) and grad_input rows dense: a row of grad_input is the
  // stride_w phases' rows interleaved, one transpose of stride_w rows (element-wise strided
  // stores were 15% of MBv2 dw s2's NCHW input gradient). Phase rows are then Wmax apart.
  const bool interleave = o.sw == 1 && stride_w <= VL &&
                          int64_t(phases.size()) == stride_h * stride_w;
  const StagedPhases sph(phases, VL, interleave);
  const int64_t Wmax = sph.Wmax, Wq = sph.Wq, staged_elems = sph.staged_elems,
                out_elems = sph.out_elems;
  const int64_t phase_bufs = interleave ? int64_t(phases.size()) : 1;
  const bool stream = interleave && sph.streams(o, stride_w, VL);
  const int64_t per_worker = staged_elems + phase_bufs * out_elems;
  const int64_t workers = worker_count(planes, 1);
  at::Tensor scratch = at::empty({workers * per_worker}, options_of<T>());
  dynamic_for_workers(planes, workers, [&](int64_t t, int64_t worker) {
    const int64_t n = t / d.C, c = t % d.C;
    T* staged = scratch.data_ptr<T>() + worker * per_worker;
    T* out = staged + staged_elems;
    kt->stage_plane(d.p + n * d.sn + c * d.sc, d.sh, d.H, d.W, sph.pt, sph.pl, sph.Hp, 1, Wq,
                    staged);
    for (size_t p = 0; p < phases.size(); ++p) {
      const PlanePhase& ph = phases[p];
      T* po = interleave ? out + p * out_elems : out;
      kt->depthwise_plane(&sph.plans[p]->args, sph.origin<T>(staged, ph.ps), po,
                          ph.w.const_data_ptr<T>() + c * ph.ps.R * ph.ps.S, T(0));
      if (interleave) continue;
      T* dst = o.p + n * o.sn + c * o.sc + ph.a * o.sh + ph.b * o.sw;
      for (int64_t i = 0; i < ph.Hi; ++i) {
        T* row = dst + i * stride_h * o.sh;
        const T* src = out + i * ph.Wi;
        for (int64_t j = 0; j < ph.Wi; ++j) row[j * stride_w * o.sw] = src[j];
      }
    }
    if (!interleave) return;
    interleave_plane_phases(kt, out, out_elems, Wmax, phases, stride_h, stride_w,
                            o.p + n * o.sn + c * o.sc, o.sh, stream);
  });
}

// A depthwise input gradient with a stride over NCHW planes as one stride-1 convolution per
// plane: grad_output with the stride's zeros inserted (its values stride_h rows and stride_w
// columns apart) convolved with the rotated taps. Every tap is multiplied, zeros included (4x
// the products of the stride phases at stride 2 x 2), but a plane is one call of the plane
// kernel (the 3 x 3 rows kernel for undilated 3 x 3) written straight into grad_input, where
// the phases spend most of their time in per-row overheads and in interleaving their rows.
// Zen 2, AVX2, 2 threads, phases -> zero-inserted, MBv2 dw s2 input gradients: 96 x 112 x 112
// 7.4 -> 6.0 ms (native 9.3), 144 x 56 x 56 4.4 -> 2.5 (3.7), 192 x 28 x 28 2.1 -> 1.0 (1.2),
// 576 x 14 x 14 1.3 -> 0.73 (1.45); 5 x 5 stride 2: 240 x 28 x 28 3.9 -> 3.0 (2.5), 672 x 14 x
// 14 2.2 -> 1.6 (2.2), but 144 x 56 x 56 equal (phases of 28 columns) and dilated 3 x 3 over
// 56 x 56 1.9 -> 2.4: other kernels take it where the phases are narrower than two vectors.
template <typename T>
bool use_zero_inserted_grad_input(const Table<T>* kt, const Geometry& g, const Act<T>& d,
                                  const Out<T>& o) {
  const int64_t VL = kt->vec_lanes, R = g.kernel_height, S = g.kernel_width;
  const Spec ps{g.groups, 1, 1, R, S, 1, 1, g.dilation_h, g.dilation_w, 0, 0};
  const bool rows3x3 = R == 3 && S == 3 && g.dilation_h == 1;
  return g.stride_h * g.stride_w > 1 && d.sw == 1 && o.sw == 1 &&
         use_plane(kt, d, o.sc, o.C, ps, o.H, o.W) &&
         (rows3x3 || ceil_div(o.W, g.stride_w) < 2 * VL);
}

// Weights with inf / NaN would give inf * 0 = NaN where no tap reaches (conv2d_cpu.cpp keeps
// them off the fast paths, but for 1x1 kernels, which no padding reaches): those go by phases
// (returns false, nothing written). The zeros between grad_output's values are written once
// per worker (only the values' positions are written plane after plane).
template <typename T>
bool run_depthwise_grad_input_zero_inserted(const Table<T>* kt, const Act<T>& d,
                                            const Geometry& g, const at::Tensor& weight,
                                            const Out<T>& o) {
  if (!weight_is_finite(weight)) return false;
  const int64_t R = g.kernel_height, S = g.kernel_width, C = g.in_channels;
  const at::Tensor taps =
      weight_cache().get(weight, {kPackDepthwiseRotated, table_id(kt)}, [&](bool) {
        return weight.reshape({C, R, S}).flip({1, 2}).contiguous();
      });
  const T* tp = taps.const_data_ptr<T>();
  // origin of the staged plane: grad_output's row / column (R-1)*dh - pad_top / ... before
  // its first one
  const Spec ps{C, 1, 1, R, S, 1, 1, g.dilation_h, g.dilation_w,
                (R - 1) * g.dilation_h - g.pad_top, (S - 1) * g.dilation_w - g.pad_left};
  PlanePlan plan(ps, o.H, o.W, kt->vec_lanes, o.sh, o.sw);
  plan.args.stream = stream_planes(o, o.W, kt->vec_lanes);
  const PlaneGeom& pg = plan.pg;
  for_each_plane<T>(d.N * C, o.H * o.W, pg.elems, true, [&](T* staged, int64_t i) {
    const int64_t n = i / C, c = i % C;
    const T* src = d.p + n * d.sn + c * d.sc;
    for (int64_t oh = 0; oh < d.H; ++oh) {
      const int64_t row = oh * g.stride_h + ps.pt;
      if (row < 0 || row >= pg.Hp) continue;  // (reaches no grad_input row)
      T* dst = staged + row * pg.Wq;
      for (int64_t ow = 0; ow < d.W; ++ow) {
        const int64_t col = ow * g.stride_w + ps.pl;
        if (col >= 0 && col < pg.Wq) dst[col] = src[oh * d.sh + ow];
      }
    }
    kt->depthwise_plane(&plan.args, staged, o.p + n * o.sn + c * o.sc, tp + c * R * S, T(0));
  });
  return true;
}

// The stride phases of a grouped input gradient on planes (every phase's convolution fits
// use_grouped_planes; PlanePhase::w (G, cpg, kpg, J, JS)), all phases in order (a, b) and
// grad_input either NCHW with dense rows or channels_last. As for depthwise phases above, a
// task (image, groups) stages its channels of grad_output once, padded by the largest phase
// padding, and runs every phase from its own origin in them into per-task scratch planes
// [channel][phase][Hi x Wmax]; those go to grad_input interleaved (NCHW) or row by row through
// transposes (channels_last). One pass per phase (run_grouped_planes) staged grad_output once
// per phase and wrote NCHW phases element by element (Zen 2, AVX2, 2 threads, ResNeXt-50's
// 256 channels in 32 groups, stride 2 over 8 x 56 x 56, input gradient: NCHW 0.52x -> 0.95-1.2x
// native, channels_last 0.39-0.49x -> 0.66x; 512 in 32 groups over 28 x 28 channels_last
// 0.78x -> 1.2x).
// Returns false (nothing done) where a task's scratch planes of grad_input would exceed
// kPlaneBytes.
template <typename T>
bool run_grouped_phases_on_planes(const Table<T>* kt, const Act<T>& d,
                                  const std::vector<PlanePhase>& phases, int64_t stride_h,
                                  int64_t stride_w, const Out<T>& o) {
  const Spec& sp0 = phases[0].ps;  // (G, channels per group: cpg of grad_output, kpg of grad_input)
  const int64_t VL = kt->vec_lanes, nph = int64_t(phases.size());
  const StagedPhases sph(phases, VL, /*dense_rows=*/true);
  const int64_t Wmax = sph.Wmax, out_elems = sph.out_elems;
  const int64_t per_task = grouped_plane_groups(kt, sp0, d, o);
  const int64_t out_all = per_task * sp0.kpg * nph * out_elems;
  if (out_all * int64_t(sizeof(T)) > kPlaneBytes) return false;
  const PlaneGeom staged_geom{sph.Hp, sph.Wq, sph.staged_elems};
  Spec staged_spec = sp0;
  staged_spec.sh = staged_spec.sw = 1, staged_spec.pt = sph.pt, staged_spec.pl = sph.pl;
  std::vector<at::Tensor> packed;
  for (const PlanePhase& ph : phases) packed.push_back(pack_grouped_planes(ph.w, ph.ps));
  const bool channels_last = o.sw != 1;
  const bool stream = !channels_last && sph.streams(o, stride_w, VL);
  const int64_t tasks_per_image = ceil_div(sp0.G, per_task);
  const int64_t staged_all = per_task * sp0.cpg * staged_geom.elems;
  const int64_t per_worker = staged_all + out_all;
  const int64_t ntasks = d.N * tasks_per_image, workers = worker_count(ntasks, 1);
  at::Tensor scratch = at::empty({workers * per_worker}, options_of<T>());
  dynamic_for_workers(ntasks, workers, [&](int64_t t, int64_t worker) {
    const int64_t n = t / tasks_per_image, g0 = t % tasks_per_image * per_task;
    const int64_t ng = std::min(per_task, sp0.G - g0), k0 = g0 * sp0.kpg, nk = ng * sp0.kpg;
    T* staged = scratch.data_ptr<T>() + worker * per_worker;
    T* out = staged + staged_all;
    stage_planes(kt, d, n, g0 * sp0.cpg, ng * sp0.cpg, staged_spec, staged_geom,
                 staged_geom.elems, staged, static_cast<T*>(nullptr));
    for (int64_t p = 0; p < nph; ++p) {
      const Spec& ps = phases[p].ps;
      grouped_planes_of_groups(kt, &sph.plans[p]->args, ps, sph.origin<T>(staged, ps),
                               staged_geom.elems, g0, ng, packed[p].const_data_ptr<T>(),
                               static_cast<const T*>(nullptr), out + p * out_elems,
                               nph * out_elems);
    }
    if (channels_last) {
      for (int64_t p = 0; p < nph; ++p) {
        const PlanePhase& ph = phases[p];
        T* dst = o.p + n * o.sn + ph.a * o.sh + ph.b * o.sw + k0 * o.sc;
        for (int64_t i = 0; i < ph.Hi; ++i) {
          kt->transpose(out + p * out_elems + i * Wmax, nph * out_elems, nk, ph.Wi,
                        dst + i * stride_h * o.sh, stride_w * o.sw);
        }
      }
      return;
    }
    for (int64_t k = 0; k < nk; ++k) {
      interleave_plane_phases(kt, out + k * nph * out_elems, out_elems, Wmax, phases, stride_h,
                              stride_w, o.p + n * o.sn + (k0 + k) * o.sc, o.sh, stream);
    }
  });
  return true;
}

template <typename T>
void run_grouped(const Table<T>* kt, const Act<T>& x, const Spec& sp, const T* wpack,
                 const T* bpack, const Out<T>& y) {
  const int64_t OH = y.H, OW = y.W, P = OH * OW;
  const int64_t PC = 32, nPC = ceil_div(P, PC);
  Stager st(kt, x, sp, OH, OW, /*unit_channel=*/true);
  const isa::GroupedArgs a{y.C, x.C, sp.cpg, sp.kpg, sp.R, sp.S, OW, sp.sh, sp.sw, sp.dh, sp.dw,
                           st.xh, st.xw, y.sc, y.sh, y.sw,
                           /*stream=*/stream_output<T>(y.N * y.C * P)};
  for (int64_t n0 = 0; n0 < x.N; n0 += st.chunk) {
    const int64_t nb = std::min(st.chunk, x.N - n0);
    st.prepare(n0, nb);
    dynamic_for(nb * nPC, 1, [&](int64_t t) {
      {
        const int64_t pc = t % nPC, n = t / nPC;
        kt->grouped(&a, st.origin(sp.pt, sp.pl) + n * st.xn, y.p + (n0 + n) * y.sn, wpack,
                    bpack, pc * PC, std::min(P, (pc + 1) * PC));
      }
    });
  }
}

// Passes of a weight-gradient sum (one kernel call per task each; pass q of the sequence is
// the same for every task and thread) go onto a middle buffer in groups of mid_passes (at most
// kMidPasses), the groups onto the accumulators: a batch of 25088 pixels is ~110 passes, too
// many to add one by one (see isa::kMidBlocks). Used by the dense, grouped and Winograd weight
// gradients.
template <typename T>
struct PassSums {
  static constexpr int64_t kMidPasses = 16;
  int64_t passes, mid_passes;
  bool use_mid;
  at::Tensor acc, mid;
  T* ap = nullptr;  // the accumulators (the final sums)
  T* mp = nullptr;  // the middle level, or null
  PassSums(int64_t passes_, int64_t elements, int64_t mid_passes_ = kMidPasses)
      : passes(passes_), mid_passes(mid_passes_), use_mid(passes_ > mid_passes_),
        acc(at::empty({elements}, options_of<T>())) {
    ap = acc.data_ptr<T>();
    if (use_mid) {
      mid = at::empty({elements}, options_of<T>());
      mp = mid.data_ptr<T>();
    }
  }
  // Where pass q's kernel call sums, and whether it adds to what is there.
  T* target() const { return use_mid ? mp : ap; }
  int accumulate(int64_t q) const { return (use_mid ? q % mid_passes : q) > 0 ? 1 : 0; }
  // After a task's pass q: its group (rows x cols from off, row stride `stride`) onto the
  // accumulators where the group ends.
  void end_pass(int64_t q, int64_t off, int64_t rows, int64_t stride, int64_t cols) const {
    if (!use_mid || !(q % mid_passes == mid_passes - 1 || q == passes - 1)) return;
    add_group(mp, q < mid_passes, off, rows, stride, cols);
  }
  // A group's sums (`group`, laid out as the accumulators) onto the accumulators: rows x cols
  // from off; the first group is copied.
  void add_group(const T* group, bool first_group, int64_t off, int64_t rows, int64_t stride,
                 int64_t cols) const {
    for (int64_t r = 0; r < rows; ++r) {
      T* a = ap + off + r * stride;
      const T* m = group + off + r * stride;
      for (int64_t c = 0; c < cols; ++c) a[c] = first_group ? m[c] : a[c] + m[c];
    }
  }
};

// ---- Winograd F(2x2, 3x3): stride 1, 3x3 (dilated: per phase), one group. Per 2x2 output
// tile the 4x4 input window is transformed (B^T d B, 16 values per channel), the 16 transform
// positions are multiplied with the transformed weights U = G g G^T as 16 GEMMs (tiles x C
// times C x K, on the direct kernel as R = S = 1 convolutions with tiles as pixels) and the
// products are transformed back (A^T m A). 16 products per tile instead of 36. A task is a
// run of tiles of a chunk of images with per-worker scratch for its transformed inputs and
// products, so the GEMMs run on L2-resident operands.

// Products per block of the GEMM sums. The Winograd products carry larger terms than the direct
// sums (transformed inputs and weights), so shorter blocks keep the error at or below native's.
// Measured as max error against a float64 reference over native's (float32, suite layers, weights
// scaled by 1/sqrt(fan-in), seeds 1-3, both layouts): the input gradient of stride-1 3x3s (dilated
// ones too) is the tight one, at 0.84-1.02x on R50 3x3 and VGG conv1_2 NCHW with blocks of 16 and
// up to 1.17x with 32, so it keeps 16 (kWinogradStride1GradInputBlock). The others stay far below
// native's with 32: forwards 0.09-0.28x over the eleven Winograd suite layers (16: 0.07-0.21x, 64:
// 0.10-0.46x), the stride-2 input gradient (R50 3x3 s2) 0.54-0.59x (16: 0.45-0.52x), the 5x5 one
// (GoogLeNet, nested) 0.17-0.38x (16: 0.14-0.35x). A block's end (a load, an add and a store per
// accumulator) cost 3-13% of those layers' time at 16 (Zen 2, AVX2, 2 threads, switched within one
// process, 16 -> 32, channels_last forward, ms: R50 3x3 11.7 -> 10.6, VGG conv1_2 42.7 -> 38.3, R50
// 3x3 s2 15.9 -> 14.5, odd tails 5.5 -> 4.7, N=1 latency 1.61 -> 1.42, R50 L4 3x3 14.9 -> 13.9,
// GoogLeNet 5x5 14.8 -> 13.8; input gradient: GoogLeNet 5x5 channels_last 13.0 -> 11.5, NCHW 19.2
// -> 18.5, R50 3x3 s2 13.6 -> 12.7 and 16.0 -> 14.6). 64 was no faster than 32 (64-channel layers:
// slower, one block in the plain loop).
constexpr int64_t kWinogradBlock = 32;
constexpr int64_t kWinogradStride1GradInputBlock = 16;
// Per worker: transformed inputs and products of one task.
constexpr int64_t kWinogradScratchBytes = int64_t(2) << 20;
// Transformed weights above this do not stay in L3 beside the workers' scratch (see max_tiles).
constexpr int64_t kWinogradBigWeights = int64_t(8) << 20;

std::atomic<bool>& winograd_switch() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("TORCHCONV_CPU_WINOGRAD");
    return !(env && std::string(env) == "0");
  }()};
  return on;
}

// float32 only (float64 has no rounding budget to spare against a direct float64 sum), with
// enough channels that the 16 GEMMs dominate the input / output transforms, and enough tiles
// that they pay for transforming the weights (16 / 9 of the weight written per call: on
// Zen 5, 512 x 512 channels on 8 x 7 x 7 images (128 tiles) ran 1.1-1.3x faster than the
// direct kernel; 256 x 256 on 1 x 14 x 14 (49 tiles) measured 0.95x at the time, 1.3-1.9x
// after later work on the transforms and the kernels, and 1 x 12 x 12 (36 tiles) 1.3-1.9x:
// in alternating processes, 2 threads, NCHW and channels_last).
constexpr int64_t kWinogradMinTiles = 32;
int64_t winograd_tiles(int64_t N, int64_t OH, int64_t OW) {
  return N * ceil_div(OH, 2) * ceil_div(OW, 2);
}
// What every Winograd form needs: float32, Winograd switched on, one group, >= 16 channels in
// and out, and kWinogradMinTiles tiles.
template <typename T>
bool winograd_allowed(int64_t groups, int64_t in_channels, int64_t out_channels,
                      int64_t tiles) {
  return std::is_same_v<T, float> && winograd_switch().load(std::memory_order_relaxed) &&
         groups == 1 && in_channels >= 16 && out_channels >= 16 && tiles >= kWinogradMinTiles;
}
template <typename T>
bool use_winograd(const Spec& sp, int64_t N, int64_t OH, int64_t OW) {
  const bool kernel = (sp.R == 3 && sp.S == 3) ||  // larger: run_winograd_nested
                      (sp.R % 2 == 1 && sp.S % 2 == 1 && sp.R >= 3 && sp.S >= 3 &&
                       sp.dh == 1 && sp.dw == 1);
  return winograd_allowed<T>(sp.G, sp.cpg, sp.kpg, winograd_tiles(N, OH, OW)) && kernel &&
         sp.sh == 1 && sp.sw == 1 && OH >= 2 * sp.dh && OW >= 2 * sp.dw;
}

// The forward of a 3x3 stride-2 convolution (undilated; the other conditions as use_winograd)
// on the stride-2 form (WinogradKind::stride2): 25 products per 2x2 output tile instead of 36.
template <typename T>
bool use_winograd_stride2(const Spec& sp, int64_t N, int64_t OH, int64_t OW) {
  return winograd_allowed<T>(sp.G, sp.cpg, sp.kpg, winograd_tiles(N, OH, OW)) && sp.R == 3 &&
         sp.S == 3 && sp.sh == 2 && sp.sw == 2 && sp.dh == 1 && sp.dw == 1 && OH >= 2 &&
         OW >= 2;
}

// The input gradient of such a layer (tiles of 4 x 4 grad_input pixels; the same padding
// parity for rows and columns: one form for both).
template <typename T>
bool use_winograd_stride2_grad_input(const Geometry& g) {
  return winograd_allowed<T>(g.groups, g.out_channels, g.in_channels,
                             g.batch * ceil_div(g.in_height, 4) * ceil_div(g.in_width, 4)) &&
         g.kernel_height == 3 && g.kernel_width == 3 && g.stride_h == 2 && g.stride_w == 2 &&
         g.dilation_h == 1 && g.dilation_w == 1 && g.pad_top % 2 == g.pad_left % 2;
}

// The 16 planes of the transformed inputs, products and weights lie a multiple of 4 KiB plus
// one cache line apart: planes a power of two apart map to the same cache sets, and the
// transforms touch all 16 at once (packing 512 x 512 weights: 10-11 ms -> 5-7 ms).
int64_t winograd_plane(int64_t elements) { return ceil_div(elements, 1024) * 1024 + 16; }

// The transformed weights U = G g G^T of the spec's convolution, packed as the GEMMs' panels
// [16][nKB][C][KB] (zero past K; planes winograd_plane(nKB*C*KB) apart). Output channel k and
// input channel c of the spec read the 3x3 taps at w + k*ls + c*cs (rotated: grad_input).
struct WinogradWeights {
  const at::Tensor* weight;  // the op's weight (K0, C0, 3, 3)
  bool rotate;  // grad_input: the spec's output channel k is the weight's input channel
  static WinogradWeights forward(const at::Tensor& w) { return {&w, false}; }
  static WinogradWeights grad_input(const at::Tensor& w) { return {&w, true}; }
};
// f(k-block, c0, c1) for every k-block and run [c0, c1) of up to 64 input channels, in
// parallel: the Winograd transforms of the weights and of the weight gradient.
template <typename F>
void for_weight_blocks(int64_t nKB, int64_t C, const F& f) {
  constexpr int64_t kChannels = 64;
  const int64_t ncb = ceil_div(C, kChannels);
  at::parallel_for(0, nKB * ncb, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t kb = t / ncb, c0 = t % ncb * kChannels;
      f(kb, c0, std::min(C, c0 + kChannels));
    }
  });
}

// Kernels larger than 3x3 (R, S odd; see run_winograd_nested): the spec's (K, C, R, S) weights
// as (K, C, nr, ns, 3, 3) sub-kernels, sub-kernel (a, b) holding taps (2a + i, 2b + j); a tap
// on the border of two sub-kernels belongs to the first (zero in the second).
at::Tensor winograd_sub_kernels(const at::Tensor& w) {
  at::Tensor sub = w.unfold(2, 3, 2).unfold(3, 3, 2).contiguous();
  sub.slice(2, 1).select(4, 0).zero_();
  sub.slice(3, 1).select(5, 0).zero_();
  return sub;
}

// The transforms of a Winograd convolution (kernels_impl.h): F(2x2, 3x3) for stride 1 (and
// the nested larger kernels), its stride-2 sibling (isa::WinogradStride2: 3x3, undilated, 25
// products per 2x2 output tile instead of the direct kernel's 36), and the input gradient of
// such a stride-2 layer (isa::WinogradStride2GradInput: 25 products per 4x4 tile of
// grad_input instead of 36; "even" / "odd": the parity of the tiles' first padded pixel).
enum class WinogradKind { f2x2_3x3, stride2, stride2_grad_input_even, stride2_grad_input_odd };
WinogradKind winograd_kind(const Spec& sp) {
  return sp.sh == 2 ? WinogradKind::stride2 : WinogradKind::f2x2_3x3;
}
struct WinogradShape {
  int64_t positions;  // transformed values (GEMMs) per tile
  int64_t window;     // input window extent (rows and columns)
  int64_t step;       // input pixels from one tile's window to the next one's
  int64_t out_tile;   // output pixels per tile (rows and columns)
};
WinogradShape winograd_shape(WinogradKind kind) {
  switch (kind) {
    case WinogradKind::f2x2_3x3: return {16, 4, 2, 2};
    case WinogradKind::stride2: return {25, 5, 4, 2};
    default: return {25, 3, 2, 4};
  }
}
template <typename T>
struct WinogradForm : WinogradShape {
  isa::WinogradInputFn<T> input;
  isa::WinogradOutputFn<T> output;
  isa::WinogradWeightFn<T> weights;
  // the weight gradient's transforms (the two forward forms; null for the input gradient's)
  isa::WinogradGradOutputFn<T> grad_output = nullptr;
  isa::WinogradWeightGradFn<T> weight_grad = nullptr;
  WinogradForm(const Table<T>* kt, WinogradKind kind) : WinogradShape(winograd_shape(kind)) {
    switch (kind) {
      case WinogradKind::f2x2_3x3:
        input = kt->winograd_input, output = kt->winograd_output;
        grad_output = kt->winograd_grad_output, weight_grad = kt->winograd_weight_grad;
        break;
      case WinogradKind::stride2:
        input = kt->winograd_s2_input, output = kt->winograd_s2_output;
        grad_output = kt->winograd_s2_grad_output, weight_grad = kt->winograd_s2_weight_grad;
        break;
      case WinogradKind::stride2_grad_input_even:
        input = kt->winograd_s2_gi_even_input, output = kt->winograd_s2_gi_even_output;
        break;
      case WinogradKind::stride2_grad_input_odd:
        input = kt->winograd_s2_gi_odd_input, output = kt->winograd_s2_gi_odd_output;
        break;
    }
    weights = positions == 25 ? kt->winograd_s2_weights : kt->winograd_weights;
  }
};

// Packed as [positions][nKB][nsub][C][KB] (nsub = nr * ns sub-kernels; 1 for 3x3).
template <typename T>
at::Tensor pack_winograd(const Table<T>* kt, const WinogradWeights& ww, const Spec& sp,
                         WinogradKind kind, int64_t KB, bool owned) {
  const WinogradForm<T> form(kt, kind);
  const int64_t K = sp.kpg, C = sp.cpg, nsub = (sp.R - 1) / 2 * ((sp.S - 1) / 2);
  const int64_t nKB = ceil_div(K, KB), plane = winograd_plane(nKB * nsub * C * KB);
  const int64_t P = form.positions;
  at::Tensor buf = owned ? at::empty({P * plane * int64_t(sizeof(T))},
                                     at::TensorOptions().dtype(at::kByte))
                         : workspace<T>(Workspace::winograd_weights, P * plane);
  T* dst = data_of<T>(buf);
  at::Tensor wc;
  bool rotate = ww.rotate;
  if (nsub == 1) {  // read in place, rotated by the kernel
    wc = ww.weight->contiguous();
  } else {
    wc = winograd_sub_kernels(rotate ? ww.weight->flip({2, 3}).transpose(0, 1) : *ww.weight);
    rotate = false;
  }
  const int64_t ls = wc.stride(rotate ? 1 : 0), cs = wc.stride(rotate ? 0 : 1);
  const T* w = wc.const_data_ptr<T>();
  const isa::WinogradWeightArgs a{KB, ls, cs, plane, rotate};
  std::atomic<bool> finite{true};
  for_weight_blocks(nKB, C, [&](int64_t kb, int64_t c0, int64_t c1) {
    for (int64_t j = 0; j < nsub; ++j) {
      if (!form.weights(&a, w + kb * KB * ls + 9 * j, std::min(KB, K - kb * KB), c0, c1,
                        dst + (kb * nsub + j) * C * KB)) {
        finite.store(false, std::memory_order_relaxed);
      }
    }
  });
  return finite.load() ? buf : at::Tensor();
}

// A dilated convolution is dh x dw undilated ones ("phases"): output pixels (a + dh*i,
// b + dw*j) read padded input rows a + dh*(i + r) and columns b + dw*(j + s), every dh-th row
// and dw-th column from (a, b).
struct WinogradPhase {
  int64_t row, col;      // padded coordinates of the phase's first window
  int64_t x_off, y_off;  // element offsets of the phase's input origin and first output
  int64_t OH, OW, TW;    // the phase's output size and tiles per row of tiles
  int64_t first;         // tiles of an image's earlier phases
};

// The output tiles (ot x ot pixels) of every phase of an image; x / y: strides of the input
// rows / columns and of the output (or grad_output) rows / columns.
struct WinogradTiling {
  std::vector<WinogradPhase> phases;
  int64_t per_image = 0, max_tw = 0;
  WinogradTiling(int64_t OH, int64_t OW, int64_t dh, int64_t dw, int64_t xh, int64_t xw,
                 int64_t yh, int64_t yw, int64_t ot = 2) {
    for (int64_t a = 0; a < std::min(dh, OH); ++a) {
      for (int64_t b = 0; b < std::min(dw, OW); ++b) {
        const int64_t ph = ceil_div(OH - a, dh), pw = ceil_div(OW - b, dw);
        phases.push_back({a, b, a * xh + b * xw, a * yh + b * yw, ph, pw, ceil_div(pw, ot),
                          per_image});
        per_image += ceil_div(ph, ot) * ceil_div(pw, ot);
        max_tw = std::max(max_tw, ceil_div(pw, ot));
      }
    }
  }
  // Tiles [t0, t1) (numbered image by image) in runs along one row of tiles: f(index of the
  // run's first tile from t0, image, phase, tile row, tile column, tiles).
  template <typename F>
  void for_runs(int64_t t0, int64_t t1, const F& f) const {
    for (int64_t q = t0; q < t1;) {
      const int64_t n = q / per_image, r = q % per_image;
      size_t p = phases.size() - 1;
      while (phases[p].first > r) --p;
      const WinogradPhase& ph = phases[p];
      const int64_t th = (r - ph.first) / ph.TW, tw = (r - ph.first) % ph.TW;
      const int64_t run = std::min(t1 - q, ph.TW - tw);
      f(q - t0, n, ph, th, tw, run);
      q += run;
    }
  }
};

// The input as the Winograd input transform reads it in place: which elements of a run's
// windows lie inside the input (the others are zero padding, never copied).
struct WinogradWindows {
  int64_t top, left, H, W, dh, dw;  // input rows [top, top + H) x columns [left, left + W)
  WinogradShape shape;
  WinogradWindows(const Spec& sp, int64_t H_, int64_t W_, WinogradKind kind)
      : top(sp.pt), left(sp.pl), H(H_), W(W_), dh(sp.dh), dw(sp.dw), shape(winograd_shape(kind)) {}
  // inside[4] for a run of `tiles` tiles whose first window starts at padded (row, col)
  // (see isa::WinogradInputFn).
  void inside(int64_t row, int64_t col, int64_t tiles, int64_t* in) const {
    positions(row, dh, top, H, shape.window, in);
    positions(col, dw, left, W, shape.step * (tiles - 1) + shape.window, in + 2);
  }
  // Positions k in [0, n) at first + k * step inside [lo, lo + size): [range[0], range[1]).
  static void positions(int64_t first, int64_t step, int64_t lo, int64_t size, int64_t n,
                        int64_t* range) {
    const auto ceil_div_signed = [](int64_t a, int64_t b) {
      return a > 0 ? (a + b - 1) / b : -(-a / b);
    };
    range[0] = std::clamp<int64_t>(ceil_div_signed(lo - first, step), 0, n);
    range[1] = std::clamp<int64_t>(ceil_div_signed(lo + size - first, step), range[0], n);
  }
};

// The per-task copies of the Winograd weight gradients by tasks of tiles (2x2 output tiles,
// 4x4 input windows, undilated): for tiles [a0, a1) of images of per_image tiles in rows of
// TW, f(image, first tile row, last tile row).
template <typename F>
void for_tile_rows(int64_t a0, int64_t a1, int64_t per_image, int64_t TW, const F& f) {
  for (int64_t n = a0 / per_image; n * per_image < a1; ++n) {
    const int64_t lo = std::max(a0, n * per_image) - n * per_image;
    const int64_t hi = std::min(a1, (n + 1) * per_image) - n * per_image;
    f(n, lo / TW, (hi - 1) / TW);
  }
}
// The rows [lo, hi) that output tile rows th0..th1 read: of the input (top padding pt, H rows;
// windows of `window` rows, `step` apart; rows whose windows lie in the padding read none), of
// grad_output (OH rows).
struct RowRange {
  int64_t lo, hi;
};
RowRange input_tile_rows(int64_t pt, int64_t H, int64_t th0, int64_t th1, int64_t step = 2,
                         int64_t window = 4) {
  const int64_t lo = std::clamp<int64_t>(step * th0 - pt, 0, H);
  return {lo, std::clamp<int64_t>(step * th1 + window - pt, lo, H)};
}
RowRange grad_tile_rows(int64_t OH, int64_t th0, int64_t th1) {
  return {2 * th0, std::min(OH, 2 * th1 + 2)};
}
// Consecutive rows of dense NCHW planes are transposed as one longer row while their
// pixel-major copy stays within this: each plane is then read in one run per channel block
// instead of one short piece per row, every row of every plane a new stream for the
// prefetchers (Zen 2, AVX2, medians of interleaved calls in one process, NCHW, row by row ->
// 64 KiB of rows: R50 L3 3x3 forward at 1 thread 25.5-26.3 -> 22.9-23.3 ms, odd tails
// weight gradient at 2 threads 8.3-8.4 -> 6.4-7.3, R50 L2 3x3 forward and input gradient
// 1-8% faster; 128 KiB slower on all three layers tried, 32 KiB on two of them. VGG conv3_2's
// 56 KiB rows go one at a time).
constexpr int64_t kPixelMajorRowsBytes = int64_t(64) << 10;
// Rows r of image n of a, pixel-major (rows of W * C elements) at dst, which moves past them;
// returns where row 0, column 0 of the image would be.
template <typename T>
const T* copy_rows_pixel_major(const Table<T>* kt, const Act<T>& a, int64_t n, RowRange r,
                               T*& dst) {
  const int64_t row = a.W * a.C;
  const int64_t rows_at_once =
      a.sw == 1 && a.sh == a.W
          ? std::max<int64_t>(1, kPixelMajorRowsBytes / (row * int64_t(sizeof(T))))
          : 1;
  for (int64_t i = r.lo; i < r.hi; i += rows_at_once) {
    const int64_t rows = std::min(rows_at_once, r.hi - i);
    transpose_rows(kt, a.p + n * a.sn + i * a.sh, a.sc, a.sw, a.C, rows * a.W,
                   dst + (i - r.lo) * row);
  }
  const T* origin = dst - r.lo * row;
  dst += (r.hi - r.lo) * row;
  return origin;
}

// The output transforms of runs of tiles: written in place into an NHWC output, else into an
// NHWC buffer of one run (buffer_elems) and transposed into the NCHW rows.
template <typename T>
struct WinogradStore {
  const Table<T>* kt;
  isa::WinogradOutputFn<T> output;
  isa::WinogradArgs in_place, buffered;
  int64_t K, Kp, sc, sw;  // output channels (stored / per tile) and strides (channel, column)
  // ot: output pixels per tile (rows and columns)
  WinogradStore(const Table<T>* kt_, isa::WinogradOutputFn<T> output_,
                const isa::WinogradArgs& wa, int64_t run_tiles, int64_t ot, int64_t K_,
                int64_t Kp_, int64_t sc_, int64_t sw_)
      : kt(kt_), output(output_), in_place(wa), buffered(wa), K(K_), Kp(Kp_), sc(sc_),
        sw(sw_) {
    buffered.yh = ot * run_tiles * Kp, buffered.yw = Kp;
    buffered.stream = 0;  // read back at once
  }
  static int64_t buffer_elems(int64_t run_tiles, int64_t ot, int64_t Kp, int64_t sc) {
    return sc == 1 ? 0 : ot * ot * run_tiles * Kp;
  }
  // Tiles [0, run) of products m (tile stride in_place.mt): output rows [0, rows), columns
  // [0, cols) from y.
  void operator()(const T* m, int64_t run, const T* bias, int64_t rows, int64_t cols, T* y,
                  T* buf) const {
    if (sc == 1) {
      output(&in_place, m, run, bias, rows, cols, y);
      return;
    }
    output(&buffered, m, run, bias, rows, cols, buf);
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = buf + r * buffered.yh;
      T* dst = y + r * in_place.yh;
      if (sw == 1) {
        kt->transpose(src, Kp, cols, K, dst, sc);
        continue;
      }
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t p = 0; p < cols; ++p) dst[k * sc + p * sw] = src[p * Kp + k];
      }
    }
  }
};

// The weight panels U of a Winograd convolution on the GEMM kernel, packed (cached).
template <typename T>
struct WinogradPanels {
  isa::DirectFn<T> gemm;
  int64_t positions;
  int64_t K, KB, nKB, Kp, NP, panel, uplane;  // panel: one k-block's [nsub][C][KB]
  at::Tensor U;
  WinogradPanels(const Table<T>* kt, const Spec& sp, const WinogradWeights& ww, WinogradKind kind)
      : positions(winograd_shape(kind).positions), K(sp.kpg) {
    const int64_t nsub = (sp.R - 1) / 2 * ((sp.S - 1) / 2);
    const Spec gemm_sp{16, sp.cpg, sp.kpg, (sp.R - 1) / 2, (sp.S - 1) / 2, 1, 1, 1, 1, 0, 0};
    const DirectTile<T> tile = direct_tile(kt, gemm_sp);
    gemm = tile.fn;
    KB = tile.KB, nKB = ceil_div(sp.kpg, KB), Kp = nKB * KB;
    NP = tile.pixels;
    panel = nsub * sp.cpg * KB, uplane = winograd_plane(nKB * panel);
    U = weight_cache().get(*ww.weight,
                           // (both stride-2 input-gradient forms share one packing)
                           {kPackWinograd, positions, ww.rotate, table_id(kt), KB, sp.kpg,
                            sp.cpg},
                           [&](bool owned) { return pack_winograd(kt, ww, sp, kind, KB, owned); });
  }
  // The GEMMs of a task, one per transform position: products m (planes ms apart, output
  // pixels of ga) of the transformed inputs v (planes vs apart) with U, output pixels
  // [0, pixels). Each runs all k-blocks over a pixel tile before the next tile
  // (DirectArgs::kblocks): each k-block over all the task's tiles set up every tile's
  // pointers nKB times and re-read the tiles' inputs from L2 (Zen 2, AVX2, 2 threads, switched
  // within one process, forward: R50 L4 3x3 channels_last 15.0 -> 13.1 ms, VGG conv3_2 40.9 ->
  // 35.1, R50 L3 3x3 NCHW 9.8 -> 9.0, DeepLab dilated 26.0 -> 23.7, ResNet-18 128 -> 256 at
  // stride 2 9.3 -> 8.4; R50 3x3 s2 channels_last input gradient 17.5 -> 16.3).
  void multiply(const isa::DirectArgs& ga, const T* v, int64_t vs, T* m, int64_t ms,
                int64_t pixels) const {
    const T* up = data_of<T>(U);
    isa::DirectArgs all_blocks = ga;
    all_blocks.kblocks = nKB;
    for (int64_t xi = 0; xi < positions; ++xi) {
      gemm(&all_blocks, v + xi * vs, m + xi * ms, up + xi * uplane, nullptr,
           K - (nKB - 1) * KB, 0, pixels);
    }
  }
  // Tiles per task: as many as the scratch allows (per_tile bytes each). Every task reads all
  // of U: past kWinogradBigWeights (it comes from memory) the scratch may grow 4x, for fewer
  // tasks (R50 L4 3x3, 512 x 512 channels, 16 MiB of U: 0.8x -> 1.1x native channels_last);
  // smaller U keep the L2-sized tasks (1.2x vs 1.1x on R50 3x3), and so do 4 MiB ones (256 x
  // 256 channels): re-read from L3 by more tasks, they cost less than two workers' 8 MiB of
  // scratch, which with U did not fit L3 (Zen 2, AVX2, 2 threads, switched within one process:
  // DeepLab dilated channels_last forward 23.1-27.6 -> 18.1-21.8 ms, input gradient 24.8 ->
  // 20.7; VGG conv3_2 channels_last input gradient 34.2 -> 30.6, R50 L3 3x3 NCHW 12.9 -> 11.4;
  // 1 thread, whose 8 MiB did fit, within noise).
  int64_t max_tiles(int64_t per_tile) const {
    const bool big = U.nbytes() > size_t(kWinogradBigWeights);
    return kWinogradScratchBytes * (big ? 4 : 1) / per_tile;
  }
};

// Undilated, an input that the Stager would copy (not pixel-major: NCHW) is copied by the
// task that transforms it, only the rows of its tiles, pixel-major into its scratch (the
// Winograd forms and their weight gradients): staged a chunk at a time by all threads, the
// copy went to memory or L3 and was read back from there (Zen 2, 2 threads, alternating
// processes, NCHW
// forward: VGG conv1_2 34.9 -> 32.8 ms, R50 3x3 8.5 -> 8.0, R50 3x3 stride 2 13.4 -> 12.1;
// input gradient of VGG conv1_2 38.1-39.0 -> 34.7-35.5; 14 x 14 images the same).
template <typename T>
bool own_input_rows(const Stager<T>& st, const Spec& sp) {
  return !st.direct && sp.dh == 1 && sp.dw == 1;
}
// The own copy of input rows r of image n, moved past in `copy`: the padded origin (input
// coordinate (-pt, -pl)) as the Winograd windows address it.
template <typename T>
const T* own_input_origin(const Table<T>* kt, const Act<T>& x, const Spec& sp, int64_t n,
                          RowRange r, T*& copy) {
  return copy_rows_pixel_major(kt, x, n, r, copy) - sp.pt * x.W * x.C - sp.pl * x.C;
}

// The task loop of the Winograd forward: per chunk of images (staged by st, or all of them
// where the tasks make their own copies), tasks_of(images) tasks handed out dynamically, each
// with per-worker scratch of `scratch` elements; task(first image of the chunk, the staged
// chunk's input origin (null with own copies), task, scratch) transforms, multiplies and
// stores one task and returns false where a transformed input is not finite; then no further
// task starts and the call returns false.
template <typename T, typename Tasks, typename Task>
bool winograd_tasks(Stager<T>& st, bool own_copies, const Act<T>& x, const Spec& sp,
                    int64_t scratch, const Tasks& tasks_of, const Task& task) {
  const int64_t chunk = own_copies ? x.N : st.chunk;
  for (int64_t n0 = 0; n0 < x.N; n0 += chunk) {
    const int64_t nb = std::min(chunk, x.N - n0), ntasks = tasks_of(nb);
    if (!own_copies) st.prepare(n0, nb);
    const int64_t workers = worker_count(ntasks, 1);
    const at::Tensor buf = workspace<T>(Workspace::winograd_scratch, workers * scratch);
    const T* x0 = own_copies ? nullptr : st.origin(sp.pt, sp.pl);
    std::atomic<bool> finite{true};
    dynamic_for_workers(ntasks, workers, [&](int64_t t, int64_t worker) {
      if (!finite.load(std::memory_order_relaxed)) return;
      if (!task(n0, x0, t, data_of<T>(buf) + worker * scratch)) {
        finite.store(false, std::memory_order_relaxed);
      }
    });
    if (!finite.load()) return false;
  }
  return true;
}

template <typename T>
bool run_winograd_nested(const Table<T>* kt, const Act<T>& x, const Spec& sp,
                         const WinogradWeights& ww, const T* bias, const Out<T>& y);

// y = the convolution sp (use_winograd or use_winograd_stride2) of x with weights ww, plus the
// bias (K elements, or null), in the form `kind` (the stride-2 input gradient: x is
// grad_output, sp its rotated-tap convolution whose padding places the first window, see
// grad_input_on). Returns false, with y partly written, where a transformed weight or input is
// not finite: the caller then runs the direct kernels, which keep NaN / inf where F.conv2d has
// them.
template <typename T>
bool run_winograd(const Table<T>* kt, const Act<T>& x, const Spec& sp, const WinogradWeights& ww,
                  const T* bias, const Out<T>& y, WinogradKind kind) {
  if (sp.R != 3 || sp.S != 3) return run_winograd_nested(kt, x, sp, ww, bias, y);
  const int64_t C = sp.cpg, K = sp.kpg, OH = y.H, OW = y.W, dh = sp.dh, dw = sp.dw;
  const WinogradForm<T> form(kt, kind);
  const int64_t P = form.positions, step = form.step, ot = form.out_tile;
  const WinogradPanels<T> wp(kt, sp, ww, kind);
  if (!wp.U.defined()) return false;
  const int64_t Kp = wp.Kp, NP = wp.NP;
  // padding (and past the input, for tiles overhanging an odd phase output size) is not
  // copied: the input transform reads zeros there. NCHW input: the tasks' own copies
  // (own_input_rows), or where dilated, staged in cache-sized chunks of images, read back from
  // cache by the input transform (R50 3x3 stride 2 NCHW forward, 2 threads: 20.6 -> 16.4 ms of
  // CPU per call, 64 channels at stride 1: 13.7 -> 11.5-12.0, smaller images unchanged).
  Stager st(kt, x, {need_of(sp, OH + dh, OW + dw)}, /*unit_channel=*/true, 0,
            /*padding_in_place=*/true, /*cache_min_images=*/1);
  const bool own = own_input_rows(st, sp);
  const WinogradWindows win(sp, x.H, x.W, kind);
  const WinogradTiling tl(OH, OW, dh, dw, st.xh, st.xw, y.sh, y.sw, ot);
  const int64_t per_image = tl.per_image;
  // Tiles per task: as many as the scratch allows, in a number of tasks that the threads share
  // evenly.
  const int64_t tmax = std::max(NP, wp.max_tiles(P * (C + Kp) * int64_t(sizeof(T))));
  // the images of the chunk that starts at image n0
  const auto chunk_images = [&](int64_t n0) { return own ? x.N : std::min(st.chunk, x.N - n0); };
  const int64_t chunk_tiles = chunk_images(0) * per_image;
  const int64_t threads = at::get_num_threads();
  int64_t chunk_tasks = ceil_div(chunk_tiles, tmax);
  if (chunk_tiles >= threads * NP) chunk_tasks = ceil_div(chunk_tasks, threads) * threads;
  // Whole register tiles of pixels per task (the last task takes the rest): 25 tiles ran as
  // five 5-pixel tiles of AVX2's 6, which do 10 multiply-adds per 7 loads instead of 12 per 8
  // (Zen 2, AVX2, 2 threads, switched within one process, channels_last forward: R50 3x3
  // 13.2 -> 12.4 ms, R50 L2 3x3 11.0 -> 10.4, odd tails 6.3 -> 5.7, N=1 latency 2.50 -> 2.37,
  // ResNet-18 128 -> 256 at stride 2 9.2 -> 8.9; rounded down instead, R50 L4 3x3 14.1 ->
  // 16.2).
  const int64_t Tt = ceil_div(ceil_div(chunk_tiles, chunk_tasks), NP) * NP;
  const int64_t row_tiles = std::min(Tt, tl.max_tw);  // tiles of a run (one row of tiles)
  const int64_t vs = winograd_plane(Tt * C), ms = winograd_plane(Tt * Kp);
  // the input rows of tiles [t0, t1) of a chunk's images: f(image, rows)
  const auto for_task_rows = [&](int64_t t0, int64_t t1, const auto& f) {
    for_tile_rows(t0, t1, per_image, tl.max_tw, [&](int64_t n, int64_t th0, int64_t th1) {
      f(n, input_tile_rows(sp.pt, x.H, th0, th1, step, form.window));
    });
  };
  int64_t copy = 0;  // elements of the largest own copy
  for (int64_t t0 = 0; own && t0 < x.N * per_image; t0 += Tt) {
    int64_t elems = 0;
    for_task_rows(t0, std::min(x.N * per_image, t0 + Tt),
                  [&](int64_t, RowRange r) { elems += (r.hi - r.lo) * x.W * C; });
    copy = std::max(copy, elems);
  }
  const int64_t scratch =
      P * (vs + ms) + WinogradStore<T>::buffer_elems(row_tiles, ot, Kp, y.sc) + copy;
  const int64_t block = ww.rotate && kind == WinogradKind::f2x2_3x3
                            ? kWinogradStride1GradInputBlock
                            : kWinogradBlock;
  const isa::DirectArgs ga{C, 1, 1, /*OW=*/Tt, 1, 1, 1, 1, /*xc=*/1, /*xh=*/0, /*xw=*/C,
                           /*yk=*/1, /*yh=*/0, /*yw=*/Kp, /*stream=*/0, block};
  // (outputs of kStreamBytes and more as streaming stores, as the direct kernel's: R50 3x3
  // channels_last, 2 threads, medians of 5 alternating processes 12.7 -> 12.0 ms of CPU)
  const isa::WinogradArgs wa{C, K, dh * st.xh, dw * st.xw, vs, ms, Kp, dh * y.sh, dw * y.sw,
                             stream_output<T>(y.N * y.C * y.H * y.W)};
  const WinogradStore<T> store(kt, form.output, wa, row_tiles, ot, K, Kp, y.sc, y.sw * dw);
  const auto tasks_of = [&](int64_t nb) { return ceil_div(nb * per_image, Tt); };
  return winograd_tasks(st, own, x, sp, scratch, tasks_of, [&](int64_t n0, const T* x0,
                                                               int64_t task, T* v) {
    T* m = v + P * vs;
    T* yb = m + P * ms;
    const int64_t t0 = task * Tt, t1 = std::min(chunk_images(n0) * per_image, t0 + Tt);
    // the input origin of each image of the tiles (own copies after the store's buffer)
    T* copy = yb + WinogradStore<T>::buffer_elems(row_tiles, ot, Kp, y.sc);
    const int64_t n_first = t0 / per_image;
    std::vector<const T*> origin;
    for_task_rows(t0, t1, [&](int64_t n, RowRange r) {
      origin.push_back(own ? own_input_origin(kt, x, sp, n0 + n, r, copy) : x0 + n * st.xn);
    });
    bool ok = true;
    tl.for_runs(t0, t1, [&](int64_t i, int64_t n, const WinogradPhase& ph, int64_t th,
                            int64_t tw, int64_t run) {
      const T* xr = origin[n - n_first] + ph.x_off + step * (th * wa.xh + tw * wa.xw);
      int64_t inside[4];
      win.inside(ph.row + step * th * dh, ph.col + step * tw * dw, run, inside);
      ok &= form.input(&wa, xr, run, inside, v + i * C) != 0;
    });
    if (!ok) return false;
    wp.multiply(ga, v, vs, m, ms, t1 - t0);
    tl.for_runs(t0, t1, [&](int64_t i, int64_t n, const WinogradPhase& ph, int64_t th,
                            int64_t tw, int64_t run) {
      const int64_t rows = std::min(ot, ph.OH - ot * th);
      const int64_t cols = std::min(ot * run, ph.OW - ot * tw);
      store(m + i * Kp, run, bias, rows, cols,
            y.p + (n0 + n) * y.sn + ph.y_off + ot * (th * wa.yh + tw * wa.yw), yb);
    });
    return true;
  });
}

// Kernels larger than 3x3 (R and S odd; stride 1, no dilation): the R x S kernel is nr x ns
// 3x3 sub-kernels at offsets (2a, 2b) (nr = (R - 1) / 2, ns = (S - 1) / 2; see
// winograd_sub_kernels), and sub-kernel (a, b) of output tile (th, tw) reads the window of
// tile (th + a, tw + b). So per transform position the products are an nr x ns convolution
// over the grid of transformed tiles, sum over (a, b, c) of V(th + a, tw + b, c) U(a, b, c),
// which the direct kernel runs with the tiles as pixels: 16 nr ns products per 2x2 tile
// instead of 4 R S (5x5: 64 instead of 100). A task is a block of tile rows of one image: its
// tiles plus nr - 1 rows and ns - 1 columns of neighbours are transformed into per-worker
// scratch.
template <typename T>
bool run_winograd_nested(const Table<T>* kt, const Act<T>& x, const Spec& sp,
                         const WinogradWeights& ww, const T* bias, const Out<T>& y) {
  const int64_t C = sp.cpg, K = sp.kpg, OH = y.H, OW = y.W;
  const int64_t nr = (sp.R - 1) / 2, ns = (sp.S - 1) / 2;
  const WinogradPanels<T> wp(kt, sp, ww, WinogradKind::f2x2_3x3);
  if (!wp.U.defined()) return false;
  const int64_t Kp = wp.Kp;
  Stager st(kt, x, {need_of(sp, OH + 1, OW + 1)}, /*unit_channel=*/true, 0,
            /*padding_in_place=*/true, /*cache_min_images=*/1);  // as run_winograd's
  const bool own = own_input_rows(st, sp);
  const int64_t chunk = own ? x.N : std::min(st.chunk, x.N);
  const WinogradWindows win(sp, x.H, x.W, WinogradKind::f2x2_3x3);
  const int64_t TH = ceil_div(OH, 2), TW = ceil_div(OW, 2), TWx = TW + ns - 1;
  // Rows of tiles per task: as many as the scratch allows, at least one task per thread.
  const int64_t per_row = 16 * (TWx * C + TW * Kp) * int64_t(sizeof(T));
  const int64_t rows_max = std::max<int64_t>(1, wp.max_tiles(per_row) - (nr - 1));
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = std::min(
      TH, std::max(ceil_div(TH, rows_max), ceil_div(threads, chunk)));
  const int64_t RB = ceil_div(TH, blocks), per_image = ceil_div(TH, RB);  // tasks
  const int64_t vs = winograd_plane((RB + nr - 1) * TWx * C), ms = winograd_plane(RB * TW * Kp);
  const int64_t store_elems = WinogradStore<T>::buffer_elems(TW, 2, Kp, y.sc);
  // the input rows that tile rows [th0, th0 + rows) read with their nr - 1 rows of neighbours
  const auto task_rows = [&](int64_t th0, int64_t rows) {
    return input_tile_rows(sp.pt, x.H, th0, th0 + rows + nr - 2);
  };
  const int64_t copy_elems = own ? std::min(x.H, 2 * (RB + nr - 1) + 2) * x.W * C : 0;
  const int64_t scratch = 16 * (vs + ms) + store_elems + copy_elems;
  const isa::DirectArgs ga{C, nr, ns, /*OW=*/TW, 1, 1, 1, 1, /*xc=*/1, /*xh=*/TWx * C,
                           /*xw=*/C, /*yk=*/1, /*yh=*/TW * Kp, /*yw=*/Kp, /*stream=*/0,
                           kWinogradBlock};
  const isa::WinogradArgs wa{C, K, st.xh, st.xw, vs, ms, Kp, y.sh, y.sw,
                             stream_output<T>(y.N * y.C * y.H * y.W)};  // as run_winograd's
  const WinogradStore<T> store(kt, kt->winograd_output, wa, TW, 2, K, Kp, y.sc, y.sw);
  const auto tasks_of = [&](int64_t nb) { return nb * per_image; };
  return winograd_tasks(st, own, x, sp, scratch, tasks_of, [&](int64_t n0, const T* x0,
                                                               int64_t task, T* v) {
    T* m = v + 16 * vs;
    T* yb = m + 16 * ms;
    const int64_t n = task / per_image, th0 = task % per_image * RB;
    const int64_t rows = std::min(RB, TH - th0);
    T* copy = yb + store_elems;
    const T* origin =
        own ? own_input_origin(kt, x, sp, n0 + n, task_rows(th0, rows), copy) : x0 + n * st.xn;
    bool ok = true;
    for (int64_t i = 0; i < rows + nr - 1; ++i) {
      const T* xr = origin + 2 * (th0 + i) * st.xh;
      int64_t inside[4];
      win.inside(2 * (th0 + i), 0, TWx, inside);
      ok &= kt->winograd_input(&wa, xr, TWx, inside, v + i * TWx * C) != 0;
    }
    if (!ok) return false;
    wp.multiply(ga, v, vs, m, ms, rows * TW);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t th = th0 + i;
      store(m + i * TW * Kp, TW, bias, std::min<int64_t>(2, OH - 2 * th), OW,
            y.p + (n0 + n) * y.sn + 2 * th * y.sh, yb);
    }
    return true;
  });
}

// The dense weight-gradient kernel for K output and C input channels (per group): the wide
// tile (4 vectors of output channels x 6 channels) when the output channels fill it, unless
// `split_k` asks for more than one k-block where the wide tile would make just one (see
// grad_weight_on's per-pass grad_output transposes).
template <typename T>
struct GradWeightTiles {
  isa::GradWeightFn<T> fn;
  int64_t KB, nKB, CB, nCB;
  GradWeightTiles(const Table<T>* kt, int64_t K, int64_t C, bool split_k = false) {
    // (see grad_weight_narrow; Zen 2, AVX2, 2 threads: ResNeXt-50's 256 channels in 32 groups
    // over 28 x 28, weight gradient 0.67x -> 0.85x native NCHW, 0.74x -> 1.25x channels_last;
    // stride 2 over 56 x 56 0.66x -> 0.80x and 0.78x -> 0.95x)
    if (K <= kt->vec_lanes && kt->kernel_block > kt->vec_lanes) {
      fn = kt->grad_weight_narrow;
      KB = kt->vec_lanes, nKB = 1;
      CB = kt->gw_narrow_channel_block, nCB = ceil_div(C, CB);
      return;
    }
    const bool wide = kt->gw_wide_kernel_block != kt->kernel_block &&
                      K % kt->gw_wide_kernel_block == 0 &&
                      !(split_k && K == kt->gw_wide_kernel_block && K > kt->kernel_block);
    fn = wide ? kt->grad_weight_wide : kt->grad_weight;
    KB = wide ? kt->gw_wide_kernel_block : kt->kernel_block, nKB = ceil_div(K, KB);
    CB = wide ? kt->gw_wide_channel_block : kt->gw_channel_block, nCB = ceil_div(C, CB);
  }
};

// Weight gradient of the convolution sp (use_winograd, or use_winograd_stride2 over
// channels_last operands: the stride-2 form's 25 positions) into grad_weight (K, C, 3, 3):
// dL/dU[xi] = sum over tiles of (A dy A^T)[xi] (x) (B^T d B)[xi] as 16 (25) GEMMs that sum
// over the tiles (on the dense weight-gradient kernel, tiles as pixels), then
// dL/dg = G^T (dL/dU) G.
// Two schedules of the GEMM sums, both with no cross-thread reduction and the same order for
// any number of threads; both return an undefined tensor where a transformed value is not
// finite (the caller runs the direct kernel):
//  * by tasks of tiles (winograd_gw_by_tiles, where the 16 (25) x C x K accumulators are small):
//    a task transforms its own tiles, a pass of them at a time into per-worker scratch (L2),
//    and sums all 16 (25) GEMMs of the pass into its own accumulators; the tasks' sums are then
//    added in task order. Nothing but the accumulators passes between cores: a transformed
//    block that one core writes and the other reads ran at half speed in some processes
//    (R50 3x3: 6.5-7.5 ms or 11.8-13.6 ms);
//  * by transform position (winograd_gw_by_position, larger accumulators): blocks of tiles
//    are transformed (one parallel region), then every task (transform position, k-block,
//    channel block) sums the block into its own accumulators (a second one), in passes of
//    kPass tiles with the same three-level sums as the direct weight gradient.
constexpr int64_t kWinogradGwBlockBytes = int64_t(16) << 20;  // transformed operands per block
// grad_output rows (a pixel's channels) read in place this far apart or more are copied a
// k-block at a time into a dense block per pass for the weight-gradient tiles (as NCHW
// grad_output always is: dy_per_pass in grad_weight_on): a tile reads one line of every
// pixel, and lines 2 or 4 KiB apart fall into one or two L1 sets (8 ways), so the k-block's
// lines of a pass did not stay in L1 while the channel blocks passed over them (Zen 2, AVX2,
// 2 threads, alternating processes: R50 L3 1x1 (1024 output channels) channels_last weight
// gradient 12.0-12.2 -> 6.6-6.7 ms).
constexpr int64_t kGwPackDyBytes = 1024;
// A dense weight gradient's passes go in at least this many groups where there are as many
// passes (see by_passes in grad_weight_on) ...
constexpr int64_t kGwPassGroups = 16;
// ... and its pass groups are the tasks for weights up to this size, where all groups' sums
// come to at most kGwPassGroupsBytes.
constexpr int64_t kGwByPassesWeightBytes = int64_t(256) << 10;
constexpr int64_t kGwPassGroupsBytes = int64_t(8) << 20;
// ... where at least this many tasks (channel blocks x taps) share a copied block: each copy
// reads its lines from memory with nothing to overlap (R50 1x1 expand channels_last, 11
// channel blocks: 6.8-7.0 -> 9.3-9.4 ms copied), and a prefetch this many pixels ahead.
constexpr int64_t kGwPackDyMinTasks = 32;
constexpr int64_t kGwPackDyAhead = 8;
// The same for the input: a padded copy (pixel-major) whose pixels a tile steps over this many
// bytes apart or more (pixel size x column stride) leaves a cache line between its pixels, so
// that a tile's lines of consecutive pixels (one per pixel) spread over the L1 sets (Zen 2,
// AVX2, 2 threads, alternating processes: R50 L4 3x3 (512 channels) channels_last weight
// gradient 25.7-26.1 -> 21.8-22.6 ms; 1 x 256 x 14 x 14 NCHW 2.6-2.8 -> 2.0-2.1; R50 3x3 s2
// (128 channels, stride 2) NCHW 18.4-18.8 -> 17.2-17.7). With one group the copy is made in
// the tile's channel blocks instead (Stager::cblock): a tile's input over a pass is then one
// dense array, a third of the lines (6 of 16 float32 channels per line on AVX2) in sequential
// order (Zen 2, AVX2, 2 threads, alternating processes, weight gradient: R50 L4 3x3 NCHW
// 18.4-18.9 -> 15.4-16.8 ms, 1 x 256 x 14 x 14 NCHW 1.96-2.16 -> 1.70-1.75; R50 3x3 s2 NCHW,
// whose 12.8 MB input costs more to copy in blocks, the same).
constexpr int64_t kGwPixelGapBytes = 1024;
// A padded copy of NCHW input where each of its elements takes fewer multiply-adds than this
// (K * R * S / strides per group) keeps the planes: one row copy instead of the transposes
// into pixel-major order or channel blocks (two passes). The tiles then read their channels
// from separate planes (a runtime channel stride, slower per multiply-add), which pays where
// the copy is a large part of the work (Zen 2, AVX2, 2 threads, alternating processes, NCHW
// weight gradient, ms, channel blocks / pixel-major -> planes, multiply-adds per element in
// brackets: R50 3x3 s2 (288) 18.6-18.9 -> 15.6-16.1, 256 -> 256 over 28 -> 14 stride 2 (576)
// 17.2-17.9 -> 14.6-16.1, 64 -> 64 over 56 -> 28 stride 2 (144) 4.62-4.67 -> 4.23-4.45; 512 ->
// 512 over 14 -> 7 stride 2 (1152) 17.3-18.6 -> 18.0-20.8, R50 L4 3x3 (4608) 15.0-15.7 ->
// 15.6-18.0, 1 x 256 x 14 x 14 (2304) 1.62-1.65 -> 1.80-1.82). At least one tile's channel
// block per group (fewer: the stem's row runs over pixel-major rows).
constexpr int64_t kGwPlanesWork = 1024;
// ... and an input read in place (1x1 windows) is gathered, a pass at a time, with that gap,
// where the pass's pixels fit this size (Zen 2, AVX2, 2 threads, alternating processes: R50
// downsample (1x1 stride 2, 256 channels) channels_last weight gradient 16.6-16.7 -> 12.8-13.1
// ms, 0.70x -> 0.90-0.93x native).
constexpr int64_t kGwGatherBytes = int64_t(512) << 10;
// ... and a stride-1 1x1 input read in place whose pixels are this many bytes apart or more
// (channels_last, 512 float32 channels and up): the pixels a tile steps over fall into a few
// L1 and L2 sets (a stride of 4 KiB or a multiple: one L1 set, 8 L2 sets), so it is gathered
// too, in passes of what fits kGwGatherBytes (Zen 2, AVX2, 2 threads, alternating processes,
// channels_last: R50 L4 1x1 2048 -> 512 over 7 x 7 10.0 -> 7.7-8.5 ms, 1024 -> 256 over 14 x 14
// 8.8 -> 6.9, 512 -> 128 over 28 x 28 8.1 -> 7.0, 512 -> 2048 over 7 x 7 8.3 -> 7.0; 1 KiB
// apart, R50 L3 1x1 256 -> 1024 over 14 x 14: the same or slower, 6.1 -> 7.0-7.3 ms).
constexpr int64_t kGwGatherStride1Bytes = 2048;
// Short sums over few tiles have little rounding error of their own, and the transforms' then
// show: below a pass of tiles the weight gradient stays direct (R50 L4 3x3, 128 tiles:
// 0.9-1.1x native's max error channels_last through Winograd, 0.6x direct; 2 x 16 x 16 x 16:
// 2x vs 0.5x; from 392 tiles (R50 L3) on, Winograd stays at 0.1-0.8x).
constexpr int64_t kWinogradGwMinTiles = 256;
// The Winograd weight-gradient GEMMs keep the tile's prefetches, though their operands are
// per-pass scratch (Zen 2, AVX2, alternating processes: without them R50 3x3 and L3 3x3 the
// same, R50 3x3 s2 channels_last 1.56x -> 1.49-1.53x native).
constexpr int kWinogradGwPrefetch = isa::kGwPrefetchX | isa::kGwPrefetchDy;
// By tasks of tiles: accumulators of one task at most (16 or 25 x C x K), the transformed
// operands of one pass (kept in L2), tasks per call (every task has accumulators of its own)
// and tiles per task (one sum in order, as a group of passes of the three-level sums).
constexpr int64_t kWinogradGwTaskAccBytes = int64_t(512) << 10;
constexpr int64_t kWinogradGwPassBytes = int64_t(1) << 20;
constexpr int64_t kWinogradGwTasks = 16;
constexpr int64_t kWinogradGwTaskMaxTiles = 4096;
constexpr int64_t kWinogradGwTaskMinTiles = 256;
constexpr int64_t kWinogradGwSumsBytes = int64_t(16) << 20;  // all tasks' (5x5 and larger)
// The larger kernels' accumulators (16 x sub-kernels x C x K) for tasks of tiles: GoogLeNet 5x5
// (1.5 MiB) ran 7.4-8.4 ms by tiles against 7.7-11.2 by transform position (bimodal).
constexpr int64_t kWinogradGwNestedTaskAccBytes = int64_t(2) << 20;

template <typename T>
bool run_winograd_grad_weight_nested(const Table<T>* kt, const Act<T>& x, const Act<T>& d,
                                     const Spec& sp, at::Tensor& grad_weight);

// Adds the accumulators of tasks 1, 2, ... onto task 0's, in task order (tasks `stride`
// elements apart; each [positions][blocks][C][KB], planes `plane` apart, a block being
// (k-block, sub-kernel) with nsub sub-kernels), only the K valid lanes.
template <typename T>
void add_task_sums(T* acc, int64_t tasks, int64_t stride, int64_t positions, int64_t plane,
                   int64_t blocks, int64_t nsub, int64_t C, int64_t KB, int64_t K) {
  at::parallel_for(0, positions * blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t xi = row / blocks, blk = row % blocks;
      const int64_t kvalid = std::min(KB, K - blk / nsub * KB);
      T* a = acc + xi * plane + blk * C * KB;
      for (int64_t t = 1; t < tasks; ++t) {
        const T* s = a + t * stride;
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t k = 0; k < kvalid; ++k) a[c * KB + k] += s[c * KB + k];
        }
      }
    }
  });
}

// One workspace for the Winograd weight gradient's tasks of tiles: every task's accumulators
// (`sums` elements each) and per-worker scratch of `scratch` elements.
template <typename T>
struct TaskBuffers {
  at::Tensor buf;
  T* acc;
  T* scratch0;
  int64_t scratch;
  TaskBuffers(int64_t tasks, int64_t sums, int64_t scratch_) : scratch(scratch_) {
    const int64_t workers = std::max<int64_t>(1, at::get_num_threads());
    buf = workspace<T>(Workspace::winograd_scratch, tasks * sums + workers * scratch);
    acc = data_of<T>(buf);
    scratch0 = acc + tasks * sums;
  }
  T* of_worker(int64_t worker) const { return scratch0 + worker * scratch; }
};

// What both schedules of the 3x3 Winograd weight gradient share: the form (F(2x2, 3x3), or
// stride 2: WinogradKind), the staged input, the pixel-major grad_output, the tiling and the
// accumulator layout [P][nKB][C][KB] (P transform positions, planes `plane` apart).
template <typename T>
struct WinogradGradWeight {
  const Table<T>* kt;
  const Act<T>& x;
  const Act<T>& d;
  const Spec& sp;
  const WinogradForm<T> form;  // 2x2 grad_output tiles; input windows `step` apart
  const int64_t P;             // its transform positions
  const int64_t C, K, OH, OW, dh, dw;
  const GradWeightTiles<T> gwt;
  const int64_t Kp, plane;
  Stager<T> st;
  const WinogradWindows win;
  PixelMajor<T> pm;
  const WinogradTiling tl;
  WinogradGradWeight(const Table<T>* kt_, const Act<T>& x_, const Act<T>& d_, const Spec& sp_)
      : kt(kt_), x(x_), d(d_), sp(sp_), form(kt, winograd_kind(sp)), P(form.positions),
        C(sp.cpg), K(sp.kpg), OH(d.H), OW(d.W), dh(sp.dh),
        dw(sp.dw), gwt(kt, K, C), Kp(gwt.nKB * gwt.KB), plane(winograd_plane(gwt.nKB * C * gwt.KB)),
        st(kt, x, {need_of(sp, OH + dh, OW + dw)}, /*unit_channel=*/true, OH * OW * K,
           /*padding_in_place=*/true),
        win(sp, x.H, x.W, winograd_kind(sp)),
        pm(kt, d, st.chunk),
        tl(OH, OW, dh, dw, st.xh, st.xw, OW * pm.dyp, pm.dyp) {}
  // Transform arguments with transformed planes vs / zs elements apart.
  isa::WinogradArgs args(int64_t vs, int64_t zs) const {
    return {C, K, dh * st.xh, dw * st.xw, vs, zs, Kp, dh * OW * pm.dyp, dw * pm.dyp};
  }
  // Transforms tiles [t0, t1) of the chunk into v / z (tile i at v + i*C, z + i*Kp), image n's
  // input at x_of(n) (padded coordinate (0, 0)), its grad_output at d_of(n); false where a value
  // is not finite.
  template <typename XOf, typename DOf>
  bool transform(const isa::WinogradArgs& wa, const XOf& x_of, const DOf& d_of, int64_t t0,
                 int64_t t1, T* v, T* z) const {
    bool ok = true;
    tl.for_runs(t0, t1, [&](int64_t i, int64_t n, const WinogradPhase& ph, int64_t th,
                            int64_t tw, int64_t run) {
      const int64_t step = form.step;
      const T* xr = x_of(n) + ph.x_off + step * th * wa.xh + step * tw * wa.xw;
      const T* dr = d_of(n) + ph.y_off + 2 * th * wa.yh + 2 * tw * wa.yw;
      int64_t inside[4];
      win.inside(ph.row + step * th * dh, ph.col + step * tw * dw, run, inside);
      ok &= form.input(&wa, xr, run, inside, v + i * C) != 0;
      ok &= form.grad_output(&wa, dr, run, std::min<int64_t>(2, ph.OH - 2 * th),
                             std::min(2 * run, ph.OW - 2 * tw), z + i * Kp) != 0;
    });
    return ok;
  }
  // GEMM tasks [t0, t1), numbered (transform position, k-block, channel block), over np
  // transformed tiles into acc.
  void multiply(const T* v, int64_t vs, const T* z, int64_t zs, int64_t np, T* acc,
                int64_t t0, int64_t t1, int accumulate) const {
    const isa::GradWeightArgs ga{1, np, 1, 1, 1, 1, 0, 1, 0, C, 0, Kp, 1, gwt.KB, kWinogradGwPrefetch};
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t cb = t % gwt.nCB, kb = t / gwt.nCB % gwt.nKB, xi = t / (gwt.nCB * gwt.nKB);
      const int64_t c0 = cb * gwt.CB;
      gwt.fn(&ga, v + xi * vs + c0, z + xi * zs + kb * gwt.KB,
             acc + xi * plane + (kb * C + c0) * gwt.KB, std::min(gwt.CB, C - c0),
             std::min(gwt.KB, K - kb * gwt.KB), 0, 0, accumulate);
    }
  }
  int64_t gemm_tasks() const { return P * gwt.nKB * gwt.nCB; }
  int64_t total_tiles() const { return x.N * tl.per_image; }
  // The input rows that tile rows th0..th1 of an image read.
  RowRange input_rows(int64_t th0, int64_t th1) const {
    return input_tile_rows(sp.pt, x.H, th0, th1, form.step, form.window);
  }
  // Tiles per task of winograd_gw_by_tiles, or 0 where that schedule does not apply.
  int64_t tiles_per_task() const {
    if (P * plane * int64_t(sizeof(T)) > kWinogradGwTaskAccBytes) return 0;
    const int64_t tiles = std::max(ceil_div(total_tiles(), kWinogradGwTasks), kWinogradGwTaskMinTiles);
    return tiles <= kWinogradGwTaskMaxTiles ? tiles : 0;
  }
  // Undilated, an input or grad_output that is not pixel-major (NCHW) is copied so by the
  // task that transforms it, only the rows of its tiles, into per-worker scratch: a copy of
  // the chunk by all threads went to memory and was read back, in part from the other core
  // (R50 3x3 NCHW took 1.3-1.85 ms more than channels_last at 2 threads for 1.1 ms of
  // copying at 1).
  bool own_x() const { return own_input_rows(st, sp); }
  bool own_d() const { return dh == 1 && dw == 1 && !pm.direct; }
  // Images per chunk: all of them where no operand is staged a chunk at a time; then the tasks
  // (and the sums) are the same for every layout.
  int64_t chunk() const {
    return (own_x() || st.direct) && (own_d() || pm.direct) ? x.N : st.chunk;
  }
  // Elements of the own copies of tiles [a0, a1) (numbered from the first of a chunk's images).
  int64_t copy_elems(int64_t a0, int64_t a1) const {
    int64_t elems = 0;
    if (!own_x() && !own_d()) return elems;
    for_tile_rows(a0, a1, tl.per_image, ceil_div(OW, 2), [&](int64_t, int64_t th0, int64_t th1) {
      const RowRange rx = input_rows(th0, th1), rd = grad_tile_rows(OH, th0, th1);
      elems += (own_x() ? (rx.hi - rx.lo) * x.W * C : 0) + (own_d() ? (rd.hi - rd.lo) * OW * K : 0);
    });
    return elems;
  }
  // The operands of tiles [a0, a1) of the chunk of images from n0 (x0: the staged chunk's
  // input origin): own copies made into `copy` where own_x() / own_d(), else the chunk's.
  struct TaskOperands {
    std::vector<const T*> x_own, d_own;  // per image of the tiles: padded (0, 0) / row 0
    int64_t n_first;
    const T* x0;
    const WinogradGradWeight* w;
    const T* x_of(int64_t n) const {
      return w->own_x() ? x_own[n - n_first] : x0 + n * w->st.xn;
    }
    const T* d_of(int64_t n) const {
      return w->own_d() ? d_own[n - n_first] : w->pm.origin + n * w->pm.dyn;
    }
  };
  TaskOperands task_operands(int64_t n0, int64_t a0, int64_t a1, const T* x0, T* copy) const {
    TaskOperands ops{{}, {}, a0 / tl.per_image, x0, this};
    for_tile_rows(a0, a1, tl.per_image, ceil_div(OW, 2), [&](int64_t n, int64_t th0, int64_t th1) {
      if (own_x()) {
        ops.x_own.push_back(own_input_origin(kt, x, sp, n0 + n, input_rows(th0, th1), copy));
      }
      if (own_d()) {
        ops.d_own.push_back(
            copy_rows_pixel_major(kt, d, n0 + n, grad_tile_rows(OH, th0, th1), copy));
      }
    });
    return ops;
  }
};

// Sums in tasks of tiles (see run_winograd_grad_weight): [P][plane] accumulators.
template <typename T>
at::Tensor winograd_gw_by_tiles(WinogradGradWeight<T>& w, int64_t per_task) {
  const int64_t C = w.C, Kp = w.Kp, x_n = w.x.N, P = w.P, per_image = w.tl.per_image;
  const int64_t chunk = w.chunk();
  // a task's tiles in equal passes of at most pass_max tiles
  const int64_t pass_max = std::clamp<int64_t>(
      kWinogradGwPassBytes / (P * (C + Kp) * int64_t(sizeof(T))), 16, 256);
  const int64_t pass = ceil_div(per_task, ceil_div(per_task, pass_max));
  int64_t tasks = 0, copy_max = 0;  // elements of a task's copies
  for (int64_t n0 = 0; n0 < x_n; n0 += chunk) {
    const int64_t tiles = std::min(chunk, x_n - n0) * per_image, ntasks = ceil_div(tiles, per_task);
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t a1 = std::min(tiles, (t + 1) * per_task);
      copy_max = std::max(copy_max, w.copy_elems(t * per_task, a1));
    }
    tasks += ntasks;
  }
  const int64_t vs = winograd_plane(pass * C), zs = winograd_plane(pass * Kp);
  const int64_t sums = P * w.plane;
  const TaskBuffers<T> tb(tasks, sums, P * (vs + zs) + copy_max);
  T* acc = tb.acc;
  const isa::WinogradArgs wa = w.args(vs, zs);
  int64_t first = 0;  // tasks of the chunks before
  for (int64_t n0 = 0; n0 < x_n; n0 += chunk) {
    const int64_t nb = std::min(chunk, x_n - n0), tiles = nb * per_image;
    const int64_t ntasks = ceil_div(tiles, per_task);
    if (!w.own_x()) w.st.prepare(n0, nb);
    if (!w.own_d()) w.pm.prepare(n0, nb);
    const T* x0 = w.own_x() ? nullptr : w.st.origin(w.sp.pt, w.sp.pl);
    std::atomic<bool> finite{true};
    dynamic_for_workers(ntasks, worker_count(ntasks, 1), [&](int64_t task, int64_t worker) {
      if (!finite.load(std::memory_order_relaxed)) return;
      T* v = tb.of_worker(worker);
      T* z = v + P * vs;
      const int64_t a0 = task * per_task, a1 = std::min(tiles, a0 + per_task);
      const auto ops = w.task_operands(n0, a0, a1, x0, z + P * zs);
      const auto x_of = [&](int64_t n) { return ops.x_of(n); };
      const auto d_of = [&](int64_t n) { return ops.d_of(n); };
      for (int64_t t0 = a0; t0 < a1; t0 += pass) {
        const int64_t t1 = std::min(a1, t0 + pass);
        if (!w.transform(wa, x_of, d_of, t0, t1, v, z)) {
          finite.store(false, std::memory_order_relaxed);
          return;
        }
        w.multiply(v, vs, z, zs, t1 - t0, acc + (first + task) * sums, 0, w.gemm_tasks(),
                   t0 > a0);
      }
    });
    if (!finite.load()) return {};
    first += ntasks;
  }
  add_task_sums(acc, tasks, sums, P, w.plane, w.gwt.nKB, 1, C, w.gwt.KB, w.K);
  return tb.buf;
}

// Sums by transform position (see run_winograd_grad_weight): [P][plane] accumulators.
template <typename T>
at::Tensor winograd_gw_by_position(WinogradGradWeight<T>& w) {
  const int64_t C = w.C, Kp = w.Kp, x_n = w.x.N, chunk = w.chunk(), P = w.P;
  constexpr int64_t kPass = 256;  // tiles per kernel call (as the direct weight gradient)
  constexpr int64_t kTransformTiles = 64;  // per transform task
  const int64_t per_tile = P * (C + Kp) * int64_t(sizeof(T));
  const int64_t chunk_tiles = std::min(chunk, x_n) * w.tl.per_image;
  const int64_t Tb = std::min(std::max<int64_t>(1, kWinogradGwBlockBytes / per_tile / kPass) * kPass,
                              chunk_tiles);
  const int64_t vs = winograd_plane(Tb * C), zs = winograd_plane(Tb * Kp);
  int64_t passes = 0, copy_max = 0;  // elements of a transform task's own copies
  for (int64_t n0 = 0; n0 < x_n; n0 += chunk) {
    const int64_t tiles = std::min(chunk, x_n - n0) * w.tl.per_image;
    for (int64_t b0 = 0; b0 < tiles; b0 += Tb) {
      const int64_t b1 = std::min(tiles, b0 + Tb);
      passes += ceil_div(b1 - b0, kPass);
      for (int64_t t0 = b0; t0 < b1; t0 += kTransformTiles) {
        copy_max = std::max(copy_max, w.copy_elems(t0, std::min(b1, t0 + kTransformTiles)));
      }
    }
  }
  const int64_t workers = std::max<int64_t>(1, at::get_num_threads());
  const at::Tensor ops =
      workspace<T>(Workspace::winograd_scratch, P * (vs + zs) + workers * copy_max);
  T* v = data_of<T>(ops);
  T* z = v + P * vs;
  T* copies = z + P * zs;
  const PassSums<T> sums(passes, P * w.plane);
  const isa::WinogradArgs wa = w.args(vs, zs);
  const int64_t KB = w.gwt.KB, nKB = w.gwt.nKB, nCB = w.gwt.nCB, CB = w.gwt.CB;
  int64_t q0 = 0;  // passes before the current block
  for (int64_t n0 = 0; n0 < x_n; n0 += chunk) {
    const int64_t nb = std::min(chunk, x_n - n0), tiles = nb * w.tl.per_image;
    if (!w.own_x()) w.st.prepare(n0, nb);
    if (!w.own_d()) w.pm.prepare(n0, nb);
    const T* x0 = w.own_x() ? nullptr : w.st.origin(w.sp.pt, w.sp.pl);
    for (int64_t b0 = 0; b0 < tiles; b0 += Tb) {
      const int64_t bt = std::min(Tb, tiles - b0), ntasks = ceil_div(bt, kTransformTiles);
      std::atomic<bool> finite{true};
      dynamic_for_workers(ntasks, worker_count(ntasks, 1), [&](int64_t task, int64_t worker) {
        const int64_t t0 = b0 + task * kTransformTiles, t1 = std::min(b0 + bt, t0 + kTransformTiles);
        const auto ops = w.task_operands(n0, t0, t1, x0, copies + worker * copy_max);
        if (!w.transform(wa, [&](int64_t n) { return ops.x_of(n); },
                         [&](int64_t n) { return ops.d_of(n); }, t0, t1, v + (t0 - b0) * C,
                         z + (t0 - b0) * Kp)) {
          finite.store(false, std::memory_order_relaxed);
        }
      });
      if (!finite.load()) return {};
      const int64_t npass = ceil_div(bt, kPass);
      // passes outside: a thread's tasks all use one pass of the block (L2) before the next
      at::parallel_for(0, w.gemm_tasks(), 1, [&](int64_t b, int64_t e) {
        for (int64_t p = 0; p < npass; ++p) {
          const int64_t q = q0 + p, p0 = p * kPass, np = std::min(kPass, bt - p0);
          for (int64_t t = b; t < e; ++t) {
            w.multiply(v + p0 * C, vs, z + p0 * Kp, zs, np, sums.target(), t, t + 1,
                       sums.accumulate(q));
            const int64_t cb = t % nCB, kb = t / nCB % nKB, xi = t / (nCB * nKB);
            const int64_t c0 = cb * CB;
            sums.end_pass(q, xi * w.plane + (kb * C + c0) * KB, std::min(CB, C - c0), KB,
                          std::min(KB, w.K - kb * KB));
          }
        }
      });
      q0 += npass;
    }
  }
  return sums.acc;
}

template <typename T>
bool run_winograd_grad_weight(const Table<T>* kt, const Act<T>& x, const Act<T>& d,
                              const Spec& sp, at::Tensor& grad_weight) {
  if (sp.R != 3 || sp.S != 3) return run_winograd_grad_weight_nested(kt, x, d, sp, grad_weight);
  WinogradGradWeight<T> w(kt, x, d, sp);
  const int64_t per_task = w.tiles_per_task();
  const at::Tensor sums = per_task > 0 ? winograd_gw_by_tiles(w, per_task)
                                       : winograd_gw_by_position(w);
  if (!sums.defined()) return false;
  const int64_t C = w.C, K = w.K, KB = w.gwt.KB, nKB = w.gwt.nKB;
  // G^T (dL/dU) G into the weight (taps contiguous, else through a contiguous copy)
  const bool taps_dense = grad_weight.stride(3) == 1 && grad_weight.stride(2) == 3;
  at::Tensor out = taps_dense ? grad_weight : at::empty({K, C, 3, 3}, options_of<T>());
  T* gw = out.mutable_data_ptr<T>();
  const T* acc = static_cast<const T*>(sums.data_ptr());
  const isa::WinogradWeightArgs wg{KB, out.stride(0), out.stride(1), w.plane, 0};
  for_weight_blocks(nKB, C, [&](int64_t kb, int64_t c0, int64_t c1) {
    w.form.weight_grad(&wg, acc + kb * C * KB, std::min(KB, K - kb * KB), c0, c1,
                       gw + kb * KB * wg.ls);
  });
  if (!taps_dense) grad_weight.copy_(out);
  return true;
}

// The weight gradient of run_winograd_nested: per transform position and sub-kernel (a, b),
// dL/dU(a, b) = sum over tiles (i, j) of (A dy A^T)(i, j) (x) (B^T d B)(i + a, j + b), on the
// weight-gradient kernel with tiles as pixels and sub-kernels as taps; then
// dL/dg = G^T (dL/dU) G per sub-kernel, each tap taken from the sub-kernel that owns it. The
// sums are scheduled as run_winograd_grad_weight's, a unit of tiles being whole rows of tiles
// of one image (with the nr - 1 / ns - 1 neighbouring rows / columns of input tiles they read):
//  * by tasks of tiles (winograd_gw_nested_by_tiles): a task transforms its own units, one at
//    a time into per-worker scratch, and sums them into accumulators of its own;
//  * by transform position (winograd_gw_nested_by_position): blocks of whole images are
//    transformed first, then every task (transform position, sub-kernel, k-block, channel
//    block) sums the block's passes into its own accumulators.
template <typename T>
struct WinogradNestedGradWeight {
  const Table<T>* kt;
  const Act<T>& x;
  const Act<T>& d;
  const Spec& sp;
  const int64_t C, K, OH, OW, nr, ns, nsub;
  const GradWeightTiles<T> gwt;
  const int64_t Kp, plane;  // accumulators [16][nKB][nsub][C][KB], planes `plane` apart
  Stager<T> st;
  const WinogradWindows win;
  PixelMajor<T> pm;
  const int64_t TH, TW, TWx;  // output tile rows / columns, input tile columns
  WinogradNestedGradWeight(const Table<T>* kt_, const Act<T>& x_, const Act<T>& d_,
                           const Spec& sp_)
      : kt(kt_), x(x_), d(d_), sp(sp_), C(sp.cpg), K(sp.kpg), OH(d.H), OW(d.W), nr((sp.R - 1) / 2),
        ns((sp.S - 1) / 2), nsub(nr * ns), gwt(kt, K, C), Kp(gwt.nKB * gwt.KB),
        plane(winograd_plane(gwt.nKB * nsub * C * gwt.KB)),
        st(kt, x, {need_of(sp, OH + 1, OW + 1)}, /*unit_channel=*/true, OH * OW * K,
           /*padding_in_place=*/true),
        win(sp, x.H, x.W, WinogradKind::f2x2_3x3),
        pm(kt, d, st.chunk),
        TH(ceil_div(OH, 2)), TW(ceil_div(OW, 2)), TWx(TW + ns - 1) {}
  isa::WinogradArgs args(int64_t vs, int64_t zs) const {
    return {C, K, st.xh, st.xw, vs, zs, Kp, OW * pm.dyp, pm.dyp};
  }
  // Input tile row th of an image (input origin xo: padded coordinate (0, 0); grad_output
  // origin dn) into v and, unless z is null, grad_output tile row th (< TH) into z; false
  // where a value is not finite.
  bool transform_row(const isa::WinogradArgs& wa, const T* xo, const T* dn, int64_t th, T* v,
                     T* z) const {
    int64_t inside[4];
    win.inside(2 * th, 0, TWx, inside);
    bool ok = kt->winograd_input(&wa, xo + 2 * th * wa.xh, TWx, inside, v) != 0;
    if (z) {
      ok &= kt->winograd_grad_output(&wa, dn + 2 * th * wa.yh, TW,
                                     std::min<int64_t>(2, OH - 2 * th), OW, z) != 0;
    }
    return ok;
  }
  int64_t gemm_tasks() const { return 16 * nsub * gwt.nKB * gwt.nCB; }
  // Accumulator offset of GEMM task t, numbered (position, sub-kernel, k-block, channel block).
  int64_t offset(int64_t t) const {
    const int64_t cb = t % gwt.nCB, kb = t / gwt.nCB % gwt.nKB, j = t / (gwt.nCB * gwt.nKB) % nsub;
    const int64_t xi = t / (gwt.nCB * gwt.nKB * nsub);
    return xi * plane + ((kb * nsub + j) * C + cb * gwt.CB) * gwt.KB;
  }
  // GEMM task t over `rows` rows of tiles: v holds their rows + nr - 1 rows of TWx input
  // tiles, z their rows of TW grad_output tiles.
  void multiply(const T* v, int64_t vs, const T* z, int64_t zs, int64_t rows, T* acc, int64_t t,
                int accumulate) const {
    const isa::GradWeightArgs ga{rows, TW, 1, 1, 1, 1, 0, 1, TWx * C, C, 0, Kp, 1, gwt.KB,
                                 kWinogradGwPrefetch};
    const int64_t cb = t % gwt.nCB, kb = t / gwt.nCB % gwt.nKB, j = t / (gwt.nCB * gwt.nKB) % nsub;
    const int64_t xi = t / (gwt.nCB * gwt.nKB * nsub), c0 = cb * gwt.CB;
    gwt.fn(&ga, v + xi * vs + c0, z + xi * zs + kb * gwt.KB, acc + offset(t),
           std::min(gwt.CB, C - c0), std::min(gwt.KB, K - kb * gwt.KB), j / ns, j % ns,
           accumulate);
  }
};

// Sums by transform position (see WinogradNestedGradWeight): [16][plane] accumulators.
template <typename T>
at::Tensor winograd_gw_nested_by_position(WinogradNestedGradWeight<T>& w) {
  const int64_t C = w.C, Kp = w.Kp, TH = w.TH, TW = w.TW, TWx = w.TWx, nr = w.nr;
  const int64_t x_n = w.x.N, chunk = w.st.chunk;
  const int64_t VI = (TH + nr - 1) * TWx, ZI = TH * TW;  // transformed tiles per image
  constexpr int64_t kPass = 256;  // tiles per kernel call, at least one row of them
  const int64_t pass_rows = std::max<int64_t>(1, kPass / TW);
  const int64_t per_image = 16 * (VI * C + ZI * Kp) * int64_t(sizeof(T));
  const int64_t block = std::clamp<int64_t>(kWinogradGwBlockBytes / per_image, 1,
                                            std::min(chunk, x_n));  // images
  const int64_t vs = winograd_plane(block * VI * C), zs = winograd_plane(block * ZI * Kp);
  const at::Tensor ops = workspace<T>(Workspace::winograd_scratch, 16 * (vs + zs));
  T* v = data_of<T>(ops);
  T* z = v + 16 * vs;
  const int64_t passes_per_image = ceil_div(TH, pass_rows);
  const PassSums<T> sums(x_n * passes_per_image, 16 * w.plane);
  const isa::WinogradArgs wa = w.args(vs, zs);
  const int64_t KB = w.gwt.KB, CB = w.gwt.CB, nCB = w.gwt.nCB, nKB = w.gwt.nKB;
  for (int64_t n0 = 0; n0 < x_n; n0 += chunk) {
    const int64_t nb = std::min(chunk, x_n - n0);
    w.st.prepare(n0, nb);
    w.pm.prepare(n0, nb);
    const T* x0 = w.st.origin(w.sp.pt, w.sp.pl);
    for (int64_t b0 = 0; b0 < nb; b0 += block) {
      const int64_t bn = std::min(block, nb - b0);
      std::atomic<bool> finite{true};
      // one task per image and row of input tiles (the last TH of them: grad_output too)
      const int64_t rows_per_image = TH + nr - 1;
      dynamic_for(bn * rows_per_image, 1, [&](int64_t task) {
        const int64_t i = task / rows_per_image, th = task % rows_per_image;
        if (!w.transform_row(wa, x0 + (b0 + i) * w.st.xn, w.pm.origin + (b0 + i) * w.pm.dyn,
                             th, v + (i * VI + th * TWx) * C,
                             th < TH ? z + (i * ZI + th * TW) * Kp : nullptr)) {
          finite.store(false, std::memory_order_relaxed);
        }
      });
      if (!finite.load()) return {};
      // passes outside: a thread's tasks all use one pass of the block (L2) before the next
      at::parallel_for(0, w.gemm_tasks(), 1, [&](int64_t b, int64_t e) {
        for (int64_t p = 0; p < bn * passes_per_image; ++p) {
          const int64_t i = p / passes_per_image, r0 = p % passes_per_image * pass_rows;
          const int64_t q = (n0 + b0) * passes_per_image + p;
          const T* vp = v + (i * VI + r0 * TWx) * C;
          const T* zp = z + (i * ZI + r0 * TW) * Kp;
          for (int64_t t = b; t < e; ++t) {
            w.multiply(vp, vs, zp, zs, std::min(pass_rows, TH - r0), sums.target(), t,
                       sums.accumulate(q));
            const int64_t cb = t % nCB, kb = t / nCB % nKB;
            sums.end_pass(q, w.offset(t), std::min(CB, C - cb * CB), KB,
                          std::min(KB, w.K - kb * KB));
          }
        }
      });
    }
  }
  return sums.acc;
}

// Sums by tasks of tiles (see WinogradNestedGradWeight): [16][plane] accumulators. Units are
// `unit_rows` rows of tiles of one image; task t sums units [t U / tasks, (t + 1) U / tasks).
// An NCHW input or grad_output is copied pixel-major per unit, only the rows it reads (as
// winograd_gw_by_tiles'), so all images are one chunk.
template <typename T>
at::Tensor winograd_gw_nested_by_tiles(WinogradNestedGradWeight<T>& w, int64_t unit_rows,
                                       int64_t tasks) {
  const int64_t C = w.C, K = w.K, Kp = w.Kp, TH = w.TH, TW = w.TW, TWx = w.TWx, nr = w.nr;
  const int64_t x_n = w.x.N, per_image = ceil_div(TH, unit_rows), units = x_n * per_image;
  const bool own_x = !w.st.direct, own_d = !w.pm.direct;
  const auto first_unit = [&](int64_t t) { return t * units / tasks; };
  const int64_t vs = winograd_plane((unit_rows + nr - 1) * TWx * C);
  const int64_t zs = winograd_plane(unit_rows * TW * Kp);
  // at most a unit's input rows (its tile rows and nr - 1 more) and grad_output rows
  const int64_t copy = (own_x ? std::min(w.x.H, 2 * (unit_rows + nr - 1) + 2) * w.x.W * C : 0) +
                       (own_d ? std::min(w.OH, 2 * unit_rows) * w.OW * K : 0);
  const int64_t sums = 16 * w.plane;
  const TaskBuffers<T> tb(tasks, sums, 16 * (vs + zs) + copy);
  T* acc = tb.acc;
  const isa::WinogradArgs wa = w.args(vs, zs);
  if (!own_x) w.st.prepare(0, x_n);
  if (!own_d) w.pm.prepare(0, x_n);
  const T* x0 = own_x ? nullptr : w.st.origin(w.sp.pt, w.sp.pl);
  std::atomic<bool> finite{true};
  dynamic_for_workers(tasks, worker_count(tasks, 1), [&](int64_t t, int64_t worker) {
    if (!finite.load(std::memory_order_relaxed)) return;
    T* v = tb.of_worker(worker);
    T* z = v + 16 * vs;
    for (int64_t u = first_unit(t); u < first_unit(t + 1); ++u) {
      const int64_t n = u / per_image, r0 = u % per_image * unit_rows;
      const int64_t rows = std::min(unit_rows, TH - r0);
      // image n's input at padded coordinate (0, 0) (the unit's tile rows and the nr - 1 below
      // them), its grad_output
      T* copy = z + 16 * zs;
      const T* xo = own_x ? own_input_origin(w.kt, w.x, w.sp, n,
                                             input_tile_rows(w.sp.pt, w.x.H, r0, r0 + rows + nr - 2),
                                             copy)
                          : x0 + n * w.st.xn;
      const T* dn = own_d ? copy_rows_pixel_major(w.kt, w.d, n, grad_tile_rows(w.OH, r0, r0 + rows - 1),
                                                  copy)
                          : w.pm.origin + n * w.pm.dyn;
      for (int64_t r = 0; r < rows + nr - 1; ++r) {
        if (!w.transform_row(wa, xo, dn, r0 + r, v + r * TWx * C,
                             r < rows ? z + r * TW * Kp : nullptr)) {
          finite.store(false, std::memory_order_relaxed);
          return;
        }
      }
      for (int64_t g = 0; g < w.gemm_tasks(); ++g) {
        w.multiply(v, vs, z, zs, rows, acc + t * sums, g, u > first_unit(t));
      }
    }
  });
  if (!finite.load()) return {};
  add_task_sums(acc, tasks, sums, 16, w.plane, w.gwt.nKB * w.nsub, w.nsub, C, w.gwt.KB, w.K);
  return tb.buf;
}

template <typename T>
bool run_winograd_grad_weight_nested(const Table<T>* kt, const Act<T>& x, const Act<T>& d,
                                     const Spec& sp, at::Tensor& grad_weight) {
  WinogradNestedGradWeight<T> w(kt, x, d, sp);
  const int64_t C = w.C, K = w.K, R = sp.R, S = sp.S, nr = w.nr, ns = w.ns, nsub = w.nsub;
  const int64_t KB = w.gwt.KB, nKB = w.gwt.nKB, plane = w.plane;
  // by tasks of tiles where a task's accumulators fit kWinogradGwNestedTaskAccBytes: units of
  // equal rows of tiles, about two passes of transformed operands each, and at least
  // kWinogradGwTaskMinTiles tiles per task
  const int64_t acc_bytes = 16 * plane * int64_t(sizeof(T));
  const int64_t per_row = 16 * (w.TWx * C + w.TW * w.Kp) * int64_t(sizeof(T));
  const int64_t rows_max = std::max<int64_t>(1, 2 * kWinogradGwPassBytes / per_row - (nr - 1));
  const int64_t unit_rows = ceil_div(w.TH, ceil_div(w.TH, rows_max));
  const int64_t tasks = std::min({kWinogradGwTasks, x.N * w.TH * w.TW / kWinogradGwTaskMinTiles,
                                  x.N * ceil_div(w.TH, unit_rows), kWinogradGwSumsBytes / acc_bytes});
  const at::Tensor sums = acc_bytes <= kWinogradGwNestedTaskAccBytes && tasks >= 2
                              ? winograd_gw_nested_by_tiles(w, unit_rows, tasks)
                              : winograd_gw_nested_by_position(w);
  if (!sums.defined()) return false;
  const T* acc = static_cast<const T*>(sums.data_ptr());
  // G^T (dL/dU) G per sub-kernel, then every tap from the sub-kernel that owns it
  at::Tensor sub = at::empty({K, C, nr, ns, 3, 3}, options_of<T>());
  T* sp_out = sub.mutable_data_ptr<T>();
  const isa::WinogradWeightArgs wg{KB, sub.stride(0), sub.stride(1), plane, 0};
  for_weight_blocks(nKB, C, [&](int64_t kb, int64_t c0, int64_t c1) {
    for (int64_t j = 0; j < nsub; ++j) {
      kt->winograd_weight_grad(&wg, acc + (kb * nsub + j) * C * KB, std::min(KB, K - kb * KB),
                               c0, c1, sp_out + kb * KB * wg.ls + 9 * j);
    }
  });
  // tap t of a kernel axis lies in sub-kernel t == 0 ? 0 : (t - 1) / 2 (its first owner)
  const auto sub_of = [](int64_t t) { return t == 0 ? int64_t(0) : (t - 1) / 2; };
  const int64_t s0 = grad_weight.stride(0), s1 = grad_weight.stride(1),
                s2 = grad_weight.stride(2), s3 = grad_weight.stride(3);
  T* gw = grad_weight.mutable_data_ptr<T>();
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      for (int64_t c = 0; c < C; ++c) {
        const T* src = sp_out + k * wg.ls + c * wg.cs;
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t s = 0; s < S; ++s) {
            const int64_t a = sub_of(r), b = sub_of(s);
            gw[k * s0 + c * s1 + r * s2 + s * s3] =
                src[(a * ns + b) * 9 + (r - 2 * a) * 3 + (s - 2 * b)];
          }
        }
      }
    }
  });
  return true;
}

// The grouped kernel applies: a real grouping with few output channels per group that tile
// the vector, and no more input than output channels per group.
template <typename T>
bool use_grouped(const Table<T>* kt, int64_t G, int64_t cpg, int64_t kpg) {
  return kt->grouped && G > 1 && kpg < kt->vec_lanes && kt->vec_lanes % kpg == 0 &&
         cpg <= kpg && !(cpg == 1 && kpg == 1);
}


// ---- Weight gradient of 1x1 stride-1 convolutions over NCHW planes (both operands with
// the pixels of a channel contiguous), vectorised along the pixels (isa grad_weight_planes):
// it reads both operands in place, where the channel-vectorised kernel needs grad_output
// transposed to pixel-major and broadcasts the input from 12 planes at a time (R50 1x1
// 64 -> 256 NCHW: 0.65x native). A pass is about kPlanesPassBytes of every channel row (a
// range of one image's pixels, or several small images); a task owns a block of output x
// input channels of one group and runs every pass over it; passes go through PassSums. The
// kernel keeps a tile's input rows of a pass in L1 while the task's grad_output rows pass,
// so those rows (kPlanesTaskTiles output tiles) stay in L1 too.
constexpr int64_t kPlanesPassBytes = 2048;   // per channel row and pass
constexpr int64_t kPlanesLaneChain = 64;     // at most, products per lane and pass (accuracy:
                                             // a lane sums its pixels of a pass in one chain)
constexpr int64_t kPlanesTaskChannels = 64;  // input channels per task (their rows stay in L2)
constexpr int64_t kPlanesTaskTiles = 2;      // output tiles per task
// Below: the channel-vectorised kernel wins (short planes: masked lanes, few vectors per lane
// sum). Interleaved, 2 threads, channels 256 -> 1024 / 1024 -> 256 over 8 x 14 x 14 (196
// pixels): 0.83-0.86x -> 0.95-1.0x / 0.94x -> 1.09x of native by the channel kernel; over
// 20 x 20 and 24 x 24 the planes stay ahead (2.0x vs 1.9x).
constexpr int64_t kPlanesMinPixels = 256;

template <typename T>
bool use_planes_grad_weight(const Spec& sp, const Act<T>& x, const Act<T>& d) {
  return sp.R == 1 && sp.S == 1 && sp.sh == 1 && sp.sw == 1 && sp.pt == 0 && sp.pl == 0 &&
         d.H == x.H && d.W == x.W && dense_planes(x) && dense_planes(d) &&
         x.H * x.W >= kPlanesMinPixels;
}

template <typename T>
void run_planes_grad_weight(const Table<T>* kt, const Act<T>& x, const Act<T>& d,
                            const Spec& sp, at::Tensor& grad_weight) {
  const int64_t VL = kt->vec_lanes, P = x.H * x.W, N = x.N, G = sp.G, cpg = sp.cpg,
                kpg = sp.kpg;
  const int64_t L = std::min(kPlanesPassBytes / int64_t(sizeof(T)), kPlanesLaneChain * VL);
  int64_t parts = 1, part = P, images_per_pass = 1;
  if (P > L) {  // ranges of one image of whole vectors, about L pixels each
    part = ceil_div(ceil_div(P, ceil_div(P, L)), VL) * VL;
    parts = ceil_div(P, part);
  } else {
    images_per_pass = std::max<int64_t>(1, L / P);
  }
  const int64_t passes = parts > 1 ? N * parts : ceil_div(N, images_per_pass);
  const int64_t task_outputs = kPlanesTaskTiles * kt->planes_gw_kernel_block;
  const int64_t nCT = ceil_div(cpg, kPlanesTaskChannels), nKT = ceil_div(kpg, task_outputs);
  const int64_t ntasks = G * nCT * nKT;  // (group, input block, output block): consecutive
                                         // tasks share the input rows
  const PassSums<T> sums(passes, G * kpg * cpg);
  at::parallel_for(0, ntasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t q = 0; q < passes; ++q) {
      int64_t n = q * images_per_pass, p0 = 0, len = P;
      if (parts > 1) n = q / parts, p0 = q % parts * part, len = std::min(part, P - p0);
      const isa::PlanesGradWeightArgs a{len, std::min(images_per_pass, N - n), x.sn, x.sc,
                                        d.sn, d.sc, cpg};
      for (int64_t t = b; t < e; ++t) {
        const int64_t kb = t % nKT, cb = t / nKT % nCT, gr = t / (nKT * nCT);
        const int64_t k0 = kb * task_outputs, c0 = cb * kPlanesTaskChannels;
        const int64_t nk = std::min(task_outputs, kpg - k0),
                      nc = std::min(kPlanesTaskChannels, cpg - c0);
        const int64_t off = (gr * kpg + k0) * cpg + c0;
        kt->grad_weight_planes(&a, x.p + n * x.sn + (gr * cpg + c0) * x.sc + p0,
                               d.p + n * d.sn + (gr * kpg + k0) * d.sc + p0,
                               sums.target() + off, nk, nc, sums.accumulate(q));
        sums.end_pass(q, off, nk, cpg, nc);
      }
    }
  });
  grad_weight.copy_(sums.acc.view(grad_weight.sizes()));  // [K][cpg] into the weight's strides
}

// Depthwise weight gradient over channel vectors (channels_last and staged inputs), images of
// kPartPixels and more: a task takes every channel vector of a part of the rows whose input
// rows fit kDwPartInputBytes, instead of one cache line of channels of a larger part, which
// read one line in every C / 16 of each pixel at a time (MBv2 dw s2, 96 x 112 x 112
// channels_last, 2 threads, alternating processes: 3.4-4.2 -> 2.6-3.1 ms; MBv2 dw 144 x
// 56 x 56 the same). Parts of at least kDwPartMinPixels bound their sums' slots to a few
// percent of the output, and with fewer than kDwMinParts parts (few images and rows) the
// tasks stay one cache line of channels of the earlier parts.
constexpr int64_t kDwPartInputBytes = int64_t(384) << 10;
constexpr int64_t kDwPartMinPixels = 256;
constexpr int64_t kDwMinParts = 16;

// Depthwise weight gradient of channel c, one product per valid window position in order.
// For the channels whose vectorised sums are not finite, where the kernels multiplied
// values F.conv2d has no product for (NaN where one side is not finite): the NCHW plane
// kernel's lanes past the output row multiply a zero grad_output by staged inputs (real ones
// where the right padding is narrower than the window), and the channel-vectorised kernel's
// small images multiply grad_output by their zero border (isa dw_gw_3x3_padded).
template <typename T>
void depthwise_grad_weight_exact(const Act<T>& x, const Act<T>& d, const Spec& sp, int64_t c,
                                 at::Tensor& grad_weight) {
  T* gw = grad_weight.mutable_data_ptr<T>();
  for (int64_t r = 0; r < sp.R; ++r) {
    for (int64_t s = 0; s < sp.S; ++s) {
      T sum = 0;
      for (int64_t n = 0; n < x.N; ++n) {
        for (int64_t oh = 0; oh < d.H; ++oh) {
          const int64_t ih = oh * sp.sh - sp.pt + r * sp.dh;
          if (ih < 0 || ih >= x.H) continue;
          for (int64_t ow = 0; ow < d.W; ++ow) {
            const int64_t iw = ow * sp.sw - sp.pl + s * sp.dw;
            if (iw < 0 || iw >= x.W) continue;
            sum += d.p[n * d.sn + c * d.sc + oh * d.sh + ow * d.sw] *
                   x.p[n * x.sn + c * x.sc + ih * x.sh + iw * x.sw];
          }
        }
      }
      gw[c * grad_weight.stride(0) + r * grad_weight.stride(2) + s * grad_weight.stride(3)] = sum;
    }
  }
}

// Stores channels' weight gradients from the kernels' sums, sum_of(t) for taps t = r*S + s;
// a channel is recomputed by depthwise_grad_weight_exact where a sum is not finite. The
// tensor's pointer and strides are read once, and no index is divided per tap: read per tap
// (calls out of line) they took a fifth of a small layer's time (MBv2 dw 960 x 7 x 7
// channels_last weight gradient, whose 8640 taps are stored by one thread).
template <typename T>
struct DepthwiseGradWeightStore {
  const Act<T>& x;
  const Act<T>& d;
  const Spec& sp;
  at::Tensor& grad_weight;
  T* gw;
  int64_t sc, sr, ss;  // grad_weight's strides (output channel, row, column)
  DepthwiseGradWeightStore(const Act<T>& x_, const Act<T>& d_, const Spec& sp_, at::Tensor& gw_)
      : x(x_), d(d_), sp(sp_), grad_weight(gw_), gw(gw_.mutable_data_ptr<T>()),
        sc(gw_.stride(0)), sr(gw_.stride(2)), ss(gw_.stride(3)) {}
  template <typename SumOf>
  void operator()(int64_t c, const SumOf& sum_of) const {
    bool finite = true;
    for (int64_t r = 0, t = 0; r < sp.R; ++r) {
      for (int64_t s = 0; s < sp.S; ++s, ++t) {
        const T sum = sum_of(t);
        finite = finite && std::isfinite(sum);
        gw[c * sc + r * sr + s * ss] = sum;
      }
    }
    if (!finite) depthwise_grad_weight_exact(x, d, sp, c, grad_weight);
  }
};

// Taps r in [0, R) that reach input rows of phase a (ih = a + i*stride): (a + pad - r*dil)
// divisible by stride.
std::vector<int64_t> phase_taps(int64_t a, int64_t pad, int64_t R, int64_t dil,
                                int64_t stride) {
  std::vector<int64_t> taps;
  for (int64_t r = 0; r < R; ++r) {
    int64_t v = (a + pad - r * dil) % stride;
    if (v < 0) v += stride;
    if (v == 0) taps.push_back(r);
  }
  return taps;
}

// Phase (a, b) of grad_input (rows a + i*stride_h, columns b + j*stride_w) as a stride-1
// convolution over grad_output: the taps that reach it (ascending; none: the phase is zero),
// grad_output's row / column q of the phase's first output and first rotated tap (negative:
// padding in front) and the dilation between the phase's taps.
struct GradInputPhase {
  std::vector<int64_t> rows, cols;
  int64_t q_r = 0, q_s = 0, dil_r = 1, dil_s = 1;
  bool empty() const { return rows.empty() || cols.empty(); }
};
GradInputPhase grad_input_phase(const Geometry& g, int64_t a, int64_t b) {
  GradInputPhase ph;
  ph.rows = phase_taps(a, g.pad_top, g.kernel_height, g.dilation_h, g.stride_h);
  ph.cols = phase_taps(b, g.pad_left, g.kernel_width, g.dilation_w, g.stride_w);
  if (ph.empty()) return ph;
  ph.q_r = (a + g.pad_top - ph.rows.back() * g.dilation_h) / g.stride_h;
  ph.q_s = (b + g.pad_left - ph.cols.back() * g.dilation_w) / g.stride_w;
  if (ph.rows.size() > 1) ph.dil_r = (ph.rows[1] - ph.rows[0]) * g.dilation_h / g.stride_h;
  if (ph.cols.size() > 1) ph.dil_s = (ph.cols[1] - ph.cols[0]) * g.dilation_w / g.stride_w;
  return ph;
}

bool dims_ok(const Geometry& g) {
  return g.in_channels_per_group() > 0 && g.out_channels_per_group() > 0 && g.batch > 0 &&
         g.out_height > 0 && g.out_width > 0 && g.in_height > 0 && g.in_width > 0;
}

// The kernels to use for an op on these tensors (all of element type T), or null when no fast
// path applies.
template <typename T>
const Table<T>* eligible(const Geometry& g, std::initializer_list<const at::Tensor*> tensors) {
  const Table<T>* kt = current<T>();
  if (!kt || !dims_ok(g)) return nullptr;
  for (const at::Tensor* t : tensors) {
    if (t && t->scalar_type() != c10::CppTypeToScalarType<T>::value) return nullptr;
  }
  return kt;
}

// op(kt) with the kernels of the operands' element type (all float32 or all float64; null
// entries are absent operands), or false where no fast path applies.
template <typename Op>
bool on_kernels(const Geometry& g, std::initializer_list<const at::Tensor*> tensors,
                const Op& op) {
  if (const auto* kt = eligible<float>(g, tensors)) return op(kt);
  if (const auto* kt = eligible<double>(g, tensors)) return op(kt);
  return false;
}

// ---------------------------------------------------------------------------------------------

template <typename T>
bool forward_on(const Table<T>* kt, const Geometry& g, const at::Tensor& input,
                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                at::Tensor& output) {
  const Act<T> x = act_of<T>(input);
  const Out<T> y = out_of<T>(output);
  Spec sp{g.groups, g.in_channels_per_group(), g.out_channels_per_group(),
          g.kernel_height, g.kernel_width, g.stride_h, g.stride_w,
          g.dilation_h, g.dilation_w, g.pad_top, g.pad_left};
  sp.planar_out = planar_output(y);
  sp.streamed_runs = streamed_runs(y);
  const at::Tensor w = weight.reshape({sp.G, sp.kpg, sp.cpg, sp.R, sp.S});
  if (sp.cpg == 1 && sp.kpg == 1) {
    run_depthwise(kt, x, sp, [&] { return w.reshape({g.out_channels, sp.R, sp.S}); }, bias, y,
                  weight, {kPackDepthwise});
    return true;
  }
  if (use_grouped_planes(kt, x, y, sp)) {
    run_grouped_planes(kt, x, sp, w, bias, y);
    return true;
  }
  if (use_grouped(kt, sp.G, sp.cpg, sp.kpg)) {
    const at::Tensor wp =
        pack_grouped(w.reshape({g.out_channels, sp.cpg, sp.R, sp.S}), kt->vec_lanes);
    const std::vector<T> bp = pack_bias<T>(bias, 1, g.out_channels, kt->vec_lanes);
    run_grouped(kt, x, sp, wp.const_data_ptr<T>(), bias_data(bp), y);
    return true;
  }
  if (use_winograd<T>(sp, y.N, y.H, y.W) || use_winograd_stride2<T>(sp, y.N, y.H, y.W)) {
    const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
    if (run_winograd(kt, x, sp, WinogradWeights::forward(weight),
                     b.defined() ? b.const_data_ptr<T>() : nullptr, y, winograd_kind(sp))) {
      return true;
    }
  }
  const int64_t kpg = sp.kpg;
  const at::Tensor wp =
      weight_cache().get(weight, {kPackDirect, table_id(kt), sp.G, sp.kpg, sp.cpg,
                                  direct_block(kt, sp)},
                         [&](bool) { return pack_for_direct(kt, sp, wsrc_of<T>(w)); });
  // (the reduce kernel reads one bias value per output channel: blocks of 1)
  const std::vector<T> bp =
      pack_bias<T>(bias, sp.G, kpg, use_reduce(kt, sp) ? 1 : direct_block(kt, sp));
  run_direct(kt, x, sp, wp.const_data_ptr<T>(), bias_data(bp), y);
  return true;
}

template <typename T>
bool grad_input_on(const Table<T>* kt, const Geometry& g, const at::Tensor& grad_output,
                   const at::Tensor& weight, at::Tensor& grad_input) {
  const int64_t G = g.groups, cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const bool depthwise = cpg == 1 && kpg == 1;
  const Act<T> d = act_of<T>(grad_output);
  const Out<T> o = out_of<T>(grad_input);
  // (G, cpg, kpg, R, S): the rewritten convolution's output channel c reads input channel k
  const at::Tensor wt = weight.reshape({G, kpg, cpg, g.kernel_height, g.kernel_width})
                            .transpose(1, 2);
  if (use_winograd_stride2_grad_input<T>(g)) {
    // grad_input tile rows start at padded row pad_top: the first window is grad_output row
    // floor((pad_top - 1) / 2), placed by a "padding" of minus that row (and so for columns)
    const auto first = [](int64_t pad) { return pad == 0 ? -1 : (pad - 1) / 2; };
    const Spec gs{1, kpg, cpg, 3, 3, 1, 1, 1, 1, -first(g.pad_top), -first(g.pad_left)};
    const WinogradKind kind = g.pad_top % 2 == 0 ? WinogradKind::stride2_grad_input_even
                                                 : WinogradKind::stride2_grad_input_odd;
    if (run_winograd(kt, d, gs, WinogradWeights::grad_input(weight),
                     static_cast<const T*>(nullptr), o, kind)) {
      return true;
    }  // (not finite: the phases below overwrite all of grad_input)
  }
  if (depthwise && use_zero_inserted_grad_input(kt, g, d, o) &&
      run_depthwise_grad_input_zero_inserted(kt, d, g, weight, o)) {
    return true;
  }
  std::vector<DirectJob<T>> jobs;
  std::vector<at::Tensor> keep;  // packed weights of the jobs
  bool some_phase_empty = false;
  for (int64_t a = 0; a < std::min(g.stride_h, g.in_height); ++a)
    some_phase_empty |= phase_taps(a, g.pad_top, g.kernel_height, g.dilation_h, g.stride_h).empty();
  for (int64_t b = 0; b < std::min(g.stride_w, g.in_width); ++b)
    some_phase_empty |= phase_taps(b, g.pad_left, g.kernel_width, g.dilation_w, g.stride_w).empty();
  if (some_phase_empty) grad_input.zero_();
  // Depthwise over NCHW planes with stride_w > 1: the phases interleave along the rows, and one
  // pass per phase writing every stride_w-th element of all of grad_input cost 3-4x native
  // (MBv2 dw s2); they are computed per plane instead (run_depthwise_phases_on_planes).
  std::vector<PlanePhase> plane_phases;
  // Grouped phases on planes: all of them per staged plane (run_grouped_phases_on_planes)
  // where every phase is there and grad_input is NCHW with dense rows or channels_last.
  std::vector<PlanePhase> grouped_phases;
  const bool stride_phases = g.stride_h * g.stride_w > 1 && !some_phase_empty &&
                             g.in_height >= g.stride_h && g.in_width >= g.stride_w &&
                             (o.sw == 1 || o.sc == 1);
  for (int64_t a = 0; a < g.stride_h; ++a) {
    for (int64_t b = 0; b < g.stride_w; ++b) {
      const int64_t Hi = a < g.in_height ? ceil_div(g.in_height - a, g.stride_h) : 0;
      const int64_t Wi = b < g.in_width ? ceil_div(g.in_width - b, g.stride_w) : 0;
      if (Hi == 0 || Wi == 0) continue;
      const Out<T> oo{o.p + a * o.sh + b * o.sw, o.N, o.C, Hi, Wi, o.sn, o.sc,
                   o.sh * g.stride_h, o.sw * g.stride_w};
      const GradInputPhase ph = grad_input_phase(g, a, b);
      if (ph.empty()) continue;  // no tap reaches this phase: zeroed above
      const int64_t J = ph.rows.size(), JS = ph.cols.size();
      Spec ps{G, kpg, cpg, J, JS, 1, 1, ph.dil_r, ph.dil_s, -ph.q_r, -ph.q_s};
      ps.planar_out = planar_output(oo);
      ps.streamed_runs = streamed_runs(oo);
      // taps in reverse order (180-degree rotation restricted to the phase)
      std::vector<int64_t> rr(ph.rows.rbegin(), ph.rows.rend()),
          sr(ph.cols.rbegin(), ph.cols.rend());
      const auto wc = [&] {  // (G, cpg, kpg, J, JS) as a tensor (small weights only)
        const at::Tensor ir = at::tensor(rr, at::TensorOptions().dtype(at::kLong));
        const at::Tensor is = at::tensor(sr, at::TensorOptions().dtype(at::kLong));
        return wt.index_select(3, ir).index_select(4, is);
      };
      if (depthwise && g.stride_w > 1 && o.sw == 1 && use_plane(kt, d, o.sc, o.C, ps, Hi, Wi)) {
        plane_phases.push_back(
            PlanePhase{ps, a, b, Hi, Wi, wc().reshape({g.in_channels, J, JS}).contiguous()});
      } else if (depthwise) {
        run_depthwise(kt, d, ps, [&] { return wc().reshape({g.in_channels, J, JS}); },
                      std::nullopt, oo, weight,
                      {kPackDepthwiseGradInput, a, b, g.stride_h, g.stride_w, g.pad_top,
                       g.pad_left, g.dilation_h, g.dilation_w});
      } else if (use_grouped_planes(kt, d, oo, ps)) {
        if (stride_phases) grouped_phases.push_back(PlanePhase{ps, a, b, Hi, Wi, wc()});
        else run_grouped_planes(kt, d, ps, wc(), std::nullopt, oo);
      } else if (use_grouped(kt, G, kpg, cpg)) {
        const at::Tensor wp =
            pack_grouped(wc().reshape({g.in_channels, kpg, J, JS}), kt->vec_lanes);
        run_grouped(kt, d, ps, wp.const_data_ptr<T>(), static_cast<const T*>(nullptr), oo);
      } else if (g.stride_h == 1 && g.stride_w == 1 && use_winograd<T>(ps, o.N, Hi, Wi) &&
                 run_winograd(kt, d, ps, WinogradWeights::grad_input(weight),
                              static_cast<const T*>(nullptr), oo, WinogradKind::f2x2_3x3)) {
        // done; where it returns false (not finite) the direct kernels overwrite oo
      } else {
        const at::Tensor wp = weight_cache().get(
            weight, {kPackDirectGradInput, table_id(kt), G, g.stride_h, g.stride_w, a, b,
                     g.pad_top, g.pad_left, g.dilation_h, g.dilation_w, direct_block(kt, ps)},
            [&](bool) { return pack_for_direct(kt, ps, wsrc_of<T>(wt, rr, sr)); });
        keep.push_back(wp);
        jobs.push_back(DirectJob<T>{ps, wp.const_data_ptr<T>(), nullptr, oo});
      }
    }
  }
  if (!jobs.empty()) run_direct_jobs(kt, d, jobs);  // all phases in one pass
  if (int64_t(grouped_phases.size()) != g.stride_h * g.stride_w ||
      !run_grouped_phases_on_planes(kt, d, grouped_phases, g.stride_h, g.stride_w, o)) {
    for (const PlanePhase& ph : grouped_phases) {
      run_grouped_planes(kt, d, ph.ps, ph.w, std::nullopt,
                         Out<T>{o.p + ph.a * o.sh + ph.b * o.sw, o.N, o.C, ph.Hi, ph.Wi, o.sn,
                                o.sc, o.sh * g.stride_h, o.sw * g.stride_w});
    }
  }
  if (!plane_phases.empty()) {
    run_depthwise_phases_on_planes(kt, d, plane_phases, g.stride_h, g.stride_w, o);
  }
  return true;
}

// Rows from this size on (bytes): see swaps_1x1_grad_weight.
constexpr int64_t kGwSwapRowBytes = 2048;

// An unpadded 1x1 stride-1 weight gradient over pixel-major operands (channels_last) is the
// GEMM gw[k][c] = sum over pixels of dy[p][k] * x[p][c], symmetric in its operands; the tile
// loads one of them as vectors and broadcasts the other. Swapped (x as grad_output, dy as
// input, the transposed result written back), the vectors are the operand with more channels
// where its rows are kGwSwapRowBytes or longer, else the one with fewer (a whole number of
// k-blocks of them). Zen 2, AVX2, 2 threads, medians of interleaved runs, normal -> swapped
// (native): channels_last 2048 -> 512 over 7 x 7 7.6-7.9 -> 6.9-7.3 ms (6.9-7.3), 1024 -> 256
// over 14 x 14 7.5-7.7 -> 6.2-6.3 (6.9-7.0), 576 -> 160 over 7 x 7 0.59-0.69 -> 0.51-0.60
// (0.61-0.72), 64 -> 256 over 56 x 56 7.7-8.3 -> 6.8-7.8 (6.3-6.7), 32 -> 128 2.57 -> 2.26;
// the other way round slower: 128 -> 512 over 56 x 56 27.3 -> 30.2, 256 -> 1024 over 14 x 14
// 6.0 -> 7.6, 24 -> 144 over 56 x 56 2.7 -> 3.0 (24 channels: a half-empty k-block).
template <typename T>
bool swaps_1x1_grad_weight(const Table<T>* kt, const Spec& sp, const Act<T>& x,
                           const Act<T>& d) {
  if (sp.G != 1 || sp.R != 1 || sp.S != 1 || sp.sh != 1 || sp.sw != 1 || sp.pt != 0 ||
      sp.pl != 0 || sp.cpg == sp.kpg || !PixelMajor<T>::in_place(x) ||
      !PixelMajor<T>::in_place(d)) {
    return false;
  }
  const int64_t more = std::max(sp.cpg, sp.kpg), fewer = std::min(sp.cpg, sp.kpg);
  const bool vectors_more = more * int64_t(sizeof(T)) >= kGwSwapRowBytes;
  if (!vectors_more && fewer % kt->kernel_block != 0) return false;
  // the vectors are grad_output's channels (kpg) unless swapped
  return vectors_more ? sp.cpg > sp.kpg : sp.cpg < sp.kpg;
}

template <typename T>
bool grad_weight_on(const Table<T>* kt, const Geometry& g, const at::Tensor& grad_output,
                    const at::Tensor& input, at::Tensor& grad_weight) {
  const int64_t G = g.groups, cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const int64_t R = g.kernel_height, S = g.kernel_width, OH = g.out_height, OW = g.out_width;
  const Spec sp{G, cpg, kpg, R, S, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w,
                g.pad_top, g.pad_left};
  const Act<T> x = act_of<T>(input), d = act_of<T>(grad_output);
  if (swaps_1x1_grad_weight(kt, sp, x, d)) {  // (false for the swapped problem)
    Geometry swapped = g;
    std::swap(swapped.in_channels, swapped.out_channels);
    at::Tensor transposed = grad_weight.permute({1, 0, 2, 3});  // a view
    return grad_weight_on(kt, swapped, input, grad_output, transposed);
  }
  T* gw = grad_weight.mutable_data_ptr<T>();
  const int64_t ws0 = grad_weight.stride(0), ws1 = grad_weight.stride(1),
                ws2 = grad_weight.stride(2), ws3 = grad_weight.stride(3);
  const int64_t dy_elems = OH * OW * g.out_channels;

  // NCHW planes where the output rows are at least two vectors long: over shorter rows the
  // channel-vectorised kernel below (its operands transposed) took half the time or less (Zen
  // 2, AVX2, 2 threads, switched in one process, planes -> channel vectors, native: MBv2 dw
  // 192 x 28 x 28 stride 2 (14 output columns) 1.19 -> 0.41 ms (1.08), 384 x 14 x 14 0.83 ->
  // 0.45 (1.03), 576 x 14 x 14 1.20 -> 0.58 (1.52); rows of 28 stay on planes: 192 x 28 x 28
  // 1.31 against 2.09, 144 x 56 x 56 stride 2 1.85 against 3.30).
  const bool plane_rows = OW >= 2 * kt->vec_lanes;
  if (cpg == 1 && kpg == 1 && d.sw == 1 && plane_rows && use_plane(kt, x, d.sc, d.C, sp, OH, OW)) {
    // NCHW planes: one task per channel sums its images in order, lanes summed at the end
    const int64_t VL = kt->vec_lanes, C = g.in_channels, RS = R * S;
    const PlanePlan plan(sp, OH, OW, VL, d.sh, 1);
    const PlaneGeom& pg = plan.pg;
    const int64_t workers = worker_count(C, 1);
    at::Tensor scratch = at::empty({workers * (pg.elems + RS * VL)},
                                   options_of<T>());
    T* sc = scratch.data_ptr<T>();
    const DepthwiseGradWeightStore<T> store(x, d, sp, grad_weight);
    dynamic_for_workers(C, workers, [&](int64_t c, int64_t worker) {
      T* staged = sc + worker * (pg.elems + RS * VL);
      T* acc = staged + pg.elems;
      for (int64_t n = 0; n < x.N; ++n) {
        kt->stage_plane(x.p + n * x.sn + c * x.sc, x.sh, x.H, x.W, sp.pt, sp.pl, pg.Hp, sp.sw,
                      pg.Wq, staged);
        kt->depthwise_plane_grad_weight(&plan.args, staged, d.p + n * d.sn + c * d.sc, acc, n > 0);
      }
      store(c, [&](int64_t t) {
        T sum = 0;  // the tap's lanes
        for (int64_t l = 0; l < VL; ++l) sum += acc[t * VL + l];
        return sum;
      });
    });
    return true;
  }

  if (cpg == 1 && kpg == 1) {
    // Channel vectors x parts of the pixels: a part is a fixed range of rows of one image (or
    // a few whole small images), so there are enough tasks for every thread whatever C; each
    // task sums its part into its own slot, the slots are added in part order (fixed by the
    // shape and the staging chunk, not by the threads). A channels_last input is read in
    // place, its padding skipped by the kernel (a zero-padded copy of a 7x7 MBv2 layer, 2.5 MB,
    // cost more than the kernel's border work: 0.4-0.8x native with it, 0.55-1.05x without;
    // the kernel now copies small images' channel vectors zero-bordered into L1 itself).
    const int64_t VL = kt->vec_lanes, C = g.in_channels, nCV = ceil_div(C, VL), RSV = R * S * VL;
    // valid input region in the coordinates of the kernels' x origin
    const int64_t top = sp.pt, left = sp.pl, valid_h = x.H, valid_w = x.W;
    constexpr int64_t kPartPixels = 1024;
    const int64_t P = OH * OW, HW = x.H * x.W;
    int64_t rows_pp = OH, imgs_pp = 1;  // rows / images per part
    // Large images: parts of the rows whose input rows, all channels, fit kDwPartInputBytes
    // (at least kDwPartMinPixels), and each task takes every channel vector of its part, so
    // the part's input is read from memory once and from L2 by the other vectors.
    bool all_vectors = false;
    if (P >= kPartPixels) {
      const int64_t input_rows = kDwPartInputBytes / std::max<int64_t>(1, x.W * C * sizeof(T));
      const int64_t window_rows = (R - 1) * sp.dh + 1;
      rows_pp = std::max((input_rows - window_rows) / sp.sh + 1, ceil_div(kDwPartMinPixels, OW));
      rows_pp = std::clamp<int64_t>(rows_pp, 1, OH);
      all_vectors = x.N * ceil_div(OH, rows_pp) >= kDwMinParts;
      if (!all_vectors) rows_pp = ceil_div(OH, std::min(OH, ceil_div(P, kPartPixels)));
    } else {
      imgs_pp = kPartPixels / P;
    }
    const int64_t parts_per_image = ceil_div(OH, rows_pp);
    // Small NCHW images (several per part): each task copies its channel vector of its
    // images' input and grad_output planes pixel-major into per-worker scratch (about 64 KiB
    // of grad_output), instead of all threads staging whole chunks of both first and every
    // task reading them back from memory.
    const bool stage_in_task =
        imgs_pp > 1 && dense_planes(x) && x.sc != 1 && dense_planes(d) && d.sc != 1;
    std::optional<Stager<T>> st;
    std::optional<PixelMajor<T>> pm;
    if (!stage_in_task) {
      st.emplace(kt, x, sp, OH, OW, /*unit_channel=*/true, dy_elems, /*padding_in_place=*/true);
      pm.emplace(kt, d, st->chunk);
    }
    const int64_t chunk = st ? st->chunk : x.N;
    const int64_t task_x = imgs_pp * HW * VL, task_elems = task_x + imgs_pp * P * VL;
    at::Tensor acc = at::empty({nCV * RSV}, options_of<T>());
    T* ap = acc.data_ptr<T>();
    for (int64_t n0 = 0; n0 < x.N; n0 += chunk) {
      const int64_t nb = std::min(chunk, x.N - n0);
      if (st) st->prepare(n0, nb), pm->prepare(n0, nb);
      const int64_t parts = imgs_pp > 1 ? ceil_div(nb, imgs_pp) : nb * parts_per_image;
      // one part: straight into the sums (no slots, no second pass)
      at::Tensor slots, staged;
      if (parts > 1) slots = at::empty({parts * nCV * RSV}, options_of<T>());
      T* sp_ = parts > 1 ? slots.data_ptr<T>() : nullptr;
      // A task takes the channel vectors of one cache line (AVX2 float32: two): with one
      // vector per task, the two threads ran neighbouring vectors at once and both fetched
      // every line of both operands (Zen 2, AVX2, 2 threads, alternating processes,
      // channels_last: MBv2 dw 144 x 56 x 56 4.3-4.4 -> 2.9-3.0 ms, dw s2 96 x 112 x 112
      // 5.0-5.5 -> 3.6-3.7; two lines per task the same as one). Parts of large images: every
      // vector (see all_vectors; the same slots and sums either way).
      const int64_t per_line = all_vectors ? nCV : std::max<int64_t>(1, kLineElems<T> / VL);
      const int64_t nLG = ceil_div(nCV, per_line);
      const int64_t workers = worker_count(parts * nLG, 1);
      if (stage_in_task) staged = at::empty({workers * task_elems}, options_of<T>());
      const auto channel_vector = [&](int64_t q, int64_t cv, int64_t worker) {
        const int64_t t = q * nCV + cv, cn = std::min(VL, C - cv * VL);
        int64_t n = q * imgs_pp, nimg = std::min(imgs_pp, nb - n), oh0 = 0, rows = OH;
        if (imgs_pp == 1) {
          n = q / parts_per_image, nimg = 1;
          oh0 = q % parts_per_image * rows_pp, rows = std::min(rows_pp, OH - oh0);
        }
        T* const acc_out = parts > 1 ? sp_ + t * RSV : ap + cv * RSV;
        const int64_t accumulate = parts > 1 ? 0 : n0 > 0;
        if (stage_in_task) {
          T* xs = staged.data_ptr<T>() + worker * task_elems;
          T* ds = xs + task_x;
          for (int64_t i = 0; i < nimg; ++i) {
            const int64_t img = n0 + n + i;
            kt->transpose(x.p + img * x.sn + cv * VL * x.sc, x.sc, cn, HW, xs + i * HW * VL, VL);
            kt->transpose(d.p + img * d.sn + cv * VL * d.sc, d.sc, cn, P, ds + i * P * VL, VL);
          }
          const isa::DepthwiseGradWeightArgs a{R, S, OH, OW, sp.sh, sp.sw, sp.dh, sp.dw,
                                               HW * VL, x.W * VL, VL, P * VL, VL, nimg,
                                               top, left, valid_h, valid_w};
          kt->depthwise_grad_weight(&a, xs - sp.pt * x.W * VL - sp.pl * VL, ds, acc_out, cn,
                                    accumulate);
          return;
        }
        const isa::DepthwiseGradWeightArgs a{R, S, rows, OW, sp.sh, sp.sw, sp.dh, sp.dw,
                                             st->xn, st->xh, st->xw, pm->dyn, pm->dyp, nimg,
                                             top - oh0 * sp.sh, left, valid_h, valid_w};
        kt->depthwise_grad_weight(
            &a, st->origin(sp.pt, sp.pl) + n * st->xn + oh0 * sp.sh * st->xh + cv * VL,
            pm->origin + n * pm->dyn + oh0 * OW * pm->dyp + cv * VL, acc_out, cn, accumulate);
      };
      dynamic_for_workers(parts * nLG, workers, [&](int64_t t, int64_t worker) {
        const int64_t q = t / nLG, lg = t % nLG;
        for (int64_t cv = lg * per_line; cv < std::min(nCV, lg * per_line + per_line); ++cv) {
          channel_vector(q, cv, worker);
        }
      });
      if (parts == 1) continue;
      at::parallel_for(0, nCV, 1, [&](int64_t b, int64_t e) {
        for (int64_t cv = b; cv < e; ++cv) {
          T* dst = ap + cv * RSV;
          for (int64_t q = 0; q < parts; ++q) {
            const T* src = sp_ + (q * nCV + cv) * RSV;
            if (n0 == 0 && q == 0) {
              std::copy(src, src + RSV, dst);
            } else {
              for (int64_t i = 0; i < RSV; ++i) dst[i] += src[i];
            }
          }
        }
      });
    }
    const DepthwiseGradWeightStore<T> store(x, d, sp, grad_weight);
    for (int64_t c = 0; c < C; ++c) {
      const T* sums = ap + c / VL * RSV + c % VL;  // [tap][VL]
      store(c, [&](int64_t t) { return sums[t * VL]; });
    }
    return true;
  }

  if (use_planes_grad_weight(sp, x, d)) {
    run_planes_grad_weight(kt, x, d, sp, grad_weight);
    return true;
  }

  if (use_grouped(kt, G, cpg, kpg)) {
    const int64_t VL = kt->vec_lanes, K = g.out_channels, nCV = ceil_div(K, VL);
    Stager st(kt, x, sp, OH, OW, /*unit_channel=*/true, dy_elems);
    PixelMajor pm(kt, d, st.chunk);
    const int64_t per_task = cpg * VL, ntasks = nCV * R * S;
    // Passes of rows (about 256 pixels): a thread's tasks all pass over one before the next,
    // so its input and grad_output rows stay in L2 (a task streaming whole images ran at 4%
    // of the FMA peak).
    const int64_t RB = std::max<int64_t>(1, 256 / OW), nRB = ceil_div(OH, RB);
    const PassSums<T> sums(x.N * nRB, ntasks * per_task);
    T* ap = sums.ap;
    for (int64_t n0 = 0; n0 < x.N; n0 += st.chunk) {
      const int64_t nb = std::min(st.chunk, x.N - n0);
      st.prepare(n0, nb);
      pm.prepare(n0, nb);
      at::parallel_for(0, ntasks, 1, [&](int64_t b, int64_t e) {
        for (int64_t n = 0; n < nb; ++n) {
          for (int64_t rb = 0; rb < nRB; ++rb) {
            const int64_t q = (n0 + n) * nRB + rb, oh0 = rb * RB;
            const isa::GroupedGradWeightArgs a{K, g.in_channels, cpg, kpg,
                                               std::min(RB, OH - oh0), OW, sp.sh, sp.sw,
                                               sp.dh, sp.dw, st.xn, st.xh, st.xw, pm.dyn,
                                               pm.dyp, 1};
            const T* xr = st.origin(sp.pt, sp.pl) + n * st.xn + oh0 * sp.sh * st.xh;
            const T* dr = pm.origin + n * pm.dyn + oh0 * OW * pm.dyp;
            for (int64_t t = b; t < e; ++t) {
              const int64_t s_ = t % S, r = (t / S) % R, cv = t / (R * S);
              kt->grouped_grad_weight(&a, xr, dr, sums.target() + t * per_task, cv, r, s_,
                                      sums.accumulate(q));
              sums.end_pass(q, t * per_task, 1, 0, per_task);
            }
          }
        }
      });
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < cpg; ++j)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            gw[k * ws0 + j * ws1 + r * ws2 + s * ws3] =
                ap[((((k / VL) * R + r) * S + s) * cpg + j) * VL + k % VL];
    return true;
  }

  // The stride-2 form only where both operands are read in place (channels_last): over NCHW
  // operands, with the transform tasks' row copies, R50 3x3 s2 measured 0.83-1.08x native
  // from process to process against the direct kernel's 0.98-1.04x (channels_last 1.24-1.54x
  // against 1.18-1.35x).
  const bool stride2_in_place = x.sc == 1 && PixelMajor<T>::in_place(d);
  if (G == 1 &&
      (use_winograd<T>(sp, x.N, OH, OW) ||
       (stride2_in_place && use_winograd_stride2<T>(sp, x.N, OH, OW))) &&
      winograd_tiles(x.N, OH, OW) >= kWinogradGwMinTiles &&
      run_winograd_grad_weight(kt, x, d, sp, grad_weight)) {
    return true;
  }

  // NCHW grad_output (dense planes): every thread transposes the rows of each pass that its
  // tasks need (their output channels) into its own pixel-major buffer, which stays in cache
  // for the pass; a pixel-major copy of whole images went to memory and was read back. The
  // buffer holds one dense [pixel][KB] block per k-block, whose lines of consecutive pixels
  // fall into every L1 set: with the thread's channels as one [pixel][channels] array, a
  // tile's lines were as many channels apart (Zen 2, AVX2, 2 threads, medians of 16-20
  // interleaved calls of each, two runs on a noisy host, NCHW weight gradient: R50 L3 1x1
  // 0.90-0.99x -> 0.96-1.04x native, R50 L4 1x1 0.89-0.94x -> 0.90-0.98x, R50 downsample
  // 0.92-0.99x -> 0.95-1.00x, N=1 latency 1.22x -> 1.32x, R50 stem 1.17x -> 1.20x; R50 L4
  // 3x3, GoogLeNet 5x5 and 100 -> 50 3x3 over 30 x 30 the same within the noise). With a
  // single group and a single k-block every thread would transpose all of them: two k-blocks
  // of the standard tile instead, the same sums (R50 stem NCHW weight gradient, 64 output
  // channels, 60 calls in alternating processes: 27.4-28.2 -> 25.9-26.0 ms of CPU per call,
  // 13.7-14.2 -> 13.0-13.1 ms wall).
  const bool dy_per_pass = !PixelMajor<T>::in_place(d) && dense_planes(d);
  const GradWeightTiles<T> gwt(kt, kpg, cpg, /*split_k=*/dy_per_pass && G == 1);
  const isa::GradWeightFn<T> gw_fn = gwt.fn;
  const int64_t KB = gwt.KB, nKB = gwt.nKB, CB = gwt.CB, nCB = gwt.nCB;
  const bool dy_copied = !dy_per_pass && !PixelMajor<T>::in_place(d);
  // Cache-sized staging chunks: the tasks are weight blocks that pass over the chunk's images,
  // so smaller chunks leave no thread idle.
  const bool gap = x.C * sp.sw * int64_t(sizeof(T)) >= kGwPixelGapBytes;
  const bool blocks = gap && G == 1;  // (see kGwPixelGapBytes)
  const bool planes = cpg >= CB && kpg * R * S < kGwPlanesWork * sp.sh * sp.sw;
  Stager st(kt, x, sp, OH, OW, /*unit_channel=*/false, dy_copied ? dy_elems : 0,
            /*padding_in_place=*/false, /*cache_min_images=*/1, gap ? kLineElems<T> : 0,
            blocks ? CB : 0, planes);
  std::optional<PixelMajor<T>> pm_whole;
  if (!dy_per_pass) pm_whole.emplace(kt, d, st.chunk);
  // Few channels (an RGB stem): with channel-contiguous rows and undilated columns, the S taps
  // x cpg channels of a window row are S*cpg consecutive elements, taken as the tile's
  // channels with one tap per row (3 channels filled a quarter of a 12-channel tile).
  // Accumulators then [nKB][R][S][cpg][KB], reordered at the end.
  const bool row_runs = G == 1 && S > 1 && cpg < CB && st.xc == 1 && st.xw == cpg &&
                        sp.dw == 1;
  const int64_t CE = row_runs ? S * cpg : cpg, SE = row_runs ? 1 : S;  // the tasks' view
  const int64_t nCE = row_runs ? ceil_div(CE, CB) : nCB;
  // accumulators [G][nKB][cpg][R][S][KB]
  const int64_t acc_c = row_runs ? KB : R * S * KB, panel = cpg * R * S * KB;
  // Pixels per pass: about 256, or what fits kGwGatherBytes where a stride-1 input is
  // gathered (gather_x below) because its pixels are kGwGatherStride1Bytes or more apart.
  const int64_t gathered_pixel = x.C + kLineElems<T>;
  const bool gather_stride1 = R == 1 && S == 1 && sp.sh == 1 && sp.sw == 1 && st.direct &&
                              st.xc == 1 && st.xw * int64_t(sizeof(T)) >= kGwGatherStride1Bytes;
  const int64_t pass_px =
      gather_stride1 ? std::max<int64_t>(1, kGwGatherBytes / (gathered_pixel * int64_t(sizeof(T))))
                     : 256;
  const int64_t RB = std::max<int64_t>(1, pass_px / OW), nRB = ceil_div(OH, RB);
  // small images: a pass spans several whole images (about 256 pixels per pass)
  const int64_t NBI = nRB == 1 ? std::max<int64_t>(1, pass_px / (OH * OW)) : 1;
  // Tasks (group, k-block, channel block, row, column), the threads' shares contiguous ranges
  // (pass by pass, see below). Row runs put the channel block innermost: their last block is
  // short (an RGB stem's 21 = 6 + 6 + 6 + 3) and as the outer index it went all to one thread
  // (84 : 63 channel-rows of work).
  const int64_t ntasks = G * nKB * nCE * R * SE;
  int64_t passes = 0;
  for (int64_t n0 = 0; n0 < x.N; n0 += st.chunk) {
    passes += ceil_div(std::min(st.chunk, x.N - n0), NBI) * nRB;
  }
  // Groups of passes on the middle level: kMidPasses, or fewer where that leaves less than
  // kGwPassGroups of them (by_passes below).
  const int64_t group_passes =
      std::clamp<int64_t>(ceil_div(passes, kGwPassGroups), 2, PassSums<T>::kMidPasses);
  const int64_t elems = G * nKB * panel;
  const PassSums<T> sums(passes, elems,
                         passes <= PassSums<T>::kMidPasses ? passes : group_passes);
  T* ap = sums.ap;
  // Small weights (the accumulators fit L2 with room to spare) and enough pass groups for the
  // threads: the tasks are the pass groups instead, handed out dynamically; a task sums every
  // weight block over its passes into the group's own buffer, and the groups are added in
  // order at the end, which are the same sums as the weight-block tasks' (bitwise). Every
  // pixel is then read by one thread, and a thread that runs slower takes fewer groups (split
  // by weight blocks, each thread read all of one operand, and one of the two often ran
  // 20-40% longer than the other: Zen 2, AVX2, 2 threads, alternating processes, channels_last
  // weight gradients of MBv2 pointwise 2.4-2.5 -> 2.1-2.3 ms, R50 1x1 64 -> 256 7.0 ->
  // 6.2-6.3, 256 -> 64 7.0-7.5 -> 6.3-6.5).
  const int64_t pass_groups = ceil_div(passes, group_passes);
  const bool by_passes = sums.use_mid && st.chunk >= x.N && at::get_num_threads() > 1 &&
                         pass_groups >= 4 * at::get_num_threads() &&
                         elems * int64_t(sizeof(T)) <= kGwByPassesWeightBytes &&
                         pass_groups * elems * int64_t(sizeof(T)) <= kGwPassGroupsBytes;
  const at::Tensor group_sums =
      by_passes ? workspace<T>(Workspace::pass_groups, pass_groups * elems) : at::Tensor();
  // 1x1 stride-1 windows over dense input rows: a pass's pixels are consecutive in both
  // operands (grad_output is pixel-major with dense rows, in place or copied), and the tiles
  // take them as one row instead of paying a row's overhead every OW pixels (Zen 2, AVX2, 2
  // threads, alternating processes: R50 L4 1x1 (7 x 7) channels_last weight gradient
  // 11.2-12.0 -> 9.7-9.9 ms).
  const bool consecutive_pixels = R == 1 && S == 1 && sp.sh == 1 && sp.sw == 1 &&
                                  st.xh == OW * st.xw;
  // Strided 1x1 windows over an input read in place whose pixels a tile steps over
  // kGwPixelGapBytes or more apart (stride 1: kGwGatherStride1Bytes): each thread gathers the
  // pass's input pixels into a block with the pixel gap (as the padded copies have), where
  // that block fits kGwGatherBytes.
  const int64_t pass_rows = std::min(RB, OH);
  const bool gather_x = R == 1 && S == 1 && (sp.sh > 1 || sp.sw > 1 || gather_stride1) &&
                        st.direct && st.xc == 1 &&
                        sp.sw * st.xw * int64_t(sizeof(T)) >= kGwPixelGapBytes &&
                        NBI * pass_rows * OW * gathered_pixel * int64_t(sizeof(T)) <=
                            kGwGatherBytes;
  // k-blocks of grad_output rows kGwPackDyBytes or more apart (pixel stride dyp) are copied, per
  // pass, into a dense [pixel][KB] block that the k-block's tasks read (see there)
  const auto packs_dy = [&](int64_t dyp) {
    return dyp * int64_t(sizeof(T)) >= kGwPackDyBytes && nCE * R * SE >= kGwPackDyMinTasks;
  };
  // Where a pass reads more input than grad_output (more channels, or a stride): tasks
  // ordered (group, channel block, k-block, ...), so that each thread's contiguous share of
  // them reads its own channels of the pass's input rather than all of them, once for all
  // its k-blocks (and grad_output, the smaller operand, whole: where it is copied per pass,
  // whole groups of it). Not with copied grad_output blocks (copied per k-block), nor where
  // NCHW grad_output's rows would be as long (kpg): with its per-pass blocks channel major
  // measured mixed (R50 L4 1x1 NCHW 0.98x -> 0.91x, R50 downsample NCHW 0.95x -> 1.00x, R50
  // L3 1x1, R50 L4 3x3, R50 3x3 s2 and GoogLeNet 5x5 within 3%). Zen 2,
  // AVX2, 2 threads, alternating processes: R50 1x1 256 -> 64 over 56 x 56 channels_last
  // 8.6-8.7 -> 7.6-7.9 ms, R50 3x3 s2 NCHW 17.4-17.7 -> 16.3-16.6; MBv2 project, GoogLeNet
  // 5x5 and 100 -> 50 3x3 over 30 x 30 the same.
  const int64_t pass_input = ((pass_rows - 1) * sp.sh + (R - 1) * sp.dh + 1) *
                             ((OW - 1) * sp.sw + (S - 1) * sp.dw + 1) * cpg;
  // grad_output pixels that packs_dy would copy per k-block (NCHW grad_output: its rows of
  // kpg channels, as they were before its per-pass copies came in k-blocks)
  const bool long_dy_rows = packs_dy(dy_per_pass ? kpg : pm_whole->dyp);
  const bool channel_major = !row_runs && nKB > 1 && pass_input > pass_rows * OW * kpg &&
                             !long_dy_rows;
  // Task t: its group, k-block, tap row and column, channels [c0, c0 + nc) of its view, valid
  // lanes and accumulators (nc rows of acc_c from off), as ntasks orders the tasks.
  struct GwTask {
    int64_t gr, kb, r, s, c0, nc, kvalid, off;
  };
  const auto task_of = [&](int64_t t) {
    int64_t rest = t, s, r, cb, kb;
    if (row_runs) {  // (k-block, row, channel block): see ntasks
      cb = rest % nCE; rest /= nCE;
      s = 0, r = rest % R; rest /= R;
      kb = rest % nKB; rest /= nKB;
    } else if (channel_major) {  // (group, channel block, k-block, row, column)
      s = rest % SE; rest /= SE;
      r = rest % R; rest /= R;
      kb = rest % nKB; rest /= nKB;
      cb = rest % nCE; rest /= nCE;
    } else {
      s = rest % SE; rest /= SE;
      r = rest % R; rest /= R;
      cb = rest % nCE; rest /= nCE;
      kb = rest % nKB; rest /= nKB;
    }
    const int64_t gr = rest, c0 = cb * CB;
    return GwTask{gr, kb, r, s, c0, std::min(CB, CE - c0), std::min(KB, kpg - kb * KB),
                  (gr * nKB + kb) * panel +
                      (row_runs ? (r * CE + c0) * KB : c0 * acc_c + (r * S + s) * KB)};
  };
  int64_t q0 = 0;  // passes of earlier chunks
  for (int64_t n0 = 0; n0 < x.N; n0 += st.chunk) {
    const int64_t nb = std::min(st.chunk, x.N - n0);
    st.prepare(n0, nb);
    if (pm_whole) pm_whole->prepare(n0, nb);
    // Tasks [b, e) over the chunk's passes [qa, qb) (numbered from the chunk's first): onto
    // the three-level sums, or (own non-null) onto `own`, fresh at qa, the buffer of a group
    // of passes (by_passes).
    const auto run_passes = [&](int64_t b, int64_t e, int64_t qa, int64_t qb, T* own) {
      // k-blocks [gk_first, gk_last] (numbered over the groups) of this thread's tasks
      // (ordered group, k-block, ...; channel major: whole groups), where grad_output is
      // copied per pass: a block of each, [image][pixel][KB]
      const int64_t per_kb = nCE * R * SE;
      const int64_t gk_b = b / per_kb, gk_e = (e - 1) / per_kb;
      const int64_t gk_first = channel_major ? gk_b / nKB * nKB : gk_b;
      const int64_t gk_last = channel_major ? (gk_e / nKB + 1) * nKB - 1 : gk_e;
      const int64_t block_elems = NBI * RB * OW * KB;
      at::Tensor pass_buf;
      if (dy_per_pass) {
        pass_buf = workspace<T>(Workspace::grad_output, (gk_last - gk_first + 1) * block_elems);
      }
      // the tasks decoded once, not per pass (task_of divides)
      std::vector<GwTask> tasks;
      tasks.reserve(e - b);
      for (int64_t t = b; t < e; ++t) tasks.push_back(task_of(t));
      std::vector<T> dy_block;  // (pack_dy below)
      std::vector<T> x_block;   // (gather_x)
      for (int64_t lq = qa; lq < qb; ++lq) {
        const int64_t q = q0 + lq, n = lq / nRB * NBI, rb = lq % nRB;
        const int64_t nimg = std::min(NBI, nb - n);
        const int64_t oh0 = rb * RB, rows = std::min(RB, OH - oh0);
        int64_t dyn, dyp;
        const T* drow;  // pixel-major grad_output at row oh0 of image n (dy_per_pass: blocks)
        if (dy_per_pass) {
          T* buf = data_of<T>(pass_buf);
          dyp = KB, dyn = rows * OW * KB;
          for (int64_t gk = gk_first; gk <= gk_last; ++gk) {
            const int64_t kb = gk % nKB, k0 = gk / nKB * kpg + kb * KB;
            const int64_t kn = std::min(KB, kpg - kb * KB);  // (the group's last block: fewer)
            for (int64_t i = 0; i < nimg; ++i) {
              kt->transpose(d.p + (n0 + n + i) * d.sn + k0 * d.sc + oh0 * OW, d.sc, kn,
                            rows * OW, buf + (gk - gk_first) * block_elems + i * dyn, KB);
            }
          }
          drow = buf;
        } else {
          dyn = pm_whole->dyn, dyp = pm_whole->dyp;
          drow = pm_whole->origin + n * dyn + oh0 * OW * dyp;
        }
        const int64_t pass_pixels = rows * OW;
        const bool pack_dy = packs_dy(dyp);
        if (pack_dy) dy_block.resize(nimg * pass_pixels * KB);
        int64_t packed = -1;  // the (group, k-block) in dy_block
        isa::GradWeightArgs a{rows, OW, sp.sh, sp.sw, sp.dh, sp.dw, st.xn, st.xc, st.xh, st.xw,
                              pack_dy ? pass_pixels * KB : dyn, pack_dy ? KB : dyp, nimg,
                              acc_c, 0};
        // prefetches only for operands read in place (see isa::GradWeightArgs::prefetch; Zen
        // 2, AVX2, 2 threads, alternating processes: R50 L4 3x3 weight gradient, a padded
        // copy and copied grad_output blocks, 19.8-21.4 -> 18.3-19.6 ms channels_last,
        // 19.6-20.5 -> 18.1-19.2 NCHW; R50 downsample's gathered input 13.0-13.3 ->
        // 12.6-12.7; 1x1 layers read in place the same)
        a.prefetch = (st.direct && !gather_x ? isa::kGwPrefetchX : 0) |
                     (!pack_dy && !dy_per_pass ? isa::kGwPrefetchDy : 0);
        const T* xrow = st.origin(sp.pt, sp.pl) + n * st.xn + oh0 * sp.sh * st.xh;
        if (gather_x) {  // [image][pass pixel][gathered_pixel]: consecutive pixels
          x_block.resize(nimg * pass_pixels * gathered_pixel);
          for (int64_t i = 0; i < nimg; ++i) {
            for (int64_t p = 0; p < pass_pixels; ++p) {
              const T* src =
                  xrow + i * st.xn + (p / OW) * sp.sh * st.xh + (p % OW) * sp.sw * st.xw;
              std::memcpy(&x_block[(i * pass_pixels + p) * gathered_pixel], src,
                          sizeof(T) * x.C);
            }
          }
          xrow = x_block.data();
          a.sh = a.sw = 1, a.xn = pass_pixels * gathered_pixel, a.xw = gathered_pixel;
        }
        if (consecutive_pixels || gather_x) {
          // the pass as one row (and its images too where both operands continue from one
          // image to the next): the same pixels in the same order
          a.OW = pass_pixels, a.OH = 1;
          if (a.xn == a.OW * a.xw && a.dyn == a.OW * a.dyp) a.OW *= nimg, a.nimg = 1;
        }
        for (const GwTask& tk : tasks) {
          const int64_t gr = tk.gr, kb = tk.kb, r = tk.r, s = tk.s, c0 = tk.c0, nc = tk.nc;
          const int64_t kvalid = tk.kvalid, off = tk.off;
          const T* dk = dy_per_pass ? drow + (gr * nKB + kb - gk_first) * block_elems
                                    : drow + gr * kpg + kb * KB;
          if (pack_dy) {
            if (packed != gr * nKB + kb) {
              for (int64_t i = 0; i < nimg; ++i) {
                for (int64_t p = 0; p < pass_pixels; ++p) {
                  const T* src = dk + i * dyn + p * dyp;
                  T* dst = &dy_block[(i * pass_pixels + p) * KB];
                  __builtin_prefetch(src + kGwPackDyAhead * dyp);
                  int64_t j = 0;  // whole lines by fixed-size copies (inlined), then the rest
                  for (; j + kLineElems<T> <= kvalid; j += kLineElems<T>) {
                    std::memcpy(dst + j, src + j, 64);
                  }
                  if (j < kvalid) std::memcpy(dst + j, src + j, sizeof(T) * (kvalid - j));
                }
              }
              packed = gr * nKB + kb;
            }
            dk = dy_block.data();
          }
          gw_fn(&a, st.channel(xrow, gr * cpg + c0), dk, (own ? own : sums.target()) + off, nc,
                kvalid, r, s, own ? int(lq > qa) : sums.accumulate(q));
          if (!own) sums.end_pass(q, off, nc, acc_c, kvalid);
        }
      }
    };
    const int64_t chunk_passes = ceil_div(nb, NBI) * nRB;
    if (by_passes) {
      dynamic_for(pass_groups, 1, [&](int64_t gi) {
        const int64_t qa = gi * group_passes, qb = std::min(chunk_passes, qa + group_passes);
        run_passes(0, ntasks, qa, qb, data_of<T>(group_sums) + gi * elems);
      });
    } else {
      at::parallel_for(0, ntasks, 1, [&](int64_t b, int64_t e) {
        run_passes(b, e, 0, chunk_passes, nullptr);
      });
    }
    q0 += chunk_passes;
  }
  if (by_passes) {  // every task's groups onto its accumulators in order, as end_pass does
    const T* gs = data_of<T>(group_sums);
    dynamic_for(ntasks, 1, [&](int64_t t) {
      const GwTask tk = task_of(t);
      for (int64_t gi = 0; gi < pass_groups; ++gi) {
        sums.add_group(gs + gi * elems, gi == 0, tk.off, tk.nc, acc_c, tk.kvalid);
      }
    });
  }
  if (row_runs) {  // [r][s][c][KB] -> [c][r][s][KB] per k-block
    const at::Tensor runs = sums.acc.clone();
    const T* src = runs.const_data_ptr<T>();
    for (int64_t kb = 0; kb < nKB; ++kb) {
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t s_ = 0; s_ < S; ++s_) {
          for (int64_t c = 0; c < cpg; ++c) {
            std::memcpy(ap + kb * panel + (c * R * S + r * S + s_) * KB,
                        src + kb * panel + ((r * S + s_) * cpg + c) * KB, sizeof(T) * KB);
          }
        }
      }
    }
  }
  // accumulators [c][r][s][KB] of a k-block into the weight: register transposes where the
  // weight's channels (and taps) are dense
  const int64_t RS = R * S;
  if (ws1 == 1 || (ws3 == 1 && ws2 == S && ws1 == RS)) {
    at::parallel_for(0, G * nKB, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t gr = t / nKB, kb = t % nKB, kvalid = std::min(KB, kpg - kb * KB);
        const T* src = ap + t * panel;
        T* dst = gw + (gr * kpg + kb * KB) * ws0;
        if (ws1 != 1) {  // contiguous: (c, r, s) is one dense index
          kt->transpose(src, KB, cpg * RS, kvalid, dst, ws0);
          continue;
        }
        for (int64_t tap = 0; tap < RS; ++tap) {
          kt->transpose(src + tap * KB, RS * KB, cpg, kvalid,
                        dst + (tap / S) * ws2 + (tap % S) * ws3, ws0);
        }
      }
    });
    return true;
  }
  if (ws0 == 1) {  // a k-block's lanes are consecutive in the weight (swaps_1x1_grad_weight)
    at::parallel_for(0, G * nKB, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t gr = t / nKB, kb = t % nKB, kvalid = std::min(KB, kpg - kb * KB);
        const T* src = ap + t * panel;
        T* dst = gw + gr * kpg + kb * KB;
        for (int64_t c = 0; c < cpg; ++c) {
          for (int64_t tap = 0; tap < RS; ++tap) {
            std::memcpy(dst + c * ws1 + (tap / S) * ws2 + (tap % S) * ws3,
                        src + (c * RS + tap) * KB, sizeof(T) * kvalid);
          }
        }
      }
    });
    return true;
  }
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(cpg * R * S, 1));
  at::parallel_for(0, g.out_channels, grain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t gr = k / kpg, kk = k % kpg, kb = kk / KB, l = kk % KB;
      const T* src = ap + (gr * nKB + kb) * panel + l;
      for (int64_t c = 0; c < cpg; ++c)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            gw[k * ws0 + c * ws1 + r * ws2 + s * ws3] = src[c * R * S * KB + (r * S + s) * KB];
    }
  });
  return true;
}

// bfloat16 weights (K, C, R, S) packed for the BF16 kernel: [kb][r][s][c2][lane][pair
// element], zero past K and C. Two layouts have a direct pack (the weight gradient's
// grad_output operands are packed every call: through a 6-d ATen permutation, 1.2 ms for
// 0.9 M elements): pairs of channels that are 4-byte words (channel stride 1, even C), which
// are word transposes, and unit output-channel stride, where a pair interleaves two rows of
// lanes.
at::Tensor pack_bf16_weights(const at::Tensor& w, int64_t C2, int64_t nKB) {
  const int64_t K = w.size(0), C = w.size(1), R = w.size(2), S = w.size(3);
  const int64_t KB = isa::kBf16KernelBlock;
  // (the stride of a dimension of size 1 is arbitrary: unsqueeze gives odd ones)
  const auto stride = [&](int64_t d) { return w.size(d) == 1 ? 0 : w.stride(d); };
  const int64_t sk = stride(0), sc = stride(1), sr = stride(2), ss = stride(3);
  const bool word_pairs = sc == 1 && C % 2 == 0 && sk % 2 == 0 && sr % 2 == 0 && ss % 2 == 0 &&
                          reinterpret_cast<uintptr_t>(w.const_data_ptr()) % 4 == 0;
  if (!word_pairs && (sk != 1 || K == 1)) {
    const at::Tensor padded = at::constant_pad_nd(w, {0, 0, 0, 0, 0, 2 * C2 - C, 0, nKB * KB - K});
    return padded.reshape({nKB, KB, C2, 2, R, S}).permute({0, 4, 5, 2, 1, 3}).contiguous();
  }
  at::Tensor out = at::empty({nKB, R, S, C2, KB, 2}, w.options());
  if (K % KB != 0) out.zero_();
  const uint16_t* src = static_cast<const uint16_t*>(w.const_data_ptr());
  uint32_t* dst = static_cast<uint32_t*>(out.data_ptr());
  const Table<float>* kt = isa::kernels_avx512().f32;
  at::parallel_for(0, nKB * R * S, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t kb = t / (R * S), r = t / S % R, s = t % S;
      const int64_t kvalid = std::min(KB, K - kb * KB);
      const uint16_t* base = src + kb * KB * sk + r * sr + s * ss;
      uint32_t* d = dst + t * C2 * KB;
      if (word_pairs) {  // d[c2 * KB + lane] = word c2 of lane's row
        kt->transpose(reinterpret_cast<const float*>(base), sk / 2, kvalid, C2,
                      reinterpret_cast<float*>(d), KB);
        continue;
      }
      for (int64_t c2 = 0; c2 < C2; ++c2) {
        const uint16_t* a = base + 2 * c2 * sc;
        uint32_t* dc = d + c2 * KB;
        if (2 * c2 + 1 < C) {
          const uint16_t* b = a + sc;
          for (int64_t l = 0; l < kvalid; ++l) dc[l] = a[l] | uint32_t(b[l]) << 16;
        } else {
          for (int64_t l = 0; l < kvalid; ++l) dc[l] = a[l];
        }
      }
    }
  });
  return out;
}

// bfloat16 forward on AVX-512 BF16 dot products (isa::Bf16DirectFn), one group: the weights
// packed into k-blocks of channel pairs (kept between calls), the input staged a chunk of images
// at a time into a zero-padded NHWC copy with an even channel count, the output written in
// place through its strides.
// rotated: the convolution's weights are `weight` with input and output channels swapped and
// the taps rotated by 180 degrees (the input gradient of a stride-1 convolution).
bool bf16_forward_on(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                     bool rotated, const std::optional<at::Tensor>& bias, at::Tensor& output) {
  const int64_t C = g.in_channels, K = g.out_channels, R = g.kernel_height, S = g.kernel_width;
  const int64_t C2 = ceil_div(C, 2), KB = isa::kBf16KernelBlock, nKB = ceil_div(K, KB);
  const at::Tensor wp = weight_cache().get(weight, {kPackBf16, rotated, C2, nKB}, [&](bool) {
    return pack_bf16_weights(rotated ? weight.flip({2, 3}).transpose(0, 1) : weight, C2, nKB);
  });
  at::Tensor bp;
  if (bias.has_value()) {
    bp = at::zeros({nKB * KB}, input.options().dtype(at::kFloat));
    bp.narrow(0, 0, K).copy_(*bias);
  }
  const int64_t OH = g.out_height, OW = g.out_width, P = OH * OW, H = g.in_height, W = g.in_width;
  const int64_t Hp = (OH - 1) * g.stride_h + (R - 1) * g.dilation_h + 1;
  const int64_t Wp = (OW - 1) * g.stride_w + (S - 1) * g.dilation_w + 1;
  const bool pads = g.pad_top > 0 || g.pad_left > 0 || Hp > H || Wp > W;
  // channels_last input with an even channel count and no padding: read in place (pairs of
  // channels are 4-byte words)
  const bool in_place = !pads && C % 2 == 0 && input.stride(1) == 1 && input.stride(3) == C &&
                        input.stride(2) % 2 == 0 && input.stride(0) % 2 == 0 &&
                        reinterpret_cast<uintptr_t>(input.const_data_ptr()) % 4 == 0;
  const int64_t rows = std::min(H, Hp - g.pad_top), cols = std::min(W, Wp - g.pad_left);
  const int64_t image = Hp * Wp * C2 * 2;  // bfloat16 elements of a staged image
  const int64_t chunk = in_place ? g.batch : std::clamp<int64_t>(kStageBytes / 2 / image, 1, g.batch);
  const at::Tensor buf = in_place ? at::Tensor() : workspace<int16_t>(Workspace::stage, chunk * image);
  const int64_t xn = in_place ? input.stride(0) / 2 : Hp * Wp * C2;  // in pairs
  const int64_t xh = in_place ? input.stride(2) / 2 : Wp * C2;
  const int64_t nPC = ceil_div(P, isa::kBf16PixelBlock * kDirectTilesPerTask);
  const isa::Bf16Kernels kern = isa::kernels_avx512_bf16();
  const isa::Bf16DirectArgs a{C2, R, S, OW, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w,
                              xh, C2, output.stride(1), output.stride(2), output.stride(3)};
  for (int64_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.batch - n0);
    const uint32_t* x0;
    if (in_place) {
      x0 = static_cast<const uint32_t*>(input.const_data_ptr()) + n0 * xn;
    } else {
      uint32_t* dst = static_cast<uint32_t*>(buf.data_ptr());
      if (input.stride(3) == 1 && input.stride(1) != 1) {
        // rows of channel planes (NCHW): pairs interleaved and transposed, the padding rows and
        // columns zeroed; where input and copy rows are the same dense pixels, blocks of rows
        // are one run (a channel's 16-pixel pieces of one row were too short for the prefetchers)
        const uint16_t* src = static_cast<const uint16_t*>(input.const_data_ptr());
        const int64_t lo = g.pad_left, hi = lo + std::max<int64_t>(cols, 0);
        const bool dense_rows = lo == 0 && hi == Wp && cols == W && input.stride(2) == W;
        const int64_t rb = dense_rows ? std::max<int64_t>(1, 2048 / Wp) : 1;
        const int64_t nRB = ceil_div(Hp, rb);
        dynamic_for(nb * nRB, 1, [&](int64_t t) {
          const int64_t n = t / nRB, r1 = std::min(Hp, (t % nRB + 1) * rb);
          for (int64_t r = t % nRB * rb; r < r1;) {
            const int64_t ih = r - g.pad_top;
            uint32_t* d = dst + (n * Hp + r) * Wp * C2;
            if (ih < 0 || ih >= rows || cols <= 0) {
              std::memset(d, 0, sizeof(uint32_t) * Wp * C2);
              ++r;
              continue;
            }
            int64_t run = 1;  // rows in one call
            while (dense_rows && r + run < r1 && ih + run < rows) ++run;
            std::memset(d, 0, sizeof(uint32_t) * lo * C2);
            std::memset(d + hi * C2, 0, sizeof(uint32_t) * (Wp - hi) * C2);
            kern.pair_rows(src + (n0 + n) * input.stride(0) + ih * input.stride(2),
                           input.stride(1), C, dense_rows ? run * W : cols, d + lo * C2, C2);
            r += run;
          }
        });
      } else {
        const at::Tensor staged = at::from_blob(buf.data_ptr(), {nb, 2 * C2, Hp, Wp},
                                                {Hp * Wp * 2 * C2, 1, Wp * 2 * C2, 2 * C2},
                                                input.options());
        if (pads || C % 2 == 1) staged.zero_();
        if (rows > 0 && cols > 0) {
          staged.narrow(1, 0, C).narrow(2, g.pad_top, rows).narrow(3, g.pad_left, cols)
              .copy_(input.narrow(0, n0, nb).narrow(2, 0, rows).narrow(3, 0, cols));
        }
      }
      x0 = dst;
    }
    uint16_t* y0 = static_cast<uint16_t*>(output.data_ptr()) + n0 * output.stride(0);
    dynamic_for(nb * nKB * nPC, 1, [&](int64_t t) {
      const int64_t pc = t % nPC, kb = (t / nPC) % nKB, n = t / (nPC * nKB);
      kern.direct(&a, x0 + n * xn, y0 + n * output.stride(0) + kb * KB * output.stride(1),
         static_cast<const uint32_t*>(wp.const_data_ptr()) + kb * R * S * C2 * KB,
         bp.defined() ? bp.const_data_ptr<float>() + kb * KB : nullptr,
         std::min(KB, K - kb * KB), P * pc / nPC, P * (pc + 1) / nPC);
    });
  }
  return true;
}

// bfloat16 depthwise over channels_last input and output (isa::Bf16DepthwiseFn): read and
// written in place, the weights widened once to float32 [tap][channel] (kept between calls).
bool bf16_depthwise_on(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::Tensor& output) {
  const int64_t C = g.in_channels, R = g.kernel_height, S = g.kernel_width;
  const at::Tensor wp = weight_cache().get(weight, {kPackBf16Depthwise}, [&](bool) {
    return weight.reshape({C, R * S}).t().to(at::kFloat).contiguous();  // [tap][channel]
  });
  const at::Tensor bp = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const isa::Bf16DepthwiseArgs a{C, g.in_height, g.in_width, R, S, g.stride_h, g.stride_w,
                                 g.dilation_h, g.dilation_w, g.pad_top, g.pad_left,
                                 input.stride(2), input.stride(3), output.stride(2),
                                 output.stride(3)};
  const isa::Bf16DepthwiseFn fn = isa::kernels_avx512_bf16().depthwise;
  const uint16_t* x = static_cast<const uint16_t*>(input.const_data_ptr());
  uint16_t* y = static_cast<uint16_t*>(output.data_ptr());
  const int64_t OH = g.out_height;
  // tasks of whole output rows, about 4096 outputs or more each
  const int64_t rows = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.out_width * C));
  const int64_t nRB = ceil_div(OH, rows);
  dynamic_for(g.batch * nRB, 1, [&](int64_t t) {
    const int64_t n = t / nRB, r0 = t % nRB * rows, r1 = std::min(OH, r0 + rows);
    for (int64_t oh = r0; oh < r1; ++oh) {
      fn(&a, x + n * input.stride(0), y + n * output.stride(0), wp.const_data_ptr<float>(),
         bp.defined() ? bp.const_data_ptr<float>() : nullptr, oh, 0, g.out_width);
    }
  });
  return true;
}

// bfloat16 depthwise weight gradient over channels_last operands (isa::Bf16DepthwiseGradWeightFn):
// tasks of one channel vector and a block of about kBf16DwGradPixels output pixels (whole rows;
// the blocks do not depend on the number of threads), their float32 sums added block by block
// in order, then rounded once.
constexpr int64_t kBf16DwGradPixels = 1024;
void bf16_depthwise_grad_weight_on(const Geometry& g, const at::Tensor& grad_output,
                                   const at::Tensor& input, at::Tensor& grad_weight) {
  const int64_t C = g.in_channels, T = g.kernel_height * g.kernel_width, nCV = ceil_div(C, 16);
  const int64_t rows = g.batch * g.out_height;
  const int64_t rows_per_block = std::max<int64_t>(1, kBf16DwGradPixels / g.out_width);
  const int64_t nRB = ceil_div(rows, rows_per_block);
  const isa::Bf16DepthwiseGradWeightArgs a{
      C, g.in_height, g.in_width, g.kernel_height, g.kernel_width, g.stride_h, g.stride_w,
      g.dilation_h, g.dilation_w, g.pad_top, g.pad_left, g.out_height, g.out_width,
      input.stride(0), input.stride(2), input.stride(3),
      grad_output.stride(0), grad_output.stride(2), grad_output.stride(3)};
  const isa::Bf16DepthwiseGradWeightFn fn = isa::kernels_avx512_bf16().depthwise_grad_weight;
  // partial sums [channel vector][row block][tap][16]
  at::Tensor part = at::empty({nCV, nRB, T, 16}, input.options().dtype(at::kFloat));
  float* pp = part.data_ptr<float>();
  const uint16_t* x = static_cast<const uint16_t*>(input.const_data_ptr());
  const uint16_t* dy = static_cast<const uint16_t*>(grad_output.const_data_ptr());
  dynamic_for(nCV * nRB, 1, [&](int64_t t) {
    const int64_t cv = t / nRB, rb = t % nRB;
    fn(&a, x, dy, pp + t * T * 16, cv * 16, rb * rows_per_block,
       std::min(rows, (rb + 1) * rows_per_block));
  });
  at::Tensor sums = at::empty({C, g.kernel_height, g.kernel_width},
                              input.options().dtype(at::kFloat));
  float* sp = sums.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < T; ++t) {
      const float* q = pp + ((c / 16 * nRB) * T + t) * 16 + c % 16;
      float sum = q[0];
      for (int64_t rb = 1; rb < nRB; ++rb) sum += q[rb * T * 16];
      sp[c * T + t] = sum;
    }
  }
  grad_weight.copy_(sums.view({C, 1, g.kernel_height, g.kernel_width}));  // rounded once
}

}  // namespace

// ---------------------------------------------------------------------------------------------

bool cpu_has_avx512_bf16() {
  return cpu_supports("avx512") && __builtin_cpu_supports("avx512bf16");
}

// The bfloat16 kernels apply: every operand (null: absent) is bfloat16, the dims are not empty,
// the CPU has AVX512_BF16 and the avx512 path is selected (another forced ISA runs bfloat16
// widened on its float32 kernels).
bool bf16_eligible(const Geometry& g, std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors) {
    if (t && t->scalar_type() != at::kBFloat16) return false;
  }
  static const bool available = cpu_has_avx512_bf16();
  return available && dims_ok(g) && current<float>() == isa::kernels_avx512().f32;
}

bool try_forward_bf16(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias, at::Tensor& output) {
  if (!bf16_eligible(g, {&input, &weight, &output, bias.has_value() ? &*bias : nullptr})) {
    return false;
  }
  if (g.groups == 1) return bf16_forward_on(g, input, weight, /*rotated=*/false, bias, output);
  const bool depthwise = g.groups == g.in_channels && g.groups == g.out_channels;
  if (depthwise && input.stride(1) == 1 && output.stride(1) == 1) {
    return bf16_depthwise_on(g, input, weight, bias, output);
  }
  return false;
}

namespace {

// The input gradient as stride-1 convolutions over grad_output, one per phase (a, b) of
// grad_input (rows a + i*stride_h, columns b + j*stride_w; one phase at stride 1), with the
// taps that reach the phase in rotated order (as grad_input_on): f(grad_output, tap rows, tap
// columns, the phase's geometry, its view of grad_input) for each phase that a tap reaches;
// the others are zeroed. A leading offset into grad_output becomes a slice of it, a trailing
// one the kernels' zero padding.
template <typename F>
void for_grad_input_phases(const Geometry& g, const at::Tensor& grad_output,
                           at::Tensor& grad_input, const F& f) {
  const auto longs = [](const std::vector<int64_t>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kLong));
  };
  for (int64_t a = 0; a < std::min(g.stride_h, g.in_height); ++a) {
    for (int64_t b = 0; b < std::min(g.stride_w, g.in_width); ++b) {
      at::Tensor out =
          grad_input.slice(2, a, g.in_height, g.stride_h).slice(3, b, g.in_width, g.stride_w);
      const GradInputPhase ph = grad_input_phase(g, a, b);
      const int64_t sr = std::max<int64_t>(ph.q_r, 0), sc = std::max<int64_t>(ph.q_s, 0);
      if (ph.empty() || sr >= g.out_height || sc >= g.out_width) {
        out.zero_();  // no tap reaches the phase, or every tap reads past grad_output
        continue;
      }
      const at::Tensor dy = grad_output.narrow(2, sr, g.out_height - sr)
                                .narrow(3, sc, g.out_width - sc);
      const Geometry phase{g.batch, g.out_channels, dy.size(2), dy.size(3), g.in_channels,
                           int64_t(ph.rows.size()), int64_t(ph.cols.size()), out.size(2),
                           out.size(3), 1, 1, sr - ph.q_r, sc - ph.q_s, ph.dil_r, ph.dil_s,
                           g.groups};
      f(dy, longs({ph.rows.rbegin(), ph.rows.rend()}), longs({ph.cols.rbegin(), ph.cols.rend()}),
        phase, out);
    }
  }
}

}  // namespace

bool try_grad_input_bf16(const Geometry& g, const at::Tensor& grad_output,
                         const at::Tensor& weight, at::Tensor& grad_input) {
  if (!bf16_eligible(g, {&grad_output, &weight, &grad_input})) return false;
  const bool depthwise = g.groups == g.in_channels && g.groups == g.out_channels;
  if (depthwise && grad_output.stride(1) == 1 && grad_input.stride(1) == 1) {
    // per phase, the depthwise forward kernel with the phase's rotated taps (packed per call)
    const WeightCacheBypass phase_weights_are_new;
    for_grad_input_phases(g, grad_output, grad_input,
                          [&](const at::Tensor& dy, const at::Tensor& rows, const at::Tensor& cols,
                              const Geometry& phase, at::Tensor& out) {
                            const at::Tensor w = weight.index_select(2, rows).index_select(3, cols);
                            bf16_depthwise_on(phase, dy, w, std::nullopt, out);
                          });
    return true;
  }
  // (few input channels, e.g. an RGB stem's, would fill few lanes of the kernel's 32 output
  // channels: the float32 kernels reduce over the channels instead)
  if (g.groups != 1 || g.in_channels < kBf16GradInputMinChannels) return false;
  const int64_t pt = g.dilation_h * (g.kernel_height - 1) - g.pad_top;
  const int64_t pl = g.dilation_w * (g.kernel_width - 1) - g.pad_left;
  if (g.stride_h == 1 && g.stride_w == 1 && pt >= 0 && pl >= 0) {
    // the input gradient of a stride-1 convolution: a convolution over grad_output with the
    // rotated weights (packed once, kept) and padding d*(R-1) - p in front
    const Geometry over_dy{g.batch, g.out_channels, g.out_height, g.out_width, g.in_channels,
                           g.kernel_height, g.kernel_width, g.in_height, g.in_width, 1, 1,
                           pt, pl, g.dilation_h, g.dilation_w, 1};
    return bf16_forward_on(over_dy, grad_output, weight, /*rotated=*/true, std::nullopt,
                           grad_input);
  }
  // strided (or padded past the window): per phase, its weights packed every call
  const WeightCacheBypass phase_weights_are_new;
  const at::Tensor wt = weight.transpose(0, 1);  // (C, K, R, S)
  for_grad_input_phases(g, grad_output, grad_input,
                        [&](const at::Tensor& dy, const at::Tensor& rows, const at::Tensor& cols,
                            const Geometry& phase, at::Tensor& out) {
                          const at::Tensor w = wt.index_select(2, rows).index_select(3, cols);
                          bf16_forward_on(phase, dy, w, /*rotated=*/false, std::nullopt, out);
                        });
  return true;
}

bool try_grad_weight_bf16(const Geometry& g, const at::Tensor& grad_output,
                          const at::Tensor& input, at::Tensor& grad_weight) {
  if (!bf16_eligible(g, {&grad_output, &input, &grad_weight})) return false;
  const bool depthwise = g.groups == g.in_channels && g.groups == g.out_channels;
  if (depthwise && input.stride(1) == 1 && grad_output.stride(1) == 1) {
    bf16_depthwise_grad_weight_on(g, grad_output, input, grad_weight);
    return true;
  }
  if (g.groups != 1) return false;
  if (g.kernel_height == 1 && g.kernel_width == 1 && g.pad_top == 0 && g.pad_left == 0) {
    // 1x1 (unpadded): grad_weight[k][c] = sum over n and pixels p of dy[n][k][p] x[n][c][p'],
    // the convolution of one image of C pixels in a row of N images, its channels the pixels
    // p (NCHW: the pixels of a plane are contiguous, so a dense NCHW input with an even
    // pixel count is read in place), with K filters of N x 1 taps (grad_output's images) over
    // those channels: the pixels are the reduction and every output pixel one input channel.
    const at::Tensor x = input.slice(2, 0, (g.out_height - 1) * g.stride_h + 1, g.stride_h)
                             .slice(3, 0, (g.out_width - 1) * g.stride_w + 1, g.stride_w)
                             .flatten(2);
    const int64_t P = g.out_height * g.out_width;
    const Geometry swapped{1, P, g.batch, g.in_channels, g.out_channels, g.batch, 1, 1,
                           g.in_channels, 1, 1, 0, 0, 1, 1, 1};
    const WeightCacheBypass dy_changes_every_call;
    at::Tensor out = grad_weight.flatten(1).unsqueeze(0).unsqueeze(2);  // (1, K, 1, C)
    return bf16_forward_on(swapped, x.permute({2, 0, 1}).unsqueeze(0),
                           grad_output.flatten(2).permute({1, 2, 0}).unsqueeze(3),
                           /*rotated=*/false, std::nullopt, out);
  }
  if (g.kernel_height * g.kernel_width < kBf16GradWeightMinTaps) return false;
  // grad_weight[k][c][r][s] = sum over n, oh, ow of dy[n][k][oh][ow] x[n][c][...]: the
  // convolution of the input's channels as images (its images as channels) with grad_output's
  // channels as filters (its images as their channels, its pixels as taps): strides and
  // dilations swap; the output's pixels are the R x S taps. grad_output is packed anew every
  // call (a kept packing would never be found again: it changes every step).
  const Geometry swapped{g.in_channels, g.batch, g.in_height, g.in_width, g.out_channels,
                         g.out_height, g.out_width, g.kernel_height, g.kernel_width,
                         g.dilation_h, g.dilation_w, g.pad_top, g.pad_left, g.stride_h,
                         g.stride_w, 1};
  const WeightCacheBypass dy_changes_every_call;
  at::Tensor out = grad_weight.transpose(0, 1);
  return bf16_forward_on(swapped, input.transpose(0, 1), grad_output.transpose(0, 1),
                         /*rotated=*/false, std::nullopt, out);
}

namespace {

// Rows of pixels per block of try_channel_sums (the blocks' sums are added pairwise).
constexpr int64_t kChannelSumRows = 64;

template <typename T>
at::Tensor channel_sums(const Table<T>* kt, const at::Tensor& t) {
  const int64_t C = t.size(1), rows = t.numel() / C, blocks = ceil_div(rows, kChannelSumRows);
  at::Tensor partial = at::empty({blocks, C}, t.options());
  const T* x = t.const_data_ptr<T>();
  T* ps = partial.mutable_data_ptr<T>();
  constexpr int64_t kBlocksPerTask = 8;
  dynamic_for(ceil_div(blocks, kBlocksPerTask), 1, [&](int64_t t) {
    for (int64_t b = t * kBlocksPerTask; b < std::min(blocks, (t + 1) * kBlocksPerTask); ++b) {
      const int64_t r0 = b * kChannelSumRows;
      kt->column_sums(x + r0 * C, std::min(kChannelSumRows, rows - r0), C, C, ps + b * C);
    }
  });
  for (int64_t step = 1; step < blocks; step *= 2) {  // pairwise, a fixed order
    for (int64_t b = 0; b + step < blocks; b += 2 * step) {
      for (int64_t c = 0; c < C; ++c) ps[b * C + c] += ps[(b + step) * C + c];
    }
  }
  return partial[0].clone();  // (a view would keep all the blocks' sums alive)
}

}  // namespace

std::optional<at::Tensor> try_channel_sums(const at::Tensor& t) {
  // at::sum over (0, 2, 3) of a channels_last tensor took about twice the time of a full
  // reduction of it (MBv2 dw 8 x 144 x 56 x 56: 0.26-0.31 ms against 0.13-0.15)
  // plain CPU tensors only: not batched (vmap over a backward, is_grads_batched), not a
  // Python subclass or functorch wrapper
  const c10::DispatchKeySet wrapped{c10::DispatchKey::Python, c10::DispatchKey::Batched,
                                    c10::DispatchKey::FuncTorchBatched,
                                    c10::DispatchKey::FuncTorchGradWrapper,
                                    c10::DispatchKey::Functionalize};
  if (t.key_set().has_any(wrapped) || !t.has_storage() || t.dim() != 4 ||
      t.device().type() != c10::DeviceType::CPU || t.numel() == 0 || t.size(1) < 2 ||
      !t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return std::nullopt;
  }
  if (t.scalar_type() == at::kFloat && current<float>()) {
    return channel_sums(current<float>(), t);
  }
  if (t.scalar_type() == at::kDouble && current<double>()) {
    return channel_sums(current<double>(), t);
  }
  return std::nullopt;
}

bool try_forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
                 const std::optional<at::Tensor>& bias, at::Tensor& output) {
  return on_kernels(g, {&input, &weight, &output, bias.has_value() ? &*bias : nullptr},
                    [&](const auto* kt) { return forward_on(kt, g, input, weight, bias, output); });
}

bool try_grad_input(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                    at::Tensor& grad_input) {
  return on_kernels(g, {&grad_output, &weight, &grad_input}, [&](const auto* kt) {
    return grad_input_on(kt, g, grad_output, weight, grad_input);
  });
}

bool try_grad_weight(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& input,
                     at::Tensor& grad_weight) {
  return on_kernels(g, {&grad_output, &input, &grad_weight}, [&](const auto* kt) {
    return grad_weight_on(kt, g, grad_output, input, grad_weight);
  });
}

// ---------------------------------------------------------------------------------------------

void set_cpu_isa(const std::string& name) {
  if (std::find(std::begin(kIsaNames), std::end(kIsaNames), name) == std::end(kIsaNames)) {
    throw std::invalid_argument("torchconv: unknown CPU ISA '" + name +
                                "' (expected avx512, avx2, scalar, generic or avx512-emulated)");
  }
  if (!cpu_supports(name)) {
    if (name == "avx512-emulated") {
      throw std::invalid_argument(
          "torchconv: the 'avx512-emulated' ISA is built only with TORCHCONV_AVX512_EMULATED=1 "
          "(and needs AVX2)");
    }
    throw std::invalid_argument("torchconv: this CPU does not support the '" + name + "' ISA");
  }
  IsaState& st = isa_state();
  std::lock_guard<std::mutex> lock(st.mu);
  st.select(name);
}

at::Tensor kept_float32_copy(const at::Tensor& weight) {
  return weight_cache().get(weight, {kFloat32Copy},
                            [&](bool) { return weight.to(at::kFloat); });  // keeps the layout
}

namespace {

// Output rows [r0, r1) and columns [c0, c1) have their windows inside the input (the first
// and the last tap inside); the other output pixels (the frame) reach into the padding.
struct PaddingFrame {
  int64_t r0, r1, c0, c1;
  explicit PaddingFrame(const Geometry& g) {
    std::tie(r0, r1) = inside(g.out_height, g.in_height, g.stride_h, g.pad_top,
                              (g.kernel_height - 1) * g.dilation_h);
    std::tie(c0, c1) = inside(g.out_width, g.in_width, g.stride_w, g.pad_left,
                              (g.kernel_width - 1) * g.dilation_w);
  }
  static std::pair<int64_t, int64_t> inside(int64_t out, int64_t in, int64_t stride,
                                            int64_t pad, int64_t extent) {
    const int64_t first = generic::valid_outputs(out, in, stride, pad, 0).first;
    const int64_t end = generic::valid_outputs(out, in, stride, pad, extent).last;
    return {first, std::max(first, end)};
  }
};

template <typename T>
bool is_finite_value(T v) {
  const auto f = static_cast<at::opmath_type<T>>(v);
  return f - f == 0;  // inf - inf and NaN - NaN are NaN (and compare unequal)
}
template <typename T>
bool is_finite_value(c10::complex<T> v) {
  return is_finite_value(v.real()) && is_finite_value(v.imag());
}

// All of n elements `stride` apart finite. float32 / float64 by the largest magnitude's bits
// (an integer maximum, which the compiler vectorises; inf and NaN have all exponent bits set).
template <typename T>
bool run_is_finite(const T* p, int64_t n, int64_t stride) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    using Bits = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint64_t>;
    constexpr Bits magnitude = ~Bits(0) >> 1;
    constexpr Bits exponent = std::is_same_v<T, float> ? Bits(0x7f800000u)
                                                       : Bits(0x7ff0000000000000ull);
    Bits largest = 0;
    for (int64_t i = 0; i < n; ++i) {
      Bits bits;
      std::memcpy(&bits, p + i * stride, sizeof(T));
      largest = std::max<Bits>(largest, bits & magnitude);
    }
    return largest < exponent;
  } else {
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) ok &= is_finite_value(p[i * stride]);
    return ok;
  }
}

// (integer types are always finite)
bool has_nonfinite_values(at::ScalarType type) {
  return at::isFloatingType(type) || at::isComplexType(type);
}

}  // namespace

bool is_finite(const at::Tensor& t) {
  if (!has_nonfinite_values(t.scalar_type())) return true;
  if (!t.is_non_overlapping_and_dense() || t.is_conj()) return at::isfinite(t).all().item<bool>();
  bool finite = true;
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(),
                                              "is_finite", [&] {
    // (dense: its elements fill [data, data + numel) in some order)
    finite = run_is_finite(t.const_data_ptr<scalar_t>(), t.numel(), 1);
  });
  return finite;
}

bool weight_is_finite(const at::Tensor& weight) {
  const at::Tensor flag = weight_cache().get(weight, {kFiniteFlag}, [&](bool) {
    return at::scalar_tensor(is_finite(weight), at::kBool);  // (one byte kept)
  });
  return flag.item<bool>();
}

int64_t padding_frame_pixels(const Geometry& g) {
  const PaddingFrame f(g);
  return g.out_height * g.out_width - (f.r1 - f.r0) * (f.c1 - f.c0);
}

bool padding_frame_is_finite(const Geometry& g, const at::Tensor& grad_output) {
  const auto [r0, r1, c0, c1] = PaddingFrame(g);
  const int64_t OH = g.out_height, OW = g.out_width, K = g.out_channels;
  if ((r0 == 0 && r1 == OH && c0 == 0 && c1 == OW) ||
      !has_nonfinite_values(grad_output.scalar_type())) {
    return true;
  }
  const at::Tensor& d = grad_output;
  const int64_t sn = d.stride(0), sk = d.stride(1), sh = d.stride(2), sw = d.stride(3);
  std::atomic<bool> finite{true};
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(at::kHalf, at::kBFloat16, d.scalar_type(),
                                              "padding_frame_is_finite", [&] {
    const scalar_t* base = d.const_data_ptr<scalar_t>();
    at::parallel_for(0, g.batch, 1, [&](int64_t n0, int64_t n1) {
      bool ok = true;
      for (int64_t n = n0; n < n1 && ok; ++n) {
        const scalar_t* img = base + n * sn;
        // a row's frame columns: all of them outside [r0, r1), else both ends
        const auto row = [&](int64_t oh, const auto& check) {
          if (oh < r0 || oh >= r1) return check(img + oh * sh, 0, OW);
          return check(img + oh * sh, 0, c0) && check(img + oh * sh, c1, OW);
        };
        for (int64_t oh = 0; oh < OH && ok; ++oh) {
          if (sk == 1 && sw != 1) {  // channels_last: a pixel's channels are contiguous
            ok = row(oh, [&](const scalar_t* p, int64_t a, int64_t b) {
              for (int64_t ow = a; ow < b; ++ow) {
                if (!run_is_finite(p + ow * sw, K, 1)) return false;
              }
              return true;
            });
          } else {
            for (int64_t k = 0; k < K && ok; ++k) {
              ok = row(oh, [&](const scalar_t* p, int64_t a, int64_t b) {
                return run_is_finite(p + k * sk + a * sw, b - a, sw);
              });
            }
          }
        }
      }
      if (!ok) finite.store(false, std::memory_order_relaxed);
    });
  });
  return finite.load();
}

WeightCacheBypass::WeightCacheBypass() : previous_(weight_cache_bypassed) {
  weight_cache_bypassed = true;
}
WeightCacheBypass::~WeightCacheBypass() { weight_cache_bypassed = previous_; }

void set_cpu_winograd(bool on) { winograd_switch().store(on, std::memory_order_relaxed); }
bool cpu_winograd() { return winograd_switch().load(std::memory_order_relaxed); }

std::string cpu_isa() {
  IsaState& st = isa_state();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.name;
}

std::vector<std::string> available_cpu_isas() {
  std::vector<std::string> out;
  for (const char* n : kIsaNames) {
    if (cpu_supports(n)) out.push_back(n);
  }
  return out;
}

namespace {
template <typename T>
double peak_of(const Table<T>* kt, double seconds) {
  T sink = 0;
  // calibrate on one thread
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    kt->fma_loop(iters, &sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.02 || iters > (int64_t(1) << 40)) {
      iters = std::max<int64_t>(1, int64_t(iters * seconds / dt));
      break;
    }
    iters *= 4;
  }
  const int nt = at::get_num_threads();
  std::vector<double> flops(nt, 0.0);
  std::vector<T> sinks(nt, T(0));
  const auto t0 = std::chrono::steady_clock::now();
  at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) flops[i] = kt->fma_loop(iters, &sinks[i]);
  });
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / dt * 1e-9;
}
}  // namespace

double fma_peak_gflops(double seconds, bool float64) {
  const isa::IsaKernels best = kernels_of(best_isa());  // ISA "generic": the best one's loop
  if (float64) {
    const Table<double>* kt = current<double>();
    return peak_of(kt ? kt : best.f64, seconds);
  }
  const Table<float>* kt = current<float>();
  return peak_of(kt ? kt : best.f32, seconds);
}

}  // namespace torchconv::cpu::fast
