"""The built-in synthetic video dataset: an articulated capsule figure.

Every video shows one human-like figure (15 joints, the ``synthetic`` skeleton
preset) moving smoothly in front of a cluttered static background.  Each video
draws its own appearance (background, clothing colours and textures, skin and
hair), body proportions, limb thickness, viewing angle and motion, so the only
thing shared by all videos is the articulated structure.

Geometry.  A pose is built in 3-D from joint angles (torso lean and twist,
shoulder flexion/abduction, elbow bend, hip flexion/abduction, knee bend), each
a smooth function of time (a few sinusoids, softly limited to a human-like
range), rotated by a per-video yaw and projected orthographically.  The
projected joints *are* the keypoints: limbs are drawn as anti-aliased capsules
between them (coverage ``clip(r - d + 0.5, 0, 1)`` with ``d`` the distance from
the pixel centre to the segment, pixel ``(row i, column j)`` centred at
``(x, y) = (j, i)``), the head as a disc centred on the ``head`` keypoint.
Self-occlusion comes from the drawing order: far-side limbs, torso, near-side
limbs, where the near side is fixed per video by the sign of its yaw.

Randomness.  Video ``i`` of seed ``s`` uses the stream
``SeedSequence(s, spawn_key=(0, i))``; the prior uses
``SeedSequence(s, spawn_key=(1,))``.  Videos can therefore be generated in any
order and by any number of workers with byte-identical results, and the prior
poses come from motions that no video uses.

Public entry points: :class:`SyntheticConfig`, :func:`make_synthetic`,
:func:`render_video`, :func:`sample_poses`.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import check_output_folder
from ..log import logger
from ..pixels import pixel_to_unit
from ..skeleton import SYNTHETIC_KEYPOINTS, preset

__all__ = ["SyntheticConfig", "make_synthetic", "render_video", "sample_poses"]

K = len(SYNTHETIC_KEYPOINTS)
_IDX = {n: i for i, n in enumerate(SYNTHETIC_KEYPOINTS)}
HEAD, NECK, PELVIS = _IDX["head"], _IDX["neck"], _IDX["pelvis"]
# per side: shoulder, elbow, wrist, hip, knee, ankle (side 0 = left, 1 = right)
_SIDE = {
    s: tuple(_IDX[f"{p}_{j}"] for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"))
    for s, p in ((0, "l"), (1, "r"))
}

# Frames per rendering chunk are chosen so chunk * H * W stays below this.
_CHUNK_PIXELS = 1 << 21


# =============================================================================
#                                   config
# =============================================================================
@dataclass
class SyntheticConfig:
    """Size of the synthetic dataset.

    Args:
        videos: number of videos (>= 1).
        frames: frames per video (>= 1).
        size: frame width and height in pixels (16 ... 1024).
        seed: master seed (>= 0); the same config always gives the same files.
        prior: number of unpaired prior poses written to ``prior.npy`` (>= 1).
        motion_speed: time scale of every motion (joint angles, turning, drifting): 0.3 is slow,
            3 fast (> 0; 1: the default distribution).
        figure_scale: the figure's height relative to the default 60–85% of the frame (> 0; 0.5:
            the camera twice as far; clamped so the figure stays inside the frame).
        proportion_spread: variety of body proportions around the mean (>= 0; 0: every body the
            same, 2: twice the default spread).
        background: ``cluttered`` (gradient, floor, shapes, noise) or ``plain`` (each video one
            flat colour).
    The variant fields (``motion_speed`` … ``background``) at their defaults give the default dataset
    bit for bit; ``benchmarks/fidelity.py`` builds its generalisation suite from them.
    """

    videos: int = 200
    frames: int = 50
    size: int = 64
    seed: int = 0
    prior: int = 5000
    motion_speed: float = 1.0
    figure_scale: float = 1.0
    proportion_spread: float = 1.0
    background: str = "cluttered"

    def __post_init__(self) -> None:
        limits = {
            "videos": (1, None),
            "frames": (1, None),
            "size": (16, 1024),
            "seed": (0, None),
            "prior": (1, None),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"synthetic config: '{name}' must be an integer, got {value!r}")
            value = int(value)
            setattr(self, name, value)
            if value < lo or (hi is not None and value > hi):
                rng_txt = f">= {lo}" if hi is None else f"between {lo} and {hi}"
                raise InputError(f"synthetic config: '{name}' must be {rng_txt}, got {value}")
        for name, positive in (("motion_speed", True), ("figure_scale", True), ("proportion_spread", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 or (positive and value == 0):
                raise InputError(f"synthetic config: '{name}' must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
            setattr(self, name, float(value))
        if self.background not in BACKGROUNDS:
            raise InputError(f"synthetic config: 'background' must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")

    @property
    def variant(self) -> tuple[float, float, float, str]:
        """``(motion_speed, figure_scale, proportion_spread, background)``: what the renderer needs."""
        return (self.motion_speed, self.figure_scale, self.proportion_spread, self.background)


BACKGROUNDS = ("cluttered", "plain")
DEFAULT_VARIANT = (1.0, 1.0, 1.0, "cluttered")


# =============================================================================
#                              random helpers
# =============================================================================
def _video_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0, index))))


def _prior_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1,))))


def _smooth(rng: np.random.Generator, t: np.ndarray, n: int, fmin: float, fmax: float) -> np.ndarray:
    """A smooth signal in [-1, 1]: a normalised sum of ``n`` random sinusoids."""
    amp = rng.uniform(0.3, 1.0, n)
    f = rng.uniform(fmin, fmax, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    s = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + ph[:, None])).sum(0)
    return s / amp.sum()


def _soft_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``x`` smoothly into (lo, hi); identity-like around the middle."""
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    return mid + half * np.tanh((x - mid) / half)


