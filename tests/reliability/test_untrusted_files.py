"""Untrusted files: a pickle that would run `touch MARKER` is given to every loader that reads a user file; each
refuses it with one error line (exit 1) and the marker never appears.

Loaders covered: checkpoints (torch zip and legacy formats, plain pickles; generate, evaluate, train-pred --prior,
import-official), FLAME .pkl, templates .pkl (plain and legacy-torch, including a nested torch payload),
.npy object arrays (params/motion for to-vertices, render, export, evaluate predictions, --shape FILE.npy,
--target-mesh, DATA/param for training and preprocess vertices), DATA/templates_vert.npz, YAML configs
(--config, a run folder's config.yaml on --resume, --set values).
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from helpers.reliability import Evil, error_line

# (id, words of the refusal, file written by `_make`, command line); {EVIL} is the malicious file, {B}, {DATA},
# {PRED}, {OUT} as in test_bad_input.py
CASES = [
    ("checkpoint-zip", "not allowed to load safely (posix.system)", "evil.pt",
     "generate -m {EVIL} {B}/good.wav -o {OUT}"),
    ("checkpoint-legacy", "not allowed to load safely (posix.system)", "legacy.pt",
     "generate -m {EVIL} {B}/good.wav -o {OUT}"),
    ("checkpoint-plain-pickle", "not allowed to load safely (posix.system)", "plain.pkl",
     "generate -m {EVIL} {B}/good.wav -o {OUT}"),
    ("checkpoint-evaluate", "not allowed to load safely", "evil.pt",
     "evaluate -m {EVIL} --data {DATA} --flame-model demo -o {OUT}"),
    ("checkpoint-prior", "not allowed to load safely", "evil.pt",
     "train-pred --data {DATA} --prior {EVIL} --out {OUT}"),
    ("lightning-import-official", "not checkpoint data (posix.system)", "lightning.ckpt",
     "import-official --stage prior {EVIL} --out {OUT}/p.pt"),
    ("lightning-plain-pickle", "not a readable pytorch checkpoint", "plain.pkl",
     "import-official --stage prior {EVIL} --out {OUT}/p.pt"),
    ("lightning-prior-check", "not checkpoint data (posix.system)", "lightning.ckpt",
     "import-official --stage pred {GOOD_LIGHTNING} --prior {EVIL} --out {OUT}/p.pt"),
    ("flame-pkl", "refusing to load 'posix.system'", "flame.pkl",
     "to-vertices {B}/params.npy --out {OUT} --flame-model {EVIL}"),
    ("flame-pkl-render", "refusing to load 'posix.system'", "flame.pkl",
     "render {B}/params.npy --out {OUT}/x.mp4 --flame-model {EVIL}"),
    ("flame-pkl-export", "refusing to load 'posix.system'", "flame.pkl",
     "export {B}/params.npy --out {OUT}/x.glb --flame-model {EVIL}"),
    ("flame-pkl-evaluate", "refusing to load 'posix.system'", "flame.pkl",
     "evaluate -m {PRED} --data {DATA} --flame-model {EVIL} -o {OUT}"),
    ("flame-pkl-preprocess-vertices", "refusing to load 'posix.system'", "flame.pkl",
     "preprocess vertices --data {DATA} --flame-model {EVIL}"),
    ("templates-pkl", "refusing to load 'posix.system'", "templates.pkl",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape M003 --templates {EVIL}"),
    ("templates-legacy-torch", "must hold a dict", "templates_torch.pkl",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape M003 --templates {EVIL}"),
    ("templates-nested-torch-payload", "refusing to load 'posix.system'", "templates_nested.pkl",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape M003 --templates {EVIL}"),
    ("npy-params-to-vertices", "object arrays cannot be loaded", "evil.npy",
     "to-vertices {EVIL} --out {OUT} --flame-model demo"),
    ("npy-params-render", "object arrays cannot be loaded", "evil.npy",
     "render {EVIL} --out {OUT}/x.mp4 --flame-model demo"),
    ("npy-params-export", "object arrays cannot be loaded", "evil.npy",
     "export {EVIL} --out {OUT}/x.csv"),
    ("npy-shape-file", "object arrays cannot be loaded", "evil.npy",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --shape {EVIL}"),
    ("npy-export-shape-file", "object arrays cannot be loaded", "evil.npy",
     "export {B}/params.npy --out {OUT}/x.glb --flame-model demo --shape {EVIL}"),
    ("npy-target-mesh", "object arrays cannot be loaded", "evil.npy",
     "to-vertices {B}/params.npy --out {OUT} --flame-model demo --target-mesh {EVIL}"),
    ("npy-evaluate-predictions", "object arrays cannot be loaded", "predictions",
     "evaluate --predictions {EVIL} --data {DATA} --flame-model demo -o {OUT}"),
    ("npy-training-data", "python objects in dtype", "data_evil",
     "train-prior --data {EVIL} --out {OUT}"),
    ("npy-preprocess-vertices-data", "python objects in dtype", "data_evil",
     "preprocess vertices --data {EVIL} --flame-model demo"),
    ("yaml-config", "python/object/apply:os.system", "evil.yaml",
     "train-prior --data {DATA} --out {OUT} --config {EVIL}"),
    ("yaml-resume-config", "python/object/apply:os.system", "run_evil",
     "train-prior --data {DATA} --out {EVIL} --resume"),
    ("yaml-set-value", "must be a list of numbers", None,
     "train-prior --data {DATA} --out {OUT} --set train_prior.betas={YAML}"),
    ("yaml-set-list-value", "must be a list of numbers", None,
     "render {B}/params.npy --out {OUT}/x.mp4 --flame-model demo --set render.color={YAML}"),
]


def _evil_bytes(marker, protocol=2) -> bytes:
    return pickle.dumps({"model": Evil(marker)}, protocol=protocol)


class _NestedTorchPayload:
    """A legacy-torch-style entry: torch.storage._load_from_bytes(<a torch file holding Evil>)."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


