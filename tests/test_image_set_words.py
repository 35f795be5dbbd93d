"""How an image set's sizes are described on the page (ui.views): truly, whatever the sizes."""

from __future__ import annotations

from ui.views import _sizes_text


def test_sizes_are_said_truly():
    assert _sizes_text([(48, 64)] * 3) == "64x48 pixels"
    # Two sizes of one area were "sizes from 48x64 to 48x64".
    assert _sizes_text([(64, 48), (48, 64), (64, 48)]) == "sizes 48x64 and 64x48 pixels, each image kept at its own"
    assert _sizes_text([(2, 1), (1, 2), (3, 3), (4, 4)]).startswith("sizes 1x2, 2x1, 3x3 and 4x4 pixels")
    many = _sizes_text([(h, 10) for h in range(1, 9)])
    assert many == "8 different sizes from 10x1 to 10x8 pixels, each image kept at its own"
