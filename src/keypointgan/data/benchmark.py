"""Datasets read in their own on-disk format, each with its evaluation protocol.

A :class:`Benchmark` gives the training code the same things the generic
:class:`~keypointgan.data.layout.Layout` does — ``videos`` (frame files in order),
``skeleton``, a prior and ``load_keypoints`` — plus the protocol: which videos
train, which are tested, how test frames are grouped for the mean (e.g. per
activity) and which error is reported.  The training loop, :func:`keypointgan.api.train`
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

from pathlib import Path

from ..errors import InputError
# each format module registers itself on import; auto-detection tries them in this order
from . import human36m  # noqa: F401, I001  (simple-human36m, human36m)
from . import penn  # noqa: F401  (penn-action)
from . import faces  # noqa: F401  (300vw)
from .protocol import FORMATS, Benchmark, frame_folder, stack_checked  # noqa: F401  (re-exported)

__all__ = ["Benchmark", "FORMATS", "detect_format", "open_dataset", "frame_folder"]


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
