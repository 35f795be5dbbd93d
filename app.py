"""SAM 2 video annotator: a web page to mark objects in a video and track them with SAM 2.

    python app.py                       # http://127.0.0.1:7860, sam2.1_hiera_tiny at 1024
    python app.py --model sam2.1_hiera_small --image-size 768 --max-frames 300
    python app.py --host 0.0.0.0        # reachable from other machines (hosting)
    python app.py --precision float32   # exact results (default: bfloat16 where measured faster)

The model is loaded once and shared by everyone using the page; each browser tab has its own
work (see ui/sessions.py). Without --checkpoint the official checkpoint is downloaded into
checkpoints/ (or --checkpoint-dir) on first use, and checked against its SHA-256 on every start.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sam2.video_io import MediaLimits

@dataclass(frozen=True)
class AppOptions:
    """The command line, parsed and checked."""

    model: str
    checkpoint: Path | None
    checkpoint_dir: Path | None  # where the official file is looked for and downloaded without --checkpoint
    image_size: int
    device: str
    precision: str  # resolved: "float32", "bfloat16" or "float16" ("auto" is decided here)
    frame_storage: str
    host: str
    port: int
    share: bool
    limits: MediaLimits
    max_upload_mb: int
    session_ttl_min: float
    resume_grace_s: float  # how long a closed or reloaded page's work is kept for a reload
    max_sessions: int
    queue_size: int
    client_idle_s: float = 120.0  # an API client's work with no heartbeat open is freed after this long unused
    encode_ahead: int = 8  # frames per session encoded while the model is idle
    find: tuple[float, float, float] = (0.8, 0.95, 0.7)  # "Find objects": IoU, stability and NMS thresholds
    kernels: str = "measure"  # attention kernels: measured at first use, or pinned ("fused", "blockwise")
    precision_reason: str = ""  # why `precision` (the measurement behind "auto"), for the page and the log
    detector: str = "IDEA-Research/grounding-dino-tiny"  # "Find by text": a model id or folder (--detector)


def parse_args(argv: list[str] | None = None) -> AppOptions:
    from annotation.options import (
        QuietParser,
        add_detector_arguments,
        add_media_arguments,
        add_model_arguments,
        fraction,
        media_limits,
        positive_number,
        positive_whole,
        precision_reason,
        resolve_model,
        whole_from_zero,
    )

    parser = QuietParser(description="SAM 2 video annotator (a Gradio web page).")
    add_model_arguments(parser)
    add_media_arguments(parser)
    add_detector_arguments(parser)
    page = parser.add_argument_group("serving")
    page.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                      help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    page.add_argument("--port", type=int,
                      default=int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860),
                      help="port (default: $GRADIO_SERVER_PORT, else $PORT as hosts set it, else 7860)")
    page.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    page.add_argument("--max-upload-mb", type=positive_whole, default=500, help="largest upload accepted, in MB")
    page.add_argument("--session-ttl-min", type=positive_number, default=30.0,
                      help="free a browser tab's work after this many idle minutes")
    page.add_argument("--resume-grace-s", type=positive_number, default=None,
                      help="keep a closed or reloaded page's work this many seconds, so that a reload in "
                           "the same browser resumes it (default: the session TTL). A page cannot tell a "
                           "reload from a closed tab, so a closed tab's work is freed only after this; "
                           "until then it counts towards --max-sessions")
    page.add_argument("--max-sessions", type=positive_whole, default=8, help="most browser tabs working at once")
    page.add_argument("--client-idle-s", type=positive_number, default=120.0,
                      help="free the work of an API client that keeps no connection open (no heartbeat) after "
                           "this many seconds without a request (a closed client's work is freed at once)")
    page.add_argument("--queue-size", type=positive_whole, default=64,
                      help="most waiting requests; more get 'server busy'")
    page.add_argument("--encode-ahead", type=whole_from_zero, default=8,
                      help="while the model is idle, encode the frame a user looks at and the next ones, this "
                           "many per session, one frame at a time (clicks there answer at once; tracking starts "
                           "on encoded frames); each holds ~20 MB at 1024 px, 5 MB at 512. 0 turns it off")
    finder = parser.add_argument_group("find objects (the automatic mask generator; defaults: Meta's)")
    finder.add_argument("--find-iou-thresh", type=fraction, default=0.8,
                        help="keep a found mask whose predicted IoU is above this (0 to 1)")
    finder.add_argument("--find-stability-thresh", type=fraction, default=0.95,
                        help="keep a found mask whose stability score is at least this (0 to 1)")
    finder.add_argument("--find-nms-thresh", type=fraction, default=0.7,
                        help="of two found masks whose boxes overlap more than this (IoU), keep the better (0 to 1; "
                             "1 keeps both)")
    args = parser.parse_args(argv)
    limits = media_limits(args, parser, advice="start the app with {flag} {value}")
    if args.resume_grace_s is None:
        args.resume_grace_s = args.session_ttl_min * 60
    for name in ("max_upload_mb", "session_ttl_min", "resume_grace_s", "max_sessions", "queue_size", "client_idle_s"):
        if not getattr(args, name) > 0:  # (NaN too)
            parser.error(f"--{name.replace('_', '-')} must be positive")
    find = (args.find_iou_thresh, args.find_stability_thresh, args.find_nms_thresh)
    for name, value in zip(("iou", "stability", "nms"), find, strict=True):
        if not 0 <= value <= 1:
            parser.error(f"--find-{name}-thresh must be from 0 to 1")
    model, precision = resolve_model(args, parser)
    return AppOptions(
        model, args.checkpoint, args.checkpoint_dir, args.image_size, args.device, precision,
        args.frame_storage, args.host, args.port, args.share, limits, args.max_upload_mb, args.session_ttl_min,
        args.resume_grace_s, args.max_sessions, args.queue_size, client_idle_s=args.client_idle_s,
        encode_ahead=max(0, args.encode_ahead), find=find, kernels=args.kernels,
        precision_reason=precision_reason(args.precision, args.device), detector=args.detector,
    )  # fmt: skip


STALE_CACHE_S = 86_400.0  # Gradio's files left in our own folder by an earlier run go after a day


def prepare_temp_root() -> Path:
    """Gradio's cache folder (uploads, served files) and our session folders live together in
    one folder that stays the same from start to start, so that work kept on disk
    (``ui/saved_work.py``) survives a restart: GRADIO_TEMP_DIR where the host sets it, else
    ``server/`` in the app's cache folder (``~/.cache/sam2-annotator``; $SAM2_CACHE_DIR or
    $XDG_CACHE_HOME move it). One app at a time per folder."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        from sam2.machine import cache_folder

        own = cache_folder() / "server"
        own.mkdir(parents=True, exist_ok=True)
        os.environ["GRADIO_TEMP_DIR"] = str(own)
        _remove_stale(own)
    root = Path(os.environ["GRADIO_TEMP_DIR"]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _remove_stale(root: Path) -> None:
    """Gradio's uploads and served files from runs before, once a day old (sessions/ is the store's to judge)."""
    now = time.time()
    for entry in root.iterdir():
        try:
            if entry.name != "sessions" and now - entry.lstat().st_mtime > STALE_CACHE_S:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except OSError:
            continue


def main(argv: list[str] | None = None) -> int:
    from annotation.hosting import gpu_decorator, on_zero_gpu

    gpu = gpu_decorator()  # imports `spaces` where installed: before torch starts CUDA, as ZeroGPU needs
    options = parse_args(argv)
    from sam2.allocator import tune_malloc

    # Before any thread starts. Two arenas: in a 20-session load run RSS grew 25% with one
    # arena per request thread, and stayed flat with two.
    tune_malloc(arenas=2)
    temp_root = prepare_temp_root()  # before importing gradio, which reads it
    from ui.logs import configure

    configure()  # tracebacks of failed runs and events go to stderr, each line naming its session
    logging.getLogger("sam2.kernels").setLevel(logging.INFO)  # each attention kernel chosen, and why

    from annotation.engine import Engine, FindSettings, ModelSpec
    from annotation.options import checkpoint_problem, resolve_checkpoint
    from sam2.checkpoint import CheckpointError

    checkpoint: Path | None = None
    try:
        checkpoint = resolve_checkpoint(options.model, options.checkpoint, options.checkpoint_dir)
        print(f"Loading {options.model} from {checkpoint}...", flush=True)
        zero_gpu = on_zero_gpu()  # model calls in GPU calls, no encoding ahead (annotation/hosting.py)
        spec = ModelSpec(
            options.model, checkpoint, options.image_size, options.device, options.precision, options.frame_storage,
            encode_ahead=0 if zero_gpu else options.encode_ahead, find=FindSettings(*options.find),
            kernels=options.kernels, zero_gpu=zero_gpu, precision_reason=options.precision_reason,
        )  # fmt: skip
        engine = Engine.load(spec, gpu)
    except CheckpointError as exc:  # CheckpointUnavailable too: offline, or a bad file
        print(f"Error: {checkpoint_problem(exc, checkpoint, options.model)}", file=sys.stderr)
        return 1
    print(f"Model: {engine.describe()}; video frames kept as {options.frame_storage}; attention kernels: "
          f"{options.kernels}.", flush=True)
    if not zero_gpu:  # there the GPU comes with a call, and a call spends the user's quota
        print(f"Speed: {engine.measure_speed().describe()}.", flush=True)
    for line in engine.describe_choices():
        print(f"Chosen on this machine: {line}.", flush=True)

    from starlette.middleware import Middleware

    from ui.access import SessionFileGuard, plain_input_checks
    from ui.layout import build_page
    from ui.sessions import SessionStore

    store = SessionStore(
        temp_root / "sessions", ttl_s=options.session_ttl_min * 60, max_sessions=options.max_sessions,
        grace_s=options.resume_grace_s, upload_cache=temp_root, idle_s=options.client_idle_s,
        on_close=lambda work: work.video is not None and engine.stop_encoding_ahead(work.video.handle),
    )  # fmt: skip
    for message in store.load_saved():  # work kept from the last run waits for its browsers
        print(f"Warning: {message}", file=sys.stderr, flush=True)
    store.start_sweeper()
    from ui.saved_work import WorkKeeper

    keeper = WorkKeeper(store, engine.image_size_of)  # each page's work is written to its folder after each change
    keeper.start()
    atexit.register(store.shutdown)
    atexit.register(keeper.finish)  # (atexit runs last first: the last changes are saved before the store stops)
    from annotation.detect import PRECISIONS, DetectorSlot, DetectorSpec

    # "Find by text" loads its detector on first use; the page works without it.
    detector_precision = options.precision if options.precision in PRECISIONS else "float32"
    detector = DetectorSlot(DetectorSpec(options.detector, device=options.device, precision=detector_precision))
    demo = build_page(store, engine, options.limits, detector)
    plain_input_checks(demo)
    demo.queue(max_size=options.queue_size, default_concurrency_limit=4)
    launch = {
        "server_name": options.host,
        "server_port": options.port,
        "share": options.share,
        "max_file_size": f"{options.max_upload_mb}mb",
        "allowed_paths": [],
        "ssr_mode": False,
        "footer_links": ["api"],
        "app_kwargs": {"middleware": [Middleware(SessionFileGuard, store=store)]},
        "css": _css(),
        "head": _head(),
    }
    _launch(demo, launch)
    return 0


LAUNCH_TRIES = 3


def _launch(demo: object, settings: dict) -> None:
    """``demo.launch(**settings)``, tried again when Gradio gives up on its own page: after
    starting the server it asks it for the page once with a 3 s timeout, and on a busy machine
    (the model's first calls, other users) that answer can be late, which Gradio reports as
    "localhost is not accessible" and ends. The server is closed and started again."""
    for attempt in range(1, LAUNCH_TRIES + 1):
        try:
            demo.launch(**settings)
            return
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == LAUNCH_TRIES:
                raise
            print(f"The page did not answer within Gradio's 3 s (a busy machine); starting it again "
                  f"({attempt + 1} of {LAUNCH_TRIES}).", file=sys.stderr, flush=True)  # fmt: skip
            demo.close()


def _css() -> str:
    from ui.layout import CSS

    return CSS


def _head() -> str:
    from ui.layout import page_head

    return page_head()


if __name__ == "__main__":
    sys.exit(main())
