"""The library's conventions, without torch: points ↔ pixels ↔ [0, 1] prior units ↔ the network grid,
and uint8 images ↔ the [-1, 1] images networks see.  Every conversion is written here once; the
PyTorch code, the ONNX detector and the data readers call these functions.

* Points are ``(x, y)``: x to the right, y down.  Point arrays are ``…×2`` (``B×K×2`` for batches).
* **pixel** units: the centre of pixel column ``j`` is at ``x = j`` (and of row ``i`` at ``y = i``),
  as in numpy indexing, OpenCV and COCO annotations.
* **norm** units, [-1, 1]: what networks see and emit.  The centres of the pixel columns of a
  ``W``-wide grid are at ``linspace(-1, 1, W)`` (likewise rows with ``H``), so -1 and 1 are the
  centres of the first and last pixel: ``norm = 2 * pixel / (W - 1) - 1``.
* **unit** units, [0, 1]: ``((x + 0.5) / width, (y + 0.5) / height)`` of pixel coordinates, so 0 and
  1 are the outer edges of the first and last pixel: the form of prior files.  It does not depend on
  the resolution: a point keeps its unit coordinates when the image is resized (pixel edges onto
  pixel edges, see :func:`rescale_pixels`).  Metrics ("% of image size") divide *differences* by
  the image size, in which the half-pixel offset cancels.
* **images**: uint8 ``0…255`` ↔ float ``[-1, 1]`` as ``v / UINT8_SCALE − 1`` (:func:`uint8_to_signed`,
  :func:`signed_to_uint8`); resizing is bilinear with pixel edges on pixel edges (PIL, antialiased
  when shrinking: :func:`resize_image`).

Sizes are ``(H, W)`` or one number for square images.  The point conversions take numpy arrays or
torch tensors (and return the same kind); torch is only touched when a tensor is given.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError

__all__ = [
    "as_size", "pixel_to_norm", "norm_to_pixel", "pixel_to_unit", "unit_to_pixel", "unit_to_norm", "norm_to_unit",
    "rescale_pixels", "norm_to_image_pixels", "image_pixels_to_norm", "uint8_to_signed", "signed_to_uint8",
    "resize_image", "prepare_images", "UINT8_SCALE", "spread_factor", "COLLAPSED_SPREAD_PX",
]

Size = int | Sequence[int]

UINT8_SCALE = 127.5
"""uint8 ``v`` ↔ ``v / UINT8_SCALE − 1`` in [-1, 1]."""


def as_size(size: Size) -> tuple[int, int]:
    """``int`` or ``(H, W)`` → ``(H, W)``, validated (a grid needs at least 2×2 pixels)."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h < 2 or w < 2:
        raise ValueError(f"image size must be at least 2×2, got {(h, w)}")
    return h, w


def _wh(size):
    """``(W, H)`` of one size (a number or ``(H, W)``; any positive extents, e.g. a COCO image's), or
    ``N×1`` arrays of them from an ``N×2`` array of ``(H, W)`` (one per point set)."""
    if np.ndim(size) == 2:
        hw = np.asarray(size, dtype=np.float64)
        return hw[:, 1:2], hw[:, 0:1]
    if np.ndim(size) == 0:
        return size, size
    h, w = size
    return w, h


def _stack_like(points, x, y):
    if isinstance(points, np.ndarray):
        return np.stack([x, y], axis=-1).astype(points.dtype, copy=False)
    import torch  # a tensor was given: torch is loaded already

    return torch.stack([x, y], dim=-1)


def _scale(points, size, fn):
    """Apply ``fn(coord, extent)`` to x with W and to y with H; tensors and arrays alike."""
    w, h = _wh(size)
    return _stack_like(points, fn(points[..., 0], w), fn(points[..., 1], h))


def pixel_to_norm(points, size: Size):
    """Pixel ``(x, y)`` (centre of pixel ``j`` at ``j``) → [-1, 1]. Tensor or array ``...×2``."""
    return _scale(points, size, lambda c, n: 2.0 * c / (n - 1) - 1.0)


def norm_to_pixel(points, size: Size):
    """[-1, 1] → pixel ``(x, y)``. Inverse of :func:`pixel_to_norm`."""
    return _scale(points, size, lambda c, n: (c + 1.0) * (n - 1) / 2.0)


def pixel_to_unit(points, size: Size):
    """Pixel ``(x, y)`` → [0, 1] as ``((x + 0.5) / width, (y + 0.5) / height)`` (pixel edges at 0 and 1)."""
    return _scale(points, size, lambda c, n: (c + 0.5) / n)


def unit_to_pixel(points, size: Size):
    """[0, 1] ``((x + 0.5) / width, (y + 0.5) / height)`` → pixel ``(x, y)``. Inverse of :func:`pixel_to_unit`."""
    return _scale(points, size, lambda c, n: c * n - 0.5)


def unit_to_norm(points, size: Size):
    """[0, 1] → [-1, 1] for an image of ``size`` (the grid the network sees)."""
    return _scale(points, size, lambda c, n: (2.0 * c * n - 1.0) / (n - 1) - 1.0)


def norm_to_unit(points, size: Size):
    """[-1, 1] → [0, 1] for an image of ``size``."""
    return _scale(points, size, lambda c, n: ((c + 1.0) * (n - 1) / 2.0 + 0.5) / n)


