"""lm-eval's task index with our task folders, and the checks made before any model is loaded:
unknown task names (with close matches), and the datasets a task list needs from the hub.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator

from neuronmoe.errors import ConfigError, NetworkError
from neuronmoe.evaluation.paper_tasks import PAPER_TASK_DIR
from neuronmoe.utils.checks import did_you_mean

#: dataset builders that read local files (their data_files are absolute paths)
LOCAL_BUILDERS = {"json", "csv", "text", "parquet", "arrow"}


_BASE_TMS: dict[tuple[str, ...] | None, Any] = {}


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def _base_task_manager(builtin_dirs: tuple[str, ...] | None = None) -> Any:
    """lm-eval's built-in tasks (all, or only ``builtin_dirs`` under lm_eval/tasks/) + ours, indexed once per process.

    The full index parses some 14,000 YAML files (20-60 s on our 2-core machine); a suite that
    names the folders its lm-eval tasks live in (``lm_eval_task_dirs`` in eval_suites.yaml) is
    indexed in about half a second.
    """
    if builtin_dirs not in _BASE_TMS:
        from lm_eval.tasks import TaskManager

        if builtin_dirs is None:
            _BASE_TMS[None] = TaskManager(include_path=[str(PAPER_TASK_DIR)])
        else:
            root = lm_eval_tasks_dir()
            paths = [str(root / d) for d in builtin_dirs if (root / d).is_dir()] + [str(PAPER_TASK_DIR)]
            _BASE_TMS[builtin_dirs] = TaskManager(include_defaults=False, include_path=paths)
    return _BASE_TMS[builtin_dirs]


def task_manager(include_paths: Iterable[str | Path] = (), builtin_dirs: Iterable[str] | None = None) -> Any:
    """A ``TaskManager`` over lm-eval's tasks (all, or ``builtin_dirs``), ours (paper suite) and ``include_paths``.

    The built-in index is built once per process; extra folders (the generated local suite) are
    indexed on each call and layered on top, as ``TaskManager`` itself would.
    """
    import copy
    from collections import defaultdict

    extra = [Path(p) for p in include_paths if p]
    base = _base_task_manager(tuple(builtin_dirs) if builtin_dirs is not None else None)
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


def task_manager_for(names: list[str], include_paths: Iterable[str | Path] = (), builtin_dirs: Iterable[str] | None = None) -> Any:
    """The small index over ``builtin_dirs`` when it knows every name, else the full one."""
    if builtin_dirs is not None:
        tm = task_manager(include_paths, builtin_dirs)
        known = set(tm.all_tasks)
        if all(n in known for n in names):
            return tm
    return task_manager(include_paths)


class UnknownTaskError(ConfigError):
    pass


def check_tasks(names: list[str], tm: Any) -> None:
    """Raise with close matches (difflib, via utils.checks.did_you_mean) for any name lm-eval's index does not know."""
    known = tm.all_tasks
    known_set = set(known)
    bad = [n for n in names if n not in known_set]
    if not bad:
        return
    lines = []
    for n in bad:
        lines.append(f"{n!r}{did_you_mean(n, known, n=5)}")
    raise UnknownTaskError(
        "unknown lm-eval task(s): " + "; ".join(lines) + ". `lm-eval ls tasks` lists them all; the local suite's "
        "tasks exist only after `neuronmoe evaluate --suite local` generated them."
    )


def is_hub_dataset(path: Any) -> bool:
    """A hub dataset name (not a local builder such as ``json``, not an absolute path)."""
    return bool(path) and str(path) not in LOCAL_BUILDERS and not os.path.isabs(str(path))


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
            if not is_hub_dataset(path):
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
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        cfg = f" [{len(names)} config{'s' if len(names) > 1 else ''}: {shown}]" if names else ""
        tasks = d["tasks"]
        lines.append(f"  {d['path']}{cfg}  (tasks: {', '.join(tasks[:3])}{', ...' if len(tasks) > 3 else ''})")
    return "\n".join(lines)


def is_offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


@contextlib.contextmanager
def offline_mode() -> Iterator[None]:
    """Datasets and the hub client read offline flags at import: set them for this block, then restore."""
    import datasets.config as dcfg
    import huggingface_hub.constants as hcfg

    saved = (dict(os.environ), dcfg.HF_HUB_OFFLINE, dcfg.HF_DATASETS_OFFLINE, hcfg.HF_HUB_OFFLINE)
    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    dcfg.HF_HUB_OFFLINE = dcfg.HF_DATASETS_OFFLINE = hcfg.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        env, dcfg.HF_HUB_OFFLINE, dcfg.HF_DATASETS_OFFLINE, hcfg.HF_HUB_OFFLINE = saved
        for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
            if k in env:
                os.environ[k] = env[k]
            else:
                os.environ.pop(k, None)


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


def _caches() -> tuple[Path, Path]:
    """(datasets cache, hub cache) folders, as the libraries resolve them from the environment."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    ds_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
    return ds_cache, hub_cache


def dataset_cached(path: str) -> bool:
    """Whether ``datasets`` has a local copy of hub dataset ``path`` (its cache folder exists)."""
    ds_cache, hub_cache = _caches()
    flat = path.replace("/", "___")
    return (ds_cache / flat).exists() or (hub_cache / ("datasets--" + path.replace("/", "--"))).exists()


def cached_main_commit(path: str) -> str | None:
    """The commit ``main`` pointed to when hub dataset ``path`` was last downloaded (the hub cache's ``refs/main``:
    what an offline load reads); None if it was never downloaded."""
    ref = _caches()[1] / ("datasets--" + path.replace("/", "--")) / "refs" / "main"
    try:
        sha = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return sha if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha) else None


class NetworkRequiredError(NetworkError):
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
            "  neuronmoe evaluate --suite paper --check   (loads and checks every cell)\n"
            "then copy ~/.cache/huggingface to this machine and run with HF_DATASETS_OFFLINE=1; "
            "or use `--suite local`, which needs no network."
        )
    return {"offline": offline, "missing": [d["path"] for d in missing]}
