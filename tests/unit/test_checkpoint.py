"""Checkpoints: round trip, atomic writes, safe loading, clear errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from probtalk3d_cli.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from probtalk3d_cli.config import Config


def _save(path, kind="prior", **kw):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}
    return save_checkpoint(path, kind, Config().to_dict(), state, meta={"subjects": ["A", "B"]}, **kw)


def test_round_trip(tmp_path):
    p = _save(tmp_path / "m.pt", train_state={"epoch": 3, "rng": torch.get_rng_state()})
    ck = load_checkpoint(p, expect="prior")
    assert ck["kind"] == "prior" and ck["format_version"] == FORMAT_VERSION
    assert torch.equal(ck["model"]["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert ck["meta"]["subjects"] == ["A", "B"] and ck["train_state"]["epoch"] == 3
    assert ck["config"] == Config().to_dict()


def test_loads_with_weights_only(tmp_path):
    p = _save(tmp_path / "m.pt")
    torch.load(p, weights_only=True)  # plain types only


def test_run_directory_resolves_best_then_last(tmp_path):
    _save(tmp_path / "last.pt")
    assert load_checkpoint(tmp_path)["path"].endswith("last.pt")
    _save(tmp_path / "best.pt")
    assert load_checkpoint(tmp_path)["path"].endswith("best.pt")


def test_wrong_kind_names_the_command(tmp_path):
    p = _save(tmp_path / "m.pt", kind="prior")
    with pytest.raises(ValueError) as e:
        load_checkpoint(p, expect="predictor")
    assert "prior checkpoint" in str(e.value) and "probtalk3d train-pred" in str(e.value)


def test_truncated_checkpoint(tmp_path):
    p = _save(tmp_path / "m.pt")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(p)


def test_empty_and_missing(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_checkpoint(tmp_path / "e.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_newer_format_version(tmp_path):
    p = tmp_path / "new.pt"
    torch.save({"format": "probtalk3d", "kind": "prior", "format_version": FORMAT_VERSION + 1, "config": {},
                "model": {}}, p)
    with pytest.raises(ValueError, match="newer"):
        load_checkpoint(p)


def test_official_lightning_file_points_to_import(tmp_path):
    p = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 1}, p)
    with pytest.raises(ValueError, match="import-official"):
        load_checkpoint(p)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_malicious_pickle_is_refused(tmp_path):
    flag = tmp_path / "pwned"
    evil = _Evil()
    evil.flag = flag
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"format": "probtalk3d", "x": evil}, fh)
    with pytest.raises(ValueError):
        load_checkpoint(p)
    assert not flag.exists()


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = _save(tmp_path / "m.pt")
    before = p.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        _save(p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.pt"]  # no temporary left behind
