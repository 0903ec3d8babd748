"""Simplified Human3.6M and full Human3.6M readers on fixtures written in the datasets' real formats."""

import json

import numpy as np
import pytest
from PIL import Image

from keypointgan.errors import InputError
from keypointgan.skeleton import SKELETONS

scipy_io = pytest.importorskip("scipy.io")

SK = SKELETONS["human36m"]
SIZE = 32


def _pose(rng, size=SIZE):
    """32 joints in pixels (x, y): left joints on the right half, right joints on the left half, so a swap is far."""
    xy = np.empty((32, 2))
    for i, n in enumerate(SK.keypoints):
        lo, hi = (20, 28) if n.startswith("l_") else (4, 12) if n.startswith("r_") else (13, 19)
        xy[i] = rng.uniform(lo, hi), rng.uniform(4, size - 4)
    return xy


def write_simple_h36m(root, seqs, seed=0):
    """``seqs``: {subject: {sequence: n_frames}}.  Returns {(subject, sequence): (T, 32, 2) pixel poses}.

    Frames are 32×32 JPEGs with a white dot under joint 0; masks are 1-bit PNGs keeping all but
    the last column; landmarks are .mat files with ``keypoints_2d`` stored as (y / H, x / W).
    """
    rng = np.random.default_rng(seed)
    truth = {}
    for subject, ss in seqs.items():
        for seq, n in ss.items():
            poses = []
            for k in range(n):
                for kind in ("WithBackground", "BackgroudMask", "Landmarks"):
                    (root / subject / kind / seq).mkdir(parents=True, exist_ok=True)
                xy = _pose(rng)
                img = np.full((SIZE, SIZE, 3), 60, np.uint8)
                img[int(round(xy[0, 1])), int(round(xy[0, 0]))] = 255
                Image.fromarray(img).save(root / subject / "WithBackground" / seq / f"{k}.jpg", quality=100)
                mask = np.ones((SIZE, SIZE), bool)
                mask[:, -1] = False
                Image.fromarray(mask).save(root / subject / "BackgroudMask" / seq / f"{k}.png")
                kp = np.stack([xy[:, 1] / SIZE, xy[:, 0] / SIZE], axis=1)  # (row, col) normalised: the dataset's order
                scipy_io.savemat(root / subject / "Landmarks" / seq / f"{k}.mat", {"keypoints_2d": kp})
                poses.append(xy)
            truth[(subject, seq)] = np.stack(poses)
    return truth


FIXTURE = {
    "S1": {"Directions 1.54138969": 20, "Walking.55011271": 20, "Eating 1.54138969": 4},
    "S5": {"Posing.54138969": 12},
    "S11": {"Directions.54138969": 3, "Walking 1.58860488": 2, "Sitting.54138969": 2},
}


@pytest.fixture(scope="module")
def simple_h36m(tmp_path_factory):
    root = tmp_path_factory.mktemp("sh36m") / "human_images"
    truth = write_simple_h36m(root, FIXTURE)
    return root, truth


def test_protocol_split_mask_and_coordinate_order(simple_h36m):
    from keypointgan.data import open_dataset
    from keypointgan.data.datasets import FrameStore

    root, truth = simple_h36m
    b = open_dataset(root)
    assert b.name == "simple-human36m" and b.group_name == "activity"
    assert "subject S6 is missing" in " ".join(b.notes)
    # training: first halves of the 6 activities' sequences of the training subjects (Eating left out)
    assert {v.id: len(v) for v in b.videos} == {"S1/Directions 1.54138969": 10, "S1/Walking.55011271": 10, "S5/Posing.54138969": 6}
    assert [f.name for f in b.videos[0].frames][:3] == ["0.jpg", "1.jpg", "2.jpg"]
    # test: every frame of S11
    assert {v.id: len(v) for v in b.test_videos} == {"S11/Directions.54138969": 3, "S11/Walking 1.58860488": 2}
    assert {b.group_of(v) for v in b.test_videos} == {"Directions", "Walking"}
    # prior: second halves only (10 + 10 + 6 poses), in [0, 1] as ((x + 0.5) / W, (y + 0.5) / H)
    prior = b.load_prior()
    want = (np.concatenate([truth[("S1", "Directions 1.54138969")][10:], truth[("S1", "Walking.55011271")][10:], truth[("S5", "Posing.54138969")][6:]]) + 0.5) / SIZE
    np.testing.assert_allclose(prior, want, atol=1e-6)
    # coordinate order: joint 0 read as (x, y) sits on the white dot drawn at row y, column x
    v = b.test_videos[0]
    kp = b.load_keypoints(v)
    np.testing.assert_allclose(kp, truth[("S11", "Directions.54138969")], atol=1e-4)
    img = np.asarray(Image.open(v.frames[1]))
    x, y = np.round(kp[1, 0]).astype(int)
    assert x != y and img[y, x].min() > 200  # the dot is at row y, column x
    assert img[x, y].max() < 150  # reading the columns the other way round misses it
    # the foreground mask is applied: the last column goes black, the rest is kept
    frame = FrameStore([v], SIZE, preload=False).get(0)
    assert frame[:, -1].max() == 0 and frame[:, :-2].min() > 40


