import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic dataset in the generic layout (4 videos × 8 frames, 32 px)."""
    from keypointgan.data.synthetic import SyntheticConfig, make_synthetic

    root = tmp_path_factory.mktemp("tiny") / "data"
    make_synthetic(root, SyntheticConfig(videos=4, frames=8, size=32, seed=3, prior=200), workers=1)
    return root


def tiny_config(**over):
    from keypointgan.config import make_config

    model = dict(size=32, encoder_widths=(4, 8, 16), regressor_widths=(4, 8, 16), decoder_widths=(4, 8, 16), disc_ndf=4, disc_layers=2, disc_scales=2)
    model.update(over.pop("model", {}))
    base = dict(batch_size=4, pretrain_steps=5, pretrain_batch=4, log_every=1, sample_every=2, eval_every=2, ckpt_every=2, eval_frames=8, device="cpu")
    base.update(over)
    return make_config("cpu-64", model=model, **base)


@pytest.fixture(scope="session")
def one_step_run(tiny_data, tmp_path_factory):
    """A run of the tiny config trained for one step (no moving average); tests only read it."""
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("one_step") / "run"
    cfg = tiny_config(steps=1, pretrain_steps=0, eval_every=100, sample_every=100, ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0)
    train(tiny_data, out, config=cfg, progress=False)
    return out
