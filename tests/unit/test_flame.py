"""FLAME conversion: golden equality with smplx `lbs()`, chunking, shape modes, transfer, safe loading, regions."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from probtalk3d_cli.flame import (
    FlameConverter,
    flame_from_dict,
    flame_search_locations,
    load_flame,
    load_flame_file,
    load_regions,
    load_templates,
    motion_to_vertices,
    params_to_vertices,
    read_region_file,
    resolve_flame_source,
    rodrigues,
    transfer_motion,
)
from probtalk3d_cli.safe_pickle import UnsafePickleError


@pytest.fixture(scope="module")
def demo():
    return load_flame("demo")


def smplx_reference(fl, shape, exp, jaw):
    """The golden reference: smplx's own lbs() on the same arrays (float64), global/neck/eye pose zero."""
    from smplx.lbs import lbs

    t = exp.shape[0]
    d = torch.float64
    shape = torch.as_tensor(np.broadcast_to(shape, (t, 300)).copy(), dtype=d)
    exp100 = torch.zeros(t, 100, dtype=d)
    exp100[:, :exp.shape[1]] = torch.as_tensor(exp, dtype=d)
    pose = torch.zeros(t, 15, dtype=d)
    pose[:, 6:9] = torch.as_tensor(jaw, dtype=d)
    shapedirs = torch.as_tensor(np.concatenate([fl.shapedirs, fl.expdirs], 2), dtype=d)
    verts, _ = lbs(torch.cat([shape, exp100], 1), pose, torch.as_tensor(fl.v_template, dtype=d), shapedirs,
                   torch.as_tensor(fl.posedirs, dtype=d), torch.as_tensor(fl.J_regressor, dtype=d),
                   torch.as_tensor(fl.parents), torch.as_tensor(fl.weights, dtype=d))
    return verts.numpy()


def random_flame_dict(n=80, seed=0, weight_sum=1.0):
    """A random model in FLAME's pickle layout: jaw weights on about a third of the vertices."""
    rng = np.random.default_rng(seed)
    w = rng.random((n, 5))
    w[rng.random(n) < 0.65, 2] = 0.0
    w = w / w.sum(1, keepdims=True) * weight_sum
    jr = rng.random((5, n))
    return {
        "v_template": rng.normal(size=(n, 3)) * 0.1,
        "shapedirs": rng.normal(size=(n, 3, 400)) * 1e-3,
        "posedirs": rng.normal(size=(n, 3, 36)) * 1e-2,
        "J_regressor": jr / jr.sum(1, keepdims=True),
        "weights": w,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": rng.integers(0, n, size=(50, 3)).astype(np.uint32),
    }


def random_inputs(t, seed=1, n_exp=100):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, 300)), rng.normal(size=(t, n_exp)), rng.normal(size=(t, 3)) * 0.3


# ---------------------------------------------------------------------------------------------------------------
# Golden checks against smplx
# ---------------------------------------------------------------------------------------------------------------


def test_demo_head_matches_smplx_lbs(demo):
    shape, exp, jaw = random_inputs(23)
    ref = smplx_reference(demo, shape, exp, jaw)
    out64 = FlameConverter(demo, dtype=torch.float64, chunk_size=8).vertices(exp, jaw, shape[0])
    np.testing.assert_allclose(out64, ref, rtol=0, atol=1e-9)
    out32 = FlameConverter(demo).vertices(exp, jaw, shape[0])
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, rtol=0, atol=1e-6)


def test_jaw_only_moves_jaw_weighted_vertices(demo):
    conv = FlameConverter(demo, dtype=torch.float64)
    jaw = np.array([[0.3, 0.05, -0.02]])
    moved = np.abs(conv.vertices(np.zeros((1, 100)), jaw) - conv.vertices(np.zeros((1, 100)), np.zeros((1, 3))))
    moved = moved.max(axis=(0, 2)) > 0
    assert not moved[demo.weights[:, 2] == 0].any()
    assert moved[demo.weights[:, 2] > 0.5].all()


