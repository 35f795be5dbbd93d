"""`SAM2AutomaticMaskGenerator`: "segment everything" with Meta's API, parameters and records.

A grid of single-point prompts is laid over the image (and, with `crop_n_layers`, over
overlapping crops of it). Every point gives three candidate masks (one with
`multimask_output=False`); candidates with a low predicted IoU or an unstable mask are
dropped, as are masks that touch a crop's inner edge, and duplicates are removed by box NMS,
first within each crop and then between crops. What comes back is Meta's list of records:
`segmentation`, `area`, `bbox` (XYWH), `predicted_iou`, `point_coords`, `stability_score`,
`crop_box` (XYWH).

Two behaviours follow Meta's SAM 2 (not SAM 1) exactly:
- `min_mask_region_area` is applied to each candidate's low-resolution logits, before they
  are upsampled: background regions (8-connected, logits <= 0) of at most that many low-res
  pixels are filled (logit +10) and foreground islands of at most that size are removed
  (logit -10), both found on the unprocessed logits;
- with `use_m2m`, every candidate is predicted again from its own point with its low-res
  logits as the mask input (single-mask output), and the refined mask and score replace it.

For the app: `generate(image, progress=...)` calls `progress(Progress(...))` before the
work and after every batch of points; returning False (or raising) stops the run, and
`GenerationCancelled` is raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import product
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import torch

from .image_predictor import SAM2ImagePredictor
from .modeling.sam2_model import Points, SAM2Model
from .transforms import resize_logits

if TYPE_CHECKING:
    from PIL import Image

OutputMode = Literal["binary_mask", "uncompressed_rle", "coco_rle"]
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
CROP_EDGE_TOLERANCE = 20.0  # px: a box this close to a crop's inner edge is cut by the crop
LOW_RES_LOGIT_LIMIT = 32.0  # the low-res logits fed back as a mask input are clamped to +-this
FILLED_LOGIT = 10.0  # small holes get +this, small islands -this (relative to threshold 0)
_UPSAMPLE_CHUNK = 32  # masks upsampled to full size at a time (bounds memory, not results)
_NMS_ROWS = 1024  # rows of the pairwise IoU matrix computed at a time


class GenerationCancelled(Exception):
    """The progress callback asked to stop."""


@dataclass(frozen=True)
class Progress:
    """Where a `generate` run stands: `done` of `total` point batches, over all crops."""

    done: int
    total: int
    crop: int  # index of the crop being processed (0 = the whole image)
    crops: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], bool | None]


# ----------------------------------------------------------------------------- point grids, crops
def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (x, y) in [0, 1], at the centres of an n x n grid of cells, row by row."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has int(n_per_side / scale_per_layer**i) points a side."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes [x0, y0, x1, y1] and their layer: the whole image, then (2**i)**2 overlapping
    crops for layer i = 1..n_layers (the overlap shrinks with the crops)."""
    height, width = image_hw
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(height, width) * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer)
    return boxes, layers


# ----------------------------------------------------------------------------- NMS
def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of (N, 4) XYXY boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoU of XYXY boxes; two empty boxes give NaN (never above a threshold)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as torchvision's `nms`: visit boxes by descending score (stable sort, so
    ties keep their order), keep a box unless a kept one overlaps it with IoU > threshold.
    Returns the kept indices, highest score first."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = boxes[order]
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for start in range(0, len(order), _NMS_ROWS):
        overlaps = (box_iou(ordered[start : start + _NMS_ROWS], ordered) > iou_threshold).cpu().numpy()
        for row, i in enumerate(range(start, min(start + _NMS_ROWS, len(order)))):
            if not suppressed[i]:
                keep.append(i)
                suppressed |= overlaps[row]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category, as torchvision's `batched_nms`: each category's boxes are
    shifted by category * (largest coordinate + 1) so that boxes of different categories
    never overlap."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offsets = categories.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# ----------------------------------------------------------------------------- masks
