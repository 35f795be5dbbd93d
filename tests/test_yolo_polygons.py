"""YOLO's one polygon per instance (annotation.datasets.instance_polygon): filled again with
cv2.fillPoly, as YOLO readers do, it gives the mask back with its pieces and holes, and masks of
thousands of pieces join in bounded time (issue 18, item 4; figures in
scripts/bench_yolo_polygons.py)."""

from __future__ import annotations

import time
import zipfile

import cv2
import numpy as np
import pytest
import supervision as sv

from annotation.datasets import Annotations, export_yolo_dataset, instance_polygon

H, W = 120, 160


def disc(cx: float, cy: float, r: float, size: tuple[int, int] = (H, W)) -> np.ndarray:
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def refilled(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(size, np.uint8)
    cv2.fillPoly(canvas, [polygon.astype(np.int32)], 1)
    return canvas.astype(bool)


def outline_pixels(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(size, np.uint8)
    cv2.polylines(canvas, [polygon.astype(np.int32)], True, 1)
    return canvas.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def contour_counts(mask: np.ndarray) -> tuple[int, int]:
    """(contours, their corners) as OpenCV traces them: pieces and holes."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return len(contours), sum(len(c) for c in contours)


ORDINARY = {
    "disc": disc(80, 60, 30),
    "ring": disc(80, 60, 40) & ~disc(80, 60, 20),
    "ring with an island in its hole": (disc(80, 60, 40) & ~disc(80, 60, 20)) | disc(80, 60, 8),
    "two discs": disc(40, 40, 18) | disc(120, 80, 20),
    "disc with three holes": disc(80, 60, 55) & ~disc(60, 45, 8) & ~disc(100, 45, 8) & ~disc(80, 85, 10),
    "three pieces, two cut by the frame's edges": disc(0, 60, 40) | disc(159, 60, 40) | disc(80, 60, 25),
    "a hole one pixel from the edge": disc(80, 60, 40) & ~(disc(80, 60, 39) & ~disc(80, 60, 10)),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_masks_fill_back_at_iou_095_with_their_holes(name):
    mask = ORDINARY[name]
    polygon = instance_polygon(mask)
    assert polygon.ndim == 2 and polygon.shape[1] == 2
    filled = refilled(polygon, mask.shape)
    assert iou(filled, mask) >= 0.95, name
    assert not (mask & ~filled).any(), name  # nothing of the mask lost, holes not filled over: the IoU says


@pytest.mark.parametrize("seed", range(6))
def test_refill_keeps_every_pixel_and_adds_only_the_bridges(seed):
    """Random masks of many pieces and holes: the refill holds the whole mask, anything more lies
    on the polygon's own edges (the bridges), and the outline has every corner of every contour
    plus two per bridge (one tree: C - 1 bridges)."""
    rng = np.random.default_rng(seed)
    size = tuple(int(s) for s in rng.integers(20, 140, 2))
    mask = rng.random(size) < rng.uniform(0.2, 0.8)
    if seed % 2:
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)).astype(bool)
    polygon = instance_polygon(mask)
    filled = refilled(polygon, size)
    contours, corners = contour_counts(mask)
    assert contours > 20
    assert not (mask & ~filled).any()
    assert not (filled & ~mask & ~outline_pixels(polygon, size)).any()
    assert len(polygon) == corners + 2 * (contours - 1)


def test_bridges_are_short_between_near_pieces():
    """Two rows of specks 3 px apart: a minimum spanning tree bridges neighbours, so the refill
    adds little, where bridges from one piece to all the others would cover the frame."""
    mask = np.zeros((H, W), bool)
    mask[20:22, 10:150:4] = True
    mask[24:26, 10:150:4] = True
    filled = refilled(instance_polygon(mask), mask.shape)
    assert not (mask & ~filled).any()
    assert (filled & ~mask).sum() <= 3 * contour_counts(mask)[0]  # about 2 px per bridge


def test_specks_and_empty_masks_give_no_polygon():
    empty = np.zeros((H, W), bool)
    assert instance_polygon(empty) is None
    one = empty.copy()
    one[5, 5] = True
    assert instance_polygon(one) is None
    three = one.copy()
    three[50, 50] = three[90, 10] = True  # three one-pixel pieces: one outline through all three
    filled = refilled(instance_polygon(three), three.shape)
    assert filled[5, 5] and filled[50, 50] and filled[90, 10]


def test_ten_thousand_pieces_join_in_bounded_time():
    """10,000 separate squares (the old join took minutes for 5,774 pieces; this one takes a
    fraction of a second, see the benchmark): bounded generously so only a hang fails."""
    mask = np.zeros((500, 500), bool)
    for y in range(0, 500, 5):
        for x in range(0, 500, 5):
            mask[y : y + 2, x : x + 2] = True
    assert contour_counts(mask)[0] == 10_000
    start = time.perf_counter()
    polygon = instance_polygon(mask)
    assert time.perf_counter() - start < 20
    assert not (mask & ~refilled(polygon, mask.shape)).any()


def test_a_long_chain_of_pieces_joins():
    """A tree as deep as it is long (pieces in one row): no recursion limit, every piece kept."""
    mask = np.zeros((8, 12_000), bool)
    mask[3:5, ::3] = True
    filled = refilled(instance_polygon(mask), mask.shape)
    assert not (mask & ~filled).any() and contour_counts(mask)[0] == 4_000


def test_supervision_reads_a_noisy_multi_piece_mask_back(tmp_path):
    """Through the whole YOLO export and an independent reader (supervision's from_yolo)."""
    rng = np.random.default_rng(7)
    noisy = (disc(80, 60, 45) & ~disc(80, 60, 15)) ^ (rng.random((H, W)) < 0.01)
    masks = {0: {1: ORDINARY["ring with an island in its hole"], 2: ORDINARY["disc with three holes"]}, 1: {1: noisy}}
    frames = [np.zeros((H, W, 3), np.uint8)] * 2
    data = Annotations("noise.mp4", frames, masks, {1: "leaf", 2: "stone"}, ("leaf", "stone"), (H, W), 5.0)
    root = tmp_path / "yolo"
    with zipfile.ZipFile(export_yolo_dataset(data, tmp_path)) as archive:
        archive.extractall(root)
    dataset = sv.DetectionDataset.from_yolo(
        images_directory_path=str(root / "images" / "train"), annotations_directory_path=str(root / "labels" / "train"),
        data_yaml_path=str(root / "data.yaml"), force_masks=True,
    )  # fmt: skip
    read = {name.rsplit("/", 1)[-1]: detections for name, _, detections in dataset}
    first, second = read["noise_00000.jpg"], read["noise_00001.jpg"]
    assert sorted(first.class_id.tolist()) == [0, 1] and second.class_id.tolist() == [0]
    for detections, obj_masks in ((first, masks[0]), (second, masks[1])):
        for mask in obj_masks.values():
            assert max(iou(m, mask) for m in detections.mask) >= (0.95 if mask is not noisy else 0.8)
            assert max((mask & m).sum() for m in detections.mask) == mask.sum()  # no pixel of it lost
