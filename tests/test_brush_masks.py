"""The brush's mask pictures (ui.datasets_page.read_mask_png, painted_mask): transparency where a
picture has it, else a 0/1 mask or half of the format's range, so near-black JPEG noise or a
16-bit PNG of 1s is not taken for a mask of the whole frame (issue 18, item 7). The app's
/apply_mask, and its warning for a mask of the whole frame, are tested in test_app_datasets.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.document import UserError
from ui.datasets_page import painted_mask, read_mask_png

H, W = 48, 64


def square() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    return mask


def saved(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def test_near_black_jpeg_noise_is_no_object(tmp_path):
    """A dark frame with JPEG noise: every pixel 'not black', none of it an object: refused
    with a message, before anything changes."""
    noise = np.random.default_rng(0).integers(0, 14, (H, W, 3), dtype=np.uint8)
    path = saved(Image.fromarray(noise), tmp_path / "dark.jpg", quality=70)
    assert np.array(Image.open(path)).max(axis=-1).astype(bool).mean() > 0.9  # the old reading: all object
    with pytest.raises(UserError, match="'dark.jpg' has no object pixels"):
        read_mask_png(path, (H, W))


def test_a_jpeg_of_white_on_noisy_black_gives_the_white(tmp_path):
    picture = np.random.default_rng(1).integers(0, 30, (H, W), dtype=np.uint8)
    picture[square()] = 240
    mask = read_mask_png(saved(Image.fromarray(picture), tmp_path / "mask.jpg", quality=80), (H, W))
    assert (mask == square()).mean() > 0.98  # JPEG blurs the square's edge by a pixel or so


def test_a_16_bit_png_of_ones_gives_the_mask_of_the_ones(tmp_path):
    values = square().astype(np.uint16)
    path = saved(Image.fromarray(values), tmp_path / "labels16.png")
    with Image.open(path) as image:
        assert image.mode in ("I;16", "I") and np.array(image).max() == 1
    assert np.array_equal(read_mask_png(path, (H, W)), square())


def test_a_16_bit_png_is_read_at_half_its_range(tmp_path):
    values = np.random.default_rng(2).integers(0, 3000, (H, W)).astype(np.uint16)  # dark, but far above 255
    values[square()] = 60000
    path = saved(Image.fromarray(values), tmp_path / "bright16.png")
    assert np.array_equal(read_mask_png(path, (H, W)), square())


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_a_0_1_picture_is_a_0_1_mask(tmp_path, mode):
    """Label tools write 0 for background and 1 for the object: "L" values, mode "1" bits, or an
    indexed picture whose palette colours are 0 and 1."""
    values = square().astype(np.uint8)
    if mode == "1":
        image = Image.fromarray(square())
    elif mode == "P":
        image = Image.fromarray(values, "L").convert("P")
        image.putpalette([0, 0, 0, 1, 1, 1])
    else:
        image = Image.fromarray(values)
    path = saved(image, tmp_path / f"zero_one_{mode}.png")
    with Image.open(path) as reread:
        assert reread.mode == mode
    assert np.array_equal(read_mask_png(path, (H, W)), square())


def test_an_rgba_picture_uses_its_alpha(tmp_path):
    """The colour under transparent pixels (white here) does not count; opaque pixels do, in
    any colour, dark too."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[square()] = (10, 10, 10, 255)
    assert np.array_equal(read_mask_png(saved(Image.fromarray(rgba), tmp_path / "alpha.png"), (H, W)), square())


def test_an_opaque_rgba_picture_is_read_by_its_colours(tmp_path):
    rgba = np.full((H, W, 4), 255, np.uint8)
    rgba[..., :3] = 0
    rgba[square(), :3] = (0, 0, 255)  # a blue object: bright in one channel is bright enough
    assert np.array_equal(read_mask_png(saved(Image.fromarray(rgba), tmp_path / "opaque.png"), (H, W)), square())


def test_a_picture_with_a_transparent_palette_colour_uses_it(tmp_path):
    indices = np.where(square(), 1, 0).astype(np.uint8)
    image = Image.fromarray(indices, "L").convert("P")
    image.putpalette([255, 255, 255, 40, 40, 40])  # the object's colour is dark; the background's white
    path = saved(image, tmp_path / "keyed.png", transparency=0)
    assert np.array_equal(read_mask_png(path, (H, W)), square())


def test_grey_is_read_at_half_of_255(tmp_path):
    values = np.full((H, W), 127, np.uint8)
    values[square()] = 128
    assert np.array_equal(read_mask_png(saved(Image.fromarray(values), tmp_path / "grey.png"), (H, W)), square())


def test_pictures_that_are_not_masks_are_refused(tmp_path):
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(UserError, match="'text.png' is not a picture this page can read"):
        read_mask_png(tmp_path / "text.png", (H, W))
    with pytest.raises(UserError, match="The mask picture is 10x10, but the video is 64x48."):
        read_mask_png(saved(Image.fromarray(np.zeros((10, 10), np.uint8)), tmp_path / "small.png"), (H, W))
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:60])
    with pytest.raises(UserError, match="'cut.png' is not a picture this page can read"):
        read_mask_png(tmp_path / "cut.png", (H, W))


def test_the_editor_layers_read_by_alpha_and_a_layer_without_it_by_its_values():
    stroke = np.zeros((H, W, 4), np.uint8)
    stroke[square()] = (255, 255, 255, 127)  # the brush at half opacity
    assert np.array_equal(painted_mask({"layers": [stroke]}), square())
    flat = np.zeros((H, W, 3), np.uint8)  # no alpha: once the whole frame
    flat[square()] = 255
    assert np.array_equal(painted_mask({"layers": [flat]}), square())
    assert painted_mask({"layers": []}) is None and painted_mask(None) is None
