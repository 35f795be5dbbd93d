"""Hand-made and hostile session files, loaded as the page loads them (``annotation.operations``
on the real engine: the SAM 2 predictor with the reference weights at image size 64, on the
small synthetic video of test_app_units).

Every bad file gets a plain message that names the field, and the work it was loaded into is
untouched: the same document (masks, prompts, tracked frames), the same undo and redo
history, the same objects and labels, the same predictor session holding the same prompts;
and the next click and export work. Loading is all or nothing, also when it fails or is
cancelled part-way. A few of these cases also run through the real app (test_app_api.py)."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

import sam2
from annotation import formats
from annotation import operations as annotate
from annotation.document import UserError
from annotation.engine import Engine
from tests.reference import reference_state_dict
from tests.test_app_units import IMAGE_SIZE, N, make_work, stored_prompt, tracked_work
from ui import views
from ui.sessions import WorkState

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def engine() -> Engine:
    predictor = sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, corrections_as_cond=True
    )
    return Engine(predictor)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session-files")


@pytest.fixture(scope="module")
def saved(folder: Path, engine: Engine) -> dict:
    """A real session file's document: two objects, three prompts, masks from prompts and
    from tracking, found and lost frames, one object hidden."""
    (path,) = annotate.export(tracked_work(folder, engine, "source"), ["session"])
    document = json.loads(path.read_text())
    assert len(document["objects"]) == 2 and len(document["prompts"]) == 3 and len(document["masks"]) == 2 * N
    return document


@pytest.fixture(scope="module")
def target(folder: Path, engine: Engine) -> WorkState:
    """The page the files are loaded into: its own click and tracking run, so that it has
    masks, tracked frames, undo steps and a predictor session to lose."""
    work = make_work(folder, engine, "target")
    annotate.click(work, engine, 2, 8, 10, "add")
    annotate.start_tracking(work, engine, 2, "forward", 3).join()
    assert not work.progress.error and len(work.undo) == 2 and work.doc.tracked
    return work


@dataclass
class State:
    """Everything of a work that a failed load must leave as it was."""

    doc: object
    undo: list
    redo: list
    registry: dict
    labels: list
    active: int | None
    handle: object
    predictor_prompts: dict

    @classmethod
    def of(cls, work: WorkState, engine: Engine) -> State:
        handle = work.video.handle
        prompts = {(f, o): stored_prompt(work, o, f) for f, o in work.doc.prompts()}
        return cls(work.doc, list(work.undo), list(work.redo), dict(work.registry), list(work.labels), work.active,
                   handle, prompts)  # fmt: skip


def assert_unchanged(work: WorkState, engine: Engine, before: State) -> None:
    after = State.of(work, engine)
    assert after.doc is before.doc  # the very same document: masks, prompts, tracked frames
    assert after.undo == before.undo and after.redo == before.redo
    assert after.registry == before.registry and after.labels == before.labels and after.active == before.active
    assert after.handle is before.handle and after.predictor_prompts == before.predictor_prompts
    assert engine.object_ids(work.video.handle) == [1]


def assert_still_works(work: WorkState, engine: Engine, folder: Path) -> None:
    """The next click and the exports work, then the click is undone (the next case starts
    from the same state)."""
    before = work.doc
    assert "Added a point +" in annotate.click(work, engine, 2, 14, 10, "add")
    assert work.doc.prompts()[(2, 1)].points[-1] == (14.0, 10.0) and (2, 1) not in work.doc.tracked
    assert stored_prompt(work, 1, 2)[0][-1] == (14.0, 10.0)  # and the predictor has it
    out = folder / "exports"
    out.mkdir(exist_ok=True)
    made = annotate.export(work, ["png", "coco", "yolo", "session"], out)
    assert [p.name for p in made] == ["v_session.json", "v_masks.zip", "v_coco.json", "v_yolo.zip"]
    assert sorted(formats.read_png_zip(made[1])) == list(range(N))
    annotate.undo(work, engine)
    assert work.doc is before


# ----------------------------------------------------------------------------- the corpus

Edit = Callable[[dict], None]


def at(*keys: object, value: object) -> Edit:
    """Set document[k1][k2]... = value."""

    def edit(document: dict) -> None:
        place = document
        for key in keys[:-1]:
            place = place[key]
        place[keys[-1]] = value

    return edit


def drop(*keys: object) -> Edit:
    def edit(document: dict) -> None:
        place = document
        for key in keys[:-1]:
            place = place[key]
        del place[keys[-1]]

    return edit


def many_objects(count: int) -> Edit:
    def edit(document: dict) -> None:
        template = document["objects"][0]
        document["objects"] = [{**template, "id": i + 1, "name": f"o{i}"} for i in range(count)]

    return edit


def repeated_prompts(count: int) -> Edit:
    """The same object's prompt on the same frame, ``count`` times (a 218 KB file of 3,000 of
    them once took 173 s to load)."""

    def edit(document: dict) -> None:
        document["prompts"] = [copy.deepcopy(document["prompts"][0]) for _ in range(count)]

    return edit


def many_prompts(count: int) -> Edit:
    def edit(document: dict) -> None:
        document["prompts"] = [{**document["prompts"][0], "frame": i % N} for i in range(count)]

    return edit


def packed_bits(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


def mask_bits(data: bytes) -> Edit:
    return at("masks", 0, "bits", value=packed_bits(data))


def mask_prompt(top: int, left: int, height: int, width: int, **extra: object) -> Edit:
    """prompts[0] (object 1, frame 2) given as a mask instead of its click."""
    bits = packed_bits(np.packbits(np.ones(height * width, bool)).tobytes())
    prompt = {"frame": 2, "obj_id": 1, "points": [], "labels": [], "box": None,
              "mask": {"box": [top, left, height, width], "bits": bits}, **extra}  # fmt: skip
    return at("prompts", 0, value=prompt)


# (id, edit of a real file's document, or the file's raw text, and what the message must say)
CASES: list[tuple[str, Edit | str | bytes, str]] = [
    # malformed files
    ("not json", "this is not JSON", "not valid JSON"),
    ("empty file", "", "not valid JSON"),
    ("not utf-8", b"\xff\xfe\x00{\x00}", "not UTF-8 text"),
    ("top-level list", "[]", "must be a JSON object"),
    ("top-level number", "12", "must be a JSON object"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("deeply nested field", "NEST", "nested too deeply"),
    ("a 5000-digit number", '{"version": ' + "9" * 5000 + "}", "a number too long to read"),
    # version
    ("no version", drop("version"), "the file has no 'version'"),
    ("version 3", at("version", value=3), "version 3, and this app reads versions 1 and 2"),
    ("version as text", at("version", value="2"), "another version"),
    ("version true", at("version", value=True), "another version"),
    ("version 10**30", at("version", value=10**30), "another version"),
    # video
    ("no video", drop("video"), "has no 'video'"),
    ("video a list", at("video", value=[]), "'video' must be an object"),
    ("frames 0", at("video", "frames", value=0), r"video\.frames must be a whole number from 1 to"),
    ("frames negative", at("video", "frames", value=-6), r"video\.frames must be a whole number"),
    ("frames 10**30", at("video", "frames", value=10**30), r"video\.frames must be a whole number"),
    ("frames 6.0", at("video", "frames", value=6.0), r"video\.frames must be a whole number"),
    ("frames as text", at("video", "frames", value="6"), r"video\.frames must be a whole number"),
    ("width 2**40", at("video", "width", value=2**40), r"video\.width must be a whole number"),
    ("height 1e30", at("video", "height", value=1e30), r"video\.height must be a whole number"),
    ("fps NaN", at("video", "fps", value=math.nan), r"video\.fps must be a finite number"),
    ("fps infinite", at("video", "fps", value=math.inf), r"video\.fps must be a finite number"),
    ("fps 0", at("video", "fps", value=0), r"video\.fps must be a number above 0"),
    ("fps as text", at("video", "fps", value="5"), r"video\.fps must be a finite number"),
    ("fingerprint a number", at("video", "fingerprint", value=5), r"video\.fingerprint must be text"),
    ("fingerprint huge", at("video", "fingerprint", value="f" * 1_000_000), r"video\.fingerprint must be the"),
    ("name a number", at("video", "name", value=7), r"video\.name must be text"),
    ("another size", at("video", "width", value=64), "saved for a 64x24 video"),
    ("another video", at("video", "fingerprint", value="0123456789abcdef"), "saved for another video"),
    ("another length", at("video", "frames", value=N + 1), "saved for another video"),
    # objects
    ("no objects", drop("objects"), "has no 'objects'"),
    ("objects a dict", at("objects", value={}), "objects must be a list"),
    ("objects empty", at("objects", value=[]), "'objects' is empty"),
    ("256 objects", many_objects(256), "'objects' has 256 objects; the most is 255"),
    ("50,000 objects", many_objects(50_000), "'objects' has 50000 objects; the most is 255"),
    ("object a number", at("objects", 0, value=3), r"objects\[0\] must be an object"),
    ("id 0", at("objects", 0, "id", value=0), r"objects\[0\]\.id must be a whole number from 1 to 255"),
    ("id -1", at("objects", 0, "id", value=-1), r"objects\[0\]\.id must be a whole number from 1 to 255"),
    ("id 256", at("objects", 0, "id", value=256), r"objects\[0\]\.id must be a whole number from 1 to 255"),
    ("id 2**40", at("objects", 0, "id", value=2**40), r"objects\[0\]\.id must be a whole number"),
    ("id 10**30", at("objects", 1, "id", value=10**30), r"objects\[1\]\.id must be a whole number"),
    ("id 1.5", at("objects", 0, "id", value=1.5), r"objects\[0\]\.id must be a whole number"),
    ("id as text", at("objects", 0, "id", value="1"), r"objects\[0\]\.id must be a whole number"),
    ("id true", at("objects", 0, "id", value=True), r"objects\[0\]\.id must be a whole number"),
    ("two objects one id", at("objects", 1, "id", value=1), r"objects\[1\]\.id is 1, the id of another object"),
    ("no name", drop("objects", 0, "name"), r"objects\[0\] has no 'name'"),
    ("name a list", at("objects", 0, "name", value=["a"]), r"objects\[0\]\.name must be text"),
    ("name blank", at("objects", 0, "name", value=" \n\t "), r"objects\[0\]\.name is empty"),
    ("name only controls", at("objects", 0, "name", value="\u202e\x00\u2066"), r"objects\[0\]\.name is empty"),
    ("name a lone surrogate", at("objects", 0, "name", value="\ud800"), r"objects\[0\]\.name is empty"),
    ("colour wrong", at("objects", 0, "color", value=[300, 0, 0]), r"objects\[0\]\.color must be three integers"),
    ("colour NaN", at("objects", 0, "color", value=[math.nan, 0, 0]), r"objects\[0\]\.color must be a finite"),
    ("visible as text", at("objects", 0, "visible", value="yes"), r"objects\[0\]\.visible must be true or false"),
    ("label blank", at("objects", 0, "label", value="  "), r"objects\[0\]\.label is empty"),
    ("labels a dict", at("labels", value={"a": 1}), "labels must be a list"),
    ("256 labels", at("labels", value=[f"c{i}" for i in range(256)]), "'labels' has 256 names; the most is 255"),
    # prompts
    ("no prompts", drop("prompts"), "has no 'prompts'"),
    ("prompts a dict", at("prompts", value={}), "prompts must be a list"),
    ("3000 repeated prompts", repeated_prompts(3000), r"prompts\[1\] is a second prompt of object 1 on frame 2"),
    ("10,001 prompts", many_prompts(10_001), "'prompts' has 10001 prompts; the most is 10000"),
    ("prompt a list", at("prompts", 0, value=[]), r"prompts\[0\] must be an object"),
    ("frame -1", at("prompts", 0, "frame", value=-1), r"prompts\[0\]\.frame must be a whole number from 0"),
    ("frame 99", at("prompts", 0, "frame", value=99), r"prompts\[0\] is on frame 99, but the video has 6 frames"),
    ("frame 10**30", at("prompts", 0, "frame", value=10**30), r"prompts\[0\]\.frame must be a whole number"),
    ("frame 2.0", at("prompts", 0, "frame", value=2.0), r"prompts\[0\]\.frame must be a whole number"),
    ("prompt of object 0", at("prompts", 0, "obj_id", value=0), r"prompts\[0\]\.obj_id must be a whole number"),
    ("prompt of object 9", at("prompts", 0, "obj_id", value=9), r"prompts\[0\] is for object 9, which is not in"),
    ("points a dict", at("prompts", 0, "points", value={}), r"prompts\[0\]\.points must be a list"),
    ("101 points", at("prompts", 0, "points", value=[[1, 1]] * 101), r"prompts\[0\] has more than 100 points"),
    ("point at 1e30", at("prompts", 0, "points", 0, value=[1e30, 5]), r"points\[0\] \(1e\+30, 5\) is outside the 32"),
    ("point at 1e300", at("prompts", 0, "points", 0, value=[4, 1e300]), r"points\[0\] \(4, 1e\+300\) is outside"),
    ("point at -5", at("prompts", 0, "points", 0, value=[-5, 5]), r"prompts\[0\]\.points\[0\] \(-5, 5\) is outside"),
    ("point NaN", at("prompts", 0, "points", 0, value=[math.nan, 5]), r"points\[0\] must be a finite number"),
    ("point infinite", at("prompts", 0, "points", 0, value=[math.inf, 5]), r"points\[0\] must be a finite number"),
    ("point of 3", at("prompts", 0, "points", 0, value=[1, 2, 3]), r"points\[0\] must be a list of 2 numbers"),
    ("point as text", at("prompts", 0, "points", 0, value=["1", "2"]), r"points\[0\] must be a finite number"),
    ("labels too few", at("prompts", 0, "labels", value=[]), r"prompts\[0\]\.labels must hold one 0 or 1 per point"),
    ("label 2", at("prompts", 0, "labels", value=[2]), r"prompts\[0\]\.labels must hold one 0 or 1 per point"),
    ("label true", at("prompts", 0, "labels", value=[True]), r"prompts\[0\]\.labels must hold one 0 or 1"),
    ("box outside", at("prompts", 1, "box", value=[0, 0, 1e30, 5]), r"prompts\[1\]\.box reaches outside the 32x24"),
    ("box inside out", at("prompts", 1, "box", value=[20, 12, 10, 2]), r"prompts\[1\]\.box must be \[left, top"),
    ("box of 3", at("prompts", 1, "box", value=[1, 2, 3]), r"prompts\[1\]\.box must be a list of 4 numbers"),
    ("nothing to prompt", at("prompts", 1, "box", value=None), r"prompts\[1\] has neither points nor a box"),
    # masks
    ("no masks", drop("masks"), "has no 'masks'"),
    ("masks a dict", at("masks", value={}), "masks must be a list"),
    ("a mask too many", lambda d: d["masks"].append(d["masks"][0]), "more than one per object and frame"),
    ("mask a number", at("masks", 0, value=1), r"masks\[0\] must be an object"),
    ("mask frame 6", at("masks", 0, "frame", value=6), r"masks\[0\] is on frame 6, but the video has 6 frames"),
    ("mask frame -1", at("masks", 0, "frame", value=-1), r"masks\[0\]\.frame must be a whole number"),
    ("mask of object 0", at("masks", 0, "obj_id", value=0), r"masks\[0\]\.obj_id must be a whole number from 1"),
    ("mask of object 9", at("masks", 0, "obj_id", value=9), r"masks\[0\] is for object 9"),
    ("mask twice", at("masks", 2, "frame", value=0), r"masks\[2\] is a second mask of object 1 on frame 0"),
    ("tracked as text", at("masks", 0, "tracked", value="yes"), r"masks\[0\]\.tracked must be true or false"),
    ("box negative", at("masks", 0, "box", value=[-1, 0, 2, 2]), "four whole numbers >= 0"),
    ("box 2**62", at("masks", 0, "box", value=[0, 0, 2**62, 2**62]), "reaches outside the 32x24 frame"),
    ("box floats", at("masks", 0, "box", value=[0.0, 0, 2, 2]), "four whole numbers >= 0"),
    ("bits not base64", at("masks", 0, "bits", value="@@@"), r"masks\[0\]\.bits is not base64 of zlib data"),
    ("bits not ascii", at("masks", 0, "bits", value="é"), r"masks\[0\]\.bits is not base64 of zlib data"),
    ("bits not zlib", at("masks", 0, "bits", value="AAAA"), r"masks\[0\]\.bits is not base64 of zlib data"),
    ("bits too few", mask_bits(b"\xff"), r"masks\[0\]\.bits does not hold the 38 bytes its box needs"),
    ("bits a zip bomb", mask_bits(b"\xff" * 50_000_000), r"does not hold the 38 bytes its box needs"),
    # a mask given as a prompt
    ("mask prompt and a click", mask_prompt(0, 0, 4, 4, points=[[1, 1]], labels=[1]), r"prompts\[0\] has a mask and"),
    ("mask prompt outside", mask_prompt(20, 0, 8, 8), r"prompts\[0\]\.mask\.box reaches outside the 32x24 frame"),
    ("mask prompt a list", lambda d: (mask_prompt(0, 0, 4, 4)(d), d["prompts"][0].update(mask=[1])),
     r"prompts\[0\]\.mask has the wrong type"),
]


def write_case(folder: Path, document: dict, content: Edit | str | bytes) -> Path:
    path = folder / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "NEST":  # a valid file but for one field nested 100,000 deep
        text = json.dumps(document).replace('"name": "object 1"', '"name": ' + "[" * 100_000 + "]" * 100_000, 1)
        path.write_text(text)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        changed = copy.deepcopy(document)
        content(changed)
        path.write_text(json.dumps(changed))
    return path


@pytest.mark.parametrize(("content", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_session_file_gets_a_plain_message_and_changes_nothing(target, engine, saved, folder, content, message):
    before = State.of(target, engine)
    path = write_case(folder, saved, content)
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        annotate.load_session(target, engine, path)
    elapsed = time.monotonic() - started
    text = str(error.value)
    assert re.search(message, text), text
    assert len(text) < 300 and "Traceback" not in text and str(folder) not in text  # one plain sentence
    assert elapsed < 5, f"{elapsed:.1f} s to refuse it"  # checked, not replayed
    assert_unchanged(target, engine, before)
    assert_still_works(target, engine, folder)


def test_a_file_over_the_size_limit_is_not_read(target, engine, folder):
    """A file over MAX_SESSION_BYTES is refused by its size, before it is read."""
    path = folder / "huge.json"
    with path.open("wb") as out:
        out.truncate(formats.MAX_SESSION_BYTES + 1)  # sparse: the size without the bytes
    before = State.of(target, engine)
    with pytest.raises(UserError, match=r"'huge.json' is too large for a session file \(64 MB; the most is 64 MB\)"):
        annotate.load_session(target, engine, path)
    assert_unchanged(target, engine, before)


def test_masks_past_the_bits_limit_are_refused(target, engine, saved, folder, monkeypatch):
    """Masks of a small file can inflate to gigabytes (well-compressed full-frame boxes for
    every object and frame): MAX_MASK_BYTES stops that before the bits are inflated. Here the
    limit is lowered to one byte less than the small test video's masks hold."""
    held = sum((m["box"][2] * m["box"][3] + 7) // 8 for m in saved["masks"])
    monkeypatch.setattr(formats, "MAX_MASK_BYTES", held - 1)
    before = State.of(target, engine)
    last = len(saved["masks"]) - 1 - next(i for i, m in enumerate(reversed(saved["masks"])) if m["box"][2])
    message = rf"the masks hold more than 0 MB of mask bits, the most a file may \(at masks\[{last}\]\)"
    with pytest.raises(UserError, match=message):
        annotate.load_session(target, engine, write_case(folder, saved, lambda d: None))
    assert_unchanged(target, engine, before)
    monkeypatch.setattr(formats, "MAX_MASK_BYTES", held)
    made = formats.load_session_json(write_case(folder, saved, lambda d: None))  # exactly at the limit: fine
    assert len(made.masks) == len(saved["masks"])

    # A mask given as a prompt (here the whole 32x24 frame: 96 bytes) counts towards the same limit.
    with pytest.raises(formats.SessionError, match="the masks hold more than 0 MB of mask bits"):
        formats.load_session_json(write_case(folder, saved, mask_prompt(0, 0, 24, 32)))
    monkeypatch.setattr(formats, "MAX_MASK_BYTES", held + 96)
    made = formats.load_session_json(write_case(folder, saved, mask_prompt(0, 0, 24, 32)))
    assert made.prompts[0].mask is not None and len(made.masks) == len(saved["masks"])


# ----------------------------------------------------------------------------- what a file may hold


def test_names_are_cleaned_as_the_page_cleans_them(tmp_path, engine, saved):
    """Names and labels as a hostile file may write them: loaded as text, folded to one line of
    at most 60 characters, controls dropped; the exports list each name once, on one line."""
    document = copy.deepcopy(saved)
    document["objects"][0]["name"] = "two\nlines\r\n<b>bold</b>" + "x" * 100
    document["objects"][1]["name"] = "\u202eevil\x00 [link](http://example.com) \ud800 $$x$$"
    document["objects"][1]["label"] = "dog\nclass\tB"
    document["labels"] = ["object", "cat\r\n", "  cat  "]
    path = tmp_path / "names.json"
    path.write_text(json.dumps(document))
    work = make_work(tmp_path, engine, "names")
    annotate.load_session(work, engine, path)
    first, second = (work.registry[i].name for i in (1, 2))
    assert first == ("two lines <b>bold</b>" + "x" * 100)[:60]
    assert second == "evil [link](http://example.com) $$x$$"
    assert work.labels == ["object", "cat", "dog class B"] and work.registry[2].label == "dog class B"
    coco, yolo = annotate.export(work, ["coco", "yolo"])
    assert [c["name"] for c in json.loads(coco.read_text())["categories"]] == work.labels
    with zipfile.ZipFile(yolo) as archive:
        names = yaml.safe_load(archive.read("data.yaml"))["names"]
    assert names == dict(enumerate(work.labels))  # one name per class, each read back as written
    # Shown on the page, names are text: the status line escapes Markdown, toasts and the legend HTML.
    assert "<b>" not in views.legend_html(work) and "&lt;b&gt;bold&lt;/b&gt;" in views.legend_html(work)


def test_a_byte_order_mark_is_fine(tmp_path, engine, saved):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(saved).encode())
    work = make_work(tmp_path, engine, "bom")
    assert "Loaded 2 object(s) and 3 prompt(s)" in annotate.load_session(work, engine, path)


