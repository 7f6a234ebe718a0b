"""The data contract shared by every command: clip keys, style vocabulary, official subject lists, the 53-d motion
feature and its fixed min-max normalisation (reference §1).

Clip key: `<SUBJECT>_<SENTENCE 3 digits>_<EMOTION index>_<INTENSITY index>`, e.g. `M003_001_0_0`.
Params layout `[1, T, 403]`: shape 300 | expression 100 | jaw 3. Motion `[T, 53]`: expression 0..49 | jaw 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

EMOTIONS = ("neutral", "happy", "sad", "surprised", "fear", "disgusted", "angry", "contempt")
INTENSITIES = ("low", "medium", "high")  # folders level_1, level_2, level_3

N_SHAPE, N_EXP, N_JAW = 300, 100, 3
N_PARAMS = N_SHAPE + N_EXP + N_JAW  # 403
N_EXP_USED = 50
NFEATS = N_EXP_USED + N_JAW  # 53

# Fixed normalisation ranges (official scaler_exp.pkl / scaler_jaw.pkl): x_n = (x - lo) / (hi - lo)
EXP_RANGE = (-3.0, 3.0)
JAW_RANGE = (-0.1, 0.5)

# Official stage-2 training IDs in file order: the identity one-hot (index 0 = M003 ... 31 = W029).
OFFICIAL_TRAIN_SUBJECTS = (
    "M003", "M005", "M007", "M009", "M011", "M012", "M013", "M019", "M022", "M023", "M024", "M025", "M026",
    "M027", "M028", "M029", "M030", "M031", "W009", "W011", "W014", "W015", "W016", "W018", "W019", "W021",
    "W023", "W024", "W025", "W026", "W028", "W029",
)
OFFICIAL_VAL_SUBJECTS = ("M032", "M033", "M034", "M035", "W033", "W035", "W036")
OFFICIAL_TEST_SUBJECTS = ("M037", "M039", "M040", "M041", "M042", "W037", "W038", "W040")

_KEY_RE = re.compile(r"^(?P<subject>[A-Za-z0-9]+)_(?P<sentence>\d{3})_(?P<emotion>\d)_(?P<intensity>\d)$")


@dataclass(frozen=True, order=True)
class ClipKey:
    """One clip's identity: subject ID, 1-based sentence number, emotion index, intensity index."""

    subject: str
    sentence: int
    emotion: int
    intensity: int

    def __str__(self) -> str:
        return f"{self.subject}_{self.sentence:03d}_{self.emotion}_{self.intensity}"

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def intensity_name(self) -> str:
        return INTENSITIES[self.intensity]


def parse_key(text: str) -> ClipKey:
    """Parse `M003_001_0_0` (a file stem) into a ClipKey.

    Raises:
        ValueError: the text does not follow the key scheme or holds an out-of-range emotion/intensity.
    """
    m = _KEY_RE.match(text)
    if not m:
        raise ValueError(
            f"'{text}' is not a clip key; expected SUBJECT_SENTENCE_EMOTION_INTENSITY such as M003_001_0_0"
        )
    key = ClipKey(m["subject"], int(m["sentence"]), int(m["emotion"]), int(m["intensity"]))
    if key.emotion >= len(EMOTIONS) or key.intensity >= len(INTENSITIES) or key.sentence < 1:
        raise ValueError(f"clip key '{text}' has an emotion index > 7, an intensity index > 2 or sentence 000")
    return key


def parse_emotion(value: str | int) -> int:
    """Emotion by name (case-insensitive) or index 0..7.

    Raises:
        ValueError: unknown emotion, listing the valid names.
    """
    text = str(value).strip().lower()
    if text.isdigit() and int(text) < len(EMOTIONS):
        return int(text)
    if text in EMOTIONS:
        return EMOTIONS.index(text)
    raise ValueError(f"unknown emotion {value!r}; use one of {', '.join(EMOTIONS)} or an index 0-7")


def parse_intensity(value: str | int) -> int:
    """Intensity by name (low/medium/high) or index 0..2.

    Raises:
        ValueError: unknown intensity.
    """
    text = str(value).strip().lower()
    if text.isdigit() and int(text) < len(INTENSITIES):
        return int(text)
    if text in INTENSITIES:
        return INTENSITIES.index(text)
    raise ValueError(f"unknown intensity {value!r}; use low, medium, high or 0, 1, 2")


# --------------------------------------------------------------------------------------------------------
# Motion feature and normalisation
# --------------------------------------------------------------------------------------------------------


def _scale_offset(lo: float, hi: float) -> tuple[float, float]:
    return 1.0 / (hi - lo), -lo / (hi - lo)


EXP_SCALE, EXP_OFFSET = _scale_offset(*EXP_RANGE)  # 1/6, 0.5
JAW_SCALE, JAW_OFFSET = _scale_offset(*JAW_RANGE)  # 5/3, 1/6


def normalise_motion(motion):
    """Map denormalised motion `[..., 53]` to [0, 1] with the fixed official ranges (numpy or torch)."""
    out = motion * 1.0
    out[..., :N_EXP_USED] = motion[..., :N_EXP_USED] * EXP_SCALE + EXP_OFFSET
    out[..., N_EXP_USED:] = motion[..., N_EXP_USED:] * JAW_SCALE + JAW_OFFSET
    return out


def denormalise_motion(motion_n):
    """Inverse of `normalise_motion`: `x = (x_n - offset) / scale` (numpy or torch, `[..., 53]`)."""
    out = motion_n * 1.0
    out[..., :N_EXP_USED] = (motion_n[..., :N_EXP_USED] - EXP_OFFSET) / EXP_SCALE
    out[..., N_EXP_USED:] = (motion_n[..., N_EXP_USED:] - JAW_OFFSET) / JAW_SCALE
    return out


def params_to_motion(params: np.ndarray) -> np.ndarray:
    """`[1, T, 403]` or `[T, 403]` params -> `[T, 53]` denormalised motion (exp 0..49 | jaw), float32."""
    p = np.asarray(params)
    if p.ndim == 3 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 2 or p.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape [1, T, 403] or [T, 403], got {list(np.shape(params))}")
    return np.concatenate([p[:, N_SHAPE:N_SHAPE + N_EXP_USED], p[:, N_SHAPE + N_EXP:]], axis=1).astype(np.float32)


def motion_to_params(motion: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
    """`[T, 53]` motion -> official `[1, T, 403]` float64 params: shape (zeros or `shape` [300]) | 50 exp + 50 zeros | jaw."""
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != NFEATS:
        raise ValueError(f"motion must have shape [T, 53], got {list(m.shape)}")
    t = m.shape[0]
    out = np.zeros((1, t, N_PARAMS), dtype=np.float64)
    if shape is not None:
        out[0, :, :N_SHAPE] = np.asarray(shape, dtype=np.float64).reshape(1, N_SHAPE)
    out[0, :, N_SHAPE:N_SHAPE + N_EXP_USED] = m[:, :N_EXP_USED]
    out[0, :, N_SHAPE + N_EXP:] = m[:, N_EXP_USED:]
    return out


def audio_frames(num_samples: int) -> int:
    """HuBERT output frames for `num_samples` at 16 kHz: the conv-stack formula (k, s) = (10,5), (3,2)x4, (2,2)x2."""
    n = int(num_samples)
    for k, s in ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)):
        n = (n - k) // s + 1
        if n <= 0:
            return 0
    return n


def motion_frames_for_audio(num_samples: int) -> int:
    """Frames generated for an audio clip: the official rule T = floor(A / 2) HuBERT frame pairs."""
    return audio_frames(num_samples) // 2
