"""Many videos on a Ray cluster: the command line's per-video run, one video per task, on a pool
of Ray actors that each load the model once.

    sam2-annotate videos/*.mp4 --prompts prompts/ --out /shared/results --ray            # this machine
    sam2-annotate videos/*.mp4 --prompts prompts/ --out /shared/results --ray auto --device cuda

The work of one video is :func:`annotation.cli.annotate_video`, the very function the one-machine
command line calls, given to the workers by the caller (``annotate``): so a video's files in
``--out`` are the command line's, file for file. ``--out`` must be a folder every node reaches (a
shared file system): the workers write there.

What this module adds:

- resuming: a finished video gets a small done record, ``<out>/<video>_done.json`` (the hashes of
  its inputs, the options that change the outputs, the files written, with their sizes), written
  last and atomically by the worker that made the files. A later run of the same command skips a
  video whose record matches (same inputs, same options, every file still there, same size);
- faults: a video that fails is tried once more (on any worker), then reported by name with its
  reason while the others go on; a worker that dies (its process killed, out of memory) is
  replaced by a new actor and its video is run again elsewhere; Ctrl-C stops the workers at once:
  the videos done stay done, those running are not marked done (a rerun does them);
- one progress line over the videos (and the frames of the videos finished) with videos per hour
  and the time left, and at the end a table and ``<out>/batch_summary.json``.

Ray is optional (``requirements-ray.txt``) and imported only here, only when a batch runs on it:
``import annotation.cli`` and the app never load it. Without an address a local Ray is started on
127.0.0.1 only, without its dashboard, with every core of this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from annotation import formats

RAY_MISSING = "--ray needs Ray, which is not installed: pip install -r requirements-ray.txt (ray==2.60.0)"
LOCAL = "local"  # --ray with no address: a Ray started here, on 127.0.0.1
SUMMARY_FILE = "batch_summary.json"
DONE_SUFFIX = "_done.json"
RECORD_VERSION = 1
TRIES = 2  # a video that fails is tried once more, then reported
DEATHS = 2  # a video whose worker died this often is reported (it may be what kills them: out of memory)
POLL_S = 0.5
STOP_WAIT_S = 10.0
HASH_CHUNK = 1 << 20
# Options that do not change a video's files: where things go, how they are shown, how the batch runs,
# and the prompt sources (their contents are hashed as inputs instead, file by file).
NOT_OUTPUT_OPTIONS = frozenset({
    "videos", "out", "quiet", "ray", "workers", "merge", "merge_formats", "val_videos", "session", "prompts",
    "import_", "checkpoint", "checkpoint_dir", "detector_model", "image_files", "export",
})  # fmt: skip

Annotate = Callable[..., Any]  # annotation.cli.annotate_video(job, engine, args, limits, workdir) -> Outcome


class RayMissing(RuntimeError):
    """Ray is not installed; the message says what to install."""


class BatchError(RuntimeError):
    """The batch cannot run at all (no worker could start); the message says why."""


def require_ray(local: bool = True) -> Any:
    """Import Ray (raising :class:`RayMissing` in words when it is not installed). A local Ray binds to
    127.0.0.1 only: Ray's own switch for machines that are not part of a cluster, read at import."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise RayMissing(RAY_MISSING) from None
    return ray


def on_this_machine(address: str | None) -> bool:
    """Whether ``address`` (None: a Ray started here) is a Ray on this machine's loopback."""
    return address in (None, LOCAL) or str(address).split("://")[-1].startswith(("127.", "localhost"))


