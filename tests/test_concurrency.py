"""Many events of one session at once, on the real store and real files: the pictures the page
is sent (names, pruning, what a browser has fetched) and the sweep against a returning page.

Through the running app (gradio_client, frame changes and clicks while tracking runs) this is
in tests/test_app_api.py: ``test_frame_changes_and_clicks_while_tracking``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ui import sessions
from ui.sessions import SessionStore, ViewFiles
from ui.views import write_png

THREADS = 8


def run_together(count: int, task) -> list[BaseException]:
    """``task(i)`` on ``count`` threads started together -> the exceptions they raised."""
    start, errors = threading.Barrier(count), []

    def body(i: int) -> None:
        start.wait()
        try:
            task(i)
        except BaseException as exc:  # collected, so the test names what failed
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_picture_names_never_repeat_under_concurrent_requests(tmp_path):
    """Two requests once got the same file name (the counter was read after a system call that
    let another thread count too): one response then showed the other's picture."""
    work = SessionStore(tmp_path / "root").get("s", "cookie", create=True)
    names: list[list[str]] = [[] for _ in range(THREADS)]

    def task(i: int) -> None:
        for _ in range(300):
            names[i].append(work.new_file("frame00001", ".png").name)

    assert run_together(THREADS, task) == []
    every = [name for per_thread in names for name in per_thread]
    assert len(every) == THREADS * 300 and len(set(every)) == len(every)


def test_pruning_while_other_requests_write_and_prune(tmp_path):
    """Pruning while other requests of the session write and prune their own pictures: no
    request fails (pruning once sorted the folder by mtime and failed on a file another request
    had just deleted), and no picture another request has just been handed is deleted."""
    store = SessionStore(tmp_path / "root")
    work = store.get("s", "cookie", create=True)
    image = np.zeros((16, 16, 3), np.uint8)
    handed: list[Path] = []

    def task(i: int) -> None:
        for _ in range(40):  # 320 pictures in all, within MAX_VIEW_FILES
            work.prune_views()
            path = write_png(image, work.new_file(f"frame{i:05d}", ".png"))
            handed.append(path)

    assert run_together(THREADS, task) == []
    assert all(path.is_file() for path in handed)  # none fetched yet: every one waits for its browser


def test_a_picture_stays_while_a_browser_may_ask_for_it(tmp_path, monkeypatch):
    """What the page was sent stays VIEW_KEEP_S after it was handed out and after its last
    fetch (a fetched picture once went at once, and a second fetch got 500 or half a file);
    a fetch reads the whole file, so pruning right after cannot cut it short; a picture that
    is gone is unknown (None: the guard answers 404); a flood is bounded all the same."""
    views = ViewFiles(tmp_path / "view")
    made = [views.new("frame", ".png") for _ in range(sessions.VIEW_KEEP + 10)]
    for path in made:
        path.write_bytes(b"png")
    for path in made[:5]:
        assert views.read(path.name) == b"png"
    assert views.prune() == []  # fetched or not: all are recent
    soon = time.monotonic() + sessions.VIEW_KEEP_S / 2
    assert views.read(made[0].name, now=soon) == b"png"  # fetched again, later
    assert views.prune(now=soon) == []

    later = time.monotonic() + sessions.VIEW_KEEP_S + 1  # within VIEW_KEEP_S of the second fetch
    assert views.prune(now=later) == made[1 : -sessions.VIEW_KEEP]  # made[0] was used since
    assert views.read(made[1].name) is None and views.read(made[0].name) == b"png"
    assert views.read("frame-999999.png") is None  # never handed out
    assert sum(p.exists() for p in made) == sessions.VIEW_KEEP + 1

    monkeypatch.setattr(sessions, "MAX_VIEW_FILES", 30)  # a client that asks faster than anyone looks
    flood = [views.new("frame", ".png") for _ in range(40)]
    for path in flood:
        path.write_bytes(b"png")
    views.prune()
    assert len(list(views.folder.iterdir())) == 30 and flood[-1].exists()
    monkeypatch.setattr(sessions, "MAX_VIEW_BYTES", 3 * sessions.VIEW_KEEP)  # and bytes (3 each)
    views.prune(now=time.monotonic() + sessions.SIZE_AFTER_S)
    assert len(list(views.folder.iterdir())) == sessions.VIEW_KEEP and flood[-1].exists()


def test_the_sweep_never_closes_a_session_a_request_took_back(tmp_path):
    """The sweep chose expired sessions under the store's lock but closed them after letting
    go of it: a page that came back in between (a request on the same session) had its
    session closed under it, folder and all. A request now either finds the session open and
    kept, or finds it gone, never an open session whose files are being deleted."""
    came_back: dict[str, sessions.WorkState] = {}

    def on_close(work: sessions.WorkState) -> None:  # runs while the sweep is closing sessions
        for other in ("a", "b"):
            if other != work.session_id and other not in came_back:
                try:
                    came_back[other] = store.get(other, f"cookie-{other}")
                except sessions.UserError:
                    pass  # already closed: the request is told to upload again, nothing half-done

    store = SessionStore(tmp_path / "root", ttl_s=60, on_close=on_close)
    a, b = store.get("a", "cookie-a", create=True), store.get("b", "cookie-b", create=True)
    a.last_seen -= 120
    b.last_seen -= 120
    closed = store.sweep()
    assert sorted(closed) == ["a", "b"]
    for work in came_back.values():  # a request that got its session back: it is still whole
        assert store.peek(work.session_id) is work and work.folder.is_dir(), work.session_id
    assert not a.folder.exists() and not b.folder.exists() and came_back == {}
