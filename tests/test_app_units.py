"""The app's parts without a server: session store, mask packing, the undo/redo and tracking
logic, exports and session files, views, and the command line (app starts with bad checkpoints
are in test_app_start.py).

The logic runs on the real engine: ``ui.engine.Engine`` around the SAM 2 predictor with the
reference weights at image size 64 (tens of ms a frame), on small synthetic frames. Its
results are checked against the same predictor called directly with the same prompts."""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import sam2
from annotation import formats as exporting
from annotation import operations as annotate
from annotation import views as core_views
from annotation.document import PackedMask, PromptCall, PromptSpec, UserError
from annotation.engine import Engine, ModelSpec
from sam2.video_io import DecodedVideo, VideoInfo
from sam2.video_predictor import SAM2VideoPredictor
from tests.app_harness import Replay
from tests.reference import reference_state_dict
from ui import views
from ui.sessions import ServerBusy, SessionStore, WorkState

H, W, N = 24, 32, 6
IMAGE_SIZE = 64


def synthetic_frames() -> list[np.ndarray]:
    """A square drifting right over a background that brightens while the square fades. With
    the reference weights the model keeps the square on some tracked frames and loses it on
    others, so found and lost frames both occur."""
    frames = []
    for i in range(N):
        frame = np.full((H, W, 3), 10 * i, np.uint8)
        frame[6:16, 4 + 3 * i : 14 + 3 * i] = (200 - 30 * i, 100, 50)
        frames.append(frame)
    return frames


FRAMES = synthetic_frames()


@pytest.fixture(scope="module")
def predictor() -> SAM2VideoPredictor:
    """The real predictor, built once for the module (the app's settings, small image size)."""
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, corrections_as_cond=True
    )


@pytest.fixture(scope="module")
def engine(predictor: SAM2VideoPredictor) -> Engine:
    return Engine(predictor)


def direct(predictor: SAM2VideoPredictor) -> Replay:
    """The predictor driven directly on a fresh session of the same frames: the expected masks."""
    return Replay(predictor, predictor.init_state(list(FRAMES)))


def make_work(tmp_path: Path, engine: Engine, name: str = "s1", frames: list[np.ndarray] = FRAMES) -> WorkState:
    """A session with the synthetic video loaded through the app's own path (``open_video``)."""
    work = WorkState(session_id=name, owner="owner", folder=tmp_path / name)
    work.folder.mkdir()
    info = VideoInfo(tmp_path / "v.mp4", W, H, 5.0, N / 5.0, N, 0, False, "h264")
    decoded = DecodedVideo(list(frames), 5.0, info, None, [i / 5 for i in range(N)])
    annotate.open_video(work, engine, decoded, "v.mp4")
    return work


def stored_prompt(work: WorkState, obj: int, frame: int) -> tuple[list[tuple[float, float]], list[int]]:
    """The clicks the predictor's session holds for an object on a frame, back in frame
    pixels, with their labels (1/0 = positive/negative, 2/3 = box corners, first)."""
    points = work.video.handle.tracks[obj].points[frame]
    coords = points.coords[0].cpu().numpy() * np.array([W, H]) / IMAGE_SIZE
    return [(round(float(x), 3), round(float(y), 3)) for x, y in coords], points.labels[0].tolist()


def assert_same_masks(work: WorkState, expected: dict[int, dict[int, np.ndarray]]) -> None:
    """Every (frame, object) mask the direct run gave is exactly the one the app holds."""
    assert expected
    for frame, masks in expected.items():
        shown = work.doc.frame_masks(frame)
        for obj, mask in masks.items():
            assert obj in shown, f"frame {frame}: the app has no mask for object {obj}"
            assert np.array_equal(shown[obj], mask), (
                f"frame {frame}, object {obj}: {shown[obj].sum()} vs {mask.sum()} pixels"
            )


def lock_is_free(work: WorkState) -> bool:
    if not work.lock.acquire(blocking=False):
        return False
    work.lock.release()
    return True


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
    with pytest.raises(UserError, match="Upload a video first"):
        store.get("a", "cookie-a")  # only an upload makes a session (and takes a place)
    assert len(store) == 0
    a = store.get("a", "cookie-a", create=True)
    assert a.folder.is_dir() and a.folder.parent == store.root
    assert store.get("a", "cookie-a") is a
    with pytest.raises(UserError, match="another browser"):
        store.get("a", "cookie-b")
    b = store.get("b", "cookie-b", create=True)
    with pytest.raises(ServerBusy, match="server is busy"):
        store.get("c", "cookie-c", create=True)
    (a.folder / "view").mkdir()
    assert store.owner_of(a.folder / "view" / "x.png") == "cookie-a"
    assert store.owner_of(tmp_path / "elsewhere.png") is None
    b.last_seen -= 120
    assert store.sweep() == ["b"] and not b.folder.exists()
    assert store.close("a") and not a.folder.exists() and len(store) == 0


