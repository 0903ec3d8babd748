"""Behaviour nothing else checks (issue 14): the LSGAN loss, the image pool, the initialisation, the
perceptual loss's per-layer running means (alone and through training and resume with random
VGG-19 weights) and the paper presets' own settings through real steps.

Public API only (``keypointgan.api.train``, ``keypointgan.losses``, ``keypointgan.nets``, the
checkpoint's contents), except the image pool, which has no other home yet.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from vgg_files import state_dict_torchvision
from keypointgan.api import train
from keypointgan.checkpoint import load_checkpoint
from keypointgan.config import make_config
from keypointgan.losses import PERCEPTUAL_LAYERS, PerceptualLoss, VGG19Features, lsgan_loss


# ------------------------------------------------------------------ LSGAN
def test_lsgan_loss_is_mse_to_one_or_zero_averaged_over_scales():
    big = torch.full((2, 1, 8, 8), 0.5)  # 128 values at scale 1
    small = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)  # 2 values at scale ½
    # real: MSE against 1 per scale = 0.25 and (1 + 1) / 2 = 1; scales count equally, not pixels
    assert lsgan_loss([big, small], True).item() == pytest.approx((0.25 + 1.0) / 2)
    # fake: MSE against 0 = 0.25 and (0 + 4) / 2 = 2
    assert lsgan_loss([big, small], False).item() == pytest.approx((0.25 + 2.0) / 2)
    assert lsgan_loss([torch.ones(3, 1, 4, 4)], True).item() == 0.0
    assert lsgan_loss([torch.zeros(3, 1, 4, 4)], False).item() == 0.0
    # the gradient pulls each output towards its target: d/do mean((o - 1)²) / n_scales
    o = torch.tensor([[[[0.0, 3.0]]]], requires_grad=True)
    lsgan_loss([o, torch.ones(1, 1, 1, 1)], True).backward()
    assert torch.allclose(o.grad, torch.tensor([[[[-1.0, 2.0]]]]) / 2)


# ------------------------------------------------------------------ image pool
def test_image_pool_fills_then_swaps_half_the_fakes_for_older_ones():
    from keypointgan.training import ImagePool

    gen = torch.Generator().manual_seed(0)
    assert torch.equal(ImagePool(0).query(torch.arange(4.0).view(4, 1, 1, 1), gen), torch.arange(4.0).view(4, 1, 1, 1))
    pool = ImagePool(10)
    first = torch.arange(10.0).view(10, 1, 1, 1).requires_grad_()
    out = pool.query(first, gen)
    assert torch.equal(out, first.detach()) and not out.requires_grad  # filling: the fakes themselves
    assert sorted(float(i) for i in pool.state_dict()["images"].view(-1)) == list(range(10))
    returned_old, kept = [], 0
    for step in range(100):
        new = torch.arange(10.0 + 10 * step, 20.0 + 10 * step).view(10, 1, 1, 1)
        before = pool.state_dict()["images"].view(-1).tolist()
        out = pool.query(new, gen).view(-1).tolist()
        after = pool.state_dict()["images"].view(-1).tolist()
        assert len(after) == 10
        # nothing lost, nothing duplicated: what went in is what is returned plus what stays
        assert sorted(before + new.view(-1).tolist()) == sorted(after + out)
        for i, (v, n) in enumerate(zip(out, new.view(-1).tolist())):
            if v == n:
                kept += 1
            else:  # an older fake (from the pool, or put there earlier in this batch), which gives up its place
                assert v in before or v in new.view(-1).tolist()[:i]
                returned_old.append(v)
    assert 0.4 < kept / 1000 < 0.6  # probability ½
    assert len(returned_old) == len(set(returned_old))  # a swapped-out fake leaves the pool: returned once
    # state_dict / load_state_dict keep the pool's contents
    other = ImagePool(10)
    other.load_state_dict(pool.state_dict(), "cpu")
    assert torch.equal(torch.cat(other.images), torch.cat(pool.images))


# ------------------------------------------------------------------ initialisation
def test_initialisation_is_normal_002_and_phi_starts_at_the_background(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(steps=0, pretrain_steps=0, eval_every=100, sample_every=100, ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0)
    train(tiny_data, out, config=cfg, progress=False)
    ck = load_checkpoint(out)
    assert ck["step"] == 0
    for name in ("phi", "eta", "psi", "disc"):
        sd = ck["nets"][name]
        convs = torch.cat([v.reshape(-1) for k, v in sd.items() if k.endswith("weight") and v.ndim == 4])
        assert abs(convs.mean().item()) < 0.003 and 0.018 < convs.std().item() < 0.022, name
        scales = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 1]
        if scales:  # normalisation scales ~ N(1, 0.02)
            s = torch.cat(scales)
            assert abs(s.mean().item() - 1) < 0.01 and 0.01 < s.std().item() < 0.03, name
        biases = {k: v for k, v in sd.items() if k.endswith("bias")}
        head = biases.pop("head.bias", None)
        assert all(torch.count_nonzero(v) == 0 for v in biases.values()), name
        if name == "phi":  # Φ emits the background value of rendered skeletons (-1) at the start
            assert torch.equal(head, torch.full_like(head, -1.0))
        elif head is not None:
            assert torch.count_nonzero(head) == 0


# ------------------------------------------------------------------ perceptual loss
@pytest.fixture(scope="module")
def vgg():
    """VGG-19 with random weights at ImageNet-trained scale (He init: activations keep their size through
    the 16 layers, as with real weights; PyTorch's default init shrinks conv5_2's loss to ~1e-13)."""
    g = torch.Generator().manual_seed(0)
    net = VGG19Features()
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / (9 * m.in_channels)) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net


def _layer_losses(vgg, a, b):
    fa, fb = vgg(a), vgg(b)
    return torch.stack([F.mse_loss(fa[n], fb[n]) for n in PERCEPTUAL_LAYERS])


def test_perceptual_loss_divides_each_layer_by_its_running_mean(vgg):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    preds = [x + 0.3 * torch.randn(2, 3, 32, 32, generator=g) for _ in range(3)]
    loss = PerceptualLoss(vgg)
    with torch.no_grad():
        raw = [_layer_losses(vgg, p, x) for p in preds]
    assert (raw[0] > 0).all() and raw[0].max() / raw[0].min() > 10  # layers on very different scales
    # first call: the running means start at the losses themselves, so every layer counts 1
    assert loss(preds[0], x).item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(loss.running, raw[0], rtol=1e-5)
    # then an exponential moving average with momentum 0.99
    second = loss(preds[1], x)
    running = 0.99 * raw[0] + 0.01 * raw[1]
    assert torch.allclose(loss.running, running, rtol=1e-5)
    assert second.item() == pytest.approx((raw[1] / running).mean().item(), rel=1e-5)
    # evaluation mode uses the running means without updating them
    loss.eval()
    third = loss(preds[2], x)
    assert torch.allclose(loss.running, running, rtol=1e-5)
    assert third.item() == pytest.approx((raw[2] / running).mean().item(), rel=1e-5)
    # the gradient reaches the prediction, not the VGG weights
    loss.train()
    p = preds[0].clone().requires_grad_()
    loss(p, x).backward()
    assert p.grad.abs().sum() > 0 and all(w.grad is None for w in vgg.parameters())


@pytest.fixture(scope="module")
def vgg_file(vgg, tmp_path_factory):
    """Random VGG-19 weights as a torchvision state dict file (nothing is downloaded)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state_dict_torchvision(vgg), path)
    return path


