"""Finding and tracking in the whole video (annotation/concepts.py), and the command line's --text.

The matching rules are checked on masks drawn here. The whole-video run is checked on a real
ffmpeg video (tests/media_factory.hide_and_enter: a first object hidden on frames 8-17, a second
entering on frame 12) with the detections given as a COCO results file covering it (on frames
0, 10 and 20, a box for each object that shows there):

- with the reference weights, the run's matches, prompts and masks equal an independent replay
  through the predictor (boxes alone for the detections' masks, then the documented order of
  prompts and tracking); one undo takes it back;
- the reference weights are random, so their masks do not follow the coloured boxes; what the
  matching makes of the scene (one object per instance, the second covering the frames before
  its first detection, the hidden one picked up after the occlusion) is checked with a plain
  colour segmenter standing in for SAM 2's masks (ColourEngine), through the same run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sam2
from annotation import concepts, imports, operations
from annotation.document import PromptSpec, UserError
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import MediaLimits, decode
from tests import media_factory as mf
from tests.app_harness import KERNELS, PRECISION, ROOT
from tests.detectors import save_grounding_dino
from tests.reference import reference_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

VARIANT = "sam2.1_hiera_t"
IMAGE_SIZE = 64  # the predictor's input size: the matching does not depend on it, and 64 keeps 30 frames fast
H, W = 120, 160
FRAMES = 30
EVERY = 10  # one second of the 10 fps video: the default step


def box(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y : y + h, x : x + w] = True
    return mask


# ----------------------------------------------------------------------------- the rules


def test_a_detection_matches_the_object_its_mask_overlaps_else_it_is_new() -> None:
    a, b = box(10, 10, 40, 40), box(90, 40, 40, 40)
    visible = {1: a, 2: b}
    near_a = box(12, 10, 40, 40)  # IoU 38/42 = 0.90 with a
    matches = concepts.match_detections([near_a, box(60, 80, 20, 20)], ["person", "person"], visible, {}, 0.5,
                                        iter([7, 8]))  # fmt: skip
    assert [(m.kind, m.obj_id) for m in matches] == [("same", 1), ("new", 7)]
    assert matches[0].iou == pytest.approx(38 / 42)
    # at the threshold it matches; just below it is a new instance
    half = box(10, 10, 40, 20)  # IoU 0.5 with a
    assert concepts.match_detections([half], ["x"], {1: a}, {}, 0.5, iter([9]))[0].kind == "same"
    assert concepts.match_detections([half], ["x"], {1: a}, {}, 0.51, iter([9]))[0] == concepts.Match("new", 9, 0.0)


def test_two_boxes_of_one_object_make_no_second_object() -> None:
    a = box(10, 10, 40, 40)
    matches = concepts.match_detections([a, box(11, 10, 40, 40)], ["p", "p"], {1: a}, {}, 0.5, iter([5]))
    assert [(m.kind, m.obj_id) for m in matches] == [("same", 1), ("repeat", 1)]
    # two boxes of one new instance: one new object
    new = box(100, 60, 30, 30)
    matches = concepts.match_detections([new, box(101, 60, 30, 30)], ["p", "p"], {}, {}, 0.5, iter([5, 6]))
    assert [(m.kind, m.obj_id) for m in matches] == [("new", 5), ("repeat", 5)]


def test_a_lost_object_of_the_same_label_is_found_again_where_it_was_last_seen() -> None:
    last = box(10, 10, 40, 40)
    lost = {3: (last, "person"), 4: (box(100, 60, 40, 40), "person")}
    again = concepts.match_detections([box(12, 12, 40, 40)], ["person"], {}, lost, 0.5, iter([9]))
    assert again[0].kind == "again" and again[0].obj_id == 3
    # another label there, or somewhere else: a new instance
    assert concepts.match_detections([box(12, 12, 40, 40)], ["car"], {}, lost, 0.5, iter([9]))[0].kind == "new"
    assert concepts.match_detections([box(60, 70, 20, 20)], ["person"], {}, lost, 0.5, iter([9]))[0].kind == "new"
    # found again once per frame: a second box there is a repeat of it
    twice = concepts.match_detections([box(12, 12, 40, 40), box(11, 11, 40, 40)], ["person"] * 2, {}, lost, 0.5,
                                      iter([9]))  # fmt: skip
    assert [(m.kind, m.obj_id) for m in twice] == [("again", 3), ("repeat", 3)]


def test_no_ids_left_stops_the_matching() -> None:
    with pytest.raises(StopIteration):
        concepts.match_detections([box(0, 0, 10, 10)], ["x"], {}, {}, 0.5, iter([]))


@pytest.mark.parametrize("every", [0, -1, 2.5, 31, True, "3", float("nan")])
def test_k_is_refused_in_words_unless_a_whole_number_within_the_video(every: object) -> None:
    with pytest.raises(UserError, match="Detect every"):
        concepts.detection_frames(FRAMES, every)


def test_detection_frames_and_the_default_step() -> None:
    assert concepts.detection_frames(FRAMES, 10) == [0, 10, 20]
    assert concepts.detection_frames(FRAMES, 30) == [0] and concepts.detection_frames(FRAMES, 1) == list(range(30))
    assert concepts.default_every(10.0) == 10 and concepts.default_every(29.97) == 30
    assert concepts.default_every(0.4) == 1
    assert concepts.describe_plan([0, 10, 20], FRAMES).startswith("It will detect on 3 of the 30 frames (0, 10, 20)")
    for bad in (0, 0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UserError, match="matching threshold"):
            concepts.check_match_iou(bad)


def test_imports_are_matched_when_their_boxes_cover_several_frames() -> None:
    one = imports.Imported("a.json", boxes=[imports.BoxPrompt(0, (0, 0, 5, 5)), imports.BoxPrompt(0, (5, 5, 9, 9))])
    two = imports.Imported("b.json", boxes=[imports.BoxPrompt(0, (0, 0, 5, 5)), imports.BoxPrompt(3, (0, 0, 5, 5))])
    assert not concepts.uses_matching(one) and concepts.uses_matching(two)
    frames, detect = concepts.file_detections(two)
    assert frames == [0, 3] and detect(3, np.zeros((1, 1, 3), np.uint8))[0].box == (0, 0, 5, 5)


# ----------------------------------------------------------------------------- the video


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("concepts")


@pytest.fixture(scope="module")
def video(folder: Path) -> Path:
    return mf.hide_and_enter(folder / "hide.mp4", fps=10, frames=FRAMES)


def _shown(first_or_second: int, frame: int) -> bool:
    if first_or_second == 1:
        return any(a <= frame <= b for a, b in mf.FIRST_SHOWN)
    return frame >= mf.SECOND_FROM


@pytest.fixture(scope="module")
def detections(folder: Path) -> Path:
    """A detector's COCO results every EVERY frames, each object's box where it shows (the
    second, a car, first on frame 20; the first, a person, not on frame 10 where it is hidden)."""
    results = []
    for frame in range(0, FRAMES, EVERY):
        for which, bbox, category in ((1, mf.FIRST_BOX, 1), (2, mf.SECOND_BOX, 2)):
            if _shown(which, frame):
                results.append({"image_id": frame + 1, "category_id": category, "bbox": list(bbox), "score": 0.9})
    path = folder / "hide_detections.json"
    path.write_text(json.dumps({"categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
                                "images": [{"id": f + 1, "file_name": f"hide_{f:05d}.jpg", "height": H, "width": W}
                                           for f in range(FRAMES)],
                                "annotations": results}))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(VARIANT, reference_state_dict(VARIANT), image_size=IMAGE_SIZE,
                                      corrections_as_cond=True)  # fmt: skip


def loaded(folder: Path, engine: Engine, video: Path, name: str) -> Work:
    work = Work(folder=folder / name)
    operations.load_video(work, engine, video, MediaLimits())
    return work


def read(work: Work, detections: Path) -> imports.Imported:
    return imports.read_any(detections, operations.video_shape(operations.require_video(work)))


class ColourEngine(Engine):
    """SAM 2's masks replaced by a plain colour segmenter, for what the matching makes of a scene:
    a box's mask is its pixels unlike the grey background; tracking finds the object's colour
    near its mask on the frame before (in the direction tracked), so an object once lost stays
    lost until it is prompted again, as SAM 2 does after a long occlusion, and a prompted frame
    keeps its prompt's mask (a conditioning frame). The predictor's session holds the frames."""

    def __init__(self, predictor) -> None:
        super().__init__(predictor)
        self.prompts: dict[tuple[int, int], np.ndarray] = {}
        self.outputs: dict[tuple[int, int], np.ndarray] = {}  # each object's newest mask on a frame
        self.colours: dict[int, np.ndarray] = {}
        self.frames = None

    def start(self, frames, image_size=None):
        self.frames = frames
        return super().start(frames, image_size)

    def prompt(self, handle, frame: int, obj_id: int, prompt: PromptSpec) -> np.ndarray:
        image = np.asarray(self.frames[frame]).astype(int)
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        mask = np.zeros(image.shape[:2], bool)
        mask[y0:y1, x0:x1] = np.abs(image[y0:y1, x0:x1] - 128).max(-1) > 60
        self.colours.setdefault(obj_id, np.median(image[mask], axis=0))
        self.prompts[(frame, obj_id)] = self.outputs[(frame, obj_id)] = mask
        return mask

    def remove_object(self, handle, obj_id: int) -> None:
        for store in (self.prompts, self.outputs):
            for key in [k for k in store if k[1] == obj_id]:
                del store[key]
        self.colours.pop(obj_id, None)

    def object_ids(self, handle) -> list[int]:
        return sorted({obj for _, obj in self.prompts})

    def track(self, handle, start: int, count: int | None, reverse: bool):
        step = -1 if reverse else 1
        frames = range(start, max(start - count, 0) - 1, -1) if reverse else range(start, start + count + 1)
        for frame in frames:
            image = np.asarray(self.frames[frame]).astype(int)
            masks = {}
            for obj in self.object_ids(handle):
                mask = self.prompts.get((frame, obj))
                if mask is None:
                    near = np.zeros(image.shape[:2], bool)
                    before = self.outputs.get((frame - step, obj))
                    if before is not None and before.any():
                        ys, xs = np.nonzero(before)
                        near[max(0, ys.min() - 8) : ys.max() + 9, max(0, xs.min() - 8) : xs.max() + 9] = True
                    mask = near & (np.abs(image - self.colours[obj]).max(-1) < 40)
                self.outputs[(frame, obj)] = masks[obj] = mask
            yield frame, masks


def test_one_object_per_instance_the_newcomer_covers_earlier_frames_and_the_hidden_one_is_found_again(
    folder: Path, video: Path, detections: Path, predictor
) -> None:
    engine = ColourEngine(predictor)
    work = loaded(folder, engine, video, "colour")
    given = read(work, detections)
    assert concepts.uses_matching(given)
    run = concepts.start_import(work, engine, given, add_missing_labels=True)
    run.thread.join()
    assert not work.progress.error and not work.progress.cancelled, work.progress.error
    kinds = [(frame, m.kind, m.obj_id) for frame, _, m in run.matches]
    # frame 0: the person is new; frame 20: the person found again (lost since frame 8), the car new
    assert kinds == [(0, "new", 2), (20, "again", 2), (20, "new", 3)], kinds
    assert work.doc.object_ids == (1, 2, 3)  # "object 1", the empty object of a new video, stays unprompted
    assert [work.registry[o].label for o in (2, 3)] == ["person", "car"]
    prompts = work.doc.prompts()
    assert sorted(prompts) == [(0, 2), (20, 2), (20, 3)]
    doc = work.doc
    for frame in range(FRAMES):
        person, car = doc.area(frame, 2) or 0, doc.area(frame, 3) or 0
        # hidden on 8-17 and lost from then until its prompt on 20 (found again), tracked on from there
        assert (person > 0) == (frame <= 7 or frame >= 20), (frame, person)
        assert (car > 0) == (frame >= mf.SECOND_FROM), (frame, car)  # frames 12-19 come from tracking back
    assert all((f, 3) in doc.tracked for f in range(mf.SECOND_FROM, 20))
    # the file's frames are those with boxes: frame 10 has none (the person is hidden, the car not there yet)
    assert run.frames == [0, 20]
    assert run.steps == [("prompt", 0, 2, (20.0, 30.0, 60.0, 70.0)), ("track", 1, 19, False),
                         ("prompt", 20, 2, (20.0, 30.0, 60.0, 70.0)),
                         ("prompt", 20, 3, (100.0, 50.0, 140.0, 100.0)), ("track", 21, 8, False),
                         ("track", 20, 20, True)]  # fmt: skip
    assert work.progress.done == work.progress.total == 2 + 29 + 21
    assert "1 lost object(s) found again" in run.message and "2 new object(s)" in run.message


def test_the_pages_import_matches_boxes_on_several_frames_unless_told_not_to(
    folder: Path, video: Path, detections: Path, predictor
) -> None:
    engine = ColourEngine(predictor)
    work = loaded(folder, engine, video, "page-import")
    importing = concepts.start_importing(work, engine, "hide_detections.json", lambda: read(work, detections))
    importing.thread.join()
    assert importing.missing is not None and importing.missing.labels == ["person", "car"]
    assert work.doc.object_ids == (1,) and not work.lock.locked()
    importing = concepts.start_importing(work, engine, "hide_detections.json", lambda: read(work, detections), True)
    importing.thread.join()
    assert not work.progress.error and work.doc.object_ids == (1, 2, 3)  # the person found again is one object
    assert importing.message.startswith("Found 3 box(es) for 'hide_detections.json' on 2 frame(s): 2 new object(s)")
    assert work.progress.summary().startswith("Finding and tracking 'hide_detections.json': 52/52 steps")
    operations.undo(work, engine)
    assert work.doc.object_ids == (1,)
    old = concepts.start_importing(work, engine, "hide_detections.json", lambda: read(work, detections), True,
                                   matching=False)  # fmt: skip
    old.thread.join()
    assert old.message.startswith("Imported 3 prompt(s) of 3 object(s) on 2 frame(s)")  # each box a new object
    assert len(work.doc.object_ids) == 4 and not work.doc.tracked


# ----------------------------------------------------------------------------- the real predictor


def replayed(frames: list[np.ndarray], given: imports.Imported, threshold: float) -> tuple[list, dict]:
    """The run done by hand on a fresh session: each detection's mask from its box alone (a
    fresh object, then removed), the rules, the prompts, tracking forward between the detection
    frames and to the end, then back from the last new object's first frame."""
    predictor = sam2.build_video_predictor(VARIANT, reference_state_dict(VARIANT), image_size=IMAGE_SIZE,
                                           corrections_as_cond=True)  # fmt: skip
    state = predictor.init_state(frames)
    masks: dict[tuple[int, int], np.ndarray] = {}
    labels: dict[int, str] = {}
    made: list[tuple[int, str, int]] = []
    firsts: dict[int, int] = {}

    def keep(frame: int, ids, logits) -> None:
        for i, obj in enumerate(ids):
            if obj != concepts.PROBE_ID:
                masks[(frame, int(obj))] = (logits[i, 0] > 0).numpy()

    def track(start: int, count: int, reverse: bool) -> None:
        for frame, ids, logits in predictor.propagate_in_video(state, start, count, reverse):
            keep(frame, ids, logits)

    by_frame: dict[int, list[imports.BoxPrompt]] = {}
    for b in given.boxes:
        by_frame.setdefault(b.frame, []).append(b)
    order = sorted(by_frame)
    for index, frame in enumerate(order):
        boxes = sorted(by_frame[frame], key=lambda b: -b.score)
        probes = []
        for b in boxes:
            _, ids, logits = predictor.add_new_points_or_box(state, frame, concepts.PROBE_ID, box=list(b.box))
            probes.append((logits[list(ids).index(concepts.PROBE_ID), 0] > 0).numpy())
            predictor.remove_object(state, concepts.PROBE_ID, need_output=False)
        visible = {o: m for (f, o), m in masks.items() if f == frame and m.any()}
        lost = {}
        for o in labels:
            seen = [f for (f, obj), m in masks.items() if obj == o and f < frame and m.any()]
            if o not in visible and seen:
                lost[o] = (masks[(max(seen), o)], labels[o])
        free = iter(i for i in range(2, 256) if i not in labels)
        for b, match in zip(boxes, concepts.match_detections(probes, [b.label for b in boxes], visible, lost,
                                                             threshold, free), strict=True):  # fmt: skip
            made.append((frame, match.kind, match.obj_id))
            if match.kind in ("new", "again"):
                if match.kind == "new":
                    labels[match.obj_id], firsts[match.obj_id] = b.label, frame
                _, ids, logits = predictor.add_new_points_or_box(state, frame, match.obj_id, box=list(b.box))
                masks[(frame, match.obj_id)] = (logits[list(ids).index(match.obj_id), 0] > 0).numpy()
        end = order[index + 1] if index + 1 < len(order) else len(frames) - 1
        if end > frame:
            track(frame + 1, end - frame - 1, False)
    back = max(firsts.values(), default=0)
    if back:  # only the new objects' masks before their first detection are taken
        for frame, ids, logits in predictor.propagate_in_video(state, back, back, True):
            for i, obj in enumerate(ids):
                if frame < firsts.get(int(obj), 0):
                    masks[(frame, int(obj))] = (logits[i, 0] > 0).numpy()
    return made, masks


