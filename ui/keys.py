"""Keyboard shortcuts: :data:`KEYS_SCRIPT` turns keys into presses of the page's own controls
(the frame slider, the click mode and objects lists, the buttons), so the server does the work
exactly as for a click; :func:`build_shortcuts` lists the keys in the page (a help line, and the
full list on demand or with "?").

A shortcut never fires while the user types in a text field (input, textarea, select or an
editable element), nor with a modifier it does not use (Alt never; Ctrl or Cmd only for undo
and redo), so the browser's and the system's own keys keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass(frozen=True)
class Shortcut:
    """One row of the list: the keys as a person presses them, and what they do."""

    keys: str
    action: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("← / → or A / D", "previous / next frame"),
    Shortcut("Shift+← / Shift+→ (or Shift+A / Shift+D)", "10 frames back / on"),
    Shortcut("Space", "play / pause"),
    Shortcut("P", "click mode Add (+)"),
    Shortcut("M", "click mode Remove (-)"),
    Shortcut("B", "click mode Box (a drag on the frame makes a box in any mode)"),
    Shortcut("N", "add a new object"),
    Shortcut("W / S", "previous / next object"),
    Shortcut("Ctrl+Z", "undo"),
    Shortcut("Ctrl+Shift+Z or Ctrl+Y", "redo"),
    Shortcut("F", "track forward"),
    Shortcut("R", "track backward (reverse)"),
    Shortcut("Esc", "cancel the step that runs (tracking, making files, loading)"),
    Shortcut("?", "show or hide this list"),
)

SHORTCUTS_LINE = ("**Keys:** ←/→ or A/D frame, Shift+←/→ 10 frames, Space play, P/M/B add/remove/box, "
                  "N new object, W/S object, Ctrl+Z undo, F/R track, Esc cancel — **?** for all "
                  "(not while typing in a field)")  # fmt: skip


def shortcuts_table() -> str:
    """The full list as a Markdown table (Cmd works for Ctrl on a Mac)."""
    rows = "\n".join(f"| {s.keys} | {s.action} |" for s in SHORTCUTS)
    return (f"| Keys | Does |\n|---|---|\n{rows}\n\nOn a Mac, Cmd works as Ctrl. Keys do nothing while the "
            "cursor is in a text or number field, so names and numbers can be typed freely.")


def build_shortcuts() -> None:
    """The help line (``#shortcuts``) and the full list, closed (``#shortcuts-all``; "?" opens it)."""
    gr.Markdown(SHORTCUTS_LINE, elem_id="shortcuts")
    with gr.Accordion("Keyboard shortcuts", open=False, elem_id="shortcuts-all"):
        gr.Markdown(shortcuts_table())


# The browser's part. Each action presses a control the way a person would, and Gradio sends
# the event it listens to: the slider's ``input`` (its range field fires it on an "input" event),
# a radio's ``input`` (a click on the option), a button's ``click``. Elements are looked up at
# each key press, since Gradio re-renders them.
KEYS_SCRIPT = r"""
(() => {
  const NOT_TEXT = new Set(['range', 'radio', 'checkbox', 'button', 'submit', 'reset', 'color', 'file', 'image']);
  function typing(el) {
    if (!(el instanceof Element)) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && !NOT_TEXT.has((el.type || 'text').toLowerCase());
  }

  function stepFrame(n) {
    const range = document.querySelector('#frame input[type=range]');
    if (!range || range.disabled) return;
    const lo = Number(range.min) || 0, hi = Number(range.max) || 0;
    const to = Math.min(Math.max(Number(range.value) + n, lo), hi);
    if (to === Number(range.value)) return;
    range.value = String(to);
    range.dispatchEvent(new Event('input', { bubbles: true }));
  }

  function press(id) {
    const button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  }

  function chooseMode(value) {
    const option = [...document.querySelectorAll('#mode input[type=radio]')].find((i) => i.value === value);
    if (option && !option.checked) option.click();
  }

  function stepObject(n) {
    const options = [...document.querySelectorAll('#objects input[type=radio]')];
    if (!options.length) return;
    const at = options.findIndex((i) => i.checked);
    const to = at < 0 ? (n > 0 ? 0 : options.length - 1) : (at + n + options.length) % options.length;
    if (to !== at) options[to].click();
  }

  function togglePlay() {
    if (window.sam2Player && typeof window.sam2Player.toggle === 'function') window.sam2Player.toggle();
    else press('play');
  }

  function toggleList() {
    const head = document.querySelector('#shortcuts-all button, #shortcuts-all .label-wrap');
    if (head) head.click();
  }

  // [key, shift, ctrl-or-cmd, action, repeats]: exactly these modifiers (Alt never). Letters
  // are matched lower case; "?" is typed with Shift on most keyboards, so it ignores Shift.
  const BINDINGS = [
    ['arrowleft', false, false, () => stepFrame(-1), true], ['arrowright', false, false, () => stepFrame(1), true],
    ['a', false, false, () => stepFrame(-1), true], ['d', false, false, () => stepFrame(1), true],
    ['arrowleft', true, false, () => stepFrame(-10), true], ['arrowright', true, false, () => stepFrame(10), true],
    ['a', true, false, () => stepFrame(-10), true], ['d', true, false, () => stepFrame(10), true],
    [' ', false, false, togglePlay, false],
    ['p', false, false, () => chooseMode('Add (+)'), false],
    ['m', false, false, () => chooseMode('Remove (-)'), false],
    ['b', false, false, () => chooseMode('Box'), false],
    ['n', false, false, () => press('add-object'), false],
    ['w', false, false, () => stepObject(-1), true], ['s', false, false, () => stepObject(1), true],
    ['z', false, true, () => press('undo'), true],
    ['z', true, true, () => press('redo'), true], ['y', false, true, () => press('redo'), true],
    ['f', false, false, () => press('track-forward'), false],
    ['r', false, false, () => press('track-backward'), false],
    ['escape', false, false, () => press('cancel'), false],
  ];

  function keyName(e) {
    const key = (e.key || '').toLowerCase();
    // A letter typed on another layout (or with Ctrl on some systems): the key's place instead.
    const code = e.code || '';
    if (key.length === 1 && !/[a-z ?]/.test(key) && /^Key[A-Z]$/.test(code)) return code.slice(3).toLowerCase();
    return key;
  }

  let spaceTaken = false;
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.isComposing || e.altKey) return;
    if (typing(e.target) || typing(document.activeElement)) return;
    const key = keyName(e), ctrl = e.ctrlKey || e.metaKey;
    if (key === '?' && !ctrl) {
      e.preventDefault();
      toggleList();
      return;
    }
    // The focused frame slider steps with the arrows itself (and tells Gradio so).
    const onRange = e.target instanceof HTMLInputElement && e.target.type === 'range';
    if (key.startsWith('arrow') && !e.shiftKey && onRange) return;
    const binding = BINDINGS.find(([k, shift, c]) => k === key && shift === e.shiftKey && c === ctrl);
    if (!binding) return;
    e.preventDefault();  // no page scroll on Space or arrows, no re-press of a focused button by Space
    if (e.repeat && !binding[4]) return;
    if (key === ' ') spaceTaken = true;
    binding[3]();
  });
  // A focused button or checkbox acts on Space's release: not when Space was play / pause.
  document.addEventListener('keyup', (e) => {
    if (e.key === ' ' && spaceTaken) {
      spaceTaken = false;
      e.preventDefault();
    }
  }, true);
})();
"""
