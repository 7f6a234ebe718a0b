"""Official state_dict key map: fake checkpoints from the manifests land tensor by tensor in our modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from probtalk3d_cli.config import PriorConfig
from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS
from probtalk3d_cli.models.layers import count_parameters
from probtalk3d_cli.models.official_keys import (
    build_official_predictor,
    build_official_prior,
    detect_kind,
    map_official_predictor,
    map_official_prior,
    official_key_to_ours,
)
from probtalk3d_cli.models.prior import MotionPrior

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def _manifest(name: str) -> list[tuple[str, tuple]]:
    path = REFERENCE / f"official-state-dict-{name}.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        rows.append((key, tuple(ast.literal_eval(shape))))
    return rows


def _fake(rows, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) if shape else torch.tensor(1.0) for k, shape in rows}


def _official_prior_cfg(kind="vq") -> PriorConfig:
    return PriorConfig(kind=kind, token_layout="official")


def test_rules_on_examples():
    assert official_key_to_ours("motion_encoder.encoder_transformer.net.3.fn.fn.l1.weight", "prior") == \
        "encoder.blocks.1.mlp.l1.weight"
    assert official_key_to_ours("motion_decoder.decoder_transformer.net.10.fn.norm.bias", "prior") == \
        "decoder.blocks.5.attn_norm.bias"
    assert official_key_to_ours("motion_encoder.squasher.0.0.weight", "prior") == "encoder.temporal.conv.weight"
    assert official_key_to_ours("motion_decoder.expander.0.0.bias", "prior") == "decoder.temporal.conv.bias"
    assert official_key_to_ours("motion_decoder.feature_mapping_reverse.weight", "prior") == "decoder.out.weight"
    assert official_key_to_ours("quantize.embedding.weight", "prior") == "quantizer.codebook.weight"
    assert official_key_to_ours("mean.bias", "prior") == "mu.bias"
    assert official_key_to_ours("motion_prior.motion_encoder.encoder_pos_embedding.pe", "pred") == \
        "prior.encoder.pos.pe"
    assert official_key_to_ours("feature_predictor.style_embedding.weight", "pred") == "predictor.style.weight"
    assert official_key_to_ours("feature_extractor.audiomodel.encoder.pos_conv_embed.conv.weight_g", "pred") == \
        "audio_encoder.hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
    assert official_key_to_ours("feature_extractor.audiomodel.encoder.layers.4.attention.q_proj.bias", "pred") == \
        "audio_encoder.hubert.encoder.layers.4.attention.q_proj.bias"
    assert official_key_to_ours("something.else", "pred") is None


def test_fake_official_prior_lands_tensor_by_tensor():
    rows = _manifest("prior")
    official = _fake(rows)
    mapped = map_official_prior(official)
    prior = MotionPrior(_official_prior_cfg())
    prior.load_state_dict(mapped, strict=True)
    own = prior.state_dict()
    built = build_official_prior(official)
    assert built.kind == "vq" and built.quantizer.layout == "official" and not built.training
    assert all(torch.equal(v, own[k]) for k, v in built.state_dict().items())
    n = 0
    for key, _ in rows:
        if key.startswith("_losses."):
            continue
        assert torch.equal(own[official_key_to_ours(key, "prior")], official[key]), key
        n += 1
    assert n == len(own) == 146
    # a whole Lightning checkpoint is accepted too
    assert map_official_prior({"state_dict": official, "epoch": 200}).keys() == mapped.keys()


def test_fake_official_predictor_lands_tensor_by_tensor():
    rows = _manifest("pred")
    official = _fake(rows, seed=1)
    model = build_official_predictor({"state_dict": official, "epoch": 10})
    assert model.identities == list(OFFICIAL_TRAIN_SUBJECTS) and model.config.prior.token_layout == "official"
    assert count_parameters(model, trainable_only=True) == 81_926_784
    own = model.state_dict()
    landed = 0
    for key, _ in rows:
        if "_losses." in key:
            continue
        assert torch.equal(own[official_key_to_ours(key, "pred")], official[key]), key
        landed += 1
    assert landed == len(own) == 497
    # legacy weight norm: the effective conv weight is g * v / ||v|| (norm over all dims but the kernel axis)
    conv = model.audio_encoder.hubert.encoder.pos_conv_embed.conv
    g = official["feature_extractor.audiomodel.encoder.pos_conv_embed.conv.weight_g"]
    v = official["feature_extractor.audiomodel.encoder.pos_conv_embed.conv.weight_v"]
    expected = v * (g / v.norm(dim=(0, 1), keepdim=True))
    torch.testing.assert_close(conv.weight, expected, atol=1e-5, rtol=1e-5)
    # the imported model runs end to end: 1 s of audio -> 49 HuBERT frames -> 24 motion frames
    with torch.no_grad():
        feats, lengths = model.encode_audio(torch.randn(1, 16_000), torch.tensor([16_000]))
        z = model.predict_latent(feats, None, torch.tensor([31]), torch.tensor([7]), torch.tensor([2]))
        motion = model.decode(z, None, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert lengths.tolist() == [24] and motion.shape == (1, 2, 24, 53) and torch.isfinite(motion).all()


def test_vae_prior_with_assumed_head_names():
    rows = [(k, s) for k, s in _manifest("prior") if not k.startswith("quantize.")]
    rows += [("mean.weight", (256, 256)), ("mean.bias", (256,)), ("logvar.weight", (256, 256)), ("logvar.bias", (256,))]
    official = _fake(rows, seed=2)
    assert detect_kind(official, "prior") == "vae"
    prior = build_official_prior(official)
    assert prior.kind == "vae"
    assert torch.equal(prior.mu.weight, official["mean.weight"])
    assert torch.equal(prior.logvar.bias, official["logvar.bias"])
    del official["mean.bias"]
    with pytest.raises(ValueError, match=r"missing \(our keys\): mu.bias"):
        map_official_prior(official)


def test_missing_unexpected_and_misshaped_keys_are_listed():
    official = _fake(_manifest("prior"))
    broken = dict(official)
    del broken["motion_decoder.feature_mapping_reverse.weight"]
    broken["motion_encoder.extra_layer.weight"] = torch.zeros(3)
    broken["motion_encoder.squasher.0.0.bias"] = torch.zeros(255)
    with pytest.raises(ValueError) as info:
        map_official_prior(broken)
    msg = str(info.value)
    assert "\n" not in msg
    assert "decoder.out.weight" in msg and "motion_encoder.extra_layer.weight" in msg
    assert "motion_encoder.squasher.0.0.bias [255] (expected [256])" in msg
    with pytest.raises(ValueError, match="neither"):
        map_official_prior({"foo": torch.zeros(1)})
    # a prior file is not a predictor file
    with pytest.raises(ValueError, match="neither"):
        map_official_predictor(official)
