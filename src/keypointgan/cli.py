"""``keypointgan <command>``: a thin layer over the Python API.

Every command parses its flags, calls one library function and prints what it
returned.  Errors the user can fix (:class:`~keypointgan.errors.InputError`)
are printed as one line and exit with code 2; ``--debug`` shows the traceback.
A run stopped for NaN/Inf losses exits with 1; one stopped by SIGINT/SIGTERM
(after saving a checkpoint) with 128 + the signal number (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path

from .config import PRECISIONS, RUNTIME_FIELDS
from .errors import InputError, KeypointGANError, ProcessLost, TrainingDiverged, TrainingInterrupted, one_line


def _int_at_least(lowest: int):
    """An argparse type: an integer >= ``lowest``."""
    what = "a positive integer" if lowest == 1 else f"an integer >= {lowest}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {v}")
    return v


# ----------------------------------------------------------------- commands
def cmd_make_synthetic(args) -> int:
    from .data.synthetic import SyntheticConfig, make_synthetic

    cfg = SyntheticConfig(videos=args.videos, frames=args.frames, size=args.size, seed=args.seed, prior=args.prior,
                          motion_speed=args.motion_speed, figure_scale=args.figure_scale, proportion_spread=args.proportion_spread,
                          background=args.background)
    t0 = time.perf_counter()
    out = make_synthetic(args.out, cfg, preview=args.preview, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.videos} videos × {cfg.frames} frames at {cfg.size} px and {cfg.prior} prior poses to {out} in {dt:.1f} s")
    if args.preview:
        print(f"preview: {Path(out) / 'preview.png'}")
    return 0


# ------------------------------------------------ config flags, generated from the dataclasses
# Every TrainConfig / ModelConfig field is a flag (``--batch-size``, ``--model.size``; also spelt with
# underscores), its help the field's docstring (read by docstring_parser, the library jsonargparse uses
# for this).  The flags are generated here rather than by jsonargparse or tyro because a run's config
# is layered — preset or --config file, then only the flags given — and those libraries fill every
# field with the dataclass default, which would hide the preset; their underscore-only spelling would
# also rename the flags users already have in their scripts (--max-minutes, --no-bottleneck).
# Flags parse a value's type only (int, float, a tuple's length); every range is checked once, by the
# dataclasses' ``validate``, whichever way the value came (flag, config file, Python).
_NOT_FLAGS = ("model", "preset")  # model: one flag per ModelConfig field; preset: --preset itself


@functools.lru_cache(maxsize=None)  # the docstrings do not change while a process runs (main may run many times)
def _field_docs(cls) -> dict[str, str]:
    try:
        import docstring_parser
    except ImportError:  # an install without torch (predict --model, view): train's help names the fields only
        return {}
    return {p.arg_name: " ".join((p.description or "").split()) for p in docstring_parser.parse_from_object(cls).params}


def _scalar_parser(hint, name: str):
    if hint is float:
        return float
    if hint is int:
        return int
    return str


def _add_config_flags(parser) -> None:
    """One flag per config field, with the field's docstring as help; unset flags leave no attribute."""
    import dataclasses
    import typing

    from .config import ModelConfig, TrainConfig

    group = parser.add_argument_group("config (every TrainConfig field; default: the preset's or --config file's value)")
    for cls, prefix in ((TrainConfig, ""), (ModelConfig, "model.")):
        docs, hints = _field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not prefix and f.name in _NOT_FLAGS:
                continue
            hint, dest = hints[f.name], "cfg:" + prefix + f.name
            args = typing.get_args(hint)
            optional = type(None) in args
            if optional:
                hint = next(a for a in args if a is not type(None))
            flag = f"--{prefix}{f.name.replace('_', '-')}"
            alias = f"--{prefix}{f.name}" if "_" in f.name and hint is not bool else None  # litgpt / jsonargparse spelling
            helptext = (docs.get(f.name) or f.name.replace("_", " ")).replace("%", "%%")
            kw = dict(dest=dest, default=argparse.SUPPRESS, help=helptext + (" ('none' for None)" if optional else ""))
            if hint is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
                continue
            if typing.get_origin(hint) is tuple:
                elems = typing.get_args(hint)
                n = "+" if len(elems) == 2 and elems[1] is Ellipsis else len(elems)
                more = dict(nargs=n, type=_scalar_parser(elems[0], f.name), metavar=f.name.split("_")[-1].upper())
            else:
                parse = _scalar_parser(hint, f.name)
                more = dict(type=(lambda t, p=parse: None if t.lower() in ("none", "null") else p(t)) if optional else parse, metavar=f.name.upper())
            group.add_argument(flag, **kw, **more)
            if alias:
                group.add_argument(alias, **{**kw, "help": argparse.SUPPRESS}, **more)


