"""The dataset exports read back by readers this project did not write: pycocotools (COCO and
COCOeval, YouTube-VIS RLEs), supervision (a YOLO dataset), motmetrics (MOT tracks), Pillow
(semantic PNGs)."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import motmetrics
import numpy as np
import pytest
import supervision as sv
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotation.datasets import (
    Annotations,
    export_coco,
    export_mot,
    export_semantic_png,
    export_yolo_dataset,
    export_ytvis,
)

# pycocotools' C code predates numpy 2's __array__(copy=...); it decodes correctly all the same.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W, N = 60, 80, 6


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(scope="module")
def data() -> Annotations:
    """Three objects of two classes on six frames: two people that overlap on some frames (one
    of them in two pieces on frame 4) and a ball that leaves after frame 3 and has a hole;
    frame 5 is empty."""
    yy, xx = np.mgrid[0:H, 0:W]
    frames = [np.stack([xx * 3, yy * 4, np.full_like(xx, 40 * f)], -1).astype(np.uint8) for f in range(N)]
    masks: dict[int, dict[int, np.ndarray]] = {}
    for f in range(N - 1):
        masks[f] = {1: disc(20 + 3 * f, 30, 12), 4: disc(45, 25 + f, 10)}
        if f <= 3:
            ball = disc(65, 45, 8) & ~disc(65, 45, 3)
            masks[f][2] = ball
    masks[4][4] = disc(45, 12, 7) | disc(45, 45, 7)
    return Annotations("walk.mp4", frames, masks, {1: "person", 4: "person", 2: "ball"},
                       ("person", "ball", "dog"), (H, W), 5.0)  # fmt: skip


def test_coco_loads_in_pycocotools_and_scores_ap_1_against_itself(data, tmp_path):
    path = export_coco(data, tmp_path)
    assert path.name == "walk_coco.json"
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(path))
        results = truth.loadRes([{**a, "score": 1.0} for a in truth.dataset["annotations"]])
        evaluation = COCOeval(truth, results, iouType="segm")
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP over IoU 0.5:0.95: nothing ignored as crowd
    assert {c["id"]: c["name"] for c in truth.dataset["categories"]} == {1: "person", 2: "ball", 3: "dog"}
    assert len(truth.getImgIds()) == N and truth.imgs[1]["file_name"] == "walk_00000.jpg"
    for a in truth.dataset["annotations"]:
        frame, obj = truth.imgs[a["image_id"]]["frame_index"], a["track_id"]
        assert a["iscrowd"] == 0 and a["instance_id"] == obj
        assert a["category_id"] == {1: 1, 4: 1, 2: 2}[obj]
        assert np.array_equal(truth.annToMask(a).astype(bool), data.masks[frame][obj])
    assert len(truth.dataset["annotations"]) == 2 * 5 + 4


def test_coco_zip_holds_the_frames_its_json_names(data, tmp_path):
    path = export_coco(data, tmp_path, with_images=True)
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("annotations.json"))
        for image in document["images"]:
            picture = np.array(Image.open(archive.open(f"images/{image['file_name']}")))
            frame = data.frames[image["frame_index"]]
            assert picture.shape == frame.shape and np.abs(picture.astype(int) - frame).mean() < 3  # JPEG


def test_youtube_vis_rles_decode_to_our_masks_with_null_where_absent(data, tmp_path):
    document = json.loads(export_ytvis(data, tmp_path).read_text())
    (video,) = document["videos"]
    assert video["length"] == N and video["file_names"][0] == "walk/00000.jpg"
    by_instance = {a["instance_id"]: a for a in document["annotations"]}
    assert set(by_instance) == {1, 2, 4} and by_instance[2]["category_id"] == 2
    for obj, annotation in by_instance.items():
        assert len(annotation["segmentations"]) == N
        for frame, rle in enumerate(annotation["segmentations"]):
            expected = data.masks.get(frame, {}).get(obj)
            if expected is None:
                assert rle is None and annotation["areas"][frame] is None and annotation["bboxes"][frame] is None
                continue
            decoded = mask_utils.decode(mask_utils.frPyObjects(rle, H, W)).astype(bool)
            assert np.array_equal(decoded, expected) and annotation["areas"][frame] == expected.sum()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_yolo_dataset_opens_in_supervision_with_our_masks(data, tmp_path):
    path = export_yolo_dataset(data, tmp_path, val_every=3)
    root = tmp_path / "yolo"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(root)
    loaded = {}
    for split in ("train", "val"):
        dataset = sv.DetectionDataset.from_yolo(
            images_directory_path=str(root / "images" / split), annotations_directory_path=str(root / "labels" / split),
            data_yaml_path=str(root / "data.yaml"), force_masks=True,
        )  # fmt: skip
        assert dataset.classes == ["person", "ball", "dog"]
        loaded.update({Path(name).name: (split, detections) for name, _, detections in dataset})
    assert {name: split for name, (split, _) in loaded.items()} == {
        f"walk_{f:05d}.jpg": "val" if f in (2, 5) else "train" for f in range(N)
    }  # every third frame is validation
    for frame in range(N):
        _, detections = loaded[f"walk_{frame:05d}.jpg"]
        expected = data.masks.get(frame, {})
        assert len(detections) == len(expected)
        for obj, mask in expected.items():
            best = max(range(len(detections)), key=lambda i: _iou(detections.mask[i], mask))
            assert _iou(detections.mask[best], mask) >= 0.9, (frame, obj)
            assert detections.class_id[best] == data.class_index(obj)


def test_semantic_masks_hold_class_values(data, tmp_path):
    with zipfile.ZipFile(export_semantic_png(data, tmp_path)) as archive:
        classes = json.loads(archive.read("classes.json"))
        assert classes == {"0": "background", "1": "person", "2": "ball", "3": "dog"}
        for frame in range(N):
            image = Image.open(archive.open(f"{frame:05d}.png"))
            assert image.mode == "P"
            values = np.array(image)
            masks = data.masks.get(frame, {})
            people = masks.get(1, np.zeros((H, W), bool)) | masks.get(4, np.zeros((H, W), bool))
            assert np.array_equal(values == 1, people & ~masks.get(2, np.zeros((H, W), bool)))
            assert np.array_equal(values == 2, masks.get(2, np.zeros((H, W), bool)))
            assert not (values == 3).any()


def test_mot_tracks_load_in_motmetrics(data, tmp_path):
    path = export_mot(data, tmp_path)
    table = motmetrics.io.loadtxt(str(path), fmt="mot15-2D")
    assert len(table) == 2 * 5 + 4
    for (frame_id, obj), row in table.iterrows():
        mask = data.masks[frame_id - 1][obj]
        ys, xs = np.nonzero(mask)
        # motmetrics turns MOT's 1-based pixels into 0-based ones
        assert (row["X"], row["Y"]) == (xs.min(), ys.min())
        assert (row["Width"], row["Height"]) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert row["ClassId"] == data.class_index(obj) + 1


def test_a_label_outside_the_list_is_refused(data):
    with pytest.raises(ValueError, match="not in the label list: \\['cat'\\]"):
        Annotations("x.mp4", data.frames, {}, {1: "cat"}, ("dog",), (H, W), 5.0)


def test_our_readers_give_back_instances_and_classes(data, tmp_path):
    """read_coco (by instance id) and read_yolo_zip (by class, any split), which the app tests use."""
    from annotation.formats import read_coco, read_yolo_zip

    coco = read_coco(export_coco(data, tmp_path))
    assert all(np.array_equal(coco[f][o], m) for f, per in data.masks.items() for o, m in per.items())
    yolo = read_yolo_zip(export_yolo_dataset(data, tmp_path, val_every=2), (H, W))
    assert sorted(yolo) == list(range(N)) and set(yolo[0]) == {0, 1} and yolo[5] == {}
    assert _iou(yolo[0][1], data.masks[0][2]) > 0.95  # the ball, its hole kept
