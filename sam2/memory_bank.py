"""Which memories a frame attends to. One function, keyed by frame index, so that tracking
forward, backward and corrections on any frame all use the same rule."""

from __future__ import annotations

from .modeling.sam2_model import MemoryItem, PointerItem
from .session import ObjectTrack


def select_memories(
    track: ObjectTrack,
    frame_idx: int,
    reverse: bool,
    num_frames: int,
    num_maskmem: int = 7,
    max_obj_ptrs: int = 16,
    signed_offsets: bool = True,
) -> tuple[list[MemoryItem], list[PointerItem]]:
    """Memories and object pointers for `frame_idx` of one object.

    Spatial memories: every conditioning frame (t_pos 0), then the `num_maskmem - 1` frames
    just before this one in tracking direction (t_pos 1 for the farthest, 6 for the nearest).
    Pointers: conditioning frames not ahead of this frame, then up to `max_obj_ptrs - 1`
    tracked frames just before it. Frames missing from memory are skipped.
    """
    step = -1 if reverse else 1
    memories = [MemoryItem(out.memory, 0) for out in track.cond.values()]
    for t_pos in range(1, num_maskmem):
        prev = track.non_cond.get(frame_idx - step * (num_maskmem - t_pos))
        if prev is not None:
            memories.append(MemoryItem(prev.memory, t_pos))

    max_ptrs = min(num_frames, max_obj_ptrs)
    pointers = []
    for t, out in track.cond.items():
        behind = t >= frame_idx if reverse else t <= frame_idx
        if behind:
            offset = (frame_idx - t) * step if signed_offsets else abs(frame_idx - t)
            pointers.append(PointerItem(out.obj_ptr, offset))
    for t_diff in range(1, max_ptrs):
        t = frame_idx - step * t_diff
        if t < 0 or t >= num_frames:
            break
        out = track.non_cond.get(t)
        if out is not None:
            pointers.append(PointerItem(out.obj_ptr, t_diff))
    return memories, pointers