def _config_flags(args) -> dict:
    """The config fields given as flags: ``{field: value, "model": {field: value}}``."""
    out: dict = {}
    for dest, v in vars(args).items():
        if dest.startswith("cfg:"):
            name = dest[4:]
            if isinstance(v, list):
                v = tuple(v)
            if name.startswith("model."):
                out.setdefault("model", {})[name[6:]] = v
            else:
                out[name] = v
    return out


def cmd_train(args) -> int:
    import yaml

    from .api import train
    from .config import load_config, make_config, with_overrides

    over = _config_flags(args)
    if "vgg_weights" in over and over["vgg_weights"] is not None:
        over["vgg_weights"] = str(over["vgg_weights"])
    config = load_config(args.config, args.preset) if args.config is not None else None
    has_budget = config is not None and (config.steps is not None or config.max_minutes is not None)
    if not args.resume and not has_budget and over.get("steps") is None and over.get("max_minutes") is None:
        over["max_minutes"] = 10.0
    if args.print_config:
        if args.resume:
            raise KeypointGANError("--print-config shows a new run's config; a run's own is in its checkpoint and its log")
        cfg = with_overrides(config, args.config, **over) if config is not None else make_config(args.preset or "cpu-64", **over)
        print(yaml.safe_dump(_plain(cfg.validate().to_dict()), sort_keys=False), end="")
        return 0
    if args.data is None or args.out is None:
        raise KeypointGANError("train needs --data and --out")
    res = train(
        args.data, args.out, prior=args.prior, skeleton=args.skeleton, preset=args.preset, config=config, resume=args.resume,
        regressor=args.regressor, eval_data=args.eval_data, progress=not args.quiet, report=not args.no_report,
        format=args.format, **over,
    )
    from .training.distributed import from_environment

    if not from_environment().is_writer:  # torchrun's other ranks: rank 0 wrote and reports
        return 0
    from .checkpoint import run_checkpoint

    print(f"checkpoint: {run_checkpoint(args.out)}")
    if not args.no_report:
        print(f"report: {Path(args.out) / 'report.html'}")
    if res:
        print(f"error {res['error']:.2f}  flip-corrected {res['error_flip']:.2f}  PCK {res['pck']:.3f}  ({res['n_frames']} frames, % of image size)")
    return 0


def cmd_pretrain(args) -> int:
    from .api import pretrain_regressor

    over = {k: getattr(args, k) for k in ("seed", "device") if getattr(args, k) is not None}
    if args.steps is not None:
        over["pretrain_steps"] = args.steps
    res = pretrain_regressor(args.prior, args.skeleton, args.out, preset=args.preset, progress=not args.quiet, **over)
    print(f"wrote {args.out}: {res['pretrain_steps']} steps, final MSE {res['pretrain_mse']:.2e}")
    return 0


def cmd_import_release(args) -> int:
    from .release import import_release

    if args.out.exists():
        raise KeypointGANError(f"{args.out}: already exists; give another --out (nothing was written)")
    res = import_release(args.folder, args.iteration, args.out, skeleton=args.skeleton)
    print(f"wrote {args.out}: the release's {', '.join(res['networks'])} at iteration {args.iteration} ({res['num_keypoints']} keypoints, preset release)")
    return 0


