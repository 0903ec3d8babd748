"""Prior pose files besides ``.npy``: ``.csv``, ``.json`` and 300-W ``.pts``.

**The unit.** A prior holds ``(N, K, 2)`` float32 poses in **[0, 1] as
``((x + 0.5) / width, (y + 0.5) / height)``** of pixel coordinates (the centre of
pixel column ``j`` at ``x = j``): 0 and 1 are the outer edges of the image, so a
pose keeps its values at any resolution (:func:`keypointgan.pixels.pixel_to_unit`).
Every prior file is read in this unit; priors read from pixel coordinates (COCO
files, ``.pts``, the dataset formats) are converted to it here.

The readers (:func:`keypointgan.data.layout.load_prior` also checks K against the
skeleton and the value range):

* ``.csv``: one pose per row, ``x1, y1, x2, y2, …`` in [0, 1]; an optional
  header row (any non-numeric first row) is skipped.
* ``.json``: either a list of poses (each a list of ``[x, y]`` in [0, 1]), or
  COCO-style keypoints — a COCO file (``images`` with ``width``/``height`` and
  ``annotations`` with flat ``keypoints`` triples ``x, y, v`` in **pixels**,
  converted here by their image's size), or a list of objects with
  ``keypoints`` triples in [0, 1].  Poses with any keypoint of visibility
  ``v = 0`` (not labelled) are left out; a prior needs every point.
* ``.pts`` (300-W landmarks, 1-based pixels) or a folder of them: each file is
  converted by the size of the image with the same name next to it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, image_size
from ..pixels import pixel_to_unit

__all__ = ["read_prior_file", "read_csv_prior", "read_json_prior", "read_pts_prior", "save_prior"]


def save_prior(path: str | Path, poses: np.ndarray) -> Path:
    """Write ``(N, K, 2)`` poses in [0, 1] (the unit above) as a ``.npy`` file; returns ``path``."""
    path = Path(path)
    np.save(path, np.asarray(poses, dtype=np.float32), allow_pickle=False)
    return path


def to_float32(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    """``arr`` as float32; a finite value beyond float32's range is an :class:`InputError` (not a warning and inf)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        big = np.abs(arr[np.isfinite(arr)]) > np.finfo(np.float32).max
        if big.any():
            raise InputError(f"{what} holds a number too large for a coordinate", path)
    return arr.astype(np.float32, copy=False)


