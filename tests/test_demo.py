import json
from dataclasses import replace

import numpy as np
import pytest

from keypointgan.cli import main


def test_demo_end_to_end_tiny(tmp_path, capsys):
    from keypointgan.demo import run_demo

    out = tmp_path / "demo"
    tiny = dict(size=32, encoder_widths=(4, 8, 16), regressor_widths=(4, 8, 16), decoder_widths=(4, 8, 16), disc_ndf=4, disc_layers=2, disc_scales=2)
    res = run_demo(out, max_minutes=0.9, videos=6, frames=8, model=tiny, pretrain_steps=5, batch_size=4, progress=False)
    m = json.loads((out / "metrics.json").read_text())
    for k in ("keypointgan", "mean_pose", "supervised"):
        assert {"error", "error_flip"} <= set(m[k]) and 0 < m[k]["error_flip"] and m[k]["error"] < 40  # random points: ~52
    # the mean-pose baseline recomputed from the files: the prior's mean pose against the test video's keypoints,
    # in [0, 1] units (the 64 px frames), and against their left/right swap for the flip-corrected error
    from keypointgan.skeleton import Skeleton

    mean = np.load(out / "data" / "prior.npy").mean(0)
    gt = (np.load(out / "data" / "keypoints" / "v0005.npy") + 0.5) / 64.0  # the prior unit: pixel edges at 0, 1
    perm = Skeleton.from_yaml(out / "data" / "skeleton.yaml").flip_permutation
    direct = 100 * np.nanmean(np.linalg.norm(mean - gt, axis=-1), axis=-1)
    swapped = 100 * np.nanmean(np.linalg.norm(mean - gt[:, perm], axis=-1), axis=-1)
    assert m["mean_pose"]["error"] == pytest.approx(direct.mean(), rel=1e-4)
    assert m["mean_pose"]["error_flip"] == pytest.approx(np.minimum(direct, swapped).mean(), rel=1e-4)
    assert m["minutes"] > 0 and m["budget_minutes"] == 0.9
    # the baseline gets KeypointGAN's time at most (less only when the deadline is near); the slack is for a
    # loaded machine, where the last step and evaluation of a tiny run overshoot by a few seconds, not for twice the time
    assert m["supervised"]["minutes"] <= 1.5 * max(m["keypointgan"]["minutes"], 0.05) + 0.05
    assert m["n_test_frames"] == 8 and m["test_videos"] == ["v0005"]
    assert m["keypointgan"]["steps"] > 0 and m["supervised"]["steps"] > 0
    assert res["mean_pose"] == m["mean_pose"]
    html = (out / "report.html").read_text()
    assert "report_curves.png" in html and "test_predictions.png" in html and "keypointgan" in html
    assert (out / "report_curves.png").stat().st_size > 1000 and (out / "test_predictions.png").is_file()
    # the report command regenerates the run's page
    assert main(["report", str(out / "keypointgan")]) == 0
    assert (out / "keypointgan" / "report.html").is_file()
    assert "wrote" in capsys.readouterr().out


def test_supervised_baseline_uses_the_learning_rate_decay_and_the_weight_average(tiny_data, monkeypatch):
    """The bound is trained with KeypointGAN's recipe: the rate decays linearly over the last half of the
    steps, and the final evaluation uses the averaged networks; with the recipe off it uses the raw ones."""
    import torch

    from keypointgan.api import make_eval_set
    from keypointgan.data import Layout
    from keypointgan.demo import split_videos
    from keypointgan.research.supervised import train_supervised
    from conftest import tiny_config

    layout = Layout(tiny_data)
    train, test = split_videos(layout)
    lrs: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    cfg = tiny_config(lr_decay_fraction=0.5, ema_decay=0.9, swa_fraction=0.5, ema_norm_batches=2, flip_test=False)
    es = make_eval_set(layout, test, cfg.model.size)
    on = train_supervised(cfg, layout, train, es, minutes=None, steps=12, progress=False, log_every=4)
    expected = [2 * cfg.lr * (1.0 if s / 12 <= 0.5 else (1 - s / 12) / 0.5) for s in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-6) and lrs[-1] == pytest.approx(2 * cfg.lr / 6)
    assert on["steps"] == 12 and on["averaged"] and [h[0] for h in on["history"]] == [4, 8, 12]
    # the history holds the raw networks' error on the same frames: the average's differs
    assert on["error"] != pytest.approx(on["history"][-1][1], abs=1e-6)

    lrs.clear()
    off = train_supervised(replace(cfg, lr_decay_fraction=0.0, ema_decay=0.0, swa_fraction=0.0), layout, train, es,
                           minutes=None, steps=12, progress=False, log_every=4)
    assert lrs == [2 * cfg.lr] * 12 and not off["averaged"]
    assert off["error"] == pytest.approx(off["history"][-1][1], abs=1e-9)
