"""The GPU path (`--device cuda`), checked on any machine.

On PyTorch's `meta` device a tensor has a shape and no values. An operation that mixes in a
tensor on another device fails ("Tensor on device cpu is not on the expected device meta"),
and so does anything that reads a value on the host (`.item()`, `bool(tensor)`, `.cpu()`):
exactly what would make a GPU wait inside a frame. So clicks, boxes, mask prompts,
corrections and tracking in both directions run here on `meta` end to end: features,
prompts and the memory bank stay on the model's device, and nothing in them waits on it.
The one host copy per frame on a GPU is the masks the caller takes, with hole filling
(OpenCV, on the host), which is off here (`fill_hole_area=0`).

On a machine with CUDA the same test runs on the GPU, in float32 and under float16 and
bfloat16 autocast, with torch's sync debug mode raising on any implicit wait; the parity
cases also run there (tests/test_parity.py). Without CUDA those are skipped, and say so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2.build import build_model
from sam2.config import get_config
from sam2.video_predictor import SAM2VideoPredictor

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
# On `meta` the blockwise kernel (ours, where a stray device or host read could hide); the
# fused one is a single PyTorch call. On a GPU both.
DEVICE_RUNS = [
    pytest.param("meta", "float32", "blockwise", id="meta-blockwise"),
    *(pytest.param("cuda", precision, kernels, id=f"cuda-{precision}-{kernels}", marks=needs_cuda)
      for precision in ("float32", "float16", "bfloat16") for kernels in ("fused", "blockwise")),
]


def frames(count: int = 6, height: int = 96, width: int = 128) -> list[np.ndarray]:
    out = []
    for t in range(count):
        frame = np.full((height, width, 3), 40, np.uint8)
        frame[20:60, 10 + 5 * t : 50 + 5 * t] = (200, 60, 50)
        out.append(frame)
    return out


def tensors_of(session) -> list[torch.Tensor]:
    """Every tensor the session holds: prompts, results, memory maps, cached features."""
    found = []
    for track in session.tracks.values():
        found += [p.coords for p in track.points.values()] + list(track.masks.values())
        for store in (track.cond, track.non_cond, track.pending):
            for out in store.values():
                found += [v for v in vars(out).values() if isinstance(v, torch.Tensor)]
    for features in session.features._items.values():
        found += [v for v in vars(features).values() if isinstance(v, torch.Tensor)]
        found += [t for v in vars(features).values() if isinstance(v, (list, tuple)) for t in v]
    return found


@pytest.mark.parametrize(("device", "precision", "kernels"), DEVICE_RUNS)
def test_tracking_stays_on_the_device_and_never_waits_on_it(device, precision, kernels):
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1_hiera_t", image_size=1024), device=device, kernels=kernels)
    predictor = SAM2VideoPredictor(model, fill_hole_area=0, precision=precision)
    state = predictor.init_state(frames())
    debug_mode = torch.cuda.get_sync_debug_mode() if device == "cuda" else None
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        results = [predictor.add_new_points_or_box(state, 0, 1, points=[[30, 40]], labels=[1])[2]]
        results.append(predictor.add_new_points_or_box(state, 1, 2, box=[60, 20, 100, 60])[2])
        square = np.zeros((96, 128), bool)
        square[20:60, 30:70] = True
        results.append(predictor.add_new_mask(state, 2, 3, square)[2])
        results += [masks for _, _, masks in predictor.propagate_in_video(state)]
        # A correction on a tracked frame (memory-conditioned), then back to the start.
        results.append(predictor.add_new_points_or_box(state, 4, 1, points=[[40, 40]], labels=[0],
                                                       clear_old_points=False)[2])
        results += [masks for _, _, masks in predictor.propagate_in_video(state, start_frame_idx=5, reverse=True)]
        results += list(predictor.prompt_candidates(state, 0, 1))
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(debug_mode)
    assert len(results) == 3 + 6 + 1 + 6 + 2
    assert results[3].shape == (3, 1, 96, 128)
    held = tensors_of(state)
    assert len(held) > 50
    assert {t.device.type for t in results + held} == {device}
