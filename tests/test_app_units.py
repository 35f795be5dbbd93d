"""The app's parts without a server: session store, mask packing, the undo/redo and tracking
logic (with a stand-in engine that records calls), views, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.app_harness import ROOT
from ui import annotate, views
from ui.engine import PromptSpec
from ui.media import DecodedVideo, VideoInfo
from ui.sessions import LoadedVideo, ObjectInfo, PackedMask, ServerBusy, SessionStore, Snapshot, UserError, WorkState

H, W, N = 24, 32, 6


class FakeEngine:
    """Engine stand-in: a prompt's mask is a square at its first point (or its box); tracking
    copies each object's newest mask to every frame, slowly, so Cancel can be tested."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple] = []
        self.objects: dict[int, np.ndarray] = {}
        self.delay_s = delay_s

    def start(self, frames):
        return "handle"

    def reset(self, handle) -> None:
        self.calls.append(("reset",))
        self.objects.clear()

    def prompt(self, handle, frame: int, obj_id: int, prompt: PromptSpec) -> np.ndarray:
        self.calls.append(("prompt", frame, obj_id, prompt))
        mask = np.zeros((H, W), bool)
        if prompt.box is not None:
            x0, y0, x1, y1 = (int(v) for v in prompt.box)
            mask[y0:y1, x0:x1] = True
        positives = [p for p, label in zip(prompt.points, prompt.labels) if label]
        for x, y in positives:
            mask[int(y) : int(y) + 3, int(x) : int(x) + 3] = True
        self.objects[obj_id] = mask
        return mask

    def clear(self, handle, frame: int, obj_id: int) -> None:
        self.calls.append(("clear", frame, obj_id))

    def remove_object(self, handle, obj_id: int) -> None:
        self.calls.append(("remove", obj_id))
        self.objects.pop(obj_id, None)

    def object_ids(self, handle) -> list[int]:
        return list(self.objects)

    def track(self, handle, start: int, count, reverse: bool):
        if not self.objects:
            raise ValueError("Nothing to track yet: add points, a box or a mask for an object first.")
        self.calls.append(("track", start, count, reverse))
        order = range(start, max(start - count, 0) - 1, -1) if reverse else range(start, min(start + count, N - 1) + 1)
        for frame in order:
            time.sleep(self.delay_s)
            yield frame, dict(self.objects)


def make_work(tmp_path: Path, engine: FakeEngine | None = None) -> WorkState:
    work = WorkState("s1", "owner", tmp_path / "s1")
    work.folder.mkdir()
    frames = [np.full((H, W, 3), 10 * i, np.uint8) for i in range(N)]
    info = VideoInfo(tmp_path / "v.mp4", W, H, 5.0, N / 5.0, N, 0, False, "h264")
    decoded = DecodedVideo(frames, 5.0, info, None, [i / 5 for i in range(N)])
    work.video = LoadedVideo("v.mp4", decoded, "handle")
    work.registry = {1: ObjectInfo(1, "object 1")}
    work.doc = Snapshot(object_ids=(1,))
    work.active = 1
    return work


