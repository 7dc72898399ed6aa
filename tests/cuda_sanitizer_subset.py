"""A small, representative run of every CUDA kernel family, for compute-sanitizer.

    compute-sanitizer --tool memcheck  --error-exitcode 1 python tests/cuda_sanitizer_subset.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python tests/cuda_sanitizer_subset.py

Not a pytest module (the parity tests live in test_cuda.py): it calls only torchconv's ops, so
the sanitizer reports concern our kernels, and checks each result against a float64 CPU
reference so a run that is clean but wrong still fails. Shapes are small because the
sanitizer slows kernels down by orders of magnitude; each case still spans several thread
blocks, tile tails and (for the weight gradient) several split-K workspace slices.
"""

import sys

import torch
import torch.nn.functional as F

import torchconv  # noqa: F401  (registers the ops)

ops = torch.ops.torchconv

# (name, dtype, TF32, channels_last, N, C, H, W, K, (R, S), stride, padding, dilation, groups)
CASES = [
    ("simt fp32 grouped strided", torch.float32, False, False, 2, 12, 19, 17, 18, (3, 3), (2, 1),
     (1, 1), (1, 2), 3),
    ("tensor cores fp16 nhwc", torch.float16, False, True, 2, 40, 14, 13, 72, (3, 3), 1, (1, 1),
     1, 1),
    ("tensor cores bf16 stride 2", torch.bfloat16, False, False, 2, 32, 15, 15, 48, (3, 3), 2,
     (1, 1), 1, 1),
    ("tensor cores tf32 1x1", torch.float32, True, True, 2, 64, 9, 11, 80, (1, 1), 1, (0, 0), 1,
     1),
    ("simt fp64 5x3 dilated", torch.float64, False, False, 1, 6, 16, 14, 10, (5, 3), 1, (2, 1),
     (2, 1), 2),
    ("complex64", torch.complex64, False, False, 1, 4, 9, 10, 6, (3, 3), 1, (1, 1), 1, 1),
    ("depthwise fp32", torch.float32, False, False, 2, 16, 20, 21, 16, (3, 3), 1, (1, 1), 1, 16),
    ("depthwise fp16 nhwc x2 s2", torch.float16, False, True, 2, 8, 18, 17, 16, (5, 5), 2,
     (2, 2), 1, 8),
    ("long weight-gradient reduction", torch.float32, False, True, 8, 8, 40, 40, 16, (3, 3), 1,
     (1, 1), 1, 1),
    ("long weight-gradient reduction fp16", torch.float16, False, True, 8, 16, 40, 40, 16,
     (3, 3), 1, (1, 1), 1, 1),
]

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2,
       torch.complex64: 1e-5}


def check(name, got, want, tol):
    got = got.detach().cpu().to(want.dtype)
    scale = max(want.abs().max().item(), 1e-6)
    err = (got - want).abs().max().item()
    ok = err <= tol * scale and bool(torch.isfinite(got).all())
    print(f"  {name:<12} max error {err:.2e} (scale {scale:.2e}) {'ok' if ok else 'FAIL'}")
    return ok


def runs():
    """Every case; the half-precision ones once per tensor-core tier (CUTLASS and wmma)."""
    for case in CASES:
        if case[1] in (torch.float16, torch.bfloat16) and torchconv._C.cutlass_built():
            yield case, True
            yield case, False
        else:
            yield case, torchconv._C.cutlass_built()


def main():
    failures = 0
    gen = torch.Generator().manual_seed(0)
    for (name, dtype, tf32, cl, N, C, H, W, K, (R, S), stride, padding, dilation,
         groups), cutlass in runs():
        if torchconv._C.cutlass_built():
            torchconv._C.set_cuda_cutlass(cutlass)
        torch.backends.cudnn.allow_tf32 = tf32
        tol = 1e-2 if tf32 else TOL[dtype]
        wide = torch.complex128 if dtype.is_complex else torch.float64
        x64 = torch.randn(N, C, H, W, dtype=wide, generator=gen)
        w64 = torch.randn(K, C // groups, R, S, dtype=wide, generator=gen)
        b64 = torch.randn(K, dtype=wide, generator=gen)
        # operands exactly representable in `dtype`, so the reference sees the same inputs
        x64, w64, b64 = (t.to(dtype).to(wide) for t in (x64, w64, b64))
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = x64.to("cuda", dtype).contiguous(memory_format=fmt)
        w = w64.to("cuda", dtype).contiguous(memory_format=fmt)
        b = b64.to("cuda", dtype)
        st, pd, dl = ([v, v] if isinstance(v, int) else list(v) for v in (stride, padding,
                                                                          dilation))
        print(f"{name}: {dtype}, {'NHWC' if cl else 'NCHW'}, CUTLASS tier {'on' if cutlass else 'off'}")
        out = ops.conv2d(x, w, b, st, pd, dl, groups)
        ref = F.conv2d(x64, w64, b64, st, pd, dl, groups)
        failures += not check("output", out, ref, tol)
        g64 = torch.randn(ref.shape, dtype=wide, generator=gen).to(dtype).to(wide)
        gy = g64.to("cuda", dtype).contiguous(memory_format=fmt)
        xr, wr = x64.clone().requires_grad_(True), w64.clone().requires_grad_(True)
        rx, rw = torch.autograd.grad(F.conv2d(xr, wr, None, st, pd, dl, groups), (xr, wr), g64)
        # autograd's convention for complex operands: the vjp uses the other operand conjugated
        gx = ops.conv2d_grad_input(gy, w.conj(), list(x.shape), st, pd, dl, groups)
        gw = ops.conv2d_grad_weight(gy, x.conj(), list(w.shape), st, pd, dl, groups)
        failures += not check("grad_input", gx, rx, tol)
        failures += not check("grad_weight", gw, rw, tol)
        torch.cuda.synchronize()
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
