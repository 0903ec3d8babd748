"""Human3.6M: the Simplified release (Zhang et al. 2018) and the full dataset.

Simplified Human3.6M (what the paper and the authors' code use)::

    ROOT/<subject>/WithBackground/<sequence>/<frame>.jpg   frames, named 0.jpg, 1.jpg, …
    ROOT/<subject>/BackgroudMask/<sequence>/<frame>.png    foreground masks (the dataset's spelling)
    ROOT/<subject>/Landmarks/<sequence>/<frame>.mat        variable ``keypoints_2d``: 32 × 2

``<sequence>`` is e.g. ``Directions 1.54138969`` (activity, take, camera); its
activity is the text before the first space or dot.

**Coordinate order of** ``keypoints_2d``: each row is ``(row, column)`` — that is
``(y / height, x / width)`` — normalised by the image size (the authors multiply
by 128, the frames' size, then swap the two columns before rendering a skeleton
whose points are ``(x, y)``).  The reader therefore returns
``(x, y) = (keypoints_2d[:, 1] · W, keypoints_2d[:, 0] · H)`` in pixels, and
``(keypoints_2d[:, 1], keypoints_2d[:, 0]) + 0.5 / (W, H)`` as [0, 1] prior poses (the prior unit
puts pixel edges at 0 and 1, :mod:`keypointgan.data.priors`).

Protocol (the authors' release): activities directions, discussion, greeting,
posing, waiting, walking; training frame pairs from the **first half** of every
sequence of S1 S5 S6 S7 S8 S9; prior poses from the **second halves** of the same
sequences (never paired with a training image); test on every frame of S11; the
foreground mask is multiplied into every frame; 32 joints; flip-corrected error
in % of image size, averaged per activity, then over the activities.

Full Human3.6M::

    ROOT/<subject>/MyPoseFeatures/D2_Positions/<sequence>.cdf   variable ``Pose``: (1, T, 64) pixel x, y of 32 joints
    ROOT/<subject>/Videos/<sequence>.mp4                        the video, decoded on demand (PyAV), or
    ROOT/<subject>/Videos/<sequence>/<n>.jpg                    its frames, extracted (optional)

read with ``cdflib`` (``pip install keypointgan[human36m]``).  Its protocol
mirrors the simplified one: the same subjects, activities and halves, every
``frame_step``-th frame (default 5: 10 frames per second), full frames.

The videos are read directly: a sequence becomes a :class:`Video` over its
``.mp4`` with ``frame_ids`` (e.g. frames 0, 5, 10, … of the first half), whose
frames are decoded on demand by seeking (:mod:`keypointgan.video`); nothing
needs extracting.  When a folder of extracted frames named like the video
exists next to it and holds images, it is used instead (reading JPEGs is
faster than seeking in the video); its frames are matched to the poses by
their order.  Where the video and the pose file differ in length the shorter
one wins (the dataset's notes say so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..pixels import pixel_to_unit
from ..skeleton import SKELETONS
from ..skeleton import Skeleton
from ..video import VIDEO_SUFFIXES
from .protocol import VideoDataset, frame_folder, register_format, stack_checked
from .layout import Video
from .matfile import load_mat, mat_field

__all__ = [
    "ACTIVITIES",
    "TRAIN_SUBJECTS",
    "TEST_SUBJECTS",
    "read_simple_landmarks",
    "read_d2_positions",
    "activity_of",
    "SimpleHuman36M",
    "Human36M",
]

ACTIVITIES = ("directions", "discussion", "greeting", "posing", "waiting", "walking")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9")
TEST_SUBJECTS = ("S11",)
NUM_JOINTS = 32
MASK_DIR = "BackgroudMask"  # sic: the dataset's own spelling


def activity_of(sequence: str) -> str:
    """``'Directions 1.54138969'`` → ``'Directions'`` (the text before the first space or dot)."""
    return re.split(r"[\s.]", sequence.strip())[0]


def read_simple_landmarks(path: str | Path) -> np.ndarray:
    """One Simplified Human3.6M ``Landmarks/…/<n>.mat`` → ``(32, 2)`` float64 ``(x / W, y / H)``.

    The file stores ``keypoints_2d`` as ``(y / H, x / W)`` rows (see the module docs);
    the columns are swapped here.
    """
    path = Path(path)
    mat = load_mat(path, what="landmarks file")
    arr = np.asarray(mat_field(mat, "keypoints_2d", path))
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"'keypoints_2d' must be numeric, got {arr.dtype}", path)
    if arr.shape != (NUM_JOINTS, 2):
        raise InputError(f"'keypoints_2d' must be {NUM_JOINTS} × 2, got {' × '.join(map(str, arr.shape))}", path)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError("'keypoints_2d' contains NaN or infinite values", path)
    if arr.min() < -1.0 or arr.max() > 2.0:
        raise InputError(f"'keypoints_2d' spans [{arr.min():.3g}, {arr.max():.3g}]; expected coordinates normalised to [0, 1]", path)
    return arr[:, ::-1].copy()


def _image_hw(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise InputError("image file not found", path) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image ({exc.__class__.__name__}: {exc})", path) from None
    return h, w


def _skeleton(skeleton: Skeleton | None) -> Skeleton:
    sk = skeleton or SKELETONS["human36m"]
    if sk.num_keypoints != NUM_JOINTS:
        raise InputError(f"Human3.6M has {NUM_JOINTS} joints but the skeleton '{sk.name}' has {sk.num_keypoints}")
    return sk


class _ProtocolSplits:
    """The protocol's three sets, from a reader's ``_split(subjects, part)``."""

    benchmark_name: str
    root: Path
    skeleton: Skeleton
    notes: list[str]
    train_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]

    def _split(self, subjects: Sequence[str], part: str) -> list[Video]:
        raise NotImplementedError

    def train_videos(self) -> list[Video]:
        """First halves of the training subjects' sequences (in the full dataset, every ``frame_step``-th frame)."""
        return self._split(self.train_subjects, "first")

    def prior_videos(self) -> list[Video]:
        """Second halves of the training subjects' sequences (their poses are the prior)."""
        return self._split(self.train_subjects, "second")

    def test_videos(self) -> list[Video]:
        """The test subjects' sequences, whole (in the full dataset, every ``frame_step``-th frame)."""
        return self._split(self.test_subjects, "full")

    def dataset(self) -> VideoDataset:
        """The protocol as a :class:`VideoDataset`: errors averaged per activity, then over activities."""
        train, test = self.train_videos(), self.test_videos()
        if not train and not test:
            raise InputError("no training or test sequences found", self.root)
        return VideoDataset(
            name=self.benchmark_name,
            root=self.root,
            skeleton=self.skeleton,
            videos=train,
            test_videos=test,
            groups={v.id: activity_of(v.id.split("/")[1]) for v in train + test},  # ids: subject/sequence[/part]
            prior_loader=self.load_prior,
            prior_lengths=lambda: [len(v) for v in self.prior_videos()],
            keypoint_loader=self.load_keypoints,
            group_name="activity",
            notes=list(self.notes),
        )


