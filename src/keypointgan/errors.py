"""User-facing errors.

Every problem a user can cause with their input (a missing file, a malformed
skeleton, a prior with NaNs, ...) is raised as :class:`InputError` with a
message that names the offending file and the problem in one line.  The CLI
prints that line and exits with a non-zero code instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class KeypointGANError(Exception):
    """Base class for errors the library raises on purpose."""


class InputError(KeypointGANError, ValueError):
    """Bad user input: the message names the file (if any) and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        text = f"{self.path}: {problem}" if self.path is not None else problem
        super().__init__(one_line(text))


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1e``), so that a
    message quoting a file's content or a file name still prints as one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


class TrainingDiverged(KeypointGANError, RuntimeError):
    """Training stopped after too many consecutive steps with NaN/Inf losses or gradients.

    No update was applied on those steps, so the last checkpoint (``checkpoint``)
    holds finite weights and can be resumed or used for prediction.
    """

    def __init__(self, message: str, checkpoint: str | Path | None = None):
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        super().__init__(message)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped training at a step boundary after saving a checkpoint
    (in a multi-process run rank 0 saves it; ``writer`` is False on the other ranks)."""

    def __init__(self, signum: int, step: int, checkpoint: str | Path | None, *, writer: bool = True):
        self.signum, self.step = signum, step
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        if not writer:
            where = f"stopped at step {step} with the other processes (rank 0 saves the checkpoint)"
        elif checkpoint is not None:
            where = f"saved {self.checkpoint} at step {step}"
        else:
            where = "nothing saved (interrupted during η pre-training)"
        super().__init__(f"interrupted by signal {signum}; {where}")


class ProcessLost(KeypointGANError, RuntimeError):
    """A multi-process run lost contact with another process (it died, or a collective timed out);
    the last checkpoint rank 0 wrote is intact."""
