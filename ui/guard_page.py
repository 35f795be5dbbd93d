"""Nothing lost without asking: the page's two questions about work that would be lost.

- **Replace?** An upload onto work that has anything a person made (clicks, masks, steps to
  undo) is held back, and a panel says exactly what would be lost, with that work as a
  session file to download: *Replace* loads the upload as before, *Keep my work* drops it
  (the upload is released as the store releases uploads) and changes nothing. Only a page
  is asked: an API client (``gradio_client``, which cannot answer a panel) replaces at once,
  as before (see the README's API section).
- **Restore?** After a server restart, the first page of the browser whose work was kept on
  disk (``ui.saved_work``) is offered it: *Restore* decodes the kept upload again and loads
  the kept session file into it (with progress, and Cancel); *Start afresh* deletes it.

:class:`GuardPage` makes the components (``ui.layout`` calls :meth:`GuardPage.build` and
:meth:`GuardPage.wire`); :class:`GuardHandlers` answers their events on the plumbing of
:class:`ui.callbacks.Handlers`.

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` annotations at run time.)
"""

import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from annotation import formats, operations
from annotation.document import UserError
from ui import views
from ui.callbacks import POLL_S, Controls, Handlers, guarded, locked, owner_of, running_status
from ui.saved_work import SavedWork, SavedWorkError, has_work, lost_words, restore_source
from ui.sessions import WorkState

_REPLACING = contextvars.ContextVar("replacing", default=False)  # the person said Replace: do not ask again


@dataclass(frozen=True)
class PendingUpload:
    """An upload waiting for the person's answer: the event's inputs as they came."""

    files: tuple[str, ...]
    sample_fps: Any
    detail: Any

    def shown_name(self) -> str:
        """"'other.mp4'", or "3 images" for several files."""
        return f"'{Path(self.files[0]).name}'" if len(self.files) == 1 else f"{len(self.files)} files"


class GuardPage:
    """The two panels (hidden until they have a question)."""

    def build(self) -> None:
        with gr.Column(visible=False, variant="panel", elem_id="restore-offer") as self.offer:
            self.offer_text = gr.Markdown("", elem_id="restore-offer-text", latex_delimiters=[])
            with gr.Row():
                self.restore = gr.Button("Restore", variant="primary", elem_id="restore-confirm")
                self.decline = gr.Button("Start afresh", elem_id="restore-decline")
        with gr.Column(visible=False, variant="panel", elem_id="replace-guard") as self.guard:
            self.guard_text = gr.Markdown("", elem_id="replace-guard-text", latex_delimiters=[])
            self.guard_file = gr.File(label="Your work as a session file (download it to keep a copy)",
                                      interactive=False, elem_id="replace-guard-file")  # fmt: skip
            with gr.Row():
                self.replace = gr.Button("Replace", variant="stop", elem_id="replace-confirm")
                self.keep = gr.Button("Keep my work", variant="primary", elem_id="replace-cancel")

    def view_outputs(self) -> list[Any]:
        """What an upload may update (``Controls.extras``): the replace panel."""
        return [self.guard, self.guard_text, self.guard_file]

    def wire(self, demo: gr.Blocks, c: Controls, h: "GuardHandlers") -> None:
        h.base.before_upload = h.hold
        view = c.view_outputs()
        self.replace.click(h.on_replace, None, [*view, c.upload, c.downloads], api_visibility="private")
        self.keep.click(h.on_keep, None, [c.status, *self.view_outputs()], api_visibility="private")
        offer = [self.offer, self.offer_text]
        self.restore.click(h.on_restore, None, [*view, *offer], api_visibility="private", show_progress="hidden",
                           concurrency_limit=8)  # fmt: skip
        self.decline.click(h.on_decline, None, [c.status, *offer], api_visibility="private")
        demo.load(h.on_offer, None, offer, api_visibility="private", show_progress="hidden")


