"""Does the confidence fall when a model has collapsed? AUROC of collapsed vs healthy detectors' confidence.

    python benchmarks/confidence_collapse.py [--minutes 1.5] [--json benchmarks/results/confidence_collapse.json]

A *healthy* detector: Φ and η trained on the true keypoints of built-in synthetic videos (the demo's
supervised bound, :func:`keypointgan.demo.train_supervised`, at 32 px for ``--minutes``). A *collapsed*
one: the same networks with η's last layer's weights zeroed, so that every heatmap is flat and every
keypoint sits at the image centre — the state the reliability issue reports (15 keypoints within 1 px),
in which the heatmaps of an image and its mirror image agree perfectly. On held-out frames, each frame's
mean confidence is scored both ways: the heatmap agreement alone (the confidence before), and the
agreement times :func:`keypointgan.pixels.spread_factor` (the confidence now). Reported: the AUROC
of "healthy frame" against "collapsed frame" by mean confidence (1: every healthy frame more confident
than every collapsed one; 0.5 chance), and the mean confidences.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (the Mann–Whitney U statistic, scipy)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(pos, neg, alternative="two-sided").statistic / (len(pos) * len(neg)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "confidence_collapse.json")
    args = ap.parse_args()

    from keypointgan import demo
    from keypointgan.api import make_eval_set
    from keypointgan.config import make_config
    from keypointgan.data import Layout
    from keypointgan.data.synthetic import SyntheticConfig, make_synthetic
    from keypointgan.detector import KeypointDetector

    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="kpgan-collapse-")) / "data"
    make_synthetic(root, SyntheticConfig(videos=40, frames=24, size=32, seed=5, prior=200), workers=1)
    layout = Layout(root)
    train_videos, test_videos = layout.videos[:-4], layout.videos[-4:]
    w = (8, 16, 32)
    cfg = make_config("cpu-64", model=dict(size=32, encoder_widths=w, regressor_widths=w, decoder_widths=w, disc_layers=2, disc_scales=2),
                      device="cpu", ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0, flip_test=False)
    es = make_eval_set(layout, test_videos, 32)
    built = {}
    original = demo.build_networks

    def keep(*a, **k):  # train_supervised returns metrics only: keep the networks it trains
        built.update(original(*a, **k))
        return built

    demo.build_networks = keep
    res = demo.train_supervised(cfg, layout, train_videos, es, minutes=args.minutes, steps=None, progress=False)
    healthy = KeypointDetector(phi=built["phi"], eta=built["eta"], skeleton=layout.skeleton, size=32, config=cfg)
    eta = copy.deepcopy(built["eta"])
    last = [m for m in eta.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
    collapsed = KeypointDetector(phi=built["phi"], eta=eta, skeleton=layout.skeleton, size=32, config=cfg)

    from keypointgan.pixels import spread_factor
    from keypointgan.inference import predict_points_confidence

    scores = {}
    for name, det in (("healthy", healthy), ("collapsed", collapsed)):
        pts, agree = predict_points_confidence(det.phi, det.eta, es.images, flip_permutation=layout.skeleton.flip_permutation, flip_test=False)
        factor = spread_factor(pts.numpy(), 32)
        spread = np.linalg.norm(pts.numpy() - pts.numpy().mean(1, keepdims=True), axis=-1).max(1) * 31 / 2
        scores[name] = {"before": agree.numpy().mean(1), "now": (agree.numpy() * factor).mean(1), "spread_px": spread}
    out = {
        "what": "AUROC of healthy vs collapsed frames by mean confidence (before: heatmap agreement; now: times spread_factor)",
        "auroc_before": auroc(scores["healthy"]["before"], scores["collapsed"]["before"]),
        "auroc_now": auroc(scores["healthy"]["now"], scores["collapsed"]["now"]),
        **{f"mean_confidence_{k}_{when}": float(scores[k][when].mean()) for k in scores for when in ("before", "now")},
        **{f"max_distance_to_centroid_px_{k}": float(np.median(scores[k]["spread_px"])) for k in scores},
        "healthy_error": res["error"], "frames": int(len(es.images)), "minutes": args.minutes,
        "machine": platform.platform(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
