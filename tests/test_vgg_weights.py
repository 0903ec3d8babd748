"""VGG-19 weights: torchvision .pth and MatConvNet .mat on fixtures with the real keys, shapes and layouts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keypointgan.errors import InputError
from keypointgan.losses import VGG19Features
from vgg_files import save_matconvnet, state_dict_torchvision

scipy_io = pytest.importorskip("scipy.io")

CONV_IDX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory):
    """A torchvision ``vgg19().state_dict()`` with random numbers: the real ``features.*`` keys and shapes
    (the classifier's keys are there too, with shrunken shapes: the reader ignores them)."""
    g = torch.Generator().manual_seed(0)
    sd, cin = {}, 3
    for i, c in zip(CONV_IDX, CHANNELS):
        sd[f"features.{i}.weight"] = torch.randn(c, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(c, generator=g) * 0.1
        cin = c
    for i, (o, n) in zip((0, 3, 6), ((8, 25088 // 784), (8, 8), (10, 8))):
        sd[f"classifier.{i}.weight"] = torch.randn(o, n, generator=g)
        sd[f"classifier.{i}.bias"] = torch.zeros(o)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def matconvnet_mat(torchvision_pth, tmp_path_factory):
    """The same weights written as MatConvNet's imagenet-vgg-verydeep-19.mat."""
    path = tmp_path_factory.mktemp("vggmat") / "imagenet-vgg-verydeep-19.mat"
    save_matconvnet(VGG19Features.from_file(torchvision_pth[0]), path)
    return path


def _features(net, x):
    with torch.no_grad():
        return net(x, ("input", "conv1_1", "conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2"))


def test_pth_to_mat_gives_the_same_features(torchvision_pth, matconvnet_mat):
    path, sd = torchvision_pth
    net = VGG19Features.from_file(path)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = _features(net, x)
    mat = matconvnet_mat
    b = _features(VGG19Features.from_file(mat), x)
    for k in ("conv1_1", "conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2"):
        scale = a[k].abs().max().item()
        assert scale > 0
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4 * scale)

    # the file has MatConvNet's structure: layers{i}.weights = {H×W×in×out filters, biases}, mean pixel in meta
    m = scipy_io.loadmat(mat)
    layers = m["layers"][0]
    assert len(layers) == 37 and layers[2][0][0]["name"][0] == "conv1_2" and layers[4][0][0]["type"][0] == "pool"
    filt = layers[2][0][0]["weights"][0][0]
    assert filt.shape == (3, 3, 64, 64)
    w = sd["features.2.weight"].numpy()  # out × in × H × W
    assert filt[0, 2, 5, 7] == pytest.approx(w[7, 5, 0, 2])  # [ky, kx, in, out]
    avg = m["meta"][0, 0]["normalization"][0, 0]["averageImage"].reshape(3)
    np.testing.assert_allclose(avg, 255 * np.array([0.485, 0.456, 0.406]), rtol=1e-5)

    # MatConvNet's own normalisation, computed by hand: conv1_1 on (RGB in 0..255) - mean pixel, no std
    f0 = torch.from_numpy(np.ascontiguousarray(layers[0][0][0]["weights"][0][0])).permute(3, 2, 0, 1)
    b0 = torch.from_numpy(layers[0][0][0]["weights"][0][1].reshape(-1))
    rgb255 = (x + 1) / 2 * 255
    ref = F.relu(F.conv2d(rgb255 - torch.from_numpy(avg).float().view(1, 3, 1, 1), f0, b0, padding=1))
    torch.testing.assert_close(b["conv1_1"], ref, rtol=1e-4, atol=1e-3)


def test_mat_to_pth_round_trip(matconvnet_mat, tmp_path):
    from_mat = VGG19Features.from_file(matconvnet_mat)
    pth = tmp_path / "back.pth"
    torch.save(state_dict_torchvision(from_mat), pth)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    a, b = _features(from_mat, x), _features(VGG19Features.from_file(pth), x)
    torch.testing.assert_close(b["conv3_2"], a["conv3_2"], rtol=1e-4, atol=1e-4 * a["conv3_2"].abs().max().item())


def test_malformed_weight_files_name_the_file(torchvision_pth, tmp_path):
    _, sd = torchvision_pth
    conv = {"name": "conv1_1", "type": "conv", "weights": np.empty((1, 2), dtype=object)}
    conv["weights"][0, 0] = np.zeros((3, 3, 3, 64), np.float32)
    conv["weights"][0, 1] = np.zeros((64, 1), np.float32)
    layers = np.empty((1, 2), dtype=object)
    layers[0, 0] = conv
    layers[0, 1] = {"name": "relu1_1", "type": "relu"}
    bad = tmp_path / "truncated.mat"
    scipy_io.savemat(bad, {"layers": layers, "meta": {"normalization": {"averageImage": np.ones((1, 1, 3))}}})
    with pytest.raises(InputError, match="conv layers conv1_2, conv2_1, .* missing") as e:
        VGG19Features.from_file(bad)
    assert str(bad) in str(e.value)
    scipy_io.savemat(bad, {"net": np.zeros(3)})
    with pytest.raises(InputError, match="no 'layers' variable"):
        VGG19Features.from_file(bad)
    bad_pth = tmp_path / "bad.pth"
    torch.save({k: v for k, v in sd.items() if k != "features.34.bias"}, bad_pth)
    with pytest.raises(InputError, match="not a torchvision vgg19 state dict") as e:
        VGG19Features.from_file(bad_pth)
    assert str(bad_pth) in str(e.value)


def test_missing_mean_pixel(matconvnet_mat, tmp_path):
    m = scipy_io.loadmat(matconvnet_mat)
    bad = tmp_path / "no_meta.mat"
    scipy_io.savemat(bad, {"layers": m["layers"]})
    with pytest.raises(InputError, match="no meta.normalization.averageImage"):
        VGG19Features.from_file(bad)


def test_vgg_weights_flag_checked_before_any_work(tmp_path, capsys):
    from keypointgan.cli import main

    missing = tmp_path / "imagenet-vgg-verydeep-19.mat"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--vgg-weights", str(missing), "--steps", "1"]) == 2
    assert f"{missing}: VGG-19 weights file not found" in capsys.readouterr().err
    bad = tmp_path / "vgg19.mat"
    bad.write_bytes(b"not a mat file")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--vgg-weights", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: cannot read MatConvNet VGG-19 file" in err and not (tmp_path / "demo").exists()
