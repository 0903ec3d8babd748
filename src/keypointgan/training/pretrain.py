"""η on its own: sampling prior poses, and pre-training η on them before the GAN game starts."""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn

from .. import geometry
from ..data.datasets import augment_poses
from ..losses import regressor_prior_loss
from ..skeleton import Skeleton

__all__ = ["sample_prior", "pretrain_eta", "side_swaps", "BOTH_WAYS"]

BOTH_WAYS = 0.1
"""``regressor_side_swaps: auto`` swaps when at least this fraction of the prior's figures face the other way."""


def side_swaps(cfg, skeleton: Skeleton, prior: torch.Tensor) -> torch.Tensor | None:
    """The ``R×K`` relabellings η's prior term is taken over (:func:`keypointgan.losses.regressor_prior_loss`),
    or None for the plain error: ``cfg.regressor_side_swaps`` on, or auto and the prior's figures face both
    ways (:meth:`~keypointgan.skeleton.Skeleton.facing_fraction` between ``BOTH_WAYS`` and ``1 - BOTH_WAYS``)."""
    mode = cfg.regressor_side_swaps
    if mode == "off" or len(skeleton.side_swaps) < 2:
        return None
    if mode == "auto" and not BOTH_WAYS <= skeleton.facing_fraction(prior) <= 1 - BOTH_WAYS:
        return None
    return torch.tensor(skeleton.side_swaps, device=prior.device)


def sample_prior(prior: torch.Tensor, n: int, cfg, skeleton: Skeleton, gen: torch.Generator, *, pretrain: bool) -> torch.Tensor:
    """``n`` prior poses (``n×K×2`` in [-1, 1]) drawn with replacement from ``prior``: ``N×K×2`` poses each
    equally likely, or ``S×L×K×2`` poses grouped by sequence (NaN after each sequence's end,
    :func:`keypointgan.data.datasets.group_poses`), a sequence uniformly and then a pose in it;
    for η's pre-training (``pretrain``) rotated, scaled and shifted by the ``pretrain_*`` ranges of
    ``cfg`` (a :class:`~keypointgan.config.TrainConfig`), for the GAN game jittered by ``cfg.prior_jitter``; with
    ``cfg.flip_augment`` half of them mirrored (left/right keypoints swapped) in both."""
    if prior.ndim == 4:
        lengths = torch.isfinite(prior[:, :, 0, 0]).sum(1).cpu()
        s = torch.randint(prior.shape[0], (n,), generator=gen)
        t = (torch.rand(n, generator=gen, dtype=torch.float64) * lengths[s]).long()
        q = prior[s.to(prior.device), t.to(prior.device)]
    else:
        q = prior[torch.randint(prior.shape[0], (n,), generator=gen).to(prior.device)]
    if pretrain:
        rot, sc, tr = cfg.pretrain_rotate, cfg.pretrain_scale, cfg.pretrain_translate
    else:
        j = cfg.prior_jitter
        rot, sc, tr = 100.0 * j, (1.0 - j, 1.0 + j), j
    flip = cfg.flip_augment
    if rot or tr or tuple(sc) != (1.0, 1.0) or flip:
        g = torch.Generator(device=prior.device).manual_seed(int(torch.randint(2**62, (), generator=gen)))
        q = augment_poses(q, g, rotate_deg=rot, scale=tuple(sc), translate=tr, flip=flip, flip_permutation=skeleton.flip_permutation)
    return q


def pretrain_eta(
    eta: nn.Module,
    skeleton: Skeleton,
    prior: torch.Tensor,
    cfg,
    gen: torch.Generator,
    *,
    steps: int | None = None,
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dist=None,
    autocast: Callable[[], ContextManager] | None = None,
) -> dict:
    """Pre-train η on the prior alone: ``MSE(η(β(q)), q)`` with pose augmentation.

    ``prior`` is ``N×K×2`` in [-1, 1] on η's device; ``cfg`` a :class:`~keypointgan.config.TrainConfig`.
    Adam at ``cfg.pretrain_lr`` with cosine decay over ``steps`` (default ``cfg.pretrain_steps``);
    batches of ``cfg.pretrain_batch`` poses rotated, scaled and shifted by the ``pretrain_*`` ranges.
    ``should_stop()`` is polled before every step; when it returns True the result has
    ``interrupted=True``.  Returns ``pretrain_mse`` (the last batch's), ``pretrain_steps``, ``side_swaps``
    (whether the prior term was taken up to left/right, :func:`side_swaps`) and ``prior_facing``
    (:meth:`~keypointgan.skeleton.Skeleton.facing_fraction` of the prior).
    ``dist`` (a :class:`~.distributed.Distributed`): average η's gradients over its ranks (each draws
    its own poses: the batch is ``pretrain_batch`` × ranks).  ``autocast``: η's forward passes run in it.
    """
    from tqdm.auto import tqdm

    steps = cfg.pretrain_steps if steps is None else steps
    eta.train()
    opt = torch.optim.Adam(eta.parameters(), lr=cfg.pretrain_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    size, sigma = cfg.model.size, cfg.model.sigma
    loss = torch.tensor(float("nan"))
    swaps = side_swaps(cfg, skeleton, prior)
    bar = tqdm(range(steps), desc="pre-train η", disable=not progress, leave=False)
    for i in bar:
        if should_stop is not None and should_stop():
            bar.close()
            return {"pretrain_mse": float(loss.item()), "pretrain_steps": i, "interrupted": True}
        q = sample_prior(prior, cfg.pretrain_batch, cfg, skeleton, gen, pretrain=True)
        with (autocast or contextlib.nullcontext)():
            loss = regressor_prior_loss(eta(geometry.render_signed(q, skeleton, size, sigma)), q, swaps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if dist is not None:
            dist.average_gradients(eta.parameters())
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(eta.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if i % 25 == 0:
            bar.set_postfix(mse=f"{loss.item():.2e}")
            if log is not None:
                log({"phase": "pretrain", "step": i, "loss_eta_prior": loss.item()})
    return {"pretrain_mse": float(loss.item()), "pretrain_steps": int(steps), "side_swaps": swaps is not None,
            "prior_facing": skeleton.facing_fraction(prior)}
