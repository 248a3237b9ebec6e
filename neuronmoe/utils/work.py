"""Where a stage's time goes: tokens and FLOPs counted inside the stage, and the machine's matmul rate.

* :func:`install_from_env`: when ``$NEURONMOE_WORK_FILE`` names a file (the pipeline sets it per stage), global
  forward hooks count, for this process, the tokens every decoder-stack forward reads (real tokens and padded
  positions; those run with gradients are counted again as backward tokens) and the FLOPs of every ``nn.Linear``
  call (``2 x in x out`` per row it reads: the projections, the experts on their routed rows, the LM head on the
  positions it computes). Backward FLOPs are estimated as twice the forward FLOPs of the passes run with
  gradients (the usual 2:1 rule; frozen weights need only the input gradient, so this is an upper bound).
  Attention's own score/value products are not counted (at the 128-512-token lengths of the miniature run they
  are a few percent); with gradient checkpointing the recomputed forwards count again. Passes before the first
  trainable weight need no backward and count none. At exit the counts are written to that file (atomically).
* :func:`matmul_rate`: the machine's dense matmul rate (FLOP/s) on the device and dtype the stages use, measured
  once per machine (a ~1 s calibration) and kept in ``$NEURONMOE_CACHE/calibration/``; the stage table divides
  each stage's achieved FLOP/s by it.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ENV = "NEURONMOE_WORK_FILE"

_STATE: dict[str, Any] = {}


def _zero() -> dict[str, Any]:
    return {"tokens_forward": 0, "positions_forward": 0, "tokens_backward": 0, "forwards": 0,
            "flops_forward": 0.0, "flops_backward": 0.0, "dtype": None, "device": None}


def counts() -> dict[str, Any]:
    """This process's counts so far (zeros when nothing is installed)."""
    return dict(_STATE.get("counts") or _zero())


def _is_decoder(module: Any) -> bool:
    """The decoder stack (``LlamaModel``, ``Qwen2Model``, ...: token embeddings and layers): every forward of a causal LM
    passes through it once, and the stages that need no LM head (neurons, similarity) call it directly."""
    return (hasattr(module, "embed_tokens") and hasattr(module, "layers")
            and not type(module).__module__.startswith("peft"))


