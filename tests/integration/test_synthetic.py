"""The synthetic corpus: layout, shapes, determinism, splits, length relation, value ranges, and the property that
an audio-driven predictor beats an audio-agnostic one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from probtalk3d_cli.data import synthetic as SY
from probtalk3d_cli.data.schema import ClipKey, motion_frames_for_audio, params_to_motion, parse_key
from probtalk3d_cli.data.splits import list_clips, load_splits

SUBJECTS, SENTENCES = 2, 3  # 2 x (4 neutral + 7 x 3 x 3) = 134 clips


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = SY.make_synthetic_corpus(out, subjects=SUBJECTS, sentences=SENTENCES, seed=0, workers=1)
    return out, summary


def test_layout_and_summary(corpus):
    out, summary = corpus
    assert sorted(p.name for p in out.iterdir()) == ["param", "splits.json", "synthetic.json", "wav"]
    params = sorted(p.stem for p in (out / "param").glob("*.npy"))
    wavs = sorted(p.stem for p in (out / "wav").glob("*.wav"))
    assert params == wavs and len(params) == 134 == summary["clips"]
    keys = [parse_key(k) for k in params]
    assert summary["subjects"] == ["M001", "W001"] and {k.subject for k in keys} == {"M001", "W001"}
    assert sorted({k.sentence for k in keys if k.emotion == 0}) == [1, 2, 3, 4]  # ceil(4/3 x 3)
    assert all(k.intensity == 0 for k in keys if k.emotion == 0)  # neutral only at level_1, as in MEAD
    assert sum(k.emotion == 5 and k.intensity == 2 for k in keys) == SUBJECTS * SENTENCES
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 0
    assert 134 * 1.5 < summary["audio_seconds"] < 134 * 4.5


def test_splits_are_non_empty_for_both_stages(corpus):
    out, summary = corpus
    ss = load_splits(out)  # auto picks DATA/splits.json
    assert ss.name == "synthetic" and ss.identities == ["M001", "W001"]
    for stage in ("prior", "pred"):
        lists = {s: list_clips(out, stage, s) for s in ("train", "val", "test")}
        assert all(lists.values())
        assert sum(map(len, lists.values())) == 134
        assert not set(lists["train"]) & set(lists["test"]) and not set(lists["val"]) & set(lists["test"])
        assert {k.sentence for k in lists["test"] if k.emotion} == {3}
        assert {k.sentence for k in lists["val"] if k.emotion == 0} == {3}
        assert {s: len(v) for s, v in lists.items()} == summary["splits"][stage]
    assert summary["splits"]["pred"] == {"train": 2 * (2 + 21), "val": 2 * (1 + 21), "test": 2 * (1 + 21)}


def test_split_ranges():
    assert SY.split_ranges(3) == {"train": (1, 1), "val": (2, 2), "test": (3, 3)}
    assert SY.split_ranges(30) == {"train": (1, 24), "val": (25, 27), "test": (28, 30)}  # official proportions
    assert SY.split_ranges(40) == {"train": (1, 32), "val": (33, 36), "test": (37, 40)}
    with pytest.raises(ValueError, match="at least 3 sentences"):
        SY.split_ranges(2)


def test_shapes_lengths_and_ranges(corpus):
    out, _ = corpus
    shapes = {}
    for npy in sorted((out / "param").glob("*.npy")):
        p = np.load(npy)
        assert p.dtype == np.float32 and p.ndim == 3 and p.shape[0] == 1 and p.shape[2] == 403
        t = p.shape[1]
        audio, sr = sf.read(str(out / "wav" / f"{npy.stem}.wav"), dtype="float32")
        assert sr == 16000 and audio.ndim == 1 and sf.info(str(out / "wav" / f"{npy.stem}.wav")).subtype == "PCM_16"
        # The exact length relation: S = 640 T + 80 samples, so HuBERT gives 2T frames = T frame pairs.
        assert audio.size == 640 * t + 80 and motion_frames_for_audio(audio.size) == t
        assert 1.5 <= audio.size / 16000 <= 4.5 and np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.1
        exp, jaw = p[0, :, 300:400], p[0, :, 400:]
        assert np.abs(exp[:, :50]).max() <= 3.0 and not exp[:, 50:].any()
        assert -0.1 <= jaw[:, 0].min() and jaw[:, 0].max() <= 0.5 and np.abs(jaw[:, 1:]).max() < 0.02
        assert jaw[:, 0].max() > 0.08  # the jaw really opens
        shape = p[0, :, :300]
        assert np.all(shape == shape[0])
        shapes.setdefault(npy.stem[:4], set()).add(shape[0].tobytes())
    assert all(len(v) == 1 for v in shapes.values()) and len({next(iter(v)) for v in shapes.values()}) == 2


def test_determinism(corpus, tmp_path):
    out, _ = corpus
    SY.make_synthetic_corpus(tmp_path, subjects=SUBJECTS, sentences=SENTENCES, seed=0, workers=2)
    for sub in ("param", "wav"):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / sub).iterdir())
        assert all((out / sub / n).read_bytes() == (tmp_path / sub / n).read_bytes() for n in names)
    for f in ("splits.json", "synthetic.json"):
        assert (out / f).read_bytes() == (tmp_path / f).read_bytes()
    key = ClipKey("W001", 2, 6, 1)
    p0, a0 = SY.synthesize_clip(key, seed=0)
    p1, a1 = SY.synthesize_clip(key, seed=1)
    assert np.array_equal(p0, np.load(out / "param" / f"{key}.npy"))
    assert p0.shape != p1.shape or not np.array_equal(p0, p1)
    assert a0.shape != a1.shape or not np.array_equal(a0, a1)


def test_rerun_and_foreign_out(corpus, tmp_path):
    out, _ = corpus
    with pytest.raises(ValueError, match="made with other settings"):
        SY.make_synthetic_corpus(out, subjects=SUBJECTS, sentences=SENTENCES, seed=5)
    (tmp_path / "param").mkdir()
    (tmp_path / "param" / "M003_001_0_0.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="not this synthetic corpus"):
        SY.make_synthetic_corpus(tmp_path, subjects=1, sentences=3)
    with pytest.raises(ValueError, match="--subjects must be at least 1"):
        SY.make_synthetic_corpus(tmp_path / "x", subjects=0)
    with pytest.raises(ValueError, match="at least 3 sentences"):
        SY.make_synthetic_corpus(tmp_path / "x", sentences=2)


def test_subject_ids():
    assert SY.subject_ids(5) == ["M001", "M002", "M003", "W001", "W002"]


# --------------------------------------------------------------------------------------------------------
# What the corpus is for: motion that depends on the audio and on the style
# --------------------------------------------------------------------------------------------------------

BANDS = [(80, 400), (400, 800), (800, 1300), (1300, 2000), (2000, 3000), (3000, 5000), (5000, 8000)]
MOUTH = [0, 1, 2, 50]  # motion columns: exp0 open, exp1 round, exp2 stretch, jaw0


def _audio_features(audio, t):
    """Per motion frame: log and sqrt energies of 7 bands of its 640 samples, stacked over +-2 frames."""
    frames = audio[: t * 640].reshape(t, 640) * np.hanning(640)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(640, 1 / 16000)
    bands = np.stack([power[:, (f >= a) & (f < b)].sum(1) for a, b in BANDS], 1)
    x = np.concatenate([np.log(bands + 1e-6), np.sqrt(bands)], 1)
    pad = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    return np.concatenate([pad[i:i + t] for i in range(5)], 1)


def _frames(out, split):
    xs, ys, styles = [], [], []
    for k in list_clips(out, "pred", split):
        m = params_to_motion(np.load(out / "param" / f"{k}.npy"))
        audio, _ = sf.read(str(out / "wav" / f"{k}.wav"), dtype="float32")
        xs.append(_audio_features(audio, m.shape[0]))
        ys.append(m[:, MOUTH])
        styles += [(k.subject, k.emotion, k.intensity)] * m.shape[0]
    return np.concatenate(xs), np.concatenate(ys), styles


def test_audio_driven_beats_audio_agnostic(corpus):
    """On the unseen test sentences, the per-style mean motion (audio-agnostic) predicts the mouth much worse
    than that mean plus a least-squares map from short-window audio band energies (audio-driven)."""
    out, _ = corpus
    x_tr, y_tr, s_tr = _frames(out, "train")
    x_te, y_te, s_te = _frames(out, "test")
    means = {s: y_tr[[i for i, v in enumerate(s_tr) if v == s]].mean(0) for s in set(s_tr)}
    base_tr = np.stack([means[s] for s in s_tr])
    base_te = np.stack([means[s] for s in s_te])
    w, *_ = np.linalg.lstsq(np.c_[x_tr, np.ones(len(x_tr))], y_tr - base_tr, rcond=None)
    pred = base_te + np.c_[x_te, np.ones(len(x_te))] @ w
    err_agnostic = np.abs(y_te - base_te).mean(0)
    err_audio = np.abs(y_te - pred).mean(0)
    ratio = err_audio / err_agnostic
    assert ratio[0] < 0.45 and ratio[3] < 0.45, ratio  # lip opening and jaw opening follow the audio
    assert ratio.mean() < 0.55, ratio
    assert err_agnostic[3] > 0.03  # the jaw moves by several hundredths of a radian around its style mean


def test_emotion_recoverable_by_nearest_centroid(corpus):
    """The per-clip mean of exp[2..7] identifies the emotion of unseen test clips (centroids from train)."""
    out, _ = corpus

    def clip_means(split):
        keys = list_clips(out, "pred", split)
        return keys, np.stack([params_to_motion(np.load(out / "param" / f"{k}.npy"))[:, 2:8].mean(0) for k in keys])

    k_tr, f_tr = clip_means("train")
    k_te, f_te = clip_means("test")
    labels = np.array([k.emotion for k in k_tr])
    centroids = np.stack([f_tr[labels == e].mean(0) for e in range(8)])
    pred = np.argmin(((f_te[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    acc = np.mean(pred == np.array([k.emotion for k in k_te]))
    assert acc >= 0.95, acc
    # and the patterns follow the shared semantic contract: happy squints (exp5), angry furrows (exp4)
    happy = f_tr[labels == 1].mean(0) - centroids[0]
    angry = f_tr[labels == 6].mean(0) - centroids[0]
    assert happy[3] > 0.5 and happy[0] > 0.5 and angry[2] > 0.9 and angry[1] < -0.4


def test_mouth_contract_follows_vowels():
    """exp1 (rounding) rises on o/u, exp2 (stretch) on i/e, jaw and exp0 open most on a."""
    key = ClipKey("M001", 1, 0, 0)
    style = SY._subject_style(0, "M001")
    syls, _, _ = SY._schedule(0, key, style)
    params, _ = SY.synthesize_clip(key, seed=0)
    m = params_to_motion(params)
    per_vowel = {}
    for s in syls:
        f = int(((s.v_start + s.v_end) / 2 - SY.ANTICIPATION_S) * 25)
        per_vowel.setdefault(s.vowel, []).append(m[f])
    mean = {v: np.mean(x, 0) for v, x in per_vowel.items()}
    for v in mean:
        if v in "ou":
            assert mean[v][1] > 0.5
        else:
            assert mean[v][1] < 0.3
        if v in "ie":
            assert mean[v][2] - style.bias[2] > 0.4
    if "a" in mean and "i" in mean:
        assert mean["a"][50] > mean["i"][50] and mean["a"][0] > mean["i"][0]
