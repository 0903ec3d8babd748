"""Bad input everywhere a user can reach: one line naming the file and the problem, a non-zero exit code.

Every case of the table in docs/robustness.md is one entry of CASES: the files it
prepares, the command it runs and the exact line the command prints on stderr.
``test_robustness_doc_matches_the_tests`` checks that the table and CASES agree.
Commands run in-process (``keypointgan.cli.main``) with relative paths from a
temporary folder, so the printed line is compared exactly; the subprocess tests in
test_cli.py check the same path through a real process (exit code, no traceback).
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_config
from keypointgan.checkpoint import save_checkpoint
from keypointgan.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"


# ------------------------------------------------------------------ set-ups
def data(env):
    """A fresh copy of the tiny synthetic dataset as ./data."""
    shutil.copytree(env["tiny_data"], "data")
    return Path("data")


def run(env):
    """A copy of a trained tiny run (1 step) as ./run."""
    shutil.copytree(env["tiny_run"], "run")
    return Path("run")


def frame(d, i=3):
    return d / "videos" / "v0000" / f"{i:06d}.png"


def edit_skeleton(d, old, new):
    p = d / "skeleton.yaml"
    p.write_text(p.read_text().replace(old, new, 1))


def write_config(path, **over):
    cfg = tiny_config(**over).to_dict()
    Path(path).write_text(yaml.safe_dump(cfg))


def renamed_head(d):
    """The dataset's skeleton with keypoint 'head' renamed 'top' (same K, another skeleton)."""
    p = d / "skeleton.yaml"
    p.write_text(re.sub(r"\bhead\b", "top", p.read_text()))


