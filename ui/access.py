"""Who may download a session's files: only the browser that made the session.

Gradio serves every file in its cache folder to anyone who has the URL. The app keeps each
session's files in its own folder inside that cache (so they are served without copies), and
this middleware adds an owner check in front: every browser gets a random ``sam2_owner``
cookie on its first request; a session remembers the cookie of the browser that made it
(``SessionStore.get``); a request for a file in a session folder without that cookie gets 403.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

from ui.callbacks import OWNER_COOKIE
from ui.sessions import SessionStore

# Gradio serves files under both spellings: ".../file=<path>" and ".../file/<path>".
FILE_ROUTES = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/")


class SessionFileGuard(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, store: SessionStore) -> None:
        super().__init__(app)
        self.store = store

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        owner = request.cookies.get(OWNER_COOKIE)
        path = request.scope.get("path", "")
        target = requested_file(path)
        # Any route that names the sessions folder is checked, whatever its spelling.
        if str(self.store.root) in path and (target is None or self.store.root not in (target, *target.parents)):
            target = self.store.root / path.split(str(self.store.root), 1)[1].lstrip("/")
        if target is not None and (target == self.store.root or self.store.root in target.parents):
            work = self.store.session_of(target)
            if not owner or work is None or not secrets.compare_digest(work.owner, owner):
                return PlainTextResponse(
                    "This file belongs to another session, or its session has ended.", status_code=403
                )
            if target.parent == work.views.folder:
                work.views.fetched(target.name)  # the page has it now: it may be pruned (ui.sessions.ViewFiles)
        response = await call_next(request)
        if not owner:
            response.set_cookie(OWNER_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="lax")
        return response


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
