"""Load test: simulated users drive the real app through ``gradio_client``.

    python scripts/load_test.py --users 4          # 4 users at once
    python scripts/load_test.py --sequential 20    # 20 sessions one after another
    python scripts/load_test.py --users 4 --url http://127.0.0.1:7860/ --pid 1234 --temp-dir /tmp/sam2-app-x

Without ``--url`` the app is started here (``python app.py`` on a free loopback port, the
reference weights of ``tests/reference.py``, sam2.1_hiera_tiny at image size 512). Each
simulated user has its own ``Client`` (so its own cookie and session) in its own thread and
does what a person does: upload a small video, click a point, look at another frame, track a
few frames, make the COCO and PNG-mask files, download both, and close the page (the client's
heartbeat ends, so the app's ``unload`` detaches the session, and the app started here frees it
1 s later).

Each user uploads a copy of the clip with other bytes (``--same-video``: the very same file,
which Gradio's content-addressed upload folder turns into one shared path). The app started
here inherits this environment (e.g. ``MALLOC_ARENA_MAX=2``).

Reported: requests served and failed (with their messages), latency p50/p95 per step and the
queue wait (submit -> the client sees Gradio's 'process_starts'; for an upload this includes
sending the file), the server's
peak RSS (sampled VmRSS and the kernel's VmHWM), its RSS after every session closed, and the
app's temp folder (bytes, entries, session folders) before and after. ``--sequential N``
reports RSS and the temp folder after the 1st and after the Nth session and flags growth
over 10%. RSS and the temp folder need the server's pid and temp folder: known when the app
is started here, else ``--pid`` / ``--temp-dir`` (otherwise they are reported as n/a).

Every wait is bounded: each request has ``--request-timeout``, each close ``--settle-timeout``,
and the whole run ``--deadline``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# The app learns that a page was closed when its heartbeat stream ends. gradio_client only
# notices Client.close() at the next heartbeat line (every 15 s by default), so the app
# started here sends one every second: closes are then seen about as fast as a browser's.
HEARTBEAT_S = "1"
GROWTH_LIMIT = 0.10  # sequential mode: flag RSS / temp-folder growth over 10%


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    """The app under test: its URL, and (when known) its pid and temp folder."""

    url: str
    pid: int | None = None
    temp_dir: Path | None = None
    stop: Callable[[], None] = lambda: None
    log: Path | None = None

    def log_tail(self, chars: int = 4000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


def app_options() -> str:
    """``python app.py --help``: which options this version of the app has."""
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"],
                            check=False, capture_output=True, text=True, timeout=120)
    return result.stdout


def launch(checkpoint: Path, workdir: Path, max_sessions: int = 8, extra: tuple[str, ...] = ()) -> Server:
    """Start ``app.py`` on a free loopback port (see tests/app_harness.py) with fast heartbeats."""
    from tests import app_harness
    from tests.app_harness import start_app

    args = ["--max-sessions", str(max_sessions), *extra]
    if not hasattr(app_harness, "PRECISION") and "--precision" not in extra and "--precision" in app_options():
        args += ["--precision", "float32"]  # the harness passes it itself where it knows the option
    if "--resume-grace-s" not in extra and "--resume-grace-s" in app_options():
        # Closed pages' work is kept for a reload (default: the session TTL); 1 s here, so that
        # the session folders are seen going soon after the pages close.
        args += ["--resume-grace-s", "1"]
    previous = os.environ.get("GRADIO_HEARTBEAT_INTERVAL")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = HEARTBEAT_S  # start_app passes our environment on
    try:
        app = start_app(checkpoint, workdir, *args)
    finally:
        if previous is None:
            os.environ.pop("GRADIO_HEARTBEAT_INTERVAL", None)
        else:
            os.environ["GRADIO_HEARTBEAT_INTERVAL"] = previous
    return Server(app.url, app.process.pid, app.temp_dir, app.stop, app.log)


def make_video(folder: Path, frames: int = 8, size: tuple[int, int] = (320, 240)) -> Path:
    """A ``frames``-frame testsrc clip (8 fps, so ``frames`` / 8 seconds)."""
    from tests import media_factory

    return media_factory.testsrc(folder / f"load-{size[0]}x{size[1]}-{frames}f.mp4",
                                 size=size, fps=8, seconds=frames / 8)


def user_copy(video: Path, user: int) -> Path:
    """The same clip with other bytes (a metadata tag, no re-encode), one per user.

    Gradio stores an upload under the hash of its bytes, so users uploading the very same
    file at the same moment share one path; see ``--same-video``.
    """
    from tests import media_factory

    path = video.with_name(f"{video.stem}-user{user}{video.suffix}")
    if not path.exists():
        media_factory.run_ffmpeg("-i", str(video), "-c", "copy", "-metadata", f"comment=load test user {user}",
                                 str(path))
    return path


# ----------------------------------------------------------------------------- measurements


def read_status(pid: int | None) -> dict[str, int]:
    """VmRSS / VmHWM (bytes), Threads and open file descriptors of a process ({} when unknown)."""
    if pid is None:
        return {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
        elif key == "Threads":
            values[key] = int(rest.split()[0])
    try:
        values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return values


def slope(values: list[float]) -> float | None:
    """Least-squares change per step of a series (None for fewer than 2 values)."""
    n = len(values)
    if n < 2:
        return None
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


class RssSampler:
    """Samples the server's VmRSS every ``every_s`` seconds in a daemon thread; keeps the peak."""

    def __init__(self, pid: int | None, every_s: float = 0.1) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = read_status(self.pid).get("VmRSS")
            if rss:
                self.peak = max(self.peak, rss)
                self.samples += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@dataclass
