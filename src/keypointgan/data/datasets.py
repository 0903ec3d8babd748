"""Torch datasets over the generic layout.

Images come out as ``3×S×S`` float tensors in [-1, 1]; points in the
library's conventions (see :mod:`keypointgan.geometry`).  Random choices use a
generator seeded from ``(seed, epoch, index)``, so an item is the same in any
process or worker and the datasets can be sharded freely (e.g. with
``DistributedSampler``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import geometry as G
from ..io import read_image
from .layout import Layout, Video

__all__ = [
    "FrameStore",
    "FramePairDataset",
    "PriorPoseDataset",
    "EvalFrameDataset",
    "resize_image",
    "image_to_tensor",
    "augment_poses",
]


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H×W×3`` uint8 image to ``size×size`` (antialiased bilinear)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """``H×W×3`` uint8 (or ``N×H×W×3``) → ``3×H×W`` float in [-1, 1] (or ``N×3×H×W``)."""
    img = np.ascontiguousarray(img)
    t = torch.from_numpy(img if img.flags.writeable else img.copy())
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    return t.float().div_(127.5).sub_(1.0)


class FrameStore:
    """The frames of some videos, read and resized to ``size`` on demand or all at once.

    With ``preload`` (default when the frames fit in ``max_preload_bytes``)
    every frame is decoded once into one uint8 array, which makes CPU training
    fast; otherwise frames are read from disk at each access.
    """

    def __init__(self, videos: Sequence[Video], size: int, *, preload: bool | None = None, max_preload_bytes: float = 2e9):
        self.videos = list(videos)
        self.size = int(size)
        self.offsets = np.cumsum([0] + [len(v) for v in self.videos])
        total = int(self.offsets[-1])
        if preload is None:
            preload = total * self.size * self.size * 3 <= max_preload_bytes
        self._cache: np.ndarray | None = None
        self.original_sizes: dict[int, tuple[int, int]] = {}
        if preload:
            cache = np.empty((total, self.size, self.size, 3), dtype=np.uint8)
            for i in range(total):
                cache[i] = self._read(i)
            self._cache = cache

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global frame index → (video index, frame index)."""
        v = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return v, int(index - self.offsets[v])

    def path(self, index: int) -> Path:
        v, t = self.locate(index)
        return self.videos[v].frames[t]

    def _read(self, index: int) -> np.ndarray:
        img = read_image(self.path(index))
        v, t = self.locate(index)
        masks = getattr(self.videos[v], "masks", None)  # foreground masks (Simplified Human3.6M)
        if masks is not None:
            from .masks import apply_mask

            img = apply_mask(img, masks[t])
        self.original_sizes[index] = (img.shape[0], img.shape[1])
        return resize_image(img, self.size)

    def original_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of frame ``index`` before resizing (reads the frame if it was never read)."""
        if index not in self.original_sizes:
            self._read(index)
        return self.original_sizes[index]

    def get(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``S×S×3`` uint8."""
        return self._cache[index] if self._cache is not None else self._read(index)


class FramePairDataset(Dataset):
    """Pairs ``(x, x')`` of frames of one video: ``x`` the target, ``x'`` the appearance frame.

    Item ``i`` uses frame ``i`` (over all videos) as the target; the
    appearance frame is drawn ``g`` frames before or after it with ``g``
    uniform in ``gap = (min, max)`` (clipped to the video; the nearest legal
    gap is used when the video is shorter).  Returns ``(x, x_app)``, each
    ``3×S×S`` in [-1, 1].
    """

    def __init__(self, store: FrameStore, *, gap: tuple[int, int] = (1, 20), seed: int = 0):
        if gap[0] < 0 or gap[1] < gap[0]:
            raise ValueError(f"gap must be (min, max) with 0 <= min <= max, got {gap}")
        self.store = store
        self.gap = (int(gap[0]), int(gap[1]))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.store)

    def partner(self, index: int) -> int:
        """Global index of the appearance frame paired with target ``index`` (this epoch)."""
        v, t = self.store.locate(index)
        n = len(self.store.videos[v])
        if n == 1:
            return index
        rng = np.random.default_rng((self.seed, self.epoch, index))
        lo, hi = self.gap[0], min(self.gap[1], n - 1)
        lo = min(max(lo, 1), hi)
        # legal partners: t + lo .. t + hi after t, and t - hi .. t - lo before it (inside the video)
        after = max(0, min(t + hi, n - 1) - (t + lo) + 1)
        before = max(0, (t - lo) - max(t - hi, 0) + 1)
        if after + before == 0:  # the gap range falls outside the video on both sides: farthest frame
            return int(self.store.offsets[v] + (0 if t >= n - 1 - t else n - 1))
        k = int(rng.integers(after + before))
        j = t + lo + k if k < after else max(t - hi, 0) + (k - after)
        return int(self.store.offsets[v] + j)

    def __getitem__(self, index: int):
        j = self.partner(index)
        return image_to_tensor(self.store.get(index)), image_to_tensor(self.store.get(j))


