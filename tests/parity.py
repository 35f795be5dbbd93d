"""Replaying a reference case through our public predictor API and comparing the results
with what Meta's implementation produced, at the tolerances of tests/fixtures/README.md."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from sam2 import build_image_predictor, build_video_predictor
from tests.reference import FIXTURES, load_case, reference_state_dict

STRICT_MAX_DIFF = 1e-3  # masks from prompts alone, image cases, scores
LOOSE_MEAN_DIFF = 1e-2  # memory-conditioned masks
LOOSE_MIN_IOU = 0.995


@dataclass
class Comparison:
    name: str
    strict: bool
    max_diff: float
    mean_diff: float
    iou: float

    is_mask: bool = True

    @property
    def ok(self) -> bool:
        if self.strict:
            return self.max_diff <= STRICT_MAX_DIFF
        if not self.is_mask:
            # A vector (object pointer) has no mask IoU: the sign of its near-zero components
            # flips with float noise. Every component must meet the masks' mean bar instead.
            return self.max_diff <= LOOSE_MEAN_DIFF
        return self.mean_diff <= LOOSE_MEAN_DIFF and self.iou >= LOOSE_MIN_IOU

    def __str__(self) -> str:
        kind = "strict" if self.strict else "memory"
        return f"{self.name} [{kind}] max {self.max_diff:.2e} mean {self.mean_diff:.2e} IoU {self.iou:.5f}"


def compare(name: str, ours: np.ndarray, expected: np.ndarray, strict: bool, is_mask: bool = True) -> Comparison:
    ours, expected = np.asarray(ours, np.float64), np.asarray(expected, np.float64)
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape} != expected {expected.shape}"
    diff = np.abs(ours - expected)
    a, b = ours > 0, expected > 0
    union = np.logical_or(a, b).sum()
    iou = 1.0 if union == 0 else np.logical_and(a, b).sum() / union
    return Comparison(name, strict, float(diff.max(initial=0)), float(diff.mean()) if diff.size else 0.0, float(iou),
                      is_mask)


@dataclass
class _PromptLedger:
    """Which (object, frame) masks come from prompts alone, following the case's steps."""

    tracked: dict[int, set[int]] = field(default_factory=dict)
    prompt_only: set[tuple[int, int]] = field(default_factory=set)

    def prompt(self, obj: int, frame: int) -> None:
        if frame not in self.tracked.setdefault(obj, set()):
            self.prompt_only.add((obj, frame))

    def propagated(self, objs: list[int], frames: list[int]) -> None:
        for obj in objs:
            self.tracked.setdefault(obj, set()).update(frames)

    def cleared(self, obj: int, frame: int) -> None:
        self.prompt_only.discard((obj, frame))

    def removed(self, obj: int) -> None:
        self.tracked.pop(obj, None)
        self.prompt_only = {p for p in self.prompt_only if p[0] != obj}

    def strict(self, obj: int, frame: int) -> bool:
        return (obj, frame) in self.prompt_only


@dataclass
class StepOutput:
    """What one step of a case returned: masks for one frame (or None for steps without output)."""

    index: int
    step: dict
    frame: int | None = None
    obj_ids: list[int] = field(default_factory=list)
    masks: np.ndarray | None = None  # (N_obj, 1, H, W) logits
    position: int = 0  # position of the frame within a propagation's outputs


def replay_video_case(name: str, predictor, state) -> Iterator[StepOutput]:
    """Run a case's steps on `state`, yielding every mask output in order."""
    case, _, _ = load_case(name)
    for i, step in enumerate(case["steps"]):
        op = step["op"]
        if op == "add_points_or_box":
            frame, obj_ids, masks = predictor.add_new_points_or_box(
                state, step["frame"], step["obj_id"], points=step.get("points"), labels=step.get("labels"),
                box=step.get("box"), clear_old_points=step.get("clear_old_points", True),
            )
            yield StepOutput(i, step, frame, list(obj_ids), masks.cpu().numpy())
        elif op == "add_mask":
            mask = np.load(FIXTURES / name / step["mask_file"])["mask"]
            frame, obj_ids, masks = predictor.add_new_mask(state, step["frame"], step["obj_id"], mask)
            yield StepOutput(i, step, frame, list(obj_ids), masks.cpu().numpy())
        elif op == "propagate":
            outputs = predictor.propagate_in_video(
                state, start_frame_idx=step.get("start_frame"), max_frame_num_to_track=step.get("max_frames"),
                reverse=step.get("reverse", False),
            )
            for t, (frame, obj_ids, masks) in enumerate(outputs):
                yield StepOutput(i, step, frame, list(obj_ids), masks.cpu().numpy(), position=t)
            yield StepOutput(i, step)  # end of the propagation
        elif op == "clear_frame":
            predictor.clear_all_prompts_in_frame(state, step["frame"], step["obj_id"])
            yield StepOutput(i, step)
        elif op == "remove_object":
            predictor.remove_object(state, step["obj_id"])
            yield StepOutput(i, step)
        elif op == "reset":
            predictor.reset_state(state)
            yield StepOutput(i, step)
        else:
            raise ValueError(f"unknown step {op}")