class FolderStats:
    bytes: int = 0
    files: int = 0
    dirs: int = 0
    sessions: int = 0  # folders under <temp>/sessions: live sessions
    other_entries: list[str] = field(default_factory=list)  # top-level entries other than sessions/

    @classmethod
    def of(cls, temp_dir: Path | None) -> FolderStats | None:
        if temp_dir is None or not temp_dir.is_dir():
            return None
        stats = cls()
        for dirpath, dirnames, filenames in os.walk(temp_dir):
            stats.dirs += len(dirnames)
            for name in filenames:
                stats.files += 1
                try:
                    stats.bytes += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass  # removed while we looked
        sessions = temp_dir / "sessions"
        stats.sessions = sum(1 for p in sessions.iterdir() if p.is_dir()) if sessions.is_dir() else 0
        stats.other_entries = sorted(p.name for p in temp_dir.iterdir() if p.name != "sessions")
        return stats

    def brief(self) -> str:
        return (f"{self.bytes / 1024:.1f} KiB in {self.files} files / {self.dirs} folders, "
                f"{self.sessions} session folders")


def session_count(temp_dir: Path | None) -> int | None:
    stats = FolderStats.of(temp_dir)
    return None if stats is None else stats.sessions


def wait_sessions(temp_dir: Path | None, at_most: int, timeout_s: float) -> tuple[bool, float]:
    """Wait until the temp folder holds at most ``at_most`` session folders: (done, seconds)."""
    start = time.monotonic()
    if temp_dir is None:
        return True, 0.0
    while True:
        count = session_count(temp_dir)
        if count is not None and count <= at_most:
            return True, time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            return False, time.monotonic() - start
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


@dataclass
class Request:
    user: int
    step: str
    latency_s: float
    queue_wait_s: float | None = None  # submit -> the job started on the server
    ok: bool = True
    error: str = ""


# ----------------------------------------------------------------------------- one user


