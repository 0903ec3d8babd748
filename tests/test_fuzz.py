"""Fuzzing the readers of user files with hypothesis (issue 14).

Generated skeleton YAML, prior files (.npy, .csv, .json lists and COCO files, .pts next to an
image), config files and image files (every mode, truncated, bytes flipped, huge headers) go
through the public readers and through the CLI entry point in-process. The only outcomes
allowed are success or the library's one-line error (:class:`~keypointgan.errors.InputError`;
exit code 2 and one ``keypointgan CMD: error: …`` line from the CLI) — never another exception.

CI runs ``KEYPOINTGAN_FUZZ_EXAMPLES`` (default 200) examples per reader and a tenth of that
through the CLI; docs/robustness.md records the local run of 10,000 per reader.
"""

import contextlib
import io
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keypointgan.errors import InputError

pytestmark = pytest.mark.filterwarnings("error")  # a warning printed before the one-line error counts as a failure
EXAMPLES = int(os.environ.get("KEYPOINTGAN_FUZZ_EXAMPLES", "200"))
# CI (no KEYPOINTGAN_FUZZ_EXAMPLES) runs the same examples every time; a local run draws new ones
_fixed = "KEYPOINTGAN_FUZZ_EXAMPLES" not in os.environ
READER = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=_fixed)
CLI = settings(max_examples=max(10, EXAMPLES // 10), deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=_fixed)


@contextlib.contextmanager
def scratch():
    """A fresh folder per example (hypothesis runs many examples in one test call)."""
    d = tempfile.mkdtemp(prefix="kpgan-fuzz-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def accepts_or_refuses(fn, *args, **kwargs):
    """Call a reader: it may return or raise InputError with one line naming the problem, nothing else."""
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


def run_cli(argv, cwd: Path) -> None:
    """``keypointgan ARGV`` in-process: exit 0, or exit 2 with exactly one ``keypointgan CMD: error:`` line."""
    from keypointgan.cli import main

    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    finally:
        os.chdir(old)
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        return
    assert code == 2, (code, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith(f"keypointgan {argv[0]}: error: "), err.getvalue()


def run_cli_flags(argv, cwd: Path) -> None:
    """As :func:`run_cli`, for argument lists argparse may refuse: then its usage lines come first and
    the last line is argparse's one ``keypointgan CMD: error: argument …`` line (exit code 2)."""
    from keypointgan.cli import main

    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
                by_argparse = False
            except SystemExit as exc:
                code, by_argparse = exc.code, True
    finally:
        os.chdir(old)
    lines = err.getvalue().strip().splitlines()
    command = next(a for a in argv if not a.startswith("-") and "=" not in a)
    assert code in (0, 2), (code, err.getvalue())
    if code == 0:
        return
    prefixes = (f"keypointgan {command}: error: ",) + (("keypointgan: error: argument --max-image-pixels",) if by_argparse else ())
    assert lines and lines[-1].startswith(prefixes), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if by_argparse:
        assert lines[0].startswith("usage: ") and len([l for l in lines if ": error: " in l]) == 1, err.getvalue()
    else:
        assert len(lines) == 1, err.getvalue()


# ------------------------------------------------------------------ strategies
names = st.sampled_from(["a", "b", "c", "head", "neck", "", "a b", "ü", "1", "null"])
leaf = st.one_of(
    st.none(), st.booleans(), names,
    st.integers(min_value=-(10**500), max_value=10**500), st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
)
structure = st.recursive(leaf, lambda ch: st.lists(ch, max_size=5) | st.dictionaries(st.text(max_size=6) | names, ch, max_size=4),
                         max_leaves=25)
pair = st.one_of(st.lists(names, min_size=2, max_size=2), st.lists(names | structure, max_size=3), structure)


@st.composite
def skeleton_docs(draw):
    """Mostly skeleton-shaped mappings (names, limbs, symmetric pairs, with wrong types mixed in)."""
    doc = {}
    if draw(st.booleans()):
        doc["keypoints"] = draw(st.lists(names, max_size=5) | structure)
    if draw(st.booleans()):
        doc["limbs"] = draw(st.lists(pair, max_size=4) | structure)
    if draw(st.booleans()):
        doc["symmetric"] = draw(st.lists(pair, max_size=3) | structure)
    if draw(st.booleans()):
        doc["name"] = draw(structure)
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.text(max_size=5))] = draw(structure)
    return draw(st.sampled_from([doc, doc, doc, draw(structure)]))


def yaml_text(doc_strategy):
    """YAML text of a generated document, or raw text (syntax errors, tags, odd bytes)."""
    return st.one_of(doc_strategy.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), doc_strategy.map(lambda d: yaml.safe_dump(d)[:-3]),
                     st.text(max_size=80), st.sampled_from(["!!python/object:os.system {}", "a: &x [*x]", "{", "- - -", "\x00"]))


number_text = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 5).map(str),
                        st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "0x10", "1,5", "x", "0.5", "0.25", '"0.5"', "1" + "0" * 5000]))


