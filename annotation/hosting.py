"""Hugging Face ZeroGPU: a GPU lent per call, for a call's stated duration.

On ZeroGPU the app's process has no GPU; a function decorated with the `spaces` package's
``@spaces.GPU(duration=...)`` gets one for each call, in a forked worker process: its
arguments and its result are pickled across, and nothing it changes in place comes back.
So a session's memory bank lives on the CPU between calls, goes to the GPU inside a call and
comes back as the call's result (``Engine`` does this), and tracking runs in chunks short
enough for one call, each call asking for the seconds its chunk needs. Off ZeroGPU the
decorator returns the function unchanged, so the same code runs on a CPU or a GPU Space.

The `spaces` package is imported on first use, never at import time (it must come before
torch initialises CUDA: ``app.py`` asks for it first thing).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GpuDecorator = Callable[[Callable[..., Any], Callable[..., float]], Callable[..., Any]]


@dataclass(frozen=True)
class GpuBudget:
    """How long a GPU call may take, and how long its work is expected to take: a chunk of
    tracking holds as many frames as fit ``max_call_s`` at ``frame_object_s`` seconds per
    frame and object, after ``setup_s`` for moving the model and memories in (ZeroGPU's
    default call is 60 s; a shorter one is scheduled sooner)."""

    max_call_s: float = 60.0
    setup_s: float = 10.0
    frame_object_s: float = 0.25  # sam2.1 tiny at 1024 on a GPU, with room to spare
    prompt_s: float = 15.0  # a click: the frame's encoding and one decoding
    find_point_s: float = 0.02  # "Find objects": per grid point (a 32 x 32 grid: about 20 s)

    def chunk_frames(self, objects: int) -> int:
        """Frames per tracking call for this many objects (at least one)."""
        return max(1, int((self.max_call_s - self.setup_s) / (self.frame_object_s * max(1, objects))))

    def track_seconds(self, objects: int, frames: int) -> float:
        """The duration to ask for a chunk of `frames` frames of `objects` objects."""
        return self.setup_s + self.frame_object_s * max(1, objects) * frames

    def find_seconds(self, points: int) -> float:
        """The duration to ask for finding objects with a grid of `points` points (one call:
        the largest grid, 32 x 32, fits a default call)."""
        return self.setup_s + self.find_point_s * points


def on_zero_gpu() -> bool:
    """Is this process a ZeroGPU Space? (The platform sets SPACES_ZERO_GPU, which the
    `spaces` package reads the same way.)"""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_decorator() -> GpuDecorator:
    """``fn, duration -> spaces.GPU(fn, duration=duration)`` when the `spaces` package is
    importable (a no-op off ZeroGPU), else ``fn`` unchanged."""
    try:
        import spaces
    except ImportError:
        return lambda fn, duration: fn
    return lambda fn, duration: spaces.GPU(fn, duration=duration)
