"""benchmarks/fidelity.py's pieces: every variant builds a valid dataset, and the fewer-joints one
keeps the named joints' coordinates exactly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from keypointgan.data import Layout, load_prior

spec = importlib.util.spec_from_file_location("fidelity", Path(__file__).parent.parent / "benchmarks" / "fidelity.py")
fidelity = importlib.util.module_from_spec(spec)
sys.modules["fidelity"] = fidelity
spec.loader.exec_module(fidelity)


@pytest.mark.parametrize("name", list(fidelity.VARIANTS))
def test_every_variant_is_a_valid_dataset(name, tmp_path):
    root = fidelity.dataset(tmp_path, name, videos=10, frames=6, seed=1, prior=400)
    lay = Layout(root)
    prior = load_prior(lay.prior_path, lay.skeleton)
    k = 11 if name == "fewer-joints" else 15
    assert lay.skeleton.num_keypoints == k and prior.shape[1] == k
    assert all(lay.load_keypoints(v).shape[1:] == (k, 2) for v in lay.videos)
    cfg = fidelity.synthetic_config(name, 10, 6, 1, 400)
    assert len(lay.videos) == cfg.videos and prior.shape[0] == cfg.prior


def test_fewer_joints_keeps_the_named_joints(tmp_path):
    full = Layout(fidelity.dataset(tmp_path, "default", videos=10, frames=6, seed=1, prior=400))
    few = Layout(fidelity.dataset(tmp_path, "fewer-joints", videos=10, frames=6, seed=1, prior=400))
    idx = [full.skeleton.keypoints.index(n) for n in fidelity.FEWER_JOINTS]
    assert few.skeleton.keypoints == fidelity.FEWER_JOINTS
    assert np.array_equal(few.load_keypoints(few.videos[0]), full.load_keypoints(full.videos[0])[:, idx])
    assert ("l_wrist", "r_wrist") in [(few.skeleton.keypoints[a], few.skeleton.keypoints[b]) for a, b in few.skeleton.symmetric]


def test_analyse_reads_a_finished_run(tiny_data, one_step_run, tmp_path):
    """--analyse on a suite folder: the error equals evaluating the checkpoint on the held-out video,
    and the breakdown's per-keypoint errors average to it."""
    from keypointgan import pixels as P
    from keypointgan.api import make_eval_set
    from keypointgan.demo import split_videos
    from keypointgan.detector import KeypointDetector
    from keypointgan.evaluate import keypoint_error

    (tmp_path / "data").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "data" / "default-seed0").symlink_to(tiny_data)
    (tmp_path / "runs" / "default-seed0").symlink_to(one_step_run)
    lay = Layout(tiny_data)
    r = fidelity.analyse(tmp_path, "default", 0, videos=len(lay.videos))
    det = KeypointDetector.from_checkpoint(one_step_run)
    es = make_eval_set(lay, split_videos(lay)[1], det.size)
    pix = P.norm_to_image_pixels(det.predict_grid_points(es.images), det.size, es.hw)
    assert r["error"] == pytest.approx(float(np.mean(keypoint_error(pix, es.keypoints, es.hw))))
    assert np.mean(list(r["breakdown"]["per_keypoint"].values())) == pytest.approx(r["error"])
    assert set(r["breakdown"]) == {"per_keypoint", "offset", "centroid", "aligned", "spread", "variety"}


def test_few_videos_is_tested_on_as_many_videos_as_the_default(tmp_path):
    """few-videos trains on a fifth of the default's training videos (18 of 90) and holds out the
    default's 10 test videos, not 10% of its own 20."""
    assert fidelity.held_out(100) == 10
    assert fidelity.synthetic_config("few-videos", 100, 40, 0).videos == 18 + 10
    assert fidelity.synthetic_config("default", 100, 40, 0).videos == 100
    root = fidelity.dataset(tmp_path, "few-videos", videos=30, frames=3, seed=1, prior=50)  # a fifth of 27 → 5, + 3
    train, test = fidelity.split_videos(Layout(root), n_test=fidelity.held_out(30))
    assert (len(train), len(test)) == (9, 3)  # at least 9 training videos
    assert list(train) + list(test) == list(Layout(root).videos)


def test_supervised_bound_reused_only_for_the_same_budget_and_data(tmp_path):
    """--supervised-from: a row's bound is taken for its variant and seed only when its supervised
    steps and its generated data match this suite's."""
    import dataclasses
    import json

    def row(variant, seed, sup_steps, frames=40):
        return {"variant": variant, "seed": seed, "supervised": 2.5 + seed, "supervised_steps": sup_steps,
                "synthetic": dataclasses.asdict(fidelity.synthetic_config(variant, 100, frames, seed))}

    path = tmp_path / "fidelity.json"
    path.write_text(json.dumps({"rows": [row("default", 0, 1400), row("slow", 1, 1400), row("fast", 0, 700), row("default", 1, 1400, frames=30)]}))
    got = fidelity.earlier_supervised(path, steps=400, supervised_ratio=3.5, videos=100, frames=40)
    assert got == {("default", 0): {"error": 2.5, "steps": 1400, "from": str(path)}, ("slow", 1): {"error": 3.5, "steps": 1400, "from": str(path)}}
    with pytest.raises(SystemExit, match="--steps"):
        fidelity.earlier_supervised(path, steps=None, supervised_ratio=3.5, videos=100, frames=40)


