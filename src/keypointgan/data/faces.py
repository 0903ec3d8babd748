"""Face videos with 300-W style ``.pts`` landmarks (the 300-VW layout) and the inter-ocular error.

::

    ROOT/<video_id>/vid.avi                 the video, decoded on demand (PyAV), or
    ROOT/<video_id>/frames/<n>.jpg|.png     its frames, extracted (optional; e.g. ffmpeg -i vid.avi frames/%06d.png)
    ROOT/<video_id>/annot/<n>.pts           68 landmarks of frame n (numbered from 1; 1-based pixels, 300-W format)
    ROOT/test.txt                           optional: the ids of the test videos, one per line

The video file is read directly (seeking, no extraction); a ``frames/``
folder holding images is used instead when there is one.  Extracted frames
and landmark files are matched by the number in their names; frame ``t``
(from 0) of ``vid.avi`` gets ``annot/<t + 1>.pts`` (300-VW numbers frames
from 1, as ``ffmpeg … %06d.png`` does).  Without
``test.txt`` every video is both trained on (frames only) and tested.  A face
prior is not part of 300-VW: give one with ``--prior`` (a folder of 300-W
``.pts`` files with their images, or any prior file, see :mod:`.priors`).
Errors are in % of the inter-ocular (outer eye corner) distance, flip-corrected,
averaged per video, then over videos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..skeleton import SKELETONS
from ..skeleton import Skeleton
from ..video import is_video_file
from .protocol import VideoDataset, frame_folder, register_format
from .layout import Video, frame_sort_key
from .priors import read_pts

__all__ = ["FaceVideos", "read_pts"]


def default_frame_source(video_dir: Path) -> tuple[Path, ...]:
    """The extracted frames of a 300-VW video, ``<video_id>/frames/``; empty when there are none."""
    return frame_folder(video_dir / "frames", required=False)


def find_video(video_dir: Path) -> Path | None:
    """``<video_id>/vid.avi`` (or ``vid.`` another container PyAV reads), if present."""
    return next((p for p in sorted(video_dir.glob("vid.*")) if p.is_file() and is_video_file(p)), None)


class FaceVideos:
    """Reader of face videos in the 300-VW layout (module docs).

    Args:
        root: the dataset folder.
        frame_source: ``video folder -> frame files``, to read frames from elsewhere; by default the
            ``frames/`` folder when it holds images, else the video file ``vid.avi``.
        skeleton: the 68-point skeleton (default the ``face68`` preset).
    """

    def __init__(self, root: str | Path, *, frame_source: Callable[[Path], Sequence[Path]] | None = None, skeleton: Skeleton | None = None):
        self.root = Path(root)
        self.skeleton = skeleton or SKELETONS["face68"]
        self.videos: list[Video] = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and (p / "annot").is_dir()):
            frames = tuple((frame_source or default_frame_source)(d))
            if frames or frame_source is not None:
                self.videos.append(Video(id=d.name, frames=frames, keypoints_path=d / "annot"))
                continue
            video = find_video(d)
            if video is None:
                raise InputError("no video file (vid.avi) and no extracted frames (frames/<n>.png) next to annot/", d)
            self.videos.append(Video.from_file(d.name, video, d / "annot"))
        if not self.videos:
            raise InputError("no <video_id>/annot/ folders of .pts files", self.root)
        ids = {v.id for v in self.videos}
        split = self.root / "test.txt"
        if split.is_file():
            test_ids = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
            unknown = [t for t in test_ids if t not in ids]
            if unknown:
                raise InputError(f"lists videos that are not in the dataset: {', '.join(unknown[:5])}", split)
            self.test_ids = set(test_ids)
            self.train = [v for v in self.videos if v.id not in self.test_ids]
        else:
            self.test_ids = ids
            self.train = list(self.videos)
        self.test = [v for v in self.videos if v.id in self.test_ids]

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, 68, 2)`` float32 pixel ``(x, y)`` (0-based); NaN for frames without a ``.pts`` file."""
        k = self.skeleton.num_keypoints
        by_num = {frame_sort_key(p)[0]: p for p in video.keypoints_path.glob("*.pts")}
        out = np.full((len(video), k, 2), np.nan, dtype=np.float32)
        # extracted frames: by the number in their names; a video file's frame t: annot/<t + 1>.pts
        nums = [frame_sort_key(f)[0] for f in video.frames] if video.file is None else [video.file_frame(t) + 1 for t in range(len(video))]
        for t, num in enumerate(nums):
            p = by_num.get(num)
            if p is None:
                continue
            pts = read_pts(p)
            if pts.shape[0] != k:
                raise InputError(f"holds {pts.shape[0]} points but the skeleton '{self.skeleton.name}' has {k}", p)
            out[t] = pts
        return out

    def load_prior(self) -> np.ndarray:
        raise InputError("face videos carry no prior: give one with --prior (a folder of 300-W .pts files with their images)", self.root)

    def dataset(self) -> VideoDataset:
        return VideoDataset(
            name="300vw",
            root=self.root,
            skeleton=self.skeleton,
            videos=self.train,
            test_videos=self.test,
            groups={v.id: v.id for v in self.videos},
            prior_loader=self.load_prior,
            keypoint_loader=self.load_keypoints,
            group_name="video",
            metric="interocular",
        )


def _is_300vw(root: Path) -> bool:
    return any((d / "annot").is_dir() for d in root.iterdir() if d.is_dir())


register_format("300vw", _is_300vw, lambda root, **kw: FaceVideos(root, **kw).dataset())
