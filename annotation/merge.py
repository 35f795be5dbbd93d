"""One dataset from many videos: the per-video exports of earlier runs (the command line's
``--out`` folders, one machine's or a cluster's) merged into one COCO, YOLO and YouTube-VIS
dataset for the whole collection (:func:`merge_datasets`).

What is read, and why: each video's COCO file, ``<video>_coco.zip`` (``--export coco_images``:
``annotations.json`` and the frames as ``images/<video>_00000.jpg``...) or, without frames,
``<video>_coco.json``. Its masks are run-length encoded, so they are the tracked masks exactly
(YOLO's polygons are not), and its frames are the very files the video's own export wrote: the
merge neither decodes the video again (the session file would need the video, found again and
decoded at the same rate and size, on the machine that merges) nor re-encodes a JPEG (the bytes
are copied). A ``<video>_yolo.zip`` beside a ``_coco.json`` gives the frames instead.

The merged folder (``out_dir``)::

    coco/annotations.json        one image per frame of every video, file names prefixed by
    coco/images/<file>           the video's name, ids unique across videos
    yolo/data.yaml               one class list; images/{train,val}/, labels/{train,val}/
    yolo/images/..., yolo/labels/...
    ytvis/annotations.json       one entry per video; ytvis/JPEGImages/<video>/<frame> with frames
    merged.json                  what was merged (videos, frames, classes, the split): written
                                 last, it marks the folder complete

Classes: the union of the videos' labels (compared after :func:`annotation.formats.clean_name`),
in the order first met, so a label has one class in every video: YOLO class ``i``, COCO and
YouTube-VIS category ``i + 1``, as for one video (:mod:`annotation.datasets`). YOLO's validation
split takes whole videos (``val_videos``: a fraction, chosen by a seeded hash of each video's
name, so adding a video does not move the others) and every k-th frame of the others
(``val_every``). Everything is written into a hidden sibling folder and moved into place at the
end: a refused, failed or cancelled merge leaves the folder as it was.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from annotation.datasets import _area_and_box, _data_yaml, _rle, _uncompressed_rle, instance_polygon, yolo_line
from annotation.document import UserError
from annotation.formats import clean_name
from annotation.labels import MAX_LABELS

MERGE_FORMATS = ("coco", "yolo", "ytvis")
MARKER = "merged.json"  # written last: a folder with it is a complete merge
COCO_SUFFIXES = ("_coco.zip", "_coco.json")  # the zip first: it has the frames
MAX_COCO_BYTES = 2**31  # one video's COCO file; past this it is not one video's export
Progress = Callable[[int, int, str], None]  # (videos done, videos in all, the video being merged now)
Cancel = Callable[[], bool]  # True: stop (checked between frames)


class MergeError(UserError):
    """The merge was refused or failed; the message says why, in plain words."""


class MergeCancelled(MergeError):
    """Cancel was asked for; nothing was written."""


@dataclass(frozen=True)
class VideoSource:
    """One video's output: ``coco`` (``<name>_coco.zip`` or ``_coco.json``) and, where there is
    one, ``yolo`` (``<name>_yolo.zip``, a second place for the frames). ``name`` prefixes its
    frames' files in the merged dataset."""

    name: str
    coco: Path
    yolo: Path | None = None


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source: its COCO image id and file name there, and (H, W)."""

    image_id: int
    index: int
    file_name: str
    size: tuple[int, int]


@dataclass
class VideoPlan:
    """What the check of one source found: its frames in order, its classes (source category
    id -> cleaned label), and where its frames' files are (``frames_from``: a zip, or None)."""

    source: VideoSource
    video: str
    frames: list[SourceFrame]
    labels: dict[int, str]
    annotations: int
    frames_from: Path | None = None
    image_paths: dict[str, str] = field(default_factory=dict)  # file name -> its member in frames_from

    @property
    def uniform(self) -> bool:
        return len({f.size for f in self.frames}) <= 1


