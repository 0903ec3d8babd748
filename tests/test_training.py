import json

import numpy as np
import pytest
import torch

from conftest import TinyRun, tiny_config
from keypointgan import InputError, KeypointDetector
from keypointgan.api import train
from keypointgan.data import Layout, load_prior
from keypointgan.nets import ConditionalDecoder, KeypointRegressor, MultiScaleDiscriminator, PoseEncoder


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
    from keypointgan.api import make_eval_set

    lay = Layout(tiny_data)
    es = make_eval_set(lay, lay.videos[-1:], tiny_config(**over).model.size, 8)
    return TinyRun(tiny_data, tmp_path / "run", eval_set=es, **over)


def test_regressor_pretraining_reduces_loss(tiny_data, tmp_path):
    from keypointgan.training import pretrain_regressor

    t = make_trainer(tiny_data, tmp_path, pretrain_lr=3e-3, pretrain_batch=8)
    losses = []
    pretrain_regressor(t.state, t.prior, steps=60, progress=False, log=lambda r: losses.append(r["loss_eta_prior"]))
    # logged every 25 steps: 0, 25, 50
    assert losses[-1] < 0.5 * losses[0]


def test_training_steps_reduce_reconstruction_loss(tiny_data, tmp_path):
    torch.manual_seed(0)
    t = make_trainer(tiny_data, tmp_path, lr=2e-3, steps=1)
    x, xa = next(t.batches())
    rec = [t.step(x, xa).losses["loss_rec"] for _ in range(40)]
    assert np.mean(rec[-5:]) < 0.8 * np.mean(rec[:5])
    out = t.step(x, xa).losses
    assert {"loss_rec", "loss_g_adv", "loss_d_real", "loss_d_fake", "loss_eta_prior", "loss_eta_self"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())


def test_flip_augment_mirrors_pairs_and_prior_poses(tiny_data, tmp_path):
    """flip_augment: the step sees some frame pairs mirrored (target and appearance frame together), and
    the prior poses drawn for it are mirrored about x = 0 with left/right swapped; off, neither."""
    from keypointgan.training.pretrain import sample_prior

    t = make_trainer(tiny_data, tmp_path, flip_augment=True, prior_jitter=0.0, steps=1)
    x, xa = next(t.batches())
    seen = t.step(x, xa).visuals
    mirrored = torch.tensor([torch.equal(seen[0][i], x[i].flip(-1)) for i in range(len(x))])
    assert all(torch.equal(seen[0][i], x[i].flip(-1) if m else x[i]) for i, m in enumerate(mirrored))
    assert all(torch.equal(seen[3][i], xa[i].flip(-1) if m else xa[i]) for i, m in enumerate(mirrored))
    assert 0 < int(mirrored.sum()) < len(x)  # this seed mirrors some, not all

    prior = t.prior[:1].expand(200, -1, -1)  # one pose, drawn 200 times
    perm = t.skeleton.flip_permutation
    assert perm != list(range(len(perm)))
    q = sample_prior(prior, 200, t.state.cfg, t.skeleton, torch.Generator().manual_seed(0), pretrain=False)
    flipped = torch.stack([-prior[0, perm, 0], prior[0, perm, 1]], -1)
    is_flipped = torch.isclose(q, flipped).flatten(1).all(1)
    assert torch.equal(is_flipped, ~torch.isclose(q, prior).flatten(1).all(1))
    assert 70 < int(is_flipped.sum()) < 130
    off = t.state.cfg.__class__(**{**t.state.cfg.__dict__, "flip_augment": False, "prior_jitter": 0.0})
    assert torch.equal(sample_prior(prior, 200, off, t.skeleton, torch.Generator().manual_seed(0), pretrain=False), prior)


def test_prior_jitter_draws_similarity_transforms_within_the_ranges(tiny_data, tmp_path):
    """prior_jitter j: each pose D sees is its prior pose rotated by at most 100·j degrees and scaled by
    1 ± j about its centre, then shifted by at most j per axis, with the ranges covered; 0: unchanged."""
    import math
    from dataclasses import replace

    from keypointgan.training.pretrain import sample_prior

    t = make_trainer(tiny_data, tmp_path, steps=1)
    cfg = replace(t.state.cfg, flip_augment=False, prior_jitter=0.05)
    prior = t.prior[:1].expand(500, -1, -1)  # one pose, drawn 500 times
    q = sample_prior(prior, 500, cfg, t.skeleton, torch.Generator().manual_seed(0), pretrain=False)
    p0 = prior[0] - prior[0].mean(0)
    shift = q.mean(1) - prior[0].mean(0)
    d = q - q.mean(1, keepdim=True)
    scale = d.norm(dim=(1, 2)) / p0.norm()
    cross = (p0[:, 0] * d[..., 1] - p0[:, 1] * d[..., 0]).sum(-1)
    angle = torch.rad2deg(torch.atan2(cross, (p0 * d).sum((-1, -2))))
    # a similarity transform: the residual after removing the fitted rotation and scale is zero
    c, sn = torch.cos(torch.deg2rad(angle)) * scale, torch.sin(torch.deg2rad(angle)) * scale
    fit = torch.stack([c[:, None] * p0[:, 0] - sn[:, None] * p0[:, 1], sn[:, None] * p0[:, 0] + c[:, None] * p0[:, 1]], -1)
    assert torch.allclose(fit, d, atol=1e-5)
    assert angle.abs().max() <= 5 + 1e-3 and angle.abs().max() > 4.5
    assert (scale - 1).abs().max() <= 0.05 + 1e-5 and (scale - 1).abs().max() > 0.045
    assert shift.abs().max() <= 0.05 + 1e-6 and shift.abs().max() > 0.045
    assert math.isclose(float(angle.mean()), 0.0, abs_tol=0.5)
    off = replace(cfg, prior_jitter=0.0)
    assert torch.equal(sample_prior(prior, 500, off, t.skeleton, torch.Generator().manual_seed(0), pretrain=False), prior)


