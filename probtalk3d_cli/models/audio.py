"""HuBERT audio encoder of stage 2 (reference §4.1–§4.2), batched with padding and exact per-clip results.

16 kHz waveforms [B, S] -> HuBERT last hidden state at ~50 Hz -> pairs of frames concatenated to 25 fps [B, T, 2H].
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from probtalk3d_cli.config import AudioConfig
from probtalk3d_cli.models.layers import mask_from_lengths

log = logging.getLogger(__name__)

HUB_DEFAULT = "facebook/hubert-base-ls960"
NORM_EPS = 1e-7  # the Hugging Face Wav2Vec2 feature extractor's variance epsilon
MIN_SAMPLES = 400  # the first CNN layer's kernel: shorter audio gives no HuBERT frame

# Architecture and regularisation of facebook/hubert-base-ls960 (its public config.json, transformers 4.x names).
# Used to rebuild the official stage-2 HuBERT offline (import-official) and as the template of the `tiny` model.
HUBERT_BASE_CONFIG: dict = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "attention_dropout": 0.1,
    "feat_proj_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "final_dropout": 0.1,
    "layerdrop": 0.1,
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "apply_spec_augment": True,
    "mask_time_prob": 0.05,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
}


def tiny_hubert_config(cfg: AudioConfig) -> dict:
    """A small random HuBERT with the base model's structure (same CNN strides, so the same frame counts)."""
    d = dict(HUBERT_BASE_CONFIG)
    groups = math.gcd(16, cfg.tiny_hidden)
    d.update(
        hidden_size=cfg.tiny_hidden,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        intermediate_size=cfg.tiny_ff,
        conv_dim=[cfg.tiny_conv_dim] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=groups,
    )
    return d


FAST_DROPOUT_ATTENTION = "probtalk3d_fast_dropout"


