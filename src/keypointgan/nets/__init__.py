"""The four networks of KeypointGAN, as plain ``nn.Module``s (no losses, no optimisers)."""

from torch import nn

from .common import init_weights
from .decoder import ConditionalDecoder
from .discriminator import MultiScaleDiscriminator, PatchDiscriminator
from .encoder import PoseEncoder
from .regressor import KeypointRegressor

__all__ = ["build_networks", "PoseEncoder", "KeypointRegressor", "ConditionalDecoder", "MultiScaleDiscriminator", "PatchDiscriminator", "init_weights"]


def build_networks(model, num_keypoints: int, *, with_gan: bool = True) -> dict[str, nn.Module]:
    """Φ (``phi``), η (``eta``) and, with ``with_gan``, Ψ (``psi``) and D (``disc``) shaped by
    ``model`` (a :class:`~keypointgan.config.ModelConfig`), initialised as the authors do: N(0, 0.02)
    (:func:`init_weights`), and Φ's output bias at −1, the background value of rendered skeletons
    (with a zero start η's self-term fits a grey image by spreading the limbs over the whole frame)."""
    nets: dict[str, nn.Module] = {
        "phi": PoseEncoder(widths=model.encoder_widths, norm=model.norm, arch=model.phi_arch),
        "eta": KeypointRegressor(num_keypoints=num_keypoints, widths=model.regressor_widths, norm=model.regressor_norm or model.norm,
                                 arch=model.eta_arch),
    }
    if with_gan:
        nets["psi"] = ConditionalDecoder(widths=model.decoder_widths, norm=model.norm, style=model.decoder_style, arch=model.psi_arch)
        nets["disc"] = MultiScaleDiscriminator(ndf=model.disc_ndf, n_layers=model.disc_layers, num_scales=model.disc_scales,
                                               norm=model.disc_norm, downsample=model.disc_downsample,
                                               batch_std=model.disc_batch_std, arch=model.disc_arch)
    for net in nets.values():
        init_weights(net)
    nn.init.constant_(nets["phi"].head.bias, -1.0)
    return nets
