"""Per-video state: frames, prompts and per-object outputs, as small typed classes.

A `VideoSession` is what `SAM2VideoPredictor.init_state` returns (Meta's API calls it
`inference_state`). Each object's track is independent of the others, so adding, removing
or correcting one object never changes another's results.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .modeling.sam2_model import ImageFeatures, Points


@dataclass
class FrameOutput:
    """One object's result on one frame; the memory bank is made of these."""

    mask_logits: torch.Tensor  # (1, 1, 4h, 4w) low-res logits (holes filled)
    obj_ptr: torch.Tensor  # (1, C)
    object_score_logits: torch.Tensor  # (1, 1)
    is_cond: bool  # conditioning frame (prompted with no memory) or tracked/corrected frame
    memory: torch.Tensor | None = None  # (1, mem_dim, h, w) bfloat16; None until encoded


@dataclass
class ObjectTrack:
    obj_id: int
    points: dict[int, Points] = field(default_factory=dict)  # frame -> clicks (model pixels)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)  # frame -> (1, 1, S, S) mask prompt
    cond: dict[int, FrameOutput] = field(default_factory=dict)  # conditioning frames, in memory
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)  # tracked frames, in memory
    pending: dict[int, FrameOutput] = field(default_factory=dict)  # prompted, memory not yet encoded
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse?

    def latest_output(self, frame_idx: int) -> FrameOutput | None:
        """The newest output on a frame: a pending prompt result first, then stored memory."""
        for store in (self.pending, self.cond, self.non_cond):
            if frame_idx in store:
                return store[frame_idx]
        return None

    def prompted_frames(self) -> set[int]:
        return set(self.points) | set(self.masks)


class FrameStore:
    """Video frames kept compact (uint8 at source size); resized for the model on use."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        if not frames:
            raise ValueError("The video has no frames.")
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"All frames must have the same size; got {sorted(shapes)}")
        height, width, channels = frames[0].shape
        if channels != 3 or frames[0].dtype != np.uint8:
            raise ValueError("Frames must be H x W x 3 uint8 RGB arrays.")
        self._frames = frames
        self.height, self.width = height, width

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._frames[index]


class FeatureCache:
    """Image features of the few most recently used frames (LRU)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[int, ImageFeatures] = OrderedDict()

    def get(self, frame_idx: int, compute: Callable[[int], ImageFeatures]) -> ImageFeatures:
        if frame_idx in self._items:
            self._items.move_to_end(frame_idx)
        else:
            self._items[frame_idx] = compute(frame_idx)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return self._items[frame_idx]

    def __contains__(self, frame_idx: int) -> bool:
        return frame_idx in self._items

    def clear(self) -> None:
        self._items.clear()


@dataclass
class VideoSession:
    frames: FrameStore
    features: FeatureCache
    tracks: dict[int, ObjectTrack] = field(default_factory=dict)  # insertion order = output order

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def video_height(self) -> int:
        return self.frames.height

    @property
    def video_width(self) -> int:
        return self.frames.width

    @property
    def obj_ids(self) -> list[int]:
        return list(self.tracks)

    def track(self, obj_id: int, create: bool = True) -> ObjectTrack:
        if obj_id not in self.tracks:
            if not create:
                raise KeyError(f"There is no object with id {obj_id}.")
            self.tracks[obj_id] = ObjectTrack(obj_id)
        return self.tracks[obj_id]
