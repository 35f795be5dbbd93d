"""Find and track in the whole video: detections (from text, or read from a file) every k frames
while tracking runs, each matched to the objects already tracked.

A detection on frame f is a box. The predictor given that box alone on f (a fresh object, no
memory: the mask a new object prompted there would get) makes its SAM mask, which is compared
with the masks the objects have on f (:func:`match_detections`):

- mask IoU at or above the threshold with an object that has a mask there: the same object
  (nothing changes: tracking already follows it);
- else, with an object of the same label that is *lost* on f (its mask there is empty or
  missing) and whose last mask before f it overlaps at or above the threshold: that object
  found again, which gets the box as its prompt on f, so tracking picks it up after an
  occlusion;
- else a new instance: a new object with the detection's label (added to the labels when
  missing), prompted on f.

The whole-video run (:func:`start_run` for the page, :func:`run` for the command line and the
tests) goes through the detection frames in order, tracking forward between them, then to the
end of the video, and at last backward from the latest first frame of a new object, so new
objects also cover the frames before they were first detected (only theirs are taken from that
backward run: the other objects keep what was tracked forward). ``work.progress`` counts
detection frames and tracked frames ("steps"); Cancel keeps what is done; the run is one undo
step (its new objects and labels included).

The detections come from a callable ``(frame index, HxWx3 uint8 RGB image) -> [Detection]``:
the text detector (:func:`text_detections`) or a file's boxes (:func:`file_detections`, for a
COCO results file covering the video: with matching, the same person on frames 0 and 30 is one
object). :func:`uses_matching` says when an imported file is matched (boxes on several frames)
and when each box stays a new object as before (one frame's boxes, or masks).

For the page ("Find and track in the whole video"): ``frames = detection_frames(video.count,
every)`` with ``every`` defaulting to ``default_every(fps)``; say ``describe_plan(frames, count)``
before starting; then ``start_run(work, engine, text_detections(detector, phrases, box, text),
frames, f"'{prompt}'", threshold, labels=phrases)`` and poll ``work.progress`` as for tracking.
An import goes through :func:`start_importing` (``operations.start_importing`` plus matching).

The threshold: DEFAULT_MATCH_IOU = 0.5. Above one half, a mask can match at most one of several
disjoint masks (IoU > 0.5 with A means covering more than half of itself with A), so a detection
can never be split between two tracked objects; and a box prompt's mask and the tracked mask of
the same object disagree at the edges (a person's tracked mask without the feet, the box's with
them), where Grounded-SAM-2's 0.8 makes a duplicate object of one already tracked.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from annotation import imports, operations
from annotation.detect import Detection, Detector, check_example_box, check_threshold, clean_phrases, parse_phrases
from annotation.document import MAX_OBJECTS, ObjectInfo, PackedMask, PromptCall, PromptSpec, Snapshot, UserError
from annotation.engine import Engine
from annotation.formats import clean_name
from annotation.labels import MAX_LABELS, add_labels, distinct_labels
from annotation.work import TrackProgress, Work

DEFAULT_MATCH_IOU = 0.5
PROBE_ID = 0  # the predictor's object for a detection's mask, removed at once (objects are 1..255)
log = logging.getLogger(__name__)

DetectFn = Callable[[int, np.ndarray], list[Detection]]
MatchKind = Literal["same", "again", "new", "repeat"]
# what each kind does, for messages: "same" and "repeat" change nothing
KIND_WORDS = {"same": "an object already tracked", "again": "a lost object found again", "new": "a new object",
              "repeat": "a second box on one object"}  # fmt: skip


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Match:
    """What one detection on a frame is: ``kind`` (see the module's words) and its object."""

    kind: MatchKind
    obj_id: int
    iou: float  # with the object's mask on the frame ("same", "repeat"), its last mask ("again"), 0 ("new")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / float(union) if union else 0.0


def match_detections(
    masks: Sequence[np.ndarray], labels: Sequence[str], visible: dict[int, np.ndarray],
    lost: dict[int, tuple[np.ndarray, str]], threshold: float, free_ids: Iterator[int],
) -> list[Match]:  # fmt: skip
    """The matches of one frame's detections, given in the order to match them (best score first).

    masks[i]: detection i's SAM mask (HxW bool), labels[i]: its label. visible: object -> its
    (non-empty) mask on the frame; lost: object -> (its last non-empty mask before the frame, its
    label), for objects empty or missing there. A new object takes the next of ``free_ids``
    (StopIteration when none is left). Each object takes at most one detection: a second one
    matching it is a "repeat"; an object made or found again here is matched by its detection's
    mask, so two boxes of one new instance make one object.
    """
    matches: list[Match] = []
    claimed: dict[int, np.ndarray] = {}  # objects given a detection on this frame -> the mask they match by
    for mask, label in zip(masks, labels, strict=True):
        known = {**visible, **claimed}
        best = max(known, key=lambda obj: mask_iou(mask, known[obj]), default=None)
        best_iou = mask_iou(mask, known[best]) if best is not None else 0.0
        if best is not None and best_iou >= threshold:
            matches.append(Match("repeat" if best in claimed else "same", best, best_iou))
            claimed.setdefault(best, known[best])
            continue
        gone = {obj: seen for obj, (seen, its_label) in lost.items() if its_label == label and obj not in claimed}
        again = max(gone, key=lambda obj: mask_iou(mask, gone[obj]), default=None)
        again_iou = mask_iou(mask, gone[again]) if again is not None else 0.0
        if again is not None and again_iou >= threshold:
            matches.append(Match("again", again, again_iou))
            claimed[again] = mask
            continue
        obj = next(free_ids)
        matches.append(Match("new", obj, 0.0))
        claimed[obj] = mask
    return matches


def check_match_iou(value: object) -> float:
    """The matching threshold as a float in (0, 1], else a UserError (0 would match everything)."""
    threshold = check_threshold(value, "matching threshold (mask IoU)")
    if threshold <= 0:
        raise UserError("The matching threshold (mask IoU) must be above 0: at 0 every box would match every object.")
    return threshold


# ----------------------------------------------------------------------------- the frames


def default_every(fps: float) -> int:
    """One second of video in frames (at least 1): the default step between detection frames."""
    return max(1, round(fps)) if math.isfinite(fps) and fps > 0 else 1


def detection_frames(count: int, every: object) -> list[int]:
    """0, k, 2k ... below ``count``; k refused in words unless a whole number from 1 to ``count``."""
    whole = isinstance(every, (int, np.integer)) and not isinstance(every, bool)
    if isinstance(every, float) and math.isfinite(every) and every == int(every):
        every, whole = int(every), True
    if not whole:
        raise UserError(f"Detect every k frames: k must be a whole number of frames (it is {every!r:.40}).")
    if every < 1:
        raise UserError(f"Detect every k frames: k must be at least 1 (it is {every}).")
    if every > count:
        raise UserError(f"Detect every {every} frames: the video has only {count} frames. Choose k from 1 to {count}.")
    return list(range(0, count, int(every)))


def describe_plan(frames: Sequence[int], count: int) -> str:
    """What a run will do, said before it starts: 'It will detect on 4 frames (0, 10, 20, 30) ...'."""
    shown = ", ".join(str(f) for f in frames[:8]) + (", ..." if len(frames) > 8 else "")
    return (f"It will detect on {len(frames)} of the {count} frames ({shown}), track forward through the video, "
            "then back over the frames before the new objects were first detected.")  # fmt: skip


# ----------------------------------------------------------------------------- detections


def text_detections(
    detector: Detector, phrases: Sequence[str] | str, box_threshold: float | None = None,
    text_threshold: float | None = None,
) -> DetectFn:  # fmt: skip
    """The detector run on each frame for ``phrases`` (checked here: an empty prompt, too many
    phrases and thresholds outside 0..1 are refused before anything runs)."""
    chosen = parse_phrases(phrases) if isinstance(phrases, str) else clean_phrases(phrases)
    if box_threshold is not None:
        check_threshold(box_threshold, "box threshold")
    if text_threshold is not None:
        check_threshold(text_threshold, "text threshold")
    return lambda frame, image: detector.detect(image, chosen, box_threshold, text_threshold)


def like_detections(
    detector: Detector, example_image: np.ndarray, box: Sequence[float], label: str,
    threshold: float | None = None, example_frame: int | None = None,
) -> DetectFn:  # fmt: skip
    """"Find more like this" on each frame: the objects that look like the box ``box``
    (x0, y0, x1, y1, pixels) on ``example_image``, each named ``label`` (OWLv2 only; see
    ``Detector.find_like`` for the threshold). Another detector, a bad box and a bad threshold
    are refused here, before anything runs; the example's query is computed once, on the first
    frame searched (in the run, with its progress). On ``example_frame`` (the example's own
    frame) the example itself is left out: there it is the object it was taken from."""
    detector.require_image_guided()
    image = np.array(example_image, dtype=np.uint8, copy=True)
    given = check_example_box(box, image.shape[1], image.shape[0])
    if threshold is not None:
        check_threshold(threshold, "likeness threshold")
    examples: list = []

    def detect(frame: int, target: np.ndarray) -> list[Detection]:
        if not examples:
            examples.append(detector.like_example(image, given, label))
        exclude = given if frame == example_frame else None
        return detector.find_like(target, examples[0], threshold, exclude=exclude)

    return detect


def file_detections(given: imports.Imported) -> tuple[list[int], DetectFn]:
    """(the frames with boxes, in order; their boxes as detections) of an imported file: a
    box's class is its phrase, its score (1 where the file has none) its score."""
    by_frame: dict[int, list[Detection]] = {}
    for box in given.boxes:
        score = 1.0 if box.score is None else float(box.score)
        by_frame.setdefault(box.frame, []).append(Detection(*box.box, phrase=box.label or "", score=score))
    return sorted(by_frame), lambda frame, image: list(by_frame.get(frame, []))


def uses_matching(given: imports.Imported) -> bool:
    """Whether an imported file's boxes are matched across frames (the default for detection
    results covering several frames) rather than each box becoming a new object (one frame's
    boxes, as before; a file of masks names its objects itself)."""
    return not given.masks and len({box.frame for box in given.boxes}) > 1


# ----------------------------------------------------------------------------- the run


@dataclass
class Concepts:
    """A run (:func:`start_run`): ``matches`` lists (frame, detection, match) in the order made;
    ``steps`` the predictor calls in order, ("prompt", frame, object, box) and ("track", start,
    frames, reverse), as a replay would make them; ``message`` once it has ended."""

    frames: list[int]
    what: str  # "'person, car'" or "'boxes.json'", for the progress line and messages
    matches: list[tuple[int, Detection, Match]] = field(default_factory=list)
    steps: list[tuple] = field(default_factory=list)
    message: str = ""
    thread: threading.Thread | None = None

    def count(self, kind: MatchKind) -> int:
        return sum(m.kind == kind for _, _, m in self.matches)


def start_run(
    work: Work, engine: Engine, detect: DetectFn, frames: Sequence[int], what: str,
    threshold: float = DEFAULT_MATCH_IOU, track: bool = True, add_missing_labels: bool = True,
    labels: Sequence[str] = (),
) -> Concepts:  # fmt: skip
    """Check the request, then run it on a background thread that holds ``work.lock`` until it
    ends (the page's way). A problem is raised here (UserError) before anything starts; the
    outcome is in ``work.progress`` (error, cancelled) and the returned :class:`Concepts`.

    frames: the detection frames (sorted, within the video); track: track between them and
    over the whole video (False: only the prompts on the frames, as "Find by text" on one
    frame, then Track as usual); labels: the classes the detections may name (their phrases),
    added up front, or refused (:class:`operations.MissingLabels`) unless add_missing_labels."""
    run_state = _prepare(work, frames, what, threshold, labels, add_missing_labels)
    if not work.lock.acquire(timeout=operations.LOCK_WAIT_S):
        raise UserError("Still busy with the last step; wait a moment or press Cancel.")
    _begin(work, engine, run_state, track)
    run_state.thread = operations.start_holding_lock(
        work, _run, (work, engine, detect, run_state, threshold, track, list(labels)), "concepts"
    )  # fmt: skip
    return run_state


def run(
    work: Work, engine: Engine, detect: DetectFn, frames: Sequence[int], what: str,
    threshold: float = DEFAULT_MATCH_IOU, track: bool = True, add_missing_labels: bool = True,
    labels: Sequence[str] = (),
) -> Concepts:  # fmt: skip
    """:func:`start_run` and wait for the end (the command line's and the tests' way)."""
    concepts = start_run(work, engine, detect, frames, what, threshold, track, add_missing_labels, labels)
    assert concepts.thread is not None
    concepts.thread.join()
    return concepts


def start_import(
    work: Work, engine: Engine, given: imports.Imported, threshold: float = DEFAULT_MATCH_IOU,
    add_missing_labels: bool = False,
) -> Concepts:  # fmt: skip
    """An imported file's boxes on several frames, matched and tracked over the whole video."""
    frames, detect = file_detections(given)
    wanted = [box.label for box in given.boxes if box.label]
    return start_run(work, engine, detect, frames, f"'{given.source}'", threshold, True, add_missing_labels, wanted)


def start_importing(
    work: Work, engine: Engine, source: str, read: Callable[[], imports.Imported], add_missing_labels: bool = False,
    matching: bool = True, threshold: float = DEFAULT_MATCH_IOU,
) -> operations.Importing:  # fmt: skip
    """:func:`operations.start_importing` (the page's import of masks or boxes, read on a
    background thread that holds ``work.lock``), with boxes on several frames matched and tracked
    over the whole video when ``matching`` (:func:`uses_matching`); one frame's boxes, masks, or
    ``matching`` off: each box a new object, as before. The outcome is in the returned
    :class:`operations.Importing` (``message``, ``missing``) and ``work.progress``."""
    check_match_iou(threshold)
    args = (engine, read, add_missing_labels, matching, threshold)
    return operations.begin_import(work, source, _run_importing, args)


def _run_importing(
    work: Work, importing: operations.Importing, engine: Engine, read: Callable[[], imports.Imported],
    add_missing_labels: bool, matching: bool, threshold: float,
) -> None:  # fmt: skip
    """Read; then match and track, or apply as before (``work.lock`` is held; each way gives it back at its end)."""
    progress = importing.progress
    try:
        given = read()
        if work.cancel.is_set():
            raise operations.LoadCancelled
        if matching and uses_matching(given):
            frames, detect = file_detections(given)
            labels = [box.label for box in given.boxes if box.label]
            run = _checked(work, frames, f"'{given.source}'", threshold, labels, add_missing_labels)
    except operations.IMPORT_CANCELLED:
        progress.cancelled = True
    except operations.MissingLabels as exc:
        importing.imported, importing.missing, progress.error = given, exc, str(exc)
    except (UserError, imports.ImportProblem) as exc:
        progress.error = str(exc)
    except Exception as exc:  # nothing was changed; the log has the traceback
        log.exception("Reading %s failed", importing.source)
        progress.error = (f"Could not import '{importing.source}' ({type(exc).__name__}). "
                          "Your objects, clicks and masks are as they were.")  # fmt: skip
    else:
        importing.imported = given
        if not (matching and uses_matching(given)):
            operations._run_importing(work, importing, engine, lambda: given, add_missing_labels)
            return
        _count_steps(work, run, True, progress)
        _run(work, engine, detect, run, threshold, True, labels, importing)
        return
    operations.end_holding_lock(work, progress)


def _prepare(
    work: Work, frames: Sequence[int], what: str, threshold: float, labels: Sequence[str], add_missing_labels: bool
) -> Concepts:
    operations.require_video(work)
    operations.refuse_while_running(work)
    return _checked(work, frames, what, threshold, labels, add_missing_labels)


def _checked(
    work: Work, frames: Sequence[int], what: str, threshold: float, labels: Sequence[str], add_missing_labels: bool
) -> Concepts:
    check_match_iou(threshold)
    frames = [operations.check_frame(work, f) for f in frames]
    if not frames:
        raise UserError("There are no frames to detect on.")
    if frames != sorted(set(frames)):
        raise UserError("The detection frames must be given in order, each once.")
    missing = distinct_labels(labels, work.labels)  # more than MAX_LABELS: refused here
    if missing and not add_missing_labels:
        raise operations.MissingLabels(what.strip("'"), missing, work.labels)
    if len(work.labels) + len(missing) > MAX_LABELS:
        raise UserError(f"{what} would make more than {MAX_LABELS} labels, the most a video can have.")
    return Concepts(list(frames), what)


def _begin(work: Work, engine: Engine, concepts: Concepts, track: bool) -> None:
    """The progress: a step per detection frame and per frame tracked forward; the frames
    tracked backward are added once known (when the backward run starts)."""
    work.cancel.clear()
    work.progress = TrackProgress(running=True, started=time.monotonic())
    _count_steps(work, concepts, track, work.progress)


def _count_steps(work: Work, concepts: Concepts, track: bool, progress: TrackProgress) -> None:
    video = operations.require_video(work)
    forward = video.count - 1 - concepts.frames[0] if track else 0
    progress.label = f"Finding and tracking {concepts.what}" if track else f"Finding {concepts.what}"
    progress.total, progress.unit = len(concepts.frames) + forward, "steps"
    progress.kept = "the objects found and the frames tracked so far are kept"


class _Stopped(Exception):
    """Cancel was pressed."""


def _run(
    work: Work, engine: Engine, detect: DetectFn, concepts: Concepts, threshold: float, track: bool, labels: list[str],
    importing: operations.Importing | None = None,
) -> None:
    """The thread's work (``work.lock`` is held, and released at the end). Each step goes into
    ``work.doc`` at once (the page draws it meanwhile); at the end, whatever stopped it, what
    was done is one undo step. ``importing``: an import's outcome, which gets the message."""
    progress = work.progress
    before, naming = work.doc, work.naming()
    firsts: dict[int, int] = {}  # new object -> the frame it was first detected on
    try:
        video = operations.require_video(work)
        add_labels(work, labels)
        frames = concepts.frames
        for index, frame in enumerate(frames):
            _stop_if(work)
            progress.part = f"detecting on frame {frame}, {index + 1} of {len(frames)}"
            _detect_on(work, engine, detect, frame, threshold, concepts, firsts)
            progress.count_one()
            if track:
                end = frames[index + 1] if index + 1 < len(frames) else video.count - 1
                _track(work, engine, concepts, frame + 1, end - frame - 1, False, "tracking forward")
        back = max(firsts.values(), default=0)
        if track and back > 0:  # from that frame itself: reverse tracking from frame 0 would track nothing
            progress.total += back + 1
            before_first = lambda frame, obj: frame < firsts.get(obj, 0)  # noqa: E731
            _track(work, engine, concepts, back, back, True, f"tracking back from frame {back}", before_first)
        concepts.message = _message(concepts, track)
    except _Stopped:
        progress.cancelled = True
    except StopIteration:
        progress.error = (f"A video can have at most {MAX_OBJECTS} objects; the objects found so far are kept. "
                          "Delete some, or find fewer things.")  # fmt: skip
    except (UserError, ValueError) as exc:
        progress.error = str(exc)
    except Exception as exc:  # keep the work usable; the message names the failure, the log has the rest
        log.exception("Finding and tracking %s failed after %d steps", concepts.what, progress.done)
        progress.error = f"{type(exc).__name__}: {exc}"
    finally:
        progress.part = ""
        if work.doc is not before:
            label = f"find and track {concepts.what}" if track else f"find {concepts.what}"
            work.commit(label, work.doc, before=before, naming_before=naming)
        else:
            work.restore_naming(naming)  # nothing done: labels added up front go again
        if importing is not None:
            importing.message = concepts.message
        operations.end_holding_lock(work, progress)


def _stop_if(work: Work) -> None:
    if work.cancel.is_set():
        raise _Stopped


def _detect_on(
    work: Work, engine: Engine, detect: DetectFn, frame: int, threshold: float, concepts: Concepts,
    firsts: dict[int, int],
) -> None:  # fmt: skip
    """Detect on ``frame``, match, and prompt the objects found again and the new ones there."""
    video = operations.require_video(work)
    found = sorted(detect(frame, np.asarray(video.frames[frame])), key=lambda d: -d.score)
    _stop_if(work)
    if not found:
        return
    masks = []
    for detection in found:
        masks.append(_probe(engine, video.handle, frame, detection.box))
        _stop_if(work)
    labels = [clean_name(d.phrase) or work.last_label for d in found]
    visible, lost = _objects_on(work.doc, frame)
    lost_labels = {obj: (seen, work.registry[obj].label) for obj, seen in lost.items()}
    free = (i for i in range(1, MAX_OBJECTS + 1) if i not in work.registry and i not in firsts)
    matches = match_detections(masks, labels, visible, lost_labels, threshold, free)
    for detection, label, match in zip(found, labels, matches, strict=True):
        concepts.matches.append((frame, detection, match))
        if match.kind in ("same", "repeat"):
            continue
        if match.kind == "new":
            add_labels(work, [label])
            work.registry[match.obj_id] = ObjectInfo(match.obj_id, f"object {match.obj_id}", label=label)
            firsts[match.obj_id] = frame
        _prompt(work, engine, frame, match.obj_id, detection.box, concepts)


def _probe(engine: Engine, handle: object, frame: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The predictor's mask for ``box`` alone on ``frame``: a fresh object, removed at once."""
    try:
        return engine.prompt(handle, frame, PROBE_ID, PromptSpec(box=box))
    finally:
        if PROBE_ID in engine.object_ids(handle):
            engine.remove_object(handle, PROBE_ID)


def _objects_on(doc: Snapshot, frame: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(object -> its mask on ``frame``, where it has one that is not empty; object -> its last
    non-empty mask before ``frame``, for the others that had one)."""
    visible: dict[int, np.ndarray] = {}
    last: dict[int, tuple[int, PackedMask]] = {}
    for (f, obj), packed in doc.masks.items():
        if obj not in doc.object_ids or not packed.area:
            continue
        if f == frame:
            visible[obj] = packed.unpack()
        elif f < frame and (obj not in last or last[obj][0] < f):
            last[obj] = (f, packed)
    lost = {obj: packed.unpack() for obj, (_, packed) in last.items() if obj not in visible}
    return visible, lost


def _prompt(work: Work, engine: Engine, frame: int, obj: int, box: tuple, concepts: Concepts) -> None:
    """A box prompt for ``obj`` on ``frame``, into the document at once (not an undo step of its own)."""
    video = operations.require_video(work)
    box = tuple(float(v) for v in box)
    prompt = PromptSpec(box=box)
    mask = engine.prompt(video.handle, frame, obj, prompt)
    concepts.steps.append(("prompt", frame, obj, box))
    doc = work.doc
    ids = doc.object_ids if obj in doc.object_ids else doc.object_ids + (obj,)
    work.doc = replace(doc, object_ids=ids, calls=doc.calls + (PromptCall(frame, obj, prompt),),
                       masks={**doc.masks, (frame, obj): PackedMask.pack(mask)},
                       tracked=doc.tracked - {(frame, obj)})  # fmt: skip
    work.active = obj


def _track(
    work: Work, engine: Engine, concepts: Concepts, start: int, count: int, reverse: bool, part: str,
    keep: Callable[[int, int], bool] | None = None,
) -> None:  # fmt: skip
    """Track ``count`` frames past ``start`` (``start`` included) if there is such a frame and
    something to track; each frame's masks into the document at once, counted as a step.
    ``keep(frame, object)``: which masks to take (None: all). Tracking back takes only the new
    objects' masks before their first detection: the others keep the masks tracked forward, from
    the detections they were prompted or matched with, which tracking back from a later frame
    would replace with guesses made from further away."""
    video = operations.require_video(work)
    if count < 0 or not 0 <= start < video.count or not engine.object_ids(video.handle):
        return
    progress = work.progress
    progress.part = part
    concepts.steps.append(("track", start, count, reverse))
    prompted = set(work.doc.prompts())
    for frame, frame_masks in engine.track(video.handle, start, count, reverse):
        doc = work.doc
        new = {(frame, obj): PackedMask.pack(m) for obj, m in frame_masks.items()
               if obj in doc.object_ids and (keep is None or keep(frame, obj))}  # fmt: skip
        work.doc = replace(doc, masks={**doc.masks, **new}, tracked=doc.tracked | (set(new) - prompted))
        progress.count_one()
        progress.last_frame = frame
        _stop_if(work)


def _message(concepts: Concepts, track: bool) -> str:
    new, again = concepts.count("new"), concepts.count("again")
    boxes = len(concepts.matches)
    frames = len(concepts.frames)
    if not boxes:
        return (f"Found nothing for {concepts.what} on the {frames} frame(s) searched. Try other words, or a lower "
                "box threshold.")  # fmt: skip
    head = f"Found {boxes} box(es) for {concepts.what} on {frames} frame(s): {new} new object(s)"
    if track:
        head += f", {again} lost object(s) found again"
    head += f", {concepts.count('same') + concepts.count('repeat')} on objects already there."
    return head + (" Every object is tracked through the whole video." if track else
                   " Press Track to follow them through the video.")  # fmt: skip
