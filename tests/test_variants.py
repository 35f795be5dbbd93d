"""Every official variant builds with exactly the official checkpoint's keys and shapes,
and checkpoints load (or fail clearly) through the public builders."""

from __future__ import annotations

import pytest
import torch

import sam2
from sam2.checkpoint import CheckpointError
from sam2.config import VARIANTS, get_config, long_name, resolve_variant
from sam2.modeling.sam2_model import SAM2Model
from tests.reference import manifests, reference_state_dict, write_reference_checkpoint


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_matches_official_manifest(variant):
    with torch.device("meta"):
        model = SAM2Model(get_config(variant))
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = manifests()[variant]
    assert dict(ours) == dict(expected)
    assert len(ours) == len(expected)


def test_long_and_short_names_resolve():
    assert resolve_variant("sam2.1_hiera_tiny") == "sam2.1_hiera_t"
    assert resolve_variant("sam2_hiera_base_plus") == "sam2_hiera_b+"
    assert resolve_variant("SAM2.1_HIERA_L") == "sam2.1_hiera_l"
    assert long_name("sam2.1_hiera_b+") == "sam2.1_hiera_base_plus"
    with pytest.raises(ValueError, match="Unknown SAM 2 variant 'sam3_hiera_t'"):
        resolve_variant("sam3_hiera_t")


@pytest.mark.parametrize("size", [512, 768, 1024])
def test_image_size_is_overridable(size):
    config = get_config("sam2.1_hiera_t", image_size=size)
    assert config.image_size == size and config.feat_size == size // 16
    with pytest.raises(ValueError, match="multiple of 32"):
        get_config("sam2.1_hiera_t", image_size=500)


def test_checkpoint_file_loads_with_detected_variant(tmp_path):
    path = write_reference_checkpoint("sam2.1_hiera_t", tmp_path / "sam2.1_hiera_tiny.pt")
    predictor = sam2.build_video_predictor(None, path, image_size=512)
    assert predictor.model.config.name == "sam2.1_hiera_t"
    loaded = predictor.model.state_dict()
    for key, value in reference_state_dict("sam2.1_hiera_t").items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_of_another_variant_is_refused_clearly(tmp_path):
    path = write_reference_checkpoint("sam2_hiera_t", tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as err:
        sam2.build_image_predictor("sam2.1_hiera_t", path)
    message = str(err.value)
    assert "sam2_hiera_t" in message and "sam2.1_hiera_t" in message
    assert "no_obj_embed_spatial" in message  # names the keys that differ


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100])
def test_broken_file_is_refused_clearly(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.pt"):
        sam2.build_video_predictor("sam2.1_hiera_t", path)
