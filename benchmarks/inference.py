"""Inference speed of the detector graph (Φ → η → points + confidence) on each backend, in one run.

    python benchmarks/inference.py [--presets cpu-64 paper-128] [--checkpoint RUN --data DATA] [--json OUT]

For each preset: batch-1 latency (median of single-image calls, at least 3, up to ``--latency-calls`` or
``--seconds``) and batch-64 throughput (images/s,
best of ``--rounds`` rounds, the backends interleaved within each round so that host noise hits them
alike) for PyTorch eager fp32 (as ``KeypointDetector`` runs it; also channels-last), ``torch.compile``,
bf16 autocast, onnxruntime fp32 and onnxruntime int8 (static QDQ quantisation calibrated on frames).
The graph is the exported detector's: points and confidence, so each image is read twice (as is and
mirrored: the confidence compares the two; the flip test, off here, would average their points at no
extra cost). Images/s count input images.

Accuracy rule for int8: with ``--checkpoint`` (a run of that preset) and ``--data`` (videos with
keypoints, e.g. the synthetic test videos) the error (% of image size) of int8 and fp32 is measured on
those frames and int8 is kept only if it changes by ≤ 0.05; without them (random weights) the rule is
applied to the mean distance between int8's and fp32's points in % of image size. The other backends'
error change is reported the same way.

Prints a table and writes JSON (default ``benchmarks/results/inference.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from keypointgan.config import make_config
from keypointgan.inference import DetectorGraph
from keypointgan.nets import build_networks
from keypointgan.skeleton import preset as skeleton_preset

BATCH = 64
INT8_RULE = 0.05


def _frames(data: Path | None, size: int, n: int, seed: int = 0):
    """``n`` frames ``N×3×S×S`` in [-1, 1] and their evaluation set (None without ``data``: rendered synthetic frames)."""
    if data is None:
        from keypointgan.data.synthetic import _video_rng, render_video

        imgs = np.concatenate([render_video(_video_rng(seed, v), 50, size)[0] for v in range(max(1, n // 50 + 1))])[:n]
        from keypointgan.pixels import uint8_to_signed

        x = uint8_to_signed(torch.from_numpy(imgs).permute(0, 3, 1, 2))
        return x, None
    from keypointgan.api import make_eval_set
    from keypointgan.data import Layout

    layout = Layout(data)
    vids = layout.videos[-max(1, round(len(layout.videos) * 0.1)) :]  # the demo's test split: the last tenth
    es = make_eval_set(layout, vids, size, max_frames=n)
    return es.images, es


def _error(points_norm: torch.Tensor, es, size: int) -> float:
    from keypointgan import pixels as P
    from keypointgan.evaluate import keypoint_error

    pix = P.norm_to_image_pixels(points_norm, size, es.hw)
    return float(np.mean(keypoint_error(pix, es.keypoints, es.hw)))


def _nets(preset: str, checkpoint: str | None):
    cfg = make_config(preset)
    sk = skeleton_preset("synthetic")
    m = cfg.model
    if checkpoint:
        from keypointgan import KeypointDetector

        det = KeypointDetector.from_checkpoint(checkpoint, device="cpu", flip_test=False)
        if det.size != m.size:
            raise SystemExit(f"--checkpoint is a {det.size}-px run, not {preset}")
        return det.phi.eval(), det.eta.eval(), det.skeleton, m.size
    torch.manual_seed(0)
    nets = build_networks(m, sk.num_keypoints, with_gan=False)  # the preset's layouts, as training builds them
    return nets["phi"].eval(), nets["eta"].eval(), sk, m.size


def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def _quantise(fp32: str, out: str, calib: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"images": calib[i : i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.it, None)

    pre = out + ".pre.onnx"
    import contextlib

    with contextlib.chdir(Path(out).parent):  # onnxruntime's quantisation leaves temporary files in the working folder
        _quantise_in_place(fp32, pre, out, Frames(), quant_pre_process, quantize_static, QuantFormat, QuantType)


def _quantise_in_place(fp32, pre, out, reader, quant_pre_process, quantize_static, QuantFormat, QuantType) -> None:
    quant_pre_process(fp32, pre, skip_symbolic_shape=True)
    quantize_static(
        pre, out, reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        nodes_to_exclude=None,
    )


def bench_preset(preset: str, args) -> dict:
    threads = torch.get_num_threads()
    phi, eta, sk, size = _nets(preset, args.checkpoint if args.checkpoint and preset == args.checkpoint_preset else None)
    trained = bool(args.checkpoint and preset == args.checkpoint_preset)
    data = Path(args.data) if (args.data and trained) else None
    x_eval, es = _frames(data, size, args.eval_frames if trained else min(args.eval_frames, 64))
    x_eval = x_eval.float()
    graph = DetectorGraph(phi, eta, flip_permutation=sk.flip_permutation, flip_test=False).eval()
    tmp = tempfile.mkdtemp(prefix="kpgan-infer-")
    from keypointgan.export import export_onnx

    from keypointgan import KeypointDetector

    det = KeypointDetector(phi=phi, eta=eta, skeleton=sk, size=size, device="cpu", flip_test=False)
    fp32_path = str(export_onnx(det, Path(tmp) / "fp32.onnx"))
    int8_path = str(Path(tmp) / "int8.onnx")
    t0 = time.perf_counter()
    _quantise(fp32_path, int8_path, x_eval[: args.calib_frames].numpy())
    quant_s = time.perf_counter() - t0
    s32, s8 = _ort_session(fp32_path, threads), _ort_session(int8_path, threads)

    import copy

    cl_phi, cl_eta = copy.deepcopy(phi).to(memory_format=torch.channels_last), copy.deepcopy(eta).to(memory_format=torch.channels_last)
    cl_graph = DetectorGraph(cl_phi, cl_eta, flip_permutation=sk.flip_permutation, flip_test=False).eval()
    t0 = time.perf_counter()
    compiled = torch.compile(DetectorGraph(copy.deepcopy(phi), copy.deepcopy(eta), flip_permutation=sk.flip_permutation, flip_test=False).eval())

    @torch.no_grad()
    def eager(x):
        return graph(torch.from_numpy(x))

    @torch.no_grad()
    def eager_cl(x):
        return cl_graph(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    @torch.no_grad()
    def comp(x):
        return compiled(torch.from_numpy(x))

    @torch.no_grad()
    def bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p, c = graph(torch.from_numpy(x))
        return p.float(), c.float()

    def ort32(x):
        return s32.run(None, {"images": x})

    def ort8(x):
        return s8.run(None, {"images": x})

    backends = {
        "torch eager fp32": eager,
        "torch eager fp32 channels-last": eager_cl,
        "torch.compile fp32": comp,
        "torch eager bf16 (autocast)": bf16,
        "onnxruntime fp32": ort32,
        "onnxruntime int8 (static QDQ)": ort8,
    }
    xb = np.ascontiguousarray(x_eval[:BATCH].numpy())
    if xb.shape[0] < BATCH:
        xb = np.concatenate([xb] * (BATCH // xb.shape[0] + 1))[:BATCH]
    x1 = np.ascontiguousarray(xb[:1])
    for f in backends.values():  # warm-up (compiles torch.compile for both shapes)
        f(xb), f(x1), f(x1)
    compile_s = time.perf_counter() - t0

    # accuracy: points on the evaluation frames for each backend
    ref_pts = None
    acc = {}
    for name, f in backends.items():
        pts = []
        for i in range(0, x_eval.shape[0], BATCH):
            p, _ = f(np.ascontiguousarray(x_eval[i : i + BATCH].numpy()))
            pts.append(torch.as_tensor(np.asarray(p)))
        pts = torch.cat(pts).float()
        if ref_pts is None:
            ref_pts = pts
        # mean distance to fp32's points in % of image size ([-1, 1] spans the image: /2 ×100)
        acc[name] = {"mean_shift_pct": float((pts - ref_pts).norm(dim=-1).mean() / 2 * 100)}
        if es is not None:
            acc[name]["error"] = _error(pts, es, size)

    lat = {n: [] for n in backends}
    thr = {n: [] for n in backends}
    for _ in range(args.rounds):
        for name, f in backends.items():
            ts, t_start = [], time.perf_counter()
            while len(ts) < 3 or (len(ts) < args.latency_calls and time.perf_counter() - t_start < args.seconds):
                t0 = time.perf_counter()
                f(x1)
                ts.append(time.perf_counter() - t0)
            lat[name].append(statistics.median(ts))
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                f(xb)
                n += BATCH
            thr[name].append(n / (time.perf_counter() - t0))
    base_err = acc["torch eager fp32"].get("error")
    rows = []
    for name in backends:
        a = acc[name]
        change = abs(a["error"] - base_err) if "error" in a else a["mean_shift_pct"]
        rows.append(
            {
                "backend": name,
                "latency_ms_batch1": 1000 * min(lat[name]),
                "throughput_img_s_batch64": max(thr[name]),
                "throughput_rounds": thr[name],
                "error": a.get("error"),
                "mean_shift_pct": a["mean_shift_pct"],
                "accuracy_change": change,
                "kept": (change <= INT8_RULE) if "int8" in name else True,
            }
        )
    eager_thr = rows[0]["throughput_img_s_batch64"]
    for r in rows:
        r["speedup_vs_eager"] = r["throughput_img_s_batch64"] / eager_thr
    return {
        "preset": preset,
        "size": size,
        "weights": f"trained checkpoint {args.checkpoint}" if trained else "random init (speed only; accuracy rule on the point shift)",
        "accuracy_frames": int(x_eval.shape[0]),
        "accuracy_measure": "error in % of image size on the test frames" if es is not None else "mean point shift against torch eager fp32, % of image size",
        "quantisation_s": quant_s,
        "warmup_and_compile_s": compile_s,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["cpu-64", "paper-128"])
    ap.add_argument("--checkpoint", help="a trained run (its preset given by --checkpoint-preset) for the accuracy rule")
    ap.add_argument("--checkpoint-preset", default="cpu-64")
    ap.add_argument("--data", help="videos with keypoints (the last tenth are the test videos, as in the demo)")
    ap.add_argument("--eval-frames", type=int, default=512)
    ap.add_argument("--calib-frames", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="per backend per round for the throughput")
    ap.add_argument("--latency-calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", default="benchmarks/results/inference.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    res = {
        "command": "python benchmarks/inference.py " + " ".join(os.sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or platform.platform()}), {args.threads} threads",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "batch": BATCH,
        "presets": [bench_preset(p, args) for p in args.presets],
    }
    for p in res["presets"]:
        print(f"\n{p['preset']} ({p['size']} px; {p['weights']}; accuracy: {p['accuracy_measure']} on {p['accuracy_frames']} frames)")
        print(f"| backend | batch-1 latency ms | batch-64 img/s | × eager fp32 | accuracy change | kept |")
        print("|---|---|---|---|---|---|")
        for r in p["rows"]:
            print(
                f"| {r['backend']} | {r['latency_ms_batch1']:.2f} | {r['throughput_img_s_batch64']:.0f} | {r['speedup_vs_eager']:.2f} | "
                f"{r['accuracy_change']:.3f} | {'yes' if r['kept'] else 'no (> 0.05)'} |"
            )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
