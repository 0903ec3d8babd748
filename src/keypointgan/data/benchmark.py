"""Datasets read in their own on-disk format, each with its evaluation protocol.

A :class:`Benchmark` gives the training code the same things the generic
:class:`~keypointgan.data.layout.Layout` does — ``videos`` (frame files in order),
``skeleton``, a prior and ``load_keypoints`` — plus the protocol: which videos
train, which are tested, how test frames are grouped for the mean (e.g. per
activity) and which error is reported.  ``Trainer``, :func:`keypointgan.api.train`
and :func:`keypointgan.api.evaluate` use it unchanged.

Formats (``--format``; ``auto`` recognises each by its folder structure):

========================  ====================================================
``generic``               the library's layout (``videos/``, ``skeleton.yaml``)
``simple-human36m``       Simplified Human3.6M (Zhang et al. 2018), :mod:`.human36m`
``human36m``              Human3.6M with ``MyPoseFeatures/D2_Positions``, :mod:`.human36m`
``penn-action``           Penn Action (``frames/``, ``labels/*.mat``), :mod:`.penn`
``300vw``                 face videos with 300-W ``.pts`` landmarks, :mod:`.faces`
========================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..io import IMAGE_SUFFIXES
from ..skeleton import Skeleton
from .layout import Video, frame_sort_key

__all__ = ["Benchmark", "FORMATS", "detect_format", "open_dataset", "frame_folder"]


@dataclass
class Benchmark:
    """A dataset with its protocol.

    Attributes:
        name: the format name (``simple-human36m``, …).
        root: the dataset folder.
        skeleton: the keypoint layout.
        videos: training videos (frames only; their keypoints are never used for training).
        test_videos: the videos the protocol evaluates on.
        groups: ``{video id: group}`` — test frames are averaged per group, then over groups.
        group_name: what a group is (``activity``, ``action``, ``video``).
        metric: ``image`` (% of image size) or ``interocular`` (% of the inter-ocular distance).
        notes: protocol facts worth printing (e.g. subjects missing from the folder).
    """

    name: str
    root: Path
    skeleton: Skeleton
    videos: list[Video]
    test_videos: list[Video]
    groups: dict[str, str]
    prior_loader: Callable[[], np.ndarray]
    keypoint_loader: Callable[[Video], np.ndarray]
    group_name: str = "video"
    metric: str = "image"
    notes: list[str] = field(default_factory=list)

    # --- what Layout offers -------------------------------------------------
    @property
    def prior_path(self) -> Path:
        return self.root

    @property
    def has_keypoints(self) -> bool:
        return bool(self.test_videos)

    def num_frames(self) -> int:
        return sum(len(v) for v in self.videos)

    def load_prior(self) -> np.ndarray:
        """The protocol's prior poses, ``(N, K, 2)`` float32 in [0, 1] as ``(x / width, y / height)``."""
        return self.prior_loader()

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, K, 2)`` float32 pixel ``(x, y)`` of ``video``'s frames (NaN: missing or invisible)."""
        return self.keypoint_loader(video)

    def group_of(self, video: Video) -> str:
        return self.groups.get(video.id, video.id)


def frame_folder(folder: Path, *, required: bool = True) -> tuple[Path, ...]:
    """Image files of ``folder`` sorted by the number in their names."""
    if not folder.is_dir():
        if required:
            raise InputError("frame folder not found", folder)
        return ()
    return tuple(
        sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")), key=frame_sort_key)
    )


def _is_simple_h36m(root: Path) -> bool:
    return any((d / "WithBackground").is_dir() and (d / "Landmarks").is_dir() for d in root.glob("S*"))


def _is_h36m(root: Path) -> bool:
    return any((d / "MyPoseFeatures" / "D2_Positions").is_dir() for d in root.glob("S*"))


def _is_penn(root: Path) -> bool:
    return (root / "frames").is_dir() and (root / "labels").is_dir()


def _is_300vw(root: Path) -> bool:
    return any((d / "annot").is_dir() for d in root.iterdir() if d.is_dir())


def _open_simple_h36m(root, **kw):
    from .human36m import SimpleHuman36M

    return SimpleHuman36M(root, **kw).benchmark()


def _open_h36m(root, **kw):
    from .human36m import Human36M

    return Human36M(root, **kw).benchmark()


def _open_penn(root, **kw):
    from .penn import PennAction

    return PennAction(root, **kw).benchmark()


def _open_300vw(root, **kw):
    from .faces import FaceVideos

    return FaceVideos(root, **kw).benchmark()


# name -> (recogniser, opener); order matters for auto-detection
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[..., Benchmark]]] = {
    "simple-human36m": (_is_simple_h36m, _open_simple_h36m),
    "human36m": (_is_h36m, _open_h36m),
    "penn-action": (_is_penn, _open_penn),
    "300vw": (_is_300vw, _open_300vw),
}


def detect_format(root: str | Path) -> str:
    """``generic`` or the name of the dataset format ``root`` is in (by its folder structure)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found", root)
    if (root / "videos").is_dir():
        return "generic"
    for name, (recognise, _) in FORMATS.items():
        if recognise(root):
            return name
    return "generic"  # the generic reader names what is missing


def open_dataset(root: str | Path, format: str = "auto", **kwargs):
    """A :class:`~keypointgan.data.layout.Layout` (``generic``) or a :class:`Benchmark` for ``root``.

    ``kwargs`` go to the format's reader (e.g. ``skeleton=`` for the generic layout,
    ``frame_step=`` for Human3.6M).
    """
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt == "generic":
        from .layout import Layout

        return Layout(root, kwargs.get("skeleton"))
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format {format!r}; choose from auto, generic, {', '.join(FORMATS)}")
    if not root.is_dir():
        raise InputError("dataset folder not found", root)
    kwargs = {k: v for k, v in kwargs.items() if k != "skeleton" or v is not None}
    return FORMATS[fmt][1](root, **kwargs)


def stack_checked(arrs: Sequence[np.ndarray], what: str, path) -> np.ndarray:
    if not arrs:
        raise InputError(f"no {what} found", path)
    return np.stack(arrs).astype(np.float32)
