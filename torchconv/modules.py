"""Module layer of torchconv: ``Conv2d`` and ``LazyConv2d``.

``torchconv.Conv2d`` is a drop-in replacement for :class:`torch.nn.Conv2d` whose forward pass
runs torchconv's own convolution (``torchconv.functional.conv2d``, backed by the
``torchconv::conv2d`` ops) instead of ``aten::conv2d``.  Everything else -- constructor, argument
validation, attributes, parameter initialisation, ``repr``, ``state_dict`` layout, pickling --
is that of ``nn.Conv2d``.

Design decision: ``Conv2d`` subclasses ``nn.Conv2d``
---------------------------------------------------
``torchconv.Conv2d`` is a *subclass* of ``nn.Conv2d`` that only replaces ``_conv_forward`` (and
restates ``forward`` with type annotations for TorchScript).  Consequences, all intended:

* ``isinstance(m, nn.Conv2d)`` is true.  Code that walks a model and treats every convolution
  alike keeps working unchanged: initialisation loops such as
  ``if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, ...)``, weight-decay
  grouping, ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (which deep-copies the conv, so the fused
  module is still a ``torchconv.Conv2d``), FLOP counters, ``torch.nn.utils.parametrize`` and the
  old hook-based ``weight_norm``/``spectral_norm``/``prune`` utilities.
* The constructor *is* ``nn.Conv2d.__init__``: same ``ValueError`` messages in the same order,
  same attributes (``padding`` is a tuple or a string, ``_reversed_padding_repeated_twice``,
  ``transposed=False``, ``output_padding=(0, 0)``, ...), and the same random-number stream
  (``kaiming_uniform_(a=sqrt(5))`` then the bias ``uniform_``), so the same seed gives
  bit-identical parameters.  It stays in step with whatever torch version is installed.
* Code that checks the *exact* type, ``type(m) is nn.Conv2d`` (the eager-mode quantization
  mappings, FX conv/bn fusion patterns, ``torch.ao`` QAT ``from_float``), does **not** match a
  ``torchconv.Conv2d``.  That is deliberate: those tools would replace the module by one that
  calls ``aten::conv2d`` again (or a quantized kernel), silently dropping torchconv.  Use
  :func:`torchconv.revert` first if such a tool is needed.
* ``repr`` prints ``Conv2d(...)`` exactly like ``nn.Conv2d`` (the class name is the same);
  use ``type(m)`` to tell them apart.

Inside TorchScript (``torch.jit.is_scripting()``) ``_conv_forward`` calls the registered ops
``torch.ops.torchconv.conv2d`` / ``torch.ops.torchconv.conv2d.padding`` directly, since the
Python functional layer is not scriptable; in eager mode, ``torch.compile`` and ``torch.export``
it calls ``torchconv.functional.conv2d``.  ``torch.fx.symbolic_trace`` traces through the module
(it is not one of FX's ``torch.nn`` leaf modules) and records that call as one
``call_function`` node.

``LazyConv2d`` is ``nn.LazyConv2d`` (it reuses torch's lazy-initialisation mixin) with the
torchconv forward, and it turns into a ``torchconv.Conv2d`` (``cls_to_become``) on the first call.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .functional import conv2d

__all__ = ["Conv2d", "LazyConv2d"]

# torch.fx.symbolic_trace records calls to `conv2d` made from this file as single graph nodes
# (call_function torchconv.functional.conv2d) instead of tracing into the functional layer, whose
# argument handling and autograd.Function do not accept FX proxies. (nn.Conv2d is a leaf module
# for FX; torchconv.Conv2d is traced through, down to this call.)
torch.fx.wrap("conv2d")


class Conv2d(nn.Conv2d):
    r"""2-D convolution computed by torchconv; a drop-in replacement for :class:`torch.nn.Conv2d`.

    Takes exactly the arguments of :class:`torch.nn.Conv2d`::

        Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
               groups=1, bias=True, padding_mode='zeros', device=None, dtype=None)

    and has the same attributes, parameters (``weight`` of shape
    ``(out_channels, in_channels // groups, kH, kW)``, optional ``bias`` of shape
    ``(out_channels,)``), default initialisation, ``state_dict`` keys and ``repr``.  ``padding``
    may be an int, a pair, ``'same'`` or ``'valid'``; ``padding_mode`` is one of ``'zeros'``,
    ``'reflect'``, ``'replicate'``, ``'circular'`` (non-zero modes pad the input explicitly with
    :func:`torch.nn.functional.pad` and then convolve without implicit padding, as
    ``nn.Conv2d`` does).  Accepts batched ``(N, C, H, W)`` and unbatched ``(C, H, W)`` input.

    It is a subclass of ``nn.Conv2d`` (``isinstance(m, nn.Conv2d)`` holds, ``type(m) is
    nn.Conv2d`` does not); see the module documentation for why.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        # Delegates all validation, attribute set-up and initialisation to nn.Conv2d, so that
        # behaviour (error messages, RNG stream, attributes) is identical by construction.
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if torch.jit.is_scripting():
            # TorchScript cannot compile the Python functional layer: call the ops. `padding`,
            # `stride`, ... are TorchScript constants (nn.Conv2d lists them in __constants__),
            # so the `isinstance` test below is resolved while compiling.
            if self.padding_mode != "zeros":
                return torch.ops.torchconv.conv2d(
                    F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode),
                    weight,
                    bias,
                    [self.stride[0], self.stride[1]],
                    [0, 0],
                    [self.dilation[0], self.dilation[1]],
                    self.groups,
                )
            padding = self.padding
            if isinstance(padding, str):
                # TorchScript has no attribute access on op overloads; it picks the
                # `conv2d.padding` overload from the `str` argument.
                return torch.ops.torchconv.conv2d(
                    input,
                    weight,
                    bias,
                    [self.stride[0], self.stride[1]],
                    padding,
                    [self.dilation[0], self.dilation[1]],
                    self.groups,
                )
            return torch.ops.torchconv.conv2d(
                input,
                weight,
                bias,
                [self.stride[0], self.stride[1]],
                [padding[0], padding[1]],
                [self.dilation[0], self.dilation[1]],
                self.groups,
            )
        return _eager_conv_forward(self, input, weight, bias)

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.weight, self.bias)


