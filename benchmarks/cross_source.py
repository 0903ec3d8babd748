"""The cross-source suite: the default preset trained the documented way, through the CLI, on
independent data sources, each against the mean pose and the supervised bound.

    python benchmarks/cross_source.py [--sources default plain marionette-plain marionette-cluttered ...]
                                      [--steps 4000] [--minutes M] [--seeds 0 1] [--out runs/cross-source]

Per source and seed: ``keypointgan train --data TRAIN --prior TRAIN/prior.npy --skeleton TRAIN/skeleton.yaml
--out RUN --steps N --seed S`` (``--minutes M`` adds ``--max-minutes M``: whichever ends first), then
``keypointgan evaluate --checkpoint RUN --data TEST --json RUN/eval.json``; the mean pose of the training
prior on the same test frames; and the supervised bound (:func:`keypointgan.research.supervised.train_supervised`:
the run's networks, ``--supervised-ratio`` × N steps, default 1: as many steps, on the training videos'
true keypoints).  Prints the table of :mod:`fidelity` (error, mean pose, ratio, ratio to supervised;
means over seeds) and the breakdown per run (placement, articulation, size, variety, the worst
keypoint), and writes ``OUT/cross_source.json`` after every run.

Sources:

* the built-in generator's variants (``benchmarks/fidelity.py``'s ``VARIANTS``: ``default``, ``plain``,
  ``fast``, …), generated as that suite does (``--videos`` × ``--frames``, per seed), the last 10%
  of the videos held out as the test set;
* ``marionette-plain`` and ``marionette-cluttered``: an independently written renderer,
  ``../shared/datasets/marionette.py`` beside the repository (skipped with a printed note when it is
  not there): training set ``--marionette-videos`` × ``--marionette-frames`` (120 × 40), prior
  ``--marionette-prior`` (4000), seed 11; test set 30 × 20, seed 12, with keypoints; the same data
  for every training seed.

**The error** is the evaluation's ``error_flip``: per frame the smaller of the errors against the truth
and against its left/right swap, the paper's protocol (``../shared/DESIGN.md`` §1).  A skeleton image does
not show which side is left, so η can only label sides by where they are drawn; the marionettes face
either way, video by video, and without the correction a run that reads every limb right is charged for
every back-facing figure.  The mean pose gets the same correction.  Each row also keeps both without it
(``error_unflipped``, ``mean_pose_unflipped``, ``ratio_mean_pose_unflipped``).

**The marionettes' units.**  The renderer draws with PIL at the float coordinates it writes, and PIL
puts the centre of pixel column ``j`` at ``x = j + 0.5`` (measured: discs and limb polygons drawn at
``c`` have their pixel centroid at ``c − 0.5`` in numpy indices).  Its ``keypoints/*.npy`` are
therefore half a pixel right of and below the drawing in this project's pixel units (centre of column
``j`` at ``x = j``), and are converted here, ``x − 0.5``; its ``prior.npy`` (``pixel / size``) is
already this project's unit ``(x + 0.5) / width`` and is kept as written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity  # noqa: E402  (the built-in variants, the summary and the tables)

from keypointgan.api import make_eval_set  # noqa: E402
from keypointgan.checkpoint import load_networks  # noqa: E402
from keypointgan.cli import main as cli  # noqa: E402
from keypointgan.data import Layout, load_prior  # noqa: E402
from keypointgan.demo import mean_pose_metrics  # noqa: E402
from keypointgan.research.supervised import train_supervised  # noqa: E402

MARIONETTE = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "marionette.py"
MARIONETTES = {"marionette-plain": True, "marionette-cluttered": False}  # name → --plain
SOURCES = [*fidelity.VARIANTS, *MARIONETTES]
BARS = "marionette-plain ≤ 0.45, marionette-cluttered ≤ 0.55, default ≤ 0.36 (issue 27)"
PIL_OFFSET = 0.5
"""The marionettes' keypoint files are in PIL's units: this project's pixel ``x`` is theirs minus this."""


