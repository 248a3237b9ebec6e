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
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.errors import ConfigError
from neuronmoe.evaluation.suites import UNPINNED, TaskSpec
from neuronmoe.evaluation.taskindex import is_hub_dataset

log = logging.getLogger(__name__)


class ShotsError(ConfigError):
    """A cell asks for more shots than its few-shot split has rows."""


class UnpinnedDatasetError(ConfigError):
    """A paper-suite dataset has no pinned revision (and --allow-unpinned was not given)."""


def replica_dir(replicas: str | Path, dataset: str) -> Path:
    """Where the local replica of hub dataset ``owner/name`` lives."""
    return Path(replicas) / dataset.replace("/", "__")


@dataclass
class Cell:
    """A spec, the hub dataset behind it and the overrides its task is built with."""

    spec: TaskSpec
    dataset: str | None = None  # hub dataset path (None: local files)
    configs: list[str | None] = field(default_factory=list)  # per leaf: its config, or the folder its files are in
    revision: str | None = None  # pinned commit, UNPINNED, or None (not in the pins table)
    overrides: dict[str, Any] = field(default_factory=dict)
    replica: str | None = None
    #: merged into every leaf's ``dataset_kwargs`` (a None value removes the key): the revision load_dataset gets
    kwargs_patch: dict[str, Any] = field(default_factory=dict)
    resolved: str | None = None  # an unpinned dataset's commit, resolved at run time (or why it is unknown)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def pinned(self) -> bool:
        return bool(self.revision) and self.revision != UNPINNED

    def data_revision(self) -> str | None:
        """The commit the cell's data is read at: the pinned one, the resolved one for an unpinned dataset
        (``main (unresolved: ...)`` when unknown), ``replica:<digest>`` for a replica; None for local files."""
        if not self.dataset:
            return None
        if self.replica:
            p = Path(self.replica) / "replica.json"
            digest = json.loads(p.read_text(encoding="utf-8")).get("digest") if p.is_file() else None
            return f"replica:{digest or 'unknown'}"
        return self.revision if self.pinned else (self.resolved or "main (unresolved)")


def is_commit(revision: str | None) -> bool:
    """A revision that names fixed data (a commit or a replica's digest), not ``main (unresolved ...)``."""
    return bool(revision) and not str(revision).startswith("main") and not str(revision).endswith(":unknown")


def _config_label(cfg: dict[str, Any]) -> str | None:
    """A leaf's config name, or for a dataset read by file patterns (no ``configs:`` block) the folder they are in."""
    if cfg.get("dataset_name"):
        return str(cfg["dataset_name"])
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict) and files:
        first = str(next(iter(files.values())))
        return first.split("/")[0] if "/" in first else None
    return None


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
        if len(paths) > 1:
            raise ConfigError(f"{spec.key}: task {spec.task} reads several hub datasets ({', '.join(paths)}); "
                              "a cell must read one (split it into several cells)")
        cell = Cell(spec=spec)
        if spec.shots is not None:
            cell.overrides["num_fewshot"] = int(spec.shots)
        if spec.fewshot_split:
            cell.overrides["fewshot_split"] = spec.fewshot_split
        if paths:
            cell.dataset = paths[0]
            cell.configs = list(dict.fromkeys(_config_label(c) for _, c in leaves))
            if replicas:
                cell.replica = str(replica_dir(replicas, cell.dataset))
                cell.overrides["dataset_path"] = cell.replica
                cell.kwargs_patch = {"revision": None}
            else:
                entry = pins.get(cell.dataset)
                cell.revision = str(entry["revision"]) if entry else None
                if cell.pinned:
                    cell.kwargs_patch = {"revision": cell.revision}
        cells.append(cell)
    return cells


