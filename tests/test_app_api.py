"""The app driven through its named API endpoints with ``gradio_client`` (the real app in a
subprocess): a whole flow checked against the predictor, Cancel, and isolation between users."""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from annotation import formats as exporting
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import Replay, assert_masks_match, start_app

MAX_SESSIONS = 4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    running = start_app(reference_checkpoint, workdir, "--max-sessions", str(MAX_SESSIONS), quick_close=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "api.mp4", size=(160, 120), fps=6, seconds=1.0)


def client(app) -> Client:
    return Client(app.url, verbose=False, download_files=False)


def file_url(app, value) -> str:
    """The URL of a file output (a FileData dict when download_files=False)."""
    path = value["path"] if isinstance(value, dict) else value
    return f"{app.url}gradio_api/file={path}"


def get(app, c: Client, url: str) -> httpx.Response:
    return httpx.get(url, cookies=c.cookies, timeout=30)


def export(c: Client, *formats: str) -> list:
    outputs = c.predict(list(formats), api_name="/export")
    return outputs[-1]


def plain(markdown: str) -> str:
    """A message line as the page shows it: its Markdown escapes undone (the page escapes every
    message so that names in it stay text)."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def new_log(app, start: int) -> str:
    """What the app logged since ``start`` (a length of its log)."""
    return app.log_text()[start:]


# The outputs of the page's full refresh (ui.callbacks.Controls.view_outputs) as the API gives
# them, by name (buttons are not API outputs).
VIEW = ("viewer", "frame", "status", "objects", "name", "visible", "legend", "timeline", "video", "progress",
        "label", "labels",  # ui.datasets_page
        "choices", "found",  # ui.find_page
        "model", "track_help", "find_help", "density",  # the views that follow the model size
        "replace_question", "replace_file",  # ui.guard_page (an API client is never asked: always empty)
        "text_found", "text_every", "text_plan")  # ui.text_page (its found-boxes column is no value)


def test_flow_through_the_api_matches_the_predictor(app, video, reference_checkpoint, workdir):
    assert "Model: sam2.1_hiera_tiny, 512 px, float32 on cpu" in app.log_text()  # as Replay computes
    c = client(app)
    outputs = c.predict(handle_file(str(video)), api_name="/upload_video")
    assert "Loaded 'api.mp4'" in outputs[2]
    point = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
    assert point["areas"]["1"] > 0, point
    box = c.predict(frame=0, x0=10.0, y0=10.0, x1=70.0, y1=50.0, obj_id=2, api_name="/add_box")
    assert "box" in box["message"]
    result = c.predict(direction="forward", frame=0, frames=0, api_name="/track")
    frames = decode(video, MediaLimits()).frames
    assert result["done"] == len(frames) - 1 and not result["error"]  # every frame after the one shown

    files = export(c, "coco", "session")
    assert [Path(f["path"]).name for f in files] == ["api_session.json", "api_coco.json"]  # the session file first
    coco_path = workdir / "api-annotations.json"
    response = get(app, c, file_url(app, files[1]))
    assert response.status_code == 200
    coco_path.write_bytes(response.content)

    ref = Replay.start(reference_checkpoint, frames)
    ref.prompt(0, 1, [(80.0, 60.0)], [1])
    ref.prompt(0, 2, box=(10.0, 10.0, 70.0, 50.0))
    ref.track(0, len(frames) - 1, False)
    assert_masks_match(exporting.read_coco(coco_path), ref.masks, len(frames))


def test_a_failed_export_loses_nothing(app, video, workdir):
    """The COCO file's place in the session's export folder is taken by a folder, so the export
    really fails: the page gets a plain message, the session's prompts and masks stay as they
    were (its session file says so), and once the place is free the export works again and
    gives the same masks as before."""
    c = client(app)
    try:
        outputs = c.predict(handle_file(str(video)), api_name="/upload_video")
        assert str(outputs[2]).startswith("Loaded"), outputs[2]
        exports = Path(outputs[0]["path"]).parents[1] / "exports"  # <session>/view/<frame image>
        assert c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")["areas"]["1"] > 0
        assert not c.predict(direction="forward", frame=0, frames=2, api_name="/track")["error"]

        def download(what: str) -> Path:
            (file,) = export(c, what)
            target = workdir / f"failed-export-{len(list(workdir.glob('failed-export-*')))}-{Path(file['path']).name}"
            target.write_bytes(get(app, c, file_url(app, file)).content)
            return target

        coco_before, session_before = download("coco"), json.loads(download("session").read_text())
        (exports / "api_coco.json").unlink()
        (exports / "api_coco.json").mkdir()
        status = plain(c.predict(["coco"], api_name="/export")[2])
        assert status.startswith("**Problem:** Could not write the COCO file (Is a directory)"), status
        assert "unchanged" in status and str(exports) not in status and "Traceback" not in status
        session_after = json.loads(download("session").read_text())
        assert ((session_after["prompts"], session_after["masks"])
                == (session_before["prompts"], session_before["masks"]))
        assert len(session_after["masks"]) == 3 and session_after["objects"] == session_before["objects"]

        (exports / "api_coco.json").rmdir()
        coco_after = download("coco")
        before, after = exporting.read_coco(coco_before), exporting.read_coco(coco_after)
        assert before.keys() == after.keys() and any(before.values())
        assert all(before[f].keys() == after[f].keys() for f in before)
        assert all((before[f][o] == after[f][o]).all() for f in before for o in before[f])
    finally:
        c.close()


def test_the_sampling_rate_is_the_users_choice(app, video):
    """The 6 fps clip kept at 3 fps has 3 frames; left out, the rate is the video's own."""
    c = client(app)

    def video_info(*args) -> str:
        outputs = c.predict(handle_file(str(video)), *args, api_name="/upload_video")
        return next(o for o in outputs if isinstance(o, str) and "frames at" in o)

    try:
        assert "3 frames at 3 fps" in video_info(3)
        assert "6 frames at 6 fps" in video_info()
    finally:
        c.close()


