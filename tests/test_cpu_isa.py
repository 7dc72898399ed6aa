"""Vectorised CPU fast paths (float32 and float64): every ISA available on this machine against
a float64 reference.

Each test selects an ISA through torchconv._C.set_cpu_isa and restores the previous one (and the
thread count) afterwards. "generic" (fast paths off) runs only the cheap tests.
"""

import math
import os
import random

import pytest
import torch
import torch.nn.functional as F

import torchconv
from torchconv import _C

ops = torch.ops.torchconv

FAST_ISAS = [i for i in _C.available_cpu_isas() if i != "generic"]


@pytest.fixture(params=FAST_ISAS)
def isa(request):
    old_isa, old_threads = _C.cpu_isa(), torch.get_num_threads()
    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(old_isa)
    torch.set_num_threads(old_threads)


def pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def run_ops(x, w, b, gy, stride, padding, dilation, groups):
    """torchconv forward, grad_input, grad_weight."""
    st, dl = pair(stride), pair(dilation)
    if isinstance(padding, str):
        y = ops.conv2d.padding(x, w, b, st, padding, dl, groups)
        # leading padding of 'same': total = dil*(k-1), the smaller half in front
        pd = [dl[i] * (w.shape[2 + i] - 1) // 2 for i in range(2)]
    else:
        pd = pair(padding)
        y = ops.conv2d(x, w, b, st, pd, dl, groups)
    gi = ops.conv2d_grad_input(gy, w, list(x.shape), st, pd, dl, groups)
    gw = ops.conv2d_grad_weight(gy, x, list(w.shape), st, pd, dl, groups)
    return y, gi, gw


def reference(x, w, b, gy, stride, padding, dilation, groups, dtype):
    """F.conv2d (and its autograd) in `dtype`."""
    xr = x.detach().to(dtype).requires_grad_()
    wr = w.detach().to(dtype).requires_grad_()
    br = None if b is None else b.detach().to(dtype)
    y = F.conv2d(xr, wr, br, stride, padding, dilation, groups)
    gi, gw = torch.autograd.grad(y, (xr, wr), gy.to(dtype))
    return y.detach(), gi, gw


def check_case(N, C, H, W, K, R, S, stride=1, padding=0, dilation=1, groups=1, layout="nchw",
               bias=True, seed=0, dtype=torch.float32):
    """float32: max error against float64 no worse than native float32's (4x slack for a
    different but equally exact order). float64: within 1e-12 of F.conv2d's float64 result
    (relative to the largest magnitude; a wrong tap or channel is off by O(1))."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen).to(dtype)
    w = torch.randn(K, C // groups, R, S, generator=gen).to(dtype)
    b = torch.randn(K, generator=gen).to(dtype) if bias else None
    with torch.no_grad():
        y64 = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride,
                       padding, dilation, groups)
    gy = torch.randn(y64.shape, generator=gen).to(dtype)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
        gy = gy.contiguous(memory_format=torch.channels_last)
    ours = run_ops(x, w, b, gy, stride, padding, dilation, groups)
    ref64 = reference(x, w, b, gy, stride, padding, dilation, groups, torch.float64)
    nat32 = reference(x, w, b, gy, stride, padding, dilation, groups, torch.float32)
    for name, o, r, n in zip(("forward", "grad_input", "grad_weight"), ours, ref64, nat32):
        assert o.dtype == dtype and o.shape == r.shape, name
        scale = r.abs().max().item() + 1e-30
        err = (o.double() - r).abs().max().item() / scale
        if dtype == torch.float64:
            assert err <= 1e-12, (name, err)
            continue
        err_native = (n.double() - r).abs().max().item() / scale
        assert err <= max(4 * err_native, 2e-6), (name, err, err_native)
    return ours


# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = [
    (2, 5, 9, 11, 7, 3, 3, 1, 1, 1, 1),       # tails everywhere
    (2, 16, 10, 10, 32, 3, 3, 1, 1, 1, 1),    # exact vector multiples
    (1, 33, 7, 7, 50, 3, 3, 1, 1, 1, 1),      # odd tails (K=50, C=33)
    (2, 8, 10, 12, 8, 3, 3, 2, 1, 1, 1),      # stride 2
    (1, 6, 13, 12, 10, 5, 3, 2, (2, 1), (2, 1), 2),  # asym everything, groups
    (2, 4, 9, 9, 6, 1, 1, 1, 0, 1, 2),        # grouped 1x1
    # groups of one vector of output channels (AVX2: 8, AVX-512: 16), the one-vector tiles
    (2, 64, 14, 13, 64, 3, 3, 2, 1, 1, 8),
    (2, 64, 12, 11, 64, 3, 3, 1, 1, 1, 4),
    # grouped input gradients' stride phases on planes, all per staged plane: phases of
    # unequal widths (stride 3 across 17 columns); some phases empty (stride 3 > kernel 2),
    # one pass per phase instead
    (1, 32, 13, 17, 32, 3, 3, (2, 3), 1, 1, 4),
    (1, 16, 10, 11, 16, 2, 2, 3, 0, 1, 2),
    # ... and where a task's scratch planes of grad_input would pass 4 MiB (16 channels of
    # 260 x 260 float32, or 8 of float64; channels_last: every ISA's vector of them)
    (1, 32, 260, 260, 32, 3, 3, 2, 1, 1, 2),
    (1, 24, 15, 15, 40, 1, 1, 2, 0, 1, 1),    # strided 1x1
    (1, 3, 23, 21, 20, 7, 7, 2, 3, 1, 1),     # stem-like
    (1, 17, 8, 8, 35, 2, 2, 3, 2, 1, 1),      # stride > kernel (zero phases in grad_input)
    (1, 20, 9, 9, 20, 4, 2, 1, 0, 1, 1),      # even kernel, no padding
    (1, 12, 11, 10, 12, 3, 3, 1, 1, 1, 12),   # depthwise
    (2, 20, 11, 13, 20, 3, 3, 2, 1, 1, 20),   # depthwise stride 2, channel tail
    (1, 40, 9, 9, 40, 5, 5, 1, 4, 2, 40),     # depthwise dilated 5x5
    # depthwise with >= 16x16 outputs: weight gradients sum fixed pixel parts (several images
    # per part; two parts per image); the kernel skips the padding (also on the small ones)
    (5, 20, 18, 17, 20, 3, 3, 1, 1, 1, 20),
    (2, 20, 40, 36, 20, 3, 3, 1, 1, 1, 20),
    (1, 24, 40, 37, 24, 3, 3, 2, 1, 1, 24),   # strided
    (1, 17, 20, 22, 17, 5, 5, 1, (2, 3), (1, 2), 17),  # 5x5, asymmetric padding / dilation
    (1, 16, 18, 19, 16, 4, 2, 1, (1, 0), 1, 16),       # even kernel
    # 3x3 depthwise weight gradients take every border pixel's taps at once: windows past
    # the whole input (padding wider than the kernel reach), strides and dilations per axis
    (2, 20, 5, 6, 20, 3, 3, 1, (3, 4), (2, 1), 20),
    (1, 18, 9, 8, 18, 3, 3, (2, 3), (2, 1), (1, 2), 18),
    # ... and 5- / 7-wide kernels, one tap row per pass
    (2, 20, 13, 15, 20, 7, 7, 2, 3, 1, 20),
    (1, 24, 9, 11, 24, 3, 5, 1, (1, 2), (1, 2), 24),
    # channels_last 3x3 depthwise through the generic tile with all nine taps as constants:
    # stride 3 (no register-tap kernel), and an image above the 1 MiB prefetch size
    (1, 20, 14, 16, 20, 3, 3, 3, 1, 1, 20),
    (1, 16, 128, 130, 16, 3, 3, 1, 1, 1, 16),
    (1, 10, 9, 9, 20, 3, 3, 2, 1, 1, 10),     # channel multiplier 2
    (2, 128, 8, 8, 128, 3, 3, 1, 1, 1, 32),   # ResNeXt-like (4 per group)
    (1, 20, 8, 8, 40, 3, 3, 1, 1, 1, 5),      # 4 in / 8 out per group
    (1, 16, 8, 8, 32, 3, 3, 1, 1, 1, 2),      # 8 in / 16 out per group
    (1, 16, 7, 9, 16, 3, 3, 1, 1, 1, 8),      # 2 per group
    (1, 8, 12, 12, 16, 3, 3, 1, 2, 2, 1),     # dilation 2
    (1, 8, 6, 6, 8, 3, 3, 1, 3, 1, 1),        # padding larger than the kernel
    (1, 8, 20, 20, 8, 3, 3, 3, 0, 3, 1),      # stride 3, dilation 3
    (1, 40, 9, 9, 3, 3, 3, 1, 1, 1, 1),       # few outputs, long reduction
    (2, 64, 8, 8, 4, 3, 3, 2, 1, 1, 2),       # few outputs per group
    (2, 20, 9, 9, 64, 3, 3, 1, 1, 1, 1),      # wide tiles (64 output channels)
    (1, 16, 7, 7, 128, 3, 3, 2, 1, 1, 2),     # wide tiles, grouped, strided
    (1, 64, 8, 8, 24, 3, 3, 2, 1, 1, 1),      # wide grad_input tile (64 input channels)
    # the mid tile (AVX-512: 3 vectors x 8 pixels) where K is a multiple of 3 vectors but not
    # of 4: 1x1 (three k-blocks of 48), strided 3x3, Winograd GEMMs (float32) with a mid
    # grad_input tile (96 input channels), grouped (48 per group)
    (2, 24, 20, 20, 144, 1, 1, 1, 0, 1, 1),
    (1, 12, 11, 13, 48, 3, 3, 2, 1, 1, 1),
    (2, 96, 9, 9, 48, 3, 3, 1, 1, 1, 1),
    (1, 32, 8, 8, 96, 3, 3, 1, 1, 1, 2),
    # long reductions, summed in three levels: grad_weight over 35 passes (groups of 16, 16,
    # 3), grouped grad_weight over 36 blocks, direct tiles over 42 blocks of products
    (5, 8, 40, 40, 16, 3, 3, 1, 1, 1, 1),
    (3, 16, 24, 24, 16, 3, 3, 1, 1, 1, 4),
    (4, 16, 40, 40, 16, 3, 3, 1, 1, 1, 4),    # grouped grad_weight over 28 passes of rows
    (1, 300, 6, 6, 20, 3, 3, 1, 1, 1, 1),
    (1, 20, 6, 6, 300, 3, 3, 1, 1, 1, 1),
    # 1x1 over NCHW input: tasks pack their pixels into pixel-major panels and run every
    # k-block on them (chunks of >= 256 pixels start 64-aligned); grouped; strided; long sums
    (2, 40, 37, 29, 70, 1, 1, 1, 0, 1, 1),
    (2, 48, 30, 30, 96, 1, 1, 1, 0, 1, 3),
    (1, 100, 41, 40, 24, 1, 1, 2, 0, 1, 1),
    (1, 520, 20, 20, 20, 1, 1, 1, 0, 1, 1),
    # ... except small images whose panels would not fit (2050 channels x 7 x 7): the images
    # are staged pixel-major, whole planes at a time; their 49-pixel NCHW output planes in
    # runs of 32 + 17 pixels. The same staging for the reduction-vectorised kernel (3 outputs)
    (2, 2050, 7, 7, 20, 1, 1, 1, 0, 1, 1),
    (2, 40, 6, 9, 3, 1, 1, 1, 0, 1, 1),
    # ... and with at most 64 input channels and >= 512 pixels per image, vectorised along
    # the pixels instead (two chunks with a masked tail above; here 64 channels, output
    # channel tails in forward and input gradient)
    (3, 64, 24, 24, 50, 1, 1, 1, 0, 1, 1),
    # ... up to 256 channels in blocks of 64 sums: forward 100 (2 blocks) / 256 (4, with pixel
    # tails), input gradient 144 (3 blocks, the MBv2 pointwise one) / 200
    (1, 100, 24, 24, 20, 1, 1, 1, 0, 1, 1),
    (2, 256, 23, 25, 12, 1, 1, 1, 0, 1, 1),
    (2, 24, 24, 24, 144, 1, 1, 1, 0, 1, 1),
    (1, 40, 30, 20, 200, 1, 1, 1, 0, 1, 1),
    # ... with at least 64 output channels, each pixel tile's input copied to scratch and every
    # k-block run over it: 575 pixels (a partial last tile), k-tile tails (72 outputs, and 130
    # in the input gradient), 3 blocks of sums; grouped (2 groups of 64 outputs)
    (2, 130, 23, 25, 72, 1, 1, 1, 0, 1, 1),
    (2, 64, 24, 24, 128, 1, 1, 1, 0, 1, 2),
    # the weight gradient of those (>= 256 pixels per image) is vectorised along the pixels:
    # tails of the register tile and of the task blocks (70 = 64 + 6 input channels; 13
    # output channels in tasks of 6 + 6 + 1 (AVX2) or 8 + 5 (tiles of 4 + 1)), images of 266
    # pixels (a masked vector each), two images of 256 pixels per pass (7 images: a last pass
    # of one), 36 passes of part images in float32 (three-level sums), grouped
    (2, 70, 19, 14, 13, 1, 1, 1, 0, 1, 1),
    (7, 9, 16, 16, 5, 1, 1, 1, 0, 1, 1),
    (4, 20, 64, 70, 24, 1, 1, 1, 0, 1, 1),
    (2, 36, 16, 16, 30, 1, 1, 1, 0, 1, 6),
    # strided 1x1 weight gradients stay on the channel-vectorised kernel (gathering each
    # pass's input pixels into a dense panel for the pixel-vectorised one measured no faster)
    (3, 40, 30, 34, 20, 1, 1, (2, 3), 0, 1, 1),
    (2, 70, 64, 64, 13, 1, 1, 2, 0, 1, 1),
    (2, 36, 32, 20, 30, 1, 1, 2, 0, 1, 6),
    # weight gradients over grad_output rows >= 1 KiB apart with >= 32 channel blocks x taps
    # copy each k-block of a pass into a dense block: 1x1 over small images (channels_last:
    # the pass's images as one row of pixels), output channel tails (300 = 18 x 16 + 12),
    # grouped (k-blocks of group 1), strided
    (3, 400, 7, 7, 300, 1, 1, 1, 0, 1, 1),
    (2, 80, 9, 9, 520, 3, 3, 1, 1, 1, 2),
    (2, 400, 14, 14, 272, 1, 1, 2, 0, 1, 1),
    # ... and stride-1 1x1 inputs read in place with pixels >= 2 KiB apart (channels_last) are
    # gathered per pass with that gap too: two images per pass and a pass of one
    (3, 600, 9, 9, 40, 1, 1, 1, 0, 1, 1),
    # channels_last 1x1 weight gradients with x and grad_output swapped, the result written
    # through a transposed view: 600 -> 40 above (the 600 channels as the vectors), and here
    # the 64 channels (whole k-blocks on every ISA) with a channel block tail (200 = 33 x 6 + 2)
    (2, 64, 10, 11, 200, 1, 1, 1, 0, 1, 1),
    # ... and whose padded input copies (pixels >= 1 KiB apart, with the column stride) leave
    # a cache line between pixels: grouped (70 per group), strided
    (2, 140, 9, 7, 40, 3, 3, 2, 1, 1, 2),
    # ... or, with one group, are made in the tile's channel blocks (NCHW copies only where
    # each input element takes >= 1024 multiply-adds, the last case; below that they keep
    # their planes, as do most padded NCHW cases here): channel block tails on every ISA
    # (130 = 21 x 6 + 4 = 10 x 12 + 10 = 32 x 4 + 2, 260), strided; dilated
    (2, 130, 9, 8, 40, 3, 3, 2, 1, 1, 1),
    (1, 260, 7, 6, 20, 3, 3, 1, 2, 2, 1),
    (1, 260, 5, 6, 120, 3, 3, 1, 1, 1, 1),
    # direct convolutions stage cache-sized chunks of padded images where each chunk keeps
    # enough tasks: here float32 one image (1.1 MB) per chunk, three chunks
    (3, 64, 64, 64, 200, 3, 3, 2, 1, 1, 1),
    # channels_last images whose input passes 512 KiB (645 KB over 36 x 35 pixels) with panels
    # of all k-blocks over 256 KiB run every k-block inside a task (output channel tail)
    (1, 128, 72, 70, 520, 1, 1, 2, 0, 1, 1),
    # outputs of >= 2M floats take streaming stores: rows / planes 64-byte aligned, then not
    # (forward), then a grad_input of 2.25M floats
    (2, 8, 128, 128, 80, 1, 1, 1, 0, 1, 1),
    (1, 4, 150, 150, 100, 3, 3, 1, 1, 1, 1),
    (1, 100, 150, 150, 4, 3, 3, 1, 1, 1, 1),
    # ... a streamed channels_last output (5.5 MB) of 72 channels: a multiple of AVX2's
    # 24-channel mid tile, whose runs end inside cache lines (the 16-channel tile there)
    (2, 24, 96, 100, 72, 1, 1, 1, 0, 1, 1),
    # ... a streamed channels_last depthwise output (2.4 MB) of the 3x3 kernel that keeps its
    # taps in registers (channel vectors outermost: streamed only where a vector is a line)
    (4, 192, 28, 28, 192, 3, 3, 1, 1, 1, 192),
    # ... NCHW planes (2 MB) streamed, rows of whole vectors: depthwise, grouped (4 per group)
    (2, 64, 64, 64, 64, 3, 3, 1, 1, 1, 64),
    (2, 64, 64, 64, 64, 3, 3, 1, 1, 1, 16),
]


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64],
                                 ids=["float32", "float64"])


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_matches_float64_reference(isa, case, layout, dtype):
    N, C, H, W, K, R, S, st, pd, dl, G = case
    check_case(N, C, H, W, K, R, S, st, pd, dl, G, layout=layout, bias=(N + C + K) % 2 == 0,
               dtype=dtype)


# Winograd F(2x2, 3x3): float32, stride 1, 3x3, one group, >= 16 channels, >= 32 output
# tiles. (N, C, H, W, K, padding, dilation)
WINOGRAD_CASES = [
    (2, 16, 16, 16, 16, 1, 1),        # exact vector multiples
    (3, 17, 15, 13, 33, 1, 1),        # odd output sizes (tiles overhang), channel tails
    (1, 20, 17, 18, 24, 0, 1),        # no padding
    (2, 24, 12, 12, 20, 2, 1),        # padding larger than the window's reach
    (2, 16, 14, 18, 16, (2, 0), 1),   # different padding per dimension
    (1, 64, 16, 16, 128, 1, 1),       # wide GEMM tiles (64 output channels)
    (2, 300, 12, 12, 20, 1, 1),       # GEMM sums over more than one group of blocks
    (9, 16, 6, 6, 16, 1, 1),          # 9 tiles per image: tasks span images
    (1, 32, 12, 11, 24, 1, 1),        # 36 tiles, one image (N=1 latency-like)
    (2, 16, 20, 22, 16, 2, 2),        # dilated (DeepLab-like): 2 x 2 phases
    (2, 16, 13, 15, 24, 1, 2),        # dilated, phases of different sizes
    (1, 24, 25, 19, 20, (3, 1), (3, 2)),  # dilation and padding differ per dimension
    # >= 256 tiles: the weight gradient too (a pass of 256 tiles per kernel call)
    (2, 24, 34, 30, 40, 1, 1),        # two passes, the second short
    (1, 16, 40, 36, 20, 2, 2),        # dilated
    (5, 16, 64, 64, 32, 1, 1),        # 16 tasks of 320 tiles, two passes each
    (40, 64, 40, 40, 16, 2, 2),       # dilated, staged in two chunks of images (16 MB each)
    (2, 96, 24, 24, 96, 1, 1),        # accumulators over 512 KiB: by transform position
    (2, 16, 17, 23, 16, 7, 1),        # a task's rows of one image all in the padding
    # a streamed output (2.1 MB; lines of channels leave whole) with a half line of channels
    # at the end and an odd width
    (2, 16, 82, 81, 40, 1, 1),
]
# Larger odd kernels, as 3x3 sub-kernels over the grid of transformed tiles (stride 1, no
# dilation). (N, C, H, W, K, padding, dilation, (R, S))
WINOGRAD_NESTED_CASES = [
    (2, 32, 14, 14, 32, 2, 1, (5, 5)),        # GoogLeNet-like: even output, whole tile rows
    (3, 17, 15, 13, 33, 2, 1, (5, 5)),        # odd output sizes, channel tails
    (1, 16, 12, 19, 20, (1, 2), 1, (3, 5)),   # 3 x 5: one sub-kernel row
    (2, 20, 13, 16, 18, (3, 2), 1, (7, 5)),   # 3 x 2 sub-kernels, padding differs per axis
    (1, 64, 20, 20, 128, 3, 1, (7, 7)),       # wide GEMM tiles (64 output channels)
    (1, 24, 40, 30, 16, 0, 1, (5, 5)),        # no padding, several tasks of tile rows
    # >= 256 tiles: the weight gradient too
    (2, 24, 34, 30, 40, 2, 1, (5, 5)),        # one pass per image
    (1, 16, 70, 40, 20, 3, 1, (7, 7)),        # by tiles: two tasks of units of tile rows
    (2, 16, 24, 40, 24, (1, 2), 1, (3, 5)),   # 3 x 5
    (2, 16, 40, 24, 24, (2, 1), 1, (5, 3)),   # 5 x 3: one sub-kernel column
    (20, 16, 16, 16, 16, 2, 1, (5, 5)),       # by tiles: 5 tasks of 4 whole images
    (4, 64, 60, 60, 16, 2, 1, (5, 5)),        # by tiles: units of 10 tile rows, 3 per image
    (17, 144, 8, 8, 144, (1, 2), 1, (3, 5)),  # accumulators over 2 MiB: by transform
    #                                           position, 17 passes (three-level sums)
]
WINOGRAD_GW_MIN_TILES = 256


def winograd_off():
    class Off:
        def __enter__(self):
            _C.set_cpu_winograd(False)

        def __exit__(self, *exc):
            _C.set_cpu_winograd(True)
    return Off()


ALL_WINOGRAD_CASES = WINOGRAD_CASES + WINOGRAD_NESTED_CASES


def assert_error_within(name, ours, r64, native, direct, slack):
    """Max error against the float64 reference r64 within slack x native float32's or our
    direct kernels', whichever is larger."""
    err = (ours.double() - r64).abs().max().item()
    err_native = (native.double() - r64).abs().max().item()
    err_direct = (direct.double() - r64).abs().max().item()
    assert err <= slack * max(err_native, err_direct), (name, err, err_native, err_direct)


@pytest.mark.parametrize("layout", ["nchw", "cl", "strided"])
@pytest.mark.parametrize("case", ALL_WINOGRAD_CASES, ids=[str(c) for c in ALL_WINOGRAD_CASES])
def test_winograd(isa, case, layout):
    """Forward and both gradients through Winograd: max error against float64 within 1.5x of
    native float32's or of our direct kernels' where those are less accurate than native (short
    reductions, e.g. the 3 x 5 input gradient: 1.3x native's on average over seeds, both ways;
    a small-tensor maximum is noisy, the suite-level comparison is in the README), and computed
    differently from the direct kernels (else the case would not exercise it)."""
    N, C, H, W, K, pd, dl, (R, S) = case if len(case) == 8 else case + ((3, 3),)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(N, C, H, W, generator=gen)
    w = torch.randn(K, C, R, S, generator=gen)
    b = torch.randn(K, generator=gen)
    if layout == "strided":  # every other column of a wider input, a permuted weight
        x = torch.randn(N, C, H, 2 * W, generator=gen)[..., ::2]
        w = torch.randn(C, K, R, S, generator=gen).transpose(0, 1)
    elif layout == "cl":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    y64 = F.conv2d(x.double(), w.double(), b.double(), 1, pd, dl)
    gy = torch.randn(y64.shape, generator=gen)
    y, gi, gw = run_ops(x, w, b, gy, 1, pd, dl, 1)
    _, gi64, gw64 = reference(x, w, b, gy, 1, pd, dl, 1, torch.float64)
    y32, gi32, gw32 = reference(x, w, b, gy, 1, pd, dl, 1, torch.float32)
    # the portable scalar path has no FMA (each product rounded before it is added)
    slack = 2.0 if isa == "scalar" else 1.5
    with winograd_off():
        direct = run_ops(x, w, b, gy, 1, pd, dl, 1)
    for name, ours, r64, nat, dir_ in zip(("forward", "grad_input", "grad_weight"), (y, gi, gw),
                                          (y64, gi64, gw64), (y32, gi32, gw32), direct):
        assert_error_within(name, ours, r64, nat, dir_, slack)
    tiles = N * ((y.shape[2] + 1) // 2) * ((y.shape[3] + 1) // 2)
    for ours, other in zip((y, gi, gw), direct):
        assert ours.stride() == other.stride()
        if ours is gw and tiles < WINOGRAD_GW_MIN_TILES:
            assert torch.equal(ours, other)  # direct
        else:
            assert not torch.equal(ours, other)


# The stride-2 forms of undilated 3x3 stride-2 layers: the forward (25 products per 2x2 output
# tile) and the input gradient (25 per 4x4 tile of grad_input; padding of one parity in both
# dimensions). (N, C, H, W, K, padding)
WINOGRAD_STRIDE2_CASES = [
    (2, 16, 16, 16, 16, 1),         # exact vector multiples
    (3, 17, 15, 13, 33, 1),         # odd input sizes (windows past the input), channel tails
    (1, 20, 19, 18, 24, 0),         # no padding
    (2, 24, 12, 12, 20, 2),         # padding larger than the window's reach
    (2, 16, 14, 18, 16, (2, 0)),    # different padding per dimension, one parity
    (2, 16, 16, 16, 16, (1, 3)),    # ... odd
    (2, 16, 23, 21, 16, 3),         # grad_input windows start inside grad_output
    (2, 16, 16, 16, 16, (1, 2)),    # parities differ: grad_input direct
    (1, 64, 34, 32, 128, 1),        # wide GEMM tiles (64 output channels)
    (2, 300, 16, 16, 20, 1),        # GEMM sums over more than one group of blocks
    (1, 16, 12, 12, 16, 1),         # forward: 36 tiles, grad_input: 9 (direct)
    (1, 16, 10, 10, 16, 1),         # 25 tiles: the direct kernel
    (4, 16, 33, 35, 24, 1),         # grad_weight too (324 tiles), by tasks of tiles
    (3, 20, 46, 44, 17, 0),         # ... odd output channels, no padding (363 tiles)
    (4, 96, 34, 34, 64, 1),         # ... by transform position (larger accumulators)
    (2, 40, 96, 90, 16, 1),         # a streamed grad_input (2.8 MB), 40 channels: 2.5 lines
]


@pytest.mark.parametrize("layout", ["nchw", "cl", "strided"])
@pytest.mark.parametrize("case", WINOGRAD_STRIDE2_CASES,
                         ids=[str(c) for c in WINOGRAD_STRIDE2_CASES])
def test_winograd_stride2(isa, case, layout):
    """Forward and both gradients of a 3x3 stride-2 layer on the stride-2 transforms: max error
    against float64 within 1.5x of native float32's or of our direct kernels', computed
    differently from the direct kernels from 32 tiles on (the weight gradient: from
    WINOGRAD_GW_MIN_TILES, channels_last; the same below)."""
    N, C, H, W, K, pd = case
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(N, C, H, W, generator=gen)
    w = torch.randn(K, C, 3, 3, generator=gen)
    b = torch.randn(K, generator=gen)
    if layout == "strided":  # every other column of a wider input, a permuted weight
        x = torch.randn(N, C, H, 2 * W, generator=gen)[..., ::2]
        w = torch.randn(C, K, 3, 3, generator=gen).transpose(0, 1)
    elif layout == "cl":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    pads = list(pd) if isinstance(pd, tuple) else [pd, pd]
    y64 = F.conv2d(x.double(), w.double(), b.double(), 2, pads)
    gy = torch.randn(y64.shape, generator=gen)
    if layout == "cl":
        gy = gy.contiguous(memory_format=torch.channels_last)

    def ours():
        return (ops.conv2d(x, w, b, [2, 2], pads, [1, 1], 1),
                ops.conv2d_grad_input(gy, w, list(x.shape), [2, 2], pads, [1, 1], 1),
                ops.conv2d_grad_weight(gy, x, list(w.shape), [2, 2], pads, [1, 1], 1))
    y, gi, gw = ours()
    with winograd_off():
        direct = ours()
    _, gi64, gw64 = reference(x, w, b, gy, 2, pads, 1, 1, torch.float64)
    y32, gi32, gw32 = reference(x, w, b, gy, 2, pads, 1, 1, torch.float32)
    slack = 2.0 if isa == "scalar" else 1.5
    for name, o, r64, nat, dir_ in zip(("forward", "grad_input", "grad_weight"), (y, gi, gw),
                                       (y64, gi64, gw64), (y32, gi32, gw32), direct):
        assert_error_within(name, o, r64, nat, dir_, slack)
        assert o.stride() == nat.stride(), name
    tiles = N * ((y.shape[2] + 1) // 2) * ((y.shape[3] + 1) // 2)
    assert torch.equal(y, direct[0]) == (tiles < 32)
    gi_tiles = N * ((H + 3) // 4) * ((W + 3) // 4)
    assert torch.equal(gi, direct[1]) == (gi_tiles < 32 or pads[0] % 2 != pads[1] % 2)
    # the weight gradient's stride-2 form: channels_last operands only (the others direct)
    assert torch.equal(gw, direct[2]) == (tiles < WINOGRAD_GW_MIN_TILES or layout != "cl")
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            assert torch.equal(ours()[2], gw)  # the same sums for any number of threads
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", [(2, 24, 34, 30, 40, 1), (2, 16, 17, 23, 16, 7),
                                  (5, 20, 17, 19, 24, 0), (40, 64, 40, 40, 16, 1),
                                  (3, 128, 20, 20, 80, 1)])
def test_winograd_grad_weight_same_for_every_layout(isa, case):
    """The Winograd weight gradient's transforms copy the rows of NCHW operands each task reads
    (both schedules: by tasks of tiles, and by transform position for the larger accumulators
    of the last case); channels_last ones are read in place. Same tiles, same sums: bitwise
    equal results for every layout and thread count."""
    N, C, H, W, K, pd = case
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(N, C, H, W, generator=gen)
    gy = torch.randn(N, K, H + 2 * pd - 2, W + 2 * pd - 2, generator=gen)
    cl = torch.channels_last
    strided = torch.zeros(N, C, H, 2 * W)[..., ::2].copy_(x)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for xx, gg in ((x, gy), (x.contiguous(memory_format=cl), gy.contiguous(memory_format=cl)),
                       (strided, gy.contiguous(memory_format=cl)), (x.contiguous(memory_format=cl), gy)):
            results.append(ops.conv2d_grad_weight(gg, xx, [K, C, 3, 3], [1, 1], [pd, pd], [1, 1], 1))
    with winograd_off():
        direct = ops.conv2d_grad_weight(gy, x, [K, C, 3, 3], [1, 1], [pd, pd], [1, 1], 1)
    assert not torch.equal(results[0], direct)  # through Winograd
    torch.testing.assert_close(results[0], direct, rtol=1e-4, atol=1e-4 * (N * H * W) ** 0.5)
    for r in results[1:]:
        assert torch.equal(r, results[0])


# (N, C, H, W, K, stride, padding, dilation, kernel): layers whose forward and input gradient
# run through Winograd.
WINOGRAD_LAYOUT_CASES = [
    (9, 16, 6, 6, 16, 1, 1, 1, 3),       # 9 tiles per image: tasks span images
    (2, 16, 17, 23, 16, 1, 7, 1, 3),     # tile rows whose windows lie in the padding
    (3, 17, 15, 13, 33, 1, 1, 1, 3),     # odd sizes, channel tails
    (2, 16, 20, 22, 16, 1, 2, 2, 3),     # dilated: 2 x 2 phases (a staged chunk)
    (4, 16, 33, 35, 24, 2, 1, 1, 3),     # the stride-2 forms (forward and input gradient)
    (3, 20, 46, 44, 17, 2, 0, 1, 3),     # ... no padding
    (2, 24, 34, 30, 40, 1, 2, 1, 5),     # 5x5 as 3x3 sub-kernels (tasks of tile rows)
]


@pytest.mark.parametrize("case", WINOGRAD_LAYOUT_CASES, ids=[str(c) for c in WINOGRAD_LAYOUT_CASES])
def test_winograd_same_for_every_layout(isa, case):
    """The Winograd forward and input gradient copy the rows of an NCHW operand each task
    reads (undilated; dilated ones are staged a chunk of images at a time); channels_last ones
    are read in place. Each tile's sums are the same wherever its input comes from: bitwise
    equal results for every layout and thread count."""
    N, C, H, W, K, st, pd, dl, R = case
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(N, C, H, W, generator=gen)
    w = torch.randn(K, C, R, R, generator=gen)
    b = torch.randn(K, generator=gen)
    OH = (H + 2 * pd - dl * (R - 1) - 1) // st + 1
    OW = (W + 2 * pd - dl * (R - 1) - 1) // st + 1
    gy = torch.randn(N, K, OH, OW, generator=gen)
    cl = torch.channels_last
    args = ([st, st], [pd, pd], [dl, dl], 1)

    def passes(xx, gg):
        return (ops.conv2d(xx, w, b, *args),
                ops.conv2d_grad_input(gg, w, [N, C, H, W], *args))
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            for xx, gg in ((x, gy), (x.contiguous(memory_format=cl), gy.contiguous(memory_format=cl)),
                           (torch.zeros(N, C, H, 2 * W)[..., ::2].copy_(x),
                            torch.zeros(N, K, OH, 2 * OW)[..., ::2].copy_(gy))):
                results.append(passes(xx, gg))
    finally:
        torch.set_num_threads(threads)
    with winograd_off():
        direct = passes(x, gy)
    for name, i in (("forward", 0), ("grad_input", 1)):
        assert not torch.equal(results[0][i], direct[i]), name  # through Winograd
        torch.testing.assert_close(results[0][i], direct[i], rtol=1e-4, atol=1e-4 * (C * R * R) ** 0.5)
        for r in results[1:]:
            assert torch.equal(r[i].contiguous(), results[0][i].contiguous()), name


def test_winograd_needs_32_tiles(isa):
    """Below 32 output tiles the weight transform does not pay: the direct kernels run."""
    gen = torch.Generator().manual_seed(5)
    for H, uses_winograd in ((10, False), (11, True)):  # 25 / 36 tiles
        x = torch.randn(1, 32, H, H, generator=gen)
        w = torch.randn(24, 32, 3, 3, generator=gen)
        y = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
        with winograd_off():
            direct = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
        assert torch.equal(y, direct) != uses_winograd


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_winograd_nan_inf_fall_back_to_direct(isa, layout):
    """Winograd's transforms spread a NaN / inf over a tile or cancel infinities (inf - inf):
    such inputs take the direct kernels, so NaN and inf land where F.conv2d puts them."""
    torch.manual_seed(0)
    x = torch.randn(2, 32, 24, 24)  # 288 tiles: the weight gradient too
    w = torch.randn(32, 32, 3, 3)
    x[0, 1, 4, 4] = float("nan")
    x[1, 6, 10, 10], x[1, 7, 10, 11] = float("inf"), float("-inf")
    gy = torch.randn(2, 32, 24, 24)
    gy[0, 3, 5, 5] = float("inf")
    w_inf = w.clone()
    w_inf[3, 4, 1, 1] = float("inf")
    if layout == "cl":
        x, w, gy, w_inf = (t.contiguous(memory_format=torch.channels_last)
                           for t in (x, w, gy, w_inf))
    finite_x = x.nan_to_num(0.0, 0.0, 0.0)
    gy2 = gy[..., ::2, ::2].clone()  # a stride-2 layer's grad_output
    gy2[0, 3, 2, 2], gy2[1, 5, 7, 4] = float("inf"), float("nan")
    pairs = [
        (ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1), F.conv2d(x, w, None, 1, 1)),
        (ops.conv2d(finite_x, w_inf, None, [1, 1], [1, 1], [1, 1], 1),
         F.conv2d(finite_x, w_inf, None, 1, 1)),
        # the stride-2 forms (72 tiles each)
        (ops.conv2d(x, w, None, [2, 2], [1, 1], [1, 1], 1), F.conv2d(x, w, None, 2, 1)),
        (ops.conv2d(finite_x, w_inf, None, [2, 2], [1, 1], [1, 1], 1),
         F.conv2d(finite_x, w_inf, None, 2, 1)),
        (ops.conv2d_grad_input(gy2, w, list(x.shape), [2, 2], [1, 1], [1, 1], 1),
         torch.ops.aten.convolution_backward(gy2, x, w, None, [2, 2], [1, 1], [1, 1], False,
                                             [0, 0], 1, [True, False, False])[0]),
        (ops.conv2d_grad_input(gy2.nan_to_num(0.0, 0.0, 0.0), w_inf, list(x.shape), [2, 2],
                               [1, 1], [1, 1], 1),
         torch.ops.aten.convolution_backward(gy2.nan_to_num(0.0, 0.0, 0.0), x, w_inf, None,
                                             [2, 2], [1, 1], [1, 1], False, [0, 0], 1,
                                             [True, False, False])[0]),
        (ops.conv2d_grad_input(gy, w, list(x.shape), [1, 1], [1, 1], [1, 1], 1),
         torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                             [0, 0], 1, [True, False, False])[0]),
        (ops.conv2d_grad_weight(gy, finite_x, list(w.shape), [1, 1], [1, 1], [1, 1], 1),
         torch.ops.aten.convolution_backward(gy, finite_x, w, None, [1, 1], [1, 1], [1, 1],
                                             False, [0, 0], 1, [False, True, False])[1]),
        (ops.conv2d_grad_weight(gy.nan_to_num(0.0, 0.0, 0.0), x, list(w.shape), [1, 1], [1, 1],
                                [1, 1], 1),
         torch.ops.aten.convolution_backward(gy.nan_to_num(0.0, 0.0, 0.0), x, w, None, [1, 1],
                                             [1, 1], [1, 1], False, [0, 0], 1,
                                             [False, True, False])[1]),
    ]
    for ours, ref in pairs:
        assert torch.equal(ours.isnan(), ref.isnan())
        assert torch.equal(ours.isinf(), ref.isinf())
        assert torch.equal(ours[ours.isinf()], ref[ref.isinf()])
        finite = ref.isfinite()
        torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_winograd_stride2_grad_weight_nan_inf_fall_back_to_direct(isa, layout):
    """As above for the stride-2 weight gradient (288 tiles; its Winograd form takes
    channels_last operands, NCHW ones the direct kernel)."""
    torch.manual_seed(1)
    x = torch.randn(8, 16, 24, 24)
    gy = torch.randn(8, 16, 12, 12)
    x[2, 1, 7, 4], x[5, 3, 0, 23] = float("nan"), float("inf")
    gy[6, 2, 3, 3], gy[6, 2, 3, 4] = float("inf"), float("-inf")
    if layout == "cl":
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    for xx, gg in ((x, gy.nan_to_num(0.0, 0.0, 0.0)), (x.nan_to_num(0.0, 0.0, 0.0), gy)):
        ours = ops.conv2d_grad_weight(gg, xx, [16, 16, 3, 3], [2, 2], [1, 1], [1, 1], 1)
        ref = torch.ops.aten.convolution_backward(gg, xx, torch.empty(16, 16, 3, 3), None, [2, 2],
                                                  [1, 1], [1, 1], False, [0, 0], 1,
                                                  [False, True, False])[1]
        assert ref.isnan().any() or ref.isinf().any()
        assert torch.equal(ours.isnan(), ref.isnan())
        assert torch.equal(ours.isinf(), ref.isinf())
        assert torch.equal(ours[ours.isinf()], ref[ref.isinf()])
        finite = ref.isfinite()
        torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-4, atol=1e-4)


