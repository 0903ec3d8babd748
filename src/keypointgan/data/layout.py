"""The generic on-disk layout that every dataset can be written in.

::

    ROOT/skeleton.yaml
    ROOT/videos/<video_id>/<frame>.png|.jpg   frames sorted by the number in their name, or
    ROOT/videos/<video_id>.mp4                a video file (.mp4 .avi .mov .mkv .webm; needs PyAV)
    ROOT/keypoints/<video_id>.npy             (T, K, 2) float32 pixel (x, y); optional, evaluation only
    ROOT/prior.npy                            (N, K, 2) float32 in [0, 1] as ((x + 0.5) / width, (y + 0.5) / height)

Frame folders and video files may be mixed in one ``videos/`` folder.  A
video file's frames are decoded on demand (seek + decode forward, see
:mod:`keypointgan.video`), never all at once.

Pixel coordinates put the centre of pixel column ``j`` at ``x = j`` (see
:mod:`keypointgan.pixels`).  Training never reads ``keypoints/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, check_output_folder, image_size
from ..skeleton import Skeleton
from ..video import VIDEO_SUFFIXES, is_video_file
from .priors import to_float32

__all__ = ["Video", "Layout", "load_prior", "check_poses", "frame_sort_key", "check_training_start", "frame_hw"]

_NUM = re.compile(r"(\d+)")


def frame_sort_key(path: Path):
    """Sort frames by the (last) number in their name, then by name."""
    nums = _NUM.findall(path.stem)
    return (int(nums[-1]) if nums else -1, path.name)


@dataclass(frozen=True)
class Video:
    """One video of the layout: its id, its frames, its keypoint file if any.

    The frames are either image files (``frames``, in order) or one video
    file (``file``, with ``num_frames`` frames; ``frames`` is empty).
    ``frame_ids`` (video files only) picks the file's frames this video uses,
    in order: frame ``t`` of the video is frame ``frame_ids[t]`` of the file
    (e.g. every 5th frame of its first half); without it every frame is used.
    ``masks`` (optional, one file per frame) are foreground masks multiplied into
    the frames when they are read (e.g. Simplified Human3.6M's ``BackgroudMask``).
    """

    id: str
    frames: tuple[Path, ...]
    keypoints_path: Path | None
    file: Path | None = None
    num_frames: int = 0
    masks: tuple[Path, ...] | None = None
    frame_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.frame_ids is None:
            return
        if self.file is None:
            raise ValueError(f"video {self.id!r}: frame_ids select frames of a video file, but the video has no file")
        ids = tuple(int(i) for i in self.frame_ids)
        bad = [i for i in ids if not 0 <= i < self.num_frames]
        if bad:
            raise ValueError(f"video {self.id!r}: frame_ids {bad[:3]} outside the file's {self.num_frames} frames ({self.file})")
        object.__setattr__(self, "frame_ids", ids)

    def __len__(self) -> int:
        if self.file is None:
            return len(self.frames)
        return self.num_frames if self.frame_ids is None else len(self.frame_ids)

    def file_frame(self, t: int) -> int:
        """The number of the video file's frame that is frame ``t`` of this video."""
        return int(t if self.frame_ids is None else self.frame_ids[t])

    @classmethod
    def from_file(
        cls, id: str, path: str | Path, keypoints_path: Path | None = None, frame_ids: Sequence[int] | None = None
    ) -> "Video":
        """A video backed by a video file; counts its frames (demuxing, no decoding).

        ``frame_ids``: the file's frames to use (default all of them).
        """
        from ..video import probe

        ids = None if frame_ids is None else tuple(int(i) for i in frame_ids)
        return cls(id, (), keypoints_path, Path(path), probe(path).num_frames, frame_ids=ids)


def check_poses(arr: np.ndarray, skeleton: Skeleton | None, path: Path | str, *, what: str, allow_nan: bool) -> np.ndarray:
    """Validate an ``(N, K, 2)`` pose array; return it as float32."""
    if arr.dtype.kind not in "iuf":  # not objects, strings, booleans, complex numbers, dates or time spans
        raise InputError(f"{what} must be a numeric array of real numbers, got dtype {arr.dtype}", path)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise InputError(f"{what} must have shape (N, K, 2), got {tuple(arr.shape)}", path)
    if arr.shape[0] == 0:
        raise InputError(f"{what} holds no poses", path)
    if arr.shape[1] == 0:
        raise InputError(f"{what} holds poses of no keypoints, shape {tuple(arr.shape)}", path)
    if skeleton is not None and arr.shape[1] != skeleton.num_keypoints:
        raise InputError(
            f"{what} has K={arr.shape[1]} keypoints but the skeleton '{skeleton.name}' has {skeleton.num_keypoints}", path
        )
    if np.isinf(arr).any():
        raise InputError(f"{what} contains infinite values", path)
    arr = to_float32(arr, path, what)
    if not allow_nan and np.isnan(arr).any():
        n = int(np.isnan(arr).any(axis=(1, 2)).sum())
        raise InputError(f"{what} contains NaN values (in {n} of {arr.shape[0]} poses)", path)
    return arr


def load_prior(path: str | Path, skeleton: Skeleton | None = None) -> np.ndarray:
    """Read a prior file: ``(N, K, 2)`` float32 poses in [0, 1] as ``((x + 0.5) / width, (y + 0.5) / height)``.

    Formats by suffix (see :mod:`keypointgan.data.priors`): ``.npy``, ``.csv``
    (one pose per row ``x1, y1, x2, y2, …``), ``.json`` (a list of poses, or
    COCO-style ``keypoints`` triples), ``.pts`` or a folder of ``.pts`` files
    (300-W landmarks, converted by the size of the image next to each file).
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".csv", ".json", ".pts"):
        from .priors import read_prior_file

        arr = read_prior_file(path)
    else:
        if not path.is_file():
            raise InputError("prior file not found", path)
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy's header parser raises SyntaxError, TokenError, …
            raise InputError(f"cannot read prior as .npy ({exc})", path) from None
    arr = check_poses(arr, skeleton, path, what="prior", allow_nan=False)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.5 or hi > 1.5:
        raise InputError(
            f"prior values span [{lo:.3g}, {hi:.3g}] but must be in [0, 1] as ((x + 0.5) / width, (y + 0.5) / height)"
            + (" — these look like pixel coordinates" if hi > 2 else ""),
            path,
        )
    return arr


def frame_hw(video: "Video") -> tuple[int, int]:
    """``(H, W)`` of a video's first frame, from the image's or the video file's header (nothing decoded)."""
    if video.file is not None:
        from ..video import probe

        info = probe(video.file)
        return info.height, info.width
    w, h = image_size(video.frames[0])
    return h, w


class Layout:
    """Reader for a dataset folder in the generic layout.

    Args:
        root: the dataset folder.
        skeleton: the skeleton to use; by default ``ROOT/skeleton.yaml``.
    """

    def __init__(self, root: str | Path, skeleton: Skeleton | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError("dataset folder not found", self.root)
        vdir = self.root / "videos"
        if not vdir.is_dir():
            raise InputError(
                "dataset has no videos/ folder (generic layout) and is in none of the dataset formats: S*/WithBackground "
                "(simple-human36m), S*/MyPoseFeatures/D2_Positions (human36m), frames/ + labels/ (penn-action), */annot/*.pts (300vw)",
                self.root,
            )
        if skeleton is None:
            skeleton = Skeleton.from_yaml(self.root / "skeleton.yaml")
        self.skeleton = skeleton
        videos: dict[str, Video] = {}
        for d in sorted(p for p in vdir.iterdir() if not p.name.startswith(".")):
            vid = d.name if d.is_dir() else d.stem
            if d.is_dir() and is_video_file(d):
                raise InputError("a folder named like a video file; a video is a file, or a folder of frames without the suffix", d)
            kp = self.root / "keypoints" / f"{vid}.npy"
            if kp.exists() and not kp.is_file():
                raise InputError("a folder named like a keypoint file; keypoints must be .npy files", kp)
            kp = kp if kp.is_file() else None
            if d.is_dir():
                frames = sorted(
                    (p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                    key=frame_sort_key,
                )
                if not frames:
                    continue
                for f in frames:
                    if f.is_dir():
                        raise InputError("a folder named like an image among the frames; frames must be image files", f)
                video = Video(vid, tuple(frames), kp)
            elif is_video_file(d):
                video = Video.from_file(vid, d, kp)
            else:
                continue
            if vid in videos:
                raise InputError(f"two videos have the id {vid!r} (a frame folder and a video file, or two video files)", d)
            videos[vid] = video
        if not videos:
            raise InputError(
                f"videos/ holds no video folders with image frames (.png/.jpg) and no video files ({' '.join(VIDEO_SUFFIXES)})", vdir
            )
        self.videos: list[Video] = sorted(videos.values(), key=lambda v: v.id)

    @property
    def prior_path(self) -> Path:
        return self.root / "prior.npy"

    @property
    def has_keypoints(self) -> bool:
        return all(v.keypoints_path is not None for v in self.videos)

    def num_frames(self) -> int:
        return sum(len(v) for v in self.videos)

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, K, 2)`` float32 pixel keypoints of ``video`` (NaN marks a missing point)."""
        if video.keypoints_path is None:
            raise InputError(f"video {video.id!r} has no keypoints file", self.root / "keypoints")
        path = video.keypoints_path
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy's header parser raises SyntaxError, TokenError, …
            raise InputError(f"cannot read keypoints as .npy ({exc})", path) from None
        arr = check_poses(arr, self.skeleton, path, what="keypoints", allow_nan=True)
        if arr.shape[0] != len(video):
            raise InputError(f"keypoints hold {arr.shape[0]} frames but the video has {len(video)}", path)
        return arr


def check_training_start(videos: Sequence[Video], out: str | Path) -> None:
    """Checks made before training writes anything (before the run folder exists).

    * ``out`` is a folder or can become one (not a file, not under a file).
    * Every video has at least two frames: a target frame paired with itself teaches nothing
      (Ψ copies the appearance frame), so a dataset of one-frame videos is refused and a few
      such videos are named in a warning on stderr.
    * Every frame file's header is readable and within the pixel budget
      (:func:`keypointgan.io.max_image_pixels`): a decompression bomb is refused before any
      pixel is decoded, not halfway through training.
    """
    import sys

    check_output_folder(out)
    single = [v for v in videos if len(v) < 2]
    if videos and len(single) == len(videos):
        where = videos[0].file or (videos[0].frames[0].parent if videos[0].frames else None)
        raise InputError(
            f"every video has a single frame ({len(videos)} videos); training pairs two frames of one video "
            "(a target and an appearance frame) and needs videos of at least 2 frames", where)
    if single:
        names = ", ".join(repr(v.id) for v in single[:5]) + (" …" if len(single) > 5 else "")
        print(f"keypointgan: warning: {len(single)} of {len(videos)} videos have a single frame and teach nothing "
              f"(a frame paired with itself): {names}", file=sys.stderr)
    for v in videos:
        for f in v.frames:
            image_size(f)
