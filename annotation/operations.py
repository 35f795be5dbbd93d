"""What the buttons do: load a video, click prompts, undo/redo, objects, tracking, exports.

Every operation works on one :class:`~annotation.work.Work` and the shared
:class:`~annotation.engine.Engine`, and returns a plain message for the page. Problems the user can
fix raise :class:`~annotation.document.UserError`.

Undo/redo model: each change makes a new immutable :class:`Snapshot` (prompts as the ordered
list of predictor calls, masks, tracked frames); undo restores the previous snapshot and
rebuilds the predictor by replaying the calls (cheap: one mask decode per call). Tracking is
not replayed (it can take minutes), so after an undo across a tracking run the tracked masks
shown are the saved ones, and the predictor's tracking memory starts afresh with the next
"Track".
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from annotation import datasets, formats, imports
from annotation.document import MAX_OBJECTS, ObjectInfo, PackedMask, PromptCall, PromptSpec, Snapshot, UserError
from annotation.engine import Engine
from annotation.work import LoadedVideo, TrackProgress, Work
from sam2.image_set import is_image_name, is_zip_name, read_image_set
from sam2.video_io import DecodedVideo, MediaError, MediaLimits, decode

Mode = Literal["add", "remove", "box"]
Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[Direction, ...] = ("forward", "backward", "both")
log = logging.getLogger(__name__)
EXPORT_FORMATS = (
    "overlay", "mask_video", "png", "semantic", "coco", "coco_images", "ytvis", "yolo", "mot", "session",
)  # fmt: skip
EXPORT_NAMES = {
    "overlay": "the overlay video", "mask_video": "the mask video", "png": "the PNG masks",
    "semantic": "the semantic masks", "coco": "the COCO file", "coco_images": "the COCO dataset with frames",
    "ytvis": "the YouTube-VIS file", "yolo": "the YOLO dataset", "mot": "the MOT tracks", "session": "the session file",
}  # fmt: skip


# ----------------------------------------------------------------------------- video


def load_video(
    work: Work, engine: Engine, path: str | Path, limits: MediaLimits, name: str | None = None,
    fps: float | None = None, image_size: int | None = None,
) -> str:
    """Decode an upload (sampled at `fps`, default the source rate capped by the limits) and
    start afresh on it with one empty object ready for clicks; the model runs at
    `image_size` (default the engine's)."""
    path = Path(path)
    media = work.folder / "media"
    try:
        decoded = decode(path, limits, fps=fps, workdir=media)
    except MediaError as exc:
        raise UserError(str(exc)) from None
    return open_video(work, engine, decoded, name or path.name, image_size)


def load_upload(
    work: Work, engine: Engine, paths: Sequence[str | Path], limits: MediaLimits, name: str | None = None,
    fps: float | None = None, image_size: int | None = None,
) -> str:
    """What the user gave: one video or image (:func:`load_video`), or an image set (several
    images, a zip of them, a folder of them: :func:`load_images`). A mix of videos and images,
    or several videos, is refused before anything is read, and the work loaded before stays."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("Choose a video, or images (several files or a zip), to upload.")
    if len(paths) == 1 and not (paths[0].is_dir() or is_zip_name(paths[0].name)):
        return load_video(work, engine, paths[0], limits, name=name, fps=fps, image_size=image_size)
    videos = [p.name for p in paths if not (p.is_dir() or is_zip_name(p.name) or is_image_name(p.name))]
    if videos and len(videos) == len(paths):
        shown = ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else "")
        raise UserError(f"These are {len(paths)} videos ({shown}); upload one video at a time.")
    if videos:
        raise UserError(
            f"'{videos[0]}' is a video (or not an image), uploaded together with images. Upload either one "
            "video, or images (several image files or a zip of them), not both."
        )
    return load_images(work, engine, paths, limits, name=name, image_size=image_size)


def load_images(
    work: Work, engine: Engine, paths: Sequence[str | Path], limits: MediaLimits, name: str | None = None,
    image_size: int | None = None,
) -> str:
    """An image set as frames, in name order, each at its own size (``max_frames`` bounds the
    number of images); every problem is refused before the loaded work is touched."""
    paths = [Path(p) for p in paths]
    try:
        decoded = read_image_set(paths, limits)
    except MediaError as exc:
        raise UserError(str(exc)) from None
    default = paths[0].name if len(paths) == 1 else "images"  # several files: exports are images_coco.json...
    return open_video(work, engine, decoded, name or default, image_size)


def load_video_streamed(
    work: Work, engine: Engine, path: str | Path, limits: MediaLimits, name: str | None = None,
    fps: float | None = None, image_size: int | None = None,
) -> str:
    """:func:`load_video` without decoding the video first: its frames are read from the file
    as they are needed (``sam2.video_stream``), the same frames, in bounded memory. Meant for
    tracking forward and exporting (the command line's long videos): a frame behind the few
    held reads the file again from its start."""
    from sam2.video_stream import open_stream

    path = Path(path)
    try:
        decoded, stream = open_stream(path, limits, fps=fps, workdir=work.folder / "media")
    except MediaError as exc:
        raise UserError(str(exc)) from None
    return open_video(work, engine, decoded, name or path.name, image_size, frames=stream)


def open_video(
    work: Work, engine: Engine, decoded: DecodedVideo, name: str, image_size: int | None = None,
    frames: Sequence[np.ndarray] | None = None,
) -> str:
    """Start afresh on decoded frames: they are handed to one store that the predictor and
    the page share (``decoded`` keeps the facts, not a second copy of the pixels). ``frames``:
    a store made already (a ``FrameStream``), used instead of ``decoded.frames``."""
    if work.video and work.video.decoded.audio_path:
        work.video.decoded.audio_path.unlink(missing_ok=True)
    if work.video:
        engine.stop_encoding_ahead(work.video.handle)
    work.video = None  # the previous video's frames can go before the new ones are stored
    frames = engine.keep_frames(decoded.frames) if frames is None else frames
    work.video = LoadedVideo(name, replace(decoded, frames=[]), frames, engine.start(frames, image_size))
    work.registry = {1: ObjectInfo(1, "object 1", label=work.last_label)}  # labels stay from video to video
    work.doc = Snapshot(object_ids=(1,))
    work.undo.clear()
    work.redo.clear()
    work.active = 1
    work.pending_corner = None
    work.progress = TrackProgress()
    notes = " ".join(decoded.warnings)
    return f"Loaded {_what_was_loaded(work.video)}. Click on the object you want to follow. {notes}".strip()


def _what_was_loaded(video: LoadedVideo) -> str:
    """"'walk.mp4'", or for an image set "3 images, of different sizes (each keeps its own) from 'set.zip'"."""
    if not video.is_image_set:
        return f"'{video.name}'"
    sizes = "" if video.uniform else ", of different sizes (each keeps its own)"
    return f"{video.count} images{sizes} from '{video.name}'"


def change_detail(work: Work, engine: Engine, image_size: int) -> str:
    """Run the loaded video's model at another input size: a new predictor session at that
    size, the clicks replayed into it and the prompted frames' masks taken from the replay.
    Tracked masks stay as they were until the next tracking run (the message says so)."""
    video = require_video(work)
    before = engine.image_size_of(video.handle)
    if image_size == before:
        return f"The model already runs at {image_size} px."
    engine.stop_encoding_ahead(video.handle)
    video.handle = engine.start(video.frames, image_size)
    masks = rebuild(work, engine)
    doc = work.doc
    fresh = {key: PackedMask.pack(mask) for key, mask in masks.items()}
    work.doc = replace(doc, masks={**doc.masks, **fresh})
    message = f"The model now runs at {image_size} px (was {before} px); your clicks were applied again."
    if doc.tracked:
        message += " Tracked frames still show the earlier masks: press Track to update them."
    return message


def require_video(work: Work) -> LoadedVideo:
    if work.video is None:
        raise UserError("Upload a video first (step 1).")
    return work.video


def check_frame(work: Work, frame: int) -> int:
    video = require_video(work)
    frame = int(frame)
    if not 0 <= frame < video.count:
        raise UserError(f"Frame {frame} is outside the video (0 to {video.count - 1}).")
    return frame


# ----------------------------------------------------------------------------- prompts


def click(work: Work, engine: Engine, frame: int, x: float, y: float, mode: Mode) -> str:
    """A click on the frame: a positive/negative point, or one corner of a box."""
    video = require_video(work)
    frame = check_frame(work, frame)
    obj = _active(work)
    height, width = video.frame_size(frame)
    if not (0 <= x < width and 0 <= y < height):
        raise UserError(f"The click ({x:.0f}, {y:.0f}) is outside the {width}x{height} frame.")
    current = work.doc.prompts().get((frame, obj), PromptSpec())
    if current.mask is not None:  # clicks replace a mask prompt on the frame (SAM 2 takes one or the other)
        current = PromptSpec()
    if mode == "box":
        corner = work.pending_corner
        if corner is None or corner[0] != frame:
            work.pending_corner = (frame, float(x), float(y))
            return "First corner of the box set (yellow mark). Now click the opposite corner."
        work.pending_corner = None
        box = (min(corner[1], x), min(corner[2], y), max(corner[1], x), max(corner[2], y))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            raise UserError("The box is too small: click two opposite corners of the object.")
        prompt = replace(current, box=box)
        label = "box"
    else:
        work.pending_corner = None
        positive = mode == "add"
        prompt = PromptSpec(current.points + ((float(x), float(y)),), current.labels + (int(positive),), current.box)
        label = "point +" if positive else "point -"
    set_prompt(work, engine, frame, obj, prompt, f"{label} on frame {frame}")
    name = work.registry[obj].name
    return f"Added a {label} for '{name}' on frame {frame}. Add more clicks to refine, or track."


def set_prompt(work: Work, engine: Engine, frame: int, obj: int, prompt: PromptSpec, label: str) -> None:
    """Send an object's full prompt on a frame to the model and record it (undoable)."""
    video = require_video(work)
    mask = engine.prompt(video.handle, frame, obj, prompt)
    doc = work.doc
    masks = dict(doc.masks)
    masks[(frame, obj)] = PackedMask.pack(mask)
    work.commit(
        label,
        replace(doc, calls=doc.calls + (PromptCall(frame, obj, prompt),), masks=masks,
                tracked=doc.tracked - {(frame, obj)}),
    )


def set_mask(work: Work, engine: Engine, frame: int, obj: int, mask: np.ndarray, label: str) -> np.ndarray:
    """Give an object a mask as its prompt on ``frame`` (painted with the brush, imported or a
    chosen candidate), undoably; tracking then follows it. Returns the model's mask for it."""
    video = require_video(work)
    frame = check_frame(work, frame)
    work.object(obj)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != video.frame_size(frame):
        (h, w) = mask.shape
        raise UserError(f"The mask is {w}x{h}, but {video.size_text(frame)}.")
    if not mask.any():
        raise UserError("The mask is empty: paint some of the object, or use 'Clear this frame'.")
    work.pending_corner = None
    set_prompt(work, engine, frame, obj, PromptSpec(mask=PackedMask.pack(mask)), f"{label} on frame {frame}")
    return work.doc.masks[(frame, obj)].unpack()


def candidates(work: Work, engine: Engine, frame: int) -> list[tuple[np.ndarray, float]]:
    """The chosen object's candidate masks on ``frame`` with their predicted quality: after
    its first click there, the model offers three (a point on a shirt can mean the shirt,
    the person or a pocket) and shows the one it scores best; [] otherwise."""
    require_video(work)
    return engine.candidates(work.video.handle, check_frame(work, frame), _active(work))


def pick_candidate(work: Work, engine: Engine, frame: int, index: int) -> str:
    """Make candidate ``index`` (0-based, in :func:`candidates`' order) the object's mask on
    ``frame``: a mask prompt, which tracking follows. Picking the mask shown changes nothing."""
    offered = candidates(work, engine, frame)
    if not offered:
        raise UserError("There are no masks to choose from here: the model offers three after the first "
                        "click of an object on a frame.")  # fmt: skip
    if not 0 <= index < len(offered):
        raise UserError(f"Choose one of the {len(offered)} masks offered.")
    obj = _active(work)
    if np.array_equal(offered[index][0], work.doc.frame_masks(frame).get(obj)):
        return "That is the mask shown already."
    set_mask(work, engine, frame, obj, offered[index][0], f"mask {index + 1} of {len(offered)}")
    name = work.registry[obj].name
    return f"'{name}' now has mask {index + 1} of {len(offered)} on frame {frame}; tracking follows it."


def clear_frame(work: Work, engine: Engine, frame: int) -> str:
    """Remove the active object's clicks/box on this frame, and its mask there."""
    video = require_video(work)
    frame = check_frame(work, frame)
    obj = _active(work)
    doc = work.doc
    if (frame, obj) not in doc.prompts():
        raise UserError(f"'{work.registry[obj].name}' has no clicks on frame {frame}: nothing to clear.")
    call = PromptCall(frame, obj, None)
    after = replace(doc, calls=doc.calls + (call,))
    gone = _apply_call(engine, video.handle, call, after)
    masks = {k: v for k, v in doc.masks.items() if k != (frame, obj) and not (gone and k[1] == obj)}
    tracked = frozenset(k for k in doc.tracked if k != (frame, obj) and not (gone and k[1] == obj))
    work.commit(f"clear frame {frame}", replace(after, masks=masks, tracked=tracked))
    if gone:
        return f"Cleared frame {frame}. '{work.registry[obj].name}' has no clicks left, so its masks were removed."
    return f"Cleared the clicks of '{work.registry[obj].name}' on frame {frame}."


def reset_all(work: Work, engine: Engine) -> str:
    video = require_video(work)
    engine.reset(video.handle)
    work.pending_corner = None
    work.commit("reset all", Snapshot(object_ids=work.doc.object_ids))
    return "Removed every click and mask (the objects stay). Undo brings them back."


def undo(work: Work, engine: Engine) -> str:
    if not work.undo:
        raise UserError("Nothing to undo.")
    edit = work.undo.pop()
    work.redo.append(edit)
    if edit.naming is not None:
        work.restore_naming(edit.naming[0])
    return _restore(work, engine, edit.before, f"Undid: {edit.label}.")


def redo(work: Work, engine: Engine) -> str:
    if not work.redo:
        raise UserError("Nothing to redo.")
    edit = work.redo.pop()
    work.undo.append(edit)
    if edit.naming is not None:
        work.restore_naming(edit.naming[1])
    return _restore(work, engine, edit.after, f"Redid: {edit.label}.")


def _restore(work: Work, engine: Engine, target: Snapshot, message: str) -> str:
    """Show ``target`` and rebuild the predictor from its calls when they differ."""
    current, work.doc = work.doc, target
    work.pending_corner = None
    if work.active not in target.object_ids:
        work.active = target.object_ids[-1] if target.object_ids else None
    if current.calls != target.calls or current.tracked != target.tracked or current.object_ids != target.object_ids:
        rebuild(work, engine)
        if target.tracked:
            message += " Tracked masks are as they were; press Track again after new clicks to update them."
    return message


def rebuild(work: Work, engine: Engine) -> dict[tuple[int, int], np.ndarray]:
    """Reset the predictor and replay the document's calls (objects still in the list only)
    -> the mask each prompted (frame, object) got from its last call."""
    video = require_video(work)
    engine.reset(video.handle)
    replayed = Snapshot(object_ids=work.doc.object_ids)
    masks: dict[tuple[int, int], np.ndarray] = {}
    for call in work.doc.calls:
        if call.obj_id not in work.doc.object_ids:
            continue
        replayed = replace(replayed, calls=replayed.calls + (call,))
        masks.pop((call.frame, call.obj_id), None)
        if call.prompt is not None:
            masks[(call.frame, call.obj_id)] = engine.prompt(video.handle, call.frame, call.obj_id, call.prompt)
        else:
            _apply_call(engine, video.handle, call, replayed)
    return masks


def _apply_call(engine: Engine, handle: object, call: PromptCall, after: Snapshot) -> bool:
    """Send one call to the predictor. True when it left the object with no prompt at all, in
    which case the object is dropped from the predictor (else tracking would refuse to run)."""
    if call.prompt is not None:
        engine.prompt(handle, call.frame, call.obj_id, call.prompt)
        return False
    engine.clear(handle, call.frame, call.obj_id)
    if any(obj == call.obj_id for _, obj in after.prompts()):
        return False
    if call.obj_id in engine.object_ids(handle):
        engine.remove_object(handle, call.obj_id)
    return True


def _active(work: Work) -> int:
    if work.active is None or work.active not in work.doc.object_ids:
        raise UserError("No object is chosen. Press 'Add object' (step 2), then click on the frame.")
    return work.active


# ----------------------------------------------------------------------------- objects


def add_object(work: Work) -> ObjectInfo:
    require_video(work)
    obj_id = work.next_object_id()
    info = ObjectInfo(obj_id, f"object {obj_id}", label=work.last_label)
    work.registry[obj_id] = info
    work.commit(f"add object {obj_id}", replace(work.doc, object_ids=work.doc.object_ids + (obj_id,)))
    work.active = obj_id
    work.pending_corner = None
    return info


def delete_object(work: Work, engine: Engine, obj_id: int) -> str:
    video = require_video(work)
    info = work.object(obj_id)
    if obj_id in engine.object_ids(video.handle):
        engine.remove_object(video.handle, obj_id)
    doc = work.doc
    remaining = tuple(i for i in doc.object_ids if i != obj_id)
    masks = {k: v for k, v in doc.masks.items() if k[1] != obj_id}
    tracked = frozenset(k for k in doc.tracked if k[1] != obj_id)
    work.commit(f"delete {info.name}", replace(doc, object_ids=remaining, masks=masks, tracked=tracked))
    if work.active == obj_id:
        work.active = remaining[-1] if remaining else None
    return f"Deleted '{info.name}'. Undo brings it back."


def select_object(work: Work, obj_id: int | None) -> str:
    if obj_id is None:
        raise UserError("Choose an object from the list.")
    info = work.object(int(obj_id))
    work.active = info.id
    work.pending_corner = None
    return f"Clicks now go to '{info.name}'."


# ----------------------------------------------------------------------------- labels
# In annotation.labels; their names stay here, for the page and the command line.

from annotation.labels import (  # noqa: E402, F401, I001
    MAX_LABELS, add_labels, exported_labels, read_label_file, remove_label, rename_label, set_label,
)  # fmt: skip


# ----------------------------------------------------------------------------- tracking


def plan_tracking(work: Work, frame: int, direction: Direction, count: int | None) -> list[tuple[int, int, bool]]:
    """[(start, frames, reverse)] runs for a direction: ``frames`` past the start frame each way
    (``count`` None = to the end). "Track 10 frames" means the 10 frames after (or before) the
    one shown, which has its mask already: the predictor yields the start frame too (objects
    without a click there are tracked onto it), but the count and the progress leave it out."""
    video = require_video(work)
    frame = check_frame(work, frame)
    if direction not in DIRECTIONS:
        raise UserError(f"Unknown direction {str(direction)[:40]!r}: track {', '.join(DIRECTIONS)}.")
    if not work.doc.prompts():
        raise UserError("Nothing to track yet: click on an object first (its mask must show), then track.")
    if count is not None and count < 1:
        raise UserError("The number of frames to track must be at least 1 (or 0 for the whole video).")
    ahead = video.count - 1 - frame if count is None else min(count, video.count - 1 - frame)
    behind = frame if count is None else min(count, frame)
    runs = []
    if direction in ("forward", "both"):
        runs.append((frame, ahead, False))
    if direction in ("backward", "both"):
        runs.append((frame, behind, True))
    return runs


def track(work: Work, engine: Engine, frame: int, direction: Direction, count: int | None) -> TrackProgress:
    """Track from ``frame`` and wait for the end (the command line's way; the page uses
    :func:`start_tracking`). Holds ``work.lock`` meanwhile. The frames done are kept whatever
    stops the run: Ctrl-C (KeyboardInterrupt, raised again), ``work.cancel`` or an error (in
    the returned progress)."""
    runs = plan_tracking(work, frame, direction, count)
    refuse_while_running(work)
    if not work.lock.acquire(blocking=False):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    _begin_tracking(work, engine, runs, direction)
    _run_tracking(work, engine, runs, direction)
    return work.progress


def start_tracking(work: Work, engine: Engine, frame: int, direction: Direction, count: int | None) -> threading.Thread:
    """Start tracking on a background thread (which holds ``work.lock`` until it ends).

    A thread, not the request: the run keeps its results if the browser goes away or Cancel
    is pressed (checked between frames), and the page polls ``work.progress`` meanwhile.
    """
    runs = plan_tracking(work, frame, direction, count)
    refuse_while_running(work)
    if not work.lock.acquire(blocking=False):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    _begin_tracking(work, engine, runs, direction)
    return start_holding_lock(work, _run_tracking, (work, engine, runs, direction), "track")


def _begin_tracking(work: Work, engine: Engine, runs: list[tuple[int, int, bool]], direction: str) -> None:
    work.cancel.clear()
    total = sum(n for _, n, _ in runs)
    work.progress = TrackProgress(running=True, label=f"Tracking {direction}", total=total, started=time.monotonic(),
                                  estimate_s=tracking_estimate(work, engine))


def tracking_estimate(work: Work, engine: Engine) -> float | None:
    """Seconds per frame to expect for the objects that will be tracked, at the video's model
    size (from the encoding timed at start), or None where it was not timed."""
    video = require_video(work)
    if engine.speed is None:
        return None
    objects = len(engine.object_ids(video.handle))  # every object the predictor holds is tracked
    return engine.speed.frame_s(max(1, objects), engine.image_size_of(video.handle))


def _run_tracking(work: Work, engine: Engine, runs: list[tuple[int, int, bool]], direction: str) -> None:
    """Track frame by frame (``work.lock`` is held, and released at the end); each frame's
    masks go into a new snapshot at once (a reference swap, so the page can draw
    ``work.doc`` meanwhile), and a cancel keeps them."""
    progress = work.progress
    before = work.doc
    try:
        video = require_video(work)
        for start, n, reverse in runs:
            for frame, frame_masks in engine.track(video.handle, start, n, reverse):
                new = {(frame, obj): PackedMask.pack(m) for obj, m in frame_masks.items() if obj in before.object_ids}
                doc = work.doc
                work.doc = replace(doc, masks={**doc.masks, **new}, tracked=doc.tracked | set(new))
                if frame != start:  # the start frame has its mask already: not one of the frames asked for
                    progress.count_one()
                progress.last_frame = frame
                if work.cancel.is_set():
                    progress.cancelled = True
                    return
    except (ValueError, UserError) as exc:
        progress.error = str(exc)
    except Exception as exc:  # keep the work usable; the message names the failure, the log has the rest
        log.exception("Tracking %s failed after %d frames", direction, progress.done)
        progress.error = f"{type(exc).__name__}: {exc}"
    finally:
        if work.doc is not before:
            work.commit(f"track {direction}", work.doc, before=before)
        end_holding_lock(work, progress)


def lost_frames(work: Work, obj_id: int) -> list[int]:
    """Frames where tracking ran for the object but found no mask (the object was lost)."""
    return sorted(f for f, o in work.doc.tracked if o == obj_id and not work.doc.area(f, o))


def next_lost_frame(work: Work, frame: int) -> int:
    """The next frame after ``frame`` (wrapping round) where any visible object is lost."""
    require_video(work)
    lost = sorted({f for obj in work.doc.object_ids if work.registry[obj].visible for f in lost_frames(work, obj)})
    if not lost:
        raise UserError("No object is lost on any tracked frame.")
    return next((f for f in lost if f > frame), lost[0])


# ----------------------------------------------------------------------------- exports

EXPORT_ORDER = ("session", *(f for f in EXPORT_FORMATS if f != "session"))  # the user's work first: it is small
FRAME_PASSES = {"session": 0, "coco_images": 2}  # calls of the per-frame hook per frame (1 where not listed)
ONE_SIZE_FORMATS = ("overlay", "mask_video", "ytvis")  # a video, or a format with one size per video
Writer = Callable[[Path, formats.Tick], Path]  # (folder, per-frame hook) -> the file made


class ExportCancelled(Exception):
    """Cancel was pressed while files were made: the file being made is left out."""


@dataclass
class ExportOutcome:
    """What an export made, and what not.

    ``chosen``: the formats in the order they are made (:data:`EXPORT_ORDER`); ``made``: the
    files made so far, in that order (the page lists them while the export runs);
    ``failed``: format -> why it was not made, a plain sentence. A chosen format neither made
    nor failed was not reached: the export was cancelled (``cancelled``)."""

    chosen: list[str]
    made: list[Path] = field(default_factory=list)
    made_formats: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def not_made(self) -> list[str]:
        return [f for f in self.chosen if f not in self.made_formats]

    @property
    def complete(self) -> bool:
        return not self.not_made

    def report(self, hint: str = "", unchanged: str = "Your objects, clicks and masks are unchanged.") -> str:
        """What was made, and what not and why, in plain words; ``hint`` follows the count of
        files made (the page: where to download them), ``unchanged`` the reasons."""
        count = len(self.made)
        made = f"Made {count} file(s)" if self.complete else f"Made {count} of {len(self.chosen)} file(s)"
        made += f": {hint}" if hint and count else ""
        if self.complete:
            return f"{made}."
        missing = listed([EXPORT_NAMES[f] for f in self.not_made])
        reasons = " ".join(dict.fromkeys(self.failed[f] for f in self.chosen if f in self.failed))
        if not count and not self.cancelled:
            return " ".join(part for part in (reasons, "Nothing was made.", unchanged) if part)
        head = f"Cancelled. {made}." if self.cancelled else f"{made}."
        return " ".join(part for part in (head, f"Not made: {missing}.", reasons, unchanged) if part)


class ExportIncomplete(UserError):
    """Some chosen files could not be made (:func:`export`); ``outcome`` has those that were."""

    def __init__(self, outcome: ExportOutcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.report())


def listed(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def export(work: Work, chosen: list[str], out_dir: Path | None = None, val_every: int = 0) -> list[Path]:
    """Make the ``chosen`` files and wait (the command line's and the tests' way; the page uses
    :func:`start_exporting`) -> the files, in the order made (the session file first).

    When a chosen file could not be made, the others are made all the same, and then
    :class:`ExportIncomplete` (a UserError whose message says what was made and what not, and
    why) is raised with them in its ``outcome``. :func:`make_files` returns the outcome instead."""
    outcome = make_files(work, chosen, out_dir, val_every)
    if not outcome.complete:
        raise ExportIncomplete(outcome)
    return list(outcome.made)


def make_files(work: Work, chosen: list[str], out_dir: Path | None = None, val_every: int = 0) -> ExportOutcome:
    """Write the ``chosen`` files (names from :data:`EXPORT_FORMATS`) for every frame into
    ``out_dir`` (default: the work's export folder), and wait; ``val_every``: every k-th frame
    goes to the YOLO dataset's validation split (0: none).

    The session file is made first, then the others in :data:`EXPORT_ORDER`. A file that cannot
    be made (refused, a blocked path, a full disk, an error) is left out with its reason and the
    next is made: see :class:`ExportOutcome`. Holds ``work.lock`` meanwhile; ``work.progress``
    counts the frames written, and ``work.cancel`` stops between frames (Ctrl-C too, raised
    again). A choice that cannot be made at all (no video, an unknown format) raises UserError
    before anything is written."""
    order = _export_order(work, chosen, val_every)
    refuse_while_running(work)
    if not work.lock.acquire(blocking=False):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    outcome = _begin_exporting(work, order)
    _run_exporting(work, outcome, out_dir, val_every)
    return outcome


@dataclass
class Exporting:
    """Files being made on a background thread (:func:`start_exporting`)."""

    outcome: ExportOutcome
    thread: threading.Thread = field(init=False)


def start_exporting(work: Work, chosen: list[str], out_dir: Path | None = None, val_every: int = 0) -> Exporting:
    """:func:`make_files` on a background thread that holds ``work.lock`` until it ends (the
    page's way): the page polls ``work.progress`` and lists ``outcome.made`` as they come,
    and Cancel (``work.cancel``) stops between frames, the files made so far kept. Exports only
    read the work: whatever stops them, the objects, masks and undo history are unchanged."""
    order = _export_order(work, chosen, val_every)
    refuse_while_running(work)
    if not work.lock.acquire(timeout=LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    exporting = Exporting(_begin_exporting(work, order))
    exporting.thread = start_holding_lock(
        work, _run_exporting, (work, exporting.outcome, out_dir, val_every), "export"
    )  # fmt: skip
    return exporting


def _export_order(work: Work, chosen: list[str], val_every: int) -> list[str]:
    """The chosen formats in the order they are made, or UserError for a choice that cannot be made at all."""
    require_video(work)
    unknown = [f for f in chosen if f not in EXPORT_FORMATS]
    if unknown or not chosen:
        raise UserError(f"Choose what to export from: {', '.join(EXPORT_FORMATS)}.")
    if val_every < 0 or val_every == 1:
        raise UserError("Every k-th frame to validation: k must be 0 (no validation split) or at least 2.")
    return [f for f in EXPORT_ORDER if f in chosen]


def _begin_exporting(work: Work, order: list[str]) -> ExportOutcome:
    """The outcome to fill (formats that cannot be made here already refused) and the progress
    (``work.lock`` is held)."""
    video = require_video(work)
    outcome = ExportOutcome(order)
    refusal = _one_size_refusal(video, order)
    outcome.failed.update({f: refusal for f in ONE_SIZE_FORMATS if refusal and f in order})
    frames = sum(FRAME_PASSES.get(f, 1) for f in order if f not in outcome.failed) * video.count
    work.cancel.clear()
    work.progress = TrackProgress(
        running=True, label="Making files", total=frames, started=time.monotonic(), unit="frames",
        kept="the files made so far are kept",
    )  # fmt: skip
    return outcome


def _run_exporting(work: Work, outcome: ExportOutcome, out_dir: Path | None, val_every: int) -> None:
    """Make each file of ``outcome.chosen`` in turn (``work.lock`` is held, and released at the
    end); one that fails is noted in ``outcome`` and the next is made."""
    progress = work.progress

    def tick() -> None:
        if work.cancel.is_set():
            raise ExportCancelled
        progress.done += 1

    try:
        writers = _writers(work, val_every)
        count = require_video(work).count
        for name in outcome.chosen:
            if name in outcome.failed:
                continue
            if work.cancel.is_set():
                outcome.cancelled = True
                break
            start, progress.part = progress.done, EXPORT_NAMES[name]
            try:
                path = writers[name](work.exports_folder() if out_dir is None else Path(out_dir), tick)
            except ExportCancelled:
                outcome.cancelled = True
                break
            except Exception as exc:  # the next file is made all the same
                outcome.failed[name] = _export_failure(name, exc)
            else:
                outcome.made_formats.append(name)
                outcome.made.append(path)
            progress.done = start + FRAME_PASSES.get(name, 1) * count  # a failed file's frames count as passed
    except Exception as exc:  # not one file's failure (each is caught above): the files not made say so
        log.exception("Making files failed")
        reason = f"Could not make the files ({type(exc).__name__}); the server's log has the details."
        outcome.failed.update({name: reason for name in outcome.not_made if name not in outcome.failed})
    finally:
        progress.cancelled = outcome.cancelled
        progress.part = ""
        end_holding_lock(work, progress)


def _export_failure(name: str, exc: Exception) -> str:
    """Why ``name`` was not made, in a sentence that names it (the traceback of an unexpected
    error goes to the log; the server's paths are none of the user's business)."""
    what = EXPORT_NAMES[name]
    if isinstance(exc, UserError):
        return f"Could not make {what}: {exc}"
    if isinstance(exc, OSError):
        return f"Could not write {what} ({exc.strerror or 'the server could not write the file'})."
    log.error("Making %s failed", what, exc_info=exc)
    return f"Could not make {what} ({type(exc).__name__}); the server's log has the details."


def _writers(work: Work, val_every: int) -> dict[str, Writer]:
    """Each format's writer, on the work as it is now (the export holds ``work.lock``). The
    masks are unpacked once, when the first file that needs them is made: after the session file."""
    video = require_video(work)
    doc, objects = work.doc, list(work.objects)
    names = {o.id: o.name for o in objects}
    size, count, fps = video.frame_size(0), video.count, video.decoded.fps
    images = formats.ImageFrames(video.frame_names, video.sizes) if video.is_image_set else None
    stem = formats.file_stem(video.name)  # walk.mp4 -> walk_overlay.mp4, walk_coco.json...
    masks = functools.cache(lambda: doc.lazy_masks(count))  # unpacked a frame at a time, as written
    data = functools.cache(lambda: datasets.Annotations(
        video.name, video.frames, masks(), {o.id: o.label for o in objects},
        exported_labels(work.labels, (o.label for o in objects)), size, fps, images,
    ))  # fmt: skip
    return {
        "overlay": lambda out, tick: formats.export_overlay_video(
            video.frames, masks(), fps, video.decoded.audio_path, out, objects=names,
            hidden=[o.id for o in objects if not o.visible], stem=f"{stem}_overlay", tick=tick,
        ),
        "mask_video": lambda out, tick: formats.export_mask_video(
            masks(), count, size, names, out, fps, stem=f"{stem}_masks", tick=tick,
        ),
        "png": lambda out, tick: formats.export_png_zip(
            masks(), count, size, names, out, stem=f"{stem}_masks", images=images, tick=tick,
        ),
        "semantic": lambda out, tick: datasets.export_semantic_png(data(), out, tick=tick),
        "coco": lambda out, tick: datasets.export_coco(data(), out, tick=tick),
        "coco_images": lambda out, tick: datasets.export_coco(data(), out, with_images=True, tick=tick),
        "ytvis": lambda out, tick: datasets.export_ytvis(data(), out, tick=tick),
        "yolo": lambda out, tick: datasets.export_yolo_dataset(data(), out, val_every=val_every, tick=tick),
        "mot": lambda out, tick: datasets.export_mot(data(), out, tick=tick),
        "session": lambda out, tick: formats.export_session_json(session_record(work), out, stem=f"{stem}_session"),
    }  # fmt: skip


def _one_size_refusal(video: LoadedVideo, chosen: list[str]) -> str:
    """Images of different sizes cannot be one video: why the chosen exports that need one size
    are not made, saying which formats work instead ('' when they can be made)."""
    needing = [EXPORT_NAMES[f] for f in ONE_SIZE_FORMATS if f in chosen]
    if video.uniform or not needing:
        return ""
    (h0, w0), (h1, w1) = video.sizes[0], next(s for s in video.sizes if s != video.sizes[0])
    return (
        f"The images differ in size ({w0}x{h0}, {w1}x{h1}...), and {' and '.join(needing)} "
        f"{'needs' if len(needing) == 1 else 'need'} one size for "
        "all frames. Choose PNG masks, semantic masks, COCO, YOLO, MOT or the session file: they keep "
        "each image at its own size."
    )


def video_shape(video: LoadedVideo) -> imports.VideoShape:
    """What an import must fit: the frame count and each frame's size (and an image set's names)."""
    height, width = video.frame_size(0)
    return imports.VideoShape(video.count, height, width, video.sizes if not video.uniform else (), video.frame_names)


def video_ref(video: LoadedVideo) -> formats.VideoRef:
    """What a session file says about the loaded video (an image set's sizes included)."""
    return formats.video_ref(video.name, video.frames, video.decoded.fps, video.sizes)


def session_record(work: Work, doc: Snapshot | None = None, ref: formats.VideoRef | None = None) -> formats.Session:
    """The objects, prompts and masks as the session file stores them: of ``doc`` (default: the
    current document; one read of it, so a save off the request thread sees one state) and for
    the video ``ref`` (default: measured now)."""
    video = require_video(work)
    doc = work.doc if doc is None else doc
    ref = video_ref(video) if ref is None else ref
    objects = [formats.SessionObject(o.id, o.name, o.color, o.visible, o.label)
               for o in (work.registry[i] for i in doc.object_ids)]  # fmt: skip
    prompts = [_prompt_record(frame, obj, p) for (frame, obj), p in doc.prompts().items()]
    masks = [
        formats.SessionMask(frame, obj, (frame, obj) in doc.tracked, m.top, m.left, *m.box_shape, m.bits)
        for (frame, obj), m in sorted(doc.masks.items())
        if obj in doc.object_ids
    ]  # fmt: skip
    return formats.Session(ref, objects, prompts, masks, list(work.labels))


def _prompt_record(frame: int, obj: int, prompt: PromptSpec) -> formats.Prompt:
    if prompt.mask is None:
        return formats.Prompt(frame, obj, list(prompt.points), list(prompt.labels), prompt.box)
    m = prompt.mask
    return formats.Prompt(frame, obj, mask=formats.SessionMask(frame, obj, False, m.top, m.left, *m.box_shape, m.bits))


def _prompt_spec(prompt: formats.Prompt, size: tuple[int, int]) -> PromptSpec:
    """The document's prompt for a file's (size: the frames' (H, W), for a mask prompt)."""
    if prompt.mask is not None:
        m = prompt.mask
        return PromptSpec(mask=PackedMask.from_bits(size, m.top, m.left, (m.height, m.width), m.bits))
    return PromptSpec(tuple((x, y) for x, y in prompt.points), tuple(prompt.labels), prompt.box)


LOCK_WAIT_S = 60.0  # how long a load waits for the step before it (a click) to finish


class LoadCancelled(Exception):
    """Cancel was pressed while a file was being loaded: nothing was changed."""


def read_session(work: Work, path: str | Path) -> formats.Session:
    """A session file, read and checked for the loaded video (nothing changes here; a file
    that cannot be used raises UserError with a message naming the field)."""
    video = require_video(work)
    try:
        return formats.load_session_json(Path(path), video_ref(video))
    except formats.SessionError as exc:
        raise UserError(str(exc)) from None


def load_session(work: Work, engine: Engine, path: str | Path) -> str:
    """Replace objects, prompts and masks with those of a session file saved from this video."""
    return apply_session(work, engine, read_session(work, path))


def apply_session(
    work: Work, engine: Engine, saved: formats.Session, what: str = "the session file",
    progress: TrackProgress | None = None, cancel: threading.Event | None = None,
) -> str:  # fmt: skip
    """Replace objects, prompts and masks with a saved session's. The prompts are replayed on
    this video, so that new clicks and tracking continue from them; the masks are the saved
    ones, as the user had them (a version 1 file has none: its prompts' masks are made again).

    All or nothing: the prompts are replayed into a new predictor session on the same frames
    (sharing the image features already computed), and the document, the object list, the
    labels and the predictor's session are replaced together once everything has succeeded.
    An error, Ctrl-C or ``cancel`` (LoadCancelled) part-way leaves the work as it was, so the
    page's masks, its undo history and the predictor never disagree. ``progress.done`` counts
    the prompts replayed."""
    video = require_video(work)
    try:
        formats.check_session_video(saved, video_ref(video))
    except formats.SessionError as exc:
        raise UserError(str(exc)) from None
    if not saved.objects:
        raise UserError(f"{what[0].upper()}{what[1:]} has no objects.")
    labels = list(dict.fromkeys([*saved.labels, *(o.label for o in saved.objects)]))  # the file's classes
    if len(labels) > MAX_LABELS:
        raise UserError(f"{what[0].upper()}{what[1:]} has {len(labels)} labels; the most is {MAX_LABELS}.")
    objects = {o.id: ObjectInfo(o.id, formats.clean_name(o.name) or f"object {o.id}", o.visible, o.label)
               for o in saved.objects}  # fmt: skip
    handle = engine.fresh_session(video.handle)
    calls: list[PromptCall] = []
    masks: dict[tuple[int, int], PackedMask] = {}
    for p in saved.prompts:
        if cancel is not None and cancel.is_set():
            raise LoadCancelled
        prompt = _prompt_spec(p, video.frame_size(p.frame))
        masks[(p.frame, p.obj_id)] = PackedMask.pack(engine.prompt(handle, p.frame, p.obj_id, prompt))
        calls.append(PromptCall(p.frame, p.obj_id, prompt))
        if progress is not None:
            progress.count_one()
    doc = Snapshot(object_ids=tuple(objects), calls=tuple(calls), masks=masks)
    if saved.masks:
        doc = replace(doc, masks=_saved_masks(saved.masks, video), tracked=frozenset(
            (m.frame, m.obj_id) for m in saved.masks if m.tracked))  # fmt: skip
    if cancel is not None and cancel.is_set():
        raise LoadCancelled
    # Everything is made: from here on only assignments, so all of it changes together.
    engine.stop_encoding_ahead(video.handle)
    video.handle = handle
    naming_before = work.naming()
    work.labels, work.last_label = labels, saved.objects[-1].label
    work.registry.update(objects)
    # Undo returns to the document before (and rebuilds), with its objects' names and labels.
    work.commit(f"load {what.removeprefix('the ')}", doc, naming_before=naming_before)
    work.active = doc.object_ids[0]
    work.pending_corner = None
    loaded = f"Loaded {len(saved.objects)} object(s) and {len(saved.prompts)} prompt(s)"
    if saved.masks:
        frames = len({m.frame for m in saved.masks})
        return (
            f"{loaded} with their masks on {frames} frame(s) from {what}. "
            "After new clicks, press Track to update the masks."
        )
    return f"{loaded} from {what}. Press Track to follow them through the video again."


@dataclass
class Loading:
    """A session file being loaded on a background thread (:func:`start_loading`)."""

    message: str = ""  # the load's own message, once it has succeeded
    thread: threading.Thread = field(init=False)


def start_loading(work: Work, engine: Engine, path: str | Path) -> Loading:
    """Read a session file, then load it on a background thread that holds ``work.lock``
    until it ends (the page's way; :func:`load_session` waits instead).

    A problem with the file is raised here (UserError) before anything starts. Loading makes a
    model call per prompt, so a big file takes a while: ``work.progress`` counts the prompts,
    and Cancel (``work.cancel``) stops it with the work as it was (the load is all or nothing).
    """
    refuse_while_running(work)
    saved = read_session(work, path)
    if not work.lock.acquire(timeout=LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    work.cancel.clear()
    work.progress = TrackProgress(
        running=True, label="Loading the session file", total=len(saved.prompts), started=time.monotonic(),
        unit="prompts", kept="your objects, clicks and masks stay as they were",
    )  # fmt: skip
    loading = Loading()
    loading.thread = start_holding_lock(work, _run_loading, (work, engine, saved, loading), "load-session")
    return loading


def _run_loading(work: Work, engine: Engine, saved: formats.Session, loading: Loading) -> None:
    """Load ``saved`` (``work.lock`` is held, and released at the end); the outcome is in
    ``work.progress`` (error, cancelled) and ``loading.message``."""
    progress = work.progress
    try:
        loading.message = apply_session(work, engine, saved, progress=progress, cancel=work.cancel)
    except LoadCancelled:
        progress.cancelled = True
    except UserError as exc:
        progress.error = str(exc)
    except Exception as exc:  # the work is as it was (all or nothing); the log has the traceback
        log.exception("Loading a session file failed after %d of %d prompts", progress.done, progress.total)
        progress.error = (f"Could not load the session file ({type(exc).__name__}: {exc}). "
                          "Your objects, clicks and masks are as they were.")  # fmt: skip
    finally:
        end_holding_lock(work, progress)


def refuse_while_running(work: Work) -> None:
    """A long step (tracking, loading a session, finding objects) runs: say which, not just
    "busy"."""
    if work.progress.running:
        raise UserError(f"{work.progress.label} is still running. Wait for it to finish, or press Cancel.")


def start_holding_lock(work: Work, target: Callable, args: tuple, name: str) -> threading.Thread:
    """Run ``target(*args)`` on a background thread that has ``work.lock`` (taken by the
    caller, with ``work.progress`` set running) and releases it at its end. If the thread
    cannot start, the lock and the progress are given back here."""
    thread = threading.Thread(target=_in_this_context(target), args=args, name=name, daemon=True)
    try:
        thread.start()
    except BaseException:
        work.progress.running = False
        work.lock.release()
        raise
    return thread


def end_holding_lock(work: Work, progress: TrackProgress) -> None:
    """The end of a step started with :func:`start_holding_lock`: its progress stops (with the
    time it ended) and the work's lock is given back."""
    progress.running = False
    progress.finished = time.monotonic()
    work.lock.release()


def _in_this_context(function: Callable) -> Callable:
    """``function`` to run on another thread in the caller's context (a new thread starts in an
    empty one), so its log lines name the caller's session (``ui.logs``)."""
    return functools.partial(contextvars.copy_context().run, function)


def apply_prompts(work: Work, engine: Engine, given: formats.PromptsFile) -> str:
    """Replace objects and prompts with a prompts file's, whose coordinates are pixels of the
    video (or of each image) as it was given: before the decoder scaled it down to the frames."""
    video = require_video(work)
    prompts = []
    for p in given.prompts:
        name = next(o.name for o in given.objects if o.id == p.obj_id)
        if p.frame >= video.count:
            raise UserError(f"The prompt of '{name}' on frame {p.frame} is outside the video (0 to {video.count - 1}).")
        (src_h, src_w), (height, width) = source_size(video, p.frame), video.frame_size(p.frame)
        sx, sy = width / src_w, height / src_h
        corners = [*p.points, *([] if p.box is None else [p.box[:2], p.box[2:]])]
        if not all(0 <= x <= src_w and 0 <= y <= src_h for x, y in corners):
            what = f"image '{video.frame_names[p.frame]}'" if video.is_image_set else "video"
            raise UserError(f"A click or box of '{name}' on frame {p.frame} is outside the {src_w}x{src_h} {what}.")
        if p.box is not None and not (p.box[0] < p.box[2] and p.box[1] < p.box[3]):
            raise UserError(f"The box of '{name}' on frame {p.frame} must be [left, top, right, bottom].")
        box = None if p.box is None else (p.box[0] * sx, p.box[1] * sy, p.box[2] * sx, p.box[3] * sy)
        points = [(x * sx, y * sy) for x, y in p.points]
        prompts.append(formats.Prompt(p.frame, p.obj_id, points, list(p.labels), box))
    session = formats.Session(video_ref(video), given.objects, prompts, labels=given.labels)
    return apply_session(work, engine, session, what="the prompts file")


def source_size(video: LoadedVideo, frame: int) -> tuple[int, int]:
    """(H, W) of a frame as it was given, before the decoder scaled it down: an image's own, or the video's."""
    if video.decoded.source_sizes:
        return video.decoded.source_sizes[frame]
    return video.decoded.source.height, video.decoded.source.width


class MissingLabels(UserError):
    """An import names classes that are not among the labels; the page offers to add them."""

    def __init__(self, source: str, labels: list[str], known: list[str]) -> None:
        self.labels = labels
        shown = ", ".join(f"'{label}'" for label in labels[:8]) + (" ..." if len(labels) > 8 else "")
        super().__init__(f"'{source}' has classes that are not labels of this video: {shown} (the labels are "
                         f"{', '.join(known)}). Add them to the labels, then import again.")  # fmt: skip


def apply_import(
    work: Work, engine: Engine, given: imports.Imported, add_missing_labels: bool = False,
    progress: TrackProgress | None = None, cancel: threading.Event | None = None,
) -> str:  # fmt: skip
    """Masks and boxes made elsewhere become prompts on their frames, in one undoable step: a
    mask is its object's mask prompt (an object of the work with that id, else a new object),
    a box a new object with a box prompt. Classes the labels lack are refused
    (:class:`MissingLabels`) unless ``add_missing_labels``.

    All or nothing: if a model call fails part-way, or ``cancel`` is set (LoadCancelled,
    checked before each prompt), the predictor is rebuilt from the document as it was, and
    nothing changes. ``progress.done`` counts the prompts applied (``progress.total`` is set
    here)."""
    video = require_video(work)
    wanted = [formats.clean_name(label) for label in [*given.labels.values(), *(b.label for b in given.boxes)] if label]
    missing = [label for label in dict.fromkeys(wanted) if label and label not in work.labels]
    if missing and not add_missing_labels:
        raise MissingLabels(given.source, missing, work.labels)
    if len(work.labels) + len(missing) > MAX_LABELS:
        raise UserError(f"'{given.source}' would make more than {MAX_LABELS} labels, the most a video can have.")
    for frame in sorted({m.frame for m in given.masks} | {b.frame for b in given.boxes}):
        check_frame(work, frame)
    wrong = next((m for m in given.masks if m.mask.shape != video.frame_size(m.frame)), None)
    if wrong is not None:
        (height, width) = video.frame_size(wrong.frame)
        what = f"image '{video.frame_names[wrong.frame]}'" if video.is_image_set else "video"
        raise UserError(f"'{given.source}' has masks of another size than the {width}x{height} {what}.")
    objects = _imported_objects(work, given)
    if len(set(work.doc.object_ids) | {obj.id for obj in objects.values()}) > MAX_OBJECTS:
        raise UserError(f"'{given.source}' would make more than {MAX_OBJECTS} objects, the most a video can have.")
    prompts = [(m.frame, objects[("mask", m.obj_id)].id, PromptSpec(mask=PackedMask.pack(m.mask))) for m in given.masks]
    prompts += [(b.frame, objects[("box", n)].id, PromptSpec(box=b.box)) for n, b in enumerate(given.boxes)]
    before = work.doc
    doc = replace(before, object_ids=tuple(dict.fromkeys([*before.object_ids, *(o.id for o in objects.values())])))
    made: dict[tuple[int, int], PackedMask] = {}
    if progress is not None:
        progress.total = len(prompts)
    try:
        for frame, obj, prompt in prompts:
            if cancel is not None and cancel.is_set():
                raise LoadCancelled
            made[(frame, obj)] = PackedMask.pack(engine.prompt(video.handle, frame, obj, prompt))
            if progress is not None:
                progress.count_one()
        if cancel is not None and cancel.is_set():
            raise LoadCancelled
    except BaseException:
        rebuild(work, engine)  # the predictor back to the document, which has not changed
        raise
    add_labels(work, missing)
    work.registry.update({o.id: o for o in objects.values()})
    calls = tuple(PromptCall(frame, obj, prompt) for frame, obj, prompt in prompts)
    work.commit(f"import {given.source}", replace(doc, calls=doc.calls + calls, masks={**doc.masks, **made},
                                                  tracked=doc.tracked - set(made)))  # fmt: skip
    work.active = prompts[-1][1]
    work.pending_corner = None
    frames = len({frame for frame, _, _ in prompts})
    notes = "".join(f" Note: {note}." for note in given.notes)  # e.g. masks of one object and frame merged
    return (f"Imported {len(prompts)} prompt(s) of {len({obj for _, obj, _ in prompts})} object(s) on {frames} "
            f"frame(s) from '{given.source}'.{notes} Press Track to follow them through the video.")  # fmt: skip


def _imported_objects(work: Work, given: imports.Imported) -> dict[tuple[str, int], ObjectInfo]:
    """("mask", file id) and ("box", index) -> the object each prompt goes to: a mask goes to
    the work's object of that id when there is one; everything else gets a new object (its
    file id when that was never used, else the next free id)."""
    taken = set(work.registry)
    result: dict[tuple[str, int], ObjectInfo] = {}

    def new(preferred: int | None, label: str | None, name: str | None) -> ObjectInfo:
        free = preferred if preferred is not None and preferred not in taken else None
        if free is None:
            free = next((i for i in range(1, MAX_OBJECTS + 1) if i not in taken), None)
        if free is None:
            raise UserError(f"'{given.source}' would make more than {MAX_OBJECTS} objects, the most a video can have.")
        taken.add(free)
        clean = formats.clean_name(label) if label else work.last_label
        return ObjectInfo(free, formats.clean_name(name or "") or f"object {free}", label=clean or work.last_label)

    for obj_id in given.objects:
        if obj_id in work.doc.object_ids:
            result[("mask", obj_id)] = work.registry[obj_id]
        else:
            result[("mask", obj_id)] = new(obj_id, given.labels.get(obj_id), given.names.get(obj_id))
    for index, box in enumerate(given.boxes):
        result[("box", index)] = new(None, box.label, None)
    return result


# What a cancelled import raises: while reading (imports.read_any, given ``cancel``) or applying.
IMPORT_CANCELLED = (LoadCancelled, imports.ImportCancelled)


@dataclass
class Importing:
    """A file of masks or detections being read and applied on a background thread
    (:func:`start_importing`). ``imported``: the file as read (kept when its classes are
    missing, for the page to offer adding them); ``missing``: that refusal; ``message``: the
    import's own message, once it has succeeded."""

    source: str
    progress: TrackProgress  # this import's (``work.progress`` while it runs; a next step makes its own)
    imported: imports.Imported | None = None
    missing: MissingLabels | None = None
    message: str = ""
    thread: threading.Thread = field(init=False)


def start_importing(
    work: Work, engine: Engine, source: str, read: Callable[[], imports.Imported], add_missing_labels: bool = False,
) -> Importing:  # fmt: skip
    """Read a file of masks or detections (``read()``, named ``source`` in the progress line)
    and apply it (:func:`apply_import`) on a background thread that holds ``work.lock`` until
    it ends (the page's way). ``work.progress`` shows the reading, then counts the prompts
    applied; Cancel (``work.cancel``) or a failure leaves the work as it was, and a finished
    import is one undo step. The outcome is in ``work.progress`` (error, cancelled) and the
    returned :class:`Importing`."""
    return begin_import(work, source, _run_importing, (engine, read, add_missing_labels))


def begin_import(work: Work, source: str, run: Callable[..., None], args: tuple) -> Importing:
    """The start every import shares: take ``work.lock``, show "Reading 'source'", and call
    ``run(work, importing, *args)`` on a background thread that holds the lock until it ends
    (``annotation.concepts`` runs its matched import through this too)."""
    require_video(work)
    refuse_while_running(work)
    if not work.lock.acquire(timeout=LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    work.cancel.clear()
    work.progress = TrackProgress(
        running=True, label=f"Reading '{source}'", started=time.monotonic(), unit="prompts",
        kept="your objects, clicks and masks stay as they were",
    )  # fmt: skip
    importing = Importing(source, work.progress)
    importing.thread = start_holding_lock(work, run, (work, importing, *args), "import")
    return importing


def _run_importing(
    work: Work, importing: Importing, engine: Engine, read: Callable[[], imports.Imported], add_missing_labels: bool,
) -> None:  # fmt: skip
    """Read, then apply (``work.lock`` is held, and released at the end)."""
    progress = importing.progress
    try:
        importing.imported = read()
        if work.cancel.is_set():  # pressed just as the read ended
            raise LoadCancelled
        progress.label = f"Importing '{importing.source}'"
        importing.message = apply_import(work, engine, importing.imported, add_missing_labels,
                                         progress=progress, cancel=work.cancel)  # fmt: skip
    except IMPORT_CANCELLED:
        progress.cancelled = True
    except MissingLabels as exc:
        importing.missing = exc
        progress.error = str(exc)
    except (UserError, imports.ImportProblem) as exc:
        progress.error = str(exc)
    except Exception as exc:  # the work is as it was (all or nothing); the log has the traceback
        log.exception("Importing %s failed after %d of %d prompts", importing.source, progress.done, progress.total)
        progress.error = (f"Could not import '{importing.source}' ({type(exc).__name__}). "
                          "Your objects, clicks and masks are as they were.")  # fmt: skip
    finally:
        end_holding_lock(work, progress)


def _saved_masks(saved: list[formats.SessionMask], video: LoadedVideo) -> dict[tuple[int, int], PackedMask]:
    return {
        (m.frame, m.obj_id): PackedMask.from_bits(video.frame_size(m.frame), m.top, m.left, (m.height, m.width), m.bits)
        for m in saved
    }  # fmt: skip
