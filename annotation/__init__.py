"""The annotation core: everything between a person's intent and the SAM 2 predictor that
needs no web framework, shared by the page (``ui/``) and the command line (``python -m
annotation``).

- :mod:`annotation.work`, :mod:`annotation.document`: one video's work, its objects, prompts,
  masks and undo history;
- :mod:`annotation.operations`: load, click, undo/redo, objects, tracking, exports, session files;
- :mod:`annotation.engine`: the one place that calls the predictor;
- :mod:`annotation.render`, :mod:`annotation.views`: drawing masks, clicks and the timeline;
- :mod:`annotation.formats`: COCO, YOLO, PNG, videos and session files, written and read;
- :mod:`annotation.cli`: the command line; :mod:`annotation.ray_batch`: its videos on a Ray cluster
  (``run_batch``, ``--ray``; Ray is optional and imported only there);
- :mod:`annotation.auto`: :func:`auto_annotate`, a detector's boxes as SAM 2 prompts, written as
  YOLO labels (``from annotation import auto_annotate``).

Videos are read by the project's one hardened decoder, :mod:`sam2.video_io`. Arrows point one
way: ``ui`` -> ``annotation`` -> ``sam2``. Nothing here imports Gradio or Starlette
(``tests/test_imports.py`` checks it).
"""

from typing import Any

# Looked up on first use, so that ``import annotation`` loads neither torch nor the detector.
_EXPORTS = {"auto_annotate": "auto", "AutoAnnotation": "auto", "AutoAnnotateError": "auto", "run_batch": "cli"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'annotation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
