import pytest
import torch
import torch.nn.functional as F

import torchconv  # noqa: F401  (registers the ops)

# Tolerances per dtype for results compared against a float64 (complex128) reference of the
# same computation: they scale with the accumulation length (see assert_close_to_reference).
EPS = {
    torch.float32: 2.0**-23,
    torch.float64: 2.0**-52,
    torch.float16: 2.0**-10,
    torch.bfloat16: 2.0**-7,
    torch.complex64: 2.0**-23,
    torch.complex128: 2.0**-52,
}


def reference_dtype(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def assert_close_to_reference(actual, reference, dtype, terms, scale=None):
    """`actual` (computed in `dtype`) against a float64 `reference`.

    The bound is the classic one for a sum of `terms` products, plus rounding of the result:
    |err| <= (terms + 2) * eps * max|reference|-ish scale. For half types the inputs themselves
    are exactly representable (tests round inputs first), so only accumulation/rounding matter.
    """
    assert actual.dtype == dtype
    assert actual.shape == reference.shape
    if actual.numel() == 0:
        return
    eps = EPS[dtype]
    if scale is None:
        scale = reference.abs().max().item() + 1.0
    if dtype in (torch.float16, torch.bfloat16):
        # accumulated in float32, rounded once at the end
        bound = 2 * eps * scale + (terms + 2) * EPS[torch.float32] * scale
    else:
        bound = (terms + 2) * eps * scale * 4
    err = (actual.to(reference.dtype) - reference).abs().max().item()
    assert err <= bound, f"max error {err:.3e} exceeds bound {bound:.3e} for {dtype}"


def make(shape, dtype, low=-1.0, high=1.0, generator=None):
    """Random tensor whose values are exact in `dtype` (so references see the same inputs)."""
    t = torch.empty(shape, dtype=reference_dtype(dtype))
    if dtype.is_complex:
        real = torch.rand(shape, dtype=torch.float64, generator=generator) * (high - low) + low
        imag = torch.rand(shape, dtype=torch.float64, generator=generator) * (high - low) + low
        t = torch.complex(real, imag)
    else:
        t.uniform_(low, high, generator=generator)
    return t.to(dtype)


def reference_conv(x, w, b, stride, padding, dilation, groups):
    dt = reference_dtype(x.dtype)
    return F.conv2d(x.to(dt), w.to(dt), None if b is None else b.to(dt), stride, padding,
                    dilation, groups)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_same_layout(actual, expected):
    """Same shape and same strides wherever strides matter (dims of size > 1, non-empty)."""
    assert actual.shape == expected.shape
    if actual.numel() == 0:
        return
    for size, a, e in zip(actual.shape, actual.stride(), expected.stride()):
        if size > 1:
            assert a == e, f"strides {actual.stride()} != {expected.stride()}"
