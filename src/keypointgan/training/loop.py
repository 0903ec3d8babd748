"""The training loop: :func:`train_step` (one G, D and η update) and :func:`fit` (the run around it).

``fit`` reads top to bottom: pre-train η if needed; then, batch by batch until the step or time
budget is spent — learning-rate schedule, one step, the log, sample grids, evaluation, checkpoints —
stopping cleanly on SIGINT/SIGTERM with a checkpoint, and with an error after too many non-finite
steps in a row.

In a multi-process run (:mod:`.distributed`) every rank runs this same loop in step: the stop
decisions (signal, time budget) are agreed before each step, the skip decisions inside it; rank 0
alone evaluates and writes (log, samples, checkpoints), gathering what the other ranks' checkpoint
entries need.
"""

from __future__ import annotations

import math
import platform
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..checkpoint import CHECKPOINT_NAME, run_checkpoint, save_checkpoint
from ..data.datasets import mirror_half
from ..data.loader import PairLoader
from ..errors import InputError, ProcessLost, TrainingDiverged, TrainingInterrupted
from ..log import configure as configure_logging
from ..log import logger
from ..seeds import RANK, derive_seed
from ..viz import save_sample_grid
from .evaluation import EvalSet, evaluate_points, predict_eval_points, save_eval_predictions
from .objective import keypointgan_objective, term_parameters
from .pretrain import pretrain_eta, sample_prior
from .runlog import RunLog
from .state import TrainState, seed_everything
from .update import Rollback, apply_all_or_nothing

__all__ = ["StepResult", "train_step", "fit", "pretrain_regressor", "inference_networks", "save_state", "budget_fraction", "lr_scale", "predict_state", "evaluate_state"]


@dataclass
class StepResult:
    """``losses``: the logged values; ``skipped``: no update was made (a non-finite loss or gradient);
    ``visuals``: ``(x, ŷ, p, x′, x̂)`` of an applied step, for sample grids."""

    losses: dict[str, float]
    skipped: bool
    visuals: tuple[torch.Tensor, ...] | None


def train_step(state: TrainState, x: torch.Tensor, x_app: torch.Tensor, prior: torch.Tensor | None, *, progress: float = 0.0,
               poses: torch.Tensor | None = None) -> StepResult:
    """One G, D and η update on targets ``x`` / appearance frames ``x_app`` (``B×3×S×S`` in [-1, 1]),
    with ``B`` poses drawn from ``prior`` (``N×K×2`` in [-1, 1]), or ``poses`` (``B×K×2``) as given;
    all or nothing (:mod:`.update`), in the run's precision, averaged over ranks in a multi-process run.
    ``progress``: the fraction of the budget spent before this step (for the weight average).
    Advances ``state.step`` either way."""
    cfg = state.cfg
    q = poses if poses is not None else sample_prior(prior, x.shape[0], cfg, state.skeleton, state.gen, pretrain=False)
    if cfg.flip_augment:
        x, x_app = mirror_half(state.gen, x, x_app)
    rollback = Rollback(state.buffers(), state.pool)
    with state.autocast():
        terms = keypointgan_objective(state.fwd, x, x_app, q, cfg=cfg, skeleton=state.skeleton, rec_loss=state.rec_loss,
                                      fakes_for_d=lambda y: state.pool.query(y, state.gen),
                                      swaps=state.side_swaps_for(prior if prior is not None else q))
    values, applied = apply_all_or_nothing(terms.losses, terms.parts, state.optimizers, term_parameters(state.nets),
                                           grad_clip=cfg.grad_clip, rollback=rollback, dist=state.dist,
                                           scaler=state.precision.scaler)
    if applied and state.average is not None:
        state.average.update(state.nets, step=state.step, progress=progress)
    state.step += 1
    return StepResult(values, not applied, terms.visuals if applied else None)


def pretrain_regressor(state: TrainState, prior: torch.Tensor, *, steps: int | None = None, progress: bool = True, log=None, should_stop=None) -> dict:
    """Pre-train ``state``'s η on rendered, augmented prior poses (:func:`.pretrain.pretrain_eta`); the
    average follows.  Returns the pre-training summary (``interrupted=True`` when stopped early)."""
    res = pretrain_eta(state.nets["eta"], state.skeleton, prior, state.cfg, state.gen, steps=steps, progress=progress,
                       log=log, should_stop=should_stop, dist=state.dist,
                       # fp16 without a gradient scaler could underflow η's small gradients: pre-training stays float32
                       autocast=state.autocast if state.precision.name != "fp16" else None)
    if not res.get("interrupted"):
        state.set_pretrained_regressor()
    return res


