"""The training loop: regressor pre-training, then G / D / η steps.

Plain PyTorch.  One :class:`Trainer` holds the four networks, their
optimisers, the image pool and the random generators; :meth:`Trainer.run`
trains within a step and/or time budget, logging to ``RUN/log.jsonl``, saving
sample grids to ``RUN/samples/`` and checkpoints to ``RUN/checkpoints/``.

Per step (DESIGN.md):

* G (Φ, Ψ; η frozen but differentiable):
  ``w_gan · LSGAN(D(ŷ), real) + w_rec · Rec(Ψ(β(η(ŷ)), x'), x)`` with ``ŷ = Φ(x)``
* D: ``0.5 · [LSGAN(D(β(q)), real) + LSGAN(D(pool(ŷ)), fake)]``
* η: ``w_reg_prior · MSE(η(β(q)), q) + w_reg_self · MSE(β(η(ŷ)), ŷ)``
"""

from __future__ import annotations

import copy
import json
import math
import platform
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import geometry as G
from ._version import __version__
from .config import TrainConfig
from .data import FramePairDataset, FrameStore, PriorPoseDataset, augment_poses
from .data.datasets import image_to_tensor
from .data.layout import Video
from .devices import select_device
from .inference import predict_points
from .errors import InputError, TrainingDiverged, TrainingInterrupted
from .losses import FallbackReconstructionLoss, lsgan_loss, make_reconstruction_loss, regressor_prior_loss, regressor_self_loss
from .nets import ConditionalDecoder, KeypointRegressor, MultiScaleDiscriminator, PoseEncoder, init_weights
from .skeleton import Skeleton

