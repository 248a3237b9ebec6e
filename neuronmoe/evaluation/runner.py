"""``neuronmoe evaluate``: a dense base or base + MoE adapter through lm-eval, in this process.

A run is a list of *cells* (one lm-eval task or group per benchmark and language, see
``cells.py``). Before the model is loaded, every cell's task is built (its data loaded), the
pinned revisions and the few-shot pools checked. Then each cell is one call of lm-eval's
``evaluate`` on the same loaded model (seeded per cell), and its results are written at once:

* ``cells/<benchmark>__<lang>.json``: lm-eval's result dict of the cell and the cell's fingerprint
  (model, adapter files, resolved task configs, seed, limit, dtype, lm-eval version);
* ``items/<benchmark>__<lang>.jsonl``: per-item results (doc id and hash, acc / acc_norm, or
  log-likelihood with bytes and words) that the report's paired tests and bootstrap read;
* ``results.json``: every finished cell merged into one lm-eval JSON, rewritten after each cell;
* ``manifest.json``: written once every cell has succeeded (the completion marker).

A rerun reuses cells whose fingerprint is unchanged and runs the rest; a cell that fails is
reported (``results.json``: ``neuronmoe.cells``) while the others still run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neuronmoe.cli import CLIError
from neuronmoe.evaluation.suites import TaskSpec
from neuronmoe.utils.io import json_default

log = logging.getLogger(__name__)

_MERGE_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
#: lm-eval computes no standard error at all with bootstrap_iters=0; accuracies get the closed
#: form whatever this is, bootstrappable aggregations (f1, perplexity, ...) this many resamples
BOOTSTRAP_ITERS = 1000


class CellsFailedError(CLIError):
    """Some cells failed; the others' results are written."""


def read_adapter_config(adapter: str | Path) -> dict[str, Any]:
    p = Path(adapter)
    cfg_path = p / "adapter_config.json"
    if not p.is_dir():
        raise FileNotFoundError(f"--adapter {adapter}: no such directory")
    if not cfg_path.exists():
        raise FileNotFoundError(f"--adapter {adapter}: no adapter_config.json (not a PEFT adapter folder)")
    try:
        return json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None


def check_adapter(adapter_cfg: dict[str, Any], base_config: Any, adapter: str = "") -> None:
    """Refuse an adapter made for another base (fingerprint, else layer count) before loading it."""
    from neuronmoe.utils.checks import check_fits_base

    epl = adapter_cfg.get("experts_per_layer")
    check_fits_base(epl if isinstance(epl, list) else None, adapter_cfg.get("base_model_fingerprint"), base_config,
                    f"--adapter {adapter}", hint=f"pass the --model it was trained on (adapter_config.json: "
                    f"base_model_name_or_path={adapter_cfg.get('base_model_name_or_path')!r})")


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
class EvalRequest:
    model: str | None
    specs: list[TaskSpec]
    output_dir: str
    run_name: str
    adapter: str | None = None
    label: str | None = None
    include_paths: list[str] = field(default_factory=list)
    num_fewshot: int | None = None  # overrides every spec
    batch_size: str = "8"
    dtype: str = "auto"
    device: str = "auto"
    limit: float | None = None
    seed: int = 1234
    overwrite: bool = False
    log_samples: bool = False  # also keep lm-eval's full per-document samples (samples/<cell>.jsonl)
    run_dir: str | None = None  # default <output_dir>/eval/<run_name>
    extra_inputs: dict[str, Any] = field(default_factory=dict)
    suite: str | None = None
    profile: str | None = None
    require_pins: bool = False  # the paper suite: every hub dataset needs a pinned revision
    allow_unpinned: bool = False
    replicas: str | None = None  # tests only: read every hub dataset from local replicas
    max_length: int | None = None  # lm-eval's max_length (prompts truncated from the left)


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
    """Per-item rows from lm-eval's samples: task, doc id and hash, and each metric's per-item value."""
    rows = []
    for task, docs in samples.items():
        for s in docs:
            if s.get("filter", "none") != "none":
                continue
            row = {"task": task, "doc_id": s.get("doc_id"), "doc_hash": s.get("doc_hash")}
            for m in s.get("metrics") or []:
                v = s.get(m)
                row[m] = list(v) if isinstance(v, tuple) else v
            rows.append(row)
    return rows


