"""The FaceDiffuser comparison model (reference §10): a diffusion model in vertex space with HuBERT inside.

Network (per frame, except the GRU): paired HuBERT features Linear(2H -> F) x style Linear(n_subjects+8+3 -> F,
no bias); noisy vertices [T, V*3] -> Linear(V*3 -> 2F) -> Conv1d(1 -> 1, k, 'same') over the feature axis -> ReLU
-> MaxPool1d(2) -> ReLU (F); diffusion step one-hot(steps) -> Linear(steps -> F) -> Mish; concat (audio, motion,
step) 3F -> LayerNorm -> GRU (layers, hidden, dropout) -> Linear(hidden -> V*3) initialised to zero -> + the
subject's template. Official sizes: F = 256, GRU 2 x 256, dropout 0.3, V = 5,023.

Diffusion: 1,000 steps, cosine beta schedule, the network predicts x0, fixed-small posterior variance, masked MSE,
uniform timestep sampling; DDIM (eta 0) over the last `sample_steps` timesteps at inference (official 100).
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probtalk3d_cli.config import Config, FaceDiffuserConfig
from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES
from probtalk3d_cli.models.audio import AudioEncoder
from probtalk3d_cli.models.layers import load_state_strict, mask_from_lengths

KIND = "facediffuser"
COSINE_S = 0.008  # offset of the cosine schedule (Nichol & Dhariwal 2021)
MAX_BETA = 0.999


# --------------------------------------------------------------------------------------------------------
# Diffusion schedule
# --------------------------------------------------------------------------------------------------------


def make_betas(kind: str, steps: int) -> np.ndarray:
    """[steps] float64 betas: `cosine` (alpha_bar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), betas clipped at 0.999)
    or `linear` (1e-4 .. 0.02, scaled by 1000 / steps)."""
    if steps < 1:
        raise ValueError(f"diffusion steps must be at least 1, got {steps}")
    if kind == "cosine":
        def alpha_bar(x):
            return math.cos((x + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), MAX_BETA) for i in range(steps)],
                        dtype=np.float64)
    if kind == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
    raise ValueError(f"unknown beta schedule {kind!r}; use cosine or linear (facediffuser.beta_schedule)")


class DiffusionSchedule:
    """Gaussian diffusion coefficients (float64) and the q-sample / DDIM / DDPM update rules for x0 prediction.

    Args:
        steps: number of timesteps T (timesteps are 0..T-1).
        kind: beta schedule, `cosine` or `linear`.
    """

    def __init__(self, steps: int, kind: str = "cosine"):
        self.steps = int(steps)
        self.kind = kind
        b = make_betas(kind, self.steps)
        ac = np.cumprod(1.0 - b)
        ac_prev = np.append(1.0, ac[:-1])
        self.betas = b
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = ac_prev
        self.sqrt_ac = np.sqrt(ac)
        self.sqrt_one_minus_ac = np.sqrt(1.0 - ac)
        # fixed-small variance: the true posterior variance q(x_{t-1} | x_t, x0); log clipped at t = 0
        self.posterior_variance = b * (1.0 - ac_prev) / (1.0 - ac)
        self.posterior_log_variance = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:])) \
            if self.steps > 1 else np.log(np.maximum(self.posterior_variance, 1e-20))
        self.posterior_coef_x0 = b * np.sqrt(ac_prev) / (1.0 - ac)
        self.posterior_coef_xt = (1.0 - ac_prev) * np.sqrt(1.0 - b) / (1.0 - ac)

    @staticmethod
    def _at(values: np.ndarray, t: Tensor, like: Tensor) -> Tensor:
        """values[t] as [B, 1, 1] in like's dtype/device."""
        v = torch.as_tensor(values, dtype=torch.float64)[t.long().cpu()]
        return v.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; x0, noise [B, T, D], t [B]."""
        return self._at(self.sqrt_ac, t, x0) * x0 + self._at(self.sqrt_one_minus_ac, t, x0) * noise

    def start(self, noise: Tensor, sample_steps: int) -> Tensor:
        """The sampler's starting point for `sample_steps` final timesteps (official `skip_timesteps` semantics):
        pure noise when sampling all T steps, else q_sample(zeros, sample_steps - 1, noise)."""
        if sample_steps >= self.steps:
            return noise
        t = torch.full((noise.shape[0],), sample_steps - 1, dtype=torch.long)
        return self._at(self.sqrt_one_minus_ac, t, noise) * noise

    def ddim_step(self, x_t: Tensor, t: int, x0: Tensor, eta: float = 0.0, noise: Optional[Tensor] = None) -> Tensor:
        """One DDIM update x_t -> x_{t-1} from the predicted x0 (Song et al. 2021; eta 0 = deterministic).

        x_{t-1} = sqrt(ab_prev) x0 + c eps + sigma noise with eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab) and
        c = sqrt(1 - ab_prev - sigma^2), folded into one linear combination a x0 + b x_t (two passes over memory).
        """
        ac, ac_prev = float(self.alphas_cumprod[t]), float(self.alphas_cumprod_prev[t])
        sigma = eta * math.sqrt((1.0 - ac_prev) / (1.0 - ac)) * math.sqrt(1.0 - ac / ac_prev)
        c = math.sqrt(max(1.0 - ac_prev - sigma ** 2, 0.0))
        b = c / math.sqrt(1.0 - ac)
        out = x0.mul(math.sqrt(ac_prev) - b * math.sqrt(ac)).add_(x_t, alpha=b)
        if t > 0 and sigma > 0:
            out.add_(noise, alpha=sigma)
        return out

    def ddpm_step(self, x_t: Tensor, t: int, x0: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """One ancestral update with the fixed-small variance: mean of q(x_{t-1} | x_t, x0) + sigma_t noise."""
        mean = x0.mul(float(self.posterior_coef_x0[t])).add_(x_t, alpha=float(self.posterior_coef_xt[t]))
        if t > 0:
            mean.add_(noise, alpha=math.exp(0.5 * float(self.posterior_log_variance[t])))
        return mean

    def describe(self) -> dict:
        return {"steps": self.steps, "beta_schedule": self.kind, "prediction": "x0", "variance": "fixed_small",
                "loss": "mse", "timestep_sampling": "uniform"}


# --------------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------------


def style_onehot(num_subjects: int, subject: Tensor, emotion: Tensor, intensity: Tensor) -> Tensor:
    """[B] indices -> [B, num_subjects + 8 + 3] one-hot (subject | emotion | intensity) (reference §4.3).

    Raises:
        ValueError: an index out of range.
    """
    for name, idx, n in (("subject", subject, num_subjects), ("emotion", emotion, len(EMOTIONS)),
                         ("intensity", intensity, len(INTENSITIES))):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name} index {idx.tolist()} out of range; the model knows {n} ({name} 0..{n - 1})")
    return torch.cat([F.one_hot(subject.long(), num_subjects), F.one_hot(emotion.long(), len(EMOTIONS)),
                      F.one_hot(intensity.long(), len(INTENSITIES))], dim=1).float()


class FaceDiffuserDenoiser(nn.Module):
    """The §10 denoiser without HuBERT and template: (x_t, t, audio features, style) -> vertex offsets.

    With the official sizes, 32 identities and V = 5,023: 13,433,575 parameters (plus HuBERT).
    """

    def __init__(self, cfg: FaceDiffuserConfig, audio_dim: int, num_subjects: int, num_vertices: int):
        super().__init__()
        f = cfg.feature_dim
        d = num_vertices * 3
        self.num_subjects = num_subjects
        self.steps = cfg.diffusion_steps
        self.audio_map = nn.Linear(audio_dim, f)
        self.style = nn.Linear(num_subjects + len(EMOTIONS) + len(INTENSITIES), f, bias=False)
        self.motion_map = nn.Linear(d, 2 * f)
        self.motion_conv = nn.Conv1d(1, 1, cfg.conv_kernel, padding=cfg.conv_kernel // 2)
        self.motion_pool = nn.MaxPool1d(2)
        self.step_map = nn.Linear(cfg.diffusion_steps, f)
        self.norm = nn.LayerNorm(3 * f)
        self.gru = nn.GRU(3 * f, cfg.gru_hidden, num_layers=cfg.gru_layers, batch_first=True,
                          dropout=cfg.gru_dropout if cfg.gru_layers > 1 else 0.0)
        self.out = nn.Linear(cfg.gru_hidden, d)
        nn.init.zeros_(self.out.weight)  # the untrained model outputs the template (official initialisation)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: Tensor, t: Tensor, feats: Tensor, mask: Optional[Tensor], style: Tensor) -> Tensor:
        """Offsets from the template.

        Args:
            x_t: [B, T, V*3] noisy vertices; t: [B] long timesteps; feats: [B, T, 2H] paired HuBERT features;
            mask: [B, T] bool (None = all valid); style: [B, n_subjects + 11] one-hot.

        Returns:
            [B, T, V*3] (padded frames 0).
        """
        b, n_t, _ = x_t.shape
        audio = self.audio_map(feats) * self.style(style.to(feats.dtype))[:, None, :]  # [B, T, F]
        m = self.motion_map(x_t).reshape(b * n_t, 1, -1)  # [B, T, 2F] -> [B*T, 1, 2F]: conv over the feature axis
        m = F.relu(self.motion_pool(F.relu(self.motion_conv(m)))).reshape(b, n_t, -1)  # [B*T, 1, F] -> [B, T, F]
        step = F.mish(self.step_map(F.one_hot(t.long(), self.steps).to(x_t.dtype)))  # [B, F]
        h = torch.cat([audio, m, step[:, None, :].expand(b, n_t, -1)], dim=-1)  # [B, T, 3F]
        h = self.norm(h)
        if mask is None or bool(mask.all()):
            h, _ = self.gru(h)
        else:  # packed: padding never enters the recurrence, so a padded batch equals clips run alone
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h, _ = self.gru(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=n_t)
        out = self.out(h)
        return out if mask is None else out * mask[:, :, None].to(out.dtype)


class FaceDiffuser(nn.Module):
    """HuBERT audio encoder (same freezing as stage 2) + denoiser + per-subject templates + diffusion schedule.

    Attributes:
        config: the Config it was built from (sections facediffuser and audio describe the model).
        identities: subject IDs in one-hot order.
        audio_encoder: AudioEncoder.
        denoiser: FaceDiffuserDenoiser.
        templates: buffer [S, V*3] float32, the identities' template meshes (metres).
        schedule: DiffusionSchedule.
    """

    kind = KIND

    def __init__(self, config: Config, identities: Sequence[str], templates, audio_encoder: AudioEncoder):
        super().__init__()
        identities = [str(s) for s in identities]
        if not identities or len(set(identities)) != len(identities):
            raise ValueError(f"identities must be a non-empty list of distinct subject IDs, got {identities!r}")
        tpl = torch.as_tensor(templates, dtype=torch.float32)
        if tpl.dim() != 3 or tpl.shape[0] != len(identities) or tpl.shape[2] != 3:
            raise ValueError(f"templates must be [{len(identities)}, V, 3] (one per identity), got {list(tpl.shape)}")
        self.config = copy.deepcopy(config)
        self.config.audio = copy.deepcopy(audio_encoder.cfg)
        self.identities = identities
        self.num_vertices = int(tpl.shape[1])
        self.audio_encoder = audio_encoder
        fcfg = self.config.facediffuser
        self.denoiser = FaceDiffuserDenoiser(fcfg, audio_encoder.output_dim, len(identities), self.num_vertices)
        self.register_buffer("templates", tpl.reshape(len(identities), -1).clone())  # [S, V*3]
        self.schedule = DiffusionSchedule(fcfg.diffusion_steps, fcfg.beta_schedule)

    @classmethod
    def from_configs(cls, cfg: Config, identities: Sequence[str], templates,
                     audio_encoder: Optional[AudioEncoder] = None) -> "FaceDiffuser":
        """New model: AudioEncoder(cfg.audio) (loads HuBERT per cfg.audio.model unless given) + a fresh denoiser."""
        return cls(cfg, identities, templates, audio_encoder or AudioEncoder(cfg.audio))

    # ---- pieces ------------------------------------------------------------------------------------------

    def encode_audio(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """[B, S] waveforms, [B] samples -> paired features [B, Tp, 2H] at 25 fps, lengths [B] = floor(A_i / 2)."""
        return self.audio_encoder(audio, audio_lengths)

    def style_onehot(self, subject: Tensor, emotion: Tensor, intensity: Tensor) -> Tensor:
        return style_onehot(len(self.identities), subject, emotion, intensity)

    def template_of(self, subject: Tensor) -> Tensor:
        """[B] subject indices -> [B, V*3] templates."""
        return self.templates[subject.long().to(self.templates.device)]

    def forward(self, x_t: Tensor, t: Tensor, feats: Tensor, mask: Optional[Tensor], subject: Tensor, emotion: Tensor,
                intensity: Tensor) -> Tensor:
        """Predicted x0 = denoiser offsets + the subject's template: [B, T, V*3] metres (padded frames 0)."""
        style = self.style_onehot(subject, emotion, intensity).to(feats.device)
        x0 = self.denoiser(x_t, t.to(x_t.device), feats, mask, style) + self.template_of(subject)[:, None, :]
        return x0 if mask is None else x0 * mask[:, :, None].to(x0.dtype)

    @torch.no_grad()
    def sample(self, feats: Tensor, mask: Optional[Tensor], subject: Tensor, emotion: Tensor, intensity: Tensor, *,
               noise: Tensor, sample_steps: int = 100, sampler: str = "ddim", eta: float = 0.0,
               generator: Optional[torch.Generator] = None, autocast_ctx=None) -> Tensor:
        """Run the reverse process over the last `sample_steps` timesteps.

        Args:
            feats: [B, T, 2H] features; mask: [B, T] or None; subject/emotion/intensity: [B].
            noise: [B, T, V*3] start noise (any device; drawn by the caller, e.g. from a job generator).
            sample_steps: K final timesteps (official 100 = skip_timesteps 900).
            sampler: `ddim` or `ddpm` (fixed-small variance).
            eta: DDIM eta; > 0 and `ddpm` draw fresh noise from `generator` at every step (CPU draws).
            autocast_ctx: optional zero-argument callable returning a context manager around each network call.

        Returns:
            [B, T, V*3] float32 vertices with identity (padded frames 0).
        """
        import contextlib

        k = int(sample_steps)
        if not 1 <= k <= self.schedule.steps:
            raise ValueError(f"sample_steps must be in 1..{self.schedule.steps} (the checkpoint's diffusion steps), got "
                             f"{k} (facediffuser.sample_steps)")
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be ddim or ddpm, got {sampler!r} (facediffuser.sampler)")
        if eta < 0:
            raise ValueError(f"eta must not be negative, got {eta} (facediffuser.eta)")
        dev = feats.device
        keep = None if mask is None else mask[:, :, None].to(torch.float32)
        x = self.schedule.start(noise.to(dev, torch.float32), k)
        if keep is not None:
            x = x * keep
        ctx = autocast_ctx or contextlib.nullcontext
        for t in range(k - 1, -1, -1):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=dev)
            with ctx():
                x0 = self.forward(x, tt, feats, mask, subject, emotion, intensity)
            x0 = x0.float()
            fresh = None
            if t > 0 and (sampler == "ddpm" or eta > 0):
                fresh = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(dev)
            x = self.schedule.ddim_step(x, t, x0, eta, fresh) if sampler == "ddim" else \
                self.schedule.ddpm_step(x, t, x0, fresh)
            if keep is not None:
                x = x * keep
        return x

    # ---- checkpoints -------------------------------------------------------------------------------------

    def checkpoint_meta(self) -> dict:
        """Meta of a self-contained `facediffuser` checkpoint."""
        return {
            "identities": list(self.identities),
            "emotions": list(EMOTIONS),
            "intensities": list(INTENSITIES),
            "hubert_config": self.audio_encoder.hubert_config_dict(),
            "num_vertices": self.num_vertices,
            "diffusion": self.schedule.describe(),
            "output": "[T, V, 3] float32 vertex positions in metres including the subject's template (identity)",
        }

    @classmethod
    def from_checkpoint(cls, payload: dict) -> "FaceDiffuser":
        """Rebuild from a loaded `facediffuser` checkpoint payload (no network: HuBERT from meta + weights).

        Raises:
            ValueError: meta lacks a required entry, or the weights do not fit.
        """
        from probtalk3d_cli.config import from_dict

        where = payload.get("path", "checkpoint")
        meta = payload.get("meta") or {}
        for key in ("identities", "hubert_config", "num_vertices"):
            if key not in meta:
                raise ValueError(f"facediffuser checkpoint {where} lacks meta '{key}'; it was not written by probtalk3d "
                                 "train-pred --model facediffuser — re-train it")
        cfg = from_dict(payload.get("config"), source=f"checkpoint {where}")
        ids = list(meta["identities"])
        with torch.device("meta"):  # no random init: every tensor comes from the file
            audio = AudioEncoder(cfg.audio, hubert_config=meta["hubert_config"])
            model = cls(cfg, ids, torch.zeros(len(ids), int(meta["num_vertices"]), 3), audio)
        load_state_strict(model, payload["model"], where, assign=True)
        return model.eval()


