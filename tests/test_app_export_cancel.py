"""Cancel during "Make files" in a real browser (headless Chromium, the real app with the reference
weights): a 600-frame video with every file chosen takes a few seconds to export; the session
file is listed as soon as it is made, a click meanwhile is told the files are being made,
Cancel stops the export with the files made so far listed and a message naming those not
made, and the session's lock is given back at once (the next click works)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests import media_factory
from tests.app_harness import start_app
from tests.test_app_e2e import (
    EXPORT_TIMEOUT_MS,
    TIMEOUT_MS,
    act,
    assert_served_cleanly,
    choose,
    click_image,
    fetch,
    launch_chromium,
    open_page,
    reveal,
    upload,
    wait_status,
    wait_told,
)
from ui.layout import EXPORT_CHOICES

SIZE = (320, 240)
FRAMES = 600  # 20 s at 30 fps, the app's default limit: the files take seconds to make, even on a fast machine
UNFETCHED: list[tuple[int, str]] = []  # (status, URL) of files the page asked for and did not get


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-cancel")


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    running = start_app(reference_checkpoint, workdir)
    yield running
    running.stop()
    assert_served_cleanly(running, UNFETCHED)  # a cancelled export is no error: nothing in the log


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "long.mp4", size=SIZE, fps=30, seconds=FRAMES / 30)


def download_names(page) -> list[str]:
    hrefs = page.locator("#downloads a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return [href.rsplit("/", 1)[-1].split("?")[0] for href in hrefs]


def test_cancel_during_make_files_keeps_the_files_made_and_frees_the_session(app, browser, video):
    page = open_page(browser, app, UNFETCHED)
    upload(page, video)
    assert "Loaded 'long.mp4'" in wait_status(page, "Loaded", TIMEOUT_MS * 2)
    act(page, lambda: click_image(page, "#viewer", 160, 120))
    wait_status(page, "Added a point +")
    reveal(page, "export")
    for label, _ in EXPORT_CHOICES:  # every file: session, videos, masks, datasets with frames
        if not page.locator("#formats label").filter(has_text=label).locator("input").is_checked():
            choose(page, "#formats", label)

    page.locator("#export").click()
    # The session file is made first, and listed while the rest are being made.
    page.wait_for_function("() => document.querySelectorAll('#downloads a[href]').length >= 1", timeout=TIMEOUT_MS)
    assert download_names(page) == ["long_session.json"]
    assert "Making files" in page.locator("#progress").inner_text()
    click_image(page, "#viewer", 100, 100)  # the session is busy: told so at once, not made to wait
    wait_told(page, "Making files is still running. Wait for it to finish, or press Cancel.")
    page.locator("#cancel").click()

    message = wait_status(page, "Cancelled. Made", EXPORT_TIMEOUT_MS)
    made = re.search(r"Cancelled\. Made (\d+) of 10 file\(s\)", message)
    assert made and 1 <= int(made.group(1)) < 10, message
    assert "Not made: " in message and "the MOT tracks" in message, message  # the last one is never reached
    assert message.rstrip().endswith("Your objects, clicks and masks are unchanged."), message
    page.wait_for_function("() => /Cancelled: the files made so far are kept/.test("
                           "document.querySelector('#progress')?.innerText || '')", timeout=TIMEOUT_MS)  # fmt: skip
    names = download_names(page)
    assert len(names) == int(made.group(1)) and names[0] == "long_session.json", (names, message)
    session = fetch(page, page.locator("#downloads a[href]").first.get_attribute("href"))
    assert session.ok and json.loads(session.body())["video"]["frames"] == FRAMES
    not_made = message.split("Not made: ", 1)[1]
    assert "the session file" not in not_made  # made, and listed

    # The lock is given back: the next click is done at once.
    act(page, lambda: click_image(page, "#viewer", 60, 60))
    assert "Added a point +" in wait_status(page, "Added a point +")
    page.context.close()
