"""Cells of a suite for a language it has no cells for, from the benchmark families of ``eval_families.yaml``.

A suite with ``families: <config>`` (the ``paper`` suite) evaluates a language that has a cell in every one of its
benchmarks on exactly those cells. Any other language gets, per family (reading comprehension, commonsense,
knowledge), the first ``take`` benchmarks of the family's ``prefer`` list that exist for it: the suite's own cell
where it has one, else the benchmark's lm-eval ``task`` template if lm-eval's index of the benchmark's
``lm_eval_dirs`` knows the task it names. :func:`coverage` and :func:`format_coverage` give the table the
paper-scale dry run prints (benchmark x language: task, dataset, shots, revision, or missing).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from neuronmoe.config import check_keys, load_yaml
from neuronmoe.errors import ConfigError

_FAMILY_KEYS = {"name", "label", "take", "prefer"}
_BENCH_KEYS = {"task", "lm_eval_dirs", "codes", "label", "shots", "metric", "documented", "lower_is_better"}
#: fields a benchmark outside the suite must declare (the suite's own benchmarks keep theirs)
_OWN_FIELDS = ("label", "shots", "metric")
MISSING = "missing"


class NoBenchmarkError(ConfigError):
    """A language for which no family has any benchmark (lm-eval ships none of the declared ones for it)."""


@dataclass
class Resolution:
    """Per language: ``[(family, benchmark dict, cell)]`` chosen, and the families with nothing for it."""

    chosen: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)  # languages with every cell of the suite itself


def load_families(name: str, suite: dict[str, Any]) -> dict[str, Any]:
    """The family config ``name`` checked against ``suite`` (every preferred benchmark is declared; one outside
    the suite has its label, shots and metric)."""
    data = load_yaml(name)
    fams, benches = data.get("families"), data.get("benchmarks") or {}
    if not isinstance(fams, list) or not fams:
        raise ConfigError(f"{name}: expected a 'families' list")
    in_suite = {b["name"] for b in suite.get("benchmarks", [])}
    for f in fams:
        check_keys(f, _FAMILY_KEYS, f"{name}: family {f.get('name')!r}")
        if not f.get("name") or not f.get("prefer"):
            raise ConfigError(f"{name}: every family needs 'name' and 'prefer'")
        if int(f.get("take", 1)) < 1:
            raise ConfigError(f"{name}: family {f['name']}: take must be >= 1")
        for b in f["prefer"]:
            if b not in benches and b not in in_suite:
                raise ConfigError(f"{name}: family {f['name']} prefers {b!r}, declared neither under 'benchmarks' nor in the suite")
    for b, spec in benches.items():
        check_keys(spec, _BENCH_KEYS, f"{name}: benchmark {b}")
        if "task" not in spec:
            raise ConfigError(f"{name}: benchmark {b}: no 'task' template")
        lacking = [k for k in _OWN_FIELDS if b not in in_suite and k not in spec]
        if lacking:
            raise ConfigError(f"{name}: benchmark {b} is not in the suite, so it needs {', '.join(lacking)}")
    return data


def format_template(template: str, lang: str, codes: dict[str, str] | None = None) -> str | None:
    """``template`` for ``lang`` ({code}, {iso3}, {belebele}); None when the language lacks a code it uses."""
    from neuronmoe.languages import get_language

    language = get_language(lang, "--languages")
    if "{belebele}" in template and not language.belebele:
        return None
    code = (codes or {}).get(lang, lang)
    return template.format(code=code, lang=lang, iso3=language.iso3, belebele=language.belebele or "")


def family_dirs(fams: dict[str, Any], langs: Iterable[str]) -> list[str]:
    """The lm-eval task folders the family benchmarks of ``langs`` live in (formatted per language)."""
    out: list[str] = []
    for lang in langs:
        for spec in (fams.get("benchmarks") or {}).values():
            for d in spec.get("lm_eval_dirs") or []:
                d = format_template(str(d), lang, spec.get("codes"))
                if d and d not in out:
                    out.append(d)
    return out


def _bench_dict(name: str, suite: dict[str, Any], fams: dict[str, Any]) -> dict[str, Any]:
    for b in suite.get("benchmarks", []):
        if b["name"] == name:
            return b
    spec = fams["benchmarks"][name]
    return {"name": name, "label": spec["label"], "shots": spec["shots"], "metric": spec["metric"],
            "lower_is_better": bool(spec.get("lower_is_better", False)), "tasks": {}}


def _candidate(name: str, lang: str, suite: dict[str, Any], fams: dict[str, Any], known: set[str]) -> dict[str, Any] | None:
    """The cell of benchmark ``name`` for ``lang``: the suite's own, else the template's task if lm-eval has it."""
    from neuronmoe.evaluation.suites import cell_for

    bench = next((b for b in suite.get("benchmarks", []) if b["name"] == name), None)
    if bench is not None:
        cell = cell_for(bench, lang)
        if cell is not None:
            return cell
    spec = (fams.get("benchmarks") or {}).get(name)
    if spec is None:
        return None
    task = format_template(str(spec["task"]), lang, spec.get("codes"))
    return {"task": task} if task and task in known else None


def resolve_languages(suite: dict[str, Any], langs: list[str], strict: bool = True) -> Resolution:
    """Which benchmark cells each language gets (see the module doc); ``strict``: a language with no benchmark
    at all is an error naming the lm-eval tasks that mention it."""
    from neuronmoe.evaluation.suites import cell_for

    res = Resolution()
    partial = []
    for lang in langs:
        if all(cell_for(b, lang) is not None for b in suite.get("benchmarks", [])):
            res.complete.add(lang)
        else:
            partial.append(lang)
    if not partial:
        return res
    fams = load_families(str(suite["families"]), suite)
    known = known_tasks(family_dirs(fams, partial))
    for lang in partial:
        chosen, missing = [], []
        for fam in fams["families"]:
            got = []
            for name in fam["prefer"]:
                cell = _candidate(name, lang, suite, fams, known)
                if cell is not None:
                    got.append((fam["name"], _bench_dict(name, suite, fams), cell))
                if len(got) == int(fam.get("take", 1)):
                    break
            chosen += got
            if not got:
                missing.append(fam["name"])
        if not chosen and strict:
            raise NoBenchmarkError(no_benchmark_message(lang, fams))
        res.chosen[lang], res.missing[lang] = chosen, missing
    return res


def known_tasks(dirs: list[str]) -> set[str]:
    """Task names lm-eval's index knows under ``dirs`` (folders of lm_eval/tasks/; indexed once per process) and
    in our task folder."""
    from neuronmoe.evaluation.taskindex import task_manager

    out: set[str] = set(task_manager(builtin_dirs=[]).all_tasks)  # ours (neuronmoe/evaluation/tasks/paper/)
    for d in dirs:  # one index per folder: a folder shared by many languages (belebele) is indexed once
        out |= set(task_manager(builtin_dirs=[d]).all_tasks)
    return out


def nearby_tasks(lang: str, limit: int = 20) -> list[str]:
    """lm-eval task files whose names mention ``lang`` (its ISO 639-1/639-3 or FLORES code), one entry per top-level
    folder of lm_eval/tasks/ (``folder/first file (+N more)``): where to look for a benchmark of one's own (no YAML
    is parsed)."""
    from neuronmoe.evaluation.taskindex import lm_eval_tasks_dir
    from neuronmoe.languages import get_language

    language = get_language(lang, "--languages")
    marks = {lang, language.iso3, *([language.belebele] if language.belebele else [])}
    by_folder: dict[str, list[str]] = {}
    root = lm_eval_tasks_dir()
    for folder, _, files in os.walk(root):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext != ".yaml" or stem.startswith("_"):
                continue
            words = stem.split("_")
            if marks & (set(words) | {"_".join(p) for p in zip(words, words[1:])}):
                top = os.path.relpath(folder, root).split(os.sep)[0]
                by_folder.setdefault(top, []).append(stem)
    out = [f"{top}/{min(stems)}" + (f" (+{len(stems) - 1} more)" if len(stems) > 1 else "")
           for top, stems in sorted(by_folder.items())]
    return out[:limit] + ([f"... ({len(out) - limit} more folders)"] if len(out) > limit else [])


def no_benchmark_message(lang: str, fams: dict[str, Any]) -> str:
    declared = ", ".join(f"{f['name']} ({', '.join(f['prefer'])})" for f in fams["families"])
    near = nearby_tasks(lang)
    return (f"--languages {lang}: lm-eval ships none of the benchmarks declared for evaluating a new language "
            f"(neuronmoe/configs/eval_families.yaml: {declared}); lm-eval task files that mention {lang}: "
            + (", ".join(near) if near else "none")
            + ". Add a benchmark to eval_families.yaml, or give --tasks / --include-path (docs/evaluation.md)")


def family_of(name: str, fams: dict[str, Any]) -> str | None:
    return next((f["name"] for f in fams["families"] if name in f["prefer"]), None)


def _leaves(task: str, dirs: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The leaf configs of ``task`` from the first of the (cached) indexes of ``dirs`` that knows it."""
    from neuronmoe.evaluation.taskindex import leaf_configs, task_manager

    for d in dirs:
        tm = task_manager(builtin_dirs=[d] if d != "*suite*" else None)
        if task in set(tm.all_tasks):
            return leaf_configs(task, tm)
    return []