@pytest.mark.parametrize("weight_sum", [1.0, 0.97])
def test_random_flame_format_model_matches_smplx(tmp_path, weight_sum):
    path = tmp_path / "generic_model.pkl"
    with open(path, "wb") as fh:
        pickle.dump(random_flame_dict(weight_sum=weight_sum), fh)
    fl = load_flame_file(path)
    shape, exp, jaw = random_inputs(17, seed=5)
    ref = smplx_reference(fl, shape, exp, jaw)
    out = FlameConverter(fl, dtype=torch.float64, chunk_size=4).vertices(exp, jaw, shape[0])
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)  # smplx adds 1e-8 to axis-angle vectors


@pytest.mark.parametrize("pattern", ["every_other", "blocks"])
def test_jaw_scatter_paths_match_smplx(pattern):
    """Many isolated jaw vertices use one scatter; runs of consecutive vertices use slice additions."""
    d = random_flame_dict(n=400, seed=11)
    w = d["weights"]
    jaw = np.arange(0, 400, 2) if pattern == "every_other" else (np.arange(0, 400, 40)[:, None] + np.arange(12)).ravel()
    w[:, 2] = 0.0
    w[jaw, 2] = np.linspace(0.1, 0.9, len(jaw))
    w[:] = w / w.sum(1, keepdims=True)
    fl = flame_from_dict(d, "pattern.pkl")
    conv = FlameConverter(fl, dtype=torch.float64, chunk_size=6)
    assert (conv._jaw_runs is None) == (pattern == "every_other")
    shape, exp, jaw_pose = random_inputs(13, seed=12)
    ref = smplx_reference(fl, shape, exp, jaw_pose)
    np.testing.assert_allclose(conv.vertices(exp, jaw_pose, shape[0]), ref, rtol=0, atol=1e-9)


def test_per_frame_shape_matches_smplx(demo):
    rng = np.random.default_rng(3)
    shapes, exp, jaw = rng.normal(size=(6, 300)), rng.normal(size=(6, 100)), rng.normal(size=(6, 3)) * 0.2
    ref = np.concatenate([smplx_reference(demo, shapes[i:i + 1], exp[i:i + 1], jaw[i:i + 1]) for i in range(6)])
    out = FlameConverter(demo, dtype=torch.float64, chunk_size=4).vertices(exp, jaw, shapes)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


