"""Numeric precision of model calls: exact float32, or autocast to bfloat16 / float16."""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from .machine import ChoiceCache, default_cache

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
        float16; on a CPU bfloat16 only where it measured clearly faster than float32 on this
        machine (`measure_cpu_precision`, once per machine: `cpu_precision_choice`), else float32."""
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
    speedup: float  # float32's time / bfloat16's, the median of the rounds: what decided
    kept: str = ""  # where the choice is kept for later starts ("" when not kept)
    earlier: bool = False  # read from an earlier start's measurement, not measured now

    def describe(self) -> str:
        timed = ", ".join(f"{name} {self.seconds[name] * 1000:.1f} ms" for name in ("float32", "bfloat16"))
        why = (f"bfloat16 ran {self.speedup:.2f}x as fast as float32 and must reach {BFLOAT16_MIN_SPEEDUP}x; "
               f"measured: {timed}")  # fmt: skip
        when = "measured at an earlier start" if self.earlier else "measured now"
        kept = f", kept in {self.kept}" if self.kept else ""
        return f"fast mode on this CPU: {self.precision} ({why}; {when}{kept})"


# bfloat16 changes the masks slightly, so it must earn its place: at least this much faster.
BFLOAT16_MIN_SPEEDUP = 1.25


def measure_cpu_precision(timer: Callable[[], float] = time.perf_counter, rounds: int = 5,
                          probe: Callable[[str], object] | None = None) -> PrecisionChoice:
    """Time a matrix product of the model's shape class (2048 tokens x 256 -> 1024, as in
    Hiera's MLPs and memory attention) in float32 and under bfloat16 autocast -> bfloat16 if
    it is at least BFLOAT16_MIN_SPEEDUP x faster.

    Robust to a busy machine: each precision runs once untimed (first use pays for fresh
    pages), then `rounds` rounds time the two back to back, and the median of the rounds'
    speedups decides, so a slow spell that hits one run, or one round, does not.

    Nothing is decided by the CPU's name or flags: CPUs with AVX-512 BF16 or AMX run bfloat16
    natively (2-4x faster), others emulate it (slower than float32), and whichever this one
    does shows in the timing. `probe(precision)` runs the work (tests give a fake one)."""
    run = probe or _matmul_probe()
    for precision in ("float32", "bfloat16"):
        run(precision)
    best: dict[str, float] = {}
    speedups = []
    for _ in range(max(1, rounds)):
        took = {}
        for precision in ("float32", "bfloat16"):
            start = timer()
            run(precision)
            took[precision] = max(timer() - start, 1e-9)
            best[precision] = min(took[precision], best.get(precision, float("inf")))
        speedups.append(took["float32"] / took["bfloat16"])
    speedup = statistics.median(speedups)
    return PrecisionChoice("bfloat16" if speedup >= BFLOAT16_MIN_SPEEDUP else "float32", best, speedup)


def _matmul_probe() -> Callable[[str], object]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2048, 256, generator=generator)
    weight = torch.randn(1024, 256, generator=generator)

    def run(precision: str) -> torch.Tensor:
        with torch.inference_mode(), Precision(precision, torch.device("cpu"))():
            return torch.nn.functional.linear(tokens, weight)

    return run


CACHE_NAME = "fast-precision/cpu"


def kept_cpu_precision(cache: ChoiceCache, measure: Callable[[], PrecisionChoice] = measure_cpu_precision
                       ) -> PrecisionChoice:  # fmt: skip
    """This machine's choice as an earlier start measured it (``cache``), else measured now
    and kept there: the same choice on every start, whatever else loads the CPU then."""
    saved = cache.get(CACHE_NAME)
    try:
        if saved is not None and saved["precision"] in ("float32", "bfloat16"):
            seconds = {str(k): float(v) for k, v in saved["seconds"].items()}
            return PrecisionChoice(saved["precision"], seconds, float(saved["speedup"]), cache.where(), earlier=True)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass  # a damaged entry: measure again
    choice = measure()
    cache.put(CACHE_NAME, {"precision": choice.precision, "seconds": dict(choice.seconds), "speedup": choice.speedup})
    return replace(choice, kept=cache.where())


@functools.cache
def cpu_precision_choice() -> PrecisionChoice:
    """What `fastest_supported("cpu")` chooses, with the times it measured: kept per machine
    (``sam2.machine``) and read once per process, so the app's options, the builders and the
    benchmark agree, and so do two starts."""
    return kept_cpu_precision(default_cache())
