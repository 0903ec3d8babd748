"""Two diagnostics of a trained run: the appearance leak through Φ's raw output, and whether the
reconstruction prefers the true pose.

**The appearance leak.** The paper shows the leak as a picture of ``log Φ(x)``: structured noise in the background of the
skeleton image that carries appearance.  The bottleneck (Ψ sees ``β(η(Φ(x)))``, the skeleton
re-rendered from the keypoints, never ``Φ(x)``) is what removes it.  Two measurements compare the
raw output ``ŷ = Φ(x)`` with the re-rendered skeleton ``β(η(ŷ))``:

* **Swap** — Ψ rebuilds the target ``x`` from a skeleton image and the appearance frame ``a`` of
  *another* video.  Without a leak the result has ``x``'s pose and ``a``'s appearance; with a leak it
  follows ``x`` itself.  ``follows_target = d(x̂, a) / (d(x̂, a) + d(x̂, x))`` with ``d`` the mean
  absolute difference over pixels, per pair, averaged: 0 when ``x̂ = a``, 1 when ``x̂ = x``.
  It is measured for Ψ given ``ŷ`` and given ``β(η(ŷ))`` (a run trained with the bottleneck never
  gave Ψ ``ŷ``, so its ``raw`` number reads Ψ outside what it learnt; the ablation's ``bottleneck``
  number likewise).
* **Probe** — a nearest-class-mean classifier of the video identity (each class's mean of the
  standardised features; a test frame goes to the nearest), fitted on the first half of the
  chosen frames of every video and tested on the second half, from features of each image:
  ``log`` of the skeleton image in [0, 1] (``log((y + 1) / 2)``, clamped at ``1e-4``, which brings
  out the background as the paper's picture does), average-pooled to 8×8.  Chance is ``1 / V``.
  The same features of the re-rendered skeleton hold the pose only, so its accuracy is what pose alone
  tells about the video; the raw output's excess over it is appearance.

**The reconstruction's preference for the true pose** (on data with keypoints).  Φ learns where to put
a keypoint only from the gradient of the reconstruction loss (D judges the skeleton's plausibility,
not its place on the image).  With Ψ as trained, for each frame ``x`` with true keypoints ``t`` and
predicted ones ``p = η(Φ(x))``, and an appearance frame ``x′`` of the *same* video (as in training),
compare ``L(s) = Rec(Ψ(β(s), x′), x)`` (the run's reconstruction loss) at ``s = p`` and at ``s = t``, and
with only keypoint ``k`` moved from ``p`` to ``t``.  ``prefers_truth`` is the fraction of frames where
the truth reconstructs better (ties count ½): 1 when the objective pulls Φ towards the truth, ½ when
it does not care where the keypoints are, below ½ when Ψ has learnt Φ's own placement (the two have
settled on it, and the reconstruction holds Φ there).  It reads the objective's local pull at the end
of training, not whether a different equilibrium would be better.

**Where the error comes from** (on data with keypoints).  The prediction ``η(Φ(x))`` passes two
networks; the error of each is measured against the pose that best explains Φ's image: ``f`` minimises
``mean (β(f) − Φ(x))²`` (β: :func:`~keypointgan.geometry.render_signed` with the run's σ), fitted by
Adam from η's reading as the start.  ``fitted_vs_truth``: how well Φ's image locates the limbs (the
best any reader of it could do with this renderer); ``eta_vs_fitted``: what η loses reading it;
``eta_vs_truth``: the prediction's error.  Mean distances over keypoints and frames, in % of the image
side.  A large ``fitted_vs_truth`` blames Φ, a large ``eta_vs_fitted`` with a small one blames η;
``fit_residual`` (the fitted render's mean squared difference from Φ(x), beside η's reading's) says how
well any pose explains the image at all.  A skeleton image does not show which side is left, so each
frame's truth is compared in the labelling of its sides (:attr:`~keypointgan.skeleton.Skeleton.side_swaps`)
nearer to η's reading, as the evaluation's flip correction does.

**Which way the prior's figures face** (when the data has a prior).  η learns to read sides from where
they are drawn; a prior whose figures face either way (``faces_one_way`` near ½: the fraction of poses
whose left keypoints lie right of their right ones, in the mean over symmetric pairs) gives the same
render two labellings, and η trained on the plain error reads the two sides' average, folding the limbs
onto the trunk (``regressor_side_swaps`` removes this).  ``eta_on_prior``: η's error reading renders of
prior poses (in the nearer labelling), the floor of what it reads in Φ's images.  A joint between two limbs in line (a straight arm) can slide
along them without changing the render: there the fit is as ambiguous as the image.

:func:`measure_leak` takes the networks and frames (any Φ, η, Ψ — used by the tests with networks
built by hand); :func:`diagnose` reads a run's checkpoint and a dataset and writes
``diagnose.json`` and ``diagnose.png`` (rows: target, the other video's appearance frame, Φ(x),
log Φ(x), β(η(Φ(x))), Ψ from Φ(x), Ψ from β(η(Φ(x)))), and :func:`measure_pose_preference` and
:func:`measure_error_sources` when the data has keypoints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import geometry
from ..errors import InputError
from ..skeleton import Skeleton
from ..training.pretrain import BOTH_WAYS, side_swaps

__all__ = ["measure_leak", "measure_pose_preference", "measure_error_sources", "measure_prior_reading", "fit_pose", "format_error_sources", "diagnose", "probe_accuracy", "log_skeleton", "format_table", "format_preference"]

LOG_FLOOR = 1e-4
"""``log Φ(x)`` clamps the skeleton image in [0, 1] at this value (``log`` of it is ≈ −9.2)."""


def log_skeleton(y: torch.Tensor) -> torch.Tensor:
    """``B×1×H×W`` skeleton image in [-1, 1] → ``log((y + 1) / 2)`` clamped at ``log(1e-4)``."""
    return torch.log(((y + 1.0) / 2.0).clamp(min=LOG_FLOOR, max=1.0))


def _features(y: torch.Tensor, pool: int = 8) -> np.ndarray:
    """``B×1×H×W`` skeleton images → ``B×pool²`` features: ``log`` image average-pooled to ``pool×pool``."""
    return F.adaptive_avg_pool2d(log_skeleton(y.float()), pool).flatten(1).cpu().double().numpy()


def _device(net: torch.nn.Module) -> torch.device:
    """Where ``net``'s parameters live (CPU for a network without any, as the tests build)."""
    return next((q.device for q in net.parameters()), torch.device("cpu"))


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    """Accuracy on ``~train`` of a nearest-class-mean classifier fitted on ``train``.

    ``features``: ``N×D``; ``labels``: ``N`` ints in ``0…C-1``; ``train``: ``N`` bools.  The features
    are standardised with the training rows' mean and standard deviation (a constant feature becomes
    0); each class is the mean of its training rows; a test row takes the class of the nearest mean
    (Euclidean; ties: the lowest class, so features that carry nothing score ``1 / C`` on balanced
    classes).  Unlike a linear probe it separates classes that lie along one direction in order.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    train = np.asarray(train, dtype=bool)
    mu, sd = x[train].mean(0), x[train].std(0)
    sd = np.where(sd > 1e-12, sd, np.inf)  # a constant feature carries nothing
    z = (x - mu) / sd
    classes = int(y.max()) + 1
    means = np.stack([z[train & (y == c)].mean(0) if (train & (y == c)).any() else np.full(z.shape[1], np.inf) for c in range(classes)])
    dist = ((z[~train][:, None, :] - means[None]) ** 2).sum(-1)
    dist = np.round(dist, 9)  # equal up to rounding: a tie
    return float((dist.argmin(1) == y[~train]).mean())


@torch.no_grad()
def measure_leak(
    phi: torch.nn.Module,
    eta: torch.nn.Module,
    psi: torch.nn.Module,
    skeleton: Skeleton,
    frames: torch.Tensor,
    video: Sequence[int],
    *,
    sigma: float,
    batch: int = 32,
) -> tuple[dict, dict]:
    """The two leak measurements (module docs) on ``frames``.

    Args:
        frames: ``N×3×S×S`` in [-1, 1]; ``video``: the video index of each frame (``N`` ints, at least
            two videos, each holding at least two frames: the probe fits on the first half of each
            video's frames, in the order given, and tests on the rest).
        sigma: the renderer's σ (the run's ``model.sigma``).

    Returns:
        ``(numbers, pictures)``: ``pictures`` holds the tensors for the first frame of each of the first
        8 videos (for the figure); ``numbers`` has ``swap`` (``follows_target`` and the mean absolute
        differences ``to_target`` / ``to_appearance`` for ``raw`` and ``bottleneck``), ``probe``
        (accuracies ``raw``, ``bottleneck``, ``chance``), ``leak_factor`` (raw / bottleneck
        ``follows_target``) and counts.
    """
    video = np.asarray(video, dtype=np.int64)
    n = len(video)
    if n != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {n} video indices")
    ids = np.unique(video)
    if len(ids) < 2:
        raise InputError("the leak diagnostic needs frames of at least two videos")
    label = np.searchsorted(ids, video)
    # appearance frame of another video: the frame at the same position in the next video (cyclic)
    first = {v: np.flatnonzero(label == v) for v in range(len(ids))}
    partner = np.empty(n, dtype=np.int64)
    train = np.zeros(n, dtype=bool)
    for v, idx in first.items():
        if len(idx) < 2:
            raise InputError(f"the leak diagnostic needs at least two frames of every video (video {ids[v]} has {len(idx)})")
        other = first[(v + 1) % len(ids)]
        partner[idx] = other[np.arange(len(idx)) % len(other)]
        train[idx[: len(idx) // 2]] = True
    dev = _device(phi)
    raw_f, bn_f, d = [], [], {k: [] for k in ("raw_t", "raw_a", "bn_t", "bn_a")}
    for s in range(0, n, batch):
        x = frames[s : s + batch].to(dev)
        a = frames[torch.as_tensor(partner[s : s + batch])].to(dev)
        y = phi(x)
        p = eta(y)
        r = geometry.render_signed(p, skeleton, x.shape[-1], sigma)
        rec_raw, rec_bn = psi(y, a), psi(r, a)
        for key, rec in (("raw", rec_raw), ("bn", rec_bn)):
            d[key + "_t"].append((rec - x).abs().flatten(1).mean(1).cpu())
            d[key + "_a"].append((rec - a).abs().flatten(1).mean(1).cpu())
        raw_f.append(_features(y))
        bn_f.append(_features(r))
    # the picture: the first frame of each of the first 8 videos
    sel = torch.as_tensor([first[v][0] for v in range(min(8, len(ids)))])
    x, a = frames[sel].to(dev), frames[torch.as_tensor(partner[sel.numpy()])].to(dev)
    y = phi(x)
    p = eta(y)
    r = geometry.render_signed(p, skeleton, x.shape[-1], sigma)
    pics = {"target": x, "appearance": a, "phi": y, "log_phi": log_skeleton(y), "rendered": r, "points": p,
            "rec_raw": psi(y, a), "rec_bottleneck": psi(r, a)}
    dd = {k: torch.cat(v).double().numpy() for k, v in d.items()}

    def swap(key):
        t, a = dd[key + "_t"], dd[key + "_a"]
        follows = a / np.maximum(a + t, 1e-12)
        return {"follows_target": float(follows.mean()), "to_target": float(t.mean()), "to_appearance": float(a.mean())}

    sw = {"raw": swap("raw"), "bottleneck": swap("bn")}
    probe = {
        "raw": probe_accuracy(np.concatenate(raw_f), label, train),
        "bottleneck": probe_accuracy(np.concatenate(bn_f), label, train),
        "chance": 1.0 / len(ids),
    }
    numbers = {
        "swap": sw,
        "probe": probe,
        "leak_factor": sw["raw"]["follows_target"] / max(sw["bottleneck"]["follows_target"], 1e-12),
        "videos": int(len(ids)),
        "frames": int(n),
    }
    return numbers, pics


def measure_pose_preference(
    phi: torch.nn.Module,
    eta: torch.nn.Module,
    psi: torch.nn.Module,
    rec_loss: torch.nn.Module,
    skeleton: Skeleton,
    frames: torch.Tensor,
    truth: torch.Tensor,
    video: Sequence[int],
    *,
    sigma: float,
) -> dict:
    """The reconstruction's preference for the true pose (module docs) on ``frames``.

    Args:
        rec_loss: ``Rec(x̂, x)`` of the run (evaluated one frame at a time, in eval mode).
        frames: ``N×3×S×S`` in [-1, 1]; ``truth``: ``N×K×2`` true keypoints in [-1, 1] on the same grid
            (NaN where missing: such a keypoint keeps its prediction); ``video``: each frame's video
            (every video needs two frames: a frame's appearance frame is the one half its video away).
        sigma: the renderer's σ (the run's ``model.sigma``).

    Returns:
        ``whole_pose``: ``prefers_truth``, mean ``loss_predicted`` and ``loss_truth``, and
        ``relative_change`` (mean of ``(L(t) − L(p)) / L(p)``); ``per_keypoint``: for each name,
        ``prefers_truth`` and ``error`` (mean distance of the prediction from the truth, % of the image
        side); ``error`` over all keypoints; ``frames``.
    """
    video = np.asarray(video, dtype=np.int64)
    n, k = truth.shape[0], skeleton.num_keypoints
    if frames.shape[0] != n or len(video) != n or tuple(truth.shape[1:]) != (k, 2):
        raise ValueError(f"{frames.shape[0]} frames, {len(video)} video indices and truth of shape {tuple(truth.shape)} for {k} keypoints")
    partner = np.empty(n, dtype=np.int64)
    for v in np.unique(video):
        idx = np.flatnonzero(video == v)
        if len(idx) < 2:
            raise InputError(f"the pose-preference diagnostic needs at least two frames of every video (video {v} has {len(idx)})")
        partner[idx] = idx[(np.arange(len(idx)) + len(idx) // 2) % len(idx)]
    dev = _device(phi)
    was_training = rec_loss.training
    rec_loss.eval()
    size = frames.shape[-1]
    better = np.zeros((n, k + 1))  # column k: the whole pose
    base_l, truth_l, dist = np.zeros(n), np.zeros(n), np.full((n, k), np.nan)
    try:
        with torch.no_grad():
            for i in range(n):
                x, a = frames[i : i + 1].to(dev), frames[partner[i] : partner[i] + 1].to(dev)
                p = eta(phi(x))[0]
                t = truth[i].to(p)
                known = torch.isfinite(t).all(dim=-1)
                t = torch.where(known[:, None], t, p)
                dist[i] = torch.where(known, (p - t).norm(dim=-1) * 50.0, torch.nan).cpu().numpy()  # [-1, 1] spans 2: ×50 → % of the side
                # poses: the prediction, the truth, and the prediction with each keypoint moved to the truth
                poses = p.expand(k + 2, k, 2).clone()
                poses[1] = t
                poses[2 + torch.arange(k), torch.arange(k)] = t
                xr = psi(geometry.render_signed(poses, skeleton, size, sigma), a.expand(k + 2, -1, -1, -1))
                losses = np.array([float(rec_loss(xr[j : j + 1], x)) for j in range(k + 2)])
                base_l[i], truth_l[i] = losses[0], losses[1]
                moved = np.r_[losses[2:], losses[1]] - losses[0]
                better[i] = np.where(moved < 0, 1.0, np.where(moved > 0, 0.0, 0.5))
    finally:
        rec_loss.train(was_training)
    has = np.isfinite(dist)
    per = {}
    for j, name in enumerate(skeleton.keypoints):
        m = has[:, j]
        per[name] = {"prefers_truth": float(better[m, j].mean()) if m.any() else float("nan"),
                     "error": float(dist[m, j].mean()) if m.any() else float("nan")}
    return {
        "whole_pose": {
            "prefers_truth": float(better[:, k].mean()),
            "loss_predicted": float(base_l.mean()),
            "loss_truth": float(truth_l.mean()),
            "relative_change": float(((truth_l - base_l) / np.maximum(base_l, 1e-12)).mean()),
        },
        "per_keypoint": per,
        "error": float(np.nanmean(dist)) if has.any() else float("nan"),
        "frames": int(n),
    }


def fit_pose(image: torch.Tensor, start: torch.Tensor, skeleton: Skeleton, *, sigma: float, steps: int = 300, lr: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose that best explains skeleton images: ``argmin_f mean (β(f) − image)²`` per image.

    ``image``: ``B×1×S×S`` in [-1, 1] (Φ's output); ``start``: ``B×K×2`` in [-1, 1], where the descent
    begins (η's reading).  Adam with ``lr`` decayed to 0 (cosine) over ``steps`` steps on all images at once (the loss is a sum
    over images, so each pose follows its own image's gradient); each image keeps the best pose met.  Written here because it is
    gradient descent through this project's renderer β.  Returns ``(pose, residual)``: the fitted
    ``B×K×2`` points and each image's mean squared difference from its fitted render (``B``).
    """
    size = image.shape[-1]
    f = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([f], lr=lr)
    target = image.detach()
    best, best_loss = f.detach().clone(), torch.full((f.shape[0],), float("inf"), device=f.device)
    for i in range(steps + 1):
        per_image = (geometry.render_signed(f, skeleton, size, sigma) - target).pow(2).flatten(1).mean(1)
        with torch.no_grad():  # Adam does not descend monotonically: keep each image's best pose so far (the start included)
            better = per_image < best_loss
            best[better], best_loss[better] = f[better], per_image[better]
        if i == steps:
            break
        for g in opt.param_groups:  # a cosine decay to 0: Adam's steps are about lr long, so the last ones settle
            g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * i / steps))
        opt.zero_grad(set_to_none=True)
        per_image.sum().backward()
        opt.step()
    return best, best_loss.detach()


