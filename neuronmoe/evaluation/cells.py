"""Cells of a run: one lm-eval task (or group) per (benchmark, language), built with our overrides.

The task YAMLs (ours and lm-eval's) are never edited. Each cell's task is built from lm-eval's
index with config overrides layered on top, the way lm-eval's own group ``task:`` lists do:

* ``num_fewshot`` / ``fewshot_split`` from the suite (per benchmark and language);
* ``dataset_kwargs.revision``: the revision pinned in ``eval_suites.yaml`` for the cell's hub dataset;
* with ``replicas`` (tests only), ``dataset_path`` points at a local replica of the hub dataset
  (``<replicas>/<owner>__<name>/``, a folder ``datasets.load_dataset`` reads with the same configs
  and splits), so that lm-eval's own tasks run offline unchanged.

Building a cell loads its data (before any model is loaded), so that few-shot pools and the
``--check`` facts (items, fields, overlap between few-shot and evaluated items) are known early.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.cli import CLIError
from neuronmoe.evaluation.suites import UNPINNED, TaskSpec
from neuronmoe.evaluation.taskindex import is_hub_dataset


class ShotsError(CLIError):
    """A cell asks for more shots than its few-shot split has rows."""


class UnpinnedDatasetError(CLIError):
    """A paper-suite dataset has no pinned revision (and --allow-unpinned was not given)."""


def replica_dir(replicas: str | Path, dataset: str) -> Path:
    """Where the local replica of hub dataset ``owner/name`` lives."""
    return Path(replicas) / dataset.replace("/", "__")


@dataclass
class Cell:
    """A spec, the hub dataset behind it and the overrides its task is built with."""

    spec: TaskSpec
    dataset: str | None = None  # hub dataset path (None: local files)
    configs: list[str | None] = field(default_factory=list)
    revision: str | None = None  # pinned commit, UNPINNED, or None (not in the pins table)
    overrides: dict[str, Any] = field(default_factory=dict)
    replica: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)  # what load_dataset gets (revision, ...)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def pinned(self) -> bool:
        return bool(self.revision) and self.revision != UNPINNED


def plan_cells(
    specs: list[TaskSpec], tm: Any, pins: dict[str, dict[str, Any]], replicas: str | Path | None = None
) -> list[Cell]:
    """One :class:`Cell` per spec (first occurrence of a task wins), overrides computed, nothing loaded."""
    from neuronmoe.evaluation.taskindex import leaf_configs

    cells: list[Cell] = []
    seen: set[str] = set()
    for spec in specs:
        if spec.task in seen:
            continue
        seen.add(spec.task)
        leaves = leaf_configs(spec.task, tm)
        paths = list(dict.fromkeys(str(c.get("dataset_path")) for _, c in leaves if is_hub_dataset(c.get("dataset_path"))))
        cell = Cell(spec=spec)
        ov: dict[str, Any] = {}
        if spec.shots is not None:
            ov["num_fewshot"] = int(spec.shots)
        if spec.fewshot_split:
            ov["fewshot_split"] = spec.fewshot_split
        if len(paths) > 1:
            raise ValueError(f"{spec.key}: task {spec.task} reads several hub datasets ({', '.join(paths)}); "
                             "a cell must read one (split it into several cells)")
        if paths:
            cell.dataset = paths[0]
            cell.configs = list(dict.fromkeys(c.get("dataset_name") for _, c in leaves))
            common = _common_dataset_kwargs(spec, leaves)
            kw = dict(common)
            if replicas:
                cell.replica = str(replica_dir(replicas, cell.dataset))
                ov["dataset_path"] = cell.replica
                kw.pop("revision", None)
            else:
                entry = pins.get(cell.dataset)
                cell.revision = str(entry["revision"]) if entry else None
                if cell.pinned:
                    kw["revision"] = cell.revision
            if kw != common or (replicas and "revision" in common):
                ov["dataset_kwargs"] = kw
            cell.dataset_kwargs = kw
        cell.overrides = ov
        cells.append(cell)
    return cells


def _common_dataset_kwargs(spec: TaskSpec, leaves: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The ``dataset_kwargs`` every leaf of the cell shares (an override replaces it as a whole)."""
    kws = [json.dumps(c.get("dataset_kwargs") or {}, sort_keys=True, default=str) for _, c in leaves]
    if len(set(kws)) > 1:
        raise ValueError(f"{spec.key}: the leaves of {spec.task} have different dataset_kwargs; cannot pin one revision")
    return dict(leaves[0][1].get("dataset_kwargs") or {}) if leaves else {}


