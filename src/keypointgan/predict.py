"""Prediction on image files and folders: JSON per image, overlay PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .errors import InputError
from .io import IMAGE_SUFFIXES, atomic_write_text, read_image, write_image

__all__ = ["predict_paths", "collect_images"]


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in named folders."""
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError("folder holds no images (.png/.jpg/.bmp/.webp)", p)
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("input not found", p)
    return files


def predict_paths(checkpoint, inputs: Sequence[str | Path], out: str | Path, *, device: str | None = None, overlay: bool = True, progress: bool = False) -> int:
    """Predict every image; write ``OUT/<name>.json`` (and ``OUT/<name>_overlay.png``). Returns the count."""
    from tqdm.auto import tqdm

    from .detector import KeypointDetector
    from .viz import draw_keypoints

    det = KeypointDetector.from_checkpoint(checkpoint, device=device)
    files = collect_images(inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from collections import Counter

    counts = Counter(f.stem for f in files)
    used: set[str] = set()
    for f in tqdm(files, desc="predict", disable=not progress):
        img = read_image(f)
        kp = det.predict(img)
        # output name: the file's stem, made unique when several inputs share it
        stem = f.stem if counts[f.stem] == 1 else f"{f.parent.name}_{f.name.replace('.', '_')}"
        base, k = stem, 1
        while stem in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        rec = {
            "image": str(f),
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "units": "pixel (x, y); the centre of pixel column j is at x = j",
            "keypoints": {n: [float(x), float(y)] for n, (x, y) in zip(det.skeleton.keypoints, kp)},
        }
        atomic_write_text(out / f"{stem}.json", json.dumps(rec, indent=2))
        if overlay:
            scale = max(1, 256 // max(img.shape[:2]))
            write_image(out / f"{stem}_overlay.png", draw_keypoints(img, kp, det.skeleton, scale=scale, radius=2, width=2))
    return len(files)