def measure_error_sources(
    phi: torch.nn.Module,
    eta: torch.nn.Module,
    skeleton: Skeleton,
    frames: torch.Tensor,
    truth: torch.Tensor,
    *,
    sigma: float,
    steps: int = 300,
    lr: float = 0.01,
    batch: int = 64,
) -> dict:
    """Where the prediction's error comes from (module docs): Φ's image, η's reading of it.

    Args:
        frames: ``N×3×S×S`` in [-1, 1]; ``truth``: ``N×K×2`` true keypoints in [-1, 1] on the same grid
            (NaN where missing: left out of the two distances to the truth).
        sigma: the renderer's σ (the run's ``model.sigma``); ``steps``, ``lr``: the fit (:func:`fit_pose`),
            ``batch`` frames at a time.

    Returns:
        ``fitted_vs_truth``, ``eta_vs_fitted``, ``eta_vs_truth`` (mean distances, % of the image side),
        ``per_keypoint`` (the three for each name), ``fit_residual`` and ``eta_residual`` (mean squared
        difference of Φ(x) from the render of the fitted pose and of η's reading), ``fit_steps``, ``frames``.
    """
    n, k = truth.shape[0], skeleton.num_keypoints
    if frames.shape[0] != n or tuple(truth.shape[1:]) != (k, 2):
        raise ValueError(f"{frames.shape[0]} frames and truth of shape {tuple(truth.shape)} for {k} keypoints")
    dev = _device(phi)
    size = frames.shape[-1]
    fits, reads, res_fit, res_eta = [], [], [], []
    for s in range(0, n, batch):
        with torch.no_grad():
            y = phi(frames[s : s + batch].to(dev)).float()
            p = eta(y).float()
            res_eta.append((geometry.render_signed(p, skeleton, size, sigma) - y).pow(2).flatten(1).mean(1).cpu())
        with torch.enable_grad():
            f, r = fit_pose(y, p, skeleton, sigma=sigma, steps=steps, lr=lr)
        fits.append(f.cpu()), reads.append(p.cpu()), res_fit.append(r.cpu())
    f, p, t = torch.cat(fits).double(), torch.cat(reads).double(), truth.double()
    t = _nearer_labelling(p, t, skeleton)
    # [-1, 1] spans 2: ×50 → % of the side
    dists = {"fitted_vs_truth": (f - t).norm(dim=-1) * 50.0, "eta_vs_fitted": (p - f).norm(dim=-1) * 50.0, "eta_vs_truth": (p - t).norm(dim=-1) * 50.0}
    dists = {key: d.numpy() for key, d in dists.items()}

    def mean(d: np.ndarray) -> float:
        return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")

    return {
        **{key: mean(d) for key, d in dists.items()},
        "per_keypoint": {name: {key: mean(d[:, j]) for key, d in dists.items()} for j, name in enumerate(skeleton.keypoints)},
        "fit_residual": float(torch.cat(res_fit).mean()),
        "eta_residual": float(torch.cat(res_eta).mean()),
        "fit_steps": int(steps),
        "frames": int(n),
    }