# Depthwise shapes for the NCHW-plane kernels (rows vectorised, column phases for strides):
# (N, C, H, W, R, S, stride, padding, dilation)
PLANE_CASES = [
    (2, 5, 17, 19, 3, 3, 1, 1, 1),            # row tails, 2 rows per tile
    (1, 3, 7, 7, 3, 3, 1, 1, 1),              # narrower than a vector
    (2, 4, 23, 9, 3, 3, 2, 1, 1),             # stride 2: two column phases, strided grad_input
    (1, 3, 20, 26, 5, 5, 3, 2, 2),            # stride 3, dilation 2
    (1, 2, 9, 17, 4, 2, (2, 1), (1, 3), 1),   # asymmetric everything, padding > kernel
    (1, 2, 12, 40, 3, 7, 1, 0, (1, 3)),       # no padding, wide dilated rows
    (1, 3, 12, 40, 3, 3, (1, 2), 1, (1, 2)),  # 3x3 by blocks of rows: column phases, dilated
    # rows of at least a vector in every stride phase (the plane kernels take rows no shorter
    # than a vector): stride 2 of even width, stride 3 whose first phase is one column longer
    (1, 3, 11, 70, 3, 3, 2, 1, 1),
    (1, 2, 10, 100, 5, 5, 3, 2, 2),
    # stride 2: column pairs split by vectors, with zero-padded copies at both row ends
    # (padding 0, 1, 2, odd widths, dilation, a row of fewer than two vectors per phase)
    (2, 2, 6, 113, 3, 3, 2, 1, 1),
    (1, 3, 5, 64, 3, 3, 2, 0, 1),
    (1, 2, 7, 81, 5, 5, 2, 2, 1),
    (1, 2, 8, 90, 3, 3, 2, 2, 2),
    (1, 2, 4, 37, 3, 3, 2, (0, 1), 1),
    # stride 2 past the staging's row buffer: a row wider than it, padding beyond its margin
    # (the element-by-element copies at the row ends instead)
    (1, 2, 5, 1100, 3, 3, 2, 1, 1),
    (1, 2, 6, 60, 3, 3, 2, 33, 1),
    # a grad_input of >= 2 MB: its phases interleaved by streaming stores where every store is
    # a whole vector (phases of 128 columns), plain ones where not (odd width: the first
    # phase's last column stored apart); a zero-inserted one (3x3) streamed
    (1, 8, 256, 256, 5, 5, 2, 2, 1),
    (1, 8, 256, 257, 5, 5, 2, 2, 1),
    (1, 8, 256, 256, 3, 3, 2, 1, 1),
    # input gradients with a stride from grad_output with zeros inserted (undilated 3x3, or
    # phases narrower than two vectors): padding beyond the kernel (grad_output rows and
    # columns that reach no grad_input pixel), stride > kernel (pixels no tap reaches), stride
    # 3 of a 5x5, MBv2-like 14 x 14 (AVX2: 7-column phases)
    (1, 2, 9, 17, 3, 3, 2, 3, 1),
    (2, 3, 10, 40, 2, 2, 3, 0, 1),
    (1, 2, 14, 40, 5, 5, 3, 1, 1),
    (2, 6, 14, 14, 3, 3, 2, 1, 1),
]


