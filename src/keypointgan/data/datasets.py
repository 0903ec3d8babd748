"""Torch datasets over the generic layout.

Images come out as ``3×S×S`` float tensors in [-1, 1]; points in the
library's conventions (see :mod:`keypointgan.pixels`).  Random choices use a
generator seeded from ``(seed, epoch, index)``, so an item is the same in any
process or worker and the datasets can be sharded freely (e.g. with
``DistributedSampler``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import pixels as P
from ..pixels import uint8_to_signed
from ..io import read_image
from ..pixels import resize_image
from .layout import Layout, Video

__all__ = [
    "FrameStore",
    "FramePairDataset",
    "PriorPoseDataset",
    "EvalFrameDataset",
    "image_to_tensor",
    "augment_poses",
    "mirror_half",
]


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """``H×W×3`` uint8 (or ``N×H×W×3``) → ``3×H×W`` float in [-1, 1] (or ``N×3×H×W``)."""
    img = np.ascontiguousarray(img)
    t = torch.from_numpy(img if img.flags.writeable else img.copy())
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    return uint8_to_signed(t)


class FrameStore:
    """The frames of some videos, read and resized to ``size`` on demand or all at once.

    Frame-folder videos: with ``preload`` (default when they fit in
    ``max_preload_bytes``) every frame is decoded once into one uint8 array,
    which makes CPU training fast; otherwise frames are read from disk at
    each access.

    Video files are never preloaded: a frame is decoded on demand by seeking
    to the keyframe before it and decoding forward (:class:`keypointgan.video.VideoReader`),
    and the last ``video_cache`` resized frames are kept (an LRU cache), so the
    memory held does not grow with the videos' length.  A video with
    ``frame_ids`` (a subset of its file's frames) maps its frame ``t`` to the
    file's frame ``frame_ids[t]``.  At most
    ``max_open_videos`` files are open at a time.  A random frame costs a
    decode of up to one keyframe interval, so videos with short intervals
    (``ffmpeg -i IN -g 25 OUT.mp4``) train faster.
    """

    def __init__(
        self,
        videos: Sequence[Video],
        size: int,
        *,
        preload: bool | None = None,
        max_preload_bytes: float = 2e9,
        video_cache: int = 64,
        max_open_videos: int = 8,
    ):
        self.videos = list(videos)
        self.size = int(size)
        self.offsets = np.cumsum([0] + [len(v) for v in self.videos])
        total = int(self.offsets[-1])
        self.video_cache = int(video_cache)
        self.max_open_videos = max(1, int(max_open_videos))
        self._readers: OrderedDict[int, object] = OrderedDict()
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        # frames from image files (the ones preloading covers)
        in_files = np.zeros(total, dtype=bool)
        for v, video in enumerate(self.videos):
            if video.file is None:
                in_files[self.offsets[v] : self.offsets[v + 1]] = True
        n_img = int(in_files.sum())
        if preload is None:
            preload = n_img * self.size * self.size * 3 <= max_preload_bytes
        self._cache: np.ndarray | None = None
        self._slot: np.ndarray | None = None
        self.original_sizes: dict[int, tuple[int, int]] = {}
        if preload and n_img:
            self._slot = np.where(in_files, np.cumsum(in_files) - 1, -1)
            cache = np.empty((n_img, self.size, self.size, 3), dtype=np.uint8)
            for i in np.flatnonzero(in_files):
                cache[self._slot[i]] = self._read(int(i))
            self._cache = cache

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):
        # open video files stay with their process (workers reopen them)
        state = self.__dict__.copy()
        state["_readers"], state["_lru"] = OrderedDict(), OrderedDict()
        return state

    def forget_open_files(self) -> None:
        """Drop the open video readers and cached frames: a new worker process opens its own files."""
        self._readers, self._lru = OrderedDict(), OrderedDict()

    def locate(self, index: int) -> tuple[int, int]:
        """Global frame index → (video index, frame index)."""
        v = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return v, int(index - self.offsets[v])

    def path(self, index: int) -> Path:
        """The image file of frame ``index``, or the video file that holds it."""
        v, t = self.locate(index)
        video = self.videos[v]
        return video.file if video.file is not None else video.frames[t]

    def _reader(self, v: int):
        from ..video import VideoReader

        r = self._readers.pop(v, None)
        if r is None:
            r = VideoReader(self.videos[v].file)
            while len(self._readers) >= self.max_open_videos:
                self._readers.popitem(last=False)[1].close()
        self._readers[v] = r
        return r

    def _read(self, index: int) -> np.ndarray:
        v, t = self.locate(index)
        video = self.videos[v]
        if video.file is None:
            img = read_image(video.frames[t])
        else:
            img = self._reader(v).read(video.file_frame(t))  # frame t of the Video: frame_ids[t] of the file
        if video.masks is not None:  # foreground masks (Simplified Human3.6M)
            from .masks import apply_mask

            img = apply_mask(img, video.masks[t])
        self.original_sizes[index] = (img.shape[0], img.shape[1])
        return resize_image(img, self.size)

    def original_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of frame ``index`` before resizing (reads the frame if it was never read)."""
        v, _ = self.locate(index)
        video = self.videos[v]
        if video.file is not None:  # one size for the whole file, known without decoding
            from ..video import probe

            info = probe(video.file)
            return (info.height, info.width)
        if index not in self.original_sizes:
            self._read(index)
        return self.original_sizes[index]

    def get(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``S×S×3`` uint8."""
        if self._slot is not None and self._slot[index] >= 0:
            return self._cache[self._slot[index]]
        if self.videos[self.locate(index)[0]].file is None:
            return self._read(index)
        img = self._lru.pop(index, None)
        if img is None:
            img = self._read(index)
            self.original_sizes.pop(index, None)  # known from the file; keep this dict small
            while len(self._lru) >= max(self.video_cache, 0) and self._lru:
                self._lru.popitem(last=False)
        if self.video_cache > 0:
            self._lru[index] = img
        return img


class FramePairDataset(Dataset):
    """Pairs ``(x, x')`` of frames of one video: ``x`` the target, ``x'`` the appearance frame.

    Item ``i`` uses frame ``i`` (over all videos) as the target; the
    appearance frame is drawn ``g`` frames before or after it with ``g``
    uniform in ``gap = (min, max)`` (clipped to the video; the nearest legal
    gap is used when the video is shorter).  With ``later`` (the authors'
    release) the appearance frame is the target itself or one after it, ``g``
    uniform in ``gap`` with 0 allowed, clipped at the video's end.  Returns
    ``(x, x_app)``, each ``3×S×S`` in [-1, 1].
    """

    def __init__(self, store: FrameStore, *, gap: tuple[int, int] = (1, 20), seed: int = 0, later: bool = False):
        if gap[0] < 0 or gap[1] < gap[0]:
            raise ValueError(f"gap must be (min, max) with 0 <= min <= max, got {gap}")
        self.store = store
        self.gap = (int(gap[0]), int(gap[1]))
        self.seed = int(seed)
        self.later = bool(later)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.store)

    def partner(self, index: int, epoch: int | None = None) -> int:
        """Global index of the appearance frame paired with target ``index`` in ``epoch`` (default: this epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        v, t = self.store.locate(index)
        n = len(self.store.videos[v])
        if n == 1:
            return index
        rng = np.random.default_rng((self.seed, epoch, index))
        lo, hi = self.gap[0], min(self.gap[1], n - 1)
        lo = min(lo if self.later else max(lo, 1), hi)
        # legal partners: t + lo .. t + hi after t, and (unless later) t - hi .. t - lo before it (inside the video)
        after = max(0, min(t + hi, n - 1) - (t + lo) + 1)
        before = 0 if self.later else max(0, (t - lo) - max(t - hi, 0) + 1)
        if after + before == 0:  # the gap range falls outside the video on both sides: farthest frame (later: the last)
            return int(self.store.offsets[v] + (0 if t >= n - 1 - t and not self.later else n - 1))
        k = int(rng.integers(after + before))
        j = t + lo + k if k < after else max(t - hi, 0) + (k - after)
        return int(self.store.offsets[v] + j)

    def frames(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The pair of ``index`` in ``epoch`` (default: this epoch) as two ``S×S×3`` uint8 arrays."""
        j = self.partner(index, epoch)
        if j < index:  # the earlier frame first: a video file then decodes forward instead of seeking twice
            xa = self.store.get(j)
            return self.store.get(index), xa
        x = self.store.get(index)
        return x, self.store.get(j)

    def __getitem__(self, index: int):
        x, xa = self.frames(index)
        return image_to_tensor(x), image_to_tensor(xa)


def group_poses(points: torch.Tensor, lengths) -> torch.Tensor:
    """``N×K×2`` poses of consecutive sequences of ``lengths`` (summing to N) → ``S×L×K×2``, L the
    longest, NaN after each sequence's end (what :func:`keypointgan.training.pretrain.sample_prior`
    draws sequence-uniformly from)."""
    lengths = [int(n) for n in lengths]
    if sum(lengths) != points.shape[0] or min(lengths, default=0) < 1:
        raise ValueError(f"sequence lengths {lengths[:5]}… must be positive and sum to the {points.shape[0]} poses")
    out = points.new_full((len(lengths), max(lengths), *points.shape[1:]), float("nan"))
    for s, (a, n) in enumerate(zip(np.cumsum([0] + lengths[:-1]), lengths)):
        out[s, :n] = points[a : a + n]
    return out


class PriorPoseDataset(Dataset):
    """Prior poses as ``K×2`` float tensors in [-1, 1] for a ``size``-pixel training grid.

    Args:
        poses: ``(N, K, 2)`` array in [0, 1] as ``((x + 0.5) / width, (y + 0.5) / height)``
            (:func:`keypointgan.pixels.unit_to_norm`).
        size: the training resolution (the grid the network sees).
    """

    def __init__(self, poses: np.ndarray, size: int):
        self.points = torch.from_numpy(P.unit_to_norm(np.asarray(poses, dtype=np.float32), size)).float()

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


def mirror_half(generator: torch.Generator, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mirror left-right a random half of the images of ``batches`` (each ``B×C×H×W``, the same ``B``):
    image ``i`` is mirrored in every batch or in none (a target and its appearance frame stay a pair).
    One draw of ``B`` uniforms from ``generator`` (a CPU generator)."""
    mask = torch.rand(batches[0].shape[0], generator=generator) < 0.5
    return tuple(torch.where(mask.to(t.device).view(-1, 1, 1, 1), t.flip(-1), t) for t in batches)


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
