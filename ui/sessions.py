"""Per-user work state, kept on the server and keyed by Gradio's session hash.

Why server-side: a video's frames, the predictor's memory and the masks are far too big for
``gr.State`` (which lives in the browser in Gradio 6). Each browser tab gets a
:class:`WorkState` with its own folder under the store's root; the folder holds everything
the app serves to that tab (frame images, exports, the audio track), so it can be guarded
(:meth:`SessionStore.owner_of`) and removed in one go by the sweep.

Reloads resume: a reloaded page gets a new session hash from Gradio, and the old page's
``demo.unload`` cannot tell a reload from a closed tab. So unload only *detaches* the session
(:meth:`SessionStore.detach`): its work, folder and predictor state stay for a grace period
(default: the time-to-live), and the next page load of the same browser (same owner cookie)
takes it over under its new hash (:meth:`SessionStore.resume`). A closed tab's session is
freed by the sweep once the grace period is over; until then it still takes a place
(``max_sessions``). A session idle longer than the time-to-live is swept too.

API clients (``gradio_client``) never reload, and never send a page's load event: a session
no page loaded (:meth:`SessionStore.page_opened`) is freed at once when its heartbeat ends
(``ui.callbacks.on_unload``), and one with no heartbeat open (:meth:`SessionStore.connection`,
reported by ``ui.access``) after ``idle_s`` without a request, so that closed or silent
clients cannot hold the server's places for the time-to-live.

Uploads are reference-counted here (:meth:`SessionStore.hold_upload`). Gradio keeps an upload
in its cache folder under the hash of its bytes, so two people uploading the same file get one
shared path; deleting it when the first of them is done once broke the second. So each session
records the uploads it read, and closing a session deletes an upload only when no other live
session holds the same path, and only if the file is still the one it read (a later upload of
the same bytes replaces the file, and belongs to whoever uploaded it).
"""


from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation.document import UserError
from annotation.work import Work
from ui.saved_work import SAVED, SavedWork, SavedWorkError, read_saved_work

STRAY_AGE_S = 2.0  # an empty temporary file left in Gradio's cache this long is a stray (tidy_upload_cache)


class ServerBusy(UserError):
    """Too many people at once; the message says to try again later."""


# ----------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadRef:
    """A file of Gradio's upload cache that a session read, as it was then: ``inode`` tells
    whether the same path was uploaded again since (Gradio then moves a new file onto it)."""

    path: Path
    inode: tuple[int, int]  # (st_dev, st_ino)

    @classmethod
    def of(cls, path: Path) -> UploadRef:
        try:
            info = path.stat()
        except OSError:
            raise UserError("The uploaded file is no longer on the server. Please upload it again.") from None
        return cls(path, (info.st_dev, info.st_ino))

    def is_current(self) -> bool:
        """Still the very file that was read (not removed, not replaced by a newer upload)."""
        try:
            info = self.path.stat()
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.inode


# The names tempfile.NamedTemporaryFile gives (prefix "tmp", 8 random characters).
_TEMPFILE_NAME = re.compile(r"tmp[a-z0-9_]{8}")


def open_files() -> set[Path] | None:
    """The files this process has open (Linux /proc); None where that cannot be known."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = set()
    for name in names:
        try:
            found.add(Path(os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            continue  # closed while we looked
    return found


def _is_stray(path: Path, now: float) -> bool:
    """An empty regular file whose last change is STRAY_AGE_S old (see tidy_upload_cache)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == 0 and now - info.st_ctime >= STRAY_AGE_S


# ----------------------------------------------------------------------------- pictures for the page


VIEW_KEEP = 24  # the newest pictures always stay (a page still loading them finds them)
VIEW_KEEP_S = 120.0  # and every picture stays this long after it was handed out, and after its last fetch
MAX_VIEW_FILES = 600  # pictures of one session at most (a client that asks faster than it fetches) ...
MAX_VIEW_BYTES = 128 * 2**20  # ... and bytes: beyond either, the oldest go first (never the newest VIEW_KEEP)
SIZE_AFTER_S = 1.0  # a picture is measured for MAX_VIEW_BYTES once it is this old (written by then)