# =============================================================================
#                                3-D rotations
# =============================================================================
def _rx(a: np.ndarray) -> np.ndarray:
    """Rotation about x; positive angles turn the 'down' vector (0,-1,0) towards +z (forward)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, s], -1), np.stack([z, -s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    """Rotation about the vertical axis (yaw)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray, side: float = 1.0) -> np.ndarray:
    """Rotation about z; positive angles turn 'down' outwards, towards ``side * x``."""
    c, s = np.cos(a), side * np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _mm(*ms: np.ndarray) -> np.ndarray:
    out = ms[0]
    for m in ms[1:]:
        out = out @ m
    return out


def _apply(r: np.ndarray, v) -> np.ndarray:
    return np.einsum("tij,j->ti", r, np.asarray(v, dtype=np.float64))


_DOWN = (0.0, -1.0, 0.0)


# =============================================================================
#                                   motion
# =============================================================================
@dataclass
class _Motion:
    kp: np.ndarray  # (T, K, 2) float64 pixel x, y
    toe: np.ndarray  # (T, 2, 2) tip of the left / right foot
    scale: np.ndarray  # (T,) pixels per body unit
    yaw: np.ndarray  # (T,) radians
    near: int  # 0: the left side is nearer the camera, 1: the right side
    body: dict  # proportions and thicknesses in body units


def _sample_body(rng: np.random.Generator, spread: float = 1.0) -> dict:
    """Proportions in body units (standing height ~ 1) and limb thicknesses; ``spread`` scales each
    draw's distance from the middle of its range (the same draws from ``rng`` for any spread)."""

    def u(lo: float, hi: float) -> float:
        v = float(rng.uniform(lo, hi))
        return v if spread == 1.0 else (lo + hi) / 2 + (v - (lo + hi) / 2) * spread

    b = {
        "thigh": 0.245 * u(0.88, 1.12),
        "shin": 0.245 * u(0.88, 1.12),
        "hip_half": 0.075 * u(0.8, 1.2),
        "hip_drop": 0.03 * u(0.7, 1.3),
        "torso": 0.30 * u(0.88, 1.12),
        "shoulder_half": 0.115 * u(0.82, 1.18),
        "shoulder_drop": 0.03 * u(0.6, 1.4),
        "upper_arm": 0.165 * u(0.88, 1.12),
        "forearm": 0.15 * u(0.88, 1.12),
        "neck_head": 0.085 * u(0.9, 1.15),
        "head_r": 0.066 * u(0.88, 1.15),
        "foot": 0.065 * u(0.8, 1.2),
    }
    build = u(0.8, 1.25)
    b["arm_r"] = 0.027 * build * u(0.85, 1.2)
    b["leg_r"] = 0.036 * build * u(0.85, 1.2)
    b["neck_r"] = 0.022 * u(0.85, 1.2)
    b["foot_r"] = 0.6 * b["leg_r"]
    b["chest_r"] = 0.85 * b["shoulder_half"] * u(0.85, 1.1)
    b["waist_r"] = b["hip_half"] * 1.05 * u(0.85, 1.1)
    b["depth"] = u(0.5, 0.7)  # torso depth / width (seen from the side)
    b["height"] = b["shin"] + b["thigh"] + b["hip_drop"] + b["torso"] + b["neck_head"] + b["head_r"]
    return b


# Joint ranges (radians): name -> (lo, hi, rest_lo, rest_hi, free-motion amplitude)
_JOINTS = {
    "pitch": (-0.25, 0.55, -0.08, 0.2, 0.12),  # torso lean forward (+) / back
    "roll": (-0.3, 0.3, -0.08, 0.08, 0.12),  # torso side lean
    "twist": (-0.5, 0.5, -0.15, 0.15, 0.2),  # shoulders vs pelvis
    "head_pitch": (-0.4, 0.5, -0.1, 0.2, 0.15),
    "head_roll": (-0.4, 0.4, -0.1, 0.1, 0.15),
    "sh_flex": (-1.0, 3.0, -0.3, 1.3, 0.8),  # arm forward (+) / back
    "sh_abd": (-0.25, 2.8, 0.05, 1.3, 0.7),  # arm out sideways
    "elbow": (0.0, 2.5, 0.1, 1.4, 0.6),
    "hip_flex": (-0.55, 1.7, -0.1, 0.45, 0.45),
    "hip_abd": (-0.15, 0.9, 0.0, 0.3, 0.25),
    "knee": (0.0, 2.2, 0.05, 0.6, 0.5),
}


