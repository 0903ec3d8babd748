"""Metrics and evaluation.

Errors are in **% of image size**: keypoints are first normalised to [0, 1]
as ``(x / width, y / height)`` (only differences are used, so the prior unit's
``+ 0.5`` of :mod:`keypointgan.pixels` makes no difference) and the mean over keypoints of the L2 distance
is multiplied by 100 (the convention of the paper's Simplified Human3.6M
protocol).  Missing true keypoints (NaN) are left out of the mean.

For faces the error is in **% of the inter-ocular distance** (the distance
between the outer eye corners of the truth, points 36 and 45 of the 68-point
300-W layout), measured in pixels: :func:`interocular_error`.
"""

from __future__ import annotations

import warnings
from typing import Hashable, Sequence

import numpy as np

from .skeleton import Skeleton

__all__ = ["keypoint_error", "flip_corrected_error", "regressor_flip_error", "interocular_error", "grouped_mean", "pck", "summarize", "error_breakdown", "METRICS"]

METRICS = ("image", "interocular")
# outer eye corners of the 68-point 300-W layout (0-based): the right eye of the subject, then the left
IOD_POINTS = (36, 45)


def _as_unit(points: np.ndarray, hw) -> np.ndarray:
    """Pixel ``(N, K, 2)`` → [0, 1] units given per-image or shared ``(H, W)``."""
    hw = np.asarray(hw, dtype=np.float64)
    if hw.ndim == 1:
        hw = np.broadcast_to(hw, (points.shape[0], 2))
    wh = hw[:, ::-1].reshape(-1, 1, 2)
    return np.asarray(points, dtype=np.float64) / wh


def _distances(pred: np.ndarray, gt: np.ndarray, hw) -> np.ndarray:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    valid = np.isfinite(gt).all(-1)
    if not np.isfinite(pred[valid]).all():
        raise ValueError("predictions contain NaN or infinite values where the truth is valid")
    return np.linalg.norm(_as_unit(pred, hw) - _as_unit(gt, hw), axis=-1)  # N×K, NaN where gt missing