def cmd_evaluate(args) -> int:
    from .api import evaluate, evaluate_predictions
    from .io import atomic_write_text, check_writable

    if (args.checkpoint is None) == (args.predictions is None):
        raise KeypointGANError("give exactly one of --checkpoint and --predictions")
    if args.json is not None:
        check_writable(args.json)  # before the evaluation, not after it
    if args.predictions is not None and args.offline_regressor is not None:
        raise KeypointGANError("--offline-regressor needs --checkpoint (it reads the rendered predictions)")
    if args.predictions is not None:
        res = evaluate_predictions(args.predictions, args.data, format=args.format, metric=args.metric)
    else:
        res = evaluate(
            args.checkpoint, args.data, device=args.device, progress=not args.quiet, format=args.format, metric=args.metric, flip_test=args.flip_test,
            offline_regressor=args.offline_regressor,
        )
    for note in res.get("notes", []):
        print(f"note: {note}")
    group = res.get("group_name", "video")
    reg = "error_regressor_flip" in res  # the release's first number beside its second (flip-corrected)
    print(f"{group:<24} {'error':>8} {'flip-corr.':>10}" + (f" {'regr.-flip':>10}" if reg else ""))
    for vid, r in res["per_video"].items():
        print(f"{vid:<24} {r['error']:>8.2f} {r['error_flip']:>10.2f}" + (f" {r['error_regressor_flip']:>10.2f}" if reg else ""))
    print(f"{'overall':<24} {res['error']:>8.2f} {res['error_flip']:>10.2f}" + (f" {res['error_regressor_flip']:>10.2f}" if reg else ""))
    unit = "% of the inter-ocular distance" if res.get("metric") == "interocular" else "% of image size"
    print(f"PCK@{res['pck_threshold']}: {res['pck']:.3f} over {res['n_frames']} frames (errors in {unit})")
    if "breakdown" in res:
        b = res["breakdown"]
        worst = max(b["per_keypoint"], key=b["per_keypoint"].get)
        print(f"where (over frames): placement {b['centroid']:.2f}, articulation {b['aligned']:.2f}, size ×{b['spread']:.2f}, "
              f"variety ×{b['variety']:.2f} of the truth's; worst keypoint {worst} {b['per_keypoint'][worst]:.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(_json_safe(res), indent=2))
    return 0


def _plain(obj):
    """Tuples → lists, for YAML that reads back as the same config."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _json_safe(obj):
    """NaN/inf → None so the file is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def cmd_predict(args) -> int:
    from .predict import predict_files

    res = predict_files(
        _predict_source(args),
        args.inputs,
        args.out,
        smooth=args.smooth,
        device=args.device,
        overlay=not args.no_overlay,
        progress=not args.quiet,
        flip_test=args.flip_test,
    )
    if res["images"] or not res["videos"]:
        print(f"wrote keypoints for {res['images']} image(s) to {args.out}")
    for v in res["videos"]:
        files = [v["json"], v["csv"]] + ([v["overlay"]] if v["overlay"] else [])
        skipped = f", {len(v['skipped'])} skipped (undecodable)" if v["skipped"] else ""
        print(f"wrote keypoints for {v['frames']} frame(s){skipped}: {', '.join(map(str, files))}")
    return 0


def _add_flip_test(parser) -> None:
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also predict each image mirrored and average (default: as the run was configured; on in cpu-64)",
    )


def _smooth_window(text: str) -> int:
    """--smooth: parsed here, checked by predict's own check (the one the API uses)."""
    from .predict import check_smooth_window

    try:
        return check_smooth_window(int(text))
    except ValueError as exc:  # InputError is a ValueError
        raise argparse.ArgumentTypeError(f"expected 0 (off) or an odd number of frames, got {text!r}"
                                         if not isinstance(exc, InputError) else exc.problem) from None


def cmd_demo(args) -> int:
    from .demo import run_demo

    over = {}
    if args.vgg_weights:
        over["vgg_weights"] = str(args.vgg_weights)
    if args.max_minutes is not None:
        over["max_minutes"] = args.max_minutes
    if args.precision is not None:
        over["precision"] = args.precision
    if args.batch_size is not None:
        over["batch_size"] = args.batch_size
    run_demo(args.out, seed=args.seed, progress=not args.quiet, **over)
    print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_report(args) -> int:
    from .report import report_run

    print(f"wrote {report_run(args.run, args.out)}")
    return 0


def cmd_diagnose(args) -> int:
    from .research.diagnose import diagnose, format_error_sources, format_preference, format_table

    res = diagnose(args.run, args.data, out=args.out, videos=args.videos, frames_per_video=args.frames, device=args.device, format=args.format,
                   fit_steps=args.fit_steps)
    print(format_table(res))
    if "pose_preference" in res:
        pref = res["pose_preference"]
        print("\nthe reconstruction's preference for the true pose" + ("" if pref["rec_loss_as_trained"] else
              f" (measured with the {pref['rec_loss']} loss: the run's VGG-19 weights are not at their path)"))
        print(format_preference(pref))
    if "error_sources" in res:
        print("\nwhere the error comes from: Φ's image (the pose that best explains it) and η's reading of it")
        print(format_error_sources(res["error_sources"]))
    return 0


