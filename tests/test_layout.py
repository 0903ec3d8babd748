import numpy as np
import pytest
import torch

from keypointgan import InputError, Skeleton
from keypointgan.data.datasets import mirror_half
from keypointgan.data import EvalFrameDataset, FramePairDataset, FrameStore, Layout, PriorPoseDataset, augment_poses, load_prior
from keypointgan.io import write_image

SK = Skeleton(keypoints=["a", "b", "c"], limbs=[("a", "b"), ("b", "c")], symmetric=[("a", "c")], name="tri")


def make_layout(root, videos=2, frames=5, size=16, with_kp=True):
    SK.to_yaml(root / "skeleton.yaml")
    for v in range(videos):
        for t in range(frames):
            img = np.full((size, size, 3), 10 * t + 100 * v, dtype=np.uint8)
            write_image(root / "videos" / f"vid{v}" / f"frame_{t * 5}.png", img)  # 0,5,10,...: numeric sort
        if with_kp:
            kp = np.tile(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32), (frames, 1, 1)) + v
            (root / "keypoints").mkdir(exist_ok=True)
            np.save(root / "keypoints" / f"vid{v}.npy", kp)
    np.save(root / "prior.npy", np.random.default_rng(0).random((7, 3, 2)).astype(np.float32))
    return root


def test_layout_reads_videos_in_numeric_frame_order(tmp_path):
    make_layout(tmp_path, frames=12)
    lay = Layout(tmp_path)
    assert [v.id for v in lay.videos] == ["vid0", "vid1"]
    names = [p.name for p in lay.videos[0].frames]
    assert names[:3] == ["frame_0.png", "frame_5.png", "frame_10.png"]
    assert lay.has_keypoints and lay.num_frames() == 24
    assert lay.load_keypoints(lay.videos[1]).shape == (12, 3, 2)
    assert lay.skeleton == SK


def test_frame_pairs_respect_gap_and_video(tmp_path):
    make_layout(tmp_path, frames=10)
    store = FrameStore(Layout(tmp_path).videos, 8)
    ds = FramePairDataset(store, gap=(2, 3), seed=1)
    for i in range(len(ds)):
        j = ds.partner(i)
        assert store.locate(i)[0] == store.locate(j)[0]
        assert 2 <= abs(i - j) <= 3
    x, xa = ds[3]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    v, t = store.locate(3)
    assert x[0, 0, 0].item() == pytest.approx((10 * t + 100 * v) / 127.5 - 1)
    assert ds.partner(3) == FramePairDataset(store, gap=(2, 3), seed=1).partner(3)  # deterministic


def test_appearance_frames_drawn_uniformly_from_the_gap_range(tmp_path):
    make_layout(tmp_path, frames=10)
    store = FrameStore(Layout(tmp_path).videos, 16)
    ds = FramePairDataset(store, gap=(1, 1000), seed=2)
    counts = np.bincount([ds.partner(0, epoch=e) for e in range(3000)], minlength=10)
    assert counts[0] == 0 and counts[10:].sum() == 0  # never itself, never another video
    np.testing.assert_allclose(counts[1:] / 3000, np.full(9, 1 / 9), atol=0.025)


def test_prior_and_eval(tmp_path):
    make_layout(tmp_path)
    prior = load_prior(tmp_path / "prior.npy", SK)
    pd = PriorPoseDataset(prior, 16)
    assert pd[0].shape == (3, 2)
    # the prior unit puts pixel edges at 0 and 1: pixel (u · 16 − 0.5) of the 16-px grid
    assert torch.allclose(pd[0], torch.from_numpy(2 * (prior[0] * 16 - 0.5) / 15 - 1))
    ev = EvalFrameDataset(Layout(tmp_path), 8)
    img, kp, hw, vid = ev[6]
    assert img.shape == (3, 8, 8) and tuple(hw.tolist()) == (16, 16) and vid == 1
    assert kp[0].tolist() == [2.0, 3.0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: np.save(r / "prior.npy", np.zeros((4, 5, 2), np.float32)), "K=5 keypoints but the skeleton 'tri' has 3"),
        (lambda r: np.save(r / "prior.npy", np.full((4, 3, 2), np.nan, np.float32)), "NaN"),
        (lambda r: np.save(r / "prior.npy", np.full((4, 3, 2), 40.0, np.float32)), "look like pixel coordinates"),
        (lambda r: np.save(r / "prior.npy", np.zeros((4, 3), np.float32)), "shape (N, K, 2)"),
        (lambda r: (r / "prior.npy").write_bytes(b"not a numpy file"), "cannot read prior"),
    ],
)
def test_bad_prior(tmp_path, mutate, message):
    make_layout(tmp_path)
    mutate(tmp_path)
    with pytest.raises(InputError) as e:
        load_prior(tmp_path / "prior.npy", SK)
    assert message in str(e.value) and "prior.npy" in str(e.value)


