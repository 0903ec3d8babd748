"""Typed run configuration: one :class:`TrainConfig` per run, saved in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = ["ModelConfig", "TrainConfig", "PRESETS", "RUNTIME_FIELDS", "make_config", "load_config", "with_overrides", "resume_config"]

NORMS = ("batch", "instance", "group", "none", "instance-noaffine")
"""The normalisations a config may name (:func:`keypointgan.nets.common.norm_layer` builds them);
``instance-noaffine`` is instance norm without learnt scale and shift (the authors' release)."""

DISC_DOWNSAMPLE = ("avgpool", "bilinear")
"""How D's coarser scales are made (:class:`keypointgan.nets.discriminator.MultiScaleDiscriminator`)."""

DECODER_STYLES = ("upsample-tanh", "release")
"""Ψ's layout after the joined encoders (:class:`keypointgan.nets.decoder.ConditionalDecoder`)."""

ARCHS = ("ours", "release")
"""Layouts of Φ, η, Ψ and D (``ModelConfig.phi_arch`` …): ``ours`` (this library's, docs/design.md) or
``release`` (the authors' release layer for layer: :mod:`keypointgan.release` loads its weights)."""

PAIR_SAMPLING = ("frames", "release")
"""How training frame pairs are drawn (``TrainConfig.pair_sampling``, :class:`keypointgan.data.loader.PairLoader`)."""

PRIOR_SAMPLING = ("poses", "release")
"""How prior poses are drawn (``TrainConfig.prior_sampling``, :func:`keypointgan.training.pretrain.sample_prior`)."""

SIDE_SWAPS = ("off", "on", "auto")
"""What ``TrainConfig.regressor_side_swaps`` may be (:func:`keypointgan.training.pretrain.side_swaps`)."""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The arithmetic a run's networks may use (:func:`keypointgan.training.precision.resolve_precision`)."""

RUNTIME_FIELDS = ("steps", "max_minutes", "device", "num_threads", "data_workers", "tensorboard", "max_nonfinite_steps",
                  "precision", "compile", "dist_timeout_minutes", "log_every", "sample_every", "eval_every", "ckpt_every", "eval_frames")
"""Fields that may change when a run is resumed: the budget, how the run executes and how often it logs,
evaluates and saves, never what it computes (``train --help`` and docs/robustness.md list these)."""

MAX_SIZE = 1024
"""The largest training resolution a config may name (the paper trains at 128 px)."""
MAX_WIDTH = 4096
"""The most channels a network layer may have (the paper's widest has 256)."""
MAX_SEED = 2**32 - 1
"""The largest seed (the seed is mixed with the rank and the step before it seeds torch's 64-bit generators)."""
MAX_COUNT = 1 << 20
"""The most of a per-step quantity (a batch, a pool of images, threads, workers) a config may ask for."""


@dataclass
class ModelConfig:
    """Network shapes."""

    size: int = 64
    """Training resolution (square images of ``size`` pixels); divisible by 8."""
    encoder_widths: tuple[int, ...] = (32, 64, 128, 256)
    """Φ channels per U-Net level."""
    regressor_widths: tuple[int, ...] = (32, 64, 128, 256)
    """η channels: the 7×7 stem, then one stride-2 stage per further entry."""
    decoder_widths: tuple[int, ...] = (32, 64, 128, 256)
    """Ψ channels per level of both of its encoders and of its upsampling path."""
    disc_ndf: int = 64
    """Channels of the first discriminator layer."""
    disc_layers: int = 3
    """Stride-2 layers per PatchGAN."""
    disc_scales: int = 3
    """Number of PatchGANs (scales 1, ½, ¼, …)."""
    norm: str = "batch"
    """Normalisation in Φ, η, Ψ: batch, instance, group or none."""
    sigma: float = 0.2
    """Renderer width σ in [-1, 1] units (limb value ``exp(-d/σ²)``)."""
    regressor_norm: str | None = None
    """Normalisation in η alone (None: ``norm``); the authors' release uses instance-noaffine there."""
    disc_norm: str = "instance"
    """Normalisation in D: instance (with learnt scale and shift) or instance-noaffine (the release), or any of ``norm``'s."""
    disc_downsample: str = "avgpool"
    """D's coarser scales: avgpool (3×3 average pooling, stride 2, of the previous scale) or bilinear
    (the release: the input resized bilinearly to ½, ¼, … without antialiasing)."""
    disc_batch_std: int = 0
    """Groups of this many images get a minibatch standard-deviation channel before D's last conv
    (Karras et al. 2018): how much D's features vary across the group, so that D can tell a batch of
    near-identical skeletons (Φ collapsing towards one pose) from the prior's variety.  0: off (the
    paper's and the release's D).  Not in the paper (docs/design.md)."""
    decoder_style: str = "upsample-tanh"
    """Ψ after the joined encoders: upsample-tanh (×2 bilinear then two 3×3 convs per stage, tanh output
    in [-1, 1]) or release (two 3×3 convs mixing the joined features at the lowest resolution, then per
    stage ×2 bilinear and two 3×3 convs, one in the last; no output activation)."""
    phi_arch: str = "ours"
    """Φ's layout: ours (per level two 3×3 convs down, skip joined by concatenation into two 3×3 convs up,
    1×1 output conv) or release (the authors' SkipNipsGenerator: a 7×7 start, a linear 1×1 bottleneck, two
    3×3 convs at the lowest level before upsampling, each skip joined by a 1×1 conv, a 3×3 output conv)."""
    eta_arch: str = "ours"
    """η's layout: ours (a 7×7 stem, then two 3×3 convs per stride-2 stage) or release (a 3×3 conv after the
    7×7 one at full resolution, and biases before instance norms: the release's NipsEncoder)."""
    psi_arch: str = "ours"
    """Ψ's two encoders: ours (two 3×3 convs per level) or release (the release's NipsEncoder: a 7×7 start
    and a linear 1×1 end); release needs ``decoder_style`` release (the rest of the release's Ψ)."""
    disc_arch: str = "ours"
    """D's PatchGANs: ours (no bias before a norm) or release (biases before instance norms)."""

    def validate(self) -> None:
        _check_finite(self, "model.")
        if self.size < 16 or self.size % 8 or self.size > MAX_SIZE:
            raise InputError(f"model size must be a multiple of 8 from 16 to {MAX_SIZE}, got {self.size}")
        for name in ("encoder_widths", "regressor_widths", "decoder_widths"):
            w = getattr(self, name)
            if len(w) < 2 or any(int(c) <= 0 for c in w):
                raise InputError(f"{name} needs at least two positive widths, got {w}")
            if max(w) > MAX_WIDTH:
                raise InputError(f"{name} holds a width above {MAX_WIDTH}, got {w}")
        if self.size % (2 ** (len(self.encoder_widths) - 1)) or self.size % (2 ** (len(self.decoder_widths) - 1)):
            raise InputError(f"size {self.size} must be divisible by 2**(levels-1) of the encoder and decoder")
        if self.disc_scales < 1 or self.disc_layers < 1 or self.disc_ndf < 1:
            raise InputError(f"disc_scales, disc_layers and disc_ndf must be at least 1, got {self.disc_scales}, {self.disc_layers}, {self.disc_ndf}")
        if self.disc_ndf > MAX_WIDTH:
            raise InputError(f"disc_ndf must be at most {MAX_WIDTH}, got {self.disc_ndf}")
        # (shifts, not powers: a huge count costs nothing and leaves 0 px)
        smallest = self.size >> min(self.disc_scales - 1 + self.disc_layers, self.size.bit_length())
        if smallest < 3:
            raise InputError(
                f"discriminator too deep for {self.size} px: {self.disc_scales} scales × {self.disc_layers} layers leave {smallest} px"
            )
        if self.size // 2 ** (len(self.regressor_widths) - 1) < 2:
            raise InputError(f"regressor too deep for {self.size} px: its heatmaps would be smaller than 2×2")
        for name in ("norm", "regressor_norm", "disc_norm"):
            if getattr(self, name) not in NORMS and not (name == "regressor_norm" and self.regressor_norm is None):
                raise InputError(f"{name} must be one of {NORMS}, got {getattr(self, name)!r}")
        if not 0 <= self.disc_batch_std <= MAX_COUNT:
            raise InputError(f"disc_batch_std must be 0 (off) or a group size, got {self.disc_batch_std}")
        if self.disc_downsample not in DISC_DOWNSAMPLE:
            raise InputError(f"disc_downsample must be one of {DISC_DOWNSAMPLE}, got {self.disc_downsample!r}")
        if self.decoder_style not in DECODER_STYLES:
            raise InputError(f"decoder_style must be one of {DECODER_STYLES}, got {self.decoder_style!r}")
        for name in ("phi_arch", "eta_arch", "psi_arch", "disc_arch"):
            if getattr(self, name) not in ARCHS:
                raise InputError(f"{name} must be one of {ARCHS}, got {getattr(self, name)!r}")
        if self.psi_arch == "release" and self.decoder_style != "release":
            raise InputError("psi_arch release needs decoder_style release (the release's Ψ is both)")
        if not self.sigma > 0:
            raise InputError(f"sigma must be positive, got {self.sigma}")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shapes (:class:`ModelConfig`)."""
    preset: str = "custom"
    """Name of the preset this config started from."""
    batch_size: int = 16
    """Frame pairs per step (per process in a multi-process run)."""
    lr: float = 2e-4
    """Adam learning rate of Φ and Ψ."""
    lr_disc: float = 2e-4
    """Adam learning rate of D."""
    lr_regressor: float = 2e-4
    """Adam learning rate of η while it is fine-tuned during training."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's (β1, β2) for Φ, Ψ, D and η during training."""
    lr_decay_fraction: float = 0.0
    """Decay every learning rate linearly to 0 over this last fraction of the budget
    (steps or minutes, whichever runs out first); 0 keeps them constant."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of Φ and η with this decay per step and use it for
    evaluation, checkpoints' detector and prediction (0 and ``swa_fraction`` 0: off, the raw weights
    are used; 0 with ``swa_fraction`` > 0: the average follows the raw weights until its plain-mean phase)."""
    swa_fraction: float = 0.0
    """Over this last fraction of the budget (steps or minutes, like ``lr_decay_fraction``) the average
    becomes a plain mean of the weights after every step, starting from the exponential average so far,
    which counts as one of them (stochastic weight averaging: it irons out the late wander of the GAN
    game). 0: the exponential average throughout."""
    ema_norm_batches: int = 20
    """Before the moving average is used or saved, recompute its batch-norm statistics as plain means
    over this many batches of training frames (unlabelled; 0: keep the raw networks' running
    statistics, which belong to other weights and to the last ~10 batches only)."""
    grad_clip: float = 1.0
    """Gradient-norm clip for every network (0 disables)."""
    w_gan: float = 10.0
    """Weight of the adversarial term in the G loss."""
    w_rec: float = 10.0
    """Weight of the reconstruction term in the G loss."""
    w_reg_prior: float = 0.9
    """η fine-tune: weight of ``MSE(η(β(q)), q)``."""
    w_reg_self: float = 0.1
    """η fine-tune: weight of ``MSE(β(η(ŷ)), ŷ)``."""
    pool_size: int = 50
    """Image pool of past fakes shown to D (0 disables)."""
    gap: tuple[int, int] = (1, 20)
    """Frame gap range between the target and the appearance frame."""
    pair_sampling: str = "frames"
    """How training pairs are drawn: frames (every frame the target once per epoch, the appearance frame
    ``gap`` frames before or after it, at least 1) or release (the authors' release: a video uniformly,
    a target frame uniformly in it, the appearance frame the same or a later one, ``gap`` from 0)."""
    prior_sampling: str = "poses"
    """How prior poses are drawn (for D and η): poses (every pose equally likely) or release (the authors'
    release: a prior sequence uniformly, then a pose in it; a prior without sequences, e.g. a prior file,
    is one sequence)."""
    flip_augment: bool = False
    """Mirror half of each batch left-right: the frame pairs (target and appearance frame together) and,
    drawn apart, the prior poses (mirrored with left/right keypoints swapped, in η's pre-training too),
    so that D compares mirror-symmetric distributions. Label-free (Φ's skeleton image has no left or
    right); it doubles the appearances seen and asks Φ to be mirror-equivariant, which the flip test
    assumes. For categories without mirror symmetry (or with a prior that is not), leave it off."""
    prior_jitter: float = 0.0
    """Jitter the prior poses D sees in the GAN game by a random similarity transform about each pose's
    centre: rotation ±``100·j``°, scale ``1 ± j``, shift ±``j`` in [-1, 1] units (0: the poses as they are,
    as in the paper). Label-free: it spreads a small prior into a continuous distribution, so that D
    cannot ask Φ for the exact poses of a few hundred examples."""
    regressor_side_swaps: str = "off"
    """η's prior term (and pre-training) up to left/right: per pose the smaller error against the pose and
    against it with its sides swapped (:attr:`keypointgan.skeleton.Skeleton.side_swaps`; both have the same
    render). A render does not show which side is left; where the prior's figures face either way the plain
    error is smallest at the two sides' average, and η folds the limbs onto the trunk. on: always; off: the
    paper's plain error; auto: on when at least a tenth of the prior's figures face the other way
    (:func:`keypointgan.training.pretrain.side_swaps`), so that a prior whose sides show by where they are
    keeps its labels. With it on, η labels sides by where they are drawn, which the evaluation's flip
    correction (``error_flip``) scores."""
    pretrain_steps: int = 1500
    """Regressor pre-training steps on the prior when no pre-trained η is given (0 skips)."""
    pretrain_lr: float = 1e-3
    """Adam learning rate of η's pre-training (cosine decay to 0 over ``pretrain_steps``)."""
    pretrain_batch: int = 32
    """Prior poses per pre-training step."""
    pretrain_rotate: float = 15.0
    """Pre-training pose augmentation: rotation range in degrees (±)."""
    pretrain_scale: tuple[float, float] = (0.85, 1.15)
    """Pre-training pose augmentation: scale range (about each pose's centre)."""
    pretrain_translate: float = 0.15
    """Pre-training pose augmentation: translation range in [-1, 1] units (±)."""
    bottleneck: bool = True
    """Ψ sees ``β(η(Φ(x)))`` (True, the method) or ``Φ(x)`` itself (ablation)."""
    discriminator: bool = True
    """Train with the adversarial term (False: ablation)."""
    flip_test: bool = False
    """Inference (evaluation, the detector, predict): also predict each image mirrored, mirror those points
    back with left/right keypoints swapped, and average the two (the usual flip test of pose estimators;
    twice the inference cost). Off in the paper's presets, whose numbers are single-pass."""
    steps: int | None = None
    """Stop after this many training steps (None: only the time budget)."""
    max_minutes: float | None = None
    """Stop after this many minutes of training (None: only the step budget)."""
    log_every: int = 25
    """Steps between records in RUN/log.jsonl."""
    sample_every: int = 250
    """Steps between sample grids in RUN/samples/."""
    eval_every: int = 500
    """Steps between evaluations (with evaluation data)."""
    ckpt_every: int = 500
    """Steps between checkpoints (one is also written after η's pre-training and at the end)."""
    eval_frames: int = 500
    """At most this many frames in periodic evaluation."""
    seed: int = 0
    """Seed of the initial weights and of every random draw (data order, pairs, prior poses, pool)."""
    device: str = "auto"
    """auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps."""
    vgg_weights: str | None = None
    """VGG-19 weights for the perceptual loss (None: the fallback reconstruction loss)."""
    vgg_relu: bool = True
    """The perceptual loss's VGG-19 with ReLU after every convolution (the standard network); False
    chains the convolutions without ReLU, as the authors' release does."""
    channels_last: bool = True
    """Run the networks in channels-last memory format (faster convolutions on CPU and GPU)."""
    num_threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    max_nonfinite_steps: int = 20
    """A step whose losses or gradients are NaN/Inf is skipped (no update); this many
    consecutive skipped steps stop the run with an error (the last checkpoint stays usable)."""
    data_workers: int | None = None
    """Worker processes that read and decode frames (None: a quarter of the CPU cores, at most 8;
    0: in the training process). The data order and every batch are the same for any number."""
    tensorboard: bool = False
    """Also write the logged scalars and the sample grids as TensorBoard events in RUN/tensorboard/
    (needs ``pip install 'keypointgan[tensorboard]'``)."""
    precision: str = "auto"
    """Arithmetic of the networks and VGG-19: fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler);
    the renderer, soft-argmax and the losses stay in float32, and so do the weights and checkpoints.
    auto: bf16 on GPUs that support it, fp32 elsewhere (docs/benchmarks.md has the CPU measurements)."""
    compile: bool = False
    """Compile the four networks with ``torch.compile`` (the renderer and losses stay eager). Pays a
    compile time at the start (docs/benchmarks.md: when it is worth it)."""
    dist_timeout_minutes: float = 10.0
    """Multi-process runs (torchrun): how long a process waits for the others at a collective before the
    run fails (rank 0 evaluates and writes checkpoints while the others wait at the next step)."""

    def validate(self) -> "TrainConfig":
        self.model.validate()
        _check_finite(self, "")
        if self.batch_size < 2:
            raise InputError(f"batch size must be at least 2, got {self.batch_size}")
        for name in ("batch_size", "pretrain_batch", "pool_size", "eval_frames", "ema_norm_batches", "num_threads", "data_workers"):
            if (getattr(self, name) or 0) > MAX_COUNT:
                raise InputError(f"{name} must be at most {MAX_COUNT:,}, got {getattr(self, name)}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"betas must be (β1, β2) with each in [0, 1), got {self.betas}")
        if not 0 < self.pretrain_scale[0] <= self.pretrain_scale[1]:
            raise InputError(f"pretrain_scale must be (min, max) with 0 < min <= max, got {self.pretrain_scale}")
        if self.pretrain_rotate < 0 or self.pretrain_translate < 0:
            raise InputError(f"pretrain_rotate and pretrain_translate must be >= 0, got {self.pretrain_rotate}, {self.pretrain_translate}")
        for name in ("lr", "lr_disc", "lr_regressor", "pretrain_lr"):
            if not 0 < getattr(self, name) <= 1:  # Adam's step is about lr: beyond 1 it overflows float32 long before it helps
                raise InputError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.ema_norm_batches < 0:
            raise InputError(f"ema_norm_batches must be >= 0, got {self.ema_norm_batches}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.swa_fraction <= 1.0:
            raise InputError(f"swa_fraction must be in [0, 1], got {self.swa_fraction}")
        if self.regressor_side_swaps not in SIDE_SWAPS:
            raise InputError(f"regressor_side_swaps must be one of {SIDE_SWAPS}, got {self.regressor_side_swaps!r}")
        if not 0.0 <= self.prior_jitter < 0.5:
            raise InputError(f"prior_jitter must be in [0, 0.5), got {self.prior_jitter}")
        if not 0.0 <= self.lr_decay_fraction <= 1.0:
            raise InputError(f"lr_decay_fraction must be in [0, 1], got {self.lr_decay_fraction}")
        if self.gap[0] < 0 or self.gap[1] < self.gap[0]:
            raise InputError(f"gap must be (min, max) with 0 <= min <= max, got {self.gap}")
        if self.prior_sampling not in PRIOR_SAMPLING:
            raise InputError(f"prior_sampling must be one of {PRIOR_SAMPLING}, got {self.prior_sampling!r}")
        if self.pair_sampling not in PAIR_SAMPLING:
            raise InputError(f"pair_sampling must be one of {PAIR_SAMPLING}, got {self.pair_sampling!r}")
        if self.steps is not None and self.steps < 0:
            raise InputError(f"steps must be >= 0, got {self.steps}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InputError(f"max_minutes must be positive, got {self.max_minutes}")
        for name in ("log_every", "sample_every", "eval_every", "ckpt_every", "eval_frames", "max_nonfinite_steps", "pretrain_batch"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("pool_size", "pretrain_steps", "grad_clip", "w_gan", "w_rec", "w_reg_prior", "w_reg_self"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.data_workers is not None and self.data_workers < 0:
            raise InputError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.num_threads is not None and self.num_threads < 1:
            raise InputError(f"num_threads must be at least 1, got {self.num_threads}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.dist_timeout_minutes > 0:
            raise InputError(f"dist_timeout_minutes must be positive, got {self.dist_timeout_minutes}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source=None) -> "TrainConfig":
        """A config from a plain dict (a checkpoint's, or a config file's); every field is type-checked
        and a field this version does not have is refused, naming it."""
        if not isinstance(data, dict):
            raise InputError("a config must be a mapping of field names to values", source)
        data = dict(data)
        model_data = data.pop("model", {}) or {}
        if not isinstance(model_data, dict):
            raise InputError("config field 'model' must be a mapping", source)
        model = ModelConfig(**_checked(ModelConfig, model_data, "model.", source))
        return cls(model=model, **_checked(cls, data, "", source))


def _checked(cls, data: dict, prefix: str, source) -> dict:
    """``data`` with unknown fields refused, lists turned into tuples and each value type-checked."""
    import typing

    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise InputError(f"unknown config field(s): {', '.join(prefix + k for k in sorted(unknown))}", source)
    out = _tuples(cls, data)
    for k, v in out.items():
        if not _type_ok(v, hints[k]):
            want = str(hints[k]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise InputError(f"config field {prefix}{k} must be {want}, got {v!r}", source)
    return out


def _type_ok(value, hint) -> bool:
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    return True


def _check_finite(cfg, prefix: str) -> None:
    """Refuse NaN and ±inf in every float field (and float tuple) of a config dataclass: a learning rate
    or loss weight of inf or NaN makes every step non-finite, and no range check below would catch NaN."""
    import math
    import typing

    for name, hint in typing.get_type_hints(type(cfg)).items():
        if float not in _leaf_types(hint):
            continue
        v = getattr(cfg, name)
        values = v if isinstance(v, tuple) else (v,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in values):
            raise InputError(f"{prefix}{name} must be finite, got {v}")
        if any(isinstance(x, (int, float)) and abs(x) > _FLOAT32_MAX for x in values):  # the networks compute in float32
            raise InputError(f"{prefix}{name} is beyond float32's range, got {v}")


_FLOAT32_MAX = 3.4e38


def _leaf_types(hint) -> set:
    """The scalar types a field's annotation admits (``float | None`` → {float, NoneType}; ``tuple[float, float]`` → {float})."""
    import typing

    args = typing.get_args(hint)
    return {t for a in args for t in _leaf_types(a) if a is not Ellipsis} if args else {hint}


def load_config(path, preset: str | None = None) -> TrainConfig:
    """Read a config file (YAML or JSON: fields of :class:`TrainConfig`, ``model`` a mapping) and validate it.

    The file layers on a preset: the one its ``preset:`` field names, else ``preset``, else ``cpu-64``
    (``custom``: the dataclasses' defaults); the fields it gives replace the preset's, so a two-line
    file changes two settings.  A file naming one preset and ``preset`` another is refused."""
    from pathlib import Path

    from .io import read_yaml

    path = Path(path)
    data = read_yaml(path, what="config file", format_name="YAML/JSON")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("a config must be a mapping of field names to values", path)
    named = data.get("preset")
    if named is not None and not isinstance(named, str):
        raise InputError(f"config field preset must be a preset's name, got {named!r}", path)
    if named is not None and preset is not None and named != preset:
        raise InputError(f"the file names preset {named!r} but --preset is {preset!r}; give one", path)
    base = named or preset or "cpu-64"
    if base != "custom" and base not in PRESETS:
        raise InputError(f"unknown preset {base!r}; choose from {', '.join(sorted(PRESETS))}", path)
    layered = TrainConfig().to_dict() if base == "custom" else make_config(base).to_dict()
    model = data.get("model", {})
    if isinstance(model, dict):
        layered["model"].update(model)
    else:
        layered["model"] = model  # from_dict names the problem
    layered.update({k: v for k, v in data.items() if k != "model"}, preset=base)
    cfg = TrainConfig.from_dict(layered, path)
    try:
        return cfg.validate()
    except InputError as exc:
        raise InputError(exc.problem, path) from None


def _tuples(cls, data: dict) -> dict:
    """Lists from JSON/YAML back to tuples where the dataclass default is a tuple."""
    out = dict(data)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for k, v in out.items():
        if isinstance(v, list) and isinstance(defaults.get(k), tuple):
            out[k] = tuple(v)
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # The authors' widths and settings at 128 px (for a GPU): DESIGN.md §1; appearance frames from a
    # window as wide as the authors' sample_window [0, 1000] (clipped to each video).
    "paper-128": dict(
        model=dict(size=128),
        batch_size=16,
        gap=(1, 1000),
    ),
    # Human3.6M from its videos, of which every 5th frame is used: a window of 200 frames ≈ 1000 of the video
    "human36m": dict(model=dict(size=128), batch_size=16, gap=(1, 200)),
    # Sized and tuned so that the demo learns within its budget on a 2-core CPU
    # (docs/experiments.md, run e8): narrow networks, a lighter discriminator, faster learning
    # rates decayed over the last half of the budget, a moving average of Φ and η for prediction that
    # becomes a plain mean over the last half, twice the paper's reconstruction weight (for the fallback
    # loss) and the flip test (docs/experiments.md, 2026-11-22: the flip test, SWA, w_rec 20).
    "cpu-64": dict(
        model=dict(
            size=64,
            encoder_widths=(8, 16, 32, 64),
            regressor_widths=(8, 16, 32, 64),
            decoder_widths=(8, 16, 32, 64),
            disc_ndf=16,
            disc_layers=2,
            disc_scales=3,
            disc_batch_std=4,  # no collapse to one pose in 4 of 4 seeds (docs/experiments.md, D's minibatch standard deviation)
        ),
        batch_size=16,
        lr=5e-4,
        lr_disc=5e-4,
        lr_regressor=5e-4,
        w_rec=20.0,  # tuned for the fallback reconstruction loss (docs/experiments.md, reconstruction weight 20)
        lr_decay_fraction=0.5,
        ema_decay=0.99,
        swa_fraction=0.5,
        flip_test=True,
        gap=(1, 1000),
        pool_size=0,  # the pool's past fakes hid a collapse from D's batch-std channel (docs/experiments.md, the image pool)
        flip_augment=True,  # better on every variant of the generalisation suite, paired by seed (docs/experiments.md, mirrored batches)
        prior_jitter=0.05,  # D's prior poses jittered: better in most runs of the suite, paired by seed (docs/experiments.md, prior_jitter)
        regressor_side_swaps="auto",  # η reads figures that face either way (docs/experiments.md, 2026-12-04 (c): η's folded limbs)
        pretrain_steps=1000,
        eval_every=100,
        sample_every=100,
        ckpt_every=100,
    ),
    # The authors' release wherever this library can follow it (docs/design.md, "Fidelity to the paper
    # and the release"; docs/reproducing.md): its four networks layer for layer (the *_arch fields; η's and
    # D's instance norm without affine parameters, D's scales resized bilinearly, Ψ mixing the joined
    # features at H/8 with no output activation), its pair sampling (video-uniform targets, the appearance
    # frame the same or up to 1000 later), VGG-19 without ReLU, and η pre-trained with the release's
    # Adam settings and no pose augmentation.
    "release": dict(
        model=dict(
            size=128,
            regressor_norm="instance-noaffine",
            disc_norm="instance-noaffine",
            disc_downsample="bilinear",
            decoder_style="release",
            phi_arch="release",
            eta_arch="release",
            psi_arch="release",
            disc_arch="release",
        ),
        batch_size=16,
        gap=(0, 1000),
        pair_sampling="release",
        prior_sampling="release",
        vgg_relu=False,
        pretrain_lr=2e-4,
        pretrain_rotate=0.0,
        pretrain_scale=(1.0, 1.0),
        pretrain_translate=0.0,
    ),
}


def make_config(preset: str = "cpu-64", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset name plus field overrides (``model`` may be a dict)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    base = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[preset].items()}
    model = dict(base.pop("model", {}))
    model.update(overrides.pop("model", {}) or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    base["preset"] = preset
    return TrainConfig(model=ModelConfig(**model), **base)


def with_overrides(cfg: TrainConfig, source=None, **overrides: Any) -> TrainConfig:
    """A copy of ``cfg`` with fields replaced (``None`` values ignored; ``model`` a mapping of
    :class:`ModelConfig` fields or a ``ModelConfig``); unknown fields are refused."""
    over = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(over) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise InputError(f"unknown config field(s): {', '.join(unknown)}", source)
    model = over.pop("model", None)
    if isinstance(model, dict):
        bad = sorted(set(model) - {f.name for f in dataclasses.fields(ModelConfig)})
        if bad:
            raise InputError(f"unknown config field(s): {', '.join('model.' + k for k in bad)}", source)
        model = dataclasses.replace(cfg.model, **{k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
    return dataclasses.replace(cfg, **over, **({"model": model} if model is not None else {}))


def _flat(cfg: TrainConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    return {**{f"model.{k}": v for k, v in d.pop("model").items()}, **d}


def resume_config(saved: TrainConfig, requested: TrainConfig | None, source=None, **overrides: Any) -> TrainConfig:
    """The config a resumed run continues with: ``saved`` (the checkpoint's), with the
    :data:`RUNTIME_FIELDS` of ``overrides`` applied.  Any other difference — from ``requested`` (a
    ``--config`` file or a ``--preset``, compared field by field) or from ``overrides`` — is refused,
    naming the first field that differs."""
    allowed = {k: v for k, v in overrides.items() if k in RUNTIME_FIELDS and v is not None}
    others = {k: v for k, v in overrides.items() if k not in RUNTIME_FIELDS and v is not None}
    have = _flat(saved)
    for k, v in _flat(with_overrides(saved, source, **others)).items():
        if v != have[k]:
            raise InputError(f"cannot change {k} when resuming (the run has {have[k]!r})", source)
    if requested is not None:
        for k, v in _flat(requested).items():
            if k not in RUNTIME_FIELDS and k != "preset" and v != have.get(k):
                raise InputError(f"cannot change {k} when resuming (the run has {have.get(k)!r}; the requested config has {v!r})", source)
    return with_overrides(saved, source, **allowed)
