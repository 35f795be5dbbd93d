"""The page's dataset tools: class labels (step 2), imports of masks and detections
(auto-annotation), the brush and eraser, and the YOLO dataset's validation split (step 4).

:class:`DatasetPage` makes the components; ``ui.layout`` calls each builder where its part
belongs on the page. :class:`DatasetHandlers` answers their events with the plumbing of
:class:`ui.callbacks.Handlers` (the session's lock, warnings, a full refresh), and adds the
label views to every full refresh. The page's events here are private (their inputs are the
page's own); ``gradio_client`` gets named endpoints that take plain values and answer a dict
(see :meth:`DatasetPage.wire`).

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` annotations, and
``gr.api`` the parameter types, at run time.)
"""

import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from annotation import concepts, formats, imports, operations
from annotation.document import UserError
from annotation.render import object_color
from annotation.work import LoadedVideo
from ui import views
from ui.callbacks import POLL_S, Controls, Handlers, api_number, api_whole, guarded, locked, running_status
from ui.help import help_line
from ui.sessions import WorkState

LABELS_HELP = """
**Labels** are the classes a training pipeline learns (COCO categories, YOLO classes). Every
object has one; a new object takes the label chosen last. Type new labels (several: separate
them with commas), or load a `classes.txt` (one per line) or a YOLO `data.yaml`. Renaming a
label renames it on every object; a label no object uses can be removed. The files list the
labels as classes in this order, less "object" while no object has it.
"""

IMPORT_HELP = """
**Start from annotations made elsewhere**: masks (a zip of PNG masks, COCO, YouTube-VIS) become
each object's mask on its frames; a detector's boxes (COCO detection results, or a YOLO `.txt`
for the frame shown) become new objects with a box each, and SAM 2 makes their masks. Then
track as usual. Boxes on several frames are matched instead, while the whole video is tracked:
a box on an object already tracked there is that object (the same person on frames 0 and 30 is
one object), as in "Find and track in the whole video" (Cancel keeps what is done).
Classes the labels lack are offered to add. *Which frame*: a COCO `image_id` is
the frame + 1 (frame 0 is image 1, as this app's COCO files number them) unless the file lists
its `images`; then an image's frame is its `frame_index` field if it has one, else the number at
the end of its `file_name` (`walk_00012.jpg` is frame 12), else its id - 1 (in an image set, the
image's own file name comes first). PNG masks and YOLO `.txt` files go by the number at the end
of their names.
"""

BRUSH_HELP = """
**Brush and eraser**: choose the object (step 2) and the frame, press **Paint on this frame**,
then paint onto its mask with the brush or take away with the eraser (the circle icon sets the
size). **Apply** makes the painted mask the object's mask on that frame (Undo takes it back);
tracking again follows it.
"""

# Each section's help as one line on the page; the texts above are its "More help".
LABELS_LINE = "The classes your objects belong to: add them here, or load a `classes.txt` or YOLO `data.yaml`."
IMPORT_LINE = "Start from masks or a detector's boxes made elsewhere; then track as usual."
BRUSH_LINE = "Paint or erase the chosen object's mask on the frame shown."
DROP_HEIGHT = 110  # a drop zone's height (px): its words show whole (at 60 they were cut off)

ADD_MISSING = "Add these labels and import"
PAINT = "Paint on this frame"
LAYER_ALPHA = 128  # the mask's layer in the editor: the object's colour, half see-through
BRUSH_OPACITY = 0.5  # brush strokes, like the layer (the editor stores them as alpha 127)
PAINTED_ALPHA = 64  # a layer pixel at least this opaque is the object (the eraser leaves 0)
EDITOR_START = (16, 16)  # the editor's first canvas: smaller than any frame (see DatasetPage.build_brush)


@dataclass
class PendingImport:
    """A file read for a video whose classes are not labels yet: kept on the session until the
    user presses "Add these labels and import" (or imports something else)."""

    imported: imports.Imported
    video: weakref.ref[LoadedVideo]  # weak: a new upload's frames replace this video's in memory
    frame: int  # the frame shown when it was imported

    def fits(self, work: WorkState) -> bool:
        return work.video is not None and self.video() is work.video


