"""The Python API: train, pre-train the regressor, evaluate, predict.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import pixels as P
from .checkpoint import (CHECKPOINT_DIR, CHECKPOINT_NAME, load_checkpoint, load_networks, read_config, regressor_checkpoint,
                         run_checkpoint, save_checkpoint)
from .config import TrainConfig, make_config, resume_config, with_overrides
from .data import EvalFrameDataset, FrameStore, Layout, VideoDataset, load_prior
from .data.formats import open_dataset
from .data.layout import Video
from .data.layout import check_training_start
from .errors import InputError
from .io import check_writable, run_lock
from .skeleton import Skeleton
from .data import PriorPoseDataset
from .data.datasets import group_poses
from .data.loader import PairBatchSampler, PairLoader
from .devices import select_device
from .nets import build_networks
from .training import EvalSet, TrainState, check_training_checkpoint, fit, pretrain_eta
from .training.distributed import from_environment, process_group
from .training.precision import resolve_precision

__all__ = ["train", "pretrain_regressor", "evaluate", "evaluate_predictions", "make_eval_set", "make_loader", "load_data", "open_data"]


def open_data(data: str | Path, skeleton: str | Path | Skeleton | None = None, format: str = "auto") -> VideoDataset:
    """A dataset folder in the generic layout or in a dataset's own format (see :mod:`keypointgan.data.formats`)."""
    if skeleton is not None and not isinstance(skeleton, Skeleton):
        skeleton = Skeleton.from_yaml(skeleton)
    return open_dataset(data, format, skeleton=skeleton)


def load_data(
    data: str | Path, prior: str | Path | None = None, skeleton: str | Path | Skeleton | None = None, format: str = "auto"
):
    """Read a dataset (generic layout or a dataset format), its skeleton and a prior; check they agree.

    Without ``prior`` the generic layout reads ``DATA/prior.npy`` and a dataset format
    its protocol's prior (e.g. the second halves of Simplified Human3.6M's sequences).
    """
    layout = open_data(data, skeleton, format)
    poses = load_prior(prior, layout.skeleton) if prior is not None else layout.load_prior()
    return layout, poses


def _matching_skeleton(root: str | Path, skeleton: Skeleton) -> Skeleton:
    """``skeleton``, after checking it against ``ROOT/skeleton.yaml`` when that file exists."""
    path = Path(root) / "skeleton.yaml"
    if path.is_file() and Skeleton.from_yaml(path) != skeleton:
        raise InputError("this dataset's skeleton differs from the model's (names, order or limbs)", path)
    return skeleton


def _run_eval_data(run: Path) -> Path | None:
    """The evaluation data a run was started with (its log's last ``start`` record), for a resume without ``eval_data``."""
    from .log import logger
    from .report import read_log

    try:
        starts = [r for r in read_log(run) if r.get("event") == "start" and r.get("eval_data")]
    except InputError:  # no log: a run from before the log recorded its data
        return None
    if not starts:
        return None
    path = Path(starts[-1]["eval_data"])
    if not path.is_dir():
        logger.warning(f"the run's evaluation data {path} is gone; resuming without evaluation (give --eval-data)")
        return None
    return path


def _warn_unlearnable(skeleton: Skeleton) -> None:
    """Warn about keypoints in no limb: only limbs are rendered, so nothing teaches Φ and η where they are."""
    used = set(skeleton.used_keypoints)
    lonely = [k for i, k in enumerate(skeleton.keypoints) if i not in used]
    if lonely:
        from .log import logger

        logger.warning(f"skeleton {skeleton.name!r}: keypoint(s) in no limb cannot be learned (only limbs are rendered): "
                       + ", ".join(lonely))


def _check_vgg_weights(path: str | Path | None) -> None:
    """Fail early (before reading a dataset) when the named VGG-19 weights file is missing or of an unknown kind."""
    if not path:
        return
    path = Path(path)
    if not path.is_file():
        raise InputError("VGG-19 weights file not found", path)
    if path.suffix.lower() not in (".pth", ".pt", ".mat"):
        raise InputError("VGG-19 weights must be a torchvision state dict (.pth) or MatConvNet's .mat", path)


def _eval_videos(data: VideoDataset) -> tuple[list[Video], list[str]]:
    """The videos a dataset is evaluated on and the group of each (video id, or e.g. the activity)."""
    return list(data.test_videos), [data.group_of(v) for v in data.test_videos]


