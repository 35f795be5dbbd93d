"""Replaying a reference case through our public predictor API and comparing the results
with what Meta's implementation produced, at the tolerances of tests/fixtures/README.md."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

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

    @property
    def ok(self) -> bool:
        if self.strict:
            return self.max_diff <= STRICT_MAX_DIFF
        return self.mean_diff <= LOOSE_MEAN_DIFF and self.iou >= LOOSE_MIN_IOU

    def __str__(self) -> str:
        kind = "strict" if self.strict else "memory"
        return f"{self.name} [{kind}] max {self.max_diff:.2e} mean {self.mean_diff:.2e} IoU {self.iou:.5f}"


def compare(name: str, ours: np.ndarray, expected: np.ndarray, strict: bool) -> Comparison:
    ours, expected = np.asarray(ours, np.float64), np.asarray(expected, np.float64)
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape} != expected {expected.shape}"
    diff = np.abs(ours - expected)
    a, b = ours > 0, expected > 0
    union = np.logical_or(a, b).sum()
    iou = 1.0 if union == 0 else np.logical_and(a, b).sum() / union
    return Comparison(name, strict, float(diff.max(initial=0)), float(diff.mean()) if diff.size else 0.0, float(iou))


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


def run_video_case(name: str, predictor=None, **predictor_options) -> list[Comparison]:
    case, frames, expected = load_case(name)
    if predictor is None:
        predictor = build_video_predictor(
            case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
            postprocessing=case["postprocessing"], **predictor_options,
        )
    state = predictor.init_state(frames)
    ledger = _PromptLedger()
    results: list[Comparison] = []

    def check_masks(key: str, frame: int, obj_ids: list[int], masks: torch.Tensor) -> None:
        want = expected[key]
        assert list(obj_ids) == [int(i) for i in expected[key.replace("masks", "obj_ids")]], key
        for k, obj in enumerate(obj_ids):
            exp = want[k]
            strict = ledger.strict(obj, frame) or bool((exp == -1024).all())
            results.append(compare(f"{name}:{key}:f{frame}:obj{obj}", masks[k].numpy(), exp, strict))

    for i, step in enumerate(case["steps"]):
        key = f"step{i:02d}_masks"
        op = step["op"]
        if op == "add_points_or_box":
            ledger.prompt(step["obj_id"], step["frame"])
            frame, obj_ids, masks = predictor.add_new_points_or_box(
                state, step["frame"], step["obj_id"], points=step.get("points"), labels=step.get("labels"),
                box=step.get("box"), clear_old_points=step.get("clear_old_points", True),
            )
            check_masks(key, frame, obj_ids, masks)
        elif op == "add_mask":
            mask = np.load(FIXTURES / name / step["mask_file"])["mask"]
            ledger.prompt(step["obj_id"], step["frame"])
            frame, obj_ids, masks = predictor.add_new_mask(state, step["frame"], step["obj_id"], mask)
            check_masks(key, frame, obj_ids, masks)
        elif op == "propagate":
            outputs = list(predictor.propagate_in_video(
                state, start_frame_idx=step.get("start_frame"), max_frame_num_to_track=step.get("max_frames"),
                reverse=step.get("reverse", False),
            ))
            frames_done = [f for f, _, _ in outputs]
            assert frames_done == expected[f"step{i:02d}_frames"].tolist(), f"{name} step {i}: frames {frames_done}"
            for t, (frame, obj_ids, masks) in enumerate(outputs):
                want_key = f"step{i:02d}_masks"
                exp = expected[want_key][t]
                for k, obj in enumerate(obj_ids):
                    strict = ledger.strict(obj, frame)
                    results.append(compare(f"{name}:{want_key}:f{frame}:obj{obj}", masks[k].numpy(), exp[k], strict))
            if outputs:
                ledger.propagated(outputs[0][1], frames_done)
        elif op == "clear_frame":
            ledger.cleared(step["obj_id"], step["frame"])
            predictor.clear_all_prompts_in_frame(state, step["frame"], step["obj_id"])
        elif op == "remove_object":
            ledger.removed(step["obj_id"])
            predictor.remove_object(state, step["obj_id"])
        elif op == "reset":
            ledger = _PromptLedger()
            predictor.reset_state(state)
        else:
            raise ValueError(f"unknown step {op}")

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
                results.append(compare(prefix + "_obj_ptr", out.obj_ptr.numpy(), expected[prefix + "_obj_ptr"], strict))
                score = compare(prefix + "_score", out.object_score_logits.numpy(), expected[prefix + "_object_score_logits"], True)
                score.strict = strict
                results.append(score)
    assert ours == want, f"{name}: frames in memory differ: ours-only {sorted(ours - want)}, missing {sorted(want - ours)}"
    return results


def run_image_case(name: str) -> list[Comparison]:
    case, frames, expected = load_case(name)
    predictor = build_image_predictor(
        case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
        postprocessing=case["postprocessing"],
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
