"""The annotation core: everything between a person's intent and the SAM 2 predictor that
needs no web framework, shared by the page (``ui/``) and the command line (``python -m
annotation``).

- :mod:`annotation.work`, :mod:`annotation.document`: one video's work, its objects, prompts,
  masks and undo history;
- :mod:`annotation.operations`: load, click, undo/redo, objects, tracking, exports, session files;
- :mod:`annotation.engine`: the one place that calls the predictor;
- :mod:`annotation.render`, :mod:`annotation.views`: drawing masks, clicks and the timeline;
- :mod:`annotation.formats`: COCO, YOLO, PNG, videos and session files, written and read;
- :mod:`annotation.cli`: the command line.

Videos are read by the project's one hardened decoder, :mod:`sam2.video_io`. Arrows point one
way: ``ui`` -> ``annotation`` -> ``sam2``. Nothing here imports Gradio or Starlette
(``tests/test_imports.py`` checks it).
"""
