"""sam2.video_io (the hardened decoder) on real files made by tests/media_factory.py with the bundled ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import sam2.video_io as media_module
from sam2.video_io import DecodedVideo, MediaError, MediaLimits, _parse_probe, decode, fit_size, probe
from tests import media_factory as mf


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def marker_corner(frame: np.ndarray) -> str:
    """Which corner of an HxWx3 frame holds the red marker: 'top-left', 'bottom-right', ..."""
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)
    ys, xs = np.nonzero(red)
    assert len(ys) > 0, "no red marker found"
    height, width = red.shape
    vertical = "top" if ys.mean() < height / 2 else "bottom"
    horizontal = "left" if xs.mean() < width / 2 else "right"
    return f"{vertical}-{horizontal}"


def decode_in(path: Path, workdir: Path, **kwargs) -> DecodedVideo:
    return decode(path, kwargs.pop("limits", MediaLimits()), workdir=workdir, **kwargs)


# ----------------------------------------------------------------------------- probe and decode


def test_probe_reads_size_rate_duration_and_audio(media: Path) -> None:
    path = mf.testsrc(media / "probe.mp4", size=(64, 48), fps=10, seconds=1.0, audio=True)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.duration) == (64, 48, 10.0, 1.0)
    assert info.frame_count == 10 and info.rotation == 0
    assert info.has_audio and info.codec == "h264" and info.pixel_format == "yuv420p" and not info.is_image


def test_decode_gives_all_frames_upright_rgb(media: Path, tmp_path: Path) -> None:
    path = mf.marker_video(media / "marker.mp4", size=(64, 48), fps=10)
    video = decode_in(path, tmp_path)
    assert len(video.frames) == 10 and video.fps == 10.0
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in video.frames)
    assert video.timestamps == pytest.approx([i / 10 for i in range(10)])
    assert marker_corner(video.frames[0]) == "top-left"
    assert video.audio_path is None and video.warnings == []


def test_decode_extracts_audio_for_the_export(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "with_audio.mp4", audio=True)
    video = decode_in(path, tmp_path)
    assert video.audio_path is not None and video.audio_path.parent == tmp_path
    assert video.audio_path.stat().st_size > 0


def test_unreadable_audio_leaves_no_file_and_a_note(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mf.testsrc(media / "with_audio.mp4", audio=True)
    real_run = media_module.subprocess.run

    def failing_audio_copy(cmd: list[str], **kwargs: object) -> object:
        if "0:a:0" in cmd:
            Path(cmd[-1]).write_bytes(b"partial")
            return media_module.subprocess.CompletedProcess(cmd, 1, b"", b"boom")
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(media_module.subprocess, "run", failing_audio_copy)
    video = decode_in(path, tmp_path / "work")
    assert video.audio_path is None and len(video.frames) == 10
    assert "sound" in video.warnings[0] and not any((tmp_path / "work").iterdir())


def test_decode_samples_down_to_the_requested_rate(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "25fps.mp4", fps=25, seconds=2.0)
    assert len(decode_in(path, tmp_path).frames) == 50
    assert len(decode_in(path, tmp_path, fps=10).frames) == 20
    capped = decode_in(path, tmp_path, limits=MediaLimits(max_fps=5))
    assert capped.fps == 5.0 and len(capped.frames) == 10


def test_variable_frame_rate_is_resampled_evenly_in_time(media: Path, tmp_path: Path) -> None:
    video = decode_in(mf.red_then_blue_vfr(media / "vfr.mp4"), tmp_path, fps=10)
    assert 19 <= len(video.frames) <= 21  # ~2 s at 10 fps (the end depends on the last frame's length)
    reds = [bool(f[..., 0].mean() > 128) for f in video.frames]
    switch = reds.index(False)
    assert all(reds[:switch]) and not any(reds[switch:])
    assert switch == 10  # red covers exactly the first second


@pytest.mark.parametrize(
    ("ccw", "rotation", "corner"),
    [(90, 270, "bottom-left"), (-90, 90, "top-right"), (180, 180, "bottom-right")],
)
def test_rotation_metadata_is_applied(media: Path, tmp_path: Path, ccw: int, rotation: int, corner: str) -> None:
    source = mf.marker_video(media / "landscape.mp4", size=(64, 48))
    path = mf.rotated_copy(source, tmp_path / f"rot{ccw}.mp4", ccw)
    info = probe(path)
    assert info.rotation == rotation
    upright = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == upright
    frame = decode_in(path, tmp_path).frames[0]
    assert frame.shape == (upright[1], upright[0], 3)
    assert marker_corner(frame) == corner


def test_rotation_then_scaling_keeps_orientation_and_aspect(media: Path, tmp_path: Path) -> None:
    source = mf.marker_video(media / "landscape320.mp4", size=(320, 240), seconds=0.5)
    path = mf.rotated_copy(source, tmp_path / "portrait.mp4", -90)  # phone held upright
    video = decode_in(path, tmp_path, limits=MediaLimits(max_side=80))
    assert video.frames[0].shape == (80, 60, 3)
    assert marker_corner(video.frames[0]) == "top-right"


def test_large_frames_are_scaled_down_in_ffmpeg(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "hd.mp4", size=(1280, 720), fps=5, seconds=0.4)
    video = decode_in(path, tmp_path, limits=MediaLimits(max_side=160))
    assert [f.shape for f in video.frames] == [(90, 160, 3)] * 2


def test_odd_sizes_are_kept_exactly(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "odd.mp4", size=(321, 241), pix_fmt="yuv444p")
    assert decode_in(path, tmp_path).frames[0].shape == (241, 321, 3)
    assert fit_size(321, 241, 100) == (100, 75)
    assert decode_in(path, tmp_path, limits=MediaLimits(max_side=100)).frames[0].shape == (75, 100, 3)


def test_ten_bit_video_becomes_8_bit_rgb(media: Path, tmp_path: Path) -> None:
    if not mf.has_encoder("libx264"):
        pytest.skip("libx264 missing")
    path = mf.lavfi_video(media / "10bit.mp4", "color=c=red:size=64x48:rate=10", pix_fmt="yuv420p10le")
    assert probe(path).pixel_format == "yuv420p10le"
    frame = decode_in(path, tmp_path).frames[0]
    assert frame.dtype == np.uint8
    assert np.abs(frame[24, 32].astype(int) - (255, 0, 0)).max() < 12


def test_webm_vp9(media: Path, tmp_path: Path) -> None:
    if not mf.has_encoder("libvpx-vp9"):
        pytest.skip("this ffmpeg has no VP9 encoder")
    path = mf.testsrc(media / "clip.webm", codec="libvpx-vp9", pix_fmt="yuv420p")
    assert probe(path).codec == "vp9"
    assert len(decode_in(path, tmp_path).frames) == 10


def test_animated_gif(media: Path, tmp_path: Path) -> None:
    path = mf.gif(media / "anim.gif", size=(64, 48), fps=10, seconds=1.0)
    info = probe(path)
    assert info.codec == "gif" and not info.is_image
    frames = decode_in(path, tmp_path).frames
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_still_images_are_one_frame_videos(media: Path, tmp_path: Path, suffix: str) -> None:
    path = mf.still_image(media / f"still{suffix}", size=(64, 48))
    info = probe(path)
    assert info.is_image and info.frame_count == 1 and (info.width, info.height) == (64, 48)
    video = decode_in(path, tmp_path)
    assert len(video.frames) == 1 and video.frames[0].shape == (48, 64, 3)
    assert marker_corner(video.frames[0]) == "top-left"


def test_jpeg_exif_orientation_is_applied(media: Path, tmp_path: Path) -> None:
    path = mf.still_image(media / "exif6.jpg", size=(64, 48), exif_orientation=6)  # turn 90 clockwise
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    frame = decode_in(path, tmp_path).frames[0]
    assert frame.shape == (64, 48, 3) and marker_corner(frame) == "top-right"


# ----------------------------------------------------------------------------- bad files


def test_zero_byte_file(media: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="empty"):
        decode_in(mf.zero_bytes(media / "empty.mp4"), tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        probe(tmp_path / "nowhere.mp4")


def test_random_bytes_are_not_a_video(media: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"Could not read a video from 'noise.mp4'"):
        decode_in(mf.random_bytes(media / "noise.mp4"), tmp_path)


def test_audio_only_file(media: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"no video stream.*audio-only"):
        decode_in(mf.audio_only(media / "song.m4a"), tmp_path)


def test_truncated_mp4_without_index_cannot_be_read(media: Path, tmp_path: Path) -> None:
    full = mf.testsrc(media / "full.mp4", size=(160, 120), fps=25, seconds=2.0)
    assert full.read_bytes().find(b"moov") > full.stat().st_size // 2  # index written at the end
    with pytest.raises(MediaError, match=r"incomplete.*moov"):
        decode_in(mf.truncated_copy(full, tmp_path / "cut.mp4", 0.5), tmp_path)


def test_truncated_faststart_mp4_decodes_what_is_readable(media: Path, tmp_path: Path) -> None:
    full = mf.testsrc(media / "faststart.mp4", size=(160, 120), fps=25, seconds=2.0, extra=("-movflags", "+faststart"))
    video = decode_in(mf.truncated_copy(full, tmp_path / "cut.mp4", 0.5), tmp_path)
    assert 1 <= len(video.frames) < 50
    assert video.warnings and "cut off" in video.warnings[0]


NOTES = "".join(f"Shot {i}: the dog runs left to right, then stops by the gate.\n" for i in range(80))


def test_ffmpeg_itself_reads_a_text_file_as_a_video(tmp_path: Path) -> None:
    """Why the app refuses text: ffmpeg's tty demuxer would turn it into frames of drawn text."""
    path = tmp_path / "notes.txt"
    path.write_text(NOTES)
    command = [mf.ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)]
    report = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert "Input #0, tty" in report.stderr and "Video: ansi" in report.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("notes.txt", NOTES),  # long enough for ffmpeg's tty demuxer
        ("todo.txt", "buy milk\n"),  # too short for it: ffmpeg finds 'invalid data'
        ("notes.mp4", NOTES),  # renamed: ffmpeg tries MP4 ('moov atom not found'), not a cut-off file
        ("notes.jpg", NOTES),  # renamed: ffmpeg goes by the name and finds no picture size
        ("playlist.m3u8", "#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/segment.ts\n"),
        ("notes-utf16.txt", "\ufeff" + NOTES),
    ],
)
def test_a_text_file_is_not_a_video(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-16-le") if "utf16" in name else text.encode())
    with pytest.raises(MediaError, match=re.escape(f"'{name}' is not a video or image file (it is a text file).")):
        probe(path)
    with pytest.raises(MediaError, match=r"is not a video or image file"):
        decode_in(path, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    """A real (binary) format that ffmpeg knows but the app does not accept: Flash video."""
    path = tmp_path / "clip.swf"
    mf.run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "0.5", "-c:v", "flv1", str(path))
    with pytest.raises(MediaError, match=r"'clip.swf' is not in a video or image format the app reads"):
        probe(path)


_TTY_STDERR = """Input #0, tty, from 'file:/tmp/notes.txt':
  Duration: 00:00:01.60, start: 0.000000, bitrate: 47 kb/s
  Stream #0:0: Video: ansi, pal8, 640x400, 25 fps, 25 tbr, 25 tbn
At least one output file must be specified
"""


def test_text_demuxers_and_codecs_are_refused_from_the_report() -> None:
    """The second check, on ffmpeg's report: an ffmpeg that opened a text file anyway."""
    with pytest.raises(MediaError, match="is not in a video or image format"):
        _parse_probe(Path("notes.txt"), _TTY_STDERR)
    in_allowed_container = _TTY_STDERR.replace("Input #0, tty,", "Input #0, matroska,webm,")
    with pytest.raises(MediaError, match="is not in a video or image format"):
        _parse_probe(Path("notes.mkv"), in_allowed_container)
    assert _parse_probe(Path("x.mkv"), in_allowed_container.replace("Video: ansi", "Video: h264")).codec == "h264"


# ----------------------------------------------------------------------------- limits


def test_too_long_names_the_limit_and_flag(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "3s.mp4", fps=5, seconds=3.0, audio=True)
    workdir = tmp_path / "work"
    with pytest.raises(MediaError) as error:
        decode_in(path, workdir, limits=MediaLimits(max_seconds=2))
    message = str(error.value)
    assert "3.0 s long" in message and "limit is 2 s" in message and "--max-seconds 3" in message
    assert not workdir.exists() or not any(workdir.iterdir())  # nothing left behind


def test_too_many_frames_is_refused_before_decoding(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "2s25.mp4", fps=25, seconds=2.0)
    with pytest.raises(MediaError) as error:
        decode_in(path, tmp_path, limits=MediaLimits(max_frames=20))
    message = str(error.value)
    assert "about 50 frames" in message and "limit is 20 frames" in message
    assert "--max-frames 50" in message and "10 fps or less" in message


def test_frame_limit_is_exact_while_decoding(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "2s25.mp4", fps=25, seconds=2.0)
    assert len(decode_in(path, tmp_path, limits=MediaLimits(max_frames=50)).frames) == 50
    with pytest.raises(MediaError, match="limit is 49 frames"):  # passes the estimate, caught by the cap
        decode_in(path, tmp_path, limits=MediaLimits(max_frames=49))


def test_explicit_rate_above_the_limit(media: Path, tmp_path: Path) -> None:
    path = mf.testsrc(media / "rate.mp4")
    with pytest.raises(MediaError, match="--max-fps 60"):
        decode_in(path, tmp_path, fps=60)
    with pytest.raises(ValueError):
        decode_in(path, tmp_path, fps=0)


# ----------------------------------------------------------------------------- older ffmpeg output

_LEGACY_STDERR = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:03:32.40, start: 0.000000, bitrate: 17070 kb/s
  Stream #0:0(eng): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 17001 kb/s, SAR 1:1 DAR 16:9, 29.97 fps, 29.97 tbr, 90k tbn, 180k tbc (default)
    Metadata:
      rotate          : 90
      handler_name    : VideoHandle
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1(eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 96 kb/s (default)
At least one output file must be specified
"""  # noqa: E501 (ffmpeg's report verbatim: its Stream line is one long line)


def test_parses_older_ffmpeg_rotation_output() -> None:
    info = _parse_probe(Path("phone.mp4"), _LEGACY_STDERR)
    assert (info.width, info.height, info.rotation) == (1080, 1920, 90)
    assert info.fps == 29.97 and info.duration == pytest.approx(212.4) and info.has_audio
    assert info.pixel_format == "yuv420p" and info.codec == "h264"
    tag_only = _LEGACY_STDERR.replace("    Side data:\n      displaymatrix: rotation of -90.00 degrees\n", "")
    assert _parse_probe(Path("phone.mp4"), tag_only).rotation == 90


def test_long_video_message_suggests_a_round_limit() -> None:
    from sam2.video_io import _check_limits, _sampling_rate

    info = _parse_probe(Path("phone.mp4"), _LEGACY_STDERR)
    limits = MediaLimits()
    with pytest.raises(MediaError) as error:
        _check_limits(info, _sampling_rate(info, limits, None), limits)
    assert str(error.value) == (
        "This video is 212.4 s long; the limit is 120 s. Trim it, or start the app with --max-seconds 300."
    )