class PriorPoseDataset(Dataset):
    """Prior poses as ``K×2`` float tensors in [-1, 1] for a ``size``-pixel training grid.

    Args:
        poses: ``(N, K, 2)`` array in [0, 1] as ``(x / width, y / height)``.
        size: the training resolution (the grid the network sees).
    """

    def __init__(self, poses: np.ndarray, size: int):
        self.points = torch.from_numpy(G.unit_to_norm(np.asarray(poses, dtype=np.float32), size)).float()

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.points[index]


class EvalFrameDataset(Dataset):
    """Frames with true keypoints for evaluation.

    Returns ``(x, keypoints, hw, video_index)``: the frame as ``3×S×S`` in
    [-1, 1], its keypoints as ``K×2`` pixel ``(x, y)`` *of the original image*
    (NaN where missing), the original ``(H, W)`` and the index of its video.
    """

    def __init__(self, layout: Layout, size: int, videos: Sequence[Video] | None = None, *, preload: bool | None = None):
        self.layout = layout
        self.videos = list(videos if videos is not None else layout.videos)
        self.store = FrameStore(self.videos, size, preload=preload)
        self.keypoints = np.concatenate([layout.load_keypoints(v) for v in self.videos], axis=0)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int):
        img = image_to_tensor(self.store.get(index))
        hw = self.store.original_size(index)
        v, _ = self.store.locate(index)
        return img, torch.from_numpy(self.keypoints[index]), torch.tensor(hw), v


def augment_poses(
    points: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    rotate_deg: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.1,
    flip: bool = False,
    flip_permutation: Sequence[int] | None = None,
) -> torch.Tensor:
    """Random similarity transforms of ``B×K×2`` poses in [-1, 1] (about each pose's centre).

    Rotation uniform in ±``rotate_deg``, isotropic scale uniform in ``scale``,
    translation uniform in ±``translate`` (norm units) per axis; with ``flip``
    half of the poses are mirrored left-right and their symmetric keypoints
    swapped (``flip_permutation``).
    """
    b = points.shape[0]
    dev, dt = points.device, points.dtype

    def u(lo, hi, *shape):
        return torch.rand(*shape, generator=generator, device=dev, dtype=dt) * (hi - lo) + lo

    ang = u(-rotate_deg, rotate_deg, b) * (math.pi / 180.0)
    s = u(scale[0], scale[1], b)
    c, sn = torch.cos(ang) * s, torch.sin(ang) * s
    rot = torch.stack([torch.stack([c, -sn], -1), torch.stack([sn, c], -1)], -2)  # B×2×2
    centre = points.mean(dim=1, keepdim=True)
    out = (points - centre) @ rot.transpose(1, 2) + centre + u(-translate, translate, b, 1, 2)
    if flip:
        mask = torch.rand(b, generator=generator, device=dev) < 0.5
        mirrored = out.clone()
        mirrored[..., 0] = -mirrored[..., 0]
        if flip_permutation is not None:
            mirrored = mirrored[:, list(flip_permutation)]
        out = torch.where(mask.view(-1, 1, 1), mirrored, out)
    return out
