"""FaceDiffuser inference (reference §10): audio + style -> N vertex sequences `[N, T, V, 3]` with identity.

HuBERT runs once per audio window (not at every denoising step as in the official code, §11.10; in eval mode the
result is the same) and its features serve every style and sample; the N samples of one job start from noise drawn
from that job's generator and are denoised as one batch. Frame count: T = floor(A / 2) (the audio pairing of
§4.2, as ProbTalk3D); the official FaceDiffuser script used int(S / 16000 * 25) - 1, one or two frames fewer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from probtalk3d_cli.generation.core import ClipRequest, clip_frames, model_device, plan_windows, single_request

log = logging.getLogger(__name__)

FRAME_RULE = ("T = floor(A / 2), A = HuBERT frames of the 16 kHz audio (reference §4.2); the official FaceDiffuser "
              "used int(samples / 16000 * 25) - 1")
LAYOUT = "[T, V, 3] float32 vertex positions in metres, including the subject's template (identity)"


@dataclass(frozen=True)
class DiffusionSampling:
    """How FaceDiffuser samples (config section `facediffuser`; read from the current config, not the checkpoint).

    Attributes:
        sampler: `ddim` (official) or `ddpm` (ancestral with the fixed-small variance).
        sample_steps: the last K timesteps are run (official 100 of 1,000, i.e. skip_timesteps 900).
        eta: DDIM eta (official 0: deterministic given the start noise).
    """

    sampler: str = "ddim"
    sample_steps: int = 100
    eta: float = 0.0

    @classmethod
    def from_config(cls, fcfg) -> "DiffusionSampling":
        """From a `FaceDiffuserConfig`."""
        return cls(str(fcfg.sampler), int(fcfg.sample_steps), float(fcfg.eta))

    def validate(self, steps: Optional[int] = None) -> "DiffusionSampling":
        """Raise ValueError for an unknown sampler, K outside 1..steps, or a negative eta."""
        if self.sampler not in ("ddim", "ddpm"):
            raise ValueError(f"facediffuser.sampler must be ddim or ddpm, got {self.sampler!r}")
        top = steps if steps is not None else self.sample_steps
        if not 1 <= self.sample_steps <= max(top, 1):
            raise ValueError(f"facediffuser.sample_steps must be in 1..{top} (the checkpoint's diffusion steps), got "
                             f"{self.sample_steps}; set it with --set facediffuser.sample_steps=N")
        if self.eta < 0:
            raise ValueError(f"facediffuser.eta must not be negative, got {self.eta}")
        return self

    def is_stochastic(self) -> bool:
        return True  # the start noise differs per sample even with eta 0

    def describe(self, steps: Optional[int] = None) -> dict:
        """Recorded in sidecars and metrics.json."""
        d = {"kind": "facediffuser", "sampler": self.sampler, "sample_steps": self.sample_steps}
        if steps is not None:
            d["skip_timesteps"] = int(steps) - self.sample_steps
        if self.sampler == "ddim":
            d["eta"] = self.eta
        return d


def probtalk3d_flags_note(given: Sequence[str]) -> list[str]:
    """One-line note when ProbTalk3D sampling flags were given for a FaceDiffuser checkpoint (they do nothing)."""
    ignored = [n for n in ("deterministic", "temperature", "k", "fact", "mean") if n in given]
    if not ignored:
        return []
    return [f"{', '.join('--' + n for n in ignored)} {'applies' if len(ignored) == 1 else 'apply'} only to ProbTalk3D "
            "checkpoints and {} ignored for this FaceDiffuser checkpoint; its sampling is set by --set "
            "facediffuser.sample_steps / sampler / eta".format("is" if len(ignored) == 1 else "are")]


def _encode_windows(model, audio: np.ndarray, window_seconds: float, overlap_seconds: float, device):
    """Paired HuBERT features [T, 2H] of one clip, computed per window and cross-faded over the overlaps (exactly the
    unwindowed features when the clip fits one window)."""
    import torch

    windows = plan_windows(len(audio), window_seconds, overlap_seconds)
    total = windows[-1].end
    out = None
    for j, w in enumerate(windows):
        seg = torch.from_numpy(np.ascontiguousarray(audio[w.sample_start:w.sample_end], dtype=np.float32))[None]
        feats, lengths = model.encode_audio(seg.to(device), torch.tensor([seg.shape[1]], device=device))
        f = feats[0, :w.frames].float()  # [F, 2H]
        if out is None:
            out = torch.zeros(total, f.shape[1], dtype=torch.float32, device=f.device)
        if j == 0:
            out[w.start:w.end] = f
            continue
        ov = windows[j - 1].end - w.start
        ramp = (torch.arange(1, ov + 1, dtype=torch.float32, device=f.device) / (ov + 1))[:, None]
        out[w.start:w.start + ov] = out[w.start:w.start + ov] * (1 - ramp) + f[:ov] * ramp
        out[w.start + ov:w.end] = f[ov:]
    return out, len(windows)


def synthesize_vertices(
    model,
    requests: Sequence[ClipRequest],
    num_samples: int = 1,
    sampling: Optional[DiffusionSampling] = None,
    *,
    window_seconds: float = 60.0,
    overlap_seconds: float = 2.0,
    precision: str = "fp32",
) -> list[list[np.ndarray]]:
    """Generate vertex sequences for several clips and styles with a FaceDiffuser.

    Per clip: HuBERT once (in windows of `window_seconds` for long audio, features cross-faded over the overlap; the
    GRU then runs over the whole clip). Per style: start noise [N, T, V*3] from the style's generator (CPU draws, so
    results do not depend on the device's RNG), then the reverse process over the last `sample_steps` timesteps.

    Args:
        model: FaceDiffuser (its device is used; eval mode for the call).
        requests: clips with their styles and generators (see `generation.core.ClipRequest`).
        num_samples: N samples per style.
        sampling: DiffusionSampling (default: DDIM, 100 steps, eta 0).
        window_seconds, overlap_seconds: HuBERT windows for long audio.
        precision: auto | fp32 | bf16 (autocast around the network; the diffusion arithmetic stays fp32).

    Returns:
        result[i][j]: [N, T_i, V, 3] float32 metres for clip i, style j (T_i = floor(A_i / 2)).

    Raises:
        ValueError: a clip shorter than 1,360 samples (2 frames), bad settings.
    """
    import torch

    from probtalk3d_cli.device import autocast, resolve_precision

    sampling = (sampling or DiffusionSampling()).validate(model.schedule.steps)
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    device = model_device(model)
    precision = resolve_precision(precision, device)
    n_v = model.num_vertices
    results = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i, req in enumerate(requests):
                t = clip_frames(i, req.audio)
                with autocast(device, enabled=precision == "bf16"):
                    feats, _ = _encode_windows(model, req.audio, window_seconds, overlap_seconds, device)  # [T, 2H]
                per_style = []
                for (subject, emotion, intensity), gen in zip(req.styles, req.generators):
                    noise = torch.randn((num_samples, t, n_v * 3), generator=gen, dtype=torch.float32)
                    idx = [torch.full((num_samples,), int(v), dtype=torch.long, device=device)
                           for v in (subject, emotion, intensity)]
                    x = model.sample(feats[None].expand(num_samples, -1, -1), None, *idx, noise=noise,
                                     sample_steps=sampling.sample_steps, sampler=sampling.sampler, eta=sampling.eta,
                                     generator=gen,
                                     autocast_ctx=lambda: autocast(device, enabled=precision == "bf16"))
                    per_style.append(x.view(num_samples, t, n_v, 3).cpu().numpy().astype(np.float32))
                results.append(per_style)
    finally:
        model.train(was_training)
    return results


def generate_vertices(
    model,
    audio,
    subject: Union[str, int],
    emotion: Union[str, int] = "neutral",
    intensity: Union[str, int] = "low",
    num_samples: int = 1,
    *,
    sampling: Optional[DiffusionSampling] = None,
    generator=None,
    window_seconds: float = 60.0,
    overlap_seconds: float = 2.0,
    precision: str = "fp32",
) -> np.ndarray:
    """One clip, one style -> N vertex sequences (the in-memory API `evaluate` uses for FaceDiffuser).

    Args:
        model: FaceDiffuser on its device.
        audio: [S] 16 kHz mono waveform (numpy or torch).
        subject: identity ID (case-insensitive) or index into `model.identities`.
        emotion: name or index 0-7; intensity: low/medium/high or 0-2.
        num_samples: N.
        sampling: DiffusionSampling (default DDIM, last 100 steps, eta 0).
        generator: torch.Generator for the start noise (e.g. `job_generator(seed, key)`); None = global RNG.
        window_seconds, overlap_seconds, precision: see `synthesize_vertices`.

    Returns:
        [N, T, V, 3] float32 metres, T = floor(A / 2).
    """
    req = single_request(model, audio, subject, emotion, intensity, generator)
    return synthesize_vertices(model, [req], num_samples, sampling, window_seconds=window_seconds,
                               overlap_seconds=overlap_seconds, precision=precision)[0][0]