def split_builtin(out: Path, name: str, seed: int, videos: int, frames: int, prior: int) -> tuple[Path, Path]:
    """Train and test folders (links into the variant's dataset, generated as ``fidelity`` does) of a
    built-in variant: the last :func:`fidelity.held_out` videos are the test set."""
    root = fidelity.dataset(out, name, videos, frames, seed, prior)
    lay = Layout(root)
    train, test = fidelity.split_videos(lay, n_test=fidelity.held_out(videos))
    folders = []
    for part, vids in (("train", train), ("test", test)):
        dst = out / "data" / f"{name}-seed{seed}-{part}"
        if not (dst / "skeleton.yaml").is_file():
            tmp = dst.with_name(dst.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "videos").mkdir(parents=True)
            (tmp / "keypoints").mkdir()
            for v in vids:
                (tmp / "videos" / v.id).symlink_to((root / "videos" / v.id).resolve())
                if v.keypoints_path is not None:
                    (tmp / "keypoints" / f"{v.id}.npy").symlink_to(v.keypoints_path.resolve())
            (tmp / "prior.npy").symlink_to((root / "prior.npy").resolve())
            shutil.copy(root / "skeleton.yaml", tmp / "skeleton.yaml")
            tmp.rename(dst)
        folders.append(dst)
    return folders[0], folders[1]


def marionette_data(dst: Path, *, videos: int, frames: int, seed: int, prior: int, plain: bool) -> Path:
    """``marionette.py`` run into ``dst`` (kept and reused when there), with keypoints, its keypoint
    files converted to this project's pixel units (module docs).  Written to ``dst.partial`` first."""
    if (dst / "skeleton.yaml").is_file():
        return dst
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, str(MARIONETTE), str(tmp), "--videos", str(videos), "--frames", str(frames), "--seed", str(seed), "--with-keypoints"]
    cmd += (["--prior", str(prior)] if prior else []) + (["--plain"] if plain else [])
    subprocess.run(cmd, check=True)
    for f in sorted((tmp / "keypoints").glob("*.npy")):
        np.save(f, (np.load(f) - PIL_OFFSET).astype(np.float32))
    tmp.rename(dst)
    return dst


def source_data(out: Path, name: str, seed: int, args) -> tuple[Path, Path] | None:
    """``(train, test)`` folders of source ``name``, or None (with a printed note) when it cannot be made here."""
    if name in MARIONETTES:
        if not MARIONETTE.is_file():
            print(f"note: {name} skipped: {MARIONETTE} is not there", flush=True)
            return None
        plain, kind = MARIONETTES[name], name.split("-")[1]
        train = marionette_data(out / "data" / f"marionette-{kind}-train", videos=args.marionette_videos, frames=args.marionette_frames,
                                seed=11, prior=args.marionette_prior, plain=plain)
        test = marionette_data(out / "data" / f"marionette-{kind}-test", videos=args.marionette_test_videos,
                               frames=args.marionette_test_frames, seed=12, prior=0, plain=plain)
        return train, test
    return split_builtin(out, name, seed, args.videos, args.frames, args.prior)