def inference_networks(state: TrainState, loader: PairLoader | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Φ and η for prediction: the averages, their batch-norm statistics measured on ``cfg.ema_norm_batches``
    batches of ``loader``'s frames for this step (once), else the raw networks."""
    n = state.cfg.ema_norm_batches
    if state.average is not None and n and loader is not None and len(loader.store):
        state.average.refresh_norm_stats(lambda: loader.norm_batches(state.step, n), state.step)
    return state.averaged_or_raw()


def save_state(state: TrainState, loader: PairLoader | None, path: Path) -> Path | None:
    """Write ``state`` (its average ready for prediction) to ``path`` atomically; returns ``path``.

    Every rank of a multi-process run calls this at the same step: rank 0 gathers the others'
    :meth:`~.state.TrainState.rank_state` and writes; the others return None."""
    others = state.dist.gather_objects(state.rank_state()) if state.dist.enabled else [None]
    if not state.dist.is_writer:
        return None
    inference_networks(state, loader)
    sd = state.state_dict(other_ranks=others[1:])
    bad = [f"{part}.{net}.{k}" for part in ("nets", "ema") for net, w in (sd.get(part) or {}).items() for k, t in w.items()
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a checkpoint only ever holds finite weights: the previous one stays
        kept = f"the last checkpoint {path} is intact" if path.is_file() else "no checkpoint was written"
        raise TrainingDiverged(f"training stopped at step {state.step}: {len(bad)} weight tensors are not finite "
                               f"(first: {bad[0]}); {kept}", path if path.is_file() else None)
    save_checkpoint(sd, path)
    return path


def budget_fraction(step: int, elapsed_s: float, steps: int | None, budget_s: float) -> float:
    """Fraction of the budget spent: the larger of the step and the time fractions, at most 1."""
    p = 0.0 if steps is None else (step / steps if steps > 0 else 1.0)
    if math.isfinite(budget_s):
        p = max(p, elapsed_s / budget_s)
    return min(p, 1.0)


def lr_scale(progress: float, decay_fraction: float) -> float:
    """Constant, then linear to 0 over the last ``decay_fraction`` of the budget."""
    if decay_fraction <= 0 or progress <= 1 - decay_fraction:
        return 1.0
    return max(0.0, (1.0 - progress) / decay_fraction)


class _StopSignals:
    """SIGINT / SIGTERM request a stop at the next step boundary; a second one stops at once."""

    def __init__(self, announce: bool):
        self.signum: int | None = None
        self.announce, self.previous = announce, {}

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            logger.warning(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (send it again to stop at once)")

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self.previous[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):  # pragma: no cover - unusual embedding
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def environment(state: TrainState, world_size: int) -> dict:
    """Where a run executes: versions, device, threads, host (in the log and the report)."""
    env = {
        "keypointgan": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "host": socket.gethostname(), "device": str(state.device),
        "threads": torch.get_num_threads(), "world_size": world_size,
    }
    if state.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(state.device)
    return env


def fit(state: TrainState, loader: PairLoader, prior: torch.Tensor, out: str | Path, *, eval_set: EvalSet | None = None,
        progress: bool = True, record: dict | None = None) -> dict:
    """Pre-train η if needed, then train until the budget is spent; returns the final metrics ({} without ``eval_set``).

    The budget is ``state.cfg.steps`` and/or ``max_minutes`` (GAN training time, without η's
    pre-training).  A checkpoint (:func:`~keypointgan.checkpoint.run_checkpoint`) is written after pre-training, every
    ``ckpt_every`` steps and at the end, atomically, so a crash (even SIGKILL) loses at most one
    interval.  SIGINT/SIGTERM stop at the next step boundary, save and raise
    :class:`~keypointgan.errors.TrainingInterrupted`; a second signal stops at once (the previous
    checkpoint stays).  A fresh run seeds the global generators from the seed; a resumed one has them
    from its checkpoint.  ``record``: more fields for the log's ``start`` record (the data's paths).
    A resumed run whose budget is already spent trains nothing, says so and leaves the run untouched.
    """
    cfg, out = state.cfg, Path(out)
    if cfg.steps is None and cfg.max_minutes is None:
        raise InputError("give a training budget: steps and/or max_minutes")
    configure_logging()
    writer = state.dist.is_writer
    ckpt = run_checkpoint(out)
    if state.resumed and _budget_spent(state):
        return {}
    out.mkdir(parents=True, exist_ok=True)
    if writer:  # temporary files of checkpoint writes a crash interrupted
        for tmp in ckpt.parent.glob(f".{CHECKPOINT_NAME}.*.tmp"):
            tmp.unlink(missing_ok=True)
    if not state.resumed:
        seed_everything(derive_seed(cfg.seed, RANK, state.rank))
    with RunLog(out, enabled=writer, tensorboard=cfg.tensorboard) as log, _StopSignals(announce=writer) as stop:
        log({"event": "start", "step": state.step, "seed": cfg.seed, "device": str(state.device), "rec_loss": state.rec_loss.name,
             "version": __version__, "environment": environment(state, loader.world_size), "config": cfg.to_dict(),
             "data_workers": loader.workers, "precision": state.precision.name, "compile": cfg.compile,
             "world_size": state.dist.world_size, "global_batch": cfg.batch_size * state.dist.world_size, **(record or {})})
        if state.resumed and state.resumed_world_size not in (None, state.dist.world_size):
            log({"event": "world_size_changed", "step": state.step, "from": state.resumed_world_size, "to": state.dist.world_size})
            if writer:
                logger.warning(f"resuming a run of {state.resumed_world_size} process(es) with {state.dist.world_size}: the global batch "
                               f"is now {cfg.batch_size * state.dist.world_size} pairs, and ranks that are new draw afresh")
        if progress and writer:
            logger.info(f"device {state.device}; precision {state.precision.name}; reconstruction loss: {state.rec_loss.name}; "
                        f"data workers: {loader.workers}" + (f"; {state.dist.world_size} processes" if state.dist.enabled else ""))
        stop_agreed = lambda: bool(state.dist.agree_max([stop.signum is not None])[0])  # noqa: E731
        try:
            if not state.pretrained and cfg.pretrain_steps > 0:
                t0 = time.perf_counter()
                r = pretrain_regressor(state, prior, progress=progress and writer, log=log, should_stop=stop_agreed)
                if r.get("interrupted"):
                    log({"event": "interrupted", "step": 0, "saved": False, "phase": "pretrain"})
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, 0, None, writer=writer)
                log({"event": "pretrained", **r, "seconds": time.perf_counter() - t0})
            if state.step == 0:
                save_state(state, loader, ckpt)  # pre-training is never lost
            visuals = _train(state, loader, prior, out, log, stop, eval_set, progress=progress and writer)
            metrics = {}
            if eval_set is not None and writer:
                metrics = evaluate_state(state, loader, eval_set)
                log({"step": state.step, "time": state.elapsed, "eval": metrics, "final": True})
            save_state(state, loader, ckpt)
            if writer:
                if visuals is not None:
                    save_sample_grid(out / "samples" / f"step_{state.step:07d}.png", *visuals, state.skeleton, sigma=cfg.model.sigma)
                if eval_set is not None:
                    save_eval_predictions(predict_state(state, loader, eval_set.images), eval_set, state.skeleton, out / "eval_predictions.png")
            log({"event": "end", "step": state.step, "time": state.elapsed, "skipped_steps": state.skipped_steps})
            return metrics
        except KeyboardInterrupt as exc:
            if not isinstance(exc, TrainingInterrupted):  # a hard interrupt in the middle of a step: the last checkpoint stays
                log({"event": "interrupted", "step": state.step, "saved": False})
            raise
        except RuntimeError as exc:
            if not (state.dist.enabled and _lost_contact(exc)):
                raise
            log({"event": "process_lost", "step": state.step, "error": str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})
            raise ProcessLost(f"rank {state.rank} lost contact with the other processes at step {state.step} "
                              f"({exc.__class__.__name__}); the last checkpoint {ckpt} is intact") from None


def _budget_spent(state: TrainState) -> bool:
    """Whether the run's budget already covers its step and training time (then it says so)."""
    cfg = state.cfg
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    if budget_fraction(state.step, state.elapsed, cfg.steps, budget_s) < 1.0:
        return False
    if state.dist.is_writer:
        logger.warning(f"nothing to train: the run is at step {state.step} ({state.elapsed / 60:.1f} min of training), "
                       f"which its budget (steps {cfg.steps}, max_minutes {cfg.max_minutes}) already covers")
    return True


def _lost_contact(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a collective failing because another process died or timed out (torch's
    ``DistError``; gloo raises a plain ``RuntimeError`` naming its transport)."""
    text = str(exc)
    return isinstance(exc, torch.distributed.DistError) or any(
        s in text for s in ("gloo", "NCCL", "Connection closed", "Connection reset", "Timed out", "timed out"))


def _train(state: TrainState, loader: PairLoader, prior: torch.Tensor, out: Path, log: RunLog, stop: _StopSignals,
           eval_set: EvalSet | None, *, progress: bool):
    """The GAN phase of :func:`fit`, batch by batch until the budget is spent; returns the last step's visuals."""
    from tqdm.auto import tqdm

    cfg, writer = state.cfg, state.dist.is_writer
    ckpt = run_checkpoint(out)
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    if _budget_spent(state):
        return None
    saved_step = state.step if ckpt.is_file() else None
    start, base_elapsed = time.perf_counter(), state.elapsed
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    bad_in_a_row, visuals = 0, None
    seen, waited, t_window = 0, 0.0, time.perf_counter()  # throughput and time spent waiting for data, per log window
    batches, per_epoch = loader.batches(state.epoch, state.batch_in_epoch), loader.batches_per_epoch()
    t_ready = time.perf_counter()
    for batch in batches:
        waited += time.perf_counter() - t_ready
        # agreed by every rank: a stop requested anywhere, and the longest time any rank has trained
        stopping, now_elapsed = state.dist.agree_max([stop.signum is not None, base_elapsed + time.perf_counter() - start])
        if stopping:
            bar.close()
            path = save_state(state, loader, ckpt)
            log({"event": "interrupted", "step": state.step, "time": state.elapsed, "saved": path is not None, "signal": stop.signum})
            raise TrainingInterrupted(stop.signum or signal.SIGTERM, state.step, path, writer=writer)
        spent = budget_fraction(state.step, now_elapsed, cfg.steps, budget_s)
        if spent >= 1.0:
            break
        state.set_lr_scale(lr_scale(spent, cfg.lr_decay_fraction))
        result = train_step(state, batch.x, batch.x_app, prior, progress=spent)
        state.epoch, state.batch_in_epoch = divmod(batch.epoch * per_epoch + batch.index + 1, per_epoch)
        state.elapsed = base_elapsed + (time.perf_counter() - start)
        seen += batch.x.shape[0]
        bar.update(1)
        if result.skipped and state.precision.scaler is not None and result.losses.get("grad_norm") == math.inf:
            log({"event": "fp16_overflow", "step": state.step, "scale": state.precision.scaler.get_scale()})  # the scaler adapts
        elif result.skipped:
            state.skipped_steps += 1
            bad_in_a_row += 1
            bad = ", ".join(f"{k}={v}" for k, v in result.losses.items() if not math.isfinite(v)) or "gradients"
            log({"event": "skipped", "step": state.step, "nonfinite": bad})
            if writer:
                logger.warning(f"step {state.step}: non-finite {bad}; step skipped (no update)")
            if bad_in_a_row >= cfg.max_nonfinite_steps:
                where = f"the last checkpoint {ckpt} (step {saved_step}) is intact" if saved_step is not None else "no checkpoint was written"
                log({"event": "diverged", "step": state.step, "nonfinite": bad})
                raise TrainingDiverged(f"training stopped at step {state.step}: {bad_in_a_row} consecutive steps with non-finite "
                                       f"losses or gradients (last: {bad}); {where}", ckpt if saved_step is not None else None)
        else:
            bad_in_a_row, visuals = 0, result.visuals
            if state.step % cfg.log_every == 0:
                now = time.perf_counter()
                ips, wait = seen / max(now - t_window, 1e-9), waited / max(now - t_window, 1e-9)
                seen, waited, t_window = 0, 0.0, now
                log({"step": state.step, "time": state.elapsed, "img_per_s": ips, "data_wait": wait, **result.losses})
                bar.set_postfix(rec=f"{result.losses['loss_rec']:.3f}", d=f"{result.losses.get('loss_d_fake', 0):.3f}", ips=f"{ips:.0f}")
            if writer and state.step % cfg.sample_every == 0:
                sheet = save_sample_grid(out / "samples" / f"step_{state.step:07d}.png", *visuals, state.skeleton, sigma=cfg.model.sigma)
                log.image("samples", sheet, state.step)
        if writer and eval_set is not None and state.step % cfg.eval_every == 0:
            m = evaluate_state(state, loader, eval_set)
            log({"step": state.step, "time": state.elapsed, "eval": m})
            if progress:
                logger.info(f"step {state.step}: error {m['error']:.2f}  flip-corrected {m['error_flip']:.2f}  PCK {m['pck']:.3f}")
        if state.step % cfg.ckpt_every == 0:
            saved_step = state.step
            save_state(state, loader, ckpt)
        t_ready = time.perf_counter()
    bar.close()
    batches.close()  # ends the data workers
    return visuals


def predict_state(state: TrainState, loader: PairLoader | None, images: torch.Tensor, *, flip_test: bool | None = None) -> torch.Tensor:
    """``N×3×S×S`` in [-1, 1] → ``N×K×2`` points in [-1, 1] from ``state``'s inference networks
    (with the flip test when ``flip_test``, by default the run's setting)."""
    phi, eta = inference_networks(state, loader)
    flip = state.cfg.flip_test if flip_test is None else flip_test
    return predict_eval_points(phi, eta, images, state.skeleton, flip_test=flip, memory_format=state.memory_format)


def evaluate_state(state: TrainState, loader: PairLoader | None, es: EvalSet) -> dict:
    """Metrics of ``state``'s inference networks on ``es`` (with the run's flip test setting)."""
    return evaluate_points(predict_state(state, loader, es.images), es, state.skeleton)