def test_the_runs_masks_are_the_predictors_and_one_undo_takes_it_back(
    folder: Path, video: Path, detections: Path, predictor
) -> None:
    engine = Engine(predictor)
    work = loaded(folder, engine, video, "real")
    before, labels_before = work.doc, list(work.labels)
    given = read(work, detections)
    run = concepts.start_import(work, engine, given, threshold=0.5, add_missing_labels=True)
    run.thread.join()
    assert not work.progress.error, work.progress.error
    frames = decode(video, MediaLimits()).frames
    made, expected = replayed(frames, given, 0.5)
    assert [(f, m.kind, m.obj_id) for f, _, m in run.matches] == made
    got = {key: packed.unpack() for key, packed in work.doc.masks.items()}
    assert set(got) == set(expected)
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key
    new = [m.obj_id for _, _, m in run.matches if m.kind == "new"]
    assert new and all((f, obj) in got for obj in new for f in range(FRAMES))  # every frame, both ways
    assert set(work.labels) >= {"person", "car"}
    assert work.undo[-1].label == "find and track 'hide_detections.json'"
    operations.undo(work, engine)
    assert work.doc is before and work.labels == labels_before and not set(new) & set(work.registry)
    operations.redo(work, engine)
    assert set(new) <= set(work.doc.object_ids) and {"person", "car"} <= set(work.labels)


