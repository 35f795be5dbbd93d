"""Image preprocessing, coordinate mapping and mask postprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGE_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean) / std


def video_frame_to_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """HxWx3 uint8 -> (3, S, S) float32, resized with Pillow's bicubic filter (as SAM 2's
    video loader does), scaled to [0, 1] and normalised."""
    resized = Image.fromarray(frame).resize((image_size, image_size))
    x = torch.from_numpy(np.asarray(resized) / 255.0).permute(2, 0, 1).float()
    return _normalise(x)


def image_to_input(image: np.ndarray, image_size: int) -> torch.Tensor:
    """HxWx3 uint8 -> (3, S, S) float32 the way SAM 2's image predictor does it:
    scale to [0, 1] first, then an antialiased bilinear resize of the float image."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    x = F.interpolate(x[None], (image_size, image_size), mode="bilinear", align_corners=False, antialias=True)[0]
    return _normalise(x)


def points_to_input(points: torch.Tensor, width: int, height: int, image_size: int) -> torch.Tensor:
    """Pixel (x, y) coordinates (..., 2) in a W x H frame -> model-input pixels."""
    return points / torch.tensor([float(width), float(height)]) * image_size


def resize_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, h, w) mask logits -> (B, 1, H, W), bilinear."""
    if logits.shape[-2:] == (height, width):
        return logits
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn small background regions (logits <= 0, 8-connected, area <= max_area) inside
    (B, 1, h, w) mask logits into foreground with a small positive logit (0.1)."""
    if max_area <= 0:
        return mask_logits
    background = (mask_logits <= 0).cpu().numpy().astype(np.uint8)
    holes = np.zeros_like(background, dtype=bool)
    for index in np.ndindex(background.shape[:2]):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background[index], connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area)
        small = small[small > 0]  # label 0 is the foreground around the regions
        if small.size:
            holes[index] = np.isin(labels, small)
    if not holes.any():
        return mask_logits
    return torch.where(torch.from_numpy(holes).to(mask_logits.device), 0.1, mask_logits)
