"""Memory of training on, and predicting on, video files of two lengths (short and 10× longer).

    python benchmarks/video_memory.py [--frames 300] [--size 128] [--json OUT]

Each measurement runs in a fresh process and reports its peak resident set
size (``ru_maxrss``) and the peak of Python/numpy allocations (tracemalloc)
over the measured part.  Training: a small model, 3 steps on
``ROOT/videos/clip.mp4``.  Prediction: ``predict_video`` on the same file
with an overlay.  Writes JSON (default benchmarks/results/video_memory.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SMALL_MODEL = dict(size=64, encoder_widths=(8, 16, 32), regressor_widths=(8, 16, 32), decoder_widths=(8, 16, 32), disc_ndf=8, disc_layers=2, disc_scales=2)


def make_dataset(root: Path, frames: int, size: int) -> None:
    """A generic layout with one synthetic video file of ``frames`` frames (48 rendered frames, played back and forth)."""
    from keypointgan.data.synthetic import SyntheticConfig, _video_rng, make_synthetic, render_video
    from keypointgan.video import write_video

    make_synthetic(root, SyntheticConfig(videos=1, frames=2, size=32, seed=0, prior=500), workers=1, progress=False)
    shutil.rmtree(root / "videos")
    (root / "keypoints").exists() and shutil.rmtree(root / "keypoints")
    imgs, _ = render_video(_video_rng(5, 0), 48, size)
    loop = np.concatenate([imgs, imgs[::-1]])
    write_video(root / "videos" / "clip.mp4", (loop[t % len(loop)] for t in range(frames)), fps=25, gop_size=25)


def child(mode: str, root: str, ckpt: str, out: str) -> None:
    import tracemalloc

    import torch

    from keypointgan.config import make_config
    from keypointgan.data import Layout, load_prior

    torch.set_num_threads(1)
    lay = Layout(root)
    if mode == "train":
        from keypointgan.api import make_loader
        from keypointgan.training import TrainState, train_step

        cfg = make_config("cpu-64", model=SMALL_MODEL, batch_size=8, device="cpu", steps=3, data_workers=0)
        prior = load_prior(lay.prior_path, lay.skeleton)
        # one throw-away state and loader so that imports and one-time set-up are not measured
        make_loader(cfg, lay.skeleton, prior, lay.videos, torch.device("cpu")), TrainState(cfg, lay.skeleton, torch.device("cpu"))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        loader, points = make_loader(cfg, lay.skeleton, prior, lay.videos, torch.device("cpu"))
        state = TrainState(cfg, lay.skeleton, torch.device("cpu"))
        it = loader.batches()
        for _ in range(3):
            b = next(it)
            train_step(state, b.x, b.x_app, points)
    else:
        from keypointgan import KeypointDetector
        from keypointgan.predict import predict_video

        det = KeypointDetector.from_checkpoint(ckpt, device="cpu")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        predict_video(det, Path(root) / "videos" / "clip.mp4", out, smooth=5)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": dt, "tracemalloc_peak_mb": peak / 1e6, "peak_rss_mb": rss / 1024, "rss_before_mb": rss0 / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300, help="frames of the short video (the long one has 10×)")
    ap.add_argument("--size", type=int, default=128, help="frame size in pixels")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "video_memory.json")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)

    from keypointgan.api import train
    from keypointgan.config import make_config

    tmp = Path(tempfile.mkdtemp(prefix="kpg_vidmem_"))
    rows = []
    try:
        ckpt = None
        for n in (a.frames, 10 * a.frames):
            root = tmp / f"data{n}"
            make_dataset(root, n, a.size)
            if ckpt is None:
                cfg = make_config("cpu-64", model=SMALL_MODEL, batch_size=8, device="cpu", steps=1, pretrain_steps=2)
                train(root, tmp / "run", config=cfg, progress=False)
                from keypointgan.checkpoint import run_checkpoint

                ckpt = run_checkpoint(tmp / "run")
            for mode in ("train", "predict"):
                cmd = [sys.executable, __file__, "--child", mode, str(root), str(ckpt), str(tmp / f"out_{mode}_{n}")]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                res.update(mode=mode, frames=n, size=a.size, decoded_video_mb=n * a.size * a.size * 3 / 1e6)
                rows.append(res)
                print(f"{mode:<8} {n:>6} frames at {a.size} px: peak RSS {res['peak_rss_mb']:7.1f} MB, "
                      f"Python/numpy peak {res['tracemalloc_peak_mb']:6.2f} MB, {res['seconds']:6.1f} s "
                      f"(the whole video decoded: {res['decoded_video_mb']:.0f} MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
