"""Video in, hardened: probe a file with the bundled ffmpeg and decode it to upright RGB frames
within limits. The one decoder of the project: ``SAM2VideoPredictor.init_state(path)``, the
page's uploads and the command line all read videos through :func:`decode`.

Everything here works on numpy arrays (frames are HxWx3 uint8) and never imports torch.
Problems meant for the person who gave the file raise :class:`MediaError` (a ValueError),
whose message names the problem in plain words and, for a limit, how to raise it
(:attr:`MediaLimits.advice`: the app's flag, the command line's, or the Python argument).

Decisions worth knowing:

* Rotation: ffmpeg rotates upright by itself while decoding (``-autorotate`` is on by default;
  checked by the tests with a marker in a known corner). :func:`probe` reads the rotation only
  to report it and to know the upright size. Still images are decoded with Pillow, which
  applies their EXIF orientation.
* Frame rate: frames are sampled to a constant rate with ffmpeg's ``fps`` filter, so variable
  frame rate sources come out evenly spaced in time.
* Size: frames larger than ``max_side`` are scaled down inside ffmpeg (``scale`` filter), so
  a 4K source never sits in memory at full size.
* Limits: checked before decoding from the container's duration (fast refusal), then exactly
  while decoding (at most ``max_frames + 1`` frames are ever read). Nothing is cut silently.
* Damaged files: a cut-off file is decoded as far as it is readable, with a note in
  :attr:`DecodedVideo.warnings`; with no readable frame it is an error. An MP4 cut off before
  its index (the 'moov atom', written last by most recorders) cannot be read at all.
* Formats: ffmpeg may only open the formats in :data:`VIDEO_FORMATS`, :data:`IMAGE_FORMATS`
  and :data:`AUDIO_FORMATS` (``-format_whitelist``, checked again on its report). ffmpeg reads
  much else as "video": a text file (its ``tty`` demuxer draws the text as frames), playlists
  that make it open other files or URLs (``hls``, ``concat``). Such uploads are refused with
  "is not a video or image file" (text) or "is not in a video or image format the app reads",
  before ffmpeg opens anything they point to.
"""

from __future__ import annotations

import codecs
import functools
import math
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "MediaLimits", "MediaError", "VideoInfo", "DecodedVideo", "probe", "decode", "fit_size", "PREDICTOR_LIMITS",
    "load_video_frames", "VideoSource",
]  # fmt: skip

_PROBE_TIMEOUT_S = 60.0
# Containers often report the longest stream (audio) a little past the last video frame.
_DURATION_SLACK_S = 0.5
_DAMAGE_HINTS = ("partial file", "invalid data", "error while decoding", "corrupt", "decoding error")
_NTSC_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))

VIDEO_FORMATS = frozenset({
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2",  # one demuxer: QuickTime / MP4 (also AVIF, HEIF)
    "matroska", "webm", "avi", "flv", "asf", "mpeg", "mpegts", "mpegvideo", "mxf", "nut", "ogg",
    "dv", "rm", "gif", "apng", "ivf", "obu", "h261", "h263", "h264", "hevc", "vvc", "m4v", "mjpeg",
    "yuv4mpegpipe",
})  # fmt: skip
"""ffmpeg demuxers of real video formats (the names ``ffmpeg -demuxers`` lists)."""

IMAGE_FORMATS = frozenset({
    "image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
    "jpegxl_pipe", "j2k_pipe", "qoi_pipe", "psd_pipe", "ppm_pipe", "pgm_pipe", "pbm_pipe",
    "pam_pipe", "sgi_pipe", "dpx_pipe", "exr_pipe", "hdr_pipe", "pcx_pipe", "sunrast_pipe",
    "xwd_pipe", "dds_pipe",
})  # fmt: skip
"""ffmpeg demuxers of still images."""

