"""Reading annotations made elsewhere (annotation.imports): our own exports read back exactly
(IoU 1 for PNG and RLE, >= 0.95 for polygons), with their labels and instance ids; files
written by other tools' conventions; and bad files, each a plain message."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.datasets import Annotations, export_coco, export_ytvis, indexed_png
from annotation.formats import export_png_zip
from annotation.imports import (
    ImportProblem,
    VideoShape,
    read_any,
    read_coco_detections,
    read_coco_masks,
    read_png_masks,
    read_yolo_boxes,
    read_ytvis_masks,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W, N = 48, 64, 4
VIDEO = VideoShape(N, H, W)


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(scope="module")
def data() -> Annotations:
    masks = {f: {3: disc(15 + 2 * f, 20, 9), 7: disc(45, 30, 7) & ~disc(45, 30, 2)} for f in range(N - 1)}
    frames = [np.zeros((H, W, 3), np.uint8)] * N
    return Annotations("walk.mp4", frames, masks, {3: "person", 7: "ball"}, ("person", "ball"), (H, W), 10.0)


def by_key(imported) -> dict[tuple[int, int], np.ndarray]:
    return {(m.frame, m.obj_id): m.mask for m in imported.masks}


def expected(data) -> dict[tuple[int, int], np.ndarray]:
    return {(f, o): m for f, per in data.masks.items() for o, m in per.items()}


def test_png_zip_round_trip(data, tmp_path):
    path = export_png_zip(data.masks, N, (H, W), {3: "left", 7: "right"}, tmp_path)
    imported = read_png_masks(path, VIDEO)
    got = by_key(imported)
    assert got.keys() == expected(data).keys()
    assert all(np.array_equal(got[k], m) for k, m in expected(data).items())
    assert imported.names == {3: "left", 7: "right"}


def test_coco_round_trip_keeps_instances_and_labels(data, tmp_path):
    imported = read_coco_masks(export_coco(data, tmp_path), VIDEO)
    got = by_key(imported)
    assert got.keys() == expected(data).keys()
    assert all(np.array_equal(got[k], m) for k, m in expected(data).items())
    assert imported.labels == {3: "person", 7: "ball"}


def test_coco_polygons_of_another_tool(tmp_path):
    """Another tool's file: polygons in continuous coordinates, no track ids (each annotation
    its own object), frames from the image file names. Each mask holds the pixels whose centre
    is inside the polygon (COCO's rule), checked with matplotlib's point-in-polygon at IoU >=
    0.95 (rasterisers differ on edge pixels)."""
    from matplotlib.path import Path as Outline

    polygons = {f: [10.3 + f, 5.2, 50.7, 8.9, 58.1, 30.4, 32.6, 44.2, 6.4, 35.5] for f in range(N - 1)}
    images = [{"id": 100 + f, "file_name": f"frames/img_{f:04d}.png", "height": H, "width": W} for f in polygons]
    annotations = [
        {"id": f + 1, "image_id": 100 + f, "category_id": 5, "segmentation": [p]} for f, p in polygons.items()
    ]
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 5, "name": "runner"}]}))  # fmt: skip
    imported = read_coco_masks(path, VIDEO)
    assert [(m.frame, m.obj_id) for m in imported.masks] == [(0, 1), (1, 2), (2, 3)]
    yy, xx = np.mgrid[0:H, 0:W]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    for m in imported.masks:
        truth = Outline(np.reshape(polygons[m.frame], (-1, 2))).contains_points(centres).reshape(H, W)
        assert (m.mask & truth).sum() / (m.mask | truth).sum() >= 0.95 and truth.sum() > 1000
    assert imported.labels == {1: "runner", 2: "runner", 3: "runner"}


def test_youtube_vis_round_trip(data, tmp_path):
    imported = read_ytvis_masks(export_ytvis(data, tmp_path), VIDEO)
    got = by_key(imported)
    assert got.keys() == expected(data).keys()
    assert all(np.array_equal(got[k], m) for k, m in expected(data).items())
    assert imported.labels == {3: "person", 7: "ball"}


def test_detections_become_boxes_above_the_score(tmp_path):
    path = tmp_path / "detections.json"
    path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [50, 30, 30, 30], "score": 0.8},  # overshoots: clipped
        {"image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.2},
    ]))  # fmt: skip
    imported = read_coco_detections(path, VIDEO, min_score=0.5)
    assert [(b.frame, b.box, b.label) for b in imported.boxes] == [
        (0, (10.0, 5.0, 30.0, 35.0), "class 1"), (0, (50.0, 30.0, 64.0, 48.0), "class 2"),
    ]  # fmt: skip


@pytest.mark.parametrize("image_id", [0, N + 1])
def test_detection_image_ids_count_from_one(tmp_path, image_id):
    """Without an image list, image ids are frames + 1: an id outside 1..N says so, not 'frame -1'."""
    path = tmp_path / "detections.json"
    path.write_text(json.dumps([{"image_id": image_id, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]))
    message = (f"detection 0 is on image {image_id}, but image ids count from 1 (frame 0 is image 1), so this "
               f"video's images are 1 to {N}")
    with pytest.raises(ImportProblem, match=re.escape(message)) as raised:
        read_coco_detections(path, VIDEO)
    assert "frame -1" not in str(raised.value)
    listed = tmp_path / "listed.json"  # with its images listed, the list says the frames
    listed.write_text(json.dumps({
        "images": [{"id": 0, "file_name": "clip_00002.jpg", "height": H, "width": W}],
        "annotations": [{"image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}],
    }))  # fmt: skip
    assert [b.frame for b in read_coco_detections(listed, VIDEO).boxes] == [2]


def test_yolo_txt_and_zip(tmp_path):
    one = tmp_path / "frame.txt"
    one.write_text("0 0.5 0.5 0.25 0.5\n\n1 0.25 0.25 0.1 0.1 0.7\n")
    imported = read_yolo_boxes(one, VIDEO, frame=2, names=["person", "ball"])
    assert [(b.frame, b.box, b.label, b.score) for b in imported.boxes] == [
        (2, (24.0, 12.0, 40.0, 36.0), "person", None), (2, pytest.approx((12.8, 9.6, 19.2, 14.4)), "ball", 0.7),
    ]  # fmt: skip
    archive = tmp_path / "labels.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("labels/walk_00003.txt", "0 0.5 0.5 0.5 0.5\n")
        z.writestr("classes.txt", "person\n")
    assert [(b.frame, b.label) for b in read_yolo_boxes(archive, VIDEO, frame=0).boxes] == [(3, "class 0")]


def png_zip(tmp_path: Path, *members: tuple[str, np.ndarray | bytes]) -> Path:
    path = tmp_path / "masks.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members:
            z.writestr(name, content if isinstance(content, bytes) else indexed_png(content))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: png_zip(d, ("00000.png", np.zeros((10, 10), np.uint8))), "is 10x10, but the video is 64x48"),
        (lambda d: png_zip(d, ("00009.png", np.ones((H, W), np.uint8))), "is frame 9, but the video has frames 0 to 3"),
        (lambda d: png_zip(d, ("frame.png", np.ones((H, W), np.uint8))), "has no frame number in its name"),
        (lambda d: png_zip(d, ("00000.png", b"not a png")), "is not a readable PNG"),
        (lambda d: (d / "x.zip").write_bytes(b"PK\x03\x04 broken") and d / "x.zip", "is not a zip file"),
        (lambda d: png_zip(d, ("00000.png", np.zeros((H, W), np.uint8))), "holds no mask or box"),
    ],
)
def test_bad_mask_zips(tmp_path, make, message):
    with pytest.raises(ImportProblem, match=message):
        read_png_masks(make(tmp_path), VIDEO)


def test_rgb_pngs_are_not_masks(tmp_path):
    path = tmp_path / "rgb.zip"
    buffer = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(buffer)
    with zipfile.ZipFile(path, "w") as z:
        z.write(buffer, "00000.png")
    with pytest.raises(ImportProblem, match="is a RGB picture, not a mask of object ids"):
        read_png_masks(path, VIDEO)


def coco_file(tmp_path: Path, annotations: list, height: int = H) -> Path:
    path = tmp_path / "c.json"
    images = [{"id": f + 1, "file_name": f"{f:05d}.jpg", "height": height, "width": W} for f in range(N)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": []}))
    return path


def test_bad_coco_files(tmp_path):
    rle = {"size": [H, W], "counts": "PPYo1"}
    with pytest.raises(ImportProblem, match="images\\[0\\] is 64x20, but the video is 64x48"):
        read_coco_masks(coco_file(tmp_path, [], height=20), VIDEO)
    with pytest.raises(ImportProblem, match="on image 99, which 'images' does not list"):
        read_coco_masks(coco_file(tmp_path, [{"image_id": 99, "segmentation": rle}]), VIDEO)
    with pytest.raises(ImportProblem, match="object id 300; ids must be whole numbers 1..255"):
        read_coco_masks(coco_file(tmp_path, [{"image_id": 1, "segmentation": rle, "track_id": 300}]), VIDEO)
    with pytest.raises(ImportProblem, match=r"annotations\[0\]\.segmentation\.counts is 5, not RLE counts"):
        read_coco_masks(coco_file(tmp_path, [{"image_id": 1, "segmentation": {"size": [H, W], "counts": 5}}]), VIDEO)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ImportProblem, match="'bad.json' cannot be imported: it is not valid JSON"):
        read_coco_masks(tmp_path / "bad.json", VIDEO)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportProblem, match="nested too deeply"):
        read_coco_masks(tmp_path / "deep.json", VIDEO)


def test_ten_thousand_objects_are_refused(tmp_path):
    path = tmp_path / "many.json"
    detection = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}
    path.write_text(json.dumps([detection] * 10_000))
    with pytest.raises(ImportProblem, match="it holds more than 255 boxes; each becomes an object"):
        read_coco_detections(path, VIDEO)


def test_bad_yolo_lines(tmp_path):
    path = tmp_path / "f.txt"
    for text, message in (("0 0.5 0.5 2 0.5", "values outside 0..1"), ("x 1 2 3 4", "is not 'class cx cy w h"),
                          ("0 0.5 nan 0.1 0.1", "not a number"), ("0 0.5 0.5", "is not .class cx cy w")):  # fmt: skip
        path.write_text(text)
        with pytest.raises(ImportProblem, match=message):
            read_yolo_boxes(path, VIDEO, frame=0)
    path.write_text("0 0.5 0.5 0.1 0.1")
    with pytest.raises(ImportProblem, match="is frame 7, but the video has frames 0 to 3"):
        read_yolo_boxes(path, VIDEO, frame=7)


def test_a_damaged_zip_is_called_one(tmp_path):
    """read_any tells formats by content; a .zip that is not one (cut short) is named as such."""
    whole = png_zip(tmp_path, ("00000.png", np.ones((H, W), np.uint8)))
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImportProblem, match="'cut.zip' cannot be imported: it is not a zip file"):
        read_any(cut, VIDEO)
