"""The page's "Find by text": type what to find ("person, red car"); the text detector's boxes on
the frame shown are drawn with their phrase and score, chosen by clicks and kept as new objects
(each with its box as the prompt and its phrase as the label); or "Find and track in the whole
video" detects every k frames while tracking runs, matching each box to the objects tracked.

:class:`TextPage` makes the components (``ui.layout`` puts them in the "Find by text"
accordion); :class:`TextHandlers` answers their events on the plumbing of
:class:`ui.callbacks.Handlers`. The work is in ``annotation.text_finding`` (one frame) and
``annotation.concepts`` (the whole video). Each runs on the session's background thread like
tracking: the handler streams the progress and Cancel stops it. The detector is the app's one
:class:`~annotation.detect.DetectorSlot`, loaded on the first find; when it cannot be loaded
the message says what to fetch and the rest of the page works on. ``gradio_client`` gets named
endpoints that take plain values and answer a dict (see :meth:`TextPage.wire`).

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` /
``gr.SelectData`` annotations, and ``gr.api`` the parameter types, at run time.)
"""

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from annotation import concepts, operations, text_finding
from annotation.detect import DetectorSlot
from annotation.document import UserError
from ui import views
from ui.callbacks import POLL_S, Controls, Handlers, api_whole, guarded, locked, running_status, section_progress
from ui.help import help_line
from ui.sessions import WorkState

TEXT_LINE = ("Type what to look for, such as *person, red car*: the detector draws a box around each one it finds "
             "on the frame shown, and you keep the ones you want as objects.")  # fmt: skip

TEXT_HELP = """
**Find on this frame**: type the things to find, separated by commas (each becomes a label).
A detector that reads text looks for them on the frame shown and draws a box around each, with
what it thinks it is and how sure it is (0 to 1). Click the boxes you want (click again to drop
one), then **Keep chosen**, or **Keep all**. Each kept box becomes a new object with that box as
its prompt; SAM 2 draws its mask. One Undo takes them all back. Then track as usual.

**Find and track in the whole video** does it on every k-th frame while tracking runs (by
default once per second of video). A box that lands on an object already tracked there belongs
to it (their masks overlap at least as much as the *match* number says); an object lost and
found again is picked up there; anything else is a new object, tracked back to the start too.
One Undo takes back the whole run; Cancel keeps what is done.

**The thresholds**: a box is shown when the detector is surer than the *box threshold*; lower it
to find more (and more wrong ones), raise it to find fewer. The *text threshold* (Grounding DINO
only) is how sure it must be of which of your words the box is. {defaults}

{speed}
"""

NO_SPEED = "How long a find takes depends on the machine; the time is said here after the first one."


def defaults_sentence(defaults: text_finding.PublishedDefaults) -> str:
    """Which published defaults the fields show, and why those."""
    t = defaults.thresholds
    text = f", text {t.text:g}" if t.text is not None else " (it has no text threshold)"
    whose = (f"{defaults.family}'s published defaults" if defaults.known
             else "Grounding DINO's published defaults (the default detector's; the detector chosen is not "
                  "loaded until the first find)")  # fmt: skip
    return f"The fields start at {whose}: box {t.box:g}{text}."


def speed_sentence(seconds: float | None, size: str = "") -> str:
    if seconds is None:
        return NO_SPEED
    return f"The last find took {seconds:.1f} s on this machine{size} (the detector's time on one frame)."


# ----------------------------------------------------------------------------- components