# ---------------------------------------------------------------- the cross-source suite (benchmarks/cross_source.py)
spec_cs = importlib.util.spec_from_file_location("cross_source", Path(__file__).parent.parent / "benchmarks" / "cross_source.py")
cross_source = importlib.util.module_from_spec(spec_cs)
sys.modules["cross_source"] = cross_source
spec_cs.loader.exec_module(cross_source)

TINY = ["--seeds", "0", "--steps", "2", "--videos", "10", "--frames", "4", "--prior", "100", "--marionette-videos", "3", "--marionette-frames", "4",
        "--marionette-prior", "40", "--marionette-test-videos", "2", "--marionette-test-frames", "3",
        "--train-args", "--pretrain-steps 2 --ema-norm-batches 1 --batch-size 4 --sample-every 1000 --eval-every 1000 --ckpt-every 1000"]


def test_cross_source_suite_end_to_end(tmp_path, capsys):
    """Built-in default and (when ../shared is there) plain marionettes, trained and evaluated through
    the CLI on tiny budgets: the JSON's numbers are the evaluation's, the ratios are computed from them,
    and the marionettes' keypoints are the renderer's less half a pixel."""
    import json

    has_marionette = cross_source.MARIONETTE.is_file()
    res = cross_source.main(["--sources", "default", "marionette-plain", "--out", str(tmp_path), *TINY])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "cross_source.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"])) and saved["steps"] == 2
    assert [r["variant"] for r in res["rows"]] == (["default", "marionette-plain"] if has_marionette else ["default"])
    for r in res["rows"]:
        ev = json.loads((Path(r["run"]) / "eval.json").read_text())
        assert r["error"] == ev["error_flip"] > 0 and r["error_unflipped"] == ev["error"] >= r["error"]  # the protocol's flip correction
        assert r["mean_pose_unflipped"] >= r["mean_pose"] and r["steps"] == 2 and r["supervised_steps"] == 2
        assert r["ratio_mean_pose"] == pytest.approx(r["error"] / r["mean_pose"]) and r["mean_pose"] > 0
        assert r["ratio_supervised"] == pytest.approx(r["error"] / r["supervised"]) and r["supervised"] > 0
        assert set(r["breakdown"]) >= {"per_keypoint", "centroid", "aligned", "spread", "variety"} and len(r["breakdown"]["per_keypoint"]) == 15
        assert f"{r['variant']} seed 0: error {r['error']:.2f}" in printed
    assert f"bar: {cross_source.BARS}" in printed
    assert [s["ratio_mean_pose"] for s in res["summary"]] == pytest.approx([r["ratio_mean_pose"] for r in res["rows"]])
    test_lay = Layout(res["rows"][0]["test"])
    assert len(test_lay.videos) == 1 and len(Layout(res["rows"][0]["train"]).videos) == 9  # the last 10% held out
    if not has_marionette:
        assert "marionette-plain skipped" in printed and res["skipped"] == ["marionette-plain"]
        pytest.skip("../shared/datasets/marionette.py is not there: the marionette source was skipped")
    # the renderer's own files, written again here, are half a pixel off the suite's
    import subprocess

    raw = tmp_path / "raw"
    subprocess.run([sys.executable, str(cross_source.MARIONETTE), str(raw), "--videos", "2", "--frames", "3", "--seed", "12", "--with-keypoints", "--plain"],
                   check=True)
    mar = Layout(res["rows"][1]["test"])
    for v in mar.videos:
        assert np.allclose(mar.load_keypoints(v), np.load(raw / "keypoints" / f"{v.id}.npy") - 0.5)
    prior = load_prior(Layout(res["rows"][1]["train"]).prior_path, mar.skeleton)
    assert prior.shape == (40, 15, 2) and 0 < prior.min() and prior.max() < 1  # already in [0, 1] prior units: kept as written
    assert mar.skeleton.num_keypoints == 15 and res["rows"][1]["test_frames"] == 6


def test_pil_draws_at_coordinates_half_a_pixel_up_and_left():
    """The fact behind the marionette conversion: a disc or limb polygon PIL draws at float coordinates
    ``c`` has its pixel centroid at ``c − 0.5`` in numpy indices (this project's pixel units)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    offsets = []
    for _ in range(200):
        c, r, d = rng.uniform(20, 40, 2), rng.uniform(2, 6), rng.uniform(-8, 8, 2)
        disc, limb = Image.new("L", (64, 64)), Image.new("L", (64, 64))
        ImageDraw.Draw(disc).ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * r / 2
        ImageDraw.Draw(limb).polygon([tuple(c + n), tuple(c + d + n), tuple(c + d - n), tuple(c - n)], fill=255)
        for im, centre in ((disc, c), (limb, c + d / 2)):
            ys, xs = np.nonzero(np.asarray(im))
            offsets.append([xs.mean() - centre[0], ys.mean() - centre[1]])
    assert np.mean(offsets, axis=0) == pytest.approx([-cross_source.PIL_OFFSET] * 2, abs=0.06)
