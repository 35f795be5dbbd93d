"""Reading annotations made elsewhere, to start from them: masks (a PNG zip, COCO, YouTube-VIS)
and a detector's boxes (COCO detection results, YOLO txt). Each becomes prompts on its frames
(:func:`annotation.operations.apply_import`): a mask is that object's mask prompt, a box a box
prompt, and tracking goes on from them.

Everything is checked against the video before anything is used: the frame size, the frame
numbers, the object ids (1..255) and the number of objects; a problem is an :class:`ImportProblem`
naming the file and what is wrong, and nothing changes.

Frames are found by, in order: (an image set) the image's file name or its mask's (``a.jpg``,
``a.png``), a ``frame_index`` field, a number at the end of the image's file name
(``walk_00012.jpg``, ``00012.png``), or (COCO) the image id minus 1, as this project's COCO
files number them. An image set's masks and boxes are checked against each image's own size.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from annotation.formats import MAX_OBJECT_ID, ImageFrames, clean_name

MAX_IMPORT_BYTES = 512 * 2**20  # an uncompressed zip member or JSON file larger than this is refused
_NUMBER_AT_END = re.compile(r"(\d+)(?=\.[A-Za-z0-9]+$|$)")


class ImportProblem(ValueError):
    """A file that cannot be imported, worded for the user."""


@dataclass(frozen=True)
class MaskPrompt:
    frame: int
    obj_id: int
    mask: np.ndarray  # HxW bool, the video's size


@dataclass(frozen=True)
class BoxPrompt:
    frame: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the video's pixels
    label: str | None = None
    score: float | None = None


@dataclass
class Imported:
    """What a file gives: mask prompts by object id, or box prompts that become new objects;
    ``labels`` maps an object id (masks) to its class where the file names one."""

    source: str
    masks: list[MaskPrompt] = field(default_factory=list)
    boxes: list[BoxPrompt] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # object id -> its name, where the file has one

    @property
    def objects(self) -> list[int]:
        return sorted({m.obj_id for m in self.masks})


@dataclass(frozen=True)
class VideoShape:
    """The video an import must fit: its frame count and frame size (frame 0's); an image
    set's frames have their own ``sizes`` ((H, W) each) and ``names`` (its files')."""

    frames: int
    height: int
    width: int
    sizes: tuple[tuple[int, int], ...] = ()
    names: tuple[str, ...] = ()

    def frame_size(self, frame: int) -> tuple[int, int]:
        """(H, W) of one frame."""
        return self.sizes[frame] if 0 <= frame < len(self.sizes) else (self.height, self.width)

    def frame_of_file(self, name: str) -> int | None:
        """An image set's frame whose image (``a.jpg``) or mask (``a.png``, as exported) is
        called ``name``; None for a video or another name."""
        if not self.names:
            return None
        masks = ImageFrames(self.names, self.sizes or ((self.height, self.width),) * len(self.names)).mask_names()
        found = {**{m: i for i, m in enumerate(masks)}, **{n: i for i, n in enumerate(self.names)}}
        return found.get(name)

    def size_text(self, frame: int) -> str:
        """'the video is 64x48' or "image 'a.jpg' is 200x300", for messages."""
        height, width = self.frame_size(frame)
        if self.names and 0 <= frame < len(self.names):
            return f"image '{self.names[frame]}' is {width}x{height}"
        return f"the video is {width}x{height}"


# ----------------------------------------------------------------------------- shared checks


def _problem(source: str, text: str) -> ImportProblem:
    return ImportProblem(f"'{source}' cannot be imported: {text}.")


def _read_json(path: Path) -> object:
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise _problem(path.name, f"it is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problem(path.name, f"it is not valid JSON ({exc})") from None
    except RecursionError:
        raise _problem(path.name, "its JSON is nested too deeply") from None


def _frame_of_name(name: str) -> int | None:
    found = _NUMBER_AT_END.search(Path(name).name)
    return int(found[1]) if found else None


def _check_frame(source: str, frame: int, video: VideoShape, what: str) -> int:
    if not 0 <= frame < video.frames:
        raise _problem(source, f"{what} is frame {frame}, but the video has frames 0 to {video.frames - 1}")
    return frame


def _check_object(source: str, obj_id: object, what: str) -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, int) or not 1 <= obj_id <= MAX_OBJECT_ID:
        raise _problem(source, f"{what} has object id {str(obj_id)[:20]}; ids must be whole numbers 1..{MAX_OBJECT_ID}")
    return obj_id


def _check_count(imported: Imported) -> Imported:
    objects = len(imported.objects) + len(imported.boxes)
    if objects > MAX_OBJECT_ID:
        raise _problem(imported.source, f"it holds {objects} objects; a video can have at most {MAX_OBJECT_ID}")
    if not imported.masks and not imported.boxes:
        raise _problem(imported.source, "it holds no mask or box for this video")
    return imported


# ----------------------------------------------------------------------------- masks


def read_png_masks(path: Path, video: VideoShape) -> Imported:
    """A zip of indexed or greyscale PNGs, one per frame (``00012.png`` or ``walk_00012.png``),
    pixel = object id (0 = background; DAVIS and this project's PNG export). Names come from an
    ``objects.json`` in the zip, if there is one."""
    source = Path(path).name
    imported = Imported(source)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _problem(source, f"it is not a zip file ({exc})") from None
    with archive:
        for info in archive.infolist():
            if info.filename.endswith("objects.json"):
                imported.names = _zip_names(archive, info, source)
                continue
            if not info.filename.lower().endswith(".png"):
                continue
            frame = video.frame_of_file(info.filename)
            frame = _frame_of_name(info.filename) if frame is None else frame
            if frame is None:
                raise _problem(source, f"'{info.filename}' has no frame number in its name")
            _check_frame(source, frame, video, f"'{info.filename}'")
            for obj_id, mask in _png_objects(archive, info, video, frame, source).items():
                imported.masks.append(MaskPrompt(frame, obj_id, mask))
    return _check_count(imported)


def _png_objects(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, video: VideoShape, frame: int, source: str
) -> dict[int, np.ndarray]:
    if info.file_size > MAX_IMPORT_BYTES:
        raise _problem(source, f"'{info.filename}' is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    try:
        with Image.open(io.BytesIO(archive.read(info))) as image:
            if image.mode not in ("P", "L"):
                raise _problem(source, f"'{info.filename}' is a {image.mode} picture, not a mask of object ids")
            values = np.array(image)
    except (OSError, zipfile.BadZipFile, Image.DecompressionBombError) as exc:
        raise _problem(source, f"'{info.filename}' is not a readable PNG ({exc})") from None
    if values.shape != video.frame_size(frame):
        raise _problem(source, f"'{info.filename}' is {values.shape[1]}x{values.shape[0]}, "
                               f"but {video.size_text(frame)}")  # fmt: skip
    return {_check_object(source, int(v), f"'{info.filename}'"): values == v for v in np.unique(values) if v}


def _zip_names(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> dict[int, str]:
    try:
        raw = json.loads(archive.read(info))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise _problem(source, "its objects.json is not valid JSON") from None
    if not isinstance(raw, dict):
        return {}
    return {int(k): clean_name(str(v)) for k, v in raw.items() if str(k).isdigit() and clean_name(str(v))}


def read_coco_masks(path: Path, video: VideoShape) -> Imported:
    """COCO instance segmentation (RLE, compressed or not, or polygons). The object is the
    annotation's ``track_id`` / ``instance_id`` where it has one, else one object per
    annotation; its class is its category's name."""
    from pycocotools import mask as mask_utils

    source = Path(path).name
    document = _read_json(Path(path))
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise _problem(source, "it is not a COCO file (no 'annotations' list)")
    frames = _coco_frames(document, video, source)
    categories = _category_names(document)
    imported = Imported(source)
    for number, annotation in enumerate(document["annotations"]):
        what = f"annotations[{number}]"
        if not isinstance(annotation, dict) or "segmentation" not in annotation:
            raise _problem(source, f"{what} has no segmentation")
        frame = frames.get(annotation.get("image_id"))
        if frame is None:
            image = str(annotation.get("image_id"))[:20]
            raise _problem(source, f"{what} is on image {image}, which 'images' does not list")
        instance = next((annotation[k] for k in ("track_id", "instance_id") if k in annotation), number + 1)
        obj_id = _check_object(source, instance, what)
        mask = _decode_segmentation(mask_utils, annotation["segmentation"], video.frame_size(frame), source, what)
        imported.masks.append(MaskPrompt(frame, obj_id, mask))
        if annotation.get("category_id") in categories:
            imported.labels[obj_id] = categories[annotation["category_id"]]
    return _check_count(imported)


def _coco_frames(document: dict, video: VideoShape, source: str) -> dict[object, int]:
    images = document.get("images")
    if not isinstance(images, list):
        raise _problem(source, "it has no 'images' list")
    frames = {}
    for number, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise _problem(source, f"images[{number}] has no id")
        frame = _coco_frame(image, video)
        if frame is None:
            raise _problem(source, f"images[{number}] says no frame (no frame_index, no number in its file name)")
        _check_frame(source, frame, video, f"images[{number}]")
        if (image.get("height"), image.get("width")) != video.frame_size(frame):
            raise _problem(source, f"images[{number}] is {image.get('width')}x{image.get('height')}, "
                                   f"but {video.size_text(frame)}")  # fmt: skip
        frames[image["id"]] = frame
    return frames


def _coco_frame(image: dict, video: VideoShape) -> int | None:
    """An image entry's frame: its file among an image set's, its frame_index, the number
    its file name ends in, or its id - 1."""
    frame = video.frame_of_file(str(image.get("file_name", "")))
    if frame is None:
        frame = image.get("frame_index")
    if not isinstance(frame, int):
        frame = _frame_of_name(str(image.get("file_name", "")))
    if frame is None:
        frame = image["id"] - 1 if isinstance(image["id"], int) else None
    return frame


def _category_names(document: dict) -> dict[object, str]:
    found = {}
    for category in document.get("categories") or []:
        if isinstance(category, dict) and "id" in category and clean_name(str(category.get("name", ""))):
            found[category["id"]] = clean_name(str(category["name"]))
    return found


def _decode_segmentation(
    mask_utils, segmentation: object, size: tuple[int, int], source: str, what: str
) -> np.ndarray:
    """HxW bool from compressed RLE, uncompressed RLE or polygons, checked for the frame's size (H, W)."""
    h, w = size
    try:
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation, dict) and list(segmentation.get("size", [])) == [h, w]:
            counts = segmentation["counts"]
            if isinstance(counts, list):
                rle = mask_utils.frPyObjects(segmentation, h, w)
            else:
                rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            size = segmentation.get("size") if isinstance(segmentation, dict) else None
            raise _problem(source, f"{what} has a mask of size {str(size)[:30]}, but the video is {h}x{w} (h x w)")
        mask = mask_utils.decode(rle)
    except ImportProblem:
        raise
    except Exception as exc:  # pycocotools' C code raises whatever its parser meets
        raise _problem(source, f"{what} has a segmentation that cannot be decoded ({type(exc).__name__})") from None
    return np.asarray(mask, bool).reshape(h, w)


