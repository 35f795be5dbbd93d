"""Attention layers: SAM's projected multi-head attention, its rotary (RoPE) variant used
by memory attention, and the two-way transformer of the mask decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .position_encoding import apply_rope, axial_rope_frequencies


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections to `dim // downsample_rate`."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal = dim // downsample_rate
        kv_in_dim = kv_in_dim or dim
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(kv_in_dim, internal)
        self.v_proj = nn.Linear(kv_in_dim, internal)
        self.out_proj = nn.Linear(internal, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _project(self, q, k, v) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C_kv) -> (B, Nq, C)."""
        return self._attend(*self._project(q, k, v))


class RoPEAttention(Attention):
    """Attention with 2D axial rotary encodings on a square feature grid.

    Keys may hold several frames' grids back to back (the rotations repeat per frame) and
    end with `num_k_exclude_rope` tokens (object pointers) that are not rotated.
    """

    def __init__(self, dim: int, num_heads: int, kv_in_dim: int | None = None, theta: float = 10000.0) -> None:
        super().__init__(dim, num_heads, kv_in_dim=kv_in_dim)
        self.theta = theta
        self._freqs: dict[tuple, torch.Tensor] = {}

    def _frequencies(self, num_tokens: int, head_dim: int, device: torch.device) -> torch.Tensor:
        key = (num_tokens, head_dim, device)
        if key not in self._freqs:
            side = int(round(num_tokens**0.5))
            self._freqs[key] = axial_rope_frequencies(head_dim, side, side, self.theta).to(device)
        return self._freqs[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        q, k, v = self._project(q, k, v)
        freqs = self._frequencies(q.shape[-2], q.shape[-1], q.device)
        q = apply_rope(q, freqs)
        num_rope = k.shape[-2] - num_k_exclude_rope
        k = torch.cat([apply_rope(k[:, :, :num_rope], freqs), k[:, :, num_rope:]], dim=2)
        return self._attend(q, k, v)


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves and to the image, then the image attends to the tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            # The first layer replaces the tokens (no residual): they carry their own encoding.
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, skip_first_layer_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        """image and image_pe (B, C, H, W), tokens (B, N, C) -> tokens (B, N, C), image (B, HW, C)."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys
