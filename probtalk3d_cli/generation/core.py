"""The inference engine: audio + style -> N motion samples (reference §4.5, §5.3, §6), windowed for long audio.

One HuBERT pass per audio window serves every style and every sample of that audio; the N samples of one
(audio, style) job are drawn with that job's own generator and decoded as one batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from probtalk3d_cli.data.schema import (
    EMOTIONS,
    FPS,
    INTENSITIES,
    SAMPLES_PER_FRAME,
    motion_frames_for_audio,
    parse_emotion,
    parse_intensity,
)

log = logging.getLogger(__name__)

MIN_FRAMES = 2  # the conv block's instance norm needs two frames (reference §11.7)
MIN_SAMPLES = 1360  # the fewest 16 kHz samples that give MIN_FRAMES motion frames (4 HuBERT frames)
# HuBERT's CNN has a 400-sample receptive field and a 320-sample hop, so a segment of 640 * F + SEGMENT_EXTRA
# samples gives exactly 2F HuBERT frames = F motion frames, aligned with the frames of the whole file.
SEGMENT_EXTRA = 80


# --------------------------------------------------------------------------------------------------------
# Sampling settings
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How latents become motion (reference §3.2 for VQ, §5.3 for VAE).

    Attributes:
        deterministic: VQ — nearest code (argmin) instead of temperature sampling.
        temperature: VQ — softmax temperature over negative code distances (official default 0.2).
        k: VQ — official `multinomial(p, k)` without replacement, keeping the last draw (1 = plain sampling).
        fact: VAE — z = mu + fact * sigma * eps (official default 20).
        mean: VAE — z = mu (deterministic; works, unlike the official flag, §11.11).
    """

    deterministic: bool = False
    temperature: float = 0.2
    k: int = 1
    fact: float = 20.0
    mean: bool = False

    @classmethod
    def from_config(cls, g) -> "Sampling":
        """From a `GenerateConfig` (or any object with the same field names)."""
        return cls(bool(g.deterministic), float(g.temperature), int(g.k), float(g.fact), bool(g.mean))

    def validate(self, num_codes: Optional[int] = None) -> "Sampling":
        """Raise ValueError for a temperature <= 0, k out of range or a negative fact."""
        if not self.deterministic and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}; use --deterministic for the nearest code")
        if self.k < 1 or (num_codes is not None and self.k > num_codes):
            top = f" and at most the codebook size {num_codes}" if num_codes else ""
            raise ValueError(f"k must be at least 1{top}, got {self.k} (--k / generate.k)")
        if self.fact < 0:
            raise ValueError(f"fact must not be negative, got {self.fact} (--fact / generate.fact)")
        return self

    def is_stochastic(self, kind: str) -> bool:
        return not self.deterministic if kind == "vq" else not self.mean

    def describe(self, kind: str) -> dict:
        """The settings that matter for a prior of `kind` (recorded in every sidecar)."""
        if kind == "vq":
            if self.deterministic:
                return {"kind": "vq", "mode": "deterministic"}
            return {"kind": "vq", "mode": "temperature", "temperature": self.temperature, "k": self.k}
        if self.mean:
            return {"kind": "vae", "mode": "mean"}
        return {"kind": "vae", "mode": "fact", "fact": self.fact}

    def warnings(self, kind: str, num_samples: int = 1, given: Sequence[str] = ()) -> list[str]:
        """One-line notes about settings that have no effect for this prior kind (flags given or non-default)."""
        default = Sampling()
        touched = {n for n in ("deterministic", "temperature", "k", "fact", "mean")
                   if n in given or getattr(self, n) != getattr(default, n)}
        notes = []
        other = {"vq": ("fact", "mean"), "vae": ("deterministic", "temperature", "k")}[kind]
        ignored = [n for n in other if n in touched]
        if ignored:
            owner = "VAE" if kind == "vq" else "VQ"
            verb = "applies" if len(ignored) == 1 else "apply"
            notes.append(f"{', '.join('--' + n for n in ignored)} {verb} only to {owner} checkpoints; this checkpoint's "
                         f"prior is {kind.upper()}, so {'it is' if len(ignored) == 1 else 'they are'} ignored")
        if kind == "vq" and self.deterministic and touched & {"temperature", "k"}:
            notes.append("--temperature and --k are ignored with --deterministic (nearest code)")
        if kind == "vae" and self.mean and "fact" in touched:
            notes.append("--fact is ignored with --mean (the latent is mu)")
        if num_samples > 1 and not self.is_stochastic(kind):
            notes.append(f"--num-samples {num_samples} with deterministic decoding gives {num_samples} identical files")
        return notes


