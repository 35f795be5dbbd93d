"""`SAM2VideoPredictor`: Meta's video predictor API on our stateless model.

Semantics follow Meta's sam2 1.1.0: each object is tracked on its own; prompts on a frame the
object has not been tracked through make a conditioning frame (no memory); prompts on a
tracked frame make a memory-conditioned correction. Masks are returned as logits at the
frame's resolution, shape (num_objects, 1, H, W), objects in the order they were added.

Frames may differ in size (an image set, given as a list of arrays or a folder): every frame
is resized to the model's square input anyway, so only the way back differs: clicks are in
the frame's own pixels and its masks come back at its own (H, W). For a video, whose frames
share one size, this is exactly Meta's behaviour.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .allocator import release_freed_memory
from .memory_bank import select_memories
from .modeling.sam2_model import NO_OBJ_SCORE, ImageFeatures, MemoryItem, PointerItem, Points, SAM2Model
from .precision import Precision
from .session import FeatureCache, FrameOutput, FrameStore, ObjectTrack, VideoSession
from .transforms import fill_holes, resize_logits, video_frame_to_input
from .video_io import PREDICTOR_LIMITS, MediaLimits, VideoSource, load_video_frames
from .video_stream import FrameStream

MemoryPlan = tuple[list[MemoryItem], list[PointerItem]]  # one object's memory maps and pointers on a frame


class SAM2VideoPredictor:
    def __init__(
        self,
        model: SAM2Model,
        *,
        fill_hole_area: int | None = None,
        corrections_as_cond: bool = False,
        feature_cache_size: int = 4,
        memory_window: int | None = 16,
        frame_encoding: str | None = None,
        precision: str = "float32",
    ) -> None:
        """corrections_as_cond: store prompts on already-tracked frames as conditioning
        frames, so that later tracking keeps them (Meta's `add_all_frames_to_correct_as_cond`;
        off by default, as in Meta's code, where re-tracking through such a frame replaces it).
        memory_window: memory maps kept per object for tracked frames (conditioning frames
        always keep theirs); older ones are dropped and recomputed exactly if needed again.
        None keeps all. frame_encoding: None (uint8 frames), "png" or "jpeg" (see FrameStore).
        precision: "float32" (exact, matches Meta's float32 results) or "bfloat16"/"float16"
        (fast mode: autocast, for GPUs and CPUs that run bfloat16 natively: see
        `Precision.fastest_supported`)."""
        self.model = model.eval()
        self.config = model.config
        self.image_size = model.config.image_size
        self.fill_hole_area = model.config.fill_hole_area if fill_hole_area is None else fill_hole_area
        self.corrections_as_cond = corrections_as_cond
        self.feature_cache_size = feature_cache_size
        if memory_window is not None and memory_window < model.config.num_maskmem - 1:
            raise ValueError(
                f"memory_window must be at least {model.config.num_maskmem - 1} (the frames tracking attends to)."
            )
        self.memory_window = memory_window
        self.frame_encoding = frame_encoding
        self.precision = Precision(precision, model.device)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ session
    @torch.inference_mode()
    def init_state(
        self,
        video: VideoSource,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        limits: MediaLimits = PREDICTOR_LIMITS,
    ) -> VideoSession:
        """Start a session on a video file, a folder of frames, a list of HxWx3 uint8 frames,
        a `FrameStore` or a `sam2.video_stream.FrameStream` (read from the file as needed).

        A file is read by the project's hardened decoder (``sam2.video_io.decode``): only video
        and image formats are opened (a playlist is refused, never followed), at the video's own
        frame rate, within ``limits`` (a MediaError, a ValueError, says which limit and how to
        raise it).

        Frames stay compact (uint8 at source size, or encoded) on the CPU, so they are always
        "offloaded"; features are computed on demand and a few cached. The offload and async
        flags are accepted for compatibility with Meta's API and change nothing (a warning
        says so when one is set).
        """
        if offload_state_to_cpu or async_loading_frames:
            warnings.warn(
                "init_state: offload_state_to_cpu and async_loading_frames change nothing here (frames "
                "are kept compact on the CPU and the session state is small); they are accepted for "
                "compatibility with Meta's API.",
                stacklevel=2,
            )
        if isinstance(video, (FrameStore, FrameStream)):
            frames = video
        else:
            frames = FrameStore(load_video_frames(video, limits), encoding=self.frame_encoding)
        return VideoSession(frames=frames, features=FeatureCache(self.feature_cache_size), image_size=self.image_size)

    def at_image_size(self, image_size: int) -> SAM2VideoPredictor:
        """This predictor, same options, for another input size (512, 768 or 1024): smaller is
        faster, 1024 is what SAM 2 was trained at. The weights are shared, not copied;
        sessions belong to the size they were started at."""
        if image_size == self.image_size:
            return self
        other = copy.copy(self)
        other.model = self.model.at_image_size(image_size)
        other.config = other.model.config
        other.image_size = image_size
        return other

    @torch.inference_mode()
    def encode_ahead(self, inference_state: VideoSession, frame_idx: int) -> bool:
        """Compute a frame's image features before they are needed (clicks and tracking
        then start at once) -> False if they were already cached.

        Meant for idle time, from another thread: the model keeps no state, so this may run
        while the session is used (it only adds to the feature cache). Keep the frames
        encoded ahead within `feature_cache_size`, or the first ones are evicted again.
        """
        session = inference_state
        self._check_frame(session, frame_idx)
        if frame_idx in session.features:
            return False
        with self.precision():
            session.features.put(frame_idx, self._encode_frame(session, frame_idx))
        return True

    def reset_state(self, inference_state: VideoSession) -> None:
        """Drop every object, prompt and result (the video stays loaded)."""
        inference_state.tracks.clear()

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: VideoSession,
        frame_idx: int,
        obj_id: int,
        points=None,
        labels=None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box=None,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Add clicks (points (N, 2) as (x, y), labels 1 positive / 0 negative) and/or a box
        (x0, y0, x1, y1) for one object on one frame. Coordinates are in frame pixels, or in
        [0, 1] with normalize_coords=False. Returns (frame_idx, obj_ids, mask logits)."""
        session = inference_state
        self._check_frame(session, frame_idx)
        coords, point_labels = _points_tensor(points, labels, box, clear_old_points)
        height, width = session.frame_size(frame_idx)
        scale = torch.tensor([float(width), float(height)])
        if normalize_coords:
            coords = coords / scale
        prompt = Points((coords * self.image_size)[None].to(self.device), point_labels[None].to(self.device))

        track = session.track(obj_id)
        old = track.points.get(frame_idx) if not clear_old_points else None
        if old is not None:
            prompt = Points(torch.cat([old.coords, prompt.coords], 1), torch.cat([old.labels, prompt.labels], 1))
        track.points[frame_idx] = prompt
        track.masks.pop(frame_idx, None)
        with self.precision():
            self._predict_prompted_frame(session, track, frame_idx, points=prompt, mask=None)
        return frame_idx, session.obj_ids, self._frame_masks(session, frame_idx)

    add_new_points = add_new_points_or_box

    @torch.inference_mode()
    def add_new_mask(
        self, inference_state: VideoSession, frame_idx: int, obj_id: int, mask
    ) -> tuple[int, list[int], torch.Tensor]:
        """Give an object's mask (H x W, bool or 0/1; any size, usually the frame's) on a frame
        as its prompt."""
        session = inference_state
        self._check_frame(session, frame_idx)
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        if mask.dim() != 2:
            raise ValueError(f"The mask must be 2-D (H x W); got shape {tuple(mask.shape)}")
        mask = mask[None, None].float().to(self.device)
        size = self.image_size
        if mask.shape[-2:] != (size, size):
            mask = torch.nn.functional.interpolate(mask, (size, size), mode="bilinear", align_corners=False,
                                                   antialias=True)
            mask = (mask >= 0.5).float()

        track = session.track(obj_id)
        track.masks[frame_idx] = mask
        track.points.pop(frame_idx, None)
        with self.precision():
            self._predict_prompted_frame(session, track, frame_idx, points=None, mask=mask)
        return frame_idx, session.obj_ids, self._frame_masks(session, frame_idx)

    @torch.inference_mode()
    def prompt_candidates(
        self, inference_state: VideoSession, frame_idx: int, obj_id: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The three masks the decoder offered for an object's single click on a frame, for a
        person to choose among -> (logits (3, 1, H, W) at the frame's size, predicted IoU (3,)), or
        None when the object's newest result there came from more than one click, a box, a
        mask or tracking (then the model gave one mask). The first of the best score is the
        one `add_new_points_or_box` returned; a chosen other one is given back with
        `add_new_mask`."""
        session = inference_state
        self._check_frame(session, frame_idx)
        track = session.tracks.get(obj_id)
        out = track.latest_output(frame_idx) if track is not None else None
        if out is None or out.candidates is None or out.candidate_scores is None:
            return None
        h, w = session.frame_size(frame_idx)
        logits = resize_logits(out.candidates.transpose(0, 1), h, w).float()
        return logits, out.candidate_scores[0].float()

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self, inference_state: VideoSession, frame_idx: int, obj_id: int, need_output: bool = True
    ):
        """Remove one object's prompts on a frame. A conditioning frame's result stays in
        memory as an ordinary tracked frame."""
        session = inference_state
        track = session.tracks.get(obj_id)
        if track is not None:
            _clear_frame(track, frame_idx)
        if need_output:
            return frame_idx, session.obj_ids, self._frame_masks(session, frame_idx)
        return None

    @torch.inference_mode()
    def remove_object(
        self, inference_state: VideoSession, obj_id: int, strict: bool = False, need_output: bool = True
    ):
        """Forget an object. Returns (obj_ids, [(frame_idx, masks)] for the frames it had prompts on)."""
        session = inference_state
        track = session.tracks.pop(obj_id, None)
        if track is None:
            if strict:
                raise KeyError(f"Cannot remove object {obj_id}: there is no such object (ids: {session.obj_ids}).")
            return session.obj_ids, []
        frames = sorted(track.prompted_frames())
        updated = []
        if need_output and session.tracks:
            updated = [(f, self._frame_masks(session, f)) for f in frames]
        return session.obj_ids, updated

    # ------------------------------------------------------------------ tracking
    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: VideoSession) -> None:
        """Encode every new prompt result into memory, so tracking can use it."""
        session = inference_state
        if not session.tracks:
            raise ValueError("Nothing to track yet: add points, a box or a mask for an object first.")
        unprompted = [t.obj_id for t in session.tracks.values()
                      if not t.cond and not any(o.is_cond for o in t.pending.values())]
        if unprompted:
            raise ValueError(
                f"Object(s) {unprompted} have no prompt on any frame (their prompts were cleared). "
                "Add a point, box or mask for them, or remove them, before tracking."
            )
        with self.precision():
            for track in session.tracks.values():
                self._commit_pending(session, track)

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: VideoSession,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every object; yields (frame_idx, obj_ids, mask logits (N, 1, H, W)) per frame.

        Starts at `start_frame_idx` (default: the earliest prompted frame) and goes
        `max_frame_num_to_track` frames forward, or backward with reverse=True.
        """
        session = inference_state
        self.propagate_in_video_preflight(session)
        order = self._processing_order(session, start_frame_idx, max_frame_num_to_track, reverse)
        for frame_idx in order:
            to_track = [track for track in session.tracks.values() if frame_idx not in track.cond]
            if to_track:
                with self.precision():
                    outputs = self._track_frame(session, to_track, frame_idx, reverse)
                for track, out in zip(to_track, outputs, strict=True):
                    track.non_cond[frame_idx] = out
                    if self.memory_window is not None:
                        track.evict_memories(self.memory_window, around=frame_idx)
                    if session.keep_behind is not None:
                        track.forget_behind(frame_idx, max(session.keep_behind, self._attended()), reverse)
            for track in session.tracks.values():
                track.tracked[frame_idx] = reverse
            # Holes are filled on the host (OpenCV), all objects at once: one device-to-host
            # copy per frame, the one the caller needs anyway to show or save the masks.
            logits = torch.cat([track.latest_output(frame_idx).mask_logits for track in session.tracks.values()])
            masks = resize_logits(fill_holes(logits, self.fill_hole_area), *session.frame_size(frame_idx))
            release_freed_memory()  # the frame's temporaries: see sam2.allocator
            yield frame_idx, session.obj_ids, masks

    def _processing_order(
        self, session: VideoSession, start: int | None, max_frames: int | None, reverse: bool,
    ) -> Sequence[int]:
        if start is None:
            start = min(f for track in session.tracks.values() for f in track.cond)
        self._check_frame(session, start)
        if max_frames is None:
            max_frames = session.num_frames
        if reverse:
            end = max(start - max_frames, 0)
            return range(start, end - 1, -1) if start > 0 else []
        end = min(start + max_frames, session.num_frames - 1)
        return range(start, end + 1)

    def _attended(self) -> int:
        """How far behind the frame being tracked its memories and pointers reach."""
        return max(self.config.num_maskmem, self.config.max_obj_ptrs_in_encoder)

    # ------------------------------------------------------------------ steps
    def _features(self, session: VideoSession, frame_idx: int) -> ImageFeatures:
        return session.features.get(frame_idx, lambda i: self._encode_frame(session, i))

    def _encode_frame(self, session: VideoSession, frame_idx: int) -> ImageFeatures:
        if session.image_size != self.image_size:
            raise ValueError(
                f"This session was started at image size {session.image_size}; this predictor runs at "
                f"{self.image_size}. Use the predictor the session was started with (see at_image_size)."
            )
        image = video_frame_to_input(session.frames[frame_idx], self.image_size)[None]
        if self.device.type == "cuda":  # decoded on the CPU, encoded on the GPU: copy without waiting
            image = image.pin_memory().to(self.device, non_blocking=True)
        features = self.model.encode_image(image.to(self.device))
        release_freed_memory()  # the encoder's temporaries: see sam2.allocator
        return features

    def _predict_prompted_frame(
        self, session: VideoSession, track: ObjectTrack, frame_idx: int, points: Points | None,
        mask: torch.Tensor | None,
    ) -> None:
        # A frame the object was not tracked through is a fresh start (no memory). So is any
        # frame of an object with no conditioning frame left, where Meta's code fails.
        is_init = frame_idx not in track.tracked or not track.cond
        reverse = False if is_init else track.tracked[frame_idx]
        features = self._features(session, frame_idx)
        if mask is not None:
            pred = self.model.mask_as_output(features, mask)
        else:
            # The previous result on this frame guides the new one (as in interactive SAM).
            previous = track.latest_output(frame_idx)
            prev_logits = self._output_logits(previous).clamp(-32.0, 32.0) if previous is not None else None
            if is_init:
                pix_feat = self.model.condition_on_memory(features, None, [], session.num_frames)
            else:
                pix_feat = self._condition(session, track, frame_idx, reverse, features)
            multimask = self.model.use_multimask(points.labels.shape[1])
            pred = self.model.decode(pix_feat, features.high_res, points, prev_logits, multimask)
        offered = mask is None and pred.low_res_multimasks.shape[1] > 1
        track.pending[frame_idx] = FrameOutput(
            mask_logits=fill_holes(pred.low_res_masks, self.fill_hole_area),
            obj_ptr=pred.obj_ptr,
            object_score_logits=pred.object_score_logits,
            is_cond=is_init or self.corrections_as_cond,
            from_prompt=True,
            candidates=fill_holes(pred.low_res_multimasks, self.fill_hole_area) if offered else None,
            candidate_scores=pred.ious if offered else None,
        )

    def _commit_pending(self, session: VideoSession, track: ObjectTrack) -> None:
        """Encode memories for prompt results and store them (conditioning or not)."""
        for frame_idx, out in track.pending.items():
            self._memory_of(session, frame_idx, out)
            (track.cond if out.is_cond else track.non_cond)[frame_idx] = out
        track.pending.clear()
        for frame_idx in track.cond:
            track.non_cond.pop(frame_idx, None)

    def _condition(
        self, session: VideoSession, track: ObjectTrack, frame_idx: int, reverse: bool, features: ImageFeatures
    ) -> torch.Tensor:
        """The frame's features after attending to the object's memories."""
        memories, pointers = self._memory_plan(session, track, frame_idx, reverse)
        return self.model.condition_on_memory(features, memories, pointers, session.num_frames)

    def _memory_plan(self, session: VideoSession, track: ObjectTrack, frame_idx: int, reverse: bool) -> MemoryPlan:
        """The memory maps and object pointers one object attends to on a frame."""
        cfg = self.config
        spatial, pointers = select_memories(
            track, frame_idx, reverse, session.num_frames,
            num_maskmem=cfg.num_maskmem,
            max_obj_ptrs=cfg.max_obj_ptrs_in_encoder,
            signed_offsets=cfg.use_signed_tpos_enc_to_obj_ptrs,
        )
        memories = [MemoryItem(self._memory_of(session, m.frame_idx, m.output), m.t_pos) for m in spatial]
        return memories, [PointerItem(p.output.obj_ptr, p.offset) for p in pointers]

    def _memory_of(self, session: VideoSession, frame_idx: int, out: FrameOutput) -> torch.Tensor:
        """A frame's memory map, encoded now if it is new or was evicted (the same inputs
        give the same map: the frame's features and the logits kept in `out`)."""
        if out.memory is None:
            features = self._features(session, frame_idx)
            high_res = self.model.upsample_to_input(out.mask_logits)
            memory = self.model.encode_memory(features, high_res, out.object_score_logits, binarize=out.from_prompt)
            out.memory = memory.to(torch.bfloat16)
        return out.memory

    def _track_frame(
        self, session: VideoSession, tracks: list[ObjectTrack], frame_idx: int, reverse: bool
    ) -> list[FrameOutput]:
        """Track objects on one frame -> one output per track, memory encoded.

        Objects whose memories line up (the usual case: tracked through the same frames)
        go through memory attention and the decoder as one batch.
        """
        features = self._features(session, frame_idx)
        plans = [self._memory_plan(session, track, frame_idx, reverse) for track in tracks]
        outputs: list[FrameOutput] = [None] * len(tracks)  # type: ignore[list-item]
        for group in _lined_up(plans):
            memories, pointers = _stack_plans([plans[i] for i in group])
            pix_feat = self.model.condition_on_memory(features, memories, pointers, session.num_frames)
            pred = self.model.decode(pix_feat, features.high_res, None, None, self.model.use_multimask(0))
            for k, i in enumerate(group):
                outputs[i] = FrameOutput(
                    mask_logits=pred.low_res_masks[k : k + 1].clone(),  # own storage: nothing pins the batch
                    obj_ptr=pred.obj_ptr[k : k + 1].clone(),
                    object_score_logits=pred.object_score_logits[k : k + 1].clone(),
                    is_cond=False,
                    from_prompt=False,
                )
                # One object at a time: the memory encoder's convolutions run slower batched
                # on CPU (0.36 s vs 0.23 s for 3 objects at 1024), and a map recomputed after
                # eviction is then made exactly as the original was.
                self._memory_of(session, frame_idx, outputs[i])
        return outputs

    def _output_logits(self, out: FrameOutput) -> torch.Tensor:
        """Low-res logits as shown to the user: small holes filled (idempotent)."""
        return fill_holes(out.mask_logits, self.fill_hole_area)

    def _frame_masks(self, session: VideoSession, frame_idx: int) -> torch.Tensor:
        """Every object's newest mask logits on a frame at its size -> (N, 1, H, W);
        objects with no result there get NO_OBJ_SCORE."""
        h, w = session.frame_size(frame_idx)
        masks = torch.full((len(session.tracks), 1, h, w), NO_OBJ_SCORE, dtype=torch.float32, device=self.device)
        for i, track in enumerate(session.tracks.values()):
            out = track.latest_output(frame_idx)
            if out is not None:
                masks[i : i + 1] = resize_logits(self._output_logits(out), h, w)
        return masks

    @staticmethod
    def _check_frame(session: VideoSession, frame_idx: int) -> None:
        if not isinstance(frame_idx, (int, np.integer)) or not 0 <= frame_idx < session.num_frames:
            raise IndexError(f"Frame index {frame_idx} is outside the video (0 to {session.num_frames - 1}).")


def _lined_up(plans: list[MemoryPlan]) -> list[list[int]]:
    """Group objects whose memories have the same layout (memory t_pos and pointer offsets),
    which is what batching them needs -> lists of indices into `plans`."""
    groups: dict[tuple, list[int]] = {}
    for i, (memories, pointers) in enumerate(plans):
        layout = (tuple(m.t_pos for m in memories), tuple(p.offset for p in pointers))
        groups.setdefault(layout, []).append(i)
    return list(groups.values())


def _stack_plans(plans: list[MemoryPlan]) -> MemoryPlan:
    """Lined-up plans of B objects -> one plan with batch B."""
    first_memories, first_pointers = plans[0]
    memories = [
        MemoryItem(torch.cat([plan[0][j].features for plan in plans]), item.t_pos)
        for j, item in enumerate(first_memories)
    ]
    pointers = [
        PointerItem(torch.cat([plan[1][j].pointer for plan in plans]), item.offset)
        for j, item in enumerate(first_pointers)
    ]
    return memories, pointers


def _clear_frame(track: ObjectTrack, frame_idx: int) -> None:
    track.points.pop(frame_idx, None)
    track.masks.pop(frame_idx, None)
    track.pending.pop(frame_idx, None)
    out = track.cond.pop(frame_idx, None)
    if out is not None:
        # No longer prompted: keep the result as an ordinary tracked frame's memory.
        track.non_cond[frame_idx] = dataclasses.replace(out, is_cond=False)
        track.tracked.pop(frame_idx, None)


def _points_tensor(points, labels, box, clear_old_points: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate prompts -> coords (N, 2) float32 and labels (N,) int32, box corners first."""
    if (points is None) != (labels is None):
        raise ValueError("Points and labels must be given together (one label per point).")
    if points is None and box is None:
        raise ValueError("Give at least one point or a box.")
    coords = (torch.zeros(0, 2) if points is None
              else torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2))
    point_labels = (torch.zeros(0, dtype=torch.int32) if labels is None
                    else torch.as_tensor(np.asarray(labels, dtype=np.int32)).reshape(-1))
    if coords.shape[0] != point_labels.shape[0]:
        raise ValueError(f"Got {coords.shape[0]} points but {point_labels.shape[0]} labels.")
    if not torch.isin(point_labels, torch.tensor([0, 1], dtype=torch.int32)).all():
        raise ValueError("Point labels must be 1 (positive) or 0 (negative).")
    if box is not None:
        if not clear_old_points:
            raise ValueError("A box must come first: add it with clear_old_points=True (the default).")
        corners = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(2, 2)
        coords = torch.cat([corners, coords])
        point_labels = torch.cat([torch.tensor([2, 3], dtype=torch.int32), point_labels])
    if not torch.isfinite(coords).all():
        raise ValueError("Point and box coordinates must be finite numbers.")
    return coords, point_labels