def resolve_unpinned(cells: list[Cell], online: bool) -> None:
    """Give every cell of an unpinned hub dataset the commit it is read at. Online: the hub's current main, which
    the cell then loads exactly (``revision=<commit>``). Offline: the commit of main in the local hub cache (what
    ``datasets`` reads offline), else ``main (unresolved: offline)``."""
    from neuronmoe.evaluation.taskindex import cached_main_commit

    found: dict[str, str | None] = {}
    for c in cells:
        if not c.dataset or c.replica or c.pinned:
            continue
        if c.dataset not in found:
            try:
                found[c.dataset] = resolve_revision(c.dataset, None) if online else cached_main_commit(c.dataset)
            except Exception as e:  # noqa: BLE001 - the run goes on; the record says what is known
                log.warning("%s: could not resolve main: %s", c.dataset, e)
                found[c.dataset] = None
        sha = found[c.dataset]
        c.resolved = sha or f"main (unresolved: {'hub error' if online else 'offline'})"
        if sha and online:
            c.kwargs_patch = {"revision": sha}


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
    """The lm-eval Task, Group or list of Tasks of a cell, with its overrides (loads the data).

    lm-eval's factory merges ``overrides`` into the YAML config (and into every leaf of a group), exactly as a
    group's ``task:`` entry with extra keys would; that merge is shallow, so ``kwargs_patch`` is merged into each
    leaf's own ``dataset_kwargs`` instead (leaves may read different files of one repository)."""
    from lm_eval.tasks._index import Kind

    entry = tm.task_index[cell.spec.task]
    factory = tm._factory
    if not cell.kwargs_patch:
        return factory.build(entry, overrides=dict(cell.overrides) or None, registry=tm.task_index)
    load = factory._load_full_config

    def patched(e: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = load(e, overrides)
        if e.kind in (Kind.TASK, Kind.PY_TASK):
            kw = dict(cfg.get("dataset_kwargs") or {})
            for k, v in cell.kwargs_patch.items():
                if v is None:
                    kw.pop(k, None)
                else:
                    kw[k] = v
            cfg["dataset_kwargs"] = kw or None
        return cfg

    factory._load_full_config = patched
    try:
        return factory.build(entry, overrides=dict(cell.overrides) or None, registry=tm.task_index)
    finally:
        del factory._load_full_config


def leaves_of(obj: Any) -> list[Any]:
    """Leaf Task objects of a built Task / Group / list."""
    if isinstance(obj, list):
        return [t for o in obj for t in leaves_of(o)]
    if hasattr(obj, "get_all_tasks"):
        return list(obj.get_all_tasks())
    return [obj]


def config_digest(obj: Any, mask_revision: bool = False) -> str:
    """sha256 of the resolved configs of every leaf (functions by their source): a cell's identity.
    ``mask_revision``: without the dataset revision (recorded on its own, :meth:`Cell.data_revision`)."""
    dumps = []
    for t in leaves_of(obj):
        cfg = t.dump_config()
        if mask_revision and isinstance(cfg.get("dataset_kwargs"), dict):
            cfg = {**cfg, "dataset_kwargs": {k: v for k, v in cfg["dataset_kwargs"].items() if k != "revision"}}
        dumps.append(json.dumps(cfg, sort_keys=True, default=str))
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


def found_splits(obj: Any) -> dict[str, int]:
    """``{split: rows}`` the loaded data holds, summed over a cell's leaves (what ``datasets`` made of the files)."""
    out: dict[str, int] = {}
    for t in leaves_of(obj):
        ds = getattr(t, "dataset", None)
        for split in (list(ds.keys()) if hasattr(ds, "keys") else []):
            out[str(split)] = out.get(str(split), 0) + int(ds[split].num_rows)
    return out


def inspect_cell(cell: Cell, obj: Any) -> dict[str, Any]:
    """Facts ``--check`` reports for a built cell: items, splits, few-shot rows, fields, overlap."""
    out: dict[str, Any] = {"items": 0, "eval_split": None, "fewshot_split": None, "fewshot_rows": None,
                           "same_split": False, "missing_fields": [], "render_errors": 0, "first_error": None,
                           "overlap": 0, "shots": 0, "splits": found_splits(obj)}
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
        splits = ", ".join(f"{k} {v}" for k, v in (facts.get("splits") or {}).items()) or "-"
        rows.append([cell.key, cell.spec.task, f"{cell.dataset or 'local'}" + (f" [{configs}]" if any(cell.configs) else ""),
                     rev, splits, str(facts.get("eval_split") or "-"), fs, items, str(facts.get("overlap", "-")), status,
                     "; ".join(reasons)])
    head = ["cell", "task", "dataset [configs]", "revision", "splits found (rows)", "eval split", "shots",
            "items (found / expected)", "shared", "status", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if resolve and resolved:
        loose = {c.dataset: resolved[c.dataset] for c in cells if c.dataset in resolved and not c.pinned}
        if loose:
            lines += ["", "Current commits of the unpinned datasets (paste into neuronmoe/configs/eval_suites.yaml `datasets:`):", ""]
            lines += [f"  {d}: {{revision: {sha}}}" for d, sha in sorted(loose.items())]
    return "\n".join(lines) + "\n", all_ok