def test_store_detach_resume_by_owner_and_sweep_after_grace(tmp_path):
    """A reload: the old page's session is detached (kept, folder and all) and the same
    browser's next page takes it over under its new hash; another cookie never gets it; a
    session nobody comes back for is swept once the grace period is over."""
    store = SessionStore(tmp_path / "root", ttl_s=600, max_sessions=2, grace_s=30)
    a = store.get("old", "cookie-a", create=True)
    (a.folder / "view").mkdir()
    assert store.resume("new", "cookie-a") is None  # still attached: nothing to resume
    assert store.attached_of("cookie-a") == 1 and store.attached_of("cookie-b") == 0
    assert store.detach("old") and not store.detach("nobody")
    assert a.folder.is_dir() and len(store) == 1 and store.attached_of("cookie-a") == 0
    assert store.resume("new", "cookie-b") is None and store.resume("new", "") is None  # not another browser's
    assert store.resume("new", "cookie-a") is a
    assert a.session_id == "new" and a.detached_at is None and store.peek("old") is None
    assert store.get("new", "cookie-a") is a and store.owner_of(a.folder / "view" / "x.png") == "cookie-a"
    with pytest.raises(UserError, match="another browser"):
        store.get("new", "cookie-b")
    # A page that already has a session keeps it; a detached session of the same cookie waits.
    b = store.get("tab2", "cookie-a", create=True)
    store.detach("new")
    assert store.resume("tab2", "cookie-a") is None
    # Detached sessions still take places, and the sweep frees them after the grace period only.
    with pytest.raises(ServerBusy):
        store.get("c", "cookie-c", create=True)
    assert store.sweep(now=a.detached_at + 10) == []
    assert store.sweep(now=a.detached_at + 31) == ["new"] and not a.folder.exists()
    assert store.owner_of(a.folder / "view" / "x.png") is None and store.resume("x", "cookie-a") is None
    assert len(store) == 1 and store.peek("tab2") is b
    # Default grace = the TTL; a request on a detached session's own hash attaches it again.
    store = SessionStore(tmp_path / "root2", ttl_s=60)
    assert store.grace_s == 60
    d = store.get("d", "cookie-d", create=True)
    store.detach("d")
    assert store.get("d", "cookie-d") is d and d.detached_at is None


def gradio_upload(cache: Path, data: bytes, name: str = "clip.mp4") -> Path:
    """A file where Gradio's upload route puts it: <cache>/<sha256 of the bytes>/<name>, moved
    into place from a temporary file (so a second upload of the same bytes is a new file)."""
    import hashlib

    path = cache / hashlib.sha256(data).hexdigest() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = cache / "staged.tmp"
    staged.write_bytes(data)
    staged.rename(path)
    return path


def test_an_upload_goes_when_the_last_session_holding_it_closes(tmp_path):
    cache = tmp_path / "cache"
    store = SessionStore(cache / "sessions", upload_cache=cache)
    shared = gradio_upload(cache, b"the same video")
    a, b = store.get("a", "cookie-a", create=True), store.get("b", "cookie-b", create=True)
    store.hold_upload(a, shared)
    store.hold_upload(b, shared)  # another browser, the very same bytes: the same path
    assert store.close("a") and shared.is_file()  # b still holds it
    assert store.close("b") and not shared.exists() and not shared.parent.exists()

    # Uploaded again after a session read it (a new file at the same path, maybe for a request
    # still on its way): that session's close leaves it.
    c = store.get("c", "cookie-c", create=True)
    again = gradio_upload(cache, b"another video")
    store.hold_upload(c, again)
    assert gradio_upload(cache, b"another video") == again
    store.close("c")
    assert again.is_file()

    # A detached session (a reload may come back for it) still holds its upload; the sweep's
    # close releases it. Files outside Gradio's upload folders are never deleted.
    d = store.get("d", "cookie-d", create=True)
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(b"x")
    store.hold_upload(d, again)
    store.hold_upload(d, elsewhere)
    store.detach("d")
    assert store.sweep(now=d.detached_at + 1) == [] and again.is_file()
    assert store.sweep(now=d.detached_at + store.grace_s + 1) == ["d"]
    assert not again.exists() and elsewhere.is_file()
    with pytest.raises(UserError, match="no longer on the server"):
        store.hold_upload(store.get("e", "cookie-e", create=True), again)

    # Without a cache folder, uploads are counted but never deleted.
    plain = SessionStore(tmp_path / "plain")
    kept = gradio_upload(cache, b"kept")
    plain.hold_upload(plain.get("f", "cookie-f", create=True), kept)
    plain.close("f")
    assert kept.is_file()


def test_stray_empty_temp_files_of_gradio_are_tidied(tmp_path):
    """Gradio 6.31's gr.File leaves an empty tmpXXXXXXXX file in its cache for every file an
    event receives. Closed, empty, old enough and so named: deleted. An open one (an upload in
    progress), one with bytes, a young one or one of another name: kept."""
    import tempfile

    cache = tmp_path / "cache"
    store = SessionStore(cache / "sessions", upload_cache=cache)
    leaked = tempfile.NamedTemporaryFile(delete=False, dir=cache)
    leaked.close()  # what gr.File does: made, closed, never used
    in_progress = tempfile.NamedTemporaryFile(dir=cache)  # open, as an upload being received
    with_bytes = tempfile.NamedTemporaryFile(delete=False, dir=cache)
    with_bytes.write(b"data")
    with_bytes.close()
    other = cache / "notes.txt"
    other.write_bytes(b"")
    assert store.tidy_upload_cache() == []  # all younger than STRAY_AGE_S
    later = time.time() + 3
    assert store.tidy_upload_cache(now=later) == [Path(leaked.name)]
    assert Path(in_progress.name).exists() and Path(with_bytes.name).exists() and other.exists()
    in_progress.close()  # (deletes itself)
    assert store.tidy_upload_cache(now=later) == []


# ----------------------------------------------------------------------------- prompts and history