# ----------------------------------------------------------------------------- done records


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_sha256(path: Path) -> str:
    """A file's SHA-256; a folder's (an image set): of its files' names and hashes, in name order."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{file_sha256(item)}\n".encode())
    return digest.hexdigest()


def output_options(args: argparse.Namespace, checkpoint: Path | None) -> dict[str, Any]:
    """The options that change a video's files, as JSON values: every option of the command line but
    those of :data:`NOT_OUTPUT_OPTIONS`; a file given (``--classes``) by its hash, not its path; the
    model's weights by their hash."""
    chosen: dict[str, Any] = {"exports": list(args.exports)}
    for name, value in sorted(vars(args).items()):
        if name not in NOT_OUTPUT_OPTIONS and name != "exports":
            chosen[name] = _json_value(value)
    if checkpoint is not None:
        chosen["checkpoint_sha256"] = file_sha256(checkpoint)
    return chosen


def _json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return {"sha256": input_sha256(value)} if value.exists() else str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class Fingerprint:
    """What a video's files depend on: its inputs (file name -> SHA-256) and the options."""

    inputs: dict[str, str]
    options: dict[str, Any]


def fingerprint(job: Any, options: dict[str, Any]) -> Fingerprint:
    """``job`` (an :class:`annotation.cli.Job`): its video or images, and the files its prompts came from."""
    paths = [*job.inputs, *getattr(job, "sources", ()), *([job.imported] if job.imported else [])]
    return Fingerprint({str(p): input_sha256(p) for p in paths}, options)


def record_path(out: Path, video: Path) -> Path:
    return out / f"{formats.file_stem(video.name)}{DONE_SUFFIX}"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Written to a temporary file beside it, then renamed: a reader sees the whole record or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)


def matching_record(path: Path, expected: Fingerprint) -> dict[str, Any] | None:
    """The done record at ``path`` if it matches ``expected`` and its files are all there, unchanged in size."""
    try:
        record = json.loads(path.read_text())
        if record.get("version") != RECORD_VERSION or record.get("inputs") != expected.inputs:
            return None
        if record.get("options") != json.loads(json.dumps(expected.options)):
            return None
        files = record["files"]
        if all(Path(path.parent / f["name"]).is_file() and (path.parent / f["name"]).stat().st_size == f["bytes"]
               for f in files):  # fmt: skip
            return record
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


# ----------------------------------------------------------------------------- results


@dataclass
class VideoResult:
    """One video's end: ``status`` done (this run), skipped (done before: its record matched), failed,
    stopped (Ctrl-C while it ran, not marked done) or waiting (Ctrl-C before it started)."""

    video: str
    status: str
    message: str = ""
    frames: int = 0
    tracked: int = 0
    objects: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    worker: str = ""
    tries: int = 0
    refused: bool = False  # the command was wrong for this video (as the command line's exit status 2)


@dataclass
class BatchSummary:
    """The batch's end, also written as ``<out>/batch_summary.json``."""

    out: str
    results: list[VideoResult]
    seconds: float  # wall time of the batch
    workers: int
    address: str
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def frames(self) -> int:
        """Frames of the videos done in this run."""
        return sum(r.frames for r in self.results if r.status == "done")

    @property
    def seconds_per_frame(self) -> float | None:
        """Worker seconds per frame of the videos done in this run (loading, tracking and files)."""
        work = sum(r.seconds for r in self.results if r.status == "done")
        return work / self.frames if self.frames else None

    @property
    def videos_per_hour(self) -> float | None:
        done = self.count("done")
        return done * 3600 / self.seconds if done and self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "done": self.count("done"), "skipped": self.count("skipped"),
                "failed": self.count("failed"), "frames": self.frames, "seconds_per_frame": self.seconds_per_frame,
                "videos_per_hour": self.videos_per_hour}  # fmt: skip

    def write(self, out: Path) -> Path:
        path = out / SUMMARY_FILE
        write_record(path, self.to_json())
        return path

    @classmethod
    def read(cls, path: Path) -> BatchSummary:
        data = json.loads(path.read_text())
        results = [VideoResult(**r) for r in data["results"]]
        return cls(data["out"], results, data["seconds"], data["workers"], data["address"], data["interrupted"])

    def table(self) -> str:
        """The videos, one a line, then the totals."""
        width = max([5, *(len(r.video) for r in self.results)])
        lines = [f"{'video':<{width}}  {'status':<8} {'frames':>6} {'seconds':>8} {'s/frame':>7}  reason"]
        for r in self.results:
            per = f"{r.seconds / r.frames:7.2f}" if r.frames and r.status == "done" else f"{'-':>7}"
            secs = f"{r.seconds:8.1f}" if r.status in ("done", "failed") else f"{'-':>8}"
            lines.append(f"{r.video:<{width}}  {r.status:<8} {r.frames or '-':>6} {secs} {per}  {r.message}".rstrip())
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "stopped", "waiting")
                           if self.count(s) or s in ("done", "skipped", "failed"))  # fmt: skip
        per_frame = f", {self.seconds_per_frame:.2f} s per frame" if self.seconds_per_frame else ""
        rate = f", {self.videos_per_hour:.0f} videos/hour" if self.videos_per_hour else ""
        lines.append(f"Batch: {counts}; {self.frames} frames{per_frame}; {self.seconds:.1f} s on {self.workers} "
                     f"worker(s){rate}.")  # fmt: skip
        return "\n".join(lines)


