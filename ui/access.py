"""The app's front door: who may download a session's files, how its pictures are served,
which connections keep a session, and plain answers to requests Gradio would fail on.

Gradio serves every file in its cache folder to anyone who has the URL. The app keeps each
session's files in its own folder inside that cache (so they are served without copies), and
this middleware adds an owner check in front: every browser gets a random ``sam2_owner``
cookie on its first request; a session remembers the cookie of the browser that made it
(``SessionStore.get``); a request for a file in a session folder without that cookie gets 403.

The page's pictures (``ui.sessions.ViewFiles``) are answered here, from memory: the whole file
is read before the answer starts, so a picture pruned meanwhile never cuts a response short,
and one that is gone gets a plain 404 (Gradio's file route gave 403, 500 or half a body).

Each heartbeat request (the connection by which Gradio notices a closed page or client) is
reported to the store while it is open (``SessionStore.connection``). An upload whose form has
a ``files`` part without a file name gets 400 (Gradio's upload route raised a TypeError, 500).

Values sent past the page (through the API) are checked by each component before a handler
runs: one out of range or of the wrong type is refused with a plain sentence naming the field,
and is not a server error with a traceback in the log (:func:`plain_input_checks`).

A pure ASGI middleware, not Starlette's BaseHTTPMiddleware: a heartbeat is a response that
streams for as long as the page is open, and its end must be seen when it happens.
"""

from __future__ import annotations

import functools
import logging
import mimetypes
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.callbacks import OWNER_COOKIE
from ui.player import PlayerRoute
from ui.sessions import SessionStore

# Gradio serves files under both spellings: ".../file=<path>" and ".../file/<path>".
FILE_ROUTES = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/")
HEARTBEAT_ROUTE = re.compile(r"(?:^|/)heartbeat/([^/]+)/?$")
UPLOAD_ROUTE = re.compile(r"(?:^|/)upload/?$")
VIEW_CACHE = "private, max-age=3600"  # a picture's name is never used again for another picture
log = logging.getLogger(__name__)


