"""The app driven through its named API endpoints with ``gradio_client`` (the real app in a
subprocess): a whole flow checked against the predictor, Cancel, and isolation between users."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

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
    assert result["done"] == len(frames) and not result["error"]

    files = export(c, "coco", "session")
    assert [Path(f["path"]).name for f in files] == ["api_coco.json", "api_session.json"]
    coco_path = workdir / "api-annotations.json"
    response = get(app, c, file_url(app, files[0]))
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
        status = c.predict(["coco"], api_name="/export")[2]
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
    assert sum(1 for f in masks.values() if 1 in f) <= result["done"]  # ...masks only where tracked


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
    new size, and clicks afterwards run there too."""
    c = client(app)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        before = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        outputs = c.predict(768, 0, api_name="/set_detail")
        status = next(o for o in outputs if isinstance(o, str) and "px" in o)
        assert "now runs at 768 px (was 512 px)" in status, status
        after = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert before["areas"]["1"] > 0 and after["areas"]["1"] > 0, (before, after)
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
