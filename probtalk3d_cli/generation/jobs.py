"""What `generate` has to do: input discovery, style requests (flags, CSV, random), jobs, seeds and shards.

A job is one (audio, subject, emotion, intensity); its name `<audio key>_<subject>_<emotion>_<intensity>` is its
identity: output file names and the job's random generator both derive from it, so a job's result does not
depend on the order, batching or sharding of the run (reference §11.15-17 are fixed here).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, parse_emotion, parse_intensity
from probtalk3d_cli.io import AUDIO_EXTENSIONS, is_temporary

RANDOM = "random"
STDIN = "-"
STDIN_KEY = "stdin"
CSV_COLUMNS = ("audio", "subject", "emotion", "intensity", "name")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")


@dataclass(frozen=True)
class AudioSource:
    """One audio input.

    Attributes:
        key: output stem relative to the output folder (POSIX, no suffix), e.g. `speech`, `session1/take2`,
            `stdin`.
        path: absolute file path, or None for audio read from stdin.
        data: the raw bytes of stdin audio (None for files).
    """

    key: str
    path: Optional[Path] = None
    data: Optional[bytes] = None

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "<stdin>"


@dataclass(frozen=True)
class StyleRequest:
    """Requested style values as given (None = default, 'random' = draw); `origin` prefixes error messages."""

    subject: Optional[str] = None
    emotion: Optional[str] = None
    intensity: Optional[str] = None
    origin: str = ""
    draw_key: str = "0"


@dataclass(frozen=True)
class Job:
    """One (audio, style) pair; `name` identifies it everywhere."""

    source: AudioSource
    subject: str
    emotion: int
    intensity: int

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def intensity_name(self) -> str:
        return INTENSITIES[self.intensity]

    @property
    def name(self) -> str:
        return f"{self.source.key}_{self.subject}_{self.emotion_name}_{self.intensity_name}"

    def output_names(self, num_samples: int) -> list[str]:
        """`<name>.npy`, or `<name>_s1.npy` ... `<name>_sN.npy` when N > 1 (k is 1-based)."""
        if num_samples == 1:
            return [f"{self.name}.npy"]
        return [f"{self.name}_s{k}.npy" for k in range(1, num_samples + 1)]


# --------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or name.endswith("~") or is_temporary(Path(name)) or name.lower().endswith(TEMP_SUFFIXES)


def scan_folder(folder: Path) -> list[Path]:
    """Audio files under `folder`, recursively, sorted by relative path (plain code-point order on every OS).

    Hidden files and folders (leading '.'), editor backups (`~`) and temporary/partial downloads are skipped.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if _skipped_name(name) or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def expand_inputs(inputs: Iterable[Union[str, Path]], stdin_data: Optional[bytes] = None) -> list[AudioSource]:
    """Files, folders (recursive) and `-` (audio bytes from stdin) -> audio sources, in the given order.

    A file's key is its stem; a file found in folder F gets its path relative to F without the suffix, so
    `F/a/b.wav` -> `a/b` and the outputs mirror the folder tree. Exact repeats of one file are dropped.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: `-` without stdin data, or a folder without audio files.
    """
    sources: list[AudioSource] = []
    seen = set()
    for item in inputs:
        if str(item) == STDIN:
            if not stdin_data:
                raise ValueError("input '-' reads a wav file from stdin, but stdin is empty; pipe audio in "
                                 "(e.g. `cat speech.wav | probtalk3d generate ... -`)")
            src = AudioSource(STDIN_KEY, None, stdin_data)
        else:
            p = Path(item).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"input {p} does not exist; pass audio files, folders, or - for stdin")
            if p.is_dir():
                files = scan_folder(p)
                if not files:
                    raise ValueError(f"folder {p} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                                     "pass a folder with audio or the files themselves")
                for f in files:
                    src = AudioSource(f.relative_to(p).with_suffix("").as_posix(), f.resolve())
                    if (src.key, src.path) not in seen:
                        seen.add((src.key, src.path))
                        sources.append(src)
                continue
            src = AudioSource(p.stem, p.resolve())
        if (src.key, src.path) not in seen:
            seen.add((src.key, src.path))
            sources.append(src)
    return sources


def split_values(value: Union[None, str, int, Sequence]) -> list[Optional[str]]:
    """A flag value -> list of requested values: None -> [None]; 'happy,sad' -> ['happy', 'sad']."""
    if value is None:
        return [None]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[Optional[str]] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                raise ValueError(f"empty value in {value!r}; separate several values with commas, e.g. happy,sad")
            out.append(part)
    return out


def flag_requests(subject=None, emotion=None, intensity=None) -> list[StyleRequest]:
    """Style flags (each possibly a comma-separated list) -> their cross product of StyleRequests."""
    combos = itertools.product(split_values(subject), split_values(emotion), split_values(intensity))
    return [StyleRequest(s, e, i, "", str(n)) for n, (s, e, i) in enumerate(combos)]


def read_styles_csv(path: Union[str, Path], defaults: Sequence[StyleRequest] = (StyleRequest(),)
                    ) -> list[tuple[AudioSource, StyleRequest]]:
    """Read a `--styles` CSV: a header row, then one row per job.

    Columns: `audio` (required; relative paths are relative to the CSV file), `subject`, `emotion`,
    `intensity` (optional; an empty cell takes the command-line value(s), and a cell may say `random`), `name`
    (optional output stem relative to --out, may contain sub-folders, never `..`; default the audio's stem).

    Raises:
        FileNotFoundError: the CSV or an audio file it names is missing.
        ValueError: no header / no `audio` column / an unknown column / an empty audio cell.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"styles file {p} does not exist; pass a CSV with columns {','.join(CSV_COLUMNS[:4])}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"styles file {p} is not UTF-8 text; pass a CSV (UTF-8) with a header row "
                         f"{','.join(CSV_COLUMNS[:4])}") from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "audio" not in header:
            raise ValueError(f"styles file {p} needs a header row with an 'audio' column (columns: "
                             f"{', '.join(CSV_COLUMNS)}); got {header or 'no header'}")
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if unknown:
            raise ValueError(f"styles file {p} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(CSV_COLUMNS)}")
        rows = []
        for raw in reader:
            line = reader.line_num
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue  # blank line
            origin = f"{p.name} line {line}: "
            if not row.get("audio"):
                raise ValueError(f"{origin}the audio cell is empty; give an audio file path")
            audio = Path(row["audio"]).expanduser()
            audio = audio if audio.is_absolute() else p.parent / audio
            if not audio.is_file():
                raise FileNotFoundError(f"{origin}audio file {audio} does not exist (relative paths are relative to the CSV)")
            key = row.get("name") or audio.stem
            if Path(key).is_absolute() or ".." in Path(key).parts or key.startswith(("/", "\\")):
                raise ValueError(f"{origin}name {key!r} must be a relative path inside the output folder "
                                 "(no '..', not absolute)")
            key = Path(key).as_posix()
            src = AudioSource(key, audio.resolve())
            for n, d in enumerate(defaults):
                rows.append((src, StyleRequest(row.get("subject") or d.subject, row.get("emotion") or d.emotion,
                                               row.get("intensity") or d.intensity, origin, f"csv{line}.{n}")))
    if not rows:
        raise ValueError(f"styles file {p} has a header but no rows; add one row per job")
    return rows


# --------------------------------------------------------------------------------------------------------
# Styles and seeds
# --------------------------------------------------------------------------------------------------------


def derive_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the run seed and identifying strings (SHA-256; stable across platforms and runs)."""
    text = "\x1f".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & ((1 << 63) - 1)


def job_generator(seed: int, key: str):
    """The CPU torch.Generator of one job (`key` = job name): the same draws however the run is split."""
    import torch

    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, "sample", key))


