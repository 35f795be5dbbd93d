"""Finding objects on a frame in the core (annotation/finding.py) on the real engine with the
reference weights: the found masks are the automatic mask generator's, kept masks become new
objects whose mask prompts tracking follows exactly as add_new_mask called directly does, in
one undo step; a cancelled or failed run changes nothing; bad requests get plain messages.
Also the pictures of a click's three candidates. Small frames and grids keep it fast."""

from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import sam2
from annotation import finding, operations
from annotation.document import ObjectInfo, PackedMask, UserError
from annotation.engine import FIND_POINTS_PER_BATCH, Engine, FindSettings, ModelSpec
from annotation.work import Work
from tests.reference import reference_state_dict
from tests.test_mask_prompts import H, N, W, frames, loaded

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# With the reference weights every mask spans the frame (their boxes are all the frame's), so
# Meta's box NMS would keep one: NMS off and filters low enough that a few masks pass.
SETTINGS = FindSettings(iou_thresh=0.55, stability_thresh=0.2, nms_thresh=1.0)
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, corrections_as_cond=True
    )


def engine_with(predictor, settings: FindSettings = SETTINGS) -> Engine:
    return Engine(predictor, ModelSpec("sam2.1_hiera_t", Path("unused.pt"), image_size=IMAGE_SIZE, encode_ahead=0,
                                       find=settings))  # fmt: skip


def generated(frame: np.ndarray, points_per_side: int, settings: FindSettings = SETTINGS) -> list[np.ndarray]:
    """The generator built by sam2's own builder and run directly: the masks expected."""
    generator = sam2.build_automatic_mask_generator(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE,
        points_per_side=points_per_side, points_per_batch=FIND_POINTS_PER_BATCH, pred_iou_thresh=settings.iou_thresh,
        stability_score_thresh=settings.stability_thresh, box_nms_thresh=settings.nms_thresh,
    )  # fmt: skip
    return [r["segmentation"] for r in generator.generate(frame)]


def tracked_directly(predictor, prompts: dict[int, np.ndarray], frame: int) -> dict[int, dict[int, np.ndarray]]:
    """add_new_mask for each object on ``frame`` of a fresh session, then tracking forward."""
    state = predictor.init_state(frames())
    result: dict[int, dict[int, np.ndarray]] = {frame: {}}
    for obj, mask in prompts.items():
        _, ids, logits = predictor.add_new_mask(state, frame, obj, mask)
        result[frame][obj] = (logits[list(ids).index(obj), 0] > 0).numpy()
    for f, ids, out in predictor.propagate_in_video(state, start_frame_idx=frame):
        result[f] = {int(obj): (out[i, 0] > 0).numpy() for i, obj in enumerate(ids)}
    return result


def test_found_masks_are_the_generators_and_kept_ones_track_as_add_new_mask(tmp_path, predictor):
    engine = engine_with(predictor)
    work = loaded(tmp_path, predictor)
    message = finding.find_objects(work, engine, 1, 3)
    found = finding.current(work)
    expected = generated(frames()[1], 3)
    assert f"Found {len(expected)} object(s) on frame 1" in message and len(expected) >= 3
    assert [c.mask.unpack().tolist() for c in found.candidates] == [m.tolist() for m in expected]
    assert work.progress.done == work.progress.total == 9 and not work.progress.running
    assert work.doc.object_ids == (1,) and not work.undo  # finding changes no annotation

    steps = len(work.undo)
    message = finding.keep(work, engine, [2, 0])
    assert "Kept 2 found object(s) on frame 1 as 'object 2', 'object 3'" in message
    assert work.doc.object_ids == (1, 2, 3) and len(work.undo) == steps + 1 and work.active == 3
    assert np.array_equal(work.doc.prompts()[(1, 2)].mask.unpack(), expected[2])
    assert np.array_equal(work.doc.prompts()[(1, 3)].mask.unpack(), expected[0])
    assert len(finding.current(work).candidates) == len(expected) - 2  # the kept ones left the list
    operations.start_tracking(work, engine, 1, "forward", None).join()
    direct = tracked_directly(predictor, {2: expected[2], 3: expected[0]}, 1)
    for f in range(1, N):
        for obj in (2, 3):
            assert np.array_equal(work.doc.frame_masks(f)[obj], direct[f][obj]), (f, obj)

    operations.undo(work, engine)  # the tracking
    operations.undo(work, engine)  # the keep: both objects at once
    assert work.doc.object_ids == (1,) and not work.doc.prompts()
    operations.redo(work, engine)
    assert work.doc.object_ids == (1, 2, 3) and np.array_equal(work.doc.frame_masks(1)[3], direct[1][3])

    rest = len(finding.current(work).candidates)
    assert f"Kept {rest} found object(s)" in finding.keep(work, engine)  # keep all: the rest
    assert finding.current(work) is None and len(work.doc.object_ids) == 3 + rest


