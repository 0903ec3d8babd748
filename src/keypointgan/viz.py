"""Drawing: keypoints and skeletons over images, sample grids, contact sheets (PIL only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .io import write_image
from .pixels import signed_to_uint8
from .skeleton import Skeleton

LEFT, RIGHT, CENTRE = (255, 80, 40), (40, 140, 255), (60, 220, 60)
CONFIDENCE_THRESHOLD = 0.9
"""Keypoints whose confidence is below this are drawn faint in overlays (and flagged in the viewer)."""


def _side_colour(skeleton: Skeleton, i: int):
    name = skeleton.keypoints[i].lower()
    if name.startswith(("l_", "left")):
        return LEFT
    if name.startswith(("r_", "right")):
        return RIGHT
    return CENTRE


def draw_keypoints(
    image: np.ndarray,
    points: np.ndarray,
    skeleton: Skeleton,
    *,
    scale: int = 1,
    radius: float = 1.5,
    width: int = 1,
    confidence: np.ndarray | None = None,
    threshold: float = CONFIDENCE_THRESHOLD,
) -> np.ndarray:
    """Draw limbs and keypoints (pixel ``(x, y)``, ``K×2``) on an ``H×W×3`` uint8 image.

    The image is upscaled by ``scale`` (nearest) first; left-side parts are
    drawn in orange, right-side in blue, the rest in green.  NaN points are skipped.
    With ``confidence`` (``K`` values in [0, 1]), keypoints below ``threshold`` and the limbs
    that touch them are drawn faint (a third opaque).
    """
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    faint = np.zeros(len(points), bool) if confidence is None else ~(np.asarray(confidence) >= threshold)
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0)) if faint.any() else None
    d, df = ImageDraw.Draw(im), None if layer is None else ImageDraw.Draw(layer)
    alpha = 85
    # pixel centre j sits at (j + 0.5) * scale - 0.5 after nearest upscaling
    p = (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5
    for a, b in skeleton.limbs:
        if np.isfinite(p[[a, b]]).all():
            colour = _side_colour(skeleton, b) if _side_colour(skeleton, b) != CENTRE else _side_colour(skeleton, a)
            if faint[a] or faint[b]:
                df.line([tuple(p[a]), tuple(p[b])], fill=colour + (alpha,), width=width)
            else:
                d.line([tuple(p[a]), tuple(p[b])], fill=colour, width=width)
    r = radius * max(1, scale // 2)
    for i, (x, y) in enumerate(p):
        if np.isfinite([x, y]).all():
            if faint[i]:
                df.ellipse([x - r, y - r, x + r, y + r], fill=_side_colour(skeleton, i) + (alpha,), outline=(0, 0, 0, alpha))
            else:
                d.ellipse([x - r, y - r, x + r, y + r], fill=_side_colour(skeleton, i), outline=(0, 0, 0))
    if layer is not None:
        im = Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")
    return np.asarray(im)


def tensor_to_uint8(images: "torch.Tensor") -> np.ndarray:
    """``B×C×H×W`` in [-1, 1] → ``B×H×W×3`` uint8 (one channel is repeated)."""
    x = signed_to_uint8(images.detach().float().cpu())
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).numpy()


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2, fill: int = 255, *, column_labels: Sequence[str] | None = None,
         row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Tile equally sized ``H×W×3`` images into rows and columns with padding; ``column_labels`` are
    written above the columns, ``row_labels`` left of the rows (so that a picture reads on its own)."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            out[pad + i * (h + pad) : pad + i * (h + pad) + h, pad + j * (w + pad) : pad + j * (w + pad) + w] = img
    if not column_labels and not row_labels:
        return out
    from PIL import Image, ImageDraw

    font, plain = _label_font()
    texts = [[plain(t) for t in (labels or [])] for labels in (column_labels, row_labels)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = lambda t: measure.textbbox((0, 0), t, font=font)  # noqa: E731
    top = max([box(t)[3] for t in texts[0]], default=-4) + 4
    left = max([box(t)[2] for t in texts[1]], default=-4) + 4
    im = Image.new("RGB", (out.shape[1] + left, out.shape[0] + top), (fill,) * 3)
    im.paste(Image.fromarray(out), (left, top))
    d = ImageDraw.Draw(im)
    for j, t in enumerate(texts[0]):
        d.text((left + pad + j * (w + pad) + (w - box(t)[2]) / 2, 1), t, fill=(0, 0, 0), font=font)
    for i, t in enumerate(texts[1]):
        d.text((1, top + pad + i * (h + pad) + (h - box(t)[3]) / 2), t, fill=(0, 0, 0), font=font)
    return np.asarray(im)


_ASCII = {"Φ": "Phi", "β": "beta", "η": "eta", "Ψ": "Psi", "′": "'", "\u0302": "^"}


def _label_font():
    """A font with Greek letters for labels (DejaVu Sans: matplotlib's copy or the system's), and the
    identity; without one PIL's default font and labels spelt in ASCII (Φ → Phi)."""
    import importlib.util

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # located, not imported
    places = ([Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"] if spec and spec.origin else [])
    places.append(Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    for p in places:
        if p.is_file():
            return ImageFont.truetype(str(p), 11), lambda t: t
    return ImageFont.load_default(), lambda t: "".join(_ASCII.get(c, c) for c in t)


SAMPLE_COLUMNS = ("x", "Φ(x)", "β(η(Φ(x)))", "x′", "x̂")
"""The columns of a sample grid: the target frame, Φ's skeleton image, the keypoints re-rendered (with
the keypoints drawn), the appearance frame and the reconstruction ``Ψ(β(η(Φ(x))), x′)``."""


def save_sample_grid(path: str | Path, x, y_hat, points, x_app, x_rec, skeleton: Skeleton, n: int = 8, scale: int = 2, sigma: float = 0.2) -> np.ndarray:
    """A PNG with one row per example: x, Φ(x), β(η(Φ(x))) with keypoints, x′, x̂. Returns the picture (``H×W×3`` uint8)."""
    from . import geometry as G
    from . import pixels as P

    n = min(n, x.shape[0])
    size = x.shape[-1]
    rendered = G.render_signed(points[:n].float(), skeleton, size, sigma)
    cols = [tensor_to_uint8(t[:n]) for t in (x, y_hat, rendered, x_app, x_rec)]
    pix = P.norm_to_pixel(points[:n].float().cpu(), size).numpy()
    rows = []
    for i in range(n):
        row = [np.asarray(_up(c[i], scale)) for c in cols]
        row[2] = draw_keypoints(cols[2][i], pix[i], skeleton, scale=scale)
        rows.append(row)
    sheet = grid(rows, column_labels=SAMPLE_COLUMNS)
    write_image(path, sheet)
    return sheet


def _up(img: np.ndarray, scale: int) -> np.ndarray:
    return img.repeat(scale, 0).repeat(scale, 1) if scale != 1 else img


def overlay_sheet(images: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, skeleton, path: str | Path, n: int = 12, scale: int = 3) -> Path:
    """A PNG of ``n`` frames with predicted keypoints (and, beside each, the truth)."""
    idx = np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int)
    rows = []
    for i in idx:
        row = [draw_keypoints(images[i], pred[i], skeleton, scale=scale, radius=1.5, width=2)]
        if gt is not None:
            row.append(draw_keypoints(images[i], gt[i], skeleton, scale=scale, radius=1.5, width=2))
        rows.append(row)
    # two frames (prediction | truth) per row of the sheet
    flat = [img for r in rows for img in r]
    per = 4 if gt is not None else 6
    sheet = grid([flat[k : k + per] for k in range(0, len(flat), per)])
    write_image(path, sheet)
    return Path(path)