def facediffuser_losses(model: FaceDiffuser, batch: dict, feats: Optional[tuple[Tensor, Tensor]] = None,
                        draws: Optional[tuple[Tensor, Tensor]] = None) -> dict[str, Tensor]:
    """Training loss (reference §10): x_t from a uniform timestep and Gaussian noise, MSE between the predicted and
    the true x0 over valid frames (masked mean over frames x V*3 values; m²).

    Clip i is cut to T'_i = min(T_i, floor(A_i / 2)) (audio pairing, reference §4.2).

    Args:
        model: FaceDiffuser.
        batch: `audio` [B, S], `audio_lengths` [B], `motion` [B, T, V*3] vertices with identity (zero-padded),
            `lengths` [B], `subject`/`emotion`/`intensity` [B].
        feats: optional precomputed (paired features, lengths) (e.g. from the cached CNN).
        draws: optional (t [B] long, noise [B, >=T', V*3]); default: drawn from the global RNG (resume-exact).

    Returns:
        {"mse", "total", "frames"} 0-dim tensors.
    """
    lengths = batch.get("lengths")
    if lengths is None:
        lengths = batch["mask"].sum(dim=1)
    if feats is None:
        feats = model.encode_audio(batch["audio"], batch["audio_lengths"])
    f, feat_lengths = feats
    lengths = torch.minimum(torch.as_tensor(feat_lengths, device=f.device).long(),
                            torch.as_tensor(lengths, device=f.device).long())
    t_max = int(lengths.max())
    mask = mask_from_lengths(lengths, t_max)  # [B, T']
    m = mask[:, :, None].to(f.dtype)
    x0 = batch["motion"][:, :t_max].to(f.dtype) * m
    f = f[:, :t_max] * m
    if draws is None:
        t = torch.randint(0, model.schedule.steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype)
    else:
        t, noise = draws[0].to(x0.device), draws[1][:, :t_max].to(x0.device, x0.dtype)
    x_t = model.schedule.q_sample(x0, t, noise) * m
    pred = model(x_t, t, f, mask, batch["subject"].to(f.device), batch["emotion"].to(f.device),
                 batch["intensity"].to(f.device))
    err = ((pred.float() - x0.float()) ** 2) * m.float()
    mse = err.sum() / (m.float().sum() * x0.shape[-1]).clamp(min=1)
    return {"mse": mse, "total": mse, "frames": mask.sum().to(mse.dtype).detach()}


