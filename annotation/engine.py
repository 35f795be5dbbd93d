"""The one place where the app talks to the SAM 2 video predictor.

Why a wrapper: the predictor returns torch logits and keeps per-video state; the UI wants
numpy bool masks and must never run two model calls at once (one model is shared by every
user, and a PyTorch model on a CPU is not safe to call from two threads on one session). So
every call here takes the global model lock, and the logits are turned into masks here and
nowhere else (``_to_masks``).

A video's frames are kept once (:meth:`Engine.keep_frames`, raw or compressed), and the same
store serves the model and the page's drawing and exports.

Idle time is used (:meth:`Engine.encode_ahead`): while nobody's model call runs, one
background thread computes the image features of the frame a user looks at and the next
few, so a click there answers at once and tracking starts on encoded frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotation.document import Masks, PromptSpec
from annotation.hosting import GpuBudget, GpuDecorator

FRAME_STORAGES = ("raw", "png", "jpeg")
FIND_POINTS_PER_BATCH = 32  # grid points decoded at a time: progress and Cancel answer after each batch


@dataclass(frozen=True)
class FindSettings:
    """The automatic mask generator's filters ("Find objects"), Meta's defaults: a candidate is
    kept when its predicted IoU is above ``iou_thresh`` and its stability at least
    ``stability_thresh``, and duplicates whose boxes overlap more than ``nms_thresh`` go."""

    iou_thresh: float = 0.8
    stability_thresh: float = 0.95
    nms_thresh: float = 0.7


@dataclass(frozen=True)
class FoundMask:
    """One mask the generator found: HxW bool at the frame's size, with its scores."""

    mask: np.ndarray
    score: float  # the model's predicted IoU
    stability: float


# "Find objects" costs about one frame's encoding plus this many encodings per grid point (the
# point's masks decoded, upsampled and scored): the slope of the `python -m sam2.bench
# --find-objects` times over their intercept, 0.024 at 1024 px and 0.027 at 512 (8, 16 and 32
# points per side, 2-core AMD EPYC, float32). The page's figures are this times the encoding timed here.
FIND_POINT_ENCODINGS = 0.025


@dataclass(frozen=True)
class SpeedEstimate:
    """Seconds per tracked frame on this machine, from the encoding of one frame timed there
    (at ``image_size``, the engine's default).

    Tracking a frame costs its encoding plus, per object, memory attention, decoding and the
    memory encoder: about 1.1 encodings per object at 1024 px, 0.85 at 768 and 0.55 at 512 (the
    README's tables, exact and fast mode alike), i.e. in proportion to the input size. An
    encoding at another size costs about the square of the size ratio (the image encoder's work
    grows with its pixels).
    """

    image_size: int
    encode_s: float

    def encode_at(self, image_size: int | None = None) -> float:
        """Seconds to encode one frame at ``image_size`` (None: the size timed)."""
        size = image_size or self.image_size
        return self.encode_s * (size / self.image_size) ** 2

    def frame_s(self, objects: int, image_size: int | None = None) -> float:
        """Seconds per tracked frame for ``objects`` objects at ``image_size`` (None: the size timed)."""
        size = image_size or self.image_size
        return self.encode_at(size) * (1 + 1.1 * size / 1024 * objects)

    def find_s(self, points_per_side: int, image_size: int | None = None) -> float:
        """Seconds "Find objects" takes with a grid of ``points_per_side`` squared points at
        ``image_size``: one encoding plus FIND_POINT_ENCODINGS encodings per point."""
        return self.encode_at(image_size) * (1 + FIND_POINT_ENCODINGS * points_per_side**2)

    def describe(self, image_size: int | None = None) -> str:
        size = image_size or self.image_size
        timed = f"{self.encode_s:.2f} s at {self.image_size} px"
        return (f"On this machine it takes about {self.frame_s(1, size):.1f} s per frame with one object and "
                f"{self.frame_s(3, size):.1f} s with three, at {size} px (estimated from encoding a "
                f"frame here at start: {timed})")


