"""Parity tests of torchconv.Conv2d / torchconv.LazyConv2d against torch.nn.Conv2d."""

import copy
import io
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torchconv

TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-4),
    torch.float64: dict(atol=1e-10, rtol=1e-9),
    torch.complex64: dict(atol=1e-5, rtol=1e-4),
    torch.complex128: dict(atol=1e-10, rtol=1e-9),
}


def make_pair(*args, seed=0, **kwargs):
    """An nn.Conv2d and a torchconv.Conv2d built from the same seed."""
    torch.manual_seed(seed)
    native = nn.Conv2d(*args, **kwargs)
    torch.manual_seed(seed)
    ours = torchconv.Conv2d(*args, **kwargs)
    return native, ours


def assert_parity(native, ours, x, tol=None):
    """Forward output and input/weight/bias gradients of `ours` match `native`."""
    tol = tol or TOL[x.dtype]
    x_native = x.detach().clone().requires_grad_()
    x_ours = x.detach().clone().requires_grad_()
    y_native = native(x_native)
    y_ours = ours(x_ours)
    assert y_ours.shape == y_native.shape
    assert y_ours.dtype == y_native.dtype
    torch.testing.assert_close(y_ours, y_native, **tol)

    grad_out = torch.randn_like(y_native)
    wrt_native = [x_native, native.weight] + ([native.bias] if native.bias is not None else [])
    wrt_ours = [x_ours, ours.weight] + ([ours.bias] if ours.bias is not None else [])
    grads_native = torch.autograd.grad(y_native, wrt_native, grad_out)
    grads_ours = torch.autograd.grad(y_ours, wrt_ours, grad_out)
    for name, g_ours, g_native in zip(("input", "weight", "bias"), grads_ours, grads_native):
        torch.testing.assert_close(g_ours, g_native, **tol, msg=lambda m: f"grad {name}: {m}")
    return y_ours


# --------------------------------------------------------------------------------------------
# class, construction, attributes


def test_subclass_relationship():
    m = torchconv.Conv2d(2, 3, 3)
    assert isinstance(m, nn.Conv2d)
    assert type(m) is not nn.Conv2d
    assert type(m) is torchconv.Conv2d
    assert issubclass(torchconv.LazyConv2d, nn.LazyConv2d)
    assert torchconv.LazyConv2d.cls_to_become is torchconv.Conv2d


CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(2, 5), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, bias=False, dilation=2),
    dict(in_channels=6, out_channels=6, kernel_size=3, groups=6, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same", padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=1, padding="valid", stride=3),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, padding_mode="circular"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=1, padding_mode="replicate",
         dtype=torch.float64),
    dict(in_channels=2, out_channels=4, kernel_size=3, dtype=torch.complex64),
    dict(in_channels=0, out_channels=4, kernel_size=3),
]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_init_is_bit_identical(kwargs):
    torch.manual_seed(123)
    native = nn.Conv2d(**kwargs)
    state_after_native = torch.get_rng_state()
    torch.manual_seed(123)
    ours = torchconv.Conv2d(**kwargs)
    # Same values, and the same amount of the random stream consumed.
    assert torch.equal(torch.get_rng_state(), state_after_native)
    assert torch.equal(ours.weight, native.weight)
    assert ours.weight.dtype == native.weight.dtype
    assert (ours.bias is None) == (native.bias is None)
    if native.bias is not None:
        assert torch.equal(ours.bias, native.bias)
    if native.weight.numel():
        assert native.weight.abs().max() > 0  # initialised, not left at zero

    # reset_parameters draws the same stream too.
    torch.manual_seed(7)
    native.reset_parameters()
    torch.manual_seed(7)
    ours.reset_parameters()
    assert torch.equal(ours.weight, native.weight)


ATTRIBUTES = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
              "groups", "padding_mode", "transposed", "output_padding",
              "_reversed_padding_repeated_twice"]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_attributes_and_repr(kwargs):
    native, ours = make_pair(**kwargs)
    for name in ATTRIBUTES:
        assert getattr(ours, name) == getattr(native, name), name
        assert type(getattr(ours, name)) is type(getattr(native, name)), name
    assert isinstance(ours.weight, nn.Parameter)
    assert ours.weight.shape == native.weight.shape
    assert repr(ours) == repr(native)
    assert ours.extra_repr() == native.extra_repr()
    assert list(ours.state_dict()) == list(native.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in native.named_parameters()]


