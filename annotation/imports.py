"""Reading annotations made elsewhere, to start from them: masks (a PNG zip, COCO, YouTube-VIS)
and a detector's boxes (COCO detection results, YOLO txt). Each becomes prompts on its frames
(:func:`annotation.operations.apply_import`): a mask is that object's mask prompt, a box a box
prompt, and tracking goes on from them.

Everything is checked against the video before anything is used: the frame size, the frame
numbers, the object ids (1..255) and the number of objects; a problem is an :class:`ImportProblem`
naming the file and what is wrong, and nothing changes.

Every number, type and count of a file is checked in Python before anything reaches
pycocotools' C code or allocates much (a polygon corner of NaN or 1e9 would make it allocate
tens of GB): coordinates are finite and within 4x the frame, RLE counts add up to the frame,
ids are whole numbers (a bool is not one), and the limits below are checked while reading, so
a file over one is refused after reading a few MB. Several masks of one object on one frame
are merged into one (a frame holds one prompt per object); ``Imported.notes`` says so. Every
reader takes ``cancel`` (an Event) and raises :class:`ImportCancelled` soon after it is set.

Frames are found by, in order: (an image set) the image's file name or its mask's (``a.jpg``,
``a.png``), a ``frame_index`` field, a number at the end of the image's file name
(``walk_00012.jpg``, ``00012.png``), or (COCO) the image id minus 1, as this project's COCO
files number them. An image set's masks and boxes are checked against each image's own size.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import re
import struct
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from annotation.document import PackedMask
from annotation.formats import MAX_MASK_BYTES, MAX_OBJECT_ID, MAX_PROMPTS, ImageFrames, clean_name

MAX_IMPORT_BYTES = 64 * 2**20  # a JSON file, or one zip member once unpacked, is read whole
MAX_ZIP_BYTES = 256 * 2**20  # all of a zip's members once unpacked (as their headers declare them)
MAX_ZIP_MEMBERS = 20_000  # files in one zip (one mask PNG or YOLO txt per frame)
MAX_TEXT_BYTES = 2**20  # one YOLO txt (255 boxes, the most a video can have, take about 15 kB)
MAX_TEXT_LINES = 10_000  # lines of one YOLO txt, blank ones included
MAX_JSON_OBJECTS = 100_000  # {...} in one JSON file: annotations, images, categories and their masks
MAX_OUTLINE = 10_000_000  # pixels of polygon outline in one file (pycocotools takes ~40 bytes and ~1 us a pixel)
MAX_POLYGONS = 50_000  # polygons in one file (pycocotools takes ~50 us for each)
OUTLINE_PER_FRAME = 2  # one polygon's outline may be this many times the frame's pixels long (a mask's is shorter)
COORDINATE_REACH = 4  # polygon corners may lie this many frame sizes beyond the frame, no further
_RLE_CHUNKS = 6  # 5-bit chunks of one compressed RLE count (pycocotools' C decoder overflows past 6)
_NUMBER_AT_END = re.compile(r"([0-9]+)(?=\.[A-Za-z0-9]+$|$)")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # no nan, inf, 1_0 or Unicode digits
_CLASS = re.compile(r"[0-9]{1,6}")


class ImportProblem(ValueError):
    """A file that cannot be imported, worded for the user."""


class ImportCancelled(Exception):
    """The ``cancel`` event was set while a file was being read; nothing was imported."""


@dataclass(frozen=True)
class MaskPrompt:
    """One object's mask on one frame, kept as bits of its bounding box (10,000 of them fit)."""

    frame: int
    obj_id: int
    packed: PackedMask

    @classmethod
    def of(cls, frame: int, obj_id: int, mask: np.ndarray) -> MaskPrompt:
        return cls(frame, obj_id, PackedMask.pack(mask))

    @property
    def mask(self) -> np.ndarray:
        """HxW bool, the video's (or the image's) size."""
        return self.packed.unpack()


@dataclass(frozen=True)
class BoxPrompt:
    frame: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the video's pixels
    label: str | None = None
    score: float | None = None


@dataclass
class Imported:
    """What a file gives: mask prompts by object id, or box prompts that become new objects;
    ``labels`` maps an object id (masks) to its class where the file names one; ``notes``
    are sentences for the user about what was changed on the way (masks merged)."""

    source: str
    masks: list[MaskPrompt] = field(default_factory=list)
    boxes: list[BoxPrompt] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # object id -> its name, where the file has one
    notes: list[str] = field(default_factory=list)

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


