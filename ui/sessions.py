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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ui.engine import Masks, PromptSpec
from ui.media import DecodedVideo
from ui.render import object_color

MAX_OBJECTS = 255  # PNG mask exports store one object id per pixel value (1..255)
STRAY_AGE_S = 2.0  # an empty temporary file left in Gradio's cache this long is a stray (tidy_upload_cache)
MAX_UNDO = 100  # undo steps kept; older ones are dropped so a long session's memory stays bounded


class UserError(Exception):
    """Something the person using the page can fix; the message is shown as is."""


class ServerBusy(UserError):
    """Too many people at once; the message says to try again later."""


# ----------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class PackedMask:
    """A bool mask stored as bits of its bounding box: a 1280x720 mask of a small object
    takes a few hundred bytes instead of 900 kB, so hundreds of frames x objects fit."""

    shape: tuple[int, int]
    top: int
    left: int
    box_shape: tuple[int, int]
    bits: bytes
    area: int

    @classmethod
    def pack(cls, mask: np.ndarray) -> "PackedMask":
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size == 0:
            return cls(mask.shape, 0, 0, (0, 0), b"", 0)
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return cls(mask.shape, int(rows[0]), int(cols[0]), crop.shape, np.packbits(crop).tobytes(), int(crop.sum()))

    @classmethod
    def from_bits(cls, shape: tuple[int, int], top: int, left: int, box_shape: tuple[int, int], bits: bytes) -> "PackedMask":
        """The mask whose box holds ``bits`` (as ``pack`` stores them, e.g. read from a session file)."""
        count = box_shape[0] * box_shape[1]
        area = int(np.unpackbits(np.frombuffer(bits, np.uint8), count=count).sum()) if count else 0
        return cls(shape, top, left, box_shape, bits, area)

    def unpack(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        if self.area:
            h, w = self.box_shape
            crop = np.unpackbits(np.frombuffer(self.bits, np.uint8), count=h * w).astype(bool).reshape(h, w)
            out[self.top : self.top + h, self.left : self.left + w] = crop
        return out


# ----------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadRef:
    """A file of Gradio's upload cache that a session read, as it was then: ``inode`` tells
    whether the same path was uploaded again since (Gradio then moves a new file onto it)."""

    path: Path
    inode: tuple[int, int]  # (st_dev, st_ino)

    @classmethod
    def of(cls, path: Path) -> "UploadRef":
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


# ----------------------------------------------------------------------------- document


@dataclass(frozen=True)
class ObjectInfo:
    """What the user calls an object and whether it is drawn; its colour follows its id."""

    id: int
    name: str
    visible: bool = True

    @property
    def color(self) -> tuple[int, int, int]:
        return object_color(self.id)


@dataclass(frozen=True)
class PromptCall:
    """One call made to the predictor: set an object's prompt on a frame (None = clear it).

    The calls are kept in order because the predictor's answer depends on what came before
    on that frame; replaying them rebuilds the same predictor state after an undo.
    """

    frame: int
    obj_id: int
    prompt: PromptSpec | None


@dataclass(frozen=True)
class Snapshot:
    """Everything undo/redo restores. Immutable: an edit makes a new one (sharing masks)."""

    object_ids: tuple[int, ...] = ()
    calls: tuple[PromptCall, ...] = ()
    masks: dict[tuple[int, int], PackedMask] = field(default_factory=dict)  # (frame, obj) -> mask
    tracked: frozenset[tuple[int, int]] = frozenset()  # (frame, obj) results of tracking

    def prompts(self) -> dict[tuple[int, int], PromptSpec]:
        """The current prompt of each (frame, object), in the order they were last set."""
        current: dict[tuple[int, int], PromptSpec] = {}
        for call in self.calls:
            key = (call.frame, call.obj_id)
            current.pop(key, None)
            if call.prompt is not None and not call.prompt.empty and call.obj_id in self.object_ids:
                current[key] = call.prompt
        return current

    def frame_masks(self, frame: int) -> Masks:
        return {obj: self.masks[(frame, obj)].unpack() for obj in self.object_ids if (frame, obj) in self.masks}

    def all_masks(self, frames: int) -> dict[int, Masks]:
        """{frame: {object: mask}} for the exports (frames without masks are left out)."""
        result: dict[int, Masks] = {}
        for (frame, obj), packed in self.masks.items():
            if obj in self.object_ids and 0 <= frame < frames:
                result.setdefault(frame, {})[obj] = packed.unpack()
        return result

    def area(self, frame: int, obj: int) -> int | None:
        packed = self.masks.get((frame, obj))
        return None if packed is None else packed.area


@dataclass(frozen=True)
class Edit:
    """One undoable step: what it was called and the document before and after it."""

    label: str
    before: Snapshot
    after: Snapshot


@dataclass
class LoadedVideo:
    """A decoded upload and the predictor's session on it.

    ``frames`` is the only copy of the pixels, shared with the predictor's session (from
    ``Engine.keep_frames``; it may hold them compressed, so indexing can decode). ``decoded``
    keeps the upload's facts (rate, source, sound, warnings) with its own frame list emptied.
    """

    name: str
    decoded: DecodedVideo
    frames: Sequence[np.ndarray]  # N x HxWx3 uint8
    handle: Any  # the predictor's VideoSession; only ui.engine looks inside
    size: tuple[int, int] = field(init=False)  # (H, W) of the frames

    def __post_init__(self) -> None:
        height, width = self.frames[0].shape[:2]
        self.size = (int(height), int(width))

    @property
    def count(self) -> int:
        return len(self.frames)


@dataclass
class TrackProgress:
    """What a running (or the last) tracking run has done, for the progress display."""

    running: bool = False
    label: str = ""
    done: int = 0
    total: int = 0
    started: float = 0.0
    finished: float = 0.0
    cancelled: bool = False
    error: str = ""
    last_frame: int | None = None

    def summary(self) -> str:
        """'Tracking forward: 12/40 frames, 2.3 frames/s, about 12 s left' in plain words."""
        if not self.label:
            return ""
        elapsed = max(1e-6, (time.monotonic() if self.running else self.finished) - self.started)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done}/{self.total} frames, {rate:.1f} frames/s"
        if self.running:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            text += f", about {left:.0f} s left" if left == left else ", starting..."
        elif self.error:
            text += f". Stopped: {self.error}"
        elif self.cancelled:
            text += ". Cancelled: the frames done so far are kept."
        else:
            text += f" in {elapsed:.1f} s. Done."
        return text


