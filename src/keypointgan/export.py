"""``keypointgan export``: a checkpoint's Φ → η → soft-argmax (+ confidence) as one ONNX graph.

The graph (:class:`~keypointgan.inference.DetectorGraph`) maps

* input ``images``: ``N×3×S×S`` float32 RGB in [-1, 1] (:func:`keypointgan.pixels.uint8_to_signed` of uint8 values), resized
  to the model's ``S×S`` beforehand (PIL bilinear, antialiased: :func:`keypointgan.pixels.prepare_images`);
  with ``preprocess=True`` instead ``N×H×W×3`` uint8 RGB of any size, resized inside the graph;
* to ``points``: ``N×K×2`` float32 ``(x, y)`` in [-1, 1] on the ``S×S`` grid (x right, y down; -1 and 1
  are the centres of the first and last pixel column/row), and ``confidence``: ``N×K`` float32 in [0, 1].

``N`` is dynamic. The model's metadata (``metadata_props``) holds, as strings: ``format``,
``keypointgan_version``, ``skeleton`` (JSON: ``name``, ``keypoints``, ``limbs`` and ``symmetric`` as
name pairs), ``input_size``, ``input``, ``points`` and ``confidence`` (the conventions in words),
``pixel_conversion`` (the formula to the original image's pixels), ``flip_test`` and ``preprocess``
(``"true"``/``"false"``) — enough to draw the skeleton without this library.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .errors import InputError
from .onnx_backend import FORMAT
from .pixels import UINT8_SCALE

__all__ = ["export_onnx", "model_metadata"]


def model_metadata(skeleton, size: int, *, flip_test: bool, preprocess: bool) -> dict[str, str]:
    """The metadata written into an exported model (all values strings)."""
    from ._version import __version__

    return {
        "format": FORMAT,
        "keypointgan_version": __version__,
        "skeleton": json.dumps(skeleton.to_dict()),
        "input_size": str(int(size)),
        "input": (
            f"images: N×H×W×3 uint8 RGB, any H×W (resized to {size}×{size} in the graph, bilinear without antialiasing)"
            if preprocess
            else f"images: N×3×{size}×{size} float32 RGB in [-1, 1] (uint8 / {UINT8_SCALE} - 1), resized to {size}×{size} with bilinear antialiased filtering"
        ),
        "points": f"N×K×2 float32 (x, y) in [-1, 1] on the {size}×{size} grid: x right, y down, -1 and 1 the centres of the first and last pixel",
        "pixel_conversion": f"pixel x of an original image of width W = ((x + 1) * ({size} - 1) / 2 + 0.5) * W / {size} - 0.5 (likewise y with height H); the centre of pixel column j is at x = j",
        "confidence": "N×K float32 in [0, 1]: agreement (Bhattacharyya coefficient) of the keypoint's heatmap in the image and in its mirror image, mirrored back",
        "flip_test": "true" if flip_test else "false",
        "preprocess": "true" if preprocess else "false",
    }


def export_onnx(source, out: str | Path, *, flip_test: bool | None = None, preprocess: bool = False, opset: int = 17) -> Path:
    """Write ``source`` (a :class:`~keypointgan.KeypointDetector`, a checkpoint file or a run folder) as ONNX.

    Args:
        flip_test: bake the flip test into the graph (default: the run's setting, or the detector's).
        preprocess: take ``N×H×W×3`` uint8 images and resize them in the graph (see the module's docstring).
        opset: the ONNX opset.

    Returns:
        ``out``, written atomically (nothing is left behind on failure).
    """
    import torch

    try:
        import onnx
    except ImportError:
        raise InputError("exporting needs the onnx package (pip install 'keypointgan[onnx]')") from None
    from .detector import KeypointDetector
    from .inference import DetectorGraph
    from .io import atomic_path

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise InputError("the output file must end in .onnx", out)
    det = source if isinstance(source, KeypointDetector) else KeypointDetector.from_checkpoint(source, device="cpu", flip_test=flip_test)
    flip = det.flip_test if flip_test is None else bool(flip_test)
    sk, size = det.skeleton, det.size
    graph = DetectorGraph(
        det.phi.to("cpu").eval(), det.eta.to("cpu").eval(), flip_permutation=sk.flip_permutation, flip_test=flip, preprocess=preprocess, size=size
    ).eval()
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8) if preprocess else torch.zeros(2, 3, size, size)
    dynamic = {0: "N", 1: "H", 2: "W"} if preprocess else {0: "N"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # the TorchScript exporter: quick, and needs no onnxscript; torch >= 2.9 marks it deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["points", "confidence"],
                dynamic_axes={"images": dynamic, "points": {0: "N"}, "confidence": {0: "N"}},
                opset_version=opset,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        model.doc_string = f"keypointgan detector: {sk.num_keypoints} keypoints of skeleton {sk.name!r}, input {size}×{size}"
        for out_value, dims in zip(model.graph.output, (["N", sk.num_keypoints, 2], ["N", sk.num_keypoints])):
            shape = out_value.type.tensor_type.shape  # the tracer leaves K symbolic behind some ops: state it
            shape.ClearField("dim")
            for d in dims:
                shape.dim.add(**({"dim_param": d} if isinstance(d, str) else {"dim_value": d}))
        for k, v in model_metadata(sk, size, flip_test=flip, preprocess=preprocess).items():
            model.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return out
