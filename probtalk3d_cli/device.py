"""The one place that asks about accelerators: device resolution, autocast and seeding."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re

log = logging.getLogger(__name__)

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps  (auto picks cuda, then mps, then cpu)"


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | None = "auto"):
    """Turn a device request into a `torch.device`.

    Args:
        spec: "auto", "cpu", "cuda", "cuda:N" or "mps" (case-insensitive). None means "auto".

    Returns:
        torch.device that exists on this machine.

    Raises:
        ValueError: unknown spelling.
        RuntimeError: an explicit device that this machine does not have (never a silent fallback).
    """
    import torch

    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())
        elif _mps_available(torch):
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
        log.info("device auto -> %s", dev)
        return dev
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__}); "
                "use --device cpu or auto, or install a CUDA build of torch"
            )
        index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise RuntimeError(f"--device {spec}: this machine has {count} CUDA device(s) (0..{count - 1})")
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available(torch):
            raise RuntimeError("--device mps: Apple MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    raise ValueError(f"--device {spec!r} is not a device; use {DEVICE_HELP}")


def autocast(device, enabled: bool = False, dtype: str = "bf16"):
    """Mixed-precision context for `device`; a no-op when disabled (fp32) or on MPS.

    bf16 autocast is used on CPU (fast on CPUs with AVX512-BF16/AMX) and CUDA.
    """
    import torch

    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=torch_dtype)


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device) -> bool:
    """True when `device` computes bf16 natively: CUDA with bf16 support, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(spec: str, device) -> str:
    """`auto` -> bf16 where the device computes bf16 natively (inference only), else fp32; fp32/bf16 as given."""
    if spec not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {spec!r}")
    if spec == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return spec


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def device_report() -> dict:
    """Facts about accelerators for `probtalk3d info`."""
    import torch

    report = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
        "cuda_version": torch.version.cuda,
        "mps_available": _mps_available(torch),
    }
    report["auto"] = str(resolve_device("auto"))
    return report
