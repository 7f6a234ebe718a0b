"""`probtalk3d import-official` through the CLI."""

from __future__ import annotations

from helpers.official_fake import fake_state_dict, save_lightning_ckpt
from probtalk3d_cli.checkpoint import load_checkpoint


def test_import_prior_via_cli(cli, tmp_path):
    src = save_lightning_ckpt(tmp_path / "last.ckpt", fake_state_dict("prior", seed=1))
    r = cli("import-official", "--stage", "prior", src, "--out", tmp_path / "prior.pt")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote {tmp_path / 'prior.pt'}: VQ prior checkpoint, 146 tensors, 6,375,680 parameters "
                               "(official last.ckpt, epoch 200, sha256 ")
    assert load_checkpoint(tmp_path / "prior.pt", expect="prior")["meta"]["source"] == "official"


def test_errors_are_one_line(cli, tmp_path):
    marker = tmp_path / "marker"
    evil = save_lightning_ckpt(tmp_path / "evil.ckpt", fake_state_dict("prior"), malicious=marker)
    for args, text in (
        (("--stage", "prior", evil), "refusing to load it"),
        (("--stage", "prior", tmp_path / "missing.ckpt"), "does not exist"),
        (("--stage", "both", evil), "--stage must be prior or pred"),
        (("--stage", "prior", "--variant", "vae", evil), "refusing"),
    ):
        r = cli("import-official", *args, "--out", tmp_path / "x.pt")
        assert r.exit_code == 1, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], r.stderr
    assert not marker.exists() and not (tmp_path / "x.pt").exists()
    r = cli("import-official", "--help")
    assert r.exit_code == 0 and "--variant" in r.stdout and "--prior" in r.stdout
