"""The appearance-leak diagnostic on constructed networks whose answer is known, and on a real run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from keypointgan import InputError, Skeleton
from keypointgan import geometry
from keypointgan.research.diagnose import (format_error_sources, format_preference, format_table, measure_error_sources, measure_leak,
                                           measure_pose_preference, measure_prior_reading, probe_accuracy)
from keypointgan.losses import FallbackReconstructionLoss

SK = Skeleton(keypoints=["a", "b", "c"], limbs=[("a", "b"), ("b", "c")], name="tri")
GREYS = (-0.6, -0.2, 0.2, 0.6)  # one grey level per video: the video's "appearance"


def _frames(t=4, size=16):
    frames = torch.cat([torch.full((t, 3, size, size), g) for g in GREYS])
    return frames, [v for v in range(len(GREYS)) for _ in range(t)]


class LeakyPhi(nn.Module):
    """Draws nothing but writes the frame's grey level into its background: −1 + 0.05 (g + 1)."""

    def forward(self, x):
        g = x.mean(dim=(1, 2, 3), keepdim=True)
        return (-1.0 + 0.05 * (g + 1.0)).expand(-1, 1, *x.shape[2:]).contiguous()


class BlankPhi(nn.Module):
    """Background everywhere (−1): carries nothing."""

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[2:]), -1.0)


class FixedEta(nn.Module):
    """Every keypoint at the centre, whatever the input: a bottleneck that carries point positions only."""

    def forward(self, y):
        return torch.zeros(y.shape[0], SK.num_keypoints, 2)


class DecodingPsi(nn.Module):
    """Rebuilds the grey level written in the skeleton image's corner when there is one, else copies
    the appearance frame: the reconstruction follows whatever the skeleton image carries."""

    def forward(self, s, a):
        corner = s[:, 0, 0, 0]
        g = (20.0 * (corner + 1.0) - 1.0).view(-1, 1, 1, 1).expand_as(a)
        return torch.where((corner > -0.999).view(-1, 1, 1, 1), g, a)


def test_probe_accuracy_on_known_features():
    labels = np.repeat(np.arange(4), 6)
    train = np.tile(np.r_[np.ones(3, bool), np.zeros(3, bool)], 4)
    onehot = np.eye(4)[labels] + np.random.default_rng(0).normal(0, 0.01, (24, 4))
    assert probe_accuracy(onehot, labels, train) == 1.0
    assert probe_accuracy(np.ones((24, 5)), labels, train) == 0.25  # constant features: one class for all


def test_a_leaking_phi_is_caught_and_the_bottleneck_removes_the_leak():
    frames, video = _frames()
    numbers, pics = measure_leak(LeakyPhi(), FixedEta(), DecodingPsi(), SK, frames, video, sigma=0.2)
    sw, pr = numbers["swap"], numbers["probe"]
    # raw Φ(x): Ψ rebuilds the target exactly, with another video's appearance frame
    assert sw["raw"]["follows_target"] == pytest.approx(1.0) and sw["raw"]["to_target"] == pytest.approx(0.0, abs=1e-6)
    assert sw["raw"]["to_appearance"] == pytest.approx(0.6, abs=1e-6)  # next video's grey: 0.4 away three times, 1.2 once (0.6 → −0.6)
    # β(η(Φ(x))): only the (fixed) points pass, Ψ copies the appearance frame
    assert sw["bottleneck"]["follows_target"] == pytest.approx(0.0) and sw["bottleneck"]["to_appearance"] == pytest.approx(0.0)
    assert pr["raw"] == 1.0 and pr["bottleneck"] == pr["chance"] == 0.25
    assert numbers["videos"] == 4 and numbers["frames"] == 16 and numbers["leak_factor"] > 1e6
    assert pics["log_phi"].shape == (4, 1, 16, 16)  # first frame of each video
    assert "Φ(x) (raw)" in format_table(numbers) and "β(η(Φ(x)))" in format_table(numbers)


def test_a_phi_that_carries_nothing_shows_no_leak():
    frames, video = _frames()
    numbers, _ = measure_leak(BlankPhi(), FixedEta(), DecodingPsi(), SK, frames, video, sigma=0.2)
    assert numbers["swap"]["raw"]["follows_target"] == pytest.approx(0.0)
    assert numbers["probe"]["raw"] == numbers["probe"]["chance"] == 0.25


def test_one_video_is_refused():
    frames, _ = _frames()
    with pytest.raises(InputError, match="at least two videos"):
        measure_leak(LeakyPhi(), FixedEta(), DecodingPsi(), SK, frames, [0] * 16, sigma=0.2)