_FORMATS = ["auto", "generic", "simple-human36m", "human36m", "penn-action", "300vw"]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    try:
        from .config import PRESETS
    except ImportError:  # an inference-only install without torch: predict --model, view
        PRESETS = {}

    p = argparse.ArgumentParser(
        prog="keypointgan",
        description="Learn an interpretable keypoint detector from unlabelled videos and an unpaired pose prior.",
    )
    p.add_argument("--version", action="version", version=f"keypointgan {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--max-image-pixels", type=_positive_int, metavar="N",
                   help="refuse images of more than N pixels (width × height) before decoding them "
                        "(default 64000000, or $KEYPOINTGAN_MAX_IMAGE_PIXELS)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("make-synthetic", help="write the built-in synthetic videos in the generic layout")
    s.add_argument("out", type=Path, help="output folder (must not exist or be empty)")
    s.add_argument("--videos", type=_positive_int, default=200)
    s.add_argument("--frames", type=_positive_int, default=50)
    s.add_argument("--size", type=_positive_int, default=64, help="frame size in pixels (square)")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--prior", type=_positive_int, default=5000, help="number of prior poses")
    s.add_argument("--motion-speed", type=float, default=1.0, help="time scale of every motion (0.3 slow, 3 fast)")
    s.add_argument("--figure-scale", type=float, default=1.0, help="figure height relative to the default (0.5: camera twice as far)")
    s.add_argument("--proportion-spread", type=float, default=1.0, help="variety of body proportions (0: all the same, 2: twice the default)")
    s.add_argument("--background", choices=["cluttered", "plain"], default="cluttered")
    s.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet with keypoints")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_make_synthetic)

    s = sub.add_parser("train", help="train KeypointGAN on a dataset (generic layout or a dataset format)",
                       description="Train KeypointGAN. The run's config is the preset (or the --config file) with the config flags "
                                   "given on top; --print-config shows it. Without a budget a new run trains for 10 minutes.")
    s.add_argument("--data", type=Path, help="dataset folder (generic layout or a dataset format, see --format)")
    s.add_argument("--format", default="auto", choices=_FORMATS, help="dataset format (default: recognised from the folder)")
    s.add_argument("--prior", type=Path, help="prior poses .npy/.csv/.json/.pts (default DATA/prior.npy, or the format's protocol prior)")
    s.add_argument("--skeleton", type=Path, help="skeleton YAML (default DATA/skeleton.yaml)")
    s.add_argument("--preset", choices=sorted(PRESETS), help="settings to start from (default cpu-64)")
    s.add_argument("--config", type=Path, help="config file (YAML/JSON with TrainConfig fields) layered on the preset its 'preset:' "
                                               "field names, else on --preset, else on cpu-64; the flags go on top")
    s.add_argument("--out", type=Path, help="run folder")
    s.add_argument("--print-config", action="store_true", help="print the config this command would train with (YAML, a valid --config file) and exit")
    s.add_argument("--resume", action="store_true",
                   help="continue from the run's checkpoint with its config and evaluation data; only these may change: "
                        + ", ".join("--" + f.replace("_", "-") for f in RUNTIME_FIELDS))
    s.add_argument("--regressor", type=Path, help="a pre-trained regressor (from pretrain-regressor, or the authors' "
                   "<iteration>_net_regressor.pth with --preset release)")
    s.add_argument("--eval-data", type=Path, help="dataset with keypoints for periodic evaluation")
    s.add_argument("--no-report", action="store_true", help="do not write OUT/report.html at the end")
    s.add_argument("--quiet", action="store_true", help="no progress bars or messages, only warnings and errors")
    _add_config_flags(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("pretrain-regressor", help="pre-train the keypoint regressor η on prior poses alone")
    s.add_argument("--prior", type=Path, required=True)
    s.add_argument("--skeleton", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="output checkpoint file")
    s.add_argument("--preset", default="cpu-64", choices=sorted(PRESETS))
    s.add_argument("--steps", type=_positive_int, help="pre-training steps (default: the preset's)")
    s.add_argument("--seed", type=_nonneg_int)
    s.add_argument("--device")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("import-release", help="turn the authors' released networks (<N>_net_<G_A|G_B|D_A|regressor>.pth) into a checkpoint")
    s.add_argument("folder", type=Path, help="folder of the release's .pth files (G_A and regressor needed)")
    s.add_argument("--iteration", required=True, help="the N of the file names (e.g. 580000)")
    s.add_argument("--out", type=Path, required=True, help="checkpoint file to write (refused if it exists)")
    s.add_argument("--skeleton", default="human36m", help="skeleton preset name or YAML (default: the 32-joint Simplified Human3.6M one)")
    s.set_defaults(func=cmd_import_release)

    s = sub.add_parser("evaluate", help="evaluate a checkpoint (or stored predictions) on a dataset with keypoints")
    s.add_argument("--checkpoint", type=Path, help="checkpoint file or run folder")
    s.add_argument("--predictions", type=Path, help="instead of a checkpoint: .npz/.json of video id -> T×K×2 pixel (x, y)")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--format", default="auto", choices=_FORMATS, help="dataset format (default: recognised from the folder)")
    s.add_argument("--metric", choices=["image", "interocular"], help="error in %% of image size or of the inter-ocular distance (default: the format's)")
    s.add_argument("--json", type=Path, help="also write the metrics as JSON")
    s.add_argument("--offline-regressor", type=Path,
                   help="a pre-trained regressor (the release's <N>_net_regressor.pth or a pretrain-regressor checkpoint): also report "
                        "the release's first number, the error after each prediction's left/right is set by that regressor's reading")
    _add_flip_test(s)
    s.add_argument("--device")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predict keypoints on images, folders of images or video files")
    s.add_argument("--checkpoint", type=Path, help="checkpoint file or run folder (or --model)")
    s.add_argument("inputs", type=Path, nargs="+", help="image files, folders of images, video files (.mp4 .avi .mov .mkv .webm)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--no-overlay", action="store_true", help="keypoint files only, no overlay PNGs or videos")
    _add_flip_test(s)
    s.add_argument("--smooth", type=_smooth_window, default=0, metavar="N",
                   help="videos: centred moving average of the keypoints over N frames (odd; default 0 = off)")
    s.add_argument("--device")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("report", help="write an HTML report (curves, samples, settings) for a run folder")
    s.add_argument("run", type=Path, help="run folder (holds log.jsonl)")
    s.add_argument("--out", type=Path, help="output HTML (default RUN/report.html)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("diagnose", help="measure the appearance leak through Φ's raw output vs the re-rendered keypoints, and (with keypoints) whether the reconstruction prefers the true pose")
    s.add_argument("run", type=Path, help="run folder or checkpoint")
    s.add_argument("--data", type=Path, required=True, help="dataset whose videos are used (the run's skeleton)")
    s.add_argument("--out", type=Path, help="folder for diagnose.json and diagnose.png (default: the run folder)")
    s.add_argument("--videos", type=_positive_int, default=20, help="videos used (evenly spaced; default 20)")
    s.add_argument("--frames", type=_positive_int, default=10, help="frames per video (evenly spaced; default 10)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, … (default cpu)")
    s.add_argument("--format", choices=_FORMATS, default="auto")
    s.add_argument("--fit-steps", type=_positive_int, default=300, help="Adam steps fitting the pose that best explains Φ's image (default 300)")
    s.set_defaults(func=cmd_diagnose)

    s = sub.add_parser("demo", help="synthetic data → KeypointGAN → evaluation next to baselines")
    s.add_argument("--out", type=Path, default=Path("runs/demo"))
    s.add_argument("--max-minutes", type=_positive_float, default=None, help="total time budget (default 13)")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--vgg-weights", type=Path, help="VGG-19 weights for the perceptual loss: torchvision vgg19 .pth or MatConvNet .mat")
    s.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the networks' arithmetic (default: the preset's auto, fp32 on a CPU); bf16 on a CPU with native bf16, "
                        "with --batch-size 32: about 1.4x the training images per second at the same demo error (docs/benchmarks.md)")
    s.add_argument("--batch-size", type=_positive_int, default=None, help="frame pairs per training step (default: the preset's, 16)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
    _add_deployment_commands(sub)
    return p


# ------------------------------------------------- deployment: export, predict --model, view
def _predict_source(args):
    """``predict``'s detector: ``--checkpoint`` (PyTorch) or ``--model`` (an exported .onnx file, onnxruntime)."""
    if (args.checkpoint is None) == (getattr(args, "model", None) is None):
        raise KeypointGANError("give exactly one of --checkpoint and --model")
    return args.checkpoint if args.checkpoint is not None else args.model


def cmd_export(args) -> int:
    from .export import export_onnx
    from .onnx_backend import OnnxKeypointDetector

    out = export_onnx(args.checkpoint, args.out, flip_test=args.flip_test, preprocess=args.preprocess, opset=args.opset)
    det = OnnxKeypointDetector(out)
    flip = "on" if det.flip_test else "off"
    print(f"wrote {out}: {det.skeleton.num_keypoints} keypoints, input {det.size}×{det.size}, flip test {flip}, outputs points and confidence")
    return 0


def cmd_view(args) -> int:
    from .viewer import create_app, serve

    port = _free_port(args.host, args.port)
    app = create_app(args.predictions, args.video)
    url = f"http://{args.host}:{port}/"
    print(f"viewer: {url}  (Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    serve(app, host=args.host, port=port)
    return 0


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {v}")
    return v


def _free_port(host: str, port: int) -> int:
    """``port`` (0: one the system picks) once it is known that ``host`` can serve on it, before any URL is printed."""
    import errno
    import socket

    try:
        with socket.socket() as sock:
            sock.bind((host, port))
            return sock.getsockname()[1]
    except OSError as exc:
        why = "in use by another program" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise KeypointGANError(f"cannot serve on {host}:{port}: {why} (choose another with --port, or --port 0 for any free one)") from None


def _add_deployment_commands(sub) -> None:
    sub.choices["predict"].add_argument("--model", type=Path, help="an exported .onnx detector (keypointgan export), run on onnxruntime without torch")

    s = sub.add_parser("export", help="export a checkpoint's detector (Φ → η → points + confidence) as one ONNX graph")
    s.add_argument("checkpoint", type=Path, help="checkpoint file or run folder")
    s.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    _add_flip_test(s)
    s.add_argument("--preprocess", action="store_true",
                   help="the graph takes N×H×W×3 uint8 images of any size and resizes them itself (bilinear, no antialiasing)")
    s.add_argument("--opset", type=_int_at_least(13), default=17, help="ONNX opset (default 17)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("view", help="inspect a video's predictions in the browser (a local page on 127.0.0.1)")
    s.add_argument("predictions", type=Path, help="the .json keypointgan predict wrote for a video, or its output folder")
    s.add_argument("--video", type=Path, help="the video (default: the one the predictions name)")
    s.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free port)")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.set_defaults(func=cmd_view)


_INSTALL_HINTS = {
    "torch": "pip install torch; an install without torch runs only predict --model and view",
    "starlette": "pip install 'keypointgan[view]'",
    "uvicorn": "pip install 'keypointgan[view]'",
    "onnxruntime": "pip install 'keypointgan[onnx]'",
    "onnx": "pip install 'keypointgan[onnx]'",
    "av": "pip install 'keypointgan[video]'",
    "matplotlib": "pip install matplotlib",
    "scipy": "pip install scipy",
    "docstring_parser": "pip install docstring-parser",
}
"""What to install for each dependency a command may find missing (an install without torch: README, Install)."""


def main(argv: list[str] | None = None) -> int:
    import contextlib
    import logging

    from .log import configure, end_progress_bars, warnings_as_lines

    parser = build_parser()
    args = parser.parse_args(argv)
    configure(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    from .io import set_max_image_pixels

    try:
        with contextlib.nullcontext() if args.debug else warnings_as_lines():
            if args.max_image_pixels is not None:
                set_max_image_pixels(args.max_image_pixels)
            return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if args.debug or top not in _INSTALL_HINTS:
            raise
        end_progress_bars()
        print(f"keypointgan {args.command}: error: this command needs {top}, which is not installed ({_INSTALL_HINTS[top]})", file=sys.stderr)
        return 2
    except (KeypointGANError, OSError) as exc:
        if args.debug:
            raise
        end_progress_bars()
        code = 1 if isinstance(exc, (TrainingDiverged, ProcessLost)) else 2
        if isinstance(exc, OSError) and exc.filename:
            exc = f"{exc.filename}: {exc.strerror or exc}"
        print(f"keypointgan {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return code
    except TrainingInterrupted as exc:
        if args.debug:
            raise
        end_progress_bars()
        print(f"keypointgan {args.command}: {exc}", file=sys.stderr)
        return 128 + int(exc.signum or 2)
    except KeyboardInterrupt:
        end_progress_bars()
        print(f"keypointgan {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.max_image_pixels is not None:
            set_max_image_pixels(None)  # the setting lasts one command (main may run in-process)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