def _stop_if(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ImportCancelled


def _shown(text: str, limit: int = 40) -> str:
    """A name or text from the file as a message may quote it: one line, at most ``limit`` characters."""
    flat = "".join(c if c.isprintable() else "?" for c in str(text)[: limit + 1])
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _describe(value: object) -> str:
    """What a wrong value is, in words: 'a list', 'true', "the text '1'", 'NaN'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the text '{_shown(value, 20)}'"
    if isinstance(value, int):
        text = str(value) if value.bit_length() < 200 else ""
        return text if text and len(text) <= 20 else "a number of many digits"
    if isinstance(value, float):
        return "NaN" if value != value else ("Infinity" if abs(value) == float("inf") else f"{value:g}")
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(value: object, source: str, what: str, low: int = 0) -> int:
    if not _is_whole(value):
        raise _problem(source, f"{what} is {_describe(value)}, not a whole number")
    if value < low:
        raise _problem(source, f"{what} is {_describe(value)}; it must be at least {low}")
    return value


def _identifier(value: object, source: str, what: str) -> int | str:
    """An image or category id: a whole number or a text, as COCO files give them."""
    if not (_is_whole(value) or isinstance(value, str)):
        raise _problem(source, f"{what} is {_describe(value)}, not a whole number or a text")
    return value


def _list_field(document: dict, key: str, source: str, required: bool = True) -> list:
    value = document.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise _problem(source, f"'{key}' is {_describe(value)}, not a list")
    return value


class _TooManyObjects(Exception):
    pass


def _json_bytes(path: Path, cancel: threading.Event | None) -> bytes:
    """The file's bytes, read a MB at a time and refused as soon as they hold more than
    MAX_JSON_OBJECTS '{' (each JSON object has one; COCO's texts seldom hold any)."""
    chunks, braces = [], 0
    with path.open("rb") as file:
        while chunk := file.read(2**20):
            _stop_if(cancel)
            braces += chunk.count(b"{")
            if braces > MAX_JSON_OBJECTS:
                raise _TooManyObjects
            chunks.append(chunk)
    return b"".join(chunks)


def _read_json(path: Path, cancel: threading.Event | None = None) -> object:
    """The file's JSON: at most MAX_IMPORT_BYTES, and parsing stops at the MAX_JSON_OBJECTS-th
    object or when ``cancel`` is set (Python's parser calls the hook for each object)."""
    size = path.stat().st_size
    if size > MAX_IMPORT_BYTES:
        raise _problem(path.name, f"it is {size / 2**20:.0f} MB; the most an import may be is "
                                  f"{MAX_IMPORT_BYTES // 2**20} MB")  # fmt: skip
    if size == 0:
        raise _problem(path.name, "it is empty (0 bytes)")
    count = 0

    def counted(obj: dict) -> dict:
        nonlocal count
        count += 1
        if count % 1000 == 0:
            _stop_if(cancel)
        return obj

    try:
        return json.loads(_json_bytes(path, cancel).decode("utf-8-sig"), object_hook=counted)
    except UnicodeDecodeError:
        raise _problem(path.name, "it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _problem(path.name, f"it is not valid JSON ({exc})") from None
    except RecursionError:
        raise _problem(path.name, "its JSON is nested too deeply") from None
    except _TooManyObjects:
        too_many = f"it holds more than {MAX_JSON_OBJECTS:,} JSON objects ({{...}}: annotations, images, masks)"
        raise _problem(path.name, f"{too_many}; the most an import may hold is {MAX_JSON_OBJECTS:,}") from None
    except ValueError:  # e.g. an integer of more than 4300 digits
        raise _problem(path.name, "it holds a number too long to read") from None


def _frame_of_name(name: str, source: str) -> int | None:
    found = _NUMBER_AT_END.search(PurePosixPath(name).name)
    if found is None:
        return None
    if len(found[1]) > 12:
        raise _problem(source, f"'{_shown(name)}' has a frame number of {len(found[1])} digits")
    return int(found[1])


def _check_frame(source: str, frame: int, video: VideoShape, what: str) -> int:
    if not 0 <= frame < video.frames:
        raise _problem(source, f"{what} is frame {frame}, but the video has frames 0 to {video.frames - 1}")
    return frame


def _check_object(source: str, obj_id: object, what: str, key: str = "") -> int:
    """An object id 1..255; ``key`` names the field the id came from (e.g. 'track_id')."""
    field_name = f"{what}.{key}" if key else what
    if not _is_whole(obj_id):
        raise _problem(source, f"{field_name} is {_describe(obj_id)}, not a whole number (object ids are whole "
                               f"numbers 1..{MAX_OBJECT_ID})")  # fmt: skip
    if not 1 <= obj_id <= MAX_OBJECT_ID:
        raise _problem(source, f"{what} has object id {_describe(obj_id)}; ids must be whole numbers "
                               f"1..{MAX_OBJECT_ID}")  # fmt: skip
    return obj_id


def _check_count(imported: Imported) -> Imported:
    objects = len(imported.objects) + len(imported.boxes)
    if objects > MAX_OBJECT_ID:
        raise _problem(imported.source, f"it holds {objects} objects; a video can have at most {MAX_OBJECT_ID}")
    if not imported.masks and not imported.boxes:
        raise _problem(imported.source, "it holds no mask or box for this video")
    return imported


class _MaskPrompts:
    """Masks gathered into one prompt per object and frame (merged by OR), at most MAX_PROMPTS
    of them and MAX_MASK_BYTES of packed bits; ``merged`` counts the masks that went into
    each prompt that has more than one."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.packed: dict[tuple[int, int], PackedMask] = {}
        self.merged: dict[tuple[int, int], int] = {}
        self.bytes = 0

    def make_room(self, key: tuple[int, int], what: str) -> None:
        if key not in self.packed and len(self.packed) >= MAX_PROMPTS:
            raise _prompts_over(self.source, what)

    def add(self, frame: int, obj_id: int, mask: np.ndarray, what: str, masks: int = 1) -> None:
        key = (frame, obj_id)
        self.make_room(key, what)
        if key in self.packed:
            mask = mask | self.packed[key].unpack()
            self.bytes -= self.packed[key].bit_bytes
            self.merged[key] = self.merged.get(key, 1) + masks
        elif masks > 1:
            self.merged[key] = masks
        packed = PackedMask.pack(mask)
        self.bytes += packed.bit_bytes
        if self.bytes > MAX_MASK_BYTES:
            raise _problem(self.source, f"its masks take more than {MAX_MASK_BYTES // 2**20} MB (at {what}); "
                                        f"the most an import may hold is {MAX_MASK_BYTES // 2**20} MB")  # fmt: skip
        self.packed[key] = packed

    def into(self, imported: Imported) -> Imported:
        imported.masks = [MaskPrompt(frame, obj, packed) for (frame, obj), packed in self.packed.items()]
        if self.merged:
            frames = sorted({frame for frame, _ in self.merged})
            objects = len({obj for _, obj in self.merged})
            where = f"frame {frames[0]}" if len(frames) == 1 else f"{len(frames)} frames"
            imported.notes.append(
                f"{sum(self.merged.values()):,} masks of {objects} object(s) on {where} were merged into one mask "
                "per object and frame (a frame holds one prompt per object)"
            )
        return imported


# ----------------------------------------------------------------------------- zips


def _zip_members_counted(path: Path, source: str) -> None:
    """Refuse a zip of more than MAX_ZIP_MEMBERS files from its central directory, before
    Python's zipfile makes an object of each (a 4 MB directory can list 90,000 files)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        tail_start = max(0, size - 22 - 65_535)
        file.seek(tail_start)
        tail = file.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return  # not a zip's end: zipfile says so
        _, _, _, _, entries, directory_size, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
        end = tail_start + at
        locator = tail[at - 20 : at] if at >= 20 else b""
        if locator[:4] == b"PK\x06\x07":  # zip64: the counts are in its own end record
            (zip64_at,) = struct.unpack("<Q", locator[8:16])
            file.seek(zip64_at)
            record = file.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory_size = struct.unpack("<Q", record[32:40])[0], struct.unpack("<Q", record[40:48])[0]
                end = zip64_at
        if entries > MAX_ZIP_MEMBERS or directory_size > MAX_ZIP_MEMBERS * 400:
            raise _too_many_members(source)
        file.seek(max(0, end - directory_size))
        directory = file.read(directory_size)
    count, at = 0, 0
    while at + 46 <= len(directory) and directory[at : at + 4] == b"PK\x01\x02":
        name, extra, comment = struct.unpack_from("<3H", directory, at + 28)
        at += 46 + name + extra + comment
        count += 1
        if count > MAX_ZIP_MEMBERS:
            raise _too_many_members(source)


def _too_many_members(source: str) -> ImportProblem:
    return _problem(source, f"it holds more than {MAX_ZIP_MEMBERS:,} files; the most an import may hold is "
                            f"{MAX_ZIP_MEMBERS:,}")  # fmt: skip


def _open_zip(path: Path, source: str) -> zipfile.ZipFile:
    """The zip, its count of files, their names and their declared sizes checked."""
    if path.stat().st_size == 0:
        raise _problem(source, "it is empty (0 bytes)")
    _zip_members_counted(path, source)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise _problem(source, f"it is not a zip file ({exc})") from None
    try:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise _too_many_members(source)
        total = 0
        for info in infos:
            _check_member_name(info.filename, source)
            if info.file_size > MAX_IMPORT_BYTES:
                raise _too_large_member(info, source)
            total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise _problem(source, f"its files take {total / 2**20:.0f} MB once unpacked; the most an import may "
                                   f"take is {MAX_ZIP_BYTES // 2**20} MB")  # fmt: skip
    except BaseException:
        archive.close()
        raise
    return archive


def _check_member_name(name: str, source: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or "\x00" in name:
        raise _problem(source, f"'{_shown(name)}' is not a plain name inside the zip (it points outside the zip)")


def _too_large_member(info: zipfile.ZipInfo, source: str, limit: int = MAX_IMPORT_BYTES) -> ImportProblem:
    return _problem(source, f"'{_shown(info.filename)}' is larger than {_size_text(limit)} once unpacked, the most "
                            "for one file of an import")  # fmt: skip


def _size_text(size: int) -> str:
    return f"{size / 2**20:.3g} MB" if size >= 2**20 else f"{size / 1024:.3g} kB"


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, limit: int = MAX_IMPORT_BYTES) -> bytes:
    """A member's bytes; reading stops past ``limit`` whatever its header declares."""
    if info.file_size > limit:
        raise _too_large_member(info, source, limit)
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except Exception as exc:  # zlib, bz2, lzma, CRC and encryption errors alike: the member is damaged
        raise _problem(source, f"'{_shown(info.filename)}' cannot be unpacked ({type(exc).__name__})") from None
    if len(data) > limit:
        raise _too_large_member(info, source, limit)
    return data


def _zip_is_masks(path: Path, source: str) -> bool:
    with _open_zip(path, source) as archive:
        return any(n.lower().endswith(".png") for n in archive.namelist())


# ----------------------------------------------------------------------------- masks


def read_png_masks(path: Path, video: VideoShape, *, cancel: threading.Event | None = None) -> Imported:
    """A zip of indexed or greyscale PNGs, one per frame (``00012.png`` or ``walk_00012.png``),
    pixel = object id (0 = background; DAVIS and this project's PNG export). Names come from an
    ``objects.json`` in the zip, if there is one."""
    path = Path(path)
    source = path.name
    imported = Imported(source)
    prompts = _MaskPrompts(source)
    with _open_zip(path, source) as archive:
        for info in archive.infolist():
            _stop_if(cancel)
            if info.is_dir():
                continue
            if info.filename.endswith("objects.json"):
                imported.names = _zip_names(archive, info, source)
                continue
            if not info.filename.lower().endswith(".png"):
                continue
            frame = video.frame_of_file(info.filename)
            frame = _frame_of_name(info.filename, source) if frame is None else frame
            if frame is None:
                raise _problem(source, f"'{_shown(info.filename)}' has no frame number in its name")
            _check_frame(source, frame, video, f"'{_shown(info.filename)}'")
            values = _png_values(archive, info, video, frame, source)
            present = np.flatnonzero(np.bincount(values.ravel(), minlength=1))
            for obj_id in present[present > 0]:
                what = f"'{_shown(info.filename)}'"
                prompts.make_room((frame, int(obj_id)), what)
                prompts.add(frame, _check_object(source, int(obj_id), what), values == obj_id, what)
    return _check_count(prompts.into(imported))


def _png_values(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, video: VideoShape, frame: int, source: str
) -> np.ndarray:
    """The PNG's object ids (HxW uint8), its mode and size checked before its pixels are unpacked."""
    data = _read_member(archive, info, source)
    name = _shown(info.filename)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("P", "L"):
                raise _problem(source, f"'{name}' is a {image.mode} picture, not a mask of object ids")
            if (image.height, image.width) != video.frame_size(frame):
                raise _problem(source, f"'{name}' is {image.width}x{image.height}, but {video.size_text(frame)}")
            return np.asarray(image, dtype=np.uint8)
    except ImportProblem:
        raise
    except Exception as exc:  # Pillow raises many kinds for a damaged or hostile picture
        raise _problem(source, f"'{name}' is not a readable PNG ({type(exc).__name__})") from None


def _zip_names(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> dict[int, str]:
    """objects.json: {"<id>": "<name>"}; ids other than ASCII whole numbers 1..255 are left out."""
    try:
        raw = json.loads(_read_member(archive, info, source, MAX_TEXT_BYTES).decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise _problem(source, "its objects.json is not valid JSON") from None
    if not isinstance(raw, dict):
        return {}
    names = {}
    for key, value in raw.items():
        if re.fullmatch(r"[0-9]{1,3}", key) and 1 <= int(key) <= MAX_OBJECT_ID and isinstance(value, (str, int)):
            if clean := clean_name(str(value)):
                names[int(key)] = clean
    return names


@dataclass(frozen=True)
class _Segmentation:
    """One annotation's segmentation, still as the file has it, and the field it is in."""

    what: str
    value: object


def read_coco_masks(path: Path, video: VideoShape, *, cancel: threading.Event | None = None) -> Imported:
    """COCO instance segmentation (RLE, compressed or not, or polygons). The object is the
    annotation's ``track_id`` / ``instance_id`` where it has one, else one object per
    annotation; its class is its category's name. Annotations of one object on one frame
    are merged into one mask."""
    return _coco_masks(_read_json(Path(path), cancel), Path(path).name, video, cancel)


def _coco_masks(document: object, source: str, video: VideoShape, cancel: threading.Event | None) -> Imported:
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise _problem(source, "it is not a COCO file (no 'annotations' list)")
    frames = _coco_frames(document, video, source)
    categories = _category_names(document, source)
    imported = Imported(source)
    groups: dict[tuple[int, int], list[_Segmentation]] = {}
    for number, annotation in enumerate(document["annotations"]):
        _stop_if(cancel)
        what = f"annotations[{number}]"
        if not isinstance(annotation, dict) or "segmentation" not in annotation:
            raise _problem(source, f"{what} has no segmentation")
        image = _identifier(annotation.get("image_id"), source, f"{what}.image_id")
        frame = frames.get(image)
        if frame is None:
            raise _problem(source, f"{what} is on image {_describe(image)}, which 'images' does not list")
        key = next((k for k in ("track_id", "instance_id") if k in annotation), "")
        if not key and number >= MAX_OBJECT_ID:
            raise _problem(source, f"it has more than {MAX_OBJECT_ID} annotations without a track_id; each is its "
                                   f"own object, and a video can have at most {MAX_OBJECT_ID}")  # fmt: skip
        obj_id = _check_object(source, annotation[key] if key else number + 1, what, key)
        _make_room(groups, (frame, obj_id), source, what)
        groups.setdefault((frame, obj_id), []).append(_Segmentation(f"{what}.segmentation", annotation["segmentation"]))
        label = _category_of(annotation, categories, source, what)
        if label is not None:
            imported.labels[obj_id] = label
    return _check_count(_decode_groups(groups, video, source, cancel).into(imported))


def _make_room(groups: dict[tuple[int, int], list], key: tuple[int, int], source: str, what: str) -> None:
    """Refuse a new (frame, object) past MAX_PROMPTS, before any mask is decoded."""
    if key not in groups and len(groups) >= MAX_PROMPTS:
        raise _prompts_over(source, what)


def _prompts_over(source: str, what: str) -> ImportProblem:
    return _problem(source, f"{what} makes more than {MAX_PROMPTS:,} prompts (one per object and frame); the most "
                            f"an import may give is {MAX_PROMPTS:,}")  # fmt: skip


def _decode_groups(
    groups: dict[tuple[int, int], list[_Segmentation]], video: VideoShape, source: str,
    cancel: threading.Event | None,
) -> _MaskPrompts:  # fmt: skip
    """Each (frame, object)'s segmentations checked (its polygons together, in one go),
    merged in RLE form and decoded once."""
    from pycocotools import mask as mask_utils

    prompts = _MaskPrompts(source)
    outline = _Outline(source)
    for (frame, obj_id), segmentations in groups.items():
        h, w = size = video.frame_size(frame)
        polygons: list = []
        owners: list[tuple[int, str]] = []  # (index of its first polygon, the segmentation's field)
        rles = []
        for segmentation in segmentations:
            _stop_if(cancel)
            value, what = segmentation.value, segmentation.what
            if isinstance(value, list):
                if not value:
                    raise _problem(source, f"{what} is an empty list (no polygon)")
                outline.add_polygons(len(value), what)
                owners.append((len(polygons), what))
                polygons.extend(value)
            elif isinstance(value, dict):
                counts = _checked_rle(value, size, source, what)
                if isinstance(counts, list):
                    rles.append(mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w))
                else:
                    rles.append({"size": [h, w], "counts": counts})
            else:
                kind = _describe(value)
                raise _problem(source, f"{what} is {kind}, not polygons (a list) or an RLE mask (an object)")
        if polygons:
            _check_polygons(polygons, owners, size, source, outline)
            rles += mask_utils.frPyObjects(polygons, h, w)
        _stop_if(cancel)
        rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles)
        mask = np.asarray(mask_utils.decode(rle), bool).reshape(size)
        prompts.add(frame, obj_id, mask, segmentations[-1].what, len(segmentations))
    return prompts


class _Outline:
    """The polygon outline a file has made pycocotools walk so far, in pixels."""

    def __init__(self, source: str) -> None:
        self.source, self.pixels, self.polygons = source, 0.0, 0

    def add_polygons(self, count: int, what: str) -> None:
        self.polygons += count
        if self.polygons > MAX_POLYGONS:
            raise _problem(self.source, f"it holds more than {MAX_POLYGONS:,} polygons (at {what}); the most an "
                                        f"import may hold is {MAX_POLYGONS:,}")  # fmt: skip

    def add(self, pixels: float, what: str) -> None:
        self.pixels += pixels
        if self.pixels > MAX_OUTLINE:
            raise _problem(self.source, f"its polygons' outlines are more than {MAX_OUTLINE:,} pixels long in all "
                                        f"(at {what}); the most an import may have is {MAX_OUTLINE:,}")  # fmt: skip


def _check_polygons(
    polygons: list, owners: list[tuple[int, str]], size: tuple[int, int], source: str, outline: _Outline
) -> None:
    """Polygons [[x0, y0, x1, y1, ...], ...] of one mask, all at once in numpy: each of 3
    corners or more, every number finite and within COORDINATE_REACH frames of the frame;
    their outlines counted (pycocotools walks each pixel of them). ``owners`` says which
    segmentation field each run of polygons comes from, for the messages."""
    h, w = size
    firsts = [first for first, _ in owners]

    def field_of(index: int) -> str:
        first, what = owners[bisect.bisect_right(firsts, index) - 1]
        return f"{what}[{index - first}]"

    if not all(type(p) is list for p in polygons):
        index, bad = next((i, p) for i, p in enumerate(polygons) if type(p) is not list)
        raise _problem(source, f"{field_of(index)} is {_describe(bad)}, not a polygon (a list of x, y numbers)")
    lengths = np.fromiter(map(len, polygons), np.int64, len(polygons))
    odd = (lengths < 6) | (lengths % 2 == 1)
    if odd.any():
        index = int(np.argmax(odd))
        raise _problem(source, f"{field_of(index)} has {lengths[index]} numbers; a polygon needs an even count of "
                               "at least 6 (x, y of 3 corners or more)")  # fmt: skip
    flat = list(itertools.chain.from_iterable(polygons))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    def where(position: int) -> str:
        polygon = int(np.searchsorted(starts, position, side="right") - 1)
        return f"{field_of(polygon)}[{position - starts[polygon]}]"

    if not set(map(type, flat)) <= {int, float}:
        position, bad = next((i, v) for i, v in enumerate(flat) if type(v) not in (int, float))
        raise _problem(source, f"{where(position)} is {_describe(bad)}, not a number")
    try:
        xy = np.asarray(flat, dtype=np.float64)
    except OverflowError:  # an integer too large for a float
        position = next(i for i, v in enumerate(flat) if isinstance(v, int) and abs(v) > 2**1000)
        raise _problem(source, f"{where(position)} is far too large") from None
    finite = np.isfinite(xy)
    if not finite.all():
        raise _problem(source, f"{where(int(np.argmin(finite)))} is not a finite number")
    far = np.abs(xy) > np.tile([COORDINATE_REACH * w, COORDINATE_REACH * h], len(xy) // 2)
    if far.any():
        position = int(np.argmax(far))
        raise _problem(source, f"{where(position)} is {xy[position]:g}, far outside the {w}x{h} frame (corners may "
                               f"lie at most {COORDINATE_REACH} frame sizes beyond it)")  # fmt: skip
    corners = xy.reshape(-1, 2)
    first = starts // 2
    following = np.arange(1, len(corners) + 1)
    following[np.cumsum(lengths // 2) - 1] = first  # each polygon's last corner joins its first
    steps = np.abs(corners[following] - corners).max(axis=1) + 1
    outlines = np.add.reduceat(steps, first)
    longest = int(np.argmax(outlines))
    if outlines[longest] > OUTLINE_PER_FRAME * h * w:
        raise _problem(source, f"{field_of(longest)} has an outline {outlines[longest]:,.0f} pixels long; no mask of a "
                               f"{w}x{h} frame needs more than {OUTLINE_PER_FRAME * h * w:,}")  # fmt: skip
    outline.add(float(outlines.sum()), owners[-1][1])


def _checked_rle(value: dict, size: tuple[int, int], source: str, what: str) -> list[int] | bytes:
    """An RLE's counts, checked to be whole numbers >= 0 adding up to the frame's pixels (so
    pycocotools' decoder writes exactly h x w): the list as given, or the compressed string
    as bytes."""
    h, w = size
    shape = value.get("size")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_whole(v) for v in shape)):
        raise _problem(source, f"{what}.size is not [height, width] in whole numbers")
    if shape != [h, w]:
        raise _problem(source, f"{what} has a mask of size {shape[0]}x{shape[1]}, but the video is {h}x{w} (h x w)")
    counts = value.get("counts")
    if isinstance(counts, list):
        if len(counts) > h * w + 1:
            raise _problem(source, f"{what}.counts has {len(counts):,} numbers; a {w}x{h} mask needs at most "
                                   f"{h * w + 1:,}")  # fmt: skip
        if not set(map(type, counts)) <= {int}:
            index, bad = next((i, v) for i, v in enumerate(counts) if type(v) is not int)
            raise _problem(source, f"{what}.counts[{index}] is {_describe(bad)}, not a whole number")
        try:
            numbers = np.asarray(counts, dtype=np.int64)
        except OverflowError:  # a count of more than 19 digits: clipped, it is refused all the same
            numbers = np.asarray([min(max(c, -1), 2**62) for c in counts], dtype=np.int64)
        _check_counts(numbers, size, source, f"{what}.counts", counts)
        return counts
    if isinstance(counts, str):
        _check_counts(_compressed_counts(counts, size, source, what), size, source, f"{what}.counts")
        return counts.encode("ascii")
    raise _problem(source, f"{what}.counts is {_describe(counts)}, not RLE counts (a list of whole numbers or a text)")


def _check_counts(counts: np.ndarray, size: tuple[int, int], source: str, what: str, given: list | None = None) -> None:
    """Counts >= 0 adding up to the frame's pixels; ``given``: the file's list, for quoting its numbers."""
    h, w = size
    negative = counts < 0
    if negative.any():
        raise _problem(source, f"{what}[{int(np.argmax(negative))}] is negative")
    over = counts > h * w
    if over.any():
        first = int(np.argmax(over))
        too_many = _describe(given[first] if given is not None else int(counts[first]))
        raise _problem(source, f"{what}[{first}] is {too_many}, more than the {h * w:,} pixels of a {w}x{h} mask")
    total = int(counts.sum())
    if total != h * w:
        raise _problem(source, f"{what} add up to {total:,} pixels, but a {w}x{h} mask has {h * w:,}")


def _compressed_counts(text: str, size: tuple[int, int], source: str, what: str) -> np.ndarray:
    """COCO's compressed RLE string decoded as pycocotools' rleFrString does (5-bit chunks
    from '0', 0x20 = more chunks, 0x10 in the last = negative, counts from the 4th on are
    differences to the one two before), in numpy, refusing what its C code would misread."""
    h, w = size
    if len(text) > _RLE_CHUNKS * (h * w + 1):
        raise _problem(source, f"{what}.counts is {len(text):,} characters long; a {w}x{h} mask needs at most "
                               f"{_RLE_CHUNKS * (h * w + 1):,}")  # fmt: skip
    codes = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64) - 48
    if codes.size == 0 or len(codes) != len(text) or codes.min() < 0 or codes.max() > 63 or codes[-1] & 0x20:
        raise _problem(source, f"{what}.counts is not COCO's compressed RLE text")
    ends = np.flatnonzero((codes & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _RLE_CHUNKS:
        raise _problem(source, f"{what}.counts holds a count too large for any mask")
    group = np.repeat(np.arange(len(ends)), lengths)
    shift = 5 * (np.arange(codes.size) - starts[group])
    values = np.bincount(group, weights=(codes & 0x1F) << shift, minlength=len(ends)).astype(np.int64)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])  # cnts[i] += cnts[i - 2] for i > 2; [1] and [2] start their chains
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def _coco_frames(document: dict, video: VideoShape, source: str) -> dict[object, int]:
    images = _list_field(document, "images", source)
    frames: dict[object, int] = {}
    for number, image in enumerate(images):
        what = f"images[{number}]"
        if not isinstance(image, dict) or "id" not in image:
            raise _problem(source, f"{what} has no id")
        image_id = _identifier(image["id"], source, f"{what}.id")
        if image_id in frames:
            raise _problem(source, f"{what}.id is {_describe(image_id)}, the id of another image: each needs its own")
        frame = _coco_frame(image, video, source, what)
        if frame is None:
            raise _problem(source, f"{what} says no frame (no frame_index, no number in its file name)")
        _check_frame(source, frame, video, what)
        height = _whole(image.get("height"), source, f"{what}.height")
        width = _whole(image.get("width"), source, f"{what}.width")
        if (height, width) != video.frame_size(frame):
            raise _problem(source, f"{what} is {width}x{height}, but {video.size_text(frame)}")
        frames[image_id] = frame
    return frames


def _coco_frame(image: dict, video: VideoShape, source: str, what: str) -> int | None:
    """An image entry's frame: its file among an image set's, its frame_index, the number
    its file name ends in, or its id - 1."""
    file_name = image.get("file_name", "")
    if not isinstance(file_name, str):
        raise _problem(source, f"{what}.file_name is {_describe(file_name)}, not a text")
    frame = video.frame_of_file(file_name)
    if frame is None and image.get("frame_index") is not None:
        frame = _whole(image["frame_index"], source, f"{what}.frame_index")
    if frame is None:
        frame = _frame_of_name(file_name, source)
    if frame is None and _is_whole(image["id"]):
        frame = image["id"] - 1
    return frame


def _category_names(document: dict, source: str) -> dict[object, str]:
    found = {}
    for number, category in enumerate(_list_field(document, "categories", source, required=False)):
        what = f"categories[{number}]"
        if not isinstance(category, dict) or "id" not in category:
            raise _problem(source, f"{what} is not an object with an id and a name")
        category_id = _identifier(category["id"], source, f"{what}.id")
        name = category.get("name", "")
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise _problem(source, f"{what}.name is {_describe(name)}, not a text")
        if clean := clean_name(str(name)):
            found[category_id] = clean
    return found


def _category_of(annotation: dict, categories: dict[object, str], source: str, what: str) -> str | None:
    """The class of an annotation's ``category_id`` (None where it has none or the file names none)."""
    category = annotation.get("category_id")
    if category is None:
        return None
    return categories.get(_identifier(category, source, f"{what}.category_id"))


def read_ytvis_masks(path: Path, video: VideoShape, *, cancel: threading.Event | None = None) -> Imported:
    """YouTube-VIS: one video, one annotation per object with a segmentation per frame (null
    where absent). The object is ``instance_id`` where there is one, else its place."""
    return _ytvis_masks(_read_json(Path(path), cancel), Path(path).name, video, cancel)


def _ytvis_masks(document: object, source: str, video: VideoShape, cancel: threading.Event | None) -> Imported:
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise _problem(source, "it is not a YouTube-VIS file (no 'annotations' list)")
    videos = _list_field(document, "videos", source, required=False)
    if len(videos) != 1 or not isinstance(videos[0], dict):
        raise _problem(source, f"it describes {len(videos)} videos; import a file of one video")
    if len(set(video.sizes)) > 1:
        raise _problem(source, "YouTube-VIS holds one frame size per video, but these images differ in size")
    height = _whole(videos[0].get("height"), source, "videos[0].height")
    width = _whole(videos[0].get("width"), source, "videos[0].width")
    if (height, width) != (video.height, video.width):
        raise _problem(source, f"its video is {width}x{height}, but this one is {video.width}x{video.height}")
    categories = _category_names(document, source)
    imported = Imported(source)
    groups: dict[tuple[int, int], list[_Segmentation]] = {}
    for number, annotation in enumerate(document["annotations"]):
        _stop_if(cancel)
        what = f"annotations[{number}]"
        segmentations = annotation.get("segmentations") if isinstance(annotation, dict) else None
        if not isinstance(segmentations, list):
            raise _problem(source, f"{what} has no 'segmentations' list")
        if len(segmentations) > video.frames:
            raise _problem(source, f"{what} has {len(segmentations)} frames, but the video has {video.frames}")
        key = "instance_id" if "instance_id" in annotation else ""
        obj_id = _check_object(source, annotation[key] if key else number + 1, what, key)
        for frame, segmentation in enumerate(segmentations):
            if segmentation is not None:
                _make_room(groups, (frame, obj_id), source, what)
                item = _Segmentation(f"{what}.segmentations[{frame}]", segmentation)
                groups.setdefault((frame, obj_id), []).append(item)
        label = _category_of(annotation, categories, source, what)
        if label is not None:
            imported.labels[obj_id] = label
    return _check_count(_decode_groups(groups, video, source, cancel).into(imported))


# ----------------------------------------------------------------------------- boxes


def read_coco_detections(
    path: Path, video: VideoShape, min_score: float = 0.0, names: list[str] | None = None, *,
    cancel: threading.Event | None = None,
) -> Imported:  # fmt: skip
    """A detector's COCO results: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"}`` (or a COCO file whose annotations have boxes). Image ids are frames + 1 (this
    project's COCO numbering) unless the file lists its images. Boxes scoring below
    ``min_score`` are left out. A box's class is the file's category name; else, with
    ``names`` (a class list), category id ``i`` is ``names[i - 1]`` (ids counted from 1, as
    COCO does and this project's exports do); else "class <id>". Each box becomes an object,
    so reading stops at the 256th."""
    return _detections(_read_json(Path(path), cancel), Path(path).name, video, min_score, names, cancel)


def _detections(
    document: object, source: str, video: VideoShape, min_score: float, names: list[str] | None,
    cancel: threading.Event | None,
) -> Imported:  # fmt: skip
    results = document.get("annotations") if isinstance(document, dict) else document
    if not isinstance(results, list):
        raise _problem(source, "it is not a list of detections")
    frames = _coco_frames(document, video, source) if isinstance(document, dict) and "images" in document else None
    categories = _category_names(document, source) if isinstance(document, dict) else {}
    imported = Imported(source)
    for number, result in enumerate(results):
        _stop_if(cancel)
        what = f"detection {number}"
        if not isinstance(result, dict):
            raise _problem(source, f"{what} is not an object")
        score = _finite(result.get("score", 1.0), source, f"{what}'s score")
        if score < min_score:
            continue
        image_id = _identifier(result.get("image_id"), source, f"{what}'s image_id")
        frame = frames.get(image_id) if frames is not None else (image_id - 1 if _is_whole(image_id) else None)
        if frame is None:
            raise _problem(source, f"{what} is on image {_describe(image_id)}, which is not a frame of this video")
        if frames is None and not 0 <= frame < video.frames:  # the numbering is ours: say it
            raise _problem(source, f"{what} is on image {_describe(image_id)}, but image ids count from 1 (frame 0 is "
                                   f"image 1), so this video's images are 1 to {video.frames}")  # fmt: skip
        _check_frame(source, frame, video, what)
        x, y, w, h = _box_numbers(result.get("bbox"), source, what)
        label = _detection_label(result.get("category_id"), categories, names, source, what)
        box = _inside((x, y, x + w, y + h), video.frame_size(frame), source, what)
        imported.boxes.append(BoxPrompt(frame, box, label, score))
        _check_boxes(imported)
    return _check_count(imported)


def _check_boxes(imported: Imported) -> None:
    if len(imported.boxes) > MAX_OBJECT_ID:
        raise _problem(imported.source, f"it holds more than {MAX_OBJECT_ID} boxes; each becomes an object, and a "
                                        f"video can have at most {MAX_OBJECT_ID}")  # fmt: skip


def _detection_label(
    category: object, categories: dict[object, str], names: list[str] | None, source: str, what: str
) -> str:
    if category is None:
        return "class None"
    category = _identifier(category, source, f"{what}'s category_id")
    if category in categories:
        return categories[category]
    if names and _is_whole(category) and 1 <= category <= len(names):
        return names[category - 1]
    return f"class {_shown(str(category), 20)}"


def read_yolo_boxes(
    path: Path, video: VideoShape, frame: int, names: list[str] | None = None, *,
    cancel: threading.Event | None = None,
) -> Imported:  # fmt: skip
    """YOLO detection labels: one ``.txt`` (for ``frame``) or a zip of them (frames from their
    names), lines ``class cx cy w h [conf]`` divided by the width and height. Class ``i`` is
    ``names[i]`` (e.g. the labels of a data.yaml), else "class i". A txt has at most
    MAX_TEXT_LINES lines and MAX_TEXT_BYTES, counted before its lines are read."""
    _stop_if(cancel)
    path = Path(path)
    source = path.name
    imported = Imported(source)
    for number, name, data in _yolo_texts(path, source, frame, cancel):
        _check_frame(source, number, video, f"'{_shown(name)}'")
        lines = data.count(b"\n") + 1
        if lines > MAX_TEXT_LINES:
            raise _problem(source, f"'{_shown(name)}' has more than {MAX_TEXT_LINES:,} lines; the most a YOLO file "
                                   f"may have is {MAX_TEXT_LINES:,}")  # fmt: skip
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _problem(source, f"'{_shown(name)}' is not a text file") from None
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line_number % 1000 == 0:
                _stop_if(cancel)
            if line.strip():
                what = f"{_shown(name)}, line {line_number}"
                imported.boxes.append(_yolo_box(line, number, video, names, source, what))
                _check_boxes(imported)
    return _check_count(imported)


def _yolo_texts(
    path: Path, source: str, frame: int, cancel: threading.Event | None
) -> Iterator[tuple[int, str, bytes]]:
    """(frame, name, bytes) of each txt: the file itself, or a zip's (classes.txt aside)."""
    if zipfile.is_zipfile(path):
        with _open_zip(path, source) as archive:
            for info in archive.infolist():
                _stop_if(cancel)
                if info.filename.endswith(".txt") and not info.filename.endswith("classes.txt"):
                    number = _frame_of_name(info.filename, source)
                    if number is None:
                        raise _problem(source, f"'{_shown(info.filename)}' has no frame number in its name")
                    yield number, info.filename, _read_member(archive, info, source, MAX_TEXT_BYTES)
        return
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise _problem(source, f"it is {_size_text(size)}; the most a YOLO file may be is {_size_text(MAX_TEXT_BYTES)}")
    yield frame, source, path.read_bytes()


def _yolo_box(line: str, frame: int, video: VideoShape, names: list[str] | None, source: str, what: str) -> BoxPrompt:
    parts = line.split()
    if len(parts) not in (5, 6) or not _CLASS.fullmatch(parts[0]):
        raise _problem(source, f"{what} is not 'class cx cy w h [conf]' (the class a whole number 0, 1, 2 ...)")
    if not all(_DECIMAL.fullmatch(v) for v in parts[1:]):
        raise _problem(source, f"{what} has a value that is not a number")
    cx, cy, w, h, *conf = (float(v) for v in parts[1:])
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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _problem(source, f"{what} is {_describe(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if not np.isfinite(number):
        raise _problem(source, f"{what} is not a finite number")
    return number


def _box_numbers(value: object, source: str, what: str) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4:
        raise _problem(source, f"{what} has no bbox [x, y, width, height]")
    x, y, w, h = (_finite(v, source, f"{what}'s bbox[{i}]") for i, v in enumerate(value))
    if w <= 0 or h <= 0:
        raise _problem(source, f"{what} has a bbox of zero or negative size")
    return x, y, w, h


def _inside(box: tuple[float, float, float, float], size: tuple[int, int], source: str, what: str):
    """The box clipped to the frame of ``size`` (H, W) (detectors overshoot the edge a little);
    refused when it lies outside the frame altogether."""
    height, width = size
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[2]), min(float(height), box[3])
    if not x1 - x0 >= 1 or not y1 - y0 >= 1:
        raise _problem(source, f"{what} lies outside the {width}x{height} frame")
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------- any file


def read_any(path: Path, video: VideoShape, frame: int = 0, min_score: float = 0.0,
             names: list[str] | None = None, *, cancel: threading.Event | None = None) -> Imported:  # fmt: skip
    """Whichever of the formats above ``path`` holds, told by its content: a zip of PNGs
    (masks) or of txt files (YOLO boxes), a YOLO ``.txt`` (boxes on ``frame``), a JSON list
    (COCO detection results), or a JSON object with ``videos`` (YouTube-VIS) or ``images``
    (COCO: masks where it has segmentations, else boxes). ``cancel`` set: ImportCancelled."""
    _stop_if(cancel)
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise _problem(source, "there is no such file")
    if path.stat().st_size == 0:
        raise _problem(source, "it is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        if _zip_is_masks(path, source):
            return read_png_masks(path, video, cancel=cancel)
        return read_yolo_boxes(path, video, frame, names, cancel=cancel)
    if path.suffix.lower() == ".zip":  # named a zip, but not one: say so (not "it is not valid JSON")
        raise _problem(source, "it is not a zip file (it may be damaged or cut short)")
    if path.suffix.lower() == ".txt":
        return read_yolo_boxes(path, video, frame, names, cancel=cancel)
    document = _read_json(path, cancel)
    if isinstance(document, list):
        return _detections(document, source, video, min_score, names, cancel)
    if isinstance(document, dict) and "videos" in document:
        return _ytvis_masks(document, source, video, cancel)
    if isinstance(document, dict) and "images" in document:
        annotations = document.get("annotations") or []
        if (
            isinstance(annotations, list)
            and annotations
            and all(isinstance(a, dict) and "segmentation" in a for a in annotations)
        ):
            return _coco_masks(document, source, video, cancel)
        return _detections(document, source, video, min_score, names, cancel)
    raise _problem(source, "it is none of: a PNG mask zip, COCO, YouTube-VIS, COCO detections, YOLO labels")
