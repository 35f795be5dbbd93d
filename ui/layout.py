"""The page: a workspace (the frame with its tools, slider and timeline; at the side Track, the
messages and the objects; the advanced parts in closed accordions, each help text one line with
its details on demand), and the wiring of the events to :class:`ui.callbacks.Handlers` (with
``api_name`` on the main steps so ``gradio_client`` can drive the app too)."""

from __future__ import annotations

import gradio as gr

from annotation.detect import DetectorSlot, DetectorSpec
from annotation.engine import Engine
from annotation.operations import EXPORT_FORMATS
from sam2.video_io import MediaLimits
from ui import datasets_page
from ui.callbacks import Controls, Handlers
from ui.datasets_page import DatasetHandlers, DatasetPage
from ui.drag import DRAG_SCRIPT, DragBox, DragHandlers
from ui.find_page import FindHandlers, FindPage
from ui.guard_page import GuardHandlers, GuardPage
from ui.help import help_line
from ui.keys import KEYS_SCRIPT, build_shortcuts
from ui.like_page import LikeHandlers, LikePage
from ui.player import PLAYER_SCRIPT, Player
from ui.sessions import SessionStore
from ui.text_page import TextHandlers, TextPage
from ui.views import markdown_text, model_line, track_help  # noqa: F401 (track_help: also for tests)

TITLE = "SAM 2 video annotator"

TITLE_LINE = "## SAM 2 video annotator"

INTRO = """
Mark objects in a video with a few clicks and let SAM 2 follow them through every frame.
**1.** Upload a video. **2.** Click on an object in the frame: its mask appears in its colour.
**3.** Track it through the video, fix any frame with more clicks, and track again.
**4.** Download the masks.
"""

VIEWER_HELP = """
**Click on the frame** to mark the chosen object. *Add (+)* marks a part of the object,
*Remove (-)* marks a part that is not the object (use it when the mask spills over). **Drag**
across the object for a box (in any mode), or in *Box* mode click one corner, then the opposite
corner. Green crosses = add, red = remove.
Use the slider to move through the video; clicks can be made on any frame.
"""

OBJECTS_HELP = """
Each object has its own colour. Clicks go to the object chosen here. **Add object** starts a
new one (at any time, also after tracking). Rename it, hide it from the view (and the overlay
video), or delete it.
"""

EXPORT_HELP = """
Files cover every frame of the video and are named after it. *Overlay video*: the video with
the masks drawn (with its sound). *Mask video*: the colours on black. *PNG masks*: one indexed
PNG per frame (pixel = object id). *Semantic masks*: pixel = class. *COCO*: instance masks by
class (RLE), for training and evaluation; *with frames*: a zip with the images too.
*YouTube-VIS*: video instance masks. *YOLO*: a segmentation dataset ready to train (images,
labels, data.yaml). *MOT*: box tracks. *Session*: your objects, clicks and masks, to continue
later with **Load session** on the same video.
"""

TIMELINE_LINE = ("Timeline: a row per object, a cell per frame (colour = found, red = lost, grey = not tracked, "
                 "white dot = your clicks); click it to go to that frame.")
EXPORT_LINE = "Choose the files, then **Make files**: they cover every frame and are named after the video."
UPLOAD_HEIGHT = 84  # the video's drop zone (px): small, its words still whole
DROP_HEIGHT = datasets_page.DROP_HEIGHT

EXPORT_CHOICES = [
    ("Overlay video (MP4)", "overlay"),
    ("Mask video (MP4)", "mask_video"),
    ("PNG masks (zip)", "png"),
    ("Semantic masks, pixel = class (zip)", "semantic"),
    ("COCO JSON", "coco"),
    ("COCO with frames (zip)", "coco_images"),
    ("YouTube-VIS JSON", "ytvis"),
    ("YOLO dataset (zip)", "yolo"),
    ("MOT box tracks (txt)", "mot"),
    ("Session (JSON)", "session"),
]
assert [v for _, v in EXPORT_CHOICES] == list(EXPORT_FORMATS)
EXPORT_DEFAULTS = ["overlay", "mask_video", "png", "coco", "yolo", "session"]

