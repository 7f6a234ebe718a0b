"""Stage-2 composite: official counts, frozen prior in eval mode, gradients, padding, decoding, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from probtalk3d_cli.checkpoint import load_checkpoint
from probtalk3d_cli.config import Config
from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS, audio_frames
from probtalk3d_cli.models.audio import HUBERT_BASE_CONFIG, AudioEncoder
from probtalk3d_cli.models.layers import count_parameters, mask_from_lengths
from probtalk3d_cli.models.predictor import MotionPredictor, load_predictor, save_predictor
from probtalk3d_cli.models.prior import MotionPrior, build_prior
from probtalk3d_cli.training.losses import predictor_losses

IDS = ["S1", "S2", "S3"]
AUDIO_LENGTHS = [16_000, 9_000, 12_800]  # -> 49, 27, 39 HuBERT frames -> 24, 13, 19 pairs
MOTION_LENGTHS = [20, 13, 25]  # T' = min(T, A//2) = 20, 13, 19


def _model(tiny_config, kind="vq", layout="per_frame", seed=0):
    cfg = copy.deepcopy(tiny_config)
    cfg.prior.kind, cfg.prior.token_layout = kind, layout
    torch.manual_seed(seed)
    return MotionPredictor.from_configs(cfg, IDS, build_prior(cfg))


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(3, max(AUDIO_LENGTHS))
    for i, n in enumerate(AUDIO_LENGTHS):
        audio[i, :n] = torch.randn(n, generator=g)
    t = max(MOTION_LENGTHS)
    motion = torch.rand(3, t, 53, generator=g)
    mask = mask_from_lengths(torch.tensor(MOTION_LENGTHS), t)
    motion = motion * mask[:, :, None]
    return {"audio": audio, "audio_lengths": torch.tensor(AUDIO_LENGTHS), "motion": motion, "mask": mask,
            "lengths": torch.tensor(MOTION_LENGTHS), "subject": torch.tensor([0, 2, 1]),
            "emotion": torch.tensor([1, 7, 0]), "intensity": torch.tensor([2, 0, 1])}


def _item(batch, i):
    n, s = MOTION_LENGTHS[i], AUDIO_LENGTHS[i]
    return {"audio": batch["audio"][i: i + 1, :s], "audio_lengths": torch.tensor([s]),
            "motion": batch["motion"][i: i + 1, :n], "mask": torch.ones(1, n, dtype=torch.bool),
            "lengths": torch.tensor([n]), "subject": batch["subject"][i: i + 1],
            "emotion": batch["emotion"][i: i + 1], "intensity": batch["intensity"][i: i + 1]}


def test_full_size_composite_matches_official_counts():
    cfg = Config()
    cfg.prior.token_layout = "official"
    with torch.device("meta"):
        model = MotionPredictor(cfg, OFFICIAL_TRAIN_SUBJECTS, MotionPrior(cfg.prior),
                                AudioEncoder(cfg.audio, HUBERT_BASE_CONFIG))
    assert count_parameters(model.predictor) == 6_326_272
    assert count_parameters(model.audio_encoder) == 94_371_712
    # the official stage-2 checkpoint: {'total': 107073664, 'trainable': 81926784} (manifest header)
    assert count_parameters(model) == 107_073_664
    assert count_parameters(model, trainable_only=True) == 81_926_784


def test_prior_stays_frozen_and_in_eval_mode_and_gradients_reach_the_right_params(tiny_config):
    model = _model(tiny_config)
    model.audio_encoder.hubert.config.layerdrop = 0.0  # LayerDrop could skip layer 1 and leave its grad None
    model.train()
    assert model.training and model.predictor.training and model.audio_encoder.training
    assert not model.prior.training and not any(m.training for m in model.prior.modules())
    assert not any(p.requires_grad for p in model.prior.parameters())
    losses = predictor_losses(model, _batch(), tiny_config)
    losses["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.predictor.parameters())
    assert all(p.grad is None for p in model.prior.parameters())
    hub = model.audio_encoder.hubert
    assert hub.encoder.layers[1].attention.q_proj.weight.grad.abs().sum() > 0
    assert hub.encoder.layers[0].attention.q_proj.weight.grad is None
    assert all(p.grad is None for p in hub.feature_extractor.parameters())
    assert all(p.grad is None for p in hub.feature_projection.parameters())


@pytest.mark.parametrize("kind,layout", [("vq", "official"), ("vq", "per_frame"), ("vae", "per_frame")])
def test_padded_batch_equals_single_clips(tiny_config, kind, layout):
    model = _model(tiny_config, kind, layout).eval()
    batch = _batch(1)
    if kind == "vae":  # eps = 0 so that the comparison is deterministic
        model.prior.sample_latent = lambda mu, logvar, **kw: mu
    with torch.no_grad():
        out = model(batch["audio"], batch["audio_lengths"], batch["subject"], batch["emotion"], batch["intensity"],
                    batch["motion"], batch["lengths"])
        full = predictor_losses(model, batch, tiny_config)
        assert out.lengths.tolist() == [20, 13, 19]
        singles = []
        for i in range(3):
            item = _item(batch, i)
            one = model(item["audio"], item["audio_lengths"], item["subject"], item["emotion"], item["intensity"],
                        item["motion"], item["lengths"])
            n = int(one.lengths)
            assert n == min(MOTION_LENGTHS[i], audio_frames(AUDIO_LENGTHS[i]) // 2)
            torch.testing.assert_close(out.latent_raw[i, :n], one.latent_raw[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.recon[i, :n], one.recon[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.latent_target[i, :n], one.latent_target[0], atol=1e-5, rtol=1e-5)
            singles.append(predictor_losses(model, item, tiny_config))
    w = out.lengths.float()
    for key in ("latent", "exp", "jaw", "total"):
        expected = sum(wi * s[key] for wi, s in zip(w, singles)) / w.sum()
        torch.testing.assert_close(full[key], expected, atol=1e-5, rtol=1e-4)
    assert full["frames"].item() == 52


def test_decode_samples_share_one_latent_and_are_seeded(tiny_config):
    model = _model(tiny_config, "vq", "official").eval()
    batch = _batch(2)
    with torch.no_grad():
        feats, lengths = model.encode_audio(batch["audio"], batch["audio_lengths"])
        mask = mask_from_lengths(lengths, feats.shape[1])
        z = model.predict_latent(feats, mask, batch["subject"], batch["emotion"], batch["intensity"])
    a = model.decode(z, mask, temperature=1.0, num_samples=4, generator=torch.Generator().manual_seed(1))
    b = model.decode(z, mask, temperature=1.0, num_samples=4, generator=torch.Generator().manual_seed(1))
    c = model.decode(z, mask, temperature=1.0, num_samples=4, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 4, feats.shape[1], 53)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[:, 0], a[:, 1])  # samples differ
    det = model.decode(z, mask, sample=False, num_samples=3)
    assert torch.equal(det[:, 0], det[:, 2])
    # sample j of clip i equals decoding clip i alone with the nearest code
    single = model.decode(z[1:2, :13], None, sample=False)
    torch.testing.assert_close(det[1, 0, :13], single[0, 0], atol=1e-4, rtol=1e-4)
    assert torch.all(det[1, :, 13:] == 0)


def test_vae_decode_mean_is_deterministic_and_fact_scales_noise(tiny_config):
    model = _model(tiny_config, "vae").eval()
    z = torch.randn(2, 6, 32)
    m1 = model.decode(z, None, mean=True, num_samples=2, generator=torch.Generator().manual_seed(0))
    m2 = model.decode(z, None, mean=True, num_samples=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(m1, m2) and torch.equal(m1[:, 0], m1[:, 1])
    s1 = model.decode(z, None, fact=20.0, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(s1[:, 0], s1[:, 1]) and not torch.equal(s1[:, 0], m1[:, 0])


def test_style_indices_are_checked(tiny_config):
    model = _model(tiny_config).eval()
    feats = torch.randn(1, 5, model.audio_encoder.output_dim)
    with pytest.raises(ValueError, match="subject index"):
        model.predict_latent(feats, None, torch.tensor([3]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="intensity index"):
        model.predict_latent(feats, None, torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))


def test_save_and_load_predictor_is_self_contained(tiny_config, tmp_path):
    model = _model(tiny_config, "vq", "official").eval()
    path = save_predictor(tmp_path / "pred.pt", model, meta={"epoch": 1})
    payload = load_checkpoint(path, expect="predictor")
    meta = payload["meta"]
    assert meta["identities"] == IDS and meta["epoch"] == 1 and len(meta["emotions"]) == 8
    assert meta["intensities"] == ["low", "medium", "high"] and meta["hubert_config"]["hidden_size"] == 32
    assert payload["config"]["prior"]["token_layout"] == "official"
    assert any(k.startswith("prior.") for k in payload["model"]) and any(k.startswith("audio_encoder.") for k in payload["model"])
    again = load_predictor(path)
    assert not again.training and again.identities == IDS
    assert not any(p.requires_grad for p in again.prior.parameters())  # freezing survives the meta-device rebuild
    hub = again.audio_encoder.hubert
    assert not hub.encoder.layers[0].attention.q_proj.weight.requires_grad
    assert hub.encoder.layers[1].attention.q_proj.weight.requires_grad
    assert all(p.requires_grad for p in again.predictor.parameters())
    batch = _batch(3)
    with torch.no_grad():
        args = (batch["audio"], batch["audio_lengths"], batch["subject"], batch["emotion"], batch["intensity"])
        assert torch.equal(again(*args).recon, model(*args).recon)
    del payload["meta"]["hubert_config"]
    with pytest.raises(ValueError, match="lacks meta 'hubert_config'"):
        MotionPredictor.from_checkpoint(payload)
