"""Make automatic-mask-generator parity cases (tests/fixtures/amg_*) with Meta's own code.

Meta's `sam2` 1.1.0 runs from its PyPI source, as in scripts/bench_meta.py: `pip download
sam2==1.1.0 --no-deps`, untar it, and put its pure-Python dependencies in a folder
(`pip install --target DEPS hydra-core omegaconf iopath tqdm antlr4-python3-runtime==4.9.3
portalocker --no-deps`). Then, from outside this repository (Meta's package is also `sam2`):

    cd /tmp && python /path/to/repo/scripts/make_amg_cases.py --meta-src sam2-1.1.0 --deps deps

What stands in for the parts of Meta's package that cannot run here, each an exact
equivalent written in this script (nothing of our `sam2` package is used):
- torchvision (absent): `batched_nms` and `box_area` in plain torch (greedy NMS after a stable
  descending sort, categories offset apart), and the image transforms of its image predictor
  (to [0, 1], antialiased bilinear resize of the float image, normalise);
- its CUDA connected-components kernel (absent on CPU, where upstream would skip the small
  hole and island removal with a warning): 8-connected components with OpenCV, labels and
  per-pixel component areas in the kernel's format;
- for a 512 model only: its image predictor's feature sizes are hard-coded for 1024 and are
  set from the model's image size (image_size / 4, / 8, / 16).
The weights are the reference weights (tests/reference.py, loaded by path), the model is built
with `build_sam2(..., apply_postprocessing=False)`, and every case's `generator` keywords go to
`SAM2AutomaticMaskGenerator` unchanged. Not imported by the tests: its output is committed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """Textured background with a few flat shapes, some small and some thin, so that masks
    have small holes and islands at the model's low resolution."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, 3)
    image = np.stack([127 + 90 * np.sin(xx / (7 + 3 * c) + yy / (11 - 2 * c) + phase[c]) for c in range(3)], -1)
    image += rng.normal(0, 25, image.shape)
    shapes = [
        ((0.3, 0.45), 0.16, (225, 40, 40)),
        ((0.72, 0.3), 0.1, (40, 60, 220)),
        ((0.6, 0.75), 0.05, (240, 240, 240)),
        ((0.15, 0.8), 0.03, (20, 20, 20)),
    ]
    for (cx, cy), radius, colour in shapes:
        image[(xx - cx * width) ** 2 + (yy - cy * height) ** 2 < (radius * min(width, height)) ** 2] = colour
    image[:, int(0.5 * width) : int(0.5 * width) + max(2, width // 60)] = (30, 180, 60)  # a thin bar
    return np.clip(image, 0, 255).astype(np.uint8)


# Each case: model, image (width, height, seed), generator keywords (the rest: upstream defaults).
# With the reference weights masks are large speckled blobs whose boxes span the image, predicted
# IoUs lie in 0.3-0.55 (upstream's default pred_iou_thresh=0.8 would keep nothing) and NMS below
# 1.0 keeps one mask per crop; thresholds are set in gaps of the scores, away from near-ties.
_ANYTHING = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
CASES: dict[str, dict] = {
    # Non-default filters: predicted IoU, stability (with its offset) and the mask threshold.
    "amg_t21_512_thresholds": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (200, 150, 1),
        "generator": {"points_per_side": 6, "points_per_batch": 16, "pred_iou_thresh": 0.4,
                      "stability_score_thresh": 0.765, "stability_score_offset": 0.5, "mask_threshold": 0.25,
                      "box_nms_thresh": 1.0},
    },
    # Small holes and islands of the low-res masks (16 px at 128 x 128) filled / removed.
    "amg_t21_512_min_region": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (200, 150, 1),
        "generator": {"points_per_side": 5, **_ANYTHING, "min_mask_region_area": 16},
    },
    # COCO run-length encoding of the masks (expected.npz also keeps the `counts` strings).
    "amg_t21_512_coco_rle": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (160, 120, 4),
        "generator": {"points_per_side": 4, **_ANYTHING, "output_mode": "coco_rle"},
    },
    # Explicit, irregular points (some near the border), one mask per point, batches of 4.
    "amg_t21_512_grid_single": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (180, 140, 5),
        "generator": {"points_per_side": None, "point_grids": [[[0.01, 0.02], [0.5, 0.5], [0.99, 0.98],
                                                                [0.25, 0.8], [0.8, 0.2], [0.33, 0.33],
                                                                [0.1, 0.6], [0.6, 0.1], [0.7, 0.7],
                                                                [0.05, 0.95], [0.45, 0.55]]],
                      "points_per_batch": 4, "multimask_output": False, **_ANYTHING},
    },
    # Mask-to-mask refinement, after which the predicted-IoU filter and small-region removal apply.
    "amg_t21_512_m2m_min_region": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (160, 120, 6),
        "generator": {"points_per_side": 4, "points_per_batch": 5, "use_m2m": True, "min_mask_region_area": 8,
                      **_ANYTHING},
    },
    # Crops that keep their masks: on a 64 x 48 image with a large overlap every crop edge lies
    # within 20 px of the image's, NMS keeps one mask per crop, and between crops (0.5) the
    # whole-image mask loses to the smaller crops' masks.
    "amg_t21_512_crops": {
        "config": "sam2.1_hiera_t", "image_size": 512, "image": (64, 48, 3),
        "generator": {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                      "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "crop_overlap_ratio": 0.6,
                      "box_nms_thresh": 0.7, "crop_nms_thresh": 0.5},
    },
}


