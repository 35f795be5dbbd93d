"""Read official SAM 2 checkpoint files, recognise their variant, and load them strictly.

Every failure is a `CheckpointError` whose message names the file, says what is wrong in plain
words and what to do about it: the person who reads it is usually running the app, not
debugging it, and a raw torch traceback ("failed finding central directory") helps nobody.

Loading is strict (official key names are our parameter names), so a checkpoint of another
variant is refused with a key/shape report rather than half-loaded.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sam2.config import VARIANTS, long_name, resolve_variant

__all__ = [
    "CheckpointError",
    "describe_key_mismatch",
    "detect_variant",
    "load_weights",
    "read_state_dict",
]

Shape = tuple[int, ...]
# What the shape-based helpers accept: a state dict, or a dict of shapes.
ShapesLike = Mapping[str, "torch.Tensor | torch.Size | Shape"]

_PATCH_EMBED_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_SAM21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
_TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
# torch's weights_only refusal names the class it would have had to import and run.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([A-Za-z_][\w.]*\.[A-Za-z_]\w*) ")
_ZIP_MAGIC = b"PK\x03\x04"
_LIST_LIMIT = 10


class CheckpointError(Exception):
    """A checkpoint cannot be used. The message is written for the person running the app."""


# ----------------------------------------------------------------------------- reading files


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The weights of an official checkpoint (`{"model": state_dict}`) or of a bare state dict.

    Loads with `weights_only=True`, so a file cannot run code on this machine, and memory-maps
    the (zip-format) file so that a large checkpoint is not read twice into memory.
    """
    path = Path(path)
    _check_file(path)
    return _extract_state_dict(_torch_load(path), path)


def _check_file(path: Path) -> None:
    """Catch the common non-checkpoint cases before torch sees them, with a precise message."""
    if not path.exists():
        raise CheckpointError(
            f"The checkpoint file {path} does not exist. Check the path, or download the "
            f"checkpoint first (for example: python -m checkpoints.download sam2.1_hiera_tiny)."
        )
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pt"))
        inside = f" It contains: {', '.join(found)}." if found else " It contains no .pt file."
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file. Give the path of the .pt file itself.{inside}"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(64)
    except OSError as error:
        raise CheckpointError(f"The checkpoint file {path} cannot be read: {error.strerror}.") from None
    if size == 0:
        raise CheckpointError(f"The checkpoint file {path} is empty (0 bytes). {_fix_hint(path)}")
    problem = _sniff(head, path)
    if problem:
        raise CheckpointError(f"The checkpoint file {path} {problem} {_fix_hint(path)}")


def _sniff(head: bytes, path: Path) -> str | None:
    """Recognise files that are clearly not a (complete) checkpoint from their first bytes."""
    if head.startswith(b"version https://git-lfs"):
        return "is a Git LFS pointer (a small text placeholder), not the checkpoint itself."
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        return "is a web page, not a checkpoint: the download probably saved an error page."
    if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
        return "is incomplete: it stops before the end of the data (an interrupted download?)."
    return None


def _fix_hint(path: Path) -> str:
    """What to do about a bad file: re-download it, with the exact command when we can tell."""
    try:
        name = long_name(path.stem)
    except ValueError:
        return "Delete it and download the checkpoint again."
    return f"Delete it and download it again, for example: python -m checkpoints.download {name}"


def _torch_load(path: Path) -> Any:
    """torch.load, with its exceptions turned into messages that say what is wrong."""
    try:
        # mmap needs the zip format that torch.save has written since PyTorch 1.6; every
        # official SAM 2 file has it, older-format files are still read, just without mmap.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise CheckpointError(_unpickling_message(path, error)) from None
    except EOFError:
        raise CheckpointError(
            f"The checkpoint file {path} is incomplete: it ends too early. {_fix_hint(path)}"
        ) from None
    except OSError as error:
        raise CheckpointError(f"The checkpoint file {path} cannot be read: {error}.") from None
    except Exception as error:  # torch raises RuntimeError/ValueError/... for damaged files
        raise CheckpointError(
            f"The checkpoint file {path} is damaged or is not a PyTorch checkpoint "
            f"({_first_line(error)}). {_fix_hint(path)}"
        ) from None


