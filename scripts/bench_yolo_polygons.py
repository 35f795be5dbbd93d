"""Time per frame of the YOLO outline join (annotation.datasets.instance_polygon) on masks of
many pieces, and of a whole YOLO export of such frames.

    python scripts/bench_yolo_polygons.py            # 100, 1,000, 10,000 pieces and noisy masks
    python scripts/bench_yolo_polygons.py --before   # also the join this replaced (up to 300 pieces: it is cubic)

Each mask is joined into one outline, filled again with cv2.fillPoly (as YOLO readers do) and
compared with the mask: "IoU" is that of the refilled outline (bridges add their own pixels,
so masks of many far-apart specks score low; nothing of the mask is ever lost: "lost" counts
mask pixels the refill misses).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.datasets import Annotations, export_yolo_dataset, instance_polygon  # noqa: E402


def squares(count: int, size: tuple[int, int] = (720, 1280)) -> np.ndarray:
    """``count`` separate 3x3 squares on a grid spread over an HxW frame."""
    height, width = size
    columns = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / columns))
    pitch = min(height // rows, width // columns)
    if pitch < 4:
        raise ValueError(f"{count} squares do not fit a {width}x{height} frame")
    mask = np.zeros(size, bool)
    for index in range(count):
        y, x = divmod(index, columns)
        mask[y * pitch : y * pitch + 3, x * pitch : x * pitch + 3] = True
    return mask


def noisy(size: tuple[int, int], flipped: float, seed: int = 0) -> np.ndarray:
    """A large ellipse with a share ``flipped`` of all pixels flipped at random: specks outside,
    holes inside, as a thresholded noisy prediction gives."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    mask = ((xx - width / 2) / (width / 3)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2 <= 1
    return mask ^ (np.random.default_rng(seed).random(size) < flipped)


def join_before(mask: np.ndarray) -> np.ndarray | None:
    """The join this replaced (issue 18): the nearest pair among all points of the growing
    outline and every remaining part, at each step."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parts = sorted((c.reshape(-1, 2) for c in contours), key=len, reverse=True)
    if not parts or sum(len(p) for p in parts) < 3:
        return None
    outline, rest = parts[0], parts[1:]
    while rest:
        gaps = [np.linalg.norm(outline[:, None] - part[None], axis=2) for part in rest]
        k = min(range(len(rest)), key=lambda n: gaps[n].min())
        i, j = np.unravel_index(gaps[k].argmin(), gaps[k].shape)
        loop = np.roll(rest.pop(k), -j, axis=0)
        outline = np.concatenate([outline[: i + 1], loop, loop[:1], outline[i:]])
    return outline


def timed(
    join: Callable[[np.ndarray], np.ndarray | None], mask: np.ndarray, repeats: int
) -> tuple[float, float, np.ndarray]:
    """(median wall seconds of ``repeats`` runs, median CPU seconds of this process (less
    disturbed by other work on a shared machine), the polygon)."""
    wall, cpu, polygon = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        polygon = join(mask)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), polygon


def refill_scores(mask: np.ndarray, polygon: np.ndarray) -> tuple[float, int]:
    """(IoU of the refilled polygon with the mask, mask pixels it misses)."""
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(canvas, [polygon.astype(np.int32)], 1)
    filled = canvas.astype(bool)
    return float((filled & mask).sum() / (filled | mask).sum()), int((mask & ~filled).sum())


def export_seconds_per_frame(mask: np.ndarray, frames: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds per frame of a whole YOLO export (JPEG frames, label files, zip) of
    ``frames`` frames holding ``mask``."""
    height, width = mask.shape
    pictures = [np.zeros((height, width, 3), np.uint8)] * frames
    data = Annotations("bench.mp4", pictures, {f: {1: mask} for f in range(frames)}, {1: "object"}, ("object",),
                       (height, width), 25.0)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        start, start_cpu = time.perf_counter(), time.process_time()
        export_yolo_dataset(data, Path(out))
        return (time.perf_counter() - start) / frames, (time.process_time() - start_cpu) / frames