@dataclass(frozen=True)
class MergeResult:
    """The merged dataset: ``files``: format -> its main file (COCO and YouTube-VIS
    ``annotations.json``, YOLO's ``data.yaml``)."""

    out_dir: Path
    files: dict[str, Path]
    videos: tuple[str, ...]
    val_videos: tuple[str, ...]
    labels: tuple[str, ...]
    frames: int
    annotations: int
    without_frames: tuple[str, ...] = ()  # videos whose inputs had no frames (COCO only then)

    def summary(self) -> str:
        """One plain paragraph: what was merged, and where."""
        words = (f"Merged {len(self.videos)} video(s), {self.frames} frames, {self.annotations} masks and "
                 f"{len(self.labels)} class(es) into {self.out_dir} ({', '.join(self.files)}).")  # fmt: skip
        if self.val_videos:
            words += f" Validation videos: {', '.join(self.val_videos)}."
        if self.without_frames:
            words += f" No frames for: {', '.join(self.without_frames)} (their inputs have none)."
        return words


# ----------------------------------------------------------------------------- finding the inputs


def find_sources(paths: Iterable[str | Path]) -> list[VideoSource]:
    """The videos in ``paths``: a ``<video>_coco.zip`` / ``_coco.json`` file, or a folder of
    them (an ``--out`` folder; else its sub-folders, one per video). Refused (MergeError): none
    given, a path that holds no video's COCO file, two videos of one name."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise MergeError("Give at least one output folder (or COCO file) of annotated videos to merge.")
    found: dict[str, VideoSource] = {}
    for path in paths:
        sources = _sources_in(path)
        if not sources:
            raise MergeError(
                f"'{path}' is not the output of annotated videos: it holds no <video>_coco.zip or <video>_coco.json "
                "(sam2-annotate writes them with --export coco_images or coco)."
            )
        for source in sources:
            other = found.get(source.name)
            if other is not None and other.coco.resolve().parent == source.coco.resolve().parent:
                if source.coco.suffix == ".zip":  # one video's two COCO files: the zip has the frames
                    found[source.name] = source
                continue
            if other is not None:
                raise MergeError(
                    f"Two videos are both named '{source.name}' ({other.coco} and {source.coco}): their frames would "
                    "have the same file names in the merged dataset. Rename one video's files (for example "
                    f"{source.name}_2_coco.json), or merge them separately."
                )
            found[source.name] = source
    return list(found.values())


def _sources_in(path: Path) -> list[VideoSource]:
    if path.is_file():
        name = _video_name(path.name)
        return [VideoSource(name, path, _yolo_beside(path, name))] if name else []
    if not path.is_dir():
        return []
    sources = _sources_of_folder(path)
    if not sources:  # one folder per video (a cluster's --out)
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            sources += _sources_of_folder(sub)
    return sources


def _sources_of_folder(folder: Path) -> list[VideoSource]:
    by_name: dict[str, Path] = {}
    for suffix in COCO_SUFFIXES:
        for path in sorted(folder.glob(f"*{suffix}")):
            name = _video_name(path.name)
            if name and path.is_file():
                by_name.setdefault(name, path)  # the zip, found first, wins: it has the frames
    return [VideoSource(name, path, _yolo_beside(path, name)) for name, path in sorted(by_name.items())]


def _video_name(file_name: str) -> str:
    for suffix in COCO_SUFFIXES:
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)]
    return ""


def _yolo_beside(coco: Path, name: str) -> Path | None:
    yolo = coco.with_name(f"{name}_yolo.zip")
    return yolo if yolo.is_file() else None


# ----------------------------------------------------------------------------- checking them


def _read_coco(source: VideoSource) -> dict:
    """The source's COCO document, or MergeError saying why it cannot be read."""
    path = source.coco
    try:
        if path.stat().st_size > MAX_COCO_BYTES:
            raise MergeError(f"'{path.name}' is too large for one video's COCO file.")
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                text = archive.read("annotations.json")
        else:
            text = path.read_bytes()
        document = json.loads(text)
    except MergeError:
        raise
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not a COCO file"
        raise MergeError(f"Could not read '{path.name}' ({reason}).") from None
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise MergeError(f"'{path.name}' is not a COCO file: it needs lists of images, annotations and categories.")
    return document


