"""`evaluation.evaluate`: the tiny predictor, prediction folders and baselines on the synthetic corpus (demo head)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from probtalk3d_cli.config import EvalConfig
from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, parse_key

SEED = 1234


def _settings(**kw) -> EvalConfig:
    s = EvalConfig(num_samples=3, batch_size=2, precision="fp32")  # exact comparisons below
    for k, v in kw.items():
        setattr(s, k, v)
    return s


@pytest.fixture(scope="module")
def test_keys(synthetic_data):
    from probtalk3d_cli.evaluation.evaluate import resolve_split

    keys, info = resolve_split(synthetic_data, "test")
    assert info["name"] == "test" and len(keys) == 44
    return keys


@pytest.fixture(scope="module")
def small_split(tmp_path_factory, test_keys):
    """A split file of 5 test clips spread over emotions and intensities."""
    p = tmp_path_factory.mktemp("split") / "five.txt"
    keys = [test_keys[i] for i in (0, 9, 20, 33, 43)]
    p.write_text("# five clips\n" + "\n".join(str(k) for k in keys) + "\n\n")
    return p, keys


@pytest.fixture(scope="module")
def model_run(synthetic_data, tiny_pred_run, small_split, tmp_path_factory):
    """One model run with batch size 1 (bit-identical to generate_motion) on the 5-clip split, with files."""
    from probtalk3d_cli.evaluation.evaluate import evaluate

    out = tmp_path_factory.mktemp("eval") / "out"
    res = evaluate(synthetic_data, [str(tiny_pred_run / "best.pt")], settings=_settings(split=str(small_split[0]),
                                                                                        batch_size=1),
                   flame="demo", out=out)
    return res, out


def _gt_motion(data, key):
    from probtalk3d_cli.evaluation.baselines import load_gt_motion

    return load_gt_motion(data, key)


def _verts(motion):
    """Independent path to vertices: float64 FLAME converter on numpy (50 expression coefficients + jaw)."""
    import torch

    from probtalk3d_cli.flame import FlameConverter, load_flame

    conv = FlameConverter(load_flame("demo"), dtype=torch.float64)
    m = np.asarray(motion, dtype=np.float64)
    return conv.vertices(m[:, :50], m[:, 50:53])


# --------------------------------------------------------------------------------------------------------
# model runs
# --------------------------------------------------------------------------------------------------------


def test_model_run_files_units_and_per_clip_rows(model_run, small_split, synthetic_data):
    res, out = model_run
    report = json.loads((out / "metrics.json").read_text())
    assert report["units"]["mve"] == "m" and report["units"]["lve"] == "m^2"
    assert report["num_samples"] == 3 and report["seed"] == SEED and report["clips"] == 5
    assert report["flame_model"] == {"source": "demo", "vertices": 4999}
    assert report["regions"]["source"] == "built into the demo head"
    assert report["checkpoints"][0].endswith("best.pt")
    assert report["sampling"]["temperature"] == 0.2 and report["versions"]["torch"]
    sys0 = report["systems"][0]
    assert sys0["kind"] == "model" and sys0["checkpoint"]["sha256"]
    assert sys0["metrics"]["frames"] == report["frames"] == sum(len(_gt_motion(synthetic_data, k)) for k in small_split[1])
    assert set(sys0["by_emotion"]) <= set(EMOTIONS) and set(sys0["by_intensity"]) <= set(INTENSITIES)
    assert sum(b["clips"] for b in sys0["by_emotion"].values()) == 5
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert len(rows) == 5  # clips x systems
    assert [r["key"] for r in rows] == [str(k) for k in small_split[1]]
    assert {"mve_m", "lve_m2", "fdd_m2", "fdd_abs_m2", "diversity_m"} <= set(rows[0])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_clip.csv"]  # no temporary files left
    # pooled MVE = frame-weighted mean of the per-clip values in the CSV
    frames = np.array([int(r["frames"]) for r in rows])
    mve = np.array([float(r["mve_m"]) for r in rows])
    assert sys0["metrics"]["mve"] == pytest.approx(float((frames * mve).sum() / frames.sum()), rel=1e-12)


def test_one_clip_mve_lve_match_direct_numpy(model_run, synthetic_data, tiny_pred_run, small_split, tmp_path):
    """Regenerate one clip's samples with the in-memory API and the same per-clip generator, then compute MVE and
    LVE with numpy on independently converted vertices."""
    from probtalk3d_cli.flame import load_flame
    from probtalk3d_cli.generation import generate_motion, job_generator, load_model
    from probtalk3d_cli.data.dataset import load_clip_audio

    res, out = model_run
    key = small_split[1][2]
    row = next(r for r in csv.DictReader((out / "per_clip.csv").open()) if r["key"] == str(key))
    model, _ = load_model(str(tiny_pred_run / "best.pt"))
    samples = generate_motion(model, load_clip_audio(synthetic_data, key), key.subject, key.emotion, key.intensity, 3,
                              generator=job_generator(SEED, f"{key}_{key.subject}_{EMOTIONS[key.emotion]}_"
                                                            f"{INTENSITIES[key.intensity]}"))
    gt = _verts(_gt_motion(synthetic_data, key))
    p = _verts(samples[0][: len(gt)])
    mve = np.linalg.norm(gt[: len(p)] - p, axis=-1).mean()
    lip = load_flame("demo").lip_idx
    lve = (((gt[: len(p)] - p)[:, lip] ** 2).sum(-1).max(1)).mean()
    assert float(row["mve_m"]) == pytest.approx(mve, rel=1e-5)
    assert float(row["lve_m2"]) == pytest.approx(lve, rel=1e-4)
    assert 1e-4 < mve < 1e-2  # metres: a tenth of a millimetre to a centimetre
    # the same clip alone: metrics.json's pooled MVE is that clip's MVE
    from probtalk3d_cli.evaluation.evaluate import evaluate

    one = tmp_path / "one.txt"
    one.write_text(f"{key}\n")
    evaluate(synthetic_data, [str(tiny_pred_run / "best.pt")], settings=_settings(split=str(one), batch_size=1),
             flame="demo", out=tmp_path / "one")
    report = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert report["clips"] == 1 and report["systems"][0]["metrics"]["mve"] == pytest.approx(mve, rel=1e-5)
    assert report["systems"][0]["metrics"]["lve"] == pytest.approx(lve, rel=1e-4)


def test_same_seed_same_numbers_other_seed_other_samples(model_run, synthetic_data, tiny_pred_run, small_split):
    from probtalk3d_cli.evaluation.evaluate import evaluate

    res, _ = model_run
    ckpt = [str(tiny_pred_run / "best.pt")]
    again = evaluate(synthetic_data, ckpt, settings=_settings(split=str(small_split[0]), batch_size=1), flame="demo")
    assert again.files == []  # no output folder: nothing written
    assert again.systems[0].summary == res.systems[0].summary
    other = evaluate(synthetic_data, ckpt, settings=_settings(split=str(small_split[0]), batch_size=1, seed=7),
                     flame="demo")
    a, b = res.systems[0].overall, other.systems[0].overall
    assert a["mve"] != b["mve"] and a["diversity"] != b["diversity"]


def test_batched_clips_match_unbatched_to_rounding(model_run, synthetic_data, tiny_pred_run, small_split):
    from probtalk3d_cli.evaluation.evaluate import evaluate

    res, _ = model_run
    batched = evaluate(synthetic_data, [str(tiny_pred_run / "best.pt")],
                       settings=_settings(split=str(small_split[0]), batch_size=5), flame="demo", num_workers=1)
    for k in ("mve", "lve", "mee", "ce", "diversity"):
        assert batched.systems[0].overall[k] == pytest.approx(res.systems[0].overall[k], rel=1e-4)


def test_n1_diversity_not_applicable(synthetic_data, tiny_pred_run, small_split):
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.evaluation.report import comparison_table

    res = evaluate(synthetic_data, [str(tiny_pred_run / "best.pt")],
                   settings=_settings(split=str(small_split[0]), num_samples=1), flame="demo")
    m = res.systems[0].overall
    assert m["diversity"] is None and m["diversity_clips"] == 0
    assert m["mee"] == m["lve"] == m["ce"]  # one sample: mean = closest = first
    assert res.report["systems"][0]["metrics"]["diversity"] is None
    assert json.loads(json.dumps(res.report))["systems"][0]["metrics"]["diversity"] is None
    from rich.console import Console

    c = Console(width=200, record=True)
    c.print(comparison_table(res.report))
    assert "n/a" in c.export_text()


# --------------------------------------------------------------------------------------------------------
# prediction folders and baselines
# --------------------------------------------------------------------------------------------------------


def test_perfect_predictions_score_zero_and_baselines(synthetic_data, small_split, tmp_path):
    """GT copies give MVE = LVE = MEE = CE = FDD = 0; the shifted GT is worse; both baselines are rows."""
    from probtalk3d_cli.evaluation.evaluate import evaluate

    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for k in small_split[1]:
        shutil.copy(synthetic_data / "param" / f"{k}.npy", perfect / f"{k}.npy")
    res = evaluate(synthetic_data, predictions=[f"gt={perfect}"], settings=_settings(split=str(small_split[0]),
                                                                                      baselines=True), flame="demo")
    assert [s.name for s in res.systems] == ["gt", "baseline: mean motion", "baseline: GT shifted 1 s"]
    gt = res.system("gt").overall
    assert gt["mve"] == gt["lve"] == gt["mee"] == gt["ce"] == gt["fdd"] == gt["fdd_abs"] == 0.0
    assert gt["diversity"] is None  # one file per clip
    shifted = res.system("baseline: GT shifted 1 s").overall
    assert shifted["lve"] > gt["lve"] and shifted["mve"] > 0
    assert abs(shifted["fdd"]) < 1e-12  # a circular shift keeps every vertex's statistics over time
    mean = res.system("baseline: mean motion")
    assert mean.overall["mve"] > 0 and mean.overall["diversity"] is None
    assert mean.info["train_clips"] == 46 and not mean.info["fallback_styles"]
    assert res.system("baseline: GT shifted 1 s").info["shift_frames"] == 25


def test_shifted_ground_truth_definition():
    from probtalk3d_cli.evaluation.baselines import shift_frames, shifted_ground_truth

    m = np.arange(60, dtype=np.float32)[:, None] * np.ones((1, 53), np.float32)
    s = shifted_ground_truth(m)
    assert s[25, 0] == 0 and s[0, 0] == 35 and s[59, 0] == 34  # out[t] = gt[(t - 25) mod T]
    assert shift_frames(30) == 15 and shift_frames(1) == 0 and shift_frames(500) == 25


def test_mean_baseline_pools_frames_and_falls_back(tmp_path):
    from probtalk3d_cli.evaluation.baselines import MeanMotionBaseline
    from probtalk3d_cli.evaluation.systems import EvalClip

    a, b = np.full(53, 1.0, np.float32), np.full(53, 4.0, np.float32)
    base = MeanMotionBaseline({("M001", 1, 2): a, ("W001", 1, 2): b}, {("M001", 1, 2): 30, ("W001", 1, 2): 10}, 2)
    own = base.predict_batch([EvalClip(parse_key("M001_005_1_2"), np.zeros((7, 53), np.float32))])[0]
    assert own.motion.shape == (1, 7, 53) and np.all(own.motion == 1.0)
    other = base.predict_batch([EvalClip(parse_key("X002_005_1_2"), np.zeros((4, 53), np.float32))])[0]
    assert np.allclose(other.motion, (30 * 1.0 + 10 * 4.0) / 40)  # frame-weighted (emotion, intensity) mean
    overall = base.predict_batch([EvalClip(parse_key("X002_005_3_0"), np.zeros((2, 53), np.float32))])[0]
    assert np.allclose(overall.motion, 1.75)
    assert base.fallback == {"X002/happy/high": "emotion-intensity", "X002/surprised/low": "overall"}
    note = base.fallback_note()
    assert "2 style(s) have no training clip" in note and "X002/happy/high (emotion-intensity)" in note


def test_official_and_our_naming_missing_and_ignored_files(synthetic_data, small_split, tmp_path):
    """The same predictions named the official way ((k) suffixes) and ours (_s<k>) give the same numbers; missing
    clips are listed, other styles and foreign names ignored with a count; longer predictions are cut."""
    from probtalk3d_cli.data.schema import motion_to_params
    from probtalk3d_cli.evaluation.evaluate import evaluate

    keys = small_split[1]
    rng = np.random.default_rng(0)
    ours, official = tmp_path / "ours", tmp_path / "official"
    ours.mkdir()
    official.mkdir()
    for key in keys[:4]:  # the fifth clip has no prediction
        gt = _gt_motion(synthetic_data, key)
        style = f"{key.subject}_{EMOTIONS[key.emotion]}_{INTENSITIES[key.intensity]}"
        for k in (1, 2):
            noisy = gt + rng.normal(0, 0.05, gt.shape).astype(np.float32)
            noisy = np.concatenate([noisy, noisy[-3:]])  # 3 frames longer than the ground truth: cut
            params = motion_to_params(noisy)
            np.save(official / f"{key}_{style}({k}).npy", params)
            np.save(ours / f"{key}_{style}_s{k}.npy", params.astype(np.float32))
    np.save(ours / f"{keys[0]}_{keys[0].subject}_angry_high_s1.npy", np.zeros((1, 5, 403)))  # another style
    np.save(ours / "notes.npy", np.zeros(3))  # not a prediction name
    (official / f"{keys[0]}.json").write_text("{}")  # sidecars are not predictions
    res = evaluate(synthetic_data, predictions=[str(ours), str(official)],
                   settings=_settings(split=str(small_split[0])), flame="demo")
    a, b = res.systems
    assert (a.name, b.name) == ("ours", "official")
    assert a.summary["overall"] == b.summary["overall"]
    assert a.overall["clips"] == 4 and a.missing == [str(keys[4])] and b.missing == [str(keys[4])]
    assert a.info["ignored"] == {"unrecognised": 1, "other_style": 1, "outside_split": 0}
    assert a.info["num_samples"] == 2 and a.info["clips_cut_to_gt"] == 4
    assert a.overall["diversity"] > 0 and a.overall["mve"] > 0
    assert any("1 of 5 clips have no prediction" in n for n in a.notes)
    assert res.report["systems"][0]["missing"] == [str(keys[4])]


def test_vertex_prediction_files(synthetic_data, small_split, tmp_path):
    from probtalk3d_cli.evaluation.evaluate import evaluate

    d = tmp_path / "verts"
    d.mkdir()
    for key in small_split[1]:
        np.save(d / f"{key}.npy", _verts(_gt_motion(synthetic_data, key)).astype(np.float32))
    res = evaluate(synthetic_data, predictions=[str(d)], settings=_settings(split=str(small_split[0])), flame="demo")
    assert res.systems[0].overall["mve"] < 1e-6  # float32 vertex files vs the float32 converter


def test_prediction_folder_errors(synthetic_data, small_split, tmp_path):
    from probtalk3d_cli.evaluation.evaluate import evaluate

    s = _settings(split=str(small_split[0]))
    empty = tmp_path / "empty"
    empty.mkdir()
    np.save(empty / "M999_001_0_0.npy", np.zeros((1, 5, 403)))
    with pytest.raises(ValueError, match="holds no file for any of the 5 clips"):
        evaluate(synthetic_data, predictions=[str(empty)], settings=s, flame="demo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(synthetic_data, predictions=[str(tmp_path / "nope")], settings=s, flame="demo")
    dup = tmp_path / "dup"
    dup.mkdir()
    k = small_split[1][0]
    np.save(dup / f"{k}.npy", np.zeros((1, 5, 403)))
    np.save(dup / f"{k}_s1.npy", np.zeros((1, 5, 403)))
    with pytest.raises(ValueError, match="two files for sample 1"):
        evaluate(synthetic_data, predictions=[str(dup)], settings=s, flame="demo")


def test_prediction_names():
    from probtalk3d_cli.evaluation.systems import parse_prediction_name

    k = parse_key("M003_028_3_2")
    assert parse_prediction_name("M003_028_3_2_M003_surprised_high(2).npy") == (k, ("M003", "surprised", "high"), 2,
                                                                                True)
    assert parse_prediction_name("M003_028_3_2_M003_surprised_high_s10.npy")[2] == 10
    assert parse_prediction_name("M003_028_3_2.npy") == (k, None, 1, False)
    assert parse_prediction_name("M003_028_3_2_verts.npy") is None
    assert parse_prediction_name("angry_M009_angry_medium.npy") is None


def test_split_file_keys_and_subjects(synthetic_data, tmp_path, test_keys):
    from probtalk3d_cli.evaluation.evaluate import resolve_split

    f = tmp_path / "mixed.txt"
    f.write_text(f"W001\n{test_keys[0]}  # a comment\n")
    keys, info = resolve_split(synthetic_data, str(f))
    assert keys == sorted({test_keys[0]} | {k for k in test_keys if k.subject == "W001"})
    assert info["source"] == str(f.resolve())
    f.write_text("M001_999_0_0\n")
    with pytest.raises(FileNotFoundError, match="without DATA/param"):
        resolve_split(synthetic_data, str(f))
    f.write_text("M001_03_x\n")
    with pytest.raises(ValueError, match="line 1"):
        resolve_split(synthetic_data, str(f))
    with pytest.raises(ValueError, match="unknown split 'tset'"):
        resolve_split(synthetic_data, "tset")


def test_generate_outputs_score_exactly_like_the_checkpoint(model_run, synthetic_data, tiny_pred_run, small_split,
                                                            tmp_path):
    """`generate` on the data's wavs with the clips' own styles, the same seed and N, scored with --predictions,
    gives exactly the numbers of evaluating the checkpoint (batch size 1 on both sides)."""
    from probtalk3d_cli.config import GenerateConfig
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.generation import generate

    res, _ = model_run
    csv_path = tmp_path / "styles.csv"
    csv_path.write_text("audio,subject,emotion,intensity\n" + "".join(
        f"{synthetic_data / 'wav' / f'{k}.wav'},{k.subject},{k.emotion},{k.intensity}\n" for k in small_split[1]))
    g = GenerateConfig(num_samples=3, seed=SEED, precision="fp32")
    generate(str(tiny_pred_run / "best.pt"), [], tmp_path / "gen", styles_csv=csv_path, settings=g,
             allow_unseen_styles=True)
    files = evaluate(synthetic_data, predictions=[str(tmp_path / "gen")], settings=_settings(split=str(small_split[0])),
                     flame="demo")
    assert files.systems[0].summary["overall"] == res.systems[0].summary["overall"]
    assert [r["mve"] for r in files.systems[0].rows] == [r["mve"] for r in res.systems[0].rows]
