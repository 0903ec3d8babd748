"""Reports: an HTML page with loss and metric curves, sample grids and predictions.

``keypointgan report RUN`` (also run at the end of ``train`` and ``demo``) writes
``RUN/report.html`` next to its PNG pictures:

* the results (the demo's table, or the run's final held-out evaluation);
* loss curves and held-out error / PCK curves over steps;
* predicted keypoints on held-out frames beside the truth (when the run had
  evaluation data: ``RUN/eval_predictions.png``, or the demo's test sheet);
* sample grids over time (from ``RUN/samples/``);
* the run's history (starts, resumes, interruptions, skipped steps), the
  environment (versions, device, threads, host) and the seed and settings.

matplotlib is imported here only, at report time, never by the training loop.
"""

from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path

from .errors import InputError
from .io import atomic_write_text, check_writable

__all__ = ["read_log", "plot_curves", "write_report", "report_run"]

LOSS_KEYS = ("loss_rec", "loss_g_adv", "loss_d_real", "loss_d_fake", "loss_eta_prior", "loss_eta_self")


def report_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Write a run folder's report; a demo's run also gets the demo's metrics and test overlays."""
    run = Path(run)
    if not run.is_dir():
        raise InputError("run folder not found", run)
    metrics = overlays = None
    if run.name == "keypointgan" and (run.parent / "metrics.json").is_file():  # the demo's layout
        try:
            metrics = json.loads((run.parent / "metrics.json").read_text())
        except json.JSONDecodeError:
            raise InputError("metrics.json is not valid JSON", run.parent / "metrics.json") from None
        if (run.parent / "test_predictions.png").is_file():
            overlays = run.parent / "test_predictions.png"
    if overlays is None and (run / "eval_predictions.png").is_file():
        overlays = run / "eval_predictions.png"
    return write_report(run, out, metrics=metrics, overlays=overlays)


def read_log(run: str | Path) -> list[dict]:
    """The records of ``RUN/log.jsonl``, as the run's history finally went.

    A torn last line (a crash while logging) is skipped.  A resumed run replays the
    steps after its checkpoint, so at each ``start`` record the earlier records of
    later steps are dropped: what remains is what the final weights went through.
    """
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise InputError("no log.jsonl in this run folder", run)
    out: list[dict] = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("event") == "start" and out:
            s = rec.get("step", 0)
            out = [r for r in out if "event" in r or r.get("step", 0) <= s]
        out.append(rec)
    return out


