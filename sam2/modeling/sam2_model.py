"""SAM 2 as a set of stateless steps.

Nothing here remembers anything between calls: the caller passes the memories a frame
should attend to (see `sam2.memory_bank`) and stores what comes back (see `sam2.session`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..kernels import KernelChooser
from ..kernels import resolve as resolve_kernels
from .common import MLP
from .image_encoder import ImageEncoder
from .mask_decoder import DecoderOutput, MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .position_encoding import sine_encoding_1d
from .prompt_encoder import PAD_LABEL, PromptEncoder

NO_OBJ_SCORE = -1024.0  # mask logit of "object absent"


@dataclass
class ImageFeatures:
    """Backbone output for B frames (or one frame expanded to B objects)."""

    image_embed: torch.Tensor  # (B, C, h, w), stride 16
    image_pos: torch.Tensor  # (B, C, h, w)
    high_res: tuple[torch.Tensor, torch.Tensor]  # (B, C/8, 4h, 4w), (B, C/4, 2h, 2w), projected

    def expand(self, batch: int) -> ImageFeatures:
        return ImageFeatures(
            self.image_embed.expand(batch, -1, -1, -1),
            self.image_pos.expand(batch, -1, -1, -1),
            tuple(f.expand(batch, -1, -1, -1) for f in self.high_res),  # type: ignore[arg-type]
        )


@dataclass
class Points:
    """Point prompts in model-input pixels; box corners are points with labels 2 and 3."""

    coords: torch.Tensor  # (B, N, 2) float, (x, y)
    labels: torch.Tensor  # (B, N) int: 1 positive, 0 negative, 2/3 box corners


@dataclass
class MaskPrediction:
    """One frame's prediction for B objects."""

    low_res_masks: torch.Tensor  # (B, 1, 4h, 4w) logits of the chosen mask
    high_res_masks: torch.Tensor  # (B, 1, S, S)
    low_res_multimasks: torch.Tensor  # (B, M, 4h, 4w) all candidates
    ious: torch.Tensor  # (B, M)
    obj_ptr: torch.Tensor  # (B, C) object pointer
    object_score_logits: torch.Tensor  # (B, 1)


@dataclass
class MemoryItem:
    """A past frame's memory as seen from the current frame."""

    features: torch.Tensor  # (B, mem_dim, h, w)
    t_pos: int  # 0 for conditioning frames, else num_maskmem - frames back


@dataclass
class PointerItem:
    pointer: torch.Tensor  # (B, C)
    offset: int  # temporal offset from the current frame (signed in SAM 2.1)


