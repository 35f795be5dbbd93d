"""The frame rate Chromium reaches with the page's player (ui/player.py) on this machine.

    python scripts/bench_player_browser.py              # 854x480, 30 fps, 5 s with sound, 3 objects
    python scripts/bench_player_browser.py --size 320x240 --seconds 3

The real app (reference weights, image size 512), a real ffmpeg clip with a sine tone, three
objects with a mask on every frame (moving ellipses, imported as a PNG mask zip through the
page), and headless Debian Chromium at 1400x1000 pressing Play: once with nothing drawn yet on
the server, once again (every picture then comes from the server's cache). Prints, per run,
how many of the frames that passed were shown in time and the pictures per second shown.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_player import cpu_name  # noqa: E402
from tests import media_factory  # noqa: E402
from tests.app_harness import start_app  # noqa: E402
from tests.reference import write_reference_checkpoint  # noqa: E402
from tests.test_app_e2e import launch_chromium, open_page, upload, wait_status  # noqa: E402


def mask_zip(path: Path, size: tuple[int, int], frames: int, objects: int) -> Path:
    """One indexed PNG per frame (pixel = object id): ellipses that move and turn."""
    height, width = size
    with zipfile.ZipFile(path, "w") as archive:
        for f in range(frames):
            labels = np.zeros(size, np.uint8)
            for obj in range(1, objects + 1):
                centre = (int(width * (0.2 + 0.25 * obj) + 3 * f) % width, height // 2)
                cv2.ellipse(labels, centre, (width // 8, height // 5), 10 * f, 0, 360, obj, -1)
            buffer = io.BytesIO()
            Image.fromarray(labels, mode="L").save(buffer, format="PNG")
            archive.writestr(f"{f:05d}.png", buffer.getvalue())
    return path


PLAY_TO_END = """() => new Promise((resolve) => {
  document.querySelector('#play').click();
  const t0 = performance.now();
  const wait = () => (!window.sam2Player.playing() || performance.now() - t0 > 60000)
    ? resolve(window.sam2Player.stats()) : setTimeout(wait, 50);
  setTimeout(wait, 200);
})"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--objects", type=int, default=3,
                        help="objects with a mask on every frame (0: none, no import)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-player-"))
    checkpoint = write_reference_checkpoint("sam2.1_hiera_t", work / "reference-tiny.pt")
    clip = media_factory.testsrc(work / "clip.mp4", size=(width, height), fps=args.fps, seconds=args.seconds,
                                 audio=True)  # fmt: skip
    frames = round(args.fps * args.seconds)
    masks = mask_zip(work / "masks.zip", (height, width), frames, args.objects) if args.objects else None
    app = start_app(checkpoint, work, "--max-frames", str(max(frames, 300)))
    try:
        for browser in launch_chromium():
            page = open_page(browser, app, [])
            upload(page, clip)
            wait_status(page, "Loaded", 900_000)
            if args.objects:  # SAM 2 takes each mask as a prompt: a frame's encoding each
                page.locator("#import-file input[type=file]").set_input_files(str(masks))
                page.wait_for_function("() => /Imported|Problem/.test(document.querySelector('#status')?.innerText"
                                       " || '')", timeout=3_600_000)  # fmt: skip
            page.locator("#viewer").scroll_into_view_if_needed()
            print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            for run in ("first play (nothing drawn yet)", "second play (pictures cached)"):
                page.evaluate("() => window.sam2Player.step(-100000)")
                page.wait_for_timeout(1500)
                stats = page.evaluate(PLAY_TO_END)
                passed = stats["passed"] + 1
                print(f"{run}: {stats['shown']} of {passed} frames shown in time, {stats['fps']:.1f} pictures/s "
                      f"over {stats['seconds']:.1f} s (clock: {stats['clock']}, pictures {stats['width']} px wide, "
                      f"video {stats['videoFps']:g} fps)")
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
