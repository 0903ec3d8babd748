import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from keypointgan import InputError, KeypointDetector
from keypointgan.api import train
from keypointgan.data import Layout, load_prior
from keypointgan.nets import ConditionalDecoder, KeypointRegressor, MultiScaleDiscriminator, PoseEncoder
from keypointgan.train import Trainer


def test_network_shapes():
    x = torch.randn(2, 3, 32, 32)
    y = PoseEncoder(widths=(4, 8, 16))(x)
    assert y.shape == (2, 1, 32, 32)
    p, maps = KeypointRegressor(num_keypoints=5, widths=(4, 8, 16, 16))(y, return_heatmaps=True)
    assert p.shape == (2, 5, 2) and maps.shape == (2, 5, 4, 4) and torch.allclose(p, torch.stack([(torch.softmax(maps.mean(d), -1) * torch.linspace(-1, 1, 4)).sum(-1) for d in (2, 3)], -1), atol=1e-6)  # marginal soft-argmax of its own maps
    assert ConditionalDecoder(widths=(4, 8, 16))(y, x).shape == (2, 3, 32, 32)
    outs = MultiScaleDiscriminator(ndf=4, n_layers=2, num_scales=2)(y)
    assert [o.shape[-1] for o in outs] == [6, 2]  # 32→16→8→7→6 and 16→8→4→3→2


def make_trainer(tiny_data, tmp_path, **over):
    lay = Layout(tiny_data)
    prior = load_prior(lay.prior_path, lay.skeleton)
    from keypointgan.api import make_eval_set

    cfg = tiny_config(**over)
    es = make_eval_set(lay, lay.videos[-1:], cfg.model.size, 8)
    return Trainer(cfg, lay.skeleton, prior, lay.videos, tmp_path / "run", eval_set=es, progress=False)


def test_regressor_pretraining_reduces_loss(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, pretrain_lr=3e-3, pretrain_batch=8)
    losses = []
    t.pretrain_regressor(steps=60, log=lambda r: losses.append(r["loss_eta_prior"]))
    # logged every 25 steps: 0, 25, 50
    assert losses[-1] < 0.5 * losses[0]


def test_training_steps_reduce_reconstruction_loss(tiny_data, tmp_path):
    torch.manual_seed(0)
    t = make_trainer(tiny_data, tmp_path, lr=2e-3, steps=1)
    x, xa = next(t.batches())
    rec = [t.train_step(x, xa)["loss_rec"] for _ in range(40)]
    assert np.mean(rec[-5:]) < 0.8 * np.mean(rec[:5])
    out = t.train_step(x, xa)
    assert {"loss_rec", "loss_g_adv", "loss_d_real", "loss_d_fake", "loss_eta_prior", "loss_eta_self"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())


def test_ablation_switches_change_the_step(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, discriminator=False, bottleneck=False, steps=1)
    x, xa = next(t.batches())
    d0 = [p.clone() for p in t.nets["disc"].parameters()]
    out = t.train_step(x, xa)
    assert "loss_g_adv" not in out and "loss_d_fake" not in out
    assert all(torch.equal(a, b) for a, b in zip(d0, t.nets["disc"].parameters()))


def test_train_save_load_identical_predictions_and_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    res = train(tiny_data, out, config=tiny_config(steps=3), eval_data=tiny_data, progress=False)
    assert set(res) >= {"error", "error_flip", "pck", "n_frames"}
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in log) and any(r.get("event") == "pretrained" for r in log)
    assert list((out / "samples").glob("*.png"))
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 3 and ck["version"] and ck["config"]["steps"] == 3 and ck["skeleton"]["name"] == "synthetic"

    det = KeypointDetector.from_checkpoint(out)
    lay = Layout(tiny_data)
    from keypointgan.io import read_image

    img = read_image(lay.videos[0].frames[0])
    a = det.predict(img)
    b = KeypointDetector.from_checkpoint(out / "checkpoints" / "latest.pt").predict(img)
    assert a.shape == (15, 2) and np.array_equal(a, b)

    with pytest.raises(InputError, match="already holds a checkpoint"):
        train(tiny_data, out, config=tiny_config(steps=3), progress=False)
    with pytest.raises(InputError, match="cannot change batch_size when resuming"):
        train(tiny_data, out, resume=True, steps=5, batch_size=8, progress=False)
    train(tiny_data, out, resume=True, steps=5, progress=False)
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 5
    starts = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "start"]
    assert starts == [0, 3]


