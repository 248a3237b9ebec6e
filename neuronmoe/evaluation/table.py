"""The paper's Table 1 layout from any number of evaluation runs (pure functions).

A run is the ``results.json`` that ``neuronmoe evaluate`` writes (lm-eval's JSON plus a
``neuronmoe`` block: label, experts, added_params, and the task specs that say which
benchmark and language each task stands for). ``build_table`` returns plain rows; callers
(``neuronmoe report``, the pipeline's report.md) render them with ``to_markdown``/``to_csv``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.errors import ConfigError, InputError, MissingInputError

#: metrics tried in this order when a task spec names none
METRIC_PREFERENCE = ("acc_norm", "acc", "word_perplexity", "exact_match", "f1")
PERCENT_METRICS = {"acc", "acc_norm", "exact_match", "f1", "mcc"}


@dataclass
class Table:
    columns: list[dict[str, Any]]  # {"benchmark", "label", "lang", "metric", "lower_is_better"}
    rows: list[dict[str, Any]]  # {"model", "experts", "added_params", "scores": {col_key: value|None}}
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def key(col: dict[str, Any]) -> str:
        return f"{col['benchmark']}/{col['lang'] or '-'}"


def load_run(path: str | Path) -> dict[str, Any]:
    """A run's results.json (``path`` is the file or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise MissingInputError(f"{p}: no results.json (did `neuronmoe evaluate` finish for this run?)")
    from neuronmoe.utils.io import read_json

    data = read_json(p)  # every problem (not JSON, not UTF-8) names the file
    if not isinstance(data, dict) or "results" not in data:
        raise InputError(f"{p}: not an lm-eval results file (no 'results')")
    data.setdefault("neuronmoe", {}).setdefault("label", p.parent.name)
    data["_dir"] = str(p.parent)  # where the run's per-item results (items/) are
    return data


def metric_value(task_result: dict[str, Any], metric: str | None) -> tuple[str | None, float | None]:
    """(metric, value) from one lm-eval task result (keys like ``acc,none``)."""
    wanted = [metric] if metric else list(METRIC_PREFERENCE)
    for m in wanted:
        for k, v in task_result.items():
            if k.split(",")[0] == m and not k.endswith("_stderr") and "_stderr," not in k:
                try:
                    return m, float(v)
                except (TypeError, ValueError):
                    continue
    return (metric, None)


def _lang_order(langs: list[str | None]) -> list[str | None]:
    # English (the source) first, then targets in the order they appear
    out = sorted({x for x in langs}, key=lambda x: (x != "en", x is None, langs.index(x)))
    return out


