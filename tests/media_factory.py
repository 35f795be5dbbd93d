"""Makes small real media files for the tests with the ffmpeg binary bundled by imageio-ffmpeg.

Every maker writes into a given folder and returns the path. Videos are tiny (64x48 to
320x240, at most a few seconds) so the whole suite stays fast.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

MARKER_RGB = (255, 0, 0)


@functools.cache
def ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    cmd = [ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{result.stderr.decode(errors='replace')}")


@functools.cache
def has_encoder(name: str) -> bool:
    out = subprocess.run([ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" "))


@functools.cache
def has_option(name: str) -> bool:
    """Whether this ffmpeg knows ``-name`` (e.g. ``display_rotation``, added in ffmpeg 6.1)."""
    out = subprocess.run([ffmpeg(), "-hide_banner", "-h", "full"], capture_output=True, text=True).stdout
    return f"-{name}" in out


def lavfi_video(
    path: Path,
    source: str,
    *,
    seconds: float = 1.0,
    audio: bool = False,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra: tuple[str, ...] = (),
) -> Path:
    """Encode ``seconds`` of a lavfi graph (e.g. ``testsrc=size=64x48:rate=10``), plus a sine if ``audio``."""
    args = ["-f", "lavfi", "-t", str(seconds), "-i", source]
    if audio:
        args += ["-f", "lavfi", "-t", str(seconds), "-i", "sine=frequency=440", "-c:a", "aac"]
    args += ["-c:v", codec, *(["-pix_fmt", pix_fmt] if pix_fmt else []), *extra, str(path)]
    run_ffmpeg(*args)
    return path


def testsrc(path: Path, size: tuple[int, int] = (64, 48), fps: float = 10, **kwargs) -> Path:
    """ffmpeg's moving test pattern; ``size`` is (width, height)."""
    return lavfi_video(path, f"testsrc=size={size[0]}x{size[1]}:rate={fps}", **kwargs)


def marker_source(size: tuple[int, int] = (64, 48), fps: float = 10) -> str:
    """lavfi graph: black frames with a red box filling the top-left quarter-by-quarter corner."""
    width, height = size
    box = f"drawbox=x=0:y=0:w={width // 4}:h={height // 4}:color=red:t=fill"
    return f"color=c=black:size={width}x{height}:rate={fps},{box}"


def marker_video(path: Path, size: tuple[int, int] = (64, 48), fps: float = 10, **kwargs) -> Path:
    """Black frames with a red box filling the top-left quarter-by-quarter corner."""
    return lavfi_video(path, marker_source(size, fps), **kwargs)


