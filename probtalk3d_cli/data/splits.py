"""Train/val/test split definitions for both stages (reference §1.5) and the clip lists they select.

A `SplitSet` holds one `SplitRule` per split and stage: the subjects it covers and, optionally, the sentence
ranges it keeps (inclusive, 1-based; neutral and emotional clips have separate ranges as in the official code).

`splits.json` schema (written by `preprocess synthetic`, accepted by `--set data.splits=FILE.json`)::

    {
      "format": "probtalk3d-splits",
      "version": 1,
      "name": "synthetic",                       # free text, shown in logs
      "identities": ["M001", "W001", ...],       # identity one-hot order; default = pred.train.subjects
      "prior": {                                 # stage 1 (motion only)
        "train": {"subjects": ["M001", ...],
                  "neutral_sentences": [1, 4],   # inclusive range for emotion 0, or null = every sentence
                  "emotional_sentences": [1, 2]},# inclusive range for emotions 1-7, or null = every sentence
        "val": {...}, "test": {...}
      },
      "pred": {"train": {...}, "val": {...}, "test": {...}}   # stage 2 (audio + motion)
    }
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from probtalk3d_cli.data.schema import (
    OFFICIAL_TEST_SUBJECTS,
    OFFICIAL_TRAIN_SUBJECTS,
    OFFICIAL_VAL_SUBJECTS,
    ClipKey,
    parse_key,
)

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
STAGES = ("prior", "pred")
SPLITS_FILE = "splits.json"
SPLITS_FORMAT = "probtalk3d-splits"
SPLITS_VERSION = 1
_ID_RE = re.compile(r"^[A-Za-z0-9]+$")

# Official stage-2 sentence ranges (reference §1.5): neutral 40 sentences, emotional 30 per level.
OFFICIAL_PRED_RANGES = {
    "train": ((1, 32), (1, 24)),
    "val": ((33, 36), (25, 27)),
    "test": ((37, 40), (28, 30)),
}

Range = Optional[tuple[int, int]]


@dataclass
class SplitRule:
    """The clips of one split: these subjects, and (optionally) these inclusive 1-based sentence ranges.

    `neutral_sentences` applies to emotion 0, `emotional_sentences` to emotions 1-7; None keeps every sentence.
    """

    subjects: list[str]
    neutral_sentences: Range = None
    emotional_sentences: Range = None

    def matches(self, key: ClipKey) -> bool:
        """True when `key` belongs to this split."""
        if key.subject not in self.subjects:
            return False
        rng = self.neutral_sentences if key.emotion == 0 else self.emotional_sentences
        return rng is None or rng[0] <= key.sentence <= rng[1]

    def to_dict(self) -> dict:
        return {
            "subjects": list(self.subjects),
            "neutral_sentences": list(self.neutral_sentences) if self.neutral_sentences else None,
            "emotional_sentences": list(self.emotional_sentences) if self.emotional_sentences else None,
        }


@dataclass
class SplitSet:
    """Stage-1 (`prior`) and stage-2 (`pred`) rules keyed by "train"/"val"/"test", plus the identity order.

    `identities` defines the identity one-hot of the style vector (reference §4.3); empty means the stage-2
    train subjects in order (official: OFFICIAL_TRAIN_SUBJECTS).
    """

    name: str
    prior: dict[str, SplitRule]
    pred: dict[str, SplitRule]
    identities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.identities:
            self.identities = list(self.pred["train"].subjects)

    def rule(self, stage: str, split: str) -> SplitRule:
        """The rule of one stage ("prior"|"pred") and split ("train"|"val"|"test")."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use 'prior' (stage 1) or 'pred' (stage 2)")
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; use train, val or test")
        return getattr(self, stage)[split]

    def to_dict(self) -> dict:
        return {
            "format": SPLITS_FORMAT,
            "version": SPLITS_VERSION,
            "name": self.name,
            "identities": list(self.identities),
            "prior": {s: self.prior[s].to_dict() for s in SPLIT_NAMES},
            "pred": {s: self.pred[s].to_dict() for s in SPLIT_NAMES},
        }


def official_splits() -> SplitSet:
    """The official split (reference §1.5): stage 1 by subject (32/7/8 IDs, every sentence); stage 2 the 32
    training IDs split by sentence (neutral 1-32/33-36/37-40, emotional 1-24/25-27/28-30)."""
    train = list(OFFICIAL_TRAIN_SUBJECTS)
    prior = {
        "train": SplitRule(list(train)),
        "val": SplitRule(list(OFFICIAL_VAL_SUBJECTS)),
        "test": SplitRule(list(OFFICIAL_TEST_SUBJECTS)),
    }
    pred = {s: SplitRule(list(train), *OFFICIAL_PRED_RANGES[s]) for s in SPLIT_NAMES}
    return SplitSet("official", prior, pred, list(train))


