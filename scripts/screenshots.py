"""The README's pictures of the page (docs/screenshots/): the real app in Debian's Chromium at
1280x720, 1920x1080 and a 390x844 phone, after uploading a test video, clicking two objects and
starting a track run (the picture is taken while its progress line runs; the run is then
cancelled). Prints where each part of the workspace is, and whether it is all on screen.

    python scripts/screenshots.py --checkpoint path/to/sam2.1_hiera_tiny.pt [--out docs/screenshots]

Without internet, the reference weights of the tests make the masks (``python -c "from
tests.reference import write_reference_checkpoint as w; w('sam2.1_hiera_t', '/tmp/ref.pt')"``).
Each picture is stored as a palette PNG (256 colours) to keep it small.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import playwright.sync_api as playwright_api  # noqa: E402

from tests import media_factory  # noqa: E402
from tests.app_harness import start_app  # noqa: E402
from tests.test_app_e2e import (  # noqa: E402
    BROWSER_ARGS,
    CHROMIUM,
    WORKSPACE,
    act,
    click_image,
    loaded_geometry,
    off_screen,
    upload,
    wait_status,
)  # fmt: skip

SCREENS = {"1280x720": (1280, 720, False), "1920x1080": (1920, 1080, False), "phone-390x844": (390, 844, True)}
CLICKS = ((600, 300), (200, 150))  # on the 854x480 test pattern: the circle's right half, a colour bar
TIMEOUT_MS = 600_000  # a busy 2-core machine takes many seconds a frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        video = media_factory.testsrc(work / "walk.mp4", size=(854, 480), fps=8, seconds=4.0, audio=True)
        app = start(args.checkpoint, work)
        try:
            with playwright_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
                for name, (width, height, whole) in SCREENS.items():
                    shoot(browser, app.url, video, args.out / f"{name}.png", (width, height), whole)
                browser.close()
        finally:
            app.stop()


def start(checkpoint: Path, work: Path, tries: int = 3):
    """The app, started again if it stops at once: on a very busy machine Gradio's own check that
    it answers on localhost can time out, and it then exits."""
    for attempt in range(tries):
        app = start_app(checkpoint, work, "--max-seconds", "10", timeout_s=600)
        time.sleep(5)
        if app.process.poll() is None:
            return app
        print(f"the app stopped at once (try {attempt + 1}): {app.log_text()[-300:]}", file=sys.stderr)
    raise RuntimeError("the app did not stay up")


def shoot(browser, url: str, video: Path, path: Path, size: tuple[int, int], whole: bool) -> None:
    """One picture: upload, two objects with a click each, a track run started (then cancelled)."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    upload(page, video)
    wait_status(page, "Loaded", TIMEOUT_MS)
    act(page, lambda: click_image(page, "#viewer", *CLICKS[0]))
    act(page, lambda: page.locator("#add-object").click())
    act(page, lambda: click_image(page, "#viewer", *CLICKS[1]))
    page.locator("#track-forward").click()
    page.wait_for_function(
        "() => /Tracking forward: [1-9]/.test(document.querySelector('#progress')?.innerText || '')",
        timeout=TIMEOUT_MS,
    )
    loaded_geometry(page, "#timeline")
    page.evaluate("window.scrollTo(0, 0)")
    where = page.evaluate(
        "(ids) => Object.fromEntries(ids.map(i => { const r = document.getElementById(i).getBoundingClientRect();"
        " return [i, [r.left, r.top, r.right, r.bottom].map(Math.round)]; }))",
        list(WORKSPACE),
    )
    shown = off_screen(page)
    picture = Image.open(io.BytesIO(page.screenshot(full_page=whole))).convert("RGB")
    picture.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    height = page.evaluate("document.documentElement.scrollHeight")
    print(json.dumps({"picture": str(path), "bytes": path.stat().st_size, "page_height": height,
                      "off_screen": shown, "where": where}))  # fmt: skip
    page.locator("#cancel").click()
    page.wait_for_function(
        "() => /Cancelled|Done\\.|Stopped/.test(document.querySelector('#progress')?.innerText || '')",
        timeout=TIMEOUT_MS,
    )
    context.close()


if __name__ == "__main__":
    main()
