"""annotation.formats (and the annotation.render helpers it shares): every file is read back and compared;
the datasets by class are in test_datasets.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.formats import (
    SESSION_VERSION,
    Prompt,
    Session,
    SessionError,
    SessionMask,
    SessionObject,
    export_mask_video,
    export_overlay_video,
    export_png_zip,
    export_session_json,
    load_session_json,
    read_png_zip,
    video_fingerprint,
    video_ref,
)
from annotation.render import PALETTE, draw_prompts, mask_image, object_color, overlay
from sam2.video_io import decode, probe
from tests import media_factory as mf

H, W = 48, 64
FRAMES = 4


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[:H, :W]
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r


@pytest.fixture()
def masks() -> dict[int, dict[int, np.ndarray]]:
    """Two objects moving over 4 frames without overlapping; frame 2 is empty, object 2 leaves."""
    return {
        0: {1: rect(5, 20, 5, 25), 2: disc(30, 45, 8)},
        1: {1: rect(6, 21, 8, 28), 2: disc(31, 47, 9)},
        2: {},
        3: {1: rect(10, 30, 10, 40), 2: np.zeros((H, W), bool)},
    }


OBJECTS = {1: "person", 2: "ball"}


def non_empty(masks: dict[int, dict[int, np.ndarray]]) -> dict[int, dict[int, np.ndarray]]:
    """What the readers give back: every frame, only non-empty masks."""
    return {f: {o: m for o, m in masks.get(f, {}).items() if m.any()} for f in range(FRAMES)}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for frame in want:
        assert got[frame].keys() == want[frame].keys(), frame
        for obj_id in want[frame]:
            np.testing.assert_array_equal(got[frame][obj_id], want[frame][obj_id])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ----------------------------------------------------------------------------- render


def test_palette_is_the_davis_colour_map() -> None:
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    assert PALETTE[:6].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
    assert PALETTE[255].tolist() == [224, 224, 192] and len({tuple(c) for c in PALETTE}) == 256
    assert object_color(1) == (128, 0, 0) and object_color(256) == object_color(1)


def test_overlay_blends_hides_and_outlines() -> None:
    frame = np.full((H, W, 3), 100, np.uint8)
    masks = {1: rect(5, 20, 5, 25), 2: rect(10, 30, 20, 40)}
    out = overlay(frame, masks, alpha=0.5, outline=False)
    assert out[12, 10].tolist() == [114, 50, 50]  # (100 + 128) / 2
    assert out[15, 22].tolist() == [50, 114, 50]  # overlap: the larger id wins
    assert out[40, 60].tolist() == [100, 100, 100]
    assert overlay(frame, masks, hidden={2}, outline=False)[15, 22].tolist() == [114, 50, 50]
    outlined = overlay(frame, masks, alpha=0.0, outline=True)
    assert outlined[5, 10].tolist() == [128, 0, 0] and outlined[12, 10].tolist() == [100, 100, 100]
    assert frame[12, 10].tolist() == [100, 100, 100]  # input untouched


def test_mask_image_and_prompts() -> None:
    image = mask_image((H, W), {1: rect(0, 10, 0, 10), 3: rect(20, 30, 20, 30)})
    assert image[5, 5].tolist() == [128, 0, 0] and image[25, 25].tolist() == [128, 128, 0]
    assert image[40, 40].tolist() == [0, 0, 0]
    canvas = np.zeros((100, 100, 3), np.uint8)
    drawn = draw_prompts(canvas, [(20, 20), (70, 70)], [1, 0], box=(5, 5, 95, 95))
    assert drawn[20, 20, 1] > 200 and drawn[20, 20, 0] < 50  # green +
    assert drawn[70, 70, 0] > 200 and drawn[70, 70, 1] < 50  # red x
    assert drawn[5, 50].any() and not canvas.any()
    with pytest.raises(ValueError):
        draw_prompts(canvas, [(1, 1)], [])


# ----------------------------------------------------------------------------- PNG / COCO / YOLO


def test_png_zip_round_trip(masks: dict, tmp_path: Path) -> None:
    path = export_png_zip(masks, FRAMES, (H, W), OBJECTS, tmp_path)
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        assert names == ["00000.png", "00001.png", "00002.png", "00003.png", "objects.json"]
        image = Image.open(archive.open("00000.png"))
        assert image.mode == "P" and image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        assert np.array(image)[10, 10] == 1 and np.array(image)[30, 45] == 2
        assert json.loads(archive.read("objects.json")) == {"1": "person", "2": "ball"}
    assert_same(read_png_zip(path), non_empty(masks))


def test_png_zip_overlap_later_object_wins_and_ids_are_checked(tmp_path: Path) -> None:
    overlapping = {0: {1: rect(0, 20, 0, 20), 2: rect(10, 30, 10, 30)}}
    back = read_png_zip(export_png_zip(overlapping, 1, (H, W), {2: "b", 1: "a"}, tmp_path))
    assert back[0][2].sum() == 20 * 20 - 10 * 10 and back[0][1].sum() == 400  # object 1 listed last
    with pytest.raises(ValueError, match=r"1\.\.255"):
        export_png_zip({0: {300: rect(0, 1, 0, 1)}}, 1, (H, W), None, tmp_path)
    with pytest.raises(ValueError, match="shape"):
        export_png_zip({0: {1: np.zeros((2, 2), bool)}}, 1, (H, W), None, tmp_path)
    assert not list(tmp_path.glob(".*partial*"))


# ----------------------------------------------------------------------------- videos


def test_mask_video_decodes_back(masks: dict, tmp_path: Path) -> None:
    path = export_mask_video(masks, FRAMES, (H, W), OBJECTS, tmp_path, fps=10)
    video = decode(path, workdir=tmp_path)
    assert len(video.frames) == FRAMES and video.frames[0].shape == (H, W, 3)
    assert probe(path).codec == "h264"
    inside = video.frames[0][10, 10].astype(int)
    assert np.abs(inside - (128, 0, 0)).max() < 20 and video.frames[2].max() < 20


def test_overlay_video_keeps_audio_and_pads_odd_sizes(tmp_path: Path) -> None:
    source = mf.testsrc(tmp_path / "talk.mp4", size=(63, 47), pix_fmt="yuv444p", seconds=1.0, audio=True)
    decoded = decode(source, workdir=tmp_path)
    assert decoded.audio_path is not None and decoded.frames[0].shape == (47, 63, 3)
    masks = {i: {1: np.pad(np.ones((10, 10), bool), ((5, 32), (5, 48)))} for i in range(len(decoded.frames))}
    path = export_overlay_video(decoded.frames, masks, decoded.fps, decoded.audio_path, tmp_path)
    info = probe(path)
    assert info.has_audio and (info.width, info.height) == (64, 48) and info.codec == "h264"
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert len(decode(path, workdir=tmp_path).frames) == len(decoded.frames) == 10
    silent = export_overlay_video(decoded.frames, masks, decoded.fps, None, tmp_path, stem="silent")
    assert not probe(silent).has_audio


# ----------------------------------------------------------------------------- session


def saved_mask(frame: int, obj_id: int, mask: np.ndarray, tracked: bool) -> SessionMask:
    """A mask as the app stores it: the packed bits of its bounding box (empty: a 0x0 box)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return SessionMask(frame, obj_id, tracked, 0, 0, 0, 0, b"")
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return SessionMask(frame, obj_id, tracked, int(rows[0]), int(cols[0]), *crop.shape, np.packbits(crop).tobytes())