def _unpickling_message(path: Path, error: pickle.UnpicklingError) -> str:
    """Tell a refused (code-running) pickle apart from bytes that are no pickle at all."""
    unsafe = _UNSAFE_GLOBAL.search(str(error))
    if unsafe:
        return (
            f"The file {path} was refused because loading it would run program code: it "
            f"contains an object of type {unsafe.group(1)}, which PyTorch's safe loading "
            f"(weights_only) does not allow. Real SAM 2 checkpoints "
            f"contain only weights. Use an official checkpoint file instead; this app does not "
            f"load files that could run code."
        )
    detail = _first_line(error.__context__ or error)
    return f"The file {path} is not a PyTorch checkpoint, or it is damaged ({detail}). {_fix_hint(path)}"


def _first_line(error: BaseException) -> str:
    """A short technical detail for the end of a message (torch's messages run to pages)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _extract_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    """The `model` entry of an official checkpoint; a bare {name: tensor} dict is accepted too."""
    if isinstance(loaded, Mapping) and "model" in loaded:
        state = loaded["model"]
    elif _is_tensor_dict(loaded):
        state = loaded
    else:
        raise CheckpointError(
            f"The file {path} is a PyTorch file but not a SAM 2 checkpoint: {_describe(loaded)}. "
            f"An official checkpoint holds a dictionary whose 'model' entry has the weights."
        )
    if not _is_tensor_dict(state):
        raise CheckpointError(
            f"The 'model' entry of {path} is not a set of weights: {_describe_non_tensors(state)}. "
            f"Use an official SAM 2 checkpoint file."
        )
    return dict(state)


def _is_tensor_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "it holds an empty dictionary"
        return f"it holds a dictionary with the entries {_preview([repr(k) for k in value])}"
    if isinstance(value, (list, tuple)):
        return f"it holds a {type(value).__name__} of {len(value)} items"
    return f"it holds a {type(value).__name__}"


def _describe_non_tensors(state: Any) -> str:
    if not isinstance(state, Mapping):
        return _describe(state)
    if not state:
        return "it is empty"
    bad = [f"{k!r} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    return f"{len(bad)} of its {len(state)} entries are not tensors: {_preview(bad)}"


def _preview(items: list[str], limit: int = _LIST_LIMIT) -> str:
    """'a, b, c' or 'a, b, ... and 12 more': long key lists stay readable."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... and {len(items) - limit} more"


# ----------------------------------------------------------------------------- variants


