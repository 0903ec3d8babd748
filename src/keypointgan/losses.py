"""Losses: multi-scale LSGAN, perceptual (VGG-19) or fallback reconstruction, regressor losses."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
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

    ``relu=False`` puts an identity where each ReLU is (same layer indices, so the same weight files
    load): the convolutions are chained without ReLU, as in the authors' release, and a named
    layer's activation is the convolution's output.
    """

    def __init__(self, relu: bool = True):
        super().__init__()
        self.relu = relu
        layers: list[nn.Module] = []
        cin = 3
        self.names: dict[int, str] = {}
        conv_i = 0
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(cin, v, 3, padding=1))
                layers.append(nn.ReLU(inplace=False) if relu else nn.Identity())
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
    def from_file(cls, path: str | Path, *, relu: bool = True) -> "VGG19Features":
        """Load weights from a torchvision ``vgg19`` state dict (``.pth``) or MatConvNet's ``.mat``.

        A ``.mat`` file (``imagenet-vgg-verydeep-19.mat``) is read by :meth:`from_matconvnet`;
        any other file as a torchvision state dict: only tensors are read, ``features.*`` used.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError("VGG-19 weights file not found", path)
        if path.suffix.lower() == ".mat":
            net = cls.from_matconvnet(path)
            if not relu:
                net.set_relu(False)
            return net
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise InputError(f"cannot read VGG-19 weights ({exc.__class__.__name__})", path) from None
        if not isinstance(state, dict):
            raise InputError("VGG-19 weights must be a state dict", path)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        net = cls(relu=relu)
        try:
            net.features.load_state_dict(feats)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"not a torchvision vgg19 state dict ({first})", path) from None
        return net

    def set_relu(self, relu: bool) -> "VGG19Features":
        """Put ReLUs (``True``) or identities (``False``, the release's chain) after the convolutions."""
        for i, m in enumerate(self.features):
            if isinstance(m, (nn.ReLU, nn.Identity)):
                self.features[i] = nn.ReLU(inplace=False) if relu else nn.Identity()
        self.relu = relu
        return self

    @classmethod
    def from_matconvnet(cls, path: str | Path) -> "VGG19Features":
        """Load MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (the file the authors used).

        The file holds a ``layers`` cell array of structs (``name``, ``type``,
        ``weights`` = {filters H×W×in×out, biases}) and the mean pixel in
        ``meta.normalization.averageImage`` (older releases: ``normalization``
        at the top level, as a 224×224×3 mean image whose channel means are used).
        MatConvNet feeds RGB in 0…255 minus the mean pixel, with no division by a
        standard deviation; this network's ``mean``/``std`` are set to reproduce
        exactly that, so its features equal MatConvNet's.
        """
        from .data.matfile import load_mat, mat_field, mat_string, mat_struct

        path = Path(path)
        mat = load_mat(path, what="MatConvNet VGG-19 file")
        layers = np.asarray(mat_field(mat, "layers", path), dtype=object).reshape(-1)
        convs = []
        for i, el in enumerate(layers):
            rec = mat_struct(el)
            if rec is None or "name" not in rec.dtype.names:
                raise InputError(f"layers{{{i + 1}}} is not a struct with a 'name' field", path)
            name = mat_string(rec["name"], f"layers{{{i + 1}}}.name", path)
            if name in _VGG19_CONV_NAMES:
                if "weights" not in rec.dtype.names:
                    raise InputError(f"layer {name} has no 'weights' field", path)
                w = np.asarray(rec["weights"], dtype=object).reshape(-1)
                if w.size != 2:
                    raise InputError(f"layer {name}: 'weights' must be {{filters, biases}}, got {w.size} entries", path)
                convs.append((name, np.asarray(w[0], dtype=np.float32), np.asarray(w[1], dtype=np.float32).reshape(-1)))
        found = [n for n, _, _ in convs]
        if found != list(_VGG19_CONV_NAMES):
            missing = [n for n in _VGG19_CONV_NAMES if n not in found]
            raise InputError(f"not a VGG-19 file: conv layers {', '.join(missing) or 'out of order'} missing", path)
        net = cls()
        conv_modules = [m for m in net.features if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for (name, f, b), conv in zip(convs, conv_modules):
                want = (3, 3, conv.in_channels, conv.out_channels)
                if f.shape != want or b.shape != (conv.out_channels,):
                    raise InputError(
                        f"layer {name}: filters must be H×W×in×out = {'×'.join(map(str, want))} and biases {conv.out_channels}, "
                        f"got {'×'.join(map(str, f.shape))} and {b.size}",
                        path,
                    )
                conv.weight.copy_(torch.from_numpy(f).permute(3, 2, 0, 1))  # H×W×in×out -> out×in×H×W
                conv.bias.copy_(torch.from_numpy(b))
            avg = _mat_average_pixel(mat, path)
            net.mean.copy_(torch.tensor(avg / 255.0, dtype=torch.float32).view(1, 3, 1, 1))
            net.std.fill_(1.0 / 255.0)
        return net


def _mat_average_pixel(mat: dict, path: Path) -> np.ndarray:
    """The RGB mean pixel (0…255) from ``meta.normalization.averageImage`` (or the older top-level ``normalization``)."""
    from .data.matfile import mat_struct

    norm = None
    if "meta" in mat:
        meta = mat_struct(mat["meta"])
        if meta is not None and "normalization" in meta.dtype.names:
            norm = mat_struct(meta["normalization"])
    elif "normalization" in mat:
        norm = mat_struct(mat["normalization"])
    if norm is None or "averageImage" not in norm.dtype.names:
        raise InputError("no meta.normalization.averageImage (the mean pixel MatConvNet subtracts)", path)
    avg = np.asarray(norm["averageImage"], dtype=np.float64)
    if avg.size == 3:
        return avg.reshape(3)
    if avg.ndim == 3 and avg.shape[-1] == 3:
        return avg.reshape(-1, 3).mean(axis=0)
    raise InputError(f"averageImage must be 3 values or an H×W×3 image, got shape {avg.shape}", path)


class PerceptualLoss(nn.Module):
    """MSE between VGG-19 features of two images at :data:`PERCEPTUAL_LAYERS`.

    Each layer's MSE is divided by a running mean of itself (momentum 0.99,
    kept in a buffer) so every layer contributes on the same scale; the
    normalised terms are averaged.  ``reduce_batch_losses`` (set by multi-process training: the mean
    over ranks) turns this process's per-layer MSEs into the whole batch's before they update the
    running means, so every rank holds the same ones.
    """

    name = "perceptual (VGG-19)"

    def __init__(self, vgg: VGG19Features, layers: Sequence[str] = PERCEPTUAL_LAYERS, momentum: float = 0.99):
        super().__init__()
        self.vgg = vgg.eval()
        self.layers = tuple(layers)
        self.momentum = momentum
        self.register_buffer("running", torch.zeros(len(self.layers)))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.reduce_batch_losses = None

    def train(self, mode: bool = True):  # the VGG trunk always stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.vgg(pred, self.layers)
        with torch.no_grad():
            ft = self.vgg(target, self.layers)
        losses = torch.stack([F.mse_loss(fp[n].float(), ft[n].float()) for n in self.layers])  # float32 under autocast
        if self.training:
            with torch.no_grad():
                cur = losses.detach().clone()
                if self.reduce_batch_losses is not None:
                    cur = self.reduce_batch_losses(cur)
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
        """``B×3×H×W`` images in [-1, 1] → the mean of the ``1 + 2·scales`` L1 terms."""
        loss = F.l1_loss(pred, target)
        p, t = pred, target
        for _ in range(self.scales):
            gpx, gpy = self._grad(p)
            gtx, gty = self._grad(t)
            loss = loss + F.l1_loss(gpx, gtx) + F.l1_loss(gpy, gty)
            p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
            loss = loss + F.l1_loss(p, t)
        return loss / (1 + 2 * self.scales)


def make_reconstruction_loss(vgg_weights: str | Path | None, *, vgg_relu: bool = True) -> nn.Module:
    """The perceptual loss when VGG-19 weights are given (``vgg_relu=False``: its VGG-19 without ReLU,
    as in the authors' release), else the documented fallback."""
    if vgg_weights:
        return PerceptualLoss(VGG19Features.from_file(vgg_weights, relu=vgg_relu))
    return FallbackReconstructionLoss()


def regressor_prior_loss(pred_points: torch.Tensor, points: torch.Tensor, swaps: torch.Tensor | None = None,
                         valid: torch.Tensor | None = None) -> torch.Tensor:
    """``MSE(η(β(q)), q)``: the regressor reads rendered prior poses back (``B×K×2`` in [-1, 1]).

    ``swaps`` (``R×K`` index permutations, e.g. :attr:`keypointgan.skeleton.Skeleton.side_swaps`): per pose
    the smallest MSE over the relabelled targets ``q[:, perm]``, then the mean over the batch.  A render
    does not show which side is left, so where the prior holds both (figures facing either way) the plain
    MSE is smallest at the average of the two sides, which folds every limb onto the trunk; up to the
    swaps η may read each side by where it is drawn.

    ``valid`` (``B×K×1``, 1 or 0; ``points`` finite everywhere): only the keypoints marked 1 count (each
    relabelling takes its targets' marks), the mean still over all ``B×K×2`` values — the supervised
    bound's loss on annotations with missing keypoints."""
    if swaps is None or len(swaps) < 2:
        return F.mse_loss(pred_points, points) if valid is None else F.mse_loss(pred_points * valid, points * valid)
    sq = (pred_points.unsqueeze(1) - points[:, swaps]) ** 2  # B×R×K×2
    if valid is not None:
        sq = sq * valid[:, swaps].to(sq.dtype)
    return sq.mean(dim=(2, 3)).min(dim=1).values.mean()


def regressor_self_loss(rerendered: torch.Tensor, skeleton_image: torch.Tensor) -> torch.Tensor:
    """``MSE(β(η(ŷ)), ŷ)``: the re-rendered regressed keypoints match Φ's skeleton image."""
    return F.mse_loss(rerendered, skeleton_image.detach())