def from_record(video: str, status: str, message: str, record: dict[str, Any]) -> VideoResult:
    """A video's result from its done record (skipped: done before; done: finished as Ctrl-C came)."""
    seconds = record.get("seconds", 0.0) if status == "done" else 0.0
    return VideoResult(video, status, message, record.get("frames", 0), record.get("tracked", 0),
                       record.get("objects", 0), seconds, [f["name"] for f in record["files"]],
                       record.get("worker", ""), 1)  # fmt: skip


# ----------------------------------------------------------------------------- the workers


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs to load the model and run a video as the command line does."""

    model: str
    precision: str
    args: argparse.Namespace  # the command line's options (quiet: the driver shows the progress)
    limits: Any  # sam2.video_io.MediaLimits
    out: Path


@dataclass(frozen=True)
class VideoTask:
    job: Any  # annotation.cli.Job
    fingerprint: Fingerprint
    tries: int = 0
    deaths: int = 0

    @property
    def name(self) -> str:
        return self.job.video.name


class VideoWorker:
    """One Ray actor: the model loaded once (the checkpoint checked, or fetched, on its node), then one
    video per :meth:`run`, as the command line runs it."""

    def __init__(self, annotate: Annotate, settings: WorkerSettings) -> None:
        from annotation.engine import Engine, ModelSpec
        from annotation.options import resolve_checkpoint

        self.annotate, self.settings = annotate, settings
        args = self.args = argparse.Namespace(**vars(settings.args))
        _set_threads()
        checkpoint = resolve_checkpoint(settings.model, args.checkpoint, args.checkpoint_dir)
        # as annotation.cli.main makes it
        spec = ModelSpec(settings.model, checkpoint, args.image_size, args.device, settings.precision,
                         args.frame_storage, encode_ahead=0, kernels=args.kernels)
        self.engine = Engine.load(spec)
        if args.text is not None:
            from annotation.detect import PRECISIONS, Detector, DetectorSpec

            precision = settings.precision if settings.precision in PRECISIONS else "float32"
            spec = DetectorSpec(args.detector, device=args.device, precision=precision,
                                box_threshold=args.box_threshold, text_threshold=args.text_threshold)
            args.detector_model = Detector.load(spec, progress=False)
        self.workdir = Path(tempfile.mkdtemp(prefix="sam2-ray-"))
        self.host = socket.gethostname()

    def ready(self) -> tuple[int, str]:
        """(this worker's process id, its host), once the model is loaded."""
        return os.getpid(), self.host

    def run(self, task: VideoTask) -> VideoResult:
        started = time.monotonic()
        outcome = self.annotate(task.job, self.engine, self.args, self.settings.limits, self.workdir)
        out = self.settings.out
        files = [Path(p) for p in outcome.files]
        status = "stopped" if outcome.status == "partial" else outcome.status  # Ctrl-C reached this worker too
        result = VideoResult(task.name, status, outcome.message, outcome.frames, outcome.tracked,
                             outcome.objects, time.monotonic() - started, [_relative(p, out) for p in files],
                             f"{self.host}:{os.getpid()}", task.tries + 1, outcome.refused)  # fmt: skip
        if outcome.status == "done":
            record = {"version": RECORD_VERSION, "video": task.name, "inputs": task.fingerprint.inputs,
                      "options": task.fingerprint.options, "frames": outcome.frames, "tracked": outcome.tracked,
                      "objects": outcome.objects, "seconds": round(result.seconds, 3), "worker": result.worker,
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "files": [{"name": _relative(p, out), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                                for p in files]}  # fmt: skip
            write_record(record_path(out, task.job.video), record)  # last: the files are all there
        shutil.rmtree(self.workdir / formats.file_stem(task.name), ignore_errors=True)
        return result


def _set_threads() -> None:
    """Torch's threads: the CPUs Ray gave this actor (Ray also sets OMP_NUM_THREADS so)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        torch.set_num_threads(max(1, int(cpus)))


def _relative(path: Path, out: Path) -> str:
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- the batch


@dataclass(frozen=True)
class BatchEvent:
    """What the batch tells a listener: a worker ready (``pid``), a video started or finished on one."""

    kind: str  # "worker", "start", "finish", "died"
    worker: int  # the worker's number in this batch
    pid: int = 0
    video: str = ""


Listener = Callable[[BatchEvent], None]


class Progress:
    """One line on stderr: videos finished of those to do, their frames, videos per hour, time left."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.started, self.frames = time.monotonic(), 0
        self.bar = tqdm(total=total, desc="videos", unit="video", disable=quiet, file=sys.stderr, dynamic_ncols=True,
                        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix}")  # fmt: skip
        self.show()

    def finished(self, result: VideoResult) -> None:
        self.frames += result.frames if result.status == "done" else 0
        self.bar.update(1)
        self.show()

    def show(self, running: int = 0) -> None:
        elapsed = time.monotonic() - self.started
        done = self.bar.n
        text = f"{self.frames} frames, {_clock(elapsed)}"
        if done and elapsed > 0:
            rate = done * 3600 / elapsed
            text += f", {rate:.1f} videos/h, about {_clock((self.bar.total - done) * elapsed / done)} left"
        if running:
            text += f", {running} running"
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"  # fmt: skip


def connect(address: str | None, object_store_bytes: int | None = None) -> tuple[Any, bool]:
    """(ray, whether this call started it). A Ray already started in this process is used as it is;
    ``None`` or ``"local"`` starts one here (127.0.0.1, no dashboard, every core); else ``address``
    (``auto``, ``host:port`` or ``ray://host:port``) joins that cluster."""
    local = address in (None, LOCAL)
    ray = require_ray(on_this_machine(address))
    if ray.is_initialized():
        return ray, False
    import logging

    if local:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR,
                 object_store_memory=object_store_bytes)  # fmt: skip
    else:
        ray.init(address=address, logging_level=logging.ERROR)
    return ray, True


Plan = tuple[list[VideoTask], list[VideoResult]]


def plan(jobs: Sequence[Any], args: argparse.Namespace, checkpoint: Path | None) -> Plan:
    """(the videos to do, those skipped: done before with the same inputs and options)."""
    options = output_options(args, checkpoint)
    todo, skipped = [], []
    for job in jobs:
        task = VideoTask(job, fingerprint(job, options))
        record = matching_record(record_path(args.out, job.video), task.fingerprint)
        if record is None:
            todo.append(task)
        else:
            skipped.append(from_record(task.name, "skipped", "done before with the same inputs and options", record))
    return todo, skipped


def run_jobs(jobs: Sequence[Any], args: argparse.Namespace, limits: Any, model: str, precision: str,
             annotate: Annotate, *, address: str | None = None, workers: int | None = None,
             checkpoint: Path | None = None, listener: Listener | None = None) -> BatchSummary:  # fmt: skip
    """Run ``annotate`` (:func:`annotation.cli.annotate_video`) for every job on a pool of Ray actors and
    write the summary file; the jobs, options and limits are the command line's (``args.out`` the shared
    folder). ``checkpoint``: the model's weights as resolved here (hashed into the done records).
    Raises :class:`RayMissing`, :class:`BatchError`; Ctrl-C ends the batch with ``interrupted``."""
    started = time.monotonic()
    todo, skipped = plan(jobs, args, checkpoint)
    results, interrupted, count = [], False, 0
    if todo:  # else Ray is not even started
        ray, started_here = connect(address)
        try:
            count = _worker_count(ray, args.device, workers, len(todo))
            settings = WorkerSettings(model, precision, _worker_args(args), limits, args.out)
            results, interrupted = Pool(ray, annotate, settings, count, args.device, listener).run(todo, args.quiet)
        finally:
            if started_here:
                ray.shutdown()
    order = {job.video.name: index for index, job in enumerate(jobs)}
    every = sorted([*skipped, *results], key=lambda r: order.get(r.video, len(order)))
    summary = BatchSummary(str(args.out), every, time.monotonic() - started, count,
                           address or LOCAL, interrupted)  # fmt: skip
    summary.write(args.out)
    return summary


def _worker_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "quiet": True, "detector_model": None})


