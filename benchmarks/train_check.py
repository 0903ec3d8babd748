"""A short real training run that must learn: built-in synthetic videos, a preset, a step budget; the
losses must be finite and fall, and the error on held-out videos must beat the mean pose.

    python benchmarks/train_check.py [--preset paper-128] [--size 128] [--steps 300] [--videos 60] [--out DIR]

Part of benchmarks/gpu_check.sh (paper-128, 300 steps on a GPU).  Prints one line per check and the
metrics, writes ``OUT/train_check.json``, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from keypointgan.api import make_eval_set, make_loader
from keypointgan.config import make_config
from keypointgan.data import Layout, load_prior
from keypointgan.data.synthetic import SyntheticConfig, make_synthetic
from keypointgan.demo import mean_pose_metrics, split_videos
from keypointgan.devices import select_device
from keypointgan.training import TrainState, fit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper-128")
    ap.add_argument("--size", type=int, default=128, help="frame size of the synthetic videos (the preset's network size)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pretrain-steps", type=int, default=None, help="η's pre-training steps (default: the preset's)")
    ap.add_argument("--videos", type=int, default=60)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/train_check"))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = args.out / "data"
    if not (data / "skeleton.yaml").is_file():
        make_synthetic(data, SyntheticConfig(videos=args.videos, frames=args.frames, size=args.size, seed=0), progress=False)
    layout = Layout(data)
    prior = load_prior(layout.prior_path, layout.skeleton)
    train_videos, test_videos = split_videos(layout)
    over = {} if args.pretrain_steps is None else {"pretrain_steps": args.pretrain_steps}
    cfg = make_config(args.preset, steps=args.steps, device=args.device, precision=args.precision, log_every=25,
                      sample_every=10**6, eval_every=10**6, ckpt_every=10**6, **over)
    es = make_eval_set(layout, test_videos, cfg.model.size)
    dev = select_device(cfg.device)
    loader, prior_points = make_loader(cfg, layout.skeleton, prior, train_videos, dev)
    state = TrainState(cfg, layout.skeleton, dev)
    run = args.out / "run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    metrics = fit(state, loader, prior_points, run, eval_set=es, progress=False)
    base = mean_pose_metrics(prior, es, layout.skeleton)
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in recs if "loss_rec" in r and "phase" not in r]
    first, last = train[: max(1, len(train) // 4)], train[-max(1, len(train) // 4):]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    checks = {
        "no non-finite step": state.skipped_steps == 0 and all(math.isfinite(r[k]) for r in train for k in r if k.startswith("loss_")),
        "reconstruction loss falls": mean(last, "loss_rec") < mean(first, "loss_rec"),
        "error below the mean pose": metrics["error"] < base["error"],
    }
    result = {
        "preset": args.preset, "steps": state.step, "precision": state.precision.name, "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "error": metrics["error"], "mean_pose_error": base["error"], "ratio": metrics["error"] / base["error"],
        "loss_rec_first": mean(first, "loss_rec"), "loss_rec_last": mean(last, "loss_rec"),
        "train_img_per_s": mean(train[1:] or train, "img_per_s"), "seconds": time.perf_counter() - t0,
        "checks": checks,
    }
    (args.out / "train_check.json").write_text(json.dumps(result, indent=2))
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"{args.preset}, {state.step} steps, {state.precision.name} on {result['gpu'] or dev}: error {metrics['error']:.2f} "
          f"(mean pose {base['error']:.2f}, {result['ratio']:.2f}×); loss_rec {result['loss_rec_first']:.3f} → {result['loss_rec_last']:.3f}; "
          f"{result['train_img_per_s']:.0f} img/s; {result['seconds']:.0f} s")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
