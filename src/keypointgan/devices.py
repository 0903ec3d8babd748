"""Device selection: one place that turns a device name into a ``torch.device``."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["select_device"]


def select_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU; otherwise the named device, checked to exist."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if dev.type == "meta":
        raise InputError(f"device {name!r} holds no data (tensors with shapes only); use cpu, cuda or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not mps_ok:
        raise InputError(f"device {name!r} requested but MPS is not available")
    return dev
