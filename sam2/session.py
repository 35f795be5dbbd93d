"""Per-video state: frames, prompts and per-object outputs, as small typed classes.

A `VideoSession` is what `SAM2VideoPredictor.init_state` returns (Meta's API calls it
`inference_state`). Each object's track is independent of the others, so adding, removing
or correcting one object never changes another's results.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .modeling.sam2_model import ImageFeatures, Points


@dataclass
class FrameOutput:
    """One object's result on one frame; the memory bank is made of these.

    `mask_logits` are the logits the frame's memory is (or will be) encoded from: the
    decoder's raw output on tracked frames, hole-filled on prompted ones (as in Meta's
    code). Outputs are hole-filled on the way out, so keeping these lets an evicted
    memory be recomputed exactly.
    """

    mask_logits: torch.Tensor  # (1, 1, 4h, 4w) low-res logits
    obj_ptr: torch.Tensor  # (1, C)
    object_score_logits: torch.Tensor  # (1, 1)
    is_cond: bool  # conditioning frame (prompted with no memory) or tracked/corrected frame
    from_prompt: bool  # prompted frames' memories see the binarised mask, tracked ones the sigmoid
    memory: torch.Tensor | None = None  # (1, mem_dim, h, w) bfloat16; None until encoded or once evicted
    # A single click is ambiguous, so the decoder offers three masks and the best scored one is
    # kept above; the three and their predicted IoU stay for a person to choose among.
    candidates: torch.Tensor | None = None  # (1, 3, 4h, 4w) low-res logits, hole-filled
    candidate_scores: torch.Tensor | None = None  # (1, 3) predicted IoU

    def to(self, device: torch.device | str) -> FrameOutput:
        """The same output with every tensor on `device`."""
        moved = {f.name: _moved(getattr(self, f.name), device) for f in dataclasses.fields(self)}
        return FrameOutput(**moved)


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

    def evict_memories(self, keep: int, around: int) -> None:
        """Drop the memory maps of all but `keep` tracked frames, farthest from `around`
        first. Conditioning frames keep theirs: every later frame attends to them."""
        held = [f for f, out in self.non_cond.items() if out.memory is not None]
        if len(held) <= keep:
            return
        for f in sorted(held, key=lambda f: (-abs(f - around), f))[: len(held) - keep]:
            self.non_cond[f].memory = None

    def forget_behind(self, frame_idx: int, keep: int, reverse: bool) -> None:
        """Drop the results of tracked frames more than `keep` frames behind `frame_idx` in
        the tracking direction (a long run in one direction: their low-res logits, 64 kB a
        frame at 512 px, would otherwise grow with the video). Conditioning frames stay."""
        edge = frame_idx + keep if reverse else frame_idx - keep
        for f in [f for f in self.non_cond if (f > edge if reverse else f < edge)]:
            del self.non_cond[f]

    def to(self, device: torch.device | str) -> None:
        """Move every tensor of the track (prompts and memory bank) to `device`, in place."""
        self.points = {f: Points(p.coords.to(device), p.labels.to(device)) for f, p in self.points.items()}
        self.masks = {f: m.to(device) for f, m in self.masks.items()}
        for store in (self.cond, self.non_cond, self.pending):
            for f, out in store.items():
                store[f] = out.to(device)

    def memory_count(self) -> int:
        """How many memory maps this object holds now."""
        return sum(out.memory is not None
                   for store in (self.cond, self.non_cond, self.pending) for out in store.values())


class FrameStore:
    """Video frames kept compact: uint8 at source size, or (encoding="jpeg"/"png") as
    compressed bytes decoded on use, for long videos. "png" is lossless; "jpeg" (quality
    95) is about 10x smaller and changes pixels slightly. Resizing for the model happens
    on use.

    Frames may differ in size (an image set): each keeps its own (H, W), in ``sizes``; the
    model resizes every frame to its square input anyway, and masks come back at each
    frame's own size. ``height``/``width`` are frame 0's (a video's one size).
    """

    def __init__(self, frames: Sequence[np.ndarray], encoding: str | None = None) -> None:
        if len(frames) == 0:
            raise ValueError("The video has no frames.")
        if encoding not in (None, "jpeg", "png"):
            raise ValueError(f"Unknown frame encoding {encoding!r}: use None, 'jpeg' or 'png'.")
        self.encoding = encoding
        self._frames: list = []
        self.sizes: list[tuple[int, int]] = []  # (H, W) of each frame
        for i, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(
                    f"Frames must be H x W x 3 uint8 RGB arrays; frame {i} has shape {frame.shape}, "
                    f"dtype {frame.dtype}."
                )
            self.sizes.append((int(frame.shape[0]), int(frame.shape[1])))
            self._frames.append(self._encode(frame) if encoding else frame)
        self.height, self.width = self.sizes[0]

    @property
    def uniform(self) -> bool:
        """Do all frames have one size (a video), or do they differ (an image set)?"""
        return len(set(self.sizes)) == 1

    def _encode(self, frame: np.ndarray) -> bytes:
        ext, params = ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]) if self.encoding == "jpeg"
                       else (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]))
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(frame[..., ::-1]), params)
        if not ok:
            raise ValueError(f"Could not encode a frame as {self.encoding}.")
        return buf.tobytes()

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        item = self._frames[index]
        if self.encoding is None:
            return item
        return cv2.imdecode(np.frombuffer(item, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()

    def nbytes(self) -> int:
        return sum(len(f) if isinstance(f, bytes) else f.nbytes for f in self._frames)


class FeatureCache:
    """Image features of the few most recently used frames (LRU), plus room for frames
    encoded ahead of use (`put`), e.g. by a background thread while the user is idle.

    Safe to use from two threads: a frame asked for while another thread encodes it may be
    encoded twice (the first result is kept), never lost or mixed up.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[int, ImageFeatures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, frame_idx: int, compute: Callable[[int], ImageFeatures]) -> ImageFeatures:
        with self._lock:
            if frame_idx in self._items:
                self._items.move_to_end(frame_idx)
                return self._items[frame_idx]
        return self.put(frame_idx, compute(frame_idx))

    def put(self, frame_idx: int, features: ImageFeatures) -> ImageFeatures:
        """Store a frame's features (keeping an entry already there) -> the stored ones."""
        with self._lock:
            features = self._items.setdefault(frame_idx, features)
            self._items.move_to_end(frame_idx)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return features

    def __contains__(self, frame_idx: int) -> bool:
        return frame_idx in self._items

    def __getstate__(self) -> dict:
        # A cache travels empty (to another process: ZeroGPU's GPU calls): features are
        # recomputed where they are needed, and a lock cannot be pickled.
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


@dataclass
class VideoSession:
    frames: FrameStore
    features: FeatureCache
    image_size: int  # the model input size its features (and clicks in model pixels) are for
    tracks: dict[int, ObjectTrack] = field(default_factory=dict)  # insertion order = output order
    # Tracked frames' results kept behind the frame being tracked (None: all, so that a
    # correction on any tracked frame goes on from its result). A number (raised to what
    # tracking attends to, so the run's masks do not change) bounds a long run's memory;
    # for a run in one direction that nothing is tracked or corrected after (the command
    # line's streamed videos).
    keep_behind: int | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def video_height(self) -> int:
        return self.frames.height

    @property
    def video_width(self) -> int:
        return self.frames.width

    def frame_size(self, frame_idx: int) -> tuple[int, int]:
        """(H, W) of one frame: clicks are in its pixels and its masks come back at its size
        (an image set's frames differ; a video's are all ``(video_height, video_width)``)."""
        return self.frames.sizes[frame_idx]

    @property
    def obj_ids(self) -> list[int]:
        return list(self.tracks)

    def tracks_to(self, device: torch.device | str) -> None:
        """Move every object's prompts and memory bank to `device`, in place (ZeroGPU keeps
        them on the CPU between GPU calls)."""
        for track in self.tracks.values():
            track.to(device)

    def track(self, obj_id: int, create: bool = True) -> ObjectTrack:
        if obj_id not in self.tracks:
            if not create:
                raise KeyError(f"There is no object with id {obj_id}.")
            self.tracks[obj_id] = ObjectTrack(obj_id)
        return self.tracks[obj_id]


def _moved(value, device: torch.device | str):
    return value.to(device) if isinstance(value, torch.Tensor) else value
