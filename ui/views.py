"""What the page shows: the frame and timeline pictures as files in the session's folder (the
page loads them from there), and the video facts and object list as Markdown/HTML."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from annotation.views import frame_view, timeline_image
from ui.sessions import WorkState


def write_png(image: np.ndarray, path: Path) -> Path:
    """PNG (exact pixels, fast setting): the page shows exactly what was drawn."""
    Image.fromarray(image).save(path, compress_level=1)
    return path


def frame_file(work: WorkState, frame: int) -> Path:
    """The current view as a new file in the session folder (the page loads it from there)."""
    work.prune_views()
    return write_png(frame_view(work, frame), work.new_file(f"frame{frame:05d}", ".png"))


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
        r, g, b = o.color
        swatch = f"#{r:02x}{g:02x}{b:02x}"
        active = " &#9664; clicks go here" if o.id == work.active else ""
        rows.append(
            f"<tr data-object='{o.id}'><td><span style='display:inline-block;width:14px;height:14px;"
            f"background:{swatch};border:1px solid #333'></span></td><td>{o.id}</td>"
            f"<td>{html.escape(o.name)}{active}</td><td>{'shown' if o.visible else 'hidden'}</td>"
            f"<td>{with_mask}</td><td>{lost}</td></tr>"
        )
    head = "<tr><th></th><th>id</th><th>name</th><th>view</th><th>frames with mask</th><th>lost</th></tr>"
    return f"<table class='object-table'>{head}{''.join(rows)}</table>"
