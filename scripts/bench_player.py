"""How long the server takes to draw one player picture (ui/player.py, annotation/preview.py).

    python scripts/bench_player.py                   # 854x480, 3 objects, 640 px wide pictures
    python scripts/bench_player.py --width 854 --frames 60

A real ffmpeg test clip, its frames kept as the app keeps them (a sam2 FrameStore, PNG by
default), three objects with a mask on every frame (ellipses that move), then each frame drawn
as the player asks for it: the viewer's picture, scaled to the width and encoded as JPEG.
Prints the time per picture (first draw, no cache) and per cached answer, and the JPEG size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.document import ObjectInfo, PackedMask, Snapshot  # noqa: E402
from annotation.preview import PreviewCache  # noqa: E402
from annotation.work import LoadedVideo, Work  # noqa: E402
from sam2.session import FrameStore  # noqa: E402
from sam2.video_io import MediaLimits, decode  # noqa: E402
from tests import media_factory  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def moving_masks(size: tuple[int, int], frames: int, objects: int) -> dict[tuple[int, int], PackedMask]:
    height, width = size
    masks = {}
    for f in range(frames):
        for obj in range(1, objects + 1):
            mask = np.zeros(size, np.uint8)
            centre = (int(width * (0.2 + 0.25 * obj) + 3 * f) % width, int(height * 0.5))
            cv2.ellipse(mask, centre, (width // 8, height // 5), 10 * f, 0, 360, 1, -1)
            masks[(f, obj)] = PackedMask.pack(mask.astype(bool))
    return masks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="854x480", help="video size WxH")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--width", type=int, default=640, help="width the player asks for")
    parser.add_argument("--storage", default="png", choices=["png", "jpeg", "raw"], help="how frames are kept")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        clip = media_factory.testsrc(Path(folder) / "clip.mp4", size=(width, height), fps=30,
                                     seconds=args.frames / 30)  # fmt: skip
        decoded = decode(clip, MediaLimits(max_seconds=600, max_frames=10_000, max_side=4096))
        frames = FrameStore(decoded.frames, encoding=None if args.storage == "raw" else args.storage)
        work = Work(folder=Path(folder))
        work.video = LoadedVideo("clip.mp4", decoded, frames, handle=None)
        ids = tuple(range(1, args.objects + 1))
        work.registry = {i: ObjectInfo(i, f"object {i}") for i in ids}
        work.doc = Snapshot(object_ids=ids, masks=moving_masks((height, width), len(frames), args.objects))
        cache = PreviewCache()
        first, cpu, again, sizes = [], [], [], []
        for f in range(len(frames)):
            t0, c0 = time.perf_counter(), time.process_time()
            picture = cache.picture(work, f, args.width)
            first.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            sizes.append(len(picture.jpeg))
            t0 = time.perf_counter()
            cache.picture(work, f, args.width)
            again.append(time.perf_counter() - t0)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other work shares them)")
    print(f"{len(first)} frames of {width}x{height}, {args.objects} objects, frames kept as {args.storage}, "
          f"pictures {picture.width}x{picture.height} JPEG")
    print(f"  drawn (wall clock): median {statistics.median(first) * 1000:.1f} ms, "
          f"90th percentile {sorted(first)[int(0.9 * len(first))] * 1000:.1f} ms per picture "
          f"({1 / statistics.median(first):.0f} pictures/s on one core)")
    print(f"  CPU time of the process: median {statistics.median(cpu) * 1000:.1f} ms per picture "
          "(what a quiet core would take)")
    print(f"  cached: median {statistics.median(again) * 1000:.2f} ms")
    print(f"  JPEG: median {statistics.median(sizes) / 1024:.0f} kB ({statistics.median(sizes) * 30 / 1e6 * 8:.1f} "
          "Mbit/s at 30 fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
