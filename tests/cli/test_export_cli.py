"""`probtalk3d export`: files produced, the result line, format inference, and bad inputs (one line, exit 1, nothing
written)."""

from __future__ import annotations

import json

import numpy as np
import pygltflib
import pytest


@pytest.fixture()
def clip(tmp_path):
    rng = np.random.default_rng(0)
    p = np.zeros((1, 6, 403))
    p[0, :, 300:350] = rng.normal(size=(6, 50))
    p[0, :, 400] = 0.2
    src = tmp_path / "clip.npy"
    np.save(src, p)
    return src


def _listing(folder):
    return sorted(q.name for q in folder.iterdir())


def test_glb_with_audio(cli, tmp_path, clip):
    (tmp_path / "speech.wav").write_bytes(b"RIFF")
    out = tmp_path / "anim" / "speech.glb"
    r = cli("export", clip, "--out", out, "--flame-model", "demo", "--audio", tmp_path / "speech.wav")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote {out} (glb, flame-rig, exact, 6 frames at 25 fps, 59 morph targets")
    assert "speech.json" in r.stdout and "pair with audio" in r.stdout
    assert _listing(out.parent) == ["speech.glb", "speech.json"]
    side = json.loads((out.parent / "speech.json").read_text())
    assert side["audio"] == "../speech.wav" and side["kind"] == "probtalk3d-export" and side["output"] == "speech.glb"
    g = pygltflib.GLTF2().load(str(out))
    assert g.asset.extras["audio_name"] == "speech.wav" and g.asset.extras["fps"] == 25.0


@pytest.mark.parametrize("name,fmt,expect", [("a.gltf", None, "gltf"), ("a.csv", None, "csv"),
                                             ("seq", None, "obj-seq"), ("b.glb", "glb", "glb")])
def test_format_from_suffix(cli, tmp_path, clip, name, fmt, expect):
    args = ["--format", fmt] if fmt else []
    r = cli("export", clip, "--out", tmp_path / name, "--flame-model", "demo", *args)
    assert r.exit_code == 0, r.output
    assert f"({expect}" in r.stdout
    assert (tmp_path / name).exists() and (tmp_path / f"{name.split('.')[0]}.json").is_file()


def test_csv_needs_no_flame_model(cli, tmp_path, clip, monkeypatch):
    monkeypatch.setenv("PROBTALK3D_FLAME_MODEL", str(tmp_path / "missing.pkl"))  # would fail if it were loaded
    r = cli("export", clip, "--out", tmp_path / "c.csv", "--fps", "30")
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[2].startswith("1,0.0333333333,")


@pytest.mark.parametrize("args,message", [
    (["--out", "{t}/x.glb", "--format", "gltf"], "does not match"),
    (["--out", "{t}/x.abc"], "cannot tell the export format"),
    (["--out", "{t}/x.glb", "--format", "fbx"], "unknown --format"),
    (["--out", "{t}/x.glb", "--shape", "M003"], "--shape 'M003' is not valid"),
    (["--out", "{t}/x.glb", "--fps", "0"], "--fps must be a positive number"),
    (["--out", "{t}/x.glb", "--audio", "{t}/none.wav"], "none.wav does not exist"),
    (["--out", "{t}/x.glb", "--flame-model", "{t}/none.pkl"], "none.pkl"),
])
def test_bad_options(cli, tmp_path, clip, args, message):
    args = [a.format(t=tmp_path) for a in args]
    extra = [] if "--flame-model" in args else ["--flame-model", "demo"]
    r = cli("export", clip, *args, *extra)
    assert r.exit_code == 1, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _listing(tmp_path) == ["clip.npy"]


def test_bad_inputs(cli, tmp_path):
    np.save(tmp_path / "verts.npy", np.zeros((3, 4999, 3), dtype=np.float32))
    np.save(tmp_path / "odd.npy", np.zeros((3, 7)))
    np.save(tmp_path / "few.npy", np.zeros((3, 10, 3), dtype=np.float32))
    cases = [
        (["verts.npy", "--out", "v.csv"], "CSV needs params"),
        (["odd.npy", "--out", "o.glb", "--flame-model", "demo"], "expected [1, T, 403] params"),
        (["missing.npy", "--out", "m.glb", "--flame-model", "demo"], "does not exist"),
        (["few.npy", "--out", "f.glb", "--flame-model", "demo"], "has 10 vertices"),
        (["verts.npy", "--out", "v.glb", "--flame-model", "demo", "--shape", "zero"], "does not apply to vertex"),
    ]
    for args, message in cases:
        r = cli("export", tmp_path / args[0], *[str(tmp_path / a) if a.endswith((".csv", ".glb")) else a
                                                 for a in args[1:]])
        assert r.exit_code == 1, (args, r.output)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _listing(tmp_path) == ["few.npy", "odd.npy", "verts.npy"]
