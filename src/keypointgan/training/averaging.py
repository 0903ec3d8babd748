"""Averaged weights of Φ and η for inference: an exponential moving average with a warm-up, a plain
mean over the last fraction of the budget, and batch-norm statistics measured for the average itself.

Built on :mod:`torch.optim.swa_utils`: each network's average is an
:class:`~torch.optim.swa_utils.AveragedModel` whose averaging function moves the average towards the
current weights by a step-dependent amount, and :func:`~torch.optim.swa_utils.update_bn` re-measures
its batch-norm statistics.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

__all__ = ["WeightAverage", "averaging_weight"]

AVERAGED = ("phi", "eta")


def averaging_weight(step: int, progress: float, decay: float, swa_fraction: float, swa_count: int) -> tuple[float, int]:
    """How far the average moves towards the current weights after step ``step`` (0-based), and the
    new count of weights in the plain mean.

    Before the last ``swa_fraction`` of the budget (``progress`` is the fraction spent before this
    step): an exponential average, ``1 − min(decay, (1 + step) / (10 + step))`` (it follows the raw
    weights closely at first, about the last step/10 steps).  In the last ``swa_fraction``: the plain
    mean of the weights after every step, the average so far counting as one, ``1 / (count + 1)``.
    """
    if swa_fraction > 0 and progress >= 1.0 - swa_fraction:
        swa_count += 1
        return 1.0 / (swa_count + 1), swa_count
    return 1.0 - min(decay, (1 + step) / (10 + step)), swa_count


class WeightAverage:
    """Averages of ``nets["phi"]`` and ``nets["eta"]`` (what evaluation, checkpoints' detector and
    prediction use when ``ema_decay`` or ``swa_fraction`` is set).

    The averages start as copies of the networks.  Their buffers (batch-norm statistics) follow the
    raw networks' after every update; :meth:`refresh_norm_stats` replaces them with statistics
    measured for the averaged weights.
    """

    def __init__(self, nets: dict[str, nn.Module], *, decay: float, swa_fraction: float):
        self.decay, self.swa_fraction = decay, swa_fraction
        self.swa_count = 0
        self._weight = 0.0
        self.models = {k: AveragedModel(nets[k], multi_avg_fn=self._lerp) for k in AVERAGED}
        for m in self.models.values():
            m.n_averaged.fill_(1)  # the copy counts as the first average: every update goes through _lerp
            m.eval().requires_grad_(False)
        self.norm_step: int | None = None  # the step whose batch-norm statistics the averages hold

    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        for a, c in zip(averaged, current):
            a.lerp_(c, self._weight)

    @torch.no_grad()
    def update(self, nets: dict[str, nn.Module], *, step: int, progress: float) -> None:
        """Fold the networks' weights after step ``step`` in; ``progress``: budget fraction spent before it."""
        self._weight, self.swa_count = averaging_weight(step, progress, self.decay, self.swa_fraction, self.swa_count)
        for k, m in self.models.items():
            m.update_parameters(nets[k])
        self.norm_step = None

    def networks(self) -> tuple[nn.Module, nn.Module]:
        """The averaged Φ and η (plain modules, in eval mode)."""
        return self.models["phi"].module, self.models["eta"].module

    def copy_from(self, name: str, net: nn.Module) -> None:
        """Restart the average of one network from ``net``'s weights (e.g. a pre-trained η)."""
        self.models[name].module.load_state_dict(net.state_dict())
        self.norm_step = None

    @torch.no_grad()
    def refresh_norm_stats(self, batches: Callable[[], Iterable[torch.Tensor]], step: int) -> None:
        """Batch-norm statistics of the averages as plain means over ``batches()`` (images ``B×3×S×S``
        on the networks' device), once per step: the raw networks' statistics belong to other weights
        and, with momentum 0.1, to their last ~10 batches only."""
        if self.norm_step == step:
            return
        phi, eta = self.networks()
        update_bn(batches(), nn.Sequential(phi, eta))
        phi.eval(), eta.eval()
        self.norm_step = step

    def state_dict(self) -> dict:
        return {"ema": {k: m.module.state_dict() for k, m in self.models.items()}, "swa_count": self.swa_count}

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.models.items():
            m.module.load_state_dict(state["ema"][k])
        self.swa_count = int(state.get("swa_count", 0))
        self.norm_step = None
