"""A page's work kept on disk, so that it survives a restart of the server.

Each page's session folder (``ui.sessions``) gets a ``saved/`` folder, rewritten after every
change by :class:`WorkKeeper` (a thread of its own, so clicks never wait for the disk)::

    saved/upload-3/0/clip.mp4   the uploaded file(s), hard links to Gradio's upload (no second copy)
    saved/session.json          the session file, as "Make files" writes it (objects, prompts, masks, labels)
    saved/work.json             what else a restore needs, written last (see WORK_FIELDS)

Each file is written to a temporary name and renamed, so a server killed at any moment leaves
the old version or the new one, never half a file; ``work.json`` names the SHA-256 of the
``session.json`` it goes with, so a pair from two different saves is refused as damaged.

After a restart the store reads every folder (:func:`read_saved_work`): the work is offered to
the browser whose owner cookie made it (only its SHA-256 is on disk), until the time-to-live
runs out counted from the last change. A folder that cannot be read (damaged, another version,
a hostile name, too big) is refused with a plain message in the log and deleted.

No Gradio here: the page's panel is ``ui.guard_page``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation import formats, operations
from annotation.work import Work

SAVED = "saved"  # the folder in a session folder
WORK_FILE = "work.json"
SESSION_FILE = "session.json"
SAVED_VERSION = 1
MAX_WORK_BYTES = 256 * 1024  # work.json is small: names and a list of file names
MAX_FILES = 10_000  # uploaded files of one work (an image set's images)
KEEP_EVERY_S = 1.0  # how often the keeper looks for changed work (a burst of clicks is one write)
_UPLOAD_PART = re.compile(r"upload-[0-9]{1,9}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger(__name__)


class SavedWorkError(Exception):
    """Saved work that cannot be used; the message says why in plain words."""


def owner_digest(owner: str) -> str:
    """What is stored of a browser's owner cookie: its SHA-256, so the disk never holds the cookie."""
    return hashlib.sha256(owner.encode()).hexdigest()


@dataclass(frozen=True)
class VideoSource:
    """How the loaded video was made: the uploaded files in order, the name it was loaded
    under (None: the default for the files) and the frames per second asked for (None: the
    video's own)."""

    files: tuple[Path, ...]
    name: str | None
    fps: float | None


