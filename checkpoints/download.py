"""Find an official SAM 2 checkpoint on disk, or download and verify it.

Order of sources: a file already in the checkpoints folder; Hugging Face through
`huggingface_hub.hf_hub_download` (its own progress bars, resume and metadata); Meta's direct
URL through urllib (resumable `.part` file, one progress line on stderr). Every file is
checked against the registry's size and SHA-256 before it is used, the one already in the
folder included: a download that failed its check is deleted, a file that was already there
is refused but left in place (see `_check_existing`).

A machine without internet fails within seconds (huggingface_hub alone retries for ~25 s),
with a `CheckpointUnavailable` message that says which file to fetch, from which addresses,
and the full path to copy it to: on such a machine a person has to bring the file by hand.

Command line: `python -m checkpoints.download sam2.1_hiera_tiny [--dir DIR] [--quiet]`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from checkpoints import DEFAULT_DIRECTORY
from checkpoints.registry import CheckpointInfo, checkpoint_info
from sam2.checkpoint import CheckpointError

__all__ = [
    "CheckpointUnavailable",
    "DEFAULT_DIRECTORY",
    "checkpoint_path",
    "ensure_checkpoint",
    "fetch",
    "sha256_of",
    "verify_file",
]

CONNECT_TIMEOUT_S = 5.0  # how long to wait for a server to answer at all
READ_TIMEOUT_S = 30.0  # how long a started download may stall before it counts as failed
_CHUNK_BYTES = 1 << 20
_TRUE_VALUES = {"1", "on", "yes", "true"}

Downloader = Callable[[CheckpointInfo, Path, bool], Path]


class CheckpointUnavailable(CheckpointError):
    """The checkpoint is not on disk and could not be downloaded (offline, blocked, server error)."""


def checkpoint_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Where the checkpoint file of `variant` is expected (whether or not it is there)."""
    return Path(directory).resolve() / checkpoint_info(variant).filename


def ensure_checkpoint(
    variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY, progress: bool = True
) -> Path:
    """The local checkpoint file of `variant`, downloaded and verified first if it is missing.
    A copy that a Hugging Face Space preloaded at build time (`preload_from_hub` in the
    README's front matter) is used where it is, when the folder holds none."""
    info = checkpoint_info(variant)
    if not _is_complete(Path(directory).resolve() / info.filename, info):
        cached = preloaded(info)
        if cached is not None:
            return cached
    return fetch(info, directory, progress)


def preloaded(info: CheckpointInfo) -> Path | None:
    """The file in the Hugging Face cache (no network: where `preload_from_hub` puts it), if
    it is there with the registry's SHA-256; None otherwise (a wrong one is left alone: the
    cache is not ours)."""
    if info.hf_repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(info.hf_repo, info.filename)
    if not isinstance(found, str):
        return None
    path = Path(found).resolve()
    if info.size_bytes is not None and path.stat().st_size != info.size_bytes:
        return None
    if info.sha256 is not None and sha256_of(path) != info.sha256.lower():
        return None
    return path


def fetch(info: CheckpointInfo, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY, progress: bool = True) -> Path:
    """`ensure_checkpoint` for any registry entry (tests use entries of their own)."""
    path = Path(directory).resolve() / info.filename
    if _is_complete(path, info):
        _check_existing(path, info)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    failures = [f"the file at {path} is incomplete ({path.stat().st_size:,} bytes)"] if path.is_file() else []
    for label, download in _sources(info):
        try:
            downloaded = download(info, path, progress)
        except Exception as error:  # any failure of one source: note it, try the next one
            failures.append(f"{label}: {_reason(error)}")
            continue
        verify_file(downloaded, info)
        if downloaded != path:
            os.replace(downloaded, path)
        return path
    raise CheckpointUnavailable(_unavailable_message(info, path, failures))


