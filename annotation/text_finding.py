"""Find by text on the frame shown: the detector's boxes for phrases such as "person, red car",
drawn with their phrase and score, chosen by clicks and kept as new objects.

What was found is kept on the work (``work.text_found``, a :class:`TextFound`; not in the
document, like ``annotation.finding``'s masks: a proposal, not an annotation, so undo and
session files leave it alone). A find runs on a background thread that holds ``work.lock``
(:func:`start_text_finding`): the first one loads the detector (``DetectorSlot.get``), which
can take a while; Cancel leaves the work as it was. Keeping (:func:`start_keeping`) is
``annotation.concepts.start_run`` on that one frame with the chosen boxes as the detections and
no tracking: each box a new object prompted with it, labelled with its phrase (added to the
labels when missing), in one undo step.

The whole-video mode is ``annotation.concepts`` itself (:func:`whole_video_detections` gives its
detections from the app's detector slot, loaded on the first detection frame).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from annotation import concepts, operations
from annotation.detect import (
    GROUNDING_DINO_THRESHOLDS,
    OWLV2_THRESHOLDS,
    Detection,
    DetectorSlot,
    DetectorSpec,
    Thresholds,
    check_threshold,
    parse_phrases,
)
from annotation.document import UserError
from annotation.work import TrackProgress, Work

# Keeping: a kept box is matched to an object already there only when their masks are the same
# (IoU 1): the person chose these boxes to become objects, and two boxes giving one mask are one.
KEEP_MATCH_IOU = 1.0
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the defaults shown


@dataclass(frozen=True)
class PublishedDefaults:
    """The thresholds a detector family publishes, shown in the page before the detector is
    loaded. family: its name; known: whether the family was read from the spec (a folder's
    config.json, or an OWLv2 model id), else Grounding DINO's are shown, the default detector's."""

    family: str
    thresholds: Thresholds
    known: bool


def published_defaults(spec: DetectorSpec) -> PublishedDefaults:
    """The spec's family's published thresholds, without loading anything (a folder's
    config.json is read; a model id is told by its name), the spec's own thresholds first."""
    kind = _family_of(spec.model)
    family, published = {"owlv2": ("OWLv2", OWLV2_THRESHOLDS),
                         "mm-grounding-dino": ("MM Grounding DINO", GROUNDING_DINO_THRESHOLDS)}.get(
        kind or "", ("Grounding DINO", GROUNDING_DINO_THRESHOLDS))  # fmt: skip
    box = published.box if spec.box_threshold is None else spec.box_threshold
    text = None if published.text is None else (published.text if spec.text_threshold is None else spec.text_threshold)
    return PublishedDefaults(family, Thresholds(box, text), kind is not None)


def _family_of(model: str) -> str | None:
    path = Path(str(model)).expanduser()
    if path.is_dir():
        try:
            kind = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return None
        return kind if kind in ("grounding-dino", "mm-grounding-dino", "owlv2") else None
    lowered = str(model).lower()
    if "owlv2" in lowered:
        return "owlv2"
    if "mm-grounding" in lowered or "mm_grounding" in lowered:
        return "mm-grounding-dino"
    if "grounding-dino" in lowered or "grounding_dino" in lowered:
        return "grounding-dino"
    return None


# ----------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class TextRequest:
    """A checked request: the phrases, and the thresholds (None: the detector's defaults)."""

    prompt: str  # as typed, for messages
    phrases: tuple[str, ...]
    box_threshold: float | None
    text_threshold: float | None

    @property
    def what(self) -> str:
        return "'" + ", ".join(self.phrases) + "'"


def check_request(prompt: object, box_threshold: object = None, text_threshold: object = None) -> TextRequest:
    """The phrases and thresholds checked (refused in words: an empty prompt, too many or too
    long phrases, a threshold that is not a number from 0 to 1)."""
    phrases = parse_phrases(prompt)  # type: ignore[arg-type]
    box = None if box_threshold is None else check_threshold(box_threshold, "box threshold")
    text = None if text_threshold is None else check_threshold(text_threshold, "text threshold")
    return TextRequest(str(prompt), tuple(phrases), box, text)


# ----------------------------------------------------------------------------- what was found


@dataclass
class TextFound:
    """The boxes found on one frame of one video, and which of them the person has chosen."""

    video: weakref.ref  # the LoadedVideo they were found on (a new upload makes them stale)
    frame: int
    request: TextRequest
    detections: list[Detection]
    chosen: set[int] = field(default_factory=set)  # indices into detections
    _picture: np.ndarray | None = None


@dataclass
class TextFinding:
    """A find on a background thread; ``message`` once it has succeeded, ``seconds`` the
    detector's time on the frame (measured here; the load not counted)."""

    message: str = ""
    seconds: float | None = None
    loaded_s: float | None = None  # the detector's load, when this find loaded it
    thread: threading.Thread = field(init=False)


