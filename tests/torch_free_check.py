"""The install without torch (README, Install): ``predict --model`` and ``view`` work, the rest say they need torch.

Two phases, run by ``.ci/run`` in two virtual environments:

* ``python tests/torch_free_check.py prepare DIR`` (with torch): an untrained checkpoint of the tiny
  config exported as ``DIR/det.onnx`` and ``DIR/pre.onnx`` (``--preprocess``), an image and a short video;
* ``python tests/torch_free_check.py check DIR`` (in a venv of only ``onnxruntime numpy pillow pyyaml
  tqdm av starlette uvicorn`` and ``pip install --no-deps keypointgan``): ``import torch`` fails,
  ``keypointgan --help`` and ``train --help`` print, ``predict --model`` writes keypoints for the image
  and the video with both exports, the viewer serves the video's predictions and a frame, and every
  command that needs torch says so in one line with exit code 2.
"""

import json
import subprocess
import sys
from pathlib import Path

NEEDS_TORCH = {
    "train": ["train", "--data", "d", "--out", "r", "--steps", "1"],
    "evaluate": ["evaluate", "--data", "d", "--checkpoint", "c.pt"],
    "predict --checkpoint": ["predict", "--checkpoint", "c.pt", "IMG", "--out", "p"],
    "export": ["export", "c.pt", "--out", "x.onnx"],
    "pretrain-regressor": ["pretrain-regressor", "--prior", "p.npy", "--skeleton", "s.yaml", "--out", "e.pt"],
    "demo": ["demo", "--out", "demo"],
}


def prepare(d: Path) -> None:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    from keypointgan.api import train
    from keypointgan.cli import main
    from keypointgan.data.synthetic import SyntheticConfig, _video_rng, make_synthetic, render_video
    from keypointgan.io import write_image
    from keypointgan.video import write_video

    make_synthetic(d / "data", SyntheticConfig(videos=2, frames=8, size=32, seed=1, prior=50), workers=1, progress=False)
    train(d / "data", d / "run", config=tiny_config(steps=0, pretrain_steps=0), progress=False)
    for name, extra in (("det.onnx", []), ("pre.onnx", ["--preprocess"])):
        assert main(["export", str(d / "run"), "--out", str(d / name), *extra]) == 0
    frames, _ = render_video(_video_rng(3, 0), 10, 32)
    write_image(d / "frame.png", np.asarray(frames[0]))
    write_video(d / "walk.mp4", frames, fps=10)


def check(d: Path) -> None:
    import urllib.request

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("torch is importable here: this check needs an environment without it")
    exe = [sys.executable, "-m", "keypointgan.cli"]

    def cli(*args):
        return subprocess.run(exe + list(args), capture_output=True, text=True, cwd=d)

    for args in (["--help"], ["train", "--help"], ["view", "--help"]):
        r = cli(*args)
        assert r.returncode == 0 and "usage: keypointgan" in r.stdout and not r.stderr, (args, r.stderr)
    for model in ("det.onnx", "pre.onnx"):
        out = d / f"pred-{model[:-5]}"
        r = cli("predict", "--model", model, "frame.png", "walk.mp4", "--out", out.name, "--quiet")
        assert r.returncode == 0, r.stderr
        image = json.loads((out / "frame.json").read_text())
        video = json.loads((out / "walk.json").read_text())
        assert len(image["keypoints"]) == 15 and len(video["frames"]) == 10 and (out / "walk_overlay.mp4").is_file()
    from keypointgan.viewer import create_app, start_in_thread

    server, url = start_in_thread(create_app(d / "pred-det" / "walk.json", d / "walk.mp4"))
    try:
        served = json.loads(urllib.request.urlopen(url + "api/predictions", timeout=10).read())
        frame = urllib.request.urlopen(url + "frame/3", timeout=10).read()
        assert len(served["frames"]) == 10 and frame[:2] == b"\xff\xd8"  # a JPEG
    finally:
        server.should_exit = True
    for what, args in NEEDS_TORCH.items():
        r = cli(*[a.replace("IMG", "frame.png") for a in args])
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "needs torch, which is not installed" in lines[0], (what, r.stderr)
    print(f"torch-free install: predict --model (both exports), view, and {len(NEEDS_TORCH)} commands saying they need torch: ok")


if __name__ == "__main__":
    phase, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"prepare": prepare, "check": check}[phase](folder)
