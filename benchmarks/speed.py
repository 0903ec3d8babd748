"""Time a training step and inference for each preset; count FLOPs; compare with matmul peak.

    python benchmarks/speed.py [--presets cpu-64 paper-128] [--steps 5] [--json OUT]

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
from keypointgan.train import Trainer


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

    prior = np.random.default_rng(0).uniform(0.2, 0.8, (256, sk.num_keypoints, 2)).astype(np.float32)
    t = Trainer(cfg, sk, prior, [], "/tmp/kpgan-bench", progress=False)
    x = torch.randn(bs, 3, size, size, device=t.device).clamp(-1, 1)
    xa = torch.randn(bs, 3, size, size, device=t.device).clamp(-1, 1)
    t.train_step(x, xa)  # warm-up
    with FlopCounterMode(display=False) as fc:
        t.train_step(x, xa)
    step_flops = fc.get_total_flops()
    sync = torch.cuda.synchronize if t.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        t.train_step(x, xa)
    sync()
    step_s = (time.perf_counter() - t0) / steps
    phi, eta = t.nets["phi"].eval(), t.nets["eta"].eval()
    xb = torch.randn(64, 3, size, size, device=t.device)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cpu-64", "paper-128"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = ap.parse_args()
    peak = matmul_gflops()
    rows = [bench(p, args.steps, args.device) for p in args.presets]
    info = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "device": args.device,
        "fp32_matmul_gflop_per_s": peak,
        "results": rows,
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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
