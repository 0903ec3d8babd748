"""Tests for the built-in synthetic video dataset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keypointgan.errors import InputError
from keypointgan.skeleton import SYNTHETIC_KEYPOINTS, Skeleton, preset
from keypointgan.data import synthetic as syn
from keypointgan.data.synthetic import SyntheticConfig, make_synthetic, render_video, sample_poses

K = len(SYNTHETIC_KEYPOINTS)
TINY = dict(videos=3, frames=8, size=32, prior=60)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "data"
    make_synthetic(out, SyntheticConfig(seed=3, **TINY), preview=True, workers=1)
    return out


# ----------------------------------------------------------------- rendering
def test_render_shapes_dtypes_ranges():
    images, kp = render_video(rng(0), 8, 32)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    assert kp.shape == (8, K, 2) and kp.dtype == np.float32
    assert np.isfinite(kp).all()
    assert kp.min() >= 0.0 and kp.max() <= 31.0
    # other sizes keep the figure inside the frame too
    for size in (16, 48, 80):
        images, kp = render_video(rng(size), 5, size)
        assert images.shape == (5, size, size, 3)
        assert kp.min() >= 0.0 and kp.max() <= size - 1


def test_render_deterministic_and_seed_dependent():
    a_img, a_kp = render_video(rng(7), 6, 32)
    b_img, b_kp = render_video(rng(7), 6, 32)
    c_img, c_kp = render_video(rng(8), 6, 32)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_kp, b_kp)
    assert not np.array_equal(a_img, c_img)
    assert not np.allclose(a_kp, c_kp)


def test_motion_is_smooth_and_moving():
    _, kp = render_video(rng(1), 40, 64)
    step = np.linalg.norm(np.diff(kp, axis=0), axis=-1)  # per joint, per frame (pixels)
    assert step.max() < 8.0  # no jumps
    span = kp.max(0) - kp.min(0)
    assert span.max() > 2.0  # something moves


def test_figure_height_fraction():
    heights = []
    for s in range(30):
        _, kp = render_video(rng(100 + s), 4, 64)
        heights.append((kp[..., 1].max(1) - kp[..., 1].min(1)).mean() / 64)
    heights = np.array(heights)
    # head centre to ankle; the whole figure (head top, feet) is a little taller
    assert 0.4 < heights.min() and heights.max() < 0.9
    assert 0.5 < heights.mean() < 0.8


def test_figure_is_drawn_at_the_keypoints():
    """Pixels at limb joints differ from the background far more often than far-away pixels."""
    size = 32
    hits_joint, hits_far = [], []
    joints = [SYNTHETIC_KEYPOINTS.index(n) for n in
              ("head", "pelvis", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_knee", "r_knee", "l_ankle", "r_ankle")]
    yy, xx = np.mgrid[0:size, 0:size]
    for s in range(12):
        images, kp, bg = render_video(rng(200 + s), 6, size, return_background=True)
        diff = np.abs(images.astype(np.float32) - bg[None]).max(-1)  # (T, H, W)
        changed = diff > 25.0  # frame noise is at most a few grey levels
        for t in range(images.shape[0]):
            ij = np.rint(kp[t, joints]).astype(int)
            hits_joint.extend(changed[t, ij[:, 1], ij[:, 0]].tolist())
            d = np.sqrt((xx[..., None] - kp[t, :, 0]) ** 2 + (yy[..., None] - kp[t, :, 1]) ** 2).min(-1)
            far = d > 0.25 * size
            hits_far.extend(changed[t][far].tolist())
    p_joint, p_far = np.mean(hits_joint), np.mean(hits_far)
    assert p_joint > 0.8, p_joint
    assert p_far < 0.05, p_far


def test_limbs_drawn_between_joints():
    """The midpoints of the thighs and upper arms are covered by the figure."""
    size = 48
    hits = []
    pairs = [("l_hip", "l_knee"), ("r_hip", "r_knee"), ("neck", "pelvis"), ("l_shoulder", "l_elbow")]
    idx = [(SYNTHETIC_KEYPOINTS.index(a), SYNTHETIC_KEYPOINTS.index(b)) for a, b in pairs]
    for s in range(8):
        images, kp, bg = render_video(rng(300 + s), 5, size, return_background=True)
        changed = np.abs(images.astype(np.float32) - bg[None]).max(-1) > 25.0
        for i, j in idx:
            mid = np.rint(0.5 * (kp[:, i] + kp[:, j])).astype(int)
            hits.extend(changed[np.arange(len(mid)), mid[:, 1], mid[:, 0]].tolist())
    assert np.mean(hits) > 0.8


# --------------------------------------------------------------------- prior
def test_sample_poses_shapes_and_determinism():
    p = sample_poses(rng(0), 25, 64)
    assert p.shape == (25, K, 2) and p.dtype == np.float32
    assert p.min() >= 0 and p.max() <= 63
    assert np.array_equal(p, sample_poses(rng(0), 25, 64))
    assert not np.allclose(p, sample_poses(rng(1), 25, 64))
    assert len(np.unique(p.reshape(25, -1), axis=0)) == 25


# -------------------------------------------------------------------- on disk
def test_layout(dataset):
    cfg = SyntheticConfig(seed=3, **TINY)
    assert Skeleton.from_yaml(dataset / "skeleton.yaml") == preset("synthetic")
    vids = sorted(p.name for p in (dataset / "videos").iterdir())
    assert vids == ["v0000", "v0001", "v0002"]
    for i, vid in enumerate(vids):
        frames = sorted(p.name for p in (dataset / "videos" / vid).iterdir())
        assert frames == [f"{f:06d}.png" for f in range(cfg.frames)]
        kp = np.load(dataset / "keypoints" / f"{vid}.npy")
        assert kp.shape == (cfg.frames, K, 2) and kp.dtype == np.float32
        assert kp.min() >= 0 and kp.max() <= cfg.size - 1
        # the files are exactly what render_video gives for this video's stream
        images, ref = render_video(syn._video_rng(cfg.seed, i), cfg.frames, cfg.size)
        assert np.array_equal(kp, ref)
        with Image.open(dataset / "videos" / vid / "000005.png") as im:
            arr = np.asarray(im)
        assert arr.shape == (cfg.size, cfg.size, 3) and arr.dtype == np.uint8
        assert np.array_equal(arr, images[5])
    prior = np.load(dataset / "prior.npy")
    assert prior.shape == (cfg.prior, K, 2) and prior.dtype == np.float32
    assert prior.min() >= 0.0 and prior.max() <= 1.0
    # in the prior unit (pixel edges at 0 and 1)
    poses = syn.sample_poses(syn._prior_rng(cfg.seed), cfg.prior, cfg.size, frames=cfg.frames)
    np.testing.assert_allclose(prior, np.clip((poses + 0.5) / cfg.size, 0, 1), atol=1e-7)
    with Image.open(dataset / "preview.png") as im:
        assert im.size[0] > cfg.size and im.size[1] > cfg.size
    # nothing else (no temporary files) was left behind
    assert sorted(p.name for p in dataset.iterdir()) == ["keypoints", "preview.png", "prior.npy", "skeleton.yaml", "videos"]
    assert not [p for p in dataset.rglob(".*")]
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")]


def test_prior_is_not_copied_from_training_poses(dataset):
    prior = np.load(dataset / "prior.npy")
    train = (np.concatenate([np.load(p) for p in sorted((dataset / "keypoints").iterdir())]) + 0.5) / 32.0
    # mean per-joint distance from each prior pose to its nearest training pose
    d = np.linalg.norm(prior[:, None] - train[None], axis=-1).mean(-1).min(1)
    assert d.min() > 1e-3
    # but it comes from the same distribution: similar mean pose
    assert np.abs(prior.mean(0) - train.mean(0)).max() < 0.15


def test_identical_output_for_same_config_and_any_workers(dataset, tmp_path):
    out = make_synthetic(tmp_path / "again", SyntheticConfig(seed=3, **TINY), workers=2)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file() and p.name != "preview.png")
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (dataset / rel).read_bytes() == (out / rel).read_bytes(), rel
    other = make_synthetic(tmp_path / "other", SyntheticConfig(seed=4, **TINY), workers=1)
    assert (other / "prior.npy").read_bytes() != (out / "prior.npy").read_bytes()
    assert (other / "keypoints" / "v0000.npy").read_bytes() != (out / "keypoints" / "v0000.npy").read_bytes()


def test_existing_output(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        make_synthetic(full, SyntheticConfig(videos=1, frames=2, size=16, prior=2), workers=1)
    assert (full / "x.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(InputError):
        make_synthetic(afile, SyntheticConfig(videos=1, frames=2, size=16, prior=2), workers=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    make_synthetic(empty, SyntheticConfig(videos=1, frames=2, size=16, prior=2), workers=1)
    assert (empty / "prior.npy").is_file()


def test_crash_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def boom(job):
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return orig(job)

    orig = syn._make_one
    monkeypatch.setattr(syn, "_make_one", boom)
    with pytest.raises(RuntimeError):
        make_synthetic(tmp_path / "out", SyntheticConfig(videos=3, frames=2, size=16, prior=2), workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=8),
        dict(size=15),
        dict(videos=0),
        dict(frames=0),
        dict(prior=0),
        dict(seed=-1),
        dict(size=64.0),
        dict(videos="3"),
        dict(frames=True),
    ],
)
def test_bad_config(kwargs):
    with pytest.raises(InputError):
        SyntheticConfig(**kwargs)


def test_bad_workers_and_config_type(tmp_path):
    with pytest.raises(InputError):
        make_synthetic(tmp_path / "a", SyntheticConfig(videos=1, frames=1, size=16, prior=1), workers=0)
    with pytest.raises(InputError):
        make_synthetic(tmp_path / "b", {"videos": 1})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_variants_change_what_they_say():
    """The generalisation suite's knobs (benchmarks/fidelity.py), each against the default on the same seeds."""
    from keypointgan.data.synthetic import DEFAULT_VARIANT, _video_rng

    def videos(variant, n=6, frames=12):
        return [render_video(_video_rng(3, i), frames, 48, variant=variant, return_background=True) for i in range(n)]

    base = videos(DEFAULT_VARIANT)
    step = lambda vs: np.mean([np.abs(np.diff(kp, axis=0)).mean() for _, kp, _ in vs])  # noqa: E731
    height = lambda vs: np.mean([np.ptp(kp[..., 1], axis=1).mean() for _, kp, _ in vs])  # noqa: E731
    assert step(videos((3.0, 1.0, 1.0, "cluttered"))) > 2 * step(base)  # fast motion: larger steps per frame
    assert step(videos((0.3, 1.0, 1.0, "cluttered"))) < 0.5 * step(base)
    assert height(videos((1.0, 0.5, 1.0, "cluttered"))) == pytest.approx(0.5 * height(base), rel=0.1)  # the camera twice as far
    plain = videos((1.0, 1.0, 1.0, "plain"))
    assert all(np.ptp(bg.reshape(-1, 3), axis=0).max() == 0 for _, _, bg in plain)
    assert all(bg.reshape(-1, 3).std(0).max() > 5 for _, _, bg in base)
    # proportions: the same draws moved towards (0) or away from (2) the middle of each range
    thighs = {sp: np.array([syn._sample_body(np.random.default_rng(i), sp)["thigh"] for i in range(50)]) for sp in (0.0, 1.0, 2.0)}
    assert thighs[0.0].std() < 1e-12
    assert thighs[2.0].std() == pytest.approx(2 * thighs[1.0].std(), rel=1e-6)


def test_variant_values_are_checked():
    for bad in (dict(motion_speed=0), dict(figure_scale=-1), dict(proportion_spread=float("nan")), dict(background="sky")):
        with pytest.raises(InputError, match="synthetic config"):
            SyntheticConfig(**bad)
