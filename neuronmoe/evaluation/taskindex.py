"""lm-eval's task index with our task folders, and the checks made before any model is loaded:
unknown task names (with close matches), and the datasets a task list needs from the hub.
"""
from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Any, Iterable

from neuronmoe.cli import CLIError
from neuronmoe.evaluation.paper_tasks import PAPER_TASK_DIR

#: dataset builders that read local files (their data_files are absolute paths)
LOCAL_BUILDERS = {"json", "csv", "text", "parquet", "arrow"}


_BASE_TM: Any = None


def _base_task_manager() -> Any:
    """lm-eval's built-in tasks + ours, indexed once per process (the scan takes seconds)."""
    global _BASE_TM
    if _BASE_TM is None:
        from lm_eval.tasks import TaskManager

        _BASE_TM = TaskManager(include_path=[str(PAPER_TASK_DIR)])
    return _BASE_TM


def task_manager(include_paths: Iterable[str | Path] = ()) -> Any:
    """A ``TaskManager`` over lm-eval's tasks, ours (paper suite) and ``include_paths``.

    The big built-in index is built once per process; extra folders (the generated local
    suite) are indexed on each call and layered on top, as ``TaskManager`` itself would.
    """
    import copy
    from collections import defaultdict

    extra = [Path(p) for p in include_paths if p]
    base = _base_task_manager()
    if not extra:
        return base
    try:
        from lm_eval.tasks._index import Kind, TaskIndex

        tm = copy.copy(base)
        index = dict(base._index)
        index.update(TaskIndex.build(extra))
        buckets: dict[Any, list[str]] = defaultdict(list)
        for k, e in index.items():
            buckets[e.kind].append(k)
        tm._index = index
        tm._all_tasks = sorted(index)
        tm._all_subtasks = sorted(buckets[Kind.TASK] + buckets[Kind.PY_TASK])
        tm._all_groups = sorted(buckets[Kind.GROUP])
        tm._all_tags = sorted(buckets[Kind.TAG])
        tm.include_path = [str(PAPER_TASK_DIR)] + [str(p) for p in extra]
        return tm
    except (ImportError, AttributeError):  # pragma: no cover - another lm-eval layout
        from lm_eval.tasks import TaskManager

        return TaskManager(include_path=[str(PAPER_TASK_DIR)] + [str(p) for p in extra])


class UnknownTaskError(ValueError):
    pass


def check_tasks(names: list[str], tm: Any) -> None:
    """Raise with close matches (difflib) for any name lm-eval's index does not know."""
    known = tm.all_tasks
    known_set = set(known)
    bad = [n for n in names if n not in known_set]
    if not bad:
        return
    lines = []
    for n in bad:
        close = difflib.get_close_matches(n, known, n=5, cutoff=0.6)
        lines.append(f"{n!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise UnknownTaskError(
        "unknown lm-eval task(s): " + "; ".join(lines) + ". `lm-eval ls tasks` lists them all; the local suite's "
        "tasks exist only after `neuronmoe evaluate --suite local` generated them."
    )


def leaf_configs(name: str, tm: Any, _seen: set[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``[(task name, raw config)]`` of the leaf tasks under a task, group or tag (no download)."""
    from lm_eval.tasks._index import Kind

    seen = _seen if _seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    index = tm.task_index
    entry = index.get(name)
    if entry is None:
        return []
    if entry.kind in (Kind.TASK, Kind.PY_TASK):
        return [(name, dict(entry.cfg or {}))]
    out: list[tuple[str, dict[str, Any]]] = []
    if entry.kind == Kind.GROUP:
        for child in (entry.cfg or {}).get("task", []) or []:
            if isinstance(child, str):
                out += leaf_configs(child, tm, seen)
            elif isinstance(child, dict) and "task" in child:
                out.append((str(child["task"]), dict(child)))
        return out
    if entry.kind == Kind.TAG:
        for other, e in index.items():
            if name in (e.tags or set()):
                out += leaf_configs(other, tm, seen)
    return out


def datasets_needed(names: list[str], tm: Any) -> list[dict[str, Any]]:
    """The hub datasets behind ``names``: ``[{"path", "names": [config or None], "tasks": [...]}]``.

    Local files (json/csv/... builders, absolute paths) are not listed.
    """
    found: dict[str, dict[str, Any]] = {}
    for n in names:
        for leaf, cfg in leaf_configs(n, tm):
            path = cfg.get("dataset_path")
            if not path or str(path) in LOCAL_BUILDERS or os.path.isabs(str(path)):
                continue
            d = found.setdefault(str(path), {"path": str(path), "names": [], "tasks": []})
            if cfg.get("dataset_name") not in d["names"]:
                d["names"].append(cfg.get("dataset_name"))
            d["tasks"].append(leaf)
    return [found[k] for k in sorted(found)]


def format_datasets(datasets: list[dict[str, Any]]) -> str:
    lines = []
    for d in datasets:
        names = [n for n in d["names"] if n]
        cfg = f" [{len(names)} config{'s' if len(names) > 1 else ''}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}]" if names else ""
        tasks = d["tasks"]
        lines.append(f"  {d['path']}{cfg}  (tasks: {', '.join(tasks[:3])}{', ...' if len(tasks) > 3 else ''})")
    return "\n".join(lines)


def prefetch(datasets: list[dict[str, Any]]) -> None:
    """Download every (dataset, config) into the ``datasets`` cache (needs network)."""
    from datasets import load_dataset

    for d in datasets:
        for name in d["names"]:
            load_dataset(d["path"], name)


def is_offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connection to the hub (``HF_ENDPOINT``, default huggingface.co:443) within ``timeout`` s."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def dataset_cached(path: str) -> bool:
    """Whether ``datasets`` has a local copy of hub dataset ``path`` (its cache folder exists)."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    ds_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
    flat = path.replace("/", "___")
    return (ds_cache / flat).exists() or (hub_cache / ("datasets--" + path.replace("/", "--"))).exists()


class NetworkRequiredError(CLIError):
    """Hub datasets are needed but neither cached nor reachable (printed as a one-line CLI error)."""


def check_network(datasets: list[dict[str, Any]], probe_timeout: float = 3.0) -> dict[str, Any]:
    """Fail early when hub datasets are needed, absent from the cache, and the hub is unreachable.

    Returns ``{"offline": bool, "missing": [...]}`` otherwise.
    """
    if not datasets:
        return {"offline": is_offline_env(), "missing": []}
    missing = [d for d in datasets if not dataset_cached(d["path"])]
    offline = is_offline_env() or not hub_reachable(probe_timeout)
    if offline and missing:
        why = "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set" if is_offline_env() else "the Hugging Face hub is unreachable"
        listing = format_datasets(missing)
        raise NetworkRequiredError(
            f"{why}, and these datasets are not in the local cache:\n{listing}\n"
            "Pre-download them on a machine with network access (same HF_HOME), e.g. with\n"
            "  neuronmoe evaluate --suite paper --check --prefetch\n"
            "then copy ~/.cache/huggingface to this machine and run with HF_DATASETS_OFFLINE=1; "
            "or use `--suite local`, which needs no network."
        )
    return {"offline": offline, "missing": [d["path"] for d in missing]}
