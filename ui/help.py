"""Help on demand: a section's help is one line on the page, its details in a closed "More help"
accordion under it (the page is a workspace, not a manual)."""

from __future__ import annotations

import gradio as gr


def help_line(line: str, details: str = "", elem_id: str | None = None) -> None:
    """``line`` (Markdown, one sentence) shown; ``details`` (Markdown) in a closed accordion."""
    gr.Markdown(line, elem_classes=["help-line"])
    if details:
        with gr.Accordion("More help", open=False, elem_id=elem_id, elem_classes=["more-help"]):
            gr.Markdown(details)
