"""One set of weights at several input sizes: the app lets a user pick 512/768/1024 per
video, and the models for each size share the loaded weights.

Real model with the reference weights; small sizes (64/128) keep it fast, the mechanism is
the same as for 512/768/1024."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sam2
from annotation.document import PromptSpec
from annotation.engine import Engine
from sam2.build import load_model
from tests.reference import reference_state_dict

VARIANT = "sam2.1_hiera_t"


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return reference_state_dict(VARIANT)


def frames(n: int = 4) -> list[np.ndarray]:
    out = []
    for i in range(n):
        frame = np.full((40, 56, 3), 25, np.uint8)
        frame[10:26, 6 + 3 * i : 22 + 3 * i] = (210, 80, 60)
        out.append(frame)
    return out


def test_resized_model_shares_weights_and_equals_a_model_loaded_at_that_size(weights):
    big = load_model(VARIANT, weights, image_size=128)
    small = big.at_image_size(64)
    assert small.config.image_size == 64 and big.config.image_size == 128
    for (name, a), b in zip(big.state_dict().items(), small.state_dict().values(), strict=True):
        assert a.data_ptr() == b.data_ptr(), f"{name} was copied"
    direct = load_model(VARIANT, weights, image_size=64)
    image = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(small.encode_image(image).image_embed, direct.encode_image(image).image_embed)
    assert big.at_image_size(128) is big


def test_predictor_at_another_size_tracks_like_one_built_there(weights):
    base = sam2.build_video_predictor(VARIANT, weights, image_size=128, corrections_as_cond=True)
    other = base.at_image_size(64)
    assert other.corrections_as_cond and other.image_size == 64 and base.image_size == 128
    direct = sam2.build_video_predictor(VARIANT, weights, image_size=64, corrections_as_cond=True)
    results = []
    for predictor in (other, direct):
        session = predictor.init_state(frames())
        predictor.add_new_points_or_box(session, 0, 1, points=[[14, 18]], labels=[1])
        results.append([m.numpy() for _, _, m in predictor.propagate_in_video(session)])
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


def test_a_session_refuses_a_predictor_of_another_size(weights):
    base = sam2.build_video_predictor(VARIANT, weights, image_size=128)
    session = base.init_state(frames())
    with pytest.raises(ValueError, match="started at image size 128"):
        base.at_image_size(64).add_new_points_or_box(session, 0, 1, points=[[14, 18]], labels=[1])


def test_engine_runs_each_video_at_its_own_size(weights):
    engine = Engine(sam2.build_video_predictor(VARIANT, weights, image_size=128, corrections_as_cond=True))
    default, small = engine.start(frames()), engine.start(frames(), image_size=64)
    assert engine.image_size_of(default) == 128 and engine.image_size_of(small) == 64
    prompt = PromptSpec(points=((14.0, 18.0),), labels=(1,))
    masks = {size: engine.prompt(handle, 0, 1, prompt) for size, handle in ((128, default), (64, small))}
    direct = sam2.build_video_predictor(VARIANT, weights, image_size=64, corrections_as_cond=True)
    session = direct.init_state(frames())
    _, _, logits = direct.add_new_points_or_box(session, 0, 1, points=[[14, 18]], labels=[1])
    assert np.array_equal(masks[64], (logits[0, 0] > 0).numpy())
    assert masks[128].shape == masks[64].shape == (40, 56)
    with pytest.raises(ValueError, match="multiple of 32"):
        engine.start(frames(), image_size=100)


def test_changing_detail_on_a_loaded_video_reapplies_the_clicks(tmp_path):
    """The page's "Model detail" on a video with clicks and tracked frames: a session at the
    new size holds the same clicks, prompted frames show the new size's masks (equal to the
    predictor at that size called directly), tracked frames keep theirs until the next run."""
    from annotation import operations as annotate
    from tests.test_app_units import IMAGE_SIZE, direct, make_work

    weights = reference_state_dict(VARIANT)
    base = sam2.build_video_predictor(VARIANT, weights, image_size=IMAGE_SIZE, corrections_as_cond=True)
    engine = Engine(base)
    work = make_work(tmp_path, engine)
    annotate.click(work, engine, 0, 8, 10, "add")
    annotate.start_tracking(work, engine, 0, "forward", 2).join()
    tracked_before = {f: work.doc.frame_masks(f) for f in (1, 2)}

    message = annotate.change_detail(work, engine, 128)
    assert "now runs at 128 px (was 64 px)" in message and "press Track" in message
    assert engine.image_size_of(work.video.handle) == 128 and len(work.undo) == 2  # not an undo step
    at_128 = direct(base.at_image_size(128))
    expected = at_128.prompt(0, 1, points=[(8, 10)], labels=[1])
    assert np.array_equal(work.doc.frame_masks(0)[1], expected)
    for f, masks in tracked_before.items():
        assert np.array_equal(work.doc.frame_masks(f)[1], masks[1])

    annotate.start_tracking(work, engine, 0, "forward", 2).join()
    at_128.track(0, 2, reverse=False)
    for f in (1, 2):
        assert np.array_equal(work.doc.frame_masks(f)[1], at_128.masks[f][1]), f
    assert "already runs at 128" in annotate.change_detail(work, engine, 128)
