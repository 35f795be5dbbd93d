"""Open-vocabulary detection from text: boxes for phrases such as "person, red car".

The detector part of the core, beside the SAM 2 engine (``annotation.engine``): the page
never touches its tensors, and ``sam2`` knows nothing of it. The models come from Hugging Face
transformers (``AutoProcessor`` + ``AutoModelForZeroShotObjectDetection``): Grounding DINO,
MM Grounding DINO and OWLv2. Each model's own processor resizes the image and its own
post-processing turns the outputs into boxes in the frame's pixels; only the mapping of a box
to one of the user's phrases is ours (Grounding DINO scores tokens, not phrases).

Weights: a Hugging Face model id (fetched on first use into the Hugging Face cache, at a
pinned revision for the default) or a local folder (never a network call). Offline, with a
damaged download or with a folder that holds no detector, :class:`DetectorUnavailable` says
what to fetch, from where, how big, and where to put it. Only ``.safetensors`` weights are
loaded (a pickled ``.bin`` file can run code).

This module imports neither torch nor transformers at import time, so the page can use
:func:`parse_phrases` and the thresholds without them.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotation.document import UserError

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
MAX_PHRASES = 32
MAX_PHRASE_CHARS = 60
PRECISIONS = ("float32", "bfloat16", "float16")
# Files a detector folder is made of; weights only as safetensors, never pickles.
_HUB_FILES = ("*.json", "*.txt", "*.safetensors")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


@dataclass(frozen=True)
class Thresholds:
    """A detector family's published defaults. box: a box is kept when its score is above it.
    text: Grounding DINO only, a phrase names a box when one of its tokens scores above it
    (OWLv2 scores each phrase as a whole, so it has no text threshold: None)."""

    box: float
    text: float | None


# Grounding DINO: the authors' inference code (groundingdino.util.inference, also used by
# Grounded-SAM) keeps boxes above 0.35 and phrases above 0.25. MM Grounding DINO publishes no
# defaults of its own for this post-processing; it shares Grounding DINO's.
GROUNDING_DINO_THRESHOLDS = Thresholds(box=0.35, text=0.25)
# OWLv2: the default of transformers' post_process_object_detection, which its docs use.
OWLV2_THRESHOLDS = Thresholds(box=0.1, text=None)

# "Find more like this" (OWLv2's image-guided detection): the defaults of transformers' OWLv2 docs
# example of post_process_image_guided_detection (threshold=0.9, nms_threshold=0.3).
LIKE_THRESHOLD = 0.9
LIKE_NMS_IOU = 0.3
# A box found on the example's own frame that overlaps the example box this much (box IoU) is the
# example itself, drawn again by the model: dropped, since the user asks for the others.
EXAMPLE_IOU = 0.5
OWLV2_HINT = "google/owlv2-base-patch16-ensemble"

_FAMILIES = {
    "grounding-dino": ("Grounding DINO", GROUNDING_DINO_THRESHOLDS),
    "mm-grounding-dino": ("MM Grounding DINO", GROUNDING_DINO_THRESHOLDS),
    "owlv2": ("OWLv2", OWLV2_THRESHOLDS),
}
_SUPPORTED = "Grounding DINO, MM Grounding DINO or OWLv2"


@dataclass(frozen=True)
class KnownDetector:
    """What the app knows of a published detector before downloading it (for the message that
    says what to fetch when it cannot be fetched)."""

    revision: str  # a commit of the Hugging Face repository: the files can never change under us
    files: tuple[str, ...]
    size_mb: int
    licence: str


KNOWN_DETECTORS = {
    # The commit of 2025's last model-card update (the weights were uploaded before it); from the
    # repository's file list at that commit: model.safetensors is 689 MB, the rest under 1 MB.
    DEFAULT_DETECTOR: KnownDetector(
        revision="a2bb814dd30d776dcf7e30523b00659f4f141c71",
        files=("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt"),
        size_mb=690,
        licence="Apache-2.0",
    ),
}


class DetectorUnavailable(UserError):
    """The detector could not be loaded (not downloaded, offline, damaged, not a detector).
    Text prompts need it; the rest of the app works without it."""


@dataclass(frozen=True)
class DetectorSpec:
    """Which detector to run, and how.

    model: a Hugging Face model id ("owner/name") or a local folder holding a detector saved
    with ``save_pretrained`` (config.json, the processor's files, model.safetensors).
    revision: the repository commit, branch or tag to fetch; None takes the pinned commit of a
    known detector (``KNOWN_DETECTORS``), else "main". Ignored for a folder.
    precision: "float32", "bfloat16" or "float16", as the app's --precision resolves it.
    box_threshold / text_threshold: None takes the family's published defaults (see
    :class:`Thresholds`).
    cache_dir: the Hugging Face cache to download into (None: huggingface_hub's default).
    """

    model: str = DEFAULT_DETECTOR
    revision: str | None = None
    device: str = "cpu"
    precision: str = "float32"
    box_threshold: float | None = None
    text_threshold: float | None = None
    cache_dir: Path | None = None

    def pinned_revision(self) -> str:
        if self.revision:
            return self.revision
        known = KNOWN_DETECTORS.get(self.model)
        return known.revision if known else "main"


@dataclass(frozen=True)
class Detection:
    """One box found for a phrase: corners in the frame's pixels (x0 <= x1, y0 <= y1, inside
    the frame), the phrase as the user wrote it, the model's confidence in 0..1."""

    x0: float
    y0: float
    x1: float
    y1: float
    phrase: str
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True, eq=False)
class LikeExample:
    """An example for "Find more like this" (:meth:`Detector.like_example`): OWLv2's class
    embedding of one of its own predicted boxes on the example frame, the one chosen for the
    example box (see :meth:`Detector.like_example`), computed once and compared with every box
    of any frame.

    box: the example box as given, chosen: the model's predicted box whose embedding is the
    query, both (x0, y0, x1, y1) in the example frame's pixels; label: the phrase the boxes found
    get (the example object's label); embedding: a torch tensor (1, 1, D) on the model's device,
    in its precision."""

    box: tuple[float, float, float, float]
    chosen: tuple[float, float, float, float]
    label: str
    embedding: Any


