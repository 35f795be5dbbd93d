"""Time detection per frame (annotation.detect) for each detector this machine can build: from text,
and for OWLv2 also "Find more like this" (image-guided: the example's query once, then each frame).

No weights can be downloaded here, so each detector is built at its real default architecture
(the published checkpoint's config: Grounding DINO tiny, MM Grounding DINO tiny, OWLv2 base
patch16 at 960 px) with random weights and a tokenizer of the real vocabulary's size; timings
do not depend on the weights' values (the same layers run whatever they hold; only the boxes
kept afterwards differ, and their post-processing is a small part). Each frame goes through
``Detector.detect``: the model's own processor (resize, normalise), the model, and its
post-processing, as in the app. A published checkpoint found in the Hugging Face cache is timed
too (the output says which are not there).

    python scripts/bench_detect.py [--device cpu] [--precision float32] [--runs 3] [--frame 1280x720]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.detect import DEFAULT_DETECTOR, LIKE_THRESHOLD, OWLV2_HINT, Detector, DetectorSpec  # noqa: E402
from sam2.bench import cpu_model  # noqa: E402

PROMPT = ["person", "car"]
BERT_VOCAB = 30522  # bert-base-uncased, Grounding DINO's text encoder
CLIP_VOCAB = 49408  # CLIP's byte-pair vocabulary, OWLv2's text encoder
# The published checkpoint of each family, timed too when it is in the Hugging Face cache.
PUBLISHED = {"grounding-dino": DEFAULT_DETECTOR, "owlv2": OWLV2_HINT,
             "mm-grounding-dino": "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg"}


def bert_tokenizer(folder: Path):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *PROMPT]
    words += [f"word{i}" for i in range(BERT_VOCAB - len(words))]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer.from_pretrained(folder)


def clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    merges = ["p e", "pe r", "per s", "pers o", "perso n</w>", "c a", "ca r</w>"]
    tokens = [*letters, *(c + "</w>" for c in letters), "pe", "per", "pers", "perso", "person</w>", "ca", "car</w>"]
    tokens += [f"filler{i}" for i in range(CLIP_VOCAB - 2 - len(tokens))] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=16)


def build(kind: str, folder: Path, spec: DetectorSpec) -> Detector:
    """A detector of ``kind`` at its published default architecture, random weights."""
    import transformers as tf
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    torch.manual_seed(0)
    if kind == "owlv2":
        config = tf.Owlv2Config(vision_config={"image_size": 960})  # owlv2-base-patch16(-ensemble)
        model = tf.Owlv2ForObjectDetection(config)
        processor = tf.Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": 960, "width": 960}),
                                      tokenizer=clip_tokenizer(folder))  # fmt: skip
    else:
        if kind == "grounding-dino":
            model = tf.GroundingDinoForObjectDetection(tf.GroundingDinoConfig())  # grounding-dino-tiny
        else:
            model = tf.MMGroundingDinoForObjectDetection(tf.MMGroundingDinoConfig())  # mm_grounding_dino_tiny
        processor = tf.GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(),  # 800 / 1333 px
                                              tokenizer=bert_tokenizer(folder))  # fmt: skip
    model = model.to(spec.device, getattr(torch, spec.precision)).eval()
    return Detector(spec, processor, model, folder)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cached_folder(model: str) -> Path | None:
    """The published checkpoint's folder in the Hugging Face cache at the app's revision, or None
    (never downloads: this machine has no internet)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model, revision=DetectorSpec(model).pinned_revision(), local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached
        return None
    return folder if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) else None


def timed(call, runs: int, device: str, warm_up: bool = True) -> tuple[float, float, float]:
    """(mean s, fastest s, CPU s of this process) per call, after one warm-up call (``warm_up``:
    the detector's first timing; later ones reuse its warm model)."""
    if warm_up:
        call()  # first-call allocations
    times = []
    cpu_start = time.process_time()
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.mean(times)), min(times), (time.process_time() - cpu_start) / runs


def rows(detector: Detector, weights: str, frame: np.ndarray, runs: int, device: str,
         every_threshold: bool = False) -> list[str]:
    """The table's rows for one detector: text detection, and for OWLv2 the image-guided path."""
    pixels = detector._processor.image_processor(images=frame, return_tensors="pt")["pixel_values"]
    size = f"{pixels.shape[-1]}x{pixels.shape[-2]}"
    params = f"{sum(p.numel() for p in detector._model.parameters()) / 1e6:.0f}M"
    found = []

    def row(what: str, figures: tuple[float, float, float]) -> str:
        mean, fastest, cpu = figures
        return f"| {detector.name} | {what} | {weights} | {size} | {params} | {mean:.2f} | {fastest:.2f} | {cpu:.2f} |"

    found.append(row(f"text {', '.join(PROMPT)!r}", timed(lambda: detector.detect(frame, PROMPT), runs, device)))
    if detector.kind == "owlv2":
        height, width = frame.shape[:2]
        box = (width * 0.3, height * 0.3, width * 0.5, height * 0.6)
        query = timed(lambda: detector.like_example(frame, box), runs, device, warm_up=False)
        found.append(row("like an example: its query, once", query))
        example = detector.like_example(frame, box)
        # threshold 0: every box goes through the suppression, the slowest case of the post-processing
        for threshold in (None, 0.0) if every_threshold else (None,):
            shown = LIKE_THRESHOLD if threshold is None else threshold
            figures = timed(lambda: detector.find_like(frame, example, threshold), runs, device, False)  # noqa: B023
            found.append(row(f"like an example, per frame (threshold {shown:g})", figures))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--runs", type=int, default=3, help="timed frames per detector, after one warm-up")
    parser.add_argument("--frame", default="1280x720", help="frame size WxH (the app's default largest side: 1280)")
    parser.add_argument("--detectors", default="grounding-dino,mm-grounding-dino,owlv2")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--threshold-zero", action="store_true",
                        help="also time 'like an example' at threshold 0 (every box through the suppression)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.frame.lower().split("x"))
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    print(f"# detection per frame, {width}x{height} frame, each model at its default input size")
    print(f"# {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"transformers {__import__('transformers').__version__}, device {args.device}, {args.precision}")
    print("# 'random': the detector's real default architecture with random weights (the time does not depend on")
    print("# the weights' values); 'published': its checkpoint from the Hugging Face cache, when it is there")
    print(f"# load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on a shared machine "
          "slows the wall time; the CPU time of this process is less sensitive to it)")
    table = ["| detector | detection | weights | model input | parameters | s per frame (mean) | fastest | CPU s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    print("\n".join(table), flush=True)
    missing = []
    for kind in args.detectors.split(","):
        spec = DetectorSpec(kind, device=args.device, precision=args.precision)
        with tempfile.TemporaryDirectory() as tmp:
            detector = build(kind, Path(tmp), spec)
            print("\n".join(rows(detector, "random", frame, args.runs, args.device, args.threshold_zero)), flush=True)
            del detector
        model = PUBLISHED[kind]
        folder = cached_folder(model)
        if folder is None:
            missing.append(model)
            continue
        published = Detector.load(DetectorSpec(str(folder), device=args.device, precision=args.precision))
        print("\n".join(rows(published, "published", frame, args.runs, args.device, args.threshold_zero)), flush=True)
        del published
    for model in missing:
        print(f"# {model} is not in the Hugging Face cache here (no internet to fetch it): timed with random weights "
              "only")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
