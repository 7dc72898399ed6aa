// 16 x 16 register transpose of 32-bit lanes, shared by the AVX-512 translation units (include
// it after their target pragma; C-level headers only, as they are). Moves bits only: float32
// data, or pairs of bfloat16 seen as float32 lanes.
#pragma once

#include <immintrin.h>
#include <stdint.h>

// r[k]: row k of the block (rows k >= nc zero). Stores column j of the block, its first nc
// lanes, at dst + j*dc for j < nw. Interleaves pairs of rows (32-bit), then pairs of pairs
// (64-bit): t[4k+j] holds rows 4k..4k+3 of columns j, j+4, j+8, j+12 in its four 128-bit
// blocks; two rounds of 128-bit block shuffles gather column m = j + 4L from the blocks L of
// t[j], t[4+j], ...
static inline void transpose16_store(__m512* r, float* dst, int64_t dc, int nc, int nw) {
  __m512 t[16];
  const __mmask16 out = (__mmask16)((1u << nc) - 1u);
  for (int k = 0; k < 16; k += 2) {
    t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 16; k += 4) {
    r[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
    r[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
    r[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    r[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    if (j < nw) _mm512_mask_storeu_ps(dst + j * dc, out, _mm512_shuffle_f32x4(v0, v2, 0x88));
    if (j + 4 < nw)
      _mm512_mask_storeu_ps(dst + (j + 4) * dc, out, _mm512_shuffle_f32x4(v1, v3, 0x88));
    if (j + 8 < nw)
      _mm512_mask_storeu_ps(dst + (j + 8) * dc, out, _mm512_shuffle_f32x4(v0, v2, 0xDD));
    if (j + 12 < nw)
      _mm512_mask_storeu_ps(dst + (j + 12) * dc, out, _mm512_shuffle_f32x4(v1, v3, 0xDD));
  }
}
