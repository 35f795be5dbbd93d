"""Long videos in bounded memory (issue 21 item 5): the command line reads a video tracked
forward from its file as tracking goes (``sam2.video_stream.FrameStream``), the predictor
forgets the results of frames tracking no longer attends to, and the exports unpack one
frame's masks at a time. The frames, masks and files are those of today's path, which
decodes the whole video first (``--decode-first``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from annotation import cli, formats, operations
from annotation.engine import Engine, ModelSpec
from annotation.work import Work
from sam2.video_io import MediaError, MediaLimits, decode
from sam2.video_stream import FrameStream, open_stream
from tests import media_factory
from tests.app_harness import IMAGE_SIZE, KERNELS, MODEL, PRECISION

FRAMES = 20  # more than the 16 frames tracking attends to, so the predictor forgets some
EXPORTS = "png,coco,yolo,session"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream")


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "walk.mp4", size=(64, 48), fps=10, seconds=FRAMES / 10)


def test_a_frame_stream_gives_decodes_frames_holding_only_its_window(video):
    """Every frame equals decode's, bit for bit, read forward and with jumps back (which open
    the file again); the stream never holds more than its window of decoded frames."""
    decoded = decode(video)
    facts, stream = open_stream(video, window=3)
    assert isinstance(stream, FrameStream) and facts.frames == []
    assert (len(stream), facts.fps, facts.timestamps) == (len(decoded.frames), decoded.fps, decoded.timestamps)
    assert len(stream) == FRAMES and stream.passes == 0  # counting keeps no pass open, and no frame
    held = []
    for index in range(len(stream)):
        assert np.array_equal(stream[index], decoded.frames[index]), index
        held.append(stream.held)
    assert max(held) == 3 == stream.most_held and stream.passes == 1 and stream.nbytes() == 3 * 64 * 48 * 3
    # Behind the window: a new pass from the file's start; ahead: on through the open one.
    for index, passes in ((5, 2), (0, 3), (7, 3), (6, 3), (4, 4)):
        assert np.array_equal(stream[index], decoded.frames[index]), index
        assert stream.passes == passes, index
    assert stream.most_held == 3
    assert np.array_equal(stream[-1], decoded.frames[-1])
    with pytest.raises(IndexError, match="outside the video"):
        stream[FRAMES]
    stream.close()
    assert stream.held == 0 and np.array_equal(stream[2], decoded.frames[2])  # reopens after close
    stream.close()


def test_a_frame_stream_keeps_decodes_limits_and_rate(video):
    """The counting pass refuses what decode refuses, in the same words; a chosen rate samples alike."""
    limits = MediaLimits(max_frames=FRAMES - 5)
    with pytest.raises(MediaError) as refused:
        decode(video, limits)
    with pytest.raises(MediaError, match="limit is 15 frames") as streamed:
        open_stream(video, limits)
    assert str(streamed.value) == str(refused.value)
    decoded, (facts, stream) = decode(video, fps=4), open_stream(video, fps=4)
    assert len(stream) == len(decoded.frames) == 8 and facts.fps == decoded.fps
    assert all(np.array_equal(stream[i], decoded.frames[i]) for i in (3, 0, 7))
    stream.close()


@pytest.fixture(scope="module")
def engine(reference_checkpoint) -> Engine:
    return Engine.load(ModelSpec(MODEL, reference_checkpoint, IMAGE_SIZE, precision=PRECISION, frame_storage="png",
                                 encode_ahead=0, kernels=KERNELS))  # fmt: skip


@pytest.fixture(scope="module")
def prompts(workdir: Path) -> Path:
    path = workdir / "prompts.json"
    path.write_text(json.dumps({"objects": [{"name": "pattern", "prompts": [{"frame": 0, "points": [[32, 24]]}]}]}))
    return path


def run_cli(engine: Engine, video: Path, prompts: Path, out: Path, *more: str) -> tuple[cli.Outcome, bool]:
    """The command line's own per-video function, as ``main`` calls it -> (outcome, streamed?)."""
    parser = cli.build_parser()
    args = parser.parse_args([str(video), "--prompts", str(prompts), "--export", EXPORTS, "--out", str(out),
                              "--image-size", str(IMAGE_SIZE), "--quiet", *more])  # fmt: skip
    args.exports, args.class_list, args.phrases = cli.parse_exports(args.export, parser), [], None
    (job,) = cli.plan_jobs(args, parser)
    out.mkdir(parents=True)
    limits = MediaLimits()
    return cli.annotate_video(job, engine, args, limits, out.parent / f"{out.name}-work"), cli.streams(job, args)


