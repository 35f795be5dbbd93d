"""``sam2-annotate ... --ray`` (annotation/ray_batch.py) on a real local Ray started here (127.0.0.1,
2 CPUs, no dashboard), with 4 small real ffmpeg videos, one of them broken, and the reference
weights: the files equal the one-machine command line's, mask for mask, also when a worker is killed
mid-batch; the broken video is reported by name and the others finish; a rerun skips the videos
done; Ctrl-C (a real SIGINT to the command line's process) leaves no video marked done that was not
finished.

Cheap by design: one Ray for the module (the command line's subprocess joins it with ``--ray
ADDRESS`` rather than starting its own), one set of videos, and one run of the one-machine command
line to compare with."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only; read when ray is imported
ray = pytest.importorskip("ray", reason="requirements-ray.txt installs it (requirements-dev.txt includes it)")

from annotation import formats  # noqa: E402
from annotation.cli import run_batch  # noqa: E402
from annotation.ray_batch import DONE_SUFFIX, SUMMARY_FILE, BatchEvent  # noqa: E402
from tests import media_factory  # noqa: E402
from tests.app_harness import IMAGE_SIZE, KERNELS, MODEL, PRECISION, ROOT  # noqa: E402
from tests.interruptible import popen_interruptible  # noqa: E402

GOOD = ("red.mp4", "pattern.mp4", "late.mp4")
BROKEN = "broken.mp4"


@pytest.fixture(scope="module")
def ray_address():
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=120 * 1024**2,
                       logging_level="ERROR")  # fmt: skip
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good 64x48 videos of 5 frames (different pictures) and a broken one, one prompts file."""
    folder = tmp_path_factory.mktemp("ray-media")
    media_factory.marker_video(folder / "red.mp4", fps=5)
    media_factory.testsrc(folder / "pattern.mp4", fps=5)
    media_factory.black_then_marker(folder / "late.mp4", fps=5, black=2, total=5)
    (folder / BROKEN).write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (folder / "prompts.json").write_text(json.dumps({"objects": [{"name": "corner", "prompts": [
        {"frame": 0, "box": [0, 0, 24, 18]}, {"frame": 2, "points": [[6, 5]]}]}]}))  # fmt: skip
    return folder


def videos(media: Path) -> list[Path]:
    return [media / name for name in (*GOOD[:2], BROKEN, GOOD[2])]