@st.composite
def csv_text(draw):
    rows = draw(st.lists(st.lists(number_text, max_size=8), max_size=5))
    sep = draw(st.sampled_from([",", ";", ", ", "\t"]))
    text = "\n".join(sep.join(r) for r in rows)
    return draw(st.sampled_from([text, text, draw(st.text(max_size=60))]))


coord = st.one_of(st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**400), 10**400), leaf)


@st.composite
def json_prior_docs(draw):
    kind = draw(st.integers(0, 3))
    k = draw(st.integers(0, 4))
    if kind == 0:  # a list of poses
        return draw(st.lists(st.lists(st.lists(coord, min_size=2, max_size=draw(st.sampled_from([2, 2, 3]))), min_size=k, max_size=k), max_size=4))
    if kind == 1:  # a COCO file
        images = draw(st.lists(st.fixed_dictionaries({"id": st.integers(0, 3) | leaf, "width": coord, "height": coord}) | structure, max_size=3))
        anns = draw(st.lists(st.fixed_dictionaries({"image_id": st.integers(0, 3) | leaf,
                                                    "keypoints": st.lists(coord | st.sampled_from([0, 1, 2]), max_size=3 * k + 1)}) | structure,
                             max_size=3))
        return {"images": images if draw(st.booleans()) else draw(structure), "annotations": anns}
    if kind == 2:  # [{"keypoints": [x, y, v, ...]}]
        return draw(st.lists(st.fixed_dictionaries({"keypoints": st.lists(coord, max_size=3 * k + 1) | structure}) | structure, min_size=1, max_size=3))
    return draw(structure)


@st.composite
def pts_text(draw):
    lines = []
    if draw(st.booleans()):
        lines.append("version: 1")
    if draw(st.booleans()):
        lines.append(f"n_points: {draw(st.integers(-1, 5) | number_text)}")
    if draw(st.integers(0, 4)):
        lines.append("{")
    lines += [" ".join(draw(st.lists(number_text, max_size=3))) for _ in range(draw(st.integers(0, 5)))]
    if draw(st.integers(0, 4)):
        lines.append("}")
    if draw(st.integers(0, 6)) == 0:
        draw(st.randoms()).shuffle(lines)
    return draw(st.sampled_from(["\n".join(lines), "\n".join(lines), draw(st.text(max_size=40))]))


# ---- images
MODES = {"1": 1, "L": 1, "LA": 2, "P": 1, "RGB": 3, "RGBA": 4, "CMYK": 4, "I;16": 1, "I": 1, "F": 1}
FORMATS = {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), "JPEG": ("L", "RGB", "CMYK"), "BMP": ("1", "L", "P", "RGB"),
           "WEBP": ("RGB", "RGBA"), "TIFF": ("1", "L", "RGB", "RGBA", "CMYK", "I;16", "F"), "GIF": ("L", "P")}


def png_header(width, height, colour=2, depth=8, data=b"\0" * 64):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


@st.composite
def image_bytes(draw):
    from PIL import Image

    kind = draw(st.integers(0, 9))
    if kind == 0:  # a header declaring any size (decompression bombs included), colour type and depth
        return png_header(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7])),
                          draw(st.sampled_from([1, 2, 4, 8, 16, 3])), draw(st.binary(max_size=64)))
    if kind == 1:
        return draw(st.binary(max_size=200))
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    if mode in ("I;16", "I", "F"):
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257).convert(mode) if mode != "I;16" else Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    else:
        im = Image.fromarray(arr, "RGBA").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    data = buf.getvalue()
    if kind in (2, 3, 4):  # truncated
        data = data[: draw(st.integers(0, len(data)))]
    elif kind in (5, 6):  # bytes changed
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    return data