def check_example_box(box: Any, width: int, height: int) -> tuple[float, float, float, float]:
    """``box`` (x0, y0, x1, y1) in the pixels of a width x height frame as four floats, or a
    UserError in words: not four finite numbers, reaching outside the frame, or without area."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise UserError("The example must be a box of four numbers: left, top, right, bottom (in pixels).") from None
    if len(values) != 4 or isinstance(box, (str, bytes)):
        raise UserError("The example must be a box of four numbers: left, top, right, bottom (in pixels).")
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"The example box {box!r:.80} holds a value that is not a number.")
    x0, y0, x1, y1 = values
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise UserError(f"The example box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the frame, which is "
                        f"{width} x {height} pixels.")
    if not (x1 > x0 and y1 > y0):
        raise UserError(f"The example box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: its right edge must be "
                        "right of its left edge, and its bottom below its top.")
    return values


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 when neither has area)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


# ----------------------------------------------------------------------------- phrases


def parse_phrases(text: str) -> list[str]:
    """The phrases of a prompt: "person, red car" -> ["person", "red car"].

    Commas separate phrases; so do semicolons, line breaks and full stops (Grounding DINO's
    own prompts are written "person. red car."). Cleaned by :func:`clean_phrases`.
    """
    if not isinstance(text, str):
        raise UserError("Type what to find as text, for example: person, red car.")
    return clean_phrases(re.split(r"[,;.\n]", text))


def clean_phrases(phrases: Sequence[str]) -> list[str]:
    """Phrases stripped, inner spaces collapsed, empty ones and repeats (ignoring case: the
    detectors lowercase) dropped, in the order given; refused in words when none is left, when
    there are more than MAX_PHRASES, or one is longer than MAX_PHRASE_CHARS characters."""
    if isinstance(phrases, str) or not all(isinstance(p, str) for p in phrases):
        raise UserError("Give the phrases to find as a list of texts, for example ['person', 'red car'].")
    kept: list[str] = []
    seen: set[str] = set()
    for phrase in phrases:
        phrase = " ".join(phrase.split())
        if phrase and phrase.casefold() not in seen:
            seen.add(phrase.casefold())
            kept.append(phrase)
    if not kept:
        raise UserError("Type what to find, for example: person, red car (phrases separated by commas).")
    if len(kept) > MAX_PHRASES:
        raise UserError(f"That is {len(kept)} phrases; at most {MAX_PHRASES} can be found at once. "
                        "Find them in several turns.")
    for phrase in kept:
        if len(phrase) > MAX_PHRASE_CHARS:
            raise UserError(f"The phrase '{phrase[:MAX_PHRASE_CHARS]}...' has {len(phrase)} characters; "
                            f"a phrase may have at most {MAX_PHRASE_CHARS}. Name the thing in a few words.")
        if "." in phrase:
            raise UserError(f"The phrase '{phrase}' holds a full stop, which ends a phrase for the detector. "
                            "Separate phrases with commas.")
    return kept


def check_threshold(value: Any, name: str) -> float:
    """``value`` as a float in 0..1, else a UserError naming the threshold."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise UserError(f"The {name} must be a number from 0 to 1 (it is {value!r:.40}).")
    return float(value)