def load_for_eval(model: str | None, adapter: str | None, dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer): the base, with the adapter applied (after the compatibility check)."""
    from neuronmoe.models import load_config, load_model, load_tokenizer

    base_cfg = load_config(model)
    if adapter:
        check_adapter(read_adapter_config(adapter), base_cfg, adapter)
    tok = load_tokenizer(model, padding_side="left")
    m = load_model(model, dtype=dtype, device=device)
    if adapter:
        from peft import PeftModel

        import neuronmoe  # noqa: F401  (registers the NEURONMOE PEFT method in this process)

        m = PeftModel.from_pretrained(m, str(adapter))
        m.eval()
    return m, tok


def make_lm(model: Any, tok: Any, batch_size: str | int, max_length: int | None = None) -> Any:
    """lm-eval's HFLM over an instantiated model; data-parallel when launched by accelerate."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length)
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


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _local_data_digest(obj: Any) -> dict[str, str]:
    """sha256 of local data files the cell reads (generated tasks, replicas): their content is its input."""
    from neuronmoe.evaluation.cells import leaves_of
    from neuronmoe.utils import sha256_file

    out: dict[str, str] = {}
    for t in leaves_of(obj):
        files = (t.config.dataset_kwargs or {}).get("data_files") or {}
        for f in files.values() if isinstance(files, dict) else [files]:
            for p in [f] if isinstance(f, str) else list(f):
                if Path(p).is_file():
                    out[str(p)] = sha256_file(p)
        rep = Path(str(t.config.dataset_path or "")) / "replica.json"
        if rep.is_file():
            out[str(rep)] = sha256_file(rep)
    return out


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


def _identity(request: EvalRequest) -> dict[str, Any]:
    """What makes a cell's numbers: model, adapter files, dtype, seed, limit, lengths, lm-eval version."""
    import lm_eval

    from neuronmoe.models import describe
    from neuronmoe.utils import sha256_file

    ident: dict[str, Any] = {"model": describe(request.model), "dtype": request.dtype, "device": request.device,
                             "seed": request.seed, "limit": _fmt_limit(request.limit), "max_length": request.max_length,
                             "lm_eval": getattr(lm_eval, "__version__", "?")}
    if request.adapter:
        a = Path(request.adapter)
        ident["adapter"] = {f.name: sha256_file(f) for f in sorted(a.glob("adapter_*")) if f.is_file()}
    return ident


def evaluate(request: EvalRequest, tm: Any | None = None) -> Path | None:
    """Run the request cell by cell; write ``<run>/results.json`` (after every cell) and ``manifest.json``
    (under the run folder's lock: a second evaluation into it stops with a message naming the first)."""
    from neuronmoe.utils.lock import output_lock

    run_dir = Path(request.run_dir) if request.run_dir else Path(request.output_dir) / "eval" / request.run_name
    with output_lock(run_dir, f"evaluation run folder {run_dir}"):
        return _evaluate(request, tm)


