"""Attention kernels chosen by measurement (sam2.kernels): the choice logic with a fake timer,
and the real model with a chooser whose measurements a fake timer decides, against the same
model with the kernel pinned."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import sam2
from sam2.kernels import MEASURE_MIN_SCORES, KernelChooser, KernelKey
from sam2.modeling.attention import RoPEAttention
from tests.reference import reference_state_dict

LARGE = (torch.zeros(1, 1, 1024, 8), torch.zeros(1, 1, 1024, 8))  # q, k: 1024 x 1024 scores, measured
assert LARGE[0].shape[-2] * LARGE[1].shape[-2] >= MEASURE_MIN_SCORES


class FakeClock:
    """A timer that only moves when a fake kernel runs: each kernel costs what it is told."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def kernel(self, name: str, costs: list[float], runs: list[str]):
        """A candidate that takes costs[0] seconds the first time, costs[1] the next..., and
        returns a tensor naming it."""
        remaining = iter(costs)
        value = float(len(name))  # tells the two apart

        def run() -> torch.Tensor:
            self.now += next(remaining, costs[-1])
            runs.append(name)
            return torch.full((1,), value)

        return run


def candidates(clock: FakeClock, runs: list[str], fused: list[float], blockwise: list[float]):
    return {"fused": clock.kernel("fused", fused, runs), "blockwise": clock.kernel("blockwise", blockwise, runs)}


def test_measure_keeps_the_faster_kernel_and_never_times_it_again():
    clock, runs = FakeClock(), []
    chooser = KernelChooser("measure", timer=clock, rounds=1)
    kernels = candidates(clock, runs, fused=[3.0], blockwise=[1.0])
    first = chooser.run("cross", *LARGE, kernels)
    assert runs == ["fused", "blockwise"] and torch.equal(first, kernels["blockwise"]())
    (choice,) = chooser.choices()
    assert choice.key == KernelKey("cross", "cpu", "float32", 1024) and choice.kernel == "blockwise"
    assert dict(choice.seconds) == {"fused": 3.0, "blockwise": 1.0}

    runs.clear()
    reads = clock.reads
    for _ in range(3):
        chooser.run("cross", *LARGE, kernels)
    assert runs == ["blockwise"] * 3 and clock.reads == reads  # cached: no timing, one kernel


def test_the_first_runs_slowness_does_not_decide():
    # The first run of a kernel pays for fresh memory; the best of the rounds counts.
    clock, runs = FakeClock(), []
    chooser = KernelChooser("measure", timer=clock, rounds=2)
    chooser.run("self", *LARGE, candidates(clock, runs, fused=[9.0, 1.0], blockwise=[2.0, 2.0]))
    assert runs == ["fused", "blockwise", "fused", "blockwise"]  # interleaved rounds
    (choice,) = chooser.choices()
    assert choice.kernel == "fused" and dict(choice.seconds) == {"fused": 1.0, "blockwise": 2.0}


