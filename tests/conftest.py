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
    # the image pool on (cpu-64 has none) so that the tests exercise its state in checkpoints and resumes
    base = dict(batch_size=4, pretrain_steps=5, pretrain_batch=4, log_every=1, sample_every=2, eval_every=2, ckpt_every=2, eval_frames=8, device="cpu",
                pool_size=50)
    base.update(over)
    return make_config("cpu-64", model=model, **base)


class TinyRun:
    """What :func:`keypointgan.training.fit` needs for a tiny run on ``data``: state, loader, prior points."""

    def __init__(self, data, out, *, eval_set=None, cfg=None, **over):
        from keypointgan.api import make_loader
        from keypointgan.data import Layout, load_prior
        from keypointgan.training import TrainState

        lay = Layout(data)
        cfg = cfg or tiny_config(**over)
        self.skeleton = lay.skeleton
        from keypointgan.devices import select_device

        dev = select_device(cfg.device)
        self.loader, self.prior = make_loader(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, dev)
        self.state = TrainState(cfg, lay.skeleton, dev)
        self.out, self.eval_set = out, eval_set

    def batches(self):
        """Endless ``(x, x_app)`` batches from the run's position in its data order."""
        for b in self.loader.batches(self.state.epoch, self.state.batch_in_epoch):
            yield b.x, b.x_app

    def step(self, x, xa, progress=0.0):
        from keypointgan.training import train_step

        return train_step(self.state, x, xa, self.prior, progress=progress)

    def fit(self):
        from keypointgan.training import fit

        return fit(self.state, self.loader, self.prior, self.out, eval_set=self.eval_set, progress=False)


@pytest.fixture(scope="session")
def one_step_run(tiny_data, tmp_path_factory):
    """A run of the tiny config trained for one step (no moving average); tests only read it."""
    from keypointgan.api import train

    out = tmp_path_factory.mktemp("one_step") / "run"
    cfg = tiny_config(steps=1, pretrain_steps=0, eval_every=100, sample_every=100, ema_decay=0.0, swa_fraction=0.0, ema_norm_batches=0)
    train(tiny_data, out, config=cfg, progress=False)
    return out