class SAM2Model(nn.Module):
    def __init__(self, config: ModelConfig, kernels: str | KernelChooser | None = None) -> None:
        """kernels: how large attentions pick their kernel, a policy ("measure", the default,
        "fused" or "blockwise") or a chooser to share (see sam2.kernels)."""
        super().__init__()
        self.config = config
        self.kernels = resolve_kernels(kernels)
        c, mem = config.hidden_dim, config.mem_dim
        self.image_encoder = ImageEncoder(config, self.kernels)
        self.memory_attention = MemoryAttention(config, self.kernels)
        self.memory_encoder = MemoryEncoder(config)
        self.sam_prompt_encoder = PromptEncoder(c, config.image_size, config.feat_size)
        self.sam_mask_decoder = MaskDecoder(config)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))
        # Turns a full-size mask prompt into a low-res mask logit map for the decoder.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        if config.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(c, mem)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    def at_image_size(self, image_size: int) -> SAM2Model:
        """The same model for another input size (512, 768 or 1024), sharing every weight
        tensor with this one (no copy): no parameter's shape depends on the size, only the
        position encodings computed from it. The kernel chooser is shared too."""
        if image_size == self.config.image_size:
            return self
        resized = SAM2Model(self.config.with_image_size(image_size), self.kernels)
        resized.load_state_dict(self.state_dict(), strict=True, assign=True)
        return resized.eval()

    # ---------------------------------------------------------------- image
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """images (B, 3, S, S), normalised -> features at strides 16, 8 and 4."""
        features, position = self.image_encoder(images)
        decoder = self.sam_mask_decoder
        # Project the two high-res levels once per frame rather than on every click.
        high_res = (decoder.conv_s0(features[0]), decoder.conv_s1(features[1]))
        return ImageFeatures(features[-1], position, high_res)

    # ---------------------------------------------------------------- prompts -> masks
    def use_multimask(self, num_points: int) -> bool:
        """SAM 2 asks for 3 candidates when a frame has at most one point (incl. tracking)."""
        return self.config.multimask_min_pt_num <= num_points <= self.config.multimask_max_pt_num

    def predict_masks(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        points: Points | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder on features pix_feat (B, C, h, w), raw outputs.

        mask_input: (B, 1, H, W) logits, resized to the decoder's mask-input size if needed.
        Without points, a single padding point stands in (the decoder needs a token).
        """
        b = pix_feat.shape[0]
        if points is None:
            labels = torch.full((b, 1), PAD_LABEL, dtype=torch.int32, device=pix_feat.device)
            points = Points(pix_feat.new_zeros(b, 1, 2), labels)
        prompt_encoder = self.sam_prompt_encoder
        if mask_input is not None and mask_input.shape[-2:] != prompt_encoder.mask_input_size:
            mask_input = F.interpolate(
                mask_input.float(), size=prompt_encoder.mask_input_size, mode="bilinear",
                align_corners=False, antialias=True,
            )
        sparse, dense = prompt_encoder(points.coords, points.labels, mask_input)
        return self.sam_mask_decoder(pix_feat, prompt_encoder.dense_pe(), sparse, dense, high_res, multimask)

    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        points: Points | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> MaskPrediction:
        """`predict_masks`, then the video model's choices: absent objects get empty masks,
        the best candidate is picked, and an object pointer is made from its token."""
        b = pix_feat.shape[0]
        out = self.predict_masks(pix_feat, high_res, points, mask_input, multimask)
        present = out.object_score_logits > 0
        # Masks of absent objects are forced empty, so memories agree with the object score.
        multimasks = torch.where(present[:, None, None], out.masks, NO_OBJ_SCORE).float()
        best = torch.zeros(b, dtype=torch.long, device=pix_feat.device)
        if multimask:
            best = out.iou_scores.argmax(dim=-1)
        batch = torch.arange(b, device=pix_feat.device)
        low_res = multimasks[batch, best].unsqueeze(1)
        token = out.tokens[batch, best] if out.tokens.shape[1] > 1 else out.tokens[:, 0]

        obj_ptr = self.obj_ptr_proj(token)
        present_f = present.float()
        obj_ptr = present_f * obj_ptr + (1 - present_f) * self.no_obj_ptr
        return MaskPrediction(
            low_res_masks=low_res,
            high_res_masks=self.upsample_to_input(low_res),
            low_res_multimasks=multimasks,
            ious=out.iou_scores,
            obj_ptr=obj_ptr,
            object_score_logits=out.object_score_logits,
        )

    def mask_as_output(self, features: ImageFeatures, mask: torch.Tensor) -> MaskPrediction:
        """Take a binary mask prompt (B, 1, S, S) as the prediction itself (logits +-10).

        The decoder still runs, with the mask as its only prompt, to make an object pointer.
        """
        mask = mask.float()
        high_res = mask * 20.0 - 10.0
        size = (high_res.shape[-2] // 4, high_res.shape[-1] // 4)
        low_res = F.interpolate(high_res, size=size, mode="bilinear", align_corners=False, antialias=True)
        decoded = self.decode(
            features.image_embed, features.high_res, None, self.mask_downsample(mask), multimask=False
        )
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_ptr = present * decoded.obj_ptr + (1 - present) * self.no_obj_ptr
        return MaskPrediction(
            low_res_masks=low_res,
            high_res_masks=high_res,
            low_res_multimasks=low_res,
            ious=mask.new_ones(mask.shape[0], 1),
            obj_ptr=obj_ptr,
            object_score_logits=present * 20.0 - 10.0,
        )

    def upsample_to_input(self, low_res: torch.Tensor) -> torch.Tensor:
        size = (self.config.image_size, self.config.image_size)
        return F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)

    # ---------------------------------------------------------------- memory
    def condition_on_memory(
        self,
        features: ImageFeatures,
        memories: list[MemoryItem] | None,
        pointers: list[PointerItem],
        num_frames: int,
    ) -> torch.Tensor:
        """Fuse the frame's features with its memories -> (B, C, h, w).

        B objects are attended at once when their memories line up (the same `t_pos` and
        pointer offsets, stacked along the batch); `features` may then have batch 1.
        `memories=None` marks a frame prompted with no memory (an initial conditioning frame).
        """
        embed = features.image_embed
        _, c, h, w = embed.shape
        if memories is None:
            return embed + self.no_mem_embed.view(1, c, 1, 1)
        b = memories[0].features.shape[0] if memories else embed.shape[0]

        memory, memory_pos = [], []
        for item in memories:
            feats = item.features.float()
            memory.append(feats.flatten(2).transpose(1, 2))
            pos = self.memory_encoder.position_encoding(feats).flatten(2).transpose(1, 2)
            memory_pos.append(pos + self.maskmem_tpos_enc[self.config.num_maskmem - item.t_pos - 1].view(1, 1, -1))
        num_pointer_tokens = 0
        if pointers:
            tokens, pos = self._pointer_tokens(pointers, num_frames, b)
            memory.append(tokens)
            memory_pos.append(pos)
            num_pointer_tokens = tokens.shape[1]

        out = self.memory_attention(
            curr=embed.flatten(2).transpose(1, 2),
            curr_pos=features.image_pos.flatten(2).transpose(1, 2),
            memory=torch.cat(memory, dim=1),
            memory_pos=torch.cat(memory_pos, dim=1),
            num_pointer_tokens=num_pointer_tokens,
        )
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _pointer_tokens(self, pointers: list[PointerItem], num_frames: int, batch: int):
        """Object pointers (C = 4 * mem_dim) split into 4 tokens each, with temporal encodings
        -> tokens and positions (B, 4P, mem_dim)."""
        cfg = self.config
        ptrs = torch.stack([p.pointer for p in pointers], dim=1)  # (B, P, C)
        p, c, mem = ptrs.shape[1], cfg.hidden_dim, cfg.mem_dim
        if cfg.add_tpos_enc_to_obj_ptrs:
            t_diff_max = max(min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1, 1)
            offsets = torch.tensor([x.offset for x in pointers], device=ptrs.device, dtype=torch.float32)
            dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mem
            pos = sine_encoding_1d(offsets / t_diff_max, dim)
            if cfg.proj_tpos_enc_in_obj_ptrs:
                pos = self.obj_ptr_tpos_proj(pos)
        else:
            pos = ptrs.new_zeros(p, mem)
        split = c // mem
        tokens = ptrs.reshape(batch, p * split, mem)  # pointer i -> tokens 4i..4i+3
        pos = pos.repeat_interleave(split, dim=0).unsqueeze(0).expand(batch, -1, -1)
        return tokens, pos

    def encode_memory(
        self,
        features: ImageFeatures,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: bool,
    ) -> torch.Tensor:
        """Encode a frame's predicted masks (B, 1, S, S) logits into memory (B, mem_dim, h, w)."""
        cfg = self.config
        if binarize and cfg.binarize_mask_from_pts_for_mem_enc:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        memory, _ = self.memory_encoder(features.image_embed, mask)
        if cfg.no_obj_embed_spatial:
            absent = (object_score_logits <= 0).float()[..., None, None]  # (B, 1, 1, 1)
            memory = memory + absent * self.no_obj_embed_spatial.view(1, -1, 1, 1)
        return memory