def read_ytvis_masks(path: Path, video: VideoShape) -> Imported:
    """YouTube-VIS: one video, one annotation per object with a segmentation per frame (null
    where absent). The object is ``instance_id`` where there is one, else its place."""
    from pycocotools import mask as mask_utils

    source = Path(path).name
    document = _read_json(Path(path))
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise _problem(source, "it is not a YouTube-VIS file (no 'annotations' list)")
    videos = document.get("videos") or []
    if len(videos) != 1 or not isinstance(videos[0], dict):
        raise _problem(source, f"it describes {len(videos)} videos; import a file of one video")
    if len(set(video.sizes)) > 1:
        raise _problem(source, "YouTube-VIS holds one frame size per video, but these images differ in size")
    if (videos[0].get("height"), videos[0].get("width")) != (video.height, video.width):
        raise _problem(source, f"its video is {videos[0].get('width')}x{videos[0].get('height')}, "
                               f"but this one is {video.width}x{video.height}")  # fmt: skip
    categories = _category_names(document)
    imported = Imported(source)
    for number, annotation in enumerate(document["annotations"]):
        what = f"annotations[{number}]"
        segmentations = annotation.get("segmentations") if isinstance(annotation, dict) else None
        if not isinstance(segmentations, list):
            raise _problem(source, f"{what} has no 'segmentations' list")
        if len(segmentations) > video.frames:
            raise _problem(source, f"{what} has {len(segmentations)} frames, but the video has {video.frames}")
        obj_id = _check_object(source, annotation.get("instance_id", number + 1), what)
        for frame, segmentation in enumerate(segmentations):
            if segmentation is not None:
                size = video.frame_size(frame)
                mask = _decode_segmentation(mask_utils, segmentation, size, source, f"{what}, frame {frame}")
                imported.masks.append(MaskPrompt(frame, obj_id, mask))
        if annotation.get("category_id") in categories:
            imported.labels[obj_id] = categories[annotation["category_id"]]
    return _check_count(imported)


