"""`blockwise_attention` against the textbook formula computed in float64.

Memory attention runs every cross-attention through it on CPU (values narrower than the
keys), and large bfloat16 attentions too, so its blocking must not change the result.
"""

from __future__ import annotations

import pytest
import torch

from sam2.modeling import attention as attention_module
from sam2.modeling.attention import blockwise_attention


def _textbook(q, k, v):
    q, k, v = q.double(), k.double(), v.double()
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v


def _inputs(batch=2, nq=20, nk=37, d=32, dv=8, scale=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 1, nq, d, generator=g) * scale
    k = torch.randn(batch, 1, nk, d, generator=g) * scale
    v = torch.randn(batch, 1, nk, dv, generator=g)
    return q, k, v


@pytest.mark.parametrize("rows", [1, 7, 20])
@pytest.mark.parametrize("nk", [37, 48])  # keys padded to a multiple of 16, or not
def test_float32_blocks_of_any_size_give_the_textbook_result(monkeypatch, rows, nk):
    # Scores spread over tens of units: peaked rows, as memory attention often has.
    q, k, v = _inputs(nk=nk)
    # 20 rows as one block, or blocks of a few rows, some with a smaller last block.
    monkeypatch.setattr(attention_module, "_BLOCK_SCORES", rows * k.shape[-2])
    out = blockwise_attention(q, k, v)
    assert out.shape == (2, 1, 20, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _textbook(q, k, v), rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_stays_within_bfloat16_steps(monkeypatch):
    # Scores of unit spread, as in the model: bfloat16 rounds large scores by whole steps.
    q, k, v = _inputs(nq=64, nk=300, d=64, dv=16, scale=1.0)
    monkeypatch.setattr(attention_module, "_BLOCK_SCORES", 10 * k.shape[-2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blockwise_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    error = (out.double() - _textbook(q, k, v)).abs()
    assert error.max() < 0.05 and error.mean() < 0.01, (error.max(), error.mean())
