"""The checkpoint: its file names, its format tag, writing it atomically, reading it without
executing code, and the networks it holds.

A checkpoint is one plain dict of tensors, numbers, strings, lists and dicts (the schema below),
saved with ``torch.save``.  Loading uses ``torch.load(weights_only=True)``, whose unpickler only
builds those types, so a file crafted to run code is refused rather than executed.

Schema (a training run's, :meth:`keypointgan.training.TrainState.state_dict`; keys every reader
needs in bold)::

    format      :data:`CHECKPOINT_FORMAT`
    version     the keypointgan version that wrote it
    kind        absent for a training run, "regressor" for :func:`keypointgan.api.pretrain_regressor`
    config      TrainConfig.to_dict()  (its "model" entry shapes the networks)
    skeleton    Skeleton.to_dict()
    nets        {"phi", "eta", "psi", "disc"} state dicts (a regressor checkpoint: {"eta"})
    ema         {"phi", "eta"} state dicts of the weight average (empty when the run keeps none)
    …           the rest of the training state (optimisers, counters, random states, image pool)

:func:`load_networks` is the one place that turns a checkpoint into networks: the detector, the
diagnostic, evaluation, export and the API all call it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CHECKPOINT_DIR", "run_checkpoint", "save_checkpoint", "load_checkpoint",
    "resolve_checkpoint", "regressor_checkpoint", "read_config", "load_networks", "LoadedNetworks",
]

CHECKPOINT_FORMAT = "keypointgan-checkpoint"
"""The ``format`` entry of every checkpoint: a torch file without it is not read."""
CHECKPOINT_NAME = "latest.pt"
"""A run's checkpoint file, in :data:`CHECKPOINT_DIR` of the run folder (overwritten atomically)."""
CHECKPOINT_DIR = "checkpoints"


def run_checkpoint(run: str | Path) -> Path:
    """The checkpoint file of the run folder ``run``: :data:`CHECKPOINT_NAME` in :data:`CHECKPOINT_DIR`."""
    return Path(run) / CHECKPOINT_DIR / CHECKPOINT_NAME


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Serialise ``state`` and write it to ``path`` atomically (temp file, fsync, rename)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder → its checkpoint (:func:`run_checkpoint`; the run's
    ``checkpoints`` folder itself names it too)."""
    path = Path(path)
    if path.is_dir():
        for cand in (run_checkpoint(path), path / CHECKPOINT_NAME):
            if cand.is_file():
                return cand
        raise InputError(f"no checkpoint in this folder (looked for {CHECKPOINT_DIR}/{CHECKPOINT_NAME})", path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (any device → ``map_location``).

    Never runs code from the file: ``torch.load(weights_only=True)`` refuses
    any pickled object other than tensors and plain containers.
    """
    path = resolve_checkpoint(path)
    if path.stat().st_size == 0:
        raise InputError("not a readable checkpoint: the file is empty", path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        text = str(exc).lower()
        if "unsupported global" in text or "unsupported class" in text:
            raise InputError("refusing to load: the file holds objects other than tensors and plain data "
                             "(loading it could run code)", path) from None
        if "central directory" in text or isinstance(exc, EOFError) or "unexpected eof" in text:
            raise InputError("not a readable checkpoint: the file is truncated or not written by torch.save", path) from None
        if "load key" in text or "unsupported operand" in text:
            raise InputError("not a readable checkpoint: not a file written by torch.save", path) from None
        raise InputError(f"not a readable checkpoint ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not a keypointgan checkpoint (a torch file without the keypointgan format marker)", path)
    return state


def regressor_checkpoint(eta: torch.nn.Module, config, skeleton, **summary) -> dict:
    """The checkpoint of a pre-trained η alone (``kind: regressor``): what :func:`load_networks` reads."""
    from ._version import __version__

    return {"format": CHECKPOINT_FORMAT, "kind": "regressor", "version": __version__, "config": config.to_dict(),
            "skeleton": skeleton.to_dict(), "nets": {"eta": eta.state_dict()}, **summary}


def read_config(state: dict, path: str | Path) -> tuple["TrainConfig", "Skeleton"]:
    """The run's config and skeleton from a loaded checkpoint ``state`` (read from ``path``).

    Raises:
        InputError: one line naming ``path``: a config this version cannot read (e.g. a field it does not
            have: a checkpoint of another version), or a config or skeleton that is missing or damaged.
    """
    from .config import TrainConfig
    from .skeleton import Skeleton

    try:
        return TrainConfig.from_dict(state["config"]), Skeleton.from_dict(state["skeleton"])
    except InputError as exc:
        raise InputError(f"cannot read this checkpoint's config (written by keypointgan {state.get('version', '?')}): {exc.problem}",
                         path) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the checkpoint's config or skeleton is missing or damaged ({exc.__class__.__name__}: {str(exc)[:120]})",
                         path) from None


@dataclass
class LoadedNetworks:
    """What :func:`load_networks` returns: the networks (eval mode, CPU), the run's config and
    skeleton, the checkpoint's path and the whole checkpoint dict (for what else a reader needs)."""

    nets: dict[str, torch.nn.Module]
    config: "TrainConfig"
    skeleton: "Skeleton"
    path: Path
    state: dict


def load_networks(checkpoint: str | Path, averaged: bool = True, *, names=("phi", "eta"), map_location="cpu") -> LoadedNetworks:
    """The networks ``names`` of a checkpoint (file or run folder), built from its config and loaded.

    Args:
        averaged: Φ and η from the weight average when the run kept one (what prediction uses),
            else the raw weights (what Ψ was trained with: the diagnostic uses them).
        names: any of ``phi``, ``eta``, ``psi``, ``disc``.

    Raises:
        InputError: one line naming the file: not a checkpoint, a checkpoint without these networks
            (e.g. a regressor-only one asked for Φ), a config this version cannot read (a checkpoint of
            another version), or weights that do not fit the networks or are not finite.
    """
    from .nets import build_networks

    state = load_checkpoint(checkpoint, map_location=map_location)
    path = resolve_checkpoint(checkpoint)
    have = state.get("nets") if isinstance(state.get("nets"), dict) else {}
    missing = [n for n in names if n not in have]
    if missing:
        if state.get("kind") == "regressor":
            raise InputError("a regressor-only checkpoint (from pretrain-regressor) cannot predict; give a training run's checkpoint", path)
        raise InputError(f"not a training checkpoint (no {', '.join(missing)} network)", path)
    cfg, skeleton = read_config(state, path)
    try:
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten: the caller's random state is left as it was
            built = build_networks(cfg.model, skeleton.num_keypoints, with_gan=bool({"psi", "disc"} & set(names)))
        weights = {**have, **((state.get("ema") or {}) if averaged else {})}
        nets = {}
        for n in names:
            built[n].load_state_dict(weights[n])
            nets[n] = built[n].eval()
    except (KeyError, RuntimeError, TypeError) as exc:
        raise InputError(f"checkpoint's weights do not fit its networks ({exc.__class__.__name__}: {str(exc)[:120]})", path) from None
    bad = [f"{n}.{k}" for n, net in nets.items() for k, t in net.state_dict().items()
           if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise InputError(f"the checkpoint's weights are not finite (NaN/Inf in {len(bad)} tensors, first {bad[0]}): "
                         "the run diverged before it was saved; it cannot be used", path)
    return LoadedNetworks(nets, cfg, skeleton, path, state)
