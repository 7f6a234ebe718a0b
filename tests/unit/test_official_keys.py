"""Official state_dict key map: fake checkpoints from the manifests land tensor by tensor in our modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from probtalk3d_cli.config import Config, PriorConfig
from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS
from probtalk3d_cli.models.audio import HUBERT_BASE_CONFIG, AudioEncoder
from probtalk3d_cli.models.official_keys import (
    detect_kind,
    map_official_predictor,
    map_official_prior,
    official_key_to_ours,
)
from probtalk3d_cli.models.predictor import MotionPredictor
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
    cfg = Config()
    cfg.prior.token_layout = "official"
    model = MotionPredictor(cfg, OFFICIAL_TRAIN_SUBJECTS, MotionPrior(cfg.prior),
                            AudioEncoder(cfg.audio, HUBERT_BASE_CONFIG))
    mapped = map_official_predictor(official, model=model)
    model.load_state_dict(mapped, strict=True)
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


def test_vae_prior_with_assumed_head_names():
    rows = [(k, s) for k, s in _manifest("prior") if not k.startswith("quantize.")]
    rows += [("mean.weight", (256, 256)), ("mean.bias", (256,)), ("logvar.weight", (256, 256)), ("logvar.bias", (256,))]
    official = _fake(rows, seed=2)
    assert detect_kind(official, "prior") == "vae"
    prior = MotionPrior(_official_prior_cfg("vae"))
    prior.load_state_dict(map_official_prior(official), strict=True)
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
