"""Choices measured on this machine, kept from one start to the next.

Fast mode's CPU precision and the attention kernels are chosen by timing (``sam2.precision``,
``sam2.kernels``). A timing taken while another program loads the CPU can come out the other
way on the next start, and the two choices give slightly different masks, so a choice, once
measured, is kept in a small JSON file under the CPU's model name, the torch version and the
thread count, and every later start on the same machine reads it instead of timing again.
Another CPU, torch version or thread count measures afresh.

Where: ``$SAM2_CACHE_DIR``, else ``$XDG_CACHE_HOME/sam2-annotator``, else
``~/.cache/sam2-annotator``; the file is ``machine-choices.json``. Deleting it measures again.
A folder that cannot be written keeps the choices for this process only (and says so).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

CACHE_FILE = "machine-choices.json"


@dataclass(frozen=True)
class MachineId:
    """What a measured choice depends on: the processor, the torch build and its threads."""

    cpu: str
    torch: str
    threads: int

    @classmethod
    def here(cls) -> MachineId:
        return cls(cpu_model(), torch.__version__, torch.get_num_threads())

    def key(self) -> str:
        return f"{self.cpu} | torch {self.torch} | {self.threads} threads"


def cpu_model() -> str:
    """The processor as Linux describes it: its model name, family, model number and a digest
    of its feature flags (a virtual machine may call a Zen 1 and a Zen 4 both "AMD EPYC"; their
    families and flags differ); elsewhere the platform's word."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        info = ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    if "model name" not in fields:
        return platform.processor() or platform.machine() or "unknown CPU"
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:8]
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    return f"{fields['model name']} (family {family}, model {model}, flags {flags})"


class ChoiceCache:
    """Measured choices of one machine (:class:`MachineId`), by name, in a JSON file shared by
    every process. ``path`` None keeps them in memory only. Thread-safe; a write goes to a
    temporary file renamed into place, so a reader never sees half a file, and re-reads the
    file first, so that two processes writing different names both keep theirs."""

    def __init__(self, path: Path | None, machine: MachineId | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.machine = machine or MachineId.here()
        self.problem: str | None = None  # why the file could not be written, once it could not
        self._memory: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> dict | None:
        with self._lock:
            if name in self._memory:
                return self._memory[name]
            entry = self._read().get(self.machine.key(), {}).get(name)
            return entry if isinstance(entry, dict) else None

    def put(self, name: str, value: dict) -> None:
        with self._lock:
            self._memory[name] = value
            if self.path is None or self.problem is not None:
                return
            everything = self._read()
            mine = everything.setdefault(self.machine.key(), {})
            mine[name] = value
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False) as out:
                    json.dump(everything, out, indent=1, sort_keys=True)
                os.replace(out.name, self.path)
            except OSError as exc:
                self.problem = f"{self.path} cannot be written ({exc.strerror or exc}); choices last for this run only"

    def where(self) -> str:
        """For messages: where the choices are kept."""
        if self.path is None or self.problem is not None:
            return "this run only"
        return str(self.path)

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none yet, or damaged: measure again (and rewrite it)
            return {}
        return data if isinstance(data, dict) else {}


def cache_folder() -> Path:
    """The folder of the choices file (see the module's docstring)."""
    if os.environ.get("SAM2_CACHE_DIR"):
        return Path(os.environ["SAM2_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sam2-annotator"


@functools.cache
def default_cache() -> ChoiceCache:
    """The process's cache of this machine's choices (one object, so that threads share it)."""
    return ChoiceCache(cache_folder() / CACHE_FILE)