@DTYPES
@pytest.mark.parametrize("case", PLANE_CASES, ids=[str(c) for c in PLANE_CASES])
def test_depthwise_nchw_planes(isa, case, dtype):
    N, C, H, W, R, S, st, pd, dl = case
    check_case(N, C, H, W, C, R, S, st, pd, dl, C, layout="nchw", bias=True, dtype=dtype)
    check_case(N, C, H, W, C, R, S, st, pd, dl, C, layout="nchw", bias=False, seed=1,
               dtype=dtype)


# Depthwise over rows narrower than half a vector (not the plane kernels): channel-vectorised,
# NCHW output through per-worker scratch in whole-image chunks, a single image split into
# blocks of channel vectors (with a partial last vector); 150 planes of 7 x 7 are transposed to
# pixel-major in two blocks of whole planes (80 + 70).
@DTYPES
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("case", [(1, 40, 6, 6, 3, 1, 1), (3, 37, 7, 5, 3, 2, 1),
                                  (1, 100, 4, 4, 5, 1, 2), (2, 150, 7, 7, 3, 1, 1)])
def test_depthwise_small_nchw_images(isa, case, threads, dtype):
    N, C, H, W, R, st, pd = case
    torch.set_num_threads(threads)
    for layout in ("nchw", "cl"):
        check_case(N, C, H, W, C, R, R, st, pd, 1, C, layout=layout, dtype=dtype)


