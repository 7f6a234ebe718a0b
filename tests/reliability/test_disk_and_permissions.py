"""Output folders that cannot be written and a disk that fills up: one error line, exit 1, no file left behind.

Tests run as root here, where chmod does not stop writes, so a read-only folder is simulated by making
`os.access(..., W_OK)` answer False under it (the check every command makes before writing); the real chmod test
runs only as a normal user. A full disk is simulated in-process by making the write call raise ENOSPC.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from helpers.reliability import error_line, has_words, temporaries

WRITERS = [
    ("generate", "generate -m {PRED} {B}/good.wav -o {OUT}"),
    ("to-vertices", "to-vertices {B}/params.npy --out {OUT} --flame-model demo"),
    ("render", "render {B}/params.npy --out {OUT}/x.mp4 --flame-model demo --size 32"),
    ("export", "export {B}/params.npy --out {OUT}/x.glb --flame-model demo"),
    ("export-obj-seq", "export {B}/params.npy --out {OUT}/seq --format obj-seq --flame-model demo"),
    ("train-prior", "train-prior --data {DATA} --out {OUT} --device cpu"),
    ("train-pred", "train-pred --data {DATA} --prior {PRIOR} --out {OUT} --device cpu"),
    ("evaluate", "evaluate -m {PRED} --data {DATA} --flame-model demo -o {OUT} -n 1"),
    ("import-official", "import-official --stage prior {LIGHTNING} --out {OUT}/prior.pt"),
    ("preprocess-mead", "preprocess mead --animation-dir {B}/mead_anim --audio-dir {B}/mead_audio --out {OUT}"),
    ("preprocess-vertices", "preprocess vertices --data {OUT_DATA} --flame-model demo"),
]


def _args(template, inp, out, extra=None):
    values = {"B": str(inp.root), "OUT": str(out), "PRED": str(inp.pred), "PRIOR": str(inp.prior),
              "DATA": str(inp.data), **(extra or {})}
    return [t.format(**values) for t in template.split()]


@pytest.fixture(scope="module")
def lightning_prior(tmp_path_factory):
    from helpers.official_fake import fake_state_dict, save_lightning_ckpt

    p = tmp_path_factory.mktemp("official") / "stage1.ckpt"
    save_lightning_ckpt(p, fake_state_dict("prior"))
    return p


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("name,template", WRITERS, ids=[w[0] for w in WRITERS])
def test_read_only_output_folder(name, template, bad_inputs, lightning_prior, cli, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / "out"
    extra = {"LIGHTNING": str(lightning_prior), "OUT_DATA": str(ro / "data")}
    if name == "preprocess-vertices":  # the DATA folder itself is the output: a small read-only copy
        import shutil

        shutil.copytree(bad_inputs.data, ro / "data", copy_function=os.link)
    real_access = os.access

    def access(path, mode, *a, **k):
        if mode & os.W_OK and str(os.path.abspath(path)).startswith(str(ro)):
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    before = _files(ro)
    r = cli("-q", *_args(template, bad_inputs, out, extra))
    assert r.exit_code == 1, r.output
    line = error_line(r.stderr)
    assert has_words(line, ["permission denied"]) and has_words(line, ["writable"]), line
    assert str(ro) in line
    assert _files(ro) == before and not temporaries(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions (simulated in the test above)")
def test_chmod_read_only_folder(bad_inputs, cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        for template in ("generate -m {PRED} {B}/good.wav -o {OUT}", "export {B}/params.npy --out {OUT}/x.csv"):
            r = cli("-q", *_args(template, bad_inputs, ro / "out"))
            assert r.exit_code == 1
            assert has_words(error_line(r.stderr), ["permission denied", "writable"])
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o700)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_then_enospc(real):
    """np.save that writes part of the array, then finds the disk full."""

    def save(file, arr, *a, **k):
        if hasattr(file, "write"):
            file.write(b"\x93NUMPY" + b"\0" * 64)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return save


DISK_FULL = [
    # (id, command, what raises ENOSPC)
    ("generate", "generate -m {PRED} {B}/good.wav -o {OUT}", "np.save"),
    ("to-vertices", "to-vertices {B}/params.npy --out {OUT} --flame-model demo", "os.replace"),
    ("to-vertices-obj", "to-vertices {B}/params.npy --out {OUT} --flame-model demo --format obj", "os.replace"),
    ("render", "render {B}/params.npy --out {OUT}/x.mp4 --flame-model demo --size 32", "os.replace"),
    ("export", "export {B}/params.npy --out {OUT}/x.glb --flame-model demo", "os.replace"),
    ("export-csv", "export {B}/params.npy --out {OUT}/x.csv", "os.replace"),
    ("export-obj-seq", "export {B}/params.npy --out {OUT}/seq --format obj-seq --flame-model demo", "os.replace"),
    ("evaluate", "evaluate -m {PRED} --data {DATA} --flame-model demo -o {OUT} -n 1 --split {SPLIT}", "os.replace"),
    ("import-official", "import-official --stage prior {LIGHTNING} --out {OUT}/prior.pt", "torch.save"),
    ("train-prior", "train-prior --data {DATA} --out {OUT} --device cpu --config {TINY} --set train_prior.max_steps=1",
     "torch.save"),
    ("preprocess-synthetic", "preprocess synthetic --out {OUT} --subjects 1 --sentences 3", "np.save"),
]


@pytest.mark.parametrize("name,template,target", DISK_FULL, ids=[d[0] for d in DISK_FULL])
def test_disk_full(name, template, target, bad_inputs, lightning_prior, tiny_config_path, cli, tmp_path,
                   monkeypatch):
    import torch

    out = tmp_path / "out"
    split = tmp_path / "one_clip.txt"
    split.write_text(sorted(p.stem for p in (bad_inputs.data / "wav").glob("*.wav"))[-1] + "\n")
    extra = {"LIGHTNING": str(lightning_prior), "TINY": str(tiny_config_path), "SPLIT": str(split)}
    if target == "np.save":
        monkeypatch.setattr(np, "save", _half_then_enospc(np.save))
    elif target == "os.replace":
        real_replace = os.replace

        def replace(src, dst, *a, **k):  # only outputs under OUT; anything else (caches) is left alone
            if str(dst).startswith(str(out)):
                _enospc()
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
    else:
        monkeypatch.setattr(torch, "save", _enospc)
    r = cli("-q", *_args(template, bad_inputs, out, extra))
    assert r.exit_code == 1, r.output
    line = error_line(r.stderr)
    assert has_words(line, ["disk full"]) and has_words(line, ["free some space"]), line
    assert not temporaries(tmp_path), temporaries(tmp_path)
    left = _files(out)
    if name == "train-prior":  # written before the first checkpoint save, each complete
        assert set(left) <= {"config.yaml", "metrics.jsonl", "loss_curve.png"}, left
    else:
        assert left == [], left