class TextPage:
    """The components of "Find by text" (``ui.layout`` calls :meth:`build` in its accordion)."""

    def __init__(self, detector: DetectorSlot) -> None:
        self.detector = detector
        self.defaults = text_finding.published_defaults(detector.spec)
        self.seconds: float | None = None  # the last find's detection time, measured in this app
        self.seconds_at = ""  # the frame size it was measured at

    def build(self) -> None:
        t = self.defaults.thresholds
        help_line(TEXT_LINE)
        with gr.Accordion("More help", open=False, elem_id="text-more-help", elem_classes=["more-help"]):
            self.help = gr.Markdown(self.help_text(), elem_id="text-help")
        self.phrases = gr.Textbox(label="What to find (phrases separated by commas)", placeholder="person, red car",
                                  elem_id="text-phrases", max_lines=2)  # fmt: skip
        with gr.Row():
            self.box_threshold = gr.Number(t.box, minimum=0, maximum=1, step=0.05, label="Box threshold (0 to 1)",
                                           elem_id="text-box-threshold", min_width=120)  # fmt: skip
            self.text_threshold = gr.Number(t.text, minimum=0, maximum=1, step=0.05, elem_id="text-text-threshold",
                                            label="Text threshold (0 to 1, Grounding DINO only)", min_width=120,
                                            visible=t.text is not None)  # fmt: skip
        gr.Markdown(defaults_sentence(self.defaults), elem_id="text-defaults", elem_classes=["help-line"])
        with gr.Row():
            self.find = gr.Button("Find on this frame", elem_id="text-find", variant="primary")
            self.cancel = gr.Button("Cancel", elem_id="text-cancel", variant="stop", size="sm")
        self.progress = gr.Markdown("", elem_id="text-progress", latex_delimiters=[])
        with gr.Column(visible=False) as self.found_box:
            self.found = gr.Image(label="Found boxes: click to choose", interactive=False, type="filepath",
                                  elem_id="text-found", buttons=["fullscreen"])  # fmt: skip
            with gr.Row():
                self.keep = gr.Button("Keep chosen", elem_id="text-keep", variant="primary", size="sm")
                self.keep_all = gr.Button("Keep all", elem_id="text-keep-all", size="sm")
                self.clear = gr.Button("Clear found", elem_id="text-clear", size="sm")
        with gr.Row():
            self.every = gr.Number(None, minimum=1, step=1, precision=0, elem_id="text-every", min_width=120,
                                   label="Detect every k frames (empty: one second of video)")  # fmt: skip
            self.match_iou = gr.Number(concepts.DEFAULT_MATCH_IOU, minimum=0, maximum=1, step=0.05, min_width=120,
                                       label="Match: mask overlap (IoU) that makes a box an object already tracked",
                                       elem_id="text-match-iou")  # fmt: skip
        self.plan = gr.Markdown("", elem_id="text-plan", latex_delimiters=[])
        self.track_all = gr.Button("Find and track in the whole video", elem_id="text-track-all")

    def help_text(self) -> str:
        return TEXT_HELP.format(defaults=defaults_sentence(self.defaults),
                                speed=speed_sentence(self.seconds, self.seconds_at))  # fmt: skip

    def view_outputs(self) -> list[Any]:
        """What every full refresh updates (``Controls.extras``)."""
        return [self.found_box, self.found, self.every, self.plan]

    def wire(self, controls: Controls, handlers: "TextHandlers") -> None:
        c, h = controls, handlers
        view = c.view_outputs()
        quick = {"show_progress": "minimal", "api_visibility": "private"}
        long = {"concurrency_limit": 8, "show_progress": "hidden", "api_visibility": "private"}
        asked = [self.phrases, self.box_threshold, self.text_threshold]
        self.find.click(h.on_find, [*asked, c.frame], [*view, self.progress, self.help], **long)
        self.cancel.click(h.base.on_cancel, None, [c.status], concurrency_limit=None, show_progress="hidden",
                          api_visibility="private")  # fmt: skip
        self.found.select(h.on_found_click, None, view, **quick)
        self.keep.click(h.on_keep, None, [*view, self.progress], **long)
        self.keep_all.click(h.on_keep_all, None, [*view, self.progress], **long)
        self.clear.click(h.on_clear, None, view, **quick)
        self.every.change(h.on_plan, [self.every], [self.plan], **quick)
        self.track_all.click(h.on_track_all, [*asked, self.every, self.match_iou], [*view, self.progress], **long)
        gr.api(h.api_find_by_text, api_name="find_by_text", concurrency_limit=8)
        gr.api(h.api_text_found, api_name="text_found")
        gr.api(h.api_keep_text_found, api_name="keep_text_found", concurrency_limit=8)
        gr.api(h.api_find_and_track_text, api_name="find_and_track_text", concurrency_limit=8)


# ----------------------------------------------------------------------------- handlers


