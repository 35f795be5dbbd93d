"""What the page shows: the frame and timeline pictures as files in the session's folder (the
page loads them from there), and the video facts and object list as Markdown/HTML."""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from annotation.engine import SpeedEstimate
from annotation.views import frame_view, timeline_image
from ui.sessions import WorkState


def write_png(image: np.ndarray, path: Path) -> Path:
    """PNG (exact pixels, fast setting): the page shows exactly what was drawn. Written under
    a temporary name and moved into place, so the name never holds half a picture."""
    partial = path.with_name(f".{path.name}.part")
    Image.fromarray(image).save(partial, format="PNG", compress_level=1)
    os.replace(partial, path)
    return path


def frame_file(work: WorkState, frame: int) -> Path:
    """The current view as a new file in the session folder (the page loads it from there)."""
    work.prune_views()
    return write_png(frame_view(work, frame), work.new_file(f"frame{frame:05d}", ".png"))


def timeline_file(work: WorkState, current: int) -> Path:
    return write_png(timeline_image(work, current), work.new_file("timeline", ".png"))


# ----------------------------------------------------------------------------- step texts

TRACK_HELP = """
Tracking follows every object from the frame shown in the viewer: forward to the end,
backward to the start, or both; *Frames to track* counts the frames after (or before) the one
shown, which keeps its mask. {speed}; the progress line shows the real pace. **Cancel**
stops it and keeps the frames done. If a frame is wrong, correct it with clicks and track again
from there. The **timeline** under the frame shows each object (rows) on each frame (columns): its colour =
found, red = lost, grey = not tracked yet, white dot = your clicks. Click the timeline to go
to that frame.
"""


def track_help(speed: SpeedEstimate | None, image_size: int | None = None) -> str:
    """The tracking step's help, with the speed measured on this machine (where it was) for the
    model size ``image_size`` (None: the size timed)."""
    return TRACK_HELP.format(speed=speed.describe(image_size) if speed else "How long it takes depends on the machine")


def model_line(model: str) -> str:
    """The model line under the video, e.g. 'Model: sam2.1_hiera_tiny, 512 px, float32 on cpu.'"""
    return f"Model: {model}."


# ----------------------------------------------------------------------------- text

# Characters that change the direction of the text around them: a name or file name holding
# one could show "evil\u202egpj.exe" as "evilexe.jpg" and turn the rest of a message round.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_HIDDEN = re.compile(f"[{BIDI_CONTROLS}\ud800-\udfff]")  # and lone surrogates, which no page can encode
# What Markdown (CommonMark and GitHub's extensions, as the page renders it) can make markup of:
# anywhere, \ ` * _ [ ] < > & | ~ $; the ":" of a URL and the "." of "www." (links made from bare
# addresses) and the "@" of an e-mail address; at the start of a line, a heading, quote, list,
# or underline. Nothing else is touched, so the messages API clients read stay as they are.
# An underscore inside a word (between two letters or digits: "import_3000.json") can neither
# open nor close emphasis in CommonMark, so it stays as it is: file names read as they are.
_INLINE = re.compile(r"[\\`*\[\]<>&|~$]|_+|(?<=[A-Za-z])(?=:/)|(?i:(?<=\bwww)(?=\.))|(?<=\S)(?=@\S)")
_LINE_START = re.compile(r"^([ \t]*)([#>+=-]|\d+(?=[.)]))", re.MULTILINE)


def neutral(text: str) -> str:
    """``text`` with direction controls (and lone surrogates) shown as U+FFFD, the replacement
    character: they cannot reorder what is around them, and the reader sees something was there."""
    return _HIDDEN.sub("\ufffd", str(text))


def markdown_text(text: str) -> str:
    """Markdown that shows ``text`` exactly as written: each character that could start markup
    is backslash-escaped (CommonMark: it then stands for itself), so no link, image, HTML tag,
    emphasis, formula or heading can come out of an object or file name; direction controls are
    neutralised. The page's messages are plain text, so each goes through here."""
    escaped = _INLINE.sub(_escape_inline, neutral(text))
    return _LINE_START.sub(lambda m: m.group(1) + _escape_marker(m.group(2)), escaped)


def _escape_inline(match: re.Match) -> str:
    """One mark made text (a backslash before it, or at the place matched); a run of underscores
    between two letters or digits is left as it is, any other has each underscore escaped."""
    mark, text = match.group(0), match.string
    if not mark.startswith("_"):
        return "\\" + mark if mark else "\\"
    before = text[match.start() - 1] if match.start() > 0 else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return mark if before.isalnum() and after.isalnum() else "\\_" * len(mark)


