"""The dual representation: keypoints ↔ skeleton images (β, the renderer, and soft-argmax).

Points are ``B×K×2`` ``(x, y)`` in [-1, 1] on the image grid (x right, y down; -1 and 1 the centres of
the first and last pixel); skeleton images are ``B×1×H×W``.  The unit conversions (pixels, [0, 1]
prior units, the [-1, 1] grid, uint8 images) live in :mod:`keypointgan.pixels`, without torch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .pixels import as_size
from .skeleton import Skeleton

__all__ = ["soft_argmax", "heatmap_agreement", "render_skeleton", "render_signed", "to_signed"]

Size = int | Sequence[int]


def _grid(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, n, device=like.device, dtype=like.dtype)


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Marginal soft-argmax: ``B×K×H×W`` heatmaps (logits) → ``B×K×2`` points in [-1, 1].

    For x, the map is averaged over rows (H), a softmax is taken along W and
    the expectation over ``linspace(-1, 1, W)`` is returned; likewise for y
    with the roles of the axes swapped.  Differentiable; any device and dtype.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be B×K×H×W, got shape {tuple(heatmaps.shape)}")
    with _full_precision(heatmaps):  # in float32 under mixed precision (bf16/fp16 maps are upcast)
        return _soft_argmax(_upcast(heatmaps))


def _soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    _, _, h, w = heatmaps.shape
    px = torch.softmax(heatmaps.mean(dim=2), dim=-1)  # B×K×W
    py = torch.softmax(heatmaps.mean(dim=3), dim=-1)  # B×K×H
    x = (px * _grid(w, heatmaps)).sum(-1)
    y = (py * _grid(h, heatmaps)).sum(-1)
    return torch.stack([x, y], dim=-1)


def heatmap_agreement(a: torch.Tensor, b: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Per-keypoint confidence from two readings of the same keypoints: ``B×K×h×w`` logits → ``B×K`` in [0, 1].

    The Bhattacharyya coefficient ``Σ sqrt(P_a · P_b)`` of the two heatmaps' distributions (a softmax over
    each whole ``h×w`` map of ``logits / temperature``): 1 when η puts the keypoint at the same place with
    the same spread in both, 0 when the two have no overlap. The temperature softens η's peaks so that
    near misses still overlap a little: 2 ranked the errors better than 1 on a trained run (AUROC 0.76 and 0.74
    with the flip test; docs/benchmarks.md). The detector compares η's heatmaps of an image with those of its mirror
    image, mirrored back (columns reversed, left/right keypoints swapped; see
    :class:`~keypointgan.inference.DetectorGraph`): where Φ draws the figure unambiguously they agree.
    Any device and dtype; exported to ONNX.
    """
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"heatmaps must be two B×K×H×W of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    la = torch.log_softmax(a.flatten(2) / temperature, dim=-1)
    lb = torch.log_softmax(b.flatten(2) / temperature, dim=-1)
    return torch.exp(0.5 * (la + lb)).sum(-1).clamp(0.0, 1.0)


def _segment_offsets(ax, ay, bx, by, gx, gy):
    """Closest-point parameter ``t`` and offset ``(dx, dy)`` from segment ``a→b`` to every pixel
    centre ``(gx, gy)``; the endpoints are tensors broadcastable to ``B×H×W`` (one segment per image,
    ``B×1×1``, or one per pixel, ``B×H×W``)."""
    vx, vy = bx - ax, by - ay
    len2 = (vx * vx + vy * vy).clamp_min(1e-12)
    ux, uy = gx - ax, gy - ay
    t = ((ux * vx + uy * vy) / len2).clamp_(0.0, 1.0)
    return t, ux - t * vx, uy - t * vy


def _limb_geometry(points, ia, ib, gx, gy):
    """Per-pixel ``t``, ``(dx, dy)`` (:func:`_segment_offsets`) and distance ``d`` to limb ``ia→ib`` of every image."""
    end = lambda i, c: points[:, i, c].view(-1, 1, 1)  # noqa: E731
    t, dx, dy = _segment_offsets(end(ia, 0), end(ia, 1), end(ib, 0), end(ib, 1), gx, gy)
    return t, dx, dy, torch.sqrt(dx * dx + dy * dy)


