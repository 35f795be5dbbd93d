"""The command line: track videos from prompts made elsewhere, and write the exports.

    sam2-annotate walk.mp4 --session walk_session.json --export coco,png
    python -m annotation videos/*.mp4 --session sessions/ --out results/ --image-size 512
    sam2-annotate walk.mp4 --text "person, car" --every 10 --export coco

Typical use: click a few frames of each video in the page, save each session file, then track
the long videos here (on a bigger machine, overnight, in a batch) and export. A hand-written
prompts file works too (``--prompts``, format in :func:`annotation.formats.load_prompts_json`).

Each video is read with the same limits as the page (``--max-frames`` and the others); a
session file also gives the frame rate and size it was saved at, so its frames line up. A
video tracked forward only is read from its file as tracking goes (:func:`streams`,
``sam2.video_stream``), so memory does not grow with its length; other runs, and
``--decode-first``, decode it whole first, as the page does; the files made are the same. An
image set stands where a video does: a folder of images or a zip of them, or (``--images``)
the image files given, as one set; its frames are the images in name order, each at its own
size, and its exports name the masks after the images. Then
its objects and prompts are replayed, tracking runs from ``--start`` (default: the first frame
with a prompt) forward, backward or both, and the chosen files are written into ``--out``,
named after the video (``walk_coco.json``...).

The session file is written first, then the other files; one that cannot be made (a blocked
path, a format refused for the video) is left out, the others are made, and the summary says
what was not made and why (the video counts as failed). Ctrl-C stops tracking, or the files,
after the current frame and saves a session file with every frame done so far (load it in the
page or give it to ``--session`` again). Bad input gets one plain line and exit status 2 before
the model loads; a video that fails is reported, the others go on, and the exit status is 1.

One dataset for the whole batch: ``--merge coco,yolo,ytvis`` (and ``--val-videos 0.2``) merges the
videos done into ``--out/merged/`` (:mod:`annotation.merge`; each video's COCO dataset with
frames is made for it). Output folders of earlier runs merge without tracking:

    python -m annotation merge results/ more-results/ --into dataset/ --formats coco,yolo --val-videos 0.2
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from annotation import concepts, formats, imports, merge, operations
from annotation.detect import parse_phrases
from annotation.document import UserError
from annotation.engine import Engine, ModelSpec
from annotation.options import (
    QuietParser,
    add_detector_arguments,
    add_media_arguments,
    add_model_arguments,
    checkpoint_problem,
    fraction,
    media_limits,
    positive_number,
    positive_whole,
    resolve_checkpoint,
    resolve_model,
    whole_from_zero,
)
from annotation.work import Work
from sam2.image_set import IMAGE_SUFFIXES, is_image_name, is_zip_name
from sam2.video_io import MediaLimits

log = logging.getLogger("annotation.cli")

DEFAULT_EXPORTS = ("png", "coco", "session")
MERGED_FOLDER = "merged"  # --merge writes into --out/merged/
MERGE_COMMAND = "merge"  # `sam2-annotate merge OUT_DIR... --into DATASET`
EXIT_FAILED = 1  # a video could not be done
EXIT_USAGE = 2  # the command itself is wrong (argparse's own code)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it
POLL_S = 0.2
RAY_LOCAL = "local"  # --ray without an address (annotation.ray_batch.LOCAL)


@dataclass(frozen=True)
class Job:
    """One video (or image set) and its prompts: a session file's, a prompts file's, or none
    (``--no-track`` then exports an empty document). Files are read when the job is planned,
    so a bad one is refused before the model loads.

    ``video`` is the file, folder or zip given; with ``images`` (``--images``), the folder of
    those image files, which names the set."""

    video: Path
    session: formats.Session | None = None
    prompts: formats.PromptsFile | None = None
    imported: Path | None = None  # masks or detections, read once the video is decoded
    images: tuple[Path, ...] = ()  # --images: the image files of one set
    sources: tuple[Path, ...] = ()  # the session or prompts file read for it (the Ray runner hashes them)

    @property
    def inputs(self) -> list[Path]:
        return list(self.images) or [self.video]


@dataclass
class Outcome:
    job: Job
    status: str = "skipped"  # "done", "partial" (Ctrl-C), "failed", "skipped"
    message: str = ""
    frames: int = 0
    tracked: int = 0
    objects: int = 0
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    exported: operations.ExportOutcome | None = None  # what the export made and not (None: it did not start)
    refused: bool = False  # the command was wrong for this video (--every larger than it): exit status 2


class Refused(UserError):
    """The command cannot work for this video (found once it is decoded): nothing is written for it."""


# ----------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    parser = QuietParser(
        prog="sam2-annotate",
        description="Track objects through videos with SAM 2 from prompts made in the page (a session file) or "
        "written by hand (a prompts file), and write masks and dataset files.",
        epilog="Example: sam2-annotate walk.mp4 --session walk_session.json --export coco,png --out results/",
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO",
                        help="video files to annotate (or images); a folder of images or a zip of them is an image "
                             "set: its images, in name order, are the frames")  # fmt: skip
    parser.add_argument("--images", action="store_true",
                        help="the image files given are one image set (named after their folder), not one "
                             "single-frame video each")  # fmt: skip
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--session", type=Path, metavar="FILE_OR_FOLDER",
                        help="a session file saved from the page; with several videos, a folder holding "
                             "<video name>_session.json (or <video name>.json) for each")
    source.add_argument("--prompts", type=Path, metavar="FILE_OR_FOLDER",
                        help="a prompts file (objects with clicks and boxes, in the video's own pixels); a "
                             "folder: one <video name>_prompts.json (or <video name>.json) per video; one "
                             "file for several videos applies to each")  # fmt: skip
    source.add_argument("--import", dest="import_", type=Path, metavar="FILE_OR_FOLDER",
                        help="masks or a detector's boxes to start from: a PNG mask zip, COCO (masks or "
                             "detection results), YouTube-VIS, YOLO txt (boxes on --start) or a zip of them; "
                             "a folder: <video name>_<anything> per video")  # fmt: skip
    source.add_argument("--text", metavar="PHRASES",
                        help="find these with the text detector, phrases separated by commas ('person, red car'): "
                             "on the --start frame, each box a new object, then tracking as usual; with --every, "
                             "on every K-th frame while tracking runs")  # fmt: skip
    parser.add_argument("--classes", type=Path, metavar="FILE",
                        help="the class list, a classes.txt or YOLO data.yaml: the labels of every video (and the "
                             "names of YOLO class numbers in --import)")
    parser.add_argument("--min-score", type=fraction, default=0.0,
                        help="with --import of detections: leave out boxes scoring below this (default 0)")
    find = parser.add_argument_group("finding by text, and matching boxes across frames")
    find.add_argument("--every", type=positive_whole, default=None, metavar="K",
                      help="with --text: detect on frames 0, K, 2K ... while tracking runs; a box whose SAM mask "
                           "overlaps an object tracked there is that object, the others are new objects, tracked "
                           "both ways (the whole video is tracked; --direction and --frames do not apply)")
    find.add_argument("--box-threshold", type=fraction, default=None,
                      help="with --text: keep boxes scoring above this (default: the detector's published one, "
                           "0.35 for Grounding DINO, 0.1 for OWLv2)")
    find.add_argument("--text-threshold", type=fraction, default=None,
                      help="with --text, Grounding DINO: a phrase names a box when it scores above this (default 0.25)")
    find.add_argument("--match-iou", type=fraction, default=concepts.DEFAULT_MATCH_IOU,
                      help="mask IoU at or above which a box belongs to an object already tracked on its frame "
                           f"(default {concepts.DEFAULT_MATCH_IOU:g})")
    find.add_argument("--no-matching", action="store_true",
                      help="with --import of boxes on several frames: make each box a new object, as for one "
                           "frame's boxes, instead of matching them to the objects across frames")
    add_detector_arguments(parser)
    track = parser.add_argument_group("tracking")
    track.add_argument("--direction", choices=operations.DIRECTIONS, default="both",
                       help="from the start frame: forward, backward or both (default both)")
    track.add_argument("--start", type=whole_from_zero, default=None,
                       help="frame to track from (default: the first frame with a prompt)")
    track.add_argument("--frames", type=positive_whole, default=None,
                       help="track at most this many frames each way past the start frame, as the page's "
                            "'Frames to track' (default: to the end of the video)")
    track.add_argument("--no-track", action="store_true",
                       help="do not track: export the masks as the session file holds them")
    track.add_argument("--decode-first", action="store_true",
                       help="decode the whole video into memory before tracking, as the page does. By default a "
                            "video tracked forward only (--direction forward, or tracking from frame 0) is read "
                            "from its file as tracking goes, in memory that does not grow with its length")
    out = parser.add_argument_group("output")
    out.add_argument("--export", default=",".join(DEFAULT_EXPORTS), metavar="LIST",
                     help=f"comma-separated files to write: {', '.join(operations.EXPORT_FORMATS)} "
                          f"(default {','.join(DEFAULT_EXPORTS)})")
    out.add_argument("--val-every", type=whole_from_zero, default=0, metavar="K",
                     help="YOLO dataset: every K-th frame goes to the validation split (default 0: none)")
    out.add_argument("--out", type=Path, default=Path("annotations"),
                     help="folder for the files, created if needed (default: ./annotations)")
    out.add_argument("--fps", type=positive_number, default=None,
                     help="frames per second to keep (default: the session file's, else the video's own, "
                          "capped by --max-fps)")  # fmt: skip
    out.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
    merged = parser.add_argument_group("one dataset for all the videos")
    merged.add_argument("--merge", default=None, metavar="LIST",
                        help=f"after the batch, merge the videos done into one dataset in --out/{MERGED_FOLDER}/: "
                             f"comma-separated {', '.join(merge.MERGE_FORMATS)} (each video's COCO dataset with "
                             "frames is made for it). Earlier runs' folders: "
                             f"'sam2-annotate {MERGE_COMMAND} OUT_DIR... --into DATASET'")  # fmt: skip
    merged.add_argument("--val-videos", type=fraction, default=0.0, metavar="FRACTION",
                        help="with --merge: this share of the videos, whole, goes to the YOLO validation split "
                             "(default 0)")  # fmt: skip
    cluster = parser.add_argument_group("many videos on a Ray cluster (pip install -r requirements-ray.txt)")
    cluster.add_argument("--ray", nargs="?", const=RAY_LOCAL, default=None, metavar="ADDRESS",
                         help="run the videos on Ray workers, each loading the model once, one video per task: no "
                              "ADDRESS starts Ray on this machine (127.0.0.1, every core); 'auto' or "
                              "ray://HOST:PORT joins a cluster, whose every node must reach --out (a shared file "
                              "system). A video done gets <video>_done.json: the same command again skips it")
    cluster.add_argument("--workers", type=positive_whole, default=None, metavar="N",
                         help="with --ray: how many workers (default: one per CPU core, or per GPU with --device "
                              "cuda, which gives each worker one GPU)")  # fmt: skip
    add_model_arguments(parser)
    add_media_arguments(parser)
    return parser


def build_merge_parser() -> argparse.ArgumentParser:
    parser = QuietParser(
        prog=f"sam2-annotate {MERGE_COMMAND}",
        description="Merge the outputs of annotated videos (sam2-annotate's --out folders, or their <video>_coco.zip "
                    "files) into one COCO, YOLO and YouTube-VIS dataset, without tracking anything.",
        epilog=f"Example: sam2-annotate {MERGE_COMMAND} results/ more/ --into dataset/ --formats coco,yolo "
               "--val-videos 0.2",
    )  # fmt: skip
    parser.add_argument("outputs", nargs="+", type=Path, metavar="OUT_DIR",
                        help="output folders of earlier runs (each video's <video>_coco.zip, or _coco.json, is "
                             "read), or those files")  # fmt: skip
    parser.add_argument("--into", type=Path, required=True, metavar="DATASET",
                        help="folder for the merged dataset: new, empty, or an earlier merge (replaced)")
    parser.add_argument("--formats", default=",".join(merge.MERGE_FORMATS), metavar="LIST",
                        help=f"comma-separated: {', '.join(merge.MERGE_FORMATS)} (default: all)")
    parser.add_argument("--val-videos", type=fraction, default=0.0, metavar="FRACTION",
                        help="this share of the videos, whole, goes to the YOLO validation split (default 0)")
    parser.add_argument("--val-every", type=whole_from_zero, default=0, metavar="K",
                        help="every K-th frame of the other videos goes to the validation split too (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="which videos go to validation (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    return parser


def parse_merge_formats(text: str, parser: argparse.ArgumentParser, flag: str) -> list[str]:
    try:
        return merge.check_choices(text.split(","), 0.0, 0)
    except merge.MergeError as exc:
        parser.error(f"{flag}: {exc}")


def parse_exports(text: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in operations.EXPORT_FORMATS]
    if unknown or not chosen:
        parser.error(f"--export: unknown {', '.join(unknown) or 'empty list'}; "
                     f"choose from {', '.join(operations.EXPORT_FORMATS)}")  # fmt: skip
    return chosen


def plan_jobs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Job]:
    """Pair every video with its session or prompts file; refuse what cannot work before the
    model is loaded (missing files, two videos whose exports would have one name)."""
    missing = [str(v) for v in args.videos if not (v.is_file() or v.is_dir())]
    if missing:
        parser.error(f"no such video file: {', '.join(missing)}")
    if args.images:
        _one_image_set(args, parser)
    stems: dict[str, Path] = {}
    for video in args.videos:
        stem = formats.file_stem(video.name)
        if stem in stems:
            parser.error(f"{stems[stem]} and {video} would write files of the same name into --out; "
                         "annotate them in separate runs or rename one")  # fmt: skip
        stems[stem] = video
    if args.session is None and args.prompts is None and args.import_ is None and args.text is None \
            and not args.no_track:
        parser.error("give --session (a session file saved from the page), --prompts or --import (or --text, "
                     "the phrases to find); nothing to track without prompts")  # fmt: skip
    jobs = []
    read: dict[Path, formats.PromptsFile] = {}  # one prompts file may serve several videos
    for video in args.videos:
        session_path = _paired(args.session, video, "session", parser, several=len(args.videos) > 1)
        prompts_path = _paired(args.prompts, video, "prompts", parser, several=False)
        try:
            session = formats.load_session_json(session_path) if session_path else None
            if prompts_path and prompts_path not in read:
                read[prompts_path] = formats.load_prompts_json(prompts_path)
        except formats.SessionError as exc:
            parser.error(str(exc))
        images = tuple(args.image_files) if args.images else ()
        sources = tuple(p for p in (session_path, prompts_path) if p)
        jobs.append(Job(video, session, read.get(prompts_path), _imported(args.import_, video, parser), images,
                        sources))
    return jobs


def _one_image_set(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--images: the files given become one job, named after the folder of the first."""
    others = [str(v) for v in args.videos if not (v.is_file() and is_image_name(v.name))]
    if others:
        parser.error(f"--images takes image files ({', '.join(sorted(IMAGE_SUFFIXES))}); not: {', '.join(others[:3])}")
    args.image_files = list(args.videos)
    args.videos = [args.videos[0].resolve().parent]


