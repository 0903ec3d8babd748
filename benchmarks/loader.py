"""Throughput of the training data pipeline alone: frame pairs per second at 128 px, per worker count,
from JPEG frame folders and from an mp4 (nothing preloaded: every frame is read and decoded).

    python benchmarks/loader.py [--workers 0 1 2] [--batches 40] [--json OUT]

Builds its own data in a temporary folder (synthetic videos re-encoded as JPEG frames and as one
mp4 per video, keyframe every 25 frames), prints a table and writes JSON
(default benchmarks/results/loader.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from keypointgan.data import Layout
from keypointgan.data.datasets import FrameStore
from keypointgan.data.loader import PairLoader
from keypointgan.data.synthetic import SyntheticConfig, make_synthetic


def make_data(root: Path, videos: int, frames: int, size: int) -> tuple[Path, Path]:
    """The same synthetic videos twice: JPEG frame folders, and one .mp4 per video."""
    from PIL import Image

    from keypointgan.video import VideoWriter

    png = root / "png"
    make_synthetic(png, SyntheticConfig(videos=videos, frames=frames, size=size, seed=0, prior=100), progress=False, workers=1)
    lay = Layout(png)
    jpg, mp4 = root / "jpg", root / "mp4"
    for out in (jpg, mp4):
        (out / "videos").mkdir(parents=True)
        for f in ("skeleton.yaml", "prior.npy"):
            (out / f).write_bytes((png / f).read_bytes())
    for v in lay.videos:
        imgs = [np.asarray(Image.open(p).convert("RGB")) for p in v.frames]
        d = jpg / "videos" / v.id
        d.mkdir()
        for i, img in enumerate(imgs):
            Image.fromarray(img).save(d / f"{i:06d}.jpg", quality=90)
        with VideoWriter(mp4 / "videos" / f"{v.id}.mp4", fps=25, gop_size=25) as w:
            for img in imgs:
                w.write(img)
    return jpg, mp4


def pairs_per_second(root: Path, workers: int, batches: int, size: int, batch_size: int) -> float:
    lay = Layout(root)
    store = FrameStore(lay.videos, size, preload=False)
    loader = PairLoader(store, batch_size=batch_size, gap=(1, 1000), seed=0, workers=workers)
    it = loader.batches()
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    it.close()
    return batches * batch_size / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "loader.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jpg, mp4 = make_data(Path(tmp), args.videos, args.frames, args.size)
        for name, root in (("jpeg", jpg), ("mp4", mp4)):
            for w in args.workers:
                pps = pairs_per_second(root, w, args.batches, args.size, args.batch_size)
                rows.append({"source": name, "workers": w, "pairs_per_s": pps, "pairs_per_s_per_worker": pps / max(w, 1)})
    info = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "size": args.size, "batch_size": args.batch_size, "results": rows,
    }
    print(f"{'source':<6} {'workers':>7} {'pairs/s':>9} {'per worker':>11}   ({args.size} px, batch {args.batch_size}; {info['machine']})")
    for r in rows:
        print(f"{r['source']:<6} {r['workers']:>7} {r['pairs_per_s']:>9.0f} {r['pairs_per_s_per_worker']:>11.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
