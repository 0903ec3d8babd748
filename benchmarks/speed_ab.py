"""cpu-64 training img/s of this code against another checkout (e.g. the commit an issue was measured on),
in separate processes taken in turn, so that a noisy host's drift hits every configuration alike.

    python benchmarks/speed_ab.py --baseline-src OLD/src [--configs fp32:16 bf16:16 fp32:32 bf16:32]
                                  [--rounds 4] [--steps 240] [--threads 2] [--json OUT]

Each round runs one process for the baseline (its own ``cpu-64`` preset, fp32, batch 16: what the
issue called "today's eager fp32") and one per ``PRECISION:BATCH`` configuration of this code
(``src/`` next to this folder).  A process trains 6 warm-up steps on random images, then two windows of
``--steps`` images each, and reports its windows' median img/s; the table gives the median over rounds and
its ratio to the baseline's.  Writes JSON (default benchmarks/results/speed_ab.json):
``{"results": [{"code", "precision", "batch", "rounds": [...], "median", "ratio"}], …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The child process: kept to the API the baseline commit already had (make_config, TrainState, train_step).
CHILD = r"""
import json, statistics, sys, time
import numpy as np, torch
from keypointgan.config import make_config
from keypointgan.skeleton import preset as skeleton_preset
from keypointgan.training import TrainState, train_step
precision, batch, images, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
kw = {} if precision == "baseline" else {"precision": precision, "batch_size": batch}
cfg = make_config("cpu-64", device="cpu", **kw)
sk = skeleton_preset("synthetic")
state = TrainState(cfg, sk, torch.device("cpu"))
mf = getattr(state, "memory_format", torch.channels_last)
g = torch.Generator().manual_seed(0)
x = (torch.rand(cfg.batch_size, 3, 64, 64, generator=g) * 2 - 1).contiguous(memory_format=mf)
xa = (torch.rand(cfg.batch_size, 3, 64, 64, generator=g) * 2 - 1).contiguous(memory_format=mf)
prior = torch.from_numpy(np.random.default_rng(0).uniform(-0.6, 0.6, (256, sk.num_keypoints, 2)).astype(np.float32))
for _ in range(max(6, cfg.pool_size // cfg.batch_size + 2)):  # (the baseline's image pool filled)
    train_step(state, x, xa, prior)
steps = max(1, images // cfg.batch_size)
rates = []
for _ in range(2):
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state, x, xa, prior)
    rates.append(cfg.batch_size * steps / (time.perf_counter() - t0))
print(json.dumps({"img_per_s": statistics.median(rates)}))
"""


def run_child(src: Path, precision: str, batch: int, images: int, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD, precision, str(batch), str(images), str(threads)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"speed_ab: the process for {src} ({precision}, batch {batch}) failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["img_per_s"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", type=Path, required=True, help="the src/ folder of the checkout to compare against")
    ap.add_argument("--configs", nargs="+", default=["fp32:16", "bf16:16", "fp32:32", "bf16:32"], help="PRECISION:BATCH of this code")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=240, help="images per timing window (two windows per process)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", type=Path, default=HERE / "results" / "speed_ab.json")
    args = ap.parse_args(argv)
    if not (args.baseline_src / "keypointgan").is_dir():
        raise SystemExit(f"speed_ab: {args.baseline_src}: no keypointgan package there (give a checkout's src/ folder)")
    configs = [("baseline", "fp32", 16)]
    for c in args.configs:
        precision, _, batch = c.partition(":")
        configs.append(("this", precision, int(batch or 16)))
    rounds: dict[tuple, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for code, precision, batch in configs:
            src = args.baseline_src if code == "baseline" else HERE.parent / "src"
            rate = run_child(src, "baseline" if code == "baseline" else precision, batch, args.steps, args.threads)
            rounds[(code, precision, batch)].append(rate)
            print(f"round {r + 1}: {code:<8} {precision:<5} batch {batch:>3}: {rate:6.1f} img/s", flush=True)
    base = statistics.median(rounds[configs[0]])
    results = [{"code": c, "precision": p, "batch": b, "rounds": v, "median": statistics.median(v), "ratio": statistics.median(v) / base}
               for (c, p, b), v in rounds.items()]
    print(f"\n{'code':<8} {'prec.':<5} {'batch':>5} {'median img/s':>12} {'÷ baseline':>10}")
    for r in results:
        print(f"{r['code']:<8} {r['precision']:<5} {r['batch']:>5} {r['median']:>12.1f} {r['ratio']:>10.2f}")
    import torch

    info = {"date": date.today().isoformat(), "baseline_src": str(args.baseline_src), "threads": args.threads, "images_per_window": args.steps,
            "machine": f"{os.cpu_count()} cores, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}",
            "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
