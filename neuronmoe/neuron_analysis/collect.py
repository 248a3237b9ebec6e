"""Pooled activations of every unit for every sample, in one batched pass over all languages.

One forward pass over the union of the samples (sorted by length so padding is small, in
``batch_size`` batches with right padding). A forward hook on each hooked module pools its
output over the real tokens of each sample *on the device* into one ``[B, U]`` fp32 buffer
(``mean``: mean over real tokens; ``max``: max over real tokens; ``pos_frac``: fraction of real
tokens whose output is > 0, for LAPE). After each batch the buffer is checked for NaN/inf,
cast to fp16 and copied to the CPU once, and its rows are written into one ``.npy`` memmap per
layer (``activations/layer_XXX.npy``, ``[N, layer_width]`` fp16, rows in sample order).

Resume: after the rows of a batch are flushed, ``activations/progress.json`` is rewritten
atomically with the number of completed batches and a key of everything the values depend on
(model, tokens, layout, pool, dtype, batch size). A rerun with the same key continues after
the last completed batch; rows past it are recomputed, so a half-written batch is never used.
Anything else (other key, missing or mis-shaped file) starts afresh.

Several processes (``torchrun`` / ``accelerate launch``): batch ``b`` goes to rank
``b % world`` in each step; pooled rows are all-gathered and rank 0 writes them.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from neuronmoe.errors import ConfigError, InputError
from neuronmoe.neuron_analysis.units import ACT_MODULE, UnitLayout
from neuronmoe.utils.io import atomic_write_json, open_memmap_reserved

log = logging.getLogger(__name__)

POOLS = ("mean", "max")
PROGRESS = "progress.json"
FP16_MAX = 65504.0


class NonFiniteActivationError(InputError):
    """An activation that is NaN, infinite or too large for fp16 (the model's weights or the compute dtype)."""


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_info() -> Dist:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return Dist()


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun / accelerate (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return dist_info()


def layer_file(out_dir: Path, layer: int) -> Path:
    return Path(out_dir) / f"layer_{layer:03d}.npy"


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Sample indices grouped into batches, longest first (deterministic)."""
    lengths = np.asarray(lengths)
    order = np.lexsort((np.arange(len(lengths)), -lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _hook_targets(model: Any, layout: UnitLayout) -> list[tuple[int, str, torch.nn.Module, int, int]]:
    """(layer, module name, module, global column offset, width) for every hooked module."""
    from neuronmoe.models.arch import decoder_layers, get_arch, layer_module, mlp_module

    spec = get_arch(model)
    out = []
    for li, layer in enumerate(decoder_layers(model)):
        base = li * layout.layer_width
        for name, off, size in zip(layout.modules, layout.module_offsets(), layout.sizes):
            if name == ACT_MODULE:
                mod = getattr(mlp_module(layer, spec), spec.act)
                if not isinstance(mod, torch.nn.Module):
                    raise InputError(f"layer {li}: the MLP activation {spec.act!r} is not a module; LAPE needs to hook it")
            else:
                mod = layer_module(layer, spec, name)
            out.append((li, name, mod, base + off, size))
    return out


class _Pooler:
    """Holds the per-batch mask and output buffer shared by all hooks."""

    def __init__(self, pool: str, total: int, device: torch.device):
        self.pool, self.total, self.device = pool, total, device
        self.buf: torch.Tensor | None = None

    def start(self, mask: torch.Tensor) -> None:
        m = mask.to(self.device, torch.float32)
        self.mask3 = m.unsqueeze(1)  # [B, 1, T]
        self.denom = m.sum(1, keepdim=True)  # [B, 1]
        self.neg = (m == 0).unsqueeze(2)  # [B, T, 1]
        self.buf = torch.empty((m.shape[0], self.total), dtype=torch.float32, device=self.device)

    def hook(self, off: int, width: int):
        def fn(_mod: Any, _inp: Any, out: Any) -> None:
            o = out[0] if isinstance(out, tuple) else out
            if self.pool == "mean":
                r = torch.bmm(self.mask3, o.float()).squeeze(1).div_(self.denom)
            elif self.pool == "max":
                r = o.float().masked_fill(self.neg, float("-inf")).amax(1)
            else:  # pos_frac
                r = torch.bmm(self.mask3, (o > 0).float()).squeeze(1).div_(self.denom)
            self.buf[:, off : off + width] = r

        return fn


def run_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _open_store(out_dir: Path, key: str, n: int, layout: UnitLayout, num_batches: int, rank: int) -> tuple[list[np.memmap] | None, int]:
    """Memmaps of every layer (rank 0 only) and the number of batches already done."""
    if rank != 0:
        return None, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    prog_path = out_dir / PROGRESS
    shape = (n, layout.layer_width)
    if prog_path.exists():
        try:
            prog = json.loads(prog_path.read_text())
            if prog.get("key") == key and prog.get("num_batches") == num_batches:
                maps = [np.lib.format.open_memmap(layer_file(out_dir, li), mode="r+") for li in range(layout.num_layers)]
                if all(m.shape == shape and m.dtype == np.float16 for m in maps):
                    done = int(prog.get("batches_done", 0))
                    if done:
                        log.info("resuming activation collection after batch %d of %d", done, num_batches)
                    return maps, done
        except (ValueError, OSError, json.JSONDecodeError):
            pass
        log.info("activations in %s do not match this run; collecting afresh", out_dir)
    prog_path.unlink(missing_ok=True)  # never trust files from an earlier, different run
    for old in out_dir.glob("layer_*.npy"):
        old.unlink()
    need = layout.num_layers * (shape[0] * shape[1] * 2 + 128)
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise OSError(errno.ENOSPC, f"No space left on device: the activations need {need:,} bytes "
                      f"({layout.num_layers} layer files), {free:,} are free; free some space or choose another "
                      f"--output-dir", str(out_dir))
    maps = [open_memmap_reserved(layer_file(out_dir, li), np.float16, shape) for li in range(layout.num_layers)]
    _write_progress(out_dir, key, 0, num_batches, n, layout)
    return maps, 0


def _write_progress(out_dir: Path, key: str, done: int, num_batches: int, n: int, layout: UnitLayout) -> None:
    atomic_write_json(
        out_dir / PROGRESS,
        {"key": key, "batches_done": done, "num_batches": num_batches, "complete": done >= num_batches,
         "n_samples": n, "layer_width": layout.layer_width, "num_layers": layout.num_layers,
         "modules": list(layout.modules)},
    )


@dataclass(frozen=True)
class CollectOptions:
    """How :func:`collect_activations` pools: ``pool`` (mean, max; pos_frac for LAPE), the padding id,
    ``skip_first[i]`` (leave sample ``i``'s first token, its BOS, out of the pooling), the batch size, what
    else the values depend on (``key_parts``: the resume key), ``labels[i]`` (a name for error messages, e.g.
    the sample's language), progress bars, and ``stop_after`` batches (tests simulate a killed run with it)."""

    pool: str = "mean"
    pad_id: int = 0
    skip_first: Sequence[bool] | None = None
    batch_size: int = 8
    key_parts: dict[str, Any] | None = None
    labels: Sequence[str] | None = None
    progress: bool = True
    stop_after: int | None = None


def collect_activations(model: Any, input_ids: Sequence[Sequence[int]], out_dir: str | Path, layout: UnitLayout,
                        how: CollectOptions | None = None, **options: Any) -> dict[str, Any]:
    """Collect pooled activations of ``input_ids`` (one token list per sample) into ``out_dir``.

    ``how`` (or its fields as keywords: ``pool=...``): see :class:`CollectOptions`. Returns
    ``{"n_tokens": int array of pooled tokens per sample, "complete": bool, ...}`` on every rank.
    """
    how = how if how is not None else CollectOptions(**options)
    if how.pool not in POOLS + ("pos_frac",):
        raise ConfigError(f"--pool: unknown pooling {how.pool!r}; choose from {', '.join(POOLS)}")
    if how.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {how.batch_size}")
    c = _Collection(model, input_ids, Path(out_dir), layout, how)
    maps, done = _open_store(c.out_dir, c.key, c.n, layout, len(c.batches), c.dist.rank)
    if c.dist.active:
        t = torch.tensor([done], dtype=torch.int64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.broadcast(t, 0)
        done = int(t.item())
    c.run(maps, done)
    if c.dist.rank == 0:
        prog = json.loads((c.out_dir / PROGRESS).read_text())
        complete = bool(prog["complete"])
    else:
        complete = how.stop_after is None
    return {"n_tokens": c.n_pooled, "complete": complete, "num_batches": len(c.batches), "key": c.key}


class _Collection:
    """One collection: the samples, their batches and resume key, the hooks' pooler; :meth:`run` does the
    steps (a batch per rank per step), gathers the pooled rows and writes them on rank 0."""

    def __init__(self, model: Any, input_ids: Sequence[Sequence[int]], out_dir: Path, layout: UnitLayout,
                 how: CollectOptions) -> None:
        self.model, self.input_ids, self.out_dir, self.layout, self.how = model, input_ids, out_dir, layout, how
        self.dist = dist_info()
        self.n = len(input_ids)
        self.lengths = np.array([len(x) for x in input_ids], dtype=np.int64)
        self.skip = np.zeros(self.n, dtype=bool) if how.skip_first is None else np.asarray(how.skip_first, dtype=bool)
        self.n_pooled = self.lengths - self.skip.astype(np.int64)
        if self.n and self.n_pooled.min() < 1:
            i = int(np.argmin(self.n_pooled))
            raise InputError(f"sample {i}{f' ({how.labels[i]})' if how.labels else ''} has no token to pool")
        self.batches = batches_by_length(self.lengths, how.batch_size)
        self.key = run_key({**(how.key_parts or {}), "pool": how.pool, "batch_size": how.batch_size,
                            "layout": [layout.modules, layout.sizes, layout.num_layers],
                            "tokens": hashlib.sha256(json.dumps([list(map(int, x)) for x in input_ids]).encode()).hexdigest(),
                            "skip": hashlib.sha256(self.skip.tobytes()).hexdigest()})
        self.device = next(model.parameters()).device

    def run(self, maps: list[np.memmap] | None, done: int) -> None:
        """Every remaining batch (this rank's share), from batch ``done`` on."""
        dist, how = self.dist, self.how
        self.pooler = _Pooler(how.pool, self.layout.total, self.device)
        handles = [mod.register_forward_hook(self.pooler.hook(off, w)) for (_l, _n, mod, off, w) in
                   _hook_targets(self.model, self.layout)]
        self.runner = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model  # no LM head needed
        remaining = list(range(done, len(self.batches)))
        steps = math.ceil(len(remaining) / dist.world)
        if how.stop_after is not None:
            steps = min(steps, max(0, math.ceil((how.stop_after - done) / dist.world)))
        bar = None
        if how.progress and dist.rank == 0 and steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(self.batches), initial=done, desc="activations", unit="batch")
        try:
            with torch.inference_mode():
                for s in range(steps):
                    pos = s * dist.world + dist.rank
                    blocks, rowss, bads = self.gather(*self.forward(remaining[pos] if pos < len(remaining) else None))
                    self.check_finite(bads, rowss)
                    if dist.rank == 0:
                        self.store(maps, blocks, rowss)
                        done = min(len(self.batches), remaining[0] + (s + 1) * dist.world) if remaining else done
                        _write_progress(self.out_dir, self.key, done, len(self.batches), self.n, self.layout)
                        if bar is not None:
                            bar.n = done
                            bar.refresh()
        finally:
            for h in handles:
                h.remove()
            if bar is not None:
                bar.close()

    def forward(self, b: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pooled block [batch_size, U] fp16, sample rows (-1: none), first non-finite column or -1) of batch
        ``b`` (None: this rank has no batch in this step, an empty block)."""
        batch_size, device = self.how.batch_size, self.device
        rows = np.full(batch_size, -1, dtype=np.int64)
        bad = torch.tensor([-1], dtype=torch.int64, device=device)
        if b is None:
            block = torch.zeros((batch_size, self.layout.total), dtype=torch.float16, device=device)
            return block, torch.as_tensor(rows, device=device), bad
        idx = self.batches[b]
        rows[: len(idx)] = idx
        T = int(self.lengths[idx].max())
        ids = torch.full((len(idx), T), self.how.pad_id, dtype=torch.long)
        att = torch.zeros((len(idx), T), dtype=torch.long)
        for j, i in enumerate(idx):
            ids[j, : self.lengths[i]] = torch.as_tensor(self.input_ids[i])
            att[j, : self.lengths[i]] = 1
        pmask = att.clone()
        pmask[torch.as_tensor(self.skip[idx]), 0] = 0
        self.pooler.start(pmask)
        self.runner(input_ids=ids.to(device), attention_mask=att.to(device), use_cache=False)
        out = self.pooler.buf
        finite = torch.isfinite(out).all(0) & (out.abs() <= FP16_MAX).all(0)
        if not bool(finite.all()):
            bad[0] = int((~finite).nonzero()[0, 0])
        block = out.to(torch.float16)
        if len(idx) < batch_size:
            block = torch.cat([block, block.new_zeros((batch_size - len(idx), block.shape[1]))])
        return block, torch.as_tensor(rows, device=device), bad

    def gather(self, block: torch.Tensor, rows_t: torch.Tensor,
               bad: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Every rank's block, rows and non-finite column (one process: its own)."""
        if not self.dist.active:
            return [block], [rows_t], [bad]
        world = self.dist.world
        blocks = [torch.empty_like(block) for _ in range(world)]
        rowss = [torch.empty_like(rows_t) for _ in range(world)]
        bads = [torch.empty_like(bad) for _ in range(world)]
        torch.distributed.all_gather(blocks, block)
        torch.distributed.all_gather(rowss, rows_t)
        torch.distributed.all_gather(bads, bad)
        return blocks, rowss, bads

    def check_finite(self, bads: list[torch.Tensor], rowss: list[torch.Tensor]) -> None:
        labels = self.how.labels
        for bd, rw in zip(bads, rowss):
            col = int(bd.item())
            if col >= 0:
                layer, mod, index = self.layout.locate(col)
                first = [int(r) for r in rw.cpu().numpy() if r >= 0]
                who = f" (batch with samples of {', '.join(sorted({labels[i] for i in first}))})" if labels else ""
                raise NonFiniteActivationError(
                    f"non-finite or fp16-overflowing activation (NaN/inf or |x| > {FP16_MAX:g}) in layer {layer}, "
                    f"module {mod}, unit {index}{who}; try --dtype float32 or check the model weights"
                )

    def store(self, maps: list[np.memmap] | None, blocks: list[torch.Tensor], rowss: list[torch.Tensor]) -> None:
        """Rank 0: write the gathered rows into the per-layer memmaps and flush them."""
        width = self.layout.layer_width
        for bd, rw in zip(blocks, rowss):
            rw = rw.cpu().numpy()
            keep = rw >= 0
            if not keep.any():
                continue
            arr = bd.cpu().numpy()[keep]
            rsel = rw[keep]
            order = np.argsort(rsel)
            rsel, arr = rsel[order], arr[order]
            for li, m in enumerate(maps or []):
                m[rsel] = arr[:, li * width : (li + 1) * width]
        for m in maps or []:
            m.flush()


def load_activations(out_dir: str | Path, num_layers: int, mmap: bool = True) -> list[np.ndarray]:
    return [np.load(layer_file(Path(out_dir), li), mmap_mode="r" if mmap else None) for li in range(num_layers)]


def activation_matrix(out_dir: str | Path, num_layers: int) -> np.ndarray:
    """All layers side by side: ``[N, U_total]`` fp16 (in memory)."""
    return np.concatenate(load_activations(out_dir, num_layers), axis=1)
