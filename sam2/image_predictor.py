"""`SAM2ImagePredictor`: Meta's image predictor API (`set_image`, `predict`)."""

from __future__ import annotations

import numpy as np
import torch

from .modeling.sam2_model import ImageFeatures, Points, SAM2Model
from .precision import Precision
from .transforms import image_to_input, resize_logits


class SAM2ImagePredictor:
    def __init__(self, model: SAM2Model, mask_threshold: float = 0.0, precision: str = "float32") -> None:
        """precision: "float32" (exact) or "bfloat16"/"float16" (autocast; see SAM2VideoPredictor)."""
        self.model = model.eval()
        self.mask_threshold = mask_threshold
        self.precision = Precision(precision, model.device)
        self._features: ImageFeatures | None = None
        self._orig_hw: tuple[int, int] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def set_image(self, image) -> None:
        """Encode an H x W x 3 uint8 RGB image (numpy array or PIL image) once for many prompts."""
        image = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Expected an H x W x 3 uint8 RGB image; got shape {image.shape}, dtype {image.dtype}")
        x = image_to_input(image, self.model.config.image_size)[None].to(self.device)
        with self.precision():
            features = self.model.encode_image(x)
        # A single image has no memory: the "no memory" embedding stands in, as on video.
        c = features.image_embed.shape[1]
        features.image_embed = features.image_embed + self.model.no_mem_embed.view(1, c, 1, 1)
        self._features = features
        self._orig_hw = image.shape[:2]

    def reset_predictor(self) -> None:
        self._features, self._orig_hw = None, None

    @torch.inference_mode()
    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set (or B boxes / point sets at once).

        point_coords (N, 2) or (B, N, 2) as (x, y) with point_labels (N,) / (B, N);
        box (4,) or (B, 4) as x0, y0, x1, y1; mask_input (1, 256, 256) low-res logits from an
        earlier call. Returns masks (C, H, W), scores (C,), low-res logits (C, 256, 256), with
        a leading B axis in batched use.
        """
        if self._features is None:
            raise RuntimeError("Call set_image(...) before predict(...).")
        points = self._prompt_points(point_coords, point_labels, box, normalize_coords)
        batch = points.coords.shape[0] if points is not None else 1
        features = self._features.expand(batch)
        if mask_input is not None:
            mask_input = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=self.device)
            mask_input = mask_input[None] if mask_input.dim() == 3 else mask_input
        with self.precision():
            out = self.model.predict_masks(features.image_embed, features.high_res, points, mask_input,
                                           multimask_output)
        masks = resize_logits(out.masks.float(), *self._orig_hw)
        low_res = out.masks.float().clamp(-32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        results = (masks.float(), out.iou_scores.float(), low_res)
        if batch == 1:
            results = tuple(r[0] for r in results)
        return tuple(r.cpu().numpy() for r in results)  # type: ignore[return-value]

    def _prompt_points(self, coords, labels, box, normalize: bool) -> Points | None:
        """Prompts -> Points in model-input pixels, box corners (labels 2, 3) first."""
        if (coords is None) != (labels is None):
            raise ValueError("point_coords and point_labels must be given together.")
        h, w = self._orig_hw
        scale = torch.tensor([float(w), float(h)]) if normalize else torch.ones(2)
        size = self.model.config.image_size
        parts = []
        if box is not None:
            corners = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(-1, 2, 2)
            parts.append((corners, torch.tensor([[2, 3]], dtype=torch.int32).expand(corners.shape[0], 2)))
        if coords is not None:
            pts = torch.as_tensor(np.asarray(coords, dtype=np.float32))
            lbl = torch.as_tensor(np.asarray(labels, dtype=np.int32))
            pts, lbl = (pts[None], lbl[None]) if pts.dim() == 2 else (pts, lbl)
            if pts.shape[:2] != lbl.shape[:2]:
                raise ValueError(f"Got {pts.shape[1]} points but {lbl.shape[-1]} labels.")
            parts.append((pts, lbl))
        if not parts:
            return None
        if len(parts) == 2 and parts[0][0].shape[0] != parts[1][0].shape[0]:
            parts[0] = (parts[0][0].expand(parts[1][0].shape[0], -1, -1), parts[0][1].expand(parts[1][0].shape[0], -1))
        if not all(torch.isfinite(p[0]).all() for p in parts):
            raise ValueError("Point and box coordinates must be finite numbers.")
        all_coords = torch.cat([p[0] for p in parts], dim=1) / scale * size
        all_labels = torch.cat([p[1] for p in parts], dim=1)
        return Points(all_coords.to(self.device), all_labels.to(self.device))