AUDIO_FORMATS = frozenset({"mp3", "wav", "w64", "flac", "aac", "aiff", "caf", "amr", "ac3", "eac3", "wv", "ape", "dts"})
"""Sound-only formats: opened only to tell the user that the file has no picture."""

# Video codecs that draw text (ANSI art, .nfo/.txt files): never a real video.
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
_KNOWN_FORMATS = VIDEO_FORMATS | IMAGE_FORMATS | AUDIO_FORMATS
_FORMAT_WHITELIST = ",".join(sorted(_KNOWN_FORMATS))


@dataclass(frozen=True)
class MediaLimits:
    """What one upload may cost. The defaults suit a CPU-only Space with ~16 GB of memory.

    max_frames: frames kept after sampling (600 = 20 s at 30 fps or 2 min at 5 fps). At
        1280x720 a frame is 2.8 MB of RGB, so 600 frames hold about 1.7 GB.
    max_seconds: longest source duration accepted, in seconds.
    max_side: longest side of the decoded frames in pixels; bigger videos are scaled down,
        which is never an error.
    max_fps: highest sampling rate; faster sources are sampled down to it, which is never an
        error (asking :func:`decode` for a faster explicit rate is).

    advice: how a message says to raise a limit, with ``{flag}`` (``--max-frames``), ``{name}``
        (``max_frames``) and ``{value}`` (a round number above what the file needs).
    """

    max_frames: int = 600
    max_seconds: float = 120.0
    max_side: int = 1280
    max_fps: float = 30.0
    advice: str = "start the app with {flag} {value}"

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_seconds", "max_side", "max_fps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def how_to_raise(self, name: str, needed: float) -> str:
        """E.g. "start the app with --max-seconds 300" for limit ``name`` and a need of ``needed``."""
        return self.advice.format(flag="--" + name.replace("_", "-"), name=name, value=_nice_above(needed))


class MediaError(ValueError):
    """A problem with the user's file or a limit, worded for someone who is not a programmer."""


@dataclass
class VideoInfo:
    """What :func:`probe` learned about a file, before decoding any frame.

    width, height: upright size in pixels (after rotation), before any scaling.
    fps: the source's average frame rate (0.0 if unknown).
    duration: seconds; None when the container does not say; 0.0 for a still image.
    frame_count: estimate, round(duration * fps); 1 for a still image; 0 if unknown.
    rotation: clockwise degrees (0, 90, 180, 270) the coded picture is turned for display,
        as in the legacy ``rotate`` tag (a display matrix of -90 degrees reads as 90).
    """

    path: Path
    width: int
    height: int
    fps: float
    duration: float | None
    frame_count: int
    rotation: int
    has_audio: bool
    codec: str
    is_image: bool = False
    pixel_format: str = ""  # e.g. "yuv420p", "yuv420p10le" (10-bit), "bgra" (GIF)
    stream_index: int = 0  # ffmpeg's index of the video stream that is read


@dataclass
class DecodedVideo:
    """Frames ready for the model and the UI.

    frames: N arrays HxWx3 uint8, upright, long side <= ``max_side`` (aspect kept).
    fps: the constant sampling rate used; ``timestamps[i] == i / fps`` seconds from the start.
    audio_path: the first audio track copied without re-encoding into a .mka in ``workdir``
        (for the overlay export), or None.
    warnings: plain-language notes for the user, e.g. the file was cut off.
    frame_names: an image set's file names in frame order (``sam2.image_set``), which exports
        name their masks after; empty for a video, whose frames have no names.
    source_sizes: an image set's (H, W) of each image before any scaling (clicks written by
        hand are in those pixels); empty for a video (``source`` has its size).
    """

    frames: list[np.ndarray]
    fps: float
    source: VideoInfo
    audio_path: Path | None
    timestamps: list[float]
    warnings: list[str] = field(default_factory=list)
    frame_names: list[str] = field(default_factory=list)
    source_sizes: list[tuple[int, int]] = field(default_factory=list)