def test_clicks_boxes_undo_redo_give_the_predictors_masks(tmp_path, engine, predictor):
    work = make_work(tmp_path, engine)
    ref = direct(predictor)
    annotate.click(work, engine, 2, 4, 5, "add")
    assert np.array_equal(work.doc.frame_masks(2)[1], ref.prompt(2, 1, [(4, 5)], [1]))
    annotate.click(work, engine, 2, 10, 12, "remove")
    assert work.doc.prompts()[(2, 1)] == PromptSpec(((4.0, 5.0), (10.0, 12.0)), (1, 0))
    two_clicks = ref.prompt(2, 1, [(4, 5), (10, 12)], [1, 0])
    assert np.array_equal(work.doc.frame_masks(2)[1], two_clicks)
    assert "First corner" in annotate.click(work, engine, 2, 20, 2, "box")
    assert work.pending_corner == (2, 20.0, 2.0)
    annotate.click(work, engine, 2, 28, 10, "box")
    assert work.doc.prompts()[(2, 1)].box == (20.0, 2.0, 28.0, 10.0)
    with_box = ref.prompt(2, 1, [(4, 5), (10, 12)], [1, 0], box=(20, 2, 28, 10))
    assert np.array_equal(work.doc.frame_masks(2)[1], with_box)
    assert not np.array_equal(two_clicks, with_box)  # so the checks below can tell the two apart

    assert "Undid" in annotate.undo(work, engine)
    assert work.doc.prompts()[(2, 1)].box is None
    assert np.array_equal(work.doc.frame_masks(2)[1], two_clicks)
    assert stored_prompt(work, 1, 2) == ([(4, 5), (10, 12)], [1, 0])  # the predictor replayed both clicks
    annotate.redo(work, engine)
    assert work.doc.prompts()[(2, 1)].box is not None
    assert np.array_equal(work.doc.frame_masks(2)[1], with_box)
    assert stored_prompt(work, 1, 2) == ([(20, 2), (28, 10), (4, 5), (10, 12)], [2, 3, 1, 0])
    with pytest.raises(UserError, match="Nothing to redo"):
        annotate.redo(work, engine)

    # Each answer on a frame starts from the one before (the replayed calls, in order), so the
    # next click after undo/redo gives the direct run's mask only if the replay was exact.
    annotate.click(work, engine, 2, 16, 8, "add")
    expected = ref.prompt(2, 1, [(4, 5), (10, 12), (16, 8)], [1, 0, 1], box=(20, 2, 28, 10))
    assert np.array_equal(work.doc.frame_masks(2)[1], expected)


def test_clear_reset_delete_and_their_undo(tmp_path, engine, predictor):
    work = make_work(tmp_path, engine)
    handle = work.video.handle
    annotate.click(work, engine, 0, 4, 4, "add")
    info = annotate.add_object(work)
    annotate.click(work, engine, 1, 8, 8, "add")
    assert engine.object_ids(handle) == [1, info.id]
    assert "no clicks left" in annotate.clear_frame(work, engine, 1)
    assert engine.object_ids(handle) == [1] and (1, info.id) not in work.doc.masks  # gone from the predictor too
    with pytest.raises(UserError, match="nothing to clear"):
        annotate.clear_frame(work, engine, 1)
    annotate.undo(work, engine)
    assert (1, info.id) in work.doc.masks and engine.object_ids(handle) == [1, info.id]
    assert stored_prompt(work, info.id, 1) == ([(8, 8)], [1])

    assert annotate.delete_object(work, engine, info.id) == f"Deleted '{info.name}'. Undo brings it back."
    assert work.doc.object_ids == (1,) and work.active == 1 and engine.object_ids(handle) == [1]
    annotate.undo(work, engine)
    assert work.doc.object_ids == (1, info.id) and engine.object_ids(handle) == [1, info.id]

    assert annotate.reset_all(work, engine).endswith("Undo brings them back.")
    assert not work.doc.masks and not work.doc.prompts() and engine.object_ids(handle) == []
    annotate.undo(work, engine)
    assert set(work.doc.prompts()) == {(0, 1), (1, info.id)}
    assert stored_prompt(work, 1, 0) == ([(4, 4)], [1]) and stored_prompt(work, info.id, 1) == ([(8, 8)], [1])

    # The rebuilt predictor tracks exactly like one given the same two clicks directly.
    annotate.start_tracking(work, engine, 0, "forward", None).join()
    assert not work.progress.error
    ref = direct(predictor)
    ref.prompt(0, 1, [(4, 4)], [1])
    ref.prompt(1, info.id, [(8, 8)], [1])
    ref.track(0, N - 1, False)
    assert_same_masks(work, ref.masks)


def test_clicks_need_a_video_an_object_and_a_frame_inside(tmp_path, engine):
    empty = WorkState(session_id="s", owner="o", folder=tmp_path)
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
    assert engine.object_ids(work.video.handle) == []  # nothing reached the predictor


def test_many_objects(tmp_path, engine):
    work = make_work(tmp_path, engine)
    for _ in range(24):
        annotate.add_object(work)
        annotate.click(work, engine, 0, 3 + work.active, 3, "add")
    assert len(work.objects) == 25 and len(views.object_choices(work)) == 25
    assert len({o.color for o in work.objects}) == 25
    assert views.legend_html(work).count("<tr data-object") == 25
    assert engine.object_ids(work.video.handle) == list(range(2, 26))  # object 1 got no click
    assert all((0, obj) in work.doc.masks for obj in range(2, 26))


# ----------------------------------------------------------------------------- tracking


def test_tracking_both_ways_then_correct_undo_and_lost_frames(tmp_path, engine, predictor):
    work = make_work(tmp_path, engine)
    with pytest.raises(UserError, match="Nothing to track yet"):
        annotate.start_tracking(work, engine, 0, "forward", None)
    ref = direct(predictor)
    annotate.click(work, engine, 2, 4, 4, "add")
    ref.prompt(2, 1, [(4, 4)], [1])
    annotate.start_tracking(work, engine, 2, "both", None).join()
    assert work.progress.done == work.progress.total == N - 1  # every frame but the one shown (it has its mask)
    ref.track(2, N - 3, False)  # "both" is forward to the end, then backward to the start
    ref.track(2, 2, True)
    assert_same_masks(work, ref.masks)
    assert {f for f, _ in work.doc.tracked} == set(range(N))
    assert "Done" in work.progress.summary()
    lost = [f for f in range(N) if not ref.masks[f][1].any()]
    assert 0 < len(lost) < N  # the frames are made so that the model loses the square on some
    assert annotate.lost_frames(work, 1) == lost
    assert annotate.next_lost_frame(work, -1) == lost[0] and annotate.next_lost_frame(work, lost[-1]) == lost[0]

    # A correction on a lost frame, tracked one frame on: as the predictor does it directly.
    fix = lost[0]
    x = 4 + 3 * fix + 5  # the square's middle on that frame
    annotate.click(work, engine, fix, x, 10, "add")
    ref.prompt(fix, 1, [(x, 10)], [1])
    annotate.start_tracking(work, engine, fix, "forward", 1).join()
    ref.track(fix, 1, False)
    assert_same_masks(work, ref.masks)
    after_fix = [f for f in range(N) if not ref.masks[f][1].any()]
    assert annotate.lost_frames(work, 1) == after_fix and fix not in after_fix

    assert "Tracked masks are as they were" in annotate.undo(work, engine)  # undoes the second run
    assert annotate.lost_frames(work, 1) == [f for f in lost if f != fix]  # the fix's frame is prompted, not tracked
    assert lock_is_free(work)


