"""A hostile video corpus, made with ffmpeg at test time (nothing is stored in git), run as one
table through ``sam2.video_io.decode``; then a few of its files uploaded through the real app.

Every case must end one of two ways: a :class:`MediaError` whose message names the problem
(asserted on its words), or correct frames (count, size, and orientation from a red marker
in the top-left corner). Either way ``decode`` must leave nothing behind but the audio copy
it returns. Write the corpus to a folder to look at it: ``python -m tests.test_hostile_media OUT``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from sam2.video_io import DecodedVideo, MediaError, MediaLimits, decode
from tests import media_factory as mf

SMALL = MediaLimits(max_frames=60, max_seconds=10, max_side=320, max_fps=30)
RED = np.array(mf.MARKER_RGB)


# ----------------------------------------------------------------------------- checks


def marker_corner(frame: np.ndarray) -> str:
    """Which corner of an HxWx3 frame holds the red marker: 'top-left', 'bottom-right', ..."""
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)
    ys, xs = np.nonzero(red)
    assert len(ys) > 0, "no red marker found"
    height, width = red.shape
    return f"{'top' if ys.mean() < height / 2 else 'bottom'}-{'left' if xs.mean() < width / 2 else 'right'}"


@dataclass(frozen=True)
class Refused:
    """decode raises MediaError; each word (case-insensitive) is in its message."""

    words: tuple[str, ...]

    def __str__(self) -> str:
        return "refused: " + " / ".join(self.words)


@dataclass(frozen=True)
class Frames:
    """decode gives ``count`` frames (or a (min, max) range) of ``size`` = (W, H), the marker in
    ``corner`` (None: not checked) of every frame from ``marked_from`` on; ``warning`` words
    in the notes; ``audio``: an audio copy is returned; ``check``: anything else."""

    count: int | tuple[int, int]
    size: tuple[int, int]
    corner: str | None = "top-left"
    marked_from: int = 0
    warning: str | None = None
    audio: bool = False
    check: Callable[[DecodedVideo], None] | None = None

    def __str__(self) -> str:
        return (f"frames: {self.count} x {self.size[0]}x{self.size[1]}"
                + (f", marker {self.corner}" if self.corner else ""))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]  # folder -> the file, written there
    expect: Refused | Frames
    limits: MediaLimits = SMALL
    fps: float | None = None
    needs: tuple[str, ...] = field(default=())  # ffmpeg encoders the maker uses


# ----------------------------------------------------------------------------- the corpus


def _truncated(name: str, faststart: bool, where: str = "mid-stream") -> Callable[[Path], Path]:
    """An MP4 cut off like an interrupted upload. ``where``: "mid-stream" (half-way through the
    frame data), "in-index" (half-way through the moov box), "before-frames" (just past the
    start of the frame data, before its first frame ends)."""

    def make(folder: Path) -> Path:
        extra = ("-movflags", "+faststart") if faststart else ()
        full = mf.testsrc(folder / f"full-{name}", size=(160, 120), fps=25, seconds=2.0, extra=extra)
        data = full.read_bytes()
        moov, mdat = data.find(b"moov") - 4, data.find(b"mdat") - 4
        assert (moov < mdat) == faststart  # the index comes first only with faststart
        moov_end = moov + int.from_bytes(data[moov : moov + 4], "big")
        cut = {
            "mid-stream": mdat + (len(data) - mdat) // 2 if faststart else len(data) // 2,
            "in-index": (moov + moov_end) // 2,
            "before-frames": mdat + 24,
        }[where]
        return mf.truncated_copy(full, folder / name, cut / len(data))

    return make


def _rotated(name: str, ccw: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        source = mf.marker_video(folder / f"upright-{name}", size=(64, 48), audio=True)
        return mf.rotated_copy(source, folder / name, ccw)

    return make


def _check_vfr(video: DecodedVideo) -> None:
    reds = [bool(f[..., 0].mean() > 128) for f in video.frames]
    assert reds.index(False) == 10 and all(reds[:10]) and not any(reds[10:]), reds  # red = exactly 1 s


def _check_ten_bit(video: DecodedVideo) -> None:
    assert video.source.pixel_format == "yuv420p10le"
    assert all(f.dtype == np.uint8 for f in video.frames)
    assert np.abs(video.frames[0][2, 2].astype(int) - RED).max() < 16  # inside the marker: still red


def _check_black_start(video: DecodedVideo) -> None:
    assert all(int(f.max()) <= 8 for f in video.frames[:5]), [int(f.max()) for f in video.frames[:5]]
    assert all(int(f.max()) > 200 for f in video.frames[5:])


def _check_scaled_from_8k(video: DecodedVideo) -> None:
    assert (video.source.width, video.source.height) == (7680, 4320)


CASES = [
    Case("zero-byte", lambda d: mf.zero_bytes(d / "empty.mp4"), Refused(("'empty.mp4'", "is empty", "0 bytes"))),
    Case(
        "random-bytes-mp4",
        lambda d: mf.random_bytes(d / "noise.mp4", seed=5),
        Refused(("could not read a video from 'noise.mp4'", "not a video format")),
    ),
    Case(
        "zip-named-mp4",  # ffmpeg reports 'moov atom not found' for it: not a cut-off upload
        lambda d: mf.zip_named(d / "archive.mp4"),
        Refused(("'archive.mp4'", "not a video format", "not an mp4/mov video")),
    ),
    Case(
        "truncated-mp4-default",
        _truncated("cut.mp4", faststart=False),
        Refused(("'cut.mp4'", "incomplete", "moov", "cut off")),
    ),
    Case(
        "truncated-mp4-faststart",
        _truncated("cut-faststart.mp4", faststart=True),
        Frames((5, 45), (160, 120), corner=None, warning="cut off"),
    ),
    Case(
        "truncated-mp4-faststart-in-index",
        _truncated("cut-index.mp4", faststart=True, where="in-index"),
        Refused(("'cut-index.mp4'", "ends too early", "cut off", "upload the complete file")),
    ),
    Case(
        "truncated-mp4-faststart-before-frames",
        _truncated("cut-early.mp4", faststart=True, where="before-frames"),
        Refused(("'cut-early.mp4'", "not one frame", "cut off", "upload the complete file")),
    ),
    Case(
        "audio-only",
        lambda d: mf.audio_only(d / "song.m4a"),
        Refused(("'song.m4a'", "no video stream", "audio-only")),
    ),
    Case("png-named-mp4", lambda d: mf.image_named(d / "photo.mp4", "PNG"), Frames(1, (64, 48))),
    Case(
        "one-frame",
        lambda d: mf.lavfi_video(d / "one.mp4", mf.marker_source((64, 48)), extra=("-frames:v", "1")),
        Frames(1, (64, 48)),
    ),
    Case("rotated-90", _rotated("rot90.mp4", -90), Frames(10, (48, 64), "top-right", audio=True)),
    Case("rotated-270", _rotated("rot270.mp4", 90), Frames(10, (48, 64), "bottom-left", audio=True)),
    Case(
        "variable-frame-rate",
        lambda d: mf.red_then_blue_vfr(d / "vfr.mp4"),
        Frames((19, 21), (64, 48), corner=None, check=_check_vfr),
        fps=10,
    ),
    Case(
        "odd-size-321x241",
        lambda d: mf.marker_video(d / "odd.mp4", size=(321, 241), pix_fmt="yuv444p"),
        Frames(10, (321, 241)),
        limits=MediaLimits(max_frames=60, max_seconds=10, max_side=400),
    ),
    Case(
        "10-bit-yuv420p10le",
        lambda d: mf.marker_video(d / "10bit.mp4", pix_fmt="yuv420p10le"),
        Frames(10, (64, 48), check=_check_ten_bit),
    ),
    Case(
        "8k-7680x4320",
        lambda d: mf.lavfi_video(
            d / "8k.mp4", mf.marker_source((7680, 4320)), seconds=0.3, extra=("-preset", "ultrafast")
        ),
        Frames(3, (160, 90), check=_check_scaled_from_8k),
        limits=MediaLimits(max_frames=60, max_seconds=10, max_side=160),
    ),
    Case(
        "over-frame-limit",
        lambda d: mf.testsrc(d / "long.mp4", fps=10, seconds=3.0, audio=True),
        Refused(("about 30 frames", "limit is 20 frames", "--max-frames 30")),
        limits=MediaLimits(max_frames=20, max_seconds=10, max_side=320),
    ),
    Case(
        "over-frame-limit-no-duration",  # caught while decoding: the container states no duration
        lambda d: mf.streamed_mkv(d / "live.mkv", "testsrc=size=64x48:rate=10", seconds=3.0),
        Refused(("more than 20 frames", "limit is 20 frames", "--max-frames 30")),
        limits=MediaLimits(max_frames=20, max_seconds=10, max_side=320),
    ),
    Case(
        "over-seconds-no-duration",
        lambda d: mf.streamed_mkv(d / "live.mkv", "testsrc=size=64x48:rate=10", seconds=3.0),
        Refused(("3.0 s long", "limit is 2 s", "--max-seconds 3")),
        limits=MediaLimits(max_frames=60, max_seconds=2, max_side=320),
    ),
    Case(
        "animated-gif",
        lambda d: mf.lavfi_video(d / "anim.gif", mf.marker_source((64, 48)), codec="gif", pix_fmt=""),
        Frames(10, (64, 48)),
    ),
    Case(
        "vp9-webm",
        lambda d: mf.marker_video(d / "clip.webm", codec="libvpx-vp9"),
        Frames(10, (64, 48)),
        needs=("libvpx-vp9",),
    ),
    Case(
        "prores-mov",
        lambda d: mf.marker_video(d / "clip.mov", codec="prores_ks", pix_fmt="yuv422p10le"),
        Frames(10, (64, 48)),
        needs=("prores_ks",),
    ),
    Case(
        "black-first-frames",
        lambda d: mf.black_then_marker(d / "fade-in.mp4", black=5, total=10),
        Frames(10, (64, 48), marked_from=5, check=_check_black_start),
    ),
    Case(
        "text-named-mp4",
        lambda d: mf.text_file(d / "notes.mp4", "Shot 1: the dog runs to the gate.\n" * 40),
        Refused(("'notes.mp4'", "not a video or image file", "text file")),
    ),
    Case(
        "m3u8-local-playlist",
        lambda d: mf.local_playlist(d / "list.m3u8", mf.marker_video(d / "segment.mp4")),
        Refused(("'list.m3u8'", "not a video or image file", "text file")),
    ),
]


# ----------------------------------------------------------------------------- decode, case by case


@pytest.fixture
def system_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh, empty temp dir for this test's Python and child processes (``tempfile`` and
    ``TMPDIR``), so anything decode puts in "the system temp dir" shows up there; the real one
    is also watched for the app's own temp folder names."""
    real = Path(tempfile.gettempdir())
    before = {p.name for p in real.iterdir() if p.name.startswith("sam2-ui-")}
    isolated = tmp_path / "system-temp"
    isolated.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(isolated))
    monkeypatch.setenv("TMPDIR", str(isolated))
    yield isolated
    after = {p.name for p in real.iterdir() if p.name.startswith("sam2-ui-")}
    assert after <= before, f"decode left {sorted(after - before)} in {real}"