def truncated_checkpoint(env):
    src = Path(env["tiny_run"]) / "checkpoints" / "latest.pt"
    b = src.read_bytes()
    Path("half.pt").write_bytes(b[: len(b) // 2])


def png_header(path, width, height):
    """A small PNG file that declares ``width × height`` RGB pixels (a decompression bomb's header).

    The image data is a few bytes, so decoding it would fail as truncated; the header is what
    PIL reads on open, and what the pixel budget is checked against before decoding.
    """
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def image_folder(name="D", names=("a.png", "b.png", "c.png")):
    from keypointgan.io import write_image

    d = Path(name)
    for i, n in enumerate(names):
        write_image(d / n, np.full((16, 16, 3), 40 * i, np.uint8))
    return d


def one_frame_videos(d):
    """Every video of the dataset cut to its first frame."""
    for v in (d / "videos").iterdir():
        for f in sorted(v.iterdir())[1:]:
            f.unlink()


def pts_next_to_garbage():
    Path("a.pts").write_text("version: 1\nn_points: 15\n{\n" + "3 4\n" * 15 + "}\n")
    Path("a.png").write_bytes(b"not an image")


def coco_zero_width():
    import json

    Path("coco.json").write_text(json.dumps({"images": [{"id": 1, "width": 0, "height": 32}],
                                             "annotations": [{"image_id": 1, "keypoints": [1, 2, 2] * 15}]}))


class _Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


TRAIN = ["train", "--data", "data", "--out", "out", "--steps", "1", "--quiet", "--no-report"]
EVAL = ["evaluate", "--data", "data", "--quiet"]

# id -> (case, set-up, argv, exact stderr line)
CASES = {
    "data-missing": ("dataset folder does not exist", lambda e: None,
                     ["train", "--data", "nope", "--out", "out", "--steps", "1"],
                     "keypointgan train: error: nope: dataset folder not found"),
    "no-videos-folder": ("dataset folder without videos/", lambda e: Path("empty").mkdir(),
                         ["train", "--data", "empty", "--out", "out", "--steps", "1"],
                         "keypointgan train: error: empty: dataset has no videos/ folder (generic layout) and is in none of the dataset formats: S*/WithBackground (simple-human36m), S*/MyPoseFeatures/D2_Positions (human36m), frames/ + labels/ (penn-action), */annot/*.pts (300vw)"),
    "empty-videos": ("videos/ holds no frames", lambda e: [shutil.rmtree(p) for p in sorted((data(e) / "videos").iterdir())],
                     TRAIN, "keypointgan train: error: data/videos: videos/ holds no video folders with image frames (.png/.jpg) and no video files (.mp4 .avi .mov .mkv .webm)"),
    "image-garbage": ("a frame that is not an image", lambda e: frame(data(e)).write_bytes(b"this is not a PNG"),
                      TRAIN, "keypointgan train: error: data/videos/v0000/000003.png: cannot read image: not an image format PIL knows, or a corrupt header"),
    "image-empty": ("an empty (0-byte) frame", lambda e: frame(data(e)).write_bytes(b""),
                    TRAIN, "keypointgan train: error: data/videos/v0000/000003.png: cannot read image: the file is empty"),
    "image-truncated": ("a truncated frame (half a PNG)",
                        lambda e: (lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]))(frame(data(e))),
                        TRAIN, "keypointgan train: error: data/videos/v0000/000003.png: cannot read image: the file is truncated"),
    "prior-missing": ("prior file does not exist", data, TRAIN + ["--prior", "nope.npy"],
                      "keypointgan train: error: nope.npy: prior file not found"),
    "prior-wrong-k": ("prior with another number of keypoints",
                      lambda e: np.save(data(e) / "prior.npy", np.full((5, 3, 2), 0.5, np.float32)),
                      TRAIN, "keypointgan train: error: data/prior.npy: prior has K=3 keypoints but the skeleton 'synthetic' has 15"),
    "prior-nan": ("prior with NaN values",
                  lambda e: np.save(data(e) / "prior.npy", np.where(np.arange(30).reshape(1, 15, 2) == 7, np.nan, np.full((4, 15, 2), 0.5)).astype(np.float32)),
                  TRAIN, "keypointgan train: error: data/prior.npy: prior contains NaN values (in 4 of 4 poses)"),
    "prior-inf": ("prior with infinite values",
                  lambda e: np.save(data(e) / "prior.npy", np.full((4, 15, 2), np.inf, np.float32)),
                  TRAIN, "keypointgan train: error: data/prior.npy: prior contains infinite values"),
    "prior-pixels": ("prior in pixels instead of [0, 1]",
                     lambda e: np.save(data(e) / "prior.npy", np.full((4, 15, 2), 40.0, np.float32)),
                     TRAIN, "keypointgan train: error: data/prior.npy: prior values span [40, 40] but must be in [0, 1] as ((x + 0.5) / width, (y + 0.5) / height) — these look like pixel coordinates"),
    "prior-shape": ("prior of the wrong shape",
                    lambda e: np.save(data(e) / "prior.npy", np.zeros((4, 15), np.float32)),
                    TRAIN, "keypointgan train: error: data/prior.npy: prior must have shape (N, K, 2), got (4, 15)"),
    "prior-object-array": ("prior .npy holding pickled objects",
                           lambda e: np.save(data(e) / "prior.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True),
                           TRAIN, "keypointgan train: error: data/prior.npy: cannot read prior as .npy (Object arrays cannot be loaded when allow_pickle=False)"),
    "skeleton-missing": ("skeleton file does not exist", data, TRAIN + ["--skeleton", "nope.yaml"],
                         "keypointgan train: error: nope.yaml: skeleton file not found"),
    "skeleton-syntax": ("skeleton YAML with a syntax error", lambda e: (data(e) / "skeleton.yaml").write_text("keypoints: [a, b\nlimbs: [[a, b]]\n"),
                        TRAIN, "keypointgan train: error: data/skeleton.yaml: not valid YAML (expected ',' or ']', but got ':' at line 2, column 6)"),
    "skeleton-no-limbs": ("skeleton without a limbs field", lambda e: (data(e) / "skeleton.yaml").write_text("keypoints: [a, b]\n"),
                          TRAIN, "keypointgan train: error: data/skeleton.yaml: skeleton has no 'limbs' field"),
    "skeleton-unknown-limb": ("limb naming an unknown keypoint", lambda e: edit_skeleton(data(e), "[head, neck]", "[head, nose]"),
                              TRAIN, "keypointgan train: error: data/skeleton.yaml: limb ['head', 'nose'] names unknown keypoint 'nose'"),
    "skeleton-duplicate": ("duplicate keypoint names", lambda e: edit_skeleton(data(e), "keypoints: [head, neck,", "keypoints: [neck, neck,"),
                           TRAIN, "keypointgan train: error: data/skeleton.yaml: duplicate keypoint name(s): neck"),
    "keypoints-frames": ("keypoint file with fewer frames than its video",
                         lambda e: np.save(data(e) / "keypoints" / "v0000.npy", np.zeros((7, 15, 2), np.float32)),
                         TRAIN + ["--eval-data", "data"], "keypointgan train: error: data/keypoints/v0000.npy: keypoints hold 7 frames but the video has 8"),
    "eval-no-keypoints": ("evaluation data without keypoints/", lambda e: shutil.rmtree(data(e) / "keypoints"),
                          TRAIN + ["--eval-data", "data"], "keypointgan train: error: data: evaluation data has no keypoints to evaluate against"),
    "checkpoint-missing": ("checkpoint file does not exist", data, EVAL + ["--checkpoint", "nope.pt"],
                           "keypointgan evaluate: error: nope.pt: checkpoint not found"),
    "checkpoint-garbage": ("a garbage file as checkpoint", lambda e: (data(e), Path("x.pt").write_bytes(b"garbage")),
                           EVAL + ["--checkpoint", "x.pt"], "keypointgan evaluate: error: x.pt: not a readable checkpoint: not a file written by torch.save"),
    "checkpoint-empty": ("an empty checkpoint file", lambda e: (data(e), Path("x.pt").write_bytes(b"")),
                         EVAL + ["--checkpoint", "x.pt"], "keypointgan evaluate: error: x.pt: not a readable checkpoint: the file is empty"),
    "checkpoint-truncated": ("a truncated checkpoint (half the file)", lambda e: (data(e), truncated_checkpoint(e)),
                             EVAL + ["--checkpoint", "half.pt"], "keypointgan evaluate: error: half.pt: not a readable checkpoint: the file is truncated or not written by torch.save"),
    "checkpoint-pickle": ("a checkpoint that would run code when unpickled",
                          lambda e: (data(e), torch.save({"format": "keypointgan-checkpoint", "nets": _Payload()}, "evil.pt")),
                          EVAL + ["--checkpoint", "evil.pt"],
                          "keypointgan evaluate: error: evil.pt: refusing to load: the file holds objects other than tensors and plain data (loading it could run code)"),
    "checkpoint-foreign": ("a torch file that is not a keypointgan checkpoint", lambda e: (data(e), torch.save({"w": torch.zeros(2)}, "w.pt")),
                           EVAL + ["--checkpoint", "w.pt"],
                           "keypointgan evaluate: error: w.pt: not a keypointgan checkpoint (a torch file without the keypointgan format marker)"),
    "checkpoint-regressor": ("a regressor-only checkpoint used to predict",
                             lambda e: (data(e), save_checkpoint({"format": "keypointgan-checkpoint", "kind": "regressor", "nets": {"eta": {}}}, "eta.pt")),
                             EVAL + ["--checkpoint", "eta.pt"],
                             "keypointgan evaluate: error: eta.pt: a regressor-only checkpoint (from pretrain-regressor) cannot predict; give a training run's checkpoint"),
    "checkpoint-other-skeleton": ("evaluate on data whose skeleton differs from the model's", lambda e: (run(e), renamed_head(data(e))),
                                  EVAL + ["--checkpoint", "run"],
                                  "keypointgan evaluate: error: data/skeleton.yaml: this dataset's skeleton differs from the model's (names, order or limbs)"),
    "resume-other-skeleton": ("resume with data of another skeleton", lambda e: (run(e), renamed_head(data(e))),
                              ["train", "--data", "data", "--out", "run", "--resume", "--steps", "2", "--quiet", "--no-report"],
                              "keypointgan train: error: run/checkpoints/latest.pt: the checkpoint was trained with another skeleton than this dataset's"),
    "resume-nothing": ("--resume without a checkpoint", data, ["train", "--data", "data", "--out", "fresh", "--resume", "--steps", "2"],
                       "keypointgan train: error: fresh: nothing to resume: no checkpoints/latest.pt"),
    "resume-change-config": ("--resume with a different batch size", lambda e: (run(e), data(e)),
                             ["train", "--data", "data", "--out", "run", "--resume", "--steps", "2", "--batch-size", "8"],
                             "keypointgan train: error: run/checkpoints/latest.pt: cannot change batch_size when resuming (the run has 4)"),
    "out-has-checkpoint": ("a fresh run into a folder holding a checkpoint", lambda e: (run(e), data(e)),
                           ["train", "--data", "data", "--out", "run", "--steps", "2"],
                           "keypointgan train: error: run: run folder already holds a checkpoint; use --resume or another --out"),
    "flag-negative-steps": ("--steps -3", data, ["train", "--data", "data", "--out", "out", "--steps", "-3"],
                            "keypointgan train: error: steps must be >= 0, got -3"),
    "flag-zero-minutes": ("--max-minutes 0", data, ["train", "--data", "data", "--out", "out", "--max-minutes", "0"],
                          "keypointgan train: error: max_minutes must be positive, got 0.0"),
    "flag-lr-inf": ("--lr inf (a non-finite learning rate)", data, TRAIN + ["--lr", "inf"],
                    "keypointgan train: error: lr must be finite, got inf"),
    "flag-weight-nan": ("--w-rec nan (any non-finite loss weight)", data, TRAIN + ["--w-rec", "nan"],
                        "keypointgan train: error: w_rec must be finite, got nan"),
    "flag-huge-seed": ("--seed 99999999999999999999", data, TRAIN + ["--seed", "99999999999999999999"],
                       "keypointgan train: error: seed must be in [0, 4294967295], got 99999999999999999999"),
    "flag-betas": ("--betas 2 2", data, TRAIN + ["--betas", "2", "2"],
                   "keypointgan train: error: betas must be (β1, β2) with each in [0, 1), got (2.0, 2.0)"),
    "flag-huge-size": ("--model.size 100000 (checked before anything is allocated or written)", data, TRAIN + ["--model.size", "100000"],
                       "keypointgan train: error: model size must be a multiple of 8 from 16 to 1024, got 100000"),
    "pretrain-out-folder": ("pretrain-regressor --out naming a folder (checked before training)",
                            lambda e: (data(e), Path("eta").mkdir()),
                            ["pretrain-regressor", "--prior", "data/prior.npy", "--skeleton", "data/skeleton.yaml", "--out", "eta", "--quiet"],
                            "keypointgan pretrain-regressor: error: eta: is a folder; give a file name"),
    "flag-batch-size": ("--batch-size 1", data, TRAIN + ["--batch-size", "1"],
                        "keypointgan train: error: batch size must be at least 2, got 1"),
    "flag-batch-too-big": ("a batch larger than the dataset", data, TRAIN + ["--batch-size", "64"],
                           "keypointgan train: error: the training videos hold 32 frames, fewer than the batch size 64"),
    "flag-device": ("an unknown --device", data, TRAIN + ["--device", "tpu9"],
                    "keypointgan train: error: unknown device 'tpu9'"),
    "config-unknown-field": ("config file with an unknown field",
                             lambda e: (data(e), Path("c.yaml").write_text("learning_rate: 0.1\n")),
                             TRAIN + ["--config", "c.yaml"], "keypointgan train: error: c.yaml: unknown config field(s): learning_rate"),
    "config-bad-type": ("config value of the wrong type", lambda e: (data(e), Path("c.yaml").write_text("lr: fast\n")),
                        TRAIN + ["--config", "c.yaml"], "keypointgan train: error: c.yaml: config field lr must be float, got 'fast'"),
    "config-out-of-range": ("config value out of range", lambda e: (data(e), write_config("c.yaml", ema_decay=1.5)),
                            TRAIN + ["--config", "c.yaml"], "keypointgan train: error: c.yaml: ema_decay must be in [0, 1), got 1.5"),
    "vgg-missing": ("--vgg-weights file does not exist", data, TRAIN + ["--vgg-weights", "vgg.pth"],
                    "keypointgan train: error: vgg.pth: VGG-19 weights file not found"),
    "predict-missing-input": ("predict on a file that does not exist", run, ["predict", "--checkpoint", "run", "nope.png", "--out", "pred", "--quiet"],
                              "keypointgan predict: error: nope.png: input not found"),
    "predict-empty-folder": ("predict on a folder without images", lambda e: (run(e), Path("nothing").mkdir()),
                             ["predict", "--checkpoint", "run", "nothing", "--out", "pred", "--quiet"],
                             "keypointgan predict: error: nothing: folder holds no images (.png/.jpg/.bmp/.webp)"),
    "report-no-log": ("report on a folder that is not a run", lambda e: Path("notrun").mkdir(), ["report", "notrun"],
                      "keypointgan report: error: notrun: no log.jsonl in this run folder"),
    # ---- issue 14
    "predict-overwrites-input": ("predict into the input folder, where an output would overwrite an input",
                                 lambda e: (run(e), image_folder("D", ("x.png", "x_overlay.png"))),
                                 ["predict", "--checkpoint", "run", "D", "--out", "D", "--quiet"],
                                 "keypointgan predict: error: D/x_overlay.png: this input would be overwritten by the output x_overlay.png of D/x.png; give another --out"),
    "predict-one-bad-image": ("predict on a folder of good images and one unreadable file (nothing is written)",
                              lambda e: (run(e), image_folder("D"), Path("D/bad.png").write_bytes(b"not a PNG")),
                              ["predict", "--checkpoint", "run", "D", "--out", "pred", "--quiet"],
                              "keypointgan predict: error: D/bad.png: cannot read image: not an image format PIL knows, or a corrupt header"),
    "image-bomb-train": ("a frame declaring 20000 × 20000 pixels (a 48 KB decompression bomb)",
                         lambda e: png_header(frame(data(e)), 20000, 20000), TRAIN,
                         "keypointgan train: error: data/videos/v0000/000003.png: image is 20000×20000 = 400,000,000 pixels, over the limit of 64,000,000 (a decompression bomb? if not, raise the limit: --max-image-pixels or $KEYPOINTGAN_MAX_IMAGE_PIXELS)"),
    "image-bomb-predict": ("predict on an image declaring 12000 × 12000 pixels (2 GB decoded)",
                           lambda e: (run(e), png_header("big.png", 12000, 12000)),
                           ["predict", "--checkpoint", "run", "big.png", "--out", "pred", "--quiet"],
                           "keypointgan predict: error: big.png: image is 12000×12000 = 144,000,000 pixels, over the limit of 64,000,000 (a decompression bomb? if not, raise the limit: --max-image-pixels or $KEYPOINTGAN_MAX_IMAGE_PIXELS)"),
    "skeleton-limb-null": ("a limb that is null", lambda e: edit_skeleton(data(e), "[head, neck]", "null"),
                           TRAIN, "keypointgan train: error: data/skeleton.yaml: each limb must be a pair of keypoint names, got None"),
    "skeleton-limb-number": ("a limb that is a number", lambda e: edit_skeleton(data(e), "[head, neck]", "5"),
                             TRAIN, "keypointgan train: error: data/skeleton.yaml: each limb must be a pair of keypoint names, got 5"),
    "skeleton-limb-nested": ("a limb holding a list instead of a name", lambda e: edit_skeleton(data(e), "[head, neck]", "[[head], neck]"),
                             TRAIN, "keypointgan train: error: data/skeleton.yaml: each limb must be a pair of keypoint names, got [['head'], 'neck']"),
    "prior-json-huge-number": ("a JSON prior holding the integer 10^400",
                               lambda e: (data(e), Path("p.json").write_text("[[" + ", ".join(["[0.5, 0.5]"] * 14 + ["[1" + "0" * 400 + ", 0.5]"]) + "]]")),
                               TRAIN + ["--prior", "p.json"], "keypointgan train: error: p.json: JSON prior holds a number too large for a coordinate"),
    "prior-coco-zero-width": ("a COCO prior whose image has width 0 (no numpy warning first)", lambda e: (data(e), coco_zero_width()),
                              TRAIN + ["--prior", "coco.json"],
                              "keypointgan train: error: coco.json: COCO image 1 has width × height 0 × 32; both must be positive"),
    "prior-pts-non-image": ("a .pts prior next to a file that is not an image", lambda e: (data(e), pts_next_to_garbage()),
                            TRAIN + ["--prior", "a.pts"],
                            "keypointgan train: error: a.png: cannot read image: not an image format PIL knows, or a corrupt header"),
    "flag-device-meta": ("--device meta (no run folder left behind)", data, TRAIN + ["--device", "meta"],
                         "keypointgan train: error: device 'meta' holds no data (tensors with shapes only); use cpu, cuda or mps"),
    "frames-one-per-video": ("every video has a single frame", lambda e: one_frame_videos(data(e)), TRAIN + ["--batch-size", "2"],
                             "keypointgan train: error: data/videos/v0000: every video has a single frame (4 videos); training pairs two frames of one video (a target and an appearance frame) and needs videos of at least 2 frames"),
    "frame-is-a-folder": ("a folder named 999.png among the frames", lambda e: (frame(data(e), 999)).mkdir(),
                          TRAIN, "keypointgan train: error: data/videos/v0000/000999.png: a folder named like an image among the frames; frames must be image files"),
    "out-is-a-file-train": ("train --out naming a file", lambda e: (data(e), Path("out").write_text("notes")), TRAIN,
                            "keypointgan train: error: out: --out names a file, not a folder"),
    "out-is-a-file-predict": ("predict --out naming a file", lambda e: (run(e), image_folder("D"), Path("pred").write_text("notes")),
                              ["predict", "--checkpoint", "run", "D", "--out", "pred", "--quiet"],
                              "keypointgan predict: error: pred: --out names a file, not a folder"),
    "out-under-a-file": ("an output folder whose path runs through a file", lambda e: Path("notes").write_text("a file"),
                         ["make-synthetic", "notes/data", "--videos", "1", "--frames", "2", "--prior", "2", "--quiet"],
                         "keypointgan make-synthetic: error: notes/data: a file stands where a folder of this path should be (notes)"),
    "report-out-folder": ("report --out naming a folder (nothing written, not even the curves)", lambda e: (run(e), Path("rep").mkdir()),
                          ["report", "run", "--out", "rep"], "keypointgan report: error: rep: is a folder; give a file name"),
    "view-bad-port": ("view --port 99999", lambda e: None, ["view", "p.json", "--port", "99999"],
                      "keypointgan view: error: argument --port: expected a port number 0..65535, got 99999"),
    "video-folder-named-like-a-video": ("a folder videos/v9.mp4 (not silently skipped)", lambda e: (data(e) / "videos" / "v9.mp4").mkdir(),
                                        TRAIN, "keypointgan train: error: data/videos/v9.mp4: a folder named like a video file; a video is a file, or a folder of frames without the suffix"),
    "keypoints-file-is-a-folder": ("keypoints/v0000.npy a folder (not silently left out)",
                                   lambda e: (lambda d: ((d / "keypoints" / "v0000.npy").unlink(), (d / "keypoints" / "v0000.npy").mkdir()))(data(e)),
                                   TRAIN, "keypointgan train: error: data/keypoints/v0000.npy: a folder named like a keypoint file; keypoints must be .npy files"),
    "evaluate-json-unwritable": ("evaluate --json where no file can be written (checked before evaluating)",
                                 lambda e: (run(e), data(e), Path("notes").write_text("a file")),
                                 EVAL + ["--checkpoint", "run", "--json", "notes/m.json"],
                                 "keypointgan evaluate: error: notes/m.json: cannot write here: notes is a file, not a folder"),
}


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("robust") / "run"
    train(tiny_data, out, config=tiny_config(steps=1, pretrain_steps=0, eval_every=100, sample_every=100), progress=False)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tiny_data, tiny_run, tmp_path, monkeypatch, capsys):
    _, setup, argv, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    setup({"tiny_data": tiny_data, "tiny_run": tiny_run})
    before = {p: p.stat().st_mtime_ns for p in Path(".").rglob("*") if p.is_file()}
    dirs_before = {p for p in Path(".").rglob("*") if p.is_dir()}
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects a flag before main's body runs
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == expected
    assert not any("Traceback" in line for line in err)
    assert len(err) == 1 or err[0].startswith("usage:")  # argparse prints its usage line first
    # nothing already there was modified, nothing half-written was left, nothing new was created
    after = {p: p.stat().st_mtime_ns for p in Path(".").rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p in before} == before
    assert not [p for p in after if p.name.endswith(".tmp")]
    assert set(after) == set(before)
    assert not [p for p in Path(".").rglob("*") if p.is_dir() and p not in dirs_before]


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from keypointgan import InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="nope: dataset folder not found"):
        main(["--debug", "train", "--data", "nope", "--out", "out", "--steps", "1"])