def test_cancel_keeps_the_frames_done_and_undo_takes_them_back(folder: Path, video: Path, predictor) -> None:
    engine = Engine(predictor)
    work = loaded(folder, engine, video, "cancel")
    before = work.doc
    seen: list[int] = []

    def detect(frame: int, image: np.ndarray):
        seen.append(frame)
        if frame == 10:  # while the run is on its second detection frame: Cancel
            work.cancel.set()
        return [concepts.Detection(*map(float, (20, 30, 60, 70)), phrase="person", score=0.9)]

    run = concepts.start_run(work, engine, detect, [0, 10, 20], "'person'", labels=["person"])
    assert work.progress.running and work.progress.total == 3 + 29
    run.thread.join()
    progress = work.progress
    assert progress.cancelled and not progress.running and not progress.error
    assert seen == [0, 10] and progress.done == 1 + 10  # frame 0 detected, frames 1-10 tracked
    assert "Cancelled: the objects found and the frames tracked so far are kept." in progress.summary()
    assert {f for f, o in work.doc.masks if o == 2} == set(range(11))
    assert work.registry[2].label == "person" and "person" in work.labels
    operations.undo(work, engine)
    assert work.doc is before and "person" not in work.labels
    with pytest.raises(UserError, match="Nothing to undo"):
        operations.undo(work, engine)