# Grouped with at most 16 channels per group on planes (NCHW read in place, channels_last
# through transposes, with column phases through unpadded planes): strides and dilation
# (grad_input phases), 'same' with an even kernel, output-channel tails (kpg not a multiple of
# 4), 16 -> 16.
GROUPED_PLANE_CASES = [
    (2, 32, 13, 11, 32, 3, 3, 1, 1, 1, 8),       # 4 -> 4
    (1, 24, 15, 17, 36, 3, 3, 2, 1, 1, 6),       # 4 -> 6, stride 2
    (2, 64, 17, 19, 64, 3, 3, 2, 1, 1, 8),       # 8 -> 8, stride 2, odd sizes
    (1, 48, 14, 23, 48, 5, 3, (3, 2), 2, 1, 4),  # 12 -> 12, strides 3 x 2, 5 x 3
    (2, 12, 10, 10, 20, 3, 3, 1, 2, 2, 4),       # 3 -> 5, dilated
    (1, 64, 9, 14, 64, 3, 3, 1, 1, 1, 4),        # 16 -> 16
    (1, 16, 12, 12, 8, 4, 2, 1, "same", 1, 2),   # 8 -> 4, even kernel 'same'
]


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", GROUPED_PLANE_CASES, ids=[str(c) for c in GROUPED_PLANE_CASES])
def test_grouped_planes(isa, case, dtype, layout):
    check_case(*case, layout=layout, dtype=dtype)
    check_case(*case, layout=layout, bias=False, seed=1, dtype=dtype)


# The channel-vectorised grouped weight gradient is instantiated per channel count of a group
# (cpg <= kpg, kpg dividing the vector): several counts, groups not filling the last vector.
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("cpg,kpg", [(1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (1, 8)])
def test_grouped_weight_gradient_channel_counts(isa, cpg, kpg, layout):
    G = 5
    for dtype in (torch.float32, torch.float64):
        check_case(2, G * cpg, 9, 11, G * kpg, 3, 3, 1, 1, 1, G, layout=layout, dtype=dtype)


def test_grouped_planes_match_the_channel_kernel(isa):
    """4 -> 4 per group, stride 2: NCHW input runs the plane kernel, channels_last input too
    (its rows transposed into planes, then split into column phases), and input with neither
    unit channel nor unit column stride the channel-vectorised kernel, all in the same
    summation order (taps, then channels, then the bias): equal bit for bit; the input
    gradients of both layouts too."""
    if isa == "scalar":
        pytest.skip("the scalar ISA has no channel-vectorised grouped kernel to compare with")
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 32, 24, 37, generator=gen)
    w = torch.randn(32, 4, 3, 3, generator=gen)
    b = torch.randn(32, generator=gen)
    gy = torch.randn(2, 32, 12, 19, generator=gen)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (x, gy)]
    strided = torch.zeros(2, 24, 37, 64)[..., ::2].permute(0, 3, 1, 2).copy_(x)
    nchw = run_ops(x, w, b, gy, 2, 1, 1, 8)
    channels_last = run_ops(cl[0], w, b, cl[1], 2, 1, 1, 8)
    for a, c in zip(nchw[:2], channels_last[:2]):
        assert torch.equal(a, c)
    assert torch.equal(nchw[0], ops.conv2d(strided, w, b, [2, 2], [1, 1], [1, 1], 8))


@pytest.mark.parametrize("mix", ["x_cl", "w_cl", "row_padded"])
def test_depthwise_mixed_layouts(isa, mix):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 11, 13, generator=gen)
    w = torch.randn(6, 1, 3, 3, generator=gen)
    if mix == "x_cl":
        x = x.contiguous(memory_format=torch.channels_last)
    elif mix == "w_cl":
        w = w.contiguous(memory_format=torch.channels_last)
    else:  # rows contiguous, row stride larger than the width
        x = torch.randn(2, 6, 11, 16, generator=gen)[..., 1:14]
    gy = torch.randn(2, 6, 6, 7, generator=gen)
    ours = run_ops(x, w, None, gy, 2, 1, 1, 6)
    refs = reference(x, w, None, gy, 2, 1, 1, 6, torch.float64)
    for o, r in zip(ours, refs):
        torch.testing.assert_close(o.double(), r, rtol=1e-5, atol=1e-5)
    expected = F.conv2d(x, w, None, 2, 1, 1, 6)
    assert ours[0].stride() == expected.stride()


