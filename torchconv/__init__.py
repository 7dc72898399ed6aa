"""torchconv: a drop-in alternative to torch.nn.Conv2d.

    import torchconv
    y = torchconv.functional.conv2d(x, w, b, stride=1, padding="same")
    conv = torchconv.Conv2d(3, 16, 3, padding=1)
    model = torchconv.convert(model)      # swap every nn.Conv2d of a model

Ops live under ``torch.ops.torchconv`` (conv2d, conv2d.padding, conv2d_grad_input,
conv2d_grad_weight).
"""

from . import _extension  # noqa: F401  (loads the ops; clear error if the build is missing)
from . import _meta  # noqa: F401  (fake kernels)
from . import _autograd  # noqa: F401  (autograd formulas, vmap rules)
from . import functional
from .modules import Conv2d, LazyConv2d
from .convert import convert, revert

__version__ = "0.1.0"

__all__ = ["functional", "Conv2d", "LazyConv2d", "convert", "revert"]