class _RenderSkeleton(torch.autograd.Function):
    """Max over limbs of ``exp(-d / sigma^2)``, with a hand-written backward.

    Forward: the nearest limb of every pixel (the smallest squared distance, limb by limb: a
    ``B×H×W`` buffer stays in cache where all limbs at once would not; of limbs equally near, the
    first), then one square root and one exponential per pixel.  Only the output and the index of the winning limb per pixel are kept for
    backward, so memory is O(B·H·W) whatever the number of limbs; the backward pass recomputes the
    geometry of the winning limb only, per pixel.  Gradients by Danskin's theorem: with ``c`` the
    closest point of the segment, ``t`` its parameter and ``e`` the unit vector from ``c`` to the
    pixel, ``∂d/∂a = -(1 - t) e`` and ``∂d/∂b = -t e`` (0 exactly on the segment, where ``d`` is not
    differentiable).
    """

    @staticmethod
    def forward(ctx, points, limbs, h, w, inv):
        gx = _grid(w, points).view(1, 1, w)
        gy = _grid(h, points).view(1, h, 1)
        best = winner = None
        end = lambda i, c: points[:, i, c].view(-1, 1, 1)  # noqa: E731
        for k, (ia, ib) in enumerate(limbs):
            _, dx, dy = _segment_offsets(end(ia, 0), end(ia, 1), end(ib, 0), end(ib, 1), gx, gy)
            d2 = dx.mul_(dx).add_(dy.mul_(dy))
            if best is None:
                best, winner = d2, torch.zeros(d2.shape, dtype=torch.int16 if len(limbs) >= 256 else torch.uint8, device=d2.device)
            else:
                nearer = d2 < best
                best = torch.minimum(best, d2)
                winner.masked_fill_(nearer, k)
        out = torch.exp(best.sqrt_().mul_(-inv))
        ctx.save_for_backward(points, out, winner)
        ctx.limbs, ctx.hw, ctx.inv = limbs, (h, w), inv
        return out.unsqueeze(1)

    @staticmethod
    def backward(ctx, grad_out):
        points, out, winner = ctx.saved_tensors
        h, w = ctx.hw
        bsz = points.shape[0]
        gx = _grid(w, points).view(1, 1, w)
        gy = _grid(h, points).view(1, h, 1)
        limbs = torch.tensor(ctx.limbs, device=points.device)  # L×2
        ends = limbs[winner.long()]  # B×H×W×2: the winning limb's endpoints at every pixel
        ia, ib = ends[..., 0].reshape(bsz, -1), ends[..., 1].reshape(bsz, -1)
        at = lambda idx, c: points[..., c].gather(1, idx).view(bsz, h, w)  # noqa: E731  (B×H×W)
        t, dx, dy = _segment_offsets(at(ia, 0), at(ia, 1), at(ib, 0), at(ib, 1), gx, gy)
        d = torch.sqrt(dx * dx + dy * dy)
        g = grad_out[:, 0] * out * ctx.inv  # dL/d(-d) on the winning limb
        coef = torch.where(d > 0, g / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
        wx, wy = coef * dx, coef * dy  # = g * e
        s = 1.0 - t
        grad = torch.zeros_like(points)
        gxk, gyk = grad[..., 0], grad[..., 1]
        for idx, fx, fy in ((ia, s * wx, s * wy), (ib, t * wx, t * wy)):
            gxk.scatter_add_(1, idx, fx.reshape(bsz, -1))
            gyk.scatter_add_(1, idx, fy.reshape(bsz, -1))
        return grad, None, None, None, None


def render_skeleton(
    points: torch.Tensor,
    skeleton: Skeleton | Sequence[tuple[int, int]],
    size: Size,
    sigma: float = 0.2,
) -> torch.Tensor:
    """Render ``B×K×2`` points in [-1, 1] as a ``B×1×H×W`` skeleton image in [0, 1].

    For each limb ``(a, b)`` the value at pixel centre ``u`` is
    ``exp(-d(u, segment ab) / sigma**2)`` with ``d`` the Euclidean distance (not
    squared) in [-1, 1] units; the image is the max over limbs.  Pixel centres
    follow :func:`soft_argmax` (``linspace(-1, 1, ·)``).  Differentiable in the
    points (the gradient of ``d`` is taken as 0 exactly on a segment).

    Memory: only the output and a uint8 map of the winning limb are kept for
    backward, and limbs are processed one at a time.  For B=16, 16 limbs,
    128×128 in float32, the tensors kept for backward plus the output come
    to about 2.3 MiB. The transient peak while rendering is a few B×H×W
    buffers (~6 MiB). A fully broadcast, autograd-traced version keeps
    ~131 MiB (measured by ``tests/test_geometry.py::test_render_memory``).
    """
    limbs = skeleton.limbs if isinstance(skeleton, Skeleton) else tuple(tuple(l) for l in skeleton)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be B×K×2, got shape {tuple(points.shape)}")
    if not limbs:
        raise ValueError("the skeleton has no limbs to render")
    k = points.shape[1]
    if max(max(l) for l in limbs) >= k:
        raise ValueError(f"the skeleton's limbs index {max(max(l) for l in limbs) + 1} keypoints, points have {k}")
    h, w = as_size(size)
    with _full_precision(points):  # in float32 under mixed precision (bf16/fp16 points are upcast)
        return _RenderSkeleton.apply(_upcast(points), tuple(limbs), h, w, 1.0 / (sigma**2))


def _full_precision(t: torch.Tensor):
    """A context with autocast off on ``t``'s device (the renderer and soft-argmax work in float32)."""
    import contextlib

    if t.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(t.device.type):
        return torch.autocast(t.device.type, enabled=False)
    return contextlib.nullcontext()


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 → float32; other dtypes as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def to_signed(image01: torch.Tensor) -> torch.Tensor:
    """Map a skeleton image from [0, 1] to the [-1, 1] range networks use (``2y - 1``)."""
    return image01 * 2.0 - 1.0


def render_signed(points: torch.Tensor, skeleton: Skeleton | Sequence[tuple[int, int]], size: Size, sigma: float = 0.2) -> torch.Tensor:
    """β as the networks see it: ``B×K×2`` points in [-1, 1] → ``B×1×H×W`` skeleton image in [-1, 1]
    (:func:`render_skeleton` through :func:`to_signed`; what Φ should emit, what D and Ψ are given)."""
    return to_signed(render_skeleton(points, skeleton, size, sigma))