def _is_whole(value: object, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def plan_video(source: VideoSource, needs_frames: bool = False) -> VideoPlan:
    """Check one source and say what it holds (MergeError, naming the file, when it is not one
    video's COCO export, or its frame sizes disagree)."""
    document = _read_coco(source)
    where = f"'{source.coco.name}'"
    frames, sizes = [], {}
    for image in document["images"]:
        if not (isinstance(image, dict) and _is_whole(image.get("id")) and isinstance(image.get("file_name"), str)
                and _is_whole(image.get("width"), 1) and _is_whole(image.get("height"), 1)):  # fmt: skip
            raise MergeError(f"{where} is not a COCO file: an image lacks its id, file name, width or height.")
        index = image.get("frame_index", len(frames))
        frames.append(SourceFrame(image["id"], index if _is_whole(index) else len(frames), image["file_name"],
                                  (image["height"], image["width"])))  # fmt: skip
        sizes[image["id"]] = frames[-1].size
    if not frames:
        raise MergeError(f"{where} holds no frames.")
    if len(sizes) != len(frames) or len({f.file_name for f in frames}) != len(frames):
        raise MergeError(f"{where} names one image (id or file) twice: it is not one video's export.")
    frames.sort(key=lambda f: (f.index, f.image_id))
    labels = _source_labels(document["categories"], where)
    for annotation in document["annotations"]:
        _check_annotation(annotation, sizes, labels, where)
    videos = {str(image.get("video")) for image in document["images"] if image.get("video") is not None}
    plan = VideoPlan(source, next(iter(videos)) if len(videos) == 1 else source.name, frames, labels,
                     len(document["annotations"]))  # fmt: skip
    _find_frames(plan)
    if needs_frames and plan.frames_from is None:
        raise MergeError(
            f"The YOLO dataset needs every video's frames, and {where} has none: export 'coco_images' (the COCO "
            "dataset with frames) for that video, or put its YOLO zip beside it."
        )
    return plan


def _source_labels(categories: list, where: str) -> dict[int, str]:
    labels: dict[int, str] = {}
    for category in categories:
        if not (isinstance(category, dict) and _is_whole(category.get("id")) and isinstance(category.get("name"), str)):
            raise MergeError(f"{where} is not a COCO file: a category lacks its id or name.")
        name = clean_name(category["name"])
        if not name:
            raise MergeError(f"{where} has a category with no name (id {category['id']}).")
        labels[category["id"]] = name
    return labels


def _check_annotation(annotation: object, sizes: dict[int, tuple[int, int]], labels: dict[int, str], where: str):
    if not (isinstance(annotation, dict) and annotation.get("image_id") in sizes
            and annotation.get("category_id") in labels):  # fmt: skip
        raise MergeError(f"{where} is not a COCO file: an annotation names no image or category of it.")
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        expected = sizes[annotation["image_id"]]
        if not (isinstance(size, list) and len(size) == 2 and tuple(size) == expected):
            raise MergeError(
                f"The frame sizes of {where} disagree: image {annotation['image_id']} is {expected[1]}x{expected[0]}"
                f" but a mask on it is {_size_words(size)}."
            )
    elif not isinstance(segmentation, list):
        raise MergeError(f"{where} has an annotation without a mask (segmentation).")


def _size_words(size: object) -> str:
    if isinstance(size, list) and len(size) == 2:
        return f"{size[1]}x{size[0]}"
    return "of no size"


def _find_frames(plan: VideoPlan) -> None:
    """Where the frames' files are: the COCO zip's images/, else the YOLO zip's images/{train,val}/."""
    names = {f.file_name for f in plan.frames}
    candidates = [p for p in (plan.source.coco, plan.source.yolo) if p is not None and p.suffix == ".zip"]
    for archive_path in candidates:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                members = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            raise MergeError(f"Could not read '{archive_path.name}' (it is not a zip file).") from None
        found = _image_members(members, names, archive_path == plan.source.coco)
        if found and len(found) < len(names):
            raise MergeError(f"'{archive_path.name}' has the frames of only {len(found)} of {len(names)} images.")
        if found:
            plan.frames_from, plan.image_paths = archive_path, found
            return


def _image_members(members: list[str], names: set[str], coco: bool) -> dict[str, str]:
    prefixes = ("images/",) if coco else ("images/train/", "images/val/")
    found = {}
    for member in members:
        for prefix in prefixes:
            if member.startswith(prefix) and member[len(prefix):] in names:
                found[member[len(prefix):]] = member
    return found


# ----------------------------------------------------------------------------- the choices


def check_choices(formats: Sequence[str], val_videos: float, val_every: int) -> list[str]:
    """The chosen formats, in MERGE_FORMATS order, or MergeError for a choice that cannot be made."""
    chosen = [f.strip() for f in formats if f.strip()]
    unknown = [f for f in chosen if f not in MERGE_FORMATS]
    if unknown or not chosen:
        what = f"'{', '.join(unknown)}' is not a dataset format the merge writes" if unknown else "No format chosen"
        raise MergeError(f"{what}: choose from {', '.join(MERGE_FORMATS)}.")
    if not (isinstance(val_videos, (int, float)) and math.isfinite(val_videos) and 0 <= val_videos <= 1):
        raise MergeError(f"The share of videos for validation must be a number from 0 to 1, not {val_videos!r}.")
    if not (_is_whole(val_every) and val_every != 1):
        raise MergeError("Every k-th frame to validation: k must be 0 (no validation split) or at least 2.")
    return [f for f in MERGE_FORMATS if f in chosen]


def choose_val_videos(names: Sequence[str], share: float, seed: int = 0) -> list[str]:
    """The videos (whole) that go to validation: round(share x N) of N, at least one when share
    > 0 and N >= 2, never all. Each video's place comes from a hash of the seed and its own name,
    so the choice is the same in every run and order, and adding a video moves no other."""
    if share <= 0 or len(names) < 2:
        return []
    count = min(len(names) - 1, max(1, round(share * len(names))))
    ranked = sorted(names, key=lambda name: hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest())
    chosen = set(ranked[:count])
    return [name for name in names if name in chosen]


def union_labels(plans: Sequence[VideoPlan]) -> list[str]:
    """Every video's classes, each once, in the order first met; MergeError past MAX_LABELS."""
    labels = list(dict.fromkeys(label for plan in plans for label in plan.labels.values()))
    if len(labels) > MAX_LABELS:
        raise MergeError(
            f"These videos have {len(labels)} different labels together; a dataset can have at most {MAX_LABELS} "
            "(semantic masks hold one class per pixel value). Merge fewer videos, or give them fewer labels."
        )
    return labels


def merged_file_name(video: str, file_name: str) -> str:
    """A frame's file in the merged dataset: the video's own (``walk_00000.jpg``) where it
    starts with the video's name, else the name prefixed (``shots_a.jpg``, ``shots_left/b.png``)."""
    return file_name if file_name.startswith(f"{video}_") else f"{video}_{file_name}"


# ----------------------------------------------------------------------------- writing


class _JsonList:
    """A JSON array written item by item to a temporary file (memory stays one video's worth)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / name
        self.file = self.path.open("w", encoding="utf-8")
        self.count = 0

    def add(self, item: object) -> None:
        self.file.write(("," if self.count else "") + json.dumps(item, ensure_ascii=False) + "\n")
        self.count += 1

    def write_into(self, out) -> None:
        self.file.close()
        out.write("[")
        with self.path.open(encoding="utf-8") as part:
            shutil.copyfileobj(part, out)
        out.write("]")
        self.path.unlink()


@dataclass
class _Writer:
    """The merged dataset being written into ``root`` (the hidden folder)."""

    root: Path
    formats: list[str]
    labels: list[str]
    val_videos: set[str]
    val_every: int
    cancel: Cancel | None
    parts: Path = field(init=False)
    images: _JsonList = field(init=False)
    annotations: _JsonList = field(init=False)
    ytvis_videos: _JsonList = field(init=False)
    ytvis_annotations: _JsonList = field(init=False)
    videos: list[dict] = field(default_factory=list)  # COCO's list of the videos (as COCO-VID has it)
    frames: int = 0
    masks: int = 0
    track_ids: dict[tuple[int, object], int] = field(default_factory=dict)  # (video, its object) -> merged track

    def __post_init__(self) -> None:
        self.parts = self.root / ".parts"
        self.parts.mkdir()
        self.images, self.annotations = _JsonList(self.parts, "images"), _JsonList(self.parts, "annotations")
        self.ytvis_videos, self.ytvis_annotations = _JsonList(self.parts, "yv"), _JsonList(self.parts, "ya")
        for name in self.formats:
            (self.root / name).mkdir()

    def add_video(self, number: int, plan: VideoPlan) -> None:
        """Every frame of one video (``number``: 1, 2, ... its id in the merged files)."""
        document = _read_coco(plan.source)
        by_image: dict[int, list[dict]] = {}
        for annotation in document["annotations"]:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        class_of = {cid: self.labels.index(label) for cid, label in plan.labels.items()}
        name = plan.source.name
        self.videos.append({"id": number, "name": plan.video, "file_prefix": f"{name}_", "frames": len(plan.frames)})
        tracks: dict[int, dict] = {}  # source track -> its YouTube-VIS record (one size per video: checked before)
        archive = zipfile.ZipFile(plan.frames_from) if plan.frames_from is not None else None
        try:
            for position, frame in enumerate(plan.frames):
                if self.cancel is not None and self.cancel():
                    raise MergeCancelled("The merge was cancelled; nothing was written.")
                image = self._frame_bytes(archive, plan, frame)
                annotations = by_image.get(frame.image_id, [])
                masks = [_mask(a, frame.size, plan.source.coco.name) for a in annotations]
                self._coco_frame(number, plan, frame, annotations, masks, class_of, image)
                self._yolo_frame(plan, position, frame, annotations, masks, class_of, image)
                self._ytvis_frame(position, len(plan.frames), frame, annotations, masks, class_of, tracks)
                self.frames += 1
                self.masks += len(annotations)
        finally:
            if archive is not None:
                archive.close()
        self._ytvis_video(number, plan, tracks)

    def _frame_bytes(self, archive: zipfile.ZipFile | None, plan: VideoPlan, frame: SourceFrame) -> bytes | None:
        if archive is None:
            return None
        data = archive.read(plan.image_paths[frame.file_name])
        try:
            width, height = Image.open(io.BytesIO(data)).size
        except (OSError, ValueError):
            raise MergeError(f"The frame '{frame.file_name}' of '{plan.frames_from.name}' is not an image.") from None
        if (height, width) != frame.size:
            raise MergeError(
                f"The frame sizes of '{plan.source.name}' disagree: '{frame.file_name}' is {width}x{height} in "
                f"'{plan.frames_from.name}' but {frame.size[1]}x{frame.size[0]} in its COCO file."
            )
        return data

    def _coco_frame(self, number, plan, frame, annotations, masks, class_of, image) -> None:
        if "coco" not in self.formats:
            return
        file_name = merged_file_name(plan.source.name, frame.file_name)
        image_id = self.images.count + 1
        self.images.add({
            "id": image_id, "file_name": file_name, "width": frame.size[1], "height": frame.size[0],
            "frame_index": frame.index, "video": plan.video, "video_id": number,
        })  # fmt: skip
        if image is not None:
            _put(self.root / "coco" / "images" / file_name, image)
        for annotation, mask in zip(annotations, masks, strict=True):
            area, bbox = _area_and_box(mask)
            obj = annotation.get("track_id", annotation.get("instance_id", f"annotation {annotation.get('id')}"))
            track = self.track_ids.setdefault((number, obj), len(self.track_ids) + 1)
            self.annotations.add({
                "id": self.annotations.count + 1, "image_id": image_id,
                "category_id": class_of[annotation["category_id"]] + 1, "segmentation": _rle(mask), "area": area,
                "bbox": bbox, "iscrowd": 0, "track_id": track, "instance_id": obj, "video_id": number,
            })  # fmt: skip

    def _yolo_frame(self, plan, position, frame, annotations, masks, class_of, image) -> None:
        if "yolo" not in self.formats:
            return
        in_val = plan.source.name in self.val_videos or (self.val_every and (position + 1) % self.val_every == 0)
        split = "val" if in_val else "train"
        file_name = merged_file_name(plan.source.name, frame.file_name)
        lines = []
        for annotation, mask in zip(annotations, masks, strict=True):
            polygon = instance_polygon(mask)
            if polygon is not None:
                lines.append(yolo_line(class_of[annotation["category_id"]], polygon, frame.size) + "\n")
        label = self.root / "yolo" / "labels" / split / f"{PurePosixPath(file_name).with_suffix('')}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(lines))
        coco_copy = self.root / "coco" / "images" / file_name
        _put(self.root / "yolo" / "images" / split / file_name, image, link_to=coco_copy)

    def _ytvis_frame(self, position, count, frame, annotations, masks, class_of, tracks) -> None:
        if "ytvis" not in self.formats:
            return
        for annotation, mask in zip(annotations, masks, strict=True):
            key = annotation.get("track_id", annotation.get("instance_id", f"annotation {annotation.get('id')}"))
            record = tracks.setdefault(key, {
                "category_id": class_of[annotation["category_id"]] + 1, "instance_id": key,
                "segmentations": [None] * count, "areas": [None] * count, "bboxes": [None] * count,
            })  # fmt: skip
            area, bbox = _area_and_box(mask)
            record["segmentations"][position] = _uncompressed_rle(mask)
            record["areas"][position], record["bboxes"][position] = area, bbox

    def _ytvis_video(self, number: int, plan: VideoPlan, tracks: dict) -> None:
        if "ytvis" not in self.formats:
            return
        height, width = plan.frames[0].size
        name = plan.source.name
        files = [f"{name}/{_ytvis_frame_name(name, f)}" for f in plan.frames]
        self.ytvis_videos.add({"id": number, "name": plan.video, "width": width, "height": height,
                               "length": len(plan.frames), "file_names": files})  # fmt: skip
        for record in tracks.values():
            self.ytvis_annotations.add({
                "id": self.ytvis_annotations.count + 1, "video_id": number, "iscrowd": 0, "width": width,
                "height": height, "length": 1, **record,
            })  # fmt: skip
        if plan.frames_from is not None:
            with zipfile.ZipFile(plan.frames_from) as archive:
                for frame, file in zip(plan.frames, files, strict=True):
                    target = self.root / "ytvis" / "JPEGImages" / file
                    coco_copy = self.root / "coco" / "images" / merged_file_name(name, frame.file_name)
                    _put(target, archive.read(plan.image_paths[frame.file_name]) if not coco_copy.exists() else None,
                         link_to=coco_copy)  # fmt: skip

    def finish(self, info: dict, categories: list[dict]) -> dict[str, Path]:
        """Write the JSON files (the parts gathered) -> format -> main file."""
        files = {}
        if "coco" in self.formats:
            head = {"info": info, "licenses": [], "categories": categories, "videos": self.videos}
            files["coco"] = self._document(self.root / "coco" / "annotations.json", head,
                                           {"images": self.images, "annotations": self.annotations})  # fmt: skip
        if "yolo" in self.formats:
            has_val = bool(self.val_videos or self.val_every)
            for split in ("train", "val") if has_val else ("train",):
                (self.root / "yolo" / "images" / split).mkdir(parents=True, exist_ok=True)
                (self.root / "yolo" / "labels" / split).mkdir(parents=True, exist_ok=True)
            files["yolo"] = self.root / "yolo" / "data.yaml"
            files["yolo"].write_text(_data_yaml(self.labels, has_val=has_val), encoding="utf-8")
        if "ytvis" in self.formats:
            head = {"info": info, "licenses": [], "categories": categories}
            files["ytvis"] = self._document(self.root / "ytvis" / "annotations.json", head,
                                            {"videos": self.ytvis_videos, "annotations": self.ytvis_annotations})
        shutil.rmtree(self.parts)
        return files

    @staticmethod
    def _document(path: Path, head: dict, lists: dict[str, _JsonList]) -> Path:
        """``head``'s keys, then each list's (written part by part)."""
        with path.open("w", encoding="utf-8") as out:
            out.write(json.dumps(head, ensure_ascii=False)[:-1])
            for key, items in lists.items():
                out.write(f", {json.dumps(key)}: ")
                items.write_into(out)
            out.write("}")
        return path


def _ytvis_frame_name(video: str, frame: SourceFrame) -> str:
    """``00000.jpg`` for a video's ``walk_00000.jpg`` (YouTube-VIS's layout), an image's own name otherwise."""
    own = f"{video}_{frame.index:05d}.jpg"
    return f"{frame.index:05d}.jpg" if frame.file_name == own else frame.file_name