@torch.jit.unused
def _eager_conv_forward(
    self: Conv2d, input: Tensor, weight: Tensor, bias: Optional[Tensor]
) -> Tensor:
    # The eager / torch.compile / torch.export / FX path (never compiled by TorchScript).
    if self.padding_mode != "zeros":
        return conv2d(
            F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode),
            weight,
            bias,
            self.stride,
            (0, 0),
            self.dilation,
            self.groups,
        )
    return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class LazyConv2d(nn.LazyConv2d, Conv2d):  # type: ignore[misc]
    r"""A :class:`torchconv.Conv2d` whose ``in_channels`` is inferred from the first input.

    Arguments are those of :class:`torch.nn.LazyConv2d`::

        LazyConv2d(out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                   bias=True, padding_mode='zeros', device=None, dtype=None)

    ``weight`` and ``bias`` are :class:`~torch.nn.parameter.UninitializedParameter` until the
    first forward call (or a ``load_state_dict``), which sets ``in_channels`` to ``input.size(1)``
    (``input.size(0)`` for unbatched input), materialises and initialises the parameters exactly
    as ``nn.LazyConv2d`` would, and turns the module into a :class:`torchconv.Conv2d`.

    It subclasses ``nn.LazyConv2d`` (whose lazy machinery it reuses) and ``torchconv.Conv2d``
    (whose forward it uses): ``isinstance(m, nn.LazyConv2d)`` holds before the first call.
    """

    cls_to_become = Conv2d  # type: ignore[assignment]
