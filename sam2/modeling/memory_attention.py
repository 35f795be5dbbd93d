"""Memory attention: the current frame's features attend to themselves and to the memory
bank (past masks' memory maps and object pointers), with rotary position encodings."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..kernels import KernelChooser
from .attention import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    def __init__(
        self, dim: int, mem_dim: int, ffn_dim: int, theta: float, kernels: KernelChooser | None = None
    ) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(dim, num_heads=1, theta=theta, kernels=kernels, kind="self")
        self.cross_attn_image = RoPEAttention(
            dim, num_heads=1, kv_in_dim=mem_dim, theta=theta, kernels=kernels, kind="cross"
        )
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.activation = nn.ReLU(inplace=True)  # on linear1's fresh output: no second 32 MB tensor

    def attend_self(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        return x + self.self_attn(y, y, y)

    def attend_memory(
        self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, num_pointer_tokens: int
    ) -> torch.Tensor:
        """Cross-attention to the memories, then the feed-forward block."""
        # Keys carry the memories' position encodings; the queries do not (SAM 2's settings).
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, num_k_exclude_rope=num_pointer_tokens)
        y = self.norm3(x)
        return x + self.linear2(self.activation(self.linear1(y)))


class MemoryAttention(nn.Module):
    def __init__(self, config: ModelConfig, kernels: KernelChooser | None = None) -> None:
        """kernels: the model's attention-kernel chooser (None: always PyTorch's fused kernel)."""
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(
                config.hidden_dim, config.mem_dim, config.memory_attention_ffn_dim, config.rope_theta, kernels
            )
            for _ in range(config.memory_attention_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_dim)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_pointer_tokens: int = 0,
    ) -> torch.Tensor:
        """curr, curr_pos (1 or B, HW, C); memory, memory_pos (B, M, mem_dim) with the
        `num_pointer_tokens` object-pointer tokens last -> (B, HW, C).

        B objects on one frame share its features (curr with batch 1): the first
        self-attention, which sees no memory yet, then runs once for all of them.
        """
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer.attend_self(x)
            x = layer.attend_memory(x.expand(memory.shape[0], -1, -1), memory, memory_pos, num_pointer_tokens)
        return self.norm(x)
