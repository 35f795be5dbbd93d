"""File exports of tracked masks, and the session file that lets a user resume their work.

Shared arguments of the mask exports:

* ``masks``: ``{frame index: {object id: HxW bool mask}}``; frames or objects without an entry
  are empty. Masks of objects missing from ``objects`` are left out, so the UI can export a
  subset.
* ``frames_count``: number of frames in the video (files are written for every frame, empty
  ones included, so frame numbering stays aligned with the video).
* ``size``: (H, W) of the masks; an image set's frames may differ, given by ``images``
  (:class:`ImageFrames`), whose sizes and names then replace ``size`` and ``00000.png``.
* ``objects``: ``{object id: name}`` in the user's order (a dict keeps insertion order), or
  None for every object found in ``masks`` by increasing id, named "object <id>". The order
  decides overlaps (later objects win in single-label formats) and YOLO class indices.
* ``out_dir``: an existing folder; each export returns the path of the file it wrote.
* ``tick``: called once per frame written (:data:`Tick`), e.g. to count progress and stop on
  Cancel by raising; the file is then not made.

Readers (``read_png_zip``, ``read_coco``, ``read_yolo_zip``) return every frame of the file,
each with its non-empty masks only. The datasets by class (COCO, YouTube-VIS, YOLO, semantic
masks, MOT) are written by :mod:`annotation.datasets`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import math
import re
import threading
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from annotation.render import PALETTE, label_map, mask_image, overlay

__all__ = [
    "MaskTrack", "export_png_zip", "read_png_zip", "read_coco", "read_yolo_zip", "export_mask_video",
    "export_overlay_video", "SESSION_VERSION", "SessionError", "VideoRef", "SessionObject", "Prompt",
    "SessionMask", "Session", "video_fingerprint", "video_ref", "export_session_json", "load_session_json",
    "check_session_video", "PromptsFile", "load_prompts_json", "clean_name", "file_stem", "writing", "ImageFrames",
    "Tick", "tick_frame",
]

MaskTrack = Mapping[int, Mapping[int, np.ndarray]]
"""frame index -> object id -> HxW bool mask."""

Tick = Callable[[], None]
"""An export's per-frame hook: called once per frame written; it may raise to stop the export
(Cancel), and the file is then not made (:func:`writing` removes the part written)."""

_PNG_NAME = re.compile(r"(?:^|/)(\d+)\.png$")
_YOLO_NAME = re.compile(r"(?:^|/)labels/(?:[^/]+/)?(?:[^/]*_)?(\d+)\.txt$")


# ----------------------------------------------------------------------------- shared helpers


def _object_names(objects: Mapping[int, str] | None, masks: MaskTrack) -> dict[int, str]:
    """``objects`` as a dict, or every id found in ``masks`` (increasing) named "object <id>"."""
    if objects is not None:
        return {int(obj_id): str(name) for obj_id, name in objects.items()}
    ids = sorted({int(obj_id) for per_frame in masks.values() for obj_id in per_frame})
    return {obj_id: f"object {obj_id}" for obj_id in ids}


@dataclass(frozen=True)
class ImageFrames:
    """An image set's frames as exports see them: each image's name and (H, W), in frame order."""

    names: tuple[str, ...]  # e.g. ("a.jpg", "left/b.png"): relative paths, unique
    sizes: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sizes):
            raise ValueError(f"{len(self.names)} image names for {len(self.sizes)} frames")

    @property
    def uniform(self) -> bool:
        return len(set(self.sizes)) == 1

    def mask_names(self, suffix: str = ".png") -> list[str]:
        """The file each frame's mask is written to: the image's name with ``suffix``
        ("a.jpg" -> "a.png"); when two images would share one ("a.jpg", "a.png"), the
        whole name is kept ("a.jpg.png")."""
        plain = [str(PurePosixPath(name).with_suffix(suffix)) for name in self.names]
        clashing = {name for name in plain if plain.count(name) > 1}
        chosen: list[str] = []
        for frame, (name, original) in enumerate(zip(plain, self.names, strict=True)):
            if name in clashing:
                name = original + suffix
            if name in chosen:  # only for names made to clash ("a.jpg" beside "a.jpg.jpg")
                name = f"{frame:05d}_{name}"
            chosen.append(name)
        return chosen


def _frame_size(size: tuple[int, int], images: ImageFrames | None, frame: int) -> tuple[int, int]:
    return images.sizes[frame] if images is not None else size


def _check_masks(
    masks: MaskTrack, frames_count: int, size: tuple[int, int], images: ImageFrames | None = None
) -> None:
    """ValueError for a frame index outside the video or a mask of the wrong shape."""
    for frame, per_frame in masks.items():
        if not 0 <= frame < frames_count:
            raise ValueError(f"masks given for frame {frame}, but the video has {frames_count} frames")
        expected = _frame_size(size, images, frame)
        for obj_id, mask in per_frame.items():
            if np.shape(mask) != tuple(expected):
                shape = np.shape(mask)
                raise ValueError(f"mask of object {obj_id} on frame {frame} has shape {shape}, expected {expected}")


def _frame_masks(masks: MaskTrack, frame: int, names: Mapping[int, str]) -> dict[int, np.ndarray]:
    """The listed objects' non-empty masks on ``frame``, as bool arrays, in ``names`` order."""
    per_frame = masks.get(frame, {})
    found = {obj_id: np.asarray(per_frame[obj_id]).astype(bool) for obj_id in names if obj_id in per_frame}
    return {obj_id: mask for obj_id, mask in found.items() if mask.any()}


