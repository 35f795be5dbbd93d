"""Gradio event handlers: thin adapters from page events to ``annotation.operations`` operations.

Each handler finds the caller's WorkState (by Gradio's session hash and the browser's owner
cookie), runs one operation under the session's lock, and returns a dict of component
updates. A problem the user can fix comes back as a warning toast plus the status line, and
nothing else on the page changes, so the session keeps working. Anything else that goes wrong
is logged with its traceback and the session id (``ui.logs``) and told to the user in one
sentence, in the same way (:func:`guarded`): the page never shows a raw error.

Messages are plain text; names and file names in them come from users, so each message is
shown through ``views.markdown_text`` / ``views.html_text``: as written, never as markup.

(No ``from __future__ import annotations`` here: Gradio reads the ``gr.Request`` /
``gr.SelectData`` annotations at run time to inject those arguments.)
"""

import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from annotation import formats, operations
from annotation.document import UserError
from annotation.engine import Engine
from annotation.views import TimelineGeometry
from sam2.video_io import MediaLimits
from ui import views
from ui.logs import SESSION
from ui.saved_work import VideoSource
from ui.sessions import SessionStore, WorkState

OWNER_COOKIE = "sam2_owner"
MODES = {"Add (+)": "add", "Remove (-)": "remove", "Box": "box"}
POLL_S = 0.5
RESUME_WAIT_S = 3.0  # a reload's load event may beat the old page's unload by a moment
log = logging.getLogger(__name__)


@dataclass
class Controls:
    """The page's components that handlers read or update (built by ``ui.layout``)."""

    upload: Any
    video_info: Any
    viewer: Any
    frame: Any
    mode: Any
    status: Any
    undo: Any
    redo: Any
    objects: Any
    obj_name: Any
    obj_visible: Any
    legend: Any
    progress: Any
    timeline: Any
    downloads: Any
    buttons: dict[str, Any] = field(default_factory=dict)  # the rest, by name, for the wiring
    extras: list[Any] = field(default_factory=list)  # more views a full refresh updates (Handlers.refreshers)

    def view_outputs(self) -> list[Any]:
        """Everything a full refresh may change (the extras last, so the API's outputs keep their places)."""
        return [
            self.viewer, self.frame, self.status, self.undo, self.redo, self.objects,
            self.obj_name, self.obj_visible, self.legend, self.timeline, self.video_info, self.progress,
            *self.extras,
        ]  # fmt: skip


def owner_of(request: gr.Request | None) -> str:
    """The browser's owner cookie (set by ``ui.access``), '' when the client sent none."""
    if request is None:
        return ""
    cookies = getattr(request, "cookies", None) or {}
    return str(cookies.get(OWNER_COOKIE, "") or "")


def _session_of(args: tuple, kwargs: dict) -> str:
    """The Gradio session hash of the request among a handler's arguments ("-" if none)."""
    request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
    return str(getattr(request, "session_hash", None) or "-")


