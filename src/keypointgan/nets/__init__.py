"""The four networks of KeypointGAN, as plain ``nn.Module``s (no losses, no optimisers)."""

from .common import init_weights
from .decoder import ConditionalDecoder
from .discriminator import MultiScaleDiscriminator, PatchDiscriminator
from .encoder import PoseEncoder
from .regressor import KeypointRegressor

__all__ = ["PoseEncoder", "KeypointRegressor", "ConditionalDecoder", "MultiScaleDiscriminator", "PatchDiscriminator", "init_weights"]