def test_detector_input_kinds_and_pixel_mapping(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_data, out, config=tiny_config(steps=1, pretrain_steps=0), progress=False)
    det = KeypointDetector.from_checkpoint(out, device="cpu")
    K = det.skeleton.num_keypoints
    fixed = torch.tensor([[-1.0, -1.0], [1.0, 1.0]] + [[0.0, 0.0]] * (K - 2))
    det.predict_norm = lambda x, batch_size=64: fixed.expand(x.shape[0], K, 2).clone()
    one = det.predict(np.zeros((32, 32, 3), np.uint8))
    assert one.shape == (K, 2)
    # at the model's size, -1 / 1 are the first / last pixel centres
    assert np.allclose(one[0], [0, 0]) and np.allclose(one[1], [31, 31]) and np.allclose(one[2], [15.5, 15.5])
    many = det.predict([np.zeros((64, 128, 3), np.uint8), np.zeros((32, 32), np.uint8)])
    assert many.shape == (2, K, 2)
    # a 128×64 (W×H) image: pixel edges map to edges, so -1 ↦ 2·(0+0.5)−0.5 etc.
    assert np.allclose(many[0, 0], [(0.5) * 4 - 0.5, (0.5) * 2 - 0.5])
    assert np.allclose(many[0, 1], [(31.5) * 4 - 0.5, (31.5) * 2 - 0.5])
    t = det.predict(torch.zeros(3, 3, 32, 32))
    assert t.shape == (3, K, 2) and np.allclose(t[0], one)
    with pytest.raises(InputError, match="uint8"):
        det.predict(np.zeros((8, 8, 3), np.float32))


def test_detector_real_forward_matches_training_eval(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_data, out, config=tiny_config(steps=2), progress=False)
    det = KeypointDetector.from_checkpoint(out)
    lay = Layout(tiny_data)
    from keypointgan.data import FrameStore, image_to_tensor

    store = FrameStore(lay.videos[:1], det.size)
    x = image_to_tensor(np.stack([store.get(i) for i in range(4)]))
    pix_tensor = det.predict(x)
    pix_list = det.predict([store.get(i) for i in range(4)])
    assert np.allclose(pix_tensor, pix_list, atol=1e-4)
    assert np.allclose(pix_list, (det.predict_norm(x).numpy() + 1) * 15.5, atol=1e-3)  # [-1, 1] ↦ first / last pixel centre of 32 px


def test_ema_and_lr_decay(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, lr_decay_fraction=0.5, steps=4, lr=1e-3)
    x, xa = next(t.batches())
    for _ in range(3):
        t.train_step(x, xa)
        t.step += 1
    raw = t.nets["phi"].head.weight
    avg = t.ema["phi"].head.weight
    assert not torch.equal(raw, avg)
    assert t.inference_nets()[0] is t.ema["phi"]
    # lr: constant for the first half of the budget, then linear to 0
    t._set_lr(0.25)
    assert t.opt["g"].param_groups[0]["lr"] == pytest.approx(1e-3)
    t._set_lr(0.75)
    assert t.opt["g"].param_groups[0]["lr"] == pytest.approx(0.5e-3)
    t._set_lr(1.0)
    assert t.opt["d"].param_groups[0]["lr"] == 0.0
    path = t.save()
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["ema"]["phi"]["head.weight"], avg)
    det = KeypointDetector.from_checkpoint(path)
    assert torch.equal(det.phi.head.weight, avg)


