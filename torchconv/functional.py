"""torchconv.functional.conv2d: F.conv2d's signature and semantics on torchconv's kernels."""

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _autograd

_IntOrPair = Union[int, Sequence[int]]


def _as_list(value) -> list:
    # F.conv2d's argument parser turns a single int into one value per spatial dimension; lists
    # are passed through so that wrong lengths raise F.conv2d's error from the shared checks.
    if isinstance(value, (int, torch.SymInt)):
        return [value, value]
    return list(value)


class _Conv2dFunction(torch.autograd.Function):
    """Eager-mode wrapper of the op that adds forward-mode AD (the op's reverse mode comes from
    its registered autograd formula, which torch.compile uses directly)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        op = _autograd.conv2d_op(padding)
        return op(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _autograd.setup_conv2d(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1])
        ctx.conv_args = inputs[3:]
        ctx.output_shape = output.shape

    @staticmethod
    def backward(ctx, grad):
        return _autograd.conv2d_backward(ctx, grad)

    @staticmethod
    def jvp(ctx, d_input, d_weight, d_bias, *_):
        # conv2d is bilinear: d(conv(x, w) + b) = conv(dx, w) + conv(x, dw) + db. The tangent
        # terms call the Function again, so derivatives of the tangent work too.
        input, weight = ctx.saved_tensors
        tangent = None
        if d_input is not None:
            tangent = _Conv2dFunction.apply(d_input, weight, None, *ctx.conv_args)
        if d_weight is not None:
            term = _Conv2dFunction.apply(input, d_weight, None, *ctx.conv_args)
            tangent = term if tangent is None else tangent + term
        if d_bias is not None:
            term = d_bias[:, None, None].expand(ctx.output_shape)
            tangent = term.clone() if tangent is None else tangent + term
        return tangent


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
    stride = _as_list(stride)
    dilation = _as_list(dilation)
    if not isinstance(padding, str):
        padding = _as_list(padding)
    if torch.compiler.is_compiling():
        # Traced graphs call the op itself: its fake kernel and registered autograd formula
        # are what torch.compile / torch.export need.
        return _autograd.conv2d_op(padding)(input, weight, bias, stride, padding, dilation,
                                            groups)
    return _Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups)


__all__ = ["conv2d"]
