"""Reports: an HTML page with loss and metric curves, sample grids and predictions.

matplotlib is imported here only, at report time — never in the training loop.
"""

from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_write_text
from .viz import overlay_sheet  # noqa: F401 - re-exported (the demo draws its sheet with it)

__all__ = ["read_log", "plot_curves", "write_report", "report_run"]


def report_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Write a run folder's report; a demo's run also gets the demo's metrics and test overlays."""
    run = Path(run)
    metrics = overlays = None
    if run.name == "keypointgan" and (run.parent / "metrics.json").is_file():  # the demo's layout
        try:
            metrics = json.loads((run.parent / "metrics.json").read_text())
        except json.JSONDecodeError:
            raise InputError("metrics.json is not valid JSON", run.parent / "metrics.json") from None
        if (run.parent / "test_predictions.png").is_file():
            overlays = run.parent / "test_predictions.png"
    return write_report(run, out, metrics=metrics, overlays=overlays)


def read_log(run: str | Path) -> list[dict]:
    """The records of ``RUN/log.jsonl`` (a torn last line, from a crash, is skipped)."""
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise InputError("no log.jsonl in this run folder", run)
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_curves(records: list[dict], path: str | Path) -> Path:
    """Loss curves and evaluation error over steps, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if "loss_rec" in r]
    evals = [r for r in records if "eval" in r]
    keys = [k for k in ("loss_rec", "loss_g_adv", "loss_d_real", "loss_d_fake", "loss_eta_prior", "loss_eta_self", "loss_consistency") if any(k in r for r in steps)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k in keys:
        xs = [r["step"] for r in steps if k in r]
        ys = [r[k] for r in steps if k in r]
        axes[0].plot(xs, ys, label=k.replace("loss_", ""))
    axes[0].set_xlabel("step")
    axes[0].set_title("losses")
    if keys:
        axes[0].set_yscale("log")
        axes[0].legend(fontsize=7)
    if evals:
        xs = [r["step"] for r in evals]
        axes[1].plot(xs, [r["eval"]["error"] for r in evals], "o-", label="error")
        axes[1].plot(xs, [r["eval"]["error_flip"] for r in evals], "s--", label="flip-corrected")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("% of image size")
    axes[1].set_title("held-out error")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(run: str | Path, out: str | Path | None = None, *, metrics: dict | None = None, overlays: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run folder: settings, curves, latest sample grids, overlays."""
    run = Path(run)
    out = Path(out) if out is not None else run / "report.html"
    records = read_log(run)
    start = next((r for r in records if r.get("event") == "start"), {})
    curves = plot_curves(records, out.parent / "report_curves.png")
    samples = sorted((run / "samples").glob("*.png"))
    picks = [samples[i] for i in sorted({0, len(samples) // 2, len(samples) - 1})] if samples else []
    parts = [
        "<!doctype html><meta charset='utf-8'><title>keypointgan report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>",
        f"<h1>keypointgan run: {html.escape(str(run))}</h1>",
    ]
    if metrics:
        parts.append("<h2>Results (% of image size)</h2><table><tr><th>method</th><th>error</th><th>flip-corrected</th><th>PCK@0.05</th></tr>")
        for k in ("keypointgan", "mean_pose", "supervised"):
            if k in metrics:
                m = metrics[k]
                parts.append(f"<tr><td>{k}</td><td>{m['error']:.2f}</td><td>{m['error_flip']:.2f}</td><td>{m['pck']:.3f}</td></tr>")
        parts.append("</table>")
    parts.append(f"<h2>Curves</h2><img src='{html.escape(curves.name)}'>")
    if overlays:
        rel = os.path.relpath(overlays, out.parent)
        parts.append(f"<h2>Predictions on held-out frames (left: predicted, right: true)</h2><img src='{html.escape(rel)}'>")
    for p in picks:
        rel = os.path.relpath(p, out.parent)
        parts.append(f"<h3>Samples at {html.escape(p.stem)}</h3><p>columns: x, Φ(x), β(η(Φ(x))) with keypoints, x′, x̂</p><img src='{html.escape(str(rel))}'>")
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": start.get("device"), "version": start.get("version"), "reconstruction loss": start.get("rec_loss")}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    parts.append("<h2>Environment</h2><pre>" + html.escape(json.dumps(env, indent=2)) + "</pre>")
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(start.get("config", {}), indent=2)) + "</pre>")
    atomic_write_text(out, "\n".join(parts))
    return out
