"""Video files: count frames, read any frame by index (seek + decode forward), read in order, write.

The one place that talks to the codec library, PyAV (``pip install
'keypointgan[video]'``), used by the datasets (training and evaluation on
``ROOT/videos/<video_id>.mp4``) and by video prediction.

Frames are numbered ``0 .. T-1`` in presentation order.  A video's *frame
index* is built once per file by demuxing it without decoding: the
presentation timestamp of every packet, sorted, and which ones are
keyframes (about 9 bytes per frame; cached per file).  Reading frame ``i``
then seeks to the keyframe at or before it and decodes forward, or keeps
decoding from the current position when ``i`` lies a little ahead — never
the whole video.

A frame that cannot be decoded (a corrupt packet) is skipped with a
:class:`VideoFrameWarning` that names the file and the frame; random access
returns the next decodable frame in its place (or the last one before it at
the end of the video).
"""

from __future__ import annotations

import functools
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .io import atomic_path

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoFrameWarning",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_video_file",
    "require_av",
    "probe",
    "write_video",
    "video_codec",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm"}
_INSTALL = "reading or writing video files needs PyAV: pip install 'keypointgan[video]'"


class VideoFrameWarning(UserWarning):
    """A frame of a video could not be decoded and was skipped."""


def is_video_file(path: str | Path) -> bool:
    """Whether ``path`` names a video container this module reads (by its suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_av(path: str | Path | None = None):
    """Import PyAV, or raise :class:`InputError` telling the user how to install it."""
    try:
        import av
    except ImportError:
        raise InputError(_INSTALL, path) from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reports about a video file."""

    path: Path
    num_frames: int
    width: int
    height: int
    fps: float
    codec: str


@dataclass(frozen=True)
class _Index:
    pts: np.ndarray  # (T,) int64 presentation timestamps, sorted, in the stream's time base
    key: np.ndarray  # (T,) bool: frame t is a keyframe
    info: VideoInfo