# ------------------------------------------------------------------ readers
@pytest.fixture(autouse=True)
def small_pixel_budget():
    """Keep what a generated header may make PIL allocate small (4 M pixels)."""
    from keypointgan.io import set_max_image_pixels

    set_max_image_pixels(4_000_000)
    yield
    set_max_image_pixels(None)


@READER
@given(text=yaml_text(skeleton_docs()))
def test_fuzz_skeleton_yaml(text):
    from keypointgan.skeleton import Skeleton

    with scratch() as d:
        (d / "s.yaml").write_bytes(text.encode("utf-8", "replace"))
        sk = accepts_or_refuses(Skeleton.from_yaml, d / "s.yaml")
        if sk is not None:  # a skeleton that loads writes and reads back the same
            sk.to_yaml(d / "back.yaml")
            assert Skeleton.from_yaml(d / "back.yaml") == sk


def _check_prior(arr):
    if arr is not None:
        assert arr.dtype == np.float32 and arr.ndim == 3 and arr.shape[-1] == 2 and np.isfinite(arr).all()
        assert arr.min() >= -0.5 and arr.max() <= 1.5


npy_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_, np.complex64, np.dtype("<U3"), np.dtype("S3")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)


@READER
@given(arr=npy_arrays, cut=st.integers(0, 400), mode=st.integers(0, 4))
def test_fuzz_npy_prior(arr, cut, mode):
    from keypointgan.data import load_prior

    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    if mode == 0:
        data = data[:cut]
    elif mode == 1:
        data = data[:cut] + bytes([cut % 256]) + data[cut + 1:]
    with scratch() as d:
        (d / "p.npy").write_bytes(data)
        _check_prior(accepts_or_refuses(load_prior, d / "p.npy"))


@READER
@given(text=csv_text())
def test_fuzz_csv_prior(text):
    from keypointgan.data import load_prior

    with scratch() as d:
        (d / "p.csv").write_bytes(text.encode("utf-8", "replace"))
        _check_prior(accepts_or_refuses(load_prior, d / "p.csv"))


@READER
@given(doc=json_prior_docs(), cut=st.integers(0, 10**6))
def test_fuzz_json_and_coco_prior(doc, cut):
    from keypointgan.data import load_prior

    text = json.dumps(doc)
    if cut % 5 == 0:
        text = text[: cut % (len(text) + 1)]
    with scratch() as d:
        (d / "p.json").write_text(text)
        _check_prior(accepts_or_refuses(load_prior, d / "p.json"))


@READER
@given(text=pts_text(), img=st.one_of(st.none(), image_bytes()), folder=st.booleans())
def test_fuzz_pts_prior(text, img, folder):
    from keypointgan.data import load_prior

    with scratch() as d:
        (d / "f.pts").write_bytes(text.encode("utf-8", "replace"))
        if img is not None:
            (d / "f.png").write_bytes(img)
        _check_prior(accepts_or_refuses(load_prior, d if folder else d / "f.pts"))


