"""Masks as prompts in the core, on the real engine: a painted or imported mask is the object's
mask prompt (the predictor's add_new_mask), tracking follows it, undo covers it, session files
keep it; imports add objects and prompts, refuse classes the labels lack unless asked to add
them, and change nothing when they fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sam2
from annotation import formats, operations
from annotation.datasets import Annotations, export_coco
from annotation.document import UserError
from annotation.engine import Engine
from annotation.imports import BoxPrompt, Imported, VideoShape, read_coco_detections, read_coco_masks
from annotation.work import Work
from sam2.video_io import DecodedVideo, VideoInfo
from tests.reference import reference_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W, N = 24, 32, 5


def frames() -> list[np.ndarray]:
    out = []
    for i in range(N):
        frame = np.full((H, W, 3), 30, np.uint8)
        frame[5:15, 3 + 2 * i : 13 + 2 * i] = (210, 90, 40)
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=64, corrections_as_cond=True
    )


def loaded(tmp_path: Path, predictor, name: str = "w") -> Work:
    work = Work(folder=tmp_path / name)
    info = VideoInfo(tmp_path / "walk.mp4", W, H, 5.0, N / 5.0, N, 0, False, "h264")
    decoded = DecodedVideo(frames(), 5.0, info, None, [i / 5 for i in range(N)])
    operations.open_video(work, Engine(predictor), decoded, "walk.mp4")
    return work


def painted() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[6:14, 4:12] = True
    return mask


def direct(predictor, mask: np.ndarray) -> dict[int, np.ndarray]:
    """add_new_mask on a fresh session, then tracking forward: the masks expected."""
    state = predictor.init_state(frames())
    _, _, logits = predictor.add_new_mask(state, 0, 1, mask)
    result = {0: (logits[0, 0] > 0).numpy()}
    for frame, _, out in predictor.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=N - 1):
        result[frame] = (out[0, 0] > 0).numpy()
    return result


def test_a_painted_mask_is_the_prompt_tracking_follows_and_undo_covers(tmp_path, predictor):
    engine = Engine(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 20, 20, "add")  # a click first: the mask replaces it
    shown = operations.set_mask(work, engine, 0, 1, painted(), "brush")
    expected = direct(predictor, painted())
    assert np.array_equal(shown, expected[0]) and work.doc.prompts()[(0, 1)].mask is not None
    thread = operations.start_tracking(work, engine, 0, "forward", None)
    thread.join()
    for frame in range(N):
        assert np.array_equal(work.doc.frame_masks(frame)[1], expected[frame]), frame
    operations.undo(work, engine)  # the tracking
    operations.undo(work, engine)  # the painting: back to the click
    assert work.doc.prompts()[(0, 1)].points == ((20.0, 20.0),)
    operations.redo(work, engine)
    assert np.array_equal(work.doc.frame_masks(0)[1], expected[0])
    with pytest.raises(UserError, match="The mask is empty"):
        operations.set_mask(work, engine, 1, 1, np.zeros((H, W), bool), "brush")
    with pytest.raises(UserError, match="The mask is 3x2, but the video is 32x24"):
        operations.set_mask(work, engine, 1, 1, np.ones((2, 3), bool), "brush")


def test_session_files_keep_mask_prompts(tmp_path, predictor):
    engine = Engine(predictor)
    work = loaded(tmp_path, predictor)
    operations.set_mask(work, engine, 2, 1, painted(), "brush")
    path = formats.export_session_json(operations.session_record(work), tmp_path)
    assert json.loads(path.read_text())["prompts"][0]["mask"]["box"] == [6, 4, 8, 8]
    fresh = loaded(tmp_path, predictor, "fresh")
    operations.load_session(fresh, engine, path)
    prompt = fresh.doc.prompts()[(2, 1)]
    assert prompt.mask is not None and np.array_equal(prompt.mask.unpack(), painted())
    assert np.array_equal(fresh.doc.frame_masks(2)[1], work.doc.frame_masks(2)[1])


def test_importing_masks_and_boxes(tmp_path, predictor):
    engine = Engine(predictor)
    work = loaded(tmp_path, predictor)
    video = VideoShape(N, H, W)
    coco = export_coco(Annotations("other.mp4", frames(), {1: {7: painted()}}, {7: "car"}, ("car",), (H, W), 5.0),
                       tmp_path)  # fmt: skip
    masks = read_coco_masks(coco, video)
    before = work.doc
    with pytest.raises(operations.MissingLabels, match="'car'") as refused:
        operations.apply_import(work, engine, masks)
    assert refused.value.labels == ["car"] and work.doc is before and work.labels == ["object"]
    message = operations.apply_import(work, engine, masks, add_missing_labels=True)
    assert "Imported 1 prompt(s) of 1 object(s) on 1 frame(s)" in message
    assert work.labels == ["object", "car"] and work.registry[7].label == "car"
    state = predictor.init_state(frames())
    _, ids, logits = predictor.add_new_mask(state, 1, 7, painted())
    assert np.array_equal(work.doc.frame_masks(1)[7], (logits[list(ids).index(7), 0] > 0).numpy())

    detections = tmp_path / "det.json"
    detections.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [3, 5, 10, 10], "score": 0.9}]))
    boxes = read_coco_detections(detections, video)
    operations.apply_import(work, engine, boxes, add_missing_labels=True)
    new = work.doc.object_ids[-1]
    assert work.registry[new].label == "class 3" and work.doc.prompts()[(0, new)].box == (3.0, 5.0, 13.0, 15.0)
    operations.undo(work, engine)
    assert new not in work.doc.object_ids


def test_a_failing_import_changes_nothing(tmp_path, predictor):
    """Prompts built by hand, past the readers' checks: a frame the video lacks is refused
    before anything is done; a box the model refuses (not finite) fails part-way, and the
    document and the predictor are as they were."""
    engine = Engine(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 8, 10, "add")
    before, calls = work.doc, len(work.undo)
    with pytest.raises(UserError, match="Frame 99 is outside the video"):
        operations.apply_import(work, engine, Imported("hand.json", boxes=[BoxPrompt(99, (1.0, 1.0, 9.0, 9.0))]))
    bad = Imported("hand.json", boxes=[BoxPrompt(0, (1.0, 1.0, 9.0, 9.0)), BoxPrompt(1, (1.0, float("nan"), 9.0, 9.0))])
    with pytest.raises(ValueError, match="finite"):
        operations.apply_import(work, engine, bad)
    assert work.doc is before and len(work.undo) == calls
    assert set(work.video.handle.obj_ids) == {1}  # the half-made object is gone from the predictor
    thread = operations.start_tracking(work, engine, 0, "forward", 2)
    thread.join()
    assert not work.progress.error and (2, 1) in work.doc.tracked


def test_a_clicks_three_candidates_and_picking_another(tmp_path, predictor):
    """After a first click the model offers three masks and shows its best; picking another
    makes it the object's mask prompt, and the tracked masks equal add_new_mask with that
    candidate called directly. More clicks offer none."""
    engine = Engine(predictor)
    work = loaded(tmp_path, predictor)
    operations.click(work, engine, 0, 8, 10, "add")
    offered = operations.candidates(work, engine, 0)
    assert len(offered) == 3 and all(m.shape == (H, W) for m, _ in offered)
    scores = [s for _, s in offered]
    best = scores.index(max(scores))
    assert np.array_equal(offered[best][0], work.doc.frame_masks(0)[1])  # the one shown is the model's best
    assert operations.pick_candidate(work, engine, 0, best) == "That is the mask shown already."
    other = next(i for i, (m, _) in enumerate(offered) if not np.array_equal(m, offered[best][0]) and m.any())
    operations.pick_candidate(work, engine, 0, other)
    assert np.array_equal(work.doc.frame_masks(0)[1], direct(predictor, offered[other][0])[0])
    operations.start_tracking(work, engine, 0, "forward", None).join()
    expected = direct(predictor, offered[other][0])
    assert all(np.array_equal(work.doc.frame_masks(f)[1], expected[f]) for f in range(N))
    assert operations.candidates(work, engine, 0) == []  # a mask prompt offers no choice
    with pytest.raises(UserError, match="the model offers three after the first click"):
        operations.pick_candidate(work, engine, 0, 0)
    operations.click(work, engine, 2, 9, 9, "add")
    operations.click(work, engine, 2, 20, 20, "remove")
    assert operations.candidates(work, engine, 2) == []  # two clicks: one mask
