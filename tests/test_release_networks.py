"""The `release` preset's networks are the authors' layer for layer, and their saved weights load into them."""

import numpy as np
import pytest
import torch
from torch import nn

from keypointgan import InputError
from keypointgan.config import make_config
from keypointgan.nets import build_networks
from keypointgan.release import RELEASE_NAMES, load_networks, read_release_state, release_key
from release_layout import ReleaseDecoder, ReleaseDiscriminator, ReleasePoseEncoder, ReleaseRegressor, randomise, soft_argmax

RELEASE_COUNTS = {"phi": 3_124_801, "eta": 1_181_184, "psi": 4_825_635, "disc": 8_288_067}
"""sum(p.numel()) of the release's networks built by its own code (32 keypoints, its defaults)."""


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def release_nets():
    return build_networks(make_config("release").model, 32)


@pytest.fixture(scope="module")
def reference():
    """The release's layout (tests/release_layout.py), weights and statistics random, in eval mode."""
    return {"phi": randomise(ReleasePoseEncoder(), 1).eval(), "eta": randomise(ReleaseRegressor(32), 2).eval(),
            "psi": randomise(ReleaseDecoder(), 3).eval(), "disc": randomise(ReleaseDiscriminator(), 4).eval()}


def test_release_preset_parameter_counts(release_nets):
    assert {k: _count(v) for k, v in release_nets.items()} == RELEASE_COUNTS
    # the other presets keep their own layouts
    assert {k: _count(v) for k, v in build_networks(make_config("paper-128").model, 32).items()} == {
        "phi": 1_948_289, "eta": 1_172_864, "psi": 3_223_139, "disc": 8_290_755}
    assert {k: _count(v) for k, v in build_networks(make_config("cpu-64").model, 32).items()} == {
        "phi": 122_465, "eta": 75_512, "psi": 202_715, "disc": 127_395}


def test_every_release_entry_has_its_counterpart_with_the_same_shape(release_nets, reference):
    for name, ref in reference.items():
        ours = release_nets[name].state_dict()
        theirs = ref.state_dict()
        mapped = {release_key(name, k): tuple(v.shape) for k, v in theirs.items()}
        assert mapped == {k: tuple(v.shape) for k, v in ours.items()}, name  # params and buffers, one to one
    # a few of the layers the release has and ours lacks
    sd = {k: tuple(v.shape) for k, v in release_nets["phi"].state_dict().items()}
    assert sd["down.0.0.weight"] == (32, 3, 7, 7) and sd["down.3.6.weight"] == (256, 256, 1, 1) and "down.3.6.bias" not in sd
    assert sd["mid.0.weight"] == (256, 256, 3, 3) and sd["up.0.0.weight"] == (256, 384, 1, 1) and sd["head.weight"] == (1, 32, 3, 3)
    assert sd["up.2.0.weight"] == (64, 96, 1, 1) and "up.2.4.weight" not in sd  # one 3×3 conv in the last stage
    eta = release_nets["eta"].state_dict()
    assert eta["stem.3.weight"].shape == (32, 32, 3, 3) and eta["stem.0.bias"].shape == (32,) and eta["head.bias"].shape == (32,)
    assert not [k for k in eta if "running" in k]  # instance norm without statistics
    psi = release_nets["psi"].state_dict()
    assert psi["skeleton_encoder.0.0.weight"].shape == (32, 1, 7, 7) and psi["appearance_encoder.3.6.weight"].shape == (256, 256, 1, 1)
    assert release_nets["disc"].state_dict()["scales.2.net.2.bias"].shape == (128,)


def _save_release_way(ref, folder, iteration=580000):
    folder.mkdir(parents=True, exist_ok=True)
    for name, net in ref.items():
        torch.save(net.state_dict(), folder / f"{iteration}_net_{RELEASE_NAMES[name]}.pth")


def _rel_close(a, b, tol=1e-4):
    return float((a - b).abs().max()) <= tol * max(float(b.abs().max()), 1e-12)


