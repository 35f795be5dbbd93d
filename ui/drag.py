"""Boxes by dragging on the frame: the browser draws the box live while the pointer is down
(:data:`DRAG_SCRIPT`) and sends its two corners, in the frame's pixels, to the server, which
gives the chosen object that box prompt as the two-click Box mode does (:func:`add_dragged_box`).

A drag means a box in every click mode; a click without a drag is a click as before (the page's
``viewer.select``), and the click the browser fires at the end of a drag is stopped before Gradio
sees it, so a drag never adds a point too.

The corners travel through a hidden button (``#drag-send``, in the DOM but not shown) whose
``js`` function hands the box the script holds to the handler as its input, so no text field has
to be filled and synced first. The handler trusts nothing it gets: anything but four finite
numbers inside the frame is answered with a plain message and changes nothing.

(No ``from __future__ import annotations``: Gradio reads the ``gr.Request`` annotation at run time.)
"""

import json
import math
from typing import Any

import gradio as gr

from annotation import operations
from annotation.document import UserError
from annotation.engine import Engine
from ui.callbacks import Controls, Handlers, guarded
from ui.sessions import WorkState

MAX_BOX_TEXT = 200  # four numbers fit in far less; a longer text is not a box from the page

# The browser's part. Listens on ``document`` (Gradio re-renders the viewer's <img> on every
# update, so no element is kept beyond one drag). The frame's pixel under the pointer is found
# from the picture's natural size and its rendered content box, with CSS object-fit and
# object-position as the browser applies them (the layout may scale the viewer down, and Gradio
# letterboxes it), and rounded like Gradio's own click coordinates.
DRAG_SCRIPT = r"""
(() => {
  const MIN_MOVE_PX = 4;  // a pointer that moves less is a click, not a drag
  const style = document.createElement('style');
  style.textContent = `
    #viewer img { touch-action: none; -webkit-user-drag: none; user-select: none; }
    .sam2-drag-outline { position: fixed; pointer-events: none; z-index: 1000; box-sizing: border-box;
      border: 2px solid #ffd400; box-shadow: 0 0 0 1px rgba(0, 0, 0, 0.7); }`;
  document.head.appendChild(style);

  let drag = null;       // the drag in progress: pointer id, start point, geometry, outline
  let swallowClick = false;  // the click that ends a drag is stopped
  let pending = null;    // the box waiting to be sent: [x0, y0, x1, y1] in the frame's pixels

  const px = (v) => parseFloat(v) || 0;

  // The picture's content box on screen: where pixel (0, 0) starts and how many screen pixels
  // one frame pixel takes, horizontally and vertically.
  function geometry(img) {
    const r = img.getBoundingClientRect();
    const cs = getComputedStyle(img);
    const left = r.left + px(cs.borderLeftWidth) + px(cs.paddingLeft);
    const top = r.top + px(cs.borderTopWidth) + px(cs.paddingTop);
    const width = r.width - px(cs.borderLeftWidth) - px(cs.borderRightWidth)
      - px(cs.paddingLeft) - px(cs.paddingRight);
    const height = r.height - px(cs.borderTopWidth) - px(cs.borderBottomWidth)
      - px(cs.paddingTop) - px(cs.paddingBottom);
    const nw = img.naturalWidth, nh = img.naturalHeight;
    let sx = width / nw, sy = height / nh;
    const fit = cs.objectFit;
    if (fit === 'contain' || fit === 'scale-down') {
      sx = sy = Math.min(sx, sy, fit === 'scale-down' ? 1 : Infinity);
    } else if (fit === 'cover') {
      sx = sy = Math.max(sx, sy);
    } else if (fit === 'none') {
      sx = sy = 1;
    }
    const [px0, py0] = (cs.objectPosition || '50% 50%').split(/\s+/);
    const place = (value, free) => value && value.endsWith('%') ? free * px(value) / 100
      : value && value.endsWith('px') ? px(value) : free / 2;
    const x = left + place(px0, width - nw * sx), y = top + place(py0, height - nh * sy);
    return { x, y, sx, sy, nw, nh };
  }

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const toFrame = (g, cx, cy) => [clamp(Math.round((cx - g.x) / g.sx), 0, g.nw - 1),
                                  clamp(Math.round((cy - g.y) / g.sy), 0, g.nh - 1)];

  function objectColour() {
    const chosen = document.querySelector('#objects input[type=radio]:checked');
    const id = chosen ? parseInt(chosen.value || (chosen.closest('label')?.innerText || ''), 10) : NaN;
    const swatch = Number.isFinite(id) ? document.querySelector(`#legend tr[data-object='${id}'] span`) : null;
    return swatch ? swatch.style.background : '';
  }

  function drawOutline(d, cx, cy) {
    if (!d.outline) {
      d.outline = document.createElement('div');
      d.outline.className = 'sam2-drag-outline';
      const colour = objectColour();
      if (colour) d.outline.style.borderColor = colour;
      document.body.appendChild(d.outline);
    }
    const g = d.g;  // the outline stays on the picture, as the corners sent do
    const right = g.x + g.nw * g.sx, bottom = g.y + g.nh * g.sy;
    const x0 = clamp(Math.min(d.cx, cx), g.x, right), x1 = clamp(Math.max(d.cx, cx), g.x, right);
    const y0 = clamp(Math.min(d.cy, cy), g.y, bottom), y1 = clamp(Math.max(d.cy, cy), g.y, bottom);
    Object.assign(d.outline.style, { left: `${x0}px`, top: `${y0}px`, width: `${x1 - x0}px`, height: `${y1 - y0}px` });
  }

  function end() {
    if (drag && drag.outline) drag.outline.remove();
    drag = null;
  }

  document.addEventListener('pointerdown', (e) => {
    const img = e.target instanceof Element ? e.target.closest('#viewer img') : null;
    if (!img || !img.naturalWidth || e.button !== 0 || !e.isPrimary) return;
    end();
    img.draggable = false;
    drag = { id: e.pointerId, cx: e.clientX, cy: e.clientY, g: geometry(img), moved: false, outline: null };
    try { img.setPointerCapture(e.pointerId); } catch (_) { /* the move listeners below still see it */ }
  }, true);

  document.addEventListener('pointermove', (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    if (!drag.moved && Math.hypot(e.clientX - drag.cx, e.clientY - drag.cy) < MIN_MOVE_PX) return;
    drag.moved = true;
    e.preventDefault();
    drawOutline(drag, e.clientX, e.clientY);
  }, true);

  document.addEventListener('pointerup', (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    const d = drag;
    end();
    if (!d.moved) return;  // a click: Gradio's select event handles it
    const [x0, y0] = toFrame(d.g, d.cx, d.cy), [x1, y1] = toFrame(d.g, e.clientX, e.clientY);
    // The browser fires the release's click in this same task: it is stopped until the task
    // after, which sends the box.
    swallowClick = true;
    setTimeout(() => {
      swallowClick = false;
      send([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]);
    }, 0);
  }, true);

  document.addEventListener('pointercancel', (e) => { if (drag && e.pointerId === drag.id) end(); }, true);
  document.addEventListener('dragstart', (e) => {
    if (e.target instanceof Element && e.target.closest('#viewer')) e.preventDefault();
  }, true);

  // The click the browser fires after a drag: stopped here, in the capture phase, before the
  // viewer's own listener would turn it into a point.
  document.addEventListener('click', (e) => {
    if (!swallowClick) return;
    swallowClick = false;
    e.stopImmediatePropagation();
    e.preventDefault();
  }, true);

  function send(box) {
    const button = document.querySelector('#drag-send');
    if (!button) return;
    pending = box;
    window.sam2Drag.last = box;
    button.click();
  }

  // take(): the box for the hidden button's js function (then cleared); last: the box sent last.
  window.sam2Drag = { take() { const box = pending; pending = null; return box ? JSON.stringify(box) : ''; },
                      last: null };
})();
"""

