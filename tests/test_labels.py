"""Classes in the core: every object has a label from the video's list; new objects take the
last one used; renaming a label renames it everywhere; session files keep labels (older files
load with one label); the exports go by class. On the real engine with tiny frames."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sam2
from annotation import formats, operations
from annotation.document import UserError
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import DecodedVideo, VideoInfo
from tests.reference import reference_state_dict

H, W, N = 24, 32, 4


@pytest.fixture(scope="module")
def engine() -> Engine:
    predictor = sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=64, corrections_as_cond=True
    )
    return Engine(predictor)


def loaded(tmp_path: Path, engine: Engine) -> Work:
    frames = []
    for i in range(N):
        frame = np.full((H, W, 3), 20, np.uint8)
        frame[6:16, 4 + 2 * i : 14 + 2 * i] = (200, 100, 50)
        frames.append(frame)
    work = Work(folder=tmp_path / "work")
    info = VideoInfo(tmp_path / "walk.mp4", W, H, 5.0, N / 5.0, N, 0, False, "h264")
    operations.open_video(work, engine, DecodedVideo(frames, 5.0, info, None, [i / 5 for i in range(N)]), "walk.mp4")
    return work


def test_objects_take_the_last_label_and_renames_reach_every_object(tmp_path, engine):
    work = loaded(tmp_path, engine)
    assert work.labels == ["object"] and work.registry[1].label == "object"
    assert operations.add_labels(work, ["person", "  ball\n", "person", ""]) == ["person", "ball"]
    operations.set_label(work, 1, "person")
    second = operations.add_object(work)
    assert second.label == "person"  # the last label chosen
    operations.set_label(work, second.id, "ball")
    assert operations.add_object(work).label == "ball"
    operations.rename_label(work, "ball", "football")
    assert [o.label for o in work.objects] == ["person", "football", "football"]
    assert work.labels == ["object", "person", "football"] and work.last_label == "football"
    with pytest.raises(UserError, match="There is a label 'person' already"):
        operations.rename_label(work, "football", "person")
    with pytest.raises(UserError, match="'football' is the label of 'object 2', 'object 3'"):
        operations.remove_label(work, "football")
    with pytest.raises(UserError, match="'cat' is not one of the labels"):
        operations.set_label(work, 1, "cat")
    assert operations.remove_label(work, "object") == "Removed the label 'object'."
    with pytest.raises(UserError, match="at most 255 labels"):
        operations.add_labels(work, [f"class {i}" for i in range(300)])
    assert len(work.labels) == 2  # nothing added by the refused call


def test_label_files(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("person\n\n  red   car \nbicycle\n")
    assert operations.read_label_file(classes) == ["person", "red car", "bicycle"]
    as_list = tmp_path / "data.yaml"
    as_list.write_text("path: .\ntrain: images\nnames: [cat, dog]\n")
    assert operations.read_label_file(as_list) == ["cat", "dog"]
    as_dict = tmp_path / "other.yml"
    as_dict.write_text("names:\n  1: dog\n  0: cat\n  10: 'zebra: striped'\n")
    assert operations.read_label_file(as_dict) == ["cat", "dog", "zebra: striped"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("names: [unclosed\n")
    with pytest.raises(UserError, match="'broken.yaml' is not a YOLO data.yaml"):
        operations.read_label_file(broken)


def test_session_files_keep_labels_and_older_files_load(tmp_path, engine):
    work = loaded(tmp_path, engine)
    operations.add_labels(work, ["person", "dog"])
    operations.set_label(work, 1, "dog")
    operations.click(work, engine, 0, 9, 10, "add")
    path = formats.export_session_json(operations.session_record(work), tmp_path)
    document = json.loads(path.read_text())
    assert document["labels"] == ["object", "person", "dog"] and document["objects"][0]["label"] == "dog"

    fresh = loaded(tmp_path / "b", engine)
    operations.load_session(fresh, engine, path)
    assert fresh.labels == ["object", "person", "dog"] and fresh.registry[1].label == "dog"

    document.pop("labels")  # a file saved before labels existed
    document["objects"][0].pop("label")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    older = loaded(tmp_path / "c", engine)
    operations.load_session(older, engine, old)
    assert older.labels == ["object"] and older.registry[1].label == "object"


def test_exports_go_by_label(tmp_path, engine):
    work = loaded(tmp_path, engine)
    operations.add_labels(work, ["person"])
    operations.click(work, engine, 0, 9, 10, "add")
    operations.add_object(work)
    operations.click(work, engine, 0, 25, 20, "add")
    operations.set_label(work, 2, "person")
    operations.rename_label(work, "person", "runner")
    coco, yolo = operations.export(work, ["coco", "yolo"], tmp_path)
    document = json.loads(coco.read_text())
    assert [c["name"] for c in document["categories"]] == ["object", "runner"]
    assert {(a["track_id"], a["category_id"]) for a in document["annotations"]} == {(1, 1), (2, 2)}
    with zipfile.ZipFile(yolo) as archive:
        assert '  1: "runner"' in archive.read("data.yaml").decode()
        assert sorted(n for n in archive.namelist() if n.startswith("images/")) == [
            f"images/train/walk_{f:05d}.jpg" for f in range(N)
        ]


def test_the_default_label_is_a_class_only_when_an_object_uses_it(tmp_path, engine):
    """Labels 'object' (always there, unused here), 'person' and 'car' (added, 'car' unused):
    every class list in the files is person, car, with ids by that list; the session keeps all three."""
    work = loaded(tmp_path, engine)
    operations.add_labels(work, ["person", "car"])
    operations.set_label(work, 1, "person")
    operations.click(work, engine, 0, 9, 10, "add")
    assert work.labels == ["object", "person", "car"]
    made = operations.export(work, ["coco", "ytvis", "yolo", "semantic", "session"], tmp_path)
    coco, ytvis, yolo, semantic, session = (next(p for p in made if kind in p.name)
                                            for kind in ("coco", "ytvis", "yolo", "semantic", "session"))
    for path in (coco, ytvis):
        document = json.loads(path.read_text())
        assert [(c["id"], c["name"]) for c in document["categories"]] == [(1, "person"), (2, "car")]
        assert {a["category_id"] for a in document["annotations"]} == {1}
    with zipfile.ZipFile(yolo) as archive:
        data_yaml = archive.read("data.yaml").decode()
        assert '  0: "person"' in data_yaml and '  1: "car"' in data_yaml and "object" not in data_yaml
        first = archive.read("labels/train/walk_00000.txt").decode()
        assert first.startswith("0 ")  # the person's class is 0
    with zipfile.ZipFile(semantic) as archive:
        assert json.loads(archive.read("classes.json")) == {"0": "background", "1": "person", "2": "car"}
        values = np.unique(np.asarray(Image.open(io.BytesIO(archive.read(next(
            n for n in archive.namelist() if n.endswith("00000.png")))))))
        assert set(values.tolist()) == {0, 1}
    assert json.loads(session.read_text())["labels"] == ["object", "person", "car"]

    operations.add_object(work)  # now an object has the default label: it is a class again, first in the list
    operations.set_label(work, 2, "object")
    operations.click(work, engine, 0, 25, 20, "add")
    (tmp_path / "again").mkdir()
    document = json.loads(operations.export(work, ["coco"], tmp_path / "again")[0].read_text())
    assert [c["name"] for c in document["categories"]] == ["object", "person", "car"]
    assert {(a["track_id"], a["category_id"]) for a in document["annotations"]} == {(1, 2), (2, 1)}
