"""Disk and network of a plan: what is downloaded (models, corpora, evaluation data), what is written (prepared data,
packed token caches, neuron activations, checkpoints, adapters, evaluation outputs), on which filesystem, and whether
it fits there.

Downloads: the hub's metadata when ``--check`` reads it on a machine with network, otherwise the sizes recorded in
``neuronmoe/configs/budget.yaml`` (each row says which: ``recorded``, ``estimate`` or ``hub``). A streamed corpus
costs network but no disk (``datasets`` streams it file by file and keeps nothing); a non-streamed one is kept in the
hub cache and converted to Arrow in the datasets cache (twice its size on disk).

Checkpoints (``train/<run>/checkpoint-<step>/``, the newest ``save_total_limit`` kept): the adapter's weights (every
new expert and router: fp32 without DeepSpeed, bf16 with it, whose engine casts the module) plus the optimizer state
of the trainable ones: AdamW's two fp32 states (8 bytes, what ``optimizer.pt`` holds) without DeepSpeed, the fp32
master copy and both states (12 bytes) with it. The final ``adapter/`` is the adapter's weights once more.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

GB = 1e9


@dataclass(frozen=True)
class Item:
    """One thing that costs disk or network."""

    what: str
    bytes: float
    where: str  #: "output", "hub-cache", "datasets-cache", "neuronmoe-cache" or "network" (streamed: no disk)
    basis: str  #: "recorded", "estimate", "hub", "exact" or "on disk", with the reason
    downloaded: bool = True  #: False: written here (an Arrow copy of a download), no network

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "bytes": int(self.bytes), "where": self.where, "basis": self.basis,
                "downloaded": self.downloaded}


def checkpoint_bytes(adapter: int, trainable: int, deepspeed: bool) -> int:
    """Bytes of one ``checkpoint-<step>/`` folder: the adapter's weights (``adapter`` parameters: every new expert and
    router, trainable or not) and the optimizer state of the ``trainable`` ones (module docstring)."""
    return int(adapter * (2 if deepspeed else 4) + trainable * (12 if deepspeed else 8))


def checkpoints_kept(steps: int, save_steps: int, save_total_limit: int | None) -> int:
    """How many checkpoint folders a run of ``steps`` leaves (every ``save_steps``, the newest ``save_total_limit``)."""
    if save_steps <= 0 or steps <= 0:
        return 0
    made = steps // save_steps
    return made if not save_total_limit else min(made, int(save_total_limit))


def run_disk(adapter: int, trainable: int, steps: int, save_steps: int, save_total_limit: int | None,
             deepspeed: bool) -> dict[str, int]:
    """Disk of one training run: the kept checkpoints, the final adapter, and their sum (``bytes``)."""
    kept = checkpoints_kept(steps, save_steps, save_total_limit)
    ckpt = kept * checkpoint_bytes(adapter, trainable, deepspeed)
    final = adapter * (2 if deepspeed else 4)
    return {"checkpoints_kept": kept, "checkpoint_bytes": ckpt, "adapter_bytes": final, "bytes": ckpt + final}


def packed_cache_bytes(tokens: float, text_bytes: float) -> float:
    """The packed-token cache of a run's data (``$NEURONMOE_CACHE/tokenized``): the documents copied once into Arrow
    for the seeded shuffle (``text_bytes``) and the blocks, 4-byte token ids + 1-byte language flags per token."""
    return text_bytes + 5.0 * tokens


def streamed_slimpajama(docs: int, buffer: int, rec: Mapping[str, Any]) -> Item:
    """Network of the streamed SlimPajama read: whole files until ``docs`` + the shuffle buffer are read."""
    files = math.ceil((docs + buffer) / float(rec["documents_per_file"]))
    return Item(f"cerebras/SlimPajama-627B: {files} of its ~10,000-document files, streamed", files * float(rec["file_bytes"]),
                "network", f"recorded: {rec['basis']}; the reference's whole train/chunk1* read would be "
                f"{float(rec['whole_recipe_bytes']) / GB:,.0f} GB")


def existing_dir(path: str | os.PathLike) -> Path:
    """``path`` or its nearest existing parent (the filesystem a folder not yet created will live on)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def cache_roots(output_dir: str | os.PathLike, environ: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Where each kind of disk use lives: OUTPUT_DIR, the hub cache, the datasets cache, NEURONMOE_CACHE."""
    env = os.environ if environ is None else environ
    hf_home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface").expanduser()
    return {"output": Path(output_dir),
            "hub-cache": Path(env.get("HF_HUB_CACHE") or hf_home / "hub").expanduser(),
            "datasets-cache": Path(env.get("HF_DATASETS_CACHE") or hf_home / "datasets").expanduser(),
            "neuronmoe-cache": Path(env.get("NEURONMOE_CACHE") or "~/.cache/neuronmoe").expanduser()}


def by_filesystem(items: Iterable[Item], roots: Mapping[str, Path], free: Any = None) -> list[dict[str, Any]]:
    """Totals per filesystem (grouped by device), each with its free bytes and ``fits``. ``free(path)`` -> bytes
    (default: ``shutil.disk_usage``); streamed items cost no disk and are left out."""
    free = free or (lambda p: shutil.disk_usage(p).free)
    groups: dict[Any, dict[str, Any]] = {}
    for it in items:
        if it.where == "network":
            continue
        root = existing_dir(roots[it.where])
        key = root.stat().st_dev
        g = groups.setdefault(key, {"paths": {}, "bytes": 0.0, "free": int(free(root))})
        g["paths"][it.where] = str(roots[it.where])
        g["bytes"] += it.bytes
    return [{"paths": g["paths"], "bytes": int(g["bytes"]), "free_bytes": g["free"], "fits": g["bytes"] <= g["free"]}
            for g in groups.values()]


def disk_problems(filesystems: list[dict[str, Any]]) -> list[str]:
    """One line per filesystem that cannot hold its share."""
    return [f"{', '.join(f'{k} {v}' for k, v in fs['paths'].items())}: the plan writes {fs['bytes'] / GB:,.1f} GB there "
            f"but only {fs['free_bytes'] / GB:,.1f} GB are free; free space, point OUTPUT_DIR / HF_HOME / NEURONMOE_CACHE "
            "elsewhere, or lower save_total_limit"
            for fs in filesystems if not fs["fits"]]