def test_attribute_values():
    m = torchconv.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=(1, 3), groups=2)
    assert m.kernel_size == (3, 3) and m.stride == (2, 2) and m.dilation == (1, 3)
    assert m.padding == (1, 2) and m.groups == 2 and m.padding_mode == "zeros"
    assert m.transposed is False and m.output_padding == (0, 0)
    assert list(m._reversed_padding_repeated_twice) == [2, 2, 1, 1]
    assert m.weight.shape == (8, 2, 3, 3) and m.bias.shape == (8,)
    same = torchconv.Conv2d(1, 1, (2, 4), padding="same", dilation=(1, 2))
    assert same.padding == "same"
    # F.pad order (left, right, top, bottom); even total padding splits floor/ceil.
    assert same._reversed_padding_repeated_twice == [3, 3, 0, 1]
    assert "padding=same" in repr(same)


BAD_ARGUMENTS = [
    dict(groups=0),
    dict(groups=-2),
    dict(in_channels=3, groups=2),
    dict(out_channels=3, groups=2),
    dict(padding="full"),
    dict(padding="SAME"),
    dict(padding="same", stride=2),
    dict(padding="same", stride=(1, 2)),
    dict(padding_mode="zero"),
    dict(padding_mode="symmetric", padding=1),
    # several problems at once: the first one reported must be the same as nn.Conv2d's
    dict(groups=0, padding="full", padding_mode="bad"),
    dict(in_channels=3, out_channels=3, groups=2, padding_mode="bad"),
    dict(out_channels=3, groups=2, padding="full"),
    dict(padding="full", stride=2, padding_mode="bad"),
    dict(padding="same", stride=2, padding_mode="bad"),
]


@pytest.mark.parametrize("bad", BAD_ARGUMENTS)
def test_value_errors_match_native(bad):
    kwargs = dict(in_channels=4, out_channels=4, kernel_size=3)
    kwargs.update(bad)
    with pytest.raises(ValueError) as native_error:
        nn.Conv2d(**kwargs)
    with pytest.raises(ValueError) as our_error:
        torchconv.Conv2d(**kwargs)
    assert str(our_error.value) == str(native_error.value)


def test_value_error_messages():
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        torchconv.Conv2d(2, 2, 3, groups=0)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        torchconv.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        torchconv.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        torchconv.Conv2d(4, 4, 3, padding="full")
    with pytest.raises(ValueError, match="not supported for strided convolutions"):
        torchconv.Conv2d(4, 4, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        torchconv.Conv2d(4, 4, 3, padding_mode="mirror")


# --------------------------------------------------------------------------------------------
# numerics: forward and backward against nn.Conv2d

PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]
PADDINGS = [
    pytest.param(dict(kernel_size=3, padding=1), id="int"),
    pytest.param(dict(kernel_size=3, padding=(2, 1)), id="tuple"),
    pytest.param(dict(kernel_size=3, padding="same"), id="same"),
    pytest.param(dict(kernel_size=3, padding="valid"), id="valid"),
    pytest.param(dict(kernel_size=(2, 4), padding="same"), id="same-even"),
    pytest.param(dict(kernel_size=(4, 2), padding=(1, 0), dilation=(1, 2)), id="tuple-even"),
    pytest.param(dict(kernel_size=(2, 3), padding="same", dilation=2), id="same-even-dilated"),
]
DTYPES = [torch.float32, torch.float64, torch.complex64]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # nn.Conv2d's
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_padding_mode_padding_dtype_parity(padding_mode, padding, dtype):
    native, ours = make_pair(3, 4, padding_mode=padding_mode, dtype=dtype, **padding)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 9, dtype=dtype)
    y = assert_parity(native, ours, x)
    if padding.get("padding") == "same":
        assert y.shape[-2:] == x.shape[-2:]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(1, 3), dilation=(2, 1)),
        dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, padding=1, bias=False),
        dict(in_channels=6, out_channels=12, kernel_size=3, groups=6, padding="same"),
        dict(in_channels=5, out_channels=7, kernel_size=1),
        dict(in_channels=4, out_channels=4, kernel_size=5, stride=2, padding=2,
             padding_mode="reflect", groups=4),
        dict(in_channels=3, out_channels=2, kernel_size=(1, 5), padding=(0, 2),
             padding_mode="circular", stride=(2, 1), bias=False),
    ],
)
def test_stride_dilation_groups_parity(kwargs):
    native, ours = make_pair(**kwargs)
    torch.manual_seed(2)
    x = torch.randn(3, kwargs["in_channels"], 11, 10)
    assert_parity(native, ours, x)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_unbatched_input(padding_mode):
    native, ours = make_pair(3, 5, 3, padding=1, padding_mode=padding_mode)
    x = torch.randn(3, 6, 7)
    y = assert_parity(native, ours, x)
    assert y.shape == (5, 6, 7)


