"""The Python API: train, pre-train the regressor, evaluate, predict.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import geometry as G
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, make_config
from .data import EvalFrameDataset, Layout, load_prior
from .data.layout import Video
from .errors import InputError
from .skeleton import Skeleton
from ._version import __version__
from .data import PriorPoseDataset
from .train import EvalSet, Trainer, build_networks, pretrain_eta, select_device

__all__ = ["train", "pretrain_regressor", "evaluate", "make_eval_set", "load_data"]


def load_data(data: str | Path, prior: str | Path | None = None, skeleton: str | Path | Skeleton | None = None):
    """Read a generic-layout dataset, its skeleton and a prior; check they agree."""
    if skeleton is not None and not isinstance(skeleton, Skeleton):
        skeleton = Skeleton.from_yaml(skeleton)
    layout = Layout(data, skeleton)
    prior_path = Path(prior) if prior is not None else layout.prior_path
    poses = load_prior(prior_path, layout.skeleton)
    return layout, poses


def _matching_skeleton(root: str | Path, skeleton: Skeleton) -> Skeleton:
    """``skeleton``, after checking it against ``ROOT/skeleton.yaml`` when that file exists."""
    path = Path(root) / "skeleton.yaml"
    if path.is_file() and Skeleton.from_yaml(path) != skeleton:
        raise InputError("this dataset's skeleton differs from the model's (names, order or limbs)", path)
    return skeleton


def make_eval_set(layout: Layout, videos: Sequence[Video], size: int, max_frames: int | None = None) -> EvalSet | None:
    """Frames with keypoints from ``videos`` (evenly subsampled to ``max_frames``), or None without keypoints."""
    videos = [v for v in videos if v.keypoints_path is not None]
    if not videos:
        return None
    ds = EvalFrameDataset(layout, size, videos, preload=True)
    n = len(ds)
    idx = np.arange(n) if not max_frames or n <= max_frames else np.linspace(0, n - 1, max_frames).round().astype(int)
    items = [ds[int(i)] for i in idx]
    return EvalSet(
        images=torch.stack([it[0] for it in items]),
        keypoints=np.stack([it[1].numpy() for it in items]),
        hw=np.stack([it[2].numpy() for it in items]),
        groups=[videos[it[3]].id for it in items],
    )


def train(
    data: str | Path,
    out: str | Path,
    *,
    prior: str | Path | None = None,
    skeleton: str | Path | Skeleton | None = None,
    config: TrainConfig | None = None,
    preset: str = "cpu-64",
    resume: bool = False,
    regressor: str | Path | None = None,
    eval_data: str | Path | None = None,
    videos: Sequence[Video] | None = None,
    progress: bool = True,
    report: bool = False,
    **overrides: Any,
) -> dict:
    """Train KeypointGAN on a generic-layout dataset; returns the final metrics (if keypoints exist).

    Args:
        data: dataset folder (generic layout); its ``keypoints/`` are never used for training.
        out: run folder: ``checkpoints/latest.pt``, ``log.jsonl``, ``samples/``.
        prior: prior poses file (default ``DATA/prior.npy``).
        skeleton: skeleton YAML or object (default ``DATA/skeleton.yaml``).
        config: a full config; otherwise ``preset`` plus ``overrides``
            (``steps=…``, ``max_minutes=…``, ``seed=…``, any :class:`TrainConfig` field).
        resume: continue from ``OUT/checkpoints/latest.pt``.
        regressor: a pre-trained η (from :func:`pretrain_regressor`); skips pre-training.
        eval_data: a dataset of held-out videos with keypoints for periodic evaluation
            (default: none).
        videos: train on these videos of ``data`` only (default: all).
        report: also write ``OUT/report.html`` at the end (see :mod:`keypointgan.report`).

    Raises:
        InputError: bad data, prior, skeleton, config or checkpoint (before anything is written).
        TrainingDiverged: too many consecutive steps with NaN/Inf losses; the last checkpoint is intact.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint was saved at the step boundary.
    """
    layout, poses = load_data(data, prior, skeleton)
    out = Path(out)
    ckpt_path = out / "checkpoints" / "latest.pt"
    state = None
    if resume:
        if not ckpt_path.is_file():
            raise InputError("nothing to resume: no checkpoints/latest.pt", out)
        state = load_checkpoint(ckpt_path)
        missing = [k for k in ("config", "skeleton", "nets", "optims", "step", "rng") if k not in state]
        if missing:
            raise InputError(f"cannot resume: not a training checkpoint (no {', '.join(missing)})", ckpt_path)
        try:
            cfg = TrainConfig.from_dict(state["config"])
            saved_skeleton = Skeleton.from_dict(state["skeleton"])
        except (KeyError, TypeError, InputError) as exc:
            raise InputError(f"cannot resume: the checkpoint's config or skeleton is damaged ({exc})", ckpt_path) from None
        for k, v in overrides.items():
            if v is None:
                continue
            if k in ("steps", "max_minutes", "device", "num_threads", "max_nonfinite_steps"):  # may change on resume
                setattr(cfg, k, v)
            elif getattr(cfg, k, v) != v:
                raise InputError(f"cannot change {k} when resuming (the run has {getattr(cfg, k)!r})", ckpt_path)
        if saved_skeleton != layout.skeleton:
            raise InputError("the checkpoint was trained with another skeleton than this dataset's", ckpt_path)
    else:
        if config is not None:
            unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
            if unknown:
                raise InputError(f"unknown config field(s): {', '.join(unknown)}")
            cfg = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        else:
            cfg = make_config(preset, **overrides)
        if ckpt_path.exists():
            raise InputError("run folder already holds a checkpoint; use --resume or another --out", out)
    cfg.validate()
    eval_set = None
    if eval_data is not None:
        ev_layout = Layout(eval_data, _matching_skeleton(eval_data, layout.skeleton))
        eval_set = make_eval_set(ev_layout, ev_layout.videos, cfg.model.size, cfg.eval_frames)
        if eval_set is None:
            raise InputError("evaluation data has no keypoints/<video_id>.npy files", eval_data)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    trainer = Trainer(cfg, layout.skeleton, poses, videos or layout.videos, out, eval_set=eval_set, rank=rank, world_size=world, progress=progress)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise InputError(f"cannot resume: the checkpoint does not match this run's networks ({exc.__class__.__name__})", ckpt_path) from None
    elif regressor is not None:
        reg = load_checkpoint(regressor)
        if "eta" not in reg.get("nets", {}):
            raise InputError("not a regressor checkpoint (no 'eta' network)", regressor)
        if Skeleton.from_dict(reg["skeleton"]) != layout.skeleton:
            raise InputError("the regressor was trained for another skeleton", regressor)
        try:
            trainer.nets["eta"].load_state_dict(reg["nets"]["eta"])
        except RuntimeError:
            raise InputError("the regressor's widths differ from this run's config", regressor) from None
        trainer.pretrained = True
    result = trainer.run()
    if report and rank == 0:
        from .report import report_run

        report_run(out)
    return result


def pretrain_regressor(
    prior: str | Path,
    skeleton: str | Path | Skeleton,
    out: str | Path,
    *,
    preset: str = "cpu-64",
    config: TrainConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> dict:
    """Pre-train η on rendered prior poses alone and save it as a checkpoint holding ``eta``."""
    if not isinstance(skeleton, Skeleton):
        skeleton = Skeleton.from_yaml(skeleton)
    poses = load_prior(prior, skeleton)
    overrides.setdefault("steps", 0)
    cfg = (config or make_config(preset, **overrides)).validate()
    dev = select_device(cfg.device)
    eta = build_networks(cfg, skeleton.num_keypoints, with_gan=False)["eta"].to(dev)
    points = PriorPoseDataset(poses, cfg.model.size).points.to(dev)
    res = pretrain_eta(eta, skeleton, points, cfg, torch.Generator().manual_seed(cfg.seed), progress=progress)
    save_checkpoint(
        {
            "format": "keypointgan-checkpoint",
            "kind": "regressor",
            "version": __version__,
            "config": cfg.to_dict(),
            "skeleton": skeleton.to_dict(),
            "nets": {"eta": eta.state_dict()},
            **res,
        },
        out,
    )
    return res


def evaluate(checkpoint: str | Path, data: str | Path, *, device: str | None = None, batch_size: int = 64, progress: bool = False) -> dict:
    """Evaluate a checkpoint on every frame with keypoints of a generic-layout dataset.

    Returns ``error``, ``error_flip`` (% of image size, averaged per video then
    over videos), ``pck``, ``n_frames`` and ``per_video``.
    """
    from .detector import KeypointDetector
    from .evaluate import summarize

    det = KeypointDetector.from_checkpoint(checkpoint, device=device)
    layout = Layout(data, _matching_skeleton(data, det.skeleton))
    videos = [v for v in layout.videos if v.keypoints_path is not None]
    if not videos:
        raise InputError("no keypoints/<video_id>.npy files to evaluate against", Path(data) / "keypoints")
    preds, gts, hws, groups = [], [], [], []
    from tqdm.auto import tqdm

    for v in tqdm(videos, desc="evaluate", disable=not progress, leave=False):
        ds = EvalFrameDataset(layout, det.size, [v], preload=True)
        items = [ds[i] for i in range(len(ds))]
        x = torch.stack([it[0] for it in items])
        hw = np.stack([it[2].numpy() for it in items])
        preds.append(G.norm_to_image_pixels(det.predict_norm(x, batch_size), det.size, hw))
        gts.append(np.stack([it[1].numpy() for it in items]))
        hws.append(hw)
        groups += [v.id] * len(items)
    res = summarize(np.concatenate(preds), np.concatenate(gts), np.concatenate(hws), det.skeleton, groups)
    res["per_video"] = res.pop("per_group")
    return res