def _evaluate(request: EvalRequest, tm: Any | None = None) -> Path | None:
    from neuronmoe.evaluation.cells import build_cell, check_pins, check_shots, config_digest, plan_cells
    from neuronmoe.evaluation.suites import load_dataset_pins
    from neuronmoe.evaluation.taskindex import check_network, check_tasks, datasets_needed, task_manager
    from neuronmoe.models import load_config

    run_dir = Path(request.run_dir) if request.run_dir else Path(request.output_dir) / "eval" / request.run_name
    tm = tm or task_manager(request.include_paths)
    specs = [replace(s, shots=request.num_fewshot) for s in request.specs] if request.num_fewshot is not None else list(request.specs)
    check_tasks([s.task for s in specs], tm)
    cells = plan_cells(specs, tm, load_dataset_pins(), request.replicas)
    check_pins(cells, allow_unpinned=request.allow_unpinned or not request.require_pins)
    offline = True
    if not request.replicas:  # hub data absent from the cache and no network: say so now, not per cell
        offline = check_network(datasets_needed([c.spec.task for c in cells], tm))["offline"]
    base_cfg = load_config(request.model)
    if request.adapter:  # before any data or weights are loaded
        check_adapter(read_adapter_config(request.adapter), base_cfg, request.adapter)

    t0 = time.time()
    built: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for cell in cells:
        try:
            built[cell.key] = build_cell(cell, tm)
        except Exception as e:  # noqa: BLE001 - reported with the others, the rest still run
            log.error("%s: could not build %s: %s", cell.key, cell.spec.task, e)
            failed[cell.key] = f"could not load: {type(e).__name__}: {e}"
    check_shots(cells, built)

    ident = _identity(request)
    fps = {c.key: _sha({"identity": ident, "config": config_digest(built[c.key]), "data": _local_data_digest(built[c.key]),
                        "spec": c.spec.to_dict()}) for c in cells if c.key in built}
    state = _RunState(run_dir)
    stale = [k for k, fp in fps.items() if k in state.parts and state.parts[k].get("fingerprint") != fp]
    if stale and not request.overwrite:
        raise FileExistsError(
            f"{run_dir}: results of {', '.join(stale)} were made with other inputs (model, adapter, data, shots, seed, "
            "limit, ...); pass --overwrite to replace them or choose another --run-name"
        )
    todo = [c for c in cells if c.key in built and state.parts.get(c.key, {}).get("fingerprint") != fps[c.key]]
    done = len([c for c in cells if c.key in built]) - len(todo)
    if done:
        log.info("%s: %d cell(s) already done with the same inputs, %d to run", run_dir, done, len(todo))
    revisions = _revisions(cells, resolve=not offline)
    if todo:  # the completion marker of an earlier complete run no longer holds
        (run_dir / "manifest.json").unlink(missing_ok=True)

    lm = None
    model = None
    rank0 = True
    if todo:
        model, tok = load_for_eval(request.model, request.adapter, request.dtype, request.device)
        lm = make_lm(model, tok, request.batch_size, request.max_length)
        rank0 = getattr(lm, "rank", 0) == 0
    facts = adapter_facts(request.adapter, base_cfg)
    for cell in todo:
        log.info("lm-eval: %s (%s, %s shots)", cell.key, cell.spec.task, cell.spec.shots if cell.spec.shots is not None else "task default")
        tc = time.time()
        try:
            res = run_cell(lm, built[cell.key], tm, request.seed, request.limit)
        except Exception as e:  # noqa: BLE001 - one failing cell must not cost the others
            log.exception("%s failed", cell.key)
            failed[cell.key] = f"{type(e).__name__}: {e}"
            continue
        if res is None or not rank0:
            continue
        samples = res.pop("samples", {}) or {}
        p = next(iter(model.parameters()))
        part = {"cell": cell.key, "fingerprint": fps[cell.key], "spec": cell.spec.to_dict(), "wall_s": round(time.time() - tc, 2),
                "dtype": str(p.dtype).replace("torch.", ""), "device": str(p.device), "result": res}
        state.write(cell.key, part, compact_items(samples), samples if request.log_samples else None)
        failed.pop(cell.key, None)
        _write_results(run_dir, request, cells, state, failed, facts, revisions)
    if not rank0:
        return None
    _write_results(run_dir, request, cells, state, failed, facts, revisions)
    if failed:
        raise CellsFailedError(
            f"{len(failed)} of {len(cells)} cell(s) failed ({'; '.join(f'{k}: {v}' for k, v in failed.items())}); "
            f"the other results are in {run_dir}/results.json. Rerun the same command to retry only these."
        )
    _write_manifest(run_dir, request, cells, state, len(todo), time.time() - t0, revisions)
    return run_dir