@dataclass(frozen=True)
class SavedWork:
    """One session folder's saved work, as read back (every field checked)."""

    folder: Path  # the session folder
    owner: str  # SHA-256 (hex) of the owner cookie
    saved_at: float  # time.time() of the last change saved
    source: VideoSource  # files inside folder/saved
    image_size: int
    shown_frame: int
    video_name: str
    objects: int
    tracked_frames: int

    @property
    def session_file(self) -> Path:
        return self.folder / SAVED / SESSION_FILE

    def belongs_to(self, owner: str) -> bool:
        return bool(owner) and secrets.compare_digest(self.owner, owner_digest(owner))

    def expired(self, ttl_s: float, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.saved_at > ttl_s

    def when(self, now: float | None = None) -> str:
        """The time of the last change, as the server's clock says it: '12:03', or '3 Dec 12:03' on another day."""
        saved, today = time.localtime(self.saved_at), time.localtime(time.time() if now is None else now)
        clock = f"{saved.tm_hour}:{saved.tm_min:02d}"
        return clock if saved[:3] == today[:3] else f"{saved.tm_mday} {time.strftime('%b', saved)} {clock}"

    def offer_text(self, now: float | None = None) -> str:
        """"Your work on 'clip.mp4' from 12:03 (2 objects, 37 tracked frames) was kept. Restore it?"."""
        return (f"Your work on '{self.video_name}' from {self.when(now)} ({counted(self.objects, 'object')}, "
                f"{counted(self.tracked_frames, 'tracked frame')}) was kept. Restore it?")  # fmt: skip


def counted(count: int, thing: str) -> str:
    """'1 object', '2 objects', 'no tracked frames'."""
    if count == 0:
        return f"no {thing}s"
    return f"{count} {thing}{'' if count == 1 else 's'}"


# ----------------------------------------------------------------------------- what would be lost


def tracked_frames(tracked: Iterable[tuple[int, int]], prompted: Iterable[tuple[int, int]]) -> int:
    """Frames with a mask that tracking made, as the progress line counts them: a run marks its
    start frame too, but a mask there answers the person's own prompt (tracking "2 frames" from
    frame 0 gives frames 1 and 2)."""
    prompted = set(prompted)
    return len({frame for frame, obj in tracked if (frame, obj) not in prompted})


def has_work(work: Work) -> bool:
    """Whether replacing ``work`` would lose anything a person made: prompts, masks, or steps to undo."""
    if work.video is None:
        return False
    doc = work.doc
    return bool(work.undo or doc.masks or doc.prompts())


def lost_words(work: Work) -> str:
    """"'clip.mp4' has 2 objects with 14 clicks and 37 tracked frames" (a box counts as a box,
    a painted or imported mask as a mask), exact counts of the current document."""
    doc = work.doc
    prompts = doc.prompts().values()
    clicks = sum(len(p.points) for p in prompts if p.mask is None)
    boxes = sum(1 for p in prompts if p.mask is None and p.box is not None)
    drawn = sum(1 for p in prompts if p.mask is not None)
    tracked = tracked_frames(doc.tracked, doc.prompts())
    parts = [counted(clicks, "click")]
    if boxes:
        parts.append(counted(boxes, "box").replace("boxs", "boxes"))
    if drawn:
        parts.append(counted(drawn, "drawn or imported mask"))
    parts.append(counted(tracked, "tracked frame"))
    listing = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    name = work.video.name if work.video is not None else "The video"
    return f"'{name}' has {counted(len(doc.object_ids), 'object')} with {listing}"


# ----------------------------------------------------------------------------- reading


def read_saved_work(folder: Path) -> SavedWork | None:
    """The saved work of a session folder; None when it has none (a page that saved nothing
    yet, an API client's). SavedWorkError, with a plain message, for a folder whose saved work
    cannot be used: the caller deletes it."""
    saved = folder / SAVED
    work_file = saved / WORK_FILE
    if not work_file.exists() and not work_file.is_symlink():
        return None
    try:
        return _parse_work(_read_json_file(work_file, MAX_WORK_BYTES, "its description"), folder)
    except _Bad as exc:
        raise SavedWorkError(f"The kept work in '{folder.name}' is damaged: {exc}.") from None


class _Bad(Exception):
    """Why saved work cannot be used (completed into a SavedWorkError's sentence)."""


def _read_json_file(path: Path, limit: int, what: str) -> Any:
    try:
        info = path.lstat()
    except OSError as exc:
        raise _Bad(f"{what} could not be read ({exc.strerror})") from None
    if not path.is_file() or path.is_symlink():
        raise _Bad(f"{what} is not a plain file")
    if info.st_size > limit:
        raise _Bad(f"{what} is too large ({info.st_size} bytes; the most is {limit})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise _Bad(f"{what} is not readable JSON (cut short or damaged)") from None


def _field(data: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise _Bad(f"'{key}' is missing or of the wrong kind")
    return value


def _parse_work(data: Any, folder: Path) -> SavedWork:
    if not isinstance(data, dict):
        raise _Bad("it is not a JSON object")
    version = data.get("version")
    if version != SAVED_VERSION or isinstance(version, bool):
        raise _Bad(f"it has version {str(version)[:20]!r}, and this app reads version {SAVED_VERSION}")
    owner = _field(data, "owner", str)
    if not _HEX64.fullmatch(owner):
        raise _Bad("'owner' is not a SHA-256")
    saved_at = float(_field(data, "saved_at", (int, float)))
    if not math.isfinite(saved_at) or saved_at > time.time() + 60:
        raise _Bad("'saved_at' is not a time in the past")
    files = tuple(_saved_file(folder, name) for name in _files(data))
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise _Bad("'name' is of the wrong kind")
    fps = data.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise _Bad("'fps' is not a frame rate")
    image_size = _field(data, "image_size", int)
    if not 64 <= image_size <= 4096:
        raise _Bad("'image_size' is not a model size")
    shown = _field(data, "shown_frame", int)
    digest = _field(data, "session_sha256", str)
    session = _read_session(folder / SAVED / SESSION_FILE, digest)
    if not 0 <= shown < session.video.frames:
        raise _Bad("'shown_frame' is outside the video")
    tracked = tracked_frames({(m.frame, m.obj_id) for m in session.masks if m.tracked},
                             {(p.frame, p.obj_id) for p in session.prompts})  # fmt: skip
    source = VideoSource(files, None if name is None else (formats.clean_name(name, limit=255) or None),
                         None if fps is None else float(fps))  # fmt: skip
    return SavedWork(folder, owner, saved_at, source, image_size, shown, session.video.name, len(session.objects),
                     tracked)  # fmt: skip


def _files(data: dict) -> list[str]:
    files = _field(data, "files", list)
    if not 1 <= len(files) <= MAX_FILES or not all(isinstance(f, str) for f in files):
        raise _Bad(f"'files' must list 1 to {MAX_FILES} file names")
    return files


def _saved_file(folder: Path, relative: str) -> Path:
    """An uploaded file kept in ``folder/saved``: 'upload-<n>/<i>/<name>', a plain file, no
    path trick (no '..', no absolute path, no link leading out)."""
    parts = relative.split("/")
    plain = len(parts) == 3 and _UPLOAD_PART.fullmatch(parts[0]) and parts[1].isdigit() and parts[1].isascii()
    name = parts[-1]
    if not plain or not name or name in (".", "..") or name.startswith(".") or "\\" in name or "\0" in name:
        raise _Bad(f"the file name {relative[:80]!r} is not one this app writes")
    path = folder / SAVED / relative
    if path.is_symlink():
        raise _Bad(f"the uploaded file {name[:80]!r} is a link, not a file")
    if not path.is_file():
        raise _Bad(f"the uploaded file {name[:80]!r} is missing")
    if (folder / SAVED).resolve() not in path.resolve().parents:
        raise _Bad(f"the file name {relative[:80]!r} leads out of its folder")
    return path


def _read_session(path: Path, digest: str) -> formats.Session:
    if path.is_symlink() or not path.is_file():
        raise _Bad("its session file is missing")
    if path.stat().st_size > formats.MAX_SESSION_BYTES:
        raise _Bad("its session file is too large")
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise _Bad("its session file is not the one it was saved with")
    try:
        return formats.load_session_json(path)
    except formats.SessionError as exc:
        raise _Bad(str(exc).rstrip(".")) from None


# ----------------------------------------------------------------------------- writing


@dataclass
class _Mark:
    """What a session's last save was of (compared by identity: a document is immutable)."""

    doc: Any = None
    naming: tuple = ()
    source: VideoSource | None = None
    shown: int = -1
    image_size: int = 0
    kept: VideoSource | None = None  # the source as linked into saved/ (its files there)
    session_sha256: str = ""
    ref: tuple[Any, formats.VideoRef] | None = None  # (video, its VideoRef): the fingerprint, measured once


@dataclass
class SaveTimes:
    """How long the keeper's writes took (for the log and the benchmark)."""

    count: int = 0
    total_s: float = 0.0
    last_s: float = 0.0
    slowest_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.last_s = seconds
        self.slowest_s = max(self.slowest_s, seconds)


@dataclass
class WorkKeeper:
    """Writes each page's changed work to its session folder, on a thread of its own.

    Only a page's sessions are kept (an API client cannot reload to restore), once their video
    came from an upload (``WorkState.source``); not while a long step runs (its result is saved
    when it ends). A save that fails (a document changing under it) is tried again next round."""

    store: Iterable[Any]  # the live sessions (ui.sessions.SessionStore, which imports this module)
    image_size_of: Callable[[Any], int]  # the model size of a video's predictor session (Engine.image_size_of)
    every_s: float = KEEP_EVERY_S
    times: SaveTimes = field(default_factory=SaveTimes)
    _marks: dict[Path, _Mark] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="work-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def finish(self) -> None:
        """Stop, after saving what changed since the last round (the server is stopping)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.keep_all()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.keep_all()

    def keep_all(self) -> int:
        """Save every live page's changed work -> how many were written."""
        written = 0
        live = set()
        for work in self.store:
            live.add(work.folder)
            try:
                written += self.keep(work)
            except Exception as exc:  # changed under the save, or the disk: the next round tries again
                log.warning("Could not save a session's work (%s: %s); trying again", type(exc).__name__, exc)
        for gone in set(self._marks) - live:
            del self._marks[gone]
        return written

    def keep(self, work: Any) -> bool:
        """Save ``work`` if it changed since its last save -> whether it was written."""
        video, source, doc = work.video, work.source, work.doc
        if not work.from_page or video is None or source is None or work.progress.running:
            return False
        mark = self._marks.setdefault(work.folder, _Mark())
        naming = (tuple(work.objects), tuple(work.labels))
        size = self.image_size_of(video.handle)
        content = mark.doc is not doc or mark.naming != naming or mark.source != source
        if not content and (mark.shown, mark.image_size) == (work.shown_frame, size):
            return False
        started = time.perf_counter()
        saved = work.folder / SAVED
        saved.mkdir(parents=True, exist_ok=True)
        if mark.kept is None or source not in (mark.kept, mark.source):
            mark.kept = _link_upload(saved, source)
        if content:
            if mark.ref is None or mark.ref[0] is not video:
                mark.ref = (video, operations.video_ref(video))
            record = operations.session_record(work, doc, mark.ref[1])
            mark.session_sha256 = _write_session(saved, record)
        _write_json(saved / WORK_FILE, {
            "version": SAVED_VERSION,
            "owner": owner_digest(work.owner),
            "saved_at": time.time(),
            "files": [p.relative_to(saved).as_posix() for p in mark.kept.files],
            "name": source.name,
            "fps": source.fps,
            "image_size": size,
            "shown_frame": work.shown_frame,
            "session_sha256": mark.session_sha256,
        })  # fmt: skip
        _remove_other_uploads(saved, mark.kept)
        mark.doc, mark.naming, mark.source, mark.shown, mark.image_size = doc, naming, source, work.shown_frame, size
        self.times.add(time.perf_counter() - started)
        return True


def _link_upload(saved: Path, source: VideoSource) -> VideoSource:
    """The uploaded files in a new ``saved/upload-<n>/`` folder: hard links where the upload
    is on the same disk (no bytes copied), else copies. A source already in ``saved`` stays."""
    if all(saved in f.parents for f in source.files):
        return source
    numbers = [int(p.name.split("-")[1]) for p in saved.glob("upload-*") if _UPLOAD_PART.fullmatch(p.name)]
    target = saved / f"upload-{max(numbers, default=0) + 1}"
    kept = []
    for i, file in enumerate(source.files):
        path = target / str(i) / file.name
        path.parent.mkdir(parents=True)
        try:
            os.link(file, path)
        except OSError:
            shutil.copyfile(file, path)
        kept.append(path)
    return VideoSource(tuple(kept), source.name, source.fps)


def _remove_other_uploads(saved: Path, kept: VideoSource) -> None:
    """Delete earlier uploads' folders (after work.json no longer names them)."""
    keep = {f.relative_to(saved).parts[0] for f in kept.files}
    for folder in saved.glob("upload-*"):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _write_session(saved: Path, record: formats.Session) -> str:
    """Write session.json (atomically) -> the SHA-256 of its bytes."""
    path = formats.export_session_json(record, saved, stem=SESSION_FILE.removesuffix(".json"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps(data), encoding="utf-8")
        partial.replace(path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def restore_source(saved: SavedWork) -> VideoSource:
    """The files to decode for a restore (checked again: they may have gone since the start)."""
    for path in saved.source.files:
        if path.is_symlink() or not path.is_file():
            raise SavedWorkError(f"The kept copy of '{path.name}' is gone from the server.")
    return saved.source
