"""The torch-free conventions module: every conversion once, numpy and torch alike."""

import subprocess
import sys

import numpy as np
import torch

from keypointgan import pixels as P


def test_uint8_images_round_trip_through_the_signed_range():
    v = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    s = P.uint8_to_signed(v)
    assert s.dtype == np.float32 and s.min() == -1.0 and s.max() == 1.0 and s.flat[1] == np.float32(1 / 127.5 - 1)
    np.testing.assert_array_equal(P.signed_to_uint8(s), v)
    t = P.uint8_to_signed(torch.from_numpy(v))
    assert t.dtype == torch.float32 and torch.equal(t, torch.from_numpy(s))
    assert torch.equal(P.signed_to_uint8(t), torch.from_numpy(v))
    # out of range is clamped, not wrapped around
    np.testing.assert_array_equal(P.signed_to_uint8(np.array([-3.0, 1.5, 0.0])), [0, 255, 128])


def test_image_pixels_compose_the_grid_and_the_resize():
    pts = np.array([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])  # first and last pixel centre, the middle
    out = P.norm_to_image_pixels(pts, 64, (480, 640))
    np.testing.assert_allclose(out[0, 0], [(0.5 * 640 / 64) - 0.5, (0.5 * 480 / 64) - 0.5], atol=1e-5)
    np.testing.assert_allclose(out[0, 1], [(63.5 * 640 / 64) - 0.5, (63.5 * 480 / 64) - 0.5], atol=1e-4)
    np.testing.assert_allclose(out[0, 2], [319.5, 239.5], atol=1e-4)  # the centre of the image
    np.testing.assert_allclose(P.image_pixels_to_norm(out, 64, (480, 640)), pts, atol=1e-6)


def test_the_module_does_not_import_torch():
    code = "import sys, keypointgan.pixels as P, numpy as np; P.prepare_images(np.zeros((4, 4, 3), np.uint8), 2); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