# NCHW inputs of 2-4 channels (an RGB stem) are staged pixel-major by row interleaves (AVX-512
# and AVX2 float32) rather than transposes: widths with and without a tail of 8 / 16 pixels.
@DTYPES
@pytest.mark.parametrize("C", [2, 3, 4])
@pytest.mark.parametrize("W", [21, 40])
def test_stem_like_nchw_staging(isa, C, W, dtype):
    check_case(2, C, 19, W, 16, 7, 7, 2, 3, 1, 1, layout="nchw", dtype=dtype)


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (2, 5), (3, 3)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding(isa, kernel, dilation, layout, dtype):
    for K, G in ((9, 1), (6, 6)):
        check_case(2, 6, 9, 10, K, kernel[0], kernel[1], 1, "same", dilation, G, layout=layout,
                   dtype=dtype)


def test_autograd_end_to_end(isa):
    torch.manual_seed(0)
    x = torch.randn(2, 12, 10, 10, requires_grad=True)
    w = torch.randn(16, 12, 3, 3, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    y = torchconv.functional.conv2d(x, w, b, stride=2, padding=1)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), g)
    xr, wr, br = (t.detach().double().requires_grad_() for t in (x, w, b))
    yr = F.conv2d(xr, wr, br, stride=2, padding=1)
    refs = torch.autograd.grad(yr, (xr, wr, br), g.double())
    torch.testing.assert_close(y.double(), yr, rtol=1e-4, atol=1e-4)
    for a, r in zip(grads, refs):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-4)


@DTYPES
@pytest.mark.parametrize("N,K,OH,OW", [(2, 17, 9, 7), (3, 70, 5, 30), (8, 144, 12, 12),
                                       (1, 33, 1, 1), (4, 5, 64, 9)])
def test_bias_gradient_of_channels_last_grad_output(isa, N, K, OH, OW, dtype):
    # channels_last grad_output: torchconv's own channel sums (blocks of 64 pixel rows, runs of
    # 8, the blocks added pairwise); channel tails, row counts off the blocks, 1 and 2 threads
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, OH, OW, generator=gen, dtype=dtype)
    w = torch.randn(K, 3, 1, 1, generator=gen, dtype=dtype)
    b = torch.randn(K, generator=gen, dtype=dtype, requires_grad=True)
    g = torch.randn(N, K, OH, OW, generator=gen, dtype=dtype)
    x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(torch.autograd.grad(torchconv.functional.conv2d(x, w, b), b, g)[0])
    assert torch.equal(results[0], results[1])
    ref = g.double().sum((0, 2, 3))
    # no worse than at::sum's error (plus a few ulps of the sum's largest partial magnitude)
    native_err = (g.sum((0, 2, 3)).double() - ref).abs().max().item()
    scale = g.abs().sum((0, 2, 3)).double().max().item() * torch.finfo(dtype).eps
    assert (results[0].double() - ref).abs().max().item() <= 2 * native_err + 4 * scale


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_threads_bitwise_identical(isa, layout, dtype):
    # the first two run through Winograd (float32; the second's forward and input gradient on
    # the stride-2 forms)
    cases = [(2, 20, 13, 11, 36, 3, 3, 1, 1, 1, 1), (2, 20, 26, 22, 36, 3, 3, 2, 1, 1, 1),
             (2, 16, 12, 12, 16, 3, 3, 2, 1, 1, 16),
             (2, 32, 10, 10, 32, 3, 3, 1, 1, 1, 8), (3, 40, 9, 9, 24, 1, 1, 2, 0, 1, 1),
             (3, 70, 40, 40, 20, 1, 1, 1, 0, 1, 1), (2, 24, 40, 40, 36, 1, 1, 1, 0, 1, 1),
             # depthwise over rows narrower than half a vector, one image: NCHW splits it
             # into blocks of channel vectors that depend on the thread count
             (1, 40, 6, 6, 40, 3, 3, 1, 1, 1, 40),
             # weight gradients with 16 and 14 groups of passes: at 2 threads (channels_last;
             # both layouts for the 3x3) the pass groups are the tasks, at 1 the weight blocks
             (3, 24, 64, 60, 40, 1, 1, 1, 0, 1, 1), (4, 8, 130, 66, 12, 3, 3, 2, 1, 1, 1),
             # depthwise weight gradient over parts of large channels_last images, each task
             # every channel vector of its part (20 parts of 13 rows)
             (4, 160, 64, 40, 160, 3, 3, 1, 1, 1, 160)]
    for (N, C, H, W, K, R, S, st, pd, dl, G) in cases:
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
        w = torch.randn(K, C // G, R, S, generator=gen, dtype=dtype)
        b = torch.randn(K, generator=gen, dtype=dtype)
        gy = torch.randn(F.conv2d(x, w, b, st, pd, dl, G).shape, generator=gen, dtype=dtype)
        if layout == "cl":
            x, w, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, gy))
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(run_ops(x, w, b, gy, st, pd, dl, G))
        for a, c in zip(*results):
            assert torch.equal(a, c)


@DTYPES
def test_fuzz_random_shapes(isa, dtype):
    rng = random.Random(1234)
    for i in range(25):
        G = rng.choice([1, 1, 1, 2, 3])
        cpg, kpg = rng.randint(1, 9), rng.randint(1, 9)
        if rng.random() < 0.2:  # depthwise
            cpg, kpg, G = 1, 1, rng.randint(1, 40)
        R, S = rng.randint(1, 5), rng.randint(1, 5)
        st, dl = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 2), rng.randint(1, 2))
        pd = (rng.randint(0, 3), rng.randint(0, 3))
        H = rng.randint(max(1, dl[0] * (R - 1) + 1 - 2 * pd[0]), 14)
        W = rng.randint(max(1, dl[1] * (S - 1) + 1 - 2 * pd[1]), 14)
        layout = rng.choice(["nchw", "cl"])
        check_case(rng.randint(1, 3), G * cpg, H, W, G * kpg, R, S, st, pd, dl, G,
                   layout=layout, bias=rng.random() < 0.5, seed=i, dtype=dtype)


@DTYPES
def test_non_contiguous_operands(isa, dtype):
    torch.manual_seed(0)
    xb = torch.randn(2, 12, 14, 18, dtype=dtype)
    x = xb[:, ::2, 1:12, ::2]  # odd strides everywhere
    w = torch.randn(1, 6, 3, 3, dtype=dtype).expand(8, 6, 3, 3)  # zero stride
    y = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    ref = F.conv2d(x.double(), w.double(), None, 1, 1)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-4)
    assert y.dtype == dtype
    gy = torch.randn(y.shape + (2,), dtype=dtype)[..., 0]  # non-contiguous grad
    gi = ops.conv2d_grad_input(gy, w, list(x.shape), [1, 1], [1, 1], [1, 1], 1)
    gw = ops.conv2d_grad_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 1)
    _, gi_ref, gw_ref = reference(x, w.contiguous(), None, gy, 1, 1, 1, 1, torch.float64)
    torch.testing.assert_close(gi.double(), gi_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gw.double(), gw_ref, rtol=1e-5, atol=1e-3)
    # 1x1 over NCHW rows with a row stride past their width (pixel panels: runs per row)
    x1 = torch.randn(2, 40, 37, 40, dtype=dtype)[..., :29]
    w1 = torch.randn(70, 40, 1, 1, dtype=dtype)
    y1 = ops.conv2d(x1, w1, None, [1, 1], [0, 0], [1, 1], 1)
    torch.testing.assert_close(y1.double(), F.conv2d(x1.double(), w1.double()),
                               rtol=1e-5, atol=1e-4)
    # its weight gradient: planes that are not dense take the channel-vectorised kernel, and
    # a grad_output with row-strided planes too
    gy1 = torch.randn(2, 70, 37, 40, dtype=dtype)[..., :29]
    for g in (gy1, gy1.contiguous()):
        gw1 = ops.conv2d_grad_weight(g, x1, list(w1.shape), [1, 1], [0, 0], [1, 1], 1)
        _, _, gw1_ref = reference(x1, w1, None, g, 1, 0, 1, 1, torch.float64)
        torch.testing.assert_close(gw1.double(), gw1_ref, rtol=1e-5, atol=1e-3)
    gw1 = ops.conv2d_grad_weight(gy1, x1.contiguous(), list(w1.shape), [1, 1], [0, 0], [1, 1], 1)
    _, _, gw1_ref = reference(x1.contiguous(), w1, None, gy1, 1, 0, 1, 1, torch.float64)
    torch.testing.assert_close(gw1.double(), gw1_ref, rtol=1e-5, atol=1e-3)


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("groups", [1, 8])
def test_nan_inf_propagate(isa, layout, groups, dtype):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 9, 9, dtype=dtype)
    x[0, 1, 4, 4] = float("nan")
    x[0, 2, 0, 7] = float("inf")
    x[0, 5, 8, 0] = float("-inf")
    w = torch.randn(8, 8 // groups, 3, 3, dtype=dtype)
    if layout == "cl":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    y = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], groups)
    ref = F.conv2d(x, w, None, 1, 1, 1, groups)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isinf(y), torch.isinf(ref))
    gy = torch.ones_like(y)
    gw = ops.conv2d_grad_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], groups)
    gw_ref = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                 [0, 0], groups, [False, True, False])[1]
    assert torch.equal(torch.isnan(gw), torch.isnan(gw_ref))
    gy2 = gy.clone()
    gy2[0, 3, 2, 2] = float("nan")
    gi = ops.conv2d_grad_input(gy2, w, list(x.shape), [1, 1], [1, 1], [1, 1], groups)
    gi_ref = torch.ops.aten.convolution_backward(gy2, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                 [0, 0], groups, [True, False, False])[0]
    assert torch.equal(torch.isnan(gi), torch.isnan(gi_ref))


def conv2d_in_range_products(x, w, stride, padding, groups):
    """F.conv2d as its definition has it: only products of weights with input pixels inside
    the image (none with the padding), an einsum over channels per tap and range of outputs.
    Its autograd gradients have the same property."""
    N, C, H, W = x.shape
    K, cpg, R, S = w.shape
    OH = (H + 2 * padding - R) // stride + 1
    OW = (W + 2 * padding - S) // stride + 1
    kpg = K // groups
    y = x.new_zeros(N, K, OH, OW)

    def inside(out, size, tap):  # outputs whose input position o*stride - padding + tap is inside
        o = [i for i in range(out) if 0 <= i * stride - padding + tap < size]
        return (o[0], o[-1] + 1) if o else (0, 0)
    for r in range(R):
        a0, a1 = inside(OH, H, r)
        for s in range(S):
            b0, b1 = inside(OW, W, s)
            if a0 >= a1 or b0 >= b1:
                continue
            xs = x[:, :, a0 * stride - padding + r:(a1 - 1) * stride - padding + r + 1:stride,
                   b0 * stride - padding + s:(b1 - 1) * stride - padding + s + 1:stride]
            y[:, :, a0:a1, b0:b1] = y[:, :, a0:a1, b0:b1] + torch.cat(
                [torch.einsum("nchw,kc->nkhw", xs[:, g * cpg:(g + 1) * cpg],
                              w[g * kpg:(g + 1) * kpg, :, r, s]) for g in range(groups)], 1)
    return y


