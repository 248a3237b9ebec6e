"""``neuronmoe evaluate``: a dense base or base + MoE adapter through lm-eval, in this process.

The model is loaded once (``neuronmoe.models.load_model``; the adapter with
``PeftModel.from_pretrained`` after ``import neuronmoe`` registered the method), wrapped in
lm-eval's ``HFLM`` and evaluated once per distinct shot count (suites mix 0/5/25 shots and
``simple_evaluate`` takes one ``num_fewshot``); the results are merged into one lm-eval JSON.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.evaluation.suites import TaskSpec
from neuronmoe.utils.io import json_default

log = logging.getLogger(__name__)

_MERGE_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


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
    log_samples: bool = False
    run_dir: str | None = None  # default <output_dir>/eval/<run_name>
    extra_inputs: dict[str, Any] = field(default_factory=dict)


def shot_groups(specs: list[TaskSpec], override: int | None = None) -> "OrderedDict[int | None, list[str]]":
    """Tasks grouped by number of shots, in first-appearance order (duplicates dropped)."""
    groups: OrderedDict[int | None, list[str]] = OrderedDict()
    seen: set[str] = set()
    for s in specs:
        if s.task in seen:
            continue
        seen.add(s.task)
        groups.setdefault(override if override is not None else s.shots, []).append(s.task)
    return groups


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One lm-eval result dict from several ``simple_evaluate`` outputs (disjoint tasks)."""
    if not parts:
        return {}
    out = {k: v for k, v in parts[0].items() if k != "samples"}
    for k in _MERGE_KEYS:
        out[k] = {}
        for p in parts:
            out[k].update(p.get(k) or {})
    samples: dict[str, Any] = {}
    for p in parts:
        samples.update(p.get("samples") or {})
    if samples:
        out["samples"] = samples
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
        import neuronmoe  # noqa: F401  (registers the NEURONMOE PEFT method in this process)
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, str(adapter))
        m.eval()
    return m, tok


def make_lm(model: Any, tok: Any, batch_size: str | int) -> Any:
    """lm-eval's HFLM over an instantiated model; data-parallel when launched by accelerate."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
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


def run_lm_eval(lm: Any, request: EvalRequest, tm: Any) -> dict[str, Any] | None:
    """Evaluate every shot group; the merged lm-eval dict (None on non-zero ranks)."""
    from lm_eval import simple_evaluate

    parts = []
    for shots, tasks in shot_groups(request.specs, request.num_fewshot).items():
        log.info("lm-eval: %d-shot %s", shots or 0, ", ".join(tasks))
        res = simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=shots,
            limit=_fmt_limit(request.limit),
            task_manager=tm,
            log_samples=request.log_samples,
            random_seed=request.seed,
            numpy_random_seed=request.seed,
            torch_random_seed=request.seed,
            fewshot_random_seed=request.seed,
            bootstrap_iters=0,
        )
        if res is not None:
            parts.append(res)
    if getattr(lm, "rank", 0) != 0:
        return None
    return merge_results(parts)


def _fmt_limit(limit: float | None) -> float | int | None:
    if limit is None:
        return None
    return int(limit) if float(limit) >= 1 and float(limit).is_integer() else float(limit)


def evaluate(request: EvalRequest, tm: Any | None = None) -> Path | None:
    """Run the request; write ``<output_dir>/eval/<run>/results.json`` + ``manifest.json``."""
    from neuronmoe.evaluation.taskindex import check_tasks, task_manager
    from neuronmoe.models import describe, load_config
    from neuronmoe.utils import Manifest, sha256_file, write_manifest
    from neuronmoe.utils.io import atomic_write_json
    from neuronmoe.utils.manifest import describe_files

    run_dir = Path(request.run_dir) if request.run_dir else Path(request.output_dir) / "eval" / request.run_name
    if (run_dir / "results.json").exists() and not request.overwrite:
        raise FileExistsError(f"{run_dir}/results.json exists; pass --overwrite or another --run-name")
    tm = tm or task_manager(request.include_paths)
    check_tasks([s.task for s in request.specs], tm)
    t0 = time.time()
    model, tok = load_for_eval(request.model, request.adapter, request.dtype, request.device)
    lm = make_lm(model, tok, request.batch_size)
    results = run_lm_eval(lm, request, tm)
    if results is None:  # another rank writes
        return None
    wall = time.time() - t0
    base_cfg = load_config(request.model)
    facts = adapter_facts(request.adapter, base_cfg)
    results["neuronmoe"] = {
        "label": request.label or request.run_name,
        "model": request.model,
        "adapter": str(request.adapter) if request.adapter else None,
        "tasks": [s.to_dict() for s in request.specs],
        **facts,
    }
    results.setdefault("config", {})
    if isinstance(results["config"], dict):
        results["config"]["model"] = "hf (instantiated by neuronmoe)"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "results.json", _jsonable(results))
    inputs: dict[str, Any] = {"model": describe(request.model)}
    if request.adapter:
        a = Path(request.adapter)
        inputs["adapter"] = {"path": str(a.resolve()), **{f.name: sha256_file(f) for f in sorted(a.glob("adapter_*")) if f.is_file()}}
    inputs.update(request.extra_inputs)
    import torch

    dev = next(iter(model.parameters())).device
    write_manifest(
        run_dir,
        Manifest(
            stage="evaluate",
            config={
                "run_name": request.run_name, "label": request.label or request.run_name,
                "tasks": [s.to_dict() for s in request.specs], "num_fewshot": request.num_fewshot,
                "batch_size": request.batch_size, "dtype": str(next(iter(model.parameters())).dtype).replace("torch.", ""),
                "device": str(dev), "limit": _fmt_limit(request.limit), "seed": request.seed,
                "include_paths": [str(p) for p in request.include_paths],
            },
            inputs=inputs,
            counts={"wall_s": round(wall, 2), "n_samples": results.get("n-samples", {}), "threads": torch.get_num_threads()},
            files=describe_files(run_dir, [run_dir / "results.json"]),
        ),
    )
    return run_dir


def _jsonable(obj: Any) -> Any:
    """lm-eval results hold numpy scalars, dtypes and functions here and there: stringify those."""
    return json.loads(json.dumps(obj, default=_default, ensure_ascii=False))


def _default(o: Any) -> Any:
    try:
        return json_default(o)  # numpy scalars and arrays, paths, sets
    except TypeError:
        return str(o)