# ----------------------------------------------------------------------------- stand-ins
def _install_torchvision_stand_in() -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    def box_area(boxes: torch.Tensor) -> torch.Tensor:
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        # torchvision's CPU kernel, pair by pair.
        order = torch.sort(scores, descending=True, stable=True).indices.tolist()
        b = boxes.tolist()
        areas = box_area(boxes).tolist()
        suppressed = [False] * len(order)
        keep = []
        for pos, i in enumerate(order):
            if suppressed[pos]:
                continue
            keep.append(i)
            for later in range(pos + 1, len(order)):
                j = order[later]
                if suppressed[later]:
                    continue
                w = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
                h = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
                inter = np.float32(w) * np.float32(h)
                union = np.float32(areas[i]) + np.float32(areas[j]) - inter
                with np.errstate(invalid="ignore", divide="ignore"):
                    if np.float32(inter) / np.float32(union) > iou_threshold:
                        suppressed[later] = True
        return torch.tensor(keep, dtype=torch.long)

    def batched_nms(boxes, scores, idxs, iou_threshold):
        if boxes.numel() == 0:
            return torch.empty(0, dtype=torch.long)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    class ToTensor:
        def __call__(self, image):
            return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0

    class Resize(nn.Module):
        def __init__(self, size: tuple[int, int]) -> None:
            super().__init__()
            self.size = size

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None], self.size, mode="bilinear", align_corners=False, antialias=True)[0]

    class Normalize(nn.Module):
        def __init__(self, mean: list[float], std: list[float]) -> None:
            super().__init__()
            self.mean, self.std = mean, std

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
            return (x - mean) / std

    torchvision = types.ModuleType("torchvision")
    ops, boxes_mod, transforms = (types.ModuleType(f"torchvision.{n}") for n in ("ops", "ops.boxes", "transforms"))
    boxes_mod.batched_nms, boxes_mod.box_area = batched_nms, box_area
    transforms.ToTensor, transforms.Resize, transforms.Normalize = ToTensor, Resize, Normalize
    torchvision.ops, ops.boxes, torchvision.transforms = ops, boxes_mod, transforms
    sys.modules.update({"torchvision": torchvision, "torchvision.ops": ops, "torchvision.ops.boxes": boxes_mod,
                        "torchvision.transforms": transforms})


