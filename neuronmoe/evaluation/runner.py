"""``neuronmoe evaluate``: a dense base or base + MoE adapter through lm-eval, in this process.

A run is a list of *cells* (one lm-eval task or group per benchmark and language, see
``cells.py``). Before the model is loaded, every cell's task is built (its data loaded, an unpinned
dataset at its resolved commit), the pinned revisions and the few-shot pools checked. Then each cell
is one call of lm-eval's ``evaluate`` on the same loaded model (seeded per cell, rolling
log-likelihoods by :func:`scoring_lm_class`), and its results are written at once:

* ``cells/<benchmark>__<lang>.json``: lm-eval's result dict of the cell, its fingerprints and the
  dataset commit it read (``provenance.py``);
* ``items/<benchmark>__<lang>.jsonl``: per-item results (doc id and hash, acc / acc_norm and the item's
  baselines, or log-likelihood with bytes and words) that the report's paired tests and bootstrap read;
* ``results.json``: every finished cell merged into one lm-eval JSON, rewritten after each cell;
* ``manifest.json``: written once every cell has a result (the completion marker).

A rerun reuses cells whose fingerprint is unchanged, recomputes those whose dataset moved to another
commit and runs the rest; a cell that fails is reported (``results.json``: ``neuronmoe.cells``) while
the others still run, and one that finished earlier but cannot be rebuilt keeps its result, marked.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronmoe.errors import StateError
from neuronmoe.evaluation.suites import TaskSpec
from neuronmoe.utils.io import json_default

if TYPE_CHECKING:
    from neuronmoe.evaluation.settings import EvaluateSettings

log = logging.getLogger(__name__)

_MERGE_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
#: lm-eval computes no standard error at all with bootstrap_iters=0; accuracies get the closed
#: form whatever this is, bootstrappable aggregations (f1, perplexity, ...) this many resamples
BOOTSTRAP_ITERS = 1000


class CellsFailedError(StateError):
    """Some cells failed; the others' results are written."""


