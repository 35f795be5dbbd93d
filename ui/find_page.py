"""The page's model alternatives: "Find objects on this frame" (SAM 2's automatic mask
generator proposes masks; the person keeps the ones wanted as new objects) and a click's three
candidate masks shown as small pictures to pick from.

:class:`FindPage` makes the components (``ui.layout`` calls each builder where it belongs);
:class:`FindHandlers` answers their events on the plumbing of :class:`ui.callbacks.Handlers`
and adds both views to every full refresh. The work itself is in ``annotation.finding``. A
find runs on a background thread like tracking: the handler streams its progress, and Cancel
(this group's or step 3's) stops it with the work as it was. ``gradio_client`` gets named
endpoints that take plain values and answer a dict (see :meth:`FindPage.wire`).

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` /
``gr.SelectData`` annotations, and ``gr.api`` the parameter types, at run time.)
"""

from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from annotation import finding, operations
from annotation.document import UserError
from annotation.engine import SpeedEstimate
from ui import views
from ui.callbacks import (
    Controls,
    Handlers,
    api_whole,
    api_wholes,
    guarded,
    locked,
    section_progress,
)
from ui.sessions import WorkState

FIND_HELP = """
**Find objects on this frame**: SAM 2 clicks a grid of points over the frame shown and keeps
the good, distinct masks it gets. They appear outlined and numbered below: click the ones you
want (click again to drop one), then **Keep chosen**, or **Keep all**. Each becomes a new
object with that mask on this frame (one Undo takes them all back); then track as usual.
More points per side find smaller objects but take longer. {times}
"""

FIND_LINE = "SAM 2 tries a grid of clicks on the frame shown: keep the objects you want."

CHOICES_LABEL = "Your click could mean any of these: click the mask you meant (predicted quality)"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 90 else f"{value / 60:.0f} min"


def density_label(density: int, speed: SpeedEstimate | None, size: int) -> str:
    """'16 per side (256 points, about 2 s here at 512 px)': estimated from the encoding timed
    on this machine at start, for the model size ``size`` (the video's, or the next upload's)."""
    about = f", about {_seconds(speed.find_s(density, size))} here at {size} px" if speed is not None else ""
    return f"{density} per side ({density * density} points{about})"


def times_text(speed: SpeedEstimate | None, size: int) -> str:
    """The help text's sentence on how long a find takes here, and the basis of the figures."""
    if speed is None:
        return "How long it takes depends on the machine; the progress line gives the time left."
    return (f"The times beside each density are estimated for {size} px from a frame encoded on this machine "
            f"at start ({speed.encode_s:.2f} s at {speed.image_size} px); the progress line gives the real time left.")


# ----------------------------------------------------------------------------- components


