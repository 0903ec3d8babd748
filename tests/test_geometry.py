import math

import numpy as np
import pytest
import torch

from keypointgan import Skeleton
from keypointgan import geometry as G
from keypointgan import pixels as P


def one_limb():
    return Skeleton(keypoints=["a", "b"], limbs=[("a", "b")])


def test_soft_argmax_peaked_map_hits_pixel_centre():
    h, w = 5, 7
    maps = torch.full((1, 1, h, w), -1e4)
    maps[0, 0, 3, 2] = 1e4  # row 3, column 2
    p = G.soft_argmax(maps)
    # mean over rows dilutes a single peak; use a full row/column peak instead for exactness
    maps = torch.zeros((1, 1, h, w))
    maps[0, 0, :, 2] += 1e3
    maps[0, 0, 3, :] += 1e3
    p = G.soft_argmax(maps)[0, 0]
    assert p[0].item() == pytest.approx(-1 + 2 * 2 / (w - 1), abs=1e-6)
    assert p[1].item() == pytest.approx(-1 + 2 * 3 / (h - 1), abs=1e-6)


def test_soft_argmax_uniform_is_centre_and_hand_value():
    p = G.soft_argmax(torch.zeros(2, 3, 4, 6))
    assert p.shape == (2, 3, 2)
    assert torch.allclose(p, torch.zeros_like(p), atol=1e-7)
    # x marginal logits [0, ln 3] over two columns at -1, 1 → softmax (1/4, 3/4) → x = 0.5
    maps = torch.zeros(1, 1, 2, 2)
    maps[0, 0, :, 1] = math.log(3.0)
    x, y = G.soft_argmax(maps)[0, 0].tolist()
    assert x == pytest.approx(0.5, abs=1e-6) and y == pytest.approx(0.0, abs=1e-6)


def test_render_exact_values_horizontal_limb():
    sk = one_limb()
    pts = torch.tensor([[[-0.5, 0.0], [0.5, 0.0]]])
    img = G.render_skeleton(pts, sk, (3, 5), sigma=0.2)
    assert img.shape == (1, 1, 3, 5)
    xs = torch.linspace(-1, 1, 5)
    ys = torch.linspace(-1, 1, 3)
    for i, y in enumerate(ys.tolist()):
        for j, x in enumerate(xs.tolist()):
            dx = max(0.0, abs(x) - 0.5)
            d = math.hypot(dx, y)
            assert img[0, 0, i, j].item() == pytest.approx(math.exp(-d / 0.04), rel=1e-5, abs=1e-12)
    assert img[0, 0, 1, 2].item() == 1.0  # on the segment


def test_render_is_max_over_limbs_and_degenerate_limb_is_a_point():
    sk = Skeleton(keypoints=["a", "b", "c"], limbs=[("a", "b"), ("b", "c")])
    pts = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])
    both = G.render_skeleton(pts, sk, 9)
    first = G.render_skeleton(pts, [(0, 1)], 9)
    second = G.render_skeleton(pts, [(1, 2)], 9)
    assert torch.equal(both, torch.maximum(first, second))
    # degenerate limb a == b renders exp(-|u - a| / s^2)
    u = torch.linspace(-1, 1, 9)
    d = torch.sqrt(u.view(-1, 1) ** 2 + u.view(1, -1) ** 2)
    assert torch.allclose(first[0, 0], torch.exp(-d / 0.04), atol=1e-6)