@dataclass
class Flow:
    """What each simulated user does (the point is at the frame's centre)."""

    video: Path
    size: tuple[int, int] = (320, 240)  # (W, H) of the video, for the click
    track_frames: int = 3
    request_timeout_s: float = 300.0
    same_video: bool = False  # every user uploads the very same file (else a copy with other bytes each)

    def video_for(self, user: int) -> Path:
        return self.video if self.same_video else user_copy(self.video, user)


class User:
    """One simulated person: a Client of their own, and the record of their requests."""

    def __init__(self, number: int, server: Server, flow: Flow, log: list[Request], lock: threading.Lock) -> None:
        self.number, self.server, self.flow = number, server, flow
        self._log, self._lock = log, lock
        self.client = None

    def record(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        """Run one request; time it; a raised exception or a 'Problem' answer is an error."""
        start = time.monotonic()
        try:
            value, wait = action()
        except Exception as exc:  # every failure is reported; none stops the other users
            self.record(Request(self.number, name, time.monotonic() - start, None, False,
                                f"{type(exc).__name__}: {exc}"[:500]))
            raise StepFailed(name) from exc
        self.record(Request(self.number, name, time.monotonic() - start, wait))
        return value

    def call(
        self, api_name: str, check: Callable[[Any], str | None], *args: Any, **kwargs: Any,
    ) -> Callable[[], tuple[Any, float | None]]:
        """A queued API call: its result (checked) and its queue wait."""

        def action() -> tuple[Any, float | None]:
            submitted = datetime.now()
            job = self.client.submit(*args, api_name=api_name, **kwargs)
            result = job.result(timeout=self.flow.request_timeout_s)
            problem = check(result)
            if problem:
                raise AppProblem(problem)
            return result, queue_wait(job, submitted)

        return action

    def download(self, file: dict, check: Callable[[bytes], str | None]) -> Callable[[], tuple[bytes, None]]:
        import httpx

        def action() -> tuple[bytes, None]:
            url = file.get("url") or f"{self.server.url}gradio_api/file={file['path']}"
            response = httpx.get(url, cookies=self.client.cookies, timeout=self.flow.request_timeout_s)
            if response.status_code != 200:
                raise AppProblem(f"GET {url} -> {response.status_code}: {response.text[:200]}")
            problem = check(response.content)
            if problem:
                raise AppProblem(problem)
            return response.content, None

        return action

    def connect(self) -> None:
        from gradio_client import Client

        def action() -> tuple[Any, None]:
            return Client(self.server.url, verbose=False, download_files=False), None

        self.client = self.step("connect", action)

    def work(self) -> None:
        """Upload, click, look, track, export, download (the client must be connected)."""
        from gradio_client import handle_file

        flow = self.flow
        outputs = self.step("upload_video",
                            self.call("/upload_video", _loaded, handle_file(str(flow.video_for(self.number)))))
        frames = _frame_count(outputs)
        self.step("add_point", self.call(
            "/add_point", _point_ok, frame=0, x=flow.size[0] / 2, y=flow.size[1] / 2,
            positive=True, obj_id=1,
        ))  # fmt: skip
        self.step("show_frame", self.call("/show_frame", lambda r: None, min(2, max(0, frames - 1))))
        track = min(flow.track_frames, max(1, frames - 1))
        self.step("track", self.call("/track", _tracked(track), direction="forward", frame=0, frames=track))
        exported = self.step("export", self.call("/export", _exported(2), ["coco", "png"]))
        # Exports are named after the video: <stem>_coco.json, <stem>_masks.zip.
        by_kind = {Path(f["path"]).name.rpartition("_")[2]: f for f in exported[-1]}
        self.step("download_coco", self.download(by_kind["coco.json"], _coco_ok))
        self.step("download_png", self.download(by_kind["masks.zip"], _zip_ok(frames)))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class StepFailed(Exception):
    """A step failed (already recorded); the user stops there."""


class AppProblem(Exception):
    """The app answered, but not with what a working step gives."""


def queue_wait(job: Any, submitted: datetime) -> float | None:
    """Seconds from submit to the server's 'process_starts' message, from the job's status
    updates (gradio_client keeps them in ``job.communicator.updates``); None if not seen."""
    updates = getattr(getattr(job, "communicator", None), "updates", None)
    if updates is None:
        return None
    started = None
    while not updates.empty():
        update = updates.get_nowait()
        code = getattr(getattr(update, "code", None), "name", "")
        if code == "PROCESSING" and started is None and update.time is not None:
            started = update.time
    return None if started is None else max(0.0, (started - submitted).total_seconds())


# -- checks of the app's answers (None = fine, else what is wrong)


def _status_text(outputs: Any) -> str:
    return str(outputs[2]) if isinstance(outputs, (list, tuple)) and len(outputs) > 2 else str(outputs)


def _loaded(outputs: Any) -> str | None:
    text = _status_text(outputs)
    return None if text.startswith("Loaded") else f"upload: {text[:300]}"


def _frame_count(outputs: Any) -> int:
    """Frames of the loaded video: the slider's maximum + 1."""
    slider = outputs[1] if isinstance(outputs, (list, tuple)) and len(outputs) > 1 else None
    if isinstance(slider, dict) and "maximum" in slider:
        return int(slider["maximum"]) + 1
    return 1


def _point_ok(result: Any) -> str | None:
    if not isinstance(result, dict) or str(result.get("message", "")).startswith("Problem"):
        return f"add_point: {result}"
    if not any(int(v) > 0 for v in (result.get("areas") or {}).values()):
        return f"add_point: empty mask {result}"
    return None


def _tracked(count: int) -> Callable[[Any], str | None]:
    """``frames=count`` tracks ``count`` frames past the start; 'done' may count the start too."""

    def check(result: Any) -> str | None:
        if not isinstance(result, dict) or result.get("error") or result.get("done") not in (count, count + 1):
            return f"track: expected {count} frames past the start, got {result}"
        return None

    return check


def _exported(count: int) -> Callable[[Any], str | None]:
    def check(outputs: Any) -> str | None:
        files = outputs[-1] if isinstance(outputs, (list, tuple)) else None
        if not isinstance(files, list) or len(files) != count:
            return f"export: {_status_text(outputs)[:300]} files={files}"
        return None

    return check


def _coco_ok(content: bytes) -> str | None:
    try:
        coco = json.loads(content)
    except ValueError as exc:
        return f"COCO file is not JSON: {exc}"
    return None if coco.get("annotations") else "COCO file has no annotations"


def _zip_ok(frames: int) -> Callable[[bytes], str | None]:
    def check(content: bytes) -> str | None:
        import io

        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                pngs = [n for n in archive.namelist() if n.endswith(".png")]
        except zipfile.BadZipFile as exc:
            return f"PNG zip is broken: {exc}"
        return None if len(pngs) == frames else f"PNG zip has {len(pngs)} masks for {frames} frames"

    return check


# ----------------------------------------------------------------------------- runs


@dataclass
class StepStats:
    count: int
    errors: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    queue_wait_p50_s: float | None
    queue_wait_p95_s: float | None


def summarize(requests: list[Request]) -> dict[str, StepStats]:
    """Per step, and 'all' (every request)."""
    steps: dict[str, list[Request]] = {}
    for r in requests:
        steps.setdefault(r.step, []).append(r)
    steps["all"] = list(requests)
    out = {}
    for name, rs in steps.items():
        ok = [r.latency_s for r in rs if r.ok]
        waits = [r.queue_wait_s for r in rs if r.ok and r.queue_wait_s is not None]
        out[name] = StepStats(
            len(rs), sum(1 for r in rs if not r.ok), percentile(ok, 50), percentile(ok, 95), max(ok) if ok else None,
            percentile(waits, 50), percentile(waits, 95),
        )  # fmt: skip
    return out


@dataclass
class Report:
    mode: str
    users: int
    wall_s: float
    served: int
    errors: list[str]
    steps: dict[str, StepStats]
    rss_before: int | None
    rss_peak_sampled: int | None
    vmhwm: int | None
    rss_after_closed: int | None
    temp_before: FolderStats | None
    temp_after: FolderStats | None
    closed_in_s: float | None  # close -> every session folder gone
    sequence: list[dict] = field(default_factory=list)  # sequential mode: one row per session
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def run_users(
    server: Server, flow: Flow, users: int, settle_timeout_s: float = 60.0, deadline_s: float = 900.0,
) -> Report:
    """``users`` simulated users at once (they connect, then start together)."""
    log: list[Request] = []
    lock = threading.Lock()
    people = [User(i, server, flow, log, lock) for i in range(users)]
    for i in range(users):
        flow.video_for(i)  # made before the clock starts
    errors: list[str] = []
    barrier = threading.Barrier(users, timeout=deadline_s)
    rss_before = read_status(server.pid).get("VmRSS")
    temp_before = FolderStats.of(server.temp_dir)
    baseline_sessions = temp_before.sessions if temp_before else 0

    def run(user: User) -> None:
        try:
            user.connect()
        except StepFailed:
            barrier.abort()
            return
        try:
            barrier.wait()
            user.work()
        except (StepFailed, threading.BrokenBarrierError):
            pass
        finally:
            user.close()

    start = time.monotonic()
    with RssSampler(server.pid) as sampler:
        threads = [threading.Thread(target=run, args=(u,), name=f"user-{u.number}", daemon=True) for u in people]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline_s - (time.monotonic() - start)))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            errors.append(f"still running after the {deadline_s:.0f} s deadline: {', '.join(stuck)}")
        closed, closed_in = wait_sessions(server.temp_dir, baseline_sessions, settle_timeout_s)
        if not closed:
            errors.append(
                f"{session_count(server.temp_dir)} session folder(s) still there {settle_timeout_s:.0f} s "
                "after every user closed"
            )
        time.sleep(0.5)
        rss_after = read_status(server.pid).get("VmRSS")
    wall = time.monotonic() - start
    errors = [f"user {r.user} {r.step}: {r.error}" for r in log if not r.ok] + errors
    return Report(
        "users", users, wall, sum(1 for r in log if r.ok), errors, summarize(log), rss_before,
        sampler.peak or None, read_status(server.pid).get("VmHWM"), rss_after, temp_before,
        FolderStats.of(server.temp_dir), closed_in if closed else None,
    )  # fmt: skip


