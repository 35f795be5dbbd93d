"""ZeroGPU style on a CPU: model calls through the `spaces` GPU decorator (which does nothing
off ZeroGPU) and across a pickled process boundary, as ZeroGPU's forked GPU worker sees them;
the memory bank on the CPU between calls; tracking in chunks, each asking for the seconds its
chunk needs. The masks equal one uninterrupted run's, mask for mask.

Real model (reference weights) at image size 128 on small synthetic frames."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import sam2
from annotation.document import PromptSpec
from annotation.engine import DeviceCall, Engine, FindingCancelled, FindSettings, ModelSpec, tracking_chunks
from annotation.hosting import GpuBudget, gpu_decorator
from tests.reference import reference_state_dict

IMAGE_SIZE = 128
N = 11
# 2 objects: (10 - 1) / (1.0 * 2) -> chunks of 4 frames.
BUDGET = GpuBudget(max_call_s=10.0, setup_s=1.0, frame_object_s=1.0, prompt_s=3.0)


def frames() -> list[np.ndarray]:
    out = []
    for i in range(N):
        frame = np.full((60, 80, 3), 30, np.uint8)
        frame[10:40, 4 + 4 * i : 30 + 4 * i] = (210, 80, 40)
        frame[35:55, 60 - 3 * i : 75 - 3 * i] = (40, 90, 220)
        out.append(frame)
    return out


class ForkedWorker:
    """The decorated function called as ZeroGPU calls it: arguments and result pickled (the
    worker is another process, so nothing changed in place comes back), and the duration
    it asks for recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[DeviceCall, float]] = []

    def __call__(self, fn, duration):
        decorated = gpu_decorator()(fn, duration)

        def call(*args):
            session, device_call = pickle.loads(pickle.dumps(args))
            self.calls.append((device_call, duration(session, device_call)))
            for track in session.tracks.values():  # the memory bank arrived on the CPU
                assert all(out.mask_logits.device.type == "cpu" for out in {**track.cond, **track.non_cond}.values())
            return pickle.loads(pickle.dumps(decorated(session, device_call)))

        return call


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=IMAGE_SIZE, corrections_as_cond=True,
    )  # fmt: skip


def annotate(engine: Engine) -> list[tuple[int, dict[int, np.ndarray]]]:
    """Clicks and a box on frame 5, tracking both ways, a correction on frame 8 and tracking
    on from there -> every mask shown, in order."""
    handle = engine.start(frames())
    shown = [(5, {1: engine.prompt(handle, 5, 1, PromptSpec(points=((35.0, 25.0),), labels=(1,)))})]
    shown.append((5, {2: engine.prompt(handle, 5, 2, PromptSpec(box=(44.0, 33.0, 62.0, 57.0)))}))
    shown += list(engine.track(handle, 5, None, reverse=False))
    shown += list(engine.track(handle, 5, None, reverse=True))
    shown.append((8, {1: engine.prompt(handle, 8, 1, PromptSpec(points=((48.0, 25.0), (5.0, 5.0)), labels=(1, 0)))}))
    shown += list(engine.track(handle, 8, 2, reverse=False))
    return shown


def test_chunked_tracking_in_gpu_calls_equals_one_uninterrupted_run(predictor):
    plain = annotate(Engine(predictor, ModelSpec("sam2.1_hiera_t", None, image_size=IMAGE_SIZE)))  # type: ignore[arg-type]
    worker = ForkedWorker()
    spec = ModelSpec("sam2.1_hiera_t", None, image_size=IMAGE_SIZE, zero_gpu=True, gpu_budget=BUDGET)  # type: ignore[arg-type]
    chunked = annotate(Engine(predictor, spec, gpu=worker))

    assert [frame for frame, _ in chunked] == [frame for frame, _ in plain]
    assert [frame for frame, _ in plain] == [5, 5, *range(5, N), *range(5, -1, -1), 8, 8, 9, 10]
    for (frame, got), (_, want) in zip(chunked, plain, strict=True):
        assert got.keys() == want.keys(), frame
        for obj in want:
            assert np.array_equal(got[obj], want[obj]), (frame, obj)
    assert all(m.any() for _, masks in plain[2:8] for m in masks.values())  # tracked masks, not empty ones

    # Every model call was a GPU call, each asking for the time its own work needs.
    asked = [(c.kind, c.frame, c.frames, c.reverse, s) for c, s in worker.calls]
    assert asked == [
        ("prompt", 5, 1, False, 3.0),
        ("prompt", 5, 1, False, 3.0),
        ("track", 5, 4, False, 9.0), ("track", 9, 2, False, 5.0),  # 5-8, 9-10
        ("track", 5, 4, True, 9.0), ("track", 1, 2, True, 5.0),  # 5-2, then 1-0: never 0 alone
        ("prompt", 8, 1, False, 3.0),
        ("track", 8, 3, False, 7.0),
    ]


