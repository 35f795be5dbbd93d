"""Every reference case, through the public predictor API, at the reference README's
tolerances (see tests/parity.py for how masks are classified)."""

from __future__ import annotations

import pytest

from tests.parity import run_image_case, run_video_case

VIDEO_CASES = ["video_s21_512", "video_t20_512", "video_t21_1024"]


def _assert_all_ok(results):
    assert results, "nothing was compared"
    failed = [str(r) for r in results if not r.ok]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("case", VIDEO_CASES)
def test_video_case_matches_reference(case):
    results = run_video_case(case)
    _assert_all_ok(results)
    assert any(r.strict for r in results) and any(not r.strict for r in results)


def test_image_case_matches_reference():
    _assert_all_ok(run_image_case("image_t21_1024"))