def run_sequential(
    server: Server, flow: Flow, sessions: int, settle_timeout_s: float = 60.0, deadline_s: float = 1800.0,
) -> Report:
    """``sessions`` users one after another; after each one closes, RSS and the temp folder."""
    log: list[Request] = []
    lock = threading.Lock()
    errors: list[str] = []
    rows: list[dict] = []
    rss_before = read_status(server.pid).get("VmRSS")
    temp_before = FolderStats.of(server.temp_dir)
    baseline_sessions = temp_before.sessions if temp_before else 0
    start = time.monotonic()
    close_times: list[float] = []
    with RssSampler(server.pid) as sampler:
        for i in range(sessions):
            if time.monotonic() - start > deadline_s:
                errors.append(f"deadline of {deadline_s:.0f} s reached after {i} sessions")
                break
            user = User(i, server, flow, log, lock)
            flow.video_for(i)
            worker = threading.Thread(target=_whole_session, args=(user,), name=f"session-{i}", daemon=True)
            worker.start()
            worker.join(timeout=max(1.0, deadline_s - (time.monotonic() - start)))
            if worker.is_alive():
                errors.append(f"session {i} still running at the deadline")
                break
            closed, closed_in = wait_sessions(server.temp_dir, baseline_sessions, settle_timeout_s)
            if not closed:
                errors.append(f"session {i}: its folder was still there {settle_timeout_s:.0f} s after close")
            else:
                close_times.append(closed_in)
            time.sleep(0.3)
            temp = FolderStats.of(server.temp_dir)
            status = read_status(server.pid)
            rows.append({
                "session": i + 1, "rss": status.get("VmRSS"), "fds": status.get("fds"),
                "threads": status.get("Threads"),
                "closed_in_s": closed_in if closed else None,
                "temp_bytes": temp.bytes if temp else None, "temp_files": temp.files if temp else None,
                "temp_dirs": temp.dirs if temp else None, "session_folders": temp.sessions if temp else None,
            })  # fmt: skip
    wall = time.monotonic() - start
    errors = [f"session {r.user} {r.step}: {r.error}" for r in log if not r.ok] + errors
    for r in close_times:
        log.append(Request(-1, "close->folder removed", r))
    report = Report(
        "sequential", sessions, wall, sum(1 for r in log if r.ok and r.user >= 0), errors, summarize(log), rss_before,
        sampler.peak or None, read_status(server.pid).get("VmHWM"), rows[-1]["rss"] if rows else None, temp_before,
        FolderStats.of(server.temp_dir), max(close_times) if close_times else None, rows,
    )  # fmt: skip
    report.flags = growth_flags(rows)
    return report