class SimpleHuman36M(_ProtocolSplits):
    """Reader of Simplified Human3.6M and its protocol (module docs).

    Args:
        root: the dataset folder (holds ``S1``, …, ``S11``).
        activities: activities to use (case-insensitive).
        train_subjects, test_subjects: the split.
        use_mask: multiply the foreground masks into the frames (the protocol does).
        skeleton: the 32-joint skeleton (default the ``human36m`` preset).
    """

    benchmark_name = "simple-human36m"

    def __init__(
        self,
        root: str | Path,
        *,
        activities: Sequence[str] = ACTIVITIES,
        train_subjects: Sequence[str] = TRAIN_SUBJECTS,
        test_subjects: Sequence[str] = TEST_SUBJECTS,
        use_mask: bool = True,
        skeleton: Skeleton | None = None,
    ):
        self.root = Path(root)
        self.activities = tuple(a.lower() for a in activities)
        self.train_subjects = tuple(train_subjects)
        self.test_subjects = tuple(test_subjects)
        self.use_mask = use_mask
        self.skeleton = _skeleton(skeleton)
        self.notes: list[str] = []
        # subject -> [(sequence, [frame numbers])]
        self.sequences: dict[str, list[tuple[str, list[int]]]] = {}
        for subject in dict.fromkeys(self.train_subjects + self.test_subjects):
            sdir = self.root / subject
            if not sdir.is_dir():
                self.notes.append(f"subject {subject} is missing from {self.root}")
                continue
            mdir = sdir / MASK_DIR
            if not mdir.is_dir():
                raise InputError(f"subject folder has no {MASK_DIR}/ folder (the dataset's spelling)", sdir)
            seqs = []
            for seq in sorted(p.name for p in mdir.iterdir() if p.is_dir()):
                if activity_of(seq).lower() not in self.activities:
                    continue
                frames = []
                for f in (mdir / seq).iterdir():
                    if f.name.startswith(".") or f.suffix.lower() != ".png":
                        continue
                    if not f.stem.isdigit():
                        raise InputError("mask file name is not a frame number (expected <n>.png)", f)
                    frames.append(int(f.stem))
                if frames:
                    seqs.append((seq, sorted(frames)))
            self.sequences[subject] = seqs
        if not any(self.sequences.get(s) for s in self.train_subjects + self.test_subjects):
            raise InputError(f"no sequences of the activities {', '.join(self.activities)} found", self.root)

    # ------------------------------------------------------------------ paths
    def _paths(self, subject: str, seq: str, frames: Sequence[int], kind: str, suffix: str) -> tuple[Path, ...]:
        return tuple(self.root / subject / kind / seq / f"{n}{suffix}" for n in frames)

    def _video(self, subject: str, seq: str, frames: Sequence[int]) -> Video:
        return Video(
            id=f"{subject}/{seq}",
            frames=self._paths(subject, seq, frames, "WithBackground", ".jpg"),
            keypoints_path=self.root / subject / "Landmarks" / seq,
            masks=self._paths(subject, seq, frames, MASK_DIR, ".png") if self.use_mask else None,
        )

    def _split(self, subjects: Sequence[str], part: str) -> list[Video]:
        out = []
        for subject in subjects:
            for seq, frames in self.sequences.get(subject, []):
                half = len(frames) // 2
                sel = {"first": frames[:half], "second": frames[half:], "full": frames}[part]
                if sel:
                    out.append(self._video(subject, seq, sel))
        return out

    # -------------------------------------------------------------- keypoints
    @staticmethod
    def landmark_paths(video: Video) -> list[Path]:
        return [video.keypoints_path / (f.stem + ".mat") for f in video.frames]

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, 32, 2)`` float32 pixel ``(x, y)`` of ``video``'s frames."""
        h, w = _image_hw(video.frames[0])
        unit = np.stack([read_simple_landmarks(p) for p in self.landmark_paths(video)])
        return (unit * np.array([w, h], dtype=np.float64)).astype(np.float32)

    def load_prior(self) -> np.ndarray:
        """Landmarks of the second halves, ``(N, 32, 2)`` float32 in [0, 1] as ``((x + 0.5) / W, (y + 0.5) / H)``
        of the pixel ``(x, y)`` that :meth:`load_keypoints` reads."""
        arrs = []
        for v in self.prior_videos():
            h, w = _image_hw(v.frames[0])
            half = np.array([0.5 / w, 0.5 / h], dtype=np.float64)
            arrs += [read_simple_landmarks(p) + half for p in self.landmark_paths(v)]
        return stack_checked(arrs, "prior landmarks (second halves of the training sequences)", self.root)

