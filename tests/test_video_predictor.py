"""Behaviour of the video predictor beyond the reference cases: the edges where Meta's code
fails, object independence, corrections, bad prompts, and the inputs `init_state` accepts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sam2 import load_model
from sam2.video_io import PREDICTOR_LIMITS
from sam2.video_predictor import SAM2VideoPredictor
from tests import media_factory as mf
from tests.reference import load_case, reference_state_dict


@pytest.fixture(scope="module")
def model():
    return load_model("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512)


@pytest.fixture(scope="module")
def frames():
    return load_case("video_s21_512")[1]  # 5 synthetic frames, 320 x 240


@pytest.fixture
def predictor(model):
    return SAM2VideoPredictor(model)


def _track(predictor, state, **kwargs) -> dict[int, torch.Tensor]:
    return {f: m.clone() for f, _, m in predictor.propagate_in_video(state, **kwargs)}


def test_click_on_tracked_frame_after_clearing_the_only_prompt(predictor, frames):
    """Meta's code fails an assertion here (no conditioning frame left); ours makes the
    clicked frame the object's new conditioning frame and tracks from it."""
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    _track(predictor, state)
    predictor.clear_all_prompts_in_frame(state, 0, 1)
    assert not state.tracks[1].cond and 0 in state.tracks[1].non_cond  # kept as tracked memory

    _, _, masks = predictor.add_new_points_or_box(state, 2, 1, points=[[140, 110]], labels=[1])
    assert masks.shape == (1, 1, 240, 320) and torch.isfinite(masks).all()
    assert state.tracks[1].pending[2].is_cond
    assert list(_track(predictor, state)) == [2, 3, 4]
    assert list(_track(predictor, state, reverse=True)) == [2, 1, 0]
    assert list(state.tracks[1].cond) == [2]


def test_tracking_an_object_without_prompts_says_which(predictor, frames):
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 7, points=[[200, 60]], labels=[1])
    predictor.clear_all_prompts_in_frame(state, 0, 7)
    with pytest.raises(ValueError, match=r"Object\(s\) \[7\] have no prompt"):
        _track(predictor, state)
    with pytest.raises(ValueError, match="Nothing to track"):
        _track(predictor, predictor.init_state(frames))


def test_objects_are_independent_and_can_be_added_after_tracking(predictor, frames):
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    first = _track(predictor, state)
    predictor.add_new_points_or_box(state, 3, 2, box=[180, 40, 260, 120])
    both = _track(predictor, state, start_frame_idx=0)

    only_two = predictor.init_state(frames)
    predictor.add_new_points_or_box(only_two, 3, 2, box=[180, 40, 260, 120])
    alone = _track(predictor, only_two, start_frame_idx=0)

    assert state.obj_ids == [1, 2]
    for f in range(len(frames)):
        torch.testing.assert_close(both[f][0], first[f][0])  # object 1 untouched by object 2
        # Object 2 is tracked on every frame, before its prompted frame too (from its memory).
        torch.testing.assert_close(both[f][1], alone[f][0])


@pytest.mark.parametrize("as_cond", [False, True])
def test_correction_on_a_tracked_frame(model, frames, as_cond):
    predictor = SAM2VideoPredictor(model, corrections_as_cond=as_cond)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    tracked = _track(predictor, state)
    _, _, corrected = predictor.add_new_points_or_box(
        state, 2, 1, points=[[40, 200]], labels=[0], clear_old_points=False
    )
    assert not torch.equal(corrected, tracked[2]), "the correction should change the mask"
    retracked = _track(predictor, state, start_frame_idx=2)
    if as_cond:  # kept as a conditioning frame: re-tracking keeps it and builds on it
        torch.testing.assert_close(retracked[2], corrected)
        assert 2 in state.tracks[1].cond
        assert not torch.equal(retracked[4], tracked[4])
    else:  # Meta's default: the frame is tracked again from memory, the correction is lost
        torch.testing.assert_close(retracked[2], tracked[2])


def test_reverse_tracking_and_ranges(predictor, frames):
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 2, 1, points=[[120, 120]], labels=[1])
    assert list(_track(predictor, state, reverse=True)) == [2, 1, 0]
    assert list(_track(predictor, state, start_frame_idx=1, max_frame_num_to_track=2)) == [1, 2, 3]
    assert list(_track(predictor, state, start_frame_idx=0, reverse=True)) == []
    assert state.tracks[1].tracked == {0: True, 1: False, 2: False, 3: False}


