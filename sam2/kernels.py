"""Attention kernels chosen by measurement, on the machine that runs them.

Which kernel is fastest depends on the CPU, not on the maths: on a 2-core AMD EPYC (AVX-512
BF16, no AMX) `blockwise_attention` beat PyTorch's fused kernel for memory attention in
bfloat16, while on an Intel Xeon with AMX the fused kernel won by 1.2-2.4x. So nothing here
looks at the CPU's name: the first time a model runs an attention of a given kind, dtype and
query count, every candidate is timed on that very call, and the fastest is kept for as long
as the chooser lives (a model holds one; the app's model lives as long as the process).

Kinds (shape classes): "cross" (memory attention's cross-attention over the memory bank),
"self" (memory attention's square self-attention), "global" (Hiera's global-attention
blocks). Every other attention (windows, the mask decoder) is small and always fused.

A choice made by timing can differ between two processes, and the two kernels round
differently in the last bits, so masks made in two processes are only bit-identical with the
same choice: pin it with policy "fused" or "blockwise" where that matters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .machine import ChoiceCache, default_cache

KERNELS = ("fused", "blockwise")
POLICIES = ("measure", *KERNELS)
KINDS = {"cross": "cross-attention over memories", "self": "memory self-attention", "global": "Hiera global blocks"}
# Attentions with fewer score elements than this use the fused kernel under "measure" without
# timing: at 256 px input and below, timing costs more than any kernel could save.
MEASURE_MIN_SCORES = 1 << 20
DEFAULT_KERNEL = "fused"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelKey:
    """What a choice holds for: one shape class at one dtype, device and query count (the
    query count follows the model's image size; the key count varies frame to frame with the
    memories, so it is not part of the key)."""

    kind: str
    device: str  # "cpu", "cuda"
    dtype: str  # the arithmetic's dtype: the autocast dtype when autocast is on
    queries: int


@dataclass(frozen=True)
class KernelChoice:
    key: KernelKey
    kernel: str
    seconds: Mapping[str, float]  # candidate -> best measured time; empty when not measured
    earlier: bool = False  # measured at an earlier start on this machine (kept in a ChoiceCache)

    def cache_name(self) -> str:
        return _cache_name(self.key)

    def describe(self) -> str:
        """e.g. 'cross-attention over memories, bfloat16 on cpu, 4096 queries: blockwise
        (blockwise 0.102 s, fused 0.082 s)'."""
        k = self.key
        head = f"{KINDS.get(k.kind, k.kind)}, {k.dtype} on {k.device}, {k.queries} queries: {self.kernel}"
        if not self.seconds:
            return head
        timed = ", ".join(f"{name} {s:.4f} s" for name, s in sorted(self.seconds.items(), key=lambda kv: kv[1]))
        return f"{head} (measured{' at an earlier start' if self.earlier else ''}: {timed})"


Candidates = Mapping[str, Callable[[], torch.Tensor]]


