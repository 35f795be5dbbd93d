"""SAM 2 and SAM 2.1, written from the paper's description and Meta's published facts.

Loads Meta's official checkpoints unchanged and offers the predictor API SAM 2 users know:

    import sam2
    predictor = sam2.build_video_predictor("sam2.1_hiera_t", "checkpoints/sam2.1_hiera_tiny.pt")
    state = predictor.init_state("video.mp4")
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[210, 350]], labels=[1])
    for frame_idx, obj_ids, mask_logits in predictor.propagate_in_video(state):
        ...
"""

from .build import build_image_predictor, build_model, build_video_predictor, load_model
from .config import VARIANTS, ModelConfig, get_config, resolve_variant

__all__ = [
    "VARIANTS",
    "ModelConfig",
    "build_image_predictor",
    "build_model",
    "build_video_predictor",
    "get_config",
    "load_model",
    "resolve_variant",
]
