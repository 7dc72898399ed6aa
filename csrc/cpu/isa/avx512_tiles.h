// Register tiles of the AVX-512 kernels (kernels_impl.h lists what each one means), shared by
// kernels_avx512.cpp and kernels_avx512_emulated.cpp, which runs the same schedule on portable
// vectors so that machines without AVX-512 test it. Both element types use the same tiles
// (same register count).
#pragma once

#define DIRECT_NV 2
#define DIRECT_NP 12
#define DIRECT_WIDE_NV 4
#define DIRECT_WIDE_NP 6
#define DIRECT_MID_NV 3
#define DIRECT_MID_NP 8
#define DIRECT_NARROW_NP 16
#define REDUCE_NP 6
#define GW_WIDE_NV 4
#define GW_WIDE_NC 6
#define GW_NV 2
#define GW_NC 12
#define GW_NARROW_NC 12
#define PD_NK 8
#define PD_NV 3
#define PG_NK 4
#define PG_NC 4
#define DW_NP 8
#define DW3_NP 8
#define FMA_CHAINS 16
#define PLANE_ROWS 8
#define PLANE_NS 8
#define GP_NS 4
