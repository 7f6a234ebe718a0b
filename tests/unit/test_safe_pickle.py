"""The restricted unpickler: data in, nothing executed."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from probtalk3d_cli.safe_pickle import UnsafePickleError, safe_load_pickle, safe_load_pickle_bytes


class _Evil:
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_refuses_code_execution(tmp_path):
    flag = tmp_path / "pwned"
    data = pickle.dumps({"v_template": _Evil(flag)})
    with pytest.raises(UnsafePickleError, match="allow-list"):
        safe_load_pickle_bytes(data)
    assert not flag.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_dict_round_trip(protocol, tmp_path):
    d = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64), "c": "text",
         "d": b"raw bytes", "e": [1.5, (2, 3)]}
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(d, protocol=protocol))
    out = safe_load_pickle(p)
    assert np.array_equal(out["a"], d["a"]) and out["a"].dtype == np.float32
    assert np.array_equal(out["b"], d["b"]) and out["c"] == "text" and out["d"] == b"raw bytes"
    assert out["e"] == [1.5, (2, 3)]


def test_legacy_torch_templates_need_allow_torch(shared_fixtures):
    path = shared_fixtures / "flame" / "templates_mead_param.pkl"
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(path)
    d = safe_load_pickle(path, allow_torch=True)
    assert len(d) == 47 and d["M003"].shape == (1, 1, 300) and d["M003"].dtype == np.float32


def test_missing_and_garbage(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_load_pickle(tmp_path / "none.pkl")
    (tmp_path / "g.pkl").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ValueError):
        safe_load_pickle(tmp_path / "g.pkl")
