"""Dataset readers on video files: full Human3.6M's ``Videos/<seq>.mp4`` and 300-VW's ``<id>/vid.avi``.

The fixture videos carry their frame number as a bar code (8 vertical stripes,
black or white, one bit each), which survives lossy compression, so every test
checks that frame ``t`` of a :class:`Video` is the right frame of its file.
"""

import json

import numpy as np
import pytest
from PIL import Image

from keypointgan.errors import InputError

pytest.importorskip("av")

W, H = 64, 48  # not square: the prior's (x / W, y / H) normalisation is checked too


def coded(k: int, h: int = H, w: int = W) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    for b in range(8):
        if (k >> b) & 1:
            img[:, b * w // 8 : (b + 1) * w // 8] = 225
    return img


def decode(img: np.ndarray) -> int:
    """The frame number in a (possibly resized to S×S) coded frame."""
    w = img.shape[1]
    cols = [img[:, b * w // 8 + 2 : (b + 1) * w // 8 - 2].mean() for b in range(8)]
    assert all(c < 70 or c > 185 for c in cols), cols  # clean stripes: the frame decoded properly
    return sum(1 << b for b in range(8) if cols[b] > 128)


def write_coded_video(path, codes, **kw):
    from keypointgan.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (coded(k) for k in codes), fps=50, gop_size=4, **kw)


# ------------------------------------------------------------------ full Human3.6M
def write_cdf(path, poses):
    from cdflib.cdfwrite import CDF

    path.parent.mkdir(parents=True, exist_ok=True)
    c = CDF(str(path), cdf_spec={"Majority": "Row_major"}, delete=True)
    t = poses.shape[0]
    spec = {"Variable": "Pose", "Data_Type": 45, "Num_Elements": 1, "Rec_Vary": True, "Dim_Sizes": [t, 64]}
    c.write_var(spec, var_attrs={}, var_data=poses.reshape(1, t, 64).astype(np.float64))
    c.close()


# (subject, sequence): (frames in the video, poses in the .cdf, extracted frame folder too)
H36M = {
    ("S1", "Directions 1.54138969"): (23, 23, False),
    ("S1", "Eating.54138969"): (None, 5, False),  # not a protocol activity: needs no video
    ("S11", "Walking.55011271"): (17, 16, False),  # one frame more than poses: the shorter wins
    ("S11", "Greeting.55011271"): (7, 7, True),  # frames extracted next to the video: the folder is read
}


@pytest.fixture(scope="module")
def h36m_videos(tmp_path_factory):
    pytest.importorskip("cdflib")
    root = tmp_path_factory.mktemp("h36m_video")
    rng = np.random.default_rng(5)
    poses = {}
    for (subj, seq), (n_video, n_pose, folder) in H36M.items():
        poses[(subj, seq)] = rng.uniform(2, 40, (n_pose, 32, 2))
        write_cdf(root / subj / "MyPoseFeatures" / "D2_Positions" / f"{seq}.cdf", poses[(subj, seq)])
        if n_video is not None:
            write_coded_video(root / subj / "Videos" / f"{seq}.mp4", range(100, 100 + n_video) if folder else range(n_video))
        if folder:  # the folder's frames carry numbers 0.., the video's 100..: which one is read shows
            (root / subj / "Videos" / seq).mkdir()
            for k in range(n_video):
                Image.fromarray(coded(k)).save(root / subj / "Videos" / seq / f"{k + 1:06d}.png")
    return root, poses


def test_human36m_reads_the_mp4_at_the_protocol_frames(h36m_videos):
    from keypointgan.data import open_dataset
    from keypointgan.data.datasets import FrameStore
    from keypointgan.data.human36m import Human36M

    root, poses = h36m_videos
    b = open_dataset(root, frame_step=3)
    assert b.name == "human36m"
    # training: the first half of frames 0, 3, …, 21 of the 23-frame video, read from the .mp4 itself
    (train,) = b.videos
    assert train.id == "S1/Directions 1.54138969/first" and train.file == root / "S1" / "Videos" / "Directions 1.54138969.mp4"
    assert train.frames == () and train.num_frames == 23 and train.frame_ids == (0, 3, 6, 9) and len(train) == 4
    # the prior: poses of the second half (frames 12, 15, 18, 21) in the prior unit ((x + 0.5) / W, (y + 0.5) / H)
    np.testing.assert_allclose(b.load_prior(), (poses[("S1", "Directions 1.54138969")][[12, 15, 18, 21]] + 0.5) / [W, H], atol=1e-5)
    (second,) = Human36M(root, frame_step=3).prior_videos()
    assert second.frame_ids == (12, 15, 18, 21)
    # test: every 3rd frame of S11; Walking's video has 17 frames and its poses 16: frames 0 .. 15
    walk, greet = sorted(b.test_videos, key=lambda v: v.id, reverse=True)
    assert walk.id == "S11/Walking.55011271/full" and walk.frame_ids == (0, 3, 6, 9, 12, 15)
    assert any("S11/Walking.55011271: the video has 17 frames, the pose file 16" in n for n in b.notes)
    np.testing.assert_allclose(b.load_keypoints(walk), poses[("S11", "Walking.55011271")][[0, 3, 6, 9, 12, 15]], atol=1e-4)
    # Greeting has extracted frames next to its video: the folder is used (frames 1, 4, 7 of 000001.png ..)
    assert greet.file is None and [f.name for f in greet.frames] == ["000001.png", "000004.png", "000007.png"]
    # every frame a Video returns is the right frame of its file, read in random order (seeking back and forth)
    videos = [train, second, walk, greet]
    store = FrameStore(videos, 64, preload=False, video_cache=2)
    want = list(train.frame_ids) + list(second.frame_ids) + list(walk.frame_ids) + [0, 3, 6]
    order = np.random.default_rng(0).permutation(len(store))
    got = {int(i): decode(store.get(int(i))) for i in order}
    assert [got[i] for i in range(len(store))] == want
    assert store.original_size(0) == (H, W)


def test_human36m_video_errors_name_the_file(h36m_videos, tmp_path):
    import shutil

    from keypointgan.data import open_dataset

    root, _ = h36m_videos
    d = tmp_path / "ds"
    shutil.copytree(root, d)
    bad = d / "S11" / "Videos" / "Walking.55011271.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 but the rest is missing")
    with pytest.raises(InputError, match="cannot (open|read) video") as e:
        open_dataset(d, frame_step=3)
    assert str(bad) in str(e.value)
    bad.unlink()
    with pytest.raises(InputError, match="no video file for the pose file Walking.55011271.cdf") as e:
        open_dataset(d, frame_step=3)
    assert str(bad) in str(e.value)


def test_human36m_video_trains_two_steps(h36m_videos, tmp_path, monkeypatch):
    """``keypointgan train --preset human36m`` on the .mp4 fixture (the preset shrunk to test widths)."""
    import torch

    import keypointgan.config as C
    from conftest import tiny_config
    from keypointgan.cli import main

    monkeypatch.setitem(C.PRESETS, "human36m", {**tiny_config().to_dict(), "steps": None})
    root, _ = h36m_videos
    run = tmp_path / "run"
    args = ["train", "--preset", "human36m", "--data", str(root), "--out", str(run), "--steps", "2", "--batch-size", "2", "--quiet"]
    assert main(args) == 0
    assert torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)["step"] == 2


