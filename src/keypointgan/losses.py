"""Losses: multi-scale LSGAN, perceptual (VGG-19) or fallback reconstruction, regressor losses."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

__all__ = [
    "lsgan_loss",
    "VGG19Features",
    "PerceptualLoss",
    "FallbackReconstructionLoss",
    "make_reconstruction_loss",
    "regressor_prior_loss",
    "regressor_self_loss",
]


def lsgan_loss(outputs: Sequence[torch.Tensor], real: bool) -> torch.Tensor:
    """LSGAN (MSE against 1 for real, 0 for fake), averaged over the discriminator's scales."""
    target = 1.0 if real else 0.0
    return torch.stack([F.mse_loss(o, torch.full_like(o, target)) for o in outputs]).mean()


# VGG-19 "features" layout (torchvision indexing): (name, index) of each conv.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
_VGG19_CONV_NAMES = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4",
    "conv5_1", "conv5_2", "conv5_3", "conv5_4",
]
PERCEPTUAL_LAYERS = ("input", "conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")


class VGG19Features(nn.Module):
    """VGG-19 convolutional trunk, laid out as torchvision's ``vgg19().features``.

    ``forward(x, layers)`` takes images in [-1, 1], applies ImageNet
    normalisation and returns ``{layer: activation}`` (after ReLU) for the
    named layers (``input`` is the normalised input itself).
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        self.names: dict[int, str] = {}
        conv_i = 0
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(cin, v, 3, padding=1))
                layers.append(nn.ReLU(inplace=False))
                self.names[len(layers) - 1] = _VGG19_CONV_NAMES[conv_i]  # output after ReLU
                conv_i += 1
                cin = v
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor, layers: Sequence[str] = PERCEPTUAL_LAYERS) -> dict[str, torch.Tensor]:
        x = ((x + 1.0) / 2.0 - self.mean) / self.std
        out = {"input": x} if "input" in layers else {}
        last = max(i for i, n in self.names.items() if n in layers) if any(n in layers for n in self.names.values()) else -1
        for i, layer in enumerate(self.features):
            if i > last:
                break
            x = layer(x)
            name = self.names.get(i)
            if name in layers:
                out[name] = x
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> "VGG19Features":
        """Load weights from a torchvision ``vgg19`` state dict (``.pth``); only tensors are read."""
        path = Path(path)
        if not path.is_file():
            raise InputError("VGG-19 weights file not found", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise InputError(f"cannot read VGG-19 weights ({exc.__class__.__name__})", path) from None
        if not isinstance(state, dict):
            raise InputError("VGG-19 weights must be a state dict", path)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        net = cls()
        try:
            net.features.load_state_dict(feats)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"not a torchvision vgg19 state dict ({first})", path) from None
        return net


class PerceptualLoss(nn.Module):
    """MSE between VGG-19 features of two images at :data:`PERCEPTUAL_LAYERS`.

    Each layer's MSE is divided by a running mean of itself (momentum 0.99,
    kept in a buffer) so every layer contributes on the same scale; the
    normalised terms are averaged.
    """

    name = "perceptual (VGG-19)"

    def __init__(self, vgg: VGG19Features, layers: Sequence[str] = PERCEPTUAL_LAYERS, momentum: float = 0.99):
        super().__init__()
        self.vgg = vgg.eval()
        self.layers = tuple(layers)
        self.momentum = momentum
        self.register_buffer("running", torch.zeros(len(self.layers)))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def train(self, mode: bool = True):  # the VGG trunk always stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.vgg(pred, self.layers)
        with torch.no_grad():
            ft = self.vgg(target, self.layers)
        losses = torch.stack([F.mse_loss(fp[n], ft[n]) for n in self.layers])
        if self.training:
            with torch.no_grad():
                cur = losses.detach()
                if not bool(self.initialised):
                    self.running.copy_(cur)
                    self.initialised.fill_(True)
                else:
                    self.running.mul_(self.momentum).add_((1 - self.momentum) * cur)
        return (losses / self.running.clamp_min(1e-8)).mean()


class FallbackReconstructionLoss(nn.Module):
    """Reconstruction loss used when no VGG-19 weights are given.

    L1 at full resolution plus, at each of ``scales`` halvings, L1 between
    local means and between image gradients (edges) — a cheap structural term
    that, like a perceptual loss, rewards getting shapes and their positions
    right rather than exact colours.
    """

    name = "fallback (multi-scale L1 + gradient L1)"

    def __init__(self, scales: int = 3):
        super().__init__()
        self.scales = scales

    @staticmethod
    def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(pred, target)
        p, t = pred, target
        for _ in range(self.scales):
            gpx, gpy = self._grad(p)
            gtx, gty = self._grad(t)
            loss = loss + F.l1_loss(gpx, gtx) + F.l1_loss(gpy, gty)
            p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
            loss = loss + F.l1_loss(p, t)
        return loss / (1 + 2 * self.scales)


def make_reconstruction_loss(vgg_weights: str | Path | None) -> nn.Module:
    """The perceptual loss when VGG-19 weights are given, else the documented fallback."""
    if vgg_weights:
        return PerceptualLoss(VGG19Features.from_file(vgg_weights))
    return FallbackReconstructionLoss()


def regressor_prior_loss(pred_points: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``MSE(η(β(q)), q)``: the regressor reads rendered prior poses back (``B×K×2`` in [-1, 1])."""
    return F.mse_loss(pred_points, points)


def regressor_self_loss(rerendered: torch.Tensor, skeleton_image: torch.Tensor) -> torch.Tensor:
    """``MSE(β(η(ŷ)), ŷ)``: the re-rendered regressed keypoints match Φ's skeleton image."""
    return F.mse_loss(rerendered, skeleton_image.detach())
