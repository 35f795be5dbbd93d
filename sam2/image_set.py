"""Image sets in, hardened: several image files, a zip of images or a folder of them become the
frames of one "video", ordered by name, each frame at its own size.

The sibling of :func:`sam2.video_io.decode` for still pictures, with the same promises: only
what it can read is accepted, a limit is named with the option that raises it
(:meth:`MediaLimits.how_to_raise`), and every problem is a :class:`MediaError` in plain words
raised before anything else changes (the caller's loaded work is untouched).

Decisions worth knowing:

* Order: by name, numbers by value ("img2.png" before "img10.png"); a zip's folders are part
  of the name ("left/001.jpg").
* Sizes: each image keeps its own size (scaled down only above ``max_side``, like a video), so
  frames may differ; the predictor resizes each to its square input and gives its masks back
  at the image's size.
* Count: one image is one frame, so ``max_frames`` bounds the images, checked from the file
  names before any image is decoded.
* Zips are read member by member into memory, never extracted, so a member named
  ``../../x.png`` writes nothing anywhere; names are cleaned to relative paths for the exports.
  The total uncompressed size is bounded before reading (:data:`MAX_SET_BYTES`), and each read
  stops at the size the zip declares.
* Junk that archivers add (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``._*``) is skipped and
  the skip is noted in :attr:`DecodedVideo.warnings`; any other non-image file is refused by name.
* Still images are decoded with Pillow (EXIF orientation applied; Pillow's decompression-bomb
  guard stays on). Animated formats (GIF) are videos, not set members.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from .video_io import DecodedVideo, MediaError, MediaLimits, VideoInfo, fit_size

__all__ = ["IMAGE_SUFFIXES", "IMAGE_SET_FPS", "is_image_name", "is_zip_name", "read_image_set"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
IMAGE_SET_FPS = 1.0  # an image set has no frame rate; exported videos show one image a second
MAX_IMAGE_BYTES = 256 * 2**20  # one image file (compressed, as stored)
MAX_SET_BYTES = 4 * 2**30  # all images of a set; a zip's members counted uncompressed
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_SHOWN = 5  # bad names listed in a message
_DEFAULT_LIMITS = MediaLimits()


@dataclass(frozen=True)
class _Member:
    """One picture of a set, not read yet: its name in the set and how to get its bytes."""

    name: str  # a clean relative path: "a.jpg", or "left/001.jpg" inside a zip
    size: int  # bytes, as declared (a zip member's uncompressed size)
    read: Callable[[], bytes]


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def is_zip_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ".zip"


def read_image_set(paths: Sequence[str | Path], limits: MediaLimits = _DEFAULT_LIMITS) -> DecodedVideo:
    """Image files, zips of images and folders of images -> one set of frames in name order.

    Returns a DecodedVideo whose frames are HxWx3 uint8 (each image's own size, long side <=
    ``limits.max_side``), ``frame_names`` the images' names in frame order, ``fps`` =
    :data:`IMAGE_SET_FPS`, no sound. Raises MediaError naming the file and what to do.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise MediaError("No images were given.")
    notes: list[str] = []
    with contextlib.ExitStack() as open_zips:  # closed again whatever happens
        members = [m for path in paths for m in _members_of(path, notes, open_zips)]
        if not members:
            raise MediaError(f"There are no images ({_suffix_list()}) in {_names(paths)}.")
        _check_members(members, limits)
        members.sort(key=lambda m: _natural_key(m.name))
        decoded = [_decode_member(m, limits.max_side, notes) for m in members]
    frames = [frame for frame, _ in decoded]
    decoded_video = _as_decoded(paths[0], frames, [m.name for m in members], notes)
    decoded_video.source_sizes = [source for _, source in decoded]
    return decoded_video


# ----------------------------------------------------------------------------- gathering


def _members_of(path: Path, notes: list[str], open_zips: contextlib.ExitStack) -> list[_Member]:
    """The images one given path stands for (itself, a zip's members, a folder's images)."""
    if not path.exists():
        raise MediaError(f"The file '{path.name}' does not exist (was the upload interrupted?).")
    if path.is_dir():
        return _folder_members(path, notes)
    if is_zip_name(path.name):  # by name only: .docx, .apk... are zips too, and not image sets
        return _zip_members(path, notes, open_zips)
    if not is_image_name(path.name):
        raise MediaError(
            f"'{path.name}' is not an image ({_suffix_list()}). Upload one video on its own, or images "
            "(several image files or a zip of them), not both."
        )
    return [_Member(path.name, path.stat().st_size, path.read_bytes)]