__all__ = ["Trainer", "build_networks", "select_device", "ImagePool", "EvalSet", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "latest.pt"


def build_networks(cfg: TrainConfig, num_keypoints: int, *, with_gan: bool = True) -> dict[str, nn.Module]:
    """Φ (``phi``), η (``eta``) and, with ``with_gan``, Ψ (``psi``) and D (``disc``), initialised N(0, 0.02)."""
    m = cfg.model
    nets: dict[str, nn.Module] = {
        "phi": PoseEncoder(widths=m.encoder_widths, norm=m.norm),
        "eta": KeypointRegressor(num_keypoints=num_keypoints, widths=m.regressor_widths, norm=m.norm),
    }
    if with_gan:
        nets["psi"] = ConditionalDecoder(
            widths=m.decoder_widths,
            norm=m.norm,
            pose_skips=m.decoder_pose_skips,
            appearance_skips=m.decoder_appearance_skips,
        )
        nets["disc"] = MultiScaleDiscriminator(ndf=m.disc_ndf, n_layers=m.disc_layers, num_scales=m.disc_scales)
    for net in nets.values():
        init_weights(net)
    # Φ starts by emitting the background value of rendered skeletons (-1) rather than 0
    nn.init.constant_(nets["phi"].head.bias, -1.0)
    return nets


class ImagePool:
    """The pix2pix history of fakes: with probability ½ a fake is swapped for an older one."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=generator).item() < 0.5:
                i = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def snapshot(self) -> list[torch.Tensor]:
        """The pool's contents (entries are replaced, never modified in place, so a shallow copy suffices)."""
        return list(self.images)

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        self.images = list(snapshot)

    def state_dict(self) -> dict:
        return {"images": torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict, device) -> None:
        imgs = state["images"]
        self.images = [imgs[i : i + 1].to(device) for i in range(imgs.shape[0])]


@dataclass
class EvalSet:
    """Frames with true keypoints for periodic evaluation (never used for training)."""

    images: torch.Tensor  # N×3×S×S in [-1, 1]
    keypoints: np.ndarray  # N×K×2 pixel of the original frames
    hw: np.ndarray  # N×2 original (H, W)
    groups: list[str]  # video id per frame


def sample_prior(prior: torch.Tensor, n: int, cfg: TrainConfig, skeleton: Skeleton, gen: torch.Generator, *, pretrain: bool) -> torch.Tensor:
    """``n`` prior poses (``n×K×2`` in [-1, 1]) drawn with replacement and augmented per ``cfg``."""
    idx = torch.randint(prior.shape[0], (n,), generator=gen).to(prior.device)
    q = prior[idx]
    if pretrain:
        rot, sc, tr = cfg.pretrain_rotate, cfg.pretrain_scale, cfg.pretrain_translate
    else:
        rot, sc, tr = cfg.prior_rotate, cfg.prior_scale, cfg.prior_translate
    flip = cfg.prior_flip
    if rot or tr or tuple(sc) != (1.0, 1.0) or flip:
        g = torch.Generator(device=prior.device).manual_seed(int(torch.randint(2**62, (), generator=gen)))
        q = augment_poses(q, g, rotate_deg=rot, scale=tuple(sc), translate=tr, flip=flip, flip_permutation=skeleton.flip_permutation)
    return q


def pretrain_eta(
    eta: nn.Module,
    skeleton: Skeleton,
    prior: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
    *,
    steps: int | None = None,
    progress: bool = True,
    log=None,
    should_stop=None,
) -> dict:
    """Pre-train η on the prior alone: ``MSE(η(β(q)), q)`` with pose augmentation.

    ``prior`` is ``N×K×2`` in [-1, 1] on η's device.  Adam at
    ``cfg.pretrain_lr`` with cosine decay; batches of ``cfg.pretrain_batch``
    poses rotated, scaled and shifted by the ``pretrain_*`` ranges.
    ``should_stop()`` is polled before every step; when it returns True the
    result has ``interrupted=True``.
    """
    from tqdm.auto import tqdm

    steps = cfg.pretrain_steps if steps is None else steps
    eta.train()
    opt = torch.optim.Adam(eta.parameters(), lr=cfg.pretrain_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    size, sigma = cfg.model.size, cfg.model.sigma
    loss = torch.tensor(float("nan"))
    bar = tqdm(range(steps), desc="pre-train η", disable=not progress, leave=False)
    done = 0
    for i in bar:
        if should_stop is not None and should_stop():
            bar.close()
            return {"pretrain_mse": float(loss.item()), "pretrain_steps": done, "interrupted": True}
        q = sample_prior(prior, cfg.pretrain_batch, cfg, skeleton, gen, pretrain=True)
        loss = regressor_prior_loss(eta(G.to_signed(G.render_skeleton(q, skeleton, size, sigma))), q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(eta.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        done += 1
        if i % 25 == 0:
            bar.set_postfix(mse=f"{loss.item():.2e}")
            if log is not None:
                log({"phase": "pretrain", "step": i, "loss_eta_prior": loss.item()})
    return {"pretrain_mse": float(loss.item()), "pretrain_steps": int(steps)}


class Trainer:
    """Holds the networks, optimisers and random state of one KeypointGAN run.

    Args:
        cfg: the run's configuration (validated here).
        skeleton: the keypoint layout.
        prior: ``(N, K, 2)`` prior poses in [0, 1].
        videos: the training videos (frames only; keypoints are never read).
        out: the run folder.
        eval_set: optional frames with keypoints for periodic evaluation.
        rank, world_size: this process's place in a multi-process run.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        skeleton: Skeleton,
        prior: np.ndarray,
        videos: Sequence[Video],
        out: str | Path,
        *,
        eval_set: EvalSet | None = None,
        rank: int = 0,
        world_size: int = 1,
        progress: bool = True,
    ):
        self.cfg = cfg.validate()
        self.skeleton = skeleton
        if prior.shape[1] != skeleton.num_keypoints:
            raise InputError(f"the prior has K={prior.shape[1]} but the skeleton has {skeleton.num_keypoints} keypoints")
        self.out = Path(out)
        self.rank, self.world_size = rank, world_size
        self.progress = progress and rank == 0
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = select_device(cfg.device)
        size = cfg.model.size
        self.size = size
        self.prior = PriorPoseDataset(prior, size).points.to(self.device)
        self.store = FrameStore(videos, size)
        # no videos: the caller feeds train_step itself (benchmarks); batches() refuses to run then
        if videos and len(self.store) // world_size < cfg.batch_size:
            raise InputError(f"the training videos hold {len(self.store)} frames, fewer than the batch size {cfg.batch_size}"
                             + (f" × {world_size} processes" if world_size > 1 else ""))
        self.pairs = FramePairDataset(self.store, gap=cfg.gap, seed=cfg.seed)
        self.eval_set = eval_set

        # per-process generators derived from the seed; the global RNG is forked for the
        # weight initialisation so the caller's random state is left untouched
        self.gen = torch.Generator().manual_seed(cfg.seed * 1009 + rank)
        K = skeleton.num_keypoints
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the same initial weights in every process
            self.nets = build_networks(cfg, K)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for n in self.nets.values():
            n.to(self.device, memory_format=self.memory_format)
        adam = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))  # noqa: E731
        self.opt = {
            "g": adam(list(self.nets["phi"].parameters()) + list(self.nets["psi"].parameters()), cfg.lr),
            "d": adam(self.nets["disc"].parameters(), cfg.lr_disc),
            "eta": adam(self.nets["eta"].parameters(), cfg.lr_regressor),
        }
        self.base_lr = {"g": cfg.lr, "d": cfg.lr_disc, "eta": cfg.lr_regressor}
        # moving averages of Φ and η (what evaluation and the detector use when enabled)
        self.ema: dict[str, nn.Module] = {}
        self._ema_norm_step = -1  # the step at which the average's batch-norm statistics were measured
        self.swa_count = 0  # weights averaged into the plain mean so far (swa_fraction)
        self._progress_now = 0.0  # fraction of the budget spent before the current step
        if cfg.ema_decay > 0 or cfg.swa_fraction > 0:
            self.ema = {k: copy.deepcopy(self.nets[k]).eval().requires_grad_(False) for k in ("phi", "eta")}
        self.rec_loss = make_reconstruction_loss(cfg.vgg_weights).to(self.device)
        self.pool = ImagePool(cfg.pool_size)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.pretrained = False
        self.elapsed = 0.0  # training seconds so far (over resumes)
        self.skipped_steps = 0  # steps skipped for NaN/Inf over the whole run
        self.bad_in_a_row = 0
        self.saved_step: int | None = None  # step of the last checkpoint written by this process
        self._stop_signal: int | None = None
        self._restored = False  # True once load_state_dict ran (a resumed run)
        # every buffer a step may change (batch-norm statistics, the perceptual loss's running means):
        # restored when a step is skipped
        self._buffers = [b for n in self.nets.values() for b in n.buffers()] + list(self.rec_loss.buffers())

    # ------------------------------------------------------------ utilities
    def render(self, points: torch.Tensor) -> torch.Tensor:
        """``B×K×2`` in [-1, 1] → skeleton image in [-1, 1] (what Φ should emit)."""
        return G.to_signed(G.render_skeleton(points, self.skeleton, self.size, self.cfg.model.sigma))

    def sample_prior(self, n: int) -> torch.Tensor:
        return sample_prior(self.prior, n, self.cfg, self.skeleton, self.gen, pretrain=False)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled frame pairs; each epoch is a permutation seeded by (seed, epoch), sharded by rank."""
        bs = self.cfg.batch_size
        n = len(self.pairs)
        if n < bs:
            raise InputError(f"the training videos hold {n} frames, fewer than the batch size {bs}")
        while True:
            self.pairs.set_epoch(self.epoch)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + self.epoch))
            perm = perm[self.rank :: self.world_size]
            nb = len(perm) // bs
            while self.batch_in_epoch < nb:
                idx = perm[self.batch_in_epoch * bs : (self.batch_in_epoch + 1) * bs].tolist()
                self.batch_in_epoch += 1
                items = [self.pairs[i] for i in idx]
                mf = self.memory_format
                x = torch.stack([a for a, _ in items]).to(self.device, non_blocking=True, memory_format=mf)
                xa = torch.stack([b for _, b in items]).to(self.device, non_blocking=True, memory_format=mf)
                yield x, xa
            self.epoch += 1
            self.batch_in_epoch = 0

    def _clip_step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()

    # ------------------------------------------------------- pre-training η
    def pretrain_regressor(self, steps: int | None = None, log=None, should_stop=None) -> dict:
        """Train η alone on rendered (augmented) prior poses: see :func:`pretrain_eta`."""
        res = pretrain_eta(self.nets["eta"], self.skeleton, self.prior, self.cfg, self.gen, steps=steps, progress=self.progress,
                           log=log, should_stop=should_stop)
        self._ema_norm_step = -1
        if res.get("interrupted"):
            return res
        if self.ema:
            self.ema["eta"].load_state_dict(self.nets["eta"].state_dict())
        self.pretrained = True
        return res

    # ------------------------------------------------------------ one step
    def train_step(self, x: torch.Tensor, xa: torch.Tensor) -> dict[str, float]:
        """One G, D and η update on a batch ``x`` (targets) / ``xa`` (appearance frames), all or nothing.

        The three losses are computed first (neither D's nor η's depends on the G
        update), then, when every loss and gradient norm is finite, the three
        optimisers step.  Otherwise nothing changes — weights, optimiser moments,
        batch-norm statistics, the image pool, the moving averages — and the
        result has ``skipped=True``.  Returns the loss values.
        """
        cfg = self.cfg
        phi, eta, psi, disc = (self.nets[k] for k in ("phi", "eta", "psi", "disc"))
        bs = x.shape[0]
        q = self.sample_prior(bs)
        saved_buffers = [b.detach().clone() for b in self._buffers]
        saved_pool = self.pool.snapshot()

        # ---- G: Φ and Ψ (η and D frozen, still differentiable)
        eta.requires_grad_(False)
        disc.requires_grad_(False)
        try:
            y_hat = phi(x)
            p = eta(y_hat)
            y_rend = self.render(p) if (cfg.bottleneck or cfg.w_consistency) else None
            x_rec = psi(y_rend if cfg.bottleneck else y_hat, xa)
            loss_rec = self.rec_loss(x_rec, x, **self._rec_weight(x, xa))
            loss_g = cfg.w_rec * loss_rec
            named = {"loss_rec": loss_rec}
            if cfg.w_consistency:
                loss_cons = F.mse_loss(y_hat, y_rend.detach())
                loss_g = loss_g + cfg.w_consistency * loss_cons
                named["loss_consistency"] = loss_cons
            if cfg.discriminator:
                loss_adv = lsgan_loss(disc(y_hat), True)
                loss_g = loss_g + cfg.w_gan * loss_adv
                named["loss_g_adv"] = loss_adv
        finally:
            eta.requires_grad_(True)
            disc.requires_grad_(True)
        terms = {"g": loss_g}
        params = {"g": list(phi.parameters()) + list(psi.parameters())}

        y_real = self.render(q)
        # ---- D: rendered prior poses are real, Φ's outputs (through the pool) fake
        if cfg.discriminator:
            fake = self.pool.query(y_hat.detach(), self.gen)
            loss_d_real = lsgan_loss(disc(y_real), True)
            loss_d_fake = lsgan_loss(disc(fake), False)
            terms["d"] = 0.5 * (loss_d_real + loss_d_fake)
            params["d"] = list(disc.parameters())
            named.update(loss_d_real=loss_d_real, loss_d_fake=loss_d_fake)

        # ---- η fine-tune
        l_prior = regressor_prior_loss(eta(y_real), q)
        y_det = y_hat.detach()
        l_self = regressor_self_loss(self.render(eta(y_det)), y_det)
        terms["eta"] = cfg.w_reg_prior * l_prior + cfg.w_reg_self * l_self
        params["eta"] = list(eta.parameters())
        named.update(loss_eta_prior=l_prior, loss_eta_self=l_self)

        values = torch.stack([v.detach().float() for v in (*named.values(), *terms.values())]).tolist()  # one sync
        out = dict(zip(named, values))
        ok = all(math.isfinite(v) for v in values)
        if ok:
            for k, loss in terms.items():
                self.opt[k].zero_grad(set_to_none=True)
                loss.backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf  # inf: only measures the norm
            norms = torch.stack([nn.utils.clip_grad_norm_(params[k], clip) for k in terms])
            ok = bool(torch.isfinite(norms).all())
            if not ok:
                out["grad_norm"] = float("nan")
        if not ok:
            for k in terms:
                self.opt[k].zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, v in zip(self._buffers, saved_buffers):
                    b.copy_(v)
            self.pool.restore(saved_pool)
            return {**out, "skipped": True}
        for k in terms:
            self.opt[k].step()
        self._last = (x, y_hat.detach(), p.detach(), xa, x_rec.detach())
        self._update_ema()
        return out

    def _rec_weight(self, x: torch.Tensor, xa: torch.Tensor) -> dict:
        """Per-pixel weights for the fallback reconstruction loss (``rec_motion_weight``)."""
        k = self.cfg.rec_motion_weight
        if not k or not isinstance(self.rec_loss, FallbackReconstructionLoss):
            return {}
        return {"weight": 1.0 + k * (x - xa).abs().mean(1, keepdim=True)}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if not self.ema:
            return
        cfg = self.cfg
        if cfg.swa_fraction > 0 and self._progress_now >= 1.0 - cfg.swa_fraction:
            # the plain mean of the weights since the averaging phase began (the average so far counts as one)
            self.swa_count += 1
            w = 1.0 / (self.swa_count + 1)
        else:
            # follow the raw weights closely at first (an average over ~step/10 steps), then with ema_decay
            w = 1.0 - min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for k, avg in self.ema.items():
            for pa, p in zip(avg.parameters(), self.nets[k].parameters()):
                pa.lerp_(p, w)
            for ba, b in zip(avg.buffers(), self.nets[k].buffers()):
                ba.copy_(b)

    @torch.no_grad()
    def _measure_ema_norm_stats(self) -> None:
        """Batch-norm statistics of the moving averages, measured on training frames.

        The average has its own weights, so the raw networks' running statistics (copied at every
        step) do not quite fit it, and with momentum 0.1 they reflect the last ~10 batches only.
        Before the average is evaluated, used for prediction or saved, its statistics are recomputed
        as plain means over ``ema_norm_batches`` batches of training frames. No labels are involved.
        The frames are drawn with a generator seeded by (seed, step): training's random streams
        are untouched, and a resumed run measures exactly what an uninterrupted one does.
        """
        n = self.cfg.ema_norm_batches
        if not self.ema or not n or self._ema_norm_step == self.step or len(self.store) == 0:
            return
        phi, eta = self.ema["phi"], self.ema["eta"]
        bns = [m for net in (phi, eta) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # a cumulative mean over the batches below
            phi.train(), eta.train()
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
            bs = min(self.cfg.batch_size, len(self.store))
            for _ in range(n):
                idx = torch.randint(len(self.store), (bs,), generator=gen).tolist()
                x = image_to_tensor(np.stack([self.store.get(i) for i in idx]))
                eta(phi(x.to(self.device, memory_format=self.memory_format)))
            phi.eval(), eta.eval()
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        self._ema_norm_step = self.step

    def inference_nets(self) -> tuple[nn.Module, nn.Module]:
        """Φ and η as used for prediction: the moving averages when enabled, else the raw networks."""
        if self.ema:
            self._measure_ema_norm_stats()
            return self.ema["phi"], self.ema["eta"]
        return self.nets["phi"], self.nets["eta"]

    # ---------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_norm(self, images: torch.Tensor, batch: int = 64, flip_test: bool | None = None) -> torch.Tensor:
        """``N×3×S×S`` → ``N×K×2`` points in [-1, 1] (eval mode; with the flip test when ``flip_test``,
        by default ``cfg.flip_test``)."""
        phi, eta = self.inference_nets()
        was = phi.training, eta.training
        phi.eval(), eta.eval()
        flip = self.skeleton.flip_permutation if (self.cfg.flip_test if flip_test is None else flip_test) else None
        out = predict_points(phi, eta, images, flip_permutation=flip, batch_size=batch, memory_format=self.memory_format)
        phi.train(was[0]), eta.train(was[1])
        return out

    def evaluate(self) -> dict | None:
        if self.eval_set is None:
            return None
        from .evaluate import summarize

        es = self.eval_set
        pix = G.norm_to_image_pixels(self.predict_norm(es.images), self.size, es.hw)
        res = summarize(pix, es.keypoints, es.hw, self.skeleton, es.groups)
        res.pop("per_group")
        return res

    # --------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        self._measure_ema_norm_stats()  # the saved average is what the detector will use
        return {
            "format": "keypointgan-checkpoint",
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
            "ema": {k: v.state_dict() for k, v in self.ema.items()},
            "swa_count": self.swa_count,
            "optims": {k: v.state_dict() for k, v in self.opt.items()},
            "rec_loss": {k: v for k, v in self.rec_loss.state_dict().items() if not k.startswith("vgg.")},
            "pool": self.pool.state_dict(),
            "skipped_steps": self.skipped_steps,
            "rng": self._rng_state(),
        }

    def _rng_state(self) -> dict:
        """Every random state: the Trainer's generator (all its sampling), and the global torch,
        CUDA, numpy and Python generators (the loop does not draw from these, but they are
        restored on resume all the same).  Plain tensors and lists only (``weights_only``-loadable)."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        py = random.getstate()
        state = {
            "gen": self.gen.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": [py[0], list(py[1]), py[2]],
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "numpy" in state:
            n = state["numpy"]
            np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "python" in state:
            v, internal, gauss = state["python"]
            random.setstate((v, tuple(internal), gauss))
        if "cuda" in state and self.device.type == "cuda" and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.nets.items():
            v.load_state_dict(state["nets"][k])
        for k, v in self.ema.items():
            v.load_state_dict(state.get("ema", {}).get(k, state["nets"][k]))
        for k, v in self.opt.items():
            v.load_state_dict(state["optims"][k])
        self.rec_loss.load_state_dict(state["rec_loss"], strict=False)
        self.pool.load_state_dict(state["pool"], self.device)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.pretrained, self.elapsed = state["pretrained"], state["elapsed"]
        self.skipped_steps = state.get("skipped_steps", 0)
        self.swa_count = state.get("swa_count", 0)
        self._ema_norm_step = -1
        self._set_rng_state(state["rng"])
        self._restored = True

    def save(self, path: Path | None = None) -> Path:
        from .checkpoint import save_checkpoint

        path = path or self.out / "checkpoints" / CHECKPOINT_NAME
        save_checkpoint(self.state_dict(), path)
        self.saved_step = self.step
        return path

    def _progress(self, elapsed_s: float, budget_s: float) -> float:
        """Fraction of the budget spent: the larger of the step and the time fractions."""
        p = 0.0
        if self.cfg.steps:
            p = self.step / self.cfg.steps
        if math.isfinite(budget_s):
            p = max(p, elapsed_s / budget_s)
        return min(p, 1.0)

    def _set_lr(self, progress: float) -> None:
        f = self.cfg.lr_decay_fraction
        scale = 1.0 if f <= 0 or progress <= 1 - f else max(0.0, (1.0 - progress) / f)
        for k, opt in self.opt.items():
            for g in opt.param_groups:
                g["lr"] = self.base_lr[k] * scale

    # ----------------------------------------------------------- the loop
    def environment(self) -> dict:
        """Where this run executes: versions, device, threads, host (recorded in the log and the report)."""
        env = {
            "keypointgan": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.world_size,
        }
        if self.device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(self.device)
        return env

    def run(self) -> dict:
        """Pre-train η if needed, then train until the budget is spent. Returns the final metrics.

        The time budget (``max_minutes``) counts GAN training only, not η pre-training.
        A checkpoint is written after pre-training, every ``ckpt_every`` steps and at
        the end, always atomically, so a crash (even SIGKILL) loses at most one interval.
        SIGINT (Ctrl-C) or SIGTERM stops at the next step boundary, saves a checkpoint
        and raises :class:`~keypointgan.errors.TrainingInterrupted`; a second signal
        stops at once without saving (the previous checkpoint stays).
        A fresh run seeds the global torch, numpy and Python generators from the seed;
        a resumed one restores them.
        """
        cfg = self.cfg
        if cfg.steps is None and cfg.max_minutes is None:
            raise InputError("give a training budget: steps and/or max_minutes")
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:  # temporary files of checkpoint writes a crash interrupted
            for tmp in (self.out / "checkpoints").glob(f".{CHECKPOINT_NAME}.*.tmp"):
                tmp.unlink(missing_ok=True)
        log_path = self.out / "log.jsonl"
        logf = open(log_path, "a", buffering=1) if self.rank == 0 else None

        def log(rec: dict) -> None:
            if logf is not None:
                logf.write(json.dumps(rec) + "\n")

        if not self._restored:
            # a fresh run seeds the global generators too, as training scripts do: the loop itself draws
            # only from self.gen, but code it calls (a custom loss, a callback) then stays reproducible;
            # a resumed run gets them back from the checkpoint instead
            seed = cfg.seed * 1009 + self.rank
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        self._stop_signal = None
        previous = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum, frame):
                if self._stop_signal is not None:  # the second signal: stop now
                    raise KeyboardInterrupt
                self._stop_signal = signum
                if self.rank == 0:
                    print(f"\nkeypointgan: {signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                          "(send it again to stop at once)", file=sys.stderr, flush=True)

            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[sig] = signal.signal(sig, on_signal)
                except (ValueError, OSError):  # pragma: no cover - unusual embedding
                    pass
        try:
            return self._loop(log)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:  # a hard interrupt in the middle of a step: keep the last checkpoint
            log({"event": "interrupted", "step": self.step, "saved": False})
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if logf is not None:
                logf.close()

    def _interrupt(self, log) -> None:
        path = self.save() if self.rank == 0 else None
        log({"event": "interrupted", "step": self.step, "time": self.elapsed, "saved": path is not None, "signal": self._stop_signal})
        raise TrainingInterrupted(self._stop_signal, self.step, path)

    def _skipped(self, losses: dict, log, bar) -> None:
        """Book-keeping for a step skipped for NaN/Inf; too many in a row stop the run."""
        self.skipped_steps += 1
        self.bad_in_a_row += 1
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if k != "skipped" and not math.isfinite(v)) or "gradients"
        log({"event": "skipped", "step": self.step, "nonfinite": bad})
        if self.rank == 0:
            bar.write(f"keypointgan: warning: step {self.step}: non-finite {bad}; step skipped (no update)", file=sys.stderr)
        if self.bad_in_a_row >= self.cfg.max_nonfinite_steps:
            ck = self.out / "checkpoints" / CHECKPOINT_NAME
            where = f"the last checkpoint {ck} (step {self.saved_step}) is intact" if self.saved_step is not None and ck.is_file() else "no checkpoint was written"
            log({"event": "diverged", "step": self.step, "nonfinite": bad})
            raise TrainingDiverged(
                f"training stopped at step {self.step}: {self.bad_in_a_row} consecutive steps with non-finite losses or gradients "
                f"(last: {bad}); {where}",
                ck if self.saved_step is not None else None,
            )

    def _loop(self, log) -> dict:
        from tqdm.auto import tqdm

        from .viz import save_sample_grid

        cfg = self.cfg
        log({"event": "start", "step": self.step, "seed": cfg.seed, "device": str(self.device), "rec_loss": self.rec_loss.name,
             "version": __version__, "environment": self.environment(), "config": cfg.to_dict()})
        if self.progress:
            print(f"device {self.device}; reconstruction loss: {self.rec_loss.name}", flush=True)
        stop_requested = lambda: self._stop_signal is not None  # noqa: E731
        if not self.pretrained and cfg.pretrain_steps > 0:
            t0 = time.perf_counter()
            r = self.pretrain_regressor(log=log, should_stop=stop_requested)
            if r.get("interrupted"):
                log({"event": "interrupted", "step": 0, "saved": False, "phase": "pretrain"})
                raise TrainingInterrupted(self._stop_signal, 0, None)
            log({"event": "pretrained", **r, "seconds": time.perf_counter() - t0})
        if self.rank == 0 and self.step == 0:
            self.save()  # pre-training is never lost
        budget_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
        start = time.perf_counter()
        base_elapsed = self.elapsed
        total = cfg.steps if cfg.steps is not None else None
        bar = tqdm(total=total, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        it = self.batches()
        for n in self.nets.values():
            n.train()
        seen, t_win = 0, time.perf_counter()
        result: dict = {}
        while True:
            if stop_requested():
                bar.close()
                self._interrupt(log)
            if cfg.steps is not None and self.step >= cfg.steps:
                break
            if base_elapsed + (time.perf_counter() - start) >= budget_s:
                break
            self._progress_now = self._progress(base_elapsed + time.perf_counter() - start, budget_s)
            self._set_lr(self._progress_now)
            x, xa = next(it)
            losses = self.train_step(x, xa)
            self.step += 1
            seen += x.shape[0]
            self.elapsed = base_elapsed + (time.perf_counter() - start)
            bar.update(1)
            if losses.get("skipped"):
                self._skipped(losses, log, bar)
            else:
                self.bad_in_a_row = 0
                if self.step % cfg.log_every == 0:
                    now = time.perf_counter()
                    ips = seen / max(now - t_win, 1e-9)
                    seen, t_win = 0, now
                    log({"step": self.step, "time": self.elapsed, "img_per_s": ips, **losses})
                    bar.set_postfix(rec=f"{losses['loss_rec']:.3f}", d=f"{losses.get('loss_d_fake', 0):.3f}", ips=f"{ips:.0f}")
            if self.rank == 0 and self.step % cfg.sample_every == 0 and getattr(self, "_last", None) is not None:
                save_sample_grid(self.out / "samples" / f"step_{self.step:07d}.png", *self._last, self.skeleton, sigma=cfg.model.sigma)
            if self.step % cfg.eval_every == 0:
                m = self.evaluate()
                if m is not None:
                    log({"step": self.step, "time": self.elapsed, "eval": m})
                    if self.progress:
                        bar.write(f"step {self.step}: error {m['error']:.2f}  flip-corrected {m['error_flip']:.2f}  PCK {m['pck']:.3f}")
            if self.rank == 0 and self.step % cfg.ckpt_every == 0:
                self.save()
        bar.close()
        m = self.evaluate()
        if m is not None:
            log({"step": self.step, "time": self.elapsed, "eval": m, "final": True})
            result = m
        if self.rank == 0:
            self.save()
            if getattr(self, "_last", None) is not None:
                save_sample_grid(self.out / "samples" / f"step_{self.step:07d}.png", *self._last, self.skeleton, sigma=cfg.model.sigma)
            if self.eval_set is not None:
                self.save_eval_predictions()
        log({"event": "end", "step": self.step, "time": self.elapsed, "skipped_steps": self.skipped_steps})
        return result

    def save_eval_predictions(self, path: Path | None = None, n: int = 12) -> Path:
        """``RUN/eval_predictions.png``: predicted keypoints on held-out frames, each beside the truth."""
        from .viz import overlay_sheet, tensor_to_uint8

        es = self.eval_set
        idx = np.linspace(0, len(es.images) - 1, min(n, len(es.images))).round().astype(int)
        grid_hw = (self.size, self.size)  # drawn on the frames as the network sees them
        pred = G.norm_to_image_pixels(self.predict_norm(es.images[idx]), self.size, grid_hw)
        true = G.norm_to_image_pixels(G.image_pixels_to_norm(es.keypoints[idx], self.size, es.hw[idx]), self.size, grid_hw)
        return overlay_sheet(tensor_to_uint8(es.images[idx]), pred, true, self.skeleton, path or self.out / "eval_predictions.png")