class FindingCancelled(Exception):
    """The progress callback of :meth:`Engine.find_objects` asked to stop."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: a variant name (long or short), its checkpoint file and settings.

    precision: "float32" (exact) or "bfloat16"/"float16" (fast mode, see sam2.precision).
    frame_storage: how a video's frames are kept, once, for the model and the page alike:
    "raw" (uint8, 2.8 MB a 1280x720 frame), "png" (lossless and smaller; about 20 ms to store
    and 9 ms to read back a 1280x720 frame on a CPU core) or "jpeg" (quality 95, smaller
    still, changes pixels slightly).
    kernels: "measure" (attention kernels timed at first use, the faster kept) or "fused" /
    "blockwise" (pinned: masks bit-identical to another process's with the same pin).
    """

    variant: str
    checkpoint: Path
    image_size: int = 1024
    device: str = "cpu"
    precision: str = "float32"
    frame_storage: str = "raw"
    encode_ahead: int = 8  # frames encoded in idle time per session (0: off); ~20 MB each at 1024 px
    find: FindSettings = field(default_factory=FindSettings)  # "Find objects": the generator's filters
    kernels: str = "measure"
    precision_reason: str = ""  # why this precision (annotation.options.precision_reason), for the page and log
    # ZeroGPU (see annotation.hosting): model calls in GPU calls, the memory bank on the CPU
    # between them, tracking in chunks that fit a call; no encoding ahead (it would spend the
    # user's GPU quota on frames they may never click).
    zero_gpu: bool = False
    gpu_budget: GpuBudget = field(default_factory=GpuBudget)


@dataclass(frozen=True)
class DeviceCall:
    """One model call made inside a GPU call (ZeroGPU): a prompt on ``frame``, tracking
    ``frames`` frames from ``frame`` (``frame`` included), or finding objects on ``frame``."""

    kind: str  # "prompt", "track" or "find"
    frame: int
    obj_id: int = 0
    prompt: PromptSpec | None = None
    frames: int = 1
    reverse: bool = False
    points_per_side: int = 0  # "find": the generator's grid