def read_adapter_config(adapter: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` of a complete, unchanged adapter folder (:func:`neuronmoe.models.adapter.check_adapter_folder`)."""
    from neuronmoe.models.adapter import read_adapter_config as read

    return read(adapter, "--adapter")


def check_adapter(adapter_cfg: dict[str, Any], base_config: Any, adapter: str = "") -> None:
    """Refuse an adapter made for another base (fingerprint, else layer count) before loading it."""
    from neuronmoe.utils.checks import check_fits_base

    epl = adapter_cfg.get("experts_per_layer")
    check_fits_base(epl if isinstance(epl, list) else None, adapter_cfg.get("base_model_fingerprint"), base_config,
                    f"--adapter {adapter}", hint=f"pass the --model it was trained on (adapter_config.json: "
                    f"base_model_name_or_path={adapter_cfg.get('base_model_name_or_path')!r})")
    if adapter:  # no fingerprint recorded: the weights' shapes still tell (one line, not a size-mismatch traceback)
        from neuronmoe.models.adapter import check_adapter_fits, check_adapter_weights
        from neuronmoe.utils.fingerprint import config_fingerprint

        check_adapter_weights(adapter)  # present, whole, unchanged: never a hub lookup of a local path
        check_adapter_fits(adapter, base_config if isinstance(base_config, dict) else config_fingerprint(base_config))


def adapter_facts(adapter: str | Path | None, base_config: Any) -> dict[str, Any]:
    """#experts and added parameters of an adapter (from its config; allocation.json beside it if any)."""
    if not adapter:
        return {"experts": None, "new_experts": 0, "added_params": 0, "experts_per_layer": None}
    cfg = read_adapter_config(adapter)
    epl = [int(e) for e in cfg.get("experts_per_layer") or []]
    alloc_path = Path(adapter).parent / "allocation.json"
    alloc: dict[str, Any] = {}
    if alloc_path.exists():
        try:
            alloc = json.loads(alloc_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            alloc = {}
    return {
        "experts": int(sum(epl)) if epl else alloc.get("total_experts"),
        "new_experts": int(sum(e - 1 for e in epl)) if epl else alloc.get("new_experts"),
        "added_params": added_params(epl, base_config) if epl else alloc.get("added_params"),
        "experts_per_layer": epl or alloc.get("experts_per_layer"),
    }


def added_params(experts_per_layer: list[int], base_config: Any) -> int:
    """Parameters an MoE adapter adds: a gated-MLP copy per new expert + a router (H x E_l) per MoE layer."""
    from neuronmoe.models.arch import model_dims

    d = model_dims(base_config)
    h, i = d["hidden_size"], d["intermediate_size"]
    per_expert = 3 * h * i
    return int(sum((e - 1) * per_expert + h * e for e in experts_per_layer if e > 1))


@dataclass
class EvalPlan:
    """What a run evaluates and where it writes, resolved from :class:`EvaluateSettings` by ``stage.plan_run``."""

    specs: list[TaskSpec]
    run_name: str
    run_dir: Path
    include_paths: list[str] = field(default_factory=list)
    suite: str | None = None
    task_dirs: list[str] | None = None  #: lm-eval task folders the suite lives in (None: index all of lm-eval)

    @property
    def require_pins(self) -> bool:
        """The paper suite: every hub dataset needs a pinned revision (or --allow-unpinned)."""
        return self.suite == "paper"


def cell_file(key: str) -> str:
    """``arc/en`` -> ``arc__en`` (file stem of a cell's outputs)."""
    return key.replace("/", "__")


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One lm-eval result dict from several cells' outputs (disjoint tasks)."""
    if not parts:
        return {}
    out = {k: v for k, v in parts[-1].items() if k != "samples"}
    for k in _MERGE_KEYS:
        out[k] = {}
        for p in parts:
            out[k].update(p.get(k) or {})
    return out


def compact_items(samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-item rows from lm-eval's samples: task, doc id and hash, each metric's per-item value, and the item's own
    baselines where the document carries them (the local cloze: chance, unigram-frequency guesser)."""
    rows = []
    for task, docs in samples.items():
        for s in docs:
            if s.get("filter", "none") != "none":
                continue
            row = {"task": task, "doc_id": s.get("doc_id"), "doc_hash": s.get("doc_hash")}
            for m in s.get("metrics") or []:
                v = s.get(m)
                row[m] = list(v) if isinstance(v, tuple) else v
            doc = s.get("doc")
            if isinstance(doc, dict) and isinstance(doc.get("baselines"), dict):
                row["baselines"] = doc["baselines"]
            rows.append(row)
    return rows


def baseline_summary(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``{"items", <baseline>: mean, <baseline>_se: standard error}`` over the items that carry baselines."""
    from neuronmoe.evaluation.stats import mean_se

    rows = [r["baselines"] for r in items if isinstance(r.get("baselines"), dict)]
    if not rows:
        return None
    out: dict[str, Any] = {"items": len(rows)}
    for name in sorted({k for r in rows for k in r}):
        vals = [float(r[name]) for r in rows if name in r]
        out[name] = sum(vals) / len(vals)
        out[f"{name}_se"] = mean_se(vals)
    return out


def load_for_eval(model: str | None, adapter: str | None, dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer): the base, with the adapter applied (after the compatibility check)."""
    from neuronmoe.models import load_config, load_model, load_tokenizer

    base_cfg = load_config(model)
    if adapter:
        check_adapter(read_adapter_config(adapter), base_cfg, adapter)
    tok = load_tokenizer(model, padding_side="left")
    m = load_model(model, dtype=dtype, device=device)
    if adapter:
        from neuronmoe.models.adapter import load_adapter

        m = load_adapter(m, adapter, "--adapter")
        m.eval()
    return m, tok


_SCORING_LM: list[type] = []


def scoring_lm_class() -> type:
    """lm-eval's ``HFLM`` with one change: a rolling log-likelihood (bits per byte, perplexity) scores exactly the
    document's own tokens, conditioned on one start token.

    lm-eval encodes the document with the tokenizer's defaults and then puts its prefix token (BOS, else EOS) in
    front of it. A tokenizer that adds a BOS by default (Llama-3, Gemma, Mistral) thus yields BOS BOS text, and
    every document pays -log P(BOS | BOS) as if it were text. Here the document is encoded without special tokens,
    so lm-eval's own prefix is the one start token; for tokenizers that add none, nothing changes. Multiple-choice
    requests keep lm-eval's encoding (a context with the tokenizer's BOS in front). The scoring itself is
    :mod:`neuronmoe.evaluation.shared_context` (the same numbers as lm-eval's; ``share_context = False`` restores
    lm-eval's own code): the options of one question on one pass of their shared context, everything else with
    the LM head only on the scored positions and batches bounded in tokens."""
    if not _SCORING_LM:
        from lm_eval.models.huggingface import HFLM

        class DocumentScoringHFLM(HFLM):
            share_context = True

            def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False,
                                      override_bs: int | None = None) -> list[tuple[float, bool]]:
                if not self.share_context or self.backend != "causal":
                    return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
                from neuronmoe.evaluation.shared_context import loglikelihood_shared

                return loglikelihood_shared(self, requests)

            def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
                saved = self.add_bos_token
                self.add_bos_token = False  # tok_encode: add_special_tokens=False for the documents
                try:
                    return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
                finally:
                    self.add_bos_token = saved

        _SCORING_LM.append(DocumentScoringHFLM)
    return _SCORING_LM[0]


def make_lm(model: Any, tok: Any, batch_size: str | int, max_length: int | None = None) -> Any:
    """lm-eval's HFLM (:func:`scoring_lm_class`) over an instantiated model; data-parallel when launched by accelerate."""
    lm = scoring_lm_class()(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length)
    try:
        from accelerate import PartialState

        cpu = next(iter(model.parameters())).device.type == "cpu"
        state = PartialState(cpu=cpu)  # under torchrun / accelerate launch: one process per device
        if state.num_processes > 1:
            # HFLM forgoes distributed setup for a passed model; each rank holds its own
            # replica (load_model put it on this rank's device), so lm-eval's own
            # data-parallel path (split requests by rank, gather) applies unchanged.
            from accelerate import Accelerator

            lm.accelerator = Accelerator(cpu=cpu)
            lm._rank = state.process_index
            lm._world_size = state.num_processes
    except Exception as e:  # pragma: no cover - accelerate missing or not initialised
        log.debug("no distributed setup: %s", e)
    return lm


def run_cell(lm: Any, obj: Any, tm: Any, seed: int, limit: float | None) -> dict[str, Any] | None:
    """One cell through lm-eval's ``evaluate`` (what ``simple_evaluate`` does for a built task, minus
    its per-call environment report): seeds set for this cell alone, so that a resumed run gives the
    same numbers as an uninterrupted one. None on ranks other than 0."""
    import random

    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate as lm_eval_evaluate

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    loaded = tm.load(obj if isinstance(obj, list) else [obj])
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    res = lm_eval_evaluate(lm=lm, task_dict=loaded, limit=_fmt_limit(limit), bootstrap_iters=BOOTSTRAP_ITERS, log_samples=True)
    if res is None:
        return None
    res = dict(res)
    res["config"] = {"model": "hf (instantiated by neuronmoe)", "limit": _fmt_limit(limit), "bootstrap_iters": BOOTSTRAP_ITERS,
                     "random_seed": seed, "numpy_seed": seed, "torch_seed": seed, "fewshot_seed": seed}
    return res


def _fmt_limit(limit: float | None) -> float | int | None:
    if limit is None:
        return None
    return int(limit) if float(limit) >= 1 and float(limit).is_integer() else float(limit)


class _RunState:
    """The cell files of a run folder: what is done, and with which fingerprint."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.parts: dict[str, dict[str, Any]] = {}
        cdir = run_dir / "cells"
        if cdir.is_dir():
            for p in sorted(cdir.glob("*.json")):
                try:
                    d = json.loads(p.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    continue  # a torn write cannot happen (atomic), but never trust a file blindly
                if isinstance(d, dict) and "cell" in d:
                    self.parts[d["cell"]] = d

    def write(self, key: str, part: dict[str, Any], items: list[dict[str, Any]], samples: dict[str, Any] | None) -> None:
        from neuronmoe.utils.io import atomic_write_json, atomic_write_text

        stem = cell_file(key)
        if samples is not None:
            text = "".join(json.dumps(r, ensure_ascii=False, default=_default) + "\n" for docs in samples.values() for r in docs)
            atomic_write_text(self.run_dir / "samples" / f"{stem}.jsonl", text)
        atomic_write_text(self.run_dir / "items" / f"{stem}.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False, default=_default) + "\n" for r in items))
        part["items"] = f"items/{stem}.jsonl"
        atomic_write_json(self.run_dir / "cells" / f"{stem}.json", _jsonable(part))
        self.parts[key] = part


def evaluate(settings: EvaluateSettings, plan: EvalPlan, tm: Any | None = None) -> Path | None:
    """Run the plan cell by cell; write ``<run>/results.json`` (after every cell) and ``manifest.json``
    (under the run folder's lock: a second evaluation into it stops with a message naming the first)."""
    from neuronmoe.utils.lock import output_lock

    with output_lock(plan.run_dir, f"evaluation run folder {plan.run_dir}"):
        return _evaluate(settings, plan, tm)


@dataclass
class _Run:
    """One evaluation in progress: its settings and plan, the cells, what was built, failed, kept, is to run."""

    settings: EvaluateSettings
    plan: EvalPlan
    cells: list[Any]
    base_config: Any
    state: Any
    identity: dict[str, Any]
    built: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # finished earlier, could not be rebuilt now: result kept
    fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)
    todo: list[Any] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir


def _evaluate(s: EvaluateSettings, plan: EvalPlan, tm: Any | None = None) -> Path | None:
    tm = tm or task_manager_for_plan(plan)
    run = _prepare(s, plan, tm)
    _build_cells(run, tm)
    _plan_work(run)
    rank0 = _run_cells(run, tm)
    if not rank0:
        return None
    _write_results(run)
    if run.failed:
        raise CellsFailedError(
            f"{len(run.failed)} of {len(run.cells)} cell(s) failed ({'; '.join(f'{k}: {v}' for k, v in run.failed.items())}); "
            f"the other results are in {run.run_dir}/results.json. Rerun the same command to retry only these."
        )
    _write_manifest(run)
    return run.run_dir


def task_manager_for_plan(plan: EvalPlan) -> Any:
    """lm-eval's task index for the plan: the suite's folders when they hold every task, else all of lm-eval."""
    from neuronmoe.evaluation.taskindex import task_manager_for

    return task_manager_for(list(dict.fromkeys(x.task for x in plan.specs)), plan.include_paths, plan.task_dirs)


def _prepare(s: EvaluateSettings, plan: EvalPlan, tm: Any) -> _Run:
    """Checks made before any data or weights are loaded (task names, pins, network, the adapter's base), the
    commit of every unpinned dataset, the run's identity and the run folder's finished cells."""
    from neuronmoe.evaluation.cells import check_pins, plan_cells, resolve_unpinned
    from neuronmoe.evaluation.provenance import run_identity
    from neuronmoe.evaluation.suites import load_dataset_pins
    from neuronmoe.evaluation.taskindex import check_network, check_tasks, datasets_needed
    from neuronmoe.models import load_config

    specs = [replace(x, shots=s.num_fewshot) for x in plan.specs] if s.num_fewshot is not None else list(plan.specs)
    check_tasks([x.task for x in specs], tm)
    cells = plan_cells(specs, tm, load_dataset_pins(), s.dataset_replicas)
    check_pins(cells, allow_unpinned=s.allow_unpinned or not plan.require_pins)
    if not s.dataset_replicas:  # hub data absent from the cache and no network: say so now, not per cell
        offline = check_network(datasets_needed([c.spec.task for c in cells], tm))["offline"]
        resolve_unpinned(cells, online=not offline)
    base_cfg = load_config(s.model)
    if s.adapter:
        check_adapter(read_adapter_config(s.adapter), base_cfg, s.adapter)
    return _Run(settings=s, plan=plan, cells=cells, base_config=base_cfg, state=_RunState(plan.run_dir),
                identity=run_identity(s))


def _build_cells(run: _Run, tm: Any) -> None:
    """Build every cell's task (its data loaded). A cell that cannot be built fails, unless it finished earlier
    with the same model, settings and spec: then its result is kept, marked as reused (the hub may be down)."""
    from neuronmoe.evaluation.cells import build_cell, check_shots
    from neuronmoe.evaluation.provenance import identity_fingerprint

    for cell in run.cells:
        try:
            run.built[cell.key] = build_cell(cell, tm)
        except Exception as e:  # noqa: BLE001 - reported with the others, the rest still run
            why = f"{type(e).__name__}: {e}"
            old = run.state.parts.get(cell.key)
            if old and old.get("identity") == identity_fingerprint(run.identity, cell):
                log.warning("%s: could not rebuild %s (%s); keeping the result computed earlier", cell.key, cell.spec.task, why)
                run.kept[cell.key] = f"could not rebuild ({why}); the result computed earlier is kept"
            else:
                log.error("%s: could not build %s: %s", cell.key, cell.spec.task, e)
                run.failed[cell.key] = f"could not load: {why}"
    check_shots(run.cells, run.built)


def _plan_work(run: _Run) -> None:
    """Fingerprint every built cell and compare with the run folder's cells: the same fingerprint is reused, a new
    dataset commit alone is recomputed, other inputs are refused unless --overwrite; the rest is to do."""
    from neuronmoe.evaluation.provenance import cell_fingerprints

    run.fingerprints = {c.key: cell_fingerprints(run.identity, c, run.built[c.key]) for c in run.cells if c.key in run.built}
    parts = run.state.parts
    stale = [k for k, fp in run.fingerprints.items()
             if k in parts and parts[k].get("fingerprint") != fp["fingerprint"] and parts[k].get("inputs") != fp["inputs"]]
    if stale and not run.settings.overwrite:
        raise StateError(
            f"{run.run_dir}: results of {', '.join(stale)} were made with other inputs (model, adapter, data, shots, seed, "
            "limit, ...); pass --overwrite to replace them or choose another --run-name"
        )
    run.todo = [c for c in run.cells
                if c.key in run.built and parts.get(c.key, {}).get("fingerprint") != run.fingerprints[c.key]["fingerprint"]]
    for c in run.todo:
        if c.key in parts and parts[c.key].get("inputs") == run.fingerprints[c.key]["inputs"]:
            log.info("%s: %s is now read at %s (was %s): recomputing", c.key, c.dataset, c.data_revision(),
                     (parts[c.key].get("dataset_revision") or {}).get("revision"))
    done = len(run.fingerprints) - len(run.todo)
    if done:
        log.info("%s: %d cell(s) already done with the same inputs, %d to run", run.run_dir, done, len(run.todo))
    run.facts = adapter_facts(run.settings.adapter, run.base_config)
    if run.todo:  # the completion marker of an earlier complete run no longer holds
        (run.run_dir / "manifest.json").unlink(missing_ok=True)


def _run_cells(run: _Run, tm: Any) -> bool:
    """Evaluate the cells to do on one loaded model, writing each at once; False on ranks other than 0."""
    s = run.settings
    if not run.todo:
        return True
    model, tok = load_for_eval(s.model, s.adapter, s.dtype, s.device)
    lm = make_lm(model, tok, s.batch_size, s.max_length)
    rank0 = getattr(lm, "rank", 0) == 0
    p = next(iter(model.parameters()))
    where = {"dtype": str(p.dtype).replace("torch.", ""), "device": str(p.device)}
    for cell in run.todo:
        log.info("lm-eval: %s (%s, %s shots)", cell.key, cell.spec.task, cell.spec.shots if cell.spec.shots is not None else "task default")
        tc = time.time()
        try:
            res = run_cell(lm, run.built[cell.key], tm, s.seed, s.limit)
        except Exception as e:  # noqa: BLE001 - one failing cell must not cost the others
            log.exception("%s failed", cell.key)
            run.failed[cell.key] = f"{type(e).__name__}: {e}"
            continue
        if res is None or not rank0:
            continue
        samples = res.pop("samples", {}) or {}
        part = {"cell": cell.key, **run.fingerprints[cell.key], "spec": cell.spec.to_dict(),
                "dataset_revision": _revision_record(cell), "wall_s": round(time.time() - tc, 2), **where, "result": res}
        items = compact_items(samples)
        base = baseline_summary(items)
        if base:
            part["baselines"] = base
        run.state.write(cell.key, part, items, samples if s.log_samples else None)
        run.failed.pop(cell.key, None)
        _write_results(run)
    return rank0


def _revision_record(cell: Any) -> dict[str, Any] | None:
    """What a cell's data were read at: ``{"dataset", "revision", "pinned"}`` (+ ``replica``); None for local files."""
    if not cell.dataset:
        return None
    rec = {"dataset": cell.dataset, "revision": cell.data_revision(), "pinned": cell.pinned}
    return {**rec, "replica": cell.replica} if cell.replica else rec


def _revisions(run: _Run) -> dict[str, Any]:
    """``{hub dataset: what it was read at}`` over the cells of this run (each cell's own record is in its status)."""
    out: dict[str, Any] = {}
    for c in run.cells:
        rec = _revision_record(c)
        if rec and c.dataset not in out:
            out[c.dataset] = {k: v for k, v in rec.items() if k != "dataset"}
    return out


def _cell_status(run: _Run) -> dict[str, Any]:
    status = {}
    for c in run.cells:
        if c.key in run.failed:
            status[c.key] = {"status": "failed", "error": run.failed[c.key]}
        elif c.key in run.state.parts:
            p = run.state.parts[c.key]
            status[c.key] = {"status": "done", "task": c.spec.task, "items": p.get("items"), "wall_s": p.get("wall_s")}
            for k in ("dataset_revision", "baselines"):
                if p.get(k):
                    status[c.key][k] = p[k]
            if c.key in run.kept:
                status[c.key].update(reused=True, note=run.kept[c.key])
        else:
            status[c.key] = {"status": "pending"}
    return status


def _write_results(run: _Run) -> Path:
    from neuronmoe.utils.io import atomic_write_json

    s = run.settings
    parts = [run.state.parts[c.key] for c in run.cells if c.key in run.state.parts and c.key not in run.failed]
    results = merge_results([p["result"] for p in parts])
    results.setdefault("results", {})
    status = _cell_status(run)
    results["neuronmoe"] = {
        "label": s.label or run.plan.run_name,
        "model": s.model,
        "adapter": str(s.adapter) if s.adapter else None,
        "suite": run.plan.suite,
        "profile": s.profile,
        "tasks": [c.spec.to_dict() for c in run.cells],
        "cells": status,
        "complete": all(v["status"] == "done" for v in status.values()),
        "datasets": _revisions(run),
        "dataset_replicas": s.dataset_replicas,
        **run.facts,
    }
    return atomic_write_json(run.run_dir / "results.json", _jsonable(results))


def _write_manifest(run: _Run) -> None:
    import torch

    from neuronmoe.models import describe
    from neuronmoe.utils import Manifest, sha256_file, write_manifest
    from neuronmoe.utils.manifest import describe_files

    s = run.settings
    parts = [run.state.parts[c.key] for c in run.cells]
    inputs: dict[str, Any] = {"model": describe(s.model), "datasets": _revisions(run)}
    if s.adapter:
        a = Path(s.adapter)
        inputs["adapter"] = {"path": str(a.resolve()), **{f.name: sha256_file(f) for f in sorted(a.glob("adapter_*")) if f.is_file()}}
    files = [run.run_dir / "results.json"] + [run.run_dir / p["items"] for p in parts if p.get("items")]
    ran = len(run.todo)
    config = {
        "run_name": run.plan.run_name, "label": s.label or run.plan.run_name, "suite": run.plan.suite,
        "profile": s.profile, "tasks": [c.spec.to_dict() for c in run.cells], "num_fewshot": s.num_fewshot,
        "batch_size": s.batch_size, "dtype": parts[-1].get("dtype") if parts else s.dtype,
        "device": parts[-1].get("device") if parts else s.device, "limit": _fmt_limit(s.limit),
        "seed": s.seed, "max_length": s.max_length, "bootstrap_iters": BOOTSTRAP_ITERS,
        "include_paths": [str(p) for p in run.plan.include_paths], "dataset_replicas": s.dataset_replicas,
    }
    counts = {"wall_s": round(time.time() - run.started, 2), "cells": len(run.cells), "cells_run": ran,
              "cells_reused": len(run.cells) - ran, "cells_kept_without_rebuild": len(run.kept),
              "n_samples": {k: v for p in parts for k, v in (p["result"].get("n-samples") or {}).items()},
              "threads": torch.get_num_threads(), "native_bf16": _native_bf16(parts[-1].get("device") if parts else s.device)}
    write_manifest(run.run_dir, Manifest(stage="evaluate", config=config, inputs=inputs, counts=counts,
                                         files=describe_files(run.run_dir, files), settings=s))


def _native_bf16(device: str | None) -> bool:
    """Whether the device the run used computes bf16 natively (recorded: ``--dtype fast`` would use bf16 there)."""
    from neuronmoe.utils.device import native_bf16

    try:
        return bool(native_bf16(None if device in (None, "auto") else device))
    except Exception:  # noqa: BLE001 - a record, never a reason to fail a finished run
        return False


def _jsonable(obj: Any) -> Any:
    """lm-eval results hold numpy scalars, dtypes and functions here and there: stringify those."""
    return json.loads(json.dumps(obj, default=_default, ensure_ascii=False))


def _default(o: Any) -> Any:
    try:
        return json_default(o)  # numpy scalars and arrays, paths, sets
    except TypeError:
        return str(o)