def same_nonfinite(a, b):
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a[a.isinf()], b[b.isinf()])


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("R,stride", [(1, 1), (1, 2), (3, 1), (3, 2), (2, 1)])
def test_nonfinite_weights_and_grad_output_at_the_padding(isa, layout, groups, R, stride, dtype):
    """The kernels multiply staged zero padding like input pixels: an infinite or NaN weight
    (forward, input gradient) or grad_output value at the border (weight gradient) would give
    inf * 0 = NaN where the convolution has no such product. Those calls run on the portable
    kernels; NaN and inf positions match the definition (F.conv2d's own float64 path, which
    multiplies its zero padding, does not)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 9, 10, generator=gen).to(dtype)
    w = torch.randn(16, 8 // groups, R, R, generator=gen).to(dtype)
    w_bad = w.clone()
    w_bad[1, 0, 0, 0] = float("inf")
    w_bad[6, 0, R - 1, R - 1] = float("-inf")
    w_bad[11, 0, 0, R - 1] = float("nan")
    pad = 1
    if layout == "cl":
        x, w, w_bad = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, w_bad))
    xr, wr = x.double().requires_grad_(), w_bad.double().requires_grad_()
    ref = conv2d_in_range_products(xr, wr, stride, pad, groups)
    gy = torch.randn(ref.shape, generator=gen).to(dtype)
    gy_bad = gy.clone()
    gy_bad[0, 2, 0, 0] = float("inf")
    gy_bad[1, 9, -1, 3] = float("nan")
    gy_bad[1, 14, 4, -1] = float("-inf")
    if layout == "cl":
        gy, gy_bad = (t.contiguous(memory_format=torch.channels_last) for t in (gy, gy_bad))
    st, pd, dl = [stride, stride], [pad, pad], [1, 1]
    y = ops.conv2d(x, w_bad, None, st, pd, dl, groups)
    gi = ops.conv2d_grad_input(gy, w_bad, list(x.shape), st, pd, dl, groups)
    (gi_ref,) = torch.autograd.grad(ref, xr, gy.double())
    gw = ops.conv2d_grad_weight(gy_bad, x, list(w.shape), st, pd, dl, groups)
    wr2 = w.double().requires_grad_()
    (gw_ref,) = torch.autograd.grad(conv2d_in_range_products(x.double(), wr2, stride, pad, groups),
                                    wr2, gy_bad.double())
    for name, ours, exact in (("forward", y, ref), ("grad_input", gi, gi_ref),
                              ("grad_weight", gw, gw_ref)):
        assert same_nonfinite(ours.double(), exact.detach()), name
        finite = exact.isfinite()
        torch.testing.assert_close(ours.double()[finite], exact.detach()[finite], rtol=1e-4,
                                   atol=1e-4)
    # finite operands through the same calls still take the fast paths' results
    torch.testing.assert_close(ops.conv2d(x, w, None, st, pd, dl, groups).double(),
                               conv2d_in_range_products(x.double(), w.double(), stride, pad,
                                                        groups), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_nonfinite_weights_at_the_padding_half_types(isa, dtype):
    """As above for the dtypes that reach the float32 kernels widened. (Complex convolutions
    are three real ones combined, by Gauss's trick as PyTorch's own: inf - inf is NaN there
    whatever the padding.)"""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 9, 9, generator=gen).to(dtype)
    w = torch.randn(8, 8, 3, 3, generator=gen).to(dtype)
    w[2, 1, 0, 0] = float("inf")
    w[5, 3, 2, 1] = float("nan")
    y = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    assert same_nonfinite(y.double(), conv2d_in_range_products(x.double(), w.double(), 1, 1, 1))


@DTYPES
@pytest.mark.parametrize("bad", ["weight_inf", "weight_nan", "grad_output"])
def test_depthwise_strided_grad_input_nan_inf(isa, bad, dtype):
    """A depthwise input gradient with a stride over NCHW planes runs on grad_output with zeros
    inserted, where every tap multiplies a zero at the pixels it does not reach: an infinite or
    NaN tap must not turn those into NaN (F.conv2d has no such product; the phases take such
    weights), while non-finite grad_output values spread as in F.conv2d."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 20, 26, generator=gen).to(dtype)
    w = torch.randn(4, 1, 3, 3, generator=gen).to(dtype)
    gy = torch.randn(2, 4, 10, 13, generator=gen).to(dtype)
    if bad == "weight_inf":
        w[1, 0, 0, 2] = float("inf")
        w[2, 0, 1, 1] = float("-inf")
    elif bad == "weight_nan":
        w[3, 0, 2, 0] = float("nan")
    else:
        gy[0, 1, 3, 4] = float("inf")
        gy[1, 2, 0, 12] = float("nan")
    gi = ops.conv2d_grad_input(gy, w, list(x.shape), [2, 2], [1, 1], [1, 1], 4)
    ref = torch.ops.aten.convolution_backward(gy, x, w, None, [2, 2], [1, 1], [1, 1], False,
                                              [0, 0], 4, [True, False, False])[0]
    assert torch.equal(gi.isnan(), ref.isnan())
    assert torch.equal(gi[gi.isinf()], ref[ref.isinf()])
    finite = ref.isfinite()
    torch.testing.assert_close(gi[finite], ref[finite], rtol=1e-4, atol=1e-4)


@DTYPES
@pytest.mark.parametrize("width", [7, 12, 24])
def test_depthwise_grad_weight_nan_inf_positions(isa, width, dtype):
    """Depthwise weight gradient over NCHW planes: the row-vectorised kernel's lanes past the
    output row multiply a zero grad_output by staged inputs, real ones where the right padding
    is narrower than the window (the last input column here): an infinite one must not turn
    the sums of taps that never reach it into NaN, as F.conv2d has no such product."""
    torch.manual_seed(0)
    x = torch.randn(2, 20, 9, width, dtype=dtype)
    x[0, 3, 4, width - 1] = float("inf")
    x[1, 5, 0, width - 1] = float("nan")
    x[1, 6, 8, 0] = float("-inf")
    w = torch.randn(20, 1, 3, 3, dtype=dtype)
    gy = torch.randn(2, 20, 9, width, dtype=dtype)
    gw = ops.conv2d_grad_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 20)
    gw_ref = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                                 [0, 0], 20, [False, True, False])[1]
    assert torch.equal(gw.isnan(), gw_ref.isnan())
    assert torch.equal(gw.isinf(), gw_ref.isinf())
    finite = gw_ref.isfinite()
    torch.testing.assert_close(gw[finite], gw_ref[finite], rtol=1e-4, atol=1e-4)


@DTYPES
@pytest.mark.parametrize("case", [(4, 160, 64, 40, 1), (4, 100, 70, 70, 2), (3, 20, 40, 36, 1)])
def test_depthwise_grad_weight_parts_of_large_images(isa, case, dtype):
    """channels_last depthwise weight gradient over images of 1024 pixels and more: parts of
    rows sized by their input rows (the first two with every channel vector per task, the
    last with too few parts for that), a channel tail in the second."""
    N, C, H, W, st = case
    check_case(N, C, H, W, C, 3, 3, st, 1, 1, C, layout="cl", seed=3, dtype=dtype)


@DTYPES
@pytest.mark.parametrize("layout", ["nchw", "cl", "nchw_strided"])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_grad_weight_nonfinite_grad_output_at_border(isa, layout, stride, dtype):
    """Depthwise 3x3 weight gradient over small images, vectorised over channels: each
    image goes through a zero-bordered copy, which multiplies the border pixels' grad_output
    by padding. F.conv2d's float32 kernels (oneDNN) have no such products, so an infinite
    grad_output there must not turn the taps that only see padding at that pixel into NaN.
    (Its float64 kernels multiply the zero padding and do give NaN; torchconv skips the
    padding in both dtypes, so the non-finite pattern is float32 F.conv2d's.)"""
    torch.manual_seed(0)
    x = torch.randn(3, 20, 7, 7, dtype=dtype)
    w = torch.randn(20, 1, 3, 3, dtype=dtype)
    gy = torch.randn(F.conv2d(x, w, None, stride, 1, 1, 20).shape, dtype=dtype)
    oh = gy.shape[2] - 1
    gy[0, 3, 0, 0] = float("inf")
    gy[1, 5, oh, 2] = float("nan")
    gy[2, 6, 1, oh] = float("-inf")
    x[2, 9, 0, 0] = float("inf")  # an input at the border: the padding beside it stays out
    if layout == "cl":
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    if layout == "nchw_strided":  # planes that are not dense: the channel-vectorised kernel
        x = torch.cat([x, x], dim=3)[..., :7]
        gy = torch.cat([gy, gy], dim=3)[..., :gy.shape[3]]
    gw = ops.conv2d_grad_weight(gy, x, list(w.shape), [stride] * 2, [1, 1], [1, 1], 20)

    def native(gy, x, w):
        return torch.ops.aten.convolution_backward(gy, x, w, None, [stride] * 2, [1, 1], [1, 1],
                                                   False, [0, 0], 20, [False, True, False])[1]
    pattern = native(gy.float(), x.float(), w.float())
    assert torch.equal(gw.isnan(), pattern.isnan())
    assert torch.equal(gw.isinf(), pattern.isinf())
    assert gw.isfinite().sum() < gw.numel()  # (the test reaches the non-finite channels)
    finite = pattern.isfinite()
    torch.testing.assert_close(gw[finite].float(), pattern[finite], rtol=1e-4, atol=1e-3)
    gw_ref = native(gy, x, w)  # in the test's dtype, where it is finite
    finite = finite & gw_ref.isfinite()
    torch.testing.assert_close(gw[finite], gw_ref[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [(2, 12, 9, 11, 20, 3, 3, 2, 1, 1, 1),
                                  (1, 8, 10, 10, 8, 3, 3, 1, 1, 1, 8)])
def test_half_types_on_float32_kernels(isa, dtype, layout, case):
    # widened exactly, accumulated in float32, rounded once: within one rounding of the
    # float64 result computed from the same (rounded) inputs
    N, C, H, W, K, R, S, st, pd, dl, G = case
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(N, C, H, W, generator=gen).to(dtype)
    w = torch.randn(K, C // G, R, S, generator=gen).to(dtype)
    b = torch.randn(K, generator=gen).to(dtype)
    gy = torch.randn(F.conv2d(x.float(), w.float(), None, st, pd, dl, G).shape,
                     generator=gen).to(dtype)
    if layout == "cl":
        x, w, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, gy))
    ours = run_ops(x, w, b, gy, st, pd, dl, G)
    refs = reference(x, w, b, gy, st, pd, dl, G, torch.float64)
    eps = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    for o, r in zip(ours, refs):
        assert o.dtype == dtype
        bound = eps * r.abs() + 1e-5 * (r.abs().max().item() + 1)
        assert ((o.double() - r).abs() <= bound).all()
    expected = F.conv2d(x, w, b, st, pd, dl, G)
    assert ours[0].stride() == expected.stride()


