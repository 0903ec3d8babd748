"""The authors' released checkpoints (``tomasjakab/keypointgan``) as this library's networks.

The release saves each network as ``<iteration>_net_<name>.pth``, a plain ``state_dict`` (saved from
the bare module, so without the ``module.`` prefix of ``DataParallel``; one is accepted and removed):

==============  ======  ==========================================
release name    ours    release class
==============  ======  ==========================================
``G_A``         Φ       ``SkipNipsGenerator`` (4 blocks, batch norm)
``regressor``   η       ``NipsEncoder`` (instance norm, no affine)
``G_B``         Ψ       ``CondNipsGenerator`` (batch norm)
``D_A``         D       ``MultiDiscriminator`` of 3 ``NLayerDiscriminator``
==============  ======  ==========================================

The ``release`` preset builds the same layers in the same order (:data:`keypointgan.config.ARCHS`);
only the names differ, and :func:`release_key` translates them.  :func:`load_networks` returns the
networks with the project's call signatures; :func:`import_release` writes a keypointgan checkpoint
(the ``keypointgan import-release`` command).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig, TrainConfig, make_config
from .errors import InputError

__all__ = ["RELEASE_NAMES", "release_file", "release_key", "read_release_state", "is_release_file", "load_release_regressor",
           "load_networks", "import_release"]

RELEASE_NAMES = {"phi": "G_A", "eta": "regressor", "psi": "G_B", "disc": "D_A"}
"""Our network name → the release's (its files are ``<iteration>_net_<release name>.pth``)."""

_PER_LEVEL = 6  # layers of one encoder level in the release's flat sequences: (conv, norm, ReLU) × 2


def release_file(folder: str | Path, iteration: int | str, net: str) -> Path:
    """``FOLDER/<iteration>_net_<release name>.pth`` of our network ``net`` (``phi``, ``eta``, ``psi``, ``disc``)."""
    return Path(folder) / f"{iteration}_net_{RELEASE_NAMES[net]}.pth"


