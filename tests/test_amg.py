"""The automatic mask generator ("segment everything"): every `amg_*` reference case made by
Meta's generator (the shared ones and those of scripts/make_amg_cases.py), matched as sets as
tests/fixtures/README.md says, and its parts on their own: NMS, the score filters, small-region
removal, run-length encoding, crops, progress and cancelling, the builder."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import sam2
from sam2.automatic_mask_generator import (
    GenerationCancelled,
    Progress,
    SAM2AutomaticMaskGenerator,
    batched_nms,
    build_point_grid,
    coco_encode_rle,
    generate_crop_boxes,
    mask_to_rle,
    nms,
    remove_small_regions,
    rle_area,
    rle_to_mask,
)
from sam2.build import load_model
from tests.reference import FIXTURES, load_case, reference_state_dict

# pycocotools' decode (used here to read COCO RLE) warns about numpy 2's copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

AMG_CASES = sorted(p.name for p in FIXTURES.glob("amg_*"))
# Cases at image size 1024 take a minute or more each on two cores (the small model encodes five
# crops in amg_s21_1024_m2m); they run by default and can be deselected with -m "not slow".
SLOW_CASES = {"amg_s21_1024_m2m", "amg_t21_1024"}
MIN_IOU = 0.995  # tests/fixtures/README.md, "Automatic mask generator cases"
MAX_SCORE_DIFF = 1e-4
MAX_POINT_DIFF = 1e-3
MAX_STABILITY_DIFF = 1e-3  # ours: stability is an area ratio, and the masks agree to IoU 0.995


# ----------------------------------------------------------------------------- running and matching cases
def generator_options(case: dict) -> dict:
    options = dict(case["generator"])
    if options.get("point_grids") is not None:
        options["point_grids"] = [np.array(grid, dtype=np.float64) for grid in options["point_grids"]]
    return options


def build_case_generator(case: dict, **overrides) -> SAM2AutomaticMaskGenerator:
    options = {**generator_options(case), **overrides}
    return sam2.build_automatic_mask_generator(case["config"], reference_state_dict(case["config"]),
                                               image_size=case["image_size"], **options)


def segmentation_to_mask(segmentation, output_mode: str) -> np.ndarray:
    if output_mode == "binary_mask":
        return segmentation
    if output_mode == "coco_rle":
        return mask_utils.decode(segmentation).astype(bool)
    return rle_to_mask(segmentation)


@dataclass
class Match:
    count: int
    expected_count: int
    worst_iou: float = 1.0
    worst_score_diff: float = 0.0
    worst_stability_diff: float = 0.0
    unmatched: tuple[int, ...] = ()

    def __str__(self) -> str:
        return (f"{self.count} masks (expected {self.expected_count}), worst IoU {self.worst_iou:.6f}, "
                f"worst predicted_iou diff {self.worst_score_diff:.2e}, "
                f"worst stability diff {self.worst_stability_diff:.2e}, unmatched expected {list(self.unmatched)}")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def match_records(records: list[dict], expected, output_mode: str = "binary_mask") -> tuple[Match, list[int]]:
    """Pair every expected mask with its own mask of ours (same point, IoU and predicted IoU
    within the README's bounds): a maximum bipartite matching. Returns the match figures and,
    per expected mask, the index of its partner (-1 if none)."""
    masks = [segmentation_to_mask(r["segmentation"], output_mode) for r in records]
    points = np.array([r["point_coords"][0] for r in records]).reshape(-1, 2)
    scores = np.array([r["predicted_iou"] for r in records])
    n_expected = len(expected["masks"])
    options: list[list[tuple[int, float]]] = []
    for i in range(n_expected):
        same_point = np.flatnonzero(np.abs(points - expected["point_coords"][i]).max(axis=1) <= MAX_POINT_DIFF)
        pairs = [(int(j), mask_iou(masks[j], expected["masks"][i])) for j in same_point
                 if abs(scores[j] - expected["predicted_iou"][i]) <= MAX_SCORE_DIFF]
        options.append(sorted([p for p in pairs if p[1] >= MIN_IOU], key=lambda p: -p[1]))
    partner_of_ours: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:  # Kuhn's augmenting path
        for j, _ in options[i]:
            if j not in seen:
                seen.add(j)
                if j not in partner_of_ours or augment(partner_of_ours[j], seen):
                    partner_of_ours[j] = i
                    return True
        return False

    for i in range(n_expected):
        augment(i, set())
    partner = [-1] * n_expected
    for j, i in partner_of_ours.items():
        partner[i] = j
    match = Match(len(records), n_expected, unmatched=tuple(i for i in range(n_expected) if partner[i] < 0))
    for i, j in enumerate(partner):
        if j >= 0:
            match.worst_iou = min(match.worst_iou, mask_iou(masks[j], expected["masks"][i]))
            match.worst_score_diff = max(match.worst_score_diff, abs(scores[j] - expected["predicted_iou"][i]))
            match.worst_stability_diff = max(
                match.worst_stability_diff, abs(records[j]["stability_score"] - expected["stability_score"][i]))
    return match, partner


def check_records_are_consistent(records: list[dict], image_hw: tuple[int, int], output_mode: str) -> None:
    """Each record as Meta's: area and bbox (XYWH, inclusive last pixel) agree with its mask."""
    for r in records:
        mask = segmentation_to_mask(r["segmentation"], output_mode)
        assert mask.shape == image_hw and mask.dtype == bool
        assert isinstance(r["area"], int) and r["area"] == mask.sum()
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()] if mask.any() else [0, 0, 0, 0]
        assert r["bbox"] == box
        assert all(isinstance(v, float) for v in [*r["bbox"], *r["crop_box"], *r["point_coords"][0]])
        assert isinstance(r["predicted_iou"], float) and isinstance(r["stability_score"], float)


