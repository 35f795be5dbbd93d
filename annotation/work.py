"""The work on one video: the decoded video and the predictor's session on it, the object
list, the current document with its undo history, and a tracking run's progress.

The page keeps one :class:`Work` per browser tab (``ui.sessions.WorkState`` adds who owns it);
the command line keeps one per video it processes. Operations on it are in
:mod:`annotation.operations`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from annotation.document import DEFAULT_LABEL, MAX_OBJECTS, Edit, Naming, ObjectInfo, Snapshot, UserError
from sam2.video_io import DecodedVideo

MAX_UNDO = 100  # undo steps kept; older ones are dropped so a long session's memory stays bounded


@dataclass
class LoadedVideo:
    """A decoded upload (a video, or an image set) and the predictor's session on it.

    ``frames`` is the only copy of the pixels, shared with the predictor's session (from
    ``Engine.keep_frames``; it may hold them compressed, so indexing can decode). ``decoded``
    keeps the upload's facts (rate, source, sound, warnings, an image set's file names) with
    its own frame list emptied.

    An image set's frames may differ in size: ``sizes`` holds each frame's (H, W), and
    whatever is per frame (clicks, masks, exports) uses :meth:`frame_size`. ``size`` is the
    one size of a video's frames, for what needs one (an exported video).
    """

    name: str
    decoded: DecodedVideo
    frames: Sequence[np.ndarray]  # N x HxWx3 uint8; H, W may differ per frame in an image set
    handle: Any  # the predictor's VideoSession; only annotation.engine looks inside
    sizes: tuple[tuple[int, int], ...] = field(init=False)  # (H, W) of each frame

    def __post_init__(self) -> None:
        # A FrameStore knows its sizes without decoding a frame; a plain list is measured.
        known = getattr(self.frames, "sizes", None)
        sizes = known if known is not None else [frame.shape[:2] for frame in self.frames]
        self.sizes = tuple((int(h), int(w)) for h, w in sizes)

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def uniform(self) -> bool:
        """One size for every frame (always so for a video)."""
        return len(set(self.sizes)) == 1

    @property
    def is_image_set(self) -> bool:
        return bool(self.decoded.frame_names)

    @property
    def frame_names(self) -> tuple[str, ...]:
        """An image set's file names in frame order; () for a video."""
        return tuple(self.decoded.frame_names)

    def frame_size(self, frame: int) -> tuple[int, int]:
        """(H, W) of one frame (IndexError, worded as the predictor's, for a frame outside the video)."""
        if not 0 <= frame < len(self.sizes):
            raise IndexError(f"Frame index {frame} is outside the video (0 to {len(self.sizes) - 1}).")
        return self.sizes[frame]

    def size_text(self, frame: int) -> str:
        """"the video is 640x360", or "image 'a.jpg' (frame 2) is 200x300", for messages."""
        height, width = self.sizes[frame]
        if self.is_image_set:
            return f"image '{self.frame_names[frame]}' (frame {frame}) is {width}x{height}"
        return f"the video is {width}x{height}"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) shared by all frames. Images of different sizes have none: asked for one (to
        make a video of them), it says so rather than stretching them."""
        if not self.uniform:
            (h0, w0), other = self.sizes[0], next(s for s in self.sizes if s != self.sizes[0])
            raise UserError(
                f"The images differ in size ({w0}x{h0}, {other[1]}x{other[0]}...), so they cannot be one video. "
                "Export masks per image instead (PNG masks, COCO, YOLO)."
            )
        return self.sizes[0]

ESTIMATE_WEIGHT = 3  # how many measured units the starting estimate of a step's pace counts as


@dataclass
class TrackProgress:
    """What a running (or the last) long step has done, for the progress display: tracking,
    loading a session file, making files, an import."""

    running: bool = False
    label: str = ""
    done: int = 0
    total: int = 0
    started: float = 0.0
    finished: float = 0.0
    cancelled: bool = False
    error: str = ""
    last_frame: int | None = None
    unit: str = "frames"  # what done and total count (loading a session file counts prompts)
    kept: str = "the frames done so far are kept"  # what a cancel leaves
    part: str = ""  # the part of the step under way, while it runs (making files: the file being made)
    estimate_s: float | None = None  # seconds per unit expected at the start (tracking: from the speed measured here)
    first_done: float = 0.0  # time.monotonic() when the first units were done (see advance)
    first_count: int = 0  # ... how many they were
    last_done: float = 0.0  # ... and when the last were

    def count_one(self, now: float | None = None) -> None:
        """One more unit done (see :meth:`advance`)."""
        self.advance(1, now)

    def advance(self, units: int, now: float | None = None) -> None:
        """``units`` more done at ``now`` (time.monotonic()), for the pace the time left is read
        from: the pace counts from the first units done on, since those pay for the warm-up."""
        now = time.monotonic() if now is None else now
        self.done += units
        if not self.first_done:
            self.first_done, self.first_count = now, self.done
        self.last_done = now

    def unit_s(self, now: float | None = None) -> float | None:
        """Seconds one more unit takes, or None while there is no basis: the estimate given at
        the start (``estimate_s``) until units are done, then blended towards their measured
        pace as more are (the pace between the first unit done and the last, when they are
        counted with :meth:`count_one`: the first unit pays for the warm-up); a step without an
        estimate uses the pace of the units done so far."""
        timed = self.done - self.first_count if self.last_done else 0  # units done since the first were
        pace = (self.last_done - self.first_done) / timed if timed > 0 else None
        if pace is None and self.estimate_s is None:
            if not self.done:
                return None
            end = self.last_done or (time.monotonic() if now is None else now)
            return (end - self.started) / self.done
        if pace is None or self.estimate_s is None:
            return pace if pace is not None else self.estimate_s
        weight = timed / (timed + ESTIMATE_WEIGHT)  # the estimate counts as a few units measured
        return (1 - weight) * self.estimate_s + weight * pace

    def seconds_left(self, now: float | None = None) -> float | None:
        """The time left in seconds, or None without a basis (see :meth:`unit_s`); the time
        already spent on the unit under way is taken off, so the figure falls while it runs."""
        now = time.monotonic() if now is None else now
        unit = self.unit_s(now)
        if unit is None or not self.running:
            return None
        since = now - (self.last_done or self.started) if self.last_done or not self.done else 0.0
        return max(0.0, (self.total - self.done) * unit - min(since, unit))

    def summary(self) -> str:
        """'Tracking forward: 12/40 frames, 2.3 frames/s, about 12 s left' in plain words (a
        step that counts nothing yet, such as reading a file: 'Reading 'a.json'...'). The time
        left is said only where there is a basis (:meth:`unit_s`)."""
        if not self.label:
            return ""
        now = time.monotonic()
        elapsed = max(1e-6, (now if self.running else self.finished) - self.started)
        label = f"{self.label} ({self.part})" if self.running and self.part else self.label
        if not self.total and not self.done:
            return f"{label}..." if self.running else self._ending(label, f" in {elapsed:.1f} s")
        text = f"{label}: {self.done}/{self.total} {self.unit}"
        if self.running:
            unit = self.unit_s(now)
            if unit and self.done > self.first_count:
                text += f", {1 / unit:.1f} {self.unit}/s" if unit <= 1 else f", {unit:.1f} s per {self.unit[:-1]}"
            left = self.seconds_left(now)
            return text + (f", about {left:.0f} s left" if left is not None else ", starting...")
        rate = self.done / elapsed
        return self._ending(f"{text}, {rate:.1f} {self.unit}/s", f" in {elapsed:.1f} s")

    def _ending(self, text: str, took: str) -> str:
        """How a step that has ended ended, after ``text`` (``took``: its time, said when it got done)."""
        if self.error:
            return f"{text}. Stopped: {self.error}"
        if self.cancelled:
            return f"{text}. Cancelled: {self.kept}."
        return f"{text}{took}. Done."


@dataclass
class Work:
    """One video's annotation work. ``lock`` is held by anything that changes it, so a click
    that arrives while tracking runs is refused rather than mixed into the run.

    ``folder`` holds the files made for this work (the video's extracted sound, exports).
    """

    folder: Path
    video: LoadedVideo | None = None
    registry: dict[int, ObjectInfo] = field(default_factory=dict)  # every object ever made
    labels: list[str] = field(default_factory=lambda: [DEFAULT_LABEL])  # the classes, in export order
    last_label: str = DEFAULT_LABEL  # a new object takes the label chosen last
    doc: Snapshot = field(default_factory=Snapshot)
    undo: list[Edit] = field(default_factory=list)
    redo: list[Edit] = field(default_factory=list)
    active: int | None = None
    pending_corner: tuple[int, float, float] | None = None  # (frame, x, y) of a box's first click
    shown_frame: int = 0  # the frame shown last (a resumed page shows it again)
    progress: TrackProgress = field(default_factory=TrackProgress)
    found: Any = None  # masks found on a frame, waiting to be kept (annotation.finding.Found); not undoable
    text_found: Any = None  # boxes found by text on a frame, waiting to be kept (annotation.text_finding.TextFound)
    text_plan_video: Any = None  # weakref to the video whose whole-video plan the page has said (ui/text_page.py)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

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

    def naming(self) -> Naming:
        return Naming(dict(self.registry), tuple(self.labels), self.last_label)

    def restore_naming(self, naming: Naming) -> None:
        self.registry, self.labels, self.last_label = dict(naming.registry), list(naming.labels), naming.last_label

    # -- history
    def commit(self, label: str, after: Snapshot, before: Snapshot | None = None,
               naming_before: Naming | None = None) -> None:
        """Make ``after`` the document, undoably (``before``: what undo returns to, if not
        the current document; ``naming_before``: the naming undo returns to, for an edit that
        replaced it, the current naming being the one redo gives back)."""
        naming = None if naming_before is None else (naming_before, self.naming())
        self.undo.append(Edit(label, self.doc if before is None else before, after, naming))
        del self.undo[:-MAX_UNDO]
        self.redo.clear()
        self.doc = after

    # -- files
    def exports_folder(self) -> Path:
        folder = self.folder / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
