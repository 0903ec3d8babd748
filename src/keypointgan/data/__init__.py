"""Data: the generic layout, datasets over it, the built-in synthetic videos."""

from .datasets import (
    EvalFrameDataset,
    FramePairDataset,
    FrameStore,
    PriorPoseDataset,
    augment_poses,
    image_to_tensor,
)
from .formats import detect_format, open_dataset
from .protocol import VideoDataset
from .layout import Layout, Video, load_prior
from .priors import save_prior

__all__ = [
    "Layout",
    "Video",
    "load_prior",
    "save_prior",
    "VideoDataset",
    "open_dataset",
    "detect_format",
    "FrameStore",
    "FramePairDataset",
    "PriorPoseDataset",
    "EvalFrameDataset",
    "augment_poses",
    "image_to_tensor",
]
