"""torchconv.functional.conv2d: F.conv2d's signature and semantics on torchconv's kernels."""

import operator
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _autograd

_IntOrPair = Union[int, Sequence[int]]


def _as_int(value):
    """value as an int where F.conv2d's argument parser takes it as one (ints but not bools,
    numpy integers, one-element integer or bool tensors), else None."""
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, Tensor):
        integral = not (value.is_floating_point() or value.is_complex())
        return int(value.item()) if value.numel() == 1 and integral else None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _as_list(value, name: str) -> list:
    # F.conv2d's argument parser turns a single int into one value per spatial dimension; lists
    # are passed through so that wrong lengths raise F.conv2d's error from the shared checks.
    if type(value) is int:
        return [value, value]
    if type(value) in (list, tuple) and all(type(v) is int for v in value):
        return list(value)
    if not isinstance(value, (list, tuple)):
        single = None if isinstance(value, Tensor) and value.dim() > 0 else _as_int(value)
        if single is None:
            raise TypeError(f"conv2d(): argument '{name}' must be tuple of ints, not "
                            f"{type(value).__name__}")
        return [single, single]
    values = [_as_int(v) for v in value]
    for pos, (v, original) in enumerate(zip(values, value)):
        if v is None:
            raise TypeError(f"conv2d(): argument '{name}' must be tuple of ints, but found "
                            f"element of type {type(original).__name__} at pos {pos}")
    return values


def _autocast_operands(input, weight, bias):
    """The operands as autocast hands them to F.conv2d (on its lower-precision list): floating
    tensors of the autocast device type, float64 excepted, cast to the autocast dtype."""
    if not torch._C._is_any_autocast_enabled():  # one C++ call (the test below costs 2 us)
        return input, weight, bias
    device_type = input.device.type
    if not (torch.amp.is_autocast_available(device_type)
            and torch.is_autocast_enabled(device_type)):
        return input, weight, bias
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        if (t is None or t.device.type != device_type or not t.is_floating_point()
                or t.dtype == torch.float64):
            return t
        return t.to(dtype)

    return cast(input), cast(weight), cast(bias)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: _IntOrPair = 1,
    padding: Union[str, _IntOrPair] = 0,
    dilation: _IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution with exactly the arguments, results and errors of
    :func:`torch.nn.functional.conv2d`, computed by torchconv's kernels.

    ``padding`` may be an int, a pair, ``'valid'`` or ``'same'`` (even kernels pad one more on
    the bottom/right, inside the kernel: no padded copy of the input is made). Input is
    ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    """
    stride = _as_list(stride, "stride")
    dilation = _as_list(dilation, "dilation")
    if not isinstance(padding, str):
        padding = _as_list(padding, "padding")
    if type(groups) is not int:
        as_int = _as_int(groups)
        if as_int is None:
            raise TypeError(f"conv2d(): argument 'groups' must be int, not {type(groups).__name__}")
        groups = as_int
    if torch.compiler.is_compiling():
        # Traced graphs call the op itself: its fake kernel and registered autograd formula
        # are what torch.compile / torch.export need.
        return _autograd.conv2d_op(padding)(input, weight, bias, stride, padding, dilation,
                                            groups)
    # Autocast, done here too: the autograd.Functions below save the operands they are given,
    # and must save those the kernels run on (the op's own autocast kernel would cast them only
    # inside the Function, leaving float32 saved tensors against a half-precision gradient).
    input, weight, bias = _autocast_operands(input, weight, bias)
    args = (input, weight, bias, stride, padding, dilation, groups)
    if _autograd.needs_eager_function():
        # forward-mode AD / functorch: the autograd.Function with jvp
        return _autograd.Conv2dFunction.apply(*args)
    # reverse mode (a C++ node records the registered formula) or nothing recorded (below the
    # autograd key: autocast and dispatch modes sit above it and still apply)
    return _autograd.conv2d_eager(*args)


__all__ = ["conv2d"]