# ----------------------------------------------------------------------------- boxes


def read_coco_detections(
    path: Path, video: VideoShape, min_score: float = 0.0, names: list[str] | None = None
) -> Imported:
    """A detector's COCO results: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"}`` (or a COCO file whose annotations have boxes). Image ids are frames + 1 (this
    project's COCO numbering) unless the file lists its images. Boxes scoring below
    ``min_score`` are left out. A box's class is the file's category name; else, with
    ``names`` (a class list), category id ``i`` is ``names[i - 1]`` (ids counted from 1, as
    COCO does and this project's exports do); else "class <id>"."""
    source = Path(path).name
    document = _read_json(Path(path))
    results = document.get("annotations") if isinstance(document, dict) else document
    if not isinstance(results, list):
        raise _problem(source, "it is not a list of detections")
    frames = _coco_frames(document, video, source) if isinstance(document, dict) and "images" in document else None
    categories = _category_names(document) if isinstance(document, dict) else {}
    imported = Imported(source)
    for number, result in enumerate(results):
        what = f"detection {number}"
        if not isinstance(result, dict):
            raise _problem(source, f"{what} is not an object")
        score = _finite(result.get("score", 1.0), source, f"{what}'s score")
        if score < min_score:
            continue
        image_id = result.get("image_id")
        frame = frames.get(image_id) if frames is not None else (image_id - 1 if isinstance(image_id, int) else None)
        if frame is None:
            raise _problem(source, f"{what} is on image {str(image_id)[:20]}, which is not a frame of this video")
        _check_frame(source, frame, video, what)
        x, y, w, h = _box_numbers(result.get("bbox"), source, what)
        label = _detection_label(result.get("category_id"), categories, names)
        box = _inside((x, y, x + w, y + h), video.frame_size(frame), source, what)
        imported.boxes.append(BoxPrompt(frame, box, label, score))
    return _check_count(imported)


