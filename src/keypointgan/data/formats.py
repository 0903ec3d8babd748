"""Dataset formats: recognising a folder's format and opening it as a :class:`VideoDataset`.

Every format gives the training code the same things — ``videos`` (frame files in order), the
``skeleton``, a prior and ``load_keypoints`` — and its evaluation protocol: which videos are tested,
how test frames are grouped for the mean (e.g. per activity) and which error is reported
(:class:`~keypointgan.data.protocol.VideoDataset`).  :func:`keypointgan.api.train` and
:func:`keypointgan.api.evaluate` use every format alike.

Formats (``--format``; ``auto`` recognises each by its folder structure):

========================  ====================================================
``generic``               the library's layout (``videos/``, ``skeleton.yaml``), :mod:`.layout`:
                          trains on every video, tests on those with keypoints
``simple-human36m``       Simplified Human3.6M (Zhang et al. 2018), :mod:`.human36m`
``human36m``              Human3.6M with ``MyPoseFeatures/D2_Positions``, :mod:`.human36m`
``penn-action``           Penn Action (``frames/``, ``labels/*.mat``), :mod:`.penn`
``300vw``                 face videos with 300-W ``.pts`` landmarks, :mod:`.faces`
========================  ====================================================
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .layout import Layout
from .protocol import FORMATS, VideoDataset, register_format

register_format("generic", lambda root: (root / "videos").is_dir(), lambda root, skeleton=None: VideoDataset.from_layout(Layout(root, skeleton)))
# each format module registers itself on import; auto-detection tries them in this order
from . import human36m  # noqa: E402, F401, I001  (simple-human36m, human36m)
from . import penn  # noqa: E402, F401  (penn-action)
from . import faces  # noqa: E402, F401  (300vw)

__all__ = ["detect_format", "open_dataset"]


def detect_format(root: str | Path) -> str:
    """The name of the dataset format ``root`` is in (by its folder structure; ``generic`` if none fits)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset folder not found", root)
    for name, (recognise, _) in FORMATS.items():
        if recognise(root):
            return name
    return "generic"  # the generic reader names what is missing


def open_dataset(root: str | Path, format: str = "auto", **kwargs) -> VideoDataset:
    """The dataset in ``root`` as a :class:`VideoDataset` (``format``: ``auto`` or one of :data:`FORMATS`).

    ``kwargs`` go to the format's reader (e.g. ``skeleton=`` for the generic layout,
    ``frame_step=`` for Human3.6M).
    """
    root = Path(root)
    fmt = detect_format(root) if format == "auto" else format
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format {format!r}; choose from auto, {', '.join(FORMATS)}")
    if not root.is_dir():
        raise InputError("dataset folder not found", root)
    kwargs = {k: v for k, v in kwargs.items() if k != "skeleton" or v is not None}
    return FORMATS[fmt][1](root, **kwargs)
