"""Tiny detectors with seeded random weights, built offline and saved as a user's folder
(``save_pretrained``): the real transformers architectures (Grounding DINO, MM Grounding DINO,
OWLv2) from small configs, with tokenizers made from vocabularies written here."""

from __future__ import annotations

import json
from pathlib import Path

import torch

GD_WORDS = ["person", "red", "car", "dog", "cat", "blue", "bike", "tree", "sky", "road", "box", "cup"]


def save_grounding_dino(folder: Path, kind: str = "grounding-dino") -> Path:
    """A (MM) Grounding DINO saved as from the hub: config, safetensors, processor and tokenizer files."""
    import transformers as tf
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *GD_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = tf.BertTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    settings = dict(
        backbone_config=tf.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                                      num_heads=[1, 1, 1, 1], window_size=4, out_indices=[2, 3, 4]),
        text_config=tf.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=30, max_text_len=32,
    )  # fmt: skip
    if kind == "grounding-dino":
        model = tf.GroundingDinoForObjectDetection(tf.GroundingDinoConfig(**settings))
    else:
        model = tf.MMGroundingDinoForObjectDetection(tf.MMGroundingDinoConfig(**settings))
    processor = tf.GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    model.eval().save_pretrained(folder)
    return folder


def save_owlv2(folder: Path) -> Path:
    """An OWLv2 with a CLIP tokenizer from a vocab.json and merges.txt written here."""
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    letters = "abcdefghijklmnopqrstuvwxyz"
    merged = ["ca", "car</w>", "re", "red</w>", "do", "dog</w>"]
    tokens = [*letters, *(c + "</w>" for c in letters), *merged, "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca r</w>\nr e\nre d</w>\nd o\ndo g</w>\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=16)
    torch.manual_seed(0)
    ends = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"]}  # fmt: skip
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, **ends),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=16,
    )  # fmt: skip
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": 64, "width": 64}),
                               tokenizer=tokenizer)
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
