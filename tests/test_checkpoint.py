"""Checkpoint reading, variant detection, strict loading, registry and downloader.

Real files throughout: reference checkpoints written with tests/reference.py, damaged copies
of them, a local HTTP server for the direct-URL downloader, and the real (absent) network for
the offline paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch

from checkpoints.download import (
    CheckpointUnavailable,
    checkpoint_path,
    ensure_checkpoint,
    fetch,
    preloaded,
    verify_file,
)
from checkpoints.registry import CHECKPOINTS, CheckpointInfo, checkpoint_info
from sam2.checkpoint import (
    CheckpointError,
    describe_key_mismatch,
    detect_variant,
    load_weights,
    read_state_dict,
)
from sam2.config import VARIANTS
from tests.reference import manifests, reference_state_dict, write_reference_checkpoint

REPO = Path(__file__).resolve().parent.parent
T21 = "sam2.1_hiera_t"


class NotAWeight:
    """Pickling an instance of this makes a file that only loads by running our code."""


def meta_state(variant: str) -> dict[str, torch.Tensor]:
    """A state dict with the variant's real keys and shapes, without allocating the weights."""
    return {key: torch.empty(shape, device="meta") for key, shape in manifests()[variant]}


def module_from_shapes(shapes: Mapping[str, tuple[int, ...]], device: str = "meta") -> torch.nn.Module:
    """A module whose state_dict has exactly these keys and shapes (a stand-in for the model)."""
    root = torch.nn.Module()
    for key, shape in shapes.items():
        *parents, name = key.split(".")
        owner = root
        for part in parents:
            if part not in owner._modules:
                owner.add_module(part, torch.nn.Module())
            owner = owner._modules[part]
        owner.register_parameter(name, torch.nn.Parameter(torch.empty(shape, device=device), requires_grad=False))
    return root


def assert_plain_message(error: pytest.ExceptionInfo, *fragments: str, max_length: int = 1500) -> None:
    """The message names what it should and is no torch traceback."""
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "Traceback" not in message and "\x1b[" not in message
    assert len(message) < max_length


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    return write_reference_checkpoint(T21, path)


# ----------------------------------------------------------------------------- reading


def test_reference_checkpoint_round_trips(reference_file: Path) -> None:
    state = read_state_dict(reference_file)
    expected = reference_state_dict(T21)
    assert list(state) == list(expected)
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    assert detect_variant(state) == T21


def test_accepts_bare_state_dict_and_old_file_format(tmp_path: Path) -> None:
    weights = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(2)}
    bare = tmp_path / "bare.pt"
    torch.save(weights, bare)
    legacy = tmp_path / "legacy.pt"  # pre-1.6 pickle format: read without mmap
    torch.save({"model": weights, "epoch": 3}, legacy, _use_new_zipfile_serialization=False)
    for path in (bare, legacy):
        state = read_state_dict(path)
        assert state.keys() == weights.keys()
        assert all(torch.equal(state[k], weights[k]) for k in weights)


def _write_bad_file(kind: str, folder: Path, reference: Path) -> Path:
    path = folder / "sam2.1_hiera_tiny.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "truncated":
        data = reference.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "list":
        torch.save([torch.zeros(2), 3], path)
    elif kind == "no model entry":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
    elif kind == "non-tensor weights":
        torch.save({"model": {"w": torch.zeros(2), "step": 7}}, path)
    elif kind == "code":
        torch.save({"model": {"w": torch.zeros(2)}, "extra": NotAWeight()}, path)
    elif kind == "lfs pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:7402e0d8\nsize 156008466\n")
    elif kind == "web page":
        path.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    elif kind == "directory":
        path.mkdir()
        (path / "weights.pt").write_bytes(b"x")
    elif kind != "missing":
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", ["empty", "download it again"]),
        ("random bytes", ["not a PyTorch checkpoint", "download it again"]),
        ("truncated", ["incomplete", "download it again"]),
        ("list", ["not a SAM 2 checkpoint", "list of 2 items"]),
        ("no model entry", ["not a SAM 2 checkpoint", "'state_dict'", "'epoch'", "'model' entry"]),
        ("non-tensor weights", ["not a set of weights", "'step' (int)"]),
        ("code", ["run program code", "NotAWeight"]),
        ("lfs pointer", ["Git LFS pointer"]),
        ("web page", ["web page"]),
        ("directory", ["is a folder", "weights.pt"]),
        ("missing", ["does not exist", "python -m checkpoints.download"]),
    ],
)
def test_bad_files_get_a_clear_message(kind: str, words: list[str], tmp_path: Path, reference_file: Path) -> None:
    path = _write_bad_file(kind, tmp_path, reference_file)
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert_plain_message(error, str(path), *words)


