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
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
