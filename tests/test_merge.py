"""One dataset from many videos (issue 21 item 4): three real ffmpeg videos (and a broken file)
through the real command line with the reference weights, once, from session files with masks
of known shapes (``--no-track``: the reference weights' tracked masks are noise, which no YOLO
polygon holds), with ``--merge coco,yolo,ytvis --val-videos``; then the merged COCO loads in
pycocotools and scores AP 1.0 against itself, its masks are each video's own, the merged YOLO
dataset opens in supervision with every object at IoU >= 0.9, a label of two videos has one
class, and ``sam2-annotate merge`` merges output folders without tracking. Bad input is refused
in words and leaves nothing behind."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotation import formats, merge
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import ROOT
from tests.test_cli import cli

# pycocotools' C code predates numpy 2's __array__(copy=...); it decodes correctly all the same.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LABELS = ["car", "person", "dog"]  # the union, in the order first met: alpha's, then beta's new one
FRAMES = 6
SIZES = {"alpha": (120, 160), "beta": (120, 160), "gamma": (96, 128)}  # (H, W)


def disc(size: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def rectangle(size: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# video -> object id -> (label, frame -> HxW mask): "person" is in alpha and beta, "dog" in beta and gamma
SHAPES = {
    "alpha": {1: ("car", lambda f: rectangle(SIZES["alpha"], 10 + 4 * f, 20, 50 + 4 * f, 60)),
              2: ("person", lambda f: disc(SIZES["alpha"], 110, 60 - 2 * f, 20))},
    "beta": {1: ("person", lambda f: disc(SIZES["beta"], 40 + 5 * f, 40, 18)),
             3: ("dog", lambda f: disc(SIZES["beta"], 110, 70, 25) & ~disc(SIZES["beta"], 110, 70, 10))},
    "gamma": {5: ("dog", lambda f: disc(SIZES["gamma"], 64, 48, 15 + f))},
}  # fmt: skip


def session_with_masks(video: Path, stem: str) -> formats.Session:
    """The session file the page would save for ``video`` with SHAPES' masks on every frame."""
    decoded = decode(video, MediaLimits())
    assert len(decoded.frames) == FRAMES and decoded.frames[0].shape[:2] == SIZES[stem]
    objects, masks = [], []
    for obj, (label, shape) in SHAPES[stem].items():
        objects.append(formats.SessionObject(obj, f"{label} {obj}", (255, 0, 0), True, label))
        for frame in range(FRAMES):
            mask = shape(frame)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            masks.append(formats.SessionMask(frame, obj, True, int(rows[0]), int(cols[0]), *crop.shape,
                                             np.packbits(crop).tobytes()))  # fmt: skip
    labels = list(dict.fromkeys(label for label, _ in SHAPES[stem].values()))
    ref = formats.video_ref(video.name, decoded.frames, decoded.fps)
    return formats.Session(ref, objects, [], masks, labels)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, reference_checkpoint: Path) -> Path:
    """The batch's --out: each video's exports (from a session file with masks, as the page
    saves it), and merged/. beta and gamma are in a folder of their own: videos from two places."""
    root = tmp_path_factory.mktemp("merge")
    (root / "sessions").mkdir()
    (root / "more").mkdir()
    videos = [
        media_factory.testsrc(root / "alpha.mp4", size=(160, 120), fps=8, seconds=FRAMES / 8),
        media_factory.marker_video(root / "more" / "beta.mp4", size=(160, 120), fps=8, seconds=FRAMES / 8),
        media_factory.testsrc(root / "more" / "gamma.mp4", size=(128, 96), fps=8, seconds=FRAMES / 8),
    ]
    for video in videos:
        formats.export_session_json(session_with_masks(video, video.stem), root / "sessions",
                                    stem=f"{video.stem}_session")  # fmt: skip
    broken = media_factory.random_bytes(root / "delta.mp4", seed=3)  # fails; the merge goes on without it
    shutil.copy(root / "sessions" / "alpha_session.json", root / "sessions" / "delta_session.json")
    out = root / "out"
    run = cli(reference_checkpoint, *videos, broken, "--session", root / "sessions", "--no-track", "--export",
              "session", "--out", out, "--merge", "coco,yolo,ytvis", "--val-videos", "0.34")  # fmt: skip
    assert run.returncode == 1, run.stderr  # a video failed
    assert "delta.mp4: failed" in run.stdout and "Summary: 3 done, 1 failed." in run.stdout, run.stdout
    assert "Merging without delta.mp4 (not done)." in run.stderr
    assert "Merged 3 video(s), 18 frames, 30 masks and 3 class(es)" in run.stdout
    return out