def _classes(path: Path | None, parser: argparse.ArgumentParser) -> list[str]:
    if path is None:
        return []
    try:
        names = operations.read_label_file(path)
    except UserError as exc:
        parser.error(str(exc))
    if not names:
        parser.error(f"{path} names no class")
    return list(dict.fromkeys(names))


def _imported(given: Path | None, video: Path, parser: argparse.ArgumentParser) -> Path | None:
    """The --import file of ``video``: ``given`` itself, or the file of a folder named after it."""
    if given is None or given.is_file():
        return given
    if not given.is_dir():
        parser.error(f"no such file to import: {given}")
    found = sorted(p for p in given.iterdir() if p.is_file() and p.stem.startswith(f"{video.stem}_"))
    if not found:
        parser.error(f"no file to import for {video.name} in {given} (looked for {video.stem}_*)")
    return found[0]


def _paired(given: Path | None, video: Path, kind: str, parser: argparse.ArgumentParser, several: bool) -> Path | None:
    """The ``kind`` file of ``video``: ``given`` itself, or from the folder ``given``."""
    if given is None:
        return None
    if given.is_dir():
        stem = video.stem
        for name in (f"{stem}_{kind}.json", f"{stem}.json"):
            if (given / name).is_file():
                return given / name
        parser.error(f"no {kind} file for {video.name} in {given} (looked for {stem}_{kind}.json and {stem}.json)")
    if not given.is_file():
        parser.error(f"no such {kind} file: {given}")
    if several:  # a session file belongs to one video; its fingerprint would refuse the others
        parser.error(f"--{kind} {given} is one file, for several videos: give a folder with one per video")
    return given


