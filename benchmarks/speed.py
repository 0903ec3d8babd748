"""Training and inference speed for each preset × {eager, compile} × {fp32, bf16} (× world size), against
an attainable peak measured in the same run for each dtype; and the fraction of step time a real cpu-64
run spends waiting for data.

    python benchmarks/speed.py [--presets cpu-64 paper-128] [--modes eager compile] [--precisions fp32 bf16]
                               [--world-sizes 1 2] [--batch-sizes 16 32] [--vgg random] [--steps 5] [--pipeline-steps 60] [--json OUT]

Peak: the better of a large matrix product (4096² on a GPU, 2048² on a CPU) and a large 3×3 convolution
(128 → 128 channels on 64×64 × 32 images, channels-last), best of 5, in that dtype.  FLOPs are counted
once per preset (``torch.utils.flop_counter`` on an eager fp32 step: forward and backward of the four
networks and VGG-19, the renderer's arithmetic not included) and used for every mode.  ``--vgg random``
trains with the VGG-19 perceptual loss on random weights (timing only; the paper's loss costs the same).
``--world-sizes``: N > 1 starts N processes (gloo on CPU, NCCL on GPUs), each with ``batch_size``
pairs and ``cores / N`` threads on a CPU; img/s is then the whole job's.  ``--batch-sizes``: frame pairs
per step (per process) instead of each preset's own.

Prints a table and writes JSON (default benchmarks/results/speed.json):
``{"results": [{"preset", "mode", "precision", "world_size", "train_img_per_s", "peak_gflop_per_s", …}], …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from keypointgan.config import make_config
from keypointgan.devices import select_device
from keypointgan.skeleton import preset as skeleton_preset
from keypointgan.training import TrainState, train_step
from keypointgan.training.distributed import SINGLE, Distributed, process_group
from keypointgan.training.precision import cpu_has_fast

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _best_rate(fn, flops: float, dev: torch.device, reps: int = 3, trials: int = 5) -> float:
    """The best of ``trials`` rates of ``reps`` calls; one timed call when a call takes over a second
    (an emulated dtype: a bf16 matmul on a CPU without native bf16 runs at well under 1 GFLOP/s)."""
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    once = time.perf_counter() - t0
    if once > 1.0:
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        return flops / (time.perf_counter() - t0) / 1e9
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(dev)
        best = max(best, flops * reps / (time.perf_counter() - t0) / 1e9)
    return best


def peaks(precision: str, dev: torch.device) -> dict:
    """GFLOP/s of a large matmul and a large 3×3 convolution in ``precision``'s dtype on ``dev``."""
    dt = DTYPES[precision]
    n = 4096 if dev.type == "cuda" else (2048 if cpu_has_fast(precision) else 512)
    a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    mm = _best_rate(lambda: a @ b, 2 * n**3, dev)
    bsz, c, hw = (32, 128, 64) if dev.type == "cpu" else (128, 256, 64)
    if dev.type == "cpu" and not cpu_has_fast(precision):
        bsz = 4
    x = torch.randn(bsz, c, hw, hw, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(dev, dt, memory_format=torch.channels_last)
    with torch.no_grad():
        cv = _best_rate(lambda: conv(x), 2 * bsz * c * c * 9 * hw * hw, dev)
    return {"matmul_gflop_per_s": mm, "conv_gflop_per_s": cv, "peak_gflop_per_s": max(mm, cv)}


def _random_vgg(folder: Path) -> str:
    from keypointgan.losses import VGG19Features

    path = folder / "vgg19-random.pth"
    if not path.exists():
        torch.manual_seed(0)
        # random weights: only the time of the perceptual loss is measured
        torch.save({f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}, path)
    return str(path)


def _inputs(cfg, dev, mf, seed=0):
    g = torch.Generator().manual_seed(seed)
    size, bs = cfg.model.size, cfg.batch_size
    x = (torch.rand(bs, 3, size, size, generator=g) * 2 - 1).to(dev).contiguous(memory_format=mf)
    xa = (torch.rand(bs, 3, size, size, generator=g) * 2 - 1).to(dev).contiguous(memory_format=mf)
    return x, xa


def _prior(sk, dev):
    return torch.from_numpy(np.random.default_rng(0).uniform(-0.6, 0.6, (256, sk.num_keypoints, 2)).astype(np.float32)).to(dev)


def step_flops(preset: str, device: str, vgg: str | None) -> tuple[float, float]:
    """FLOPs of one training step (per image) and of Φ+η inference (per image), eager fp32."""
    sk, dev = skeleton_preset("synthetic"), select_device(device)
    cfg = make_config(preset, device=device, precision="fp32", vgg_weights=vgg)
    state = TrainState(cfg, sk, dev)
    x, xa = _inputs(cfg, dev, state.memory_format)
    prior = _prior(sk, dev)
    train_step(state, x, xa, prior)
    with FlopCounterMode(display=False) as fc:
        train_step(state, x, xa, prior)
    phi, eta = state.nets["phi"].eval(), state.nets["eta"].eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fi:
        eta(phi(x))
    return fc.get_total_flops() / cfg.batch_size, fi.get_total_flops() / cfg.batch_size


def _graphs() -> int:
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # pragma: no cover - dynamo internals moved
        return -1


def bench(preset: str, mode: str, precision: str, steps: int, device: str, vgg: str | None, dist: Distributed = SINGLE,
          batch_size: int | None = None) -> dict:
    """Train and inference img/s of one configuration (in a multi-process run, the whole job's train img/s);
    ``batch_size``: pairs per step and process (None: the preset's)."""
    sk = skeleton_preset("synthetic")
    dev = dist.device(device)
    bs = {"batch_size": batch_size} if batch_size else {}
    cfg = make_config(preset, device=device, precision=precision, compile=mode == "compile", vgg_weights=vgg, **bs)
    with process_group(dist, dev):
        state = TrainState(cfg, sk, dev, dist=dist)
        x, xa = _inputs(cfg, dev, state.memory_format, seed=dist.rank)
        prior = _prior(sk, dev)
        t0 = time.perf_counter()
        # warm-up: compiles every graph (the networks with and without frozen weights; D's input once the
        # image pool is full and starts returning stored fakes)
        for _ in range(max(3, cfg.pool_size // cfg.batch_size + 2)):
            train_step(state, x, xa, prior)
        _sync(dev)
        warm_s = time.perf_counter() - t0
        graphs = _graphs()
        state.dist.agree_max([0])  # start together
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(state, x, xa, prior)
        _sync(dev)
        step_s = state.dist.agree_max([(time.perf_counter() - t0) / steps])[0]
        recompiled = _graphs() - graphs if graphs >= 0 else None
        phi, eta = state.fwd["phi"], state.fwd["eta"]
        state.nets["phi"].eval(), state.nets["eta"].eval()
        xb = torch.cat([x] * max(1, 64 // cfg.batch_size))
        with torch.no_grad(), state.autocast():
            for _ in range(2):
                eta(phi(xb))
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(3):
                eta(phi(xb))
            _sync(dev)
            inf_s = (time.perf_counter() - t0) / 3
    return {
        "preset": preset, "mode": mode, "precision": state.precision.name, "world_size": dist.world_size,
        "size": cfg.model.size, "batch": cfg.batch_size, "vgg": vgg is not None,
        "train_step_s": step_s, "train_img_per_s": cfg.batch_size * dist.world_size / step_s,
        "warmup_s": warm_s, "graphs_compiled_while_timing": recompiled,
        "infer_img_per_s": xb.shape[0] / inf_s,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, kwargs: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if kwargs["device"] == "cpu" or not torch.cuda.is_available():  # the processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    res = bench(**kwargs, dist=Distributed(rank, world, rank))
    if rank == 0:
        Path(out).write_text(json.dumps(res))


def bench_world(world: int, **kwargs) -> dict:
    """:func:`bench` in ``world`` processes (torch.multiprocessing, a rendezvous on a free local port)."""
    if world == 1:
        return bench(**kwargs)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        mp.spawn(_spawned, args=(world, _free_port(), kwargs, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def pipeline(steps: int, workers: int | None) -> dict:
    """``fit`` with the cpu-64 preset on built-in synthetic videos (40 × 50 frames at 64 px, frames
    preloaded as in the demo): images per second and the fraction of step time spent waiting for data
    (the log's ``data_wait``), after the first log window (worker start-up)."""
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
        recs = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        windows = [r for r in recs if "data_wait" in r][1:]
    return {"preset": "cpu-64", "data_workers": loader.workers, "steps": steps,
            "train_img_per_s": sum(r["img_per_s"] for r in windows) / len(windows),
            "data_wait_fraction": sum(r["data_wait"] for r in windows) / len(windows)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cpu-64", "paper-128"])
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    ap.add_argument("--world-sizes", nargs="+", type=int, default=[1])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="frame pairs per step and process (default: each preset's)")
    ap.add_argument("--vgg", choices=["none", "random"], default="none", help="train with the VGG-19 perceptual loss on random weights")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pipeline-steps", type=int, default=60, help="steps of the real cpu-64 run measuring data waiting (0: skip)")
    ap.add_argument("--pipeline-workers", type=int, nargs="+", default=[0, 1], help="data worker counts for that run")
    ap.add_argument("--emulated", action="store_true", help="also time bf16/fp16 on a CPU without native support (10× slower)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = ap.parse_args(argv)
    dev = select_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        vgg = _random_vgg(Path(tmp)) if args.vgg == "random" else None
        peak = {p: peaks(p, dev) for p in args.precisions}
        flops = {p: step_flops(p, args.device, vgg) for p in args.presets}
        rows, skipped = [], []
        print(HEADER, flush=True)
        for preset in args.presets:
            for mode in args.modes:
                for precision in args.precisions:
                    if dev.type == "cpu" and not cpu_has_fast(precision) and not args.emulated:
                        skipped.append({"preset": preset, "mode": mode, "precision": precision, "why": "emulated on this CPU"})
                        continue
                    for world, batch in [(w, b) for w in args.world_sizes for b in args.batch_sizes or [None]]:
                        torch._dynamo.reset()
                        r = bench_world(world, preset=preset, mode=mode, precision=precision, steps=args.steps, device=args.device, vgg=vgg,
                                        batch_size=batch)
                        f_train, f_inf = flops[preset]
                        r.update(train_gflop_per_img=f_train / 1e9, train_gflop_per_s=f_train * r["train_img_per_s"] / 1e9,
                                 infer_gflop_per_img=f_inf / 1e9, infer_gflop_per_s=f_inf * r["infer_img_per_s"] / 1e9,
                                 **peak[precision])
                        # a GPU per process; on a CPU the processes share the cores the peak was measured on
                        devices = world if dev.type == "cuda" else 1
                        r["train_pct_of_peak"] = 100 * r["train_gflop_per_s"] / (r["peak_gflop_per_s"] * devices)
                        rows.append(r)
                        print(_row(r), flush=True)
    pipe = [pipeline(args.pipeline_steps, w) for w in args.pipeline_workers] if args.pipeline_steps and dev.type == "cpu" else []
    info = {
        "date": date.today().isoformat(),
        "machine": (torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{_cpu_name()}, {os.cpu_count()} cores, "
                    f"{torch.get_num_threads()} threads, torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
                   + f", torch {torch.__version__}",
        "device": str(dev),
        "peaks": peak,
        "native_low_precision": {p: cpu_has_fast(p) for p in args.precisions} if dev.type == "cpu" else None,
        "results": rows,
        "skipped": skipped,
        "pipeline": pipe,
    }
    print(f"\n{info['machine']}")
    for p, v in peak.items():
        print(f"peak {p}: matmul {v['matmul_gflop_per_s']:.0f} GFLOP/s, 3×3 conv {v['conv_gflop_per_s']:.0f} GFLOP/s")
    print(HEADER)
    print("-" * len(HEADER))
    for r in rows:
        print(_row(r))
    for r in skipped:
        print(f"{r['preset']:<10} {r['mode']:<8} {r['precision']:<5} skipped: {r['why']} (--emulated times it)")
    for r in pipe:
        print(f"data pipeline, cpu-64 on synthetic videos, {r['data_workers']} data worker(s): {r['train_img_per_s']:.1f} img/s, "
              f"{100 * r['data_wait_fraction']:.1f}% of step time waiting for data")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    return info


HEADER = (f"{'preset':<10} {'mode':<8} {'prec.':<5} {'world':>5} {'batch':>5} {'train img/s':>11} {'GFLOP/img':>9} {'GFLOP/s':>8} {'% peak':>6} "
          f"{'warm-up s':>9} {'recompiles':>10} {'infer img/s':>11}")


def _row(r: dict) -> str:
    rec = "-" if r["graphs_compiled_while_timing"] is None else str(r["graphs_compiled_while_timing"])
    return (f"{r['preset']:<10} {r['mode']:<8} {r['precision']:<5} {r['world_size']:>5} {r['batch']:>5} {r['train_img_per_s']:>11.1f} "
            f"{r['train_gflop_per_img']:>9.2f} {r['train_gflop_per_s']:>8.1f} {r['train_pct_of_peak']:>5.1f}% {r['warmup_s']:>9.1f} "
            f"{rec:>10} {r['infer_img_per_s']:>11.1f}")


if __name__ == "__main__":
    main()