def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """Area above threshold + offset over area above threshold - offset (an IoU, since one
    mask lies inside the other), per mask of (..., H, W) logits. 0/0 gives NaN, as upstream."""
    # Row sums in int16 where a row cannot overflow it: twice as fast as int32 on CPU.
    row_dtype = torch.int16 if logits.shape[-1] < 2**15 else torch.int32

    def area(binary: torch.Tensor) -> torch.Tensor:
        return binary.sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int32)

    return area(logits > (mask_threshold + offset)) / area(logits > (mask_threshold - offset))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) XYXY of the first and last occupied column and row
    (inclusive indices); [0, 0, 0, 0] for an empty mask."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.long, device=masks.device)

    def first_last(occupied: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(length, device=masks.device)
        last = torch.where(occupied, index, -1).amax(dim=-1)
        first = torch.where(occupied, index, length).amin(dim=-1)
        return first, last

    x0, x1 = first_last(masks.amax(dim=1), width)  # amax: faster than any() on CPU
    y0, y1 = first_last(masks.amax(dim=2), height)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where((x1 >= x0)[:, None], boxes, torch.zeros_like(boxes))


def _small_components(binary: np.ndarray, max_area: int) -> np.ndarray:
    """Pixels of the 8-connected True regions of at most `max_area` pixels, per (h, w) plane."""
    small = np.zeros_like(binary, dtype=bool)
    for index in np.ndindex(binary.shape[:-2]):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(binary[index].astype(np.uint8), connectivity=8)
        labels_small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area)
        labels_small = labels_small[labels_small > 0]  # label 0: the pixels that are False
        if labels_small.size:
            small[index] = np.isin(labels, labels_small)
    return small


def remove_small_regions(logits: torch.Tensor, max_area: int, threshold: float = 0.0) -> torch.Tensor:
    """Fill holes and drop islands of at most `max_area` pixels in (..., h, w) mask logits.

    Both kinds of region are found on the logits as given (8-connected): holes (logits <=
    threshold) become threshold + 10, islands (logits > threshold) threshold - 10. This is
    what Meta's image predictor does to low-res masks with `max_hole_area` and
    `max_sprinkle_area`, which its generator sets to `min_mask_region_area`.
    """
    if max_area <= 0:
        return logits
    values = logits.float().cpu().numpy()
    holes = torch.from_numpy(_small_components(values <= threshold, max_area)).to(logits.device)
    islands = torch.from_numpy(_small_components(values > threshold, max_area)).to(logits.device)
    logits = torch.where(holes, threshold + FILLED_LOGIT, logits)
    return torch.where(islands, threshold - FILLED_LOGIT, logits)


# ----------------------------------------------------------------------------- run-length encoding
def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """An H x W bool mask -> COCO's uncompressed RLE: {"size": [H, W], "counts": [...]},
    runs in column-major order, starting with a (possibly empty) run of zeros."""
    height, width = mask.shape
    flat = np.ascontiguousarray(mask.T).reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        counts = np.concatenate(([0], counts))
    return {"size": [height, width], "counts": counts.tolist()}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO's uncompressed RLE -> H x W bool mask."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(width, height).T


def rle_area(rle: dict[str, Any]) -> int:
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO's compressed RLE with `counts` as a str (JSON-ready)."""
    from pycocotools import mask as mask_utils

    height, width = rle["size"]
    encoded = mask_utils.frPyObjects(rle, height, width)
    encoded["counts"] = encoded["counts"].decode("utf-8")
    return encoded


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


