"""Generation building blocks: windows, cross-fade, sampling settings, styles, seeds, shards, inputs, CSV."""

from __future__ import annotations

import random

import numpy as np
import pytest

from probtalk3d_cli.data.schema import audio_frames, motion_frames_for_audio
from probtalk3d_cli.generation.core import Sampling, Window, _blend, plan_windows, subject_index, window_frames
from probtalk3d_cli.generation.jobs import (
    AudioSource,
    Job,
    StyleRequest,
    build_jobs,
    derive_seed,
    expand_inputs,
    flag_requests,
    job_generator,
    parse_shard,
    read_styles_csv,
    resolve_style,
    select_shard,
    split_values,
)

IDS = ["M003", "M005", "W009"]


# ---- windows ---------------------------------------------------------------------------------------------


def test_short_audio_is_one_window_over_all_samples():
    n = 16000 * 8
    assert plan_windows(n, 10.0, 1.0) == [Window(0, motion_frames_for_audio(n), 0, n)]


def test_windows_of_25_s_hand_computed():
    n = 25 * 16000  # A = (400000 - 400) // 320 + 1 = 1249 HuBERT frames -> T = 624
    wins = plan_windows(n, 10.0, 1.0)  # W = 250, O = 25, hop 225; last start moved to 624 - 250 = 374
    assert [(w.start, w.frames) for w in wins] == [(0, 250), (225, 250), (374, 250)]
    assert [(w.sample_start, w.sample_end) for w in wins] == [(0, 160080), (144000, 304080), (239360, 399440)]
    for w in wins:  # each segment yields exactly 2W HuBERT frames, aligned with the whole file's frames
        assert audio_frames(w.sample_end - w.sample_start) == 2 * w.frames
        assert w.sample_start == 640 * w.start
    assert wins[-1].end == motion_frames_for_audio(n) == 624


@pytest.mark.parametrize("seconds", [10.04, 19.99, 61.3, 200.0])
def test_windows_cover_every_frame_and_overlap_at_least_o(seconds):
    n = int(seconds * 16000)
    wins = plan_windows(n, 10.0, 2.0)
    t = motion_frames_for_audio(n)
    assert wins[0].start == 0 and wins[-1].end == t
    for a, b in zip(wins, wins[1:]):
        assert b.start > a.start and a.end - b.start >= 50  # overlap >= O frames, no gap
        assert b.frames == 250 and b.sample_end <= n


def test_window_validation():
    assert window_frames(10.0, 1.0) == (250, 25)
    for w, o in ((1.0, 0.6), (0.1, 0.0), (10.0, 5.0), (10.0, -1.0)):
        with pytest.raises(ValueError, match="window"):
            window_frames(w, o)


def test_crossfade_is_a_linear_ramp_over_the_overlap():
    wins = [Window(0, 6, 0, 0), Window(3, 6, 0, 0)]  # overlap of 3 frames (3, 4, 5)
    out = np.zeros((1, 9, 1), dtype=np.float32)
    _blend(out, np.zeros((1, 6, 1), np.float32), wins, 0)
    _blend(out, np.ones((1, 6, 1), np.float32), wins, 1)
    np.testing.assert_allclose(out[0, :, 0], [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1])


# ---- sampling settings -----------------------------------------------------------------------------------


def test_sampling_description_and_validation():
    assert Sampling().describe("vq") == {"kind": "vq", "mode": "temperature", "temperature": 0.2, "k": 1}
    assert Sampling(deterministic=True).describe("vq") == {"kind": "vq", "mode": "deterministic"}
    assert Sampling().describe("vae") == {"kind": "vae", "mode": "fact", "fact": 20.0}
    assert Sampling(mean=True).describe("vae") == {"kind": "vae", "mode": "mean"}
    assert Sampling(deterministic=True).is_stochastic("vae") and not Sampling(mean=True).is_stochastic("vae")
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=0.0).validate()
    Sampling(temperature=0.0, deterministic=True).validate()  # irrelevant when deterministic
    with pytest.raises(ValueError, match="codebook size 256"):
        Sampling(k=300).validate(256)
    with pytest.raises(ValueError, match="fact"):
        Sampling(fact=-1.0).validate()


def test_inapplicable_flags_are_one_line_warnings():
    notes = Sampling(fact=3.0).warnings("vq", given=["mean"])
    assert notes == ["--fact, --mean apply only to VAE checkpoints; this checkpoint's prior is VQ, so they are ignored"]
    assert Sampling().warnings("vae", given=["temperature"]) == [
        "--temperature applies only to VQ checkpoints; this checkpoint's prior is VAE, so it is ignored"]
    assert Sampling(deterministic=True).warnings("vq", num_samples=3) == [
        "--num-samples 3 with deterministic decoding gives 3 identical files"]
    assert Sampling().warnings("vq", num_samples=3) == []


