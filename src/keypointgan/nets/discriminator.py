"""D, the multi-scale PatchGAN discriminator on skeleton images."""

from __future__ import annotations

import torch
from torch import nn

from .common import conv_bias, norm_layer


class MinibatchStd(nn.Module):
    """Appends one channel: for each group of ``group`` consecutive images, the standard deviation of
    every feature across the group, averaged over features and positions (ProGAN's minibatch
    standard deviation; groups are consecutive so that a batch ``cat([real, fake])`` whose halves are
    multiples of the group keeps real and fake apart).  ``B×C×h×w`` → ``B×(C+1)×h×w``.  A batch
    that is not a multiple of ``group`` uses its largest divisor below ``group``."""

    def __init__(self, group: int):
        super().__init__()
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, b) + 1) if b % d == 0)
        y = x.float()
        # each image's features as one row (a view for channels-last and for contiguous tensors), groups of g rows
        y = (y.permute(0, 2, 3, 1) if y.is_contiguous(memory_format=torch.channels_last) else y).reshape(b // g, g, c * h * w)
        # the variance by hand: Tensor.var over the group axis, forward and backward, took 3–5× as long on CPU
        dev = y - y.mean(dim=1, keepdim=True)
        std = (dev.square().mean(dim=1) + 1e-8).sqrt().mean(dim=1)  # one value per group
        feat = std.repeat_interleave(g).to(x.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, feat], dim=1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4×4 convs (ndf, 2·ndf, … capped at 8·ndf), LeakyReLU 0.2;
    with ``batch_std`` a :class:`MinibatchStd` channel (groups of that many images) before the last conv.
    ``arch``: whether the convs before a norm have biases (:func:`~.common.conv_bias`: ``release``
    before instance norms, as the authors' ``NLayerDiscriminator``; ``ours`` none)."""

    def __init__(self, *, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, norm: str = "instance", batch_std: int = 0, arch: str = "ours"):
        super().__init__()
        bias = conv_bias(norm, arch)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        if batch_std:
            layers.append(MinibatchStd(batch_std))
        layers += [nn.Conv2d(ndf * mult + (1 if batch_std else 0), 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the input at scales 1, ½, ¼, …; returns a list of ``B×1×h×w`` maps.

    ``downsample``: ``avgpool`` makes each scale from the previous one by 3×3 average pooling with
    stride 2 (padding not counted); ``bilinear`` resizes the input itself to ``2**-i`` bilinearly
    (``align_corners=False``, no antialiasing), as the authors' release does.  ``batch_std``: the
    group size of each PatchGAN's :class:`MinibatchStd` channel (0: none).  ``arch``: the PatchGANs'
    (:class:`PatchDiscriminator`).
    """

    def __init__(self, *, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, num_scales: int = 3, norm: str = "instance",
                 downsample: str = "avgpool", batch_std: int = 0, arch: str = "ours"):
        super().__init__()
        if downsample not in ("avgpool", "bilinear"):
            raise ValueError(f"unknown downsample {downsample!r}; choose avgpool or bilinear")
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm, batch_std=batch_std, arch=arch)
            for _ in range(num_scales)
        )
        self.downsample = downsample
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        inp = x
        for i, d in enumerate(self.scales):
            if i and self.downsample == "avgpool":
                x = self.down(x)
            elif i:
                x = nn.functional.interpolate(inp, scale_factor=0.5**i, mode="bilinear", align_corners=False)
            outs.append(d(x))
        return outs
