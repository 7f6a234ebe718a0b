"""Split definitions: the official §1.5 numbers, custom ID lists, the JSON schema, and clip listing errors."""

from __future__ import annotations

import json
import logging

import pytest

from probtalk3d_cli.data import splits as S
from probtalk3d_cli.data.schema import OFFICIAL_TEST_SUBJECTS, OFFICIAL_TRAIN_SUBJECTS, OFFICIAL_VAL_SUBJECTS, ClipKey


def _full_mead_keys(subjects):
    """Every clip a complete MEAD subject has: 40 neutral + 7 emotions x 3 levels x 30 sentences = 670."""
    keys = []
    for sid in subjects:
        keys += [ClipKey(sid, s, 0, 0) for s in range(1, 41)]
        keys += [ClipKey(sid, s, e, i) for e in range(1, 8) for i in range(3) for s in range(1, 31)]
    return keys


ALL = list(OFFICIAL_TRAIN_SUBJECTS + OFFICIAL_VAL_SUBJECTS + OFFICIAL_TEST_SUBJECTS)


def test_official_subject_lists_and_identities():
    ss = S.official_splits()
    assert [len(ss.prior[s].subjects) for s in ("train", "val", "test")] == [32, 7, 8]
    assert ss.prior["val"].subjects == ["M032", "M033", "M034", "M035", "W033", "W035", "W036"]
    assert ss.prior["test"].subjects == ["M037", "M039", "M040", "M041", "M042", "W037", "W038", "W040"]
    for s in ("train", "val", "test"):
        assert ss.pred[s].subjects == list(OFFICIAL_TRAIN_SUBJECTS)
        assert ss.prior[s].neutral_sentences is None and ss.prior[s].emotional_sentences is None
    assert ss.identities == list(OFFICIAL_TRAIN_SUBJECTS)
    assert ss.identities[0] == "M003" and ss.identities[31] == "W029"
    assert (ss.pred["train"].neutral_sentences, ss.pred["train"].emotional_sentences) == ((1, 32), (1, 24))
    assert (ss.pred["val"].neutral_sentences, ss.pred["val"].emotional_sentences) == ((33, 36), (25, 27))
    assert (ss.pred["test"].neutral_sentences, ss.pred["test"].emotional_sentences) == ((37, 40), (28, 30))


def test_official_clip_counts_on_a_full_key_list():
    keys = _full_mead_keys(ALL)
    assert len(keys) == 47 * 670
    ss = S.official_splits()
    prior = {s: sum(ss.prior[s].matches(k) for k in keys) for s in ("train", "val", "test")}
    assert prior == {"train": 21440, "val": 4690, "test": 5360}
    pred = {s: [k for k in keys if ss.pred[s].matches(k)] for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in pred.items()} == {"train": 17152, "val": 2144, "test": 2144}
    per_subject = {s: sum(k.subject == "M003" for k in v) for s, v in pred.items()}
    assert per_subject == {"train": 536, "val": 67, "test": 67}
    # Stage-2 splits are disjoint and never touch the val/test identities.
    assert not set(pred["train"]) & set(pred["val"]) and not set(pred["val"]) & set(pred["test"])
    assert {k.subject for v in pred.values() for k in v} == set(OFFICIAL_TRAIN_SUBJECTS)
    assert ClipKey("M003", 32, 0, 0) in pred["train"] and ClipKey("M003", 33, 0, 0) in pred["val"]
    assert ClipKey("M003", 24, 5, 2) in pred["train"] and ClipKey("M003", 25, 5, 2) in pred["val"]
    assert ClipKey("M003", 28, 1, 0) in pred["test"] and ClipKey("M003", 40, 0, 0) in pred["test"]


def test_custom_dir_of_id_lists(tmp_path):
    d = tmp_path / "splits"
    d.mkdir()
    (d / "train").write_text("M003\n\n  W009  \nM005\n\n")
    (d / "val").write_text("M032\n")
    (d / "test").write_text("\nM037\n")
    ss = S.load_splits(None, str(d))
    assert ss.prior["train"].subjects == ["M003", "W009", "M005"]
    assert ss.prior["val"].subjects == ["M032"] and ss.prior["test"].subjects == ["M037"]
    assert ss.identities == ["M003", "W009", "M005"]
    for s in ("train", "val", "test"):
        assert ss.pred[s].subjects == ["M003", "W009", "M005"]
        assert (ss.pred[s].neutral_sentences, ss.pred[s].emotional_sentences) == S.OFFICIAL_PRED_RANGES[s]
    assert ss.prior["train"].neutral_sentences is None


