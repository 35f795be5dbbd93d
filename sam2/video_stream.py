"""A long video read from its file as tracking needs it, in bounded memory.

:func:`sam2.video_io.decode` holds every frame at once: 18,000 frames of 720p are 50 GB as
raw RGB. :func:`open_stream` instead reads the file once to count its frames exactly (and to
check the limits and note damage, as :func:`decode` does), keeping none, and gives a
:class:`FrameStream`: a sequence of the same frames (bit for bit: the same ffmpeg command,
the same filters) that decodes forward through the file as frames are asked for and keeps
only the last ``window`` of them.

Access pattern and cost:

* forward (tracking forward, the exports): each frame is decoded once;
* a frame behind the window (tracking from frame 0 after a prompt on frame 100, a second
  export pass): the file is opened again and decoded from its start, the frames before the
  one asked for dropped inside ffmpeg (``trim``), not piped; exact, and costs one decode of
  the file up to that frame;
* backward tracking steps behind the window every ``window`` frames, so it costs about
  N / window decodes of the file: callers that track backward decode the whole video first
  (the command line does; see ``annotation.cli``).

Seeking inside ffmpeg (``-ss`` before ``-i``) would be faster for the jumps, but its frames
are not promised to line up with the ``fps`` filter's sampling of the whole file, so it is
not used: the frames here are always those :func:`decode` gives.

Never imports torch; numpy frames are HxWx3 uint8.
"""

from __future__ import annotations

import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from sam2 import video_io
from sam2.video_io import DecodedVideo, MediaError, MediaLimits, VideoInfo

__all__ = ["FrameStream", "open_stream", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 8  # decoded frames kept: the frame being tracked and a few before it (a 720p frame is 2.8 MB)


@dataclass(frozen=True)
class _Plan:
    """What the ffmpeg command of every pass needs: the file, sampling rate and output (W, H)."""

    info: VideoInfo
    rate: Fraction
    size: tuple[int, int]


def open_stream(
    path: str | Path, limits: MediaLimits | None = None, fps: float | None = None, workdir: Path | None = None,
    keep_audio: bool = True, window: int = DEFAULT_WINDOW,
) -> tuple[DecodedVideo, FrameStream]:
    """``path`` as :func:`sam2.video_io.decode` would give it, without its frames -> (the video's
    facts with ``frames`` empty, the frames as a :class:`FrameStream`).

    One pass through the file counts the frames (none is kept), with the limits and notes of
    :func:`decode`; the same MediaError for the same problems. ``workdir``, ``keep_audio``: as
    :func:`decode` (the sound is copied for the overlay export)."""
    limits = limits or MediaLimits()
    info = video_io.probe(path)
    rate = video_io._sampling_rate(info, limits, fps)
    video_io._check_limits(info, rate, limits)
    plan = _Plan(info, rate, video_io.fit_size(info.width, info.height, limits.max_side))
    count, notes = _count_frames(plan, limits)
    if info.duration is None and count / rate > limits.max_seconds + video_io._DURATION_SLACK_S:
        raise video_io._too_long(float(count / rate), limits)
    audio = video_io._extract_audio(info, workdir, notes) if info.has_audio and keep_audio else None
    timestamps = [float(i / rate) for i in range(count)]
    decoded = DecodedVideo([], float(rate), info, audio, timestamps, notes)
    return decoded, FrameStream(plan, count, window)


def _count_frames(plan: _Plan, limits: MediaLimits) -> tuple[int, list[str]]:
    """The frames :func:`decode` would keep, counted through one reused buffer, and its damage notes."""
    info = plan.info
    if info.is_image:
        raise MediaError(f"'{info.path.name}' is a still image, not a video to stream.")
    process = _Pass(plan, 0, limits.max_frames + 1)
    count = 0
    try:
        while count <= limits.max_frames and process.read_into():
            count += 1
    finally:
        stderr, returncode = process.close(killed=count > limits.max_frames)
    if count > limits.max_frames:
        raise video_io._too_many_frames(float(plan.rate), limits, info.duration)
    if count == 0:
        detail = video_io._ffmpeg_reason(stderr)
        detail = f" (ffmpeg: {detail})" if detail and "output" not in detail.lower() else ""
        raise MediaError(
            f"Could not read a video from '{info.path.name}': not one frame in it could be decoded{detail}, "
            "so it is probably damaged or cut off. Upload the complete file."
        )
    return count, video_io._damage_notes(info, plan.rate, count, stderr, returncode)


class _Pass:
    """One ffmpeg process piping rgb24 frames from frame ``first`` on (those before it dropped
    inside ffmpeg by ``trim``, after the same ``fps`` sampling as the whole file's)."""

    def __init__(self, plan: _Plan, first: int, max_frames: int) -> None:
        self.size = plan.size
        cmd = video_io._decode_command(plan.info, plan.rate, plan.size, max_frames)
        if first:
            at = cmd.index("-vf") + 1
            head, scale = cmd[at].split(",scale=")
            cmd[at] = f"{head},trim=start_frame={first},setpts=PTS-STARTPTS,scale={scale}"
        self._errors = bytearray()
        self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)  # fmt: skip
        stderr = self._process.stderr
        assert stderr is not None
        self._drain = threading.Thread(target=lambda: self._errors.extend(stderr.read()), daemon=True)
        self._drain.start()
        width, height = plan.size
        self._buffer = np.empty((height, width, 3), np.uint8)

    def read(self) -> np.ndarray | None:
        """The next frame (a new array), or None at the end."""
        assert self._process.stdout is not None
        return video_io._read_frame(self._process.stdout, self.size)

    def read_into(self) -> bool:
        """Read the next frame into one reused buffer (counting) -> False at the end."""
        assert self._process.stdout is not None
        view = self._buffer.data.cast("B")
        filled = 0
        while filled < len(view):
            got = self._process.stdout.readinto(view[filled:])  # type: ignore[attr-defined]
            if not got:
                return False
            filled += got
        return True

    def close(self, killed: bool = True) -> tuple[str, int]:
        """Stop the process (``killed``: before its end) -> (its stderr, its return code)."""
        if killed and self._process.poll() is None:
            self._process.kill()
        assert self._process.stdout is not None
        self._process.stdout.close()
        returncode = self._process.wait()
        self._drain.join()
        return self._errors.decode("utf-8", "replace"), returncode


