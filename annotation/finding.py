"""Find objects on a frame: SAM 2's automatic mask generator ("segment everything") lays a grid
of single clicks over the frame and proposes the good, distinct masks; the person keeps the
ones they want, each becoming a new object whose mask prompt is that mask, and tracks as usual.

What was found is kept on the work (``work.found``, a :class:`Found`), not in the document: it
is a proposal, not an annotation, so undo and session files leave it alone, and keeping is
the one undoable step (all the masks kept at once are one step). A run takes from seconds to
minutes on a CPU, so the page runs it on a background thread (:func:`start_finding`) that
holds ``work.lock`` like tracking does, counts points in ``work.progress``, and stops on
``work.cancel`` with the work as it was.

Also here: the small pictures of a click's three candidate masks (:func:`candidate_pictures`),
the other way the model's alternatives reach the page.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from annotation import operations
from annotation.document import MAX_OBJECTS, ObjectInfo, PackedMask, PromptCall, PromptSpec, UserError
from annotation.engine import Engine, FindingCancelled
from annotation.render import draw_prompts, overlay
from annotation.work import TrackProgress, Work

DENSITIES = (8, 16, 32)  # points per side the page offers
DEFAULT_DENSITY = 16
MIN_DENSITY, MAX_DENSITY = 2, 64  # what the API accepts (64 x 64 points take many minutes on a CPU)
THUMB_WIDTH = 160  # pixels across one of a click's candidate pictures
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One found mask, packed, with the model's scores for it."""

    mask: PackedMask
    score: float  # predicted IoU: the model's own guess of the mask's quality
    stability: float


@dataclass
class Found:
    """The masks found on one frame of one video, and which of them the person has chosen."""

    video: weakref.ref  # the LoadedVideo they were found on (a new upload makes them stale)
    frame: int
    points_per_side: int
    candidates: list[Candidate]
    chosen: set[int] = field(default_factory=set)  # indices into candidates
    _picture: np.ndarray | None = None  # the drawing, made once per choice (see picture)


@dataclass
class Finding:
    """A run on a background thread (:func:`start_finding`); ``message`` once it has succeeded."""

    message: str = ""
    thread: threading.Thread = field(init=False)


# ----------------------------------------------------------------------------- finding


def current(work: Work) -> Found | None:
    """What was found on the loaded video, or None; found masks of an earlier video are dropped."""
    found = work.found
    if isinstance(found, Found) and work.video is not None and found.video() is work.video:
        return found
    work.found = None
    return None


def require_found(work: Work) -> Found:
    operations.require_video(work)
    found = current(work)
    if found is None or not found.candidates:
        raise UserError("Nothing found to keep yet: press 'Find objects on this frame' first.")
    return found


def check_density(points_per_side: object) -> int:
    """Points per side as a whole number in range, or a UserError saying what is allowed."""
    try:
        value = float(points_per_side)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value != int(value) or not MIN_DENSITY <= value <= MAX_DENSITY:
        raise UserError(f"Points per side must be a whole number from {MIN_DENSITY} to {MAX_DENSITY}.")
    return int(value)


