"""Pictures and text the page shows: the frame with masks and clicks, the timeline, the object
list. Pure functions of a WorkState (numpy/OpenCV only), so they are easy to test."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ui.render import BOX_COLOR, draw_prompts, overlay
from ui.sessions import WorkState

TIMELINE_ROW = 20  # pixels per object row
TIMELINE_HEADER = 6  # pixels of the row that marks the current frame
TIMELINE_TARGET_WIDTH = 720
EMPTY_CELL = (225, 225, 225)
LOST_CELL = (200, 0, 0)


def frame_view(work: WorkState, frame: int) -> np.ndarray:
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


def write_png(image: np.ndarray, path: Path) -> Path:
    """PNG (exact pixels, fast setting): the page shows exactly what was drawn."""
    Image.fromarray(image).save(path, compress_level=1)
    return path


def frame_file(work: WorkState, frame: int) -> Path:
    """The current view as a new file in the session folder (the page loads it from there)."""
    work.prune_views()
    return write_png(frame_view(work, frame), work.new_file(f"frame{frame:05d}", ".png"))


# ----------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineGeometry:
    """How frames map to pixels in the timeline picture (used for clicks on it too)."""

    frames: int
    cell: int  # pixels per frame

    @classmethod
    def for_frames(cls, frames: int) -> "TimelineGeometry":
        return cls(frames, max(1, min(40, TIMELINE_TARGET_WIDTH // max(1, frames))))

    def frame_at(self, x: float) -> int:
        return int(min(self.frames - 1, max(0, x // self.cell)))


def timeline_image(work: WorkState, current: int) -> np.ndarray:
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


def timeline_file(work: WorkState, current: int) -> Path:
    return write_png(timeline_image(work, current), work.new_file("timeline", ".png"))


# ----------------------------------------------------------------------------- text


def video_info(work: WorkState) -> str:
    if work.video is None:
        return "No video yet."
    video = work.video
    height, width = video.size
    source = video.decoded.source
    sound = "with sound" if video.decoded.audio_path else "no sound"
    lines = [
        f"**{html.escape(video.name)}**: {video.count} frames at {video.decoded.fps:.3g} fps "
        f"({video.count / video.decoded.fps:.1f} s), {width}x{height} pixels, {sound}.",
    ]
    if (source.width, source.height) != (width, height):
        lines.append(f"Scaled down from {source.width}x{source.height}.")
    lines += [f"Note: {html.escape(w)}" for w in video.decoded.warnings]
    return "\n\n".join(lines)


def object_choices(work: WorkState) -> list[tuple[str, int]]:
    return [(f"{o.id}: {o.name}" + ("" if o.visible else " (hidden)"), o.id) for o in work.objects]


def legend_html(work: WorkState) -> str:
    """The object list: colour, name, shown or hidden, frames with a mask, frames lost."""
    if not work.objects:
        return "<p>No objects. Press <b>Add object</b>.</p>"
    rows = []
    for o in work.objects:
        with_mask = sum(1 for (f, obj), m in work.doc.masks.items() if obj == o.id and m.area)
        lost = sum(1 for (f, obj) in work.doc.tracked if obj == o.id and not work.doc.area(f, obj))
        swatch = "#%02x%02x%02x" % o.color
        active = " &#9664; clicks go here" if o.id == work.active else ""
        rows.append(
            f"<tr data-object='{o.id}'><td><span style='display:inline-block;width:14px;height:14px;"
            f"background:{swatch};border:1px solid #333'></span></td><td>{o.id}</td>"
            f"<td>{html.escape(o.name)}{active}</td><td>{'shown' if o.visible else 'hidden'}</td>"
            f"<td>{with_mask}</td><td>{lost}</td></tr>"
        )
    head = "<tr><th></th><th>id</th><th>name</th><th>view</th><th>frames with mask</th><th>lost</th></tr>"
    return f"<table class='object-table'>{head}{''.join(rows)}</table>"