def test_finding_objects_in_one_gpu_call_equals_finding_them_here(predictor):
    keep_all = FindSettings(iou_thresh=0.0, stability_thresh=0.0)  # reference weights score low
    plain = Engine(predictor, ModelSpec("sam2.1_hiera_t", None, image_size=IMAGE_SIZE, find=keep_all))  # type: ignore[arg-type]
    worker = ForkedWorker()
    spec = ModelSpec("sam2.1_hiera_t", None, image_size=IMAGE_SIZE, zero_gpu=True, gpu_budget=BUDGET,  # type: ignore[arg-type]
                     find=keep_all)
    zero = Engine(predictor, spec, gpu=worker)
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> bool:
        seen.append((done, total))
        return True

    found = zero.find_objects(zero.start(frames()), 3, 4, progress=progress)
    want = plain.find_objects(plain.start(frames()), 3, 4)
    assert len(found) == len(want) > 1
    for got, expected in zip(found, want, strict=True):
        assert np.array_equal(got.mask, expected.mask) and got.score == expected.score
    assert [(c.kind, c.frame, c.points_per_side, s) for c, s in worker.calls] == [("find", 3, 4, 1.0 + 0.02 * 16)]
    assert seen == [(0, 16)]  # progress before the call; the worker cannot report back

    with pytest.raises(FindingCancelled):  # Cancel before the call starts: no GPU call at all
        zero.find_objects(zero.start(frames()), 3, 4, progress=lambda done, total: False)
    assert len(worker.calls) == 1


def test_no_frames_are_encoded_ahead_on_zero_gpu(predictor):
    spec = ModelSpec("sam2.1_hiera_t", None, image_size=IMAGE_SIZE, zero_gpu=True, encode_ahead=4)  # type: ignore[arg-type]
    engine = Engine(predictor, spec, gpu=ForkedWorker())
    handle = engine.start(frames())
    engine.encode_ahead(handle, 0)
    engine.prompt(handle, 0, 1, PromptSpec(points=((17.0, 25.0),), labels=(1,)))
    assert not any(engine.encoded(handle, f) for f in range(N))  # features stay in the GPU call
    track = handle.tracks[1]
    assert track.pending[0].mask_logits.device == torch.device("cpu")


@pytest.mark.parametrize(
    ("start", "count", "reverse", "size", "chunks"),
    [
        (0, None, False, 4, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]),
        (3, 2, False, 4, [[3, 4, 5]]),
        (9, None, True, 3, [[9, 8, 7], [6, 5, 4], [3, 2], [1, 0]]),
        (4, None, True, 4, [[4, 3, 2], [1, 0]]),
        (2, None, True, 1, [[2], [1, 0]]),
        (0, None, True, 4, []),  # reverse from frame 0 tracks nothing, as in the predictor
        (10, 5, False, 4, [[10]]),
    ],
)
def test_tracking_chunks_follow_the_predictors_order(start, count, reverse, size, chunks):
    assert tracking_chunks(N, start, count, reverse, size) == chunks


def test_a_chunk_fits_the_call():
    budget = GpuBudget(max_call_s=60.0, setup_s=10.0, frame_object_s=0.25)
    assert budget.chunk_frames(1) == 200 and budget.chunk_frames(3) == 66 and budget.chunk_frames(500) == 1
    assert budget.track_seconds(3, 66) <= budget.max_call_s
    assert GpuBudget().find_seconds(32 * 32) <= GpuBudget().max_call_s  # the page's largest grid
