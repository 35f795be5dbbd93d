"""``auto_annotate``: a detector's boxes as SAM 2 box prompts, written as a YOLO segmentation
dataset, in one call (the seed's API, as the SAM 2 documentation this project follows has it:
Ultralytics' ``auto_annotate(data, det_model, sam_model, ...)``).

The detector is an open-vocabulary one (:mod:`annotation.detect`: Grounding DINO, MM Grounding
DINO, OWLv2), so ``classes`` are the phrases to find, and class ``i`` of the label files is the
``i``-th phrase. Each image goes through SAM 2's image predictor once (``set_image``), every
kept box is a box prompt (one mask per box, as a box asks), and each mask becomes a line of
``<image>.txt`` by the page's own YOLO export code (:func:`annotation.datasets.instance_polygon`,
:func:`annotation.datasets.yolo_line`), so the labels equal the page's export of the same masks.

What it writes into ``output_dir`` (default: ``<data>_auto_annotate_labels`` beside ``data``,
Ultralytics' default):

- one ``<image stem>.txt`` per image, one ``class x1 y1 x2 y2 ...`` line per object (an image
  where nothing was found gets an empty file: a background image);
- ``data.yaml``: the class names in order, and where the images are (what trainers and readers
  such as supervision's ``DetectionDataset.from_yolo`` need beside the labels);
- for a video: its frames as ``<video>_00000.jpg``..., beside their labels (a video has no
  image files of its own to pair them with).

Images are read one at a time at their own sizes (a folder may mix sizes), so memory stays
flat however long the folder is; a video's frames are decoded at once, within the app's
video limits (``sam2.video_io.MediaLimits``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annotation.detect import DEFAULT_DETECTOR, Detection, DetectorSpec, check_threshold, clean_phrases, parse_phrases
from annotation.document import UserError

if TYPE_CHECKING:
    from annotation.detect import Detector

log = logging.getLogger(__name__)

DEFAULT_SAM_MODEL = "sam2.1_hiera_tiny"
DEFAULT_IMAGE_SIZE = 1024
BOXES_PER_CALL = 8  # boxes decoded at once: each gives a float mask at the image's size, so a batch is bounded
JPEG_QUALITY = 95
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # sam2.image_set's

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels
Progress = Callable[[int, int, str], None]  # (images done, images in all, the image just done)


class AutoAnnotateError(UserError):
    """``auto_annotate`` was given something it cannot use; the message says what and how to fix it."""


@dataclass(frozen=True)
class ImageLabels:
    """What was written for one image: its label file, the detections kept (after the IoU
    filter and max_det, best first) and how many of them got a label line (a mask too small
    for an outline gets none)."""

    name: str
    label_file: Path
    kept: tuple[Detection, ...]
    lines: int


@dataclass
class AutoAnnotation:
    """The result of :func:`auto_annotate`."""

    output_dir: Path
    data_yaml: Path
    images_dir: Path  # the images the labels pair with (the data folder, or output_dir for a video's frames)
    classes: list[str]
    images: list[ImageLabels] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # images that could not be read, with the reason
    total: int = 0  # images to do
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        return sum(image.lines for image in self.images)

    def describe(self) -> str:
        done = f"Labelled {len(self.images)} of {self.total} images with {self.objects} objects in {self.seconds:.1f} s"
        parts = [done, f"labels in {self.output_dir}"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} unreadable images skipped")
        if self.cancelled:
            parts.append("cancelled: the images not done have no label file")
        return "; ".join(parts) + "."


# ----------------------------------------------------------------------------- the call


def auto_annotate(
    data: str | Path,
    det_model: str | Path | Detector = DEFAULT_DETECTOR,
    sam_model: str | Path = DEFAULT_SAM_MODEL,
    device: str = "cpu",
    conf: float = 0.25,
    iou: float = 0.45,
    imgsz: int = DEFAULT_IMAGE_SIZE,
    max_det: int = 300,
    classes: Sequence[str] | str | None = None,
    output_dir: str | Path | None = None,
    *,
    text_threshold: float | None = None,
    precision: str = "auto",
    kernels: str = "measure",
    checkpoint_dir: str | Path | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> AutoAnnotation:
    """Find ``classes`` in every image of ``data`` and write their SAM 2 masks as YOLO labels.

    data: a folder of images (its image files, in name order, not its subfolders), one image
        file, or a video (its frames, decoded as the app does).
    det_model: a Grounding DINO, MM Grounding DINO or OWLv2 detector: a Hugging Face model id
        (fetched on first use), a folder saved with ``save_pretrained``, or a loaded
        :class:`annotation.detect.Detector` (then its own device and precision).
    sam_model: a SAM 2 variant name ("sam2.1_hiera_tiny", downloaded into checkpoints/ like the
        app does, or ``checkpoint_dir``) or a checkpoint file (its variant read from its keys).
    device: a torch device ("cpu", "cuda", "cuda:1"), as the app's --device; "" takes a CUDA GPU
        when there is one, else the CPU (Ultralytics' default).
    conf: the detector's box threshold: a box is kept when its score is above it.
    iou: boxes of one class overlapping a better one by more than this IoU are dropped (NMS).
    imgsz: SAM 2's input size, 512, 768 or 1024 (the detector resizes as its own processor does).
    max_det: at most this many boxes per image, the best.
    classes: the phrases to find, ["person", "car"] or "person, car"; class i = phrase i.
    output_dir: where the label files go (default ``<data>_auto_annotate_labels`` beside it).
    text_threshold: Grounding DINO's phrase threshold (None: its published default).
    precision: "auto" (as the app's --precision decides), "float32" (exact), "bfloat16" or
        "float16", for both models.
    kernels: SAM 2's attention kernels ("measure", "fused", "blockwise"), as the app's --kernels.
    progress: called after each image with (done, total, image name).
    cancel: called before each image; True stops there (labels written so far stay).

    Bad input is refused with :class:`AutoAnnotateError` (or the detector's
    :class:`annotation.detect.DetectorUnavailable`, the checkpoint's CheckpointError) before any
    model is loaded where it can be, and before anything is written.
    """
    started = time.perf_counter()
    phrases = _phrases(classes)
    conf = _threshold(conf, "conf (the box score threshold)")
    iou = _threshold(iou, "iou (the overlap above which a weaker box is dropped)")
    max_det = _max_det(max_det)
    imgsz = _image_size(imgsz)
    kernels = _kernels(kernels)
    if text_threshold is not None:
        text_threshold = _threshold(text_threshold, "text threshold")
    source = _source(Path(data))
    out = _output_dir(Path(data), output_dir)
    device = _device(device)
    precision = _precision(precision, device)
    detector = _detector(det_model, device, precision)
    predictor = _predictor(sam_model, imgsz, device, precision, kernels, checkpoint_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = AutoAnnotation(out, out / "data.yaml", source.images_dir(out), phrases, total=source.count)
    _write_text(result.data_yaml, _data_yaml(phrases, result.images_dir))
    log.info("auto_annotate: %d images of %s, finding %s, labels into %s", source.count, data, phrases, out)
    for done, (name, read) in enumerate(source.items(), start=1):
        if cancel is not None and cancel():
            result.cancelled = True
            log.info("auto_annotate: cancelled after %d of %d images", done - 1, source.count)
            break
        try:
            image = read()
        except AutoAnnotateError as error:
            log.warning("auto_annotate: %s", error)
            result.skipped.append(str(error))
        else:
            labels = _annotate_image(detector, predictor, image, phrases, conf, text_threshold, iou, max_det)
            if source.frames is not None:  # a video's frame, the image its labels pair with
                _write_jpeg(out / name, image)
            label_file = out / (Path(name).stem + ".txt")
            _write_text(label_file, "".join(line + "\n" for line in labels.lines))
            result.images.append(ImageLabels(name, label_file, labels.kept, len(labels.lines)))
            log.info("auto_annotate: %d/%d %s: %d boxes, %d objects", done, source.count, name, len(labels.kept),
                     len(labels.lines))  # fmt: skip
        if progress is not None:
            progress(done, source.count, name)
    result.seconds = time.perf_counter() - started
    log.info("auto_annotate: %s", result.describe())
    return result


# ----------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class _Labels:
    kept: tuple[Detection, ...]
    lines: list[str]


def _annotate_image(
    detector: Detector, predictor: Any, image: np.ndarray, phrases: list[str], conf: float,
    text_threshold: float | None, iou: float, max_det: int,
) -> _Labels:  # fmt: skip
    from annotation.datasets import instance_polygon, yolo_line

    found = detector.detect(image, phrases, box_threshold=conf, text_threshold=text_threshold)
    kept = suppress(found, iou, max_det)
    if not kept:
        return _Labels((), [])
    size = image.shape[:2]
    lines = []
    for kept_box, mask in zip(kept, box_masks(predictor, image, [d.box for d in kept]), strict=True):
        polygon = instance_polygon(mask)
        if polygon is not None:
            lines.append(yolo_line(phrases.index(kept_box.phrase), polygon, size))
    return _Labels(tuple(kept), lines)


def box_masks(predictor: Any, image: np.ndarray, boxes: Sequence[Box]) -> Iterator[np.ndarray]:
    """SAM 2's mask (HxW bool at the image's size) for each box (x0, y0, x1, y1 in its pixels),
    one mask per box (``multimask_output=False``, as a box prompt asks), BOXES_PER_CALL boxes
    per predictor call."""
    predictor.set_image(image)
    height, width = image.shape[:2]
    for start in range(0, len(boxes), BOXES_PER_CALL):
        batch = np.asarray(boxes[start : start + BOXES_PER_CALL], np.float32)
        masks, _, _ = predictor.predict(box=batch, multimask_output=False)
        yield from (mask > 0.5 for mask in masks.reshape(-1, height, width))


def suppress(found: Sequence[Detection], iou: float, max_det: int) -> list[Detection]:
    """Greedy non-maximum suppression per class: best first, a box goes when it overlaps a kept
    box of the same phrase by an IoU above ``iou``; then the best ``max_det``. Best first out."""
    ordered = sorted(found, key=lambda d: -d.score)
    kept: list[Detection] = []
    for candidate in ordered:
        if all(other.phrase != candidate.phrase or box_iou(other.box, candidate.box) <= iou for other in kept):
            kept.append(candidate)
    return kept[:max_det]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ----------------------------------------------------------------------------- what to read


@dataclass
class _Source:
    """The images of ``data``: image files (read one at a time) or a video's decoded frames."""

    path: Path
    files: tuple[Path, ...] = ()
    frames: list[np.ndarray | None] | None = None  # a video's

    @property
    def count(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.files)

    def images_dir(self, out: Path) -> Path:
        if self.frames is not None:
            return out
        return self.path if self.path.is_dir() else self.path.parent

    def items(self) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
        """(name, how to get the image: HxWx3 uint8, or AutoAnnotateError when it cannot be
        read) per image, in order; an image is read only when asked for, a video's frame let
        go once handed out."""
        if self.frames is None:
            for path in self.files:
                yield path.name, functools.partial(read_image, path)
            return
        from annotation.formats import file_stem

        stem = file_stem(self.path.name)
        for index, frame in enumerate(self.frames):
            assert frame is not None
            self.frames[index] = None
            yield f"{stem}_{index:05d}.jpg", functools.partial(_same, frame)


def _same(frame: np.ndarray) -> np.ndarray:
    return frame


def _source(data: Path) -> _Source:
    if not data.exists():
        raise AutoAnnotateError(f"There is no folder or file {data}. Give a folder of images, an image or a video.")
    if data.is_dir():
        files = sorted((p for p in data.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES),
                       key=lambda p: _natural_key(p.name))  # fmt: skip
        if not files:
            suffixes = ", ".join(s.lstrip(".") for s in _IMAGE_SUFFIXES)
            raise AutoAnnotateError(f"The folder {data} holds no images ({suffixes}); subfolders are not read.")
        stems: dict[str, str] = {}
        for path in files:
            if path.stem in stems:
                raise AutoAnnotateError(f"The images {stems[path.stem]} and {path.name} in {data} would both be "
                                        f"labelled {path.stem}.txt. Rename one.")
            stems[path.stem] = path.name
        return _Source(data, tuple(files))
    if data.suffix.lower() in _IMAGE_SUFFIXES:
        return _Source(data, (data,))
    from sam2.video_io import MediaError, MediaLimits, decode

    try:
        decoded = decode(data, MediaLimits(advice="split the video, or label its frames as images"), keep_audio=False)
    except MediaError as error:
        raise AutoAnnotateError(f"{data} is neither a folder of images nor a video that can be read: {error}") from None
    return _Source(data, frames=list(decoded.frames))


def read_image(path: Path) -> np.ndarray:
    """An image file -> HxWx3 uint8 RGB, upright by its EXIF orientation (as YOLO trainers and
    supervision read label sizes), at its own size."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise AutoAnnotateError(f"{path.name} is animated; give it as a video, not in a folder of images.")
            return np.array(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise AutoAnnotateError(f"{path.name} is not a readable image ({error}); it was skipped.") from None


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    import re

    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", name) if part]


# ----------------------------------------------------------------------------- checks


def _phrases(classes: Sequence[str] | str | None) -> list[str]:
    if classes is None:
        raise AutoAnnotateError("Say what to find: classes=['person', 'car'] (the detector finds phrases, "
                                "and class i of the labels is the i-th phrase).")
    try:
        return parse_phrases(classes) if isinstance(classes, str) else clean_phrases(list(classes))
    except TypeError:
        raise AutoAnnotateError("Give classes as a list of phrases, for example ['person', 'car'].") from None
    except UserError as error:
        raise AutoAnnotateError(str(error)) from None


def _threshold(value: Any, name: str) -> float:
    try:
        return check_threshold(value, name)
    except UserError as error:
        raise AutoAnnotateError(str(error)) from None


def _max_det(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise AutoAnnotateError(f"max_det (the most boxes kept per image) must be a whole number of at least 1 "
                                f"(it is {value!r:.40}).")
    return int(value)


def _image_size(value: Any) -> int:
    from sam2.config import SUPPORTED_IMAGE_SIZES

    if isinstance(value, bool) or value not in SUPPORTED_IMAGE_SIZES:
        sizes = ", ".join(map(str, SUPPORTED_IMAGE_SIZES))
        raise AutoAnnotateError(f"imgsz (SAM 2's input size) must be one of {sizes} (it is {value!r:.40}).")
    return int(value)


def _kernels(value: Any) -> str:
    from annotation.options import KERNEL_POLICIES

    if value not in KERNEL_POLICIES:
        raise AutoAnnotateError(f"kernels must be one of {', '.join(KERNEL_POLICIES)} (it is {value!r:.40}).")
    return str(value)


def _output_dir(data: Path, output_dir: str | Path | None) -> Path:
    out = Path(output_dir) if output_dir else data.parent / f"{data.stem}_auto_annotate_labels"
    if out.exists() and not out.is_dir():
        raise AutoAnnotateError(f"The output folder {out} is a file. Give a folder for the label files "
                                "(it is made when missing).")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise AutoAnnotateError(f"The output folder {out} cannot be made: {parent} is a file.")
    return out


# ----------------------------------------------------------------------------- the models


def _device(device: str) -> str:
    """The device to run on; "" (Ultralytics' default) picks a CUDA GPU when there is one."""
    if device != "":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _precision(precision: str, device: str) -> str:
    """"auto" decided for the device (the app's rule); refused in words for a device torch
    does not know or this computer does not have."""
    import torch

    from annotation.options import PRECISIONS, resolve_precision

    if precision not in PRECISIONS:
        raise AutoAnnotateError(f"precision must be one of {', '.join(PRECISIONS)} (it is {precision!r:.40}).")
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError) as error:  # torch's words for a device it does not know
        raise AutoAnnotateError(f"The device {device!r:.40} is not one torch knows ({error}); use 'cpu' or 'cuda'.") \
            from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise AutoAnnotateError(f"The device {device!r} is a CUDA GPU, and torch sees none on this computer. "
                                "Use device='cpu'.")
    return resolve_precision(precision, device)


def _detector(det_model: str | Path | Detector, device: str, precision: str) -> Detector:
    from annotation.detect import Detector

    if isinstance(det_model, Detector):
        return det_model
    spec = DetectorSpec(str(det_model), device=device, precision=precision)
    return Detector.load(spec)


def _predictor(
    sam_model: str | Path, imgsz: int, device: str, precision: str, kernels: str, checkpoint_dir: str | Path | None
) -> Any:
    import sam2
    from sam2.config import resolve_variant

    path = Path(sam_model).expanduser()
    if path.is_file():
        variant, checkpoint = None, path
    else:
        try:
            variant = resolve_variant(str(sam_model))
        except ValueError:
            raise AutoAnnotateError(f"sam_model {str(sam_model)!r:.80} is neither a checkpoint file nor a SAM 2 "
                                    "variant (such as sam2.1_hiera_tiny).") from None
        from checkpoints import DEFAULT_DIRECTORY
        from checkpoints.download import ensure_checkpoint

        checkpoint = ensure_checkpoint(variant, Path(checkpoint_dir) if checkpoint_dir else DEFAULT_DIRECTORY)
    return sam2.build_image_predictor(variant, str(checkpoint), image_size=imgsz, device=device, kernels=kernels,
                                      precision=precision)  # fmt: skip


# ----------------------------------------------------------------------------- files


def _data_yaml(names: Sequence[str], images: Path) -> str:
    """Ultralytics' layout, names quoted as the page's YOLO export quotes them. The images stay
    where they are: ``path`` is their folder, train and val both that folder."""
    from annotation.datasets import _yaml_string

    lines = [
        "# YOLO segmentation labels written by annotation.auto_annotate: one <image>.txt per image in this folder.",
        "# Trainers look for an image's labels beside it or in a labels/ folder beside its images/ folder.",
        f"path: {_yaml_string(str(images.resolve()))}",
        "train: .",
        "val: .",
        f"nc: {len(names)}",
        "names:",
        *(f"  {index}: {_yaml_string(name)}" for index, name in enumerate(names)),
    ]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    from annotation.formats import writing

    with writing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def _write_jpeg(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    from annotation.formats import writing

    with writing(path) as partial:
        Image.fromarray(frame).save(partial, format="JPEG", quality=JPEG_QUALITY)
