"""Options that the page (``app.py``) and the command line share: which model runs where, and
what a video may cost. One parser for both, so a flag means the same in each."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from annotation.engine import FRAME_STORAGES
from sam2.video_io import MediaLimits

IMAGE_SIZES = (512, 768, 1024)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
KERNEL_POLICIES = ("measure", "fused", "blockwise")  # sam2.kernels.POLICIES, without importing torch


class QuietParser(argparse.ArgumentParser):
    """An argument parser whose errors are one plain line (``prog: what is wrong (--help ...)``),
    exit status 2: the usage block argparse prints first hides the one line that matters."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} ('{self.prog} --help' lists the options)\n")


def _number(text: str, kind: type, what: str, accept: Callable[[float], bool]) -> float | int:
    """``text`` as a finite ``kind`` that ``accept`` takes, else an argparse error naming ``what``
    (argparse prints it after the option's name: "argument --fps: 'nan' is not a positive number")."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not {what}")
    return value


def positive_number(text: str) -> float:
    return _number(text, float, "a positive number", lambda v: v > 0)


def fraction(text: str) -> float:
    return _number(text, float, "a number from 0 to 1", lambda v: 0 <= v <= 1)


def positive_whole(text: str) -> int:
    return _number(text, int, "a whole number of at least 1", lambda v: v >= 1)


def whole_from_zero(text: str) -> int:
    return _number(text, int, "a whole number of at least 0", lambda v: v >= 0)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, --checkpoint-dir, --image-size, --device, --precision, --kernels, --frame-storage."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="sam2.1_hiera_tiny",
                       help="SAM 2 variant, long or short name: sam2[.1]_hiera_{tiny,small,base_plus,large} or "
                            "_t/_s/_b+/_l (default: sam2.1_hiera_tiny)")
    group.add_argument("--checkpoint", type=Path, help="checkpoint file (default: download the official one)")
    group.add_argument("--checkpoint-dir", type=Path, default=None,
                       help="folder of the official checkpoints, checked (SHA-256) and downloaded there when "
                            "missing (default: checkpoints/ of this project)")
    group.add_argument("--image-size", type=int, default=1024, choices=IMAGE_SIZES,
                       help="model input size; 512 is about 4x faster on a CPU, 1024 is the most accurate")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="arithmetic of the model: auto (default) = bfloat16 on GPUs, and on a CPU where it "
                            "measured at least 1.25x faster than float32 at start (CPUs with AVX-512 BF16 or AMX; "
                            "masks differ slightly), else float32 (exact masks)")
    group.add_argument("--kernels", default="measure", choices=KERNEL_POLICIES,
                       help="attention kernels: measure (default) times PyTorch's fused kernel against the "
                            "blockwise one at first use and keeps the faster on this machine; fused or blockwise "
                            "pins one, so that another process (the app and the command line) gives bit-identical "
                            "masks")
    group.add_argument("--frame-storage", default="png", choices=FRAME_STORAGES,
                       help="how a video's frames are kept in memory, once for the model and the drawing: png "
                            "(default: lossless and smaller than raw; about 20 ms a 720p frame), jpeg "
                            "(smaller still, pixels change slightly) or raw (uint8, 2.8 MB a 720p frame)")  # fmt: skip


def add_media_arguments(parser: argparse.ArgumentParser, defaults: MediaLimits | None = None) -> None:
    """--max-frames, --max-seconds, --max-side, --max-fps (what one video may cost)."""
    defaults = defaults or MediaLimits()
    group = parser.add_argument_group("video limits")
    group.add_argument("--max-frames", type=positive_whole, default=defaults.max_frames,
                       help=f"most frames a video may have after sampling (default {defaults.max_frames})")
    group.add_argument("--max-seconds", type=positive_number, default=defaults.max_seconds,
                       help=f"longest video accepted, in seconds (default {defaults.max_seconds:g})")
    group.add_argument("--max-side", type=positive_whole, default=defaults.max_side,
                       help=f"frames are scaled down to this longest side (default {defaults.max_side})")
    group.add_argument("--max-fps", type=positive_number, default=defaults.max_fps,
                       help="highest sampling rate; faster videos are sampled down to it "
                            f"(default {defaults.max_fps:g})")  # fmt: skip


def media_limits(args: argparse.Namespace, parser: argparse.ArgumentParser, advice: str) -> MediaLimits:
    """The limits the arguments give (a parser error for one that is not positive)."""
    for name in ("max_frames", "max_seconds", "max_side", "max_fps"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return MediaLimits(args.max_frames, args.max_seconds, args.max_side, args.max_fps, advice=advice)


def resolve_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """(the variant's canonical name, the precision: "auto" decided for the device), or a parser error."""
    from sam2.config import resolve_variant

    try:
        model = resolve_variant(args.model)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        precision = resolve_precision(args.precision, args.device)
    except (RuntimeError, ValueError) as exc:  # torch's words for a device it does not know
        parser.error(f"--device {args.device}: {exc}")
    return model, precision


def precision_reason(precision: str, device: str) -> str:
    """Why the model runs at the precision it does, for the page and the log: the measurement
    behind ``auto`` on a CPU (kept per machine, so every start says the same), or the option."""
    if precision != "auto":
        return f"precision {precision}, as --precision asked"
    import torch

    from sam2.precision import Precision, cpu_precision_choice

    if torch.device(device).type == "cpu":
        return cpu_precision_choice().describe()
    return f"precision auto on {device}: {Precision.fastest_supported(device)}, which this GPU does natively"


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> the fastest precision the device does natively (sam2's rule); others as given."""
    import torch

    from sam2.precision import Precision

    device = str(torch.device(device))  # raises for an unknown device
    return Precision.fastest_supported(device) if precision == "auto" else precision


def resolve_checkpoint(model: str, checkpoint: Path | None, checkpoint_dir: Path | None) -> Path:
    """``checkpoint``, or the official file of ``model`` in ``checkpoint_dir``: checked against
    the registry's SHA-256, downloaded with a progress bar when missing. A file given with
    --checkpoint is the user's own and is never hashed against the registry (it may be
    fine-tuned weights); loading it checks what it holds."""
    if checkpoint is not None:
        if not checkpoint.exists():
            from sam2.checkpoint import CheckpointError

            raise CheckpointError(f"The checkpoint file {checkpoint} does not exist.")
        return checkpoint  # a folder is refused by the loader, which lists its .pt files
    from checkpoints import DEFAULT_DIRECTORY
    from checkpoints.download import ensure_checkpoint

    return ensure_checkpoint(model, checkpoint_dir or DEFAULT_DIRECTORY)


def checkpoint_problem(error: Exception, checkpoint: Path | None, model: str) -> str:
    """The error's message, naming the file where it does not (the key report of a checkpoint
    made for another variant names the variants only)."""
    message = str(error)
    if checkpoint is None or str(checkpoint) in message:
        return message
    return f"The checkpoint file {checkpoint} cannot be used for {model}. {message}"


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """--detector: the text detector ("Find by text"); it runs on --device at --precision."""
    from annotation.detect import DEFAULT_DETECTOR, KNOWN_DETECTORS

    group = parser.add_argument_group("text detector")
    group.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="MODEL_ID_OR_FOLDER",
                       help="the detector that finds objects from text: a Hugging Face model id of a Grounding DINO, "
                            "MM Grounding DINO or OWLv2 checkpoint, fetched on first use, or a folder holding one "
                            f"(config.json, model.safetensors, the processor's files). Default: {DEFAULT_DETECTOR} "
                            f"(Apache-2.0, about {KNOWN_DETECTORS[DEFAULT_DETECTOR].size_mb} MB, at a pinned revision)")