config_leaf = st.one_of(st.none(), st.booleans(), names, st.integers(-(2**70), 2**70), st.integers(-3, 64),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
config_structure = st.recursive(config_leaf, lambda ch: st.lists(ch, max_size=5) | st.dictionaries(st.text(max_size=6) | names, ch, max_size=4),
                                max_leaves=25)
config_values = st.one_of(config_leaf, config_structure, st.lists(st.integers(-2, 64), max_size=5))
config_fields = st.sampled_from(["lr", "steps", "batch_size", "ema_decay", "gap", "betas", "seed", "device", "max_minutes", "pool_size",
                                 "prior_scale", "w_rec", "flip_test", "vgg_weights", "model", "unknown_field"])
model_fields = st.sampled_from(["size", "encoder_widths", "regressor_widths", "decoder_widths", "disc_layers", "disc_scales", "norm", "sigma", "nope"])


@st.composite
def config_docs(draw):
    doc = draw(st.dictionaries(config_fields, config_values, max_size=4))
    if draw(st.booleans()):
        doc["model"] = draw(st.dictionaries(model_fields, config_values, max_size=3) | config_structure)
    return draw(st.sampled_from([doc, doc, draw(config_structure)]))


@READER
@given(text=yaml_text(config_docs()), as_json=st.booleans())
def test_fuzz_config_file(text, as_json):
    from keypointgan.config import load_config

    with scratch() as d:
        path = d / ("c.json" if as_json else "c.yaml")
        path.write_bytes(text.encode("utf-8", "replace"))
        accepts_or_refuses(load_config, path)


@READER
@given(data=image_bytes(), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".PNG"]))
def test_fuzz_image_file(data, suffix):
    from keypointgan.io import image_size, read_image

    with scratch() as d:
        f = d / f"x{suffix}"
        f.write_bytes(data)
        size = accepts_or_refuses(image_size, f)
        arr = accepts_or_refuses(read_image, f)
        if arr is not None:
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[0] * arr.shape[1] >= 1
            assert size == (arr.shape[1], arr.shape[0])


# ------------------------------------------------------------------ through the CLI, in-process
def test_fuzz_cli(one_step_run):
    """Skeleton + prior through ``pretrain-regressor``, configs through ``train``, images through ``predict``."""

    @CLI
    @given(sk=yaml_text(skeleton_docs()), prior=st.one_of(csv_text().map(lambda t: ("p.csv", t)), json_prior_docs().map(lambda j: ("p.json", json.dumps(j)))))
    def skeleton_and_prior(sk, prior):
        with scratch() as d:
            (d / "s.yaml").write_bytes(sk.encode("utf-8", "replace"))
            (d / prior[0]).write_bytes(prior[1].encode("utf-8", "replace"))
            run_cli(["pretrain-regressor", "--prior", prior[0], "--skeleton", "s.yaml", "--out", "eta.pt", "--steps", "1", "--quiet"], d)

    @CLI
    @given(text=yaml_text(config_docs()))
    def config(text):
        with scratch() as d:
            (d / "c.yaml").write_bytes(text.encode("utf-8", "replace"))
            run_cli(["train", "--config", "c.yaml", "--data", "no-such-data", "--out", "run", "--quiet"], d)
            assert not (d / "run").exists()

    @CLI
    @given(data=image_bytes())
    def image(data):
        with scratch() as d:
            (d / "x.png").write_bytes(data)
            run_cli(["predict", "--checkpoint", str(one_step_run), "x.png", "--out", "pred", "--quiet"], d)

    skeleton_and_prior()
    config()
    image()


@pytest.mark.parametrize("text", ["?\n", "1: 2\n", "model: {null: 1}\n", "a: &x [*x]\n"])
def test_yaml_keys_that_are_not_text_and_self_referencing_aliases(text, tmp_path):
    """Found by the 10,000-example run: a YAML ``?`` (a null key) gave a TypeError while joining field names."""
    from keypointgan.config import load_config
    from keypointgan.skeleton import Skeleton

    path = tmp_path / "f.yaml"
    path.write_text(text)
    for reader in (load_config, Skeleton.from_yaml):
        with pytest.raises(InputError):
            reader(path)



# ------------------------------------------------------------------ numeric config values and CLI flag values
NUMBERS = int(os.environ.get("KEYPOINTGAN_FUZZ_NUMBERS", "100"))
"""Examples per numeric family (config floats, config ints, each command's flags): 100 in CI; the long run sets 2000."""
_fixed_numbers = "KEYPOINTGAN_FUZZ_NUMBERS" not in os.environ
# no shrinking: a failing example is reported as drawn (shrinking a training run took minutes)
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
NUMERIC = settings(max_examples=NUMBERS, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=_fixed_numbers,
                   phases=_PHASES)
TRAINED = settings(max_examples=max(4, NUMBERS // 25), deadline=None, suppress_health_check=list(HealthCheck), database=None,
                   derandomize=_fixed_numbers, phases=_PHASES)

special_floats = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e30, -1.0, -1e-9, 0.0, 5e-324, 2.0**63, 1.0, 0.5]),
    st.floats(allow_nan=True, allow_infinity=True),
)
special_ints = st.one_of(
    st.sampled_from([0, -1, 1, 2, 2**63, 2**63 - 1, -(2**63), 2**64, 10**30, 2**31]),
    st.integers(-(2**70), 2**70), st.integers(-3, 70),
)


