"""`probtalk3d info`: versions, device, GL backends, asset search locations; JSON is machine-readable."""

from __future__ import annotations

import json


def test_info_json(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", str(tmp_path / "env_model.pkl"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"paths:\n  flame_model: {tmp_path / 'cfg_model.pkl'}\n")
    r = cli("info", "--json", "--config", cfg, "--flame-model", tmp_path / "flag_model.pkl")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    import torch

    import platform
    from importlib.metadata import version

    import transformers

    assert rep["versions"]["torch"] == torch.__version__
    assert rep["python"] == platform.python_version()
    assert rep["versions"]["transformers"] == transformers.__version__
    assert rep["versions"]["smplx"] == version("smplx")
    assert rep["versions"]["pyrender-maintained"] == version("pyrender-maintained")
    assert rep["device"]["mps_available"] == (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    assert rep["device"]["resolved"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert rep["device"]["cuda_available"] == torch.cuda.is_available()
    looked = [row["path"] for row in rep["flame"]["looked_in"]]
    assert looked[:3] == [str(tmp_path / "flag_model.pkl"), str(tmp_path / "cfg_model.pkl"),
                          str(tmp_path / "env_model.pkl")]
    assert rep["flame"]["found"] is False
    assert rep["hubert"]["model"] == "facebook/hubert-base-ls960"
    assert set(rep["gl"]) >= {"egl", "osmesa", "auto"}
    assert rep["gl"]["auto"] in ("egl", "osmesa", None)
    if rep["gl"]["auto"]:
        assert rep["gl"][rep["gl"]["auto"]]["ok"] is True


def test_info_finds_a_flame_file(cli, tmp_path):
    from probtalk3d_cli.demo_head import write_demo_head

    p = tmp_path / "generic_model.pkl"
    write_demo_head(p)
    r = cli("info", "--json", "--no-gl", "--flame-model", p)
    rep = json.loads(r.stdout)
    assert rep["flame"]["found"] is True and rep["flame"]["where"] == str(p)
    assert "gl" not in rep


def test_info_table(cli):
    r = cli("info", "--no-gl", "--set", "audio.model=tiny")
    assert r.exit_code == 0
    assert "torch" in r.stdout and "FLAME model" in r.stdout and "HuBERT" in r.stdout and "tiny" in r.stdout


def test_info_bad_device(cli):
    import torch

    if torch.cuda.is_available():
        return
    r = cli("info", "--json", "--no-gl", "--device", "cuda")
    rep = json.loads(r.stdout)
    assert rep["device"]["resolved"] is None and "CUDA is not available" in rep["device"]["resolve_error"]
