"""Choices measured on this machine and kept from start to start (sam2.machine): fast mode's
CPU precision and the attention kernels come out the same on every start, whatever loads the
CPU then, because the first start's measurement is kept per CPU, torch version and threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sam2.kernels import KernelChooser
from sam2.machine import CACHE_FILE, ChoiceCache, MachineId, cpu_model
from sam2.precision import PrecisionChoice, kept_cpu_precision
from tests.app_harness import ROOT
from tests.test_kernels import LARGE, FakeClock, candidates

HERE = MachineId("Test CPU (family 1, model 2, flags 0)", "2.13.0", 2)


def test_the_cpu_is_named_by_model_family_and_flags():
    name = cpu_model()
    assert name and "unknown" not in name
    if os.path.exists("/proc/cpuinfo"):
        assert "family" in name and "flags" in name  # "AMD EPYC" alone names several generations
    assert MachineId.here().key().endswith(f"| torch {torch.__version__} | {torch.get_num_threads()} threads")


def test_a_choice_is_measured_once_per_machine(tmp_path):
    measured = []

    def measure() -> PrecisionChoice:
        measured.append(1)
        return PrecisionChoice("bfloat16", {"float32": 0.03, "bfloat16": 0.01}, 3.0)

    path = tmp_path / CACHE_FILE
    first = kept_cpu_precision(ChoiceCache(path, HERE), measure)
    second = kept_cpu_precision(ChoiceCache(path, HERE), measure)  # another start: a new process's cache
    assert measured == [1] and (first.precision, second.precision) == ("bfloat16", "bfloat16")
    assert not first.earlier and second.earlier and second.speedup == 3.0
    assert "measured at an earlier start, kept in " + str(path) in second.describe()
    other = MachineId("Another CPU (family 6, model 143, flags 1)", "2.13.0", 2)
    kept_cpu_precision(ChoiceCache(path, other), measure)  # another CPU measures for itself
    assert measured == [1, 1] and len(json.loads(path.read_text())) == 2


def test_a_damaged_or_unwritable_cache_measures_again(tmp_path):
    def measure() -> PrecisionChoice:
        return PrecisionChoice("float32", {"float32": 0.03, "bfloat16": 0.2}, 0.15)

    path = tmp_path / CACHE_FILE
    path.write_text("{not json")
    assert not kept_cpu_precision(ChoiceCache(path, HERE), measure).earlier
    path.write_text(json.dumps({HERE.key(): {"fast-precision/cpu": {"precision": "float64", "seconds": 5}}}))
    assert not kept_cpu_precision(ChoiceCache(path, HERE), measure).earlier
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    cache = ChoiceCache(blocked / CACHE_FILE, HERE)  # its folder is a file: cannot be written
    choice = kept_cpu_precision(cache, measure)
    assert choice.precision == "float32" and cache.where() == "this run only" and "cannot be written" in cache.problem
    assert kept_cpu_precision(cache, measure).earlier  # kept for the rest of the run all the same


def test_kernel_choices_are_kept_for_the_next_start(tmp_path):
    path = tmp_path / CACHE_FILE
    clock, runs = FakeClock(), []
    first = KernelChooser("measure", timer=clock, rounds=1, cache=ChoiceCache(path, HERE))
    first.run("cross", *LARGE, candidates(clock, runs, fused=[3.0], blockwise=[1.0]))
    assert [c.kernel for c in first.choices()] == ["blockwise"] and runs == ["fused", "blockwise"]

    clock, runs = FakeClock(), []  # the next start: the fused kernel would now time faster
    second = KernelChooser("measure", timer=clock, rounds=1, cache=ChoiceCache(path, HERE))
    second.run("cross", *LARGE, candidates(clock, runs, fused=[0.5], blockwise=[1.0]))
    (choice,) = second.choices()
    assert choice.kernel == "blockwise" and choice.earlier and runs == ["blockwise"] and clock.reads == 0
    assert choice.describe().endswith("(measured at an earlier start: blockwise 1.0000 s, fused 3.0000 s)")


@pytest.fixture
def busy_core():
    """Another process keeping a core busy for the length of the test."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    spinner.kill()
    spinner.wait()


def test_precision_auto_is_the_same_in_two_starts_while_the_other_core_is_busy(tmp_path, busy_core):
    """Two starts of the command line's option handling (`--precision auto`), each a new process."""
    script = ("from annotation.options import resolve_precision\n"
              "from sam2.precision import cpu_precision_choice\n"
              "print(resolve_precision('auto', 'cpu'), cpu_precision_choice().earlier)")  # fmt: skip
    env = {**os.environ, "SAM2_CACHE_DIR": str(tmp_path)}
    starts = [subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120) for _ in range(2)]  # fmt: skip
    answers = [start.stdout.split() for start in starts]
    assert all(start.returncode == 0 for start in starts), [s.stderr[-2000:] for s in starts]
    assert answers[0][0] == answers[1][0] in ("float32", "bfloat16")
    assert [a[1] for a in answers] == ["False", "True"]  # measured by the first start, read by the second
