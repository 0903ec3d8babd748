"""The checkpoint module: one schema read by one function (:func:`keypointgan.checkpoint.load_networks`)."""

import pytest
import torch

from conftest import tiny_config
from keypointgan import InputError
from keypointgan.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_networks, run_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def averaged_run(tiny_data, tmp_path_factory):
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("avg") / "run"
    train(tiny_data, out, config=tiny_config(steps=2, pretrain_steps=0, eval_every=100, sample_every=100, ema_decay=0.5), progress=False)
    return out


def test_load_networks_takes_the_average_or_the_raw_weights(averaged_run):
    state = load_checkpoint(averaged_run)
    avg, raw = load_networks(averaged_run), load_networks(averaged_run, averaged=False, names=("phi", "eta", "psi"))
    assert avg.path == raw.path == run_checkpoint(averaged_run)
    assert avg.config.to_dict() == state["config"] and avg.skeleton.to_dict() == state["skeleton"]
    for k in ("phi", "eta"):
        assert all(torch.equal(v, state["ema"][k][n]) for n, v in avg.nets[k].state_dict().items())
        assert all(torch.equal(v, state["nets"][k][n]) for n, v in raw.nets[k].state_dict().items())
    # the average differs from the raw weights after two steps, so the two calls did read different tensors
    w = "head.weight"
    assert not torch.equal(avg.nets["eta"].state_dict()[w], raw.nets["eta"].state_dict()[w])
    assert set(raw.nets) == {"phi", "eta", "psi"} and not raw.nets["psi"].training


def test_the_detector_reads_what_load_networks_reads(averaged_run):
    from keypointgan import KeypointDetector

    det = KeypointDetector.from_checkpoint(averaged_run, device="cpu")
    ref = load_networks(averaged_run)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(det.eta(det.phi(x)), ref.nets["eta"](ref.nets["phi"](x)))


def test_a_regressor_checkpoint_round_trips(tiny_data, tmp_path):
    from keypointgan.api import _read_regressor, pretrain_regressor
    from keypointgan.skeleton import Skeleton

    sk = Skeleton.from_yaml(tiny_data / "skeleton.yaml")
    pretrain_regressor(tiny_data / "prior.npy", sk, tmp_path / "eta.pt", config=tiny_config(pretrain_steps=2), progress=False)
    ck = load_checkpoint(tmp_path / "eta.pt")
    assert ck["format"] == CHECKPOINT_FORMAT and ck["kind"] == "regressor" and set(ck["nets"]) == {"eta"}
    eta = _read_regressor(tmp_path / "eta.pt", sk)
    assert all(torch.equal(eta[k], ck["nets"]["eta"][k]) for k in ck["nets"]["eta"])
    with pytest.raises(InputError, match="regressor-only checkpoint .* cannot predict"):
        load_networks(tmp_path / "eta.pt")


def test_a_checkpoint_this_version_cannot_read_is_refused_in_one_line(averaged_run, tiny_data, tmp_path):
    from keypointgan.api import train

    state = load_checkpoint(averaged_run)
    # as written at cfa8865, whose config still had the switches gap_motion and w_consistency
    state["config"] = {**state["config"], "gap_motion": 0.0, "w_consistency": 0.0}
    state["version"] = "0.0.9"
    save_checkpoint(state, tmp_path / "old" / "checkpoints" / "latest.pt")
    want = (f"{tmp_path / 'old' / 'checkpoints' / 'latest.pt'}: cannot read this checkpoint's config (written by keypointgan 0.0.9): "
            "unknown config field(s): gap_motion, w_consistency")
    with pytest.raises(InputError) as e:
        load_networks(tmp_path / "old")
    assert str(e.value) == want
    with pytest.raises(InputError) as e:  # resuming it: the same line
        train(tiny_data, tmp_path / "old", config=tiny_config(steps=3), resume=True, progress=False)
    assert str(e.value) == want
    state = load_checkpoint(averaged_run)
    state["nets"]["eta"] = {k.replace("head", "top"): v for k, v in state["nets"]["eta"].items()}
    state["ema"] = {}
    save_checkpoint(state, tmp_path / "renamed.pt")
    with pytest.raises(InputError, match=r"renamed.pt: checkpoint's weights do not fit its networks \(RuntimeError"):
        load_networks(tmp_path / "renamed.pt")


def test_a_run_folder_or_its_checkpoints_folder_names_the_checkpoint(averaged_run, tmp_path):
    from keypointgan.checkpoint import resolve_checkpoint

    ck = run_checkpoint(averaged_run)
    assert resolve_checkpoint(averaged_run) == ck == resolve_checkpoint(ck.parent) == resolve_checkpoint(ck)
    with pytest.raises(InputError, match="no checkpoint in this folder"):
        resolve_checkpoint(tmp_path)