def test_channels_last():
    native, ours = make_pair(4, 6, 3, padding=1)
    native = native.to(memory_format=torch.channels_last)
    ours = ours.to(memory_format=torch.channels_last)
    assert ours.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 9).to(memory_format=torch.channels_last)
    y = assert_parity(native, ours, x)
    expected = native(x).is_contiguous(memory_format=torch.channels_last)
    assert y.is_contiguous(memory_format=torch.channels_last) == expected


def test_dtype_and_device_moves():
    native, ours = make_pair(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    assert_parity(native.double(), ours.double(), x.double())
    assert type(ours) is torchconv.Conv2d and ours.weight.dtype == torch.float64
    ours.to(torch.float32)
    native.to(torch.float32)
    assert_parity(native, ours, x)
    ours.to("cpu")
    assert ours.weight.device.type == "cpu"


def test_half_precision():
    native, ours = make_pair(3, 4, 3, padding=1)
    native.half()
    ours.half()
    x = torch.randn(2, 3, 6, 6).half()
    y_ours = ours(x)
    y_native = native(x)
    assert y_ours.dtype == torch.float16
    # Accumulation order may differ: compare against a float32 reference of the same data.
    reference = F.conv2d(x.float(), ours.weight.float(), ours.bias.float(), padding=1)
    torch.testing.assert_close(y_ours.float(), reference, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(y_ours, y_native, atol=5e-3, rtol=5e-3)


def test_weight_and_bias_read_at_call_time():
    native, ours = make_pair(3, 4, 3)
    x = torch.randn(1, 3, 5, 5)
    new_weight = torch.randn(4, 3, 3, 3)
    ours.weight = nn.Parameter(new_weight.clone())
    ours.bias = None
    torch.testing.assert_close(ours(x), F.conv2d(x, new_weight), **TOL[torch.float32])
    with torch.no_grad():
        ours.weight.mul_(2)
    torch.testing.assert_close(ours(x), F.conv2d(x, 2 * new_weight), **TOL[torch.float32])


def test_functional_call():
    native, ours = make_pair(3, 4, 3, padding="same")
    x = torch.randn(2, 3, 6, 6)
    params = {"weight": torch.randn(4, 3, 3, 3, requires_grad=True), "bias": torch.randn(4)}
    y = torch.func.functional_call(ours, params, (x,))
    torch.testing.assert_close(y, F.conv2d(x, params["weight"], params["bias"], padding="same"),
                               **TOL[torch.float32])
    y.sum().backward()
    assert params["weight"].grad is not None
    assert ours.weight.grad is None  # the module's own parameter was not used
    # torch.func transforms through the module
    grad_w = torch.func.grad(lambda w: torch.func.functional_call(ours, {"weight": w}, (x,)).sum())(
        ours.weight.detach())
    ref_w = ours.weight.detach().clone().requires_grad_()
    F.conv2d(x, ref_w, ours.bias, padding="same").sum().backward()
    torch.testing.assert_close(grad_w, ref_w.grad, **TOL[torch.float32])


def test_meta_device():
    m = torchconv.Conv2d(3, 8, 3, padding=1, device="meta")
    assert m.weight.device.type == "meta" and m.bias.device.type == "meta"
    y = m(torch.empty(2, 3, 10, 12, device="meta"))
    assert y.device.type == "meta" and y.shape == (2, 8, 10, 12)
    with torch.device("meta"):
        m2 = torchconv.Conv2d(3, 8, 3, padding_mode="reflect", padding=1)
    assert m2.weight.device.type == "meta"
    assert m2(torch.empty(3, 5, 5, device="meta")).shape == (8, 5, 5)
    # materialise and initialise like nn.Conv2d
    m.to_empty(device="cpu")
    torch.manual_seed(3)
    m.reset_parameters()
    torch.manual_seed(3)
    native = nn.Conv2d(3, 8, 3, padding=1)
    assert torch.equal(m.weight, native.weight) and torch.equal(m.bias, native.bias)
    assert_parity(native, m, torch.randn(1, 3, 6, 6))


def test_device_context_manager():
    with torch.device("cpu"):
        m = torchconv.Conv2d(2, 3, 3, dtype=torch.float64)
    assert m.weight.device.type == "cpu" and m.weight.dtype == torch.float64


# --------------------------------------------------------------------------------------------
# copies, serialisation, state dicts


def test_deepcopy():
    native, ours = make_pair(3, 4, 3, padding=1, padding_mode="circular")
    clone = copy.deepcopy(ours)
    assert type(clone) is torchconv.Conv2d
    assert clone.weight is not ours.weight and torch.equal(clone.weight, ours.weight)
    assert clone.padding_mode == "circular"
    assert_parity(native, clone, torch.randn(2, 3, 5, 5))


def test_pickle_and_torch_save_whole_module():
    native, ours = make_pair(3, 4, (2, 3), padding="same", padding_mode="replicate")
    x = torch.randn(2, 3, 6, 7)
    loaded = pickle.loads(pickle.dumps(ours))
    assert type(loaded) is torchconv.Conv2d
    assert repr(loaded) == repr(ours)
    assert_parity(native, loaded, x)

    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is torchconv.Conv2d
    assert_parity(native, loaded, x)


def test_setstate_of_old_pickle_defaults_padding_mode():
    ours = torchconv.Conv2d(2, 3, 3)
    state = ours.__dict__.copy()
    del state["padding_mode"]  # pickles made before padding_mode existed
    restored = torchconv.Conv2d.__new__(torchconv.Conv2d)
    restored.__setstate__(state)
    assert restored.padding_mode == "zeros"
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(restored(x), ours(x), atol=0, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trips(bias):
    torch.manual_seed(5)
    native = nn.Conv2d(3, 4, 3, padding=1, bias=bias)
    ours = torchconv.Conv2d(3, 4, 3, padding=1, bias=bias)  # different values
    assert not torch.equal(ours.weight, native.weight)
    ours.load_state_dict(native.state_dict())
    assert torch.equal(ours.weight, native.weight)
    assert_parity(native, ours, torch.randn(2, 3, 5, 5))

    with torch.no_grad():
        ours.weight.add_(1.0)
    back = nn.Conv2d(3, 4, 3, padding=1, bias=bias)
    back.load_state_dict(ours.state_dict())
    assert list(back.state_dict()) == list(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key

    wrong = torchconv.Conv2d(3, 4, 3, bias=not bias)
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key"):
        wrong.load_state_dict(native.state_dict())


# --------------------------------------------------------------------------------------------
# LazyConv2d


def test_lazy_matches_native_lazy():
    torch.manual_seed(11)
    native = nn.LazyConv2d(6, 3, padding="same", padding_mode="reflect")
    torch.manual_seed(11)
    ours = torchconv.LazyConv2d(6, 3, padding="same", padding_mode="reflect")
    assert ours.has_uninitialized_params()
    assert repr(ours) == repr(native)
    x = torch.randn(2, 5, 7, 8)
    torch.manual_seed(12)
    y_native = native(x)
    torch.manual_seed(12)
    y_ours = ours(x)
    assert type(ours) is torchconv.Conv2d
    assert type(native) is nn.Conv2d
    assert ours.in_channels == 5 and ours.weight.shape == (6, 5, 3, 3)
    assert torch.equal(ours.weight, native.weight) and torch.equal(ours.bias, native.bias)
    torch.testing.assert_close(y_ours, y_native, **TOL[torch.float32])
    assert repr(ours) == repr(native)
    assert_parity(native, ours, x)


def test_lazy_unbatched_groups_and_errors():
    m = torchconv.LazyConv2d(4, 3, groups=2, bias=False)
    y = m(torch.randn(6, 5, 5))
    assert type(m) is torchconv.Conv2d and m.in_channels == 6 and m.bias is None
    assert m.weight.shape == (4, 3, 3, 3) and y.shape == (4, 3, 3)

    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        torchconv.LazyConv2d(4, 3, groups=2)(torch.randn(1, 3, 5, 5))
    # Like nn.LazyConv2d, out_channels is not checked against groups at construction; the
    # convolution itself rejects the weight on the first call.
    native, ours = nn.LazyConv2d(3, 3, groups=2), torchconv.LazyConv2d(3, 3, groups=2)
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(RuntimeError):
        native(x)
    with pytest.raises(RuntimeError, match="groups"):
        ours(x)
    with pytest.raises(RuntimeError, match="Expected 3D .unbatched. or 4D .batched. input"):
        torchconv.LazyConv2d(3, 3)(torch.randn(5, 5))


def test_lazy_load_state_dict():
    source = nn.Conv2d(5, 4, 3)
    lazy = torchconv.LazyConv2d(4, 3)
    lazy.load_state_dict(source.state_dict())
    assert not lazy.has_uninitialized_params()
    x = torch.randn(1, 5, 6, 6)
    torch.testing.assert_close(lazy(x), source(x), **TOL[torch.float32])
    assert type(lazy) is torchconv.Conv2d


def test_lazy_dtype_device():
    m = torchconv.LazyConv2d(2, 3, dtype=torch.float64)
    m(torch.randn(1, 3, 4, 4, dtype=torch.float64))
    assert m.weight.dtype == torch.float64 and type(m) is torchconv.Conv2d


# --------------------------------------------------------------------------------------------
# TorchScript, torch.compile, torch.export


def _torchconv_nodes(graph):
    return [n for n in graph.nodes() if n.kind().startswith("torchconv::")]


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    "kwargs, overload",
    [
        (dict(padding=1), ""),
        (dict(padding=(1, 2), stride=2, dilation=(1, 2)), ""),
        (dict(padding="same", kernel_size=(2, 3)), "padding"),
        (dict(padding="valid"), "padding"),
        (dict(padding="same", padding_mode="reflect"), ""),
        (dict(padding=(2, 1), padding_mode="circular"), ""),
    ],
)
def test_jit_script(kwargs, overload):
    kwargs = {"kernel_size": 3, **kwargs}
    native, ours = make_pair(4, 6, groups=2, **kwargs)
    scripted = torch.jit.script(ours)
    nodes = _torchconv_nodes(scripted._c._get_method("_conv_forward").graph)
    assert len(nodes) == 1
    schema = nodes[0].schema()
    assert schema.startswith("torchconv::conv2d." + overload if overload else "torchconv::conv2d(")
    assert not any(n.kind() == "aten::conv2d" for n in
                   scripted._c._get_method("_conv_forward").graph.nodes())
    x = torch.randn(2, 4, 7, 8)
    assert_parity(native, scripted, x)

    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    torch.testing.assert_close(loaded(x), native(x), **TOL[torch.float32])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_jit_script_in_a_model():
    torch.manual_seed(0)
    model = nn.Sequential(torchconv.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          torchconv.Conv2d(4, 2, 3, padding="same", padding_mode="replicate"))
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(scripted(x), model(x), **TOL[torch.float32])


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    native, ours = make_pair(3, 4, 3, padding="same", padding_mode="reflect")
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 6, 7)
    assert_parity(native, compiled, x)
    native2, ours2 = make_pair(3, 4, (2, 3), padding="same", stride=1, dilation=(2, 1))
    compiled2 = torch.compile(ours2, fullgraph=True, backend="aot_eager")
    assert_parity(native2, compiled2, x)
    torch._dynamo.reset()


def _export_targets(ep):
    return [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize(
    "kwargs, overload",
    [
        (dict(kernel_size=3, padding=1, stride=2), "torchconv.conv2d.default"),
        (dict(kernel_size=(2, 4), padding="same"), "torchconv.conv2d.padding"),
        (dict(kernel_size=3, padding=1, padding_mode="circular"), "torchconv.conv2d.default"),
    ],
)
def test_torch_export(kwargs, overload):
    native, ours = make_pair(3, 5, **kwargs)
    x = torch.randn(2, 3, 8, 9)
    ep = torch.export.export(ours, (x,))
    targets = _export_targets(ep)
    assert overload in targets, targets
    assert "aten.conv2d.default" not in targets and "aten.convolution.default" not in targets
    assert "torchconv.conv2d" in str(ep.graph)
    torch.testing.assert_close(ep.module()(x), native(x), **TOL[torch.float32])


def test_fx_symbolic_trace():
    torch.manual_seed(0)
    model = nn.Sequential(torchconv.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          torchconv.Conv2d(4, 4, (2, 3), padding="same", padding_mode="reflect"))
    traced = torch.fx.symbolic_trace(model)
    targets = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert targets.count(torchconv.functional.conv2d) == 2
    assert F.conv2d not in targets and torch.conv2d not in targets
    x = torch.randn(2, 3, 6, 7)
    torch.testing.assert_close(traced(x), model(x), atol=0, rtol=0)


# --------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_cuda_parity(padding_mode):
    native, ours = make_pair(4, 6, (3, 2), padding="same", padding_mode=padding_mode,
                             dtype=torch.float64)
    native.cuda()
    ours.cuda()
    assert ours.weight.is_cuda and type(ours) is torchconv.Conv2d
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64, device="cuda")
    assert_parity(native, ours, x)
    # and constructed directly on the device, float32 (TF32 off: compare exact-ish math)
    with torch.backends.cudnn.flags(allow_tf32=False):
        native, ours = make_pair(4, 6, 3, padding=1, stride=2, device="cuda")
        assert_parity(native, ours, torch.randn(2, 4, 9, 8, device="cuda"))