def test_download_hint_names_the_variant_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sam2_hiera_large.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert_plain_message(error, "python -m checkpoints.download sam2_hiera_large")


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_detects_every_official_variant(variant: str) -> None:
    assert detect_variant(meta_state(variant)) == variant
    assert detect_variant(dict(manifests()[variant])) == variant  # shapes work as well as tensors


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("foreign", ["do not look like a SAM 2 checkpoint", "2 tensors", "fc.weight"]),
        ("block removed", ["do not look like a SAM 2 checkpoint", "11 image-encoder blocks"]),
        ("half 2.1", ["only part of the SAM 2.1 keys", "no_obj_embed_spatial"]),
        ("wider", ["patch-embedding width 128"]),
    ],
)
def test_unknown_layouts_are_refused(change: str, words: list[str]) -> None:
    shapes = dict(manifests()[T21])
    if change == "foreign":
        shapes = {"fc.weight": (10, 4), "fc.bias": (10,)}
    elif change == "block removed":
        shapes = {k: s for k, s in shapes.items() if not k.startswith("image_encoder.trunk.blocks.11.")}
    elif change == "half 2.1":
        del shapes["obj_ptr_tpos_proj.weight"]
    elif change == "wider":
        shapes["image_encoder.trunk.patch_embed.proj.weight"] = (128, 3, 7, 7)
    with pytest.raises(CheckpointError) as error:
        detect_variant(shapes)
    assert_plain_message(error, *words)


# ----------------------------------------------------------------------------- mismatch and loading


def test_mismatch_report_lists_differences_and_names_both_variants() -> None:
    report = describe_key_mismatch(dict(manifests()[T21]), dict(manifests()["sam2_hiera_l"]))
    # SAM 2.1's 3 additions, and the stage-transition projections of blocks 1, 3 and 10 of tiny
    assert "9 of the model's 471 keys are missing from the checkpoint" in report
    assert "  - no_obj_embed_spatial" in report
    assert "keys of the checkpoint are not in the model" in report
    assert "152 keys have a different shape" in report
    assert "image_encoder.trunk.patch_embed.proj.weight: model (96, 3, 7, 7), checkpoint (144, 3, 7, 7)" in report
    assert "The checkpoint is a sam2_hiera_l checkpoint; the model is sam2.1_hiera_t." in report
    assert "438 keys of the checkpoint are not in the model" in report
    assert "  ... and 428 more" in report  # long lists are cut to their first 10 entries
    assert sum(line.startswith("  - ") for line in report.splitlines()) == 29


def test_mismatch_report_for_identical_layouts() -> None:
    shapes = dict(manifests()[T21])
    assert describe_key_mismatch(shapes, meta_state(T21)) == "The checkpoint's keys and shapes match the model."


def test_load_weights_copies_a_full_reference_checkpoint(reference_file: Path) -> None:
    model = module_from_shapes(dict(manifests()[T21]), device="cpu")
    state = read_state_dict(reference_file)
    load_weights(model, state, T21, source=reference_file)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_load_weights_refuses_another_variant_by_name(tmp_path: Path) -> None:
    model = module_from_shapes(dict(manifests()[T21]))
    source = tmp_path / "sam2_hiera_large.pt"
    with pytest.raises(CheckpointError) as error:
        load_weights(model, meta_state("sam2_hiera_l"), T21, source=source)
    assert_plain_message(
        error,
        f"The checkpoint {source} is a sam2_hiera_l checkpoint, but you asked for sam2.1_hiera_t",
        "sam2.1_hiera_tiny.pt",
        "keys have a different shape",
        max_length=4000,
    )


