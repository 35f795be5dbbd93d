""""Find more like this": OWLv2's image-guided detection (annotation.detect.Detector.detect_like,
find_like, like_example) and its whole-video run (annotation.concepts.like_detections).

OWLv2 is the real transformers architecture built offline from a small config with seeded random
weights (tests/detectors.py), loaded back as a user's folder. Our boxes are checked against
transformers' own ``post_process_image_guided_detection`` for the same model, frame and query:
the reference here runs the model's own ``image_embedder``, ``class_predictor`` and
``box_predictor`` and picks the query box by the OWL-ViT authors' rule, written again here in
numpy; the example's own box is left out on its frame, as detect_like documents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sam2
from annotation import concepts, operations
from annotation.detect import EXAMPLE_IOU, LIKE_NMS_IOU, LIKE_THRESHOLD, Detector, DetectorSpec, box_iou
from annotation.document import UserError
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import MediaLimits, decode
from tests import media_factory as mf
from tests.detectors import save_grounding_dino, save_owlv2
from tests.reference import reference_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FRAME_HW = (60, 90)  # not square: OWLv2 pads it to 90 x 90
EXAMPLE = (10.0, 12.0, 40.0, 35.0)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def owl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def owl(owl_folder: Path) -> Detector:
    return Detector.load(DetectorSpec(str(owl_folder)))


def _reference(folder: Path, target: np.ndarray, example: np.ndarray, box: tuple, threshold: float,
               drop_example: bool) -> tuple[list[tuple], float]:  # fmt: skip
    """(alpha, box) rows from transformers' image-guided post-processing, clipped to the frame (and the
    example left out on its own frame), and the best box's confidence (its alphas' scale)."""
    from transformers import AutoProcessor, Owlv2ForObjectDetection
    from transformers.models.owlv2.modeling_owlv2 import Owlv2ImageGuidedObjectDetectionOutput

    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    model = Owlv2ForObjectDetection.from_pretrained(folder).eval()

    def features(image: np.ndarray):
        feature_map = model.image_embedder(pixel_values=processor(images=image, return_tensors="pt").pixel_values)[0]
        return feature_map.reshape(1, -1, feature_map.shape[-1]), feature_map

    with torch.no_grad():
        feats, fmap = features(example)
        _, class_embeds = model.class_predictor(feats)
        cx, cy, w, h = model.box_predictor(feats, fmap)[0].numpy().T
        side = max(example.shape[:2])
        corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * side
        ious = np.array([box_iou(c, box) for c in corners])
        assert ious.max() > 0, "the example should overlap a predicted box (else the rule takes the generalised IoU)"
        candidates = np.nonzero(ious >= ious.max() * 0.8)[0]
        embeds = class_embeds[0].numpy()
        best = candidates[np.argmin(embeds[candidates] @ embeds.mean(0))]
        feats, fmap = features(target)
        logits, _ = model.class_predictor(feats, query_embeds=class_embeds[:, best : best + 1])
        boxes = model.box_predictor(feats, fmap)
        outputs = Owlv2ImageGuidedObjectDetectionOutput(logits=logits, target_pred_boxes=boxes)
    height, width = target.shape[:2]
    result = processor.post_process_image_guided_detection(
        outputs, threshold=threshold, nms_threshold=LIKE_NMS_IOU, target_sizes=torch.tensor([[height, width]])
    )[0]
    rows = []
    for alpha, corners in zip(result["scores"].tolist(), result["boxes"].tolist(), strict=True):
        x0, x1 = (min(max(v, 0.0), width) for v in (corners[0], corners[2]))
        y0, y1 = (min(max(v, 0.0), height) for v in (corners[1], corners[3]))
        if x1 > x0 and y1 > y0 and not (drop_example and box_iou((x0, y0, x1, y1), box) >= EXAMPLE_IOU):
            rows.append((alpha, (x0, y0, x1, y1)))
    return rows, torch.sigmoid(logits[0, :, 0]).max().item()


def _check_equal(found, expected: list[tuple], best: float) -> None:
    """The same boxes; our scores are the confidences behind transformers' display alphas."""
    ours = sorted((tuple(round(v, 3) for v in d.box), d.score) for d in found)
    theirs = sorted((tuple(round(v, 3) for v in b), alpha) for alpha, b in expected)
    assert [b for b, _ in ours] == [b for b, _ in theirs]
    top = best + 1e-6
    for (_, score), (_, alpha) in zip(ours, theirs, strict=True):
        assert (score - 0.1 * top) / (0.9 * top) == pytest.approx(alpha, abs=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_boxes_like_the_example_on_its_frame_equal_transformers_image_guided_post_processing(
    owl: Detector, owl_folder: Path, frames: list[np.ndarray], threshold: float
) -> None:
    frame = frames[0]
    found = owl.detect_like(frame, EXAMPLE, threshold=threshold, label="cup")
    expected, best = _reference(owl_folder, frame, frame, EXAMPLE, threshold, drop_example=True)
    assert len(expected) >= 2, "the random model should find several boxes"
    _check_equal(found, expected, best)
    height, width = FRAME_HW
    assert all(d.phrase == "cup" and 0 <= d.x0 < d.x1 <= width and 0 <= d.y0 < d.y1 <= height for d in found)
    assert all(box_iou(d.box, EXAMPLE) < EXAMPLE_IOU for d in found)  # the example itself is left out
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    assert all(d.score >= threshold for d in found)


def test_an_example_on_another_frame_is_searched_for_on_this_one(
    owl: Detector, owl_folder: Path, frames: list[np.ndarray]
) -> None:
    found = owl.detect_like(frames[1], EXAMPLE, threshold=0.0, example_image=frames[0])
    expected, best = _reference(owl_folder, frames[1], frames[0], EXAMPLE, 0.0, drop_example=False)
    assert len(expected) >= 2
    _check_equal(found, expected, best)
    # the query is computed once and reused: the same boxes from the stored example
    example = owl.like_example(frames[0], EXAMPLE)
    assert owl.find_like(frames[1], example, 0.0) == found
    assert example.box == EXAMPLE and box_iou(example.chosen, EXAMPLE) > 0
    assert owl.detect_like(frames[0], EXAMPLE) == owl.find_like(frames[0], example, LIKE_THRESHOLD, exclude=EXAMPLE)


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ((-5, 10, 30, 30), "reaches outside the frame, which is 90 x 60"),
        ((10, 10, 95, 30), "reaches outside the frame"),
        ((10, 10, 30, 61), "reaches outside the frame"),
        ((10, float("nan"), 30, 30), "not a number"),
        ((10, 10, float("inf"), 30), "not a number"),
        ((20, 10, 20, 30), "has no area"),
        ((30, 10, 20, 30), "has no area"),
        ((1, 2, 3), "four numbers"),
        ("a box", "four numbers"),
        (None, "four numbers"),
    ],
    ids=["left", "right", "bottom", "nan", "inf", "zero-width", "reversed", "three", "text", "none"],
)
def test_a_bad_example_box_is_refused_in_words(owl: Detector, frames: list[np.ndarray], box, words: str) -> None:
    with pytest.raises(UserError, match=words):
        owl.detect_like(frames[0], box)
    with pytest.raises(UserError, match=words):
        concepts.like_detections(owl, frames[0], box, "cup")


