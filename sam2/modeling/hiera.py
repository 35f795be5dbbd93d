"""Hiera trunk: a hierarchical vision transformer with windowed and global attention.

Tokens are kept as (B, H, W, C) images. At the first block of each later stage the queries
are max-pooled 2x2, halving the resolution while the channel width doubles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HieraConfig
from ..kernels import KernelChooser
from .attention import attention
from .common import MLP


def _pool(x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
    """Max-pool a (B, H, W, C) tensor spatially."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to a multiple."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(x: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`, dropping the padding -> (B, H, W, C)."""
    hp, wp = padded
    b = x.shape[0] // (hp * wp // window // window)
    x = x.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : size[0], : size[1], :].contiguous()


class PatchEmbed(nn.Module):
    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            3, config.embed_dim, config.patch_kernel, config.patch_stride, config.patch_padding
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H, W, C)


class MultiScaleAttention(nn.Module):
    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None,
        kernels: KernelChooser | None = None, kind: str | None = None,
    ) -> None:
        """kernels and kind: the model's kernel chooser and this attention's shape class
        ("global" for a global block; windows are small and always fused)."""
        super().__init__()
        self.num_heads = num_heads
        self.kernels, self.kind = kernels, kind
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.kernels, self.kind)
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(
        self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float,
        q_stride: tuple[int, int] | None, window_size: int, kernels: KernelChooser | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out, self.window_size = dim, dim_out, window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride) if q_stride else None
        self.q_stride = q_stride
        kind = "global" if window_size == 0 else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool, kernels=kernels, kind=kind)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(self.proj(x), self.pool)

        window = self.window_size
        if window > 0:
            size = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if window > 0:
            if self.q_stride:
                # Pooling shrank every window, so the grid is rebuilt at the pooled size.
                window = window // self.q_stride[0]
                size = (shortcut.shape[1], shortcut.shape[2])
                padded = tuple(s + (window - s % window) % window for s in size)
            x = window_unpartition(x, window, padded, size)

        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Returns one (B, C_i, H_i, W_i) feature map per stage, finest first."""

    def __init__(self, config: HieraConfig, kernels: KernelChooser | None = None) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        dim = config.embed_dim
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *config.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, dim, config.window_spec[0], config.window_spec[0]))

        ends, total = [], 0
        for n in config.stages:
            total += n
            ends.append(total - 1)
        self.stage_ends = tuple(ends)
        q_pool_blocks = {end + 1 for end in ends[:-1][: config.q_pool]}

        self.blocks = nn.ModuleList()
        heads, stage = config.num_heads, 0
        for i in range(total):
            dim_out = dim
            # A stage's first block still uses the previous stage's window size.
            window = 0 if i in config.global_att_blocks else config.window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out = int(dim * config.dim_mul)
                heads = int(heads * config.head_mul)
                stage += 1
            q_stride = config.q_stride if i in q_pool_blocks else None
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, config.mlp_ratio, q_stride, window, kernels))
            dim = dim_out

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """Background embedding resized to the grid plus the tiled window embedding -> (1, H, W, C)."""
        pos = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile([1, 1, height // window.shape[-2], width // window.shape[-1]])
        return pos.permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(images)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