def test_ablation_switches_change_the_step(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, discriminator=False, bottleneck=False, steps=1)
    x, xa = next(t.batches())
    d0 = [p.clone() for p in t.state.nets["disc"].parameters()]
    out = t.step(x, xa).losses
    assert "loss_g_adv" not in out and "loss_d_fake" not in out
    assert all(torch.equal(a, b) for a, b in zip(d0, t.state.nets["disc"].parameters()))


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
    det.predict_grid_points = lambda x, batch_size=64: fixed.expand(x.shape[0], K, 2).clone()
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
    assert np.allclose(pix_list, (det.predict_grid_points(x).numpy() + 1) * 15.5, atol=1e-3)  # [-1, 1] ↦ first / last pixel centre of 32 px


def test_ema_and_lr_decay(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, lr_decay_fraction=0.5, steps=4, lr=1e-3)
    from keypointgan.training import inference_networks, save_state
    from keypointgan.training.loop import lr_scale

    x, xa = next(t.batches())
    for _ in range(3):
        t.step(x, xa)
    raw = t.state.nets["phi"].head.weight
    avg = t.state.average.networks()[0].head.weight
    assert not torch.equal(raw, avg)
    assert inference_networks(t.state, t.loader)[0] is t.state.average.networks()[0]
    # lr: constant for the first half of the budget, then linear to 0
    t.state.set_lr_scale(lr_scale(0.25, 0.5))
    assert t.state.lr("g") == pytest.approx(1e-3)
    t.state.set_lr_scale(lr_scale(0.75, 0.5))
    assert t.state.lr("g") == pytest.approx(0.5e-3)
    t.state.set_lr_scale(lr_scale(1.0, 0.5))
    assert t.state.lr("d") == 0.0
    path = save_state(t.state, t.loader, tmp_path / "ck.pt")
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["ema"]["phi"]["head.weight"], avg)
    det = KeypointDetector.from_checkpoint(path)
    assert torch.equal(det.phi.head.weight, avg)


def test_moving_average_gets_its_own_batchnorm_statistics(tiny_data, tmp_path):
    from keypointgan.training import inference_networks

    def bn_means(net):
        return [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, ema_norm_batches=3, steps=3)
    it = t.batches()
    for _ in range(3):
        t.step(*next(it))
    raw = bn_means(t.state.nets["phi"])
    first = bn_means(inference_networks(t.state, t.loader)[0])
    # measured for the average's own weights, not copied from the raw network's last batches
    assert not all(torch.allclose(a, b) for a, b in zip(raw, first))
    # measured once per step, deterministically (seeded by seed and step), training RNG untouched
    gen_state = t.state.gen.get_state()
    t.state.average.norm_step = None
    again = bn_means(inference_networks(t.state, t.loader)[0])
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and torch.equal(gen_state, t.state.gen.get_state())
    assert all(torch.equal(a, b) for a, b in zip(first, bn_means(t.state.state_dict() and t.state.average.networks()[0])))

    # off: the average carries the raw network's statistics
    t0 = make_trainer(tiny_data, tmp_path / "off", ema_decay=0.9, ema_norm_batches=0, steps=3)
    t0.step(*next(t0.batches()))
    assert all(torch.equal(a, b) for a, b in zip(bn_means(t0.state.nets["phi"]), bn_means(inference_networks(t0.state, t0.loader)[0])))


def test_weight_averaging_phase_is_a_plain_mean(tiny_data, tmp_path):
    t = make_trainer(tiny_data, tmp_path, ema_decay=0.9, swa_fraction=0.5, steps=10)
    average, nets = t.state.average, t.state.nets
    raw, avg = nets["phi"].head.weight, average.networks()[0].head.weight
    with torch.no_grad():
        avg.fill_(1.0)
        raw.fill_(3.0)
        average.update(nets, step=100, progress=0.4)  # before the last half: exponential, weight 1 − 0.9
        assert torch.allclose(avg, torch.full_like(avg, 1.2))
        for v in (2.0, 5.0, 8.0):  # the last half: a plain mean, the average so far counting as one
            raw.fill_(v)
            average.update(nets, step=101, progress=0.5)
    assert average.swa_count == 3 and torch.allclose(avg, torch.full_like(avg, (1.2 + 2 + 5 + 8) / 4))
    state = t.state.state_dict()
    assert state["swa_count"] == 3
    t2 = make_trainer(tiny_data, tmp_path / "resumed", ema_decay=0.9, swa_fraction=0.5, steps=10)
    t2.state.load_state_dict(state)
    assert t2.state.average.swa_count == 3 and torch.equal(t2.state.average.networks()[0].head.weight, avg)
    with pytest.raises(InputError, match="swa_fraction"):
        tiny_config(swa_fraction=1.5).validate()
