"""Fast mode against exact mode on the reference cases: the mean and lowest IoU of every mask
output of each case, replayed through the video predictor in float32 and in the fastest
precision this machine has (bfloat16 or float16).

    python scripts/fast_vs_exact.py [--device cpu]

Run from the repository: the cases and their weight rule live in tests/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam2.build import load_model  # noqa: E402
from sam2.precision import Precision  # noqa: E402
from sam2.video_predictor import SAM2VideoPredictor  # noqa: E402
from tests.parity import replay_video_case  # noqa: E402
from tests.reference import load_case, reference_state_dict  # noqa: E402

CASES = ("video_s21_512", "video_t20_512", "video_t21_1024")


def agreement(device: str, fast: str) -> dict[str, tuple[float, float]]:
    """Per reference case: (mean, min) IoU of every mask output, fast vs exact mode."""
    results = {}
    for name in CASES:
        case, frames, _ = load_case(name)
        case_model = load_model(case["config"], reference_state_dict(case["config"]),
                                image_size=case["image_size"], postprocessing=case["postprocessing"],
                                device=device)
        outputs = []
        for precision in ("float32", fast):
            predictor = SAM2VideoPredictor(case_model, precision=precision)
            replay = replay_video_case(name, predictor, predictor.init_state(frames))
            outputs.append([o.masks > 0 for o in replay if o.masks is not None])
        ious = []
        for exact, quick in zip(*outputs, strict=True):
            for a, b in zip(exact, quick, strict=True):
                union = np.logical_or(a, b).sum()
                ious.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
        results[name] = (float(np.mean(ious)), float(np.min(ious)))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    fast = Precision.fastest_supported(args.device)
    for name, (mean_iou, min_iou) in agreement(args.device, fast).items():
        print(f"| fast ({fast}) vs exact, {name} | mean IoU {mean_iou:.4f}, min {min_iou:.4f} |")


if __name__ == "__main__":
    main()
