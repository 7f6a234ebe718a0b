"""`probtalk3d to-vertices`: outputs, naming, formats, shape modes, motion transfer, resumability, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probtalk3d_cli.flame import FlameConverter, load_flame, load_templates


@pytest.fixture(scope="module")
def conv():
    return FlameConverter(load_flame("demo"), dtype=torch.float64)


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    params = np.zeros((1, 6, 403))
    params[0, :, :300] = rng.normal(size=300)  # a constant identity, as in the official files
    params[0, :, 300:400] = rng.normal(size=(6, 100)) * 0.5
    params[0, :, 400:] = rng.normal(size=(6, 3)) * 0.1
    np.save(src / "clip_params.npy", params)
    motion = np.concatenate([rng.normal(size=(5, 50)), rng.normal(size=(5, 3)) * 0.1], 1).astype(np.float32)
    np.save(src / "clip_motion.npy", motion)
    return src, params, motion


def test_params_and_motion_to_npy(cli, tmp_path, inputs, conv):
    src, params, motion = inputs
    out = tmp_path / "out"
    r = cli("to-vertices", src / "clip_params.npy", src / "clip_motion.npy", "--out", out, "--flame-model", "demo")
    assert r.exit_code == 0, r.output
    assert "wrote 2 file(s)" in r.stdout
    v = np.load(out / "clip_params_verts.npy")
    assert v.dtype == np.float32 and v.shape == (6, conv.num_vertices, 3)
    ref = conv.vertices(params[0, :, 300:400], params[0, :, 400:], params[0, 0, :300])  # --shape keep (default)
    np.testing.assert_allclose(v, ref, atol=2e-6)
    m = np.load(out / "clip_motion_verts.npy")
    np.testing.assert_allclose(m, conv.vertices(motion[:, :50], motion[:, 50:]), atol=2e-6)
    # rerun on the folder: both outputs are complete, nothing is redone
    r = cli("to-vertices", src, "--out", out, "--flame-model", "demo")
    assert r.exit_code == 0 and "skipped 2" in r.stdout and "wrote 0 file(s)" in r.stdout
    # our own outputs in a folder are not taken as inputs
    r = cli("to-vertices", out, "--out", tmp_path / "again", "--flame-model", "demo")
    assert r.exit_code == 1 and "no .npy animation files" in r.stderr


def test_shape_modes(cli, tmp_path, inputs, conv, shared_fixtures):
    src, params, _ = inputs
    f = src / "clip_params.npy"

    def run(*extra):
        out = tmp_path / ("o" + "_".join(str(e).replace("/", "") for e in extra))[-60:]
        r = cli("to-vertices", f, "--out", out, "--flame-model", "demo", *extra)
        assert r.exit_code == 0, r.output
        return np.load(out / "clip_params_verts.npy")

    zero = run("--shape", "zero")
    np.testing.assert_allclose(zero, conv.vertices(params[0, :, 300:400], params[0, :, 400:]), atol=2e-6)
    vec = np.linspace(-1, 1, 300)
    np.save(tmp_path / "identity.npy", vec)
    np.testing.assert_allclose(run("--shape", tmp_path / "identity.npy"),
                               conv.vertices(params[0, :, 300:400], params[0, :, 400:], vec), atol=2e-6)
    templates = shared_fixtures / "flame" / "templates_mead_param.pkl"
    m003 = load_templates(templates)["M003"]
    np.testing.assert_allclose(run("--shape", "M003", "--templates", templates),
                               conv.vertices(params[0, :, 300:400], params[0, :, 400:], m003), atol=2e-6)
    r = cli("to-vertices", f, "--out", tmp_path / "x", "--flame-model", "demo", "--shape", "M003")
    assert r.exit_code == 1 and "--templates" in r.stderr
    r = cli("to-vertices", f, "--out", tmp_path / "x", "--flame-model", "demo", "--shape", "Z999", "--templates",
            templates)
    assert r.exit_code == 1 and "Z999" in r.stderr


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_mesh_sequences(cli, tmp_path, inputs, conv, fmt):
    import trimesh

    src, _, motion = inputs
    out = tmp_path / "meshes"
    r = cli("to-vertices", src / "clip_motion.npy", "--out", out, "--flame-model", "demo", "--format", fmt)
    assert r.exit_code == 0, r.output
    files = sorted((out / "clip_motion").iterdir())
    assert [p.name for p in files] == [f"frame_{i:06d}.{fmt}" for i in range(5)]
    mesh = trimesh.load(files[3], process=False, maintain_order=True)
    assert len(mesh.vertices) == conv.num_vertices and len(mesh.faces) == len(conv.faces)
    np.testing.assert_allclose(mesh.vertices, conv.vertices(motion[3:4, :50], motion[3:4, 50:])[0], atol=2e-6)
    np.testing.assert_array_equal(mesh.faces, conv.faces)
    r = cli("to-vertices", src / "clip_motion.npy", "--out", out, "--flame-model", "demo", "--format", fmt)
    assert r.exit_code == 0 and "skipped 1" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["clip_motion"]


def test_target_mesh_transfer(cli, tmp_path, inputs, conv):
    from probtalk3d_cli.demo_head import obj_text

    src, params, _ = inputs
    target = conv.flame.v_template * np.array([1.1, 0.95, 1.0]) + 0.01
    (tmp_path / "face.obj").write_text(obj_text(target, conv.faces))
    np.save(tmp_path / "face.npy", target)
    exp, jaw = params[0, :, 300:400], params[0, :, 400:]
    expected = target + conv.vertices(exp, jaw) - conv.flame.v_template
    for name in ("face.obj", "face.npy"):
        out = tmp_path / f"out_{name}"
        r = cli("to-vertices", src / "clip_params.npy", "--out", out, "--flame-model", "demo", "--target-mesh",
                tmp_path / name)
        assert r.exit_code == 0, r.output
        np.testing.assert_allclose(np.load(out / "clip_params_verts.npy"), expected, atol=1e-5)
    np.save(tmp_path / "small.npy", target[:10])
    r = cli("to-vertices", src / "clip_params.npy", "--out", tmp_path / "bad", "--flame-model", "demo",
            "--target-mesh", tmp_path / "small.npy")
    assert r.exit_code == 1 and "vertices" in r.stderr and not (tmp_path / "bad").exists()
    r = cli("to-vertices", src / "clip_params.npy", "--out", tmp_path / "bad", "--flame-model", "demo",
            "--target-mesh", tmp_path / "face.npy", "--shape", "zero")
    assert r.exit_code == 1 and "--shape" in r.stderr


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 52), dtype=np.float32), "expected [1, T, 403] params, [T, 53] motion"),
    (np.full((1, 4, 403), np.nan), "NaN"),
    (np.zeros((4, 10, 3), dtype=np.float32), "already holds vertices"),
    (np.zeros((0, 53), dtype=np.float32), "no frames"),
    (np.zeros((3, 53), dtype=np.int64), "float32 or float64"),
])
def test_bad_inputs_fail_cleanly_without_outputs(cli, tmp_path, inputs, bad, message):
    src, _, _ = inputs
    np.save(src / "zz_bad.npy", bad)  # sorts after the good files: nothing may be written before it is checked
    out = tmp_path / "out"
    r = cli("to-vertices", src, "--out", out, "--flame-model", "demo")
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "zz_bad.npy" in lines[0] and message in lines[0]
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_flame_model_is_one_clear_line(cli, tmp_path, inputs, monkeypatch):
    src, _, _ = inputs
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", str(tmp_path / "nowhere" / "generic_model.pkl"))
    r = cli("to-vertices", src, "--out", tmp_path / "o")
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "flame.is.tue.mpg.de" in lines[0] and "PROBTALK3D_FLAME_MODEL" in lines[0]
    r = cli("to-vertices", src, "--out", tmp_path / "o", "--format", "gltf", "--flame-model", "demo")
    assert r.exit_code == 1 and "npy, obj or ply" in r.stderr