def check_progress(progress: list[Progress], case: dict) -> None:
    """One report before the work and one per batch of points, crop by crop."""
    total = progress[0].total
    assert [p.done for p in progress] == list(range(total + 1))
    assert all(p.total == total for p in progress) and progress[-1].fraction == 1.0
    crops = [p.crop for p in progress]
    assert crops == sorted(crops) and set(crops) == set(range(progress[0].crops))
    assert progress[0].crops == (5 if case["generator"].get("crop_n_layers") == 1 else 1)


# ----------------------------------------------------------------------------- parity
def test_every_case_is_here():
    assert len(AMG_CASES) >= 9, AMG_CASES
    for name in AMG_CASES:
        assert load_case(name)[0]["kind"] == "amg", name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in AMG_CASES])
def test_case_matches_meta(name):
    case, frames, expected = load_case(name)
    output_mode = case["generator"].get("output_mode", "binary_mask")
    progress: list[Progress] = []
    records = build_case_generator(case).generate(frames[0], progress=progress.append)
    check_progress(progress, case)
    match, partner = match_records(records, expected, output_mode)
    print(f"{name}: {match}")
    assert match.count == match.expected_count and not match.unmatched, f"{name}: {match}"
    assert match.worst_stability_diff <= MAX_STABILITY_DIFF, f"{name}: {match}"
    for i, j in enumerate(partner):
        assert records[j]["crop_box"] == expected["crop_box"][i].tolist(), (name, i)
    check_records_are_consistent(records, frames[0].shape[:2], output_mode)
    if output_mode == "coco_rle":
        # Meta's strings for masks that came out identical; ours are what pycocotools makes.
        for i, j in enumerate(partner):
            ours = records[j]["segmentation"]
            assert ours["size"] == expected["coco_size"][i].tolist() and isinstance(ours["counts"], str)
            if mask_iou(segmentation_to_mask(ours, output_mode), expected["masks"][i]) == 1.0:
                assert ours["counts"] == str(expected["coco_counts"][i]), (name, i)


# ----------------------------------------------------------------------------- NMS
def _reference_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Greedy NMS written pair by pair, as torchvision's CPU kernel does it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    removed, keep = set(), []
    for rank, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            w = max(0.0, min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]))
            h = max(0.0, min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]))
            union = area[i] + area[j] - w * h
            if union > 0 and w * h / union > threshold:
                removed.add(j)
    return keep


