"""Hostile and careless import files (annotation.imports) and label files (annotation.labels):
for each format NaN, Infinity, 1e7 and 1e9, negative values, wrong types, 10^5 and 10^6
entries, Unicode digits, traversal names in zips, a 0-byte file and zip bombs. Each is refused
with a message naming the field, in little time and memory, or (masks of one object and frame)
merged with a note.

The import files are read in a child process whose address space is capped (RLIMIT_AS), all
in one run: a case that reached pycocotools' C code unchecked (a polygon corner of NaN makes it
allocate tens of GB) fails the test by a MemoryError or a crash of the child, instead of taking
the machine down. The child reports, per case, the outcome, the seconds and how far its peak
memory rose."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from annotation import labels
from annotation.datasets import indexed_png
from annotation.document import UserError
from annotation.imports import MAX_PROMPTS, VideoShape
from tests.app_harness import ROOT

FRAMES, H, W = 20, 48, 64
VIDEO = VideoShape(FRAMES, H, W)
CAP_BYTES = 3 * 2**30  # the child's address space: a regression's tens of GB fail, the machine stays up
GREW_MB = 100  # a case may raise the child's peak memory by at most this
SECONDS = 10  # a case may take at most this (each takes well under a second; this catches a hang)


# ----------------------------------------------------------------------------- file makers


def write_json(name: str, document: object) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text(json.dumps(document))  # NaN and Infinity written as JSON's readers take them
        return path

    return make


def write_text(name: str, text: str | bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return make


def write_zip(name: str, members: dict[str, bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        return path

    return make


def coco(annotations: list, images: list | None = None, categories: object = ()) -> dict:
    images = images if images is not None else [{"id": 1, "file_name": "00000.jpg", "height": H, "width": W}]
    return {"images": images, "annotations": annotations, "categories": list(categories) or []}


def polygon_annotation(*xy: object, **extra: object) -> dict:
    return {"image_id": 1, "segmentation": [list(xy)], "track_id": 1, **extra}


SQUARE = (10, 10, 30, 10, 30, 30, 10, 30)


def rle_annotation(counts: object, size: object = (H, W), **extra: object) -> dict:
    return {"image_id": 1, "segmentation": {"size": list(size), "counts": counts}, "track_id": 1, **extra}


def compressed(height: int, width: int) -> str:
    """COCO's compressed RLE text of an empty height x width mask."""
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(np.zeros((height, width), np.uint8)))["counts"].decode()