# --------------------------------------------------------------------------------------------------------
# Windows over long audio
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One stretch of a clip processed on its own.

    Attributes:
        start: first motion frame (of the whole clip) this window produces.
        frames: motion frames it produces.
        sample_start, sample_end: the 16 kHz samples fed to HuBERT (sample_start = 640 * start).
    """

    start: int
    frames: int
    sample_start: int
    sample_end: int

    @property
    def end(self) -> int:
        return self.start + self.frames


def window_frames(window_seconds: float, overlap_seconds: float) -> tuple[int, int]:
    """(window, overlap) in motion frames; raises ValueError unless 2 <= 2 * overlap < window."""
    wf, of = int(round(window_seconds * FPS)), int(round(overlap_seconds * FPS))
    if wf < 2 * MIN_FRAMES or of < 0 or 2 * of >= wf:
        raise ValueError(
            f"generate.window_seconds {window_seconds} / overlap_seconds {overlap_seconds} give {wf} / {of} frames; "
            "the window needs at least 4 frames and more than twice the overlap"
        )
    return wf, of


def plan_windows(num_samples: int, window_seconds: float = 60.0, overlap_seconds: float = 2.0) -> list[Window]:
    """Cut a clip of `num_samples` 16 kHz samples into overlapping windows.

    The clip yields T = floor(A / 2) motion frames (A = HuBERT frames of the whole file, reference §4.2). Up to
    `window_seconds` it is one window over all samples (identical to unwindowed processing). Longer clips get
    windows of exactly W frames starting every W - O frames; the last one is moved back to end at frame T, so it
    overlaps its neighbour by at least O frames and is never shorter than W. Window j reads samples
    [640 * start, 640 * (start + W) + 80), which HuBERT turns into exactly 2W frames aligned with the whole-file
    frames, so each window's motion frame f is the clip's frame start + f.

    Args:
        num_samples: clip length in samples (16 kHz).
        window_seconds, overlap_seconds: window and overlap length (config generate.*).

    Returns:
        Windows in time order.
    """
    total = motion_frames_for_audio(num_samples)
    wf, of = window_frames(window_seconds, overlap_seconds)
    if total <= wf:
        return [Window(0, total, 0, num_samples)]
    hop = wf - of
    starts = list(range(0, total - wf, hop)) + [total - wf]
    out = []
    for s in starts:
        s0 = s * SAMPLES_PER_FRAME
        out.append(Window(s, wf, s0, min(num_samples, s0 + wf * SAMPLES_PER_FRAME + SEGMENT_EXTRA)))
    return out


DEFAULT_WINDOW_SECONDS = 60.0


def default_window_seconds(model) -> float:
    """60 s, or less when the checkpoint's positional-encoding table is shorter (e.g. the tiny test models)."""
    limit = min(int(model.config.prior.max_len), int(model.config.predictor.max_len)) // FPS
    return float(min(DEFAULT_WINDOW_SECONDS, limit))


def check_window_fits(model, window_seconds: float) -> None:
    """Raise ValueError if one window is longer than the model's positional-encoding table (reference §11.8)."""
    limit = min(int(model.config.prior.max_len), int(model.config.predictor.max_len))
    wf = int(round(window_seconds * FPS))
    if wf > limit:
        raise ValueError(
            f"generate.window_seconds {window_seconds:g} s is {wf} frames, more than this checkpoint's positional-"
            f"encoding limit of {limit} frames ({limit / FPS:g} s); lower it with --set generate.window_seconds="
            f"{limit // FPS}"
        )


def _blend(out: np.ndarray, motion: np.ndarray, windows: list[Window], j: int) -> None:
    """Write window j's motion [n, F, C] into out [n, T, C], cross-fading linearly over the overlap with j - 1."""
    w = windows[j]
    if j == 0:
        out[:, w.start:w.end] = motion
        return
    ov = windows[j - 1].end - w.start
    ramp = (np.arange(1, ov + 1, dtype=np.float32) / (ov + 1))[None, :, None]  # weight of the new window
    out[:, w.start:w.start + ov] = out[:, w.start:w.start + ov] * (1.0 - ramp) + motion[:, :ov] * ramp
    out[:, w.start + ov:w.end] = motion[:, ov:]