def doc_rows():
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z0-9-]+)`\s*\|(.*)\|\s*`(.+)`\s*\|\s*`([^`]+)`\s*\|$", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3), m.group(4))
    return rows


def test_robustness_doc_matches_the_tests():
    """docs/robustness.md lists every case with the exact message the test asserts, and names the test."""
    rows = doc_rows()
    assert set(rows) == set(CASES)
    for case, (title, message, test) in rows.items():
        assert message == CASES[case][3], case
        assert title.startswith(CASES[case][0]), case
        assert test == f"test_robustness.py::test_bad_input[{case}]"
    assert len(rows) >= 15


# ------------------------------------------------------------- accepted and converted
def test_image_modes_are_converted_to_rgb(tmp_path):
    from PIL import Image

    from keypointgan.io import read_image

    cases = {
        "gray.png": (Image.fromarray(np.full((3, 4), 77, np.uint8)), (77, 77, 77)),
        "gray16.png": (Image.fromarray(np.full((3, 4), 40000, np.uint16)), (156, 156, 156)),  # 40000 / 257
        "gray_alpha.png": (Image.fromarray(np.dstack([np.full((3, 4), 77, np.uint8), np.zeros((3, 4), np.uint8)]), "LA"), (0, 0, 0)),
        "rgba_half.png": (Image.fromarray(np.tile(np.array([200, 100, 50, 128], np.uint8), (3, 4, 1)), "RGBA"), (100, 50, 25)),
        "rgba_opaque.png": (Image.fromarray(np.tile(np.array([200, 100, 50, 255], np.uint8), (3, 4, 1)), "RGBA"), (200, 100, 50)),
        "cmyk.jpg": (Image.new("CMYK", (4, 3), (0, 255, 255, 0)), (255, 0, 0)),
    }
    pal = Image.new("P", (4, 3), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    cases["palette.png"] = (pal, (10, 20, 30))
    pal_t = pal.copy()
    pal_t.info["transparency"] = 1
    cases["palette_transparent.png"] = (pal_t, (0, 0, 0))
    for name, (im, rgb) in cases.items():
        im.save(tmp_path / name, **({"transparency": 1} if name == "palette_transparent.png" else {}))
        arr = read_image(tmp_path / name)
        assert arr.shape == (3, 4, 3) and arr.dtype == np.uint8, name
        assert np.abs(arr[1, 2].astype(int) - rgb).max() <= 2, (name, arr[1, 2])


def test_mixed_frame_sizes_are_resized_and_mapped_back(tmp_path):
    """Frames of three sizes in one dataset: resized for the networks, errors and points in each frame's pixels."""
    from keypointgan import Skeleton
    from keypointgan import pixels as P
    from keypointgan.data import EvalFrameDataset, FrameStore, Layout
    from keypointgan.evaluate import keypoint_error
    from keypointgan.io import write_image

    sk = Skeleton(keypoints=["a", "b"], limbs=[("a", "b")], name="ab")
    sk.to_yaml(tmp_path / "skeleton.yaml")
    sizes = [(16, 16), (24, 40), (30, 12)]  # (H, W)
    kps = []
    for t, (h, w) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        img[h // 2, w // 2] = 255
        write_image(tmp_path / "videos" / "mixed" / f"{t}.png", img)
        kps.append([[w // 2, h // 2], [0, 0]])
    (tmp_path / "keypoints").mkdir()
    np.save(tmp_path / "keypoints" / "mixed.npy", np.array(kps, np.float32))
    lay = Layout(tmp_path)
    store = FrameStore(lay.videos, 8)
    assert all(store.get(i).shape == (8, 8, 3) for i in range(3))
    ds = EvalFrameDataset(lay, 8)
    hw = np.stack([ds[i][2].numpy() for i in range(3)])
    assert hw.tolist() == [list(s) for s in sizes]
    # the network's centre (0, 0) is each frame's own centre; its corner (-1, -1) each frame's corner
    pts = np.tile(np.array([[0.0, 0.0], [-1.0, -1.0]], np.float32), (3, 1, 1))
    pix = P.norm_to_image_pixels(pts, 8, hw)
    for i, (h, w) in enumerate(sizes):
        assert np.allclose(pix[i, 0], [(w - 1) / 2, (h - 1) / 2])
        assert np.allclose(pix[i, 1], [w / 16 - 0.5, h / 16 - 0.5])
    # a one-pixel error is 100/W % along x in each frame's own size
    gt = np.array(kps, np.float32)
    err = keypoint_error(gt + np.array([1.0, 0.0], np.float32), gt, hw)
    assert np.allclose(err, [100 / w for _, w in sizes])


def test_unreadable_image_is_named(tmp_path, monkeypatch):
    """Permission errors cannot be produced as root: PIL's open is made to raise what it raises then."""
    import PIL.Image

    from keypointgan import InputError
    from keypointgan.io import read_image, write_image

    f = tmp_path / "f.png"
    write_image(f, np.zeros((2, 2, 3), np.uint8))

    def denied(fp, *a, **k):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(PIL.Image, "open", denied)
    with pytest.raises(InputError) as e:
        read_image(f)
    assert str(e.value) == f"{f}: cannot read image: permission denied"