def coverage(name: str, langs: list[str], profile: str | None = None, shots: str | None = None) -> dict[str, Any]:
    """The coverage table of suite ``name`` for ``langs``: ``{"languages", "rows": [{"family", "benchmark", "label",
    "cells": {lang: {"task", "dataset", "shots", "metric", "revision"} or None}}], "missing": {lang: [family]}}``
    (``revision``: the pinned commit, ``UNPINNED`` or ``not listed``). Needs lm-eval's index, no data."""
    from neuronmoe.evaluation.suites import UNPINNED, get_suite, load_dataset_pins, resolve_suite
    from neuronmoe.evaluation.taskindex import is_hub_dataset

    suite = get_suite(name)
    specs = resolve_suite(name, langs, profile=profile, shots=shots)
    fams = load_families(str(suite["families"]), suite) if suite.get("families") else {"families": [], "benchmarks": {}}
    res = resolve_languages(suite, langs) if suite.get("families") else Resolution()
    pins = load_dataset_pins()
    dirs = [d for d in suite.get("lm_eval_task_dirs") or []] + family_dirs(fams, [x for x in langs if x not in res.complete])
    rows: dict[str, dict[str, Any]] = {}
    for s in specs:
        fam = family_of(s.benchmark, fams)
        label = next((f.get("label", f["name"]) for f in fams["families"] if f["name"] == fam), fam or "-")
        row = rows.setdefault(s.benchmark, {"family": label, "benchmark": s.benchmark, "label": s.label,
                                            "cells": {x: None for x in langs}})
        leaves = _leaves(s.task, dirs)
        paths = sorted({str(c.get("dataset_path")) for _, c in leaves if is_hub_dataset(c.get("dataset_path"))})
        ds = paths[0] if len(paths) == 1 else (", ".join(paths) or None)
        rev = str((pins.get(ds) or {}).get("revision") or "not listed") if ds else None
        row["cells"][s.lang] = {"task": s.task, "dataset": ds, "shots": s.shots, "metric": s.metric,
                                "revision": rev if rev in (UNPINNED, "not listed", None) else f"pinned {rev[:12]}"}
    missing = {lang: [next((f.get("label", f["name"]) for f in fams["families"] if f["name"] == m), m) for m in ms]
               for lang, ms in res.missing.items() if ms}
    order = [f.get("label", f["name"]) for f in fams["families"]]
    ranked = sorted(rows.values(), key=lambda r: order.index(r["family"]) if r["family"] in order else len(order))
    return {"suite": name, "languages": list(langs), "rows": ranked, "missing": missing,
            "from_families": sorted(res.chosen)}


