"""The prior unit ((x + 0.5) / width): readers, the sidecar, old files read in the old unit, exact values."""

import json

import numpy as np
import pytest

from keypointgan import InputError, Skeleton
from keypointgan import geometry as G
from keypointgan.data import PriorPoseDataset, load_prior
from keypointgan.data.priors import LEGACY_UNIT, UNIT, prior_sidecar, prior_unit, save_prior, write_prior_unit
from keypointgan.io import write_image

SK = Skeleton(keypoints=["a", "b"], limbs=[("a", "b")], name="ab")
# pixel centres 0, 64 and 127 of a 128-px grid, measured on 1000-px images: x = (j + 0.5) · 1000 / 128 − 0.5
GRID = np.array([0.0, 64.0, 127.0])
X1000 = (GRID + 0.5) * 1000 / 128 - 0.5  # 3.40625, 503.40625, 995.59375


def _pose_pixels():
    """3 poses × 2 keypoints of pixel (x, y) on a 1000 × 1000 image, and their 128-px grid pixels."""
    px = np.stack([np.stack([X1000, X1000[::-1]], -1), np.stack([X1000[::-1], X1000], -1)], axis=1)  # 3×2×2
    grid = np.stack([np.stack([GRID, GRID[::-1]], -1), np.stack([GRID[::-1], GRID], -1)], axis=1)
    return px, grid


def _on_128_grid(prior):
    """[0, 1] prior → pixel coordinates of the 128-px grid, through the training path (PriorPoseDataset)."""
    return G.norm_to_pixel(PriorPoseDataset(prior, 128).points.double().numpy(), 128)


def test_coco_prior_from_1000px_images_lands_exactly_on_the_128px_grid(tmp_path):
    px, grid = _pose_pixels()
    coco = {"images": [{"id": 1, "width": 1000, "height": 1000}],
            "annotations": [{"image_id": 1, "keypoints": np.concatenate([p, np.full((2, 1), 2.0)], 1).reshape(-1).tolist()} for p in px]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    prior = load_prior(path, SK)
    np.testing.assert_allclose(prior[:, 0, 0], (X1000 + 0.5) / 1000, atol=1e-7)  # 0.00390625, 0.50390625, 0.99609375 (exact binary fractions)
    np.testing.assert_allclose(_on_128_grid(prior), grid, atol=1e-4)  # float32: 1e-4 px


def test_save_prior_writes_the_sidecar_and_reads_back_unchanged(tmp_path):
    px, grid = _pose_pixels()
    unit = G.pixel_to_unit(px, 1000).astype(np.float32)
    path = save_prior(tmp_path / "prior.npy", unit)
    assert prior_sidecar(path) == tmp_path / "prior.npy.json" and prior_unit(path) == UNIT
    assert json.loads((tmp_path / "prior.npy.json").read_text())["unit"] == "edges"
    np.testing.assert_array_equal(load_prior(path, SK, legacy_size=64), unit)  # legacy_size is not used
    np.testing.assert_allclose(_on_128_grid(load_prior(path, SK)), grid, atol=1e-4)
    # a CSV with a sidecar is in the new unit too
    csv = tmp_path / "p.csv"
    csv.write_text("\n".join(",".join(f"{v:.9f}" for v in p.reshape(-1)) for p in unit) + "\n")
    write_prior_unit(csv)
    np.testing.assert_allclose(load_prior(csv, SK, legacy_size=10), unit, atol=1e-7)


def test_an_old_file_is_read_in_the_old_unit(tmp_path, caplog):
    px, grid = _pose_pixels()
    old = (px / 1000).astype(np.float32)  # the old unit x / width
    path = tmp_path / "old.npy"
    np.save(path, old)
    assert prior_unit(path) == LEGACY_UNIT
    # converted with the size of the images it was measured on: exact on the 128-px grid
    np.testing.assert_allclose(_on_128_grid(load_prior(path, SK, legacy_size=1000)), grid, atol=1e-4)
    np.testing.assert_allclose(_on_128_grid(load_prior(path, SK, legacy_size=lambda: (1000, 1000))), grid, atol=1e-4)
    # read with its own grid's size it is what the old code trained on: u · 128 pixels of the 128-px grid
    np.testing.assert_allclose(_on_128_grid(load_prior(path, SK, legacy_size=128)), old * 128, atol=1e-4)
    # without a size: as stored, with a warning naming the file
    np.testing.assert_array_equal(load_prior(path, SK), old)
    # a sidecar saying "centres" is the old unit too
    prior_sidecar(path).write_text(json.dumps({"format": "keypointgan-prior", "unit": "centres"}))
    np.testing.assert_allclose(load_prior(path, SK, legacy_size=(1000, 500)), old + [0.5 / 500, 0.5 / 1000], atol=1e-7)


def test_a_bad_sidecar_is_an_error_naming_it(tmp_path):
    path = save_prior(tmp_path / "prior.npy", np.full((2, 2, 2), 0.5, np.float32))
    side = prior_sidecar(path)
    side.write_text("{oops")
    with pytest.raises(InputError, match="cannot read the prior's sidecar as JSON") as e:
        load_prior(path, SK)
    assert str(side) in str(e.value)
    side.write_text(json.dumps({"format": "keypointgan-prior", "unit": "pixels"}))
    with pytest.raises(InputError, match="not a prior sidecar"):
        load_prior(path, SK)


def test_training_reads_an_old_layout_prior_at_its_frames_size(tmp_path):
    """api.load_data: an old prior.npy of the generic layout is taken as measured on the layout's frames."""
    from keypointgan.api import load_data

    SK.to_yaml(tmp_path / "skeleton.yaml")
    for t in range(2):
        write_image(tmp_path / "videos" / "v0" / f"{t}.png", np.zeros((40, 50, 3), np.uint8))  # H 40, W 50
    old = np.array([[[0.2, 0.4], [0.6, 0.8]]], np.float32)
    np.save(tmp_path / "prior.npy", old)
    _, poses = load_data(tmp_path)
    np.testing.assert_allclose(poses, old + [0.5 / 50, 0.5 / 40], atol=1e-7)
    write_prior_unit(tmp_path / "prior.npy")
    np.testing.assert_array_equal(load_data(tmp_path)[1], old)
