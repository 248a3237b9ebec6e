"""Device and dtype resolution shared by every stage (never a hard-coded ``cuda:0``)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on first use, so that `neuronmoe --help` stays fast
    import torch

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
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | str | None = None) -> torch.dtype:
    """``auto`` -> bf16 on a CUDA device that supports it, fp32 otherwise."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        dev = torch.device(device) if device is not None else resolve_device("auto")
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return getattr(torch, _DTYPES[str(dtype).lower()])
    except KeyError:
        raise ValueError(f"--dtype: unknown dtype {dtype!r}; choose from auto, {', '.join(sorted(_DTYPES))}") from None


DTYPE_CHOICES = ["auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"]
