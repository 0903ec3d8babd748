"""Reading MATLAB ``.mat`` files (v5, through SciPy) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["load_mat", "mat_field", "mat_scalar", "mat_string", "mat_struct"]


def load_mat(path: str | Path, *, what: str = ".mat file") -> dict[str, Any]:
    """``scipy.io.loadmat`` of ``path`` (structs as numpy records); any failure is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        import scipy.io
    except ImportError:  # pragma: no cover - scipy is a dependency
        raise InputError("reading .mat files needs SciPy (pip install scipy)", path) from None
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise InputError(f"cannot read {what}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7", path) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(f"cannot read {what} ({exc.__class__.__name__}: {exc})", path) from None


def mat_field(mat: dict, name: str, path: str | Path) -> np.ndarray:
    """A top-level variable of a loaded .mat file, or an error naming the file and the field."""
    if name not in mat:
        have = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(f"no '{name}' variable (has: {', '.join(have) or 'none'})", path)
    return mat[name]


def mat_scalar(value: Any, name: str, path: str | Path) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"'{name}' must be a number, got shape {arr.shape} of {arr.dtype}", path)
    return float(arr.reshape(-1)[0])


def mat_string(value: Any, name: str, path: str | Path) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return str(arr.reshape(-1)[0]) if arr.size else ""
    if arr.dtype == object and arr.size == 1:
        return mat_string(arr.reshape(-1)[0], name, path)
    raise InputError(f"'{name}' must be a string, got {arr.dtype}", path)


def mat_struct(value: Any):
    """A MATLAB struct read by SciPy (a 1×1 record array, maybe inside cells) → its record, or None if it is not one."""
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.reshape(-1)[0])
    if arr.dtype.names is None or arr.size != 1:
        return None
    return arr.reshape(-1)[0]
