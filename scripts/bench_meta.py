"""Time Meta's own sam2 package the way `python -m sam2.bench` times ours, on this machine.

Issue 4 compares our speed with Meta's code on the same machine; this measures the
baseline. Meta's package is also called `sam2`, so it is not installed: pass the folder of
its unpacked source (e.g. `pip download sam2==1.1.0 --no-deps` and untar it) and a folder
with its pure-Python dependencies (`pip install --target DEPS hydra-core omegaconf iopath
tqdm antlr4-python3-runtime==4.9.3 portalocker --no-deps`). Its video predictor needs no
torchvision. Run it from outside this repository so that our `sam2` is not imported:

    cd /tmp && python /path/to/repo/scripts/bench_meta.py --meta-src sam2-1.1.0 --deps deps --mode exact

Same video (854x480 synthetic discs, from sam2.bench), same prompts, fresh weights
(timings do not depend on their values), `sam2.1_hiera_t` at 1024 unless --variant says
otherwise; --device cuda for a GPU (Meta's code keeps the frames on it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _load_by_path(name: str, path: Path):
    """A module of ours that imports nothing of our package, loaded without `sam2` on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-src", type=Path, required=True, help="unpacked sam2 1.1.0 source folder")
    parser.add_argument("--deps", type=Path, required=True, help="folder with hydra-core, omegaconf, iopath, tqdm")
    parser.add_argument("--mode", choices=["exact", "fast"], default="exact", help="fast: bfloat16 autocast")
    parser.add_argument("--variant", default="sam2.1_hiera_t", help="e.g. sam2.1_hiera_l, sam2_hiera_b+")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--tune-malloc", action="store_true",
                        help="apply our app's glibc malloc settings (sam2/allocator.py) to Meta's code too")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    malloc = "default malloc"
    if args.tune_malloc:
        allocator = _load_by_path("our_allocator", Path(__file__).parents[1] / "sam2" / "allocator.py")
        malloc = "malloc tuned" if allocator.tune_malloc() else "default malloc (not glibc)"

    # Our synthetic video, loaded from our bench module by path (our package stays off sys.path).
    spec = importlib.util.spec_from_file_location("our_bench_video", Path(__file__).parents[1] / "sam2" / "bench.py")
    source = spec.loader.get_source("our_bench_video")  # type: ignore[union-attr]
    video_code = source[source.index("def synthetic_video") : source.index("def peak_rss_mb")]
    scope: dict = {"np": np}
    exec(video_code, scope)  # synthetic_video and object_points only: no imports of our package

    sys.path[:0] = [str(args.deps.resolve()), str(args.meta_src.resolve())]
    import torch
    from PIL import Image

    from sam2.build_sam import build_sam2_video_predictor  # Meta's

    folder = tempfile.mkdtemp()
    for i, frame in enumerate(scope["synthetic_video"](args.frames + 1)):
        Image.fromarray(frame).save(f"{folder}/{i:05d}.jpg", quality=95)
    points = [np.array([p], np.float32) for p in scope["object_points"]()]
    label = np.array([1], np.int32)

    torch.manual_seed(0)
    family = "sam2.1" if args.variant.startswith("sam2.1") else "sam2"
    device = torch.device(args.device)
    predictor = build_sam2_video_predictor(f"configs/{family}/{args.variant}.yaml", ckpt_path=None, device=device)
    fast = args.mode == "fast"

    def timed(fn, repeats: int = 1) -> float:
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _synchronize(device)  # GPU work is only queued when a call returns
        return (time.perf_counter() - start) / repeats

    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
        image = torch.randn(1, 3, 1024, 1024, device=device)
        predictor.forward_image(image)
        encode = timed(lambda: predictor.forward_image(image), 3)
        state = predictor.init_state(folder)
        predictor.add_new_points_or_box(state, 0, 1, points=points[0], labels=label)
        click = timed(lambda: predictor.add_new_points_or_box(state, 0, 1, points=points[0], labels=label), 5)
        propagate = {}
        for count in args.objects:
            state = predictor.init_state(folder)
            for k in range(count):
                predictor.add_new_points_or_box(state, 0, k + 1, points=points[k % 3], labels=label)
            frames_seen = [0]

            def track(session=state, seen=frames_seen) -> None:
                seen[0] = sum(1 for _ in predictor.propagate_in_video(session, start_frame_idx=0))

            propagate[count] = timed(track) / (frames_seen[0] - 1)  # frame 0 holds the prompts

    print(f"# Meta's sam2 (from {args.meta_src}), {args.variant}, 1024, {args.mode} mode, {device}, "
          f"{torch.get_num_threads()} threads, {malloc}, "
          f"torch {torch.__version__}, video 854x480, {args.frames} tracked frames")
    print("| measure | value |\n|---|---|")
    print(f"| encode one frame | {encode:.3f} s |")
    print(f"| click to mask on an encoded frame | {click:.3f} s |")
    for count, seconds in propagate.items():
        print(f"| propagate, {count} object{'s' if count > 1 else ''} | {seconds:.3f} s/frame |")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| peak RSS | {peak_rss_mb:.0f} MB |")
    if args.json:
        args.json.write_text(json.dumps({
            "code": "meta", "source": str(args.meta_src), "variant": args.variant, "device": str(device),
            "mode": args.mode,
            "precision": "bfloat16" if fast else "float32", "threads": torch.get_num_threads(), "malloc": malloc,
            "torch": torch.__version__, "frames": args.frames, "encode_s": encode, "click_s": click,
            "propagate_s": {str(k): v for k, v in propagate.items()}, "peak_rss_mb": peak_rss_mb,
        }, indent=1))


def _synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