class SmallModel(torch.nn.Module):
    """A few modules named like the real model's, to exercise loading with real values."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.no_obj_ptr = torch.nn.Parameter(torch.zeros(1, 4))
        self.obj_ptr_proj = torch.nn.Linear(4, width)
        self.mask_downsample = torch.nn.Conv2d(1, 1, kernel_size=4, stride=4)


def test_load_weights_copies_values_into_a_small_model() -> None:
    source = SmallModel()
    for parameter in source.parameters():
        torch.nn.init.normal_(parameter)
    target = SmallModel()
    load_weights(target, source.state_dict(), T21)
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )


def test_load_weights_reports_missing_unexpected_and_reshaped_keys() -> None:
    target = SmallModel()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = SmallModel(width=6).state_dict()
    del state["no_obj_ptr"]
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as error:
        load_weights(target, state, T21)
    assert_plain_message(
        error,
        "does not fit the sam2.1_hiera_t model",
        "1 of the model's 5 keys are missing from the checkpoint:\n  - no_obj_ptr",
        "1 keys of the checkpoint are not in the model:\n  - extra.weight",
        "obj_ptr_proj.weight: model (8, 4), checkpoint (6, 4)",
    )
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched


# ----------------------------------------------------------------------------- registry


def test_registry_covers_every_variant_with_official_sources() -> None:
    assert CHECKPOINTS.keys() == VARIANTS.keys()
    tiny = checkpoint_info("sam2.1_hiera_tiny")
    assert tiny.filename == "sam2.1_hiera_tiny.pt"
    assert tiny.hf_repo == "facebook/sam2.1-hiera-tiny"
    assert tiny.url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"
    assert tiny.hf_url == "https://huggingface.co/facebook/sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt"
    base = checkpoint_info("sam2_hiera_b+")
    assert base.hf_repo == "facebook/sam2-hiera-base-plus"
    assert base.url == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_registry_sizes_fit_the_manifests(variant: str) -> None:
    """A float32 file is its tensors plus a little pickle/zip overhead per key (~250 bytes)."""
    info = CHECKPOINTS[variant]
    entries = manifests()[variant]
    tensor_bytes = 4 * sum(math.prod(shape) for _, shape in entries)
    assert info.size_bytes is not None and 0 < info.size_bytes - tensor_bytes < 400 * len(entries)
    assert info.sha256 is not None and len(info.sha256) == 64 and int(info.sha256, 16) >= 0


# ----------------------------------------------------------------------------- downloader


def test_checkpoint_path_accepts_short_and_long_names(tmp_path: Path) -> None:
    expected = tmp_path.resolve() / "sam2.1_hiera_tiny.pt"
    assert checkpoint_path("sam2.1_hiera_t", tmp_path) == expected
    assert checkpoint_path("sam2.1_hiera_tiny", tmp_path) == expected


def test_existing_file_is_checked_and_used_without_network(
    tmp_path: Path, reference_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file already in the folder is used when its SHA-256 is the registry's, without any
    network (here a registry entry for the reference file: no sources to download from)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = reference_file.read_bytes()
    info = CheckpointInfo("test", "ref.pt", None, None, len(data), hashlib.sha256(data).hexdigest())
    path = tmp_path.resolve() / info.filename
    path.write_bytes(data)
    started = time.monotonic()
    assert fetch(info, tmp_path, progress=False) == path
    assert time.monotonic() - started < 2  # hashing 156 MB takes about 0.1 s here
    assert path.read_bytes() == data


def test_a_copy_preloaded_into_the_hub_cache_is_used_when_its_checksum_is_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Space's `preload_from_hub` puts the file in the Hugging Face cache at build time: it is
    found there without network, and only with the registry's SHA-256."""
    import huggingface_hub.constants

    data = b"weights" * 1000
    snapshot = tmp_path / "hub" / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "ref.pt").write_bytes(data)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    digest = hashlib.sha256(data).hexdigest()
    good = CheckpointInfo("test", "ref.pt", "facebook/sam2.1-hiera-tiny", None, len(data), digest)
    assert preloaded(good) == (snapshot / "ref.pt").resolve()
    assert preloaded(dataclasses.replace(good, sha256="ab" * 32)) is None  # and left alone
    assert preloaded(dataclasses.replace(good, filename="other.pt")) is None
    assert (snapshot / "ref.pt").read_bytes() == data


