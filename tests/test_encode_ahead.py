"""Idle time is not wasted: frames are encoded ahead of use, by the predictor on request and
by the app's engine in a background thread while no model call runs.

Real model (reference weights) at image size 64 on small synthetic frames."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import sam2
from annotation.document import PromptSpec
from annotation.engine import Engine, ModelSpec
from sam2.video_predictor import SAM2VideoPredictor
from tests.reference import reference_state_dict

IMAGE_SIZE = 64
N = 10


def frames() -> list[np.ndarray]:
    out = []
    for i in range(N):
        frame = np.full((24, 32, 3), 20, np.uint8)
        frame[6:16, 2 + 2 * i : 12 + 2 * i] = (200, 90, 40)
        out.append(frame)
    return out


def build(cache: int) -> SAM2VideoPredictor:
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE,
        corrections_as_cond=True, feature_cache_size=cache,
    )  # fmt: skip


def refuse(frame_idx: int):
    raise AssertionError(f"frame {frame_idx} was encoded again")


def wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def predictor() -> SAM2VideoPredictor:
    return build(cache=8)


def test_predictor_encodes_ahead_and_reuses_the_features(predictor):
    session = predictor.init_state(frames())
    assert predictor.encode_ahead(session, 3) is True
    assert predictor.encode_ahead(session, 3) is False  # already there
    cached = session.features.get(3, refuse)

    # The click on frame 3 uses the features encoded ahead (they are still the cached ones:
    # the cache never recomputes a frame it holds) and gives the same mask as a session
    # that encoded on demand.
    _, _, ahead = predictor.add_new_points_or_box(session, 3, 1, points=[[12, 10]], labels=[1])
    assert session.features.get(3, refuse) is cached
    fresh = predictor.init_state(frames())
    _, _, on_demand = predictor.add_new_points_or_box(fresh, 3, 1, points=[[12, 10]], labels=[1])
    assert np.array_equal(ahead.numpy(), on_demand.numpy())

    with pytest.raises(IndexError):
        predictor.encode_ahead(session, N)


def test_feature_cache_keeps_the_newest_frames_within_capacity(predictor):
    session = predictor.init_state(frames())
    for f in range(10):
        predictor.encode_ahead(session, f)
    assert [f for f in range(N) if f in session.features] == [2, 3, 4, 5, 6, 7, 8, 9]


def make_engine(ahead: int) -> Engine:
    spec = ModelSpec("sam2.1_hiera_t", checkpoint=None, image_size=IMAGE_SIZE, encode_ahead=ahead)  # type: ignore[arg-type]
    return Engine(build(cache=ahead + 4), spec)


def test_engine_encodes_ahead_only_while_idle():
    engine = make_engine(ahead=3)
    handle = engine.start(frames())

    with engine.lock:  # a model call in progress: nothing is encoded meanwhile
        engine.encode_ahead(handle, 4)
        time.sleep(1.0)
        assert not any(engine.encoded(handle, f) for f in range(N))
    assert wait_for(lambda: all(engine.encoded(handle, f) for f in (4, 5, 6)))
    assert not any(engine.encoded(handle, f) for f in (0, 1, 2, 3, 7, 8, 9))

    # A newer request replaces the older one; cancelling drops what is left.
    with engine.lock:
        engine.encode_ahead(handle, 0)
        engine.stop_encoding_ahead(handle)
    time.sleep(1.0)
    assert not any(engine.encoded(handle, f) for f in (0, 1, 2))


def test_engine_tracking_on_frames_encoded_ahead_gives_the_same_masks():
    """The background thread's features are bit-identical to those computed on demand, so
    tracked masks do not depend on what happened to be encoded ahead."""
    results = []
    for ahead in (0, 6):
        engine = make_engine(ahead)
        handle = engine.start(frames())
        engine.prompt(handle, 0, 1, PromptSpec(points=((7.0, 11.0),), labels=(1,)))
        engine.encode_ahead(handle, 1)
        if ahead:
            assert wait_for(lambda engine=engine, handle=handle: all(engine.encoded(handle, f) for f in range(1, 7)))
        results.append(dict(engine.track(handle, 0, None, reverse=False)))
    plain, ahead = results
    assert plain.keys() == ahead.keys() == set(range(N))
    for f in plain:
        assert np.array_equal(plain[f][1], ahead[f][1]), f


def test_features_encoded_in_the_background_are_bit_identical():
    engine = make_engine(ahead=2)
    background, foreground = engine.start(frames()), engine.start(frames())
    engine.encode_ahead(background, 5)
    assert wait_for(lambda: engine.encoded(background, 6))
    predictor = engine.predictor_for(foreground)
    for f in (5, 6):
        predictor.encode_ahead(foreground, f)  # this thread
        a, b = (h.features.get(f, refuse) for h in (background, foreground))
        assert torch.equal(a.image_embed, b.image_embed) and all(map(torch.equal, a.high_res, b.high_res))