def _worker_count(ray: Any, device: str, asked: int | None, videos: int) -> int:
    """--workers, else one per GPU (``--device cuda``) or per CPU of the cluster; never more than the videos."""
    resources = ray.cluster_resources()
    available = int(resources.get("GPU", 0)) if device.startswith("cuda") else int(resources.get("CPU", 1))
    if device.startswith("cuda") and available < 1:
        raise BatchError("--device cuda: the Ray cluster has no GPU.")
    return max(1, min(asked or available, max(videos, 1)))


class Pool:
    """The actors and the queue of videos: a free worker takes the next video; a video that failed goes
    back once; a dead worker is replaced and its video goes back (up to :data:`DEATHS` times)."""

    def __init__(self, ray: Any, annotate: Annotate, settings: WorkerSettings, count: int, device: str,
                 listener: Listener | None) -> None:  # fmt: skip
        self.ray, self.annotate, self.settings, self.count = ray, annotate, settings, count
        self.listener = listener or (lambda event: None)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // count)
        gpus = 1 if device.startswith("cuda") else 0
        self.actor_class = ray.remote(num_cpus=1 if gpus else cpus, num_gpus=gpus, max_restarts=0)(VideoWorker)
        self.numbers = iter(range(1, 1 << 30))
        self.starting: dict[Any, tuple[int, Any]] = {}  # ready() ref -> (number, actor)
        self.idle: deque[tuple[int, Any]] = deque()
        self.running: dict[Any, tuple[int, Any, VideoTask]] = {}  # run() ref -> (number, actor, task)
        self.start_failures: list[str] = []

    def _start_worker(self) -> None:
        actor = self.actor_class.remote(self.annotate, self.settings)
        self.starting[actor.ready.remote()] = (next(self.numbers), actor)

    def run(self, todo: list[VideoTask], quiet: bool) -> tuple[list[VideoResult], bool]:
        queue, results = deque(todo), []
        progress = Progress(len(todo), quiet)
        for _ in range(self.count):
            self._start_worker()
        try:
            while queue or self.running:
                while queue and self.idle:
                    number, actor = self.idle.popleft()
                    task = queue.popleft()
                    self.running[actor.run.remote(task)] = (number, actor, task)
                    self.listener(BatchEvent("start", number, video=task.name))
                if not self.running and not self.starting:
                    raise BatchError("No worker could load the model: " + "; ".join(self.start_failures[-1:]))
                ready, _ = self.ray.wait([*self.starting, *self.running], num_returns=1, timeout=POLL_S)
                for ref in ready:
                    if ref in self.starting:
                        self._worker_ready(ref)
                    else:
                        result = self._video_ended(ref, queue)
                        if result is not None:
                            results.append(result)
                            progress.finished(result)
                progress.show(len(self.running))
        except KeyboardInterrupt:
            print("\nStopping: the videos done stay done; those running are stopped and not marked done "
                  "(run the same command again to do them).", file=sys.stderr)  # fmt: skip
            running = [task for _, _, task in self.running.values()]
            self._stop_all()
            results += [self._after_stop(task) for task in running]
            results += [VideoResult(t.name, "waiting", "not started (Ctrl-C)") for t in queue]
            return results, True
        finally:
            progress.close()
            self._stop_all()
        return results, False

    def _after_stop(self, task: VideoTask) -> VideoResult:
        """A video running at Ctrl-C, once its worker is gone: done if it finished just then (its record
        is written last, so a record means every file is there), else stopped."""
        record = matching_record(record_path(self.settings.out, task.job.video), task.fingerprint)
        if record is not None:
            return from_record(task.name, "done", "finished as Ctrl-C came", record)
        return VideoResult(task.name, "stopped", "stopped by Ctrl-C before it finished", tries=task.tries + 1)

    def _worker_ready(self, ref: Any) -> None:
        number, actor = self.starting.pop(ref)
        try:
            pid, _host = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self.start_failures.append(_first_line(exc))
            return
        self.idle.append((number, actor))
        self.listener(BatchEvent("worker", number, pid=pid))

    def _video_ended(self, ref: Any, queue: deque[VideoTask]) -> VideoResult | None:
        """The video's result, or None when it goes back to the queue (a retry, or its worker died)."""
        number, actor, task = self.running.pop(ref)
        try:
            result: VideoResult = self.ray.get(ref)
        except self.ray.exceptions.RayActorError:
            self.listener(BatchEvent("died", number, video=task.name))
            self.ray.kill(actor)
            self._start_worker()  # a replacement, loading the model anew
            task = replace(task, deaths=task.deaths + 1)
            if task.deaths >= DEATHS:
                return VideoResult(task.name, "failed", f"its worker died {task.deaths} times while running it "
                                   "(out of memory?)", tries=task.tries + task.deaths)  # fmt: skip
            queue.appendleft(task)
            return None
        except self.ray.exceptions.RayTaskError as exc:  # not the video's outcome: a fault of the runner itself
            result = VideoResult(task.name, "failed", f"unexpected error: {_first_line(exc)}", tries=task.tries + 1)
        self.idle.append((number, actor))
        self.listener(BatchEvent("finish", number, video=task.name))
        if result.status == "failed" and not result.refused and task.tries + 1 < TRIES:
            queue.append(replace(task, tries=task.tries + 1))
            return None
        if result.status == "failed" and result.tries > 1:
            result.message += f" (tried {result.tries} times)"
        return result

    def _stop_all(self) -> None:
        """Kill every worker, and wait (a few seconds at most) until those running a video are gone:
        after that none can still write a done record."""
        for _, actor in [*self.starting.values(), *self.idle]:
            self.ray.kill(actor)
        for _, actor, _ in self.running.values():
            self.ray.kill(actor)
        if self.running:
            self.ray.wait(list(self.running), num_returns=len(self.running), timeout=STOP_WAIT_S)
        self.starting.clear(), self.idle.clear(), self.running.clear()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not set(line.strip()) <= {"^"}]
    return lines[-1] if lines else type(exc).__name__


def merge_sources(summary: BatchSummary) -> list[Path]:
    """The COCO zips of the videos done, in this run or before (for ``--merge``)."""
    out = Path(summary.out)
    return [out / name for r in summary.results if r.status in ("done", "skipped") for name in r.files
            if name.endswith("_coco.zip")]  # fmt: skip


def names(results: Iterable[VideoResult], status: str) -> list[str]:
    return [r.video for r in results if r.status == status]