TRUE_POSE = torch.tensor([[-0.5, -0.5], [0.0, 0.0], [0.5, -0.5]])
WRONG_POSE = torch.tensor([[-0.5, -0.5], [0.0, 0.0], [0.5, 0.4]])  # only "c" is off: 0.9 in [-1, 1] units = 45 % of the side


class ConstEta(nn.Module):
    """The same pose for every frame."""

    def __init__(self, pose):
        super().__init__()
        self.pose = pose

    def forward(self, y):
        return self.pose.expand(y.shape[0], -1, -1)


class SkeletonPsi(nn.Module):
    """Draws the skeleton image it is given, in grey, whatever the appearance frame."""

    def forward(self, s, a):
        return s.expand(-1, 3, -1, -1)


class CopyPsi(nn.Module):
    """Copies the appearance frame: the skeleton does not matter."""

    def forward(self, s, a):
        return a


def _drawn(pose, n=4, size=16):
    return geometry.to_signed(geometry.render_skeleton(pose.expand(n, -1, -1), SK, size, 0.2)).expand(-1, 3, -1, -1).contiguous()


@pytest.mark.parametrize("psi, target, whole, c", [
    (SkeletonPsi(), TRUE_POSE, 1.0, 1.0),  # frames show the true pose and Ψ draws what it is given: the truth wins
    (SkeletonPsi(), WRONG_POSE, 0.0, 0.0),  # frames show Φ's pose (Ψ "learnt" it): the prediction wins
    (CopyPsi(), TRUE_POSE, 0.5, 0.5),  # Ψ ignores the skeleton: indifferent
])
def test_pose_preference_on_constructed_networks(psi, target, whole, c):
    frames = _drawn(target)
    res = measure_pose_preference(BlankPhi(), ConstEta(WRONG_POSE), psi, FallbackReconstructionLoss(), SK, frames,
                                  TRUE_POSE.expand(4, -1, -1), [0, 0, 1, 1], sigma=0.2)
    assert res["whole_pose"]["prefers_truth"] == whole and res["per_keypoint"]["c"]["prefers_truth"] == c
    # a and b are already at the truth: moving them changes nothing (ties count ½)
    assert res["per_keypoint"]["a"]["prefers_truth"] == res["per_keypoint"]["b"]["prefers_truth"] == 0.5
    assert res["per_keypoint"]["c"]["error"] == pytest.approx(45.0, abs=1e-4) and res["per_keypoint"]["a"]["error"] == 0.0
    assert res["error"] == pytest.approx(15.0, abs=1e-4) and res["frames"] == 4
    if whole == 1.0:
        assert res["whole_pose"]["loss_truth"] == pytest.approx(0.0, abs=1e-6) and res["whole_pose"]["loss_predicted"] > 0.01
        assert res["whole_pose"]["relative_change"] == pytest.approx(-1.0)
    assert "whole pose" in format_preference(res)


def test_pose_preference_skips_missing_keypoints_and_needs_two_frames_per_video():
    truth = TRUE_POSE.expand(4, -1, -1).clone()
    truth[:, 2] = float("nan")  # "c" unknown: it keeps its prediction, so the whole pose equals it
    res = measure_pose_preference(BlankPhi(), ConstEta(WRONG_POSE), SkeletonPsi(), FallbackReconstructionLoss(), SK,
                                  _drawn(TRUE_POSE), truth, [0, 0, 1, 1], sigma=0.2)
    assert np.isnan(res["per_keypoint"]["c"]["prefers_truth"]) and np.isnan(res["per_keypoint"]["c"]["error"])
    assert res["whole_pose"]["prefers_truth"] == 0.5 and res["error"] == 0.0
    with pytest.raises(InputError, match="at least two frames of every video"):
        measure_pose_preference(BlankPhi(), ConstEta(WRONG_POSE), SkeletonPsi(), FallbackReconstructionLoss(), SK,
                                _drawn(TRUE_POSE), TRUE_POSE.expand(4, -1, -1), [0, 0, 0, 1], sigma=0.2)


