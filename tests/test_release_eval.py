"""The two numbers of the release's test_pose.py: (a) left/right set by a pre-trained regressor's reading, (b) flip-corrected."""

import json

import numpy as np
import pytest

from keypointgan.evaluate import flip_corrected_error, regressor_flip_error, summarize
from keypointgan.skeleton import Skeleton

SK = Skeleton(keypoints=("l", "r", "c"), limbs=(("l", "c"), ("r", "c")), symmetric=(("l", "r"),), name="lrc")
HW = (100, 100)
GT = np.array([[20.0, 50.0], [80.0, 50.0], [50.0, 20.0]])  # l, r, c in pixels of a 100×100 image
SWAPPED = GT[[1, 0, 2]]


def test_regressor_flip_error_on_constructed_cases():
    gt = np.stack([GT, GT, GT, GT])
    # 0: mislabelled, the regressor reads it the right way round → swapped back: 0
    # 1: mislabelled, the regressor agrees with the mislabelling → kept: l and r each 60 px off → 40 %
    # 2: right, the regressor reads it swapped → swapped: 40 %
    # 3: right, the regressor agrees → 0
    pred = np.stack([SWAPPED, SWAPPED, GT, GT])
    ref = np.stack([GT, SWAPPED, SWAPPED, GT]) + 1.0  # (a reading is never exact)
    a = regressor_flip_error(pred, gt, HW, SK, ref)
    b = flip_corrected_error(pred, gt, HW, SK)
    np.testing.assert_allclose(a, [0.0, 40.0, 40.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(b, [0.0, 0.0, 0.0, 0.0], atol=1e-9)
    # both in summarize, per group and overall (mean of group means)
    res = summarize(pred, gt, HW, SK, ["A", "A", "B", "B"], reference=ref)
    assert res["error_regressor_flip"] == pytest.approx(20.0) and res["error_flip"] == pytest.approx(0.0)
    assert res["per_group"]["A"]["error_regressor_flip"] == pytest.approx(20.0)
    res = summarize(pred, gt, HW, SK, ["A", "B", "B", "B"], reference=ref)
    assert res["error_regressor_flip"] == pytest.approx((0.0 + 80.0 / 3) / 2)
    assert "error_regressor_flip" not in summarize(pred, gt, HW, SK)


def test_regressor_flip_keeps_an_offset_prediction_whole():
    """A prediction shifted by 10 px: the regressor decides the labels, the error is the shift's."""
    pred = (SWAPPED + [10.0, 0.0])[None]
    ref = GT[None]
    assert regressor_flip_error(pred, GT[None], HW, SK, ref)[0] == pytest.approx(10.0)
    assert regressor_flip_error(pred, GT[None], HW, SK, pred)[0] == pytest.approx(100 * (0.5 + 0.7 + 0.1) / 3)


def test_evaluate_prints_and_writes_both_numbers(one_step_run, tiny_data, tmp_path, capsys):
    from keypointgan.cli import main

    out = tmp_path / "m.json"
    ck = one_step_run / "checkpoints" / "latest.pt"
    # the run's own η as the pre-trained regressor (any keypointgan checkpoint holding η for this skeleton)
    assert main(["evaluate", "--checkpoint", str(ck), "--data", str(tiny_data), "--offline-regressor", str(ck), "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "regr.-flip" in text.splitlines()[0]
    res = json.loads(out.read_text())
    assert res["error_flip"] <= res["error_regressor_flip"] + 1e-9 <= res["error"] + res["error_regressor_flip"]  # (b) is the smaller
    overall = [ln for ln in text.splitlines() if ln.startswith("overall")][0].split()
    assert float(overall[3]) == pytest.approx(res["error_regressor_flip"], abs=0.006)
    assert all("error_regressor_flip" in r for r in res["per_video"].values())
    # without one, the table keeps its two columns
    assert main(["evaluate", "--checkpoint", str(ck), "--data", str(tiny_data), "--quiet"]) == 0
    assert "regr.-flip" not in capsys.readouterr().out
    assert main(["evaluate", "--predictions", str(out), "--data", str(tiny_data), "--offline-regressor", str(ck)]) == 2


def test_a_run_keeps_its_pretrained_regressor_and_evaluate_uses_it(tiny_data, tmp_path, capsys):
    """η as pre-trained is kept in the checkpoint (the GAN game fine-tunes η itself) and is evaluate's default offline regressor."""
    import torch

    from conftest import tiny_config
    from keypointgan.api import train
    from keypointgan.cli import main

    run = tmp_path / "run"
    cfg = tiny_config(steps=2, pretrain_steps=3, eval_every=100, sample_every=100, ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0)
    train(tiny_data, run, config=cfg, progress=False)
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    kept, tuned = ck["eta_pretrained"], ck["nets"]["eta"]
    assert set(kept) == set(tuned) and any(not torch.equal(kept[k], tuned[k]) for k in kept)  # fine-tuned since
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tiny_data), "--json", str(out), "--quiet"]) == 0
    assert "regr.-flip" in capsys.readouterr().out
    own = json.loads(out.read_text())["error_regressor_flip"]
    # the same as naming the checkpoint as the offline regressor (its kept η is taken, not the fine-tuned one)
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tiny_data), "--offline-regressor", str(run), "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["error_regressor_flip"] == pytest.approx(own, abs=1e-12)
