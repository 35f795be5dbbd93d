"""Hole filling and preprocessing details that the parity cases only cover indirectly."""

from __future__ import annotations

import numpy as np
import torch

from sam2.transforms import fill_holes, points_to_input, video_frame_to_input


def _logits(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(mask, 5.0, -5.0).astype(np.float32))[None, None]


def test_small_holes_become_foreground_large_ones_stay():
    mask = np.ones((40, 40), bool)
    mask[5:7, 5:9] = False  # hole of 8 px: filled
    mask[20:23, 20:23] = False  # hole of 9 px: kept
    out = fill_holes(_logits(mask), max_area=8)[0, 0].numpy()
    assert np.all(out[5:7, 5:9] == np.float32(0.1))
    assert np.all(out[20:23, 20:23] == -5.0)
    assert np.all(out[mask] == 5.0)


def test_holes_are_8_connected():
    """Two diagonal background pixels form one region of 2 (filled at max_area=2, not 1)."""
    mask = np.ones((10, 10), bool)
    mask[3, 3] = mask[4, 4] = False
    assert (fill_holes(_logits(mask), max_area=2)[0, 0] > 0).all()
    assert (fill_holes(_logits(mask), max_area=1)[0, 0] <= 0).sum() == 2


def test_background_is_not_a_hole_and_batches_are_independent():
    a = np.zeros((16, 16), bool)  # all background: one big region, kept
    b = np.ones((16, 16), bool)
    b[0, 0] = False  # a 1 px region at the border is a hole too (as in SAM 2)
    out = fill_holes(torch.cat([_logits(a), _logits(b)]), max_area=8)
    assert (out[0] == -5.0).all()
    assert (out[1] > 0).all()
    assert fill_holes(_logits(b), max_area=0) is not None and (fill_holes(_logits(b), 0)[0, 0, 0, 0] == -5.0)


def test_preprocessing_and_coordinates():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 0] = 255
    x = video_frame_to_input(frame, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.full((64, 64), (1 - 0.485) / 0.229))
    pts = points_to_input(torch.tensor([[320.0, 240.0], [0.0, 0.0]]), 320, 240, 1024)
    torch.testing.assert_close(pts, torch.tensor([[1024.0, 1024.0], [0.0, 0.0]]))