def _whole_session(user: User) -> None:
    try:
        user.connect()
        user.work()
    except StepFailed:
        pass
    finally:
        user.close()


def growth_flags(rows: list[dict]) -> list[str]:
    """Growth from after the 1st session to after the last one, over GROWTH_LIMIT."""
    if len(rows) < 2:
        return []
    first, last = rows[0], rows[-1]
    flags = []
    for key, label in (
        ("rss", "RSS"), ("fds", "open file descriptors"), ("threads", "threads"), ("temp_bytes", "temp folder bytes"),
        ("temp_files", "temp folder files"), ("temp_dirs", "temp folder folders"),
    ):  # fmt: skip
        a, b = first.get(key), last.get(key)
        if a is None or b is None:
            continue
        if b - a > GROWTH_LIMIT * a and b > a:
            shown = (mb(a), mb(b)) if key == "rss" else (a, b)
            flags.append(
                f"{label} grew {shown[0]} -> {shown[1]} ({(b - a) / max(a, 1):+.0%}) "
                f"from session 1 to session {last['session']}"
            )
    return flags


# ----------------------------------------------------------------------------- output


def mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(report: Report) -> str:
    lines = [
        (
            f"mode: {report.mode}, "
            f"{report.users} {'users at once' if report.mode == 'users' else 'sessions in a row'}, "
            f"wall {report.wall_s:.1f} s"
        ),
        f"requests served: {report.served}, errors: {len(report.errors)}",
    ]
    lines += [f"  ERROR {e}" for e in report.errors]
    lines.append(f"{'step':24s} {'n':>4s} {'err':>4s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s} "
                 f"{'wait p50':>9s} {'wait p95':>9s}")
    for name, s in report.steps.items():
        lines.append(
            f"{name:24s} {s.count:4d} {s.errors:4d} "
            f"{seconds(s.p50_s):>7s} {seconds(s.p95_s):>7s} {seconds(s.max_s):>7s} "
            f"{seconds(s.queue_wait_p50_s):>9s} {seconds(s.queue_wait_p95_s):>9s}"
        )
    lines += [
        (
            f"server RSS: before {mb(report.rss_before)}, peak sampled {mb(report.rss_peak_sampled)}, "
            f"VmHWM (lifetime peak) {mb(report.vmhwm)}, after all sessions closed {mb(report.rss_after_closed)}"
        ),
        f"temp folder before: {report.temp_before.brief() if report.temp_before else 'n/a'}",
        f"temp folder after:  {report.temp_after.brief() if report.temp_after else 'n/a'}",
    ]
    if report.temp_after and report.temp_after.other_entries:
        shown = report.temp_after.other_entries[:12]
        more = len(report.temp_after.other_entries) - len(shown)
        lines.append(f"  other top-level entries: {', '.join(shown)}{f' (+{more} more)' if more > 0 else ''}")
    if report.closed_in_s is not None:
        lines.append(f"sessions freed {report.closed_in_s:.1f} s (at most) after close")
    if report.sequence:
        first, last = report.sequence[0], report.sequence[-1]
        for row in (first, last):
            lines.append(
                f"after session {row['session']:3d}: RSS {mb(row['rss'])}, {row['fds']} fds, {row['threads']} threads, "
                f"temp {row['temp_bytes']} bytes in {row['temp_files']} files / {row['temp_dirs']} folders, "
                f"{row['session_folders']} session folders"
            )
        rss = [row["rss"] / 2**20 for row in report.sequence if row["rss"] is not None]
        trend = slope(rss)
        if trend is not None:
            half = slope(rss[len(rss) // 2 :]) if len(rss) >= 10 else None
            lines.append(
                f"RSS after each session: min {min(rss):.0f} MB, max {max(rss):.0f} MB, trend {trend:+.1f} MB/session "
                "(least squares)" + (f", {half:+.1f} MB/session over the second half" if half is not None else "")
            )
        lines += [f"  FLAG {f}" for f in report.flags] or ["  no growth over 10% from the 1st to the last session"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--users", type=int, default=None, help="simulated users at once (default 4)")
    mode.add_argument("--sequential", type=int, default=None, metavar="N", help="N sessions one after another")
    parser.add_argument("--url", help="a running app (default: start one here)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS")
    parser.add_argument("--temp-dir", type=Path,
                        help="with --url: the app's GRADIO_TEMP_DIR, for the temp-folder figures")
    parser.add_argument("--checkpoint", type=Path,
                        help="weights for the app started here (default: the reference weights)")
    parser.add_argument("--frames", type=int, default=8, help="frames of the test video (default 8)")
    parser.add_argument("--size", type=parse_size, default=(320, 240), help="WxH of the test video (default 320x240)")
    parser.add_argument("--track", type=int, default=3, help="frames each user tracks (default 3)")
    parser.add_argument("--same-video", action="store_true", help="every user uploads the very same file")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds one request may take")
    parser.add_argument("--settle-timeout", type=float, default=60.0,
                        help="seconds for a closed session's folder to go")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds the whole run may take")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (app log, temp folder)")
    args = parser.parse_args(argv)
    users = args.users if args.users is not None else (None if args.sequential else 4)
    count = users if users is not None else args.sequential
    if count is None or count <= 0:
        parser.error("--users / --sequential must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="sam2-load-"))
    server: Server | None = None
    try:
        video = make_video(workdir, args.frames, args.size)
        if args.url:
            url = args.url if args.url.endswith("/") else args.url + "/"
            server = Server(url, args.pid, args.temp_dir.resolve() if args.temp_dir else None)
        else:
            checkpoint = args.checkpoint
            if checkpoint is None:
                from tests.reference import write_reference_checkpoint

                checkpoint = write_reference_checkpoint("sam2.1_hiera_t", workdir / "reference-tiny.pt")
            print(f"starting the app (work folder {workdir})...", flush=True)
            server = launch(checkpoint, workdir, max_sessions=max(8, users or 1))
        print(f"app at {server.url} (pid {server.pid}); video {video.name}", flush=True)
        flow = Flow(video, args.size, args.track, args.request_timeout, args.same_video)
        if users is not None:
            report = run_users(server, flow, users, args.settle_timeout, args.deadline)
        else:
            report = run_sequential(server, flow, args.sequential, args.settle_timeout, args.deadline)
        print(render(report), flush=True)
        if args.json:
            args.json.write_text(report.to_json())
        if report.errors and server.log is not None:
            print("--- app log (tail) ---\n" + server.log_tail(), flush=True)
        return 1 if report.errors else 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
