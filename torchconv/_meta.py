"""Fake (meta) kernels: output sizes and strides for torch.compile, torch.export and FakeTensor.

Argument checks and shape arithmetic are the C++ ones (csrc/conv2d_checks.cpp) called through
``torchconv._C``, so fake and real kernels agree on sizes, layouts and error messages.
"""

import torch

from ._extension import _C

ops = torch.ops.torchconv


def _empty_result(like: torch.Tensor, size, channels_last: bool) -> torch.Tensor:
    # Same allocation as empty_result() in C++: a 4-D tensor (batch 1 for unbatched results) in
    # the chosen memory format, squeezed back to 3-D.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    size = list(size)
    batched_size = size if len(size) == 4 else [1] + size
    result = torch.empty(batched_size, dtype=like.dtype, device=like.device, memory_format=fmt)
    return result if len(size) == 4 else result.squeeze(0)


def plan_forward(input, weight, bias, stride, padding, dilation, groups):
    """Validates a forward call; returns (output size, channels_last, (pad_top, pad_left))."""
    if isinstance(padding, str):
        return _C.plan_forward(input, weight, bias, stride, [], padding, dilation, groups)
    return _C.plan_forward(input, weight, bias, stride, padding, "", dilation, groups)


@torch.library.register_fake(ops.conv2d.default)
def _conv2d_fake(input, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    size, channels_last, _ = plan_forward(input, weight, bias, stride, padding, dilation, groups)
    return _empty_result(input, size, channels_last)


@torch.library.register_fake(ops.conv2d.padding)
def _conv2d_padding_fake(input, weight, bias=None, stride=(1,), padding="valid", dilation=(1,),
                         groups=1):
    size, channels_last, _ = plan_forward(input, weight, bias, stride, padding, dilation, groups)
    return _empty_result(input, size, channels_last)


@torch.library.register_fake(ops.conv2d_grad_input.default)
def _grad_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    size, channels_last = _C.plan_grad_input(grad_output, weight, input_size, stride, padding,
                                             dilation, groups)
    return _empty_result(grad_output, size, channels_last)


@torch.library.register_fake(ops.conv2d_grad_weight.default)
def _grad_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    size, channels_last = _C.plan_grad_weight(grad_output, input, weight_size, stride, padding,
                                              dilation, groups)
    return _empty_result(grad_output, size, channels_last)