def test_cancel_keeps_the_frames_done(app, workdir):
    long_video = media_factory.testsrc(workdir / "long.mp4", size=(96, 64), fps=10, seconds=3.0)
    c = client(app)
    c.predict(handle_file(str(long_video)), api_name="/upload_video")
    c.predict(frame=0, x=40.0, y=30.0, positive=True, obj_id=1, api_name="/add_point")
    job = c.submit(direction="forward", frame=0, frames=0, api_name="/track")
    time.sleep(3.0)
    c.predict(api_name="/cancel")
    result = job.result(timeout=120)
    assert "Cancelled" in result["message"], result
    assert 0 < result["done"] < 30
    png = workdir / "cancel-masks.zip"
    png.write_bytes(get(app, c, file_url(app, export(c, "png")[0])).content)
    masks = exporting.read_png_zip(png)
    assert len(masks) == 30  # every frame has a file...
    # ...masks only where tracked, and on the clicked frame (which `done` does not count: it had its mask)
    assert sum(1 for f in masks.values() if 1 in f) <= result["done"] + 1


def test_users_are_isolated(app, video):
    alice, bob = client(app), client(app)
    for c in (alice, bob):
        status = c.predict(handle_file(str(video)), api_name="/upload_video")[2]
        assert str(status).startswith("Loaded"), status
    alice.predict(frame=0, x=20.0, y=20.0, positive=True, obj_id=2, api_name="/add_point")
    # Bob's session has no object 2: the next new object there would be number 2.
    answer = bob.predict(frame=0, x=20.0, y=20.0, positive=True, obj_id=3, api_name="/add_point")
    assert "There is no object 3" in answer["message"] and "id 2" in answer["message"]

    url = file_url(app, export(alice, "session")[0])
    assert get(app, alice, url).status_code == 200
    stolen = get(app, bob, url)
    assert stolen.status_code == 403 and "another session" in stolen.text
    assert httpx.get(url, timeout=30).status_code == 403  # no cookie at all

    # Knowing Alice's session hash is not enough to act in her session.
    mallory = client(app)
    mallory.session_hash = alice.session_hash
    answer = mallory.predict(frame=0, x=30.0, y=30.0, positive=True, obj_id=1, api_name="/add_point")
    assert "belongs to another browser" in answer["message"]


