"""Time of merging many videos' exports into one dataset (annotation.merge.merge_datasets).

    python scripts/bench_merge.py                       # 20 videos of 100 frames, 640x360, 3 objects each
    python scripts/bench_merge.py --videos 50 --frames 300 --size 1280x720

Each video's ``<video>_coco.zip`` (COCO with frames, as ``--export coco_images`` writes it) is
made first from moving discs (not timed), then merged into COCO, YOLO and YouTube-VIS; the
figures are seconds in all and per frame, and the merged dataset's size on disk.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.datasets import Annotations, export_coco  # noqa: E402
from annotation.merge import merge_datasets  # noqa: E402


def video_export(folder: Path, number: int, frames: int, size: tuple[int, int]) -> Path:
    """One video's COCO zip with 3 moving discs of 3 of 5 labels."""
    height, width = size
    rng = np.random.default_rng(number)
    yy, xx = np.mgrid[0:height, 0:width]
    pictures = [rng.integers(0, 255, (height, width, 3), np.uint8)] * frames  # one picture: encoding is not timed
    labels = ("car", "person", "dog", "bike", "cat")
    objects = {obj: labels[(number + obj) % len(labels)] for obj in (1, 2, 3)}
    masks = {}
    for frame in range(frames):
        masks[frame] = {}
        for obj in objects:
            cx, cy = (width * (0.2 + 0.25 * obj) + 3 * frame) % width, height * 0.5
            masks[frame][obj] = (xx - cx) ** 2 + (yy - cy) ** 2 <= (height * 0.12) ** 2
    data = Annotations(f"video{number:03d}.mp4", pictures, masks, objects, tuple(dict.fromkeys(objects.values())),
                       size, 10.0)  # fmt: skip
    return export_coco(data, folder, with_images=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def disk_bytes(folder: Path) -> int:
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            if stat.st_ino not in seen:  # hard links (the frames shared by the formats) count once
                seen.add(stat.st_ino)
                total += stat.st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="640x360", help="WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        outputs = Path(tmp) / "out"
        outputs.mkdir()
        for number in range(args.videos):
            video_export(outputs, number, args.frames, (height, width))
        started = time.perf_counter()
        result = merge_datasets([outputs], Path(tmp) / "merged", val_videos=0.2, val_every=10)
        seconds = time.perf_counter() - started
        print(f"{cpu_name()}, {os.cpu_count()} CPUs")
        print(f"{args.videos} videos x {args.frames} frames at {width}x{height}, {result.annotations} masks: "
              f"{seconds:.1f} s ({1000 * seconds / result.frames:.1f} ms a frame), COCO + YOLO + YouTube-VIS, "
              f"{disk_bytes(Path(tmp) / 'merged') / 2**20:.0f} MB on disk")  # fmt: skip


if __name__ == "__main__":
    main()