@pytest.mark.parametrize(
    "content, match",
    [("\n\n", "names no subjects"), ("M003\nM0-3\n", "letters and digits"), ("M003\nM003\n", "twice"),
     ("../etc\n", "letters and digits")],
)
def test_bad_id_lists(tmp_path, content, match):
    d = tmp_path / "splits"
    d.mkdir()
    for s in ("train", "val", "test"):
        (d / s).write_text("M003\n")
    (d / "val").write_text(content)
    with pytest.raises(ValueError, match=match):
        S.load_splits(None, str(d))


def test_dir_missing_a_file(tmp_path):
    (tmp_path / "train").write_text("M003\n")
    with pytest.raises(FileNotFoundError, match="lacks the file\\(s\\) val, test"):
        S.load_splits(None, str(tmp_path))


def test_load_subject_list(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("W040\n\n M037 \n")
    assert S.load_subject_list(f) == ["W040", "M037"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.load_subject_list(tmp_path / "nope.txt")


def test_json_round_trip(tmp_path):
    ss = S.SplitSet(
        "mine",
        {"train": S.SplitRule(["A1", "B2"]), "val": S.SplitRule(["C3"], (1, 2), None),
         "test": S.SplitRule(["D4"], None, (3, 3))},
        {"train": S.SplitRule(["A1", "B2"], (1, 4), (1, 2)), "val": S.SplitRule(["A1"], (5, 5), (3, 3)),
         "test": S.SplitRule(["B2"], (6, 6), (4, 4))},
        ["B2", "A1"],
    )
    path = S.write_splits(ss, tmp_path / "s.json")
    d = json.loads(path.read_text())
    assert d["format"] == "probtalk3d-splits" and d["version"] == 1
    assert d["pred"]["val"] == {"subjects": ["A1"], "neutral_sentences": [5, 5], "emotional_sentences": [3, 3]}
    back = S.load_splits(None, str(path))
    assert back == ss and back.identities == ["B2", "A1"]
    # auto picks DATA/splits.json when present, else the official split
    assert S.load_splits(tmp_path, "auto").name == "official"
    S.write_splits(ss, tmp_path / "splits.json")
    assert S.load_splits(tmp_path, "auto") == ss
    assert S.load_splits(tmp_path, "official").name == "official"


def _base_dict():
    rule = {"subjects": ["A1"], "neutral_sentences": None, "emotional_sentences": None}
    return {"prior": {s: dict(rule) for s in ("train", "val", "test")},
            "pred": {s: dict(rule) for s in ("train", "val", "test")}}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("pred"), "lacks the 'pred' object"),
        (lambda d: d["prior"].pop("val"), "prior.val is missing"),
        (lambda d: d["pred"]["train"].update(neutral_sentences=[3, 1]), "first <= last"),
        (lambda d: d["pred"]["train"].update(emotional_sentences=[0, 2]), "1-based"),
        (lambda d: d["pred"]["train"].update(emotional_sentences="1-2"), "two integers"),
        (lambda d: d["prior"]["test"].update(subjects=[]), "names no subjects"),
        (lambda d: d["prior"]["test"].update(speakers=["A1"]), "unknown field"),
        (lambda d: d.update(identities=["B2"]), "not in identities"),
        (lambda d: d.update(format="other"), "expected 'probtalk3d-splits'"),
    ],
)
def test_json_errors(tmp_path, edit, match):
    d = _base_dict()
    edit(d)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=match):
        S.load_splits(None, str(p))