# ----------------------------------------------------------------------------- probe


@functools.cache
def _ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_input(path: Path) -> list[str]:
    """``-i`` for a user's file: ``file:`` keeps names like ``concat:x`` or ``-y.mp4`` from being
    read as protocols/options, and only real video/image demuxers may open it."""
    return ["-format_whitelist", _FORMAT_WHITELIST, "-i", "file:" + str(path.resolve())]


def probe(path: str | Path) -> VideoInfo:
    """Read a file's streams from ``ffmpeg -i`` (its stderr) without decoding frames."""
    path = _existing_file(Path(path))
    try:
        result = subprocess.run(
            [_ffmpeg(), "-hide_banner", "-nostdin", *_ffmpeg_input(path)],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"Reading '{path.name}' took too long; the file may be damaged.") from exc
    return _parse_probe(path, result.stderr.decode("utf-8", "replace"))


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise MediaError(f"The file '{path.name}' does not exist (was the upload interrupted?).")
    if not path.is_file():
        raise MediaError(f"'{path.name}' is a folder, not a video file.")
    if path.stat().st_size == 0:
        raise MediaError(f"The file '{path.name}' is empty (0 bytes). Upload it again.")
    return path


_INPUT_RE = re.compile(r"^Input #0, (?P<fmt>.+?), from ", re.M)
_DURATION_RE = re.compile(r"^\s*Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)", re.M)
_STREAM_RE = re.compile(r"^(?P<indent>\s*)Stream #0:(?P<index>\d+)[^:]*: (?P<kind>\w+): (?P<desc>.*)$")
_SIZE_RE = re.compile(r"(?<![\w.])(\d+)x(\d+)(?=[\s,\[]|$)")
_FPS_RE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+(?:\.\d+)?)\s*$", re.M)
_DISPLAY_MATRIX_RE = re.compile(r"display\s*matrix\s*:\s*rotation of\s*(-?\d+(?:\.\d+)?)", re.I)


@dataclass
class _Stream:
    index: int
    kind: str  # "Video", "Audio", ...
    desc: str  # the rest of the stream's line: codec, pixel format, size, rates
    block: str  # its indented Metadata / Side data lines


def _parse_probe(path: Path, text: str) -> VideoInfo:
    """Turn ``ffmpeg -i`` stderr into a VideoInfo, or a MediaError saying why it cannot."""
    found = _INPUT_RE.search(text)
    if not found:
        raise _open_error(path, text)
    if not set(found["fmt"].split(",")) & _KNOWN_FORMATS:
        raise _not_media(path)
    streams = _split_streams(text)
    video = next((s for s in streams if s.kind == "Video" and "attached pic" not in s.desc), None)
    has_audio = any(s.kind == "Audio" for s in streams)
    if video is None:
        if not has_audio and _looks_like_text(path):
            raise _not_media(path)
        what = "it looks like an audio-only file" if has_audio else "ffmpeg found no picture in it"
        raise MediaError(f"'{path.name}' has no video stream ({what}). Please upload a video.")
    if _codec(video.desc) in _TEXT_CODECS:
        raise _not_media(path)
    try:
        width, height = _parse_size(path, video.desc)
    except MediaError:
        if _looks_like_text(path):  # e.g. a text file named .jpg: ffmpeg guesses from the name
            raise _not_media(path) from None
        raise
    rotation = _parse_rotation(video.block)
    if rotation in (90, 270):
        width, height = height, width
    fps = _parse_fps(video.desc)
    is_image = found["fmt"].endswith("_pipe") or found["fmt"] == "image2"
    duration = 0.0 if is_image else _parse_duration(text)
    info = VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=fps,
        duration=duration,
        frame_count=1 if is_image else round((duration or 0.0) * fps),
        rotation=rotation,
        has_audio=has_audio,
        codec=_codec(video.desc),
        is_image=is_image,
        pixel_format=_parse_pixel_format(video.desc),
        stream_index=video.index,
    )
    return _with_image_orientation(info) if is_image else info


