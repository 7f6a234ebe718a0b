"""Shared blocks: official parameter counts, attention scale, GELU(tanh), PE values, masked norms and padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probtalk3d_cli.config import Config, PredictorConfig, PriorConfig
from probtalk3d_cli.models.layers import (
    Attention,
    ConvBlock,
    FeedForward,
    PositionalEncoding,
    TransformerBlock,
    count_parameters,
    fill_padding_with_last,
    lengths_from_mask,
    mask_from_lengths,
    masked_instance_norm,
)
from probtalk3d_cli.models.predictor import LatentPredictor
from probtalk3d_cli.models.prior import MotionPrior


# ---- official parameter counts (reference §2-§5, §13) ----------------------------------------------------


def test_parameter_counts_default_config():
    vq = MotionPrior(PriorConfig(token_layout="official"))
    assert count_parameters(vq.encoder) == 3_171_584
    assert count_parameters(vq.decoder) == 3_171_328
    assert count_parameters(vq.quantizer) == 32_768
    assert count_parameters(vq) == 6_375_680
    assert count_parameters(MotionPrior(PriorConfig(kind="vae"))) == 6_474_496
    assert count_parameters(LatentPredictor(PredictorConfig(), audio_dim=1536, num_subjects=32)) == 6_326_272
    assert count_parameters(TransformerBlock(256, 8, 384)) == 460_672
    assert Config().prior.token_layout == "per_frame"  # default layout for new training


# ---- attention, MLP, PE -------------------------------------------------------------------------------------


def test_attention_uses_model_width_scale_and_contiguous_heads():
    torch.manual_seed(0)
    d, h, t = 8, 2, 5
    attn = Attention(d, h)
    x = torch.randn(1, t, d)
    qkv = attn.to_qkv(x)[0]  # [T, 3d]
    q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
    heads = []
    for i in range(h):
        sl = slice(i * d // h, (i + 1) * d // h)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(d)  # model width, not head width (reference §11.6)
        heads.append(torch.softmax(scores, dim=-1) @ v[:, sl])
    expected = attn.to_out(torch.cat(heads, dim=1))
    torch.testing.assert_close(attn(x)[0], expected, atol=1e-6, rtol=1e-5)
    assert attn.scale == pytest.approx(8 ** -0.5)
    assert attn.to_qkv.bias is None and attn.to_out.bias is not None
    # the head-width scale gives a different result, so the check above can fail
    wrong = []
    for i in range(h):
        sl = slice(i * d // h, (i + 1) * d // h)
        wrong.append(torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d // h), dim=-1) @ v[:, sl])
    assert not torch.allclose(attn.to_out(torch.cat(wrong, dim=1)), expected, atol=1e-4)


def test_feedforward_uses_tanh_gelu():
    ff = FeedForward(3, 3)
    with torch.no_grad():
        ff.l1.weight.copy_(torch.eye(3))
        ff.l1.bias.zero_()
        ff.l2.weight.copy_(torch.eye(3))
        ff.l2.bias.zero_()
    x = torch.tensor([[-2.0, 0.5, 1.5]])
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    torch.testing.assert_close(ff(x), tanh_gelu, atol=1e-7, rtol=0)
    assert not torch.allclose(ff(x), F.gelu(x), atol=1e-5)  # the erf form differs


def test_positional_encoding_values():
    pe = PositionalEncoding(4, max_len=10, dropout=0.1).eval()
    assert pe.pe.shape == (10, 1, 4)
    table = pe.pe[:, 0, :]
    # pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(...); d = 4 -> 10000^(2/4) = 100
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert table[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert table[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert table[3, 2].item() == pytest.approx(math.sin(3 / 100), abs=1e-7)
    assert table[7, 3].item() == pytest.approx(math.cos(7 / 100), abs=1e-7)
    x = torch.ones(2, 3, 4)
    torch.testing.assert_close(pe(x), 1.0 + table[:3][None].expand(2, 3, 4))
    with pytest.raises(ValueError, match="positional-encoding limit of 10 frames"):
        pe(torch.zeros(1, 11, 4))


# ---- masks and masked ops -------------------------------------------------------------------------------


def test_mask_helpers():
    mask = mask_from_lengths(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert lengths_from_mask(mask).tolist() == [3, 1]
    with pytest.raises(ValueError, match="prefix"):
        lengths_from_mask(torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="bool"):
        lengths_from_mask(torch.ones(1, 3))
    x = torch.arange(8.0).view(1, 4, 2).repeat(2, 1, 1)
    filled = fill_padding_with_last(x, torch.tensor([4, 2]))
    assert torch.equal(filled[0], x[0])
    assert filled[1].tolist() == [[0, 1], [2, 3], [2, 3], [2, 3]]


def test_masked_instance_norm_matches_instancenorm_on_unpadded_clips():
    torch.manual_seed(1)
    ref = torch.nn.InstanceNorm1d(6, affine=False)
    clips = [torch.randn(1, 6, 9) * 3 + 1, torch.randn(1, 6, 4)]
    batch = torch.zeros(2, 6, 9)
    batch[0], batch[1, :, :4] = clips[0][0], clips[1][0]
    batch[1, :, 4:] = 123.0  # padding content must not matter
    out = masked_instance_norm(batch, mask_from_lengths(torch.tensor([9, 4]), 9))
    torch.testing.assert_close(out[0:1], ref(clips[0]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:2, :, :4], ref(clips[1]), atol=1e-5, rtol=1e-5)
    assert torch.all(out[1, :, 4:] == 0)


def _pad(clips):
    t = max(c.shape[0] for c in clips)
    out = torch.zeros(len(clips), t, clips[0].shape[1])
    for i, c in enumerate(clips):
        out[i, : c.shape[0]] = c
    return out, mask_from_lengths(torch.tensor([c.shape[0] for c in clips]), t)


def test_conv_block_and_transformer_block_padded_batch_equals_single_clips():
    torch.manual_seed(2)
    conv, block = ConvBlock(8).eval(), TransformerBlock(8, 2, 12).eval()
    clips = [torch.randn(7, 8), torch.randn(3, 8), torch.randn(5, 8)]
    x, mask = _pad(clips)
    ybatch, zbatch = conv(x, mask), block(x, mask)
    for i, c in enumerate(clips):
        n = c.shape[0]
        torch.testing.assert_close(ybatch[i, :n], conv(c[None])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(zbatch[i, :n], block(c[None])[0], atol=1e-5, rtol=1e-5)
    assert torch.all(ybatch[1, 3:] == 0)


def test_conv_block_matches_official_sequence_and_rejects_one_frame():
    torch.manual_seed(3)
    block = ConvBlock(4)
    x = torch.randn(1, 6, 4)
    official = torch.nn.Sequential(block.conv, torch.nn.LeakyReLU(0.2), torch.nn.InstanceNorm1d(4, affine=False))
    expected = official(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(block(x), expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="at least 2"):
        block(torch.randn(1, 1, 4))
    with pytest.raises(ValueError, match="at least 2"):
        block(torch.randn(2, 3, 4), mask_from_lengths(torch.tensor([3, 1]), 3))
