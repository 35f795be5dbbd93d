"""Shared fixtures: a checkpoint with the reference weights, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sam2.1_hiera_t with the reference weights (~150 MB, a few seconds to write)."""
    from tests.reference import write_reference_checkpoint

    return write_reference_checkpoint("sam2.1_hiera_t", tmp_path_factory.mktemp("checkpoint") / "reference-tiny.pt")
