"""The library's logger, ``keypointgan``: messages for people (progress, warnings) on stderr.

Machine-readable records of a run go to ``RUN/log.jsonl`` (:mod:`keypointgan.training.runlog`);
this is the human side.  :func:`configure` gives the logger one stderr handler (idempotent), written
through tqdm so that messages do not tear progress bars; warnings read ``keypointgan: warning: …``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "configure", "warnings_as_lines", "end_progress_bars"]

logger = logging.getLogger("keypointgan")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return msg if record.levelno < logging.WARNING else f"keypointgan: {record.levelname.lower()}: {msg}"


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up at each message, so redirections apply) via
    ``tqdm.write``, which clears and redraws any progress bar around the line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure(level: int | None = None) -> logging.Logger:
    """Attach the stderr handler once; set ``level`` when given (else INFO the first time)."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(_Formatter())
        logger.addHandler(h)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    if level is not None:
        logger.setLevel(level)
    return logger


def warnings_as_lines():
    """A context in which Python warnings (a skipped video frame, …) print as ``keypointgan: warning: …``,
    one line each through :data:`logger`, instead of Python's two lines (file, line, source).  The
    command line uses it; the library itself leaves ``warnings`` alone."""
    import contextlib
    import warnings

    @contextlib.contextmanager
    def context():
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            logger.warning(str(message))

        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous

    return context()


def end_progress_bars() -> None:
    """Close every open progress bar, so that the next line on stderr starts a line of its own (an error
    raised in the middle of a loop leaves its bar open, drawn without a line break)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
