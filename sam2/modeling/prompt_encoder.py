"""Prompt encoder: points (labels 1/0, box corners 2/3, padding -1) become sparse tokens,
a low-res mask logit map becomes a dense embedding."""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import RandomFourierEncoding

PAD_LABEL = -1


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, image_size: int, feat_size: int, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = (image_size, image_size)
        self.image_embedding_size = (feat_size, feat_size)
        self.mask_input_size = (4 * feat_size, 4 * feat_size)
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # 0: negative click, 1: positive click, 2 / 3: box top-left / bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        """Position encoding of the image-embedding grid -> (1, C, h, w)."""
        return self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) in model-input pixels, labels (B, N) -> (B, N + 1, C).

        A padding point is always appended (SAM 2 passes boxes as points, never separately).
        """
        b = coords.shape[0]
        coords = torch.cat([coords + 0.5, coords.new_zeros(b, 1, 2)], dim=1)  # pixel centres
        labels = torch.cat([labels, labels.new_full((b, 1), PAD_LABEL)], dim=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        emb = torch.where((labels == PAD_LABEL)[..., None], self.not_a_point_embed.weight, emb)
        for label, table in enumerate(self.point_embeddings):
            emb = emb + (labels == label)[..., None] * table.weight
        return emb

    def forward(
        self, coords: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> sparse (B, N + 1, C), dense (B, C, h, w). masks: (B, 1, 4h, 4w) logits or None."""
        sparse = self.embed_points(coords, labels)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(coords.shape[0], -1, h, w)
        return sparse, dense