@pytest.fixture(scope="module")
def decoded_first(engine, video, prompts, workdir) -> cli.Outcome:
    """Today's path: the whole video decoded (and kept, PNG-compressed) before tracking."""
    outcome, used = run_cli(engine, video, prompts, workdir / "decoded", "--decode-first")
    assert not used and outcome.status == "done", outcome.message
    return outcome


def test_streamed_and_decoded_first_make_the_same_files(engine, video, prompts, workdir, decoded_first):
    """The default (the video read as tracking goes, "both" ways from frame 0) and --decode-first
    (today's path) write the same files: every zip member and every JSON field alike, but
    the date a COCO file was made."""
    streamed, used = run_cli(engine, video, prompts, workdir / "streamed")
    decoded = decoded_first
    assert used
    assert streamed.status == decoded.status == "done", (streamed.message, decoded.message)
    assert streamed.tracked == decoded.tracked == FRAMES
    names = sorted(p.name for p in streamed.files)
    assert names == sorted(p.name for p in decoded.files) == [
        "walk_coco.json", "walk_masks.zip", "walk_session.json", "walk_yolo.zip"]  # fmt: skip
    for name in names:
        assert file_contents(workdir / "streamed" / name) == file_contents(workdir / "decoded" / name), name
    with zipfile.ZipFile(workdir / "streamed" / "walk_masks.zip") as archive:
        assert sum(n.endswith(".png") for n in archive.namelist()) == FRAMES


def file_contents(path: Path) -> object:
    """What a file holds, less the time it was made: a zip's members by name, a JSON document
    without COCO's ``date_created``."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(path.read_text())
    document.get("info", {}).pop("date_created", None)
    return document


def test_a_streamed_run_holds_a_window_of_frames_and_of_results(engine, video, prompts, workdir, decoded_first):
    """On the real objects of a streamed run: the frame stream never held more than its window,
    the predictor kept the results of only the frames tracking attends to (16 behind, and the
    clicked one), and the masks are those of the run above that kept everything."""
    work = Work(folder=workdir / "operations")
    operations.load_video_streamed(work, engine, video, MediaLimits(), image_size=IMAGE_SIZE)
    video_loaded = operations.require_video(work)
    frames, handle = video_loaded.frames, video_loaded.handle
    assert isinstance(frames, FrameStream) and handle.frames is frames
    engine.keep_behind(handle)
    operations.apply_prompts(work, engine, formats.load_prompts_json(prompts))
    progress = operations.track(work, engine, 0, "forward", None)
    assert not progress.error and progress.done == FRAMES - 1
    assert frames.most_held <= frames.window == 8
    handle = operations.require_video(work).handle  # the prompts were replayed into a fresh session
    (track,) = handle.tracks.values()  # the prompts file's one object
    assert len(track.cond) == 1 and sorted(track.non_cond) == list(range(FRAMES - 17, FRAMES))
    with zipfile.ZipFile(workdir / "decoded" / "walk_masks.zip") as archive:
        kept = {name: archive.read(name) for name in archive.namelist()}
    (workdir / "operations-out").mkdir()
    made = operations.make_files(work, ["png"], workdir / "operations-out")
    assert made.complete, made.failed
    with zipfile.ZipFile(made.made[0]) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == kept
    frames.close()
