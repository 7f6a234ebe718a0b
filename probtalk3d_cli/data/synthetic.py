"""A synthetic MEAD-shaped corpus: procedural speech-like audio and FLAME motion driven by it (no licensed data).

Each clip is built from a syllable schedule (consonant + vowel, stress, word gaps and phrase pauses). The audio
is a source-filter voice (harmonics of a subject/emotion-dependent pitch shaped by vowel formants, consonant
noise bursts, nasal murmurs). The motion is a deterministic function of the same schedule plus style:

* mouth (speech): jaw[0] (jaw opening, radians) and exp[0] (lip opening) follow the syllable envelope, scaled
  by vowel openness; exp[1] (lip rounding) follows o/u; exp[2] (lip stretch / smile corners) follows i/e;
  bilabial closures (p, m) press the lips shut; the mouth leads the sound by one frame (40 ms);
* emotion: an upper-face pattern on exp[3..7] (brow raise, brow furrow, squint/cheek raise, nose wrinkle/upper-lip
  raise, lip press) plus a smile/frown offset on exp[2], times 0.6/0.8/1.0 by intensity (neutral has none),
  displayed dynamically as in acted emotional speech: it builds up over the first syllables, swells while
  speaking and peaks on stressed syllables (`emotion_envelope`). A per-clip constant would be invisible to the
  method's instance-normalised conv blocks (reference §2), which remove each channel's mean over the clip, so a
  VQ-VAE prior could not learn it (generator version 1 did that; measured: 3 % emotion recovery after
  reconstruction, against 93 % now);
* identity: a mouth gain, a small bias, slow subject-specific movement on exp[8..49], and a fixed random
  shape vector (stored, unused by the models); plus small smoothed noise.

That semantic mapping of exp[0..7] and jaw[0] is shared with the procedural demo FLAME head. Lengths: a clip
of T motion frames (25 fps) has exactly T*640 + 80 audio samples (16 kHz), so HuBERT yields 2T frames and
`schema.motion_frames_for_audio(S) == T`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from probtalk3d_cli.data.schema import (
    EMOTIONS,
    FPS,
    N_EXP,
    N_JAW,
    N_PARAMS,
    N_SHAPE,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    ClipKey,
)

log = logging.getLogger(__name__)

DEFAULT_SUBJECTS = 4
DEFAULT_SENTENCES = 4
DEFAULT_SEED = 0
MIN_SENTENCES = 3  # one each for train, val and test
AUDIO_TAIL = 80  # extra samples so that HuBERT's last frame pair fits: audio_frames(640*T + 80) == 2*T
MARKER_FILE = "synthetic.json"
MARKER_FORMAT = "probtalk3d-synthetic"
GENERATOR_VERSION = 2  # 2: emotion displayed dynamically (emotion_envelope); 1: a per-clip constant
INTENSITY_SCALE = (0.6, 0.8, 1.0)  # emotion pattern scale for level_1/2/3 (low stays far from neutral)
ANTICIPATION_S = 0.04  # the mouth leads the sound by one frame
# Emotion display over time (`emotion_envelope`): onset from EMOTION_ONSET_FLOOR of the full pattern to all of it over
# EMOTION_ONSET_S after the first syllable starts, then EMOTION_BASE + EMOTION_SPEECH x (speech envelope, smoothed)
# + EMOTION_ACCENT x (stressed-syllable apexes).
EMOTION_ONSET_FLOOR = 0.2
EMOTION_ONSET_S = 0.6
EMOTION_BASE = 0.6
EMOTION_SPEECH = 0.4
EMOTION_ACCENT = 0.3
CONTROL = 16  # samples between harmonic-amplitude updates (1 ms)

VOWELS = "aeiou"
# Formants F1, F2, F3 (Hz, adult male; scaled per subject) of the five vowels.
FORMANTS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010), "o": (570, 840, 2410),
            "u": (300, 870, 2240)}
OPENNESS = {"a": 1.0, "e": 0.6, "i": 0.3, "o": 0.7, "u": 0.35}
ROUNDING = {"a": 0.0, "e": 0.0, "i": 0.0, "o": 0.8, "u": 1.0}
SPREAD = {"a": 0.0, "e": 0.6, "i": 1.0, "o": 0.0, "u": 0.0}
# consonant: (kind, noise band Hz, noise amplitude, duration range s). "" = no consonant.
CONSONANTS = {
    "": ("none", None, 0.0, (0.0, 0.0)),
    "s": ("fricative", (4000, 7500), 0.10, (0.07, 0.11)),
    "f": ("fricative", (1500, 6000), 0.05, (0.06, 0.09)),
    "t": ("plosive", (2000, 6000), 0.18, (0.05, 0.07)),
    "k": ("plosive", (1500, 3500), 0.16, (0.05, 0.08)),
    "p": ("bilabial", (500, 2500), 0.16, (0.05, 0.08)),
    "m": ("nasal", None, 0.0, (0.05, 0.08)),
}
CONSONANT_CHOICES = ("", "s", "f", "t", "k", "p", "m")
CONSONANT_PROBS = (0.2, 0.15, 0.1, 0.15, 0.12, 0.14, 0.14)

# Emotion: pitch factor, pitch-accent size, loudness factor, speaking-rate factor (duration multiplier).
EMOTION_VOICE = {
    "neutral": (1.00, 0.06, 1.00, 1.00),
    "happy": (1.12, 0.14, 1.10, 0.95),
    "sad": (0.92, 0.03, 0.80, 1.15),
    "surprised": (1.18, 0.16, 1.10, 0.95),
    "fear": (1.14, 0.08, 0.90, 0.90),
    "disgusted": (0.97, 0.07, 0.95, 1.05),
    "angry": (1.06, 0.10, 1.25, 0.92),
    "contempt": (0.95, 0.05, 0.90, 1.05),
}
# Emotion pattern at full intensity on exp[2] (smile/frown offset) and exp[3..7]
# (brow raise, brow furrow, squint/cheek raise, nose wrinkle, lip press).
EMOTION_PATTERN = {
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "happy": (1.1, 0.3, -0.2, 1.3, 0.3, -0.3),
    "sad": (-0.9, 0.9, 1.0, -0.2, 0.0, 0.7),
    "surprised": (0.0, 1.8, -0.5, -0.6, 0.0, -0.5),
    "fear": (0.5, 1.6, 0.9, -0.7, -0.3, -0.3),
    "disgusted": (-0.4, -0.4, 0.8, 0.7, 1.7, 0.3),
    "angry": (-0.2, -1.1, 1.7, 0.8, 0.3, 1.2),
    "contempt": (0.7, 0.4, 0.2, 0.2, 0.6, 1.2),
}


# --------------------------------------------------------------------------------------------------------
# Styles and schedules
# --------------------------------------------------------------------------------------------------------


def subject_ids(n: int) -> list[str]:
    """`n` synthetic subject IDs, alternating M001, W001, M002, W002, ... (returned sorted: Ms, then Ws)."""
    if n < 1:
        raise ValueError(f"--subjects must be at least 1, got {n}")
    if n > 1998:
        raise ValueError(f"--subjects {n} is more than the 1998 IDs M001..W999 allow")
    ids = [("M" if i % 2 == 0 else "W") + f"{i // 2 + 1:03d}" for i in range(n)]
    return sorted(ids)


def neutral_sentence_count(sentences: int) -> int:
    """Neutral clips per subject: 4/3 of the emotional count, as MEAD's 40 neutral vs 30 per emotion and level."""
    return math.ceil(sentences * 4 / 3)