def _revisions(cells: list[Any], resolve: bool) -> dict[str, Any]:
    """What each hub dataset was read at: the pinned commit, the hub's main (resolved when online), or a replica."""
    from neuronmoe.evaluation.cells import resolve_revision

    out: dict[str, Any] = {}
    for c in cells:
        if not c.dataset or c.dataset in out:
            continue
        if c.replica:
            out[c.dataset] = {"replica": c.replica}
        elif c.pinned:
            out[c.dataset] = {"revision": c.revision, "pinned": True}
        else:
            sha = "main (unresolved: offline)"
            if resolve:
                try:
                    sha = resolve_revision(c.dataset, None)
                except Exception as e:  # noqa: BLE001 - the run goes on; the manifest says what is known
                    sha = f"main (unresolved: {type(e).__name__})"
            out[c.dataset] = {"revision": sha, "pinned": False}
    return out


def _write_results(run_dir: Path, request: EvalRequest, cells: list[Any], state: _RunState, failed: dict[str, str],
                   facts: dict[str, Any], revisions: dict[str, Any]) -> Path:
    from neuronmoe.utils.io import atomic_write_json

    parts = [state.parts[c.key] for c in cells if c.key in state.parts and c.key not in failed]
    results = merge_results([p["result"] for p in parts])
    results.setdefault("results", {})
    status = {}
    for c in cells:
        if c.key in failed:
            status[c.key] = {"status": "failed", "error": failed[c.key]}
        elif c.key in state.parts:
            p = state.parts[c.key]
            status[c.key] = {"status": "done", "task": c.spec.task, "items": p.get("items"), "wall_s": p.get("wall_s")}
        else:
            status[c.key] = {"status": "pending"}
    results["neuronmoe"] = {
        "label": request.label or request.run_name,
        "model": request.model,
        "adapter": str(request.adapter) if request.adapter else None,
        "suite": request.suite,
        "profile": request.profile,
        "tasks": [c.spec.to_dict() for c in cells],
        "cells": status,
        "complete": all(v["status"] == "done" for v in status.values()),
        "datasets": revisions,
        "dataset_replicas": request.replicas,
        **facts,
    }
    return atomic_write_json(run_dir / "results.json", _jsonable(results))


def _write_manifest(run_dir: Path, request: EvalRequest, cells: list[Any], state: _RunState, ran: int,
                    wall: float, revisions: dict[str, Any]) -> None:
    from neuronmoe.models import describe
    from neuronmoe.utils import Manifest, sha256_file, write_manifest
    from neuronmoe.utils.manifest import describe_files

    parts = [state.parts[c.key] for c in cells]
    inputs: dict[str, Any] = {"model": describe(request.model), "datasets": revisions}
    if request.adapter:
        a = Path(request.adapter)
        inputs["adapter"] = {"path": str(a.resolve()), **{f.name: sha256_file(f) for f in sorted(a.glob("adapter_*")) if f.is_file()}}
    inputs.update(request.extra_inputs)
    files = [run_dir / "results.json"] + [run_dir / p["items"] for p in parts if p.get("items")]
    import torch

    write_manifest(
        run_dir,
        Manifest(
            stage="evaluate",
            config={
                "run_name": request.run_name, "label": request.label or request.run_name, "suite": request.suite,
                "profile": request.profile, "tasks": [c.spec.to_dict() for c in cells], "num_fewshot": request.num_fewshot,
                "batch_size": request.batch_size, "dtype": parts[-1].get("dtype") if parts else request.dtype,
                "device": parts[-1].get("device") if parts else request.device, "limit": _fmt_limit(request.limit),
                "seed": request.seed, "max_length": request.max_length, "bootstrap_iters": BOOTSTRAP_ITERS,
                "include_paths": [str(p) for p in request.include_paths], "dataset_replicas": request.replicas,
            },
            inputs=inputs,
            counts={"wall_s": round(wall, 2), "cells": len(cells), "cells_run": ran, "cells_reused": len(cells) - ran,
                    "n_samples": {k: v for p in parts for k, v in (p["result"].get("n-samples") or {}).items()},
                    "threads": torch.get_num_threads()},
            files=describe_files(run_dir, files),
        ),
    )


def _jsonable(obj: Any) -> Any:
    """lm-eval results hold numpy scalars, dtypes and functions here and there: stringify those."""
    return json.loads(json.dumps(obj, default=_default, ensure_ascii=False))


def _default(o: Any) -> Any:
    try:
        return json_default(o)  # numpy scalars and arrays, paths, sets
    except TypeError:
        return str(o)
