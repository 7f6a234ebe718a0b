"""Motion prior (VQ-VAE and VAE): padded batch == single clips, VAE sampling controls, losses, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from probtalk3d_cli.checkpoint import load_checkpoint
from probtalk3d_cli.models.layers import mask_from_lengths
from probtalk3d_cli.models.prior import MotionPrior, build_prior, kl_divergence, load_prior, save_prior
from probtalk3d_cli.training.losses import masked_l1, prior_losses

LENGTHS = [9, 4, 6]


def _cfg(tiny_config, kind="vq", layout="per_frame"):
    cfg = copy.deepcopy(tiny_config)
    cfg.prior.kind = kind
    cfg.prior.token_layout = layout
    return cfg


def _batch(seed=0, lengths=LENGTHS):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    clips = [torch.rand(n, 53, generator=g) for n in lengths]
    motion = torch.zeros(len(lengths), t, 53)
    for i, c in enumerate(clips):
        motion[i, : len(c)] = c
    mask = mask_from_lengths(torch.tensor(lengths), t)
    return clips, {"motion": motion, "mask": mask, "lengths": torch.tensor(lengths)}


@pytest.mark.parametrize("layout", ["official", "per_frame"])
def test_vq_prior_padded_batch_equals_single_clips(tiny_config, layout):
    torch.manual_seed(0)
    prior = build_prior(_cfg(tiny_config, layout=layout)).eval()
    clips, batch = _batch()
    out = prior(batch["motion"], batch["mask"])
    z = prior.encode(batch["motion"], batch["mask"])
    for i, c in enumerate(clips):
        n = len(c)
        single = prior(c[None])
        torch.testing.assert_close(z[i, :n], prior.encode(c[None])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.recon[i, :n], single.recon[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(out.codes[i, : 2 * n], single.codes[0])
    assert torch.all(out.recon[1, 4:] == 0) and torch.all(z[1, 4:] == 0)
    assert out.recon.shape == (3, 9, 53) and out.latent.shape == (3, 9, 32)


def test_prior_losses_equal_frame_weighted_mean_of_single_clip_losses(tiny_config):
    torch.manual_seed(1)
    for kind in ("vq", "vae"):
        cfg = _cfg(tiny_config, kind=kind, layout="official")
        prior = build_prior(cfg).eval()
        clips, batch = _batch(seed=1)
        torch.manual_seed(5)
        if kind == "vae":  # make the VAE deterministic for the comparison: eps = 0
            prior.sample_latent = lambda mu, logvar, **kw: mu
        full = prior_losses(prior, batch, cfg)
        singles = []
        for c in clips:
            m = torch.ones(1, len(c), dtype=torch.bool)
            singles.append(prior_losses(prior, {"motion": c[None], "mask": m}, cfg))
        w = torch.tensor(LENGTHS, dtype=torch.float32)
        for key in full:
            if key == "frames":
                assert full[key].item() == sum(LENGTHS)
                continue
            expected = sum(wi * s[key] for wi, s in zip(w, singles)) / w.sum()
            torch.testing.assert_close(full[key], expected, atol=1e-5, rtol=1e-5)
        weights = (cfg.prior.w_quant, cfg.prior.w_exp, cfg.prior.w_jaw) if kind == "vq" else (
            cfg.prior.vae_w_kl, cfg.prior.vae_w_exp, cfg.prior.vae_w_jaw)
        first = full["vq"] if kind == "vq" else full["kl"]
        torch.testing.assert_close(full["total"], weights[0] * first + weights[1] * full["exp"] + weights[2] * full["jaw"])


def test_masked_l1_hand_computed():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    assert masked_l1(pred, target, mask).item() == pytest.approx(2.5)
    assert masked_l1(pred, target, None).item() == pytest.approx(28 / 6)


def test_vae_prior_sampling_controls(tiny_config):
    torch.manual_seed(2)
    prior = build_prior(_cfg(tiny_config, kind="vae")).eval()
    clips, batch = _batch(seed=2)
    mu, logvar = prior.encode(batch["motion"], batch["mask"])
    mu1, logvar1 = prior.encode(clips[1][None])
    torch.testing.assert_close(mu[1, :4], mu1[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logvar[1, :4], logvar1[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(prior.sample_latent(mu, logvar, fact=20.0, mean=True), mu)  # mean really works (§11.11)
    z1 = prior.sample_latent(mu, logvar, fact=1.0, generator=torch.Generator().manual_seed(3))
    z20 = prior.sample_latent(mu, logvar, fact=20.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(z20 - mu, 20.0 * (z1 - mu), atol=1e-4, rtol=1e-5)
    z1b = prior.sample_latent(mu, logvar, fact=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z1, z1b)
    assert not torch.equal(z1, prior.sample_latent(mu, logvar, generator=torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="vq prior"):
        prior.quantize(mu)


def test_kl_divergence_hand_computed():
    mu = torch.tensor([[[0.0, 1.0]]])
    logvar = torch.tensor([[[0.0, 0.0]]])
    # elementwise 0.5 (mu^2 + e^lv - 1 - lv): 0 and 0.5 -> mean 0.25
    assert kl_divergence(mu, logvar).item() == pytest.approx(0.25)
    mu2 = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    lv2 = torch.zeros(1, 2, 2)
    assert kl_divergence(mu2, lv2, torch.tensor([[True, False]])).item() == pytest.approx(0.25)


def test_short_clip_is_a_clear_error(tiny_config):
    prior = build_prior(tiny_config)
    with pytest.raises(ValueError, match="at least 2"):
        prior(torch.rand(1, 1, 53))


def test_save_and_load_prior_round_trip(tiny_config, tmp_path):
    torch.manual_seed(3)
    cfg = _cfg(tiny_config, layout="official")
    prior = build_prior(cfg).eval()
    path = save_prior(tmp_path / "prior.pt", prior, cfg, meta={"epoch": 3})
    payload = load_checkpoint(path, expect="prior")
    assert payload["config"]["prior"]["token_layout"] == "official"
    assert payload["meta"]["epoch"] == 3 and payload["meta"]["normalisation"]["exp_range"] == [-3.0, 3.0]
    again = load_prior(path)
    assert not again.training
    _, batch = _batch(seed=4)
    assert torch.equal(again(batch["motion"], batch["mask"]).recon, prior(batch["motion"], batch["mask"]).recon)
    payload["model"].pop("decoder.out.weight")
    with pytest.raises(ValueError, match="missing: decoder.out.weight"):
        MotionPrior.from_checkpoint(payload)


def test_bf16_autocast_keeps_the_code_search_in_fp32_and_losses_close(tiny_config):
    torch.manual_seed(6)
    cfg = _cfg(tiny_config, layout="official")
    prior = build_prior(cfg).eval()
    _, batch = _batch(seed=6)
    ref = prior_losses(prior, batch, cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = prior_losses(prior, batch, cfg)
        z = prior.encode(batch["motion"], batch["mask"])
        q = prior.quantize(z, batch["mask"])
    assert z.dtype == torch.bfloat16 and q.z_q.dtype == torch.float32
    for key in ("vq", "exp", "jaw", "total"):
        assert low[key].dtype == torch.float32
        assert abs(low[key].item() - ref[key].item()) <= 0.05 * abs(ref[key].item()), key