# --------------------------------------------------------------------------------------------------------
# Style indices
# --------------------------------------------------------------------------------------------------------


def subject_index(identities: Sequence[str], subject: Union[str, int]) -> int:
    """Index of `subject` (ID, case-insensitive, or an integer index) in the checkpoint's identities.

    Raises:
        ValueError: unknown subject, listing the valid IDs.
    """
    ids = list(identities)
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        if 0 <= int(subject) < len(ids):
            return int(subject)
        raise ValueError(f"subject index {subject} is out of range; this checkpoint knows {len(ids)} subjects (0-{len(ids) - 1})")
    text = str(subject).strip()
    if text in ids:
        return ids.index(text)
    folded = [s.lower() for s in ids]
    if text.lower() in folded:
        return folded.index(text.lower())
    raise ValueError(
        f"unknown subject {subject!r}; this checkpoint knows {len(ids)} subjects: {', '.join(ids)} (or 'random')"
    )


def style_indices(model, subject: Union[str, int], emotion: Union[str, int], intensity: Union[str, int]) -> tuple:
    """(subject, emotion, intensity) names or indices -> index triple for `model` (reference §4.3)."""
    return (subject_index(model.identities, subject), parse_emotion(emotion), parse_intensity(intensity))


# --------------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------------


@dataclass
class ClipRequest:
    """One audio clip and the styles to animate it with.

    Attributes:
        audio: [S] float32 mono waveform at 16 kHz (not normalised; the encoder normalises each window).
        styles: (subject, emotion, intensity) index triples.
        generators: one torch.Generator (or None = global RNG) per style; each style's N samples and all its
            windows draw from its own generator only, so results do not depend on what else is in the batch.
    """

    audio: np.ndarray
    styles: list = field(default_factory=list)
    generators: list = field(default_factory=list)

    def __post_init__(self):
        if not self.generators:
            self.generators = [None] * len(self.styles)
        if len(self.generators) != len(self.styles):
            raise ValueError(f"{len(self.styles)} styles but {len(self.generators)} generators; give one per style")


def model_device(model):
    return next(model.parameters()).device


def _chunks(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]


def _encode(model, segments: list, frames: list[int], device) -> list:
    """Audio segments -> paired HuBERT features, one [F_i, 2H] tensor each (a padded batch if several)."""
    import torch

    lengths = torch.tensor([len(s) for s in segments], dtype=torch.long)
    batch = torch.zeros(len(segments), int(lengths.max()), dtype=torch.float32)
    for i, s in enumerate(segments):
        batch[i, : len(s)] = torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32))
    feats, feat_lengths = model.encode_audio(batch.to(device), lengths.to(device))  # [B, Tp, 2H]
    out = []
    for i, f in enumerate(frames):
        if int(feat_lengths[i]) < f:  # cannot happen with plan_windows; an internal invariant
            raise AssertionError(f"window gave {int(feat_lengths[i])} frames, {f} expected")
        out.append(feats[i, :f])
    return out


def _pad(tensors: list):
    """List of [F_i, C] -> ([B, F, C] zero-padded, [B, F] bool mask or None when all lengths are equal)."""
    import torch

    from probtalk3d_cli.models.layers import mask_from_lengths

    if len(tensors) == 1:
        return tensors[0][None], None
    lengths = torch.tensor([t.shape[0] for t in tensors], device=tensors[0].device)
    batch = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    return batch, mask_from_lengths(lengths, batch.shape[1])


def sample_latents(model, latent, num_samples: int, sampling: Sampling, generator=None):
    """One clip's predicted latent [1, F, d] -> the latents to decode [n, F, d] (n = N, or 1 if deterministic).

    Same arithmetic as `MotionPredictor.decode` for one clip: VQ codes by argmin or temperature sampling in the
    checkpoint's token layout; VAE mu (`mean`) or mu + fact * sigma * eps. Draws come from `generator` only.
    """
    kind = model.kind
    stochastic = sampling.is_stochastic(kind)
    n = num_samples if stochastic else 1
    z = latent.repeat(n, 1, 1)  # [n, F, d]
    if kind == "vq":
        return model.prior.quantize(z, None, sample=stochastic, temperature=sampling.temperature, k=sampling.k,
                                    generator=generator).z_q
    mu, logvar = model.prior.posterior(z)
    return model.prior.sample_latent(mu, logvar, fact=sampling.fact, mean=sampling.mean, generator=generator)


