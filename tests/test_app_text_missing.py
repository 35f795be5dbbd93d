"""Find by text when the detector's weights are missing (one app for the module): the default
detector (a Hugging Face model id) with an empty Hugging Face cache and offline mode on, as on
a machine that never downloaded it. Find by text answers with the plain message that names what
to fetch, from where and how big; nothing changes; and a click, tracking and an export still
work, as the predictor called directly gives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from annotation import formats as exporting
from annotation.detect import DEFAULT_DETECTOR, KNOWN_DETECTORS
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from tests.app_harness import Replay, assert_masks_match, start_app
from tests.test_app_api import export, file_url, get, plain
from tests.test_app_e2e import assert_served_cleanly

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text-missing")


@pytest.fixture(scope="module")
def app(reference_checkpoint: Path, workdir: Path):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HOME", str(workdir / "empty-hf-home"))  # nothing cached
        env.setenv("HF_HUB_OFFLINE", "1")  # and no download: the message must come at once
        running = start_app(reference_checkpoint, workdir, "--max-seconds", "4", "--max-frames", "40",
                            quick_close=True)  # fmt: skip
    yield running
    running.stop()
    assert_served_cleanly(running, [])


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    return media_factory.testsrc(workdir / "clip.mp4", size=(160, 120), fps=6, seconds=1.0)  # 6 frames


def test_missing_weights_are_named_and_the_rest_of_the_app_works(app, video, reference_checkpoint) -> None:
    c = Client(app.url, verbose=False, download_files=False)
    assert plain(c.predict(handle_file(str(video)), api_name="/upload_video")[2]).startswith("Loaded 'clip.mp4'")
    known = KNOWN_DETECTORS[DEFAULT_DETECTOR]
    for _ in range(2):  # a failed load is not remembered: the second find says it again
        answer = c.predict(0, "person, red car", api_name="/find_by_text")
        message = answer["message"]
        assert message.startswith(f"Problem: The text detector {DEFAULT_DETECTOR} (revision {known.revision}) is "
                                  "not on this computer and could not be downloaded"), message  # fmt: skip
        assert f"https://huggingface.co/{DEFAULT_DETECTOR}/tree/{known.revision}" in message
        assert "model.safetensors" in message and f"about {known.size_mb} MB" in message
        assert "--detector FOLDER" in message and "the rest of the app works without it" in message
        assert answer["found"] == [] and "Traceback" not in message
    run = c.predict("person", 3, api_name="/find_and_track_text")
    assert run["message"].startswith(f"Problem: The text detector {DEFAULT_DETECTOR}") and run["objects"] == [1]
    assert "Nothing to undo" in plain(c.predict(0, api_name="/undo")[2])  # nothing changed

    # the rest works: a click, tracking, an export, as the predictor gives them
    clicked = c.predict(frame=0, x=80.0, y=60.0, positive=True, obj_id=1, api_name="/add_point")
    assert clicked["areas"]["1"] > 0
    tracked = c.predict("forward", 0, 0, api_name="/track")
    assert not tracked["error"] and tracked["done"] == 5, tracked
    value = export(c, "coco")[0]
    path = Path(app.temp_dir).parent / "missing-coco.json"
    path.write_bytes(get(app, c, file_url(app, value)).content)
    frames = decode(video, MediaLimits(max_seconds=4, max_frames=40)).frames
    ref = Replay.start(reference_checkpoint, frames)
    mask = ref.prompt(0, 1, [(80.0, 60.0)], [1])
    assert int(np.count_nonzero(mask)) == clicked["areas"]["1"]
    ref.track(0, 5, False)
    assert_masks_match(exporting.read_coco(path), ref.masks, len(frames))
