"""Long steps that lose nothing (issue 18, item 3), on the real engine with the reference weights
at image size 64 and small synthetic frames: making files writes the session file first, one
file that cannot be made (its place taken by a folder, a format refused for images of
different sizes, a writer's error) never stops the others, and Cancel stops between frames
with the files made so far kept; an import cancelled or failed leaves the work as it was and
the lock free, and a finished one is one undo step. The work is never changed by an export."""

from __future__ import annotations

import logging
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sam2
from annotation import formats, imports
from annotation import operations as annotate
from annotation.document import UserError
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import MediaLimits
from tests.app_harness import Replay
from tests.reference import reference_state_dict
from tests.test_app_units import IMAGE_SIZE, N, lock_is_free, make_work, synthetic_frames, tracked_work

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools

LONG = 600  # frames of the video whose export is cancelled part-way (a few ms a frame per file)


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, corrections_as_cond=True
    )


@pytest.fixture(scope="module")
def engine(predictor) -> Engine:
    return Engine(predictor)


def state(work: Work) -> tuple:
    """What an export or a failed import must leave as it was: the document (the same object),
    the undo and redo steps, the objects and the labels."""
    return work.doc, list(work.undo), list(work.redo), dict(work.registry), list(work.labels), work.last_label


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.0005)


# ----------------------------------------------------------------------------- a file that cannot be made


def test_a_failing_file_does_not_stop_the_others_and_the_session_file_comes_first(tmp_path, engine):
    work = tracked_work(tmp_path, engine)
    before = state(work)
    out = tmp_path / "out"
    (out / "v_coco.json").mkdir(parents=True)  # the COCO file's place is taken: writing it really fails
    outcome = annotate.make_files(work, ["png", "coco", "yolo", "session", "mot"], out)

    assert outcome.chosen == ["session", "png", "coco", "yolo", "mot"]  # the user's work first
    assert [p.name for p in outcome.made] == ["v_session.json", "v_masks.zip", "v_yolo.zip", "v_mot.txt"]
    stamps = [p.stat().st_mtime_ns for p in outcome.made]
    assert stamps == sorted(stamps)  # made in that order
    assert outcome.failed == {"coco": "Could not write the COCO file (Is a directory)."}
    assert outcome.not_made == ["coco"] and not outcome.cancelled and not outcome.complete
    assert outcome.report() == (
        "Made 4 of 5 file(s). Not made: the COCO file. Could not write the COCO file (Is a directory). "
        "Your objects, clicks and masks are unchanged."
    )  # fmt: skip
    assert str(tmp_path) not in outcome.report()
    assert state(work) == before and lock_is_free(work)
    progress = work.progress
    assert not progress.running and progress.unit == "frames" and progress.total == 4 * N
    assert progress.done == progress.total  # the failed file's frames count as passed
    assert list(out.rglob("*partial*")) == []
    assert sorted(formats.read_png_zip(outcome.made[1])) == list(range(N))
    assert formats.load_session_json(outcome.made[0]).objects  # whole, and readable
    with zipfile.ZipFile(outcome.made[2]) as archive:
        assert "data.yaml" in archive.namelist()

    # Waiting callers get the same: the other files, and an error that says what was not made.
    with pytest.raises(annotate.ExportIncomplete, match=r"^Made 1 of 2 file\(s\)\. Not made: the COCO file\.") as error:
        annotate.export(work, ["coco", "session"], out)
    assert [p.name for p in error.value.outcome.made] == ["v_session.json"]
    (out / "v_coco.json").rmdir()
    assert [p.name for p in annotate.export(work, ["coco", "session"], out)] == ["v_session.json", "v_coco.json"]
    assert state(work) == before


