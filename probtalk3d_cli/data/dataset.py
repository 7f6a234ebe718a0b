"""Torch datasets for both stages and the padding collate (reference §1.3-1.4, §3.5, §4.7).

Clips load lazily from DATA/param/KEY.npy (`[1, T, 403]` -> 53-d motion, min-max normalised with the official
constants) and DATA/wav/KEY.wav (16 kHz mono float32), optionally cached in RAM after first use.

Random crops (training): with `max_frames = L` and a clip of T > L frames, a start t0 is drawn from a generator
seeded by (seed, epoch, index), so `set_epoch(e)` reproduces the crops of epoch e (e.g. after resuming). The motion
crop is frames [t0, t0+L); the audio crop is samples [640*t0, 640*(t0+L) + AUDIO_TAIL): HuBERT's last frame needs
400 samples from its start at 320*(2L-1), so 80 extra samples give exactly 2L HuBERT frames = L frame pairs
(`schema.motion_frames_for_audio(640*L + 80) == L`). When the crop ends at the end of the recording those samples
may not exist and the crop is shorter; stage-2 alignment then drops the last motion frame (reference §4.2).
With DataLoader workers, call `set_epoch` before creating each epoch's iterator (not with persistent workers);
each worker keeps its own cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from probtalk3d_cli.data.schema import (
    FPS,
    N_PARAMS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    ClipKey,
    normalise_motion,
    params_to_motion,
    parse_key,
)

AUDIO_TAIL = 80  # samples after the last cropped frame so HuBERT yields L frame pairs (see module docstring)


def _as_key(k) -> ClipKey:
    return k if isinstance(k, ClipKey) else parse_key(str(k))


def load_motion(data_root: str | Path, key) -> np.ndarray:
    """Normalised motion `[T, 53]` float32 of one clip from DATA/param/KEY.npy.

    Raises:
        FileNotFoundError / ValueError: missing, corrupt or wrongly shaped file.
    """
    from probtalk3d_cli.io import load_npy

    path = Path(data_root) / "param" / f"{key}.npy"
    params = load_npy(path, "param")
    if params.ndim != 3 or params.shape[0] != 1 or params.shape[2] != N_PARAMS or params.shape[1] < 1:
        raise ValueError(f"param file {path} has shape {list(params.shape)}; expected [1, T, 403] — rerun "
                         "`probtalk3d preprocess`")
    return np.ascontiguousarray(normalise_motion(params_to_motion(params)), dtype=np.float32)


def load_clip_audio(data_root: str | Path, key) -> np.ndarray:
    """Audio `[S]` float32, 16 kHz mono, of one clip from DATA/wav/KEY.wav."""
    from probtalk3d_cli.io import load_audio

    return load_audio(Path(data_root) / "wav" / f"{key}.wav", SAMPLE_RATE)


# A clip whose audio and motion durations differ by more than this is a mismatched pair (another clip's wav, a
# truncated file), not the few frames of slack that stage-2 alignment trims (reference §4.2).
MISMATCH_SECONDS = 0.5
MISMATCH_FRACTION = 0.1


def _clip_problem(root: Path, key, audio: bool) -> Optional[str]:
    """Why one clip's files cannot be trained on (headers only: shape, dtype, size, audio length), or None."""
    path = root / "param" / f"{key}.npy"
    try:
        params = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header, maps the data lazily
    except (ValueError, OSError, EOFError) as exc:
        return f"{path} is unreadable or truncated ({' '.join(str(exc).split())[:120]})"
    shape = list(params.shape)
    del params
    if len(shape) != 3 or shape[0] != 1 or shape[2] != N_PARAMS or shape[1] < 1:
        return f"{path} has shape {shape}, not [1, T, {N_PARAMS}]"
    if not audio:
        return None
    wav = root / "wav" / f"{key}.wav"
    try:
        import soundfile as sf

        info = sf.info(str(wav))
        seconds = info.frames / float(info.samplerate)
    except Exception as exc:  # noqa: BLE001 - soundfile raises its own error types
        return f"{wav} is not a readable wav file ({' '.join(str(exc).split())[:120]})"
    motion_s = shape[1] / FPS
    if abs(seconds - motion_s) > MISMATCH_SECONDS + MISMATCH_FRACTION * max(seconds, motion_s):
        return f"{wav} lasts {seconds:.2f} s but its motion {motion_s:.2f} s (mismatched pair)"
    return None


def check_clip_files(data_root: str | Path, keys: Sequence, audio: bool = False) -> None:
    """Check every clip's files before a training run starts, from their headers (fast; values are checked on load).

    Args:
        data_root: DATA folder.
        keys: clip keys.
        audio: also check DATA/wav/KEY.wav (stage 2): readable, and its duration matches the motion's within
            MISMATCH_SECONDS + MISMATCH_FRACTION x the longer one.

    Raises:
        ValueError: naming how many clips are unusable and the first few, with the fix.
    """
    root = Path(data_root)
    problems = [msg for msg in (_clip_problem(root, k, audio) for k in keys) if msg is not None]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{len(problems)} clip(s) in {root} cannot be trained on: {'; '.join(problems[:3])}{more}; "
                         "delete them or rerun `probtalk3d preprocess`")