# --------------------------------------------------------------------------- full Human3.6M
def read_d2_positions(path: str | Path) -> np.ndarray:
    """A Human3.6M ``D2_Positions/<sequence>.cdf`` → ``(T, 32, 2)`` float32 pixel ``(x, y)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("pose file not found", path)
    try:
        import cdflib
    except ImportError:
        raise InputError("reading Human3.6M .cdf pose files needs cdflib (pip install 'keypointgan[human36m]')", path) from None
    try:
        cdf = cdflib.CDF(str(path))
        names = cdf.cdf_info().zVariables + cdf.cdf_info().rVariables
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(f"cannot read CDF file ({exc.__class__.__name__}: {exc})", path) from None
    if "Pose" not in names:
        raise InputError(f"no 'Pose' variable (has: {', '.join(names) or 'none'})", path)
    arr = np.asarray(cdf.varget("Pose"), dtype=np.float64)
    if arr.size == 0 or arr.size % (NUM_JOINTS * 2) or arr.shape[-1] != NUM_JOINTS * 2:
        raise InputError(f"'Pose' must hold T × {NUM_JOINTS * 2} values (x, y of {NUM_JOINTS} joints), got shape {arr.shape}", path)
    arr = arr.reshape(-1, NUM_JOINTS, 2)
    if not np.isfinite(arr).all():
        raise InputError("'Pose' contains NaN or infinite values", path)
    return arr.astype(np.float32)


def find_video(videos_dir: Path, sequence: str) -> Path | None:
    """``Videos/<sequence>.mp4`` (or another container PyAV reads), if present."""
    for suffix in VIDEO_SUFFIXES:
        for p in (videos_dir / f"{sequence}{suffix}", videos_dir / f"{sequence}{suffix.upper()}"):
            if p.is_file():
                return p
    return None


def default_frame_source(video_path: Path) -> tuple[Path, ...]:
    """The frames extracted next to a Human3.6M video (the folder named like it, without suffix); empty if none."""
    name = video_path.name
    for suffix in VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return frame_folder(video_path.parent / name, required=False)


@dataclass(frozen=True)
class _Sequence:
    frames: tuple[Path, ...]  # extracted frames, or () when the video file is decoded
    file: Path | None  # the video file read directly
    file_frames: int  # frames in the file
    ids: np.ndarray  # the protocol's frame numbers (every frame_step-th)
    poses: np.ndarray  # (len(ids), 32, 2) pixel poses of those frames


class Human36M(_ProtocolSplits):
    """Reader of the full Human3.6M (videos + ``D2_Positions`` poses) with the protocol of the module docs.

    Args:
        root: the dataset folder (``S1``, …, ``S11`` as unpacked from the official archives).
        frame_step: use every ``frame_step``-th frame (the videos run at 50 fps).
        frame_source: ``video path -> frame files``, to read frames from elsewhere; by default the
            extracted frame folder next to the video when there is one, else the video file itself.
        activities, train_subjects, test_subjects, skeleton: as for :class:`SimpleHuman36M`.
    """

    benchmark_name = "human36m"

    def __init__(
        self,
        root: str | Path,
        *,
        frame_step: int = 5,
        frame_source: Callable[[Path], Sequence[Path]] | None = None,
        activities: Sequence[str] = ACTIVITIES,
        train_subjects: Sequence[str] = TRAIN_SUBJECTS,
        test_subjects: Sequence[str] = TEST_SUBJECTS,
        skeleton: Skeleton | None = None,
    ):
        if frame_step < 1:
            raise InputError(f"frame_step must be >= 1, got {frame_step}")
        self.root = Path(root)
        self.frame_step = int(frame_step)
        self.frame_source = frame_source
        self.activities = tuple(a.lower() for a in activities)
        self.train_subjects = tuple(train_subjects)
        self.test_subjects = tuple(test_subjects)
        self.skeleton = _skeleton(skeleton)
        self.notes: list[str] = []
        self.sequences: dict[str, list[tuple[str, Path]]] = {}  # subject -> [(sequence, cdf path)]
        for subject in dict.fromkeys(self.train_subjects + self.test_subjects):
            pdir = self.root / subject / "MyPoseFeatures" / "D2_Positions"
            if not pdir.is_dir():
                self.notes.append(f"subject {subject} has no MyPoseFeatures/D2_Positions in {self.root}")
                continue
            self.sequences[subject] = [
                (p.stem, p) for p in sorted(pdir.glob("*.cdf")) if activity_of(p.stem).lower() in self.activities
            ]
        if not any(self.sequences.values()):
            raise InputError(f"no D2_Positions/*.cdf of the activities {', '.join(self.activities)} found", self.root)
        self._cache: dict[str, _Sequence] = {}

    def _sequence(self, subject: str, seq: str, cdf: Path) -> _Sequence:
        key = f"{subject}/{seq}"
        if key not in self._cache:
            vdir = self.root / subject / "Videos"
            video = find_video(vdir, seq)
            file = None
            if self.frame_source is not None:
                frames = tuple(self.frame_source(video or vdir / f"{seq}.mp4"))
            else:
                frames = default_frame_source(video or vdir / f"{seq}.mp4")
                if not frames:
                    if video is None:
                        raise InputError(
                            f"no video file for the pose file {cdf.name} (expected {subject}/Videos/{seq}.mp4, "
                            f"or its frames extracted to {subject}/Videos/{seq}/)",
                            vdir / f"{seq}.mp4",
                        )
                    file = video
            if file is not None:
                from ..video import probe

                n_frames = probe(file).num_frames
            else:
                n_frames = len(frames)
            poses = read_d2_positions(cdf)
            n = min(n_frames, len(poses))  # the official videos and poses can differ by a few frames
            if n_frames != len(poses):
                what = "video" if file is not None else "frame folder"
                self.notes.append(f"{key}: the {what} has {n_frames} frames, the pose file {len(poses)}; using the first {n}")
            if n == 0:
                raise InputError("the video has no frames", file or vdir / seq)
            ids = np.arange(0, n, self.frame_step)
            self._cache[key] = _Sequence(frames, file, n_frames, ids, poses[ids])
        return self._cache[key]

    @staticmethod
    def _part(n: int, part: str) -> slice:
        half = n // 2
        return {"first": slice(0, half), "second": slice(half, None), "full": slice(None)}[part]

    def _split(self, subjects: Sequence[str], part: str) -> list[Video]:
        out = []
        for subject in subjects:
            for seq, cdf in self.sequences.get(subject, []):
                s = self._sequence(subject, seq, cdf)
                sel = s.ids[self._part(len(s.ids), part)]
                if not len(sel):
                    continue
                vid = f"{subject}/{seq}/{part}"
                if s.file is not None:
                    out.append(Video(vid, (), cdf, file=s.file, num_frames=s.file_frames, frame_ids=tuple(int(i) for i in sel)))
                else:
                    out.append(Video(vid, tuple(s.frames[i] for i in sel), cdf))
        return out

    def load_keypoints(self, video: Video) -> np.ndarray:
        """``(T, 32, 2)`` float32 pixel ``(x, y)`` of ``video``'s frames."""
        subject, seq, part = video.id.split("/")
        s = self._sequence(subject, seq, video.keypoints_path)
        return s.poses[self._part(len(s.ids), part)]

    def load_prior(self) -> np.ndarray:
        """Poses of the second halves, ``(N, 32, 2)`` float32 in [0, 1] as ``((x + 0.5) / W, (y + 0.5) / H)``."""
        arrs = []
        for v in self.prior_videos():
            h, w = _video_hw(v)
            arrs.append(pixel_to_unit(self.load_keypoints(v), (h, w)))
        if not arrs:
            raise InputError("no prior poses (second halves of the training sequences) found", self.root)
        return np.concatenate(arrs).astype(np.float32)

def _video_hw(video: Video) -> tuple[int, int]:
    """``(H, W)`` of a video's frames (from the video file's header, or its first frame image)."""
    if video.file is not None:
        from ..video import probe

        info = probe(video.file)
        return info.height, info.width
    return _image_hw(video.frames[0])


def _is_simple_h36m(root: Path) -> bool:
    return any((d / "WithBackground").is_dir() and (d / "Landmarks").is_dir() for d in root.glob("S*"))


def _is_h36m(root: Path) -> bool:
    return any((d / "MyPoseFeatures" / "D2_Positions").is_dir() for d in root.glob("S*"))


register_format("simple-human36m", _is_simple_h36m, lambda root, **kw: SimpleHuman36M(root, **kw).dataset())
register_format("human36m", _is_h36m, lambda root, **kw: Human36M(root, **kw).dataset())