def _angles(rng: np.random.Generator, t: np.ndarray) -> dict:
    """Joint angles over time, per side for the limbs (keys like 'sh_flex0')."""
    f0 = rng.uniform(0.012, 0.06)  # main rhythm, cycles per frame
    ph0 = rng.uniform(0, 2 * np.pi)
    style = rng.choice(["walk", "jack", "free", "mixed"], p=[0.3, 0.15, 0.3, 0.25])
    main = np.sin(2 * np.pi * f0 * t + ph0)
    out: dict[str, np.ndarray] = {}
    for name, (lo, hi, rlo, rhi, amp) in _JOINTS.items():
        sides = (0, 1) if name in ("sh_flex", "sh_abd", "elbow", "hip_flex", "hip_abd", "knee") else (None,)
        for side in sides:
            rest = rng.uniform(rlo, rhi)
            x = np.full_like(t, rest)
            # free wobble: a few slower / faster sinusoids
            for _ in range(2):
                a = amp * rng.uniform(0.0, 0.8)
                f = rng.uniform(0.004, 0.07)
                x = x + a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            # coordinated rhythm
            if side is not None and style in ("walk", "mixed") and name in ("sh_flex", "hip_flex", "knee", "elbow"):
                sign = 1.0 if side == 0 else -1.0
                if name == "sh_flex":
                    x = x - sign * rng.uniform(0.3, 0.9) * main
                elif name == "hip_flex":
                    x = x + sign * rng.uniform(0.3, 0.7) * main
                elif name == "knee":
                    x = x + rng.uniform(0.2, 0.6) * (0.5 + 0.5 * np.sin(2 * np.pi * f0 * t + ph0 + (0 if side == 0 else np.pi) + 1.2))
                else:
                    x = x + rng.uniform(0.1, 0.4) * main * sign
            if side is not None and style in ("jack", "mixed") and name in ("sh_abd", "hip_abd"):
                w = rng.uniform(0.5, 1.1) if name == "sh_abd" else rng.uniform(0.12, 0.3)
                if style == "mixed":
                    w *= 0.5
                x = x + w * (main + 0.6)
            if style == "free" and side is not None:
                x = x + amp * rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * f0 * rng.uniform(0.6, 1.6) * t + rng.uniform(0, 2 * np.pi))
            key = name if side is None else f"{name}{side}"
            out[key] = _soft_range(x, lo, hi)
    return out


