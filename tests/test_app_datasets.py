"""The dataset tools of the page (ui/datasets_page.py) on the real app with the reference weights:
in a browser, a detector's boxes for one frame become masks that track and export as the
predictor gives them for the same boxes, and the brush paints a mask that tracking follows
as add_new_mask with the same mask does; through gradio_client, labels, exports by class with
the YOLO split, the painted-mask endpoint, and bad imports, each a plain message that changes
nothing. One app for the whole module (starting one takes about 20 s)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from gradio_client import Client, handle_file
from PIL import Image

from annotation import formats as exporting
from annotation.datasets import indexed_png
from annotation.document import PackedMask
from annotation.render import object_color
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import Replay, assert_masks_match, iou, start_app
from tests.test_app_api import export as api_export
from tests.test_app_api import file_url, get, plain
from tests.test_app_e2e import (
    EXPORT_TIMEOUT_MS,
    TIMEOUT_MS,
    act,
    assert_served_cleanly,
    choose,
    click_image,
    expected_view,
    fetch,
    fetch_image,
    launch_chromium,
    mismatch,
    open_page,
    reveal,
    set_number,
    status,
    track,
    upload,
    wait_status,
)

SIZE = (320, 240)  # the browser tests' video: 8 frames
API_SIZE = (160, 120)  # the API tests': 6 frames
APP_LIMITS = ("--max-seconds", "4", "--max-frames", "40")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


UNFETCHED: list[tuple[int, str]] = []  # (status, URL) of files the pages asked for and did not get


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    running = start_app(reference_checkpoint, workdir, *APP_LIMITS, quick_close=True)
    yield running
    running.stop()
    # Bad files, hostile names and API misuse are all answered in words: nothing may end in an
    # error or a traceback on the server, and every picture the pages were sent could be fetched.
    assert_served_cleanly(running, UNFETCHED)


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "clip.mp4", size=SIZE, fps=8, seconds=1.0)


@pytest.fixture(scope="module")
def frames(video: Path) -> list[np.ndarray]:
    return decode(video, MediaLimits(max_seconds=4, max_frames=40)).frames


@pytest.fixture(scope="module")
def api_video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "small.mp4", size=API_SIZE, fps=6, seconds=1.0)


def new_page(browser, app):
    return open_page(browser, app, UNFETCHED)


# ----------------------------------------------------------------------------- page helpers


def show_frame(page, frame: int) -> str:
    number = page.locator("#frame input[type=number]")
    return act(page, lambda: (number.fill(str(frame)), number.press("Enter")))


def type_into(page, elem_id: str, text: str) -> None:
    reveal(page, elem_id)
    box = page.locator(f"#{elem_id}").locator("input, textarea").first
    box.fill(text)
    box.press("Enter")


def make_files(page, workdir: Path, chosen: dict[str, bool], expected: int) -> dict[str, Path]:
    """Tick the formats as ``chosen`` (label -> wanted), press Make files and download each."""
    reveal(page, "export")
    for label, wanted in chosen.items():
        box = page.locator("#formats label").filter(has_text=label).locator("input")
        if box.is_checked() != wanted:
            choose(page, "#formats", label)
    page.locator("#export").click()
    wait_status(page, f"Made {expected} file(s)", EXPORT_TIMEOUT_MS)
    page.wait_for_function(f"() => document.querySelectorAll('#downloads a[href]').length >= {expected}")
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


def mask_prompt(session: Path, frame: int, obj: int, size: tuple[int, int]) -> np.ndarray:
    """The mask a session file holds as the object's prompt on ``frame``."""
    saved = exporting.load_session_json(session)
    prompt = next(p for p in saved.prompts if (p.frame, p.obj_id) == (frame, obj))
    m = prompt.mask
    assert m is not None, "the prompt there is not a mask"
    return PackedMask.from_bits(size, m.top, m.left, (m.height, m.width), m.bits).unpack()


def line_mask(size: tuple[int, int], points: list[tuple[int, int]], half_width: int) -> np.ndarray:
    """The pixels within ``half_width`` of a polyline (0: the line itself)."""
    mask = np.zeros(size, np.uint8)
    for a, b in zip(points, points[1:], strict=False):
        cv2.line(mask, a, b, 1, thickness=2 * half_width + 1)
    return mask.astype(bool)


# ----------------------------------------------------------------------------- the editor