def _unseen(emotion: int, intensity: int) -> bool:
    return emotion == 0 and intensity != 0  # neutral exists only at low intensity in 3DMEAD


def resolve_style(req: StyleRequest, identities: Sequence[str], rng: random.Random,
                  allow_unseen: bool = False) -> tuple[str, int, int]:
    """Requested values -> (subject ID, emotion index, intensity index).

    Defaults: the checkpoint's first identity, neutral, and intensity low for neutral / medium otherwise.
    `random` draws uniformly from `rng` (subject first, then emotion and intensity; neutral is drawn only with
    low intensity unless `allow_unseen`).

    Raises:
        ValueError: unknown subject (listing the valid IDs), unknown emotion/intensity, or neutral with medium/high
            intensity without `allow_unseen` — prefixed with `req.origin`.
    """
    from probtalk3d_cli.generation.core import subject_index

    ids = list(identities)
    try:
        if req.subject is None:
            subject = ids[0]
        elif req.subject.lower() == RANDOM:
            subject = rng.choice(ids)
        else:
            subject = ids[subject_index(ids, req.subject)]
        emo_random = req.emotion is not None and req.emotion.lower() == RANDOM
        int_random = req.intensity is not None and req.intensity.lower() == RANDOM
        emotion = None if emo_random or req.emotion is None else parse_emotion(req.emotion)
        intensity = None if int_random or req.intensity is None else parse_intensity(req.intensity)
        if req.emotion is None:
            emotion = 0
        if emo_random and int_random:
            pairs = [(e, i) for e in range(len(EMOTIONS)) for i in range(len(INTENSITIES)) if allow_unseen or not _unseen(e, i)]
            emotion, intensity = rng.choice(pairs)
        elif emo_random:
            pool = [e for e in range(len(EMOTIONS))
                    if allow_unseen or intensity is None or not _unseen(e, intensity)]
            emotion = rng.choice(pool)
        elif int_random:
            pool = [i for i in range(len(INTENSITIES)) if allow_unseen or not _unseen(emotion, i)]
            intensity = rng.choice(pool)
        if intensity is None:
            intensity = 0 if emotion == 0 else 1
    except ValueError as exc:
        raise ValueError(f"{req.origin}{exc}") from None
    if _unseen(emotion, intensity) and not allow_unseen:
        raise ValueError(
            f"{req.origin}emotion neutral with intensity {INTENSITIES[intensity]} never occurs in training (neutral is "
            "only recorded at low intensity); use intensity low, another emotion, or --allow-unseen-styles"
        )
    return subject, emotion, intensity


