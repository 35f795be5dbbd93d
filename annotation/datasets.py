"""Training and evaluation datasets from a video's masks, by class: COCO instance segmentation,
YouTube-VIS, a YOLO segmentation dataset, semantic PNG masks and MOT box tracks.

Every object is an instance of a class (its label). Classes are numbered by their place in
the label list: YOLO class ``i`` (0-based, as YOLO counts), COCO / YouTube-VIS category and
semantic pixel value ``i + 1`` (0 stays background and COCO ids start at 1). Instance ids are
the object ids, the same in every format and in the instance PNG masks.

Frames are named after the video: ``walk_00000.jpg``... wherever a format names images, so a
dataset of several videos can be merged without clashes. An image set's frames keep their own
names and sizes (``Annotations.images``): COCO's ``file_name`` is the image's name, its width
and height the image's, and PNG masks and YOLO labels are named after the images.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from annotation.formats import ImageFrames, MaskTrack, Tick, file_stem, tick_frame, writing
from annotation.render import PALETTE, label_map

JPEG_QUALITY = 95


@dataclass(frozen=True)
class Annotations:
    """What the dataset exports read.

    name: the video's file name (files and frames are named after it).
    frames: N frames, HxWx3 uint8 (read only by exports that include the images).
    masks: frame -> object id -> HxW bool; frames and objects without an entry are empty.
    objects: object id -> its class label, in the user's order (later objects win where
        single-label formats have to choose).
    labels: the class list; every object's label is in it.
    size: (H, W) of a video's frames; images: an image set's names and per-frame sizes
        (frames of different sizes), which then name and size each frame.
    """

    name: str
    frames: Sequence[np.ndarray]
    masks: MaskTrack
    objects: Mapping[int, str]
    labels: Sequence[str]
    size: tuple[int, int]  # (H, W)
    fps: float
    images: ImageFrames | None = None

    def __post_init__(self) -> None:
        missing = sorted({label for label in self.objects.values() if label not in self.labels})
        if missing:
            raise ValueError(f"objects have labels that are not in the label list: {missing}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("the label list names a class twice")

    @property
    def stem(self) -> str:
        return file_stem(self.name)

    @property
    def count(self) -> int:
        return len(self.frames)

    def frame_file(self, frame: int) -> str:
        """The frame's image file in datasets: the image's own name, or ``walk_00000.jpg``."""
        return self.images.names[frame] if self.images is not None else f"{self.stem}_{frame:05d}.jpg"

    def frame_size(self, frame: int) -> tuple[int, int]:
        """(H, W) of one frame."""
        return self.images.sizes[frame] if self.images is not None else self.size

    def frame_bytes(self, frame: int) -> bytes:
        """The frame as its file: an image set's in its name's format, a video's as JPEG."""
        return _encoded(self.frames[frame], self.frame_file(frame))

    def class_index(self, obj_id: int) -> int:
        """0-based class of an object (YOLO's numbering; COCO's category id is this + 1)."""
        return list(self.labels).index(self.objects[obj_id])

    def frame_masks(self, frame: int) -> dict[int, np.ndarray]:
        """The listed objects' non-empty masks on ``frame``, in the objects' order."""
        per_frame = self.masks.get(frame, {})
        found = {obj: np.asarray(per_frame[obj], bool) for obj in self.objects if obj in per_frame}
        return {obj: mask for obj, mask in found.items() if mask.any()}


