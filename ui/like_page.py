""""Find more like this" in the "Find objects" accordion: the chosen object's box on the frame
shown is the example, and OWLv2's image-guided detection finds the others that look like it,
on that frame or on every k-th frame of the video while tracking (``annotation.concepts``
matches them to the objects there, as for "Find and track in the whole video").

Each box found becomes a new object with a box prompt and the example's label (one undo step);
a box on an object already there changes nothing. It needs the app started with an OWLv2
detector (``--detector google/owlv2-base-patch16-ensemble``); with another, the button says so.
``gradio_client`` gets ``/find_like``.

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` annotations, and
``gr.api`` the parameter types, at run time.)
"""

from collections.abc import Iterator

import gradio as gr
import numpy as np

from annotation import concepts, operations
from annotation.detect import LIKE_THRESHOLD, OWLV2_HINT, DetectorSlot
from annotation.document import UserError
from ui import views
from ui.callbacks import Controls, Handlers, api_number, api_whole, guarded, section_progress
from ui.help import help_line
from ui.sessions import WorkState

LIKE_LINE = "Find more like this: the objects that look like the chosen one (needs an OWLv2 detector)."
LIKE_HELP = f"""
**Find more like this** takes the chosen object's box on the frame shown (around its mask there)
as an example, and OWLv2 finds the objects that look like it. Each becomes a new object with
that box as its prompt and the example's label; one Undo takes them all back. With **every k-th
frame** above 0 it also looks on frames 0, k, 2k ... and tracks the whole video, a find on an
object already tracked there belonging to it. The likeness threshold is OWLv2's confidence that
a box shows the same kind of thing (0 to 1). It needs the app started with
`--detector {OWLV2_HINT}` (or another OWLv2).
"""


class LikePage:
    """The components (built inside the "Find objects" accordion by ``ui.layout``)."""

    def __init__(self, detector: DetectorSlot) -> None:
        self.detector = detector

    def build(self) -> None:
        help_line(LIKE_LINE, LIKE_HELP)
        with gr.Row(equal_height=True):
            self.every = gr.Number(0, precision=0, minimum=0, elem_id="like-every", scale=2, min_width=160,
                                   label="Also on every k-th frame, tracking the video (0 = this frame only)")
            self.threshold = gr.Slider(0, 1, value=LIKE_THRESHOLD, step=0.01, label="Likeness threshold",
                                       elem_id="like-threshold", scale=2, min_width=160)  # fmt: skip
        self.find = gr.Button("Find more like this", elem_id="like-find", variant="primary")
        self.progress = gr.Markdown("", elem_id="like-progress", latex_delimiters=[])

    def wire(self, controls: Controls, handlers: "LikeHandlers") -> None:
        c, h = controls, handlers
        self.find.click(h.on_find_like, [self.every, self.threshold, c.frame], [*c.view_outputs(), self.progress],
                        concurrency_limit=8, show_progress="hidden", api_visibility="private")  # fmt: skip
        gr.api(h.api_find_like, api_name="find_like", concurrency_limit=8)


class LikeHandlers:
    def __init__(self, base: Handlers, page: LikePage) -> None:
        self.base = base
        self.page = page

    def failed(self, handler: str, exc: Exception) -> object:
        return self.base.failed(handler, exc)

    def start(self, work: WorkState, frame: int, every: int, threshold: float) -> concepts.Concepts:
        """Start the run for the chosen object's box on ``frame`` (UserError before anything runs)."""
        video = operations.require_video(work)
        frame = operations.check_frame(work, frame)
        obj = work.active if work.active in work.doc.object_ids else None
        if obj is None:
            raise UserError("Choose the object to find more of (under 'Clicks go to'), then press the button again.")
        info = work.registry[obj]
        packed = work.doc.masks.get((frame, obj))
        if packed is None or not packed.area:
            raise UserError(f"'{info.name}' has no mask on frame {frame}: mark it there first (or go to a frame "
                            "where it has one), then press the button again.")
        ys, xs = np.nonzero(packed.unpack())
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        detector = self.page.detector.get()  # DetectorUnavailable (a UserError) says what to fetch
        detect = concepts.like_detections(detector, np.asarray(video.frames[frame]), box, info.label, threshold,
                                          example_frame=frame)  # fmt: skip
        frames = [frame] if every == 0 else sorted({*concepts.detection_frames(video.count, every), frame})
        return concepts.start_run(work, self.base.engine, detect, frames, f"'more like {info.name}'",
                                  track=every != 0, labels=[info.label])  # fmt: skip

    @guarded
    def on_find_like(self, every: float | None, threshold: float, frame: float, request: gr.Request) -> Iterator[dict]:
        page, c = self.page, self.base.c
        try:
            work = self.base.work(request)
            run = self.start(work, int(frame), api_whole(every or 0, "k"), api_number(threshold, "threshold"))
        except UserError as exc:
            yield self.base.warn(str(exc))
            return
        plan = f" {concepts.describe_plan(run.frames, work.video.count)}" if len(run.frames) > 1 else ""
        yield from section_progress(work, run.thread, c.status, page.progress, then=plan)
        progress = work.progress
        summary = views.markdown_text(progress.summary())
        if progress.error:
            yield {**self.base.refresh(work, int(frame), ""), **self.base.warn(progress.error), page.progress: summary}
        else:
            message = run.message or f"Cancelled: {progress.kept}."
            yield {**self.base.refresh(work, int(frame), message), page.progress: summary}

    @guarded
    def api_find_like(self, frame: int, obj_id: int, every: int = 0, threshold: float = LIKE_THRESHOLD,
                      request: gr.Request = None) -> dict:  # fmt: skip
        """Find the objects that look like object `obj_id` (its box on `frame`) on `frame`, or with
        `every` = k > 0 on every k-th frame too, tracking the video; waits (`/cancel` stops it).
        Each box found on no object there becomes a new object with that box as its prompt and
        the example's label (one undo step). Answers the new objects and each box found."""
        try:
            work = self.base.work(request)
            operations.require_video(work)
            operations.select_object(work, api_whole(obj_id, "obj_id"))
            run = self.start(work, api_whole(frame, "frame"), api_whole(every, "every"),
                             api_number(threshold, "threshold"))  # fmt: skip
        except UserError as exc:
            return {"message": f"Problem: {exc}", "objects": [], "found": []}
        run.thread.join()
        progress = work.progress
        found = [{"frame": f, "box": [round(v, 2) for v in d.box], "score": round(d.score, 4), "kind": m.kind,
                  "object": m.obj_id} for f, d, m in run.matches]  # fmt: skip
        return {"message": run.message or progress.error or progress.summary(), "frame": int(frame),
                "objects": sorted({m.obj_id for _, _, m in run.matches if m.kind == "new"}), "found": found,
                "cancelled": progress.cancelled, "error": progress.error}  # fmt: skip
