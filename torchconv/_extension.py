"""Loads the compiled extension, which registers the ``torch.ops.torchconv`` ops."""

import torch  # noqa: F401  (the extension links against torch's libraries)

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - exercised only with a broken install
    raise ImportError(
        "torchconv: the compiled extension torchconv._C could not be loaded "
        f"({exc}). Build it from the repository root with "
        "`pip install --no-build-isolation -e .` against the torch that is installed now "
        f"(torch {torch.__version__}); a build made for another torch version must be rebuilt."
    ) from exc

__all__ = ["_C"]
