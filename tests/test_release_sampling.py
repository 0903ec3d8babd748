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
