"""Seeds derived from a run's seed, one stream per purpose, by ``numpy.random.SeedSequence`` (as
:mod:`keypointgan.data.synthetic` does): no two purposes, ranks, epochs or steps share a stream, and
no hand-picked multipliers are needed to keep them apart."""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "RANK", "EPOCH_ORDER", "NORM_BATCHES"]

# purposes (the first entry of the spawn key)
RANK = 0
"""A process's training generator and the global generators: keys ``(rank,)``, or ``(rank, step)`` for a
rank that starts afresh on a resume with another number of processes."""
EPOCH_ORDER = 1
"""The permutation of the training frames in an epoch: key ``(epoch,)``."""
NORM_BATCHES = 2
"""The frames batch-norm statistics are measured on at a step: key ``(step,)``."""


def derive_seed(seed: int, purpose: int, *keys: int) -> int:
    """A 64-bit seed for ``purpose`` (and ``keys``) of the run seeded by ``seed`` (>= 0)."""
    seq = np.random.SeedSequence(int(seed), spawn_key=(int(purpose), *(int(k) for k in keys)))
    return int(seq.generate_state(1, np.uint64)[0])