def wait_idle(work: WorkState, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while work.progress.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not work.progress.running


# ----------------------------------------------------------------------------- masks and store


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_masks_round_trip(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((37, 53), bool)
    mask[5:20, 7:40] = rng.random((15, 33)) > 0.5
    packed = PackedMask.pack(mask)
    assert np.array_equal(packed.unpack(), mask) and packed.area == mask.sum()
    assert PackedMask.pack(np.zeros((4, 4), bool)).unpack().sum() == 0


def test_store_folders_owners_limits_and_sweep(tmp_path):
    store = SessionStore(tmp_path / "root", ttl_s=60, max_sessions=2)
    a = store.get("a", "cookie-a")
    assert a.folder.is_dir() and a.folder.parent == store.root
    assert store.get("a", "cookie-a") is a
    with pytest.raises(UserError, match="another browser"):
        store.get("a", "cookie-b")
    b = store.get("b", "cookie-b")
    with pytest.raises(ServerBusy, match="server is busy"):
        store.get("c", "cookie-c")
    (a.folder / "view").mkdir()
    assert store.owner_of(a.folder / "view" / "x.png") == "cookie-a"
    assert store.owner_of(tmp_path / "elsewhere.png") is None
    b.last_seen -= 120
    assert store.sweep() == ["b"] and not b.folder.exists()
    assert store.close("a") and not a.folder.exists() and len(store) == 0


# ----------------------------------------------------------------------------- prompts and history


def test_clicks_boxes_undo_redo_replay_the_same_calls(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 2, 4, 5, "add")
    annotate.click(work, engine, 2, 10, 12, "remove")
    assert work.doc.prompts()[(2, 1)] == PromptSpec(((4.0, 5.0), (10.0, 12.0)), (1, 0))
    assert "First corner" in annotate.click(work, engine, 2, 20, 2, "box")
    assert work.pending_corner == (2, 20.0, 2.0)
    annotate.click(work, engine, 2, 28, 10, "box")
    assert work.doc.prompts()[(2, 1)].box == (20.0, 2.0, 28.0, 10.0)
    assert work.doc.frame_masks(2)[1][2:10, 20:28].all()

    engine.calls.clear()
    assert "Undid" in annotate.undo(work, engine)
    assert work.doc.prompts()[(2, 1)].box is None
    assert [c[0] for c in engine.calls] == ["reset", "prompt", "prompt"]  # replayed in order
    annotate.redo(work, engine)
    assert work.doc.prompts()[(2, 1)].box is not None
    with pytest.raises(UserError, match="Nothing to redo"):
        annotate.redo(work, engine)


def test_clear_reset_delete_and_their_undo(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    info = annotate.add_object(work)
    annotate.click(work, engine, 1, 8, 8, "add")
    assert "no clicks left" in annotate.clear_frame(work, engine, 1)
    assert ("remove", info.id) in engine.calls and (1, info.id) not in work.doc.masks
    with pytest.raises(UserError, match="nothing to clear"):
        annotate.clear_frame(work, engine, 1)
    annotate.undo(work, engine)
    assert (1, info.id) in work.doc.masks and info.id in engine.objects

    annotate.delete_object(work, engine, info.id)
    assert work.doc.object_ids == (1,) and work.active == 1
    annotate.undo(work, engine)
    assert work.doc.object_ids == (1, info.id) and info.id in engine.objects

    annotate.reset_all(work, engine)
    assert not work.doc.masks and not work.doc.prompts()
    annotate.undo(work, engine)
    assert set(work.doc.prompts()) == {(0, 1), (1, info.id)}


def test_clicks_need_a_video_an_object_and_a_frame_inside(tmp_path):
    engine = FakeEngine()
    empty = WorkState("s", "o", tmp_path)
    with pytest.raises(UserError, match="Upload a video first"):
        annotate.click(empty, engine, 0, 1, 1, "add")
    work = make_work(tmp_path, engine)
    with pytest.raises(UserError, match="outside the video"):
        annotate.click(work, engine, N, 1, 1, "add")
    with pytest.raises(UserError, match="outside the"):
        annotate.click(work, engine, 0, W + 5, 1, "add")
    annotate.delete_object(work, engine, 1)
    with pytest.raises(UserError, match="No object is chosen"):
        annotate.click(work, engine, 0, 1, 1, "add")


def test_many_objects(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    for _ in range(24):
        annotate.add_object(work)
        annotate.click(work, engine, 0, 3 + work.active, 3, "add")
    assert len(work.objects) == 25 and len(views.object_choices(work)) == 25
    assert len({o.color for o in work.objects}) == 25
    assert views.legend_html(work).count("<tr data-object") == 25


# ----------------------------------------------------------------------------- tracking


def test_tracking_both_ways_then_undo_and_lost_frames(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    with pytest.raises(UserError, match="Nothing to track yet"):
        annotate.start_tracking(work, engine, 0, "forward", None)
    annotate.click(work, engine, 2, 4, 4, "add")
    annotate.start_tracking(work, engine, 2, "both", None).join()
    assert work.progress.done == work.progress.total == N + 1  # frame 2 is in both runs
    assert ("track", 2, 3, False) in engine.calls and ("track", 2, 2, True) in engine.calls
    assert {f for f, _ in work.doc.tracked} == set(range(N))
    assert "Done" in work.progress.summary()

    annotate.click(work, engine, 4, 9, 9, "remove")  # negative only: the mask is lost there
    annotate.start_tracking(work, engine, 4, "forward", 1).join()
    assert annotate.lost_frames(work, 1) == [4, 5]
    assert annotate.next_lost_frame(work, 0) == 4 and annotate.next_lost_frame(work, 5) == 4

    annotate.undo(work, engine)  # undoes the second tracking run
    assert annotate.lost_frames(work, 1) == []
    assert work.lock.acquire(blocking=False)
    work.lock.release()


def test_cancel_keeps_what_was_done_and_frees_the_session(tmp_path):
    engine = FakeEngine(delay_s=0.05)
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    thread = annotate.start_tracking(work, engine, 0, "forward", None)
    with pytest.raises(UserError, match="busy"):
        annotate.start_tracking(work, engine, 0, "forward", None)
    time.sleep(0.12)
    work.cancel.set()
    thread.join()
    assert work.progress.cancelled and 0 < work.progress.done < N
    assert len(work.doc.tracked) == work.progress.done
    assert "Cancelled" in work.progress.summary()
    assert work.lock.acquire(blocking=False)
    work.lock.release()


def test_a_tracking_error_is_reported_and_the_session_stays_usable(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    engine.objects.clear()  # the predictor refuses: nothing to track
    annotate.start_tracking(work, engine, 0, "forward", None).join()
    assert "Nothing to track" in work.progress.error and "Stopped" in work.progress.summary()
    annotate.click(work, engine, 1, 4, 4, "add")


# ----------------------------------------------------------------------------- views


def test_views_draw_masks_prompts_and_the_timeline(tmp_path):
    engine = FakeEngine()
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 1, 4, 4, "add")
    image = views.frame_view(work, 1)
    assert image.shape == (H, W, 3) and (image != work.video.frames[1]).any()
    work.update_object(1, visible=False)
    assert "(hidden)" in views.object_choices(work)[0][0]
    geometry = views.TimelineGeometry.for_frames(N)
    assert geometry.frame_at(geometry.cell * 3 + 1) == 3 and geometry.frame_at(10_000) == N - 1
    timeline = views.timeline_image(work, 2)
    assert timeline.shape[1] == geometry.cell * N
    assert views.frame_file(work, 1).is_file() and views.timeline_file(work, 1).suffix == ".png"
    for _ in range(40):
        views.frame_file(work, 1)
    assert len(list((work.folder / "view").iterdir())) <= 26


# ----------------------------------------------------------------------------- command line


def run_app(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_cli_bad_checkpoint_exits_with_a_message(tmp_path):
    missing = run_app("--checkpoint", str(tmp_path / "none.pt"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    bad = run_app("--checkpoint", str(garbage))
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "Traceback" not in bad.stderr


def test_cli_offline_without_checkpoint_says_what_to_download(tmp_path):
    from checkpoints.download import checkpoint_path

    variant = "sam2.1_hiera_base_plus"
    if checkpoint_path(variant).exists():
        pytest.skip("the checkpoint is already downloaded here")
    result = run_app("--model", "sam2.1_hiera_b+", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sam2.1_hiera_base_plus.pt" in result.stderr


def test_cli_options():
    import app

    options = app.parse_args(["--model", "sam2_hiera_s", "--image-size", "768", "--max-frames", "50"])
    assert options.model == "sam2_hiera_s" and options.image_size == 768 and options.max_frames == 50
    assert app.parse_args([]).model == "sam2.1_hiera_t" and app.parse_args([]).host in ("127.0.0.1", os.environ.get("GRADIO_SERVER_NAME"))
    for bad in (["--model", "sam3"], ["--image-size", "640"], ["--max-frames", "0"]):
        with pytest.raises(SystemExit):
            app.parse_args(bad)