# ----------------------------------------------------------------------------- the detector


class Detector:
    """A loaded detector: its processor and model on the spec's device, behind a lock (one
    model shared by every user; two calls at once would only double the memory)."""

    def __init__(self, spec: DetectorSpec, processor: Any, model: Any, folder: Path) -> None:
        self.spec = spec
        self.folder = folder  # where the files were loaded from
        self._processor = processor
        self._model = model
        self.kind = model.config.model_type  # a key of _FAMILIES
        self.name = _FAMILIES[self.kind][0]
        self.defaults = _defaults(spec, self.kind)
        self.lock = threading.Lock()

    @classmethod
    def load(cls, spec: DetectorSpec | None = None, progress: bool = True) -> Detector:
        """Find the files (a folder, the Hugging Face cache, or a download), then build the
        processor and the model. Raises DetectorUnavailable with instructions on failure."""
        spec = spec or DetectorSpec()
        if spec.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {spec.precision!r}")
        _defaults(spec, "grounding-dino")  # bad thresholds are refused before any download
        folder = _local_folder(spec.model)
        if folder is None:
            folder = _fetch(spec, progress)
        kind = _check_folder(folder, spec)
        processor, model = _build(folder, spec, kind)
        return cls(spec, processor, model, folder)

    @property
    def supports_text_threshold(self) -> bool:
        return self.defaults.text is not None

    def detect(
        self,
        image: np.ndarray,
        phrases: Sequence[str],
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> list[Detection]:
        """Boxes of ``phrases`` on ``image`` (HxWx3 uint8 RGB), best first.

        Thresholds: None takes :attr:`defaults`; text_threshold is Grounding DINO's (OWLv2 has
        none and ignores it). Boxes are clipped to the frame; a box left with no area, and (for
        Grounding DINO) a box whose phrases all score at or below the text threshold, is dropped.
        """
        image = _check_image(image)
        phrases = clean_phrases(phrases)
        box = self.defaults.box if box_threshold is None else check_threshold(box_threshold, "box threshold")
        text = self.defaults.text if text_threshold is None else check_threshold(text_threshold, "text threshold")
        import torch

        with self.lock, torch.inference_mode():
            if self.kind == "owlv2":
                found = self._detect_owl(image, phrases, box)
            else:
                assert text is not None
                found = self._detect_grounding(image, phrases, box, text)
        height, width = image.shape[:2]
        clipped = (_clip(d, width, height) for d in found)
        return sorted((d for d in clipped if d is not None), key=lambda d: -d.score)

    # -- Grounding DINO and MM Grounding DINO: one caption "a. b.", a score per token

    def _detect_grounding(self, image: np.ndarray, phrases: list[str], box: float, text: float) -> list[Detection]:
        import torch

        caption, spans = _caption(phrases)
        tokenizer = self._processor.tokenizer
        encoded = tokenizer(caption, return_offsets_mapping=True)
        limit = int(self._model.config.max_text_len)
        if len(encoded["input_ids"]) > limit:
            raise UserError(f"These phrases make {len(encoded['input_ids'])} words for the detector, and it reads at "
                            f"most {limit}. Use fewer or shorter phrases.")
        inputs = self._processor(images=image, text=caption, return_tensors="pt")
        if inputs["input_ids"][0].tolist() != list(encoded["input_ids"]):  # the spans below index these tokens
            raise RuntimeError("the detector's processor tokenised the prompt unlike its tokenizer")
        outputs = self._run(inputs)
        height, width = image.shape[:2]
        result = self._processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=box, text_threshold=text, target_sizes=[(height, width)]
        )[0]
        probs = outputs.logits[0].sigmoid()  # (queries, max_text_len): the post-processing's own scores
        kept = torch.nonzero(probs.max(-1).values > box).flatten()  # the queries it kept, in its order
        if len(kept) != len(result["scores"]):
            raise RuntimeError("the detector's post-processing kept other boxes than its scores say")
        phrase_scores = _phrase_scores(probs[kept], encoded["offset_mapping"], spans)  # (kept, phrases)
        found = []
        for row, (score, corners) in enumerate(zip(result["scores"].tolist(), result["boxes"].tolist(), strict=True)):
            best = int(np.argmax(phrase_scores[row]))
            if phrase_scores[row, best] > text:
                found.append(Detection(*corners, phrase=phrases[best], score=score))
        return found

    # -- OWLv2: one query per phrase, a score per phrase

    def _detect_owl(self, image: np.ndarray, phrases: list[str], box: float) -> list[Detection]:
        tokenizer = self._processor.tokenizer
        limit = int(self._model.config.text_config.max_position_embeddings)
        for phrase in phrases:
            count = len(tokenizer(phrase)["input_ids"])
            if count > limit:
                raise UserError(f"The phrase '{phrase}' makes {count} words for the detector, and it reads at most "
                                f"{limit} per phrase. Name the thing in fewer words.")
        inputs = self._processor(images=image, text=[phrases], return_tensors="pt")
        outputs = self._run(inputs)
        height, width = image.shape[:2]
        result = self._processor.post_process_grounded_object_detection(
            outputs, threshold=box, target_sizes=[(height, width)], text_labels=[phrases]
        )[0]
        return [
            Detection(*corners, phrase=phrases[label], score=score)
            for score, label, corners in zip(result["scores"].tolist(), result["labels"].tolist(),
                                             result["boxes"].tolist(), strict=True)
        ]  # fmt: skip

    # -- "Find more like this": OWLv2's image-guided detection

    def detect_like(
        self, image: np.ndarray, example_box: Sequence[float], threshold: float | None = None,
        example_image: np.ndarray | None = None, label: str = "",
    ) -> list[Detection]:  # fmt: skip
        """The objects on ``image`` (HxWx3 uint8 RGB) that look like the example: the box
        ``example_box`` (x0, y0, x1, y1, pixels) on ``example_image`` (None: on ``image`` itself),
        best first, each named ``label``. OWLv2 only; another detector is refused in words.

        On the example's own frame (``example_image`` None) the example itself is dropped: a
        user asks for the others. Any box found there overlapping the example box at
        EXAMPLE_IOU (box IoU) or more is the model's drawing of the example, not another object.
        For ``threshold`` and the scores see :meth:`find_like`."""
        example = self.like_example(image if example_image is None else example_image, example_box, label)
        return self.find_like(image, example, threshold, exclude=example.box if example_image is None else None)

    def like_example(self, image: np.ndarray, box: Sequence[float], label: str = "") -> LikeExample:
        """The query for :meth:`find_like` from the box ``box`` on ``image``, as the OWL-ViT
        authors pick it for image-conditioned detection (and transformers' OWL-ViT does for a
        query image): of the boxes OWLv2 predicts on the frame, those whose IoU with the example
        box is within 80% of the best IoU (generalised IoU when none overlaps it), and of these the
        one whose class embedding is least like the mean of all the frame's boxes (the mean is the
        background: the least like it is the most the object's own). Its class embedding is the
        query. Refused in words: another detector than OWLv2, a box outside the frame, not a
        number, or without area."""
        self.require_image_guided()
        image = _check_image(image)
        height, width = image.shape[:2]
        given = check_example_box(box, width, height)
        import torch
        from transformers.image_transforms import center_to_corners_format
        from transformers.models.owlv2.image_processing_pil_owlv2 import box_iou as owl_box_iou
        from transformers.models.owlvit.modeling_owlvit import generalized_box_iou

        with self.lock, torch.inference_mode():
            feats, feature_map = self._owl_features(image)
            _, class_embeds = self._model.class_predictor(feats)  # (1, patches, D)
            boxes = center_to_corners_format(self._model.box_predictor(feats, feature_map).float())[0]
            side = float(max(height, width))  # OWLv2 pads the frame to a square: boxes are fractions of its side
            query = torch.tensor([given], dtype=torch.float32, device=boxes.device) / side
            ious = owl_box_iou(query, boxes)[0][0]
            if not bool((ious > 0).any()):
                ious = generalized_box_iou(query, boxes)[0]
            top = ious.max()
            # within 80% of the best IoU; a generalised IoU is negative, where 80% of it would exceed the best
            candidates = torch.nonzero(ious >= (top * 0.8 if top > 0 else top)).flatten()
            embeds = class_embeds[0].float()
            likeness = embeds[candidates] @ embeds.mean(0)
            best = int(candidates[int(torch.argmin(likeness))])
            chosen = tuple(float(v) * side for v in boxes[best].tolist())
            embedding = class_embeds[:, best : best + 1].clone()
        return LikeExample(given, chosen, label, embedding)  # type: ignore[arg-type]

    def find_like(
        self, image: np.ndarray, example: LikeExample, threshold: float | None = None,
        exclude: Sequence[float] | None = None,
    ) -> list[Detection]:  # fmt: skip
        """The boxes on ``image`` that look like ``example``, best first, in the frame's pixels,
        as transformers' ``post_process_image_guided_detection`` gives them (the same boxes; the
        scores here are the model's confidence rather than its display alphas), clipped to the frame.

        Each of OWLv2's boxes on the frame is scored by the model's confidence that it shows the
        same kind of thing as the example (the sigmoid of its class logit against the example's
        embedding, 0..1: the score of each Detection). A box is kept when that confidence is at
        or above ``threshold`` (None: LIKE_THRESHOLD, the value of transformers' OWLv2 example),
        no better box overlaps it by more than LIKE_NMS_IOU (box IoU; non-maximum suppression),
        and it scores above a tenth of the frame's best box (transformers' cut for drawing them).
        ``exclude``: a box (pixels); found boxes overlapping it at EXAMPLE_IOU or more are dropped."""
        self.require_image_guided()
        image = _check_image(image)
        threshold = LIKE_THRESHOLD if threshold is None else check_threshold(threshold, "likeness threshold")
        import torch

        with self.lock, torch.inference_mode():
            feats, feature_map = self._owl_features(image)
            embedding = example.embedding.to(feats.device, feats.dtype)
            logits, _ = self._model.class_predictor(feats, query_embeds=embedding)  # (1, patches, 1)
            boxes = self._model.box_predictor(feats, feature_map)  # (1, patches, 4): cx, cy, w, h of the square
            scores = logits[0].float().max(-1).values.sigmoid().cpu()
            boxes = boxes[0].float().cpu()
        height, width = image.shape[:2]
        found = [Detection(*corners, phrase=example.label, score=score)
                 for score, corners in _image_guided_boxes(scores, boxes, threshold, LIKE_NMS_IOU, (height, width))]
        clipped = (_clip(d, width, height) for d in found)
        kept = (d for d in clipped if d is not None and (exclude is None or box_iou(d.box, exclude) < EXAMPLE_IOU))
        return sorted(kept, key=lambda d: -d.score)

    def require_image_guided(self) -> None:
        """A UserError saying how to start the app with OWLv2, unless this detector is one."""
        if self.kind != "owlv2":
            raise UserError(f"Finding more like an example needs an OWLv2 detector, and this app runs {self.name} "
                            f"({self.spec.model}). Start the app with --detector {OWLV2_HINT} to use it.")

    def _owl_features(self, image: np.ndarray) -> tuple[Any, Any]:
        """OWLv2's image features of ``image``: (1, patches, D) and the same as (1, rows, columns, D),
        the frame resized and padded by the model's own image processor."""
        import torch

        pixels = self._processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self._model.device, getattr(torch, self.spec.precision))
        feature_map = self._model.image_embedder(pixel_values=pixels)[0]
        batch, rows, columns, depth = feature_map.shape
        return feature_map.reshape(batch, rows * columns, depth), feature_map

    def _run(self, inputs: Any) -> Any:
        """The model on the inputs; outputs in float32 on the CPU, so the post-processing's
        thresholds compare the same numbers whatever the precision and device."""
        import torch

        dtype = getattr(torch, self.spec.precision)
        moved = {k: (v.to(self._model.device, dtype) if v.is_floating_point() else v.to(self._model.device))
                 for k, v in inputs.items()}  # fmt: skip
        outputs = self._model(**moved)
        outputs.logits = outputs.logits.float().cpu()
        outputs.pred_boxes = outputs.pred_boxes.float().cpu()
        return outputs


