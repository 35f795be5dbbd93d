"""Mask decoder: a two-way transformer over prompt tokens and image features, then
hypernetwork heads that turn 4 mask tokens into mask logits, plus IoU and object-score heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .attention import TwoWayTransformer
from .common import MLP, LayerNorm2d


@dataclass
class DecoderOutput:
    masks: torch.Tensor  # (B, M, 4h, 4w) logits; M = 3 with multimask output, else 1
    iou_scores: torch.Tensor  # (B, M)
    tokens: torch.Tensor  # (B, M', C) output tokens used for object pointers
    object_score_logits: torch.Tensor  # (B, 1): > 0 means the object is present


class MaskDecoder(nn.Module):
    num_mask_tokens = 4  # one single-mask token, then three multimask tokens

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.config = config
        self.transformer = TwoWayTransformer(depth=2, dim=dim, num_heads=8, mlp_dim=2048)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
        multimask_output: bool,
    ) -> DecoderOutput:
        """image_embeddings (B, C, h, w) (one per prompt set), image_pe (1, C, h, w),
        sparse (B, N, C), dense (B, C, h, w), high_res_features ((B, C/8, 4h, 4w), (B, C/4, 2h, 2w))."""
        masks, iou, mask_tokens, object_score_logits = self._predict(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features
        )
        if multimask_output:
            return DecoderOutput(masks[:, 1:], iou[:, 1:], mask_tokens[:, 1:], object_score_logits)
        # The single-mask token always makes the object pointer, even when the stability
        # check below falls back to a multimask mask (that is how SAM 2 was trained).
        tokens = mask_tokens[:, 0:1]
        if self.config.dynamic_multimask_via_stability:
            masks, iou = self._fall_back_when_unstable(masks, iou)
        else:
            masks, iou = masks[:, 0:1], iou[:, 0:1]
        return DecoderOutput(masks, iou, tokens, object_score_logits)

    def _predict(self, image, image_pe, sparse, dense, high_res_features):
        b = sparse.shape[0]
        output_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        src = image + dense
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos, tokens)
        object_token, iou_token = hs[:, 0], hs[:, 1]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act1(norm1(deconv1(src) + feat_s1))
        upscaled = act2(deconv2(upscaled) + feat_s0)

        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, uc, uh, uw = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, uc, uh * uw)).reshape(b, -1, uh, uw)
        return masks, self.iou_prediction_head(iou_token), mask_tokens, self.pred_obj_score_head(object_token)

    def _stability(self, logits: torch.Tensor) -> torch.Tensor:
        """Ratio of the mask's area at +delta and -delta thresholds; 1 for an empty mask."""
        delta = self.config.dynamic_multimask_stability_delta
        logits = logits.flatten(-2)
        inner = (logits > delta).sum(-1).float()
        outer = (logits > -delta).sum(-1).float()
        return torch.where(outer > 0, inner / outer, torch.ones_like(outer))

    def _fall_back_when_unstable(self, masks: torch.Tensor, iou: torch.Tensor):
        """Keep the single-mask output if it is stable, else the best-scoring multimask output."""
        batch = torch.arange(masks.shape[0], device=masks.device)
        best = iou[:, 1:].argmax(dim=-1) + 1
        stable = self._stability(masks[:, 0:1]) >= self.config.dynamic_multimask_stability_thresh
        out_masks = torch.where(stable[..., None, None], masks[:, 0:1], masks[batch, best].unsqueeze(1))
        out_iou = torch.where(stable, iou[:, 0:1], iou[batch, best].unsqueeze(1))
        return out_masks, out_iou
