"""Data-parallel training over processes (``torchrun``): the process group, and every exchange a step needs.

One model is trained by ``N`` processes, each on its own shard of the frames (``PairBatchSampler``)
with ``batch_size`` pairs: together they train like one process with ``N × batch_size``.  What keeps
them one model:

* the same initial weights (the seed; broadcast from rank 0 after loading, to be sure);
* the losses' values averaged before the all-or-nothing decision, so every rank skips the same
  steps, and the gradients of Φ+Ψ, D and η averaged before clipping (:meth:`Distributed.average_gradients`);
* batch norm over the whole global batch (:func:`synchronise_batch_norm`);
* the perceptual loss's running means updated with the whole batch's losses;
* every stop decision — the time budget, a signal — taken together (:meth:`Distributed.agree_max`).

Each rank has its own random generator (prior poses, the image pool's draws) and image pool; a
checkpoint holds every rank's (:meth:`Distributed.gather_objects`).

We exchange gradients with one explicit all-reduce per step instead of wrapping the networks in
``DistributedDataParallel``: the step back-propagates three losses through networks that are
frozen in one of them (η and D in the G term) and calls η three times per step, which DDP's
gradient hooks (registered once, per parameter, for one backward per forward) do not fit.

Without ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import InputError, TrainingInterrupted

__all__ = ["Distributed", "SINGLE", "from_environment", "process_group", "synchronise_batch_norm", "CrossRankBatchNorm2d"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (``rank`` of ``world_size``; ``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process: the collectives below exchange data."""
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the log, samples, checkpoints and report; the others write nothing."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The device for configured ``name`` in this process: ``auto``/``cuda`` become ``cuda:LOCAL_RANK``
        when several processes share a node's GPUs."""
        from ..devices import select_device

        dev = select_device(name)
        if self.enabled and dev.type == "cuda" and dev.index is None:
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise InputError(f"LOCAL_RANK={self.local_rank} but this node has {count} CUDA device(s): "
                                 f"start at most {count} processes per node (torchrun --nproc_per_node)")
            dev = torch.device("cuda", self.local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return dev

    # ----------------------------------------------------------------- collectives
    def mean_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` replaced by its mean over ranks (in place; returned)."""
        if self.enabled:
            torch.distributed.all_reduce(t)
            t.div_(self.world_size)
        return t

    def agree_max(self, values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
        """The largest of each value over ranks: every rank gets the same list (stop flags, elapsed time)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t.tolist()

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Every ``.grad`` of ``params`` replaced by its mean over ranks, in one all-reduce.

        Parameters without a gradient are left without one (the same ones on every rank: the ranks
        run the same graph)."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.mean_(flat)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset: offset + n].view_as(g))
            offset += n

    def broadcast_(self, modules: Iterable[nn.Module]) -> None:
        """Rank 0's parameters and buffers copied into every rank's ``modules``."""
        if self.enabled:
            with torch.no_grad():
                for m in modules:
                    for t in [*m.parameters(), *m.buffers()]:
                        torch.distributed.broadcast(t.data, src=0)

    def gather_objects(self, obj) -> list | None:
        """Rank 0: the list of every rank's ``obj`` (picklable, on the CPU); the others: None."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.rank == 0 else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out


SINGLE = Distributed()
"""One process: every collective is a no-op."""


def _env_int(env: Mapping[str, str], name: str) -> int:
    raw = env[name]
    try:
        return int(raw.strip())
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} must be a whole number (set by torchrun)") from None


def from_environment(env: Mapping[str, str] | None = None) -> Distributed:
    """This process's :class:`Distributed` from the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :data:`SINGLE` without them.

    Raises :class:`InputError` (one line) for a half-set or inconsistent environment: ``RANK`` without
    ``WORLD_SIZE`` or the reverse, non-numbers, ``WORLD_SIZE < 1``, a rank outside ``[0, WORLD_SIZE)``,
    or several processes without a rendezvous address."""
    env = os.environ if env is None else env
    present = [k for k in ("RANK", "WORLD_SIZE") if k in env]
    if not present:
        if "LOCAL_RANK" in env:
            _env_int(env, "LOCAL_RANK")
        return SINGLE
    if len(present) == 1:
        missing = "WORLD_SIZE" if present[0] == "RANK" else "RANK"
        raise InputError(f"{present[0]}={env[present[0]]} is set but {missing} is not: start multi-process training with torchrun, "
                         f"or unset {present[0]} for one process")
    rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if world < 1:
        raise InputError(f"WORLD_SIZE={world}: the number of processes must be at least 1")
    if not 0 <= rank < world:
        raise InputError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    if local < 0:
        raise InputError(f"LOCAL_RANK={local} must be >= 0")
    if world > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if missing:
            raise InputError(f"RANK/WORLD_SIZE are set for {world} processes but there is no rendezvous ({', '.join(missing)} unset): "
                             "start multi-process training with torchrun")
        _env_int(env, "MASTER_PORT")
    return Distributed(rank, world, local)


@contextmanager
def process_group(dist: Distributed, device: torch.device, timeout_s: float = 600.0) -> Iterator[Distributed]:
    """The default process group for ``dist`` (NCCL on CUDA, gloo otherwise) while the block runs,
    created from the environment (``env://``) unless one exists already; destroyed afterwards if created here.

    ``timeout_s``: how long a collective waits for the other ranks before failing (rank 0 alone
    evaluates and writes checkpoints while the others wait at the next step)."""
    created = False
    if dist.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        torch.distributed.init_process_group(backend, init_method="env://", rank=dist.rank, world_size=dist.world_size,
                                             timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        created = True
    if dist.enabled and torch.distributed.get_world_size() != dist.world_size:
        raise InputError(f"a process group of {torch.distributed.get_world_size()} processes exists, but WORLD_SIZE={dist.world_size}")
    try:
        yield dist
        _leave_together(created)
    except TrainingInterrupted:  # a stop every rank agreed on: they all got here
        _leave_together(created)
        raise
    finally:
        if created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _leave_together(created: bool) -> None:
    """Wait for every rank before the group is destroyed.  The last exchange of a run (the others'
    state sent to rank 0 for its checkpoint) may still be in flight in gloo's worker threads when a
    rank that only sends leaves; destroying the group under it aborts that process ("terminate called
    without an active exception").  Not after an error: a rank that failed may never arrive."""
    if created and torch.distributed.is_initialized():
        torch.distributed.barrier()


class _SumOverRanks(torch.autograd.Function):
    """``t`` summed over ranks, differentiably: the gradient of every rank's input is the sum of every
    rank's output gradient.  (torch's own differentiable all-reduce, ``torch.distributed.nn``, is deprecated
    and its successor private.)"""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        torch.distributed.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are taken over every rank's batch (for CPU runs).

    ``torch.nn.SyncBatchNorm`` (used on GPUs) refuses CPU tensors, so CPU (gloo) runs use this one:
    per-channel sums, sums of squares and counts are summed over ranks by :class:`_SumOverRanks`
    (whose backward sums the gradients over ranks), the statistics computed in float32.  Same parameters, buffers and state-dict keys as
    ``nn.BatchNorm2d``; in eval mode, or in one process, it is ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
            return super().forward(x)
        # Each rank's count, mean and sum of squared deviations (two-pass, accurate), gathered into every
        # rank by a differentiable sum (rank r fills row r), then combined (Chan et al.'s parallel
        # variance): E[x²] − E[x]² would lose the variance to rounding where |mean| ≫ std, e.g. on a
        # rendered skeleton image that is −1 almost everywhere.
        xf = x.float()
        c, world, rank = x.shape[1], torch.distributed.get_world_size(), torch.distributed.get_rank()
        var_r, mean_r = torch.var_mean(xf, dim=(0, 2, 3), unbiased=False)
        n_r = x.numel() / c
        mine = torch.stack([torch.full_like(mean_r, n_r), mean_r, var_r * n_r])  # 3×C
        rows = _SumOverRanks.apply(torch.stack([mine if r == rank else torch.zeros_like(mine) for r in range(world)]))
        counts, means, m2 = rows[:, 0], rows[:, 1], rows[:, 2]  # world×C each
        n = counts.sum(0)
        mean = (counts * means).sum(0) / n
        var = (m2.sum(0) + (counts * (means - mean) ** 2).sum(0)) / n
        n = n[0]
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
            self.running_var.lerp_((var.detach() * n / (n - 1).clamp_min(1)).to(self.running_var.dtype), m)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        y = (xf - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1)  # centred first: no cancellation where |mean| ≫ std
        if self.affine:
            y = y + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every ``nn.BatchNorm2d`` of ``module`` replaced (in place) by one whose statistics span all ranks,
    holding the same parameter and buffer objects: ``nn.SyncBatchNorm`` on CUDA, :class:`CrossRankBatchNorm2d` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                                       device=device)
            # the same Parameter and buffer objects: optimisers and averages built on the module keep working
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var, new.num_batches_tracked = child.running_mean, child.running_var, child.num_batches_tracked
            setattr(module, name, new)
        else:
            synchronise_batch_norm(child, device)
    return module