def _mean_valid(d: np.ndarray, visible: np.ndarray | None) -> np.ndarray:
    mask = np.isfinite(d)
    if visible is not None:
        mask &= np.asarray(visible, dtype=bool)
    n = mask.sum(axis=1)
    s = np.where(mask, d, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def keypoint_error(pred, gt, hw, visible=None) -> np.ndarray:
    """Per-image mean L2 error in % of image size.

    Args:
        pred, gt: ``(N, K, 2)`` pixel ``(x, y)``; NaN in ``gt`` marks a missing point.
        hw: ``(H, W)`` shared by all images, or ``(N, 2)`` per image.
        visible: optional ``(N, K)`` boolean mask of points to count.

    Returns:
        ``(N,)`` errors (NaN for an image with no valid point).
    """
    return 100.0 * _mean_valid(_distances(pred, gt, hw), visible)


def flip_corrected_error(pred, gt, hw, skeleton: Skeleton, visible=None) -> np.ndarray:
    """Per image, the smaller of the error against ``gt`` and against its left-right swap."""
    perm = skeleton.flip_permutation
    gt = np.asarray(gt)
    direct = keypoint_error(pred, gt, hw, visible)
    vis_sw = None if visible is None else np.asarray(visible)[:, perm]
    swapped = keypoint_error(pred, gt[:, perm], hw, vis_sw)
    return np.fmin(direct, swapped)


def regressor_flip_error(pred, gt, hw, skeleton: Skeleton, reference, visible=None) -> np.ndarray:
    """Per image, the error after the prediction's left and right keypoints are swapped wherever that
    brings it closer to ``reference`` — the first of the two numbers of the authors' ``test_pose.py``
    (the second is :func:`flip_corrected_error`).

    ``reference``: ``(N, K, 2)`` pixel points that a pre-trained regressor (the release's "offline
    regressor") reads on the rendered prediction; the truth is not consulted for the choice.  Unlike
    :func:`flip_corrected_error`, a wrong choice costs the full error of the mislabelled prediction.
    """
    perm = skeleton.flip_permutation
    pred = np.asarray(pred, dtype=np.float64)
    swapped = pred[:, perm]
    closer = keypoint_error(swapped, reference, hw) < keypoint_error(pred, reference, hw)
    return keypoint_error(np.where(closer[:, None, None], swapped, pred), gt, hw, visible)


def interocular_error(pred, gt, eyes: tuple[int, int] = IOD_POINTS, visible=None) -> np.ndarray:
    """Per-image mean pixel L2 error divided by the true inter-ocular distance, in %.

    Args:
        pred, gt: ``(N, K, 2)`` pixel ``(x, y)``; NaN in ``gt`` marks a missing point.
        eyes: indices of the two points whose true distance normalises the error
            (default the outer eye corners 36 and 45 of the 68-point layout).
        visible: optional ``(N, K)`` boolean mask of points to count.

    Returns:
        ``(N,)`` errors (NaN where an eye corner is missing or no point is valid).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    d = _distances(pred, gt, (1.0, 1.0))  # pixels
    iod = np.linalg.norm(gt[:, eyes[0]] - gt[:, eyes[1]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * _mean_valid(d, visible) / np.where(iod > 0, iod, np.nan)


def grouped_mean(values: Sequence[float], groups: Sequence[Hashable]) -> tuple[float, dict]:
    """Mean per group, then the mean over groups. Returns ``(overall, {group: mean})``."""
    values = np.asarray(values, dtype=np.float64)
    groups = list(groups)
    if len(groups) != len(values):
        raise ValueError("values and groups differ in length")
    order = list(dict.fromkeys(groups))
    where = {g: i for i, g in enumerate(order)}
    gi = np.array([where[g] for g in groups], dtype=np.int64)
    ok = np.isfinite(values)
    sums = np.bincount(gi[ok], weights=values[ok], minlength=len(order))
    counts = np.bincount(gi[ok], minlength=len(order))
    per = {g: (float(sums[i] / counts[i]) if counts[i] else float("nan")) for i, g in enumerate(order)}
    finite = [m for m in per.values() if np.isfinite(m)]
    return (float(np.mean(finite)) if finite else float("nan")), per


def pck(pred, gt, hw, threshold: float = 0.05, visible=None) -> float:
    """Fraction of valid keypoints within ``threshold`` × image size (distance in [0, 1] units)."""
    d = _distances(pred, gt, hw)
    mask = np.isfinite(d)
    if visible is not None:
        mask &= np.asarray(visible, dtype=bool)
    if not mask.any():
        return float("nan")
    return float((d[mask] <= threshold).mean())


def summarize(
    pred, gt, hw, skeleton: Skeleton, groups: Sequence[Hashable] | None = None, *, pck_threshold: float = 0.05, metric: str = "image",
    reference=None,
) -> dict:
    """All metrics at once: ``error``, ``error_flip``, ``pck``, ``n_frames``, ``metric`` and ``per_group``.

    With ``groups`` (e.g. a video id or activity per frame) the errors are
    averaged per group, then over groups; otherwise over frames.  ``metric``:
    ``image`` (% of image size) or ``interocular`` (% of the inter-ocular distance).
    With ``reference`` (image metric; see :func:`regressor_flip_error`) also ``error_regressor_flip``,
    overall and per group.
    """
    if metric == "image":
        err = keypoint_error(pred, gt, hw)
        err_f = flip_corrected_error(pred, gt, hw, skeleton)
    elif metric == "interocular":
        err = interocular_error(pred, gt)
        err_f = np.fmin(err, interocular_error(pred, np.asarray(gt)[:, skeleton.flip_permutation]))
    else:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    groups = list(groups) if groups is not None else [0] * len(err)
    e, per_e = grouped_mean(err, groups)
    ef, per_ef = grouped_mean(err_f, groups)
    res = {
        "error": e,
        "error_flip": ef,
        "pck": pck(pred, gt, hw, pck_threshold),
        "pck_threshold": pck_threshold,
        "n_frames": int(len(err)),
        "metric": metric,
        "per_group": {str(g): {"error": per_e[g], "error_flip": per_ef[g]} for g in per_e},
    }
    if reference is not None:
        if metric != "image":
            raise ValueError("the regressor-flip error is defined for the image metric")
        er, per_er = grouped_mean(regressor_flip_error(pred, gt, hw, skeleton, reference), groups)
        res["error_regressor_flip"] = er
        for g in per_e:
            res["per_group"][str(g)]["error_regressor_flip"] = per_er[g]
    return res


def error_breakdown(pred, gt, hw, skeleton: Skeleton) -> dict:
    """Where the error comes from, in % of image size (image metric; NaN truth left out).

    Args:
        pred, gt: ``(N, K, 2)`` pixel ``(x, y)``; hw: ``(H, W)`` shared or ``(N, 2)`` per image.

    Returns a dict of:
        ``per_keypoint``: name → mean error of that keypoint over the images.
        ``offset``: name → mean signed ``[dx, dy]`` of prediction − truth (x right, y down): a
        skeleton drawn systematically off a joint shows here, random scatter averages out.
        ``centroid``: mean distance between each image's predicted and true centroids (of the
        keypoints valid in the truth): where the whole figure is placed.
        ``aligned``: the mean error after moving each prediction by its centroid offset: how the
        limbs are bent, placement removed.
        ``spread``: the predictions' mean RMS distance from their centroid ÷ the truth's (1: the
        right size).
        ``variety``: how much the centred poses vary from image to image (the standard deviation
        over images, averaged over keypoints and axes), predictions ÷ truth: near 0 when one
        pose is predicted for every image (a collapsed detector), 1 for as much variety as the truth.
    """
    d = _distances(pred, gt, hw)  # checks shapes and NaNs
    P, T = _as_unit(pred, hw), _as_unit(gt, hw)
    valid = np.isfinite(T).all(-1)  # N×K
    m = valid[..., None]
    n = np.maximum(valid.sum(1, keepdims=True), 1)[..., None]  # N×1×1
    cP = np.where(m, P, 0).sum(1, keepdims=True) / n
    cT = np.where(m, T, 0).sum(1, keepdims=True) / n
    has = valid.any(1)
    # NaN, not a warning, where nothing is left to average (a keypoint never visible, a single image's variety)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        aligned = np.linalg.norm(P - cP + cT - T, axis=-1)
        rms = lambda X, c: np.sqrt(np.where(valid, ((X - c) ** 2).sum(-1), 0).sum(1) / n[:, 0, 0])  # noqa: E731
        Pc, Tc = np.where(m, P - cP, np.nan), np.where(m, T - cT, np.nan)
        names = skeleton.keypoints
        return {
            "per_keypoint": {k: float(100 * np.nanmean(d[:, i])) for i, k in enumerate(names)},
            "offset": {k: [float(100 * v) for v in np.nanmean(np.where(m, P - T, np.nan)[:, i], axis=0)] for i, k in enumerate(names)},
            "centroid": float(100 * np.linalg.norm(cP - cT, axis=-1)[has].mean()),
            "aligned": float(100 * np.nanmean(_mean_valid(aligned, None)[has])),
            "spread": float(rms(P, cP)[has].mean() / rms(T, cT)[has].mean()),
            "variety": float(np.nanmean(np.nanstd(Pc[has], axis=0)) / np.nanmean(np.nanstd(Tc[has], axis=0))),
        }