def test_load_networks_reproduces_the_release_outputs(reference, tmp_path):
    _save_release_way(reference, tmp_path / "ck")
    nets = load_networks(tmp_path / "ck", 580000)
    assert set(nets) == {"phi", "eta", "psi", "disc"}
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        y_ref = reference["phi"](x)
        y = nets["phi"](x)
        assert _rel_close(y, y_ref)
        assert _rel_close(nets["eta"](y_ref), soft_argmax(reference["eta"](y_ref)))
        assert nets["eta"](y_ref).shape == (2, 32, 2)
        assert _rel_close(nets["psi"](y_ref, x), reference["psi"](y_ref, x))
        for a, b in zip(nets["disc"](y_ref), reference["disc"](y_ref)):
            assert a.shape == b.shape and _rel_close(a, b)


def test_load_networks_accepts_a_module_prefix_and_only_the_files_present(reference, tmp_path):
    folder = tmp_path / "dp"
    folder.mkdir()
    torch.save({"module." + k: v for k, v in reference["eta"].state_dict().items()}, folder / "5_net_regressor.pth")
    nets = load_networks(folder, 5)
    assert set(nets) == {"eta"}
    y = torch.rand(1, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        assert _rel_close(nets["eta"](y), soft_argmax(reference["eta"](y)))
    with pytest.raises(InputError, match="no 6_net"):
        load_networks(folder, 6)
    # the same file as evaluate's --offline-regressor
    from keypointgan.api import _pretrained_eta
    from keypointgan.skeleton import preset

    offline = _pretrained_eta(folder / "5_net_regressor.pth", preset("human36m"))
    with torch.no_grad():
        assert _rel_close(offline(y), soft_argmax(reference["eta"](y)))


def test_a_mismatched_file_names_the_first_differing_key(reference, tmp_path):
    sd = reference["eta"].state_dict()
    sd["model.3.weight"] = torch.zeros(32, 32, 5, 5)
    torch.save(sd, tmp_path / "1_net_regressor.pth")
    net = build_networks(make_config("release").model, 32, with_gan=False)["eta"]
    with pytest.raises(InputError, match=r"shape mismatch at model\.3\.weight") as e:
        read_release_state(tmp_path / "1_net_regressor.pth", "eta", net)
    assert "1_net_regressor.pth" in str(e.value)
    del sd["model.3.weight"]
    torch.save(sd, tmp_path / "2_net_regressor.pth")
    with pytest.raises(InputError, match=r"missing key model\.3\.weight|missing key stem\.3\.weight"):
        read_release_state(tmp_path / "2_net_regressor.pth", "eta", net)
    # instance-norm statistics of old torch versions are dropped, as the release's own loader does
    sd = dict(reference["eta"].state_dict(), **{"model.1.running_mean": torch.zeros(32), "model.1.running_var": torch.ones(32)})
    torch.save(sd, tmp_path / "3_net_regressor.pth")
    assert set(read_release_state(tmp_path / "3_net_regressor.pth", "eta", net)) == set(net.state_dict())
    # batch norms saved by torch 0.4.0 have no num_batches_tracked: taken from the module, the statistics from the file
    phi = build_networks(make_config("release").model, 32, with_gan=False)["phi"]
    sd = {k: v for k, v in reference["phi"].state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "4_net_G_A.pth")
    got = read_release_state(tmp_path / "4_net_G_A.pth", "phi", phi)
    assert set(got) == set(phi.state_dict()) and torch.equal(got["mid.1.running_var"], sd["decoder.blocks.0.1.running_var"])


def test_receptive_field_of_phi_in_both_layouts():
    """Φ's receptive field (docs/design.md): 87 px ours, 123 px the release's, at 4 levels."""
    from keypointgan.nets import PoseEncoder

    for arch, want in (("ours", 87), ("release", 123)):
        net = PoseEncoder(widths=(2, 2, 2, 2), arch=arch).eval()
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.weight, 0.1)
        x = torch.zeros(1, 3, 256, 256, requires_grad=True)
        net(x + 0.5)[0, 0, 128, 128].backward()
        g = x.grad.abs().sum((0, 1))
        rows = torch.nonzero(g.sum(1)).flatten()
        cols = torch.nonzero(g.sum(0)).flatten()
        assert (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1) == (want, want), arch


def test_psi_release_arch_needs_the_release_decoder_style():
    with pytest.raises(InputError, match="psi_arch"):
        make_config("paper-128", model={"psi_arch": "release"}).validate()
    with pytest.raises(InputError, match="phi_arch"):
        make_config("paper-128", model={"phi_arch": "authors"}).validate()


