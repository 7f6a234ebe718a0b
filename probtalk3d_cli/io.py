"""File I/O shared by every command: atomic writes, safe output paths, audio decoding and array checks.

Every file the tool writes goes through `atomic_path` (temporary name in the same folder, then `os.replace`),
so an interrupted run never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
TMP_MARK = ".tmp-"  # every temporary file name contains this


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _blocking_file(path: Path) -> Optional[Path]:
    """The nearest existing ancestor of `path` (or `path` itself) when it is not a folder, else None."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def explain_os_error(exc: OSError, path: Path) -> Exception:
    """A one-line error for a failed write of `path` (disk full, permission, a file in the way), or `exc` itself."""
    if exc.errno == errno.ENOSPC:
        return OSError(exc.errno, f"disk full while writing {path}; free some space and run the command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionError(exc.errno, f"cannot write {path}: permission denied; choose a writable --out folder")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        blocker = _blocking_file(Path(path).parent)
        if blocker is not None:
            return NotADirectoryError(exc.errno, f"cannot write {path}: {blocker} is a file, not a folder; choose "
                                                 "another output folder (--out) or move the file away")
    return exc


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Fail before any work when `path` cannot become a writable output folder.

    Raises:
        ValueError: `path`, or a folder above it, is an existing file.
        PermissionError: the nearest existing folder above it is not writable.
    """
    p = Path(path)
    blocker = _blocking_file(p)
    if blocker == p:
        raise ValueError(f"output folder {p} is an existing file; pass a folder to {flag}")
    if blocker is not None:
        raise ValueError(f"output folder {p} cannot be created: {blocker} is a file, not a folder; choose another "
                         f"{flag}")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot write into {parent}: permission denied; choose a writable "
                                            f"{flag} folder")
    return p


def ensure_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder `path` (and its parents) with one-line errors for a file in the way, permissions,
    a full disk."""
    p = check_output_dir(path, flag)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_os_error(exc, p / "x") from None
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffix); move it into place only if the block succeeds.

    The temporary name starts with '.' and contains '.tmp-', so globbing for outputs never sees it.
    On any exception (including KeyboardInterrupt) the temporary file is removed.
    """
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_os_error(exc, path) from None
    if not os.access(parent, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot write into {parent}: permission denied; choose a writable folder")
    _clear_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}", suffix=path.suffix, dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError:
            pass
        _write_fault()
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise explain_os_error(exc, path) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _clear_stale_temporaries(path: Path) -> None:
    """Remove temporary files an earlier, killed write of this very `path` left behind (`.STEM.tmp-*SUFFIX`), so
    rerunning a killed batch job leaves a clean folder. Temporaries of other outputs are not touched."""
    import glob

    for old in path.parent.glob(f".{glob.escape(path.stem)}{TMP_MARK}*{glob.escape(path.suffix)}"):
        if old.is_file() and not old.is_symlink():
            with contextlib.suppress(OSError):
                old.unlink()


_writes_done = 0


def _write_fault() -> None:
    """Test-only kill point: PROBTALK3D_FAULT=write:N SIGKILLs the process during its N-th atomic write, with the
    temporary file complete but not yet renamed (tests/reliability/test_batch_kill.py)."""
    global _writes_done
    spec = os.environ.get("PROBTALK3D_FAULT", "")
    if not spec.startswith("write:"):
        return
    _writes_done += 1
    if spec[6:].isdigit() and int(spec[6:]) == _writes_done:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """np.save through a temporary file (the .npy suffix is kept)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return Path(path)


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """Join `relative` under `root`, refusing absolute paths and `..` that would escape `root`.

    Raises:
        ValueError: the result would lie outside `root`.
    """
    root_r = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise ValueError(f"output name {relative!r} is an absolute path; names must stay inside {root}")
    target = (root_r / rel).resolve()
    if target != root_r and root_r not in target.parents:
        raise ValueError(f"output name {relative!r} escapes the output folder {root} (contains '..')")
    return target


def is_temporary(path: Path) -> bool:
    return TMP_MARK in path.name


# --------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg (no system ffmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _decode_with_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", "1", "-ar", str(sample_rate), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = msg[-1] if msg else "unknown error"
        raise ValueError(f"audio file {path} could not be decoded ({detail}); pass a readable wav/flac/mp3/m4a/ogg file")
    return np.frombuffer(proc.stdout, dtype="<f4").copy()


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, min_seconds: float = 0.0) -> np.ndarray:
    """Decode an audio file to mono float32 at `sample_rate` Hz.

    wav/flac/ogg are read with soundfile (any bit depth, any channel count, any rate); other formats (mp3, m4a,
    aac, ...) and files soundfile cannot read are decoded by the ffmpeg that imageio-ffmpeg ships.
    Multi-channel audio is averaged to mono; resampling uses librosa (soxr).

    Args:
        path: audio file.
        sample_rate: output rate in Hz.
        min_seconds: reject audio shorter than this (after decoding).

    Returns:
        float32 array `[S]` in [-1, 1] (not normalised).

    Raises:
        FileNotFoundError: missing file. ValueError: empty, corrupt, non-finite or too short audio.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"audio file {p} does not exist; check the path")
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise ValueError(f"audio file {p} is empty (0 bytes); pass a real recording")
    audio = None
    sr = None
    if p.suffix.lower() in (".wav", ".flac", ".ogg", ".aiff", ".aif"):
        import soundfile as sf

        try:
            data, sr = sf.read(str(p), dtype="float32", always_2d=True)
            audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        except Exception:  # soundfile raises its own error types; fall back to ffmpeg below
            audio = None
    if audio is None:
        audio = _decode_with_ffmpeg(p, sample_rate)
        sr = sample_rate
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.size == 0:
        raise ValueError(f"audio file {p} contains no samples; pass a real recording")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"audio file {p} contains NaN or infinite samples; re-export it as PCM audio")
    if sr != sample_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=sr, target_sr=sample_rate).astype(np.float32)
    if audio.size / sample_rate < min_seconds:
        raise ValueError(
            f"audio file {p} is {audio.size / sample_rate:.3f} s long; at least {min_seconds:.3f} s is needed"
        )
    return audio


def save_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM mono wav atomically."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


# --------------------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------------------


def load_npy(path: str | Path, what: str = "array") -> np.ndarray:
    """np.load without pickles, with one-line errors for missing, empty or corrupt files and non-finite values."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist; check the path")
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a .npy {what} file")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{what} file {p} is not a plain .npy array ({exc}); pass a numeric .npy file") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{what} file {p} is unreadable or truncated ({exc}); regenerate it") from None
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{what} file {p} has dtype {arr.dtype}; a real-valued numeric array is needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} file {p} contains NaN or infinite values; regenerate it")
    return arr
