"""On a CUDA device (benchmarks/gpu_check.sh runs these; without one they skip): training steps in every
precision, torch.compile without recompiling per step, and two processes over NCCL on two GPUs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _cuda_run(tiny_data, tmp_path, **over):
    from conftest import TinyRun

    return TinyRun(tiny_data, tmp_path, device="cuda", pretrain_steps=0, **over)


def _batch(run):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1).cuda().contiguous(memory_format=run.state.memory_format)
    return x, x.flip(0).contiguous(memory_format=run.state.memory_format)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_cuda_training_steps_in_each_precision(precision, tiny_data, tmp_path):
    run = _cuda_run(tiny_data, tmp_path, precision=precision, w_gan=0.0)
    if precision == "auto":
        assert run.state.precision.name == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    x, xa = _batch(run)
    losses = [run.step(x, xa).losses["loss_rec"] for _ in range(12)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.97 * losses[0], losses
    assert all(p.dtype == torch.float32 and p.is_cuda for n in run.state.nets.values() for p in n.parameters())


def test_cuda_compile_compiles_once_and_matches_eager(tiny_data, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    # a pool of 4 fakes fills in the first step, so the warm-up below meets every graph (D's input changes once it is full)
    eager, compiled = _cuda_run(tiny_data, tmp_path / "e", pool_size=4), _cuda_run(tiny_data, tmp_path / "c", compile=True, pool_size=4)
    x, xa = _batch(eager)
    q = eager.prior[:4]
    from keypointgan.training import train_step

    a = train_step(eager.state, x, xa, None, poses=q).losses
    b = train_step(compiled.state, x, xa, None, poses=q).losses
    for k, v in a.items():
        assert b[k] == pytest.approx(v, rel=1e-2, abs=1e-4), k
    for _ in range(2):
        train_step(compiled.state, x, xa, None, poses=q)
    graphs = counters["stats"]["unique_graphs"]
    for _ in range(3):
        train_step(compiled.state, x, xa, None, poses=q)
    assert counters["stats"]["unique_graphs"] == graphs  # no recompiling per step


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_one_model_over_nccl(tiny_data, tmp_path):
    env = {**os.environ, "KEYPOINTGAN_TEST_DEVICE": "cuda", "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).parent / "distributed_worker.py"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), "steps",
                        str(tiny_data), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False, map_location="cpu") for i in (0, 1))
    for net in a["nets"]:
        for n, v in a["nets"][net].items():
            assert torch.equal(v, b["nets"][net][n]), (net, n)
