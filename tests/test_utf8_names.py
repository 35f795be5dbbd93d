"""Class and object names round-trip through every format that writes them, in UTF-8, emoji
and CJK included (issue 18, item 7): read back by readers this project did not write (json,
PyYAML, pycocotools, supervision), each file strict UTF-8."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile

import numpy as np
import pytest
import supervision as sv
import yaml
from pycocotools.coco import COCO

from annotation.datasets import (
    Annotations,
    _yaml_string,
    export_coco,
    export_semantic_png,
    export_yolo_dataset,
    export_ytvis,
)
from annotation.formats import Session, SessionObject, clean_name, export_png_zip, export_session_json, video_ref
from annotation.operations import read_label_file

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W, N = 24, 32, 2

# Emoji (one code point, a ZWJ family, a flag, a skin tone), CJK, combining marks, and names
# YAML would read as something else unquoted: keywords, numbers, ': ', '#', quotes, flow signs.
NAMES = (
    "🐶 dog", "👨‍👩‍👧 family", "🇯🇵", "👍🏽", "猫", "自転車に乗る人", "사람", "e\u0301te", "ß Straße",
    "yes", "No", "null", "~", "1e3", "0x10", "1_000", "2024-01-01", "a: b", "#tag", "tag #x", " lead", "trail ",
    'say "hi"', "it's", "back\\slash", "[x]", "{y}", "&anchor", "*alias", "!tag", "%p", "@at", "`tick", "- dash",
    "? q", "|", ">", "tab\there",
)  # fmt: skip


@pytest.fixture(scope="module")
def data() -> Annotations:
    """One object per name, each a small square on both frames."""
    masks = {}
    for frame in range(N):
        masks[frame] = {}
        for index in range(len(NAMES)):
            mask = np.zeros((H, W), bool)
            y, x = divmod(index, 8)
            mask[y * 4 : y * 4 + 3, x * 4 : x * 4 + 3] = True
            masks[frame][index + 1] = mask
    objects = {index + 1: name for index, name in enumerate(NAMES)}
    return Annotations("walk.mp4", [np.zeros((H, W, 3), np.uint8)] * N, masks, objects, NAMES, (H, W), 5.0)


def utf8(raw: bytes) -> str:
    return raw.decode("utf-8")  # strict: a lone surrogate or a stray byte fails here


def test_data_yaml_reads_back_in_pyyaml_and_as_plain_utf8(data, tmp_path):
    with zipfile.ZipFile(export_yolo_dataset(data, tmp_path)) as archive:
        raw = archive.read("data.yaml")
        archive.extractall(tmp_path / "yolo")
    text = utf8(raw)
    assert yaml.safe_load(text)["names"] == dict(enumerate(NAMES))
    assert yaml.safe_load(text)["nc"] == len(NAMES)
    for name in ("🐶 dog", "👨‍👩‍👧 family", "猫", "사람"):
        assert f'"{name}"' in text  # the text itself, not \U or surrogate escapes
    assert "\\u" not in text and "\\U" not in text
    root = tmp_path / "yolo"
    dataset = sv.DetectionDataset.from_yolo(
        images_directory_path=str(root / "images" / "train"), annotations_directory_path=str(root / "labels" / "train"),
        data_yaml_path=str(root / "data.yaml"),
    )  # fmt: skip
    assert dataset.classes == list(NAMES)


def test_our_label_loader_reads_the_data_yaml_back(data, tmp_path):
    """The app's own "load labels" on the file the export wrote: each name as the page cleans
    any name typed there (outer spaces folded...), the emoji kept."""
    path = tmp_path / "data.yaml"
    with zipfile.ZipFile(export_yolo_dataset(data, tmp_path)) as archive:
        path.write_bytes(archive.read("data.yaml"))
    assert read_label_file(path) == [clean_name(name) for name in NAMES]
    assert "🐶 dog" in read_label_file(path) and "猫" in read_label_file(path)


@pytest.mark.parametrize(
    "name",
    ["\x85nel", "line\u2028sep", "para\u2029sep", "\ufeffbom", "del\x7f", "c1\x9b", "\ufffe\uffff", "lone \ud83d",
     "ctl\x00\x01\x1b", "new\nline", "cr\r", "\\u0041 literally", "\U0010fffd", "\u00a0nbsp"],
)  # fmt: skip
def test_a_yaml_string_is_one_line_that_pyyaml_reads_as_the_same_text(name):
    """Characters a YAML file cannot hold as they are (its line breaks, controls, the BOM, lone
    surrogates) are escaped; page names never hold them, but the writer does not rely on that."""
    quoted = _yaml_string(name)
    assert "\n" not in quoted and "\r" not in quoted
    quoted.encode("ascii" if "\ud83d" in name else "utf-8")
    assert yaml.safe_load(f"names:\n  0: {quoted}\n")["names"] == {0: name}


def test_a_yaml_string_round_trips_random_text():
    rng = np.random.default_rng(0)
    pool = [chr(c) for c in (*range(0, 0x250), *range(0x2000, 0x2070), 0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0xD800, 0xDFFF,
                             0x1F436, 0x1F468, 0x200D, 0x10FFFF, *range(0x4E00, 0x4E20))]  # fmt: skip
    for _ in range(2000):
        name = "".join(rng.choice(pool, int(rng.integers(0, 12))))
        assert yaml.safe_load(f"names:\n  0: {_yaml_string(name)}\n")["names"] == {0: name}, ascii(name)


def test_coco_categories_read_back_in_pycocotools(data, tmp_path):
    path = export_coco(data, tmp_path)
    assert json.loads(utf8(path.read_bytes()))["categories"][0]["name"] == "🐶 dog"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    assert [coco.cats[i + 1]["name"] for i in range(len(NAMES))] == list(NAMES)
    assert coco.getCatIds(catNms=["猫"]) == [NAMES.index("猫") + 1]


def test_coco_zip_categories_read_back(data, tmp_path):
    with zipfile.ZipFile(export_coco(data, tmp_path, with_images=True)) as archive:
        document = json.loads(utf8(archive.read("annotations.json")))
    assert [c["name"] for c in document["categories"]] == list(NAMES)


def test_youtube_vis_categories_read_back(data, tmp_path):
    document = json.loads(utf8(export_ytvis(data, tmp_path).read_bytes()))
    assert [c["name"] for c in document["categories"]] == list(NAMES)


def test_semantic_classes_json_reads_back(data, tmp_path):
    with zipfile.ZipFile(export_semantic_png(data, tmp_path)) as archive:
        classes = json.loads(utf8(archive.read("classes.json")))
    assert classes == {"0": "background", **{str(i + 1): name for i, name in enumerate(NAMES)}}


def test_png_zip_objects_json_reads_back(data, tmp_path):
    objects = dict(data.objects)
    with zipfile.ZipFile(export_png_zip(data.masks, N, (H, W), objects, tmp_path)) as archive:
        names = json.loads(utf8(archive.read("objects.json")))
    assert names == {str(k): v for k, v in objects.items()}


def test_session_file_names_and_labels_read_back(tmp_path):
    frames = [np.zeros((H, W, 3), np.uint8)] * N
    objects = [SessionObject(i + 1, name, (255, 0, 0), label=NAMES[-1 - i]) for i, name in enumerate(NAMES)]
    session = Session(video_ref("🐶 walk 猫.mp4", frames, 5.0), objects, [], labels=list(NAMES))
    document = json.loads(utf8(export_session_json(session, tmp_path).read_bytes()))
    assert document["labels"] == list(NAMES)
    assert [(o["name"], o["label"]) for o in document["objects"]] == [(o.name, o.label) for o in objects]
    assert document["video"]["name"] == "🐶 walk 猫.mp4"
