"""Writers of VGG-19 weight files for the tests (nothing is downloaded): a trunk as torchvision's
``vgg19`` state dict and as MatConvNet's ``imagenet-vgg-verydeep-19.mat``, each read back by
:meth:`keypointgan.losses.VGG19Features.from_file`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from keypointgan.io import atomic_path
from keypointgan.losses import _VGG19_CONV_NAMES, VGG19Features


def state_dict_torchvision(vgg: VGG19Features) -> dict[str, torch.Tensor]:
    """``vgg``'s trunk as a torchvision ``vgg19`` ``features.*`` state dict (ImageNet mean/std input).

    Exact when the network's ``mean`` is torchvision's (its ``std`` is folded into ``conv1_1``).
    """
    tv_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    if not torch.allclose(vgg.mean, tv_mean, atol=1e-6):
        raise ValueError("this network's input mean differs from torchvision's; the state dict would change its features")
    tv_std = torch.tensor([0.229, 0.224, 0.225])
    sd = {f"features.{k}": v.detach().clone() for k, v in vgg.features.state_dict().items()}
    sd["features.0.weight"] = sd["features.0.weight"] * (tv_std / vgg.std.view(3)).view(1, 3, 1, 1)
    return sd


def save_matconvnet(vgg: VGG19Features, path: str | Path) -> None:
    """Write ``vgg``'s trunk as a MatConvNet ``imagenet-vgg-verydeep-19.mat`` (conv layers, ReLUs, pools, meta).

    The input standard deviation is folded into ``conv1_1`` and the mean is
    written as ``meta.normalization.averageImage`` in 0…255, so
    :meth:`VGG19Features.from_matconvnet` gives the same features.
    """
    import scipy.io

    scale = (1.0 / 255.0) / vgg.std.view(3)  # MatConvNet input = (x01 - mean) * 255
    cells = []
    conv_i = 0
    pool_i = 1
    for m in vgg.features:
        if isinstance(m, nn.Conv2d):
            name = _VGG19_CONV_NAMES[conv_i]
            w = m.weight.detach()
            if conv_i == 0:
                w = w * scale.view(1, 3, 1, 1)
            filt = w.permute(2, 3, 1, 0).contiguous().numpy().astype(np.float32)  # out×in×H×W -> H×W×in×out
            weights = np.empty((1, 2), dtype=object)
            weights[0, 0] = filt
            weights[0, 1] = m.bias.detach().numpy().astype(np.float32).reshape(-1, 1)
            cells.append({
                "name": name, "type": "conv", "weights": weights, "size": np.array(filt.shape, dtype=float).reshape(1, 4),
                "pad": np.ones((1, 4)), "stride": np.ones((1, 2)), "dilate": np.ones((1, 2)), "precious": False, "opts": np.empty((1, 0), dtype=object),
            })
            conv_i += 1
        elif isinstance(m, nn.ReLU):
            cells.append({"name": "relu" + _VGG19_CONV_NAMES[conv_i - 1][4:], "type": "relu", "leak": 0.0, "precious": False})
        elif isinstance(m, nn.MaxPool2d):
            cells.append({"name": f"pool{pool_i}", "type": "pool", "method": "max", "pool": np.full((1, 2), 2.0),
                          "stride": np.full((1, 2), 2.0), "pad": np.zeros((1, 4)), "opts": np.empty((1, 0), dtype=object), "precious": False})
            pool_i += 1
    cells.append({"name": "pool5", "type": "pool", "method": "max", "pool": np.full((1, 2), 2.0),
                  "stride": np.full((1, 2), 2.0), "pad": np.zeros((1, 4)), "opts": np.empty((1, 0), dtype=object), "precious": False})
    layers = np.empty((1, len(cells)), dtype=object)
    for i, c in enumerate(cells):
        layers[0, i] = c
    avg = (vgg.mean.view(3) * 255.0).numpy().astype(np.float32).reshape(1, 1, 3)
    meta = {
        "inputs": {"name": "data", "size": np.array([[224, 224, 3, 10]], dtype=float)},
        "classes": {"name": np.array([["n%08d" % i for i in range(1000)]], dtype=object),
                    "description": np.array([["class %d" % i for i in range(1000)]], dtype=object)},
        "normalization": {"imageSize": np.array([[224, 224, 3]], dtype=float), "averageImage": avg, "keepAspect": True,
                          "border": np.array([[32, 32]], dtype=float), "cropSize": 0.875, "interpolation": "bilinear"},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            scipy.io.savemat(f, {"layers": layers, "meta": meta})
