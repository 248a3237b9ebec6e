"""The card a budget is computed for: dense bf16 peak, memory, and the MFU that turns FLOPs into time.

``--gpu NAME`` picks a row of ``budget.yaml`` ``gpus`` (case-insensitive); ``--gpu-memory`` and ``--mfu`` override
its memory and MFU. The MFU is the card's measured figure (``measured_mfu``, recorded from
``benchmarks/gpu_check.sh``) when there is one, else the stated assumption (``mfu.assumption``), and
:attr:`GPU.mfu_source` says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from neuronmoe.errors import ConfigError


@dataclass(frozen=True)
class GPU:
    name: str
    peak_tflops: float  #: dense bf16 tensor peak, TFLOP/s
    memory_gib: float
    mfu: float
    mfu_source: str  #: "measured: ...", "given: --mfu" or "assumed: ..."
    memory_source: str = "card"

    @property
    def flops_per_second(self) -> float:
        """FLOP/s this card delivers to the run at its MFU."""
        return self.peak_tflops * 1e12 * self.mfu

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "peak_bf16_tflops": self.peak_tflops, "memory_gib": self.memory_gib,
                "mfu": self.mfu, "mfu_source": self.mfu_source, "memory_source": self.memory_source}


def _cfg(cfg: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if cfg is not None:
        return cfg
    from neuronmoe.budget import budget_config

    return budget_config()


def card_name(name: str, cfg: Mapping[str, Any] | None = None) -> str:
    """The table's name for ``name`` (any case); a :class:`ConfigError` naming ``--gpu`` and the cards known."""
    cards = _cfg(cfg)["gpus"]
    by_lower = {k.lower(): k for k in cards}
    if str(name).strip().lower() in by_lower:
        return by_lower[str(name).strip().lower()]
    from neuronmoe.utils.checks import did_you_mean

    raise ConfigError(f"--gpu {name!r}: not a card of neuronmoe/configs/budget.yaml{did_you_mean(str(name), cards)}; "
                      f"cards: {', '.join(cards)} (another card: name the one of the same peak and give --gpu-memory and --mfu)")


def card_of_device(device_name: str, cfg: Mapping[str, Any] | None = None) -> str | None:
    """The card whose ``match`` substring names ``device_name`` (``torch.cuda.get_device_name``), longest match
    first (``NVIDIA GH200 480GB`` is a GH200, not an H200); None when no card matches."""
    cards = _cfg(cfg)["gpus"]
    pairs = sorted(((m, k) for k, v in cards.items() for m in v.get("match", [k])), key=lambda p: -len(p[0]))
    low = device_name.lower()
    return next((k for m, k in pairs if m.lower() in low), None)


def resolve_gpu(name: str | None = None, memory_gib: float | None = None, mfu: float | None = None,
                cfg: Mapping[str, Any] | None = None) -> GPU:
    """The card of ``--gpu`` (default: the paper's) with ``--gpu-memory`` / ``--mfu`` applied."""
    cfg = _cfg(cfg)
    key = card_name(name or cfg["default_gpu"], cfg)
    card = cfg["gpus"][key]
    if memory_gib is not None and not memory_gib > 0:
        raise ConfigError(f"--gpu-memory {memory_gib}: must be a positive number of GiB")
    if mfu is not None and not 0 < mfu <= 1:
        raise ConfigError(f"--mfu {mfu}: must lie in (0, 1] (a fraction of the card's dense bf16 peak)")
    measured = (cfg.get("measured_mfu") or {}).get(key)
    if mfu is not None:
        value, source = float(mfu), "given: --mfu"
    elif measured:
        value, source = float(measured["mfu"]), f"measured: {measured['source']}"
    else:
        value, source = float(cfg["mfu"]["assumption"]), "assumed: " + " ".join(str(cfg["mfu"]["why"]).split())
    mem = float(memory_gib) if memory_gib is not None else float(card["memory_gib"])
    return GPU(key, float(card["peak_bf16_tflops"]), mem, value, source,
               "given: --gpu-memory" if memory_gib is not None else f"{key} card")


def peak_tflops_of_device(device_name: str, cfg: Mapping[str, Any] | None = None) -> float | None:
    """Dense bf16 peak of the card named by ``device_name`` (benchmarks use it for their MFU), else None."""
    key = card_of_device(device_name, cfg)
    return float(_cfg(cfg)["gpus"][key]["peak_bf16_tflops"]) if key else None
