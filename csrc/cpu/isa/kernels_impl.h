// The one templated implementation of every fast CPU kernel, instantiated once per ISA and
// element type.
//
// Included by kernels_avx512.cpp / kernels_avx2.cpp / kernels_scalar.cpp *inside* a per-ISA,
// per-type namespace, after that TU defined `struct V` (the vector wrapper; one per element
// type) and the tile sizes (one set per TU):
//   V::T element type (float / double); V::N lanes; V::reg; zero(), set1(f), load(p),
//   load_n(p, n), bcast(p), store(p, v), store_n(p, v, n), add(a, b), fma(a, b, c) = a*b + c,
//   fma_bcast(p, b, c) = fma(bcast(p), b, c);
//   stream(p, v): a non-temporal store where p is vector-aligned (else a normal one), fence():
//   orders streaming stores;
//   transpose(src, sc, dst, dc, nc, nw): dst[i*dc + c] = src[c*sc + i], c < nc, i < nw <= N;
//   optionally interleave_rows_n<C, STREAM>(src, sc, W, dst) (see HasInterleaveRows).
//   DIRECT_NV, DIRECT_NP  : output-channel vectors x pixels of the direct-conv register tile
//   DIRECT_WIDE_NV/NP     : a second, wider-in-channels tile (used when K fills it)
//   DIRECT_MID_NV/NP      : a third, between the two (K a multiple of it but not of the wide)
//   DIRECT_NARROW_NP      : pixels of the one-vector direct tile (groups of <= V::N outputs)
//   GW_NV, GW_NC          : output-channel vectors x input channels of the grad_weight tile
//   GW_WIDE_NV/NC         : a second grad_weight tile with more output channels
//   GW_NARROW_NC          : input channels of the one-vector grad_weight tile
//   PD_NK, PD_NV          : output channels x pixel vectors of the NCHW 1x1 direct tile
//                           (PD_NK divides both direct kernel blocks)
//   PG_NK, PG_NC          : output x input channels of the NCHW 1x1 grad_weight tile
//                           (one accumulator vector each)
//   DW_NP                 : pixels per depthwise tile
//   DW3_NP                : pixels per tile of the 3x3 depthwise kernel (9 tap registers)
//   PLANE_NS              : row vectors per tile of the NCHW-plane depthwise kernels
//   PLANE_ROWS            : output rows per tile of the 3x3 NCHW-plane depthwise kernel
//   GP_NS                 : row vectors per tile of the NCHW-plane grouped kernel (x 4 outputs)
//   FMA_CHAINS            : independent chains of the FMA peak loop
// No includes here (see kernel_api.h for why).

#define TC_UNROLL _Pragma("GCC unroll 32")

typedef V::T T;  // element type: float or double

static inline int64_t tc_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t tc_abs(int64_t a) { return a < 0 ? -a : a; }

// Loads lanes [0, n) of a vector (n may be >= N: full load; <= 0: zeros).
static inline V::reg load_k(const T* p, int64_t n) {
  if (n >= V::N) return V::load(p);
  if (n <= 0) return V::zero();
  return V::load_n(p, (int)n);
}

// Elements per 64-byte cache line (software prefetches).
static constexpr int64_t kLineElems = 64 / int64_t(sizeof(T));
// Channel steps of direct_tile_rows per line it prefetches ahead: 6 x 2 AVX2 tiles make 96
// multiply-adds of them, enough that the prefetches never queue up behind each other (see
// direct_pixels_t).
static constexpr int64_t kAheadLineSteps = 8;

// ------------------------------------------------------------------------------------------
// Direct convolution: register tile of NP pixels x NV vectors of output channels. Input
// scalars are broadcast, packed weight vectors loaded once per (tap, channel) and reused by
// every pixel of the tile. Summation order per output: taps (r, s) in order, then channels in
// order, in blocks (see TC_BLOCK), the bias added last.

// The reduction is summed in blocks of TC_BLOCK products: each block into fresh accumulators,
// the block sums added in order (in an L1 array) in groups of kMidBlocks, the group sums added
// in order, then the bias. Error grows with the block length plus the number of blocks per
// group plus the number of groups instead of with the whole reduction (C*R*S can be
// thousands; 64 / 16 measured best for 1x1 over 1024 channels and 3x3 over 256); the order is
// fixed, so results stay independent of threads and ISA. The bias
// comes last because partial sums that start from it carry its magnitude through every
// rounding (1x1 layers with short reductions: up to 1.8x the error of adding it at the end).
#define TC_BLOCK 64

// Ends a block of a weight-gradient sum: adds the block's partial sums onto the accumulator
// in memory (or starts it) and clears them.
static inline void end_block(T* p, V::reg* v, int* started) {
  V::store(p, *started ? V::add(V::load(p), *v) : *v);
  *v = V::zero();
}

// Blocks summed onto a middle level before it goes onto the accumulator (direct tiles, and
// weight-gradient reductions that run over a whole batch: 25088 pixels of MBv2 / ResNeXt
// layers are ~200 blocks; added one by one onto the accumulator, their rounding errors
// outweigh those of the blocks themselves).
enum { kMidBlocks = 16 };

// acc[j] += (*x broadcast) * w[j], j < NV: the register tiles' step. A scalar that feeds at
// most 2 vectors is an embedded-broadcast operand of each multiply-add (GoogLeNet 5x5: 2-4%
// faster); one that feeds more is broadcast once into a register, as fma_bcast would load it
// NV times (the wide tiles: R50 stem 12.0 -> 13.5-14.0 ms).
template <int NV>
static inline void fma_scalar(const T* x, const V::reg* w, V::reg* acc) {
  if (NV <= 2) {
    TC_UNROLL for (int j = 0; j < NV; ++j) acc[j] = V::fma_bcast(x, w[j], acc[j]);
  } else {
    const V::reg b = V::bcast(x);
    TC_UNROLL for (int j = 0; j < NV; ++j) acc[j] = V::fma(b, w[j], acc[j]);
  }
}

// Pixels per register chain of the dense weight-gradient tile.
enum { kGwChain = 32 };

// Output rows of `ow` pixels per weight-gradient block (about TC_BLOCK products per lane).
static inline int64_t rows_per_block(int64_t ow) {
  return ow >= TC_BLOCK ? 1 : TC_BLOCK / ow;
}

// Products per block of the direct tiles' sums (DirectArgs::block; 0: TC_BLOCK).
static inline int64_t direct_block_len(const DirectArgs* a) {
  return a->block > 0 ? a->block : TC_BLOCK;
}

// Ends a block of the direct tile's three-level sums: the block's sums go onto the group's
// (tot), a group of kMidBlocks onto the middle level (mid); acc is cleared.
template <int NP, int NV>
static inline __attribute__((always_inline)) void end_tile_block(
    V::reg (&acc)[NP][NV], T (&tot)[NP][NV * V::N], T (&mid)[NP][NV * V::N], int* blocks,
    int* mid_started) {
  const bool group_ends = ++*blocks == kMidBlocks;
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      const V::reg t = V::add(V::load(&tot[p][j * V::N]), acc[p][j]);
      acc[p][j] = V::zero();
      if (!group_ends) {
        V::store(&tot[p][j * V::N], t);
        continue;
      }
      V::store(&mid[p][j * V::N], *mid_started ? V::add(V::load(&mid[p][j * V::N]), t) : t);
      V::store(&tot[p][j * V::N], V::zero());
    }
  }
  if (group_ends) *mid_started = 1, *blocks = 0;
}

// acc += the ended blocks' sums (tot, then mid): the last step of the three-level sums.
template <int NP, int NV>
static inline __attribute__((always_inline)) void add_tile_blocks(
    V::reg (&acc)[NP][NV], T (&tot)[NP][NV * V::N], T (&mid)[NP][NV * V::N], int mid_started) {
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      acc[p][j] = V::add(V::load(&tot[p][j * V::N]), acc[p][j]);
      if (mid_started) acc[p][j] = V::add(V::load(&mid[p][j * V::N]), acc[p][j]);
    }
  }
}

// The tile's sums plus bias, stored to its outputs (FULL: all NV vectors of channels valid).
template <int NP, int NV, bool FULL>
static inline __attribute__((always_inline)) void direct_tile_finish(
    const DirectArgs* a, V::reg (&acc)[NP][NV], T* const* yp, const T* bias, int64_t kvalid) {
  typedef V::reg reg;
  if (bias) {
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      const reg b = V::load(bias + j * V::N);
      TC_UNROLL for (int p = 0; p < NP; ++p) acc[p][j] = V::add(acc[p][j], b);
    }
  }
  if (FULL && a->yk == 1) {
    if (a->stream) {
      TC_UNROLL for (int p = 0; p < NP; ++p) {
        TC_UNROLL for (int j = 0; j < NV; ++j) V::stream(yp[p] + j * V::N, acc[p][j]);
      }
    } else {
      TC_UNROLL for (int p = 0; p < NP; ++p) {
        TC_UNROLL for (int j = 0; j < NV; ++j) V::store(yp[p] + j * V::N, acc[p][j]);
      }
    }
  } else if (a->yk == 1) {
    const bool stream = a->stream;
    TC_UNROLL for (int p = 0; p < NP; ++p) {
      TC_UNROLL for (int j = 0; j < NV; ++j) {
        const int64_t n = kvalid - j * V::N;
        if (n >= V::N && stream) V::stream(yp[p] + j * V::N, acc[p][j]);
        else if (n >= V::N) V::store(yp[p] + j * V::N, acc[p][j]);
        else if (n > 0) V::store_n(yp[p] + j * V::N, acc[p][j], (int)n);
      }
    }
  } else {
    // (rows up to a whole vector of pixels: the transposes below store whole vectors)
    constexpr int NPV = (NP + V::N - 1) / V::N * V::N;
    T buf[NPV][NV * V::N];
    TC_UNROLL for (int p = 0; p < NP; ++p) {
      TC_UNROLL for (int j = 0; j < NV; ++j) V::store(&buf[p][j * V::N], acc[p][j]);
    }
    TC_UNROLL for (int p = NP; p < NPV; ++p) {
      TC_UNROLL for (int j = 0; j < NV; ++j) V::store(&buf[p][j * V::N], V::zero());
    }
    const int64_t yk = a->yk;
    if (a->yw == 1 && a->yh == a->OW) {
      // Consecutive pixels (dense rows): register transposes of N pixels x up to N channels.
      // Only direct_pixels_nchw's run buffer gets here: its channel rows have kRunSlack
      // pixels of slack and the tiles run in pixel order, so the lanes past the tile's pixels
      // may be stored (the next tile overwrites them) where a masked store would be
      // microcoded on AMD (AVX2: R50 stem NCHW forward 1.4x slower than channels_last).
      for (int j = 0; j < NV && j * V::N < kvalid; ++j) {
        const int nk = (int)tc_min(V::N, kvalid - j * V::N);
        for (int p = 0; p < NP; p += V::N) {
          V::transpose(&buf[p][j * V::N], NV * V::N, yp[0] + j * V::N * yk + p, yk, V::N, nk);
        }
      }
    } else {
      for (int64_t k = 0; k < kvalid; ++k) {
        TC_UNROLL for (int p = 0; p < NP; ++p) yp[p][k * yk] = buf[p][k];
      }
    }
  }
}

// The register tile of NP pixels x NV vectors of output channels over any window: one run of
// C channels per tap (channel stride xc; UNIT: 1). Windows whose rows are runs of
// consecutive elements take direct_tile_rows below.
template <int NP, int NV, bool UNIT, bool FULL>
static void direct_tile(const DirectArgs* a, const T* const* xp, T* const* yp,
                        const T* wpanel, const T* bias, int64_t kvalid) {
  typedef V::reg reg;
  reg acc[NP][NV];
  T tot[NP][NV * V::N];  // sums of the blocks (of the current group of kMidBlocks)
  T mid[NP][NV * V::N];  // sums of the groups
  int mid_started = 0, blocks = 0;
  const int64_t C = a->C, xc = a->xc;
  // a reduction of one block needs no block sums
  const int64_t block_len = direct_block_len(a);
  const bool one_block = a->R * a->S * C <= block_len;
  const int64_t block = one_block ? block_len + 1 : block_len;
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      if (!one_block) V::store(&tot[p][j * V::N], V::zero());
      acc[p][j] = V::zero();
    }
  }
  const T* w = wpanel;
  int64_t pending = 0;  // products in acc since the last block
  for (int64_t r = 0; r < a->R; ++r) {
    for (int64_t s = 0; s < a->S; ++s) {
      const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw;
      const T* xq[NP];
      TC_UNROLL for (int p = 0; p < NP; ++p) xq[p] = xp[p] + toff;
      for (int64_t c0 = 0; c0 < C;) {
        const int64_t c1 = tc_min(C, c0 + (block - pending));
        if constexpr (UNIT) {
          for (int64_t c = c0; c < c1; ++c) {
            reg wv[NV];
            TC_UNROLL for (int j = 0; j < NV; ++j) wv[j] = V::load(w + j * V::N);
            TC_UNROLL for (int p = 0; p < NP; ++p) fma_scalar<NV>(xq[p] + c, wv, acc[p]);
            w += NV * V::N;
          }
        } else {
          for (int64_t c = c0; c < c1; ++c) {
            reg wv[NV];
            TC_UNROLL for (int j = 0; j < NV; ++j) wv[j] = V::load(w + j * V::N);
            const int64_t co = c * xc;
            TC_UNROLL for (int p = 0; p < NP; ++p) {
              const reg bx = V::bcast(xq[p] + co);
              TC_UNROLL for (int j = 0; j < NV; ++j) acc[p][j] = V::fma(bx, wv[j], acc[p][j]);
            }
            w += NV * V::N;
          }
        }
        pending += c1 - c0;
        c0 = c1;
        if (pending == block) {
          end_tile_block<NP, NV>(acc, tot, mid, &blocks, &mid_started);
          pending = 0;
        }
      }
    }
  }
  if (!one_block) add_tile_blocks<NP, NV>(acc, tot, mid, mid_started);
  direct_tile_finish<NP, NV, FULL>(a, acc, yp, bias, kvalid);
}


// direct_tile where each window row of a pixel is one run of consecutive input elements
// (channel-contiguous pixels with dense columns and no column dilation: S taps x C channels;
// a 1x1 is one such row; an RGB stem would otherwise pay the tap loop every 3 multiply-adds).
// The same sums in the same order as direct_tile would compute, in a short function of its
// own: inside direct_tile's loops GCC left the 3 x 4 tile a weight vector short of registers
// (read from memory at every multiply-add) and spilled around every row (Zen 2, one thread,
// the kernel alone: MBv2 pointwise 24 -> 144 channels_last 60 -> 64 GFLOP/s streamed, 69 ->
// 76 not; R50 stem 82 -> 87).
//
// Lines [pf, pf_end) (a share of the next task's input, see direct_pixels_t) go into L2 one
// per kAheadLineSteps channel steps, between the multiply-adds. Tiles without them keep a
// plain loop: one loop for both, checking for a line every kAheadLineSteps, measured 3-6%
// slower (Zen 2, AVX2, switched within one process, channels_last forward, 2 threads: R50 1x1
// 256 -> 64 10.3 -> 10.9 ms, R50 stem 15.9 -> 16.4, MBv2 pointwise 3.34 -> 3.44).
//
// One call runs all kblocks k-blocks of the tile (DirectArgs::kblocks; the panels follow each
// other, so w runs on), each with its share of [pf, pf_end). A call per k-block paid this
// function's entry, its caller's per-k-block pointers and the tile dispatch for every 24 to
// 256 channel steps (16% of a 64 -> 64 1x1 tile's samples outside its loop; Zen 2, AVX2, 2
// threads, switched within one process, channels_last forward, ms: MBv2 pointwise 24 -> 144
// 2.43 -> 1.93, R50 1x1 256 -> 64 6.98 -> 6.65, MBv2 32 -> 16 over 112 x 112 1.81 -> 1.62; R50
// 1x1 64 -> 256, R50 stem, the input gradient of MBv2 pointwise within noise).
// FULL_PIXELS: all NP pixels exist.
template <int NP, int NV, bool FULL_PIXELS>
static void direct_tile_rows(const DirectArgs* a, const T* const* xp, T* const* yp,
                             const T* wpanel, const T* bias, int64_t kvalid, int64_t kblocks,
                             const T* pf = nullptr, const T* pf_end = nullptr) {
  typedef V::reg reg;
  const int64_t len = a->S * a->C, R = a->R, row = a->dh * a->xh;
  const int64_t block = direct_block_len(a), kb_y = NV * V::N * a->yk;
  const T* w = wpanel;
  const T* const pf0 = pf;
  const int64_t pf_share = pf_end - pf;
  reg acc[NP][NV];
  const auto products = [&](const T* const* xq, int64_t c0, int64_t c1) {
    if (pf < pf_end) {
      for (int64_t c = c0; c < c1;) {
        __builtin_prefetch(pf, 0, 2);
        pf += pf < pf_end ? kLineElems : 0;
        for (const int64_t ce = tc_min(c1, c + kAheadLineSteps); c < ce; ++c, w += NV * V::N) {
          reg wv[NV];
          TC_UNROLL for (int j = 0; j < NV; ++j) wv[j] = V::load(w + j * V::N);
          TC_UNROLL for (int p = 0; p < NP; ++p) fma_scalar<NV>(xq[p] + c, wv, acc[p]);
        }
      }
      return;
    }
    for (int64_t c = c0; c < c1; ++c, w += NV * V::N) {
      reg wv[NV];
      TC_UNROLL for (int j = 0; j < NV; ++j) wv[j] = V::load(w + j * V::N);
      TC_UNROLL for (int p = 0; p < NP; ++p) fma_scalar<NV>(xq[p] + c, wv, acc[p]);
    }
  };
  // k-block kb: the next panel (w runs on from the last one) into outputs kb * NV * N on
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    TC_UNROLL for (int p = 0; p < NP; ++p) {
      TC_UNROLL for (int j = 0; j < NV; ++j) acc[p][j] = V::zero();
    }
    if (pf_share > 0) {  // this k-block's share of the lines ahead
      pf = pf0 + pf_share * kb / kblocks, pf_end = pf0 + pf_share * (kb + 1) / kblocks;
    }
    const T* xq[NP];
    TC_UNROLL for (int p = 0; p < NP; ++p) xq[p] = xp[p];
    // One block (1x1s over up to TC_BLOCK channels) in its own plain loop: through the blocked
    // loop below (direct_tile's one-block trick) MBv2 pointwise and 1x1 64 -> 256
    // channels_last ran 5-8% slower (the kernel alone, Zen 2, one thread).
    if (R * len <= block) {
      for (int64_t r = 0; r < R; ++r) {
        products(xq, 0, len);
        TC_UNROLL for (int p = 0; p < NP; ++p) xq[p] += row;
      }
    } else {
      T tot[NP][NV * V::N], mid[NP][NV * V::N];
      TC_UNROLL for (int p = 0; p < NP; ++p) {
        TC_UNROLL for (int j = 0; j < NV; ++j) V::store(&tot[p][j * V::N], V::zero());
      }
      int blocks = 0, mid_started = 0;
      int64_t pending = 0;  // products in acc since the last block
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t c0 = 0; c0 < len;) {
          const int64_t c1 = tc_min(len, c0 + (block - pending));
          products(xq, c0, c1);
          pending += c1 - c0;
          c0 = c1;
          if (pending == block) {
            end_tile_block<NP, NV>(acc, tot, mid, &blocks, &mid_started);
            pending = 0;
          }
        }
        TC_UNROLL for (int p = 0; p < NP; ++p) xq[p] += row;
      }
      add_tile_blocks<NP, NV>(acc, tot, mid, mid_started);
    }
    T* yk[NP];
    TC_UNROLL for (int p = 0; p < NP; ++p) yk[p] = yp[p] + kb * kb_y;
    const T* const bk = bias ? bias + kb * NV * V::N : nullptr;
    const int64_t kv = kb + 1 < kblocks ? NV * V::N : kvalid;
    if (FULL_PIXELS && kv == NV * V::N) direct_tile_finish<NP, NV, true>(a, acc, yk, bk, kv);
    else direct_tile_finish<NP, NV, false>(a, acc, yk, bk, kv);
  }
}

