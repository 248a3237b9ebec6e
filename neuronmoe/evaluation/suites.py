"""Evaluation suites (``neuronmoe/configs/eval_suites.yaml``) resolved into task specs.

A suite is a list of benchmarks; a benchmark maps languages to *cells* (one lm-eval task each,
with its shots, few-shot split and the item count the paper implies). A profile (``paper``,
``published-script``) and ``--shots`` overrides change shots per benchmark or per cell.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from neuronmoe.config import check_keys, load_yaml
from neuronmoe.errors import ConfigError

SUITES_CONFIG = "eval_suites"
UNPINNED = "UNPINNED"
_SUITE_KEYS = {"description", "languages", "benchmarks", "generated", "sizes", "profiles", "default_profile", "lm_eval_task_dirs",
               "families"}
_BENCH_KEYS = {"name", "label", "shots", "metric", "tasks", "lower_is_better"}
_CELL_KEYS = {"task", "shots", "fewshot_split", "items"}
_PROFILE_KEYS = {"description", "shots"}
_DATASET_KEYS = {"revision", "evidence", "reason"}
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TaskSpec:
    """One cell of a run: an lm-eval task, and where it goes in the report."""

    task: str
    benchmark: str  # e.g. "arc"; for a plain --tasks list, the task name itself
    lang: str | None  # ISO 639-1, None when unknown
    shots: int | None  # None = the task's own default
    metric: str | None  # None = pick the first of acc_norm/acc/... present
    label: str | None = None
    lower_is_better: bool = False
    fewshot_split: str | None = None  # None = the task's own
    items: int | None = None  # evaluated items the paper's numbers imply (checked by --check)

    @property
    def key(self) -> str:
        """``benchmark/lang`` (the cell's name in overrides, reports and the run folder)."""
        return f"{self.benchmark}/{self.lang or '-'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_suites(path: str | None = None) -> dict[str, dict[str, Any]]:
    data = load_yaml(path or SUITES_CONFIG)
    suites = data.get("suites")
    if not isinstance(suites, dict) or not suites:
        raise ConfigError(f"{path or SUITES_CONFIG}: expected a 'suites' mapping")
    for name, s in suites.items():
        check_keys(s, _SUITE_KEYS, f"suite {name!r}")
        for b in s.get("benchmarks", []):
            check_keys(b, _BENCH_KEYS, f"suite {name!r} benchmark {b.get('name')!r}")
            if "name" not in b or "tasks" not in b:
                raise ConfigError(f"suite {name!r}: every benchmark needs 'name' and 'tasks'")
            if isinstance(b["tasks"], dict):
                for lang, cell in b["tasks"].items():
                    if isinstance(cell, dict):
                        check_keys(cell, _CELL_KEYS, f"suite {name!r} cell {b['name']}/{lang}")
                        if "task" not in cell:
                            raise ConfigError(f"suite {name!r} cell {b['name']}/{lang}: no 'task'")
        cells = {b["name"] for b in s.get("benchmarks", [])} | {
            f"{b['name']}/{lang}" for b in s.get("benchmarks", []) if isinstance(b["tasks"], dict) for lang in b["tasks"]}
        for pname, prof in (s.get("profiles") or {}).items():
            check_keys(prof or {}, _PROFILE_KEYS, f"suite {name!r} profile {pname!r}")
            bad = sorted(k for k in ((prof or {}).get("shots") or {}) if k not in cells)
            if bad:
                raise ConfigError(f"suite {name!r} profile {pname!r}: shots for unknown benchmark or cell {', '.join(bad)}")
        if s.get("default_profile") and s["default_profile"] not in (s.get("profiles") or {}):
            raise ConfigError(f"suite {name!r}: default_profile {s['default_profile']!r} is not among its profiles")
    return suites


def load_dataset_pins(path: str | None = None) -> dict[str, dict[str, Any]]:
    """``{hub dataset: {"revision": sha | UNPINNED, "evidence" | "reason": ...}}``; every entry needs a
    revision, a pinned one its evidence, an UNPINNED one its reason."""
    where = path or SUITES_CONFIG
    data = load_yaml(path or SUITES_CONFIG).get("datasets") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: 'datasets' must map hub dataset names to {{revision: ...}}")
    for ds, entry in data.items():
        if not isinstance(entry, dict) or "revision" not in entry:
            raise ConfigError(f"{where}: datasets.{ds}: 'revision' is required (a 40-hex commit or {UNPINNED})")
        check_keys(entry, _DATASET_KEYS, f"{where}: datasets.{ds}")
        rev = str(entry["revision"])
        if rev != UNPINNED and not _SHA.match(rev):
            raise ConfigError(f"{where}: datasets.{ds}.revision {rev!r}: expected a 40-hex commit or {UNPINNED}")
        if rev == UNPINNED and not str(entry.get("reason") or "").strip():
            raise ConfigError(f"{where}: datasets.{ds}: {UNPINNED} needs a 'reason' (why no commit is pinned)")
        if rev != UNPINNED and not str(entry.get("evidence") or "").strip():
            raise ConfigError(f"{where}: datasets.{ds}: a pinned revision needs its 'evidence' (where the commit comes from)")
    return data


def get_suite(name: str, path: str | None = None) -> dict[str, Any]:
    suites = load_suites(path)
    if name not in suites:
        from neuronmoe.utils.checks import did_you_mean

        raise ConfigError(f"--suite: unknown suite {name!r}{did_you_mean(name, suites)}; known: {', '.join(suites)}")
    return suites[name]


def cell_for(bench: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """``{"task", "shots"?, "fewshot_split"?, "items"?}`` of ``bench`` for ``lang``; None if unmapped."""
    from neuronmoe.languages import get_language

    tasks = bench["tasks"]
    if isinstance(tasks, dict):
        cell = tasks.get(lang)
        if cell is None:
            return None
        return dict(cell) if isinstance(cell, dict) else {"task": str(cell)}
    language = get_language(lang, "--languages")
    if "{belebele}" in tasks and not language.belebele:
        return None
    return {"task": str(tasks).format(lang=lang, belebele=language.belebele or "", iso3=language.iso3)}


def task_for(bench: dict[str, Any], lang: str) -> str | None:
    """The task of ``bench`` for ``lang``; None when the suite has none for that language."""
    cell = cell_for(bench, lang)
    return cell["task"] if cell else None


def key_value_pairs(text: str | None, where: str, form: str = "key=value") -> list[tuple[str, str]]:
    """``"a=1, b=2; c=3"`` -> ``[("a", "1"), ("b", "2"), ("c", "3")]``; a part without ``=`` is an error."""
    out: list[tuple[str, str]] = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"{where}: expected {form}, got {part!r}")
        k, v = part.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def parse_shots(text: str | dict[str, Any] | None, where: str = "--shots") -> dict[str, tuple[int, str | None]]:
    """``"hellaswag=10,mmlu/tr=5@validation"`` (or a profile's mapping) -> ``{key: (shots, split)}``.

    A key is a benchmark (every language) or ``benchmark/lang`` (one cell); ``@split`` also
    changes the split the shots are drawn from.
    """
    if isinstance(text, dict):
        items = [(str(k), str(v)) for k, v in text.items()]
    else:
        items = key_value_pairs(text, where, "benchmark[/lang]=N[@split]")
    out: dict[str, tuple[int, str | None]] = {}
    for k, v in items:
        n, _, split = v.partition("@")
        try:
            shots = int(n)
        except ValueError:
            raise ConfigError(f"{where}: {k}: shots must be an integer, got {n!r}") from None
        if shots < 0:
            raise ConfigError(f"{where}: {k}: shots must be >= 0")
        out[k] = (shots, split.strip() or None)
    return out


def resolve_suite(
    name: str, languages: list[str] | None = None, path: str | None = None, strict: bool = True,
    profile: str | None = None, shots: str | dict[str, Any] | None = None,
) -> list[TaskSpec]:
    """Task specs of suite ``name`` for ``languages`` (default: the suite's own list).

    ``profile``: one of the suite's profiles (default its ``default_profile``); ``shots``:
    ``--shots`` overrides, applied after the profile. ``strict``: a language the suite has no
    task for is an error (else it is skipped).
    """
    from neuronmoe.languages import check_languages

    suite = get_suite(name, path)
    langs = check_languages(list(languages or suite.get("languages") or []), "--languages")
    profile_shots = _profile_shots(name, suite, profile)
    specs, missing = _suite_specs(suite, langs, strict)
    if missing and strict:
        raise ConfigError(
            f"suite {name!r} has no task for {', '.join(missing)}; choose --languages among those it maps "
            f"or give --tasks explicitly"
        )
    # a profile may name cells of languages this run leaves out; --shots must name cells of this run
    specs = apply_shots(specs, profile_shots, strict=False)
    return apply_shots(specs, parse_shots(shots))


def _suite_specs(suite: dict[str, Any], langs: list[str], strict: bool) -> tuple[list[TaskSpec], list[str]]:
    """Specs benchmark by benchmark, language by language, and the ``bench/lang`` cells missing. A suite with
    ``families`` gives a language without all of its cells those of :mod:`neuronmoe.evaluation.families`
    (nothing is then missing: a family without a benchmark is reported by the coverage table)."""
    benches = list(suite.get("benchmarks", []))
    chosen: dict[str, dict[str, dict[str, Any]]] = {}  # lang -> benchmark -> cell (family-resolved languages)
    if suite.get("families"):
        from neuronmoe.evaluation.families import resolve_languages

        res = resolve_languages(suite, langs, strict)
        for lang, picks in res.chosen.items():
            chosen[lang] = {b["name"]: cell for _, b, cell in picks}
            benches += [b for _, b, _ in picks if all(b["name"] != x["name"] for x in benches)]
    specs: list[TaskSpec] = []
    missing: list[str] = []
    for bench in benches:
        for lang in langs:
            cell = chosen[lang].get(bench["name"]) if lang in chosen else (
                cell_for(bench, lang) if bench in suite.get("benchmarks", []) else None)
            if cell is None:
                if lang not in chosen and bench in suite.get("benchmarks", []):
                    missing.append(f"{bench['name']}/{lang}")
                continue
            specs.append(TaskSpec(
                task=cell["task"], benchmark=bench["name"], lang=lang, shots=cell.get("shots", bench.get("shots")),
                metric=bench.get("metric"), label=bench.get("label", bench["name"]),
                lower_is_better=bool(bench.get("lower_is_better", False)), fewshot_split=cell.get("fewshot_split"),
                items=cell.get("items")))
    return specs, missing


def _profile_shots(name: str, suite: dict[str, Any], profile: str | None) -> dict[str, tuple[int, str | None]]:
    profiles = suite.get("profiles") or {}
    chosen = profile or suite.get("default_profile")
    if profile and profile not in profiles:
        known = ", ".join(profiles) or "none"
        raise ConfigError(f"--profile: suite {name!r} has no profile {profile!r} (known: {known})")
    if not chosen:
        return {}
    return parse_shots((profiles.get(chosen) or {}).get("shots") or {}, f"suite {name!r} profile {chosen!r}")


def apply_shots(specs: list[TaskSpec], overrides: dict[str, tuple[int, str | None]], strict: bool = True) -> list[TaskSpec]:
    """Specs with shot overrides applied: a ``benchmark/lang`` key beats a ``benchmark`` key.

    ``strict``: a key that names no benchmark or cell of ``specs`` is an error.
    """
    known = {s.benchmark for s in specs} | {s.key for s in specs}
    unknown = sorted(k for k in overrides if k not in known)
    if unknown and strict:
        raise ConfigError(f"--shots: no cell or benchmark {', '.join(unknown)} in this run (known: {', '.join(sorted(known))})")
    out = []
    for s in specs:
        ov = overrides.get(s.key) or overrides.get(s.benchmark)
        if ov is not None:
            n, split = ov
            s = replace(s, shots=n, fewshot_split=split or s.fewshot_split)
        out.append(s)
    return out


def specs_from_tasks(tasks: list[str], shots: int | None = None) -> list[TaskSpec]:
    """Specs for a plain ``--tasks`` list; the language is guessed from a known suffix."""
    from neuronmoe.languages import LANGUAGES

    by_flores = {lang.belebele: code for code, lang in LANGUAGES.items() if lang.belebele}
    out = []
    for t in tasks:
        lang = None
        tail = t.rsplit("_", 1)[-1] if "_" in t else ""
        if tail in LANGUAGES:
            lang = tail
        else:
            for flores, code in by_flores.items():
                if t.endswith("_" + flores):
                    lang = code
        out.append(TaskSpec(task=t, benchmark=t, lang=lang, shots=shots, metric=None, label=t))
    return out
