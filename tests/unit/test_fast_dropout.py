"""Training dropout with fewer random draws (models/layers.fast_dropout, AudioEncoder.use_fast_dropout): the rate, the
scale, reproducibility under a seed, gradients, eval-mode identity, and HuBERT attention unchanged without dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probtalk3d_cli.models.layers import FastDropout, fast_dropout, use_fast_dropout


def test_rate_and_scale_follow_p():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    for p in (0.1, 0.3):
        y = fast_dropout(x, p)
        threshold = round(p * 65536)
        scale = 65536 / (65536 - threshold)
        values = torch.unique(y).tolist()
        assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(scale, rel=1e-6)
        dropped = (y == 0).double().mean().item()
        assert abs(dropped - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5  # within 4 standard errors
        assert y.mean().item() == pytest.approx(1.0, abs=0.01)
        # each of the four 16-bit slices of a draw is used; none is biased
        for k in range(4):
            assert abs((y[k::4] == 0).double().mean().item() - p) < 0.01


def test_hand_computed_mask_from_the_generator():
    """Element i is dropped iff the i-th 16-bit slice (signed) of the int64 draws is < round(p*65536) - 32768."""
    g = torch.Generator().manual_seed(5)
    x = torch.arange(1, 11, dtype=torch.float32)
    y = fast_dropout(x, 0.5, generator=g)
    words = torch.empty(3, dtype=torch.int64).random_(-(2**63), None, generator=torch.Generator().manual_seed(5))
    slices = words.view(torch.int16)[:10]
    expected = torch.where(slices >= 0, x * 2.0, torch.zeros_like(x))
    assert torch.equal(y, expected)


def test_seeded_runs_repeat_and_gradients_match_the_mask():
    torch.manual_seed(3)
    a = fast_dropout(torch.ones(1000), 0.2)
    torch.manual_seed(3)
    b = fast_dropout(torch.ones(1000), 0.2)
    assert torch.equal(a, b)
    x = torch.randn(7, 33, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.sum().backward()
    mask = (y != 0).float() * (65536 / (65536 - 16384))
    torch.testing.assert_close(x.grad, mask)
    bf = fast_dropout(torch.ones(64, dtype=torch.bfloat16), 0.1)
    assert bf.dtype == torch.bfloat16
    assert fast_dropout(x, 0.0) is x and torch.count_nonzero(fast_dropout(x, 1.0)) == 0


def test_module_swap_keeps_state_dict_and_eval_identity():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3), nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 2)))
    keys = list(net.state_dict())
    net[2].eval()
    assert use_fast_dropout(net) == 2
    assert net[1].training and not net[2][0].training  # each keeps its module's mode
    net.train()
    assert isinstance(net[1], FastDropout) and net[1].p == 0.3 and isinstance(net[2][0], FastDropout)
    assert list(net.state_dict()) == keys
    net.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(net(x), net[2][1](net[0](x)))


def test_hubert_attention_equals_sdpa_in_eval_and_is_seeded_in_training(tiny_config):
    from probtalk3d_cli.device import seed_everything
    from probtalk3d_cli.models.audio import AudioEncoder

    torch.manual_seed(0)
    enc = AudioEncoder(tiny_config.audio)
    audio = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 6400])
    enc.eval()
    ref = enc(audio, lengths)
    enc.use_fast_dropout()
    out = enc(audio, lengths)
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(out[1], ref[1])
    # training mode: the attention probabilities go through fast_dropout (seeded: reproducible, and different
    # from the no-dropout result)
    enc.train()
    seed_everything(1)  # HF's SpecAugment draws from numpy
    a = enc(audio, lengths)[0]
    seed_everything(1)
    b = enc(audio, lengths)[0]
    assert torch.equal(a, b) and not torch.allclose(a, ref[0])
