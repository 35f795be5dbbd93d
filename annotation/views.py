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
    # One pass over the masks and a row of cells at a time: a cell at a time took seconds for a
    # frame change with many objects on a long video (255 x 600 cells at most).
    areas = np.full((len(objects), geometry.frames), -1, np.int64)  # -1: no mask
    tracked = np.zeros(areas.shape, bool)
    rows = {obj.id: row for row, obj in enumerate(objects)}
    for (frame, obj_id), packed in work.doc.masks.items():
        if obj_id in rows and 0 <= frame < geometry.frames:
            areas[rows[obj_id], frame] = packed.area
    for frame, obj_id in work.doc.tracked:
        if obj_id in rows and 0 <= frame < geometry.frames:
            tracked[rows[obj_id], frame] = True
    prompted = sorted((rows[o], f) for f, o in work.doc.prompts() if o in rows and 0 <= f < geometry.frames)
    cell = geometry.cell
    colours = [_cell_colours(obj.color, areas[row], tracked[row]) for row, obj in enumerate(objects)]
    for row, row_colours in enumerate(colours):
        top = TIMELINE_HEADER + row * TIMELINE_ROW
        image[top + 1 : top + TIMELINE_ROW - 1, :width] = np.repeat(row_colours, cell, axis=0)[None]
    for row, frame in prompted:  # in frame order: a dot never shows in the next frame's cell
        top, left = TIMELINE_HEADER + row * TIMELINE_ROW, frame * cell
        cv2.circle(image, (left + cell // 2, top + TIMELINE_ROW // 2), max(1, min(4, cell // 2)), (255, 255, 255), -1)
        if frame + 1 < geometry.frames:
            image[top + 1 : top + TIMELINE_ROW - 1, left + cell] = colours[row][frame + 1]
    if geometry.cell >= 3:
        image[TIMELINE_HEADER:, x0] = (40, 40, 40)
    return image


def _cell_colours(color: tuple[int, int, int], areas: np.ndarray, tracked: np.ndarray) -> np.ndarray:
    """len(areas) x 3 uint8: no mask (-1) grey, empty (0) red where tracked, else grey; a mask
    the object's colour, darker the smaller it is than the object's largest mask in the row."""
    largest = int(areas.max()) if areas.size and areas.max() > 0 else 1
    out = np.tile(np.array(EMPTY_CELL, np.uint8), (len(areas), 1))
    out[(areas == 0) & tracked] = LOST_CELL
    found = areas > 0
    shade = 0.45 + 0.55 * np.minimum(1.0, areas[found] / largest)
    out[found] = (np.array(color, np.float64) * shade[:, None] + (255 * (1 - shade) * 0.25)[:, None]).astype(np.uint8)
    return out