def test_cancel_keeps_what_was_done_and_frees_the_session(tmp_path, engine, predictor):
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    thread = annotate.start_tracking(work, engine, 0, "forward", None)
    with pytest.raises(UserError, match="Tracking forward is still running. Wait for it to finish, or press Cancel."):
        annotate.start_tracking(work, engine, 0, "forward", None)
    deadline = time.monotonic() + 60
    while work.progress.done < 1 and time.monotonic() < deadline:  # the first frame is in
        time.sleep(0.001)
    work.cancel.set()  # the next frames take tens of ms each: the run stops after one or two
    thread.join()
    done = work.progress.done  # frames after frame 0, the one the run started from
    assert work.progress.cancelled and 0 < done < N - 1
    assert work.doc.tracked == {(f, 1) for f in range(done + 1)}
    assert "Cancelled" in work.progress.summary()
    assert lock_is_free(work)

    ref = direct(predictor)
    ref.prompt(0, 1, [(4, 4)], [1])
    ref.track(0, N - 1, False)
    assert_same_masks(work, {f: ref.masks[f] for f in range(done + 1)})
    assert all((f, 1) not in work.doc.masks for f in range(done + 1, N))


@pytest.mark.parametrize(
    ("break_predictor", "message"),
    [
        (lambda engine, handle: engine.reset(handle), "Nothing to track yet: add points, a box or a mask"),
        (lambda engine, handle: engine.clear(handle, 0, 1), r"Object\(s\) \[1\] have no prompt on any frame"),
    ],
    ids=["no-objects", "prompt-cleared"],
)
def test_a_tracking_error_is_reported_and_the_session_stays_usable(tmp_path, engine, break_predictor, message):
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    break_predictor(engine, work.video.handle)  # the page thinks there is a prompt; the predictor disagrees
    before = work.doc
    annotate.start_tracking(work, engine, 0, "forward", None).join()
    assert re.search(message, work.progress.error) and "Stopped" in work.progress.summary()
    assert work.doc is before and not work.progress.running and lock_is_free(work)
    annotate.click(work, engine, 1, 4, 4, "add")
    annotate.start_tracking(work, engine, 1, "forward", 1).join()
    assert not work.progress.error and work.progress.done == 1  # frame 2, the one after frame 1


# ----------------------------------------------------------------------------- exports and session files


def tracked_work(tmp_path: Path, engine: Engine, name: str = "s1") -> WorkState:
    """Two objects clicked, tracked both ways, corrected on a frame and tracked on from there:
    masks from prompts and from two tracking runs, found and lost frames, one object hidden."""
    work = make_work(tmp_path, engine, name)
    annotate.click(work, engine, 2, 4, 4, "add")
    annotate.add_object(work)
    annotate.click(work, engine, 0, 20, 2, "box")
    annotate.click(work, engine, 0, 30, 12, "box")
    annotate.start_tracking(work, engine, 2, "both", None).join()
    lost = annotate.lost_frames(work, 1)
    assert lost and not work.progress.error  # the frames are made so that object 1 is lost somewhere
    annotate.select_object(work, 1)
    annotate.click(work, engine, lost[0], 4 + 3 * lost[0] + 5, 10, "add")
    annotate.start_tracking(work, engine, lost[0], "forward", 2).join()
    assert not work.progress.error
    work.update_object(2, name="the box", visible=False)
    return work


@pytest.mark.parametrize("blocker", ["a folder where the file goes", "a file where the export folder goes"])
def test_a_failed_export_loses_nothing_and_the_next_one_works(tmp_path, engine, blocker):
    """A real write failure (the file system refuses the path) while exporting: the user gets a
    plain message naming the file, the other file is made all the same where it can be, every
    prompt, mask and undo step is as it was, and once the path is free again the same export
    succeeds with the session's masks."""
    work = tracked_work(tmp_path, engine)
    doc, undo, registry = work.doc, list(work.undo), dict(work.registry)
    masks = {key: packed.unpack() for key, packed in doc.masks.items()}
    exports = work.folder / "exports"
    if blocker == "a folder where the file goes":
        (exports / "v_coco.json").mkdir(parents=True)
    else:
        exports.write_bytes(b"")
    with pytest.raises(annotate.ExportIncomplete) as error:
        annotate.export(work, ["png", "coco"])
    message = str(error.value)
    if blocker == "a folder where the file goes":  # only the COCO file's place is taken: the PNG masks are made
        assert [p.name for p in error.value.outcome.made] == ["v_masks.zip"]
        assert message.startswith("Made 1 of 2 file(s). Not made: the COCO file. Could not write the COCO file "
                                  "(Is a directory).")  # fmt: skip
    else:
        assert error.value.outcome.made == []
        assert message.startswith("Could not write the PNG masks (File exists). Could not write the COCO file "
                                  "(File exists). Nothing was made.")  # fmt: skip
    assert isinstance(error.value, UserError) and message.endswith("Your objects, clicks and masks are unchanged.")
    assert str(tmp_path) not in message and "Traceback" not in message
    assert work.doc is doc and work.undo == undo and work.registry == registry
    assert work.doc.masks.keys() == masks.keys()
    assert all(np.array_equal(work.doc.masks[key].unpack(), mask) for key, mask in masks.items())
    if exports.is_dir():
        assert list(exports.rglob("*partial*")) == []  # no half-written file left behind

    if blocker == "a folder where the file goes":
        (exports / "v_coco.json").rmdir()
    else:
        exports.unlink()
    png, coco = annotate.export(work, ["png", "coco"])
    expected = {f: {o: m for (g, o), m in masks.items() if g == f and m.any()} for f in range(N)}
    got = exporting.read_coco(coco)
    assert got.keys() == expected.keys()
    assert all(got[f].keys() == expected[f].keys() for f in range(N))
    assert all(np.array_equal(got[f][o], expected[f][o]) for f in range(N) for o in expected[f])
    assert sorted(exporting.read_png_zip(png)) == list(range(N))


