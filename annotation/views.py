"""Pictures of a piece of work: the frame with its masks and clicks, and the timeline of every
object on every frame. Pure functions of a :class:`~annotation.work.Work` (numpy/OpenCV only)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from annotation.render import BOX_COLOR, draw_prompts, overlay
from annotation.work import Work

TIMELINE_ROW = 20  # pixels per object row
TIMELINE_HEADER = 6  # pixels of the row that marks the current frame
TIMELINE_TARGET_WIDTH = 720
EMPTY_CELL = (225, 225, 225)
LOST_CELL = (200, 0, 0)


def frame_view(work: Work, frame: int) -> np.ndarray:
    """The frame with visible objects' masks, every object's clicks/box and a pending corner."""
    assert work.video is not None
    image = work.video.frames[frame]
    hidden = {o.id for o in work.objects if not o.visible}
    image = overlay(image, work.doc.frame_masks(frame), hidden=hidden, order=list(work.doc.object_ids))
    for (f, obj), prompt in work.doc.prompts().items():
        if f == frame and obj not in hidden:
            image = draw_prompts(image, prompt.points, prompt.labels, prompt.box)
    if work.pending_corner and work.pending_corner[0] == frame:
        _, x, y = work.pending_corner
        size = max(9, min(image.shape[:2]) // 20)
        cv2.drawMarker(image, (round(x), round(y)), (0, 0, 0), cv2.MARKER_SQUARE, size + 2, 3)
        cv2.drawMarker(image, (round(x), round(y)), BOX_COLOR, cv2.MARKER_SQUARE, size, 2)
    return image


@dataclass(frozen=True)
class TimelineGeometry:
    """How frames map to pixels in the timeline picture (used for clicks on it too)."""

    frames: int
    cell: int  # pixels per frame

    @classmethod
    def for_frames(cls, frames: int) -> TimelineGeometry:
        return cls(frames, max(1, min(40, TIMELINE_TARGET_WIDTH // max(1, frames))))

    def frame_at(self, x: float) -> int:
        return int(min(self.frames - 1, max(0, x // self.cell)))


def timeline_image(work: Work, current: int) -> np.ndarray:
    """One row per object, one column per frame.

    Colour = object's colour where it has a mask (darker = smaller than its largest), red =
    tracked but lost (no mask), grey = not tracked yet; a white dot marks a frame with clicks.
    The thin top row marks the frame shown in the viewer.
    """
    assert work.video is not None
    geometry = TimelineGeometry.for_frames(work.video.count)
    objects = work.objects
    width = geometry.cell * geometry.frames
    height = TIMELINE_HEADER + TIMELINE_ROW * max(1, len(objects))
    image = np.full((height, width, 3), 255, np.uint8)
    x0 = current * geometry.cell
    image[:TIMELINE_HEADER, x0 : x0 + geometry.cell] = (40, 40, 40)
    prompted = set(work.doc.prompts())
    for row, obj in enumerate(objects):
        top = TIMELINE_HEADER + row * TIMELINE_ROW
        areas = [work.doc.area(f, obj.id) for f in range(geometry.frames)]
        largest = max([a for a in areas if a] or [1])
        for frame, area in enumerate(areas):
            colour = _cell_colour(obj.color, area, largest, (frame, obj.id) in work.doc.tracked)
            left = frame * geometry.cell
            image[top + 1 : top + TIMELINE_ROW - 1, left : left + geometry.cell] = colour
            if (frame, obj.id) in prompted:
                centre = (left + geometry.cell // 2, top + TIMELINE_ROW // 2)
                cv2.circle(image, centre, max(1, min(4, geometry.cell // 2)), (255, 255, 255), -1)
    if geometry.cell >= 3:
        image[TIMELINE_HEADER:, x0] = (40, 40, 40)
    return image


def _cell_colour(color: tuple[int, int, int], area: int | None, largest: int, tracked: bool) -> tuple[int, ...]:
    if area is None:
        return EMPTY_CELL
    if area == 0:
        return LOST_CELL if tracked else EMPTY_CELL
    shade = 0.45 + 0.55 * min(1.0, area / largest)
    return tuple(int(c * shade + 255 * (1 - shade) * 0.25) for c in color)
