"""Reports: the HTML page and its pictures; matplotlib stays out of the training loop."""

import json
import re
import subprocess
import sys

import numpy as np
import yaml

from conftest import tiny_config
from keypointgan.cli import main
from keypointgan.report import read_log


def test_training_loop_never_imports_matplotlib(tiny_data, tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import keypointgan, keypointgan.training, keypointgan.api, keypointgan.cli, keypointgan.demo, keypointgan.detector
assert "matplotlib" not in sys.modules, "imported by a module"
from keypointgan.config import TrainConfig
from keypointgan.data import Layout, load_prior
from keypointgan.api import make_eval_set, make_loader
from keypointgan.training import TrainState, fit
cfg = TrainConfig.from_dict({tiny_config(steps=2, pretrain_steps=2, sample_every=1, eval_every=1).to_dict()!r})
lay = Layout({str(tiny_data)!r})
es = make_eval_set(lay, lay.videos[-1:], cfg.model.size, 4)
loader, prior = make_loader(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, "cpu")
fit(TrainState(cfg, lay.skeleton, "cpu"), loader, prior, {str(tmp_path / "run")!r}, eval_set=es, progress=False)
assert "matplotlib" not in sys.modules, "imported by the training loop"
import keypointgan.report
keypointgan.report.report_run({str(tmp_path / "run")!r})
assert "matplotlib" in sys.modules  # the check can fail: the report does import it
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "ok", r.stderr
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "eval_predictions.png").is_file()


def test_train_writes_a_report_with_curves_predictions_and_environment(tiny_data, tmp_path, capsys):
    from PIL import Image

    import torch

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(sample_every=2, eval_every=2, ckpt_every=2).to_dict()))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stale = run / "checkpoints" / ".latest.pt.x1y2.tmp"  # left by a crash during a save
    stale.write_bytes(b"half a checkpoint")
    threads = torch.get_num_threads()
    assert main(["train", "--config", str(cfg), "--data", str(tiny_data), "--eval-data", str(tiny_data), "--out", str(run),
                 "--steps", "4", "--seed", "3", "--quiet"]) == 0
    torch.set_num_threads(threads)
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out
    assert not stale.exists()
    page = (run / "report.html").read_text()
    # every picture the page shows exists and is a real PNG with content
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert "report_curves.png" in imgs and "eval_predictions.png" in imgs
    assert [i for i in imgs if i.startswith("samples/")] == ["samples/step_0000002.png", "samples/step_0000004.png"]
    for src in imgs:
        arr = np.asarray(Image.open(run / src).convert("RGB"))
        assert arr.shape[0] > 50 and arr.std() > 10, src
    # three panels of curves (losses, error, PCK) side by side
    assert Image.open(run / "report_curves.png").size == (1400, 380)
    for text in ("<h2>Curves</h2>", "Predictions on held-out frames", "Samples over time", "<td>seed</td><td>3</td>",
                 f"<td>torch</td><td>{torch.__version__}</td>", "<td>threads</td>", "<td>host</td>", "<td>device</td><td>cpu</td>",
                 "Held-out evaluation", "<td>finished</td><td>at step 4"):
        assert text in page, text
    log = read_log(run)
    final = [r for r in log if r.get("final")][0]["eval"]
    assert f"<td>error</td><td>{final['error']:.2f}</td>" in page
    assert main(["report", str(run), "--out", str(tmp_path / "again.html")]) == 0
    again = (tmp_path / "again.html").read_text()
    assert "src='run/eval_predictions.png'" in again and (tmp_path / "again_curves.png").is_file()


def test_report_survives_torn_log_and_replayed_steps(tmp_path):
    """A crash after step 6 (checkpoint at 4), a resume from 4 to 8: the report shows each step once."""
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"event": "start", "step": 0, "seed": 1, "config": {"seed": 1}}]
    recs += [{"step": s, "loss_rec": 1.0 / s} for s in range(1, 7)]
    recs += [{"step": 4, "eval": {"error": 9.0, "error_flip": 8.0, "pck": 0.1}}, {"step": 6, "eval": {"error": 99.0, "error_flip": 99.0, "pck": 0.0}}]
    recs += [{"event": "start", "step": 4, "seed": 1}]
    recs += [{"step": s, "loss_rec": 2.0 / s} for s in range(5, 9)]
    recs += [{"event": "skipped", "step": 7, "nonfinite": "loss_rec=nan"}, {"event": "end", "step": 8, "time": 60.0}]
    text = "\n".join(json.dumps(r) for r in recs) + '\n{"step": 9, "loss_r'  # torn by the crash
    (run / "log.jsonl").write_text(text)
    log = read_log(run)
    steps = [r["step"] for r in log if "loss_rec" in r]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["loss_rec"] for r in log if "loss_rec" in r][4] == 2.0 / 5  # the replayed value, not the lost one
    assert [r["eval"]["error"] for r in log if "eval" in r] == [9.0]
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<td>resumed</td><td>at step 4</td>" in page and "<td>skipped steps (NaN/Inf)</td><td>1: 7</td>" in page
    assert "<td>seed</td><td>1</td>" in page
