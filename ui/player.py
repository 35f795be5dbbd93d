"""Playback in the page: Play/Pause, one frame back or on, and "Go to frame", under the frame
slider.

How it plays: a script in the browser (:data:`PLAYER_SCRIPT`) asks the server for each frame
as the viewer would draw it (masks in the objects' colours), as a JPEG at the width the viewer
shows it (``annotation.preview``), a few frames ahead of the one due, and draws each on a
canvas laid over the viewer when its time comes. The clock is the video's sound playing in an
``<audio>`` element where the video has sound, else the browser's own clock. A frame whose
picture is not there by its time is skipped, never shown late, and the frame number shown is
always that of the picture shown, so the number, the picture and the masks stay in step. Each
fetch draws the frame as it is then: frames appear while tracking runs, and a replay after a
correction shows the correction. Pause (or a click on the picture while it plays) stops on the
frame shown: the slider is set to it and moved as a person would, so the viewer, the status
and the next click follow, as for any frame change.

The pictures are answered by ``ui.access.SessionFileGuard`` as files of the session's folder
(``<session folder>/play/frame00012.jpg?w=640``, ``.../play/audio.mp3``,
``.../play/info.json``), so the owner cookie guards them like every other file of the session:
:class:`PlayerRoute` answers them once the guard has found the session and checked the cookie.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response
from starlette.types import Scope

from annotation.preview import MAX_WIDTH, MIN_WIDTH, PreviewCache
from ui.sessions import SessionStore, WorkState

PLAY_FOLDER = "play"  # the route's part after the session folder: never a real folder
FRAME_NAME = re.compile(r"frame(\d{1,7})\.jpg")
NO_STORE = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}

PLAYER_LINE = "<span class='sam2-player-line'>Play shows the video with its masks, at its own rate.</span>"


class Player:
    """The player's row (``ui.layout`` calls :meth:`build` under the frame slider)."""

    def build(self) -> None:
        # Buttons at their own height, not stretched to the labelled number field beside them.
        with gr.Row(elem_id="player", equal_height=False):
            self.prev = gr.Button("◀ Frame", elem_id="prev-frame", size="sm", min_width=60, scale=0)
            self.play = gr.Button("▶ Play", elem_id="play", size="sm", variant="primary", min_width=90, scale=0)
            self.next = gr.Button("Frame ▶", elem_id="next-frame", size="sm", min_width=60, scale=0)
            self.goto = gr.Number(None, label="Go to frame", elem_id="goto-frame", precision=0, min_width=110,
                                  scale=0)  # fmt: skip
            self.line = gr.HTML(PLAYER_LINE, elem_id="player-line")

    def wire(self, controls: Any = None, handlers: Any = None) -> None:
        """Each control runs its part of :data:`PLAYER_SCRIPT` in the browser, with no request:
        the frame change it makes is the slider's own event (``controls.frame.input``)."""
        self.prev.click(None, js="() => { window.sam2Player.step(-1); }")
        self.next.click(None, js="() => { window.sam2Player.step(1); }")
        self.play.click(None, js="() => { window.sam2Player.toggle(); }")
        self.goto.submit(None, [self.goto], js="(v) => { window.sam2Player.go(v); }")


# ----------------------------------------------------------------------------- the server's part