def disc(size: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def ordinary(size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Masks a person annotates: one blob, a ring, a ring with an island, two blobs, a blob with
    holes, and pieces cut by the frame's edges, scaled to an HxW frame."""
    height, width = size
    s = min(height, width) / 120

    def d(cx: float, cy: float, r: float) -> np.ndarray:
        return disc(size, width / 2 + cx * s, height / 2 + cy * s, r * s)

    return [
        ("disc", d(0, 0, 30)),
        ("ring", d(0, 0, 40) & ~d(0, 0, 20)),
        ("ring with an island", (d(0, 0, 40) & ~d(0, 0, 20)) | d(0, 0, 8)),
        ("two discs", d(-40, -20, 18) | d(40, 20, 20)),
        ("disc with three holes", d(0, 0, 55) & ~d(-20, -15, 8) & ~d(20, -15, 8) & ~d(0, 25, 10)),
        ("pieces cut by the edges", disc(size, 0, height / 2, 40 * s) | disc(size, width - 1, height / 2, 40 * s)
         | d(0, 0, 25)),
    ]  # fmt: skip


def round_trip_iou(mask: np.ndarray) -> float:
    """IoU with ``mask`` of the polygon read back from the exported label file (its normalised
    numbers as written, scaled back and filled with cv2.fillPoly, as YOLO readers do)."""
    height, width = mask.shape
    data = Annotations("rt.mp4", [np.zeros((height, width, 3), np.uint8)], {0: {1: mask}}, {1: "object"},
                       ("object",), (height, width), 25.0)  # fmt: skip
    with tempfile.TemporaryDirectory() as out, zipfile.ZipFile(export_yolo_dataset(data, Path(out))) as archive:
        (line,) = archive.read("labels/train/rt_00000.txt").decode().splitlines()
    xy = np.array(line.split()[1:], np.float64).reshape(-1, 2) * (width, height)
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(canvas, [np.rint(xy).astype(np.int32)], 1)
    filled = canvas.astype(bool)
    return float((filled & mask).sum() / (filled | mask).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", action="store_true", help="also time the join this replaced (slow)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = [
        ("100 squares, 1280x720", squares(100)),
        ("300 squares, 1280x720", squares(300)),
        ("1,000 squares, 1280x720", squares(1_000)),
        ("10,000 squares, 1280x720", squares(10_000)),
        ("noisy ellipse 1%, 512x512", noisy((512, 512), 0.01)),
        ("noisy ellipse 5%, 512x512", noisy((512, 512), 0.05)),
        ("noisy ellipse 5%, 1280x720", noisy((720, 1280), 0.05)),
        ("noisy ellipse 20%, 1280x720", noisy((720, 1280), 0.20)),
    ]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"CPU: {cpu}; load average {load}; median of {args.repeats} runs per mask")
    print(f"{'mask':30} {'pieces':>7} {'holes':>6} {'corners':>8} {'join s/frame':>13} {'(CPU s)':>8}"
          f" {'export s/frame':>15} {'(CPU s)':>8} {'IoU':>6} {'lost':>5}"
          + (f" {'before s':>9}" if args.before else ""))  # fmt: skip
    for name, mask in cases:
        contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        holes = int((hierarchy[0][:, 3] >= 0).sum()) if hierarchy is not None else 0
        corners = sum(len(c) for c in contours)
        seconds, cpu_seconds, polygon = timed(instance_polygon, mask, args.repeats)
        iou, lost = refill_scores(mask, polygon)
        export_wall, export_cpu = export_seconds_per_frame(mask)
        line = (f"{name:30} {len(contours) - holes:7d} {holes:6d} {corners:8d} {seconds:13.4f} {cpu_seconds:8.4f}"
                f" {export_wall:15.4f} {export_cpu:8.4f} {iou:6.3f} {lost:5d}")  # fmt: skip
        if args.before:
            line += f" {timed(join_before, mask, 1)[0]:9.2f}" if len(contours) <= 300 else f" {'-':>9}"
        print(line, flush=True)
    print("Ordinary masks, read back from the exported label file: IoU with the mask")
    for size in ((240, 320), (720, 1280)):
        for name, mask in ordinary(size):
            print(f"  {name:28} {size[1]}x{size[0]}: {round_trip_iou(mask):.4f}", flush=True)


if __name__ == "__main__":
    main()
