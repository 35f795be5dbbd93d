"""SAM 2 and SAM 2.1, written from the paper's description and Meta's published facts.

Loads Meta's official checkpoints unchanged and offers the predictor API SAM 2 users know:

    import sam2
    predictor = sam2.build_video_predictor("sam2.1_hiera_t", "checkpoints/sam2.1_hiera_tiny.pt")
    state = predictor.init_state("video.mp4")
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[210, 350]], labels=[1])
    for frame_idx, obj_ids, mask_logits in predictor.propagate_in_video(state):
        ...

Importing the package runs nothing and loads no torch: the names below are looked up on first
use, so ``sam2.video_io`` or ``sam2.config`` can be used on their own.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_automatic_mask_generator": "build",
    "build_image_predictor": "build",
    "build_model": "build",
    "build_video_predictor": "build",
    "load_model": "build",
    "SAM2AutomaticMaskGenerator": "automatic_mask_generator",
    "VARIANTS": "config",
    "ModelConfig": "config",
    "get_config": "config",
    "resolve_variant": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sam2' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