def _numeric_fields(kind):
    """``(prefix, name, hint)`` of every config field whose values are of ``kind`` (float or int), tuples included."""
    import typing

    from keypointgan.config import ModelConfig, TrainConfig, _leaf_types

    out = []
    for cls, prefix in ((TrainConfig, ""), (ModelConfig, "model.")):
        for name, hint in typing.get_type_hints(cls).items():
            if kind in _leaf_types(hint) and not (kind is int and bool in _leaf_types(hint)):
                out.append((prefix, name, hint))
    return out


FLOAT_FIELDS, INT_FIELDS = _numeric_fields(float), _numeric_fields(int)


def _value(draw, hint, numbers):
    """A value for a field: ``numbers`` in every slot of a tuple (of the right length, or 1 to 5 for ``tuple[int, ...]``), or None when optional."""
    import typing

    args = typing.get_args(hint)
    if type(None) in args and draw(st.integers(0, 5)) == 0:
        return None
    if typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in args):
        tup = hint if typing.get_origin(hint) is tuple else next(a for a in args if typing.get_origin(a) is tuple)
        elems = typing.get_args(tup)
        n = draw(st.integers(1, 5)) if len(elems) == 2 and elems[1] is Ellipsis else len(elems)
        return tuple(draw(numbers) for _ in range(n))
    return draw(numbers)


def _overrides(prefix, name, value):
    return {"model": {name: value}} if prefix else {name: value}


def _accepted_config_is_usable(cfg) -> None:
    """What a config that validates must also be: finite, and acceptable to the code it reaches first
    (Adam's settings, the seeds mixed with rank and step, the schedule)."""
    import typing

    from keypointgan.config import ModelConfig, TrainConfig
    from keypointgan.training.loop import budget_fraction, lr_scale

    for obj in (cfg, cfg.model):
        for name in typing.get_type_hints(type(obj)):
            v = getattr(obj, name)
            for x in v if isinstance(v, tuple) else (v,):
                assert not (isinstance(x, float) and not math.isfinite(x)), (name, v)
    p = torch.zeros(1, requires_grad=True)
    for lr in (cfg.lr, cfg.lr_disc, cfg.lr_regressor, cfg.pretrain_lr):
        torch.optim.Adam([p], lr=lr, betas=cfg.betas)
    torch.Generator().manual_seed(cfg.seed * 1009 + 7 + 7_919 * 10**7)
    torch.Generator().manual_seed(cfg.seed * 7919 + 10**6)
    s = lr_scale(budget_fraction(10, 60.0, cfg.steps, cfg.max_minutes * 60 if cfg.max_minutes else math.inf), cfg.lr_decay_fraction)
    assert 0.0 <= s <= 1.0
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.model, ModelConfig)


def _refused_or_usable(field, data, numbers) -> None:
    from keypointgan.config import make_config

    prefix, name, hint = field
    value = _value(data.draw, hint, numbers)
    cfg = accepts_or_refuses(lambda: make_config("cpu-64", **_overrides(prefix, name, value)).validate())
    if cfg is not None:
        _accepted_config_is_usable(cfg)


@NUMERIC
@given(field=st.sampled_from(FLOAT_FIELDS), data=st.data())
def test_fuzz_numeric_config_floats(field, data):
    """Every float field (and float tuple): ±inf, NaN, huge, negative, subnormal, any float — refused in one line or usable."""
    _refused_or_usable(field, data, special_floats)


@NUMERIC
@given(field=st.sampled_from(INT_FIELDS), data=st.data())
def test_fuzz_numeric_config_ints(field, data):
    """Every int field (and int tuple): 0, −1, 2⁶³, ±2⁷⁰, any int — refused in one line or usable."""
    _refused_or_usable(field, data, special_ints)


flag_text = st.one_of(special_floats.map(repr), special_ints.map(str),
                      st.sampled_from(["nan", "inf", "-inf", "1e400", "none", "null", "", " ", "x", "0x10", "1,5", "1_000", "٣", "2**63"]))