def test_import_release_writes_a_checkpoint_whose_detector_matches_the_release(reference, tmp_path, capsys):
    from keypointgan import KeypointDetector
    from keypointgan.cli import main
    from keypointgan.pixels import norm_to_image_pixels

    folder = tmp_path / "ck"
    _save_release_way(reference, folder)
    out = tmp_path / "release.pt"
    assert main(["import-release", str(folder), "--iteration", "580000", "--out", str(out)]) == 0
    assert "disc, eta, phi, psi" in capsys.readouterr().out
    det = KeypointDetector.from_checkpoint(out, device="cpu")
    assert det.size == 128 and det.skeleton.num_keypoints == 32 and not det.flip_test
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    got = det.predict(imgs)  # pixels of each 128-px image
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 127.5 - 1 for i in imgs])
    with torch.no_grad():
        want = soft_argmax(reference["eta"](reference["phi"](x)))
    want_px = norm_to_image_pixels(want, 128, np.array([[128, 128]] * 3))
    assert np.abs(np.asarray(got) - want_px).max() < 0.01
    # Ψ and D came along, under our names
    ck = torch.load(out, weights_only=True)
    assert ck["config"]["preset"] == "release" and ck["pretrained"] and ck["skeleton"]["name"] == "human36m"
    assert "eta_pretrained" not in ck  # the release's fine-tuned η is not its offline regressor
    assert torch.equal(ck["nets"]["disc"]["scales.1.net.2.bias"], reference["disc"].state_dict()["net_1.model.2.bias"])
    # an existing --out is left alone
    assert main(["import-release", str(folder), "--iteration", "580000", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_import_release_refuses_a_mismatched_file_in_one_line(reference, tmp_path, capsys):
    from keypointgan.cli import main

    folder = tmp_path / "bad"
    _save_release_way({"phi": reference["phi"]}, folder, 10)
    sd = reference["eta"].state_dict()
    sd["model.24.weight"] = sd["model.24.weight"][:, :128]  # a 1×1 conv from 128 channels
    torch.save(sd, folder / "10_net_regressor.pth")
    out = tmp_path / "x.pt"
    assert main(["import-release", str(folder), "--iteration", "10", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "10_net_regressor.pth" in err and "model.24.weight" in err
    assert not out.exists()
    (folder / "10_net_regressor.pth").unlink()
    assert main(["import-release", str(folder), "--iteration", "10", "--out", str(out)]) == 2
    assert "regressor" in capsys.readouterr().err and not out.exists()


def test_train_starts_from_the_release_regressor_file(tiny_data, tmp_path, capsys):
    """``train --regressor <N>_net_regressor.pth`` with the release preset: η starts from the file, no pre-training."""
    from keypointgan.cli import main
    from keypointgan.skeleton import Skeleton

    k = Skeleton.from_yaml(tiny_data / "skeleton.yaml").num_keypoints
    ref = randomise(ReleaseRegressor(k), 5)
    path = tmp_path / "580000_net_regressor.pth"
    torch.save(ref.state_dict(), path)
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(run), "--preset", "release", "--regressor", str(path), "--steps", "2",
            "--model.size", "32", "--model.encoder-widths", "4", "8", "16", "--model.decoder-widths", "4", "8", "16",
            "--model.disc-ndf", "4", "--model.disc-layers", "2", "--model.disc-scales", "2", "--batch-size", "4",
            "--device", "cpu", "--eval-every", "100", "--sample-every", "100", "--quiet", "--no-report"]
    assert main(args) == 0
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 2 and ck["pretrained"]
    eta = ck["nets"]["eta"]
    # η was fine-tuned for 2 steps from the file's weights: close to them, not equal, nowhere near a fresh init
    start = ref.state_dict()["model.3.weight"]
    assert not torch.equal(eta["stem.3.weight"], start)
    assert (eta["stem.3.weight"] - start).abs().max() < 0.1 * start.abs().max()
    # the library's own η layout cannot take it: one line naming the fix
    capsys.readouterr()
    assert main(args[:4] + [str(tmp_path / "run2")] + ["--preset", "paper-128"] + args[7:]) == 2
    assert "model.eta_arch release" in capsys.readouterr().err and not (tmp_path / "run2").exists()
