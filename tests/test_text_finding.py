"""annotation/text_finding.py without the app: the defaults the page shows before the detector is
loaded, the requests it refuses, and choosing boxes by a click (the app tests, tests/test_app_text.py,
run the finds and keeps themselves)."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest

from annotation import text_finding
from annotation.detect import GROUNDING_DINO_THRESHOLDS, OWLV2_THRESHOLDS, Detection, DetectorSpec, Thresholds
from annotation.document import UserError


def test_the_defaults_shown_are_the_familys_read_without_loading(tmp_path: Path) -> None:
    owl = tmp_path / "owl"
    owl.mkdir()
    (owl / "config.json").write_text(json.dumps({"model_type": "owlv2"}))
    mm = tmp_path / "mm"
    mm.mkdir()
    (mm / "config.json").write_text(json.dumps({"model_type": "mm-grounding-dino"}))
    shown = {model: text_finding.published_defaults(DetectorSpec(model))
             for model in (str(owl), str(mm), "IDEA-Research/grounding-dino-tiny", "google/owlv2-base-patch16",
                           "someone/detector", str(tmp_path / "missing"))}  # fmt: skip
    assert shown[str(owl)] == text_finding.PublishedDefaults("OWLv2", OWLV2_THRESHOLDS, True)
    assert shown[str(mm)] == text_finding.PublishedDefaults("MM Grounding DINO", GROUNDING_DINO_THRESHOLDS, True)
    assert shown["IDEA-Research/grounding-dino-tiny"].known
    assert shown["google/owlv2-base-patch16"].thresholds == Thresholds(0.1, None)
    for unknown in ("someone/detector", str(tmp_path / "missing")):  # Grounding DINO's, said as such
        assert shown[unknown] == text_finding.PublishedDefaults("Grounding DINO", GROUNDING_DINO_THRESHOLDS, False)
    given = text_finding.published_defaults(DetectorSpec(str(owl), box_threshold=0.3, text_threshold=0.2))
    assert given.thresholds == Thresholds(0.3, None)  # OWLv2 has no text threshold, whatever is given


@pytest.mark.parametrize(
    "prompt, box, text, words",
    [("", None, None, "Type what to find"), (" ,;. ", None, None, "Type what to find"),
     (",".join(f"thing {i}" for i in range(500)), None, None, "That is 500 phrases"),
     ("person", 1.5, None, "box threshold must be a number from 0 to 1"),
     ("person", float("nan"), None, "box threshold must be a number from 0 to 1"),
     ("person", None, -0.1, "text threshold must be a number from 0 to 1"),
     ("person", "0.3", None, "box threshold must be a number from 0 to 1"), (None, None, None, "Type what to find")],
)  # fmt: skip
def test_bad_requests_are_refused_in_words(prompt, box, text, words) -> None:
    with pytest.raises(UserError, match=words):
        text_finding.check_request(prompt, box, text)


def test_a_request_keeps_the_phrases_in_order_once_each() -> None:
    asked = text_finding.check_request("person, red car; Person", 0.3)
    assert asked.phrases == ("person", "red car") and asked.what == "'person, red car'"
    assert (asked.box_threshold, asked.text_threshold) == (0.3, None)


class _Video:
    """Stands for a loaded video: what was found is tied to it by a weak reference."""


def test_a_click_chooses_the_smallest_box_under_it_and_again_drops_it() -> None:
    video = _Video()
    big, small = Detection(0, 0, 100, 80, "person", 0.9), Detection(10, 10, 30, 30, "red car", 0.8)
    found = text_finding.TextFound(weakref.ref(video), 3, text_finding.check_request("person, red car"), [big, small])
    assert text_finding.box_at(found, 20, 20) == 1 and text_finding.box_at(found, 60, 60) == 0
    assert text_finding.box_at(found, 150, 20) is None
    assert text_finding.checked_indices(found, None) == [0, 1]
    assert text_finding.checked_indices(found, [1, 1, 0]) == [0, 1]
    for bad, words in (([], "Choose the found boxes"), ([2], "There is no found box 2"), ([True], "by their number"),
                       ([0.5], "by their number")):  # fmt: skip
        with pytest.raises(UserError, match=words):
            text_finding.checked_indices(found, bad)
    described = text_finding.describe(found)
    assert described[1] == {"index": 1, "phrase": "red car", "score": 0.8, "box": [10, 10, 30, 30], "chosen": False}
