"""A run's records: ``RUN/log.jsonl`` (one JSON object per line: the source of the HTML report) and,
optionally, the same scalars and the sample grids as TensorBoard events in ``RUN/tensorboard/``.
Only the writing process (rank 0) writes; on every other rank a :class:`RunLog` does nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["RunLog"]


class RunLog:
    """Append records to ``out/log.jsonl``; with ``tensorboard``, also to TensorBoard (needs the
    ``tensorboard`` package: ``pip install keypointgan[tensorboard]``)."""

    def __init__(self, out: Path, *, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self._file = open(out / "log.jsonl", "a", buffering=1) if enabled else None
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.close()
                raise InputError("--tensorboard needs the tensorboard package: pip install 'keypointgan[tensorboard]'") from None
            self._tb = SummaryWriter(str(out / "tensorboard"))

    def __call__(self, record: dict) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None and "step" in record:
            self._scalars(record, record["step"])

    def _scalars(self, record: dict, step: int) -> None:
        phase = record.get("phase")
        for k, v in record.items():
            if k == "eval" and isinstance(v, dict):
                for m, x in v.items():
                    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                        self._tb.add_scalar(f"eval/{m}", x, step)
            elif k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._tb.add_scalar(f"{phase}/{k}" if phase else f"train/{k}", v, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An ``H×W×3`` uint8 picture (e.g. a sample grid) to TensorBoard, when it is on."""
        if self._tb is not None:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