@dataclass
class _View:
    made: float  # time.monotonic() when its name was handed out
    used: float  # made, or its last fetch, whichever is later
    size: int | None = None  # bytes, once known


class ViewFiles:
    """The pictures made for one page (frame views, timelines, the brush's and the finder's
    pictures): handed out by name, served by name (:meth:`read`, which ``ui.access`` answers
    fetches with), and deleted only when no browser is likely to ask for them again.

    A response names a new file that the browser fetches a moment later, maybe more than once
    (a re-render, a late fetch of a slow page, an API client that downloads what it was sent
    afterwards). So a picture stays ``VIEW_KEEP_S`` after it was handed out and after its last
    fetch, and the newest ``VIEW_KEEP`` always stay; only ``MAX_VIEW_FILES`` and
    ``MAX_VIEW_BYTES`` make the oldest go sooner, for a session that makes pictures faster
    than anyone looks at them. A fetch reads the whole file into memory first, so deleting a
    file never cuts a response short; a name that is gone is simply unknown (404).

    Several events of one session run at once (frame changes while tracking runs, clicks), so
    names come from a counter under a lock, and pruning never lists the folder (a file may go
    while another request sorts it).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._count = 0
        self._files: dict[str, _View] = {}  # name -> state, oldest first

    def new(self, stem: str, suffix: str) -> Path:
        """A fresh name (browsers cache by URL, so names never repeat)."""
        now = time.monotonic()
        with self._lock:
            self._count += 1
            name = f"{stem}-{self._count:06d}{suffix}"
            self._files[name] = _View(now, now)
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def read(self, name: str, now: float | None = None) -> bytes | None:
        """The bytes of the picture ``name`` for a fetch at ``now`` (default: now; it counts as
        its latest use), or None when no such picture was handed out, or it is gone, or not
        written yet."""
        now = time.monotonic() if now is None else now
        with self._lock:
            view = self._files.get(name)
            if view is None:
                return None
            view.used = max(view.used, now)
        try:
            data = (self.folder / name).read_bytes()  # an unlink after the open cannot shorten this
        except OSError:
            return None
        with self._lock:
            if name in self._files:
                self._files[name].size = len(data)
        return data

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete the pictures that are done with -> their paths: beyond the newest
        ``VIEW_KEEP``, those unused for ``VIEW_KEEP_S``; then the oldest while the session is
        over ``MAX_VIEW_FILES`` or ``MAX_VIEW_BYTES``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            names = list(self._files)
            older = names[:-VIEW_KEEP]
            done = {n for n in older if now - self._files[n].used > VIEW_KEEP_S}
            count = len(names) - len(done)
            total = sum(self._measure(n, now) for n in names if n not in done)
            for name in older:
                if count <= MAX_VIEW_FILES and total <= MAX_VIEW_BYTES:
                    break
                if name not in done:
                    done.add(name)
                    count -= 1
                    total -= self._files[name].size or 0
            for name in done:
                del self._files[name]  # unknown from now on: a fetch gets 404, not half a file
        gone = [self.folder / name for name in names if name in done]
        for path in gone:
            path.unlink(missing_ok=True)
        return gone

    def _measure(self, name: str, now: float) -> int:
        """The picture's size in bytes (lock held), measured once it has surely been written."""
        view = self._files[name]
        if view.size is None and now - view.made >= SIZE_AFTER_S:
            with contextlib.suppress(OSError):
                view.size = (self.folder / name).stat().st_size
        return view.size or 0

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._files


# ----------------------------------------------------------------------------- a browser's work


