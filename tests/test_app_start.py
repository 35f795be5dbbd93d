"""`python app.py` with a checkpoint it cannot use: the user's own file (--checkpoint) or the
official file in the checkpoints folder (--checkpoint-dir, a temporary folder here; the
repository's checkpoints/ folder is checked to be left untouched).

Each start must end within seconds with exit status 1 and one message that names the problem
and the file, before any page is served; the user's file must be left as it was. The app runs
offline (HF_HUB_OFFLINE=1), so that a missing official file is reported at once instead of
being downloaded.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from checkpoints.registry import checkpoint_info
from tests.app_harness import ROOT, free_port
from tests.reference import write_reference_checkpoint

OFFICIAL = checkpoint_info("sam2.1_hiera_tiny")  # the app's default model
START_LIMIT_S = 60  # a refused start takes 1-3 s here; a server that started would run until killed


@dataclass
class Start:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def start_app(folder: Path, *args: str) -> Start:
    """``python app.py`` with the smallest options, its official-checkpoint folder in ``folder``."""
    command = [
        sys.executable, str(ROOT / "app.py"), "--image-size", "512", "--precision", "float32",
        "--port", str(free_port()), "--checkpoint-dir", str(folder), *args,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=START_LIMIT_S)
    return Start(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def assert_refused(start: Start, path: Path, *words: str) -> str:
    """Exit status 1, no server, and an error naming the file and the problem; returns it."""
    assert start.returncode == 1, (start.returncode, start.stdout[-2000:], start.stderr[-2000:])
    assert "Running on" not in start.stdout and "Model:" not in start.stdout  # the page was never served
    assert "Traceback" not in start.stderr
    error = start.stderr[start.stderr.index("Error: ") :]  # torch may warn before it
    for fragment in (str(path), *words):
        assert fragment in error, f"{fragment!r} not in: {error}"
    return error


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture(scope="module", autouse=True)
def repository_checkpoints_untouched():
    before = tree(ROOT / "checkpoints")
    yield
    assert tree(ROOT / "checkpoints") == before


@pytest.fixture(scope="module")
def other_variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete, loadable checkpoint of another variant (SAM 2.0 tiny, reference weights)."""
    return write_reference_checkpoint("sam2_hiera_t", tmp_path_factory.mktemp("other") / "sam2_hiera_tiny.pt")


# ----------------------------------------------------------------------------- the user's own file


def _own_file(kind: str, folder: Path, reference: Path, other_variant: Path) -> Path:
    path = folder / "weights.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = reference.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "random bytes":
        path.write_bytes(os.urandom(1 << 16))
    elif kind == "a pickle of something else":
        path.write_bytes(pickle.dumps({"epoch": 3, "optimizer": {"lr": 1e-4}}))
    elif kind == "a training state without weights":
        torch.save({"optimizer": {"lr": torch.tensor(1e-4)}, "epoch": 3}, path)
    elif kind == "another variant's checkpoint":
        return other_variant
    elif kind == "a folder":
        path.mkdir()
        (path / "model.pt").write_bytes(b"x")
    elif kind != "missing":
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", ["is empty (0 bytes)"]),
        ("truncated", ["incomplete"]),
        ("random bytes", ["not a PyTorch checkpoint"]),
        ("a pickle of something else", ["not a PyTorch checkpoint"]),
        ("a training state without weights", ["not a SAM 2 checkpoint", "'optimizer'", "'model' entry"]),
        ("another variant's checkpoint", ["is a sam2_hiera_t checkpoint, but you asked for sam2.1_hiera_t"]),
        ("a folder", ["is a folder", "model.pt"]),
        ("missing", ["does not exist"]),
    ],
)
def test_a_bad_checkpoint_file_stops_the_app_with_a_message(
    kind: str, words: list[str], tmp_path: Path, reference_checkpoint: Path, other_variant: Path
) -> None:
    path = _own_file(kind, tmp_path, reference_checkpoint, other_variant)
    before = digest(path) if path.is_file() else None
    start = start_app(tmp_path / "official", "--checkpoint", str(path))
    assert_refused(start, path, *words)
    assert start.seconds < START_LIMIT_S
    if before is not None:
        assert digest(path) == before  # the user's file is never changed or removed
    assert not (tmp_path / "official").exists()  # nothing was downloaded or looked for


# ----------------------------------------------------------------------------- the official file


def test_an_official_file_with_the_wrong_checksum_is_refused_and_kept(
    tmp_path: Path, reference_checkpoint: Path
) -> None:
    """A file of the official size where the downloader puts it, but not the official bytes:
    here a loadable SAM 2.1 tiny checkpoint (the reference weights) with bytes appended up to
    the official size. Given with --checkpoint the app starts with it (the user's choice); in
    the checkpoints folder it must be refused, as the size alone used to let it through."""
    folder = tmp_path / "official"
    folder.mkdir()
    path = folder / OFFICIAL.filename
    data = reference_checkpoint.read_bytes()
    assert len(data) < OFFICIAL.size_bytes
    path.write_bytes(data + bytes(OFFICIAL.size_bytes - len(data)))
    before = digest(path)
    start = start_app(folder)
    error = assert_refused(start, path, "SHA-256", before, f"expected {OFFICIAL.sha256}", "left as it is")
    assert "--checkpoint" in error  # how to use it anyway, if these are one's own weights
    assert digest(path) == before and sorted(folder.iterdir()) == [path]  # kept; no download started


def test_a_finished_download_with_the_wrong_checksum_is_deleted(tmp_path: Path) -> None:
    """An earlier download's .part file reached the official size: it is verified before use
    (no network needed), and as its SHA-256 does not match, it is deleted and reported."""
    folder = tmp_path / "official"
    folder.mkdir()
    part = folder / f"{OFFICIAL.filename}.part"
    with part.open("wb") as file:
        file.truncate(OFFICIAL.size_bytes)  # all zeros
    start = start_app(folder)
    assert_refused(start, part, "SHA-256", f"expected {OFFICIAL.sha256}", "has been deleted")
    assert list(folder.glob("*.pt*")) == []  # (the Hugging Face source, tried first, leaves its .cache/)


def test_no_official_file_and_no_network_says_what_to_download(tmp_path: Path) -> None:
    folder = tmp_path / "official"
    start = start_app(folder, "--model", "sam2.1_hiera_b+")
    info = checkpoint_info("sam2.1_hiera_b+")
    assert_refused(start, folder.resolve() / info.filename, "could not be downloaded", info.hf_url, info.sha256)
    assert not list(folder.glob("*.pt"))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--max-sessions", "0"], "--max-sessions: '0' is not a whole number of at least 1"),
        (["--find-iou-thresh", "nan"], "--find-iou-thresh: 'nan' is not a number from 0 to 1"),
        (["--session-ttl-min", "-3"], "--session-ttl-min: '-3' is not a positive number"),
    ],
)
def test_a_bad_number_is_one_plain_line(tmp_path, option, message):
    """Refused while parsing (exit status 2), before any model or download, in one line."""
    start = start_app(tmp_path, *option)
    assert start.returncode == 2, (start.stdout, start.stderr)
    assert start.stderr.strip().splitlines() == [f"app.py: argument {message} ('app.py --help' lists the options)"]
