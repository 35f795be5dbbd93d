"""scripts/load_test.py in small, against the real app: 2 users at once, then 3 sessions one
after another, each uploading, clicking, tracking, exporting and closing the page. No request
may fail, and once the pages are closed the temp folder holds no session folder, no upload and
no stray temporary file: after each session it is back where it was after the first."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_USER = 8  # connect, upload, click, show a frame, track, export, two downloads


def _load_script():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


load_test = _load_script()


@pytest.fixture(scope="module")
def server(reference_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    # A closed page's work is kept for a reload (default: the session TTL); 1 s here, so that the
    # session folders are seen gone soon after the pages close.
    running = load_test.launch(reference_checkpoint, tmp_path_factory.mktemp("load"), max_sessions=4,
                               extra=("--resume-grace-s", "1"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory):
    video = load_test.make_video(tmp_path_factory.mktemp("load-video"), frames=4, size=(160, 120))
    return load_test.Flow(video, size=(160, 120), track_frames=2, request_timeout_s=60.0)


def test_two_users_at_once(server, flow):
    report = load_test.run_users(server, flow, users=2, settle_timeout_s=20.0, deadline_s=90.0)
    assert report.errors == [], load_test.render(report) + "\n" + server.log_tail()
    assert report.served == 2 * STEPS_PER_USER, load_test.render(report)
    assert report.temp_after is not None and report.temp_after.sessions == 0, load_test.render(report)
    assert report.rss_peak_sampled and report.rss_after_closed
    assert_no_uploads_left(server.temp_dir)


def test_three_sessions_in_a_row(server, flow):
    report = load_test.run_sequential(server, flow, sessions=3, settle_timeout_s=20.0, deadline_s=90.0)
    assert report.errors == [], load_test.render(report) + "\n" + server.log_tail()
    assert report.served == 3 * STEPS_PER_USER, load_test.render(report)
    assert [row["session_folders"] for row in report.sequence] == [0, 0, 0], load_test.render(report)
    assert report.temp_after is not None and report.temp_after.sessions == 0
    first = report.sequence[0]
    assert all(
        (row["temp_bytes"], row["temp_files"], row["temp_dirs"])
        == (first["temp_bytes"], first["temp_files"], first["temp_dirs"])
        for row in report.sequence
    ), load_test.render(report)
    assert_no_uploads_left(server.temp_dir)


def assert_no_uploads_left(temp_dir: Path) -> None:
    """Uploads live in <temp>/<64-hex hash>/<name>; Gradio's stray empty files are tmpXXXXXXXX."""
    left = [p.name for p in temp_dir.iterdir() if re.fullmatch(r"[0-9a-f]{64}|tmp[a-z0-9_]{8}", p.name)]
    assert left == [], left