def format_coverage(cov: dict[str, Any]) -> list[str]:
    """The coverage table as Markdown lines: benchmark x language, each cell ``task (dataset, N-shot, metric,
    revision)``; ``-`` where another benchmark of the family was chosen, ``MISSING`` where the family has none."""
    langs = cov["languages"]
    out = ["| family | benchmark | " + " | ".join(langs) + " |", "|---|---|" + "---|" * len(langs)]
    fams = list(dict.fromkeys([r["family"] for r in cov["rows"]] + [m for ms in cov["missing"].values() for m in ms]))
    for fam in fams:
        for r in (x for x in cov["rows"] if x["family"] == fam):
            cells = []
            for lang in langs:
                c = r["cells"].get(lang)
                cells.append("-" if c is None else f"{c['task']} ({c['dataset'] or 'local files'}, {c['shots']}-shot, "
                             f"{c['metric']}, {c['revision'] or '-'})")
            out.append(f"| {fam} | {r['label']} | " + " | ".join(cells) + " |")
        lacking = [lang for lang in langs if fam in cov["missing"].get(lang, [])]
        if lacking:
            out.append(f"| {fam} | (none in lm-eval) | " + " | ".join("MISSING" if x in lacking else "" for x in langs) + " |")
    return out


def suite_task_dirs(suite: dict[str, Any], langs: Iterable[str]) -> list[str]:
    """The lm-eval folders a run of ``suite`` over ``langs`` indexes: the suite's ``lm_eval_task_dirs`` and, for a
    language without all of its cells, its families' folders (so the small index knows every task)."""
    from neuronmoe.evaluation.suites import cell_for

    dirs = list(suite.get("lm_eval_task_dirs") or [])
    if not suite.get("families"):
        return dirs
    partial = [x for x in dict.fromkeys(langs) if x and any(cell_for(b, x) is None for b in suite.get("benchmarks", []))]
    if not partial:
        return dirs
    fams = load_families(str(suite["families"]), suite)
    return dirs + [d for d in family_dirs(fams, partial) if d not in dirs]
