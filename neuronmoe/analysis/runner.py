"""Streaming driver of the per-expert analysis: batches -> routed pooling -> on-disk memmaps -> AP.

Per batch, every (layer, expert) gets the per-sentence means of eq. 5 (all of a sentence's tokens are in
one batch, so a sentence is complete after its batch); they are written into one float32 ``[N, U]``
memmap per (layer, expert) under ``work_dir`` together with the routed-token counts. Per-token
activations never outlive their batch. A progress file records the batches done, so a killed run
resumes where it stopped. AP is then computed one (layer, expert) at a time.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from neuronmoe.analysis.expert_ap import (
    ExpertResult,
    UnitLayout,
    expert_ap,
    expert_name,
    pool_routed,
)
from neuronmoe.errors import ConfigError, InputError
from neuronmoe.utils.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class Sample:
    text: str
    lang: str


def read_samples(samples_dir: str | Path, languages: Sequence[str], limit: int | None = None) -> list[Sample]:
    """``samples/<lang>.jsonl`` (``{"text", "lang", ...}``) for each language, in language order."""
    from neuronmoe.utils.checks import verify_inputs
    from neuronmoe.utils.io import read_texts

    paths = [Path(samples_dir) / f"{lang}.jsonl" for lang in languages]
    verify_inputs(Path(samples_dir).parent, paths, what="analysis samples")  # against data/manifest.json
    return [Sample(t, lang) for lang, p in zip(languages, paths) for t in read_texts(p, lang, limit)]


def _dense_hooks(model: Any, layers: Sequence[int], mask_box: dict[str, Any]) -> tuple[dict[int, dict[str, Any]], list[Any]]:
    """Forward hooks that pool dense MLP layers inside the forward (gate pre-activation, up, down).

    Each hook reduces its output to per-sentence sums over the non-padding tokens (``mask_box["mask"]``,
    set before the forward), so no ``[B, T, units]`` tensor outlives its module's forward.
    """
    from neuronmoe.models.arch import decoder_layers, get_arch, mlp_module

    spec = get_arch(model)
    store: dict[int, dict[str, Any]] = {}
    handles = []
    dls = decoder_layers(model)
    for li in layers:
        mlp = mlp_module(dls[li], spec)
        store[li] = {}
        for key, proj in zip(("gate", "up", "down"), spec.mlp_proj):
            def hook(_m, _inp, out, _li=li, _key=key):
                m = mask_box["mask"].to(out.device).float().unsqueeze(-1)
                store[_li][_key] = (out.detach().float() * m).sum(dim=1).double().cpu()

            handles.append(getattr(mlp, proj).register_forward_hook(hook))
    return store, handles


def _moe_capture(model: Any):
    from neuronmoe.moe import capture_routing

    return capture_routing(model, activations=True)


@dataclass(frozen=True)
class PassOptions:
    """How :func:`analyse` runs: batching, the no-token policy (:data:`~neuronmoe.analysis.expert_ap.NO_TOKEN_POLICIES`),
    whether dense layers are analysed, the routing capture and AP function (tests replace them), the device and
    the key a resumed run must match."""

    batch_size: int = 8
    max_length: int = 256
    policy: str = "exclude"
    dense_layers: bool = False
    capture: Callable[[Any], Any] | None = None
    ap_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    device: Any = None
    progress_key: str = ""


def analyse(model: Any, tokenizer: Any, samples: Sequence[Sample], languages: Sequence[str],
            experts_per_layer: Sequence[int], layout: UnitLayout, work_dir: str | Path, how: PassOptions | None = None,
            **options: Any) -> tuple[list[ExpertResult], dict[str, Any]]:
    """Run ``samples`` through ``model`` and return one :class:`ExpertResult` per analysed expert.

    ``experts_per_layer[l]`` counts the base; layers with more than one expert are read from the
    routing capture (``how.capture(model)`` is a context manager yielding an object with ``.layers``,
    default ``neuronmoe.moe.capture_routing(model, activations=True)``); layers with one expert are
    analysed through MLP hooks when ``how.dense_layers`` is true. ``how`` (or its fields as keywords).
    """
    how = how if how is not None else PassOptions(**options)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lang_id = {lang: i for i, lang in enumerate(languages)}
    order = _by_token_length(tokenizer, [x.text for x in samples], how.max_length)
    texts = [samples[i].text for i in order]
    labels = np.array([lang_id[samples[i].lang] for i in order], dtype=np.int64)
    moe_layers = [li for li, e in enumerate(experts_per_layer) if e > 1]
    dense = [li for li, e in enumerate(experts_per_layer) if e <= 1] if how.dense_layers else []
    targets = sorted([(li, e) for li in moe_layers for e in range(experts_per_layer[li])] + [(li, 0) for li in dense])
    if not targets:
        raise ConfigError("nothing to analyse: no MoE layer (all experts_per_layer are 1) and --dense-layers is off")
    key = {"key": how.progress_key, "N": len(texts), "U": layout.total, "targets": [list(t) for t in targets],
           "batch_size": how.batch_size, "max_length": how.max_length, "order": "tokens"}
    done, mm, cnt = _open_arrays(work, key, targets)
    np.save(work / "labels.npy", labels)
    _Collector(model=model, tokenizer=tokenizer, texts=texts, targets=targets, moe_layers=set(moe_layers), dense=dense,
               mm=mm, cnt=cnt, progress_path=work / "progress.json", key=key, capture=how.capture or _moe_capture,
               device=how.device or next(model.parameters()).device).run(done)
    results = []
    for t in targets:
        ap, info = expert_ap(np.asarray(mm[t]), np.asarray(cnt[t]), labels, len(languages), policy=how.policy, ap_fn=how.ap_fn)
        results.append(ExpertResult(layer=t[0], expert=t[1], ap=ap, info=info, dense=t[0] in dense))
    return results, {"sentences": len(texts), "units_per_expert": layout.total, "targets": len(targets),
                     "moe_layers": moe_layers, "dense_layers": dense}


def _by_token_length(tokenizer: Any, texts: list[str], max_length: int) -> list[int]:
    """Sentence indices ordered by token count (then index), so that a batch pads little: ordering by characters
    mixed scripts of very different tokens per character (Greek byte by byte in SmolLM2 next to English), and 45 %
    of the positions the expert analysis ran were padding."""
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return sorted(range(len(texts)), key=lambda i: (len(ids[i]), i))


Arrays = dict[tuple[int, int], np.memmap]


def _open_arrays(work: Path, key: dict[str, Any], targets: list[tuple[int, int]]) -> tuple[int, Arrays, Arrays]:
    """Per-target [N, U] mean and [N] count arrays on disk; resumes after ``rows_done`` when ``key`` matches."""
    N, U = key["N"], key["U"]
    stems = [work / f"L{li:03d}_{expert_name(e)}" for li, e in targets]
    done = 0
    progress_path = work / "progress.json"
    if progress_path.exists() and all(Path(f"{st}.npy").exists() and Path(f"{st}.counts.npy").exists() for st in stems):
        try:
            prog = json.loads(progress_path.read_text())
        except json.JSONDecodeError:
            prog = {}
        if prog.get("config") == key:
            done = int(prog.get("rows_done", 0))
            log.info("resuming the expert analysis after %d/%d sentences", done, N)
    mode = "r+" if done else "w+"
    mm = {t: np.lib.format.open_memmap(f"{st}.npy", mode=mode, dtype=np.float32, shape=(N, U)) for t, st in zip(targets, stems)}
    cnt = {t: np.lib.format.open_memmap(f"{st}.counts.npy", mode=mode, dtype=np.int64, shape=(N,))
           for t, st in zip(targets, stems)}
    return done, mm, cnt


@dataclass
class _Collector:
    """Fills rows ``done..N`` of the per-target arrays batch by batch, recording progress after each batch."""

    model: Any
    tokenizer: Any
    texts: list[str]
    targets: list[tuple[int, int]]
    moe_layers: set[int]
    dense: list[int]
    mm: Arrays
    cnt: Arrays
    progress_path: Path
    key: dict[str, Any]
    capture: Callable[[Any], Any]
    device: Any

    def run(self, done: int) -> None:
        N, batch_size = len(self.texts), self.key["batch_size"]
        mask_box: dict[str, Any] = {}
        store, handles = _dense_hooks(self.model, self.dense, mask_box) if self.dense else ({}, [])
        handles += _stop_after(self.model, max(t[0] for t in self.targets))
        every = max(1, ((N - done + batch_size - 1) // batch_size) // 10)
        try:
            self.model.eval()
            for start in range(done, N, batch_size):
                B = self.batch(start, store, mask_box)
                if ((start - done) // batch_size + 1) % every == 0 or start + B >= N:
                    log.info("analyze-experts: %d/%d sentences", start + B, N)
        finally:
            for h in handles:
                h.remove()

    def batch(self, start: int, store: dict[int, dict[str, Any]], mask_box: dict[str, Any]) -> int:
        """One batch from row ``start``: forward, pool every target into its arrays, flush, record progress."""
        import torch

        enc = self.tokenizer(self.texts[start : start + self.key["batch_size"]], return_tensors="pt", padding=True,
                             truncation=True, max_length=self.key["max_length"])
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        mask_box["mask"] = mask
        ctx = self.capture(self.model) if self.moe_layers else contextlib.nullcontext(None)
        with torch.no_grad(), ctx as cap, contextlib.suppress(_StopForward):
            # only the analysed layers' activations matter: the forward stops after the last of them (_stop_after),
            # and skips the [B, T, vocab] logits where it gets that far
            self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
        B, mask_cpu = ids.shape[0], mask.cpu()  # one device-to-host copy per batch, not per target
        for t in self.targets:
            means, counts = _target_means(t, store, cap, mask_cpu, B, self.key["U"])
            self.mm[t][start : start + B] = means
            self.cnt[t][start : start + B] = counts
        for v in list(self.mm.values()) + list(self.cnt.values()):
            v.flush()
        atomic_write_json(self.progress_path, {"config": self.key, "rows_done": start + B})
        store_clear(store)
        return B


class _StopForward(Exception):
    """Raised after the last analysed layer: nothing the forward computes after it is read."""


def _stop_after(model: Any, layer: int) -> list[Any]:
    """A forward hook ending the forward after decoder layer ``layer`` (none when it is the last layer)."""
    from neuronmoe.models.arch import decoder_layers

    dls = decoder_layers(model)
    if layer >= len(dls) - 1:
        return []

    def stop(*_: Any) -> None:
        raise _StopForward

    return [dls[layer].register_forward_hook(stop)]


def _target_means(target: tuple[int, int], store: dict[int, dict[str, Any]], cap: Any, mask_cpu: Any, B: int,
                  U: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch's per-sentence mean activations [B, U] and routed-token counts [B] of one (layer, expert)."""
    import torch

    li, e = target
    if li in store:  # a dense layer, read through MLP hooks
        sums = torch.cat([store[li][k] for k in ("gate", "up", "down")], dim=1)
        counts = mask_cpu.sum(dim=1).numpy().astype(np.int64)
        means = (sums / torch.as_tensor(counts).clamp(min=1).unsqueeze(1).double()).float().numpy()
        means[counts == 0] = np.nan
    else:
        layer = cap.layers.get(li) if cap is not None else None
        if layer is None:
            raise InputError(f"the routing capture has no layer {li}; is it a MoE layer of this adapter?")
        a = layer["acts"].get(e)
        if a is None or len(a["token_index"]) == 0:
            means, counts = np.full((B, U), np.nan, np.float32), np.zeros(B, np.int64)
        else:
            means, counts = pool_routed(a, mask_cpu)
    if means.shape[1] != U:
        raise ValueError(f"layer {li} {expert_name(e)}: {means.shape[1]} units, expected {U}")
    return means, counts


def store_clear(store: dict[int, dict[str, Any]]) -> None:
    for v in store.values():
        v.clear()


def cleanup(work_dir: str | Path) -> None:
    """Remove the pooled-activation memmaps once the results are written."""
    work = Path(work_dir)
    for p in list(work.glob("L*.npy")) + [work / "labels.npy", work / "progress.json"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    with contextlib.suppress(OSError):
        work.rmdir()