def _codec(desc: str) -> str:
    """The codec name that starts a stream's description, e.g. "h264 (High) ..." -> "h264"."""
    return desc.split(maxsplit=1)[0].rstrip(",") if desc.strip() else ""


def _split_streams(text: str) -> list[_Stream]:
    """Each ``Stream #0:N`` line with the more-indented lines under it."""
    streams: list[_Stream] = []
    indent = -1
    for line in text.splitlines():
        match = _STREAM_RE.match(line)
        if match:
            indent = len(match["indent"])
            streams.append(_Stream(int(match["index"]), match["kind"], match["desc"], ""))
        elif streams and indent >= 0 and len(line) - len(line.lstrip()) > indent:
            streams[-1].block += line + "\n"
        else:
            indent = -1
    return streams


def _parse_size(path: Path, desc: str) -> tuple[int, int]:
    match = _SIZE_RE.search(desc)
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise MediaError(f"Could not read a video from '{path.name}': its picture size is unknown.")
    return int(match[1]), int(match[2])


def _parse_pixel_format(desc: str) -> str:
    """The second comma-separated part of a video line, e.g. "yuv420p(tv, bt709)" -> "yuv420p"."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(desc):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(desc[start:i].strip())
            start = i + 1
    parts.append(desc[start:].strip())
    return parts[1].split("(")[0] if len(parts) > 1 else ""


def _parse_rotation(block: str) -> int:
    """Clockwise display rotation in {0, 90, 180, 270} from a display matrix or ``rotate`` tag."""
    matrix = _DISPLAY_MATRIX_RE.search(block)
    if matrix:  # the display matrix angle is counter-clockwise
        degrees = -float(matrix[1])
    else:
        tag = _ROTATE_TAG_RE.search(block)
        degrees = float(tag[1]) if tag else 0.0
    return round(degrees / 90.0) * 90 % 360


def _parse_fps(desc: str) -> float:
    """Average frame rate ("fps"), else the stream's base rate ("tbr"), else 0.0."""
    rates = {kind: float(value) * (1000 if k else 1) for value, k, kind in _FPS_RE.findall(desc)}
    return rates.get("fps") or rates.get("tbr") or 0.0


def _parse_duration(text: str) -> float | None:
    match = _DURATION_RE.search(text)
    if not match or match[1] is None:
        return None
    hours, minutes, seconds = int(match[1]), int(match[2]), float(match[3])
    return hours * 3600 + minutes * 60 + seconds


def _with_image_orientation(info: VideoInfo) -> VideoInfo:
    """Still images: ffmpeg does not print EXIF orientation, so read it with Pillow."""
    try:
        with Image.open(info.path) as image:
            orientation = int(image.getexif().get(0x0112, 1))
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return info  # Pillow cannot read it; ffmpeg's view stands.
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    info.width, info.height = width, height
    info.rotation = {3: 180, 6: 90, 8: 270}.get(orientation, 0)
    return info


def _not_media(path: Path) -> MediaError:
    """A file that is not a video or image at all (text), or in a format outside the allow-list."""
    if _looks_like_text(path):
        what = f"'{path.name}' is not a video or image file (it is a text file)"
    else:
        what = f"'{path.name}' is not in a video or image format the app reads"
    return MediaError(f"{what}. Upload a video (mp4, mov, webm, mkv, avi, gif) or an image.")


def _looks_like_text(path: Path, size: int = 8192) -> bool:
    """Whether the file starts as text: UTF-8 (or UTF-16 with its byte order mark) without
    control characters other than tabs, line breaks and ESC. Media files fail this within
    their first bytes (binary headers and sizes)."""
    try:
        with open(path, "rb") as file:
            head = file.read(size)
    except OSError:
        return False
    encoding = "utf-8"
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                      (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            head, encoding = head[len(bom) :], name
            break
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)  # a cut last character is fine
    except UnicodeDecodeError:
        return False
    return bool(text.strip()) and not any((ord(c) < 32 and c not in "\t\n\r\f\v\x1b") or c == "\x7f" for c in text)


