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
import re
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
    """One polygon (K x 2 int (x, y) pixel centres) for a whole HxW mask, or None for a speck.

    YOLO holds one polygon per instance, so a mask in several pieces, or with holes, is drawn
    as one outline: each further contour (a piece, or a hole, traced the other way round) is
    joined to another at their nearest corners by a bridge walked there and back, which
    encloses nothing. Filled again (``cv2.fillPoly``), it gives the mask with its holes; only
    the bridges' own pixels are added.

    The bridges are the edges of a minimum spanning tree over the contours (:func:`_bridges`),
    as short in total as bridges can be, and the cost grows with the corners as N log N, not
    with the cube of the pieces: a mask of 10,000 pieces takes a fraction of a second.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    loops = sorted((c.reshape(-1, 2) for c in contours), key=len, reverse=True)  # the outline starts on the longest
    if not loops or sum(len(loop) for loop in loops) < 3:
        return None
    if len(loops) == 1:
        return loops[0]
    corners = np.concatenate(loops)
    owner = np.repeat(np.arange(len(loops)), [len(loop) for loop in loops])  # the loop of each corner
    return _joined(corners, owner, _bridges(corners, owner, mask.shape))


def _bridges(corners: np.ndarray, owner: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The minimum spanning tree of the loops as (C - 1) x 2 corners, one pair per bridge
    (indices into the P x 2 int ``corners``, which lie inside an HxW ``size``; ``owner``: P,
    the loop of each, 0..C-1), the gap between two loops being that of their nearest corners.

    Each of the tree's bridges is an edge of the corners' Delaunay triangulation (the shortest
    bridge across a cut has no corner in the circle on its diameter), so the tree is sought
    among those edges only, about three per corner, the shortest per two loops. Corners of two
    loops on one pixel (a one-pixel-wide wall between a piece's outline and a hole's) join
    them with a gap of 0.
    """
    height, width = size
    points = corners.astype(np.int64)
    key = points[:, 1] * width + points[:, 0]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    repeat = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    shared = np.stack([order[repeat], order[repeat + 1]], 1)  # triangulated once, so paired here
    distinct = points[order[np.r_[True, sorted_key[1:] != sorted_key[:-1]]]]
    subdiv = cv2.Subdiv2D((0, 0, width + 1, height + 1))
    subdiv.insert(distinct[np.argsort(_z_order(distinct))].astype(np.float32))
    edges = subdiv.getEdgeList().reshape(-1, 2, 2)  # E x (from, to) x (x, y), some to the outer triangle's corners
    ends = np.rint(edges[((edges >= 0) & (edges < [width, height])).all(axis=(1, 2))]).astype(np.int64)
    triangulated = order[np.searchsorted(sorted_key, ends[..., 1] * width + ends[..., 0])]  # the first corner there
    pairs = np.concatenate([shared, triangulated])
    pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    gaps = ((points[pairs[:, 0]] - points[pairs[:, 1]]) ** 2).sum(1)
    pairs = pairs[np.argsort(gaps, kind="stable")]
    loops = np.sort(owner[pairs], axis=1)
    _, first = np.unique(loops[:, 0] * (owner[-1] + 1) + loops[:, 1], return_index=True)  # the shortest per two loops
    first.sort()
    tree, component = _spanning(loops[first], int(owner[-1]) + 1)
    # the triangulation reaches every loop; were one left apart all the same, a longer bridge from
    # corner 0 keeps it in the outline (component labels are loops, so their first corners)
    apart = np.setdiff1d(component, component[:1])
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return np.concatenate([pairs[first][tree], np.stack([np.zeros_like(apart), starts[apart]], 1)])