def _check_ids(ids: list[str], where: str) -> list[str]:
    if not ids:
        raise ValueError(f"{where} names no subjects; list at least one subject ID (one per line)")
    seen = set()
    for sid in ids:
        if not isinstance(sid, str) or not _ID_RE.match(sid):
            raise ValueError(f"{where} holds the subject ID {sid!r}; IDs may only contain letters and digits (e.g. M003)")
        if sid in seen:
            raise ValueError(f"{where} names subject {sid} twice; list each subject once")
        seen.add(sid)
    return ids


def load_subject_list(path: str | Path) -> list[str]:
    """Read a subject list: one ID per line, surrounding spaces stripped, blank lines ignored.

    Raises:
        FileNotFoundError: missing file. ValueError: empty list, duplicate or malformed IDs.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"subject list {p} does not exist; give a text file with one subject ID per line")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"subject list {p} is not UTF-8 text; give a text file with one subject ID per line") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    return _check_ids(ids, f"subject list {p}")


def splits_from_lists(train: list[str], val: list[str], test: list[str], name: str = "custom") -> SplitSet:
    """Subject lists -> SplitSet the way the official loader treats split folders: stage 1 takes every sentence
    of each list's subjects; stage 2 takes the train subjects with the official sentence ranges."""
    prior = {"train": SplitRule(list(train)), "val": SplitRule(list(val)), "test": SplitRule(list(test))}
    pred = {s: SplitRule(list(train), *OFFICIAL_PRED_RANGES[s]) for s in SPLIT_NAMES}
    return SplitSet(name, prior, pred, list(train))


def _parse_range(value, where: str) -> Range:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{where} must be [first, last] (two integers) or null, got {value!r}")
    lo, hi = value
    if lo < 1 or hi < lo:
        raise ValueError(f"{where} = [{lo}, {hi}] is not a range of 1-based sentence numbers with first <= last")
    return (lo, hi)


