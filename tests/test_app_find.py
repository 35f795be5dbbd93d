"""Finding objects and a click's three masks on the real app with the reference weights (one app
for the module: starting one takes about 20 s).

In a browser: objects found on a frame are clicked, kept, tracked and exported, and the masks
equal the predictor's for those mask prompts called directly (add_new_mask, then the same
tracking); a click's candidate other than the model's best is picked from its picture, and the
tracked masks follow it exactly as add_new_mask with that candidate does; a find with no video,
tracking pressed while a find runs, and a find cancelled mid-way each get a plain message and lose no
work. Through gradio_client: the find, keep, candidates and pick endpoints, with bad requests.

The reference weights' masks all span the frame, so the app runs with the box NMS off and
filters that a few of them pass (see SETTINGS)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file

import sam2
from annotation import formats as exporting
from annotation.document import PackedMask
from annotation.engine import FIND_POINTS_PER_BATCH
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import IMAGE_SIZE, KERNELS, MODEL, PRECISION, Replay, assert_masks_match, iou, start_app
from tests.reference import reference_state_dict
from tests.test_app_api import export, file_url, get, plain
from tests.test_app_e2e import (
    EXPORT_TIMEOUT_MS,
    act,
    assert_served_cleanly,
    choose,
    click_image,
    fetch,
    launch_chromium,
    loaded_geometry,
    open_page,
    reveal,
    status,
    track,
    upload,
    wait_status,
    wait_told,
)

SETTINGS = {"--find-iou-thresh": 0.48, "--find-stability-thresh": 0.8, "--find-nms-thresh": 1.0}
APP_LIMITS = ("--max-seconds", "4", "--max-frames", "40")
FIND_TIMEOUT_MS = 300_000  # 64 points at 512 px: 10 s on an idle 2-core machine, much more on a busy one


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("find")


UNFETCHED: list[tuple[int, str]] = []  # (status, URL) of files the pages asked for and did not get


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    options = [str(v) for option in SETTINGS.items() for v in option]
    running = start_app(reference_checkpoint, workdir, *APP_LIMITS, *options, quick_close=True)
    yield running
    running.stop()
    # Bad requests and a cancelled find are all answered in words: nothing may end in an error
    # or a traceback on the server, and every picture the pages were sent could be fetched.
    assert_served_cleanly(running, UNFETCHED)


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    """8 frames of 320x240 test pattern."""
    return media_factory.testsrc(workdir / "clip.mp4", size=(320, 240), fps=8, seconds=1.0)


@pytest.fixture(scope="module")
def frames(video: Path) -> list[np.ndarray]:
    return decode(video, MediaLimits(max_seconds=4, max_frames=40)).frames


def new_page(browser, app):
    return open_page(browser, app, UNFETCHED)


# ----------------------------------------------------------------------------- helpers


def generated(frame: np.ndarray, points_per_side: int) -> list[np.ndarray]:
    """sam2's own generator run directly, as the app is set up: the masks the app should find."""
    generator = sam2.build_automatic_mask_generator(
        MODEL, reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, points_per_side=points_per_side,
        points_per_batch=FIND_POINTS_PER_BATCH, pred_iou_thresh=SETTINGS["--find-iou-thresh"],
        stability_score_thresh=SETTINGS["--find-stability-thresh"], box_nms_thresh=SETTINGS["--find-nms-thresh"],
        precision=PRECISION, kernels=KERNELS,
    )  # fmt: skip
    return [r["segmentation"] for r in generator.generate(frame)]