@dataclass(kw_only=True)
class WorkState(Work):
    """One browser tab's :class:`~annotation.work.Work`, with who may see it and when it was
    last seen. Its folder also holds the pictures the page shows (``view/``)."""

    session_id: str
    owner: str  # the browser cookie that may read this session's files
    last_seen: float = field(default_factory=time.monotonic)
    detached_at: float | None = None  # when its page went away (unload); None while a page has it
    from_page: bool = False  # made by a browser's page (its load event ran), not by an API client
    uploads: dict[Path, UploadRef] = field(default_factory=dict)  # held until the session closes (see the store)
    # An import that waits for the user to add its classes to the labels (ui.datasets_page.PendingImport),
    # and the frame and object the brush's editor shows (ui.datasets_page.BrushTarget).
    pending_import: Any = None
    brush_target: Any = None
    # How the video was loaded (ui.saved_work.VideoSource, for the work kept on disk), and an
    # upload that waits for the person to say whether it may replace this work (ui.guard_page).
    source: Any = None
    pending_upload: Any = None
    views: ViewFiles = field(init=False)

    def __post_init__(self) -> None:
        self.views = ViewFiles(self.folder / "view")

    def new_file(self, stem: str, suffix: str) -> Path:
        """A fresh name in the session's picture folder."""
        return self.views.new(stem, suffix)

    def prune_views(self) -> None:
        """Remove the pictures the page is done with (see :class:`ViewFiles`)."""
        self.views.prune()


# ----------------------------------------------------------------------------- the store


def _keep_only_saved(folder: Path) -> None:
    """Delete everything in a session folder but its kept work (``saved/``)."""
    for child in folder.iterdir():
        if child.name == SAVED and not child.is_symlink():
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


