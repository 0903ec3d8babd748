"""The flip test: predictions averaged with those of the mirrored image."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_config
from keypointgan import KeypointDetector
from keypointgan import geometry as G
from keypointgan import pixels as P
from keypointgan.api import train
from keypointgan.cli import build_parser
from keypointgan.data import Layout
from keypointgan.inference import predict_points


class _BiasedDotFinder(nn.Module):
    """Finds the bright dot of channel 0 (soft-argmax), then adds a fixed offset: a biased detector."""

    def __init__(self, offset):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))  # so that the module has a device
        self.offset = torch.tensor(offset)

    def forward(self, y):
        p = G.soft_argmax(y[:, :1] * 200.0)  # B×1×2
        return p + self.offset


class _Constant(nn.Module):
    def __init__(self, points):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.points = torch.tensor(points)

    def forward(self, y):
        return self.points.expand(y.shape[0], *self.points.shape).clone()


def _dot_image(x_pix: int, y_pix: int, size: int = 32) -> torch.Tensor:
    img = -torch.ones(1, 3, size, size)
    img[0, :, y_pix, x_pix] = 1.0
    return img


def test_flip_test_cancels_a_horizontal_bias():
    img = _dot_image(9, 20)
    truth = torch.tensor(P.image_pixels_to_norm(np.array([[[9.0, 20.0]]]), 32, (32, 32)))
    phi, eta = nn.Identity(), _BiasedDotFinder([[0.2, 0.0]])
    phi.register_parameter("w", nn.Parameter(torch.zeros(1)))
    plain = predict_points(phi, eta, img)
    flipped = predict_points(phi, eta, img, flip_permutation=[0])
    assert plain[0, 0, 0].item() == pytest.approx(truth[0, 0, 0].item() + 0.2, abs=1e-3)
    # the +0.2 of the mirrored pass becomes −0.2 once mirrored back: the average is the dot itself
    assert torch.allclose(flipped, truth, atol=1e-3)


def test_flip_test_mirrors_back_and_swaps_left_and_right():
    pts = [[-0.6, 0.1], [0.2, -0.3], [0.0, 0.5]]  # left, right, centre
    phi, eta = nn.Identity(), _Constant(pts)
    phi.register_parameter("w", nn.Parameter(torch.zeros(1)))
    out = predict_points(phi, eta, torch.zeros(5, 3, 8, 8), flip_permutation=[1, 0, 2], batch_size=2)
    # mirrored pass predicts the same constant; mirrored back and swapped: left ← (−0.2, −0.3), right ← (0.6, 0.1)
    expect = torch.tensor([[(-0.6 - 0.2) / 2, (0.1 - 0.3) / 2], [(0.2 + 0.6) / 2, (-0.3 + 0.1) / 2], [0.0, 0.5]])
    assert out.shape == (5, 3, 2)
    assert torch.allclose(out, expect.expand(5, 3, 2), atol=1e-6)


def test_detector_flip_test_is_the_mean_of_the_image_and_its_mirror(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_data, out, config=tiny_config(steps=2, flip_test=False), progress=False)
    assert KeypointDetector.from_checkpoint(out).flip_test is False  # the run's setting
    plain = KeypointDetector.from_checkpoint(out)
    flip = KeypointDetector.from_checkpoint(out, flip_test=True)
    assert flip.flip_test is True

    from keypointgan.io import read_image

    img = read_image(Layout(tiny_data).videos[0].frames[0])
    img = np.ascontiguousarray(np.concatenate([img, img[:, :7]], axis=1))  # not square: W = 39
    h, w = img.shape[:2]
    a = plain.predict(img)
    m = plain.predict(np.ascontiguousarray(img[:, ::-1]))
    m = m[plain.skeleton.flip_permutation]
    m[:, 0] = (w - 1) - m[:, 0]  # mirrored pixel column j is column W−1−j
    b = flip.predict(img)
    assert not np.allclose(a, b, atol=1e-3)  # it changes the answer …
    assert np.allclose(b, (a + m) / 2, atol=2e-3)  # … to the average of the two passes, in pixels


def test_flip_test_setting_and_cli_flags():
    assert tiny_config().flip_test is True  # cpu-64 uses it
    from keypointgan.config import make_config

    assert make_config("paper-128").flip_test is False  # the paper's numbers are single-pass
    p = build_parser()
    assert p.parse_args(["evaluate", "--checkpoint", "c", "--data", "d"]).flip_test is None
    assert p.parse_args(["evaluate", "--checkpoint", "c", "--data", "d", "--no-flip-test"]).flip_test is False
    assert p.parse_args(["predict", "--checkpoint", "c", "x.png", "--out", "o", "--flip-test"]).flip_test is True