def test_fallback_loss_weights_pixels_and_keeps_scale():
    import torch

    from keypointgan.losses import FallbackReconstructionLoss

    loss = FallbackReconstructionLoss()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    # a constant weight changes nothing (the weighted means are normalised)
    assert torch.allclose(loss(a, b), loss(a, b, torch.full((2, 1, 16, 16), 3.0)))
    # a mismatch confined to pixels with (almost) no weight costs (almost) nothing
    b2 = torch.where(torch.arange(16).view(1, 1, 16, 1) >= 8, a, b)
    w = torch.where(torch.arange(16).view(1, 1, 16, 1) >= 8, 1.0, 1e-4).expand(2, 1, 16, 16)
    assert loss(a, b2, w) < 0.01 * loss(a, b2)


def test_motion_weight_emphasises_what_moved(tiny_data):
    import torch

    from keypointgan.config import make_config
    from keypointgan.data import Layout, load_prior
    from keypointgan.train import Trainer

    lay = Layout(tiny_data)
    cfg = tiny_config(rec_motion_weight=4.0)
    t = Trainer(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, tiny_data / "run_mw", progress=False)
    x = torch.zeros(1, 3, 8, 8)
    xa = x.clone()
    xa[..., 2, 3] = 1.0  # one pixel changed between the frames
    w = t._rec_weight(x, xa)["weight"]
    assert w[0, 0, 2, 3].item() == pytest.approx(5.0) and w.sum().item() == pytest.approx(64 + 4.0)
    with pytest.raises(Exception, match="rec_motion_weight"):
        make_config("cpu-64", rec_motion_weight=-1.0).validate()


def test_moving_average_gets_its_own_batchnorm_statistics(tiny_data, tmp_path):
    def bn_means(net):
        return [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, ema_norm_batches=3, steps=3)
    it = t.batches()
    for _ in range(3):
        t.train_step(*next(it))
        t.step += 1
    raw = bn_means(t.nets["phi"])
    first = bn_means(t.inference_nets()[0])
    # measured for the average's own weights, not copied from the raw network's last batches
    assert not all(torch.allclose(a, b) for a, b in zip(raw, first))
    # measured once per step, deterministically (seeded by seed and step), training RNG untouched
    gen_state = t.gen.get_state()
    t._ema_norm_step = -1
    again = bn_means(t.inference_nets()[0])
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and torch.equal(gen_state, t.gen.get_state())
    assert all(torch.equal(a, b) for a, b in zip(first, bn_means(t.state_dict() and t.ema["phi"])))

    # off: the average carries the raw network's statistics
    t0 = make_trainer(tiny_data, tmp_path / "off", ema_decay=0.9, ema_norm_batches=0, steps=3)
    t0.train_step(*next(t0.batches()))
    t0.step += 1
    assert all(torch.equal(a, b) for a, b in zip(bn_means(t0.nets["phi"]), bn_means(t0.inference_nets()[0])))


def test_weight_averaging_phase_is_a_plain_mean(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, swa_fraction=0.5, steps=10)
    raw, avg = t.nets["phi"].head.weight, t.ema["phi"].head.weight
    with torch.no_grad():
        avg.fill_(1.0)
        t.step, t._progress_now = 100, 0.4  # before the last half: exponential, weight 1 − 0.9
        raw.fill_(3.0)
        t._update_ema()
        assert torch.allclose(avg, torch.full_like(avg, 1.2))
        t._progress_now = 0.5  # the last half: a plain mean, the average so far counting as one
        for v in (2.0, 5.0, 8.0):
            raw.fill_(v)
            t._update_ema()
    assert t.swa_count == 3 and torch.allclose(avg, torch.full_like(avg, (1.2 + 2 + 5 + 8) / 4))
    state = t.state_dict()
    assert state["swa_count"] == 3
    t2 = make_trainer(tiny_data, tmp_path / "resumed", ema_decay=0.9, swa_fraction=0.5, steps=10)
    t2.load_state_dict(state)
    assert t2.swa_count == 3 and torch.equal(t2.ema["phi"].head.weight, avg)
    with pytest.raises(InputError, match="swa_fraction"):
        tiny_config(swa_fraction=1.5).validate()