def _make(kind, root, marker, data):
    p = root / kind
    if kind == "evil.pt":
        torch.save({"format": "probtalk3d", "kind": "predictor", "format_version": 1, "config": {},
                    "model": {"w": torch.zeros(2)}, "meta": {"x": Evil(marker)}}, p)
    elif kind == "legacy.pt":
        torch.save({"format": "probtalk3d", "x": Evil(marker)}, p, _use_new_zipfile_serialization=False)
    elif kind == "plain.pkl":
        p.write_bytes(_evil_bytes(marker))
    elif kind == "lightning.ckpt":
        from helpers.official_fake import fake_state_dict, save_lightning_ckpt

        save_lightning_ckpt(p, fake_state_dict("prior"), malicious=marker)
    elif kind == "flame.pkl":
        p.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "f": Evil(marker)}, protocol=2))
    elif kind == "templates.pkl":
        p.write_bytes(pickle.dumps({"M003": Evil(marker)}, protocol=2))
    elif kind == "templates_torch.pkl":
        torch.save({"M003": Evil(marker)}, p, _use_new_zipfile_serialization=False)
    elif kind == "templates_nested.pkl":
        inner = io.BytesIO()
        torch.save({"x": Evil(marker)}, inner, _use_new_zipfile_serialization=False)
        p.write_bytes(pickle.dumps({"M003": _NestedTorchPayload(inner.getvalue())}, protocol=2))
    elif kind == "evil.npy":
        np.save(p, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    elif kind == "predictions":
        p.mkdir()
        from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, parse_key

        key = parse_key(sorted(q.stem for q in (data / "wav").glob("*.wav"))[-1])  # a test clip
        name = f"{key}_{key.subject}_{EMOTIONS[key.emotion]}_{INTENSITIES[key.intensity]}.npy"
        np.save(p / name, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    elif kind == "data_evil":
        import os
        import shutil

        shutil.copytree(data, p, copy_function=os.link)
        victim = sorted((p / "param").glob("*.npy"))[0]
        victim.unlink()
        np.save(victim, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    elif kind == "evil.yaml":
        p.write_text(f'train_prior: !!python/object/apply:os.system ["touch {marker}"]\n')
    elif kind == "run_evil":
        p.mkdir()
        (p / "config.yaml").write_text(f'train_prior:\n  lr: !!python/object/apply:os.system ["touch {marker}"]\n')
        (p / "last.pt").write_bytes(b"")  # a run to resume, so that its config.yaml is read
    return p


@pytest.fixture(scope="module")
def good_lightning(tmp_path_factory):
    from helpers.official_fake import fake_state_dict, save_lightning_ckpt

    p = tmp_path_factory.mktemp("official_good") / "stage2.ckpt"
    save_lightning_ckpt(p, fake_state_dict("pred"))
    return p


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malicious_file_is_refused(case, bad_inputs, good_lightning, cli, tmp_path):
    name, refusal, kind, template = case
    marker = tmp_path / "MARKER"
    evil = _make(kind, tmp_path, marker, bad_inputs.data) if kind else None
    values = {"EVIL": str(evil), "B": str(bad_inputs.root), "DATA": str(bad_inputs.data), "PRED": str(bad_inputs.pred),
              "OUT": str(tmp_path / "out"), "GOOD_LIGHTNING": str(good_lightning),
              "YAML": f"!!python/object/apply:os.system [\"touch {marker}\"]"}
    args = [t.format(**values) for t in template.replace("={YAML}", "=@YAML").split()]
    args = [a.replace("@YAML", values["YAML"]) for a in args]
    r = cli("-q", *args)
    assert r.exit_code == 1, f"{name}: exit {r.exit_code}\n{r.output}"
    line = error_line(r.stderr)
    assert "internal error" not in line and refusal in line.lower(), line
    assert not marker.exists(), f"{name}: the malicious payload ran"
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_library_loaders_refuse_directly(tmp_path, bad_inputs):
    """The same payloads through the Python API (what other programs call)."""
    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.data.vertices_data import load_vertex_templates
    from probtalk3d_cli.flame import load_flame_file, load_templates
    from probtalk3d_cli.io import load_npy
    from probtalk3d_cli.official import load_lightning_checkpoint
    from probtalk3d_cli.safe_pickle import safe_load_pickle

    marker = tmp_path / "MARKER"
    calls = [
        (load_checkpoint, "evil.pt"), (load_checkpoint, "legacy.pt"), (load_checkpoint, "plain.pkl"),
        (load_lightning_checkpoint, "lightning.ckpt"), (load_lightning_checkpoint, "plain.pkl"),
        (load_flame_file, "flame.pkl"), (load_templates, "templates.pkl"), (load_templates, "templates_torch.pkl"),
        (load_templates, "templates_nested.pkl"), (safe_load_pickle, "plain.pkl"), (load_npy, "evil.npy"),
    ]
    for fn, kind in calls:
        p = tmp_path / kind
        if not p.exists():
            _make(kind, tmp_path, marker, bad_inputs.data)
        with pytest.raises(ValueError):
            fn(p)
        assert not marker.exists(), (fn.__name__, kind)
    # DATA/templates_vert.npz with an object array
    d = tmp_path / "npz_data"
    d.mkdir()
    np.savez(d / "templates_vert.npz", subjects=np.array([Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        load_vertex_templates(d)
    # YAML through load_config (files and --set values)
    from probtalk3d_cli.config import ConfigError, load_config

    y = tmp_path / "evil.yaml"
    y.write_text(f'prior: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError):
        load_config([y])
    with pytest.raises(ConfigError):
        load_config([], [f'render.color=!!python/object/apply:os.system ["touch {marker}"]'])
    assert not marker.exists()


def test_the_payload_is_live(tmp_path):
    """Control: plain pickle and torch.load(weights_only=False) do run it, so the tests above can fail."""
    marker = tmp_path / "MARKER"
    pickle.loads(_evil_bytes(marker))
    assert marker.exists()
    marker.unlink()
    torch.load(_make("evil.pt", tmp_path, marker, None), weights_only=False)
    assert marker.exists()