def test_existing_file_of_the_right_size_but_another_checksum_is_refused_and_kept(
    tmp_path: Path, reference_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same loadable file where the registry expects other bytes of that size (as
    fine-tuned weights saved under the official name would be): refused, named, and left in
    place, since it may be someone's only copy; no download is attempted."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = reference_file.read_bytes()
    info = CheckpointInfo("test", "ref.pt", None, None, len(data), "ab" * 32)
    path = tmp_path.resolve() / info.filename
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as error:
        fetch(info, tmp_path, progress=False)
    assert_plain_message(error, str(path), hashlib.sha256(data).hexdigest(), "ab" * 32, "left as it is")
    assert not isinstance(error.value, CheckpointUnavailable)
    assert path.read_bytes() == data and sorted(tmp_path.iterdir()) == [path]


def _assert_unavailable_message(error: pytest.ExceptionInfo, info: CheckpointInfo, path: Path) -> None:
    assert_plain_message(error, info.filename, str(path), *info.urls)
    if info.sha256:
        assert info.sha256 in str(error.value)


def test_offline_mode_fails_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as error:
        ensure_checkpoint("sam2.1_hiera_tiny", tmp_path, progress=False)
    assert time.monotonic() - started < 20
    _assert_unavailable_message(error, CHECKPOINTS[T21], checkpoint_path(T21, tmp_path))
    assert "offline mode" in str(error.value)
    assert not checkpoint_path(T21, tmp_path).exists()


def _internet_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_no_network_fails_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path on a machine without internet (CI here): no hang, a useful message."""
    if _internet_reachable():
        pytest.skip("this machine reaches huggingface.co: the test would download 156 MB")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as error:
        ensure_checkpoint(T21, tmp_path, progress=False)
    assert time.monotonic() - started < 20
    _assert_unavailable_message(error, CHECKPOINTS[T21], checkpoint_path(T21, tmp_path))


class _RangeServer(http.server.ThreadingHTTPServer):
    payload = b""
    ranges: list[str | None]


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's payload at any path, honouring `Range: bytes=N-`."""

    server: _RangeServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested else 0
        body = self.server.payload[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_RangeServer]:
    server = _RangeServer(("127.0.0.1", 0), _RangeHandler)
    server.ranges = []
    source = tmp_path_factory.mktemp("served") / "weights.pt"
    torch.save({"model": {"w": torch.arange(50_000.0)}}, source)
    server.payload = source.read_bytes()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _served_info(server: _RangeServer, sha256: str | None = None) -> CheckpointInfo:
    host, port = server.server_address[:2]
    return CheckpointInfo(
        variant="test",
        filename="served.pt",
        hf_repo=None,
        url=f"http://{host}:{port}/served.pt",
        size_bytes=len(server.payload),
        sha256=sha256 or hashlib.sha256(server.payload).hexdigest(),
    )


def test_url_download_resumes_a_partial_file_and_verifies_it(
    file_server: _RangeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = _served_info(file_server)
    part = tmp_path / "served.pt.part"
    part.write_bytes(file_server.payload[:1000])  # an interrupted earlier download
    path = fetch(info, tmp_path, progress=True)
    assert path == tmp_path.resolve() / "served.pt"
    assert path.read_bytes() == file_server.payload
    assert file_server.ranges == ["bytes=1000-"]
    assert not part.exists()
    assert "Downloading served.pt" in capsys.readouterr().err
    assert torch.equal(read_state_dict(path)["w"], torch.arange(50_000.0))


def test_url_download_with_wrong_checksum_is_deleted(file_server: _RangeServer, tmp_path: Path) -> None:
    info = _served_info(file_server, sha256="0" * 64)
    with pytest.raises(CheckpointError) as error:
        fetch(info, tmp_path, progress=False)
    assert_plain_message(error, "SHA-256", "0" * 64, "deleted")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    info = CheckpointInfo("test", "gone.pt", None, f"http://127.0.0.1:{port}/gone.pt", 10, None)
    started = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as error:
        fetch(info, tmp_path, progress=False)
    assert time.monotonic() - started < 20
    _assert_unavailable_message(error, info, tmp_path.resolve() / "gone.pt")
    assert "cannot connect to 127.0.0.1" in str(error.value)


def test_verify_file_removes_a_file_with_the_wrong_checksum(tmp_path: Path) -> None:
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(b"not the real weights")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = CheckpointInfo("test", path.name, None, None, path.stat().st_size, digest)
    verify_file(path, good)
    verify_file(path, CheckpointInfo("test", path.name, None, None, None, None))  # nothing known: accepted
    assert path.exists()
    with pytest.raises(CheckpointError) as error:
        verify_file(path, CHECKPOINTS[T21])
    assert_plain_message(error, str(path), "bytes instead of 156,008,466", "deleted")
    assert not path.exists()
    path.write_bytes(b"not the real weights")
    with pytest.raises(CheckpointError) as error:
        verify_file(path, CheckpointInfo("test", path.name, None, None, None, "ab" * 32))
    assert_plain_message(error, "SHA-256 checksum is", "ab" * 32)
    assert not path.exists()


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "checkpoints.download", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli_prints_the_path_or_the_instructions(tmp_path: Path) -> None:
    missing = _run_cli("sam2.1_hiera_tiny", "--dir", str(tmp_path), "--quiet")
    assert missing.returncode == 1
    assert str(checkpoint_path(T21, tmp_path)) in missing.stderr and "Traceback" not in missing.stderr
    assert "RuntimeWarning" not in missing.stderr  # the module is not imported twice
    with checkpoint_path(T21, tmp_path).open("wb") as file:  # the official size, but zeros
        file.truncate(CHECKPOINTS[T21].size_bytes)
    damaged = _run_cli("sam2.1_hiera_t", "--dir", str(tmp_path))
    assert damaged.returncode == 1 and damaged.stdout == ""
    assert str(checkpoint_path(T21, tmp_path)) in damaged.stderr and "SHA-256" in damaged.stderr
    assert checkpoint_path(T21, tmp_path).stat().st_size == CHECKPOINTS[T21].size_bytes  # left in place
    unknown = _run_cli("sam3_hiera_t")
    assert unknown.returncode == 1 and "Unknown SAM 2 variant" in unknown.stderr
