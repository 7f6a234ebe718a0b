"""Vector quantiser: both token layouts, exact official numbers for batch 1, straight-through, loss, sampling."""

from __future__ import annotations

import pytest
import torch

from probtalk3d_cli.models.layers import mask_from_lengths
from probtalk3d_cli.models.quantizer import VectorQuantizer


def _official_reference(vq: VectorQuantizer, z: torch.Tensor):
    """The official batch-1 computation as described in reference §3.2 (written independently for this test)."""
    zc = z.permute(0, 2, 1).contiguous()  # [1, D, T]
    flat = zc.view(-1, vq.code_dim)
    e = vq.codebook.weight
    d = torch.sum(flat ** 2, dim=1, keepdim=True) + torch.sum(e ** 2, dim=1) - 2 * torch.matmul(flat, e.t())
    idx = torch.argmin(d, dim=1).unsqueeze(1)
    onehot = torch.zeros(idx.shape[0], vq.num_codes).scatter_(1, idx, 1)
    zq = torch.matmul(onehot, e).view(zc.shape)
    loss = vq.beta * torch.mean((zq.detach() - zc) ** 2) + torch.mean((zq - zc.detach()) ** 2)
    zq = zc + (zq - zc).detach()
    return zq.permute(0, 2, 1).contiguous(), loss, idx[:, 0]


def test_official_layout_rows_hold_channel_major_runs():
    vq = VectorQuantizer(num_codes=4, code_dim=2, layout="official")
    t, d = 3, 4
    z = (10 * torch.arange(d)[None, :] + torch.arange(t)[:, None]).float()[None]  # z[0, t, c] = 10c + t
    rows = vq.to_tokens(z, torch.tensor([t]))
    # channel-major order c0t0 c0t1 c0t2 c1t0 c1t1 c1t2 ... cut into pairs
    assert rows.tolist() == [[0, 1], [2, 10], [11, 12], [20, 21], [22, 30], [31, 32]]
    back = vq.from_tokens(rows, torch.tensor([t]), z.shape)
    assert torch.equal(back, z)


def test_per_frame_layout_splits_each_frame():
    vq = VectorQuantizer(num_codes=4, code_dim=2, layout="per_frame")
    z = (10 * torch.arange(4)[None, :] + torch.arange(3)[:, None]).float()[None]
    rows = vq.to_tokens(z, torch.tensor([3]))
    assert rows.tolist() == [[0, 10], [20, 30], [1, 11], [21, 31], [2, 12], [22, 32]]
    assert torch.equal(vq.from_tokens(rows, torch.tensor([3]), z.shape), z)


def test_official_layout_reproduces_official_numbers_exactly_for_batch_one():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, code_dim=8, layout="official")
    with torch.no_grad():
        vq.codebook.weight.normal_()
    z = torch.randn(1, 7, 16)
    out = vq(z)
    zq, loss, idx = _official_reference(vq, z)
    assert torch.equal(out.z_q, zq)
    assert torch.equal(out.loss, loss)
    assert torch.equal(out.codes[0], idx)
    assert out.codes.shape == (1, 7 * 2)


def test_codebook_init_range():
    vq = VectorQuantizer(256, 128)
    w = vq.codebook.weight.detach()
    assert w.shape == (256, 128)
    assert float(w.abs().max()) <= 1 / 256 and float(w.abs().max()) > 0.9 / 256


def test_vq_loss_hand_computed_and_straight_through_gradient():
    vq = VectorQuantizer(num_codes=2, code_dim=2, beta=0.25, layout="per_frame")
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([[[0.2, 0.4, 0.9, 1.2]]], requires_grad=True)
    out = vq(z)
    assert out.codes.tolist() == [[0, 1]]
    assert out.z_q.tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    # squared errors 0.04, 0.16, 0.01, 0.04 -> mean 0.0625; (1 + beta) * 0.0625
    assert out.loss.item() == pytest.approx(1.25 * 0.0625, abs=1e-7)
    w = torch.tensor([[[1.0, -2.0, 3.0, 0.5]]])
    (out.z_q * w).sum().backward()
    assert torch.equal(z.grad, w)  # d z_q / d z = identity


def test_straight_through_gradient_is_identity_on_valid_frames_in_a_padded_batch():
    torch.manual_seed(1)
    for layout in ("official", "per_frame"):
        vq = VectorQuantizer(8, 4, layout=layout)
        z = torch.randn(2, 5, 8, requires_grad=True)
        mask = mask_from_lengths(torch.tensor([5, 3]), 5)
        out = vq(z, mask)
        w = torch.randn(2, 5, 8)
        (out.z_q * w).sum().backward()
        torch.testing.assert_close(z.grad, w * mask[:, :, None])
        assert torch.all(out.z_q[1, 3:] == 0) and out.codes[1, 6:].tolist() == [-1] * 4


@pytest.mark.parametrize("layout", ["official", "per_frame"])
def test_padded_batch_equals_single_clips_and_loss_is_frame_weighted(layout):
    torch.manual_seed(2)
    vq = VectorQuantizer(16, 4, layout=layout)
    with torch.no_grad():
        vq.codebook.weight.normal_()
    lengths = [6, 2, 4]
    clips = [torch.randn(1, n, 8) for n in lengths]
    z = torch.zeros(3, 6, 8)
    for i, c in enumerate(clips):
        z[i, : lengths[i]] = c[0]
        z[i, lengths[i]:] = 50.0  # padding content must not matter
    out = vq(z, mask_from_lengths(torch.tensor(lengths), 6))
    losses = []
    for i, c in enumerate(clips):
        single = vq(c)
        assert torch.equal(out.z_q[i, : lengths[i]], single.z_q[0])
        assert torch.equal(out.codes[i, : 2 * lengths[i]], single.codes[0])
        losses.append(single.loss)
    weighted = sum(n * loss for n, loss in zip(lengths, losses)) / sum(lengths)
    torch.testing.assert_close(out.loss, weighted, atol=1e-6, rtol=1e-6)


def test_sampling_temperature_seed_and_k():
    torch.manual_seed(3)
    vq = VectorQuantizer(8, 4, layout="per_frame")
    with torch.no_grad():
        vq.codebook.weight.normal_()
    z = torch.randn(1, 50, 8)
    nearest = vq(z).codes
    cold = vq(z, sample=True, temperature=1e-6, generator=torch.Generator().manual_seed(0)).codes
    assert torch.equal(cold, nearest)
    a = vq(z, sample=True, temperature=1.0, generator=torch.Generator().manual_seed(7)).codes
    b = vq(z, sample=True, temperature=1.0, generator=torch.Generator().manual_seed(7)).codes
    c = vq(z, sample=True, temperature=1.0, generator=torch.Generator().manual_seed(8)).codes
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="temperature"):
        vq(z, sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="k must be"):
        vq(z, sample=True, k=9)


def test_k_keeps_the_last_of_k_draws_without_replacement():
    # one code holds ~99.8 % of the mass: k = 1 almost always picks it, k = 2 (last of two draws without
    # replacement) almost never does (official semantics, reference §3.2)
    d = torch.tensor([[0.0, 1.0, 1.0, 1.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    k1 = VectorQuantizer.sample_codes(d, temperature=0.15, k=1, generator=g)
    k2 = VectorQuantizer.sample_codes(d, temperature=0.15, k=2, generator=g)
    assert (k1 == 0).float().mean() > 0.99
    assert (k2 == 0).float().mean() < 0.01