// ------------------------------------------------------------------------------------------
// 1x1 stride-1 convolution over NCHW planes (PlanesDirectArgs): register tile of NK output
// channels x NV vectors of pixels, input vectors loaded from the planes, weights broadcast,
// outputs stored as rows of their planes. The direct kernel's order: channels in blocks of
// TC_BLOCK, the blocks' sums added in order (C <= 16 blocks: no middle level), then the bias.

// acc += the products of channels [c0, c1) (FULL: all NV vectors of pixels valid).
template <int NK, int NV, bool FULL>
static inline __attribute__((always_inline)) void planes_products(
    const PlanesDirectArgs* a, const T* x, const T* w, int64_t c0, int64_t c1, int64_t np,
    V::reg (&acc)[NK][NV]) {
  typedef V::reg reg;
  const int64_t xc = a->xc, KB = a->KB;
  for (int64_t c = c0; c < c1; ++c) {
    reg xv[NV];
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      xv[j] = FULL ? V::load(x + c * xc + j * V::N) : load_k(x + c * xc + j * V::N, np - j * V::N);
    }
    TC_UNROLL for (int i = 0; i < NK; ++i) {
      const reg b = V::bcast(w + c * KB + i);
      TC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = V::fma(b, xv[j], acc[i][j]);
    }
  }
}

template <int NK, int NV>
static void planes_direct_tile(const PlanesDirectArgs* a, const T* x, T* y, const T* w,
                               const T* bias, int64_t kn, int64_t np) {
  typedef V::reg reg;
  reg acc[NK][NV];
  T tot[NK][NV * V::N];  // sums of the finished blocks
  const int64_t C = a->C;
  TC_UNROLL for (int i = 0; i < NK; ++i) {
    TC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();
  }
  for (int64_t c0 = 0; c0 < C; c0 += TC_BLOCK) {
    const int64_t c1 = tc_min(C, c0 + TC_BLOCK);
    // (two calls: with the choice inside the channel loop, GCC keeps the sums in memory)
    if (np >= NV * V::N) planes_products<NK, NV, true>(a, x, w, c0, c1, np, acc);
    else planes_products<NK, NV, false>(a, x, w, c0, c1, np, acc);
    if (c1 == C) break;
    TC_UNROLL for (int i = 0; i < NK; ++i) {
      TC_UNROLL for (int j = 0; j < NV; ++j) {
        V::store(&tot[i][j * V::N],
                 c0 == 0 ? acc[i][j] : V::add(V::load(&tot[i][j * V::N]), acc[i][j]));
        acc[i][j] = V::zero();
      }
    }
  }
  if (C > TC_BLOCK) {
    TC_UNROLL for (int i = 0; i < NK; ++i) {
      TC_UNROLL for (int j = 0; j < NV; ++j) {
        acc[i][j] = V::add(V::load(&tot[i][j * V::N]), acc[i][j]);
      }
    }
  }
  // (a compile-time loop: indexed by the runtime kn, acc lives in memory, and GCC's AVX2 code
  // stored every accumulator after each multiply-add: R50 1x1 64 -> 256 NCHW ran at half the
  // AVX-512 speed)
  TC_UNROLL for (int i = 0; i < NK; ++i) {
    if (i >= kn) break;
    T* yr = y + i * a->yk;
    const reg b = bias ? V::set1(bias[i]) : V::zero();
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      const reg v = bias ? V::add(acc[i][j], b) : acc[i][j];
      const int64_t n = np - j * V::N;
      if (n >= V::N && a->stream) V::stream(yr + j * V::N, v);
      else if (n >= V::N) V::store(yr + j * V::N, v);
      else if (n > 0) V::store_n(yr + j * V::N, v, (int)n);
    }
  }
}

// Pixel tiles outer: a tile's input (C x NV vectors) is reused by every k-tile of every
// k-block. Output channels past kvalid read the last panel's zero padding (PD_NK divides KB)
// and are not stored. With tile_scratch, the tile's input rows are copied there first: read
// in place they are a plane apart, and rows whose addresses agree modulo 4 KiB compete for
// the same L1 sets (see kPackedTilesMinOutputs in fast_paths.cpp).
template <int NV>
static void direct_planes_tiles(const PlanesDirectArgs* a, const T* x, T* y, const T* wpanel,
                                const T* bias, int64_t kvalid, int64_t np) {
  const int64_t tile = NV * V::N, C = a->C, KB = a->KB;
  T* scratch = static_cast<T*>(a->tile_scratch);
  PlanesDirectArgs tile_args = *a;
  if (scratch) tile_args.xc = tile;
  for (int64_t p0 = 0; p0 < np; p0 += tile) {
    const int64_t n = tc_min(tile, np - p0);
    const T* xt = x + p0;
    if (scratch) {
      for (int64_t c = 0; c < C; ++c) {
        const T* src = x + c * a->xc + p0;
        TC_UNROLL for (int j = 0; j < NV; ++j) {
          V::store(scratch + c * tile + j * V::N, load_k(src + j * V::N, n - j * V::N));
        }
      }
      xt = scratch;
    }
    for (int64_t k0 = 0; k0 < kvalid; k0 += PD_NK) {
      planes_direct_tile<PD_NK, NV>(&tile_args, xt, y + k0 * a->yk + p0,
                                    wpanel + k0 / KB * C * KB + k0 % KB,
                                    bias ? bias + k0 : nullptr, tc_min(PD_NK, kvalid - k0), n);
    }
  }
}

#ifdef PD_NV_NARROW
// A pixel tile's input rows and the weight panel that its k-tiles read, within this they stay
// in a 32 KiB L1 together.
static constexpr int64_t kPlanesTileL1Bytes = int64_t(24) << 10;
#endif

static void direct_planes(const PlanesDirectArgs* a, const T* x, T* y, const T* wpanel,
                          const T* bias, int64_t kvalid, int64_t np) {
#ifdef PD_NV_NARROW
  // The narrower tile where only its input rows fit in L1 with the panel (see
  // kernels_avx2.cpp).
  const auto bytes = [&](int nv) { return a->C * (nv * V::N + a->KB) * int64_t(sizeof(T)); };
  if (bytes(PD_NV) > kPlanesTileL1Bytes && bytes(PD_NV_NARROW) <= kPlanesTileL1Bytes) {
    direct_planes_tiles<PD_NV_NARROW>(a, x, y, wpanel, bias, kvalid, np);
    return;
  }
#endif
  direct_planes_tiles<PD_NV>(a, x, y, wpanel, bias, kvalid, np);
}

// One input pixel's C channels (unit channel stride), line by line into L2.
static inline void prefetch_pixel_channels_l2(const T* xq, int64_t C) {
  for (int64_t c = 0; c < C; c += kLineElems) __builtin_prefetch(xq + c, 0, 2);
}

// Output pixel (oh, ow) goes to y + oh*yh + ow*yw - yoff.
template <int NVX, int NPX>
static void direct_pixels_t(const DirectArgs* a, const T* x, T* y, const T* wpanel,
                            const T* bias, int64_t kvalid, int64_t p0, int64_t p1,
                            int64_t yoff);

// Output channels strided, pixels dense (NCHW): the tiles' transposed stores go to an L1
// buffer [k][pixel] and leave it as one contiguous run per channel, instead of scattering
// partial cache lines over KB channel planes. Runs of 96 pixels: whole tiles of 6 and 12
// pixels and whole cache lines per channel (runs of 64 split into tiles of 5 and 6, which
// cost about as much each: R50 stem NCHW forward 15.0 -> 13.1 ms). With several k-blocks
// (DirectArgs::kblocks) each run takes them all in turn, its input then read from L1 or L2
// by all of them; against one k-block at a time over runs of 48 (Zen 2, AVX2, 2 threads,
// switched within one process, NCHW: R50 L3 1x1 forward 8.8-11.2 -> 8.1-10.1 ms, R50 L4 1x1
// forward 8.8 -> 8.0 and input gradient 10.7 -> 9.4, R50 downsample forward 20.7 -> 19.9,
// MBv2 project forward 0.87 -> 0.82; R50 stem forward the same).
enum { kRunPixels = kNchwRunPixels, kRunSlack = V::N, kRunRow = kRunPixels + kRunSlack };
template <int NVX, int NPX>
static void direct_pixels_nchw(const DirectArgs* a, const T* x, T* y,
                               const T* wpanel, const T* bias, int64_t kvalid,
                               int64_t p0, int64_t p1) {
  T buf[NVX * V::N * kRunRow];
  const int64_t kblocks = a->kblocks > 1 ? a->kblocks : 1, KB = NVX * V::N;
  DirectArgs b = *a;
  // output k of pixel q of the run -> buf[k*kRunRow + q - q0]
  b.yk = kRunRow, b.yh = a->OW, b.yw = 1;
  b.stream = 0;
  b.kblocks = 1;
  b.ahead = nullptr;
  DirectArgs b_first = b;  // the run's first k-block: it takes the run's share of a->ahead
  b_first.ahead = a->ahead;
  for (int64_t q0 = p0, n; q0 < p1; q0 += n) {
    n = tc_min(kRunPixels, p1 - q0);
    // A last run shorter than a tile shares the pixels of the run before it, in whole lines
    // (49 pixels of a 7 x 7 plane: 32 + 17, not 48 + 1, whose 1-pixel tile read the whole
    // weight panel for one pixel: R50 L4 1x1 NCHW forward, 3% of its time).
    const int64_t rest = p1 - q0 - n;
    if (rest > 0 && rest < NPX) n = (n + rest + 31) / 32 * 16;
    if (a->ahead) {  // this run's share of the pixels to prefetch
      const int64_t len = a->ahead_p1 - a->ahead_p0;
      b_first.ahead_p0 = a->ahead_p0 + len * (q0 - p0) / (p1 - p0);
      b_first.ahead_p1 = a->ahead_p0 + len * (q0 + n - p0) / (p1 - p0);
    }
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t kv = kb + 1 < kblocks ? KB : kvalid;
      direct_pixels_t<NVX, NPX>(kb == 0 ? &b_first : &b, x, buf,
                                wpanel + kb * a->R * a->S * a->C * KB,
                                bias ? bias + kb * KB : nullptr, kv, q0, q0 + n, q0);
      for (int64_t k = 0; k < kv; ++k) {
        const T* src = buf + k * kRunRow;
        T* dst = y + (kb * KB + k) * a->yk + q0;
        int64_t i = 0;
        if (a->stream) {
          // Whole cache lines stream, the partial ones at the ends take plain stores (a
          // streamed part of a line costs a read-modify-write in memory: R50 L3 1x1 NCHW,
          // whose 14 x 14 planes leave most rows unaligned).
          for (; i < n && (uintptr_t)(dst + i) % 64 != 0; ++i) dst[i] = src[i];
          for (; i + kLineElems <= n; i += kLineElems) {
            TC_UNROLL for (int v = 0; v < kLineElems; v += V::N) {
              V::stream(dst + i + v, V::load(src + i + v));
            }
          }
        } else {
          for (; i + V::N <= n; i += V::N) V::store(dst + i, V::load(src + i));
        }
        for (; i < n; ++i) dst[i] = src[i];
      }
    }
  }
}

template <int NVX, int NPX>
static void direct_pixels_t(const DirectArgs* a, const T* x, T* y, const T* wpanel,
                            const T* bias, int64_t kvalid, int64_t p0, int64_t p1,
                            int64_t yoff) {
  const T* xp[NPX];
  T* yp[NPX];
  int64_t oh = p0 / a->OW, ow = p0 % a->OW;
  // balanced tiles: ceil((p1-p0)/NP) tiles of nearly equal size (no 1-pixel stragglers),
  // the larger ones first
  const int64_t ntiles = (p1 - p0 + NPX - 1) / NPX;
  const int64_t small = (p1 - p0) / ntiles, large_tiles = (p1 - p0) % ntiles;
  // (see DirectArgs::kblocks)
  const int64_t kblocks = a->kblocks > 1 ? a->kblocks : 1;
  const int64_t kb_panel = a->R * a->S * a->C * NVX * V::N, kb_y = NVX * V::N * a->yk;
  const bool row_runs = a->xc == 1 && a->xw == a->C && a->dw == 1;
  // pixel p's input and output, advanced pixel by pixel (a row's end steps to the next row)
  const int64_t OW = a->OW, x_step = a->sw * a->xw, y_step = a->yw;
  const int64_t x_wrap = a->sh * a->xh - OW * x_step, y_wrap = a->yh - OW * y_step;
  const T* xcur = x + oh * a->sh * a->xh + ow * x_step;
  T* ycur = y + oh * a->yh + ow * y_step - yoff;
  const T* ahead = static_cast<const T*>(a->ahead);
  // Where the pixels ahead are one run of memory (dense rows of whole pixels), each tile
  // takes its share of their lines and direct_tile_rows spreads them among its multiply-adds;
  // whole pixels' lines before each tile stalled it while they queued (Zen 2, AVX2, switched
  // within one process, channels_last: R50 1x1 256 -> 64 forward, 2 threads, 9.16-9.17 ->
  // 8.66-8.86 ms, 1 thread 17.3-18.6 -> 17.1-18.4; the input gradient of 64 -> 256 8.6-9.0 ->
  // 8.0-8.8; a loop of the layer at 1 thread 16.5 -> 15.4, the prefetches' 5% of its samples
  // gone).
  const bool ahead_run = ahead && row_runs && x_wrap == 0 && x_step == a->C;
  const T* ahead_line = ahead_run ? ahead + a->ahead_p0 * a->C : nullptr;
  const T* const ahead_end = ahead_run ? ahead + a->ahead_p1 * a->C : nullptr;
  const int64_t ahead_lines =
      ahead_run ? (ahead_end - ahead_line + kLineElems - 1) / kLineElems : 0;
  // (a tile prefetches at most one line per kAheadLineSteps of its channel steps)
  const int64_t tile_lines =
      tc_min((ahead_lines + ntiles - 1) / ntiles,
             kblocks * a->R * a->S * a->C / kAheadLineSteps);
  int64_t aq = a->ahead_p0;
  const int64_t ahead_per_tile =
      ahead && !ahead_run ? (a->ahead_p1 - aq + ntiles - 1) / ntiles : 0;
  // pixel aq's row and column, advanced with it (not a division per pixel)
  int64_t ah = ahead ? aq / OW : 0, aw = ahead ? aq % OW : 0;
  for (int64_t t = 0, p = p0; p < p1; ++t) {
    const int np = (int)(t < large_tiles ? small + 1 : small);
    for (int i = 0; i < np; ++i) {
      xp[i] = xcur, yp[i] = ycur;
      xcur += x_step, ycur += y_step;
      if (++ow == OW) ow = 0, ++oh, xcur += x_wrap, ycur += y_wrap;
    }
    // The channels of the next tile's pixels (up to NPX of them), into L2 (prefetcht1): the
    // whole tile's lines at once into L1 measured 10-13% slower (R50 1x1 256 -> 64
    // channels_last forward at 1 thread 12.3-12.9 -> 10.7-11.5 ms, MBv2 pointwise input
    // gradient 0.96-0.99x -> 1.16-1.25x native).
    if (a->prefetch) {
      int64_t qh = oh, qw = ow;
      for (int64_t q = p + np; q < tc_min(p1, p + np + NPX); ++q) {
        prefetch_pixel_channels_l2(x + qh * a->sh * a->xh + qw * x_step, a->C);
        if (++qw == OW) { qw = 0; ++qh; }
      }
    }
    for (int64_t i = 0; i < ahead_per_tile && aq < a->ahead_p1; ++i, ++aq) {
      prefetch_pixel_channels_l2(ahead + ah * a->sh * a->xh + aw * x_step, a->C);
      if (++aw == OW) aw = 0, ++ah;
    }
    if (row_runs) {
      // every k-block in one call, with this tile's share of the lines ahead
      const T* const tile_ahead = ahead_line;
      if (ahead_run) ahead_line += tc_min(tile_lines * kLineElems, ahead_end - ahead_line);
      if (np == NPX) {
        direct_tile_rows<NPX, NVX, true>(a, xp, yp, wpanel, bias, kvalid, kblocks, tile_ahead,
                                         ahead_line);
      } else {
        with_count<NPX>(np, [&](auto k) {
          direct_tile_rows<decltype(k)::value, NVX, false>(a, xp, yp, wpanel, bias, kvalid,
                                                           kblocks, tile_ahead, ahead_line);
        });
      }
      p += np;
      continue;
    }
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t kv = kb + 1 < kblocks ? NVX * V::N : kvalid;
      const T* const wk = wpanel + kb * kb_panel;
      const T* const bk = bias ? bias + kb * NVX * V::N : nullptr;
      T* yk[NPX];
      for (int i = 0; i < np; ++i) yk[i] = yp[i] + kb * kb_y;
      const auto tile = [&](auto np_count, auto full) {
        constexpr int NP = decltype(np_count)::value;
        constexpr bool FULL = decltype(full)::value;
        if (a->xc == 1) {
          direct_tile<NP, NVX, true, FULL>(a, xp, yk, wk, bk, kv);
        } else {
          direct_tile<NP, NVX, false, FULL>(a, xp, yk, wk, bk, kv);
        }
      };
      // (the common tile, all its outputs stored without per-vector checks)
      if (np == NPX && kv == NVX * V::N) tile(Count<NPX>(), std::true_type());
      else with_count<NPX>(np, [&](auto k) { tile(k, std::false_type()); });
    }
    p += np;
  }
}