def current(work: Work) -> TextFound | None:
    """What was found on the loaded video, or None; boxes found on an earlier video are dropped."""
    found = work.text_found
    if isinstance(found, TextFound) and work.video is not None and found.video() is work.video:
        return found
    work.text_found = None
    return None


def require_found(work: Work) -> TextFound:
    found = current(work)
    if found is None or not found.detections:
        raise UserError("Nothing found to keep yet: type what to find and press 'Find on this frame' first.")
    return found


def start_text_finding(work: Work, slot: DetectorSlot, frame: int, request: TextRequest) -> TextFinding:
    """Check, then run the detector on ``frame`` on a background thread that holds ``work.lock``
    (the first find loads the detector there). A problem is raised here before anything starts;
    the outcome is in ``work.progress`` and the returned :class:`TextFinding`."""
    operations.refuse_while_running(work)
    operations.require_video(work)
    frame = operations.check_frame(work, frame)
    if not work.lock.acquire(timeout=operations.LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    work.cancel.clear()
    loading = "" if slot.loaded is not None else " (the first find loads the detector, which takes a while)"
    work.progress = TrackProgress(running=True, label=f"Finding {request.what} on frame {frame}{loading}", total=1,
                                  started=time.monotonic(), unit="frame",
                                  kept="your objects, clicks and masks stay as they were")  # fmt: skip
    finding = TextFinding()
    finding.thread = operations.start_holding_lock(work, _run_finding, (work, slot, frame, request, finding),
                                                   "find-by-text")  # fmt: skip
    return finding


def _run_finding(work: Work, slot: DetectorSlot, frame: int, request: TextRequest, finding: TextFinding) -> None:
    progress = work.progress
    try:
        video = operations.require_video(work)
        started = time.perf_counter()
        was_loaded = slot.loaded is not None
        detector = slot.get()
        if not was_loaded:
            finding.loaded_s = time.perf_counter() - started
        if work.cancel.is_set():
            raise _Cancelled
        started = time.perf_counter()
        found = detector.detect(np.asarray(video.frames[frame]), list(request.phrases), request.box_threshold,
                                request.text_threshold)  # fmt: skip
        finding.seconds = time.perf_counter() - started
        if work.cancel.is_set():
            raise _Cancelled
        progress.count_one()
        work.text_found = TextFound(weakref.ref(video), frame, request, found) if found else None
        finding.message = _found_message(frame, request, found, finding.seconds)
    except _Cancelled:
        progress.cancelled = True
    except UserError as exc:  # DetectorUnavailable among them: the rest of the app works on
        progress.error = str(exc)
    except Exception as exc:  # nothing was changed; the log has the traceback
        log.exception("Finding %s on frame %d failed", request.what, frame)
        progress.error = (f"Could not find {request.what} ({type(exc).__name__}: {exc}). "
                          "Your objects, clicks and masks are as they were.")  # fmt: skip
    finally:
        operations.end_holding_lock(work, progress)


class _Cancelled(Exception):
    """Cancel was pressed: nothing found is kept."""


def _found_message(frame: int, request: TextRequest, found: list[Detection], seconds: float) -> str:
    took = f" The detector took {seconds:.1f} s on this machine."
    if not found:
        return (f"Found nothing for {request.what} on frame {frame}. Try other words, or a lower box threshold."
                + took)  # fmt: skip
    return (f"Found {len(found)} box(es) for {request.what} on frame {frame}. Click the ones to keep in the picture "
            f"of found boxes, then press 'Keep chosen', or press 'Keep all'.{took}")  # fmt: skip


# ----------------------------------------------------------------------------- choosing


def box_at(found: TextFound, x: float, y: float) -> int | None:
    """The found box around pixel (x, y): the smallest one there (boxes nest)."""
    inside = [i for i, d in enumerate(found.detections) if d.x0 <= x <= d.x1 and d.y0 <= y <= d.y1]
    return min(inside, key=lambda i: (found.detections[i].x1 - found.detections[i].x0)
               * (found.detections[i].y1 - found.detections[i].y0), default=None)  # fmt: skip


def toggle(work: Work, x: float, y: float) -> str:
    """A click on the picture of found boxes: choose the box there, or drop it if chosen."""
    found = require_found(work)
    index = box_at(found, x, y)
    if index is None:
        raise UserError("No found box there: click inside one of the boxes.")
    if index in found.chosen:
        found.chosen.discard(index)
        done = f"Dropped found box {index + 1}"
    else:
        found.chosen.add(index)
        done = f"Chose found box {index + 1}"
    found._picture = None
    return f"{done}; {len(found.chosen)} of {len(found.detections)} chosen. Press 'Keep chosen' to make them objects."


def clear(work: Work) -> str:
    if current(work) is None:
        raise UserError("There are no found boxes to clear.")
    work.text_found = None
    return "Cleared the found boxes (your objects are unchanged)."


def describe(found: TextFound) -> list[dict]:
    """The found boxes as the API lists them: index, phrase, score, box [x0, y0, x1, y1], chosen."""
    return [{"index": i, "phrase": d.phrase, "score": round(d.score, 4), "box": [round(v, 2) for v in d.box],
             "chosen": i in found.chosen} for i, d in enumerate(found.detections)]  # fmt: skip


def checked_indices(found: TextFound, indices: Sequence[object] | None) -> list[int]:
    """``indices`` (None: all) as sorted distinct indices of found boxes, else a UserError."""
    if indices is None:
        return list(range(len(found.detections)))
    picks = set()
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"Found boxes are chosen by their number (0 to {len(found.detections) - 1}).")
        if not 0 <= value < len(found.detections):
            raise UserError(f"There is no found box {value}: choose from 0 to {len(found.detections) - 1}.")
        picks.add(value)
    if not picks:
        raise UserError("Choose the found boxes to keep first (click them in the picture), or press 'Keep all'.")
    return sorted(picks)