# ---- styles ----------------------------------------------------------------------------------------------


def _resolve(subject=None, emotion=None, intensity=None, allow=False, seed=0):
    return resolve_style(StyleRequest(subject, emotion, intensity), IDS, random.Random(seed), allow)


def test_style_defaults_and_names():
    assert _resolve() == ("M003", 0, 0)  # first identity, neutral, low
    assert _resolve(emotion="happy") == ("M003", 1, 1)  # other emotions default to medium
    assert _resolve("w009", "7", "high") == ("W009", 7, 2)  # case-insensitive ID, emotion index
    assert _resolve("M005", "Angry", "0") == ("M005", 6, 0)


def test_style_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"unknown subject 'M999'; this checkpoint knows 3 subjects: M003, M005, W009"):
        _resolve("M999")
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        _resolve(emotion="joy")
    with pytest.raises(ValueError, match="unknown intensity"):
        _resolve(emotion="sad", intensity="huge")
    with pytest.raises(ValueError, match="neutral with intensity medium never occurs.*--allow-unseen-styles"):
        _resolve(emotion="neutral", intensity="medium")
    assert _resolve(emotion="neutral", intensity="high", allow=True) == ("M003", 0, 2)
    req = StyleRequest("X", origin="styles.csv line 4: ")
    with pytest.raises(ValueError, match="^styles.csv line 4: unknown subject"):
        resolve_style(req, IDS, random.Random(0))
    assert subject_index(IDS, 2) == 2
    with pytest.raises(ValueError, match="out of range"):
        subject_index(IDS, 3)


def test_random_styles_never_pick_unseen_combinations():
    seen_pairs, seen_subjects = set(), set()
    for seed in range(400):
        s, e, i = _resolve("random", "random", "random", seed=seed)
        seen_pairs.add((e, i))
        seen_subjects.add(s)
        assert not (e == 0 and i != 0)
        assert _resolve(emotion="random", intensity="high", seed=seed)[1] != 0
        assert _resolve(emotion="neutral", intensity="random", seed=seed)[2] == 0
    assert len(seen_pairs) == 22 and seen_subjects == set(IDS)  # 7 x 3 + neutral/low, every subject
    unseen = {_resolve(emotion="random", intensity="random", allow=True, seed=s)[1:] for s in range(400)}
    assert (0, 2) in unseen and len(unseen) == 24


