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

    def summary(self) -> str:
        """'Tracking forward: 12/40 frames, 2.3 frames/s, about 12 s left' in plain words (a
        step that counts nothing yet, such as reading a file: 'Reading 'a.json'...')."""
        if not self.label:
            return ""
        elapsed = max(1e-6, (time.monotonic() if self.running else self.finished) - self.started)
        rate = self.done / elapsed
        label = f"{self.label} ({self.part})" if self.running and self.part else self.label
        if not self.total and not self.done:
            return f"{label}..." if self.running else self._ending(label, f" in {elapsed:.1f} s")
        text = f"{label}: {self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.running:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            return text + (f", about {left:.0f} s left" if left == left else ", starting...")
        return self._ending(text, f" in {elapsed:.1f} s")

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