def _sample_motion(rng: np.random.Generator, frames: int, size: int, variant=DEFAULT_VARIANT) -> _Motion:
    """Sample body, motion and placement; return projected pixel keypoints (``variant``: see
    :attr:`SyntheticConfig.variant`; time runs ``motion_speed`` times as fast)."""
    speed, figure_scale, spread, _ = variant
    T = frames
    t = np.arange(T, dtype=np.float64) * speed
    body = _sample_body(rng, spread)
    ang = _angles(rng, t)

    # viewing angle: mostly frontal to three-quarter, slowly drifting
    yaw0 = rng.uniform(0.0, 1.1) * rng.choice([-1.0, 1.0])
    yaw = yaw0 + rng.uniform(0.0, 0.25) * _smooth(rng, t, 2, 0.003, 0.03)
    near = 0 if yaw0 < 0 else 1  # body-left points to -z (away) when yaw > 0

    r_pelvis = _ry(yaw)
    r_upper = _mm(r_pelvis, _ry(ang["twist"]), _rz(ang["roll"]), _rx(-ang["pitch"]))
    p3 = np.zeros((T, K, 3))
    toe3 = np.zeros((T, 2, 3))
    neck = _apply(r_upper, (0.0, body["torso"], 0.0))
    p3[:, NECK] = neck
    r_head = _mm(r_upper, _rz(ang["head_roll"]), _rx(-ang["head_pitch"]))
    p3[:, HEAD] = neck + _apply(r_head, (0.0, body["neck_head"], 0.0))
    for side in (0, 1):
        sx = 1.0 if side == 0 else -1.0  # body left is +x
        i_sh, i_el, i_wr, i_hip, i_kn, i_an = _SIDE[side]
        sh = neck + _apply(r_upper, (sx * body["shoulder_half"], -body["shoulder_drop"], 0.0))
        r_ua = _mm(r_upper, _rz(ang[f"sh_abd{side}"], sx), _rx(ang[f"sh_flex{side}"]))
        el = sh + body["upper_arm"] * _apply(r_ua, _DOWN)
        wr = el + body["forearm"] * _apply(r_ua @ _rx(ang[f"elbow{side}"]), _DOWN)
        hip = _apply(r_pelvis, (sx * body["hip_half"], -body["hip_drop"], 0.0))
        r_th = _mm(r_pelvis, _rz(ang[f"hip_abd{side}"], sx), _rx(ang[f"hip_flex{side}"]))
        kn = hip + body["thigh"] * _apply(r_th, _DOWN)
        r_sh = r_th @ _rx(-ang[f"knee{side}"])
        an = kn + body["shin"] * _apply(r_sh, _DOWN)
        toe3[:, side] = an + body["foot"] * _apply(r_sh, (0.0, -0.25, 0.97))
        p3[:, i_sh], p3[:, i_el], p3[:, i_wr] = sh, el, wr
        p3[:, i_hip], p3[:, i_kn], p3[:, i_an] = hip, kn, an

    # orthographic projection: image x = X, image y = -Y (y down)
    rel = np.stack([p3[..., 0], -p3[..., 1]], -1)
    toe = np.stack([toe3[..., 0], -toe3[..., 1]], -1)
    # stand on the ground: the lowest foot point is at y = 0, with an optional hop
    ankles = rel[:, [_SIDE[0][5], _SIDE[1][5]], 1]
    ground = np.maximum(ankles + body["foot_r"], toe[..., 1] + body["foot_r"]).max(1)
    hop = 0.0
    if rng.random() < 0.2:
        hop = rng.uniform(0.02, 0.08) * np.abs(np.sin(2 * np.pi * rng.uniform(0.02, 0.05) * t + rng.uniform(0, 6)))
    shift = np.stack([-rel[:, PELVIS, 0], -ground - hop], -1)[:, None, :]
    rel = rel + shift
    toe = toe + shift

    # scale: figure height 60-85% of the frame, mild breathing-like change
    frac = rng.uniform(0.6, 0.85) * figure_scale
    scale = frac * size / body["height"] * (1.0 + rng.uniform(0.0, 0.06) * _smooth(rng, t, 2, 0.005, 0.04))
    pr = max(body["arm_r"], body["leg_r"], body["foot_r"])
    pts = np.concatenate([rel, toe], 1) * scale[:, None, None]
    pad = np.full(pts.shape[1], pr)
    pad[HEAD] = body["head_r"]
    pad[[_SIDE[0][0], _SIDE[1][0]]] = max(pr, body["chest_r"] * 0.5)
    pad = pad[None, :] * scale[:, None]
    margin = max(1.0, 0.03 * size)
    avail = size - 1 - 2 * margin
    lo_x, hi_x = (pts[..., 0] - pad).min(), (pts[..., 0] + pad).max()
    lo_y, hi_y = (pts[..., 1] - pad).min(), (pts[..., 1] + pad).max()
    shrink = min(1.0, avail / max(hi_x - lo_x, 1e-6), avail / max(hi_y - lo_y, 1e-6))
    scale = scale * shrink
    lo_x, hi_x, lo_y, hi_y = lo_x * shrink, hi_x * shrink, lo_y * shrink, hi_y * shrink
    # root (pelvis x, ground y) range that keeps everything inside [margin, size-1-margin]
    root = []
    for lo, hi, amp_max in ((lo_x, hi_x, 0.45), (lo_y, hi_y, 0.25)):
        a, b = margin - lo, size - 1 - margin - hi
        a, b = min(a, b), max(a, b)
        amp = rng.uniform(0.0, amp_max)
        c = rng.uniform(amp, 1.0 - amp) if amp < 0.5 else 0.5
        if rng.random() < 0.25:  # walking across: a steady drift
            g = np.linspace(-1.0, 1.0, T) * min(1.0, speed) * rng.choice([-1.0, 1.0]) if T > 1 else np.zeros(T)
        else:
            g = _smooth(rng, t, 2, 0.004, 0.03)
        root.append(a + (b - a) * (c + amp * g))
    root = np.stack(root, -1)[:, None, :]
    kp = rel * scale[:, None, None] + root
    toe = toe * scale[:, None, None] + root
    return _Motion(kp=kp, toe=toe, scale=scale, yaw=yaw, near=near, body=body)


