"""CUDA backend of torchconv: parity with F.conv2d (cuDNN) and with torchconv's CPU kernels.

Every test but one is skipped without a CUDA device (or when torchconv was built without its
CUDA kernels). test_kernel_index_logic_on_cpu needs only nvcc: it compiles
csrc/cuda/emulation/check_kernels_on_cpu.cpp, which runs the kernels' index logic on the CPU.

Tolerances are relative to the largest magnitude of the expected tensor:
  float64 / complex128   1e-10  (exact up to summation order)
  float32 / complex64    1e-5   (TF32 off: the SIMT kernel, fp32 FMA)
  float32 with TF32      1e-2   (both sides round operands to TF32's 10-bit mantissa)
  float16                1e-2, bfloat16 2e-2 (fp32 accumulation on both sides; output rounding)
"""

import contextlib
import os
import pathlib
import subprocess

import pytest
import torch
import torch.nn.functional as F

import torchconv
from torchconv.functional import conv2d

CUDA = torch.cuda.is_available() and torchconv._C.cuda_built()


def needs_cuda(test):
    test = pytest.mark.skipif(
        not CUDA, reason="needs a CUDA device and torchconv built with its CUDA kernels"
    )(test)
    return pytest.mark.cuda(test)


DEVICE = "cuda"


def sm80():
    return CUDA and torch.cuda.get_device_capability()[0] >= 8


