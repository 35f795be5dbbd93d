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


def export_seconds_per_frame(mask: np.ndarray, frames: int = 3) -> float:
    """A whole YOLO export (JPEG frames, label files, zip) of ``frames`` frames holding ``mask``."""
    height, width = mask.shape
    pictures = [np.zeros((height, width, 3), np.uint8)] * frames
    data = Annotations("bench.mp4", pictures, {f: {1: mask} for f in range(frames)}, {1: "object"}, ("object",),
                       (height, width), 25.0)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        export_yolo_dataset(data, Path(out))
        return (time.perf_counter() - start) / frames


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
    print(f"CPU: {cpu}; median of {args.repeats} runs per mask")
    print(f"{'mask':30} {'pieces':>7} {'holes':>6} {'corners':>8} {'join s/frame':>13} {'(CPU s)':>8}"
          f" {'export s/frame':>15} {'IoU':>6} {'lost':>5}" + (f" {'before s':>9}" if args.before else ""))  # fmt: skip
    for name, mask in cases:
        contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        holes = int((hierarchy[0][:, 3] >= 0).sum()) if hierarchy is not None else 0
        corners = sum(len(c) for c in contours)
        seconds, cpu_seconds, polygon = timed(instance_polygon, mask, args.repeats)
        iou, lost = refill_scores(mask, polygon)
        line = (f"{name:30} {len(contours) - holes:7d} {holes:6d} {corners:8d} {seconds:13.4f} {cpu_seconds:8.4f}"
                f" {export_seconds_per_frame(mask):15.4f} {iou:6.3f} {lost:5d}")  # fmt: skip
        if args.before:
            line += f" {timed(join_before, mask, 1)[0]:9.2f}" if len(contours) <= 300 else f" {'-':>9}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
