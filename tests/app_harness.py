"""Helpers for the app tests: start the real app in a subprocess, and compute what the
predictor gives directly for the same prompts (the expected masks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sam2.1_hiera_tiny"
IMAGE_SIZE = 512
PRECISION = "float32"  # the app's default (auto) may be bfloat16; the comparisons need exact arithmetic
# The app's default ("measure") times the attention kernels at first use, and the app's process
# may choose another kernel than the test's; the two round differently in the last bits, which
# tracking can grow into a pixel of difference. Pinned here and in the app, masks are bit-identical.
KERNELS = "fused"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log: Path
    temp_dir: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app(
    checkpoint: Path, workdir: Path, *extra: str, timeout_s: float = 180.0, quick_close: bool = False,
    heartbeat_s: float | None = None,
) -> RunningApp:
    """``python app.py`` on a free loopback port with the given checkpoint at image size 512, in
    float32 and with the attention kernels pinned like :class:`Replay` (frames are kept as the
    app's default, lossless PNG).

    quick_close: a closed client is noticed within a second (heartbeats every second, not
    Gradio's 15 s) and its work freed a second later (not kept the session TTL for a reload),
    so the seats of earlier tests are free again when the next needs one.

    heartbeat_s: Gradio's heartbeat interval alone (a closed client is noticed within it), the
    grace period for reloads left as given."""
    port = free_port()
    temp_dir = workdir / "gradio-temp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = workdir / "app.log"
    env = dict(os.environ, GRADIO_TEMP_DIR=str(temp_dir), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("GRADIO_SERVER_NAME", None)
    if heartbeat_s is not None:
        env["GRADIO_HEARTBEAT_INTERVAL"] = str(heartbeat_s)
    if quick_close:
        env["GRADIO_HEARTBEAT_INTERVAL"] = "1"
        extra = (*extra, "--resume-grace-s", "1")
    cmd = [
        sys.executable, str(ROOT / "app.py"), "--checkpoint", str(checkpoint), "--model", MODEL,
        "--image-size", str(IMAGE_SIZE), "--precision", PRECISION, "--kernels", KERNELS, "--port", str(port), *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    app = RunningApp(f"http://127.0.0.1:{port}/", process, log, temp_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{app.log_text()}")
        try:
            with urllib.request.urlopen(app.url, timeout=2) as response:
                if response.status == 200:
                    return app
        except OSError:
            time.sleep(0.5)
    app.stop()
    raise RuntimeError(f"the app did not start in {timeout_s} s:\n{app.log_text()}")


# ----------------------------------------------------------------------------- expected masks


@dataclass
class Replay:
    """The predictor driven directly: the same calls the app makes for a user's actions.

    ``masks`` mirrors what the app shows: a prompt sets that object's mask on that frame;
    tracking sets every object's mask on each frame it yields.
    """

    predictor: object
    state: object
    masks: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def start(cls, checkpoint: Path, frames: list[np.ndarray]) -> Replay:
        import sam2

        predictor = sam2.build_video_predictor(
            MODEL, str(checkpoint), image_size=IMAGE_SIZE, device="cpu", corrections_as_cond=True, precision=PRECISION,
            kernels=KERNELS,
        )
        return cls(predictor, predictor.init_state(list(frames)))

    def prompt(self, frame: int, obj: int, points=(), labels=(), box=None) -> np.ndarray:
        _, ids, logits = self.predictor.add_new_points_or_box(
            self.state, frame, obj, points=[list(p) for p in points] or None, labels=list(labels) or None,
            clear_old_points=True, box=list(box) if box is not None else None,
        )  # fmt: skip
        mask = (logits[list(ids).index(obj), 0] > 0).cpu().numpy()
        self.masks.setdefault(frame, {})[obj] = mask
        return mask

    def track(self, start: int, count: int | None, reverse: bool) -> None:
        for frame, ids, logits in self.predictor.propagate_in_video(
            self.state, start_frame_idx=start, max_frame_num_to_track=count, reverse=reverse
        ):
            for i, obj in enumerate(ids):
                self.masks.setdefault(frame, {})[int(obj)] = (logits[i, 0] > 0).cpu().numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_masks_match(
    got: dict[int, dict[int, np.ndarray]], expected: dict[int, dict[int, np.ndarray]], frames: int,
    min_iou: float = 0.99,
) -> None:
    """Every frame and object: IoU >= min_iou (an object missing on one side = empty mask)."""
    for frame in range(frames):
        g, e = got.get(frame, {}), expected.get(frame, {})
        for obj in set(g) | set(e):
            shape = next(iter((g or e).values())).shape
            a = g.get(obj, np.zeros(shape, bool))
            b = e.get(obj, np.zeros(shape, bool))
            assert iou(a, b) >= min_iou, (
                f"frame {frame}, object {obj}: IoU {iou(a, b):.4f} (areas {a.sum()} vs {b.sum()})"
            )