def _detection_label(category: object, categories: dict[object, str], names: list[str] | None) -> str:
    if category in categories:
        return categories[category]
    if names and isinstance(category, int) and not isinstance(category, bool) and 1 <= category <= len(names):
        return names[category - 1]
    return f"class {str(category)[:20]}"


def read_yolo_boxes(path: Path, video: VideoShape, frame: int, names: list[str] | None = None) -> Imported:
    """YOLO detection labels: one ``.txt`` (for ``frame``) or a zip of them (frames from their
    names), lines ``class cx cy w h [conf]`` divided by the width and height. Class ``i`` is
    ``names[i]`` (e.g. the labels of a data.yaml), else "class i"."""
    source = Path(path).name
    imported = Imported(source)
    texts: list[tuple[int, str, str]] = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".txt") and not info.filename.endswith("classes.txt"):
                    number = _frame_of_name(info.filename)
                    if number is None:
                        raise _problem(source, f"'{info.filename}' has no frame number in its name")
                    texts.append((number, info.filename, _member_text(archive, info, source)))
    else:
        if Path(path).stat().st_size > MAX_IMPORT_BYTES:
            raise _problem(source, f"it is larger than {MAX_IMPORT_BYTES // 2**20} MB")
        try:
            texts.append((frame, source, Path(path).read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            raise _problem(source, "it is not a text file") from None
    for number, name, text in texts:
        _check_frame(source, number, video, f"'{name}'")
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                imported.boxes.append(_yolo_box(line, number, video, names, source, f"{name}, line {line_number}"))
    return _check_count(imported)


def _member_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> str:
    if info.file_size > MAX_IMPORT_BYTES:
        raise _problem(source, f"'{info.filename}' is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    try:
        return archive.read(info).decode("utf-8")
    except (UnicodeDecodeError, zipfile.BadZipFile, OSError):
        raise _problem(source, f"'{info.filename}' is not a readable text file") from None


def _yolo_box(line: str, frame: int, video: VideoShape, names: list[str] | None, source: str, what: str) -> BoxPrompt:
    parts = line.split()
    if len(parts) not in (5, 6) or not parts[0].isdigit():
        raise _problem(source, f"{what} is not 'class cx cy w h [conf]'")
    try:
        cx, cy, w, h, *conf = (float(v) for v in parts[1:])
    except ValueError:
        raise _problem(source, f"{what} has a value that is not a number") from None
    if not all(np.isfinite([cx, cy, w, h, *conf])) or not all(0 <= v <= 1 for v in (cx, cy, w, h)):
        raise _problem(source, f"{what} has values outside 0..1 (YOLO boxes are divided by the image size)")
    index = int(parts[0])
    label = names[index] if names is not None and index < len(names) else f"class {index}"
    height, width = video.frame_size(frame)  # an image set's: YOLO divides by each image's own size
    x0, x1 = (cx - w / 2) * width, (cx + w / 2) * width
    y0, y1 = (cy - h / 2) * height, (cy + h / 2) * height
    box = (x0, y0, x1, y1)
    return BoxPrompt(frame, _inside(box, (height, width), source, what), label, conf[0] if conf else None)


def _finite(value: object, source: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise _problem(source, f"{what} is not a number")
    return float(value)


def _box_numbers(value: object, source: str, what: str) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4:
        raise _problem(source, f"{what} has no bbox [x, y, width, height]")
    x, y, w, h = (_finite(v, source, f"{what}'s bbox") for v in value)
    if w <= 0 or h <= 0:
        raise _problem(source, f"{what} has a bbox of zero or negative size")
    return x, y, w, h


def _inside(box: tuple[float, float, float, float], size: tuple[int, int], source: str, what: str):
    """The box clipped to the frame of ``size`` (H, W) (detectors overshoot the edge a little);
    refused when it lies outside the frame altogether."""
    height, width = size
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[2]), min(float(height), box[3])
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise _problem(source, f"{what} lies outside the {width}x{height} frame")
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------- any file


def read_any(path: Path, video: VideoShape, frame: int = 0, min_score: float = 0.0,
             names: list[str] | None = None) -> Imported:  # fmt: skip
    """Whichever of the formats above ``path`` holds, told by its content: a zip of PNGs
    (masks) or of txt files (YOLO boxes), a YOLO ``.txt`` (boxes on ``frame``), a JSON list
    (COCO detection results), or a JSON object with ``videos`` (YouTube-VIS) or ``images``
    (COCO: masks where it has segmentations, else boxes)."""
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise _problem(source, "there is no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [n.lower() for n in archive.namelist()]
        if any(n.endswith(".png") for n in members):
            return read_png_masks(path, video)
        return read_yolo_boxes(path, video, frame, names)
    if path.suffix.lower() == ".zip":  # named a zip, but not one: say so (not "it is not valid JSON")
        raise _problem(source, "it is not a zip file (it may be damaged or cut short)")
    if path.suffix.lower() == ".txt":
        return read_yolo_boxes(path, video, frame, names)
    document = _read_json(path)
    if isinstance(document, list):
        return read_coco_detections(path, video, min_score, names)
    if isinstance(document, dict) and "videos" in document:
        return read_ytvis_masks(path, video)
    if isinstance(document, dict) and "images" in document:
        annotations = document.get("annotations") or []
        if annotations and all(isinstance(a, dict) and "segmentation" in a for a in annotations):
            return read_coco_masks(path, video)
        return read_coco_detections(path, video, min_score, names)
    raise _problem(source, "it is none of: a PNG mask zip, COCO, YouTube-VIS, COCO detections, YOLO labels")