def test_diagnose_a_run_writes_numbers_and_picture(one_step_run, tiny_data, tmp_path, capsys):
    from keypointgan.cli import main

    out = tmp_path / "diag"
    assert main(["diagnose", str(one_step_run), "--data", str(tiny_data), "--out", str(out), "--frames", "4"]) == 0
    printed = capsys.readouterr().out
    assert "follows target" in printed and "chance 0.250 (4 videos, 16 frames" in printed
    res = json.loads((out / "diagnose.json").read_text())
    assert res["bottleneck_trained"] is True and res["videos"] == 4 and res["step"] == 1
    for k in ("raw", "bottleneck"):
        assert 0.0 <= res["swap"][k]["follows_target"] <= 1.0 and 0.0 <= res["probe"][k] <= 1.0
    # the data has keypoints: the reconstruction's preference for the true pose, per keypoint too
    pref = res["pose_preference"]
    assert "prefers truth" in printed and pref["frames"] == 16 and pref["rec_loss_as_trained"] is True
    assert len(pref["per_keypoint"]) == 15 and all(0.0 <= v["prefers_truth"] <= 1.0 for v in pref["per_keypoint"].values())
    assert pref["error"] > 0 and pref["whole_pose"]["loss_predicted"] > 0
    # where the error comes from: η's reading against the truth is the prediction's error (the raw networks), and
    # the three distances obey the triangle inequality per keypoint and frame, so on the means too
    src = res["error_sources"]
    assert "η's reading" in printed and src["frames"] == 16 and src["fit_steps"] == 300
    assert src["eta_vs_truth"] <= pref["error"] + 1e-4  # (in the nearer labelling of the sides; the preference's error is not)
    prior = src["prior"]  # the data's prior, read by the run's η
    assert prior["poses"] > 0 and prior["eta_on_prior"] > 0 and 0.0 <= prior["faces_one_way"] <= 1.0 and prior["side_swaps"] is False  # auto: this prior faces one way
    assert src["eta_vs_truth"] <= src["eta_vs_fitted"] + src["fitted_vs_truth"] + 1e-6
    assert src["fit_residual"] <= src["eta_residual"] + 1e-6  # the fit starts at η's reading and descends
    from PIL import Image

    with Image.open(out / "diagnose.png") as im:
        # one column per video (4) × 7 rows of 32 px + 2 px gaps, each row's label on its left
        assert im.size[1] == 7 * 34 + 2 and im.size[0] > 4 * 34 + 2 + 40
    # a missing run: one line, exit 2
    assert main(["diagnose", str(tmp_path / "nope"), "--data", str(tiny_data)]) == 2


# ---------------------------------------------------------------- where the error comes from
BODY = Skeleton(keypoints=["head", "neck", "hip", "l_hand", "r_hand"],
                limbs=[("head", "neck"), ("neck", "hip"), ("neck", "l_hand"), ("neck", "r_hand")], name="body")


def _poses(n=6, seed=0):
    """``n`` poses of BODY in [-1, 1]: a trunk with the hands raised or lowered, moved about."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([[0.15, -0.6], [0.0, -0.3], [-0.1, 0.3], [-0.35, -0.1], [0.35, -0.1]])  # no two limbs in line
    hands = torch.zeros(n, 5, 2)
    hands[:, 3:, 1] = (torch.rand(n, 2, generator=g) - 0.5) * 0.6
    return base + hands + (torch.rand(n, 1, 2, generator=g) - 0.5) * 0.3


class IndexedPhi(nn.Module):
    """Frame ``i`` (its pixel (0, 0) holds ``i / 100``) → the render of ``poses[i]``: Φ's image is exact when
    ``poses`` are the truth, and the same stick for every frame when they are all one pose."""

    def __init__(self, poses, size=32):
        super().__init__()
        self.images = geometry.render_signed(poses, BODY, size, 0.2)

    def forward(self, x):
        return self.images[(x[:, 0, 0, 0] * 100).round().long()]


class OffsetEta(nn.Module):
    """Reads a skeleton image as the pose of the nearest of ``poses``' renders, moved by ``offset``."""

    def __init__(self, poses, offset, size=32):
        super().__init__()
        self.poses, self.offset = poses, torch.as_tensor(offset)
        self.images = geometry.render_signed(poses, BODY, size, 0.2).flatten(1)

    def forward(self, y):
        i = torch.cdist(y.flatten(1), self.images).argmin(1)
        return self.poses[i] + self.offset


def _indexed_frames(n, size=32):
    x = torch.zeros(n, 3, size, size)
    x[:, 0, 0, 0] = torch.arange(n) / 100.0
    return x


def test_an_exact_phi_read_with_an_offset_blames_eta():
    truth = _poses()
    offset = (0.04, -0.03)  # 0.05 in [-1, 1]: 2.5 % of the side
    res = measure_error_sources(IndexedPhi(truth), OffsetEta(truth, offset), BODY, _indexed_frames(6), truth, sigma=0.2, steps=300, batch=4)
    assert res["fitted_vs_truth"] < 0.3  # the render of the truth explains Φ's image: the fit returns to it
    assert res["eta_vs_fitted"] == pytest.approx(2.5, abs=0.3)
    assert res["eta_vs_truth"] == pytest.approx(2.5, abs=1e-4)
    assert res["fit_residual"] < 0.05 * res["eta_residual"]
    assert set(res["per_keypoint"]) == set(BODY.keypoints) and res["frames"] == 6
    assert all(v["eta_vs_truth"] == pytest.approx(2.5, abs=1e-4) for v in res["per_keypoint"].values())
    assert "η's reading" in format_error_sources(res) and "300 Adam steps" in format_error_sources(res)


