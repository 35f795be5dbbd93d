"""Memory of the command line over a long video: `python scripts/long_video_stream.py [--frames N] ...`.

Makes a 1280x720, 30 fps video of N frames with ffmpeg (default 18,000: ten minutes; a red
disc moving over a still background), writes the reference weights of sam2.1_hiera_tiny
(a stand-in with the official shapes: the cost per frame is the real model's), then runs
``python -m annotation`` on it as a child process: one click on the disc in frame 0, tracked
forward at 512 px, the PNG, COCO and YOLO exports written. It prints the child's RSS every
``--every`` frames tracked (read from /proc while it runs), its peak (VmHWM, and ru_maxrss
once it ended), and seconds per frame. ``--decode-first`` runs today's path (the whole video
decoded and kept, PNG-compressed, before tracking) for comparison.

    python scripts/long_video_stream.py --frames 1800 --every 100
    python scripts/long_video_stream.py --frames 1800 --every 100 --decode-first

The reference weights' masks are noise over the whole frame: 115 kB of bits a frame at
1280x720, which do not deflate (a real object's deflate to a few kB), so the RSS that grows while
tracking here is mostly those masks. ``--track-frames N`` tracks only the first N frames (the
files are still written for every frame), to see that slope in minutes.

``--files-only`` leaves the model's tracking out, to measure the rest at full length in minutes
instead of hours: a session file holding the disc's mask on every frame is given with
``--no-track``, so the CLI reads the video (streamed, or decoded first) and writes the files
for every frame, exactly as after tracking.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

W, H, FPS, RADIUS = 1280, 720, 30, 90
PROGRESS = re.compile(rb"(\d+)/(\d+) \[")


def make_video(path: Path, frames: int) -> None:
    """A still 8x8-block background and a red disc moving on it, H.264 (ultrafast: minutes for 18,000 frames)."""
    import imageio_ffmpeg

    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (H // 8 + 1, W // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:H, :W].astype(np.uint8)
    Image.fromarray(background).save(path.with_name("background.png"))
    yy, xx = np.mgrid[0 : 2 * RADIUS, 0 : 2 * RADIUS]
    disc = np.zeros((2 * RADIUS, 2 * RADIUS, 4), np.uint8)
    disc[(xx - RADIUS + 0.5) ** 2 + (yy - RADIUS + 0.5) ** 2 < RADIUS**2] = (220, 40, 40, 255)
    Image.fromarray(disc).save(path.with_name("disc.png"))
    where = f"x='{W * 0.3 - RADIUS}+300*sin(n/60)':y='{H * 0.5 - RADIUS}+120*cos(n/45)'"
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-loop", "1", "-framerate", str(FPS), "-i", str(path.with_name("background.png")),
        "-loop", "1", "-framerate", str(FPS), "-i", str(path.with_name("disc.png")),
        "-filter_complex", f"[0][1]overlay={where}", "-frames:v", str(frames), "-r", str(FPS),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    ], check=True)  # fmt: skip


def session_with_masks(video: Path, frames: int, workdir: Path) -> Path:
    """A session file for ``video`` with the click on frame 0 and a disc's mask on every frame
    (where the video draws it, to a pixel: what tracking would have found)."""
    from annotation import formats
    from annotation.document import PackedMask
    from annotation.render import object_color
    from sam2.video_io import MediaLimits
    from sam2.video_stream import open_stream

    path = workdir / f"long_{frames}_session.json"
    if path.exists():
        return path
    _, stream = open_stream(video, MediaLimits(max_frames=frames, max_seconds=frames / FPS + 60), keep_audio=False)
    fingerprint = formats.video_fingerprint(stream)
    stream.close()
    yy, xx = np.mgrid[0:H, 0:W]
    masks = []
    for n in range(frames):
        cx, cy = W * 0.3 + 300 * np.sin(n / 60), H * 0.5 + 120 * np.cos(n / 45)
        packed = PackedMask.pack((xx - cx) ** 2 + (yy - cy) ** 2 < RADIUS**2)
        masks.append(formats.SessionMask(n, 1, n > 0, packed.top, packed.left, *packed.box_shape, packed.bits))
    session = formats.Session(
        formats.VideoRef(video.name, frames, W, H, float(FPS), fingerprint),
        [formats.SessionObject(1, "disc", object_color(1))],
        [formats.Prompt(0, 1, [(W * 0.3, H * 0.5 + 120)], [1])], masks,
    )  # fmt: skip
    return formats.export_session_json(session, workdir, stem=path.stem)


def status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found[1]) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=18_000)
    parser.add_argument("--every", type=int, default=500, help="print RSS every this many frames tracked")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--decode-first", action="store_true", help="today's path: decode the whole video first")
    parser.add_argument("--files-only", action="store_true",
                        help="no tracking: a session file with a mask on every frame, the files written from it")
    parser.add_argument("--track-frames", type=int, default=None,
                        help="track only this many frames past the click (default: to the end)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the video and outputs here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="long-video-stream-"))
    workdir.mkdir(parents=True, exist_ok=True)
    video = workdir / f"long_{args.frames}.mp4"
    if not video.exists():
        started = time.monotonic()
        make_video(video, args.frames)
        print(f"made {video} ({video.stat().st_size / 2**20:.0f} MB) in {time.monotonic() - started:.0f} s", flush=True)
    checkpoint = workdir / "reference-tiny.pt"
    if not checkpoint.exists():
        from tests.reference import write_reference_checkpoint

        write_reference_checkpoint("sam2.1_hiera_t", checkpoint)
    prompts = workdir / "prompts.json"
    prompts.write_text(json.dumps({"objects": [{"name": "disc", "prompts": [
        {"frame": 0, "points": [[W * 0.3, H * 0.5 + 120]]}]}]}))  # fmt: skip
    given = ["--prompts", str(prompts)]
    if args.files_only:
        given = ["--session", str(session_with_masks(video, args.frames, workdir)), "--no-track"]
    out = workdir / (("files-" if args.files_only else "") + ("out-decoded" if args.decode_first else "out-streamed"))
    cmd = [sys.executable, "-m", "annotation", str(video), *given, "--direction", "forward",
           "--export", "png,coco,yolo", "--out", str(out), "--checkpoint", str(checkpoint),
           "--model", "sam2.1_hiera_tiny", "--image-size", str(args.image_size), "--precision", "float32",
           "--kernels", "fused", "--max-frames", str(args.frames), "--max-seconds", str(args.frames / FPS + 60),
           *(["--decode-first"] if args.decode_first else []),
           *(["--frames", str(args.track_frames)] if args.track_frames else [])]  # fmt: skip
    print(f"{'decode first' if args.decode_first else 'streamed'}: {' '.join(cmd[2:])}", flush=True)
    run(cmd, args)


def run(cmd: list[str], args: argparse.Namespace) -> None:
    """The CLI as a child; RSS printed at every ``args.every`` frames tracked, the peak at the end."""
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    done = [0]
    phase = ["loading"]
    log = bytearray()

    def read_progress() -> None:  # tqdm's bars on stderr: "walk.mp4: 37%|...| 111/300 [..."
        assert child.stderr is not None
        while chunk := child.stderr.read1(4096):
            log.extend(chunk)
            found = PROGRESS.findall(bytes(log[-4096:]))
            if found:
                phase[0] = "files" if b"files of" in log[-4096:] else "tracking"
                done[0] = int(found[-1][0])

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    started = time.monotonic()
    tracking_started = None
    next_report, peak, samples, shown = args.every, 0, [], "loading"
    phase_started = started
    while True:  # os.wait4, not Popen.poll: the child's own peak RSS (ru_maxrss) comes with its end
        ended, status, usage = os.wait4(child.pid, os.WNOHANG)
        if ended:
            child.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.5)
        rss, hwm = status_kb(child.pid, "VmRSS"), status_kb(child.pid, "VmHWM")
        if rss is None or hwm is None:
            continue
        peak = max(peak, hwm)
        if phase[0] != shown:  # tracking began, or the files
            shown, phase_started, next_report = phase[0], time.monotonic(), args.every
            print(f"{shown} from {phase_started - started:.0f} s (RSS {rss / 1024:.0f} MB)", flush=True)
        if phase[0] != "loading" and tracking_started is None:
            tracking_started = time.monotonic()
        samples.append((time.monotonic() - started, phase[0], done[0], rss))
        if phase[0] != "loading" and done[0] >= next_report:
            rate = (time.monotonic() - phase_started) / max(done[0], 1)
            print(f"{phase[0]} frame {done[0]:6d}: RSS {rss / 1024:6.0f} MB, peak so far {peak / 1024:6.0f} MB, "
                  f"{rate:.3f} s/frame, load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            next_report = (done[0] // args.every + 1) * args.every
    reader.join(timeout=5)
    assert child.stdout is not None
    summary = child.stdout.read().decode()
    seconds = time.monotonic() - started
    tracked = time.monotonic() - tracking_started if tracking_started else float("nan")
    files_rss = [rss for _, p, _, rss in samples if p == "files"]
    print(summary.strip())
    print(f"exit status {child.returncode}; {args.frames} frames; wall {seconds:.0f} s; tracking and files "
          f"{tracked:.0f} s = {tracked / args.frames:.2f} s/frame; peak RSS of the CLI's process "
          f"{usage.ru_maxrss / 1024:.0f} MB (ru_maxrss; VmHWM polled {peak / 1024:.0f} MB); "
          f"RSS while writing the files up to {max(files_rss, default=0) / 1024:.0f} MB; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    if child.returncode != 0:
        print(log.decode("utf-8", "replace")[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main()
