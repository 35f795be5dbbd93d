"""The player's pictures (annotation/preview.py) and its byte ranges (ui/player.py), on real
ffmpeg frames; the page's playback itself is tested in the browser (tests/test_app_e2e.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation.document import ObjectInfo, PackedMask, PromptCall, PromptSpec, Snapshot
from annotation.preview import PreviewCache, player_view
from annotation.views import frame_view
from annotation.work import LoadedVideo, Work
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from ui.player import byte_range


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    """4 frames of 320x240 with three overlapping objects on frame 1, clicks and a box there,
    object 3 hidden, and a box's first corner waiting on frame 1."""
    folder = tmp_path_factory.mktemp("player")
    decoded = decode(media_factory.testsrc(folder / "clip.mp4", size=(320, 240), fps=4, seconds=1.0), MediaLimits())
    work = Work(folder=folder)
    work.video = LoadedVideo("clip.mp4", decoded, decoded.frames, handle=None)
    masks = {}
    for obj in (1, 2, 3):
        mask = np.zeros((240, 320), np.uint8)
        cv2.ellipse(mask, (70 * obj, 120), (60, 40), 20 * obj, 0, 360, 1, -1)
        masks[(1, obj)] = PackedMask.pack(mask.astype(bool))
    work.registry = {i: ObjectInfo(i, f"object {i}", visible=i != 3) for i in (1, 2, 3)}
    calls = (PromptCall(1, 1, PromptSpec(((70.0, 120.0), (90.0, 110.0)), (1, 0))),
             PromptCall(1, 2, PromptSpec(box=(100.0, 80.0, 180.0, 160.0))))  # fmt: skip
    work.doc = Snapshot(object_ids=(2, 1, 3), calls=calls, masks=masks)
    work.pending_corner = (1, 250.0, 50.0)
    return work


def test_the_players_picture_is_the_viewers_at_its_width_and_scaled_below(work):
    assert np.array_equal(player_view(work, 1, 320), frame_view(work, 1))  # masks, order, hidden, markers
    assert np.array_equal(player_view(work, 0, 9999), frame_view(work, 0))  # never enlarged
    half = player_view(work, 1, 160)
    assert half.shape == (120, 160, 3)
    scaled = cv2.resize(frame_view(work, 1), (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(half.astype(int) - scaled.astype(int)).mean() < 6  # edges and markers drawn at that size


def test_the_cache_answers_a_repeat_and_draws_a_changed_frame_again(work):
    cache = PreviewCache()
    first = cache.picture(work, 1, 200)
    assert cache.picture(work, 1, 200) is first and (first.width, first.height) == (200, 150)
    before = work.doc
    try:
        work.doc = replace(before, masks={k: v for k, v in before.masks.items() if k[1] != 1})  # object 1's mask gone
        changed = cache.picture(work, 1, 200)
        assert changed.tag != first.tag
    finally:
        work.doc = before
    assert cache.picture(work, 1, 200).tag == first.tag
    small = PreviewCache(budget=1)  # over its budget, only the newest stays
    small.picture(work, 0, 100)
    small.picture(work, 1, 100)
    assert len(small._pictures) == 1


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=0-", (0, 99)), ("bytes=10-19", (10, 19)), ("bytes=-30", (70, 99)), ("bytes=90-500", (90, 99)),
     ("bytes=100-", None), ("bytes=5-2", None), ("bytes=-", None), ("bytes=0-1,5-6", None), ("items=0-1", None),
     ("bytes=-500", (0, 99))],
)  # fmt: skip
def test_byte_ranges(header, span):
    assert byte_range(header, 100) == span


def test_no_sound_no_audio_file(work):
    assert PreviewCache().audio(work) is None and not (Path(work.folder) / "play-audio.mp3").exists()


def test_the_sound_is_made_playable_once(tmp_path):
    decoded = decode(media_factory.testsrc(tmp_path / "tone.mp4", size=(64, 48), fps=4, seconds=1.0, audio=True),
                     MediaLimits(), workdir=tmp_path)  # fmt: skip
    work = Work(folder=tmp_path)
    work.video = LoadedVideo("tone.mp4", decoded, decoded.frames, handle=None)
    cache = PreviewCache()
    mp3 = cache.audio(work)
    assert mp3 is not None and mp3.read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    made = mp3.stat().st_mtime_ns
    assert cache.audio(work) == mp3 and mp3.stat().st_mtime_ns == made
