"""Find by text on the real app (one app for the module) with the reference SAM 2 weights and a
tiny random-weight Grounding DINO saved as a user's folder (tests/detectors.py), given with
``--detector FOLDER``.

In a browser: phrases found on a frame, Keep all, Track, Make files; the boxes kept are the
detector's for those phrases and thresholds, each object's label is its phrase, and the exported
masks equal the predictor given the same boxes on that frame and tracked the same way.

Through gradio_client: bad requests are refused in words with the work unchanged, then the
session still works; "Find and track in the whole video" makes the objects and masks that
``annotation.concepts.run`` makes in this process for the same inputs; keeping found boxes is one
undo step.

The random weights score nearly every box close to 1, so the tests ask for a box threshold just
under 1, which a handful of boxes pass (the published defaults would pass most of the 30)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file

from annotation import concepts, operations
from annotation import formats as exporting
from annotation.detect import Detector, DetectorSpec
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import Replay, assert_masks_match, start_app
from tests.detectors import save_grounding_dino
from tests.test_app_api import export, file_url, get, plain
from tests.test_app_e2e import assert_served_cleanly, launch_chromium, open_page, reveal, track, upload, wait_status
from tests.test_app_find import make_files

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

APP_LIMITS = ("--max-seconds", "4", "--max-frames", "40")
LIMITS = MediaLimits(max_seconds=4, max_frames=40)
BOX = 0.99995  # a few of the random detector's boxes score above it (see the module's words)
FIND_TIMEOUT_MS = 300_000  # the first find loads the detector
UNFETCHED: list[tuple[int, str]] = []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text")


@pytest.fixture(scope="module")
def detector_folder(workdir: Path) -> Path:
    folder = workdir / "grounding-dino"
    folder.mkdir()
    return save_grounding_dino(folder)


@pytest.fixture(scope="module")
def detector(detector_folder: Path) -> Detector:
    return Detector.load(DetectorSpec(str(detector_folder)), progress=False)


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path, detector_folder: Path):
    running = start_app(reference_checkpoint, workdir, *APP_LIMITS, "--detector", str(detector_folder),
                        quick_close=True)  # fmt: skip
    yield running
    running.stop()
    assert_served_cleanly(running, UNFETCHED)  # every refusal was in words: no traceback in the log


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    """8 frames of 320x240 test pattern at 8 fps."""
    return media_factory.testsrc(workdir / "clip.mp4", size=(320, 240), fps=8, seconds=1.0)


@pytest.fixture(scope="module")
def frames(video: Path) -> list[np.ndarray]:
    return decode(video, LIMITS).frames


# ----------------------------------------------------------------------------- browser


def test_find_by_text_keep_all_track_export(app, browser, video, frames, detector, reference_checkpoint, workdir):
    page = open_page(browser, app, UNFETCHED)
    upload(page, video)
    wait_status(page, "Loaded")
    reveal(page, "text-phrases")
    assert page.locator("#text-phrases textarea, #text-phrases input").first.get_attribute("placeholder") == (
        "person, red car")  # fmt: skip
    box_field = page.locator("#text-box-threshold input")
    # The folder is a Grounding DINO: the fields start at its published defaults, and say so.
    assert float(box_field.input_value()) == 0.35
    assert float(page.locator("#text-text-threshold input").input_value()) == 0.25
    assert "Grounding DINO's published defaults: box 0.35, text 0.25" in page.locator("#text-defaults").inner_text()
    page.locator("#text-phrases textarea, #text-phrases input").first.fill("person, red car")
    box_field.fill(str(BOX))
    box_field.press("Tab")
    page.locator("#text-find").click()
    expected = detector.detect(frames[0], ["person", "red car"], BOX)  # meanwhile, in this process
    message = wait_status(page, "for 'person, red car' on frame 0.", FIND_TIMEOUT_MS)
    assert 2 <= len(expected) <= 6, expected
    assert f"Found {len(expected)} box(es) for 'person, red car' on frame 0" in message, message
    assert "on this machine" in message
    page.locator("#text-more-help > button.label-wrap").click()  # the help quotes the time measured
    assert "The last find took" in page.locator("#text-help").inner_text()
    assert "s on this machine at 320x240" in page.locator("#text-help").inner_text()
    page.wait_for_selector("#text-found img")

    page.locator("#text-keep-all").click()
    kept = wait_status(page, "new object(s)", FIND_TIMEOUT_MS)
    assert f"Found {len(expected)} box(es) for 'person, red car' on 1 frame(s)" in kept, kept
    page.wait_for_selector("#text-found", state="hidden")  # all kept: nothing left to keep
    assert "7/7 frames" in track(page, "forward")
    files = make_files(page, workdir, {"COCO JSON", "Session (JSON)"}, 2)

    session = exporting.load_session_json(files["clip_session.json"])
    prompts = sorted((p.obj_id, p.frame, p.box) for p in session.prompts)
    labels = {o.id: o.label for o in session.objects}
    # each new box an object with its box as the prompt and its phrase as the label (two boxes
    # of one mask would be one object: none here)
    assert len(prompts) == len(expected) and {f for _, f, _ in prompts} == {0}
    by_score = sorted(expected, key=lambda d: -d.score)
    for (obj, _, given), detection in zip(prompts, by_score, strict=True):
        assert np.allclose(given, detection.box, atol=1e-3), (given, detection)
        assert labels[obj] == detection.phrase
    ref = Replay.start(reference_checkpoint, frames)
    for obj, frame, given in prompts:
        ref.prompt(frame, obj, box=given)
    ref.track(0, 7, False)
    assert_masks_match(exporting.read_coco(files["clip_coco.json"]), ref.masks, len(frames))
    page.context.close()


# ----------------------------------------------------------------------------- gradio_client


BAD_FINDS = [
    (("",), "Type what to find"),
    ((" , ;",), "Type what to find"),
    ((", ".join(f"thing {i}" for i in range(500)),), "That is 500 phrases"),
    (("person", 1.5), "The box threshold must be a number from 0 to 1"),
    (("person", -0.1), "The box threshold must be a number from 0 to 1"),
    (("person", 0.5, 2.0), "The text threshold must be a number from 0 to 1"),
    (("person", True), "The box threshold must be a number from 0 to 1"),
]
BAD_RUNS = [
    (dict(every=0), "k must be at least 1"),
    (dict(every=9), "the video has only 8 frames"),
    (dict(every=2.5), "k must be a whole number"),
    (dict(match_iou=0.0), "must be above 0"),
    (dict(match_iou=1.5), "must be a number from 0 to 1"),
    (dict(phrases=""), "Type what to find"),
    (dict(box_threshold=7), "box threshold must be a number from 0 to 1"),
]


def test_bad_requests_are_refused_in_words_then_the_run_equals_the_core(app, video, frames, detector,
                                                                         reference_checkpoint) -> None:  # fmt: skip
    c = Client(app.url, verbose=False, download_files=False)
    assert c.predict(0, "person", api_name="/find_by_text")["message"] == "Problem: Upload a video first (step 1)."
    assert plain(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded 'clip.mp4'")
    for args, words in BAD_FINDS:
        answer = c.predict(0, *args, api_name="/find_by_text")
        assert answer["message"].startswith("Problem: ") and words in answer["message"], (args, answer)
        assert answer["found"] == []
    # NaN is no JSON, so gradio_client cannot send it; a browser or script can: sent as raw text
    for raw in ("[0, \"person\", NaN, null]", "[0, \"person\", 0.5, Infinity]"):
        assert "threshold must be a number from 0 to 1" in _raw_call(app, c, "find_by_text", raw)["message"]
    assert "Frame 9 is outside the video" in c.predict(9, "person", api_name="/find_by_text")["message"]
    good = dict(phrases="person, red car", every=4, match_iou=0.5, box_threshold=BOX, text_threshold=None)
    for change, words in BAD_RUNS:
        answer = c.predict(**{**good, **change}, api_name="/find_and_track_text")
        assert answer["message"].startswith("Problem: ") and words in answer["message"], (change, answer)
    nothing = "Problem: Nothing found to keep yet: type what to find and press 'Find on this frame' first."
    assert c.predict(None, True, api_name="/keep_text_found")["message"] == nothing
    # the work is as it was: one object, no prompt, nothing to undo
    session = exporting.load_session_json(Path(_download(app, c, "session")))
    assert [o.id for o in session.objects] == [1] and not session.prompts
    assert "Nothing to undo" in plain(c.predict(0, api_name="/undo")[2])

    # one frame: the boxes found, one kept, one undo takes it back
    found = c.predict(0, "person, red car", BOX, api_name="/find_by_text")
    expected = detector.detect(frames[0], ["person", "red car"], BOX)
    assert [(f["phrase"], f["score"]) for f in found["found"]] == [(d.phrase, round(d.score, 4)) for d in expected]
    assert found["seconds"] > 0 and "on this machine" in found["message"]
    assert "There is no found box 99" in c.predict([99], api_name="/keep_text_found")["message"]
    kept = c.predict([1], api_name="/keep_text_found")
    assert kept["objects"] == [2] and kept["labels"] == {"2": expected[1].phrase} and kept["areas"]["2"] > 0
    assert len(kept["found"]) == len(expected) - 1
    assert c.predict(api_name="/text_found")["message"] == f"{len(expected) - 1} found box(es) on frame 0."
    assert "Undid: find 'person, red car'" in plain(c.predict(0, api_name="/undo")[2])
    assert c.predict(api_name="/text_found")["found"] == kept["found"]  # what was found stays to keep

    # the whole video, as the core does it
    answer = c.predict(**good, api_name="/find_and_track_text")
    assert not answer["error"] and not answer["cancelled"], answer
    assert answer["plan"].startswith("It will detect on 2 of the 8 frames (0, 4)") and answer["frames"] == [0, 4]
    ref = Replay.start(reference_checkpoint, frames)
    engine = Engine(ref.predictor)
    work = Work(folder=Path(app.temp_dir).parent / "core-run")
    operations.load_video(work, engine, video, LIMITS)
    run = concepts.run(work, engine, concepts.text_detections(detector, good["phrases"], BOX), [0, 4],
                       "'person, red car'", 0.5, labels=["person", "red car"])  # fmt: skip
    assert not work.progress.error, work.progress.error
    assert (answer["new"], answer["again"], answer["same"]) == (
        run.count("new"), run.count("again"), run.count("same") + run.count("repeat"))  # fmt: skip
    assert answer["new"] >= 1 and answer["message"] == run.message  # the reference masks overlap: few are new
    assert answer["objects"] == list(work.doc.object_ids)
    assert answer["labels"] == {str(o): work.registry[o].label for o in work.doc.object_ids}
    got = exporting.read_coco(Path(_download(app, c, "coco")))
    want: dict[int, dict[int, np.ndarray]] = {}
    for (frame, obj), packed in work.doc.masks.items():
        want.setdefault(frame, {})[obj] = packed.unpack()
    assert_masks_match(got, want, len(frames), min_iou=1.0)
    assert "Undid: find and track 'person, red car'" in plain(c.predict(0, api_name="/undo")[2])


def _raw_call(app, c: Client, api_name: str, data: str) -> dict:
    """Call an endpoint in the client's session with ``data`` as written (JSON or not)."""
    body = f'{{"data": {data}, "session_hash": "{c.session_hash}"}}'
    started = httpx.post(f"{app.url}gradio_api/call/{api_name}", content=body, cookies=c.cookies, timeout=30,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert started.status_code == 200, started.text
    events = httpx.get(f"{app.url}gradio_api/call/{api_name}/{started.json()['event_id']}", cookies=c.cookies,
                       timeout=120).text  # fmt: skip
    assert "event: complete" in events, events
    return json.loads(events.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])[0]


def _download(app, c: Client, kind: str) -> Path:
    """Export ``kind`` through the API and save it next to the app's files."""
    value = export(c, kind)[0]
    path = Path(app.temp_dir).parent / f"api-{kind}-{Path(value['path']).name}"
    path.write_bytes(get(app, c, file_url(app, value)).content)
    return path
