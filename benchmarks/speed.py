"""Time a training step and inference for each preset; count FLOPs; compare with matmul peak; and
measure the fraction of step time spent waiting for data in a real cpu-64 run on synthetic videos.

    python benchmarks/speed.py [--presets cpu-64 paper-128] [--steps 5] [--pipeline-steps 60] [--json OUT]

Prints a table and writes JSON (default benchmarks/results/speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from keypointgan.config import make_config
from keypointgan.skeleton import preset as skeleton_preset
from keypointgan.devices import select_device
from keypointgan.training import TrainState, train_step


def matmul_gflops(n: int = 2048, reps: int = 3, trials: int = 5) -> float:
    """Best of ``trials`` timings of ``reps`` fp32 n×n matmuls (the machine's attainable peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def bench(preset: str, steps: int, device: str) -> dict:
    sk = skeleton_preset("synthetic")
    cfg = make_config(preset, steps=steps, device=device)
    size, bs = cfg.model.size, cfg.batch_size
    import numpy as np

    dev = select_device(device)
    prior = torch.from_numpy(np.random.default_rng(0).uniform(-0.6, 0.6, (256, sk.num_keypoints, 2)).astype(np.float32)).to(dev)
    state = TrainState(cfg, sk, dev)
    mf = state.memory_format
    x = torch.randn(bs, 3, size, size, device=dev).clamp(-1, 1).contiguous(memory_format=mf)
    xa = torch.randn(bs, 3, size, size, device=dev).clamp(-1, 1).contiguous(memory_format=mf)
    train_step(state, x, xa, prior)  # warm-up
    with FlopCounterMode(display=False) as fc:
        train_step(state, x, xa, prior)
    step_flops = fc.get_total_flops()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state, x, xa, prior)
    sync()
    step_s = (time.perf_counter() - t0) / steps
    phi, eta = state.nets["phi"].eval(), state.nets["eta"].eval()
    xb = torch.randn(64, 3, size, size, device=dev)
    with torch.no_grad():
        eta(phi(xb))
        with FlopCounterMode(display=False) as fc:
            eta(phi(xb))
        inf_flops = fc.get_total_flops()
        sync()
        t0 = time.perf_counter()
        for _ in range(3):
            eta(phi(xb))
        sync()
        inf_s = (time.perf_counter() - t0) / 3
    return {
        "preset": preset,
        "size": size,
        "batch": bs,
        "train_step_s": step_s,
        "train_img_per_s": bs / step_s,
        "train_gflop_per_img": step_flops / bs / 1e9,
        "train_gflop_per_s": step_flops / step_s / 1e9,
        "infer_img_per_s": 64 / inf_s,
        "infer_gflop_per_img": inf_flops / 64 / 1e9,
        "infer_gflop_per_s": inf_flops / inf_s / 1e9,
    }


def pipeline(steps: int, workers: int | None) -> dict:
    """``fit`` with the cpu-64 preset on built-in synthetic videos (40 × 50 frames at 64 px, frames
    preloaded as in the demo): images per second and the fraction of step time spent waiting for data
    (the log's ``data_wait``), after the first log window (worker start-up)."""
    import tempfile

    from keypointgan.api import make_loader
    from keypointgan.data import Layout, load_prior
    from keypointgan.data.synthetic import SyntheticConfig, make_synthetic
    from keypointgan.training import fit

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_synthetic(root, SyntheticConfig(videos=40, frames=50, size=64, seed=0, prior=500), progress=False)
        lay = Layout(root)
        cfg = make_config("cpu-64", steps=steps, pretrain_steps=0, log_every=10, eval_every=10**6, sample_every=10**6,
                          ckpt_every=10**6, data_workers=workers, device="cpu")
        loader, prior = make_loader(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, torch.device("cpu"))
        fit(TrainState(cfg, lay.skeleton, torch.device("cpu")), loader, prior, Path(tmp) / "run", progress=False)
        recs = [json.loads(l) for l in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        windows = [r for r in recs if "data_wait" in r][1:]
    return {"preset": "cpu-64", "data_workers": loader.workers, "steps": steps,
            "train_img_per_s": sum(r["img_per_s"] for r in windows) / len(windows),
            "data_wait_fraction": sum(r["data_wait"] for r in windows) / len(windows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cpu-64", "paper-128"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pipeline-steps", type=int, default=60, help="steps of the real cpu-64 run measuring data waiting (0: skip)")
    ap.add_argument("--pipeline-workers", type=int, nargs="+", default=[0, 1], help="data worker counts for that run")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = ap.parse_args()
    peak = matmul_gflops()
    rows = [bench(p, args.steps, args.device) for p in args.presets]
    pipe = [pipeline(args.pipeline_steps, w) for w in args.pipeline_workers] if args.pipeline_steps else []
    info = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "device": args.device,
        "fp32_matmul_gflop_per_s": peak,
        "results": rows,
        "pipeline": pipe,
    }
    print(f"fp32 matmul (2048², best of 5): {peak:.0f} GFLOP/s   {info['machine']}")
    hdr = f"{'preset':<10} {'train img/s':>11} {'GFLOP/img':>10} {'GFLOP/s':>8} {'% peak':>7} {'infer img/s':>12} {'GFLOP/img':>10} {'GFLOP/s':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['preset']:<10} {r['train_img_per_s']:>11.1f} {r['train_gflop_per_img']:>10.2f} {r['train_gflop_per_s']:>8.1f} "
            f"{100 * r['train_gflop_per_s'] / peak:>6.1f}% {r['infer_img_per_s']:>12.1f} {r['infer_gflop_per_img']:>10.3f} {r['infer_gflop_per_s']:>8.1f}"
        )
    for r in pipe:
        print(f"data pipeline, cpu-64 on synthetic videos, {r['data_workers']} data worker(s): {r['train_img_per_s']:.1f} img/s, "
              f"{100 * r['data_wait_fraction']:.1f}% of step time waiting for data")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
