"""Numeric precision of model calls: exact float32, or autocast to bfloat16 / float16."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Precision:
    """A context factory: `with precision(): ...` runs model code at the chosen precision.

    Parameters and stored results stay float32; only the arithmetic inside is reduced.
    """

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in _DTYPES:
            raise ValueError(f"Unknown precision {name!r}: use one of {', '.join(_DTYPES)}.")
        self.name = name
        self.dtype = _DTYPES[name]
        self.device_type = torch.device(device).type

    def __call__(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @staticmethod
    def fastest_supported(device: torch.device | str) -> str:
        """bfloat16 where the hardware does it natively (AVX-512 BF16 / AMX CPUs, GPUs with
        bf16), float16 on other GPUs, float32 otherwise."""
        device = torch.device(device)
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if device.type == "cpu":
            try:
                flags = Path("/proc/cpuinfo").read_text()  # opened and closed at once
            except OSError:
                return "float32"
            return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"
        return "float32"