def test_training_with_vgg19_weights_keeps_and_resumes_its_running_means(tiny_data, vgg_file, tmp_path):
    """A step, then a resumed step: the resumed run goes on from the saved running means. Were they lost,
    its first step would start them afresh at its own losses, and its normalised loss would be exactly 1."""
    cfg = tiny_config(steps=1, pretrain_steps=0, eval_every=100, sample_every=100, ckpt_every=100, vgg_weights=str(vgg_file),
                      ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0)
    run = tmp_path / "run"
    train(tiny_data, run, config=cfg, progress=False)
    first = load_checkpoint(run)["rec_loss"]
    train(tiny_data, run, resume=True, steps=2, progress=False)
    second = load_checkpoint(run)["rec_loss"]
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["rec_loss"] for r in recs if r.get("event") == "start"] == ["perceptual (VGG-19)"] * 2
    rec = [r["loss_rec"] for r in recs if "loss_rec" in r]
    # one running mean per layer, positive; the VGG weights themselves are not saved
    assert set(first) == {"running", "initialised"} and first["running"].shape == (len(PERCEPTUAL_LAYERS),)
    assert bool(first["initialised"]) and (first["running"] > 0).all()
    assert len(rec) == 2 and rec[0] == pytest.approx(1.0, rel=1e-5)  # each layer's loss over itself
    assert abs(rec[1] - 1.0) > 1e-3  # over the running mean carried across the resume
    # the second step moved each running mean 1 % of the way to that layer's new loss
    assert not torch.equal(first["running"], second["running"])
    ratio = second["running"] / first["running"]
    assert ((ratio > 0.99 - 1e-6) & (ratio < 0.99 + 0.01 * 100)).all()


