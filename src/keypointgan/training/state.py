"""The training state: everything a checkpoint holds, as one object.

:class:`TrainState` owns the four networks, their optimisers, the weight average, the image pool,
the reconstruction loss (whose running means are state too), the run's random generator and the
counters (step, epoch, position in the epoch, elapsed time, skipped steps).  ``state_dict()`` is
exactly what a checkpoint stores and ``load_state_dict()`` restores it, so a resumed run continues
bit for bit.

In a multi-process run every rank holds a ``TrainState`` with the same weights; each has its own
generator and image pool, and rank 0's checkpoint holds all of them (``other_ranks``), so a run
resumed with the same number of processes continues bit for bit too.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..checkpoint import CHECKPOINT_FORMAT
from ..config import TrainConfig
from ..errors import InputError
from ..losses import make_reconstruction_loss
from ..nets import build_networks
from ..seeds import RANK, derive_seed
from ..skeleton import Skeleton
from .averaging import WeightAverage
from .distributed import SINGLE, Distributed, synchronise_batch_norm
from .pool import ImagePool
from .precision import Precision
from .pretrain import side_swaps

__all__ = ["TrainState", "check_training_checkpoint", "seed_everything"]


class TrainState:
    """One run's networks, optimisers, averages, pool, generator and counters.

    Args:
        cfg: the run's configuration (validated here).
        skeleton: the keypoint layout (η regresses ``skeleton.num_keypoints`` points).
        device: where the networks live.
        dist: this process's place in a multi-process run (seeds its generator; batch norm then
            spans every rank's batch).  The process group must exist already.

    ``fwd`` holds the networks forward passes go through: ``nets`` themselves, or with
    ``cfg.compile`` their ``torch.compile`` wrappers (same parameters; ``nets`` are what is saved).
    """

    def __init__(self, cfg: TrainConfig, skeleton: Skeleton, device: torch.device, *, dist: Distributed = SINGLE):
        self.cfg = cfg.validate()
        self.skeleton = skeleton
        self.device = torch.device(device)
        self.dist = dist
        self.precision = Precision(cfg.precision, self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left untouched
            torch.manual_seed(cfg.seed)  # the same initial weights in every process
            self.nets = build_networks(cfg.model, skeleton.num_keypoints)
        for n in self.nets.values():
            n.to(self.device, memory_format=self.memory_format)
        adam = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))  # noqa: E731
        self.optimizers = {
            "g": adam(list(self.nets["phi"].parameters()) + list(self.nets["psi"].parameters()), cfg.lr),
            "d": adam(self.nets["disc"].parameters(), cfg.lr_disc),
            "eta": adam(self.nets["eta"].parameters(), cfg.lr_regressor),
        }
        self.base_lr = {"g": cfg.lr, "d": cfg.lr_disc, "eta": cfg.lr_regressor}
        self.average = (
            WeightAverage(self.nets, decay=cfg.ema_decay, swa_fraction=cfg.swa_fraction)
            if cfg.ema_decay > 0 or cfg.swa_fraction > 0 else None
        )
        if dist.enabled:  # after the averages were copied: they are used by rank 0 alone, with plain batch norm
            for n in self.nets.values():
                synchronise_batch_norm(n, self.device)
        self.fwd = {k: (torch.compile(n) if cfg.compile else n) for k, n in self.nets.items()}
        self.rec_loss = make_reconstruction_loss(cfg.vgg_weights, vgg_relu=cfg.vgg_relu).to(self.device)
        if dist.enabled and hasattr(self.rec_loss, "reduce_batch_losses"):
            self.rec_loss.reduce_batch_losses = dist.mean_  # running means of the whole batch, the same on every rank
        self.pool = ImagePool(cfg.pool_size)
        self.gen = torch.Generator().manual_seed(derive_seed(cfg.seed, RANK, self.rank))  # every random draw of the loop
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.pretrained = False
        self.eta_pretrained: dict | None = None  # η as pre-trained, before the GAN game fine-tunes it
        self.elapsed = 0.0  # training seconds so far, over resumes
        self.skipped_steps = 0  # steps skipped for NaN/Inf over the whole run
        self.resumed = False
        self.resumed_world_size: int | None = None  # the number of processes the checkpoint was written by
        self._side_swaps: tuple[torch.Tensor | None] | None = None  # decided on the first step (side_swaps_for)

    # ------------------------------------------------------------------ pieces
    def side_swaps_for(self, prior: torch.Tensor) -> torch.Tensor | None:
        """η's left/right relabellings for this run (:func:`.pretrain.side_swaps`): decided once, from the
        first prior (or batch of poses) asked with, not on every step (a run trains on one prior)."""
        if self._side_swaps is None:
            self._side_swaps = (side_swaps(self.cfg, self.skeleton, prior),)
        return self._side_swaps[0]

    @property
    def rank(self) -> int:
        """This process's rank (0 in a single-process run)."""
        return self.dist.rank

    def buffers(self) -> list[torch.Tensor]:
        """Every buffer a step may change: batch-norm statistics, the perceptual loss's running means."""
        return [b for n in self.nets.values() for b in n.buffers()] + list(self.rec_loss.buffers())

    def set_budget(self, *, steps: int | None = None, max_minutes: float | None = None) -> None:
        """Replace the run's budget (the step count and/or minutes :func:`~.loop.fit` trains to)."""
        import dataclasses

        self.cfg = dataclasses.replace(self.cfg, steps=steps, max_minutes=max_minutes).validate()

    def set_lr_scale(self, scale: float) -> None:
        """Every optimiser's learning rate to ``scale`` × its configured value."""
        for k, opt in self.optimizers.items():
            for g in opt.param_groups:
                g["lr"] = self.base_lr[k] * scale

    def lr(self, name: str) -> float:
        """The current learning rate of optimiser ``name`` (``g``, ``d``, ``eta``)."""
        return self.optimizers[name].param_groups[0]["lr"]

    def set_pretrained_regressor(self, eta_state: dict | None = None, *, keep: bool = True) -> None:
        """η is pre-trained: loaded from ``eta_state`` (a state dict) if given; the average follows.  With
        ``keep`` a copy is kept (``eta_pretrained`` in checkpoints): evaluation's offline regressor, which
        sets the left/right labels of the first of the release's two test numbers."""
        if eta_state is not None:
            self.nets["eta"].load_state_dict(eta_state)
        if self.average is not None:
            self.average.copy_from("eta", self.nets["eta"])
        self.pretrained = True
        self.eta_pretrained = {k: v.detach().cpu().clone() for k, v in self.nets["eta"].state_dict().items()} if keep else None

    def autocast(self):
        """The context forward passes run in (the run's precision; a no-op for fp32)."""
        return self.precision.autocast()

    def rank_state(self) -> dict:
        """What differs between ranks: the generator, the global random states and the image pool (on the CPU)."""
        return {"rng": rng_state(self.gen, self.device), "pool": self.pool.state_dict()}

    def synchronise(self) -> None:
        """Rank 0's weights and buffers copied to every rank (after loading, to be sure they start equal)."""
        self.dist.broadcast_(self.nets.values())

    def averaged_or_raw(self) -> tuple[nn.Module, nn.Module]:
        """The Φ and η prediction uses, as they stand: the averages when kept, else the raw networks.
        Their batch-norm statistics are not refreshed here (the state has no frames): prediction goes
        through :func:`~keypointgan.training.loop.inference_networks`, which does that first."""
        if self.average is not None:
            return self.average.networks()
        return self.nets["phi"], self.nets["eta"]

    # ------------------------------------------------------------- save / load
    def state_dict(self, other_ranks: list[dict] | None = None) -> dict:
        """Everything a checkpoint holds (plain tensors and containers: ``weights_only``-loadable);
        ``other_ranks``: ranks 1… :meth:`rank_state` in a multi-process run."""
        avg = self.average.state_dict() if self.average is not None else {"ema": {}, "swa_count": 0}
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "seed": self.cfg.seed,
            "config": self.cfg.to_dict(),
            "skeleton": self.skeleton.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "pretrained": self.pretrained,
            "elapsed": self.elapsed,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            **avg,
            "optims": {k: v.state_dict() for k, v in self.optimizers.items()},
            "rec_loss": {k: v for k, v in self.rec_loss.state_dict().items() if not k.startswith("vgg.")},
            "pool": self.pool.state_dict(),
            "skipped_steps": self.skipped_steps,
            "rng": rng_state(self.gen, self.device),
            "world_size": self.dist.world_size,
            "other_ranks": list(other_ranks or []),
            **({"scaler": self.precision.scaler.state_dict()} if self.precision.scaler is not None else {}),
            **({"eta_pretrained": self.eta_pretrained} if self.eta_pretrained is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.nets.items():
            v.load_state_dict(state["nets"][k])
        if self.average is not None:
            ema = state.get("ema") or {}  # a run without an average: it starts from the raw weights
            self.average.load_state_dict({"ema": {k: ema.get(k, state["nets"][k]) for k in ("phi", "eta")}, "swa_count": state.get("swa_count", 0)})
        for k, v in self.optimizers.items():
            v.load_state_dict(state["optims"][k])
        self.rec_loss.load_state_dict(state["rec_loss"], strict=False)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.pretrained, self.elapsed = state["pretrained"], state["elapsed"]
        self.eta_pretrained = state.get("eta_pretrained")
        self.skipped_steps = state.get("skipped_steps", 0)
        self.resumed_world_size = int(state.get("world_size", 1))
        same_world = self.resumed_world_size == self.dist.world_size
        if self.rank == 0:
            self.pool.load_state_dict(state["pool"], self.device)
            set_rng_state(self.gen, state["rng"], self.device)
        elif same_world and len(state.get("other_ranks", [])) >= self.rank:
            mine = state["other_ranks"][self.rank - 1]
            self.pool.load_state_dict(mine["pool"], self.device)
            set_rng_state(self.gen, mine["rng"], self.device)
        else:  # another number of processes: a new rank draws afresh (seeded by the step), with an empty pool
            self.gen.manual_seed(derive_seed(self.cfg.seed, RANK, self.rank, self.step))
            seed_everything(derive_seed(self.cfg.seed, RANK, self.rank, self.step))
        if self.precision.scaler is not None and "scaler" in state:
            self.precision.scaler.load_state_dict(state["scaler"])
        self.resumed = True



def check_training_checkpoint(state: dict, where) -> None:
    """Raise :class:`InputError` naming ``where`` unless ``state`` is a training checkpoint."""
    missing = [k for k in ("config", "skeleton", "nets", "optims", "step", "rng") if k not in state]
    if missing:
        raise InputError(f"cannot resume: not a training checkpoint (no {', '.join(missing)})", where)


def seed_everything(seed: int) -> None:
    """Seed the global torch, numpy and Python generators (a fresh run does, as training scripts do:
    the loop draws only from the state's generator, but code it calls then stays reproducible)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state(gen: torch.Generator, device: torch.device) -> dict:
    """Every random state: ``gen`` (all the loop's sampling) and the global torch, CUDA, numpy and
    Python generators (restored on resume all the same).  Plain tensors and lists only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    state = {
        "gen": gen.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [py[0], list(py[1]), py[2]],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict, device: torch.device) -> None:
    gen.set_state(state["gen"])
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and device.type == "cuda" and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
