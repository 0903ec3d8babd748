"""Skeletons: keypoint names, limbs and left/right symmetric pairs.

A :class:`Skeleton` says which keypoints a category has, which pairs of them
are joined by a limb (what the renderer draws) and which pairs swap under a
left/right flip (what the flip-corrected metric uses).  Limbs and symmetric
pairs are stored as tuples of keypoint *indices*; the constructor takes names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from .errors import InputError

__all__ = ["Skeleton", "SKELETONS", "preset"]


def _pairs_to_indices(
    pairs: Iterable[Sequence[str]], index: dict[str, int], what: str, source: str | None
) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(n, str) for n in pair):
            raise InputError(f"each {what} must be a pair of keypoint names, got {pair!r}", source)
        a, b = pair
        for n in (a, b):
            if n not in index:
                raise InputError(f"{what} {list(pair)} names unknown keypoint {n!r}", source)
        if a == b:
            raise InputError(f"{what} {list(pair)} joins keypoint {a!r} to itself", source)
        key = frozenset((index[a], index[b]))
        if key in seen:
            raise InputError(f"{what} {list(pair)} is listed twice", source)
        seen.add(key)
        out.append((index[a], index[b]))
    return tuple(out)


@dataclass(frozen=True, init=False)
class Skeleton:
    """A keypoint layout.

    Args:
        keypoints: keypoint names, in the order of the ``K`` axis of every
            ``B×K×2`` tensor the library produces.
        limbs: pairs of names joined by a limb; the renderer draws one segment
            per limb.  At least one limb is required.
        symmetric: pairs of names that swap under a left/right flip
            (e.g. ``("l_wrist", "r_wrist")``); may be empty.
        name: a short name for the layout.

    Attributes:
        keypoints: tuple of names.
        limbs: tuple of ``(i, j)`` index pairs.
        symmetric: tuple of ``(i, j)`` index pairs.
    """

    keypoints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    symmetric: tuple[tuple[int, int], ...] = field(default=())
    name: str = field(default="skeleton", compare=False)  # a label: skeletons compare by keypoints, limbs and pairs

    def __init__(
        self,
        *,
        keypoints: Sequence[str],
        limbs: Iterable[Sequence[str]],
        symmetric: Iterable[Sequence[str]] = (),
        name: str = "skeleton",
        _source: str | None = None,
    ):
        kps = tuple(keypoints)
        if not kps:
            raise InputError("a skeleton needs at least one keypoint", _source)
        for n in kps:
            if not isinstance(n, str) or not n:
                raise InputError(f"keypoint names must be non-empty strings, got {n!r}", _source)
        dup = sorted({n for n in kps if kps.count(n) > 1})
        if dup:
            raise InputError(f"duplicate keypoint name(s): {', '.join(dup)}", _source)
        index = {n: i for i, n in enumerate(kps)}
        limb_idx = _pairs_to_indices(limbs, index, "limb", _source)
        if not limb_idx:
            raise InputError("a skeleton needs at least one limb", _source)
        sym_idx = _pairs_to_indices(symmetric, index, "symmetric pair", _source)
        used = [i for p in sym_idx for i in p]
        if len(used) != len(set(used)):
            raise InputError("a keypoint appears in more than one symmetric pair", _source)
        object.__setattr__(self, "keypoints", kps)
        object.__setattr__(self, "limbs", limb_idx)
        object.__setattr__(self, "symmetric", sym_idx)
        object.__setattr__(self, "name", str(name))

    # ------------------------------------------------------------------ basics
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def __len__(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    @property
    def flip_permutation(self) -> list[int]:
        """Index permutation that swaps every symmetric pair (identity elsewhere)."""
        perm = list(range(len(self.keypoints)))
        for a, b in self.symmetric:
            perm[a], perm[b] = b, a
        return perm

    @property
    def side_swaps(self) -> list[list[int]]:
        """The relabellings of left and right that leave the skeleton's drawing unchanged, as index
        permutations: the identity, and :attr:`flip_permutation` when it maps the set of limbs onto itself
        (then ``β(q[:, flip]) = β(q)``: :func:`keypointgan.geometry.render_skeleton` draws limbs, not labels).

        Only the whole-body swap, not each arm or leg apart: a figure seen from the front or from the back
        swaps every side at once, and the evaluation's flip correction swaps whole poses."""
        limbs = {frozenset(l) for l in self.limbs}
        perm = self.flip_permutation
        swaps = [list(range(len(self.keypoints)))]
        if perm != swaps[0] and {frozenset((perm[a], perm[b])) for a, b in self.limbs} == limbs:
            swaps.append(perm)
        return swaps

    def facing_fraction(self, poses) -> float:
        """The fraction of ``poses`` (``…×K×2``, numpy or torch, any unit with x to the right; poses with a
        NaN left out) whose left keypoints lie right of their right ones, in the mean over the symmetric
        pairs: near 0 or 1 when the figures face one way (sides can be told by where they are drawn), near ½
        when they face either way.  NaN without symmetric pairs or poses."""
        import numpy as np

        p = poses.detach().cpu().numpy() if hasattr(poses, "detach") else np.asarray(poses)
        p = p.reshape(-1, len(self.keypoints), 2).astype(np.float64)
        p = p[np.isfinite(p).all(axis=(1, 2))]
        if not self.symmetric or not len(p):
            return float("nan")
        a, b = [pair[0] for pair in self.symmetric], [pair[1] for pair in self.symmetric]
        return float(((p[:, a, 0] - p[:, b, 0]).mean(1) > 0).mean())

    @property
    def used_keypoints(self) -> list[int]:
        """Indices of keypoints that belong to at least one limb, sorted."""
        return sorted({i for limb in self.limbs for i in limb})

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        kp = self.keypoints
        return {
            "name": self.name,
            "keypoints": list(kp),
            "limbs": [[kp[a], kp[b]] for a, b in self.limbs],
            "symmetric": [[kp[a], kp[b]] for a, b in self.symmetric],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str | Path | None = None) -> "Skeleton":
        src = None if source is None else str(source)
        if not isinstance(data, dict):
            raise InputError("a skeleton must be a mapping with 'keypoints' and 'limbs'", src)
        unknown = set(data) - {"name", "keypoints", "limbs", "symmetric"}
        if unknown:
            raise InputError(f"unknown skeleton field(s): {', '.join(sorted(unknown))}", src)
        for key in ("keypoints", "limbs"):
            if key not in data:
                raise InputError(f"skeleton has no '{key}' field", src)
            if not isinstance(data[key], list):
                raise InputError(f"skeleton field '{key}' must be a list", src)
        sym = data.get("symmetric") or []
        if not isinstance(sym, list):
            raise InputError("skeleton field 'symmetric' must be a list", src)
        return cls(
            keypoints=data["keypoints"],
            limbs=data["limbs"],
            symmetric=sym,
            name=data.get("name", "skeleton"),
            _source=src,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Skeleton":
        """Read a skeleton YAML file (fields ``name``, ``keypoints``, ``limbs``, ``symmetric``)."""
        from .io import read_yaml

        return cls.from_dict(read_yaml(path, what="skeleton file"), Path(path))

    def to_yaml(self, path: str | Path) -> None:
        """Write the skeleton as YAML (atomically: write a temporary file, then rename)."""
        from .io import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))