def test_a_saved_session_gives_back_the_same_masks(tmp_path, engine, predictor):
    """Save the session, load it in a fresh session on the same video: the very same masks.

    Exact equality, not an IoU bar: the file carries the masks themselves (their packed bits),
    not a recipe to compute them again, so anything but bit-for-bit equal would be a bug. Tracked
    and lost frames, prompts, names and visibility come back too, and tracking goes on from the
    loaded prompts as it would have in the original session."""
    original = tracked_work(tmp_path, engine)
    (path,) = annotate.export(original, ["session"])
    restored = make_work(tmp_path, engine, "s2")
    message = annotate.load_session(restored, engine, path)
    assert "Loaded 2 object(s) and 3 prompt(s) with their masks on 6 frame(s)" in message
    assert restored.doc.masks.keys() == original.doc.masks.keys() and len(original.doc.masks) == 2 * N
    for frame in range(N):
        got, want = restored.doc.frame_masks(frame), original.doc.frame_masks(frame)
        assert got.keys() == want.keys() == {1, 2}
        assert all(np.array_equal(got[obj], want[obj]) for obj in want), frame
    assert restored.doc.tracked == original.doc.tracked
    assert restored.doc.prompts() == original.doc.prompts()
    assert [(o.id, o.name, o.visible) for o in restored.objects] == [(1, "object 1", True), (2, "the box", False)]
    assert annotate.lost_frames(restored, 1) == annotate.lost_frames(original, 1)
    assert core_views.timeline_image(restored, 0).tobytes() == core_views.timeline_image(original, 0).tobytes()

    # The predictor holds the same prompts (its tracking memory is not saved: tracking again
    # starts afresh from them, as after an undo across a tracking run).
    for frame, obj in original.doc.prompts():
        assert stored_prompt(restored, obj, frame) == stored_prompt(original, obj, frame)
    annotate.start_tracking(restored, engine, 0, "forward", None).join()
    assert not restored.progress.error
    ref = direct(predictor)
    for (frame, obj), prompt in original.doc.prompts().items():
        ref.prompt(frame, obj, prompt.points, prompt.labels, prompt.box)
    ref.track(0, N - 1, False)
    assert_same_masks(restored, ref.masks)
    annotate.undo(restored, engine)
    assert "Undid: load session" in annotate.undo(restored, engine)
    assert not restored.doc.masks and restored.doc.object_ids == (1,)


def test_a_session_of_another_video_is_refused_and_changes_nothing(tmp_path, engine):
    original = tracked_work(tmp_path, engine)
    (path,) = annotate.export(original, ["session"])
    other = make_work(tmp_path, engine, "s2", frames=[np.ascontiguousarray(f[:, ::-1]) for f in FRAMES])
    annotate.click(other, engine, 1, 8, 8, "add")
    doc, undo = other.doc, list(other.undo)
    with pytest.raises(UserError, match="saved for another video"):
        annotate.load_session(other, engine, path)
    assert other.doc is doc and other.undo == undo
    assert stored_prompt(other, 1, 1) == ([(8, 8)], [1]) and engine.object_ids(other.video.handle) == [1]


# ----------------------------------------------------------------------------- frames


def test_the_page_and_the_predictor_share_one_store_of_frames(tmp_path, predictor):
    """--frame-storage png: frames are kept once, compressed, for drawing and for the model;
    PNG is lossless, so the masks are exactly those of raw frames."""
    png = Engine(SAM2VideoPredictor(predictor.model, corrections_as_cond=True, frame_encoding="png"))
    work = make_work(tmp_path, png)
    assert work.video.frames is work.video.handle.frames and work.video.frames.encoding == "png"
    assert work.video.decoded.frames == []  # no second copy of the pixels
    assert work.video.count == N and work.video.size == (H, W)
    assert all(np.array_equal(work.video.frames[i], FRAMES[i]) for i in range(N))
    annotate.click(work, png, 3, 12, 10, "add")
    assert np.array_equal(work.doc.frame_masks(3)[1], direct(predictor).prompt(3, 1, [(12, 10)], [1]))
    assert core_views.frame_view(work, 3).shape == (H, W, 3)


def test_the_model_line_names_variant_size_and_precision(predictor):
    assert Engine(predictor).describe() == "sam2.1_hiera_tiny, 64 px, float32 on cpu"
    fast = Engine(SAM2VideoPredictor(predictor.model, precision="bfloat16"))
    assert fast.describe() == "sam2.1_hiera_tiny, 64 px, bfloat16 on cpu"


def test_the_choices_made_on_this_machine_are_told_with_their_reasons(predictor):
    """The page and the log say why: the precision's measurement (or the option) and each kernel."""
    from annotation.options import precision_reason

    assert precision_reason("float32", "cpu") == "precision float32, as --precision asked"
    auto = precision_reason("auto", "cpu")
    assert auto.startswith("fast mode on this CPU: ") and "must reach 1.25x; measured: float32 " in auto
    assert precision_reason("auto", "cpu") == auto  # kept: the same words on a second asking
    spec = ModelSpec("sam2.1_hiera_t", Path("unused.pt"), precision_reason=auto)
    lines = Engine(predictor, spec).describe_choices()
    assert lines[0] == auto and all(line.startswith("attention: ") for line in lines[1:]) and len(lines) >= 2