# The hidden button's ``js``: the box the script holds becomes the handler's first input.
TAKE_BOX_JS = "(box, frame) => [window.sam2Drag ? window.sam2Drag.take() : box, frame]"


def parse_box(text: Any) -> tuple[float, float, float, float]:
    """The box the page sent: a JSON list of four finite numbers [x0, y0, x1, y1] (any order of
    corners); anything else is refused with a plain message."""
    problem = UserError("The box from the page could not be read. Drag across the object again.")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_BOX_TEXT:
        raise problem
    try:
        value = json.loads(text, parse_constant=lambda _: None)  # NaN and Infinity are no numbers here
    except ValueError:
        raise problem from None
    if not isinstance(value, list) or len(value) != 4:
        raise problem
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise problem
    x0, y0, x1, y1 = (float(v) for v in value)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def add_dragged_box(work: WorkState, engine: Engine, frame: int, text: Any) -> str:
    """Give the chosen object the box ``text`` names on ``frame``, as two clicks in Box mode
    would (``operations.click``, corner by corner). A box that cannot be used changes nothing:
    not the masks, and not a first corner set earlier by a click in Box mode."""
    x0, y0, x1, y1 = parse_box(text)
    operations.check_frame(work, frame)
    height, width = work.video.frame_size(frame)
    if not (0 <= x0 and 0 <= y0 and x1 < width and y1 < height):
        raise UserError(f"The box ({x0:.0f}, {y0:.0f}) to ({x1:.0f}, {y1:.0f}) is not inside the "
                        f"{width}x{height} frame. Drag across the object in the picture.")
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise UserError("The box is too small: drag from one corner of the object to the opposite corner.")
    corner = work.pending_corner
    work.pending_corner = None  # a drag is a whole box: a first corner clicked before is not its start
    try:
        operations.click(work, engine, frame, x0, y0, "box")
        return operations.click(work, engine, frame, x1, y1, "box")
    except UserError:
        work.pending_corner = corner
        raise


class DragBox:
    """The hidden button that brings a dragged box to the server (``ui.layout`` builds it)."""

    def build(self) -> None:
        # visible="hidden": in the DOM (so the script can press it) but not shown.
        self.box = gr.Textbox(visible="hidden", elem_id="drag-box")
        self.send = gr.Button("Box", visible="hidden", elem_id="drag-send")

    def wire(self, controls: Controls, handlers: "DragHandlers") -> None:
        self.send.click(
            handlers.on_drag_box, [self.box, controls.frame], controls.view_outputs(), js=TAKE_BOX_JS,
            api_visibility="private", show_progress="minimal",
        )  # fmt: skip


class DragHandlers:
    """The handler of a dragged box, on the plumbing of the page's :class:`Handlers`."""

    def __init__(self, base: Handlers) -> None:
        self.base = base

    def failed(self, handler: str, exc: Exception) -> Any:
        """What :func:`guarded` answers an unexpected exception with (as the page's other handlers)."""
        return self.base.failed(handler, exc)

    @guarded
    def on_drag_box(self, text: str, frame: float, request: gr.Request) -> dict:
        engine = self.base.engine
        return self.base.run(request, lambda work: (add_dragged_box(work, engine, int(frame), text), int(frame)))