def test_malformed_landmarks_name_the_file(simple_h36m, tmp_path, capsys):
    import shutil

    from keypointgan.data.human36m import read_simple_landmarks

    root, _ = simple_h36m
    good = root / "S11" / "Landmarks" / "Directions.54138969" / "0.mat"
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, but truncated")
    with pytest.raises(InputError, match="cannot read landmarks file") as e:
        read_simple_landmarks(bad)
    assert str(bad) in str(e.value)
    scipy_io.savemat(bad, {"points": np.zeros((32, 2))})
    with pytest.raises(InputError, match="no 'keypoints_2d' variable .has: points") as e:
        read_simple_landmarks(bad)
    scipy_io.savemat(bad, {"keypoints_2d": np.zeros((17, 2))})
    with pytest.raises(InputError, match="must be 32 × 2, got 17 × 2"):
        read_simple_landmarks(bad)
    assert read_simple_landmarks(good).shape == (32, 2)
    # through the CLI: a broken landmark file among the test frames is one line naming it
    d = tmp_path / "ds"
    shutil.copytree(root, d)
    (d / "S11" / "Landmarks" / "Walking 1.58860488" / "1.mat").write_text("not a mat file")
    from keypointgan.cli import main

    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"S11/Directions.54138969": np.zeros((3, 32, 2)).tolist(), "S11/Walking 1.58860488": np.zeros((2, 32, 2)).tolist()}))
    assert main(["evaluate", "--predictions", str(preds), "--data", str(d)]) == 2
    err = capsys.readouterr().err
    assert "Walking 1.58860488/1.mat: cannot read landmarks file" in err and len(err.strip().splitlines()) == 1


def test_evaluate_known_predictions_per_activity(simple_h36m, tmp_path):
    """Hand-computed protocol value: per activity, then over activities, flip-corrected, % of image size."""
    from keypointgan.cli import main

    root, truth = simple_h36m
    d = truth[("S11", "Directions.54138969")].copy()
    w = truth[("S11", "Walking 1.58860488")].copy()
    pred_d = d + np.array([3.2, 0.0])  # 3.2 px of 32: 10 % on every frame
    pred_w = w.copy()
    pred_w[0] += np.array([0.0, 1.6])  # 5 %
    pred_w[1] = w[1][SK.flip_permutation]  # left/right swapped: 0 % once flip-corrected
    path = tmp_path / "preds.npz"
    np.savez(path, **{"S11/Directions.54138969": pred_d, "S11/Walking 1.58860488": pred_w})
    out = tmp_path / "m.json"
    assert main(["evaluate", "--predictions", str(path), "--data", str(root), "--json", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert m["format"] == "simple-human36m" and m["group_name"] == "activity" and m["n_frames"] == 5
    assert m["per_video"]["Directions"]["error_flip"] == pytest.approx(10.0, abs=1e-3)
    assert m["per_video"]["Directions"]["error"] == pytest.approx(10.0, abs=1e-3)
    assert m["per_video"]["Walking"]["error_flip"] == pytest.approx((5.0 + 0.0) / 2, abs=1e-3)
    swapped = np.linalg.norm(w[1] - w[1][SK.flip_permutation], axis=1).mean() / SIZE * 100
    assert m["per_video"]["Walking"]["error"] == pytest.approx((5.0 + swapped) / 2, abs=1e-3)
    assert m["error_flip"] == pytest.approx((10.0 + 2.5) / 2, abs=1e-3)
    # the breakdown is over the 5 frames: centroids 10 % off on 3, 5 % on 1, not at all when left and right swap
    b = m["breakdown"]
    assert b["centroid"] == pytest.approx((3 * 10.0 + 5.0 + 0.0) / 5, abs=1e-3)
    assert b["aligned"] == pytest.approx(swapped / 5, abs=1e-3)  # only the swap bends the skeleton
    assert b["spread"] == pytest.approx(1.0, abs=1e-6)
    # a predictions file missing a test video is a clear error
    np.savez(path, **{"S11/Directions.54138969": pred_d})
    with pytest.raises(InputError, match="no predictions for video 'S11/Walking 1.58860488'"):
        from keypointgan.api import evaluate_predictions

        evaluate_predictions(path, root)


def test_cli_train_simple_h36m_preset_two_steps(simple_h36m, tmp_path, monkeypatch):
    """``keypointgan train --preset paper-128 --data FIXTURE --steps 2`` (the preset shrunk to test widths)."""
    import torch

    import keypointgan.config as C
    from conftest import tiny_config
    from keypointgan.cli import main

    assert C.PRESETS["paper-128"]["model"]["size"] == 128
    monkeypatch.setitem(C.PRESETS, "paper-128", {**tiny_config().to_dict(), "steps": None})
    root, _ = simple_h36m
    run = tmp_path / "run"
    assert main(["train", "--preset", "paper-128", "--data", str(root), "--out", str(run), "--steps", "2", "--quiet"]) == 0
    ck = torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 2 and ck["config"]["preset"] == "paper-128"
    assert ck["skeleton"]["name"] == "human36m" and len(ck["skeleton"]["keypoints"]) == 32
    # the checkpoint evaluates with the protocol: per activity, then over activities
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(root), "--json", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert m["n_frames"] == 5 and set(m["per_video"]) == {"Directions", "Walking"}
    per = [m["per_video"][a]["error_flip"] for a in ("Directions", "Walking")]
    assert m["error_flip"] == pytest.approx(sum(per) / 2, abs=1e-9)