# ----------------------------------------------------------------------------- one video


def annotate_video(job: Job, engine: Engine, args: argparse.Namespace, limits: MediaLimits, workdir: Path) -> Outcome:
    """Load, prompt, track, export one video. A problem the person can fix is a "failed"
    outcome with its message; Ctrl-C gives a "partial" one, with a session file of the frames
    done when there are any."""
    outcome = Outcome(job)
    started = time.monotonic()
    work = Work(folder=workdir / formats.file_stem(job.video.name))
    try:
        tracked = _load(work, engine, job, args, limits)
        video = operations.require_video(work)
        outcome.frames, outcome.objects = video.count, len(work.doc.object_ids)
        if not args.no_track and not tracked:
            _track(work, engine, args, video.name)
        outcome.tracked = _tracked_frames(work)
        _export(work, args, video.name, outcome)
        exported = outcome.exported
        if exported.complete:
            outcome.status = "done"
        else:  # the other files are made all the same; the summary says what was not, and why
            outcome.status, outcome.message = "failed", exported.report(unchanged="").removesuffix(".")
    except KeyboardInterrupt:
        outcome.status, outcome.tracked = "partial", _tracked_frames(work)
        outcome.message = _interrupted(work, args, outcome)
    except (UserError, formats.SessionError, imports.ImportProblem) as exc:
        outcome.status, outcome.message, outcome.refused = "failed", str(exc), isinstance(exc, Refused)
    except Exception as exc:  # keep the batch going; the traceback goes to the log
        log.exception("Annotating %s failed", job.video)
        outcome.status, outcome.message = "failed", f"unexpected error ({type(exc).__name__}: {exc}); details above"
    finally:
        outcome.seconds = time.monotonic() - started
        if work.video is not None:
            engine.stop_encoding_ahead(work.video.handle)
            close = getattr(work.video.frames, "close", None)  # a FrameStream's ffmpeg process
            if close is not None:
                close()
    return outcome