def own_masks(batch: Path, stem: str) -> dict[tuple[int, int], np.ndarray]:
    """(frame, object id) -> mask of one video's own COCO export, decoded by pycocotools."""
    with zipfile.ZipFile(batch / f"{stem}_coco.zip") as archive:
        document = json.loads(archive.read("annotations.json"))
    frame_of = {image["id"]: image["frame_index"] for image in document["images"]}
    return {
        (frame_of[a["image_id"]], a["track_id"]): mask_utils.decode({**a["segmentation"],
                                                                     "counts": a["segmentation"]["counts"].encode()})
        for a in document["annotations"]
    }  # fmt: skip


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_the_merged_coco_loads_in_pycocotools_scores_ap_1_and_holds_each_videos_own_masks(batch):
    path = batch / "merged" / "coco" / "annotations.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    document = json.loads(path.read_text())
    images, annotations = document["images"], document["annotations"]
    assert len(images) == 3 * FRAMES and len(annotations) == 5 * FRAMES
    assert len({i["id"] for i in images}) == len(images) and len({a["id"] for a in annotations}) == len(annotations)
    assert len({i["file_name"] for i in images}) == len(images)
    assert all(i["file_name"] == f"{i['video'].removesuffix('.mp4')}_{i['frame_index']:05d}.jpg" for i in images)
    assert [(c["id"], c["name"]) for c in document["categories"]] == [(1, "car"), (2, "person"), (3, "dog")]
    for image in images:  # the frames are there, at their size
        assert (path.parent / "images" / image["file_name"]).stat().st_size > 0
    assert {(i["video"], i["width"], i["height"]) for i in images} == {
        ("alpha.mp4", 160, 120), ("beta.mp4", 160, 120), ("gamma.mp4", 128, 96)}

    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 1.0} for a in annotations]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(gt, gt.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP at IoU .50:.95, all areas

    image_of = {i["id"]: i for i in images}
    merged: dict[tuple[str, int, int], np.ndarray] = {}
    for a in annotations:
        image = image_of[a["image_id"]]
        merged[(image["video"], image["frame_index"], a["instance_id"])] = gt.annToMask(a)
        assert a["category_id"] == LABELS.index(label_of(a["instance_id"], image["video"])) + 1
    assert len({a["track_id"] for a in annotations}) == 5  # one track per object of every video
    for stem, shapes in SHAPES.items():
        own = own_masks(batch, stem)
        assert len(own) == len(shapes) * FRAMES
        for (frame, obj), mask in own.items():
            assert np.array_equal(mask, shapes[obj][1](frame))  # the session's masks, exported as they are
            assert np.array_equal(merged[(f"{stem}.mp4", frame, obj)], mask), (stem, frame, obj)


def label_of(obj: int, video: str) -> str:
    """The label of object ``obj`` of ``video`` (``walk.mp4``)."""
    return SHAPES[video.removesuffix(".mp4")][obj][0]


def test_the_merged_yolo_dataset_opens_in_supervision_with_whole_videos_in_val_and_one_class_per_label(batch):
    root = batch / "merged" / "yolo"
    read = {}
    for split in ("train", "val"):
        dataset = sv.DetectionDataset.from_yolo(
            images_directory_path=str(root / "images" / split), annotations_directory_path=str(root / "labels" / split),
            data_yaml_path=str(root / "data.yaml"), force_masks=True,
        )  # fmt: skip
        assert dataset.classes == LABELS
        read.update({Path(name).name: (split, detections) for name, _, detections in dataset})
    assert len(read) == 3 * FRAMES
    record = json.loads((batch / "merged" / merge.MARKER).read_text())
    val = [v["name"] for v in record["videos"] if v["split"] == "val"]
    assert len(val) == 1  # round(0.34 x 3), whole videos
    assert val == merge.choose_val_videos(list(SHAPES), 0.34)
    for stem, shapes in SHAPES.items():
        own = own_masks(batch, stem)
        for frame in range(FRAMES):
            split, detections = read[f"{stem}_{frame:05d}.jpg"]
            assert split == ("val" if stem in val else "train"), (stem, frame)
            assert detections.mask.shape[1:] == SIZES[stem]
            expected = {obj: m.astype(bool) for (f, obj), m in own.items() if f == frame}
            assert len(detections) == len(expected) == len(shapes)
            for obj, mask in expected.items():
                best = max(range(len(detections)), key=lambda i: iou(detections.mask[i], mask))
                assert iou(detections.mask[best], mask) >= 0.9, (stem, frame, obj)
                # "person" is class 1 in alpha and beta, "dog" 2 in beta and gamma
                assert detections.class_id[best] == LABELS.index(label_of(obj, f"{stem}.mp4"))


def test_the_merged_youtube_vis_file_has_one_entry_per_video_with_its_masks(batch):
    document = json.loads((batch / "merged" / "ytvis" / "annotations.json").read_text())
    assert [c["name"] for c in document["categories"]] == LABELS
    videos = {v["id"]: v for v in document["videos"]}
    assert [v["name"] for v in document["videos"]] == ["alpha.mp4", "beta.mp4", "gamma.mp4"]
    assert all(v["length"] == FRAMES and len(v["file_names"]) == FRAMES for v in videos.values())
    assert videos[3]["file_names"][0] == "gamma/00000.jpg" and (videos[3]["width"], videos[3]["height"]) == (128, 96)
    assert (batch / "merged" / "ytvis" / "JPEGImages" / "gamma" / "00005.jpg").is_file()
    assert len(document["annotations"]) == 5 and len({a["id"] for a in document["annotations"]}) == 5
    for annotation in document["annotations"]:
        video = videos[annotation["video_id"]]
        stem = video["name"].removesuffix(".mp4")
        assert annotation["category_id"] == LABELS.index(label_of(annotation["instance_id"], video["name"])) + 1
        own = own_masks(batch, stem)
        for frame, rle in enumerate(annotation["segmentations"]):
            decoded = mask_utils.decode(mask_utils.frPyObjects(rle, video["height"], video["width"]))
            assert np.array_equal(decoded, own[(frame, annotation["instance_id"])])


def test_the_merge_command_merges_output_folders_without_tracking_and_replaces_an_earlier_merge(batch, tmp_path):
    """Two places (the files of one video copied to a folder of its own), every third frame to
    val; a second run into the same folder replaces the first."""
    alone = tmp_path / "alone"
    alone.mkdir()
    for stem in ("alpha", "beta"):
        shutil.copy(batch / f"{stem}_coco.zip", alone)
    into = tmp_path / "dataset"
    for chosen in ("coco,yolo,ytvis", "coco,yolo"):
        command = [sys.executable, "-m", "annotation", "merge", str(alone), str(batch / "gamma_coco.zip"),
                   "--into", str(into), "--formats", chosen, "--val-every", "3", "--quiet"]  # fmt: skip
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "Merged 3 video(s), 18 frames, 30 masks and 3 class(es)" in run.stdout
    assert sorted(p.name for p in into.iterdir()) == ["coco", "merged.json", "yolo"]  # the first merge's ytvis/ is gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial or old folder left
    val = sorted(p.name for p in (into / "yolo" / "images" / "val").iterdir())
    assert val == sorted(f"{stem}_{frame:05d}.jpg" for stem in SHAPES for frame in (2, 5))
    assert "val: images/val" in (into / "yolo" / "data.yaml").read_text()


# ----------------------------------------------------------------------------- bad input


def coco_of(batch: Path, stem: str) -> dict:
    with zipfile.ZipFile(batch / f"{stem}_coco.zip") as archive:
        return json.loads(archive.read("annotations.json"))


def write_coco(path: Path, document: dict, frames_from: Path | None = None) -> Path:
    """A COCO file (``.json``) or, with ``frames_from``, a zip with that zip's frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames_from is None:
        path.write_text(json.dumps(document))
        return path
    with zipfile.ZipFile(frames_from) as source, zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", json.dumps(document))
        for name in source.namelist():
            if name.startswith("images/"):
                archive.writestr(name, source.read(name))
    return path


def refused(sources, out: Path, match: str, **options) -> None:
    """The merge is refused with ``match`` in its message, and nothing is left behind."""
    before = sorted(p.name for p in out.parent.iterdir())
    with pytest.raises(merge.MergeError, match=match):
        merge.merge_datasets(sources, out, **options)
    assert sorted(p.name for p in out.parent.iterdir()) == before  # no dataset, no partial folder


def test_bad_input_is_refused_in_words_and_leaves_nothing(batch, tmp_path):
    out = tmp_path / "dataset"
    refused([], out, "at least one output folder")
    refused([batch.parent / "prompts"], out, "is not the output of annotated videos")
    refused([write_coco(tmp_path / "x" / "odd_coco.json", {"images": 3})], out, "is not a COCO file")
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(batch / "alpha_coco.zip", twin)
    refused([batch, twin], out, "both named 'alpha'")

    many = [coco_of(batch, stem) for stem in ("alpha", "beta")]
    for number, document in enumerate(many):
        document["categories"] += [{"id": 10 + i, "name": f"class {number} {i}"} for i in range(128)]
    sources = [write_coco(tmp_path / "many" / f"v{n}_coco.json", d) for n, d in enumerate(many)]
    refused(sources, out, "259 different labels together; a dataset can have at most 255", formats=["coco"])

    sized = coco_of(batch, "alpha")
    sized["images"][2]["width"] = 80
    source = write_coco(tmp_path / "sized" / "alpha_coco.json", sized)
    refused([source], out, "frame sizes of 'alpha_coco.json' disagree")
    bare = coco_of(batch, "alpha")  # the JPEG is 160x120, its image 80x60 and without masks: found while writing
    bare["images"][4].update(width=80, height=60)
    bare["annotations"] = [a for a in bare["annotations"] if a["image_id"] != bare["images"][4]["id"]]
    source = write_coco(tmp_path / "bare" / "alpha_coco.zip", bare, frames_from=batch / "alpha_coco.zip")
    refused([source], out, "'alpha_00004.jpg' is 160x120 in 'alpha_coco.zip' but 80x60", formats=["coco"])

    refused([batch], out, "'voc' is not a dataset format the merge writes: choose from coco, yolo, ytvis",
            formats=["coco", "voc"])  # fmt: skip
    for share in (1.5, -0.1, float("nan")):
        refused([batch], out, "must be a number from 0 to 1", val_videos=share)
    refused([batch], out, "k must be 0", val_every=1)
    without = write_coco(tmp_path / "plain" / "alpha_coco.json", coco_of(batch, "alpha"))
    refused([without], out, "needs every video's frames.*export 'coco_images'", formats=["yolo"])
    with pytest.raises(merge.MergeCancelled, match="cancelled; nothing was written"):
        merge.merge_datasets([batch], out, cancel=lambda: True)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    refused([batch], tmp_path / "full", "holds other files")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_labels_are_compared_cleaned_progress_counts_videos_and_coco_alone_needs_no_frames(batch, tmp_path):
    """gamma's 'dog' written ' dog\u200b' is beta's dog; a COCO file without frames merges into
    COCO, and takes the frames of the YOLO zip beside it (beta's)."""
    gamma = coco_of(batch, "gamma")
    gamma["categories"] = [{**c, "name": f" {c['name']}\u200b"} for c in gamma["categories"]]
    beta = write_coco(tmp_path / "b" / "beta_coco.json", coco_of(batch, "beta"))
    yolo_zip = beta.with_name("beta_yolo.zip")
    with zipfile.ZipFile(batch / "beta_coco.zip") as source, zipfile.ZipFile(yolo_zip, "w") as yolo:
        for name in source.namelist():
            if name.startswith("images/"):
                split = "val" if name.endswith("3.jpg") else "train"
                yolo.writestr(name.replace("images/", f"images/{split}/"), source.read(name))
    sources = [batch / "alpha_coco.zip", beta, write_coco(tmp_path / "g" / "gamma_coco.json", gamma)]
    seen = []
    result = merge.merge_datasets(sources, tmp_path / "d", formats=["coco"],
                                  progress=lambda *step: seen.append(step))  # fmt: skip
    assert seen == [(0, 3, "alpha"), (1, 3, "beta"), (2, 3, "gamma"), (3, 3, "")]
    assert result.labels == tuple(LABELS) and result.without_frames == ("gamma",)
    document = json.loads(result.files["coco"].read_text())
    assert [c["name"] for c in document["categories"]] == LABELS
    assert sorted(p.name for p in (tmp_path / "d" / "coco" / "images").iterdir()) == [
        f"{stem}_{f:05d}.jpg" for stem in ("alpha", "beta") for f in range(FRAMES)
    ]  # fmt: skip
    with zipfile.ZipFile(batch / "beta_coco.zip") as own:  # the very bytes, not encoded again
        assert (tmp_path / "d" / "coco" / "images" / "beta_00003.jpg").read_bytes() == own.read("images/beta_00003.jpg")
    both = tmp_path / "both"  # one video's two COCO files in one folder are one video: the zip, with frames
    both.mkdir()
    shutil.copy(batch / "alpha_coco.zip", both)
    write_coco(both / "alpha_coco.json", coco_of(batch, "alpha"))
    assert merge.find_sources([both / "alpha_coco.json", both]) == [merge.VideoSource("alpha", both / "alpha_coco.zip")]


def test_the_cli_refuses_bad_merge_options_in_one_line(batch, tmp_path):
    for args, words in (
        (["merge", str(batch), "--into", str(tmp_path / "d"), "--formats", "coco,voc"], "'voc' is not a dataset"),
        (["merge", str(batch), "--into", str(tmp_path / "d"), "--val-videos", "1.5"], "is not a number from 0 to 1"),
        (["merge", str(tmp_path), "--into", str(tmp_path / "d")], "is not the output of annotated videos"),
        ([str(batch.parent / "alpha.mp4"), "--no-track", "--merge", "coco,voc"], "--merge: 'voc' is not"),
        ([str(batch.parent / "alpha.mp4"), "--no-track", "--val-videos", "0.2"], "give --merge too"),
    ):
        run = subprocess.run([sys.executable, "-m", "annotation", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert run.returncode == 2, (args, run.stderr)
        assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "d").exists()
