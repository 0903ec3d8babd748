"""Video files: the codec module, video-file datasets (seek, memory, corrupt frames), video prediction."""

import csv
import json
import shutil
import sys
import tracemalloc

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from conftest import tiny_config  # noqa: E402
from keypointgan import InputError  # noqa: E402
from keypointgan.data import FramePairDataset, FrameStore, Layout, load_prior  # noqa: E402
from keypointgan.io import read_image, write_image  # noqa: E402
from keypointgan.video import VIDEO_SUFFIXES, VideoFrameWarning, VideoReader, probe, video_codec, write_video  # noqa: E402


# ------------------------------------------------------------------ helpers
def stripe_frame(i: int, s: int = 32) -> np.ndarray:
    """A gray frame whose four vertical stripes spell ``i`` in base 16 (survives lossy coding)."""
    img = np.zeros((s, s, 3), np.uint8)
    for d in range(4):
        img[:, d * s // 4 : (d + 1) * s // 4] = ((i >> (4 * d)) & 15) * 16 + 8
    return img


def frame_id(img: np.ndarray) -> int:
    s = img.shape[0]
    v = 0
    for d in range(4):
        g = float(np.median(img[s // 4 : 3 * s // 4, d * s // 4 + 2 : (d + 1) * s // 4 - 2]))
        v |= (int(round((g - 8) / 16)) & 15) << (4 * d)
    return v


def corrupt_packet(src, dst, index: int) -> None:
    """Copy a video, replacing the payload of packet ``index`` (in file order) with random bytes."""
    fmt = {".avi": "avi", ".mp4": "mp4", ".mkv": "matroska"}[str(dst)[-4:]]
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        n = 0
        for pk in inp.demux(s):
            if pk.size == 0:
                continue
            if n == index:
                bad = av.Packet(bytes(np.random.default_rng(n).integers(0, 256, pk.size, dtype=np.uint8)))
                bad.pts, bad.dts, bad.time_base, bad.is_keyframe = pk.pts, pk.dts, pk.time_base, pk.is_keyframe
                pk = bad
            pk.stream = o
            out.mux(pk)
            n += 1


def video_layout(src_root, dst_root, lengths: dict, *, size: int = 64, gop: int = 25, suffix: str = ".mp4"):
    """A generic layout with video files ``videos/<id><suffix>`` of the given lengths (synthetic frames, cycled)."""
    from keypointgan.data.synthetic import _video_rng, render_video

    dst_root.mkdir(parents=True)
    shutil.copy(src_root / "skeleton.yaml", dst_root / "skeleton.yaml")
    shutil.copy(src_root / "prior.npy", dst_root / "prior.npy")
    imgs, _ = render_video(_video_rng(1, 0), 24, size)
    for vid, n in lengths.items():
        write_video(dst_root / "videos" / f"{vid}{suffix}", (imgs[t % 24] for t in range(n)), fps=25, gop_size=gop)
    return dst_root


# ------------------------------------------------------------------ codec module
@pytest.mark.parametrize("suffix", VIDEO_SUFFIXES)
def test_every_container_round_trips_and_seeks(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    n = write_video(path, (stripe_frame(i) for i in range(40)), fps=12.5, gop_size=8)
    info = probe(path)
    assert (n, info.num_frames, info.width, info.height, info.fps) == (40, 40, 32, 32, 12.5)
    with VideoReader(path) as r:
        order = [37, 3, 20, 21, 22, 39, 0, 8, 7, 15, 16]
        assert [frame_id(r.read(i)) for i in order] == order
        assert [(t, frame_id(img)) for t, img in r.frames()] == [(t, t) for t in range(40)]
        assert r.time(10) == pytest.approx(0.8)
        with pytest.raises(IndexError):
            r.read(40)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_random_access_decodes_only_from_the_keyframe_before(tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, (stripe_frame(i) for i in range(600)), gop_size=20)
    r = VideoReader(path)
    count = {"n": 0}
    decode = r._decode

    def counting():
        for item in decode():
            count["n"] += 1
            yield item

    r._decode = counting
    keys = np.flatnonzero(r._idx.key)
    assert 20 <= len(keys) <= 40  # a keyframe about every 20 frames

    def cost(i):  # frames from the keyframe at or before i to i
        return i - keys[keys <= i][-1] + 1

    k = int(keys[-5])
    for i, most in [(k + 10, cost(k + 10)), (k + 11, 1), (k + 14, 3), (k, 1), (k - 1, cost(k - 1)), (100, cost(100))]:
        count["n"] = 0
        assert frame_id(r.read(i)) == i
        assert count["n"] <= most, (i, count["n"], most)
        assert most <= 20


def test_odd_sizes_are_padded_and_h264_is_used_for_mp4(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, [np.full((15, 21, 3), 200, np.uint8)] * 3)
    info = probe(path)
    assert (info.width, info.height, info.num_frames) == (22, 16, 3)
    assert info.codec == ("h264" if video_codec(".mp4") == "libx264" else "mpeg4")
    img = VideoReader(path).read(1)
    assert abs(int(img[7, 10, 0]) - 200) <= 3 and img[15, 10].max() <= 20  # the pad row is black


def test_corrupt_frame_is_skipped_with_a_warning_naming_it(tmp_path):
    src, bad = tmp_path / "ok.avi", tmp_path / "bad.avi"
    write_video(src, (stripe_frame(i) for i in range(60)), gop_size=10)  # MPEG-4 part 2: no B-frames
    corrupt_packet(src, bad, 25)
    with pytest.warns(VideoFrameWarning, match=r"bad\.avi: frame 25 could not be decoded"):
        got = dict(VideoReader(bad).frames())
    assert sorted(got) == [t for t in range(60) if t != 25]
    # frames before the corrupt one, and from the next keyframe (30) on, decode exactly
    assert all(frame_id(got[t]) == t for t in list(range(25)) + list(range(30, 60)))
    with pytest.warns(VideoFrameWarning, match=r"bad\.avi: frame 25 could not be decoded"):
        np.testing.assert_array_equal(VideoReader(bad).read(25), got[26])  # the next decodable frame stands in


def test_bad_video_files_get_clear_errors(tmp_path, tiny_data, monkeypatch):
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    shutil.copy(tiny_data / "skeleton.yaml", root / "skeleton.yaml")
    bad = root / "videos" / "junk.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    with pytest.raises(InputError, match=r"junk\.mp4: cannot open video"):
        Layout(root)
    bad.write_bytes(b"")
    with pytest.raises(InputError, match=r"junk\.mp4: cannot open video"):
        Layout(root)
    bad.unlink()
    write_video(root / "videos" / "a.mkv", [stripe_frame(0)] * 4)
    (root / "videos" / "a").mkdir()
    write_image(root / "videos" / "a" / "0.png", stripe_frame(0))
    with pytest.raises(InputError, match="two videos have the id 'a'"):
        Layout(root)
    shutil.rmtree(root / "videos" / "a")
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(InputError, match=r"a\.mkv: .*pip install 'keypointgan\[video\]'"):
        Layout(root)


# ------------------------------------------------------------------ datasets
def test_layout_mixes_frame_folders_and_video_files(tmp_path, tiny_data):
    root = tmp_path / "mixed"
    shutil.copytree(tiny_data, root)
    lay0 = Layout(tiny_data)
    v0 = lay0.videos[0]
    # replace the second video's folder by a video file of its frames; keypoints stay valid
    v1 = lay0.videos[1]
    frames = [read_image(p) for p in v1.frames]
    shutil.rmtree(root / "videos" / v1.id)
    write_video(root / "videos" / f"{v1.id}.mov", frames, codec="mpeg4", quality=1.0)
    lay = Layout(root)
    assert [v.id for v in lay.videos] == [v.id for v in lay0.videos]
    vf = lay.videos[1]
    assert vf.file is not None and vf.frames == () and len(vf) == len(v1) == 8
    assert lay.load_keypoints(vf).shape == (8, 15, 2) and lay.has_keypoints
    store = FrameStore(lay.videos, 32, preload=True, video_cache=4)
    assert store._cache.shape[0] == lay.num_frames() - 8  # only the frame folders are preloaded
    np.testing.assert_array_equal(store.get(3), read_image(v0.frames[3]))
    for t in (5, 2, 7):
        err = [np.abs(store.get(8 + t).astype(int) - f.astype(int)).mean() for f in frames]
        assert int(np.argmin(err)) == t and err[t] < 10, err  # decoded from the file: nearest to its own frame
    assert len(store._lru) == 3 and store.original_size(9) == (32, 32)
    assert str(store.path(9)).endswith(f"{v1.id}.mov")


def test_video_dataset_trains_with_memory_independent_of_length(tmp_path, tiny_data):
    """Acceptance (issue 4): a video-file dataset trains; memory does not grow with the video's length."""
    from conftest import TinyRun

    def train_steps(root, steps, trace=True):
        torch.manual_seed(0)
        if trace:
            tracemalloc.start()
        t = TinyRun(root, tmp_path / "run", steps=steps, data_workers=0)
        batches = t.batches()
        losses = [t.step(*next(batches)).losses["loss_rec"] for _ in range(steps)]
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        lay = Layout(root)
        store = t.loader.store
        assert all(np.isfinite(losses)) and len(store._lru) <= store.video_cache
        assert store._cache is None  # nothing preloaded
        return peak, len(lay.videos[0])

    short = video_layout(tiny_data, tmp_path / "short", {"clip": 150}, size=64)
    long = video_layout(tiny_data, tmp_path / "long", {"clip": 1500}, size=64)
    train_steps(short, 1, trace=False)  # imports and one-time set-up happen outside the measurement
    # more steps on the long video: a peak can only grow with more steps, so this makes the check stricter
    (p_short, n_short), (p_long, n_long) = train_steps(short, 1), train_steps(long, 2)
    assert (n_short, n_long) == (150, 1500)
    # decoding the whole long video would hold 1500×64×64×3 = 18.4 MB (4.6 MB at the 32-px training
    # size); the measured peak may grow only by the frame index (9 bytes per frame) and noise
    assert p_long - p_short < 0.3e6, (p_short, p_long)
    assert p_long < 0.25 * 1500 * 32 * 32 * 3, (p_short, p_long)


def test_pairs_from_a_video_file_are_frames_of_that_video(tmp_path):
    path = tmp_path / "videos"
    path.mkdir()
    write_video(path / "v.mp4", (stripe_frame(i, 64) for i in range(120)), gop_size=12)
    from keypointgan.data.layout import Video

    store = FrameStore([Video.from_file("v", path / "v.mp4")], 64, video_cache=8)
    pairs = FramePairDataset(store, gap=(3, 5))
    for i in (0, 50, 119, 77):
        x, xa = pairs[i]
        a = frame_id(((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
        b = frame_id(((xa.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
        assert a == i and 3 <= abs(b - a) <= 5


# ------------------------------------------------------------------ prediction
def test_centred_moving_average_on_known_signals():
    from keypointgan.predict import CentredMovingAverage, smooth_keypoints

    t = np.arange(40, dtype=np.float64)
    ramp = 0.5 * t + 3
    wobble = np.sin(2 * np.pi * t / 5)  # period 5: a 5-frame window removes it
    pts = np.stack([ramp + wobble, -ramp], -1)[:, None, :].repeat(2, 1)  # T×2×2
    out = smooth_keypoints(pts, 5)
    np.testing.assert_allclose(out[2:-2, 0, 0], ramp[2:-2], atol=1e-5)  # interior: wobble gone, ramp kept
    np.testing.assert_allclose(out[:, 0, 1], -ramp, atol=1e-5)  # linear motion unchanged, ends included
    np.testing.assert_allclose(out[0], pts[0], atol=1e-6)  # the window shrinks to 1 at the ends
    np.testing.assert_allclose(out[1, 0, 0], pts[0:3, 0, 0].mean(), atol=1e-5)  # ... and to 3 next to them
    np.testing.assert_allclose(smooth_keypoints(pts, 1), pts, atol=1e-6)
    # NaN frames (skipped) are left out of the means; streaming holds at most h frames back
    pts[10] = np.nan
    out = smooth_keypoints(pts, 3)
    np.testing.assert_allclose(out[11, 0, 1], pts[[11, 12], 0, 1].mean(), atol=1e-5)
    np.testing.assert_allclose(out[10, 0, 1], pts[[9, 11], 0, 1].mean(), atol=1e-5)
    sm = CentredMovingAverage(7, 40)
    assert sm.push(0, pts[0]) == [] and [e[0] for e in sm.push(1, pts[1]) + sm.push(2, pts[2]) + sm.push(3, pts[3])] == [0]
    with pytest.raises(InputError, match="odd"):
        CentredMovingAverage(4, 10)


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("vidrun") / "run"
    train(tiny_data, out, config=tiny_config(steps=1, pretrain_steps=2), progress=False)
    return out / "checkpoints" / "latest.pt"


def test_predict_cli_on_a_300_frame_video(tmp_path, tiny_data, tiny_checkpoint, capsys):
    """Acceptance (issue 5): JSON, CSV and a playable overlay mp4 for a 300-frame synthetic video."""
    from keypointgan.cli import main
    from keypointgan.data.synthetic import _video_rng, render_video

    imgs, _ = render_video(_video_rng(7, 0), 30, 64)
    frames = np.concatenate([imgs, imgs[::-1]] * 5)  # 300 frames, back and forth
    video = tmp_path / "walk.mp4"
    write_video(video, frames, fps=30)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(video), "--out", str(out), "--smooth", "5", "--quiet"]) == 0
    assert "300 frame(s)" in capsys.readouterr().out

    rec = json.loads((out / "walk.json").read_text())
    names = rec["keypoint_names"]
    assert rec["num_frames"] == 300 and len(rec["frames"]) == 300 and (rec["width"], rec["height"]) == (64, 64)
    assert rec["smooth"] == {"filter": "centred moving average", "window": 5} and len(names) == 15
    f10 = rec["frames"][10]
    assert f10["frame"] == 10 and f10["time"] == pytest.approx(10 / 30) and list(f10["keypoints"]) == names
    kp = np.array([[fr["keypoints"][n] for n in names] for fr in rec["frames"]])  # 300×15×2
    raw = np.array([[fr["keypoints_raw"][n] for n in names] for fr in rec["frames"]])
    assert np.isfinite(kp).all() and (kp >= -1).all() and (kp <= 64).all()
    from keypointgan.predict import smooth_keypoints

    np.testing.assert_allclose(kp, smooth_keypoints(raw, 5), atol=2e-3)  # JSON rounds to 1e-3 px

    with open(out / "walk.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["frame", "time", f"{names[0]}_x", f"{names[0]}_y"] and len(rows) == 301
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 2:32].reshape(300, 15, 2), kp, atol=2e-3)  # then 15 _conf columns

    # the overlay decodes back: 300 frames, 4× upscaled, skeleton drawn where the keypoints are
    info = probe(out / "walk_overlay.mp4")
    assert (info.num_frames, info.width, info.height, info.fps) == (300, 256, 256, 30.0)
    with VideoReader(out / "walk_overlay.mp4") as r, VideoReader(video) as src:
        for t in (0, 149, 299):
            ov, orig = r.read(t).astype(int), src.read(t).astype(int)
            up = orig.repeat(4, 0).repeat(4, 1)
            dots = np.round((kp[t] + 0.5) * 4 - 0.5).astype(int).clip(0, 255)
            at_dots = np.abs(ov[dots[:, 1], dots[:, 0]] - up[dots[:, 1], dots[:, 0]]).sum(-1)
            assert np.median(at_dots) > 60, at_dots  # the keypoint dots differ from the frame
            far = np.ones((256, 256), bool)
            for x, y in dots:
                far[max(0, y - 40) : y + 40, max(0, x - 40) : x + 40] = False
            if far.any():  # away from the skeleton the overlay is the (upscaled) frame
                assert np.abs(ov[far] - up[far]).mean() < 8


def test_predict_video_api_skips_a_corrupt_frame(tmp_path, tiny_checkpoint):
    from keypointgan import KeypointDetector
    from keypointgan.predict import predict_video

    src, bad = tmp_path / "ok.avi", tmp_path / "clip.avi"
    write_video(src, (stripe_frame(i, 32) for i in range(40)), gop_size=10)
    corrupt_packet(src, bad, 17)
    det = KeypointDetector.from_checkpoint(tiny_checkpoint)
    with pytest.warns(VideoFrameWarning, match=r"clip\.avi: frame 17 could not be decoded"):
        res = predict_video(det, bad, tmp_path / "out", smooth=3, batch_size=8)
    assert res["frames"] == 40 and res["skipped"] == [17]
    rec = json.loads(res["json"].read_text())
    assert rec["frames"][17] == {"frame": 17, "time": pytest.approx(17 / 25), "skipped": True, "keypoints": None}
    assert rec["frames"][18]["keypoints"] is not None
    rows = (tmp_path / "out" / "clip.csv").read_text().splitlines()
    assert rows[18].split(",")[2:] == [""] * 45  # x, y and confidence of 15 keypoints
    assert probe(res["overlay"]).num_frames == 39
    # the keypoints of the decodable frames equal an image-by-image prediction
    frames = dict(VideoReader(src).frames())
    raw = np.array([[rec["frames"][t]["keypoints_raw"][n] for n in det.skeleton.keypoints] for t in (3, 30)])
    np.testing.assert_allclose(raw, det.predict([frames[3], frames[30]]), atol=2e-3)


def test_predict_video_errors(tmp_path, tiny_checkpoint):
    from keypointgan.cli import main

    write_video(tmp_path / "a.mp4", [stripe_frame(0)] * 3)
    (tmp_path / "junk.mkv").write_bytes(b"\x00" * 100)
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "junk.mkv"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o" / "junk.json").exists()
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "a.mp4"), "--out", str(tmp_path / "o"), "--smooth", "4"])
    write_image(tmp_path / "a.png", stripe_frame(0))
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "a.mp4"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2


def test_evaluate_on_video_files(tmp_path, tiny_data, tiny_checkpoint):
    """Evaluation on a layout where some videos are files: the same errors as on their PNG frames."""
    from keypointgan.api import evaluate

    root = tmp_path / "vids"
    shutil.copytree(tiny_data, root)
    lay0 = Layout(tiny_data)
    for v in lay0.videos[:2]:  # two of the four videos become video files (near-lossless)
        frames = [read_image(p) for p in v.frames]
        shutil.rmtree(root / "videos" / v.id)
        write_video(root / "videos" / f"{v.id}.mkv", frames, quality=1.0)
    a, b = evaluate(tiny_checkpoint, root), evaluate(tiny_checkpoint, tiny_data)
    assert a["n_frames"] == b["n_frames"] == 32 and list(a["per_video"]) == list(b["per_video"])
    for vid in a["per_video"]:  # the same frames, decoded from a file or read from PNGs: about the same errors
        assert a["per_video"][vid]["error"] == pytest.approx(b["per_video"][vid]["error"], abs=0.5)


def test_predict_video_without_overlay_and_without_pyav(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from keypointgan.cli import main

    write_video(tmp_path / "b.webm", (stripe_frame(i) for i in range(6)))
    args = ["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "b.webm"), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args + ["--no-overlay"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b.csv", "b.json"]
    assert len(json.loads((tmp_path / "o" / "b.json").read_text())["frames"]) == 6
    monkeypatch.setitem(sys.modules, "av", None)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("b.webm: reading or writing video files needs PyAV: pip install 'keypointgan[video]'") and "\n" not in err


def test_predict_video_leaves_nothing_half_written(tmp_path, tiny_checkpoint, monkeypatch):
    from keypointgan import KeypointDetector
    from keypointgan.predict import predict_video

    write_video(tmp_path / "c.mp4", (stripe_frame(i) for i in range(20)))
    det = KeypointDetector.from_checkpoint(tiny_checkpoint)
    calls = {"n": 0}
    predict = det.predict_with_confidence

    def failing(images, batch_size=64):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return predict(images, batch_size)

    monkeypatch.setattr(det, "predict_with_confidence", failing)
    with pytest.raises(KeyboardInterrupt):
        predict_video(det, tmp_path / "c.mp4", tmp_path / "out", batch_size=8)
    assert list((tmp_path / "out").iterdir()) == []  # no partial JSON, CSV or mp4, no temporary files
