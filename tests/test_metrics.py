import math

import numpy as np
import pytest

from keypointgan import Skeleton
from keypointgan.evaluate import error_breakdown, flip_corrected_error, grouped_mean, keypoint_error, pck, summarize

SK = Skeleton(keypoints=["c", "l", "r"], limbs=[("c", "l"), ("c", "r")], symmetric=[("l", "r")])


def test_error_in_percent_of_image_size():
    gt = np.array([[[10.0, 10.0], [20.0, 10.0], [0.0, 0.0]]])
    pred = gt.copy()
    pred[0, 0] += [5.0, 0.0]  # 5 px on a 100 px wide image: 5 %
    pred[0, 1] += [0.0, 4.0]  # 4 px on a 50 px high image: 8 %
    err = keypoint_error(pred, gt, (50, 100))
    assert err.shape == (1,)
    assert err[0] == pytest.approx((5 + 8 + 0) / 3)


def test_missing_points_are_ignored_and_per_image_sizes():
    gt = np.array([[[0.0, 0.0], [np.nan, np.nan], [10.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    pred = np.zeros_like(gt)
    err = keypoint_error(pred, gt, np.array([[100, 100], [10, 10]]))
    assert err[0] == pytest.approx((0 + 10) / 2)
    assert err[1] == 0.0


def test_flip_corrected_takes_the_smaller_of_the_two():
    gt = np.array([[[50.0, 50.0], [40.0, 50.0], [60.0, 50.0]]])
    swapped = gt[:, [0, 2, 1]]
    assert keypoint_error(swapped, gt, (100, 100))[0] == pytest.approx((0 + 20 + 20) / 3)  # l and r are 20 px apart
    assert flip_corrected_error(swapped, gt, (100, 100), SK)[0] == 0.0
    near = gt + 1.0
    assert flip_corrected_error(near, gt, (100, 100), SK)[0] == pytest.approx(math.sqrt(2))


def test_grouped_mean_is_mean_of_group_means():
    overall, per = grouped_mean([1.0, 3.0, 10.0], ["a", "a", "b"])
    assert per == {"a": 2.0, "b": 10.0}
    assert overall == 6.0  # not the frame mean 14/3


def test_pck():
    gt = np.zeros((1, 4, 2))
    pred = np.array([[[1.0, 0.0], [4.9, 0.0], [5.1, 0.0], [0.0, 20.0]]])
    assert pck(pred, gt, (100, 100), threshold=0.05) == 0.5


def test_summarize_keys():
    gt = np.array([[[50.0, 50.0], [40.0, 50.0], [60.0, 50.0]]] * 2)
    out = summarize(gt + [2.0, 0.0], gt, (100, 100), SK, groups=["v0", "v1"])
    assert out["error"] == pytest.approx(2.0) and out["error_flip"] == pytest.approx(2.0)
    assert out["n_frames"] == 2 and out["pck"] == 1.0 and set(out["per_group"]) == {"v0", "v1"}


def test_nan_predictions_are_an_error_not_a_zero():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[np.nan, np.nan], [0.0, 0.0], [0.0, 0.0]]])
    with pytest.raises(ValueError, match="NaN"):
        keypoint_error(pred, gt, (10, 10))
    gt_missing = gt.copy()
    gt_missing[0, 0] = np.nan  # where the truth is missing, any prediction is ignored
    assert keypoint_error(pred, gt_missing, (10, 10))[0] == 0.0


def _poses(n=40, seed=0):
    """``n`` random 3-point poses on a 100×100 image: a centre, a left and a right point."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(30, 70, (n, 1, 2))
    return centre + np.concatenate([np.zeros((n, 1, 2)), rng.normal(0, 8, (n, 2, 2))], axis=1)


def test_breakdown_of_a_constant_shift():
    gt = _poses()
    pred = gt + [2.0, -1.0]  # every point 2 px right and 1 px up on a 100 px image
    b = error_breakdown(pred, gt, (100, 100), SK)
    assert b["offset"]["l"] == pytest.approx([2.0, -1.0])
    assert b["centroid"] == pytest.approx(math.hypot(2, 1))
    assert b["aligned"] == pytest.approx(0.0, abs=1e-9)  # the shape is exact once placement is removed
    assert b["spread"] == pytest.approx(1.0) and b["variety"] == pytest.approx(1.0)
    assert b["per_keypoint"]["c"] == pytest.approx(math.hypot(2, 1))


def test_breakdown_of_a_collapsed_and_a_shrunken_detector():
    gt = _poses()
    collapsed = np.broadcast_to(gt[:1], gt.shape).copy()  # one pose for every image
    b = error_breakdown(collapsed, gt, (100, 100), SK)
    assert b["variety"] == pytest.approx(0.0, abs=1e-12)
    assert b["aligned"] > 5  # the limbs are wrong, not only the placement
    c = gt.mean(axis=1, keepdims=True)
    half = c + 0.5 * (gt - c)  # right place, half the size
    b = error_breakdown(half, gt, (100, 100), SK)
    assert b["spread"] == pytest.approx(0.5) and b["variety"] == pytest.approx(0.5)
    assert b["centroid"] == pytest.approx(0.0, abs=1e-9)
    # random scatter averages out of the signed offsets but not out of the errors
    noisy = gt + np.random.default_rng(1).normal(0, 3, gt.shape)
    b = error_breakdown(noisy, gt, (100, 100), SK)
    assert max(abs(v) for xy in b["offset"].values() for v in xy) < 1.5 < min(b["per_keypoint"].values())


def test_breakdown_leaves_missing_truth_out():
    gt = _poses(4)
    gt[0, 1] = np.nan
    pred = gt.copy()
    pred[0, 1] = [1e6, 1e6]  # where the truth is missing: not counted anywhere
    b = error_breakdown(pred, gt, (100, 100), SK)
    assert b["centroid"] == pytest.approx(0.0, abs=1e-9) and b["per_keypoint"]["l"] == pytest.approx(0.0, abs=1e-9)


def test_breakdown_of_one_image_and_a_keypoint_never_seen():
    gt = _poses(1)
    gt[0, 2] = np.nan
    b = error_breakdown(gt + 1.0, gt, (100, 100), SK)
    assert math.isnan(b["variety"]) and math.isnan(b["per_keypoint"]["r"]) and math.isnan(b["offset"]["r"][0])
    assert b["centroid"] == pytest.approx(math.sqrt(2))