def test_each_kind_dtype_and_query_count_is_measured_on_its_own():
    clock, runs = FakeClock(), []
    chooser = KernelChooser("measure", timer=clock, rounds=1)
    chooser.run("cross", *LARGE, candidates(clock, runs, fused=[1.0], blockwise=[2.0]))
    chooser.run("global", *LARGE, candidates(clock, runs, fused=[2.0], blockwise=[1.0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 tensors, bfloat16 arithmetic
        chooser.run("cross", *LARGE, candidates(clock, runs, fused=[2.0], blockwise=[1.0]))
    bigger_q = torch.zeros(1, 1, 2048, 8)
    chooser.run("cross", bigger_q, LARGE[1], candidates(clock, runs, fused=[2.0], blockwise=[1.0]))
    made = {(c.key.kind, c.key.dtype, c.key.queries): c.kernel for c in chooser.choices()}
    assert made == {
        ("cross", "float32", 1024): "fused",
        ("global", "float32", 1024): "blockwise",
        ("cross", "bfloat16", 1024): "blockwise",
        ("cross", "float32", 2048): "blockwise",
    }
    # The key count is not part of the key: memories vary frame to frame.
    runs.clear()
    chooser.run("cross", LARGE[0], torch.zeros(1, 1, 7 * 1024, 8), candidates(clock, runs, [5.0], [5.0]))
    assert runs == ["fused"]
    lines = chooser.describe()
    assert len(lines) == 4 and lines[0].startswith("cross-attention over memories, float32 on cpu, 1024 queries: fused")
    assert "measured: fused 1.0000 s, blockwise 2.0000 s" in lines[0]


def test_small_attentions_are_fused_without_timing():
    clock, runs = FakeClock(), []
    chooser = KernelChooser("measure", timer=clock)
    small = torch.zeros(1, 1, 64, 8)
    chooser.run("global", small, small, candidates(clock, runs, fused=[9.0], blockwise=[1.0]))
    assert runs == ["fused"] and clock.reads == 0 and chooser.choices() == []
    assert chooser.describe() == ["no large attention has run yet"]


@pytest.mark.parametrize("policy", ["fused", "blockwise"])
def test_a_pinned_kernel_runs_alone_and_untimed(policy):
    clock, runs = FakeClock(), []
    chooser = KernelChooser(policy, timer=clock)
    chooser.run("cross", *LARGE, candidates(clock, runs, fused=[9.0], blockwise=[9.0]))
    assert runs == [policy] and clock.reads == 0
    assert chooser.describe() == [f"every large attention: {policy} (pinned)"]


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="measure, fused, blockwise"):
        KernelChooser("fastest")


@pytest.mark.parametrize("narrow", [True, False])
def test_both_kernels_compute_the_same_attention(narrow):
    """Memory attention's cross-attention (64-wide values, attended before projecting in the
    blockwise kernel) and its self-attention, through both pinned kernels."""
    torch.manual_seed(0)
    kv_dim = 64 if narrow else 256
    outputs = []
    for policy in ("fused", "blockwise"):
        torch.manual_seed(0)
        layer = RoPEAttention(256, 1, kv_in_dim=kv_dim, kernels=KernelChooser(policy), kind="cross").eval()
        g = torch.Generator().manual_seed(1)
        q = torch.randn(2, 256, 256, generator=g)
        kv = torch.randn(2, 2 * 256 + 4, kv_dim, generator=g)  # two 16x16 memories and 4 pointer tokens
        with torch.inference_mode():
            outputs.append(layer(q, kv, kv, num_k_exclude_rope=4))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- the real model


def scripted_timer(faster: str):
    """A timer for rounds=1 measurements, where candidates run fused first, then blockwise:
    `faster` takes 1 s, the other 3 s."""
    costs = {"fused": (1.0, 3.0), "blockwise": (3.0, 1.0)}[faster]
    steps = itertools.chain.from_iterable((0.0, costs[0], 0.0, costs[1]) for _ in itertools.count())
    ticks = itertools.accumulate(steps)
    return lambda: next(ticks)


def track_masks(kernels) -> tuple[np.ndarray, object]:
    """A click on frame 0 of a small synthetic video and one tracked frame, at 512 px (large
    enough for every kind to be measured) -> masks (frames, H, W) and the model."""
    from sam2.bench import synthetic_video

    predictor = sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512, kernels=kernels
    )
    frames = synthetic_video(2, width=160, height=96)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[40, 48]], labels=[1])
    masks = [logits[0, 0].numpy() for _, _, logits in predictor.propagate_in_video(state)]
    return np.stack(masks), predictor.model


@pytest.mark.parametrize("faster", ["fused", "blockwise"])
def test_the_model_runs_the_kernel_its_measurements_chose(faster):
    """The chooser is shared by the whole model; what a (fake) measurement chose gives
    exactly the masks of the same kernel pinned, and every shape class was measured once."""
    chooser = KernelChooser("measure", timer=scripted_timer(faster), rounds=1)
    measured, model = track_masks(chooser)
    assert model.kernels is chooser and model.at_image_size(1024).kernels is chooser
    made = {c.key.kind: c.kernel for c in chooser.choices()}
    assert made == {"global": faster, "self": faster, "cross": faster}
    assert all(c.key.queries == 1024 and c.key.dtype == "float32" for c in chooser.choices())
    pinned, _ = track_masks(faster)
    assert np.array_equal(measured, pinned)