template <int NVX, int NPX>
static void direct_pixels_any(const DirectArgs* a, const T* x, T* y,
                              const T* wpanel, const T* bias, int64_t kvalid,
                              int64_t p0, int64_t p1) {
  if (a->yk != 1 && a->yw == 1 && a->yh == a->OW) {
    direct_pixels_nchw<NVX, NPX>(a, x, y, wpanel, bias, kvalid, p0, p1);
  } else {
    direct_pixels_t<NVX, NPX>(a, x, y, wpanel, bias, kvalid, p0, p1, 0);
  }
  if (a->stream) V::fence();  // the streamed outputs are visible before the task ends
}
static void direct_pixels(const DirectArgs* a, const T* x, T* y, const T* wpanel,
                          const T* bias, int64_t kvalid, int64_t p0, int64_t p1) {
  direct_pixels_any<DIRECT_NV, DIRECT_NP>(a, x, y, wpanel, bias, kvalid, p0, p1);
}
static void direct_pixels_wide(const DirectArgs* a, const T* x, T* y,
                               const T* wpanel, const T* bias, int64_t kvalid,
                               int64_t p0, int64_t p1) {
  direct_pixels_any<DIRECT_WIDE_NV, DIRECT_WIDE_NP>(a, x, y, wpanel, bias, kvalid, p0, p1);
}
static void direct_pixels_mid(const DirectArgs* a, const T* x, T* y,
                              const T* wpanel, const T* bias, int64_t kvalid,
                              int64_t p0, int64_t p1) {
  direct_pixels_any<DIRECT_MID_NV, DIRECT_MID_NP>(a, x, y, wpanel, bias, kvalid, p0, p1);
}
// One output-channel vector: groups of V::N output channels (ResNeXt's 8 per group on AVX2,
// 16 on AVX-512) half filled the standard tile, whose second vector then multiplied zeros.
static void direct_pixels_narrow(const DirectArgs* a, const T* x, T* y,
                                 const T* wpanel, const T* bias, int64_t kvalid,
                                 int64_t p0, int64_t p1) {
  direct_pixels_any<1, DIRECT_NARROW_NP>(a, x, y, wpanel, bias, kvalid, p0, p1);
}

// ------------------------------------------------------------------------------------------
// Few output channels: vectorised over the reduction channels (see kernel_api.h). Per output:
// lane-wise partial sums over taps and channel vectors in order, one horizontal sum, + bias.

#if TC_HAS_PERMUTE
template <int NP, int NK>
static void reduce_tile(const DirectArgs* a, const T* const* xp, T* const* yp,
                        const T* wpack, const T* bias) {
  typedef V::reg reg;
  reg acc[NP][NK];
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int k = 0; k < NK; ++k) acc[p][k] = V::zero();
  }
  const int64_t C = a->C, Cp = (C + V::N - 1) / V::N * V::N, RSC = a->R * a->S * Cp;
  for (int64_t r = 0; r < a->R; ++r) {
    for (int64_t s = 0; s < a->S; ++s) {
      const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw;
      const T* wt = wpack + (r * a->S + s) * Cp;
      for (int64_t c0 = 0; c0 < C; c0 += V::N) {
        reg xv[NP];
        if (C - c0 >= V::N) {
          TC_UNROLL for (int p = 0; p < NP; ++p) xv[p] = V::load(xp[p] + toff + c0);
        } else {
          TC_UNROLL for (int p = 0; p < NP; ++p)
            xv[p] = V::load_n(xp[p] + toff + c0, (int)(C - c0));
        }
        TC_UNROLL for (int k = 0; k < NK; ++k) {
          const reg wv = V::load(wt + k * RSC + c0);
          TC_UNROLL for (int p = 0; p < NP; ++p) acc[p][k] = V::fma(xv[p], wv, acc[p][k]);
        }
      }
    }
  }
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    TC_UNROLL for (int k = 0; k < NK; ++k) {
      const T v = V::hsum(acc[p][k]);
      yp[p][k * a->yk] = bias ? v + bias[k] : v;
    }
  }
}

template <int NK>
static void reduce_pixels_t(const DirectArgs* a, const T* x, T* y, const T* wpack,
                            const T* bias, int64_t p0, int64_t p1) {
  const T* xp[REDUCE_NP];
  T* yp[REDUCE_NP];
  int64_t oh = p0 / a->OW, ow = p0 % a->OW;
  for (int64_t p = p0; p < p1;) {
    const int np = (int)tc_min(REDUCE_NP, p1 - p);
    for (int i = 0; i < np; ++i) {
      xp[i] = x + oh * a->sh * a->xh + ow * a->sw * a->xw;
      yp[i] = y + oh * a->yh + ow * a->yw;
      if (++ow == a->OW) { ow = 0; ++oh; }
    }
    with_count<REDUCE_NP>(np, [&](auto k) {
      reduce_tile<decltype(k)::value, NK>(a, xp, yp, wpack, bias);
    });
    p += np;
  }
}

static void direct_reduce(const DirectArgs* a, const T* x, T* y, const T* wpack,
                          const T* bias, int64_t kvalid, int64_t p0, int64_t p1) {
  switch (kvalid) {
    case 1: reduce_pixels_t<1>(a, x, y, wpack, bias, p0, p1); break;
    case 2: reduce_pixels_t<2>(a, x, y, wpack, bias, p0, p1); break;
    case 3: reduce_pixels_t<3>(a, x, y, wpack, bias, p0, p1); break;
    default: reduce_pixels_t<4>(a, x, y, wpack, bias, p0, p1); break;
  }
}
#define TC_REDUCE &direct_reduce
#else
#define TC_REDUCE 0
#endif

// ------------------------------------------------------------------------------------------
// Depthwise, channels vectorised (input channel stride 1).

// CU channel vectors from c0 of NP pixels, taps [r0, r1) x [s0, s1) (inside the input for
// every pixel). cvalid (channels left from c0) may cut the vector short only when CU == 1.
// TAPS3: all nine taps of an undilated 3x3 window, as constants (the loops unrolled, the tap
// offsets without the runtime strides' multiplies).
template <int NP, int CU, bool TAPS3>
static inline void dw_block(const DepthwiseArgs* a, const T* const* xp, T* const* yp,
                            const T* wpack, const T* bias, const int64_t* rng, int64_t c0,
                            int64_t cvalid) {
  const int64_t r0 = TAPS3 ? 0 : rng[0], r1 = TAPS3 ? 3 : rng[1];
  const int64_t s0 = TAPS3 ? 0 : rng[2], s1 = TAPS3 ? 3 : rng[3];
  const int64_t S = TAPS3 ? 3 : a->S, RS = TAPS3 ? 9 : a->R * a->S;
  const int64_t tap_h = TAPS3 ? a->xh : a->dh * a->xh, tap_w = TAPS3 ? a->xw : a->dw * a->xw;
  typedef V::reg reg;
  reg acc[CU][NP];
  TC_UNROLL for (int u = 0; u < CU; ++u) {
    TC_UNROLL for (int p = 0; p < NP; ++p) acc[u][p] = V::zero();
  }
  const T* wc = wpack + (c0 / V::N) * RS * V::N;
  // Software prefetch into L2 (a->prefetch) of the tile's columns of the window rows one
  // output row further down (sh input rows): the input streams from DRAM (or L3) and the
  // hardware prefetchers fall behind on this pattern; on images that fit L2 they only cost
  // (MBv2 7x7 x 960 channels_last: 10%). A tile's pixels are consecutive in a row, so the
  // span starts at xp[0] and covers every one of its NP * sw columns. (Zen 2, AVX2, 2 threads,
  // alternating processes, 8 tiles ahead along the rows -> a row down: MBv2 dw s2 (112 x 112
  // x 96) channels_last forward 2.60-2.70 -> 2.25-2.28 ms, its input gradient 3.31-3.34 ->
  // 3.06-3.17; 56 x 56 x 144 the same. On Zen 5, 1-2 tiles ahead had left the loads waiting
  // on L3 / DRAM.)
  const T* pf = xp[0] + a->sh * a->xh + c0;
  const int64_t pf_cols = NP * a->sw;
  const bool full = cvalid >= V::N;
  TC_UNROLL for (int64_t r = r0; r < r1; ++r) {
    const T* pr = pf + r * tap_h;
    for (int64_t q = 0; a->prefetch && q < pf_cols; ++q) {
      TC_UNROLL for (int u = 0; u < CU; ++u) __builtin_prefetch(pr + q * a->xw + u * V::N, 0, 2);
    }
    TC_UNROLL for (int64_t s = s0; s < s1; ++s) {
      const int64_t toff = r * tap_h + s * tap_w + c0;
      TC_UNROLL for (int u = 0; u < CU; ++u) {
        const reg wv = V::load(wc + (u * RS + r * S + s) * V::N);
        if (full) {
          TC_UNROLL for (int p = 0; p < NP; ++p)
            acc[u][p] = V::fma(V::load(xp[p] + toff + u * V::N), wv, acc[u][p]);
        } else {
          TC_UNROLL for (int p = 0; p < NP; ++p)
            acc[u][p] = V::fma(V::load_n(xp[p] + toff, (int)cvalid), wv, acc[u][p]);
        }
      }
    }
  }
  TC_UNROLL for (int u = 0; u < CU; ++u) {
    const int64_t cu = c0 + u * V::N;
    if (bias) {
      const reg b = V::load(bias + cu);
      TC_UNROLL for (int p = 0; p < NP; ++p) acc[u][p] = V::add(acc[u][p], b);
    }
    if (a->yc == 1) {
      TC_UNROLL for (int p = 0; p < NP; ++p) {
        if (full && a->stream) V::stream(yp[p] + cu, acc[u][p]);
        else if (full) V::store(yp[p] + cu, acc[u][p]);
        else V::store_n(yp[p] + cu, acc[u][p], (int)cvalid);
      }
    } else {
      T buf[NP][V::N];
      TC_UNROLL for (int p = 0; p < NP; ++p) V::store(buf[p], acc[u][p]);
      const int64_t n = tc_min(cvalid - u * V::N, V::N);
      for (int64_t k = 0; k < n; ++k) {
        TC_UNROLL for (int p = 0; p < NP; ++p) yp[p][(cu + k) * a->yc] = buf[p][k];
      }
    }
  }
}

// Per channel vector: taps in order, then the bias (see TC_BLOCK for why last). Narrow tiles
// (border pixels, short rows) take several channel vectors at once so that enough independent
// FMA chains are in flight.
template <int NP, bool TAPS3>
static void dw_tile_t(const DepthwiseArgs* a, const T* const* xp, T* const* yp,
                      const T* wpack, const T* bias, const int64_t* rng) {
  constexpr int CU = NP >= 8 ? 1 : NP >= 4 ? 2 : 4;
  const int64_t C = a->C;
  int64_t c0 = 0;
  for (; C - c0 >= CU * V::N; c0 += CU * V::N) {
    dw_block<NP, CU, TAPS3>(a, xp, yp, wpack, bias, rng, c0, C - c0);
  }
  for (; c0 < C; c0 += V::N) dw_block<NP, 1, TAPS3>(a, xp, yp, wpack, bias, rng, c0, C - c0);
}
template <int NP>
static void dw_tile(const DepthwiseArgs* a, const T* const* xp, T* const* yp,
                    const T* wpack, const T* bias, const int64_t* rng) {
  if (a->R == 3 && a->S == 3 && a->dh == 1 && a->dw == 1 && rng[0] == 0 && rng[1] == 3 &&
      rng[2] == 0 && rng[3] == 3) {
    dw_tile_t<NP, true>(a, xp, yp, wpack, bias, rng);
  } else {
    dw_tile_t<NP, false>(a, xp, yp, wpack, bias, rng);
  }
}

// Valid taps [lo, hi) of a window starting at input position i0 (padded coordinates) with
// `taps` taps of dilation d, the input being [begin, begin + size).
// (Called per border pixel: undilated windows avoid the divisions.)
static inline void dw_tap_range(int64_t i0, int64_t taps, int64_t d, int64_t begin,
                                int64_t size, int64_t* lo, int64_t* hi) {
  int64_t l = 0, h = taps;
  const int64_t last = begin + size - 1 - i0;  // largest valid offset
  if (d == 1) {
    if (i0 < begin) l = begin - i0;
    h = last < 0 ? 0 : tc_min(taps, last + 1);
  } else {
    if (i0 < begin) l = (begin - i0 + d - 1) / d;
    h = last < 0 ? 0 : tc_min(taps, last / d + 1);
  }
  if (h < l) h = l;
  *lo = l, *hi = h;
}

// f(oh, ow_a, ow_b, ih0, rlo, rhi) for each output row's segment [ow_a, ow_b) among the
// pixels [p0, p1) of an image: ih0 = the first padded input row of its windows, whose rows
// [rlo, rhi) lie inside the input.
template <typename F>
static inline void dw_row_segments(const DepthwiseArgs* a, int64_t p0, int64_t p1, const F& f) {
  const int64_t OW = a->OW;
  for (int64_t p = p0; p < p1;) {
    const int64_t oh = p / OW, ow_a = p % OW, ow_b = tc_min(OW, ow_a + (p1 - p));
    const int64_t ih0 = oh * a->sh;
    int64_t rlo, rhi;
    dw_tap_range(ih0, a->R, a->dh, a->top, a->H, &rlo, &rhi);
    f(oh, ow_a, ow_b, ih0, rlo, rhi);
    p += ow_b - ow_a;
  }
}