class DetectorSlot:
    """The app's one detector, shared by every user, loaded on the first call of :meth:`get`
    (the page starts without it: the SAM 2 part works whether or not it ever loads).

    A failed load is not remembered: the next :meth:`get` tries again (the user may have put
    the files in place meanwhile), each time raising :class:`DetectorUnavailable` in words."""

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self._detector: Detector | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Detector | None:
        """The detector if it has been loaded, else None (never loads)."""
        return self._detector

    def get(self) -> Detector:
        """The loaded detector; the first call loads it (seconds to minutes: a download on the
        first use of a model id). Raises DetectorUnavailable."""
        with self._lock:
            if self._detector is None:
                self._detector = Detector.load(self.spec, progress=False)
            return self._detector


def _image_guided_boxes(
    scores: Any, boxes: Any, threshold: float, nms_iou: float, frame_hw: tuple[int, int]
) -> list[tuple[float, tuple[float, float, float, float]]]:
    """(score, corners in the frame's pixels) of the boxes transformers'
    ``post_process_image_guided_detection`` keeps for one image and one query, in the boxes' order.

    scores: (patches,) confidences; boxes: (patches, 4) cx, cy, w, h as fractions of the padded
    square. Its rules: greedy non-maximum suppression (best first, a kept box zeroes the boxes
    overlapping it by more than ``nms_iou``), then scores below ``threshold`` dropped, then those
    at or below a tenth of the best one left (its alpha 0). Only the boxes at or above the
    threshold are suppressed here: a box below it can only suppress boxes that score lower still,
    which are dropped anyway, so the boxes kept are the same and the loop runs over far fewer."""
    import torch
    from transformers.image_transforms import center_to_corners_format
    from transformers.models.owlv2.image_processing_pil_owlv2 import box_iou as owl_box_iou

    corners = center_to_corners_format(boxes)
    scores = scores.clone()
    scores[scores < threshold] = 0.0
    candidates = torch.nonzero(scores).flatten()
    if nms_iou < 1.0:
        for i in candidates[torch.argsort(-scores[candidates])].tolist():
            if not scores[i]:
                continue
            ious = owl_box_iou(corners[i : i + 1], corners[candidates])[0][0]
            ious[candidates == i] = -1.0
            scores[candidates[ious > nms_iou]] = 0.0
    if not bool(scores.any()):
        return []
    best = scores.max() + 1e-6  # as a tensor, as transformers computes it: the same float32 rounding
    side = float(max(frame_hw))
    kept = torch.nonzero((scores - best * 0.1) / (best * 0.9) > 0).flatten().tolist()
    return [(float(scores[i]), tuple(float(v) * side for v in corners[i].tolist())) for i in kept]


