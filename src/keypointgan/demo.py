"""``keypointgan demo``: synthetic data → pre-train η → KeypointGAN → evaluation next to two baselines.

Baselines, computed in the same run on the same unseen test videos:

* **mean pose** — the mean of the prior poses, predicted for every image;
* **supervised** — the same Φ + η trained directly on the training videos'
  true keypoints for the same time as KeypointGAN: the upper bound.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import pixels as P
from .api import make_eval_set, make_loader
from .config import make_config
from .data import Layout, load_prior
from .devices import select_device
from .evaluate import summarize
from .io import atomic_write_text
from .log import configure as configure_logging
from .log import logger
from .research.supervised import predict_test_set, train_supervised
from .training import EvalSet, TrainState, fit, predict_state, pretrain_regressor

__all__ = ["run_demo", "mean_pose_metrics", "DEFAULT_MINUTES"]

DEFAULT_MINUTES = 13.0
"""The demo's whole budget: with a fresh install (≈ 1.5 min) it stays within 15 minutes."""
REPORT_RESERVE_S = 30.0
"""Seconds set aside for writing the report before KeypointGAN's training starts (its real cost is
measured later, before the supervised baseline, which absorbs any difference)."""
SUPERVISED_LOG_EVERY = 500
"""Steps between the supervised baseline's periodic errors (its raw networks on every 4th test frame,
``history`` in metrics.json)."""


def _metrics(pix: np.ndarray, es: EvalSet, skeleton) -> dict:
    r = summarize(pix, es.keypoints, es.hw, skeleton, es.groups)
    r.pop("per_group")
    return r


def mean_pose_metrics(prior: np.ndarray, es: EvalSet, skeleton) -> dict:
    """Predict the prior's mean pose (in [0, 1] units, pixel edges at 0 and 1) for every test image."""
    mean = prior.mean(axis=0)  # K×2 in [0, 1]
    pix = np.stack([P.unit_to_pixel(mean, tuple(hw)) for hw in es.hw])
    return _metrics(pix, es, skeleton)


def held_out(n_videos: int, test_fraction: float = 0.1) -> int:
    """How many of ``n_videos`` videos are held out for testing: ``test_fraction`` of them, at least one."""
    return max(1, int(round(n_videos * test_fraction)))


def split_videos(layout: Layout, test_fraction: float = 0.1, *, n_test: int | None = None):
    """The last :func:`held_out` videos (``test_fraction`` of them), or the last ``n_test``, are held out for testing."""
    n = len(layout.videos)
    n_test = held_out(n, test_fraction) if n_test is None else n_test
    return layout.videos[: n - n_test], layout.videos[n - n_test :]