class Engine:
    """A shared predictor behind a lock. Handles (``VideoHandle``) are opaque to callers."""

    def __init__(self, predictor: Any, spec: ModelSpec | None = None, gpu: GpuDecorator | None = None) -> None:
        """gpu: how model calls get a GPU on ZeroGPU (``annotation.hosting.gpu_decorator()``),
        used when ``spec.zero_gpu``; None runs them as they are."""
        self._predictor = predictor
        self._predictors = {predictor.image_size: predictor}  # image size -> predictor, weights shared
        self.spec = spec
        self.lock = threading.Lock()
        self._tracking = 0  # tracking runs in progress (they release the lock between frames)
        self._tracking_lock = threading.Lock()
        self._ahead = _EncodeAhead(self)
        self._generator_models: dict[int, Any] = {}  # image size -> model for "Find objects", weights shared
        self._zero_gpu = spec is not None and spec.zero_gpu
        self.speed: SpeedEstimate | None = None  # set by measure_speed
        decorate = gpu or (lambda fn, duration: fn)
        self._device_call = decorate(self._run_on_device, self._call_seconds)

    @classmethod
    def load(cls, spec: ModelSpec, gpu: GpuDecorator | None = None) -> Engine:
        """Build the predictor once (a few seconds); ``corrections_as_cond`` keeps a correction
        on an already-tracked frame when the user tracks again."""
        import sam2  # imported here so the UI modules load without torch

        if spec.frame_storage not in FRAME_STORAGES:
            raise ValueError(f"Unknown frame storage {spec.frame_storage!r}: use one of {', '.join(FRAME_STORAGES)}.")
        predictor = sam2.build_video_predictor(
            spec.variant, str(spec.checkpoint), image_size=spec.image_size, device=spec.device,
            corrections_as_cond=True, precision=spec.precision, kernels=spec.kernels,
            frame_encoding=None if spec.frame_storage == "raw" else spec.frame_storage,
            # Room for the frames encoded ahead plus the few in use.
            feature_cache_size=spec.encode_ahead + 4,
        )  # fmt: skip
        return cls(predictor, spec, gpu)

    def measure_speed(self) -> SpeedEstimate:
        """Time the encoding of one frame at the default size (the second of two: the first
        pays for first use, including the attention-kernel measurements, which the first
        user's click then does not) -> the estimate the page shows, kept as ``speed``."""
        size = self._predictor.image_size
        frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        with self.lock:
            session = self._predictor.init_state([frame])
            self._predictor.encode_ahead(session, 0)
            session = self._predictor.init_state([frame])
            start = time.perf_counter()
            self._predictor.encode_ahead(session, 0)
            self.speed = SpeedEstimate(size, time.perf_counter() - start)
        return self.speed

    def describe(self, image_size: int | None = None) -> str:
        """The model in one line, e.g. 'sam2.1_hiera_tiny, 1024 px, bfloat16 on cpu', at
        ``image_size`` (a video's size; None: the default)."""
        from sam2.config import long_name

        p = self._predictor
        return f"{long_name(p.config.name)}, {image_size or p.image_size} px, {p.precision.name} on {p.device}"

    def describe_choices(self) -> list[str]:
        """What was chosen on this machine and why: the precision, and each attention kernel
        chosen so far (measured, or read from an earlier start's measurement)."""
        reason = [self.spec.precision_reason] if self.spec is not None and self.spec.precision_reason else []
        return reason + [f"attention: {line}" for line in self._predictor.model.kernels.describe()]

    # ------------------------------------------------------------------ video
    def keep_frames(self, frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """The one copy of a video's frames that the page and the model share: a sam2
        ``FrameStore`` (raw, PNG or JPEG as the predictor's ``frame_encoding`` says; indexing
        gives HxWx3 uint8). Encoding takes a while for a long video, so no lock is held."""
        from sam2.session import FrameStore

        return FrameStore(frames, encoding=self._predictor.frame_encoding)

    def keep_behind(self, handle: Any, frames: int = 0) -> None:
        """Bound a long tracking run's memory: the session keeps only the results of the last
        ``frames`` tracked frames (at least those tracking attends to, so masks do not change).
        For a run in one direction that nothing tracks or corrects after (the command line's
        streamed videos); a correction on a forgotten frame would start afresh there."""
        handle.keep_behind = frames

    @property
    def image_size(self) -> int:
        """The default model input size (the one the engine was loaded at)."""
        return self._predictor.image_size

    def start(self, frames: Sequence[np.ndarray], image_size: int | None = None) -> Any:
        """A new predictor session (cheap: features are computed on demand) at ``image_size``
        (512, 768 or 1024; default :attr:`image_size`). Frames from :meth:`keep_frames` are
        used as they are, not copied."""
        with self.lock:
            return self._predictor_at(image_size or self.image_size).init_state(frames)

    def _predictor_at(self, image_size: int) -> Any:
        predictor = self._predictors.get(image_size)
        if predictor is None:  # a few ms: the weights are shared, not copied
            predictor = self._predictors[image_size] = self._predictor.at_image_size(image_size)
        return predictor

    def fresh_session(self, handle: Any) -> Any:
        """A new, empty predictor session on ``handle``'s frames at its size, sharing its image
        features (they depend on the frame alone, so nothing is encoded twice). ``handle`` is
        not touched: a session file is replayed into the new one, which replaces it only when
        the whole replay has succeeded."""
        from sam2.session import VideoSession

        return VideoSession(frames=handle.frames, features=handle.features, image_size=handle.image_size,
                            keep_behind=handle.keep_behind)  # a streamed video's bound stays

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """Input sizes a video may be run at (the page offers these)."""
        from sam2.config import SUPPORTED_IMAGE_SIZES

        return tuple(sorted({*SUPPORTED_IMAGE_SIZES, self.image_size}))

    def predictor_for(self, handle: Any) -> Any:
        """The predictor a session was started with (its image size)."""
        return self._predictors[handle.image_size]

    def image_size_of(self, handle: Any) -> int:
        return handle.image_size

    def encode_ahead(self, handle: Any, frame: int) -> None:
        """In idle time, encode ``frame`` and the following ones (``spec.encode_ahead`` in
        all) for this video; replaces the video's earlier request. Returns at once."""
        count = self.spec.encode_ahead if self.spec is not None and not self._zero_gpu else 0
        if count > 0:
            last = min(frame + count, handle.num_frames)  # handle: the predictor's VideoSession
            self._ahead.request(handle, list(range(max(frame, 0), last)))

    def stop_encoding_ahead(self, handle: Any) -> None:
        """Forget the video's pending frames (its session is closing or restarting)."""
        self._ahead.request(handle, [])

    def encoded(self, handle: Any, frame: int) -> bool:
        """Are the frame's features ready (a click there needs no encoding)?"""
        return frame in handle.features

    def idle(self) -> bool:
        """No model call or tracking run in progress."""
        return not self.lock.locked() and self._tracking == 0

    def reset(self, handle: Any) -> None:
        with self.lock:
            self.predictor_for(handle).reset_state(handle)

    # ------------------------------------------------------------------ prompts
    def prompt(self, handle: Any, frame: int, obj_id: int, prompt: PromptSpec) -> np.ndarray:
        """Replace the object's prompt on ``frame`` (clicks and box, or a mask); returns its
        new mask there."""
        if self._zero_gpu:
            return self._in_gpu_call(handle, DeviceCall("prompt", frame, obj_id, prompt))
        with self.lock:
            return self._prompt(self.predictor_for(handle), handle, frame, obj_id, prompt)

    @staticmethod
    def _prompt(predictor: Any, handle: Any, frame: int, obj_id: int, prompt: PromptSpec) -> np.ndarray:
        """The prompt call itself (the caller holds the model lock)."""
        if prompt.mask is not None:
            _, obj_ids, logits = predictor.add_new_mask(handle, frame, obj_id, prompt.mask.unpack())
            return _to_masks(obj_ids, logits)[obj_id]
        points = [list(p) for p in prompt.points] or None
        labels = list(prompt.labels) or None
        box = list(prompt.box) if prompt.box is not None else None
        _, obj_ids, logits = predictor.add_new_points_or_box(
            handle, frame, obj_id, points=points, labels=labels, clear_old_points=True, box=box
        )
        return _to_masks(obj_ids, logits)[obj_id]

    def candidates(self, handle: Any, frame: int, obj_id: int) -> list[tuple[np.ndarray, float]]:
        """The masks the model offered for the object's single click on ``frame``, with their
        predicted quality (best first in the model's order is not promised: keep the order);
        [] when its result there came from anything else (more clicks, a box, a mask)."""
        with self.lock:
            found = self.predictor_for(handle).prompt_candidates(handle, frame, obj_id)
        if found is None:
            return []
        logits, scores = found
        return [((logits[i, 0] > 0).cpu().numpy(), float(scores[i])) for i in range(len(scores))]

    def clear(self, handle: Any, frame: int, obj_id: int) -> None:
        """Drop the object's prompts on ``frame`` (its result there stays as tracked memory)."""
        with self.lock:
            self.predictor_for(handle).clear_all_prompts_in_frame(handle, frame, obj_id, need_output=False)

    def remove_object(self, handle: Any, obj_id: int) -> None:
        with self.lock:
            self.predictor_for(handle).remove_object(handle, obj_id, need_output=False)

    def object_ids(self, handle: Any) -> list[int]:
        """Objects the predictor knows (those that were prompted at least once)."""
        return list(handle.obj_ids)

    # ------------------------------------------------------------------ tracking
    def track(self, handle: Any, start: int, count: int | None, reverse: bool) -> Iterator[tuple[int, Masks]]:
        """Track every prompted object frame by frame from ``start``.

        The model lock is held for one frame at a time, so other users' clicks and tracking
        interleave with a long run instead of waiting for all of it. Raises ValueError (with
        the predictor's plain message) when there is nothing to track.
        """
        if self._zero_gpu:
            yield from self._track_in_chunks(handle, start, count, reverse)
            return
        with self._tracking_lock:
            self._tracking += 1  # encoding ahead waits, also between frames
        try:
            with self.lock:
                frames = self.predictor_for(handle).propagate_in_video(
                    handle, start_frame_idx=start, max_frame_num_to_track=count, reverse=reverse
                )
                first = next(frames, None)
            if first is None:
                return
            yield first[0], _to_masks(first[1], first[2])
            while True:
                with self.lock:
                    step = next(frames, None)
                if step is None:
                    return
                yield step[0], _to_masks(step[1], step[2])
        finally:
            with self._tracking_lock:
                self._tracking -= 1

    # ------------------------------------------------------------------ ZeroGPU
    def _track_in_chunks(
        self, handle: Any, start: int, count: int | None, reverse: bool
    ) -> Iterator[tuple[int, Masks]]:
        """Tracking as GPU calls of a chunk of frames each (ZeroGPU); the same masks as one
        uninterrupted run, because each chunk goes on from the memory bank the last left."""
        budget = self.spec.gpu_budget if self.spec is not None else GpuBudget()
        size = budget.chunk_frames(len(handle.tracks))
        for chunk in tracking_chunks(handle.num_frames, start, count, reverse, size):
            yield from self._in_gpu_call(handle, DeviceCall("track", chunk[0], frames=len(chunk), reverse=reverse))

    def _in_gpu_call(self, handle: Any, call: DeviceCall) -> Any:
        """Run ``call`` through the GPU decorator on a light copy of the session (its frames
        and tracks, no cached features: on ZeroGPU it is pickled into the GPU worker), and
        keep the tracks it gives back."""
        from sam2.session import FeatureCache, VideoSession

        with self._long_run(), self.lock:
            light = VideoSession(frames=handle.frames, features=FeatureCache(handle.features.capacity),
                                 image_size=handle.image_size, tracks=handle.tracks)
            tracks, result = self._device_call(light, call)
            handle.tracks = tracks
        return result

    def _run_on_device(self, session: Any, call: DeviceCall) -> tuple[dict, Any]:
        """Inside a GPU call: the session's tracks to the model's device, the call, the
        tracks back on the CPU -> (tracks, a mask for a prompt or [(frame, masks)] tracked)."""
        predictor = self._predictor_at(session.image_size)
        session.tracks_to(predictor.device)
        try:
            if call.kind == "prompt":
                result: Any = self._prompt(predictor, session, call.frame, call.obj_id, call.prompt)
            elif call.kind == "find":
                result = self._generate(session.image_size, session.frames[call.frame], call.points_per_side, None)
            else:
                steps = predictor.propagate_in_video(
                    session, start_frame_idx=call.frame, max_frame_num_to_track=call.frames - 1, reverse=call.reverse
                )
                result = [(frame, _to_masks(ids, logits)) for frame, ids, logits in steps]
        finally:
            session.tracks_to("cpu")
        return session.tracks, result

    def _call_seconds(self, session: Any, call: DeviceCall) -> float:
        """The GPU time to ask for (ZeroGPU's duration), from the call itself."""
        budget = self.spec.gpu_budget if self.spec is not None else GpuBudget()
        if call.kind == "prompt":
            return budget.prompt_s
        if call.kind == "find":
            return budget.find_seconds(call.points_per_side**2)
        return budget.track_seconds(len(session.tracks), call.frames)

    # ------------------------------------------------------------------ finding objects
    def find_objects(
        self, handle: Any, frame: int, points_per_side: int, progress: Callable[[int, int], bool] | None = None
    ) -> list[FoundMask]:
        """Every object SAM 2's automatic mask generator finds on ``frame`` (a square grid of
        ``points_per_side`` x ``points_per_side`` single clicks; good, distinct masks kept),
        best first.

        Runs at the session's input size with the engine's precision and ``spec.find``'s
        filters. ``progress(points done, points)`` is called before the work and after each
        batch of points; returning False stops it (FindingCancelled). The model lock is held
        a batch at a time, so other users' clicks go on meanwhile (a run takes a minute).
        On ZeroGPU the run is one GPU call, with progress only before it."""
        total = points_per_side**2
        if self._zero_gpu:
            # One GPU call for the whole grid: the forked GPU worker can neither report progress
            # back nor be stopped midway, so Cancel only works before it starts.
            if progress is not None and not progress(0, total):
                raise FindingCancelled
            return self._in_gpu_call(handle, DeviceCall("find", frame, points_per_side=points_per_side))
        with self._long_run(), self.lock:

            def between_batches(done: int) -> bool:
                self.lock.release()  # let waiting model calls in between two batches
                try:
                    time.sleep(0)
                    return progress is None or progress(min(total, done), total)
                finally:
                    self.lock.acquire()

            return self._generate(handle.image_size, handle.frames[frame], points_per_side, between_batches)

    def _generate(
        self, image_size: int, frame: np.ndarray, points_per_side: int, between_batches: Callable[[int], bool] | None
    ) -> list[FoundMask]:
        """The generator's run on one frame (the model lock held) -> found masks, best first.
        ``between_batches(points done)`` returning False stops it (FindingCancelled)."""
        from sam2.automatic_mask_generator import GenerationCancelled, SAM2AutomaticMaskGenerator

        settings = self.spec.find if self.spec is not None else FindSettings()
        # A light object (the model is shared), new for each run so that runs never share state.
        generator = SAM2AutomaticMaskGenerator(
            self._generator_model(image_size), points_per_side=points_per_side,
            points_per_batch=FIND_POINTS_PER_BATCH, pred_iou_thresh=settings.iou_thresh,
            stability_score_thresh=settings.stability_thresh, box_nms_thresh=settings.nms_thresh,
            precision=self._predictor.precision.name,
        )  # fmt: skip
        report = None if between_batches is None else (lambda step: between_batches(step.done * FIND_POINTS_PER_BATCH))
        try:
            records = generator.generate(np.asarray(frame), progress=report)
        except GenerationCancelled:
            raise FindingCancelled from None
        return [FoundMask(r["segmentation"], float(r["predicted_iou"]), float(r["stability_score"])) for r in records]

    def _generator_model(self, image_size: int) -> Any:
        """The loaded model at ``image_size`` without the builders' post-processing, as Meta's
        generator runs it (and ``sam2.build_automatic_mask_generator`` builds it). Made once per
        size, sharing every weight tensor with the tracking model (assigned, not copied)."""
        model = self._generator_models.get(image_size)
        if model is None:
            from sam2.modeling.sam2_model import SAM2Model

            base = self._predictor.model
            model = SAM2Model(base.config.with_postprocessing(False).with_image_size(image_size), base.kernels)
            model.load_state_dict(base.state_dict(), strict=True, assign=True)
            model = self._generator_models[image_size] = model.to(base.device).eval()
        return model

    @contextmanager
    def _long_run(self) -> Iterator[None]:
        """A run that releases the model lock now and then (tracking, finding): encoding ahead
        waits until it ends rather than slipping in between its steps."""
        with self._tracking_lock:
            self._tracking += 1
        try:
            yield
        finally:
            with self._tracking_lock:
                self._tracking -= 1


def tracking_chunks(num_frames: int, start: int, count: int | None, reverse: bool, size: int) -> list[list[int]]:
    """The frames a run from ``start`` tracks (``count`` past it, None: to the end), as the
    predictor orders them, cut into chunks of ``size``. Reverse tracking that starts at
    frame 0 tracks nothing (the predictor's rule), so a last reverse chunk of frame 0 alone
    takes the frame before it from the chunk before."""
    if reverse:
        end = max(start - (num_frames if count is None else count), 0)
        order = list(range(start, end - 1, -1)) if start > 0 else []
    else:
        end = min(start + (num_frames if count is None else count), num_frames - 1)
        order = list(range(start, end + 1))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    if reverse and len(chunks) > 1 and chunks[-1] == [0]:
        chunks[-1].insert(0, chunks[-2].pop())
        chunks = [chunk for chunk in chunks if chunk]
    return chunks


def _to_masks(obj_ids: Sequence[int], logits: Any) -> Masks:
    """(N, 1, H, W) torch logits -> {obj id: HxW bool}; the only torch-to-numpy conversion."""
    binary = (logits > 0).cpu().numpy()
    return {int(obj_id): binary[i, 0] for i, obj_id in enumerate(obj_ids)}


class _EncodeAhead:
    """One background thread that encodes requested frames, one at a time, and starts one
    only while the engine is idle; the user's own calls never wait for it (they may run
    alongside an encoding already started).

    It uses as many CPU threads as the user's calls do, not one: features computed with
    another thread count differ in the last bits (1e-5 measured), which tracking can grow
    into a pixel or two of a small mask, so masks would depend on what happened to be
    encoded ahead. With the same count they are bit-identical (tests/test_encode_ahead.py).
    """

    POLL_S = 0.05

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted: dict[int, tuple[Any, list[int]]] = {}  # id(handle) -> (handle, frames left)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, handle: Any, frames: list[int]) -> None:
        with self._changed:
            if frames:
                self._wanted[id(handle)] = (handle, frames)
            else:
                self._wanted.pop(id(handle), None)
            if self._thread is None and frames:
                self._thread = threading.Thread(target=self._run, name="encode-ahead", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _next(self) -> tuple[Any, int]:
        """Wait for a requested frame; the oldest request is served first."""
        with self._changed:
            while not self._wanted:
                self._changed.wait()
            key, (handle, frames) = next(iter(self._wanted.items()))
            frame = frames.pop(0)
            if not frames:
                del self._wanted[key]
            return handle, frame

    def _run(self) -> None:
        while True:
            handle, frame = self._next()
            while not self._engine.idle():
                time.sleep(self.POLL_S)
            try:
                self._engine.predictor_for(handle).encode_ahead(handle, frame)
            except Exception:  # never let background work take the app down
                logging.getLogger(__name__).exception("Encoding frame %d ahead failed", frame)
                self.request(handle, [])