def _folder_members(folder: Path, notes: list[str]) -> list[_Member]:
    """A folder's images (not its subfolders'); other files are refused like a zip's."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    junk = [p.name for p in files if _is_junk(p.name)]
    files = [p for p in files if not _is_junk(p.name)]
    _refuse_non_images(folder.name, [p.name for p in files])
    _note_junk(folder.name, junk, notes)
    return [_Member(p.name, p.stat().st_size, p.read_bytes) for p in files]


def _zip_members(path: Path, notes: list[str], open_zips: contextlib.ExitStack) -> list[_Member]:
    try:
        archive = open_zips.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise MediaError(f"'{path.name}' is not a readable zip file ({exc}). Upload the complete zip.") from None
    infos = [info for info in archive.infolist() if not info.is_dir()]
    junk = [info.filename for info in infos if _is_junk(info.filename)]
    infos = [info for info in infos if not _is_junk(info.filename)]
    _refuse_non_images(path.name, [info.filename for info in infos])
    _note_junk(path.name, junk, notes)
    return [_Member(_clean_name(i.filename), i.file_size, _zip_reader(archive, i, path.name)) for i in infos]


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, zip_name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with archive.open(info) as member:
                data = member.read(info.file_size + 1)  # never more than declared (+1 to notice a lie)
        except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
            # RuntimeError: encrypted; NotImplementedError: a compression zipfile lacks
            raise MediaError(f"'{info.filename}' in '{zip_name}' could not be read ({exc}).") from None
        if len(data) != info.file_size:
            raise MediaError(f"'{info.filename}' in '{zip_name}' is damaged (not the size the zip declares).")
        return data

    return read


def _is_junk(name: str) -> bool:
    """Files archivers and file browsers add: macOS resource forks and folder settings."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    base = parts[-1] if parts else ""
    return "__MACOSX" in parts or base.lower() in _JUNK_NAMES or base.startswith("._")


def _refuse_non_images(where: str, names: list[str]) -> None:
    bad = [name for name in names if not is_image_name(name)]
    if bad:
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        shown = ", ".join(f"'{name}'" for name in bad[:_SHOWN]) + more
        raise MediaError(
            f"'{where}' holds {len(bad)} file(s) that are not images: {shown}. Frames of an image set "
            f"must be images ({_suffix_list()}); remove the others and upload it again."
        )


def _note_junk(where: str, junk: list[str], notes: list[str]) -> None:
    if junk:
        notes.append(f"Skipped {len(junk)} system file(s) in '{where}' (such as __MACOSX/ or .DS_Store).")


def _clean_name(name: str) -> str:
    """A zip member's name as a relative path: no drive, root, '.' or '..' parts, '/' between
    folders (exports write files under this name, so it must not climb out of their folder)."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    parts = [p for p in parts if not re.fullmatch(r"[A-Za-z]:", p)]
    return "/".join(parts) or "image"


def _check_members(members: list[_Member], limits: MediaLimits) -> None:
    """Count, repeated names and bytes, from the names and declared sizes alone."""
    if len(members) > limits.max_frames:
        raise MediaError(
            f"This upload holds {len(members)} images; the limit is {limits.max_frames} frames (one image is "
            f"one frame). Upload fewer images, or {limits.how_to_raise('max_frames', len(members))}."
        )
    seen: set[str] = set()
    for member in members:
        if member.name in seen:
            raise MediaError(f"Two images are named '{member.name}'. Rename one: exports name masks after the images.")
        seen.add(member.name)
        if member.size > MAX_IMAGE_BYTES:
            raise MediaError(f"'{member.name}' is {member.size / 2**20:.0f} MB; an image may be at most "
                             f"{MAX_IMAGE_BYTES // 2**20} MB.")  # fmt: skip
    total = sum(m.size for m in members)
    if total > MAX_SET_BYTES:
        raise MediaError(f"These images hold {total / 2**30:.1f} GB; an image set may hold at most "
                         f"{MAX_SET_BYTES // 2**30} GB. Upload fewer or smaller images.")  # fmt: skip


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """"img2.png" before "img10.png": runs of digits compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", name) if part]


# ----------------------------------------------------------------------------- decoding


def _decode_member(member: _Member, max_side: int, notes: list[str]) -> tuple[np.ndarray, tuple[int, int]]:
    """One image -> (HxWx3 uint8, upright by its EXIF orientation, long side <= max_side;
    its upright (H, W) before scaling)."""
    data = member.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise MediaError(f"'{member.name}' is animated; upload it on its own, as a video.")
            turned = int(image.getexif().get(0x0112, 1)) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
            original = image.size[::-1] if turned else image.size  # (W, H) upright, before draft shrinks it
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when it is large
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MediaError(f"'{member.name}' is not a readable image ({exc}).") from None
    size = fit_size(original[0], original[1], max_side)
    if upright.size != size:
        upright = upright.resize(size, Image.Resampling.LANCZOS)
    if size != original:
        notes.append(f"'{member.name}' ({original[0]}x{original[1]}) was scaled down to {size[0]}x{size[1]}.")
    return np.array(upright, dtype=np.uint8), (original[1], original[0])


def _as_decoded(first: Path, frames: list[np.ndarray], names: list[str], notes: list[str]) -> DecodedVideo:
    height, width = frames[0].shape[:2]
    info = VideoInfo(
        path=first, width=int(width), height=int(height), fps=IMAGE_SET_FPS, duration=None,
        frame_count=len(frames), rotation=0, has_audio=False, codec="images", is_image=True,
    )  # fmt: skip
    timestamps = [i / IMAGE_SET_FPS for i in range(len(frames))]
    return DecodedVideo(frames, IMAGE_SET_FPS, info, None, timestamps, notes, frame_names=names)


def _suffix_list() -> str:
    return ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))


def _names(paths: list[Path]) -> str:
    return ", ".join(f"'{p.name}'" for p in paths[:_SHOWN]) + (" ..." if len(paths) > _SHOWN else "")
