"""Where tensors live and which precision pays off there."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .errors import InputError

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features that make bf16 matmul fast


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cuda"`` without a GPU is an input error.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}
        The ``--device`` option.

    Returns
    -------
    torch.device
        The device to run on.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@functools.cache
def _cpu_bf16_is_fast() -> bool:
    # Without AMX or AVX512-BF16 torch emulates bf16 matmul and convolution 100 to 1000
    # times slower than fp32 (measured on this project's AVX2 machines), so ask the hardware.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in FAST_BF16_CPU_FLAGS)


def bf16_enabled(device: torch.device, requested: bool) -> bool:
    """Whether bf16 autocast is both requested and faster than fp32 on ``device``.

    Parameters
    ----------
    device : torch.device
        Where the run computes.
    requested : bool
        Fast mode (not ``--exact``).

    Returns
    -------
    bool
        When requested: on a CUDA GPU that supports bf16, or a CPU with AMX or AVX512-BF16.
    """
    if not requested:
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return _cpu_bf16_is_fast()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context.

    Parameters
    ----------
    device : torch.device
        Where the block computes.
    enabled : bool
        Usually :func:`bf16_enabled`'s verdict.

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast(device.type, torch.bfloat16)`` or ``contextlib.nullcontext()``.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
