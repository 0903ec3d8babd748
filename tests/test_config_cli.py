"""The train command's config flags, generated from the dataclasses; config files and presets on resume."""

import dataclasses

import pytest
import yaml

from conftest import tiny_config
from keypointgan.checkpoint import load_checkpoint
from keypointgan.cli import build_parser, main
from keypointgan.config import ModelConfig, TrainConfig


def train_help() -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"].format_help()


def test_every_config_field_is_a_flag_with_its_docstring():
    text = " ".join(train_help().split())
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("model", "preset"):
            assert f"--{f.name.replace('_', '-')}" in text, f.name
    for f in dataclasses.fields(ModelConfig):
        assert f"--model.{f.name.replace('_', '-')}" in text, f.name
    assert "Adam learning rate of D." in text and "Renderer width σ in [-1, 1] units" in text
    assert "--no-bottleneck" in text and "--no-flip-test" in text


def test_print_config_is_a_config_file_that_reads_back(tmp_path, capsys):
    assert main(["train", "--print-config", "--lr", "0.001", "--model.encoder-widths", "8", "16", "32", "64", "--gap", "2", "9",
                 "--no-flip-test", "--data-workers", "none", "--steps", "7"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["lr"] == 0.001 and data["model"]["encoder_widths"] == [8, 16, 32, 64] and data["gap"] == [2, 9]
    assert data["flip_test"] is False and data["data_workers"] is None and data["steps"] == 7 and data["preset"] == "cpu-64"
    assert data["lr_disc"] == 5e-4  # the rest is the preset's
    (tmp_path / "c.yaml").write_text(text)
    assert main(["train", "--print-config", "--config", str(tmp_path / "c.yaml")]) == 0
    assert capsys.readouterr().out == text
    assert main(["train", "--print-config", "--lr_disc", "0.003"]) == 0  # the underscore spelling too
    assert yaml.safe_load(capsys.readouterr().out)["lr_disc"] == 0.003


def write_config(path, **over):
    path.write_text(yaml.safe_dump(tiny_config(**over).to_dict()))
    return str(path)


def test_resume_refuses_a_different_config_file_or_preset(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", str(tiny_data), "--out", str(run), "--quiet", "--no-report"]
    cfg = write_config(tmp_path / "a.yaml", pretrain_steps=0)
    assert main(base + ["--config", cfg, "--steps", "2"]) == 0
    capsys.readouterr()
    other = write_config(tmp_path / "b.yaml", pretrain_steps=0, lr=1e-3)
    assert main(base + ["--resume", "--config", other, "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"keypointgan train: error: {run / 'checkpoints' / 'latest.pt'}: cannot change lr when resuming "
                   f"(the run has 0.0005; the requested config has 0.001)"]
    assert main(base + ["--resume", "--preset", "paper-128", "--steps", "3"]) == 2
    assert "cannot change model.size when resuming (the run has 32; the requested config has 128)" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 2  # nothing was trained or written
    # the same file with another budget, device, threads and workers is fine
    same = write_config(tmp_path / "c.yaml", pretrain_steps=0, steps=99, data_workers=1, num_threads=1)
    assert main(base + ["--resume", "--config", same, "--steps", "3"]) == 0
    assert load_checkpoint(run)["step"] == 3


def test_resume_past_the_budget_says_so(tiny_data, tmp_path, caplog):
    from keypointgan.api import train

    out = tmp_path / "run"
    train(tiny_data, out, config=tiny_config(steps=3, pretrain_steps=0), progress=False)
    import logging

    with caplog.at_level(logging.WARNING, logger="keypointgan"):
        logger = logging.getLogger("keypointgan")
        logger.addHandler(caplog.handler)
        try:
            train(tiny_data, out, resume=True, steps=2, progress=False)
        finally:
            logger.removeHandler(caplog.handler)
    assert any("nothing to train: the run is at step 3" in r.getMessage() and "steps 2" in r.getMessage() for r in caplog.records)
    assert load_checkpoint(out)["step"] == 3


def test_api_train_takes_a_config_with_model_overrides(tiny_data, tmp_path):
    from keypointgan.api import train

    train(tiny_data, tmp_path / "run", config=tiny_config(steps=1, pretrain_steps=0), model={"sigma": 0.3, "regressor_widths": [4, 8, 8]},
          lr=1e-3, progress=False)
    ck = load_checkpoint(tmp_path / "run")
    assert ck["config"]["model"]["sigma"] == 0.3 and ck["config"]["model"]["regressor_widths"] == (4, 8, 8) and ck["config"]["lr"] == 1e-3
    assert ck["nets"]["eta"]["head.weight"].shape[1] == 8
    with pytest.raises(Exception, match="unknown config field"):
        train(tiny_data, tmp_path / "run2", config=tiny_config(steps=1), model={"depth": 3}, progress=False)


def test_a_field_this_version_does_not_have_is_refused_naming_it(tmp_path):
    from keypointgan import InputError

    old = {**tiny_config().to_dict(), "rec_motion_weight": 0.0}
    with pytest.raises(InputError, match=r"^unknown config field\(s\): rec_motion_weight$"):
        TrainConfig.from_dict(old)
    old = {**tiny_config().to_dict(), "model": {**tiny_config().to_dict()["model"], "decoder_pose_skips": False}}
    with pytest.raises(InputError, match=r"^unknown config field\(s\): model.decoder_pose_skips$"):
        TrainConfig.from_dict(old)