def test_an_error_in_one_writer_is_logged_and_the_others_are_made(tmp_path, engine, caplog):
    """An object whose label is not in the label list (the page never makes one; here a bug
    elsewhere is played by setting it so): the datasets by class cannot be made and say so,
    the traceback goes to the log, and the PNG masks and the session file are made."""
    work = tracked_work(tmp_path, engine)
    work.registry[1] = replace(work.registry[1], label="ghost")
    (tmp_path / "out").mkdir()
    with caplog.at_level(logging.ERROR, logger="annotation.operations"):
        outcome = annotate.make_files(work, ["png", "coco", "mot", "session"], tmp_path / "out")
    assert [p.name for p in outcome.made] == ["v_session.json", "v_masks.zip"]
    assert outcome.failed == {
        "coco": "Could not make the COCO file (ValueError); the server's log has the details.",
        "mot": "Could not make the MOT tracks (ValueError); the server's log has the details.",
    }
    assert "Not made: the COCO file and the MOT tracks." in outcome.report()
    logged = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in logged] == ["Making the COCO file failed", "Making the MOT tracks failed"]
    assert "objects have labels that are not in the label list" in str(logged[0].exc_info[1])
    assert lock_is_free(work) and not work.progress.running


def image_set(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """PNG images of the given (width, height), a bright square on each, named in frame order."""
    folder.mkdir()
    for i, (width, height) in enumerate(sizes):
        pixels = np.full((height, width, 3), 30, np.uint8)
        pixels[4:14, 4:14] = (220, 160, 40)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
    return folder


def test_formats_refused_for_images_of_different_sizes_leave_the_others(tmp_path, engine):
    work = Work(folder=tmp_path / "w")
    (tmp_path / "out").mkdir()
    annotate.load_images(work, engine, [image_set(tmp_path / "set", [(32, 24), (40, 30), (32, 24)])], MediaLimits())
    annotate.click(work, engine, 1, 8, 8, "add")
    before = state(work)
    outcome = annotate.make_files(work, ["overlay", "png", "ytvis", "coco", "session"], tmp_path / "out")
    assert [p.name for p in outcome.made] == ["set_session.json", "set_masks.zip", "set_coco.json"]
    assert outcome.not_made == ["overlay", "ytvis"]
    assert outcome.report() == (
        "Made 3 of 5 file(s). Not made: the overlay video and the YouTube-VIS file. The images differ in size "
        "(32x24, 40x30...), and the overlay video and the YouTube-VIS file need one size for all frames. Choose "
        "PNG masks, semantic masks, COCO, YOLO, MOT or the session file: they keep each image at its own size. "
        "Your objects, clicks and masks are unchanged."
    )  # fmt: skip
    assert work.progress.total == 2 * 3  # the refused files are not counted
    with zipfile.ZipFile(outcome.made[1]) as archive:  # each image's mask at its own size, the object on it
        mask = np.array(Image.open(archive.open("im1.png")))
    assert mask.shape == (30, 40) and (mask == 1).any()
    assert state(work) == before

    alone = annotate.make_files(work, ["mask_video"], tmp_path / "out")
    assert alone.made == [] and alone.report().startswith(
        "The images differ in size (32x24, 40x30...), and the mask video needs one size for all frames."
    )  # fmt: skip
    assert alone.report().endswith("Nothing was made. Your objects, clicks and masks are unchanged.")


# ----------------------------------------------------------------------------- Cancel


def long_work(tmp_path: Path, engine: Engine) -> Work:
    """LONG frames (the synthetic six, again and again), a click on the first."""
    frames = [synthetic_frames()[i % N] for i in range(LONG)]
    work = make_work(tmp_path, engine, "long", frames)
    annotate.click(work, engine, 0, 8, 10, "add")
    return work


def test_cancel_during_an_export_stops_between_frames_and_keeps_the_files_made(tmp_path, engine):
    work = long_work(tmp_path, engine)
    before = state(work)
    out = tmp_path / "out"
    out.mkdir()
    exporting = annotate.start_exporting(work, ["yolo", "png", "mot", "session"], out)
    with pytest.raises(UserError, match="Making files is still running. Wait for it to finish, or press Cancel."):
        annotate.start_exporting(work, ["png"], out)
    wait_until(lambda: work.progress.part == "the YOLO dataset" and work.progress.done >= LONG + 2)
    assert "Making files (the YOLO dataset): " in work.progress.summary()
    assert [p.name for p in exporting.outcome.made] == ["v_session.json", "v_masks.zip"]  # listed as made
    work.cancel.set()
    exporting.thread.join(timeout=60)
    assert not exporting.thread.is_alive()

    outcome, progress = exporting.outcome, work.progress
    assert outcome.cancelled and progress.cancelled and not progress.running
    assert LONG + 2 <= progress.done < 2 * LONG  # stopped between frames of the YOLO dataset
    assert [p.name for p in outcome.made] == ["v_session.json", "v_masks.zip"]
    assert sorted(p.name for p in out.iterdir()) == ["v_masks.zip", "v_session.json"]  # no part of the rest
    assert outcome.not_made == ["yolo", "mot"] and outcome.failed == {}
    assert outcome.report("download them") == (
        "Cancelled. Made 2 of 4 file(s): download them. Not made: the YOLO dataset and the MOT tracks. "
        "Your objects, clicks and masks are unchanged."
    )  # fmt: skip
    assert progress.summary().endswith("Cancelled: the files made so far are kept.")
    assert state(work) == before and lock_is_free(work)
    assert sorted(formats.read_png_zip(outcome.made[1])) == list(range(LONG))  # whole
    assert "Added a point +" in annotate.click(work, engine, 3, 8, 10, "add")  # the session works on


# ----------------------------------------------------------------------------- imports


def mask_zip(path: Path, masks: dict[int, dict[int, np.ndarray]]) -> Path:
    """A PNG mask zip of ``masks`` (frame -> object -> HxW bool), as another tool would give."""
    made = formats.export_png_zip(masks, N, (masks[0][1].shape), None, path.parent, stem=path.stem)
    assert made == path
    return path


def square(frame: int, obj: int) -> np.ndarray:
    mask = np.zeros(synthetic_frames()[0].shape[:2], bool)
    mask[2 + obj : 10 + obj, 2 * frame : 2 * frame + 9] = True
    return mask


@pytest.fixture
def masks_file(tmp_path: Path) -> Path:
    """Mask prompts of objects 1 to 8 on every frame (1 is the work's own): 48 model calls, tens of ms each."""
    return mask_zip(tmp_path / "many.zip", {f: {o: square(f, o) for o in range(1, 9)} for f in range(N)})


def reader(work: Work, path: Path):
    """As the page reads a file: on the import's thread, looking at Cancel while it reads."""
    return lambda: imports.read_any(path, annotate.video_shape(work.video), 0, 0.0, list(work.labels),
                                    cancel=work.cancel)  # fmt: skip


def test_cancel_during_an_import_leaves_the_work_and_frees_the_lock(tmp_path, engine, predictor, masks_file):
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 4, 4, "add")
    before = state(work)
    importing = annotate.start_importing(work, engine, masks_file.name, reader(work, masks_file))
    with pytest.raises(UserError, match="^Reading 'many.zip'|^Importing 'many.zip' is still running. Wait"):
        annotate.start_exporting(work, ["session"])
    wait_until(lambda: work.progress.done >= 2)
    assert work.progress.summary().startswith("Importing 'many.zip': ") and work.progress.total == 8 * N
    work.cancel.set()
    importing.thread.join(timeout=60)
    progress = work.progress
    assert progress.cancelled and not progress.running and not progress.error and 2 <= progress.done < 8 * N
    assert progress.summary().endswith("Cancelled: your objects, clicks and masks stay as they were.")
    assert state(work) == before and lock_is_free(work) and importing.message == ""

    # The predictor is back to the document: the next click gives the predictor's own mask.
    annotate.click(work, engine, 1, 20, 12, "add")
    ref = Replay(predictor, predictor.init_state(list(synthetic_frames())))
    ref.prompt(0, 1, [(4, 4)], [1])
    ref.prompt(1, 1, [(20, 12)], [1])
    assert np.array_equal(work.doc.frame_masks(1)[1], ref.masks[1][1])

    # Done to the end, an import is one undo step.
    importing = annotate.start_importing(work, engine, masks_file.name, reader(work, masks_file))
    importing.thread.join(timeout=120)
    assert importing.message.startswith("Imported 48 prompt(s) of 8 object(s) on 6 frame(s) from 'many.zip'")
    assert work.progress.summary().startswith("Importing 'many.zip': 48/48 prompts") and lock_is_free(work)
    assert len(work.doc.object_ids) == 8 and len(work.undo) == len(before[1]) + 2  # the click, the import
    assert annotate.undo(work, engine).startswith("Undid: import many.zip")
    assert work.doc.object_ids == (1,) and len(work.doc.calls) == 2  # back to the two clicks