def _mask(annotation: dict, size: tuple[int, int], where: str) -> np.ndarray:
    """HxW bool of a COCO annotation (compressed or uncompressed RLE, or polygons)."""
    segmentation = annotation["segmentation"]
    height, width = size
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)) if segmentation else None
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {**segmentation, "counts": str(segmentation["counts"]).encode()}
        mask = np.zeros(size, bool) if rle is None else mask_utils.decode(rle).astype(bool)
    except (TypeError, ValueError, KeyError):
        raise MergeError(f"'{where}' has a mask that cannot be read (annotation {annotation.get('id')}).") from None
    if mask.shape != size:
        raise MergeError(f"'{where}' has a mask of another size than its frame (annotation {annotation.get('id')}).")
    return mask


def _put(path: Path, data: bytes | None, link_to: Path | None = None) -> None:
    """Write a frame's file: a hard link to ``link_to`` where it exists (one copy on disk), else ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if link_to is not None and link_to.exists():
        try:
            os.link(link_to, path)
            return
        except OSError:
            data = link_to.read_bytes()
    if data is not None:
        path.write_bytes(data)


# ----------------------------------------------------------------------------- the merge


def merge_datasets(
    sources: Iterable[str | Path | VideoSource],
    out_dir: str | Path,
    formats: Sequence[str] = MERGE_FORMATS,
    val_videos: float = 0.0,
    val_every: int = 0,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> MergeResult:
    """Merge the per-video outputs ``sources`` (folders or COCO files, see :func:`find_sources`,
    or VideoSource) into one dataset in ``out_dir`` (created; an earlier merge there is
    replaced). Every input is checked before anything is written, and the dataset is written
    beside ``out_dir`` and moved into place when complete, so a refusal (MergeError), a failure
    or a cancel (``cancel()`` true: MergeCancelled, checked between frames) leaves ``out_dir``
    as it was. ``progress(done, total, name)`` is called before each video and at the end."""
    chosen = check_choices(formats, val_videos, val_every)
    given = list(sources)
    found = [s for s in given if isinstance(s, VideoSource)]
    paths = [s for s in given if not isinstance(s, VideoSource)]
    listed = found + (find_sources(paths) if paths or not found else [])
    if not listed:
        raise MergeError("Give at least one output folder (or COCO file) of annotated videos to merge.")
    if len({s.name for s in listed}) != len(listed):
        raise MergeError("Two videos have the same name; their frames would have the same file names. Rename one.")
    out_dir = Path(out_dir)
    check_target(out_dir, listed)
    plans = [plan_video(source, needs_frames="yolo" in chosen) for source in listed]
    if "ytvis" in chosen:
        mixed = [p.source.name for p in plans if not p.uniform]
        if mixed:
            raise MergeError(
                f"YouTube-VIS holds one frame size per video, and the frames of {', '.join(mixed)} differ in size; "
                "choose COCO or YOLO for them."
            )
    labels = union_labels(plans)
    names = [p.source.name for p in plans]
    _check_file_names(plans)
    val = choose_val_videos(names, val_videos, seed) if "yolo" in chosen else []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        writer = _Writer(work, chosen, labels, set(val), val_every, cancel)
        for number, plan in enumerate(plans, 1):
            if progress is not None:
                progress(number - 1, len(plans), plan.source.name)
            writer.add_video(number, plan)
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        info = {"description": f"{len(plans)} videos annotated with SAM 2, merged", "version": "1.0",
                "date_created": created}  # fmt: skip
        categories = [{"id": i + 1, "name": label, "supercategory": "object"} for i, label in enumerate(labels)]
        files = writer.finish(info, categories)
        result = MergeResult(
            out_dir, {name: out_dir / path.relative_to(work) for name, path in files.items()}, tuple(names),
            tuple(val), tuple(labels), writer.frames, writer.masks,
            tuple(p.source.name for p in plans if p.frames_from is None),
        )  # fmt: skip
        _write_marker(work / MARKER, result, plans, val_every, seed)
        _move_into_place(work, out_dir)
    except OSError as exc:
        raise MergeError(f"Could not write the merged dataset in {out_dir.parent} ({exc.strerror or exc}).") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if progress is not None:
        progress(len(plans), len(plans), "")
    return result


def _check_file_names(plans: Sequence[VideoPlan]) -> None:
    """Refuse two frames of one merged name (image sets whose names and images' names line up so)."""
    seen: dict[str, str] = {}
    for plan in plans:
        for frame in plan.frames:
            merged = merged_file_name(plan.source.name, frame.file_name)
            if seen.setdefault(merged, plan.source.name) != plan.source.name:
                raise MergeError(
                    f"A frame of '{seen[merged]}' and one of '{plan.source.name}' would both be '{merged}' in the "
                    "merged dataset. Rename one of them, or merge them separately."
                )


def check_target(out_dir: Path, sources: Sequence[VideoSource]) -> None:
    """Refuse a folder that holds something other than an earlier merge, or that is an input's."""
    target = out_dir.resolve()
    for source in sources:
        folder = source.coco.resolve().parent
        if target == folder or target in folder.parents:
            raise MergeError(f"The merged dataset cannot go into {out_dir}: the videos' files are there. "
                             "Choose a folder of its own (for example a 'merged' folder inside).")  # fmt: skip
    if out_dir.exists() and not out_dir.is_dir():
        raise MergeError(f"{out_dir} is a file; the merged dataset needs a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise MergeError(f"{out_dir} holds other files (it is not an earlier merge): choose an empty or new folder.")


def _write_marker(path: Path, result: MergeResult, plans: Sequence[VideoPlan], val_every: int, seed: int) -> None:
    record = {
        "videos": [{"name": p.source.name, "video": p.video, "frames": len(p.frames), "from": str(p.source.coco),
                    "split": "val" if p.source.name in result.val_videos else "train"} for p in plans],
        "labels": list(result.labels), "frames": result.frames, "annotations": result.annotations,
        "formats": list(result.files), "val_every": val_every, "seed": seed,
    }  # fmt: skip
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")


def _move_into_place(work: Path, out_dir: Path) -> None:
    """``work`` becomes ``out_dir``; an earlier merge there is moved aside first and removed after."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.replace(old / "merged")
    try:
        work.replace(out_dir)
    except OSError:
        if old is not None:  # the earlier merge back where it was
            (old / "merged").replace(out_dir)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