def test_rodrigues_matches_hand_computed_rotation():
    r = rodrigues(torch.tensor([[0.0, 0.0, np.pi / 2], [0.0, 0.0, 0.0], [1e-9, 0.0, 0.0]], dtype=torch.float64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(r[0], expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(r[1], torch.eye(3, dtype=torch.float64), atol=0, rtol=0)
    torch.testing.assert_close(r[2], torch.eye(3, dtype=torch.float64), atol=2e-9, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Chunking, inputs, helpers
# ---------------------------------------------------------------------------------------------------------------


def test_chunked_equals_unchunked(demo):
    _, exp, jaw = random_inputs(50, seed=7)
    whole = FlameConverter(demo, dtype=torch.float64, chunk_size=1000).vertices(exp, jaw)
    for cs in (1, 7, 49):
        conv = FlameConverter(demo, dtype=torch.float64, chunk_size=cs)
        np.testing.assert_allclose(conv.vertices(exp, jaw), whole, rtol=0, atol=1e-14)
        parts = [c.clone() for c in conv.iter_vertices(exp, jaw)]
        assert [p.shape[0] for p in parts] == [min(cs, 50 - s) for s in range(0, 50, cs)]
        np.testing.assert_allclose(torch.cat(parts).numpy(), whole, rtol=0, atol=1e-14)
        np.testing.assert_allclose(conv.forward(exp, jaw).numpy(), whole, rtol=0, atol=1e-14)


def test_fifty_expression_columns_are_zero_padded(demo):
    _, exp, jaw = random_inputs(5, seed=2, n_exp=50)
    conv = FlameConverter(demo, dtype=torch.float64)
    padded = np.concatenate([exp, np.zeros((5, 50))], 1)
    np.testing.assert_array_equal(conv.vertices(exp, jaw), conv.vertices(padded, jaw))
    motion = np.concatenate([exp, jaw], 1)
    np.testing.assert_allclose(motion_to_vertices(motion, conv), conv.vertices(exp, jaw), atol=0, rtol=0)


def test_params_shape_modes(demo):
    rng = np.random.default_rng(4)
    params = np.zeros((1, 8, 403))
    params[0, :, :300] = rng.normal(size=300)
    params[0, :, 300:] = rng.normal(size=(8, 103)) * 0.2
    conv = FlameConverter(demo, dtype=torch.float64)
    keep = params_to_vertices(params, conv, shape="keep")
    zero = params_to_vertices(params, conv, shape="zero")
    vec = params_to_vertices(params, conv, shape=params[0, 0, :300])
    np.testing.assert_array_equal(keep, vec)
    np.testing.assert_array_equal(zero, params_to_vertices(params, conv, shape=None))
    assert np.abs(keep - zero).max() > 1e-3  # identity really changes the face
    np.testing.assert_array_equal(zero, conv.vertices(params[0, :, 300:400], params[0, :, 400:]))
    with pytest.raises(ValueError, match="keep"):
        params_to_vertices(params, conv, shape="mean")
    with pytest.raises(ValueError, match=r"\[1, T, 403\]"):
        params_to_vertices(params[..., :400], conv)


def test_neutral_is_the_template_and_zero_params_give_it(demo):
    conv = FlameConverter(demo, dtype=torch.float64)
    np.testing.assert_array_equal(conv.neutral().numpy(), demo.v_template)
    np.testing.assert_allclose(conv.vertices(np.zeros((2, 100)), np.zeros((2, 3)))[1], demo.v_template, atol=1e-15)


def test_transfer_motion_adds_displacement_to_target(demo):
    conv = FlameConverter(demo, dtype=torch.float64)
    _, exp, jaw = random_inputs(4, seed=9)
    target = demo.v_template * 1.1 + np.array([0.01, -0.02, 0.03])
    out = transfer_motion(exp, jaw, target, conv)
    np.testing.assert_allclose(out, conv.vertices(exp, jaw) - demo.v_template + target, atol=1e-12)
    still = transfer_motion(np.zeros((2, 100)), np.zeros((2, 3)), target, conv)
    np.testing.assert_allclose(still, np.broadcast_to(target, still.shape), atol=1e-15)
    with pytest.raises(ValueError, match="vertices"):
        transfer_motion(exp, jaw, target[:-1], conv)


def test_malformed_converter_inputs(demo):
    conv = FlameConverter(demo)
    with pytest.raises(ValueError, match="jaw"):
        conv.vertices(np.zeros((3, 100)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="frames"):
        conv.vertices(np.zeros((3, 100)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at most 100"):
        conv.vertices(np.zeros((3, 101)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        conv.vertices(np.zeros((3, 100)), np.zeros((3, 3)), np.zeros((2, 300)))
    with pytest.raises(ValueError, match="chunk_size"):
        FlameConverter(demo, chunk_size=0)


def test_empty_sequence(demo):
    out = FlameConverter(demo).vertices(np.zeros((0, 100)), np.zeros((0, 3)))
    assert out.shape == (0, demo.num_vertices, 3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu(demo):
    _, exp, jaw = random_inputs(9)
    cpu = FlameConverter(demo).vertices(exp, jaw)
    gpu = FlameConverter(demo, device="cuda").vertices(exp, jaw)
    np.testing.assert_allclose(gpu, cpu, atol=2e-6)


# ---------------------------------------------------------------------------------------------------------------
# Finding and loading models
# ---------------------------------------------------------------------------------------------------------------


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_model_error_names_file_site_and_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBTALK3D_FLAME_MODEL", raising=False)
    with pytest.raises(FileNotFoundError) as exc:
        load_flame(str(tmp_path / "nope.pkl"))
    text = _one_line(exc)
    for needle in ("nope.pkl", "generic_model.pkl", "https://flame.is.tue.mpg.de", "FLAME 2020", "paths.flame_model",
                   "PROBTALK3D_FLAME_MODEL", "--flame-model"):
        assert needle in text


def test_explicit_path_is_not_silently_replaced_by_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", "demo")
    with pytest.raises(FileNotFoundError, match="from --flame-model"):
        resolve_flame_source(str(tmp_path / "missing.pkl"))
    assert resolve_flame_source(None, None) == "demo"  # env used when nothing more specific is given
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", str(tmp_path / "gone.pkl"))
    with pytest.raises(FileNotFoundError, match="env PROBTALK3D_FLAME_MODEL"):
        resolve_flame_source()


def test_search_locations_order_and_labels(tmp_path, monkeypatch):
    real = tmp_path / "generic_model.pkl"
    real.write_bytes(b"x")
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", str(tmp_path / "env.pkl"))
    rows = flame_search_locations(explicit="demo", config_value=str(real))
    assert rows[0] == ("--flame-model", "demo", True)
    assert rows[1] == ("config paths.flame_model", str(real), True)
    assert rows[2] == ("env PROBTALK3D_FLAME_MODEL", str(tmp_path / "env.pkl"), False)
    assert [r[0] for r in rows[3:]] == ["default"] * (len(rows) - 3) and rows[3][1].endswith("generic_model.pkl")
    assert resolve_flame_source(None, str(real)) == str(real)


def test_empty_and_wrong_pickles_are_rejected(tmp_path):
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty") as exc:
        load_flame_file(empty)
    assert "flame.is.tue.mpg.de" in _one_line(exc)
    d = random_flame_dict()
    del d["posedirs"], d["J_regressor"]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(d))
    with pytest.raises(ValueError, match="missing posedirs, J_regressor") as exc:
        load_flame_file(bad)
    assert "paths.flame_model" in _one_line(exc)
    d = random_flame_dict()
    d["shapedirs"] = d["shapedirs"][:, :, :50]
    with pytest.raises(ValueError, match=r"shapedirs has shape \[80, 3, 50\]"):
        flame_from_dict(d, "x.pkl")
    notdict = tmp_path / "list.pkl"
    notdict.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="not a FLAME model"):
        load_flame_file(notdict)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_FLAME",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_flame_file(path)
    assert not (tmp_path / "PWNED_FLAME").exists()


def test_chumpy_style_pickle_loads_as_numpy(tmp_path):
    """FLAME 2020 stores arrays as chumpy objects; build such a pickle with a stand-in module, then drop it."""
    mod_pkg, mod_ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set()}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod_ch.Ch = Ch
    mod_pkg.ch = mod_ch
    d = random_flame_dict(n=30)
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = mod_pkg, mod_ch
    try:
        d["v_template"] = Ch(d["v_template"])
        d["shapedirs"] = Ch(d["shapedirs"])
        data = pickle.dumps(d)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(data)
    fl = load_flame_file(path)
    ref = random_flame_dict(n=30)
    np.testing.assert_array_equal(fl.v_template, ref["v_template"])
    np.testing.assert_array_equal(fl.expdirs, ref["shapedirs"][:, :, 300:])


# ---------------------------------------------------------------------------------------------------------------
# Regions and templates
# ---------------------------------------------------------------------------------------------------------------


def test_official_region_files(shared_fixtures, demo):
    lip, upper = load_regions(shared_fixtures / "regions")
    assert (len(lip), len(upper)) == (428, 1501)
    assert lip[0] == 649 and lip[-1] == 3928 and not np.intersect1d(lip, upper).size
    with pytest.raises(ValueError, match="does not match"):
        load_regions(shared_fixtures / "regions", flame=demo)  # FLAME indices do not fit the demo head


def test_demo_regions_and_real_model_needs_regions_dir(demo, tmp_path):
    lip, upper = load_regions(None, demo)
    assert len(lip) > 50 and len(upper) > 200 and not np.intersect1d(lip, upper).size
    fl = flame_from_dict(random_flame_dict(), "generic_model.pkl")
    with pytest.raises(ValueError, match="--regions-dir"):
        load_regions(None, fl)
    bad = tmp_path / "r"
    bad.mkdir()
    (bad / "lve.txt").write_text("1,2,x")
    (bad / "fdd.txt").write_text("3,4")
    with pytest.raises(ValueError, match="comma-separated"):
        load_regions(bad)
    (bad / "lve.txt").write_text("5, 1,2\n")
    np.testing.assert_array_equal(read_region_file(bad / "lve.txt"), [1, 2, 5])


def test_official_templates_load_safely(shared_fixtures):
    table = load_templates(shared_fixtures / "flame" / "templates_mead_param.pkl")
    assert len(table) == 47 and list(table)[:2] == ["M003", "M005"]
    assert table["M003"].shape == (300,) and table["M003"].dtype == np.float64 and np.abs(table["M003"]).max() > 0
