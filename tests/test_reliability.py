"""Reliability and first use: non-finite settings and weights, one writer per run, corrupt videos in
predict, config files that layer on presets, the viewer's port, outputs checked first, the run's data
recorded, one-line warnings.  One-line errors of the CLI are in test_robustness.py's table; these
are the cases that need more than a line to check."""

import json
import math
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import TinyRun, tiny_config
from keypointgan.cli import main
from keypointgan.errors import InputError, TrainingDiverged


def run_main(argv, capsys):
    """``keypointgan ARGV`` in-process: (exit code, stdout, stderr lines)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


# ------------------------------------------------------------------ non-finite settings and weights
@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--lr-disc", "-inf"), ("--w-rec", "nan"), ("--w-gan", "inf"),
                                        ("--grad-clip", "nan"), ("--ema-decay", "nan"), ("--model.sigma", "inf")])
def test_non_finite_settings_are_refused_before_anything_is_written(flag, value, tiny_data, tmp_path, capsys):
    code, _, err = run_main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--steps", "1", "--quiet", f"{flag}={value}"], capsys)
    name = flag[2:].replace("-", "_")
    assert code == 2 and err == [f"keypointgan train: error: {name} must be finite, got {float(value)}"], err
    assert not (tmp_path / "run").exists()


def test_every_float_field_refuses_nan_and_inf():
    import dataclasses
    import typing

    from keypointgan.config import ModelConfig, TrainConfig, make_config

    for cls, prefix in ((TrainConfig, ""), (ModelConfig, "model.")):
        for name, hint in typing.get_type_hints(cls).items():
            if "float" not in str(hint):
                continue
            default = getattr(make_config("cpu-64") if cls is TrainConfig else make_config("cpu-64").model, name)
            for bad in (math.nan, math.inf, -math.inf):
                v = tuple(bad for _ in default) if isinstance(default, tuple) else bad
                over = {"model": {name: v}} if prefix else {name: v}
                with pytest.raises(InputError, match=f"^{prefix}{name} must be finite"):
                    make_config("cpu-64", **over).validate()
    assert dataclasses.is_dataclass(TrainConfig)


def test_a_checkpoint_is_never_written_with_non_finite_weights(tiny_data, tmp_path):
    from keypointgan.training.loop import save_state

    r = TinyRun(tiny_data, tmp_path / "run", pretrain_steps=0)
    path = tmp_path / "latest.pt"
    save_state(r.state, r.loader, path)
    before = path.read_bytes()
    with torch.no_grad():
        next(r.state.nets["phi"].parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="weight tensors are not finite .*the last checkpoint .* is intact"):
        save_state(r.state, r.loader, path)
    assert path.read_bytes() == before


# ------------------------------------------------------------------ config files layer on presets
def test_a_two_line_config_file_layers_on_the_preset(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lr: 0.001\nsteps: 3\n")
    code, out, err = run_main(["train", "--print-config", "--config", str(tmp_path / "c.yaml")], capsys)
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["lr"] == 0.001 and cfg["steps"] == 3 and cfg["preset"] == "cpu-64"
    assert cfg["lr_disc"] == 5e-4 and cfg["model"]["disc_layers"] == 2  # the rest is cpu-64's
    # the file's own preset: key, or --preset, names the base; the flags go on top
    (tmp_path / "p.yaml").write_text("preset: paper-128\nlr: 0.001\n")
    code, out, _ = run_main(["train", "--print-config", "--config", str(tmp_path / "p.yaml"), "--batch-size", "8"], capsys)
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["model"]["size"] == 128 and cfg["gap"] == [1, 1000] and cfg["lr"] == 0.001 and cfg["batch_size"] == 8
    code, out, _ = run_main(["train", "--print-config", "--preset", "release", "--config", str(tmp_path / "c.yaml")], capsys)
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["preset"] == "release" and cfg["vgg_relu"] is False and cfg["lr"] == 0.001
    code, _, err = run_main(["train", "--print-config", "--preset", "release", "--config", str(tmp_path / "p.yaml")], capsys)
    assert code == 2 and err == [f"keypointgan train: error: {tmp_path / 'p.yaml'}: the file names preset 'paper-128' but --preset is 'release'; give one"]