def guarded(method: Callable) -> Callable:
    """A handler that never fails in the page: each call names its session in the log
    (:data:`ui.logs.SESSION`), and an unexpected exception is logged with its traceback and
    answered by :meth:`Handlers.failed` (a plain message; the page keeps working). Generator
    handlers stay generators (Gradio streams them), and name their session again after each
    update (the next step may run on another thread)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: "Handlers", *args: Any, **kwargs: Any) -> Iterator[Any]:
            session = _session_of(args, kwargs)
            SESSION.set(session)
            try:
                for update in method(self, *args, **kwargs):
                    yield update
                    SESSION.set(session)
            except Exception as exc:
                yield self.failed(method.__name__, exc)

        return stream

    @functools.wraps(method)
    def call(self: "Handlers", *args: Any, **kwargs: Any) -> Any:
        SESSION.set(_session_of(args, kwargs))
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            return self.failed(method.__name__, exc)

    return call


class Handlers:
    def __init__(self, store: SessionStore, engine: Engine, limits: MediaLimits, controls: Controls) -> None:
        self.store = store
        self.engine = engine
        self.limits = limits
        self.c = controls
        # Views that other parts of the page add (ui.datasets_page): each gives its updates for
        # a work with a video, and its components are in ``controls.extras``.
        self.refreshers: list[Callable[[WorkState], dict]] = []
        # Views that say figures for one model size (the model line, speeds): updated with the
        # size the loaded video uses, or the next upload will use (see size_updates).
        self.size_refreshers: list[Callable[[int], dict]] = [self._size_views]
        # Asked before an upload replaces work (ui.guard_page): updates that hold the upload
        # back until the person answers, or None to go on.
        self.before_upload: Callable[..., dict | None] | None = None

    def _size_views(self, size: int) -> dict:
        b = self.c.buttons
        if "model_info" not in b:
            return {}
        return {b["model_info"]: views.model_line(self.engine.describe(size)),
                b["track_info"]: views.track_help(self.engine.speed, size)}

    def size_updates(self, work: WorkState | None, size: int | None = None) -> dict:
        """The views that follow the model size: ``work``'s video's size, else ``size`` (the
        next upload's), else the engine's."""
        if work is not None and work.video is not None:
            size = self.engine.image_size_of(work.video.handle)
        out: dict = {}
        for views_at in self.size_refreshers:
            out.update(views_at(size or self.engine.image_size))
        return out

    # ------------------------------------------------------------------ plumbing
    def work(self, request: gr.Request, create: bool = False) -> WorkState:
        return self.store.get(getattr(request, "session_hash", None) or "", owner_of(request), create=create)

    def run(
        self, request: gr.Request, action: Callable[[WorkState], tuple[str, int | None]], create: bool = False
    ) -> dict:
        """Run ``action(work) -> (message, frame to show)`` under the session lock."""
        try:
            work = self.work(request, create=create)
            with locked(work):
                message, frame = action(work)
        except UserError as exc:
            return self.warn(str(exc))
        return self.refresh(work, frame, message)

    def _upload_problem(self, file: str, what: str) -> str | None:
        """Why an event's file input cannot be used, or None. Event inputs can name any file in
        Gradio's cache, where session folders live too: only files outside every session's
        folder are accepted as uploads."""
        path = Path(file).resolve()
        if self.store.root in path.parents or path == self.store.root or path.is_dir():
            return f"That file was not uploaded from this page. Choose {what}."
        if not path.is_file():
            return "The uploaded file is no longer on the server. Please upload it again."
        return None

    def _release_if_empty(self, request: gr.Request) -> None:
        """A session whose first upload failed holds no work: give its place back."""
        session_id = getattr(request, "session_hash", None) or ""
        work = self.store.peek(session_id)
        if work is not None and work.video is None and not work.undo:
            self.store.close(session_id)

    def warn(self, message: str) -> dict:
        gr.Warning(views.html_text(message))
        return {self.c.status: f"**Problem:** {views.markdown_text(message)}"}

    def failed(self, handler: str, exc: Exception) -> Any:
        """The answer to an unexpected exception in ``handler`` (logged here with its traceback):
        a plain message in the shape the handler's outputs take."""
        log.error("%s failed", handler, exc_info=exc)
        message = (f"Something went wrong on the server ({type(exc).__name__}); it is in the server's log. "
                   "Your work so far is kept: try again, or reload the page.")  # fmt: skip
        if handler == "on_unload":
            return None
        if handler.startswith("api_"):
            return {"message": f"Problem: {message}", "frame": 0, "areas": {}, "done": 0, "error": message}
        return self.warn(message)

    def refresh(self, work: WorkState, frame: int | None, message: str) -> dict:
        """Updates for every view of the session, showing ``frame`` (None: keep the slider)."""
        c = self.c
        out: dict = {c.status: views.markdown_text(message), c.video_info: views.video_info(work)}
        out[c.undo] = gr.Button(interactive=bool(work.undo))
        out[c.redo] = gr.Button(interactive=bool(work.redo))
        if work.video is None:
            return out
        active = work.registry.get(work.active) if work.active in work.doc.object_ids else None
        out[c.objects] = gr.Radio(choices=views.object_choices(work), value=active.id if active else None)
        out[c.obj_name] = gr.Textbox(value=active.name if active else "", interactive=active is not None)
        out[c.obj_visible] = gr.Checkbox(value=active.visible if active else True, interactive=active is not None)
        out[c.legend] = views.legend_html(work)
        if frame is not None:
            frame = min(max(0, int(frame)), work.video.count - 1)
            work.shown_frame = frame
            self.engine.encode_ahead(work.video.handle, frame)
            out[c.viewer] = str(views.frame_file(work, frame))
            out[c.frame] = gr.Slider(minimum=0, maximum=max(1, work.video.count - 1), value=frame, step=1)
            out[c.timeline] = str(views.timeline_file(work, frame))
        for extra in self.refreshers:
            out.update(extra(work))
        return out

    # ------------------------------------------------------------------ video
    @guarded
    def on_upload(
        self, file: str | None, sample_fps: float | None, request: gr.Request, detail: float | None = None
    ) -> dict:
        """One file (the API's ``upload_video``): a video or an image, as :meth:`on_upload_files`."""
        return self.on_upload_files([file] if file else None, sample_fps, request, detail)

    @guarded
    def on_upload_files(
        self, files: list[str] | None, sample_fps: float | None, request: gr.Request, detail: float | None = None
    ) -> dict:
        """Decode the upload: a video, an image, or several images or a zip of them (an image
        set). The upload box is emptied again (the video's name and size show under it) so
        that another file can be dropped at once. The session holds the uploads until it
        closes, then the store deletes them unless another session holds them too (Gradio
        stores uploads by content, so two users' identical files share one path)."""
        if not files:
            return self.warn("No file was received. Choose a video, an image, or several images.")
        for file in files:
            problem = self._upload_problem(file, "a video, an image, or several images")
            if problem:
                return self.warn(problem)

        fps = float(sample_fps) if sample_fps else None  # 0 or empty: the video's own rate
        size = self._image_size(detail)
        if isinstance(size, str):
            return self.warn(size)
        held = self.before_upload(files, sample_fps, detail, request) if self.before_upload else None
        if held is not None:
            return held

        def action(work: WorkState) -> tuple[str, int]:
            for file in files:
                self.store.hold_upload(work, Path(file))
            name = Path(files[0]).name if len(files) == 1 else None  # several images: "images"
            message = operations.load_upload(work, self.engine, files, self.limits, name=name, fps=fps,
                                             image_size=size)  # fmt: skip
            work.source = VideoSource(tuple(Path(f).resolve() for f in files), name, fps)  # for ui.saved_work
            return message, 0

        result = self.run(request, action, create=True)
        self._release_if_empty(request)
        self.store.tidy_upload_cache()
        result[self.c.upload] = None
        if self.c.viewer in result:
            result[self.c.progress] = ""
            result[self.c.downloads] = None
            result.update(self.size_updates(self.store.peek(getattr(request, "session_hash", None) or "")))
        return result

    def _image_size(self, detail: float | None) -> int | str:
        """The model input size chosen on the page (None: the engine's), or why not."""
        if detail in (None, ""):
            return self.engine.image_size
        if detail not in self.engine.image_sizes:
            sizes = ", ".join(str(s) for s in self.engine.image_sizes)
            return f"Model detail {detail} is not offered here; choose one of {sizes}."
        return int(detail)

    @guarded
    def on_detail(self, detail: float | None, frame: float, request: gr.Request) -> dict:
        """Model detail changed: applies to the loaded video (clicks re-applied) or the next upload."""
        size = self._image_size(detail)
        if isinstance(size, str):
            return self.warn(size)
        work = self.store.peek(getattr(request, "session_hash", None) or "")
        if work is None or work.video is None:
            next_upload = f"Videos you upload will be processed at {size} px."
            return {self.c.status: next_upload, **self.size_updates(None, size)}
        out = self.run(request, lambda work: (operations.change_detail(work, self.engine, size), int(frame)))
        return {**out, **self.size_updates(work)}  # after a problem too: the line says the size in use

    @guarded
    def on_frame(self, frame: float, request: gr.Request) -> dict:
        """Slider moved: show that frame (read-only, so it also works while tracking runs)."""
        try:
            work = self.work(request)
            operations.check_frame(work, int(frame))
        except UserError as exc:
            return self.warn(str(exc))
        c = self.c
        work.shown_frame = int(frame)
        self.engine.encode_ahead(work.video.handle, int(frame))
        return {c.viewer: str(views.frame_file(work, int(frame))),
                c.timeline: str(views.timeline_file(work, int(frame)))}

    # ------------------------------------------------------------------ prompts
    @guarded
    def on_click(self, mode: str, frame: float, evt: gr.SelectData, request: gr.Request) -> dict:
        index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else None
        if index is None:
            return self.warn("Click inside the picture.")
        x, y = float(index[0]), float(index[1])
        return self.run(request, lambda w: (operations.click(w, self.engine, int(frame), x, y, MODES.get(mode, "add")),
                                            int(frame)))

    @guarded
    def on_undo(self, frame: float, request: gr.Request) -> dict:
        return self.run(request, lambda w: (operations.undo(w, self.engine), int(frame)))

    @guarded
    def on_redo(self, frame: float, request: gr.Request) -> dict:
        return self.run(request, lambda w: (operations.redo(w, self.engine), int(frame)))

    @guarded
    def on_clear(self, frame: float, request: gr.Request) -> dict:
        return self.run(request, lambda w: (operations.clear_frame(w, self.engine, int(frame)), int(frame)))

    @guarded
    def on_reset(self, frame: float, request: gr.Request) -> dict:
        return self.run(request, lambda w: (operations.reset_all(w, self.engine), int(frame)))

    # ------------------------------------------------------------------ objects
    @guarded
    def on_add_object(self, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            info = operations.add_object(work)
            return f"Added '{info.name}'. Click on it in the frame (or draw a box) to make its mask.", int(frame)

        return self.run(request, action)

    @guarded
    def on_select_object(self, obj_id: int | None, frame: float, request: gr.Request) -> dict:
        return self.run(request, lambda w: (operations.select_object(w, obj_id), int(frame)))

    @guarded
    def on_rename(self, name: str, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            obj = work.object(work.active) if work.active is not None else None
            if obj is None:
                raise UserError("Choose an object to rename.")
            clean = formats.clean_name(name)  # as names from session and prompts files
            if not clean:
                raise UserError("An object needs a name.")
            work.update_object(obj.id, name=clean)
            return f"Renamed object {obj.id} to '{clean}'.", int(frame)

        return self.run(request, action)

    @guarded
    def on_visible(self, visible: bool, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            if work.active is None:
                raise UserError("Choose an object first.")
            info = work.update_object(work.active, visible=bool(visible))
            return f"'{info.name}' is now {'shown' if visible else 'hidden'}.", int(frame)

        return self.run(request, action)

    @guarded
    def on_delete_object(self, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            if work.active is None:
                raise UserError("Choose the object to delete first.")
            return operations.delete_object(work, self.engine, work.active), int(frame)

        return self.run(request, action)

    # ------------------------------------------------------------------ tracking
    @guarded
    def on_track(self, direction: str, frame: float, count: float | None, request: gr.Request) -> Iterator[dict]:
        """Start tracking on the session's worker thread, then report progress until it ends."""
        c = self.c
        try:
            work = self.work(request)
            frames = int(count) if count else None
            operations.start_tracking(work, self.engine, int(frame), direction, frames)
        except UserError as exc:
            yield self.warn(str(exc))
            return
        status = views.markdown_text(running_status(work.progress, f"from frame {int(frame)}", counted=True))
        while True:
            progress = work.progress
            running = progress.running
            shown = progress.last_frame if progress.last_frame is not None else int(frame)
            if not running:
                break
            yield {
                c.status: status,
                c.progress: views.markdown_text(progress.summary()),
                c.viewer: str(views.frame_file(work, shown)),
                c.timeline: str(views.timeline_file(work, shown)),
                c.frame: gr.Slider(value=shown),
            }
            time.sleep(POLL_S)
        summary = progress.summary()
        if progress.error:
            gr.Warning(views.html_text(progress.error))
        out = self.refresh(work, shown, summary)
        out[c.progress] = views.markdown_text(summary)
        yield out

    @guarded
    def on_cancel(self, request: gr.Request) -> dict:
        try:
            work = self.work(request)
        except UserError as exc:
            return self.warn(str(exc))
        if not work.progress.running:
            return {self.c.status: "Nothing is running."}
        work.cancel.set()
        return {self.c.status: views.markdown_text(f"Cancelling: {work.progress.kept}.")}

    @guarded
    def on_timeline_click(self, evt: gr.SelectData, request: gr.Request) -> dict:
        try:
            work = self.work(request)
            video = operations.require_video(work)
        except UserError as exc:
            return self.warn(str(exc))
        index = evt.index if isinstance(evt.index, (list, tuple)) else [0, 0]
        frame = TimelineGeometry.for_frames(video.count).frame_at(float(index[0]))
        return self.refresh(work, frame, f"Frame {frame}.")

    @guarded
    def on_next_lost(self, frame: float, request: gr.Request) -> dict:
        try:
            work = self.work(request)
            target = operations.next_lost_frame(work, int(frame))
        except UserError as exc:
            return self.warn(str(exc))
        return self.refresh(work, target, f"Frame {target}: an object is lost here (red in the timeline).")

    # ------------------------------------------------------------------ files
    @guarded
    def on_export(self, formats: list[str], val_every: float | None, request: gr.Request) -> Iterator[dict]:
        """Make the chosen files on the session's worker thread (the session file first), while
        the progress line counts the frames written and each file is listed under 'Files' as
        soon as it is made; ``val_every``: every k-th frame to the YOLO dataset's validation
        split (0 or empty: none; the number box gives whole numbers). A file that cannot be
        made is left out with its reason and the others are made; Cancel stops between frames,
        the files made so far kept. The work itself is never changed."""
        c = self.c
        try:
            work = self.work(request)
            exporting = operations.start_exporting(work, list(formats or []), val_every=int(val_every or 0))
        except UserError as exc:
            yield self.warn(str(exc))
            return
        outcome, progress, listed = exporting.outcome, work.progress, 0  # this export's (a next step makes its own)
        while exporting.thread.is_alive():
            status = views.markdown_text(running_status(progress))  # names the file being made
            update = {c.status: status, c.progress: views.markdown_text(progress.summary())}
            if len(outcome.made) > listed:  # only when a file was added: each update sends the list again
                listed = len(outcome.made)
                update[c.downloads] = [str(p) for p in outcome.made[:listed]]
            yield update
            exporting.thread.join(POLL_S)
        message = outcome.report("click a name under 'Files' to download it")
        if outcome.complete:
            out = self.refresh(work, None, message)
        elif outcome.cancelled and not outcome.failed:  # the user's own choice: no warning
            out = {c.status: views.markdown_text(message)}
        else:
            out = self.warn(message)
        out[c.progress] = views.markdown_text(progress.summary())
        out[c.downloads] = [str(p) for p in outcome.made] or None
        yield out

    @guarded
    def on_load_session(self, file: str | None, frame: float, request: gr.Request) -> Iterator[dict]:
        """Load a session file: checked at once (a problem with it changes nothing), then
        replayed on the session's worker thread while the progress line counts the prompts;
        Cancel stops it with the work as it was. The load is all or nothing."""
        c = self.c
        done = {c.buttons["session_file"]: None}  # emptied, so the same file can be chosen again
        if not file:
            yield {**self.warn("No session file was received."), **done}
            return
        problem = self._upload_problem(file, "a session file you saved")
        if problem:
            yield {**self.warn(problem), **done}
            return
        try:
            work = self.work(request)
            self.store.hold_upload(work, Path(file))
            loading = operations.start_loading(work, self.engine, file)
        except UserError as exc:
            self.store.tidy_upload_cache()
            yield {**self.warn(str(exc)), **done}
            return
        self.store.tidy_upload_cache()
        status = views.markdown_text(running_status(work.progress))
        while loading.thread.is_alive():
            yield {c.status: status, c.progress: views.markdown_text(work.progress.summary())}
            loading.thread.join(POLL_S)
        progress = work.progress
        summary = views.markdown_text(progress.summary())
        if progress.error:
            yield {**self.warn(progress.error), c.progress: summary, **done}
        elif progress.cancelled:
            yield {c.status: views.markdown_text(f"Loading cancelled: {progress.kept}."), c.progress: summary, **done}
        else:
            yield {**self.refresh(work, int(frame), loading.message), c.progress: summary, **done}

    @guarded
    def on_page_load(self, request: gr.Request) -> dict:
        """A page opened. After a reload (new session hash, same browser cookie) the browser's
        detached session is taken over and every view shows it as it was; otherwise nothing
        changes (a fresh page). Never hands over another browser's session. Returns at least one
        update: Gradio takes an empty dict for a single value and fails (twelve outputs)."""
        session_id = getattr(request, "session_hash", None) or ""
        owner = owner_of(request)
        unchanged = {self.c.status: gr.skip()}  # a fresh page (an empty dict would not do: see the docstring)
        self.store.page_opened(session_id)  # a page's session, which a reload may resume (not an API client's)
        if not session_id or not owner:
            return unchanged
        work = self.store.resume(session_id, owner)
        deadline = time.monotonic() + RESUME_WAIT_S
        # The old page's unload may arrive just after this load: wait a moment for it, but only
        # while this browser has a session whose page has not gone yet.
        while work is None and self.store.attached_of(owner) and time.monotonic() < deadline:
            time.sleep(0.1)
            work = self.store.resume(session_id, owner)
        if work is None or work.video is None:
            return unchanged
        objects = len(work.doc.object_ids)
        message = f"Welcome back: your video and {objects} object(s) are as you left them."
        if work.progress.running:
            message += f" {work.progress.label} is still running; the page shows what it has done."
        out = self.refresh(work, work.shown_frame, message)
        out[self.c.progress] = views.markdown_text(work.progress.summary())
        out.update(self.size_updates(work))
        return out

    @guarded
    def on_unload(self, request: gr.Request) -> None:
        """Tab closed or reloaded (the two look the same here), or an API client closed (its
        heartbeat ended): keep a page's work for the grace period so that a reload resumes it
        (:meth:`on_page_load`); a closed tab's session is freed by the store's sweep once the
        grace period is over. A session without a video holds nothing worth keeping, and an
        API client's (no page loaded it) can never be resumed: both are freed at once."""
        session_id = getattr(request, "session_hash", None)
        if not session_id:
            return
        work = self.store.peek(session_id)
        self.store.page_closed(session_id)
        if work is None:
            return
        if not work.from_page or (work.video is None and not work.undo):
            self.store.close(session_id)
        else:
            self.store.detach(session_id)

    # ------------------------------------------------------------------ API-only endpoints
    @guarded
    def api_add_point(self, frame: int, x: float, y: float, positive: bool, obj_id: int, request: gr.Request) -> dict:
        """Add a click for object `obj_id` (made if missing) on `frame` at pixel (x, y)."""

        def action(work: WorkState) -> str:
            where = api_whole(frame, "frame"), api_number(x, "x"), api_number(y, "y")
            return operations.click(work, self.engine, *where, "add" if positive else "remove")

        return self._api_prompt(request, obj_id, action, frame)

    @guarded
    def api_add_box(
        self, frame: int, x0: float, y0: float, x1: float, y1: float, obj_id: int, request: gr.Request,
    ) -> dict:
        """Give object `obj_id` (made if missing) a box (two opposite corners) on `frame`."""

        def action(work: WorkState) -> str:
            at = api_whole(frame, "frame")
            corners = [api_number(v, name) for v, name in zip((x0, y0, x1, y1), ("x0", "y0", "x1", "y1"), strict=True)]
            operations.click(work, self.engine, at, *corners[:2], "box")
            return operations.click(work, self.engine, at, *corners[2:], "box")

        return self._api_prompt(request, obj_id, action, frame)

    def _api_prompt(self, request: gr.Request, obj_id: int, action: Callable[[WorkState], str], frame: int) -> dict:
        """Run a prompt action for the API: returns {message, frame, areas (pixels per object)}."""
        try:
            work = self.work(request)
            obj_id = api_whole(obj_id, "obj_id")
            with locked(work):
                operations.require_video(work)
                if obj_id not in work.doc.object_ids:
                    if work.next_object_id() != obj_id:
                        raise UserError(f"There is no object {obj_id}; "
                                        f"the next new object gets id {work.next_object_id()}.")
                    operations.add_object(work)
                operations.select_object(work, obj_id)
                message = action(work)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "frame": frame, "areas": {}}
        areas = {str(o): int(work.doc.area(int(frame), o) or 0) for o in work.doc.object_ids}
        return {"message": message, "frame": frame, "areas": areas}

    @guarded
    def api_track(self, direction: str, frame: int, frames: int, request: gr.Request) -> dict:
        """Track 'forward', 'backward' or 'both' from `frame` (`frames` = 0: to the end); waits."""
        try:
            work = self.work(request)
            start, count = api_whole(frame, "frame"), api_whole(frames or 0, "frames")
            thread = operations.start_tracking(work, self.engine, start, str(direction), count or None)
        except UserError as exc:
            return {"message": str(exc), "done": 0}
        thread.join()
        return {"message": work.progress.summary(), "done": work.progress.done, "error": work.progress.error}


def running_status(progress: operations.TrackProgress, where: str = "", counted: bool = False) -> str:
    """The status line while a long step runs: what runs now, and what Cancel does, e.g.
    'Tracking forward from frame 3 (10 frames)... Cancel stops it: the frames done so far are kept.'
    (``counted``: say the step's total, where it is a count a person asked for)."""
    count = f" ({progress.total} {progress.unit})" if counted and progress.total else ""
    at = f" {where}" if where else ""
    part = f" ({progress.part})" if progress.part else ""  # making files: the file being made
    return f"{progress.label}{part}{at}{count}... Cancel stops it: {progress.kept}."


def section_progress(
    work: WorkState, thread: threading.Thread, status: Any, progress: Any, then: str = "",
) -> Iterator[dict]:  # fmt: skip
    """While ``thread`` runs, every POLL_S: the status line saying what runs (and what Cancel
    does, followed by ``then``) and the section's own progress line (``status``, ``progress``:
    their components)."""
    said = views.markdown_text(running_status(work.progress) + then)
    while thread.is_alive():
        yield {status: said, progress: views.markdown_text(work.progress.summary())}
        thread.join(POLL_S)


def api_whole(value: Any, name: str) -> int:
    """An API call's argument that must be a whole number: 3 or 3.0, not True, 1.5, "1" or None
    (``int()`` would take True as 1 and "1" as 1). Ranges are the operations' to check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value % 1:
        raise UserError(f"{name} must be a whole number, not {_shown(value)}.")
    return int(value)


def api_number(value: Any, name: str) -> float:
    """An API call's argument that must be a finite number (not a bool, a text, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a number, not {_shown(value)}.")
    return float(value)


def api_wholes(values: Any, name: str) -> list[int]:
    """A list of whole numbers (``api_whole`` each)."""
    if not isinstance(values, (list, tuple)):
        raise UserError(f"{name} must be a list of whole numbers, not {_shown(values)}.")
    return [api_whole(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _shown(value: Any) -> str:
    """A value as a message names it: its type, and its start where that helps."""
    if isinstance(value, str):
        return f"the text {value[:20]!r}"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


@contextmanager
def locked(work: WorkState, wait_s: float = 60.0) -> Iterator[WorkState]:
    """Hold the session's lock. While tracking runs, refuse at once (the run can take minutes);
    otherwise wait for the step before (quick clicks are done in turn)."""
    if work.progress.running or not work.lock.acquire(timeout=wait_s):
        running = work.progress.label if work.progress.running else "The last step"
        raise UserError(f"{running} is still running. Wait for it to finish, or press Cancel.")
    try:
        yield work
    finally:
        work.lock.release()