def test_bad_requests_are_refused_before_anything_runs(folder: Path, video: Path, predictor) -> None:
    engine = Engine(predictor)
    work = loaded(folder, engine, video, "bad")
    before = work.doc
    nothing = lambda frame, image: []  # noqa: E731
    for frames, threshold, words in (([], 0.5, "no frames"), ([5, 2], 0.5, "in order"), ([0, 30], 0.5, "outside"),
                                     ([0], 0.0, "above 0"), ([0], 1.5, "from 0 to 1")):  # fmt: skip
        with pytest.raises(UserError, match=words):
            concepts.start_run(work, engine, nothing, frames, "'x'", threshold)
    with pytest.raises(operations.MissingLabels):
        concepts.start_run(work, engine, nothing, [0], "'x.json'", labels=["zebra"], add_missing_labels=False)
    assert work.doc is before and not work.progress.running and not work.lock.locked()
    run = concepts.run(work, engine, nothing, [0, 10], "'cat'")
    assert "Found nothing for 'cat' on the 2 frame(s) searched" in run.message and work.doc is before


# ----------------------------------------------------------------------------- the command line


def test_text_on_one_frame_prompts_each_new_box_as_the_predictor_would(folder: Path, video: Path, predictor,
                                                                       detector: Path) -> None:  # fmt: skip
    """The real detector (tiny, random weights) on frame 20: each box matched to no object is
    a new object whose mask is the predictor's for that box alone; one undo step."""
    from annotation.detect import Detector, DetectorSpec

    engine = Engine(predictor)
    work = loaded(folder, engine, video, "text-one-frame")
    found = Detector.load(DetectorSpec(str(detector)), progress=False)
    run = concepts.run(work, engine, concepts.text_detections(found, "person, red car"), [20], "'person, red car'",
                       track=False, labels=["person", "red car"])  # fmt: skip
    assert not work.progress.error, work.progress.error
    new = [(d, m.obj_id) for _, d, m in run.matches if m.kind == "new"]
    assert new and len(run.matches) == len(found.detect(np.asarray(work.video.frames[20]), ["person", "red car"]))
    assert [s[0] for s in run.steps] == ["prompt"] * len(new)  # no tracking on one frame
    state = predictor.init_state(decode(video, MediaLimits()).frames)
    for detection, obj in new:
        _, ids, logits = predictor.add_new_points_or_box(state, 20, obj, box=list(detection.box))
        assert np.array_equal(work.doc.masks[(20, obj)].unpack(), (logits[list(ids).index(obj), 0] > 0).numpy())
        assert work.registry[obj].label == detection.phrase
    assert run.message.endswith("Press Track to follow them through the video.")
    assert work.undo[-1].label == "find 'person, red car'" and len(work.undo) == 1