# ------------------------------------------------------------------ the paper presets
PAPER_PRESETS = ("paper-128", "human36m")


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_hold_the_papers_settings(preset):
    cfg = make_config(preset)
    m = cfg.model
    assert (m.size, cfg.batch_size) == (128, 16)
    assert m.encoder_widths == (32, 64, 128, 256) and m.decoder_widths == (32, 64, 128, 256)
    assert (m.disc_ndf, m.disc_layers, m.disc_scales, m.sigma) == (64, 3, 3, 0.2)
    assert (cfg.lr, tuple(cfg.betas), cfg.grad_clip, cfg.pool_size) == (2e-4, (0.5, 0.999), 1.0, 50)
    assert (cfg.w_gan, cfg.w_rec, cfg.w_reg_prior, cfg.w_reg_self) == (10, 10, 0.9, 0.1)
    assert cfg.bottleneck and cfg.discriminator and not cfg.flip_test and cfg.ema_decay == 0


def test_a_paper_preset_trains_a_few_real_steps(tiny_data, tmp_path):
    """paper-128 as it is — 128 px, the paper's widths, three PatchGANs, the paper's weights — with only
    the batch, the budget and η pre-training (one step of two poses) made small."""
    out = tmp_path / "run"
    cfg = make_config("paper-128", batch_size=2, steps=1, pretrain_steps=1, pretrain_batch=2, log_every=1, eval_every=100, sample_every=100, device="cpu", seed=3)
    train(tiny_data, out, config=cfg, progress=False)
    ck = load_checkpoint(out)
    assert ck["step"] == 1 and ck["config"] == cfg.to_dict()
    assert ck["nets"]["phi"]["head.weight"].shape == (1, 32, 1, 1)
    assert sum(1 for k in ck["nets"]["disc"] if k.endswith("weight") and ck["nets"]["disc"][k].ndim == 4) == 3 * 5  # 3 scales × 5 convs
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss_g_adv" in r]
    assert len(steps) == 1 and all(np.isfinite(r[k]) for r in steps for k in ("loss_rec", "loss_g_adv", "loss_d_real", "loss_d_fake"))
    # the step moved the networks: Φ's output bias is no longer its initial -1, D's biases no longer 0
    assert not torch.equal(ck["nets"]["phi"]["head.bias"], torch.full((1,), -1.0))
    assert any(torch.count_nonzero(v) for k, v in ck["nets"]["disc"].items() if k.endswith("bias"))