def test_split_values_and_cross_product():
    assert split_values(None) == [None] and split_values("happy, sad") == ["happy", "sad"]
    assert split_values(["a,b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="empty value"):
        split_values("happy,,sad")
    reqs = flag_requests("M003,M005", "happy,sad", None)
    assert [(r.subject, r.emotion) for r in reqs] == [("M003", "happy"), ("M003", "sad"), ("M005", "happy"),
                                                      ("M005", "sad")]


# ---- seeds, jobs, shards ---------------------------------------------------------------------------------


def test_derived_seeds_are_stable_and_distinct():
    # golden value: SHA-256 of "1234\x1fsample\x1fspeech_M003_happy_medium", first 8 bytes little-endian, 63 bits
    assert derive_seed(1234, "sample", "speech_M003_happy_medium") == 3003901940549916316
    assert derive_seed(1234, "sample", "a") != derive_seed(1235, "sample", "a") != derive_seed(1234, "sample", "b")
    import torch

    a = torch.rand(5, generator=job_generator(7, "x_M003_sad_high"))
    b = torch.rand(5, generator=job_generator(7, "x_M003_sad_high"))
    assert torch.equal(a, b) and not torch.equal(a, torch.rand(5, generator=job_generator(8, "x_M003_sad_high")))


def test_job_names_and_output_names():
    job = Job(AudioSource("sub/speech"), "M003", 1, 2)
    assert job.name == "sub/speech_M003_happy_high"
    assert job.output_names(1) == ["sub/speech_M003_happy_high.npy"]
    assert job.output_names(3)[2] == "sub/speech_M003_happy_high_s3.npy"


def test_build_jobs_sorts_dedupes_and_refuses_collisions(tmp_path):
    a, b = AudioSource("b", tmp_path / "b.wav"), AudioSource("a", tmp_path / "a.wav")
    jobs = build_jobs([(a, StyleRequest(emotion="sad")), (b, StyleRequest()), (b, StyleRequest())], IDS, 0)
    assert [j.name for j in jobs] == ["a_M003_neutral_low", "b_M003_sad_medium"]
    other = AudioSource("a", tmp_path / "x" / "a.wav")
    with pytest.raises(ValueError, match="two inputs map to the same output a_M003_neutral_low.npy"):
        build_jobs([(b, StyleRequest()), (other, StyleRequest())], IDS, 0)


def test_random_draws_depend_only_on_the_job(tmp_path):
    srcs = [AudioSource(f"clip{i}", tmp_path / f"clip{i}.wav") for i in range(6)]
    req = StyleRequest("random", "random", "random")
    full = {j.source.key: j.name for j in build_jobs([(s, req) for s in srcs], IDS, 5)}
    alone = {j.source.key: j.name for j in build_jobs([(srcs[3], req)], IDS, 5)}
    assert alone["clip3"] == full["clip3"]
    assert len({n.split("_", 1)[1] for n in full.values()}) > 1  # not the same draw for every clip


def test_shards(tmp_path):
    jobs = build_jobs([(AudioSource(f"c{i:02d}", tmp_path / f"{i}.wav"), StyleRequest()) for i in range(10)], IDS, 0)
    assert parse_shard("0/3") == (0, 3) and parse_shard(None) is None
    parts = [select_shard(list(reversed(jobs)), (k, 3)) for k in range(3)]
    assert [j.name for j in parts[1]] == [jobs[i].name for i in (1, 4, 7)]
    assert sorted(j.name for p in parts for j in p) == [j.name for j in jobs]
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


# ---- inputs ----------------------------------------------------------------------------------------------


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_scanned_recursively_skipping_hidden_and_temporary_files(tmp_path):
    root = tmp_path / "in"
    for rel in ("b.wav", "a.FLAC", "sub/c.mp3", "sub/deep/d.m4a", "e.ogg", ".hidden.wav", ".git/x.wav",
                "f.wav~", ".g.tmp-abc.wav", "notes.txt", "h.wav.part", "sub/.cache/i.wav"):
        _touch(root / rel)
    srcs = expand_inputs([root])
    assert [s.key for s in srcs] == ["a", "b", "e", "sub/c", "sub/deep/d"]
    assert all(s.path.is_absolute() and s.path.exists() for s in srcs)
    single = expand_inputs([root / "sub" / "c.mp3", root / "sub" / "c.mp3"])
    assert [s.key for s in single] == ["c"]
    assert expand_inputs(["-"], b"RIFF")[0].key == "stdin"


def test_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expand_inputs([tmp_path / "missing.wav"])
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(ValueError, match="holds no audio files"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="stdin is empty"):
        expand_inputs(["-"], b"")


def test_styles_csv(tmp_path):
    _touch(tmp_path / "audio" / "one.wav")
    _touch(tmp_path / "two.wav")
    csv_path = tmp_path / "jobs.csv"
    csv_path.write_text("audio,subject,emotion,intensity,name\n"
                        "audio/one.wav,M005,happy,high,\n"
                        "\n"
                        f"{tmp_path / 'two.wav'},,,,batch1/two_take\n")
    rows = read_styles_csv(csv_path, flag_requests(None, "sad", None))
    assert [(s.key, r.subject, r.emotion, r.intensity) for s, r in rows] == [
        ("one", "M005", "happy", "high"), ("batch1/two_take", None, "sad", None)]
    assert rows[0][0].path == (tmp_path / "audio" / "one.wav").resolve()
    assert rows[1][1].origin == "jobs.csv line 4: "
    jobs = build_jobs(rows, IDS, 0)
    assert [j.name for j in jobs] == ["batch1/two_take_M003_sad_medium", "one_M005_happy_high"]


@pytest.mark.parametrize("text, match", [
    ("one.wav,M003\n", "needs a header row with an 'audio' column"),
    ("audio,mood\none.wav,x\n", "unknown column"),
    ("audio,emotion\n,happy\n", "line 2: the audio cell is empty"),
    ("audio\nmissing.wav\n", "line 2: audio file .*missing.wav does not exist"),
    ("audio,name\none.wav,../escape\n", "must be a relative path inside the output folder"),
    ("audio,name\none.wav,/abs/name\n", "must be a relative path inside the output folder"),
    ("audio,subject\n", "has a header but no rows"),
])
def test_styles_csv_errors(tmp_path, text, match):
    _touch(tmp_path / "one.wav")
    p = tmp_path / "s.csv"
    p.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_styles_csv(p)