def _specs(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's cells (task specs); a plain lm-eval results file: one per task."""
    return (run.get("neuronmoe") or {}).get("tasks") or [
        {"task": t, "benchmark": t, "lang": None, "metric": None, "label": t} for t in run.get("results", {})]


def _columns(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(benchmark, language) columns across all runs: benchmarks in order of appearance, English first."""
    cols: dict[str, dict[str, Any]] = {}
    bench_langs: dict[str, list[str | None]] = {}
    for run in runs:
        for s in _specs(run):
            b = s["benchmark"]
            langs = bench_langs.setdefault(b, [])
            if s.get("lang") not in langs:
                langs.append(s.get("lang"))
            col = {"benchmark": b, "label": s.get("label") or b, "lang": s.get("lang"), "metric": s.get("metric"),
                   "lower_is_better": bool(s.get("lower_is_better", False))}
            cols.setdefault(Table.key(col), col)
    return [cols[Table.key({"benchmark": b, "lang": lang})] for b in bench_langs for lang in _lang_order(bench_langs[b])]


def _row(run: dict[str, Any]) -> dict[str, Any]:
    nm = run.get("neuronmoe") or {}
    scores: dict[str, float | None] = {}
    metrics: dict[str, str | None] = {}
    for s in _specs(run):
        key = Table.key({"benchmark": s["benchmark"], "lang": s.get("lang")})
        res = run.get("results", {}).get(s["task"])
        m, v = metric_value(res, s.get("metric")) if res else (s.get("metric"), None)
        scores[key] = v
        metrics[key] = m
    return {"model": nm.get("label"), "experts": nm.get("experts"), "added_params": nm.get("added_params"),
            "scores": scores, "metrics": metrics}


def _experts_change(rows: list[dict[str, Any]], relative_to: str | None) -> None:
    """Each row's #experts relative to the reference row (``relative_to``, else the MoE row with most experts)."""
    ref = None
    moe = [r for r in rows if r["experts"]]
    if relative_to:
        ref = next((r for r in rows if r["model"] == relative_to), None)
        if ref is None:
            raise ConfigError(f"--relative-to {relative_to!r}: no run with that label ({', '.join(str(r['model']) for r in rows)})")
    elif len(moe) > 1:
        ref = max(moe, key=lambda r: r["experts"])
    for r in rows:
        r["experts_change"] = (
            (r["experts"] - ref["experts"]) / ref["experts"] if ref and r["experts"] and ref["experts"] and r is not ref else None
        )


def build_table(runs: list[dict[str, Any]], relative_to: str | None = None) -> Table:
    """Table-1 rows: one per run; columns = (benchmark, language) pairs across all runs.

    ``relative_to``: label of the run whose #experts the others are compared with (the paper's
    "49 (-42%)"); default the MoE run with the most experts.
    """
    columns = _columns(runs)
    rows = [_row(run) for run in runs]
    for c in columns:  # fill a column's metric from the data when the spec named none
        if not c["metric"]:
            c["metric"] = next((r["metrics"].get(Table.key(c)) for r in rows if r["metrics"].get(Table.key(c))), None)
    _experts_change(rows, relative_to)
    notes = sorted({f"{c['label']} ({c['metric']}): lower is better" for c in columns if c["lower_is_better"]})
    return Table(columns=columns, rows=rows, notes=notes)


def format_value(v: float | None, metric: str | None) -> str:
    if v is None:
        return "n/a"
    if metric in PERCENT_METRICS:
        return f"{100 * v:.2f}"
    return f"{v:.2f}" if abs(v) < 1e5 else f"{v:.3g}"


def format_params(n: int | None) -> str:
    if not n:
        return "-"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def format_experts(r: dict[str, Any]) -> str:
    if not r.get("experts"):
        return "-"
    ch = r.get("experts_change")
    return f"{r['experts']}" + (f" ({100 * ch:+.0f}%)" if ch is not None else "")


def _header(c: dict[str, Any]) -> str:
    return f"{c['label']} {(c['lang'] or '').upper()}".strip()


def to_markdown(table: Table) -> str:
    head = ["Model", "#Exp", "Added params"] + [_header(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(table.columns)) + "|"]
    for r in table.rows:
        cells = [str(r["model"]), format_experts(r), format_params(r["added_params"])]
        cells += [format_value(r["scores"].get(Table.key(c)), c["metric"]) for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    metrics = sorted({f"{c['label']}: {c['metric']}" for c in table.columns if c["metric"]})
    foot = ["", "Metrics: " + "; ".join(metrics) + " (accuracies in %)."] if metrics else []
    if table.notes:
        foot.append("; ".join(table.notes) + ".")
    return "\n".join(lines + foot) + "\n"


def to_csv(table: Table, stderrs: dict[tuple[str, str], float | None] | None = None) -> str:
    """One row per model; a value column per cell, and its standard error column when ``stderrs`` is given
    (``{(model, cell key): se}``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["model", "experts", "added_params"]
    for c in table.columns:
        name = f"{c['benchmark']}_{c['lang'] or 'all'}_{c['metric']}"
        head += [name, f"{name}_se"] if stderrs is not None else [name]
    w.writerow(head)

    def fmt(v: float | None) -> str:
        return "" if v is None or v != v else f"{v:.6g}"

    for r in table.rows:
        row = [r["model"], r["experts"] or "", r["added_params"] or 0]
        for c in table.columns:
            k = Table.key(c)
            row.append(fmt(r["scores"].get(k)))
            if stderrs is not None:
                row.append(fmt(stderrs.get((r["model"], k))))
        w.writerow(row)
    return buf.getvalue()
