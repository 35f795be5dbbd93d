"""Shared fixtures: a checkpoint with the reference weights, made once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """The choices measured on this machine (sam2.machine) go to a folder of this test run, so
    that a run neither reads a developer's kept choices nor leaves its own behind; the apps and
    command lines the tests start inherit it."""
    os.environ.setdefault("SAM2_CACHE_DIR", tempfile.mkdtemp(prefix="sam2-test-choices-"))


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sam2.1_hiera_t with the reference weights (~150 MB, a few seconds to write)."""
    from tests.reference import write_reference_checkpoint

    return write_reference_checkpoint("sam2.1_hiera_t", tmp_path_factory.mktemp("checkpoint") / "reference-tiny.pt")
