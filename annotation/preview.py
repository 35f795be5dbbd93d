"""The player's pictures and sound: each frame drawn as the viewer draws it (masks in the
objects' colours, clicks), scaled to the width the page shows it at and encoded as JPEG, and
the video's sound in a form every browser plays (MP3).

Why pictures drawn here and not masks drawn in the browser: the frames live on the server
(the page never has the video), and one small JPEG a frame at display size is what a 2-core
machine can make at a video's rate while the browser only decodes and shows it. Each picture
is kept (:class:`PreviewCache`, a budget of bytes per session) under a key made of everything
it shows, so a replay costs nothing, and a frame changed by tracking or a correction is drawn
again: the key holds its masks, prompts and which objects are shown.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from annotation.render import BOX_COLOR, draw_prompts, object_color
from annotation.work import Work

JPEG_QUALITY = 85  # masks' flat colours and edges stay clean; a 640 px frame is ~30-60 kB
MIN_WIDTH = 16
MAX_WIDTH = 4096  # wider than any screen shows a frame; a larger request is refused, not drawn
CACHE_BYTES = 24 * 1024 * 1024  # pictures kept per session (~500 frames of 640 px)
AUDIO_NAME = "play-audio.mp3"
AUDIO_TIMEOUT_S = 120


@dataclass(frozen=True)
class Picture:
    """One drawn frame: JPEG bytes and a tag that changes whenever what it shows does (an ETag)."""

    jpeg: bytes
    tag: str
    width: int
    height: int


def frame_key(work: Work, frame: int, width: int) -> tuple:
    """Everything :func:`player_view` of ``frame`` depends on, at ``width``:
    the frame's masks (the packed masks themselves), the object order and who is hidden, the
    frame's prompts and a pending box corner there."""
    doc = work.doc
    hidden = tuple(sorted(o.id for o in work.objects if not o.visible))
    masks = tuple((obj, doc.masks.get((frame, obj))) for obj in doc.object_ids)
    prompts = tuple((obj, p) for (f, obj), p in doc.prompts().items() if f == frame)
    corner = work.pending_corner if work.pending_corner and work.pending_corner[0] == frame else None
    return frame, width, doc.object_ids, hidden, masks, prompts, corner


def _colour_table() -> np.ndarray:
    table = np.zeros((256, 3), np.uint8)
    for obj_id in range(1, 256):
        table[obj_id] = object_color(obj_id)
    return table


COLOURS = _colour_table()  # object id -> its colour
CHANNEL_LUTS = [np.ascontiguousarray(COLOURS[:, c]) for c in range(3)]  # cv2.LUT's tables: 10x numpy's gather


def player_view(work: Work, frame: int, width: int) -> np.ndarray:
    """:func:`annotation.views.frame_view` drawn at ``width`` pixels wide (no wider than the
    frame) -> HxWx3 RGB: the frame is scaled first and the masks drawn at that size, in uint8
    (the viewer's float drawing at full size took most of a frame's time at 30 fps). The same
    colours, blend (half and half), outlines, order and markers as the viewer's, in scaled
    coordinates; at the frame's own width it differs from the viewer's picture by rounding at most."""
    assert work.video is not None
    image = np.asarray(work.video.frames[frame])
    full_h, full_w = image.shape[:2]
    width = min(width, full_w)
    scale = width / full_w
    size = (max(1, round(full_h * scale)), width)
    image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA) if width < full_w else image.copy()
    doc = work.doc
    hidden = {o.id for o in work.objects if not o.visible}
    labels = np.zeros(size, np.uint8)
    for obj in doc.object_ids:
        packed = doc.masks.get((frame, obj))
        if obj in hidden or packed is None or not packed.area:
            continue
        mask = packed.unpack().view(np.uint8)
        if mask.shape != size:
            mask = cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
        labels[mask > 0] = obj
    present = [int(i) for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[1:]) + 1]
    if present:
        colour = cv2.merge([cv2.LUT(labels, lut) for lut in CHANNEL_LUTS])
        blended = cv2.addWeighted(image, 0.5, colour, 0.5, 0)
        image = cv2.copyTo(blended, (labels > 0).view(np.uint8), image)
        thickness = max(1, round(min(size) / 300))
        for obj in present:
            contours, _ = cv2.findContours((labels == obj).view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(image, contours, -1, object_color(obj), thickness)
    for (f, obj), prompt in doc.prompts().items():
        if f == frame and obj not in hidden:
            box = None if prompt.box is None else [v * scale for v in prompt.box]
            image = draw_prompts(image, [(x * scale, y * scale) for x, y in prompt.points], prompt.labels, box)
    if work.pending_corner and work.pending_corner[0] == frame:
        _, x, y = work.pending_corner
        marker = max(9, min(size) // 20)
        cv2.drawMarker(image, (round(x * scale), round(y * scale)), (0, 0, 0), cv2.MARKER_SQUARE, marker + 2, 3)
        cv2.drawMarker(image, (round(x * scale), round(y * scale)), BOX_COLOR, cv2.MARKER_SQUARE, marker, 2)
    return image


def render(work: Work, frame: int, width: int) -> tuple[np.ndarray, bytes]:
    """The player's picture of ``frame`` at ``width`` (:func:`player_view`) -> (HxWx3 RGB, its JPEG)."""
    image = player_view(work, frame, width)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok, "OpenCV could not encode a JPEG"
    return image, data.tobytes()


class PreviewCache:
    """One session's drawn frames, newest kept within ``budget`` bytes. Thread-safe: the page
    fetches several frames at once."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._pictures: OrderedDict[tuple, Picture] = OrderedDict()
        self._bytes = 0
        self._audio_lock = threading.Lock()

    def picture(self, work: Work, frame: int, width: int) -> Picture:
        """``frame`` at ``width`` as it is now (``frame`` and ``width`` already checked)."""
        width = min(width, work.video.frame_size(frame)[1])
        key = frame_key(work, frame, width)
        with self._lock:
            known = self._pictures.get(key)
            if known is not None:
                self._pictures.move_to_end(key)
                return known
        image, jpeg = render(work, frame, width)
        tag = hashlib.blake2b(jpeg, digest_size=12).hexdigest()
        picture = Picture(jpeg, tag, image.shape[1], image.shape[0])
        with self._lock:
            if key not in self._pictures:
                self._pictures[key] = picture
                self._bytes += len(jpeg)
            while self._bytes > self.budget and len(self._pictures) > 1:
                _, old = self._pictures.popitem(last=False)
                self._bytes -= len(old.jpeg)
        return picture

    def audio(self, work: Work) -> Path | None:
        """The video's sound as MP3 in the work's folder (made on first use), or None where the
        video has none or it cannot be converted. The .mka the upload's sound was copied into
        keeps its own codec, which browsers may not play."""
        source = work.video.decoded.audio_path if work.video else None
        if source is None or not Path(source).is_file():
            return None
        target = work.folder / AUDIO_NAME
        with self._audio_lock:
            stamp = target.with_suffix(".source")
            if target.is_file() and stamp.is_file() and stamp.read_text() == str(source):
                return target
            partial = target.with_name(f".{target.name}.part.mp3")
            command = [
                imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-i", str(source), "-vn", "-c:a", "libmp3lame", "-q:a", "5", str(partial),
            ]  # fmt: skip
            try:
                done = subprocess.run(command, capture_output=True, timeout=AUDIO_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                partial.unlink(missing_ok=True)
                return None
            if done.returncode != 0 or not partial.is_file():
                partial.unlink(missing_ok=True)
                return None
            partial.replace(target)
            stamp.write_text(str(source))
            return target
