"""Issue 13: `keypointgan view`, tested in a real headless browser (the system's Chromium via Playwright)."""

import json
import os
import shutil

import numpy as np
import pytest

from keypointgan import InputError, Skeleton
from keypointgan.viz import CONFIDENCE_THRESHOLD

CHROMIUM = os.environ.get("KEYPOINTGAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


class _ScriptedDetector:
    """Known keypoints and confidences per frame (in the order frames are given): what the viewer must show."""

    skeleton = Skeleton(keypoints=["head", "l_hand", "r_hand"], limbs=[("head", "l_hand"), ("head", "r_hand")], symmetric=[("l_hand", "r_hand")])

    def __init__(self):
        self.t = 0

    @staticmethod
    def truth(t):
        pts = np.array([[4.0 + t, 6.0], [5.0, 20.0 + 0.25 * t], [26.0, 28.0 - 0.5 * t]], np.float32)
        conf = np.array([0.97, 0.93, 0.99], np.float32)
        if t == 7:
            conf[:] = [0.1, 0.2, 0.3]
        if t == 13:
            conf[1] = 0.3
        return pts, conf

    def predict_with_confidence(self, images, batch_size=64):
        out = [self.truth(self.t + i) for i in range(len(images))]
        self.t += len(images)
        return np.stack([p for p, _ in out]), np.stack([c for _, c in out])


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    from keypointgan.data.synthetic import _video_rng, render_video
    from keypointgan.predict import predict_video
    from keypointgan.video import write_video

    root = tmp_path_factory.mktemp("view")
    imgs, _ = render_video(_video_rng(5, 0), 20, 32)
    write_video(root / "walk.mp4", imgs, fps=10, quality=1.0)
    predict_video(_ScriptedDetector(), root / "walk.mp4", root / "pred", overlay=False, batch_size=8)
    return root / "pred" / "walk.json"


def test_predictions_are_loaded_with_the_least_confident_frames_first(predictions, tmp_path):
    from keypointgan.viewer import load_predictions

    data, video = load_predictions(predictions.parent)  # the output folder works too
    assert video.name == "walk.mp4" and data["num_frames"] == 20
    assert data["least_confident"][:2] == [7, 13] and len(data["least_confident"]) == 20
    with pytest.raises(InputError, match="video file not found"):
        load_predictions(predictions, tmp_path / "nope.mp4")
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="x.json: not the predictions of a video"):
        load_predictions(tmp_path / "x.json")


def test_viewer_in_a_headless_browser(predictions):
    """Load the page, move the scrubber, read the drawn keypoints back; jump to the least-confident frame."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set KEYPOINTGAN_CHROMIUM)")
    from keypointgan.viewer import create_app, start_in_thread

    server, url = start_in_thread(create_app(predictions))
    assert url.startswith("http://127.0.0.1:")
    try:
        with sync_api.sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            except Exception as exc:  # noqa: BLE001 - any failure to start the browser
                pytest.skip(f"Chromium at {CHROMIUM} cannot start here: {str(exc).splitlines()[0][:200]}")
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("window.kpgViewer && window.kpgViewer.ready", timeout=20000)
            scale = page.evaluate("window.kpgViewer.scale")
            assert scale == 16  # 32-px frames fill 512 canvas pixels

            def drawn(t):
                page.wait_for_function(f"window.kpgViewer.frame === {t}", timeout=10000)
                return page.evaluate("window.kpgViewer.drawn")

            def check(t, d):
                pts, conf = _ScriptedDetector.truth(t)
                assert [k["name"] for k in d] == ["head", "l_hand", "r_hand"]
                np.testing.assert_allclose([[k["x"], k["y"]] for k in d], (pts + 0.5) * scale, atol=0.01)
                np.testing.assert_allclose([k["confidence"] for k in d], conf, atol=1e-3)
                assert [k["faint"] for k in d] == list(conf < CONFIDENCE_THRESHOLD)

            check(0, drawn(0))
            page.locator("#scrubber").fill("9")
            d = drawn(9)
            check(9, d)
            # the canvas holds the head's dot (green, opaque) where the page says it drew it
            px = page.evaluate(f"Array.from(document.getElementById('frame').getContext('2d').getImageData({d[0]['x']:.0f}, {d[0]['y']:.0f}, 1, 1).data)")
            assert px[:3] == [60, 220, 60]
            assert page.locator("#frame-label").inner_text() == "frame 9 / 19"
            assert page.locator("#keypoints tr[data-keypoint=r_hand] td.conf").inner_text() == "0.990"
            # keyboard steps too
            page.keyboard.press("ArrowRight")
            check(10, drawn(10))
            # the least-confident frames, lowest first; clicking jumps there and the low points are drawn faint
            buttons = page.locator("#least-confident button")
            assert buttons.count() == 10 and buttons.nth(0).get_attribute("data-frame") == "7"
            buttons.nth(0).click()
            d = drawn(7)
            check(7, d)
            assert page.locator("#keypoints tr.low").count() == 3
            px = page.evaluate(f"Array.from(document.getElementById('frame').getContext('2d').getImageData({d[0]['x']:.0f}, {d[0]['y']:.0f}, 1, 1).data)")
            assert px[:3] != [60, 220, 60] and abs(px[1] - 220) > 60  # faint: mixed with the frame
            # the trajectories are drawn: the head's x moves right by 1 px per frame across the plot
            ink = page.evaluate(
                "(() => { const c = document.getElementById('trajectories'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()"
            )
            assert ink > 500
            # the frame image is the video's frame
            assert page.request.get(url + "frame/7").headers["content-type"] == "image/jpeg"
            assert page.request.get(url + "frame/99").status == 404
            assert not errors, errors
            browser.close()
    finally:
        server.should_exit = True