def editor_geometry(page) -> tuple[float, float, float]:
    """(x, y, scale): where the editor's picture starts on the screen and its zoom. Reads the
    editor's own bounds (Gradio 6.31 puts the editor on window.editor)."""
    page.locator("#brush").scroll_into_view_if_needed()
    canvas = page.locator("#brush canvas").first.bounding_box()
    x, y, width = page.evaluate(
        "() => { const b = window.editor.layer_manager.image_container.getBounds(); return [b.x, b.y, b.width]; }"
    )
    return canvas["x"] + x, canvas["y"] + y, width / SIZE[0]


def flat_points(frame: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(x, y) of pixels of ``region`` whose 7x7 neighbourhood is in it and of one colour: the
    editor scales the picture, and only such pixels keep their colour on the screen."""
    kernel = np.ones((7, 7), np.uint8)
    flat = np.all([cv2.dilate(c, kernel) == cv2.erode(c, kernel) for c in cv2.split(frame)], axis=0)
    ys, xs = np.nonzero(flat & cv2.erode(region.astype(np.uint8), kernel).astype(bool))
    return np.stack([xs, ys], axis=1)


def wait_editor_shows(page, frame: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Wait until the editor draws the frame with the mask tinted over it in the object's
    colour, half see-through (its layer has loaded): checked on the screen."""
    tinted = (frame.astype(int) + np.array(color)) / 2
    inside = [p for p in flat_points(frame, mask) if np.abs(tinted[p[1], p[0]] - frame[p[1], p[0]]).sum() > 90][:5]
    outside = flat_points(frame, ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool))[::97][:5]
    assert len(inside) and len(outside)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not editor_draws(page, frame, outside) or not editor_draws(page, tinted, inside):
        assert time.monotonic() < deadline, "the editor did not show the frame with the object's mask"
        page.wait_for_timeout(250)