class PlayerRoute:
    """Answers ``<session folder>/play/...`` for the session's owner (the guard checked the
    cookie): ``frameNNNNN.jpg?w=W`` (the frame drawn, W pixels wide at most), ``audio.mp3``
    (the sound, with byte ranges so the browser can start anywhere) and ``info.json`` (frame
    count, rate, sound). Bad requests get a plain 4xx."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._caches: dict[str, tuple[WorkState, PreviewCache]] = {}

    def is_route(self, work: WorkState, target: Path) -> bool:
        return target.parent == work.folder / PLAY_FOLDER

    def cache(self, work: WorkState) -> PreviewCache:
        """The session's pictures; those of sessions that ended are dropped."""
        with self._lock:
            for name, (other, _) in list(self._caches.items()):
                if self.store.peek(other.session_id) is not other:
                    del self._caches[name]
            known = self._caches.get(work.folder.name)
            if known is None or known[0] is not work:
                known = self._caches[work.folder.name] = (work, PreviewCache())
            return known[1]

    async def answer(self, scope: Scope, work: WorkState, name: str) -> Response:
        method = scope.get("method")
        if method not in ("GET", "HEAD"):
            return PlainTextResponse("Only GET and HEAD are answered here.", status_code=405)
        if work.video is None:
            return PlainTextResponse("This session has no video.", status_code=404)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if name == "info.json":
            response = await run_in_threadpool(self._info, work)
        elif name == "audio.mp3":
            response = await run_in_threadpool(self._audio, work, headers.get("range"))
        elif match := FRAME_NAME.fullmatch(name):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            response = await self._frame(work, int(match.group(1)), query.get("w", [""])[-1], headers)
        else:
            response = PlainTextResponse("There is no such picture.", status_code=404)
        if method == "HEAD":
            response.body = b""
        return response

    async def _frame(self, work: WorkState, frame: int, width_text: str, headers: dict[str, str]) -> Response:
        count = work.video.count
        if not 0 <= frame < count:
            return PlainTextResponse(f"Frame {frame} is not in the video (0 to {count - 1}).", status_code=404)
        if not re.fullmatch(r"\d{1,5}", width_text) or not MIN_WIDTH <= int(width_text) <= MAX_WIDTH:
            return PlainTextResponse(f"The width (w) must be a whole number of pixels from {MIN_WIDTH} to {MAX_WIDTH}.",
                                     status_code=400)  # fmt: skip
        picture = await run_in_threadpool(self.cache(work).picture, work, frame, int(width_text))
        etag = f'"{picture.tag}"'
        if headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={**NO_STORE, "ETag": etag})
        return Response(picture.jpeg, media_type="image/jpeg", headers={**NO_STORE, "ETag": etag})

    def _info(self, work: WorkState) -> Response:
        video = work.video
        sound = self.cache(work).audio(work) is not None
        info = {"frames": video.count, "fps": video.decoded.fps, "audio": sound}
        return Response(json.dumps(info), media_type="application/json", headers=NO_STORE)

    def _audio(self, work: WorkState, ranges: str | None) -> Response:
        path = self.cache(work).audio(work)
        if path is None:
            return PlainTextResponse("This video has no sound.", status_code=404)
        data = path.read_bytes()
        headers = {**NO_STORE, "Accept-Ranges": "bytes"}
        if not ranges:
            return Response(data, media_type="audio/mpeg", headers=headers)
        span = byte_range(ranges, len(data))
        if span is None:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(data[start : end + 1], status_code=206, media_type="audio/mpeg", headers=headers)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a one-range ``Range`` header ("bytes=0-", "bytes=100-199",
    "bytes=-500") within ``size`` bytes, or None for one that cannot be served."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or size == 0 or not (match.group(1) or match.group(2)):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        return max(0, size - int(last)), size - 1
    start, end = int(first), min(size - 1, int(last) if last else size - 1)
    return (start, end) if start <= end else None


# ----------------------------------------------------------------------------- the browser's part

