"""Crash-safe training: kill and resume, SIGINT, NaN/Inf steps, atomic checkpoints, determinism."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import TinyRun, tiny_config
from keypointgan import InputError, TrainingDiverged
from keypointgan.checkpoint import load_checkpoint, save_checkpoint
from keypointgan.data import Layout, load_prior

N_STEPS = 20  # 32 frames / batch 4 = 8 batches per epoch: two epoch boundaries


def crash_config(path, **over):
    """The tiny test config as a YAML file, logging every step; no periodic evaluation or samples."""
    cfg = tiny_config(ckpt_every=3, eval_every=10_000, sample_every=10_000, log_every=1, **over)
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def cli(*args):
    return [sys.executable, "-m", "keypointgan.cli", *map(str, args)]


def train_cmd(data, out, *extra):
    return cli("train", "--data", data, "--out", out, "--num-threads", 1, "--quiet", "--no-report", *extra)


def logged_steps(run):
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if "loss_rec" in rec:
            steps.append(rec["step"])
    return steps


def wait_for_step(proc, run, step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before step {step}: {proc.stderr.read()}")
        if any(s >= step for s in logged_steps(run)):
            return
        time.sleep(0.01)
    raise AssertionError(f"no step {step} within {timeout} s")


def assert_same(a, b, where=""):
    """Recursive exact equality of two checkpoint states (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_kill_and_resume_gives_identical_weights(tiny_data, tmp_path):
    """SIGKILL a real `keypointgan train` after a checkpoint exists, resume: bit-identical to an uninterrupted run.
    Frames come through 2 data worker processes in the killed run and its resumption, none in the whole run:
    the data order and every batch do not depend on them."""
    cfg = crash_config(tmp_path / "tiny.yaml", data_workers=2)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(train_cmd(tiny_data, killed, "--config", cfg, "--steps", N_STEPS), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(proc, killed, 4)  # the step-3 checkpoint is on disk once step 4 is logged
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ck = load_checkpoint(killed)
    assert 3 <= ck["step"] < N_STEPS and ck["step"] % 3 == 0
    assert max(logged_steps(killed)) > ck["step"]  # the kill came after the checkpoint: those steps are replayed
    r = subprocess.run(train_cmd(tiny_data, killed, "--resume", "--steps", N_STEPS), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(train_cmd(tiny_data, whole, "--config", crash_config(tmp_path / "no_workers.yaml", data_workers=0), "--steps", N_STEPS),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    a, b = load_checkpoint(killed), load_checkpoint(whole)
    assert a["step"] == b["step"] == N_STEPS and a["epoch"] == b["epoch"] == 2  # the data order crossed epochs
    a.pop("elapsed"), b.pop("elapsed")
    assert a["config"].pop("data_workers") == 2 and b["config"].pop("data_workers") == 0
    assert a["pool"]["images"].shape[0] == 50  # the pool is full: its random swaps (the state's generator) were exercised
    assert_same(a, b)  # networks, moving averages, optimisers, pool, every RNG, step, config
    starts = [json.loads(l) for l in (killed / "log.jsonl").read_text().splitlines() if '"start"' in l]
    assert [s["step"] for s in starts] == [0, ck["step"]]


def test_sigint_saves_a_checkpoint_and_exits_130(tiny_data, tmp_path):
    cfg = crash_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(tiny_data, run, "--config", cfg, "--steps", 100_000), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(proc, run, 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    ck = load_checkpoint(run)
    assert ck["step"] >= 2 and ck["step"] == max(logged_steps(run))  # saved at the step boundary, not a periodic one
    last = err.strip().splitlines()[-1]
    assert last == f"keypointgan train: interrupted by signal 2; saved {run / 'checkpoints' / 'latest.pt'} at step {ck['step']}"
    assert "Traceback" not in err
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "interrupted" and log[-1]["saved"] is True
    assert not list((run / "checkpoints").glob(".*.tmp"))


# ----------------------------------------------------------------------------- in-process
def make_trainer(data, out, **over):
    return TinyRun(data, out, **over)


def snapshot(t):
    averages = dict(zip(("phi", "eta"), t.state.average.networks())) if t.state.average else {}
    nets = {**t.state.nets, **{f"ema_{k}": v for k, v in averages.items()}}
    return {k: {n: v.clone() for n, v in net.state_dict().items()} for k, net in nets.items()}


def test_nonfinite_loss_skips_the_step_entirely(tiny_data, tmp_path, capsys, monkeypatch):
    import keypointgan.training.loop as loop

    t = make_trainer(tiny_data, tmp_path / "run", steps=6, ckpt_every=2, eval_every=100, sample_every=100, pretrain_steps=0)
    real = t.state.rec_loss.forward
    calls = {"n": 0}

    def poisoned(pred, target):  # the 4th training step gets a NaN reconstruction loss
        calls["n"] += 1
        out = real(pred, target)
        return out * float("nan") if calls["n"] == 4 else out

    t.state.rec_loss.forward = poisoned
    before = {}
    orig_step = loop.train_step

    def step_and_record(state, x, xa, prior, progress):
        if calls["n"] == 3:  # about to run the poisoned step
            before.update(state=snapshot(t), pool=list(state.pool.images), adam=state.optimizers["g"].state_dict()["state"][0]["exp_avg"].clone())
        result = orig_step(state, x, xa, prior, progress=progress)
        out = {**result.losses, "skipped": result.skipped}
        if calls["n"] == 4:
            after = snapshot(t)
            assert out["skipped"] is True and math.isnan(out["loss_rec"])
            assert_same(before["state"], after, "nets")  # weights, BN statistics and EMA untouched
            assert len(state.pool.images) == len(before["pool"]) and all(a is b for a, b in zip(state.pool.images, before["pool"]))
            assert torch.equal(state.optimizers["g"].state_dict()["state"][0]["exp_avg"], before["adam"])
        return result

    monkeypatch.setattr(loop, "train_step", step_and_record)
    t.fit()
    assert t.state.step == 6 and t.state.skipped_steps == 1 and before
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("event") == "skipped"] == [4]
    assert "warning: step 4: non-finite loss_rec=nan; step skipped (no update)" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run")["skipped_steps"] == 1


def test_repeated_nonfinite_steps_stop_with_a_usable_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    t = make_trainer(tiny_data, run, steps=50, ckpt_every=2, eval_every=100, sample_every=100, pretrain_steps=0, max_nonfinite_steps=3)
    batches = t.loader.batches

    def nan_after_step_4(epoch, index):  # a data batch that turns into NaN from the 5th step on
        for i, b in enumerate(batches(epoch, index)):
            if i >= 4:
                b.x = b.x * float("nan")
            yield b

    t.loader.batches = nan_after_step_4
    with pytest.raises(TrainingDiverged) as e:
        t.fit()
    ck_path = run / "checkpoints" / "latest.pt"
    assert str(e.value) == (f"training stopped at step 7: 3 consecutive steps with non-finite losses or gradients "
                            f"(last: loss_rec=nan, loss_g_adv=nan, loss_d_fake=nan, loss_eta_self=nan); the last checkpoint {ck_path} (step 6) is intact")
    ck = load_checkpoint(ck_path)
    assert ck["step"] == 6  # saved on schedule during the bad streak: the weights are those of step 4
    for net in ck["nets"].values():
        assert all(torch.isfinite(v).all() for v in net.values() if v.is_floating_point())
    # no NaN reached the batch-norm statistics: the checkpointed weights still predict finite points
    from keypointgan import KeypointDetector

    det = KeypointDetector.from_checkpoint(ck_path)
    assert np.isfinite(det.predict(np.zeros((32, 32, 3), np.uint8))).all()
    assert [json.loads(l).get("event") for l in (run / "log.jsonl").read_text().splitlines()][-1] == "diverged"


def test_diverged_run_exits_1_with_one_line(tiny_data, tmp_path, capsys):
    """The CLI's side of divergence: loss weights so large that the losses overflow (a learning rate that
    large is refused by the config: learning rates are in (0, 1])."""
    from keypointgan.cli import main

    cfg = crash_config(tmp_path / "tiny.yaml", max_nonfinite_steps=2, pretrain_steps=0, grad_clip=0.0, w_rec=1e38, w_gan=1e38)
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--config", str(cfg), "--steps", "40", "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [l for l in err.strip().splitlines() if not l.startswith("keypointgan: warning:")]
    assert len(lines) == 1 and lines[0].startswith("keypointgan train: error: training stopped at step ")
    assert "2 consecutive steps with non-finite losses or gradients" in lines[0] and "is intact" in lines[0]
    ck = load_checkpoint(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in ck["nets"]["phi"].values() if v.is_floating_point())


def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "latest.pt"
    save_checkpoint({"format": "keypointgan-checkpoint", "step": 1, "w": torch.arange(5.0)}, path)
    good = path.read_bytes()
    import keypointgan.io as kio

    synced = []
    monkeypatch.setattr(kio, "fsync_dir", lambda p: synced.append(p))
    save_checkpoint({"format": "keypointgan-checkpoint", "step": 2, "w": torch.arange(5.0)}, path)
    assert synced == [path.parent]  # the rename itself was made durable
    assert load_checkpoint(path)["step"] == 2
    save_checkpoint({"format": "keypointgan-checkpoint", "step": 1, "w": torch.arange(5.0)}, path)

    def dying_write(fd):  # the write fails before the rename (full disk, I/O error, a crash)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kio.os, "fsync", dying_write)
    with pytest.raises(OSError):
        save_checkpoint({"format": "keypointgan-checkpoint", "step": 3, "w": torch.arange(5000.0)}, path)
    assert path.read_bytes() == good and load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]  # no temporary file left behind


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    """A checkpoint whose unpickling would create a file: refused with a clear error, and the file never appears."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "keypointgan-checkpoint", "nets": Payload()}, evil)
    # the payload is real: an unsafe load would run it
    probe = tmp_path / "probe.pt"
    torch.save({"x": Payload()}, probe)
    torch.load(probe, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(InputError) as e:
        load_checkpoint(evil)
    assert str(e.value) == f"{evil}: refusing to load: the file holds objects other than tensors and plain data (loading it could run code)"
    assert not marker.exists()
    from keypointgan.cli import main

    assert main(["evaluate", "--checkpoint", str(evil), "--data", str(tmp_path)]) == 2
    assert not marker.exists()


def test_training_loop_draws_only_from_its_own_generator_and_records_seed(tiny_data, tmp_path):
    """A fresh run seeds the global generators; the loop never draws from them (its randomness is the
    training state's generator, which resume restores), so they end exactly as seeded."""
    import random

    t = make_trainer(tiny_data, tmp_path / "run", steps=3, seed=7, eval_every=100, sample_every=100, ckpt_every=100)
    t.fit()
    from keypointgan.seeds import RANK, derive_seed

    seed = derive_seed(7, RANK, 0)
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(seed).get_state())
    after_np, after_py = np.random.get_state()[1].copy(), random.getstate()
    np.random.seed(seed % 2**32), random.seed(seed)
    assert np.array_equal(after_np, np.random.get_state()[1]) and after_py == random.getstate()
    ck = load_checkpoint(tmp_path / "run")
    assert ck["seed"] == 7 and ck["config"]["seed"] == 7
    assert set(ck["rng"]) >= {"gen", "torch", "numpy", "python"}
    start = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert start["seed"] == 7 and start["environment"]["threads"] == torch.get_num_threads()


def test_same_seed_same_data_order_and_first_losses(tiny_data, tmp_path):
    def first(seed, name):
        from keypointgan.training import pretrain_regressor

        t = make_trainer(tiny_data, tmp_path / name, steps=2, seed=seed, pretrain_steps=2)
        pretrain_regressor(t.state, t.prior, progress=False)
        it = t.batches()
        out = []
        for _ in range(2):
            x, xa = next(it)
            out.append((x.clone(), xa.clone(), t.step(x, xa).losses))
        return out

    a, b, c = first(5, "a"), first(5, "b"), first(6, "c")
    for (xa_, xpa, la), (xb, xpb, lb) in zip(a, b):
        assert torch.equal(xa_, xb) and torch.equal(xpa, xpb)  # the same frames in the same order
        assert la == lb  # bit-identical losses
    assert not torch.equal(a[0][0], c[0][0]) and a[0][2] != c[0][2]


def test_sigterm_stops_at_the_step_boundary_exit_143(tiny_data, tmp_path, monkeypatch, capsys):
    """SIGTERM (what schedulers send) is handled like Ctrl-C: finish the step, save, exit 128 + 15."""
    import keypointgan.training.loop as loop
    from keypointgan.cli import main

    real = loop.train_step
    calls = []

    def step_then_term(state, x, xa, prior, progress):
        out = real(state, x, xa, prior, progress=progress)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the step's bookkeeping
        return out

    monkeypatch.setattr(loop, "train_step", step_then_term)
    cfg = crash_config(tmp_path / "tiny.yaml", pretrain_steps=0)
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(cfg), "--steps", "50", "--quiet", "--no-report"])
    torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 143
    assert err[-1] == f"keypointgan train: interrupted by signal 15; saved {run / 'checkpoints' / 'latest.pt'} at step 2"
    assert load_checkpoint(run)["step"] == 2 and len(calls) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was removed again