def test_cancel_while_reading_applies_nothing(tmp_path, engine, masks_file):
    """A read that does not look at Cancel itself: what it gives is dropped as soon as it returns."""
    work = make_work(tmp_path, engine)
    before = state(work)
    read = reader(work, masks_file)
    reading = threading.Event()

    def slow_read() -> imports.Imported:
        reading.set()
        assert work.cancel.wait(30)  # returns once Cancel is pressed
        return read()

    importing = annotate.start_importing(work, engine, masks_file.name, slow_read)
    assert reading.wait(30) and work.progress.summary() == "Reading 'many.zip'..."
    work.cancel.set()
    importing.thread.join(timeout=60)
    assert work.progress.cancelled and work.progress.done == 0 and state(work) == before and lock_is_free(work)


def test_a_failed_import_says_why_and_changes_nothing(tmp_path, engine, masks_file):
    work = make_work(tmp_path, engine)
    before = state(work)
    broken = tmp_path / "cut.zip"
    broken.write_bytes(masks_file.read_bytes()[:100])
    importing = annotate.start_importing(work, engine, broken.name, reader(work, broken))
    importing.thread.join(timeout=60)
    assert "'cut.zip' cannot be imported" in work.progress.error and not work.progress.running
    assert state(work) == before and lock_is_free(work)

    labelled = tmp_path / "boxes.json"
    labelled.write_text('[{"image_id": 1, "category_id": 3, "bbox": [2, 2, 10, 8], "score": 1}]')
    importing = annotate.start_importing(work, engine, labelled.name, reader(work, labelled))
    importing.thread.join(timeout=60)
    assert isinstance(importing.missing, annotate.MissingLabels) and importing.missing.labels == ["class 3"]
    assert importing.imported is not None and state(work) == before and lock_is_free(work)
    importing = annotate.start_importing(work, engine, labelled.name, lambda: importing.imported, True)
    importing.thread.join(timeout=60)
    assert importing.message.startswith("Imported 1 prompt(s) of 1 object(s)") and work.labels == ["object", "class 3"]