def _tokens(args: tuple, kwargs: dict[str, Any]) -> tuple[int, int]:
    """(real tokens, positions) of one causal-LM call: ``input_ids`` (or embeddings) and its attention mask."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        ids = kwargs.get("inputs_embeds")
        if ids is None:
            return 0, 0
        positions = int(ids.shape[0] * ids.shape[1])
    else:
        positions = int(ids.numel())
    mask = kwargs.get("attention_mask")
    if mask is not None and getattr(mask, "dim", lambda: 0)() == 2 and mask.shape[-1] == positions // max(1, mask.shape[0]):
        return int(mask.sum()), positions
    return positions, positions


def _count_linear(c: dict[str, Any], module: Any, x: Any) -> None:
    """FLOPs of one ``nn.Linear`` call (and the compute dtype of the first: the autocast one where it is on)."""
    import torch

    if x is None:
        return
    f = 2.0 * module.in_features * module.out_features * (x.numel() // max(1, module.in_features))
    c["flops_forward"] += f
    if torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad):
        c["flops_backward"] += 2.0 * f
    if c["dtype"] is None:
        dev = module.weight.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else module.weight.dtype
        c["dtype"], c["device"] = str(dt).replace("torch.", ""), str(module.weight.device)


def _open_forward(c: dict[str, Any], ids: Any) -> None:
    """A token embedding read ``ids``: a forward has started. The decoder's hook replaces this count by the exact
    one when the forward completes; a forward that never completes (stopped after its last analysed layer) counts
    its positions, padding included, when the next one starts or at exit (:func:`_close_open`)."""
    import torch

    _close_open(c)
    if isinstance(ids, torch.Tensor) and not ids.is_floating_point() and ids.dim() == 2:
        c["_open"] = int(ids.numel())


def _close_open(c: dict[str, Any]) -> None:
    n = int(c.pop("_open", 0) or 0)
    c["tokens_forward"] += n
    c["positions_forward"] += n
    c["forwards"] += 1 if n else 0


def install(path: str | Path | None = None) -> dict[str, Any]:
    """Register the global counting hook (once per process); with ``path``, write the counts there at exit."""
    import torch

    if "counts" in _STATE:
        return _STATE["counts"]
    c = _STATE["counts"] = _zero()

    def post(module: Any, args: tuple, kwargs: Any = None, _out: Any = None) -> None:
        # a forward that raised (ended on purpose after the last analysed layer) calls this as (module, args, None)
        raised = not isinstance(kwargs, dict)
        kwargs = {} if raised else kwargs
        if isinstance(module, torch.nn.Linear):
            _count_linear(c, module, args[0] if args else kwargs.get("input"))
        elif isinstance(module, torch.nn.Embedding):
            _open_forward(c, args[0] if args else kwargs.get("input"))
        elif _is_decoder(module) and not raised:
            real, pos = _tokens(args, kwargs)
            c["_open"] = 0  # this forward completed: its exact count (padding excluded) replaces the embedding's
            c["tokens_forward"] += real
            c["positions_forward"] += pos
            c["forwards"] += 1
            if torch.is_grad_enabled() and module.training:
                c["tokens_backward"] += real

    torch.nn.modules.module.register_module_forward_hook(post, with_kwargs=True, always_call=True)
    if path is not None:
        atexit.register(write, Path(path))
    return c


def write(path: Path) -> None:
    import torch

    from neuronmoe.utils.device import native_bf16
    from neuronmoe.utils.io import atomic_write_json

    if "counts" in _STATE:
        _close_open(_STATE["counts"])
    c = counts()
    c["flops"] = c["flops_forward"] + c["flops_backward"]
    c["threads"] = torch.get_num_threads()
    c["native_bf16"] = bool(native_bf16(c["device"] or None))
    c["peak_rss_mb"] = peak_rss_mb()
    atomic_write_json(Path(path), c)


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (``VmHWM``; ``ru_maxrss`` where /proc is missing), or its
    waited-for children's if larger (data workers), in MiB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            own = next((int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM:")), own)
    except OSError:
        pass
    return round(max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), 1)


def install_from_env() -> None:
    """Install the hooks when ``$NEURONMOE_WORK_FILE`` is set (``python -m neuronmoe`` calls this)."""
    path = os.environ.get(ENV)
    if path:
        install(path)


# --------------------------------------------------------------------------------------- calibration
def _machine_key(device: str, dtype: str, threads: int) -> dict[str, Any]:
    import torch

    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    if device.startswith("cuda"):
        cpu = torch.cuda.get_device_name(0)
    return {"host": platform.node(), "cpu": cpu or platform.processor(), "cores": os.cpu_count(), "threads": threads,
            "device": device, "dtype": dtype, "torch": torch.__version__}


def calibration_dir() -> Path:
    return Path(os.environ.get("NEURONMOE_CACHE") or Path.home() / ".cache" / "neuronmoe") / "calibration"


def measure_matmul(device: str = "cpu", dtype: str = "float32", n: int = 1024, seconds: float = 1.0) -> float:
    """Best FLOP/s of ``n x n @ n x n`` matmuls over about ``seconds``."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    best, t_end = 0.0, time.perf_counter() + seconds
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b  # warm-up
    while True:
        sync()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * 2.0 * n ** 3 / (time.perf_counter() - t0))
        if time.perf_counter() >= t_end:
            return best


def matmul_rate(device: str | None = None, dtype: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """``{"flops_per_s", "key", "measured"}``: the matmul rate of this machine, measured once and cached."""
    import torch

    from neuronmoe.utils.device import native_bf16, resolve_device
    from neuronmoe.utils.io import atomic_write_json

    dev = str(resolve_device(device or "auto"))
    dt = dtype or ("bfloat16" if dev.startswith("cuda") and native_bf16(dev) else "float32")
    key = _machine_key(dev, dt, torch.get_num_threads())
    path = calibration_dir() / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json")
    if path.exists() and not refresh:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    n = 4096 if dev.startswith("cuda") else 1024
    rec = {"flops_per_s": measure_matmul(dev, dt, n=n), "matrix": n, "key": key,
           "native_bf16": bool(native_bf16(dev)), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(path, rec)
    return rec