def rescale_pixels(points, from_size, to_size):
    """Pixel coordinates in an image of ``from_size`` → the same spot after resizing to ``to_size``.

    Matches area/bilinear resizing with ``align_corners=False`` (PIL, OpenCV,
    ``torch.nn.functional.interpolate``), where pixel edges map onto pixel edges.  Either size may
    be an ``N×2`` array of ``(H, W)``, one per point set of an ``N×K×2`` array.
    """
    fw, fh = _wh(from_size)
    tw, th = _wh(to_size)

    def f(c, n_from, n_to):
        return (c + 0.5) * (n_to / n_from) - 0.5

    return _stack_like(points, f(points[..., 0], fw, tw), f(points[..., 1], fh, th))


def _per_image(hw, n: int) -> np.ndarray:
    hw = np.asarray(hw, dtype=np.float64)
    return np.broadcast_to(hw, (n, 2)) if hw.ndim == 1 else hw


def norm_to_image_pixels(points, size: int, hw) -> np.ndarray:
    """``N×K×2`` points in [-1, 1] on the ``size``-pixel network grid → float32 pixel ``(x, y)`` of each
    original image (:func:`norm_to_pixel`, then :func:`rescale_pixels` to the image's size).

    ``points`` may be a numpy array or a torch tensor. ``hw`` is one ``(H, W)`` or an ``N×2`` array of
    them: the image was resized to ``size×size`` with pixel edges on pixel edges.
    """
    pts = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points)
    pts = pts.astype(np.float64)
    return rescale_pixels(norm_to_pixel(pts, size), size, _per_image(hw, pts.shape[0])).astype(np.float32)


def image_pixels_to_norm(points, size: int, hw) -> np.ndarray:
    """Inverse of :func:`norm_to_image_pixels`: pixel ``(x, y)`` of each original image → [-1, 1] at ``size``."""
    pts = np.asarray(points, dtype=np.float64)
    return pixel_to_norm(rescale_pixels(pts, _per_image(hw, pts.shape[0]), size), size).astype(np.float32)


def uint8_to_signed(images):
    """uint8 ``0…255`` → float32 in [-1, 1] as ``v / UINT8_SCALE − 1``: a numpy array or a torch tensor
    (any shape; a tensor stays on its device)."""
    if isinstance(images, np.ndarray):
        return images.astype(np.float32) / np.float32(UINT8_SCALE) - np.float32(1.0)
    return images.float() / UINT8_SCALE - 1.0


def signed_to_uint8(images):
    """Float in [-1, 1] → uint8 ``0…255`` (clamped to [-1, 1], rounded): inverse of :func:`uint8_to_signed`."""
    if isinstance(images, np.ndarray):
        return np.round((np.clip(images, -1.0, 1.0) + 1.0) * UINT8_SCALE).astype(np.uint8)
    return images.clamp(-1, 1).add(1).mul(UINT8_SCALE).round().byte()


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H×W×3`` uint8 image to ``size×size`` (antialiased bilinear)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def prepare_images(images, size: int) -> tuple[np.ndarray, list[tuple[int, int]], bool]:
    """The model's input from images: ``N×3×S×S`` float32 in [-1, 1] (``S = size``).

    Args:
        images: an ``H×W×3`` uint8 array (also ``H×W`` grey or ``H×W×4``), a list of them (sizes may
            differ), or an ``N×H×W×3`` uint8 array.

    Returns:
        the batch, each image's original ``(H, W)``, and whether a single image was given.
        Each image is resized to ``size×size`` (:func:`resize_image`) and scaled by :func:`uint8_to_signed`.
    """
    single = False
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images, single = [images], True
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise InputError("predict takes an H×W×3 uint8 array, a list of them, or an N×H×W×3 uint8 array")
    out = np.empty((len(images), 3, size, size), np.uint8)
    hw = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise InputError(f"image {i} must be H×W×3 (or H×W, H×W×4), got shape {img.shape}")
        if img.dtype != np.uint8:
            raise InputError(f"image {i} must be uint8, got {img.dtype}")
        img = np.ascontiguousarray(img[..., :3])
        hw.append((img.shape[0], img.shape[1]))
        out[i] = resize_image(img, size).transpose(2, 0, 1)
    return uint8_to_signed(out), hw, single


COLLAPSED_SPREAD_PX = 1.5
"""A pose whose keypoints all lie within about this many pixels (of the model's grid) of their centroid has
collapsed: the scale of :func:`spread_factor`."""


def spread_factor(points: np.ndarray, size: int, scale_px: float = COLLAPSED_SPREAD_PX) -> np.ndarray:
    """How far each predicted pose is from a collapsed one: ``N×K×2`` points in [-1, 1] → ``N×1`` in [0, 1].

    ``r`` is the largest distance of a keypoint from the pose's centroid, in pixels of the ``size``-pixel
    grid, and the factor is ``1 − exp(−(r / scale_px)²)``: 0.36 at 1 px, 0.83 at 2 px, 0.98 at 3 px, 1 for
    any pose of a few pixels or more.  A collapsed model puts every keypoint within a pixel or so of the
    others, and its heatmaps still agree with the mirror image's (the agreement reads ~1): this factor
    brings its confidence down (benchmarks/confidence_collapse.py measures it).
    """
    import warnings

    pts = np.asarray(points, dtype=np.float64) * ((size - 1) / 2)  # [-1, 1] → pixels of the grid
    with warnings.catch_warnings():  # a pose of NaN keypoints only: "mean of empty slice", and spread 0
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.linalg.norm(pts - np.nanmean(pts, axis=1, keepdims=True), axis=-1)
    r = np.nanmax(r, axis=1, initial=0.0)  # NaN keypoints left out
    return (1.0 - np.exp(-np.square(r / scale_px)))[:, None].astype(np.float32)