BF16_CASES = [  # N, C, H, W, K, R, S, stride, padding, dilation
    (2, 3, 23, 21, 20, 7, 7, 2, 3, 1),      # RGB stem: odd channels (a zero pair element)
    (2, 16, 9, 9, 50, 1, 1, 1, 0, 1),       # 1x1, channels_last read in place, k-block tail
    (1, 600, 6, 5, 33, 3, 3, 1, 1, 1),      # 2700 pairs: blocks, groups of blocks
    (2, 10, 12, 11, 40, 3, 2, (2, 1), (1, 0), (2, 1)),  # asymmetric everything
    (1, 7, 9, 8, 9, 4, 4, 1, "same", 1),    # even kernel 'same' (more padding bottom/right)
    (3, 32, 5, 7, 64, 3, 3, 3, 0, 1),       # stride > output, no padding
]


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", BF16_CASES)
def test_bfloat16_forward(isa, layout, case):
    """bfloat16 forward (AVX-512 BF16 dot products where the CPU has them, else the float32
    kernels): float32 sums rounded once, NaN / inf propagated, native's output layout."""
    N, C, H, W, K, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(N, C, H, W, generator=gen).bfloat16()
    w = (torch.randn(K, C, R, S, generator=gen) / math.sqrt(C * R * S)).bfloat16()
    b = torch.randn(K, generator=gen).bfloat16()
    if layout == "cl":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    for bias in (b, None):
        ours = torchconv.functional.conv2d(x, w, bias, st, pd, dl)
        ref = F.conv2d(x.double(), w.double(), None if bias is None else bias.double(), st, pd, dl)
        assert ours.dtype == torch.bfloat16
        assert ours.stride() == F.conv2d(x, w, bias, st, pd, dl).stride()
        bound = 2.0**-8 * ref.abs() + 1e-5 * (ref.abs().max().item() + 1)
        assert ((ours.double() - ref).abs() <= bound).all()
    x[0, C - 1, H // 2, W // 2] = float("nan")
    x[-1, 0, 0, 0] = float("inf")
    ours = torchconv.functional.conv2d(x, w, b, st, pd, dl)
    ref = F.conv2d(x.double(), w.double(), b.double(), st, pd, dl)
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours.isinf(), ref.isinf())


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [c for c in BF16_CASES if c[8] != "same"] + [
    (3, 5, 12, 10, 7, 3, 4, 1, 2, 1),       # odd batch (a zero pair element), 12 taps
    (2, 6, 13, 11, 20, 3, 3, (2, 1), (1, 0), (1, 2)),  # asymmetric, 9 taps
    # 1x1 unpadded: pixels as the reduction channels, the batch as taps
    (2, 20, 8, 6, 40, 1, 1, 1, 0, 1),       # even plane: NCHW read in place, k-block tail
    (3, 13, 10, 9, 33, 1, 1, 2, 0, 1),      # strided (odd 5 x 5 planes), odd batch
    (1, 70, 4, 4, 64, 1, 1, 1, 0, 2),       # one image (one tap), whole k-blocks
    (2, 8, 5, 5, 10, 1, 1, 1, 1, 1),        # padded 1x1: widened to float32
])
def test_bfloat16_grad_weight(isa, layout, case):
    """bfloat16 weight gradient (one group, at least 9 taps: a convolution with the batch as
    the reduction channels; unpadded 1x1: a convolution with the pixels as the reduction
    channels and the batch as taps; where the CPU has AVX-512 BF16): one rounding of the
    float64 sum."""
    N, C, H, W, K, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(N, C, H, W, generator=gen).bfloat16()
    gy = torch.randn(F.conv2d(x.float(), torch.empty(K, C, R, S), None, st, pd, dl).shape,
                     generator=gen).bfloat16()
    if layout == "cl":
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    args = ([K, C, R, S], pair(st), pair(pd), pair(dl), 1)
    ours = torch.ops.torchconv.conv2d_grad_weight(gy, x, *args)
    ref = torch.nn.grad.conv2d_weight(x.double(), (K, C, R, S), gy.double(), st, pd, dl)
    assert ours.dtype == torch.bfloat16
    bound = 2.0**-8 * ref.abs() + 1e-5 * (ref.abs().max().item() + 1)
    assert ((ours.double() - ref).abs() <= bound).all()
    x[N - 1, 0, H // 2, W // 2] = float("nan")
    ours = torch.ops.torchconv.conv2d_grad_weight(gy, x, *args)
    ref = torch.nn.grad.conv2d_weight(x.double(), (K, C, R, S), gy.double(), st, pd, dl)
    assert torch.equal(ours.isnan(), ref.isnan())


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [  # N, C, H, W, R, S, stride, padding, dilation
    (2, 40, 13, 30, 3, 3, 1, 1, 1),           # channel tail, interior and border groups
    (1, 16, 9, 21, 5, 3, 2, (2, 1), (1, 2)),  # asymmetric stride / padding / dilation
    (2, 7, 5, 5, 3, 3, 3, 0, 1),              # stride > kernel, fewer than 16 channels
    (1, 24, 6, 16, 3, 3, 1, 1, 1),            # a group of 8 pixels ending at the padding
])
def test_bfloat16_depthwise(isa, layout, case):
    """bfloat16 depthwise forward (channels_last: its own AVX-512 kernel where the CPU has
    AVX-512 BF16): one rounding of the float64 result, NaN / inf propagated."""
    N, C, H, W, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(N, C, H, W, generator=gen).bfloat16()
    w = (torch.randn(C, 1, R, S, generator=gen) / math.sqrt(R * S)).bfloat16()
    b = torch.randn(C, generator=gen).bfloat16()
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    x[0, C - 1, H // 2, W // 2] = float("nan")
    x[-1, 0, 0, W - 1] = float("-inf")
    for bias in (b, None):
        ours = torchconv.functional.conv2d(x, w, bias, st, pd, dl, C)
        ref = F.conv2d(x.double(), w.double(), None if bias is None else bias.double(), st,
                       pd, dl, C)
        assert ours.stride() == F.conv2d(x, w, bias, st, pd, dl, C).stride()
        assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
        finite = ref.isfinite()
        bound = 2.0**-8 * ref.abs() + 1e-5 * (ref[finite].abs().max().item() + 1)
        assert ((ours.double() - ref).abs() <= bound)[finite].all()


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [  # N, C, H, W, R, S, stride, padding, dilation
    (2, 40, 13, 30, 3, 3, 1, 1, 1),           # channel tail, border and interior pixels
    (2, 24, 14, 15, 3, 3, 2, 1, 1),           # stride 2, odd width
    (1, 16, 9, 21, 5, 3, 2, (2, 1), (1, 2)),  # asymmetric stride / padding / dilation
    (3, 7, 5, 5, 2, 2, 3, 0, 1),              # stride > kernel, fewer than 16 channels
    (1, 20, 12, 40, 5, 5, 1, 2, 1),           # 25 taps (two passes of 16), row blocks
    (2, 16, 40, 40, 3, 3, 1, 1, 1),           # several row blocks (fixed partition)
])
def test_bfloat16_depthwise_grad_weight(isa, layout, case):
    """bfloat16 depthwise weight gradient (channels_last: its own kernel where the CPU has
    AVX-512 BF16, float32 sums over fixed blocks of rows): one rounding of the float64 sum,
    NaN propagated, the same bits for 1 and 2 threads."""
    N, C, H, W, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(N, C, H, W, generator=gen).bfloat16()
    shape = F.conv2d(x.float(), torch.empty(C, 1, R, S), None, st, pd, dl, C).shape
    gy = torch.randn(shape, generator=gen).bfloat16()
    if layout == "cl":
        x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
    args = ([C, 1, R, S], pair(st), pair(pd), pair(dl), C)
    ours = torch.ops.torchconv.conv2d_grad_weight(gy, x, *args)
    ref = torch.nn.grad.conv2d_weight(x.double(), (C, 1, R, S), gy.double(), st, pd, dl, C)
    assert ours.dtype == torch.bfloat16
    bound = 2.0**-8 * ref.abs() + 1e-5 * (ref.abs().max().item() + 1)
    assert ((ours.double() - ref).abs() <= bound).all()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(torch.ops.torchconv.conv2d_grad_weight(gy, x, *args), ours)
    finally:
        torch.set_num_threads(threads)
    x[N - 1, C - 1, H // 2, W // 2] = float("nan")
    ours = torch.ops.torchconv.conv2d_grad_weight(gy, x, *args)
    ref = torch.nn.grad.conv2d_weight(x.double(), (C, 1, R, S), gy.double(), st, pd, dl, C)
    assert torch.equal(ours.isnan(), ref.isnan())


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [  # N, C, H, W, R, S, stride, padding, dilation
    (2, 40, 13, 30, 3, 3, 1, 1, 1),           # stride 1: one phase
    (2, 24, 14, 15, 3, 3, 2, 1, 1),           # MBv2 dw s2-like: 4 phases, odd width
    (1, 16, 9, 21, 5, 3, 2, (2, 1), (1, 2)),  # asymmetric stride / padding / dilation
    (2, 7, 5, 5, 2, 2, 3, 0, 1),              # phases no tap reaches, < 16 channels
    (1, 16, 6, 7, 3, 3, 1, 3, 1),             # padding past the window: grad_output sliced
])
def test_bfloat16_depthwise_grad_input(isa, layout, case):
    """bfloat16 depthwise input gradient (channels_last: the depthwise forward kernel per phase
    of grad_input with the rotated taps where the CPU has AVX-512 BF16): one rounding of the
    float64 result, NaN propagated."""
    N, C, H, W, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(10)
    w = (torch.randn(C, 1, R, S, generator=gen) / math.sqrt(R * S)).bfloat16()
    shape = F.conv2d(torch.empty(N, C, H, W), w.float(), None, st, pd, dl, C).shape
    gy = torch.randn(shape, generator=gen).bfloat16()
    if layout == "cl":
        gy = gy.contiguous(memory_format=torch.channels_last)
    gy[0, C - 1, 0, 0] = float("nan")
    args = ([N, C, H, W], pair(st), pair(pd), pair(dl), C)
    ours = torch.ops.torchconv.conv2d_grad_input(gy, w, *args)
    ref = torch.nn.grad.conv2d_input((N, C, H, W), w.double(), gy.double(), st, pd, dl, C)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours.isnan(), ref.isnan())
    finite = ref.isfinite()
    bound = 2.0**-8 * ref.abs() + 1e-5 * (ref[finite].abs().max().item() + 1)
    assert ((ours.double() - ref).abs() <= bound)[finite].all()


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [c for c in BF16_CASES if c[8] != "same"] + [
    (2, 9, 8, 7, 24, 5, 3, 1, (4, 2), 1),   # padding d*(R-1): no padding of grad_output
    (1, 20, 6, 6, 12, 3, 3, 1, 0, 2),       # dilated, unpadded: 2*(3-1) in front
    (2, 16, 14, 14, 24, 3, 3, 2, 1, 1),     # stride 2 (R50 3x3 s2-like): 4 phases
    (2, 16, 9, 8, 10, 2, 2, 3, 0, 1),       # phases that no tap reaches (zero)
    (1, 16, 6, 7, 12, 3, 3, 1, 3, 1),       # padding past the window: grad_output sliced
    (2, 17, 11, 10, 14, 5, 3, (2, 3), (2, 1), (3, 2)),  # strides, dilations, padding per axis
])
def test_bfloat16_grad_input(isa, layout, case):
    """bfloat16 input gradient (one group, >= 16 input channels: the forward kernel over
    grad_output with the rotated weights, strided ones per phase of grad_input, where the CPU
    has AVX-512 BF16; else widened): one rounding of the float64 result."""
    N, C, H, W, K, R, S, st, pd, dl = case
    gen = torch.Generator().manual_seed(7)
    w = (torch.randn(K, C, R, S, generator=gen) / math.sqrt(K * R * S)).bfloat16()
    x = torch.empty(N, C, H, W)
    gy = torch.randn(F.conv2d(x, w.float(), None, st, pd, dl).shape, generator=gen).bfloat16()
    if layout == "cl":
        w, gy = (t.contiguous(memory_format=torch.channels_last) for t in (w, gy))
    ours = torch.ops.torchconv.conv2d_grad_input(gy, w, [N, C, H, W], pair(st), pair(pd),
                                                 pair(dl), 1)
    ref = torch.nn.grad.conv2d_input((N, C, H, W), w.double(), gy.double(), st, pd, dl)
    assert ours.dtype == torch.bfloat16
    bound = 2.0**-8 * ref.abs() + 1e-5 * (ref.abs().max().item() + 1)
    assert ((ours.double() - ref).abs() <= bound).all()
    gy[0, K - 1, 0, 0] = float("nan")
    ours = torch.ops.torchconv.conv2d_grad_input(gy, w, [N, C, H, W], pair(st), pair(pd),
                                                 pair(dl), 1)
    ref = torch.nn.grad.conv2d_input((N, C, H, W), w.double(), gy.double(), st, pd, dl)
    assert torch.equal(ours.isnan(), ref.isnan())


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128],
                         ids=["complex64", "complex128"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("case", [(2, 6, 9, 11, 10, 3, 3, 2, 1, 1, 1),
                                  (1, 8, 10, 10, 8, 3, 3, 1, 1, 1, 8),
                                  (1, 4, 7, 8, 6, 1, 1, 1, 0, 1, 2)])
def test_complex_on_real_kernels(isa, layout, case, dtype):
    # three real products (Gauss), as native: complex64 no less accurate than F.conv2d's own
    # complex64; complex128 within 1e-12 of F.conv2d's complex128
    N, C, H, W, K, R, S, st, pd, dl, G = case
    gen = torch.Generator().manual_seed(7)
    def crandn(*shape):
        return torch.complex(torch.randn(*shape, generator=gen),
                             torch.randn(*shape, generator=gen)).to(dtype)
    x, w, b = crandn(N, C, H, W), crandn(K, C // G, R, S), crandn(K)
    gy = crandn(*F.conv2d(x, w, None, st, pd, dl, G).shape)
    if layout == "cl":
        x, w, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, gy))
    # the ops are bilinear without conjugation; autograd's adjoints conjugate the other
    # operand (and these conjugate views exercise the conj-bit handling)
    y = run_ops(x, w, b, gy, st, pd, dl, G)[0]
    _, gi, _ = run_ops(x, w.conj(), b, gy, st, pd, dl, G)
    _, _, gw = run_ops(x.conj(), w, b, gy, st, pd, dl, G)
    refs = reference(x, w, b, gy, st, pd, dl, G, torch.complex128)
    nats = reference(x, w, b, gy, st, pd, dl, G, torch.complex64)
    for o, r, n in zip((y, gi, gw), refs, nats):
        assert o.dtype == dtype
        scale = r.abs().max().item()
        err = (o.to(torch.complex128) - r).abs().max().item() / scale
        if dtype == torch.complex128:
            assert err <= 1e-12, err
            continue
        err_native = (n.to(torch.complex128) - r).abs().max().item() / scale
        assert err <= max(4 * err_native, 2e-6), (err, err_native)


