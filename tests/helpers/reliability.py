"""Helpers of the reliability tests (tests/reliability): a malicious pickle, test tones, and the checks every failing
command must pass (one error line, nothing written, no temporary files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from probtalk3d_cli.io import TMP_MARK

SR = 16000


class Evil:
    """Unpickling this runs `touch <marker>`: every loader must refuse it before that happens."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tone(seconds: float, sr: int = SR, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """A speech-band tone with a syllable-like envelope, float64 in [-0.5, 0.5]: [S] or [S, C]."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
    if channels == 1:
        return x
    return np.stack([x * (1.0 - 0.1 * c) for c in range(channels)], axis=1)


def snapshot(*roots: Path) -> dict:
    """Every file and folder under `roots` with its size and modification time."""
    out = {}
    for root in roots:
        if root.exists():
            for p in root.rglob("*"):
                st = p.lstat()
                out[str(p)] = (p.is_dir(), 0 if p.is_dir() else st.st_size, 0 if p.is_dir() else st.st_mtime_ns)
    return out


def temporaries(*roots: Path) -> list[str]:
    return [str(p) for root in roots if root.exists() for p in root.rglob(f"*{TMP_MARK}*")]


def error_line(stderr: str) -> str:
    """The single line on stderr (run with -q, so there is nothing else); fails if there are more."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def has_words(text: str, words) -> bool:
    flat = " ".join(text.lower().split())
    return all(w.lower() in flat for w in words)