def plot_curves(records: list[dict], path: str | Path) -> Path:
    """Loss curves, and held-out error and PCK over steps when the run evaluated, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if "loss_rec" in r and "event" not in r]
    evals = [r for r in records if "eval" in r]
    keys = [k for k in LOSS_KEYS if any(k in r for r in steps)]
    fig, axes = plt.subplots(1, 3 if evals else 1, figsize=(14 if evals else 6.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    for k in keys:
        xs = [r["step"] for r in steps if k in r]
        ys = [r[k] for r in steps if k in r]
        ax.plot(xs, ys, label=k.replace("loss_", ""), linewidth=1)
    ax.set_xlabel("step")
    ax.set_title("losses")
    if keys:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no training steps logged", ha="center", va="center", transform=ax.transAxes)
    if evals:
        xs = [r["step"] for r in evals]
        ax = axes[0, 1]
        ax.plot(xs, [r["eval"]["error"] for r in evals], "o-", label="error", markersize=3)
        ax.plot(xs, [r["eval"]["error_flip"] for r in evals], "s--", label="flip-corrected", markersize=3)
        ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("% of image size")
        ax.set_title("held-out error")
        ax = axes[0, 2]
        ax.plot(xs, [r["eval"].get("pck") for r in evals], "o-", color="tab:green", markersize=3)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.set_title(f"held-out PCK@{evals[-1]['eval'].get('pck_threshold', 0.05)}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _table(rows, header: bool = False) -> str:
    """An HTML table of ``rows`` (sequences of cells); with ``header`` the first row is a header."""
    out = []
    for i, r in enumerate(rows):
        tag = "th" if header and i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in r) + "</tr>")
    return "<table>" + "".join(out) + "</table>"


def _history(records: list[dict]) -> list[tuple[str, str]]:
    rows = []
    skipped = [r["step"] for r in records if r.get("event") == "skipped"]
    for r in records:
        ev = r.get("event")
        if ev == "start":
            rows.append(("resumed" if r.get("step") else "started", f"at step {r.get('step', 0)}"))
        elif ev == "pretrained":
            rows.append(("η pre-trained", f"{r.get('pretrain_steps')} steps, MSE {r.get('pretrain_mse', float('nan')):.2e}"))
        elif ev == "interrupted":
            rows.append(("interrupted", f"at step {r.get('step')}" + (" (checkpoint saved)" if r.get("saved") else "")))
        elif ev == "diverged":
            rows.append(("stopped: non-finite losses", f"at step {r.get('step')} ({r.get('nonfinite')})"))
        elif ev == "end":
            rows.append(("finished", f"at step {r.get('step')} after {r.get('time', 0) / 60:.1f} min of training"))
    if skipped:
        shown = ", ".join(map(str, skipped[:20])) + (" …" if len(skipped) > 20 else "")
        rows.append(("skipped steps (NaN/Inf)", f"{len(skipped)}: {shown}"))
    return rows


def write_report(run: str | Path, out: str | Path | None = None, *, metrics: dict | None = None, overlays: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run folder: results, curves, predictions, samples, history, environment, settings."""
    run = Path(run)
    out = Path(out) if out is not None else run / "report.html"
    records = read_log(run)
    check_writable(out)  # before the curves are drawn next to it
    starts = [r for r in records if r.get("event") == "start"]
    start = starts[-1] if starts else {}
    curves = plot_curves(records, out.parent / f"{out.stem}_curves.png")
    samples = sorted((run / "samples").glob("step_*.png"))
    if len(samples) > 4:
        samples = [samples[round(i * (len(samples) - 1) / 3)] for i in range(4)]

    def rel(p) -> str:
        return html.escape(Path(os.path.relpath(p, out.parent)).as_posix())

    parts = [
        "<!doctype html><meta charset='utf-8'><title>keypointgan report</title>",
        "<style>body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 1em}img{max-width:100%}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "pre{background:#f6f6f6;padding:.5em;max-height:30em;overflow:auto}</style>",
        f"<h1>keypointgan run: {html.escape(str(run))}</h1>",
    ]
    final = next((r["eval"] for r in reversed(records) if "eval" in r), None)
    if metrics:
        parts.append("<h2>Results (% of image size, unseen test videos)</h2>")
        rows = [("method", "error", "flip-corrected", f"PCK@{metrics.get('keypointgan', {}).get('pck_threshold', 0.05)}")]
        for k in ("keypointgan", "mean_pose", "supervised"):
            if k in metrics:
                m = metrics[k]
                rows.append((k, f"{m['error']:.2f}", f"{m['error_flip']:.2f}", f"{m['pck']:.3f}"))
                if "single_pass" in m:
                    s = m["single_pass"]
                    rows.append((f"{k}, one pass (no flip test)", f"{s['error']:.2f}", f"{s['error_flip']:.2f}", f"{s['pck']:.3f}"))
        parts.append(_table(rows, header=True))
    elif final:
        parts.append("<h2>Held-out evaluation (last, % of image size)</h2>")
        parts.append(_table([("error", f"{final['error']:.2f}"), ("flip-corrected", f"{final['error_flip']:.2f}"),
                             (f"PCK@{final.get('pck_threshold', 0.05)}", f"{final['pck']:.3f}"), ("frames", final.get("n_frames"))]))
    parts.append(f"<h2>Curves</h2><img src='{rel(curves)}' alt='loss and error curves'>")
    if overlays:
        parts.append("<h2>Predictions on held-out frames</h2><p>each pair: predicted keypoints (left), the truth (right); "
                     f"left side orange, right side blue</p><img src='{rel(overlays)}' alt='held-out predictions' style='max-width:700px'>")
    hist = _history(records)
    if hist:
        parts.append("<h2>History</h2>" + _table(hist))
    env = dict(start.get("environment") or {})
    if not env:  # a log from before environments were recorded: say where the report was made instead
        env = {"device": start.get("device"), "version": start.get("version"), "python (report)": platform.python_version()}
    env = {"data": start.get("data"), "evaluation data": start.get("eval_data"), "prior": start.get("prior"),
           "seed": start.get("seed", (start.get("config") or {}).get("seed")), **env, "reconstruction loss": start.get("rec_loss")}
    parts.append("<h2>Environment</h2>" + _table([(k, v) for k, v in env.items() if v is not None]))
    if samples:
        parts.append("<h2>Samples over time</h2><p>columns: x, Φ(x), β(η(Φ(x))) with keypoints, x′, x̂ = Ψ(β(η(Φ(x))), x′)</p>"
                     "<div style='display:flex;gap:1em;flex-wrap:wrap'>")
        for p in samples:
            parts.append(f"<figure style='margin:0;flex:1;min-width:200px;max-width:270px'><figcaption>{html.escape(p.stem.replace('_', ' '))}"
                         f"</figcaption><img src='{rel(p)}' alt='{html.escape(p.stem)}' style='width:100%;image-rendering:pixelated'></figure>")
        parts.append("</div>")
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(start.get("config", {}), indent=2)) + "</pre>")
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
