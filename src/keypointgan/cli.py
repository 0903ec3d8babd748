"""``keypointgan <command>``: a thin layer over the Python API.

Every command parses its flags, calls one library function and prints what it
returned.  Errors the user can fix (:class:`~keypointgan.errors.InputError`)
are printed as one line and exit with code 2; ``--debug`` shows the traceback.
A run stopped for NaN/Inf losses exits with 1; one stopped by SIGINT/SIGTERM
(after saving a checkpoint) with 128 + the signal number (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .errors import KeypointGANError, TrainingDiverged, TrainingInterrupted, one_line


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

    cfg = SyntheticConfig(videos=args.videos, frames=args.frames, size=args.size, seed=args.seed, prior=args.prior)
    t0 = time.perf_counter()
    out = make_synthetic(args.out, cfg, preview=args.preview, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.videos} videos × {cfg.frames} frames at {cfg.size} px and {cfg.prior} prior poses to {out} in {dt:.1f} s")
    if args.preview:
        print(f"preview: {Path(out) / 'preview.png'}")
    return 0


def _overrides(args) -> dict:
    out = {}
    for name in ("steps", "max_minutes", "seed", "device", "batch_size", "vgg_weights", "pretrain_steps", "num_threads"):
        v = getattr(args, name, None)
        if v is not None:
            out[name] = str(v) if name == "vgg_weights" else v
    if getattr(args, "no_bottleneck", False):
        out["bottleneck"] = False
    if getattr(args, "no_discriminator", False):
        out["discriminator"] = False
    return out


def cmd_train(args) -> int:
    from .api import train
    from .config import load_config

    over = _overrides(args)
    config = load_config(args.config) if args.config is not None else None
    has_budget = config is not None and (config.steps is not None or config.max_minutes is not None)
    if not args.resume and not has_budget and over.get("steps") is None and over.get("max_minutes") is None:
        over["max_minutes"] = 10.0
    res = train(
        args.data, args.out, prior=args.prior, skeleton=args.skeleton, preset=args.preset, config=config, resume=args.resume,
        regressor=args.regressor, eval_data=args.eval_data, progress=not args.quiet, report=not args.no_report,
        format=args.format, **over,
    )
    print(f"checkpoint: {Path(args.out) / 'checkpoints' / 'latest.pt'}")
    if not args.no_report:
        print(f"report: {Path(args.out) / 'report.html'}")
    if res:
        print(f"error {res['error']:.2f}  flip-corrected {res['error_flip']:.2f}  PCK {res['pck']:.3f}  ({res['n_frames']} frames, % of image size)")
    return 0


def cmd_pretrain(args) -> int:
    from .api import pretrain_regressor

    over = {k: v for k, v in _overrides(args).items() if k in ("seed", "device")}
    if args.steps is not None:
        over["pretrain_steps"] = args.steps
    res = pretrain_regressor(args.prior, args.skeleton, args.out, preset=args.preset, progress=not args.quiet, **over)
    print(f"wrote {args.out}: {res['pretrain_steps']} steps, final MSE {res['pretrain_mse']:.2e}")
    return 0


def cmd_evaluate(args) -> int:
    from .api import evaluate, evaluate_predictions
    from .io import atomic_write_text, check_writable

    if (args.checkpoint is None) == (args.predictions is None):
        raise KeypointGANError("give exactly one of --checkpoint and --predictions")
    if args.json is not None:
        check_writable(args.json)  # before the evaluation, not after it
    if args.predictions is not None:
        res = evaluate_predictions(args.predictions, args.data, format=args.format, metric=args.metric)
    else:
        res = evaluate(
            args.checkpoint, args.data, device=args.device, progress=not args.quiet, format=args.format, metric=args.metric, flip_test=args.flip_test
        )
    for note in res.get("notes", []):
        print(f"note: {note}")
    group = res.get("group_name", "video")
    print(f"{group:<24} {'error':>8} {'flip-corr.':>10}")
    for vid, r in res["per_video"].items():
        print(f"{vid:<24} {r['error']:>8.2f} {r['error_flip']:>10.2f}")
    print(f"{'overall':<24} {res['error']:>8.2f} {res['error_flip']:>10.2f}")
    unit = "% of the inter-ocular distance" if res.get("metric") == "interocular" else "% of image size"
    print(f"PCK@{res['pck_threshold']}: {res['pck']:.3f} over {res['n_frames']} frames (errors in {unit})")
    if args.json:
        atomic_write_text(args.json, json.dumps(_json_safe(res), indent=2))
    return 0


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
        args.checkpoint,
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
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or an odd number of frames, got {text!r}") from None
    if v < 0 or (v > 1 and v % 2 == 0):
        raise argparse.ArgumentTypeError(f"expected 0 (off) or an odd number of frames, got {v}")
    return v


def cmd_demo(args) -> int:
    from .demo import run_demo

    over = {}
    if args.vgg_weights:
        over["vgg_weights"] = str(args.vgg_weights)
    if args.max_minutes is not None:
        over["max_minutes"] = args.max_minutes
    run_demo(args.out, seed=args.seed, progress=not args.quiet, **over)
    print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_report(args) -> int:
    from .report import report_run

    print(f"wrote {report_run(args.run, args.out)}")
    return 0


_FORMATS = ["auto", "generic", "simple-human36m", "human36m", "penn-action", "300vw"]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .config import PRESETS

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
    s.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet with keypoints")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_make_synthetic)

    def budget(s):
        s.add_argument("--steps", type=_nonneg_int, help="training steps")
        s.add_argument("--max-minutes", type=_positive_float, help="training time budget in minutes (after η pre-training)")
        s.add_argument("--seed", type=_nonneg_int)
        s.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
        s.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("train", help="train KeypointGAN on a dataset (generic layout or a dataset format)")
    s.add_argument("--data", type=Path, required=True, help="dataset folder (generic layout or a dataset format, see --format)")
    s.add_argument("--format", default="auto", choices=_FORMATS, help="dataset format (default: recognised from the folder)")
    s.add_argument("--prior", type=Path, help="prior poses .npy/.csv/.json/.pts (default DATA/prior.npy, or the format's protocol prior)")
    s.add_argument("--skeleton", type=Path, help="skeleton YAML (default DATA/skeleton.yaml)")
    s.add_argument("--preset", default="cpu-64", choices=sorted(PRESETS))
    s.add_argument("--config", type=Path, help="config file (YAML/JSON with TrainConfig fields); replaces --preset")
    s.add_argument("--out", type=Path, required=True, help="run folder")
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.pt")
    s.add_argument("--regressor", type=Path, help="a pre-trained regressor (from pretrain-regressor)")
    s.add_argument("--eval-data", type=Path, help="dataset with keypoints for periodic evaluation")
    s.add_argument("--batch-size", type=_positive_int)
    s.add_argument("--pretrain-steps", type=_nonneg_int, help="regressor pre-training steps")
    s.add_argument("--vgg-weights", type=Path, help="VGG-19 weights for the perceptual loss: torchvision vgg19 .pth or MatConvNet imagenet-vgg-verydeep-19.mat")
    s.add_argument("--no-bottleneck", action="store_true", help="ablation: Ψ sees Φ(x) instead of β(η(Φ(x)))")
    s.add_argument("--no-discriminator", action="store_true", help="ablation: no adversarial term")
    s.add_argument("--num-threads", type=_positive_int, help="torch CPU threads")
    s.add_argument("--no-report", action="store_true", help="do not write OUT/report.html at the end")
    budget(s)
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

    s = sub.add_parser("evaluate", help="evaluate a checkpoint (or stored predictions) on a dataset with keypoints")
    s.add_argument("--checkpoint", type=Path, help="checkpoint file or run folder")
    s.add_argument("--predictions", type=Path, help="instead of a checkpoint: .npz/.json of video id -> T×K×2 pixel (x, y)")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--format", default="auto", choices=_FORMATS, help="dataset format (default: recognised from the folder)")
    s.add_argument("--metric", choices=["image", "interocular"], help="error in %% of image size or of the inter-ocular distance (default: the format's)")
    s.add_argument("--json", type=Path, help="also write the metrics as JSON")
    _add_flip_test(s)
    s.add_argument("--device")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predict keypoints on images, folders of images or video files")
    s.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file or run folder")
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

    s = sub.add_parser("demo", help="synthetic data → KeypointGAN → evaluation next to baselines")
    s.add_argument("--out", type=Path, default=Path("runs/demo"))
    s.add_argument("--max-minutes", type=_positive_float, default=None, help="total time budget (default 13)")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--vgg-weights", type=Path, help="VGG-19 weights for the perceptual loss: torchvision vgg19 .pth or MatConvNet .mat")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .io import set_max_image_pixels

    try:
        if args.max_image_pixels is not None:
            set_max_image_pixels(args.max_image_pixels)
        return int(args.func(args) or 0)
    except (KeypointGANError, OSError) as exc:
        if args.debug:
            raise
        code = 1 if isinstance(exc, TrainingDiverged) else 2
        if isinstance(exc, OSError) and exc.filename:
            exc = f"{exc.filename}: {exc.strerror or exc}"
        print(f"keypointgan {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return code
    except TrainingInterrupted as exc:
        if args.debug:
            raise
        print(f"keypointgan {args.command}: {exc}", file=sys.stderr)
        return 128 + int(exc.signum or 2)
    except KeyboardInterrupt:
        print(f"keypointgan {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.max_image_pixels is not None:
            set_max_image_pixels(None)  # the setting lasts one command (main may run in-process)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