def test_remove_and_reset(predictor, frames):
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 2, points=[[200, 60]], labels=[1])
    obj_ids, updated = predictor.remove_object(state, 1)
    assert obj_ids == [2] and [f for f, _ in updated] == [0] and updated[0][1].shape == (1, 1, 240, 320)
    assert predictor.remove_object(state, 99) == ([2], [])
    with pytest.raises(KeyError, match="no such object"):
        predictor.remove_object(state, 99, strict=True)
    predictor.reset_state(state)
    assert state.obj_ids == []


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(points=[[10, 10]]), "Points and labels must be given together"),
        (dict(points=[[10, 10], [20, 20]], labels=[1]), "2 points but 1 labels"),
        (dict(points=[[10, 10]], labels=[5]), "must be 1 .positive. or 0"),
        (dict(), "at least one point or a box"),
        (dict(box=[0, 0, 50, 50], clear_old_points=False), "A box must come first"),
        (dict(points=[[float("nan"), 10]], labels=[1]), "finite"),
    ],
)
def test_bad_prompts_are_refused_clearly(predictor, frames, kwargs, error):
    state = predictor.init_state(frames[:2])
    with pytest.raises(ValueError, match=error):
        predictor.add_new_points_or_box(state, 0, 1, **kwargs)
    assert state.tracks.get(1) is None or not state.tracks[1].points  # nothing half-added


def test_frame_index_outside_video(predictor, frames):
    state = predictor.init_state(frames[:2])
    with pytest.raises(IndexError, match="outside the video"):
        predictor.add_new_points_or_box(state, 2, 1, points=[[1, 1]], labels=[1])


def test_frames_stay_compact_and_feature_cache_is_bounded(model, frames):
    predictor = SAM2VideoPredictor(model, feature_cache_size=2)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    _track(predictor, state)
    assert all(state.frames[i].dtype == np.uint8 and state.frames[i].shape == (240, 320, 3) for i in range(5))
    assert sum(i in state.features for i in range(5)) == 2
    # Memories are kept in bfloat16, one (1, 64, 32, 32) map per frame.
    memory = state.tracks[1].non_cond[4].memory
    assert memory.dtype == torch.bfloat16 and memory.shape == (1, 64, 32, 32)


def test_init_state_reads_files_and_folders(predictor, frames, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")  # numeric names: 10 sorts after 9
    from_folder = predictor.init_state(folder)
    assert from_folder.num_frames == 5 and np.array_equal(from_folder.frames[3], frames[3])

    video = mf.testsrc(tmp_path / "clip.mp4", size=(96, 64), fps=10, seconds=0.4)
    from_file = predictor.init_state(video)
    assert from_file.num_frames == 4 and (from_file.video_height, from_file.video_width) == (64, 96)
    with pytest.raises(FileNotFoundError):
        predictor.init_state(tmp_path / "missing.mp4")


def test_init_state_reads_files_through_the_hardened_decoder(predictor, tmp_path):
    """The same decoder as the app: a playlist is refused, never followed; limits are named
    with the Python argument that raises them; the frames are decode()'s."""
    from sam2.video_io import MediaError, MediaLimits, decode

    segment = mf.testsrc(tmp_path / "segment.mp4", size=(96, 64), fps=10, seconds=0.4)
    playlist = mf.local_playlist(tmp_path / "list.m3u8", segment)
    with pytest.raises(MediaError, match="'list.m3u8' is not a video or image file"):
        predictor.init_state(str(playlist))

    video = mf.testsrc(tmp_path / "clip.mp4", size=(96, 64), fps=25, seconds=2.0)
    with pytest.raises(ValueError,
                       match=r"limit is 20 frames.*init_state\(\.\.\., limits=MediaLimits\(max_frames=50\)\)"):
        predictor.init_state(video, limits=MediaLimits(
            max_frames=20, advice="pass init_state(..., limits=MediaLimits({name}={value}))"
        ))
    with pytest.raises(MediaError, match=r"limits=MediaLimits\(max_frames="):
        predictor.init_state(video, limits=dataclasses.replace(PREDICTOR_LIMITS, max_frames=20))
    state = predictor.init_state(video)
    expected = decode(video, PREDICTOR_LIMITS).frames
    assert state.num_frames == 50 and all(np.array_equal(state.frames[i], f) for i, f in enumerate(expected))


def test_init_state_reads_a_folder_of_mixed_sizes_and_refuses_unreadable_images(predictor, frames, tmp_path):
    """Images of different sizes (an image set) are frames at their own sizes: masks come back
    at each frame's size (they used to be refused, before the predictor knew per-frame sizes)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(frames[0]).save(folder / "0.png")
    Image.fromarray(frames[1][:100]).save(folder / "1.png")
    state = predictor.init_state(folder)
    assert [state.frame_size(i) for i in range(2)] == [(240, 320), (100, 320)]
    predictor.add_new_points_or_box(state, 0, 1, points=[[100, 100]], labels=[1])
    assert [m.shape for _, _, m in predictor.propagate_in_video(state)] == [(1, 1, 240, 320), (1, 1, 100, 320)]
    (folder / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="'1.png' in .* is not a readable image"):
        predictor.init_state(folder)


def test_offload_flags_change_nothing_and_say_so(predictor, frames):
    with pytest.warns(UserWarning, match="offload_state_to_cpu and async_loading_frames change nothing"):
        state = predictor.init_state(frames, offload_state_to_cpu=True)
    assert state.num_frames == len(frames)