def _open(path: Path):
    av = require_av(path)
    if not path.is_file():
        raise InputError("video file not found", path)
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot open video ({exc.__class__.__name__}: {exc})", path) from None
    if not container.streams.video:
        container.close()
        raise InputError("file holds no video stream", path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return av, container, stream


@functools.lru_cache(maxsize=4096)
def _index_cached(path: str, mtime_ns: int, size: int) -> _Index:
    p = Path(path)
    av, container, stream = _open(p)
    try:
        pts, key = [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    raise InputError("video packets carry no timestamps; re-encode it (e.g. ffmpeg -i IN OUT.mp4)", p)
                pts.append(int(t))
                key.append(bool(packet.is_keyframe))
        except av.error.FFmpegError as exc:
            if not pts:
                raise InputError(f"cannot read video ({exc.__class__.__name__}: {exc})", p) from None
            warnings.warn(f"{p}: the video's data ends early ({exc}); using its first {len(pts)} frames", VideoFrameWarning, stacklevel=3)
        if not pts:
            raise InputError("video holds no frames", p)
        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        pts_arr = np.asarray(pts, dtype=np.int64)[order]
        if np.any(np.diff(pts_arr) == 0):
            raise InputError("video has frames with equal timestamps; re-encode it (e.g. ffmpeg -i IN OUT.mp4)", p)
        key_arr = np.asarray(key, dtype=bool)[order]
        key_arr[0] = True  # decoding always starts from the first packet after a seek to 0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        cc = stream.codec_context
        info = VideoInfo(p, len(pts_arr), int(cc.width), int(cc.height), float(rate) if rate else 0.0, cc.name)
        return _Index(pts_arr, key_arr, info)
    finally:
        container.close()


def _index(path: str | Path) -> _Index:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise InputError("video file not found", p) from None
    require_av(p)
    return _index_cached(str(p), st.st_mtime_ns, st.st_size)


def probe(path: str | Path) -> VideoInfo:
    """Frame count (by demuxing, exact), size, frame rate and codec of a video file."""
    return _index(path).info


class VideoReader:
    """Random and sequential access to the frames of one video file.

    Example::

        with VideoReader("clip.mp4") as r:
            r.num_frames, r.width, r.height, r.fps
            img = r.read(120)                    # H×W×3 uint8 RGB
            for t, img in r.frames():            # every decodable frame, in order
                ...

    Args:
        path: the video file.
        max_forward: when frame ``i`` lies at most this many frames after
            the current position and no keyframe lies in between, decode
            forward instead of seeking.
    """

    def __init__(self, path: str | Path, *, max_forward: int = 64):
        self.path = Path(path)
        self._idx = _index(self.path)
        self.info = self._idx.info
        self.max_forward = int(max_forward)
        self._container = None
        self._stream = None
        self._gen: Iterator | None = None
        self._pos = -1  # index of the last frame the decoder returned (-1: none since the last seek)
        self._pid = None
        self._warned: set[int] = set()
        self._err: str | None = None  # the decoder's last error, for the next skipped-frame warning

    # --------------------------------------------------------------- info
    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def fps(self) -> float:
        return self.info.fps

    def __len__(self) -> int:
        return self.num_frames

    def time(self, index: int) -> float:
        """Presentation time of frame ``index`` in seconds from the first frame."""
        tb = self._time_base()
        return float((int(self._idx.pts[index]) - int(self._idx.pts[0])) * tb) if tb else index / (self.fps or 1.0)

    def _time_base(self):
        self._ensure_open()
        return self._stream.time_base

    # ------------------------------------------------------------ decoding
    def _ensure_open(self) -> None:
        if self._container is not None and self._pid == os.getpid():
            return
        # a reader copied into a forked worker opens its own container
        self._container, self._stream, self._gen, self._pos = None, None, None, -1
        self._av, self._container, self._stream = _open(self.path)
        self._pid = os.getpid()

    def close(self) -> None:
        if self._container is not None and self._pid == os.getpid():
            self._container.close()
        self._container, self._stream, self._gen, self._pos = None, None, None, -1

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        # never pickle an open container (DataLoader workers with spawn): reopen on use
        state = self.__dict__.copy()
        state.update(_container=None, _stream=None, _gen=None, _pos=-1, _pid=None)
        state.pop("_av", None)
        return state

    def _skip(self, index: int) -> None:
        if index not in self._warned:
            self._warned.add(index)
            why = f"decoder error {self._err}" if self._err else "missing from the decoded stream"
            warnings.warn(f"{self.path}: frame {index} could not be decoded ({why}); skipped", VideoFrameWarning, stacklevel=4)

    def _decode(self) -> Iterator:
        """``(index, av.VideoFrame)`` for every decodable frame from the current demuxer position."""
        av, stream, pts = self._av, self._stream, self._idx.pts
        for packet in self._container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                # with frame threading the error may surface a few packets late, so the
                # skipped frames are found from the gaps in the decoded timestamps instead
                self._err = f"{exc.__class__.__name__}: {exc}"
                continue
            for frame in frames:
                t = frame.pts if frame.pts is not None else frame.dts
                if t is None:
                    continue
                j = int(np.searchsorted(pts, t))
                if j < len(pts) and pts[j] == t:
                    yield j, frame
                    self._err = None

    def _seek_to(self, key: int) -> None:
        """Seek to keyframe number ``key`` (a frame index); the decoder restarts there."""
        self._ensure_open()
        self._container.seek(int(self._idx.pts[key]), stream=self._stream, backward=True, any_frame=False)
        self._gen = self._decode()
        self._pos = -1

    def _advance(self, index: int, *, accept_later: bool) -> np.ndarray | None:
        """Decode forward to frame ``index``; None when the first frame after a seek lies beyond it."""
        last = None
        for j, frame in self._gen:
            if j > index and self._pos < 0 and not accept_later:
                return None  # the seek landed after the frame: the caller seeks earlier
            if self._pos >= 0:
                for k in range(self._pos + 1, min(j, index + 1)):
                    self._skip(k)
            elif j > index:
                self._skip(index)
            self._pos, last = j, frame
            if j >= index:
                return frame.to_ndarray(format="rgb24")
        # end of the video before ``index``: the last decodable frame stands in for it
        self._gen, self._pos = None, -1
        if last is None:
            return None
        self._skip(index)
        return last.to_ndarray(format="rgb24")

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``H×W×3`` uint8 RGB (a skipped frame: the next decodable one, with a warning)."""
        n = self.num_frames
        index = int(index)
        if not 0 <= index < n:
            raise IndexError(f"{self.path}: frame {index} out of range (the video has {n} frames)")
        self._ensure_open()
        if (
            self._gen is not None
            and 0 <= self._pos < index
            and index - self._pos <= self.max_forward
            and not self._idx.key[self._pos + 1 : index + 1].any()
        ):
            img = self._advance(index, accept_later=True)
            if img is not None:
                return img
        keys = [int(k) for k in np.flatnonzero(self._idx.key[: index + 1])[::-1][:2]]
        if not keys or keys[-1] != 0:
            keys.append(0)
        for i, k in enumerate(keys):
            self._seek_to(k)
            img = self._advance(index, accept_later=i == len(keys) - 1)
            if img is not None:
                return img
        raise InputError(f"no frame of the video can be decoded (wanted frame {index})", self.path)

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, H×W×3 uint8)`` for every decodable frame from ``start`` on, in order.

        Skipped frames are reported with a :class:`VideoFrameWarning` and left out.
        """
        self._ensure_open()
        keys = np.flatnonzero(self._idx.key[: start + 1])
        self._seek_to(int(keys[-1]) if len(keys) else 0)
        expected = start
        gen = self._gen
        for j, frame in gen:
            if j < start:
                continue
            for k in range(expected, j):
                self._skip(k)
            expected = j + 1
            self._pos = j
            yield j, frame.to_ndarray(format="rgb24")
        for k in range(expected, self.num_frames):
            self._skip(k)
        self._gen, self._pos = None, -1


def video_codec(suffix: str = ".mp4") -> str:
    """The encoder used for a container: H.264 (libx264) when PyAV's ffmpeg has it, else MPEG-4 part 2."""
    av = require_av()
    suffix = suffix.lower()
    if suffix == ".webm":
        return "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    if suffix in (".mp4", ".mov", ".mkv") and "libx264" in av.codecs_available:
        return "libx264"
    return "mpeg4"


class VideoWriter:
    """Write ``H×W×3`` uint8 RGB frames to a video file, atomically (the file appears on :meth:`close`).

    The container follows the suffix (``.mp4 .mov .mkv .avi .webm``); the
    codec is :func:`video_codec`'s choice unless given.  Odd frame sizes are
    padded with one black row or column (4:2:0 video needs even sizes).

    Args:
        path: the output file.
        fps: frames per second.
        codec: an ffmpeg encoder name (``libx264``, ``mpeg4``, ...).
        gop_size: frames between keyframes (the encoder's default if None).
        quality: 0 (small file) .. 1 (near lossless); default 0.8.
    """

    def __init__(self, path: str | Path, *, fps: float = 25.0, codec: str | None = None, gop_size: int | None = None, quality: float = 0.8):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FORMATS:
            raise InputError(f"unknown video container {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}", self.path)
        if not (fps > 0 and np.isfinite(fps)):
            raise InputError(f"frame rate must be positive, got {fps}", self.path)
        self._av = require_av(self.path)
        self.codec = codec or video_codec(suffix)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.gop_size = gop_size
        self.quality = float(quality)
        self.count = 0
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._container = self._av.open(str(tmp), "w", format=_FORMATS[suffix])
        except Exception:
            self._stack.close()
            raise
        self._stream = None
        self._size: tuple[int, int] | None = None

    def _start(self, h: int, w: int) -> None:
        s = self._container.add_stream(self.codec, rate=self.fps)
        s.width, s.height = w + (w % 2), h + (h % 2)
        s.pix_fmt = "yuv420p"
        if self.gop_size:
            s.codec_context.gop_size = int(self.gop_size)
        q = min(max(self.quality, 0.0), 1.0)
        if self.codec == "libx264":
            s.options = {"crf": str(int(round(35 - 25 * q))), "preset": "veryfast"}
        elif self.codec.startswith("libvpx"):
            s.options = {"crf": str(int(round(50 - 40 * q))), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            s.bit_rate = int(max(2e5, s.width * s.height * float(self.fps) * (0.5 + 3 * q)))
        self._stream, self._size = s, (h, w)

    def write(self, image: np.ndarray) -> None:
        """Append one ``H×W×3`` uint8 RGB frame (all frames must share one size)."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frames must be H×W×3 uint8, got {img.shape} {img.dtype}")
        if self._stream is None:
            self._start(img.shape[0], img.shape[1])
        elif img.shape[:2] != self._size:
            raise ValueError(f"frame {self.count} is {img.shape[1]}×{img.shape[0]}, the video is {self._size[1]}×{self._size[0]}")
        h, w = img.shape[:2]
        if h % 2 or w % 2:
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts = self.count
        frame.time_base = 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.count += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
        except BaseException as exc:
            self.abort(exc)
            raise
        self._container = None
        self._stack.close()

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the partial file: nothing appears under the final name."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        err = exc or RuntimeError("video writing aborted")
        self._stack.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


def write_video(path: str | Path, frames, *, fps: float = 25.0, **kwargs) -> int:
    """Write an iterable of ``H×W×3`` uint8 frames to ``path``; returns the number written."""
    with VideoWriter(path, fps=fps, **kwargs) as w:
        for f in frames:
            w.write(f)
    return w.count
