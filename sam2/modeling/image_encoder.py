"""Image encoder: Hiera trunk + FPN neck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, NeckConfig
from ..kernels import KernelChooser
from .hiera import Hiera
from .position_encoding import SinePositionEncoding


class _Lateral(nn.Module):
    """A 1x1 conv under the key `conv` (as in the official checkpoint)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Projects every trunk level to d_model; coarse levels flow top-down into the
    levels listed in `fpn_top_down_levels`. Returns features and sine position encodings,
    finest first."""

    def __init__(self, config: NeckConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(_Lateral(c, config.d_model) for c in config.backbone_channel_list)
        self.position_encoding = SinePositionEncoding(config.d_model)

    def forward(self, trunk_levels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs) - 1
        features: list[torch.Tensor] = [None] * (n + 1)  # type: ignore[list-item]
        previous = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self.convs[n - i](trunk_levels[i])
            if i in self.config.fpn_top_down_levels and previous is not None:
                mode = self.config.fpn_interp_model
                top_down = F.interpolate(
                    previous.float(), scale_factor=2.0, mode=mode,
                    align_corners=None if mode == "nearest" else False,
                )
                previous = lateral + top_down
            else:
                previous = lateral
            features[i] = previous
        positions = [self.position_encoding(f) for f in features]
        return features, positions


class ImageEncoder(nn.Module):
    def __init__(self, config: ModelConfig, kernels: KernelChooser | None = None) -> None:
        """kernels: the model's attention-kernel chooser (None: always PyTorch's fused kernel)."""
        super().__init__()
        self.trunk = Hiera(config.trunk, kernels)
        self.neck = FpnNeck(config.neck)
        self.scalp = config.neck.scalp

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """images (B, 3, S, S) -> (features, position encodings), finest first, the
        `scalp` coarsest levels dropped (three levels at strides 4, 8, 16 for SAM 2)."""
        features, positions = self.neck(self.trunk(images))
        if self.scalp > 0:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return features, positions