def _nearer_labelling(pred: torch.Tensor, truth: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """``truth`` (``N×K×2``, NaN where missing) with each pose in the labelling of its sides
    (:attr:`~keypointgan.skeleton.Skeleton.side_swaps`) nearest to ``pred``'s, the identity on ties."""
    options = torch.stack([truth[:, perm] for perm in skeleton.side_swaps], 1)  # N×R×K×2
    dist = (options - pred.unsqueeze(1)).norm(dim=-1).nan_to_num(0.0).sum(-1)  # N×R
    return options[torch.arange(len(truth)), dist.argmin(1)]


def _dataset_prior(dataset) -> np.ndarray | None:
    """The dataset's prior poses (``N×K×2`` in [0, 1] units), or None when it has none."""
    try:
        prior = np.asarray(dataset.load_prior(), dtype=np.float32)
    except (InputError, OSError):
        return None
    prior = prior.reshape(-1, *prior.shape[-2:])
    return prior[np.isfinite(prior).all(axis=(1, 2))]


def measure_prior_reading(eta: torch.nn.Module, skeleton: Skeleton, prior: torch.Tensor, *, size: int, sigma: float, poses: int = 512) -> dict:
    """How η reads the prior's own renders, and which way the prior's figures face (module docs).

    ``prior``: ``N×K×2`` poses in [-1, 1] (the first ``poses`` evenly spaced ones are used).  Returns
    ``eta_on_prior`` (mean distance, % of the image side, in the nearer labelling), ``faces_one_way``
    (the fraction of poses whose left keypoints lie right of their right ones, ``nan`` without symmetric
    pairs) and ``poses``."""
    pick = np.unique(np.linspace(0, len(prior) - 1, min(poses, len(prior))).round().astype(int))
    q = prior[torch.from_numpy(pick)].float()
    with torch.no_grad():
        p = eta(geometry.render_signed(q.to(_device(eta)), skeleton, size, sigma)).float().cpu()
    err = float((p - _nearer_labelling(p, q, skeleton)).norm(dim=-1).mean() * 50.0)
    return {"eta_on_prior": err, "faces_one_way": skeleton.facing_fraction(q), "poses": int(len(q))}


def format_error_sources(numbers: dict) -> str:
    """One plain-text table of :func:`measure_error_sources`'s numbers."""
    keys = ("fitted_vs_truth", "eta_vs_fitted", "eta_vs_truth")
    rows = [("keypoint", "Φ's image (fit vs truth)", "η's reading (η vs fit)", "η vs truth")]
    rows.append(("all", *(f"{numbers[key]:.2f}" for key in keys)))
    rows += [(name, *(f"{v[key]:.2f}" for key in keys)) for name, v in numbers["per_keypoint"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)) for r in rows]
    lines.append(f"% of image side; the fit: the pose whose render best explains Φ(x) ({numbers['fit_steps']} Adam steps from η's reading; "
                 f"residual {numbers['fit_residual']:.4f}, η's reading's {numbers['eta_residual']:.4f}); {numbers['frames']} frames")
    prior = numbers.get("prior")
    if prior:
        lines.append(f"η on the prior's own renders: {prior['eta_on_prior']:.2f} ({prior['poses']} poses); "
                     f"{prior['faces_one_way']:.0%} of the prior's figures face one way")
        if BOTH_WAYS <= prior["faces_one_way"] <= 1 - BOTH_WAYS and not prior.get("side_swaps"):
            lines.append("the prior's figures face both ways and the run reads sides without swaps (regressor_side_swaps): η reads the two sides' average")
    return "\n".join(lines)


