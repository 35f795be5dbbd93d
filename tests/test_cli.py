"""The command line (``python -m annotation``) on real ffmpeg videos with the reference weights:
a session file saved by the real app gives the same exports as the app, mask for mask; a
prompts file gives the predictor's masks; Ctrl-C keeps the frames done; bad input is one
plain line and a non-zero exit status."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from pycocotools import mask as mask_utils

from annotation import formats
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import IMAGE_SIZE, KERNELS, MODEL, PRECISION, ROOT, Replay, start_app
from tests.interruptible import popen_interruptible

# pycocotools' C code predates numpy 2's __array__(copy=...); it decodes correctly all the same.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def cli(checkpoint: Path, *args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m annotation`` with the app tests' model settings (tiny, 512, float32, kernels
    pinned: masks bit-identical to the app's and Replay's)."""
    cmd = [sys.executable, "-m", "annotation", *map(str, args), *model_args(checkpoint)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def model_args(checkpoint: Path) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--model", MODEL, "--image-size", str(IMAGE_SIZE),
            "--precision", PRECISION, "--kernels", KERNELS, "--quiet"]  # fmt: skip


def png_masks(path: Path) -> dict[str, np.ndarray]:
    """Every PNG of a mask zip as its label array (read with Pillow, not our reader)."""
    with zipfile.ZipFile(path) as archive:
        return {
            name: np.array(Image.open(archive.open(name)))
            for name in sorted(archive.namelist())
            if name.endswith(".png")
        }  # fmt: skip


def coco_masks(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """(image id, object id) -> mask, decoded with pycocotools."""
    document = json.loads(path.read_text())
    masks = {}
    for a in document["annotations"]:
        rle = {**a["segmentation"], "counts": a["segmentation"]["counts"].encode()}
        masks[(a["image_id"], a["track_id"])] = mask_utils.decode(rle)
    return masks


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "walk.mp4", size=(160, 120), fps=6, seconds=1.0)


