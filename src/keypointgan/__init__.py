"""keypointgan: interpretable keypoints from unlabelled videos and an unpaired pose prior."""

from ._version import __version__
from .errors import InputError, KeypointGANError, TrainingDiverged, TrainingInterrupted
from .skeleton import Skeleton

__all__ = ["__version__", "Skeleton", "InputError", "KeypointGANError", "TrainingDiverged", "TrainingInterrupted", "KeypointDetector"]


def __getattr__(name):  # lazy: importing the detector pulls in the networks
    if name == "KeypointDetector":
        from .detector import KeypointDetector

        return KeypointDetector
    raise AttributeError(name)