// Row by row: the interior segment of a row (every column tap inside the input) in tiles of
// DW_NP pixels, the border pixels one at a time with their own valid column taps; rows whose
// windows cross the top / bottom border use their valid row taps.
static void depthwise_pixels(const DepthwiseArgs* a, const T* x, T* y,
                             const T* wpack, const T* bias, int64_t p0, int64_t p1) {
  const T* xp[DW_NP];
  T* yp[DW_NP];
  const int64_t ext_w = (a->S - 1) * a->dw;
  // interior columns: ow*sw >= left and ow*sw + ext_w <= left + W - 1
  const int64_t in_lo = (a->left + a->sw - 1) / a->sw;
  const int64_t lim = a->left + a->W - 1 - ext_w;
  const int64_t in_hi = lim < 0 ? 0 : lim / a->sw + 1;  // exclusive
  dw_row_segments(a, p0, p1, [&](int64_t oh, int64_t ow_a, int64_t ow_b, int64_t ih0,
                                 int64_t rlo, int64_t rhi) {
    const T* xrow = x + ih0 * a->xh;
    T* yrow = y + oh * a->yh;
    const int64_t lo = tc_min(ow_b, in_lo > ow_a ? in_lo : ow_a);
    const int64_t hi_raw = in_hi < ow_b ? in_hi : ow_b;
    const int64_t hi = hi_raw > lo ? hi_raw : lo;
    for (int64_t ow = ow_a; ow < ow_b; ++ow) {
      if (ow == lo && hi > lo) {  // the interior segment
        int np = 0;
        int64_t full[4] = {rlo, rhi, 0, a->S};
        const auto run_tile = [&] {
          with_count<DW_NP>(np, [&](auto k) {
            dw_tile<decltype(k)::value>(a, xp, yp, wpack, bias, full);
          });
        };
        for (int64_t o = lo; o < hi; ++o) {
          xp[np] = xrow + o * a->sw * a->xw;
          yp[np] = yrow + o * a->yw;
          if (++np == DW_NP) {
            run_tile();
            np = 0;
          }
        }
        if (np) run_tile();
        ow = hi - 1;
        continue;
      }
      const int64_t iw0 = ow * a->sw;
      int64_t r1[4] = {rlo, rhi, 0, a->S};
      dw_tap_range(iw0, a->S, a->dw, a->left, a->W, &r1[2], &r1[3]);
      xp[0] = xrow + iw0 * a->xw;
      yp[0] = yrow + ow * a->yw;
      dw_tile<1>(a, xp, yp, wpack, bias, r1);
    }
  });
  if (a->stream) V::fence();
}

// ------------------------------------------------------------------------------------------
// Depthwise 3x3, undilated, column stride SW (1 or 2), channels vectorised, output channel
// stride 1: the same sums as depthwise_pixels (taps inside the input in order, then the bias),
// with the loops turned round. Per channel vector the nine tap vectors stay in registers
// while the task's pixels pass, a row at a time in tiles of up to DW3_NP pixels; a tile loads
// each input column of a window row once for the (up to) three taps that read it, and skips
// the columns and rows in the padding (which skips exactly the taps each pixel skips).
// depthwise_pixels reloads the taps per pixel tile, runs runtime tap loops and takes border
// pixels one at a time, which costs most on small images (fast_paths.cpp run_depthwise says
// where each is used).

// Streaming stores only where a vector is a whole cache line: the channel vectors run
// outermost, so with two vectors a line (AVX2) every line of a task's pixels was left
// half-written until the next vector's pass, and a half-written line leaves the
// write-combining buffer early, to be merged in memory (Zen 2, 2 threads, switched within one
// process, channels_last forward: 8 x 192 x 28 x 28 1.15 -> 0.70 ms, 8 x 384 x 14 x 14 0.66 ->
// 0.32).
static constexpr bool kStreamDw3 = kLineElems == V::N;

// Output pixels [0, NP) of a tile: x = the input at the first pixel's window origin; window
// rows [rlo, rhi) and the tile's input columns [clo, chi) lie inside the input.
template <int SW, int NP, bool FULL>
static inline void dw3_tile(const DepthwiseArgs* a, const T* x, T* y, const V::reg* w,
                            const V::reg& b, bool bias, int64_t rlo, int64_t rhi, int64_t clo,
                            int64_t chi, int cvalid) {
  typedef V::reg reg;
  reg acc[NP];
  TC_UNROLL for (int p = 0; p < NP; ++p) acc[p] = V::zero();
  constexpr int kCols = (NP - 1) * SW + 3;
  TC_UNROLL for (int r = 0; r < 3; ++r) {
    if (r < rlo || r >= rhi) continue;
    const T* xr = x + r * a->xh;
    TC_UNROLL for (int j = 0; j < kCols; ++j) {
      if (j < clo || j >= chi) continue;
      const reg xv = FULL ? V::load(xr + j * a->xw) : V::load_n(xr + j * a->xw, cvalid);
      // pixel p reads column j through tap s = j - p*SW: for each p, s rises with j (in order)
      TC_UNROLL for (int s = 0; s < 3; ++s) {
        const int q = j - s;
        if (q >= 0 && q % SW == 0 && q / SW < NP) {
          acc[q / SW] = V::fma(xv, w[3 * r + s], acc[q / SW]);
        }
      }
    }
  }
  TC_UNROLL for (int p = 0; p < NP; ++p) {
    const reg v = bias ? V::add(acc[p], b) : acc[p];
    T* yp = y + p * a->yw;
    if (!FULL) V::store_n(yp, v, cvalid);
    else if (kStreamDw3 && a->stream) V::stream(yp, v);
    else V::store(yp, v);
  }
}

// One channel vector (c0, cvalid channels of it) over output pixels [p0, p1) of an image.
template <int SW, bool FULL>
static void dw3_vector(const DepthwiseArgs* a, const T* x, T* y, const T* wpack,
                       const T* bias, int64_t c0, int cvalid, int64_t p0, int64_t p1) {
  typedef V::reg reg;
  reg w[9];
  const T* wc = wpack + c0 * 9;  // [C / VL][3][3][VL]: vector c0 / VL
  TC_UNROLL for (int t = 0; t < 9; ++t) w[t] = V::load(wc + t * V::N);
  const reg b = bias ? V::load(bias + c0) : V::zero();
  dw_row_segments(a, p0, p1, [&](int64_t oh, int64_t ow_a, int64_t ow_b, int64_t ih0,
                                 int64_t rlo, int64_t rhi) {
    const T* xrow = x + ih0 * a->xh + c0;
    T* yrow = y + oh * a->yh + c0;
    for (int64_t ow = ow_a; ow < ow_b; ow += DW3_NP) {
      const int np = (int)tc_min(DW3_NP, ow_b - ow);
      // the tile's input columns inside the input: ow*SW + j in [left, left + W)
      const int64_t clo = a->left - ow * SW, chi = a->left + a->W - ow * SW;
      with_count<DW3_NP>(np, [&](auto k) {
        dw3_tile<SW, decltype(k)::value, FULL>(a, xrow + ow * SW * a->xw, yrow + ow * a->yw, w,
                                               b, bias, rlo, rhi, clo, chi, cvalid);
      });
    }
  });
}

template <int SW>
static void dw3_pixels(const DepthwiseArgs* a, const T* x, T* y, const T* wpack,
                       const T* bias, int64_t p0, int64_t p1) {
  int64_t c0 = 0;
  for (; c0 + V::N <= a->C; c0 += V::N) {
    dw3_vector<SW, true>(a, x, y, wpack, bias, c0, V::N, p0, p1);
  }
  if (c0 < a->C) dw3_vector<SW, false>(a, x, y, wpack, bias, c0, (int)(a->C - c0), p0, p1);
  if (a->stream) V::fence();
}

// DepthwiseFn for R = S = 3, dh = dw = 1, sw = 1 or 2, yc = 1 (others: depthwise_pixels).
static void depthwise3x3_pixels(const DepthwiseArgs* a, const T* x, T* y, const T* wpack,
                                const T* bias, int64_t p0, int64_t p1) {
  if (a->sw == 2) dw3_pixels<2>(a, x, y, wpack, bias, p0, p1);
  else dw3_pixels<1>(a, x, y, wpack, bias, p0, p1);
}

// ------------------------------------------------------------------------------------------
// grad_weight (dense / grouped): register tile of NC input channels x NV output-channel
// vectors for one tap; the reduction runs over images, rows, columns in order.

// Pixels ahead that the weight-gradient tile prefetches grad_output into L1: a k-block's line
// of each pixel is one of K/KB lines a pixel apart, which the first channel block of a pass
// waits on (Zen 2, AVX2, 2 threads, alternating processes: MBv2 pointwise 24 -> 144 over
// 56 x 56 channels_last weight gradient 3.5-3.6 -> 2.7-2.8 ms, R50 downsample 17.9-18.0 ->
// 17.1-17.5; 16 pixels ahead measured the same on the first and slower on the second).
static constexpr int64_t kGwDyAhead = 8;

// seg pixels of a row segment into A (see gw_tile), x and dy advanced past them. UNIT: channel
// stride 1, so the NC channel offsets are constants (else see below); FULL: all NV vectors of
// output channels valid (else kvalid of them); PF: GradWeightArgs::prefetch (the input's
// prefetch only with UNIT).
template <int NC, int NV, bool UNIT, bool FULL, int PF>
__attribute__((always_inline)) static inline void gw_segment(V::reg (&A)[NC][NV], const T*& xr,
                                                             const T*& dr, int64_t seg,
                                                             int64_t xc, int64_t step,
                                                             int64_t dyp, int64_t kvalid) {
  if constexpr (!UNIT) {
    // A runtime channel stride: the NC addresses as a base per 3 channels plus 0, xc or 2 xc
    // (two index registers); from one base GCC kept NC - 1 offsets in registers and reloaded
    // some from the stack every pixel.
    constexpr int NB = (NC + 2) / 3;
    const T* xb[NB];
    TC_UNROLL for (int b = 0; b < NB; ++b) xb[b] = xr + 3 * b * xc;
    for (int64_t ow = 0; ow < seg; ++ow) {
      V::reg dv[NV];
      TC_UNROLL for (int j = 0; j < NV; ++j) {
        dv[j] = FULL ? V::load(dr + j * V::N) : load_k(dr + j * V::N, kvalid - j * V::N);
      }
      TC_UNROLL for (int i = 0; i < NC; ++i) fma_scalar<NV>(xb[i / 3] + (i % 3) * xc, dv, A[i]);
      if (PF & kGwPrefetchDy) __builtin_prefetch(dr + kGwDyAhead * dyp, 0, 3);
      TC_UNROLL for (int b = 0; b < NB; ++b) xb[b] += step;
      dr += dyp;
    }
    xr = xb[0];
    return;
  }
  for (int64_t ow = 0; ow < seg; ++ow) {
    V::reg dv[NV];
    TC_UNROLL for (int j = 0; j < NV; ++j) {
      dv[j] = FULL ? V::load(dr + j * V::N) : load_k(dr + j * V::N, kvalid - j * V::N);
    }
    TC_UNROLL for (int i = 0; i < NC; ++i) fma_scalar<NV>(xr + i, dv, A[i]);
    // the pixel's next line of channels into L2, for the channel blocks after this one: the
    // first tile to touch a line of a large input otherwise waits on memory for every pixel
    // (R50 1x1 256 -> 64 channels_last, 1 thread: 10.3-11.0 -> 8.5-9.0 ms; 2 threads
    // 1.03-1.05x -> 1.27-1.33x native; two lines ahead measured the same)
    if (PF & kGwPrefetchX) __builtin_prefetch(xr + kLineElems, 0, 2);
    if (PF & kGwPrefetchDy) __builtin_prefetch(dr + kGwDyAhead * dyp, 0, 3);
    xr += step;
    dr += dyp;
  }
}

// One tile for one set of the choices above (one body per case, chosen once per call: with the
// choices inside the loops GCC keeps the accumulators in memory, and between the loops they
// cost 7-pixel rows a fifth of the tile's time).
template <int NC, int NV, bool UNIT, bool FULL, int PF>
static void gw_tile_t(const GradWeightArgs* a, const T* x, const T* dy, T* acc,
                      int64_t kvalid, int64_t r, int64_t s, int accumulate) {
  typedef V::reg reg;
  reg A[NC][NV];
  // Two levels: chains of kGwChain pixels in registers, added in order onto the call's sums
  // (L1), those added onto acc at the end (the caller passes ~256 pixels per call).
  T sums[NC][NV * V::N];
  TC_UNROLL for (int i = 0; i < NC; ++i) {
    TC_UNROLL for (int j = 0; j < NV; ++j) A[i][j] = V::zero();
  }
  int started = 0;  // sums holds chains
  int64_t pending = 0;  // pixels in A
  const int64_t xc = a->xc, step = a->sw * a->xw, dyp = a->dyp, OW = a->OW;
  const int64_t x_row = a->sh * a->xh, dy_row = OW * dyp;
  for (int64_t n = 0; n < a->nimg; ++n) {
    const T* xrow = x + n * a->xn + r * a->dh * a->xh + s * a->dw * a->xw;
    const T* drow = dy + n * a->dyn;
    for (int64_t oh = 0; oh < a->OH; ++oh, xrow += x_row, drow += dy_row) {
      const T* xr = xrow;
      const T* dr = drow;
      // the row in segments that end where a chain is complete
      for (int64_t ow0 = 0; ow0 < OW;) {
        const int64_t seg = tc_min(OW - ow0, kGwChain - pending);
        gw_segment<NC, NV, UNIT, FULL, PF>(A, xr, dr, seg, xc, step, dyp, kvalid);
        ow0 += seg;
        pending += seg;
        if (pending == kGwChain) {
          TC_UNROLL for (int i = 0; i < NC; ++i) {
            TC_UNROLL for (int j = 0; j < NV; ++j) end_block(&sums[i][j * V::N], &A[i][j], &started);
          }
          started = 1, pending = 0;
        }
      }
    }
  }
  if (started) {  // the last chain onto sums, sums into A (else A holds the only chain)
    TC_UNROLL for (int i = 0; i < NC; ++i) {
      TC_UNROLL for (int j = 0; j < NV; ++j) {
        if (pending) end_block(&sums[i][j * V::N], &A[i][j], &started);
        A[i][j] = V::load(&sums[i][j * V::N]);
      }
    }
  }
  TC_UNROLL for (int i = 0; i < NC; ++i) {
    TC_UNROLL for (int j = 0; j < NV; ++j)
      end_block(acc + i * a->acc_c + j * V::N, &A[i][j], &accumulate);
  }
}

template <int NC, int NV>
static void gw_tile(const GradWeightArgs* a, const T* x, const T* dy, T* acc,
                    int64_t kvalid, int64_t r, int64_t s, int accumulate) {
  const auto run = [&](auto unit, auto pf) {
    constexpr bool U = decltype(unit)::value != 0;
    constexpr int P = decltype(pf)::value;
    if (kvalid >= NV * V::N) gw_tile_t<NC, NV, U, true, P>(a, x, dy, acc, kvalid, r, s, accumulate);
    else gw_tile_t<NC, NV, U, false, P>(a, x, dy, acc, kvalid, r, s, accumulate);
  };
  using unit = Count<1>;
  using strided = Count<0>;
  const int pf = a->prefetch & (kGwPrefetchX | kGwPrefetchDy);
  if (a->xc != 1) {  // (the input prefetch is for unit channel stride only)
    if (pf & kGwPrefetchDy) run(strided(), Count<kGwPrefetchDy>());
    else run(strided(), Count<0>());
    return;
  }
  switch (pf) {
    case kGwPrefetchX: run(unit(), Count<kGwPrefetchX>()); break;
    case kGwPrefetchDy: run(unit(), Count<kGwPrefetchDy>()); break;
    case kGwPrefetchX | kGwPrefetchDy: run(unit(), Count<kGwPrefetchX | kGwPrefetchDy>()); break;
    default: run(unit(), Count<0>());
  }
}

template <int NV, int NC>
static void grad_weight_block_t(const GradWeightArgs* a, const T* x, const T* dy,
                                T* acc, int64_t nc, int64_t kvalid, int64_t r, int64_t s,
                                int accumulate) {
  for (int64_t c = 0; c < nc; c += NC) {
    const int n = (int)tc_min(NC, nc - c);
    with_count<NC>(n, [&](auto k) {
      gw_tile<decltype(k)::value, NV>(a, x + c * a->xc, dy, acc + c * a->acc_c, kvalid, r, s,
                                      accumulate);
    });
  }
}
static void grad_weight_block(const GradWeightArgs* a, const T* x, const T* dy,
                              T* acc, int64_t nc, int64_t kvalid, int64_t r, int64_t s,
                              int accumulate) {
  grad_weight_block_t<GW_NV, GW_NC>(a, x, dy, acc, nc, kvalid, r, s, accumulate);
}
static void grad_weight_wide(const GradWeightArgs* a, const T* x, const T* dy,
                             T* acc, int64_t nc, int64_t kvalid, int64_t r, int64_t s,
                             int accumulate) {
  grad_weight_block_t<GW_WIDE_NV, GW_WIDE_NC>(a, x, dy, acc, nc, kvalid, r, s, accumulate);
}
// One output-channel vector: for groups of VL output channels (ResNeXt's 8 per group on AVX2,
// 16 on AVX-512), where the standard tile's second vector would multiply zeros, a pixel costs
// one load and GW_NARROW_NC broadcasts for as many useful multiply-adds.
static void grad_weight_narrow(const GradWeightArgs* a, const T* x, const T* dy,
                               T* acc, int64_t nc, int64_t kvalid, int64_t r, int64_t s,
                               int accumulate) {
  grad_weight_block_t<1, GW_NARROW_NC>(a, x, dy, acc, nc, kvalid, r, s, accumulate);
}

// ------------------------------------------------------------------------------------------
// grad_weight of 1x1 stride-1 convolutions over NCHW planes (PlanesGradWeightArgs): a register
// tile of NK output channels x NC input channels, one accumulator vector each, every step one
// vector of pixels of NK grad_output rows and NC input rows. The lanes are summed at the end
// of the pass (V::hsums: one vector of sums per V::N accumulators; a tile that does not fill
// the last vector sums zeros there).