def _vm_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))


def _reset_peak_rss() -> bool:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file(case: Case, tmp_path: Path, system_temp: Path) -> None:
    for encoder in case.needs:
        if not mf.has_encoder(encoder):
            pytest.skip(f"this ffmpeg has no {encoder} encoder")
    source_dir = tmp_path / "corpus"
    source_dir.mkdir()
    path = case.make(source_dir)
    corpus_files = set(source_dir.rglob("*"))
    workdir = tmp_path / "work"

    measure_rss = _reset_peak_rss()
    rss_before = _vm_kib("VmRSS")
    tracemalloc.start()
    try:
        if isinstance(case.expect, Refused):
            with pytest.raises(MediaError) as error:
                decode(path, case.limits, fps=case.fps, workdir=workdir)
            video = None
        else:
            video = decode(path, case.limits, fps=case.fps, workdir=workdir)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = (_vm_kib("VmHWM") - rss_before) * 1024 if measure_rss else None

    if isinstance(case.expect, Refused):
        message = str(error.value)
        for word in case.expect.words:
            assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
        assert not workdir.exists() or not any(workdir.iterdir()), list(workdir.iterdir())
        with pytest.raises(MediaError):  # without a workdir: no temporary folder is left either
            decode(path, case.limits, fps=case.fps)
    else:
        assert video is not None
        _check_frames(case.expect, video)
        left = {p.name for p in workdir.iterdir()} if workdir.exists() else set()
        assert left == ({video.audio_path.name} if video.audio_path else set())
        if video.audio_path:
            assert video.audio_path.parent == workdir and video.audio_path.stat().st_size > 0

    assert not any(system_temp.iterdir()), list(system_temp.iterdir())
    assert set(source_dir.rglob("*")) == corpus_files  # nothing written next to the input either

    # Memory: no frame is ever held at a size above max_side. Three 8K RGB frames are 300 MB;
    # the frames kept here are 43 KB.
    full_frame = 7680 * 4320 * 3
    assert traced_peak < full_frame / 10, f"Python allocations peaked at {traced_peak / 1e6:.1f} MB"
    if rss_growth is not None:
        assert rss_growth < full_frame / 2, f"peak RSS grew by {rss_growth / 1e6:.1f} MB"


