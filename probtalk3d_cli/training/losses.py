"""Training losses of both stages (reference §3.4, §4.6, §5.1, §5.2) as masked means.

Every term is a mean over the VALID elements of the whole batch (padded frames excluded). Each valid frame
contributes the same number of elements to a term (50 expression values, 3 jaw values, d latent values, d quantiser
values), so the batch value of every term, and of the total, equals the frame-weighted mean of the per-clip values:
`L_batch = sum_i T_i * L_i / sum_i T_i` (T_i = valid frames of clip i; in stage 2 after audio/motion alignment).
With batch size 1 and no padding every term equals the official one (PyTorch L1Loss / mean reductions).
"""

from __future__ import annotations

from typing import Optional, Union

from torch import Tensor

from probtalk3d_cli.config import Config, PredictorConfig, PriorConfig
from probtalk3d_cli.data.schema import N_EXP_USED


def masked_l1(pred: Tensor, target: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Mean absolute error over valid frames: pred/target [B, T, C], mask [B, T] bool (None = all valid)."""
    err = (pred - target).abs()
    if mask is None:
        return err.mean()
    m = mask[:, :, None].to(err.dtype)
    return (err * m).sum() / (m.sum() * err.shape[-1]).clamp(min=1)


def recon_terms(recon: Tensor, motion: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """(expression L1 over dims 0..49, jaw L1 over dims 50..52) in normalised space."""
    return (masked_l1(recon[..., :N_EXP_USED], motion[..., :N_EXP_USED], mask),
            masked_l1(recon[..., N_EXP_USED:], motion[..., N_EXP_USED:], mask))


def _section(cfg, name: str, cls):
    if isinstance(cfg, Config):
        return getattr(cfg, name)
    if isinstance(cfg, cls):
        return cfg
    raise TypeError(f"expected a Config or {cls.__name__}, got {type(cfg).__name__}")


def prior_losses(prior, batch: dict, cfg: Union[Config, PriorConfig], out=None) -> dict[str, Tensor]:
    """Stage-1 loss of a MotionPrior on a collated batch.

    VQ (§3.4): total = w_quant * vq + w_exp * exp + w_jaw * jaw.
    VAE (§5.1): total = vae_w_kl * kl + vae_w_exp * exp + vae_w_jaw * jaw (KL averaged over latent elements).

    Args:
        prior: MotionPrior.
        batch: `motion` [B, T, 53] normalised, zero-padded; `mask` [B, T] bool.
        cfg: Config or its `prior` section (loss weights).
        out: optional PriorOutput of `prior(motion, mask)` already computed for this batch (validation reuses it).

    Returns:
        {"vq" or "kl", "exp", "jaw", "total", "frames"}: 0-dim tensors; `total` carries the gradient; `frames` is
        the number of valid frames (not a loss: the weight for frame-weighted epoch means).
    """
    pcfg = _section(cfg, "prior", PriorConfig)
    motion, mask = batch["motion"], batch["mask"]
    if out is None:
        out = prior(motion, mask)
    exp, jaw = recon_terms(out.recon, motion, mask)
    if prior.kind == "vq":
        terms = {"vq": out.vq_loss, "exp": exp, "jaw": jaw}
        total = pcfg.w_quant * out.vq_loss + pcfg.w_exp * exp + pcfg.w_jaw * jaw
    else:
        terms = {"kl": out.kl, "exp": exp, "jaw": jaw}
        total = pcfg.vae_w_kl * out.kl + pcfg.vae_w_exp * exp + pcfg.vae_w_jaw * jaw
    terms["total"] = total
    terms["frames"] = mask.sum().to(total.dtype).detach()
    return terms


def predictor_losses(model, batch: dict, cfg: Union[Config, PredictorConfig],
                     feats: Optional[tuple[Tensor, Tensor]] = None) -> dict[str, Tensor]:
    """Stage-2 loss of a MotionPredictor on a collated batch (§4.6; VAE §5.2).

    total = w_latent * L1(latent_pred, latent_target) + w_exp * exp + w_jaw * jaw, where
    VQ: both latents are straight-through quantiser outputs (predictor latent; frozen encoder on the ground truth),
    so the value is the L1 between the selected codebook entries and the gradient passes as if the quantiser were
    the identity; VAE: latent_pred is a sample from the frozen heads on the predictor output, latent_target a
    sample of the frozen posterior of the ground truth. Clip i is cut to T'_i = min(T_i, floor(A_i / 2)) (§4.2).

    Args:
        model: MotionPredictor.
        batch: `audio` [B, S], `audio_lengths` [B], `motion` [B, T, 53], `lengths` [B] (or `mask` [B, T]),
            `subject`, `emotion`, `intensity` [B] long.
        cfg: Config or its `predictor` section (loss weights).
        feats: optional precomputed (paired features [B, Tp, 2H], feat_lengths [B]), e.g. from a cached CNN via
            `model.audio_encoder.forward_from_cnn`; default: computed from `batch["audio"]`.

    Returns:
        {"latent", "exp", "jaw", "total", "frames"}; see `prior_losses`.
    """
    pcfg = _section(cfg, "predictor", PredictorConfig)
    lengths = batch.get("lengths")
    if lengths is None:
        lengths = batch["mask"].sum(dim=1)
    if feats is None:
        feats = model.encode_audio(batch["audio"], batch["audio_lengths"])
    out = model.forward_features(feats[0], feats[1], batch["subject"], batch["emotion"], batch["intensity"],
                                 motion=batch["motion"], motion_lengths=lengths)
    latent = masked_l1(out.latent_pred, out.latent_target, out.mask)
    exp, jaw = recon_terms(out.recon, out.motion, out.mask)
    total = pcfg.w_latent * latent + pcfg.w_exp * exp + pcfg.w_jaw * jaw
    return {"latent": latent, "exp": exp, "jaw": jaw, "total": total,
            "frames": out.mask.sum().to(total.dtype).detach()}
