"""What keypointgan writes: file modes that follow the umask, OS errors that name the file, checks made
before any work, hidden files, one-frame videos and the image pixel budget (issue 14).

The bad-input cases with a one-line message are rows of ``test_robustness.py::CASES``; these are the
cases that need a monkeypatch, a umask or a look at more than stderr.
"""

import errno
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from keypointgan.cli import main
from keypointgan.errors import InputError
from keypointgan.io import read_image, write_image
from test_robustness import png_header


def mode(p) -> int:
    return stat.S_IMODE(Path(p).stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for a test and put the old one back."""
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_checkpoints_samples_and_predictions_follow_the_umask(tiny_data, tmp_path, umask):
    from keypointgan.api import train
    from keypointgan.predict import predict_paths

    umask(0o022)
    run = tmp_path / "run"
    train(tiny_data, run, config=tiny_config(steps=1, pretrain_steps=0, sample_every=1, eval_every=100, ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0), progress=False)
    assert mode(run / "checkpoints" / "latest.pt") == 0o644
    samples = [p for p in (run / "samples").iterdir() if p.is_file()]
    assert samples and all(mode(p) == 0o644 for p in samples)
    assert mode(run / "log.jsonl") == 0o644
    umask(0o027)
    img = tmp_path / "x.png"
    write_image(img, np.zeros((16, 16, 3), np.uint8))
    assert mode(img) == 0o640
    predict_paths(run, [img], tmp_path / "pred")
    assert mode(tmp_path / "pred" / "x.json") == 0o640 and mode(tmp_path / "pred" / "x_overlay.png") == 0o640


def test_full_disk_names_the_checkpoint_and_says_the_last_one_is_intact(tiny_data, one_step_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    ckpt = run / "checkpoints" / "latest.pt"
    before = ckpt.read_bytes()
    real_fsync = os.fsync

    def full(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):  # files fill the disk; folders' fsync goes through
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", str(tiny_data), "--out", "run", "--resume", "--steps", "2", "--quiet", "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["keypointgan train: error: run/checkpoints/latest.pt: No space left on device (the previous file is intact)"]
    assert ckpt.read_bytes() == before
    assert not list((run / "checkpoints").glob("*.tmp"))


def test_evaluate_json_is_checked_before_the_evaluation(tiny_data, one_step_run, tmp_path, monkeypatch, capsys):
    """A folder that refuses new files (simulated: as root no folder does) fails before any work, naming --json."""
    import tempfile

    import keypointgan.api

    (tmp_path / "ro").mkdir()
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir).name == "ro":
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / ".m.json.x.tmp"))
        return real(*a, dir=dir, **k)

    def evaluate(*a, **k):
        raise AssertionError("the evaluation ran before --json was checked")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(keypointgan.api, "evaluate", evaluate)
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", "--data", str(tiny_data), "--checkpoint", str(one_step_run), "--json", "ro/m.json", "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "keypointgan evaluate: error: ro/m.json: cannot write here (Permission denied)"
    assert list((tmp_path / "ro").iterdir()) == []


def test_predict_skips_hidden_macos_files_as_training_does(one_step_run, tmp_path):
    from keypointgan.predict import predict_paths

    d = tmp_path / "D"
    write_image(d / "a.png", np.zeros((16, 16, 3), np.uint8))
    (d / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    assert predict_paths(one_step_run, [d], tmp_path / "pred") == 1
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.json", "a_overlay.png"]


def test_a_few_one_frame_videos_are_named_in_a_warning(tiny_data, tmp_path, capsys):
    from keypointgan.api import train

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for f in sorted((data / "videos" / "v0001").iterdir())[1:]:
        f.unlink()
    train(data, tmp_path / "run", config=tiny_config(steps=1, pretrain_steps=0, eval_every=100, sample_every=100, ema_norm_batches=0), progress=False)
    err = capsys.readouterr().err
    assert "keypointgan: warning: 1 of 4 videos have a single frame and teach nothing (a frame paired with itself): 'v0001'" in err
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()


def test_pixel_budget_setting_environment_and_flag(one_step_run, tmp_path, monkeypatch, capsys):
    from keypointgan.io import image_size, set_max_image_pixels

    img = tmp_path / "x.png"
    write_image(img, np.zeros((16, 20, 3), np.uint8))
    assert read_image(img).shape == (16, 20, 3)
    try:
        set_max_image_pixels(319)
        with pytest.raises(InputError, match=r"image is 20×16 = 320 pixels, over the limit of 319 "):
            read_image(img)
        set_max_image_pixels(320)
        assert read_image(img).shape == (16, 20, 3)
        # above PIL's own limit (2 × 89 M pixels): a 15000² header is within a budget of 300 M
        big = tmp_path / "big.png"
        png_header(big, 15000, 15000)
        with pytest.raises(InputError, match="over the limit of 320 "):
            image_size(big)
        set_max_image_pixels(300_000_000)
        assert image_size(big) == (15000, 15000)
    finally:
        set_max_image_pixels(None)
    monkeypatch.setenv("KEYPOINTGAN_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(InputError, match="over the limit of 100 "):
        read_image(img)
    monkeypatch.setenv("KEYPOINTGAN_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InputError, match="KEYPOINTGAN_MAX_IMAGE_PIXELS must be a positive number of pixels, got 'lots'"):
        read_image(img)
    monkeypatch.delenv("KEYPOINTGAN_MAX_IMAGE_PIXELS")
    # the flag lasts one command
    code = main(["--max-image-pixels", "100", "predict", "--checkpoint", str(one_step_run), str(img), "--out", str(tmp_path / "p"), "--quiet"])
    assert code == 2 and "over the limit of 100 " in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert read_image(img).shape == (16, 20, 3)
    assert main(["predict", "--checkpoint", str(one_step_run), str(img), "--out", str(tmp_path / "p"), "--quiet"]) == 0