# The workspace's height budget (px): what sits above and below the frame in its column (title,
# tools, the slider, the player's row, a timeline of three objects and its line, the gaps). The
# frame gets the rest of the window's height, and never less than FRAME_MIN_PX; the timeline is
# capped at TIMELINE_MAX_PX (four objects; more are drawn smaller).
AROUND_FRAME_PX = 370
FRAME_MIN_PX = 180
TIMELINE_MAX_PX = 86

_DROPS = ("#upload", "#label-file", "#import-file", "#load-session")
DROP_ZONES = ", ".join(f"{d} [data-testid=upload-text]" for d in _DROPS)
ICONS = ", ".join(f"{d} [data-testid=upload-icon]" for d in _DROPS)

CSS = f"""
.object-table td, .object-table th {{ padding: 2px 6px; }}
#timeline img {{ image-rendering: pixelated; cursor: pointer; }}
#viewer img {{ cursor: crosshair; }}
#found img, #choices img {{ cursor: pointer; }}
/* The frame fits the window: its height is capped, the picture keeps its aspect ratio (Gradio's
   click coordinates assume a picture contained in its box, which this keeps). */
#viewer img {{ max-height: max({FRAME_MIN_PX}px, calc(100vh - {AROUND_FRAME_PX}px)); }}
#timeline img {{ max-height: {TIMELINE_MAX_PX}px; }}
#title-row {{ align-items: center; min-height: 44px; }}
/* Whole pixels above the frame (a title row of at least 44 px, taller than the closed accordion's
   41.6, and lines of 40): a frame drawn at a fractional y is resampled by the browser, and its
   picture is no longer the pixels sent. */
#title h2 {{ margin: 0; line-height: 40px; }}
#work-frame, #work-side {{ gap: 10px; }}
.help-line p {{ margin: 0; font-size: var(--text-sm); color: var(--body-text-color-subdued); }}
#tools button {{ white-space: nowrap; align-self: center; }}
#track-row button {{ white-space: nowrap; padding-left: 6px; padding-right: 6px; }}
#cancel {{ align-self: flex-end; }}
/* Drop zones: the icon and "Drop File Here - or - Click to Upload" on one line, so a small zone
   shows its words whole. */
{DROP_ZONES} {{ flex-direction: row; flex-wrap: wrap; gap: 0 0.4em; line-height: 1.3; }}
{ICONS} {{ width: 1.2em; height: 1.2em; margin: 0; }}
"""


# Scripts the page runs in the browser, one per part that needs it (the player, the keyboard,
# dragging boxes), each a plain string of JavaScript. They run before Gradio draws the page, so
# each listens on ``document`` (event delegation) rather than on elements that come and go.
PAGE_SCRIPTS: tuple[str, ...] = (PLAYER_SCRIPT, DRAG_SCRIPT, KEYS_SCRIPT)


def page_head() -> str:
    """The page's extra ``<head>``: :data:`PAGE_SCRIPTS`, each in its own script element."""
    return "\n".join(f"<script>\n{script}\n</script>" for script in PAGE_SCRIPTS)


def _detail_label(size: int) -> str:
    notes = {512: " (fastest)", 1024: " (SAM 2's own size)"}
    return f"{size} px{notes.get(size, '')}"


