"""Device and dtype resolution shared by every stage (never a hard-coded ``cuda:0``)."""
from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

from neuronmoe.errors import ConfigError

if TYPE_CHECKING:  # torch is imported on first use, so that `neuronmoe --help` stays fast
    import torch

log = logging.getLogger(__name__)

#: dtype spellings accepted on the command line -> attribute of ``torch``
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` -> this process's CUDA device (LOCAL_RANK aware) when available, else CPU."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return check_device(device)


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


def check_device(device: str | torch.device | None, flag: str = "--device") -> torch.device | None:
    """``device`` as a ``torch.device`` when this machine has it; else a :class:`ConfigError` naming ``flag``
    (``--device cuda`` without CUDA used to run on the CPU silently in one stage and fail deep in another);
    None for ``auto`` (resolved by :func:`resolve_device` where the process knows its rank)."""
    if device in ("auto", "cpu", "", None):  # no torch import for the common case (settings are checked early)
        return None if device in ("auto", "", None) else _cpu()
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{flag} {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            why = ("this PyTorch is built without CUDA" if torch.version.cuda is None
                   else "no GPU is visible (CUDA_VISIBLE_DEVICES, driver)")
            raise ConfigError(f"{flag} {device}: CUDA is not available on this machine ({why}); use --device cpu "
                              f"or auto")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{flag} {device}: this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{flag} {device}: Apple MPS is not available on this machine; use --device cpu or auto")
    elif dev.type != "cpu":
        raise ConfigError(f"{flag} {device!r}: unsupported device type {dev.type!r}; use auto, cpu, cuda or cuda:N")
    return dev


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX).

    Without them (e.g. AVX2-only x86 CPUs) PyTorch emulates bf16 GEMMs, several times slower than fp32
    (measured 6.7x for a 576x1536 linear layer on an AVX2 AMD EPYC).
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(f()) for f in checks if callable(f))


def native_bf16(device: torch.device | str | None = None) -> bool:
    """True when ``device`` (default: this rank's ``auto`` device) computes bf16 natively."""
    import torch

    dev = torch.device(device) if device is not None else resolve_device("auto")
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return dev.type == "cpu" and cpu_has_native_bf16()


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | str | None = None) -> torch.dtype:
    """Resolve a dtype name for ``device``.

    ``auto`` -> bf16 on a CUDA device that supports it, fp32 otherwise (training, evaluation).
    ``fast`` -> bf16 wherever it is computed natively (such a CUDA device, or a CPU with AVX512-BF16 or
    AMX), fp32 otherwise: for throughput-bound forward passes (neuron analysis, similarity).
    An explicit bf16 on a CPU without native bf16 is honoured, with a warning that it is slow.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = "auto" if dtype in (None, "") else str(dtype).lower()
    if name in ("auto", "fast"):
        dev = torch.device(device) if device is not None else resolve_device("auto")
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.bfloat16 if name == "fast" and native_bf16(dev) else torch.float32
    try:
        out = getattr(torch, _DTYPES[name])
    except KeyError:
        raise ConfigError(f"--dtype: unknown dtype {dtype!r}; choose from {', '.join(DTYPE_CHOICES)}") from None
    dev_type = torch.device(device).type if device is not None else None
    if out is torch.bfloat16 and dev_type == "cpu" and not cpu_has_native_bf16():
        _warn_slow_bf16()
    return out


@functools.lru_cache(maxsize=None)
def _warn_slow_bf16() -> None:
    log.warning("bf16 on this CPU (no AVX512-BF16/AMX) is emulated and several times slower than fp32; "
                "--dtype fast picks bf16 only where it is native")


DTYPE_CHOICES = ["auto", "fast", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"]