def _fast_dropout_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """HF attention function: softmax(QK^T * scaling + mask) with `fast_dropout` on the probabilities, times V
    (the eager formula) when dropout is active; otherwise HF's SDPA implementation, unchanged."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from probtalk3d_cli.models.layers import fast_dropout

    if not (dropout > 0.0 and module.training):
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, scaling=scaling,
                                              dropout=0.0, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:  # SDPA's mask (registered below): boolean, True = attend
        weights = weights.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool \
            else weights + attention_mask
    weights = fast_dropout(torch.softmax(weights, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register_fast_dropout_attention() -> None:
    """Register the attention function, and SDPA's mask builder under the same name (HF picks both by name)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(FAST_DROPOUT_ATTENTION, _fast_dropout_attention)
    AttentionMaskInterface.register(FAST_DROPOUT_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def _offline_error(name: str) -> RuntimeError:
    return RuntimeError(
        f"cannot load the HuBERT weights '{name}': they are not in the Hugging Face cache and the hub is unreachable; "
        "connect to the internet once so the cache fills, or download the model repository and pass its folder with "
        "--set audio.model=/path/to/hubert-base-ls960, or use weights converted with probtalk3d import-official"
    )


def _build_hubert(cfg: AudioConfig, hubert_config: Optional[dict]):
    """HubertModel per `cfg.model` (hub id | local directory | tiny) or, when given, from a stored config dict."""
    from transformers import HubertConfig, HubertModel
    from transformers.utils import logging as hf_logging

    if hubert_config is not None:
        return HubertModel(HubertConfig.from_dict(dict(hubert_config)))
    name = str(cfg.model)
    if name == "tiny":
        return HubertModel(HubertConfig.from_dict(tiny_hubert_config(cfg)))
    path = Path(name).expanduser()
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"audio.model folder {path} has no config.json; pass a folder saved with save_pretrained "
                "(config.json + weights) or a Hugging Face model id"
            )
        source, is_folder = str(path), True
    elif looks_like_path:
        raise FileNotFoundError(
            f"audio.model folder {path} does not exist; pass an existing HuBERT folder, a Hugging Face id or 'tiny'"
        )
    else:
        source, is_folder = name, False
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # unused-weight notices of the hub checkpoint are expected
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # per-retry connection warnings; our error below says what to do
    try:
        return HubertModel.from_pretrained(source)
    except OSError as exc:
        if is_folder:
            raise RuntimeError(f"cannot load HuBERT from folder {path} ({str(exc).splitlines()[0]}); re-save it with save_pretrained") from None
        raise _offline_error(name) from None
    except ValueError as exc:  # e.g. an invalid repository id
        raise ValueError(f"audio.model {name!r} is not a Hugging Face id, a folder, or 'tiny' ({str(exc).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hub_logger.setLevel(hub_level)


def normalize_waveform(x: Tensor) -> Tensor:
    """Zero mean, unit variance over the given samples (as the HF Wav2Vec2 feature extractor with do_normalize).

    The official pipeline first min-max scales each clip to [-1, 1]; that step is affine, so after this
    normalisation it changes nothing except through the 1e-7 epsilon (reference §1.4, §11.12) and is omitted.
    """
    x = x.float()
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(var + NORM_EPS)


def pair_frames(hidden: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """50 Hz -> 25 fps (§4.2): drop a clip's last frame if its count is odd, concatenate frames 2i and 2i+1.

    Args:
        hidden: [B, A, H] HuBERT frames (zero-padded).
        frame_lengths: [B] valid HuBERT frames A_i.

    Returns:
        feats [B, max_i floor(A_i/2), 2H] (first H dims = frame 2i), feat_lengths [B] = floor(A_i / 2).
    """
    b, a, h = hidden.shape
    feat_lengths = frame_lengths // 2
    tp = int(feat_lengths.max()) if b else 0
    feats = hidden[:, : 2 * tp].reshape(b, tp, 2 * h)  # [B, A', H] -> [B, A'/2, 2H]
    mask = mask_from_lengths(feat_lengths, tp).to(feats.device)
    return feats.masked_fill(~mask[:, :, None], 0.0), feat_lengths


class AudioEncoder(nn.Module):
    """`transformers.HubertModel` with the official freezing policy, per-utterance normalisation and frame pairing.

    Freezing (cfg flags, official values): CNN feature encoder, feature projection and transformer layers
    0..freeze_layers-1 get requires_grad False; the positional conv, later layers, the encoder LayerNorm and
    `masked_spec_embed` stay trainable. In training mode HuBERT's own SpecAugment time masking, LayerDrop and
    dropouts act as its config sets them (official behaviour, §4.1); eval mode turns them off.

    Batching: the CNN runs per clip (its first layer group-normalises over time, so padding would change it);
    the feature projection and transformer then run on the padded batch with an attention mask (HF zeroes padded
    frames before the positional conv, which equals per-clip zero padding), so a padded batch equals clips alone.

    Args:
        cfg: the `audio` config section (`model` = hub id | local folder | tiny).
        hubert_config: a stored HubertConfig dict; when given, builds that architecture with random weights
            (to be filled from a checkpoint) and never touches the network.
    """

    def __init__(self, cfg: AudioConfig, hubert_config: Optional[dict] = None):
        super().__init__()
        self.cfg = cfg
        self.hubert = _build_hubert(cfg, hubert_config)
        self.apply_freezing()

    # ---- properties --------------------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return int(self.hubert.config.hidden_size)

    @property
    def output_dim(self) -> int:
        """Width of the paired 25 fps features (2 x hidden size; 1536 for HuBERT-base)."""
        return 2 * self.hidden_size

    def hubert_config_dict(self) -> dict:
        """The HubertConfig as plain JSON types (stored in predictor checkpoint meta as `hubert_config`)."""
        return json.loads(self.hubert.config.to_json_string(use_diff=False))

    def apply_freezing(self) -> None:
        """Set requires_grad per the freezing flags (official: CNN, projection, layers 0-1 frozen)."""
        n_layers = len(self.hubert.encoder.layers)
        if self.cfg.freeze_layers > n_layers:
            raise ValueError(
                f"audio.freeze_layers is {self.cfg.freeze_layers} but the HuBERT model has {n_layers} layers; "
                f"use 0..{n_layers}"
            )
        for p in self.hubert.parameters():
            p.requires_grad_(True)
        self.hubert.feature_extractor._requires_grad = True
        if self.cfg.freeze_feature_encoder:
            self.hubert.feature_extractor._freeze_parameters()
        if self.cfg.freeze_projection:
            for p in self.hubert.feature_projection.parameters():
                p.requires_grad_(False)
        for layer in self.hubert.encoder.layers[: self.cfg.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def use_fast_dropout(self) -> int:
        """Training speed on CPU: HuBERT's dropouts (hidden, activation, projection, attention probabilities) draw
        their masks with `layers.fast_dropout` (four 16-bit numbers per 64-bit draw) instead of one random number per
        element — the same rates and expectation, about 3x cheaper masks (reference-size stage-2 step on 2 cores:
        the per-element masks cost about 0.2 s). Attention runs the eager formula with that dropout in training
        mode and the usual SDPA kernel otherwise. Returns the number of dropout modules replaced."""
        from probtalk3d_cli.models.layers import use_fast_dropout

        _register_fast_dropout_attention()
        self.hubert.config._attn_implementation = FAST_DROPOUT_ATTENTION
        return use_fast_dropout(self.hubert)

    # ---- forward -----------------------------------------------------------------------------------------

    def frame_lengths(self, audio_lengths: Tensor) -> Tensor:
        """HuBERT frames per clip from sample counts (the CNN formula; equals data.schema.audio_frames)."""
        return self.hubert._get_feat_extract_output_lengths(torch.as_tensor(audio_lengths)).clamp(min=0).long()

    def cnn_features(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise each clip over its valid samples and run the CNN feature encoder per clip.

        Deterministic (no dropout inside the CNN), so a trainer may cache the result while the CNN is frozen.

        Args:
            audio: [B, S] float 16 kHz waveforms, zero-padded.
            audio_lengths: [B] valid samples.

        Returns:
            cnn_feats [B, A, C] zero-padded (C = CNN channels, 512 for HuBERT-base), frame_lengths [B] = A_i.

        Raises:
            ValueError: a clip shorter than 400 samples (25 ms).
        """
        if audio.dim() != 2:
            raise ValueError(f"audio must be [B, S], got {list(audio.shape)}")
        lengths = torch.as_tensor(audio_lengths).long().cpu()
        if lengths.numel() != audio.shape[0]:
            raise ValueError(f"audio_lengths has {lengths.numel()} entries for a batch of {audio.shape[0]} clips")
        if int(lengths.min()) < MIN_SAMPLES:
            raise ValueError(
                f"an audio clip has {int(lengths.min())} samples; HuBERT needs at least {MIN_SAMPLES} (25 ms at 16 kHz)"
            )
        frozen = not any(p.requires_grad for p in self.hubert.feature_extractor.parameters())
        feats = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            for i in range(audio.shape[0]):
                x = audio[i, : int(lengths[i])].float()
                if self.cfg.normalize:
                    x = normalize_waveform(x)
                f = self.hubert.feature_extractor(x[None])  # [1, S_i] -> [1, C, A_i]
                feats.append(f[0].transpose(0, 1))  # [C, A_i] -> [A_i, C]
        frame_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        out = nn.utils.rnn.pad_sequence(feats, batch_first=True)  # [B, A, C]
        return out, frame_lengths.to(audio.device)

    def forward_from_cnn(self, cnn_feats: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Feature projection + (SpecAugment in training) + transformer encoder + pairing.

        Args:
            cnn_feats: [B, A, C] from `cnn_features` (zero-padded).
            frame_lengths: [B] valid CNN frames.

        Returns:
            feats [B, Tp, 2H] at 25 fps (padded frames 0), feat_lengths [B] = floor(A_i / 2).
        """
        frame_lengths = torch.as_tensor(frame_lengths, device=cnn_feats.device).long()
        mask = mask_from_lengths(frame_lengths, cnn_feats.shape[1])  # [B, A]
        attn_mask = None if bool(mask.all()) else mask
        hidden = self.hubert.feature_projection(cnn_feats)  # [B, A, H]
        hidden = self.hubert._mask_hidden_states(hidden, attention_mask=attn_mask)
        hidden = self.hubert.encoder(hidden, attention_mask=attn_mask).last_hidden_state  # [B, A, H]
        return pair_frames(hidden, frame_lengths)

    def forward(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Waveforms -> paired HuBERT features.

        Args:
            audio: [B, S] 16 kHz float waveforms, zero-padded.
            audio_lengths: [B] valid samples per clip.

        Returns:
            feats [B, Tp, 2H] (25 fps; frame i = HuBERT frames 2i | 2i+1; padded frames 0),
            feat_lengths [B] = floor(A_i / 2) with A_i = data.schema.audio_frames(samples_i).
        """
        cnn, frame_lengths = self.cnn_features(audio, audio_lengths)
        return self.forward_from_cnn(cnn, frame_lengths)


def build_audio_encoder(cfg: AudioConfig, hubert_config: Optional[dict] = None) -> AudioEncoder:
    """AudioEncoder per config (hub id / folder / tiny) or from a stored HubertConfig dict (no download)."""
    return AudioEncoder(cfg, hubert_config)
