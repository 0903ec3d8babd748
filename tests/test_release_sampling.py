"""The release's pair sampling (``pair_sampling: release``) on constructed videos whose draw frequencies are known."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from keypointgan import InputError
from keypointgan.config import make_config
from keypointgan.data.datasets import FramePairDataset
from keypointgan.data.loader import PairBatchSampler

LENGTHS = (2, 8)  # two videos: frames 0–1 and 2–9
OFFSETS = np.cumsum([0, *LENGTHS])


def _store():
    def locate(i):
        v = int(np.searchsorted(OFFSETS, i, side="right") - 1)
        return v, int(i - OFFSETS[v])

    return SimpleNamespace(videos=[range(n) for n in LENGTHS], offsets=OFFSETS, locate=locate)


def test_release_targets_are_video_uniform():
    n, epochs = int(OFFSETS[-1]), 2000
    sampler = PairBatchSampler(n, 2, seed=0, video_offsets=OFFSETS)
    frames = np.concatenate([sampler.epoch_order(e).numpy() for e in range(epochs)])
    freq = np.bincount(frames, minlength=n) / len(frames)
    # each video half the draws, each of its frames an equal share: 1/4 for the 2-frame video, 1/16 for the 8-frame one
    np.testing.assert_allclose(freq, [1 / 4] * 2 + [1 / 16] * 8, atol=0.01)
    # the default visits every frame once an epoch: 1/10 each
    plain = np.concatenate([PairBatchSampler(n, 2, seed=0).epoch_order(e).numpy() for e in range(50)])
    assert (np.bincount(plain, minlength=n) == 50).all()
    # deterministic per (seed, epoch)
    assert (sampler.epoch_order(3) == PairBatchSampler(n, 2, seed=0, video_offsets=OFFSETS).epoch_order(3)).all()


@pytest.mark.parametrize("target, want", [(2 + 2, {4: 0.25, 5: 0.25, 6: 0.25, 7: 0.25}), (2 + 6, {8: 0.5, 9: 0.5}), (2 + 7, {9: 1.0})])
def test_release_appearance_frame_is_the_same_or_later(target, want):
    pairs = FramePairDataset(_store(), gap=(0, 3), seed=1, later=True)
    draws = Counter(pairs.partner(target, epoch=e) for e in range(4000))
    assert set(draws) == set(want)  # the target itself included (gap 0), never an earlier frame, never past the video
    for j, p in want.items():
        assert draws[j] / 4000 == pytest.approx(p, abs=0.03)
    # ours: before or after, never the target itself
    ours = Counter(FramePairDataset(_store(), gap=(0, 3), seed=1).partner(target, epoch=e) for e in range(400))
    assert target not in ours and any(j < target for j in ours)


def test_release_preset_uses_the_release_sampling():
    cfg = make_config("release")
    assert cfg.pair_sampling == "release" and cfg.gap == (0, 1000)
    assert make_config("paper-128").pair_sampling == "frames" and make_config("cpu-64").pair_sampling == "frames"
    with pytest.raises(InputError, match="pair_sampling"):
        make_config("cpu-64", pair_sampling="sequences").validate()


def test_release_prior_poses_are_sequence_uniform():
    """A prior of two sequences (2 and 8 poses) grouped: each sequence half the draws, each pose an equal share of its sequence's."""
    import torch

    from keypointgan.data.datasets import group_poses
    from keypointgan.skeleton import Skeleton
    from keypointgan.training.pretrain import sample_prior

    sk = Skeleton(keypoints=("a", "b"), limbs=(("a", "b"),), name="ab")
    points = torch.arange(10, dtype=torch.float32).view(10, 1, 1).expand(10, 2, 2).contiguous()  # pose i holds the value i
    grouped = group_poses(points, [2, 8])
    assert grouped.shape == (2, 8, 2, 2) and torch.isnan(grouped[0, 2:]).all() and torch.equal(grouped[1], points[2:])
    cfg = make_config("release")  # no jitter, no flips, no pre-training augmentation
    gen = torch.Generator().manual_seed(0)
    q = sample_prior(grouped, 40_000, cfg, sk, gen, pretrain=True)
    freq = torch.bincount(q[:, 0, 0].long(), minlength=10).double() / 40_000
    assert torch.allclose(freq, torch.tensor([1 / 4] * 2 + [1 / 16] * 8, dtype=torch.float64), atol=0.01)
    flat = sample_prior(points, 40_000, cfg, sk, gen, pretrain=True)
    assert torch.allclose(torch.bincount(flat[:, 0, 0].long(), minlength=10).double() / 40_000, torch.full((10,), 0.1, dtype=torch.float64), atol=0.01)
    with pytest.raises(ValueError, match="sum to"):
        group_poses(points, [2, 7])


def test_make_loader_groups_the_prior_for_the_release_sampling(tiny_data):
    import torch

    from keypointgan.api import make_loader
    from keypointgan.data import Layout, load_prior

    lay = Layout(tiny_data)
    poses = load_prior(lay.prior_path, lay.skeleton)
    n = poses.shape[0]
    cfg = make_config("release", device="cpu")
    _, flat = make_loader(cfg, lay.skeleton, poses, lay.videos, torch.device("cpu"))
    _, grouped = make_loader(cfg, lay.skeleton, poses, lay.videos, torch.device("cpu"), prior_lengths=[n - 50, 50])
    assert flat.shape == (n, lay.skeleton.num_keypoints, 2) and grouped.shape == (2, n - 50, lay.skeleton.num_keypoints, 2)
    assert torch.equal(grouped[1, :50], flat[n - 50:])
    _, ours = make_loader(make_config("paper-128", model=dict(size=32)), lay.skeleton, poses, lay.videos, torch.device("cpu"), prior_lengths=[n - 50, 50])
    assert ours.ndim == 3  # the pose-uniform draw keeps the flat prior


def test_release_preset_trains_on_simplified_human36m_with_its_prior_sequences(tmp_path):
    """The protocol's prior (second halves of the training sequences) reaches the loop grouped by sequence."""
    import torch

    from keypointgan.api import load_data
    from keypointgan.cli import main
    from test_human36m import write_simple_h36m

    root = tmp_path / "human_images"
    write_simple_h36m(root, {"S1": {"Directions 1.54138969": 20, "Walking.55011271": 12}, "S11": {"Posing.54138969": 4}})
    layout, poses = load_data(root)
    assert sorted(layout.prior_lengths()) == [6, 10] and sum(layout.prior_lengths()) == poses.shape[0]
    run = tmp_path / "run"
    assert main(["train", "--preset", "release", "--data", str(root), "--out", str(run), "--steps", "1", "--pretrain-steps", "2",
                 "--pretrain-batch", "4", "--batch-size", "4", "--model.size", "32", "--model.encoder-widths", "4", "8", "16",
                 "--model.regressor-widths", "4", "8", "16", "--model.decoder-widths", "4", "8", "16", "--model.disc-ndf", "4",
                 "--model.disc-layers", "2", "--model.disc-scales", "2", "--device", "cpu", "--quiet", "--no-report"]) == 0
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 1 and ck["config"]["prior_sampling"] == "release" and ck["config"]["pair_sampling"] == "release"