def test_model_detail_applies_to_the_loaded_video(app, video):
    """The page's "Model detail" through the API: the video's clicks are applied again at the
    new size, and clicks afterwards run there too; the model line and the speeds quoted follow
    the size. Before that, the page's Track button: while it runs, the status line says what
    runs (not the last click's message), and "3 frames" are the 3 after the one shown."""
    c = client(app)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        before = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        job = c.submit(0, 3, api_name="/track_forward")
        final = dict(zip(VIEW, job.result(timeout=300), strict=True))
        said = [plain(dict(zip(VIEW, o, strict=True))["status"]) for o in job.outputs()[:-1]]
        running = "Tracking forward from frame 0 (3 frames)... Cancel stops it: the frames done so far are kept."
        assert said and all(s == running for s in said), said
        assert plain(final["progress"]).startswith("Tracking forward: 3/3 frames") and "Done" in final["status"]

        outputs = dict(zip(VIEW, c.predict(768, 0, api_name="/set_detail"), strict=True))
        assert "now runs at 768 px (was 512 px)" in outputs["status"], outputs["status"]
        assert plain(outputs["model"]) == "Model: sam2.1_hiera_tiny, 768 px, float32 on cpu."
        assert "at 768 px (estimated from encoding a frame here at start" in plain(outputs["track_help"])
        assert "estimated for 768 px from a frame encoded on this machine" in plain(outputs["find_help"])
        after = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert before["areas"]["1"] > 0 and after["areas"]["1"] > 0, (before, after)
    finally:
        c.close()


def frame_of(image: np.ndarray, frames: list[np.ndarray]) -> int:
    """Which video frame a view shows: the one most of whose pixels it holds exactly (masks and
    clicks are drawn over part of it; frames are kept losslessly, so the rest is unchanged)."""
    same = [int((image == frame).all(-1).sum()) for frame in frames]
    return int(np.argmax(same)) if sorted(same)[-1] > sorted(same)[-2] else -1


def test_frame_changes_and_clicks_while_tracking(app, workdir):
    """Many frame changes and clicks on one session at once while it tracks (the queue runs up
    to four of each together): no server error, every picture a response names can be fetched
    (they once shared names, or were deleted before the browser asked), and each shows the
    frame asked for, by its pixels."""
    # 20 frames: tracking them outlasts the first clicks (refused while it runs) many times over
    # on any machine, and the test waits for all of them, so each frame more is only cost.
    video = media_factory.testsrc(workdir / "busy.mp4", size=(96, 64), fps=10, seconds=2.0)
    frames = decode(video, MediaLimits()).frames
    start = len(app.log_text())
    c = client(app)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        assert c.predict(frame=0, x=48.0, y=32.0, positive=True, obj_id=1, api_name="/add_point")["areas"]["1"] > 0
        tracking = c.submit(direction="forward", frame=0, frames=0, api_name="/track")
        wanted = [int(f) for f in np.random.default_rng(0).integers(0, len(frames), 40)]
        shows = [c.submit(frame, api_name="/show_frame") for frame in wanted]
        clicks = [c.submit(frame=f, x=20.0, y=20.0, positive=False, obj_id=1, api_name="/add_point")
                  for f in wanted[:12]]  # fmt: skip
        pictures = [job.result(timeout=600) for job in shows]
        said = [job.result(timeout=600)["message"] for job in clicks]
        result = tracking.result(timeout=600)
        assert result["done"] == len(frames) - 1 and not result["error"], result
        # Clicks while tracking runs are refused in words; those after it are made.
        assert any("Tracking forward is still running" in m for m in said), said
        assert all("still running" in m or m.startswith("Added a point -") for m in said), said
        names = [Path(p[0]["path"]).name for p in pictures] + [Path(p[1]["path"]).name for p in pictures]
        assert len(set(names)) == len(names)  # every response its own files
        for frame, (viewer, timeline, _) in zip(wanted, pictures, strict=True):
            for picture in (viewer, timeline):
                response = get(app, c, file_url(app, picture))
                assert response.status_code == 200, (frame, picture["path"], response.status_code)
            image = np.array(Image.open(io.BytesIO(get(app, c, file_url(app, viewer)).content)).convert("RGB"))
            assert frame_of(image, frames) == frame
        log = new_log(app, start)
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        c.close()