# ----------------------------------------------------------------------------- keeping


@dataclass
class Keeping:
    """A keep on a background thread: the concepts run, and the boxes it keeps."""

    run: concepts.Concepts
    frame: int
    kept: list[int]

    @property
    def thread(self) -> threading.Thread:
        assert self.run.thread is not None
        return self.run.thread


def start_keeping(work: Work, engine: object, indices: Sequence[object] | None = None) -> Keeping:
    """Make found boxes (``indices``, None: all) new objects on the frame they were found on:
    each prompted with its box, labelled with its phrase; one undo step (see the module). The
    kept boxes leave the found list once the run has ended (:func:`forget_kept`)."""
    found = require_found(work)
    picks = checked_indices(found, indices)
    chosen = [found.detections[i] for i in picks]
    labels = list(dict.fromkeys(d.phrase for d in chosen))
    run = concepts.start_run(work, engine, lambda frame, image: list(chosen), [found.frame], found.request.what,
                             KEEP_MATCH_IOU, track=False, labels=labels)  # type: ignore[arg-type]  # fmt: skip
    return Keeping(run, found.frame, picks)


def forget_kept(work: Work, keeping: Keeping) -> None:
    """After a keep that ended (not cancelled, no error): the kept boxes leave the found list."""
    found = current(work)
    if found is None or work.progress.cancelled or work.progress.error:
        return
    left = [d for i, d in enumerate(found.detections) if i not in keeping.kept]
    if not left:
        work.text_found = None
        return
    found.detections, found.chosen, found._picture = left, set(), None


def whole_video_detections(slot: DetectorSlot, request: TextRequest) -> concepts.DetectFn:
    """The detector (loaded on the first detection frame, inside the run) on each frame."""
    return lambda frame, image: slot.get().detect(image, list(request.phrases), request.box_threshold,
                                                  request.text_threshold)  # fmt: skip


# ----------------------------------------------------------------------------- the picture


def picture(work: Work, found: TextFound) -> np.ndarray:
    """The frame the boxes were found on, each box drawn with its number, phrase and score; the
    chosen ones thicker and tinted."""
    if found._picture is None:
        video = operations.require_video(work)
        found._picture = _draw(np.asarray(video.frames[found.frame]), found)
    return found._picture


def _draw(frame: np.ndarray, found: TextFound) -> np.ndarray:
    image = frame.copy()
    thickness = max(1, round(min(image.shape[:2]) / 300))
    scale = max(0.35, min(image.shape[:2]) / 900)
    order = sorted(range(len(found.detections)), key=lambda i: -_area(found.detections[i]))  # small ones on top
    for i in order:
        d = found.detections[i]
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        colour = _colour(i)
        if i in found.chosen:
            region = image[y0:y1, x0:x1]
            region[:] = (0.35 * np.array(colour) + 0.65 * region).astype(np.uint8)
        cv2.rectangle(image, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour,
                      thickness * (3 if i in found.chosen else 1))  # fmt: skip
        text = f"{i + 1} {_ascii(d.phrase)} {d.score:.2f}"
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        origin = (min(max(0, x0 + 2), max(0, image.shape[1] - w)), min(max(h + 2, y0 + h + 2), image.shape[0] - 2))
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _area(d: Detection) -> float:
    return (d.x1 - d.x0) * (d.y1 - d.y0)


def _ascii(text: str) -> str:
    """OpenCV's fonts draw ASCII only: other letters become '?' in the picture (the API and the
    messages keep the phrase as written)."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _colour(index: int) -> tuple[int, int, int]:
    hue = int((index * 0.618034 % 1.0) * 180)
    r, g, b = cv2.cvtColor(np.uint8([[[hue, 230, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)
