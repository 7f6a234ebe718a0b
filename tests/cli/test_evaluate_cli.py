"""`probtalk3d evaluate`: files, table, plots, baselines, several checkpoints, --quiet and one-line errors."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest

from probtalk3d_cli.evaluation.plots import is_png


@pytest.fixture(scope="module")
def split_file(synthetic_data, tmp_path_factory):
    from probtalk3d_cli.evaluation.evaluate import resolve_split

    keys, _ = resolve_split(synthetic_data, "test")
    p = tmp_path_factory.mktemp("split") / "four.txt"
    p.write_text("\n".join(str(keys[i]) for i in (1, 15, 30, 42)) + "\n")
    return p


def _gl_available() -> bool:
    from probtalk3d_cli.render import choose_gl_backend

    try:
        choose_gl_backend("auto")
        return True
    except RuntimeError:
        return False


def test_full_run_with_baselines_and_plots(cli, tmp_path, synthetic_data, tiny_pred_run, split_file):
    if not _gl_available():
        pytest.skip("no offscreen OpenGL (OSMesa/EGL) for the heat map")
    out = tmp_path / "eval"
    r = cli("evaluate", "--checkpoint", tiny_pred_run / "best.pt", "--data", synthetic_data, "--split", split_file,
            "-n", "2", "--flame-model", "demo", "--out", out, "--baselines", "--plots", "--seed", "5")
    assert r.exit_code == 0, r.output
    for text in ("MVE (mm)", "LVE (mm²)", "Diversity (mm)", "baseline: mean motion", "baseline: GT shifted 1 s",
                 "0.1 × 10⁻⁵ m²", "n/a", "evaluated 4 clips"):
        assert text in r.stdout, text
    report = json.loads((out / "metrics.json").read_text())
    assert [s["kind"] for s in report["systems"]] == ["model", "baseline", "baseline"]
    assert report["seed"] == 5 and report["num_samples"] == 2 and report["split"]["name"] == "four"
    assert report["baselines"] == ["baseline: mean motion", "baseline: GT shifted 1 s"]
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert len(rows) == 4 * 3  # clips x systems
    assert {r["diversity_m"] for r in rows if r["system"].startswith("baseline")} == {""}  # not applicable
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "error_heatmap.png" in pngs and "metrics_by_emotion.png" in pngs
    assert len([p for p in pngs if p.startswith("curves_")]) == 3  # eval.plot_clips
    assert all(is_png((out / p).read_bytes()) for p in pngs)
    assert set(report["files"]) == {p.name for p in out.iterdir()}  # nothing else (no temporary files)
    # the printed MVE of the model row is the stored SI value in mm
    mve_mm = report["systems"][0]["metrics"]["mve"] * 1e3
    assert f"{mve_mm:.4g}" in r.stdout


def test_two_checkpoints_one_table_quiet(cli, tmp_path, synthetic_data, tiny_pred_run, split_file):
    out = tmp_path / "two"
    r = cli("evaluate", "--checkpoint", f"best={tiny_pred_run / 'best.pt'}", "--checkpoint",
            f"last={tiny_pred_run / 'last.pt'}", "--data", synthetic_data, "--split", split_file, "-n", "1",
            "--flame-model", "demo", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    report = json.loads((out / "metrics.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["best", "last"]
    assert all(s["metrics"]["clips"] == 4 and s["metrics"]["diversity"] is None for s in report["systems"])
    assert len(report["checkpoints"]) == 2 and report["checkpoints"][0].endswith("best.pt")
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert [r["key"] for r in rows[:4]] == [r["key"] for r in rows[4:]]  # same clips for every system


@pytest.fixture()
def real_flame_without_regions(tmp_path):
    from probtalk3d_cli.demo_head import demo_head_dict

    d = {k: v for k, v in demo_head_dict().items() if not k.endswith("region_idx")}
    p = tmp_path / "generic_model.pkl"
    with open(p, "wb") as fh:
        pickle.dump(d, fh)
    return p


@pytest.mark.parametrize("case", ["split", "data", "regions", "prior", "nothing", "corrupt"])
def test_bad_inputs_one_line_error_no_files(case, cli, tmp_path, synthetic_data, tiny_pred_run, tiny_prior_run,
                                            split_file, real_flame_without_regions):
    out = tmp_path / "out"
    args = ["--checkpoint", tiny_pred_run / "best.pt", "--data", synthetic_data, "--split", split_file,
            "--flame-model", "demo", "-n", "1", "--out", out]
    expect = {"split": "unknown split 'tset'", "data": "does not exist", "regions": "--regions-dir",
              "prior": "is a prior checkpoint but a predictor checkpoint is needed",
              "nothing": "nothing to evaluate", "corrupt": "is not a plain .npy array"}[case]
    if case == "split":
        args[args.index("--split") + 1] = "tset"
    elif case == "data":
        args[args.index("--data") + 1] = tmp_path / "no_data"
    elif case == "regions":
        args[args.index("--flame-model") + 1] = real_flame_without_regions
    elif case == "prior":
        args[1] = tiny_prior_run / "best.pt"
    elif case == "nothing":
        args = args[2:]
    elif case == "corrupt":  # fails in the middle of the run: still no output files
        preds = tmp_path / "preds"
        preds.mkdir()
        keys = split_file.read_text().split()
        np.save(preds / f"{keys[0]}.npy", np.zeros((1, 20, 403)))
        (preds / f"{keys[1]}.npy").write_bytes(b"\x93NUMPY garbage")
        args = args[2:] + ["--predictions", preds]
    r = cli("evaluate", *args)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert not out.exists()