def tick_frame(tick: Tick | None) -> None:
    """Call an export's per-frame hook, if it has one."""
    if tick is not None:
        tick()


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it becomes ``path`` only if the block succeeds."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # same suffix: ffmpeg guesses by it
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def file_stem(video_name: str) -> str:
    """The start of every export's file name for a video: ``walk.mp4`` -> ``walk``, so a person
    annotating several videos gets ``walk_coco.json`` and ``run_coco.json``. Only letters,
    digits, ``-``, ``_`` and ``.`` are kept (others become ``_``), at most 60 characters."""
    stem = Path(video_name).stem if Path(video_name).suffix else video_name
    clean = re.sub(r"[^\w.-]+", "_", stem, flags=re.ASCII).strip("._")[:60].strip("._")
    return clean or "video"


def _masks_by_label(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(value): labels == value for value in np.unique(labels) if value != 0}


# ----------------------------------------------------------------------------- indexed PNG


def export_png_zip(
    masks: MaskTrack,
    frames_count: int,
    size: tuple[int, int],
    objects: Mapping[int, str] | None,
    out_dir: Path,
    *,
    stem: str = "masks",
    images: ImageFrames | None = None,
    tick: Tick | None = None,
) -> Path:
    """DAVIS-style masks: a zip of ``00000.png``... one indexed ("P") PNG per frame; for an
    image set (``images``), each named after its image ("a.jpg" -> "a.png") at its size.

    Pixel value = object id (1..255, 0 = background) and the palette is :data:`PALETTE`, so
    viewers show the UI's colours. One label per pixel: where masks overlap, the object later
    in ``objects`` wins. ``objects.json`` in the zip maps ids to names.
    """
    names = _object_names(objects, masks)
    bad = [obj_id for obj_id in names if not 1 <= obj_id <= 255]
    if bad:
        raise ValueError(f"PNG masks hold object ids 1..255; got {bad}")
    _check_masks(masks, frames_count, size, images)
    files = images.mask_names() if images is not None else [f"{frame:05d}.png" for frame in range(frames_count)]
    path = Path(out_dir) / f"{stem}.zip"
    with writing(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for frame in range(frames_count):
            tick_frame(tick)
            frame_size = _frame_size(size, images, frame)
            labels = label_map(frame_size, _frame_masks(masks, frame, names), order=list(names))
            archive.writestr(files[frame], _indexed_png(labels.astype(np.uint8)))
        archive.writestr("objects.json", json.dumps({str(k): v for k, v in names.items()}, indent=1))
    return path


def _indexed_png(labels: np.ndarray) -> bytes:
    """HxW uint8 labels -> PNG bytes in "P" mode with the DAVIS palette."""
    image = Image.fromarray(labels)  # "L"; putpalette turns it into "P" without touching values
    image.putpalette(PALETTE.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def read_png_zip(path: Path) -> dict[int, dict[int, np.ndarray]]:
    """Inverse of :func:`export_png_zip`: {frame: {object id: HxW bool}} from the PNG names."""
    result: dict[int, dict[int, np.ndarray]] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            match = _PNG_NAME.search(name)
            if not match:
                continue
            with Image.open(io.BytesIO(archive.read(name))) as image:
                if image.mode not in ("P", "L"):
                    raise ValueError(f"{name} is a {image.mode} image, not an indexed mask")
                result[int(match[1])] = _masks_by_label(np.array(image))
    return dict(sorted(result.items()))


# ----------------------------------------------------------------------------- COCO


def read_coco(path: Path) -> dict[int, dict[int, np.ndarray]]:
    """{frame: {instance id: HxW bool}} from a COCO file (``annotation.datasets.export_coco``'s
    or another's: compressed or uncompressed RLE, or polygons; the instance is ``track_id``,
    ``instance_id`` or ``object_id`` where there is one, else the category)."""
    document = json.loads(Path(path).read_text())
    images = sorted(document["images"], key=lambda image: image["id"])
    frame_of = {image["id"]: image.get("frame_index", i) for i, image in enumerate(images)}
    shape_of = {image["id"]: (image["height"], image["width"]) for image in images}
    result: dict[int, dict[int, np.ndarray]] = {frame: {} for frame in sorted(frame_of.values())}
    for annotation in document["annotations"]:
        image_id = annotation["image_id"]
        mask = _decode_segmentation(annotation["segmentation"], *shape_of[image_id])
        instance = next((annotation[k] for k in ("track_id", "instance_id", "object_id") if k in annotation), None)
        obj_id = int(annotation["category_id"] if instance is None else instance)
        result[frame_of[image_id]][obj_id] = mask
    return result


def _decode_segmentation(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """HxW bool from compressed RLE, uncompressed RLE (list counts) or polygons."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' C code predates numpy 2's __array__(copy=...)
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


# ----------------------------------------------------------------------------- YOLO


def read_yolo_zip(path: Path, size: tuple[int, int]) -> dict[int, dict[int, np.ndarray]]:
    """Rasterise the labels of a YOLO zip (``annotation.datasets.export_yolo_dataset``'s, any
    split) back to {frame: {class index: HxW bool}}."""
    height, width = size
    result: dict[int, dict[int, np.ndarray]] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            match = _YOLO_NAME.search(name)
            if match:
                result[int(match[1])] = _rasterise_yolo(archive.read(name).decode(), height, width)
    return dict(sorted(result.items()))


def _rasterise_yolo(text: str, height: int, width: int) -> dict[int, np.ndarray]:
    canvases: dict[int, np.ndarray] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        class_index, *coords = line.split()
        points = np.array(coords, dtype=np.float64).reshape(-1, 2) * np.array([width, height])
        canvas = canvases.setdefault(int(class_index), np.zeros((height, width), np.uint8))
        cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1)
    return {index: canvas.astype(bool) for index, canvas in canvases.items()}


# ----------------------------------------------------------------------------- MP4 videos


def export_mask_video(
    masks: MaskTrack,
    frames_count: int,
    size: tuple[int, int],
    objects: Mapping[int, str] | None,
    out_dir: Path,
    fps: float,
    *,
    stem: str = "masks",
    tick: Tick | None = None,
) -> Path:
    """MP4 (H.264, yuv420p) of each object's colour on black; later objects win on overlap.

    For viewing: 4:2:0 chroma blurs colours at mask edges, so use the PNG export for exact masks.
    """
    names = _object_names(objects, masks)
    _check_masks(masks, frames_count, size)
    frames = (mask_image(size, _frame_masks(masks, f, names), order=list(names)) for f in range(frames_count))
    return _write_mp4(Path(out_dir) / f"{stem}.mp4", frames, frames_count, size, fps, quality=9, tick=tick)


def export_overlay_video(
    frames: Sequence[np.ndarray],
    masks: MaskTrack,
    fps: float,
    audio_path: Path | None,
    out_dir: Path,
    *,
    objects: Mapping[int, str] | None = None,
    hidden: Iterable[int] = (),
    alpha: float = 0.5,
    stem: str = "overlay",
    tick: Tick | None = None,
) -> Path:
    """MP4 of ``frames`` (N x HxWx3 uint8) with masks drawn as in the UI (:func:`ui.render.overlay`).

    With ``audio_path`` the sound is muxed in (re-encoded to AAC, which MP4 always accepts)
    and cut to the video's length.
    """
    if not frames:
        raise ValueError("no frames to export")
    size = frames[0].shape[:2]
    names = _object_names(objects, masks)
    _check_masks(masks, len(frames), size)
    hidden_ids = set(hidden)
    drawn = (
        overlay(frame, _frame_masks(masks, i, names), alpha=alpha, hidden=hidden_ids, order=list(names))
        for i, frame in enumerate(frames)
    )
    return _write_mp4(Path(out_dir) / f"{stem}.mp4", drawn, len(frames), size, fps, audio_path=audio_path, tick=tick)


def _write_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    count: int,
    size: tuple[int, int],
    fps: float,
    *,
    quality: float = 6.5,
    audio_path: Path | None = None,
    tick: Tick | None = None,
) -> Path:
    """Encode ``count`` HxWx3 frames with libx264/yuv420p, padded at the right/bottom to even size.

    quality: imageio-ffmpeg's 1..10 scale, crf = int(51 * (1 - quality / 10)): 6.5 -> crf 17,
    visually lossless for the overlay; flat mask colours stay small even at 9 (crf 5).
    """
    height, width = size
    even = (width + width % 2, height + height % 2)
    options = ["-preset", "fast", "-movflags", "+faststart"]
    if audio_path is not None:
        options += ["-t", f"{count / fps:.6f}"]
    with writing(path) as partial:
        writer = imageio_ffmpeg.write_frames(
            str(partial), even, fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
            quality=quality, macro_block_size=1, ffmpeg_log_level="error", output_params=options,
            audio_path=None if audio_path is None else str(audio_path), audio_codec="aac",
        )  # fmt: skip
        writer.send(None)
        try:
            for frame in frames:
                tick_frame(tick)
                writer.send(_pad_to(frame, even))
        finally:
            writer.close()
    return path


def _pad_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pad HxWx3 at the bottom/right with black to (width, height) = ``size`` (yuv420p needs even)."""
    width, height = size
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.shape[:2] == (height, width):
        return frame
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[: frame.shape[0], : frame.shape[1]] = frame
    return out


# ----------------------------------------------------------------------------- session


SESSION_VERSION = 2
MAX_OBJECT_ID = 255  # PNG masks hold one object id per pixel value
READABLE_VERSIONS = (1, 2)  # version 1 files hold objects and prompts only, no masks


class SessionError(ValueError):
    """A session file that cannot be used, worded for the user."""


@dataclass(frozen=True)
class VideoRef:
    """Which decoded video a session belongs to (size after decoding and scaling).

    width, height: frame 0's; ``sizes``: (width, height) of every frame when they differ (an
    image set), else empty (a video, and every file written before image sets).
    """

    name: str
    frames: int
    width: int
    height: int
    fps: float
    fingerprint: str
    sizes: tuple[tuple[int, int], ...] = ()

    def frame_size(self, frame: int) -> tuple[int, int]:
        """(width, height) of one frame (frame 0's for a frame outside the video, which the
        file's checks refuse on their own)."""
        return self.sizes[frame] if 0 <= frame < len(self.sizes) else (self.width, self.height)


@dataclass
class SessionObject:
    id: int
    name: str
    color: tuple[int, int, int]
    visible: bool = True
    label: str = "object"  # its class (files before labels have none: "object")


@dataclass
class Prompt:
    """Clicks and/or a box on one frame for one object, in frame pixel coordinates, or a mask.

    points: N x (x, y); labels: N values, 1 = positive, 0 = negative; box: (x0, y0, x1, y1);
    mask: the mask given as the prompt (painted, imported or chosen), instead of clicks.
    """

    frame: int
    obj_id: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: SessionMask | None = None


@dataclass(frozen=True)
class SessionMask:
    """One object's mask on one frame, as the app holds it: the bits of its bounding box
    (row-major, ``np.packbits`` of the height x width crop at ``top``, ``left``). ``tracked``:
    a result of tracking (else the answer to a prompt)."""

    frame: int
    obj_id: int
    tracked: bool
    top: int
    left: int
    height: int
    width: int
    bits: bytes


@dataclass
class Session:
    """What a session file holds. Masks came with version 2: the user's masks exactly as they
    were, so loading the file gives them back without tracking again (which would take
    minutes, and could give other masks with another model, size or precision)."""

    video: VideoRef
    objects: list[SessionObject]
    prompts: list[Prompt]
    masks: list[SessionMask] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the class list (every object's label is in it)

    def __post_init__(self) -> None:
        self.labels = list(dict.fromkeys([*self.labels, *(o.label for o in self.objects)]))


def video_fingerprint(frames: Sequence[np.ndarray], samples: int = 5) -> str:
    """A short hash of the frame count, size and a few evenly spaced frames.

    Each sampled frame is shrunk to 16x16 and quantised to 16 levels first, so the hash is
    cheap and robust to tiny decoder differences, yet differs between different videos (or
    the same video decoded at another rate or size, where the prompts' frame indices would
    no longer match).
    """
    if not frames:
        raise ValueError("no frames to fingerprint")
    digest = hashlib.sha256(f"{len(frames)}:{frames[0].shape}".encode())
    picks = sorted({round(i * (len(frames) - 1) / max(1, samples - 1)) for i in range(samples)})
    for index in picks:
        small = cv2.resize(np.ascontiguousarray(frames[index]), (16, 16), interpolation=cv2.INTER_AREA)
        digest.update((np.asarray(small, dtype=np.uint8) >> 4).tobytes())
    return digest.hexdigest()[:16]


def video_ref(
    name: str, frames: Sequence[np.ndarray], fps: float, sizes: Sequence[tuple[int, int]] = ()
) -> VideoRef:
    """The VideoRef of decoded ``frames`` (N x HxWx3); ``sizes``: each frame's (H, W) when
    they may differ (an image set; the frames' own sizes are then kept in the ref)."""
    height, width = frames[0].shape[:2]
    per_frame = tuple((int(w), int(h)) for h, w in sizes) if len(set(sizes)) > 1 else ()
    return VideoRef(name, len(frames), int(width), int(height), float(fps), video_fingerprint(frames), per_frame)


def export_session_json(session: Session, out_dir: Path, *, stem: str = "session") -> Path:
    """Write the objects and prompts as versioned JSON (schema in :func:`_session_document`)."""
    path = Path(out_dir) / f"{stem}.json"
    with writing(path) as partial:
        partial.write_text(json.dumps(_session_document(session), indent=1))
    return path


def _session_document(session: Session) -> dict:
    """{"version": 2, "video": {...}, "labels": [...], "objects": [{id, name, color, visible, label}],
    "prompts": [{frame, obj_id, points: [[x, y]...], labels: [...], box: [x0, y0, x1, y1] | null}],
    "masks": [{frame, obj_id, tracked, box: [top, left, height, width], bits: base64 of the
    zlib-compressed packed bits of the box}]}"""
    return {
        "version": SESSION_VERSION,
        "video": _video_document(session.video),
        "labels": list(session.labels),
        "objects": [
            {"id": o.id, "name": o.name, "color": [int(c) for c in o.color], "visible": o.visible, "label": o.label}
            for o in session.objects
        ],
        "prompts": [_prompt_document(p) for p in session.prompts],
        "masks": [_mask_document(m) for m in session.masks],
    }


def _video_document(video: VideoRef) -> dict:
    """The video's fields; ``sizes`` ([[width, height], ...]) only when the frames differ in size."""
    document = asdict(video)
    document["sizes"] = [list(size) for size in video.sizes]
    if not video.sizes:
        del document["sizes"]  # a video's file stays as before image sets
    return document


def _mask_document(mask: SessionMask) -> dict:
    return {
        "frame": mask.frame,
        "obj_id": mask.obj_id,
        "tracked": mask.tracked,
        "box": [mask.top, mask.left, mask.height, mask.width],
        "bits": _bits_text(mask.bits),
    }


class _BitsTexts:
    """Masks' bits as the file holds them (base64 of zlib), remembered up to ``limit`` bytes
    (bits and text counted; the oldest go first): the page's work is saved after every change
    (ui/saved_work.py), and most masks are the same as last time. Thread-safe."""

    def __init__(self, limit: int = 32 * 2**20) -> None:
        self.limit = limit
        self._texts: OrderedDict[bytes, str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __call__(self, bits: bytes) -> str:
        with self._lock:
            text = self._texts.get(bits)
            if text is not None:
                self._texts.move_to_end(bits)
                return text
        text = base64.b64encode(zlib.compress(bits)).decode("ascii")
        with self._lock:
            if bits not in self._texts:
                self._texts[bits] = text
                self._size += len(bits) + len(text)
            while self._size > self.limit and self._texts:
                old, old_text = self._texts.popitem(last=False)
                self._size -= len(old) + len(old_text)
        return text


_bits_text = _BitsTexts()


def _prompt_document(prompt: Prompt) -> dict:
    document = {
        "frame": prompt.frame,
        "obj_id": prompt.obj_id,
        "points": [[float(x), float(y)] for x, y in prompt.points],
        "labels": [int(v) for v in prompt.labels],
        "box": None if prompt.box is None else [float(v) for v in prompt.box],
    }
    if prompt.mask is not None:  # a mask prompt: {box: [top, left, height, width], bits}, as the masks
        mask = _mask_document(prompt.mask)
        document["mask"] = {"box": mask["box"], "bits": mask["bits"]}
    return document


MAX_SESSION_BYTES = 64 * 1024 * 1024  # a session or prompts file is read whole (a 600-frame video's masks fit)
MAX_MASK_BYTES = 256 * 1024 * 1024  # the masks' bits once inflated (each is held as such)
MAX_VIDEO_FRAMES = 1_000_000  # bounds for the numbers of a file's "video" (no decoder makes more)
MAX_VIDEO_SIDE = 65_536
MAX_NAME = 60  # characters of an object's name (the page's rename keeps as many)


def load_session_json(path: Path, expected: VideoRef | None = None) -> Session:
    """Read and validate a session file; with ``expected``, also check it is for that video
    (before the rest of the file is read, so a file of another video says so first).

    Everything in it is checked as the page checks its own input: ids 1..255, names cleaned
    (:func:`clean_name`), clicks and boxes inside the frame, one prompt and one mask per object
    and frame, and limits on size and count that keep loading quick. Raises SessionError with
    a plain message naming the field, for a damaged or hand-made file, another version, or
    another video.
    """
    path = Path(path)
    data = _read_json(path, "session")
    try:
        return _parse_session(data, expected)
    except _Invalid as exc:
        raise SessionError(f"'{path.name}' is not a valid session file: {exc}.") from None


@dataclass
class PromptsFile:
    """A hand-written prompts file: objects and their clicks and boxes, in the pixels of the
    video as it is (before any scaling), checked against the video when applied."""

    objects: list[SessionObject]
    prompts: list[Prompt]
    labels: list[str] = field(default_factory=list)


MAX_PROMPTS = 10_000  # prompts in one file; each one is a model call when it is applied
MAX_POINTS = 100  # clicks in one prompt


def load_prompts_json(path: Path) -> PromptsFile:
    """Read a prompts file::

        {"objects": [
            {"id": 1, "name": "Rex", "label": "dog", "prompts": [
                {"frame": 0, "points": [[210, 350], [250, 220]], "labels": [1, 0]},
                {"frame": 40, "box": [300, 0, 500, 400]}]},
            {"name": "ball", "prompts": [{"frame": 0, "points": [[90, 60]]}]}]}

    ``id`` (1..255) defaults to the next free one, ``name`` to "object <id>", ``label`` (its
    class) to "object", ``labels`` to 1 (add) for every point; points are (x, y) and a box is
    (x0, y0, x1, y1) in pixels of the video's own size; one prompt per object and frame (all
    of a frame's clicks and its box in one). Raises SessionError with a plain message naming
    the field.
    """
    path = Path(path)
    data = _read_json(path, "prompts")
    try:
        return _parse_prompts_file(data)
    except _Invalid as exc:
        raise SessionError(f"'{path.name}' is not a valid prompts file: {exc}.") from None


def _read_json(path: Path, what: str) -> object:
    """The file's JSON, or a SessionError that says plainly why not. Python's reader raises
    more than JSONDecodeError on hostile input: RecursionError for deep nesting, ValueError
    for a number of more than 4300 digits; a file over MAX_SESSION_BYTES is not read at all."""
    try:
        size = path.stat().st_size
        if size > MAX_SESSION_BYTES:
            raise SessionError(
                f"'{path.name}' is too large for a {what} file ({size / 2**20:.0f} MB; the most is "
                f"{MAX_SESSION_BYTES // 2**20} MB)."
            )
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark from a Windows editor is fine
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not UTF-8 text"
        raise SessionError(f"Could not read the {what} file '{path.name}': {reason}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(f"'{path.name}' is not a {what} file: it is not valid JSON ({exc}).") from None
    except RecursionError:
        raise SessionError(f"'{path.name}' is not a {what} file: its JSON is nested too deeply.") from None
    except ValueError:  # e.g. an integer of more digits than Python converts
        raise SessionError(f"'{path.name}' is not a {what} file: it holds a number too long to read.") from None


def _parse_prompts_file(data: object) -> PromptsFile:
    if not isinstance(data, dict):
        raise _Invalid("it must be a JSON object with 'objects'")
    raw_objects = _list(data, "objects", "the file")
    if not raw_objects:
        raise _Invalid("'objects' is empty")
    if len(raw_objects) > MAX_OBJECT_ID:
        raise _Invalid(f"it has {len(raw_objects)} objects; the most is {MAX_OBJECT_ID}")
    objects: list[SessionObject] = []
    prompts: list[Prompt] = []
    for i, raw in enumerate(raw_objects):
        where = f"objects[{i}]"
        if not isinstance(raw, dict):
            raise _Invalid(f"{where} must be an object with 'prompts'")
        used = {o.id for o in objects}
        obj_id = _whole(raw, "id", where, 1, MAX_OBJECT_ID) if "id" in raw else min(set(range(1, 256)) - used)
        if obj_id in used:
            raise _Invalid(f"{where}.id is {obj_id}, the id of another object: each object needs its own")
        name = _name(raw, where) if "name" in raw else f"object {obj_id}"
        objects.append(SessionObject(obj_id, name, (0, 0, 0), label=_label(raw, where)))
        frames: set[int] = set()
        entries = _list(raw, "prompts", where)
        if len(prompts) + len(entries) > MAX_PROMPTS:
            raise _Invalid(f"it has more than {MAX_PROMPTS} prompts (each is a model call when the file is loaded)")
        for j, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _Invalid(f"{where}.prompts[{j}] must be an object with 'frame'")
            points = entry.get("points", [])
            adds = [1] * len(points) if isinstance(points, list) else []  # a point without a label adds
            defaults = {"points": points, "labels": adds}
            prompt = _parse_prompt({**defaults, **entry, "obj_id": obj_id}, f"{where}.prompts[{j}]")
            if prompt.frame in frames:
                raise _Invalid(f"{where}.prompts[{j}] is a second prompt on frame {prompt.frame}: give all the "
                               "clicks and the box of a frame in one prompt")  # fmt: skip
            frames.add(prompt.frame)
            prompts.append(prompt)
    return PromptsFile(objects, prompts, _labels({}, objects))


# Characters a name cannot show: control characters (a newline breaks one-name-a-line files),
# lone surrogates (no UTF-8 file or page can hold them), direction controls (they reorder
# the text around the name wherever it is shown) and zero-width ones with the byte order mark
# (two names that look the same would differ, and a name of them alone would look empty).
_UNSHOWABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)
# The zero-width joiner and non-joiner are parts of real names between two letters or symbols
# (an emoji family is three emoji and two joiners; Persian writes the non-joiner inside words),
# so they stay there, one at a time; at either end of a word, or alone, they show nothing.
_LOOSE_JOINERS = re.compile("(?:^|(?<=\\s))[\u200c\u200d]+|[\u200c\u200d]+(?=\\s|$)")
_JOINER_RUNS = re.compile("([\u200c\u200d])[\u200c\u200d]+")


def clean_name(name: str, limit: int = MAX_NAME) -> str:
    """An object's name as the page keeps it: whitespace (newlines too) folded to single
    spaces, control, direction-control, zero-width and lone-surrogate characters and byte
    order marks dropped (a joiner stays between two characters: emoji sequences, Persian), at
    most ``limit`` (60) characters."""
    text = " ".join(str(name).split())  # first, so that a newline between two words leaves a space
    text = " ".join(_UNSHOWABLE.sub("", text).split())
    text = _LOOSE_JOINERS.sub("", _JOINER_RUNS.sub(r"\1", text))
    return _LOOSE_JOINERS.sub("", " ".join(text.split())[:limit].rstrip())


def check_session_video(session: Session, expected: VideoRef) -> None:
    """SessionError unless ``session`` was saved for the video described by ``expected``."""
    _check_video(session.video, expected)


def _check_video(saved: VideoRef, expected: VideoRef) -> None:
    if (saved.width, saved.height, saved.sizes) != (expected.width, expected.height, expected.sizes):
        raise SessionError(
            f"This session was saved for a {saved.width}x{saved.height} video ('{saved.name}'), "
            f"but the loaded video is {expected.width}x{expected.height}. Load '{saved.name}' "
            "with the same settings first."
        )
    if saved.frames != expected.frames or saved.fingerprint != expected.fingerprint:
        raise SessionError(
            f"This session was saved for another video ('{saved.name}', {saved.frames} frames); "
            f"the loaded video ('{expected.name}', {expected.frames} frames) does not match it. "
            "Load the same video with the same frame rate and size settings first."
        )


class _Invalid(Exception):
    """A schema problem; the message says where, e.g. "prompts[2].labels must hold ..."."""


def _get(data: object, key: str, where: str) -> object:
    if not isinstance(data, dict) or key not in data:
        raise _Invalid(f"{where} has no '{key}'")
    return data[key]


def _typed(value: object, kind: type, what: str) -> object:
    """``value`` if it is a ``kind`` (bool is not taken for int, nor int/bool for bool)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Invalid(f"{what} {_KINDS.get(kind, 'has the wrong type')}")
    return value


_KINDS = {int: "must be a whole number", str: "must be text", list: "must be a list", bool: "must be true or false"}


def _whole(data: object, key: str, where: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` (checked before it is used, so that no later sum or
    message works with a number of thousands of digits)."""
    value = _get(data, key, where)
    if type(value) is not int or not low <= value <= high:
        raise _Invalid(f"{where}.{key} must be a whole number from {low} to {high}")
    return value


def _str(data: object, key: str, where: str) -> str:
    return str(_typed(_get(data, key, where), str, f"{where}.{key}"))


def _name(data: object, where: str) -> str:
    """An object's "name", cleaned like a name typed on the page; refused if nothing is left."""
    name = clean_name(_str(data, "name", where))
    if not name:
        raise _Invalid(f"{where}.name is empty")
    return name


def _list(data: object, key: str, where: str) -> list:
    return list(_typed(_get(data, key, where), list, f"{where}.{key}"))  # type: ignore[call-overload]


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid(f"{what} must be a finite number")
    return float(value)


def _numbers(value: object, count: int, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise _Invalid(f"{what} must be a list of {count} numbers")
    return [_number(v, what) for v in value]


def _parse_session(data: object, expected: VideoRef | None = None) -> Session:
    """The whole file, in order: version, video (checked against ``expected`` at once),
    objects, prompts, masks. Counts are checked before their entries are read."""
    if not isinstance(data, dict):
        raise _Invalid("it must be a JSON object with 'version', 'video', 'objects' and 'prompts'")
    version = _get(data, "version", "the file")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        shown = f"version {version}" if type(version) is int and abs(version) < 10**6 else "another version"
        raise _Invalid(f"it has {shown}, and this app reads versions {readable}")
    video = _parse_video(_get(data, "video", "the file"))
    if expected is not None:
        _check_video(video, expected)
    objects = _parse_objects(_list(data, "objects", "the file"))
    prompts = _parse_prompts(_list(data, "prompts", "the file"), video, objects)
    left = MAX_MASK_BYTES - sum(len(p.mask.bits) for p in prompts if p.mask is not None)  # one budget for all bits
    masks = _parse_masks(_list(data, "masks", "the file"), video, objects, left) if version >= 2 else []
    return Session(video, objects, prompts, masks, _labels(data, objects))


def _parse_video(data: object) -> VideoRef:
    if not isinstance(data, dict):
        raise _Invalid("'video' must be an object with name, frames, width, height, fps and fingerprint")
    fps = _number(_get(data, "fps", "video"), "video.fps")
    if not 0 < fps <= 10_000:
        raise _Invalid("video.fps must be a number above 0 (frames per second)")
    fingerprint = _str(data, "fingerprint", "video")
    if not re.fullmatch(r"[0-9a-f]{1,64}", fingerprint):
        raise _Invalid("video.fingerprint must be the hexadecimal digits the app wrote")
    return VideoRef(
        name=clean_name(_str(data, "name", "video"), limit=120) or "no name",  # only shown in messages
        frames=_whole(data, "frames", "video", 1, MAX_VIDEO_FRAMES),
        width=_whole(data, "width", "video", 1, MAX_VIDEO_SIDE),
        height=_whole(data, "height", "video", 1, MAX_VIDEO_SIDE),
        fps=fps,
        fingerprint=fingerprint,
        sizes=_parse_sizes(data),
    )


def _parse_sizes(data: dict) -> tuple[tuple[int, int], ...]:
    """An image set's per-frame [width, height] pairs (absent for a video): one per frame."""
    raw = data.get("sizes")
    if raw is None:
        return ()
    frames = _whole(data, "frames", "video", 1, MAX_VIDEO_FRAMES)
    if not isinstance(raw, list) or len(raw) != frames:
        raise _Invalid(f"video.sizes must be a list of {frames} [width, height] pairs, one per frame")
    sizes = []
    for i, pair in enumerate(raw):
        whole = isinstance(pair, list) and all(type(v) is int and 1 <= v <= MAX_VIDEO_SIDE for v in pair)
        if not (whole and len(pair) == 2):
            raise _Invalid(f"video.sizes[{i}] must be [width, height], two whole numbers from 1 to {MAX_VIDEO_SIDE}")
        sizes.append((pair[0], pair[1]))
    return tuple(sizes)


def _parse_objects(raw: list) -> list[SessionObject]:
    if not raw:
        raise _Invalid("'objects' is empty: a session has at least one object")
    if len(raw) > MAX_OBJECT_ID:
        raise _Invalid(f"'objects' has {len(raw)} objects; the most is {MAX_OBJECT_ID}, as on the page")
    objects: dict[int, SessionObject] = {}
    for i, entry in enumerate(raw):
        obj = _parse_object(entry, f"objects[{i}]")
        if obj.id in objects:
            raise _Invalid(f"objects[{i}].id is {obj.id}, the id of another object: each object needs its own")
        objects[obj.id] = obj
    return list(objects.values())


def _parse_object(data: object, where: str) -> SessionObject:
    if not isinstance(data, dict):
        raise _Invalid(f"{where} must be an object with id, name, color and visible")
    obj_id = _whole(data, "id", where, 1, MAX_OBJECT_ID)  # PNG masks hold one id per pixel value
    color = _numbers(_get(data, "color", where), 3, f"{where}.color")
    if not all(c.is_integer() and 0 <= c <= 255 for c in color):
        raise _Invalid(f"{where}.color must be three integers 0..255")
    visible = _typed(_get(data, "visible", where), bool, f"{where}.visible")
    return SessionObject(
        id=obj_id,
        name=_name(data, where),
        color=(int(color[0]), int(color[1]), int(color[2])),
        visible=bool(visible),
        label=_label(data, where),
    )


def _label(data: object, where: str) -> str:
    """An object's optional "label" (files written before labels have none: "object")."""
    if not isinstance(data, dict) or "label" not in data:
        return "object"
    label = clean_name(_str(data, "label", where))
    if not label:
        raise _Invalid(f"{where}.label is empty")
    return label


def _labels(data: object, objects: list[SessionObject]) -> list[str]:
    """The optional class list, with every object's label in it (appended if missing)."""
    raw = _list(data, "labels", "the file") if isinstance(data, dict) and "labels" in data else []
    if len(raw) > MAX_OBJECT_ID:
        raise _Invalid(f"'labels' has {len(raw)} names; the most is {MAX_OBJECT_ID}")
    labels: list[str] = []
    for i, name in enumerate(raw):
        clean = clean_name(_typed(name, str, f"labels[{i}]"))  # type: ignore[arg-type]
        if not clean:
            raise _Invalid(f"labels[{i}] is empty")
        if clean not in labels:
            labels.append(clean)
    for obj in objects:
        if obj.label not in labels:
            labels.append(obj.label)
    return labels


def _parse_prompts(raw: list, video: VideoRef, objects: list[SessionObject]) -> list[Prompt]:
    """The prompts: each inside the frame, for a listed object, one per object and frame (as
    the app saves them: a frame's clicks and box are one prompt). At most MAX_PROMPTS, since
    loading makes one model call for each."""
    if len(raw) > MAX_PROMPTS:
        raise _Invalid(f"'prompts' has {len(raw)} prompts; the most is {MAX_PROMPTS} (each is a model call "
                       "when the file is loaded)")  # fmt: skip
    known = {o.id for o in objects}
    first: dict[tuple[int, int], int] = {}
    prompts = []
    budget = MAX_MASK_BYTES  # mask prompts' bits count with the masks' (a prompt may be a whole frame)
    for i, entry in enumerate(raw):
        where = f"prompts[{i}]"
        if isinstance(entry, dict) and entry.get("mask") is not None:
            prompt = _parse_mask_prompt(entry, where, video, budget)
            budget -= len(prompt.mask.bits)  # type: ignore[union-attr]
        else:
            prompt = _parse_prompt(entry, where, video.frame_size)
        if prompt.obj_id not in known:
            raise _Invalid(f"{where} is for object {prompt.obj_id}, which is not in 'objects'")
        if not 0 <= prompt.frame < video.frames:
            raise _Invalid(f"{where} is on frame {prompt.frame}, but the video has {video.frames} frames")
        key = (prompt.frame, prompt.obj_id)
        if key in first:
            raise _Invalid(
                f"{where} is a second prompt of object {prompt.obj_id} on frame {prompt.frame} "
                f"(prompts[{first[key]}] is the first); a frame's clicks and box are one prompt"
            )
        first[key] = i
        prompts.append(prompt)
    return prompts


def _parse_masks(raw: list, video: VideoRef, objects: list[SessionObject], budget: int) -> list[SessionMask]:
    """The masks: one per object and frame at most, inside the frame, and ``budget`` bytes of
    bits in all (what MAX_MASK_BYTES leaves after the mask prompts: a small file of well-compressed
    masks could otherwise inflate to gigabytes)."""
    most = len(objects) * video.frames
    if len(raw) > most:
        raise _Invalid(f"'masks' has {len(raw)} masks, more than one per object and frame ({most})")
    known = {o.id for o in objects}
    seen: set[tuple[int, int]] = set()
    masks = []
    for i, entry in enumerate(raw):
        mask = _parse_mask(entry, f"masks[{i}]", video, budget)
        if mask.obj_id not in known:
            raise _Invalid(f"masks[{i}] is for object {mask.obj_id}, which is not in 'objects'")
        if (mask.frame, mask.obj_id) in seen:
            raise _Invalid(f"masks[{i}] is a second mask of object {mask.obj_id} on frame {mask.frame}")
        seen.add((mask.frame, mask.obj_id))
        budget -= len(mask.bits)
        masks.append(mask)
    return masks


def _parse_mask(data: object, where: str, video: VideoRef, budget: int = MAX_MASK_BYTES) -> SessionMask:
    """A mask entry, checked so that a damaged or hostile file cannot make a mask outside the
    frame, nor inflate to more bytes than its box holds, nor past ``budget`` bytes."""
    if not isinstance(data, dict):
        raise _Invalid(f"{where} must be an object with frame, obj_id, tracked, box and bits")
    frame = _whole(data, "frame", where, 0, MAX_VIDEO_FRAMES)
    if frame >= video.frames:
        raise _Invalid(f"{where} is on frame {frame}, but the video has {video.frames} frames")
    obj_id = _whole(data, "obj_id", where, 1, MAX_OBJECT_ID)
    tracked = _typed(_get(data, "tracked", where), bool, f"{where}.tracked")
    box = _typed(_get(data, "box", where), list, f"{where}.box")
    if len(box) != 4 or not all(type(v) is int and v >= 0 for v in box):
        raise _Invalid(f"{where}.box must be four whole numbers >= 0 (top, left, height, width)")
    top, left, height, width = box
    frame_width, frame_height = video.frame_size(frame)
    if top + height > frame_height or left + width > frame_width:
        raise _Invalid(f"{where}.box reaches outside the {frame_width}x{frame_height} frame")
    size = (height * width + 7) // 8
    if size > budget:
        raise _Invalid(f"the masks hold more than {MAX_MASK_BYTES // 2**20} MB of mask bits, the most a file may "
                       f"(at {where})")  # fmt: skip
    bits = _inflate(_str(data, "bits", where), size, f"{where}.bits")
    return SessionMask(frame, obj_id, bool(tracked), top, left, height, width, bits)


def _parse_mask_prompt(data: dict, where: str, video: VideoRef, budget: int) -> Prompt:
    """A mask given as a prompt: frame, obj_id and ``mask`` {box, bits}, checked as the masks are
    (their bits count with the masks' towards MAX_MASK_BYTES: ``budget`` is what is left)."""
    if data.get("points") or data.get("box") is not None:
        raise _Invalid(f"{where} has a mask and clicks or a box: a prompt is one or the other")
    raw = _typed(data["mask"], dict, f"{where}.mask")
    entry = {"frame": data.get("frame"), "obj_id": data.get("obj_id"), "tracked": False,
             "box": raw.get("box"), "bits": raw.get("bits")}  # type: ignore[union-attr]  # fmt: skip
    mask = _parse_mask(entry, f"{where}.mask", video, budget)
    return Prompt(mask.frame, mask.obj_id, mask=mask)


def _inflate(text: str, size: int, what: str) -> bytes:
    """base64 + zlib -> exactly ``size`` bytes; never inflates more than that (a zip bomb stops there)."""
    try:
        packed = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, size + 1)  # max_length 0 would mean "no limit"
    except (binascii.Error, zlib.error, ValueError):  # ValueError: text that is not ASCII
        raise _Invalid(f"{what} is not base64 of zlib data") from None
    if len(raw) != size or not inflater.eof or inflater.unconsumed_tail:
        raise _Invalid(f"{what} does not hold the {size} bytes its box needs")
    return raw


def _parse_prompt(data: object, where: str, frame_size: Callable[[int], tuple[int, int]] | None = None) -> Prompt:
    """A prompt's frame, object, clicks and box. With ``frame_size`` (frame -> its width, height), the clicks
    and the box must lie inside the frame, as clicks on the page do (a prompts file's are in
    the source video's pixels, checked when it is applied)."""
    if not isinstance(data, dict):
        raise _Invalid(f"{where} must be an object with frame, obj_id, points, labels and box")
    frame = _whole(data, "frame", where, 0, MAX_VIDEO_FRAMES)
    obj_id = _whole(data, "obj_id", where, 1, MAX_OBJECT_ID)
    raw_points = _list(data, "points", where)
    if len(raw_points) > MAX_POINTS:
        raise _Invalid(f"{where} has more than {MAX_POINTS} points")
    points = [_numbers(p, 2, f"{where}.points[{i}]") for i, p in enumerate(raw_points)]
    labels = _list(data, "labels", where)
    if len(labels) != len(points) or not all(type(v) is int and v in (0, 1) for v in labels):
        raise _Invalid(f"{where}.labels must hold one 0 or 1 per point")
    raw_box = data.get("box")
    box = None if raw_box is None else _numbers(raw_box, 4, f"{where}.box")
    if not points and box is None:
        raise _Invalid(f"{where} has neither points nor a box")
    if box is not None and not (box[0] < box[2] and box[1] < box[3]):
        raise _Invalid(f"{where}.box must be [left, top, right, bottom], right of and below its first corner")
    if frame_size is not None:
        width, height = frame_size(frame)
        for i, (x, y) in enumerate(points):
            if not (0 <= x <= width and 0 <= y <= height):
                raise _Invalid(f"{where}.points[{i}] ({x:.6g}, {y:.6g}) is outside the {width}x{height} frame")
        if box is not None and not (0 <= box[0] and 0 <= box[1] and box[2] <= width and box[3] <= height):
            raise _Invalid(f"{where}.box reaches outside the {width}x{height} frame")
    return Prompt(
        frame=frame,
        obj_id=obj_id,
        points=[(x, y) for x, y in points],
        labels=[int(v) for v in labels],
        box=None if box is None else (box[0], box[1], box[2], box[3]),
    )
