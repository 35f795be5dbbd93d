"""Drawing on frames: object colours, mask overlays, prompt markers. Numpy/OpenCV only.

Frames are HxWx3 uint8 RGB; masks are HxW arrays (bool, or anything whose non-zero pixels
are the object). Where masks overlap, the object painted last wins: by default the larger id,
or the last in an explicit ``order``; the exports use the same rule (with the user's object
list as the order), so what the user sees is what gets exported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import cv2
import numpy as np

__all__ = ["PALETTE", "object_color", "label_map", "overlay", "draw_prompts", "mask_image"]

POSITIVE_COLOR = (0, 220, 0)
NEGATIVE_COLOR = (230, 0, 0)
BOX_COLOR = (255, 215, 0)


def _voc_palette(count: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: bit k of (r, g, b) comes from bits 3j, 3j+1, 3j+2 of i.

    Index i's bits are dealt round-robin to red, green and blue, most significant bit first,
    so 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), 4 -> (0, 0, 128).
    """
    index = np.arange(count)
    palette = np.zeros((count, 3), dtype=np.int64)
    for j in range(8):
        for channel in range(3):
            bit = (index >> (3 * j + channel)) & 1
            palette[:, channel] |= bit << (7 - j)
    return palette.astype(np.uint8)


PALETTE: np.ndarray = _voc_palette()
"""256 x 3 uint8; index 0 is black (background)."""


def object_color(obj_id: int) -> tuple[int, int, int]:
    """The palette colour of an object id; ids outside 0..255 wrap to 1..255, never to black."""
    index = obj_id if 0 <= obj_id < 256 else 1 + (obj_id - 1) % 255
    r, g, b = (int(c) for c in PALETTE[index])
    return r, g, b


def label_map(
    shape: tuple[int, ...],
    masks: Mapping[int, np.ndarray],
    hidden: Collection[int] = (),
    order: Sequence[int] | None = None,
) -> np.ndarray:
    """HxW int32 with each pixel's object id (0 = none) for a (H, W[, 3]) ``shape``.

    Objects are painted in ``order`` (default: increasing id), so later ones win where masks
    overlap; ids in ``order`` without a mask are skipped, masks not in ``order`` are left out.
    """
    labels = np.zeros(shape[:2], dtype=np.int32)
    for obj_id in sorted(masks) if order is None else order:
        if obj_id in hidden or obj_id not in masks:
            continue
        mask = np.asarray(masks[obj_id])
        if mask.shape != labels.shape:
            raise ValueError(f"mask of object {obj_id} has shape {mask.shape}, expected {labels.shape}")
        labels[mask.astype(bool)] = obj_id
    return labels


def _colour_table(ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ids, their colours as len(ids) x 3 float32) for vectorised lookups."""
    keys = np.array(sorted(ids), dtype=np.int32)
    colours = np.array([object_color(int(i)) for i in keys], dtype=np.float32).reshape(-1, 3)
    return keys, colours


def mask_image(
    shape: tuple[int, ...], masks: Mapping[int, np.ndarray], order: Sequence[int] | None = None
) -> np.ndarray:
    """HxWx3 uint8: each object's colour on black. ``shape`` is (H, W) or (H, W, 3).

    ``order`` as in :func:`label_map` (later objects win on overlap).
    """
    labels = label_map(shape, masks, order=order)
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    for obj_id in np.unique(labels[labels > 0]):
        out[labels == obj_id] = object_color(int(obj_id))
    return out


def overlay(
    frame: np.ndarray,
    masks: Mapping[int, np.ndarray],
    alpha: float = 0.5,
    outline: bool = True,
    hidden: Collection[int] = (),
    order: Sequence[int] | None = None,
) -> np.ndarray:
    """A copy of ``frame`` (HxWx3 uint8) with each visible mask filled at ``alpha`` and outlined.

    Objects in ``hidden`` are not drawn; ``order`` as in :func:`label_map`. The outline is the
    object's colour, about 1/300 of the short side thick (at least 1 px), so it stays visible
    when a mask is tiny.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3, got shape {frame.shape}")
    labels = label_map(frame.shape, masks, hidden, order)
    present = [int(i) for i in np.unique(labels[labels > 0])]
    out = frame.astype(np.float32)
    if present:
        keys, colours = _colour_table(present)
        inside = labels > 0
        colour = colours[np.searchsorted(keys, labels[inside])]
        out[inside] = (1.0 - alpha) * out[inside] + alpha * colour
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if outline:
        thickness = max(1, round(min(frame.shape[:2]) / 300))
        for obj_id in present:
            contours, _ = cv2.findContours((labels == obj_id).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, object_color(obj_id), thickness)
    return out


def draw_prompts(
    image: np.ndarray,
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    box: Sequence[float] | None = None,
) -> np.ndarray:
    """A copy of ``image`` with clicks and a box drawn in pixel coordinates (x right, y down).

    points: N x (x, y); labels: N values, 1 = positive (green +), 0 = negative (red x).
    box: (x0, y0, x1, y1) or None. Markers get a dark edge so they show on any background.
    """
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    size = max(7, min(out.shape[:2]) // 25)
    thickness = max(1, size // 6)
    if box is not None:
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), thickness + 2)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, thickness)
    for (x, y), label in zip(points, labels, strict=True):
        centre = (round(float(x)), round(float(y)))
        marker, colour = (cv2.MARKER_CROSS, POSITIVE_COLOR) if label else (cv2.MARKER_TILTED_CROSS, NEGATIVE_COLOR)
        cv2.drawMarker(out, centre, (0, 0, 0), marker, size + 2, thickness + 2)
        cv2.drawMarker(out, centre, colour, marker, size, thickness)
    return out
