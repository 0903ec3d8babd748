"""The `release` preset and the switches that reproduce the authors' release (docs/design.md, fidelity table)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TinyRun
from keypointgan import InputError
from keypointgan.config import make_config
from keypointgan.losses import VGG19Features, make_reconstruction_loss
from keypointgan.nets import ConditionalDecoder, MultiScaleDiscriminator, build_networks


def _instance_norms(net):
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


def test_release_preset_follows_the_release_and_builds_its_networks():
    cfg = make_config("release")
    m = cfg.model
    assert (m.size, cfg.batch_size, tuple(cfg.betas), cfg.lr) == (128, 16, (0.5, 0.999), 2e-4)
    assert (m.regressor_norm, m.disc_norm, m.disc_downsample, m.decoder_style) == ("instance-noaffine", "instance-noaffine", "bilinear", "release")
    assert cfg.vgg_relu is False and cfg.pretrain_lr == 2e-4 and cfg.pretrain_rotate == 0 and not cfg.flip_test
    nets = build_networks(m, 32)
    # η and D: instance norm without learnt scale/shift; Φ and Ψ: batch norm (the release's too)
    assert _instance_norms(nets["eta"]) and all(not n.affine for n in _instance_norms(nets["eta"]))
    assert not any(isinstance(x, nn.BatchNorm2d) for x in nets["eta"].modules())
    assert len(_instance_norms(nets["disc"])) == 3 * 3 and all(not n.affine for n in _instance_norms(nets["disc"]))
    assert nets["disc"].downsample == "bilinear" and nets["psi"].style == "release"
    assert any(isinstance(x, nn.BatchNorm2d) for x in nets["phi"].modules()) and any(isinstance(x, nn.BatchNorm2d) for x in nets["psi"].modules())
    # the default keeps its own choices
    d = build_networks(make_config("paper-128").model, 32)
    assert all(isinstance(x, nn.BatchNorm2d) for x in d["eta"].modules() if "Norm" in type(x).__name__)
    assert all(n.affine for n in _instance_norms(d["disc"])) and d["psi"].style == "upsample-tanh"


def test_release_preset_trains_real_steps(tiny_data, tmp_path):
    """The release preset at 32 px with narrow widths (its switches as they are) takes real steps."""
    tiny = dict(size=32, encoder_widths=(4, 8, 16), regressor_widths=(4, 8, 16), decoder_widths=(4, 8, 16), disc_ndf=4, disc_layers=2, disc_scales=2)
    cfg = make_config("release", model=tiny, batch_size=4, pretrain_steps=2, pretrain_batch=4, device="cpu", steps=2,
                      log_every=1, sample_every=100, eval_every=100, ckpt_every=100).validate()
    run = TinyRun(tiny_data, tmp_path / "run", cfg=cfg)
    before = {k: v.detach().clone() for k, v in run.state.nets["psi"].state_dict().items()}
    batches = run.batches()
    for _ in range(2):
        x, xa = next(batches)
        res = run.step(x, xa)
        assert not res.skipped and all(np.isfinite(float(v)) for v in res.losses.values())
    assert run.state.step == 2
    after = run.state.nets["psi"].state_dict()
    assert "mix.0.weight" in after and any(not torch.equal(before[k], after[k]) for k in before)
    # its checkpoint is a detector (η built with the run's instance norm)
    from keypointgan import KeypointDetector
    from keypointgan.checkpoint import save_checkpoint

    save_checkpoint(run.state.state_dict(), tmp_path / "ck.pt")
    det = KeypointDetector.from_checkpoint(tmp_path / "ck.pt", device="cpu")
    assert det.predict(np.zeros((32, 32, 3), np.uint8)).shape == (15, 2)


def test_disc_downsample_switch_changes_the_coarser_scales_only():
    torch.manual_seed(0)
    avg = MultiScaleDiscriminator(ndf=4, n_layers=2, num_scales=3, downsample="avgpool")
    bil = MultiScaleDiscriminator(ndf=4, n_layers=2, num_scales=3, downsample="bilinear")
    bil.load_state_dict(avg.state_dict())
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    a, b = avg(x), bil(x)
    assert torch.equal(a[0], b[0])  # scale 1: the input itself
    for i in (1, 2):
        assert a[i].shape == b[i].shape and (a[i] - b[i]).abs().max() > 1e-4
    # bilinear: the input resized to ¼ directly; average pooling: from the previous scale
    quarter = nn.functional.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
    assert torch.allclose(b[2], bil.scales[2](quarter))
    assert torch.allclose(a[2], avg.scales[2](avg.down(avg.down(x))))


def test_release_decoder_output_is_not_bounded():
    torch.manual_seed(0)
    skel, app = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    ours = ConditionalDecoder(widths=(4, 8, 16)).eval()
    rel = ConditionalDecoder(widths=(4, 8, 16), style="release").eval()
    for net in (ours, rel):
        nn.init.constant_(net.head.bias, 3.0)  # push the output beyond 1
    assert ours(skel, app).max() <= 1.0 and ours(skel, app).min() >= -1.0
    out = rel(skel, app)
    assert out.shape == (2, 3, 16, 16) and out.min() > 1.5  # no tanh: the bias shows through
    # layout: two convs mixing the joined 2·16 channels at H/4, one conv in the last stage
    convs = lambda block: [m for m in block.modules() if isinstance(m, nn.Conv2d)]  # noqa: E731
    assert [c.in_channels for c in convs(rel.mix)] == [32, 16] and len(convs(rel.ups[-1])) == 1
    assert not hasattr(ours, "mix") and len(convs(ours.ups[-1])) == 2


def test_vgg_without_relu_chains_the_convolutions():
    torch.manual_seed(0)
    std = VGG19Features()
    plain = VGG19Features(relu=False)
    plain.load_state_dict(std.state_dict())  # same indices, same weights
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    f, g = std(x, ("conv1_2", "conv2_2")), plain(x, ("conv1_2", "conv2_2"))
    assert f["conv1_2"].min() >= 0 and g["conv1_2"].min() < 0  # ReLU's outputs are never negative
    # without ReLU conv1_2 is conv1_2(conv1_1(normalised x))
    xn = ((x + 1) / 2 - std.mean) / std.std
    want = std.features[2](std.features[0](xn))
    assert torch.allclose(g["conv1_2"], want, atol=1e-5)
    assert not torch.allclose(f["conv2_2"], g["conv2_2"])


def test_vgg_relu_switch_reaches_the_perceptual_loss(tmp_path):
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}, path)
    assert make_reconstruction_loss(str(path)).vgg.relu is True
    assert make_reconstruction_loss(str(path), vgg_relu=False).vgg.relu is False
    assert not any(isinstance(m, nn.ReLU) for m in make_reconstruction_loss(str(path), vgg_relu=False).vgg.modules())


@pytest.mark.parametrize("field, value", [("disc_downsample", "nearest"), ("decoder_style", "other"), ("disc_norm", "layer"), ("regressor_norm", "x")])
def test_bad_switch_values_are_refused(field, value):
    with pytest.raises(InputError, match=field):
        make_config("release", model={field: value}).validate()