def _export(work: Work, args: argparse.Namespace, name: str, outcome: Outcome) -> None:
    """Make the chosen files with a progress bar of the frames written (``outcome.files``: the
    files made, ``outcome.exported``: what was made and not). A file that cannot be made is
    left out with its reason and the others are made. Ctrl-C: stop after the current frame,
    keep the files made, raise again."""
    exporting = operations.start_exporting(work, args.exports, args.out, val_every=args.val_every)
    outcome.exported = exporting.outcome
    bar = _progress_bar(work.progress.total, f"files of {name}", args.quiet)
    try:
        _wait(work, bar)
    except KeyboardInterrupt:
        work.cancel.set()
        print(f"\nStopping after the current frame of the files of '{name}'; the files made are kept.",
              file=sys.stderr)  # fmt: skip
        _wait(work, bar, interruptible=False)
        raise
    finally:
        exporting.thread.join()
        outcome.files = list(exporting.outcome.made)
        bar.close()


def _interrupted(work: Work, args: argparse.Namespace, outcome: Outcome) -> str:
    """After Ctrl-C: a session file with every frame done (unless the export made it already),
    and the message saying so."""
    exported = outcome.exported
    if work.video is None or not work.doc.masks:
        return "Interrupted before anything was done" if not outcome.files else "Interrupted while making files"
    if exported is None or "session" not in exported.made_formats:
        saved = operations.make_files(work, ["session"], args.out)
        if not saved.complete:
            return f"Interrupted; {saved.report(unchanged='')}"
        outcome.files += saved.made
    message = "Interrupted: the session file holds every frame done; give it to --session to go on"
    if exported is not None and exported.not_made:
        message += f". Not made: {operations.listed([operations.EXPORT_NAMES[f] for f in exported.not_made])}"
    return message


