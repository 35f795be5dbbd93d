"""Image encoder: Hiera trunk + FPN neck."""

from __future__ import annotations

from collections.abc import Collection

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

    # The encodings are the same for every frame, so they are cached; only the levels asked
    # for are made, because SAM 2 uses one: at 1024 px the other three would hold 81 MB.

    def __init__(self, config: NeckConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(_Lateral(c, config.d_model) for c in config.backbone_channel_list)
        self.position_encoding = SinePositionEncoding(config.d_model)

    def forward(
        self, trunk_levels: list[torch.Tensor], position_levels: Collection[int] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """-> (features, position encodings), finest first; the encodings of levels not in
        `position_levels` (default: all) are None."""
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
        positions = [self.position_encoding(f) if position_levels is None or i in position_levels else None
                     for i, f in enumerate(features)]
        return features, positions


class ImageEncoder(nn.Module):
    def __init__(self, config: ModelConfig, kernels: KernelChooser | None = None) -> None:
        """kernels: the model's attention-kernel chooser (None: always PyTorch's fused kernel)."""
        super().__init__()
        self.trunk = Hiera(config.trunk, kernels)
        self.neck = FpnNeck(config.neck)
        self.scalp = config.neck.scalp

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """images (B, 3, S, S) -> (features, finest first, the `scalp` coarsest levels dropped
        (three levels at strides 4, 8, 16 for SAM 2), and the position encoding of the
        coarsest level kept, the only one SAM 2 uses)."""
        levels = len(self.neck.convs) - self.scalp
        features, positions = self.neck(self.trunk(images), position_levels=(levels - 1,))
        return features[:levels], positions[levels - 1]