class MotionDataset(Dataset):
    """Stage-1 dataset: item = {"key": str, "motion": FloatTensor [T, 53] normalised}.

    Args:
        data_root: DATA folder.
        keys: clip keys (ClipKey or strings), e.g. from `splits.list_clips(..., "prior", ...)`.
        cache: keep decoded clips in RAM after first use.
        max_frames: random crop length L in frames for clips longer than L; None = whole clips.
        seed: crop seed; crops depend only on (seed, epoch, index).
    """

    def __init__(self, data_root: str | Path, keys: Sequence, cache: bool = True, max_frames: Optional[int] = None,
                 seed: int = 0):
        self.data_root = Path(data_root)
        self.keys = [_as_key(k) for k in keys]
        self.cache = cache
        if max_frames is not None and int(max_frames) < 1:
            raise ValueError(f"max_frames must be at least 1 (or None for whole clips), got {max_frames}")
        self.max_frames = None if max_frames is None else int(max_frames)
        self.seed = int(seed)
        self.epoch = 0
        self._motion: dict[ClipKey, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of `epoch` (call before iterating an epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.keys)

    def _get_motion(self, key: ClipKey) -> np.ndarray:
        m = self._motion.get(key)
        if m is None:
            m = load_motion(self.data_root, key)
            if self.cache:
                self._motion[key] = m
        return m

    def crop_start(self, index: int, n_frames: int) -> Optional[int]:
        """The crop start t0 for item `index` of a clip with `n_frames` frames this epoch, or None (no crop)."""
        if self.max_frames is None or n_frames <= self.max_frames:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(0, n_frames - self.max_frames + 1))

    def __getitem__(self, index: int) -> dict:
        key = self.keys[index]
        motion = self._get_motion(key)
        t0 = self.crop_start(index, motion.shape[0])
        if t0 is not None:
            motion = motion[t0:t0 + self.max_frames]
        return {"key": str(key), "motion": torch.from_numpy(np.array(motion, dtype=np.float32))}


class AudioMotionDataset(MotionDataset):
    """Stage-2 dataset: item = MotionDataset item + audio FloatTensor [S] (raw 16 kHz mono), subject (index in
    `identities`), emotion (0-7) and intensity (0-2) ints.

    Raises:
        ValueError: a clip's subject is not in `identities` (named, with the valid list).
    """

    def __init__(self, data_root: str | Path, keys: Sequence, identities: Sequence[str], cache: bool = True,
                 max_frames: Optional[int] = None, seed: int = 0):
        super().__init__(data_root, keys, cache=cache, max_frames=max_frames, seed=seed)
        self.identities = list(identities)
        index = {s: i for i, s in enumerate(self.identities)}
        unknown = sorted({k.subject for k in self.keys if k.subject not in index})
        if unknown:
            raise ValueError(f"subject(s) {', '.join(unknown)} have no identity slot; valid identities: "
                             f"{', '.join(self.identities)} — use a split whose identities include them")
        self._subject_index = index
        self._audio: dict[ClipKey, np.ndarray] = {}

    def _get_audio(self, key: ClipKey) -> np.ndarray:
        a = self._audio.get(key)
        if a is None:
            a = load_clip_audio(self.data_root, key)
            if self.cache:
                self._audio[key] = a
        return a

    def __getitem__(self, index: int) -> dict:
        key = self.keys[index]
        motion = self._get_motion(key)
        audio = self._get_audio(key)
        t0 = self.crop_start(index, motion.shape[0])
        if t0 is not None:
            motion = motion[t0:t0 + self.max_frames]
            audio = audio[t0 * SAMPLES_PER_FRAME:(t0 + self.max_frames) * SAMPLES_PER_FRAME + AUDIO_TAIL]
        return {
            "key": str(key),
            "motion": torch.from_numpy(np.array(motion, dtype=np.float32)),
            "audio": torch.from_numpy(np.array(audio, dtype=np.float32)),
            "subject": self._subject_index[key.subject],
            "emotion": key.emotion,
            "intensity": key.intensity,
        }


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
    out = seqs[0].new_zeros((len(seqs), int(lengths.max())) + tuple(seqs[0].shape[1:]))
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lengths


def collate_clips(items: list[dict]) -> dict:
    """Batch items of different lengths.

    Returns:
        keys: list[str]; motion: [B, Tmax, 53] zero-padded; mask: [B, Tmax] bool (True = valid frame);
        lengths: LongTensor [B]. When items carry audio: audio [B, Smax] zero-padded, audio_lengths LongTensor [B],
        subject / emotion / intensity LongTensor [B].
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    motion, lengths = _pad([it["motion"] for it in items])
    mask = torch.arange(motion.shape[1])[None, :] < lengths[:, None]  # [B, Tmax]
    batch = {"keys": [it["key"] for it in items], "motion": motion, "mask": mask, "lengths": lengths}
    if "audio" in items[0]:
        audio, audio_lengths = _pad([it["audio"] for it in items])
        batch.update(audio=audio, audio_lengths=audio_lengths)
        for name in ("subject", "emotion", "intensity"):
            batch[name] = torch.tensor([it[name] for it in items], dtype=torch.long)
    return batch