def _tracked_frames(work: Work) -> int:
    """Frames with a tracking result (a frame tracked both ways counts once)."""
    return len({frame for frame, _ in work.doc.tracked})


def _load(work: Work, engine: Engine, job: Job, args: argparse.Namespace, limits: MediaLimits) -> bool:
    """Decode the video (at the session file's rate and size, if there is one) and replay the
    prompts, or find them (--text, matched --import) -> whether the whole video is tracked already."""
    saved = job.session
    fps = args.fps
    if saved is not None:
        fps = fps or saved.video.fps
        # The page may have scaled the video down: decode to the same size so that frames match.
        largest = max(max(size) for size in [(saved.video.width, saved.video.height), *saved.video.sizes])
        limits = MediaLimits(limits.max_frames, limits.max_seconds, largest, max(limits.max_fps, saved.video.fps),
                             advice=limits.advice)  # fmt: skip
    if streams(job, args):
        operations.load_video_streamed(work, engine, job.video, limits, name=job.video.name, fps=fps,
                                       image_size=args.image_size)  # fmt: skip
        engine.keep_behind(operations.require_video(work).handle)
    else:
        operations.load_upload(work, engine, job.inputs, limits, name=job.video.name, fps=fps,
                               image_size=args.image_size)  # fmt: skip
    if args.class_list:
        work.labels, work.last_label = list(args.class_list), args.class_list[0]
        work.update_object(1, label=args.class_list[0])
    if job.imported is not None:
        video = operations.require_video(work)
        shape = operations.video_shape(video)
        given = imports.read_any(job.imported, shape, args.start or 0, args.min_score, args.class_list or None)
        if concepts.uses_matching(given) and not args.no_matching:
            _find(work, concepts.start_import(work, engine, given, args.match_iou, add_missing_labels=True), args.quiet)
            _drop_unprompted(work, engine)
            return True
        operations.apply_import(work, engine, given, add_missing_labels=True)
        _drop_unprompted(work, engine)
    if args.text is not None:
        return _find_text(work, engine, args)
    if saved is not None:
        operations.apply_session(work, engine, saved)
    elif job.prompts is not None:
        operations.apply_prompts(work, engine, job.prompts)
    return False


def streams(job: Job, args: argparse.Namespace) -> bool:
    """Is the video read from its file as tracking goes (``sam2.video_stream``), rather than
    decoded whole first? For a video file tracked forward only: ``--direction forward``, or
    from frame 0 (nothing lies behind it). Backward tracking would read the file again every
    few frames, and finding by text on every K-th frame (``--every``) or matching imported
    boxes tracks both ways, so those decode first, as does ``--decode-first``. The frames,
    the masks and the files made are the same either way."""
    if getattr(args, "decode_first", False) or args.images or args.import_ is not None or args.every is not None:
        return False
    video = job.video
    if not video.is_file() or is_zip_name(video.name) or is_image_name(video.name):
        return False
    if args.no_track or args.direction == "forward":
        return True
    return _start_frame(job, args) == 0


def _start_frame(job: Job, args: argparse.Namespace) -> int | None:
    """The frame tracking will start from, as planned before the video is read (None: unknown)."""
    if args.start is not None:
        return args.start
    if args.text is not None:
        return 0
    given = job.session or job.prompts
    frames = [prompt.frame for prompt in given.prompts] if given is not None else []
    return min(frames) if frames else None


def _drop_unprompted(work: Work, engine: Engine) -> None:
    prompted = {obj for _, obj in work.doc.prompts()}
    for unused in [o for o in work.doc.object_ids if o not in prompted]:  # the empty "object 1" of a new video
        operations.delete_object(work, engine, unused)