class SessionFileGuard:
    def __init__(self, app: ASGIApp, store: SessionStore) -> None:
        self.app = app
        self.store = store
        self.player = PlayerRoute(store)  # the player's pictures and sound (ui/player.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        owner = Request(scope).cookies.get(OWNER_COOKIE)
        if not owner:
            send = _setting_owner_cookie(send)
        path = scope.get("path", "")
        heartbeat = HEARTBEAT_ROUTE.search(path)
        if heartbeat and scope.get("method") == "GET":
            with self.store.connection(heartbeat.group(1)):
                await self.app(scope, receive, send)
            return
        if UPLOAD_ROUTE.search(path) and scope.get("method") == "POST":
            await self._upload(scope, receive, send)
            return
        answer = await self._session_file(scope, path, owner)
        await (answer or self.app)(scope, receive, send)

    async def _session_file(self, scope: Scope, path: str, owner: str | None) -> Response | None:
        """The answer to a request for a file in a session folder, where it is not Gradio's
        (another browser's file: 403; a picture: its bytes or 404); None for Gradio to answer."""
        target = requested_file(path)
        # Any route that names the sessions folder is checked, whatever its spelling.
        if str(self.store.root) in path and (target is None or self.store.root not in (target, *target.parents)):
            target = self.store.root / path.split(str(self.store.root), 1)[1].lstrip("/")
        if target is None or not (target == self.store.root or self.store.root in target.parents):
            return None
        work = self.store.session_of(target)
        if not owner or work is None or not secrets.compare_digest(work.owner, owner):
            return PlainTextResponse("This file belongs to another session, or its session has ended.", status_code=403)
        if self.player.is_route(work, target):
            return await self.player.answer(scope, work, target.name)
        if target.parent == work.views.folder and scope.get("method") in ("GET", "HEAD"):
            data = await run_in_threadpool(work.views.read, target.name)
            if data is None:
                return PlainTextResponse("This picture is no longer on the server: the page shows a newer one.",
                                         status_code=404)  # fmt: skip
            media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            headers = {"Cache-Control": VIEW_CACHE, "X-Content-Type-Options": "nosniff"}
            return Response(b"" if scope["method"] == "HEAD" else data, media_type=media,
                            headers={**headers, "Content-Length": str(len(data))})  # fmt: skip
        if not target.is_file():
            return PlainTextResponse("This file is no longer on the server.", status_code=404)
        return None

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Gradio's upload route, with a plain 400 where it fails on a form part named ``files``
        that is no file (no ``filename=``: Gradio raises TypeError before answering)."""
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except TypeError:
            if started:
                raise
            log.warning("refused an upload whose form has a 'files' part without a file name")
            refusal = PlainTextResponse(
                "The upload was refused: each file must be sent as a file with its file name "
                "(a form part named 'files' with a filename).", status_code=400,
            )  # fmt: skip
            await refusal(scope, receive, send)


def _setting_owner_cookie(send: Send) -> Send:
    """``send`` that gives the response a new owner cookie (the browser had none)."""
    cookie = Response()
    cookie.set_cookie(OWNER_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="lax")
    value = cookie.headers["set-cookie"]

    async def with_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).append("set-cookie", value)
        await send(message)

    return with_cookie


def requested_file(path: str) -> Path | None:
    """The absolute file a ``/gradio_api/file=...`` or ``/gradio_api/file/...`` path (already
    %-decoded) asks for, else None."""
    for prefix in FILE_ROUTES:
        index = path.find(prefix)
        if index != -1:
            try:
                return Path(path[index + len(prefix) :]).resolve()
            except (OSError, ValueError):
                return None
    return None


# ----------------------------------------------------------------------------- values sent past the page


def plain_input_checks(demo: gr.Blocks) -> None:
    """Make every input component of ``demo`` refuse a bad value (out of range, not among the
    choices, of the wrong type; possible only through the API) with a plain message naming the
    field and no traceback in the log. Gradio checks ranges and choices in each component's
    ``preprocess`` and prints the traceback of every refusal; a value of the wrong type even
    becomes a server error.

    The checks go on the components an event preprocesses, when it does: a component that an
    update changed (a slider's new maximum) is a new object in the session's state by then."""
    original = demo.preprocess_data

    async def preprocess_data(block_fn: Any, inputs: list[Any], state: Any, *args: Any, **kwargs: Any) -> Any:
        for block in block_fn.inputs:
            _check_values(block)
            if state is not None and not getattr(block, "stateful", False) and block._id in state:
                _check_values(state[block._id])  # the one Gradio preprocesses with
        return await original(block_fn, inputs, state, *args, **kwargs)

    demo.preprocess_data = preprocess_data


def _check_values(block: Any) -> None:
    if isinstance(block, gr.components.Component) and not getattr(block, "_plain_checks", False):
        block.preprocess = _checked(block, block.preprocess)
        block._plain_checks = True


def field_name(block: Any) -> str:
    """What the page calls the component: its label up to any explanation (': ...', '(...)')."""
    label = str(getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__)
    return re.split(r"[:(]", label, maxsplit=1)[0].strip() or label


def _checked(block: Any, preprocess: Callable[[Any], Any]) -> Callable[[Any], Any]:
    name = field_name(block)

    @functools.wraps(preprocess)
    def checked(value: Any) -> Any:
        try:
            return preprocess(value)
        except gr.Error as exc:  # a range or choices check: already the user's fault
            raise _refusal(name, _choices_problem(block, value) or str(exc.message)) from None
        except (TypeError, ValueError):  # e.g. a slider given text: its comparisons fail
            raise _refusal(name, f"{_shown(value)} is not a value this field takes.") from None

    return checked


def _choices_problem(block: Any, value: Any) -> str | None:
    """For a component with choices, which choices there are (Gradio's message names Python
    types); None for others."""
    choices = getattr(block, "choices", None)
    if not choices:
        return None
    offered = ", ".join(_shown(choice[1] if isinstance(choice, (list, tuple)) else choice) for choice in choices)
    return f"{_shown(value)} is not one of the choices ({offered})."


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refusal(name: str, problem: str) -> gr.Error:
    log.warning("refused a value for %r: %s", name, problem)
    return gr.Error(f"{name}: {problem[:1].lower()}{problem[1:]}", print_exception=False)