def validation_draws(batch: dict, steps: int, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic (t, noise) per clip for validation: drawn from a generator seeded by (seed, clip key), so a
    clip's validation loss does not depend on the epoch, the batch it is in, or the process."""
    from probtalk3d_cli.generation.jobs import derive_seed

    b, n_t, d = batch["motion"].shape
    lengths = batch["lengths"] if "lengths" in batch else batch["mask"].sum(1)
    ts, noise = torch.zeros(b, dtype=torch.long), torch.zeros(b, n_t, d)
    for i, key in enumerate(batch["keys"]):
        g = torch.Generator().manual_seed(derive_seed(seed, "facediffuser-val", key))
        ts[i] = int(torch.randint(0, steps, (1,), generator=g))
        n = int(lengths[i])
        noise[i, :n] = torch.randn(n, d, generator=g)  # the clip's own length: independent of the batch padding
    return ts, noise


def load_facediffuser(spec) -> FaceDiffuser:
    """A FaceDiffuser (eval mode) from a checkpoint path, run directory, or loaded payload."""
    if isinstance(spec, dict):
        payload = spec
    else:
        from probtalk3d_cli.checkpoint import load_checkpoint

        payload = load_checkpoint(spec, expect=KIND)
    if payload.get("kind") not in (None, KIND):
        raise ValueError(f"checkpoint {payload.get('path', '')} is a {payload.get('kind')} checkpoint, not a "
                         "facediffuser one; make one with probtalk3d train-pred --model facediffuser")
    return FaceDiffuser.from_checkpoint(payload)


__all__ = ["FaceDiffuser", "FaceDiffuserDenoiser", "DiffusionSchedule", "make_betas", "style_onehot",
           "facediffuser_losses", "validation_draws", "load_facediffuser", "KIND"]
