"""Security probes against the real app (subprocess, loopback only).

What Gradio 6.31 serves, and what these probes cover:

- ``/gradio_api/file=<path>`` (and its older alias ``/gradio_api/file/<path>``): a file in
  Gradio's cache folder (the app's temp root, ``GRADIO_TEMP_DIR``), in ``allowed_paths`` (the
  app passes none) or a static path; anything else is 403. The app keeps each session's files
  in a folder inside that cache and ``ui.access.SessionFileGuard`` answers 403 to any browser
  but the session's own (the ``sam2_owner`` cookie).
- ``/file=<path>`` at the root: not a route in Gradio 6 (404); the guard still refuses it.
- ``/gradio_api/upload``: anyone may upload (that is how files reach an event); names are
  stripped to their last part; bodies over ``max_file_size`` (``--max-upload-mb``) get 413.
- ``/static``, ``/assets``, ``/svelte``: Gradio's own front-end files, confined to their folders.
- An event's file input (FileData ``path``) must lie in the cache folder (Gradio's check);
  the app also refuses any path inside a session's folder (ui/callbacks._upload_problem).
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests import media_factory
from tests.app_harness import ROOT, start_app

MAX_UPLOAD_MB = 1
LIMIT_BYTES = MAX_UPLOAD_MB * 1024 * 1024
APP_SOURCE = (ROOT / "app.py").read_bytes()
PASSWD_MARK = b"root:"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    running = start_app(
        reference_checkpoint, workdir, "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-sessions", "16", quick_close=True
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "sec.mp4", size=(160, 120), fps=6, seconds=1.0)


class Victim:
    """A user with a video, a click and exported files, who keeps the page open."""

    def __init__(self, app, video: Path) -> None:
        self.client = Client(app.url, verbose=False, download_files=False)
        outputs = self.client.predict(handle_file(str(video)), api_name="/upload_video")
        assert str(outputs[2]).startswith("Loaded"), outputs[2]
        self.viewer = outputs[0]["path"]
        answer = self.client.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert answer["areas"]["1"] > 0, answer
        files = self.client.predict(["overlay", "coco", "session"], api_name="/export")[-1]
        self.files = {Path(f["path"]).name: f["path"] for f in files}
        self.coco = self.files["sec_coco.json"]

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def alice(app, video):
    victim = Victim(app, video)
    yield victim
    victim.close()


@pytest.fixture
def victim(app, video):
    """A fresh victim for probes that may destroy its files."""
    person = Victim(app, video)
    yield person
    person.close()


# ----------------------------------------------------------------------------- helpers


def raw_get(app, path: str, method: str = "GET", cookie: str | None = None) -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no normalisation of ``..`` or %-escapes)."""
    url = urllib.parse.urlparse(app.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if cookie is not None:
            conn.putheader("Cookie", cookie)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fresh_cookies(app) -> dict[str, str]:
    """A new browser: the owner cookie the app hands out on a first request."""
    cookies = dict(httpx.get(app.url + "config", timeout=30).cookies)
    assert "sam2_owner" in cookies
    return cookies


def raw_event(
    app, api_name: str, data: list, cookies: dict[str, str], session_hash: str | None = None, timeout_s: float = 60.0,
) -> dict:
    """Call an event through Gradio's queue with hand-made input data (what a browser or
    gradio_client sends, but with any FileData path): the 'process_completed' message."""
    config = httpx.get(app.url + "config", timeout=30).json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    session_hash = session_hash or uuid.uuid4().hex
    body = {"data": data, "fn_index": fn, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    joined = httpx.post(app.url + "gradio_api/queue/join", json=body, cookies=cookies, timeout=30)
    joined.raise_for_status()
    event_id = joined.json()["event_id"]
    deadline = time.monotonic() + timeout_s
    with httpx.stream(
        "GET", app.url + "gradio_api/queue/data", params={"session_hash": session_hash}, cookies=cookies,
        timeout=timeout_s,
    ) as stream:
        for line in stream.iter_lines():
            if time.monotonic() > deadline:
                break
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    return message
    raise AssertionError(f"no answer to {api_name} within {timeout_s} s")


def status_of(message: dict) -> str:
    """The status line of an answer to a view-updating event, or Gradio's error text."""
    if not message.get("success", True):
        return f"ERROR: {message.get('output', {}).get('error')}"
    return str(message["output"]["data"][2])


def file_data(path: str | Path, name: str = "video.mp4") -> dict:
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def assert_no_leak(status: int, body: bytes, *secrets_: bytes) -> None:
    assert 400 <= status < 500, (status, body[:200])
    assert PASSWD_MARK not in body, body[:200]
    for secret in secrets_:
        assert secret not in body, body[:200]


# ----------------------------------------------------------------------------- path traversal

TRAVERSALS = [
    "/file=../../etc/passwd",
    "/file=/etc/passwd",
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=../../../../etc/passwd",
    "/gradio_api/file=../../../../../../../../../../etc/passwd",
    "/gradio_api/file=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=%252e%252e%252f%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/gradio_api/file=%252fetc%252fpasswd",
    "/gradio_api/file=..%5c..%5c..%5c..%5c..%5c..%5cetc%5cpasswd",
    "/gradio_api/file=..\\..\\..\\..\\..\\..\\etc\\passwd",
    "/gradio_api/file=\\etc\\passwd",
    "/gradio_api/file=....//....//....//....//etc/passwd",
    "/gradio_api/file=%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/gradio_api/file=/etc/passwd%00.png",
    "/gradio_api/file=file:///etc/passwd",
    "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file=/proc/self/cmdline",
    "/gradio_api/file={temp}/../../../../../../../../etc/passwd",
    "/gradio_api/file={temp}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file={temp}/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file={temp}/sessions/../../../../../../../../etc/passwd",
    "/gradio_api/file/etc/passwd",
    "/gradio_api/file//etc/passwd",
    "/gradio_api/file/../../../../../../etc/passwd",
    "/gradio_api/file/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/assets/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/svelte/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/proxy=http://127.0.0.1:1/etc/passwd",
    # the app's own source and weights
    "/gradio_api/file=app.py",
    "/gradio_api/file=./app.py",
    "/gradio_api/file=ui/access.py",
    "/gradio_api/file={app_py}",
    "/gradio_api/file/{app_py}",
    "/gradio_api/file=/{app_py}",
    "/gradio_api/file={temp}/../../../../../../../..{app_py}",
    "/file={app_py}",
    "/gradio_api/file={checkpoint}",
    "/gradio_api/file/{checkpoint}",
    "/gradio_api/file={checkpoint_encoded}",
    # the temp folder itself: no listings
    "/gradio_api/file={temp}",
    "/gradio_api/file={temp}/sessions",
    "/gradio_api/file={temp}/sessions/",
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("template", TRAVERSALS)
def test_traversal_and_source_files_are_refused(app, reference_checkpoint, template, method):
    path = template.format(
        temp=app.temp_dir.resolve(),
        app_py=ROOT / "app.py",
        checkpoint=reference_checkpoint,
        checkpoint_encoded=urllib.parse.quote(str(reference_checkpoint), safe=""),
    )
    status, body = raw_get(app, path, method)
    with reference_checkpoint.open("rb") as f:
        weights_head = f.read(64)
    assert_no_leak(status, body, APP_SOURCE[:200], weights_head)


def test_file_urls_do_not_fetch_other_servers(app):
    """``/gradio_api/file=http://...`` is fetched by the server: never from loopback (no SSRF)."""
    for target in (f"{app.url}config", f"{app.url}gradio_api/file={ROOT / 'app.py'}", "http://localhost:1/"):
        status, body = raw_get(app, "/gradio_api/file=" + target)
        assert_no_leak(status, body, b'"version"', APP_SOURCE[:200])


# ----------------------------------------------------------------------------- other sessions' files


def test_the_owner_can_download(app, alice):
    response = httpx.get(f"{app.url}gradio_api/file={alice.coco}", cookies=alice.client.cookies, timeout=30)
    assert response.status_code == 200 and b'"annotations"' in response.content


def _variants(path: str) -> list[str]:
    """Spellings of the file route for one session file."""
    quoted = urllib.parse.quote(path, safe="")
    dotted = path.replace("/sessions/", "/sessions/./")
    back = path.replace("/sessions/", "/sessions/x/../")
    return [
        f"/gradio_api/file={path}",
        f"/gradio_api/file={quoted}",
        f"/gradio_api/file=/{path}",
        f"/gradio_api/file={dotted}",
        f"/gradio_api/file={back}",
        f"/gradio_api/file={path.replace('/', '%2f')}",
        f"/file={path}",
    ]


@pytest.mark.parametrize(
    "who", ["another browser", "no cookie", "forged cookie", "empty cookie", "session hash as cookie"]
)
def test_another_sessions_files_are_refused(app, alice, who):
    cookie = {
        "another browser": f"sam2_owner={fresh_cookies(app)['sam2_owner']}",
        "no cookie": None,
        "forged cookie": f"sam2_owner={secrets.token_urlsafe(24)}",
        "empty cookie": "sam2_owner=",
        "session hash as cookie": f"sam2_owner={alice.client.session_hash}",
    }[who]
    secret = Path(alice.coco).read_bytes()
    for name, path in alice.files.items():
        for url in _variants(path) + _variants(alice.viewer):
            status, body = raw_get(app, url, cookie=cookie)
            assert 400 <= status < 500, (who, name, url, status)
            assert secret not in body and (len(body) < 64 or body not in Path(path).read_bytes()), (who, url)
            status, _ = raw_get(app, url, "HEAD", cookie=cookie)
            assert 400 <= status < 500, ("HEAD", who, url, status)


def test_the_old_file_route_is_guarded_too(app, alice):
    for path in (alice.coco, alice.viewer):
        for cookie in (None, f"sam2_owner={fresh_cookies(app)['sam2_owner']}"):
            status, body = raw_get(app, f"/gradio_api/file/{path}", cookie=cookie)
            assert status in (403, 404), (path, cookie, status, body[:80])


def test_a_closed_sessions_files_are_gone(app, video):
    person = Victim(app, video)
    url = f"{app.url}gradio_api/file={person.coco}"
    cookies = dict(person.client.cookies)
    assert httpx.get(url, cookies=cookies, timeout=30).status_code == 200
    person.close()
    deadline = time.monotonic() + 30
    while Path(person.coco).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(person.coco).exists()
    assert httpx.get(url, cookies=cookies, timeout=30).status_code in (403, 404)


# ----------------------------------------------------------------------------- file inputs


@pytest.mark.parametrize("where", ["outside the temp folder", "dot-dot out of the temp folder", "a folder"])
def test_event_inputs_outside_the_upload_folder_are_refused(app, video, workdir, where):
    """A hand-made FileData naming a file that was not uploaded: refused, and not deleted (the
    app deletes an upload once decoded)."""
    bait = workdir / f"bait-{uuid.uuid4().hex[:8]}.mp4"
    shutil.copyfile(video, bait)
    path = {
        "outside the temp folder": str(bait),
        "dot-dot out of the temp folder": f"{app.temp_dir.resolve()}/../{bait.name}",
        "a folder": str(app.temp_dir.resolve() / "sessions"),
    }[where]
    message = raw_event(app, "upload_video", [file_data(path), 0, None], fresh_cookies(app))
    assert not status_of(message).startswith("Loaded"), status_of(message)
    assert bait.exists()
    assert (app.temp_dir / "sessions").is_dir()


@pytest.mark.parametrize("target", ["overlay video", "frame image"])
def test_another_sessions_files_cannot_be_used_as_input(app, victim, target):
    path = victim.files["sec_overlay.mp4"] if target == "overlay video" else victim.viewer
    message = raw_event(app, "upload_video", [file_data(path), 0, None], fresh_cookies(app))
    status = status_of(message)
    assert Path(path).exists(), f"the victim's {target} was deleted by another browser's upload ({status})"
    assert "not uploaded from this page" in status, f"another browser's {target} was not refused by the app: {status}"


def test_another_sessions_session_file_cannot_be_loaded(app, victim, video):
    attacker = Client(app.url, verbose=False, download_files=False)
    try:
        attacker.predict(handle_file(str(video)), api_name="/upload_video")
        path = victim.files["sec_session.json"]
        message = raw_event(
            app, "load_session", [file_data(path, "session.json"), 0], attacker.cookies,
            session_hash=attacker.session_hash,
        )
        assert Path(path).exists(), f"the victim's session file was deleted ({status_of(message)})"
        assert "not uploaded from this page" in status_of(message), status_of(message)
    finally:
        attacker.close()


# ----------------------------------------------------------------------------- uploads


def test_upload_over_the_limit_is_refused_and_the_session_keeps_working(app, video, workdir):
    big = workdir / "too-big.mp4"
    big.write_bytes(video.read_bytes() + b"\0" * (LIMIT_BYTES + 1024))
    assert httpx.get(app.url + "config", timeout=30).json()["max_file_size"] == LIMIT_BYTES  # the page refuses it too

    response = httpx.post(app.url + "gradio_api/upload", files=[("files", (big.name, big.read_bytes()))], timeout=60)
    assert response.status_code == 413
    assert f"maximum allowed size of {LIMIT_BYTES} bytes" in response.text
    left = [p for p in app.temp_dir.rglob("*") if p.is_file() and p.stat().st_size > LIMIT_BYTES]
    assert left == [], left  # nothing of the refused body stays behind

    client = Client(app.url, verbose=False, download_files=False)
    try:
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            client.predict(handle_file(str(big)), api_name="/upload_video")
        outputs = client.predict(handle_file(str(video)), api_name="/upload_video")
        assert str(outputs[2]).startswith("Loaded"), outputs[2]
        answer = client.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        assert answer["areas"]["1"] > 0, answer
    finally:
        client.close()


def test_two_browsers_uploading_the_same_file(app, video):
    first, second = fresh_cookies(app), fresh_cookies(app)
    paths = []
    for cookies in (first, second):
        response = httpx.post(
            app.url + "gradio_api/upload", files=[("files", (video.name, video.read_bytes()))], cookies=cookies,
            timeout=60,
        )
        response.raise_for_status()
        paths += response.json()
    assert paths[0] == paths[1]  # Gradio's content-addressed upload folder: one shared path
    for cookies in (first, second):  # in turn: the second one finds the file gone
        status = status_of(raw_event(app, "upload_video", [file_data(paths[0], video.name), 0, None], cookies))
        assert status.startswith("Loaded"), status


def wait_gone(path: Path, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def test_a_shared_upload_stays_until_the_last_session_using_it_closes(app, workdir):
    """Two browsers upload the very same bytes: Gradio stores them at one path. When the first
    closes its page, the file stays (the other session holds it) and the other keeps working,
    tracking and exporting, and can upload the same file again; when the last one closes, the
    upload and its folder are deleted (not left to Gradio's sweep, minutes later)."""
    # a clip whose bytes no other test uploads
    clip = media_factory.testsrc(workdir / "shared.mp4", size=(128, 96), fps=6, seconds=1.0)
    first, second = (Client(app.url, verbose=False, download_files=False) for _ in range(2))
    try:
        folders = []
        for client in (first, second):
            outputs = client.predict(handle_file(str(clip)), api_name="/upload_video")
            assert str(outputs[2]).startswith("Loaded"), outputs[2]
            folders.append(Path(outputs[0]["path"]).parents[1])  # <sessions>/<session>/view/<frame image>
        (shared,) = app.temp_dir.glob(f"*/{clip.name}")  # <cache>/<salted hash of the bytes>/<name>: one for both
        assert folders[0] != folders[1]
        first.close()
        assert wait_gone(folders[0]), "the first session was not freed after its page closed"
        assert shared.is_file()  # the second session still holds it

        answer = second.predict(frame=0, x=64.0, y=48.0, positive=True, obj_id=1, api_name="/add_point")
        assert answer["areas"]["1"] > 0, answer
        tracked = second.predict(direction="forward", frame=0, frames=2, api_name="/track")
        assert tracked["done"] == 2 and not tracked["error"], tracked  # frames 1 and 2
        files = second.predict(["overlay", "coco"], api_name="/export")[-1]
        assert [Path(f["path"]).name for f in files] == ["shared_overlay.mp4", "shared_coco.json"]
        response = httpx.get(f"{app.url}gradio_api/file={files[0]['path']}", cookies=second.cookies, timeout=30)
        assert response.status_code == 200 and len(response.content) > 1000
        outputs = second.predict(handle_file(str(clip)), api_name="/upload_video")
        assert str(outputs[2]).startswith("Loaded"), outputs[2]
    finally:
        first.close()
        second.close()
    assert wait_gone(folders[1]), "the second session was not freed after its page closed"
    assert wait_gone(shared, 5.0) and not shared.parent.exists()


def test_upload_names_cannot_leave_the_upload_folder(app, workdir):
    target = workdir / f"escaped-{uuid.uuid4().hex[:8]}.txt"
    name = "../" * 12 + str(target).lstrip("/")
    response = httpx.post(app.url + "gradio_api/upload", files=[("files", (name, b"hello"))], timeout=30)
    assert response.status_code in (200, 400), response.text
    assert not target.exists()
    if response.status_code == 200:
        (stored,) = response.json()
        assert Path(stored).resolve().is_relative_to(app.temp_dir.resolve())
        assert Path(stored).name == target.name


# ----------------------------------------------------------------------------- seats


@pytest.fixture(scope="module")
def two_seat_app(reference_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    running = start_app(reference_checkpoint, tmp_path_factory.mktemp("seats"), "--max-sessions", "2")
    yield running
    running.stop()


def test_requests_without_work_do_not_take_seats(two_seat_app, video):
    for _ in range(3):
        message = raw_event(two_seat_app, "show_frame", [0], fresh_cookies(two_seat_app))
        assert "Upload a video first" in status_of(message) or "busy" in status_of(message)
    client = Client(two_seat_app.url, verbose=False, download_files=False)
    try:
        status = str(client.predict(handle_file(str(video)), api_name="/upload_video")[2])
    finally:
        client.close()
    assert status.startswith("Loaded"), status



# ----------------------------------------------------------------------------- the player's pictures


def test_the_players_pictures_are_the_owners_only_and_bad_requests_get_4xx(app, alice):
    """ui/player.py's route (``<session folder>/play/...``): the owner gets each frame drawn at
    the width asked for (a repeat costs a 304), the facts and no sound for a silent video;
    every other browser gets 403, and bad requests get a plain 4xx, never a server error."""
    log_start = len(app.log_text())  # other tests' refusals log Gradio's own tracebacks before this one
    folder = Path(alice.viewer).parent.parent
    route = f"/gradio_api/file={folder}/play"
    owner = f"sam2_owner={alice.client.cookies['sam2_owner']}"
    status, body = raw_get(app, f"{route}/frame00002.jpg?w=80", cookie=owner)
    assert status == 200 and body[:3] == b"\xff\xd8\xff", (status, body[:80])
    response = httpx.get(f"{app.url}{route[1:]}/frame00002.jpg?w=80", cookies={"sam2_owner": owner.split("=", 1)[1]})
    etag = response.headers["etag"]
    again = httpx.get(f"{app.url}{route[1:]}/frame00002.jpg?w=80", headers={"If-None-Match": etag},
                      cookies={"sam2_owner": owner.split("=", 1)[1]})  # fmt: skip
    assert again.status_code == 304
    status, body = raw_get(app, f"{route}/info.json", cookie=owner)
    assert status == 200 and json.loads(body) == {"frames": 6, "fps": 6.0, "audio": False}
    bad = {
        "frame99999.jpg?w=80": 404, "frame00006.jpg?w=80": 404, "frame-1.jpg?w=80": 404, "frameNaN.jpg?w=80": 404,
        "frame00000.jpg": 400, "frame00000.jpg?w=NaN": 400, "frame00000.jpg?w=-5": 400, "frame00000.jpg?w=0": 400,
        "frame00000.jpg?w=99999999": 400, "frame00000.jpg?w=1e9": 400, "audio.mp3": 404, "nothing": 404,
        "frame00000.jpg?w=%00": 400,
    }  # fmt: skip
    for name, expected in bad.items():
        status, body = raw_get(app, f"{route}/{name}", cookie=owner)
        assert status == expected and body.strip() and b"Traceback" not in body, (name, status, body[:200])
    status, body = raw_get(app, f"{route}/frame00000.jpg?w=80", "HEAD", cookie=owner)
    assert status == 200 and body == b""
    status, _ = raw_get(app, f"{route}/frame00000.jpg?w=80", "POST", cookie=owner)
    assert status == 405
    stranger = f"sam2_owner={fresh_cookies(app)['sam2_owner']}"
    for cookie in (None, stranger, "sam2_owner=", f"sam2_owner={alice.client.session_hash}"):
        for name in ("frame00002.jpg?w=80", "info.json", "audio.mp3", "frame99999.jpg?w=80"):
            for path in (f"{route}/{name}", f"/gradio_api/file={urllib.parse.quote(str(folder), safe='')}/play/{name}"):
                status, body = raw_get(app, path, cookie=cookie)
                assert status == 403 and b"\xff\xd8" not in body, (cookie, path, status)
    other_folder = folder.parent / secrets.token_urlsafe(16)
    status, _ = raw_get(app, f"/gradio_api/file={other_folder}/play/frame00000.jpg?w=80", cookie=owner)
    assert status == 403
    assert "Traceback" not in app.log_text()[log_start:]
