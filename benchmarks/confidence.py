"""Does the per-keypoint confidence rank the errors? Measured on the built-in synthetic test videos.

    python benchmarks/confidence.py --checkpoint RUN --data DATA [--json OUT]

``DATA`` is a synthetic dataset (``keypointgan make-synthetic``); its last tenth of videos (``--test-fraction``)
are the test videos (as in the demo; the run must not have trained on them). For every (frame, keypoint) of the test
frames: the error (distance to the truth in % of image size) and the detector's confidence (as
configured: flip test per the run). Reported:

* AUROC of "confidence below t" for "error above 2× the median error" (over all thresholds t; 0.5 is
  chance, 1 a perfect ranking), from the Mann–Whitney U statistic (scipy);
* the mean error of the least-confident tenth and of the most-confident tenth, and their ratio.

Writes JSON (default ``benchmarks/results/confidence.json``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def confidence_ranking(errors: np.ndarray, confidence: np.ndarray) -> dict:
    """AUROC of low confidence for ``error > 2 × median`` and the errors of the confidence tenths (flat arrays)."""
    from scipy.stats import mannwhitneyu

    e, c = np.asarray(errors, float).ravel(), np.asarray(confidence, float).ravel()
    ok = np.isfinite(e) & np.isfinite(c)
    e, c = e[ok], c[ok]
    bad = e > 2 * np.median(e)
    # P(confidence of a bad point < that of a good one), ties counted half
    u = mannwhitneyu(-c[bad], -c[~bad], alternative="two-sided").statistic
    auroc = float(u / (bad.sum() * (~bad).sum()))
    order = np.argsort(c, kind="stable")
    n10 = max(1, len(c) // 10)
    low, high = float(e[order[:n10]].mean()), float(e[order[-n10:]].mean())
    return {
        "points": int(len(e)),
        "median_error": float(np.median(e)),
        "share_above_2x_median": float(bad.mean()),
        "auroc": auroc,
        "least_confident_tenth_error": low,
        "most_confident_tenth_error": high,
        "tenth_ratio": low / high,
        "confidence_quantiles": [float(q) for q in np.quantile(c, [0, 0.1, 0.5, 0.9, 1])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--test-fraction", type=float, default=0.1, help="the last this share of DATA's videos are the test videos (1: all)")
    ap.add_argument("--json", default="benchmarks/results/confidence.json")
    args = ap.parse_args()

    import torch

    from keypointgan import KeypointDetector
    from keypointgan.api import make_eval_set
    from keypointgan.data import Layout
    from keypointgan.evaluate import _distances  # per-keypoint distances in [0, 1] units

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    det = KeypointDetector.from_checkpoint(args.checkpoint, device="cpu")
    layout = Layout(args.data)
    test = layout.videos[-max(1, round(len(layout.videos) * args.test_fraction)) :]
    es = make_eval_set(layout, test, det.size)
    from keypointgan.inference import predict_points_confidence
    from keypointgan.pixels import norm_to_image_pixels

    res = {
        "command": "python benchmarks/confidence.py " + " ".join(os.sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "test_videos": [v.id for v in test],
        "frames": int(len(es.images)),
    }
    for flip in (False, True):
        pts, conf = predict_points_confidence(det.phi, det.eta, es.images, flip_permutation=det.skeleton.flip_permutation, flip_test=flip)
        pix = norm_to_image_pixels(pts, det.size, es.hw)
        err = _distances(pix, es.keypoints, es.hw) * 100  # N×K, % of image size
        r = confidence_ranking(err, conf.numpy())
        r["mean_error"] = float(np.nanmean(err))
        res["flip_test_on" if flip else "flip_test_off"] = r
    res["detector_flip_test"] = det.flip_test
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    for k in ("flip_test_off", "flip_test_on"):
        r = res[k]
        print(
            f"{k}: {r['points']} points, mean error {r['mean_error']:.2f}, median {r['median_error']:.2f} (% of image size); "
            f"AUROC {r['auroc']:.3f}; least-confident tenth {r['least_confident_tenth_error']:.2f} vs most-confident "
            f"{r['most_confident_tenth_error']:.2f} (×{r['tenth_ratio']:.2f})"
        )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
