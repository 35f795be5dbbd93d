"""Numeric precision of model calls: exact float32, or autocast to bfloat16 / float16."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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
        """The precision fast mode uses on `device`: on a GPU bfloat16 where it has it, else
        float16; on a CPU bfloat16 only where it measured clearly faster than float32 here
        (`measure_cpu_precision`, once per process), else float32."""
        device = torch.device(device)
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if device.type == "cpu":
            return cpu_precision_choice().precision
        return "float32"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "bfloat16" or "float32"
    seconds: Mapping[str, float]  # candidate precision -> best time of the probe

    def describe(self) -> str:
        timed = ", ".join(f"{name} {s * 1000:.1f} ms" for name, s in self.seconds.items())
        return f"fast mode on this CPU: {self.precision} (measured: {timed})"


# bfloat16 changes the masks slightly, so it must earn its place: at least this much faster.
BFLOAT16_MIN_SPEEDUP = 1.25


def measure_cpu_precision(timer: Callable[[], float] = time.perf_counter, rounds: int = 2,
                          probe: Callable[[str], object] | None = None) -> PrecisionChoice:
    """Time a matrix product of the model's shape class (2048 tokens x 256 -> 1024, as in
    Hiera's MLPs and memory attention) in float32 and under bfloat16 autocast, interleaved,
    best of `rounds` each -> bfloat16 if it is at least BFLOAT16_MIN_SPEEDUP x faster.

    Nothing is decided by the CPU's name or flags: CPUs with AVX-512 BF16 or AMX run bfloat16
    natively (2-4x faster), others emulate it (slower than float32), and whichever this one
    does shows in the timing. `probe(precision)` runs the work (tests give a fake one)."""
    run = probe or _matmul_probe()
    best: dict[str, float] = {}
    for _ in range(max(1, rounds)):
        for precision in ("float32", "bfloat16"):
            start = timer()
            run(precision)
            best[precision] = min(timer() - start, best.get(precision, float("inf")))
    fast = best["bfloat16"] * BFLOAT16_MIN_SPEEDUP <= best["float32"]
    return PrecisionChoice("bfloat16" if fast else "float32", best)


def _matmul_probe() -> Callable[[str], object]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2048, 256, generator=generator)
    weight = torch.randn(1024, 256, generator=generator)

    def run(precision: str) -> torch.Tensor:
        with torch.inference_mode(), Precision(precision, torch.device("cpu"))():
            return torch.nn.functional.linear(tokens, weight)

    return run


@functools.cache
def cpu_precision_choice() -> PrecisionChoice:
    """What `fastest_supported("cpu")` chooses, with the times it measured; measured once per
    process, so the app's options, the builders and the benchmark agree."""
    return measure_cpu_precision()