# ----------------------------------------------------------------------------- views


def test_views_draw_masks_prompts_and_the_timeline(tmp_path, engine):
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 1, 4, 4, "add")
    image = core_views.frame_view(work, 1)
    assert image.shape == (H, W, 3) and (image != work.video.frames[1]).any()
    work.update_object(1, visible=False)
    assert "(hidden)" in views.object_choices(work)[0][0]
    geometry = core_views.TimelineGeometry.for_frames(N)
    assert geometry.frame_at(geometry.cell * 3 + 1) == 3 and geometry.frame_at(10_000) == N - 1
    timeline = core_views.timeline_image(work, 2)
    assert timeline.shape[1] == geometry.cell * N
    assert views.frame_file(work, 1).is_file() and views.timeline_file(work, 1).suffix == ".png"
    for _ in range(40):  # each fetched by the page (ui.access serves it), and kept a while for more fetches
        path = views.frame_file(work, 1)
        assert work.views.read(path.name) == path.read_bytes()
    assert len([p for p in (work.folder / "view").iterdir() if p.suffix == ".png"]) == 40 + 2  # no partial files


# ----------------------------------------------------------------------------- command line


def test_cli_options():
    import app

    options = app.parse_args(["--model", "sam2_hiera_s", "--image-size", "768", "--max-frames", "50"])
    assert options.model == "sam2_hiera_s" and options.image_size == 768 and options.limits.max_frames == 50
    assert (app.parse_args([]).model == "sam2.1_hiera_t"
            and app.parse_args([]).host in ("127.0.0.1", os.environ.get("GRADIO_SERVER_NAME")))
    for bad in (["--model", "sam3"], ["--image-size", "640"], ["--max-frames", "0"]):
        with pytest.raises(SystemExit):
            app.parse_args(bad)


def test_cli_precision_and_frame_storage(capsys):
    import app
    from sam2.precision import Precision

    default = app.parse_args([])
    assert default.precision == Precision.fastest_supported("cpu")  # auto: bfloat16 where measured faster
    assert default.precision in ("float32", "bfloat16") and default.frame_storage == "png"
    for name in ("float32", "bfloat16", "float16"):
        assert app.parse_args(["--precision", name]).precision == name
    assert app.parse_args(["--precision", "auto", "--device", "cuda"]).precision == Precision.fastest_supported("cuda")
    assert [app.parse_args(["--frame-storage", f]).frame_storage for f in ("raw", "jpeg")] == ["raw", "jpeg"]
    for bad in (["--precision", "float64"], ["--frame-storage", "webp"], ["--device", "toaster"]):
        with pytest.raises(SystemExit):
            app.parse_args(bad)
    assert "--device toaster" in capsys.readouterr().err


# ----------------------------------------------------------------------------- messages and the log


def test_messages_show_names_as_text():
    """The page's messages are plain text holding user names: shown through Markdown (status,
    progress, video facts) every character that could start markup is escaped, and through HTML
    (toasts, legend) they are entity-escaped; direction controls and lone surrogates show as
    U+FFFD. Ordinary messages are left as they are (API clients read them too)."""
    plain = ("Loaded 'walk_2.mp4'. The model now runs at 768 px (was 512 px); press Track: 12/40 frames, 1.5 s. "
             "Imported 3 prompt(s) from 'import_3000.json'.")  # an underscore inside a word is no markup
    assert views.markdown_text(plain) == plain
    hostile = ("<img src=x> [a](b) ![i](c) **b** _i_ `c` $$x$$ ~~s~~ a|b &amp; http://e.org www.e.org m@e.org \\ "
               "__u__ a_ _b")  # fmt: skip
    escaped = views.markdown_text(hostile)
    for mark in ("<", ">", "[", "]", "*", "_", "`", "$", "~", "|", "&"):
        assert escaped.count("\\" + mark) == hostile.count(mark), mark  # every one escaped
    assert "http\\://" in escaped and "www\\." in escaped and "m\\@e.org" in escaped
    assert re.sub(r"\\(.)", r"\1", escaped) == hostile  # unescaped, exactly the text
    assert views.markdown_text("# a\n> b\n- c\n12. d") == "\\# a\n\\> b\n\\- c\n12\\. d"
    assert views.html_text("<b>&'\"") == "&lt;b&gt;&amp;&#x27;&quot;"
    assert views.neutral("a\u202eb\u2066c\ud800d") == "a\ufffdb\ufffdc\ufffdd"


def test_log_lines_name_the_session_also_from_its_threads():
    """A log line names the session it came from (ui.logs.SESSION, set by every handler), also
    from a thread started for the session's work (tracking, loading a file): such a thread runs
    in a copy of its starter's context; one started plainly would not know the session."""
    import io
    import logging
    import threading

    from annotation import operations
    from ui import logs

    stream = io.StringIO()
    handler = logs.configure(stream)
    log = logging.getLogger("annotation.operations")
    try:
        token = logs.SESSION.set("sess-42")
        for target in (operations._in_this_context(lambda: log.error("from its run")), lambda: log.error("plain")):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
        log.warning("in the request")
        logs.SESSION.reset(token)
        log.warning("outside any")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "ERROR annotation.operations [session sess-42]: from its run",
        "ERROR annotation.operations [session -]: plain",
        "WARNING annotation.operations [session sess-42]: in the request",
        "WARNING annotation.operations [session -]: outside any",
    ]


