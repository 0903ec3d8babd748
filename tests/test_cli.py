import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config
from keypointgan.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "keypointgan.cli", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda d: d.mkdir(), ["train", "--data", "{d}", "--out", "{d}/run", "--steps", "1"], "no videos/ folder"),
        (lambda d: None, ["evaluate", "--checkpoint", "{d}/nope.pt", "--data", "{d}"], "checkpoint not found"),
        (lambda d: (d.mkdir(), (d / "x.pt").write_bytes(b"garbage")), ["evaluate", "--checkpoint", "{d}/x.pt", "--data", "{d}"], "not a readable checkpoint"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, setup, args, message):
    d = tmp_path / "ds"
    setup(d)
    r = run_cli(*[a.format(d=d) for a in args])
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_skeleton_prior_and_images_in_cli(tiny_data, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(tiny_data, d)
    (d / "skeleton.yaml").write_text((d / "skeleton.yaml").read_text().replace("[head, neck]", "[head, nose]", 1))
    r = run_cli("train", "--data", d, "--out", tmp_path / "run", "--steps", "1")
    assert r.returncode == 2 and "skeleton.yaml" in r.stderr and "unknown keypoint 'nose'" in r.stderr
    shutil.copy(tiny_data / "skeleton.yaml", d / "skeleton.yaml")
    np.save(d / "prior.npy", np.zeros((5, 3, 2), np.float32))
    r = run_cli("train", "--data", d, "--out", tmp_path / "run", "--steps", "1")
    assert r.returncode == 2 and "prior.npy" in r.stderr and "K=3" in r.stderr
    r = run_cli("make-synthetic", d)
    assert r.returncode == 2 and "not empty" in r.stderr
    r = run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--steps", "-3")
    assert r.returncode == 2 and "steps must be >= 0, got -3" in r.stderr


def test_cli_train_evaluate_predict(tiny_data, tmp_path, capsys, monkeypatch):
    import keypointgan.config as C

    # the CLI's preset, shrunk to the tiny test widths
    monkeypatch.setitem(C.PRESETS, "cpu-64", {**tiny_config().to_dict(), "preset": "cpu-64"} | {"steps": None})
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--steps", "2", "--quiet"]) == 0
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tiny_data), "--json", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert {"error", "error_flip", "pck", "n_frames"} <= set(m) and m["n_frames"] == 32
    assert m["error_flip"] <= m["error"]
    printed = capsys.readouterr().out
    assert "overall" in printed and "v0003" in printed
    pred = tmp_path / "pred"
    frames = tiny_data / "videos" / "v0000"
    assert main(["predict", "--checkpoint", str(run), str(frames), "--out", str(pred), "--quiet"]) == 0
    js = sorted(pred.glob("*.json"))
    assert len(js) == 8 and len(list(pred.glob("*_overlay.png"))) == 8
    rec = json.loads(js[0].read_text())
    assert list(rec["keypoints"])[:2] == ["head", "neck"] and rec["width"] == 32


def test_train_and_evaluate_on_a_foreign_generic_dataset(tmp_path, monkeypatch):
    """Another skeleton, other image content (JPEG, 40×48 frames), no keypoints/ in the training folder."""
    import keypointgan.config as C
    from keypointgan import Skeleton
    from keypointgan.io import write_image

    sk = Skeleton(keypoints=["nose", "tail", "l_ear", "r_ear"], limbs=[("nose", "tail"), ("nose", "l_ear"), ("nose", "r_ear")],
                  symmetric=[("l_ear", "r_ear")], name="critter")
    rng = np.random.default_rng(0)

    def make(root, with_kp):
        sk.to_yaml(root / "skeleton.yaml")
        for v in range(3):
            kps = []
            for t in range(6):
                img = np.full((40, 48, 3), 30 + 40 * v, np.uint8)
                x, y = 10 + 4 * t, 12 + v * 5
                img[y : y + 8, x : x + 12] = (200, 180, 40)
                write_image(root / "videos" / f"clip_{v}" / f"img{t}.jpg", img)
                kps.append([[x, y], [x + 11, y + 7], [x, y + 7], [x + 11, y]])
            if with_kp:
                (root / "keypoints").mkdir(exist_ok=True)
                np.save(root / "keypoints" / f"clip_{v}.npy", np.array(kps, np.float32))
        np.save(root / "prior.npy", rng.uniform(0.2, 0.8, (50, 4, 2)).astype(np.float32))

    train_root, test_root = tmp_path / "train", tmp_path / "test"
    make(train_root, with_kp=False)
    make(test_root, with_kp=True)
    monkeypatch.setitem(C.PRESETS, "cpu-64", {**tiny_config().to_dict(), "preset": "cpu-64"} | {"steps": None})
    run = tmp_path / "run"
    assert main(["train", "--data", str(train_root), "--out", str(run), "--steps", "2", "--eval-data", str(test_root), "--quiet"]) == 0
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(test_root), "--json", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert m["n_frames"] == 18 and set(m["per_video"]) == {"clip_0", "clip_1", "clip_2"}
    assert 0 <= m["error_flip"] <= m["error"] < 100
    # a dataset whose skeleton differs from the model's is refused
    sk2 = Skeleton(keypoints=["tail", "nose", "l_ear", "r_ear"], limbs=[("nose", "tail")], name="other")
    sk2.to_yaml(test_root / "skeleton.yaml")
    r = run_cli("evaluate", "--checkpoint", run, "--data", test_root)
    assert r.returncode == 2 and "skeleton differs" in r.stderr


def test_pretrain_regressor_then_train_with_it(tiny_data, tmp_path, monkeypatch):
    import torch

    import keypointgan.config as C

    monkeypatch.setitem(C.PRESETS, "cpu-64", {**tiny_config().to_dict(), "preset": "cpu-64"} | {"steps": None})
    reg = tmp_path / "eta.pt"
    assert main(["pretrain-regressor", "--prior", str(tiny_data / "prior.npy"), "--skeleton", str(tiny_data / "skeleton.yaml"),
                 "--out", str(reg), "--steps", "3", "--quiet"]) == 0
    state = torch.load(reg, weights_only=True)
    assert state["kind"] == "regressor" and state["pretrain_steps"] == 3 and "eta" in state["nets"]
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--regressor", str(reg), "--steps", "1", "--quiet"]) == 0
    log = (run / "log.jsonl").read_text()
    assert '"pretrained"' not in log  # the given regressor replaced pre-training
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 1 and ck["pretrained"]


def test_demo_flags_reach_run_demo(tmp_path, monkeypatch, capsys):
    """``keypointgan demo --precision bf16 --batch-size 32`` passes both on to the demo's config; without
    them the preset's values stand; a bad value is a one-line error (exit 2) before anything runs."""
    import keypointgan.demo as demo

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: calls.append(kw) or {})
    assert main(["demo", "--out", str(tmp_path / "d"), "--precision", "bf16", "--batch-size", "32", "--seed", "3", "--quiet"]) == 0
    assert calls[-1] == {"seed": 3, "progress": False, "precision": "bf16", "batch_size": 32}
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert calls[-1] == {"seed": 0, "progress": False}
    for bad in (["--batch-size", "0"], ["--precision", "fp8"]):
        with pytest.raises(SystemExit) as e:
            main(["demo", "--out", str(tmp_path / "d"), *bad])
        assert e.value.code == 2
    assert len(calls) == 2 and not (tmp_path / "d").exists()