def make_eval_set(layout: VideoDataset | Layout, videos: Sequence[Video], size: int, max_frames: int | None = None, groups: Sequence[str] | None = None) -> EvalSet | None:
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
        groups=[(groups[it[3]] if groups is not None else videos[it[3]].id) for it in items],
    )


def train(
    data: str | Path,
    out: str | Path,
    *,
    prior: str | Path | None = None,
    skeleton: str | Path | Skeleton | None = None,
    config: TrainConfig | None = None,
    preset: str | None = None,
    resume: bool = False,
    regressor: str | Path | None = None,
    eval_data: str | Path | None = None,
    videos: Sequence[Video] | None = None,
    progress: bool = True,
    format: str = "auto",
    report: bool = False,
    **overrides: Any,
) -> dict:
    """Train KeypointGAN on a dataset; returns the final metrics (if keypoints exist).

    Args:
        data: dataset folder (generic layout, or a dataset format: ``format``); its keypoints
            are never used for training.
        out: run folder: the checkpoint (:func:`~keypointgan.checkpoint.run_checkpoint`), ``log.jsonl``, ``samples/``.
        prior: prior poses file (default ``DATA/prior.npy``).
        skeleton: skeleton YAML or object (default ``DATA/skeleton.yaml``).
        config: a full config, or ``preset`` (default ``cpu-64``); either with ``overrides``
            on top (``steps=…``, ``max_minutes=…``, ``seed=…``, any :class:`TrainConfig` field;
            ``model`` a dict of :class:`~keypointgan.config.ModelConfig` fields).
        resume: continue from the run's checkpoint with its settings; only the budget and
            how the run executes (:data:`~keypointgan.config.RUNTIME_FIELDS`) may change, and a
            ``config`` or ``preset`` that differs from the checkpoint's is refused.
        regressor: a pre-trained η (from :func:`pretrain_regressor`); skips pre-training.
        eval_data: a dataset of held-out videos with keypoints for periodic evaluation
            (default: none).
        videos: train on these videos of ``data`` only (default: all, or the protocol's training videos).
        format: ``auto`` (recognise the folder structure), ``generic``, ``simple-human36m``,
            ``human36m``, ``penn-action`` or ``300vw``.
        report: also write ``OUT/report.html`` at the end (see :mod:`keypointgan.report`).

    Started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, … in the environment) the processes train one
    model together (:mod:`keypointgan.training.distributed`): each process ``batch_size`` pairs per
    step, rank 0 writes; the other ranks return ``{}``.

    Raises:
        InputError: bad data, prior, skeleton, config, checkpoint or multi-process environment (before
            anything is written).
        TrainingDiverged: too many consecutive steps with NaN/Inf losses; the last checkpoint is intact.
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint was saved at the step boundary.
        ProcessLost: a multi-process run lost another process; the last checkpoint is intact.
    """
    dist = from_environment()
    if not resume:  # the settings first: a bad flag is named before any dataset is read
        cfg = (with_overrides(config, **overrides) if config is not None else make_config(preset or "cpu-64", **overrides)).validate()
    _check_vgg_weights(overrides.get("vgg_weights") or (config.vgg_weights if config is not None else None))
    layout, poses = load_data(data, prior, skeleton, format)
    _warn_unlearnable(layout.skeleton)
    out = Path(out)
    ckpt_path = run_checkpoint(out)
    state_dict = None
    if resume:
        if not ckpt_path.is_file():
            raise InputError(f"nothing to resume: no {CHECKPOINT_DIR}/{CHECKPOINT_NAME}", out)
        state_dict = load_checkpoint(ckpt_path)
        check_training_checkpoint(state_dict, ckpt_path)
        saved, saved_skeleton = read_config(state_dict, ckpt_path)
        requested = config if config is not None else (make_config(preset) if preset is not None else None)
        cfg = resume_config(saved, requested, ckpt_path, **overrides)
        eval_data = eval_data if eval_data is not None else _run_eval_data(out)
        if saved_skeleton != layout.skeleton:
            raise InputError("the checkpoint was trained with another skeleton than this dataset's", ckpt_path)
    elif ckpt_path.exists():
        raise InputError("run folder already holds a checkpoint; use --resume or another --out", out)
    cfg.validate()
    eval_set = None
    if eval_data is not None:
        ev_layout = open_data(eval_data, _matching_skeleton(eval_data, layout.skeleton))
        if ev_layout.skeleton != layout.skeleton:
            raise InputError("the evaluation dataset's skeleton differs from the training data's", eval_data)
        ev_videos, ev_groups = _eval_videos(ev_layout)
        eval_set = make_eval_set(ev_layout, ev_videos, cfg.model.size, cfg.eval_frames, ev_groups) if ev_videos else None
        if eval_set is None:
            raise InputError("evaluation data has no keypoints to evaluate against", eval_data)
    check_training_start(videos or layout.videos, out)
    eta_state = _read_regressor(regressor, layout.skeleton, cfg.model) if regressor is not None and state_dict is None else None
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = dist.device(cfg.device)
    resolve_precision(cfg.precision, device)
    lengths = layout.prior_lengths() if prior is None and getattr(layout, "prior_lengths", None) is not None else None
    loader, prior_points = make_loader(cfg, layout.skeleton, poses, videos or layout.videos, device, rank=dist.rank,
                                       world_size=dist.world_size, prior_lengths=lengths)
    # Every check above runs before the processes meet (a rank that fails exits, and torchrun ends the
    # others); rank 0 writes nothing before they have all met.
    sources = {"data": str(Path(data).resolve()), "format": getattr(layout, "name", "generic"),
               "prior": None if prior is None else str(Path(prior).resolve()),
               "eval_data": None if eval_data is None else str(Path(eval_data).resolve())}  # the start record's
    # one writer per run folder (rank 0 writes), held from before the folder is made until training ends
    with run_lock(out) if dist.is_writer else nullcontext(), process_group(dist, device, timeout_s=cfg.dist_timeout_minutes * 60):
        state = TrainState(cfg, layout.skeleton, device, dist=dist)
        if state_dict is not None:
            try:
                state.load_state_dict(state_dict)
            except (KeyError, RuntimeError, ValueError, TypeError) as exc:
                raise InputError(f"cannot resume: the checkpoint does not match this run's networks ({exc.__class__.__name__})", ckpt_path) from None
        elif eta_state is not None:
            try:
                state.set_pretrained_regressor(eta_state)
            except RuntimeError:
                raise InputError("the regressor's widths differ from this run's config", regressor) from None
        state.synchronise()
        if state.resumed and state.resumed_world_size != dist.world_size:  # the same fraction of the epoch in the new shards
            old = PairBatchSampler(len(loader.store), cfg.batch_size, seed=cfg.seed, world_size=state.resumed_world_size)
            new = loader.batches_per_epoch()
            state.epoch, state.batch_in_epoch = divmod(state.epoch * new + state.batch_in_epoch * new // max(1, old.batches_per_epoch()), new)
        result = fit(state, loader, prior_points, out, eval_set=eval_set, progress=progress, record=sources)
    if report and dist.is_writer:
        from .report import report_run

        report_run(out)
    return result


def make_loader(cfg: TrainConfig, skeleton: Skeleton, poses: np.ndarray, videos: Sequence[Video], device: torch.device, *,
                rank: int = 0, world_size: int = 1, prior_lengths: Sequence[int] | None = None) -> tuple[PairLoader, torch.Tensor]:
    """The training frames of ``videos`` as a :class:`~keypointgan.data.loader.PairLoader`, and the
    prior ``poses`` (``N×K×2`` in [0, 1]) as ``N×K×2`` points in [-1, 1] on ``device`` — with
    ``cfg.prior_sampling`` release and ``prior_lengths`` (poses per prior sequence), grouped by sequence
    (:func:`~keypointgan.data.datasets.group_poses`)."""
    if poses.shape[1] != skeleton.num_keypoints:
        raise InputError(f"the prior has K={poses.shape[1]} but the skeleton has {skeleton.num_keypoints} keypoints")
    store = FrameStore(videos, cfg.model.size)
    if len(store) // world_size < cfg.batch_size:
        raise InputError(f"the training videos hold {len(store)} frames, fewer than the batch size {cfg.batch_size}"
                         + (f" × {world_size} processes" if world_size > 1 else ""))
    loader = PairLoader(store, batch_size=cfg.batch_size, gap=cfg.gap, seed=cfg.seed, sampling=cfg.pair_sampling,
                        workers=cfg.data_workers, rank=rank,
                        world_size=world_size, device=device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    points = PriorPoseDataset(poses, cfg.model.size).points
    if cfg.prior_sampling == "release" and prior_lengths is not None:
        points = group_poses(points, prior_lengths)
    return loader, points.to(device)


def _read_regressor(path: str | Path, skeleton: Skeleton, model=None) -> dict:
    """η's weights for ``train --regressor``: :func:`_pretrained_eta` of ``path`` (a :func:`pretrain_regressor`
    checkpoint, or the authors' ``<iteration>_net_regressor.pth`` for a run of config ``model``)."""
    return _pretrained_eta(path, skeleton, model).state_dict()


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
    overrides.setdefault("steps", 0)
    cfg = (with_overrides(config, **overrides) if config is not None else make_config(preset, **overrides)).validate()
    check_writable(out)  # before the training, not after it
    poses = load_prior(prior, skeleton)
    dev = select_device(cfg.device)
    eta = build_networks(cfg.model, skeleton.num_keypoints, with_gan=False)["eta"].to(dev)
    points = PriorPoseDataset(poses, cfg.model.size).points.to(dev)
    res = pretrain_eta(eta, skeleton, points, cfg, torch.Generator().manual_seed(cfg.seed), progress=progress)
    save_checkpoint(regressor_checkpoint(eta, cfg, skeleton, **res), out)
    return res


def _load_predictions(path: str | Path, videos: Sequence[Video], num_keypoints: int) -> list[np.ndarray]:
    """Per-video ``(T, K, 2)`` pixel predictions from a ``.npz`` or ``.json`` keyed by video id."""
    import json

    path = Path(path)
    if not path.is_file():
        raise InputError("predictions file not found", path)
    try:
        if path.suffix.lower() == ".json":
            table = json.loads(path.read_text())
            if not isinstance(table, dict):
                raise ValueError("expected an object {video id: frames × keypoints × 2}")
        else:
            with np.load(path, allow_pickle=False) as z:
                table = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read predictions ({exc.__class__.__name__}: {exc})", path) from None
    out = []
    for v in videos:
        if v.id not in table:
            raise InputError(f"no predictions for video {v.id!r} ({len(table)} videos in the file)", path)
        arr = np.asarray(table[v.id], dtype=np.float64)
        if arr.shape != (len(v), num_keypoints, 2):
            raise InputError(f"predictions for {v.id!r} must be {len(v)} × {num_keypoints} × 2 pixel (x, y), got {arr.shape}", path)
        out.append(arr)
    return out


def _summarize_dataset(data, preds, gts, hws, groups, skeleton, metric: str | None = None, refs=None) -> dict:
    from .evaluate import METRICS, error_breakdown, summarize

    if metric is None:
        metric = data.metric
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    pred, gt, hw = np.concatenate(preds), np.concatenate(gts), np.concatenate(hws)
    if refs is not None and metric != "image":
        raise InputError("the regressor-flip error (--offline-regressor) needs the image metric")
    res = summarize(pred, gt, hw, skeleton, groups, metric=metric, reference=None if refs is None else np.concatenate(refs))
    if metric == "image":  # (over frames, not per group)
        res["breakdown"] = error_breakdown(pred, gt, hw, skeleton)
    res["per_video"] = res.pop("per_group")
    res["group_name"] = data.group_name
    res["format"] = data.name
    if data.notes:
        res["notes"] = list(data.notes)
    return res


def evaluate_predictions(
    predictions: str | Path,
    data: str | Path,
    *,
    format: str = "auto",
    skeleton: str | Path | Skeleton | None = None,
    metric: str | None = None,
) -> dict:
    """Score stored predictions (``.npz``/``.json``: video id → ``T×K×2`` pixel ``(x, y)``) with a dataset's protocol.

    ``metric`` overrides the dataset's error (``image`` or ``interocular``, e.g. for
    faces in the generic layout).  Returns the same dictionary as :func:`evaluate`.
    """
    ds = open_data(data, skeleton, format)
    videos, vgroups = _eval_videos(ds)
    if not videos:
        raise InputError("no videos with keypoints to evaluate against", data)
    preds = _load_predictions(predictions, videos, ds.skeleton.num_keypoints)
    gts, hws, groups = [], [], []
    from .data.datasets import FrameStore

    for v, g, p in zip(videos, vgroups, preds):
        gt = ds.load_keypoints(v)
        store = FrameStore([v], 8, preload=False)
        hw = np.array(store.original_size(0), dtype=np.float64)  # frames of one video share a size
        gts.append(gt)
        hws.append(np.broadcast_to(hw, (len(v), 2)))
        groups += [g] * len(v)
    return _summarize_dataset(ds, preds, gts, hws, groups, ds.skeleton, metric)


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    *,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    format: str = "auto",
    metric: str | None = None,
    flip_test: bool | None = None,
    offline_regressor: str | Path | None = None,
) -> dict:
    """Evaluate a checkpoint on a dataset: every frame with keypoints (generic layout) or the protocol's test set.

    ``metric``: ``image`` or ``interocular`` (default: the dataset format's; ``image`` for the generic layout).
    ``flip_test``: average with mirrored-image predictions (default: the run's ``flip_test`` setting).
    ``offline_regressor``: a pre-trained η (the release's ``<N>_net_regressor.pth``, or a
    keypointgan checkpoint: its pre-trained η if it kept one, else its η): also ``error_regressor_flip``, the
    first number of the release's ``test_pose.py`` (:func:`keypointgan.evaluate.regressor_flip_error`; it
    reads each rendered prediction).  Default: the checkpoint's own pre-trained η when it kept one.

    Returns ``error``, ``error_flip`` (% of image size — or of the inter-ocular
    distance for faces — averaged per group then over groups), ``pck``,
    ``n_frames``, ``per_video`` (per group: video id, or e.g. activity),
    ``group_name``, ``format`` and, with the image metric, ``breakdown``
    (:func:`keypointgan.evaluate.error_breakdown` over all frames).
    """
    from .detector import KeypointDetector

    det = KeypointDetector.from_checkpoint(checkpoint, device=device, flip_test=flip_test)
    offline = _pretrained_eta(offline_regressor if offline_regressor is not None else checkpoint, det.skeleton,
                              own=offline_regressor is None)
    layout = open_data(data, _matching_skeleton(data, det.skeleton), format)
    if layout.skeleton != det.skeleton:
        raise InputError(f"the checkpoint's skeleton differs from the {layout.name} skeleton", checkpoint)
    videos, vgroups = _eval_videos(layout)
    if not videos:
        raise InputError("no keypoints/<video_id>.npy files to evaluate against", Path(data) / "keypoints")
    preds, gts, hws, groups, refs = [], [], [], [], []
    from tqdm.auto import tqdm

    from .inference import read_rendered

    for v, g in tqdm(list(zip(videos, vgroups)), desc="evaluate", disable=not progress, leave=False):
        ds = EvalFrameDataset(layout, det.size, [v], preload=True)
        items = [ds[i] for i in range(len(ds))]
        x = torch.stack([it[0] for it in items])
        hw = np.stack([it[2].numpy() for it in items])
        pts = det.predict_grid_points(x, batch_size)
        preds.append(P.norm_to_image_pixels(pts, det.size, hw))
        if offline is not None:
            read = read_rendered(offline.to(det.device), pts, det.skeleton, det.size, det.config.model.sigma, batch_size)
            refs.append(P.norm_to_image_pixels(read, det.size, hw))
        gts.append(np.stack([it[1].numpy() for it in items]))
        hws.append(hw)
        groups += [g] * len(items)
    return _summarize_dataset(layout, preds, gts, hws, groups, det.skeleton, metric, refs or None)


def _pretrained_eta(path: str | Path, skeleton: Skeleton, model=None, *, own: bool = False) -> torch.nn.Module | None:
    """A pre-trained η (eval mode), checked against ``skeleton``: from the authors' regressor file (built
    as ``model`` builds it, default the ``release`` preset's), or from a keypointgan checkpoint — the η it
    kept as pre-trained, else its ``eta``.  ``own``: ``path`` is an evaluated run's checkpoint, whose
    pre-trained η is used only if it kept one (None otherwise).  Read for ``train --regressor`` and for
    the release's first test number."""
    from .release import is_release_file, load_release_regressor

    if not own and is_release_file(path):
        return load_release_regressor(path, skeleton.num_keypoints, model)
    reg = load_networks(path, averaged=False, names=("eta",))
    if own and "eta_pretrained" not in reg.state:
        return None
    if reg.skeleton != skeleton:
        raise InputError("the regressor was trained for another skeleton", path)
    eta = reg.nets["eta"]
    if "eta_pretrained" in reg.state:
        try:
            eta.load_state_dict(reg.state["eta_pretrained"])
        except RuntimeError:
            raise InputError("the checkpoint's pre-trained regressor does not fit its config", path) from None
    return eta.eval()