def _check_frames(expect: Frames, video: DecodedVideo) -> None:
    count = len(video.frames)
    low, high = expect.count if isinstance(expect.count, tuple) else (expect.count, expect.count)
    assert low <= count <= high, f"{count} frames, expected {expect.count}"
    width, height = expect.size
    assert all(f.shape == (height, width, 3) and f.dtype == np.uint8 for f in video.frames), (
        {f.shape for f in video.frames}
    )
    assert video.timestamps == pytest.approx([i / video.fps for i in range(count)])
    if expect.corner:
        corners = [marker_corner(f) for f in video.frames[expect.marked_from :]]
        assert corners == [expect.corner] * len(corners), corners
    if expect.warning:
        assert any(expect.warning in w for w in video.warnings), video.warnings
    else:
        assert video.warnings == []
    assert (video.audio_path is not None) == expect.audio
    if expect.check:
        expect.check(video)


def test_the_corpus_covers_the_issue() -> None:
    """Issue #5, item 1: every kind of hostile file named there has a row."""
    names = {c.name for c in CASES}
    wanted = {
        "zero-byte", "random-bytes-mp4", "truncated-mp4-default", "truncated-mp4-faststart", "audio-only",
        "png-named-mp4", "one-frame", "rotated-90", "rotated-270", "variable-frame-rate", "odd-size-321x241",
        "10-bit-yuv420p10le", "8k-7680x4320", "over-frame-limit", "animated-gif", "vp9-webm", "prores-mov",
        "black-first-frames", "text-named-mp4", "m3u8-local-playlist",
    }  # fmt: skip
    assert wanted <= names and len(names) == len(CASES)