def format_preference(numbers: dict) -> str:
    """One plain-text table of :func:`measure_pose_preference`'s numbers."""
    w = numbers["whole_pose"]
    rows = [("moved to the truth", "prefers truth", "error (% of side)")]
    rows.append(("whole pose", f"{w['prefers_truth']:.3f}", f"{numbers['error']:.2f}"))
    rows += [(name, f"{v['prefers_truth']:.3f}", f"{v['error']:.2f}") for name, v in numbers["per_keypoint"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)) for r in rows]
    lines.append(f"reconstruction loss {w['loss_predicted']:.4f} at the predicted pose, {w['loss_truth']:.4f} at the true one "
                 f"({100 * w['relative_change']:+.1f} % per frame); {numbers['frames']} frames, x′ from the same video; "
                 "1: the loss pulls towards the truth, 0.5: indifferent, below: it holds Φ where it is")
    return "\n".join(lines)


def format_table(numbers: dict) -> str:
    """One plain-text table of :func:`measure_leak`'s numbers."""
    sw, pr = numbers["swap"], numbers["probe"]
    rows = [
        ("Ψ input", "follows target", "|x̂ − x|", "|x̂ − x′|", "video-id probe"),
        ("Φ(x) (raw)", f"{sw['raw']['follows_target']:.3f}", f"{sw['raw']['to_target']:.3f}", f"{sw['raw']['to_appearance']:.3f}", f"{pr['raw']:.3f}"),
        ("β(η(Φ(x)))", f"{sw['bottleneck']['follows_target']:.3f}", f"{sw['bottleneck']['to_target']:.3f}",
         f"{sw['bottleneck']['to_appearance']:.3f}", f"{pr['bottleneck']:.3f}"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(f"chance {pr['chance']:.3f} ({numbers['videos']} videos, {numbers['frames']} frames; "
                 f"x′ from another video); leak factor (raw / bottleneck follows-target) {numbers['leak_factor']:.2f}")
    return "\n".join(lines)


def _picture(pics: dict, n: int = 8) -> np.ndarray:
    """Columns: one pair each (the first frame of a video); rows: x, x′, Φ(x), log Φ(x), β(η(Φ(x))), Ψ(Φ(x), x′), Ψ(β(η(Φ(x))), x′)."""
    from ..viz import grid, tensor_to_uint8

    logp = pics["log_phi"][:n]
    lo, hi = float(logp.min()), float(logp.max())
    log_img = (logp - lo) / max(hi - lo, 1e-12) * 2 - 1  # stretched to the shown range
    shown = [pics["target"], pics["appearance"], pics["phi"], log_img, pics["rendered"], pics["rec_raw"], pics["rec_bottleneck"]]
    return grid([list(tensor_to_uint8(t[:n])) for t in shown],
                row_labels=("x", "x′", "Φ(x)", "log Φ(x)", "β(η(Φ(x)))", "Ψ(Φ(x), x′)", "x̂ = Ψ(β(η(Φ(x))), x′)"))


def diagnose(run: str | Path, data: str | Path, *, out: str | Path | None = None, videos: int = 20, frames_per_video: int = 10,
             device: str = "cpu", format: str = "auto", fit_steps: int = 300) -> dict:
    """Measure the appearance leak of a run (module docs) on a dataset's videos; write the results.

    Args:
        run: a run folder or checkpoint (its raw Φ, η and Ψ are used: Ψ was trained with them).
        data: a dataset (generic layout or a format) with the run's skeleton; its first ``videos``
            training videos (evenly spaced over all of them) give ``frames_per_video`` evenly spaced
            frames each.
        out: folder for ``diagnose.json`` and ``diagnose.png`` (default: the run folder).

    Returns:
        the numbers of :func:`measure_leak` with ``run``, ``data`` and ``bottleneck_trained``, and, when
        the chosen videos have keypoints, ``pose_preference`` (:func:`measure_pose_preference`; with the
        run's VGG-19 weights when it was trained with them and they are still at their path) and
        ``error_sources`` (:func:`measure_error_sources`, its fit ``fit_steps`` Adam steps).
    """
    from ..api import open_data
    from ..checkpoint import load_networks
    from ..data import FrameStore, image_to_tensor
    from ..io import atomic_write_text, write_image
    from ..losses import make_reconstruction_loss
    from ..pixels import image_pixels_to_norm

    loaded = load_networks(run, averaged=False, names=("phi", "eta", "psi"))  # Ψ was trained with the raw Φ and η
    ck_path, state, cfg, skeleton, nets = loaded.path, loaded.state, loaded.config, loaded.skeleton, loaded.nets
    layout = open_data(data, skeleton, format)
    if layout.skeleton != skeleton:
        raise InputError("this dataset's skeleton differs from the run's", data)
    pool = [v for v in layout.videos if len(v) >= 2]
    if len(pool) < 2:
        raise InputError("the leak diagnostic needs at least two videos of two frames or more", data)
    pick = np.unique(np.linspace(0, len(pool) - 1, min(videos, len(pool))).round().astype(int))
    chosen = [pool[i] for i in pick]
    store = FrameStore(chosen, cfg.model.size, preload=False)
    idx, vid = [], []
    for v, video in enumerate(chosen):
        ts = np.unique(np.linspace(0, len(video) - 1, min(frames_per_video, len(video))).round().astype(int))
        idx += [int(store.offsets[v] + t) for t in ts]
        vid += [v] * len(ts)
    frames = image_to_tensor(np.stack([store.get(i) for i in idx]))  # N×3×S×S in [-1, 1]
    dev = torch.device(device)
    for k in ("phi", "eta", "psi"):
        nets[k].to(dev).eval()
    numbers, pics = measure_leak(nets["phi"], nets["eta"], nets["psi"], skeleton, frames, vid, sigma=cfg.model.sigma)
    if all(v.keypoints_path is not None for v in chosen):  # the true keypoints of the chosen frames, on the network's grid
        truth = np.concatenate([layout.load_keypoints(v) for v in chosen])[idx]  # the store's frame order
        truth = image_pixels_to_norm(truth, cfg.model.size, np.array([store.original_size(i) for i in idx]))
        vgg = cfg.vgg_weights if cfg.vgg_weights and Path(cfg.vgg_weights).is_file() else None
        rec_loss = make_reconstruction_loss(vgg, vgg_relu=cfg.vgg_relu)
        rec_loss.load_state_dict(state.get("rec_loss", {}), strict=False)  # a perceptual loss's running scales
        pref = measure_pose_preference(
            nets["phi"], nets["eta"], nets["psi"], rec_loss.to(dev), skeleton, frames, torch.from_numpy(truth), vid, sigma=cfg.model.sigma)
        numbers["pose_preference"] = {**pref, "rec_loss": rec_loss.name, "rec_loss_as_trained": bool(vgg) == bool(cfg.vgg_weights)}
        numbers["error_sources"] = measure_error_sources(nets["phi"], nets["eta"], skeleton, frames, torch.from_numpy(truth),
                                                         sigma=cfg.model.sigma, steps=fit_steps)
        prior = _dataset_prior(layout)
        if prior is not None:
            from ..pixels import unit_to_norm

            prior = torch.from_numpy(np.asarray(unit_to_norm(prior, cfg.model.size), dtype=np.float32))
            numbers["error_sources"]["prior"] = {**measure_prior_reading(nets["eta"], skeleton, prior, size=cfg.model.size, sigma=cfg.model.sigma),
                                                 "side_swaps": side_swaps(cfg, skeleton, prior) is not None}
    numbers.update({"run": str(ck_path), "data": str(data), "bottleneck_trained": bool(cfg.bottleneck), "step": int(state.get("step", 0))})
    out = Path(out) if out is not None else (ck_path.parent.parent if ck_path.parent.name == "checkpoints" else ck_path.parent)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "diagnose.json", json.dumps(numbers, indent=2) + "\n")
    write_image(out / "diagnose.png", _picture(pics))
    return numbers