class GuardHandlers:
    def __init__(self, base: Handlers, page: GuardPage) -> None:
        self.base = base
        self.page = page

    # ------------------------------------------------------------------ replace
    def hold(self, files: list[str], sample_fps: Any, detail: Any, request: gr.Request) -> dict | None:
        """Before an upload replaces a page's work that has anything to lose: hold it back and
        ask (the updates that show the question), else None (go on)."""
        if _REPLACING.get():
            return None
        b = self.base
        try:
            work = b.work(request)
        except UserError:
            return None  # no work yet (or not this browser's: the upload says so itself)
        if not work.from_page or work.progress.running or not has_work(work):
            return None
        pending = PendingUpload(tuple(files), sample_fps, detail)
        try:
            with locked(work):
                for file in files:
                    b.store.hold_upload(work, Path(file))
                self._drop_pending(work)
                work.pending_upload = pending
                words = f"{lost_words(work)}. Replace it with {pending.shown_name()}?"
                record = operations.session_record(work)
                stem = f"{formats.file_stem(work.video.name)}_session"
                session_file = formats.export_session_json(record, work.exports_folder(), stem=stem)
        except UserError as exc:
            return b.warn(str(exc))
        p = self.page
        return {
            b.c.status: views.markdown_text(f"{words} Your work stays until you answer (Replace or Keep my work)."),
            b.c.upload: None,
            p.guard: gr.Column(visible=True),
            p.guard_text: f"**{views.markdown_text(words)}** " + views.markdown_text(
                "The session file below holds your objects, clicks and masks (Load session brings them back on "
                "the same video). Undo cannot bring back work that was replaced."
            ),
            p.guard_file: str(session_file),
        }  # fmt: skip

    def _hidden(self) -> dict:
        p = self.page
        return {p.guard: gr.Column(visible=False), p.guard_file: None}

    def _drop_pending(self, work: WorkState) -> PendingUpload | None:
        """Forget the waiting upload and release its files (not those the loaded video came from)."""
        pending, work.pending_upload = work.pending_upload, None
        if pending is not None:
            current = set(work.source.files) if work.source is not None else set()
            for file in pending.files:
                if Path(file).resolve() not in current:
                    self.base.store.release_upload(work, Path(file))
        return pending

    @guarded
    def on_replace(self, request: gr.Request) -> dict:
        b = self.base
        try:
            work = b.work(request)
        except UserError as exc:
            return {**b.warn(str(exc)), **self._hidden()}
        pending, work.pending_upload = work.pending_upload, None
        if pending is None:
            return {**b.warn("There is no upload waiting: upload the file again."), **self._hidden()}
        token = _REPLACING.set(True)
        try:
            out = b.on_upload_files(list(pending.files), pending.sample_fps, request, pending.detail)
        finally:
            _REPLACING.reset(token)
        return {**out, **self._hidden()}

    @guarded
    def on_keep(self, request: gr.Request) -> dict:
        b = self.base
        try:
            work = b.work(request)
        except UserError as exc:
            return {**b.warn(str(exc)), **self._hidden()}
        pending = self._drop_pending(work)
        b.store.tidy_upload_cache()
        name = work.video.name if work.video is not None else "your video"
        dropped = f" {pending.shown_name()} was not loaded." if pending is not None else ""
        return {b.c.status: views.markdown_text(f"Kept your work on '{name}'.{dropped}"), **self._hidden()}

    # ------------------------------------------------------------------ restore
    @guarded
    def on_offer(self, request: gr.Request) -> dict:
        """A page opened: offer the browser's work kept from before a restart, if it has some
        and this page has no work of its own (a reload resumes that: ``Handlers.on_page_load``)."""
        p, b = self.page, self.base
        session_id, owner = getattr(request, "session_hash", None) or "", owner_of(request)
        saved = b.store.saved_for(owner) if owner else None
        if saved is None or b.store.peek(session_id) is not None:
            return {p.offer: gr.skip()}
        return {p.offer: gr.Column(visible=True), p.offer_text: views.markdown_text(saved.offer_text())}

    def _offer_hidden(self) -> dict:
        return {self.page.offer: gr.Column(visible=False)}

    @guarded
    def on_restore(self, request: gr.Request) -> Iterator[dict]:
        """Restore the kept work: the upload decoded again, the session file loaded into it
        (its prompts replayed, its masks as they were), with progress; Cancel, or a problem,
        leaves the kept work waiting (or, if it cannot be used, deletes it with a plain message)."""
        b = self.base
        session_id, owner = getattr(request, "session_hash", None) or "", owner_of(request)
        saved = b.store.saved_for(owner) if owner else None
        if saved is None:
            yield {**b.warn("There is no kept work for this browser any more (it may have run out of time)."),
                   **self._offer_hidden()}  # fmt: skip
            return
        current = b.store.peek(session_id)
        if current is not None:
            if current.video is not None and has_work(current):
                yield b.warn("This page has work of its own now. Reload the page to be offered the kept work again.")
                return
            b.store.close(session_id)  # nothing in it to lose
        try:
            work = b.store.adopt(session_id, owner, saved)
        except UserError as exc:
            yield b.warn(str(exc))
            return
        c = b.c
        yield {c.status: views.markdown_text(f"Restoring your work on '{saved.video_name}': reading the video...")}
        try:
            loading = self._start_restoring(work, saved)
        except (UserError, SavedWorkError) as exc:
            yield self._refused(work, saved, owner, str(exc))
            return
        status = views.markdown_text(running_status(work.progress))
        while loading.thread.is_alive():
            yield {c.status: status, c.progress: views.markdown_text(work.progress.summary())}
            loading.thread.join(POLL_S)
        progress = work.progress
        if progress.error:
            yield self._refused(work, saved, owner, progress.error)
            return
        if progress.cancelled:
            b.store.give_back(session_id, saved)
            yield {c.status: "Restoring was cancelled; the kept work still waits: Restore or Start afresh."}
            return
        with locked(work):
            work.undo.clear()  # undo would go back to the empty video the restore started from
            work.redo.clear()
            work.source = saved.source
            work.shown_frame = min(saved.shown_frame, work.video.count - 1)
        message = (f"Restored your work on '{saved.video_name}': {len(work.doc.object_ids)} object(s), with their "
                   "masks as they were. The undo history starts afresh.")  # fmt: skip
        out = b.refresh(work, work.shown_frame, message)
        out[c.progress] = views.markdown_text(progress.summary())
        out.update(b.size_updates(work))
        yield {**out, **self._offer_hidden()}

    def _start_restoring(self, work: WorkState, saved: SavedWork) -> operations.Loading:
        b = self.base
        source = restore_source(saved)
        size = saved.image_size if saved.image_size in b.engine.image_sizes else b.engine.image_size
        with locked(work):
            operations.load_upload(work, b.engine, source.files, b.limits, name=source.name, fps=source.fps,
                                   image_size=size)  # fmt: skip
        return operations.start_loading(work, b.engine, saved.session_file)

    def _refused(self, work: WorkState, saved: SavedWork, owner: str, reason: str) -> dict:
        """Kept work that cannot be used is deleted, with a plain message; the page starts afresh."""
        b = self.base
        b.store.give_back(work.session_id, saved)
        b.store.discard_saved(saved, owner)
        message = f"Your kept work on '{saved.video_name}' could not be restored, so it was deleted: {reason}"
        return {**b.warn(message), **self._offer_hidden()}

    @guarded
    def on_decline(self, request: gr.Request) -> dict:
        b = self.base
        owner = owner_of(request)
        saved = b.store.saved_for(owner) if owner else None
        if saved is None or not b.store.discard_saved(saved, owner):
            return {b.c.status: "There is no kept work any more.", **self._offer_hidden()}
        message = f"Started afresh: your kept work on '{saved.video_name}' was deleted."
        return {b.c.status: views.markdown_text(message), **self._offer_hidden()}