def _random_boxes(rng, n: int) -> torch.Tensor:
    corners = rng.integers(0, 60, size=(n, 2))
    sizes = rng.integers(0, 40, size=(n, 2))  # some boxes are empty
    return torch.tensor(np.concatenate([corners, corners + sizes], axis=1), dtype=torch.float32)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
def test_nms_matches_a_pairwise_greedy_nms(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for trial in range(20):
        boxes = _random_boxes(rng, 1 + trial * 7)
        scores = torch.tensor(rng.choice([0.1, 0.5, 0.5, 0.9], size=len(boxes)) if trial % 2 else
                              rng.random(len(boxes)), dtype=torch.float32)  # ties on odd trials
        want = _reference_nms(boxes.tolist(), scores.tolist(), threshold)
        assert nms(boxes, scores, threshold).tolist() == want, (threshold, trial)


def test_nms_is_greedy_and_keeps_order_of_ties():
    # A suppresses B; B would have suppressed C, but B is gone, so C stays.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 14], [0, 6, 10, 16]], dtype=torch.float32)
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    # Identical boxes with equal scores: the first one is kept.
    same = torch.tensor([[0, 0, 5, 5]] * 3, dtype=torch.float32)
    assert nms(same, torch.tensor([0.5, 0.5, 0.5]), 0.7).tolist() == [0]
    assert nms(same, torch.tensor([0.5, 0.6, 0.6]), 0.7).tolist() == [1]
    # At threshold 1.0 nothing is suppressed; the result is in descending score order.
    assert nms(same, torch.tensor([0.2, 0.9, 0.5]), 1.0).tolist() == [1, 2, 0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_batched_nms_keeps_categories_apart():
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 60)
    scores = torch.tensor(rng.random(60), dtype=torch.float32)
    categories = torch.tensor(rng.integers(0, 3, 60))
    kept = batched_nms(boxes, scores, categories, 0.5).tolist()
    want = []
    for c in range(3):
        members = torch.nonzero(categories == c).flatten().tolist()
        want += [members[k] for k in _reference_nms(boxes[members].tolist(), scores[members].tolist(), 0.5)]
    assert sorted(kept) == sorted(want)
    assert kept == sorted(kept, key=lambda i: -scores[i].item())  # highest score first
    # Two identical boxes: both stay in different categories, one in the same category.
    pair, pair_scores = boxes[:1].repeat(2, 1), torch.tensor([0.8, 0.9])
    assert batched_nms(pair, pair_scores, torch.tensor([0, 1]), 0.1).tolist() == [1, 0]
    assert batched_nms(pair, pair_scores, torch.tensor([2, 2]), 0.1).tolist() == [1]


# ----------------------------------------------------------------------------- small regions
def test_remove_small_regions_fills_holes_and_drops_islands():
    logits = torch.full((1, 14, 14), -5.0)
    logits[0, 1:11, 1:11] = 5.0  # an object ...
    logits[0, 2, 2:4] = 0.0  # ... with a 2-px hole (a logit of 0 is background) ...
    logits[0, 4, 4] = logits[0, 5, 5] = logits[0, 6, 6] = -1.0  # ... a 3-px diagonal one (8-connected) ...
    logits[0, 7:10, 7:10] = -2.0  # ... and an 8-px ring-shaped one
    logits[0, 8, 8] = 3.0  # around a 1-px island
    logits[0, 12, 12] = 4.0  # a 1-px island outside
    logits[0, 12, 1] = logits[0, 13, 2] = 4.0  # and a 2-px diagonal one
    out = remove_small_regions(logits, max_area=2)
    assert out[0, 2, 2] == out[0, 2, 3] == 10.0  # small hole filled
    assert out[0, 5, 5] == -1.0 and out[0, 7, 7] == -2.0  # holes of 3 and 8 px are too big
    assert out[0, 8, 8] == out[0, 12, 12] == out[0, 12, 1] == out[0, 13, 2] == -10.0  # islands removed
    assert (out != logits).sum().item() == 6
    # Both kinds are found on the logits as given: an island in a hole that gets filled is
    # still removed (it was an island), as in Meta's predictor.
    ring = torch.full((1, 5, 5), 5.0)
    ring[0, 1:4, 1:4] = -1.0
    ring[0, 2, 2] = 1.0
    out = remove_small_regions(ring, max_area=8)
    assert out[0, 1, 1] == 10.0 and out[0, 2, 2] == -10.0
    assert torch.equal(remove_small_regions(ring, max_area=0), ring)


def test_min_mask_region_area_changes_generated_masks():
    """On its own, through the generator: masks with the option applied have no small holes or
    islands left at low resolution, so their full-size masks differ from those without."""
    case, frames, _ = load_case("amg_t21_512_min_region")
    plain = build_case_generator(case, min_mask_region_area=0, points_per_side=2).generate(frames[0])
    cleaned = build_case_generator(case, points_per_side=2).generate(frames[0])
    assert len(plain) == len(cleaned) == 12
    changed = [not np.array_equal(a["segmentation"], b["segmentation"]) for a, b in zip(plain, cleaned, strict=True)]
    assert sum(changed) >= 6
    assert [r["predicted_iou"] for r in plain] == [r["predicted_iou"] for r in cleaned]


# ----------------------------------------------------------------------------- score filters
@pytest.fixture(scope="module")
def grid_everything():
    """The grid_single case's image and points, three masks a point, nothing filtered."""
    case, frames, _ = load_case("amg_t21_512_grid_single")
    records = build_case_generator(case, multimask_output=True).generate(frames[0])
    assert len(records) == 33
    return case, frames, records


def test_thresholds_filter_exactly_as_meta(grid_everything):
    """pred_iou_thresh keeps scores strictly above it, stability_score_thresh keeps scores at or
    above it; with a threshold of 0 there is no filtering at all."""
    case, frames, everything = grid_everything
    ious = sorted(r["predicted_iou"] for r in everything)
    iou_thresh = ious[len(ious) // 3]
    stabilities = sorted(r["stability_score"] for r in everything if r["predicted_iou"] > iou_thresh)
    stability_thresh = stabilities[len(stabilities) // 3]
    filtered = build_case_generator(case, multimask_output=True, pred_iou_thresh=iou_thresh,
                                    stability_score_thresh=stability_thresh).generate(frames[0])

    def key(r):
        return (tuple(r["point_coords"][0]), r["predicted_iou"])

    want = {key(r) for r in everything if r["predicted_iou"] > iou_thresh and r["stability_score"] >= stability_thresh}
    assert {key(r) for r in filtered} == want
    assert 0 < len(want) < len(everything)
    assert any(r["stability_score"] == stability_thresh for r in filtered)  # >= keeps the equal one
    assert all(r["predicted_iou"] != iou_thresh for r in filtered)  # > drops it


def test_stability_offset_and_mask_threshold_act_on_the_logits(grid_everything):
    case, frames, base = grid_everything
    shifted = build_case_generator(case, multimask_output=True, mask_threshold=1.0,
                                   stability_score_offset=0.5).generate(frames[0])
    assert [r["predicted_iou"] for r in base] == [r["predicted_iou"] for r in shifted]
    for a, b in zip(base, shifted, strict=True):
        assert b["segmentation"].sum() < a["segmentation"].sum()  # a higher threshold, smaller masks
        assert b["stability_score"] != a["stability_score"]


# ----------------------------------------------------------------------------- encodings, grids, crops
def test_run_length_encoding_round_trips_and_matches_pycocotools():
    rng = np.random.default_rng(3)
    masks = [np.zeros((7, 5), bool), np.ones((7, 5), bool), rng.random((31, 17)) > 0.5, rng.random((4, 9)) > 0.9]
    masks[3][0, 0] = True  # a run of zeros of length 0 first
    for mask in masks:
        rle = mask_to_rle(mask)
        assert rle["size"] == list(mask.shape) and sum(rle["counts"]) == mask.size
        assert np.array_equal(rle_to_mask(rle), mask)
        assert rle_area(rle) == mask.sum()
        assert coco_encode_rle(rle) == {
            "size": list(mask.shape), "counts": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
            .decode()}
    assert mask_to_rle(np.array([[True, False], [True, True]]))["counts"] == [0, 2, 1, 1]


def test_output_modes_give_the_same_masks():
    case, frames, _ = load_case("amg_t21_512_crops")
    generator = build_case_generator(case, crop_n_layers=0, points_per_side=2, box_nms_thresh=1.0)
    results = {}
    for mode in ("binary_mask", "uncompressed_rle", "coco_rle"):
        generator.output_mode = mode
        results[mode] = generator.generate(frames[0])
        check_records_are_consistent(results[mode], frames[0].shape[:2], mode)
    binary = [r["segmentation"] for r in results["binary_mask"]]
    assert len(binary) == 12
    assert all(set(r["segmentation"]) == {"size", "counts"} for r in results["uncompressed_rle"])
    for mode in ("uncompressed_rle", "coco_rle"):
        assert all(np.array_equal(segmentation_to_mask(r["segmentation"], mode), m)
                   for r, m in zip(results[mode], binary, strict=True))
    json.dumps(results["coco_rle"])  # JSON-ready, as upstream
    json.dumps(results["uncompressed_rle"])


def test_point_grid_and_crop_boxes():
    assert build_point_grid(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    boxes, layers = generate_crop_boxes((48, 64), 1, 0.6)
    assert boxes == [[0, 0, 64, 48], [0, 0, 46, 38], [0, 10, 46, 48], [18, 0, 64, 38], [18, 10, 64, 48]]
    assert layers == [0, 1, 1, 1, 1]
    boxes, layers = generate_crop_boxes((1500, 2000), 2, 512 / 1500)
    assert len(boxes) == 1 + 4 + 16 and layers.count(2) == 16
    assert all(x1 <= 2000 and y1 <= 1500 for _, _, x1, y1 in boxes)


def test_parameters_are_checked():
    model = load_model("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512,
                       postprocessing=False)
    with pytest.raises(ValueError, match="exactly one"):
        SAM2AutomaticMaskGenerator(model, points_per_side=4, point_grids=[build_point_grid(2)])
    with pytest.raises(ValueError, match="exactly one"):
        SAM2AutomaticMaskGenerator(model, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        SAM2AutomaticMaskGenerator(model, output_mode="png")
    with pytest.raises(ValueError, match="grid per crop layer"):
        SAM2AutomaticMaskGenerator(model, points_per_side=None, point_grids=[build_point_grid(2)], crop_n_layers=1)
    generator = SAM2AutomaticMaskGenerator(model, points_per_side=2)
    with pytest.raises(ValueError, match="uint8"):
        generator.generate(np.zeros((10, 10), np.uint8))


# ----------------------------------------------------------------------------- progress, cancel, builder
def test_cancel_stops_generation():
    """Returning False from the progress callback stops the run there (the app's Cancel)."""
    case, frames, _ = load_case("amg_t21_512_crops")
    generator = build_case_generator(case, points_per_batch=3)  # 16 + 4 x 4 points: 6 + 4 x 2 batches
    calls: list[Progress] = []

    def stop_after_two(p: Progress) -> bool:
        calls.append(p)
        return p.done < 2

    with pytest.raises(GenerationCancelled, match="2 of 14"):
        generator.generate(frames[0], progress=stop_after_two)
    assert [(p.done, p.total, p.crop, p.crops) for p in calls] == [(0, 14, 0, 5), (1, 14, 0, 5), (2, 14, 0, 5)]

    class Stop(Exception):
        pass

    def raise_at_start(p: Progress) -> None:
        raise Stop

    with pytest.raises(Stop):
        generator.generate(frames[0], progress=raise_at_start)


def test_builder_and_lazy_export(reference_checkpoint):
    generator = sam2.build_automatic_mask_generator(None, reference_checkpoint, points_per_side=8,
                                                    pred_iou_thresh=0.5, output_mode="coco_rle")
    assert isinstance(generator, sam2.SAM2AutomaticMaskGenerator)
    config = generator.model.config
    assert config.image_size == 1024 and not config.dynamic_multimask_via_stability
    assert len(generator.point_grids[0]) == 64 and generator.pred_iou_thresh == 0.5
    assert generator.output_mode == "coco_rle" and generator.predictor.precision.name == "float32"
    small = sam2.build_automatic_mask_generator("sam2.1_hiera_t", reference_checkpoint, image_size=512,
                                                precision="bfloat16")
    assert small.model.config.image_size == 512 and small.predictor.precision.name == "bfloat16"