def _shapes(state: ShapesLike) -> dict[str, Shape]:
    """{key: shape} from a state dict or a dict of shapes (both are accepted everywhere)."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}


def detect_variant(state_dict: ShapesLike) -> str:
    """The canonical variant name (a key of `sam2.config.VARIANTS`) of a checkpoint.

    Uses only keys and shapes: SAM 2.1 added `no_obj_embed_spatial` and `obj_ptr_tpos_proj`;
    the size follows from the trunk's width (patch embedding) and its number of blocks.
    """
    shapes = _shapes(state_dict)
    family = _detect_family(shapes)
    width = shapes[_PATCH_EMBED_KEY][0] if _PATCH_EMBED_KEY in shapes else None
    blocks = _count_trunk_blocks(shapes)
    for name, config in VARIANTS.items():
        if (config.family, config.trunk.embed_dim, sum(config.trunk.stages)) == (family, width, blocks):
            return name
    raise CheckpointError(_not_sam2_message(shapes, family, width, blocks))


def _detect_family(shapes: Mapping[str, Shape]) -> str | None:
    present = [key in shapes for key in _SAM21_KEYS]
    if all(present):
        return "sam2.1"
    return "sam2" if not any(present) else None


def _count_trunk_blocks(shapes: Mapping[str, Shape]) -> int:
    return len({m.group(1) for key in shapes if (m := _TRUNK_BLOCK.match(key))})


def _not_sam2_message(shapes: Mapping[str, Shape], family: str | None, width: int | None, blocks: int) -> str:
    found = [f"{len(shapes)} tensors", f"{blocks} image-encoder blocks"]
    found.append(f"patch-embedding width {width}" if width else f"no '{_PATCH_EMBED_KEY}'")
    if family is None:
        have = [k for k in _SAM21_KEYS if k in shapes]
        found.append(f"only part of the SAM 2.1 keys ({', '.join(have)})")
    known = "; ".join(
        f"{name}: width {c.trunk.embed_dim}, {sum(c.trunk.stages)} blocks"
        for name, c in VARIANTS.items()
        if c.family == "sam2"
    )
    return (
        f"These weights do not look like a SAM 2 checkpoint. Found: {', '.join(found)}; "
        f"first keys: {_preview(list(shapes), 5)}. Known layouts: {known} (SAM 2.1 adds "
        f"{' and '.join(_SAM21_KEYS)}). Use an official SAM 2 or SAM 2.1 checkpoint file."
    )


# ----------------------------------------------------------------------------- loading


def describe_key_mismatch(expected: ShapesLike, got: ShapesLike) -> str:
    """A readable report of how a checkpoint (`got`) differs from a model (`expected`).

    Lists missing keys, unexpected keys and shape differences (the first few of each, with
    counts), and names the variant each side looks like when that can be recognised.
    """
    expected, got = _shapes(expected), _shapes(got)
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    reshaped = [
        f"{k}: model {expected[k]}, checkpoint {got[k]}" for k in expected if k in got and expected[k] != got[k]
    ]
    lines = []
    if missing:
        lines.append(f"{len(missing)} of the model's {len(expected)} keys are missing from the checkpoint:")
        lines.extend(_bullets(missing))
    if unexpected:
        lines.append(f"{len(unexpected)} keys of the checkpoint are not in the model:")
        lines.extend(_bullets(unexpected))
    if reshaped:
        lines.append(f"{len(reshaped)} keys have a different shape:")
        lines.extend(_bullets(reshaped))
    if not lines:
        return "The checkpoint's keys and shapes match the model."
    lines.extend(_variant_lines(expected, got))
    return "\n".join(lines)


def _bullets(items: list[str]) -> list[str]:
    shown = [f"  - {item}" for item in items[:_LIST_LIMIT]]
    if len(items) > _LIST_LIMIT:
        shown.append(f"  ... and {len(items) - _LIST_LIMIT} more")
    return shown


def _variant_lines(expected: Mapping[str, Shape], got: Mapping[str, Shape]) -> list[str]:
    model, checkpoint = _try_detect(expected), _try_detect(got)
    if checkpoint and model and checkpoint != model:
        return [f"The checkpoint is a {checkpoint} checkpoint; the model is {model}."]
    if checkpoint:
        return [f"The checkpoint looks like {checkpoint}."]
    return []


def _try_detect(shapes: Mapping[str, Shape]) -> str | None:
    try:
        return detect_variant(shapes)
    except CheckpointError:
        return None


def load_weights(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    variant: str,
    source: str | os.PathLike[str] | None = None,
) -> None:
    """Copy `state_dict` into `model` after checking that every key and shape matches.

    `variant` is the variant the model was built as; `source` (the file, if any) is named in
    the error. Comparing first lets the error say "this is a sam2_hiera_l checkpoint" instead
    of torch's list of 900 size mismatches.
    """
    expected, got = _shapes(model.state_dict()), _shapes(state_dict)
    if expected != got:
        raise CheckpointError(_mismatch_headline(variant, got, source) + "\n" + describe_key_mismatch(expected, got))
    model.load_state_dict(state_dict, strict=True)


def _mismatch_headline(variant: str, got: Mapping[str, Shape], source: str | os.PathLike[str] | None) -> str:
    what = f"The checkpoint {source}" if source else "The checkpoint"
    try:
        wanted = resolve_variant(variant)
    except ValueError:
        wanted = variant
    found = _try_detect(got)
    if found and found != wanted:
        return (
            f"{what} is a {found} checkpoint, but you asked for {wanted}. Choose {found} as the "
            f"model, or use the {_file_name(wanted)} checkpoint."
        )
    return f"{what} does not fit the {wanted} model."


def _file_name(variant: str) -> str:
    try:
        return long_name(variant) + ".pt"
    except ValueError:
        return variant