# =============================================================================
#                                 appearance
# =============================================================================
def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour with some saturation / brightness spread (RGB, 0..255)."""
    h = rng.uniform(0, 1)
    s = rng.choice([rng.uniform(0.0, 0.25), rng.uniform(0.3, 1.0)], p=[0.3, 0.7])
    v = rng.uniform(0.15, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, tt = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, tt, p), (q, v, p), (p, v, tt), (p, q, v), (tt, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _skin(rng: np.random.Generator) -> np.ndarray:
    light, dark = np.array([250, 220, 190.0]), np.array([80, 52, 36.0])
    w = rng.uniform(0, 1)
    return light * (1 - w) + dark * w + rng.normal(0, 8, 3)


def _far_from(rng: np.random.Generator, ref: np.ndarray, minimum: float, make) -> np.ndarray:
    """Draw colours with ``make`` until one is at least ``minimum`` away from ``ref``."""
    best, best_d = None, -1.0
    for _ in range(12):
        c = make(rng)
        d = float(np.linalg.norm(c - ref))
        if d >= minimum:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


@dataclass
class _Look:
    background: np.ndarray  # (H, W, 3) float32
    parts: dict  # part name -> (colour (3,), pattern dict)
    skin: np.ndarray
    hair: np.ndarray
    hair_amount: float
    noise: float
    light: float


def _pattern(rng: np.random.Generator, size: int) -> dict:
    kind = rng.choice(["plain", "across", "along", "check", "blotch"], p=[0.25, 0.3, 0.15, 0.15, 0.15])
    return {
        "kind": str(kind),
        "amp": float(rng.uniform(0.12, 0.4)),
        "period": float(rng.uniform(2.5, 7.0) * size / 64.0),
        "phase": float(rng.uniform(0, 2 * np.pi)),
    }


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    H = W = size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    c0, c1 = _rand_colour(rng), _rand_colour(rng)
    ang = rng.uniform(0, 2 * np.pi)
    g = (np.cos(ang) * (xx - W / 2) + np.sin(ang) * (yy - H / 2)) / size + 0.5
    img = c0 + (c1 - c0) * np.clip(g, 0, 1)[..., None]
    if rng.random() < 0.5:  # a floor
        hy = rng.uniform(0.55, 0.95) * H
        floor = _rand_colour(rng)
        a = np.clip(yy - hy + 0.5, 0, 1)[..., None]
        img = img * (1 - a) + floor * a
    for _ in range(int(rng.integers(3, 11))):
        col = _rand_colour(rng)
        cx, cy = rng.uniform(-0.1, 1.1, 2) * size
        rx, ry = rng.uniform(0.04, 0.3, 2) * size
        th = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (np.cos(th) * dx + np.sin(th) * dy) / rx
        v = (-np.sin(th) * dx + np.cos(th) * dy) / ry
        kind = rng.integers(0, 3)
        if kind == 0:  # ellipse
            d = (np.sqrt(u * u + v * v) - 1.0) * min(rx, ry)
        elif kind == 1:  # rectangle
            d = np.maximum(np.abs(u) - 1.0, np.abs(v) - 1.0) * min(rx, ry)
        else:  # thin bar / stripe
            d = np.maximum(np.abs(u) - 1.0, np.abs(v) * ry / max(1.0, 0.02 * size) - 1.0) * min(rx, max(1.0, 0.02 * size))
        soft = rng.uniform(0.5, 2.5)
        a = (np.clip(0.5 - d / soft, 0, 1) * rng.uniform(0.6, 1.0))[..., None]
        img = img * (1 - a) + col * a
    # low-frequency multiplicative noise
    n = int(rng.integers(3, 7))
    grid = rng.normal(0, 1, (n, n, 3)).astype(np.float32)
    gy = np.linspace(0, n - 1, H)
    gx = np.linspace(0, n - 1, W)
    y0 = np.clip(np.floor(gy).astype(int), 0, n - 2)
    x0 = np.clip(np.floor(gx).astype(int), 0, n - 2)
    fy = (gy - y0)[:, None, None]
    fx = (gx - x0)[None, :, None]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    low = (g00 * (1 - fx) + g01 * fx) * (1 - fy) + (g10 * (1 - fx) + g11 * fx) * fy
    img = img * (1.0 + rng.uniform(0.03, 0.15) * low)
    return np.clip(img, 0, 255).astype(np.float32)


def _sample_look(rng: np.random.Generator, size: int, background: str = "cluttered") -> _Look:
    bg = _background(rng, size)  # drawn either way: the rest of the video's draws stay the same
    if background == "plain":
        bg = np.broadcast_to(bg.reshape(-1, 3).mean(0), bg.shape).copy()
    ref = bg.reshape(-1, 3).mean(0)
    far = lambda make: _far_from(rng, ref, 70.0, make)  # noqa: E731
    skin = far(_skin)
    shirt = far(_rand_colour)
    trousers = far(_rand_colour)
    shoes = far(_rand_colour)
    sleeve = shirt if rng.random() < 0.6 else far(_rand_colour)
    long_sleeves = rng.random() < 0.6
    long_legs = rng.random() < 0.75
    parts = {
        "torso": (shirt, _pattern(rng, size)),
        "upper_arm": (sleeve, _pattern(rng, size)),
        "forearm": (sleeve if long_sleeves else skin, _pattern(rng, size) if long_sleeves else {"kind": "plain"}),
        "hips": (trousers, {"kind": "plain"}),
        "thigh": (trousers, _pattern(rng, size)),
        "shin": (trousers if long_legs else skin, _pattern(rng, size) if long_legs else {"kind": "plain"}),
        "foot": (shoes, {"kind": "plain"}),
    }
    parts["hips"] = (trousers, parts["thigh"][1])
    hair = _rand_colour(rng) * rng.uniform(0.2, 0.8)
    return _Look(
        background=bg,
        parts=parts,
        skin=skin,
        hair=hair,
        hair_amount=float(rng.uniform(-0.15, 0.55)),
        noise=float(rng.uniform(0.0, 3.0)),
        light=float(rng.uniform(-0.15, 0.15)),
    )


# =============================================================================
#                                  rendering
# =============================================================================
def _capsule(img, a, b, ra, rb, colour, pattern, light, *, hair=None):
    """Composite an anti-aliased tapered capsule onto ``img`` (T, H, W, 3) in place.

    ``a, b`` are (T, 2) pixel endpoints, ``ra, rb`` (T,) radii at the ends.
    ``hair``: optional (direction (T, 2), threshold, colour) for the head disc.
    """
    T, H, W, _ = img.shape
    rmax = float(np.max(np.maximum(ra, rb)))
    x0 = max(0, int(np.floor(min(a[:, 0].min(), b[:, 0].min()) - rmax - 1)))
    x1 = min(W, int(np.ceil(max(a[:, 0].max(), b[:, 0].max()) + rmax + 2)))
    y0 = max(0, int(np.floor(min(a[:, 1].min(), b[:, 1].min()) - rmax - 1)))
    y1 = min(H, int(np.ceil(max(a[:, 1].max(), b[:, 1].max()) + rmax + 2)))
    if x1 <= x0 or y1 <= y0:
        return
    f32 = np.float32
    px = np.arange(x0, x1, dtype=f32)[None, None, :]
    py = np.arange(y0, y1, dtype=f32)[None, :, None]
    ax, ay = a[:, 0, None, None].astype(f32), a[:, 1, None, None].astype(f32)
    dx = (b[:, 0] - a[:, 0]).astype(f32)[:, None, None]
    dy = (b[:, 1] - a[:, 1]).astype(f32)[:, None, None]
    length = np.sqrt(dx * dx + dy * dy)
    l2 = length * length + f32(1e-9)
    rx, ry = px - ax, py - ay
    t = np.clip((rx * dx + ry * dy) / l2, 0, 1)
    cx, cy = rx - t * dx, ry - t * dy
    d = np.sqrt(cx * cx + cy * cy)
    r = (ra.astype(f32)[:, None, None] + (rb - ra).astype(f32)[:, None, None] * t)
    alpha = np.clip(r - d + f32(0.5), 0, 1)
    if not alpha.any():
        return
    # cylinder shading and a soft side light
    inv_len = 1.0 / np.maximum(length, f32(1e-6))
    v = (rx * dy - ry * dx) * inv_len  # signed distance across the limb axis
    n = np.clip(d / np.maximum(r, f32(1e-3)), 0, 1)
    shade = f32(0.7) + f32(0.3) * np.sqrt(1 - n * n) + f32(light) * np.clip(v / np.maximum(r, f32(1e-3)), -1, 1)
    kind = pattern.get("kind", "plain")
    if kind != "plain":
        amp, per, ph = f32(pattern["amp"]), f32(pattern["period"]), f32(pattern["phase"])
        s = t * length  # arc length along the limb, in pixels
        if kind == "across":
            tex = np.sin(f32(2 * np.pi) * s / per + ph)
        elif kind == "along":
            tex = np.sin(f32(2 * np.pi) * v / (0.6 * per) + ph)
        elif kind == "check":
            tex = np.sign(np.sin(f32(2 * np.pi) * s / per + ph) * np.sin(f32(2 * np.pi) * v / per + ph)) * f32(0.8)
        else:  # blotch
            tex = np.sin(f32(2 * np.pi) * s / (1.7 * per) + ph) * np.cos(f32(2 * np.pi) * v / (1.3 * per) + 2 * ph)
        shade = shade * (1 + amp * tex)
    col = np.asarray(colour, dtype=f32)
    paint = shade[..., None] * col
    if hair is not None:
        hdir, thresh, hcol = hair
        proj = (rx * hdir[:, 0, None, None].astype(f32) + ry * hdir[:, 1, None, None].astype(f32)) / np.maximum(r, f32(1e-3))
        hm = np.clip((proj - f32(thresh)) * r + f32(0.5), 0, 1)[..., None]
        paint = paint * (1 - hm) + shade[..., None] * np.asarray(hcol, dtype=f32) * hm
    region = img[:, y0:y1, x0:x1]
    al = alpha[..., None]
    region += al * (paint - region)


def _draw_figure(img: np.ndarray, kp: np.ndarray, toe: np.ndarray, scale: np.ndarray, yaw: np.ndarray, near: int,
                 body: dict, look: _Look) -> None:
    """Draw the figure on ``img`` (T, H, W, 3) float32, in place."""
    P = look.parts
    s = scale
    minr = 0.7
    r = lambda name: np.maximum(body[name] * s, minr)  # noqa: E731
    # the torso looks narrower when turned sideways
    turn = np.abs(np.cos(yaw))
    proj = np.sqrt(turn**2 + (body["depth"] * np.sin(yaw)) ** 2)

    def limb(i, j, part, ra, rb=None):
        col, pat = P[part]
        _capsule(img, kp[:, i], kp[:, j], ra, ra if rb is None else rb, col, pat, look.light)

    def arm(side):
        i_sh, i_el, i_wr = _SIDE[side][:3]
        limb(i_sh, i_el, "upper_arm", r("arm_r") * 1.1, r("arm_r"))
        limb(i_el, i_wr, "forearm", r("arm_r"), r("arm_r") * 0.85)
        # hand
        _capsule(img, kp[:, i_wr], kp[:, i_wr], r("arm_r") * 1.15, r("arm_r") * 1.15, look.skin, {"kind": "plain"}, look.light)

    def leg(side):
        i_hip, i_kn, i_an = _SIDE[side][3:]
        col, _ = P["foot"]
        _capsule(img, kp[:, i_an], toe[:, side], r("foot_r"), r("foot_r"), col, {"kind": "plain"}, look.light)
        limb(i_kn, i_an, "shin", r("leg_r") * 0.95, r("leg_r") * 0.8)
        limb(i_hip, i_kn, "thigh", r("leg_r") * 1.15, r("leg_r"))

    far = 1 - near
    arm(far)
    leg(far)
    # neck and head (the head is a disc centred on the head keypoint)
    _capsule(img, kp[:, NECK], kp[:, HEAD], r("neck_r"), r("neck_r"), look.skin, {"kind": "plain"}, look.light)
    up = kp[:, HEAD] - kp[:, NECK]
    up = up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-6)
    hdir = up + 0.8 * np.stack([-np.sin(yaw), np.zeros_like(yaw)], -1)
    hdir = hdir / np.maximum(np.linalg.norm(hdir, axis=-1, keepdims=True), 1e-6)
    hr = r("head_r")
    _capsule(img, kp[:, HEAD], kp[:, HEAD], hr, hr, look.skin, {"kind": "plain"}, look.light,
             hair=(hdir, look.hair_amount, look.hair))
    # torso: hips bar, tapered trunk, shoulder bar
    i_lh, i_rh = _SIDE[0][3], _SIDE[1][3]
    i_ls, i_rs = _SIDE[0][0], _SIDE[1][0]
    limb(i_lh, i_rh, "hips", r("leg_r") * 1.1)
    col, pat = P["torso"]
    chest = kp[:, NECK] + 0.18 * (kp[:, PELVIS] - kp[:, NECK])
    _capsule(img, chest, kp[:, PELVIS], np.maximum(body["chest_r"] * s * proj, minr),
             np.maximum(body["waist_r"] * s * proj, minr), col, pat, look.light)
    limb(i_ls, i_rs, "torso", r("arm_r") * 1.25)
    leg(near)
    arm(near)


def _render(rng: np.random.Generator, frames: int, size: int, variant=DEFAULT_VARIANT):
    motion = _sample_motion(rng, frames, size, variant)
    look = _sample_look(rng, size, variant[3])
    T = frames
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    out = np.empty((T, size, size, 3), dtype=np.uint8)
    for s0 in range(0, T, chunk):
        s1 = min(T, s0 + chunk)
        img = np.repeat(look.background[None], s1 - s0, axis=0)
        _draw_figure(img, motion.kp[s0:s1], motion.toe[s0:s1], motion.scale[s0:s1], motion.yaw[s0:s1], motion.near,
                     motion.body, look)
        if look.noise > 0:
            img += rng.normal(0.0, look.noise, img.shape).astype(np.float32)
        np.clip(img + 0.5, 0, 255, out=img)
        out[s0:s1] = img.astype(np.uint8)
    return out, motion.kp.astype(np.float32), look.background


def render_video(rng: np.random.Generator, frames: int, size: int, *, return_background: bool = False, variant=DEFAULT_VARIANT):
    """Render one synthetic video.

    Args:
        rng: the video's random generator (everything about the video is drawn from it).
        frames: number of frames ``T``.
        size: frame width and height ``S`` in pixels.
        return_background: also return the figure-free background (``S×S×3`` float32).
        variant: ``(motion_speed, figure_scale, proportion_spread, background)``
            (:attr:`SyntheticConfig.variant`; the default distribution by default).

    Returns:
        ``(images, keypoints)``: ``T×S×S×3`` uint8 RGB frames and ``T×K×2`` float32
        pixel ``(x, y)`` joint positions (pixel centres at integers), in the order of
        :data:`keypointgan.skeleton.SYNTHETIC_KEYPOINTS`; with ``return_background``
        a third element, the background.
    """
    images, kp, bg = _render(rng, int(frames), int(size), tuple(variant))
    return (images, kp, bg) if return_background else (images, kp)


def sample_poses(rng: np.random.Generator, n: int, size: int, *, frames: int = 50, per_motion: int = 10,
                 variant=DEFAULT_VARIANT) -> np.ndarray:
    """Sample ``n`` poses (``n×K×2`` float32 pixel ``(x, y)``) without rendering.

    Poses come from motions drawn exactly like the videos' (same proportions,
    motion and placement distributions), ``per_motion`` random frames of each
    ``frames``-long motion.  Pass a generator that no video uses for an unpaired
    prior (as :func:`make_synthetic` does).
    """
    n, frames = int(n), max(1, int(frames))
    per = max(1, min(int(per_motion), frames))
    out = []
    total = 0
    while total < n:
        m = _sample_motion(rng, frames, size, tuple(variant))
        idx = np.sort(rng.choice(frames, size=per, replace=False))
        out.append(m.kp[idx])
        total += per
    if not out:
        return np.zeros((0, K, 2), np.float32)
    return np.concatenate(out, 0)[:n].astype(np.float32)


# =============================================================================
#                                  writing
# =============================================================================
def _write_file(path: Path, data: bytes) -> None:
    """Write via a temporary name and rename (atomic per file; no fsync)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _video_id(index: int, videos: int) -> str:
    return f"v{index:0{max(4, len(str(videos - 1)))}d}"