def build_page(
    store: SessionStore, engine: Engine, limits: MediaLimits, detector: DetectorSlot | None = None,
) -> gr.Blocks:  # fmt: skip
    """The Blocks app; queue and launch settings are applied by ``app.py``. detector: the text
    detector of "Find by text" (loaded on first use; None: a default one from the Hub)."""
    detector = detector or DetectorSlot(DetectorSpec())
    # Uploads are deleted when the last session that read them closes (ui/sessions.py counts
    # them: Gradio stores them by content, so two users' identical files share one). This sweep
    # is the backstop for the rest, every 2 minutes, those older than 5; a decoded upload is
    # never read again. Session folders are not Gradio's files and are not touched.
    with gr.Blocks(title=TITLE, delete_cache=(120, 300)) as demo:
        datasets = DatasetPage()  # labels, imports, the brush and the YOLO split (ui/datasets_page.py)
        find = FindPage(engine.speed, engine.image_size)  # finding objects, a click's three masks (ui/find_page.py)
        text = TextPage(detector)  # "Find by text", on one frame and the whole video (ui/text_page.py)
        guard = GuardPage()  # "Replace your work?" and "Restore your kept work?" (ui/guard_page.py)
        guard.build()
        controls = _components(
            limits, engine.describe(), track_help(engine.speed), engine.image_sizes, engine.image_size, datasets,
            find, engine.describe_choices(), player := Player(), text, like := LikePage(detector),
        )
        # The views that follow the model size (the loaded video's, or the next upload's) go last.
        sized = [controls.buttons["model_info"], controls.buttons["track_info"], *find.size_outputs()]
        controls.extras += datasets.view_outputs() + find.view_outputs() + sized
        drag = DragBox()  # boxes dragged on the frame (ui/drag.py): a hidden button
        drag.build()
        controls.extras += guard.view_outputs()
        controls.extras += text.view_outputs()
        handlers = Handlers(store, engine, limits, controls)
        _wire(demo, controls, handlers)
        drag.wire(controls, DragHandlers(handlers))
        datasets.wire(controls, DatasetHandlers(handlers, datasets))
        find.wire(controls, FindHandlers(handlers, find))
        text.wire(controls, TextHandlers(handlers, text))
        like.wire(controls, LikeHandlers(handlers, like))  # "Find more like this" (ui/like_page.py)
        player.wire(controls, handlers)
        guard.wire(demo, controls, GuardHandlers(handlers, guard))
    return demo


