"""Module-by-module check against the `components_t21_512` reference case.

The case recorded the inputs and outputs of Meta's top-level submodules during its first
calls. We run the same case through our predictor, record the same submodules (our module
names are the checkpoint's key prefixes) and compare call by call, so a disagreement points
at the module that causes it.
"""

from __future__ import annotations

import inspect
import re
from collections import defaultdict

import numpy as np
import pytest
import torch

from sam2 import build_video_predictor
from tests.reference import load_case, reference_state_dict

MODULES = [
    "image_encoder.trunk",
    "image_encoder.neck",
    "sam_prompt_encoder",
    "sam_mask_decoder",
    "obj_ptr_proj",
    "memory_encoder",
    "obj_ptr_tpos_proj",
    "memory_attention",
]


def _flatten(prefix: str, value, out: dict[str, np.ndarray]) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().float().numpy()
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    elif hasattr(value, "__dataclass_fields__"):
        for i, name in enumerate(value.__dataclass_fields__):
            _flatten(f"{prefix}.{i}", getattr(value, name), out)


def _reference_names(module: str, call: int, ours: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map our recorded arguments to the names the reference used for the same tensors.

    Meta's memory attention is sequence-first (HW, B, C) and takes keyword arguments; its
    memory encoder returns a dict; ours are batch-first and return tuples.
    """
    p = f"{module}#{call}"
    if module == "memory_attention":
        seq_first = {k: v.transpose(1, 0, 2) for k, v in ours.items() if v.ndim == 3}
        return {
            f"{p}.kw.curr.0": seq_first[f"{p}.in.0"],
            f"{p}.kw.curr_pos.0": seq_first[f"{p}.in.1"],
            f"{p}.kw.memory": seq_first[f"{p}.in.2"],
            f"{p}.kw.memory_pos": seq_first[f"{p}.in.3"],
            f"{p}.out": seq_first[f"{p}.out"],
        }
    if module == "memory_encoder":
        return {
            f"{p}.in.0": ours[f"{p}.in.0"],
            f"{p}.in.1": ours[f"{p}.in.1"],
            f"{p}.out.vision_features": ours[f"{p}.out.0"],
            f"{p}.out.vision_pos_enc.0": ours[f"{p}.out.1"],
        }
    if module == "sam_prompt_encoder":
        return {
            f"{p}.kw.points.0": ours[f"{p}.in.0"],
            f"{p}.kw.points.1": ours[f"{p}.in.1"],
            f"{p}.out.0": ours[f"{p}.out.0"],
            f"{p}.out.1": ours[f"{p}.out.1"],
        }
    if module == "sam_mask_decoder":
        names = ["image_embeddings", "image_pe", "sparse_prompt_embeddings", "dense_prompt_embeddings"]
        mapped = {f"{p}.kw.{n}": ours[f"{p}.in.{i}"] for i, n in enumerate(names)}
        mapped[f"{p}.kw.high_res_features.0"] = ours[f"{p}.in.4.0"]
        mapped[f"{p}.kw.high_res_features.1"] = ours[f"{p}.in.4.1"]
        mapped.update({f"{p}.out.{i}": ours[f"{p}.out.{i}"] for i in range(4)})
        return mapped
    if module in ("obj_ptr_proj", "obj_ptr_tpos_proj"):
        return {f"{p}.in.0": ours[f"{p}.in.0"], f"{p}.out": ours[f"{p}.out"]}
    return ours  # trunk and neck: same structure


@pytest.fixture(scope="module")
def recorded():
    case, frames, expected = load_case("components_t21_512")
    predictor = build_video_predictor(
        case["config"], reference_state_dict(case["config"]), image_size=case["image_size"],
        postprocessing=case["postprocessing"],
    )
    calls: dict[str, int] = defaultdict(int)
    record: dict[str, np.ndarray] = {}

    def hook(name):
        def fn(module, args, kwargs, output):
            call = calls[name]
            calls[name] += 1
            if call > 1:
                return
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
            ours: dict[str, np.ndarray] = {}
            _flatten(f"{name}#{call}.in", list(bound.arguments.values()), ours)
            _flatten(f"{name}#{call}.out", output, ours)
            record.update(_reference_names(name, call, ours))
        return fn

    modules = dict(predictor.model.named_modules())
    for name in MODULES:
        modules[name].register_forward_hook(hook(name), with_kwargs=True)

    state = predictor.init_state(frames)
    step = case["steps"][0]
    predictor.add_new_points_or_box(state, step["frame"], step["obj_id"], points=step["points"], labels=step["labels"])
    for _ in predictor.propagate_in_video(state):
        pass
    return record, expected


def _expected_tensors(expected) -> dict[str, tuple[np.ndarray, int, np.ndarray | None]]:
    """reference name -> (values, subsampling step, whole-tensor stats or None)."""
    out = {}
    for key in expected.files:
        match = re.fullmatch(r"(.*)@every(\d+)", key)
        if match:
            name = match.group(1)
            out[name] = (expected[key], int(match.group(2)), expected[f"{name}@stats"])
        elif "@" not in key:
            out[key] = (expected[key], 1, None)
    return out


# Memories are stored in bfloat16 (as Meta's code does). A float difference of 1e-6 before
# that rounding can move a value by one bfloat16 step (up to 2^-7 of it), and the sharpened
# memory attention of the reference weights amplifies such flips at a few positions. These
# tensors get a bar that allows exactly that and nothing like a real defect (errors of 0.1+).
AFTER_BF16_MEMORY = re.compile(r"memory_attention#\d\.(out|kw\.memory)$|memory_encoder#1\.in\.1$")
BF16_STEP = 2.0**-7


def _check(name: str, mine: np.ndarray, values: np.ndarray) -> str | None:
    scale = max(1.0, float(np.abs(values).max()))
    diff = np.abs(mine - values)
    rel_max, rel_mean = float(diff.max()) / scale, float(diff.mean()) / scale
    if name.endswith("kw.memory"):
        if not np.all(diff <= BF16_STEP * np.abs(values) + 1e-4 * scale):
            return f"{name}: differs by more than one bfloat16 step"
    elif AFTER_BF16_MEMORY.search(name):
        if rel_mean > 1e-4 or rel_max > 2e-2:
            return f"{name}: relative mean error {rel_mean:.2e}, max {rel_max:.2e}"
    elif rel_max > 1e-4:
        return f"{name}: relative max error {rel_max:.2e}"
    return None


# Meta's neck computes the position encodings of all four levels for every frame; SAM 2 uses
# only the stride-16 one (level 2), so ours makes only that one (the others held 81 MB at 1024).
UNUSED_NECK_POSITIONS = re.compile(r"image_encoder\.neck#\d\.out\.1\.[013]$")


def test_every_recorded_tensor_matches(recorded):
    ours, expected = recorded
    reference = {name: value for name, value in _expected_tensors(expected).items()
                 if not UNUSED_NECK_POSITIONS.fullmatch(name)}
    assert len(reference) < len(_expected_tensors(expected)) and "image_encoder.neck#0.out.1.2" in reference
    assert set(reference) <= set(ours), f"not recorded: {sorted(set(reference) - set(ours))}"
    failures = []
    for name, (values, step, stats) in sorted(reference.items()):
        mine = ours[name]
        if stats is not None:
            assert list(mine.shape) == expected[f"{name}@shape"].tolist(), name
        failure = _check(name, mine.reshape(-1)[::step], values.reshape(-1))
        if failure:
            failures.append(failure)
        if stats is not None:
            mine_stats = np.array([mine.mean(), mine.std(), np.abs(mine).mean(), mine.min(), mine.max()])
            failure = _check(name + "@stats", mine_stats, stats)
            if failure:
                failures.append(failure)
    assert not failures, "\n".join(failures)


def test_all_modules_were_compared(recorded):
    ours, expected = recorded
    names = {k.split("#")[0] for k in _expected_tensors(expected)}
    assert names == set(MODULES)
