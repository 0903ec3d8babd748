"""``KeypointDetector``: load a checkpoint (or an exported ONNX file), predict keypoints and their confidence on images.

torch is imported when a checkpoint is loaded, not with this module: :meth:`KeypointDetector.from_onnx`
runs on onnxruntime alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .pixels import norm_to_image_pixels, prepare_images, spread_factor, uint8_to_signed
from .skeleton import Skeleton

__all__ = ["KeypointDetector"]


class KeypointDetector:
    """Φ and η of a trained run, ready to predict.

    Example::

        det = KeypointDetector.from_checkpoint("runs/demo/keypointgan")
        kp = det.predict(image)          # image: H×W×3 uint8 → K×2 pixel (x, y)
        det.skeleton.keypoints           # the names of the K rows

    With ``flip_test`` (default: the run's ``TrainConfig.flip_test``) every prediction averages the
    image's and its mirror image's (mirrored back, left/right keypoints swapped): see :func:`predict_points`.
    """

    def __init__(
        self,
        *,
        phi: "PoseEncoder",
        eta: "KeypointRegressor",
        skeleton: Skeleton,
        size: int,
        device: torch.device | str = "cpu",
        config: "TrainConfig | None" = None,
        flip_test: bool | None = None,
    ):
        import torch

        self.device = torch.device(device)
        self.phi = phi.to(self.device).eval()
        self.eta = eta.to(self.device).eval()
        self.skeleton = skeleton
        self.size = int(size)
        self.config = config
        self.flip_test = bool(config.flip_test if flip_test is None and config is not None else flip_test)
        """Average each prediction with that of the mirrored image (default: the run's ``flip_test``)."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, flip_test: bool | None = None) -> "KeypointDetector":
        """Load from a checkpoint file or a run folder (its latest checkpoint); GPU checkpoints load on CPU.

        ``flip_test`` overrides the run's setting (``TrainConfig.flip_test``) for this detector.
        """
        from .checkpoint import load_networks
        from .devices import select_device

        dev = select_device("auto") if device is None else select_device(str(device))
        run = load_networks(path, averaged=True)  # the moving averages when the run kept them, else the raw weights
        cfg = run.config
        return cls(phi=run.nets["phi"], eta=run.nets["eta"], skeleton=run.skeleton, size=cfg.model.size, device=dev, config=cfg, flip_test=flip_test)

    @staticmethod
    def from_onnx(path: str | Path, *, threads: int | None = None) -> "OnnxKeypointDetector":
        """An exported model (``keypointgan export``) on onnxruntime, without torch: the same ``predict`` and
        ``predict_with_confidence`` as a detector from a checkpoint (see :class:`~keypointgan.onnx_backend.OnnxKeypointDetector`)."""
        from .onnx_backend import OnnxKeypointDetector

        return OnnxKeypointDetector(path, threads=threads)

    # ------------------------------------------------------------------ API
    def _prepare(self, images) -> tuple["torch.Tensor", list[tuple[int, int]], bool]:
        """Any accepted input → ``N×3×S×S`` in [-1, 1], the original sizes, and whether one image was given."""
        import torch
        import torch.nn.functional as F

        single = False
        if isinstance(images, torch.Tensor):
            if images.ndim == 3:
                images, single = images.unsqueeze(0), True
            if images.ndim != 4 or images.shape[1] != 3:
                raise InputError(f"image tensors must be B×3×H×W in [-1, 1], got shape {tuple(images.shape)}")
            if images.dtype == torch.uint8:  # e.g. from torchvision: 0..255
                x = uint8_to_signed(images)
            else:
                x = images.float()
                if not torch.isfinite(x).all():
                    raise InputError("image tensor contains NaN or infinite values")
                if x.min() < -1.01 or x.max() > 1.01:
                    raise InputError(f"float image tensors must be in [-1, 1], got [{x.min():.3g}, {x.max():.3g}]")
            hw = [(x.shape[2], x.shape[3])] * x.shape[0]
            if x.shape[-2:] != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            return x, hw, single
        x, hw, single = prepare_images(images, self.size)
        return torch.from_numpy(x), hw, single

    def predict_grid_points(self, x: "torch.Tensor", batch_size: int = 64) -> "torch.Tensor":
        """``N×3×S×S`` in [-1, 1] at the model's size → ``N×K×2`` in [-1, 1] (with the flip test if on)."""
        from .inference import predict_points

        flip = self.skeleton.flip_permutation if self.flip_test else None
        return predict_points(self.phi, self.eta, x, flip_permutation=flip, batch_size=batch_size)

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Keypoints in pixel ``(x, y)`` of the input images.

        Args:
            images: an ``H×W×3`` uint8 array, a list of them (sizes may
                differ), or a ``B×3×H×W`` float tensor in [-1, 1].

        Returns:
            ``K×2`` for a single image, else ``N×K×2`` float32 — pixel
            coordinates with the centre of pixel column ``j`` at ``x = j``.
        """
        x, hw, single = self._prepare(images)
        pts = self.predict_grid_points(x, batch_size)
        out = norm_to_image_pixels(pts, self.size, np.asarray(hw))
        return out[0] if single else out

    def predict_with_confidence(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints as :meth:`predict` returns them and a confidence per keypoint.

        Returns:
            ``(points, confidence)``: ``K×2`` and ``K`` for a single image, else ``N×K×2`` and ``N×K``
            float32. Confidence is in [0, 1]: the agreement of η's heatmaps of the image and of its
            mirror image (:func:`~keypointgan.geometry.heatmap_agreement`), so it costs the mirrored
            pass, which the flip test makes anyway, times :func:`~keypointgan.pixels.spread_factor` (low when the whole pose
            has collapsed to a pixel or so); the points are those of :meth:`predict`.
        """
        from .inference import predict_points_confidence

        x, hw, single = self._prepare(images)
        pts, conf = predict_points_confidence(
            self.phi, self.eta, x, flip_permutation=self.skeleton.flip_permutation, flip_test=self.flip_test, batch_size=batch_size
        )
        out = norm_to_image_pixels(pts, self.size, np.asarray(hw))
        conf = conf.numpy().astype(np.float32) * spread_factor(pts.numpy(), self.size)
        return (out[0], conf[0]) if single else (out, conf)

    def skeleton_image(self, images) -> np.ndarray:
        """Φ's raw skeleton images for inspection: ``N×S×S`` in [-1, 1]."""
        import torch

        x, _, _ = self._prepare(images)
        with torch.no_grad():
            return self.phi(x.to(self.device)).cpu().numpy()[:, 0]
