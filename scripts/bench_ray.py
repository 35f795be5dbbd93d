"""Throughput of ``sam2-annotate --ray`` on this machine: videos per hour with 1 and with 2 workers
(a local Ray, as ``--ray`` with no address starts it), and on paper what N GPU workers would give.

A short realistic batch: ``--videos`` clips of 320x240, ``--frames`` frames each (ffmpeg's moving test
pattern), one box prompt each, tracked both ways at 512 px, PNG + COCO + session files written. The
model is SAM 2.1 tiny with the reference weights (the same layers as the official ones: the same
time; no download). Every run starts from an empty ``--out``; the model load of each worker counts.

The load average is printed beside each figure: on a shared machine the figures are pessimistic.
The GPU figure is an estimate, not a measurement: N workers x 3600 / (frames per video x seconds per
frame), for a per-frame cost you give (``--gpu-frame-s``; no GPU was at hand to measure it).

    python scripts/bench_ray.py [--videos 6] [--frames 30] [--workers 1,2] [--gpu-frame-s 0.03]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on 127.0.0.1, as --ray does

from annotation.cli import run_batch  # noqa: E402
from tests import media_factory  # noqa: E402
from tests.reference import write_reference_checkpoint  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    parser.add_argument("--gpu-frame-s", type=float, default=0.03,
                        help="seconds per frame on one GPU, for the estimate (default 0.03: an assumption; "
                             "measure it with the one-machine command line on that GPU)")  # fmt: skip
    parser.add_argument("--gpu-workers", default="1,4,8,32")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    checkpoint = write_reference_checkpoint("sam2.1_hiera_t", folder / "reference-tiny.pt")
    videos = [media_factory.testsrc(folder / f"clip{i}.mp4", size=(320, 240), fps=10, seconds=args.frames / 10)
              for i in range(args.videos)]  # fmt: skip
    box = {"objects": [{"prompts": [{"frame": 0, "box": [60, 40, 200, 160]}]}]}
    (folder / "prompts.json").write_text(json.dumps(box))
    options = ["--prompts", str(folder / "prompts.json"), "--export", "png,coco,session", "--checkpoint",
               str(checkpoint), "--model", "sam2.1_hiera_tiny", "--image-size", "512", "--precision", "float32",
               "--quiet"]  # fmt: skip
    print(f"{args.videos} clips of 320x240, {args.frames} frames, 512 px, on {os.cpu_count()} cores ({cpu_name()})")
    measured = []
    for workers in [int(w) for w in args.workers.split(",")]:
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        summary = run_batch(videos, folder / f"out-{workers}", options, workers=workers)
        wall = time.monotonic() - started
        assert summary.count("done") == args.videos, summary.table()
        per_video = [r.seconds for r in summary.results]
        print(f"{workers} worker(s): {summary.count('done') * 3600 / wall:6.0f} videos/hour ({wall:.1f} s for "
              f"{args.videos}, Ray's start and every worker's model load included), "
              f"{summary.seconds_per_frame:.2f} s per frame per worker, {sum(per_video) / len(per_video):.1f} s "
              f"per video; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")  # fmt: skip
        measured.append(summary)
    one = measured[0]
    rate = one.count("done") * 3600 / one.seconds
    print("ESTIMATES, not measurements:")
    print(f"  N machines like this one, {measured[0].workers} worker each: about N x {rate:.0f} videos/hour "
          "(linear: each node runs its own videos; the shared --out must keep up)")
    print(f"  N GPU workers at an assumed {args.gpu_frame_s:g} s per frame (tracking only, decoding and files "
          f"left out; measured here on CPU: {one.seconds_per_frame:.2f} s per frame per worker):")
    for n in [int(w) for w in args.gpu_workers.split(",")]:
        print(f"  {n:4d} GPU worker(s): about {n * 3600 / (args.frames * args.gpu_frame_s):8.0f} videos/hour")


if __name__ == "__main__":
    main()
