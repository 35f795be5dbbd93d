"""Which memories a frame attends to. One function, keyed by frame index, so that tracking
forward, backward and corrections on any frame all use the same rule."""

from __future__ import annotations

from dataclasses import dataclass

from .session import FrameOutput, ObjectTrack


@dataclass(frozen=True)
class SpatialMemory:
    frame_idx: int
    t_pos: int  # 0 for conditioning frames; 1 (farthest) .. num_maskmem - 1 (nearest) for the others
    output: FrameOutput


@dataclass(frozen=True)
class PointerMemory:
    frame_idx: int
    offset: int  # temporal distance from the current frame (signed in SAM 2.1)
    output: FrameOutput


def select_memories(
    track: ObjectTrack,
    frame_idx: int,
    reverse: bool,
    num_frames: int,
    num_maskmem: int = 7,
    max_obj_ptrs: int = 16,
    signed_offsets: bool = True,
) -> tuple[list[SpatialMemory], list[PointerMemory]]:
    """Memories and object pointers for `frame_idx` of one object.

    Spatial memories: every conditioning frame (t_pos 0), then the `num_maskmem - 1` frames
    just before this one in tracking direction. Pointers: conditioning frames not ahead of
    this frame, then up to `max_obj_ptrs - 1` tracked frames just before it. Frames missing
    from the object's results are skipped.
    """
    step = -1 if reverse else 1
    spatial = [SpatialMemory(f, 0, out) for f, out in track.cond.items()]
    for t_pos in range(1, num_maskmem):
        f = frame_idx - step * (num_maskmem - t_pos)
        if f in track.non_cond:
            spatial.append(SpatialMemory(f, t_pos, track.non_cond[f]))

    pointers = []
    for f, out in track.cond.items():
        if (f >= frame_idx) if reverse else (f <= frame_idx):
            offset = (frame_idx - f) * step if signed_offsets else abs(frame_idx - f)
            pointers.append(PointerMemory(f, offset, out))
    for t_diff in range(1, min(num_frames, max_obj_ptrs)):
        f = frame_idx - step * t_diff
        if f < 0 or f >= num_frames:
            break
        if f in track.non_cond:
            pointers.append(PointerMemory(f, t_diff, track.non_cond[f]))
    return spatial, pointers