class FindPage:
    """The components, made by the builders in the page's order (``ui.layout`` calls them)."""

    def build_choices(self) -> None:
        """Under the viewer: a click's candidate masks, shown only when there is a choice."""
        self.choices = gr.Gallery(
            label=CHOICES_LABEL, columns=3, allow_preview=False, visible=False, interactive=False, height=250,
            object_fit="contain", buttons=[], elem_id="choices",
        )  # fmt: skip

    def __init__(self, speed: SpeedEstimate | None = None, size: int = 1024) -> None:
        self.speed = speed  # the encoding timed at start (None: not timed), for the figures quoted
        self.size = size  # the model size the page opens with

    def build_finder(self) -> None:
        """In the "Find objects" accordion under the viewer: density, Find and Cancel, what was found."""
        gr.Markdown(FIND_LINE, elem_classes=["help-line"])
        with gr.Accordion("More help", open=False, elem_classes=["more-help"]):
            self.help = gr.Markdown(self.help_text(self.size), elem_id="find-help")
        self.density = gr.Radio(self.density_choices(self.size), value=finding.DEFAULT_DENSITY,
                                label="Points per side", elem_id="find-density")  # fmt: skip
        with gr.Row():
            self.find = gr.Button("Find objects on this frame", elem_id="find-objects", variant="primary")
            self.cancel = gr.Button("Cancel", elem_id="find-cancel", variant="stop", size="sm")
        self.progress = gr.Markdown("", elem_id="find-progress", latex_delimiters=[])
        with gr.Column(visible=False) as self.found_box:
            self.found = gr.Image(label="Found objects: click to choose", interactive=False, type="filepath",
                                  elem_id="found", buttons=["fullscreen"])  # fmt: skip
            with gr.Row():
                self.keep = gr.Button("Keep chosen", elem_id="keep-found", variant="primary", size="sm")
                self.keep_all = gr.Button("Keep all", elem_id="keep-all-found", size="sm")
                self.clear = gr.Button("Clear found", elem_id="clear-found", size="sm")

    def help_text(self, size: int) -> str:
        return FIND_HELP.format(times=times_text(self.speed, size))

    def density_choices(self, size: int) -> list[tuple[str, int]]:
        return [(density_label(d, self.speed, size), d) for d in finding.DENSITIES]

    def view_outputs(self) -> list[Any]:
        """What every full refresh updates (``Controls.extras``)."""
        return [self.choices, self.found_box, self.found]

    def size_outputs(self) -> list[Any]:
        """What changes with the model size (see :meth:`size_views`)."""
        return [self.help, self.density]

    def size_views(self, size: int) -> dict:
        """The help and the densities' times at model size ``size`` (the chosen density kept)."""
        return {self.help: self.help_text(size), self.density: gr.Radio(choices=self.density_choices(size))}

    def wire(self, controls: Controls, handlers: "FindHandlers") -> None:
        c, h = controls, handlers
        view = c.view_outputs()
        quick = {"show_progress": "minimal", "api_visibility": "private"}
        self.find.click(h.on_find, [self.density, c.frame], [*view, self.progress], concurrency_limit=8,
                        show_progress="hidden", api_visibility="private")  # fmt: skip
        self.cancel.click(h.base.on_cancel, None, [c.status], concurrency_limit=None, show_progress="hidden",
                          api_visibility="private")  # fmt: skip
        self.found.select(h.on_found_click, None, view, **quick)
        self.keep.click(h.on_keep, None, view, **quick)
        self.keep_all.click(h.on_keep_all, None, view, **quick)
        self.clear.click(h.on_clear, None, view, **quick)
        self.choices.select(h.on_pick, [c.frame], view, **quick)
        # The slider shows another frame without a full refresh: its choices follow here.
        c.frame.input(h.on_frame_choices, [c.frame], [self.choices], trigger_mode="always_last", **quick)
        gr.api(h.api_find_objects, api_name="find_objects", concurrency_limit=8)
        gr.api(h.api_found_objects, api_name="found_objects")
        gr.api(h.api_keep_found, api_name="keep_found")
        gr.api(h.api_candidates, api_name="candidates")
        gr.api(h.api_pick_candidate, api_name="pick_candidate")


# ----------------------------------------------------------------------------- handlers


