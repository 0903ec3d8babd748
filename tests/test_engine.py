"""The training engine's pieces on their own: the objective's gradient routing, the all-or-nothing
update, the data pipeline (workers, shards, resuming mid-epoch), a pre-trained η through the state."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import TinyRun, tiny_config
from keypointgan.data import Layout
from keypointgan.data.datasets import FrameStore
from keypointgan.data.loader import PairBatchSampler, PairLoader
from keypointgan.training import ImagePool, keypointgan_objective
from keypointgan.training.objective import term_parameters
from keypointgan.training.update import Rollback, apply_all_or_nothing


def objective_terms(run, **cfg_over):
    cfg = dataclasses.replace(run.state.cfg, **cfg_over)
    x, xa = next(run.batches())
    q = run.prior[:x.shape[0]]
    return keypointgan_objective(run.state.nets, x, xa, q, cfg=cfg, skeleton=run.skeleton, rec_loss=run.state.rec_loss,
                                 fakes_for_d=lambda y: y)


def grads_of(loss, nets):
    for n in nets.values():
        n.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {k: any(p.grad is not None and p.grad.abs().sum() > 0 for p in n.parameters()) for k, n in nets.items()}


def test_generator_term_reaches_phi_and_psi_only(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run")
    nets = run.state.nets
    terms = objective_terms(run)
    # G: Φ (through η and the renderer, and through D) and Ψ; η and D take part but get no gradient
    assert grads_of(terms.losses["g"], nets) == {"phi": True, "eta": False, "psi": True, "disc": False}
    assert all(p.requires_grad for n in nets.values() for p in n.parameters())  # η and D unfrozen again
    assert grads_of(terms.losses["d"], nets) == {"phi": False, "eta": False, "psi": False, "disc": True}
    assert grads_of(terms.losses["eta"], nets) == {"phi": False, "eta": True, "psi": False, "disc": False}
    # the reconstruction alone reaches Φ only through η and the renderer (the bottleneck): Φ's gradient
    # from it vanishes when η's output is cut off from Φ
    rec = terms.parts["loss_rec"]
    assert grads_of(rec, nets)["phi"]
    # parameters per optimiser: what each term updates
    params = term_parameters(nets)
    assert {id(p) for p in params["g"]} == {id(p) for p in [*nets["phi"].parameters(), *nets["psi"].parameters()]}


def test_without_the_bottleneck_psi_sees_phi_output(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run")
    nets = run.state.nets
    seen = []
    hook = nets["psi"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        with_b = objective_terms(run, bottleneck=True)
        without = objective_terms(run, bottleneck=False)
    finally:
        hook.remove()
    x, y_hat_b, p_b = with_b.visuals[:3]
    y_hat = without.visuals[1]
    assert torch.equal(seen[1], y_hat)  # Ψ got Φ(x) itself
    from keypointgan.training.objective import render

    assert torch.allclose(seen[0], render(p_b, run.skeleton, x.shape[-1], run.state.cfg.model.sigma))  # β(η(Φ(x)))
    assert not torch.allclose(seen[0], seen[1])
    # without the bottleneck the reconstruction reaches Φ directly, not through η
    assert grads_of(without.parts["loss_rec"], nets) == {"phi": True, "eta": False, "psi": True, "disc": False}


def test_all_or_nothing_update_rolls_back_buffers_and_pool():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    pool = ImagePool(2)
    weights = [p.detach().clone() for p in net.parameters()]
    buffers = [b.detach().clone() for b in net.buffers()]
    rollback = Rollback(list(net.buffers()), pool)
    out = net(torch.randn(4, 3))  # the forward pass moves the batch-norm statistics
    pool.query(torch.zeros(1, 1, 2, 2), torch.Generator())
    assert not torch.equal(buffers[0], net[1].running_mean) and len(pool.images) == 1
    loss = out.sum() * float("inf")
    values, applied = apply_all_or_nothing({"g": loss}, {"loss": loss}, {"g": opt}, {"g": net.parameters()}, grad_clip=1.0, rollback=rollback)
    assert not applied and values == {"loss": float("inf")}
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers())) and pool.images == []
    assert all(p.grad is None for p in net.parameters())
    # a finite loss is applied: the weights move
    rollback = Rollback(list(net.buffers()), pool)
    loss = net(torch.randn(4, 3)).pow(2).sum()
    values, applied = apply_all_or_nothing({"g": loss}, {"loss": loss}, {"g": opt}, {"g": net.parameters()}, grad_clip=1.0, rollback=rollback)
    assert applied and not all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))


def batches_of(loader, n, epoch=0, index=0):
    it = loader.batches(epoch, index)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def test_loader_batches_do_not_depend_on_workers_and_resume_mid_epoch(tiny_data):
    store = FrameStore(Layout(tiny_data).videos, 32)
    kw = dict(batch_size=4, gap=(1, 20), seed=3)
    a = batches_of(PairLoader(store, workers=0, **kw), 12)  # 8 batches per epoch: across an epoch boundary
    b = batches_of(PairLoader(store, workers=2, **kw), 12)
    assert [(x.epoch, x.index) for x in a] == [(e, i) for e in (0, 1) for i in range(8)][:12]
    assert all(torch.equal(p.x, q.x) and torch.equal(p.x_app, q.x_app) for p, q in zip(a, b))
    assert a[0].x.dtype == torch.float32 and a[0].x.min() >= -1 and a[0].x.max() <= 1 and a[0].x.shape == (4, 3, 32, 32)
    # resuming at batch 5 of epoch 0 continues exactly
    c = batches_of(PairLoader(store, workers=2, **kw), 7, epoch=0, index=5)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.x_app, q.x_app) and (p.epoch, p.index) == (q.epoch, q.index) for p, q in zip(a[5:], c))
    # another seed, another order
    d = batches_of(PairLoader(store, workers=0, batch_size=4, gap=(1, 20), seed=4), 1)
    assert not torch.equal(a[0].x, d[0].x)


def test_shards_are_disjoint_and_equal_per_rank():
    n, bs = 35, 4  # 35 frames over 2 ranks: 17 each, 4 batches each
    shards = [PairBatchSampler(n, bs, seed=1, rank=r, world_size=2) for r in (0, 1)]
    epoch0 = [[k[2] for batch in list(iter_batches(s, 4)) for k in batch] for s in shards]
    assert all(s.batches_per_epoch() == 4 for s in shards) and len(epoch0[0]) == len(epoch0[1]) == 16
    assert not set(epoch0[0]) & set(epoch0[1])
    one = PairBatchSampler(n, bs, seed=1)
    assert sorted(k[2] for batch in iter_batches(one, 8) for k in batch) == sorted(one.epoch_order(0)[:32].tolist())


def iter_batches(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_pretrained_regressor_goes_through_the_state_and_the_average_follows(tiny_data, tmp_path):
    from keypointgan.api import pretrain_regressor, train
    from keypointgan.checkpoint import load_checkpoint

    reg = tmp_path / "eta.pt"
    lay = Layout(tiny_data)
    cfg = tiny_config(steps=0, ema_decay=0.9, pretrain_steps=3)
    pretrain_regressor(lay.prior_path, lay.skeleton, reg, config=cfg, progress=False)
    eta = load_checkpoint(reg)["nets"]["eta"]
    train(tiny_data, tmp_path / "run", config=cfg, regressor=reg, progress=False)
    ck = load_checkpoint(tmp_path / "run")
    assert ck["pretrained"] and ck["step"] == 0
    for k, v in eta.items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(ck["nets"]["eta"][k], v), k
            assert torch.equal(ck["ema"]["eta"][k], v), k  # the average is the loaded η, not the random one
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert not any(r.get("event") == "pretrained" for r in log)  # no pre-training of its own


def test_data_wait_is_logged(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run", steps=4, pretrain_steps=0, log_every=2)
    run.fit()
    recs = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    waits = [r["data_wait"] for r in recs if "data_wait" in r]
    assert len(waits) == 2 and all(0 <= w < 1 for w in waits)


def test_tensorboard_scalars_and_samples(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = TinyRun(tiny_data, tmp_path / "run", steps=4, pretrain_steps=2, log_every=1, sample_every=2, tensorboard=True)
    run.fit()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    rec = acc.Scalars("train/loss_rec")
    logged = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e.step for e in rec] == [1, 2, 3, 4]
    assert np.allclose([e.value for e in rec], [r["loss_rec"] for r in logged if "loss_rec" in r])
    assert [e.step for e in acc.Images("samples")] == [2, 4]


@pytest.mark.parametrize("norm,batch_std", [("instance", 0), ("instance-noaffine", 0), ("group", 0), ("none", 0), ("instance", 2), ("instance", 4)])
def test_one_discriminator_pass_over_real_and_fake_equals_two(norm, batch_std):
    """The objective runs D once over the rendered prior poses and the fakes together (D normalises each
    image on its own, and its batch-std groups do not straddle the halves): the same LSGAN terms as two
    passes (bit for bit without the batch-std channel)."""
    from keypointgan.config import make_config
    from keypointgan.losses import lsgan_loss
    from keypointgan.nets import build_networks

    torch.manual_seed(0)
    disc = build_networks(make_config("cpu-64", model=dict(disc_norm=norm, disc_batch_std=batch_std)).model, 5)["disc"]
    real, fake = torch.rand(4, 1, 64, 64) * 2 - 1, torch.rand(4, 1, 64, 64) * 2 - 1
    both = disc(torch.cat([real, fake]))
    same = (lambda a, b: a == b) if not batch_std else (lambda a, b: a == pytest.approx(b, rel=1e-6))  # noqa: E731
    assert same(lsgan_loss([o[:4] for o in both], True).item(), lsgan_loss(disc(real), True).item())
    assert same(lsgan_loss([o[4:] for o in both], False).item(), lsgan_loss(disc(fake), False).item())


def test_minibatch_std_measures_variety_per_group():
    """The batch-std channel: 0 (up to its epsilon) for a group of identical images, the features'
    standard deviation for differing ones, one value per group of consecutive images, and it carries
    gradient to every image of the group."""
    from keypointgan.nets.discriminator import MinibatchStd

    layer = MinibatchStd(2)
    same = torch.ones(2, 3, 4, 4)
    two = torch.cat([torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 2.0)])  # std 1 in every feature
    out = layer(torch.cat([same, two]))
    assert out.shape == (4, 4, 4, 4)
    assert torch.equal(out[:, :3], torch.cat([same, two]))
    assert torch.allclose(out[:2, 3], torch.full((2, 4, 4), 1e-4))
    assert torch.allclose(out[2:, 3], torch.ones(2, 4, 4))
    assert MinibatchStd(4)(torch.rand(6, 3, 2, 2)).shape == (6, 4, 2, 2)  # 6 images: groups of 3
    x = torch.rand(4, 3, 4, 4, requires_grad=True)
    layer(x)[:, 3].sum().backward()
    assert (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()
    # any memory layout: values and gradients of the definition (the population std per feature, averaged)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(8, 5, 3, 2).contiguous(memory_format=fmt).requires_grad_(True)
        ref = x.detach().clone().requires_grad_(True)
        want = (ref.reshape(4, 2, 5, 3, 2).var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        got = layer(x)[::2, 5, 0, 0]
        assert torch.allclose(got, want, atol=1e-6)
        got.sum().backward()
        want.sum().backward()
        assert torch.allclose(x.grad, ref.grad, atol=1e-6)


def test_a_collapsed_batch_is_told_apart_only_with_batch_std():
    """D with the batch-std channel sees the difference between a varied batch and the same image
    repeated (each image identical to one of the varied batch); without it the repeated image scores
    the same as its copy in the varied batch."""
    from keypointgan.config import make_config
    from keypointgan.nets import build_networks

    varied = torch.rand(4, 1, 64, 64) * 2 - 1
    same = varied[:1].expand(4, 1, 64, 64).contiguous()
    for batch_std, differs in ((0, False), (4, True)):
        torch.manual_seed(0)
        disc = build_networks(make_config("cpu-64", model=dict(disc_batch_std=batch_std)).model, 5)["disc"].eval()
        a, b = disc(varied)[0][0], disc(same)[0][0]
        assert (not torch.allclose(a, b, atol=1e-6)) == differs