def build_jobs(pairs: Sequence[tuple[AudioSource, StyleRequest]], identities: Sequence[str], seed: int,
               allow_unseen: bool = False) -> list[Job]:
    """Resolve every (source, request) to a Job, sorted by name; all style errors surface here, before any output.

    Raises:
        ValueError: a style error, or two jobs that would write the same file.
    """
    jobs: dict[str, Job] = {}
    origins: dict[str, str] = {}
    for src, req in pairs:
        rng = random.Random(derive_seed(seed, "style", src.key, req.draw_key))
        subject, emotion, intensity = resolve_style(req, identities, rng, allow_unseen)
        job = Job(src, subject, emotion, intensity)
        if job.name in jobs:
            if jobs[job.name] == job:
                continue  # the same job requested twice
            raise ValueError(
                f"two inputs map to the same output {job.name}.npy ({origins[job.name]} and {src.label}); rename one, "
                "give a `name` column in --styles, or run them separately"
            )
        jobs[job.name] = job
        origins[job.name] = src.label
    return [jobs[k] for k in sorted(jobs)]


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """`K/N` (K 0-based, 0 <= K < N) -> (K, N); None stays None.

    Raises:
        ValueError: malformed text or K out of range.
    """
    if text is None:
        return None
    parts = str(text).strip().split("/")
    try:
        k, n = (int(x) for x in parts)
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like K/N, e.g. 0/4 (K counts from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= K < N (K counts from 0, e.g. 0/4 ... 3/4)")
    return k, n


def select_shard(jobs: Sequence[Job], shard: Optional[tuple[int, int]]) -> list[Job]:
    """Every N-th job of the name-sorted list, starting at K (all jobs without a shard)."""
    ordered = sorted(jobs, key=lambda j: j.name)
    if shard is None:
        return ordered
    k, n = shard
    return ordered[k::n]