class FindHandlers:
    """Handlers of finding and picking, on the plumbing of the page's :class:`Handlers`."""

    def __init__(self, base: Handlers, page: FindPage) -> None:
        self.base = base
        self.page = page
        base.refreshers.append(self.views)
        base.size_refreshers.append(page.size_views)

    def failed(self, handler: str, exc: Exception) -> Any:
        """What :func:`guarded` answers an unexpected exception with (as the page's other handlers)."""
        return self.base.failed(handler, exc)

    # ------------------------------------------------------------------ views
    def views(self, work: WorkState) -> dict:
        """The found objects and the shown frame's choices, for a full refresh."""
        return {**self.found_views(work), self.page.choices: self.choices_view(work, work.shown_frame)}

    def found_views(self, work: WorkState) -> dict:
        found = finding.current(work)
        if found is None:
            return {self.page.found_box: gr.Column(visible=False), self.page.found: None}
        picture = views.write_png(finding.picture(work, found), work.new_file("found", ".png"))
        label = (f"Found on frame {found.frame}: {len(found.candidates)} object(s), {len(found.chosen)} chosen "
                 "(click one to choose it, again to drop it)")  # fmt: skip
        return {self.page.found_box: gr.Column(visible=True), self.page.found: gr.Image(str(picture), label=label)}

    def choices_view(self, work: WorkState, frame: int) -> Any:
        pictures = finding.candidate_pictures(work, self.base.engine, frame)
        if not pictures:
            return gr.Gallery(value=None, visible=False)
        items = []
        for index, (picture, score, shown) in enumerate(pictures):
            path = views.write_png(picture, work.new_file(f"choice{index}", ".png"))
            items.append((str(path), f"{index + 1}: {score:.3f}" + (" (shown)" if shown else "")))
        return gr.Gallery(value=items, visible=True, selected_index=None)

    # ------------------------------------------------------------------ finding
    @guarded
    def on_find(self, density: float | None, frame: float, request: gr.Request) -> Iterator[dict]:
        """Find objects on the frame shown, on the session's worker thread, streaming the progress."""
        page, c = self.page, self.base.c
        try:
            work = self.base.work(request)
            run = finding.start_finding(work, self.base.engine, int(frame), density)
        except UserError as exc:
            yield self.base.warn(str(exc))
            return
        yield from section_progress(work, run.thread, c.status, page.progress)
        progress = work.progress
        summary = views.markdown_text(progress.summary())
        if progress.error:
            yield {**self.base.warn(progress.error), page.progress: summary}
        elif progress.cancelled:
            cancelled = views.markdown_text(f"Finding objects cancelled: {progress.kept}.")
            yield {c.status: cancelled, page.progress: summary}
        else:
            yield {**self.base.refresh(work, None, run.message), page.progress: summary}

    @guarded
    def on_found_click(self, evt: gr.SelectData, request: gr.Request) -> dict:
        index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if index is None:
            return self.base.warn("Click inside the picture of found objects.")
        x, y = float(index[0]), float(index[1])
        return self.base.run(request, lambda work: (finding.toggle(work, x, y), None))

    @guarded
    def on_keep(self, request: gr.Request) -> dict:
        return self.base.run(request, lambda work: self._keep(work, sorted(finding.require_found(work).chosen)))

    @guarded
    def on_keep_all(self, request: gr.Request) -> dict:
        return self.base.run(request, lambda work: self._keep(work, None))

    def _keep(self, work: WorkState, indices: list[int] | None) -> tuple[str, int]:
        """Keep found masks (None: all) -> (message, the frame they were found on, shown next)."""
        frame = finding.require_found(work).frame
        return finding.keep(work, self.base.engine, indices), frame

    @guarded
    def on_clear(self, request: gr.Request) -> dict:
        return self.base.run(request, lambda work: (finding.clear(work), None))

    # ------------------------------------------------------------------ a click's choices
    @guarded
    def on_pick(self, frame: float, evt: gr.SelectData, request: gr.Request) -> dict:
        index = evt.index if isinstance(evt.index, int) else None
        if index is None:
            return self.base.warn("Click one of the masks offered.")
        return self.base.run(
            request, lambda work: (operations.pick_candidate(work, self.base.engine, int(frame), index), int(frame))
        )

    @guarded
    def on_frame_choices(self, frame: float, request: gr.Request) -> Any:
        """The slider moved: the choices of the frame now shown (read-only, like the frame itself)."""
        try:
            work = self.base.work(request)
            operations.check_frame(work, int(frame))
        except UserError:
            return gr.skip()  # the frame handler says what is wrong
        return self.choices_view(work, int(frame))

    # ------------------------------------------------------------------ API
    def _api(self, request: gr.Request, action: Callable[[WorkState], dict]) -> dict:
        """Run ``action(work) -> answer`` under the session's lock; a problem is
        {"message": "Problem: ..."} and changes nothing."""
        try:
            work = self.base.work(request)
            with locked(work):
                operations.require_video(work)
                return action(work)
        except UserError as exc:
            return {"message": f"Problem: {exc}"}

    @guarded
    def api_find_objects(self, frame: int, points_per_side: int = finding.DEFAULT_DENSITY,
                         request: gr.Request = None) -> dict:  # fmt: skip
        """Find objects on `frame` with a grid of `points_per_side` x `points_per_side` clicks; waits
        (`/cancel` stops it, changing nothing). `found` lists them: index, score, area, box."""
        try:
            work = self.base.work(request)
            density = api_whole(points_per_side, "points_per_side")
            run = finding.start_finding(work, self.base.engine, api_whole(frame, "frame"), density)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "found": []}
        run.thread.join()
        progress = work.progress
        found = finding.current(work)
        answer = {"message": run.message or progress.summary(), "frame": int(frame), "done": progress.done,
                  "cancelled": progress.cancelled, "error": progress.error}  # fmt: skip
        return {**answer, "found": finding.describe(found) if found is not None and run.message else []}

    @guarded
    def api_found_objects(self, request: gr.Request) -> dict:
        """What was found and not kept yet: the frame and, for each, index, score, area, box."""

        def action(work: WorkState) -> dict:
            found = finding.current(work)
            if found is None:
                return {"message": "Nothing is found now.", "found": []}
            return {"message": f"{len(found.candidates)} found object(s) on frame {found.frame}.",
                    "frame": found.frame, "found": finding.describe(found)}  # fmt: skip

        return self._api(request, action)

    @guarded
    def api_keep_found(self, indices: list[int] | None = None, keep_all: bool = False,
                       request: gr.Request = None) -> dict:  # fmt: skip
        """Make found objects new objects (`indices` from /find_objects, or `keep_all`), each with
        its mask as the mask prompt; one undo step. Answers the new ids and what is left."""

        def action(work: WorkState) -> dict:
            before = set(work.doc.object_ids)
            message, frame = self._keep(work, None if keep_all is True else api_wholes(indices or [], "indices"))
            new = [o for o in work.doc.object_ids if o not in before]
            found = finding.current(work)
            return {"message": message, "frame": frame, "objects": new,
                    "areas": {str(o): int(work.doc.area(frame, o) or 0) for o in new},
                    "found": finding.describe(found) if found is not None else []}  # fmt: skip

        return self._api(request, action)

    @guarded
    def api_candidates(self, frame: int, obj_id: int, request: gr.Request) -> dict:
        """The masks the model offered after object `obj_id`'s first click on `frame`: index,
        predicted quality, area and whether it is the one shown; [] when there is no choice."""

        def action(work: WorkState) -> dict:
            frame_index = api_whole(frame, "frame")
            operations.select_object(work, api_whole(obj_id, "obj_id"))
            offered = operations.candidates(work, self.base.engine, frame_index)
            shown = work.doc.frame_masks(frame_index).get(int(obj_id))
            listed = [{"index": i, "score": round(score, 4), "area": int(mask.sum()),
                       "shown": shown is not None and bool((mask == shown).all())}
                      for i, (mask, score) in enumerate(offered)]  # fmt: skip
            return {"message": f"{len(listed)} mask(s) to choose from.", "candidates": listed}

        return self._api(request, action)

    @guarded
    def api_pick_candidate(self, frame: int, obj_id: int, index: int, request: gr.Request) -> dict:
        """Make mask `index` of /candidates object `obj_id`'s mask on `frame` (a mask prompt,
        which tracking follows)."""

        def action(work: WorkState) -> dict:
            operations.select_object(work, api_whole(obj_id, "obj_id"))
            at = api_whole(frame, "frame")
            message = operations.pick_candidate(work, self.base.engine, at, api_whole(index, "index"))
            return {"message": message, "frame": at,
                    "areas": {str(o): int(work.doc.area(at, o) or 0) for o in work.doc.object_ids}}  # fmt: skip

        return self._api(request, action)