def start_finding(work: Work, engine: Engine, frame: int, points_per_side: int) -> Finding:
    """Check the request, then find objects on ``frame`` on a background thread that holds
    ``work.lock`` until it ends. A problem is raised here (UserError) before anything starts;
    the run's outcome is in ``work.progress`` (error, cancelled) and ``Finding.message``."""
    operations.refuse_while_running(work)
    operations.require_video(work)
    frame = operations.check_frame(work, frame)
    points_per_side = check_density(points_per_side)
    if not work.lock.acquire(timeout=operations.LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    work.cancel.clear()
    estimate = find_estimate(engine, engine.image_size_of(operations.require_video(work).handle), points_per_side)
    work.progress = TrackProgress(
        running=True, label=f"Finding objects on frame {frame}", total=points_per_side**2, started=time.monotonic(),
        unit="points", kept="your objects, clicks and masks stay as they were",
        estimate_s=None if estimate is None else estimate / points_per_side**2,
    )  # fmt: skip
    finding = Finding()
    finding.thread = operations.start_holding_lock(
        work, _run_finding, (work, engine, frame, points_per_side, finding), "find-objects"
    )
    return finding


def find_estimate(engine: Engine, image_size: int, points_per_side: int) -> float | None:
    """Seconds a find is expected to take here at ``image_size``, from the encoding timed at
    start (None where it was not timed)."""
    return None if engine.speed is None else engine.speed.find_s(points_per_side, image_size)


def find_objects(work: Work, engine: Engine, frame: int, points_per_side: int) -> str:
    """Find objects and wait for the end (for scripts and tests; the page uses start_finding)."""
    finding = start_finding(work, engine, frame, points_per_side)
    finding.thread.join()
    if work.progress.error:
        raise UserError(work.progress.error)
    return finding.message or f"Cancelled: {work.progress.kept}."


def _run_finding(work: Work, engine: Engine, frame: int, points_per_side: int, finding: Finding) -> None:
    """The thread's work (``work.lock`` is held, and released at the end). Only a complete
    run changes the work: then its masks replace what was found before."""
    progress = work.progress

    def report(done: int, total: int) -> bool:
        progress.total = total
        if done > progress.done:
            progress.advance(done - progress.done)
        return not work.cancel.is_set()

    try:
        video = operations.require_video(work)
        masks = engine.find_objects(video.handle, frame, points_per_side, progress=report)
        candidates = [Candidate(PackedMask.pack(m.mask), m.score, m.stability) for m in masks if m.mask.any()]
        work.found = Found(weakref.ref(video), frame, points_per_side, candidates) if candidates else None
        finding.message = _found_message(frame, points_per_side, len(candidates))
    except FindingCancelled:
        progress.cancelled = True
    except UserError as exc:
        progress.error = str(exc)
    except Exception as exc:  # nothing was changed; the log has the traceback
        log.exception("Finding objects on frame %d failed after %d points", frame, progress.done)
        progress.error = (f"Could not find objects ({type(exc).__name__}: {exc}). "
                          "Your objects, clicks and masks are as they were.")  # fmt: skip
    finally:
        operations.end_holding_lock(work, progress)


def _found_message(frame: int, points_per_side: int, count: int) -> str:
    if not count:
        return (f"Found no objects on frame {frame} with {points_per_side} points per side: the model was not sure "
                "enough of any mask. Try more points per side, or click the objects yourself.")  # fmt: skip
    return (f"Found {count} object(s) on frame {frame}. Click the ones to keep in the picture of found objects "
            "(click again to drop one), then press 'Keep chosen'; or press 'Keep all'.")  # fmt: skip


# ----------------------------------------------------------------------------- choosing and keeping


def candidate_at(found: Found, x: float, y: float) -> int | None:
    """The found mask under pixel (x, y): the smallest one there (masks nest: a click inside a
    pocket on a shirt means the pocket; the shirt is chosen by clicking beside the pocket)."""
    row, col = int(y), int(x)
    best: int | None = None
    for index, candidate in enumerate(found.candidates):
        m = candidate.mask
        inside = m.top <= row < m.top + m.box_shape[0] and m.left <= col < m.left + m.box_shape[1]
        if inside and m.unpack()[row, col] and (best is None or m.area < found.candidates[best].mask.area):
            best = index
    return best


def toggle(work: Work, x: float, y: float) -> str:
    """A click on the picture of found objects: choose the mask there, or drop it if chosen."""
    found = require_found(work)
    height, width = found.candidates[0].mask.shape
    if not (0 <= x < width and 0 <= y < height):
        raise UserError(f"The click ({x:.0f}, {y:.0f}) is outside the {width}x{height} frame.")
    index = candidate_at(found, x, y)
    if index is None:
        raise UserError("No found object there: click inside one of the outlines.")
    if index in found.chosen:
        found.chosen.discard(index)
        done = f"Dropped found object {index + 1}"
    else:
        found.chosen.add(index)
        done = f"Chose found object {index + 1}"
    found._picture = None
    return f"{done}; {len(found.chosen)} of {len(found.candidates)} chosen. Press 'Keep chosen' to make them objects."


def keep(work: Work, engine: Engine, indices: Sequence[int] | None = None) -> str:
    """Make found masks new objects, each with that mask as its mask prompt on the frame they
    were found on (as :func:`operations.set_mask` does), in one undoable step; ``indices``
    (0-based, in the order found) or None for all. Kept masks leave the found list. If a model
    call fails part-way, the predictor is rebuilt from the unchanged document."""
    video = operations.require_video(work)
    found = require_found(work)
    picks = list(range(len(found.candidates))) if indices is None else _checked_indices(found, indices)
    if not picks:
        raise UserError("Choose the found objects to keep first (click them in the picture), or press 'Keep all'.")
    free = [i for i in range(1, MAX_OBJECTS + 1) if i not in work.registry][: len(picks)]
    if len(free) < len(picks):
        raise UserError(f"Keeping {len(picks)} objects would make more than {MAX_OBJECTS}, the most a video can "
                        f"have; keep {len(free)} or fewer.")  # fmt: skip
    frame = found.frame
    prompts = [(obj, PromptSpec(mask=found.candidates[i].mask)) for obj, i in zip(free, picks, strict=True)]
    made: dict[tuple[int, int], PackedMask] = {}
    try:
        for obj, prompt in prompts:
            made[(frame, obj)] = PackedMask.pack(engine.prompt(video.handle, frame, obj, prompt))
    except BaseException:
        operations.rebuild(work, engine)  # the predictor back to the document, which has not changed
        raise
    work.registry.update({obj: ObjectInfo(obj, f"object {obj}", label=work.last_label) for obj in free})
    doc = work.doc
    calls = tuple(PromptCall(frame, obj, prompt) for obj, prompt in prompts)
    after = replace(doc, object_ids=doc.object_ids + tuple(free), calls=doc.calls + calls,
                    masks={**doc.masks, **made}, tracked=doc.tracked - set(made))  # fmt: skip
    work.commit(f"keep {len(picks)} found object(s) on frame {frame}", after)
    work.active = free[-1]
    work.pending_corner = None
    _forget(work, found, picks)
    names = ", ".join(f"'object {obj}'" for obj in free[:6]) + (" ..." if len(free) > 6 else "")
    return (f"Kept {len(picks)} found object(s) on frame {frame} as {names}. "
            "Press Track to follow them through the video.")  # fmt: skip


def _checked_indices(found: Found, indices: Sequence[int]) -> list[int]:
    picks: list[int] = []
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(f"Found objects are chosen by their number (0 to {len(found.candidates) - 1}).")
        if not 0 <= value < len(found.candidates):
            raise UserError(f"There is no found object {value}: choose from 0 to {len(found.candidates) - 1}.")
        if int(value) not in picks:
            picks.append(int(value))
    return picks


def _forget(work: Work, found: Found, kept: list[int]) -> None:
    """Kept masks leave the list (the rest stay to be kept later); none left: nothing found."""
    left = [c for i, c in enumerate(found.candidates) if i not in kept]
    if not left:
        work.found = None
        return
    found.candidates, found.chosen, found._picture = left, set(), None


def clear(work: Work) -> str:
    operations.require_video(work)
    if current(work) is None:
        raise UserError("There are no found objects to clear.")
    work.found = None
    return "Cleared the found objects (your objects are unchanged)."


def describe(found: Found) -> list[dict]:
    """The found masks as the API lists them: index, scores, area and box [x0, y0, x1, y1]."""
    out = []
    for index, c in enumerate(found.candidates):
        m = c.mask
        box = [m.left, m.top, m.left + m.box_shape[1], m.top + m.box_shape[0]]
        out.append({"index": index, "score": round(c.score, 4), "stability": round(c.stability, 4),
                    "area": m.area, "box": box, "chosen": index in found.chosen})  # fmt: skip
    return out


# ----------------------------------------------------------------------------- pictures


def picture(work: Work, found: Found) -> np.ndarray:
    """The frame the masks were found on, each outlined in its own colour with its number
    (index + 1); the chosen ones filled. Drawn once per choice (many masks take a while)."""
    if found._picture is None:
        video = operations.require_video(work)
        found._picture = _draw_found(np.asarray(video.frames[found.frame]), found)
    return found._picture


def _draw_found(frame: np.ndarray, found: Found) -> np.ndarray:
    image = frame.copy()
    thickness = max(1, round(min(image.shape[:2]) / 300))
    # Larger first, so that a small mask's outline and number stay on top of a large one's.
    order = sorted(range(len(found.candidates)), key=lambda i: -found.candidates[i].mask.area)
    masks = {i: found.candidates[i].mask.unpack() for i in order}
    for i in order:
        if i in found.chosen:
            image[masks[i]] = (0.45 * np.array(_colour(i)) + 0.55 * image[masks[i]]).astype(np.uint8)
    for i in order:
        contours, _ = cv2.findContours(masks[i].astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, _colour(i), thickness * (3 if i in found.chosen else 1))
    for i in order:
        _number(image, masks[i], str(i + 1))
    return image


def _colour(index: int) -> tuple[int, int, int]:
    """Bright colours far apart for neighbouring numbers (hue steps of the golden ratio)."""
    hue = int((index * 0.618034 % 1.0) * 180)
    r, g, b = cv2.cvtColor(np.uint8([[[hue, 230, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _number(image: np.ndarray, mask: np.ndarray, text: str) -> None:
    """Write ``text`` at the mask's most inner point (farthest from its edge), white on black."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    scale = max(0.35, min(image.shape[:2]) / 900)
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    origin = (int(x) - w // 2, int(y) + h // 2)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def candidate_pictures(
    work: Work, engine: Engine, frame: int
) -> list[tuple[np.ndarray, float, bool]]:  # fmt: skip
    """A click's alternatives as small pictures: [(picture, predicted quality, shown)] for each
    mask the model offered after the chosen object's first click on ``frame`` (three, in the
    model's order, so index i is ``operations.pick_candidate``'s i), or [] when there is no
    choice. Each picture is the part of the frame around the masks, with the mask in the
    object's colour and the click."""
    video = work.video
    obj = work.active
    if video is None or obj not in work.doc.object_ids or not 0 <= frame < video.count:
        return []
    prompt = work.doc.prompts().get((frame, obj))
    if prompt is None or len(prompt.points) != 1 or prompt.box is not None or prompt.mask is not None:
        return []  # only a single click offers a choice: no need to ask the model
    offered = operations.candidates(work, engine, frame)
    if not offered:
        return []
    shown = work.doc.frame_masks(frame).get(obj)
    image = np.asarray(video.frames[frame])
    top, bottom, left, right = _around([m for m, _ in offered], image.shape[:2])
    pictures = []
    for mask, score in offered:
        drawn = draw_prompts(overlay(image, {obj: mask}), prompt.points, prompt.labels)[top:bottom, left:right]
        height = max(1, round(drawn.shape[0] * THUMB_WIDTH / drawn.shape[1]))
        small = cv2.resize(drawn, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
        pictures.append((small, score, shown is not None and np.array_equal(mask, shown)))
    return pictures


def _around(masks: list[np.ndarray], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the masks' common box with a margin of a quarter of its
    size (the whole frame when they are empty)."""
    union = np.logical_or.reduce(masks)
    rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
    height, width = size
    if rows.size == 0:
        return 0, height, 0, width
    margin_y = max(8, (rows[-1] - rows[0]) // 4)
    margin_x = max(8, (cols[-1] - cols[0]) // 4)
    return (max(0, rows[0] - margin_y), min(height, rows[-1] + 1 + margin_y),
            max(0, cols[0] - margin_x), min(width, cols[-1] + 1 + margin_x))  # fmt: skip