def _connected_components(mask):
    """The CUDA kernel's output for (N, 1, H, W) binary masks: 8-connected labels (0 where the
    mask is 0) and, per pixel, the area of its component (0 where the mask is 0)."""
    import cv2
    import torch

    binary = mask.to(torch.uint8).cpu().numpy()
    labels = np.zeros(binary.shape, np.int32)
    areas = np.zeros(binary.shape, np.int32)
    for n in range(binary.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(binary[n, 0], connectivity=8)
        labels[n, 0] = lab
        areas[n, 0] = np.where(lab > 0, stats[lab, cv2.CC_STAT_AREA], 0)
    return torch.from_numpy(labels), torch.from_numpy(areas)


def _load_reference_module():
    spec = importlib.util.spec_from_file_location("reference_weights", REPO / "tests" / "reference.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ----------------------------------------------------------------------------- running Meta's generator
def build_meta_generator(config: str, image_size: int, generator: dict, reference):
    import torch

    import sam2.utils.misc  # Meta's
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.build_sam import build_sam2

    sam2.utils.misc.get_connected_components = _connected_components
    family = "sam2.1" if config.startswith("sam2.1") else "sam2"
    overrides = [f"++model.image_size={image_size}"] if image_size != 1024 else []
    model = build_sam2(f"configs/{family}/{config}.yaml", ckpt_path=None, device="cpu",
                       apply_postprocessing=False, hydra_overrides_extra=overrides)
    model.load_state_dict(reference.reference_state_dict(config), strict=True)
    model.eval()
    generator = dict(generator)
    if generator.get("point_grids") is not None:
        generator["point_grids"] = [np.array(grid, dtype=np.float64) for grid in generator["point_grids"]]
    generator_obj = SAM2AutomaticMaskGenerator(model, **generator)
    generator_obj.predictor._bb_feat_sizes = [(image_size // s, image_size // s) for s in (4, 8, 16)]
    torch.set_grad_enabled(False)
    return generator_obj


def records_to_arrays(records: list[dict], image_hw: tuple[int, int], output_mode: str) -> dict[str, np.ndarray]:
    from pycocotools import mask as mask_utils

    if output_mode == "binary_mask":
        masks = [r["segmentation"] for r in records]
    elif output_mode == "coco_rle":
        masks = [mask_utils.decode({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"]})
                 .astype(bool) for r in records]
    else:
        raise ValueError(output_mode)
    arrays = {
        "masks": np.array(masks, dtype=bool).reshape(len(records), *image_hw),
        "predicted_iou": np.array([r["predicted_iou"] for r in records], np.float64),
        "stability_score": np.array([r["stability_score"] for r in records], np.float64),
        "area": np.array([r["area"] for r in records], np.float64),
        "bbox": np.array([r["bbox"] for r in records], np.float64).reshape(-1, 4),
        "point_coords": np.array([r["point_coords"][0] for r in records], np.float64).reshape(-1, 2),
        "crop_box": np.array([r["crop_box"] for r in records], np.float64).reshape(-1, 4),
    }
    if output_mode == "coco_rle":
        arrays["coco_counts"] = np.array([r["segmentation"]["counts"] for r in records], dtype=str)
        arrays["coco_size"] = np.array([r["segmentation"]["size"] for r in records], np.int64).reshape(-1, 2)
    return arrays


def make_case(name: str, spec: dict, out: Path, reference) -> None:
    from PIL import Image

    width, height, seed = spec["image"]
    image = synthetic_image(width, height, seed)
    generator = build_meta_generator(spec["config"], spec["image_size"], spec["generator"], reference)
    records = generator.generate(image)
    arrays = records_to_arrays(records, image.shape[:2], spec["generator"].get("output_mode", "binary_mask"))
    folder = out / name
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "frames" / "00000.png")
    family = "sam2.1" if spec["config"].startswith("sam2.1") else "sam2"
    case = {"kind": "amg", "family": family, "config": spec["config"], "image_size": spec["image_size"],
            "generator": spec["generator"]}
    (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    np.savez_compressed(folder / "expected.npz", **arrays)
    size_kb = (folder / "expected.npz").stat().st_size / 1024
    print(f"{name}: {len(records)} masks, image {width}x{height}, expected.npz {size_kb:.0f} KB")
    if spec["generator"].get("min_mask_region_area", 0) > 0:
        # Does the option matter on this image? Scores do not depend on it, so with nothing
        # suppressed the records come in the same order.
        plain = build_meta_generator(spec["config"], spec["image_size"],
                                     {**spec["generator"], "min_mask_region_area": 0}, reference).generate(image)
        plain_masks = records_to_arrays(plain, image.shape[:2], "binary_mask")["masks"]
        changed = sum(not np.array_equal(a, b) for a, b in zip(plain_masks, arrays["masks"], strict=True))
        print(f"  without min_mask_region_area {changed} of {len(records)} masks differ")


def verify_against(folder: Path, reference) -> bool:
    """Re-make an existing amg case (e.g. the shared reference ones) with these stand-ins and
    report whether every record comes out the same."""
    from PIL import Image

    case = json.loads((folder / "case.json").read_text())
    image = np.asarray(Image.open(folder / "frames" / "00000.png").convert("RGB"))
    generator = build_meta_generator(case["config"], case["image_size"], case["generator"], reference)
    arrays = records_to_arrays(generator.generate(image), image.shape[:2],
                               case["generator"].get("output_mode", "binary_mask"))
    expected = np.load(folder / "expected.npz")
    # Float noise (another machine, other thread counts) moves scores by ~1e-7 and can reorder
    # near-ties: pair each expected mask with an unused one of the same point and best IoU.
    unused = set(range(len(arrays["masks"])))
    worst_iou, worst_score = 1.0, 0.0
    for i, mask in enumerate(expected["masks"]):
        same_point = [j for j in unused
                      if np.abs(arrays["point_coords"][j] - expected["point_coords"][i]).max() <= 1e-3]
        if not same_point:
            worst_iou = 0.0
            continue
        ious = [(mask & arrays["masks"][j]).sum() / max((mask | arrays["masks"][j]).sum(), 1) for j in same_point]
        j = same_point[int(np.argmax(ious))]
        unused.discard(j)
        worst_iou = min(worst_iou, max(ious))
        worst_score = max(worst_score, abs(arrays["predicted_iou"][j] - expected["predicted_iou"][i]))
    same = len(arrays["masks"]) == len(expected["masks"]) and worst_iou >= 0.9999 and worst_score <= 1e-5
    print(f"{folder.name}: {len(arrays['masks'])} masks (expected {len(expected['masks'])}), worst IoU "
          f"{worst_iou:.6f}, worst predicted_iou difference {worst_score:.2e}: {'same' if same else 'DIFFERENT'}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-src", type=Path, required=True, help="unpacked sam2 1.1.0 source folder")
    parser.add_argument("--deps", type=Path, required=True, help="folder with hydra-core, omegaconf, iopath, ...")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    parser.add_argument("--verify", type=Path, nargs="*", default=[],
                        help="existing case folders to re-make and compare instead (checks the stand-ins)")
    parser.add_argument("cases", nargs="*", help="names of cases to make (default: all)")
    args = parser.parse_args()
    reference = _load_reference_module()
    sys.path[:0] = [str(args.deps.resolve()), str(args.meta_src.resolve())]
    _install_torchvision_stand_in()
    if args.verify:
        sys.exit(0 if all([verify_against(folder, reference) for folder in args.verify]) else 1)
    for name in args.cases or CASES:
        make_case(name, CASES[name], args.out, reference)


if __name__ == "__main__":
    main()
