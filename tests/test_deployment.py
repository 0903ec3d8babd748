"""Issue 13: ONNX export, the onnxruntime backend, per-keypoint confidence in every output."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_config

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ckpt(tiny_data, tmp_path_factory):
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("deploy") / "run"
    train(tiny_data, out, config=tiny_config(steps=1, pretrain_steps=2), progress=False)
    return out / "checkpoints" / "latest.pt"


@pytest.fixture(scope="module")
def frames():
    """Frames of a built-in synthetic test video (32 px), and a short mp4 of them."""
    from keypointgan.data.synthetic import _video_rng, render_video

    imgs, _ = render_video(_video_rng(11, 0), 12, 32)
    return imgs


@pytest.fixture(scope="module")
def video(frames, tmp_path_factory):
    from keypointgan.video import write_video

    path = tmp_path_factory.mktemp("vid") / "walk.mp4"
    write_video(path, frames, fps=10)
    return path


def _export(ckpt, path, *args):
    from keypointgan.cli import main

    assert main(["export", str(ckpt), "--out", str(path), *args]) == 0
    return path


@pytest.mark.parametrize("flip", [False, True])
def test_onnx_points_equal_pytorch_on_several_sizes_and_a_video(ckpt, frames, video, tmp_path, flip, capsys):
    """Acceptance: the ONNX path's points equal the PyTorch path's within 0.05 px, flip test on and off."""
    from PIL import Image

    from keypointgan import KeypointDetector
    from keypointgan.cli import main

    model = _export(ckpt, tmp_path / "det.onnx", "--flip-test" if flip else "--no-flip-test")
    assert f"flip test {'on' if flip else 'off'}" in capsys.readouterr().out
    det = KeypointDetector.from_checkpoint(ckpt, device="cpu", flip_test=flip)
    onx = KeypointDetector.from_onnx(model)
    assert onx.flip_test is flip and onx.size == 32 and onx.skeleton == det.skeleton
    sizes = [(32, 32), (20, 20), (48, 40), (100, 77)]
    imgs = [np.asarray(Image.fromarray(frames[i]).resize((w, h), Image.BILINEAR)) for i, (h, w) in enumerate(sizes)]
    p_t, c_t = det.predict_with_confidence(imgs)
    p_o, c_o = onx.predict_with_confidence(imgs)
    assert p_o.shape == (4, 15, 2) and c_o.shape == (4, 15)
    assert np.abs(p_o - p_t).max() < 0.05
    assert np.abs(c_o - c_t).max() < 1e-4
    np.testing.assert_array_equal(p_t, det.predict(imgs))  # confidence leaves the points as they were
    assert ((c_t >= 0) & (c_t <= 1)).all()
    # batch sizes the export never saw (dynamic batch), one image at a time too
    p1, c1 = onx.predict_with_confidence(imgs[2])
    assert p1.shape == (15, 2) and np.abs(p1 - p_t[2]).max() < 0.05 and np.abs(c1 - c_t[2]).max() < 1e-4

    # the CLI on a video: JSON and CSV of --model equal those of --checkpoint
    for kind, src in (("checkpoint", ckpt), ("model", model)):
        extra = ["--flip-test" if flip else "--no-flip-test"] if kind == "checkpoint" else []
        assert main(["predict", f"--{kind}", str(src), str(video), "--out", str(tmp_path / kind), "--quiet", *extra]) == 0
    recs = [json.loads((tmp_path / k / "walk.json").read_text()) for k in ("checkpoint", "model")]
    names = recs[0]["keypoint_names"]
    pts = [np.array([[f["keypoints"][n] for n in names] for f in r["frames"]]) for r in recs]
    conf = [np.array([[f["confidence"][n] for n in names] for f in r["frames"]]) for r in recs]
    assert pts[0].shape == (12, 15, 2) and np.abs(pts[0] - pts[1]).max() < 0.05
    assert np.abs(conf[0] - conf[1]).max() <= 2e-4 and ((conf[0] >= 0) & (conf[0] <= 1)).all()
    with open(tmp_path / "model" / "walk.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][32:] == [f"{n}_conf" for n in names]
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 32:], conf[1], atol=1e-4)
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 2:32].reshape(12, 15, 2), pts[1], atol=2e-3)


def test_metadata_alone_draws_the_skeleton(ckpt, tmp_path):
    """Acceptance: with the onnx package only, the metadata gives names, limbs, symmetric pairs, size and conventions."""
    model = onnx.load(str(_export(ckpt, tmp_path / "det.onnx")))
    meta = {p.key: p.value for p in model.metadata_props}
    sk = json.loads(meta["skeleton"])
    assert sk["keypoints"][:3] == ["head", "neck", "pelvis"] and len(sk["keypoints"]) == 15
    assert ["head", "neck"] in sk["limbs"] and len(sk["limbs"]) == 14
    assert ["l_wrist", "r_wrist"] in sk["symmetric"]
    assert meta["input_size"] == "32" and meta["flip_test"] == "true" and meta["preprocess"] == "false"
    assert meta["format"] == "keypointgan-detector-1" and meta["keypointgan_version"]
    assert "x right, y down" in meta["points"] and "[-1, 1]" in meta["input"]
    # inputs and outputs: dynamic batch N
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and dims == ["N", 3, 32, 32]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert outs == {"points": ["N", 15, 2], "confidence": ["N", 15]}
    # the pixel formula of the metadata, applied by hand, gives the library's pixels
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3, 32, 32)).astype(np.float32)
    pts, conf = sess.run(None, {"images": x})
    assert pts.shape == (5, 15, 2) and conf.shape == (5, 15)
    from keypointgan.pixels import norm_to_image_pixels

    W, H = 77, 50
    by_hand = np.stack([((pts[..., 0] + 1) * 31 / 2 + 0.5) * W / 32 - 0.5, ((pts[..., 1] + 1) * 31 / 2 + 0.5) * H / 32 - 0.5], -1)
    np.testing.assert_allclose(by_hand, norm_to_image_pixels(pts, 32, (H, W)), atol=1e-4)


def test_preprocessing_in_the_graph(ckpt, frames, tmp_path):
    """--preprocess: uint8 N×H×W×3 of any size in; at the model's size the points are the library's."""
    from keypointgan import KeypointDetector

    model = _export(ckpt, tmp_path / "pre.onnx", "--preprocess", "--no-flip-test")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    det = KeypointDetector.from_checkpoint(ckpt, device="cpu", flip_test=False)
    pts, conf = sess.run(None, {"images": frames[:3]})
    want, want_c = det.predict_with_confidence(list(frames[:3]))
    from keypointgan.pixels import norm_to_image_pixels

    from keypointgan.pixels import spread_factor

    conf = conf * spread_factor(pts, 32)  # the graph's agreement, times the factor the detectors apply
    assert np.abs(norm_to_image_pixels(pts, 32, (32, 32)) - want).max() < 0.05 and np.abs(conf - want_c).max() < 1e-4
    big = np.repeat(np.repeat(frames[:2], 2, axis=1), 2, axis=2)  # 64×64: resized in the graph
    p2, _ = sess.run(None, {"images": big})
    assert p2.shape == (2, 15, 2) and np.abs(p2 - pts[:2]).max() < 0.05  # a 2× nearest upscale resizes back closely
    assert {p.key: p.value for p in onnx.load(str(model)).metadata_props}["preprocess"] == "true"


def test_predict_with_a_model_never_imports_torch(ckpt, frames, video, tmp_path):
    """The onnxruntime backend (CLI predict --model on images and a video) runs with torch made unimportable."""
    from keypointgan.io import write_image

    model = _export(ckpt, tmp_path / "det.onnx")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        write_image(imgs / f"f{i}.png", frames[i])
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from keypointgan.cli import main\n"
        f"rc = main(['predict', '--model', {str(model)!r}, {str(imgs)!r}, {str(video)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet'])\n"
        "assert not any(m.startswith('torch.') for m in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "out" / "f1.json").read_text())
    assert set(rec["confidence"]) == set(rec["keypoints"]) and all(0 <= c <= 1 for c in rec["confidence"].values())
    assert (tmp_path / "out" / "f1_overlay.png").is_file() and (tmp_path / "out" / "walk_overlay.mp4").is_file()


def test_confidence_is_the_agreement_of_the_two_readings():
    from keypointgan.geometry import heatmap_agreement

    g = torch.linspace(-1, 1, 8)

    def peak(x, y, sharp=200.0):
        return -((g.view(1, 8) - x) ** 2 + (g.view(8, 1) - y) ** 2) * sharp

    a = torch.stack([peak(0.43, -0.14), peak(0.43, -0.14, 20.0), peak(-0.6, 0.3), peak(0.0, 0.0, 2.0)]).unsqueeze(0)  # 1×4×8×8
    b = torch.stack([peak(0.43, -0.14), peak(0.7, -0.14, 20.0), peak(0.6, 0.3), peak(0.0, 0.0, 60.0)]).unsqueeze(0)
    c = heatmap_agreement(a, b, temperature=1.0)[0].tolist()
    assert c[0] == pytest.approx(1.0, abs=1e-5)  # the same place, the same spread
    assert 0.6 < c[1] < 0.75  # one cell apart: partly
    assert 0.8 < heatmap_agreement(a, b)[0, 1] < 0.9  # the default temperature 2 softens the peaks: a near miss overlaps more
    assert c[2] < 1e-3  # far apart (e.g. left and right confused): none
    assert 0.3 < c[3] < 0.95  # the same place, a broad and a sharp reading
    assert all(0 <= v <= 1 for v in c)
    # the detector's graph compares a keypoint with the mirrored pass's mirrored, left/right-swapped map
    from keypointgan.inference import DetectorGraph

    class Phi(torch.nn.Module):
        def forward(self, x):
            return x[:, :1]

    class Eta(torch.nn.Module):
        def heatmaps(self, y):  # keypoint 0 at the bright pixel, keypoint 1 at its mirror position: both follow the image
            return torch.cat([y * 50, y.flip(-1) * 50], 1)

    x = -torch.ones(1, 3, 8, 8)
    x[0, :, 2, 1] = 1.0
    phi = Phi()
    phi.w = torch.nn.Parameter(torch.zeros(1))
    swap, keep = DetectorGraph(phi, Eta(), flip_permutation=[1, 0]), DetectorGraph(phi, Eta(), flip_permutation=[0, 1])
    assert keep(x)[1].min() > 0.99  # read back in place (mirrored back), the two passes agree
    assert swap(x)[1].max() < 0.01  # declared a left/right pair, a mirror image should swap them: it does not


def test_overlays_draw_low_confidence_keypoints_faint():
    from keypointgan import Skeleton
    from keypointgan.viz import CONFIDENCE_THRESHOLD, draw_keypoints

    sk = Skeleton(keypoints=["a", "b"], limbs=[("a", "b")])
    img = np.zeros((40, 40, 3), np.uint8)
    pts = np.array([[8.0, 8.0], [30.0, 30.0]])
    sure = draw_keypoints(img, pts, sk, radius=2, confidence=np.array([0.99, 0.99]))
    np.testing.assert_array_equal(sure, draw_keypoints(img, pts, sk, radius=2))  # confident: as without confidence
    unsure = draw_keypoints(img, pts, sk, radius=2, confidence=np.array([0.99, CONFIDENCE_THRESHOLD - 0.01]))
    np.testing.assert_array_equal(unsure[8, 8], sure[8, 8])  # the confident keypoint is as before
    assert 0 < unsure[30, 30].sum() < 0.5 * sure[30, 30].sum()  # the other about a third as bright


def test_bad_export_and_model_inputs_are_one_line_errors(ckpt, tmp_path, capsys):
    from keypointgan.cli import main

    def cli(*args):
        rc = main(list(map(str, args)))
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return rc, err

    rc, err = cli("export", ckpt, "--out", tmp_path / "det.pt")
    assert rc == 2 and "det.pt: the output file must end in .onnx" in err
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    (tmp_path / "img.png").write_bytes(b"")
    rc, err = cli("predict", "--model", tmp_path / "bad.onnx", tmp_path / "img.png", "--out", tmp_path / "o")
    assert rc == 2 and "bad.onnx: not a readable ONNX model" in err
    rc, err = cli("predict", "--model", tmp_path / "bad.onnx", "--checkpoint", ckpt, tmp_path / "img.png", "--out", tmp_path / "o")
    assert rc == 2 and "exactly one of --checkpoint and --model" in err
    rc, err = cli("predict", "--model", tmp_path / "bad.onnx", "--flip-test", tmp_path / "img.png", "--out", tmp_path / "o")
    assert rc == 2 and "fixed when it is exported" in err
    assert not (tmp_path / "det.pt").exists() and not list(tmp_path.glob(".det*"))