def _threshold(value: Any) -> Any:
    """A page field's value: empty is None (the detector's default); the rest is checked later."""
    return None if value is None or value == "" else value


class TextHandlers:
    """Handlers of "Find by text", on the plumbing of the page's :class:`Handlers`."""

    def __init__(self, base: Handlers, page: TextPage) -> None:
        self.base = base
        self.page = page
        base.refreshers.append(self.views)

    def failed(self, handler: str, exc: Exception) -> Any:
        return self.base.failed(handler, exc)

    # ------------------------------------------------------------------ views
    def views(self, work: WorkState) -> dict:
        """The found boxes, and (for a newly loaded video) its default k and the plan."""
        out = self.found_views(work)
        video = work.video
        planned = work.text_plan_video
        if video is not None and (planned is None or planned() is not video):
            work.text_plan_video = weakref.ref(video)
            every = self._every(video, None)
            out[self.page.every] = gr.Number(value=every)
            out[self.page.plan] = views.markdown_text(self.plan_text(work, every))
        return out

    def found_views(self, work: WorkState) -> dict:
        found = text_finding.current(work)
        if found is None:
            return {self.page.found_box: gr.Column(visible=False), self.page.found: None}
        picture = views.write_png(text_finding.picture(work, found), work.new_file("text-found", ".png"))
        label = (f"Found on frame {found.frame}: {len(found.detections)} box(es), {len(found.chosen)} chosen "
                 "(click one to choose it, again to drop it)")  # fmt: skip
        return {self.page.found_box: gr.Column(visible=True), self.page.found: gr.Image(str(picture), label=label)}

    def plan_text(self, work: WorkState, every: Any) -> str:
        video = operations.require_video(work)
        frames = concepts.detection_frames(video.count, self._every(video, every))
        return concepts.describe_plan(frames, video.count)

    @staticmethod
    def _every(video: Any, every: Any) -> Any:
        """k as given, or (None) one second of video; a video shorter than a second: its length."""
        if every is None or every == "":
            return min(concepts.default_every(video.decoded.fps), video.count)
        return every

    @guarded
    def on_plan(self, every: Any, request: gr.Request) -> Any:
        try:
            return views.markdown_text(self.plan_text(self.base.work(request), every))
        except UserError as exc:
            return views.markdown_text(str(exc))

    # ------------------------------------------------------------------ one frame
    @guarded
    def on_find(self, prompt: str, box: Any, text: Any, frame: float, request: gr.Request) -> Iterator[dict]:
        """Find the phrases on the frame shown, on the session's worker thread, streaming the progress."""
        page, c = self.page, self.base.c
        try:
            work = self.base.work(request)
            asked = text_finding.check_request(prompt, _threshold(box), _threshold(text))
            finding = text_finding.start_text_finding(work, page.detector, int(frame), asked)
        except UserError as exc:
            yield self.base.warn(str(exc))
            return
        yield from section_progress(work, finding.thread, c.status, page.progress)
        progress = work.progress
        summary = views.markdown_text(progress.summary())
        if finding.seconds is not None:
            video = operations.require_video(work)
            height, width = video.frame_size(int(frame))
            page.seconds, page.seconds_at = finding.seconds, f" at {width}x{height} pixels"
        helped = {page.help: page.help_text()}
        if progress.error:
            yield {**self.base.warn(progress.error), page.progress: summary, **helped}
        elif progress.cancelled:
            yield {c.status: views.markdown_text(f"Finding by text cancelled: {progress.kept}."),
                   page.progress: summary, **helped}  # fmt: skip
        else:
            yield {**self.base.refresh(work, None, finding.message), page.progress: summary, **helped}

    @guarded
    def on_found_click(self, evt: gr.SelectData, request: gr.Request) -> dict:
        index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if index is None:
            return self.base.warn("Click inside the picture of found boxes.")
        x, y = float(index[0]), float(index[1])
        return self.base.run(request, lambda work: (text_finding.toggle(work, x, y), None))

    @guarded
    def on_keep(self, request: gr.Request) -> Iterator[dict]:
        def chosen(work: WorkState) -> list[int]:
            return sorted(text_finding.require_found(work).chosen)

        yield from self._keep(request, chosen)

    @guarded
    def on_keep_all(self, request: gr.Request) -> Iterator[dict]:
        yield from self._keep(request, lambda work: None)

    def _keep(self, request: gr.Request, which: Callable[[WorkState], list[int] | None]) -> Iterator[dict]:
        """Keep found boxes (``which(work)``: their indices, None: all) on a worker thread: SAM 2
        makes each one's mask; one undo step."""
        try:
            work = self.base.work(request)
            keeping = text_finding.start_keeping(work, self.base.engine, which(work))
        except UserError as exc:
            yield self.base.warn(str(exc))
            return
        yield from self._follow(work, keeping.run, keeping.frame, False)
        text_finding.forget_kept(work, keeping)
        yield self.base.refresh(work, keeping.frame, self._ending(work, keeping.run))

    @guarded
    def on_clear(self, request: gr.Request) -> dict:
        return self.base.run(request, lambda work: (text_finding.clear(work), None))

    # ------------------------------------------------------------------ the whole video
    @guarded
    def on_track_all(self, prompt: str, box: Any, text: Any, every: Any, match_iou: Any,
                     request: gr.Request) -> Iterator[dict]:  # fmt: skip
        """Detect every k frames while tracking runs (annotation.concepts), streaming the progress."""
        try:
            work = self.base.work(request)
            run, plan = self._start_track_all(work, prompt, _threshold(box), _threshold(text), every, match_iou)
        except UserError as exc:
            yield self.base.warn(str(exc))
            return
        yield {self.base.c.status: views.markdown_text(plan), self.page.plan: views.markdown_text(plan)}
        yield from self._follow(work, run, None, True)
        yield {**self.base.refresh(work, work.shown_frame, self._ending(work, run)),
               self.page.plan: views.markdown_text(plan)}  # fmt: skip

    def _start_track_all(
        self, work: WorkState, prompt: Any, box: Any, text: Any, every: Any, match_iou: Any
    ) -> tuple[concepts.Concepts, str]:  # fmt: skip
        asked = text_finding.check_request(prompt, box, text)
        video = operations.require_video(work)
        frames = concepts.detection_frames(video.count, self._every(video, every))
        threshold = concepts.check_match_iou(match_iou)
        detect = text_finding.whole_video_detections(self.page.detector, asked)
        run = concepts.start_run(work, self.base.engine, detect, frames, asked.what, threshold, track=True,
                                 labels=list(asked.phrases))  # fmt: skip
        return run, concepts.describe_plan(frames, video.count)

    # ------------------------------------------------------------------ the run's progress
    def _follow(self, work: WorkState, run: concepts.Concepts, frame: int | None, tracking: bool) -> Iterator[dict]:
        """The progress of a run until it ends: the status and both progress lines; while
        tracking, the frame it is on too."""
        c, page = self.base.c, self.page
        assert run.thread is not None
        while run.thread.is_alive():
            progress = work.progress
            summary = views.markdown_text(progress.summary())
            out = {c.status: views.markdown_text(running_status(progress)), c.progress: summary,
                   page.progress: summary}  # fmt: skip
            shown = progress.last_frame if tracking else None
            if shown is not None:
                out.update({c.viewer: str(views.frame_file(work, shown)), c.frame: gr.Slider(value=shown),
                            c.timeline: str(views.timeline_file(work, shown))})  # fmt: skip
            yield out
            run.thread.join(POLL_S)
        summary = views.markdown_text(work.progress.summary())
        yield {c.progress: summary, page.progress: summary}

    @staticmethod
    def _ending(work: WorkState, run: concepts.Concepts) -> str:
        progress = work.progress
        if progress.error:
            gr.Warning(views.html_text(progress.error))
            return f"Problem: {progress.error}"
        if progress.cancelled:
            return progress.summary()
        return run.message

    # ------------------------------------------------------------------ API
    def _api(self, request: gr.Request, action: Callable[[WorkState], dict]) -> dict:
        try:
            work = self.base.work(request)
            with locked(work):
                operations.require_video(work)
                return action(work)
        except UserError as exc:
            return {"message": f"Problem: {exc}"}

    @guarded
    def api_find_by_text(self, frame: int, phrases: str, box_threshold: float | None = None,
                         text_threshold: float | None = None, request: gr.Request = None) -> dict:  # fmt: skip
        """Find `phrases` ("person, red car") on `frame` with the text detector; waits (`/cancel`
        stops it, changing nothing). Thresholds: None takes the detector's defaults. `found`
        lists the boxes: index, phrase, score, box [x0, y0, x1, y1] in the frame's pixels."""
        try:
            work = self.base.work(request)
            asked = text_finding.check_request(phrases, box_threshold, text_threshold)
            at = api_whole(frame, "frame")
            finding = text_finding.start_text_finding(work, self.page.detector, at, asked)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "found": []}
        finding.thread.join()
        progress = work.progress
        found = text_finding.current(work) if finding.message else None
        message = finding.message or (f"Problem: {progress.error}" if progress.error else progress.summary())
        return {"message": message, "frame": at, "done": progress.done, "cancelled": progress.cancelled,
                "error": progress.error, "seconds": finding.seconds,
                "found": text_finding.describe(found) if found is not None else []}  # fmt: skip

    @guarded
    def api_text_found(self, request: gr.Request) -> dict:
        """What was found by text and not kept yet: the frame and each box."""

        def action(work: WorkState) -> dict:
            found = text_finding.current(work)
            if found is None:
                return {"message": "Nothing is found now.", "found": []}
            return {"message": f"{len(found.detections)} found box(es) on frame {found.frame}.", "frame": found.frame,
                    "found": text_finding.describe(found)}  # fmt: skip

        return self._api(request, action)

    @guarded
    def api_keep_text_found(self, indices: list[int] | None = None, keep_all: bool = False,
                            request: gr.Request = None) -> dict:  # fmt: skip
        """Make found boxes new objects (`indices` from /find_by_text, or `keep_all`), each with
        its box as the prompt and its phrase as the label; one undo step; waits. Answers the new
        objects' ids, labels and areas, and what is left found."""
        try:
            work = self.base.work(request)
            before = set(work.registry)
            picks = None if keep_all is True else indices
            if picks is not None and not isinstance(picks, (list, tuple)):
                raise UserError("indices must be a list of whole numbers.")
            keeping = text_finding.start_keeping(work, self.base.engine, picks)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "objects": []}
        keeping.thread.join()
        text_finding.forget_kept(work, keeping)
        new = [o for o in work.doc.object_ids if o not in before]
        found = text_finding.current(work)
        return {"message": self._plain_ending(work, keeping.run), "frame": keeping.frame, "objects": new,
                "labels": {str(o): work.registry[o].label for o in new},
                "areas": {str(o): int(work.doc.area(keeping.frame, o) or 0) for o in new},
                "found": text_finding.describe(found) if found is not None else []}  # fmt: skip

    @guarded
    def api_find_and_track_text(self, phrases: str, every: int | None = None,
                                match_iou: float = concepts.DEFAULT_MATCH_IOU, box_threshold: float | None = None,
                                text_threshold: float | None = None, request: gr.Request = None) -> dict:  # fmt: skip
        """Find `phrases` every `every` frames (None: one second of video) while tracking the
        whole video; a box whose mask overlaps an object's at `match_iou` or more is that object.
        Waits (`/cancel` stops it, keeping what is done); one undo step. Answers the plan, the
        counts of new objects, objects found again and boxes on objects already there."""
        try:
            work = self.base.work(request)
            run, plan = self._start_track_all(work, phrases, box_threshold, text_threshold, every, match_iou)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "objects": []}
        assert run.thread is not None
        run.thread.join()
        progress = work.progress
        return {"message": self._plain_ending(work, run), "plan": plan, "frames": list(run.frames),
                "new": run.count("new"), "again": run.count("again"),
                "same": run.count("same") + run.count("repeat"), "objects": list(work.doc.object_ids),
                "labels": {str(o): work.registry[o].label for o in work.doc.object_ids},
                "done": progress.done, "total": progress.total, "cancelled": progress.cancelled,
                "error": progress.error}  # fmt: skip

    @staticmethod
    def _plain_ending(work: WorkState, run: concepts.Concepts) -> str:
        progress = work.progress
        if progress.error:
            return f"Problem: {progress.error}"
        return progress.summary() if progress.cancelled else run.message

