"""The server's log: tracebacks of what failed go to stderr, each line naming the session it
came from, so a user's report ("my tracking stopped") can be matched to its traceback. The
page's own messages stay plain: a failure there is one sentence, never a traceback.

Every event handler sets :data:`SESSION` (``ui.callbacks``); a thread started for a session's
work (tracking, loading a file) runs in a copy of its starter's context, so it carries the same
value (``annotation.operations``).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import TextIO

SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("session", default="-")
FORMAT = "%(asctime)s %(levelname)s %(name)s [session %(session)s]: %(message)s"


class SessionField(logging.Filter):
    """Gives every record a ``session`` field: the session whose request or run logged it
    ("-" outside any, e.g. the sweeper)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "session"):
            record.session = SESSION.get()
        return True


def configure(stream: TextIO | None = None, level: int = logging.WARNING) -> logging.Handler:
    """Log warnings and errors (with tracebacks) of every logger to ``stream`` (stderr), with
    the session field; returns the handler added to the root logger."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(SessionField())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