def split_ranges(n: int) -> dict[str, tuple[int, int]]:
    """Sentences 1..n split 80/10/10 in order (official proportions), at least one sentence in val and test."""
    if n < MIN_SENTENCES:
        raise ValueError(f"need at least {MIN_SENTENCES} sentences to fill train, val and test, got {n}")
    n_val = max(1, round(0.1 * n))
    n_test = max(1, round(0.1 * n))
    n_train = n - n_val - n_test
    return {"train": (1, n_train), "val": (n_train + 1, n_train + n_val), "test": (n_train + n_val + 1, n)}


@dataclass(frozen=True)
class SubjectStyle:
    """Per-subject constants (drawn once from the seed)."""

    index: int
    f0: float  # mean pitch (Hz)
    formant_scale: float  # vocal-tract length factor
    rate: float  # syllable duration factor
    gain: float  # mouth movement gain
    bias: np.ndarray  # [8] bias on exp[0..7]
    jaw_bias: float
    expressiveness: float  # emotion pattern gain
    shape: np.ndarray  # [300] FLAME shape
    loadings: np.ndarray  # [3, 42] slow idiosyncratic movement on exp[8..49]
    freqs: np.ndarray  # [3] Hz


def _subject_style(seed: int, sid: str) -> SubjectStyle:
    index = int(sid[1:]) * 2 + (sid[0] == "W")
    rng = np.random.default_rng([seed, 1, index])
    female = sid[0] == "W"
    f0 = float(rng.uniform(185, 235) if female else rng.uniform(100, 135))
    decay = 1.0 / (1.0 + np.arange(N_SHAPE) / 10.0)
    loadings = rng.normal(0, 0.08, size=(3, 42)) / (1.0 + np.arange(42) / 10.0)
    return SubjectStyle(
        index=index,
        f0=f0,
        formant_scale=float(rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05)),
        rate=float(rng.uniform(0.85, 1.15)),
        gain=float(rng.uniform(0.8, 1.25)),
        bias=rng.normal(0, 0.08, size=8),
        jaw_bias=float(rng.uniform(-0.01, 0.02)),
        expressiveness=float(rng.uniform(0.85, 1.15)),
        shape=(rng.normal(0, 0.6, size=N_SHAPE) * decay).astype(np.float32),
        loadings=loadings,
        freqs=rng.uniform(0.2, 0.8, size=3),
    )


