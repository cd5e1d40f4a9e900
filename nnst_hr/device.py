"""Where tensors live, which precision pays off there, and the backend flags a run needs.

The flag contexts restore what they change: library code leaves the caller's process as
it found it.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .config import NNSTConfig, field_label
from .errors import InputError

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features that make bf16 matmul fast
NATIVE_BF16_CAPABILITY = (8, 0)  # CUDA compute capability with bf16 tensor cores (Ampere); older GPUs emulate it


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
        option = field_label(NNSTConfig, "device")  # "--device", or "device" in an experiment's stages
        raise InputError(f"{option} cuda was asked for but no CUDA GPU is available; use {option} cpu or auto")
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
        # torch.cuda.is_bf16_supported() also says yes where bf16 is emulated (slower than fp32)
        return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY
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


def _per_operator_flags() -> list[tuple[str, object]]:
    """torch's per-operator fp32 precision settings (torch >= 2.9; empty before)."""
    backends = torch.backends
    owners = [("matmul", backends.cuda.matmul), ("conv", getattr(backends.cudnn, "conv", None)),
              ("rnn", getattr(backends.cudnn, "rnn", None))]
    return [(name, owner) for name, owner in owners if owner is not None and hasattr(owner, "fp32_precision")]


def _read(getter):
    try:
        return getter()
    except RuntimeError:  # torch refuses to read a legacy flag that the caller set inconsistently
        return None


def _tf32_flags() -> dict:
    """The TF32 settings :func:`precise_matmul` touches, legacy and per-operator."""
    flags = {
        "matmul_precision": _read(torch.get_float32_matmul_precision),
        "cudnn_allow_tf32": _read(lambda: torch.backends.cudnn.allow_tf32),
    }
    flags.update({name: owner.fp32_precision for name, owner in _per_operator_flags()})
    return flags


def _restore_tf32_flags(flags: dict) -> None:
    # the legacy setters first (they also write the per-operator values), then the exact
    # per-operator values, which they may have normalized ("none" -> "ieee")
    if flags["matmul_precision"] is not None:
        torch.set_float32_matmul_precision(flags["matmul_precision"])
    if flags["cudnn_allow_tf32"] is not None:
        torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]
    for name, owner in _per_operator_flags():
        owner.fp32_precision = flags[name]


@contextlib.contextmanager
def precise_matmul(device: torch.device):
    """Full fp32 matrix products and convolutions on ``device`` (TF32 off), restored on exit.

    cuDNN convolutions run in TF32 (10-bit mantissa) by default on Ampere and later GPUs;
    exact mode, the final match and :func:`nnst_objective` must be fp32. A no-op on the CPU.
    The legacy flags are used to switch TF32 off because they keep torch's legacy and
    per-operator settings consistent (a mix of the two makes cuBLAS calls raise).

    Examples
    --------
    >>> before = torch.backends.cudnn.allow_tf32
    >>> with precise_matmul(torch.device("cuda")):
    ...     torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    (False, 'highest')
    >>> torch.backends.cudnn.allow_tf32 == before
    True
    """
    if device.type != "cuda":
        yield
        return
    saved = _tf32_flags()
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        _restore_tf32_flags(saved)


@contextlib.contextmanager
def cudnn_autotune(device: torch.device):
    """``torch.backends.cudnn.benchmark`` on for the duration, on CUDA only; restored on exit.

    A stylization runs hundreds of VGG passes at each of a few fixed shapes, so timing the
    convolution algorithms once per shape pays for itself.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def run_settings(device: torch.device, *, exact: bool):
    """Backend settings of one stylization: cuDNN autotuning, and TF32 off when ``exact``."""
    with cudnn_autotune(device):
        if exact:
            with precise_matmul(device):
                yield
        else:
            yield