def test_a_bad_threshold_and_another_detector_are_refused_in_words(
    owl: Detector, frames: list[np.ndarray], tmp_path: Path
) -> None:
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(UserError, match="likeness threshold must be a number from 0 to 1"):
            owl.detect_like(frames[0], EXAMPLE, threshold=bad)
    grounding = Detector.load(DetectorSpec(str(save_grounding_dino(tmp_path))))
    for attempt in (lambda: grounding.detect_like(frames[0], EXAMPLE),
                    lambda: concepts.like_detections(grounding, frames[0], EXAMPLE, "cup")):  # fmt: skip
        with pytest.raises(UserError) as error:
            attempt()
        assert "needs an OWLv2 detector" in str(error.value) and "Grounding DINO" in str(error.value)
        assert "--detector google/owlv2-base-patch16-ensemble" in str(error.value)


# ----------------------------------------------------------------------------- the whole video

VARIANT = "sam2.1_hiera_t"
EVERY = 10


def test_a_whole_video_run_finds_more_like_the_example_and_matches_them_by_concepts_rules(
    owl: Detector, tmp_path: Path
) -> None:
    """A real ffmpeg video (a red box, hidden on frames 8-17; a green one from frame 12): the
    example is the red box on frame 0, before any object has a mask. The detections of each detection frame are the
    detector's for that frame from the one example query (the example left out on its own frame);
    each is matched by concepts' rules (a new object gets the example's label and a box prompt;
    one on an object already there changes nothing); one undo takes the run back."""
    video = mf.hide_and_enter(tmp_path / "hide.mp4", fps=10, frames=30)
    predictor = sam2.build_video_predictor(VARIANT, reference_state_dict(VARIANT), image_size=64,
                                           corrections_as_cond=True)  # fmt: skip
    engine = Engine(predictor)
    work = Work(folder=tmp_path / "work")
    operations.load_video(work, engine, video, MediaLimits())
    x, y, w, h = mf.FIRST_BOX
    before = work.doc  # no object has a mask yet: the first box found is a new object, later ones match it
    example_image = np.asarray(work.video.frames[0])
    detect = concepts.like_detections(owl, example_image, (x, y, x + w, y + h), "cup", threshold=0.0,
                                      example_frame=0)  # fmt: skip
    frames = concepts.detection_frames(work.video.count, EVERY)
    run = concepts.run(work, engine, detect, frames, "'more like object 1'", labels=["cup"])
    assert not work.progress.error and not work.progress.cancelled, work.progress.error
    example = owl.like_example(example_image, (x, y, x + w, y + h), "cup")
    for frame in frames:
        image = np.asarray(work.video.frames[frame])
        expected = owl.find_like(image, example, 0.0, exclude=example.box if frame == 0 else None)
        got = [d for f, d, _ in run.matches if f == frame]
        assert got == expected, frame
    kinds = {m.kind for _, _, m in run.matches}
    assert "new" in kinds and kinds & {"same", "repeat"}, kinds  # the reference SAM 2's masks overlap one another
    new = [m.obj_id for _, _, m in run.matches if m.kind == "new"]
    assert len(set(new)) == len(new) and set(new) == set(work.doc.object_ids) - set(before.object_ids)
    for frame, detection, match in run.matches:
        if match.kind == "new":
            assert work.registry[match.obj_id].label == "cup"
            assert ("prompt", frame, match.obj_id, detection.box) in run.steps
        elif match.kind in ("same", "repeat"):
            assert match.iou >= concepts.DEFAULT_MATCH_IOU
    assert all((f, obj) in work.doc.masks for obj in new for f in range(work.video.count))  # tracked both ways
    assert "cup" in work.labels and work.undo[-1].label == "find and track 'more like object 1'"
    operations.undo(work, engine)
    assert work.doc is before and "cup" not in work.labels