def cli(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "annotation", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def detector(folder: Path) -> Path:
    path = folder / "grounding-dino"
    path.mkdir()
    return save_grounding_dino(path)


@pytest.fixture(scope="module")
def short_video(folder: Path) -> Path:
    return mf.testsrc(folder / "walk.mp4", size=(160, 120), fps=6, seconds=1.0)  # 6 frames


def test_the_cli_finds_by_text_every_k_frames_and_exports(reference_checkpoint, folder, short_video, detector) -> None:
    out = folder / "text-out"
    run = cli(short_video, "--text", "person, red car", "--every", 3, "--detector", detector, "--box-threshold", 0.2,
              "--text-threshold", 0.2, "--export", "coco,session", "--out", out, "--checkpoint", reference_checkpoint,
              "--image-size", 512, "--precision", PRECISION, "--kernels", KERNELS)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "It will detect on 2 of the 6 frames (0, 3)" in run.stderr
    # the frames tracked: all but those where every object has its prompt (frame 0 at least)
    assert re.search(r"walk.mp4: done, [1-9][0-9]* object\(s\), [1-5] of 6 frames tracked", run.stdout), run.stdout
    session = json.loads((out / "walk_session.json").read_text())
    assert {o["label"] for o in session["objects"]} <= {"person", "red car"} and session["objects"]
    assert {p["frame"] for p in session["prompts"]} <= {0, 3} and all(p["box"] for p in session["prompts"])
    coco = json.loads((out / "walk_coco.json").read_text())
    assert {a["image_id"] for a in coco["annotations"]} == set(range(1, 7))
    assert {c["name"] for c in coco["categories"]} >= {o["label"] for o in session["objects"]}


@pytest.mark.parametrize(
    "args, words",
    [
        (["--text", " , ,"], "Type what to find"),
        (["--text", ",".join(f"thing {i}" for i in range(500))], "That is 500 phrases"),
        (["--text", "person", "--box-threshold", "1.5"], "--box-threshold: '1.5' is not a number from 0 to 1"),
        (["--text", "person", "--text-threshold", "-0.1"], "--text-threshold: '-0.1' is not a number from 0 to 1"),
        (["--text", "person", "--every", "0"], "--every: '0' is not a whole number of at least 1"),
        (["--text", "person", "--match-iou", "0"], "must be above 0"),
        (["--every", "3", "--prompts", "{video}"], "--every goes with --text"),
        (["--text", "person", "--detector", "{empty}"], "holds no detector: it has no config.json"),
    ],
)
def test_bad_text_requests_are_refused_with_status_2_and_nothing_written(folder, short_video, args, words) -> None:
    empty = folder / "not-a-detector"
    empty.mkdir(exist_ok=True)
    out = folder / "refused"
    values = dict(video=short_video, empty=empty)
    run = cli(short_video, *(a.format(**values) for a in args), "--out", out, "--checkpoint-dir", empty, timeout=120)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert words in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not out.exists() or not any(out.iterdir())


def test_k_larger_than_the_video_is_refused_with_status_2(reference_checkpoint, folder, short_video, detector) -> None:
    out = folder / "too-far"
    run = cli(short_video, "--text", "person", "--every", 7, "--detector", detector, "--out", out, "--checkpoint",
              reference_checkpoint, "--image-size", 512, "--precision", PRECISION, "--kernels", KERNELS)  # fmt: skip
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "--every 7: Detect every 7 frames: the video has only 6 frames" in run.stdout, run.stdout
    assert not any(out.iterdir())
