"""Prior files, faces (68-point skeleton, .pts, inter-ocular error), Penn Action and full Human3.6M readers."""

import json

import numpy as np
import pytest
from PIL import Image

from keypointgan.data import load_prior, open_dataset
from keypointgan.errors import InputError
from keypointgan.skeleton import SKELETONS

scipy_io = pytest.importorskip("scipy.io")


# ------------------------------------------------------------------ prior files
def test_prior_csv_json_coco(tmp_path):
    sk = SKELETONS["synthetic"]  # 15 keypoints
    rng = np.random.default_rng(0)
    poses = rng.uniform(0.1, 0.9, (4, 15, 2)).astype(np.float32)
    csv = tmp_path / "prior.csv"
    csv.write_text("x1,y1,...\n" + "\n".join(",".join(f"{v:.6f}" for v in p.reshape(-1)) for p in poses) + "\n")
    np.testing.assert_allclose(load_prior(csv, sk), poses, atol=1e-6)
    js = tmp_path / "prior.json"
    js.write_text(json.dumps(poses.tolist()))
    np.testing.assert_allclose(load_prior(js, sk), poses, atol=1e-6)
    # COCO: pixels of 200×100 images, v=0 poses dropped, v=1 (labelled, occluded) kept
    coco = {"images": [{"id": 7, "width": 200, "height": 100}], "annotations": []}
    for i, p in enumerate(poses):
        trip = np.concatenate([p * [200, 100], np.full((15, 1), 2.0)], axis=1)
        if i == 1:
            trip[3, 2] = 0
        if i == 2:
            trip[5, 2] = 1
        coco["annotations"].append({"image_id": 7, "keypoints": trip.reshape(-1).tolist()})
    js.write_text(json.dumps(coco))
    # pixels → the prior unit, pixel edges at 0 and 1: (x + 0.5) / width
    np.testing.assert_allclose(load_prior(js, sk), poses[[0, 2, 3]] + 0.5 / np.array([200, 100]), atol=1e-5)


