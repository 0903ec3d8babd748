"""Reliability and first use: non-finite settings and weights, one writer per run, corrupt videos in
predict, config files that layer on presets, the viewer's port, outputs checked first, the run's data
recorded, one-line warnings.  One-line errors of the CLI are in test_robustness.py's table; these
are the cases that need more than a line to check."""

import json
import math
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import TinyRun, tiny_config
from keypointgan.cli import main
from keypointgan.errors import InputError, TrainingDiverged


def run_main(argv, capsys):
    """``keypointgan ARGV`` in-process: (exit code, stdout, stderr lines)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


# ------------------------------------------------------------------ non-finite settings and weights
@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--lr-disc", "-inf"), ("--w-rec", "nan"), ("--w-gan", "inf"),
                                        ("--grad-clip", "nan"), ("--ema-decay", "nan"), ("--model.sigma", "inf")])
def test_non_finite_settings_are_refused_before_anything_is_written(flag, value, tiny_data, tmp_path, capsys):
    code, _, err = run_main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--steps", "1", "--quiet", f"{flag}={value}"], capsys)
    name = flag[2:].replace("-", "_")
    assert code == 2 and err == [f"keypointgan train: error: {name} must be finite, got {float(value)}"], err
    assert not (tmp_path / "run").exists()


def test_every_float_field_refuses_nan_and_inf():
    import dataclasses
    import typing

    from keypointgan.config import ModelConfig, TrainConfig, make_config

    for cls, prefix in ((TrainConfig, ""), (ModelConfig, "model.")):
        for name, hint in typing.get_type_hints(cls).items():
            if "float" not in str(hint):
                continue
            default = getattr(make_config("cpu-64") if cls is TrainConfig else make_config("cpu-64").model, name)
            for bad in (math.nan, math.inf, -math.inf):
                v = tuple(bad for _ in default) if isinstance(default, tuple) else bad
                over = {"model": {name: v}} if prefix else {name: v}
                with pytest.raises(InputError, match=f"^{prefix}{name} must be finite"):
                    make_config("cpu-64", **over).validate()
    assert dataclasses.is_dataclass(TrainConfig)


def test_a_checkpoint_is_never_written_with_non_finite_weights(tiny_data, tmp_path):
    from keypointgan.training.loop import save_state

    r = TinyRun(tiny_data, tmp_path / "run", pretrain_steps=0)
    path = tmp_path / "latest.pt"
    save_state(r.state, r.loader, path)
    before = path.read_bytes()
    with torch.no_grad():
        next(r.state.nets["phi"].parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="weight tensors are not finite .*the last checkpoint .* is intact"):
        save_state(r.state, r.loader, path)
    assert path.read_bytes() == before


# ------------------------------------------------------------------ config files layer on presets
def test_a_two_line_config_file_layers_on_the_preset(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lr: 0.001\nsteps: 3\n")
    code, out, err = run_main(["train", "--print-config", "--config", str(tmp_path / "c.yaml")], capsys)
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["lr"] == 0.001 and cfg["steps"] == 3 and cfg["preset"] == "cpu-64"
    assert cfg["lr_disc"] == 5e-4 and cfg["model"]["disc_layers"] == 2  # the rest is cpu-64's
    # the file's own preset: key, or --preset, names the base; the flags go on top
    (tmp_path / "p.yaml").write_text("preset: paper-128\nlr: 0.001\n")
    code, out, _ = run_main(["train", "--print-config", "--config", str(tmp_path / "p.yaml"), "--batch-size", "8"], capsys)
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["model"]["size"] == 128 and cfg["gap"] == [1, 1000] and cfg["lr"] == 0.001 and cfg["batch_size"] == 8
    code, out, _ = run_main(["train", "--print-config", "--preset", "release", "--config", str(tmp_path / "c.yaml")], capsys)
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["preset"] == "release" and cfg["vgg_relu"] is False and cfg["lr"] == 0.001
    code, _, err = run_main(["train", "--print-config", "--preset", "release", "--config", str(tmp_path / "p.yaml")], capsys)
    assert code == 2 and err == [f"keypointgan train: error: {tmp_path / 'p.yaml'}: the file names preset 'paper-128' but --preset is 'release'; give one"]


# ------------------------------------------------------------------ one writer per run folder
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_run_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path):
    from keypointgan.io import LOCK_NAME, run_lock

    run = tmp_path / "run"
    with run_lock(run) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(InputError, match=rf"run: in use by process {os.getpid()} on .*another keypointgan train"):
            with run_lock(run):
                pass
    assert not (run / LOCK_NAME).exists()  # released on exit
    (run / LOCK_NAME).write_text(f"{_dead_pid()} {socket.gethostname()}\n")  # its process is gone: stale
    with run_lock(run):
        assert (run / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    (run / LOCK_NAME).write_text("4242 some-other-host\n")  # another host's PIDs cannot be checked
    with pytest.raises(InputError, match="in use by process 4242 on host some-other-host"):
        with run_lock(run):
            pass


def test_a_second_train_into_a_run_in_use_is_refused_with_one_line(tiny_data, tmp_path, capsys):
    import subprocess
    import sys

    from keypointgan.io import LOCK_NAME

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_NAME).write_text(f"{holder.pid} {socket.gethostname()}\n")
        for extra in ([], ["--resume"]):
            code, _, err = run_main(["train", "--data", str(tiny_data), "--out", str(run), "--steps", "1", "--quiet", "--no-report",
                                     *extra, "--config", _tiny_config_file(tmp_path)], capsys)
            if extra:  # nothing to resume yet: that is said first
                assert code == 2 and "nothing to resume" in err[0]
                continue
            assert code == 2 and len(err) == 1, err
            assert err[0].startswith(f"keypointgan train: error: {run}: in use by process {holder.pid} on ")
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def _tiny_config_file(tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(pretrain_steps=0).to_dict()))
    return str(path)


# ------------------------------------------------------------------ damaged video, NaN checkpoints, JSON
class _Scripted:
    """A detector with known outputs (the viewer's tests use the same idea)."""

    from keypointgan import Skeleton

    skeleton = Skeleton(keypoints=["a", "b"], limbs=[("a", "b")])

    def __init__(self, nan=False):
        self.nan = nan

    def predict_with_confidence(self, images, batch_size=64):
        n = len(images) if isinstance(images, list) else 1
        pts = np.full((n, 2, 2), np.nan if self.nan else 3.0, np.float32)
        conf = np.full((n, 2), np.nan if self.nan else 0.5, np.float32)
        return (pts, conf) if isinstance(images, list) else (pts[0], conf[0])


def test_predict_on_a_damaged_video_that_repeats_frames_skips_them_with_a_warning(tmp_path, monkeypatch):
    import warnings

    from keypointgan.predict import predict_video
    from keypointgan.video import VideoFrameWarning, VideoReader, write_video

    write_video(tmp_path / "v.mkv", [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(12)], fps=10)
    frames = VideoReader.frames

    def damaged(self, start=0):  # what a stream with zeroed bytes decodes to: a repeat and a step back, then on
        for t, img in frames(self, start):
            yield t, img
            if t in (4, 8):
                yield t - 1, img

    monkeypatch.setattr(VideoReader, "frames", damaged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = predict_video(_Scripted(), tmp_path / "v.mkv", tmp_path / "out", smooth=3, batch_size=5)
    assert res["frames"] == 12 and res["skipped"] == []
    assert [str(w.message) for w in caught if issubclass(w.category, VideoFrameWarning)] == [
        f"{tmp_path / 'v.mkv'}: frame {t} decoded again out of order (damaged data); the repeat is dropped" for t in (3, 7)]
    rec = json.loads(res["json"].read_text())
    assert [f["frame"] for f in rec["frames"]] == list(range(12))


def test_prediction_json_is_valid_even_for_non_finite_outputs(tmp_path):
    from keypointgan.io import write_image
    from keypointgan.predict import predict_paths, predict_video
    from keypointgan.video import write_video

    write_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    predict_paths(_Scripted(nan=True), [tmp_path / "x.png"], tmp_path / "out", overlay=False)
    write_video(tmp_path / "v.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3, fps=10)
    res = predict_video(_Scripted(nan=True), tmp_path / "v.mp4", tmp_path / "out", overlay=False)

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))

    assert strict((tmp_path / "out" / "x.json").read_text())["keypoints"]["a"] == [None, None]
    assert strict(res["json"].read_text())["frames"][0]["confidence"] == {"a": None, "b": None}


def test_a_checkpoint_with_nan_weights_is_named_in_one_line(one_step_run, tiny_data, tmp_path, capsys):
    from keypointgan.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(one_step_run / "checkpoints" / "latest.pt")
    for part in ("nets", "ema"):
        for k, t in (state.get(part) or {}).get("eta", {}).items():
            if t.is_floating_point():
                t.fill_(float("nan"))
    save_checkpoint(state, tmp_path / "nan.pt")
    (tmp_path / "x.png").write_bytes((tiny_data / "videos" / "v0000" / "000000.png").read_bytes())
    for argv in (["evaluate", "--data", str(tiny_data), "--checkpoint", str(tmp_path / "nan.pt"), "--quiet"],
                 ["predict", "--checkpoint", str(tmp_path / "nan.pt"), str(tmp_path / "x.png"), "--out", str(tmp_path / "pred"), "--quiet"]):
        code, _, err = run_main(argv, capsys)
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"keypointgan {argv[0]}: error: {tmp_path / 'nan.pt'}: the checkpoint's weights are not finite (NaN/Inf in ")
    assert not (tmp_path / "pred").exists()


