"""Penn Action: 2326 videos of 15 actions with 13 annotated joints.

::

    ROOT/frames/<video_id>/<n>.jpg     frames 000001.jpg, 000002.jpg, …
    ROOT/labels/<video_id>.mat         x, y (T × 13 pixels), visibility (T × 13, 0/1), bbox (T × 4),
                                       action, pose, train (1: training video, -1: test video),
                                       dimensions ([H, W, T]), nframes

Protocol: training frame pairs from the videos marked ``train = 1``; prior poses
from the fully visible annotations of those same videos (normalised by
``dimensions``); test on every frame of the ``train = -1`` videos.  Joints whose
``visibility`` is 0 are left out of the error (NaN truth).  Errors are
flip-corrected in % of image size, averaged per action, then over actions.
``x`` and ``y`` are used as stored (pixel positions in the original frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..pixels import pixel_to_unit
from ..skeleton import SKELETONS
from ..skeleton import Skeleton
from .protocol import VideoDataset, frame_folder, register_format
from .layout import Video
from .matfile import load_mat, mat_field, mat_scalar, mat_string

__all__ = ["PennAction", "read_penn_label"]

NUM_JOINTS = 13


def read_penn_label(path: str | Path) -> dict:
    """One ``labels/<id>.mat`` → ``{"xy": (T, 13, 2) float32, "visible": (T, 13) bool, "action": str,
    "train": bool, "hw": (H, W)}``."""
    path = Path(path)
    mat = load_mat(path, what="Penn Action label file")
    x = np.asarray(mat_field(mat, "x", path), dtype=np.float64)
    y = np.asarray(mat_field(mat, "y", path), dtype=np.float64)
    vis = np.asarray(mat_field(mat, "visibility", path))
    if x.ndim != 2 or x.shape[1] != NUM_JOINTS or y.shape != x.shape or vis.shape != x.shape:
        raise InputError(f"x, y and visibility must all be T × {NUM_JOINTS}, got {x.shape}, {y.shape} and {vis.shape}", path)
    train = mat_scalar(mat_field(mat, "train", path), "train", path)
    if train not in (1.0, -1.0):
        raise InputError(f"'train' must be 1 (training video) or -1 (test video), got {train:g}", path)
    dims = np.asarray(mat_field(mat, "dimensions", path), dtype=np.float64).reshape(-1)
    if dims.size < 2 or (dims[:2] <= 0).any():
        raise InputError(f"'dimensions' must be [height, width, frames], got {dims.tolist()}", path)
    action = mat_string(mat_field(mat, "action", path), "action", path)
    xy = np.stack([x, y], axis=-1)
    visible = vis.astype(bool)
    if not np.isfinite(xy[visible]).all():
        raise InputError("visible joints have NaN or infinite coordinates", path)
    return {"xy": xy.astype(np.float32), "visible": visible, "action": action, "train": train == 1.0, "hw": (int(dims[0]), int(dims[1]))}


class PennAction:
    """Reader of Penn Action with its protocol (module docs)."""

    def __init__(self, root: str | Path, *, skeleton: Skeleton | None = None):
        self.root = Path(root)
        self.skeleton = skeleton or SKELETONS["penn-action"]
        if self.skeleton.num_keypoints != NUM_JOINTS:
            raise InputError(f"Penn Action has {NUM_JOINTS} joints but the skeleton '{self.skeleton.name}' has {self.skeleton.num_keypoints}")
        labels = sorted((self.root / "labels").glob("*.mat"))
        if not labels:
            raise InputError("labels/ holds no <video_id>.mat files", self.root / "labels")
        self.labels: dict[str, dict] = {}
        self.train: list[Video] = []
        self.test: list[Video] = []
        for lab in labels:
            info = read_penn_label(lab)
            frames = frame_folder(self.root / "frames" / lab.stem)
            if len(frames) != len(info["xy"]):
                raise InputError(f"holds {len(info['xy'])} annotated frames but frames/{lab.stem}/ has {len(frames)} images", lab)
            self.labels[lab.stem] = info
            v = Video(id=lab.stem, frames=frames, keypoints_path=lab)
            (self.train if info["train"] else self.test).append(v)

    def load_keypoints(self, video: Video) -> np.ndarray:
        info = self.labels[video.id]
        xy = info["xy"].copy()
        xy[~info["visible"]] = np.nan
        return xy

    def load_prior(self) -> np.ndarray:
        poses = []
        for v in self.train:
            info = self.labels[v.id]
            h, w = info["hw"]
            full = info["visible"].all(axis=1)
            poses.append(pixel_to_unit(info["xy"][full], (h, w)))
        arr = np.concatenate(poses) if poses else np.zeros((0, NUM_JOINTS, 2), np.float32)
        if not len(arr):
            raise InputError("no fully visible pose in the training videos to use as the prior", self.root / "labels")
        return arr.astype(np.float32)

    def dataset(self) -> VideoDataset:
        return VideoDataset(
            name="penn-action",
            root=self.root,
            skeleton=self.skeleton,
            videos=self.train,
            test_videos=self.test,
            groups={k: v["action"] for k, v in self.labels.items()},
            prior_loader=self.load_prior,
            keypoint_loader=self.load_keypoints,
            group_name="action",
        )


def _is_penn(root: Path) -> bool:
    return (root / "frames").is_dir() and (root / "labels").is_dir()


register_format("penn-action", _is_penn, lambda root, **kw: PennAction(root, **kw).dataset())