# ----------------------------------------------------------------------------- the app, through gradio_client


def test_find_like_through_the_api(reference_checkpoint: Path, owl_folder: Path, owl: Detector,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    """The real app started with the tiny OWLv2 folder (one start): bad requests answered in words,
    then /find_like on frame 0 answers the boxes the detector gives for object 1's box there (around
    the predictor's mask for the box prompt given through /add_box), each matched by concepts' rules
    (the making of new objects and their undo are checked on the core above)."""
    from gradio_client import Client, handle_file

    from tests.app_harness import Replay, start_app
    from tests.test_app_api import plain

    workdir = tmp_path_factory.mktemp("like-app")
    video = mf.hide_and_enter(workdir / "hide.mp4", fps=10, frames=6)
    app = start_app(reference_checkpoint, workdir, "--detector", str(owl_folder), quick_close=True, timeout_s=420)
    try:
        c = Client(app.url, verbose=False, download_files=False)
        assert c.predict(0, 1, api_name="/find_like")["message"] == "Problem: Upload a video first (step 1)."
        assert plain(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        x, y, w, h = mf.FIRST_BOX
        c.predict(frame=0, x0=float(x), y0=float(y), x1=float(x + w), y1=float(y + h), obj_id=1, api_name="/add_box")
        for args, words in (((3, 1), "'object 1' has no mask on frame 3"), ((0, 7), "no object 7"),
                            ((0, 1, 0, 1.5), "likeness threshold must be a number from 0 to 1"),
                            ((0, 1, 7), "Detect every 7 frames: the video has only 6 frames")):  # fmt: skip
            answer = c.predict(*args, api_name="/find_like")
            assert answer["message"].startswith("Problem: ") and words in answer["message"], answer
        answer = c.predict(0, 1, 0, 0.0, api_name="/find_like")
        frames = [np.asarray(f) for f in decode(video, MediaLimits()).frames]
        ref = Replay.start(reference_checkpoint, frames)
        ys, xs = np.nonzero(ref.prompt(0, 1, box=(x, y, x + w, y + h)))
        example = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        expected = owl.detect_like(frames[0], example, 0.0)
        assert expected, "the random model should find something"
        assert [f["box"] for f in answer["found"]] == [[round(v, 2) for v in d.box] for d in expected]
        assert answer["message"].startswith(f"Found {len(expected)} box(es) for 'more like object 1' on 1 frame(s)")
        # the reference weights' masks all span the frame: each box's mask matches object 1, and nothing changes
        assert {(f["kind"], f["object"]) for f in answer["found"]} <= {("same", 1), ("repeat", 1)}
        assert answer["objects"] == [] and f"{len(expected)} on objects already there" in answer["message"]
        assert "Undid: box" in plain(c.predict(0, api_name="/undo")[2])  # the run made no undo step of its own
    finally:
        app.stop()
