"""The supervised upper bound: Φ + η trained directly on the training videos' true keypoints, for the
same time as KeypointGAN (the demo's and the fidelity suite's ``supervised`` row)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import geometry as G
from .. import pixels as P
from ..config import TrainConfig
from ..data import FrameStore, Layout
from ..data.datasets import image_to_tensor
from ..data.loader import norm_batches
from ..devices import select_device
from ..inference import predict_points, unmirror
from ..losses import regressor_prior_loss
from ..nets import build_networks
from ..training.averaging import WeightAverage
from ..training.evaluation import EvalSet, evaluate_points
from ..training.loop import budget_fraction, lr_scale
from ..training.pretrain import side_swaps

__all__ = ["train_supervised", "predict_test_set"]


def predict_test_set(predict, es: EvalSet, skeleton, flip_test: bool) -> tuple[torch.Tensor, dict | None]:
    """Points on the test frames as configured, and with the flip test on, also the headline numbers of
    one pass per image (for comparison; each pass runs once). ``predict``: images → one-pass points."""
    single = predict(es.images)
    if not flip_test:
        return single, None
    both = 0.5 * (single + unmirror(predict(es.images.flip(-1)), skeleton.flip_permutation))
    r = evaluate_points(single, es, skeleton)
    return both, {k: r[k] for k in ("error", "error_flip", "pck")}


def train_supervised(
    cfg: TrainConfig,
    layout: Layout,
    videos,
    es: EvalSet,
    *,
    minutes: float | None,
    steps: int | None,
    progress: bool = True,
    store: FrameStore | None = None,
    eval_s: float = 0.0,
    log_every: int = 0,
    log_set: EvalSet | None = None,
) -> dict:
    """The upper bound: Φ + η trained on true keypoints (``MSE`` on points plus ``MSE(Φ(x), β(p))``).

    The point error is taken up to ``cfg.regressor_side_swaps`` as KeypointGAN's η takes it
    (:func:`keypointgan.training.pretrain.side_swaps`, decided on the training keypoints): where the
    figures face either way and the image does not show which side is left, the plain error would
    average the two sides and fold the limbs onto the trunk; the evaluation's flip-corrected error
    scores either labelling.  The result's ``side_swaps`` says which it was.

    It is trained with KeypointGAN's recipe from ``cfg`` wherever one applies: the learning-rate decay
    over the last ``lr_decay_fraction`` of the budget, and prediction by the weight average
    (``ema_decay``, ``swa_fraction``) with its batch-norm statistics re-measured on
    ``ema_norm_batches`` batches of training frames. (With constant rates and the raw weights, the
    bound's error at one seed and ~5.8k steps ranged from 1.84 to 4.92 depending on where the time
    ran out: docs/experiments.md, the supervised bound, 2026-12-02.)

    ``store`` reuses frames already loaded for ``videos`` (the demo passes KeypointGAN's). The clock
    for ``minutes`` covers loading, training and the final evaluation, which is expected to take
    ``eval_s`` seconds (training stops that much earlier). Every ``log_every`` steps (0: never) the raw
    networks' error on ``log_set`` (default ``es``) is recorded in the result's ``history`` as
    ``[step, error]`` rows.
    """
    from tqdm.auto import tqdm

    dev = select_device(cfg.device)
    sk = layout.skeleton
    size = cfg.model.size
    nets = build_networks(cfg.model, sk.num_keypoints, with_gan=False)
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    phi, eta = nets["phi"].to(dev, memory_format=mf), nets["eta"].to(dev, memory_format=mf)
    t0 = time.perf_counter()
    store = store if store is not None else FrameStore(videos, size)
    kps = np.concatenate([layout.load_keypoints(v) for v in videos])
    hw = np.array([store.original_size(i) for i in range(len(store))])
    norm = torch.from_numpy(P.image_pixels_to_norm(kps, size, hw))  # true points on the network's grid
    swaps = side_swaps(cfg, sk, norm.float())
    swaps = None if swaps is None else swaps.to(dev)
    params = list(phi.parameters()) + list(eta.parameters())
    base_lr = cfg.lr * 2
    opt = torch.optim.Adam(params, lr=base_lr, betas=(0.9, 0.999))
    average = (
        WeightAverage({"phi": phi, "eta": eta}, decay=cfg.ema_decay, swa_fraction=cfg.swa_fraction)
        if cfg.ema_decay > 0 or cfg.swa_fraction > 0
        else None
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    budget_s = math.inf if minutes is None else max(minutes * 60 - eval_s, 1e-9)
    step = 0
    history: list[list[float]] = []
    log_set = es if log_set is None else log_set

    def batch(idx: torch.Tensor) -> torch.Tensor:
        return image_to_tensor(np.stack([store.get(int(i)) for i in idx])).to(dev, memory_format=mf)

    def error_now(p: nn.Module, e: nn.Module) -> float:
        pts = predict_points(p, e, log_set.images, memory_format=mf)
        return float(evaluate_points(pts, log_set, sk)["error"])

    bar = tqdm(desc="supervised", total=steps, disable=not progress, leave=False)
    spent = 0.0  # the fraction of the budget spent before this step
    while step == 0 or spent < 1.0:  # (at least one step, however short the budget)
        for g in opt.param_groups:
            g["lr"] = base_lr * lr_scale(spent, cfg.lr_decay_fraction)
        idx = torch.randint(len(store), (cfg.batch_size,), generator=gen)
        x = batch(idx)
        q = norm[idx].to(dev)
        ok = torch.isfinite(q).all(-1, keepdim=True)
        q = torch.where(ok, q, torch.zeros_like(q))
        y = phi(x)
        p = eta(y)
        target = G.render_signed(q, sk, size, cfg.model.sigma)
        loss = regressor_prior_loss(p, q, swaps, valid=ok) + F.mse_loss(y, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.grad_clip or 1e9)
        opt.step()
        if average is not None:
            average.update({"phi": phi, "eta": eta}, step=step, progress=spent)
        step += 1
        bar.update(1)
        if log_every and step % log_every == 0:
            phi.eval(), eta.eval()
            history.append([step, error_now(phi, eta)])
            phi.train(), eta.train()
        spent = budget_fraction(step, time.perf_counter() - t0, steps, budget_s)
    bar.close()
    phi.eval(), eta.eval()
    if average is not None:
        if cfg.ema_norm_batches:
            average.refresh_norm_stats(lambda: norm_batches(store, cfg.ema_norm_batches, cfg.batch_size, cfg.seed, step, dev, mf), step)
        phi, eta = average.networks()
    pts, single = predict_test_set(lambda x: predict_points(phi, eta, x, memory_format=mf), es, sk, cfg.flip_test)
    res = evaluate_points(pts, es, sk)
    if single is not None:
        res["single_pass"] = single
    res.update(steps=step, minutes=(time.perf_counter() - t0) / 60, averaged=average is not None, side_swaps=swaps is not None)
    if history:
        res["history"] = history
    return res
