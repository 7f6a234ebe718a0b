"""Key map from the official ProbTalk3D Lightning `state_dict`s to our modules (manifests in
../shared/reference/official-state-dict-{prior,pred}.txt).

Rules, applied to each official key (first matching prefix rule, then the in-network rules):

    prefixes         motion_prior.                      -> prior.            (stage 2 only)
                     motion_encoder. / motion_decoder.  -> encoder. / decoder.
                     feature_predictor.                 -> predictor.
                     feature_extractor.audiomodel.      -> audio_encoder.hubert.
    prior            quantize.embedding.weight          -> quantizer.codebook.weight
                     mean.* / logvar.*  (VAE variant)   -> mu.* / logvar.*
    in a network     feature_mapping.0.                 -> feature_map.
                     feature_mapping_reverse.           -> out.
                     squasher.0.0. / expander.0.0.      -> temporal.conv.
                     {encoder,decoder}_linear_embedding.net. -> embed.
                     {encoder,decoder}_pos_embedding.pe -> pos.pe
                     {encoder,decoder}_transformer.net.{j}.fn.norm.  -> blocks.{j//2}.attn_norm. (j even) / mlp_norm. (j odd)
                     {encoder,decoder}_transformer.net.{j}.fn.fn.    -> blocks.{j//2}.attn.     (j even) / mlp.      (j odd)
                     audio_feature_map. / style_embedding. -> audio_map. / style.
    HuBERT           ...pos_conv_embed.conv.weight_g / weight_v (legacy weight norm, transformers 4.10)
                     -> ...pos_conv_embed.conv.parametrizations.weight.original0 / original1
    ignored          `_losses.*` (the never-reset loss accumulators stored as buffers, official bug §11.3)

The VAE variant has no manifest; its heads are assumed to be stored as `mean.{weight,bias}` and
`logvar.{weight,bias}` (the attribute names of the official `model_vae_prior.py`), with every other key as in the VQ
variant minus `quantize.*`. A VAE checkpoint stored differently fails with the list of unmatched keys.

`build_official_prior` / `build_official_predictor` return ready models (official sizes, `official` token layout,
HuBERT-base architecture, the 32 official identities) holding the mapped tensors.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

_PREFIXES = (
    ("motion_encoder.", "encoder."),
    ("motion_decoder.", "decoder."),
    ("feature_predictor.", "predictor."),
)
_PRIOR_HEADS = (
    ("quantize.embedding.weight", "quantizer.codebook.weight"),
    ("mean.", "mu."),
    ("logvar.", "logvar."),
)
_IN_NETWORK = (
    (re.compile(r"^feature_mapping\.0\."), "feature_map."),
    (re.compile(r"^feature_mapping_reverse\."), "out."),
    (re.compile(r"^(?:squasher|expander)\.0\.0\."), "temporal.conv."),
    (re.compile(r"^(?:encoder|decoder)_linear_embedding\.net\."), "embed."),
    (re.compile(r"^(?:encoder|decoder)_pos_embedding\.pe$"), "pos.pe"),
    (re.compile(r"^audio_feature_map\."), "audio_map."),
    (re.compile(r"^style_embedding\."), "style."),
)
_BLOCK = re.compile(r"^(?:encoder|decoder)_transformer\.net\.(\d+)\.fn\.(norm\.|fn\.)(.*)$")
_HUBERT_PREFIX = ("feature_extractor.audiomodel.", "audio_encoder.hubert.")
_WEIGHT_NORM = (
    (".pos_conv_embed.conv.weight_g", ".pos_conv_embed.conv.parametrizations.weight.original0"),
    (".pos_conv_embed.conv.weight_v", ".pos_conv_embed.conv.parametrizations.weight.original1"),
)


def _is_ignored(key: str) -> bool:
    return key.startswith("_losses.") or "._losses." in key


def _map_network(rest: str) -> Optional[str]:
    m = _BLOCK.match(rest)
    if m:
        j, part, tail = int(m.group(1)), m.group(2), m.group(3)
        if part == "norm.":
            sub = "attn_norm." if j % 2 == 0 else "mlp_norm."
        else:
            sub = "attn." if j % 2 == 0 else "mlp."
        return f"blocks.{j // 2}.{sub}{tail}"
    for pattern, repl in _IN_NETWORK:
        if pattern.match(rest):
            return pattern.sub(repl, rest, count=1)
    return None


def _map_prior_key(key: str) -> Optional[str]:
    """Official stage-1 key (without `motion_prior.`) -> our MotionPrior key, or None if no rule matches."""
    for old, new in _PRIOR_HEADS:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):]
    for old, new in _PREFIXES[:2]:
        if key.startswith(old):
            rest = _map_network(key[len(old):])
            return None if rest is None else new + rest
    return None


def official_key_to_ours(key: str, stage: str) -> Optional[str]:
    """Map one official key; returns None for an unknown key. Callers skip `_losses.*` before calling.

    Args:
        key: official state_dict key.
        stage: "prior" (stage-1 checkpoint) or "pred" (stage-2 checkpoint).
    """
    if stage == "prior":
        return _map_prior_key(key)
    if key.startswith("motion_prior."):
        inner = _map_prior_key(key[len("motion_prior."):])
        return None if inner is None else "prior." + inner
    if key.startswith("feature_predictor."):
        rest = _map_network(key[len("feature_predictor."):])
        return None if rest is None else "predictor." + rest
    if key.startswith(_HUBERT_PREFIX[0]):
        ours = _HUBERT_PREFIX[1] + key[len(_HUBERT_PREFIX[0]):]
        for old, new in _WEIGHT_NORM:
            if ours.endswith(old):
                ours = ours[: -len(old)] + new
        return ours
    return None


def _unwrap(state_dict: Mapping) -> Mapping:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        return state_dict["state_dict"]  # a whole Lightning checkpoint
    return state_dict


def detect_kind(state_dict: Mapping, stage: str) -> str:
    """`vq` if the official quantiser codebook is present, `vae` if the VAE heads are; else ValueError."""
    sd = _unwrap(state_dict)
    pre = "" if stage == "prior" else "motion_prior."
    if pre + "quantize.embedding.weight" in sd:
        return "vq"
    if pre + "mean.weight" in sd:
        return "vae"
    raise ValueError(
        f"official {stage} weights hold neither '{pre}quantize.embedding.weight' (VQ) nor '{pre}mean.weight' (VAE); "
        "pass a ProbTalk3D stage-1/stage-2 checkpoint (--stage prior|pred)"
    )


def _default_model(stage: str, kind: str) -> nn.Module:
    """A default-config model on the meta device (shapes only, no memory) for shape checks."""
    from probtalk3d_cli.config import Config
    from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS
    from probtalk3d_cli.models.audio import HUBERT_BASE_CONFIG, AudioEncoder
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import MotionPrior

    cfg = Config()
    cfg.prior.kind = kind
    cfg.prior.token_layout = "official"
    with torch.device("meta"):
        prior = MotionPrior(cfg.prior)
        if stage == "prior":
            return prior
        return MotionPredictor(cfg, OFFICIAL_TRAIN_SUBJECTS, prior, AudioEncoder(cfg.audio, HUBERT_BASE_CONFIG))


def _fmt(items: list[str]) -> str:
    more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
    return ", ".join(items[:6]) + more


def _map(state_dict: Mapping, stage: str, model: Optional[nn.Module]) -> dict[str, Tensor]:
    sd = _unwrap(state_dict)
    if model is None:
        model = _default_model(stage, detect_kind(sd, stage))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    out: dict[str, Tensor] = {}
    seen: set[str] = set()
    unmatched, shaped = [], []
    for key, value in sd.items():
        if _is_ignored(key):
            continue
        ours = official_key_to_ours(key, stage)
        if ours is None or ours not in expected or ours in seen:
            unmatched.append(key)
            continue
        seen.add(ours)
        if tuple(value.shape) != expected[ours]:
            shaped.append(f"{key} {list(value.shape)} (expected {list(expected[ours])})")
            continue
        out[ours] = value
    missing = [k for k in expected if k not in seen]
    if unmatched or shaped or missing:
        parts = []
        if missing:
            parts.append(f"missing (our keys): {_fmt(missing)}")
        if unmatched:
            parts.append(f"unexpected: {_fmt(unmatched)}")
        if shaped:
            parts.append(f"mis-shaped: {_fmt(shaped)}")
        raise ValueError(
            f"the official {stage} weights do not fit the ProbTalk3D architecture ({'; '.join(parts)}); "
            f"pass the official {'stage_1' if stage == 'prior' else 'stage_2'} checkpoint of the matching variant"
        )
    return out


def map_official_prior(state_dict: Mapping, model: Optional[nn.Module] = None) -> dict[str, Tensor]:
    """Official stage-1 state_dict (or whole Lightning checkpoint) -> our MotionPrior state_dict.

    Args:
        state_dict: official keys -> tensors (`_losses.*` ignored).
        model: the MotionPrior to check shapes against; default: a default-config prior of the detected kind
            (VQ with the official token layout, or VAE).

    Returns:
        our key -> tensor, loadable with `MotionPrior.load_state_dict(..., strict=True)`.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys (listed).
    """
    return _map(state_dict, "prior", model)


def map_official_predictor(state_dict: Mapping, model: Optional[nn.Module] = None) -> dict[str, Tensor]:
    """Official stage-2 state_dict (or whole Lightning checkpoint) -> our MotionPredictor state_dict.

    The official stage-2 file holds the prior (`motion_prior.*`), the fine-tuned HuBERT
    (`feature_extractor.audiomodel.*`) and the predictor (`feature_predictor.*`), so the result is self-contained.

    Args:
        state_dict: official keys -> tensors.
        model: the MotionPredictor to check against; default: default config, 32 official identities,
            HuBERT-base architecture, official token layout.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys (listed).
    """
    return _map(state_dict, "pred", model)


def official_config(kind: str = "vq"):
    """The Config of the official models: defaults (official sizes) with the `official` token layout."""
    from probtalk3d_cli.config import Config

    cfg = Config()
    cfg.prior.kind = kind
    cfg.prior.token_layout = "official"
    return cfg


def build_official_prior(state_dict: Mapping):
    """A MotionPrior (eval mode) holding official stage-1 weights (VQ or VAE, detected), built without random init.

    Raises:
        ValueError: the weights do not fit (see `map_official_prior`).
    """
    from probtalk3d_cli.models.layers import load_state_strict
    from probtalk3d_cli.models.prior import MotionPrior

    cfg = official_config(detect_kind(state_dict, "prior"))
    with torch.device("meta"):
        prior = MotionPrior(cfg.prior)
    load_state_strict(prior, map_official_prior(state_dict, prior), "the official stage-1 weights", assign=True)
    return prior.eval()


def build_official_predictor(state_dict: Mapping, identities: Optional[list[str]] = None):
    """A MotionPredictor (eval mode) holding official stage-2 weights: prior, fine-tuned HuBERT-base, predictor.

    Args:
        state_dict: official stage-2 state_dict (or the whole Lightning checkpoint).
        identities: subject IDs in one-hot order; default the 32 official stage-2 training IDs (§4.3).

    Raises:
        ValueError: the weights do not fit (see `map_official_predictor`).
    """
    from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS
    from probtalk3d_cli.models.audio import HUBERT_BASE_CONFIG, AudioEncoder
    from probtalk3d_cli.models.layers import load_state_strict
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import MotionPrior

    cfg = official_config(detect_kind(state_dict, "pred"))
    ids = list(identities) if identities is not None else list(OFFICIAL_TRAIN_SUBJECTS)
    with torch.device("meta"):
        model = MotionPredictor(cfg, ids, MotionPrior(cfg.prior), AudioEncoder(cfg.audio, HUBERT_BASE_CONFIG))
    load_state_strict(model, map_official_predictor(state_dict, model), "the official stage-2 weights", assign=True)
    return model.eval()