# Packed weights are kept between calls (WeightCache in csrc/cpu/fast_paths.cpp): a result must
# follow every change of the weights, and equal, bit for bit, what packing afresh gives.
# (kind, weight size, stride, dtype, groups): Winograd (3x3 over >= 32 tiles), Winograd of 3x3
# sub-kernels (5x5), direct 4x4, a stride-2 input gradient (per-phase packs), float64 direct,
# depthwise (its input gradient keeps rotated taps per phase).
PACK_CASES = [("winograd", 3, 1, torch.float32, 1), ("winograd_nested", 5, 1, torch.float32, 1),
              ("direct", 4, 1, torch.float32, 1), ("phases", 3, 2, torch.float32, 1),
              ("float64", 3, 1, torch.float64, 1), ("depthwise", 3, 1, torch.float32, 16),
              ("depthwise_phases", 3, 2, torch.float32, 16)]


def _packed_results(x, w, gy, R, stride, groups=1):
    pad = [R // 2, R // 2]
    y = ops.conv2d(x, w, None, [stride, stride], pad, [1, 1], groups)
    gi = ops.conv2d_grad_input(gy, w, list(x.shape), [stride, stride], pad, [1, 1], groups)
    return y, gi


def _check_packed(x, w, gy, R, stride, groups=1):
    y, gi = _packed_results(x, w, gy, R, stride, groups)
    xr, wr = x.double().requires_grad_(), w.double()
    y64 = F.conv2d(xr, wr, None, stride, R // 2, 1, groups)
    (gi64,) = torch.autograd.grad(y64, xr, gy.double())
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y.double(), y64.detach(), **tol)
    torch.testing.assert_close(gi.double(), gi64, **tol)
    return y, gi


def test_winograd_packings_per_stride(isa):
    """One 3x3 weight through the stride-1 and the stride-2 Winograd forms in turn: each form
    keeps its own transformed weights (16 and 25 values per 3x3 kernel)."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 16, 14, 14, generator=gen)  # 98 tiles at stride 1, 32 at stride 2
    w = torch.randn(16, 16, 3, 3, generator=gen)
    for stride in (1, 2, 1, 2):
        y = ops.conv2d(x, w, None, [stride, stride], [1, 1], [1, 1], 1)
        y64 = F.conv2d(x.double(), w.double(), None, stride, 1)
        torch.testing.assert_close(y.double(), y64, rtol=1e-4, atol=1e-4)
    # the input gradients: rotated taps, 16 (stride 1) and 25 (stride 2, 2 x 4 x 4 tiles of
    # a 2 x 16 x 32 x 32 grad_input) values per 3x3 kernel
    x = torch.randn(2, 16, 32, 32, generator=gen)
    for stride in (1, 2, 1, 2):
        xr = x.double().requires_grad_()
        y64 = F.conv2d(xr, w.double(), None, stride, 1)
        gy = torch.randn(y64.shape, generator=gen)
        gi = ops.conv2d_grad_input(gy, w, list(x.shape), [stride, stride], [1, 1], [1, 1], 1)
        (gi64,) = torch.autograd.grad(y64, xr, gy.double())
        torch.testing.assert_close(gi.double(), gi64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind,R,stride,dtype,groups", PACK_CASES,
                         ids=[c[0] for c in PACK_CASES])
def test_packed_weights_follow_the_weights(isa, kind, R, stride, dtype, groups):
    gen = torch.Generator().manual_seed(11)
    cpg = 16 // groups
    x = torch.randn(2, 16, 14, 14, generator=gen, dtype=dtype)
    w = torch.randn(16, cpg, R, R, generator=gen, dtype=dtype)
    y_shape = F.conv2d(x, w, None, stride, R // 2, 1, groups).shape
    gy = torch.randn(y_shape, generator=gen, dtype=dtype)
    args = (R, stride, groups)
    first = _check_packed(x, w, gy, *args)
    again = _packed_results(x, w, gy, *args)  # served from the kept packing
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    with torch.no_grad():
        w.mul_(-0.5)  # in place: the version counter moves
    _check_packed(x, w, gy, *args)
    w.data.add_(0.25)  # through .data: the version counter does not move, the values do
    _check_packed(x, w, gy, *args)
    w2 = w.detach().clone().contiguous(memory_format=torch.channels_last)  # same values, new
    for a, b in zip(_packed_results(x, w, gy, *args), _packed_results(x, w2, gy, *args)):
        assert torch.equal(a, b)
    # two views of one storage at different offsets
    both = torch.randn(32, cpg, R, R, generator=gen, dtype=dtype)
    _check_packed(x, both[:16], gy, *args)
    _check_packed(x, both[16:], gy, *args)
    # freed weights: a new tensor may get the same memory, never the old packing
    for _ in range(3):
        _check_packed(x, torch.randn(16, cpg, R, R, generator=gen, dtype=dtype), gy, *args)


def test_depthwise_grad_input_packs_per_geometry(isa):
    """One depthwise weight through input gradients of other paddings and strides, in turns:
    each finds the taps its own phases select (kept per geometry), never another's."""
    gen = torch.Generator().manual_seed(19)
    w = torch.randn(24, 1, 3, 3, generator=gen)
    for stride, pad in ((1, 1), (1, 0), (2, 1), (1, 1), (2, 0), (1, 0)):
        x = torch.randn(2, 24, 11, 12, generator=gen)
        gy = torch.randn(F.conv2d(x, w, None, stride, pad, 1, 24).shape, generator=gen)
        gi = ops.conv2d_grad_input(gy, w, list(x.shape), [stride, stride], [pad, pad], [1, 1], 24)
        xr = x.double().requires_grad_()
        (gi64,) = torch.autograd.grad(F.conv2d(xr, w.double(), None, stride, pad, 1, 24), xr,
                                      gy.double())
        torch.testing.assert_close(gi.double(), gi64, rtol=1e-5, atol=1e-5)


def test_packed_weights_per_output_layout(isa):
    """An RGB-stem-like weight (64 x 3 x 7 x 7) is packed in blocks of 64 output channels for a
    channels_last output and of 32 for an NCHW one (see use_wide): both packings are kept and
    each call finds its own, whatever the order."""
    gen = torch.Generator().manual_seed(17)
    w = torch.randn(64, 3, 7, 7, generator=gen)
    x = torch.randn(2, 3, 20, 22, generator=gen)
    for layout in ("nchw", "cl", "nchw", "cl"):
        xi = x.contiguous(memory_format=torch.channels_last) if layout == "cl" else x
        with torch.no_grad():
            ours = torchconv.functional.conv2d(xi, w, None, 2, 3)
            ref = F.conv2d(xi.double(), w.double(), None, 2, 3)
        assert (ours.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item(), layout


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_packed_weights_see_partial_data_updates(isa, layout):
    """Updates through `.data` (no version bump) of a few channels or one tap are seen."""
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1, 64, 8, 8, generator=gen)
    w = torch.randn(128, 64, 3, 3, generator=gen)
    if layout == "cl":
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    updates = [lambda d: d[1::2].zero_(),          # every other output channel
               lambda d: d[:, 37].mul_(3.0),        # one input channel
               lambda d: d[:, :, 2, 0].add_(1.0),   # one tap
               lambda d: d[101].neg_()]             # one output channel
    torchconv.functional.conv2d(x, w, None, 1, 1)  # packs and keeps the weights
    for update in updates:
        update(w.data)
        ours = torchconv.functional.conv2d(x, w, None, 1, 1)
        torch.testing.assert_close(ours, F.conv2d(x, w, None, 1, 1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_kept_depthwise_packing_follows_the_weights(isa, layout):
    """The channel-vectorised depthwise kernel's kept weight packing (7 x 7 images: that kernel
    in both layouts where a row fills less than half a vector) sees in-place and `.data`
    updates."""
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(2, 40, 7, 7, generator=gen)
    w = torch.randn(40, 1, 3, 3, generator=gen)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)

    def check():
        ours = torchconv.functional.conv2d(x, w, None, 1, 1, 1, 40)
        torch.testing.assert_close(ours, F.conv2d(x, w, None, 1, 1, 1, 40), rtol=1e-5,
                                   atol=1e-5)

    check()
    check()  # from the kept packing
    with torch.no_grad():
        w.mul_(-0.5)  # version bump
    check()
    w.data[7].zero_()  # no version bump: one channel
    check()
    w.data[:, :, 1, 2].add_(1.0)  # one tap of every channel
    check()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kept_float32_copies_of_half_weights_see_updates(isa, dtype):
    """float16 / bfloat16 weights are widened once and kept (with the packings made from the
    copy): in-place updates (version bump) and `.data` updates are seen, in the forward and the
    input gradient (Winograd and direct packings)."""
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(2, 32, 9, 9, generator=gen).to(dtype)
    gy = torch.randn(2, 48, 9, 9, generator=gen).to(dtype)
    w = (torch.randn(48, 32, 3, 3, generator=gen) / 17).to(dtype)
    updates = [lambda t: t.mul_(2.0),                          # through no_grad: version bump
               lambda t: t.data[1::2].zero_(),                 # .data: no version bump
               lambda t: t.data[:, :, 2, 0].add_(0.5)]
    winograd_was = _C.cpu_winograd()
    for step in range(len(updates) + 1):
        for winograd in (True, False):
            _C.set_cpu_winograd(winograd)
            try:
                ours = torchconv.functional.conv2d(x, w, None, 1, 1)
                ours_gi = torch.ops.torchconv.conv2d_grad_input(gy, w, list(x.shape), [1, 1],
                                                                [1, 1], [1, 1], 1)
            finally:
                _C.set_cpu_winograd(winograd_was)
            ref = F.conv2d(x.double(), w.double(), None, 1, 1)
            ref_gi = torch.nn.grad.conv2d_input(x.shape, w.double(), gy.double(), 1, 1)
            for got, want in ((ours, ref), (ours_gi, ref_gi)):
                assert got.dtype == dtype
                scale = want.abs().max().item()
                assert (got.double() - want).abs().max().item() <= 1e-2 * scale
        if step < len(updates):
            with torch.no_grad():
                updates[step](w)


def test_packed_weights_without_the_cache_are_identical(tmp_path):
    """TORCHCONV_CPU_WEIGHT_CACHE_MB=0 (no kept packings) gives bitwise the same results."""
    import subprocess
    import sys
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 32, 12, 12, generator=gen)
    w = torch.randn(32, 32, 3, 3, generator=gen)
    torch.save((x, w), tmp_path / "in.pt")
    script = (
        "import sys, torch, torchconv\n"
        "x, w = torch.load(sys.argv[1])\n"
        "ys = [torch.ops.torchconv.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)"
        " for _ in range(2)]\n"
        "torch.save(ys, sys.argv[2])\n")
    for mb in ("0", "256"):
        env = dict(os.environ, TORCHCONV_CPU_WEIGHT_CACHE_MB=mb)
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.pt"),
                        str(tmp_path / f"out{mb}.pt")], check=True, env=env)
    uncached, cached = torch.load(tmp_path / "out0.pt"), torch.load(tmp_path / "out256.pt")
    for a, b in zip(uncached + cached, uncached[:1] * 4):
        assert torch.equal(a, b)


def test_packed_weights_from_many_threads(isa):
    """Calls from several threads at once, each with its own weights (and shared ones), find
    their own packings."""
    from concurrent.futures import ThreadPoolExecutor
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1, 16, 12, 12, generator=gen)
    weights = [torch.randn(16, 16, 3, 3, generator=gen) for _ in range(6)]
    expected = [ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1) for w in weights]

    def run(i):
        return [torch.equal(ops.conv2d(x, weights[(i + j) % 6], None, [1, 1], [1, 1], [1, 1], 1),
                            expected[(i + j) % 6]) for j in range(12)]
    with ThreadPoolExecutor(4) as pool:
        assert all(all(r) for r in pool.map(run, range(8)))


def test_isa_control():
    old = _C.cpu_isa()
    try:
        assert old in _C.available_cpu_isas()
        for name in _C.available_cpu_isas():
            _C.set_cpu_isa(name)
            assert _C.cpu_isa() == name
        with pytest.raises(ValueError):
            _C.set_cpu_isa("sse9")
        if "avx512-emulated" not in _C.available_cpu_isas():  # a build option (setup.py)
            with pytest.raises(ValueError, match="TORCHCONV_AVX512_EMULATED=1"):
                _C.set_cpu_isa("avx512-emulated")
        x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
        _C.set_cpu_isa("generic")
        y = ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
        torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1), rtol=1e-5, atol=1e-5)
    finally:
        _C.set_cpu_isa(old)


def test_fma_peak_positive():
    assert _C.fma_peak_gflops(0.01) > 0
    assert _C.fma_peak_gflops(0.01, float64=True) > 0