def test_prior_errors_name_the_file(tmp_path):
    sk = SKELETONS["synthetic"]
    bad = tmp_path / "ragged.csv"
    bad.write_text("0.1,0.2,0.3,0.4\n0.1,0.2\n")
    with pytest.raises(InputError, match="CSV row 2 has 2 values but the first row has 4") as e:
        load_prior(bad, sk)
    assert str(bad) in str(e.value)
    pix = tmp_path / "pixels.csv"
    pix.write_text("\n".join(",".join(["120.0"] * 30) for _ in range(3)))
    with pytest.raises(InputError, match="look like pixel coordinates"):
        load_prior(pix, sk)
    k3 = tmp_path / "k3.csv"
    k3.write_text("0.1,0.2,0.3,0.4,0.5,0.6\n")
    with pytest.raises(InputError, match="K=3 keypoints but the skeleton 'synthetic' has 15"):
        load_prior(k3, sk)
    js = tmp_path / "bad.json"
    js.write_text(json.dumps([[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(InputError, match="poses × keypoints × \\[x, y\\], got shape \\(2, 2\\)"):
        load_prior(js, sk)
    js.write_text("{not json")
    with pytest.raises(InputError, match="cannot read prior as JSON") as e:
        load_prior(js, sk)
    assert str(js) in str(e.value)


# ------------------------------------------------------------------ faces
def _face(rng, cx=32.0):
    """68 points: eye corners 36, 45 at (20, 30), (44, 30) (IOD 24 px); mirror pairs on opposite sides."""
    sk = SKELETONS["face68"]
    perm = sk.flip_permutation
    xy = np.empty((68, 2))
    for i in range(68):
        j = perm[i]
        xy[i, 0] = cx if i == j else (rng.uniform(10, 26) if i < j else rng.uniform(38, 54))
        xy[i, 1] = rng.uniform(10, 54)
    xy[36], xy[45] = (20, 30), (44, 30)
    return xy


def write_pts(path, xy):
    """300-W .pts: 1-based pixel coordinates."""
    path.write_text("version: 1\nn_points:  68\n{\n" + "".join(f"{x + 1:.3f} {y + 1:.3f}\n" for x, y in xy) + "}\n")


def test_face68_skeleton_and_pts_prior(tmp_path):
    sk = SKELETONS["face68"]
    assert sk.num_keypoints == 68 and sk.keypoints[36] == "r_eye_0" and sk.keypoints[45] == "l_eye_3"
    perm = sk.flip_permutation
    assert perm[36] == 45 and perm[0] == 16 and perm[48] == 54 and perm[30] == 30 and perm[51] == 51
    names = {(sk.keypoints[a], sk.keypoints[b]) for a, b in sk.limbs}
    assert ("r_eye_5", "r_eye_0") in names and ("jaw_15", "jaw_16") in names and ("inner_lip_7", "inner_lip_0") in names
    rng = np.random.default_rng(1)
    faces = [_face(rng) for _ in range(3)]
    for i, xy in enumerate(faces):
        Image.new("RGB", (80, 64)).save(tmp_path / f"indoor_{i:03d}.png")
        write_pts(tmp_path / f"indoor_{i:03d}.pts", xy)
    prior = load_prior(tmp_path, sk)
    np.testing.assert_allclose(prior, (np.stack(faces) + 0.5) / [80, 64], atol=1e-5)
    bad = tmp_path / "indoor_001.pts"
    bad.write_text(bad.read_text().replace("n_points:  68", "n_points:  67"))
    with pytest.raises(InputError, match="n_points: 67 but the file holds 68 points") as e:
        load_prior(tmp_path, sk)
    assert str(bad) in str(e.value)


def test_interocular_error_on_300vw_videos(tmp_path):
    from keypointgan.api import evaluate_predictions
    from keypointgan.evaluate import interocular_error

    rng = np.random.default_rng(2)
    truth = {}
    for vid, n in (("001", 3), ("002", 2)):
        (tmp_path / vid / "frames").mkdir(parents=True)
        (tmp_path / vid / "annot").mkdir()
        truth[vid] = np.stack([_face(rng) for _ in range(n)])
        for t in range(n):
            Image.new("RGB", (64, 64)).save(tmp_path / vid / "frames" / f"{t + 1:06d}.png")
            write_pts(tmp_path / vid / "annot" / f"{t + 1:06d}.pts", truth[vid][t])
    b = open_dataset(tmp_path)
    assert b.name == "300vw" and b.metric == "interocular"
    np.testing.assert_allclose(b.load_keypoints(b.test_videos[0]), truth["001"], atol=1e-3)
    # 1.2 px of a 24 px inter-ocular distance: 5 %
    assert interocular_error(truth["001"] + [1.2, 0], truth["001"]) == pytest.approx([5.0] * 3, abs=1e-6)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"001": (truth["001"] + [1.2, 0]).tolist(), "002": truth["002"][:, SKELETONS["face68"].flip_permutation].tolist()}))
    m = evaluate_predictions(preds, tmp_path)
    assert m["metric"] == "interocular"
    assert m["per_video"]["001"]["error_flip"] == pytest.approx(5.0, abs=1e-2)
    assert m["per_video"]["002"]["error_flip"] == pytest.approx(0.0, abs=1e-2) and m["per_video"]["002"]["error"] > 50
    assert m["error_flip"] == pytest.approx(2.5, abs=1e-2)
    (tmp_path / "002" / "annot" / "000002.pts").write_text("version: 1\n{\n1 2 3\n}\n")
    with pytest.raises(InputError, match="a point line is not two numbers|every point line must hold two numbers") as e:
        evaluate_predictions(preds, tmp_path)
    assert "000002.pts" in str(e.value)


# ------------------------------------------------------------------ Penn Action
def _penn_pose(rng, w=40, h=30):
    sk = SKELETONS["penn-action"]
    xy = np.empty((13, 2))
    for i, n in enumerate(sk.keypoints):
        lo, hi = (25, 35) if n.startswith("l_") else (5, 15) if n.startswith("r_") else (18, 22)
        xy[i] = rng.uniform(lo, hi), rng.uniform(3, h - 3)
    return xy


def write_penn(root, videos, seed=0):
    """``videos``: {id: (action, train, n_frames, invisible [(t, joint)])}; frames 40 wide × 30 high."""
    rng = np.random.default_rng(seed)
    truth = {}
    for vid, (action, train, n, hidden) in videos.items():
        (root / "frames" / vid).mkdir(parents=True)
        (root / "labels").mkdir(exist_ok=True)
        xy = np.stack([_penn_pose(rng) for _ in range(n)])
        vis = np.ones((n, 13), np.uint8)
        for t, j in hidden:
            vis[t, j] = 0
            xy[t, j] = 0.0  # Penn Action stores unannotated joints as zeros
        for t in range(n):
            Image.new("RGB", (40, 30)).save(root / "frames" / vid / f"{t + 1:06d}.jpg")
        scipy_io.savemat(root / "labels" / f"{vid}.mat", {
            "action": action, "pose": "back", "x": xy[..., 0], "y": xy[..., 1], "visibility": vis,
            "train": np.array([[1 if train else -1]]), "bbox": np.tile([[2.0, 2.0, 38.0, 28.0]], (n, 1)),
            "dimensions": np.array([[30, 40, n]]), "nframes": np.array([[n]]),
        })
        truth[vid] = (xy, vis.astype(bool))
    return truth


def test_penn_action_protocol_and_visibility(tmp_path):
    from keypointgan.api import evaluate_predictions

    truth = write_penn(tmp_path, {
        "0001": ("baseball_pitch", True, 4, [(2, 5)]),
        "0002": ("bench_press", False, 3, [(0, 3), (1, 12)]),
        "0003": ("jumping_jacks", False, 2, []),
    })
    b = open_dataset(tmp_path)
    assert b.name == "penn-action" and [v.id for v in b.videos] == ["0001"] and [v.id for v in b.test_videos] == ["0002", "0003"]
    prior = b.load_prior()  # fully visible training poses only, in [0, 1]
    xy, vis = truth["0001"]
    np.testing.assert_allclose(prior, (xy[[0, 1, 3]] + 0.5) / [40, 30], atol=1e-6)
    kp = b.load_keypoints(b.test_videos[0])
    assert np.isnan(kp[0, 3]).all() and np.isnan(kp[1, 12]).all() and np.isfinite(kp[2]).all()
    # known predictions: 4 px of 40 on 0002 (10 %), wild guesses at its invisible joints (ignored);
    # 0003 exact except 3 px of 30 on frame 0 (10 %, so 5 % for the action)
    p2 = truth["0002"][0] + [4.0, 0.0]
    p2[0, 3] = p2[1, 12] = (39.0, 29.0)
    p3 = truth["0003"][0].copy()
    p3[0] += [0.0, 3.0]
    path = tmp_path / "preds.npz"
    np.savez(path, **{"0002": p2, "0003": p3})
    m = evaluate_predictions(path, tmp_path)
    assert m["group_name"] == "action"
    assert m["per_video"]["bench_press"]["error_flip"] == pytest.approx(10.0, abs=1e-4)
    assert m["per_video"]["jumping_jacks"]["error_flip"] == pytest.approx(5.0, abs=1e-4)
    assert m["error_flip"] == pytest.approx(7.5, abs=1e-4)


def test_penn_malformed_label_names_the_file(tmp_path):
    write_penn(tmp_path, {"0001": ("tennis_serve", True, 2, [])})
    lab = tmp_path / "labels" / "0001.mat"
    m = scipy_io.loadmat(lab)
    del m["visibility"]
    scipy_io.savemat(lab, {k: v for k, v in m.items() if not k.startswith("__")})
    with pytest.raises(InputError, match="no 'visibility' variable") as e:
        open_dataset(tmp_path)
    assert str(lab) in str(e.value)


# ------------------------------------------------------------------ full Human3.6M
def _write_cdf(path, poses):
    from cdflib.cdfwrite import CDF

    c = CDF(str(path), cdf_spec={"Majority": "Row_major"}, delete=True)
    t = poses.shape[0]
    c.write_var({"Variable": "Pose", "Data_Type": 45, "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": [t, 64]},
                var_attrs={}, var_data=poses.reshape(1, t, 64).astype(np.float64))
    c.close()


def test_human36m_full_cdf_and_frames(tmp_path):
    pytest.importorskip("cdflib")
    rng = np.random.default_rng(3)
    truth = {}
    for subj, seq, t_pose, t_frames in (("S1", "Directions 1.54138969", 8, 8), ("S11", "Walking.55011271", 6, 5), ("S11", "Eating.55011271", 4, 4)):
        pdir = tmp_path / subj / "MyPoseFeatures" / "D2_Positions"
        pdir.mkdir(parents=True, exist_ok=True)
        poses = rng.uniform(2, 30, (t_pose, 32, 2))
        _write_cdf(pdir / f"{seq}.cdf", poses)
        fdir = tmp_path / subj / "Videos" / seq
        fdir.mkdir(parents=True)
        (tmp_path / subj / "Videos" / f"{seq}.mp4").write_bytes(b"")
        for k in range(t_frames):
            Image.new("RGB", (32, 32)).save(fdir / f"{k + 1:06d}.jpg")
        truth[(subj, seq)] = poses
    b = open_dataset(tmp_path, frame_step=2)
    assert b.name == "human36m"
    assert {v.id: len(v) for v in b.videos} == {"S1/Directions 1.54138969/first": 2}  # frames 0, 2 of 0, 2, 4, 6
    assert {v.id: len(v) for v in b.test_videos} == {"S11/Walking.55011271/full": 3}  # 5 frames (poses: 6): 0, 2, 4
    np.testing.assert_allclose(b.load_keypoints(b.test_videos[0]), truth[("S11", "Walking.55011271")][[0, 2, 4]], atol=1e-4)
    np.testing.assert_allclose(b.load_prior(), (truth[("S1", "Directions 1.54138969")][[4, 6]] + 0.5) / 32, atol=1e-5)
    assert b.group_of(b.test_videos[0]) == "Walking"
    # without extracted frames the .mp4 itself is read (tests/test_dataset_videos.py); this one is empty: the error names it
    import shutil

    shutil.rmtree(tmp_path / "S11" / "Videos" / "Walking.55011271")
    with pytest.raises(InputError, match="Walking.55011271.mp4: cannot open video"):
        open_dataset(tmp_path, frame_step=2)


def test_human36m_malformed_cdf_names_the_file(tmp_path):
    pytest.importorskip("cdflib")
    from keypointgan.data.human36m import read_d2_positions

    bad = tmp_path / "Directions.54138969.cdf"
    bad.write_bytes(b"\xcd\xf3\x00\x01 not really a CDF")
    with pytest.raises(InputError, match="cannot read CDF file") as e:
        read_d2_positions(bad)
    assert str(bad) in str(e.value)
    from cdflib.cdfwrite import CDF

    c = CDF(str(bad), delete=True)
    c.write_var({"Variable": "Angles", "Data_Type": 45, "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": [3]}, var_attrs={}, var_data=np.zeros((2, 3)))
    c.close()
    with pytest.raises(InputError, match="no 'Pose' variable .has: Angles"):
        read_d2_positions(bad)


def test_faces_in_the_generic_layout_with_interocular_metric(tmp_path):
    """Face videos as frame folders in the generic layout, scored in % of the inter-ocular distance."""
    from keypointgan.cli import main

    sk = SKELETONS["face68"]
    sk.to_yaml(tmp_path / "skeleton.yaml")
    rng = np.random.default_rng(4)
    gt = np.stack([_face(rng) for _ in range(2)]).astype(np.float32)
    (tmp_path / "videos" / "clip").mkdir(parents=True)
    (tmp_path / "keypoints").mkdir()
    for t in range(2):
        Image.new("RGB", (64, 64)).save(tmp_path / "videos" / "clip" / f"{t}.png")
    np.save(tmp_path / "keypoints" / "clip.npy", gt)
    preds = tmp_path / "p.npz"
    np.savez(preds, clip=gt + [0.0, 2.4])  # 2.4 px of 24: 10 %
    out = tmp_path / "m.json"
    assert main(["evaluate", "--predictions", str(preds), "--data", str(tmp_path), "--metric", "interocular", "--json", str(out), "--quiet"]) == 0
    m = json.loads(out.read_text())
    assert m["metric"] == "interocular" and m["error_flip"] == pytest.approx(10.0, abs=1e-4)
    assert main(["evaluate", "--predictions", str(preds), "--data", str(tmp_path), "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["error"] == pytest.approx(2.4 / 64 * 100, abs=1e-4)