def test_timeline_cells_by_the_rule(tmp_path, engine):
    """The timeline's cells, pixel by pixel: grey without a result, red where tracking lost the
    object, its colour where found (darker the smaller than its largest mask), a white dot on a
    prompted frame that stays inside its own cell, and the shown frame marked. 90 frames make
    cells 8 px wide, where the dot's edge reaches the next cell's first column."""
    work = make_work(tmp_path, engine, frames=[FRAMES[i % N] for i in range(90)])
    mask = np.zeros((H, W), bool)
    packed = {area: PackedMask.pack(mask | (np.arange(H * W).reshape(H, W) < area)) for area in (5, 20)}
    masks = {(10, 1): packed[5], (11, 1): PackedMask.pack(mask), (20, 1): packed[20]}
    work.doc = replace(work.doc, masks=masks, tracked=frozenset({(11, 1), (20, 1)}),
                       calls=(PromptCall(10, 1, PromptSpec(((1.0, 1.0),), (1,))),))  # fmt: skip
    image = core_views.timeline_image(work, 50)
    cell, top = 8, core_views.TIMELINE_HEADER
    assert core_views.TimelineGeometry.for_frames(90).cell == cell and image.shape == (top + 20, 90 * cell, 3)
    middle = top + 10
    colour = np.array(work.registry[1].color, float)
    shade = 0.45 + 0.55 * 5 / 20
    small = (colour * shade + 255 * (1 - shade) * 0.25).astype(np.uint8)
    assert tuple(image[top + 2, 10 * cell]) == tuple(small)  # found, a quarter of the largest
    assert tuple(image[top + 2, 20 * cell]) == tuple(colour.astype(np.uint8))  # the largest
    assert tuple(image[top + 2, 11 * cell + 1]) == core_views.LOST_CELL
    assert tuple(image[top + 2, 12 * cell]) == core_views.EMPTY_CELL  # not tracked
    assert tuple(image[middle, 10 * cell + 4]) == (255, 255, 255)  # the prompt's dot
    assert tuple(image[middle, 11 * cell]) == core_views.LOST_CELL  # ...not in the next cell
    assert tuple(image[0, 50 * cell]) == (40, 40, 40) and tuple(image[middle, 50 * cell]) == (40, 40, 40)


def test_the_page_gives_the_speed_measured_on_this_machine(predictor):
    """The tracking help's speed words come from an encoding timed here, not from a figure
    written for some other CPU."""
    from ui.layout import track_help

    engine = Engine(predictor)
    speed = engine.measure_speed()
    assert speed is engine.speed and speed.image_size == IMAGE_SIZE and 0 < speed.encode_s < 60
    assert speed.frame_s(3) > speed.frame_s(1) > speed.encode_s
    words = track_help(speed)
    assert "about a second" not in words
    assert f"about {speed.frame_s(1):.1f} s per frame with one object" in words
    assert f"encoding a frame here at start: {speed.encode_s:.2f} s at {IMAGE_SIZE} px" in words
    assert "depends on the machine" in track_help(None)  # ZeroGPU: nothing measured at start
    # Another model size: the figures are scaled from the same encoding, and say the size.
    other = track_help(speed, 2 * IMAGE_SIZE)
    assert f"about {speed.frame_s(1, 2 * IMAGE_SIZE):.1f} s per frame with one object" in other
    assert f"at {2 * IMAGE_SIZE} px (estimated" in other


def test_frames_to_track_count_the_frames_after_the_one_shown(tmp_path, engine, predictor):
    """"Track 2 frames" from frame 1 tracks frames 2 and 3 (frame 1 has its mask from the
    click) and says 2/2 frames; backward from frame 0 there is nothing to track."""
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 1, 7, 10, "add")
    assert annotate.plan_tracking(work, 1, "both", 2) == [(1, 2, False), (1, 1, True)]  # only frame 0 is before
    annotate.start_tracking(work, engine, 1, "forward", 2).join()
    assert work.progress.done == work.progress.total == 2 and "2/2 frames" in work.progress.summary()
    assert {f for f, _ in work.doc.tracked} == {1, 2, 3}
    ref = direct(predictor)
    ref.prompt(1, 1, [(7, 10)], [1])
    ref.track(1, 2, False)
    assert_same_masks(work, ref.masks)
    annotate.start_tracking(work, engine, 0, "backward", None).join()
    assert work.progress.done == work.progress.total == 0 and not work.progress.error


def test_tracking_time_left_starts_from_the_estimate_and_follows_the_frames_done():
    """The time left: none said without a basis; from the estimate at first; then blended
    towards the pace of the frames done after the first (which pays for the warm-up)."""
    from annotation.work import ESTIMATE_WEIGHT, TrackProgress

    blind = TrackProgress(running=True, label="Tracking forward", total=10, started=100.0)
    assert blind.seconds_left(101.0) is None and blind.summary().endswith(", starting...")
    progress = TrackProgress(running=True, label="Tracking forward", total=10, started=100.0, estimate_s=2.0)
    assert progress.seconds_left(100.0) == 20.0 and progress.seconds_left(101.5) == 18.5  # falls while a frame runs
    progress.count_one(now=110.0)  # the first frame, with the warm-up: 10 s
    assert progress.unit_s() == 2.0  # no pace from one frame
    for t in (114.0, 118.0, 122.0):  # then 4 s a frame
        progress.count_one(now=t)
    weight = 3 / (3 + ESTIMATE_WEIGHT)
    assert progress.unit_s() == pytest.approx((1 - weight) * 2.0 + weight * 4.0)
    assert progress.seconds_left(122.0) == pytest.approx(6 * progress.unit_s())
    for t in range(126, 126 + 4 * 40, 4):  # many frames later the pace is the measured one
        progress.total += 1
        progress.count_one(now=float(t))
    assert progress.unit_s() == pytest.approx(4.0, rel=0.1)
    running = progress.summary()
    assert re.search(r": 44/50 frames, [34]\.\d s per frame, about \d+ s left$", running), running