def _components(
    limits: MediaLimits, model: str, tracking: str, sizes: tuple[int, ...], size: int, datasets: DatasetPage,
    find: FindPage, choices: list[str] = (), player: Player | None = None, text: TextPage | None = None,
    like: LikePage | None = None,
) -> Controls:
    # A workspace on one screen (1280x720 and up): the frame, its slider and timeline in the
    # middle, with the click tools above it; at the side the video, Track with its progress, the
    # messages and the objects. Everything else waits in closed accordions. On a phone the two
    # columns stack, the frame first.
    with gr.Row(elem_id="title-row", equal_height=False):
        gr.Markdown(TITLE_LINE, elem_id="title")
        with gr.Accordion("How it works", open=False, elem_id="how-it-works"):
            gr.Markdown(INTRO)
            gr.Markdown(VIEWER_HELP)
            gr.Markdown(OBJECTS_HELP)
            track_info = gr.Markdown(tracking, elem_id="track-help")
    with gr.Row(elem_id="workspace", equal_height=False):
        with gr.Column(scale=3, min_width=360, elem_id="work-frame"):
            with gr.Row(elem_id="tools", equal_height=False):
                mode = gr.Radio(["Add (+)", "Remove (-)", "Box"], value="Add (+)", label="Click mode", elem_id="mode",
                                show_label=False, container=False, scale=3, min_width=240)  # fmt: skip
                undo = gr.Button("Undo", interactive=False, elem_id="undo", size="sm", min_width=60, scale=0)
                redo = gr.Button("Redo", interactive=False, elem_id="redo", size="sm", min_width=60, scale=0)
                clear = gr.Button("Clear this frame", elem_id="clear", size="sm", min_width=120, scale=0)
                reset = gr.Button("Reset all", elem_id="reset", size="sm", variant="stop", min_width=80, scale=0)
            viewer = gr.Image(
                label="Frame", show_label=False, interactive=False, type="filepath", elem_id="viewer",
                buttons=["fullscreen"], placeholder="Upload a video (at the side) to see its frames here.",
            )  # fmt: skip
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame number", elem_id="frame")
            (player or Player()).build()  # Play/Pause, one frame back/on, go to frame (ui/player.py)
            # The timeline sits under the frame it navigates: further down, a person scrolls away
            # from the frame to change it (and the browser does not even load it until then).
            timeline = gr.Image(
                label="Timeline", show_label=False, interactive=False, type="filepath", elem_id="timeline",
                buttons=[],
            )
            gr.Markdown(TIMELINE_LINE, elem_classes=["help-line"])
            find.build_choices()
            with gr.Accordion("Brush and eraser", open=False, elem_id="brush-box"):
                datasets.build_brush()
            with gr.Accordion("Find objects", open=False, elem_id="find-box"):
                find.build_finder()
                if like is not None:
                    like.build()  # "Find more like this" (ui/like_page.py)
            if text is not None:
                with gr.Accordion("Find by text", open=False, elem_id="text-box"):
                    text.build()
        with gr.Column(scale=2, min_width=320, elem_id="work-side"):
            upload = gr.File(
                label="Video (mp4, mov, webm, mkv, avi, gif), an image, or several images (files or a zip)",
                type="filepath", file_count="multiple", elem_id="upload", height=UPLOAD_HEIGHT,
            )
            # The one-file upload of the API ("upload_video"), as it was before image sets.
            upload_one = gr.File(type="filepath", visible=False, elem_id="upload-one")
            video_info = gr.Markdown("No video yet.", elem_id="video-info", latex_delimiters=[])
            with gr.Row(elem_id="track-row"):
                back = gr.Button("◀ Track backward", elem_id="track-backward", size="md", min_width=140)
                both = gr.Button("◀ Track both ▶", elem_id="track-both", variant="primary", size="md", min_width=140)
                fwd = gr.Button("Track forward ▶", elem_id="track-forward", size="md", min_width=140)
            with gr.Row(elem_id="track-count-row", equal_height=False):
                count = gr.Number(0, precision=0, minimum=0, elem_id="count", scale=3, min_width=160,
                                  label="Frames to track past the one shown (0 = to the end)")
                cancel = gr.Button("Cancel", elem_id="cancel", variant="stop", size="md", scale=1, min_width=90)
            progress = gr.Markdown("", elem_id="progress", latex_delimiters=[])
            # No formulas in the message lines: a name holding "$$" is text like any other.
            status = gr.Markdown("Upload a video to start.", elem_id="status", latex_delimiters=[])
            build_shortcuts()  # the keys' help line and their full list (ui/keys.py)
            with gr.Group(elem_id="objects-group"):
                with gr.Row(equal_height=True):
                    add_object = gr.Button("+ Add object", elem_id="add-object", variant="primary", size="md",
                                           scale=1, min_width=120)  # fmt: skip
                    delete = gr.Button("Delete object", elem_id="delete-object", size="sm", variant="stop", scale=0,
                                       min_width=110)  # fmt: skip
                objects = gr.Radio([], label="Clicks go to", elem_id="objects")
                with gr.Row():
                    obj_name = gr.Textbox(label="Name (press Enter)", elem_id="obj-name", interactive=False)
                    obj_visible = gr.Checkbox(label="Show", value=True, elem_id="obj-visible", interactive=False)
                datasets.build_object_label()
                legend = gr.HTML(elem_id="legend")
            next_lost = gr.Button("Go to the next frame where an object is lost", size="sm", elem_id="next-lost")
            with gr.Accordion("Labels (classes)", open=False, elem_id="labels-box"):
                datasets.build_labels()
            with gr.Accordion("Import masks or detections, load a session", open=False, elem_id="import-box"):
                datasets.build_imports()
                session_file = gr.File(label="Load session (a session JSON saved from this video)", type="filepath",
                                       elem_id="load-session", height=DROP_HEIGHT)  # fmt: skip
            with gr.Accordion("Download", open=False, elem_id="download-box"):
                help_line(EXPORT_LINE, EXPORT_HELP)
                formats = gr.CheckboxGroup(EXPORT_CHOICES, value=EXPORT_DEFAULTS, label="Files to make",
                                           elem_id="formats")
                val_every = datasets.build_split()
                export = gr.Button("Make files", variant="primary", size="lg", elem_id="export")
                downloads = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="downloads")
            with gr.Accordion("Video and model settings", open=False, elem_id="settings-box"):
                sample_fps = gr.Number(
                    value=0, minimum=0, maximum=limits.max_fps, step=1, elem_id="sample-fps",
                    label=f"Frames per second to keep (0 = the video's own rate, at most {limits.max_fps:g}); "
                          "set before uploading",
                )
                detail = gr.Radio(
                    [(_detail_label(s), s) for s in sizes], value=size,
                    label="Model detail: larger sees finer edges, smaller tracks several times faster "
                          "(changing it later re-applies your clicks)",
                    elem_id="detail",
                )  # fmt: skip
                gr.Markdown(
                    f"Up to {limits.max_seconds:g} s and {limits.max_frames} frames; frames larger than "
                    f"{limits.max_side} pixels are scaled down. Images become the frames in name order, each "
                    f"at its own size ({limits.max_frames} images at most)."
                )
                model_info = gr.Markdown(model_line(model), elem_id="model-info")  # follows the video's size
                if choices:
                    with gr.Accordion("Why this precision and these kernels", open=False, elem_id="model-choices"):
                        gr.Markdown("\n".join(f"- {markdown_text(line)}" for line in choices))
    buttons = {
        "clear": clear, "reset": reset, "add_object": add_object, "delete": delete, "back": back,
        "both": both, "fwd": fwd, "count": count, "cancel": cancel, "next_lost": next_lost,
        "formats": formats, "export": export, "session_file": session_file, "sample_fps": sample_fps,
        "detail": detail, "val_every": val_every, "upload_one": upload_one, "model_info": model_info,
        "track_info": track_info,
    }  # fmt: skip
    return Controls(
        upload, video_info, viewer, frame, mode, status, undo, redo, objects, obj_name, obj_visible, legend,
        progress, timeline, downloads, buttons,
    )  # fmt: skip