template <int NK, int NC>
static void planes_gw_tile(const PlanesGradWeightArgs* a, const T* const* xr,
                           const T* const* dr, T* sums) {
  typedef V::reg reg;
  enum { NA = NK * NC, NS = (NA + V::N - 1) / V::N * V::N };
  reg A[NS];
  TC_UNROLL for (int i = 0; i < NS; ++i) A[i] = V::zero();
  const int64_t full = a->P / V::N * V::N, rest = a->P - full;
  for (int64_t n = 0; n < a->nimg; ++n) {
    const int64_t xo = n * a->xn, dof = n * a->dyn;
    for (int64_t p = 0; p < full; p += V::N) {
      reg d[NK];
      TC_UNROLL for (int k = 0; k < NK; ++k) d[k] = V::load(dr[k] + dof + p);
      TC_UNROLL for (int c = 0; c < NC; ++c) {
        reg xv = V::load(xr[c] + xo + p);
#if defined(__GNUC__) && !defined(TC_EMULATED_VECTORS)
        __asm__("" : "+v"(xv));  // one load: GCC would fold it into each of the NK multiply-adds
#endif
        TC_UNROLL for (int k = 0; k < NK; ++k) A[k * NC + c] = V::fma(xv, d[k], A[k * NC + c]);
      }
    }
    if (rest) {  // the image's last pixels: lanes past them load zeros
      reg d[NK];
      TC_UNROLL for (int k = 0; k < NK; ++k) d[k] = V::load_n(dr[k] + dof + full, (int)rest);
      TC_UNROLL for (int c = 0; c < NC; ++c) {
        const reg xv = V::load_n(xr[c] + xo + full, (int)rest);
        TC_UNROLL for (int k = 0; k < NK; ++k) A[k * NC + c] = V::fma(xv, d[k], A[k * NC + c]);
      }
    }
  }
  TC_UNROLL for (int i = 0; i < NS; i += V::N) V::store(sums + i, V::hsums(A + i));
}