# ---------------------------------------------------------------------- presets
# The 32-joint layout of Simplified Human3.6M as indexed in the authors' release
# (index order matters: it is the order of ``keypoints_2d`` in the dataset).
_H36M_JOINTS = (
    "hip", "r_hip", "r_knee", "r_ankle", "r_ball", "r_toes",
    "l_hip", "l_knee", "l_ankle", "l_ball", "l_toes",
    "pelvis", "thorax", "neck", "head_center", "head_back",
    "l_unknown", "l_shoulder", "l_elbow", "l_wrist", "l_wrist_2", "l_thumb", "l_little", "l_little_2",
    "r_unknown", "r_shoulder", "r_elbow", "r_wrist", "r_wrist_2", "r_thumb", "r_little", "r_little_2",
)
# 16 limbs over 17 joints (the skeleton the release renders).
_H36M_LIMBS = (
    ("r_hip", "pelvis"), ("r_knee", "r_hip"), ("r_ankle", "r_knee"), ("r_toes", "r_ankle"),
    ("l_hip", "pelvis"), ("l_knee", "l_hip"), ("l_ankle", "l_knee"), ("l_toes", "l_ankle"),
    ("neck", "pelvis"), ("head_back", "neck"),
    ("l_shoulder", "neck"), ("l_elbow", "l_shoulder"), ("l_wrist", "l_elbow"),
    ("r_shoulder", "neck"), ("r_elbow", "r_shoulder"), ("r_wrist", "r_elbow"),
)
_H36M_SYM = tuple(
    (n, "r_" + n[2:]) for n in _H36M_JOINTS if n.startswith("l_")
)

