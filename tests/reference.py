"""Reference weights and reference cases (see tests/fixtures/README.md).

The reference weights are a deterministic stand-in for an official checkpoint: one tensor per
(key, shape) of the official manifest, generated from a seed derived from the key.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures"
_SHARPENED = re.compile(r"memory_attention\..*cross_attn_image\.(q_proj|k_proj)\.weight$")


@functools.cache
def manifests() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    raw = json.loads((FIXTURES / "manifests.json").read_text())
    return {variant: [(key, tuple(shape)) for key, shape in entries] for variant, entries in raw.items()}


def reference_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    t = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) >= 2:
        t = t / math.sqrt(math.prod(shape[1:]))
    elif key.endswith(".weight"):
        t = 1 + 0.1 * t
    elif not key.endswith("gamma"):
        t = 0.1 * t
    if _SHARPENED.search(key):
        t = t * 3
    return t


@functools.cache
def _reference_state_dict(variant: str) -> dict[str, torch.Tensor]:
    return {key: reference_tensor(key, shape) for key, shape in manifests()[variant]}


def reference_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """A fresh dict (tensors shared, read-only by convention) for `variant`, e.g. 'sam2.1_hiera_t'."""
    return dict(_reference_state_dict(variant))


def write_reference_checkpoint(variant: str, path: Path) -> Path:
    """Save the reference weights in the official file format: {"model": state_dict}."""
    torch.save({"model": reference_state_dict(variant)}, path)
    return path


def load_case(name: str) -> tuple[dict, list[np.ndarray], np.lib.npyio.NpzFile]:
    """(case.json, frames as HxWx3 uint8 in file-name order, expected arrays) of a case."""
    from PIL import Image

    folder = FIXTURES / name
    case = json.loads((folder / "case.json").read_text())
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((folder / "frames").glob("*.png"))]
    expected_path = folder / ("expected.npz" if (folder / "expected.npz").exists() else "components.npz")
    return case, frames, np.load(expected_path)