def make_session(frames: list[np.ndarray]) -> Session:
    return Session(
        video=video_ref("clip.mp4", frames, 10.0),
        objects=[SessionObject(1, "person", object_color(1)), SessionObject(2, "ball", object_color(2), False)],
        prompts=[
            Prompt(0, 1, [(10.5, 20.0), (30.0, 5.0)], [1, 0]),
            Prompt(2, 2, [], [], (1.0, 2.0, 30.0, 40.0)),
        ],
        masks=[
            saved_mask(0, 1, rect(5, 20, 5, 25), False),
            saved_mask(1, 1, disc(30, 45, 8) | rect(0, 3, 0, W), True),  # two pieces, one on the top edge
            saved_mask(3, 2, np.zeros((H, W), bool), True),  # tracked, object lost
        ],
    )


def frames_of(seed: int, count: int = 6) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (count, H, W, 3), dtype=np.uint8))


def test_session_round_trip(tmp_path: Path) -> None:
    frames = frames_of(0)
    session = make_session(frames)
    path = export_session_json(session, tmp_path)
    document = json.loads(path.read_text())
    assert document["version"] == SESSION_VERSION == 2 and document["video"]["frames"] == 6
    assert document["prompts"][1]["box"] == [1.0, 2.0, 30.0, 40.0] and document["prompts"][0]["box"] is None
    assert document["masks"][0]["box"] == [5, 5, 15, 20] and document["masks"][2]["box"] == [0, 0, 0, 0]
    assert load_session_json(path, video_ref("clip.mp4", frames, 10.0)) == session