class FrameStream:
    """The frames of one video file, decoded forward as they are asked for; at most ``window``
    decoded frames are held (``held``). Indexing gives HxWx3 uint8, as a ``FrameStore`` does,
    and the predictor and the exports use it as one (``sizes``, ``height``, ``width``).

    A frame at or ahead of the window is read by decoding forward to it; one behind the
    window opens the file again from its start (see the module's notes on cost). Safe to
    use from several threads (one frame is read at a time)."""

    encoding = "stream"

    def __init__(self, plan: _Plan, count: int, window: int = DEFAULT_WINDOW) -> None:
        if count < 1:
            raise ValueError("The video has no frames.")
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._plan = plan
        self.window = window
        width, height = plan.size
        self.height, self.width = height, width
        self.sizes: list[tuple[int, int]] = [(height, width)] * count
        self._held: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pass: _Pass | None = None
        self._next = 0  # the index of the frame the open pass gives next
        self._lock = threading.Lock()
        self.passes = 0  # ffmpeg processes started (the first pass, and each jump back)
        self.most_held = 0  # the most decoded frames held at once (never above ``window``)

    @property
    def uniform(self) -> bool:
        return True

    @property
    def held(self) -> int:
        """Decoded frames held now."""
        return len(self._held)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame indices are whole numbers, not {type(index).__name__}")
        index = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"Frame index {index} is outside the video (0 to {len(self) - 1}).")
        with self._lock:
            if index not in self._held:
                self._read_to(index)
            return self._held[index]

    def _read_to(self, index: int) -> None:
        if self._pass is None or index < self._next:
            self._open(index)
        assert self._pass is not None
        while self._next <= index:
            frame = self._pass.read()
            if frame is None:  # the counting pass read more: the file changed, or ffmpeg failed
                self._close()
                raise MediaError(f"'{self._plan.info.path.name}' ended at frame {self._next} while being read again "
                                 f"(it had {len(self)} frames); was the file changed?")  # fmt: skip
            self._held[self._next] = frame
            while len(self._held) > self.window:
                self._held.popitem(last=False)
            self.most_held = max(self.most_held, len(self._held))
            self._next += 1

    def _open(self, first: int) -> None:
        self._close()
        self._pass = _Pass(self._plan, first, len(self) - first)
        self._next = first
        self.passes += 1

    def _close(self) -> None:
        if self._pass is not None:
            self._pass.close()
            self._pass = None

    def close(self) -> None:
        """Stop the decoding process and drop the frames held (the next access starts again)."""
        with self._lock:
            self._close()
            self._held.clear()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # at interpreter exit: the process goes with us anyway
            pass

    def nbytes(self) -> int:
        """Bytes of decoded frames held now."""
        return sum(frame.nbytes for frame in self._held.values())

    def __iter__(self):
        return (self[i] for i in range(len(self)))