class KernelChooser:
    """Runs one of several equivalent attention kernels, chosen by `policy`:

    - "measure" (default): time every candidate on the first call of each `KernelKey` (each
      run `rounds` times, interleaved, the best time counts: the first run of a kernel pays for
      fresh pages) and keep the fastest; small attentions use the fused kernel untimed;
    - "fused" or "blockwise": always that kernel (same masks in every process).

    `timer` is the clock (seconds); tests give a fake one. `cache`: where CPU choices are kept
    between starts (``sam2.machine``): a choice measured at an earlier start on this machine is
    used as it is, so two starts choose alike whatever else loads the CPU. Thread-safe: the app
    encodes frames ahead in a background thread while a user's call runs.
    """

    def __init__(self, policy: str = "measure", timer: Callable[[], float] = time.perf_counter, rounds: int = 2,
                 cache: ChoiceCache | None = None):  # fmt: skip
        if policy not in POLICIES:
            raise ValueError(f"Unknown kernel policy {policy!r}: use one of {', '.join(POLICIES)}.")
        self.policy = policy
        self._timer = timer
        self._rounds = max(1, rounds)
        self._choices: dict[KernelKey, KernelChoice] = {}
        self._lock = threading.Lock()
        self._cache = cache

    def run(self, kind: str, q: torch.Tensor, k: torch.Tensor, candidates: Candidates) -> torch.Tensor:
        """The result of the chosen candidate for an attention of queries q (..., Nq, D) over
        keys k (..., Nk, D); every candidate must compute the same thing."""
        if self.policy != "measure":
            return candidates[self.policy]()
        key = _key(kind, q)
        choice = self._choices.get(key)
        if choice is not None:
            return candidates[choice.kernel]()
        if q.shape[-2] * k.shape[-2] < MEASURE_MIN_SCORES:
            return candidates[DEFAULT_KERNEL]()
        with self._lock:  # one measurement at a time: two at once would time each other
            choice = self._choices.get(key) or self._kept(key, candidates)
            if choice is not None:
                self._choices[key] = choice
                log.info("Attention kernel for %s", choice.describe())
                return candidates[choice.kernel]()
            choice, result = self._measure(key, candidates)
            self._choices[key] = choice
            log.info("Attention kernel for %s", choice.describe())
            if self._cache is not None and key.device == "cpu":  # the cache describes this machine's CPU
                self._cache.put(choice.cache_name(), {"kernel": choice.kernel, "seconds": dict(choice.seconds)})
            return result

    def _kept(self, key: KernelKey, candidates: Candidates) -> KernelChoice | None:
        """The choice an earlier start measured for ``key`` on this machine, if any."""
        saved = self._cache.get(_cache_name(key)) if self._cache is not None and key.device == "cpu" else None
        try:
            if saved is not None and saved["kernel"] in candidates:
                seconds = {str(k): float(v) for k, v in saved["seconds"].items()}
                return KernelChoice(key, saved["kernel"], seconds, earlier=True)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a damaged entry: measure again
        return None

    def _measure(self, key: KernelKey, candidates: Candidates) -> tuple[KernelChoice, torch.Tensor]:
        best: dict[str, float] = {}
        results: dict[str, torch.Tensor] = {}
        for _ in range(self._rounds):
            for name, fn in candidates.items():
                seconds, results[name] = self._time(fn, key.device)
                best[name] = min(seconds, best.get(name, float("inf")))
        winner = min(best, key=lambda name: best[name])  # ties: the first candidate
        return KernelChoice(key, winner, best), results[winner]

    def _time(self, fn: Callable[[], torch.Tensor], device: str) -> tuple[float, torch.Tensor]:
        synchronize(device)
        start = self._timer()
        result = fn()
        synchronize(device)  # a GPU kernel has only been queued when fn returns
        return self._timer() - start, result

    def choices(self) -> list[KernelChoice]:
        """The choices made so far, in the order they were made."""
        return list(self._choices.values())

    def describe(self) -> list[str]:
        """One line per choice (measured ones with their times), or the pinned policy."""
        if self.policy != "measure":
            return [f"every large attention: {self.policy} (pinned)"]
        return [choice.describe() for choice in self.choices()] or ["no large attention has run yet"]


def resolve(kernels: str | KernelChooser | None) -> KernelChooser:
    """A chooser for a policy name (or None: "measure"), keeping CPU choices for later starts
    (``sam2.machine.default_cache``); a chooser is used as it is, so that models built from one
    share its choices."""
    if isinstance(kernels, KernelChooser):
        return kernels
    return KernelChooser(kernels or "measure", cache=default_cache())


def _cache_name(key: KernelKey) -> str:
    return f"kernel/{key.kind}/{key.device}/{key.dtype}/{key.queries}"


def _key(kind: str, q: torch.Tensor) -> KernelKey:
    device = q.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q.dtype
    return KernelKey(kind, device, str(dtype).removeprefix("torch."), q.shape[-2])


def synchronize(device: str) -> None:
    """Wait for queued GPU work (timings must include it); nothing on a CPU."""
    if device == "cuda":
        torch.cuda.synchronize()