def test_bad_layouts(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Layout(tmp_path / "nope")
    with pytest.raises(InputError, match="no videos/ folder"):
        Layout(tmp_path)
    (tmp_path / "videos").mkdir()
    SK.to_yaml(tmp_path / "skeleton.yaml")
    with pytest.raises(InputError, match="holds no video folders"):
        Layout(tmp_path)


def test_unreadable_image_names_file(tmp_path):
    make_layout(tmp_path)
    bad = tmp_path / "videos" / "vid0" / "frame_5.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputError) as e:
        FrameStore(Layout(tmp_path).videos, 8)
    assert str(bad) in str(e.value) and "cannot read image" in str(e.value)


def test_mirror_half_mirrors_pairs_together():
    """Image i is mirrored in both batches or in neither; about half are; the pixels are exactly flipped."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(400, 3, 4, 5)
    y = torch.rand(400, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    a, b = mirror_half(g, x, y)
    ma = (a == x.flip(-1)).flatten(1).all(1)
    mb = (b == y.flip(-1)).flatten(1).all(1)
    assert torch.equal(ma, mb)
    assert torch.equal(a[~ma], x[~ma]) and torch.equal(b[~mb], y[~mb])
    assert 160 < int(ma.sum()) < 240
    a2, _ = mirror_half(torch.Generator().manual_seed(3), x, y)
    assert torch.equal(a, a2)  # the draw comes from the generator alone


def test_augment_poses_is_similarity_and_flip_swaps():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(64, 3, 2) - 0.5
    out = augment_poses(pts, g, rotate_deg=30, scale=(0.5, 1.5), translate=0.2)
    # distances scale uniformly within a pose: ratio of two limb lengths is preserved
    r_in = (pts[:, 0] - pts[:, 1]).norm(dim=-1) / (pts[:, 1] - pts[:, 2]).norm(dim=-1)
    r_out = (out[:, 0] - out[:, 1]).norm(dim=-1) / (out[:, 1] - out[:, 2]).norm(dim=-1)
    assert torch.allclose(r_in, r_out, rtol=1e-4)
    assert not torch.allclose(out, pts)
    flipped = augment_poses(pts, g, rotate_deg=0, scale=(1, 1), translate=0, flip=True, flip_permutation=[2, 1, 0])
    changed = ~torch.isclose(flipped, pts).all(-1).all(-1)
    assert 10 < int(changed.sum()) < 54
    i = int(changed.nonzero()[0])
    assert torch.allclose(flipped[i, 0, 0], -pts[i, 2, 0])


def test_the_generic_layout_is_a_format_like_the_others(tmp_path):
    """Trains on every video, tests on those with keypoints (each its own group), the prior from ROOT/prior.npy."""
    from keypointgan.api import evaluate_predictions
    from keypointgan.data import VideoDataset, open_dataset

    make_layout(tmp_path, videos=3)
    (tmp_path / "keypoints" / "vid1.npy").unlink()
    ds = open_dataset(tmp_path)
    assert isinstance(ds, VideoDataset) and ds.name == "generic" and ds.metric == "image" and ds.group_name == "video"
    assert [v.id for v in ds.videos] == ["vid0", "vid1", "vid2"] and [v.id for v in ds.test_videos] == ["vid0", "vid2"]
    assert [ds.group_of(v) for v in ds.test_videos] == ["vid0", "vid2"]
    np.testing.assert_array_equal(ds.load_prior(), np.load(tmp_path / "prior.npy"))
    assert ds.load_keypoints(ds.test_videos[1])[0, 0].tolist() == [3.0, 4.0]
    # scored with the protocol: the stored truth itself has error 0 on the two videos with keypoints
    preds = {v.id: ds.load_keypoints(v) for v in ds.test_videos}
    np.savez(tmp_path / "p.npz", **preds)
    res = evaluate_predictions(tmp_path / "p.npz", tmp_path)
    assert res["format"] == "generic" and res["error"] == 0.0 and sorted(res["per_video"]) == ["vid0", "vid2"]
