"""Mixed precision: which arithmetic the networks use, as an autocast context and (fp16) a gradient scaler.

Autocast runs the networks' convolutions and matrix products (Φ, η, Ψ, D and VGG-19) in bf16 or
fp16; the renderer β and the soft-argmax switch autocast off and work in float32
(:mod:`keypointgan.geometry`), the objective casts the networks' outputs to float32 before the
losses, and the weights, optimiser moments and checkpoints stay float32.  fp16 needs a gradient
scaler (its range is too small for small gradients); bf16 has float32's range and needs none.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import InputError
from ..log import logger

__all__ = ["Precision", "resolve_precision", "cpu_has_fast"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on CUDA devices that support it, else ``fp32`` (on CPU bf16 is faster for
    the 128-px networks but measured separately for accuracy: docs/benchmarks.md); other names are
    checked against the device."""
    device = torch.device(device)
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"precision bf16 requested but {torch.cuda.get_device_name(device)} does not support it; use fp16 or fp32")
    if name == "fp16" and device.type == "mps":
        raise InputError("precision fp16 is not supported on MPS here; use fp32")
    return name


def cpu_has_fast(name: str) -> bool:
    """Whether this CPU computes ``bf16``/``fp16`` convolutions natively (oneDNN with AVX-512-BF16/FP16 or
    AMX); without, torch emulates them, 10× slower than float32 on an AVX2 machine (docs/benchmarks.md)."""
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}.get(name)
    if check is None:
        return True
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # pragma: no cover - an older or unusual build
        return False


class Precision:
    """The run's arithmetic on ``device``: :meth:`autocast` for forward passes, ``scaler`` for fp16 (else None)."""

    def __init__(self, name: str, device: torch.device):
        self.device = torch.device(device)
        self.name = resolve_precision(name, self.device)
        self.dtype = _DTYPES.get(self.name, torch.float32)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None
        if self.device.type == "cpu" and not cpu_has_fast(self.name):
            logger.warning(f"precision {self.name}: this CPU has no native {self.name} arithmetic (AVX-512-{self.name.upper()} or AMX), "
                           f"so torch emulates it — much slower than fp32 here")

    def autocast(self):
        """A context in which the networks run in this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)