def release_key(net: str, key: str, levels: int = 4) -> str | None:
    """The name in our network ``net`` of the release's state-dict entry ``key`` (None: no counterpart).

    ``levels``: the number of resolution levels (4 in the release: widths 32, 64, 128, 256).
    """
    parts = key.split(".")
    if net == "disc":  # net_<scale>.model.<layer>… → scales.<scale>.net.<layer>…
        m = re.fullmatch(r"net_(\d+)\.model\.(.+)", key)
        return f"scales.{m[1]}.net.{m[2]}" if m else None
    if net == "phi":
        if parts[:2] == ["encoder", "blocks"]:
            return ".".join(["down"] + parts[2:])
        if parts[:2] == ["decoder", "blocks"] and len(parts) >= 5:
            block, layer, rest = int(parts[2]), int(parts[3]), parts[4:]
            if block == 0:  # two 3×3 convs at the lowest level (then the upsampling, no parameters)
                return ".".join(["mid", str(layer)] + rest)
            if block == levels - 1 and layer == 4:  # the last block's output conv
                return ".".join(["head"] + rest)
            return ".".join(["up", str(block - 1), str(layer)] + rest)
        return None
    if net == "eta":  # model.<layer>: levels × 6 layers, then the 1×1 conv to K maps
        if parts[0] != "model" or len(parts) < 3:
            return None
        layer, rest = int(parts[1]), parts[2:]
        if layer == levels * _PER_LEVEL:
            return ".".join(["head"] + rest)
        if layer < _PER_LEVEL:
            return ".".join(["stem", str(layer)] + rest)
        return ".".join(["stages", str(layer // _PER_LEVEL - 1), str(layer % _PER_LEVEL)] + rest)
    if net == "psi":
        if parts[0] in ("encoder", "encoder_cond") and parts[1] == "model" and len(parts) >= 4:
            ours = "skeleton_encoder" if parts[0] == "encoder" else "appearance_encoder"
            layer = int(parts[2])
            level, i = (levels - 1, _PER_LEVEL) if layer == levels * _PER_LEVEL else divmod(layer, _PER_LEVEL)
            return ".".join([ours, str(level), str(i)] + parts[3:])
        if parts[:2] == ["decoder", "model"] and len(parts) >= 4:
            # two convs mixing the joined features (6 layers), then per stage: upsampling + 6 layers
            # (3 in the last, followed by the output conv)
            layer, rest = int(parts[2]), parts[3:]
            if layer < _PER_LEVEL:
                return ".".join(["mix", str(layer)] + rest)
            stage, i = divmod(layer - _PER_LEVEL - 1, _PER_LEVEL + 1)
            if stage == levels - 2 and i == 3:
                return ".".join(["head"] + rest)
            return ".".join(["ups", str(stage), str(i)] + rest)
        return None
    raise ValueError(f"unknown network {net!r}; choose from {sorted(RELEASE_NAMES)}")


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise InputError("release network file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        raise InputError(f"not a readable network file ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})", path) from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("not a network state_dict (a mapping of names to tensors)", path)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def read_release_state(path: str | Path, net: str, module: nn.Module, levels: int = 4) -> dict:
    """The release's state dict in ``path`` renamed for our ``module`` (network ``net``), checked entry by entry.

    Instance norms' running statistics of checkpoints from before torch 0.4 (which the release's loader
    drops too) are dropped; batch norms' ``num_batches_tracked``, missing in such files, is taken from
    ``module``.  Raises :class:`InputError` naming ``path`` and the first key that has no counterpart,
    whose shape differs, or that the file lacks.
    """
    path = Path(path)
    raw = _read_state_dict(path)
    ours = module.state_dict()
    out = {}
    for key, value in raw.items():
        name = release_key(net, key, levels)
        if name not in ours:
            if key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
                owner = name.rsplit(".", 1)[0] if name else None
                mod = dict(module.named_modules()).get(owner) if owner else None
                if isinstance(mod, nn.InstanceNorm2d):
                    continue
            raise InputError(f"unexpected key {key} (no such layer in the release's {RELEASE_NAMES[net]})", path)
        if tuple(value.shape) != tuple(ours[name].shape):
            raise InputError(f"shape mismatch at {key}: {tuple(value.shape)} in the file, {tuple(ours[name].shape)} expected", path)
        out[name] = value
    for name, value in ours.items():
        if name not in out:
            if name.endswith("num_batches_tracked"):
                out[name] = value.clone()
                continue
            want = next((k for k in raw if release_key(net, k, levels) == name), None)
            raise InputError(f"missing key {want or name} (the release's {RELEASE_NAMES[net]} has it)", path)
    return out


def is_release_file(path: str | Path) -> bool:
    """Whether ``path`` holds a plain state dict, as the release's network files do (a keypointgan
    checkpoint holds a marked dict of configs and several networks)."""
    try:
        _read_state_dict(Path(path))
    except InputError:
        return False
    return True


def load_release_regressor(path: str | Path, num_keypoints: int, model: ModelConfig | None = None) -> nn.Module:
    """η loaded from the release's ``<iteration>_net_regressor.pth`` (eval mode), built as ``model``
    builds it (default: the ``release`` preset's; it must be the release's η, ``eta_arch`` release)."""
    from .nets import build_networks

    model = model or make_config("release").model
    if model.eta_arch != "release":
        raise InputError("the release's regressor needs the release's η (model.eta_arch release, e.g. --preset release)", path)
    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: the caller's random state is left as it was
        eta = build_networks(model, num_keypoints, with_gan=False)["eta"]
    eta.load_state_dict(read_release_state(path, "eta", eta, len(model.regressor_widths)))
    return eta.eval()


def load_networks(folder: str | Path, iteration: int | str, *, device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """The release's networks saved at ``iteration`` in ``folder`` as this library's modules (eval mode).

    Returns ``phi``, ``eta``, ``psi``, ``disc`` for the files present: ``phi(x)`` (``B×3×H×W`` in [-1, 1]
    → ``B×1×H×W`` skeleton image), ``eta(y)`` (→ ``B×K×2`` points ``(x, y)`` in [-1, 1]; K from the
    file), ``psi(skeleton, appearance)`` (→ ``B×3×H×W``), ``disc(y)`` (→ a list of 3 ``B×1×h×w`` maps).
    Raises :class:`InputError` when none is there or a file does not match the release's layout.
    """
    from .nets import build_networks

    present = {k: p for k in RELEASE_NAMES if (p := release_file(folder, iteration, k)).is_file()}
    if not present:
        raise InputError(f"no {iteration}_net_<G_A|G_B|D_A|regressor>.pth files", folder)
    k = 32
    if "eta" in present:  # the regressor's last conv has one output channel per keypoint
        head = _read_state_dict(present["eta"]).get(f"model.{4 * _PER_LEVEL}.weight")
        k = int(head.shape[0]) if head is not None and head.ndim == 4 else k
    model: ModelConfig = make_config("release").model
    with torch.random.fork_rng(devices=[]):
        nets = build_networks(model, k)
    out = {}
    for name, path in present.items():
        net = nets[name]
        net.load_state_dict(read_release_state(path, name, net, len(model.encoder_widths)))
        out[name] = net.to(device).eval()
    return out


def import_release(folder: str | Path, iteration: int | str, out: str | Path, *, skeleton=None, config: TrainConfig | None = None) -> dict:
    """Write a keypointgan checkpoint holding the release's networks saved at ``iteration`` in ``folder``.

    Needs ``G_A`` (Φ) and ``regressor`` (η); ``G_B`` and ``D_A`` are taken when present (else Ψ and D keep
    their initial weights).  ``skeleton``: a :class:`~keypointgan.skeleton.Skeleton`, a YAML file or a
    preset name (default ``human36m``, the 32-joint Simplified Human3.6M layout).  The checkpoint holds
    the ``release`` preset's config (or ``config``) and is usable by ``evaluate``, ``predict``, ``export``
    and :meth:`~keypointgan.detector.KeypointDetector.from_checkpoint`; η counts as pre-trained, so a
    run resumed from it skips η's pre-training.  Returns ``{"networks": [...], "num_keypoints": K}``.
    Nothing is written when a file is missing or does not match.
    """
    from .checkpoint import save_checkpoint
    from .io import check_writable
    from .training.state import TrainState

    skel = _skeleton(skeleton)
    for need in ("phi", "eta"):
        if not release_file(folder, iteration, need).is_file():
            raise InputError(f"the release's {RELEASE_NAMES[need]} is needed ({release_file(folder, iteration, need).name} not found)", folder)
    cfg = (config or make_config("release", device="cpu")).validate()
    check_writable(out)
    state = TrainState(cfg, skel, torch.device("cpu"))
    levels = len(cfg.model.encoder_widths)
    loaded = {}
    for name in RELEASE_NAMES:
        path = release_file(folder, iteration, name)
        if path.is_file():
            loaded[name] = read_release_state(path, name, state.nets[name], levels)
    for name, sd in loaded.items():
        if name != "eta":
            state.nets[name].load_state_dict(sd)
    state.set_pretrained_regressor(loaded["eta"], keep=False)  # the G run's fine-tuned η, not its offline regressor
    if state.average is not None:
        state.average.copy_from("phi", state.nets["phi"])
    save_checkpoint(state.state_dict(), out)
    return {"networks": sorted(loaded), "num_keypoints": skel.num_keypoints}


def _skeleton(skeleton):
    from .skeleton import Skeleton, preset

    if skeleton is None:
        skeleton = "human36m"
    if isinstance(skeleton, Skeleton):
        return skeleton
    if Path(str(skeleton)).suffix.lower() in (".yaml", ".yml", ".json"):
        return Skeleton.from_yaml(skeleton)
    return preset(str(skeleton))