@dataclass(frozen=True)
class Syllable:
    consonant: str
    c_start: float  # consonant segment [c_start, v_start)
    v_start: float  # vowel nucleus [v_start, v_end)
    v_end: float
    vowel: str
    amp: float  # nucleus loudness (stress x emotion energy)
    stressed: bool


def _text(seed: int, sentence: int, emotion: int, intensity: int) -> list[tuple[str, str, bool, int]]:
    """The 'script' of a sentence: (consonant, vowel, stressed, gap kind after) per syllable, shared by subjects."""
    rng = np.random.default_rng([seed, 2, sentence, emotion, intensity])
    n = int(rng.integers(6, 12))
    out = []
    for i in range(n):
        cons = CONSONANT_CHOICES[int(rng.choice(len(CONSONANT_CHOICES), p=CONSONANT_PROBS))]
        vowel = VOWELS[int(rng.integers(len(VOWELS)))]
        stressed = bool(rng.random() < 0.35)
        r = rng.random()
        gap = 0 if r < 0.5 else (1 if r < 0.9 or i >= n - 2 else 2)  # none / word gap / phrase pause
        out.append((cons, vowel, stressed, gap))
    return out


def _schedule(seed: int, key: ClipKey, style: SubjectStyle) -> tuple[list[Syllable], float, np.random.Generator]:
    """Timed syllables of one clip and its total duration (s); returns the clip's generator for later draws."""
    rng = np.random.default_rng([seed, 3, style.index, key.sentence, key.emotion, key.intensity])
    _, _, energy, rate = EMOTION_VOICE[EMOTIONS[key.emotion]]
    t = float(rng.uniform(0.15, 0.3))
    syls = []
    for cons, vowel, stressed, gap in _text(seed, key.sentence, key.emotion, key.intensity):
        lo, hi = CONSONANTS[cons][3]
        c_dur = float(rng.uniform(lo, hi)) * style.rate * rate if cons else 0.0
        v_dur = 0.16 * style.rate * rate * float(rng.uniform(0.8, 1.25)) * (1.25 if stressed else 1.0)
        amp = energy * (1.25 if stressed else 1.0) * float(rng.uniform(0.9, 1.1))
        syls.append(Syllable(cons, t, t + c_dur, t + c_dur + v_dur, vowel, amp, stressed))
        t += c_dur + v_dur
        if gap == 1:
            t += float(rng.uniform(0.04, 0.09))
        elif gap == 2:
            t += float(rng.uniform(0.2, 0.35))
    t += float(rng.uniform(0.2, 0.35))
    return syls, t, rng


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Raised-cosine 0->1 over [0, width], 0 before, 1 after."""
    y = np.clip(x / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * y)


def _nucleus_env(s: Syllable, t: np.ndarray) -> np.ndarray:
    return s.amp * _ramp(t - s.v_start, 0.03) * _ramp(s.v_end - t, 0.05)


def _tracks(syls: list[Syllable], t: np.ndarray) -> dict[str, np.ndarray]:
    """Articulation tracks at sorted times `t` (s): vowel envelope weighted by openness/rounding/spread, and lip
    closure. Each syllable only touches the samples of its own segment."""
    open_, round_, spread, close, env = (np.zeros_like(t) for _ in range(5))
    for s in syls:
        a, b = np.searchsorted(t, [s.v_start, s.v_end])
        e = _nucleus_env(s, t[a:b])
        env[a:b] += e
        open_[a:b] += e * OPENNESS[s.vowel]
        round_[a:b] += e * ROUNDING[s.vowel]
        spread[a:b] += e * SPREAD[s.vowel]
        if CONSONANTS[s.consonant][0] in ("bilabial", "nasal"):
            a, b = np.searchsorted(t, [s.c_start, s.v_start])
            close[a:b] += _ramp(t[a:b] - s.c_start, 0.02) * _ramp(s.v_start - t[a:b], 0.02)
    return {"env": env, "open": open_, "round": round_, "spread": spread, "close": close}


# --------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------


def _band_noise(rng: np.random.Generator, n: int, band: tuple[float, float]) -> np.ndarray:
    """White noise band-limited to `band` Hz (FFT mask), unit RMS."""
    x = rng.standard_normal(n)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec[(f < band[0]) | (f > band[1])] = 0.0
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


def _synth_audio(syls: list[Syllable], n_samples: int, style: SubjectStyle, emotion: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Source-filter voice: pitch harmonics shaped by interpolated vowel formants, plus consonant noise."""
    sr = SAMPLE_RATE
    t = np.arange(n_samples) / sr
    pitch, accent, _, _ = EMOTION_VOICE[EMOTIONS[emotion]]
    dur = n_samples / sr
    # Pitch: declination, accents on stressed syllables, slight vibrato.
    rel = 1.0 - 0.10 * t / dur + 0.01 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi))
    for s in syls:
        if s.stressed:
            c = 0.5 * (s.v_start + s.v_end)
            rel += accent * np.exp(-0.5 * ((t - c) / 0.08) ** 2)
    f0 = style.f0 * pitch * rel
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # Formant trajectories: vowel targets at nucleus centres, linear transitions between them.
    centres = np.array([0.5 * (s.v_start + s.v_end) for s in syls])
    fm = np.array([FORMANTS[s.vowel] for s in syls], dtype=np.float64) * style.formant_scale  # [n_syl, 3]
    formants = [np.interp(t, centres, fm[:, i]) for i in range(3)]
    tr = _tracks(syls, t)
    nasal = np.zeros(n_samples)
    for s in syls:
        if s.consonant == "m":
            nasal += 0.35 * _ramp(t - s.c_start, 0.015) * _ramp(s.v_start - t, 0.015)
    voiced_env = tr["env"] + nasal
    voice = np.zeros(n_samples)
    n_harm = int(5000 // (style.f0 * pitch * 0.85))
    bandwidths = (90.0, 120.0, 170.0)
    gains = (1.0, 0.6, 0.25)
    idx = np.flatnonzero(voiced_env > 1e-4)
    if idx.size:
        # Harmonic amplitudes vary slowly: evaluate them every CONTROL samples, interpolate linearly in between.
        ctl = np.arange(0, n_samples + CONTROL, CONTROL).clip(max=n_samples - 1)
        nas = nasal[ctl] / (voiced_env[ctl] + 1e-9)  # share of nasal murmur in the voiced signal
        h = np.arange(1, n_harm + 1)[:, None] * f0[ctl][None, :]  # [K, C] harmonic frequencies (Hz)
        vowel_resp = sum(g / (1.0 + ((h - f[ctl][None, :]) / b) ** 2) for f, b, g in zip(formants, bandwidths, gains))
        nasal_resp = 1.0 / (1.0 + ((h - 250.0) / 100.0) ** 2)
        amps = ((1 - nas) * vowel_resp + nas * nasal_resp) / (1.0 + h / 400.0)
        amps /= np.sqrt(0.5 * np.sum(amps ** 2, axis=0)) + 1e-9  # unit RMS per unit envelope
        j, w = np.divmod(idx, CONTROL)
        w = (w / CONTROL).astype(np.float32)
        amps = amps.astype(np.float32)
        a_idx = amps[:, j] * (1 - w) + amps[:, j + 1] * w  # [K, N_voiced]
        ph = np.mod(phase[idx], 2 * np.pi).astype(np.float32)
        k_idx = np.arange(1, n_harm + 1, dtype=np.float32)[:, None]
        voice[idx] = np.sum(a_idx * np.sin(k_idx * ph[None, :]), axis=0) * voiced_env[idx]
    audio = 0.12 * voice
    for s in syls:
        kind, band, amp, _ = CONSONANTS[s.consonant]
        if band is None:
            continue
        if kind == "fricative":
            a, b = s.c_start, s.v_start
        else:  # closure (silence) then a short release burst just before the vowel
            a, b = max(s.c_start, s.v_start - 0.02), s.v_start
        i0, i1 = int(a * sr), int(b * sr)
        if i1 - i0 < 8:
            continue
        seg_t = t[i0:i1]
        shape = _ramp(seg_t - a, 0.01) * _ramp(b - seg_t, 0.01)
        audio[i0:i1] += amp * shape * _band_noise(rng, i1 - i0, band)
    audio += 0.002 * rng.standard_normal(n_samples)  # room noise: silence is never digital zero
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding (numpy only)."""
    r = max(1, int(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    pad = np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(pad, k, mode="valid")
    return np.stack([np.convolve(pad[:, j], k, mode="valid") for j in range(x.shape[1])], axis=1)


def emotion_envelope(syls: list[Syllable], t: np.ndarray, speech_env: np.ndarray) -> np.ndarray:
    """How strongly the emotion pattern shows at frame times `t` (s), about 0.2-1.4 (mean about 0.8).

    Onset: from EMOTION_ONSET_FLOOR to 1 over EMOTION_ONSET_S after the first syllable starts (the face is nearly
    neutral before speaking); then EMOTION_BASE + EMOTION_SPEECH x the syllable envelope smoothed over 4 frames
    (capped at 1.5) + EMOTION_ACCENT x apexes on stressed syllables (Gaussians of 0.15 s at their nucleus centres,
    capped at 1).
    """
    onset = EMOTION_ONSET_FLOOR + (1.0 - EMOTION_ONSET_FLOOR) * _ramp(t - syls[0].c_start, EMOTION_ONSET_S)
    accent = np.zeros_like(t)
    for s in syls:
        if s.stressed:
            accent += np.exp(-0.5 * ((t - 0.5 * (s.v_start + s.v_end)) / 0.15) ** 2)
    speech = _smooth(np.minimum(speech_env, 1.5), 4.0)
    return onset * (EMOTION_BASE + EMOTION_SPEECH * speech + EMOTION_ACCENT * np.minimum(accent, 1.0))


def _synth_motion(syls: list[Syllable], n_frames: int, style: SubjectStyle, key: ClipKey,
                  rng: np.random.Generator) -> np.ndarray:
    """FLAME params `[1, T, 403]` float32 (shape | exp | jaw) following the schedule and the style."""
    tf = (np.arange(n_frames) + 0.5) / FPS + ANTICIPATION_S
    tr = {k: _smooth(v, 1.0) for k, v in _tracks(syls, tf).items()}
    g = style.gain
    exp = np.zeros((n_frames, N_EXP))
    jaw = np.zeros((n_frames, N_JAW))
    # Mouth: opening, rounding, stretch; bilabial closures press the lips together.
    exp[:, 0] = g * (1.5 * tr["open"] - 0.6 * tr["close"])
    exp[:, 1] = g * 1.4 * tr["round"]
    exp[:, 2] = g * 1.1 * tr["spread"]
    jaw[:, 0] = style.jaw_bias + g * (0.02 + 0.2 * tr["open"] - 0.02 * tr["close"])
    # Emotion: the style's pattern shown with the emotion envelope, with a slow, small modulation.
    pattern = np.array(EMOTION_PATTERN[EMOTIONS[key.emotion]])
    scale = INTENSITY_SCALE[key.intensity] * style.expressiveness
    mod = 1.0 + 0.06 * np.sin(2 * np.pi * 0.3 * tf + rng.uniform(0, 2 * np.pi))
    exp[:, 2:8] += scale * (emotion_envelope(syls, tf, tr["env"]) * mod)[:, None] * pattern[None, :]
    exp[:, :8] += style.bias[None, :]
    # Identity: slow idiosyncratic movement on exp[8..49].
    phases = rng.uniform(0, 2 * np.pi, size=3)
    waves = np.sin(2 * np.pi * style.freqs[None, :] * tf[:, None] + phases[None, :])  # [T, 3]
    exp[:, 8:50] = waves @ style.loadings
    # Small smooth noise.
    exp[:, :50] += _smooth(rng.normal(0, 0.03, size=(n_frames, 50)), 1.0)
    jaw[:, 0] += _smooth(rng.normal(0, 0.003, size=n_frames), 1.0)
    jaw[:, 1:] = _smooth(rng.normal(0, 0.002, size=(n_frames, 2)), 1.0)
    params = np.zeros((1, n_frames, N_PARAMS), dtype=np.float32)
    params[0, :, :N_SHAPE] = style.shape[None, :]
    params[0, :, N_SHAPE:N_SHAPE + N_EXP] = exp
    params[0, :, N_SHAPE + N_EXP:] = jaw
    return params


def synthesize_clip(key: ClipKey, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic clip.

    Returns:
        params: float32 `[1, T, 403]` (shape 300 | exp 100 | jaw 3), 25 fps.
        audio: float32 `[T*640 + 80]` in [-1, 1], 16 kHz mono.
    """
    style = _subject_style(seed, key.subject)
    syls, duration, rng = _schedule(seed, key, style)
    n_frames = int(math.ceil(duration * FPS))
    n_samples = n_frames * SAMPLES_PER_FRAME + AUDIO_TAIL
    audio = _synth_audio(syls, n_samples, style, key.emotion, rng)
    params = _synth_motion(syls, n_frames, style, key, rng)
    return params, audio


def _write_clip(args: tuple[str, int, str]) -> tuple[str, int, int]:
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.io import atomic_save_npy, save_wav

    key_s, seed, out = args
    params, audio = synthesize_clip(parse_key(key_s), seed)
    atomic_save_npy(Path(out) / "param" / f"{key_s}.npy", params)
    save_wav(Path(out) / "wav" / f"{key_s}.wav", audio)
    return key_s, params.shape[1], audio.size


def synthetic_keys(subjects: list[str], sentences: int) -> list[ClipKey]:
    """Every clip key of the corpus: neutral only at intensity 0 (as MEAD), emotions 1-7 at three levels."""
    keys = []
    for sid in subjects:
        for s in range(1, neutral_sentence_count(sentences) + 1):
            keys.append(ClipKey(sid, s, 0, 0))
        for e in range(1, len(EMOTIONS)):
            for i in range(3):
                for s in range(1, sentences + 1):
                    keys.append(ClipKey(sid, s, e, i))
    return sorted(keys)


def synthetic_splits(subjects: list[str], sentences: int):
    """Split by sentence for both stages (80/10/10, at least one sentence each); identities = all subjects."""
    from probtalk3d_cli.data.splits import SplitRule, SplitSet

    neu = split_ranges(neutral_sentence_count(sentences))
    emo = split_ranges(sentences)
    rules = {s: SplitRule(list(subjects), neu[s], emo[s]) for s in ("train", "val", "test")}
    return SplitSet("synthetic", rules, {s: SplitRule(list(subjects), neu[s], emo[s]) for s in rules},
                    list(subjects))


def _read_marker(out: Path) -> Optional[dict]:
    """The corpus marker in `out`, or None when it is absent or unreadable."""
    try:
        return json.loads((out / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _check_out(out: Path, marker: dict) -> None:
    from probtalk3d_cli.io import is_temporary

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder for the corpus")
    existing = [f for sub in ("param", "wav") if (out / sub).is_dir()
                for f in (out / sub).iterdir() if not is_temporary(f)]
    if not existing:
        return
    mpath = out / MARKER_FILE
    if mpath.is_file():
        if _read_marker(out) == marker:
            return  # same corpus: rewriting gives identical bytes
        raise ValueError(f"{out} holds a synthetic corpus made with other settings ({mpath}); choose an empty --out "
                         "folder or delete the old corpus first")
    raise ValueError(f"{out} already holds {len(existing)} data file(s) in param/ or wav/ that are not this synthetic "
                     "corpus; choose an empty --out folder")


def corpus_marker(subjects: int, sentences: int, seed: int) -> dict:
    """The MARKER_FILE content of a corpus made with these settings by this generator version."""
    return {"format": MARKER_FORMAT, "version": GENERATOR_VERSION, "subjects": subject_ids(subjects),
            "sentences": sentences, "neutral_sentences": neutral_sentence_count(sentences), "seed": seed}


def corpus_complete(out: str | Path, subjects: int, sentences: int, seed: int) -> bool:
    """True when `out` holds a finished corpus with these settings: its marker, every clip's files and splits.json
    (so a caller can reuse it instead of writing it again)."""
    out = Path(out)
    if _read_marker(out) != corpus_marker(subjects, sentences, seed):
        return False
    return all((out / "param" / f"{k}.npy").is_file() and (out / "wav" / f"{k}.wav").is_file()
               for k in synthetic_keys(subject_ids(subjects), sentences)) and (out / "splits.json").is_file()


def make_synthetic_corpus(out: str | Path, subjects: int = DEFAULT_SUBJECTS, sentences: int = DEFAULT_SENTENCES,
                          seed: int = DEFAULT_SEED, workers: int = 1) -> dict:
    """Write a synthetic corpus in the DATA layout: param/KEY.npy `[1, T, 403]` float32, wav/KEY.wav (16 kHz,
    16-bit), splits.json (by sentence) and synthetic.json (the generator settings).

    Args:
        out: DATA folder (created; must be empty or hold the same synthetic corpus).
        subjects: number of subjects (IDs M001, W001, M002, ...).
        sentences: sentences per emotion and level (>= 3); neutral gets ceil(4/3 x sentences).
        seed: generator seed; the same seed and arguments give byte-identical files.
        workers: processes (1 = inline).

    Returns:
        summary dict: out, subjects (IDs), sentences, neutral_sentences, seed, clips, frames, audio_seconds,
        seconds (wall time), splits (clip counts per stage/split), splits_file.
    """
    from probtalk3d_cli.data.splits import SPLIT_NAMES, write_splits
    from probtalk3d_cli.io import atomic_write_json
    from probtalk3d_cli.ui import progress

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    ids = subject_ids(int(subjects))
    split_ranges(int(sentences))  # validates the count
    out = Path(out)
    marker = corpus_marker(int(subjects), int(sentences), int(seed))
    _check_out(out, marker)
    keys = synthetic_keys(ids, int(sentences))
    t0 = time.perf_counter()
    jobs = [(str(k), int(seed), str(out)) for k in keys]
    frames = samples = 0
    if workers == 1:
        for job in progress(jobs, total=len(jobs), desc="synthetic", unit="clip"):
            _, t, s = _write_clip(job)
            frames, samples = frames + t, samples + s
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            for _, t, s in progress(ex.map(_write_clip, jobs, chunksize=8), total=len(jobs), desc="synthetic",
                                    unit="clip"):
                frames, samples = frames + t, samples + s
    splitset = synthetic_splits(ids, int(sentences))
    splits_file = write_splits(splitset, out / "splits.json")
    atomic_write_json(out / MARKER_FILE, marker)
    counts = {stage: {s: sum(getattr(splitset, stage)[s].matches(k) for k in keys) for s in SPLIT_NAMES}
              for stage in ("prior", "pred")}
    summary = {
        "out": str(out), "subjects": ids, "sentences": int(sentences),
        "neutral_sentences": marker["neutral_sentences"], "seed": int(seed), "clips": len(keys), "frames": frames,
        "audio_seconds": round(samples / SAMPLE_RATE, 1), "seconds": round(time.perf_counter() - t0, 2),
        "splits": counts, "splits_file": str(splits_file),
    }
    log.info("synthetic corpus: %d clips, %.1f min of audio in %s", len(keys), samples / SAMPLE_RATE / 60, out)
    return summary