def build_case_predictor(name: str, **predictor_options):
    case, frames, _ = load_case(name)
    predictor = build_video_predictor(
        case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
        postprocessing=case["postprocessing"], **predictor_options,
    )
    return predictor, frames


def run_video_case(name: str, **predictor_options) -> list[Comparison]:
    _, _, expected = load_case(name)
    predictor, frames = build_case_predictor(name, **predictor_options)
    state = predictor.init_state(frames)
    ledger = _PromptLedger()
    results: list[Comparison] = []
    propagated: list[int] = []
    for out in replay_video_case(name, predictor, state):
        op, step, key = out.step["op"], out.step, f"step{out.index:02d}_masks"
        if op in ("add_points_or_box", "add_mask"):
            ledger.prompt(step["obj_id"], step["frame"])
        elif op == "clear_frame":
            ledger.cleared(step["obj_id"], step["frame"])
        elif op == "remove_object":
            ledger.removed(step["obj_id"])
        elif op == "reset":
            ledger = _PromptLedger()
        if out.masks is None:
            if op == "propagate":
                assert propagated == expected[f"step{out.index:02d}_frames"].tolist(), (
                    f"{name} step {out.index}: frames {propagated}"
                )
                ledger.propagated(list(expected[key.replace("masks", "obj_ids")]), propagated)
                propagated = []
            continue
        assert out.obj_ids == [int(i) for i in expected[key.replace("masks", "obj_ids")]], key
        want = expected[key][out.position] if op == "propagate" else expected[key]
        if op == "propagate":
            propagated.append(out.frame)
        for k, obj in enumerate(out.obj_ids):
            strict = ledger.strict(obj, out.frame) or (op != "propagate" and bool((want[k] == -1024).all()))
            results.append(compare(f"{name}:{key}:f{out.frame}:obj{obj}", out.masks[k], want[k], strict))

    results += _compare_final_memory(name, state, expected, ledger)
    return results


def _compare_final_memory(name, state, expected, ledger: _PromptLedger) -> list[Comparison]:
    """Object pointers, object scores and the cond/non-cond split of every stored frame."""
    results = []
    want = {k for k in expected.files if k.startswith("final_") and k.endswith("_is_cond")}
    ours = set()
    for obj_id, track in state.tracks.items():
        for store in (track.cond, track.non_cond):
            for frame, out in store.items():
                prefix = f"final_obj{obj_id}_f{frame:03d}"
                ours.add(prefix + "_is_cond")
                assert bool(expected[prefix + "_is_cond"]) == out.is_cond, prefix
                strict = ledger.strict(obj_id, frame)
                results.append(compare(prefix + "_obj_ptr", out.obj_ptr.cpu().numpy(), expected[prefix + "_obj_ptr"],
                                       strict, is_mask=False))
                score = compare(prefix + "_score", out.object_score_logits.cpu().numpy(),
                                expected[prefix + "_object_score_logits"], True)
                score.strict = strict
                results.append(score)
    assert ours == want, (
        f"{name}: frames in memory differ: ours-only {sorted(ours - want)}, missing {sorted(want - ours)}"
    )
    return results


def run_image_case(name: str, kernels: str = "measure") -> list[Comparison]:
    case, frames, expected = load_case(name)
    predictor = build_image_predictor(
        case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
        postprocessing=case["postprocessing"], kernels=kernels,
    )
    predictor.set_image(frames[case.get("frame", 0)])
    results, low_res_by_step = [], {}
    for i, step in enumerate(case["steps"]):
        mask_input = None
        if "mask_input_from" in step:
            low, scores = low_res_by_step[step["mask_input_from"]]
            mask_input = low[np.argmax(scores)][None]
        masks, scores, low_res = predictor.predict(
            point_coords=step.get("points"), point_labels=step.get("labels"), box=step.get("box"),
            mask_input=mask_input, multimask_output=step["multimask"], return_logits=True,
        )
        low_res_by_step[i] = (low_res, scores)
        results.append(compare(f"{name}:step{i:02d}_masks", masks, expected[f"step{i:02d}_masks"], True))
        results.append(compare(f"{name}:step{i:02d}_scores", scores, expected[f"step{i:02d}_scores"], True))
        results.append(compare(f"{name}:step{i:02d}_low_res", low_res, expected[f"step{i:02d}_low_res"], True))
    return results