def test_the_cli_exports_what_the_app_exports_for_a_session_saved_by_the_app(reference_checkpoint, workdir, video):
    """Click in the real app, save the session file, track there and export; then give the
    saved session to the command line: every export holds the same masks, pixel for pixel."""
    app = start_app(reference_checkpoint, workdir / "app", quick_close=True)
    app_out = workdir / "from-app"
    app_out.mkdir()
    c = Client(app.url, verbose=False, download_files=False)
    try:
        assert str(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded")
        c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
        c.predict(frame=0, x0=10.0, y0=10.0, x1=70.0, y1=50.0, obj_id=2, api_name="/add_box")
        c.predict(frame=3, x=40.0, y=90.0, positive=True, obj_id=2, api_name="/add_point")

        def download(*chosen: str) -> list[Path]:
            files = c.predict(list(chosen), api_name="/export")[-1]
            paths = []
            for file in files:
                import httpx

                url = f"{app.url}gradio_api/file={file['path']}"
                target = app_out / Path(file["path"]).name
                target.write_bytes(httpx.get(url, cookies=c.cookies, timeout=60).content)
                paths.append(target)
            return paths

        (session,) = download("session")
        assert session.name == "walk_session.json"
        result = c.predict(direction="both", frame=0, frames=0, api_name="/track")
        assert not result["error"], result
        app_files = {p.name: p for p in download("png", "coco", "yolo")}
    finally:
        c.close()
        app.stop()
    assert set(app_files) == {"walk_masks.zip", "walk_coco.json", "walk_yolo.zip"}

    out = workdir / "from-cli"
    run = cli(reference_checkpoint, video, "--session", session, "--export", "png,coco,yolo", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "walk.mp4: done, 2 object(s), 6 of 6 frames tracked" in run.stdout, run.stdout
    app_png, cli_png = png_masks(app_files["walk_masks.zip"]), png_masks(out / "walk_masks.zip")
    assert app_png.keys() == cli_png.keys() and len(app_png) == 6
    for name in app_png:
        assert np.array_equal(app_png[name], cli_png[name]), name
    assert {np.unique(a).max() for a in app_png.values()} == {2}  # both objects on every frame
    app_coco, cli_coco = coco_masks(app_files["walk_coco.json"]), coco_masks(out / "walk_coco.json")
    assert app_coco.keys() == cli_coco.keys() and len(app_coco) == 12
    assert all(np.array_equal(app_coco[k], cli_coco[k]) for k in app_coco)
    with zipfile.ZipFile(app_files["walk_yolo.zip"]) as a, zipfile.ZipFile(out / "walk_yolo.zip") as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert all(a.read(n) == b.read(n) for n in a.namelist())


def test_a_prompts_file_gives_the_predictors_masks(reference_checkpoint, workdir, video):
    """A hand-written prompts file, in the pixels of the video as it is (320x240), on a video
    the decoder scales down to 160x120 (--max-side): the masks are the predictor's for the
    scaled prompts."""
    # 4 frames: the prompts' frames (0 and 2) and a frame tracked after each; every frame more is
    # tracked twice (by the command line and by the predictor) and checks nothing new.
    big = media_factory.testsrc(workdir / "big.mp4", size=(320, 240), fps=4, seconds=1.0)
    prompts = workdir / "prompts.json"
    prompts.write_text(json.dumps({"objects": [
        {"id": 1, "name": "left", "label": "person",
         "prompts": [{"frame": 0, "points": [[160, 120], [20, 20]], "labels": [1, 0]}]},
        {"id": 3, "name": "box", "label": "car", "prompts": [{"frame": 2, "box": [20, 20, 140, 100]}]},
    ]}))  # fmt: skip
    out = workdir / "prompted"
    run = cli(reference_checkpoint, big, "--prompts", prompts, "--max-side", 160, "--export", "coco,png", "--out", out)
    assert run.returncode == 0, run.stderr

    frames = decode(big, MediaLimits(max_side=160)).frames
    ref = Replay.start(reference_checkpoint, frames)
    ref.prompt(0, 1, [(80.0, 60.0), (10.0, 10.0)], [1, 0])
    ref.prompt(2, 3, box=(10.0, 10.0, 70.0, 50.0))
    ref.track(0, len(frames) - 1, False)  # the calls the page makes for "both" from frame 0
    ref.track(0, 0, True)
    got = coco_masks(out / "big_coco.json")  # COCO keeps overlaps, the PNG masks do not
    for frame in range(len(frames)):
        for obj in (1, 3):
            expected = ref.masks[frame][obj]
            assert np.array_equal(got.get((frame + 1, obj), np.zeros_like(expected)), expected), (frame, obj)
    assert got[(1, 1)].sum() > 100 and got[(3, 3)].sum() > 100
    document = json.loads((out / "big_coco.json").read_text())
    assert {c["id"]: c["name"] for c in document["categories"]} == {1: "person", 2: "car"}
    assert {(a["track_id"], a["category_id"]) for a in document["annotations"]} == {(1, 1), (3, 2)}


def test_ctrl_c_saves_a_session_file_with_the_frames_done(reference_checkpoint, workdir):
    """SIGINT once a few frames are tracked: exit status 130, and a session file whose tracked
    masks are exactly the frames done, which the page and --session read back."""
    long_video = media_factory.testsrc(workdir / "long.mp4", size=(96, 64), fps=10, seconds=4.0)
    prompts = workdir / "one.json"
    prompts.write_text(json.dumps({"objects": [{"prompts": [{"frame": 0, "points": [[48, 32]]}]}]}))
    out = workdir / "interrupted"
    cmd = [sys.executable, "-m", "annotation", str(long_video), "--prompts", str(prompts), "--out", str(out),
           "--direction", "forward", *model_args(reference_checkpoint)[:-1]]  # progress bar on  # fmt: skip
    process = popen_interruptible(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
    seen = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        seen += process.stderr.read(1)
        done = [int(n) for n in re.findall(r"(\d+)/39", seen)]  # the 39 frames after the start frame
        if done and max(done) >= 3:
            process.send_signal(signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, seen + stderr
    assert "Stopping after the current frame" in stderr and "Traceback" not in stderr
    assert "long.mp4: partial" in stdout and "Summary: 1 partial." in stdout, stdout
    session = formats.load_session_json(out / "long_session.json")
    tracked = sorted(m.frame for m in session.masks if m.tracked)
    assert 3 <= len(tracked) < 40 and tracked == list(range(len(tracked)))


def test_a_failing_video_does_not_stop_the_batch(reference_checkpoint, workdir, video):
    broken = workdir / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    prompts = workdir / "both.json"
    prompts.write_text(json.dumps({"objects": [{"name": "thing", "prompts": [{"frame": 1, "box": [10, 10, 90, 70]}]}]}))
    out = workdir / "batch"
    run = cli(reference_checkpoint, broken, video, "--prompts", prompts, "--out", out, "--export", "coco")
    assert run.returncode == 1, run.stderr
    assert re.search(r"broken\.mp4: failed\. .*'broken\.mp4'", run.stdout), run.stdout
    assert "walk.mp4: done, 1 object(s), 6 of 6 frames tracked" in run.stdout
    assert "Summary: 1 done, 1 failed." in run.stdout
    assert sorted(p.name for p in out.iterdir()) == ["walk_coco.json"]


def test_a_file_that_cannot_be_made_does_not_stop_the_others(reference_checkpoint, workdir, video):
    """The COCO file's place in --out is taken by a folder: the session file (first), the PNG
    masks and the MOT tracks are made all the same, the summary says what was not made and
    why, and the video counts as failed (exit status 1)."""
    prompts = workdir / "one-box.json"
    prompts.write_text(json.dumps({"objects": [{"name": "thing", "prompts": [{"frame": 1, "box": [10, 10, 90, 70]}]}]}))
    out = workdir / "blocked"
    (out / "walk_coco.json").mkdir(parents=True)
    run = cli(reference_checkpoint, video, "--prompts", prompts, "--no-track", "--out", out,
              "--export", "coco,png,mot,session")  # fmt: skip
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert ("walk.mp4: failed, 1 object(s), 0 of 6 frames tracked" in run.stdout
            and "Made 3 of 4 file(s). Not made: the COCO file. Could not write the COCO file (Is a directory)\n"
            in run.stdout), run.stdout  # fmt: skip
    listed = [Path(line.strip()).name for line in run.stdout.splitlines() if line.startswith("    ")]
    assert listed == ["walk_session.json", "walk_masks.zip", "walk_mot.txt"], run.stdout
    assert "Summary: 1 failed." in run.stdout and "Traceback" not in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["walk_coco.json", "walk_masks.zip", "walk_mot.txt",
                                                     "walk_session.json"]  # fmt: skip
    assert formats.load_session_json(out / "walk_session.json").prompts[0].frame == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.mp4", "--prompts", "{prompts}"], "no such video file: missing.mp4"),
        (["{video}"], "give --session (a session file saved from the page), --prompts or --import"),
        (["{video}", "--prompts", "{prompts}", "--export", "coco,gif"], "--export: unknown gif"),
        (["{video}", "{video}", "--session", "{prompts}"], "would write files of the same name"),
        (["{video}", "--session", "{folder}"], "no session file for walk.mp4 in"),
        (["{video}", "--prompts", "{prompts}", "--frames", "0"], "--frames: '0' is not a whole number of at least 1"),
        (["{video}", "--prompts", "{prompts}", "--max-frames", "0"], "--max-frames: '0' is not a whole number of at "),
        (["{video}", "--prompts", "{prompts}", "--fps", "nan"], "--fps: 'nan' is not a positive number"),
        (["{video}", "--prompts", "{prompts}", "--fps", "-3"], "--fps: '-3' is not a positive number"),
        (["{video}", "--import", "{prompts}", "--min-score", "inf"], "--min-score: 'inf' is not a number from 0 to 1"),
        (["{video}", "--prompts", "{prompts}", "--start", "1.5"], "--start: '1.5' is not a whole number of at least 0"),
        (["{video}", "--prompts", "{prompts}", "--model", "sam3"], "Unknown SAM 2 variant 'sam3'"),
        (["{video}", "--session", "{bad_session}"], "is not a valid session file: video has no "),
        (["{video}", "--prompts", "{bad_prompts}"], "objects[0].prompts[0].labels must hold one 0 or 1 per point"),
    ],
)
def test_bad_input_is_one_plain_line_before_the_model_loads(workdir, video, args, message):
    """No checkpoint is given: each of these is refused before any model or download."""
    folder = workdir / "empty-folder"
    folder.mkdir(exist_ok=True)
    prompts = workdir / "ok-prompts.json"
    prompts.write_text(json.dumps({"objects": [{"prompts": [{"frame": 0, "points": [[5, 5]]}]}]}))
    bad_session = workdir / "bad-session.json"
    bad_session.write_text(json.dumps({"version": 2, "video": {}, "objects": [{}], "prompts": []}))
    bad_prompts = workdir / "bad-prompts.json"
    bad_prompts.write_text(json.dumps({"objects": [{"prompts": [{"frame": 0, "points": [[5, 5]], "labels": [2]}]}]}))
    values = dict(video=video, prompts=prompts, folder=folder, bad_session=bad_session, bad_prompts=bad_prompts)
    cmd = [sys.executable, "-m", "annotation", *(a.format(**values) for a in args), "--checkpoint-dir", str(folder)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr  # the line itself, no usage block before it
    assert "Model:" not in run.stderr and not run.stdout


def test_auto_annotation_from_a_detectors_boxes(reference_checkpoint, workdir, video):
    """One frame's COCO detections and a data.yaml: each box above the score is an object of
    its class, tracked; the masks are the predictor's for the same boxes."""
    detections = workdir / "detections.json"
    detections.write_text(json.dumps([
        {"image_id": 1, "category_id": 2, "bbox": [10, 10, 60, 40], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [90, 50, 50, 50], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1},
    ]))  # fmt: skip
    classes = workdir / "data.yaml"
    classes.write_text("names:\n  0: person\n  1: car\n")
    out = workdir / "auto"
    run = cli(reference_checkpoint, video, "--import", detections, "--classes", classes, "--min-score", 0.5,
              "--export", "coco", "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "walk.mp4: done, 2 object(s), 6 of 6 frames tracked" in run.stdout, run.stdout

    frames = decode(video, MediaLimits()).frames
    ref = Replay.start(reference_checkpoint, frames)
    ref.prompt(0, 2, box=(10.0, 10.0, 70.0, 50.0))
    ref.prompt(0, 3, box=(90.0, 50.0, 140.0, 100.0))
    ref.track(0, len(frames) - 1, False)
    ref.track(0, 0, True)
    got = coco_masks(out / "walk_coco.json")
    assert {k[1] for k in got} == {2, 3}
    for frame in range(len(frames)):
        for obj in (2, 3):
            expected = ref.masks[frame][obj]
            assert np.array_equal(got.get((frame + 1, obj), np.zeros_like(expected)), expected)
    document = json.loads((out / "walk_coco.json").read_text())
    assert [c["name"] for c in document["categories"]] == ["person", "car"]  # category id i = class i - 1
    assert {(a["track_id"], a["category_id"]) for a in document["annotations"]} == {(2, 2), (3, 1)}


def test_a_bad_import_fails_that_video_plainly(reference_checkpoint, workdir, video):
    wrong = workdir / "wrong-size.json"
    wrong.write_text(json.dumps({"images": [{"id": 1, "file_name": "a_00000.jpg", "height": 10, "width": 10}],
                                 "annotations": [{"image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}]}))  # fmt: skip
    run = cli(reference_checkpoint, video, "--import", wrong, "--out", workdir / "wrong")
    assert run.returncode == 1, run.stderr
    assert "walk.mp4: failed. 'wrong-size.json' cannot be imported: images[0] is 10x10, but the video is 160x120" \
        in run.stdout and "Traceback" not in run.stderr
