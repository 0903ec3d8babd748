"""One all-or-nothing update: every loss and gradient norm finite, or nothing changes.

A GAN step that meets a NaN or Inf must not leave half of it behind: not in the weights, the
optimisers' moments, the batch-norm statistics, the perceptual loss's running means, nor the image
pool.  :class:`Rollback` records what the forward pass itself changes (buffers, the pool) before it
runs; :func:`apply_all_or_nothing` then steps every optimiser, or none and rolls back.

In a multi-process run the decision is the same on every rank: the losses' values are averaged over
ranks before they are checked, and the gradients before their norms are (:mod:`.distributed`).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

from .distributed import SINGLE, Distributed
from .pool import ImagePool

__all__ = ["Rollback", "apply_all_or_nothing"]


class Rollback:
    """A copy of ``buffers`` and of the image pool's contents, taken now, to :meth:`restore` later."""

    def __init__(self, buffers: Sequence[torch.Tensor], pool: ImagePool):
        self.buffers = list(buffers)
        self.saved = [b.detach().clone() for b in self.buffers]
        self.pool, self.pool_saved = pool, pool.snapshot()

    @torch.no_grad()
    def restore(self) -> None:
        for b, v in zip(self.buffers, self.saved):
            b.copy_(v)
        self.pool.restore(self.pool_saved)


def apply_all_or_nothing(
    losses: dict[str, torch.Tensor],
    parts: dict[str, torch.Tensor],
    optimizers: dict[str, torch.optim.Optimizer],
    params: dict[str, Iterable[nn.Parameter]],
    *,
    grad_clip: float,
    rollback: Rollback,
    dist: Distributed = SINGLE,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[dict[str, float], bool]:
    """Back-propagate each loss into its own parameters, clip, and step every optimiser — or none.

    ``losses[k]`` is minimised by ``optimizers[k]`` over ``params[k]``; the losses' graphs must not
    share parameters that more than one of them updates (the objective freezes η and D in the G
    term for this reason).  Gradient norms are clipped to ``grad_clip`` (0: measured, not clipped).
    Returns the float values of ``parts`` and ``losses`` (one host sync; over ranks, their means), with
    ``grad_norm`` NaN when a gradient was not finite, and whether the update was applied.  When it was
    not, every gradient is cleared and ``rollback`` restored.

    ``dist``: average the values and gradients over its ranks.  ``scaler`` (fp16): the losses are
    scaled before back-propagation and the gradients unscaled before clipping; a step whose scaled
    gradients overflow is not applied, and the scaler lowers its scale (``grad_norm`` is then
    ``inf``, not NaN, and the caller does not count the step as diverging).
    """
    values_t = torch.stack([v.detach().float() for v in (*parts.values(), *losses.values())])
    values = dist.mean_(values_t).tolist()  # one sync
    out = dict(zip(parts, values))
    ok = all(math.isfinite(v) for v in values)
    if ok:
        for k, loss in losses.items():
            optimizers[k].zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        dist.average_gradients(p for k in losses for p in params[k])
        if scaler is not None:
            for k in losses:
                scaler.unscale_(optimizers[k])
        clip = grad_clip if grad_clip > 0 else math.inf  # inf: only measures the norm
        norms = torch.stack([nn.utils.clip_grad_norm_(list(params[k]), clip) for k in losses])
        ok = bool(torch.isfinite(norms).all())
        if not ok:
            out["grad_norm"] = float("inf") if scaler is not None else float("nan")
    if not ok:
        for k in losses:
            optimizers[k].zero_grad(set_to_none=True)
        rollback.restore()
        if scaler is not None and "grad_norm" in out:
            scaler.update()  # the overflow found by unscale_ lowers the scale
        return out, False
    for k in losses:
        if scaler is not None:
            scaler.step(optimizers[k])
        else:
            optimizers[k].step()
    if scaler is not None:
        scaler.update()
    return out, True