def run_demo(
    out: str | Path = "runs/demo",
    *,
    max_minutes: float = DEFAULT_MINUTES,
    videos: int = 200,
    frames: int = 50,
    seed: int = 0,
    preset: str = "cpu-64",
    vgg_weights: str | None = None,
    progress: bool = True,
    **overrides,
) -> dict:
    """Run the whole demo within about ``max_minutes``; returns and writes ``OUT/metrics.json``.

    The budget is a deadline: data and pre-training first, then what remains, less a reserve for the
    closing evaluations and the report measured on this machine as the run goes, goes half to
    KeypointGAN and half to the supervised baseline.
    """
    from .data.synthetic import SyntheticConfig, make_synthetic

    configure_logging()
    t_start = time.perf_counter()
    deadline = t_start + max_minutes * 60
    if vgg_weights:  # read the weights now, not after minutes of data generation
        from .losses import VGG19Features

        VGG19Features.from_file(vgg_weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "skeleton.yaml").is_file():
        make_synthetic(data, SyntheticConfig(videos=videos, frames=frames, size=64, seed=seed), preview=True, progress=progress)
    layout = Layout(data)
    prior = load_prior(layout.prior_path, layout.skeleton)
    train_videos, test_videos = split_videos(layout)
    cfg = make_config(preset, seed=seed, vgg_weights=vgg_weights, max_minutes=1.0, **overrides)
    es = make_eval_set(layout, test_videos, cfg.model.size)
    results: dict = {"mean_pose": mean_pose_metrics(prior, es, layout.skeleton)}
    if progress:
        logger.info(f"mean-pose baseline: error {results['mean_pose']['error']:.2f}  flip-corrected {results['mean_pose']['error_flip']:.2f}")

    run_dir = out / "keypointgan"
    # periodic evaluation on every 4th test frame (it costs training time); the final one on all
    es_periodic = EvalSet(es.images[::4], es.keypoints[::4], es.hw[::4], es.groups[::4])
    device = select_device(cfg.device)
    loader, prior_points = make_loader(cfg, layout.skeleton, prior, train_videos, device)
    state = TrainState(cfg, layout.skeleton, device)
    pretrain_regressor(state, prior_points, progress=progress)

    # What is left is split evenly between KeypointGAN and the supervised baseline, after a reserve for
    # the closing phases (two evaluations on all test frames, with a margin, and the report). The reserve is measured
    # on this machine now, not assumed: a loaded host makes every phase slower.
    t0 = time.perf_counter()
    predict_state(state, loader, es.images)
    eval_s = time.perf_counter() - t0
    reserve_s = 3 * eval_s + REPORT_RESERVE_S
    per_method = max((deadline - time.perf_counter() - reserve_s) / 120, 0.05)
    state.set_budget(max_minutes=per_method)
    if progress:
        logger.info(f"training KeypointGAN for {per_method:.1f} min, then the supervised baseline for the same time")
    fit(state, loader, prior_points, run_dir, eval_set=es_periodic, progress=progress)

    t0 = time.perf_counter()
    pred_grid, single = predict_test_set(lambda x: predict_state(state, loader, x, flip_test=False), es, layout.skeleton, cfg.flip_test)
    results["keypointgan"] = _metrics(P.norm_to_image_pixels(pred_grid, cfg.model.size, es.hw), es, layout.skeleton)
    results["keypointgan"].update(steps=state.step, minutes=state.elapsed / 60)
    if single is not None:
        results["keypointgan"]["single_pass"] = single
    eval_s = time.perf_counter() - t0
    # the report, written now too (a partial page if anything later fails); its cost is measured
    t0 = time.perf_counter()
    write_demo_report(out, run_dir, layout.skeleton, es, results, pred_grid)
    report_s = time.perf_counter() - t0

    # The supervised baseline gets the same time, unless the host slowed down so much that this would
    # overrun the demo's budget: then what is left (both durations are in metrics.json).
    left = (deadline - time.perf_counter() - report_s - 5) / 60
    sup_minutes = max(min(per_method, left), 0.05)
    results["supervised"] = train_supervised(
        state.cfg, layout, train_videos, es, minutes=sup_minutes, steps=None, progress=progress, store=loader.store, eval_s=eval_s,
        log_every=SUPERVISED_LOG_EVERY, log_set=es_periodic,
    )
    results["minutes"] = (time.perf_counter() - t_start) / 60
    results["budget_minutes"] = max_minutes
    results["test_videos"] = [v.id for v in test_videos]
    results["n_test_frames"] = int(len(es.images))
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=2))
    if progress:
        print(format_table(results), flush=True)
    write_demo_report(out, run_dir, layout.skeleton, es, results, pred_grid)
    if progress:
        print(f"report: {out / 'report.html'}", flush=True)
    return results


def write_demo_report(out: Path, run_dir: Path, skeleton, es: EvalSet, results: dict, pred_grid: "torch.Tensor") -> Path:
    """``OUT/report.html``: the run's report with the demo's table and the test predictions
    (``pred_grid``: ``N×K×2`` in [-1, 1] on ``es.images``) drawn beside the truth."""
    from .report import write_report
    from .viz import overlay_sheet, tensor_to_uint8

    size = es.images.shape[-1]
    grid_hw = (size, size)  # drawn on the frames as the network sees them
    pred = P.norm_to_image_pixels(pred_grid, size, grid_hw)
    true = P.norm_to_image_pixels(P.image_pixels_to_norm(es.keypoints, size, es.hw), size, grid_hw)
    sheet = overlay_sheet(tensor_to_uint8(es.images), pred, true, skeleton, out / "test_predictions.png")
    return write_report(run_dir, out / "report.html", metrics=results, overlays=sheet)


def format_table(results: dict) -> str:
    rows = [("method", "error", "flip-corrected", "PCK@0.05")]
    for k, label in (("keypointgan", "KeypointGAN"), ("mean_pose", "mean pose"), ("supervised", "supervised (upper bound)")):
        r = results[k]
        rows.append((label, f"{r['error']:.2f}", f"{r['error_flip']:.2f}", f"{r['pck']:.3f}"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    lines.append(f"(errors in % of image size on {results['n_test_frames']} frames of unseen videos; {results['minutes']:.1f} min in all)")
    single = [(label, results[k]["single_pass"]) for k, label in (("keypointgan", "KeypointGAN"), ("supervised", "supervised")) if "single_pass" in results[k]]
    if single:
        lines.append(
            "(with the flip test: each image is also predicted mirrored and the two averaged; one pass only: "
            + ", ".join(f"{label} {r['error_flip']:.2f}" for label, r in single)
            + ")"
        )
    return "\n".join(lines)
