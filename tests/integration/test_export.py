"""`export`: glTF/GLB files are read back with pygltflib and their vertices are rebuilt here in numpy from the file alone
(morph targets, then skinning with the stored joints, inverse bind matrices and animated jaw), then compared with the
FLAME converter; CSV and OBJ sequences are read back too.

Animation length convention checked below: keyframe i sits at i / 25 s, so the last one is at (T - 1) / 25 s; the
clip (and its audio) lasts T / 25 s, the last frame being held for one frame time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch

from probtalk3d_cli.export import (
    axis_angle_to_quaternion,
    export,
    infer_format,
    skin_attributes,
)
from probtalk3d_cli.flame import JAW, FlameConverter, load_flame

T = 20
FPS = 25.0
TOL = 1e-5  # metres


# --------------------------------------------------------------------------------------------------------
# Reading glTF back (independent of probtalk3d_cli.export)
# --------------------------------------------------------------------------------------------------------


def load_gltf(path):
    g = pygltflib.GLTF2().load(str(path))
    g.convert_buffers(pygltflib.BufferFormat.BINARYBLOB)  # data URI (.gltf) -> blob; GLB already has one
    return g, g.binary_blob()


def accessor(g, blob, index):
    a = g.accessors[index]
    bv = g.bufferViews[a.bufferView]
    dtype = {5126: "<f4", 5121: "u1", 5123: "<u2", 5125: "<u4"}[a.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a.type]
    offset = bv.byteOffset + (a.byteOffset or 0)
    assert offset % 4 == 0 and offset + a.count * width * np.dtype(dtype).itemsize <= bv.byteOffset + bv.byteLength
    return np.frombuffer(blob, dtype, count=a.count * width, offset=offset).reshape(a.count, width)


def quat_to_matrix(q):
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def channels(g):
    anim = g.animations[0]
    return {(c.target.node, c.target.path): anim.samplers[c.sampler] for c in anim.channels}


def reconstruct(g, blob, ignore=()):
    """Vertices [T, V, 3] at the keyframes, from the glTF data only (glTF 2.0: morph targets, then skinning)."""
    prim = g.meshes[0].primitives[0]
    base = accessor(g, blob, prim.attributes.POSITION).astype(np.float64)
    targets = np.stack([accessor(g, blob, t["POSITION"]) for t in prim.targets]).astype(np.float64)
    ch = {k: v for k, v in channels(g).items() if k[1] not in ignore}
    weights = accessor(g, blob, ch[(0, "weights")].output).reshape(-1, len(targets)).astype(np.float64)
    morphed = base[None] + np.einsum("tk,kvc->tvc", weights, targets)
    if g.nodes[0].skin is None:
        return morphed
    skin = g.skins[g.nodes[0].skin]
    ibm = accessor(g, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    joints = accessor(g, blob, prim.attributes.JOINTS_0).astype(np.int64)
    wts = accessor(g, blob, prim.attributes.WEIGHTS_0).astype(np.float64)
    parent = {c: i for i, n in enumerate(g.nodes) for c in (n.children or [])}
    out = np.empty_like(morphed)
    rows = np.arange(len(base))[:, None]
    for t in range(len(morphed)):
        cache = {}

        def world(i):
            if i not in cache:
                n = g.nodes[i]
                tr = np.array(n.translation or [0, 0, 0], dtype=np.float64)
                q = np.array(n.rotation or [0, 0, 0, 1], dtype=np.float64)
                if (i, "translation") in ch:
                    tr = accessor(g, blob, ch[(i, "translation")].output)[t].astype(np.float64)
                if (i, "rotation") in ch:
                    q = accessor(g, blob, ch[(i, "rotation")].output)[t].astype(np.float64)
                m = np.eye(4)
                m[:3, :3] = quat_to_matrix(q)
                m[:3, 3] = tr
                cache[i] = world(parent[i]) @ m if i in parent else m
            return cache[i]

        jm = np.stack([world(j) @ ibm[k] for k, j in enumerate(skin.joints)])  # [J, 4, 4] joint matrices
        ph = np.concatenate([morphed[t], np.ones((len(base), 1))], 1)  # homogeneous [V, 4]
        moved = np.einsum("jab,vb->vja", jm, ph)[..., :3]  # [V, J, 3]: every joint's transform of every vertex
        out[t] = np.einsum("vi,vic->vc", wts, moved[rows, joints])
    return out


# --------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flame():
    return load_flame("demo")


@pytest.fixture(scope="module")
def conv(flame):
    return FlameConverter(flame, dtype=torch.float64)


@pytest.fixture(scope="module")
def real_like(flame):
    """The demo head with two features of real FLAME it lacks: a jaw joint regressed from vertices that expressions
    (and identity) move, and vertices with 5 skinning influences."""
    jr = flame.J_regressor.copy()
    jaw_v = np.flatnonzero(flame.weights[:, JAW] > 0.5)
    jr[JAW] = 0.0
    jr[JAW, jaw_v] = 1.0 / len(jaw_v)
    w = flame.weights.copy()
    five = np.flatnonzero((w[:, JAW] > 0.05) & (w[:, JAW] < 0.95))[:40]
    w[five] += np.array([0.01, 0.02, 0.0, 0.005, 0.015])
    w[five, JAW] += 0.001
    w /= w.sum(1, keepdims=True)
    assert ((w > 0).sum(1) == 5).sum() == len(five) > 0
    return dataclasses.replace(flame, J_regressor=jr, weights=w, source="real-like")


def make_params(seed=0, frames=T, wide=True):
    rng = np.random.default_rng(seed)
    p = np.zeros((1, frames, 403))
    p[0, :, :300] = rng.normal(size=300) * 0.5  # constant identity, as in the official files
    p[0, :, 300:360 if wide else 350] = rng.normal(size=(frames, 60 if wide else 50))
    p[0, :, 307] = 0.0  # an unused component: dropped from the targets
    p[0, :, 400] = np.abs(rng.normal(size=frames)) * 0.3
    p[0, :, 401:] = rng.normal(size=(frames, 2)) * 0.05
    return p


# --------------------------------------------------------------------------------------------------------
# glTF / GLB
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
def test_params_rig_is_exact_and_well_formed(tmp_path, flame, conv, fmt):
    p = make_params()
    src = tmp_path / "clip.npy"
    np.save(src, p)
    out = tmp_path / f"clip_export.{fmt}"
    res = export(src, out, flame)
    kept = [k for k in range(60) if k != 7]
    assert res.format == fmt and res.mode == "flame-rig" and res.exact and res.kept_expression == kept
    assert res.morph_targets == len(kept) + 9 and res.frames == T and res.bytes == out.stat().st_size

    g, blob = load_gltf(out)
    if fmt == "glb":
        assert out.read_bytes()[:4] == b"glTF"
    else:
        assert json.loads(out.read_text())["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    assert len(g.buffers) == 1 and g.buffers[0].byteLength == len(blob)
    prim = g.meshes[0].primitives[0]
    n, f = flame.num_vertices, len(flame.faces)
    pos = g.accessors[prim.attributes.POSITION]
    assert (pos.count, pos.type, pos.componentType) == (n, "VEC3", 5126)
    base = accessor(g, blob, prim.attributes.POSITION)
    np.testing.assert_array_equal(pos.min, base.min(0))
    np.testing.assert_array_equal(pos.max, base.max(0))
    np.testing.assert_allclose(np.linalg.norm(accessor(g, blob, prim.attributes.NORMAL), axis=1), 1.0, atol=1e-6)
    assert g.accessors[prim.indices].count == 3 * f
    np.testing.assert_array_equal(accessor(g, blob, prim.indices).reshape(-1, 3), flame.faces)
    jts = g.accessors[prim.attributes.JOINTS_0]
    assert (jts.count, jts.type, jts.componentType) == (n, "VEC4", 5121)
    w = accessor(g, blob, prim.attributes.WEIGHTS_0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w >= 0).all() and accessor(g, blob, prim.attributes.JOINTS_0).max() < 5
    assert len(prim.targets) == len(kept) + 9
    assert all(g.accessors[t["POSITION"]].count == n for t in prim.targets)
    names = g.meshes[0].extras["targetNames"]
    assert names[:3] == ["exp_0", "exp_1", "exp_2"] and "exp_7" not in names and names[len(kept) - 1] == "exp_59"
    assert names[len(kept):] == [f"jaw_pose_{a}{b}" for a in range(3) for b in range(3)]
    assert [nd.name for nd in g.nodes] == ["face", "root", "neck", "jaw", "left_eye", "right_eye"]
    assert g.skins[0].joints == [1, 2, 3, 4, 5] and g.accessors[g.skins[0].inverseBindMatrices].count == 5

    ch = channels(g)
    assert set(ch) == {(0, "weights"), (3, "rotation"), (3, "translation")}
    times = accessor(g, blob, ch[(0, "weights")].input)[:, 0]
    np.testing.assert_allclose(times, np.arange(T) / FPS, rtol=1e-7)
    tacc = g.accessors[ch[(0, "weights")].input]
    assert tacc.count == T and tacc.min == [0.0] and abs(tacc.max[0] - (T - 1) / FPS) < 1e-7
    assert g.accessors[ch[(0, "weights")].output].count == T * (len(kept) + 9)
    assert g.accessors[ch[(3, "rotation")].output].count == T and g.accessors[ch[(3, "rotation")].output].type == "VEC4"
    assert g.accessors[ch[(3, "translation")].output].count == T
    # the morph weights are the coefficients themselves (first targets = kept expression components)
    wts = accessor(g, blob, ch[(0, "weights")].output).reshape(T, -1)
    np.testing.assert_allclose(wts[:, :len(kept)], p[0, :, 300:360][:, kept], rtol=1e-6, atol=1e-7)

    extras = g.asset.extras
    assert extras["fps"] == FPS and extras["source"] == "clip.npy" and extras["kept_expression"] == kept
    assert extras["probtalk3d_version"] and extras["frames"] == T and extras["duration_s"] == T / FPS
    assert g.nodes[0].extras["kept_expression"] == kept
    side = json.loads((tmp_path / "clip_export.json").read_text())
    assert side["mode"] == "flame-rig" and side["exact"] is True and side["morph_targets"] == len(kept) + 9

    verts = reconstruct(g, blob)
    ref = conv.vertices(p[0, :, 300:400], p[0, :, 400:], p[0, 0, :300])  # --shape keep (default for params)
    err = np.abs(verts - ref).max()
    assert err <= TOL, err
    assert np.abs(ref[1:] - ref[0]).max() > 1e-3  # the clip really moves (mouth opens by millimetres)


def test_rig_with_expression_dependent_jaw_joint_and_five_influences(tmp_path, real_like):
    """Real FLAME regresses the jaw joint from vertices the expression moves: the jaw translation channel makes the
    glTF exact; dropping it leaves a visible error. Five influences per vertex are merged without loss."""
    conv = FlameConverter(real_like, dtype=torch.float64)
    p = make_params(seed=1)
    p[0, :, :300] = np.random.default_rng(5).normal(size=(T, 300)) * 0.3  # identity varying per frame
    np.save(tmp_path / "clip.npy", p)
    res = export(tmp_path / "clip.npy", tmp_path / "rig.glb", real_like)
    assert res.exact and any("5 skinning influences" in n for n in res.notes)
    g, blob = load_gltf(tmp_path / "rig.glb")
    names = g.meshes[0].extras["targetNames"]
    assert sum(n.startswith("shape_") for n in names) == 300 and res.morph_targets == 59 + 9 + 300
    ref = conv.vertices(p[0, :, 300:400], p[0, :, 400:], p[0, :, :300])
    assert np.abs(reconstruct(g, blob) - ref).max() <= TOL
    assert np.abs(reconstruct(g, blob, ignore=("translation",)) - ref).max() > 10 * TOL
    # zero identity: --shape zero
    res = export(tmp_path / "clip.npy", tmp_path / "zero.glb", real_like, shape="zero")
    g, blob = load_gltf(tmp_path / "zero.glb")
    assert res.morph_targets == 59 + 9
    ref = conv.vertices(p[0, :, 300:400], p[0, :, 400:])
    assert np.abs(reconstruct(g, blob) - ref).max() <= TOL


def test_motion_file_rig_is_exact(tmp_path, flame, conv):
    rng = np.random.default_rng(2)
    motion = np.concatenate([rng.normal(size=(T, 50)), np.abs(rng.normal(size=(T, 3))) * 0.1], 1).astype(np.float32)
    np.save(tmp_path / "motion.npy", motion)
    res = export(tmp_path / "motion.npy", tmp_path / "motion.glb", flame)
    assert res.kind == "motion" and res.kept_expression == list(range(50)) and res.morph_targets == 59
    g, blob = load_gltf(tmp_path / "motion.glb")
    assert np.abs(reconstruct(g, blob) - conv.vertices(motion[:, :50], motion[:, 50:])).max() <= TOL
    # an identity from a file
    ident = np.linspace(-1, 1, 300)
    np.save(tmp_path / "identity.npy", ident)
    export(tmp_path / "motion.npy", tmp_path / "motion_id.gltf", flame, shape=str(tmp_path / "identity.npy"))
    g, blob = load_gltf(tmp_path / "motion_id.gltf")
    assert np.abs(reconstruct(g, blob) - conv.vertices(motion[:, :50], motion[:, 50:], ident)).max() <= TOL


def test_vertex_file_falls_back_to_per_frame_targets(tmp_path, flame, conv):
    p = make_params(seed=3, frames=8)
    verts = conv.vertices(p[0, :, 300:400], p[0, :, 400:], p[0, 0, :300]).astype(np.float32)
    np.save(tmp_path / "verts.npy", verts)
    res = export(tmp_path / "verts.npy", tmp_path / "verts.glb", flame)
    assert res.kind == "vertices" and res.mode == "per-frame" and res.exact and res.morph_targets == 8
    g, blob = load_gltf(tmp_path / "verts.glb")
    assert g.nodes[0].skin is None and not g.skins and len(g.nodes) == 1
    ch = channels(g)
    assert set(ch) == {(0, "weights")} and ch[(0, "weights")].interpolation == "STEP"
    np.testing.assert_array_equal(accessor(g, blob, ch[(0, "weights")].output).reshape(8, 8), np.eye(8))
    np.testing.assert_allclose(accessor(g, blob, ch[(0, "weights")].input)[:, 0], np.arange(8) / FPS, rtol=1e-7)
    assert np.abs(reconstruct(g, blob) - verts).max() <= 1e-7
    side = json.loads((tmp_path / "verts.json").read_text())
    assert side["mode"] == "per-frame" and side["exact"] is True and "no FLAME parameters" in side["notes"][0]
    with pytest.raises(ValueError, match="does not apply to vertex files"):
        export(tmp_path / "verts.npy", tmp_path / "v2.glb", flame, shape="zero")


def test_trimesh_loads_the_glb(tmp_path, flame):
    trimesh = pytest.importorskip("trimesh")
    np.save(tmp_path / "clip.npy", make_params(frames=5))
    export(tmp_path / "clip.npy", tmp_path / "clip_export.glb", flame)
    scene = trimesh.load(tmp_path / "clip_export.glb", force="scene", process=False)
    (mesh,) = scene.geometry.values()
    assert mesh.vertices.shape == (flame.num_vertices, 3) and mesh.faces.shape == flame.faces.shape


VALIDATOR_MODULES = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules"  # `make validator`


def _node_env() -> dict:
    paths = [str(VALIDATOR_MODULES)] + [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    return {**os.environ, "NODE_PATH": os.pathsep.join(paths)}


def _node_validator():
    node = shutil.which("node")
    if node is None:
        return None
    r = subprocess.run([node, "-e", "require.resolve('gltf-validator')"], capture_output=True, timeout=30,
                       env=_node_env())
    return node if r.returncode == 0 else None


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
def test_khronos_validator_reports_no_issues(tmp_path, flame, fmt):
    """Runs when Node.js can `require('gltf-validator')` (`make test` installs it into .venv/node; or NODE_PATH);
    skipped otherwise."""
    node = _node_validator()
    if node is None:
        pytest.skip("Node.js with the gltf-validator npm package is not available")
    np.save(tmp_path / "clip.npy", make_params(frames=6))
    np.save(tmp_path / "verts.npy", np.random.default_rng(0).normal(size=(3, flame.num_vertices, 3)).astype("f4"))
    script = ("const v=require('gltf-validator');const fs=require('fs');const p=process.argv[1];"
              "v.validateBytes(new Uint8Array(fs.readFileSync(p)),{maxIssues:20}).then(r=>{"
              "console.log(JSON.stringify(r.issues))}).catch(e=>{console.error(e);process.exit(2)})")
    for name in ("clip", "verts"):
        out = tmp_path / f"{name}_x.{fmt}"
        export(tmp_path / f"{name}.npy", out, flame)
        r = subprocess.run([node, "-e", script, str(out)], capture_output=True, text=True, timeout=120,
                           env=_node_env())
        assert r.returncode == 0, r.stderr
        issues = json.loads(r.stdout)
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


# --------------------------------------------------------------------------------------------------------
# CSV, OBJ sequences
# --------------------------------------------------------------------------------------------------------


def read_csv(path):
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(x) for x in line.split(",")] for line in lines[1:]])


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    motion = np.concatenate([rng.normal(size=(T, 50)), rng.normal(size=(T, 3)) * 0.1], 1).astype(np.float32)
    np.save(tmp_path / "motion.npy", motion)
    res = export(tmp_path / "motion.npy", tmp_path / "motion.csv")  # no FLAME model needed
    assert res.format == "csv" and res.exact and res.frames == T
    header, rows = read_csv(tmp_path / "motion.csv")
    assert header == ["frame", "time"] + [f"exp_{i}" for i in range(50)] + ["jaw_x", "jaw_y", "jaw_z"]
    assert rows.shape == (T, 55)
    np.testing.assert_array_equal(rows[:, 0], np.arange(T))
    np.testing.assert_array_equal(rows[:, 1], np.arange(T) / FPS)
    np.testing.assert_array_equal(rows[:, 2:].astype(np.float32), motion)  # float32 values round-trip exactly
    # float64 params: denormalised exp + jaw (identity is not part of the CSV)
    p = make_params(wide=False)
    np.save(tmp_path / "params.npy", p)
    export(tmp_path / "params.npy", tmp_path / "params.csv")
    header, rows = read_csv(tmp_path / "params.csv")
    assert len(header) == 55
    np.testing.assert_allclose(rows[:, 2:52], p[0, :, 300:350], rtol=2 ** -24)
    np.testing.assert_allclose(rows[:, 52:], p[0, :, 400:], rtol=2 ** -24)
    # params that use components 50..99 keep them (100 columns) rather than losing them
    p = make_params(wide=True)
    np.save(tmp_path / "wide.npy", p)
    res = export(tmp_path / "wide.npy", tmp_path / "wide.csv")
    header, rows = read_csv(tmp_path / "wide.csv")
    assert header[2 + 99] == "exp_99" and rows.shape == (T, 105) and res.kept_expression == list(range(100))
    np.testing.assert_allclose(rows[:, 2:102], p[0, :, 300:400], rtol=2 ** -24)


def test_obj_sequence(tmp_path, flame, conv):
    p = make_params(frames=4)
    np.save(tmp_path / "clip.npy", p)
    out = tmp_path / "frames"
    res = export(tmp_path / "clip.npy", out, flame)
    assert res.format == "obj-seq" and res.frames == 4
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"frame_{i:06d}.obj" for i in range(4)]
    ref = conv.vertices(p[0, :, 300:400], p[0, :, 400:], p[0, 0, :300])
    for i, f in enumerate(files):
        lines = f.read_text().splitlines()
        v = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
        faces = np.array([[int(x) for x in line.split()[1:]] for line in lines if line.startswith("f ")])
        np.testing.assert_allclose(v, ref[i], atol=6e-7)  # 6 decimals in metres
        np.testing.assert_array_equal(faces - 1, flame.faces)
    assert json.loads((tmp_path / "frames.json").read_text())["frames"] == 4
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    # a second export replaces the earlier sequence; a folder holding other files is refused
    export(tmp_path / "clip.npy", out, flame, shape="zero")
    assert len(list(out.iterdir())) == 4
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="already holds other files"):
        export(tmp_path / "clip.npy", other, flame)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["clip.npy", "frames", "frames.json", "mine"]


# --------------------------------------------------------------------------------------------------------
# Audio pairing, sidecars, helpers
# --------------------------------------------------------------------------------------------------------


def test_audio_from_input_sidecar_and_flag(tmp_path, flame):
    gen = tmp_path / "gen"
    gen.mkdir()
    np.save(gen / "speech_M003.npy", make_params(frames=5))
    (gen / "speech.wav").write_bytes(b"RIFF")
    (gen / "speech_M003.json").write_text(json.dumps({"audio": "speech.wav"}))
    out = tmp_path / "exports" / "speech.glb"
    res = export(gen / "speech_M003.npy", out, flame)
    assert res.audio == gen / "speech.wav"
    side = json.loads((tmp_path / "exports" / "speech.json").read_text())
    assert side["audio"] == os.path.join("..", "gen", "speech.wav") and side["audio_name"] == "speech.wav"
    g, _ = load_gltf(out)
    assert g.asset.extras["audio_name"] == "speech.wav"
    (tmp_path / "other.wav").write_bytes(b"RIFF")
    res = export(gen / "speech_M003.npy", out, flame, audio=tmp_path / "other.wav")
    assert json.loads((tmp_path / "exports" / "speech.json").read_text())["audio"] == os.path.join("..", "other.wav")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        export(gen / "speech_M003.npy", out, flame, audio=tmp_path / "missing.wav")


def test_never_overwrites_the_inputs_sidecar(tmp_path, flame):
    np.save(tmp_path / "clip.npy", make_params(frames=3))
    (tmp_path / "clip.json").write_text(json.dumps({"audio": "a.wav", "seed": 1}))
    with pytest.raises(ValueError, match="not an export sidecar"):
        export(tmp_path / "clip.npy", tmp_path / "clip.glb", flame)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["clip.json", "clip.npy"]
    assert json.loads((tmp_path / "clip.json").read_text())["seed"] == 1


def test_infer_format():
    assert infer_format("a.glb") == "glb" and infer_format("a.GLTF") == "gltf" and infer_format("a.csv") == "csv"
    assert infer_format("frames") == "obj-seq" and infer_format("frames", "obj-seq") == "obj-seq"
    assert infer_format("a.glb", "glb") == "glb"
    for out, fmt, msg in [("a.glb", "gltf", "does not match"), ("a.csv", "obj-seq", "folder name"),
                          ("a.xyz", None, "cannot tell"), ("a.glb", "fbx", "unknown --format")]:
        with pytest.raises(ValueError, match=msg):
            infer_format(out, fmt)


def test_skin_attributes_merge_fifth_influence_into_parent():
    parents = np.array([-1, 0, 1, 1, 1])
    w = np.array([[0.1, 0.2, 0.4, 0.05, 0.25],  # 5 influences: left eye (0.05) -> neck; ties: lower joint first
                  [0.0, 0.3, 0.7, 0.0, 0.0],
                  [0.02, 0.3, 0.6, 0.04, 0.04]])  # root is the smallest non-jaw -> neck (the root has no parent)
    joints, weights, merged = skin_attributes(w, parents)
    assert merged == 2
    np.testing.assert_array_equal(joints, [[2, 1, 4, 0], [2, 1, 0, 0], [2, 1, 3, 4]])
    np.testing.assert_allclose(weights, [[0.4, 0.25, 0.25, 0.1], [0.7, 0.3, 0, 0], [0.6, 0.32, 0.04, 0.04]],
                               rtol=1e-7)
    with pytest.raises(ValueError, match="negative"):
        skin_attributes(-w, parents)


def test_axis_angle_to_quaternion():
    s = np.sqrt(0.5)
    q = axis_angle_to_quaternion(np.array([[0.0, 0.0, 0.0], [np.pi / 2, 0, 0], [0, 0, -np.pi / 2]]))
    np.testing.assert_allclose(q, [[0, 0, 0, 1], [s, 0, 0, s], [0, 0, -s, s]], atol=1e-12)
    # 350 degrees then 10 degrees about x: same rotations, signs chosen for the short slerp
    q = axis_angle_to_quaternion(np.array([[np.deg2rad(350), 0, 0], [np.deg2rad(10), 0, 0]]))
    assert np.isclose(np.dot(q[0], q[1]), np.cos(np.deg2rad(10)))  # 20 degrees apart, not 340


def test_rotation_matrices_match_the_converter():
    from probtalk3d_cli.export import rotation_matrices
    from probtalk3d_cli.flame import rodrigues

    aa = np.concatenate([np.random.default_rng(6).normal(size=(50, 3)), np.zeros((1, 3)), np.full((1, 3), 1e-5)])
    np.testing.assert_allclose(rotation_matrices(aa), rodrigues(torch.as_tensor(aa)).numpy(), atol=1e-15)