# Penn Action's 13 joints, in the order of its x / y / visibility columns.
PENN_KEYPOINTS = (
    "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
_PENN_LIMBS = (
    ("head", "l_shoulder"), ("head", "r_shoulder"), ("l_shoulder", "r_shoulder"),
    ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
    ("l_shoulder", "l_hip"), ("r_shoulder", "r_hip"), ("l_hip", "r_hip"),
    ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("r_hip", "r_knee"), ("r_knee", "r_ankle"),
)
_PENN_SYM = tuple((n, "r_" + n[2:]) for n in PENN_KEYPOINTS if n.startswith("l_"))

# The built-in synthetic figure (see keypointgan.data.synthetic).
SYNTHETIC_KEYPOINTS = (
    "head", "neck", "pelvis",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle",
    "r_hip", "r_knee", "r_ankle",
)
_SYN_LIMBS = (
    ("head", "neck"), ("neck", "pelvis"),
    ("neck", "l_shoulder"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"),
    ("neck", "r_shoulder"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
    ("pelvis", "l_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"),
    ("pelvis", "r_hip"), ("r_hip", "r_knee"), ("r_knee", "r_ankle"),
)
_SYN_SYM = tuple((n, "r_" + n[2:]) for n in SYNTHETIC_KEYPOINTS if n.startswith("l_"))

# The 68-point face layout of 300-W / iBUG (0-based indices in the comments).  "r_"/"l_" are the
# subject's right/left: points 36-41 are the subject's right eye (on the image's left).
_FACE_GROUPS = (
    ("jaw", 17, False),       # 0-16, chin contour from the subject's right ear to the left
    ("r_brow", 5, False),     # 17-21
    ("l_brow", 5, False),     # 22-26
    ("nose_bridge", 4, False),  # 27-30
    ("nose_base", 5, False),  # 31-35
    ("r_eye", 6, True),       # 36-41, a closed contour
    ("l_eye", 6, True),       # 42-47
    ("outer_lip", 12, True),  # 48-59
    ("inner_lip", 8, True),   # 60-67
)
FACE68_KEYPOINTS = tuple(f"{g}_{i}" for g, n, _ in _FACE_GROUPS for i in range(n))
_FACE_LIMBS = tuple(
    (f"{g}_{i}", f"{g}_{(i + 1) % n}") for g, n, closed in _FACE_GROUPS for i in range(n if closed else n - 1)
) + (("nose_bridge_3", "nose_base_2"),)
_FACE_MIRROR = {  # index -> its left/right mirror in the 68-point layout
    **{i: 16 - i for i in range(17)},
    **{17 + i: 26 - i for i in range(5)},
    31: 35, 32: 34,
    36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46,
    48: 54, 49: 53, 50: 52, 55: 59, 56: 58,
    60: 64, 61: 63, 65: 67,
}
_FACE_SYM = tuple(
    (FACE68_KEYPOINTS[a], FACE68_KEYPOINTS[b]) for a, b in _FACE_MIRROR.items() if a < b
)

SKELETONS: dict[str, Skeleton] = {
    "face68": Skeleton(keypoints=FACE68_KEYPOINTS, limbs=_FACE_LIMBS, symmetric=_FACE_SYM, name="face68"),
    "human36m": Skeleton(keypoints=_H36M_JOINTS, limbs=_H36M_LIMBS, symmetric=_H36M_SYM, name="human36m"),
    "penn-action": Skeleton(keypoints=PENN_KEYPOINTS, limbs=_PENN_LIMBS, symmetric=_PENN_SYM, name="penn-action"),
    "synthetic": Skeleton(keypoints=SYNTHETIC_KEYPOINTS, limbs=_SYN_LIMBS, symmetric=_SYN_SYM, name="synthetic"),
}


def preset(name: str) -> Skeleton:
    """Return a preset skeleton by name (``human36m``, ``penn-action``, ``face68``, ``synthetic``)."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise InputError(f"unknown skeleton preset {name!r}; choose from {', '.join(sorted(SKELETONS))}") from None
