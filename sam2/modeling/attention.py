"""Attention layers: SAM's projected multi-head attention, its rotary (RoPE) variant used
by memory attention, and the two-way transformer of the mask decoder."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import KernelChooser
from .common import MLP
from .position_encoding import apply_rope, axial_rope_frequencies

# Scores computed at once: 32M elements (128 MB in float32). Memory attention then takes
# about 1,000 query rows against 7 frames of memory, which keeps the query-key product near
# the CPU's matrix-multiply peak; fewer rows lose more there than the smaller block gains.
_BLOCK_SCORES = 1 << 25


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernels: KernelChooser | None = None, kind: str | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v for q (..., Nq, D), k (..., Nk, D), v (..., Nk, Dv).

    With a chooser and a shape class (`kind`, see sam2.kernels) the chooser runs PyTorch's
    fused kernel or `blockwise_attention`, whichever it measured faster here; without, the
    fused kernel (small attentions: windows, the mask decoder).
    """
    fused = lambda: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    if kernels is None or kind is None:
        return fused()
    return kernels.run(kind, q, k, {"fused": fused, "blockwise": lambda: blockwise_attention(q, k, v)})


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same as `attention`, as matrix product, softmax, matrix product per block of
    query rows.

    Why another kernel: PyTorch's fused CPU kernel is slow with values narrower than the keys,
    which `RoPEAttention` uses, and on some CPUs computes bfloat16 inputs no faster than
    float32. Memory attention (4096 queries x 28,736 keys x 256 channels, 64-channel values,
    2-core AMD EPYC, AVX-512): 0.50 s here vs 0.86 s fused in float32, 0.25 s in bfloat16.
    On other CPUs (AMX) the fused kernel wins: `sam2.kernels` measures which to use.
    The softmax runs in place, one row at a time while the row is in cache; the score
    buffer is reused, so no block pays for fresh pages.
    Under autocast the products run in the autocast dtype, like every other matmul.
    """
    device_type = q.device.type
    autocast = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if autocast else q.dtype
    *batch, nq, d = q.shape
    nk, dv = k.shape[-2], v.shape[-1]
    q = (q.float() * d**-0.5).to(dtype).reshape(-1, nq, d)
    # Score rows whose length is not a multiple of 16 elements run the products at two
    # thirds of the speed (28,700 keys: 120 vs 175 GFLOP/s), so the keys are padded with
    # zeros whose scores are set to -inf: they get exactly zero weight.
    padding = -nk % 16
    k, v = k.to(dtype).reshape(-1, nk, d), v.to(dtype).reshape(-1, nk, dv)
    if padding:
        k, v = F.pad(k, (0, 0, 0, padding)), F.pad(v, (0, 0, 0, padding))
    keys_t = k.transpose(1, 2)
    out = torch.empty(q.shape[0], nq, dv, dtype=dtype, device=q.device)
    # Blocks of equal size: a small last block would run its products below speed.
    num_blocks = -(-nq // max(1, _BLOCK_SCORES // (nk + padding)))
    rows = -(-nq // num_blocks)
    scores = torch.empty(rows, nk + padding, dtype=dtype, device=q.device)
    # Every operand already has its dtype; autocast does not take out= arguments.
    with torch.autocast(device_type, enabled=False) if autocast else contextlib.nullcontext():
        for b in range(q.shape[0]):
            for start in range(0, nq, rows):
                block = q[b, start : start + rows]
                s = torch.mm(block, keys_t[b], out=scores[: block.shape[0]])
                s[:, nk:] = -torch.inf
                torch.softmax(s, dim=-1, out=s)
                torch.mm(s, v[b], out=out[b, start : start + rows])
    return out.reshape(*batch, nq, dv)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections to `dim // downsample_rate`."""

    def __init__(
        self, dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None,
        kernels: KernelChooser | None = None,
    ) -> None:
        """kernels: the model's chooser for large attentions (None: always the fused kernel)."""
        super().__init__()
        self.num_heads = num_heads
        self.kernels = kernels
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

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """Heads (B, h, N, d) -> projected output (B, Nq, C); `kind` names the shape class
        for the kernel chooser."""
        return self._merge(attention(q, k, v, self.kernels, kind))

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        """Heads' outputs (B, h, N, d) -> projected (B, N, C)."""
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

    def __init__(
        self, dim: int, num_heads: int, kv_in_dim: int | None = None, theta: float = 10000.0,
        kernels: KernelChooser | None = None, kind: str | None = None,
    ) -> None:
        """kind: "self" or "cross", the shape class the kernel chooser keeps a choice for."""
        super().__init__(dim, num_heads, kv_in_dim=kv_in_dim, kernels=kernels)
        self.theta = theta
        self.kind = kind
        self._freqs: dict[tuple, torch.Tensor] = {}

    def _frequencies(self, num_tokens: int, head_dim: int, device: torch.device) -> torch.Tensor:
        key = (num_tokens, head_dim, device)
        if key not in self._freqs:
            side = int(round(num_tokens**0.5))
            self._freqs[key] = axial_rope_frequencies(head_dim, side, side, self.theta).to(device)
        return self._freqs[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C_kv) -> (B, Nq, C)."""
        q, k = self._heads(self.q_proj(q)), self._heads(self.k_proj(k))
        freqs = self._frequencies(q.shape[-2], q.shape[-1], q.device)
        q = apply_rope(q, freqs)
        k = apply_rope(k, freqs, num_tokens=k.shape[-2] - num_k_exclude_rope)
        fused = lambda: self._attend(q, k, self._heads(self.v_proj(v)))  # noqa: E731
        if self.kernels is None or self.kind is None:
            return fused()
        if self._values_after_attention(v):
            # Attention rows sum to one, so attending over the raw narrow values and
            # projecting afterwards equals projecting first: softmax(S)(V W^T + b) =
            # (softmax(S) V) W^T + b, with a quarter of the work in the second product.
            # PyTorch's fused kernel is slow with values narrower than the keys, so only
            # the blockwise kernel takes this way.
            blockwise = lambda: self.out_proj(self.v_proj(blockwise_attention(q, k, v[:, None])[:, 0]))  # noqa: E731
        else:
            blockwise = lambda: self._merge(blockwise_attention(q, k, self._heads(self.v_proj(v))))  # noqa: E731
        return self.kernels.run(self.kind, q, k, {"fused": fused, "blockwise": blockwise})

    def _values_after_attention(self, v: torch.Tensor) -> bool:
        """Memory attention's cross-attention: one head, values narrower than q."""
        return self.num_heads == 1 and v.shape[-1] < self.v_proj.out_features


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