def _open_error(path: Path, text: str) -> MediaError:
    """The reason ffmpeg gives for not opening a file, in plain words."""
    if "Format not on whitelist" in text or _looks_like_text(path):
        return _not_media(path)
    if "moov atom not found" in text and _starts_like_mp4(path):
        reason = (
            "the file is incomplete: its index (the MP4 'moov atom', written when recording "
            "ends) is missing, so it was probably cut off while uploading or recording. "
            "Upload the complete file"
        )
    elif "moov atom not found" in text:  # ffmpeg went by the name (.mp4, .mov) alone
        named = f"the name ends in '{path.suffix}'" if path.suffix else "ffmpeg tried it as one"
        reason = f"it is not a video format ffmpeg can read ({named}, but the content is not an MP4/MOV video)"
    else:
        reason = _ffmpeg_reason(text) or "ffmpeg does not recognise the format"
        if reason.lower().startswith("end of file") or (_starts_like_mp4(path) and _mp4_cut_off(path)):
            reason = (
                "the file ends too early (in the middle of its index or a header), so it was "
                "probably cut off while uploading or recording. Upload the complete file"
            )
        elif "Invalid data found" in reason:
            reason = f"it is not a video format ffmpeg can read ({reason})"
    return MediaError(f"Could not read a video from '{path.name}': {reason}.")


# ISO/QuickTime boxes that can open an MP4 or MOV file (its first box's type, bytes 4 to 8).
_MP4_FIRST_BOXES = frozenset({
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx", b"moof",
})


def _starts_like_mp4(path: Path) -> bool:
    """Whether the file starts with an MP4/QuickTime box: only then is a missing 'moov atom' a
    cut-off MP4. ffmpeg also reports it for any file it tried as MP4 because of its name (a zip,
    a PDF, random bytes named .mp4)."""
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] in _MP4_FIRST_BOXES


def _mp4_cut_off(path: Path) -> bool:
    """Whether an MP4/MOV file's top-level boxes run past its end, as when it was cut off
    inside its index (ffmpeg then reports only 'Invalid data found')."""
    try:
        end = path.stat().st_size
        with open(path, "rb") as file:
            offset = 0
            for _ in range(100_000):
                file.seek(offset)
                head = file.read(16)
                if len(head) < 8:
                    return len(head) > 0  # a box header cut in two
                size = int.from_bytes(head[:4], "big")
                if size == 1:  # 64-bit size
                    size = int.from_bytes(head[8:16], "big") if len(head) == 16 else end + 1
                elif size == 0:  # "to the end of the file"
                    return False
                if size < 8:
                    return False  # not a box structure after all
                if offset + size > end:
                    return True
                offset += size
                if offset == end:
                    return False
    except OSError:
        pass
    return False


def _ffmpeg_reason(text: str) -> str:
    """ffmpeg's last error line without its ``[in#0 @ 0x...]`` prefix."""
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("At least one output file")]
    for line in reversed(lines):
        if line.startswith("Error opening input:"):
            return line.removeprefix("Error opening input:").strip()
    return lines[-1].rstrip(".") if lines else ""


# ----------------------------------------------------------------------------- limits


def _nice_above(value: float) -> str:
    """A round number >= value to suggest for a limit flag (212.4 -> "300")."""
    value = max(value, 1.0)
    scale = 10 ** math.floor(math.log10(value))
    step = next(s for s in (1, 1.5, 2, 3, 4, 5, 6, 8, 10) if s * scale >= value - 1e-9)
    return f"{step * scale:g}"


