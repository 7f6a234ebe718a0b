"""Tiny fake EMOTE/MEAD files: AAC audio and EMOTE-style FLAME HDF5 (tests of `preprocess mead`)."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import soundfile as sf

from probtalk3d_cli.io import ffmpeg_exe


def make_m4a(path, seconds=0.5, sr=22050, freq=440.0):
    """A stereo sine at 22.05 kHz encoded as AAC/m4a with the ffmpeg that imageio-ffmpeg ships."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    wav = path.with_suffix(".src.wav")
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(str(wav), np.stack([tone, tone], 1), sr)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "64k", str(path)],
                   check=True)
    wav.unlink()


def make_hdf5(path, frames, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    parts = {"shape": rng.normal(size=(1, frames, 300)), "exp": rng.normal(size=(1, frames, 100)),
             "jaw": rng.normal(0, 0.1, size=(1, frames, 3))}
    with h5py.File(path, "w") as fh:
        for name, arr in parts.items():
            fh.create_dataset(name, data=arr.astype(np.float32))
        fh.create_dataset("global_pose", data=np.zeros((1, frames, 3), np.float32))  # ignored, as in EMOTE files
    return np.concatenate([parts["shape"], parts["exp"], parts["jaw"]], axis=2).astype(np.float32)