def _command_flags():
    """``command → (arguments that make it stop at an input check, [its flags that take numbers])``, read from the parser."""
    from keypointgan.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    fail_fast = {
        "train": ["--data", "no-such-data", "--out", "run", "--quiet"],
        "pretrain-regressor": ["--prior", "nope.npy", "--skeleton", "nope.yaml", "--out", "eta.pt", "--quiet"],
        "predict": ["--checkpoint", "nope.pt", "nope.png", "--out", "pred", "--quiet"],
        "evaluate": ["--checkpoint", "nope.pt", "--data", "nope", "--quiet"],
        "export": ["nope.pt", "--out", "x.onnx"],
        "view": ["nope.json"],
        "diagnose": ["nope", "--data", "nope"],
        "make-synthetic": ["notes/data", "--quiet"],  # notes is a file: the output folder is refused
    }  # demo is left out: with valid flags it would run the demo
    out = {}
    for cmd, args in fail_fast.items():
        flags = []
        for a in sub.choices[cmd]._actions:
            if a.option_strings and a.type is not Path and a.nargs != 0 and a.choices is None and a.dest != "help":
                flags.append((a.option_strings[0], a.nargs if isinstance(a.nargs, int) else 1))
        out[cmd] = (args, flags)
    return out


COMMAND_FLAGS = _command_flags()


@pytest.mark.parametrize("command", sorted(COMMAND_FLAGS))
def test_fuzz_cli_flag_values(command):
    """Each command's numeric flags (and the global --max-image-pixels) with any number or text: exit 0,
    or exit 2 with one error line (after argparse's usage for a value it refuses) — never a traceback."""
    args, flags = COMMAND_FLAGS[command]
    assert flags, command

    @NUMERIC
    @given(picks=st.lists(st.tuples(st.sampled_from(flags), st.lists(flag_text, min_size=3, max_size=3)), min_size=1, max_size=3),
           pixels=st.one_of(st.none(), flag_text))
    def run(picks, pixels):
        argv = [] if pixels is None else [f"--max-image-pixels={pixels}"]
        argv.append(command)
        for (flag, n), values in picks:
            argv += [f"{flag}={values[0]}"] if n == 1 else [flag, *values[:n]]
        with scratch() as d:
            (d / "notes").write_text("a file")
            run_cli_flags(argv + args, d)
            assert not (d / "run").exists() and not (d / "pred").exists()

    run()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzz_accepted_numbers_train_to_a_finite_checkpoint(tiny_data):
    """Float settings that validate, through a real (tiny) run: it ends with a checkpoint of finite weights, or stops
    (too many non-finite steps, or weights that would not be finite) with the last checkpoint finite — never a traceback."""
    from conftest import tiny_config
    from keypointgan.api import train
    from keypointgan.checkpoint import load_checkpoint
    from keypointgan.errors import TrainingDiverged

    fields = [f for f in FLOAT_FIELDS if f[1] not in ("max_minutes", "dist_timeout_minutes")]  # budgets: a run of 1 step
    TRAINED_RUNS.clear()

    @TRAINED
    @given(field=st.sampled_from(fields), data=st.data())
    def run(field, data):
        prefix, name, hint = field
        value = _value(data.draw, hint, special_floats)
        try:
            cfg = tiny_config(steps=2, pretrain_steps=1, max_nonfinite_steps=1, ema_norm_batches=1, **_overrides(prefix, name, value)).validate()
        except InputError:
            return
        with scratch() as d:
            try:
                train(tiny_data, d / "run", config=cfg, progress=False)
            except TrainingDiverged:
                pass
            except InputError as exc:  # e.g. a batch-std group larger than the batch
                assert "\n" not in str(exc)
                return
            TRAINED_RUNS.append(name)
            ckpt = d / "run" / "checkpoints" / "latest.pt"
            if ckpt.exists():
                state = load_checkpoint(ckpt)
                for part in ("nets", "ema"):
                    for net in (state.get(part) or {}).values():
                        assert all(torch.isfinite(t).all() for t in net.values() if t.is_floating_point()), (name, value)

    run()
    assert TRAINED_RUNS, "no generated setting got as far as training"


TRAINED_RUNS: list[str] = []  # the fields of the examples that trained (the others were refused by validate)
