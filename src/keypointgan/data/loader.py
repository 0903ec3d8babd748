"""The training data pipeline: frame pairs through a ``torch.utils.data.DataLoader``.

Frames are read and decoded in worker processes (``workers``; 0: in the training process), batches
arrive as uint8 (a quarter of float32's bytes through the workers' queues and the host-to-device
copy; pinned and copied without blocking on CUDA) and become ``[-1, 1]`` floats on the device.

Order and content are deterministic and independent of the number of workers: epoch ``e`` visits
the frames in a permutation seeded by ``(seed, e)``, cut to a multiple of the world size and sharded
``perm[rank::world_size]`` (every rank gets as many batches); the pair of frame ``i`` in epoch ``e``
is drawn by a generator seeded by ``(seed, e, i)`` (:class:`~.datasets.FramePairDataset`).  Each
batch carries its ``(epoch, index in epoch)``, so a run can resume at any batch exactly.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ..pixels import uint8_to_signed
from ..seeds import EPOCH_ORDER, NORM_BATCHES, derive_seed
from .datasets import FramePairDataset, FrameStore, image_to_tensor

__all__ = ["Batch", "PairBatchSampler", "PairLoader", "default_workers", "norm_batches"]


def default_workers() -> int:
    """Data workers when none are configured: a quarter of the CPU cores, at most 8 (0 on ≤ 3 cores,
    where decoding in the training process costs less than a worker competing with it for a core)."""
    return min(8, (os.cpu_count() or 1) // 4)


@dataclass
class Batch:
    """``x``, ``x_app``: ``B×3×S×S`` targets and appearance frames in [-1, 1] on the device;
    ``epoch``, ``index``: where the batch lies in the data order."""

    x: torch.Tensor
    x_app: torch.Tensor
    epoch: int
    index: int


class PairBatchSampler(Sampler):
    """Endless batches of ``(epoch, index_in_epoch, frame)`` keys from ``(start_epoch, start_index)`` on.

    An epoch is a permutation of the ``n`` frames; with ``video_offsets`` (the first frame of each video
    and the total, :attr:`~.datasets.FrameStore.offsets`) it is ``n`` frames drawn as the authors'
    release draws them: a video uniformly, then a frame uniformly in it."""

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_epoch: int = 0, start_index: int = 0,
                 video_offsets=None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.start_epoch, self.start_index = start_epoch, start_index
        self.video_offsets = None if video_offsets is None else torch.as_tensor(np.asarray(video_offsets), dtype=torch.int64)

    def batches_per_epoch(self) -> int:
        return (self.n // self.world_size) // self.batch_size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's frames of ``epoch``, in order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, EPOCH_ORDER, epoch))
        if self.video_offsets is not None:
            start, length = self.video_offsets[:-1], self.video_offsets[1:] - self.video_offsets[:-1]
            v = torch.randint(len(length), (self.n,), generator=gen)
            perm = start[v] + (torch.rand(self.n, generator=gen, dtype=torch.float64) * length[v]).long()
        else:
            perm = torch.randperm(self.n, generator=gen)
        return perm[: (self.n // self.world_size) * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        bs, nb = self.batch_size, self.batches_per_epoch()
        for epoch in itertools.count(self.start_epoch):
            order = self.epoch_order(epoch).tolist()
            first = self.start_index if epoch == self.start_epoch else 0
            for b in range(first, nb):
                yield [(epoch, b, i) for i in order[b * bs : (b + 1) * bs]]


class _PairItems(Dataset):
    """Key ``(epoch, index_in_epoch, frame)`` → ``(x, x_app, epoch, index_in_epoch)``, frames ``3×S×S`` uint8."""

    def __init__(self, pairs: FramePairDataset):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key):
        epoch, b, i = key
        x, xa = self.pairs.frames(i, epoch)
        return _chw(x), _chw(xa), epoch, b


def _chw(img: np.ndarray) -> torch.Tensor:
    """``S×S×3`` uint8 → ``3×S×S`` uint8 (a view; a copy for read-only arrays, e.g. cached video frames)."""
    img = np.ascontiguousarray(img)
    return torch.from_numpy(img if img.flags.writeable else img.copy()).permute(2, 0, 1)


def _worker_init(_: int) -> None:
    get_worker_info().dataset.pairs.store.forget_open_files()


class PairLoader:
    """Frame pairs of ``store`` for training, batched, in worker processes.

    Args:
        store: the training frames.
        batch_size, gap, seed: as in :class:`~keypointgan.config.TrainConfig`.
        sampling: ``TrainConfig.pair_sampling``: ``frames`` (every frame a target once an epoch, the appearance
            frame before or after it) or ``release`` (targets video-uniform, the appearance frame the same or later).
        workers: data worker processes (``None``: :func:`default_workers`; 0: none).
        rank, world_size: this process's shard.
        device, memory_format: where and how batches are delivered.
    """

    def __init__(self, store: FrameStore, *, batch_size: int, gap: tuple[int, int], seed: int, workers: int | None = None,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 memory_format: torch.memory_format = torch.contiguous_format, sampling: str = "frames"):
        self.store, self.batch_size, self.seed = store, batch_size, seed
        self.pairs = FramePairDataset(store, gap=gap, seed=seed, later=sampling == "release")
        self.video_offsets = store.offsets if sampling == "release" else None
        self.workers = default_workers() if workers is None else int(workers)
        self.rank, self.world_size = rank, world_size
        self.device, self.memory_format = torch.device(device), memory_format

    def batches_per_epoch(self) -> int:
        return PairBatchSampler(len(self.store), self.batch_size, seed=self.seed, world_size=self.world_size).batches_per_epoch()

    def batches(self, epoch: int = 0, index: int = 0) -> Iterator[Batch]:
        """Endless batches from batch ``index`` of ``epoch`` on."""
        sampler = PairBatchSampler(len(self.store), self.batch_size, seed=self.seed, rank=self.rank, world_size=self.world_size,
                                   start_epoch=epoch, start_index=index, video_offsets=self.video_offsets)
        cuda = self.device.type == "cuda"
        # Video files: workers start from a fresh interpreter (forkserver), not a fork of this process,
        # which may hold open PyAV decoders (e.g. from measuring batch-norm statistics) whose threads
        # a forked child does not have: closing such a copy can hang the worker.
        files = self.workers > 0 and any(v.file is not None for v in self.store.videos)
        loader = DataLoader(
            _PairItems(self.pairs), batch_sampler=sampler, num_workers=self.workers, pin_memory=cuda,
            persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers > 0 else None,
            worker_init_fn=_worker_init if self.workers > 0 else None,
            multiprocessing_context="forkserver" if files else None,
            generator=torch.Generator().manual_seed(self.seed),  # (the workers' seeds) the global generator is not drawn from
        )
        for x, xa, e, b in loader:
            yield Batch(self._to_device(x), self._to_device(xa), int(e[0]), int(b[0]))

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        x = uint8_to_signed(images.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=self.memory_format)

    def norm_batches(self, step: int, n: int) -> Iterator[torch.Tensor]:
        """``n`` batches of random training frames on the device (for batch-norm statistics), drawn by a
        generator seeded by ``(seed, step)``: training's random streams are untouched, and a resumed
        run draws exactly what an uninterrupted one does."""
        return norm_batches(self.store, n, self.batch_size, self.seed, step, self.device, self.memory_format)


def norm_batches(store: FrameStore, n: int, batch_size: int, seed: int, step: int, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> Iterator[torch.Tensor]:
    """``n`` batches (``B×3×S×S``, at most ``batch_size`` frames) of random frames of ``store`` on ``device``,
    for batch-norm statistics, drawn by a generator seeded by ``(seed, step)`` so that no training
    stream is touched and a resumed run draws what an uninterrupted one does."""
    gen = torch.Generator().manual_seed(derive_seed(seed, NORM_BATCHES, step))
    bs = min(batch_size, len(store))
    for _ in range(n):
        idx = torch.randint(len(store), (bs,), generator=gen).tolist()
        yield image_to_tensor(np.stack([store.get(i) for i in idx])).to(device, memory_format=memory_format)
