"""Image preparation and pixel units without torch: shared by the PyTorch and the ONNX detectors.

Coordinates follow :mod:`keypointgan.geometry`: points are ``(x, y)``, x right, y down; the network
grid's [-1, 1] puts the centres of the first and last pixel at -1 and 1; pixel units put the centre
of column ``j`` at ``x = j``; images are resized with pixel edges on pixel edges (PIL bilinear,
antialiased when shrinking).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["resize_image", "prepare_images", "norm_to_image_pixels", "image_pixels_to_norm", "spread_factor", "COLLAPSED_SPREAD_PX"]


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
        Each image is resized to ``size×size`` (:func:`resize_image`) and scaled as ``v / 127.5 - 1``.
    """
    single = False
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images, single = [images], True
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise InputError("predict takes an H×W×3 uint8 array, a list of them, or an N×H×W×3 uint8 array")
    out = np.empty((len(images), 3, size, size), np.float32)
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
    out /= np.float32(127.5)
    out -= np.float32(1.0)
    return out, hw, single


def _per_image_wh(hw, n: int):
    hw = np.asarray(hw, dtype=np.float64)
    hw = np.broadcast_to(hw, (n, 2)) if hw.ndim == 1 else hw
    return hw[:, 1].reshape(-1, 1), hw[:, 0].reshape(-1, 1)  # W, H as N×1


def norm_to_image_pixels(points, size: int, hw) -> np.ndarray:
    """``N×K×2`` points in [-1, 1] on the ``size``-pixel network grid → pixel ``(x, y)`` of each original image.

    ``points`` may be a numpy array or a torch tensor. ``hw`` is one ``(H, W)`` or an ``N×2`` array of
    them; the image was resized to ``size×size`` with pixel edges on pixel edges
    (see :func:`keypointgan.geometry.rescale_pixels`).
    """
    pts = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points)
    pts = pts.astype(np.float64)
    w, h = _per_image_wh(hw, pts.shape[0])
    px = (pts[..., 0] + 1.0) * (size - 1) / 2.0
    py = (pts[..., 1] + 1.0) * (size - 1) / 2.0
    x = (px + 0.5) * (w / size) - 0.5
    y = (py + 0.5) * (h / size) - 0.5
    return np.stack([x, y], axis=-1).astype(np.float32)


def image_pixels_to_norm(points, size: int, hw) -> np.ndarray:
    """Inverse of :func:`norm_to_image_pixels`: pixel ``(x, y)`` of each original image → [-1, 1] at ``size``."""
    pts = np.asarray(points, dtype=np.float64)
    w, h = _per_image_wh(hw, pts.shape[0])
    px = (pts[..., 0] + 0.5) * (size / w) - 0.5
    py = (pts[..., 1] + 0.5) * (size / h) - 0.5
    return np.stack([2.0 * px / (size - 1) - 1.0, 2.0 * py / (size - 1) - 1.0], axis=-1).astype(np.float32)


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
