"""The reliability tests' inputs: one session folder of bad files, damaged data folders and checkpoints (the checks
live in tests/helpers/reliability.py)."""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.reliability import SR


@dataclass
class Inputs:
    """Paths of the session's inputs (bad ones under `root`, shared run folders and data)."""

    root: Path
    data: Path
    prior: Path  # stage-1 run folder
    pred: Path  # stage-2 run folder

    def __truediv__(self, name: str) -> Path:
        return self.root / name


def _write_bad_inputs(root: Path, data: Path) -> None:
    rng = np.random.default_rng(0)
    good = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    sf.write(root / "good.wav", good, SR, subtype="PCM_16")
    # audio
    (root / "empty.wav").write_bytes(b"")
    (root / "folder.wav").mkdir()
    sf.write(root / "one_sample.wav", good[:1], SR, subtype="PCM_16")
    raw = (root / "good.wav").read_bytes()
    (root / "corrupt_header.wav").write_bytes(b"RIFX" + raw[4:40] + b"\xff" * 100)
    sf.write(root / "nan.wav", np.where(np.arange(SR) % 2 == 0, 0.1, np.nan).astype(np.float32), SR, subtype="FLOAT")
    (root / "text.wav").write_text("this is not audio\n" * 50)
    sf.write(root / "short.wav", good[:600], SR, subtype="PCM_16")  # < 640 samples: not one motion frame
    # animation files
    np.save(root / "params.npy", np.zeros((1, 10, 403), np.float32))
    np.save(root / "shape400.npy", np.zeros((1, 10, 400), np.float32))
    np.save(root / "complex.npy", np.zeros((1, 10, 403), np.complex64))
    np.save(root / "strings.npy", np.full((10, 53), "a"))
    np.save(root / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    p = np.zeros((1, 10, 403), np.float32)
    p[0, 3, 310] = np.nan
    np.save(root / "nan.npy", p)
    p[0, 3, 310] = np.inf
    np.save(root / "inf.npy", p)
    np.save(root / "motion52.npy", np.zeros((10, 52), np.float32))
    (root / "dots").mkdir()
    np.save(root / "dots" / "...npy", np.zeros((1, 10, 403), np.float32))  # stem '..'
    # checkpoints
    import torch

    from probtalk3d_cli.checkpoint import FORMAT_VERSION, save_checkpoint

    save_checkpoint(root / "small.pt", "predictor", {}, {"w": torch.arange(4000, dtype=torch.float32)})
    whole = (root / "small.pt").read_bytes()
    (root / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (root / "empty.pt").write_bytes(b"")
    torch.save({"format": "probtalk3d", "kind": "predictor", "format_version": FORMAT_VERSION + 98, "config": {},
                "model": {}}, root / "newer.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, root / "lightning.ckpt")
    # configs
    for name, text in {
        "unknown_key.yaml": "train_prior:\n  epochz: 3\n",
        "unknown_section.yaml": "trainer:\n  epochs: 3\n",
        "wrong_type.yaml": "train_prior:\n  epochs: three\n",
        "negative_batch.yaml": "train_prior:\n  batch_size: -4\n",
        "negative_lr.yaml": "train_prior:\n  lr: -0.001\n",
        "broken.yaml": "train_prior: [1, 2\n",
        "list.yaml": "- 1\n- 2\n",
    }.items():
        (root / name).write_text(text)
    # styles CSVs
    wav = (root / "good.wav").resolve()
    (root / "styles_escape.csv").write_text(f"audio,name\n{wav},../../escaped\n")
    (root / "styles_absolute.csv").write_text(f"audio,name\n{wav},{root.parent / 'absolute'}\n")
    (root / "styles_header.csv").write_text(f"audi,emotion\n{wav},happy\n")
    # FLAME / templates
    with open(root / "dict.pkl", "wb") as fh:
        pickle.dump({"v_template": np.zeros((3, 3)), "note": "not a FLAME model"}, fh, protocol=2)
    (root / "empty.pkl").write_bytes(b"")
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump({"M003": np.zeros((1, 1, 300))}, fh, protocol=2)
    # data folders (hard links: cheap copies of the session corpus with one clip damaged)
    (root / "data_empty" / "param").mkdir(parents=True)
    (root / "data_empty" / "wav").mkdir()
    for name in ("data_corrupt", "data_mismatch", "data_nowav", "data_absent"):
        shutil.copytree(data, root / name, copy_function=os.link)
    key = sorted((data / "param").glob("*_1_0.npy"))[0].stem  # an emotional clip of the first subject
    # unlink before writing: the files are hard links to the session corpus
    target = root / "data_corrupt" / "param" / f"{key}.npy"
    head = target.read_bytes()[:100]
    target.unlink()
    target.write_bytes(head)
    w = root / "data_mismatch" / "wav" / f"{key}.wav"
    audio, sr = sf.read(w)
    w.unlink()
    sf.write(w, audio[:2000], sr)  # 0.125 s of audio for seconds of motion
    shutil.rmtree(root / "data_nowav" / "wav")
    splits = root / "data_absent" / "splits.json"
    text = splits.read_text().replace('"W001"', '"W009"')
    splits.unlink()
    splits.write_text(text)
    # MEAD trees with nothing in them
    (root / "mead_anim").mkdir()
    (root / "mead_audio").mkdir()


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, synthetic_data, tiny_prior_run, tiny_pred_run) -> Inputs:
    root = tmp_path_factory.mktemp("reliability_inputs")
    _write_bad_inputs(root, synthetic_data)
    return Inputs(root=root, data=synthetic_data, prior=tiny_prior_run, pred=tiny_pred_run)
