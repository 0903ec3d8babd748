"""One process of the multi-process tests (tests/test_distributed.py), started by torchrun or alone.

``python tests/distributed_worker.py MODE DATA OUT``:

* ``steps``: 3 training steps on fixed batches; under torchrun rank ``r`` takes the ``r``-th slice
  of a batch of ``2 × 4`` pairs (and of the prior poses), alone it takes the whole batch.  Writes
  ``OUT/rank{r}.pt`` (alone: ``rank0_single.pt``): after the first step, the gradients and every
  buffer (batch-norm and perceptual-loss running means); after the third, every parameter and buffer
  of the four networks, the optimisers' state and the perceptual loss's running means; the logged losses.
* ``die``: :func:`keypointgan.training.fit` for many steps; rank 1 kills itself (SIGKILL) at its 6th batch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_config  # noqa: E402

from keypointgan.api import make_loader  # noqa: E402
from keypointgan.data import Layout, load_prior  # noqa: E402
from keypointgan.losses import VGG19Features  # noqa: E402
from keypointgan.training import TrainState, fit, train_step  # noqa: E402
from keypointgan.training.distributed import from_environment, process_group  # noqa: E402
from vgg_files import state_dict_torchvision  # noqa: E402

torch.set_num_threads(1)
PER_RANK = 4


def random_vgg(path: Path) -> str:
    """A VGG-19 weights file with random (seeded) weights: the perceptual loss and its running means."""
    if not path.exists():
        torch.manual_seed(0)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(state_dict_torchvision(VGG19Features()), tmp)
        os.replace(tmp, path)
    return str(path)


def run_steps(data: Path, out: Path) -> None:
    dist = from_environment()
    lay = Layout(data)
    # channels_last off: torch's CPU batch norm in channels-last layout back-propagates with errors of up to
    # 10% of the largest gradient into a convolution whose input is nearly constant (Ψ's first layer on a
    # rendered skeleton), against a float64 reference; the contiguous kernels and ours agree with it to 1e-4.
    # flip_augment off: each rank mirrors its own random half, so the ranks' batches would not be the one process's.
    over = dict(pool_size=0, flip_augment=False, pretrain_steps=0, ema_decay=0.0, swa_fraction=0.0, channels_last=False, vgg_weights=random_vgg(out / "vgg.pth"))
    cfg = tiny_config(**{**over, **json.loads(os.environ.get("KEYPOINTGAN_TEST_CONFIG", "{}")), "device": os.environ.get("KEYPOINTGAN_TEST_DEVICE", "cpu")})
    g = torch.Generator().manual_seed(1)
    n = PER_RANK * 2
    x, xa = torch.rand(3, n, 3, 32, 32, generator=g) * 2 - 1, torch.rand(3, n, 3, 32, 32, generator=g) * 2 - 1
    dev = dist.device(os.environ.get("KEYPOINTGAN_TEST_DEVICE", "cpu"))
    _, prior = make_loader(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, torch.device("cpu"))
    q = prior[torch.randint(len(prior), (3, n), generator=g)].to(dev)
    x, xa = x.to(dev), xa.to(dev)
    sl = slice(dist.rank * PER_RANK, (dist.rank + 1) * PER_RANK) if dist.enabled else slice(None)
    if os.environ.get("KEYPOINTGAN_TEST_LOCAL_BN"):  # the control: batch norm over each rank's own batch
        import keypointgan.training.state as state_module

        state_module.synchronise_batch_norm = lambda module, device: module
    with process_group(dist, dev):
        state = TrainState(cfg, lay.skeleton, dev, dist=dist)
        state.synchronise()
        before = {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in state.nets.items()}
        losses = [train_step(state, x[0, sl], xa[0, sl], None, poses=q[0, sl]).losses]
        first = {"before": before, "after": {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in state.nets.items()},"grads": {k: {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None} for k, m in state.nets.items()},
                 "buffers": {k: {n: b.clone() for n, b in m.named_buffers()} for k, m in [*state.nets.items(), ("rec_loss", state.rec_loss)]}}
        losses += [train_step(state, x[i, sl], xa[i, sl], None, poses=q[i, sl]).losses for i in (1, 2)]
    torch.save({
        "first": first,
        "nets": {k: {**dict(m.named_parameters()), **dict(m.named_buffers())} for k, m in state.nets.items()},
        "optims": {k: o.state_dict()["state"] for k, o in state.optimizers.items()},
        "rec_loss": dict(state.rec_loss.named_buffers()),
        "losses": losses,
    }, out / f"rank{dist.rank}{'' if dist.enabled else '_single'}{os.environ.get('KEYPOINTGAN_TEST_TAG', '')}.pt")


def run_and_die(data: Path, out: Path) -> None:
    dist = from_environment()
    lay = Layout(data)
    cfg = tiny_config(steps=100_000, ckpt_every=2, eval_every=10_000, sample_every=10_000)
    loader, prior = make_loader(cfg, lay.skeleton, load_prior(lay.prior_path, lay.skeleton), lay.videos, torch.device("cpu"),
                                rank=dist.rank, world_size=dist.world_size)
    batches = loader.batches

    def dying_batches(epoch=0, index=0):
        for i, b in enumerate(batches(epoch, index)):
            if dist.rank == 1 and i == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            yield b

    loader.batches = dying_batches
    with process_group(dist, torch.device("cpu"), timeout_s=300):
        state = TrainState(cfg, lay.skeleton, torch.device("cpu"), dist=dist)
        fit(state, loader, prior, out, progress=False)


if __name__ == "__main__":
    mode, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"steps": run_steps, "die": run_and_die}[mode](data, out)