PLAYER_SCRIPT = r"""
(() => {
  const AHEAD_S = 0.5;       // pictures asked for ahead of the one due, in seconds of video
  const MAX_FETCHES = 4;     // at once
  const BUFFER_S = 0.5;      // pictures in hand before the clock starts, in seconds of video ...
  const MAX_WAIT_MS = 4000;  // ... or what came in this long
  const S = {playing: false, gen: 0, base: '', info: null, start: 0, shown: -1, due: -1, width: 0,
             pics: new Map(), fetching: 0, audio: null, audioBase: '', clock: null, hideAt: 0,
             stats: {shown: 0, passed: 0, started: 0, ended: 0, clock: ''}};
  const q = (s) => document.querySelector(s);
  const viewerImg = () => q('#viewer img');
  const range = () => q('#frame input[type=range]');
  const number = () => q('#frame input[type=number]');
  const line = (text) => {
    const el = q('#player-line .sam2-player-line') || q('#player-line');
    if (el) el.textContent = text;
  };

  function sessionBase() {
    const img = viewerImg();
    const src = img && img.src ? img.src : '';
    const at = src.indexOf('/view/');
    return at < 0 ? '' : src.slice(0, at);
  }
  function lastFrame() { const r = range(); return r ? Math.max(0, Math.round(Number(r.max) || 0)) : 0; }
  function shownFrame() { const r = range(); return r ? Math.round(Number(r.value) || 0) : 0; }
  function setButton(playing) {
    const b = q('#play');
    if (b) { b.textContent = playing ? '❚❚ Pause' : '▶ Play'; b.setAttribute('aria-pressed', String(playing)); }
  }
  // The slider moved as a person moves it: Gradio's input event sends the frame to the server.
  function moveSlider(frame) {
    const r = range();
    if (!r) return;
    r.value = String(frame);
    r.dispatchEvent(new Event('input', {bubbles: true}));
  }
  // While playing, the slider and its number follow the picture without asking the server.
  function showNumber(frame) {
    const r = range(), n = number();
    if (r) r.value = String(frame);
    if (n) n.value = String(frame);
  }

  function canvas() {
    const img = viewerImg();
    if (!img || !img.parentElement) return null;
    let c = q('#sam2-player-canvas');
    if (!c || c.parentElement !== img.parentElement) {
      if (c) c.remove();
      c = document.createElement('canvas');
      c.id = 'sam2-player-canvas';
      c.style.cssText = 'position:absolute;pointer-events:none;display:none;z-index:5';
      if (getComputedStyle(img.parentElement).position === 'static') img.parentElement.style.position = 'relative';
      img.parentElement.appendChild(c);
    }
    return c;
  }
  // The picture goes where the viewer draws its own: inside the image's box, scaled to fit, never enlarged.
  function draw(bitmap) {
    const img = viewerImg(), c = canvas();
    if (!img || !c) return false;
    const w = img.offsetWidth, h = img.offsetHeight, dpr = window.devicePixelRatio || 1;
    c.style.left = img.offsetLeft + 'px'; c.style.top = img.offsetTop + 'px';
    c.style.width = w + 'px'; c.style.height = h + 'px'; c.style.display = 'block';
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const nw = img.naturalWidth || bitmap.width, nh = img.naturalHeight || bitmap.height;
    const scale = Math.min(w / nw, h / nh, 1);
    const dw = nw * scale, dh = nh * scale;
    const g = c.getContext('2d');
    g.clearRect(0, 0, c.width, c.height);
    g.drawImage(bitmap, ((w - dw) / 2) * dpr, ((h - dh) / 2) * dpr, dw * dpr, dh * dpr);
    c._sam2Bitmap = bitmap;
    return true;
  }
  function hideCanvas() {
    const c = q('#sam2-player-canvas');
    if (c) { c.style.display = 'none'; c._sam2Bitmap = null; }
  }

  function displayWidth() {
    const img = viewerImg();
    const natural = img ? img.naturalWidth : 0;
    const shown = img ? Math.round(img.getBoundingClientRect().width * (window.devicePixelRatio || 1)) : 0;
    return Math.max(16, Math.min(natural || 4096, shown || natural || 640, 4096));
  }

  function fetchPicture(frame) {
    const gen = S.gen, entry = {bitmap: null, failed: false};
    S.pics.set(frame, entry);
    S.fetching++;
    const frameName = 'frame' + String(frame).padStart(5, '0') + '.jpg';
    fetch(S.base + '/play/' + frameName + '?w=' + S.width, {cache: 'no-cache', credentials: 'same-origin'})
      .then((r) => { if (!r.ok) throw new Error(String(r.status)); return r.blob(); })
      .then((blob) => createImageBitmap(blob))
      .then((bitmap) => {
        if (gen === S.gen && S.pics.get(frame) === entry) entry.bitmap = bitmap; else bitmap.close();
      })
      .catch(() => { entry.failed = true; })
      .finally(() => { if (gen === S.gen) S.fetching--; });
  }
  function prefetch(from, count) {
    const ahead = count || Math.max(4, Math.ceil(S.info.fps * AHEAD_S));
    for (let f = from; f < Math.min(S.info.frames, from + ahead) && S.fetching < MAX_FETCHES; f++) {
      if (!S.pics.has(f)) fetchPicture(f);
    }
  }
  function forget(before) {
    for (const [f, e] of S.pics) {
      if (f >= before || f === S.shown) continue;
      if (e.bitmap && e.bitmap !== (q('#sam2-player-canvas') || {})._sam2Bitmap) e.bitmap.close();
      S.pics.delete(f);
    }
  }

  // The clock: the sound where there is sound (the picture follows what is heard), else the
  // browser's. A sound that stops moving (no audio output, the end of a shorter track) hands over.
  function wallClock(at) {
    const t0 = performance.now();
    return {kind: 'browser clock', now: () => at + (performance.now() - t0) / 1000};
  }
  function audioClock(audio) {
    let last = audio.currentTime, moved = performance.now(), fallback = null;
    return {kind: 'sound', now: () => {
      if (fallback) return fallback.now();
      const t = audio.currentTime, ms = performance.now();
      if (t !== last) { last = t; moved = ms; }
      else if (ms - moved > 400 || audio.ended) {
        fallback = wallClock(t + (ms - moved) / 1000);
        S.stats.clock = 'browser clock (the sound stopped)';
      }
      return t;
    }};
  }
  function waitFor(test, ms) {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const check = () => {
        if (test()) resolve(true); else if (performance.now() - t0 > ms) resolve(false); else setTimeout(check, 20);
      };
      check();
    });
  }
  async function startSound(at) {
    if (!S.info.audio) return null;
    if (!S.audio || S.audioBase !== S.base) {
      if (S.audio) S.audio.pause();
      S.audio = new Audio(S.base + '/play/audio.mp3');
      S.audio.preload = 'auto';
      S.audioBase = S.base;
    }
    const audio = S.audio;
    if (!(await waitFor(() => audio.readyState >= 1, 3000))) return null;
    if (at >= audio.duration) return null;
    audio.currentTime = at;
    try { await audio.play(); } catch (e) { return null; }
    return audio;
  }

  async function play() {
    const base = sessionBase();
    if (!base) { line('Upload a video first: there is nothing to play yet.'); return; }
    const gen = ++S.gen;
    S.playing = true; S.base = base; setButton(true);
    let info;
    try {
      const r = await fetch(base + '/play/info.json', {cache: 'no-store', credentials: 'same-origin'});
      if (!r.ok) throw new Error(String(r.status));
      info = await r.json();
    } catch (e) { stop(); line('The video cannot be played now: reload the page.'); return; }
    if (gen !== S.gen) return;
    S.info = info;
    S.start = shownFrame() >= info.frames - 1 ? 0 : shownFrame();
    S.width = displayWidth();
    S.pics.forEach((e) => e.bitmap && e.bitmap.close()); S.pics.clear(); S.fetching = 0;
    S.shown = -1; S.due = S.start;
    S.stats = {shown: 0, passed: 0, started: 0, ended: 0, clock: ''};
    line('Starting at frame ' + S.start + '...');
    prefetch(S.start);
    // Start with BUFFER_S of pictures in hand (or what came within MAX_WAIT_MS), as a video
    // player buffers: a slow server then drops frames later rather than the first ones.
    const wanted = Math.min(info.frames - S.start, Math.max(1, Math.ceil(info.fps * BUFFER_S)));
    const ready = () => {
      let n = 0;
      for (let f = S.start; f < S.start + wanted; f++) {
        const e = S.pics.get(f);
        if (e && (e.bitmap || e.failed)) n++;
      }
      return n;
    };
    await waitFor(() => { if (gen === S.gen) prefetch(S.start, wanted); return gen !== S.gen || ready() >= wanted; },
                  MAX_WAIT_MS);
    if (gen !== S.gen) return;
    const audio = await startSound(S.start / info.fps);
    if (gen !== S.gen) { if (audio) audio.pause(); return; }
    S.clock = audio ? audioClock(audio) : wallClock(S.start / info.fps);
    S.stats.clock = audio ? 'sound' : (info.audio ? 'browser clock (the sound could not start)' : 'browser clock');
    S.stats.started = performance.now();
    requestAnimationFrame(() => tick(gen));
  }

  function tick(gen) {
    if (gen !== S.gen || !S.playing) return;
    if (sessionBase() !== S.base) { stop(); line('A new video: press Play again.'); return; }
    const info = S.info;
    const due = Math.floor(S.clock.now() * info.fps + 1e-6);
    if (due > S.due) { S.stats.passed += Math.min(due, info.frames) - S.due; S.due = due; }
    const f = Math.min(due, info.frames - 1);
    const entry = S.pics.get(f);
    if (entry && entry.bitmap && S.shown !== f && draw(entry.bitmap)) {
      S.shown = f; S.stats.shown++;
      showNumber(f);
      line('Playing: frame ' + f + ' of ' + info.frames + ' (0 to ' + (info.frames - 1) + ')');
    }
    if (due >= info.frames) { pause(); return; }
    forget(f);
    prefetch(f + 1);
    requestAnimationFrame(() => tick(gen));
  }

  function stop() {
    S.gen++; S.playing = false; setButton(false);
    if (S.audio) S.audio.pause();
    S.stats.ended = performance.now();
  }
  function pause() {
    if (!S.playing) return;
    const frame = S.shown >= 0 ? S.shown : S.start;
    const shown = S.stats.shown, seconds = (performance.now() - (S.stats.started || performance.now())) / 1000;
    stop();
    moveSlider(frame);
    const rate = seconds > 0.2 ? ', ' + (shown / seconds).toFixed(1) + ' pictures/s shown in this browser' : '';
    line('Paused on frame ' + frame + rate + '. Click on the picture to mark this frame.');
    S.hideAt = performance.now() + 5000;
    waitForViewer(frame);
  }
  // The canvas stays until the viewer shows the paused frame itself (so nothing flickers back).
  function waitForViewer(frame) {
    const name = 'frame' + String(frame).padStart(5, '0') + '-';
    const check = () => {
      if (S.playing) return;
      const img = viewerImg();
      const there = img && img.src.includes('/view/' + name) && img.complete && img.naturalWidth > 0;
      if (there || performance.now() > S.hideAt) hideCanvas();
      else setTimeout(check, 30);
    };
    check();
  }

  function step(n) {
    if (S.playing) pause();
    const to = Math.max(0, Math.min(lastFrame(), shownFrame() + Math.round(Number(n) || 0)));
    if (to !== shownFrame() || n === 0) moveSlider(to);
    line('Frame ' + to + ' of ' + (lastFrame() + 1) + '.');
  }
  function go(value) {
    if (S.playing) pause();
    const last = lastFrame();
    const text = value === null || value === undefined ? '' : String(value).trim();
    const n = Number(text);
    if (text === '' || !Number.isFinite(n)) {
      line('Type a frame number from 0 to ' + last + ', then press Enter.');
      return;
    }
    const to = Math.max(0, Math.min(last, Math.round(n)));
    if (to !== shownFrame()) moveSlider(to);
    line(to === Math.round(n) ? 'Frame ' + to + ' of ' + (last + 1) + '.'
      : 'There is no frame ' + text + ': the frames are 0 to ' + last + '. Showing frame ' + to + '.');
  }

  // A click on the picture while it plays pauses there (the click is not a mark on a frame
  // the slider has not caught up with); the next click marks the paused frame.
  document.addEventListener('click', (e) => {
    if (!S.playing || !e.target || !e.target.closest || !e.target.closest('#viewer')) return;
    e.preventDefault(); e.stopPropagation(); pause();
  }, true);

  window.sam2Player = {
    toggle() { if (S.playing) pause(); else play(); },
    playing() { return S.playing; },
    step, go, pause, play,
    // What is on the canvas now, for checks: the frame number shown and its picture as drawn.
    snapshot() {
      const c = q('#sam2-player-canvas'), b = c && c._sam2Bitmap;
      const n = number(), r = range();
      if (!b || c.style.display === 'none') return null;
      const o = document.createElement('canvas'); o.width = b.width; o.height = b.height;
      o.getContext('2d').drawImage(b, 0, 0);
      return {frame: S.shown, number: n ? n.value : null, slider: r ? r.value : null, playing: S.playing,
              png: o.toDataURL('image/png')};
    },
    stats() {
      const end = S.playing ? performance.now() : S.stats.ended;
      const seconds = S.stats.started ? (end - S.stats.started) / 1000 : 0;
      return {...S.stats, seconds, lastShown: S.shown, fps: seconds > 0 ? S.stats.shown / seconds : 0, width: S.width,
              frames: S.info ? S.info.frames : 0, videoFps: S.info ? S.info.fps : 0};
    },
  };
})();
"""