@contextlib.contextmanager
def tf32(enabled: bool):
    """Sets TF32 for cuDNN convolutions (what F.conv2d and torchconv both honour)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


# (name, dtype, TF32 allowed, relative tolerance)
DTYPES = [
    ("float64", torch.float64, False, 1e-10),
    ("float32", torch.float32, False, 1e-5),
    ("tf32", torch.float32, True, 1e-2),
    ("float16", torch.float16, False, 1e-2),
    ("bfloat16", torch.bfloat16, False, 2e-2),
    ("complex64", torch.complex64, False, 1e-5),
    ("complex128", torch.complex128, False, 1e-10),
]
DTYPE_IDS = [d[0] for d in DTYPES]


def tolerance_of(dtype, allow_tf32=False):
    for _, dt, t, tol in DTYPES:
        if dt == dtype and t == allow_tf32:
            return tol
    raise KeyError(dtype)


def assert_close(actual, expected, tol, what=""):
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    wide = torch.complex128 if actual.is_complex() else torch.float64
    a, e = actual.detach().to(wide), expected.detach().to(wide)
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    scale = max(e.abs().max().item(), 1e-6) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3e} > {tol:.1e} * {scale:.3e}"


def assert_same_layout(actual, expected, what=""):
    """Equal strides on every dimension where strides matter (size > 1)."""
    assert actual.shape == expected.shape, what
    for size, a, e in zip(actual.shape, actual.stride(), expected.stride()):
        if size > 1:
            assert a == e, f"{what}: strides {actual.stride()} != {expected.stride()}"


def make(shape, dtype, seed, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    if dtype.is_complex:
        t = torch.complex(torch.randn(shape, generator=g, dtype=real),
                          torch.randn(shape, generator=g, dtype=real))
    else:
        t = torch.randn(shape, generator=g, dtype=real)
    return t.to(device=device, dtype=dtype)


# (N, C, H, W, K, (R, S), stride, padding, dilation, groups)
CONFIGS = {
    "3x3": (2, 3, 17, 19, 8, (3, 3), 1, 1, 1, 1),
    "stride2": (2, 16, 15, 13, 24, (3, 3), 2, 1, 1, 1),
    "groups_asym": (1, 12, 20, 18, 18, (5, 3), (2, 3), (2, 0), (1, 2), 3),
    "depthwise": (3, 8, 11, 11, 8, (3, 3), 1, 1, 1, 8),
    "depthwise_x3_strided": (2, 8, 12, 10, 24, (5, 5), 2, 2, 2, 8),
    "same_even": (2, 6, 16, 15, 10, (4, 2), 1, "same", (1, 2), 2),
    "patchify": (2, 5, 16, 16, 7, (4, 4), 4, 0, 1, 1),
    "1x1_stride3": (2, 4, 13, 9, 6, (1, 1), 3, 0, 1, 1),
    "wide_valid": (1, 70, 9, 9, 130, (3, 3), 1, "valid", 1, 1),
    "stride_gt_kernel_dil": (2, 6, 14, 17, 9, (2, 3), (3, 2), (1, 2), (3, 2), 3),
    # groups of 4 channels (direct kernels, as ResNeXt) and of 20 / 24 (implicit GEMM)
    "groups_resnext": (2, 32, 10, 9, 32, (3, 3), 1, 1, 1, 8),
    "groups_wide": (2, 40, 9, 10, 48, (3, 3), (1, 2), 1, 1, 2),
    # channel counts that are multiples of 8: the CUTLASS tier's problems (Half / BFloat16)
    "aligned_3x3": (2, 32, 14, 13, 40, (3, 3), 1, 1, 1, 1),
    "aligned_5x5_s2": (2, 24, 17, 19, 32, (5, 5), 2, 2, 1, 1),
    "aligned_1x1_s2": (2, 16, 15, 13, 24, (1, 1), 2, 0, 1, 1),
    "aligned_same_even_dil": (2, 16, 12, 11, 16, (4, 2), 1, "same", (1, 2), 1),
}
ALIGNED = [name for name in CONFIGS if name.startswith("aligned")] + ["stride2"]


def conv_inputs(cfg, dtype, channels_last=False, seed=0, bias=True):
    N, C, H, W, K, (R, S), stride, padding, dilation, groups = cfg
    x = make((N, C, H, W), dtype, seed)
    w = make((K, C // groups, R, S), dtype, seed + 1)
    b = make((K,), dtype, seed + 2) if bias else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


# ---------------------------------------------------------------------------------------------
# forward and backward parity with F.conv2d, every dtype, both layouts


@needs_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype_spec", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_matches_f_conv2d(config, dtype_spec, channels_last):
    _, dtype, allow_tf32, tol = dtype_spec
    if dtype == torch.bfloat16 and not sm80():
        pytest.skip("cuDNN bfloat16 convolutions need sm_80+")
    x, w, b, args = conv_inputs(CONFIGS[config], dtype, channels_last)
    x.requires_grad_(True)
    w.requires_grad_(True)
    b.requires_grad_(True)
    with tf32(allow_tf32):
        out = conv2d(x, w, b, **args)
        with torch.no_grad():
            ref = F.conv2d(x, w, b, **args)
        assert_close(out, ref, tol, "output")
        assert_same_layout(out, ref, "output")

        grad = make(out.shape, dtype, 7)
        if channels_last:
            grad = grad.contiguous(memory_format=torch.channels_last)
        got = torch.autograd.grad(out, (x, w, b), grad)
        ref_out = F.conv2d(x, w, b, **args)
        want = torch.autograd.grad(ref_out, (x, w, b), grad)
    for name, g_, r_ in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close(g_, r_, tol, name)
        if not dtype.is_complex:  # (cuDNN computes complex convolutions as real ones)
            assert_same_layout(g_, r_, name)


@needs_cuda
@pytest.mark.parametrize("dtype_spec", DTYPES, ids=DTYPE_IDS)
def test_unbatched(dtype_spec):
    _, dtype, allow_tf32, tol = dtype_spec
    if dtype == torch.bfloat16 and not sm80():
        pytest.skip("cuDNN bfloat16 convolutions need sm_80+")
    x = make((6, 11, 12), dtype, 0).requires_grad_(True)
    w = make((4, 3, 3, 2), dtype, 1).requires_grad_(True)
    with tf32(allow_tf32):
        out = conv2d(x, w, None, stride=(2, 1), padding="valid", groups=2)
        ref = F.conv2d(x, w, None, stride=(2, 1), padding="valid", groups=2)
        assert out.shape == ref.shape and out.dim() == 3
        assert_close(out, ref, tol, "output")
        grad = make(out.shape, dtype, 2)
        got = torch.autograd.grad(out, (x, w), grad)
        want = torch.autograd.grad(ref, (x, w), grad)
    for name, g_, r_ in zip(("grad_input", "grad_weight"), got, want):
        assert_close(g_, r_, tol, name)


@needs_cuda
@pytest.mark.parametrize("layouts", [(False, True), (True, False)], ids=["x_nchw_w_nhwc",
                                                                       "x_nhwc_w_nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_mixed_layouts(layouts, dtype):
    x, w, b, args = conv_inputs(CONFIGS["groups_asym"], dtype)
    if layouts[0]:
        x = x.contiguous(memory_format=torch.channels_last)
    if layouts[1]:
        w = w.contiguous(memory_format=torch.channels_last)
    with tf32(False):
        out = conv2d(x, w, b, **args)
        ref = F.conv2d(x, w, b, **args)
    assert_same_layout(out, ref, "output")
    assert_close(out, ref, tolerance_of(dtype), "output")


@needs_cuda
def test_non_dense_and_conjugate_inputs():
    # Sliced / expanded operands and conjugate views reach the kernels as they are.
    base = make((2, 6, 20, 30), torch.complex64, 0)
    x = base[:, ::2, 1:18, ::3]  # non-dense
    w = make((4, 1, 3, 3), torch.complex64, 1).expand(4, 3, 3, 3)  # stride-0 dimension
    with tf32(False):
        for xx, ww in [(x, w), (x.conj(), w), (x, w.conj()), (x.conj(), w.conj())]:
            out = conv2d(xx, ww, None, padding=1)
            ref = F.conv2d(xx.resolve_conj(), ww.resolve_conj().contiguous(), None, padding=1)
            assert_close(out, ref, 1e-5, "conj/non-dense")
        # depthwise path (direct kernels) on a non-dense input
        xd = make((2, 8, 20, 30), torch.float32, 3)[:, :, ::2, 1::2]
        wd = make((8, 1, 3, 3), torch.float32, 4)
        assert_close(conv2d(xd, wd, None, padding=1, groups=8),
                     F.conv2d(xd, wd, None, padding=1, groups=8), 1e-5, "depthwise non-dense")


@needs_cuda
def test_empty_batch():
    x = torch.zeros(0, 4, 8, 8, device=DEVICE, requires_grad=True)
    w = make((6, 4, 3, 3), torch.float32, 0).requires_grad_(True)
    out = conv2d(x, w, None, padding=1)
    assert out.shape == (0, 6, 8, 8)
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape
    assert (w.grad == 0).all()


@needs_cuda
def test_integer_dtype_rejected():
    x = torch.ones(1, 2, 5, 5, dtype=torch.int64, device=DEVICE)
    w = torch.ones(3, 2, 3, 3, dtype=torch.int64, device=DEVICE)
    with pytest.raises(RuntimeError):
        conv2d(x, w)


# ---------------------------------------------------------------------------------------------
# the CUTLASS tier (Half / BFloat16, groups == 1, channels multiple of 8) and the wmma kernel it
# stands in front of: both match F.conv2d, and the tier really runs where it applies


@contextlib.contextmanager
def cutlass_tier(enabled: bool):
    old = torchconv._C.cuda_cutlass()
    torchconv._C.set_cuda_cutlass(enabled)
    try:
        yield
    finally:
        torchconv._C.set_cuda_cutlass(old)


CUTLASS = CUDA and torchconv._C.cutlass_built()


@contextlib.contextmanager
def cutlass_padding(enabled: bool):
    old = torchconv._C.cuda_cutlass_padding()
    torchconv._C.set_cuda_cutlass_padding(enabled)
    try:
        yield
    finally:
        torchconv._C.set_cuda_cutlass_padding(old)


TENSOR_CORE_DTYPES = [d for d in DTYPES if d[0] in ("float16", "bfloat16", "tf32")]


@needs_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype_spec", TENSOR_CORE_DTYPES, ids=[d[0] for d in TENSOR_CORE_DTYPES])
@pytest.mark.parametrize("tier", ["cutlass", "cutlass_padded", "wmma"])
@pytest.mark.parametrize("config", ALIGNED + ["3x3", "wide_valid", "1x1_stride3", "patchify"])
def test_tensor_core_tiers_match_f_conv2d(config, tier, dtype_spec, channels_last):
    # cutlass_padded: channel counts that are not multiples of 8 zero-padded into the tier
    if tier != "wmma" and not CUTLASS:
        pytest.skip("torchconv built without the CUTLASS tier")
    if not sm80():
        pytest.skip("tensor-core kernels need sm_80+")
    _, dtype, allow_tf32, tol = dtype_spec
    x, w, b, args = conv_inputs(CONFIGS[config], dtype, channels_last, seed=11)
    with cutlass_tier(tier != "wmma"), cutlass_padding(tier == "cutlass_padded"), tf32(allow_tf32):
        out = conv2d(x, w, b, **args)
        grad = make(out.shape, dtype, 12)
        if channels_last:
            grad = grad.contiguous(memory_format=torch.channels_last)
        gx = torch.ops.torchconv.conv2d_grad_input(grad, w, list(x.shape), *plan_args(x, w, args))
        gw = torch.ops.torchconv.conv2d_grad_weight(grad, x, list(w.shape), *plan_args(x, w, args))
        xr, wr = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
        ref = F.conv2d(xr, wr, b, **args)
        rx, rw = torch.autograd.grad(ref, (xr, wr), grad)
    assert_close(out, ref, tol, "output")
    assert_same_layout(out, ref, "output")
    assert_close(gx, rx, tol, "grad_input")
    assert_close(gw, rw, tol, "grad_weight")


def plan_args(x, w, args):
    """(stride, leading padding, dilation, groups) as the backward ops take them."""
    from torchconv._meta import plan_forward

    def pair(v):
        return [v, v] if isinstance(v, int) else list(v)

    stride, dilation = pair(args["stride"]), pair(args["dilation"])
    padding = args["padding"] if isinstance(args["padding"], str) else pair(args["padding"])
    _, _, leading = plan_forward(x, w, None, stride, padding, dilation, args["groups"])
    return stride, list(leading), dilation, args["groups"]


@pytest.mark.skipif(not torchconv._C.cuda_built(), reason="torchconv built without CUDA kernels")
def test_cutlass_tier_built_when_its_headers_are_installed():
    # (no GPU needed) a CUDA build next to CUTLASS's headers must include the tier
    import importlib.util

    if importlib.util.find_spec("cutlass_library") is None and "CUTLASS_PATH" not in os.environ:
        pytest.skip("CUTLASS headers not installed (pip install --no-deps nvidia-cutlass)")
    assert torchconv._C.cutlass_built()
    assert torchconv._C.cuda_cutlass() == (os.environ.get("TORCHCONV_CUDA_CUTLASS", "1") != "0")


@needs_cuda
@pytest.mark.skipif(not CUTLASS, reason="torchconv built without the CUTLASS tier")
def test_cutlass_tier_runs_where_it_applies():
    # Kernel names from the profiler: the tier is used for an eligible float16 problem (all
    # three ops), not for a grouped one or when switched off.
    def kernels(cfg, enabled):
        x, w, b, args = conv_inputs(cfg, torch.float16, channels_last=True)
        x.requires_grad_(True)
        w.requires_grad_(True)
        with cutlass_tier(enabled), torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            conv2d(x, w, b, **args).sum().backward()
            torch.cuda.synchronize()
        return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]

    eligible = CONFIGS["aligned_5x5_s2"]
    names = kernels(eligible, True)
    with tf32(True):  # float32 as TF32
        x, w, _, args = conv_inputs(eligible, torch.float32, channels_last=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            conv2d(x, w, None, **args)
            torch.cuda.synchronize()
        assert any("cutlass" in e.name for e in prof.events()
                   if e.device_type == torch.autograd.DeviceType.CUDA)
    for piece in ("Conv2dFprop", "Conv2dDgrad", "Conv2dWgrad"):
        assert any("cutlass" in n and piece in n for n in names), (piece, names)
    assert not any("cutlass" in n for n in kernels(eligible, False))
    assert not any("cutlass" in n for n in kernels(CONFIGS["groups_asym"], True))
    # channel counts that are not multiples of 8 (C = 3, K = 8, as in an RGB stem): the wmma
    # kernel, unless channel padding is switched on
    assert not any("cutlass" in n for n in kernels(CONFIGS["3x3"], True))
    with cutlass_padding(True):
        names = kernels(CONFIGS["3x3"], True)
    for piece in ("Conv2dFprop", "Conv2dDgrad", "Conv2dWgrad"):
        assert any("cutlass" in n and piece in n for n in names), (piece, names)


# ---------------------------------------------------------------------------------------------
# TF32: float32 uses tensor cores exactly when torch.backends.cudnn.allow_tf32 is set


@needs_cuda
@pytest.mark.skipif(not sm80(), reason="TF32 needs sm_80+")
def test_float32_honours_allow_tf32():
    x, w, _, args = conv_inputs((4, 64, 16, 16, 64, (3, 3), 1, 1, 1, 1), torch.float32)
    exact = F.conv2d(x.double(), w.double(), None, **args)
    scale = exact.abs().max().item()
    with tf32(False):
        err_fp32 = (conv2d(x, w, None, **args).double() - exact).abs().max().item() / scale
    with tf32(True):
        err_tf32 = (conv2d(x, w, None, **args).double() - exact).abs().max().item() / scale
    assert err_fp32 < 1e-5
    # TF32 keeps 10 mantissa bits: errors of order 1e-4 .. 1e-3 relative, far above fp32's.
    assert 1e-5 < err_tf32 < 1e-2


# ---------------------------------------------------------------------------------------------
# derivatives of every order (float64 / complex128)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize(
    "case",
    [
        dict(shape=(2, 4, 6, 5), w=(6, 2, 3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
             groups=2),
        dict(shape=(2, 3, 5, 6), w=(6, 1, 3, 3), stride=1, padding=1, dilation=1, groups=3),
        dict(shape=(1, 2, 6, 6), w=(3, 2, 2, 3), stride=1, padding="same", dilation=(2, 1),
             groups=1),
    ],
    ids=["grouped_strided", "depthwise", "same_even"],
)
def test_gradcheck_gradgradcheck(case, dtype):
    x = make(case["shape"], dtype, 0).requires_grad_(True)
    w = make(case["w"], dtype, 1).requires_grad_(True)
    b = make((case["w"][0],), dtype, 2).requires_grad_(True)
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}

    def f(x, w, b):
        return conv2d(x, w, b, **kw)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


# ---------------------------------------------------------------------------------------------
# CUDA agrees with torchconv's CPU kernels


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128, torch.float32])
@pytest.mark.parametrize("config", ["groups_asym", "depthwise_x3_strided", "same_even",
                                    "stride_gt_kernel_dil"])
def test_cpu_and_cuda_agree(config, dtype):
    x, w, b, args = conv_inputs(CONFIGS[config], dtype, seed=3)
    tol = 1e-10 if dtype in (torch.float64, torch.complex128) else 1e-5
    with tf32(False):
        outs, grads = [], []
        for device in ("cpu", DEVICE):
            xd, wd, bd = (t.detach().to(device).requires_grad_(True) for t in (x, w, b))
            out = conv2d(xd, wd, bd, **args)
            grad = make(out.shape, dtype, 9, device=device)
            grads.append(torch.autograd.grad(out, (xd, wd, bd), grad))
            outs.append(out.detach())
    assert_close(outs[1].cpu(), outs[0], tol, "output")
    for name, g_cuda, g_cpu in zip(("grad_input", "grad_weight", "grad_bias"), grads[1],
                                   grads[0]):
        assert_close(g_cuda.cpu(), g_cpu, tol, name)


# ---------------------------------------------------------------------------------------------
# determinism: no atomics, fixed split-K order


@needs_cuda
@pytest.mark.parametrize(
    "dtype,allow_tf32",
    [(torch.float32, False), (torch.float32, True), (torch.float16, False),
     (torch.float64, False), (torch.complex64, False)],
    ids=["float32", "tf32", "float16", "float64", "complex64"],
)
@pytest.mark.parametrize("config", [(16, 32, 64, 64, 32, (3, 3), 1, 1, 1, 1),
                                    (16, 32, 64, 64, 32, (3, 3), 2, 1, 1, 32)],
                         ids=["dense", "depthwise"])
def test_bitwise_deterministic(config, dtype, allow_tf32):
    # N*OH*OW = 65536 (16384 strided): the weight gradient is split over many workspace slices.
    x, w, b, args = conv_inputs(config, dtype, channels_last=True, seed=5)
    runs = []
    with tf32(allow_tf32):
        for _ in range(2):
            xr, wr, br = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
            out = conv2d(xr, wr, br, **args)
            grads = torch.autograd.grad(out, (xr, wr, br), torch.ones_like(out))
            runs.append((out.detach(), *grads))
    for name, first, second in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                                   runs[0], runs[1]):
        assert torch.equal(first, second), f"{name} differs between runs"


@needs_cuda
def test_large_weight_gradient_reduction():
    # A long N*OH*OW reduction in float32 and float16 against a float64 reference.
    x, w, _, args = conv_inputs((32, 8, 48, 48, 16, (3, 3), 1, 1, 1, 1), torch.float64, seed=6)
    grad = make((32, 16, 48, 48), torch.float64, 7)
    exact = torch.nn.grad.conv2d_weight(x, w.shape, grad, padding=1)
    with tf32(False):
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2)):
            got = torch.ops.torchconv.conv2d_grad_weight(
                grad.to(dtype), x.to(dtype), list(w.shape), [1, 1], [1, 1], [1, 1], 1)
            assert_close(got.double(), exact, tol, f"grad_weight {dtype}")


# ---------------------------------------------------------------------------------------------
# torch.compile with CUDA graphs, autocast


@needs_cuda
def test_compile_reduce_overhead():
    torch._dynamo.reset()
    x, w, b, args = conv_inputs(CONFIGS["stride2"], torch.float32, channels_last=True)

    def f(x, w, b):
        return torch.relu(conv2d(x, w, b, **args)) * 2

    compiled = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    with tf32(False):
        expected = f(x, w, b)
        for step in range(4):  # warm-up, recording, replays
            xs = x + step
            got = compiled(xs, w, b).clone()
            assert_close(got, f(xs, w, b), 1e-5, f"compiled step {step}")
        assert_same_layout(compiled(x, w, b), expected, "compiled output")


@needs_cuda
def test_compile_training_step():
    torch._dynamo.reset()
    x, w, b, args = conv_inputs(CONFIGS["groups_asym"], torch.float32)

    def loss_fn(x, w, b):
        return (conv2d(x, w, b, **args) ** 2).mean()

    compiled = torch.compile(loss_fn, mode="reduce-overhead", fullgraph=True)
    with tf32(False):
        for _ in range(3):
            leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b)]
            compiled(*leaves).backward()
            ref = [t.detach().clone().requires_grad_(True) for t in (x, w, b)]
            (F.conv2d(*ref, **args) ** 2).mean().backward()
            for got, want in zip(leaves, ref):
                assert_close(got.grad, want.grad, 1e-5, "compiled grad")


@needs_cuda
@pytest.mark.parametrize("autocast_dtype", [torch.float16, torch.bfloat16])
def test_autocast(autocast_dtype):
    if autocast_dtype == torch.bfloat16 and not sm80():
        pytest.skip("bfloat16 needs sm_80+")
    x, w, b, args = conv_inputs(CONFIGS["stride2"], torch.float32)
    x.requires_grad_(True)
    w.requires_grad_(True)
    with torch.autocast("cuda", dtype=autocast_dtype):
        out = conv2d(x, w, b, **args)
        ref = F.conv2d(x, w, b, **args)
    assert out.dtype == ref.dtype == autocast_dtype
    tol = 1e-2 if autocast_dtype == torch.float16 else 2e-2
    assert_close(out, ref, tol, "autocast output")
    gx, gw = torch.autograd.grad(out.float().sum(), (x, w))
    rx, rw = torch.autograd.grad(ref.float().sum(), (x, w))
    assert gx.dtype == gw.dtype == torch.float32
    assert_close(gx, rx, tol, "autocast grad_input")
    assert_close(gw, rw, tol, "autocast grad_weight")


# ---------------------------------------------------------------------------------------------
# 64-bit indexing: tensors of more than 2**31 elements


def free_gib():
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("groups", [1, 2], ids=["gemm", "depthwise"])
def test_int64_indexing(groups):
    if free_gib() < 40:
        pytest.skip("needs about 40 GiB of free GPU memory")
    dtype = torch.float16
    H, W = 32768, 32800  # 2 * H * W = 2_149_580_800 > 2**31 elements per tensor
    x = torch.empty(1, 2, H, W, dtype=dtype, device=DEVICE)
    x.normal_(generator=torch.Generator(DEVICE).manual_seed(0))
    w = make((2, 2 // groups, 3, 3), dtype, 1)
    assert x.numel() > 2**31
    out = conv2d(x, w, None, padding=1, groups=groups)
    # The last rows sit beyond 2**31 elements: compare them with a cropped problem.
    crop = x[:, :, H - 9:, :]
    ref = F.conv2d(crop, w, None, padding=1, groups=groups)[:, :, 1:, :]
    assert_close(out[:, :, H - 8:, :], ref, 1e-2, "output tail")
    assert_close(out[:, :, :8, :], F.conv2d(x[:, :, :9, :], w, None, padding=1,
                                             groups=groups)[:, :, :8, :], 1e-2, "output head")
    del out

    # Gradients with grad_output non-zero only in the last rows.
    grad = torch.zeros_like(x)
    grad[:, :, H - 8:, :] = make((1, 2, 8, W), dtype, 2)
    dx = torch.ops.torchconv.conv2d_grad_input(grad, w, list(x.shape), [1, 1], [1, 1], [1, 1],
                                               groups)
    dw = torch.ops.torchconv.conv2d_grad_weight(grad, x, list(w.shape), [1, 1], [1, 1],
                                                [1, 1], groups)
    crop_x = crop.detach().clone().requires_grad_(True)
    crop_w = w.detach().clone().requires_grad_(True)
    crop_out = F.conv2d(crop_x, crop_w, None, padding=1, groups=groups)
    rx, rw = torch.autograd.grad(crop_out, (crop_x, crop_w), grad[:, :, H - 9:, :])
    assert_close(dx[:, :, H - 9:, :], rx, 1e-2, "grad_input tail")
    assert dx[:, :, : H - 9, :].abs().max().item() == 0
    assert_close(dw, rw, 2e-2, "grad_weight")


# ---------------------------------------------------------------------------------------------
# no GPU needed: the kernels' index logic, run on the CPU (see check_kernels_on_cpu.cpp)

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMULATION_SOURCE = ROOT / "csrc" / "cuda" / "emulation" / "check_kernels_on_cpu.cpp"


def nvcc_path():
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return None
    path = os.path.join(CUDA_HOME, "bin", "nvcc")
    return path if os.path.exists(path) else None


@pytest.mark.skipif(nvcc_path() is None, reason="needs nvcc (CUDA_HOME)")
@pytest.mark.skipif(not EMULATION_SOURCE.exists(), reason="needs the torchconv sources")
def test_kernel_index_logic_on_cpu(tmp_path):
    from torch.utils.cpp_extension import include_paths

    exe = tmp_path / "check_kernels_on_cpu"
    cmd = [nvcc_path(), "-x", "cu", "-std=c++20", "-O1", "--expt-relaxed-constexpr",
           *(f"-I{p}" for p in include_paths()), str(EMULATION_SOURCE), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe), "300"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert "0 failures" in run.stdout
