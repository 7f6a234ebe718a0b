"""Fake official ProbTalk3D Lightning checkpoints built from the key/shape manifests in ../shared/reference.

`save_lightning_ckpt` writes the nested layout Lightning uses ({"state_dict", "epoch", "global_step",
"pytorch-lightning_version", "hyper_parameters", ...}); with `extras` the hyper-parameters hold objects that stop
`torch.load(weights_only=True)` (a pathlib path, an argparse namespace and an omegaconf-like DictConfig), and with
`malicious` a pickle that would run a shell command if it were ever unpickled unsafely.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import pathlib
import sys
import types
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def manifest(stage: str) -> list[tuple[str, tuple]]:
    """[(official key, shape)] of `prior` or `pred`; skips the test when the manifest is absent."""
    path = REFERENCE / f"official-state-dict-{stage}.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        rows.append((key, tuple(ast.literal_eval(shape))))
    return rows


def _value(key: str, shape: tuple, g: torch.Generator) -> torch.Tensor:
    if not shape:
        return torch.rand((), generator=g) * 10  # loss accumulators
    x = torch.randn(shape, generator=g)
    if key.endswith(("norm.weight", "layer_norm.weight")) or key.endswith("weight_g"):
        return 1.0 + 0.05 * x
    return 0.05 * x  # small weights keep the random 12-layer HuBERT and the predictor finite


def fake_state_dict(stage: str, seed: int = 0, variant: str = "vq") -> dict:
    """Random tensors with the official keys and shapes; `vae` swaps the codebook for mean/logvar heads."""
    g = torch.Generator().manual_seed(seed)
    rows = manifest(stage)
    pre = "" if stage == "prior" else "motion_prior."
    if variant == "vae":
        rows = [(k, s) for k, s in rows if not k.startswith(pre + "quantize.")]
        rows += [(pre + f"{head}.{p}", (256, 256) if p == "weight" else (256,))
                 for head in ("mean", "logvar") for p in ("weight", "bias")]
    return {k: _value(k, s, g) for k, s in rows}


class _Evil:
    """Pickles as a call to os.system (stored as posix.system): it must never be executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@contextlib.contextmanager
def _fake_omegaconf():
    """Register a minimal `omegaconf` look-alike so pickles reference omegaconf.* classes as real ones do."""
    names = ["omegaconf", "omegaconf.dictconfig", "omegaconf.nodes", "omegaconf.base"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    class ContainerMetadata:
        pass

    class AnyNode:
        def __init__(self, value):
            self._val = value
            self._metadata = None

    class DictConfig:
        def __init__(self, content: dict):
            meta = ContainerMetadata()
            meta.ref_type = None
            meta.key = None
            self.__dict__["_metadata"] = meta
            self.__dict__["_parent"] = None
            self.__dict__["_content"] = {k: AnyNode(v) for k, v in content.items()}

        def __getstate__(self):
            return dict(self.__dict__)

    for cls, mod in ((ContainerMetadata, "omegaconf.base"), (AnyNode, "omegaconf.nodes"),
                     (DictConfig, "omegaconf.dictconfig")):
        cls.__module__ = mod
        cls.__qualname__ = cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    sys.modules.update(mods)
    try:
        yield DictConfig
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def save_lightning_ckpt(path: Path, state_dict: dict, extras: bool = True, malicious: Path | None = None) -> Path:
    """torch.save a Lightning-style checkpoint around `state_dict`.

    Args:
        path: destination .ckpt.
        state_dict: official keys -> tensors.
        extras: put a pathlib.PosixPath, an argparse.Namespace and an omegaconf-like DictConfig (with typing-free
            metadata) into hyper_parameters, so weights_only loading alone fails.
        malicious: if given, also store an object whose unpickling would `touch` this marker file.
    """
    ckpt = {
        "epoch": 200,
        "global_step": 64321,
        "pytorch-lightning_version": "2.1.4",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 200}}}},
        "callbacks": {"EarlyStopping{'monitor': 'total/val', 'mode': 'min'}": {"wait_count": 3,
                                                                             "best_score": torch.tensor(0.12)}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.98), "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-5, "run_id": "a1b2c3d4"},
    }
    with _fake_omegaconf() as dict_config:
        if extras:
            ckpt["hyper_parameters"]["folder"] = pathlib.PosixPath("/data/outputs/MEAD/vqvae_pred")
            ckpt["hyper_parameters"]["args"] = argparse.Namespace(seed=1234, experiment="vqvae_pred")
            ckpt["hyper_parameters"]["model"] = dict_config({"latent_dim": 256, "ff_size": 384, "name": "vqvae"})
        if malicious is not None:
            ckpt["hyper_parameters"]["payload"] = _Evil(malicious)
        torch.save(ckpt, path)
    return path
