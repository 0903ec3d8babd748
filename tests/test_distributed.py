"""Multi-process training on the CPU (gloo), started by torchrun as users do: one model, one writer,
agreed decisions, a dead rank ending the job, resume; and the environment checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_config
from keypointgan.cli import main
from keypointgan.errors import InputError
from keypointgan.training.distributed import from_environment

HERE = Path(__file__).parent
WORKER = HERE / "distributed_worker.py"
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def torchrun(*args, timeout=240, env=None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent, **kw)


def _tensors(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _tensors(v, f"{prefix}{k}.")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _tensors(v, f"{prefix}{i}.")
    elif torch.is_tensor(tree):
        yield prefix[:-1], tree


def test_two_ranks_train_one_model_like_one_process_with_the_combined_batch(tiny_data, tmp_path):
    """2 ranks × 4 pairs: identical weights, buffers, optimiser moments and running means on both ranks; the
    first step's gradients, batch-norm statistics and losses those of one process with the 8 pairs."""
    single = subprocess.run([sys.executable, str(WORKER), "steps", str(tiny_data), str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    r = torchrun(WORKER, "steps", tiny_data, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b, s = (torch.load(tmp_path / f"{n}.pt", weights_only=False) for n in ("rank0", "rank1", "rank0_single"))

    ta, tb = dict(_tensors({k: a[k] for k in ("nets", "optims", "rec_loss")})), dict(_tensors({k: b[k] for k in ("nets", "optims", "rec_loss")}))
    assert ta.keys() == tb.keys() and len(ta) > 300
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert a["losses"] == b["losses"]
    assert a["rec_loss"]["running"].abs().sum() > 0  # the perceptual loss (random VGG-19) with its running means is in use
    for net, grads in a["first"]["grads"].items():  # the optimisers step the parameters the forward passes use
        unmoved = [n for n, g in grads.items() if g.abs().max() > 1e-6 and torch.equal(a["first"]["before"][net][n], a["first"]["after"][net][n])]
        assert unmoved == [], (net, unmoved)

    # One process, combined batch: the same gradients up to float32 rounding, 3e-4 of each network's largest
    # gradient (measured: 3e-5, and 1.3e-4 since D's batch-std channel changed every network's random
    # initialisation; both agree with a float64 computation to that order: the worst, Ψ's first convolution,
    # sums large terms that cancel).  The control, batch norm over each rank's own 4 pairs, is 1,000× further off (0.1–0.3).
    # (Weights after several Adam steps are not compared: Adam divides each gradient by its own size, so a
    # gradient that is zero in exact arithmetic — η's head bias, which the soft-argmax cannot see — turns
    # rounding noise of 1e-9 into steps of ± the learning rate.)
    def worst(run):
        out = {}
        for net, grads in s["first"]["grads"].items():
            scale = max(g.abs().max().item() for g in grads.values())
            out[net] = max((run["first"]["grads"][net][n] - g).abs().max().item() for n, g in grads.items()) / scale
        return out

    assert max(worst(a).values()) <= 3e-4, worst(a)
    local = torchrun(WORKER, "steps", tiny_data, tmp_path, env={"KEYPOINTGAN_TEST_LOCAL_BN": "1", "KEYPOINTGAN_TEST_TAG": "_local"})
    assert local.returncode == 0, local.stderr[-3000:]
    assert max(worst(torch.load(tmp_path / "rank0_local.pt", weights_only=False)).values()) > 1e-2
    for net, bufs in s["first"]["buffers"].items():  # batch-norm statistics of the whole batch; the running means
        for n, v in bufs.items():
            torch.testing.assert_close(a["first"]["buffers"][net][n], v, rtol=1e-5, atol=1e-6, msg=f"{net}.{n}")
    for k, v in s["losses"][0].items():
        assert a["losses"][0][k] == pytest.approx(v, rel=1e-5), k


def _write_config(path: Path, **over) -> Path:
    cfg = tiny_config(**over).to_dict()
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    return path


def _train_cli(data, out, config, *extra):
    return torchrun("-m", "keypointgan.cli", "train", "--data", data, "--out", out, "--config", config, "--quiet", "--no-report", *extra)


def test_torchrun_cli_one_checkpoint_one_writer_and_bit_identical_resume(tiny_data, tmp_path):
    # (no schedule over the budget — learning-rate decay, the plain-mean phase of the average — so that a
    # 2-step run resumed to 4 steps makes the same updates as a 4-step run)
    config = _write_config(tmp_path / "tiny.yaml", ckpt_every=2, eval_every=100, sample_every=100, pool_size=4, lr_decay_fraction=0.0,
                           swa_fraction=0.0)
    full = _train_cli(tiny_data, tmp_path / "full", config, "--steps", "4")
    assert full.returncode == 0, full.stderr[-3000:]
    assert full.stdout.count("checkpoint:") == 1  # rank 0 alone prints the path it wrote
    records = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    start = [r for r in records if r.get("event") == "start"]
    assert len(start) == 1 and start[0]["world_size"] == 2 and start[0]["environment"]["world_size"] == 2
    assert start[0]["global_batch"] == 8
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["latest.pt"]
    ck = torch.load(tmp_path / "full" / "checkpoints" / "latest.pt", weights_only=False)
    assert ck["step"] == 4 and ck["world_size"] == 2 and len(ck["other_ranks"]) == 1
    assert ck["other_ranks"][0]["pool"]["images"].shape[0] == 4  # rank 1's own image pool travels in the checkpoint

    # evaluate works on it (in this process)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "full"), "--data", str(tiny_data), "--json", str(tmp_path / "eval.json"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["error"] > 0

    # 2 steps, then resumed to 4 with the same 2 processes: bit for bit the uninterrupted run
    half = _train_cli(tiny_data, tmp_path / "half", config, "--steps", "2")
    assert half.returncode == 0, half.stderr[-3000:]
    resumed = torchrun("-m", "keypointgan.cli", "train", "--data", tiny_data, "--out", tmp_path / "half", "--resume", "--steps", "4",
                       "--quiet", "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ck2 = torch.load(tmp_path / "half" / "checkpoints" / "latest.pt", weights_only=False)
    keys = ("nets", "optims", "ema", "pool", "other_ranks")
    t1, t2 = dict(_tensors({k: ck[k] for k in keys})), dict(_tensors({k: ck2[k] for k in keys}))
    assert t1.keys() == t2.keys()
    assert [k for k in t1 if not torch.equal(t1[k], t2[k])] == []


def test_a_dead_rank_ends_the_job_and_the_checkpoint_resumes(tiny_data, tmp_path):
    """Rank 1 is killed (SIGKILL) at its 6th batch: torchrun ends the job with a non-zero code within
    60 s, the last checkpoint loads, and one process resumes it (another world size: a line in the log)."""
    out = tmp_path / "run"
    t0 = time.monotonic()
    r = torchrun(WORKER, "die", tiny_data, out, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert took < 60, took
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=False)
    assert ck["step"] >= 2 and ck["world_size"] == 2
    from keypointgan.api import train

    train(tiny_data, out, resume=True, steps=ck["step"] + 2, progress=False, data_workers=0)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    changed = [x for x in records if x.get("event") == "world_size_changed"]
    assert changed and changed[-1]["from"] == 2 and changed[-1]["to"] == 1
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=False)["step"] == ck["step"] + 2


def test_without_torchrun_a_dead_rank_is_a_clear_error_in_the_others(tiny_data, tmp_path):
    """Processes started by hand (no torchrun agent to stop them): when rank 1 dies, rank 0's next
    collective fails and it ends with ProcessLost naming the intact checkpoint, logged as process_lost."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, str(WORKER), "die", str(tiny_data), str(out)], env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    t0 = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
    procs[1].wait(timeout=30)
    assert time.monotonic() - t0 < 60
    assert procs[0].returncode != 0 and procs[1].returncode == -9
    assert "ProcessLost: rank 0 lost contact with the other processes" in err and "is intact" in err
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "process_lost"
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=False)["step"] >= 2


@pytest.mark.parametrize("env, says", [
    ({"RANK": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"RANK": "abc", "WORLD_SIZE": "2"}, "RANK='abc' must be a whole number"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
    ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 is outside 0..1"),
    ({"RANK": "1", "WORLD_SIZE": "2"}, "no rendezvous (MASTER_ADDR, MASTER_PORT unset)"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "x"}, "MASTER_PORT='x' must be a whole number"),
    ({"LOCAL_RANK": "-"}, "LOCAL_RANK='-' must be a whole number"),
])
def test_a_bad_environment_is_one_line_exit_2_and_nothing_written(env, says, tiny_data, tmp_path, monkeypatch, capsys):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        from_environment()
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
    assert not out.exists()


def test_the_environment_of_one_process_and_of_torchrun():
    assert not from_environment({}).enabled
    d = from_environment({"RANK": "0", "WORLD_SIZE": "1"})
    assert (d.rank, d.world_size, d.enabled, d.is_writer) == (0, 1, False, True)
    d = from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "29500"})
    assert (d.rank, d.world_size, d.local_rank, d.enabled, d.is_writer) == (3, 4, 1, True, False)
