"""How long the work keeper (ui/saved_work.py) takes to write a page's work after a change.

    python scripts/bench_keep.py            # 3 objects x 120 frames at 854x480, every frame tracked

Writes the session folder's saved/ as the server does after each change (session.json with
every mask, work.json, the upload's hard link), then after one more click (one mask changed),
and prints the times and the bytes on disk.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.document import ObjectInfo, PackedMask, PromptCall, PromptSpec, Snapshot  # noqa: E402
from annotation.work import LoadedVideo  # noqa: E402
from sam2.video_io import MediaLimits, decode  # noqa: E402
from tests import media_factory  # noqa: E402
from ui.saved_work import VideoSource, WorkKeeper  # noqa: E402
from ui.sessions import WorkState  # noqa: E402

FRAMES, OBJECTS, SIZE = 120, 3, (854, 480)


def ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    ys, xs = np.ogrid[:h, :w]
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-keep-"))
    clip = media_factory.testsrc(folder / "clip.mp4", size=SIZE, fps=30, seconds=FRAMES / 30)
    decoded = decode(clip, MediaLimits(max_seconds=10, max_frames=FRAMES))
    frames = decoded.frames
    h, w = frames[0].shape[:2]
    masks = {}
    for f in range(len(frames)):
        for obj in range(1, OBJECTS + 1):
            cx, cy = w * (0.2 + 0.25 * obj) + 40 * np.sin(f / 10), h / 2 + 30 * np.cos(f / 7)
            masks[(f, obj)] = PackedMask.pack(ellipse(h, w, cx, cy, w / 10, h / 5))
    calls = tuple(PromptCall(0, o, PromptSpec(((w * (0.2 + 0.25 * o), h / 2),), (1,))) for o in range(1, OBJECTS + 1))
    doc = Snapshot(object_ids=tuple(range(1, OBJECTS + 1)), calls=calls, masks=masks, tracked=frozenset(masks))
    work = WorkState(session_id="bench", owner="cookie", folder=folder / "session", from_page=True)
    work.folder.mkdir()
    work.video = LoadedVideo("clip.mp4", replace(decoded, frames=[]), frames, handle=None)
    work.registry = {o: ObjectInfo(o, f"object {o}") for o in range(1, OBJECTS + 1)}
    work.doc = doc
    work.source = VideoSource((clip,), "clip.mp4", None)
    keeper = WorkKeeper(store=None, image_size_of=lambda handle: 512)  # type: ignore[arg-type]
    first = time.perf_counter()
    assert keeper.keep(work)
    first = time.perf_counter() - first
    times = []
    for i in range(10):  # a click each: one mask of one frame changes
        changed = PackedMask.pack(ellipse(h, w, 100 + i, 100, 40, 30))
        work.doc = replace(work.doc, masks={**work.doc.masks, (i, 1): changed})
        started = time.perf_counter()
        assert keeper.keep(work)
        times.append(time.perf_counter() - started)
    saved = work.folder / "saved"
    session = (saved / "session.json").stat().st_size
    print(f"{len(frames)} frames at {w}x{h}, {OBJECTS} objects, {len(masks)} masks:")
    print(f"  first save (with the upload's hard link and the video's fingerprint): {first * 1000:.0f} ms")
    print(f"  a save after a change: median {statistics.median(times) * 1000:.0f} ms, "
          f"slowest {max(times) * 1000:.0f} ms (on the keeper's thread, not the click's)")
    print(f"  session.json {session / 1024:.0f} kB; the upload is a hard link ({clip.stat().st_size / 1024:.0f} kB, "
          f"{clip.stat().st_nlink} names for one copy)")


if __name__ == "__main__":
    main()