@dataclass
class WorkState:
    """One browser tab's work. ``lock`` is held by anything that changes it, so a click that
    arrives while tracking runs is refused rather than mixed into the run."""

    session_id: str
    owner: str  # the browser cookie that may read this session's files
    folder: Path
    last_seen: float = field(default_factory=time.monotonic)
    detached_at: float | None = None  # when its page went away (unload); None while a page has it
    shown_frame: int = 0  # the frame the page showed last (a resumed page shows it again)
    video: LoadedVideo | None = None
    registry: dict[int, ObjectInfo] = field(default_factory=dict)  # every object ever made
    doc: Snapshot = field(default_factory=Snapshot)
    undo: list[Edit] = field(default_factory=list)
    redo: list[Edit] = field(default_factory=list)
    active: int | None = None
    pending_corner: tuple[int, float, float] | None = None  # (frame, x, y) of a box's first click
    needs_rebuild_note: bool = False
    progress: TrackProgress = field(default_factory=TrackProgress)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    uploads: dict[Path, UploadRef] = field(default_factory=dict)  # held until the session closes (see the store)
    _view_counter: int = 0

    # -- objects
    @property
    def objects(self) -> list[ObjectInfo]:
        return [self.registry[i] for i in self.doc.object_ids]

    def object(self, obj_id: int) -> ObjectInfo:
        if obj_id not in self.doc.object_ids:
            raise UserError(f"There is no object {obj_id}. Choose one from the object list.")
        return self.registry[obj_id]

    def update_object(self, obj_id: int, **changes: Any) -> ObjectInfo:
        self.registry[obj_id] = replace(self.object(obj_id), **changes)
        return self.registry[obj_id]

    def next_object_id(self) -> int:
        used = set(self.registry)
        free = next((i for i in range(1, MAX_OBJECTS + 1) if i not in used), None)
        if free is None:
            raise UserError(f"This video already has {MAX_OBJECTS} objects, the most the mask files can hold.")
        return free

    # -- history
    def commit(self, label: str, after: Snapshot, before: Snapshot | None = None) -> None:
        """Make ``after`` the document, undoably (``before``: what undo returns to, if not
        the current document)."""
        self.undo.append(Edit(label, self.doc if before is None else before, after))
        del self.undo[:-MAX_UNDO]
        self.redo.clear()
        self.doc = after

    # -- files
    def new_file(self, stem: str, suffix: str) -> Path:
        """A fresh name in the session folder (browsers cache by URL, so names never repeat)."""
        self._view_counter += 1
        folder = self.folder / "view"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stem}-{self._view_counter:06d}{suffix}"

    def prune_views(self, keep: int = 24) -> None:
        """Remove old frame images; the newest few stay so a page still loading them finds them."""
        folder = self.folder / "view"
        if folder.is_dir():
            files = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in files[:-keep]:
                old.unlink(missing_ok=True)

    def exports_folder(self) -> Path:
        folder = self.folder / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