def _as_fraction(rate: float) -> Fraction:
    """A rate for ffmpeg's ``fps`` filter; the 1001-based NTSC rates are recognised exactly."""
    for ntsc in _NTSC_RATES:
        if abs(rate - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(rate).limit_denominator(1000)


def _sampling_rate(info: VideoInfo, limits: MediaLimits, fps: float | None) -> Fraction:
    """``fps`` if given (must be within ``max_fps``), else the source rate capped at ``max_fps``."""
    if fps is None:
        source = info.fps if info.fps > 0 else limits.max_fps
        return _as_fraction(min(source, limits.max_fps))
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if fps > limits.max_fps + 1e-9:
        raise MediaError(
            f"A frame rate of {fps:g} fps is above the limit of {limits.max_fps:g} fps. Choose "
            f"{limits.max_fps:g} fps or less, or {limits.how_to_raise('max_fps', fps)}."
        )
    return _as_fraction(fps)


def _too_long(seconds: float, limits: MediaLimits) -> MediaError:
    return MediaError(
        f"This video is {seconds:.1f} s long; the limit is {limits.max_seconds:g} s. Trim it, "
        f"or {limits.how_to_raise('max_seconds', seconds)}."
    )


def _too_many_frames(rate: float, limits: MediaLimits, duration: float | None) -> MediaError:
    if duration:
        frames = max(round(duration * rate), limits.max_frames + 1)  # durations can under-report
        what = f"At {rate:.4g} fps this {duration:.1f} s video gives about {frames} frames"
        lower = math.floor(limits.max_frames / duration * 10) / 10
        slower = f"Pick a frame rate of {lower:g} fps or less, trim the video, "
    else:
        frames = limits.max_frames + 1
        what = f"At {rate:.4g} fps this video gives more than {limits.max_frames} frames"
        slower = "Pick a lower frame rate, trim the video, "
    return MediaError(
        f"{what}; the limit is {limits.max_frames} frames. {slower}or "
        f"{limits.how_to_raise('max_frames', frames)}."
    )


def _check_limits(info: VideoInfo, rate: Fraction, limits: MediaLimits) -> None:
    """Refuse clearly-too-long videos from the container's duration, before decoding."""
    if info.duration is None:
        return  # checked exactly while decoding
    if info.duration > limits.max_seconds + _DURATION_SLACK_S:
        raise _too_long(info.duration, limits)
    if info.duration * rate > limits.max_frames * 1.02 + 1:  # slack: duration may include audio
        raise _too_many_frames(float(rate), limits, info.duration)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is <= max_side, aspect kept, each side >= 1."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# ----------------------------------------------------------------------------- decode


def decode(
    path: str | Path,
    limits: MediaLimits = MediaLimits(),
    fps: float | None = None,
    workdir: Path | None = None,
    keep_audio: bool = True,
) -> DecodedVideo:
    """Decode ``path`` to upright RGB frames sampled at a constant rate, within ``limits``.

    fps: sampling rate; None means the source's rate capped at ``limits.max_fps``.
    workdir: where the audio track is copied (a new temporary folder if None); the caller owns
        the files. On error nothing is left behind. keep_audio=False leaves the sound out.
    Raises MediaError for anything the user can fix (bad file, limits); ValueError for a bad fps.
    """
    info = probe(path)
    rate = _sampling_rate(info, limits, fps)
    _check_limits(info, rate, limits)
    size = fit_size(info.width, info.height, limits.max_side)
    frames, notes = _decode_frames(info, rate, size, limits)
    if info.duration is None and len(frames) / rate > limits.max_seconds + _DURATION_SLACK_S:
        raise _too_long(float(len(frames) / rate), limits)
    audio = _extract_audio(info, workdir, notes) if info.has_audio and keep_audio else None
    timestamps = [float(i / rate) for i in range(len(frames))]
    return DecodedVideo(frames, float(rate), info, audio, timestamps, notes)


def _decode_frames(
    info: VideoInfo, rate: Fraction, size: tuple[int, int], limits: MediaLimits
) -> tuple[list[np.ndarray], list[str]]:
    """All frames (N x HxWx3 uint8 at ``size`` = (W, H)) and notes about damage."""
    if info.is_image:
        image = _decode_still(info, size)
        if image is not None:
            return [image], []
    cmd = _decode_command(info, rate, size, 1 if info.is_image else limits.max_frames + 1)
    frames, stderr, returncode = _read_raw_frames(cmd, size, limits.max_frames)
    if len(frames) > limits.max_frames:
        raise _too_many_frames(float(rate), limits, info.duration)
    if not frames:
        detail = _ffmpeg_reason(stderr)
        detail = f" (ffmpeg: {detail})" if detail and "output" not in detail.lower() else ""
        raise MediaError(
            f"Could not read a video from '{info.path.name}': not one frame in it could be decoded{detail}, "
            "so it is probably damaged or cut off. Upload the complete file."
        )
    return frames, _damage_notes(info, rate, len(frames), stderr, returncode)


def _decode_still(info: VideoInfo, size: tuple[int, int]) -> np.ndarray | None:
    """A still image via Pillow (applies EXIF orientation); None if Pillow cannot read it."""
    try:
        with Image.open(info.path) as image:
            same_way = (image.width >= image.height) == (size[0] >= size[1])
            image.draft("RGB", size if same_way else size[::-1])  # JPEG: decode at reduced scale
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if upright.size != size:
        upright = upright.resize(size, Image.Resampling.LANCZOS)
    return np.array(upright, dtype=np.uint8)


def _decode_command(info: VideoInfo, rate: Fraction, size: tuple[int, int], max_frames: int) -> list[str]:
    """ffmpeg: autorotate (default), resample to ``rate``, scale to ``size``, rgb24 to stdout.

    ``eof_action=pass`` keeps the last frame of very short clips (one frame of a 0.04 s clip at
    10 fps would otherwise round to zero frames).
    """
    width, height = size
    filters = f"fps=fps={rate.numerator}/{rate.denominator}:eof_action=pass,scale={width}:{height}:flags=area"
    return [
        _ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error",
        *_ffmpeg_input(info.path), "-map", f"0:{info.stream_index}",
        "-vf", filters, "-frames:v", str(max_frames), "-an", "-sn", "-dn",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]  # fmt: skip


def _read_raw_frames(cmd: list[str], size: tuple[int, int], max_frames: int) -> tuple[list[np.ndarray], str, int]:
    """Run ``cmd`` and read rgb24 frames from its stdout; stop after ``max_frames + 1``.

    Returns (frames, stderr text, return code). stderr is drained on a thread so a chatty
    ffmpeg cannot block on a full pipe.
    """
    errors = bytearray()
    frames: list[np.ndarray] = []
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        stderr = process.stderr
        drain = threading.Thread(target=lambda: errors.extend(stderr.read()), daemon=True)
        drain.start()
        try:
            while len(frames) <= max_frames:
                frame = _read_frame(process.stdout, size)
                if frame is None:
                    break
                frames.append(frame)
            else:
                process.kill()  # over the limit: no need to decode the rest
        except BaseException:
            process.kill()
            raise
        finally:
            process.stdout.close()
            returncode = process.wait()
            drain.join()
    return frames, errors.decode("utf-8", "replace"), returncode


def _read_frame(stream: IO[bytes], size: tuple[int, int]) -> np.ndarray | None:
    """One HxWx3 frame from the pipe, or None at the end (a partial last frame is dropped)."""
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    view = frame.data.cast("B")
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            return None
        filled += count
    return frame


def _damage_notes(info: VideoInfo, rate: Fraction, count: int, stderr: str, returncode: int) -> list[str]:
    """A warning when ffmpeg reported decoding errors (typically a file cut off mid-way)."""
    lowered = stderr.lower()
    if returncode == 0 and not any(hint in lowered for hint in _DAMAGE_HINTS):
        return []
    expected = f" of about {round(info.duration * rate)}" if info.duration else ""
    return [
        f"'{info.path.name}' seems damaged or cut off: {count}{expected} frames could be read; "
        "the rest is left out."
    ]


def _extract_audio(info: VideoInfo, workdir: Path | None, notes: list[str]) -> Path | None:
    """Copy the first audio track as is into a .mka (Matroska holds any codec); None on failure.

    With no ``workdir`` a new temporary folder is made (and removed again on failure).
    """
    folder = Path(tempfile.mkdtemp(prefix="sam2-ui-")) if workdir is None else Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"audio-{uuid.uuid4().hex[:12]}.mka"
    cmd = [
        _ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        *_ffmpeg_input(info.path), "-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "copy", str(target),
    ]  # fmt: skip
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S * 5)
        if result.returncode == 0 and target.exists() and target.stat().st_size > 0:
            return target
    except BaseException:
        _discard(target, folder if workdir is None else None)
        raise
    _discard(target, folder if workdir is None else None)
    notes.append(f"The sound of '{info.path.name}' could not be read; exported videos will be silent.")
    return None


