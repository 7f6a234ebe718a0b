"""Device resolution: auto picks what exists; explicit absent devices are errors, never silent fallbacks."""

from __future__ import annotations

import pytest
import torch

from probtalk3d_cli.device import autocast, resolve_device, seed_everything


def test_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_auto_matches_availability():
    dev = resolve_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        assert dev.type == "mps"
    else:
        assert dev.type == "cpu"
    assert resolve_device(None) == dev


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_absent_is_an_error(spec):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device(spec)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_present():
    assert resolve_device("cuda:0").type == "cuda"
    with pytest.raises(RuntimeError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has MPS")
def test_mps_absent_is_an_error():
    with pytest.raises(RuntimeError, match="MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_spelling(spec):
    if spec == "":
        assert resolve_device(spec).type in ("cpu", "cuda", "mps")  # empty means auto
        return
    with pytest.raises(ValueError, match="auto \\| cpu"):
        resolve_device(spec)


def test_autocast_disabled_is_noop():
    with autocast(torch.device("cpu"), enabled=False):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_autocast_bf16_on_cpu():
    with autocast(torch.device("cpu"), enabled=True):
        y = torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2))
    assert y.dtype == torch.bfloat16


def test_seed_everything_repeats():
    seed_everything(7)
    a = torch.rand(3)
    seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_resolve_precision():
    from probtalk3d_cli.device import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_native_bf16_matches_cpu_flags():
    from pathlib import Path

    from probtalk3d_cli.device import native_bf16

    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = info.read_text()
    expected = "avx512_bf16" in flags or "amx_tile" in flags
    assert native_bf16(torch.device("cpu")) == expected