def editor_draws(page, picture: np.ndarray, points: list) -> bool:
    """Whether the editor shows ``picture``'s colours (within a little) at the points (x, y)."""
    width, height = SIZE
    page.wait_for_function(f"() => window.editor?.width === {width} && window.editor?.height === {height}")
    x0, y0, scale = editor_geometry(page)
    shot = np.array(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    return all(
        np.abs(shot[int(y0 + (y + 0.5) * scale), int(x0 + (x + 0.5) * scale)] - picture[y, x]).sum() < 30
        for x, y in points
    )


def free_zigzag(region: np.ndarray, width: int, height: int, step: int, margin: int = 10) -> list[tuple[int, int]]:
    """A zigzag that fills a ``width`` x ``height`` box lying in ``region`` (rows ``step`` apart),
    away from the picture's edges: a brush stroke that paints a patch."""
    rows, cols = region.shape
    for y in range(margin, rows - margin - height, 4):
        for x in range(margin, cols - margin - width, 4):
            if region[y : y + height + 1, x : x + width + 1].all():
                points = []
                for i, top in enumerate(range(y, y + height + 1, step)):
                    ends = [(x, top), (x + width, top)]
                    points += ends if i % 2 == 0 else ends[::-1]
                return points
    raise AssertionError("no room to paint")


def stroke(page, tool: str, points: list[tuple[int, int]]) -> None:
    """Drag the editor's brush or eraser through ``points`` (the video's pixels)."""
    page.locator(f"#brush button[aria-label='{tool}']").click()
    x0, y0, scale = editor_geometry(page)

    def screen(x: float, y: float) -> tuple[float, float]:
        return x0 + (x + 0.5) * scale, y0 + (y + 0.5) * scale

    page.mouse.move(*screen(*points[0]))
    page.mouse.down()
    # The editor draws a line between the pointer's positions, so three per segment make the same
    # stroke as more; each move repaints the editor's canvas (about 2 s under load in headless
    # Chromium without a GPU), and 11 per segment made the zigzag half of this module's time.
    for (xa, ya), (xb, yb) in zip(points, points[1:], strict=False):
        for t in np.linspace(0, 1, 4)[1:]:
            page.mouse.move(*screen(xa + (xb - xa) * t, ya + (yb - ya) * t))
    page.mouse.up()


# ----------------------------------------------------------------------------- in a browser


def test_detections_for_one_frame_become_masks_that_track_and_export(
    app, browser, video, frames, reference_checkpoint, workdir
):
    """Auto-annotation as a person does it: bad files first (a plain message each, nothing
    changes), labels typed (one with markup: text everywhere), then one frame's detections:
    a class the labels lack is offered to add, boxes under the score threshold are left out,
    the boxes' masks show, tracking goes both ways, and the exports (COCO by class, a YOLO
    dataset with every 2nd frame in val, the session) hold what the predictor gives for the
    same boxes."""
    n = len(frames)
    files = workdir / "import"
    files.mkdir(exist_ok=True)
    page = new_page(browser, app)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    upload(page, video)
    wait_status(page, "Loaded")
    shown = show_frame(page, 3)
    legend = page.locator("#legend").inner_text()

    small = np.ones((100, 80), np.uint8)
    with zipfile.ZipFile(files / "small.zip", "w") as archive:
        archive.writestr("00003.png", indexed_png(small))
    whole = (files / "small.zip").read_bytes()
    (files / "cut.zip").write_bytes(whole[: len(whole) // 2])
    many = [{"image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}] * 10_000
    (files / "many.json").write_text(json.dumps(many))
    bad = [
        (files / "small.zip", "'small.zip' cannot be imported: '00003.png' is 80x100, but the video is 320x240."),
        (files / "cut.zip", "'cut.zip' cannot be imported: it is not a zip file"),
        (files / "many.json", "'many.json' cannot be imported: it holds more than 255 boxes; each becomes an object, "
                              "and a video can have at most 255."),
    ]
    for path, message in bad:
        reveal(page, "import-file")
        page.locator("#import-file input[type=file]").set_input_files(str(path))
        # "Reading 'name'..." shows first and holds the name too: wait for the message itself.
        assert message in wait_status(page, message)
        page.wait_for_selector("#import-file input[type=file]", state="attached")  # emptied for the next
        assert page.locator("#legend").inner_text() == legend and not page.locator("#add-missing-labels").is_visible()
        assert page.locator("#undo").is_disabled()  # no step was added to the history
        assert page.locator("#viewer img").evaluate("i => i.src") == shown

    type_into(page, "new-labels", "person, <img src=/q7.png> [a](/q8)")
    assert "Added 2 label(s): person, <img src=/q7.png> [a](/q8)." in wait_status(page, "Added 2 label(s)")
    page.wait_for_function("() => document.querySelector('#legend').innerText.includes('q7')")
    labels = ["object", "person", "<img src=/q7.png> [a](/q8)", "class 9"]  # "class 9": from the detections
    assert f"Labels (classes): {', '.join(labels[:3])}" in page.locator("#legend").inner_text()

    # COCO detection results for frame 3 (image id = frame + 1); category 2 is the 2nd label.
    box_a, box_b = (40.0, 30.0, 140.0, 150.0), (170.0, 60.0, 280.0, 150.0)
    detections = [
        {"image_id": 4, "category_id": 2, "bbox": [40, 30, 100, 120], "score": 0.92},
        {"image_id": 4, "category_id": 9, "bbox": [170, 60, 110, 90], "score": 0.81},
        {"image_id": 4, "category_id": 2, "bbox": [5, 5, 30, 30], "score": 0.2},  # under the threshold (0.5)
    ]
    (files / "detections.json").write_text(json.dumps(detections))
    reveal(page, "import-file")
    page.locator("#import-file input[type=file]").set_input_files(str(files / "detections.json"))
    offer = wait_status(page, "Add these labels and import")
    assert "'detections.json' has classes that are not labels of this video: 'class 9'" in offer
    assert page.locator("#legend tr[data-object]").count() == 1 and page.locator("#undo").is_disabled()
    src = act(page, lambda: page.locator("#add-missing-labels").click())
    assert "Imported 2 prompt(s) of 2 object(s) on 1 frame(s) from 'detections.json'" in status(page)
    assert not page.locator("#add-missing-labels").is_visible()
    rows = page.locator("#legend tr[data-object]").all_inner_texts()
    assert [r.split("\t")[1:4] for r in rows] == [
        ["1", "object 1", "object"], ["2", "object 2", "person"], ["3", "object 3 ◀ clicks go here", "class 9"],
    ]  # fmt: skip

    ref = Replay.start(reference_checkpoint, frames)
    masks = {2: ref.prompt(3, 2, box=box_a), 3: ref.prompt(3, 3, box=box_b)}
    view = expected_view(frames[3], masks, [((), (), box_a), ((), (), box_b)])
    assert mismatch(fetch_image(page, src), view) < 0.005
    page.locator("#obj-label input").click()
    options = page.locator("ul[role=listbox] li").all_inner_texts()
    assert [o.replace("✓", "").strip() for o in options] == [*labels[:3], "class 9"]
    page.keyboard.press("Escape")

    # The split's field is in a section drawn when first opened: opened now, so that it is
    # drawn, with its first value, long before a number is typed into it.
    reveal(page, "val-every")
    assert "7/7 frames" in track(page, "both")  # every frame but the one shown
    ref.track(3, 4, False)
    ref.track(3, 3, True)
    set_number(page, "val-every", "2")
    made = make_files(page, workdir, {"Overlay video (MP4)": False, "Mask video (MP4)": False,
                                      "PNG masks (zip)": False}, expected=3)  # fmt: skip
    assert set(made) == {"clip_coco.json", "clip_yolo.zip", "clip_session.json"}

    assert_masks_match(exporting.read_coco(made["clip_coco.json"]), ref.masks, n)
    coco = json.loads(made["clip_coco.json"].read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(labels, start=1))
    assert {(a["track_id"], a["category_id"], a["iscrowd"]) for a in coco["annotations"]} == {(2, 2, 0), (3, 4, 0)}
    with zipfile.ZipFile(made["clip_yolo.zip"]) as archive:
        names = archive.namelist()
        assert yaml.safe_load(archive.read("data.yaml"))["names"] == dict(enumerate(labels))
        classes = {line.split()[0] for name in names if name.startswith("labels/")
                   for line in archive.read(name).decode().splitlines()}  # fmt: skip
    val = sorted(int(name[-9:-4]) for name in names if name.startswith("images/val/"))
    assert val == [1, 3, 5, 7] and len([name for name in names if name.startswith("images/train/")]) == 4
    assert classes == {"1", "3"}  # person and class 9: the label's place in the list
    yolo = exporting.read_yolo_zip(made["clip_yolo.zip"], frames[0].shape[:2])
    for f in range(n):
        for obj, index in ((2, 1), (3, 3)):
            if ref.masks[f][obj].sum() > 200:  # a polygon of a speck is left out
                assert iou(yolo[f][index], ref.masks[f][obj]) > 0.8, (f, obj)
    session = exporting.load_session_json(made["clip_session.json"])
    assert session.labels == labels and [(o.id, o.label) for o in session.objects] == [
        (1, "object"), (2, "person"), (3, "class 9")]  # fmt: skip

    for where in ("#status", "#legend", "#obj-label", "#label-pick"):
        assert page.locator(where).locator("img, a").count() == 0, f"{where} holds elements made from a label"
    assert [u for u in requested if "/q7.png" in u or "/q8" in u] == []
    page.context.close()


def test_the_brush_paints_a_mask_that_tracking_follows(
    app, browser, video, frames, reference_checkpoint, workdir, api_video
):
    """A click gives object 1 a mask on frame 2; in the editor (the frame with that mask as its
    layer) the brush paints a patch beside it and the eraser takes a band out of it; Apply makes
    that the object's mask prompt (undoable), tracking follows it, and the result equals
    add_new_mask with the same mask (read back from the session file) tracked the same way."""
    n, size, other_video = len(frames), frames[0].shape[:2], api_video
    page = new_page(browser, app)
    upload(page, video)
    wait_status(page, "Loaded")
    show_frame(page, 2)
    act(page, lambda: click_image(page, "#viewer", 150, 110))
    ref = Replay.start(reference_checkpoint, frames)
    clicked = ref.prompt(2, 1, [(150, 110)], [1])
    assert clicked.sum() > 500

    reveal(page, "brush-load")
    page.locator("#brush-load").click()
    assert "Painting 'object 1' on frame 2" in wait_status(page, "Painting")
    wait_editor_shows(page, frames[2], clicked, object_color(1))
    ys, xs = np.nonzero(clicked)
    # The brush: a stroke where the object is not; the eraser: a band across the mask's middle.
    painted_line = free_zigzag(~cv2.dilate(clicked.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool),
                               48, 30, 6)  # fmt: skip
    middle = int(np.median(ys))
    erased_line = [(max(8, int(xs.min())), middle), (min(size[1] - 8, int(xs.max())), middle)]  # in the picture
    stroke(page, "Brush", painted_line)
    stroke(page, "Erase", erased_line)
    page.locator("#brush-apply").click()
    applied = wait_status(page, "Applied")
    assert "Applied the painted mask of 'object 1' on frame 2" in applied

    act(page, lambda: page.locator("#undo").click())
    assert "Undid: brush on frame 2." in status(page)
    act(page, lambda: page.locator("#redo").click())
    assert "Redid: brush on frame 2." in status(page)
    assert "5/5 frames" in track(page, "forward")  # frames 3..7, after frame 2
    made = make_files(page, workdir, {"Overlay video (MP4)": False, "Mask video (MP4)": False,
                                      "PNG masks (zip)": False, "COCO JSON": True, "YOLO dataset (zip)": False,
                                      "Session (JSON)": True}, expected=2)  # fmt: skip

    mask = mask_prompt(made["clip_session.json"], 2, 1, size)
    line, band = line_mask(size, painted_line, 0), line_mask(size, erased_line, 0)
    assert mask[line].all() and not mask[band].any()  # painted in, erased out
    far = clicked & ~line_mask(size, erased_line, 15)
    assert mask[far].all()  # the object's mask was the layer painted on
    _, ids, logits = ref.predictor.add_new_mask(ref.state, 2, 1, mask)
    ref.masks[2] = {1: (logits[list(ids).index(1), 0] > 0).cpu().numpy()}
    ref.track(2, 5, False)
    got = exporting.read_coco(made["clip_coco.json"])
    assert_masks_match(got, ref.masks, n)
    # The painted patch is the painted frame's mask, and tracking starts from it: the next frame
    # differs from the one the click alone gives. (How much of the patch tracked frames keep, the
    # stand-in weights decide: about 60%, as much as without painting; trained weights carry a mask's shape.)
    patch = line_mask(size, painted_line, 2)
    assert got[2][1][patch].all()
    alone = Replay(ref.predictor, ref.predictor.init_state(list(frames)))  # the same model, its own session
    alone.prompt(2, 1, [(150, 110)], [1])
    alone.track(2, 1, False)
    assert (got[3][1] != alone.masks[3][1]).any()

    # The editor still holds that painting; on another video, Apply refuses it in words.
    upload(page, other_video)
    page.locator("#replace-confirm").click()  # the painted work is replaced, as the guard asks first
    wait_status(page, "Loaded 'small.mp4'")
    page.locator("#brush-apply").click()
    assert "Another video was loaded since: press 'Paint on this frame' again." in wait_status(page, "Another video")
    page.context.close()


# ----------------------------------------------------------------------------- through the API


def client(app) -> Client:
    return Client(app.url, verbose=False, download_files=False)


def loaded(app, video: Path) -> Client:
    c = client(app)
    outputs = c.predict(handle_file(str(video)), api_name="/upload_video")
    assert str(outputs[2]).startswith("Loaded"), outputs[2]
    return c


def download(app, c: Client, file: dict, target: Path) -> Path:
    response = get(app, c, file_url(app, file))
    assert response.status_code == 200
    target.write_bytes(response.content)
    return target


def test_labels_round_trip_through_the_api(app, api_video, workdir):
    """Labels typed, loaded from a classes.txt and a data.yaml, renamed, given and removed; new
    objects take the last label; the session file keeps them and gives them back in a new
    session. Mistakes get a plain message and change nothing."""
    c = loaded(app, api_video)
    try:
        assert c.predict(["car", "person", " car "], api_name="/add_labels")["labels"] == ["object", "car", "person"]
        (workdir / "classes.txt").write_text("dog\n\ncat\nperson\n")
        answer = c.predict(handle_file(str(workdir / "classes.txt")), api_name="/load_labels")
        assert answer["message"].startswith("From 'classes.txt': Added 2 label(s): dog, cat.")
        (workdir / "data.yaml").write_text(yaml.safe_dump({"names": {0: "bike", 1: "dog"}}))
        answer = c.predict(handle_file(str(workdir / "data.yaml")), api_name="/load_labels")
        assert answer["labels"] == ["object", "car", "person", "dog", "cat", "bike"]
        assert c.predict("car", "auto", api_name="/rename_label")["labels"][1] == "auto"
        answer = c.predict(1, "auto", api_name="/set_object_label")
        assert answer["objects"] == {"1": {"name": "object 1", "label": "auto"}} and answer["last_label"] == "auto"
        c.predict(0, api_name="/add_object")
        assert c.predict(api_name="/labels")["objects"]["2"]["label"] == "auto"  # the last label chosen
        assert c.predict("auto", "car", api_name="/rename_label")["objects"]["2"]["label"] == "car"  # everywhere
        assert "bike" not in c.predict("bike", api_name="/remove_label")["labels"]

        before = c.predict(api_name="/labels")
        for args, endpoint, message in [
            (("car",), "/remove_label", "Problem: 'car' is the label of 'object 1', 'object 2': give them another"),
            (("nope", "x"), "/rename_label", "Problem: There is no label 'nope'."),
            (("person", "dog"), "/rename_label", "Problem: There is a label 'dog' already"),
            ((1, "truck"), "/set_object_label", "Problem: 'truck' is not one of the labels"),
            ((7, "dog"), "/set_object_label", "Problem: There is no object 7."),
            (([" ", ""],), "/add_labels", "Problem: Type a label to add"),
            (([f"l{i}" for i in range(300)],), "/add_labels", "Problem: A video can have at most 255 labels"),
            (("/etc/hostname",), "/load_labels", "Problem: Send the file with gradio_client.handle_file(path)."),
            ((5,), "/add_labels", "Problem: Send the labels as a list of names, or as one text with commas"),
            (([["car"]],), "/add_labels", "Problem: Send the labels as a list of names, or as one text with commas"),
        ]:
            answer = c.predict(*args, api_name=endpoint)
            assert answer["message"].startswith(message), (endpoint, answer)
            assert c.predict(api_name="/labels") == before, endpoint

        (session,) = api_export(c, "session")
        saved = download(app, c, session, workdir / "labels_session.json")
        assert json.loads(saved.read_text())["labels"] == ["object", "car", "person", "dog", "cat"]
        fresh = loaded(app, api_video)
        try:
            assert fresh.predict(api_name="/labels")["labels"] == ["object"]
            status = plain(fresh.predict(handle_file(str(saved)), 0, api_name="/load_session")[2])
            assert status.startswith("Loaded 2 object(s)"), status
            again = fresh.predict(api_name="/labels")
            assert (again["labels"], again["objects"]) == (before["labels"], before["objects"])
            # One text is one label, or several separated by commas: never one label per letter.
            assert fresh.predict("abc", api_name="/add_labels")["labels"][-1] == "abc"
            assert fresh.predict("bus, tram", api_name="/add_labels")["labels"][-3:] == ["abc", "bus", "tram"]
        finally:
            fresh.close()
    finally:
        c.close()


def test_export_by_class_with_the_yolo_split(app, api_video, workdir):
    """Two objects of two classes: COCO categories are the labels and each annotation's
    category its object's label; the YOLO dataset puts every 3rd frame in val, classes by the
    label's place; a split of 1 frame is refused in words."""
    c = loaded(app, api_video)
    try:
        c.predict(["car"], api_name="/add_labels")
        c.predict(frame=0, x=40.0, y=30.0, positive=True, obj_id=1, api_name="/add_point")
        c.predict(frame=0, x0=90.0, y0=50.0, x1=150.0, y1=110.0, obj_id=2, api_name="/add_box")
        c.predict(2, "car", api_name="/set_object_label")
        assert not c.predict(direction="forward", frame=0, frames=0, api_name="/track")["error"]
        refused = plain(c.predict(["yolo"], 1, api_name="/export")[2])
        assert refused.startswith("**Problem:** Every k-th frame to validation: k must be 0 (no validation split)")
        outputs = c.predict(["coco", "yolo"], 3, api_name="/export")
        coco_file, yolo_file = (download(app, c, f, workdir / Path(f["path"]).name) for f in outputs[-1])
        coco = json.loads(coco_file.read_text())
        assert [(k["id"], k["name"]) for k in coco["categories"]] == [(1, "object"), (2, "car")]
        assert {(a["track_id"], a["category_id"], a["iscrowd"]) for a in coco["annotations"]} == {(1, 1, 0), (2, 2, 0)}
        with zipfile.ZipFile(yolo_file) as archive:
            names = archive.namelist()
            assert yaml.safe_load(archive.read("data.yaml"))["names"] == {0: "object", 1: "car"}
        assert sorted(int(n[-9:-4]) for n in names if n.startswith("images/val/")) == [2, 5]
        yolo = exporting.read_yolo_zip(yolo_file, (API_SIZE[1], API_SIZE[0]))
        masks = exporting.read_coco(coco_file)
        for frame, objects in masks.items():
            for obj, index in ((1, 0), (2, 1)):
                if objects.get(obj) is not None and objects[obj].sum() > 100:
                    assert iou(yolo[frame][index], objects[obj]) > 0.8, (frame, obj)
    finally:
        c.close()


def test_a_painted_mask_through_the_api_is_add_new_mask(app, api_video, reference_checkpoint, workdir):
    """/apply_mask: a PNG of the mask (white on black) is object 1's mask prompt; tracked, it
    equals add_new_mask with the same mask; a picture of the wrong size or none changes nothing."""
    frames = decode(api_video, MediaLimits()).frames
    height, width = frames[0].shape[:2]
    mask = np.zeros((height, width), bool)
    mask[30:80, 40:110] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(workdir / "mask.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(workdir / "tiny.png")
    (workdir / "text.png").write_text("not a picture")
    c = loaded(app, api_video)
    try:
        for name, message in (("tiny.png", "The mask picture is 10x10, but the video is 160x120."),
                              ("text.png", "'text.png' is not a picture this page can read")):  # fmt: skip
            answer = c.predict(1, 2, handle_file(str(workdir / name)), api_name="/apply_mask")
            assert answer["message"] == f"Problem: {message}" or answer["message"].startswith(f"Problem: {message}")
        assert list(c.predict(api_name="/labels")["objects"]) == ["1"]  # object 2 was not made
        answer = c.predict(1, 1, handle_file(str(workdir / "mask.png")), api_name="/apply_mask")
        assert answer["message"].startswith("Applied the painted mask of 'object 1' on frame 1"), answer
        assert not c.predict(direction="forward", frame=1, frames=0, api_name="/track")["error"]
        (coco,) = api_export(c, "coco")
        got = exporting.read_coco(download(app, c, coco, workdir / "painted_coco.json"))
    finally:
        c.close()
    ref = Replay.start(reference_checkpoint, frames)
    _, ids, logits = ref.predictor.add_new_mask(ref.state, 1, 1, mask)
    ref.masks[1] = {1: (logits[list(ids).index(1), 0] > 0).cpu().numpy()}
    assert answer["areas"]["1"] == int(ref.masks[1][1].sum())
    ref.track(1, len(frames) - 2, False)
    assert_masks_match(got, ref.masks, len(frames))


def bad_imports(folder: Path) -> list[tuple[Path, str, list[str]]]:
    """Files that cannot be imported into the 160x120 video of 6 frames, the message each gets,
    and the labels it is missing (offered to add)."""
    folder.mkdir(exist_ok=True)
    h, w = API_SIZE[1], API_SIZE[0]

    def write(name: str, content: str | bytes) -> Path:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def png_zip(name: str, member: str, values: np.ndarray) -> Path:
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr(member, indexed_png(values))
        return folder / name

    def yolo_zip(name: str, member: str, text: str) -> Path:
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr(member, text)
        return folder / name

    images = [{"id": f + 1, "file_name": f"small_{f:05d}.jpg", "height": h, "width": w} for f in range(6)]
    rle = {"size": [h, w], "counts": "PPYo1"}
    whole = png_zip("whole.zip", "00000.png", np.ones((h, w), np.uint8)).read_bytes()
    detection = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}
    return [
        (png_zip("size.zip", "00000.png", np.ones((h // 2, w), np.uint8)),
         "'size.zip' cannot be imported: '00000.png' is 160x60, but the video is 160x120.", []),
        (write("frame.json", json.dumps([{**detection, "image_id": 40}])),
         "'frame.json' cannot be imported: detection 0 is on image 40, but image ids count from 1 (frame 0 is "
         "image 1), so this video's images are 1 to 6.", []),
        (yolo_zip("labels.zip", "labels/small_00009.txt", "0 0.5 0.5 0.2 0.2\n"),
         "'labels.zip' cannot be imported: 'labels/small_00009.txt' is frame 9, but the video has frames 0 to 5.", []),
        (write("classes.json", json.dumps([{**detection, "category_id": 5}])),
         "'classes.json' has classes that are not labels of this video: 'class 5'", ["class 5"]),
        (write("cut.zip", whole[: len(whole) // 2]), "'cut.zip' cannot be imported: it is not a zip file", []),
        (write("broken.json", '{"images": [1, 2'), "'broken.json' cannot be imported: it is not valid JSON", []),
        (write("many.json", json.dumps([detection] * 10_000)),
         "'many.json' cannot be imported: it holds more than 255 boxes; each becomes an object, and a video can have "
         "at most 255.", []),
        (write("ids.json", json.dumps({"images": images, "categories": [],
                                        "annotations": [{"image_id": 1, "segmentation": rle, "track_id": 300}]})),
         "'ids.json' cannot be imported: annotations[0] has object id 300; ids must be whole numbers 1..255.", []),
    ]  # fmt: skip


def test_bad_imports_are_plain_messages_and_change_nothing(app, api_video, workdir):
    """Each bad file: a plain message (missing classes listed, to add), the session as it was
    (its session file), no step in the undo history (Undo takes back the click made before),
    and the next import works."""
    start = len(app.log_text())
    c = loaded(app, api_video)
    try:
        c.predict(frame=0, x=40.0, y=30.0, positive=True, obj_id=1, api_name="/add_point")
        (first,) = api_export(c, "session")
        saved = json.loads(download(app, c, first, workdir / "before_session.json").read_text())
        for path, message, missing in bad_imports(workdir / "bad-imports"):
            answer = c.predict(handle_file(str(path)), 0, 0.5, False, api_name="/import_annotations")
            assert answer["message"].startswith(f"Problem: {message}"), (path.name, answer)
            assert "Traceback" not in answer["message"] and answer.get("missing_labels", []) == missing
            (after,) = api_export(c, "session")
            assert json.loads(download(app, c, after, workdir / "after_session.json").read_text()) == saved, path.name
        undone = plain(c.predict(0, api_name="/undo")[2])
        assert undone.startswith("Undid: point + on frame 0"), undone
        c.predict(0, api_name="/redo")
        good = workdir / "bad-imports" / "classes.json"
        answer = c.predict(handle_file(str(good)), 0, 0.5, True, api_name="/import_annotations")
        assert answer["message"].startswith("Imported 1 prompt(s) of 1 object(s) on 1 frame(s) from 'classes.json'")
        assert answer["labels"] == ["object", "class 5"] and answer["objects"]["2"]["label"] == "class 5"
        log = app.log_text()[start:]
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        c.close()


def test_mask_pictures_through_the_api_are_read_as_meant(app, api_video, workdir):
    """/apply_mask reads a picture by its alpha, a 0/1 mask or half its range (issue 18): near-black
    JPEG noise is refused and makes no object, a 16-bit PNG of 1s is the mask of the 1s, and a
    mask of the whole frame is applied with a warning that Undo takes it back."""
    height, width = decode(api_video, MediaLimits()).frames[0].shape[:2]
    noise = np.random.default_rng(0).integers(0, 14, (height, width, 3), dtype=np.uint8)
    Image.fromarray(noise).save(workdir / "dark.jpg", quality=70)
    ones = np.zeros((height, width), np.uint16)
    ones[30:80, 40:110] = 1
    Image.fromarray(ones).save(workdir / "ones16.png")
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(workdir / "white.png")
    nearly = np.full((height, width), 255, np.uint8)
    nearly[:8, :12] = 0  # 96 of 19,200 pixels: 99.5% of the frame
    Image.fromarray(nearly).save(workdir / "nearly.png")
    start = len(app.log_text())
    c = loaded(app, api_video)
    try:
        answer = c.predict(1, 2, handle_file(str(workdir / "dark.jpg")), api_name="/apply_mask")
        assert answer["message"].startswith("Problem: 'dark.jpg' has no object pixels"), answer
        assert list(c.predict(api_name="/labels")["objects"]) == ["1"]  # object 2 was not made
        answer = c.predict(1, 1, handle_file(str(workdir / "ones16.png")), api_name="/apply_mask")
        assert answer["message"].startswith("Applied the painted mask of 'object 1' on frame 1"), answer
        assert "Note" not in answer["message"] and 0.7 * 50 * 70 < answer["areas"]["1"] < 1.3 * 50 * 70
        answer = c.predict(2, 1, handle_file(str(workdir / "white.png")), api_name="/apply_mask")
        message = answer["message"]
        assert message.startswith("Applied the painted mask of 'object 1' on frame 2"), answer
        assert "Note: this mask covers all of the frame. If that is not what you meant, press Undo" in message
        answer = c.predict(3, 1, handle_file(str(workdir / "nearly.png")), api_name="/apply_mask")
        assert "Note: this mask covers 99.5% of the frame." in answer["message"], answer
        assert plain(c.predict(3, api_name="/undo")[2]).startswith("Undid: brush on frame 3")
        undone = plain(c.predict(2, api_name="/undo")[2])
        assert undone.startswith("Undid: brush on frame 2"), undone
        (session,) = api_export(c, "session")
        document = json.loads(download(app, c, session, workdir / "brushed_session.json").read_text())
        assert {m["frame"] for m in document["masks"]} == {1}  # frame 2's whole-frame mask is gone
        log = app.log_text()[start:]
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        c.close()
