"""Small file helpers: atomic writes, image reading and writing.

All writes go through a temporary file in the destination folder followed by
``os.replace``, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# ------------------------------------------------------------------ the pixel budget
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
"""Images larger than this (width × height) are refused before they are decoded: 64 megapixels
(e.g. 8000 × 8000) is more than any camera frame needs for a detector that works at 64-256 px,
and about 200 MB as 8-bit RGB. Raise it with :func:`set_max_image_pixels`, the environment
variable ``KEYPOINTGAN_MAX_IMAGE_PIXELS`` or ``keypointgan --max-image-pixels N COMMAND``."""
MAX_PIXELS_ENV = "KEYPOINTGAN_MAX_IMAGE_PIXELS"
_max_pixels: int | None = None  # set by set_max_image_pixels; None: the environment or the default


def _parse_max_pixels(text: str, source: str) -> int:
    try:
        v = int(float(text))
    except (ValueError, OverflowError):
        raise InputError(f"{source} must be a positive number of pixels, got {text!r}") from None
    if v < 1:
        raise InputError(f"{source} must be a positive number of pixels, got {text!r}")
    return v


def max_image_pixels() -> int:
    """The pixel budget (width × height) of one image: the setting, ``$KEYPOINTGAN_MAX_IMAGE_PIXELS`` or 64 M."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get(MAX_PIXELS_ENV)
    return _parse_max_pixels(env, MAX_PIXELS_ENV) if env else DEFAULT_MAX_IMAGE_PIXELS


def set_max_image_pixels(n: int | None) -> None:
    """Set the pixel budget of one image (``None``: back to the environment variable or the default).

    The budget replaces PIL's own decompression-bomb limit for the images this library reads
    (a budget above PIL's limit is honoured; PIL's setting itself is left alone).
    """
    global _max_pixels
    _max_pixels = None if n is None else _parse_max_pixels(str(n), "the image pixel budget")


def _over_budget(size: str, budget: int) -> str:
    return (f"image is {size}, over the limit of {budget:,} "
            f"(a decompression bomb? if not, raise the limit: --max-image-pixels or ${MAX_PIXELS_ENV})")


_pil_limit_lock = threading.Lock()


def _open_without_pil_limit(path: Path):
    """``Image.open`` with PIL's decompression-bomb check off for this one call (the pixel budget checks instead)."""
    from PIL import Image

    with _pil_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _open_image(path: Path):
    """PIL's lazy open (header only), refusing images over the pixel budget before any decoding."""
    from PIL import Image

    budget = max_image_pixels()
    # PIL's warnings (its bomb warning, corrupt EXIF, ...) are about a file that is read or refused here:
    # they would only print lines before the one-line error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:  # over PIL's own limit (twice its MAX_IMAGE_PIXELS): the budget decides
            im = _open_without_pil_limit(path)
        with im:
            w, h = im.size
            if w * h > budget:
                raise InputError(_over_budget(f"{w}×{h} = {w * h:,} pixels", budget), path)
            yield im


# ------------------------------------------------------------------ atomic writes
_umask_lock = threading.Lock()


