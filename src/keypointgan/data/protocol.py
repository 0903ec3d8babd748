"""A dataset with its evaluation protocol (:class:`VideoDataset`), and the registry of formats.

Every format — the generic layout (:mod:`.layout`), :mod:`.human36m`, :mod:`.penn`, :mod:`.faces` —
opens a folder as a :class:`VideoDataset` and registers itself with :func:`register_format`: a name, a
recogniser (does this folder look like the format?) and an opener.  :mod:`.formats` picks one for a folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..io import IMAGE_SUFFIXES
from ..skeleton import Skeleton
from .layout import Layout, Video, check_poses, frame_sort_key, load_prior

__all__ = ["VideoDataset", "FORMATS", "register_format", "frame_folder", "stack_checked"]


@dataclass
class VideoDataset:
    """A dataset with its protocol: what training and evaluation read, whatever the format.

    Attributes:
        name: the format name (``generic``, ``simple-human36m``, …).
        root: the dataset folder.
        skeleton: the keypoint layout.
        videos: training videos (frames only; their keypoints are never used for training).
        test_videos: the videos the protocol evaluates on.
        groups: ``{video id: group}`` — test frames are averaged per group, then over groups.
        group_name: what a group is (``activity``, ``action``, ``video``).
        metric: ``image`` (% of image size) or ``interocular`` (% of the inter-ocular distance).
        notes: protocol facts worth printing (e.g. subjects missing from the folder).
        prior_lengths: poses per prior sequence, in the order ``prior_loader`` concatenates them
            (None: the prior has no sequences).
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
    prior_lengths: Callable[[], list[int]] | None = None

    @classmethod
    def from_layout(cls, layout: Layout) -> "VideoDataset":
        """The generic layout as a format: trains on every video, tests on those with keypoints (each
        its own group), the prior ``ROOT/prior.npy``, the error in % of the image size."""
        return cls(
            name="generic", root=layout.root, skeleton=layout.skeleton, videos=list(layout.videos),
            test_videos=[v for v in layout.videos if v.keypoints_path is not None], groups={},
            prior_loader=lambda: load_prior(layout.prior_path, layout.skeleton), keypoint_loader=layout.load_keypoints,
        )

    def num_frames(self) -> int:
        return sum(len(v) for v in self.videos)

    def load_prior(self) -> np.ndarray:
        """The protocol's prior poses, ``(N, K, 2)`` float32 in [0, 1] as ``((x + 0.5) / width, (y + 0.5) / height)``
        (checked: finite, K of the skeleton)."""
        return check_poses(self.prior_loader(), self.skeleton, self.root, what="prior", allow_nan=False)

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, K, 2)`` float32 pixel ``(x, y)`` of ``video``'s frames (NaN: missing or invisible)."""
        return self.keypoint_loader(video)

    def group_of(self, video: Video) -> str:
        return self.groups.get(video.id, video.id)


# name -> (recogniser, opener), in the order auto-detection tries them
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[..., VideoDataset]]] = {}


def register_format(name: str, recognise: Callable[[Path], bool], open: Callable[..., VideoDataset]) -> None:
    """Make a dataset format known: ``recognise(root)`` tells whether a folder is in it, ``open(root, **kw)`` reads it."""
    FORMATS[name] = (recognise, open)


def frame_folder(folder: Path, *, required: bool = True) -> tuple[Path, ...]:
    """Image files of ``folder`` sorted by the number in their names."""
    if not folder.is_dir():
        if required:
            raise InputError("frame folder not found", folder)
        return ()
    return tuple(
        sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")), key=frame_sort_key)
    )


def stack_checked(arrs: Sequence[np.ndarray], what: str, path) -> np.ndarray:
    if not arrs:
        raise InputError(f"no {what} found", path)
    return np.stack(arrs).astype(np.float32)