def _z_order(points: np.ndarray) -> np.ndarray:
    """P x 2 int (x, y), each below 2**17 -> P uint64 Morton codes (the bits of x and y
    interleaved). Subdiv2D finds where each new point goes by walking from the last one: in
    this order the walks are short (raster order takes twice as long, a random one 30 times)."""
    code = np.zeros(len(points), np.uint64)
    x, y = points[:, 0].astype(np.uint64), points[:, 1].astype(np.uint64)
    for bit in range(17):
        code |= ((x >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
        code |= ((y >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
    return code


def _spanning(links: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Borůvka's algorithm: the indices of the E x 2 ``links`` between ``count`` nodes (shortest
    first, so an index is a weight without ties) that make a spanning tree, and each node's
    component (a node's number; all the same when the links reach every node); in numpy, at
    most log2(count) rounds of whole-array steps.

    Each round, every component takes its shortest link out; the components so linked become
    one (a link taken from both ends is the only cycle, broken at its smaller end)."""
    component = np.arange(count)
    chosen = [np.zeros(0, np.int64)]
    while True:
        ends = component[links]  # E x 2
        across = np.flatnonzero(ends[:, 0] != ends[:, 1])
        if not len(across):
            return np.unique(np.concatenate(chosen)), component
        shortest = np.full(count, len(links))
        np.minimum.at(shortest, ends[across, 0], across)
        np.minimum.at(shortest, ends[across, 1], across)
        linked = np.flatnonzero(shortest < len(links))
        taken = shortest[linked]
        chosen.append(taken)
        parent = np.arange(count)
        parent[linked] = np.where(ends[taken, 0] == linked, ends[taken, 1], ends[taken, 0])
        mutual = linked[(parent[parent[linked]] == linked) & (linked < parent[linked])]
        parent[mutual] = mutual
        while not np.array_equal(parent[parent], parent):
            parent = parent[parent]
        component = parent[component]


def _joined(corners: np.ndarray, owner: np.ndarray, bridges: np.ndarray) -> np.ndarray:
    """The loops (P x 2 ``corners``, loop by loop, ``owner`` of each) walked as one outline from
    corner 0, crossing each of the B x 2 ``bridges`` (a, b) there and back: ..., a, b, the rest
    of b's loop, b, a, ... K = P + 2B points.

    The walk is a linked list (``after``), each loop a cycle. Every bridge end gets a copy of its
    corner, chained after the corner; a bridge swaps the successors of the nodes before its two
    copies, a -> b' ... b -> a', which makes two cycles one. Every swap touches nodes of its own,
    so they are made all at once; the walk's order then comes from pointer jumping."""
    count = len(corners)
    after = np.arange(1, count + 1)
    last = np.flatnonzero(np.r_[owner[1:] != owner[:-1], True])  # each loop's last corner goes back to its first
    after[last] = np.r_[0, last[:-1] + 1]
    ends = np.asarray(bridges, np.int64).reshape(-1)  # 2B corners, bridge by bridge
    by_corner = np.argsort(ends, kind="stable")
    corner = ends[by_corner]
    copies = count + np.arange(len(ends))  # the copies, in by_corner order
    first = np.r_[True, corner[1:] != corner[:-1]]
    final = np.r_[corner[1:] != corner[:-1], True]
    anchor = np.where(first, corner, np.r_[0, copies[:-1]])  # the node before each copy
    after = np.r_[after, np.where(final, after[corner], np.r_[copies[1:], 0])]
    after[corner[first]] = copies[first]
    anchors = np.empty(len(ends), np.int64)
    anchors[by_corner] = anchor
    u, v = anchors[0::2], anchors[1::2]
    after[u], after[v] = after[v], after[u]
    source = np.r_[np.arange(count), corner]  # the corner each node stands on
    return corners[source[_walk_order(after)]]


def _walk_order(after: np.ndarray) -> np.ndarray:
    """The nodes of the one cycle ``after`` (node -> next node) in walking order from node 0,
    by pointer jumping: log2(K) rounds of whole-array steps instead of K steps in Python."""
    count = len(after)
    before_start = int(np.flatnonzero(after == 0)[0])
    jump = after.copy()
    jump[before_start] = before_start  # the walk ends there
    to_end = (jump != np.arange(count)).astype(np.int64)
    for _ in range(count.bit_length() + 1):
        further = jump[jump]
        if np.array_equal(further, jump):
            break
        to_end += to_end[jump]
        jump = further
    else:
        raise RuntimeError("the outline's walk is not one cycle")  # a bug, not bad input: never silently cut
    order = np.empty(count, np.int64)
    order[count - 1 - to_end] = np.arange(count)
    return order


def yolo_line(class_index: int, polygon: np.ndarray, size: tuple[int, int]) -> str:
    height, width = size
    normalised = (polygon.astype(np.float64) / np.array([width, height])).reshape(-1).tolist()
    # one %-format of the whole line: 2.5 times faster than a format per number, which counts
    # for noisy masks (100,000s of points)
    numbers = " ".join(["%.6f"] * len(normalised)) % tuple(normalised)
    return f"{class_index} {numbers}" if numbers else str(class_index)


def _data_yaml(names: Sequence[str], has_val: bool) -> str:
    """Ultralytics' layout; each name double-quoted (:func:`_yaml_string`), so that YAML reads
    it as that text, whatever it holds ('yes', 'null', '1e3', ': ', '#', quotes...)."""
    lines = [
        "# YOLO segmentation dataset exported from the SAM 2 video annotator.",
        "path: .",
        "train: images/train",
        f"val: images/{'val' if has_val else 'train'}",
        f"nc: {len(names)}",
        "names:",
        *(f"  {index}: {_yaml_string(name)}" for index, name in enumerate(names)),
    ]
    return "\n".join(lines) + "\n"


# What YAML cannot hold as it is in a quoted string: C1 controls and DEL (not printable), its line
# breaks NEL, LS and PS (a reader folds them into spaces), the BOM, the noncharacters U+FFFE and
# U+FFFF, and lone surrogates (no UTF-8 file holds them).
_YAML_ESCAPED = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _yaml_string(text: str) -> str:
    """``text`` as a YAML double-quoted string on one line, in UTF-8 as it is: emoji and CJK
    stay themselves, where ``json.dumps``'s default wrote an emoji as two surrogate escapes,
    which YAML reads as two lone surrogates (text that cannot be encoded). JSON's escapes (quote,
    backslash, control characters) are YAML's too; the few characters YAML cannot take as they
    are get YAML's \\uXXXX."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_ESCAPED.sub(lambda found: f"\\u{ord(found.group()):04x}", quoted)


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