@dataclass(frozen=True)
class BrushTarget:
    """What the brush's editor shows: the object and the frame it was loaded for, on which video."""

    frame: int
    obj: int
    video: weakref.ref[LoadedVideo]

    def fits(self, work: WorkState) -> bool:
        return work.video is not None and self.video() is work.video


# ----------------------------------------------------------------------------- plain helpers


def split_labels(text: str) -> list[str]:
    """'car, person' -> ['car', 'person'] (commas and line breaks separate labels)."""
    return [part for part in re.split(r"[,\n]", str(text or "")) if part.strip()]


def api_label_names(names: Any) -> list[str]:
    """An API call's labels: a list of names, or one comma-separated text. A text is never read
    as a sequence of letters ("abc" is one label, not a, b and c)."""
    if isinstance(names, str):
        return split_labels(names)
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    raise UserError("Send the labels as a list of names, or as one text with commas between them.")


def brush_size(size: tuple[int, int]) -> int:
    """The brush's and eraser's radius in the frame's pixels (the editor's own default is 25,
    whatever the frame): about a sixtieth of its smaller side; the size button changes it."""
    return max(2, round(min(size) / 60))


def mask_layer(mask: np.ndarray | None, size: tuple[int, int], color: tuple[int, int, int]) -> np.ndarray:
    """The editor's starting layer: the mask in the object's colour, half see-through, on a
    transparent frame-sized picture (HxWx4)."""
    layer = np.zeros((*size, 4), np.uint8)
    if mask is not None:
        layer[mask] = (*color, LAYER_ALPHA)
    return layer