def _escape_marker(marker: str) -> str:
    """A line's first mark, made text: "\\#", or "12\\." (the escape goes before the "." or ")")."""
    return marker + "\\" if marker[0].isdigit() else "\\" + marker


def html_text(text: str) -> str:
    """HTML that shows ``text`` exactly as written (for the toasts, which render HTML)."""
    return html.escape(neutral(text), quote=True)


def video_info(work: WorkState) -> str:
    if work.video is None:
        return "No video yet."
    video = work.video
    if video.is_image_set:
        return _image_set_info(video)
    height, width = video.size
    source = video.decoded.source
    sound = "with sound" if video.decoded.audio_path else "no sound"
    facts = (
        f"{video.count} frames at {video.decoded.fps:.3g} fps ({video.count / video.decoded.fps:.1f} s), "
        f"{width}x{height} pixels, {sound}."
    )
    lines = [f"**{markdown_text(video.name)}**: {markdown_text(facts)}"]
    if (source.width, source.height) != (width, height):
        lines.append(f"Scaled down from {source.width}x{source.height}.")
    lines += [markdown_text(f"Note: {w}") for w in video.decoded.warnings]
    return "\n\n".join(lines)


def _image_set_info(video) -> str:
    """An image set's facts: how many images, in which order, at which sizes."""
    names = video.frame_names
    order = f"'{names[0]}' first, '{names[-1]}' last" if len(names) > 1 else f"'{names[0]}'"
    facts = f"{video.count} images as frames, in name order ({order}), {_sizes_text(video.sizes)}."
    lines = [f"**{markdown_text(video.name)}**: {markdown_text(facts)}"]
    lines += [markdown_text(f"Note: {w}") for w in video.decoded.warnings]
    return "\n\n".join(lines)


FEW_SIZES = 4  # up to this many different sizes are all named


def _sizes_text(sizes) -> str:
    """The images' sizes (``sizes``: (height, width) per image), said truly: one size, each of a
    few, or how many and the smallest and largest (by area, then width: two sizes of the same
    area, 48x64 and 64x48, are two sizes, not "from 48x64 to 48x64")."""
    distinct = sorted({(int(h), int(w)) for h, w in sizes}, key=lambda s: (s[0] * s[1], s[1], s[0]))
    named = [f"{w}x{h}" for h, w in distinct]
    if len(named) == 1:
        return f"{named[0]} pixels"
    if len(named) <= FEW_SIZES:
        return f"sizes {', '.join(named[:-1])} and {named[-1]} pixels, each image kept at its own"
    return f"{len(named)} different sizes from {named[0]} to {named[-1]} pixels, each image kept at its own"


def object_choices(work: WorkState) -> list[tuple[str, int]]:
    return [(f"{o.id}: {o.name}" + ("" if o.visible else " (hidden)"), o.id) for o in work.objects]


def legend_html(work: WorkState) -> str:
    """The object list: colour, name, label, shown or hidden, frames with a mask, frames lost;
    then the video's labels."""
    if not work.objects:
        return "<p>No objects. Press <b>Add object</b>.</p>"
    # One pass over the masks for every object (a pass per object took seconds with many).
    with_mask = Counter(obj for (_, obj), m in work.doc.masks.items() if m.area)
    lost = Counter(obj for (f, obj) in work.doc.tracked if not work.doc.area(f, obj))
    rows = []
    for o in work.objects:
        r, g, b = o.color
        swatch = f"#{r:02x}{g:02x}{b:02x}"
        active = " &#9664; clicks go here" if o.id == work.active else ""
        rows.append(
            f"<tr data-object='{o.id}'><td><span style='display:inline-block;width:14px;height:14px;"
            f"background:{swatch};border:1px solid #333'></span></td><td>{o.id}</td>"
            f"<td>{html_text(o.name)}{active}</td><td>{html_text(o.label)}</td>"
            f"<td>{'shown' if o.visible else 'hidden'}</td><td>{with_mask[o.id]}</td><td>{lost[o.id]}</td></tr>"
        )
    head = ("<tr><th></th><th>id</th><th>name</th><th>label</th><th>view</th><th>frames with mask</th>"
            "<th>lost</th></tr>")  # fmt: skip
    labels = ", ".join(html_text(label) for label in work.labels)
    return f"<table class='object-table'>{head}{''.join(rows)}</table><p>Labels (classes): {labels}</p>"
