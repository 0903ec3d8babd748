"""Foreground masks multiplied into frames (Simplified Human3.6M's ``BackgroudMask``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["read_mask", "apply_mask"]


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask image as an ``H×W`` float32 array in [0, 1].

    1-bit PNGs and 0/1-valued 8-bit PNGs (what Simplified Human3.6M ships) are
    read as 0/1; other 8- or 16-bit masks are scaled by their type's maximum
    (255 or 65535).  A colour mask uses its first channel.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError("mask file not found", path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read mask image ({exc.__class__.__name__}: {exc})", path) from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"mask has unusable shape {arr.shape}", path)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    m = float(arr.max())
    if m <= 1:
        return arr.astype(np.float32)
    return arr.astype(np.float32) / (65535.0 if m > 255 else 255.0)


def apply_mask(img: np.ndarray, mask_path: str | Path) -> np.ndarray:
    """``H×W×3`` uint8 frame × its mask (background to black), as uint8."""
    mask = read_mask(mask_path)
    if mask.shape != img.shape[:2]:
        raise InputError(f"mask is {mask.shape[1]}×{mask.shape[0]} but its frame is {img.shape[1]}×{img.shape[0]}", mask_path)
    return np.round(img.astype(np.float32) * mask[..., None]).astype(np.uint8)
