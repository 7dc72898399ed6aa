"""Swap ``torch.nn.Conv2d`` layers of an existing model for ``torchconv.Conv2d`` and back.

``convert(model)`` makes every convolution of exact type ``nn.Conv2d`` in the module tree run
torchconv's convolution; ``revert(model)`` undoes it.

How the swap is done
--------------------
``torchconv.Conv2d`` subclasses ``nn.Conv2d`` and adds no state of its own, so a conversion only
has to change the *class* of each convolution object (``module.__class__ = torchconv.Conv2d``),
the same mechanism ``LazyModuleMixin`` (``cls_to_become``) and ``torch.nn.utils.parametrize``
use.  The module object itself is kept, and with it everything it holds:

* the same ``Parameter`` objects (values, device, dtype, ``requires_grad``, layout), so an
  optimizer built before the conversion still steps the right tensors; buffers; the
  ``training`` flag; any extra attributes;
* forward, forward-pre, backward and state-dict hooks, with their ordering and their
  ``RemovableHandle``\\ s (``handle.remove()`` still works after ``convert(..., inplace=True)``),
  including the hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm`` / ``prune``;
* sharing: a convolution reachable from several parents (or referenced from outside the
  module tree) is one object before and after, and no new random numbers are drawn.

Which modules are converted
---------------------------
Only modules whose type is *exactly* ``nn.Conv2d`` (checked with
:func:`torch.nn.utils.parametrize.type_before_parametrizations`, see below); ``nn.LazyConv2d``
modules that have not been called yet become ``torchconv.LazyConv2d`` (which turns into a
``torchconv.Conv2d`` on its first call).  Subclasses of ``nn.Conv2d`` are left alone, because
their forward may do something else: ``torchconv.Conv2d`` itself, QAT/quantized/intrinsic
convolutions from ``torch.ao``, and user subclasses.  ``revert`` is the mirror image: exact
``torchconv.Conv2d`` -> ``nn.Conv2d`` and ``torchconv.LazyConv2d`` -> ``nn.LazyConv2d``.

Scripted modules (``torch.jit.ScriptModule``) cannot be converted and are left as they are;
convert before scripting.  Modules kept in plain Python containers (lists, dicts) that are not
registered submodules are not part of the module tree and are not visited.

Parametrizations
----------------
A convolution with ``torch.nn.utils.parametrize`` parametrizations (e.g. ``orthogonal``,
``weight_norm`` from ``torch.nn.utils.parametrizations``) has a generated class
``ParametrizedConv2d`` deriving from ``nn.Conv2d``.  It is converted to an equivalent generated
class deriving from ``torchconv.Conv2d`` (same properties, same ``parametrizations`` container
and ``original`` tensors, unchanged values), so ``parametrize.is_parametrized``,
``type_before_parametrizations`` (which then gives ``torchconv.Conv2d``) and
``remove_parametrizations`` keep working.
"""

import copy
from typing import Dict, Type

import torch.nn as nn
from torch.nn.utils import parametrize

from .modules import Conv2d, LazyConv2d

__all__ = ["convert", "revert"]

_TO_TORCHCONV: Dict[type, type] = {nn.Conv2d: Conv2d, nn.LazyConv2d: LazyConv2d}
_TO_NATIVE: Dict[type, type] = {Conv2d: nn.Conv2d, LazyConv2d: nn.LazyConv2d}


def convert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Conv2d`` in ``model`` by an equivalent ``torchconv.Conv2d``.

    Args:
        model: a module; any ``nn.Module`` tree, or a single ``nn.Conv2d``.
        inplace: if ``False`` (default) ``model`` is deep-copied first and left untouched;
            if ``True`` the convolutions of ``model`` are converted where they are (same
            objects, same parameters, hooks, handles and sharing).

    Returns:
        The converted model (``model`` itself when ``inplace=True``).  If ``model`` is itself
        an ``nn.Conv2d`` the returned module is a ``torchconv.Conv2d``.

    Only modules of exact type ``nn.Conv2d`` (parametrized or not) and not-yet-called
    ``nn.LazyConv2d`` are converted; subclasses of ``nn.Conv2d`` are kept.  See the module
    documentation for details.
    """
    return _swap_classes(model, _TO_TORCHCONV, inplace)


def revert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Replace every ``torchconv.Conv2d`` in ``model`` by an equivalent ``nn.Conv2d``.

    The inverse of :func:`convert`, with the same arguments and guarantees: exact
    ``torchconv.Conv2d`` (parametrized or not) becomes ``nn.Conv2d`` and
    ``torchconv.LazyConv2d`` becomes ``nn.LazyConv2d``.
    """
    return _swap_classes(model, _TO_NATIVE, inplace)


def _swap_classes(model: nn.Module, mapping: Dict[type, type], inplace: bool) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    if not inplace:
        try:
            model = copy.deepcopy(model)
        except Exception as exc:
            raise RuntimeError(
                "torchconv: inplace=False deep-copies the model first, and copy.deepcopy failed "
                f"on it ({type(exc).__name__}: {exc}). Models using hook-based "
                "torch.nn.utils.prune / weight_norm / spectral_norm hold non-leaf tensors that "
                "cannot be deep-copied; convert them with inplace=True."
            ) from exc
    seen = set()
    # Iterative walk over the registered submodules (including duplicates and the
    # `parametrizations` containers); `seen` handles shared modules and reference cycles.
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        _swap_one(module, mapping)
        stack.extend(m for m in module._modules.values() if m is not None)
    return model


def _swap_one(module: nn.Module, mapping: Dict[type, type]) -> None:
    base = parametrize.type_before_parametrizations(module)
    target = mapping.get(base)
    if target is None:
        return
    if parametrize.is_parametrized(module):
        module.__class__ = _parametrized_class(type(module), target)
    else:
        module.__class__ = target


def _parametrized_class(param_cls: Type[nn.Module], new_base: type) -> type:
    # `param_cls` is the class torch.nn.utils.parametrize generated for one module: a subclass of
    # the original class holding that module's parametrized-tensor properties and its
    # (de)serialisation guards.  Build the same class on top of `new_base`.  The properties read
    # `self.parametrizations[name]`, so they work unchanged on the re-based class.
    namespace = {
        key: value
        for key, value in vars(param_cls).items()
        if key not in ("__dict__", "__weakref__")
    }
    return type(param_cls.__name__, (new_base,), namespace)
