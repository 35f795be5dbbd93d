"""Position encodings: 2D sine (image features, memories), random Fourier (prompts),
axial rotary (memory attention) and 1D sine (object-pointer temporal distance)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_encoding_2d(
    batch: int, height: int, width: int, num_pos_feats: int, device: torch.device | None = None,
    temperature: float = 10000.0,
) -> torch.Tensor:
    """Normalised 2D sine encoding -> (B, num_pos_feats, H, W); the first half encodes y."""
    half = num_pos_feats // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(-1, 1).expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, -1).expand(height, width)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(half, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)

    def interleave(pos: torch.Tensor) -> torch.Tensor:
        pos = pos[..., None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    pos = torch.cat((interleave(y), interleave(x)), dim=-1).permute(2, 0, 1)
    return pos.unsqueeze(0).expand(batch, -1, -1, -1)


class SinePositionEncoding(nn.Module):
    """2D sine encoding of a feature map's grid (no parameters); cached per size."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[-2], x.shape[-1], x.device)
        if key not in self._cache:
            self._cache[key] = sine_position_encoding_2d(1, *key[:2], self.num_pos_feats, x.device)
        return self._cache[key].expand(x.shape[0], -1, -1, -1).to(x.dtype)


class RandomFourierEncoding(nn.Module):
    """Positional encoding with a fixed random Gaussian projection (SAM's prompt encoder)."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1], (..., 2) as (x, y) -> (..., 2 * num_pos_feats)."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Encoding of every cell centre of an H x W grid -> (C, H, W)."""
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones((height, width), device=device, dtype=torch.float32)
        y = (ones.cumsum(dim=0) - 0.5) / height
        x = (ones.cumsum(dim=1) - 0.5) / width
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Pixel coords (B, N, 2) in an image of (H, W) -> (B, N, C)."""
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self.encode(coords.float())


def axial_rope_frequencies(head_dim: int, width: int, height: int, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations for a W x H grid in row-major order -> (H*W, head_dim // 2).

    The first quarter of the head's channel pairs rotate with x, the second with y.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    t = torch.arange(width * height, dtype=torch.float32)
    t_x, t_y = t % width, torch.div(t, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
    """Rotate consecutive channel pairs of the first `num_tokens` tokens (default: all) of x
    (B, heads, N, D) by freqs (N', D/2); num_tokens = k*N' for k memory frames, whose rotations
    repeat. The tokens after them (object pointers) are not rotated.

    A float32 x is rotated in place and returned: memory keys are 29 MB per object at 1024 px,
    and a rotated copy joined to the pointer tokens held three times that at once. Other dtypes
    (autocast) are rotated in float32 into a new tensor of x's dtype.
    """
    n = x.shape[-2] if num_tokens is None else num_tokens
    if n == 0:
        return x
    rotated = x[..., :n, :]
    grid = (n // freqs.shape[0], freqs.shape[0])  # (frames, tokens per frame)
    if x.dtype == torch.float32:
        torch.view_as_complex(rotated.unflatten(-2, grid).unflatten(-1, (-1, 2))).mul_(freqs)
        return x
    pairs = torch.view_as_complex(rotated.float().unflatten(-2, grid).unflatten(-1, (-1, 2)))
    rotated = torch.view_as_real(pairs * freqs).flatten(-2).flatten(-3, -2).type_as(x)
    return rotated if n == x.shape[-2] else torch.cat([rotated, x[..., n:, :]], dim=-2)


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1D sine encoding of (N,) float positions -> (N, dim): [sin | cos] halves."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    pos = positions.unsqueeze(-1) / dim_t
    return torch.cat([pos.sin(), pos.cos()], dim=-1)