# ----------------------------------------------------------------------------- candidates
@dataclass
class Candidates:
    """Masks kept so far, one row each, in full-image coordinates (masks as uncompressed RLE)."""

    rles: list[dict[str, Any]]
    boxes: torch.Tensor  # (N, 4) XYXY, long
    iou_preds: torch.Tensor  # (N,)
    stability: torch.Tensor  # (N,)
    points: torch.Tensor  # (N, 2) float32, the prompt point of each mask
    crop_boxes: torch.Tensor  # (N, 4) XYXY, long

    @staticmethod
    def empty() -> Candidates:
        return Candidates([], torch.zeros(0, 4, dtype=torch.long), torch.zeros(0), torch.zeros(0),
                          torch.zeros(0, 2), torch.zeros(0, 4, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.rles)

    def select(self, keep: torch.Tensor) -> Candidates:
        """The rows `keep` (indices, in that order, or a bool mask)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        picked = [self.rles[i] for i in keep.tolist()]
        tensors = {f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "rles"}
        return Candidates(picked, **tensors)

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        parts = [p for p in parts if len(p)] or [Candidates.empty()]
        rles = [rle for p in parts for rle in p.rles]
        tensors = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Candidates)
                   if f.name != "rles"}
        return Candidates(rles, **tensors)


# ----------------------------------------------------------------------------- the generator
class SAM2AutomaticMaskGenerator:
    def __init__(
        self,
        model: SAM2Model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: OutputMode = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        precision: str = "float32",
    ) -> None:
        """Meta's parameters, with Meta's defaults (tuned for the large model); see the module
        docstring. `point_grids` (one (N, 2) array in [0, 1] per crop layer) replaces
        `points_per_side`. `precision`: "float32" (exact) or "bfloat16"/"float16" (autocast)."""
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Give exactly one of points_per_side and point_grids.")
        if point_grids is None:
            point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        if len(point_grids) < crop_n_layers + 1:
            raise ValueError(f"point_grids needs a grid per crop layer ({crop_n_layers + 1}); got {len(point_grids)}.")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}: use one of {', '.join(OUTPUT_MODES)}.")
        if output_mode == "coco_rle":
            import pycocotools.mask  # noqa: F401  (fail now, not after minutes of work)
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be at least 1; got {points_per_batch}.")
        self.predictor = SAM2ImagePredictor(model, precision=precision)
        self.point_grids = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids]
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output

    @property
    def model(self) -> SAM2Model:
        return self.predictor.model

    @torch.inference_mode()
    def generate(
        self, image: np.ndarray | Image.Image, progress: ProgressCallback | None = None
    ) -> list[dict[str, Any]]:
        """Masks for everything in an H x W x 3 uint8 RGB image (or a PIL image), as Meta's
        records. `progress` is called before the work and after each batch of points; if it
        returns False, `GenerationCancelled` is raised (exceptions it raises pass through)."""
        image = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Expected an H x W x 3 uint8 RGB image; got shape {image.shape}, dtype {image.dtype}")
        candidates = self._generate_candidates(image, progress)
        return [self._record(candidates, i) for i in range(len(candidates))]

    # ------------------------------------------------------------------ stages
    def _generate_candidates(self, image: np.ndarray, progress: ProgressCallback | None) -> Candidates:
        crop_boxes, layers = generate_crop_boxes(image.shape[:2], self.crop_n_layers, self.crop_overlap_ratio)
        tracker = _ProgressTracker(progress, crops=len(crop_boxes),
                                   total=sum(self._batch_count(layer) for layer in layers))
        tracker.report()
        per_crop = []
        for index, (crop_box, layer) in enumerate(zip(crop_boxes, layers, strict=True)):
            tracker.crop = index
            per_crop.append(self._process_crop(image, crop_box, layer, tracker))
        candidates = Candidates.concat(per_crop)
        if len(crop_boxes) > 1:
            # Between crops, prefer the masks of smaller crops.
            scores = 1 / box_area(candidates.crop_boxes)
            keep = batched_nms(candidates.boxes.float(), scores, torch.zeros(len(candidates)), self.crop_nms_thresh)
            candidates = candidates.select(keep)
        return candidates

    def _batch_count(self, layer: int) -> int:
        return math.ceil(len(self.point_grids[layer]) / self.points_per_batch)

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, tracker: _ProgressTracker
    ) -> Candidates:
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        self.predictor.set_image(image[y0:y1, x0:x1])
        # Grid points in crop pixels, rounded to float32 as upstream's prompts are.
        points = torch.from_numpy(self.point_grids[layer] * np.array(crop_hw[::-1])[None]).float()
        batches = []
        for start in range(0, len(points), self.points_per_batch):
            batches.append(self._process_batch(points[start : start + self.points_per_batch], crop_hw, crop_box,
                                               image.shape[:2]))
            tracker.step()
        self.predictor.reset_predictor()
        candidates = Candidates.concat(batches)
        keep = batched_nms(candidates.boxes.float(), candidates.iou_preds, torch.zeros(len(candidates)),
                           self.box_nms_thresh)
        candidates = candidates.select(keep)
        offset = torch.tensor([x0, y0])
        candidates.boxes = candidates.boxes + offset.repeat(2)
        candidates.points = candidates.points + offset
        candidates.crop_boxes = torch.tensor([crop_box], dtype=torch.long).expand(len(candidates), 4)
        return candidates

    def _process_batch(
        self, points: torch.Tensor, crop_hw: tuple[int, int], crop_box: list[int], image_hw: tuple[int, int]
    ) -> Candidates:
        """One batch of grid points (crop pixels) -> the candidates that pass every filter,
        with boxes in crop pixels and masks (RLE) in full-image pixels."""
        low_res, iou_preds = self._predict(points, crop_hw, mask_input=None, multimask=self.multimask_output)
        per_point = low_res.shape[1]
        low_res, iou_preds = low_res.flatten(0, 1), iou_preds.flatten(0, 1)
        points = points.repeat_interleave(per_point, dim=0)
        if self.use_m2m:
            low_res, iou_preds = self._refine_with_m2m(points, crop_hw, low_res)
        index = torch.arange(len(iou_preds))
        if self.pred_iou_thresh > 0.0:
            index = index[iou_preds.cpu() > self.pred_iou_thresh]
        parts = [self._finish_masks(index[s : s + _UPSAMPLE_CHUNK], low_res, iou_preds, points, crop_hw, crop_box,
                                    image_hw) for s in range(0, len(index), _UPSAMPLE_CHUNK)]
        return Candidates.concat(parts)

    def _finish_masks(
        self,
        index: torch.Tensor,
        low_res: torch.Tensor,
        iou_preds: torch.Tensor,
        points: torch.Tensor,
        crop_hw: tuple[int, int],
        crop_box: list[int],
        image_hw: tuple[int, int],
    ) -> Candidates:
        """Upsample the candidates `index`, then filter by stability and crop edge, box and encode them."""
        logits = remove_small_regions(low_res[index], self.min_mask_region_area)
        logits = resize_logits(logits[:, None], *crop_hw)[:, 0]
        stability = stability_score(logits, self.mask_threshold, self.stability_score_offset)
        keep = stability >= self.stability_score_thresh if self.stability_score_thresh > 0.0 else None
        masks = logits > self.mask_threshold
        if keep is not None:
            index, stability, masks = index[keep], stability[keep], masks[keep]
        boxes = masks_to_boxes(masks)
        keep = ~_near_crop_edge(boxes, crop_box, [0, 0, image_hw[1], image_hw[0]])
        index, stability, masks, boxes = index[keep], stability[keep], masks[keep], boxes[keep]
        rles = [mask_to_rle(m) for m in _uncrop_masks(masks, crop_box, image_hw).cpu().numpy()]
        return Candidates(rles, boxes.cpu(), iou_preds[index].cpu(), stability.cpu(), points[index].cpu(),
                          torch.zeros(len(rles), 4, dtype=torch.long))

    def _refine_with_m2m(
        self, points: torch.Tensor, crop_hw: tuple[int, int], low_res: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict every candidate again from its point, with its own low-res logits as mask input."""
        mask_input = low_res.clamp(-LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT)[:, None]
        refined = [
            self._predict(points[s : s + self.points_per_batch], crop_hw,
                          mask_input=mask_input[s : s + self.points_per_batch], multimask=False)
            for s in range(0, len(points), self.points_per_batch)
        ]
        return torch.cat([r[0][:, 0] for r in refined]), torch.cat([r[1][:, 0] for r in refined])

    def _predict(
        self, points: torch.Tensor, crop_hw: tuple[int, int], mask_input: torch.Tensor | None, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One positive point per prompt set: (B, 2) crop pixels -> low-res logits (B, M, h, w)
        and predicted IoUs (B, M), float32."""
        height, width = crop_hw
        size = self.model.config.image_size
        coords = (points / torch.tensor([float(width), float(height)]) * size)[:, None].to(self.model.device)
        labels = torch.ones(len(points), 1, dtype=torch.int32, device=self.model.device)
        # The predictor's cached features of the crop (set_image), one copy per prompt set.
        features = self.predictor._features.expand(len(points))
        if mask_input is not None:
            mask_input = mask_input.to(self.model.device)
        with self.predictor.precision():
            out = self.model.predict_masks(features.image_embed, features.high_res, Points(coords, labels),
                                           mask_input, multimask)
        return out.masks.float(), out.iou_scores.float()

    def _record(self, candidates: Candidates, i: int) -> dict[str, Any]:
        rle = candidates.rles[i]
        if self.output_mode == "coco_rle":
            segmentation: Any = coco_encode_rle(rle)
        elif self.output_mode == "binary_mask":
            segmentation = rle_to_mask(rle)
        else:
            segmentation = rle
        return {
            "segmentation": segmentation,
            "area": rle_area(rle),
            "bbox": xyxy_to_xywh(candidates.boxes[i].float().tolist()),
            "predicted_iou": candidates.iou_preds[i].item(),
            "point_coords": [candidates.points[i].tolist()],
            "stability_score": candidates.stability[i].item(),
            "crop_box": xyxy_to_xywh(candidates.crop_boxes[i].float().tolist()),
        }


def _near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_box: list[int]) -> torch.Tensor:
    """Boxes (crop pixels) within 20 px of an edge of the crop that is not an edge of the image."""
    x0, y0, _, _ = crop_box
    boxes = (boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)).float()
    crop = torch.tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.tensor(image_box, dtype=torch.float, device=boxes.device)
    near_crop = torch.isclose(boxes, crop[None], atol=CROP_EDGE_TOLERANCE, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=CROP_EDGE_TOLERANCE, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def _uncrop_masks(masks: torch.Tensor, crop_box: list[int], image_hw: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) masks of a crop -> (N, H, W) in the image, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    height, width = image_hw
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return masks
    return torch.nn.functional.pad(masks, (x0, width - x1, y0, height - y1), value=False)


class _ProgressTracker:
    """Counts point batches over all crops and calls the user's callback."""

    def __init__(self, callback: ProgressCallback | None, crops: int, total: int) -> None:
        self.callback, self.crops, self.total = callback, crops, total
        self.done, self.crop = 0, 0

    def report(self) -> None:
        if self.callback is not None and self.callback(Progress(self.done, self.total, self.crop, self.crops)) is False:
            raise GenerationCancelled(f"Stopped after {self.done} of {self.total} point batches.")

    def step(self) -> None:
        self.done += 1
        self.report()