def _file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` would give a new file."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask), not
    ``mkstemp``'s private 0600. An OS error while the temporary file is written is raised
    naming ``path`` (not the temporary file) and saying that ``path`` itself is unchanged.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _named(exc, path, existed) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _file_mode())
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is not None and exc.filename not in (str(tmp_path), tmp):
            raise  # about another file (e.g. an input read while this one is written)
        raise _named(exc, path, existed) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _named(exc: OSError, path: Path, existed: bool) -> OSError:
    """``exc`` as an OSError naming ``path`` and what became of it (the temporary file is removed)."""
    if exc.errno == errno.EEXIST or exc.errno == errno.ENOTDIR:
        return OSError(exc.errno, "cannot create the file: a file stands where a folder of its path should be", str(path))
    where = "the previous file is intact" if existed else "nothing was written"
    reason = exc.strerror or str(exc)
    return OSError(exc.errno, f"{reason} ({where})", str(path))


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
    _check_image_file(path)
    try:
        with _open_image(path) as im:
            im.load()
            if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grayscale: scale, PIL would clip at 255
                wide = np.asarray(im).astype(np.int64)
                im = Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8))
            if im.mode == "RGBA" or im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            arr = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except PermissionError:
        raise InputError("cannot read image: permission denied", path) from None
    except UnidentifiedImageError:
        raise InputError("cannot read image: not an image format PIL knows, or a corrupt header", path) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes PIL's decoders raise many types (zlib.error, struct.error, …)
        if "truncated" in str(exc).lower():
            raise InputError("cannot read image: the file is truncated", path) from None
        raise InputError(f"cannot read image: corrupt data ({exc.__class__.__name__}: {exc})", path) from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image has unusable shape {arr.shape}", path)
    return arr


def _check_image_file(path: Path) -> None:
    if path.is_dir():
        raise InputError("a folder named like an image; images must be files", path)
    if not path.is_file():
        raise InputError("image file not found", path)
    if path.stat().st_size == 0:
        raise InputError("cannot read image: the file is empty", path)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (nothing decoded); errors as :func:`read_image`'s."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    _check_image_file(path)
    try:
        with _open_image(path) as im:
            return im.size
    except PermissionError:
        raise InputError("cannot read image: permission denied", path) from None
    except UnidentifiedImageError:
        raise InputError("cannot read image: not an image format PIL knows, or a corrupt header", path) from None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in read_image
        raise InputError(f"cannot read image: corrupt data ({exc.__class__.__name__}: {exc})", path) from None


def check_output_folder(out: str | Path) -> None:
    """Refuse an output folder path that names an existing file (or lies under one)."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "--out names a file, not a folder" if p == out else f"a file stands where a folder of this path should be ({p})"
                raise InputError(what, out)
            return


def check_writable(path: str | Path) -> None:
    """Check, before any work, that ``path`` can be written: its nearest existing folder takes a new file.

    Creates nothing that stays (a probe file is made and removed at once).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name", path)
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write here: {folder} is a file, not a folder", path)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror or exc})", path) from None
    os.close(fd)
    os.unlink(probe)


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write an ``H×W×3`` (or ``H×W``) uint8 array as PNG/JPEG, atomically."""
    from PIL import Image

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def read_yaml(path: str | Path, *, what: str, format_name: str = "YAML"):
    """Parse a YAML (or JSON) file; a missing file, a syntax error or a mapping key that is not text is
    an :class:`InputError` naming the file (``"<what> not found"``, ``"not valid <format_name> (problem at
    line L, column C)"``, ``"field names must be text, got None"``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid {format_name} ({_yaml_problem(exc)})", path) from None
    _check_keys(data, path)
    return data


def _check_keys(data, path: Path) -> None:
    """Every mapping key is text: a YAML ``? `` or ``1: …`` key would otherwise reach code that joins names."""
    stack, seen = [data], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:  # YAML aliases can make a list hold itself
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise InputError(f"field names must be text, got {k!r}", path)
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def _yaml_problem(exc: Exception) -> str:
    """``problem at line L, column C`` for a YAML error (one line)."""
    mark = getattr(exc, "problem_mark", None)
    text = str(exc).strip()
    problem = getattr(exc, "problem", None) or (text.splitlines()[0] if text else type(exc).__name__)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


# ------------------------------------------------------------------ one writer per run folder
LOCK_NAME = ".keypointgan.lock"
"""The file in a run folder that says which process writes it: ``PID HOST``."""


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``FOLDER/.keypointgan.lock`` while the body runs: one writer per run folder.

    The lock file is created exclusively (``O_EXCL``) and holds ``PID HOST``; it is removed on exit.
    A lock left by a process that is gone (same host, no such PID) is stale and taken over; a live
    holder, or one on another host (whose PIDs cannot be checked), is refused with an
    :class:`InputError` naming the process.  Creates ``folder`` if needed.
    """
    import socket

    folder = Path(folder)
    path = folder / LOCK_NAME
    host = socket.gethostname()
    me = f"{os.getpid()} {host}"
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _file_mode())
        except FileExistsError:
            holder = _lock_holder(path, host)
            if holder is None:  # stale: its process is gone
                path.unlink(missing_ok=True)
                continue
            raise InputError(f"in use by process {holder} (another keypointgan train writes this run folder); "
                             f"wait for it to end, or delete {path} if that process is gone", folder) from None
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        break
    else:  # pragma: no cover - three processes racing for one stale lock
        raise InputError("in use: the run folder's lock keeps changing hands", folder)
    try:
        yield path
    finally:
        try:
            if path.read_text().strip() == me:
                path.unlink()
        except OSError:
            pass


def _lock_holder(path: Path, host: str) -> str | None:
    """``"PID on HOST"`` of a live lock, or None when the lock is stale."""
    import time

    try:
        text = path.read_text().split()
        age = time.time() - path.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 2 or not text[0].isdigit():  # being written (just created) or damaged
        return None if age > 10 else "starting"
    pid, where = int(text[0]), text[1]
    if where != host:
        return f"{pid} on host {where}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return f"{pid} on {where}"