# ----------------------------------------------------------------------------- the store


class SessionStore:
    """All live sessions. Thread-safe; one folder per session under ``root``.

    ``upload_cache``: Gradio's cache folder, where uploads arrive. Only files in it (and not
    in ``root``) are ever deleted as uploads; without it, uploads are counted but never deleted.
    """

    def __init__(
        self, root: Path, ttl_s: float = 1800.0, max_sessions: int = 16, grace_s: float | None = None,
        upload_cache: Path | None = None, on_close: Callable[[WorkState], None] | None = None,
    ) -> None:  # fmt: skip
        """on_close(work) runs when a session is closed (tab gone, expired): e.g. the engine
        drops the video's pending background work."""
        self.on_close = on_close
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.upload_cache = None if upload_cache is None else Path(upload_cache).resolve()
        self.ttl_s = ttl_s
        self.grace_s = ttl_s if grace_s is None else grace_s  # how long a detached session waits
        self.max_sessions = max_sessions
        self._sessions: dict[str, WorkState] = {}
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
                work = WorkState(session_id=session_id, owner=owner, folder=folder)
                self._sessions[session_id] = work
            elif not secrets.compare_digest(work.owner, owner):
                raise UserError("This page's session belongs to another browser. Reload the page.")
            work.last_seen = time.monotonic()
            work.detached_at = None  # its page is back (a heartbeat that reconnected)
            return work

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

    def close(self, session_id: str) -> bool:
        """Forget a session, delete its folder and the uploads only it held (tab closed).
        True if there was one."""
        with self._lock:
            work = self._sessions.pop(session_id, None)
            if work is not None:
                self._release_uploads(work)
        if work is None:
            return False
        work.cancel.set()  # a running tracking run stops at the next frame
        if self.on_close is not None:
            self.on_close(work)
        shutil.rmtree(work.folder, ignore_errors=True)
        self.tidy_upload_cache()
        return True

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
        return self.upload_cache is not None and path.parent.parent == self.upload_cache and self.root not in path.parents

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
        candidates = [self.upload_cache / n for n in names if _TEMPFILE_NAME.fullmatch(n) and _is_stray(self.upload_cache / n, now)]
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
        """Close sessions detached longer than the grace period or idle longer than the TTL
        (not while they track). Returns their ids."""
        now = time.monotonic() if now is None else now

        def expired(work: WorkState) -> bool:
            if work.detached_at is not None:
                return now - work.detached_at > self.grace_s
            return now - work.last_seen > self.ttl_s

        with self._lock:
            idle = [sid for sid, work in self._sessions.items() if expired(work) and not work.progress.running]
        return [sid for sid in idle if self.close(sid)]

    def owner_of(self, path: Path) -> str | None:
        """The owner cookie of the session whose folder holds ``path``; None if none does."""
        try:
            relative = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return None
        if not relative.parts:
            return None
        with self._lock:
            for work in self._sessions.values():
                if work.folder.name == relative.parts[0]:
                    return work.owner
        return None

    def start_sweeper(self, every_s: float | None = None) -> None:
        """A daemon thread that runs :meth:`sweep` every ``every_s`` seconds (default: a
        quarter of the shorter of TTL and grace period, between 0.5 and 60 s)."""
        if every_s is None:
            every_s = min(60.0, max(0.5, min(self.ttl_s, self.grace_s) / 4))

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sweep()

        self._sweeper = threading.Thread(target=loop, name="session-sweeper", daemon=True)
        self._sweeper.start()

    def shutdown(self) -> None:
        self._stop.set()
        for work in list(self):
            self.close(work.session_id)