def check_pins(cells: list[Cell], allow_unpinned: bool = False) -> list[Cell]:
    """Raise for hub cells without a pinned revision (unless allowed); return those cells."""
    loose = [c for c in cells if c.dataset and not c.replica and not c.pinned]
    if loose and not allow_unpinned:
        by_ds: dict[str, list[str]] = {}
        for c in loose:
            by_ds.setdefault(f"{c.dataset} ({c.revision or 'not listed'})", []).append(c.key)
        listing = "; ".join(f"{d}: {', '.join(k)}" for d, k in by_ds.items())
        raise UnpinnedDatasetError(
            f"datasets without a pinned revision in neuronmoe/configs/eval_suites.yaml: {listing}. Pin them "
            "(`neuronmoe evaluate --suite paper --check` on a machine with network prints each dataset's current "
            "commit), or pass --allow-unpinned to load the hub's current main (its commit goes into the manifest)."
        )
    return loose


def build_cell(cell: Cell, tm: Any) -> Any:
    """The lm-eval Task, Group or list of Tasks of a cell, with its overrides (loads the data)."""
    entry = tm.task_index[cell.spec.task]
    # lm-eval's factory merges overrides into the YAML config (and into every leaf of a group),
    # exactly as a group's `task:` entry with extra keys would.
    return tm._factory.build(entry, overrides=dict(cell.overrides) or None, registry=tm.task_index)


def leaves_of(obj: Any) -> list[Any]:
    """Leaf Task objects of a built Task / Group / list."""
    if isinstance(obj, list):
        return [t for o in obj for t in leaves_of(o)]
    if hasattr(obj, "get_all_tasks"):
        return list(obj.get_all_tasks())
    return [obj]