def synthesize(
    model,
    requests: Sequence[ClipRequest],
    num_samples: int = 1,
    sampling: Optional[Sampling] = None,
    *,
    window_seconds: Optional[float] = None,
    overlap_seconds: float = 2.0,
    batch_size: int = 1,
    precision: str = "fp32",
    denormalise: bool = True,
) -> list[list[np.ndarray]]:
    """Generate motion for several clips and styles.

    Per window: HuBERT once (shared by every style of the clip), the predictor once per style, the N samples
    drawn from that style's generator and decoded as one batch, then cross-faded into the clip's output.
    With `batch_size` 1 every computation has batch size 1 (N for the decoder), so a clip's result is bit for bit
    the same whatever else is generated with it; a larger batch pads windows and styles into shared batches
    (faster on GPUs; results then agree up to float rounding, ~1e-6, which can rarely flip a code choice).

    Args:
        model: MotionPredictor (its device is used; switched to eval mode for the call).
        requests: clips with their styles and generators.
        num_samples: N samples per style.
        sampling: decoding controls (default: VQ temperature 0.2, VAE fact 20).
        window_seconds, overlap_seconds: windowing of long audio (see `plan_windows`); window None = 60 s or the
            checkpoint's positional-encoding limit if shorter.
        batch_size: windows per HuBERT batch and (window, style) rows per predictor/decoder batch.
        precision: auto | fp32 | bf16 (autocast; the code search stays fp32); auto = bf16 where the device computes
            it natively (CPUs with AVX512-BF16/AMX, CUDA), else fp32 — fp32 reproduces the official numerics.
        denormalise: return FLAME units (exp, jaw) instead of the normalised [0, 1] feature.

    Returns:
        result[i][j]: [N, T_i, 53] float32 for clip i, style j, with T_i = floor(A_i / 2) (reference §4.2).

    Raises:
        ValueError: a clip shorter than 1,360 samples (2 motion frames), bad settings.
    """
    import torch

    from probtalk3d_cli.data.schema import denormalise_motion
    from probtalk3d_cli.device import autocast, resolve_precision

    sampling = (sampling or Sampling()).validate(getattr(model.prior.cfg, "num_codes", None))
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if window_seconds is None:
        window_seconds = default_window_seconds(model)
    check_window_fits(model, window_seconds)
    device = model_device(model)
    precision = resolve_precision(precision, device)
    plans, outputs = [], []
    for i, req in enumerate(requests):
        t = clip_frames(i, req.audio)
        plans.append(plan_windows(len(req.audio), window_seconds, overlap_seconds))
        outputs.append([np.zeros((num_samples, t, model.prior.cfg.nfeats), dtype=np.float32) for _ in req.styles])
    work = [(i, j) for i, plan in enumerate(plans) for j in range(len(plan))]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, enabled=precision == "bf16"):
            for chunk in _chunks(work, batch_size):
                wins = [plans[i][j] for i, j in chunk]
                feats = _encode(model, [requests[i].audio[w.sample_start:w.sample_end] for (i, _), w in zip(chunk, wins)],
                                [w.frames for w in wins], device)
                rows = [(c, s) for c, (i, _) in enumerate(chunk) for s in range(len(requests[i].styles))]
                for row_chunk in _chunks(rows, batch_size):
                    x, mask = _pad([feats[c] for c, _ in row_chunk])
                    style = torch.tensor([requests[chunk[c][0]].styles[s] for c, s in row_chunk], device=device)
                    latent = model.predict_latent(x, mask, style[:, 0], style[:, 1], style[:, 2])  # [R, F, d]
                    zs = []
                    for r, (c, s) in enumerate(row_chunk):
                        f = wins[c].frames
                        zs.append(sample_latents(model, latent[r:r + 1, :f], num_samples, sampling,
                                                 requests[chunk[c][0]].generators[s]))
                    motions = _decode(model, zs)
                    for (c, s), m in zip(row_chunk, motions):
                        i, j = chunk[c]
                        m = m.float().cpu().numpy()
                        if m.shape[0] != num_samples:  # deterministic: one decode serves all N samples
                            m = np.broadcast_to(m, (num_samples,) + m.shape[1:])
                        _blend(outputs[i][s], m, plans[i], j)
    finally:
        model.train(was_training)
    if denormalise:
        for per_clip in outputs:
            for k, arr in enumerate(per_clip):
                per_clip[k] = denormalise_motion(arr).astype(np.float32)
    return outputs


