"""`probtalk3d generate` through the CLI: flags reach the library, one-line errors, exit codes, stdin, shards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probtalk3d_cli.io import save_wav


@pytest.fixture(scope="module")
def ckpt(tiny_pred_run):
    return tiny_pred_run / "best.pt"


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_audio")
    rng = np.random.default_rng(0)
    for name, seconds in (("a", 1.2), ("b", 1.6), ("c", 0.9)):
        save_wav(root / f"{name}.wav", (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))
    return root


def _ids(ckpt):
    from probtalk3d_cli.checkpoint import load_checkpoint

    return load_checkpoint(ckpt)["meta"]["identities"]


def test_help_lists_every_flag(cli):
    r = cli("generate", "--help")
    assert r.exit_code == 0
    for flag in ("--checkpoint", "--out", "--subject", "--emotion", "--intensity", "--styles", "--num-samples",
                 "--temperature", "--k", "--deterministic", "--fact", "--mean", "--seed", "--format", "--shard",
                 "--overwrite", "--allow-unseen-styles", "--batch-size", "--precision", "--device", "--set"):
        assert flag in r.stdout, flag


def test_generate_writes_files_and_flags_reach_the_sidecar(cli, ckpt, audio, tmp_path):
    subj = _ids(ckpt)[-1]
    r = cli("generate", "--checkpoint", ckpt, audio / "a.wav", "--out", tmp_path, "--subject", subj.lower(),
            "--emotion", "3", "--intensity", "high", "-n", "2", "--temperature", "0.4", "--k", "2", "--seed", "5",
            "--format", "motion", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote 2 file(s) for 1 job(s) to {tmp_path} (0 job(s) already done) in ")
    meta = json.loads((tmp_path / f"a_{subj}_surprised_high_s2.json").read_text())
    assert meta["sampling"] == {"kind": "vq", "mode": "temperature", "temperature": 0.4, "k": 2}
    assert (meta["seed"], meta["sample"], meta["format"]) == (5, 2, "motion")
    assert np.load(tmp_path / f"a_{subj}_surprised_high_s2.npy").dtype == np.float32
    again = cli("generate", "-m", ckpt, audio / "a.wav", "-o", tmp_path, "--subject", subj, "--emotion", "surprised",
                "--intensity", "2", "-n", "2", "--temperature", "0.4", "--k", "2", "--seed", "5", "--format", "motion")
    assert again.exit_code == 0 and "wrote 0 file(s) for 0 job(s)" in again.stdout and "(1 job(s) already done" in again.stdout


def test_config_set_and_flag_precedence(cli, ckpt, audio, tmp_path):
    r = cli("generate", "-m", ckpt, audio / "b.wav", "-o", tmp_path, "--set", "generate.seed=9", "--set",
            "generate.deterministic=true", "--seed", "11")
    assert r.exit_code == 0, r.output
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert meta["seed"] == 11 and meta["sampling"] == {"kind": "vq", "mode": "deterministic"}


def test_one_line_errors_and_no_output(cli, ckpt, audio, tmp_path):
    out = tmp_path / "out"
    cases = [
        (("--subject", "NOPE"), f"error: unknown subject 'NOPE'; this checkpoint knows {len(_ids(ckpt))} subjects: "),
        (("--emotion", "joy"), "error: unknown emotion 'joy'"),
        (("--emotion", "neutral", "--intensity", "medium"), "error: emotion neutral with intensity medium never"),
        (("--shard", "2/2"), "error: --shard '2/2': need N >= 1 and 0 <= K < N"),
        (("--format", "obj"), "error: config key 'generate.format' must be one of params, motion"),
        (("--temperature", "0"), "error: config key 'generate.temperature' must be greater than 0"),
    ]
    for extra, start in cases:
        r = cli("generate", "-m", ckpt, audio, "-o", out, *extra)
        assert r.exit_code == 1, (extra, r.output)
        assert r.stderr.strip().splitlines()[-1].startswith(start), r.stderr
        assert len([l for l in r.stderr.splitlines() if l.startswith("error:")]) == 1
    assert not out.exists() or not any(out.iterdir())
    r = cli("generate", "-m", ckpt, tmp_path / "missing.wav", "-o", out)
    assert r.exit_code == 1 and "does not exist" in r.stderr
    r = cli("generate", "-m", tmp_path / "nope.pt", audio, "-o", out)
    assert r.exit_code == 1 and "checkpoint" in r.stderr and "does not exist" in r.stderr
    r = cli("generate", "-m", ckpt, "-o", out)
    assert r.exit_code == 1 and "no inputs" in r.stderr


def test_inapplicable_flag_is_a_warning(cli, ckpt, audio, tmp_path):
    r = cli("generate", "-m", ckpt, audio / "c.wav", "-o", tmp_path, "--fact", "5", "--mean")
    assert r.exit_code == 0
    assert "--fact, --mean apply only to VAE checkpoints" in " ".join(r.stderr.split())


def test_stdin_input(cli, ckpt, audio, tmp_path):
    r = cli("generate", "-m", ckpt, "-", "-o", tmp_path, "--emotion", "fear", input=(audio / "b.wav").read_bytes())
    assert r.exit_code == 0, r.output
    subj = _ids(ckpt)[0]
    assert (tmp_path / f"stdin_{subj}_fear_medium.npy").exists() and (tmp_path / "stdin.wav").exists()
    r = cli("generate", "-m", ckpt, "-", "-o", tmp_path, input=b"")
    assert r.exit_code == 1 and "stdin is empty" in r.stderr


def test_shards_split_a_folder_and_failures_exit_1(cli, ckpt, audio, tmp_path):
    for k in range(2):
        r = cli("-q", "generate", "-m", ckpt, audio, "-o", tmp_path / "out", "--emotion", "sad,happy", "--shard", f"{k}/2")
        assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "out").glob("*.npy"))) == 6
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "ok.wav").write_bytes((audio / "a.wav").read_bytes())
    (folder / "bad.wav").write_bytes(b"garbage")
    r = cli("generate", "-m", ckpt, folder, "-o", tmp_path / "m")
    assert r.exit_code == 1
    assert any(line.startswith("failed: ") and "bad.wav" in line for line in r.stderr.splitlines())
    assert "error: 1 input(s) failed (listed above); the other outputs were written" in " ".join(r.stderr.split())
    assert len(list((tmp_path / "m").glob("ok_*.npy"))) == 1


def test_styles_csv(cli, ckpt, audio, tmp_path):
    subj = _ids(ckpt)[0]
    styles = tmp_path / "s.csv"
    styles.write_text(f"audio,subject,emotion,intensity\n{audio}/a.wav,{subj},disgusted,low\n{audio}/c.wav,,random,\n")
    r = cli("generate", "-m", ckpt, "--styles", styles, "-o", tmp_path / "out", "--seed", "3")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "out").glob("*.npy"))
    assert names[0] == f"a_{subj}_disgusted_low.npy" and names[1].startswith(f"c_{subj}_") and len(names) == 2