def click_points(masks: list[np.ndarray], count: int) -> list[tuple[int, tuple[int, int]]]:
    """[(index, (x, y))] for ``count`` masks: a pixel where that mask is the smallest one there
    (what a click on the picture chooses), as far inside that region as any, so that a click
    there is unambiguous; the masks with the most room first."""
    areas = np.array([m.sum() for m in masks])
    stack = np.stack(masks)
    owner = np.where(stack.any(0), np.argmin(np.where(stack, areas[:, None, None], np.iinfo(np.int64).max), 0), -1)
    room = []
    for index in range(len(masks)):
        distance = cv2.distanceTransform(np.pad(owner == index, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        room.append((float(distance[y, x]), index, (int(x), int(y))))
    return [(index, point) for _, index, point in sorted(room, reverse=True)[:count]]


def show_frame(page, frame: int) -> None:
    number = page.locator("#frame input[type=number]")
    act(page, lambda: (number.fill(str(frame)), number.press("Enter")))


def make_files(page, workdir: Path, wanted: set[str], count: int) -> dict[str, Path]:
    """Tick exactly the ``wanted`` formats (labels), make them and download each."""
    reveal(page, "export")
    for box in page.locator("#formats label").all():
        if box.locator("input").is_checked() != (box.inner_text().strip() in wanted):
            box.click()
    page.locator("#export").click()
    wait_status(page, f"Made {count} file(s)", EXPORT_TIMEOUT_MS)
    page.wait_for_function(f"() => document.querySelectorAll('#downloads a[href]').length >= {count}")
    files = {}
    for link in page.locator("#downloads a[href]").all():
        href = link.get_attribute("href")
        name = href.rsplit("/", 1)[-1].split("?")[0]
        response = fetch(page, href)
        assert response.ok, (name, response.status)
        files[name] = workdir / "downloads" / name
        files[name].parent.mkdir(exist_ok=True)
        files[name].write_bytes(response.body())
    return files


def mask_prompts(session: Path, size: tuple[int, int]) -> dict[tuple[int, int], np.ndarray]:
    """(frame, object) -> the mask a session file holds as that object's prompt there."""
    saved = exporting.load_session_json(session)
    return {(p.frame, p.obj_id): PackedMask.from_bits(size, p.mask.top, p.mask.left, (p.mask.height, p.mask.width),
                                                      p.mask.bits).unpack()
            for p in saved.prompts if p.mask is not None}  # fmt: skip


def found_picture_loaded(page) -> None:
    loaded_geometry(page, "#found")  # waits until the browser has the picture


# ----------------------------------------------------------------------------- browser


def test_find_keep_two_track_export(app, browser, video, frames, reference_checkpoint, workdir):
    page = new_page(browser, app)
    upload(page, video)
    wait_status(page, "Loaded")
    show_frame(page, 3)
    reveal(page, "find-density")
    choose(page, "#find-density", "8 per side")
    page.locator("#find-objects").click()
    expected = generated(frames[3], 8)  # meanwhile, in this process
    message = wait_status(page, "object(s) on frame 3", FIND_TIMEOUT_MS)
    assert f"Found {len(expected)} object(s) on frame 3" in message and len(expected) >= 2
    assert "64/64 points" in page.locator("#find-progress").inner_text()
    found_picture_loaded(page)

    (a, point_a), (b, point_b) = click_points(expected, 2)
    click_image(page, "#found", *point_a)
    assert f"Chose found object {a + 1}; 1 of {len(expected)} chosen" in wait_status(page, "1 of")
    found_picture_loaded(page)
    click_image(page, "#found", *point_b)
    assert f"Chose found object {b + 1}; 2 of {len(expected)} chosen" in wait_status(page, "2 of")
    act(page, lambda: page.locator("#keep-found").click())
    assert "Kept 2 found object(s) on frame 3 as 'object 2', 'object 3'" in status(page)
    legend = page.locator("#legend").inner_text()
    assert "object 2" in legend and "object 3" in legend

    assert "7/7 frames" in track(page, "both")  # 4..7, then 2..0 (frame 3 has its masks)
    files = make_files(page, workdir, {"COCO JSON", "Session (JSON)"}, 2)
    prompts = mask_prompts(files["clip_session.json"], frames[0].shape[:2])
    assert set(prompts) == {(3, 2), (3, 3)}  # the lower index became object 2
    first, second = sorted((a, b))
    assert iou(prompts[(3, 2)], expected[first]) > 0.99 and iou(prompts[(3, 3)], expected[second]) > 0.99

    ref = Replay.start(reference_checkpoint, frames)
    for obj in (2, 3):
        _, ids, logits = ref.predictor.add_new_mask(ref.state, 3, obj, prompts[(3, obj)])
        ref.masks.setdefault(3, {})[obj] = (logits[list(ids).index(obj), 0] > 0).cpu().numpy()
    ref.track(3, 4, False)
    ref.track(3, 3, True)
    assert_masks_match(exporting.read_coco(files["clip_coco.json"]), ref.masks, len(frames))
    page.context.close()


def test_pick_another_of_a_clicks_masks(app, browser, video, frames, reference_checkpoint, workdir):
    page = new_page(browser, app)
    upload(page, video)
    wait_status(page, "Loaded")
    p = (150, 110)
    act(page, lambda: click_image(page, "#viewer", *p))
    thumbs = page.locator("#choices button.thumbnail-item")
    page.wait_for_function("() => document.querySelectorAll('#choices button.thumbnail-item img').length === 3")

    ref = Replay.start(reference_checkpoint, frames)
    best_mask = ref.prompt(0, 1, [p], [1])
    logits, scores = ref.predictor.prompt_candidates(ref.state, 0, 1)
    masks = [(logits[i, 0] > 0).cpu().numpy() for i in range(3)]
    best = int(np.argmax(scores.cpu().numpy()))
    captions = [thumbs.nth(i).inner_text() for i in range(3)]
    assert captions == [f"{i + 1}: {float(scores[i]):.3f}" + (" (shown)" if i == best else "") for i in range(3)]
    other = next(i for i in range(3) if masks[i].any() and iou(masks[i], best_mask) < 0.9)

    act(page, lambda: thumbs.nth(other).click())
    assert f"'object 1' now has mask {other + 1} of 3 on frame 0; tracking follows it." in status(page)
    page.wait_for_selector("#choices", state="hidden")  # a mask prompt offers no choice
    assert "7/7 frames" in track(page, "forward")  # the frames after frame 0
    files = make_files(page, workdir, {"COCO JSON"}, 1)

    _, ids, picked = ref.predictor.add_new_mask(ref.state, 0, 1, masks[other])
    ref.masks[0] = {1: (picked[0, 0] > 0).cpu().numpy()}
    assert iou(ref.masks[0][1], best_mask) < 0.9  # the pick really changed the object's mask
    ref.track(0, 7, False)
    assert_masks_match(exporting.read_coco(files["clip_coco.json"]), ref.masks, len(frames))

    act(page, lambda: page.locator("#undo").click())  # the tracking (the last frame tracked is shown)
    act(page, lambda: page.locator("#undo").click())  # the pick
    assert page.locator("#choices").is_hidden()  # frame 7 has no click
    show_frame(page, 0)  # the choice is offered again where the click is
    page.wait_for_function("() => document.querySelectorAll('#choices button.thumbnail-item img').length === 3")
    page.context.close()


def test_bad_finds_get_a_message_and_lose_nothing(app, browser, video):
    page = new_page(browser, app)
    reveal(page, "find-objects")
    page.locator("#find-objects").click()
    assert "Upload a video first" in wait_status(page, "Problem")

    upload(page, video)
    wait_status(page, "Loaded")
    act(page, lambda: click_image(page, "#viewer", 150, 110))
    legend = page.locator("#legend").inner_text()
    view = page.locator("#viewer img").evaluate("i => i.src")

    choose(page, "#find-density", "32 per side")
    page.locator("#find-objects").click()
    page.wait_for_function(
        "() => /Finding objects on frame 0: [1-9][0-9]*\\/1024 points/.test("
        "document.querySelector('#find-progress')?.innerText || '')", timeout=FIND_TIMEOUT_MS,
    )  # fmt: skip
    # While it runs, tracking is refused in words. (A second press of Find is not even sent:
    # Gradio drops a button's event while its last one is pending.)
    page.locator("#track-forward").click()
    assert "Finding objects on frame 0 is still running" in wait_told(page, "still running")
    click_image(page, "#viewer", 60, 60)  # a click while it runs: refused (the view below stays), not mixed in
    page.locator("#find-cancel").click()
    cancelled = "Finding objects cancelled: your objects, clicks and masks stay as they were."
    assert cancelled in wait_status(page, "cancelled", FIND_TIMEOUT_MS)
    progress = page.locator("#find-progress").inner_text()
    done = int(re.search(r"(\d+)/1024 points", progress).group(1))
    assert 0 < done < 1024 and "Cancelled" in progress

    assert page.locator("#found").is_hidden()  # nothing found, nothing to keep
    assert page.locator("#legend").inner_text() == legend
    assert page.locator("#viewer img").evaluate("i => i.src") == view
    act(page, lambda: page.locator("#undo").click())  # the history is intact
    assert "Undid: point + on frame 0" in status(page)
    act(page, lambda: click_image(page, "#viewer", 150, 110))  # and the work goes on
    assert "Added a point +" in status(page)
    page.context.close()


# ----------------------------------------------------------------------------- gradio_client


def test_find_keep_and_pick_through_the_api(app, video, frames, reference_checkpoint):
    c = Client(app.url, verbose=False, download_files=False)
    assert c.predict(0, 8, api_name="/find_objects")["message"] == "Problem: Upload a video first (step 1)."
    assert plain(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded 'clip.mp4'")
    nothing = "Problem: Nothing found to keep yet: press 'Find objects on this frame' first."
    assert c.predict([0], api_name="/keep_found")["message"] == nothing
    assert c.predict(0, 100, api_name="/find_objects")["message"] == (
        "Problem: Points per side must be a whole number from 2 to 64.")  # fmt: skip
    assert "Problem: Frame 9 is outside the video (0 to 7)" in c.predict(9, 4, api_name="/find_objects")["message"]

    answer = c.predict(0, 4, api_name="/find_objects")
    expected = generated(frames[0], 4)
    found = answer["found"]
    assert answer["message"].startswith(f"Found {len(expected)} object(s) on frame 0") and len(found) >= 3
    assert [f["index"] for f in found] == list(range(len(expected))) and answer["done"] == 16
    assert [f["area"] for f in found] == [int(m.sum()) for m in expected]
    assert "There is no found object 99" in c.predict([0, 99], api_name="/keep_found")["message"]
    assert "Choose the found objects to keep first" in c.predict([], api_name="/keep_found")["message"]
    kept = c.predict([1], api_name="/keep_found")
    assert kept["objects"] == [2] and len(kept["found"]) == len(found) - 1
    assert kept["areas"]["2"] > 0
    rest = c.predict(None, True, api_name="/keep_found")
    assert rest["objects"] == list(range(3, 2 + len(found))) and rest["found"] == []
    assert c.predict(api_name="/found_objects") == {"message": "Nothing is found now.", "found": []}
    assert c.predict([0], api_name="/keep_found")["message"] == nothing

    assert c.predict(0, 1, api_name="/candidates")["candidates"] == []  # object 1 has no click
    c.predict(frame=0, x=150.0, y=110.0, positive=True, obj_id=1, api_name="/add_point")
    offered = c.predict(0, 1, api_name="/candidates")["candidates"]
    assert len(offered) == 3 and sum(o["shown"] for o in offered) == 1
    ref = Replay.start(reference_checkpoint, frames)
    ref.prompt(0, 1, [(150.0, 110.0)], [1])
    logits, _ = ref.predictor.prompt_candidates(ref.state, 0, 1)
    other = next(o["index"] for o in offered if not o["shown"] and o["area"] > 0)
    for frame, index, message in [(0, True, "index must be a whole number, not True"),
                                  (0, 1.5, "index must be a whole number, not 1.5"),
                                  ("0", other, "frame must be a whole number, not the text '0'")]:  # fmt: skip
        assert c.predict(frame, 1, index, api_name="/pick_candidate")["message"] == f"Problem: {message}."
    assert c.predict(0, 1, api_name="/candidates")["candidates"] == offered  # nothing was picked
    picked = c.predict(0, 1, other, api_name="/pick_candidate")
    assert picked["message"] == f"'object 1' now has mask {other + 1} of 3 on frame 0; tracking follows it."
    _, _, direct = ref.predictor.add_new_mask(ref.state, 0, 1, (logits[other, 0] > 0).cpu().numpy())
    assert picked["areas"]["1"] == int((direct[0, 0] > 0).sum())
    assert c.predict(0, 1, api_name="/candidates")["candidates"] == []
    assert "There are no masks to choose from here" in c.predict(0, 1, 0, api_name="/pick_candidate")["message"]
    assert c.predict(0, 42, 0, api_name="/pick_candidate")["message"] == (
        "Problem: There is no object 42. Choose one from the object list.")  # fmt: skip
    session = json.loads(get(app, c, file_url(app, export(c, "session")[0])).content)
    assert [o["id"] for o in session["objects"]] == list(range(1, 2 + len(found)))
