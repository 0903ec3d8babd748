"""``keypointgan view``: a local web page to inspect a video's predictions (``keypointgan predict`` output).

The page (``index.html`` next to this file, plain JavaScript, nothing fetched from elsewhere) shows
the frame with the skeleton drawn (keypoints below :data:`~keypointgan.viz.CONFIDENCE_THRESHOLD`
faint), a frame scrubber, each keypoint's position and confidence, the keypoints' trajectories over
time, and the least-confident frames to jump to. It is served on 127.0.0.1 by Starlette under
uvicorn:

* ``GET /``: the page;
* ``GET /api/predictions``: the predictions (the JSON ``keypointgan predict`` wrote for the video, with
  ``skeleton``, ``confidence_threshold`` and ``least_confident``, the frames by ascending mean confidence);
* ``GET /frame/{t}``: frame ``t`` of the video as JPEG.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["load_predictions", "create_app", "serve", "start_in_thread"]


def load_predictions(path: str | Path, video: str | Path | None = None) -> tuple[dict, Path]:
    """The predictions of one video and the video file.

    Args:
        path: ``OUT/<name>.json`` written by ``keypointgan predict`` for a video, or the ``OUT`` folder
            when it holds the predictions of exactly one video.
        video: the video file (default: the one the predictions name).

    Returns:
        the predictions (header fields and ``frames``, a list of ``{"frame", "time", "keypoints",
        "confidence"}``) with ``least_confident`` added, and the video's path.
    """
    path = Path(path)
    if path.is_dir():
        found = []
        for f in sorted(path.glob("*.json")):
            try:
                head = f.read_text(encoding="utf-8")[:4096]
            except OSError:
                continue
            if '"frames"' in head and '"video"' in head:
                found.append(f)
        if len(found) != 1:
            what = "no video predictions" if not found else f"{len(found)} videos' predictions ({', '.join(f.name for f in found)}); name one"
            raise InputError(f"the folder holds {what}", path)
        path = found[0]
    if not path.is_file():
        raise InputError("predictions file not found", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a JSON file ({exc.__class__.__name__}: {exc})", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or "keypoint_names" not in data:
        raise InputError("not the predictions of a video (keypointgan predict writes them: 'keypoint_names' and 'frames')", path)
    video = Path(video) if video is not None else Path(data.get("video", ""))
    if not video.is_file():
        raise InputError("video file not found (give it with --video)", video)
    names = data["keypoint_names"]
    scores = []
    for rec in data["frames"]:
        conf = rec.get("confidence") or {}
        vals = [conf.get(n) for n in names]
        if rec.get("keypoints") and all(v is not None for v in vals):
            scores.append((float(np.mean(vals)), int(rec["frame"])))
    data["least_confident"] = [t for _, t in sorted(scores)[:20]]
    from ..viz import CONFIDENCE_THRESHOLD

    data["confidence_threshold"] = CONFIDENCE_THRESHOLD
    return data, video


def create_app(predictions: str | Path, video: str | Path | None = None):
    """The Starlette application serving the viewer for ``predictions`` (see :func:`load_predictions`)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from ..video import VideoReader

    data, video = load_predictions(predictions, video)
    page = (Path(__file__).parent / "index.html").read_text(encoding="utf-8")
    reader = VideoReader(video)
    lock = threading.Lock()  # one decoder, requests come from a thread pool

    async def index(request):
        return HTMLResponse(page)

    async def api_predictions(request):
        return JSONResponse(data)

    def frame(request):
        t = request.path_params["t"]
        if not 0 <= t < reader.num_frames:
            return Response(f"frame {t} out of range (0..{reader.num_frames - 1})", status_code=404)
        from PIL import Image

        with lock:
            img = reader.read(t)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=92)
        return Response(buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    routes = [Route("/", index), Route("/api/predictions", api_predictions), Route("/frame/{t:int}", frame)]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            reader.close()

    return Starlette(routes=routes, lifespan=lifespan)


def _config(app, host: str, port: int):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)


def serve(app, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``app`` until interrupted (Ctrl-C)."""
    import uvicorn

    uvicorn.Server(_config(app, host, port)).run()


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0):
    """Serve ``app`` from a background thread; returns ``(server, url)``. Stop with ``server.should_exit = True``."""
    import time

    import uvicorn

    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > timeout:
            raise RuntimeError("the viewer's server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://{host}:{port}/"
