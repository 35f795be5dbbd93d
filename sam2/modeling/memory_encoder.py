"""Memory encoder: fuses a frame's image features with its (scaled) mask into a 64-channel
memory map that later frames attend to."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from .common import LayerNorm2d
from .position_encoding import SinePositionEncoding


class MaskDownSampler(nn.Module):
    """Four stride-2 conv + LayerNorm2d + GELU stages (1 -> 4 -> 16 -> 64 -> 256 channels),
    then a 1x1 conv: a full-size mask becomes a feature map at stride 16."""

    def __init__(self, embed_dim: int = 256, total_stride: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(int(math.log2(total_stride))):
            out = channels * 4
            layers += [nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1), LayerNorm2d(out), nn.GELU()]
            channels = out
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.mask_downsampler = MaskDownSampler(dim, total_stride=config.backbone_stride)
        self.pix_feat_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.fuser = Fuser(dim, config.fuser_layers)
        self.out_proj = nn.Conv2d(dim, config.mem_dim, kernel_size=1)
        self.position_encoding = SinePositionEncoding(config.mem_dim)

    def forward(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat (B, C, h, w), mask (B, 1, S, S) already in memory scale (not logits)
        -> memory features (B, mem_dim, h, w) and their position encoding."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
