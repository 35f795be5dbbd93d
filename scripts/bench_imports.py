"""Import figures: `python scripts/bench_imports.py`.

Reads, on a 320x240 video of 100 frames, the largest files an import allows (10,000 prompts:
100 objects on 100 frames, as COCO RLE masks, as COCO polygons and as a PNG zip; and 20 PNGs
of 255 objects) and files over each limit, and prints for each the seconds and the peak memory
above the reader's own start (each in a fresh process, so one's peak does not hide another's),
with the outcome and the CPU.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRAMES, H, W = 100, 240, 320

CHILD = """
import json, sys, time
from annotation import imports, labels
def high_water():  # VmHWM (kB): ru_maxrss would start at the parent's peak, kept across exec
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
import pycocotools.mask, yaml  # loaded before the baseline: their code is not the reader's memory
peak = high_water()
started, started_cpu = time.perf_counter(), time.process_time()
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "labels":
        outcome = f"{len(labels.read_label_file(path))} names"
    else:
        got = imports.read_any(path, imports.VideoShape(*map(int, sys.argv[3:6])))
        outcome = f"{len(got.masks) + len(got.boxes)} prompts" + (f"; {got.notes[0]}" if got.notes else "")
except Exception as exc:
    outcome = str(exc)
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
grown = (high_water() - peak) / 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": grown, "outcome": outcome}))
"""


def blobs(frame: int, objects: int = 100) -> np.ndarray:
    """``objects`` objects, each an ellipse of its own (ids 1..), moving with the frame."""
    values = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    for obj in range(1, objects + 1):
        cx, cy = (obj * 37 + 3 * frame) % W, (obj * 23 + 2 * frame) % H
        values[((xx - cx) / 14) ** 2 + ((yy - cy) / 9) ** 2 <= 1] = obj
    return values


def coco_rle(folder: Path, objects: int = 100) -> Path:
    from pycocotools import mask as mask_utils

    images = [{"id": f + 1, "file_name": f"{f:05d}.jpg", "height": H, "width": W} for f in range(FRAMES)]
    annotations = []
    for f in range(FRAMES):
        values = blobs(f, objects)
        for obj in range(1, objects + 1):
            rle = mask_utils.encode(np.asfortranarray((values == obj).astype(np.uint8)))
            annotations.append({"image_id": f + 1, "track_id": obj, "category_id": 1,
                                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}})  # fmt: skip
    path = folder / f"coco_rle_{objects}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}))
    return path


def coco_polygons(folder: Path) -> Path:
    import cv2

    images = [{"id": f + 1, "file_name": f"{f:05d}.jpg", "height": H, "width": W} for f in range(FRAMES)]
    annotations = []
    for f in range(FRAMES):
        values = blobs(f)
        for obj in range(1, 101):
            contours, _ = cv2.findContours((values == obj).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
            annotations.append({"image_id": f + 1, "track_id": obj, "segmentation": polygons})
    path = folder / "coco_polygons.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def png_zip(folder: Path, name: str, frames: int, values_of) -> Path:
    from annotation.datasets import indexed_png

    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in range(frames):
            archive.writestr(f"{f:05d}.png", indexed_png(values_of(f)))
    return path


def all_objects(_: int) -> np.ndarray:
    return np.resize(np.arange(1, 256, dtype=np.uint8).repeat(300), (H, W))


def over_limits(folder: Path) -> list[tuple[str, str, Path]]:
    one = json.dumps({"image_id": 1, "track_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]}, separators=(",", ":"))
    image = json.dumps({"id": 1, "file_name": "00000.jpg", "height": H, "width": W})
    head = f'{{"images": [{image}], "annotations": '
    made = []
    for count in (20_000, 10**6):
        path = folder / f"coco_{count}_annotations.json"
        path.write_text(head + "[" + ",".join([one] * count) + "]}")
        made.append((f"COCO, {count:,} annotations of 1 object on 1 frame", "import", path))
    more = coco_rle(folder, 101)
    made.append(("COCO RLE, 10,100 prompts (100 frames of 101 objects)", "import", more))
    text = folder / "lines.txt"
    text.write_text("0 0.5 0.5 0.1 0.1\n" * 2_000_000)
    made.append(("YOLO txt of 2,000,000 lines (36 MB)", "import", text))
    blank = folder / "blank.txt"
    blank.write_text("\n" * 2_000_000)
    made.append(("YOLO txt of 2,000,000 empty lines (2 MB)", "import", blank))
    lines = folder / "lines.zip"
    with zipfile.ZipFile(lines, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("00001.txt", "0 0.5 0.5 0.1 0.1\n" * 2_000_000)
    made.append((f"YOLO zip of one 2,000,000-line txt ({lines.stat().st_size // 1024} kB)", "import", lines))
    bomb = folder / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("00001.png", "w") as out:
        for _ in range(1024):
            out.write(bytes(2**20))
    made.append((f"zip bomb: a PNG of 1 GB ({bomb.stat().st_size // 1024} kB)", "import", bomb))
    members = folder / "members.zip"
    with zipfile.ZipFile(members, "w") as archive:
        for i in range(100_000):
            archive.writestr(f"{i}.txt", b"")
    made.append(("zip of 100,000 members", "import", members))
    big = folder / "big.json"
    with big.open("wb") as file:
        file.truncate(65 * 2**20)
    made.append(("JSON of 65 MB", "import", big))
    yaml_file = folder / "data.yaml"
    yaml_file.write_text("names: [" + ", ".join(f"class_{i:07d}" for i in range(400_000)) + "]\n")
    made.append(("data.yaml of 400,000 names (5.9 MB)", "labels", yaml_file))
    many = folder / "classes.txt"
    many.write_text("\n".join(f"n{i}" for i in range(120_000)))
    made.append(("classes.txt of 120,000 names (0.8 MB)", "labels", many))
    yaml_many = folder / "many.yaml"
    yaml_many.write_text("names: [" + ", ".join(f"n{i}" for i in range(100_000)) + "]\n")
    made.append(("data.yaml of 100,000 names (0.8 MB)", "labels", yaml_many))
    return made


def measure(kind: str, path: Path) -> dict:
    size = [str(v) for v in (FRAMES, H, W)]
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), *size], cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode:
        failed = f"exit {done.returncode}: {done.stderr}"
        return {"seconds": float("nan"), "cpu_seconds": float("nan"), "peak_mb": float("nan"), "outcome": failed}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"CPU: {cpu}; video {W}x{H}, {FRAMES} frames; load average {load}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        largest = [
            ("COCO RLE, 10,000 prompts (100 frames x 100 objects)", "import", coco_rle(folder)),
            ("COCO polygons, 10,000 prompts", "import", coco_polygons(folder)),
            ("PNG zip, 10,000 prompts (100 PNGs x 100 objects)", "import", png_zip(folder, "png.zip", FRAMES, blobs)),
            ("PNG zip, 20 PNGs x 255 objects (5,100 prompts)", "import", png_zip(folder, "p255.zip", 20, all_objects)),
        ]
        for title, kind, path in [*largest, *over_limits(folder)]:
            got = measure(kind, path)
            size = path.stat().st_size / 2**20
            print(f"{title} [{size:.1f} MB]: {got['seconds']:.2f} s ({got['cpu_seconds']:.2f} s CPU), "
                  f"peak +{got['peak_mb']:.0f} MB -> "
                  f"{got['outcome'][:160]}")  # fmt: skip


if __name__ == "__main__":
    main()
