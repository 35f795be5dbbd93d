"""Children that Ctrl-C reaches, however the tests were started.

A shell runs a background job (``pytest ... &``, ``nohup``) with SIGINT ignored, and a child
inherits an ignored signal across exec, so a command line started from such a test run would
never see the test's SIGINT (and rightly: a background program is meant to ignore it). A
handled signal is reset to its default across exec instead, so the parent handles SIGINT
while it starts the child, and Python in the child then turns SIGINT into KeyboardInterrupt
as it does at a terminal.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def popen_interruptible(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **kwargs)`` whose child takes SIGINT as Ctrl-C (call from the main thread)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, **kwargs)
    finally:
        signal.signal(signal.SIGINT, before)
