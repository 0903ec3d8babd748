"""The prior unit ((x + 0.5) / width): every reader, exact values, no second unit."""

import json

import numpy as np

from keypointgan import Skeleton
from keypointgan import pixels as P
from keypointgan.data import PriorPoseDataset, load_prior
from keypointgan.data.priors import save_prior
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
    return P.norm_to_pixel(PriorPoseDataset(prior, 128).points.double().numpy(), 128)


def test_coco_prior_from_1000px_images_lands_exactly_on_the_128px_grid(tmp_path):
    px, grid = _pose_pixels()
    coco = {"images": [{"id": 1, "width": 1000, "height": 1000}],
            "annotations": [{"image_id": 1, "keypoints": np.concatenate([p, np.full((2, 1), 2.0)], 1).reshape(-1).tolist()} for p in px]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    prior = load_prior(path, SK)
    np.testing.assert_allclose(prior[:, 0, 0], (X1000 + 0.5) / 1000, atol=1e-7)  # 0.00390625, 0.50390625, 0.99609375 (exact binary fractions)
    np.testing.assert_allclose(_on_128_grid(prior), grid, atol=1e-4)  # float32: 1e-4 px


def test_save_prior_reads_back_unchanged_in_every_format(tmp_path):
    px, grid = _pose_pixels()
    unit = P.pixel_to_unit(px, 1000).astype(np.float32)
    path = save_prior(tmp_path / "prior.npy", unit)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior.npy"]  # one file, nothing next to it
    np.testing.assert_array_equal(load_prior(path, SK), unit)
    np.testing.assert_allclose(_on_128_grid(load_prior(path, SK)), grid, atol=1e-4)
    csv = tmp_path / "p.csv"
    csv.write_text("\n".join(",".join(f"{v:.9f}" for v in p.reshape(-1)) for p in unit) + "\n")
    np.testing.assert_allclose(load_prior(csv, SK), unit, atol=1e-7)
    lst = tmp_path / "p.json"
    lst.write_text(json.dumps(unit.tolist()))
    np.testing.assert_array_equal(load_prior(lst, SK), unit)


def test_a_layout_prior_is_read_in_the_documented_unit_whatever_its_frames_size(tmp_path):
    """Issue 28 row 12: ``DATA/prior.npy`` in ((x + 0.5) / width) with nothing next to it was shifted by
    half a pixel of the frames (read as the old unit x / width); there is one unit and no guess."""
    from keypointgan.api import load_data, make_loader

    SK.to_yaml(tmp_path / "skeleton.yaml")
    for t in range(4):
        write_image(tmp_path / "videos" / "v0" / f"{t}.png", np.zeros((40, 50, 3), np.uint8))  # H 40, W 50
    unit = P.pixel_to_unit(np.array([[[9.0, 19.0], [29.0, 39.0]]]), (40, 50)).astype(np.float32)  # pixels of the frames
    np.save(tmp_path / "prior.npy", unit)
    _, poses = load_data(tmp_path)
    np.testing.assert_array_equal(poses, unit)
    # and training sees those pixels on its grid: the frames' pixel (9, 19) at 40 × 50 → the 32-px grid
    from conftest import tiny_config

    _, points = make_loader(tiny_config(batch_size=2), SK, poses, load_data(tmp_path)[0].videos, "cpu")
    want = P.rescale_pixels(np.array([[9.0, 19.0], [29.0, 39.0]]), (40, 50), 32)
    np.testing.assert_allclose(P.norm_to_pixel(points[0].double().numpy(), 32), want, atol=1e-4)