# ------------------------------------------------------------------ 300-VW
def write_pts(path, xy):
    path.write_text("version: 1\nn_points:  68\n{\n" + "".join(f"{x + 1:.3f} {y + 1:.3f}\n" for x, y in xy) + "}\n")


def test_300vw_reads_vid_avi(tmp_path):
    from keypointgan.api import evaluate_predictions
    from keypointgan.data import open_dataset
    from keypointgan.data.datasets import FrameStore

    rng = np.random.default_rng(6)
    truth = {"001": rng.uniform(5, 40, (6, 68, 2)), "002": rng.uniform(5, 40, (3, 68, 2))}
    # 001: the dataset as shipped, vid.avi + annot/000001.pts … (frame 4 has no annotation)
    write_coded_video(tmp_path / "001" / "vid.avi", range(6))
    (tmp_path / "001" / "annot").mkdir()
    for t in (0, 1, 2, 4, 5):
        write_pts(tmp_path / "001" / "annot" / f"{t + 1:06d}.pts", truth["001"][t])
    # 002: frames extracted to frames/ (used instead of the video)
    (tmp_path / "002" / "annot").mkdir(parents=True)
    (tmp_path / "002" / "frames").mkdir()
    (tmp_path / "002" / "vid.avi").write_bytes(b"not read: frames/ is there")
    for t in range(3):
        Image.fromarray(coded(t + 10)).save(tmp_path / "002" / "frames" / f"{t + 1:06d}.png")
        write_pts(tmp_path / "002" / "annot" / f"{t + 1:06d}.pts", truth["002"][t])
    b = open_dataset(tmp_path)
    assert b.name == "300vw"
    v1, v2 = b.test_videos
    assert v1.file == tmp_path / "001" / "vid.avi" and len(v1) == 6 and v1.frame_ids is None
    assert v2.file is None and len(v2) == 3
    store = FrameStore([v1, v2], 64, preload=False)
    assert [decode(store.get(i)) for i in (5, 0, 3, 8, 6, 1)] == [5, 0, 3, 12, 10, 1]
    # frame t of vid.avi gets annot/<t + 1>.pts; the unannotated frame is NaN
    kp = b.load_keypoints(v1)
    np.testing.assert_allclose(kp[[0, 1, 2, 4, 5]], truth["001"][[0, 1, 2, 4, 5]], atol=1e-3)
    assert np.isnan(kp[3]).all()
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"001": np.nan_to_num(kp).tolist(), "002": truth["002"].tolist()}))
    assert evaluate_predictions(preds, tmp_path)["error_flip"] == pytest.approx(0.0, abs=1e-2)
    # a broken vid.avi (no frames/ next to it) is one clear error naming the file
    bad = tmp_path / "001" / "vid.avi"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST truncated")
    with pytest.raises(InputError, match="cannot (open|read) video|holds no") as e:
        open_dataset(tmp_path)
    assert str(bad) in str(e.value)
    bad.unlink()
    with pytest.raises(InputError, match="no video file .vid.avi. and no extracted frames") as e:
        open_dataset(tmp_path)
    assert str(tmp_path / "001") in str(e.value)


def test_video_frame_ids_are_checked(tmp_path):
    from keypointgan.data.layout import Video

    path = tmp_path / "clip.mp4"
    write_coded_video(path, range(5))
    v = Video.from_file("clip", path, frame_ids=[4, 1])
    assert len(v) == 2 and v.file_frame(0) == 4 and v.num_frames == 5
    with pytest.raises(ValueError, match=r"frame_ids \[5\] outside the file's 5 frames"):
        Video.from_file("clip", path, frame_ids=[0, 5])
    with pytest.raises(ValueError, match="has no file"):
        Video("x", (path,), None, frame_ids=(0,))