def _encoded(frame: np.ndarray, name: str) -> bytes:
    """HxWx3 uint8 -> the bytes of a file called ``name`` (JPEG, PNG, BMP, WebP or TIFF by its suffix)."""
    image_format = Image.registered_extensions().get(Path(name).suffix.lower(), "JPEG")
    options = {"quality": JPEG_QUALITY} if image_format in ("JPEG", "WEBP") else {}
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _rle(mask: np.ndarray) -> dict:
    """Compressed RLE as COCO JSON stores it (counts as a string)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """RLE with counts as a list of run lengths (column-major, starting with a run of zeros),
    as the YouTube-VIS files store it."""
    flat = np.asfortranarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


def _area_and_box(mask: np.ndarray) -> tuple[int, list[float]]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return int(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]


def _categories(data: Annotations) -> list[dict]:
    return [{"id": i + 1, "name": label, "supercategory": "object"} for i, label in enumerate(data.labels)]


def _info(data: Annotations, what: str) -> dict:
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {"description": f"{what} of {data.name}, annotated with SAM 2", "version": "1.0", "date_created": created}


# ----------------------------------------------------------------------------- COCO


def coco_document(data: Annotations, tick: Tick | None = None) -> dict:
    """COCO instance segmentation: one image per frame, one annotation per object and frame
    where it has a mask; ``iscrowd`` 0 (each is one instance, so evaluators and trainers use
    it), compressed RLE, area, bbox [x, y, w, h], ``track_id``/``instance_id`` = object id."""
    images = [
        {"id": f + 1, "file_name": data.frame_file(f), "frame_index": f, "width": data.frame_size(f)[1],
         "height": data.frame_size(f)[0], "video": data.name}
        for f in range(data.count)
    ]  # fmt: skip
    annotations = []
    for frame in range(data.count):
        tick_frame(tick)
        for obj, mask in data.frame_masks(frame).items():
            area, bbox = _area_and_box(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": frame + 1, "category_id": data.class_index(obj) + 1,
                "segmentation": _rle(mask), "area": area, "bbox": bbox, "iscrowd": 0,
                "track_id": obj, "instance_id": obj,
            })  # fmt: skip
    return {
        "info": _info(data, "Instance masks"), "licenses": [], "images": images,
        "categories": _categories(data), "annotations": annotations,
    }  # fmt: skip


def export_coco(data: Annotations, out_dir: Path, with_images: bool = False, tick: Tick | None = None) -> Path:
    """``<video>_coco.json``; with_images: ``<video>_coco.zip`` holding ``annotations.json``
    and the frames as ``images/<video>_00000.jpg``..., a complete dataset (``tick`` is then
    called twice per frame: for its masks, and for its image)."""
    document = json.dumps(coco_document(data, tick))
    if not with_images:
        path = Path(out_dir) / f"{data.stem}_coco.json"
        with writing(path) as partial:
            partial.write_text(document)
        return path
    path = Path(out_dir) / f"{data.stem}_coco.zip"
    with writing(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("annotations.json", document)
        for frame in range(data.count):
            tick_frame(tick)
            archive.writestr(f"images/{data.frame_file(frame)}", data.frame_bytes(frame))
    return path


# ----------------------------------------------------------------------------- YouTube-VIS


def ytvis_document(data: Annotations, tick: Tick | None = None) -> dict:
    """YouTube-VIS (2019 and 2021 use this layout): one video, one annotation per object with
    a segmentation (uncompressed RLE, as the dataset's files have it), area and box per frame,
    null where the object is absent. It holds one size per video: images of different sizes
    are refused (ValueError)."""
    if data.images is not None and not data.images.uniform:
        raise ValueError("YouTube-VIS holds one frame size per video; these images differ in size")
    height, width = data.frame_size(0)
    names = data.images.names if data.images is not None else [f"{frame:05d}.jpg" for frame in range(data.count)]
    video = {
        "id": 1, "width": width, "height": height, "length": data.count,
        "file_names": [f"{data.stem}/{name}" for name in names],
    }  # fmt: skip
    tracks: dict[int, tuple[list, list, list]] = {obj: ([], [], []) for obj in data.objects}
    for frame in range(data.count):  # frame by frame (each frame's masks made once), the tick between frames
        tick_frame(tick)
        masks = data.frame_masks(frame)
        for obj, (segmentations, areas, boxes) in tracks.items():
            mask = masks.get(obj)
            if mask is None:
                segmentations.append(None), areas.append(None), boxes.append(None)
                continue
            area, bbox = _area_and_box(mask)
            segmentations.append(_uncompressed_rle(mask)), areas.append(area), boxes.append(bbox)
    annotations = []
    for obj, (segmentations, areas, boxes) in tracks.items():
        if any(s is not None for s in segmentations):
            annotations.append({
                "id": len(annotations) + 1, "video_id": 1, "category_id": data.class_index(obj) + 1, "iscrowd": 0,
                "width": width, "height": height, "length": 1, "segmentations": segmentations,
                "areas": areas, "bboxes": boxes, "instance_id": obj,
            })  # fmt: skip
    return {
        "info": _info(data, "Video instance masks"), "licenses": [], "categories": _categories(data),
        "videos": [video], "annotations": annotations,
    }  # fmt: skip


def export_ytvis(data: Annotations, out_dir: Path, tick: Tick | None = None) -> Path:
    path = Path(out_dir) / f"{data.stem}_ytvis.json"
    with writing(path) as partial:
        partial.write_text(json.dumps(ytvis_document(data, tick)))
    return path


# ----------------------------------------------------------------------------- YOLO


def export_yolo_dataset(data: Annotations, out_dir: Path, val_every: int = 0, tick: Tick | None = None) -> Path:
    """A YOLO segmentation dataset ready to train, zipped: ``images/{train,val}/``,
    ``labels/{train,val}/`` and ``data.yaml`` (names = the labels, class = label index).

    val_every: every k-th frame (frames k-1, 2k-1, ...) goes to val, the rest to train; 0
    puts every frame in train and lets val point at train (YOLO needs a val set). Each label
    line is ``class x1 y1 x2 y2 ...``: one object's outline (:func:`instance_polygon`) divided
    by the width and height; a frame without objects gets an empty label file (a background
    image).
    """
    if val_every < 0 or val_every == 1:
        raise ValueError("val_every must be 0 (no validation split) or at least 2")
    path = Path(out_dir) / f"{data.stem}_yolo.zip"
    with writing(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for frame in range(data.count):
            tick_frame(tick)
            split = "val" if val_every and (frame + 1) % val_every == 0 else "train"
            image = data.frame_file(frame)
            name = str(PurePosixPath(image).with_suffix(""))  # YOLO pairs images/x.jpg with labels/x.txt
            polygons = {obj: instance_polygon(mask) for obj, mask in data.frame_masks(frame).items()}
            size = data.frame_size(frame)
            lines = [yolo_line(data.class_index(obj), p, size) for obj, p in polygons.items() if p is not None]
            archive.writestr(f"labels/{split}/{name}.txt", "".join(line + "\n" for line in lines))
            archive.writestr(zipfile.ZipInfo(f"images/{split}/{image}"), data.frame_bytes(frame))
        archive.writestr("data.yaml", _data_yaml(data.labels, has_val=val_every > 0))
    return path


def instance_polygon(mask: np.ndarray) -> np.ndarray | None:
    """One polygon (K x 2 int (x, y) pixel centres) for a whole mask, or None for a speck.

    YOLO holds one polygon per instance, so a mask in several pieces, or with holes, is drawn
    as one outline: each further contour (a piece, or a hole, traced the other way round) is
    joined to the outline at its nearest point by a bridge walked there and back, which
    encloses nothing. Filled again, it gives the mask with its holes.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parts = sorted((c.reshape(-1, 2) for c in contours), key=len, reverse=True)
    if not parts or sum(len(p) for p in parts) < 3:
        return None
    outline, rest = parts[0], parts[1:]
    while rest:
        gaps = [np.linalg.norm(outline[:, None] - part[None], axis=2) for part in rest]
        k = min(range(len(rest)), key=lambda n: gaps[n].min())
        i, j = np.unravel_index(gaps[k].argmin(), gaps[k].shape)
        loop = np.roll(rest.pop(k), -j, axis=0)
        outline = np.concatenate([outline[: i + 1], loop, loop[:1], outline[i:]])
    return outline


def yolo_line(class_index: int, polygon: np.ndarray, size: tuple[int, int]) -> str:
    height, width = size
    normalised = polygon.astype(np.float64) / np.array([width, height])
    return " ".join([str(class_index), *(f"{v:.6f}" for v in normalised.reshape(-1))])


def _data_yaml(names: Sequence[str], has_val: bool) -> str:
    """Ultralytics' layout; names are JSON-quoted, which YAML reads as plain strings."""
    lines = [
        "# YOLO segmentation dataset exported from the SAM 2 video annotator.",
        "path: .",
        "train: images/train",
        f"val: images/{'val' if has_val else 'train'}",
        f"nc: {len(names)}",
        "names:",
        *(f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- semantic PNG


def export_semantic_png(data: Annotations, out_dir: Path, tick: Tick | None = None) -> Path:
    """``<video>_semantic.zip``: one indexed PNG per frame, pixel = class (label index + 1,
    0 = background), the DAVIS palette, and ``classes.json`` mapping values to labels. Where
    objects overlap, the one later in the object list wins, as in the instance masks."""
    path = Path(out_dir) / f"{data.stem}_semantic.zip"
    files = data.images.mask_names() if data.images is not None else [f"{f:05d}.png" for f in range(data.count)]
    with writing(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for frame in range(data.count):
            tick_frame(tick)
            instances = label_map(data.frame_size(frame), data.frame_masks(frame), order=list(data.objects))
            classes = np.zeros(data.frame_size(frame), np.uint8)
            for obj in np.unique(instances[instances > 0]):
                classes[instances == obj] = data.class_index(int(obj)) + 1
            archive.writestr(files[frame], indexed_png(classes))
        names = {"0": "background", **{str(i + 1): label for i, label in enumerate(data.labels)}}
        archive.writestr("classes.json", json.dumps(names, indent=1))
    return path


def indexed_png(values: np.ndarray) -> bytes:
    """HxW uint8 -> PNG bytes in "P" mode with the DAVIS palette (values unchanged)."""
    image = Image.fromarray(values)
    image.putpalette(PALETTE.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- MOT


def mot_rows(
    data: Annotations, tick: Tick | None = None
) -> Iterator[tuple[int, int, float, float, float, float, float, int]]:
    """(frame, id, x, y, w, h, conf, class) per object and frame with a mask: the mask's box,
    with frames and pixels counted from 1 as MOTChallenge files do, conf 1, class = label
    index + 1."""
    for frame in range(data.count):
        tick_frame(tick)
        for obj, mask in data.frame_masks(frame).items():
            _, (x, y, w, h) = _area_and_box(mask)
            yield frame + 1, obj, x + 1, y + 1, w, h, 1.0, data.class_index(obj) + 1


def export_mot(data: Annotations, out_dir: Path, tick: Tick | None = None) -> Path:
    """``<video>_mot.txt``: MOT-style box tracks, one ``frame,id,x,y,w,h,conf,class`` line each."""
    path = Path(out_dir) / f"{data.stem}_mot.txt"
    lines = [f"{f},{i},{x:g},{y:g},{w:g},{h:g},{c:g},{k}\n" for f, i, x, y, w, h, c, k in mot_rows(data, tick)]
    with writing(path) as partial:
        partial.write_text("".join(lines))
    return path
