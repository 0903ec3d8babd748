"""Checkpoint files: written atomically, read without executing code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
saved with ``torch.save``.  Loading uses ``torch.load(weights_only=True)``,
whose unpickler only builds those types, so a file crafted to run code is
refused rather than executed.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "resolve_checkpoint"]


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Serialise ``state`` and write it to ``path`` atomically (temp file, fsync, rename)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder → its latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        for cand in (path / "checkpoints" / "latest.pt", path / "latest.pt", path / "checkpoint.pt"):
            if cand.is_file():
                return cand
        raise InputError("no checkpoint in this folder (looked for checkpoints/latest.pt)", path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (any device → ``map_location``).

    Never runs code from the file: ``torch.load(weights_only=True)`` refuses
    any pickled object other than tensors and plain containers.
    """
    path = resolve_checkpoint(path)
    if path.stat().st_size == 0:
        raise InputError("not a readable checkpoint: the file is empty", path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        text = str(exc).lower()
        if "unsupported global" in text or "unsupported class" in text:
            raise InputError("refusing to load: the file holds objects other than tensors and plain data "
                             "(loading it could run code)", path) from None
        if "central directory" in text or isinstance(exc, EOFError) or "unexpected eof" in text:
            raise InputError("not a readable checkpoint: the file is truncated or not written by torch.save", path) from None
        if "load key" in text or "unsupported operand" in text:
            raise InputError("not a readable checkpoint: not a file written by torch.save", path) from None
        raise InputError(f"not a readable checkpoint ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})", path) from None
    if not isinstance(state, dict) or state.get("format") != "keypointgan-checkpoint":
        raise InputError("not a keypointgan checkpoint (a torch file without the keypointgan format marker)", path)
    return state
