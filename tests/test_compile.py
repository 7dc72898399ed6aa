"""torch.compile (dynamic shapes, aot_eager and inductor) and torch.export."""

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

from torchconv.functional import conv2d


def _model(conv):
    def f(x, w, b):
        y = conv(x, w, b, 1, "same", (1, 2), 2)
        y = torch.relu(y)
        return conv(y, w.transpose(0, 1).reshape(w.shape[0], -1, *w.shape[2:])[:, : y.shape[1] // 2],
                    None, 2, 1, 1, 2)
    return f


SHAPES = [(5, 4, 10, 9), (6, 4, 13, 11), (7, 4, 16, 17)]  # no 0/1 or duck-size coincidences


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_dynamic_forward_backward(backend):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(_model(conv2d), backend=counter, fullgraph=True, dynamic=True)
    w = torch.randn(4, 2, 3, 2, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    shapes = SHAPES if backend == "aot_eager" else SHAPES[:2]
    for shape in shapes:
        x = torch.randn(shape, requires_grad=True)
        out = compiled(x, w, b)
        ref_inputs = [t.detach().clone().requires_grad_() for t in (x, w, b)]
        ref = _model(F.conv2d)(*ref_inputs)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        grads = torch.autograd.grad(out.square().sum(), (x, w, b))
        ref_grads = torch.autograd.grad(ref.square().sum(), ref_inputs)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    # dynamic shapes: one graph serves every input size
    assert counter.frame_count == 1


def test_compiled_graph_contains_the_ops():
    from torch._dynamo.testing import EagerAndRecordGraphs

    torch._dynamo.reset()
    backend = EagerAndRecordGraphs()
    fn = torch.compile(lambda x, w: conv2d(x, w, padding="same"), backend=backend,
                       fullgraph=True)
    fn(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 2, 2))
    code = backend.graphs[0].code
    assert "torchconv.conv2d.padding" in code
    assert "convolution" not in code


def test_export_shows_the_op():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(6, 3, 3, 3))

        def forward(self, x):
            return conv2d(x, self.w, None, 1, 1)

    x = torch.randn(2, 3, 9, 9)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(M(), (x,), dynamic_shapes={"x": {0: batch}})
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert "torchconv.conv2d.default" in targets
    assert not any("convolution" in t for t in targets)
    x2 = torch.randn(5, 3, 9, 9)
    torch.testing.assert_close(ep.module()(x2), F.conv2d(x2, ep.state_dict["w"], None, 1, 1),
                               rtol=1e-4, atol=1e-5)


def test_fake_tensor_strides_match_real():
    from torch._subclasses.fake_tensor import FakeTensorMode

    cases = [
        (torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last), torch.randn(4, 3, 3, 3)),
        (torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)),
        (torch.randn(3, 8, 8), torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)),
        (torch.randn(0, 3, 8, 8), torch.randn(4, 3, 3, 3)),
    ]
    for x, w in cases:
        real = conv2d(x, w, padding="same")
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fake = torch.ops.torchconv.conv2d.padding(mode.from_tensor(x), mode.from_tensor(w),
                                                       None, [1], "same", [1], 1)
        assert fake.shape == real.shape and fake.stride() == real.stride()