def test_cancel_or_failure_leaves_the_work_as_it_was(tmp_path, predictor, monkeypatch):
    engine = engine_with(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 8, 10, "add")
    finding.find_objects(work, engine, 0, 2)
    before_found, before_doc, steps = work.found, work.doc, len(work.undo)

    run = finding.start_finding(work, engine, 2, 8)  # 64 points, two batches
    work.cancel.set()
    run.thread.join()
    assert work.progress.cancelled and work.progress.done < work.progress.total
    assert "Cancelled: your objects, clicks and masks stay as they were." in work.progress.summary()
    assert work.found is before_found and work.doc is before_doc and len(work.undo) == steps
    assert not work.lock.locked()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "find_objects", broken)
    with pytest.raises(UserError, match=r"Could not find objects \(RuntimeError: out of memory\)"):
        finding.find_objects(work, engine, 0, 4)
    assert work.found is before_found and work.doc is before_doc and not work.lock.locked()
    monkeypatch.undo()

    operations.click(work, engine, 3, 8, 10, "add")  # the work goes on
    assert len(work.undo) == steps + 1


def test_while_a_find_runs_other_long_steps_are_refused_by_name(tmp_path, predictor):
    engine = engine_with(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 8, 10, "add")
    with engine.lock:  # the find waits for the model, so it is surely still running below
        run = finding.start_finding(work, engine, 2, 4)
        running = "Finding objects on frame 2 is still running. Wait for it to finish, or press Cancel."
        with pytest.raises(UserError, match=running):
            finding.start_finding(work, engine, 2, 4)
        with pytest.raises(UserError, match=running):
            operations.start_tracking(work, engine, 0, "forward", None)
    run.thread.join()
    assert run.message.startswith("Found") and not work.progress.running and not work.lock.locked()
    operations.start_tracking(work, engine, 0, "forward", None).join()  # and then it goes on
    assert work.progress.done == N - 1  # the frames after frame 0


def test_a_failing_keep_changes_nothing(tmp_path, predictor, monkeypatch):
    engine = engine_with(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 8, 10, "add")
    finding.find_objects(work, engine, 0, 3)
    before, count = work.doc, len(finding.current(work).candidates)
    real = engine.prompt
    calls = []

    def second_fails(handle, frame, obj, prompt):
        calls.append(obj)
        if len(calls) == 2:
            raise RuntimeError("model failed")
        return real(handle, frame, obj, prompt)

    monkeypatch.setattr(engine, "prompt", second_fails)
    with pytest.raises(RuntimeError):
        finding.keep(work, engine)
    monkeypatch.undo()
    assert work.doc is before and set(work.video.handle.obj_ids) == {1} and 2 not in work.registry
    assert len(finding.current(work).candidates) == count


def test_nothing_found_is_said(tmp_path, predictor):
    engine = engine_with(predictor, FindSettings())  # Meta's filters: the reference weights pass none
    work = loaded(tmp_path, predictor)
    message = finding.find_objects(work, engine, 0, 2)
    assert message.startswith("Found no objects on frame 0 with 2 points per side") and work.found is None
    with pytest.raises(UserError, match="Nothing found to keep yet: press 'Find objects on this frame' first"):
        finding.keep(work, engine)


