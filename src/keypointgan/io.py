"""Small file helpers: atomic writes, image reading and writing.

All writes go through a temporary file in the destination folder followed by
``os.replace``, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry to disk (makes a rename durable on POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is renamed over
    ``path``; a crash at any moment leaves either the old file or the new one.
    ``durable`` also fsyncs the file before the rename and the folder after it,
    so the new file survives a power loss once this returns.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    if durable:
        fsync_dir(Path(path).parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``H×W×3`` uint8 RGB.

    Grayscale (8- or 16-bit), palette and CMYK images are converted; transparent
    pixels (RGBA, LA, palette transparency) are composited on black.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError("image file not found", path)
    if path.stat().st_size == 0:
        raise InputError("cannot read image: the file is empty", path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grayscale: scale, PIL would clip at 255
                wide = np.asarray(im).astype(np.int64)
                im = Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8))
            if im.mode == "RGBA" or im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            arr = np.asarray(im.convert("RGB"))
    except PermissionError:
        raise InputError("cannot read image: permission denied", path) from None
    except UnidentifiedImageError:
        raise InputError("cannot read image: not an image format PIL knows, or a corrupt header", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc).lower():
            raise InputError("cannot read image: the file is truncated", path) from None
        raise InputError(f"cannot read image: corrupt data ({exc.__class__.__name__}: {exc})", path) from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image has unusable shape {arr.shape}", path)
    return arr


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write an ``H×W×3`` (or ``H×W``) uint8 array as PNG/JPEG, atomically."""
    from PIL import Image

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def read_yaml(path: str | Path, *, what: str, format_name: str = "YAML"):
    """Parse a YAML (or JSON) file; a missing file or a syntax error is an :class:`InputError`
    naming the file (``"<what> not found"``, ``"not valid <format_name> (problem at line L, column C)"``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid {format_name} ({_yaml_problem(exc)})", path) from None


def _yaml_problem(exc: Exception) -> str:
    """``problem at line L, column C`` for a YAML error (one line)."""
    mark = getattr(exc, "problem_mark", None)
    text = str(exc).strip()
    problem = getattr(exc, "problem", None) or (text.splitlines()[0] if text else type(exc).__name__)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
