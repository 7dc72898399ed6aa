"""Derivatives of every order, forward-mode AD, vmap, and torch.library.opcheck."""

import os
import sys

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, jacfwd, jvp, vmap
from torch.utils._python_dispatch import TorchDispatchMode

from torchconv.functional import conv2d

ops = torch.ops.torchconv

# (input shape, weight shape, stride, padding, dilation, groups)
SMALL = [
    ((2, 2, 5, 6), (3, 2, 3, 2), 1, 1, 1, 1),
    ((1, 4, 6, 5), (4, 2, 2, 3), (2, 1), (0, 1), (1, 2), 2),
    ((2, 3, 5, 5), (3, 1, 2, 2), 1, "same", (2, 1), 3),   # asymmetric 'same', depthwise
    ((2, 2, 7, 6), (2, 2, 3, 3), 2, "valid", 1, 1),
    ((2, 5, 5), (2, 2, 3, 3), 1, 1, 1, 1),                 # unbatched
]


def _inputs(case, dtype, bias=True):
    xs, ws, *args = case
    x = torch.randn(xs, dtype=dtype, requires_grad=True)
    w = torch.randn(ws, dtype=dtype, requires_grad=True)
    b = torch.randn(ws[0], dtype=dtype, requires_grad=True) if bias else None
    return x, w, b, args


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=str)
@pytest.mark.parametrize("case", SMALL)
def test_gradcheck_and_gradgradcheck(case, dtype):
    x, w, b, args = _inputs(case, dtype)
    fn = lambda x, w, b: conv2d(x, w, b, *args)  # noqa: E731
    assert gradcheck(fn, (x, w, b), check_batched_grad=True)
    assert gradgradcheck(fn, (x, w, b), check_batched_grad=False)


@pytest.mark.parametrize("case", SMALL[:3])
def test_third_order(case):
    x, w, b, args = _inputs(case, torch.float64)

    def second(x, w, b):
        out = conv2d(x, w, b, *args)
        gx, gw = torch.autograd.grad((out * out).sum(), (x, w), create_graph=True)
        return (gx * gx).sum() + (gw * gw).sum()

    assert gradgradcheck(second, (x, w, b), check_batched_grad=False)


@pytest.mark.parametrize("case", SMALL[:3])
def test_backward_ops_gradcheck_directly(case):
    # the backward ops are differentiable ops in their own right
    xs, ws, stride, padding, dilation, groups = case
    x = torch.randn(xs, dtype=torch.float64)
    w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, w.detach(), None, stride, padding, dilation, groups)
    g = torch.randn_like(out, requires_grad=True)
    pad = [w.shape[2] // 2 * (dilation if isinstance(dilation, int) else dilation[0]), 0]
    if padding != "same":
        return  # exercised through conv2d gradgradcheck above
    dil = [dilation, dilation] if isinstance(dilation, int) else list(dilation)
    pad = [dil[0] * (ws[2] - 1) // 2, dil[1] * (ws[3] - 1) // 2]
    assert gradcheck(lambda g, w: ops.conv2d_grad_input(g, w, list(xs), [1, 1], pad, dil, groups),
                     (g, w))
    xr = x.clone().requires_grad_()
    assert gradcheck(lambda g, x: ops.conv2d_grad_weight(g, x, list(ws), [1, 1], pad, dil, groups),
                     (g, xr))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=str)
@pytest.mark.parametrize("case", SMALL)
def test_forward_mode_gradcheck(case, dtype):
    x, w, b, args = _inputs(case, dtype)
    assert gradcheck(lambda x, w, b: conv2d(x, w, b, *args), (x, w, b), check_forward_ad=True,
                     check_backward_ad=False, check_undefined_grad=False,
                     check_batched_grad=False)


def test_jvp_and_jacfwd_match_native():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    tx, tw, tb = torch.randn_like(x), torch.randn_like(w), torch.randn_like(b)
    ours = jvp(lambda x, w, b: conv2d(x, w, b, padding="same"), (x, w, b), (tx, tw, tb))
    native = jvp(lambda x, w, b: F.conv2d(x, w, b, padding="same"), (x, w, b), (tx, tw, tb))
    torch.testing.assert_close(ours, native)
    jw = jacfwd(lambda w: conv2d(x, w, b, stride=2))(w)
    jw_native = jacfwd(lambda w: F.conv2d(x, w, b, stride=2))(w)
    torch.testing.assert_close(jw, jw_native)


def test_dual_tensors_without_requires_grad_carry_tangents():
    # Eager calls that autograd does not record skip the autograd.Function; tangents of dual
    # tensors (which need not require grad, even under no_grad) must still propagate.
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    tx, tw = torch.randn_like(x), torch.randn_like(w)
    with torch.no_grad(), fwAD.dual_level():
        ours = fwAD.unpack_dual(conv2d(fwAD.make_dual(x, tx), fwAD.make_dual(w, tw), None, 1, 1))
        native = fwAD.unpack_dual(F.conv2d(fwAD.make_dual(x, tx), fwAD.make_dual(w, tw), None,
                                           1, 1))
    assert ours.tangent is not None
    torch.testing.assert_close(ours.primal, native.primal)
    torch.testing.assert_close(ours.tangent, native.tangent)


def test_graph_recorded_exactly_when_autograd_needs_it():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3)
    assert conv2d(x, w).grad_fn is not None
    assert conv2d(x.detach(), w).grad_fn is None
    with torch.no_grad():
        assert not conv2d(x, w).requires_grad
    with torch.inference_mode():
        assert not conv2d(x.detach(), w).requires_grad