def options(checkpoint: Path, media: Path) -> list[str]:
    """The app tests' model settings (float32, kernels pinned: masks bit-identical across processes)."""
    return ["--prompts", str(media / "prompts.json"), "--export", "png,coco,session", "--checkpoint", str(checkpoint),
            "--model", MODEL, "--image-size", str(IMAGE_SIZE), "--precision", PRECISION, "--kernels", KERNELS,
            "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(reference_checkpoint: Path, media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-machine command line's files for the same videos, with one torch thread as each worker
    has (2 workers on 2 CPUs): a CPU's float sums depend on how many threads split them, and the
    reference weights' masks are noisy enough that the last bit can move a pixel."""
    out = tmp_path_factory.mktemp("one-machine")
    cmd = [sys.executable, "-m", "annotation", *map(str, videos(media)), "--out", str(out),
           *options(reference_checkpoint, media)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert run.returncode == 1, run.stderr  # the broken video
    assert "Summary: 3 done, 1 failed." in run.stdout, run.stdout
    return out


def png_masks(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        return {n: np.array(Image.open(archive.open(n))) for n in sorted(archive.namelist()) if n.endswith(".png")}


def coco_masks(path: Path) -> dict[tuple[int, int], np.ndarray]:
    from annotation.formats import read_coco

    return {(frame, obj): mask for frame, objects in read_coco(path).items() for obj, mask in objects.items()}


def assert_same_files(video: str, ours: Path, reference: Path) -> None:
    """The video's files equal the one-machine run's: the same names; every PNG mask and COCO mask equal."""
    stem = formats.file_stem(video)
    made = sorted(p.name for p in ours.glob(f"{stem}_*") if not p.name.endswith(DONE_SUFFIX))
    assert made == sorted(p.name for p in reference.glob(f"{stem}_*")) == [f"{stem}_coco.json", f"{stem}_masks.zip",
                                                                           f"{stem}_session.json"]  # fmt: skip
    a, b = png_masks(ours / f"{stem}_masks.zip"), png_masks(reference / f"{stem}_masks.zip")
    assert a.keys() == b.keys() and len(a) == 5
    assert all(np.array_equal(a[n], b[n]) for n in a), video
    a, b = coco_masks(ours / f"{stem}_coco.json"), coco_masks(reference / f"{stem}_coco.json")
    assert a.keys() == b.keys() and a and all(np.array_equal(a[k], b[k]) for k in a), video
    saved, expected = (formats.load_session_json(p / f"{stem}_session.json") for p in (ours, reference))
    assert [(m.frame, m.obj_id, m.tracked, m.bits) for m in saved.masks] == \
        [(m.frame, m.obj_id, m.tracked, m.bits) for m in expected.masks]


@pytest.fixture(scope="module")
def first_batch(ray_address, reference_checkpoint: Path, media: Path, tmp_path_factory: pytest.TempPathFactory):
    """The batch on 2 workers; the first worker to start a good video is killed (SIGKILL) right then."""
    out = tmp_path_factory.mktemp("ray-out")
    pids: dict[int, int] = {}
    killed: list[str] = []
    events: list[BatchEvent] = []

    def listener(event: BatchEvent) -> None:
        events.append(event)
        if event.kind == "worker":
            pids[event.worker] = event.pid
        elif event.kind == "start" and event.video in GOOD and not killed:
            killed.append((event.video, pids[event.worker]))
            time.sleep(1.0)  # into the video's run
            os.kill(pids[event.worker], signal.SIGKILL)

    summary = run_batch(videos(media), out, options(reference_checkpoint, media), workers=2, listener=listener)
    return out, summary, killed, events


def test_the_files_equal_the_one_machine_runs_also_after_a_worker_is_killed(first_batch, reference):
    out, summary, killed, events = first_batch
    (video, pid), = killed
    assert any(e.kind == "died" and e.video == video for e in events)
    by_name = {r.video: r for r in summary.results}
    assert not by_name[video].worker.endswith(f":{pid}")  # done again by another worker
    assert [r.video for r in summary.results] == [*GOOD[:2], BROKEN, GOOD[2]]  # the order given
    for name in GOOD:
        assert by_name[name].status == "done" and by_name[name].frames == 5, by_name[name]
        assert_same_files(name, out, reference)
        record = json.loads((out / f"{formats.file_stem(name)}{DONE_SUFFIX}").read_text())
        assert {f["name"] for f in record["files"]} == {p.name for p in out.glob(f"{formats.file_stem(name)}_*")
                                                        if not p.name.endswith(DONE_SUFFIX)}  # fmt: skip
        assert len(record["inputs"]) == 2 and all(len(h) == 64 for h in record["inputs"].values())  # video, prompts


def test_the_broken_video_is_reported_by_name_after_two_tries_and_the_others_finish(first_batch):
    out, summary, _, _ = first_batch
    broken = next(r for r in summary.results if r.video == BROKEN)
    assert broken.status == "failed" and "broken.mp4" in broken.message and "(tried 2 times)" in broken.message
    assert not (out / f"broken{DONE_SUFFIX}").exists()
    assert (summary.count("done"), summary.count("failed"), summary.frames) == (3, 1, 15)
    saved = json.loads((out / SUMMARY_FILE).read_text())
    assert (saved["done"], saved["skipped"], saved["failed"], saved["frames"]) == (3, 0, 1, 15)
    assert saved["seconds_per_frame"] > 0 and saved["videos_per_hour"] > 0
    table = summary.table()
    row = r"^broken\.mp4 +failed +- +[\d.]+ +- +Could not read a video from 'broken\.mp4'"
    assert re.search(row, table, re.M) and "Batch: 3 done, 0 skipped, 1 failed; 15 frames" in table, table


def test_a_rerun_skips_the_videos_done(first_batch, reference_checkpoint, media):
    out, _, _, _ = first_batch
    records = {p.name: p.read_bytes() for p in out.glob(f"*{DONE_SUFFIX}")}
    assert len(records) == 3
    started: list[str] = []
    summary = run_batch(videos(media), out, options(reference_checkpoint, media), workers=2,
                        listener=lambda e: started.append(e.video) if e.kind == "start" else None)  # fmt: skip
    assert started == [BROKEN, BROKEN]  # only the broken one runs again (and is retried)
    assert [(r.video, r.status) for r in summary.results] == [(GOOD[0], "skipped"), (GOOD[1], "skipped"),
                                                              (BROKEN, "failed"), (GOOD[2], "skipped")]  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.glob(f"*{DONE_SUFFIX}")} == records
    assert summary.workers == 1  # one video to do: one worker


def test_ctrl_c_leaves_no_video_marked_done_that_was_not_finished(ray_address, reference_checkpoint, media, reference,
                                                                  tmp_path):  # fmt: skip
    """The command line joins this module's Ray; SIGINT as soon as the first video is marked done."""
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "annotation", *map(str, videos(media)), "--out", str(out),
           *options(reference_checkpoint, media), "--ray", ray_address, "--workers", "2"]  # fmt: skip
    process = popen_interruptible(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not list(out.glob(f"*{DONE_SUFFIX}")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, (stdout, stderr)
    assert "Stopping: the videos done stay done" in stderr and "Traceback" not in stderr, stderr
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["interrupted"]
    status = {r["video"]: r["status"] for r in summary["results"]}
    done = {p.name.removesuffix(DONE_SUFFIX) for p in out.glob(f"*{DONE_SUFFIX}")}
    assert done and done == {formats.file_stem(v) for v, s in status.items() if s == "done"}
    assert len(done) < 3 and set(status.values()) - {"done", "failed"}, status  # some were stopped or waiting
    for name in done:
        assert_same_files(f"{name}.mp4", out, reference)  # marked done: finished, every file whole


def test_without_ray_the_option_says_what_to_install(media, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from annotation.cli import main; "
            f"sys.exit(main({[str(media / GOOD[0]), '--prompts', str(media / 'prompts.json'), '--ray']!r}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "pip install -r requirements-ray.txt" in run.stderr and "Traceback" not in run.stderr
