"""Mixed precision (bf16 / fp16 autocast) on the CPU: what runs in which dtype, the gradient scaler's
overflow handling, and training steps that still learn. (``--compile`` is tested against eager in
tests/test_gpu.py on CUDA; on the CPU it is only timed, by benchmarks/speed.py: compiling takes minutes.)"""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import TinyRun
from keypointgan import geometry
from keypointgan.errors import InputError
from keypointgan.training import train_step
from keypointgan.training.precision import Precision, resolve_precision


def _batch(run, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    return x.contiguous(memory_format=run.state.memory_format), x.flip(0).contiguous(memory_format=run.state.memory_format)


def test_precision_names():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert Precision("bf16", torch.device("cpu")).dtype == torch.bfloat16
    assert Precision("fp32", torch.device("cpu")).scaler is None
    assert Precision("fp16", torch.device("cpu")).scaler is not None


def test_renderer_and_soft_argmax_stay_float32_under_autocast():
    sk_limbs = [(0, 1), (1, 2)]
    p = torch.tensor([[[-0.5, -0.5], [0.0, 0.1], [0.5, 0.4]]], dtype=torch.bfloat16)
    maps = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = geometry.render_skeleton(p, sk_limbs, 16, 0.2)
        pts = geometry.soft_argmax(maps.bfloat16())
    assert img.dtype == torch.float32 and pts.dtype == torch.float32
    torch.testing.assert_close(img, geometry.render_skeleton(p.float(), sk_limbs, 16, 0.2))
    torch.testing.assert_close(pts, geometry.soft_argmax(maps.bfloat16().float()))


def test_bf16_step_runs_the_networks_in_bf16_and_keeps_float32_weights(tiny_data, tmp_path):
    runs = {p: TinyRun(tiny_data, tmp_path / p, precision=p, pretrain_steps=0, pool_size=0) for p in ("fp32", "bf16")}
    seen = []
    hook = runs["bf16"].state.nets["phi"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, xa = _batch(runs["fp32"])
    q = runs["fp32"].prior[:4]
    first = {p: train_step(r.state, x, xa, None, poses=q) for p, r in runs.items()}
    hook.remove()
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for n in runs["bf16"].state.nets.values() for p in n.parameters())
    for k, v in first["fp32"].losses.items():  # the same losses to bf16's precision (8 bits of mantissa)
        assert first["bf16"].losses[k] == pytest.approx(v, rel=0.05, abs=1e-3), k
    assert not first["bf16"].skipped


def test_bf16_training_reduces_the_reconstruction_loss_as_fp32_does(tiny_data, tmp_path):
    drop = {}
    for p in ("fp32", "bf16"):
        run = TinyRun(tiny_data, tmp_path / p, precision=p, pretrain_steps=0, w_gan=0.0)
        x, xa = _batch(run)
        losses = [run.step(x, xa).losses["loss_rec"] for _ in range(12)]
        assert losses[-1] < 0.97 * losses[0], (p, losses)
        drop[p] = losses[0] - losses[-1]
    assert drop["bf16"] == pytest.approx(drop["fp32"], rel=0.3), drop


def test_fp16_overflow_is_skipped_by_the_scaler_not_counted_as_divergence(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run", precision="fp16", pretrain_steps=0, steps=18, max_nonfinite_steps=2)
    scaler = run.state.precision.scaler
    scaler._init_scale = 2.0**26  # overflows the first steps' fp16 gradients: the scaler halves until they fit
    run.fit()
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    overflows = [r for r in recs if r.get("event") == "fp16_overflow"]
    assert overflows and not [r for r in recs if r.get("event") in ("skipped", "diverged")]
    assert scaler.get_scale() < 2.0**26
    assert run.state.step == 18 and run.state.skipped_steps == 0
    ck = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=False)
    assert ck["scaler"]["scale"] == scaler.get_scale()  # resumes with the scale it reached
    applied = [r for r in recs if "loss_rec" in r and "eval" not in r]
    assert applied and all(math.isfinite(r["loss_rec"]) for r in applied)


def test_unknown_precision_is_refused():
    from conftest import tiny_config

    with pytest.raises(InputError, match="precision must be one of"):
        tiny_config(precision="fp8").validate()