def black_then_marker(
    path: Path, size: tuple[int, int] = (64, 48), fps: float = 10, black: int = 5, total: int = 10
) -> Path:
    """``black`` all-black frames, then marker frames (red top-left corner), ``total`` in all."""
    width, height = size
    graph = (
        f"color=c=black:size={width}x{height}:rate={fps}:duration={black / fps}[a];"
        f"{marker_source(size, fps)},trim=duration={(total - black) / fps}[b];[a][b]concat=n=2:v=1:a=0"
    )
    run_ffmpeg("-f", "lavfi", "-i", graph, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    return path


def rotated_copy(source: Path, path: Path, ccw_degrees: int) -> Path:
    """Remux ``source`` with a display rotation (counter-clockwise) and no re-encode.

    Uses ``-display_rotation`` where this ffmpeg has it; older builds take the legacy
    ``rotate`` tag instead (which is clockwise).
    """
    if has_option("display_rotation"):
        run_ffmpeg("-display_rotation", str(ccw_degrees), "-i", str(source), "-c", "copy", str(path))
    else:
        run_ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v", f"rotate={-ccw_degrees % 360}", str(path))
    return path


def red_then_blue_vfr(path: Path) -> Path:
    """~2 s at 64x48: red for the first second, then blue, with irregular frame spacing.

    Frames come from a 30 fps source: the first 8 are kept, then only every 6th (frame 30,
    the first blue one, sits at exactly 1 s), written with their original timestamps
    (``-fps_mode vfr``), so the gaps are uneven (1/30 s, then 1/5 s).
    """
    graph = (
        "color=red:size=64x48:rate=30:duration=1[a];color=blue:size=64x48:rate=30:duration=1[b];"
        "[a][b]concat=n=2:v=1:a=0,select='lt(n\\,8)+not(mod(n\\,6))'"
    )
    run_ffmpeg("-f", "lavfi", "-i", graph, "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    return path


def still_image(path: Path, size: tuple[int, int] = (64, 48), exif_orientation: int | None = None) -> Path:
    """A still with the red marker in the top-left corner (stored pixels); format from the suffix."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 4, : width // 4] = MARKER_RGB
    image = Image.fromarray(pixels)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif.tobytes())
    return path


def gif(path: Path, size: tuple[int, int] = (64, 48), fps: float = 10, seconds: float = 1.0) -> Path:
    run_ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}", str(path))
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    run_ffmpeg("-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac", str(path))
    return path


def truncated_copy(source: Path, path: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes, as a cut-off upload would leave it."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, count: int = 4096, seed: int | None = None) -> Path:
    """``count`` random bytes; the same bytes every time for a given ``seed``."""
    path.write_bytes(os.urandom(count) if seed is None else np.random.default_rng(seed).bytes(count))
    return path


def image_named(path: Path, image_format: str = "PNG", size: tuple[int, int] = (64, 48)) -> Path:
    """A real still (red marker top-left) whose name says otherwise, e.g. a PNG named clip.mp4."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[: size[1] // 4, : size[0] // 4] = MARKER_RGB
    Image.fromarray(pixels).save(path, format=image_format)
    return path


def zip_named(path: Path) -> Path:
    """A zip archive under a video's name."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a video\n" * 100)
    return path


def text_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def local_playlist(path: Path, target: Path) -> Path:
    """An HLS playlist whose one segment is a local file (ffmpeg's hls demuxer would open it)."""
    return text_file(path, f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{target.resolve()}\n#EXT-X-ENDLIST\n")


def streamed_mkv(path: Path, source: str, seconds: float) -> Path:
    """Matroska written to a pipe, as a live recorder writes it: the container states no duration."""
    cmd = [
        ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-t", str(seconds), "-i", source,
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "matroska", "pipe:1",
    ]  # fmt: skip
    path.write_bytes(subprocess.run(cmd, capture_output=True, timeout=120, check=True).stdout)
    return path


# Where the objects of :func:`hide_and_enter` are: (x, y, w, h) in a 160x120 frame, and the frames they show on.
FIRST_BOX = (20, 30, 40, 40)
FIRST_SHOWN = ((0, 7), (18, 29))  # hidden on frames 8 to 17, then back where it was
SECOND_BOX = (100, 50, 40, 50)
SECOND_FROM = 12  # enters on frame 12 and stays


def hide_and_enter(path: Path, fps: float = 10, frames: int = 30) -> Path:
    """160x120 grey frames: a red box (FIRST_BOX) on the FIRST_SHOWN frames (hidden between
    them), and a green box (SECOND_BOX) from frame SECOND_FROM on, ``frames`` frames in all."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = FIRST_BOX, SECOND_BOX
    shown = "+".join(f"between(n,{a},{b})" for a, b in FIRST_SHOWN)
    graph = (
        f"color=c=gray:size=160x120:rate={fps},"
        f"drawbox=x={x1}:y={y1}:w={w1}:h={h1}:color=red:t=fill:enable='{shown}',"
        f"drawbox=x={x2}:y={y2}:w={w2}:h={h2}:color=green:t=fill:enable='gte(n,{SECOND_FROM})'"
    )
    run_ffmpeg("-f", "lavfi", "-i", graph, "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-g", "1", str(path))
    return path
