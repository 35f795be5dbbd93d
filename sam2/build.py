"""Building models and predictors from a variant name and an official checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from .automatic_mask_generator import SAM2AutomaticMaskGenerator
from .checkpoint import detect_variant, load_weights, read_state_dict
from .config import ModelConfig, get_config, resolve_variant
from .image_predictor import SAM2ImagePredictor
from .kernels import KernelChooser
from .modeling.sam2_model import SAM2Model
from .video_predictor import SAM2VideoPredictor

CheckpointSource = str | Path | Mapping[str, torch.Tensor]
# How large attentions pick their kernel: "measure" (timed here, at first use), "fused" or
# "blockwise" (pinned: the same masks in every process), or a chooser to share (sam2.kernels).
Kernels = str | KernelChooser


def build_model(
    config: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    kernels: Kernels = "measure",
) -> SAM2Model:
    """An uninitialised model (weights come from a checkpoint), in eval mode."""
    return SAM2Model(config, kernels).to(device=device, dtype=dtype).eval()


def load_model(
    variant: str | None,
    checkpoint: CheckpointSource,
    *,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    postprocessing: bool = True,
    kernels: Kernels = "measure",
) -> SAM2Model:
    """Read the checkpoint (a path to an official `.pt`, or a state dict), check that it
    matches the variant (detected from its keys when `variant` is None) and load it strictly."""
    state_dict = dict(checkpoint) if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint)
    variant = resolve_variant(variant) if variant else detect_variant(state_dict)
    model = SAM2Model(get_config(variant, image_size=image_size, postprocessing=postprocessing), kernels)
    load_weights(model, state_dict, variant, source=None if isinstance(checkpoint, Mapping) else checkpoint)
    return model.to(device).eval()


def build_video_predictor(
    variant: str | None,
    checkpoint: CheckpointSource,
    *,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    postprocessing: bool = True,
    kernels: Kernels = "measure",
    **predictor_options,
) -> SAM2VideoPredictor:
    """A `SAM2VideoPredictor` (Meta's API) for e.g. ('sam2.1_hiera_t', 'sam2.1_hiera_tiny.pt')."""
    model = load_model(
        variant, checkpoint, image_size=image_size, device=device, postprocessing=postprocessing, kernels=kernels
    )
    return SAM2VideoPredictor(model, **predictor_options)


def build_image_predictor(
    variant: str | None,
    checkpoint: CheckpointSource,
    *,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    postprocessing: bool = True,
    kernels: Kernels = "measure",
    **predictor_options,
) -> SAM2ImagePredictor:
    """A `SAM2ImagePredictor` (Meta's API)."""
    model = load_model(
        variant, checkpoint, image_size=image_size, device=device, postprocessing=postprocessing, kernels=kernels
    )
    return SAM2ImagePredictor(model, **predictor_options)


def build_automatic_mask_generator(
    variant: str | None,
    checkpoint: CheckpointSource,
    image_size: int = 1024,
    device: str | torch.device = "cpu",
    *,
    postprocessing: bool = False,
    kernels: Kernels = "measure",
    **generator_options,
) -> SAM2AutomaticMaskGenerator:
    """A `SAM2AutomaticMaskGenerator` (Meta's API); `generator_options` are its parameters
    (points_per_side, pred_iou_thresh, ..., precision). Like Meta's examples, the model is
    built without the builders' postprocessing (no single-mask fallback to multimask)."""
    model = load_model(
        variant, checkpoint, image_size=image_size, device=device, postprocessing=postprocessing, kernels=kernels
    )
    return SAM2AutomaticMaskGenerator(model, **generator_options)
