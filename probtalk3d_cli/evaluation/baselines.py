"""Trivial baselines scored in the same table as the models, so a number can be judged against what they get.

* `MeanMotionBaseline` — audio-agnostic: the mean 53-d motion (FLAME units) of the TRAINING split for the clip's
  style (subject, emotion, intensity), pooled over all frames of all training clips of that style, repeated over
  the clip's T frames. A style without training clips uses the mean of its (emotion, intensity) over all subjects
  (counted and reported), and failing that the mean of every training frame.
* `ShiftedGroundTruthBaseline` — the ground truth delayed by one second: prediction frame t shows ground-truth frame
  (t − s) mod T with s = min(25, ⌊T/2⌋) frames, i.e. a circular shift (the first s frames show the end of the
  clip). The motion is real and has exactly the ground truth's statistics (FDD = 0 up to rounding), only its
  timing is wrong; clips shorter than 2 s are shifted by half their length.

Both are deterministic (N = 1, so Diversity is not applicable and MEE = CE = LVE).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from probtalk3d_cli.data.schema import EMOTIONS, FPS, INTENSITIES, NFEATS, ClipKey
from probtalk3d_cli.evaluation.systems import EvalClip, Prediction, System

log = logging.getLogger(__name__)

SHIFT_SECONDS = 1.0
SHIFT_FRAMES = int(SHIFT_SECONDS * FPS)  # 25


def load_gt_motion(data_root: str | Path, key) -> np.ndarray:
    """Ground-truth motion `[T, 53]` float32 in FLAME units (expression 0..49 | jaw) from DATA/param/KEY.npy.

    Only the first 50 of the 100 stored expression coefficients are kept, as in the official evaluation
    (reference §7, §11.20), so "ground truth" here is the 50-coefficient reconstruction, not the full one.
    """
    from probtalk3d_cli.data.schema import N_PARAMS, params_to_motion
    from probtalk3d_cli.io import load_npy

    path = Path(data_root) / "param" / f"{key}.npy"
    params = load_npy(path, "param")
    if params.ndim != 3 or params.shape[0] != 1 or params.shape[2] != N_PARAMS or params.shape[1] < 1:
        raise ValueError(f"param file {path} has shape {list(params.shape)}; expected [1, T, 403] — rerun "
                         "`probtalk3d preprocess`")
    return params_to_motion(params)


def shift_frames(frames: int) -> int:
    """The shift of the shifted-GT baseline for a clip of `frames` frames: min(25, frames // 2)."""
    return min(SHIFT_FRAMES, int(frames) // 2)


def shifted_ground_truth(motion: np.ndarray) -> np.ndarray:
    """`[T, C]` -> the same frames delayed circularly by `shift_frames(T)`: out[t] = motion[(t − s) mod T]."""
    return np.roll(motion, shift_frames(motion.shape[0]), axis=0)


class ShiftedGroundTruthBaseline(System):
    """Ground truth delayed by one second (circular shift; see the module docstring)."""

    kind = "baseline"

    def __init__(self, name: str = "baseline: GT shifted 1 s"):
        super().__init__(name)

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:
        return [Prediction(motion=shifted_ground_truth(c.motion)[None]) for c in clips]

    def describe(self) -> dict:
        d = super().describe()
        d.update(baseline="shifted_gt", shift_frames=SHIFT_FRAMES, num_samples=1,
                 definition="prediction frame t = ground-truth frame (t - s) mod T, s = min(25, floor(T/2)) frames "
                            "(circular shift by one second at 25 fps)")
        return d


class MeanMotionBaseline(System):
    """Mean training motion of the clip's style, repeated over time (see the module docstring).

    Args:
        means: {(subject, emotion, intensity): [53] mean}, from `training_means`.
        frames: {(subject, emotion, intensity): frames pooled}.
    """

    kind = "baseline"

    def __init__(self, means: dict, frames: dict, train_clips: int, name: str = "baseline: mean motion"):
        super().__init__(name)
        if not means:
            raise ValueError("the mean-motion baseline found no training clips; check the split (data.splits) or drop "
                             "--baselines")
        self.means = means
        self.frames = frames
        self.train_clips = train_clips
        self.by_emotion = self._pool(lambda s: (s[1], s[2]))
        self.overall = self._pool(lambda s: ())[()]
        self.fallback: dict[str, str] = {}  # style label -> "emotion-intensity" | "overall"

    def _pool(self, group) -> dict:
        sums: dict = {}
        for style, mean in self.means.items():
            g = group(style)
            total, n = sums.get(g, (np.zeros(NFEATS, np.float64), 0))
            sums[g] = (total + mean.astype(np.float64) * self.frames[style], n + self.frames[style])
        return {g: (total / n).astype(np.float32) for g, (total, n) in sums.items()}

    def mean_for(self, key: ClipKey) -> np.ndarray:
        style = (key.subject, key.emotion, key.intensity)
        if style in self.means:
            return self.means[style]
        label = f"{key.subject}/{EMOTIONS[key.emotion]}/{INTENSITIES[key.intensity]}"
        if (key.emotion, key.intensity) in self.by_emotion:
            self.fallback[label] = "emotion-intensity"
            return self.by_emotion[(key.emotion, key.intensity)]
        self.fallback[label] = "overall"
        return self.overall

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:
        return [Prediction(motion=np.repeat(self.mean_for(c.key)[None, None], c.frames, axis=1)) for c in clips]

    def fallback_note(self) -> Optional[str]:
        """One line on the styles that had no training clip (None when every style had its own mean)."""
        if not self.fallback:
            return None
        labels = sorted(self.fallback)
        shown = ", ".join(f"{label} ({self.fallback[label]})" for label in labels[:8])
        return (f"mean-motion baseline: {len(labels)} style(s) have no training clip and use a pooled mean instead "
                f"(emotion-intensity = over all subjects, overall = all training frames): {shown}"
                f"{' ...' if len(labels) > 8 else ''}")

    def describe(self) -> dict:
        d = super().describe()
        d.update(baseline="mean_motion", num_samples=1, train_clips=self.train_clips, styles=len(self.means),
                 definition="mean 53-d motion of the training split per (subject, emotion, intensity), pooled over "
                            "all frames of its clips, repeated over T; fallback: (emotion, intensity) mean over all "
                            "subjects, then the mean of all training frames",
                 fallback_styles=dict(sorted(self.fallback.items())))
        return d


def training_means(data_root: str | Path, keys: Sequence[ClipKey], workers: int = 4, progress_desc: str = "baseline"):
    """Per-style mean motion of the given (training) clips, pooled over frames.

    Returns:
        (means {(subject, emotion, intensity): [53] float32}, frames {style: int}).
    """
    from probtalk3d_cli.ui import progress

    sums: dict = {}
    frames: dict = {}

    def load(k):
        return k, load_gt_motion(data_root, k)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for key, motion in progress(pool.map(load, keys), total=len(keys), desc=progress_desc, unit="clip",
                                    leave=False):
            style = (key.subject, key.emotion, key.intensity)
            sums[style] = sums.get(style, 0.0) + motion.astype(np.float64).sum(0)
            frames[style] = frames.get(style, 0) + motion.shape[0]
    means = {s: (sums[s] / frames[s]).astype(np.float32) for s in sums}
    return means, frames


def build_mean_baseline(data_root: str | Path, splits_spec: str = "auto", workers: int = 4) -> MeanMotionBaseline:
    """The mean-motion baseline from the stage-2 TRAINING split of `data_root` (reference §1.5)."""
    from probtalk3d_cli.data.splits import list_clips

    keys = list_clips(data_root, "pred", "train", splits_spec)
    means, frames = training_means(data_root, keys, workers, "baseline: training means")
    return MeanMotionBaseline(means, frames, len(keys))