def test_version_1_session_files_still_load(tmp_path: Path) -> None:
    """Files saved before masks were kept: their objects and prompts, and no masks."""
    frames = frames_of(0)
    document = json.loads(export_session_json(make_session(frames), tmp_path).read_text())
    document["version"] = 1
    del document["masks"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))
    loaded = load_session_json(path, video_ref("clip.mp4", frames, 10.0))
    assert loaded.masks == [] and loaded.prompts == make_session(frames).prompts


def test_session_for_another_video_is_refused(tmp_path: Path) -> None:
    path = export_session_json(make_session(frames_of(0)), tmp_path)
    with pytest.raises(SessionError, match="another video"):
        load_session_json(path, video_ref("other.mp4", frames_of(1), 10.0))
    smaller = [f[:32, :40] for f in frames_of(0)]
    with pytest.raises(SessionError, match="64x48 video"):
        load_session_json(path, video_ref("clip.mp4", smaller, 10.0))


def test_fingerprint_is_stable_and_sensitive() -> None:
    frames = frames_of(0)
    assert video_fingerprint(frames) == video_fingerprint([f.copy() for f in frames])
    assert video_fingerprint(frames) != video_fingerprint(frames_of(1))
    assert video_fingerprint(frames) != video_fingerprint(frames[:-1])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"version": 3}', "version 3, and this app reads versions 1 and 2"),
        ('{"version": 1}', "has no 'video'"),
        ("PATCH:labels", "labels must hold one 0 or 1 per point"),
        ("PATCH:obj", "not in 'objects'"),
        ("PATCH:frame", "on frame 99"),
        ("MASK:no masks", "has no 'masks'"),
        ("MASK:outside", r"masks\[0\].box reaches outside the 64x48 frame"),
        ("MASK:negative", "four whole numbers >= 0"),
        ("MASK:not base64", "not base64 of zlib data"),
        ("MASK:too short", "does not hold the 38 bytes its box needs"),
        ("MASK:bomb", "does not hold the 38 bytes its box needs"),
        ("MASK:object", r"masks\[0\] is for object 9"),
        ("MASK:frame", "on frame 6, but the video has 6 frames"),
        ("MASK:twice", "a second mask of object 1 on frame 0"),
    ],
)
def test_bad_session_files(tmp_path: Path, content: str, message: str) -> None:
    if content.startswith("PATCH:"):
        document = json.loads(export_session_json(make_session(frames_of(0)), tmp_path).read_text())
        what = content.removeprefix("PATCH:")
        prompt = document["prompts"][0]
        prompt.update({"labels": {"labels": [1, 2]}, "obj": {"obj_id": 9}, "frame": {"frame": 99}}[what])
        content = json.dumps(document)
    if content.startswith("MASK:"):
        content = json.dumps(damaged_masks(content.removeprefix("MASK:"), tmp_path))
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SessionError, match=message):
        load_session_json(path)


def damaged_masks(what: str, tmp_path: Path) -> dict:
    """A session document whose first mask (object 1, frame 0, a 15x20 box: 38 bytes) is damaged."""
    import base64
    import zlib

    document = json.loads(export_session_json(make_session(frames_of(0)), tmp_path).read_text())
    mask = document["masks"][0]
    if what == "no masks":
        del document["masks"]
    elif what == "outside":
        mask["box"] = [40, 5, 15, 20]
    elif what == "negative":
        mask["box"] = [-1, 5, 15, 20]
    elif what == "not base64":
        mask["bits"] = "@@@"
    elif what == "too short":
        mask["bits"] = base64.b64encode(zlib.compress(b"\xff" * 10)).decode()
    elif what == "bomb":  # 100 MB of zeros in 100 kB: refused after 39 bytes are inflated
        mask["bits"] = base64.b64encode(zlib.compress(bytes(100_000_000), 9)).decode()
    elif what == "object":
        mask["obj_id"] = 9
    elif what == "frame":
        mask["frame"] = 6
    elif what == "twice":
        document["masks"].append(dict(mask))
    return document