def _discard(file: Path, folder: Path | None) -> None:
    """Remove a partial output, and the temporary folder made for it if any."""
    file.unlink(missing_ok=True)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- init_state's sources


PREDICTOR_LIMITS = MediaLimits(
    max_frames=3000, max_seconds=3600.0, max_side=8192, max_fps=240.0,
    advice="pass init_state(..., limits=MediaLimits({name}={value}))",
)  # fmt: skip
"""What ``SAM2VideoPredictor.init_state`` reads by default: frames at the video's own rate and
size (up to 8K), a bound on the frame count (3000 frames of 1080p are 18 GB as raw RGB)."""

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VideoSource = str | Path | Sequence[np.ndarray] | np.ndarray


def load_video_frames(video: VideoSource, limits: MediaLimits = PREDICTOR_LIMITS) -> list[np.ndarray]:
    """A video file, a folder of images or arrays -> list of HxWx3 uint8 RGB frames.

    Files go through :func:`decode` (format allow-list, limits); a folder's images are read in
    name order (numbered names by number), each at its own size (the predictor gives each
    frame's masks at its size). Notes about the file
    (damage, scaling) are issued as warnings.
    """
    if isinstance(video, (str, Path)):
        path = Path(video)
        if not path.exists():
            raise FileNotFoundError(f"No such video file or folder: {path}")
        if path.is_dir():
            return _read_folder(path, limits)
        decoded = decode(path, limits, keep_audio=False)
        source = decoded.source
        notes = list(decoded.warnings)
        height, width = decoded.frames[0].shape[:2]
        if (width, height) != (source.width, source.height):
            notes.append(f"'{path.name}' ({source.width}x{source.height}) was scaled down to {width}x{height}.")
        for note in notes:
            warnings.warn(note, stacklevel=3)
        return decoded.frames
    if isinstance(video, np.ndarray):
        return [video] if video.ndim == 3 else list(video)
    return list(video)


def _frame_sort_key(path: Path) -> tuple[int, int, str]:
    # Numbered frames ("2.jpg" before "10.jpg") sort by number, others by name.
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def _read_folder(folder: Path, limits: MediaLimits) -> list[np.ndarray]:
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=_frame_sort_key)
    if not paths:
        raise MediaError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}.")
    if len(paths) > limits.max_frames:
        raise MediaError(
            f"The folder {folder} holds {len(paths)} images; the limit is {limits.max_frames} frames. "
            f"Split it, or {limits.how_to_raise('max_frames', len(paths))}."
        )
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise MediaError(f"'{path.name}' in {folder} is not a readable image ({exc}).") from None
        frames.append(frame)  # sizes may differ: the predictor handles each frame at its own
    return frames
