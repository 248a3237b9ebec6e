"""Evaluation suites (``neuronmoe/configs/eval_suites.yaml``) resolved into task specs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuronmoe.config import check_keys, load_yaml

SUITES_CONFIG = "eval_suites"
_SUITE_KEYS = {"description", "languages", "benchmarks", "generated", "sizes"}
_BENCH_KEYS = {"name", "label", "shots", "metric", "tasks", "lower_is_better"}


@dataclass(frozen=True)
class TaskSpec:
    """One lm-eval task of a run, and where it goes in the report."""

    task: str
    benchmark: str  # e.g. "arc"; for a plain --tasks list, the task name itself
    lang: str | None  # ISO 639-1, None when unknown
    shots: int | None  # None = the task's own default
    metric: str | None  # None = pick the first of acc_norm/acc/... present
    label: str | None = None
    lower_is_better: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_suites(path: str | None = None) -> dict[str, dict[str, Any]]:
    data = load_yaml(path or SUITES_CONFIG)
    suites = data.get("suites")
    if not isinstance(suites, dict) or not suites:
        raise ValueError(f"{path or SUITES_CONFIG}: expected a 'suites' mapping")
    for name, s in suites.items():
        check_keys(s, _SUITE_KEYS, f"suite {name!r}")
        for b in s.get("benchmarks", []):
            check_keys(b, _BENCH_KEYS, f"suite {name!r} benchmark {b.get('name')!r}")
            if "name" not in b or "tasks" not in b:
                raise ValueError(f"suite {name!r}: every benchmark needs 'name' and 'tasks'")
    return suites


def get_suite(name: str, path: str | None = None) -> dict[str, Any]:
    suites = load_suites(path)
    if name not in suites:
        import difflib

        close = difflib.get_close_matches(name, suites, n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"--suite: unknown suite {name!r}{hint}; known: {', '.join(suites)}")
    return suites[name]


def task_for(bench: dict[str, Any], lang: str) -> str | None:
    """The task of ``bench`` for ``lang``; None when the suite has none for that language."""
    from neuronmoe.languages import get_language

    tasks = bench["tasks"]
    if isinstance(tasks, dict):
        return tasks.get(lang)
    language = get_language(lang, "--languages")
    if "{belebele}" in tasks and not language.belebele:
        return None
    return str(tasks).format(lang=lang, belebele=language.belebele or "", iso3=language.iso3)


def resolve_suite(
    name: str, languages: list[str] | None = None, path: str | None = None, strict: bool = True
) -> list[TaskSpec]:
    """Task specs of suite ``name`` for ``languages`` (default: the suite's own list).

    ``strict``: a language the suite has no task for is an error (else it is skipped).
    """
    from neuronmoe.languages import check_languages

    suite = get_suite(name, path)
    langs = check_languages(list(languages or suite.get("languages") or []), "--languages")
    specs: list[TaskSpec] = []
    missing: list[str] = []
    for bench in suite.get("benchmarks", []):
        for lang in langs:
            task = task_for(bench, lang)
            if task is None:
                missing.append(f"{bench['name']}/{lang}")
                continue
            specs.append(
                TaskSpec(
                    task=task,
                    benchmark=bench["name"],
                    lang=lang,
                    shots=bench.get("shots"),
                    metric=bench.get("metric"),
                    label=bench.get("label", bench["name"]),
                    lower_is_better=bool(bench.get("lower_is_better", False)),
                )
            )
    if missing and strict:
        raise ValueError(
            f"suite {name!r} has no task for {', '.join(missing)}; choose --languages among those it maps "
            f"or give --tasks explicitly"
        )
    return specs


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