def verify_file(path: str | os.PathLike[str], info: CheckpointInfo) -> None:
    """Check size and SHA-256 (where the registry knows them); delete the file if they differ.

    Deleting it matters: a damaged file left in place would be found again on the next start.
    """
    path = Path(path)
    size = path.stat().st_size
    if info.size_bytes is not None and size != info.size_bytes:
        _reject(path, info, f"it has {size:,} bytes instead of {info.size_bytes:,}")
    if info.sha256 is not None:
        digest = sha256_of(path)
        if digest != info.sha256.lower():
            _reject(path, info, f"its SHA-256 checksum is {digest}, expected {info.sha256}")


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (checkpoints are up to 900 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _reject(path: Path, info: CheckpointInfo, problem: str) -> NoReturn:
    path.unlink(missing_ok=True)
    raise CheckpointError(
        f"The checkpoint file {path} is not a good copy of {info.filename}: {problem}. "
        f"It was damaged or changed, and has been deleted; download it again."
    )


def _is_complete(path: Path, info: CheckpointInfo) -> bool:
    """A file of the official size (one of another size is an unfinished download)."""
    return path.is_file() and (info.size_bytes is None or path.stat().st_size == info.size_bytes)


def _check_existing(path: Path, info: CheckpointInfo) -> None:
    """Refuse a file of the official size whose SHA-256 differs, without deleting it.

    The size alone does not tell a good copy: a damaged file keeps its size, and weights saved
    with the same keys and shapes (fine-tuned ones, say) have exactly the official size. Such
    a file may be someone's only copy, so unlike a failed download it stays where it is.
    Hashing is cheap next to loading the model, which reads the whole file anyway (about 0.1 s
    per 150 MB on this project's CPU, measured), so the result is not cached.
    """
    if info.sha256 is None:
        return
    digest = sha256_of(path)
    if digest != info.sha256.lower():
        raise CheckpointError(
            f"The checkpoint file {path} is not the official {info.filename}: its SHA-256 checksum is "
            f"{digest}, expected {info.sha256}. It is damaged or it is another file, and it was left as "
            f"it is. Delete it to have the official file downloaded again; if these are weights of your "
            f"own, move them elsewhere and give their path (python app.py --checkpoint PATH)."
        )


def _sources(info: CheckpointInfo) -> Iterator[tuple[str, Downloader]]:
    if info.hf_repo:
        yield f"Hugging Face ({info.hf_repo})", _download_from_hub
    if info.url:
        yield info.url, _download_from_url


# ----------------------------------------------------------------------------- sources


def _download_from_hub(info: CheckpointInfo, path: Path, progress: bool) -> Path:
    """hf_hub_download into the checkpoints folder (its partial files go to .cache/ there)."""
    offline = _offline_mode()
    if not offline:
        _require_connection(hf_constants.ENDPOINT)
    try:
        with _hub_progress_bars(progress):
            local = hf_hub_download(
                info.hf_repo,
                info.filename,
                local_dir=path.parent,
                etag_timeout=CONNECT_TIMEOUT_S,
                local_files_only=offline,
            )
    except Exception:
        if offline:
            raise ConnectionError("offline mode is on (HF_HUB_OFFLINE) and no copy is cached") from None
        raise
    return Path(local).resolve()


def _download_from_url(info: CheckpointInfo, path: Path, progress: bool) -> Path:
    """Stream `info.url` into `<file>.part`, resuming a previous partial download."""
    part = path.with_name(path.name + ".part")
    offset = _resumable_bytes(part, info.size_bytes)
    if info.size_bytes is not None and offset == info.size_bytes:
        return part  # finished earlier but never verified: checked now, no network needed
    if _offline_mode():
        raise ConnectionError("skipped: offline mode is on (HF_HUB_OFFLINE)")
    assert info.url is not None
    _require_connection(info.url)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with urllib.request.urlopen(urllib.request.Request(info.url, headers=headers), timeout=READ_TIMEOUT_S) as response:
        if offset and response.status != 206:  # the server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else info.size_bytes
        with part.open("ab" if offset else "wb") as out:
            _copy(response, out, offset, total, info.filename if progress else None)
    return part


def _resumable_bytes(part: Path, expected: int | None) -> int:
    size = part.stat().st_size if part.is_file() else 0
    if expected is not None and size > expected:
        part.unlink()
        return 0
    return size


def _copy(response: BinaryIO, out: BinaryIO, done: int, total: int | None, label: str | None) -> None:
    """Copy in 1 MiB chunks, redrawing one progress line at most 4 times a second."""
    last = 0.0
    while chunk := response.read(_CHUNK_BYTES):
        out.write(chunk)
        done += len(chunk)
        if label and time.monotonic() - last > 0.25:
            last = time.monotonic()
            _print_progress(label, done, total)
    if label:
        _print_progress(label, done, total)
        sys.stderr.write("\n")


def _print_progress(label: str, done: int, total: int | None) -> None:
    of = f" / {total / 1e6:.1f} MB ({100 * done // total}%)" if total else " MB"
    sys.stderr.write(f"\rDownloading {label}: {done / 1e6:.1f}{of}")
    sys.stderr.flush()


# ----------------------------------------------------------------------------- network helpers


def _offline_mode() -> bool:
    """huggingface_hub's offline switch (HF_HUB_OFFLINE), read from the environment now.

    huggingface_hub reads it once, at import; reading it per call lets a running app (and a
    test) switch it. hf_hub_download is then called with local_files_only=True.
    """
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE_VALUES


def _require_connection(url: str) -> None:
    """Fail within CONNECT_TIMEOUT_S when the server cannot be reached at all.

    huggingface_hub retries a failed connection five times with back-off (about 25 s), which
    is long for an app that just needs to say "you are offline". Behind a proxy a direct
    connection says nothing, so the check is skipped there.
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.getproxies().get(parts.scheme):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(f"cannot connect to {parts.hostname}: {_reason(error)}") from None


@contextlib.contextmanager
def _hub_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence huggingface_hub's progress bars for one call when progress=False."""
    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _reason(error: BaseException) -> str:
    """One short line on why a source failed (some library messages are paragraphs)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, socket.gaierror):
        return "its name could not be looked up; is this computer offline?"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "no answer in time; is this computer offline?"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _unavailable_message(info: CheckpointInfo, path: Path, failures: list[str]) -> str:
    tried = "\n".join(f"  - {failure}" for failure in failures) or "  - no download source is known"
    sources = "\n".join(f"  {url}" for url in info.urls) or "  (no known address)"
    facts = []
    if info.size_bytes is not None:
        facts.append(f"{info.size_bytes:,} bytes")
    if info.sha256 is not None:
        facts.append(f"SHA-256 {info.sha256}")
    expected = f"\nThe file should have {', '.join(facts)}." if facts else ""
    return (
        f"The SAM 2 checkpoint {info.filename} (model {info.variant}) is not on this computer "
        f"and could not be downloaded:\n{tried}\n"
        f"To fix this, download {info.filename} on a computer with internet access from:\n{sources}\n"
        f"and copy it to:\n  {path}{expected}\nThen start again."
    )


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints.download",
        description="Download (if needed) and verify an official SAM 2 / SAM 2.1 checkpoint; print its path.",
    )
    parser.add_argument("variant", help="e.g. sam2.1_hiera_tiny, sam2.1_hiera_t, sam2_hiera_large")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY, help="folder for the .pt files")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        path = ensure_checkpoint(args.variant, args.dir, progress=not args.quiet)
    except (CheckpointError, ValueError) as error:
        print(error, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