def painted_mask(value: dict | None) -> np.ndarray | None:
    """The mask an editor value holds: its layers' pixels that are opaque enough (brush strokes
    and the starting layer), or None when it has no layer (nothing was loaded). A layer without
    transparency (the editor sends none, but a value sent through the API can be one) is read
    as a picture is (:func:`picture_mask`), not as all opaque, which would be the whole frame."""
    layers = [np.asarray(layer) for layer in (value or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    return np.logical_or.reduce([
        layer[..., 3] >= PAINTED_ALPHA if layer.ndim == 3 and layer.shape[2] == 4 else _values_mask(layer, 255)
        for layer in layers
    ])  # fmt: skip


FULL_FRAME = 0.99  # a mask over this share of the frame is most likely a misread picture: the message warns


def read_mask_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask picture the size of the frame (H, W) -> HxW bool (:func:`picture_mask`). A picture
    that is not one, of another size, or with no object pixel is refused (UserError), before
    anything changes."""
    height, width = size
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise UserError(f"The mask picture is {image.size[0]}x{image.size[1]}, but the video is "
                                f"{width}x{height}.")  # fmt: skip
            mask = picture_mask(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise UserError(f"'{path.name}' is not a picture this page can read: send a PNG of the mask.") from None
    if not mask.any():
        raise UserError(f"'{path.name}' has no object pixels: paint the object on transparent, or in white "
                        "(or any colour at least half bright) on black.")  # fmt: skip
    return mask


def picture_mask(image: Image.Image) -> np.ndarray:
    """The object in a mask picture (HxW bool), read as people make them:

    - with transparency (an alpha channel, or a transparent colour) that is not opaque
      everywhere: the pixels at least half opaque;
    - else a 0/1 mask, when every value is 0 or 1 (mode "1", or "L" or 16-bit pictures
      holding 0s and 1s, as label tools write them): the 1s;
    - else the pixels at least half bright in some channel: 128 of 255 for 8-bit pictures,
      32768 of 65535 for 16-bit ("I;16") and 32-bit integer ("I") ones, 0.5 for floating
      point ("F"). Near-black noise (a dark JPEG) is then no object, where "not black" was.
    """
    if image.mode == "1":
        return np.array(image, bool)
    keyed = image.mode in ("P", "L", "RGB") and "transparency" in image.info  # a palette entry or colour is see-through
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or keyed:
        alpha = np.array(image.convert("RGBA"))[..., 3]
        if (alpha < 255).any():
            return alpha >= 128
    if image.mode.startswith("I") or image.mode == "F":
        values = np.array(image)
        full = 1.0 if image.mode == "F" else 65535
    else:
        values, full = np.array(image.convert("RGB")), 255
    return _values_mask(values, full)


def _values_mask(values: np.ndarray, full: float) -> np.ndarray:
    """HxW or HxWxC values from 0 to ``full`` -> HxW bool: a 0/1 mask's 1s, else the pixels at
    least half of ``full`` in some channel."""
    top = values.max(axis=-1) if values.ndim == 3 else values
    if np.issubdtype(top.dtype, np.integer) and top.size and 0 <= top.min() and top.max() <= 1:
        return top == 1
    return top >= full / 2


def shown_frame(imported: imports.Imported, frame: int) -> int:
    """The frame to show after an import: ``frame`` (the one shown) if it got prompts, else the first that did."""
    frames = sorted({m.frame for m in imported.masks} | {b.frame for b in imported.boxes})
    return frame if frame in frames or not frames else frames[0]


def api_file(value: Any) -> str:
    """The uploaded file an API call names. Only a file sent as gradio_client's ``handle_file``
    counts: Gradio checks such a path is an upload, but it would pass a plain string on as it is."""
    meta = value.get("meta") if isinstance(value, dict) else None
    if not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData" or not isinstance(value.get("path"), str):
        raise UserError("Send the file with gradio_client.handle_file(path).")
    return value["path"]


def labels_state(work: WorkState) -> dict:
    """The labels and every object's label, as the API answers them."""
    return {
        "labels": list(work.labels), "last_label": work.last_label,
        "objects": {str(o.id): {"name": o.name, "label": o.label} for o in work.objects},
    }  # fmt: skip


# ----------------------------------------------------------------------------- components


class DatasetPage:
    """The components, made by the builders in the page's order (``ui.layout`` calls them)."""

    def build_object_label(self) -> None:
        """In the objects' group, under the object list: the chosen object's label."""
        self.obj_label = gr.Dropdown([], label="Label (class) of this object", elem_id="obj-label",
                                     interactive=False)  # fmt: skip

    def build_labels(self) -> None:
        """In the "Labels" accordion: the label list (add, load a file, rename, remove)."""
        help_line(LABELS_LINE, LABELS_HELP)
        self.new_labels = gr.Textbox(label="Add labels (separate several with commas; press Enter)",
                                     elem_id="new-labels")  # fmt: skip
        # Tall enough for the drop zone's words ("Drop File Here - or - Click to Upload") to show whole.
        self.label_file = gr.File(label="Load labels: a classes.txt or a YOLO data.yaml", type="filepath",
                                  file_types=[".txt", ".yaml", ".yml"], elem_id="label-file",
                                  height=DROP_HEIGHT)  # fmt: skip
        with gr.Row():
            self.label_pick = gr.Dropdown([], label="Label to rename or remove", elem_id="label-pick")
            self.label_name = gr.Textbox(label="New name (press Enter)", elem_id="label-new-name")
        self.remove_label = gr.Button("Remove this label", elem_id="remove-label", size="sm")

    def build_imports(self) -> None:
        """In the "Import" accordion: a file of masks or detections, and the offer to add its labels."""
        help_line(IMPORT_LINE, IMPORT_HELP)
        self.min_score = gr.Number(0.5, minimum=0, maximum=1, step=0.05, elem_id="min-score",
                                   label="Detections: keep boxes scoring at least (0 to 1)")  # fmt: skip
        self.import_file = gr.File(
            label="Import masks or detections (PNG zip, COCO, YouTube-VIS, COCO detections, YOLO txt)",
            type="filepath", file_types=[".zip", ".json", ".txt"], elem_id="import-file", height=DROP_HEIGHT,
        )  # fmt: skip
        self.add_missing = gr.Button(ADD_MISSING, visible=False, elem_id="add-missing-labels", variant="primary")

    def build_brush(self) -> None:
        """In the "Brush" accordion under the viewer: the editor shows the frame with the object's mask as a layer.

        The editor starts hidden, and its first canvas is smaller than any frame: Gradio 6.31's
        editor places a layer by the bounds of what it holds, which still include the first
        canvas when a frame is loaded, so a frame smaller than that canvas got its mask layer
        off the picture. Each load also empties it first (:meth:`DatasetHandlers.on_brush_reset`):
        after a larger video, the old layers' bounds would do the same."""
        help_line(BRUSH_LINE, BRUSH_HELP)
        with gr.Row():
            self.brush_load = gr.Button(PAINT, elem_id="brush-load", size="sm")
            self.brush_apply = gr.Button("Apply the painted mask", elem_id="brush-apply", size="sm",
                                         variant="primary")  # fmt: skip
        self.editor = gr.ImageEditor(
            label="Brush and eraser", type="numpy", image_mode="RGBA", sources=(), transforms=(), layers=False,
            canvas_size=EDITOR_START, visible=False, interactive=True, buttons=["fullscreen"], elem_id="brush",
            brush=gr.Brush(colors=[("rgb(255, 255, 255)", BRUSH_OPACITY)], color_mode="fixed"),
            eraser=gr.Eraser(),
        )  # fmt: skip

    def build_split(self) -> gr.Number:
        """In step 4: the YOLO dataset's validation split (passed to the export)."""
        self.val_every = gr.Number(0, precision=0, minimum=0, elem_id="val-every",
                                   label="YOLO dataset: every k-th frame to validation (0 = none)")  # fmt: skip
        return self.val_every

    def view_outputs(self) -> list[Any]:
        """What every full refresh updates (``Controls.extras``): the label choices."""
        return [self.obj_label, self.label_pick]

    def wire(self, controls: Controls, handlers: "DatasetHandlers") -> None:
        c, h = controls, handlers
        view = c.view_outputs()
        quick = {"show_progress": "minimal", "api_visibility": "private"}
        self.obj_label.input(h.on_set_label, [self.obj_label, c.frame], view, **quick)
        self.new_labels.submit(h.on_add_labels, [self.new_labels, c.frame], [*view, self.new_labels], **quick)
        self.label_file.upload(h.on_label_file, [self.label_file, c.frame], [*view, self.label_file], **quick)
        self.label_name.submit(h.on_rename_label, [self.label_pick, self.label_name, c.frame],
                               [*view, self.label_name], **quick)  # fmt: skip
        self.remove_label.click(h.on_remove_label, [self.label_pick, c.frame], view, **quick)
        import_outputs = [*view, self.import_file, self.add_missing]
        self.import_file.upload(h.on_import, [self.import_file, self.min_score, c.frame], import_outputs, **quick)
        self.add_missing.click(h.on_add_missing, None, import_outputs, **quick)
        self.brush_load.click(h.on_brush_reset, None, [self.editor], api_visibility="private",
                              show_progress="hidden").then(
            h.on_brush_load, [c.frame], [self.editor, c.status], **quick)  # fmt: skip
        self.brush_apply.click(h.on_brush_apply, [self.editor], view, **quick)
        gr.api(h.api_labels, api_name="labels")
        gr.api(h.api_add_labels, api_name="add_labels")
        gr.api(h.api_rename_label, api_name="rename_label")
        gr.api(h.api_remove_label, api_name="remove_label")
        gr.api(h.api_set_object_label, api_name="set_object_label")
        gr.api(h.api_load_labels, api_name="load_labels")
        gr.api(h.api_import, api_name="import_annotations")
        gr.api(h.api_apply_mask, api_name="apply_mask")


# ----------------------------------------------------------------------------- handlers


class DatasetHandlers:
    """Handlers of the dataset tools, on the plumbing of the page's :class:`Handlers`."""

    def __init__(self, base: Handlers, page: DatasetPage) -> None:
        self.base = base
        self.page = page
        base.refreshers.append(self.label_views)

    def failed(self, handler: str, exc: Exception) -> Any:
        """What :func:`guarded` answers an unexpected exception with (as the page's other handlers)."""
        return self.base.failed(handler, exc)

    def label_views(self, work: WorkState) -> dict:
        """The label choices for a full refresh: the chosen object's label, and the list."""
        if isinstance(work.pending_import, PendingImport) and not work.pending_import.fits(work):
            work.pending_import = None  # read for a video no longer loaded: its masks need not wait
        active = work.registry.get(work.active) if work.active in work.doc.object_ids else None
        return {
            self.page.obj_label: gr.Dropdown(choices=list(work.labels), value=active.label if active else None,
                                             interactive=active is not None),
            self.page.label_pick: gr.Dropdown(choices=list(work.labels), value=None),
        }  # fmt: skip

    def _uploaded(self, work: WorkState, file: str | None, what: str) -> Path:
        """An upload this session may read (held until the session closes), or UserError."""
        if not file:
            raise UserError(f"No file was received. Choose {what}.")
        problem = self.base._upload_problem(file, what)
        if problem:
            raise UserError(problem)
        self.base.store.hold_upload(work, Path(file))
        return Path(file)

    # ------------------------------------------------------------------ labels
    @guarded
    def on_set_label(self, label: str | None, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            if work.active is None:
                raise UserError("Choose an object first.")
            return operations.set_label(work, work.active, str(label or "")), int(frame)

        return self.base.run(request, action)

    @guarded
    def on_add_labels(self, text: str, frame: float, request: gr.Request) -> dict:
        result = self.base.run(request, lambda work: (self._add(work, split_labels(text)), int(frame)))
        if self.base.c.status in result and not str(result[self.base.c.status]).startswith("**Problem"):
            result[self.page.new_labels] = ""  # added: the box is ready for the next ones
        return result

    def _add(self, work: WorkState, names: list[str]) -> str:
        names = [clean for clean in (formats.clean_name(n) for n in names) if clean]  # as add_labels keeps them
        if not names:
            raise UserError("Type a label to add (several: separate them with commas).")
        added = operations.add_labels(work, names)
        if not added:
            return f"Nothing to add: the labels have {', '.join(names[:8])} already."
        return f"Added {len(added)} label(s): {', '.join(added)}. The labels are now {', '.join(work.labels)}."

    @guarded
    def on_label_file(self, file: str | None, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            path = self._uploaded(work, file, "a classes.txt or a YOLO data.yaml")
            names = operations.read_label_file(path)
            if not names:
                raise UserError(f"'{path.name}' names no class.")
            return f"From '{path.name}': " + self._add(work, names), int(frame)

        result = self.base.run(request, action)
        self.base.store.tidy_upload_cache()
        return {**result, self.page.label_file: None}  # emptied, so the same file can be chosen again

    @guarded
    def on_rename_label(self, old: str | None, new: str, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            if not old:
                raise UserError("Choose the label to rename in 'Label to rename or remove'.")
            return operations.rename_label(work, old, new), int(frame)

        result = self.base.run(request, action)
        if not str(result.get(self.base.c.status, "")).startswith("**Problem"):
            result[self.page.label_name] = ""
        return result

    @guarded
    def on_remove_label(self, name: str | None, frame: float, request: gr.Request) -> dict:
        def action(work: WorkState) -> tuple[str, int]:
            if not name:
                raise UserError("Choose the label to remove in 'Label to rename or remove'.")
            return operations.remove_label(work, name), int(frame)

        return self.base.run(request, action)

    # ------------------------------------------------------------------ imports
    def _reader(
        self, work: WorkState, path: Path, frame: int, min_score: float | None
    ) -> Callable[[], imports.Imported]:
        """What reads the file for this video, on the import's thread (the choices are checked
        here, at once); a file that does not fit raises UserError with the reader's plain message."""
        operations.require_video(work)
        score = float(min_score or 0)
        if not 0 <= score <= 1:
            raise UserError("The lowest score to keep must be between 0 and 1.")
        frame = operations.check_frame(work, frame)

        def read() -> imports.Imported:
            shape = operations.video_shape(operations.require_video(work))
            try:
                return imports.read_any(path, shape, frame, score, list(work.labels), cancel=work.cancel)
            except imports.ImportProblem as exc:
                raise UserError(str(exc)) from None

        return read

    def _follow(self, work: WorkState, importing: operations.Importing, frame: int, done: dict) -> Iterator[dict]:
        """The progress line while the import runs, then its outcome: the page at the frame to
        show (the one shown if it got prompts, else the first that did), a plain problem, or
        the offer to add the classes the labels lack (the file read waits on the session)."""
        c = self.base.c
        progress = importing.progress
        while importing.thread.is_alive():  # the status says the step under way (reading the file, then its prompts)
            status = views.markdown_text(running_status(progress))
            yield {c.status: status, c.progress: views.markdown_text(progress.summary())}
            importing.thread.join(POLL_S)
        summary = {c.progress: views.markdown_text(progress.summary())}
        if importing.missing is not None and importing.imported is not None and work.video is not None:
            work.pending_import = PendingImport(importing.imported, weakref.ref(work.video), frame)
            offer = f"{importing.missing} Or press '{ADD_MISSING}' to do both."
            yield {**self.base.warn(offer), **summary, **done, self.page.add_missing: gr.Button(visible=True)}
        elif progress.error:
            yield {**self.base.warn(progress.error), **summary, **done}
        elif progress.cancelled:
            yield {c.status: views.markdown_text(f"Import cancelled: {progress.kept}."), **summary, **done}
        else:
            yield {**self.base.refresh(work, shown_frame(importing.imported, frame), importing.message), **summary,
                   **done}  # fmt: skip

    @guarded
    def on_import(self, file: str | None, min_score: float | None, frame: float, request: gr.Request) -> Iterator[dict]:
        """Read and apply a file of masks or detections on the session's worker thread, with
        progress and Cancel; one undo step (boxes on several frames are matched and tracked:
        ``annotation.concepts.start_importing``)."""
        page = self.page
        done = {page.import_file: None, page.add_missing: gr.Button(visible=False)}
        try:
            work = self.base.work(request)
            path = self._uploaded(work, file, "a file of masks or detections")
            read = self._reader(work, path, int(frame), min_score)
            importing = concepts.start_importing(work, self.base.engine, path.name, read)
            work.pending_import = None  # a new file replaces one that waited for its labels
        except UserError as exc:
            yield {**self.base.warn(str(exc)), **done}
            return
        finally:
            self.base.store.tidy_upload_cache()
        yield from self._follow(work, importing, int(frame), done)

    @guarded
    def on_add_missing(self, request: gr.Request) -> Iterator[dict]:
        """The file that waited for its classes: add them to the labels and import it (as :meth:`on_import`)."""
        done = {self.page.add_missing: gr.Button(visible=False)}
        try:
            work = self.base.work(request)
            pending = work.pending_import
            if not isinstance(pending, PendingImport) or not pending.fits(work):
                work.pending_import = None
                raise UserError("No import is waiting for its labels: import the file again.")
            importing = concepts.start_importing(work, self.base.engine, pending.imported.source,
                                                   lambda: pending.imported, add_missing_labels=True)  # fmt: skip
            work.pending_import = None
        except UserError as exc:
            yield {**self.base.warn(str(exc)), **done}
            return
        yield from self._follow(work, importing, pending.frame, done)

    # ------------------------------------------------------------------ brush
    @guarded
    def on_brush_reset(self) -> Any:
        """Empty the editor before a frame is loaded into it (see DatasetPage.build_brush)."""
        return None

    @guarded
    def on_brush_load(self, frame: float, request: gr.Request) -> dict:
        """The frame shown as the editor's background and the chosen object's mask there as its layer."""
        editor, status = self.page.editor, self.base.c.status
        try:
            work = self.base.work(request)
            with locked(work):
                video = operations.require_video(work)
                frame = operations.check_frame(work, int(frame))
                if work.active is None or work.active not in work.doc.object_ids:
                    raise UserError("Choose the object to paint in step 2 first.")
                info = work.registry[work.active]
                mask = work.doc.frame_masks(frame).get(info.id)
                picture = np.asarray(video.frames[frame])  # the frame itself: only the object's mask is drawn over it
                background = views.write_png(picture, work.new_file(f"paint{frame:05d}", ".png"))
                size = video.frame_size(frame)  # an image set's frames differ in size
                layer = views.write_png(mask_layer(mask, size, info.color), work.new_file("paint-mask", ".png"))
                work.brush_target = BrushTarget(frame, info.id, weakref.ref(video))
        except UserError as exc:
            return self.base.warn(str(exc))
        r, g, b = object_color(info.id)
        return {
            editor: gr.ImageEditor(
                value={"background": str(background), "layers": [str(layer)], "composite": None}, visible=True,
                brush=gr.Brush(colors=[(f"rgb({r}, {g}, {b})", BRUSH_OPACITY)], color_mode="fixed",
                               default_size=brush_size(size)),
                eraser=gr.Eraser(default_size=brush_size(size)),
            ),
            status: views.markdown_text(f"Painting '{info.name}' on frame {frame}: the brush adds to its mask, "
                                        "the eraser takes away. Then press Apply."),
        }  # fmt: skip

    @guarded
    def on_brush_apply(self, value: dict | None, request: gr.Request) -> dict:
        """The painted mask becomes the mask of the object and frame the editor was loaded for."""
        mask = painted_mask(value)

        def action(work: WorkState) -> tuple[str, int]:
            target = work.brush_target
            if mask is None or not isinstance(target, BrushTarget):
                raise UserError(f"Press '{PAINT}' first, then paint on the frame.")
            if not target.fits(work):
                raise UserError(f"Another video was loaded since: press '{PAINT}' again.")
            return self._paint(work, target.frame, target.obj, mask), target.frame

        return self.base.run(request, action)

    def _paint(self, work: WorkState, frame: int, obj: int, mask: np.ndarray) -> str:
        info = work.object(obj)
        shown = operations.set_mask(work, self.base.engine, frame, obj, mask, "brush")
        applied = (f"Applied the painted mask of '{info.name}' on frame {frame} ({int(shown.sum())} pixels). "
                   "Track to follow it; Undo takes it back.")  # fmt: skip
        share = float(mask.mean())
        if share <= FULL_FRAME:
            return applied
        covered = "all of the frame" if share == 1 else f"{int(share * 1000) / 10:.1f}% of the frame"  # 99.9, not 100
        return (f"{applied} Note: this mask covers {covered}. If that is not what you meant, press Undo: a mask "
                "picture should show the object in white (or opaque) on black (or transparent).")  # fmt: skip

    # ------------------------------------------------------------------ API
    def _api(self, request: gr.Request, action: Any) -> dict:
        """Run ``action(work) -> message`` under the session's lock -> {message, labels,
        last_label, objects}; a problem is {"message": "Problem: ..."} and changes nothing."""
        try:
            work = self.base.work(request)
            with locked(work):
                operations.require_video(work)
                message = action(work)
        except UserError as exc:
            return {"message": f"Problem: {exc}"}
        finally:
            self.base.store.tidy_upload_cache()
        return {"message": message, **labels_state(work)}

    @guarded
    def api_labels(self, request: gr.Request) -> dict:
        """The video's labels (classes, in export order) and every object's label."""
        return self._api(request, lambda work: f"{len(work.labels)} label(s).")

    @guarded
    def api_add_labels(self, names: list[str] | str, request: gr.Request) -> dict:
        """Add labels (classes) to the video's list: a list of names, or one text with commas
        between them ("car, person", as the page's box takes them); those there already are skipped."""
        return self._api(request, lambda work: self._add(work, api_label_names(names)))

    @guarded
    def api_rename_label(self, old: str, new: str, request: gr.Request) -> dict:
        """Rename a label everywhere: the list and every object of that class."""
        return self._api(request, lambda work: operations.rename_label(work, old, new))

    @guarded
    def api_remove_label(self, name: str, request: gr.Request) -> dict:
        """Remove a label that no object uses."""
        return self._api(request, lambda work: operations.remove_label(work, name))

    @guarded
    def api_set_object_label(self, obj_id: int, label: str, request: gr.Request) -> dict:
        """Give object `obj_id` a label from the list (new objects then take it too)."""
        return self._api(request, lambda work: operations.set_label(work, api_whole(obj_id, "obj_id"), label))

    @guarded
    def api_load_labels(self, file: gr.FileData, request: gr.Request) -> dict:
        """Add the classes of a classes.txt (one per line) or a YOLO data.yaml (`names`) to the labels."""

        def action(work: WorkState) -> str:
            path = self._uploaded(work, api_file(file), "a classes.txt or a YOLO data.yaml")
            names = operations.read_label_file(path)
            if not names:
                raise UserError(f"'{path.name}' names no class.")
            return f"From '{path.name}': " + self._add(work, names)

        return self._api(request, action)

    @guarded
    def api_import(
        self, file: gr.FileData, frame: int = 0, min_score: float = 0.0, add_missing_labels: bool = False,
        request: gr.Request = None,
    ) -> dict:  # fmt: skip
        """Import masks (PNG zip, COCO, YouTube-VIS) or detections (COCO results above `min_score`,
        YOLO txt for `frame`) as prompts; waits. Classes the labels lack are refused, and listed
        in `missing_labels`, unless `add_missing_labels`. /cancel stops it with nothing changed."""
        try:
            work = self.base.work(request)
            path = self._uploaded(work, api_file(file), "a file of masks or detections")
            score = None if min_score is None else api_number(min_score, "min_score")
            if not isinstance(add_missing_labels, bool):  # bool() takes the text 'false' as true
                raise UserError("add_missing_labels must be true or false.")
            read = self._reader(work, path, api_whole(frame, "frame"), score)
            importing = concepts.start_importing(work, self.base.engine, path.name, read,
                                                 add_missing_labels=add_missing_labels)  # fmt: skip
            work.pending_import = None  # the API asks again with add_missing_labels
        except UserError as exc:
            return {"message": f"Problem: {exc}"}
        finally:
            self.base.store.tidy_upload_cache()
        importing.thread.join()
        progress = importing.progress
        if importing.missing is not None:
            return {"message": f"Problem: {importing.missing}", "missing_labels": list(importing.missing.labels)}
        if progress.error:
            return {"message": f"Problem: {progress.error}"}
        if progress.cancelled:
            return {"message": f"Import cancelled: {progress.kept}.", **labels_state(work)}
        return {"message": importing.message, **labels_state(work)}

    @guarded
    def api_apply_mask(self, frame: int, obj_id: int, mask: gr.FileData, request: gr.Request) -> dict:
        """Make a PNG the size of the video object `obj_id`'s mask on `frame` (made if missing, as
        add_point does), as the brush does: painted on transparent, white on black, or a 0/1 mask
        (:func:`picture_mask`); a mask of the whole frame is applied with a warning."""
        try:  # the picture is read first: a bad one changes nothing, not even a new object
            work = self.base.work(request)
            frame = api_whole(frame, "frame")
            size = operations.require_video(work).frame_size(operations.check_frame(work, frame))
            painted = read_mask_png(self._uploaded(work, api_file(mask), "a PNG of the mask"), size)
        except UserError as exc:
            return {"message": f"Problem: {exc}", "frame": frame, "areas": {}}
        finally:
            self.base.store.tidy_upload_cache()
        return self.base._api_prompt(request, obj_id, lambda w: self._paint(w, frame, int(obj_id), painted), frame)
