"""The authors' four networks as described in docs/design.md (networks table), written independently of
``keypointgan.nets`` so that the tests can check that library against them.

Module names follow the release's, so these modules' ``state_dict`` keys are the keys of the
release's ``<iteration>_net_<name>.pth`` files:

* Φ (``G_A``): ``encoder.blocks.<level>.<layer>`` and ``decoder.blocks.<stage>.<layer>``;
* η (``regressor``): ``model.<layer>``;
* Ψ (``G_B``): ``encoder.model.<layer>``, ``encoder_cond.model.<layer>``, ``decoder.model.<layer>``;
* D (``D_A``): ``net_<scale>.model.<layer>``.

Layer indices count every module of a flat sequence (conv, norm, ReLU, upsampling), as in the
release.  Convs before instance norms have biases, those before batch norms none.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Up(nn.Module):
    """×2 bilinear upsampling as a layer (it holds an index in the release's sequences)."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def cbr(cin, cout, k=3, stride=1, instance=False):
    """conv + norm + ReLU as three layers."""
    norm = nn.InstanceNorm2d(cout, affine=False) if instance else nn.BatchNorm2d(cout)
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=instance), norm, nn.ReLU()]


def encoder_levels(cin, instance=False, widths=(32, 64, 128, 256)):
    """Per level: 7×7 + 3×3 at full size, then (stride-2 3×3 + 3×3) per further level."""
    levels = [cbr(cin, widths[0], 7, instance=instance) + cbr(widths[0], widths[0], instance=instance)]
    for a, b in zip(widths[:-1], widths[1:]):
        levels.append(cbr(a, b, stride=2, instance=instance) + cbr(b, b, instance=instance))
    return levels


class Seq(nn.Module):
    """A flat sequence under the attribute ``model``."""

    def __init__(self, layers):
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class ReleaseRegressor(Seq):
    """η: ``B×1×H×W`` → ``B×K×H/8×W/8`` maps (instance norm without affine, biases)."""

    def __init__(self, k):
        layers = [layer for level in encoder_levels(1, instance=True) for layer in level]
        super().__init__(layers + [nn.Conv2d(256, k, 1, bias=True)])


class _SkipEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        levels = encoder_levels(3)
        levels[-1].append(nn.Conv2d(256, 256, 1, bias=False))
        self.blocks = nn.ModuleList(nn.Sequential(*lv) for lv in levels)


class _SkipDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        blocks = [cbr(256, 256) + cbr(256, 256) + [Up()]]
        for cin, skip, cout in ((256, 128, 128), (128, 64, 64)):
            blocks.append([nn.Conv2d(cin + skip, cin, 1, bias=False)] + cbr(cin, cout) + cbr(cout, cout) + [Up()])
        blocks.append([nn.Conv2d(64 + 32, 64, 1, bias=False)] + cbr(64, 32) + [nn.Conv2d(32, 1, 3, padding=1, bias=True)])
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks)


class ReleasePoseEncoder(nn.Module):
    """Φ: ``B×3×H×W`` → ``B×1×H×W`` (batch norm; skips joined after upsampling)."""

    def __init__(self):
        super().__init__()
        self.encoder = _SkipEncoder()
        self.decoder = _SkipDecoder()

    def forward(self, x):
        feats = []
        for block in self.encoder.blocks:
            x = block(x)
            feats.append(x)
        y = self.decoder.blocks[0](feats[-1])
        for block, skip in zip(self.decoder.blocks[1:], feats[-2::-1]):
            y = block(torch.cat([y, skip], 1))
        return y


class ReleaseDecoder(nn.Module):
    """Ψ: ``(B×1×H×W skeleton, B×3×H×W appearance)`` → ``B×3×H×W`` (batch norm, no output activation)."""

    def __init__(self):
        super().__init__()
        self.encoder = Seq([layer for lv in encoder_levels(1) for layer in lv] + [nn.Conv2d(256, 256, 1, bias=False)])
        self.encoder_cond = Seq([layer for lv in encoder_levels(3) for layer in lv] + [nn.Conv2d(256, 256, 1, bias=False)])
        layers = cbr(512, 256) + cbr(256, 256)
        for cin, cout in ((256, 128), (128, 64)):
            layers += [Up()] + cbr(cin, cout) + cbr(cout, cout)
        layers += [Up()] + cbr(64, 32) + [nn.Conv2d(32, 3, 3, padding=1, bias=True)]
        self.decoder = Seq(layers)

    def forward(self, skeleton, appearance):
        return self.decoder(torch.cat([self.encoder(skeleton), self.encoder_cond(appearance)], 1))


class ReleaseDiscriminator(nn.Module):
    """D: three PatchGANs (ndf 64, instance norm without affine, biases) on the input resized bilinearly to 1, ½, ¼."""

    def __init__(self, ndf=64):
        super().__init__()
        for i in range(3):
            layers = [nn.Conv2d(1, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            for a, b, s in ((1, 2, 2), (2, 4, 2), (4, 8, 1)):
                layers += [nn.Conv2d(ndf * a, ndf * b, 4, stride=s, padding=1, bias=True), nn.InstanceNorm2d(ndf * b), nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(ndf * 8, 1, 4, stride=1, padding=1))
            self.add_module(f"net_{i}", Seq(layers))

    def forward(self, y):
        return [getattr(self, f"net_{i}")(F.interpolate(y, scale_factor=0.5**i, mode="bilinear", align_corners=False)) for i in range(3)]


def soft_argmax(maps):
    """``B×K×h×w`` → ``B×K×2`` ``(x, y)`` in [-1, 1]: softmax of each axis's marginal mean, expectation over linspace(-1, 1)."""
    out = []
    for mean_dim, n in ((2, maps.shape[3]), (3, maps.shape[2])):
        p = torch.softmax(maps.mean(mean_dim), dim=-1)
        out.append((p * torch.linspace(-1, 1, n)).sum(-1))
    return torch.stack(out, -1)


def randomise(net, seed):
    """Every parameter and batch-norm statistic drawn at random (outputs then depend on every one of them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("weight") and t.ndim == 1:  # norm scales
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if t.ndim > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5 * (1 if t.ndim > 1 else 0.1))
    return net