class Seen(TorchDispatchMode):
    """Records the ops a dispatch mode sees."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_eager_calls_without_autograd_keep_autocast_and_dispatch_modes():
    # They call the op below the autograd key; autocast and Python dispatch modes (above it)
    # must still see the call.
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with Seen() as seen:
        y = conv2d(x, w, None, 1, 1)
    assert any("torchconv.conv2d" in op for op in seen.ops), seen.ops
    torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv2d(x, w).dtype == F.conv2d(x, w).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=str)
@pytest.mark.parametrize("case", SMALL)
def test_plain_backward_runs_in_the_cpp_node(case, dtype):
    # A backward that records nothing runs in the C++ node (csrc/recorded_conv2d.cpp): same
    # gradients as F.conv2d (every subset of operands), its ops visible to dispatch modes, its
    # saved tensors packed through saved_tensors_hooks, in-place changes detected.
    x, w, b, args = _inputs(case, dtype)
    for leaves in ((x, w, b), (x,), (w,), (b,), (x, b)):
        out = conv2d(x, w, b, *args)
        assert "RecordedConv2d" in out.grad_fn.name()
        g = torch.randn_like(out)
        with Seen() as seen:
            ours = torch.autograd.grad(out, leaves, g)
        native = torch.autograd.grad(F.conv2d(x, w, b, *args), leaves, g)
        for got, want in zip(ours, native):
            torch.testing.assert_close(got, want)
        assert ("torchconv.conv2d_grad_input.default" in seen.ops) == any(t is x for t in leaves)
        assert ("torchconv.conv2d_grad_weight.default" in seen.ops) == any(t is w for t in leaves)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = conv2d(x, w, b, *args)
    assert len(packed) == 2
    torch.testing.assert_close(torch.autograd.grad(out.abs().sum(), x)[0],
                               torch.autograd.grad(F.conv2d(x, w, b, *args).abs().sum(), x)[0])
    out = conv2d(x, w, b, *args)
    with torch.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.abs().sum().backward()


def test_eager_training_step_runs_no_python_autograd_kernel():
    # Eager forward and plain backward stay in C++ (csrc/recorded_conv2d.cpp): the ops' Python
    # autograd kernels (torch/_library, from register_autograd) would add about 25 us per call,
    # which is what a recorded forward paid when it called the op above the autograd key.
    x, w, b, args = _inputs(SMALL[0], torch.float32)
    library_dir = os.path.join(os.path.dirname(torch.__file__), "_library")
    entered = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(library_dir):
            entered.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        out = conv2d(x, w, b, *args)
        out.sum().backward()
        with torch.no_grad():
            conv2d(x, w, b, *args)
    finally:
        sys.setprofile(None)
    assert "RecordedConv2d" in out.grad_fn.name()
    assert entered == []
    # the check itself sees those kernels: a direct op call goes through them
    sys.setprofile(profile)
    try:
        ops.conv2d(x, w, b, [1, 1], [1, 1])
    finally:
        sys.setprofile(None)
    assert entered


def test_backward_of_a_recorded_graph_under_transforms_started_later():
    # The graph is recorded outside any transform; its backward then runs with a dual level,
    # under torch.func.jvp and under vmap over grad_outputs. The C++ node must hand these to the
    # formula that sees the transforms (tangents of the gradients, batched grad_outputs).
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    g, tangent = torch.randn(2, 2, 4, 4, 3, dtype=torch.float64).unbind(0)
    grad_outputs = torch.randn(3, 2, 4, 4, 3, dtype=torch.float64)
    results = []
    for fn in (conv2d, F.conv2d):
        out = fn(x, w, b, 2, 1)
        with fwAD.dual_level():
            dual = torch.autograd.grad(out, (x, w, b), fwAD.make_dual(g, tangent),
                                       retain_graph=True)
            dual = [tuple(fwAD.unpack_dual(t)) for t in dual]
        under_jvp = torch.func.jvp(
            lambda v: torch.autograd.grad(out, (x, w), v, retain_graph=True), (g,), (tangent,))
        batched = vmap(lambda v: torch.autograd.grad(out, (x, w, b), v, retain_graph=True))(
            grad_outputs)
        results.append((dual, under_jvp, batched))
    ours, native = results
    assert all(t is not None for _, t in ours[0])
    torch.testing.assert_close(ours, native)


@pytest.mark.parametrize("requires_grad", [(True, True), (False, True), (True, False)],
                         ids=["both", "weight_only", "input_only"])
def test_autocast_training_step_matches_native(requires_grad):
    # Backward through an autocast forward: the saved operands must be the cast ones, and the
    # float32 leaves get float32 gradients, as with F.conv2d.
    x = torch.randn(2, 3, 9, 8).requires_grad_(requires_grad[0])
    w = torch.randn(5, 3, 3, 3).requires_grad_(requires_grad[1])
    b = torch.randn(5, requires_grad=True)
    leaves = [t for t in (x, w, b) if t.requires_grad]
    results = []
    for fn in (conv2d, F.conv2d):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x, w, b, 2, 1)
        results.append((out, torch.autograd.grad(out.float().square().sum(), leaves)))
    (ours, ours_grads), (native, native_grads) = results
    assert ours.dtype == native.dtype == torch.bfloat16
    torch.testing.assert_close(ours, native, rtol=2e-2, atol=2e-2)
    for got, want, leaf in zip(ours_grads, native_grads, leaves):
        assert got.dtype == want.dtype == leaf.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * want.abs().max().item())


def test_per_sample_gradients_with_vmap():
    N = 5
    x = torch.randn(N, 3, 8, 8)
    target = torch.randn(N, 4, 8, 8)
    params = {"w": torch.randn(4, 3, 3, 3), "b": torch.randn(4)}

    def loss(conv, params, xi, ti):
        out = conv(xi.unsqueeze(0), params["w"], params["b"], padding=1)
        return ((out - ti.unsqueeze(0)) ** 2).mean()

    ours = vmap(grad(lambda p, xi, ti: loss(conv2d, p, xi, ti)), in_dims=(None, 0, 0))(
        params, x, target)
    native = vmap(grad(lambda p, xi, ti: loss(F.conv2d, p, xi, ti)), in_dims=(None, 0, 0))(
        params, x, target)
    for k in params:
        torch.testing.assert_close(ours[k], native[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding", [1, "same"])
@pytest.mark.parametrize("in_dims", [(0, None, None), (None, 0, None), (0, 0, 0), (1, 0, None),
                                     (None, None, 0)])
def test_vmap_over_every_operand(in_dims, padding):
    B = 3
    x = torch.randn(B, 2, 4, 7, 6) if in_dims[0] == 1 else torch.randn(B, 2, 4, 7, 6)
    xs = x if in_dims[0] is not None else x[0]
    if in_dims[0] == 1:
        xs = x.transpose(0, 1)
    w = torch.randn(B, 6, 2, 3, 2)
    ws = w if in_dims[1] is not None else w[0]
    b = torch.randn(B, 6)
    bs = b if in_dims[2] is not None else b[0]
    fn = lambda x, w, b: conv2d(x, w, b, 1, padding, 1, 2)  # noqa: E731
    ref = lambda x, w, b: F.conv2d(x, w, b, 1, padding, 1, 2)  # noqa: E731
    torch.testing.assert_close(vmap(fn, in_dims)(xs, ws, bs), vmap(ref, in_dims)(xs, ws, bs),
                               rtol=1e-4, atol=1e-5)


def test_vmap_unbatched_logical_input_and_backward_ops():
    x = torch.randn(4, 3, 6, 6)  # vmapped over 4 unbatched (C, H, W) inputs
    w = torch.randn(4, 2, 3, 3, 3)
    out = vmap(lambda x, w: conv2d(x, w, padding=1))(x, w)
    ref = vmap(lambda x, w: F.conv2d(x, w, padding=1))(x, w)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # gradients of a vmapped computation go through the vmap rules of the backward ops
    x.requires_grad_()
    w.requires_grad_()
    gx, gw = torch.autograd.grad(vmap(lambda x, w: conv2d(x, w, padding=1))(x, w).sum(), (x, w))
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    rx, rw = torch.autograd.grad(vmap(lambda x, w: F.conv2d(x, w, padding=1))(x2, w2).sum(),
                                 (x2, w2))
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-4)


def _opcheck_samples():
    samples = []
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 4, 7, 6, dtype=dtype, requires_grad=True)
        w = torch.randn(6, 2, 3, 2, dtype=dtype, requires_grad=True)
        b = torch.randn(6, dtype=dtype, requires_grad=True)
        samples.append((ops.conv2d.default, (x, w, b, [2, 1], [1, 0], [1, 2], 2)))
        samples.append((ops.conv2d.padding, (x, w, b, [1], "same", [1], 2)))
        samples.append((ops.conv2d.default, (x[0], w, None, [1], [1], [1], 2)))
        xcl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
        samples.append((ops.conv2d.default, (xcl, w, b, [1, 1], [1, 1], [1, 1], 1 * 2)))
        g = torch.randn(2, 6, 4, 4, dtype=dtype, requires_grad=True)
        samples.append((ops.conv2d_grad_input.default, (g, w, [2, 4, 7, 6], [2, 1], [1, 0],
                                                         [1, 2], 2)))
        samples.append((ops.conv2d_grad_weight.default, (g, x, [6, 2, 3, 2], [2, 1], [1, 0],
                                                          [1, 2], 2)))
    return samples


@pytest.mark.parametrize("op,args", _opcheck_samples())
def test_opcheck(op, args):
    torch.library.opcheck(op, args)


def test_hessian_forward_over_reverse():
    # torch.func.hessian = jacfwd(jacrev): forward-mode AD through the backward ops
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64)

    def loss(conv):
        return lambda x, w: (conv(x, w, None, 1, "same").sin()).sum()

    ours = torch.func.hessian(loss(conv2d), argnums=(0, 1))(x, w)
    native = torch.func.hessian(loss(F.conv2d), argnums=(0, 1))(x, w)
    for a, b in zip(ours, native):
        for aa, bb in zip(a, b):
            torch.testing.assert_close(aa, bb)