def test_a_prompts_file_is_held_to_the_same_rules(tmp_path):
    """The command line's prompts files: ids 1..255, names cleaned, one prompt per object and
    frame (a second one on the same frame would silently replace the first), finite numbers."""
    cases = [
        ({"objects": [{"id": 0, "prompts": []}]}, r"objects\[0\]\.id must be a whole number from 1 to 255"),
        ({"objects": [{"id": 10**30, "prompts": []}]}, r"objects\[0\]\.id must be a whole number"),
        ({"objects": [{"name": "\n", "prompts": []}]}, r"objects\[0\]\.name is empty"),
        ({"objects": [{"prompts": [{"frame": 0, "box": [1, 1, 9, 9]}, {"frame": 0, "points": [[2, 2]]}]}]},
         r"objects\[0\]\.prompts\[1\] is a second prompt on frame 0"),
        ({"objects": [{"prompts": [{"frame": -3, "points": [[2, 2]]}]}]}, r"prompts\[0\]\.frame must be a whole"),
        ({"objects": [{"prompts": [{"frame": 0, "points": [[math.nan, 2]]}]}]}, "must be a finite number"),
        ([], "must be a JSON object with 'objects'"),
    ]
    for document, message in cases:
        path = tmp_path / "prompts.json"
        path.write_text(json.dumps(document))
        with pytest.raises(formats.SessionError, match=message):
            formats.load_prompts_json(path)
    path.write_text(json.dumps({"objects": [{"name": "a\nb", "prompts": [{"frame": 0, "points": [[2, 2]]}]}]}))
    assert formats.load_prompts_json(path).objects[0].name == "a b"