def clip_frames(index: int, audio) -> int:
    """Motion frames T = floor(A / 2) of request `index`'s audio; ValueError when fewer than MIN_FRAMES."""
    t = motion_frames_for_audio(len(audio))
    if t < MIN_FRAMES:
        raise ValueError(
            f"audio clip {index} has {len(audio)} samples ({len(audio) / 16000:.3f} s) which give {t} motion "
            f"frame(s); at least {MIN_SAMPLES} samples (0.085 s at 16 kHz) are needed for {MIN_FRAMES} frames"
        )
    return t


def single_request(model, audio, subject, emotion, intensity, generator) -> ClipRequest:
    """One clip (numpy or torch waveform), one style (names or indices) -> a ClipRequest (the in-memory APIs)."""
    a = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return ClipRequest(a, [style_indices(model, subject, emotion, intensity)], [generator])


def _decode(model, zs: list) -> list:
    """Decode latents [n_r, F_r, d] through the frozen prior; one call (padded when several rows)."""
    if len(zs) == 1:
        return [model.prior.decode(zs[0], None)]  # [n, F, 53]
    import torch

    from probtalk3d_cli.models.layers import mask_from_lengths

    flat = [z[k] for z in zs for k in range(z.shape[0])]  # every sample its own row
    lengths = torch.tensor([f.shape[0] for f in flat], device=flat[0].device)
    batch = torch.nn.utils.rnn.pad_sequence(flat, batch_first=True)
    mask = mask_from_lengths(lengths, batch.shape[1])
    out = model.prior.decode(batch, None if bool(mask.all()) else mask)  # [sum n_r, F, 53]
    res, pos = [], 0
    for z in zs:
        res.append(out[pos:pos + z.shape[0], : z.shape[1]])
        pos += z.shape[0]
    return res


def generate_motion(
    model,
    audio,
    subject: Union[str, int],
    emotion: Union[str, int] = "neutral",
    intensity: Union[str, int] = "low",
    num_samples: int = 1,
    *,
    sampling: Optional[Sampling] = None,
    generator=None,
    window_seconds: Optional[float] = None,
    overlap_seconds: float = 2.0,
    precision: str = "fp32",
    denormalise: bool = True,
) -> np.ndarray:
    """One clip, one style -> N motion samples (the in-memory API that `evaluate` uses).

    The audio is encoded once (per window) for all N samples, which are decoded as one batch.

    Args:
        model: MotionPredictor on its device.
        audio: [S] 16 kHz mono waveform (numpy or torch; see io.load_audio).
        subject: identity ID (case-insensitive) or index into `model.identities`.
        emotion: name or index 0-7; intensity: low/medium/high or 0-2 (no neutral-with-intensity check here).
        num_samples: N.
        sampling: Sampling (default VQ temperature 0.2 / VAE fact 20).
        generator: torch.Generator for reproducible draws (e.g. `job_generator(seed, key)`); None = global RNG.
        window_seconds, overlap_seconds, precision: see `synthesize`.
        denormalise: FLAME units (default) or the normalised feature.

    Returns:
        [N, T, 53] float32, T = floor(A / 2) for A HuBERT frames of the audio.
    """
    req = single_request(model, audio, subject, emotion, intensity, generator)
    return synthesize(model, [req], num_samples, sampling, window_seconds=window_seconds,
                      overlap_seconds=overlap_seconds, precision=precision, denormalise=denormalise)[0][0]


def describe_style(model, style: tuple) -> tuple[str, str, str]:
    """Index triple -> (subject ID, emotion name, intensity name)."""
    return model.identities[style[0]], EMOTIONS[style[1]], INTENSITIES[style[2]]
