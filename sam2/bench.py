"""Benchmark: `python -m sam2.bench --variant sam2.1_hiera_t --image-size 1024`.

Prints image-encoder seconds per frame, click-to-mask seconds on an encoded frame,
propagation seconds per frame for 1 and 3 objects, and peak RSS. Timings do not depend on
the weights' values, so without --checkpoint the model uses freshly initialised weights.
The video is synthetic (moving shapes, 854x480 by default), like a typical upload.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from .build import build_model, load_model
from .config import get_config, resolve_variant
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
    click_s: float
    propagate_s: dict[int, float]
    peak_rss_mb: float


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def run(predictor: SAM2VideoPredictor, frames: list[np.ndarray], objects: list[int], precision) -> Figures:
    model = predictor.model
    size = model.config.image_size
    from .transforms import video_frame_to_input

    with torch.inference_mode(), precision():
        image = video_frame_to_input(frames[0], size)[None]
        model.encode_image(image)  # warm-up
        encode_s = _timed(lambda: model.encode_image(image), 3)

        state = predictor.init_state(frames)
        points = object_points(frames[0].shape[1], frames[0].shape[0])
        predictor.add_new_points_or_box(state, 0, 1, points=[points[0]], labels=[1])  # encodes frame 0
        click_s = _timed(lambda: predictor.add_new_points_or_box(state, 0, 1, points=[points[0]], labels=[1]), 5)

        propagate_s = {}
        for count in objects:
            state = predictor.init_state(frames)
            for k in range(count):
                predictor.add_new_points_or_box(state, 0, k + 1, points=[points[k % 3]], labels=[1])
            start = time.perf_counter()
            tracked = sum(1 for _ in predictor.propagate_in_video(state, start_frame_idx=0)) - 1
            # Frame 0 holds the prompts (already encoded); the rest are tracked.
            propagate_s[count] = (time.perf_counter() - start) / max(tracked, 1)
    return Figures(encode_s, click_s, propagate_s, peak_rss_mb())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_t")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--checkpoint", default=None, help="official .pt file (default: fresh weights)")
    parser.add_argument("--frames", type=int, default=8, help="frames to propagate over")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--mode", choices=["exact", "fast"], default="exact",
                        help="exact: float32; fast: bfloat16 autocast (CPU with AVX-512 BF16/AMX, or GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    variant = resolve_variant(args.variant)
    if args.checkpoint:
        model = load_model(variant, args.checkpoint, image_size=args.image_size, device=args.device)
    else:
        torch.manual_seed(0)
        model = build_model(get_config(variant, image_size=args.image_size), device=args.device)
    predictor = SAM2VideoPredictor(model)
    device_type = torch.device(args.device).type

    def precision():
        if args.mode == "fast":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    frames = synthetic_video(args.frames + 1)
    figures = run(predictor, frames, args.objects, precision)
    print(f"# {variant}, image size {args.image_size}, {args.mode} mode, {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, video 854x480, {args.frames} tracked frames")
    print("| measure | value |")
    print("|---|---|")
    print(f"| encode one frame | {figures.encode_s:.3f} s |")
    print(f"| click to mask on an encoded frame | {figures.click_s:.3f} s |")
    for count, seconds in figures.propagate_s.items():
        print(f"| propagate, {count} object{'s' if count > 1 else ''} | {seconds:.3f} s/frame |")
    print(f"| peak RSS | {figures.peak_rss_mb:.0f} MB |")


if __name__ == "__main__":
    main()
