"""Memory that does not grow with the video: the memory bank stays bounded over a long video,
and a correction far back after tracking (which needs evicted memories again) gives the same
masks as a run that never evicted anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2 import load_model
from sam2.bench import synthetic_video
from sam2.session import FrameStore
from sam2.video_predictor import SAM2VideoPredictor
from tests.reference import reference_state_dict

# 8 windows' worth, and well past the 16 object pointers tracking attends to: the bank must
# stay at the window long after it would have outgrown it, and the correction far back needs
# evicted maps again. Eviction works frame by frame, the same at any length
# (sam2.session.ObjectTrack.evict_memories): 600 frames checked nothing more, at ten times the cost.
NUM_FRAMES = 64
WINDOW = 8


@pytest.fixture(scope="module")
def model():
    # A small input size keeps the long video affordable; the memory logic is size-independent.
    return load_model("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=64)


@pytest.fixture(scope="module")
def frames():
    return synthetic_video(NUM_FRAMES, width=96, height=64)


def _correct_and_retrack(predictor, state):
    _, _, corrected = predictor.add_new_points_or_box(state, 5, 1, points=[[70, 20]], labels=[0],
                                                      clear_old_points=False)
    retracked = {f: m.clone()
                 for f, _, m in predictor.propagate_in_video(state, start_frame_idx=5, max_frame_num_to_track=6)}
    return corrected, retracked


def test_memory_bank_is_bounded_and_eviction_is_invisible(model, frames):
    predictor = SAM2VideoPredictor(model, memory_window=WINDOW, corrections_as_cond=True)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[24, 32]], labels=[1])
    track = None
    peak = 0
    for frame_idx, _, _ in predictor.propagate_in_video(state):
        last_frame = frame_idx
        track = state.tracks[1]
        peak = max(peak, track.memory_count())
    assert last_frame == NUM_FRAMES - 1
    assert len(track.non_cond) == NUM_FRAMES - 1  # every frame keeps its (small) result...
    assert peak <= WINDOW + len(track.cond)  # ...but only a window keeps its memory map
    assert track.non_cond[3].memory is None  # the early frames' maps are gone

    corrected, retracked = _correct_and_retrack(predictor, state)
    assert track.non_cond[3].memory is not None  # recomputed for the correction

    reference = SAM2VideoPredictor(model, memory_window=None, corrections_as_cond=True)
    ref_state = reference.init_state(frames[:20])
    reference.add_new_points_or_box(ref_state, 0, 1, points=[[24, 32]], labels=[1])
    for _ in reference.propagate_in_video(ref_state):
        pass
    ref_corrected, ref_retracked = _correct_and_retrack(reference, ref_state)

    torch.testing.assert_close(corrected, ref_corrected, rtol=0, atol=1e-5)
    assert retracked.keys() == ref_retracked.keys()
    for f in retracked:
        torch.testing.assert_close(retracked[f], ref_retracked[f], rtol=0, atol=1e-5)


def test_frames_can_be_kept_encoded(frames):
    raw = frames[:10]
    png = FrameStore(raw, encoding="png")
    jpeg = FrameStore(raw, encoding="jpeg")
    assert all(np.array_equal(png[i], raw[i]) for i in range(10))  # lossless
    mse = np.mean((jpeg[3].astype(float) - raw[3].astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # PSNR in dB: visually the same
    plain = sum(f.nbytes for f in raw)
    assert jpeg.nbytes() < plain / 4 and png.nbytes() < plain
    with pytest.raises(ValueError, match="Unknown frame encoding"):
        FrameStore(raw, encoding="webp")