def test_a_phi_that_draws_one_pose_blames_phi():
    truth = _poses()
    fixed = truth[:1].expand(6, -1, -1)  # every frame drawn in frame 0's pose
    res = measure_error_sources(IndexedPhi(fixed), OffsetEta(fixed, (0.0, 0.0)), BODY, _indexed_frames(6), truth, sigma=0.2, steps=100)
    wrong = float(((fixed - truth).norm(dim=-1) * 50).mean())  # how far the drawn pose is from the truth, % of the side
    assert wrong > 3.0
    assert res["fitted_vs_truth"] == pytest.approx(wrong, abs=0.2) and res["eta_vs_fitted"] < 0.2  # η reads Φ's image right
    assert res["eta_vs_truth"] == pytest.approx(wrong, abs=1e-4)


def test_error_sources_leave_missing_keypoints_out():
    truth = _poses(4)
    gapped = truth.clone()
    gapped[0, 3] = float("nan")
    res = measure_error_sources(IndexedPhi(truth), OffsetEta(truth, (0.05, 0.0)), BODY, _indexed_frames(4), gapped, sigma=0.2, steps=50)
    assert np.isfinite(res["eta_vs_truth"]) and res["eta_vs_truth"] == pytest.approx(2.5, abs=1e-4)
    with pytest.raises(ValueError, match="truth of shape"):
        measure_error_sources(IndexedPhi(truth), OffsetEta(truth, (0.0, 0.0)), BODY, _indexed_frames(4), truth[:, :3], sigma=0.2)


BODY_SIDES = Skeleton(keypoints=list(BODY.keypoints), limbs=[("head", "neck"), ("neck", "hip"), ("neck", "l_hand"), ("neck", "r_hand")],
                      symmetric=[("l_hand", "r_hand")], name="body")


def test_sides_read_the_other_way_round_cost_nothing():
    # Φ's image cannot show which hand is the left: η reading the two swapped is not an error
    truth = _poses()
    swapped = truth[:, BODY_SIDES.flip_permutation]
    res = measure_error_sources(IndexedPhi(truth), OffsetEta(swapped, (0.0, 0.0)), BODY_SIDES, _indexed_frames(6), truth, sigma=0.2, steps=50)
    assert res["eta_vs_truth"] < 1e-4 and res["fitted_vs_truth"] < 0.3
    unpaired = measure_error_sources(IndexedPhi(truth), OffsetEta(swapped, (0.0, 0.0)), BODY, _indexed_frames(6), truth, sigma=0.2, steps=50)
    assert unpaired["eta_vs_truth"] > 5.0  # without symmetric pairs, swapped hands are 0.7 apart


def test_the_prior_reading_shows_figures_facing_both_ways():
    one_way = _poses(8)
    both = torch.cat([one_way, one_way[:, BODY_SIDES.flip_permutation]])  # the same renders, labelled both ways
    assert measure_prior_reading(OffsetEta(one_way, (0.0, 0.0)), BODY_SIDES, one_way, size=32, sigma=0.2)["faces_one_way"] == 0.0
    exact = measure_prior_reading(OffsetEta(one_way, (0.0, 0.0)), BODY_SIDES, both, size=32, sigma=0.2)
    assert exact["faces_one_way"] == 0.5 and exact["eta_on_prior"] < 1e-4 and exact["poses"] == 16
    average = (one_way + one_way[:, BODY_SIDES.flip_permutation]) / 2  # the plain error's answer: both hands on the trunk
    folded = measure_prior_reading(_Fixed(average, one_way), BODY_SIDES, both, size=32, sigma=0.2)
    assert folded["eta_on_prior"] > 5.0
    text = format_error_sources({"fitted_vs_truth": 1.0, "eta_vs_fitted": 1.0, "eta_vs_truth": 1.0, "per_keypoint": {}, "fit_steps": 1,
                                 "fit_residual": 0.0, "eta_residual": 0.0, "frames": 1, "prior": {**folded, "side_swaps": False}})
    assert "50% of the prior's figures face one way" in text and "without swaps (regressor_side_swaps)" in text


class _Fixed(OffsetEta):
    """Reads the render of ``poses[i]`` as ``answers[i]``."""

    def __init__(self, answers, poses):
        super().__init__(poses, (0.0, 0.0))
        self.answers = answers

    def forward(self, y):
        return self.answers[torch.cdist(y.flatten(1), self.images).argmin(1)]