def _find_text(work: Work, engine: Engine, args: argparse.Namespace) -> bool:
    """--text: the detector on the --start frame (its boxes new objects, tracked afterwards as
    usual) or, with --every, on every K-th frame while tracking runs -> whether that tracked."""
    video = operations.require_video(work)
    if args.every is not None:
        try:
            frames = concepts.detection_frames(video.count, args.every)
        except UserError as exc:
            raise Refused(f"--every {args.every}: {exc}") from None
    else:
        frames = [operations.check_frame(work, args.start or 0)]
    detect = concepts.text_detections(args.detector_model, args.phrases, args.box_threshold, args.text_threshold)
    if not args.quiet and args.every is not None:
        print(f"{video.name}: {concepts.describe_plan(frames, video.count)}", file=sys.stderr)
    found = _find(work, concepts.start_run(work, engine, detect, frames, f"'{', '.join(args.phrases)}'",
                                           args.match_iou, track=args.every is not None, labels=args.phrases),
                  args.quiet)
    if not found.count("new") and not found.count("again"):
        raise UserError(found.message)
    _drop_unprompted(work, engine)
    return args.every is not None


def _find(work: Work, run: concepts.Concepts, quiet: bool) -> concepts.Concepts:
    """Wait for a run of :mod:`annotation.concepts` with a progress bar of its steps. Ctrl-C:
    cancel, wait for the current step, keep what is done, raise again."""
    from tqdm import tqdm

    bar = tqdm(total=work.progress.total, desc=run.what[:30], unit="step", disable=quiet,
               file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    try:
        while work.progress.running:
            time.sleep(POLL_S)
            bar.total = work.progress.total
            bar.update(work.progress.done - bar.n)
    except KeyboardInterrupt:
        work.cancel.set()
        print("\nStopping after the current step; what is done is kept.", file=sys.stderr)
        _wait(work, bar, interruptible=False)
        assert run.thread is not None
        run.thread.join()
        raise
    finally:
        bar.close()
    assert run.thread is not None
    run.thread.join()
    if work.progress.error:
        raise UserError(f"Finding {run.what} stopped after {work.progress.done} steps: {work.progress.error}")
    return run


def _track(work: Work, engine: Engine, args: argparse.Namespace, name: str) -> None:
    """Track from --start (default: the first prompted frame) with a progress bar. Ctrl-C:
    cancel, wait for the current frame, keep what is done, raise again."""
    prompted = sorted({frame for frame, _ in work.doc.prompts()})
    if not prompted:
        raise UserError(f"'{name}' has no prompts to track from.")
    start = prompted[0] if args.start is None else args.start
    thread = operations.start_tracking(work, engine, start, args.direction, args.frames)
    bar = _progress_bar(work.progress.total, name, args.quiet)
    try:
        _wait(work, bar)
    except KeyboardInterrupt:
        work.cancel.set()
        print(f"\nStopping after the current frame of '{name}'; the frames done are kept.", file=sys.stderr)
        _wait(work, bar, interruptible=False)
        thread.join()
        raise
    finally:
        bar.close()
    thread.join()
    if work.progress.error:
        raise UserError(f"Tracking stopped after {work.progress.done} frames: {work.progress.error}")


def _wait(work: Work, bar, interruptible: bool = True) -> None:
    """Until the long step (tracking, the files) ends, updating the bar. It sleeps rather than joining the thread:
    Python 3.11's Thread.join, interrupted by Ctrl-C, releases the running thread's state lock
    and marks it stopped (seen here: the run went on, and the interpreter aborted at exit)."""
    while work.progress.running:
        try:
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            if interruptible:
                raise
            print("Still finishing the current frame...", file=sys.stderr)
        bar.update(work.progress.done - bar.n)
    bar.update(work.progress.done - bar.n)


def _progress_bar(total: int, name: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=name[:30], unit="frame", disable=quiet, file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- the run


def main(argv: Sequence[str] | None = None, listener=None) -> int:
    """The command line; ``listener``: with --ray, told of the batch's events (ray_batch.BatchEvent)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == MERGE_COMMAND:  # a video called 'merge' is given as ./merge
        return merge_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.exports = parse_exports(args.export, parser)
    args.merge_formats = parse_merge_formats(args.merge, parser, "--merge") if args.merge is not None else []
    if args.val_videos and not args.merge_formats:
        parser.error("--val-videos splits the merged dataset: give --merge too")
    if args.merge_formats and "coco_images" not in args.exports:
        args.exports.append("coco_images")  # the merge reads each video's masks and frames from it
    limits = media_limits(args, parser, advice="run again with {flag} {value}")
    model, precision = resolve_model(args, parser)
    if args.val_every == 1:
        parser.error("--val-every must be 0 (no validation split) or at least 2")
    _check_ray(args, parser)
    args.class_list = _classes(args.classes, parser)
    _check_text(args, parser)
    jobs = plan_jobs(args, parser)
    if args.merge_formats:
        try:
            merge.check_target(args.out / MERGED_FOLDER, [])
        except merge.MergeError as exc:
            parser.error(f"--merge: {exc}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"Cannot make the output folder {args.out}: {exc.strerror or exc}.", EXIT_USAGE)
    if args.ray is not None:
        return _on_ray(jobs, args, limits, model, precision, listener)

    if args.text is not None:
        from annotation.detect import PRECISIONS, Detector, DetectorSpec, DetectorUnavailable

        spec = DetectorSpec(args.detector, device=args.device, precision=precision if precision in PRECISIONS else
                            "float32", box_threshold=args.box_threshold, text_threshold=args.text_threshold)
        try:
            args.detector_model = Detector.load(spec, progress=not args.quiet)
        except DetectorUnavailable as exc:
            return _fail(str(exc), EXIT_USAGE)
        except KeyboardInterrupt:
            return _fail("interrupted while loading the detector; nothing was done.", EXIT_INTERRUPTED)

    from sam2.checkpoint import CheckpointError

    checkpoint = None
    try:
        checkpoint = resolve_checkpoint(model, args.checkpoint, args.checkpoint_dir)
        spec = ModelSpec(model, checkpoint, args.image_size, args.device, precision, args.frame_storage, encode_ahead=0,
                         kernels=args.kernels)
        engine = Engine.load(spec)
    except CheckpointError as exc:
        return _fail(checkpoint_problem(exc, checkpoint, model), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted while loading the model; nothing was done.", EXIT_INTERRUPTED)
    if not args.quiet:
        print(f"Model: {engine.describe()}.", file=sys.stderr)
    outcomes = run_jobs(jobs, engine, args, limits)
    print(summary(outcomes))
    if any(o.status == "partial" for o in outcomes):
        return EXIT_INTERRUPTED
    if any(o.refused for o in outcomes):
        return EXIT_USAGE
    failed = any(o.status == "failed" for o in outcomes)
    if args.merge_formats:
        merged = merge_outcomes(outcomes, args)
        if merged != 0:
            return merged
    return EXIT_FAILED if failed else 0


def merge_outcomes(outcomes: list[Outcome], args: argparse.Namespace) -> int:
    """--merge: the videos done, merged into --out/merged/ (those not done are left out, and said so)."""
    sources = [path for o in outcomes if o.status == "done" for path in o.files if path.name.endswith("_coco.zip")]
    left_out = [o.job.video.name for o in outcomes if o.status != "done"]
    if not sources:
        return _fail("nothing to merge: no video was done.", EXIT_FAILED)
    if left_out:
        print(f"Merging without {', '.join(left_out)} (not done).", file=sys.stderr)
    return _run_merge(sources, args.out / MERGED_FOLDER, args.merge_formats, args.val_videos, args.val_every, 0,
                      args.quiet)  # fmt: skip


def merge_main(argv: Sequence[str]) -> int:
    """``sam2-annotate merge OUT_DIR... --into DATASET``: earlier runs' outputs into one dataset."""
    parser = build_merge_parser()
    args = parser.parse_args(argv)
    chosen = parse_merge_formats(args.formats, parser, "--formats")
    if args.val_every == 1:
        parser.error("--val-every must be 0 (no validation split) or at least 2")
    return _run_merge(args.outputs, args.into, chosen, args.val_videos, args.val_every, args.seed, args.quiet,
                      refused=EXIT_USAGE)  # fmt: skip


def _run_merge(sources: list[Path], into: Path, chosen: list[str], val_videos: float, val_every: int, seed: int,
               quiet: bool, refused: int = EXIT_FAILED) -> int:  # fmt: skip
    """The merge with a progress bar over the videos; its refusal one plain line (status ``refused``)."""
    from tqdm import tqdm

    bars = []  # made at the first video, once every input is checked: a refusal stays one line

    def progress(done: int, total: int, name: str) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="merging", unit="video", disable=quiet, file=sys.stderr,
                             dynamic_ncols=True))  # fmt: skip
        bars[0].set_postfix_str(name, refresh=False)
        bars[0].update(done - bars[0].n)

    try:
        result = merge.merge_datasets(sources, into, chosen, val_videos, val_every, seed, progress=progress)
    except merge.MergeError as exc:
        return _fail(f"merge: {exc}", refused)
    except KeyboardInterrupt:
        return _fail(f"merge interrupted; nothing was written to {into}.", EXIT_INTERRUPTED)
    finally:
        for bar in bars:
            bar.close()
    print(result.summary())
    return 0


