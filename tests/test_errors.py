"""Bad input raises the same exception type and message as F.conv2d."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchconv.functional import conv2d

x = torch.randn(2, 3, 8, 8)
w = torch.randn(4, 3, 3, 3)
b = torch.randn(4)

# name -> keyword overrides of (input, weight, bias, stride, padding, dilation, groups)
FAULTS = {
    "bias_dtype": dict(bias=b.double()),
    "bias_dtype_half": dict(bias=b.half()),
    "bias_complex": dict(bias=b.cfloat()),
    "input_2d": dict(input=x[0, 0]),
    "input_5d": dict(input=x[None]),
    "weight_dtype_double": dict(weight=w.double()),
    "weight_dtype_half": dict(weight=w.half()),
    "input_double_weight_float": dict(input=x.double()),
    "input_half_weight_float": dict(input=x.half()),
    "input_bf16_weight_float": dict(input=x.bfloat16()),
    "input_complex_weight_float": dict(input=x.cfloat()),
    "stride_zero": dict(stride=0),
    "stride_negative": dict(stride=-1),
    "stride_tuple_zero": dict(stride=(1, 0)),
    "padding_negative": dict(padding=-1),
    "padding_tuple_negative": dict(padding=(0, -2)),
    "dilation_zero": dict(dilation=0),
    "dilation_negative": dict(dilation=-1),
    "groups_zero": dict(groups=0),
    "groups_negative": dict(groups=-2),
    "padding_len3": dict(padding=[1, 1, 1]),
    "stride_len3": dict(stride=[1, 1, 1]),
    "dilation_len3": dict(dilation=[1, 1, 1]),
    "channels": dict(weight=torch.randn(4, 2, 3, 3)),
    "groups_too_many": dict(weight=torch.randn(2, 1, 3, 3), groups=3,
                            input=torch.randn(2, 3, 8, 8)),
    "groups_not_divisible": dict(input=torch.randn(2, 6, 8, 8), weight=torch.randn(4, 2, 3, 3),
                                 groups=3),
    "no_out_channels": dict(weight=torch.randn(0, 3, 3, 3)),
    "kernel_too_big": dict(input=torch.randn(1, 3, 2, 2)),
    "kernel_too_big_dilated": dict(dilation=4),
    "weight_3d": dict(weight=w[0]),
    "weight_2d": dict(weight=w[0, 0]),
    "weight_5d": dict(weight=w[None]),
    "bias_2d": dict(bias=torch.randn(4, 1)),
    "bias_wrong_size": dict(bias=torch.randn(5)),
    "bad_padding_string": dict(padding="foo"),
    "same_strided": dict(padding="same", stride=2),
    "same_strided_tuple": dict(padding="same", stride=(1, 2)),
    "same_stride_zero": dict(padding="same", stride=0),
    "same_negative_dilation": dict(padding="same", dilation=-1),
    "same_dilation_zero": dict(padding="same", dilation=0),
    "same_weight_dtype": dict(padding="same", weight=w.double()),
    "same_bias_dtype": dict(padding="same", bias=b.double()),
    "valid_bias_dtype": dict(padding="valid", bias=b.double()),
    "same_channels": dict(padding="same", weight=torch.randn(4, 2, 3, 3)),
    # an even kernel: PyTorch pads a copy of the input first and reports the copy's size
    "same_channels_even_kernel": dict(padding="same", weight=torch.randn(4, 2, 2, 3)),
    "same_channels_even_kernel_unbatched": dict(padding="same", input=x[0],
                                                weight=torch.randn(4, 2, 3, 2)),
    "same_weight_3d_stride_tuple": dict(padding="same", weight=w[0], stride=(1, 1)),
    "same_weight_3d_dilation_tuple": dict(padding="same", weight=w[0], dilation=(1, 1)),
    "valid_kernel_too_big": dict(padding="valid", input=torch.randn(2, 3, 2, 2)),
    "unbatched_channels": dict(input=x[0], weight=torch.randn(4, 2, 3, 3)),
    "empty_plane": dict(input=torch.randn(1, 3, 0, 5), padding=2),
    # kernel and dilation are checked by the backend F.conv2d picks, in its words: oneDNN
    # (float32 here), the dilated and the plain slow kernels (float64, a small float32 call)
    "kernel_empty": dict(weight=torch.randn(4, 3, 0, 3)),
    "kernel_empty_double": dict(input=x.double(), weight=torch.randn(4, 3, 3, 0).double(),
                                bias=b.double()),
    "kernel_empty_double_dilated": dict(input=x.double(), weight=torch.randn(4, 3, 0, 3).double(),
                                        bias=b.double(), dilation=(1, 2)),
    "dilation_zero_double": dict(input=x.double(), weight=w.double(), bias=b.double(),
                                 dilation=(0, 1)),
    "dilation_zero_small_float": dict(input=torch.randn(1, 3, 5, 5), dilation=0),
    "empty_batch_kernel_empty": dict(input=torch.randn(0, 3, 8, 8),
                                     weight=torch.randn(4, 3, 0, 3)),
    "empty_plane_dilation_zero": dict(input=torch.randn(1, 3, 0, 5), padding=2, dilation=0),
    # 'same' with an empty kernel dimension: a total padding of -dilation; an odd one crops
    # PyTorch's copy of the input by an element (then the backend or the copy's empty plane
    # fails, or the crop itself), an even one is negative padding
    "same_kernel_empty": dict(padding="same", weight=torch.randn(4, 3, 0, 3)),
    "same_kernel_empty_double": dict(padding="same", input=x.double(),
                                     weight=torch.randn(4, 3, 3, 0).double(), bias=b.double()),
    "same_kernel_empty_dilated": dict(padding="same", weight=torch.randn(4, 3, 0, 3),
                                      dilation=(2, 1)),
    "same_kernel_empty_one_row": dict(padding="same", input=torch.randn(1, 3, 1, 8),
                                      weight=torch.randn(4, 3, 0, 2)),
    "same_kernel_empty_no_rows": dict(padding="same", input=torch.randn(1, 3, 0, 8),
                                      weight=torch.randn(4, 3, 0, 3)),
    "bool_dtype": dict(input=x.bool(), weight=w.bool(), bias=None),
}

# pairs of faults: the first check F.conv2d makes must be the one we report
PAIRS = [
    ("bias_dtype", "input_2d"), ("input_2d", "stride_zero"), ("groups_zero", "stride_len3"),
    ("groups_zero", "weight_dtype_double"), ("padding_negative", "stride_zero"),
    ("stride_zero", "dilation_negative"), ("channels", "bias_wrong_size"),
    ("bias_wrong_size", "weight_dtype_double"), ("kernel_too_big", "weight_dtype_double"),
    ("weight_dtype_double", "dilation_zero"), ("bad_padding_string", "groups_zero"),
    ("same_strided", "bias_dtype"), ("groups_zero", "same_strided"), ("weight_2d", "groups_zero"),
    ("stride_len3", "padding_len3"), ("padding_len3", "dilation_negative"),
    ("channels", "kernel_too_big"), ("groups_too_many", "bias_wrong_size"),
]


def _call(fn, overrides, requires_grad=False):
    args = dict(input=x, weight=w, bias=b, stride=1, padding=0, dilation=1, groups=1)
    args.update(overrides)
    if requires_grad:  # a recorded call (the C++ autograd node) checks the same way
        for name in ("input", "weight", "bias"):
            t = args[name]
            if t is not None and (t.is_floating_point() or t.is_complex()):
                args[name] = t.detach().requires_grad_()
    return fn(args["input"], args["weight"], args["bias"], args["stride"], args["padding"],
              args["dilation"], args["groups"])


def _assert_same_error(overrides, requires_grad=False):
    with pytest.raises(Exception) as native:
        _call(F.conv2d, overrides, requires_grad)
    with pytest.raises(Exception) as ours:
        _call(conv2d, overrides, requires_grad)
    assert type(ours.value) is type(native.value)
    if not overrides.get("input", x).dtype == torch.bool:  # op names differ for 'not implemented'
        assert str(ours.value).splitlines()[0] == str(native.value).splitlines()[0]


@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "recorded"])
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_single_fault(name, requires_grad):
    _assert_same_error(FAULTS[name], requires_grad)


@pytest.mark.parametrize("first,second", PAIRS)
def test_check_order(first, second):
    overrides = {**FAULTS[second], **FAULTS[first]}
    _assert_same_error(overrides)


def test_op_level_errors_without_python_wrapper():
    # the ops validate on their own (C++ schemas are usable without torchconv.functional)
    with pytest.raises(RuntimeError, match="non-positive stride is not supported"):
        torch.ops.torchconv.conv2d(x, w, None, [0, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="Invalid padding string: 'full'"):
        torch.ops.torchconv.conv2d.padding(x, w, None, [1], "full", [1], 1)
    with pytest.raises(RuntimeError, match="does not match"):
        torch.ops.torchconv.conv2d_grad_input(torch.randn(2, 5, 6, 6), w, [2, 3, 8, 8], [1, 1],
                                              [0, 0], [1, 1], 1)


# Argument types as F.conv2d's parser takes them: numpy integers and one-element integer (or
# bool) tensors count as ints; bools, floats, None and longer tensors are TypeErrors (whose
# messages, the parser's overload listing, are not reproduced).
ACCEPTED_ARGUMENTS = [
    dict(stride=np.int64(2)), dict(stride=torch.tensor(2)), dict(stride=torch.tensor(True)),
    dict(stride=(np.int32(2), 1)), dict(stride=[torch.tensor([2]), 1]),
    dict(padding=np.int64(1)), dict(padding=torch.Size([1, 0])), dict(dilation=(1, np.int8(2))),
    dict(groups=np.int64(1)), dict(groups=torch.tensor(1)),
]
REJECTED_ARGUMENTS = [
    dict(stride=2.0), dict(stride=True), dict(stride=(True, 1)), dict(stride=(2.0, 1)),
    dict(stride=torch.tensor([2, 1])), dict(stride=torch.tensor(2.0)), dict(stride=np.bool_(True)),
    dict(stride=np.array([2, 1])), dict(padding=None), dict(padding=(None, 1)),
    dict(padding=("same",)), dict(dilation=torch.tensor([1, 2])), dict(groups=1.0),
    dict(groups=True), dict(groups=None), dict(groups=np.bool_(True)),
]


@pytest.mark.parametrize("overrides", ACCEPTED_ARGUMENTS, ids=str)
def test_integer_like_arguments(overrides):
    torch.testing.assert_close(_call(conv2d, overrides), _call(F.conv2d, overrides))


@pytest.mark.parametrize("overrides", REJECTED_ARGUMENTS, ids=str)
def test_argument_type_errors(overrides):
    with pytest.raises(TypeError):
        _call(F.conv2d, overrides)
    with pytest.raises(TypeError):
        _call(conv2d, overrides)