def _wire(demo: gr.Blocks, c: Controls, h: Handlers) -> None:
    b = c.buttons
    view = c.view_outputs()
    quick = {"show_progress": "minimal"}
    c.upload.upload(h.on_upload_files, [c.upload, b["sample_fps"], b["detail"]], [*view, c.upload, c.downloads],
                    api_name="upload_files")
    b["upload_one"].upload(h.on_upload, [b["upload_one"], b["sample_fps"], b["detail"]],
                           [*view, c.upload, c.downloads], api_name="upload_video")
    b["detail"].input(h.on_detail, [b["detail"], c.frame], view, api_name="set_detail")
    c.frame.input(h.on_frame, [c.frame], [c.viewer, c.timeline, c.status], trigger_mode="always_last",
                  api_name="show_frame", **quick)
    c.viewer.select(h.on_click, [c.mode, c.frame], view, api_visibility="private", **quick)
    c.undo.click(h.on_undo, [c.frame], view, api_name="undo", **quick)
    c.redo.click(h.on_redo, [c.frame], view, api_name="redo", **quick)
    b["clear"].click(h.on_clear, [c.frame], view, api_name="clear_frame", **quick)
    b["reset"].click(h.on_reset, [c.frame], view, api_name="reset_all", **quick)
    b["add_object"].click(h.on_add_object, [c.frame], view, api_name="add_object", **quick)
    c.objects.input(h.on_select_object, [c.objects, c.frame], view, api_name="select_object", **quick)
    c.obj_name.submit(h.on_rename, [c.obj_name, c.frame], view, api_name="rename_object", **quick)
    c.obj_visible.input(h.on_visible, [c.obj_visible, c.frame], view, api_name="show_object", **quick)
    b["delete"].click(h.on_delete_object, [c.frame], view, api_name="delete_object", **quick)
    for key, direction in (("fwd", "forward"), ("back", "backward"), ("both", "both")):
        direction_box = gr.State(direction)
        b[key].click(
            h.on_track, [direction_box, c.frame, b["count"]], view, api_name=f"track_{direction}",
            concurrency_limit=8, show_progress="hidden",
        )  # fmt: skip
    b["cancel"].click(h.on_cancel, None, [c.status], api_name="cancel", concurrency_limit=None, show_progress="hidden")
    c.timeline.select(h.on_timeline_click, None, view, api_visibility="private", **quick)
    b["next_lost"].click(h.on_next_lost, [c.frame], view, api_name="next_lost_frame", **quick)
    b["export"].click(h.on_export, [b["formats"], b["val_every"]], [*view, c.downloads], api_name="export",
                      concurrency_limit=8, show_progress="hidden")  # a long step, as tracking: progress line, Cancel
    b["session_file"].upload(h.on_load_session, [b["session_file"], c.frame], [*view, b["session_file"]],
                             api_name="load_session", show_progress="minimal")
    gr.api(h.api_add_point, api_name="add_point")
    gr.api(h.api_add_box, api_name="add_box")
    gr.api(h.api_track, api_name="track", concurrency_limit=8)
    # A reload resumes the browser's work (see ui/sessions.py); the handler may wait a moment for
    # the old page's unload, so it does not queue behind other page loads.
    demo.load(h.on_page_load, None, view, api_visibility="private", show_progress="hidden", concurrency_limit=None)
    demo.unload(h.on_unload)
