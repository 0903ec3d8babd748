"""Prediction on image files, folders and video files.

Images: ``OUT/<name>.json`` and ``OUT/<name>_overlay.png`` per image.
Every output carries a confidence in [0, 1] per keypoint (from η's heatmaps, see
:func:`keypointgan.geometry.heatmap_agreement`); overlays draw keypoints below
:data:`keypointgan.viz.CONFIDENCE_THRESHOLD` faint. The detector may be a checkpoint (PyTorch) or an
exported ``.onnx`` file (onnxruntime, no torch).
Videos (:func:`predict_video`): ``OUT/<name>.json`` and ``OUT/<name>.csv`` with
the keypoints of every frame, and ``OUT/<name>_overlay.mp4`` with the skeleton
drawn — streamed (decode → batch → predict → draw → encode), so memory does
not grow with the video's length.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import InputError
from .io import IMAGE_SUFFIXES, atomic_write_text, check_output_folder, max_image_pixels, read_image, write_image

__all__ = ["predict_paths", "collect_images", "predict_video", "predict_video_frames", "FramePrediction", "predict_files",
           "smooth_keypoints", "CentredMovingAverage", "JsonWriter", "CsvWriter", "OverlayWriter"]


def _is_hidden(p: Path) -> bool:
    """Hidden files, e.g. macOS's ``._x.png`` resource forks next to every file copied from a Mac."""
    return p.name.startswith(".")


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in named folders.

    In folders, hidden files (``.name``, e.g. macOS's ``._x.png``) are left out, as training does;
    a folder named like an image (``999.png/``) is refused.
    """
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(q))
            for q in found:
                if q.is_dir():
                    raise InputError("a folder named like an image; images must be files", q)
            if not found:
                raise InputError("folder holds no images (.png/.jpg/.bmp/.webp)", p)
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("input not found", p)
    return files


def _detector(source, device: str | None, flip_test: bool | None):
    """``source`` itself if it is a detector, one on onnxruntime for an ``.onnx`` file (no torch), else one loaded from that checkpoint."""
    if not isinstance(source, (str, os.PathLike)):  # a detector (either backend, or anything with their prediction API)
        return source
    if Path(source).suffix.lower() == ".onnx":
        from .onnx_backend import OnnxKeypointDetector

        if flip_test is not None:
            raise InputError("the flip test of an ONNX model is fixed when it is exported (keypointgan export --flip-test/--no-flip-test)", source)
        return OnnxKeypointDetector(source)
    from .detector import KeypointDetector

    return KeypointDetector.from_checkpoint(source, device=device, flip_test=flip_test)


def image_output_stems(files: Sequence[Path]) -> list[str]:
    """The output stem of each image: its own stem, made unique when several inputs share it."""
    from collections import Counter

    counts = Counter(f.stem for f in files)
    used: set[str] = set()
    stems = []
    for f in files:
        stem = f.stem if counts[f.stem] == 1 else f"{f.parent.name}_{f.name.replace('.', '_')}"
        base, k = stem, 1
        while stem in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        stems.append(stem)
    return stems


def image_outputs(stem: str, out: Path, overlay: bool) -> list[Path]:
    return [out / f"{stem}.json"] + ([out / f"{stem}_overlay.png"] if overlay else [])


def video_outputs(stem: str, out: Path, overlay: bool) -> list[Path]:
    return [out / f"{stem}.json", out / f"{stem}.csv"] + ([out / f"{stem}_overlay.mp4"] if overlay else [])


def check_outputs(plan: Sequence[tuple[Path, Sequence[Path]]], inputs: Sequence[Path]) -> None:
    """Refuse a plan (input → its output files) in which an output would overwrite an input or another output.

    Nothing is renamed: the error names the file that would be lost and the input whose output it is.
    """
    def key(p: Path) -> str:
        return os.path.normcase(os.path.realpath(p))

    protected = {key(p): p for p in inputs}
    written: dict[str, Path] = {}
    for src, outs in plan:
        for o in outs:
            k = key(o)
            if k in protected:
                raise InputError(f"this input would be overwritten by the output {o.name} of {src}; give another --out", protected[k])
            if k in written:
                raise InputError(f"two inputs, {written[k]} and {src}, would write the same output {o.name}", o)
            written[k] = src


def predict_paths(
    checkpoint, inputs: Sequence[str | Path], out: str | Path, *, device: str | None = None, overlay: bool = True, progress: bool = False, flip_test: bool | None = None
) -> int:
    """Predict every image; write ``OUT/<name>.json`` (and ``OUT/<name>_overlay.png``). Returns the count.

    ``checkpoint``: a detector, a checkpoint file or run folder, or an exported ``.onnx`` file.
    Every input is read and predicted, and every output name checked, before anything is
    written: a bad image, or an output that would overwrite an input, stops the command with
    nothing written (not even the output folder). Each file is written atomically.
    ``flip_test`` (when a checkpoint is given) overrides the run's setting: see :class:`~keypointgan.KeypointDetector`.
    """
    out = Path(out)
    check_output_folder(out)
    files = collect_images(inputs)
    stems = image_output_stems(files)
    check_outputs([(f, image_outputs(s, out, overlay)) for f, s in zip(files, stems)], files)
    det = _detector(checkpoint, device, flip_test)
    results = _predict_images(det, files, progress)
    _write_image_outputs(det, files, stems, results, out, overlay)
    return len(files)


def _predict_images(det, files: Sequence[Path], progress: bool) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Read and predict every image first (keypoints, confidences and size kept; the images are not)."""
    from tqdm.auto import tqdm

    results = []
    for f in tqdm(files, desc="predict", disable=not progress):
        img = read_image(f)
        kp, conf = det.predict_with_confidence(img)
        results.append((kp, conf, img.shape[:2]))
    return results


def _write_image_outputs(det, files, stems, results, out: Path, overlay: bool) -> None:
    from .viz import draw_keypoints

    if not files:
        return
    out.mkdir(parents=True, exist_ok=True)
    for f, stem, (kp, conf, (h, w)) in zip(files, stems, results):
        rec = {
            "image": str(f),
            "width": int(w),
            "height": int(h),
            "units": "pixel (x, y); the centre of pixel column j is at x = j",
            "keypoints": keypoint_record(det.skeleton.keypoints, kp, digits=None),
            "confidence": confidence_record(det.skeleton.keypoints, conf),
        }
        atomic_write_text(out / f"{stem}.json", json.dumps(rec, indent=2, allow_nan=False))
        if overlay:
            img = read_image(f)  # read again: already checked, and not kept in memory for every image
            scale = max(1, 256 // max(img.shape[:2]))
            write_image(out / f"{stem}_overlay.png", draw_keypoints(img, kp, det.skeleton, scale=scale, radius=2, width=2, confidence=conf))


# ------------------------------------------------------------------ videos
class CentredMovingAverage:
    """Streaming centred moving average of per-frame keypoints.

    Frame ``t`` gets the mean of frames ``t-h .. t+h`` (``window = 2h+1``);
    near the ends of the video the window shrinks symmetrically to
    ``h' = min(h, t, T-1-t)`` so that it stays centred — a pose moving at
    constant speed is left unchanged, and a periodic wobble whose period
    divides the window is removed.  Frames whose keypoints are NaN (skipped
    frames) are left out of the means.

    :meth:`push` takes frames in order and returns the frames whose window is
    complete, so at most ``h`` frames (and their payloads) wait at a time.

    Args:
        window: odd number of frames (1: no smoothing).
        num_frames: the video's length ``T``.
    """

    def __init__(self, window: int, num_frames: int):
        if window < 1 or window % 2 == 0:
            raise InputError(f"the smoothing window must be an odd number of frames, got {window}")
        self.h = window // 2
        self.T = int(num_frames)
        self._buf: list[tuple[int, np.ndarray, object]] = []  # (t, K×2, payload), t increasing and contiguous
        self._next = 0  # the next frame to emit

    def _emit(self, upto: int) -> list[tuple[int, np.ndarray, object]]:
        out = []
        while self._buf and self._next <= min(upto, self.T - 1):
            t = self._next
            first = self._buf[0][0]
            h = min(self.h, t, self.T - 1 - t)
            win = np.stack([kp for (u, kp, _) in self._buf[t - h - first : t + h + 1 - first]])
            ok = np.isfinite(win).all(-1)  # (n, K)
            cnt = ok.sum(0)
            mean = np.where(ok[..., None], win, 0.0).sum(0) / np.maximum(cnt, 1)[:, None]
            mean[cnt == 0] = np.nan
            out.append((t, mean.astype(np.float32), self._buf[t - first][2]))
            self._next += 1
            # keep the h frames before the next one to emit
            drop = self._next - self.h - first
            if drop > 0:
                del self._buf[:drop]
        return out

    def push(self, t: int, kp: np.ndarray, payload=None) -> list[tuple[int, np.ndarray, object]]:
        """Add frame ``t`` (the next in order); returns ``(t, smoothed K×2, payload)`` of frames now complete."""
        if self._buf and t != self._buf[-1][0] + 1 or not self._buf and t != self._next:
            raise ValueError(f"frames must be pushed in order without gaps; got {t}")
        self._buf.append((t, np.asarray(kp, dtype=np.float64), payload))
        return self._emit(t - self.h)

    def flush(self) -> list[tuple[int, np.ndarray, object]]:
        """The remaining frames (at the end of the video)."""
        return self._emit(self.T)


def check_smooth_window(window: int) -> int:
    """``window`` as a video smoothing setting: 0 or 1 (off), or an odd number of frames; else :class:`InputError`."""
    window = int(window)
    if window < 0 or (window > 1 and window % 2 == 0):
        raise InputError(f"smooth must be 0 (off) or an odd number of frames, got {window}")
    return window


def smooth_keypoints(points: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``T×K×2`` keypoints over ``window`` frames (see :class:`CentredMovingAverage`)."""
    points = np.asarray(points, dtype=np.float32)
    sm = CentredMovingAverage(window, len(points))
    out = np.empty_like(points)
    for t in range(len(points)):
        for u, kp, _ in sm.push(t, points[t]):
            out[u] = kp
    for u, kp, _ in sm.flush():
        out[u] = kp
    return out


def _json_float(v: float, digits: int | None = 3):
    """A number for JSON: rounded to ``digits`` (None: as it is), NaN and ±inf as null (JSON has no NaN)."""
    if not np.isfinite(v):
        return None
    return float(v) if digits is None else round(float(v), digits)


def predict_video(
    detector,
    path: str | Path,
    out: str | Path,
    *,
    smooth: int = 0,
    overlay: bool = True,
    batch_size: int = 32,
    scale: int | None = None,
    name: str | None = None,
    device: str | None = None,
    progress: bool = False,
    flip_test: bool | None = None,
) -> dict:
    """Keypoints for every frame of a video file, streamed.

    Writes ``OUT/<name>.json`` (one record per frame: index, time, keypoint
    names → pixel ``(x, y)`` of the original frame, and → confidence in [0, 1]), ``OUT/<name>.csv``
    (``frame, time, <kp>_x, <kp>_y, ..., <kp>_conf, ...``) and, with ``overlay``,
    ``OUT/<name>_overlay.mp4`` (H.264 when PyAV's ffmpeg has it, else MPEG-4)
    with the skeleton drawn, upscaled by ``scale`` (default: the integer
    factor that brings the frame to about 256 px, at least 1).  All three
    appear atomically when the video is done.

    Frames are decoded, predicted in batches of ``batch_size``, smoothed,
    drawn and encoded as they come: at most ``batch_size + smooth // 2``
    frames are held at a time.  A frame that cannot be decoded is skipped
    with a warning; its JSON record has ``"skipped": true`` and no
    keypoints, its CSV row empty cells, and the overlay leaves it out.

    Args:
        detector: a :class:`~keypointgan.KeypointDetector`, or a checkpoint file or run folder.
        path: the video file (.mp4 .avi .mov .mkv .webm).
        out: output folder.
        smooth: ``0`` or ``1`` for none, else an odd window in frames for a
            centred moving average of the keypoints (:class:`CentredMovingAverage`).
        name: output file stem (default: the video's stem).
        flip_test: when ``detector`` is a checkpoint, overrides the run's flip-test setting.

    Returns:
        ``{"frames", "skipped", "json", "csv", "overlay", "fps", "width", "height"}``.
    """
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    from .io import atomic_path
    from .video import VideoReader, VideoWriter, is_video_file

    path = Path(path)
    if not path.is_file():
        raise InputError("video file not found", path)
    if not is_video_file(path):
        raise InputError("not a video file (.mp4 .avi .mov .mkv .webm)", path)
    smooth = check_smooth_window(smooth)
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    out = Path(out)
    check_output_folder(out)
    stem = name or path.stem
    check_outputs([(path, video_outputs(stem, out, overlay))], [path])
    det = _detector(detector, device, flip_test)
    out.mkdir(parents=True, exist_ok=True)
    names = det.skeleton.keypoints
    json_path, csv_path, video_path = out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}_overlay.mp4"

    with VideoReader(path) as reader, ExitStack() as stack:
        T, w, h = reader.num_frames, reader.width, reader.height
        fps = reader.fps or 25.0
        up = int(scale) if scale else max(1, 256 // max(h, w))
        header = {
            "video": str(path),
            "width": w,
            "height": h,
            "fps": fps,
            "num_frames": T,
            "units": "pixel (x, y) of the original frame; the centre of pixel column j is at x = j",
            "keypoint_names": list(names),
            "skeleton": det.skeleton.to_dict(),
            "smooth": {"filter": "centred moving average", "window": smooth} if smooth > 1 else None,
        }
        writers = [JsonWriter(stack.enter_context(atomic_path(json_path)), header, smoothed=smooth > 1),
                   CsvWriter(stack.enter_context(atomic_path(csv_path)), names)]
        if overlay:
            video = VideoWriter(video_path, fps=fps)
            stack.push(video)  # closes (moves into place) on success, drops the file on error
            writers.append(OverlayWriter(video, det.skeleton, up))
        for wr in writers:
            stack.callback(wr.close)  # in reverse: each file is complete before atomic_path moves it into place
        skipped = []
        with tqdm(total=T, desc=f"predict {path.name}", unit="frame", disable=not progress) as bar:
            for fp in predict_video_frames(det, reader, smooth=smooth, batch_size=batch_size):
                if fp.points is None:
                    skipped.append(fp.frame)
                for wr in writers:
                    wr.write(fp)
                bar.update(1)
    return {
        "frames": T,
        "skipped": skipped,
        "json": json_path,
        "csv": csv_path,
        "overlay": video_path if overlay else None,
        "fps": fps,
        "width": w,
        "height": h,
    }


@dataclass
class FramePrediction:
    """One frame of a video as :func:`predict_video_frames` yields it (``points`` None: a skipped frame)."""

    frame: int
    """The frame's index (0 .. T-1, presentation order)."""
    time: float
    """Its presentation time in seconds from the first frame."""
    points: np.ndarray | None
    """``K×2`` pixel ``(x, y)`` of the frame, smoothed when a window is set."""
    raw: np.ndarray | None
    """``K×2`` as predicted, before smoothing."""
    confidence: np.ndarray | None
    """``K`` in [0, 1] (not smoothed)."""
    image: np.ndarray | None
    """The frame, ``H×W×3`` uint8."""


def predict_video_frames(det, reader, *, smooth: int = 0, batch_size: int = 32) -> Iterator[FramePrediction]:
    """Every frame of an open :class:`~keypointgan.video.VideoReader`, in order: decoded, predicted in
    batches of ``batch_size``, smoothed over ``smooth`` frames (:class:`CentredMovingAverage`).

    At most ``batch_size + smooth // 2`` frames are held at a time.  A frame the decoder skips comes
    with ``points`` None (a :class:`~keypointgan.video.VideoFrameWarning` names it); a frame a damaged
    stream decodes again out of order is dropped with a warning.
    """
    from .video import VideoFrameWarning

    T, K = reader.num_frames, det.skeleton.num_keypoints
    smooth = check_smooth_window(smooth)
    sm = CentredMovingAverage(smooth if smooth > 1 else 1, T)
    waiting: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # raw keypoints and confidences of frames in the smoother
    missing = np.full((K, 2), np.nan, np.float32)

    def done(items):
        for t, kp, img in items:
            raw, conf = waiting.pop(t, (None, None))
            yield FramePrediction(t, round(reader.time(t), 6), None if img is None else kp, raw, conf, img)

    batch: list[tuple[int, np.ndarray]] = []
    expected = 0

    def run_batch():
        nonlocal expected
        kps, cs = det.predict_with_confidence([img for _, img in batch], batch_size=len(batch))
        for (t, img), kp, c in zip(batch, kps, cs):
            if t < expected:  # a damaged stream can repeat a timestamp or step back: that frame is written already
                warnings.warn(f"{reader.path}: frame {t} decoded again out of order (damaged data); the repeat is dropped", VideoFrameWarning)
                continue
            for u in range(expected, t):  # frames the decoder skipped
                yield from done(sm.push(u, missing, None))
            waiting[t] = (kp, c)
            yield from done(sm.push(t, kp, img))
            expected = t + 1
        batch.clear()

    for t, img in reader.frames():
        batch.append((t, img))
        if len(batch) >= batch_size:
            yield from run_batch()
    if batch:
        yield from run_batch()
    for u in range(expected, T):
        yield from done(sm.push(u, missing, None))
    yield from done(sm.flush())


def keypoint_record(names: Sequence[str], points: np.ndarray, digits: int | None = 3) -> dict:
    """``{name: [x, y]}`` for JSON (NaN as null, rounded to ``digits``); images and videos write it alike."""
    return {n: [_json_float(x, digits), _json_float(y, digits)] for n, (x, y) in zip(names, points)}


def confidence_record(names: Sequence[str], confidence: np.ndarray) -> dict:
    """``{name: confidence}`` for JSON, 4 decimals."""
    return {n: _json_float(c, 4) for n, c in zip(names, confidence)}


class JsonWriter:
    """A video's predictions as one JSON object, ``header`` fields then ``"frames": [...]``, one record per
    frame, streamed: every piece is written by :func:`json.dumps` (no NaN: they are null)."""

    def __init__(self, path: Path, header: dict, *, smoothed: bool):
        self.f = open(path, "w", encoding="utf-8")
        self.names, self.smoothed, self.n = header["keypoint_names"], smoothed, 0
        self.f.write("{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)},\n" for k, v in header.items()) + ' "frames": [\n')

    def write(self, fp: FramePrediction) -> None:
        rec: dict = {"frame": fp.frame, "time": fp.time}
        if fp.points is None:
            rec.update(skipped=True, keypoints=None)
        else:
            rec["keypoints"] = keypoint_record(self.names, fp.points)
            if self.smoothed:
                rec["keypoints_raw"] = keypoint_record(self.names, fp.raw)
            rec["confidence"] = confidence_record(self.names, fp.confidence)
        self.f.write(("" if self.n == 0 else ",\n") + json.dumps(rec, allow_nan=False))
        self.n += 1

    def close(self) -> None:
        if not self.f.closed:
            self.f.write("\n ]\n}\n")
            self.f.close()


class CsvWriter:
    """``frame, time, <kp>_x, <kp>_y, …, <kp>_conf, …`` per frame (empty cells for a skipped frame)."""

    def __init__(self, path: Path, names: Sequence[str]):
        import csv

        self.f = open(path, "w", encoding="utf-8", newline="")
        self.rows = csv.writer(self.f, lineterminator="\n")
        self.rows.writerow(["frame", "time"] + [f"{n}_{c}" for n in names for c in ("x", "y")] + [f"{n}_conf" for n in names])
        self.k = len(names)

    def write(self, fp: FramePrediction) -> None:
        if fp.points is None:
            cells = [""] * (3 * self.k)
        else:
            cells = [f"{v:.3f}" if np.isfinite(v) else "" for v in fp.points.reshape(-1)]
            cells += [f"{c:.4f}" if np.isfinite(c) else "" for c in fp.confidence]
        self.rows.writerow([str(fp.frame), f"{fp.time:.6f}"] + cells)

    def close(self) -> None:
        self.f.close()


class OverlayWriter:
    """Each predicted frame with its skeleton drawn (upscaled ``scale`` times) into a video; skipped frames are left out."""

    def __init__(self, video, skeleton, scale: int):
        self.video, self.skeleton, self.scale = video, skeleton, scale

    def write(self, fp: FramePrediction) -> None:
        from .viz import draw_keypoints

        if fp.points is not None:
            self.video.write(draw_keypoints(fp.image, fp.points, self.skeleton, scale=self.scale, radius=2, width=2, confidence=fp.confidence))

    def close(self) -> None:  # the video file itself is closed (moved into place) by its own context
        pass


def predict_files(
    checkpoint,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    smooth: int = 0,
    device: str | None = None,
    overlay: bool = True,
    progress: bool = False,
    flip_test: bool | None = None,
) -> dict:
    """Images, folders of images and video files → the outputs of :func:`predict_paths` and :func:`predict_video`.

    ``flip_test`` (when a checkpoint is given) overrides the run's setting: see :class:`~keypointgan.KeypointDetector`.

    Returns ``{"images": count, "videos": [predict_video results]}``.
    """
    from .video import is_video_file, probe

    out = Path(out)
    check_output_folder(out)
    paths = [Path(p) for p in inputs]
    videos = [p for p in paths if p.is_file() and is_video_file(p)]
    images = [p for p in paths if not (p.is_file() and is_video_file(p))]
    stems = [v.stem for v in videos]
    for v in videos:
        if stems.count(v.stem) > 1:
            raise InputError(f"two input videos share the name {v.stem!r}; their outputs would overwrite each other", v)
    files = collect_images(images) if images else []
    image_stems = image_output_stems(files)
    for v in videos:
        if v.stem in image_stems:
            raise InputError(f"an input image and this video share the name {v.stem!r}; their outputs would overwrite each other", v)
    plan = [(f, image_outputs(s, out, overlay)) for f, s in zip(files, image_stems)]
    plan += [(v, video_outputs(v.stem, out, overlay)) for v in videos]
    check_outputs(plan, files + videos)
    budget = max_image_pixels()
    for v in videos:  # readable, and frames within the pixel budget, before anything is written
        info = probe(v)
        if info.width * info.height > budget:
            raise InputError(f"video frames are {info.width}×{info.height} pixels, over the limit of {budget:,} "
                             "(raise it: --max-image-pixels or $KEYPOINTGAN_MAX_IMAGE_PIXELS)", v)
    det = _detector(checkpoint, device, flip_test)
    results = _predict_images(det, files, progress)
    created = not out.exists()
    try:
        _write_image_outputs(det, files, image_stems, results, out, overlay)
        res = [predict_video(det, v, out, smooth=smooth, overlay=overlay, progress=progress) for v in videos]
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # a failure leaves no empty output folder behind
            out.rmdir()
        raise
    return {"images": len(files), "videos": res}