def test_gradcheck_float64():
    sk = Skeleton(keypoints=["a", "b", "c"], limbs=[("a", "b"), ("b", "c")])
    pts = torch.tensor([[[-0.31, 0.12], [0.27, -0.4], [0.55, 0.61]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: G.render_skeleton(p, sk, (6, 7), sigma=0.5), (pts,))
    maps = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(G.soft_argmax, (maps,))


def test_render_then_soft_argmax_recovers_point():
    # a short limb around a point, rendered, then soft-argmax of the (sharpened) map gives the point back
    sk = one_limb()
    for x, y in [(0.3, -0.2), (-0.55, 0.4), (0.0, 0.0)]:
        pts = torch.tensor([[[x - 0.01, y], [x + 0.01, y]]])
        img = G.render_skeleton(pts, sk, (41, 33), sigma=0.2)
        logits = 3000.0 * img  # sharpen: the row/column means dilute the blob before the softmax
        p = G.soft_argmax(logits)[0, 0]
        assert p[0].item() == pytest.approx(x, abs=0.02)
        assert p[1].item() == pytest.approx(y, abs=0.02)


def test_render_dtype_device_and_batch():
    sk = one_limb()
    pts = torch.rand(4, 2, 2, dtype=torch.float64) * 2 - 1
    out = G.render_skeleton(pts, sk, 8)
    assert out.dtype == torch.float64 and out.shape == (4, 1, 8, 8)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    for b in range(4):  # batch items independent
        assert torch.equal(out[b : b + 1], G.render_skeleton(pts[b : b + 1], sk, 8))


def test_render_memory():
    """Bytes kept for backward + output for B=16, 16 limbs, 128×128 stay ~2.3 MiB (docstring)."""
    sk = Skeleton(keypoints=[str(i) for i in range(17)], limbs=[(str(i), str(i + 1)) for i in range(16)])
    pts = (torch.rand(16, 17, 2) * 2 - 1).requires_grad_()
    saved = {}

    def pack(t):
        saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = G.render_skeleton(pts, sk, 128)
    total = sum(saved.values()) + out.numel() * out.element_size()
    mib = total / 2**20
    assert mib < 4, f"render keeps {mib:.1f} MiB"
    out.sum().backward()
    assert pts.grad.abs().sum() > 0


def test_unit_conversions_round_trip_and_values():
    size = (48, 64)  # H, W
    px = np.array([[0.0, 0.0], [63.0, 47.0], [31.5, 23.5]], dtype=np.float32)
    n = P.pixel_to_norm(px, size)
    assert np.allclose(n[0], [-1, -1]) and np.allclose(n[1], [1, 1]) and np.allclose(n[2], [0, 0])
    u = P.pixel_to_unit(px, size)
    assert np.allclose(u[0], [0.5 / 64, 0.5 / 48]) and np.allclose(u[1], [63.5 / 64, 47.5 / 48]) and np.allclose(u[2], [0.5, 0.5])
    # the outer pixel edges are 0 and 1
    assert np.allclose(P.pixel_to_unit(np.array([[-0.5, -0.5], [63.5, 47.5]]), size), [[0, 0], [1, 1]])
    assert np.allclose(P.unit_to_norm(u, size), n, atol=1e-6)
    assert np.allclose(P.norm_to_unit(n, size), u, atol=1e-6)
    t = torch.tensor(px)
    assert torch.allclose(P.norm_to_pixel(P.pixel_to_norm(t, size), size), t, atol=1e-5)
    assert torch.allclose(P.unit_to_pixel(P.pixel_to_unit(t, size), size), t, atol=1e-5)
    # pixel edges map onto pixel edges under resizing
    edge = np.array([[-0.5, -0.5], [63.5, 47.5]], dtype=np.float32)
    assert np.allclose(P.rescale_pixels(edge, size, (96, 128)), [[-0.5, -0.5], [127.5, 95.5]])


def test_prior_unit_is_resolution_independent():
    """A point measured on a 1000-px image, written in the prior unit, lands exactly on the 128-px grid:
    pixel centre j of the 128-px grid is (j + 0.5) · 1000 / 128 − 0.5 on the 1000-px image."""
    j = np.array([0.0, 17.0, 64.0, 127.0])
    x1000 = (j + 0.5) * 1000 / 128 - 0.5  # 3.40625, 136.28125, 503.40625, 995.59375
    pts = np.stack([x1000, x1000[::-1]], axis=-1)[None]  # 1×4×2, (x, y)
    unit = P.pixel_to_unit(pts, 1000)
    norm = P.unit_to_norm(unit, 128)
    want = np.stack([2 * j / 127 - 1, 2 * j[::-1] / 127 - 1], axis=-1)[None]
    np.testing.assert_allclose(norm, want, atol=1e-12)
    np.testing.assert_allclose(P.unit_to_pixel(unit, 128), np.stack([j, j[::-1]], -1)[None], atol=1e-12)
    # and the same as resizing the image: pixel edges onto pixel edges
    np.testing.assert_allclose(P.rescale_pixels(pts, 1000, 128), P.unit_to_pixel(unit, 128), atol=1e-12)
    # x / width, read as pixels of the 128-px grid, would be 0.436 px off
    np.testing.assert_allclose(pts / 1000 * 128 - P.unit_to_pixel(unit, 128), 0.436, atol=1e-9)
    np.testing.assert_allclose(P.norm_to_unit(norm, 128), unit, atol=1e-12)


def test_norm_to_image_pixels_matches_the_two_step_conversion_and_inverts():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (3, 4, 2)).astype(np.float32)
    hw = np.array([[64, 64], [48, 128], [200, 30]])
    out = P.norm_to_image_pixels(torch.from_numpy(pts), 64, hw)
    for i in range(3):
        ref = P.rescale_pixels(P.norm_to_pixel(pts[i], 64), 64, tuple(hw[i]))
        assert np.allclose(out[i], ref, atol=1e-4)
    assert np.allclose(P.image_pixels_to_norm(out, 64, hw), pts, atol=1e-5)
    assert np.allclose(P.norm_to_image_pixels(pts, 64, (64, 64)), P.norm_to_pixel(pts, 64), atol=1e-4)


def _render_reference(points, limbs, h, w, sigma):
    """The renderer written plainly, one limb at a time, differentiated by autograd."""
    gx = torch.linspace(-1, 1, w, dtype=points.dtype).view(1, 1, w)
    gy = torch.linspace(-1, 1, h, dtype=points.dtype).view(1, h, 1)
    vals = [torch.exp(-G._limb_geometry(points, a, b, gx, gy)[3] / sigma**2) for a, b in limbs]
    return torch.stack(vals, 1).amax(1, keepdim=True)


def test_render_matches_the_plain_autograd_version():
    """Values and gradients of the renderer (nearest limb by squared distance, winner-only backward)
    equal those of the plain version differentiated by autograd (float64, random poses of 7 limbs,
    non-square image)."""
    limbs = [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5), (0, 6), (6, 7)]
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(3, 8, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    ref_pts = pts.detach().clone().requires_grad_()
    out = G.render_skeleton(pts, limbs, (9, 11), sigma=0.3)
    ref = _render_reference(ref_pts, limbs, 9, 11, 0.3)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    weight = torch.rand(out.shape, generator=g, dtype=torch.float64)
    (out * weight).sum().backward()
    (ref * weight).sum().backward()
    torch.testing.assert_close(pts.grad, ref_pts.grad, rtol=1e-9, atol=1e-12)
