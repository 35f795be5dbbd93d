"""The annotation document: objects, their prompts and masks, and the undo history's steps.

Every edit makes a new immutable :class:`Snapshot` (sharing the masks it did not change), so
undo and redo are a swap of references, and a page can draw the current snapshot while a
tracking run adds frames to the next one.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from annotation.render import object_color

MAX_OBJECTS = 255  # PNG mask exports store one object id per pixel value (1..255)
DEFAULT_LABEL = "object"  # the class of objects until the user names classes


class UserError(Exception):
    """Something the person using the page or the command line can fix; the message is shown as is."""


# ----------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class PackedMask:
    """A bool mask stored as the bits of its bounding box, deflated: a 1280x720 mask of a small
    object takes a few hundred bytes instead of 900 kB, and one that fills the frame a few kB
    instead of its 115 kB of bits, so a ten-minute video's masks stay small (only noise, whose
    bits do not deflate, keeps its full size)."""

    shape: tuple[int, int]
    top: int
    left: int
    box_shape: tuple[int, int]
    deflated: bytes  # zlib (level 1) of the box's bits, as np.packbits orders them; b"" when empty
    area: int

    @classmethod
    def pack(cls, mask: np.ndarray) -> PackedMask:
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size == 0:
            return cls(mask.shape, 0, 0, (0, 0), b"", 0)
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        bits = np.packbits(crop).tobytes()
        return cls(mask.shape, int(rows[0]), int(cols[0]), crop.shape, _deflate(bits), int(crop.sum()))

    @classmethod
    def from_bits(
        cls, shape: tuple[int, int], top: int, left: int, box_shape: tuple[int, int], bits: bytes,
    ) -> PackedMask:
        """The mask whose box holds ``bits`` (as ``pack`` stores them, e.g. read from a session file)."""
        count = box_shape[0] * box_shape[1]
        area = int(np.unpackbits(np.frombuffer(bits, np.uint8), count=count).sum()) if count else 0
        return cls(shape, top, left, box_shape, _deflate(bits) if count else b"", area)

    @property
    def bits(self) -> bytes:
        """The box's bits, row by row (``np.packbits`` of the box), as session files store them."""
        return zlib.decompress(self.deflated) if self.deflated else b""

    @property
    def bit_bytes(self) -> int:
        """How many bytes the box's bits take before deflating (what limits on masks count)."""
        return (self.box_shape[0] * self.box_shape[1] + 7) // 8

    def unpack(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        if self.area:
            h, w = self.box_shape
            crop = np.unpackbits(np.frombuffer(self.bits, np.uint8), count=h * w).astype(bool).reshape(h, w)
            out[self.top : self.top + h, self.left : self.left + w] = crop
        return out


def _deflate(bits: bytes) -> bytes:
    # Level 1: masks are runs of 0x00 and 0xff bytes, which the fastest level already shrinks
    # 20 to 100 times, at a fraction of a millisecond a frame.
    return zlib.compress(bits, 1)


# ----------------------------------------------------------------------------- document


Masks = dict[int, np.ndarray]
"""object id -> HxW bool mask on one frame."""


@dataclass(frozen=True)
class PromptSpec:
    """One object's full prompt on one frame: clicks (x, y) with labels 1/0 and/or a box, or
    a mask (SAM 2 takes one or the other on a frame: a mask replaces the clicks, and clicks
    replace the mask)."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: PackedMask | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and (self.points or self.box is not None):
            raise ValueError("a prompt is either clicks and a box, or a mask")

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None and self.mask is None


@dataclass(frozen=True)
class ObjectInfo:
    """What the user calls an object, its class, and whether it is drawn; its colour follows
    its id (the instance id every export uses)."""

    id: int
    name: str
    visible: bool = True
    label: str = DEFAULT_LABEL  # the class, one of the work's labels

    @property
    def color(self) -> tuple[int, int, int]:
        return object_color(self.id)


@dataclass(frozen=True)
class PromptCall:
    """One call made to the predictor: set an object's prompt on a frame (None = clear it).

    The calls are kept in order because the predictor's answer depends on what came before
    on that frame; replaying them rebuilds the same predictor state after an undo.
    """

    frame: int
    obj_id: int
    prompt: PromptSpec | None


@dataclass(frozen=True)
class Snapshot:
    """Everything undo/redo restores. Immutable: an edit makes a new one (sharing masks)."""

    object_ids: tuple[int, ...] = ()
    calls: tuple[PromptCall, ...] = ()
    masks: dict[tuple[int, int], PackedMask] = field(default_factory=dict)  # (frame, obj) -> mask
    tracked: frozenset[tuple[int, int]] = frozenset()  # (frame, obj) results of tracking

    def prompts(self) -> dict[tuple[int, int], PromptSpec]:
        """The current prompt of each (frame, object), in the order they were last set."""
        current: dict[tuple[int, int], PromptSpec] = {}
        for call in self.calls:
            key = (call.frame, call.obj_id)
            current.pop(key, None)
            if call.prompt is not None and not call.prompt.empty and call.obj_id in self.object_ids:
                current[key] = call.prompt
        return current

    def frame_masks(self, frame: int) -> Masks:
        return {obj: self.masks[(frame, obj)].unpack() for obj in self.object_ids if (frame, obj) in self.masks}

    def all_masks(self, frames: int) -> dict[int, Masks]:
        """{frame: {object: mask}} for the exports (frames without masks are left out)."""
        result: dict[int, Masks] = {}
        for (frame, obj), packed in self.masks.items():
            if obj in self.object_ids and 0 <= frame < frames:
                result.setdefault(frame, {})[obj] = packed.unpack()
        return result

    def lazy_masks(self, frames: int) -> LazyMasks:
        """What :meth:`all_masks` gives, each frame's masks unpacked only when it is read: a
        720p mask is 0.9 MB unpacked, so an 18,000-frame video's would be 16 GB at once."""
        return LazyMasks(self.masks, self.object_ids, frames)

    def area(self, frame: int, obj: int) -> int | None:
        packed = self.masks.get((frame, obj))
        return None if packed is None else packed.area


class LazyMasks(Mapping[int, Masks]):
    """{frame: {object: HxW bool mask}} over packed masks, as :meth:`Snapshot.all_masks` gives
    it (the same frames and objects, in the same order), each frame's masks unpacked anew when
    it is read and not kept: the exports write a frame at a time, so at most one frame's masks
    are unpacked at once."""

    def __init__(self, masks: Mapping[tuple[int, int], PackedMask], object_ids: tuple[int, ...], frames: int) -> None:
        self._frames: dict[int, list[tuple[int, PackedMask]]] = {}
        for (frame, obj), packed in masks.items():
            if obj in object_ids and 0 <= frame < frames:
                self._frames.setdefault(frame, []).append((obj, packed))

    def __getitem__(self, frame: int) -> Masks:
        return {obj: packed.unpack() for obj, packed in self._frames[frame]}

    def __iter__(self):
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, frame: object) -> bool:
        return frame in self._frames


@dataclass(frozen=True)
class Naming:
    """Every object's name and label, and the label list: kept outside the snapshots (a rename
    is not an undo step), except where an edit replaces them all at once (loading a session
    file names its objects and brings its labels): its undo puts the old ones back."""

    registry: Mapping[int, ObjectInfo]
    labels: tuple[str, ...]
    last_label: str


@dataclass(frozen=True)
class Edit:
    """One undoable step: what it was called and the document before and after it (and the
    naming before and after it, for an edit that replaced the naming)."""

    label: str
    before: Snapshot
    after: Snapshot
    naming: tuple[Naming, Naming] | None = None
