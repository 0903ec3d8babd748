"""``keypointgan <command>``: a thin layer over the Python API.

Every command parses its flags, calls one library function and prints what it
returned.  Errors the user can fix (:class:`~keypointgan.errors.InputError`)
are printed as one line and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import KeypointGANError


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
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


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(
        prog="keypointgan",
        description="Learn an interpretable keypoint detector from unlabelled videos and an unpaired pose prior.",
    )
    p.add_argument("--version", action="version", version=f"keypointgan {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeypointGANError as exc:
        if args.debug:
            raise
        print(f"keypointgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keypointgan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
