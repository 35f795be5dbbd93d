"""Benchmark: `python -m sam2.bench --variant sam2.1_hiera_t --image-size 1024 --mode exact`.

Prints image-encoder seconds per frame, click-to-mask seconds on an encoded frame,
propagation seconds per frame for 1 and 3 objects, and peak RSS. Timings do not depend on
the weights' values, so without --checkpoint the model uses freshly initialised weights.
The video is synthetic (moving shapes, 854x480 by default), like a typical upload.

--long-frames N also tracks one object over N frames and prints the RSS growth per frame.

The attention kernels are chosen by measurement at first use (--kernels measure, as the app
does; sam2.kernels), and the choices made are printed after the table with the CPU's model
name (for the reader: nothing is chosen by it).

--find-objects times the automatic mask generator ("Find objects on this frame") instead: one
854x480 frame, model image sizes 512 and 1024, 8, 16 and 32 points per side, exact and fast
mode. Every candidate mask goes through every step (score filters at 0, NMS at upstream's
0.7), so the figures are an upper bound: with fresh weights few masks would pass upstream's
filters, with a real checkpoint many do.
How far fast mode's masks are from exact mode's is measured on the reference cases by
``scripts/fast_vs_exact.py`` (they live in the repository's tests/, which this package never
imports).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .allocator import tune_malloc
from .automatic_mask_generator import SAM2AutomaticMaskGenerator
from .build import build_model, load_model
from .config import get_config, resolve_variant
from .kernels import synchronize
from .precision import Precision, cpu_precision_choice
from .video_predictor import SAM2VideoPredictor


def synthetic_video(num_frames: int, width: int = 854, height: int = 480, seed: int = 0) -> list[np.ndarray]:
    """Three coloured discs drifting over a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = (rng.integers(0, 60, (height // 8 + 1, width // 8 + 1, 3))).repeat(8, 0).repeat(8, 1)
    frames = []
    for t in range(num_frames):
        frame = background[:height, :width].astype(np.uint8).copy()
        for k, color in enumerate([(220, 40, 40), (40, 200, 60), (60, 80, 230)]):
            cx = width * (0.25 + 0.25 * k) + 6 * t * (1 if k % 2 else -1)
            cy = height * 0.5 + 40 * np.sin(t / 5 + k)
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < (height / 8) ** 2] = color
        frames.append(frame)
    return frames


def object_points(width: int = 854, height: int = 480) -> list[list[float]]:
    return [[width * (0.25 + 0.25 * k), height * 0.5 + 40 * np.sin(k)] for k in range(3)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Figures:
    encode_s: float
    click_s: float  # on a frame whose features are cached (a second click there)
    first_click_s: float  # on a frame never seen: encoding included
    first_click_ahead_s: float  # on a frame encoded ahead (the app does that in idle time)
    propagate_s: dict[int, float]  # objects -> s/frame, encoding included
    propagate_ahead_s: dict[int, float]  # objects -> s/frame on frames encoded ahead
    peak_rss_mb: float


def _timed(fn, repeats: int, device: torch.device | None = None) -> float:
    if device is not None:
        synchronize(device.type)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device is not None:
        synchronize(device.type)  # GPU work is only queued when a call returns
    return (time.perf_counter() - start) / repeats



def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (for reports only), or 'unknown CPU'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def print_kernel_choices(model) -> None:
    print(f"# attention kernels ({model.kernels.policy}) on {cpu_model()}, torch {torch.__version__}")
    for line in model.kernels.describe():
        print(f"- {line}")


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run(predictor: SAM2VideoPredictor, frames: list[np.ndarray], objects: list[int], ahead: bool = True) -> Figures:
    """The predictor needs a feature cache of at least len(frames) for the "ahead" figures
    (ahead=False leaves them out: Meta's code has nothing to compare them with)."""
    model = predictor.model
    size = model.config.image_size
    from .transforms import video_frame_to_input

    points = object_points(frames[0].shape[1], frames[0].shape[0])
    with torch.inference_mode(), predictor.precision():
        image = video_frame_to_input(frames[0], size)[None].to(model.device)
        model.encode_image(image)  # warm-up
        encode_s = _timed(lambda: model.encode_image(image), 3, model.device)

    state = predictor.init_state(frames)
    click = lambda f: predictor.add_new_points_or_box(state, f, 1, points=[points[0]], labels=[1])  # noqa: E731
    first_click_s = _timed(lambda: click(0), 1, model.device)  # encodes frame 0
    click_s = _timed(lambda: click(0), 5, model.device)
    if ahead:
        predictor.encode_ahead(state, 1)
    first_click_ahead_s = _timed(lambda: click(1), 1, model.device) if ahead else float("nan")

    propagate_s, propagate_ahead_s = {}, {}
    for count in objects:
        for encoded_ahead, figures in ((False, propagate_s), (True, propagate_ahead_s))[: 2 if ahead else 1]:
            state = predictor.init_state(frames)
            for k in range(count):
                predictor.add_new_points_or_box(state, 0, k + 1, points=[points[k % 3]], labels=[1])
            if encoded_ahead:
                for f in range(1, len(frames)):
                    predictor.encode_ahead(state, f)
            seen = [0]

            def track(session=state, seen=seen) -> None:
                seen[0] = sum(1 for _ in predictor.propagate_in_video(session, start_frame_idx=0))

            # Frame 0 holds the prompts (already encoded); the rest are tracked.
            figures[count] = _timed(track, 1, model.device) / max(seen[0] - 1, 1)
    return Figures(encode_s, click_s, first_click_s, first_click_ahead_s, propagate_s, propagate_ahead_s, peak_rss_mb())


def rss_growth_per_frame(predictor: SAM2VideoPredictor, num_frames: int, warmup: int = 30) -> tuple[float, float]:
    """Track one object over a synthetic video; -> (MB per frame after warm-up, final RSS)."""
    frames = synthetic_video(num_frames)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[object_points()[0]], labels=[1])
    start_rss = None
    for frame_idx, _, _ in predictor.propagate_in_video(state):
        if frame_idx == warmup:
            start_rss = current_rss_mb()
    end_rss = current_rss_mb()
    return (end_rss - start_rss) / (num_frames - 1 - warmup), end_rss


@dataclass
class FindObjectsFigure:
    image_size: int
    points_per_side: int
    mode: str
    precision: str
    seconds: float | None  # None: the same precision as a row above, not measured again
    cpu_seconds: float | None  # process CPU time, all threads: tells a busy machine from a slow run
    masks: int


def find_objects_figures(
    model, device: str, sizes: tuple[int, ...] = (512, 1024), densities: tuple[int, ...] = (8, 16, 32)
) -> list[FindObjectsFigure]:
    """Seconds for `generate` on one synthetic 854x480 frame, encoding included, per size,
    density and mode (fast: the device's fastest supported precision)."""
    frame = synthetic_video(1)[0]
    fast = Precision.fastest_supported(device)
    figures = []
    for size in sizes:
        sized = model.at_image_size(size)
        for density in densities:
            measured: dict[str, FindObjectsFigure] = {}
            for mode, precision in (("exact", "float32"), ("fast", fast)):
                if precision in measured:
                    figures.append(FindObjectsFigure(size, density, mode, precision, None, None,
                                                     measured[precision].masks))
                    continue
                generator = SAM2AutomaticMaskGenerator(sized, points_per_side=density, pred_iou_thresh=0.0,
                                                       stability_score_thresh=0.0, precision=precision)
                start, start_cpu = time.perf_counter(), time.process_time()
                masks = len(generator.generate(frame))
                figure = FindObjectsFigure(size, density, mode, precision, time.perf_counter() - start,
                                           time.process_time() - start_cpu, masks)
                measured[precision] = figure
                figures.append(figure)
    return figures


def print_find_objects(model, args, malloc: str) -> None:
    figures = find_objects_figures(model, args.device)
    print(f"# find objects (automatic mask generator), {resolve_variant(args.variant)}, {args.device}, "
          f"{torch.get_num_threads()} threads, {malloc}, torch {torch.__version__}, one 854x480 frame, "
          f"encoding included, score filters off, NMS 0.7")
    print("| image size | points per side | mode | seconds | CPU seconds | masks kept |")
    print("|---|---|---|---|---|---|")
    for f in figures:
        seconds = f"{f.seconds:.1f} s" if f.seconds is not None else "as exact"
        cpu = f"{f.cpu_seconds:.1f} s" if f.cpu_seconds is not None else "as exact"
        print(f"| {f.image_size} | {f.points_per_side} ({f.points_per_side ** 2} points) | {f.mode} ({f.precision}) "
              f"| {seconds} | {cpu} | {f.masks} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_t")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--checkpoint", default=None, help="official .pt file (default: fresh weights)")
    parser.add_argument("--frames", type=int, default=8, help="frames to propagate over")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--mode", choices=["exact", "fast"], default="exact",
                        help="exact: float32; fast: bfloat16 where measured faster on this CPU (else float32), "
                             "bfloat16 or float16 on a GPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--long-frames", type=int, default=0, help="also measure RSS growth over this many frames")
    parser.add_argument("--find-objects", action="store_true",
                        help="time the automatic mask generator instead (512/1024, 8/16/32 points per side)")
    parser.add_argument("--kernels", choices=["measure", "fused", "blockwise"], default="measure",
                        help="attention kernels: measured at first use (default, as the app) or pinned")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc's settings alone (the app tunes them: see sam2/allocator.py)")
    parser.add_argument("--no-ahead", action="store_true",
                        help="leave out the 'encoded ahead' figures (Meta's code has none to compare with)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    malloc = "default malloc" if args.default_malloc or not tune_malloc() else "malloc tuned"
    if args.threads:
        torch.set_num_threads(args.threads)

    variant = resolve_variant(args.variant)
    if args.checkpoint:
        model = load_model(variant, args.checkpoint, image_size=args.image_size, device=args.device,
                           kernels=args.kernels)
    else:
        torch.manual_seed(0)
        model = build_model(get_config(variant, image_size=args.image_size), device=args.device, kernels=args.kernels)
    if args.find_objects:
        print_find_objects(model, args, malloc)
        print_kernel_choices(model)
        return
    fast = Precision.fastest_supported(args.device)
    precision = fast if args.mode == "fast" else "float32"
    cache = 4 if args.no_ahead else args.frames + 1  # 4: the predictor's default, as the app
    predictor = SAM2VideoPredictor(model, precision=precision, feature_cache_size=cache)

    frames = synthetic_video(args.frames + 1)
    figures = run(predictor, frames, args.objects, ahead=not args.no_ahead)
    print(f"# {variant}, image size {args.image_size}, {args.mode} mode ({precision}), {args.device} "
          f"({cpu_model()}), {torch.get_num_threads()} threads, {malloc}, torch {torch.__version__}, video 854x480, "
          f"{args.frames} tracked frames")
    print("| measure | value |")
    print("|---|---|")
    print(f"| encode one frame | {figures.encode_s:.3f} s |")
    print(f"| click to mask on an encoded frame | {figures.click_s:.3f} s |")
    print(f"| first click on a new frame | {figures.first_click_s:.3f} s |")
    if not args.no_ahead:
        print(f"| first click on a frame encoded ahead (idle time) | {figures.first_click_ahead_s:.3f} s |")
    for count, seconds in figures.propagate_s.items():
        objects = f"{count} object{'s' if count > 1 else ''}"
        print(f"| propagate, {objects} | {seconds:.3f} s/frame |")
        if count in figures.propagate_ahead_s:
            print(f"| propagate, {objects}, frames encoded ahead | {figures.propagate_ahead_s[count]:.3f} s/frame |")
    print(f"| peak RSS | {figures.peak_rss_mb:.0f} MB |")
    if args.long_frames:
        growth, final = rss_growth_per_frame(predictor, args.long_frames)
        print(f"| RSS growth, 1 object, {args.long_frames} frames | "
              f"{growth:.2f} MB/frame (RSS at end {final:.0f} MB) |")
    print_kernel_choices(model)
    if args.mode == "fast" and torch.device(args.device).type == "cpu":
        print(f"- {cpu_precision_choice().describe()}")
    if args.json:
        write_json(args.json, args, variant, precision, malloc, figures, model)


def write_json(path: Path, args, variant: str, precision: str, malloc: str, figures: Figures, model) -> None:
    """The figures for scripts/bench_vs_meta.py, which sets them beside Meta's."""
    record = {
        "code": "ours", "variant": variant, "image_size": args.image_size, "mode": args.mode,
        "precision": precision, "device": args.device, "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "malloc": malloc, "torch": torch.__version__, "frames": args.frames,
        "encode_s": figures.encode_s, "click_s": figures.click_s,
        "propagate_s": {str(k): v for k, v in figures.propagate_s.items()},
        "peak_rss_mb": figures.peak_rss_mb, "kernels": model.kernels.describe(),
    }
    if args.mode == "fast" and torch.device(args.device).type == "cpu":
        record["precision_choice"] = cpu_precision_choice().describe()
    path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