def many_annotations(count: int) -> Callable[[Path], Path]:
    """A COCO file of ``count`` square annotations (written as text: json.dumps of 10^6 dicts is slow)."""

    def make(folder: Path) -> Path:
        path = folder / f"coco_{count}.json"
        one = json.dumps({"image_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "track_id": 1}, separators=(",", ":"))
        head = json.dumps(coco([]))[: -len('[], "categories": []}')]
        path.write_text(head + "[" + ",".join([one] * count) + '], "categories": []}')
        return path

    return make


def ytvis(annotations: list, videos: object = None) -> dict:
    return {"videos": videos if videos is not None else [{"id": 1, "height": H, "width": W}],
            "annotations": annotations, "categories": []}  # fmt: skip


def detection(**changes: object) -> dict:
    return {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9, **changes}


def png_of(values: np.ndarray) -> bytes:
    return indexed_png(values.astype(np.uint8))


def one_object() -> np.ndarray:
    values = np.zeros((H, W), np.uint8)
    values[5:20, 5:20] = 1
    return values


def all_objects() -> np.ndarray:
    """255 objects of 12 pixels each."""
    values = np.zeros(H * W, np.uint8)
    values[: 255 * 12] = np.repeat(np.arange(1, 256), 12)
    return values.reshape(H, W)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (8-bit greyscale) and holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">2I5B", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def zip_bomb(name: str, member: str, size: int) -> Callable[[Path], Path]:
    """A zip whose one member inflates to ``size`` zero bytes (about size / 1000 packed)."""

    def make(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(member, "w") as out:
            block = bytes(2**20)
            for _ in range(size // len(block)):
                out.write(block)
        return path

    return make


def lying_zip(name: str, member: str, inflated: int, declared: int) -> Callable[[Path], Path]:
    """A zip whose member inflates to ``inflated`` bytes but whose headers declare ``declared``."""

    def make(folder: Path) -> Path:
        path = zip_bomb(name, member, inflated)(folder)
        data = bytearray(path.read_bytes())
        local = data.index(b"PK\x03\x04")
        central = data.index(b"PK\x01\x02")
        struct.pack_into("<I", data, local + 22, declared)
        struct.pack_into("<I", data, central + 24, declared)
        path.write_bytes(bytes(data))
        return path

    return make


def zip_of_members(name: str, count: int, suffix: str = ".txt") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for i in range(count):
                archive.writestr(f"{i}{suffix}", b"")
        return path

    return make


def forged_entry_count(name: str, entries: int) -> Callable[[Path], Path]:
    """A small zip whose end record claims ``entries`` files."""

    def make(folder: Path) -> Path:
        path = write_zip(name, {"00000.txt": b"0 0.5 0.5 0.1 0.1\n"})(folder)
        data = bytearray(path.read_bytes())
        end = data.rindex(b"PK\x05\x06")
        struct.pack_into("<2H", data, end + 8, entries, entries)
        path.write_bytes(bytes(data))
        return path

    return make


def sparse(name: str, size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        with path.open("wb") as file:
            file.truncate(size)
        return path

    return make


# ----------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    expect: str  # a regex the ImportProblem's message matches, or "prompts N" for a file that is read


NAN, INF = float("nan"), float("inf")
FIELD = r"annotations\[0\]\.segmentation\[0\]"
CASES = [
    # COCO masks: polygons
    Case("coco polygon NaN", write_json("c.json", coco([polygon_annotation(10, 10, NAN, 20, 30, 30)])),
         rf"{FIELD}\[2\] is not a finite number"),
    Case("coco polygon Infinity", write_json("c.json", coco([polygon_annotation(10, 10, 20, INF, 30, 30)])),
         rf"{FIELD}\[3\] is not a finite number"),
    Case("coco polygon -Infinity", write_json("c.json", coco([polygon_annotation(-INF, 10, 20, 5, 30, 30)])),
         rf"{FIELD}\[0\] is not a finite number"),
    Case("coco polygon 1e7", write_json("c.json", coco([polygon_annotation(10, 10, 1e7, 20, 30, 30)])),
         rf"{FIELD}\[2\] is 1e\+07, far outside the 64x48 frame"),
    Case("coco polygon 1e9", write_json("c.json", coco([polygon_annotation(10, 10, 20, 1e9, 30, 30)])),
         rf"{FIELD}\[3\] is 1e\+09, far outside the 64x48 frame"),
    Case("coco polygon -1e7", write_json("c.json", coco([polygon_annotation(10, -1e7, 20, 5, 30, 30)])),
         rf"{FIELD}\[1\] is -1e\+07, far outside"),
    Case("coco polygon 1e400", write_text("c.json", json.dumps(coco([polygon_annotation(*SQUARE)])).replace(
        "[[10, 10,", "[[1e400, 10,")), rf"{FIELD}\[0\] is not a finite number"),
    Case("coco polygon of 5000 digits", write_text("c.json", json.dumps(coco([polygon_annotation(*SQUARE)])).replace(
        "[[10, 10,", "[[" + "9" * 5000 + ", 10,")), "holds a number too long to read"),
    Case("coco polygon of 4 numbers", write_json("c.json", coco([polygon_annotation(10, 10, 20, 20)])),
         rf"{FIELD} has 4 numbers; a polygon needs an even count of at least 6"),
    Case("coco polygon odd count", write_json("c.json", coco([polygon_annotation(*SQUARE, 5)])),
         rf"{FIELD} has 9 numbers"),
    Case("coco polygon bool", write_json("c.json", coco([polygon_annotation(10, 10, True, 20, 30, 30)])),
         rf"{FIELD}\[2\] is true, not a number"),
    Case("coco polygon text", write_json("c.json", coco([polygon_annotation(10, 10, "20", 20, 30, 30)])),
         rf"{FIELD}\[2\] is the text '20', not a number"),
    Case("coco polygon list", write_json("c.json", coco([polygon_annotation(10, 10, [20], 20, 30, 30)])),
         rf"{FIELD}\[2\] is a list, not a number"),
    Case("coco polygon a number", write_json("c.json", coco([{"image_id": 1, "segmentation": [5], "track_id": 1}])),
         rf"{FIELD} is 5, not a polygon"),
    Case("coco segmentation a number", write_json("c.json", coco([{"image_id": 1, "segmentation": 5}])),
         r"annotations\[0\]\.segmentation is 5, not polygons \(a list\) or an RLE mask"),
    Case("coco polygon of 10^6 numbers", write_json("c.json", coco([polygon_annotation(*([0, 0, 60, 45] * 250_000))])),
         rf"{FIELD} has an outline 30,500,000 pixels long; no mask of a 64x48 frame needs more than 6,144"),
    Case("coco 1,700 long polygons", write_json("c.json", coco([{"image_id": 1, "track_id": 1,
                                                                 "segmentation": [[0, 0, 60, 45] * 50] * 1700}])),
         r"its polygons' outlines are more than 10,000,000 pixels long in all \(at annotations\[0\]\.segmentation"),
    Case("coco 10^5 polygons", write_json("c.json", coco([{"image_id": 1, "track_id": 1,
                                                           "segmentation": [[1, 1, 9, 1, 9, 9]] * 10**5}])),
         r"it holds more than 50,000 polygons \(at annotations\[0\]\.segmentation\)"),
    Case("coco 40,000 polygons", write_json("c.json", coco([{"image_id": 1, "track_id": 1,
                                                             "segmentation": [[1, 1, 9, 1, 9, 9]] * 40_000}])),
         "prompts 1"),
    # COCO masks: RLE
    Case("coco rle negative", write_json("c.json", coco([rle_annotation([-5, H * W + 5])])),
         r"annotations\[0\]\.segmentation\.counts\[0\] is negative"),
    Case("coco rle short", write_json("c.json", coco([rle_annotation([10, 20])])),
         r"\.counts add up to 30 pixels, but a 64x48 mask has 3,072"),
    Case("coco rle 1e9", write_json("c.json", coco([rle_annotation([10**9, 10**30])])),
         r"\.counts\[0\] is 1000000000, more than the 3,072 pixels of a 64x48 mask"),
    Case("coco rle bool", write_json("c.json", coco([rle_annotation([True, H * W - 1])])),
         r"\.counts\[0\] is true, not a whole number"),
    Case("coco rle float", write_json("c.json", coco([rle_annotation([1.5, H * W - 1.5])])),
         r"\.counts\[0\] is 1\.5, not a whole number"),
    Case("coco rle dict", write_json("c.json", coco([rle_annotation({})])), r"\.counts is an object, not RLE counts"),
    Case("coco rle 10^6 counts", write_json("c.json", coco([rle_annotation([0] * 10**6)])),
         r"\.counts has 1,000,000 numbers; a 64x48 mask needs at most 3,073"),
    Case("coco rle text of another size", write_json("c.json", coco([rle_annotation(compressed(480, 640))])),
         r"\.counts\[0\] is 307200, more than the 3,072 pixels of a 64x48 mask"),
    Case("coco rle text not rle", write_json("c.json", coco([rle_annotation("zzzz~~")])),
         r"\.counts is not COCO's compressed RLE text"),
    Case("coco rle text Unicode", write_json("c.json", coco([rle_annotation("٣٣")])),
         r"\.counts is not COCO's compressed RLE text"),
    Case("coco rle text 10^6 long", write_json("c.json", coco([rle_annotation("0" * 10**6)])),
         r"\.counts is 1,000,000 characters long"),
    Case("coco rle size floats", write_json("c.json", coco([rle_annotation("PPYo1", (48.0, 64.0))])),
         r"segmentation\.size is not \[height, width\] in whole numbers"),
    Case("coco rle size 1e9", write_json("c.json", coco([rle_annotation("PPYo1", (10**9, 10**9))])),
         r"has a mask of size 1000000000x1000000000, but the video is 48x64"),
    # COCO: ids and lists
    Case("coco image_id list", write_json("c.json", coco([polygon_annotation(*SQUARE, image_id=[1])])),
         r"annotations\[0\]\.image_id is a list, not a whole number or a text"),
    Case("coco image_id true", write_json("c.json", coco([polygon_annotation(*SQUARE, image_id=True)])),
         r"annotations\[0\]\.image_id is true, not a whole number"),
    Case("coco images id list", write_json("c.json", coco([], [{"id": [1], "height": H, "width": W}])),
         r"images\[0\]\.id is a list, not a whole number or a text"),
    Case("coco images id true", write_json("c.json", coco([], [{"id": True, "height": H, "width": W}])),
         r"images\[0\]\.id is true, not a whole number"),
    Case("coco images height text", write_json("c.json", coco([], [{"id": 1, "height": "48", "width": W}])),
         r"images\[0\]\.height is the text '48', not a whole number"),
    Case("coco images a number", write_json("c.json", {"images": 5, "annotations": []}),
         r"'images' is 5, not a list"),
    Case("coco frame_index Unicode digit", write_json("c.json", coco([], [{"id": 1, "frame_index": "٣", "height": H,
                                                                             "width": W}])),  # fmt: skip
         r"images\[0\]\.frame_index is the text '٣', not a whole number"),
    Case("coco file name of Unicode digits", write_json("c.json", coco([], [{"id": "a", "file_name": "img_٣.jpg",
                                                                            "height": H, "width": W}])),  # fmt: skip
         r"images\[0\] says no frame"),
    Case("coco frame_index negative", write_json("c.json", coco([], [{"id": 1, "frame_index": -3, "height": H,
                                                                        "width": W}])),  # fmt: skip
         r"images\[0\]\.frame_index is -3; it must be at least 0"),
    Case("coco category_id dict", write_json("c.json", coco([polygon_annotation(*SQUARE, category_id={})])),
         r"annotations\[0\]\.category_id is an object, not a whole number or a text"),
    Case("coco category id list", write_json("c.json", coco([polygon_annotation(*SQUARE)], None,
                                                            [{"id": [1], "name": "a"}])),  # fmt: skip
         r"categories\[0\]\.id is a list"),
    Case("coco categories a number", write_json("c.json", {**coco([polygon_annotation(*SQUARE)]), "categories": 5}),
         r"'categories' is 5, not a list"),
    Case("coco track_id text", write_json("c.json", coco([polygon_annotation(*SQUARE, track_id="1")])),
         r"annotations\[0\]\.track_id is the text '1', not a whole number"),
    Case("coco track_id true", write_json("c.json", coco([polygon_annotation(*SQUARE, track_id=True)])),
         r"annotations\[0\]\.track_id is true, not a whole number"),
    Case("coco track_id negative", write_json("c.json", coco([polygon_annotation(*SQUARE, track_id=-1)])),
         r"annotations\[0\] has object id -1; ids must be whole numbers 1\.\.255"),
    Case("coco 10^5 annotations", many_annotations(10**5), r"more than 100,000 JSON objects"),
    Case("coco 10^6 annotations", many_annotations(10**6), r"more than 100,000 JSON objects"),
    Case("coco 20,000 annotations of one object", many_annotations(20_000), "prompts 1"),
    Case("coco 0 bytes", write_text("c.json", b""), r"it is empty \(0 bytes\)"),
    Case("coco over 64 MB", sparse("big.json", 65 * 2**20), r"it is 65 MB; the most an import may be is 64 MB"),
    Case("coco nested", write_text("c.json", "[" * 100_000 + "]" * 100_000), r"nested too deeply"),
    # YouTube-VIS
    Case("ytvis videos a number", write_json("v.json", ytvis([], videos=5)), r"'videos' is 5, not a list"),
    Case("ytvis video height true", write_json("v.json", ytvis([], videos=[{"height": True, "width": W}])),
         r"videos\[0\]\.height is true, not a whole number"),
    Case("ytvis polygon NaN", write_json("v.json", ytvis([{"segmentations": [[[1, 1, NAN, 5, 9, 9]]]}])),
         r"annotations\[0\]\.segmentations\[0\]\[0\]\[2\] is not a finite number"),
    Case("ytvis polygon 1e9", write_json("v.json", ytvis([{"segmentations": [None, [[1, 1, 5, 1e9, 9, 9]]]}])),
         r"annotations\[0\]\.segmentations\[1\]\[0\]\[3\] is 1e\+09, far outside"),
    Case("ytvis rle negative", write_json("v.json", ytvis([{"segmentations": [{"size": [H, W], "counts": [-1, 1]}]}])),
         r"annotations\[0\]\.segmentations\[0\]\.counts\[0\] is negative"),
    Case("ytvis 10^6 frames", write_json("v.json", ytvis([{"segmentations": [None] * 10**6}])),
         r"annotations\[0\] has 1000000 frames, but the video has 20"),
    Case("ytvis instance_id text", write_json("v.json", ytvis([{"instance_id": "1", "segmentations": []}])),
         r"annotations\[0\]\.instance_id is the text '1', not a whole number"),
    Case("ytvis segmentations dict", write_json("v.json", ytvis([{"segmentations": {}}])),
         r"annotations\[0\] has no 'segmentations' list"),
    # COCO detection results
    Case("detections bbox NaN", write_json("d.json", [detection(bbox=[NAN, 1, 5, 5])]),
         r"detection 0's bbox\[0\] is not a finite number"),
    Case("detections bbox Infinity", write_json("d.json", [detection(bbox=[1, 1, INF, 5])]),
         r"detection 0's bbox\[2\] is not a finite number"),
    Case("detections bbox 1e9", write_json("d.json", [detection(bbox=[1e9, 1, 5, 5])]), r"lies outside the 64x48"),
    Case("detections bbox negative size", write_json("d.json", [detection(bbox=[1, 1, -5, 5])]),
         r"detection 0 has a bbox of zero or negative size"),
    Case("detections bbox bool", write_json("d.json", [detection(bbox=[True, 1, 5, 5])]),
         r"detection 0's bbox\[0\] is true, not a number"),
    Case("detections bbox a number", write_json("d.json", [detection(bbox=5)]), r"detection 0 has no bbox"),
    Case("detections image_id list", write_json("d.json", [detection(image_id=[1])]),
         r"detection 0's image_id is a list, not a whole number or a text"),
    Case("detections image_id true", write_json("d.json", [detection(image_id=True)]),
         r"detection 0's image_id is true"),
    Case("detections score text", write_json("d.json", [detection(score="0.9")]),
         r"detection 0's score is the text '0\.9', not a number"),
    Case("detections category_id dict", write_json("d.json", [detection(category_id={})]),
         r"detection 0's category_id is an object"),
    Case("detections 10^5", write_text("d.json", "[" + ",".join([json.dumps(detection())] * 10**5) + "]"),
         r"more than 255 boxes"),
    Case("detections 10^6", write_text("d.json", "[" + ",".join([json.dumps(detection())] * 10**6) + "]"),
         r"it is \d+ MB; the most an import may be is 64 MB"),
    Case("detections 10^6 small", write_text("d.json", "[" + ",".join(["{}"] * 10**6) + "]"),
         r"more than 100,000 JSON objects"),
    Case("detections 300", write_json("d.json", [detection()] * 300), r"more than 255 boxes; each becomes an object"),
    # YOLO txt and zips
    Case("yolo class Unicode digit", write_text("f.txt", "² 0.5 0.5 0.1 0.1\n"), r"f\.txt, line 1 is not 'class cx cy"),
    Case("yolo value Unicode digit", write_text("f.txt", "0 0.5 ٠.٥ 0.1 0.1\n"), r"line 1 has a value that is not a"),
    Case("yolo NaN", write_text("f.txt", "0 nan 0.5 0.1 0.1\n"), r"line 1 has a value that is not a number"),
    Case("yolo Infinity", write_text("f.txt", "0 0.5 0.5 inf 0.1\n"), r"line 1 has a value that is not a number"),
    Case("yolo 1e7", write_text("f.txt", "0 0.5 0.5 1e7 0.1\n"), r"line 1 has values outside 0\.\.1"),
    Case("yolo 1e9 class", write_text("f.txt", "1000000000 0.5 0.5 0.1 0.1\n"), r"line 1 is not 'class cx cy"),
    Case("yolo negative", write_text("f.txt", "0 -0.5 0.5 0.1 0.1\n"), r"line 1 has values outside 0\.\.1"),
    Case("yolo 10^5 lines", write_text("f.txt", "\n" * 10**5), r"'f\.txt' has more than 10,000 lines"),
    Case("yolo 10^6 lines", write_text("f.txt", "\n" * 10**6), r"'f\.txt' has more than 10,000 lines"),
    Case("yolo 300 boxes", write_text("f.txt", "0 0.5 0.5 0.1 0.1\n" * 300), r"more than 255 boxes"),
    Case("yolo over 1 MB", write_text("f.txt", " " * 2**21), r"it is 2 MB; the most a YOLO file may be is 1 MB"),
    Case("yolo 0 bytes", write_text("f.txt", b""), r"it is empty \(0 bytes\)"),
    Case("yolo zip of 2,000,000 lines", write_zip("y.zip", {"00001.txt": b"0 0.5 0.5 0.1 0.1\n" * 2_000_000}),
         r"'00001\.txt' is larger than 1 MB once unpacked"),
    Case("yolo zip traversal", write_zip("y.zip", {"../00001.txt": b"0 0.5 0.5 0.1 0.1\n"}),
         r"'\.\./00001\.txt' is not a plain name inside the zip"),
    Case("yolo zip absolute", write_zip("y.zip", {"/etc/00001.txt": b"0 0.5 0.5 0.1 0.1\n"}),
         r"'/etc/00001\.txt' is not a plain name"),
    Case("yolo zip Unicode digits", write_zip("y.zip", {"frame_٣.txt": b"0 0.5 0.5 0.1 0.1\n"}),
         r"'frame_٣\.txt' has no frame number in its name"),
    Case("yolo zip bomb", zip_bomb("y.zip", "00001.txt", 200 * 2**20), r"'00001\.txt' is larger than 64 MB"),
    Case("yolo zip lying header", lying_zip("y.zip", "00001.txt", 8 * 2**20, 100),
         r"'00001\.txt' cannot be unpacked \(BadZipFile\)"),
    Case("yolo zip 10^5 members", zip_of_members("y.zip", 10**5), r"it holds more than 20,000 files"),
    Case("yolo zip claims 65,535 members", forged_entry_count("y.zip", 65_535), r"it holds more than 20,000 files"),
    Case("zip 0 bytes", write_text("y.zip", b""), r"it is empty \(0 bytes\)"),
    # PNG mask zips
    Case("png zip traversal", write_zip("m.zip", {"../00001.png": png_of(one_object())}),
         r"'\.\./00001\.png' is not a plain name inside the zip"),
    Case("png zip Unicode digits", write_zip("m.zip", {"٣.png": png_of(one_object())}),
         r"'٣\.png' has no frame number in its name"),
    Case("png zip frame of 5000 digits", write_zip("m.zip", {"9" * 5000 + ".png": png_of(one_object())}),
         r"has a frame number of 5000 digits"),
    Case("png zip frame 1e9", write_zip("m.zip", {"1000000000.png": png_of(one_object())}),
         r"is frame 1000000000, but the video has frames 0 to 19"),
    Case("png zip objects.json Unicode key", write_zip("m.zip", {"00001.png": png_of(one_object()),
                                                                 "objects.json": b'{"\\u00b2": "x", "1": "dog"}'}),
         "prompts 1"),  # fmt: skip
    Case("png zip header of 10^5 x 10^5", write_zip("m.zip", {"00001.png": png_header(100_000, 100_000)}),
         r"'00001\.png' is not a readable PNG \(DecompressionBombError\)"),
    Case("png zip header of 10^4 x 10^4", write_zip("m.zip", {"00001.png": png_header(10_000, 10_000)}),
         r"'00001\.png' is 10000x10000, but the video is 64x48"),
    Case("png zip bomb", zip_bomb("m.zip", "00001.png", 100 * 2**20), r"'00001\.png' is larger than 64 MB"),
    Case("png zip lying header", lying_zip("m.zip", "00001.png", 8 * 2**20, 100),
         r"'00001\.png' cannot be unpacked \(BadZipFile\)"),
    Case("png zip 10^5 members", zip_of_members("m.zip", 10**5, ".png"), r"it holds more than 20,000 files"),
    Case("png zip 20 x 255 objects", write_zip("m.zip", {f"{f:05d}.png": png_of(all_objects()) for f in range(20)}),
         "prompts 5100"),
    Case("png zip duplicate members", write_zip("m.zip", {"00001.png": png_of(one_object()),
                                                          "a/00001.png": png_of(np.roll(one_object(), 20, axis=1))}),
         "prompts 1"),  # fmt: skip
    Case("png zip 0 bytes", write_text("m.zip", b""), r"it is empty \(0 bytes\)"),
]  # fmt: skip

CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from annotation import imports
def high_water():  # VmHWM (kB): ru_maxrss would start at the parent's peak, kept across exec
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
video = imports.VideoShape({frames}, {height}, {width})
peak = high_water()
print(json.dumps({{"start_mb": peak / 1024}}), flush=True)
for name, path in json.load(open(sys.argv[1])):
    started = time.perf_counter()
    try:
        got = imports.read_any(path, video)
        outcome = {{"read": len(got.masks) + len(got.boxes), "notes": got.notes}}
    except imports.ImportProblem as exc:
        outcome = {{"problem": str(exc)}}
    except BaseException as exc:
        outcome = {{"error": type(exc).__name__ + ": " + str(exc)[:300]}}
    now = high_water()
    outcome.update(case=name, seconds=time.perf_counter() - started, grew_mb=(now - peak) / 1024)
    peak = max(peak, now)
    print(json.dumps(outcome), flush=True)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every case read in one capped child: case name -> its outcome (a missing one: the child died)."""
    folder = tmp_path_factory.mktemp("hostile")
    listed = []
    for number, case in enumerate(CASES):
        place = folder / f"{number:03d}"
        place.mkdir()
        listed.append((case.name, str(case.make(place))))
    (folder / "cases.json").write_text(json.dumps(listed))
    code = CHILD.format(cap=CAP_BYTES, frames=FRAMES, height=H, width=W)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, str(folder / "cases.json")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    found = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        found[record.get("case", "start")] = record
    found["child"] = {"returncode": done.returncode, "stderr": done.stderr[-3000:]}
    return found


def test_the_capped_child_ran_every_case(outcomes):
    assert outcomes["child"]["returncode"] == 0, outcomes["child"]
    assert set(outcomes) == {case.name for case in CASES} | {"start", "child"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_import(outcomes, case: Case):
    outcome = outcomes.get(case.name)
    assert outcome is not None, f"the child died before or at this case: {outcomes['child']}"
    assert outcome["seconds"] < SECONDS and outcome["grew_mb"] < GREW_MB, outcome
    if case.expect.startswith("prompts "):
        assert outcome.get("read") == int(case.expect.split()[1]), outcome
        return
    assert "problem" in outcome, outcome
    assert re.search(case.expect, outcome["problem"]), outcome["problem"]
    assert outcome["problem"].startswith("'") and " cannot be imported: " in outcome["problem"]


def test_masks_of_one_object_and_frame_are_merged_with_a_note(outcomes):
    merged = outcomes["coco 20,000 annotations of one object"]
    assert merged["notes"] == ["20,000 masks of 1 object(s) on frame 0 were merged into one mask per object and "
                               "frame (a frame holds one prompt per object)"]  # fmt: skip


def test_merged_masks_are_the_union(tmp_path):
    """Two annotations of one object on one frame, a polygon and an RLE, give their union."""
    from pycocotools import mask as mask_utils

    from annotation.imports import read_coco_masks

    right = np.zeros((H, W), np.uint8)
    right[30:40, 40:60] = 1
    rle = mask_utils.encode(np.asfortranarray(right))
    document = coco([polygon_annotation(*SQUARE), rle_annotation(rle["counts"].decode())])
    imported = read_coco_masks(write_json("u.json", document)(tmp_path), VIDEO)
    (prompt,) = imported.masks
    assert prompt.mask[30:40, 40:60].all() and prompt.mask[12:28, 12:28].all()
    assert prompt.mask.sum() == right.sum() + prompt.mask[:, :35].sum()
    assert imported.notes and "2 masks of 1 object(s) on frame 0" in imported.notes[0]


def test_more_prompts_than_the_limit_are_refused_before_decoding(tmp_path):
    """10,001 (frame, object) pairs: refused by the count, before any mask is decoded."""
    from annotation.imports import ImportProblem, read_coco_masks

    video = VideoShape(60, H, W)
    images = [{"id": f + 1, "file_name": f"{f:05d}.jpg", "height": H, "width": W} for f in range(60)]
    annotations = [polygon_annotation(*SQUARE, image_id=f % 60 + 1, track_id=f // 60 + 1) for f in range(10_001)]
    annotations = [a for a in annotations if a["track_id"] <= 255]
    assert len(annotations) > MAX_PROMPTS
    started = time.perf_counter()
    with pytest.raises(ImportProblem, match=r"annotations\[10000\] makes more than 10,000 prompts"):
        read_coco_masks(write_json("p.json", coco(annotations, images))(tmp_path), video)
    assert time.perf_counter() - started < SECONDS


def test_cancel_stops_a_reader(tmp_path):
    import threading

    from annotation.imports import ImportCancelled, read_any

    cancel = threading.Event()
    cancel.set()
    path = write_zip("m.zip", {f"{f:05d}.png": png_of(one_object()) for f in range(3)})(tmp_path)
    for target in (path, many_annotations(100)(tmp_path), write_text("f.txt", "0 0.5 0.5 0.1 0.1\n")(tmp_path)):
        with pytest.raises(ImportCancelled):
            read_any(target, VIDEO, cancel=cancel)


# ----------------------------------------------------------------------------- labels


def test_label_files_lose_a_bom_control_and_zero_width_characters(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_bytes("\ufeffcat\nd\u200bog\n\u200b\u200c\u2060\ufeff\nbi\x07rd\u200d\n".encode())
    assert labels.read_label_file(classes) == ["cat", "dog", "bird"]
    data = tmp_path / "data.yaml"
    data.write_bytes("\ufeffnames: ['\u200b', 'z\u2060ebra', \"c\\x01at\"]\n".encode())
    assert labels.read_label_file(data) == ["", "zebra", "cat"]  # class 0 stays in its place, without a name


def test_a_label_of_invisible_characters_alone_is_not_added():
    from annotation.work import Work

    work = Work(folder=Path("unused"))
    assert labels.add_labels(work, ["\u200b", "\ufeff", "\u200c\u200d", "\x07"]) == []
    assert labels.add_labels(work, ["\ufeffcat", "cat\u200b"]) == ["cat"]


def test_joiners_inside_a_name_stay():
    """An emoji family is three emoji and two zero-width joiners, and Persian writes the
    non-joiner inside words: both are the name; loose or repeated joiners are not."""
    from annotation.formats import clean_name

    family, word = "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert clean_name(family) == family and clean_name(f" \u200d{word}\u200c ") == word
    assert clean_name("a\u200d\u200d\u200db") == "a\u200db" and clean_name("x \u200d y") == "x y"


def test_four_hundred_thousand_names_are_refused_fast(tmp_path):
    """A 5.9 MB data.yaml of 400,000 names: refused by its size, before PyYAML reads it; a
    classes.txt under 1 MB of 120,000 names: refused at its 256th."""
    big = tmp_path / "data.yaml"
    big.write_text("names: [" + ", ".join(f"class_{i:07d}" for i in range(400_000)) + "]\n")
    assert big.stat().st_size > 5 * 2**20
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"'data\.yaml' is \d\.\d MB; the most a label file may be is 1 MB"):
        labels.read_label_file(big)
    many = tmp_path / "classes.txt"
    many.write_text("\n".join(f"n{i}" for i in range(120_000)))
    assert many.stat().st_size < 2**20
    with pytest.raises(UserError, match=r"at most 255 labels; 'classes\.txt' names more than that"):
        labels.read_label_file(many)
    yaml_many = tmp_path / "many.yaml"
    yaml_many.write_text("names: [" + ", ".join(f"n{i}" for i in range(100_000)) + "]\n")
    with pytest.raises(UserError, match=r"'many\.yaml' names more than that"):
        labels.read_label_file(yaml_many)
    from annotation.work import Work

    with pytest.raises(UserError, match="at most 255 labels"):
        labels.add_labels(Work(folder=Path("unused")), [f"name {i}" for i in range(400_000)])
    assert time.perf_counter() - started < SECONDS


def test_forty_thousand_repeats_take_linear_time():
    from annotation.work import Work

    work = Work(folder=Path("unused"))
    names = [f"class {i % 200}" for i in range(40_000)]
    started = time.perf_counter()
    assert labels.add_labels(work, names) == [f"class {i}" for i in range(200)]
    assert labels.add_labels(work, names) == []
    assert time.perf_counter() - started < SECONDS
    assert len(work.labels) == 201  # "object" and the 200


def test_operations_keeps_the_label_names():
    from annotation import operations

    assert operations.MAX_LABELS == labels.MAX_LABELS == 255
    assert operations.add_labels is labels.add_labels and operations.read_label_file is labels.read_label_file