def _check_text(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The --text options, refused in words before anything loads: the phrases (none, too
    many, too long), --every without --text, a matching threshold of 0."""
    if args.text is None:
        for flag, value in (("--every", args.every), ("--box-threshold", args.box_threshold),
                            ("--text-threshold", args.text_threshold)):  # fmt: skip
            if value is not None:
                parser.error(f"{flag} goes with --text (the phrases to find)")
    if args.import_ is None and args.no_matching:
        parser.error("--no-matching goes with --import (boxes on several frames)")
    try:
        concepts.check_match_iou(args.match_iou)
        args.phrases = None if args.text is None else parse_phrases(args.text)
    except UserError as exc:
        parser.error(str(exc))


def run_jobs(jobs: list[Job], engine: Engine, args: argparse.Namespace, limits: MediaLimits) -> list[Outcome]:
    """Every job in turn; one that fails is reported and the next goes on; Ctrl-C stops all."""
    outcomes = [Outcome(job) for job in jobs]
    with tempfile.TemporaryDirectory(prefix="sam2-annotate-") as workdir:
        for index, job in enumerate(jobs):
            outcomes[index] = annotate_video(job, engine, args, limits, Path(workdir))
            if outcomes[index].status == "partial":
                break
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        head = f"{o.job.video.name}: {o.status}"
        if o.status in ("done", "partial") or o.files:
            head += f", {o.objects} object(s), {o.tracked} of {o.frames} frames tracked in {o.seconds:.1f} s"
        if o.message:
            head += f". {o.message}"
        lines.append(head)
        lines += [f"    {path}" for path in o.files]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "partial", "failed", "skipped")}
    lines.append("Summary: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n) + ".")
    return "\n".join(lines)


def _check_ray(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--ray: Ray installed (else one line saying what to install); --workers only with it."""
    if args.ray is None:
        if args.workers is not None:
            parser.error("--workers goes with --ray")
        return
    from annotation.ray_batch import RayMissing, on_this_machine, require_ray

    try:
        require_ray(on_this_machine(args.ray))
    except RayMissing as exc:
        parser.error(str(exc))


def _on_ray(jobs: list[Job], args: argparse.Namespace, limits: MediaLimits, model: str, precision: str,
            listener=None) -> int:  # fmt: skip
    """--ray: every video as :func:`annotate_video` does it, on Ray workers (:mod:`annotation.ray_batch`);
    the table and ``batch_summary.json``; then --merge of the videos done, in this run or before."""
    from annotation import ray_batch
    from sam2.checkpoint import CheckpointError

    checkpoint = None
    try:
        checkpoint = resolve_checkpoint(model, args.checkpoint, args.checkpoint_dir)  # fetched once, here
        batch = ray_batch.run_jobs(jobs, args, limits, model, precision, annotate_video,
                                   address=None if args.ray == RAY_LOCAL else args.ray, workers=args.workers,
                                   checkpoint=checkpoint, listener=listener)  # fmt: skip
    except CheckpointError as exc:
        return _fail(checkpoint_problem(exc, checkpoint, model), EXIT_FAILED)
    except (ray_batch.BatchError, ConnectionError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted before the batch started; nothing was done.", EXIT_INTERRUPTED)
    print(batch.table())
    print(f"Summary file: {args.out / ray_batch.SUMMARY_FILE}")
    if batch.interrupted:
        return EXIT_INTERRUPTED
    if any(r.refused for r in batch.results):
        return EXIT_USAGE
    if args.merge_formats:
        sources = ray_batch.merge_sources(batch)
        if not sources:
            return _fail("nothing to merge: no video was done.", EXIT_FAILED)
        left_out = [r.video for r in batch.results if r.status not in ("done", "skipped")]
        if left_out:
            print(f"Merging without {', '.join(left_out)} (not done).", file=sys.stderr)
        merged = _run_merge(sources, args.out / MERGED_FOLDER, args.merge_formats, args.val_videos, args.val_every,
                            0, args.quiet)  # fmt: skip
        if merged != 0:
            return merged
    return EXIT_FAILED if batch.count("failed") else 0


def run_batch(videos: Sequence[str | Path], out: str | Path, options: Sequence[str] = (), address: str | None = None,
              workers: int | None = None, listener=None):  # fmt: skip
    """``sam2-annotate VIDEOS --out OUT OPTIONS --ray [ADDRESS] --workers N`` from Python ->
    :class:`annotation.ray_batch.BatchSummary` (also in ``OUT/batch_summary.json``). ``options``: the
    command line's other options, as its words (``["--prompts", "prompts/", "--image-size", "512"]``).
    A Ray already started in this process is used as it is. Raises ValueError with the command line's one
    line for options it refuses, RuntimeError when the batch could not start."""
    import contextlib
    import io

    from annotation import ray_batch

    argv = [*map(str, videos), "--out", str(out), *map(str, options), "--ray", address or RAY_LOCAL,
            *(["--workers", str(workers)] if workers else [])]  # fmt: skip
    summary_file = Path(out) / ray_batch.SUMMARY_FILE
    summary_file.unlink(missing_ok=True)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors) if "--quiet" in options else contextlib.nullcontext():
            main(argv, listener)
    except SystemExit as exc:  # the parser's refusal
        raise ValueError((errors.getvalue() or str(exc)).strip()) from None
    if not summary_file.is_file():
        raise RuntimeError(f"The batch did not run: {errors.getvalue().strip() or 'see the message above'}")
    return ray_batch.BatchSummary.read(summary_file)


def _fail(message: str, code: int) -> int:
    print(f"sam2-annotate: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