static void grad_weight_planes(const PlanesGradWeightArgs* a, const T* x, const T* dy, T* acc,
                               int64_t nk, int64_t nc, int accumulate) {
  const T* dr[PG_NK];
  const T* xr[PG_NC];
  T sums[(PG_NK * PG_NC + V::N - 1) / V::N * V::N];
  // input channels outer: the tile's input rows stay in L1 while the task's output channels
  // pass (output channels outer read every input row from L2 once per output tile: R50 1x1
  // 64 -> 256 NCHW, 1 thread, 16-17.7 -> 15.5-16.5 ms)
  for (int64_t c0 = 0; c0 < nc; c0 += PG_NC) {
    const int64_t cn = tc_min(PG_NC, nc - c0);
    // rows past the end repeat the last one; their sums are dropped
    for (int c = 0; c < PG_NC; ++c) xr[c] = x + (c0 + tc_min(c, cn - 1)) * a->xc;
    for (int64_t k0 = 0; k0 < nk; k0 += PG_NK) {
      const int kn = (int)tc_min(PG_NK, nk - k0);
      for (int k = 0; k < kn; ++k) dr[k] = dy + (k0 + k) * a->dyk;
      with_count<PG_NK>(kn, [&](auto k) {
        planes_gw_tile<decltype(k)::value, PG_NC>(a, xr, dr, sums);
      });
      for (int64_t k = 0; k < kn; ++k) {
        T* row = acc + (k0 + k) * a->acc_k + c0;
        for (int64_t c = 0; c < cn; ++c)
          row[c] = accumulate ? row[c] + sums[k * PG_NC + c] : sums[k * PG_NC + c];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Depthwise grad_weight for one channel vector: acc[t][VL] for taps t = r*S + s.

// Output columns [lo, hi) whose column tap s is inside the input: left <= ow*sw + s*dw <
// left + W (lo >= hi: none).
static inline void dw_gw_columns(const DepthwiseGradWeightArgs* a, int64_t s, int64_t* lo,
                                 int64_t* hi) {
  const int64_t c0 = a->left - s * a->dw, c1 = a->left + a->W - s * a->dw;  // [c0, c1)
  *lo = c0 <= 0 ? 0 : tc_min(a->OW, (c0 + a->sw - 1) / a->sw);
  *hi = c1 <= 0 ? 0 : tc_min(a->OW, (c1 - 1) / a->sw + 1);
}

// Tap rows [r0, r0 + RG) x all S tap columns, one accumulator per tap. Window positions
// outside [top, top + H) x [left, left + W) are padding and skipped. Every output pixel takes
// all its taps at once (one grad_output load, independent accumulators): pixels whose window
// is inside the input without checks, border pixels (left / right columns, and whole rows whose
// windows cross the top / bottom) with their tap ranges. Per tap the pixels are summed in row
// order, whatever the threads. (Border pixels tap by tap made dependent chains and spent more
// on loop set-up than on products: MBv2 7 x 7 x 960 ran at 0.6-0.7x native.)
template <int RG, int S>
static void dw_gw_taps(const DepthwiseGradWeightArgs* a, const T* x, const T* dy, T* acc,
                       int64_t cvalid, int accumulate, int64_t r0) {
  typedef V::reg reg;
  constexpr int NT = RG * S;
  reg A[NT];
  int64_t toff[NT];
  TC_UNROLL for (int t = 0; t < NT; ++t) {
    A[t] = V::zero();
    toff[t] = (r0 + t / S) * a->dh * a->xh + (t % S) * a->dw * a->xw;
  }
  T* const acc0 = acc + r0 * S * V::N;
  // interior columns: every column tap inside the input
  int64_t in_lo = 0, in_hi = a->OW;
  TC_UNROLL for (int s = 0; s < S; ++s) {
    int64_t lo, hi;
    dw_gw_columns(a, s, &lo, &hi);
    in_lo = lo > in_lo ? lo : in_lo;
    in_hi = tc_min(in_hi, hi);
  }
  if (in_hi < in_lo) in_hi = in_lo;
  const bool full = cvalid >= V::N;
  const int64_t xs = a->sw * a->xw, dp = a->dyp;
  // taps of rows [rl, rh) (relative to r0) x columns [sl, sh) of one pixel
  const auto some_taps = [&](const T* xp, const T* dq, int64_t rl, int64_t rh, int64_t sl,
                             int64_t sh) {
    const reg d = load_k(dq, cvalid);
    TC_UNROLL for (int t = 0; t < NT; ++t) {
      const int r = t / S, s = t % S;
      if (r >= rl && r < rh && s >= sl && s < sh)
        A[t] = V::fma(load_k(xp + toff[t], cvalid), d, A[t]);
    }
  };
  const auto column_taps = [&](int64_t ow, int64_t* sl, int64_t* sh) {
    if (ow >= in_lo && ow < in_hi) *sl = 0, *sh = S;
    else dw_tap_range(ow * a->sw, S, a->dw, a->left, a->W, sl, sh);
  };
  const int64_t block_rows = rows_per_block(a->OW);
  int64_t rows = 0;
  for (int64_t n = 0; n < a->nimg; ++n) {
    for (int64_t oh = 0; oh < a->OH; ++oh) {
      if (rows++ == block_rows) {
        TC_UNROLL for (int t = 0; t < NT; ++t) end_block(acc0 + t * V::N, &A[t], &accumulate);
        accumulate = 1, rows = 1;
      }
      int64_t rl, rh, sl, sh;
      dw_tap_range(oh * a->sh, a->R, a->dh, a->top, a->H, &rl, &rh);
      rl = rl > r0 ? rl - r0 : 0, rh = tc_min(rh - r0, int64_t(RG));
      const T* xr = x + n * a->xn + oh * a->sh * a->xh;
      const T* dr = dy + n * a->dyn + oh * a->OW * dp;
      if (rl != 0 || rh != RG) {  // the windows cross the top or bottom
        if (rl >= rh) continue;
        for (int64_t ow = 0; ow < a->OW; ++ow) {
          column_taps(ow, &sl, &sh);
          some_taps(xr + ow * xs, dr + ow * dp, rl, rh, sl, sh);
        }
        continue;
      }
      for (int64_t ow = 0; ow < in_lo; ++ow) {
        column_taps(ow, &sl, &sh);
        some_taps(xr + ow * xs, dr + ow * dp, 0, RG, sl, sh);
      }
      for (int64_t ow = in_lo; ow < in_hi; ++ow) {
        const T* xp = xr + ow * xs;
        if (full) {
          const reg d = V::load(dr + ow * dp);
          TC_UNROLL for (int t = 0; t < NT; ++t) A[t] = V::fma(V::load(xp + toff[t]), d, A[t]);
        } else {
          const reg d = V::load_n(dr + ow * dp, (int)cvalid);
          TC_UNROLL for (int t = 0; t < NT; ++t)
            A[t] = V::fma(V::load_n(xp + toff[t], (int)cvalid), d, A[t]);
        }
      }
      for (int64_t ow = in_hi; ow < a->OW; ++ow) {
        column_taps(ow, &sl, &sh);
        some_taps(xr + ow * xs, dr + ow * dp, 0, RG, sl, sh);
      }
    }
  }
  TC_UNROLL for (int t = 0; t < NT; ++t) end_block(acc0 + t * V::N, &A[t], &accumulate);
}

// 3 x 3 taps over small images: each image's channel vector is copied into a zero-bordered
// buffer (its padded window area, at most kDwGwPaddedPixels pixels), and every pixel then
// takes its nine taps without range checks (MBv2 7 x 7: 24 of the 49 pixels are border
// pixels, and their tap ranges cost more than their products). The padding adds 0 * dy,
// which differs from skipping it only where dy is not finite: the caller recomputes the
// channels whose sums are not finite.
enum { kDwGwPaddedPixels = 256 };
static bool dw_gw_padded_fits(const DepthwiseGradWeightArgs* a, int64_t* Hp, int64_t* Wp) {
  *Hp = (a->OH - 1) * a->sh + 2 * a->dh + 1;
  *Wp = (a->OW - 1) * a->sw + 2 * a->dw + 1;
  return *Hp * *Wp <= kDwGwPaddedPixels;
}
static void dw_gw_3x3_padded(const DepthwiseGradWeightArgs* a, const T* x, const T* dy, T* acc,
                             int64_t cvalid, int accumulate, int64_t Hp, int64_t Wp) {
  typedef V::reg reg;
  alignas(64) T buf[kDwGwPaddedPixels * V::N];
  for (int64_t i = 0; i < Hp * Wp; ++i) V::store(buf + i * V::N, V::zero());
  // the input's rows and columns inside the buffer (the rest stays zero)
  const int64_t i_lo = a->top > 0 ? a->top : 0, i_hi = tc_min(a->top + a->H, Hp);
  const int64_t j_lo = a->left > 0 ? a->left : 0, j_hi = tc_min(a->left + a->W, Wp);
  int64_t toff[9];
  reg A[9];
  TC_UNROLL for (int t = 0; t < 9; ++t) {
    A[t] = V::zero();
    toff[t] = ((t / 3) * a->dh * Wp + (t % 3) * a->dw) * V::N;
  }
  const int64_t OH = a->OH, OW = a->OW, xh = a->xh, xw = a->xw, dyp = a->dyp;
  const int64_t b_step = a->sw * V::N, b_row = a->sh * Wp * V::N;
  const int64_t block_rows = rows_per_block(OW);
  int64_t rows = 0;
  for (int64_t n = 0; n < a->nimg; ++n) {
    const T* xi = x + n * a->xn;
    for (int64_t i = i_lo; i < i_hi; ++i) {
      for (int64_t j = j_lo; j < j_hi; ++j) {
        V::store(buf + (i * Wp + j) * V::N, load_k(xi + i * xh + j * xw, cvalid));
      }
    }
    const T* dr = dy + n * a->dyn;
    const T* br = buf;
    for (int64_t oh = 0; oh < OH; ++oh, br += b_row) {
      if (rows++ == block_rows) {
        TC_UNROLL for (int t = 0; t < 9; ++t) end_block(acc + t * V::N, &A[t], &accumulate);
        accumulate = 1, rows = 1;
      }
      const T* bp = br;
      for (int64_t ow = 0; ow < OW; ++ow, dr += dyp, bp += b_step) {
        const reg d = load_k(dr, cvalid);
        TC_UNROLL for (int t = 0; t < 9; ++t) A[t] = V::fma(V::load(bp + toff[t]), d, A[t]);
      }
    }
  }
  TC_UNROLL for (int t = 0; t < 9; ++t) end_block(acc + t * V::N, &A[t], &accumulate);
}

// acc[t][VL] for taps t = r*S + s. 3 x 3: all nine taps in one pass over the pixels (small
// images through a zero-bordered copy); 5- and
// 7-wide kernels: one tap row per pass (5 / 7 accumulators: AVX2 has 16 registers).
// Any other width: one tap at a time over the output pixels whose window position of that
// tap is inside the input.
static void depthwise_grad_weight(const DepthwiseGradWeightArgs* a, const T* x,
                                  const T* dy, T* acc, int64_t cvalid, int accumulate) {
  typedef V::reg reg;
  if (a->R == 3 && a->S == 3) {
    int64_t Hp, Wp;
    if (dw_gw_padded_fits(a, &Hp, &Wp)) {
      dw_gw_3x3_padded(a, x, dy, acc, cvalid, accumulate, Hp, Wp);
      return;
    }
    dw_gw_taps<3, 3>(a, x, dy, acc, cvalid, accumulate, 0);
    return;
  }
  if (a->S == 5 || a->S == 7) {
    for (int64_t r0 = 0; r0 < a->R; ++r0) {
      if (a->S == 5) dw_gw_taps<1, 5>(a, x, dy, acc, cvalid, accumulate, r0);
      else dw_gw_taps<1, 7>(a, x, dy, acc, cvalid, accumulate, r0);
    }
    return;
  }
  for (int64_t r = 0; r < a->R; ++r) {
    for (int64_t s = 0; s < a->S; ++s) {
      T* at = acc + (r * a->S + s) * V::N;
      reg A = V::zero();
      int started = accumulate;
      const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw;
      int64_t ow_lo, ow_hi;
      dw_gw_columns(a, s, &ow_lo, &ow_hi);
      const int64_t block_rows = rows_per_block(a->OW);
      int64_t rows = 0;
      for (int64_t n = 0; n < a->nimg; ++n) {
        for (int64_t oh = 0; oh < a->OH; ++oh) {
          if (rows++ == block_rows) {
            end_block(at, &A, &started);
            started = 1, rows = 1;
          }
          const int64_t ih = oh * a->sh + r * a->dh;
          if (ih < a->top || ih >= a->top + a->H) continue;
          const T* xr = x + n * a->xn + oh * a->sh * a->xh + toff;
          const T* dr = dy + n * a->dyn + oh * a->OW * a->dyp;
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
            A = V::fma(load_k(xr + ow * a->sw * a->xw, cvalid), load_k(dr + ow * a->dyp, cvalid),
                       A);
          }
        }
      }
      end_block(at, &A, &started);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Depthwise on NCHW planes (see PlaneArgs): slots of one vector of consecutive output columns
// of one row, PLANE_NS slots per register tile (for_plane_slots).

// stage_plane prefetches each source row twice: 8 rows ahead into L1, and one plane ahead
// (the same row of the next plane where planes are dense; a prefetch never faults) into L2.
// Plane by plane, the hardware prefetchers restart on every plane and the copy waited on DRAM.
// MBv2 NCHW, AVX-512, 1 thread, CPU time per call: dw s2 forward 5.3 -> 4.95 ms (8 rows ahead
// only: 6.4 -> 5.3); with the 3x3 rows kernel below, dw forward 3.2 -> 3.1 ms, input gradients
// (dw s2, dw) 7.6 -> 7.0 and 4.2 -> 3.1, weight gradients 5.7 -> 4.9 and 3.7 -> 3.3.
static constexpr int64_t kStageAheadRows = 8;

// A stride-2 row's zero-padded copy (stage_plane): elements, and zeros before the row.
static constexpr int64_t kStageRowBuf = 1024, kStageRowMargin = 2 * V::N;

// Rows are short: library memset / memcpy calls (which GCC would substitute for these loops)
// cost more than the copies themselves.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void stage_plane(const T* src, int64_t src_row, int64_t H, int64_t W, int64_t pt,
                        int64_t pl, int64_t Hp, int64_t sw, int64_t Wq, T* dst) {
  // Full-vector stores may run up to VL-1 elements past a row: into the next row (written after
  // this one) or the slack.
  const int64_t rowlen = sw * Wq;
  const int64_t lo = pl < 0 ? 0 : (pl > Wq ? Wq : pl);
  const int64_t hi = tc_min(Wq, pl + W) < lo ? lo : tc_min(Wq, pl + W);
  // Stride 2 over rows that fit: each row is copied into the middle of a zeroed buffer and
  // every phase vector loads from there, the padding included. Per vector that left the row
  // (two of a 28-column row's three) an element-by-element copy with two bounds checks each
  // took most of the staging (Zen 2, AVX2, 2 threads, switched within one process, NCHW
  // forward: MBv2 dw s2 192 x 28 x 28 1.16-1.40 -> 0.91-1.01 ms, 576 x 14 x 14 0.50 -> 0.47,
  // 144 x 56 x 56 2.73 -> 2.43; ResNeXt-50's 256 channels in 32 groups at stride 2 5.2 -> 4.5,
  // the dw s2 192 x 28 x 28 weight gradient 0.67 -> 0.61; the same results bit for bit).
  T padded_buf[kStageRowBuf];
  T* padded_row = nullptr;
  if (sw == 2 && pl >= 0 && pl <= kStageRowMargin &&
      kStageRowMargin + (W > 2 * Wq + V::N ? W : 2 * Wq + V::N) <= kStageRowBuf) {
    padded_row = padded_buf;
    for (int64_t k = 0; k < kStageRowMargin + 2 * Wq + V::N; k += V::N) {
      V::store(padded_buf + k, V::zero());
    }
  }
  for (int64_t i = 0; i < Hp; ++i) {
    T* d = dst + i * rowlen;
    const int64_t ih = i - pt;
    if (ih < 0 || ih >= H) {
      for (int64_t j = 0; j < rowlen; j += V::N) V::store(d + j, V::zero());
      continue;
    }
    const T* srow = src + ih * src_row;
    const char* near = reinterpret_cast<const char*>(srow + kStageAheadRows * src_row);
    const char* far = reinterpret_cast<const char*>(srow + H * src_row);
    for (int64_t b = 0; b < W * int64_t(sizeof(T)); b += 64) {
      __builtin_prefetch(near + b, 0, 3);
      __builtin_prefetch(far + b, 0, 2);
    }
    if (sw == 1) {
      for (int64_t j = 0; j < lo; j += V::N) V::store(d + j, V::zero());
      int64_t j = lo;
      for (; j + V::N <= hi; j += V::N) V::store(d + j, V::load(srow + j - pl));
      for (; j < hi; ++j) d[j] = srow[j - pl];  // (masked loads are slow on some CPUs)
      for (j = hi; j < Wq; j += V::N) V::store(d + j, V::zero());
      continue;
    }
    if (padded_row) {  // (stride 2 only)
      // the row into the middle of padded_row (its margins stay zero), every vector from there
      T* mid = padded_row + kStageRowMargin;
      int64_t k = 0;
      for (; k + V::N <= W; k += V::N) V::store(mid + k, V::load(srow + k));
      for (; k < W; ++k) mid[k] = srow[k];
      for (int64_t j0 = 0; j0 < Wq; j0 += V::N) {
        const int64_t j = tc_min(j0, Wq - V::N);
        V::reg even, odd;
        V::load_even_odd(mid + 2 * j - pl, even, odd);
        V::store(d + j, even);
        V::store(d + Wq + j, odd);
      }
      continue;
    }
    if (sw == 2) {
      // vectors of both phases from 2 x VL input columns (through a zero-padded copy where
      // they leave the row); the last vector ends at Wq, overlapping the one before
      for (int64_t j0 = 0; j0 < Wq; j0 += V::N) {
        const int64_t j = tc_min(j0, Wq - V::N), first = 2 * j - pl;
        T padded[2 * V::N];
        const bool inside = first >= 0 && first + 2 * V::N <= W;
        for (int64_t k = 0; !inside && k < 2 * V::N; ++k) {
          padded[k] = first + k >= 0 && first + k < W ? srow[first + k] : T(0);
        }
        V::reg even, odd;
        V::load_even_odd(inside ? srow + first : padded, even, odd);
        V::store(d + j, even);
        V::store(d + Wq + j, odd);
      }
      continue;
    }
    // column j of phase q: input column j * sw + q - pl, or zero
    for (int64_t j = 0; j < Wq; ++j) {
      for (int64_t q = 0; q < sw; ++q) {
        const int64_t iw = j * sw + q - pl;
        d[q * Wq + j] = iw >= 0 && iw < W ? srow[iw] : T(0);
      }
    }
  }
}

// Stores one output vector of a plane kernel: `valid` lanes, or all of them where valid < 0
// (a full store that may spill into the next row, which a later slot of this plane overwrites:
// masked stores are slow on some CPUs); through the column stride where it is not 1.
static inline void store_plane_vector(const PlaneArgs* a, T* y, V::reg v, int64_t valid) {
  if (a->yw == 1) {
    if (valid >= V::N && a->stream) V::stream(y, v);
    else if (valid >= V::N || valid < 0) V::store(y, v);
    else V::store_n(y, v, (int)valid);
  } else {
    T buf[V::N];
    V::store(buf, v);
    for (int64_t l = 0; l < tc_abs(valid); ++l) y[l * a->yw] = buf[l];
  }
}

// Walks the plane's output vectors (rows wrap, so narrow planes still fill a tile) and calls
// tile(ns, xs, ys, valid) for every NS of them (fewer at the end): their input origins, outputs
// and valid lanes (negative: see store_plane_vector).
template <int NS, typename Tile>
static void for_plane_slots(const PlaneArgs* a, const T* x, T* y, const Tile& tile) {
  const T* xs[NS];
  T* ys[NS];
  int64_t valid[NS];
  const int64_t ncol = (a->OW + V::N - 1) / V::N;
  const bool dense_rows = a->yw == 1 && a->yh == a->OW;
  int ns = 0;
  for (int64_t oh = 0; oh < a->OH; ++oh) {
    for (int64_t v = 0; v < ncol; ++v) {
      const int64_t ow = v * V::N;
      xs[ns] = x + oh * a->sh * a->xh + ow;
      ys[ns] = y + oh * a->yh + ow * a->yw;
      valid[ns] = tc_min(V::N, a->OW - ow);
      // a row tail of dense rows may be stored in full when the spill stays in this plane
      if (dense_rows && valid[ns] < V::N && (oh * a->OW + ow + V::N) <= a->OH * a->OW)
        valid[ns] = -valid[ns];
      if (++ns == NS) {
        tile(ns, xs, ys, valid);
        ns = 0;
      }
    }
  }
  if (ns) tile(ns, xs, ys, valid);
  if (a->stream) V::fence();
}

template <int NS>
static void plane_tile(const PlaneArgs* a, const T* const* xs, T* const* ys,
                       const int64_t* valid, const T* w, T bias) {
  typedef V::reg reg;
  reg acc[NS];
  TC_UNROLL for (int i = 0; i < NS; ++i) acc[i] = V::zero();
  const int64_t RS = a->R * a->S;
  for (int64_t t = 0; t < RS; ++t) {
    const int64_t off = a->tap_offset[t];
    const reg wv = V::set1(w[t]);
    TC_UNROLL for (int i = 0; i < NS; ++i) acc[i] = V::fma(V::load(xs[i] + off), wv, acc[i]);
  }
  const reg b = V::set1(bias);
  TC_UNROLL for (int i = 0; i < NS; ++i) {
    store_plane_vector(a, ys[i], V::add(acc[i], b), valid[i]);
  }
}

// 3 x 3 taps over input rows one apart (sh = dh = 1): a tile is NR output rows of one vector
// column, and each input row's three column taps, loaded once, feed the up to three output rows
// that read it: 3 (NR + 2) loads for 9 NR multiply-adds instead of 9 NR, the taps in registers.
// The taps are summed in the same order as plane_tile's (bitwise the same results). MBv2 dw
// NCHW, one image (in cache), 1 thread: forward 0.33 -> 0.19 ms on AVX-512, 0.38 -> 0.21 on
// AVX2; input gradient 0.35 -> 0.21.
template <int NR>
static void plane_rows3x3_tile(const PlaneArgs* a, const T* x, T* y, int64_t valid,
                               const V::reg* w, V::reg bias) {
  typedef V::reg reg;
  const int64_t c1 = a->tap_offset[1], c2 = a->tap_offset[2];
  reg acc[NR];
  TC_UNROLL for (int o = 0; o < NR; ++o) acc[o] = V::zero();
  TC_UNROLL for (int i = 0; i < NR + 2; ++i) {
    const T* row = x + i * a->xh;
    reg x0 = V::load(row), x1 = V::load(row + c1), x2 = V::load(row + c2);
#if defined(__GNUC__) && !defined(TC_EMULATED_VECTORS)
    // in registers: GCC would fold each load into every multiply-add that uses it
    __asm__("" : "+v"(x0), "+v"(x1), "+v"(x2));
#endif
    TC_UNROLL for (int r = 2; r >= 0; --r) {  // output row i - r (its r-th tap row)
      if (i - r < 0 || i - r >= NR) continue;
      reg& s = acc[i - r];
      s = V::fma(x2, w[3 * r + 2], V::fma(x1, w[3 * r + 1], V::fma(x0, w[3 * r], s)));
    }
  }
  TC_UNROLL for (int o = 0; o < NR; ++o) {
    store_plane_vector(a, y + o * a->yh, V::add(acc[o], bias), valid);
  }
}

// Vector columns right to left within a block of rows: a row's last, partial vector may be
// stored in full (see for_plane_slots) only because the columns it spills into, the next
// row's first ones, are stored after it.
static void depthwise_plane_rows3x3(const PlaneArgs* a, const T* x, T* y, const T* w,
                                    T bias) {
  V::reg wv[9];
  TC_UNROLL for (int t = 0; t < 9; ++t) wv[t] = V::set1(w[t]);
  const V::reg b = V::set1(bias);
  const int64_t ncol = (a->OW + V::N - 1) / V::N;
  const bool dense_rows = a->yw == 1 && a->yh == a->OW;
  for (int64_t oh0 = 0; oh0 < a->OH; oh0 += PLANE_ROWS) {
    const int nr = (int)tc_min(PLANE_ROWS, a->OH - oh0);
    for (int64_t v = ncol - 1; v >= 0; --v) {
      const int64_t ow = v * V::N;
      int64_t valid = tc_min(V::N, a->OW - ow);
      if (dense_rows && valid < V::N && (oh0 + nr - 1) * a->OW + ow + V::N <= a->OH * a->OW) {
        valid = -valid;  // the block's last row too: its spill stays in the plane
      }
      with_count<PLANE_ROWS>(nr, [&](auto k) {
        plane_rows3x3_tile<decltype(k)::value>(a, x + oh0 * a->xh + ow,
                                               y + oh0 * a->yh + ow * a->yw, valid, wv, b);
      });
    }
  }
  if (a->stream) V::fence();
}

static void depthwise_plane(const PlaneArgs* a, const T* x, T* y, const T* w,
                            T bias) {
  if (a->R == 3 && a->S == 3 && a->sh == 1 && a->dh == 1) {
    depthwise_plane_rows3x3(a, x, y, w, bias);
    return;
  }
  for_plane_slots<PLANE_NS>(a, x, y, [&](int ns, const T* const* xs, T* const* ys,
                                         const int64_t* valid) {
    with_count<PLANE_NS>(ns, [&](auto k) {
      plane_tile<decltype(k)::value>(a, xs, ys, valid, w, bias);
    });
  });
}

// The grouped kernels sum each window row (S taps x cpg channels) into fresh registers and add
// the rows' sums in order (in L1): one sequence over a ResNeXt 4 -> 4 window (36 products) had
// 1.3-1.7x the max error of F.conv2d against float64, rows of 12 0.7-0.9x. Called after row r
// of R with its sums in *acc: the last row's sums end in *acc with the others added.
static inline void add_window_row(T* rows, V::reg* acc, int64_t r, int64_t R) {
  if (r + 1 < R) V::store(rows, r == 0 ? *acc : V::add(V::load(rows), *acc));
  else if (r > 0) *acc = V::add(V::load(rows), *acc);
}

// Grouped on NCHW planes (see GroupedPlaneFn): register tile of 4 output channels x NS row
// vectors; each input vector loaded once per (tap, channel) serves the 4 outputs. The sums
// in window-row blocks (see add_window_row), as grouped_tile's.
template <int NS>
static void grouped_plane_tile(const PlaneArgs* a, const T* const* xs, T* const* ys,
                               const int64_t* valid, int64_t xplane, int64_t cpg, int64_t yk,
                               int64_t kn, const T* w, const T* bias) {
  typedef V::reg reg;
  reg acc[4][NS];
  T rows[4][NS][V::N];
  for (int64_t r = 0; r < a->R; ++r) {
    TC_UNROLL for (int k = 0; k < 4; ++k) {
      TC_UNROLL for (int i = 0; i < NS; ++i) acc[k][i] = V::zero();
    }
    for (int64_t t = r * a->S; t < (r + 1) * a->S; ++t) {
      const int64_t off = a->tap_offset[t];
      const T* wt = w + t * cpg * 4;
      for (int64_t j = 0; j < cpg; ++j) {
        reg xv[NS];
        TC_UNROLL for (int i = 0; i < NS; ++i) xv[i] = V::load(xs[i] + j * xplane + off);
        TC_UNROLL for (int k = 0; k < 4; ++k) {
          const reg wv = V::bcast(wt + j * 4 + k);
          TC_UNROLL for (int i = 0; i < NS; ++i) acc[k][i] = V::fma(xv[i], wv, acc[k][i]);
        }
      }
    }
    TC_UNROLL for (int k = 0; k < 4; ++k) {
      TC_UNROLL for (int i = 0; i < NS; ++i) add_window_row(rows[k][i], &acc[k][i], r, a->R);
    }
  }
  TC_UNROLL for (int k = 0; k < 4; ++k) {  // (compile-time k: see planes_direct_tile)
    if (k >= kn) break;
    const reg b = bias ? V::set1(bias[k]) : V::zero();
    TC_UNROLL for (int i = 0; i < NS; ++i) {
      store_plane_vector(a, ys[i] + k * yk, bias ? V::add(acc[k][i], b) : acc[k][i], valid[i]);
    }
  }
}

static void grouped_plane(const PlaneArgs* a, const T* x, int64_t xplane, int64_t cpg, T* y,
                          int64_t yk, int64_t kn, const T* w, const T* bias) {
  for_plane_slots<GP_NS>(a, x, y, [&](int ns, const T* const* xs, T* const* ys,
                                      const int64_t* valid) {
    with_count<GP_NS>(ns, [&](auto k) {
      grouped_plane_tile<decltype(k)::value>(a, xs, ys, valid, xplane, cpg, yk, kn, w, bias);
    });
  });
}

// Taps [t0, t0 + NT) of the plane's grad_weight; lanes past OW multiply zeros.
template <int NT>
static void plane_gw_taps(const PlaneArgs* a, const T* x, const T* dy, T* acc,
                          int64_t t0, int accumulate) {
  typedef V::reg reg;
  reg A[NT];
  int64_t toff[NT];
  TC_UNROLL for (int t = 0; t < NT; ++t) {
    A[t] = V::zero();
    toff[t] = a->tap_offset[t0 + t];
  }
  const int64_t ncol = (a->OW + V::N - 1) / V::N;
  const int64_t block_rows = rows_per_block(ncol);  // per lane: ncol products per row
  for (int64_t oh = 0; oh < a->OH; ++oh) {
    if (oh > 0 && oh % block_rows == 0) {
      TC_UNROLL for (int t = 0; t < NT; ++t)
        end_block(acc + (t0 + t) * V::N, &A[t], &accumulate);
      accumulate = 1;
    }
    const T* xr = x + oh * a->sh * a->xh;
    const T* dr = dy + oh * a->yh;
    for (int64_t v = 0; v < ncol; ++v) {
      const reg d = load_k(dr + v * V::N, a->OW - v * V::N);
      TC_UNROLL for (int t = 0; t < NT; ++t)
        A[t] = V::fma(V::load(xr + v * V::N + toff[t]), d, A[t]);
    }
  }
  TC_UNROLL for (int t = 0; t < NT; ++t) end_block(acc + (t0 + t) * V::N, &A[t], &accumulate);
}

static void depthwise_plane_grad_weight(const PlaneArgs* a, const T* x, const T* dy,
                                        T* acc, int accumulate) {
  const int64_t RS = a->R * a->S;
  for (int64_t t0 = 0; t0 < RS; t0 += PLANE_NS) {
    with_count<PLANE_NS>((int)tc_min(PLANE_NS, RS - t0), [&](auto k) {
      plane_gw_taps<decltype(k)::value>(a, x, dy, acc, t0, accumulate);
    });
  }
}

// ------------------------------------------------------------------------------------------
// Grouped, few channels per group (see GroupedArgs). Lane k of output vector cv belongs to
// group (cv*VL + k) / kpg; its input channel j sits at lane (k / kpg) * cpg + j of the input
// vector loaded at channel (cv*VL / kpg) * cpg. Per output: taps in order, j in order, in
// window-row blocks (add_window_row), then the bias.

#if TC_HAS_PERMUTE
static void grouped_indices(int64_t cpg, int64_t kpg, int idx[][V::N]) {
  for (int64_t j = 0; j < V::N; ++j)  // rows j >= cpg are never used; kept in range
    for (int k = 0; k < V::N; ++k) idx[j][k] = (int)(((k / kpg) * cpg + j) % V::N);
}

template <int NP>
static void grouped_tile(const GroupedArgs* a, const T* const* xp, T* const* yp,
                         const T* wpack, const T* bias, const int idx[][V::N]) {
  typedef V::reg reg;
  const int64_t cpg = a->cpg, RS = a->R * a->S;
  for (int64_t k0 = 0; k0 < a->K; k0 += V::N) {
    const int64_t kvalid = a->K - k0;
    const int64_t cin0 = (k0 / a->kpg) * cpg, cvalid = a->C - cin0;
    reg acc[NP];
    T rows[NP][V::N];
    const T* w = wpack + (k0 / V::N) * RS * cpg * V::N;
    for (int64_t r = 0; r < a->R; ++r) {
      TC_UNROLL for (int p = 0; p < NP; ++p) acc[p] = V::zero();
      for (int64_t s = 0; s < a->S; ++s) {
        const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw + cin0;
        reg xv[NP];
        TC_UNROLL for (int p = 0; p < NP; ++p) xv[p] = load_k(xp[p] + toff, cvalid);
        for (int64_t j = 0; j < cpg; ++j) {
          const reg wv = V::load(w);
          const V::ireg ix = V::iload(idx[j]);
          w += V::N;
          TC_UNROLL for (int p = 0; p < NP; ++p)
            acc[p] = V::fma(V::permute(xv[p], ix), wv, acc[p]);
        }
      }
      TC_UNROLL for (int p = 0; p < NP; ++p) add_window_row(rows[p], &acc[p], r, a->R);
    }
    if (bias) {
      const reg b = V::load(bias + k0);
      TC_UNROLL for (int p = 0; p < NP; ++p) acc[p] = V::add(acc[p], b);
    }
    if (a->yc == 1) {
      TC_UNROLL for (int p = 0; p < NP; ++p) {
        if (kvalid >= V::N && a->stream) V::stream(yp[p] + k0, acc[p]);
        else if (kvalid >= V::N) V::store(yp[p] + k0, acc[p]);
        else V::store_n(yp[p] + k0, acc[p], (int)kvalid);
      }
    } else {
      T buf[NP][V::N];
      TC_UNROLL for (int p = 0; p < NP; ++p) V::store(buf[p], acc[p]);
      const int64_t n = tc_min(kvalid, V::N);
      for (int64_t k = 0; k < n; ++k) {
        TC_UNROLL for (int p = 0; p < NP; ++p) yp[p][(k0 + k) * a->yc] = buf[p][k];
      }
    }
  }
}

static void grouped_pixels(const GroupedArgs* a, const T* x, T* y, const T* wpack,
                           const T* bias, int64_t p0, int64_t p1) {
  int idx[V::N][V::N];
  grouped_indices(a->cpg, a->kpg, idx);
  const T* xp[DW_NP];
  T* yp[DW_NP];
  int64_t oh = p0 / a->OW, ow = p0 % a->OW;
  for (int64_t p = p0; p < p1;) {
    const int np = (int)tc_min(DW_NP, p1 - p);
    for (int i = 0; i < np; ++i) {
      xp[i] = x + oh * a->sh * a->xh + ow * a->sw * a->xw;
      yp[i] = y + oh * a->yh + ow * a->yw;
      if (++ow == a->OW) { ow = 0; ++oh; }
    }
    with_count<DW_NP>(np, [&](auto k) {
      grouped_tile<decltype(k)::value>(a, xp, yp, wpack, bias, idx);
    });
    p += np;
  }
  if (a->stream) V::fence();
}

// CPG (channels per group) a compile-time count: with a runtime one the accumulators were
// indexed at run time, lived in memory, and every multiply-add stored its sum.
template <int CPG>
static void grouped_gw_t(const GroupedGradWeightArgs* a, const T* x, const T* dy, T* acc,
                         int64_t cv, int64_t r, int64_t s, int accumulate) {
  typedef V::reg reg;
  int idx[V::N][V::N];
  grouped_indices(CPG, a->kpg, idx);
  const int64_t k0 = cv * V::N, kvalid = a->K - k0;
  const int64_t cin0 = (k0 / a->kpg) * CPG, cvalid = a->C - cin0;
  reg A[CPG];
  V::ireg ix[CPG];
  TC_UNROLL for (int j = 0; j < CPG; ++j) {
    A[j] = V::zero();
    ix[j] = V::iload(idx[j]);
  }
  const int64_t toff = r * a->dh * a->xh + s * a->dw * a->xw + cin0;
  const int64_t block_rows = rows_per_block(a->OW);
  // Three levels (the reduction runs over every pixel of the batch): blocks of about
  // TC_BLOCK pixels in registers, kMidBlocks blocks onto `mid` (L1), mids onto acc.
  T mid[CPG][V::N];
  int mid_started = 0;
  int64_t rows = 0, blocks = 0;
  auto end_mid = [&]() {
    TC_UNROLL for (int j = 0; j < CPG; ++j) {
      reg m = V::load(mid[j]);
      end_block(acc + j * V::N, &m, &accumulate);
    }
    accumulate = 1, mid_started = 0, blocks = 0;
  };
  const int64_t xstep = a->sw * a->xw;
  for (int64_t n = 0; n < a->nimg; ++n) {
    for (int64_t oh = 0; oh < a->OH; ++oh) {
      if (rows++ == block_rows) {
        TC_UNROLL for (int j = 0; j < CPG; ++j) end_block(mid[j], &A[j], &mid_started);
        mid_started = 1, rows = 1;
        if (++blocks == kMidBlocks) end_mid();
      }
      const T* xr = x + n * a->xn + oh * a->sh * a->xh + toff;
      const T* dr = dy + n * a->dyn + oh * a->OW * a->dyp + k0;
      for (int64_t ow = 0; ow < a->OW; ++ow) {
        const reg d = load_k(dr, kvalid), xv = load_k(xr, cvalid);
        TC_UNROLL for (int j = 0; j < CPG; ++j) A[j] = V::fma(V::permute(xv, ix[j]), d, A[j]);
        xr += xstep;
        dr += a->dyp;
      }
    }
  }
  TC_UNROLL for (int j = 0; j < CPG; ++j) end_block(mid[j], &A[j], &mid_started);
  end_mid();
}

// cpg <= kpg <= V::N (kpg divides V::N)
static void grouped_grad_weight(const GroupedGradWeightArgs* a, const T* x, const T* dy,
                                T* acc, int64_t cv, int64_t r, int64_t s, int accumulate) {
  with_count<V::N>((int)a->cpg, [&](auto k) {
    grouped_gw_t<decltype(k)::value>(a, x, dy, acc, cv, r, s, accumulate);
  });
}
#define TC_GROUPED &grouped_pixels, &grouped_grad_weight
#else
#define TC_GROUPED 0, 0
#endif

// ------------------------------------------------------------------------------------------
// NCHW rows / planes to pixel-major (see kernel_api.h): N x N blocks in registers (masked at
// the channel and pixel tails).

// V::interleave_rows_n<C>(src, sc, W, dst), where a V has it: C = 2..4 rows of a few channels
// into dense pixel-major order (dst[i*C + c] = src[c*sc + i]) without the N x N transposes, for
// whole vectors of pixels; returns how many pixels it did (the rest are copied here).
template <typename W, typename = void>
struct HasInterleaveRows {
  static constexpr bool value = false;
};
template <typename W>
struct HasInterleaveRows<W, decltype((void)&W::template interleave_rows_n<2>, void())> {
  static constexpr bool value = true;
};
template <typename W, int NC, bool STREAM>
static void interleave_rows_c(const T* src, int64_t sc, int64_t n, T* dst) {
  for (int64_t i = W::template interleave_rows_n<NC, STREAM>(src, sc, n, dst); i < n; ++i) {
    for (int k = 0; k < NC; ++k) dst[i * NC + k] = src[k * sc + i];
  }
}
// Returns false where it does not apply (no interleave in this V, or C outside 2..4).
// STREAM: non-temporal stores (the caller fences).
template <typename W, bool STREAM = false>
static bool interleave_rows(const T* src, int64_t sc, int64_t C, int64_t n, T* dst) {
  if constexpr (HasInterleaveRows<W>::value) {
    switch (C) {
      case 2: interleave_rows_c<W, 2, STREAM>(src, sc, n, dst); return true;
      case 3: interleave_rows_c<W, 3, STREAM>(src, sc, n, dst); return true;
      case 4: interleave_rows_c<W, 4, STREAM>(src, sc, n, dst); return true;
      default: return false;
    }
  }
  return false;
}

static void transpose_rows(const T* src, int64_t sc, int64_t C, int64_t W, T* dst,
                           int64_t dc) {
  if (dc == C && interleave_rows<V>(src, sc, C, W, dst)) return;
  for (int64_t c0 = 0; c0 < C; c0 += V::N) {
    const int nc = (int)tc_min(V::N, C - c0);
    for (int64_t i0 = 0; i0 < W; i0 += V::N) {
      V::transpose(src + c0 * sc + i0, sc, dst + i0 * dc + c0, dc, nc, (int)tc_min(V::N, W - i0));
    }
  }
}

static void interleave_phase_rows(const T* src, int64_t phase_stride, int64_t src_row,
                                  int64_t P, int64_t W, int64_t rows, T* dst, int64_t dst_row,
                                  bool stream) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* s = src + i * src_row;
    T* d = dst + i * dst_row;
    if (!(stream && interleave_rows<V, true>(s, phase_stride, P, W, d))) {
      transpose_rows(s, phase_stride, P, W, d, P);
    }
  }
  if (stream) V::fence();
}

// ------------------------------------------------------------------------------------------
// Winograd transforms (see kernel_api.h), one channel vector at a time, for forms that
// share everything but their 1-D transforms (applied to rows, then to columns): WINDOW
// inputs (STEP apart from one tile to the next) -> A transformed values; A products -> OT
// outputs; 3 taps -> A transformed taps.
// F(2x2, 3x3), stride 1: B^T d B with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
// A^T m A with A^T = [1 1 1 0; 0 1 -1 -1] (for cross-correlation: y0 = d0 g0 + d1 g1 + d2 g2).
// Stride 2: see WinogradStride2 and WinogradStride2GradInput.

// F(2, 3): windows of 4 inputs, 2 apart.
struct WinogradF23 {
  enum { WINDOW = 4, A = 4, OT = 2, STEP = 2, PREFETCH_LOCALITY = 3 };  // prefetch into L1
  static inline void input(const V::reg* d, V::reg* t) {
    t[0] = V::sub(d[0], d[2]);
    t[1] = V::add(d[1], d[2]);
    t[2] = V::sub(d[2], d[1]);
    t[3] = V::sub(d[1], d[3]);
  }
  static inline void output(const V::reg* m, V::reg* o) {
    o[0] = V::add(V::add(m[0], m[1]), m[2]);
    o[1] = V::sub(V::sub(m[1], m[2]), m[3]);
  }
  // G g, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (x * 1/2 is exact: fma with zero)
  static inline void taps(const V::reg* g, V::reg* u) {
    const V::reg half = V::set1(T(0.5));
    u[0] = g[0];
    u[1] = V::fma(V::add(V::add(g[0], g[1]), g[2]), half, V::zero());
    u[2] = V::fma(V::add(V::sub(g[0], g[1]), g[2]), half, V::zero());
    u[3] = g[2];
  }
  // Weight gradient: A g of 2 grad_output values, A = [1 0; 1 1; 1 -1; 0 -1] (A^T above,
  // transposed), and G^T m of A values, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1].
  static inline void grad_output(const V::reg* g, V::reg* p) {
    p[0] = g[0];
    p[1] = V::add(g[0], g[1]);
    p[2] = V::sub(g[0], g[1]);
    p[3] = V::sub(V::zero(), g[1]);
  }
  static inline void tap_grads(const V::reg* m, V::reg* g) {
    const V::reg half = V::set1(T(0.5));
    const V::reg h = V::fma(V::add(m[1], m[2]), half, V::zero());
    g[0] = V::add(m[0], h);
    g[1] = V::fma(V::sub(m[1], m[2]), half, V::zero());
    g[2] = V::add(h, m[3]);
  }
};

// Stride 2, 2 outputs of 3 taps from a window of 5 inputs, 4 apart: y0 = g0 d0 + g1 d1 + g2 d2,
// y1 = g0 d2 + g1 d3 + g2 d4. The odd inputs meet the middle tap alone; the even ones form an
// F(2, 2) of taps (g0, g2) over (d0, d2, d4): (d0 - d2) g0 + d2 (g0 + g2) = y0 - g1 d1 and
// d2 (g0 + g2) + (d4 - d2) g2 = y1 - g1 d3. 5 products per row of 2 outputs instead of 6: 25
// per 2x2 tile instead of 36.
// B^T = [1 0 -1 0 0; 0 0 1 0 0; 0 0 -1 0 1; 0 1 0 0 0; 0 0 0 1 0],
// G = [1 0 0; 1 0 1; 0 0 1; 0 1 0; 0 1 0], A^T = [1 1 0 1 0; 0 1 1 0 1].
struct WinogradStride2 {
  // prefetched into L2: TC_WINOGRAD_PREFETCH tiles of 5 x 4 new pixels (40 KB for 128
  // channels) would not stay in L1 (R50 3x3 stride 2 channels_last, 1 thread: 16.1 -> 15.4 ms
  // of CPU per call; the stride-1 form measured 2% slower so)
  enum { WINDOW = 5, A = 5, OT = 2, STEP = 4, PREFETCH_LOCALITY = 2 };
  static inline void input(const V::reg* d, V::reg* t) {
    t[0] = V::sub(d[0], d[2]);
    t[1] = d[2];
    t[2] = V::sub(d[4], d[2]);
    t[3] = d[1];
    t[4] = d[3];
  }
  static inline void output(const V::reg* m, V::reg* o) {
    o[0] = V::add(V::add(m[0], m[1]), m[3]);
    o[1] = V::add(V::add(m[1], m[2]), m[4]);
  }
  static inline void taps(const V::reg* g, V::reg* u) {
    u[0] = g[0];
    u[1] = V::add(g[0], g[2]);
    u[2] = g[2];
    u[3] = g[1];
    u[4] = g[1];
  }
  // Weight gradient: A = [1 0; 1 1; 0 1; 1 0; 0 1], G^T = [1 1 0 0 0; 0 0 0 1 1; 0 1 1 0 0]
  // (no rounding but the sums').
  static inline void grad_output(const V::reg* g, V::reg* p) {
    p[0] = g[0];
    p[1] = V::add(g[0], g[1]);
    p[2] = g[1];
    p[3] = g[0];
    p[4] = g[1];
  }
  static inline void tap_grads(const V::reg* m, V::reg* g) {
    g[0] = V::add(m[0], m[1]);
    g[1] = V::add(m[3], m[4]);
    g[2] = V::add(m[1], m[2]);
  }
};

// The input gradient of a 3x3 stride-2 convolution, per row of 4 grad_input pixels from 3
// grad_output values (2 apart from one tile to the next), with the taps rotated (as the
// stride-1 input gradient reads them: g = (w2, w1, w0), transformed as WinogradStride2's).
// grad_input pixel I (padded coordinates) takes w0 dy[I/2] + w2 dy[I/2 - 1] at even I and
// w1 dy[(I-1)/2] at odd I: the even pixels of a tile are an F(2, 2) of taps (w2, w0), the odd
// ones a product each, 5 products per 4 pixels instead of 6 (25 per 4x4 tile instead of 36).
// EVEN: the tile's first pixel is even (window dy[m-1 .. m+1] for first pixel 2m), else odd
// (window dy[m .. m+2] for first pixel 2m + 1).
// B^T d = [d0 - d1, d1, d2 - d1, d1, d2] (EVEN) / [.., .., .., d0, d1];
// A^T m = [m0 + m1, m3, m1 + m2, m4] (EVEN) / [m3, m0 + m1, m4, m1 + m2].
template <bool EVEN>
struct WinogradStride2GradInput {
  enum { WINDOW = 3, A = 5, OT = 4, STEP = 2, PREFETCH_LOCALITY = 3 };
  static inline void input(const V::reg* d, V::reg* t) {
    t[0] = V::sub(d[0], d[1]);
    t[1] = d[1];
    t[2] = V::sub(d[2], d[1]);
    t[3] = EVEN ? d[1] : d[0];
    t[4] = EVEN ? d[2] : d[1];
  }
  static inline void output(const V::reg* m, V::reg* o) {
    const V::reg even0 = V::add(m[0], m[1]), even1 = V::add(m[1], m[2]);
    o[0] = EVEN ? even0 : m[3];
    o[1] = EVEN ? m[3] : even0;
    o[2] = EVEN ? even1 : m[4];
    o[3] = EVEN ? m[4] : even1;
  }
};

// Non-finite values are flagged by sums of x * 0 (0 for finite x, else NaN).
static inline int all_zero(V::reg v) {
  T lanes[V::N];
  V::store(lanes, v);
  for (int l = 0; l < V::N; ++l) {
    if (!(lanes[l] == T(0))) return 0;
  }
  return 1;
}

// The sum of A vectors (a row of transformed values, or the rows' finiteness flags): one short
// dependency chain; for 4 values the order of the stride-1 form since its first version.
template <int A>
static inline V::reg row_sum(const V::reg* r) {
  V::reg s = V::add(V::add(r[0], r[1]), V::add(r[2], r[3]));
  TC_UNROLL for (int j = 4; j < A; ++j) s = V::add(s, r[j]);
  return s;
}

// Tiles ahead whose window columns the input transform prefetches (the staged input is far
// larger than L2).
#ifndef TC_WINOGRAD_PREFETCH
#define TC_WINOGRAD_PREFETCH 4
#endif

// One tile's B^T d B for every channel, into vt (planes vs apart). WHOLE: the window lies
// inside the input; else window row i / column j is read only for i in [r0, r1) and
// j in [c0, c1), zeros elsewhere (padding that is not in memory).
template <typename F, bool WHOLE>
static inline void winograd_input_tile(const WinogradArgs* a, const T* xt, T* vt,
                                       int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                                       V::reg* finite) {
  typedef V::reg reg;
  enum { A = F::A, W = F::WINDOW };
  const int64_t C = a->C, xh = a->xh, xw = a->xw, vs = a->vs;
  for (int64_t c = 0; c < C; c += V::N) {
    const int64_t n = C - c;
    reg w[W][W], e[A][W], d[A][A];
    TC_UNROLL for (int i = 0; i < W; ++i) {
      TC_UNROLL for (int j = 0; j < W; ++j) {
        w[i][j] = WHOLE || (i >= r0 && i < r1 && j >= c0 && j < c1)
                      ? load_k(xt + i * xh + j * xw + c, n)
                      : V::zero();
      }
    }
    TC_UNROLL for (int j = 0; j < W; ++j) {  // B^T d: combinations of rows
      reg col[W], t[A];
      TC_UNROLL for (int i = 0; i < W; ++i) col[i] = w[i][j];
      F::input(col, t);
      TC_UNROLL for (int i = 0; i < A; ++i) e[i][j] = t[i];
    }
    TC_UNROLL for (int i = 0; i < A; ++i) F::input(e[i], d[i]);  // (B^T d) B: of columns
    TC_UNROLL for (int i = 0; i < A; ++i) {
      TC_UNROLL for (int j = 0; j < A; ++j) {
        T* dst = vt + (A * i + j) * vs + c;
        if (n >= V::N) V::store(dst, d[i][j]);
        else V::store_n(dst, d[i][j], (int)n);
      }
      // x * 0 is NaN for NaN / inf (a sum that overflows only sends finite inputs to the
      // direct kernels)
      finite[i] = V::fma(row_sum<A>(d[i]), V::zero(), finite[i]);
    }
  }
}

template <typename F>
static int winograd_input(const WinogradArgs* a, const T* x, int64_t nt, const int64_t* inside,
                          T* v) {
  typedef V::reg reg;
  enum { A = F::A, W = F::WINDOW, STEP = F::STEP };
  const int64_t C = a->C, xh = a->xh, xw = a->xw;
  const int64_t r0 = inside[0], r1 = inside[1], c0 = inside[2], c1 = inside[3];
  const bool rows_whole = r0 <= 0 && r1 >= W;
  reg finite[A];
  TC_UNROLL for (int i = 0; i < A; ++i) finite[i] = V::zero();
  for (int64_t t = 0; t < nt; ++t) {
    const T* xt = x + STEP * t * xw;
    T* vt = v + t * C;
    if (TC_WINOGRAD_PREFETCH > 0 && t + TC_WINOGRAD_PREFETCH < nt) {
      // the STEP columns a later tile adds to its predecessor's window
      const char* p = (const char*)(xt + (STEP * TC_WINOGRAD_PREFETCH + W - STEP) * xw);
      for (int i = 0; i < W; ++i) {
        for (int64_t b = 0; b < int64_t(sizeof(T)) * ((STEP - 1) * xw + C); b += 64) {
          __builtin_prefetch(p + i * xh * int64_t(sizeof(T)) + b, 0, F::PREFETCH_LOCALITY);
        }
      }
    }
    if (rows_whole && c0 <= STEP * t && c1 >= STEP * t + W) {
      winograd_input_tile<F, true>(a, xt, vt, 0, W, 0, W, finite);
    } else {
      winograd_input_tile<F, false>(a, xt, vt, r0, r1, c0 - STEP * t, c1 - STEP * t, finite);
    }
  }
  return all_zero(row_sum<A>(finite));
}

template <typename F>
static void winograd_output(const WinogradArgs* a, const T* m, int64_t nt, const T* bias,
                            int64_t rows, int64_t cols, T* y) {
  typedef V::reg reg;
  enum { A = F::A, OT = F::OT };
  const int64_t K = a->K, ms = a->ms, mt = a->mt, yh = a->yh, yw = a->yw;
  // Streamed, the vectors of an output pixel's cache line of channels leave one after the
  // other: those before the line's last wait in `held` (L1). Stored vector by vector, OT x OT
  // lines were left half-written at a time (AVX2: two vectors a line), and a half-written line
  // leaves the write-combining buffer early, to be merged in memory (Zen 2, 2 threads,
  // switched within one process: R50 3x3 stride-2 channels_last input gradient, 4 x 4 output
  // tiles, 15.0 -> 12.5 ms; VGG conv1_2 channels_last forward 41.7 -> 37.1, input gradient
  // 45.3 -> 40.3).
  constexpr int kLineVecs = int(kLineElems / V::N);
  T held[OT][OT][kLineElems];
  for (int64_t t = 0; t < nt; ++t) {
    const T* mp = m + t * mt;
    T* yt = y + OT * t * yw;
    const int64_t tcols = tc_min(OT, cols - OT * t);
    for (int64_t k = 0; k < K; k += V::N) {
      const int64_t n = K - k;
      const int part = int((k / V::N) % kLineVecs);
      const bool whole_line = a->stream && k - part * V::N + kLineElems <= K;
      const bool hold = whole_line && part + 1 < kLineVecs;
      reg o[OT][A];
      TC_UNROLL for (int j = 0; j < A; ++j) {  // A^T m: combinations of rows
        reg col[A], r[OT];
        TC_UNROLL for (int i = 0; i < A; ++i) col[i] = load_k(mp + (A * i + j) * ms + k, n);
        F::output(col, r);
        TC_UNROLL for (int i = 0; i < OT; ++i) o[i][j] = r[i];
      }
      const reg b = bias ? load_k(bias + k, n) : V::zero();
      TC_UNROLL for (int i = 0; i < OT; ++i) {  // (A^T m) A: combinations of columns, + bias
        if (i >= rows) break;
        reg r[OT];
        F::output(o[i], r);
        T* yr = yt + i * yh + k;
        TC_UNROLL for (int j = 0; j < OT; ++j) {
          if (j >= tcols) break;
          const reg yv = V::add(r[j], b);
          T* dst = yr + j * yw;
          if (hold) {
            V::store(&held[i][j][part * V::N], yv);
          } else if (whole_line) {  // the line's held vectors, then this one
            for (int h = 0; h < part; ++h) {
              V::stream(dst + (h - part) * V::N, V::load(&held[i][j][h * V::N]));
            }
            V::stream(dst, yv);
          } else if (n >= V::N && a->stream) {
            V::stream(dst, yv);
          } else if (n >= V::N) {
            V::store(dst, yv);
          } else {
            V::store_n(dst, yv, (int)n);
          }
        }
      }
    }
  }
  if (a->stream) V::fence();  // the streamed outputs are visible before the task ends
}

template <typename F>
static int winograd_weights(const WinogradWeightArgs* a, const T* w, int64_t nl, int64_t c0,
                            int64_t c1, T* dst) {
  typedef V::reg reg;
  enum { A = F::A };
  const int64_t KB = a->KB, plane = a->plane;
  reg finite = V::zero();
  T taps[9 * V::N];  // taps[t*N + l]: tap t of lane l0 + l
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t l0 = 0; l0 < KB; l0 += V::N) {
      const int64_t n = nl - l0;
      reg g[9];
      if (n > 0) {
        const int nc = (int)tc_min(V::N, n);
        for (int t0 = 0; t0 < 9; t0 += V::N) {
          V::transpose(w + l0 * a->ls + c * a->cs + t0, a->ls, taps + t0 * V::N, V::N, nc,
                       (int)tc_min(V::N, 9 - t0));
        }
        TC_UNROLL for (int t = 0; t < 9; ++t) {
          g[t] = load_k(taps + (a->rotate ? 8 - t : t) * V::N, n);
        }
      } else {
        TC_UNROLL for (int t = 0; t < 9; ++t) g[t] = V::zero();
      }
      reg u[A][3];
      TC_UNROLL for (int q = 0; q < 3; ++q) {  // G g: combinations of rows
        const reg col[3] = {g[q], g[3 + q], g[6 + q]};
        reg t[A];
        F::taps(col, t);
        TC_UNROLL for (int i = 0; i < A; ++i) u[i][q] = t[i];
      }
      T* d = dst + c * KB + l0;
      TC_UNROLL for (int i = 0; i < A; ++i) {  // (G g) G^T
        reg r[A];
        F::taps(u[i], r);
        TC_UNROLL for (int j = 0; j < A; ++j) V::store(d + (A * i + j) * plane, r[j]);
        finite = V::fma(row_sum<A>(r), V::zero(), finite);  // as in winograd_input
      }
    }
  }
  return all_zero(finite);
}

// The weight gradient's transforms of form F (its grad_output and tap_grads; OT = 2).
template <typename F>
static int winograd_grad_output(const WinogradArgs* a, const T* dy, int64_t nt, int64_t rows,
                                int64_t cols, T* z) {
  typedef V::reg reg;
  enum { A = F::A, OT = F::OT };
  static_assert(OT == 2, "the finiteness sum below reads a 2x2 tile");
  const int64_t K = a->K, yh = a->yh, yw = a->yw, ms = a->ms, mt = a->mt;
  const reg zero = V::zero();
  reg finite = zero;
  for (int64_t t = 0; t < nt; ++t) {
    const T* dt = dy + OT * t * yw;
    const int64_t tcols = tc_min(OT, cols - OT * t);
    T* zt = z + t * mt;
    for (int64_t k = 0; k < K; k += V::N) {
      const int64_t n = K - k;
      reg g[OT][OT];
      TC_UNROLL for (int i = 0; i < OT; ++i) {
        TC_UNROLL for (int j = 0; j < OT; ++j) {
          g[i][j] = i < rows && j < tcols ? load_k(dt + i * yh + j * yw + k, n) : zero;
        }
      }
      reg p[A][OT];  // A g: combinations of rows
      TC_UNROLL for (int j = 0; j < OT; ++j) {
        reg col[OT], q[A];
        TC_UNROLL for (int i = 0; i < OT; ++i) col[i] = g[i][j];
        F::grad_output(col, q);
        TC_UNROLL for (int i = 0; i < A; ++i) p[i][j] = q[i];
      }
      TC_UNROLL for (int i = 0; i < A; ++i) {  // (A g) A^T: combinations of columns
        reg r[A];
        F::grad_output(p[i], r);
        TC_UNROLL for (int j = 0; j < A; ++j) {
          if (n >= V::N) V::store(zt + (A * i + j) * ms + k, r[j]);
          else V::store_n(zt + (A * i + j) * ms + k, r[j], (int)n);
        }
      }
      // as in winograd_input (x * 0 is NaN for NaN / inf)
      finite = V::fma(V::add(V::add(g[0][0], g[0][1]), V::add(g[1][0], g[1][1])), zero, finite);
    }
  }
  return all_zero(finite);
}

// Tap (r, s) of lane l and channel c to dst[l*ls + c*cs + 3*r + s] (see kernel_api.h).
template <typename F>
static void winograd_weight_grad(const WinogradWeightArgs* a, const T* m, int64_t nl,
                                 int64_t c0, int64_t c1, T* dst) {
  typedef V::reg reg;
  enum { A = F::A };
  const int64_t KB = a->KB, plane = a->plane;
  T taps[9 * V::N];  // taps[t*N + l]: tap t of lane l0 + l
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t l0 = 0; l0 < nl; l0 += V::N) {
      const T* mc = m + c * KB + l0;
      reg p[3][A];  // G^T m: combinations of rows
      TC_UNROLL for (int j = 0; j < A; ++j) {
        reg col[A], q[3];
        TC_UNROLL for (int i = 0; i < A; ++i) col[i] = V::load(mc + (A * i + j) * plane);
        F::tap_grads(col, q);
        TC_UNROLL for (int r = 0; r < 3; ++r) p[r][j] = q[r];
      }
      TC_UNROLL for (int r = 0; r < 3; ++r) {  // (G^T m) G: combinations of columns
        reg q[3];
        F::tap_grads(p[r], q);
        TC_UNROLL for (int s = 0; s < 3; ++s) V::store(taps + (3 * r + s) * V::N, q[s]);
      }
      const int nw = (int)tc_min(V::N, nl - l0);
      for (int t0 = 0; t0 < 9; t0 += V::N) {
        V::transpose(taps + t0 * V::N, V::N, dst + l0 * a->ls + c * a->cs + t0, a->ls,
                     (int)tc_min(V::N, 9 - t0), nw);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Register-only FMA throughput loop: FMA_CHAINS independent chains, enough to cover the FMA
// latency on every pipe, few enough that the chains and the two constants stay in registers
// (16 chains + 2 constants spill on AVX2's 16 registers and halve the measured peak).

static double fma_loop(int64_t iters, T* sink) {
  typedef V::reg reg;
  reg A[FMA_CHAINS];
  TC_UNROLL for (int i = 0; i < FMA_CHAINS; ++i) A[i] = V::set1(T(1) + T(0.001) * i);
  const reg m = V::set1(T(0.9999999)), c = V::set1(T(1e-7));
  for (int64_t it = 0; it < iters; ++it) {
    TC_UNROLL for (int i = 0; i < FMA_CHAINS; ++i) A[i] = V::fma(A[i], m, c);
#if defined(TC_EMULATED_VECTORS)  // (no register holds one: through memory)
    TC_UNROLL for (int i = 0; i < FMA_CHAINS; ++i) __asm__ volatile("" : "+m"(A[i]));
#elif defined(__GNUC__)
    TC_UNROLL for (int i = 0; i < FMA_CHAINS; ++i) __asm__ volatile("" : "+x"(A[i]));
#endif
  }
  T buf[V::N];
  reg s = A[0];
  TC_UNROLL for (int i = 1; i < FMA_CHAINS; ++i) s = V::fma(A[i], m, s);
  V::store(buf, s);
  *sink = buf[0];
  return (double)iters * FMA_CHAINS * V::N * 2.0;
}

// Four channel vectors at a time down the rows, masked loads for the last partial vector;
// runs of 8 rows are summed apart and then added up (the error of a sum grows with the number
// of terms added one by one: a block of 256 rows in one chain had twice at::sum's error).
template <bool FULL>
static void column_sums_vectors(const T* x, int64_t rows, int64_t ld, int64_t n, T* sums) {
  typedef V::reg reg;
  reg tot[4], run[4];
  const int nv = (int)tc_min(4, (n + V::N - 1) / V::N);
  TC_UNROLL for (int j = 0; j < 4; ++j) tot[j] = V::zero();
  for (int64_t i0 = 0; i0 < rows; i0 += 8) {
    TC_UNROLL for (int j = 0; j < 4; ++j) run[j] = V::zero();
    for (int64_t i = i0; i < tc_min(rows, i0 + 8); ++i) {
      TC_UNROLL for (int j = 0; j < 4; ++j) {
        if (FULL) run[j] = V::add(run[j], V::load(x + i * ld + j * V::N));
        else if (j < nv) run[j] = V::add(run[j], load_k(x + i * ld + j * V::N, n - j * V::N));
      }
    }
    TC_UNROLL for (int j = 0; j < 4; ++j) tot[j] = V::add(tot[j], run[j]);
  }
  for (int j = 0; j < nv; ++j) {
    const int64_t left = n - j * V::N;
    if (left >= V::N) V::store(sums + j * V::N, tot[j]);
    else V::store_n(sums + j * V::N, tot[j], (int)left);
  }
}

static void column_sums(const T* x, int64_t rows, int64_t ld, int64_t C, T* sums) {
  for (int64_t c0 = 0; c0 < C; c0 += 4 * V::N) {
    if (c0 + 4 * V::N <= C) column_sums_vectors<true>(x + c0, rows, ld, 4 * V::N, sums + c0);
    else column_sums_vectors<false>(x + c0, rows, ld, C - c0, sums + c0);
  }
}

static const KernelTableT<T> kTable = {
    TC_ISA_NAME, V::N, DIRECT_NV * V::N, DIRECT_NP, GW_NC, &direct_pixels,
    DIRECT_WIDE_NV * V::N, DIRECT_WIDE_NP, &direct_pixels_wide,
    DIRECT_MID_NV * V::N, DIRECT_MID_NP, &direct_pixels_mid, DIRECT_NARROW_NP,
    &direct_pixels_narrow, TC_REDUCE, PD_NK,
    PD_NV * V::N, &direct_planes, &depthwise_pixels, &depthwise3x3_pixels,
    &grad_weight_block, GW_WIDE_NV * V::N, GW_WIDE_NC, &grad_weight_wide, GW_NARROW_NC,
    &grad_weight_narrow, PG_NK,
    &grad_weight_planes,
    &depthwise_grad_weight, &stage_plane, &depthwise_plane, &grouped_plane,
    &depthwise_plane_grad_weight,
    TC_GROUPED, &transpose_rows, &interleave_phase_rows, &winograd_input<WinogradF23>,
    &winograd_output<WinogradF23>, &winograd_weights<WinogradF23>,
    &winograd_grad_output<WinogradF23>, &winograd_weight_grad<WinogradF23>,
    &winograd_input<WinogradStride2>, &winograd_output<WinogradStride2>,
    &winograd_weights<WinogradStride2>, &winograd_grad_output<WinogradStride2>,
    &winograd_weight_grad<WinogradStride2>, &winograd_input<WinogradStride2GradInput<true>>,
    &winograd_output<WinogradStride2GradInput<true>>,
    &winograd_input<WinogradStride2GradInput<false>>,
    &winograd_output<WinogradStride2GradInput<false>>, &fma_loop, &column_sums,
};

// Defined here, per inclusion (a TU includes this file once per element type).
#undef TC_REDUCE
#undef TC_GROUPED