def test_masks_merged_while_reading_are_named_in_the_import_message(tmp_path, engine):
    """Two COCO polygons of one track on one frame are one mask prompt (their union), and the
    message says that they were merged."""
    import json

    work = make_work(tmp_path, engine)
    height, width = synthetic_frames()[0].shape[:2]
    left, right = [[1, 1, 6, 1, 6, 6, 1, 6]], [[10, 2, 15, 2, 15, 7, 10, 7]]
    coco = tmp_path / "two_parts.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "00000.jpg", "height": height, "width": width}],
        "annotations": [{"id": n, "image_id": 1, "track_id": 2, "category_id": 1, "segmentation": polygon}
                        for n, polygon in enumerate((left, right), start=1)],
        "categories": [{"id": 1, "name": "object"}],
    }))  # fmt: skip
    importing = annotate.start_importing(work, engine, coco.name, reader(work, coco))
    importing.thread.join(timeout=60)
    assert importing.message.startswith("Imported 1 prompt(s) of 1 object(s) on 1 frame(s) from 'two_parts.json'. "
                                        "Note: 2 masks of 1 object(s) on frame 0 were merged into one mask")
    mask = work.doc.calls[-1].prompt.mask.unpack()
    assert mask[3, 3] and mask[4, 12] and not mask[4, 8]  # both parts, not the gap between them
