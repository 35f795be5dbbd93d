"""``annotation.auto_annotate`` on real parts: a tiny random-weight Grounding DINO built offline
(tests/test_detect.py's builder), the reference SAM 2 checkpoint, a folder of images of two
sizes, and supervision's YOLO reader (an independent one) on what it writes.

The labels are checked against the parts called directly: the detector's boxes, filtered per
class by IoU and cut to max_det, each given to the SAM 2 image predictor as a box prompt; each
mask's outline (the page's YOLO export's ``instance_polygon``) is the label line, and the mask
supervision decodes from it is that outline filled.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from PIL import Image

import annotation
from annotation.auto import AutoAnnotateError, AutoAnnotation, auto_annotate, box_iou, suppress
from annotation.datasets import instance_polygon, yolo_line
from annotation.detect import Detection, Detector, DetectorSpec, DetectorUnavailable
from tests import media_factory
from tests.detectors import save_grounding_dino

PHRASES = ["person", "red car", "dog"]  # words of the vocabulary save_grounding_dino writes
SIZES = {"img1.png": (48, 64), "img2.png": (60, 90), "img10.png": (48, 64), "img3.jpg": (60, 90)}  # (H, W)
ORDER = ["img1.png", "img2.png", "img3.jpg", "img10.png"]  # by name, numbers by value
SETTINGS = dict(conf=0.3, iou=0.45, imgsz=512, max_det=4, text_threshold=0.2, precision="float32", kernels="fused")


@pytest.fixture(scope="module")
def grounding_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_grounding_dino(tmp_path_factory.mktemp("grounding_dino"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for name, size in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image: left alone")
    return folder


@pytest.fixture(scope="module")
def run(images: Path, grounding_folder: Path, reference_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    calls: list[tuple[int, int, str]] = []
    out = tmp_path_factory.mktemp("auto") / "labels"
    result = auto_annotate(images, det_model=str(grounding_folder), sam_model=str(reference_checkpoint), device="cpu",
                           classes=PHRASES, output_dir=out, progress=lambda *call: calls.append(call), **SETTINGS)
    return result, calls


def _read_image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def expected(run, images, grounding_folder, reference_checkpoint) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """Per image, from the parts called directly: the SAM 2 image predictor's mask of each box
    kept, and the label lines their outlines make."""
    import sam2

    result, _ = run
    predictor = sam2.build_image_predictor(None, str(reference_checkpoint), image_size=512, kernels="fused")
    found = {}
    for labelled in result.images:
        image = _read_image(images / labelled.name)
        predictor.set_image(image)
        masks, _, _ = predictor.predict(box=np.array([d.box for d in labelled.kept]), multimask_output=False)
        pairs = zip(labelled.kept, masks[:, 0] > 0.5, strict=True)
        outlined = [(d, m) for d, m in pairs if instance_polygon(m) is not None]
        lines = [yolo_line(PHRASES.index(d.phrase), instance_polygon(m), image.shape[:2]) for d, m in outlined]
        found[labelled.name] = ([m for _, m in outlined], lines)
    return found


def test_labels_are_the_predictors_masks_of_the_detectors_boxes(run, expected, images, grounding_folder):
    result, calls = run
    assert isinstance(result, AutoAnnotation) and not result.cancelled and not result.skipped
    assert [image.name for image in result.images] == ORDER
    assert calls == [(i + 1, 4, name) for i, name in enumerate(ORDER)]
    detector = Detector.load(DetectorSpec(str(grounding_folder)))
    for labelled in result.images:
        image = _read_image(images / labelled.name)
        found = detector.detect(image, PHRASES, box_threshold=SETTINGS["conf"], text_threshold=0.2)
        _check_suppressed(found, list(labelled.kept), SETTINGS["iou"], SETTINGS["max_det"])
        assert len(labelled.kept) == SETTINGS["max_det"]  # the random detector finds more than that
        masks, lines = expected[labelled.name]
        assert len(masks) == len(labelled.kept), "every reference mask has an outline"
        assert labelled.label_file == result.output_dir / (Path(labelled.name).stem + ".txt")
        assert labelled.label_file.read_text().splitlines() == lines
        assert labelled.lines == len(lines)


def _check_suppressed(found: list[Detection], kept: list[Detection], iou: float, max_det: int) -> None:
    """Greedy NMS per class, whatever order ties of score take: kept boxes are detections, no two
    of a class overlap above ``iou``, and each dropped one overlaps a kept one of its class that
    scores at least as high, or scores no higher than the last kept (cut by max_det)."""
    assert set(kept) <= set(found) and len(kept) <= max_det
    assert [d.score for d in kept] == sorted((d.score for d in kept), reverse=True)
    for a, b in itertools.combinations(kept, 2):
        assert a.phrase != b.phrase or box_iou(a.box, b.box) <= iou
    for dropped in set(found) - set(kept):
        covered = any(k.phrase == dropped.phrase and k.score >= dropped.score and box_iou(k.box, dropped.box) > iou
                      for k in kept)  # fmt: skip
        assert covered or (len(kept) == max_det and dropped.score <= kept[-1].score)


def test_supervision_reads_the_folder_as_a_yolo_dataset(run, expected, images):
    result, _ = run
    assert result.images_dir == images and result.data_yaml == result.output_dir / "data.yaml"
    dataset = sv.DetectionDataset.from_yolo(images_directory_path=str(images),
                                            annotations_directory_path=str(result.output_dir),
                                            data_yaml_path=str(result.data_yaml), force_masks=True)  # fmt: skip
    assert dataset.classes == PHRASES and len(dataset) == len(SIZES)
    read = {Path(path).name: (image, detections) for path, image, detections in dataset}
    assert set(read) == set(SIZES)
    for labelled in result.images:
        image, detections = read[labelled.name]
        height, width = SIZES[labelled.name]
        assert image.shape[:2] == (height, width)
        masks, lines = expected[labelled.name]
        assert len(detections) == len(lines) == labelled.lines > 0
        assert detections.class_id.tolist() == [int(line.split()[0]) for line in lines]
        if labelled.lines == len(labelled.kept):  # every mask had an outline: one line per box, in order
            assert detections.class_id.tolist() == [PHRASES.index(d.phrase) for d in labelled.kept]
        for mask, decoded in zip(masks, detections.mask, strict=True):
            filled = np.zeros((height, width), np.uint8)
            cv2.fillPoly(filled, [instance_polygon(mask).astype(np.int32)], 1)
            assert np.array_equal(decoded, filled.astype(bool))  # the predictor's outline, exactly
            assert not (mask & ~decoded).any()  # no pixel of the mask lost (bridges between its pieces add some)


def test_nms_matches_supervision_on_distinct_scores():
    boxes = [(0, 0, 10, 10, "a", 0.9), (1, 1, 11, 11, "a", 0.8), (1, 1, 11, 11, "b", 0.7), (20, 20, 30, 30, "a", 0.6),
             (0, 0, 9, 10, "b", 0.5), (2, 0, 12, 10, "a", 0.4)]  # fmt: skip
    found = [Detection(x0, y0, x1, y1, phrase, score) for x0, y0, x1, y1, phrase, score in boxes]
    for iou in (0.3, 0.5, 0.7, 0.9):
        rows = np.array([[*d.box, d.score, "ab".index(d.phrase)] for d in found], float)
        expected = [d for d, keep in zip(found, sv.box_non_max_suppression(rows, iou_threshold=iou), strict=True)
                    if keep]  # fmt: skip
        assert suppress(found, iou, 300) == expected
        assert suppress(found, iou, 2) == expected[:2]


def test_a_video_is_labelled_frame_by_frame(grounding_folder, reference_checkpoint, tmp_path):
    video = media_factory.testsrc(tmp_path / "walk.mp4", size=(64, 48), fps=5, seconds=0.6)
    result = auto_annotate(video, det_model=str(grounding_folder), sam_model=str(reference_checkpoint),
                           classes="person, dog", **{**SETTINGS, "max_det": 1})  # fmt: skip
    assert result.output_dir == tmp_path / "walk_auto_annotate_labels" and result.images_dir == result.output_dir
    names = [f"walk_{i:05d}.jpg" for i in range(3)]
    assert [image.name for image in result.images] == names
    dataset = sv.DetectionDataset.from_yolo(str(result.output_dir), str(result.output_dir), str(result.data_yaml),
                                            force_masks=True)  # fmt: skip
    assert dataset.classes == ["person", "dog"] and len(dataset) == 3
    assert all(len(detections) == 1 for _, _, detections in dataset)


def test_cancel_stops_between_images_and_an_unreadable_image_is_skipped(grounding_folder, reference_checkpoint,
                                                                        tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a1.png", "a3.png", "a4.png"):
        Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(folder / name)
    (folder / "a2.jpg").write_bytes(b"\xff\xd8 this is no picture")
    detector = Detector.load(DetectorSpec(str(grounding_folder)))  # a loaded detector is used as it is
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    result = auto_annotate(folder, det_model=detector, sam_model=str(reference_checkpoint), classes=["dog"],
                           output_dir=tmp_path / "out", cancel=cancel, **{**SETTINGS, "max_det": 1})  # fmt: skip
    assert result.cancelled and [image.name for image in result.images] == ["a1.png", "a3.png"]
    assert len(result.skipped) == 1 and "a2.jpg is not a readable image" in result.skipped[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a1.txt", "a3.txt", "data.yaml"]
    said = result.describe()
    assert "2 of 4 images" in said and "1 unreadable images skipped" in said and "cancelled" in said


def test_the_package_exports_it_without_loading_torch():
    import subprocess
    import sys

    code = "import sys, annotation; f = annotation.auto_annotate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    assert annotation.auto_annotate is auto_annotate


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (dict(classes=None), "Say what to find"),
        (dict(classes=[]), "Type what to find"),
        (dict(classes=" , "), "Type what to find"),
        (dict(classes=[f"thing {i}" for i in range(500)]), "500 phrases"),
        (dict(classes=[3, 4]), "list of"),
        (dict(conf=1.5), "conf (the box score threshold) must be a number from 0 to 1"),
        (dict(conf=-0.1), "conf"),
        (dict(conf=float("nan")), "conf"),
        (dict(iou=2), "iou"),
        (dict(max_det=0), "max_det"),
        (dict(max_det=-3), "max_det"),
        (dict(max_det=2.5), "max_det"),
        (dict(imgsz=640), "imgsz (SAM 2's input size) must be one of 512, 768, 1024"),
        (dict(text_threshold=7), "text threshold"),
        (dict(device="gpu0"), "The device 'gpu0' is not one torch knows"),
        (dict(precision="double"), "precision must be one of"),
        (dict(kernels="fast"), "kernels must be one of measure, fused, blockwise"),
    ],
    ids=["no-classes", "empty-classes", "only-commas", "500-phrases", "not-text", "conf-high", "conf-negative",
         "conf-nan", "iou-high", "max-det-0", "max-det-negative", "max-det-fraction", "imgsz", "text-threshold",
         "device", "precision", "kernels"],
)  # fmt: skip
def test_bad_settings_are_refused_in_words_before_anything_is_written(images, tmp_path, change, words):
    arguments = dict(det_model="no/such-detector", sam_model="sam2.1_hiera_tiny", classes=PHRASES,
                     output_dir=tmp_path / "out", **SETTINGS)  # fmt: skip
    with pytest.raises(AutoAnnotateError) as error:
        auto_annotate(images, **{**arguments, **change})
    assert words in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_places_are_refused_in_words(images, tmp_path):
    arguments = dict(det_model="no/such-detector", sam_model="sam2.1_hiera_tiny", classes=PHRASES, **SETTINGS)
    with pytest.raises(AutoAnnotateError, match="There is no folder or file"):
        auto_annotate(tmp_path / "missing", **arguments)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(AutoAnnotateError, match="holds no images"):
        auto_annotate(empty, **arguments)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(AutoAnnotateError, match="is a file"):
        auto_annotate(images, output_dir=tmp_path / "a-file", **arguments)
    with pytest.raises(AutoAnnotateError, match="cannot be made"):
        auto_annotate(images, output_dir=tmp_path / "a-file" / "labels", **arguments)
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(twins / name)
    with pytest.raises(AutoAnnotateError, match="would both be labelled a.txt"):
        auto_annotate(twins, **arguments)
    with pytest.raises(AutoAnnotateError, match="neither a folder of images nor a video"):
        auto_annotate(tmp_path / "a-file", **arguments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "empty", "twins"]


def test_a_folder_that_is_no_detector_or_no_sam_model_is_refused(images, grounding_folder, reference_checkpoint,
                                                                 tmp_path):
    not_detector = tmp_path / "not-a-detector"
    not_detector.mkdir()
    (not_detector / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(DetectorUnavailable, match="holds a bert model, not a detector"):
        auto_annotate(images, det_model=str(not_detector), sam_model=str(reference_checkpoint), classes=PHRASES,
                      output_dir=tmp_path / "out", **SETTINGS)  # fmt: skip
    with pytest.raises(DetectorUnavailable, match="no detector folder yolo11x.pt"):
        auto_annotate(images, det_model="yolo11x.pt", classes=PHRASES, output_dir=tmp_path / "out", **SETTINGS)
    with pytest.raises(AutoAnnotateError, match="neither a checkpoint file nor a SAM 2 variant"):
        auto_annotate(images, det_model=str(grounding_folder), sam_model="sam_b.pt", classes=PHRASES,
                      output_dir=tmp_path / "out", **SETTINGS)  # fmt: skip
    assert not (tmp_path / "out").exists()
