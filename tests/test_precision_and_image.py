"""Fast mode (bfloat16 autocast) against exact mode, and the image predictor's edges."""

from __future__ import annotations

import numpy as np
import pytest

from sam2 import build_image_predictor, load_model
from sam2.precision import Precision, cpu_precision_choice, measure_cpu_precision
from sam2.video_predictor import SAM2VideoPredictor
from tests.parity import replay_video_case
from tests.reference import load_case, reference_state_dict


def test_fast_mode_agrees_with_exact_mode():
    case, frames, _ = load_case("video_s21_512")
    model = load_model(case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
                       postprocessing=case["postprocessing"])
    outputs = {}
    for precision in ("float32", "bfloat16"):
        predictor = SAM2VideoPredictor(model, precision=precision)
        outputs[precision] = [o.masks
                              for o in replay_video_case("video_s21_512", predictor, predictor.init_state(frames))
                              if o.masks is not None]
    assert len(outputs["float32"]) == len(outputs["bfloat16"]) > 3
    for exact, fast in zip(outputs["float32"], outputs["bfloat16"], strict=True):
        assert fast.dtype == np.float32  # results stay float32
        a, b = exact > 0, fast > 0
        assert np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1) >= 0.98
        assert not np.array_equal(exact, fast)  # it really ran in reduced precision


def test_image_predictor_fast_mode_is_close():
    case, frames, _ = load_case("image_t21_1024")
    masks = {}
    for precision in ("float32", "bfloat16"):
        predictor = build_image_predictor("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512,
                                          precision=precision)
        predictor.set_image(frames[0])
        masks[precision], scores, _ = predictor.predict(box=[200, 20, 330, 180], multimask_output=False)
        assert scores.dtype == np.float32
    a, b = masks["float32"] > 0, masks["bfloat16"] > 0
    assert np.logical_and(a, b).sum() / np.logical_or(a, b).sum() >= 0.98


def test_precision_names():
    with pytest.raises(ValueError, match="Unknown precision 'half'"):
        Precision("half", "cpu")
    assert Precision.fastest_supported("cpu") == cpu_precision_choice().precision  # measured once per process
    assert cpu_precision_choice().precision in ("bfloat16", "float32")
    assert set(cpu_precision_choice().seconds) == {"float32", "bfloat16"}


class ProbeClock:
    """A fake timer and a fake probe: the clock moves only when the probe runs, by what each
    precision is told to cost on its n-th run."""

    def __init__(self, costs: dict[str, list[float]]) -> None:
        self.now, self.costs, self.runs = 0.0, {k: iter(v) for k, v in costs.items()}, []

    def __call__(self) -> float:
        return self.now

    def probe(self, precision: str) -> None:
        self.runs.append(precision)
        self.now += next(self.costs[precision])


@pytest.mark.parametrize(("float32", "bfloat16", "chosen"), [
    ([3.0] * 4, [1.0] * 4, "bfloat16"),  # native bfloat16 (AVX-512 BF16, AMX): 3x
    ([1.0] * 4, [4.0] * 4, "float32"),  # emulated bfloat16 (AVX2 only)
    ([1.1] * 4, [1.0] * 4, "float32"),  # 10% is not worth bfloat16's rounding
    ([2.0] * 4, [9.0, 1.0, 1.0, 1.0], "bfloat16"),  # the untimed first run pays for warming up
    ([2.0, 2.0, 9.0, 2.0], [1.0, 1.0, 1.0, 9.0], "bfloat16"),  # a slow spell in one round is outvoted
    ([1.0] * 6, [1.0, 0.5, 1.0, 1.0, 1.0, 1.0], "float32"),  # one fast fluke (best-of would say 2x) does not
])
def test_fast_mode_precision_is_chosen_by_measurement(float32, bfloat16, chosen):
    """The median of the rounds' speedups decides, not one lucky or unlucky run."""
    rounds = len(float32) - 1
    clock = ProbeClock({"float32": float32, "bfloat16": bfloat16})
    choice = measure_cpu_precision(timer=clock, rounds=rounds, probe=clock.probe)
    assert choice.precision == chosen
    assert clock.runs == ["float32", "bfloat16"] * (rounds + 1)  # interleaved: a slow spell hits both
    assert dict(choice.seconds) == pytest.approx({"float32": min(float32[1:]), "bfloat16": min(bfloat16[1:])})
    assert choice.describe().startswith(f"fast mode on this CPU: {chosen} (bfloat16 ran ")
    assert "must reach 1.25x; measured: float32 " in choice.describe()


@pytest.fixture(scope="module")
def image_predictor():
    return build_image_predictor("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512)


def test_image_predictor_edges(image_predictor):
    fresh = build_image_predictor("sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=512)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        image_predictor.set_image(np.zeros((10, 10), np.uint8))
    image = load_case("image_t21_1024")[1][0]
    image_predictor.set_image(image)
    with pytest.raises(ValueError, match="together"):
        image_predictor.predict(point_coords=[[1, 1]])
    with pytest.raises(ValueError, match="finite"):  # as in the video predictor
        image_predictor.predict(box=[0, 0, float("inf"), 10])
    masks, scores, low_res = image_predictor.predict(point_coords=[[120, 135]], point_labels=[1])
    assert masks.shape == (3, 300, 400) and set(np.unique(masks)) <= {0.0, 1.0}
    assert scores.shape == (3,) and low_res.shape == (3, 128, 128)
    # Several boxes at once: one mask per box, each the same as asked alone.
    boxes = np.array([[200, 20, 330, 180], [60, 60, 200, 220]], np.float32)
    many, many_scores, _ = image_predictor.predict(box=boxes, multimask_output=False, return_logits=True)
    assert many.shape == (2, 1, 300, 400)
    one, _, _ = image_predictor.predict(box=boxes[1], multimask_output=False, return_logits=True)
    np.testing.assert_allclose(many[1], one, atol=1e-4)