def test_the_tracking_estimate_is_for_the_objects_and_the_videos_size(tmp_path, predictor):
    """The estimate a run starts from counts the objects the predictor tracks, at the size the
    video runs at; without a speed measured there is none."""
    from annotation.engine import SpeedEstimate

    engine = Engine(predictor)
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 7, 10, "add")
    annotate.add_object(work)
    annotate.click(work, engine, 0, 25, 20, "add")
    assert annotate.tracking_estimate(work, engine) is None
    engine.speed = SpeedEstimate(IMAGE_SIZE, 0.5)
    assert annotate.tracking_estimate(work, engine) == SpeedEstimate(IMAGE_SIZE, 0.5).frame_s(2, IMAGE_SIZE)
    annotate.start_tracking(work, engine, 0, "forward", 1).join()
    assert work.progress.estimate_s == engine.speed.frame_s(2)
    speed = SpeedEstimate(512, 0.25)
    assert speed.encode_at(1024) == 1.0 and speed.frame_s(3, 1024) == pytest.approx(1.0 * (1 + 3.3))
    assert speed.frame_s(1) == pytest.approx(0.25 * (1 + 0.55))


def test_find_objects_times_are_estimated_here_for_the_size_chosen():
    """The densities' times come from the encoding timed here, scaled for the model size, and
    the help says so; none is quoted where nothing was timed."""
    from annotation.engine import FIND_POINT_ENCODINGS, SpeedEstimate
    from ui.find_page import density_label, times_text

    speed = SpeedEstimate(512, 0.3)
    assert speed.find_s(16, 512) == pytest.approx(0.3 * (1 + FIND_POINT_ENCODINGS * 256))
    assert speed.find_s(16, 1024) == pytest.approx(4 * speed.find_s(16, 512))
    about = f"about {speed.find_s(16, 512):.0f} s here at 512 px"
    assert density_label(16, speed, 512) == f"16 per side (256 points, {about})"
    assert "1024 px" not in density_label(16, speed, 512) and "at 1024 px" in density_label(16, speed, 1024)
    assert density_label(16, None, 512) == "16 per side (256 points)"
    words = times_text(speed, 768)
    assert "estimated for 768 px from a frame encoded on this machine at start (0.30 s at 512 px)" in words
    assert "EPYC" not in words and "depends on the machine" in times_text(None, 512)


def test_the_status_line_while_a_long_step_runs_says_what_runs():
    from annotation.work import TrackProgress
    from ui.callbacks import running_status

    tracking = TrackProgress(running=True, label="Tracking both", total=7)
    assert running_status(tracking, "from frame 3", counted=True) == (
        "Tracking both from frame 3 (7 frames)... Cancel stops it: the frames done so far are kept.")
    making = TrackProgress(running=True, label="Making files", total=12, part="the COCO file",
                           kept="the files made so far are kept")
    assert running_status(making) == "Making files (the COCO file)... Cancel stops it: the files made so far are kept."
    kept = "your objects, clicks and masks stay as they were"
    reading = TrackProgress(running=True, label="Reading 'a.json'", kept=kept)
    assert running_status(reading) == f"Reading 'a.json'... Cancel stops it: {kept}."


def test_a_dragged_box_is_checked_and_a_bad_one_changes_nothing(tmp_path, engine, predictor):
    """The box a drag sends (ui.drag, from a hidden field any client can fill): hostile values
    get a plain message and change nothing, not even a first corner clicked in Box mode; a good
    one is the box prompt the predictor gives that box directly, with its corners in any order."""
    from ui.drag import add_dragged_box

    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 2, 3, 3, "box")  # a first corner from a click in Box mode
    hostile = [
        "[NaN, 1, 10, 10]", "[1, 1, Infinity, 10]", "[1, -Infinity, 10, 10]", "[1e308, 1, 1e999, 5]",
        "[-5, -5, 10, 10]", "[0, 0, 40, 10]", "[1, 1, 10, 24]", "[1, 1, 2, 2]", "[5, 5, 5, 20]",
        "hello", "", "   ", "[[1, 2], [3, 4]]", "[[1, 2, 3, 4]]", '{"x0": 1, "y0": 1, "x1": 9, "y1": 9}',
        "[1, 2, 3]", "[1, 2, 3, 4, 5]", "[true, 1, 10, 10]", '["1", 2, 10, 10]', "[null, 1, 10, 10]",
        "[" * 5000, "[1, 1, 10, 10" + "0" * 300 + "]", None, 5, [1, 1, 10, 10], {"box": 1}, "\x00\ud800",
    ]  # fmt: skip
    for text in hostile:
        doc, steps = work.doc, len(work.undo)
        with pytest.raises(UserError) as problem:
            add_dragged_box(work, engine, 2, text)
        message = str(problem.value)
        assert message.endswith(".") and len(message) < 200 and "Traceback" not in message, (text, message)
        assert "drag" in message.lower(), message  # says what to do
        assert work.doc is doc and len(work.undo) == steps and work.pending_corner == (2, 3.0, 3.0), text
    with pytest.raises(UserError, match="outside the video"):
        add_dragged_box(work, engine, N, "[1, 1, 10, 10]")
    work.active = None  # the box is fine, the object is missing: the first corner is kept too
    with pytest.raises(UserError, match="No object is chosen"):
        add_dragged_box(work, engine, 2, "[1, 1, 10, 10]")
    assert work.pending_corner == (2, 3.0, 3.0)
    work.active = 1

    assert "Added a box for 'object 1' on frame 2" in add_dragged_box(work, engine, 2, "[20, 15.5, 4, 5]")
    assert work.doc.prompts()[(2, 1)].box == (4.0, 5.0, 20.0, 15.5)
    assert work.pending_corner is None
    assert np.array_equal(work.doc.frame_masks(2)[1], direct(predictor).prompt(2, 1, box=(4, 5, 20, 15.5)))
    assert "Undid" in annotate.undo(work, engine)
    assert (2, 1) not in work.doc.prompts()  # one step, undone at once