def _defaults(spec: DetectorSpec, kind: str) -> Thresholds:
    """The spec's thresholds, the family's published ones where the spec gives None."""
    published = _FAMILIES[kind][1]
    box = published.box if spec.box_threshold is None else check_threshold(spec.box_threshold, "box threshold")
    text = None if spec.text_threshold is None else check_threshold(spec.text_threshold, "text threshold")
    return Thresholds(box=box, text=None if published.text is None else (published.text if text is None else text))


def _caption(phrases: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's prompt ("person. red car.", lowercased as its processor does) and each
    phrase's characters in it."""
    caption, spans = "", []
    for phrase in phrases:
        if caption:
            caption += " "
        lowered = phrase.lower()  # may change the length ("İ" -> "i̇"): the spans count the lowered text
        spans.append((len(caption), len(caption) + len(lowered)))
        caption += lowered + "."
    return caption, spans


def _phrase_scores(probs: Any, offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> np.ndarray:
    """(boxes, phrases): a phrase's score for a box is the best score of its tokens."""
    scores = np.zeros((probs.shape[0], len(spans)), dtype=np.float32)
    values = probs.numpy()
    for j, (start, end) in enumerate(spans):
        tokens = [i for i, (s, e) in enumerate(offsets) if e > s and start <= s and e <= end]
        if tokens:
            scores[:, j] = values[:, tokens].max(axis=1)
    return scores


def _clip(found: Detection, width: int, height: int) -> Detection | None:
    x0, x1 = (min(max(v, 0.0), float(width)) for v in (found.x0, found.x1))
    y0, y1 = (min(max(v, 0.0), float(height)) for v in (found.y0, found.y1))
    if not (x1 > x0 and y1 > y0):
        return None
    return Detection(x0, y0, x1, y1, found.phrase, found.score)


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an HxWx3 uint8 array, not {getattr(image, 'shape', type(image))}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image is empty")
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------- finding the files


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _local_folder(model: str) -> Path | None:
    """The folder ``model`` names, None for a Hugging Face model id; refused when it is neither."""
    model = str(model)
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if _HUB_ID.match(model) and not model.startswith((".", "~")) and ".." not in model:
        return None
    if path.exists():
        raise DetectorUnavailable(f"The detector {model} is a file; give the folder that holds the detector's "
                                  "config.json and model.safetensors (--detector FOLDER).")
    raise DetectorUnavailable(f"There is no detector folder {model}, and it is no Hugging Face model id "
                              f"(owner/name, such as {DEFAULT_DETECTOR}).")


def _fetch(spec: DetectorSpec, progress: bool) -> Path:
    """The model's files in the Hugging Face cache at the pinned revision: found there without
    the network, else downloaded (within seconds an error when the hub cannot be reached)."""
    from huggingface_hub import snapshot_download

    from checkpoints.download import _hub_progress_bars, _offline_mode, _reason, _require_connection

    revision = spec.pinned_revision()
    common = dict(repo_id=spec.model, revision=revision, allow_patterns=list(_HUB_FILES), cache_dir=spec.cache_dir)
    try:
        cached = Path(snapshot_download(**common, local_files_only=True))
        if (cached / "config.json").is_file() and any(cached.glob("*.safetensors")):
            return cached
    except Exception:  # noqa: BLE001 - not cached: downloaded below
        pass
    if _offline_mode():
        reason = "offline mode is on (HF_HUB_OFFLINE) and no copy is cached"
        raise DetectorUnavailable(_unavailable_message(spec, reason))
    try:
        from huggingface_hub import constants

        _require_connection(constants.ENDPOINT)
        with _hub_progress_bars(progress):
            return Path(snapshot_download(**common, etag_timeout=5.0))
    except Exception as error:  # noqa: BLE001 - every failure of the download gets the same instructions
        raise DetectorUnavailable(_unavailable_message(spec, _reason(error))) from None


def _unavailable_message(spec: DetectorSpec, reason: str) -> str:
    revision = spec.pinned_revision()
    known = KNOWN_DETECTORS.get(spec.model)
    address = f"https://huggingface.co/{spec.model}/tree/{revision}"
    if known:
        files = ", ".join(known.files)
        size = f"about {known.size_mb} MB in all, nearly all of it model.safetensors"
    else:
        files = "config.json, model.safetensors and the other .json and .txt files"
        size = "its size is on that page"
    return (
        f"The text detector {spec.model} (revision {revision}) is not on this computer and could not be "
        f"downloaded: {reason}.\n"
        f"To fix this, download these files on a computer with internet access from:\n  {address}\n"
        f"  {files} ({size})\n"
        "put them together in one folder, copy it here, and start with --detector FOLDER.\n"
        "Finding objects by text needs the detector; the rest of the app works without it."
    )


def _check_folder(folder: Path, spec: DetectorSpec) -> str:
    """The folder's model type (a key of _FAMILIES), or DetectorUnavailable saying what is wrong."""
    fix = _refetch_advice(spec, folder)
    config = folder / "config.json"
    if not config.is_file():
        raise DetectorUnavailable(f"The folder {folder} holds no detector: it has no config.json. {fix}")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise DetectorUnavailable(f"The file {config} is damaged (it is not a model's settings). {fix}") from None
    if model_type not in _FAMILIES:
        raise DetectorUnavailable(f"The folder {folder} holds a {model_type or 'unknown'} model, not a detector "
                                  f"this app runs from text ({_SUPPORTED}).")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        # transformers would quietly build an empty tokenizer, and every phrase would read as unknown words
        raise DetectorUnavailable(f"The folder {folder} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}), "
                                  f"so the detector cannot read the phrases. {fix}")
    if not list(folder.glob("*.safetensors")):
        raise DetectorUnavailable(f"The folder {folder} has no model.safetensors (weights in other formats, such as "
                                  f"pytorch_model.bin, are not loaded: they can run code). {fix}")
    return model_type


def _refetch_advice(spec: DetectorSpec, folder: Path) -> str:
    if _local_folder(spec.model) is None:
        # the Hugging Face cache keeps a file once (models--owner--name/blobs), linked from each snapshot:
        # deleting the snapshot alone would link the same damaged file again
        cached = folder.parents[1] if folder.parent.name == "snapshots" else folder
        return (f"Delete {cached} to have it downloaded again, or fetch the files from "
                f"https://huggingface.co/{spec.model}/tree/{spec.pinned_revision()} and start with --detector FOLDER.")
    return f"Save a detector ({_SUPPORTED}) there with save_pretrained, or download one from Hugging Face into it."


def _build(folder: Path, spec: DetectorSpec, kind: str) -> tuple[Any, Any]:
    """The processor and the model, from local files only."""
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    fix = _refetch_advice(spec, folder)
    try:
        # The PIL image processors: the torchvision ones need torchvision, which this app does not
        # install; and one choice everywhere gives the same boxes on every machine.
        processor = AutoProcessor.from_pretrained(folder, backend="pil", local_files_only=True)
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds for a bad folder
        raise DetectorUnavailable(f"The {_FAMILIES[kind][0]} detector in {folder} cannot be read: its processor "
                                  f"files (preprocessor_config.json, tokenizer) are missing or damaged "
                                  f"({_short(error)}). {fix}") from None
    try:
        model = AutoModelForZeroShotObjectDetection.from_pretrained(
            folder, dtype=getattr(torch, spec.precision), local_files_only=True, use_safetensors=True
        )
    except Exception as error:  # noqa: BLE001
        raise DetectorUnavailable(f"The {_FAMILIES[kind][0]} detector in {folder} cannot be loaded: its weights are "
                                  f"missing, incomplete or damaged ({_short(error)}). {fix}") from None
    words, known = len(processor.tokenizer), int(model.config.text_config.vocab_size)
    if words > known:
        raise DetectorUnavailable(f"The tokenizer in {folder} has {words} words and the detector's model knows "
                                  f"{known}: they are not of one detector. {fix}")
    try:
        model = model.to(spec.device).eval()
    # torch's words for a device it does not have; a CPU-only build asserts "Torch not compiled with CUDA".
    except (RuntimeError, ValueError, AssertionError) as error:
        raise DetectorUnavailable(f"The detector cannot run on the device {spec.device}: {_short(error)}") from None
    return processor, model


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