def test_bad_requests_get_plain_messages(tmp_path, predictor):
    engine = engine_with(predictor)
    empty = Work(folder=tmp_path / "empty")
    for call in (lambda: finding.start_finding(empty, engine, 0, 8), lambda: finding.keep(empty, engine),
                 lambda: finding.toggle(empty, 1, 1), lambda: finding.clear(empty)):  # fmt: skip
        with pytest.raises(UserError, match="Upload a video first"):
            call()
    work = loaded(tmp_path, predictor)
    with pytest.raises(UserError, match=r"Frame 9 is outside the video \(0 to 4\)"):
        finding.start_finding(work, engine, 9, 8)
    for density in (1, 65, 2.5, "many", None, float("nan")):
        with pytest.raises(UserError, match="Points per side must be a whole number from 2 to 64"):
            finding.start_finding(work, engine, 0, density)
    assert not work.lock.locked() and not work.progress.running
    with pytest.raises(UserError, match="There are no found objects to clear"):
        finding.clear(work)

    finding.find_objects(work, engine, 0, 3)
    count = len(finding.current(work).candidates)
    with pytest.raises(UserError, match="Choose the found objects to keep first"):
        finding.keep(work, engine, [])
    with pytest.raises(UserError, match=f"There is no found object {count}: choose from 0 to {count - 1}"):
        finding.keep(work, engine, [0, count])
    with pytest.raises(UserError, match="chosen by their number"):
        finding.keep(work, engine, ["1"])
    with pytest.raises(UserError, match=r"The click \(40, 5\) is outside the 32x24 frame"):
        finding.toggle(work, 40, 5)
    work.registry.update({i: ObjectInfo(i, f"object {i}") for i in range(2, 255)})  # one id left
    with pytest.raises(UserError, match="Keeping 2 objects would make more than 255.*keep 1 or fewer"):
        finding.keep(work, engine, [0, 1])
    assert work.doc.object_ids == (1,) and len(finding.current(work).candidates) == count

    # A new video drops what was found on the last one.
    operations.open_video(work, engine, replace(work.video.decoded, frames=frames()), "again.mp4")
    assert finding.current(work) is None


def test_clicking_the_picture_chooses_the_smallest_mask_there(tmp_path, predictor):
    work = loaded(tmp_path, predictor)
    outer, inner = np.zeros((H, W), bool), np.zeros((H, W), bool)
    outer[2:20, 2:30] = True
    inner[5:10, 5:10] = True
    candidates = [finding.Candidate(PackedMask.pack(m), 0.9, 0.95) for m in (outer, inner)]
    work.found = finding.Found(weakref.ref(work.video), 0, 4, candidates)
    plain = finding.picture(work, work.found).copy()
    assert plain.shape == (H, W, 3)
    assert "Chose found object 2; 1 of 2 chosen" in finding.toggle(work, 7, 7)
    assert "Chose found object 1; 2 of 2 chosen" in finding.toggle(work, 25, 15)
    assert "Dropped found object 2; 1 of 2 chosen" in finding.toggle(work, 7, 7)
    chosen = finding.picture(work, work.found)
    assert (chosen != plain).any()  # the chosen mask is filled
    with pytest.raises(UserError, match="No found object there"):
        finding.toggle(work, 0, 0)
    listed = finding.describe(work.found)
    assert listed[0] == {"index": 0, "score": 0.9, "stability": 0.95, "area": int(outer.sum()), "box": [2, 2, 30, 20],
                         "chosen": True}  # fmt: skip
    assert "Cleared the found objects" in finding.clear(work) and finding.current(work) is None


def test_a_clicks_candidates_as_pictures(tmp_path, predictor):
    engine = engine_with(predictor)
    work = loaded(tmp_path, predictor)
    assert finding.candidate_pictures(work, engine, 0) == []  # no click yet
    operations.click(work, engine, 0, 8, 10, "add")
    pictures = finding.candidate_pictures(work, engine, 0)
    offered = operations.candidates(work, engine, 0)
    assert len(pictures) == 3 and [s for _, s, _ in pictures] == [s for _, s in offered]
    assert all(p.shape[1] == finding.THUMB_WIDTH and p.dtype == np.uint8 for p, _, _ in pictures)
    best = max(range(3), key=lambda i: offered[i][1])
    assert [shown for _, _, shown in pictures][best]
    operations.click(work, engine, 0, 20, 20, "remove")
    assert finding.candidate_pictures(work, engine, 0) == []  # two clicks: one mask


def test_the_generator_model_shares_the_weights(predictor):
    engine = engine_with(predictor)
    model = engine._generator_model(IMAGE_SIZE)
    assert engine._generator_model(IMAGE_SIZE) is model  # made once per size
    weights = dict(predictor.model.named_parameters())
    assert all(p.data_ptr() == weights[name].data_ptr() for name, p in model.named_parameters())
    assert not model.config.dynamic_multimask_via_stability and model.config.fill_hole_area == 0