# ----------------------------------------------------------------------------- through the app

# (case, expected: a words-tuple for a refusal, or the "WxH" the video info line must show)
APP_CASES = [
    ("random-bytes-mp4", ("not a video format",)),
    ("png-named-mp4", "64x48"),
    ("rotated-90", "48x64"),  # stored 64x48, shown upright
    ("10-bit-yuv420p10le", "64x48"),
]
STATUS = 2  # the status line's place among /upload_video's outputs


def video_info(outputs: tuple) -> str:
    """The video info line ("**x.mp4**: 10 frames at 10 fps (1.0 s), 64x48 pixels, ...")."""
    return next((o for o in outputs if isinstance(o, str) and " frames at " in o), "")


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    from tests.app_harness import start_app

    running = start_app(reference_checkpoint, tmp_path_factory.mktemp("hostile-app"))
    yield running
    running.stop()


def test_hostile_uploads_through_the_app(app, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    by_name = {c.name: c for c in CASES}
    good = mf.marker_video(tmp_path / "good.mp4", size=(96, 64), fps=5)
    client = Client(app.url, verbose=False, download_files=False)
    try:
        for name, expected in APP_CASES:
            folder = tmp_path / name
            folder.mkdir()
            path = by_name[name].make(folder)
            outputs = client.predict(handle_file(str(path)), api_name="/upload_video")
            status = outputs[STATUS]
            if isinstance(expected, tuple):
                assert "Problem:" in status and path.name in status, status
                for word in expected:
                    assert word in status, status
                # The session keeps working: a good video still loads in the same client.
                outputs = client.predict(handle_file(str(good)), api_name="/upload_video")
                assert "Loaded 'good.mp4'" in outputs[STATUS], outputs[STATUS]
                assert "96x64 pixels" in video_info(outputs), outputs
            else:
                assert f"Loaded '{path.name}'" in status, status
                assert f"{expected} pixels" in video_info(outputs), outputs
    finally:
        client.close()


# ----------------------------------------------------------------------------- as a script


def write_corpus(folder: Path) -> list[Path]:
    """Every case's file, each in its own subfolder of ``folder`` (for looking at them by hand)."""
    paths = []
    for case in CASES:
        if all(mf.has_encoder(e) for e in case.needs):
            sub = folder / case.name
            sub.mkdir(parents=True, exist_ok=True)
            paths.append(case.make(sub))
    return paths


if __name__ == "__main__":
    for written in write_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")):
        print(written, os.path.getsize(written), "bytes")