def hostile_files(folder: Path, saved: dict) -> list[tuple[Path, str]]:
    """Hand-made session files for the page, with what its message must say."""
    folder.mkdir(exist_ok=True)
    cases = []

    def case(name: str, content: str, message: str) -> None:
        (folder / name).write_text(content)
        cases.append((folder / name, message))

    case("garbage.json", "{'version': 2,", "is not a session file: it is not valid JSON")
    case("nested.json", "[" * 50_000 + "]" * 50_000, "its JSON is nested too deeply")
    zero = copy.deepcopy(saved)
    zero["objects"][0]["id"] = 0
    case("zero.json", json.dumps(zero), "objects[0].id must be a whole number from 1 to 255")
    far = copy.deepcopy(saved)
    far["prompts"][0]["points"][0] = [1e300, 5]
    case("far.json", json.dumps(far), "prompts[0].points[0] (1e+300, 5) is outside the 160x120 frame")
    again = copy.deepcopy(saved)
    again["prompts"] = [again["prompts"][0]] * 3000
    case("again.json", json.dumps(again), "prompts[1] is a second prompt of object 1 on frame 0")
    return cases


def test_hostile_session_files_through_the_page(app, video, workdir):
    """A few of the hostile files of tests/test_session_files.py through the running app: a
    plain message (status line) naming the field, the session as it was (its own session file
    says so), the next click and export work, and nothing in the server's log."""
    start = len(app.log_text())
    c = client(app)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert not c.predict(direction="forward", frame=0, frames=2, api_name="/track")["error"]
        (before,) = export(c, "session")
        saved = json.loads(get(app, c, file_url(app, before)).content)
        for path, message in hostile_files(workdir / "hostile", saved):
            started = time.monotonic()
            outputs = dict(zip((*VIEW, "file"), c.predict(handle_file(str(path)), 0, api_name="/load_session"),
                               strict=True))  # fmt: skip
            status = plain(outputs["status"])
            assert status.startswith(f"**Problem:** '{path.name}' is not a") and message in status, status
            assert time.monotonic() - started < 30  # refused, not replayed
            (after,) = export(c, "session")
            assert json.loads(get(app, c, file_url(app, after)).content) == saved, path.name
        answer = c.predict(frame=1, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert answer["message"].startswith("Added a point +") and answer["areas"]["1"] > 0
        log = new_log(app, start)
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        c.close()


def test_a_long_load_shows_progress_and_cancel_keeps_the_work(app, video, workdir):
    """A session file of many prompts takes a while (a model call each): the progress line
    counts them, clicks meanwhile are told a load is running (not tracking), Cancel stops it
    and the session is as it was; loaded again to the end, it replaces the work in one step."""
    c = client(app)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        (first,) = export(c, "session")
        saved = json.loads(get(app, c, file_url(app, first)).content)
        frames = saved["video"]["frames"]
        big = copy.deepcopy(saved)
        big["objects"] = [{**saved["objects"][0], "id": i, "name": f"part {i}"} for i in range(1, 21)]
        big["prompts"] = [{"frame": f, "obj_id": i, "points": [[8.0 * i, 6.0 * i]], "labels": [1], "box": None}
                          for i in range(1, 21) for f in range(frames)]  # fmt: skip
        big["masks"] = []
        path = workdir / "big_session.json"
        path.write_text(json.dumps(big))

        job = c.submit(handle_file(str(path)), 0, api_name="/load_session")
        deadline = time.monotonic() + 120
        while not any("Loading the session file" in plain(o[VIEW.index("progress")] or "") for o in job.outputs()):
            assert time.monotonic() < deadline and not job.done(), job.outputs()
            time.sleep(0.1)
        busy = c.predict(frame=0, x=10.0, y=10.0, positive=True, obj_id=1, api_name="/add_point")
        assert "Loading the session file is still running" in busy["message"], busy
        assert "stay as they were" in plain(c.predict(api_name="/cancel"))
        outputs = dict(zip((*VIEW, "file"), job.result(timeout=120), strict=True))
        assert "Loading cancelled: your objects, clicks and masks stay as they were." in plain(outputs["status"])
        assert "Cancelled" in plain(outputs["progress"])
        (after,) = export(c, "session")
        assert json.loads(get(app, c, file_url(app, after)).content) == saved

        outputs = dict(zip((*VIEW, "file"), c.predict(handle_file(str(path)), 0, api_name="/load_session"),
                           strict=True))  # fmt: skip
        assert plain(outputs["status"]).startswith(f"Loaded 20 object(s) and {20 * frames} prompt(s)")
        assert f"{20 * frames}/{20 * frames} prompts" in plain(outputs["progress"])
        undone = plain(c.predict(0, api_name="/undo")[VIEW.index("status")])
        assert undone.startswith("Undid: load session file"), undone
        (back,) = export(c, "session")
        restored = json.loads(get(app, c, file_url(app, back)).content)
        assert (restored["prompts"], restored["masks"]) == (saved["prompts"], saved["masks"])
        assert [o["id"] for o in restored["objects"]] == [1]  # (names are not part of the undo history)
    finally:
        c.close()


def test_an_unexpected_failure_is_a_plain_message_and_a_logged_traceback(app, video):
    """A failure the handlers do not expect (every argument is checked now, so a real one: the
    session's picture folder replaced by a file, as a full or broken disk would do) gets one plain
    sentence, not a raw error; the server's log has the traceback, on a line that names the
    session. A frame that is no number is expected: it is refused by name."""
    c = client(app)
    sessions = app.temp_dir / "sessions"
    try:
        before = set(sessions.iterdir()) if sessions.is_dir() else set()
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        answer = c.predict(frame="first", x=1.0, y=1.0, positive=True, obj_id=1, api_name="/add_point")
        assert answer["message"] == "Problem: frame must be a whole number, not the text 'first'.", answer
        (folder,) = set(sessions.iterdir()) - before
        pictures = folder / "view"
        shutil.rmtree(pictures)
        pictures.write_bytes(b"not a folder")
        start = len(app.log_text())
        status = plain(c.predict(2, api_name="/show_frame")[2])
        assert status.startswith("**Problem:** Something went wrong on the server (FileExistsError)"), status
        assert "Traceback" not in status
        log = new_log(app, start)
        line = rf"ERROR ui\.callbacks \[session {re.escape(c.session_hash)}\]: on_frame failed"
        assert re.search(line, log), log
        assert "Traceback" in log and "FileExistsError" in log
        pictures.unlink()  # the disk is well again
        ok = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert ok["message"].startswith("Added a point +")  # the session goes on
    finally:
        c.close()


def test_too_many_users_get_a_busy_message(app, video):
    """Past --max-sessions, a new user is told the server is busy. The clients are kept open, so
    the seats they get stay taken; earlier tests' sessions may still hold seats for a moment,
    so which of them is refused first is not fixed, but one more than the seats cannot all get in."""
    clients = [client(app) for _ in range(MAX_SESSIONS + 1)]
    messages = [str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]) for c in clients]
    busy = [m for m in messages if "The server is busy" in m]
    assert busy and sum(m.startswith("Loaded") for m in messages) <= MAX_SESSIONS, messages
    assert "try again in a few minutes" in busy[0]
