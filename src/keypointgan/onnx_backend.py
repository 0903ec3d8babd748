"""Prediction with an exported model (``keypointgan export``) on onnxruntime — no torch.

The ONNX file carries everything needed besides the weights (see :mod:`keypointgan.export`): the
skeleton, the input size, the point convention, whether the flip test is baked in. Images are
prepared exactly as for the PyTorch detector (:func:`keypointgan.pixels.prepare_images`), so both
give the same points to float precision.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .pixels import norm_to_image_pixels, prepare_images, signed_to_uint8, spread_factor
from .skeleton import Skeleton

__all__ = ["OnnxKeypointDetector", "read_metadata"]

FORMAT = "keypointgan-detector-1"
"""The value of the ``format`` metadata key of files this version writes and reads."""


def _require_onnxruntime(path):
    try:
        import onnxruntime
    except ImportError:
        raise InputError("onnxruntime is not installed (pip install 'keypointgan[onnx]')", path) from None
    return onnxruntime


def read_metadata(meta: dict, path=None) -> tuple[Skeleton, int, dict]:
    """The skeleton, input size and the whole metadata map of an exported model (``key → string``)."""
    if meta.get("format") != FORMAT:
        raise InputError(f"not a keypointgan detector (metadata 'format' is {meta.get('format')!r}, expected {FORMAT!r})", path)
    try:
        skeleton = Skeleton.from_dict(json.loads(meta["skeleton"]), source=path)
        size = int(meta["input_size"])
    except (KeyError, ValueError) as exc:
        raise InputError(f"the model's metadata is incomplete ({exc.__class__.__name__}: {exc})", path) from None
    return skeleton, size, meta


class OnnxKeypointDetector:
    """An exported detector on onnxruntime: the prediction API of :class:`~keypointgan.KeypointDetector`.

    Example::

        det = OnnxKeypointDetector("detector.onnx")       # or KeypointDetector.from_onnx(...)
        kp, conf = det.predict_with_confidence(image)      # H×W×3 uint8 → K×2 pixel (x, y), K in [0, 1]

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime's intra-op threads (default: its own choice, all cores).
        providers: onnxruntime execution providers (default: CPU).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None):
        path = Path(path)
        if not path.is_file():
            raise InputError("model file not found", path)
        ort = _require_onnxruntime(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise InputError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
        self.path = path
        self.skeleton, self.size, self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.flip_test = self.metadata.get("flip_test") == "true"
        """Whether the flip test is baked into the graph (fixed at export)."""
        self.preprocess = self.metadata.get("preprocess") == "true"
        self._input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``N×3×S×S`` float32 in [-1, 1] → the graph's ``N×K×2`` points and ``N×K`` confidences.

        A graph exported with ``--preprocess`` takes uint8 ``N×H×W×3`` and resizes in the graph; it is
        given the same ``S×S`` images as uint8 (its resize is then the identity), so both kinds of
        export give the same points for the same image."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.preprocess:
            x = np.ascontiguousarray(signed_to_uint8(x).transpose(0, 2, 3, 1))
        pts, conf = [], []
        for i in range(0, x.shape[0], batch_size):
            p, c = self.session.run(None, {self._input: x[i : i + batch_size]})
            pts.append(p)
            conf.append(c)
        return np.concatenate(pts), np.concatenate(conf)

    def predict_grid_points(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``N×3×S×S`` float32 in [-1, 1] at the model's size → ``N×K×2`` points in [-1, 1], as
        :meth:`KeypointDetector.predict_grid_points <keypointgan.KeypointDetector.predict_grid_points>`
        (confidences: :meth:`predict_with_confidence`)."""
        return self._run(x, batch_size)[0]

    def predict_with_confidence(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Images (as :meth:`KeypointDetector.predict <keypointgan.KeypointDetector.predict>` takes them, without tensors)
        → pixel ``(x, y)`` points and confidences in [0, 1]: ``K×2`` and ``K`` for one image, else ``N×K×2`` and ``N×K``."""
        x, hw, single = prepare_images(images, self.size)
        pts, conf = self._run(x, batch_size)
        out = norm_to_image_pixels(pts, self.size, np.asarray(hw))
        conf = conf.astype(np.float32) * spread_factor(pts, self.size)  # as the PyTorch detector's
        return (out[0], conf[0]) if single else (out, conf)

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Keypoints in pixel ``(x, y)`` of the input images: ``K×2`` for one image, else ``N×K×2`` float32."""
        return self.predict_with_confidence(images, batch_size)[0]
