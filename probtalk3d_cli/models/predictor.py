"""Stage 2: the speech- and style-conditioned latent predictor (reference §4.3–§4.5, §5.2) and the composite model
(frozen prior + HuBERT audio encoder + predictor) that training, generation and evaluation use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probtalk3d_cli.config import Config, PredictorConfig
from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES
from probtalk3d_cli.models.audio import AudioEncoder
from probtalk3d_cli.models.layers import TemporalTransformer, load_state_strict, mask_from_lengths
from probtalk3d_cli.models.prior import MotionPrior, normalisation_meta


class LatentPredictor(TemporalTransformer):
    """Audio features + style -> latent (§4.4).

    Linear(2H -> d) -> multiply by the style embedding Linear(n_subjects + 8 + 3 -> d, no bias) of the one-hot
    (subject | emotion | intensity) -> conv block -> linear embedding -> PE -> num_layers blocks.
    With 32 subjects and the default config: 6,326,272 parameters.
    """

    def __init__(self, cfg: PredictorConfig, audio_dim: int, num_subjects: int):
        super().__init__(cfg.d_model, cfg.num_heads, cfg.ff_dim, cfg.num_layers, cfg.max_len, cfg.dropout)
        self.num_subjects = num_subjects
        self.style_dim = num_subjects + len(EMOTIONS) + len(INTENSITIES)
        self.audio_map = nn.Linear(audio_dim, cfg.d_model)
        self.style = nn.Linear(self.style_dim, cfg.d_model, bias=False)

    def style_onehot(self, subject: Tensor, emotion: Tensor, intensity: Tensor) -> Tensor:
        """[B] indices -> [B, n_subjects + 11] one-hot (subject | emotion | intensity) (§4.3).

        Raises:
            ValueError: an index out of range.
        """
        for name, idx, n in (("subject", subject, self.num_subjects), ("emotion", emotion, len(EMOTIONS)),
                             ("intensity", intensity, len(INTENSITIES))):
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValueError(f"{name} index {idx.tolist()} out of range; the model knows {n} ({name} 0..{n - 1})")
        return torch.cat(
            [F.one_hot(subject.long(), self.num_subjects), F.one_hot(emotion.long(), len(EMOTIONS)),
             F.one_hot(intensity.long(), len(INTENSITIES))], dim=1,
        ).float()

    def forward(self, feats: Tensor, mask: Optional[Tensor], subject: Tensor, emotion: Tensor,
                intensity: Tensor) -> Tensor:
        """feats [B, T, 2H], mask [B, T], style indices [B] -> latent [B, T, d] (padded frames 0)."""
        onehot = self.style_onehot(subject, emotion, intensity).to(feats.device, feats.dtype)
        h = self.audio_map(feats) * self.style(onehot)[:, None, :]  # FiLM-like gate without shift
        return self.run_trunk(h, mask)


@dataclass
class PredictorOutput:
    """Result of `MotionPredictor.forward` (training / validation pass).

    Attributes:
        recon: [B, T', 53] motion decoded from the predicted latent (normalised), padded frames 0.
        mask: [B, T'] bool, valid frames after audio/motion alignment (T'_i = min(T_i, floor(A_i/2)), §4.2).
        lengths: [B] long T'_i.
        latent_raw: [B, T', d] predictor output before the quantiser / VAE heads.
        latent_pred: [B, T', d] VQ: straight-through quantised predictor latent; VAE: sample from the prior's
            heads applied to the predictor output.
        latent_target: [B, T', d] or None — VQ: quantised latent of the frozen encoder on the ground truth;
            VAE: a sample of the frozen posterior; None without ground-truth motion. No gradient.
        motion: [B, T', 53] or None — the ground truth cut to T'.
        codes: VQ: [B, T' * d / code_dim] predicted codes (-1 at padding); VAE: None.
    """

    recon: Tensor
    mask: Tensor
    lengths: Tensor
    latent_raw: Tensor
    latent_pred: Tensor
    latent_target: Optional[Tensor] = None
    motion: Optional[Tensor] = None
    codes: Optional[Tensor] = None


class MotionPredictor(nn.Module):
    """Frozen motion prior + HuBERT audio encoder + latent predictor (the stage-2 model).

    The prior gets requires_grad False and stays in eval mode even when the composite is put in train mode
    (fixes §11.5: the official prior ran its PE dropout while producing targets). Gradients still flow through
    the frozen decoder and the straight-through quantiser into the predictor and the trainable HuBERT layers.

    Attributes:
        prior: MotionPrior (frozen).
        audio_encoder: AudioEncoder.
        predictor: LatentPredictor.
        identities: subject IDs in one-hot order.
        config: the Config the model was built from (prior section = the prior's own config).
    """

    def __init__(self, config: Config, identities: Sequence[str], prior: MotionPrior, audio_encoder: AudioEncoder):
        super().__init__()
        identities = [str(s) for s in identities]
        if not identities or len(set(identities)) != len(identities):
            raise ValueError(f"identities must be a non-empty list of distinct subject IDs, got {identities!r}")
        if config.predictor.d_model != prior.d_model:
            raise ValueError(
                f"predictor.d_model ({config.predictor.d_model}) must equal the prior's d_model ({prior.d_model}); "
                "set --set predictor.d_model to the prior's width"
            )
        self.config = copy.deepcopy(config)
        self.config.prior = copy.deepcopy(prior.cfg)
        self.config.audio = copy.deepcopy(audio_encoder.cfg)
        self.identities = identities
        self.prior = prior
        self.audio_encoder = audio_encoder
        self.predictor = LatentPredictor(config.predictor, audio_encoder.output_dim, len(identities))
        for p in self.prior.parameters():
            p.requires_grad_(False)
        self.prior.eval()

    # ---- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_configs(cls, cfg: Config, identities: Sequence[str], prior: MotionPrior,
                     audio_encoder: Optional[AudioEncoder] = None) -> "MotionPredictor":
        """New stage-2 model: `prior` (e.g. from load_prior; frozen in place) + AudioEncoder(cfg.audio) (loads
        HuBERT per cfg.audio.model unless `audio_encoder` is given) + a freshly initialised predictor."""
        if audio_encoder is None:
            audio_encoder = AudioEncoder(cfg.audio)
        return cls(cfg, identities, prior, audio_encoder)

    def train(self, mode: bool = True) -> "MotionPredictor":
        super().train(mode)
        self.prior.eval()  # always: the frozen prior never runs dropout (§11.5)
        return self

    @property
    def kind(self) -> str:
        return self.prior.kind

    # ---- pieces ------------------------------------------------------------------------------------------

    def encode_audio(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """[B, S] waveforms, [B] samples -> feats [B, Tp, 2H] at 25 fps, feat_lengths [B] = floor(A_i / 2)."""
        return self.audio_encoder(audio, audio_lengths)

    def predict_latent(self, feats: Tensor, mask: Optional[Tensor], subject: Tensor, emotion: Tensor,
                       intensity: Tensor) -> Tensor:
        """Paired audio features [B, T, 2H] + style indices [B] -> predicted latent [B, T, d]."""
        return self.predictor(feats, mask, subject, emotion, intensity)

    @torch.no_grad()
    def decode(
        self,
        latent: Tensor,
        mask: Optional[Tensor] = None,
        sample: bool = True,
        temperature: float = 0.2,
        k: int = 1,
        fact: float = 20.0,
        mean: bool = False,
        num_samples: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Inference: predicted latent -> motion samples through the frozen prior (§4.5, §5.3).

        The N samples reuse the one latent (one audio encoding, one predictor pass) and are decoded as one batch.

        Args:
            latent: [B, T, d] from `predict_latent`.
            mask: [B, T] bool or None.
            sample: VQ — True: temperature sampling of codes; False: nearest code (deterministic).
            temperature, k: VQ sampling controls (official defaults 0.2, 1).
            fact: VAE — z = mu + fact * sigma * eps (official inference default 20).
            mean: VAE — z = mu (deterministic).
            num_samples: N.
            generator: optional torch.Generator; makes the draws reproducible (a CPU generator also works for a
                model on another device: the draws then happen on the CPU).

        Returns:
            [B, N, T, 53] normalised motion (padded frames 0).
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        b, t, d = latent.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=latent.device)
        stochastic = sample if self.kind == "vq" else not mean
        n = num_samples if stochastic else 1
        z = latent.repeat_interleave(n, dim=0)  # [B*n, T, d], row b*n + j = sample j of clip b
        m = mask.repeat_interleave(n, dim=0)
        if self.kind == "vq":
            z = self.prior.quantize(z, m, sample=sample, temperature=temperature, k=k, generator=generator).z_q
        else:
            mu, logvar = self.prior.posterior(z)
            z = self.prior.sample_latent(mu, logvar, fact=fact, mean=mean, generator=generator)
        motion = self.prior.decode(z, m).view(b, n, t, -1)  # [B, n, T, 53]
        return motion.expand(b, num_samples, t, motion.shape[-1]).contiguous() if n != num_samples else motion

    # ---- training forward --------------------------------------------------------------------------------

    def forward_features(
        self,
        feats: Tensor,
        feat_lengths: Tensor,
        subject: Tensor,
        emotion: Tensor,
        intensity: Tensor,
        motion: Optional[Tensor] = None,
        motion_lengths: Optional[Tensor] = None,
    ) -> PredictorOutput:
        """Training/validation pass from paired audio features (e.g. after a cached-CNN `forward_from_cnn`).

        Alignment (§4.2): T'_i = min(T_i, floor(A_i/2)) when motion is given, else floor(A_i/2); the predictor,
        the frozen encoder and the decoder all see exactly T'_i frames of clip i.

        Args:
            feats: [B, Tp, 2H] paired features; feat_lengths: [B].
            subject, emotion, intensity: [B] long style indices.
            motion: [B, T, 53] normalised ground truth (zero-padded) or None; motion_lengths: [B] valid frames.

        Returns:
            PredictorOutput.
        """
        feat_lengths = torch.as_tensor(feat_lengths, device=feats.device).long()
        lengths = feat_lengths
        if motion is not None:
            if motion_lengths is None:
                motion_lengths = torch.full((motion.shape[0],), motion.shape[1], dtype=torch.long)
            lengths = torch.minimum(feat_lengths, torch.as_tensor(motion_lengths, device=feats.device).long())
        t = int(lengths.max())
        mask = mask_from_lengths(lengths, t)  # [B, T']
        feats = feats[:, :t].masked_fill(~mask[:, :, None], 0.0)
        z_a = self.predict_latent(feats, mask, subject.to(feats.device), emotion.to(feats.device),
                                  intensity.to(feats.device))
        target_motion = None
        if motion is not None:
            target_motion = motion[:, :t].masked_fill(~mask[:, :, None], 0.0)
        codes = None
        latent_target = None
        if self.kind == "vq":
            q = self.prior.quantize(z_a, mask)
            latent_pred, codes = q.z_q, q.codes
            if target_motion is not None:
                with torch.no_grad():
                    latent_target = self.prior.quantize(self.prior.encode(target_motion, mask), mask).z_q
        else:
            mu, logvar = self.prior.posterior(z_a)
            latent_pred = self.prior.sample_latent(mu, logvar).masked_fill(~mask[:, :, None], 0.0)
            if target_motion is not None:
                with torch.no_grad():
                    mu_m, logvar_m = self.prior.encode(target_motion, mask)
                    latent_target = self.prior.sample_latent(mu_m, logvar_m).masked_fill(~mask[:, :, None], 0.0)
        recon = self.prior.decode(latent_pred, mask)
        return PredictorOutput(recon=recon, mask=mask, lengths=lengths, latent_raw=z_a, latent_pred=latent_pred,
                               latent_target=latent_target, motion=target_motion, codes=codes)

    def forward(
        self,
        audio: Tensor,
        audio_lengths: Tensor,
        subject: Tensor,
        emotion: Tensor,
        intensity: Tensor,
        motion: Optional[Tensor] = None,
        motion_lengths: Optional[Tensor] = None,
    ) -> PredictorOutput:
        """Training/validation pass from raw audio [B, S] (+ lengths); see `forward_features`."""
        feats, feat_lengths = self.encode_audio(audio, audio_lengths)
        return self.forward_features(feats, feat_lengths, subject, emotion, intensity, motion, motion_lengths)

    # ---- checkpoints -------------------------------------------------------------------------------------

    def checkpoint_meta(self) -> dict:
        """Meta for a self-contained predictor checkpoint (see `save_predictor`)."""
        return {
            "identities": list(self.identities),
            "emotions": list(EMOTIONS),
            "intensities": list(INTENSITIES),
            "normalisation": normalisation_meta(),
            "hubert_config": self.audio_encoder.hubert_config_dict(),
        }

    @classmethod
    def from_checkpoint(cls, payload: dict) -> "MotionPredictor":
        """Rebuild from a loaded predictor checkpoint payload (no network: HuBERT comes from meta + weights).

        Raises:
            ValueError: meta lacks `identities` or `hubert_config`, or the weights do not fit.
        """
        from probtalk3d_cli.config import from_dict

        where = payload.get("path", "checkpoint")
        meta = payload.get("meta") or {}
        for key in ("identities", "hubert_config"):
            if key not in meta:
                raise ValueError(
                    f"predictor checkpoint {where} lacks meta '{key}'; it was not written by probtalk3d train-pred or "
                    "import-official — re-train or re-import it"
                )
        cfg = from_dict(payload.get("config"), source=f"checkpoint {where}")
        with torch.device("meta"):  # no random init (seconds for HuBERT-base): every tensor comes from the file
            prior = MotionPrior(cfg.prior)
            audio = AudioEncoder(cfg.audio, hubert_config=meta["hubert_config"])
            model = cls(cfg, meta["identities"], prior, audio)
        load_state_strict(model, payload["model"], where, assign=True)
        return model.eval()


def build_predictor(cfg: Config, identities: Sequence[str], prior: MotionPrior,
                    audio_encoder: Optional[AudioEncoder] = None) -> MotionPredictor:
    """Same as `MotionPredictor.from_configs`."""
    return MotionPredictor.from_configs(cfg, identities, prior, audio_encoder)


def save_predictor(
    path: Union[str, Path],
    model: MotionPredictor,
    meta: Optional[dict] = None,
    train_state: Optional[dict] = None,
) -> Path:
    """Write a self-contained `predictor` checkpoint (atomic): config, prior + HuBERT + predictor weights, and meta
    `identities`, `emotions`, `intensities`, `normalisation`, `hubert_config` (+ `meta` extras)."""
    from probtalk3d_cli.checkpoint import save_checkpoint

    full_meta = model.checkpoint_meta()
    full_meta.update(meta or {})
    return save_checkpoint(path, "predictor", model.config.to_dict(), model.state_dict(), full_meta, train_state)


def load_predictor(spec: Union[str, Path, dict]) -> MotionPredictor:
    """A MotionPredictor (eval mode) from a predictor checkpoint path, run directory, `demo`, or loaded payload."""
    if isinstance(spec, dict):
        payload = spec
    else:
        from probtalk3d_cli.checkpoint import load_checkpoint

        payload = load_checkpoint(spec, expect="predictor")
    if payload.get("kind") not in (None, "predictor"):
        raise ValueError(f"checkpoint {payload.get('path', '')} is a {payload.get('kind')} checkpoint, not a predictor")
    return MotionPredictor.from_checkpoint(payload)