def test_unknown_specs(tmp_path):
    with pytest.raises(ValueError, match="is not 'auto', 'official'"):
        S.load_splits(None, "offical")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.load_splits(None, str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        S.load_splits(None, str(tmp_path / "bad.json"))


# --------------------------------------------------------------------------------------------------------
# list_clips
# --------------------------------------------------------------------------------------------------------


def _data(tmp_path, param_keys, wav_keys):
    for sub, keys, ext in (("param", param_keys, ".npy"), ("wav", wav_keys, ".wav")):
        (tmp_path / sub).mkdir(exist_ok=True)
        for k in keys:
            (tmp_path / sub / f"{k}{ext}").write_bytes(b"")  # list_clips reads names only
    return tmp_path


def _splits_json(root, train=("A1", "B2"), val=("C3",), test=("D4",)):
    ss = S.splits_from_lists(list(train), list(val), list(test), name="t")
    S.write_splits(ss, root / "splits.json")


def test_list_clips_prior_and_pred(tmp_path):
    params = ["A1_001_0_0", "A1_033_0_0", "A1_024_3_1", "A1_025_3_1", "B2_001_1_2", "C3_040_0_0", "D4_002_2_0"]
    wavs = ["A1_001_0_0", "A1_033_0_0", "A1_025_3_1", "B2_001_1_2", "B2_002_1_2", "C3_040_0_0", "D4_002_2_0"]
    root = _data(tmp_path, params, wavs)
    (root / "param" / ".A1_002_0_0.tmp-x.npy").write_bytes(b"")  # an interrupted write is never listed
    (root / "param" / "notes.npy").write_bytes(b"")  # not a key: warned about, ignored
    _splits_json(root)
    assert [str(k) for k in S.list_clips(root, "prior", "train")] == [
        "A1_001_0_0", "A1_024_3_1", "A1_025_3_1", "A1_033_0_0", "B2_001_1_2"]
    assert [str(k) for k in S.list_clips(root, "prior", "test")] == ["D4_002_2_0"]
    # stage 2: train IDs with the official sentence ranges, only clips having both files
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("probtalk3d_cli.data.splits")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        train = S.list_clips(root, "pred", "train")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [str(k) for k in train] == ["A1_001_0_0", "B2_001_1_2"]
    msgs = [r.getMessage() for r in records]
    assert any("1 clip(s) have param .npy but no .wav, 1 have .wav but no .npy" in m for m in msgs), msgs
    assert any("not clip keys" in m for m in msgs), msgs
    assert [str(k) for k in S.list_clips(root, "pred", "val")] == ["A1_025_3_1", "A1_033_0_0"]


def test_list_clips_absent_subjects(tmp_path):
    root = _data(tmp_path, ["A1_001_0_0", "C3_001_0_0", "D4_001_0_0"], ["A1_001_0_0"])
    _splits_json(root, train=("A1", "B2", "Z9"))
    with pytest.raises(ValueError, match=r"names subject\(s\) B2, Z9 with no clips"):
        S.list_clips(root, "prior", "train")
    _splits_json(root, train=("A1",), val=("C3",))
    assert [str(k) for k in S.list_clips(root, "prior", "val")] == ["C3_001_0_0"]
    # A1 has a usable clip, but not in the test sentences: a clear error that the split is empty
    with pytest.raises(ValueError, match="pred/test selects no clips"):
        S.list_clips(root, "pred", "test")
    # stage 2 needs the wav as well: C3 has only a param file
    _splits_json(root, train=("A1", "C3"))
    assert [str(k) for k in S.list_clips(root, "prior", "train")] == ["A1_001_0_0", "C3_001_0_0"]
    with pytest.raises(ValueError, match=r"pred/train names subject\(s\) C3 with no clips \(param .npy and .wav\)"):
        S.list_clips(root, "pred", "train")


def test_list_clips_empty_data(tmp_path):
    with pytest.raises(ValueError, match="run `probtalk3d preprocess"):
        S.list_clips(tmp_path, "prior", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.list_clips(tmp_path / "nope", "prior", "train")
    _data(tmp_path, ["A1_001_0_0"], [])
    _splits_json(tmp_path, train=("A1",))
    with pytest.raises(ValueError, match="unknown stage"):
        S.list_clips(tmp_path, "stage1", "train")
    with pytest.raises(ValueError, match="unknown split"):
        S.list_clips(tmp_path, "prior", "dev")