def config_digest(obj: Any) -> str:
    """sha256 of the resolved configs of every leaf (functions by their source): a cell's identity."""
    dumps = []
    for t in leaves_of(obj):
        dumps.append(json.dumps(t.dump_config(), sort_keys=True, default=str))
    return hashlib.sha256("\n".join(sorted(dumps)).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------- inspection
def _split_names(task: Any) -> tuple[str | None, str | None]:
    """(evaluated split, split the shots come from) of a leaf task, as lm-eval picks them."""
    cfg = task.config
    eval_split = cfg.test_split if task.has_test_docs() else cfg.validation_split
    fs = getattr(task, "fewshot_cfg", None)
    if fs is not None and fs.split is not None:
        few = fs.split
    elif task.has_training_docs():
        few = cfg.training_split
    elif task.has_validation_docs():
        few = cfg.validation_split
    else:
        few = cfg.test_split
    return eval_split, few


def _pool(task: Any) -> list[dict[str, Any]]:
    sampler = getattr(task, "sampler", None)
    if sampler is not None:
        return list(sampler.fewshot_docs())
    docs = task.fewshot_docs()
    return list(docs) if docs is not None else []


def fewshot_rows(task: Any) -> tuple[int, bool]:
    """(rows the sampler can draw shots from, whether they come from the evaluated split itself)."""
    eval_split, few = _split_names(task)
    same = few == eval_split
    n = len(_pool(task))
    return (n - 1 if same and n else n), same


def check_shots(cells: list[Cell], built: dict[str, Any]) -> None:
    """Raise (before any model is loaded) when a cell asks for more shots than its few-shot split has."""
    problems = []
    keys: list[str] = []
    for cell in cells:
        obj = built.get(cell.key)
        if obj is None:
            continue
        for t in leaves_of(obj):
            shots = t.get_config("num_fewshot") or 0
            if not shots:
                continue
            rows, same = fewshot_rows(t)
            if shots > rows:
                _, few = _split_names(t)
                problems.append(f"{cell.key} ({t.config.task}): {shots} shots but split {few!r} has {rows} usable row(s)"
                                + (" (the evaluated split itself, minus the item)" if same else ""))
                keys.append(cell.key)
                break
    if problems:
        raise ShotsError(
            "more shots than the few-shot split holds (lm-eval's first_n sampler would fail mid-run): "
            + "; ".join(problems) + f". Lower them with --shots {keys[0]}=N or draw them from another split "
            f"with --shots {keys[0]}=N@split."
        )


def _template_fields(value: Any) -> set[str]:
    """Top-level document fields a doc_to_* value reads (a Jinja template or a bare field name)."""
    if not isinstance(value, str):
        return set()
    if "{{" not in value and "{%" not in value:
        return {value} if value.isidentifier() else set()
    from jinja2 import Environment, meta

    return set(meta.find_undeclared_variables(Environment().parse(value)))


def _item_key(task: Any, doc: dict[str, Any]) -> str:
    """An item's identity for the overlap check: its rendered question and choices, whitespace-normalised."""
    text = task.doc_to_text(doc)
    try:
        choices = task.doc_to_choice(doc) if task.config.doc_to_choice is not None else []
    except Exception:  # noqa: BLE001 - a broken item is reported by the render check
        choices = []
    return " ".join(f"{text}\x1f{choices}".split())


def inspect_cell(cell: Cell, obj: Any) -> dict[str, Any]:
    """Facts ``--check`` reports for a built cell: items, splits, few-shot rows, fields, overlap."""
    out: dict[str, Any] = {"items": 0, "eval_split": None, "fewshot_split": None, "fewshot_rows": None,
                           "same_split": False, "missing_fields": [], "render_errors": 0, "first_error": None,
                           "overlap": 0, "shots": 0}
    rows_min = None
    for t in leaves_of(obj):
        docs = list(t.eval_docs)
        out["items"] += len(docs)
        eval_split, few = _split_names(t)
        out["eval_split"] = out["eval_split"] or eval_split
        shots = int(t.get_config("num_fewshot") or 0)
        out["shots"] = max(out["shots"], shots)
        feats = set(docs[0].keys()) if docs else set()
        needed = set()
        for attr in ("doc_to_text", "doc_to_target", "doc_to_choice"):
            needed |= _template_fields(getattr(t.config, attr, None))
        for f in sorted(needed - feats):
            if f not in out["missing_fields"]:
                out["missing_fields"].append(f)
        eval_keys = set()
        for doc in docs:
            try:
                eval_keys.add(_item_key(t, doc))
                target = t.doc_to_target(doc)
                choices = t.doc_to_choice(doc) if t.config.doc_to_choice is not None else None
                if isinstance(target, int) and choices is not None and not 0 <= target < len(choices):
                    raise ValueError(f"target {target} outside {len(choices)} choices")
            except Exception as e:  # noqa: BLE001 - counted and reported, not fatal
                out["render_errors"] += 1
                out["first_error"] = out["first_error"] or f"{t.config.task}: {type(e).__name__}: {e}"
        if shots:
            out["fewshot_split"] = out["fewshot_split"] or few
            rows, same = fewshot_rows(t)
            out["same_split"] = out["same_split"] or same
            rows_min = rows if rows_min is None else min(rows_min, rows)
            if not same:
                pool = _pool(t)
                sampler = (t.fewshot_cfg.sampler if t.config.fewshot_config else "default") or "default"
                drawable = pool[:shots] if sampler == "first_n" else pool
                out["overlap"] += sum(1 for d in drawable if _item_key(t, d) in eval_keys)
    out["fewshot_rows"] = rows_min
    return out


def expected_items(cell: Cell, eval_split: str | None) -> int | None:
    """Items the cell should have: the paper's count, or for a replica the count its replica.json declares."""
    if not cell.replica:
        return cell.spec.items
    p = Path(cell.replica) / "replica.json"
    if not p.exists() or eval_split is None:
        return None
    counts = json.loads(p.read_text(encoding="utf-8")).get("rows", {})
    try:
        return sum(int(counts[str(c if c is not None else "default")][eval_split]) for c in cell.configs)
    except KeyError:
        return None


def check_status(cell: Cell, facts: dict[str, Any], expected: int | None = None) -> tuple[str, list[str]]:
    """("ok" | "WARN" | "FAIL", reasons) for one inspected cell; ``expected``: items it must have."""
    fail, warn = [], []
    if facts.get("error"):
        fail.append(facts["error"])
    else:
        if facts["missing_fields"]:
            fail.append("missing fields " + ", ".join(facts["missing_fields"]))
        if facts["render_errors"]:
            fail.append(f"{facts['render_errors']} item(s) fail to render ({facts['first_error']})")
        if facts["shots"] and (facts["fewshot_rows"] or 0) < facts["shots"]:
            fail.append(f"{facts['shots']} shots > {facts['fewshot_rows']} few-shot rows")
        if facts["overlap"]:
            fail.append(f"{facts['overlap']} few-shot item(s) are also evaluated items")
        if facts["shots"] and facts["same_split"]:
            warn.append(f"shots drawn from the evaluated split {facts['eval_split']!r} itself (lm-eval skips the item being scored)")
        if expected is not None and facts["items"] != expected:
            what = "its replica declares" if cell.replica else "the paper implies"
            fail.append(f"{facts['items']} items, {what} {expected}")
    if cell.dataset and not cell.replica and not cell.pinned:
        warn.append("revision not pinned")
    status = "FAIL" if fail else "WARN" if warn else "ok"
    return status, fail + warn


def resolve_revision(dataset: str, revision: str | None) -> str:
    """The commit a hub revision (or main, for UNPINNED) points to now (needs network)."""
    from huggingface_hub import HfApi

    rev = None if not revision or revision == UNPINNED else revision
    return str(HfApi().dataset_info(dataset, revision=rev).sha)


def check_table(cells: list[Cell], tm: Any, resolve: bool = False) -> tuple[str, bool]:
    """Build every cell, inspect it and render one Markdown table; (table, every cell ok-or-warn)."""
    rows = []
    all_ok = True
    resolved: dict[str, str] = {}
    for cell in cells:
        facts: dict[str, Any]
        try:
            facts = inspect_cell(cell, build_cell(cell, tm))
        except Exception as e:  # noqa: BLE001 - one table row per failing cell
            facts = {"error": f"does not load: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        rev = "local" if not cell.dataset else "replica" if cell.replica else (cell.revision or "not listed")
        if resolve and cell.dataset and not cell.replica:
            try:
                sha = resolved.setdefault(cell.dataset, resolve_revision(cell.dataset, cell.revision))
                rev = sha[:12] if cell.pinned else f"UNPINNED (main = {sha})"
            except Exception as e:  # noqa: BLE001
                rev = f"{rev} (unresolved: {type(e).__name__})"
        elif cell.pinned:
            rev = cell.revision[:12]
        expected = expected_items(cell, facts.get("eval_split"))
        status, reasons = check_status(cell, facts, expected)
        all_ok &= status != "FAIL"
        fs = "-" if not facts.get("shots") else f"{facts['shots']} from {facts.get('fewshot_split')} ({facts.get('fewshot_rows')} rows)"
        items = "-" if "items" not in facts else f"{facts['items']}" + (f" / {expected}" if expected is not None else "")
        if cell.replica and cell.spec.items is not None:
            items += f" (paper {cell.spec.items})"
        configs = ", ".join(str(c) for c in cell.configs[:2]) + (", ..." if len(cell.configs) > 2 else "")
        rows.append([cell.key, cell.spec.task, f"{cell.dataset or 'local'}" + (f" [{configs}]" if any(cell.configs) else ""),
                     rev, str(facts.get("eval_split") or "-"), fs, items, str(facts.get("overlap", "-")), status, "; ".join(reasons)])
    head = ["cell", "task", "dataset [configs]", "revision", "eval split", "shots", "items (found / expected)", "shared", "status", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if resolve and resolved:
        loose = {c.dataset: resolved[c.dataset] for c in cells if c.dataset in resolved and not c.pinned}
        if loose:
            lines += ["", "Current commits of the unpinned datasets (paste into neuronmoe/configs/eval_suites.yaml `datasets:`):", ""]
            lines += [f"  {d}: {{revision: {sha}}}" for d, sha in sorted(loose.items())]
    return "\n".join(lines) + "\n", all_ok