def read_prior_file(path: str | Path) -> np.ndarray:
    """A ``.csv``, ``.json`` or ``.pts`` prior (or a folder of ``.pts``) → ``(N, K, 2)`` float32 in [0, 1]."""
    path = Path(path)
    if path.is_dir():
        return read_pts_prior(path)
    if not path.is_file():
        raise InputError("prior file not found", path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_prior(path)
    if suffix == ".json":
        return read_json_prior(path)
    if suffix == ".pts":
        return read_pts_prior(path)
    raise InputError("unknown prior file type (use .npy, .csv, .json or .pts)", path)


def read_csv_prior(path: str | Path) -> np.ndarray:
    """``x1, y1, x2, y2, …`` per row (in [0, 1]) → ``(N, K, 2)``."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read prior as CSV ({exc.__class__.__name__}: {exc})", path) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # header
    if not rows:
        raise InputError("CSV prior holds no poses", path)
    width = len(rows[0])
    out = []
    for i, r in enumerate(rows, 1):
        if len(r) != width:
            raise InputError(f"CSV row {i} has {len(r)} values but the first row has {width}", path)
        try:
            out.append([float(c) for c in r])
        except ValueError:
            raise InputError(f"CSV row {i} holds a value that is not a number", path) from None
    if width % 2:
        raise InputError(f"CSV rows must hold x, y pairs (an even number of values), got {width}", path)
    return to_float32(np.asarray(out, dtype=np.float64), path, "CSV prior").reshape(len(out), width // 2, 2)


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def _triples(kps, where: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(kps, dtype=np.float64).reshape(-1)
    if arr.size == 0 or arr.size % 3:
        raise InputError(f"{where}: 'keypoints' must be flat x, y, v triples, got {arr.size} values", path)
    arr = arr.reshape(-1, 3)
    return arr[:, :2], arr[:, 2]


def _coco_sizes(images, path: Path) -> dict:
    """``{image id: (width, height)}`` of a COCO file's ``images``, each size positive and finite."""
    if not isinstance(images, list):
        raise InputError("COCO 'images' must be a list", path)
    sizes = {}
    for j, im in enumerate(images):
        if not isinstance(im, dict) or not {"id", "width", "height"} <= set(im):
            raise InputError(f"COCO image {j} needs 'id', 'width' and 'height'", path)
        w, h = float(im["width"]), float(im["height"])
        if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
            raise InputError(f"COCO image {im['id']!r} has width × height {im['width']!r} × {im['height']!r}; both must be positive", path)
        try:
            sizes[im["id"]] = (w, h)
        except TypeError:
            raise InputError(f"COCO image {j}: its id must be a number or a string, got {im['id']!r}", path) from None
    return sizes


def read_json_prior(path: str | Path) -> np.ndarray:
    """A JSON list of poses, or COCO-style keypoints (see the module docs) → ``(N, K, 2)``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError("cannot read prior as JSON (nested too deeply)", path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, an integer of over 4300 digits
        raise InputError(f"cannot read prior as JSON ({exc.__class__.__name__}: {exc})", path) from None
    poses: list[np.ndarray] = []
    dropped = 0
    try:
        if isinstance(data, dict) and "annotations" in data:  # a COCO file: pixels, normalised by image size
            sizes = _coco_sizes(data.get("images", []), path)
            for j, ann in enumerate(data["annotations"]):
                if "keypoints" not in ann:
                    continue
                xy, v = _triples(ann["keypoints"], f"annotation {j}", path)
                if ann.get("image_id") not in sizes:
                    raise InputError(f"annotation {j}: image_id {ann.get('image_id')!r} has no entry with width/height in 'images'", path)
                if (v == 0).any():
                    dropped += 1
                    continue
                with np.errstate(over="ignore", invalid="ignore"):  # inf is refused by check_poses
                    w, h = sizes[ann["image_id"]]
                    poses.append(pixel_to_unit(xy, (h, w)))
        elif isinstance(data, list) and data and isinstance(data[0], dict):  # [{"keypoints": [x, y, v, ...]}] in [0, 1]
            for j, item in enumerate(data):
                if "keypoints" not in item:
                    raise InputError(f"item {j} has no 'keypoints'", path)
                xy, v = _triples(item["keypoints"], f"item {j}", path)
                if (v == 0).any():
                    dropped += 1
                    continue
                poses.append(xy)
        elif isinstance(data, list):
            arr = np.asarray(data, dtype=np.float64)
            if arr.ndim != 3 or arr.shape[-1] != 2:
                raise InputError(f"a JSON prior list must be poses × keypoints × [x, y], got shape {arr.shape}", path)
            return to_float32(arr, path, "JSON prior")
        else:
            raise InputError("a JSON prior must be a list of poses or a COCO file with 'annotations'", path)
    except OverflowError:
        raise InputError("JSON prior holds a number too large for a coordinate", path) from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"malformed JSON prior ({exc.__class__.__name__}: {exc})", path) from None
    if not poses:
        raise InputError(f"JSON prior holds no fully labelled pose ({dropped} left out for keypoints with v = 0)", path)
    ks = {p.shape[0] for p in poses}
    if len(ks) > 1:
        raise InputError(f"JSON prior poses have different numbers of keypoints: {sorted(ks)}", path)
    return to_float32(np.stack(poses), path, "JSON prior")


def read_pts(path: str | Path) -> np.ndarray:
    """A 300-W ``.pts`` file → ``(n_points, 2)`` float64 pixel ``(x, y)``, 0-based.

    The format: ``version: 1``, ``n_points: 68``, ``{``, one ``x y`` line per
    point, ``}``.  300-W coordinates are 1-based (MATLAB), so 1 is subtracted
    to put the centre of the first pixel at 0 (the library's convention).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("landmark file not found", path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read .pts file ({exc.__class__.__name__})", path) from None
    header = {}
    i = 0
    while i < len(lines) and lines[i] != "{":
        if ":" not in lines[i]:
            raise InputError(f"malformed .pts header line {lines[i]!r} (expected 'key: value' then '{{')", path)
        k, v = lines[i].split(":", 1)
        header[k.strip().lower()] = v.strip()
        i += 1
    if i == len(lines) or "}" not in lines:
        raise InputError("malformed .pts file: no '{ … }' block of points", path)
    end = lines.index("}")
    body = lines[i + 1 : end]
    try:
        pts = np.array([[float(t) for t in ln.split()] for ln in body], dtype=np.float64)
    except ValueError:
        raise InputError("malformed .pts file: a point line is not two numbers", path) from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError("malformed .pts file: every point line must hold two numbers, x and y", path)
    if "n_points" in header:
        try:
            n = int(header["n_points"])
        except ValueError:
            raise InputError(f"malformed .pts header: n_points is {header['n_points']!r}", path) from None
        if n != len(pts):
            raise InputError(f".pts header says n_points: {n} but the file holds {len(pts)} points", path)
    return pts - 1.0


def _image_next_to(pts: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for cand in (pts.with_suffix(suffix), pts.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    raise InputError("no image with the same name next to it, so its points cannot be normalised to [0, 1]", pts)


def read_pts_prior(path: str | Path) -> np.ndarray:
    """``.pts`` file(s) → ``(N, K, 2)`` in [0, 1] by the size of the image next to each file."""
    path = Path(path)
    files = sorted(path.rglob("*.pts")) if path.is_dir() else [path]
    if not files:
        raise InputError("folder holds no .pts files", path)
    poses = []
    for f in files:
        pts = read_pts(f)
        w, h = image_size(_image_next_to(f))
        poses.append(pixel_to_unit(pts, (h, w)))
    ks = {p.shape[0] for p in poses}
    if len(ks) > 1:
        raise InputError(f".pts files hold different numbers of points: {sorted(ks)}", path)
    return to_float32(np.stack(poses), path, ".pts prior")