# ----------------------------------------------------------------------------- all or nothing


def test_a_failure_part_way_through_the_replay_changes_nothing(tmp_path, engine, saved):
    """The predictor refuses the last prompt of a session (here one made in code, as a Python
    user might, outside the video) after the others were replayed: the work, its undo history
    and its predictor session are as they were, and the next click works."""
    work = make_work(tmp_path, engine, "atomic")
    annotate.click(work, engine, 2, 8, 10, "add")
    before = State.of(work, engine)
    path = tmp_path / "good.json"
    path.write_text(json.dumps(saved))
    session = formats.load_session_json(path)
    session.prompts.append(formats.Prompt(N + 3, 1, [(4.0, 4.0)], [1]))  # frame 9 of 6
    with pytest.raises(IndexError, match="Frame index 9 is outside the video"):
        annotate.apply_session(work, engine, session)
    assert_unchanged(work, engine, before)
    assert "Added a point +" in annotate.click(work, engine, 2, 14, 10, "add")


def test_a_cancelled_load_changes_nothing(tmp_path, engine, saved):
    """Cancel while a file's prompts are replayed (the page's way: start_loading runs it on a
    thread that holds the session): nothing changes, the progress line says so, and the session
    is free again."""
    work = make_work(tmp_path, engine, "cancel")
    annotate.click(work, engine, 2, 8, 10, "add")
    document = copy.deepcopy(saved)
    document["prompts"] = [{**saved["prompts"][0], "frame": f, "obj_id": o} for f in range(N) for o in (1, 2)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(document))
    before = State.of(work, engine)
    loading = annotate.start_loading(work, engine, path)
    assert work.progress.running and work.progress.total == 2 * N
    with pytest.raises(UserError, match="Loading the session file is still running"):
        annotate.start_loading(work, engine, path)
    deadline = time.monotonic() + 60
    while work.progress.done < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    work.cancel.set()
    loading.thread.join(60)
    assert work.progress.cancelled and not work.progress.running and 0 < work.progress.done < 2 * N
    assert loading.message == ""
    assert work.progress.summary().endswith("Cancelled: your objects, clicks and masks stay as they were.")
    assert_unchanged(work, engine, before)
    assert work.lock.acquire(blocking=False)
    work.lock.release()

    # The same file loaded to the end: all of it at once, undoable as one step.
    loading = annotate.start_loading(work, engine, path)
    loading.thread.join(120)
    assert not work.progress.error and work.progress.done == 2 * N and "Done" in work.progress.summary()
    assert loading.message.startswith("Loaded 2 object(s) and 12 prompt(s) with their masks")
    assert work.video.handle is not before.handle and engine.object_ids(work.video.handle) == [1, 2]
    assert work.undo[-1].label == "load session file" and work.undo[-1].before is before.doc
    loaded_names = dict(work.registry)
    assert loaded_names != before.registry  # the file names its objects
    annotate.undo(work, engine)
    assert work.doc is before.doc and stored_prompt(work, 1, 2) == before.predictor_prompts[(2, 1)]
    assert work.registry == before.registry and work.labels == before.labels  # names and labels too
    annotate.redo(work, engine)
    assert work.registry == loaded_names and engine.object_ids(work.video.handle) == [1, 2]