# ------------------------------------------------------------------ the viewer's port
def test_view_on_a_port_in_use_is_one_line_before_any_url(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_main(["view", str(tmp_path / "p.json"), "--port", str(port)], capsys)
    assert code == 2 and out == ""
    assert err == [f"keypointgan view: error: cannot serve on 127.0.0.1:{port}: in use by another program "
                   "(choose another with --port, or --port 0 for any free one)"]


# ------------------------------------------------------------------ skeletons: unlearnable keypoints, names
def test_keypoints_in_no_limb_are_named_in_a_warning(tiny_data, tmp_path, capsys):
    d = tmp_path / "d"
    shutil.copytree(tiny_data, d)
    sk = d / "skeleton.yaml"
    sk.write_text(sk.read_text().replace("- [head, neck]\n", "", 1))
    assert "[head, neck]" not in sk.read_text()
    code, _, err = run_main(["train", "--data", str(d), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "64"], capsys)
    assert err[0] == "keypointgan: warning: skeleton 'synthetic': keypoint(s) in no limb cannot be learned (only limbs are rendered): head"
    assert code == 2 and err[1].startswith("keypointgan train: error: the training videos hold")


def test_a_skeleton_name_is_a_label_not_part_of_the_structure(one_step_run, tiny_data, tmp_path, capsys):
    from keypointgan import Skeleton

    d = tmp_path / "d"
    shutil.copytree(tiny_data, d)
    sk = Skeleton.from_yaml(d / "skeleton.yaml")
    renamed = Skeleton(keypoints=sk.keypoints, limbs=[(sk.keypoints[a], sk.keypoints[b]) for a, b in sk.limbs],
                       symmetric=[(sk.keypoints[a], sk.keypoints[b]) for a, b in sk.symmetric], name="people")
    renamed.to_yaml(d / "skeleton.yaml")
    assert renamed == sk and renamed.name != sk.name
    code, out, err = run_main(["evaluate", "--data", str(d), "--checkpoint", str(one_step_run), "--quiet"], capsys)
    assert code == 0, err
    assert "overall" in out


# ------------------------------------------------------------------ resume: evaluation data kept, one list, nothing added
def _records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_resume_keeps_the_evaluation_data_records_the_data_and_adds_nothing_when_nothing_trains(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", str(tiny_data), "--out", str(run), "--quiet", "--no-report", "--config", _tiny_config_file(tmp_path)]
    assert run_main(base + ["--steps", "2", "--eval-data", str(tiny_data)], capsys)[0] == 0
    start = _records(run)[0]
    assert start["event"] == "start" and start["data"] == str(tiny_data.resolve()) and start["eval_data"] == str(tiny_data.resolve())
    # a resume without --eval-data evaluates on the run's evaluation data; how often may change
    code, _, err = run_main(base[:-2] + ["--resume", "--steps", "3", "--eval-every", "3", "--log-every", "3", "--ckpt-every", "3"], capsys)
    assert code == 0, err
    recs = _records(run)
    assert [r["step"] for r in recs if "eval" in r and not r.get("final")] == [2, 3] and recs[-1]["event"] == "end"
    # a resume that trains nothing leaves the run as it was
    before = (run / "log.jsonl").read_bytes()
    code, _, err = run_main(base[:-2] + ["--resume", "--steps", "3"], capsys)
    assert code == 0 and any("nothing to train" in line for line in err)
    assert (run / "log.jsonl").read_bytes() == before
    # the report names the data
    from keypointgan.report import report_run

    assert str(tiny_data.resolve()) in report_run(run).read_text()


def test_the_list_of_what_resume_may_change_is_the_code_s():
    from keypointgan.config import RUNTIME_FIELDS

    sub = next(a for a in __import__("keypointgan.cli", fromlist=["build_parser"]).build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices["train"].format_help().split())
    assert "only these may change: " + ", ".join("--" + f.replace("_", "-") for f in RUNTIME_FIELDS) in text.replace("- ", "-")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "robustness.md").read_text()
    line = next(l for l in doc.splitlines() if l.startswith("<!-- resume-fields -->"))
    assert line.split("-->", 1)[1].strip() == ", ".join(f"`{f}`" for f in RUNTIME_FIELDS)


# ------------------------------------------------------------------ warnings and errors on lines of their own
def test_errors_after_a_progress_bar_and_warnings_are_lines_of_their_own(tmp_path, capsys, monkeypatch):
    import warnings

    from tqdm.auto import tqdm

    import keypointgan.cli as cli

    def failing(args):
        bar = tqdm(total=10, desc="train")
        bar.update(3)
        warnings.warn("v.mp4: frame 3 could not be decoded; skipped", UserWarning)
        raise InputError("something the user can fix", "x.yaml")

    monkeypatch.setattr(cli, "cmd_report", failing)
    code, _, err = run_main(["report", str(tmp_path)], capsys)
    assert code == 2
    assert "keypointgan: warning: v.mp4: frame 3 could not be decoded; skipped" in err
    assert err[-1] == "keypointgan report: error: x.yaml: something the user can fix"
    assert not any("warnings.warn" in line or "UserWarning" in line for line in err)


# ------------------------------------------------------------------ the project's predict runs both kinds of export
def test_predict_runs_an_export_with_preprocessing_like_one_without(one_step_run, tiny_data, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from keypointgan import KeypointDetector
    from keypointgan.io import read_image

    img = tiny_data / "videos" / "v0000" / "000000.png"
    for name, extra in (("plain.onnx", []), ("pre.onnx", ["--preprocess"])):
        assert run_main(["export", str(one_step_run), "--out", str(tmp_path / name), "--no-flip-test", *extra], capsys)[0] == 0
    pre, plain = (KeypointDetector.from_onnx(tmp_path / n) for n in ("pre.onnx", "plain.onnx"))
    frames = [read_image(img), np.repeat(np.repeat(read_image(img), 3, 0), 2, 1)]  # two sizes
    p1, c1 = pre.predict_with_confidence(frames)
    p2, c2 = plain.predict_with_confidence(frames)
    np.testing.assert_allclose(p1, p2, atol=1e-3)
    np.testing.assert_allclose(c1, c2, atol=1e-4)
    assert pre.predict_grid_points(np.zeros((2, 3, pre.size, pre.size), np.float32)).shape == (2, 15, 2)
    code, _, err = run_main(["predict", "--model", str(tmp_path / "pre.onnx"), str(img), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "out" / "000000.json").read_text())
    np.testing.assert_allclose([rec["keypoints"][n] for n in pre.skeleton.keypoints], p2[0], atol=1e-3)


# ------------------------------------------------------------------ pictures that read on their own
def test_sample_grids_carry_their_column_labels(tmp_path, monkeypatch):
    from keypointgan import Skeleton
    from keypointgan import viz
    from keypointgan.io import read_image

    sk = Skeleton(keypoints=["a", "b"], limbs=[("a", "b")])
    x = torch.zeros(2, 3, 16, 16)
    sheet = viz.save_sample_grid(tmp_path / "s.png", x, x[:, :1], torch.zeros(2, 2, 2), x, x, sk, scale=2)
    assert np.array_equal(read_image(tmp_path / "s.png"), sheet)
    plain = viz.grid([[np.full((32, 32, 3), 128, np.uint8)] * 5] * 2)
    top = sheet.shape[0] - plain.shape[0]
    assert sheet.shape[1] == plain.shape[1] and top >= 8  # a band above the columns, as wide as the picture
    band = sheet[:top].min(-1) < 100  # dark text on white
    for j in range(5):  # every column has its label above it, and nothing else is written there
        assert band[:, 2 + j * 34 : 2 + j * 34 + 32].any(), j
    assert not band[:, :2].any()
    # without a font that has Greek letters the labels are spelt in ASCII
    assert viz._label_font()[1]("β(η(Φ(x)))") == "β(η(Φ(x)))"
    monkeypatch.setattr(Path, "is_file", lambda self: False)
    font, spell = viz._label_font()
    assert spell("β(η(Φ(x)))") == "beta(eta(Phi(x)))" and spell("x′") == "x'" and spell("x̂") == "x^"


# ------------------------------------------------------------------ confidence falls for a collapsed model
def test_confidence_falls_when_the_pose_has_collapsed(one_step_run, tiny_data):
    from keypointgan import KeypointDetector
    from keypointgan.pixels import spread_factor
    from keypointgan.inference import predict_points_confidence
    from keypointgan.io import read_image

    one_px = np.zeros((1, 15, 2))
    one_px[0, :, 0] = np.linspace(-2, 2, 15) / 31  # 15 keypoints over 2 px of a 32-px grid (31 px from -1 to 1): ±1 px from the centroid
    np.testing.assert_allclose(spread_factor(one_px, 32), [[1 - np.exp(-(1 / 1.5) ** 2)]], rtol=1e-5)
    wide = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 15, 2))
    assert spread_factor(wide, 32).min() > 0.999 and spread_factor(np.zeros((2, 15, 2)), 32).max() == 0.0
    det = KeypointDetector.from_checkpoint(one_step_run, device="cpu")
    last = [m for m in det.eta.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()  # every heatmap flat: every keypoint at the centre, the state of a collapsed run
    frames = [read_image(tiny_data / "videos" / "v0000" / f"{i:06d}.png") for i in range(4)]
    x, _, _ = det._prepare(frames)
    _, agreement = predict_points_confidence(det.phi, det.eta, x, flip_permutation=det.skeleton.flip_permutation)
    assert agreement.min() > 0.99  # the mirror image agrees: the confidence before read ~1
    _, conf = det.predict_with_confidence(frames)
    assert conf.max() < 0.01