def run_source(out: Path, name: str, train: Path, test: Path, *, seed: int, steps: int, minutes: float | None,
               supervised_ratio: float, bound: bool, train_args: list[str]) -> dict:
    """Train (CLI), evaluate (CLI), the mean pose and the supervised bound of one source and seed."""
    t0 = time.perf_counter()
    run = out / "runs" / f"{name}-seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    budget = ["--steps", str(steps)] + (["--max-minutes", str(minutes)] if minutes else [])
    argv = ["train", "--data", str(train), "--prior", str(train / "prior.npy"), "--skeleton", str(train / "skeleton.yaml"),
            "--out", str(run), *budget, "--seed", str(seed), "--quiet", "--no-report", *train_args]
    if cli(argv) != 0:
        raise SystemExit(f"keypointgan {' '.join(argv)} failed")
    if cli(["evaluate", "--checkpoint", str(run), "--data", str(test), "--json", str(run / "eval.json"), "--quiet"]) != 0:
        raise SystemExit(f"keypointgan evaluate on {run} failed")
    ev = json.loads((run / "eval.json").read_text())
    train_lay, test_lay = Layout(train), Layout(test)
    net = load_networks(run, names=())
    es = make_eval_set(test_lay, test_lay.videos, net.config.model.size)
    base = mean_pose_metrics(load_prior(train_lay.prior_path, train_lay.skeleton), es, test_lay.skeleton)
    step = int(net.state.get("step", 0))
    sup = (train_supervised(net.config, train_lay, train_lay.videos, es, minutes=minutes, steps=max(1, round(supervised_ratio * step)),
                            progress=False) if bound else {"error": None, "steps": None})
    sup_error = sup.get("error_flip", sup["error"])
    return {
        "variant": name, "seed": seed, "train": str(train), "test": str(test), "run": str(run),
        "keypoints": test_lay.skeleton.num_keypoints, "test_frames": int(ev["n_frames"]), "steps": step, "supervised_steps": sup["steps"],
        "error": ev["error_flip"], "mean_pose": base["error_flip"], "supervised": sup_error,
        "ratio_mean_pose": ev["error_flip"] / base["error_flip"], "ratio_supervised": ev["error_flip"] / sup_error if sup_error else None,
        "error_unflipped": ev["error"], "mean_pose_unflipped": base["error"], "ratio_mean_pose_unflipped": ev["error"] / base["error"],
        "minutes": (time.perf_counter() - t0) / 60, "breakdown": ev["breakdown"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", nargs="+", default=["default", "plain", "fast", "few-videos", "marionette-plain", "marionette-cluttered"],
                    choices=SOURCES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--steps", type=int, default=4000, help="GAN steps per run (default 4000)")
    ap.add_argument("--minutes", type=float, default=None, help="also a time budget per run (whichever ends first; the bound gets as long)")
    ap.add_argument("--supervised-ratio", type=float, default=1.0, help="supervised steps per GAN step (default 1: as many)")
    ap.add_argument("--no-supervised", action="store_true", help="do not train the supervised bound")
    ap.add_argument("--videos", type=int, default=100, help="built-in sources: videos (the last 10%% held out)")
    ap.add_argument("--frames", type=int, default=40, help="built-in sources: frames per video")
    ap.add_argument("--prior", type=int, default=5000, help="built-in sources: prior poses")
    ap.add_argument("--marionette-videos", type=int, default=120)
    ap.add_argument("--marionette-frames", type=int, default=40)
    ap.add_argument("--marionette-prior", type=int, default=4000)
    ap.add_argument("--marionette-test-videos", type=int, default=30)
    ap.add_argument("--marionette-test-frames", type=int, default=20)
    ap.add_argument("--train-args", default="", help="extra flags for keypointgan train, one string (e.g. '--pretrain-steps 200')")
    ap.add_argument("--out", type=Path, default=Path("runs/cross-source"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "steps": args.steps, "minutes": args.minutes, "supervised_ratio": args.supervised_ratio,
              "train_args": args.train_args, "marionette_keypoints": f"marionette.py's keypoints − {PIL_OFFSET} px (PIL pixel centres)",
              "skipped": [], "rows": []}
    for name in args.sources:
        for seed in args.seeds:
            data = source_data(args.out, name, seed, args)
            if data is None:
                result["skipped"].append(name)
                break
            r = run_source(args.out, name, *data, seed=seed, steps=args.steps, minutes=args.minutes, supervised_ratio=args.supervised_ratio,
                           bound=not args.no_supervised, train_args=args.train_args.split())
            result["rows"].append(r)
            sup = f"supervised {r['supervised']:.2f} ({r['ratio_supervised']:.2f}×)" if r["supervised"] else "supervised not trained"
            print(f"{name} seed {seed}: error {r['error']:.2f}, mean pose {r['mean_pose']:.2f} ({r['ratio_mean_pose']:.2f}×), "
                  f"{sup}, {r['steps']} steps, {r['minutes']:.1f} min; without the flip correction {r['error_unflipped']:.2f}, "
                  f"mean pose {r['mean_pose_unflipped']:.2f} ({r['ratio_mean_pose_unflipped']:.2f}×)", flush=True)
            result["summary"] = fidelity.summarise(result["rows"])
            (args.out / "cross_source.json").write_text(json.dumps(result, indent=2))
    result["summary"] = fidelity.summarise(result["rows"])
    (args.out / "cross_source.json").write_text(json.dumps(result, indent=2))
    print(fidelity.table(result["summary"], bar=BARS))
    print(fidelity.breakdown_table(result["rows"]))
    return result


if __name__ == "__main__":
    main()