class SessionStore:
    """All live sessions. Thread-safe; one folder per session under ``root``.

    ``upload_cache``: Gradio's cache folder, where uploads arrive. Only files in it (and not
    in ``root``) are ever deleted as uploads; without it, uploads are counted but never deleted.
    """

    def __init__(
        self, root: Path, ttl_s: float = 1800.0, max_sessions: int = 16, grace_s: float | None = None,
        upload_cache: Path | None = None, on_close: Callable[[WorkState], None] | None = None,
        idle_s: float = 120.0,
    ) -> None:  # fmt: skip
        """on_close(work) runs when a session is closed (tab gone, expired): e.g. the engine
        drops the video's pending background work. idle_s: how long a session that no page
        made and no connection keeps (an API client without heartbeat) waits for its next
        request before it is freed."""
        self.on_close = on_close
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.upload_cache = None if upload_cache is None else Path(upload_cache).resolve()
        self.ttl_s = ttl_s
        self.grace_s = ttl_s if grace_s is None else grace_s  # how long a detached session waits
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._sessions: dict[str, WorkState] = {}
        self._saved: dict[str, SavedWork] = {}  # folder name -> work kept from before a restart, not yet restored
        self._pages: dict[str, float] = {}  # session hashes whose page loaded (load event) -> when
        self._beating: dict[str, int] = {}  # session hashes -> heartbeat connections open now
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    def get(self, session_id: str, owner: str, create: bool = False) -> WorkState:
        """The session's state; `create` makes it on first use (only an upload does, so
        requests that never bring a video cannot fill the server's places). A session made by
        another browser (other cookie) is refused: its hash alone must not hand over work."""
        if not session_id:
            raise UserError("This request has no session. Reload the page.")
        with self._lock:
            work = self._sessions.get(session_id)
            if work is None:
                if not create:
                    raise UserError("Upload a video first (step 1).")
                if len(self._sessions) >= self.max_sessions:
                    raise ServerBusy(
                        f"The server is busy: {len(self._sessions)} people are using it, the most it "
                        "serves at once. Please try again in a few minutes."
                    )
                folder = self.root / secrets.token_urlsafe(16)
                folder.mkdir(parents=True)
                work = WorkState(session_id=session_id, owner=owner, folder=folder,
                                 from_page=session_id in self._pages)
                self._sessions[session_id] = work
            elif not secrets.compare_digest(work.owner, owner):
                raise UserError("This page's session belongs to another browser. Reload the page.")
            work.last_seen = time.monotonic()
            work.detached_at = None  # its page is back (a heartbeat that reconnected)
            return work

    # -- pages and connections: who is still there
    def page_opened(self, session_id: str) -> None:
        """A browser's page loaded under ``session_id`` (its load event): the session it makes
        is a page's, which a reload may resume (an API client never sends a load event)."""
        if not session_id:
            return
        with self._lock:
            self._pages[session_id] = time.monotonic()
            work = self._sessions.get(session_id)
            if work is not None:  # the page's first upload overtook its load event
                work.from_page = True

    def page_closed(self, session_id: str) -> None:
        """The page or client under ``session_id`` went away (unload): forget its load."""
        with self._lock:
            self._pages.pop(session_id, None)

    @contextlib.contextmanager
    def connection(self, session_id: str) -> Iterator[None]:
        """While a heartbeat connection of ``session_id`` is open (``ui.access`` holds one for
        each heartbeat request, browser or API client): such a session waits the TTL between
        requests; one with none, and no page, waits only ``idle_s``."""
        with self._lock:
            self._beating[session_id] = self._beating.get(session_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._beating.pop(session_id, 1) - 1
                if left > 0:
                    self._beating[session_id] = left
                work = self._sessions.get(session_id)
                if work is not None:  # the idle time of a client that lost its heartbeat starts now
                    work.last_seen = max(work.last_seen, time.monotonic())

    def connected(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._beating

    def detach(self, session_id: str) -> bool:
        """The session's page went away (closed or reloaded): keep its work for the grace
        period, for :meth:`resume`; the sweep frees it after that. True if there was one."""
        with self._lock:
            work = self._sessions.get(session_id)
            if work is None:
                return False
            work.detached_at = time.monotonic()
            return True

    def resume(self, session_id: str, owner: str) -> WorkState | None:
        """Hand the owner's most recent detached session to the page ``session_id`` (a reload:
        same browser, new hash). Only a session made with the same owner cookie is handed over;
        the folder stays, so its file URLs keep working for that browser. None when there is
        none, or when ``session_id`` already has a session of its own."""
        if not session_id or not owner:
            return None
        with self._lock:
            if session_id in self._sessions:
                return None
            mine = [
                w for w in self._sessions.values()
                if w.detached_at is not None and secrets.compare_digest(w.owner, owner)
            ]  # fmt: skip
            if not mine:
                return None
            work = max(mine, key=lambda w: w.last_seen)
            del self._sessions[work.session_id]
            work.session_id = session_id
            work.detached_at = None
            work.last_seen = time.monotonic()
            self._sessions[session_id] = work
            return work

    def attached_of(self, owner: str) -> int:
        """How many of the owner's sessions still have a page (not detached)."""
        if not owner:
            return 0
        with self._lock:
            return sum(
                1 for w in self._sessions.values() if w.detached_at is None and secrets.compare_digest(w.owner, owner)
            )  # fmt: skip

    def peek(self, session_id: str) -> WorkState | None:
        with self._lock:
            return self._sessions.get(session_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __iter__(self) -> Iterator[WorkState]:
        with self._lock:
            return iter(list(self._sessions.values()))

    def close(self, session_id: str, keep_saved: bool = False) -> bool:
        """Forget a session, delete its folder and the uploads only it held (tab closed).
        ``keep_saved``: a folder with work kept on disk stays (the server stops). True if there was one."""
        with self._lock:
            work = self._sessions.pop(session_id, None)
            if work is not None:
                self._release_uploads(work)
        if work is None:
            return False
        self._finish(work, keep_saved=keep_saved and work.from_page and (work.folder / SAVED).is_dir())
        return True

    def _finish(self, work: WorkState, keep_saved: bool = False) -> None:
        """What closing a session does once it is out of the store (no lock held: it waits for
        the engine and the disk)."""
        work.cancel.set()  # a running tracking run stops at the next frame
        if self.on_close is not None:
            self.on_close(work)
        if keep_saved:
            _keep_only_saved(work.folder)
        else:
            shutil.rmtree(work.folder, ignore_errors=True)
        self.tidy_upload_cache()

    # -- uploads
    def hold_upload(self, work: WorkState, path: Path) -> None:
        """Record that ``work`` reads the upload at ``path`` (before reading it, so that no
        other session's close deletes it meanwhile); it is held until the session closes.
        UserError if the file is gone."""
        ref = UploadRef.of(Path(path).resolve())
        with self._lock:
            work.uploads[ref.path] = ref

    def _release_uploads(self, work: WorkState) -> None:
        """Delete the uploads of a session just removed (store lock held), except those another
        live session holds, or that were uploaded again since (another person's upload, whose
        request may still be on its way)."""
        held = {path for other in self._sessions.values() for path in other.uploads}
        for ref in work.uploads.values():
            if ref.path not in held and self._is_upload_file(ref.path) and ref.is_current():
                ref.path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # Gradio's per-upload folder, if now empty
                    ref.path.parent.rmdir()
        work.uploads.clear()

    def _is_upload_file(self, path: Path) -> bool:
        """A file directly in one of Gradio's upload folders (``<cache>/<hash>/<name>``)."""
        return (self.upload_cache is not None and path.parent.parent == self.upload_cache
                and self.root not in path.parents)

    def tidy_upload_cache(self, now: float | None = None) -> list[Path]:
        """Delete the empty temporary files Gradio 6.31 leaves in its cache folder.

        ``gr.File(type="filepath")`` makes an empty NamedTemporaryFile there for every file an
        event receives and never uses or deletes it (nor does Gradio's cache sweep, which knows
        only its uploads): one stray file per upload. An upload in progress also starts as an
        empty file of that name pattern there, but it is open until Gradio moves it to its
        hash folder, so only files this process does not have open are deleted; where open
        files cannot be listed, nothing is. The age rule (``STRAY_AGE_S``) is for a cache folder
        that other processes share (a GRADIO_TEMP_DIR set by the host): their uploads in
        progress are not in our list of open files, but have bytes within moments. ``now``:
        the wall-clock time to judge ages by (default: now). Returns what was deleted."""
        if self.upload_cache is None:
            return []
        now = time.time() if now is None else now
        try:
            names = os.listdir(self.upload_cache)
        except OSError:  # the folder is gone (the app is stopping)
            return []
        candidates = [self.upload_cache / n for n in names
                      if _TEMPFILE_NAME.fullmatch(n) and _is_stray(self.upload_cache / n, now)]
        if not candidates:
            return []
        in_use = open_files()  # listed after the candidates: a file made since is no candidate
        if in_use is None:
            return []
        removed = []
        for path in candidates:
            if path not in in_use and _is_stray(path, now):  # again: an upload that just finished has bytes
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def sweep(self, now: float | None = None) -> list[str]:
        """Close sessions detached longer than the grace period, idle longer than the TTL, or,
        made by no page and with no heartbeat open (an API client that never had one, or lost
        it), idle longer than ``idle_s``; not while they track. Returns their ids."""
        now = time.monotonic() if now is None else now

        def expired(work: WorkState) -> bool:
            if work.detached_at is not None:
                return now - work.detached_at > self.grace_s
            if not work.from_page and work.session_id not in self._beating:
                return now - work.last_seen > self.idle_s
            return now - work.last_seen > self.ttl_s

        # Chosen and removed under one hold of the lock: a session that a request attaches or a
        # reload resumes in the meantime is either still here (and not expired) or already gone.
        with self._lock:
            gone = [work for work in self._sessions.values() if expired(work) and not work.progress.running]
            for work in gone:
                del self._sessions[work.session_id]
                self._release_uploads(work)
            stale = [s for s in self._saved.values() if s.expired(self.ttl_s)]
            for saved in stale:
                del self._saved[saved.folder.name]
            for session_id, loaded in list(self._pages.items()):  # pages long gone (unload missed)
                if now - loaded > self.ttl_s and session_id not in self._sessions and session_id not in self._beating:
                    del self._pages[session_id]
        for work in gone:
            self._finish(work)
        for saved in stale:
            shutil.rmtree(saved.folder, ignore_errors=True)
        return [work.session_id for work in gone]

    def owner_of(self, path: Path) -> str | None:
        """The owner cookie of the session whose folder holds ``path``; None if none does."""
        work = self.session_of(path)
        return None if work is None else work.owner

    def session_of(self, path: Path) -> WorkState | None:
        """The live session whose folder holds ``path``, or None."""
        try:
            relative = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return None
        if not relative.parts:
            return None
        with self._lock:
            return next((w for w in self._sessions.values() if w.folder.name == relative.parts[0]), None)

    def start_sweeper(self, every_s: float | None = None) -> None:
        """A daemon thread that runs :meth:`sweep` every ``every_s`` seconds (default: a
        quarter of the shortest of TTL, grace period and idle time, between 0.5 and 60 s)."""
        if every_s is None:
            every_s = min(60.0, max(0.5, min(self.ttl_s, self.grace_s, self.idle_s) / 4))

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sweep()

        self._sweeper = threading.Thread(target=loop, name="session-sweeper", daemon=True)
        self._sweeper.start()

    def shutdown(self) -> None:
        """Stop: every session is closed, but the folders of work kept on disk stay for the next start."""
        self._stop.set()
        for work in list(self):
            self.close(work.session_id, keep_saved=True)

    # -- work kept from before a restart (ui.saved_work)
    def load_saved(self) -> list[str]:
        """Read the folders a previous run left: work kept on disk and still within the
        time-to-live (counted from its last change) waits for its browser (:meth:`saved_for`);
        every other folder is deleted, a damaged one with a plain message -> the messages."""
        messages = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir():
                continue
            with self._lock:
                if any(w.folder == folder for w in self._sessions.values()):
                    continue
            try:
                saved = read_saved_work(folder)
            except SavedWorkError as exc:
                messages.append(f"{exc} It was deleted.")
                saved = None
            except OSError as exc:
                messages.append(f"Kept work in '{folder.name}' could not be read ({exc.strerror}). It was deleted.")
                saved = None
            if saved is None or saved.expired(self.ttl_s):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            _keep_only_saved(folder)  # the pictures and exports of the last run are not needed again
            with self._lock:
                self._saved[folder.name] = saved
        return messages

    def saved_for(self, owner: str) -> SavedWork | None:
        """The most recent kept work of the browser with this owner cookie (never another's)."""
        with self._lock:
            mine = [s for s in self._saved.values() if s.belongs_to(owner) and not s.expired(self.ttl_s)]
        return max(mine, key=lambda s: s.saved_at) if mine else None

    def adopt(self, session_id: str, owner: str, saved: SavedWork) -> WorkState:
        """Make ``saved``'s folder the session of the page ``session_id`` (a restore; the
        caller loads the video and the work into it). UserError when it is not this browser's,
        or no longer waiting, or the page has a session already; ServerBusy when full."""
        if not session_id:
            raise UserError("This request has no session. Reload the page.")
        with self._lock:
            if self._saved.get(saved.folder.name) is not saved or not saved.belongs_to(owner):
                raise UserError("That kept work is no longer on the server (it may have run out of time).")
            if session_id in self._sessions:
                raise UserError("This page has work of its own already. Reload the page to restore the kept work.")
            if len(self._sessions) >= self.max_sessions:
                raise ServerBusy(
                    f"The server is busy: {len(self._sessions)} people are using it, the most it "
                    "serves at once. Please try again in a few minutes."
                )
            del self._saved[saved.folder.name]
            work = WorkState(session_id=session_id, owner=owner, folder=saved.folder, from_page=True)
            self._sessions[session_id] = work
            return work

    def give_back(self, session_id: str, saved: SavedWork) -> None:
        """A restore that did not finish (cancelled, or refused): the session goes, the kept
        work waits again, its folder untouched."""
        with self._lock:
            work = self._sessions.pop(session_id, None)
            if work is not None:
                self._release_uploads(work)
            self._saved[saved.folder.name] = saved
        if work is not None:
            work.cancel.set()
            if self.on_close is not None:
                self.on_close(work)

    def discard_saved(self, saved: SavedWork, owner: str) -> bool:
        """Delete kept work its browser does not want (or that cannot be restored). True if it was there."""
        with self._lock:
            if self._saved.get(saved.folder.name) is not saved or not saved.belongs_to(owner):
                return False
            del self._saved[saved.folder.name]
        shutil.rmtree(saved.folder, ignore_errors=True)
        return True

    def release_upload(self, work: WorkState, path: Path) -> None:
        """Give up one upload ``work`` held (an upload it will not use), deleting it as
        :meth:`close` would: unless another live session holds it, or it was uploaded again since."""
        path = Path(path).resolve()
        with self._lock:
            ref = work.uploads.pop(path, None)
            held = {p for other in self._sessions.values() for p in other.uploads}
            if ref is not None and path not in held and self._is_upload_file(path) and ref.is_current():
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
