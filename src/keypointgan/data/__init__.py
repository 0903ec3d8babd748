"""Data: the generic layout, datasets over it, the built-in synthetic videos."""

from .datasets import (
    EvalFrameDataset,
    FramePairDataset,
    FrameStore,
    PriorPoseDataset,
    augment_poses,
    image_to_tensor,
    resize_image,
)
from .layout import Layout, Video, load_prior

__all__ = [
    "Layout",
    "Video",
    "load_prior",
    "FrameStore",
    "FramePairDataset",
    "PriorPoseDataset",
    "EvalFrameDataset",
    "augment_poses",
    "image_to_tensor",
    "resize_image",
]
