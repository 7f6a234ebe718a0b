"""Stage 1: the motion prior — a transformer VQ-VAE (reference §3) or the VAE comparison variant (§5.1).

Motion is the normalised 53-d feature (50 expression + 3 jaw, §1.3) at 25 fps, shape [B, T, 53], with a [B, T] bool
mask (True = valid frame). Latents are [B, T, d_model].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probtalk3d_cli.config import Config, PriorConfig
from probtalk3d_cli.models.layers import LEAKY_SLOPE, TemporalTransformer, load_state_strict
from probtalk3d_cli.models.quantizer import QuantizerOutput, VectorQuantizer


@dataclass
class PriorOutput:
    """Result of `MotionPrior.forward`.

    Attributes:
        recon: [B, T, 53] reconstruction (normalised space), padded frames 0.
        latent: [B, T, d] what was decoded: VQ = straight-through quantised latent; VAE = posterior sample.
        mask: [B, T] bool mask used.
        vq_loss: VQ only — scalar quantiser loss over valid entries (else None).
        codes: VQ only — [B, T * d / code_dim] code indices, -1 at padding (else None).
        perplexity: VQ only — scalar code-usage perplexity (else None).
        mu, logvar: VAE only — [B, T, d] posterior parameters (else None).
        kl: VAE only — KL(N(mu, sigma^2) || N(0, 1)) averaged over valid latent elements (else None).
    """

    recon: Tensor
    latent: Tensor
    mask: Tensor
    vq_loss: Optional[Tensor] = None
    codes: Optional[Tensor] = None
    perplexity: Optional[Tensor] = None
    mu: Optional[Tensor] = None
    logvar: Optional[Tensor] = None
    kl: Optional[Tensor] = None


def _full_mask(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask shape {list(mask.shape)} does not match the input's [B, T] = {list(x.shape[:2])}")
    return mask


class MotionEncoder(TemporalTransformer):
    """Linear(53 -> d) + LeakyReLU(0.2) -> conv block -> linear embedding -> PE -> enc_layers blocks (§3.1)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__(cfg.d_model, cfg.num_heads, cfg.ff_dim, cfg.enc_layers, cfg.max_len, cfg.dropout)
        self.feature_map = nn.Linear(cfg.nfeats, cfg.d_model)

    def forward(self, motion: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """motion [B, T, 53] -> z [B, T, d] (padded frames 0)."""
        return self.run_trunk(F.leaky_relu(self.feature_map(motion), LEAKY_SLOPE), mask)


class MotionDecoder(TemporalTransformer):
    """Conv block -> linear embedding -> PE -> dec_layers blocks -> Linear(d -> 53, no bias) (§3.3)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__(cfg.d_model, cfg.num_heads, cfg.ff_dim, cfg.dec_layers, cfg.max_len, cfg.dropout)
        self.out = nn.Linear(cfg.d_model, cfg.nfeats, bias=False)

    def forward(self, z: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """z [B, T, d] -> motion [B, T, 53] (padded frames 0)."""
        out = self.out(self.run_trunk(z, mask))
        if mask is not None:
            out = out.masked_fill(~mask[:, :, None], 0.0)
        return out


class MotionPrior(nn.Module):
    """The stage-1 model: encoder, quantiser (`kind` vq) or mu/logvar heads (`kind` vae), decoder.

    Submodules: `encoder`, `decoder`, and `quantizer` (VQ) or `mu`, `logvar` (VAE, each Linear(d -> d)).
    Default config sizes give the official parameter counts (VQ 6,375,680; VAE 6,474,496).
    """

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        if cfg.kind not in ("vq", "vae"):
            raise ValueError(f"prior.kind must be vq or vae, got {cfg.kind!r}")
        self.cfg = copy.deepcopy(cfg)
        self.kind = cfg.kind
        self.encoder = MotionEncoder(cfg)
        self.decoder = MotionDecoder(cfg)
        if cfg.kind == "vq":
            self.quantizer = VectorQuantizer(cfg.num_codes, cfg.code_dim, cfg.beta, cfg.token_layout)
        else:
            self.mu = nn.Linear(cfg.d_model, cfg.d_model)
            self.logvar = nn.Linear(cfg.d_model, cfg.d_model)

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    # ---- pieces ------------------------------------------------------------------------------------------

    def encode(self, motion_n: Tensor, mask: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Encode normalised motion.

        Args:
            motion_n: [B, T, 53] normalised motion (zero-padded).
            mask: [B, T] bool, True = valid.

        Returns:
            VQ: z [B, T, d] (continuous, before the quantiser). VAE: (mu, logvar), each [B, T, d].
        """
        h = self.encoder(motion_n, mask)
        if self.kind == "vq":
            return h
        return self.posterior(h)

    def posterior(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """VAE heads: h [B, T, d] -> (mu, logvar). Stage 2 feeds the predictor output here (§5.2)."""
        self._require("vae", "posterior")
        return self.mu(h), self.logvar(h)

    def quantize(
        self,
        z: Tensor,
        mask: Optional[Tensor] = None,
        sample: bool = False,
        temperature: float = 0.2,
        k: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> QuantizerOutput:
        """VQ only: quantise z [B, T, d] (argmin, or temperature sampling when `sample`); see VectorQuantizer."""
        self._require("vq", "quantize")
        return self.quantizer(z, mask, sample=sample, temperature=temperature, k=k, generator=generator)

    def sample_latent(
        self,
        mu: Tensor,
        logvar: Tensor,
        fact: float = 1.0,
        mean: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """VAE sampling (§5.3): z = mu + fact * sigma * eps, sigma = exp(logvar / 2), eps ~ N(0, I).

        Args:
            mu, logvar: [B, T, d].
            fact: noise scale; 1 = plain reparameterised sample (training), official inference default 20.
            mean: return mu itself (deterministic; this works, unlike the official flag, §11.11).
            generator: optional torch.Generator for reproducible noise (drawn on the generator's device).

        Returns:
            [B, T, d]; differentiable w.r.t. mu and logvar.
        """
        if mean:
            return mu
        noise_device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=noise_device, dtype=mu.dtype).to(mu.device)
        return mu + fact * torch.exp(0.5 * logvar) * eps

    def decode(self, z: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Latent [B, T, d] -> normalised motion [B, T, 53] (padded frames 0)."""
        return self.decoder(z, mask)

    # ---- training forward --------------------------------------------------------------------------------

    def forward(self, motion_n: Tensor, mask: Optional[Tensor] = None) -> PriorOutput:
        """Stage-1 pass: encode, quantise (argmin) or sample the posterior (fact 1), decode.

        Args:
            motion_n: [B, T, 53] normalised motion, zero-padded.
            mask: [B, T] bool (True = valid, prefix); None = all valid.

        Returns:
            PriorOutput (loss terms are masked means; reconstruction losses are in training/losses.py).
        """
        mask = _full_mask(motion_n, mask)
        if self.kind == "vq":
            z = self.encoder(motion_n, mask)
            q = self.quantizer(z, mask)
            recon = self.decoder(q.z_q, mask)
            return PriorOutput(recon=recon, latent=q.z_q, mask=mask, vq_loss=q.loss, codes=q.codes,
                               perplexity=q.perplexity)
        mu, logvar = self.posterior(self.encoder(motion_n, mask))
        z = self.sample_latent(mu, logvar)
        recon = self.decoder(z, mask)
        return PriorOutput(recon=recon, latent=z, mask=mask, mu=mu, logvar=logvar, kl=kl_divergence(mu, logvar, mask))

    def _require(self, kind: str, what: str) -> None:
        if self.kind != kind:
            raise ValueError(f"MotionPrior.{what} needs a {kind} prior but this prior is {self.kind} (prior.kind)")

    # ---- checkpoints -------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, payload: dict) -> "MotionPrior":
        """Rebuild from a loaded prior checkpoint (checkpoint.load_checkpoint payload), in eval mode."""
        from probtalk3d_cli.config import from_dict

        cfg = from_dict(payload.get("config"), source=f"checkpoint {payload.get('path', '')}".strip())
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            model = cls(cfg.prior)
        load_state_strict(model, payload["model"], payload.get("path", "checkpoint"), assign=True)
        return model.eval()


def kl_divergence(mu: Tensor, logvar: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per element, averaged over valid elements (§5.1)."""
    kl = 0.5 * (mu ** 2 + torch.exp(logvar) - 1.0 - logvar)  # [B, T, d]
    if mask is None:
        return kl.mean()
    m = mask[:, :, None].to(kl.dtype)
    return (kl * m).sum() / (m.sum() * kl.shape[-1])


def build_prior(cfg: Union[Config, PriorConfig]) -> MotionPrior:
    """A freshly initialised MotionPrior from the `prior` section (or a whole Config)."""
    return MotionPrior(cfg.prior if isinstance(cfg, Config) else cfg)


def prior_config_dict(prior: MotionPrior, cfg: Optional[Config] = None) -> dict:
    """The Config dict to embed in a prior checkpoint: `cfg` (or defaults) with its prior section = the model's."""
    base = copy.deepcopy(cfg) if cfg is not None else Config()
    base.prior = copy.deepcopy(prior.cfg)
    return base.to_dict()


def save_prior(
    path: Union[str, Path],
    prior: MotionPrior,
    cfg: Optional[Config] = None,
    meta: Optional[dict] = None,
    train_state: Optional[dict] = None,
) -> Path:
    """Write a `prior` checkpoint (atomic). Meta gets `normalisation` (the fixed §1.3 ranges) unless given."""
    from probtalk3d_cli.checkpoint import save_checkpoint

    full_meta = {"normalisation": normalisation_meta()}
    full_meta.update(meta or {})
    return save_checkpoint(path, "prior", prior_config_dict(prior, cfg), prior.state_dict(), full_meta, train_state)


def load_prior(spec: Union[str, Path, dict]) -> MotionPrior:
    """A MotionPrior (eval mode) from a prior checkpoint path, run directory, or already loaded payload."""
    if isinstance(spec, dict):
        payload = spec
    else:
        from probtalk3d_cli.checkpoint import load_checkpoint

        payload = load_checkpoint(spec, expect="prior")
    if payload.get("kind") not in (None, "prior"):
        raise ValueError(f"checkpoint {payload.get('path', '')} is a {payload.get('kind')} checkpoint, not a prior")
    return MotionPrior.from_checkpoint(payload)


def normalisation_meta() -> dict:
    """The fixed min-max ranges of the motion feature (§1.3), as stored in checkpoint meta."""
    from probtalk3d_cli.data.schema import EXP_RANGE, JAW_RANGE, N_EXP_USED, NFEATS

    return {"exp_range": list(EXP_RANGE), "jaw_range": list(JAW_RANGE), "n_exp": N_EXP_USED, "nfeats": NFEATS}


__all__ = [
    "MotionPrior", "MotionEncoder", "MotionDecoder", "PriorOutput", "kl_divergence", "build_prior", "save_prior",
    "load_prior", "prior_config_dict", "normalisation_meta",
]