def _make_one(job: tuple) -> int:
    root, seed, index, videos, frames, size, variant = job
    root = Path(root)
    images, kp = render_video(_video_rng(seed, index), frames, size, variant=variant)
    vid = _video_id(index, videos)
    vdir = root / "videos" / vid
    vdir.mkdir(parents=True, exist_ok=True)
    for f in range(frames):
        _write_file(vdir / f"{f:06d}.png", _png_bytes(images[f]))
    _write_file(root / "keypoints" / f"{vid}.npy", _npy_bytes(kp))
    return index


def _preview(root: Path, config: SyntheticConfig, nv: int = 4, nf: int = 6, up: int = 4) -> np.ndarray:
    """A contact sheet of the first videos with keypoints and limbs drawn on."""
    from PIL import Image, ImageDraw

    sk = preset("synthetic")
    nv, nf = min(nv, config.videos), min(nf, config.frames)
    S = config.size
    up = max(1, min(up, 1024 // S)) if S < 1024 else 1
    cell, gap = S * up, 4
    sheet = Image.new("RGB", (nf * cell + (nf + 1) * gap, nv * cell + (nv + 1) * gap), (24, 24, 24))
    colours = {"l": (255, 70, 70), "r": (60, 150, 255), "c": (255, 225, 40)}

    def side(name: str) -> str:
        return name[0] if name[:2] in ("l_", "r_") else "c"

    for vi in range(nv):
        vid = _video_id(vi, config.videos)
        kp = np.load(root / "keypoints" / f"{vid}.npy")
        for ci, fi in enumerate(np.linspace(0, config.frames - 1, nf).round().astype(int)):
            with Image.open(root / "videos" / vid / f"{fi:06d}.png") as im:
                tile = im.convert("RGB").resize((cell, cell), Image.NEAREST)
            draw = ImageDraw.Draw(tile)
            q = (kp[fi] + 0.5) * up - 0.5  # integer-centred pixel coords -> upscaled
            for i, j in sk.limbs:
                sd = side(sk.keypoints[j]) if side(sk.keypoints[j]) != "c" else side(sk.keypoints[i])
                draw.line([tuple(q[i]), tuple(q[j])], fill=colours[sd], width=1)
            rad = max(1.5, up * 0.6)
            for k, name in enumerate(sk.keypoints):
                x, y = q[k]
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=colours[side(name)], outline=(0, 0, 0))
            sheet.paste(tile, (gap + ci * (cell + gap), gap + vi * (cell + gap)))
    return np.asarray(sheet)


def _pool(workers: int):
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods and sys.platform.startswith("linux") else "spawn")
    with warnings.catch_warnings():  # fork() in a process with threads warns on Python >= 3.12
        warnings.simplefilter("ignore", DeprecationWarning)
        return ctx.Pool(workers)


