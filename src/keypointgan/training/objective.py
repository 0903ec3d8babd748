"""The KeypointGAN objective (Jakab et al., CVPR 2020, §3; the authors' release), term by term.

With ``x`` a target frame, ``x′`` another frame of the same video (the appearance frame) and ``q`` a
batch of prior poses, never paired with the frames::

    ŷ = Φ(x)              the skeleton image Φ predicts for the target
    p = η(ŷ)              keypoints regressed from it (soft-argmax; ``B×K×2`` in [-1, 1])
    x̂ = Ψ(β(p), x′)       the target reconstructed from the re-rendered keypoints (the bottleneck)
                          and the appearance frame; ``bottleneck=False``: Ψ(ŷ, x′) (ablation)

    G (Φ, Ψ; η and D frozen but differentiable):
        w_gan · LSGAN(D(ŷ), real)  +  w_rec · Rec(x̂, x)
    D (rendered prior poses real, Φ's outputs fake, through the image pool):
        ½ · [LSGAN(D(β(q)), real) + LSGAN(D(pool(ŷ)), fake)]
    η (fine-tuned alongside):
        w_reg_prior · MSE(η(β(q)), q)  +  w_reg_self · MSE(β(η(ŷ)), ŷ)

With ``swaps`` (``regressor_side_swaps``) the prior term is taken per pose up to the left/right relabelling
that leaves ``β(q)`` unchanged (:func:`keypointgan.losses.regressor_prior_loss`), not in the paper.

``Rec`` is the VGG-19 perceptual loss with weights given, else the fallback loss
(:func:`keypointgan.losses.make_reconstruction_loss`).  ``discriminator=False`` drops the adversarial
term and D's loss (ablation).  Under mixed precision (autocast around this function) the networks'
outputs are cast to float32 here, so the renderer and every loss work in float32.  None of the three losses depends on another's update, so the caller
may compute all three first and then update (:mod:`.update`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..geometry import render_signed as render  # β: B×K×2 points → B×1×S×S skeleton image in [-1, 1]
from ..losses import lsgan_loss, regressor_prior_loss, regressor_self_loss
from ..skeleton import Skeleton

__all__ = ["Terms", "keypointgan_objective", "term_parameters"]


@dataclass
class Terms:
    """One batch's losses: ``losses`` per optimiser (``g``, ``d``, ``eta``) to minimise, ``parts`` the
    named pieces to log, and ``visuals`` ``(x, ŷ, p, x′, x̂)`` detached, for sample grids."""

    losses: dict[str, torch.Tensor]
    parts: dict[str, torch.Tensor]
    visuals: tuple[torch.Tensor, ...]


def keypointgan_objective(
    nets: dict[str, nn.Module],
    x: torch.Tensor,
    x_app: torch.Tensor,
    q: torch.Tensor,
    *,
    cfg,
    skeleton: Skeleton,
    rec_loss: nn.Module,
    fakes_for_d: Callable[[torch.Tensor], torch.Tensor],
    swaps: torch.Tensor | None = None,
) -> Terms:
    """The G, D and η losses of one batch.

    Args:
        nets: ``phi`` (Φ), ``eta`` (η), ``psi`` (Ψ), ``disc`` (D).
        x, x_app: ``B×3×S×S`` targets and appearance frames in [-1, 1].
        q: ``B×K×2`` prior poses in [-1, 1].
        cfg: the run's :class:`~keypointgan.config.TrainConfig` (weights and switches).
        rec_loss: ``Rec(x̂, x)``.
        fakes_for_d: ``ŷ`` (detached) → what D sees as fake (the image pool's query).
        swaps: ``R×K`` relabellings of η's prior term (:func:`.pretrain.side_swaps`); None: the plain error.
    """
    phi, eta, psi, disc = (nets[k] for k in ("phi", "eta", "psi", "disc"))
    size, sigma = cfg.model.size, cfg.model.sigma

    # ---- G: Φ and Ψ; η and D take part but are not updated by this term
    eta.requires_grad_(False)
    disc.requires_grad_(False)
    try:
        y_hat = _full(phi(x))
        p = eta(y_hat)
        x_rec = _full(psi(render(p, skeleton, size, sigma) if cfg.bottleneck else y_hat, x_app))
        loss_rec = rec_loss(x_rec, x)
        loss_g = cfg.w_rec * loss_rec
        parts = {"loss_rec": loss_rec}
        if cfg.discriminator:
            loss_adv = lsgan_loss(_float(disc(y_hat)), True)
            loss_g = loss_g + cfg.w_gan * loss_adv
            parts["loss_g_adv"] = loss_adv
    finally:
        eta.requires_grad_(True)
        disc.requires_grad_(True)
    losses = {"g": loss_g}

    y_real = render(q, skeleton, size, sigma)
    # ---- D: rendered prior poses are real, Φ's outputs (through the pool) fake
    if cfg.discriminator:
        fake = fakes_for_d(y_hat.detach())
        group = cfg.model.disc_batch_std
        if cfg.model.disc_norm == "batch" or (group and len(y_real) % group):
            # batch statistics (or batch-std groups that would straddle the halves): real and fake apart, as D sees them
            real_out, fake_out = _float(disc(y_real)), _float(disc(fake))
        else:  # D treats every image (or group) on its own: one pass over both batches computes the same, faster
            both = _float(disc(torch.cat([y_real, fake])))
            real_out, fake_out = [o[: len(y_real)] for o in both], [o[len(y_real):] for o in both]
        loss_d_real = lsgan_loss(real_out, True)
        loss_d_fake = lsgan_loss(fake_out, False)
        losses["d"] = 0.5 * (loss_d_real + loss_d_fake)
        parts.update(loss_d_real=loss_d_real, loss_d_fake=loss_d_fake)

    # ---- η: the prior's poses from their renderings, and its own predictions re-rendered
    l_prior = regressor_prior_loss(eta(y_real), q, swaps)
    y_det = y_hat.detach()
    l_self = regressor_self_loss(render(eta(y_det), skeleton, size, sigma), y_det)
    losses["eta"] = cfg.w_reg_prior * l_prior + cfg.w_reg_self * l_self
    parts.update(loss_eta_prior=l_prior, loss_eta_self=l_self)
    return Terms(losses, parts, (x, y_det, p.detach(), x_app, x_rec.detach()))


def _full(t: torch.Tensor) -> torch.Tensor:
    """A network's output in float32 when autocast made it bf16/fp16; other dtypes as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _float(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """D's per-scale maps, each through :func:`_full`."""
    return [_full(o) for o in outputs]


def term_parameters(nets: dict[str, nn.Module]) -> dict[str, list[nn.Parameter]]:
    """The parameters each term updates: ``g`` → Φ and Ψ, ``d`` → D, ``eta`` → η."""
    return {
        "g": list(nets["phi"].parameters()) + list(nets["psi"].parameters()),
        "d": list(nets["disc"].parameters()),
        "eta": list(nets["eta"].parameters()),
    }