def splits_from_dict(d: dict, source: str = "splits") -> SplitSet:
    """Validate and build a SplitSet from the JSON schema in the module docstring.

    Raises:
        ValueError: naming the first missing or malformed entry.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{source} must hold a JSON object with 'prior' and 'pred'")
    if d.get("format", SPLITS_FORMAT) != SPLITS_FORMAT:
        raise ValueError(f"{source} has format {d.get('format')!r}; expected {SPLITS_FORMAT!r}")
    if int(d.get("version", SPLITS_VERSION)) > SPLITS_VERSION:
        raise ValueError(f"{source} has version {d.get('version')}; this probtalk3d reads up to {SPLITS_VERSION}")
    stages = {}
    for stage in STAGES:
        block = d.get(stage)
        if not isinstance(block, dict):
            raise ValueError(f"{source} lacks the '{stage}' object with train/val/test rules")
        rules = {}
        for split in SPLIT_NAMES:
            r = block.get(split)
            where = f"{source} {stage}.{split}"
            if not isinstance(r, dict):
                raise ValueError(f"{where} is missing; give {{'subjects': [...], 'neutral_sentences': ..., "
                                 f"'emotional_sentences': ...}}")
            unknown = set(r) - {"subjects", "neutral_sentences", "emotional_sentences"}
            if unknown:
                raise ValueError(f"{where} has unknown field(s) {sorted(unknown)}; valid: subjects, "
                                 "neutral_sentences, emotional_sentences")
            subjects = r.get("subjects")
            if not isinstance(subjects, list):
                raise ValueError(f"{where}.subjects must be a list of subject IDs")
            rules[split] = SplitRule(
                _check_ids(list(subjects), f"{where}.subjects"),
                _parse_range(r.get("neutral_sentences"), f"{where}.neutral_sentences"),
                _parse_range(r.get("emotional_sentences"), f"{where}.emotional_sentences"),
            )
        stages[stage] = rules
    identities = d.get("identities") or []
    if identities:
        if not isinstance(identities, list):
            raise ValueError(f"{source} identities must be a list of subject IDs")
        _check_ids(identities, f"{source} identities")
    ss = SplitSet(str(d.get("name", "custom")), stages["prior"], stages["pred"], list(identities))
    for split in SPLIT_NAMES:
        outside = [s for s in ss.pred[split].subjects if s not in ss.identities]
        if outside:
            raise ValueError(f"{source} pred.{split} names {', '.join(outside)}, which are not in identities "
                             f"{ss.identities}; stage 2 can only use subjects with an identity slot")
    return ss


def write_splits(splitset: SplitSet, path: str | Path) -> Path:
    """Write `splitset` as splits.json (atomic)."""
    from probtalk3d_cli.io import atomic_write_json

    return atomic_write_json(path, splitset.to_dict())


def read_splits_json(path: str | Path) -> SplitSet:
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"split file {p} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or delete it") from None
    return splits_from_dict(d, source=f"split file {p}")


def load_splits(data_root: str | Path | None, spec: str = "auto") -> SplitSet:
    """Resolve a split specification (config key `data.splits`).

    Args:
        data_root: the DATA folder (may be None when `spec` is not "auto").
        spec: "auto" (DATA/splits.json when present, else official), "official", a folder holding `train`, `val`
            and `test` subject lists (stage 2 = official sentence ranges over the train IDs), or a `.json` file
            in the schema of this module's docstring.

    Raises:
        FileNotFoundError / ValueError naming the bad spec, file or entry.
    """
    spec = str(spec).strip()
    if spec == "auto":
        if data_root is not None and (Path(data_root) / SPLITS_FILE).is_file():
            path = Path(data_root) / SPLITS_FILE
            log.info("splits: %s", path)
            return read_splits_json(path)
        return official_splits()
    if spec == "official":
        return official_splits()
    p = Path(spec).expanduser()
    if p.is_dir():
        missing = [s for s in SPLIT_NAMES if not (p / s).is_file()]
        if missing:
            raise FileNotFoundError(f"split folder {p} lacks the file(s) {', '.join(missing)}; it needs train, val "
                                    "and test, each with one subject ID per line")
        lists = [load_subject_list(p / s) for s in SPLIT_NAMES]
        return splits_from_lists(*lists, name=str(p))
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise FileNotFoundError(f"split file {p} does not exist; check data.splits / --splits")
        return read_splits_json(p)
    raise ValueError(f"split spec {spec!r} is not 'auto', 'official', an existing folder with train/val/test "
                     "subject lists, or a .json split file")


# --------------------------------------------------------------------------------------------------------
# Clip listing
# --------------------------------------------------------------------------------------------------------


def scan_keys(folder: Path, suffix: str) -> tuple[set[ClipKey], list[str]]:
    """Clip keys of `folder/*<suffix>` (temporary files ignored) and the names that are not clip keys."""
    from probtalk3d_cli.io import is_temporary

    keys: set[ClipKey] = set()
    bad: list[str] = []
    if not folder.is_dir():
        return keys, bad
    for f in folder.iterdir():
        if f.suffix != suffix or is_temporary(f) or f.name.startswith("."):
            continue
        try:
            keys.add(parse_key(f.stem))
        except ValueError:
            bad.append(f.name)
    return keys, sorted(bad)


def list_clips(data_root: str | Path, stage: str, split: str, spec: str = "auto") -> list[ClipKey]:
    """Clips of one stage and split, sorted.

    Stage "prior" needs only `DATA/param/KEY.npy`; stage "pred" needs `DATA/param/KEY.npy` and `DATA/wav/KEY.wav`.
    Clips with only one of the two files are counted and logged (INFO), never dropped silently.

    Raises:
        ValueError: no clips at all in DATA (run `probtalk3d preprocess`), a subject named by the split has no
            usable clip in DATA at all, or the split selects nothing. (A subject whose clips all fall outside
            the split's sentence ranges is only warned about.)
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist; run `probtalk3d preprocess ... --out {root}` first")
    splitset = load_splits(root, spec)
    rule = splitset.rule(stage, split)
    params, bad_p = scan_keys(root / "param", ".npy")
    wavs, bad_w = scan_keys(root / "wav", ".wav")
    if bad_p or bad_w:
        log.warning("ignored %d file(s) in %s whose names are not clip keys (e.g. %s)", len(bad_p) + len(bad_w),
                    root, (bad_p + bad_w)[0])
    if not params:
        raise ValueError(f"data folder {root} holds no clips (no param/*.npy); run `probtalk3d preprocess mead` or "
                         f"`probtalk3d preprocess synthetic --out {root}` first")
    in_split_p = {k for k in params if rule.matches(k)}
    if stage == "pred":
        in_split_w = {k for k in wavs if rule.matches(k)}
        only_p, only_w = in_split_p - in_split_w, in_split_w - in_split_p
        if only_p or only_w:
            log.info("%s/%s: %d clip(s) have param .npy but no .wav, %d have .wav but no .npy; both are left out "
                     "of stage 2", stage, split, len(only_p), len(only_w))
        selected = in_split_p & in_split_w
        usable = params & wavs
    else:
        selected = in_split_p
        usable = params
    have_any = {k.subject for k in usable}
    absent = [s for s in rule.subjects if s not in have_any]
    if absent:
        need = "param .npy and .wav" if stage == "pred" else "param .npy"
        raise ValueError(f"split '{splitset.name}' {stage}/{split} names subject(s) {', '.join(absent)} with no "
                         f"clips ({need}) in {root}; fix the split files or preprocess those subjects")
    present = {k.subject for k in selected}
    outside = [s for s in rule.subjects if s not in present]
    if outside:
        log.warning("%s/%s: subject(s) %s have clips but none in this split's sentence ranges", stage, split,
                    ", ".join(outside))
    if not selected:
        raise ValueError(f"split '{splitset.name}' {stage}/{split} selects no clips in {root}; check the sentence "
                         "ranges of the split")
    log.info("%s/%s (%s): %d clips of %d subjects", stage, split, splitset.name, len(selected), len(present))
    return sorted(selected)