def make_synthetic(
    out: str | Path,
    config: SyntheticConfig,
    *,
    preview: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Generate the synthetic dataset in the generic layout under ``out``.

    Writes ``skeleton.yaml``, ``videos/<id>/<frame>.png``, ``keypoints/<id>.npy``
    (pixel ``(x, y)``), ``prior.npy`` (``((x + 0.5) / width, (y + 0.5) / height)`` in [0, 1]) and, with
    ``preview``, ``preview.png``.  Everything is written to a temporary sibling
    folder that is renamed to ``out`` at the end.  The output depends only on
    ``config`` (not on ``workers``).

    Raises:
        InputError: ``out`` exists and is not an empty folder, or bad arguments.
    """
    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", out)
    check_output_folder(out)  # a file where a folder of its path should be
    if out.is_dir() and any(out.iterdir()):
        raise InputError("output folder exists and is not empty (refusing to overwrite)", out)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    workers = min(workers, config.videos)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        preset("synthetic").to_yaml(tmp / "skeleton.yaml")
        (tmp / "videos").mkdir()
        (tmp / "keypoints").mkdir()
        jobs = [(str(tmp), config.seed, i, config.videos, config.frames, config.size, config.variant) for i in range(config.videos)]
        done = 0
        step = max(1, config.videos // 10)

        def report():
            if progress and (done % step == 0 or done == config.videos):
                logger.info(f"synthetic: {done}/{config.videos} videos")

        if workers > 1:
            pool = _pool(workers)
            try:
                for _ in pool.imap_unordered(_make_one, jobs, chunksize=max(1, min(8, config.videos // (4 * workers)))):
                    done += 1
                    report()
                pool.close()
            finally:
                pool.terminate()
                pool.join()
        else:
            for job in jobs:
                _make_one(job)
                done += 1
                report()

        prior = sample_poses(_prior_rng(config.seed), config.prior, config.size, frames=config.frames, variant=config.variant)
        prior = np.clip(pixel_to_unit(prior, config.size), 0.0, 1.0).astype(np.float32)
        _write_file(tmp / "prior.npy", _npy_bytes(prior))
        if preview:
            _write_file(tmp / "preview.png", _png_bytes(_preview(tmp, config)))
        if out.exists():
            try:
                out.rmdir()  # empty (checked above)
            except OSError:
                raise InputError("output folder was filled while generating (refusing to overwrite)", out) from None
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        logger.info(f"synthetic: wrote {config.videos} videos and {config.prior} prior poses to {out}")
    return out
