"""Model configurations: one frozen dataclass tree per official SAM 2 / SAM 2.1 variant.

The numbers are the hyperparameters of Meta's published configs. Only what differs between
the eight variants is a field; settings shared by all of them (4 memory-attention layers,
7 memory slots, 16 object pointers, ...) are fields with those defaults so a reader sees them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SUPPORTED_IMAGE_SIZES = (512, 768, 1024)


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk (the image backbone)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3  # number of stage transitions that pool the queries
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    patch_kernel: int = 7
    patch_stride: int = 4
    patch_padding: int = 3
    mlp_ratio: float = 4.0

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channel width of each stage's output (coarse last)."""
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))


@dataclass(frozen=True)
class NeckConfig:
    """FPN neck on top of the trunk."""

    d_model: int = 256
    backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96)  # coarse to fine
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1  # drop this many of the coarsest levels


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one SAM 2 model."""

    name: str
    family: str  # "sam2" or "sam2.1"
    trunk: HieraConfig
    neck: NeckConfig = field(default_factory=NeckConfig)
    image_size: int = 1024
    backbone_stride: int = 16
    hidden_dim: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    fuser_layers: int = 2
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # SAM 2.1 additions: spatial no-object embedding and projected, signed temporal
    # encodings of object pointers.
    no_obj_embed_spatial: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    # Postprocessing (the official builders' defaults); see `with_postprocessing`.
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    binarize_mask_from_pts_for_mem_enc: bool = True
    fill_hole_area: int = 8

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution feature map (image_size / 16)."""
        return self.image_size // self.backbone_stride

    def with_image_size(self, image_size: int) -> ModelConfig:
        if image_size % 32 != 0 or image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        return dataclasses.replace(self, image_size=image_size)

    def with_postprocessing(self, enabled: bool) -> ModelConfig:
        """The official builders switch these on together (`apply_postprocessing`)."""
        return dataclasses.replace(
            self,
            dynamic_multimask_via_stability=enabled,
            binarize_mask_from_pts_for_mem_enc=enabled,
            fill_hole_area=8 if enabled else 0,
        )


_TRUNKS = {
    "t": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9)),
    "s": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    "b+": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "l": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
    ),
}

_LONG_SIZE_NAMES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


def _make_variant(family: str, size: str) -> ModelConfig:
    trunk = _TRUNKS[size]
    neck = NeckConfig(backbone_channel_list=tuple(reversed(trunk.stage_dims)))
    is_21 = family == "sam2.1"
    return ModelConfig(
        name=f"{family}_hiera_{size}",
        family=family,
        trunk=trunk,
        neck=neck,
        no_obj_embed_spatial=is_21,
        proj_tpos_enc_in_obj_ptrs=is_21,
        use_signed_tpos_enc_to_obj_ptrs=is_21,
        add_tpos_enc_to_obj_ptrs=is_21,
    )


VARIANTS: dict[str, ModelConfig] = {
    f"{family}_hiera_{size}": _make_variant(family, size)
    for family in ("sam2", "sam2.1")
    for size in ("t", "s", "b+", "l")
}

_ALIASES = {
    f"{family}_hiera_{long}": f"{family}_hiera_{short}"
    for family in ("sam2", "sam2.1")
    for short, long in _LONG_SIZE_NAMES.items()
}
_ALIASES.update({f"{family}_hiera_b": f"{family}_hiera_b+" for family in ("sam2", "sam2.1")})


def resolve_variant(name: str) -> str:
    """Canonical variant name ('sam2.1_hiera_t') for a short or long name ('sam2.1_hiera_tiny')."""
    key = name.strip().lower().removesuffix(".pt").removesuffix(".yaml")
    key = _ALIASES.get(key, key)
    if key not in VARIANTS:
        known = ", ".join(list(VARIANTS) + sorted(_ALIASES))
        raise ValueError(f"Unknown SAM 2 variant {name!r}. Known names: {known}")
    return key


def long_name(variant: str) -> str:
    """'sam2.1_hiera_t' -> 'sam2.1_hiera_tiny' (the official checkpoint file stem)."""
    family, _, size = resolve_variant(variant).rpartition("_hiera_")
    return f"{family}_hiera_{_LONG_SIZE_NAMES[size]}"


def get_config(variant: str, image_size: int | None = None, postprocessing: bool = True) -> ModelConfig:
    config = VARIANTS[resolve_variant(variant)].with_postprocessing(postprocessing)
    if image_size is not None:
        config = config.with_image_size(image_size)
    return config
