"""Table 1 with its uncertainty: ``value ± se`` per cell, paired tests against baselines, the paper beside ours.

Every number comes from the runs' files: lm-eval's ``results.json`` (values, closed-form standard
errors of accuracies) and the per-item rows under ``items/`` (bootstrap standard errors of bits per
byte; the paired tests, which join two runs on the same items by doc id and doc hash).

* :func:`estimates`: ``{(label, cell): Estimate}`` (value, standard error, items);
* :func:`paired_tests`: every run against each baseline run (default ``Dense`` and ``LayerMoE-S1``)
  on every cell both have: exact McNemar for 0/1 metrics, a paired sign-flip permutation test otherwise
  (bits per byte: per-document differences weighted by bytes);
* :func:`render`: the Markdown of ``neuronmoe report`` (and of the pipeline's report.md);
* :func:`paper_comparison`: ``neuronmoe report --paper``: the paper's Tables 1, 3 and 11 beside ours.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronmoe.errors import ConfigError
from neuronmoe.evaluation.stats import (
    ALPHA,
    PairedResult,
    bootstrap_ratio,
    format_p_value,
    mcnemar,
    mean_se,
    paired_permutation_mean,
    paired_permutation_ratio,
)
from neuronmoe.evaluation.table import PERCENT_METRICS, Table, build_table, format_experts, format_params, format_value

DEFAULT_BASELINES = ("Dense", "LayerMoE-S1")
BINARY_METRICS = {"acc", "acc_norm", "exact_match"}
LN2 = math.log(2)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    se: float | None
    n: int | None
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Comparison:
    model: str
    baseline: str
    cell: str
    metric: str
    result: PairedResult
    lower_is_better: bool = False

    @property
    def better(self) -> bool:
        return (self.result.diff < 0) if self.lower_is_better else (self.result.diff > 0)


# ------------------------------------------------------------------------------------ per-item data
def _spec_for(run: dict[str, Any], key: str) -> dict[str, Any] | None:
    for s in (run.get("neuronmoe") or {}).get("tasks") or []:
        if f"{s['benchmark']}/{s.get('lang') or '-'}" == key:
            return s
    return None


def load_items(run: dict[str, Any], key: str) -> dict[tuple[str, Any], dict[str, Any]] | None:
    """A run's per-item rows of a cell, ``{(task, doc_id): row}``; None when the run has none."""
    nm = run.get("neuronmoe") or {}
    rel = ((nm.get("cells") or {}).get(key) or {}).get("items")
    root = run.get("_dir")
    if not rel or not root:
        return None
    p = Path(root) / rel
    if not p.exists():
        return None
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out[(r.get("task"), r.get("doc_id"))] = r
    return out


def _binary(metric: str | None, rows: list[dict[str, Any]]) -> bool:
    if metric in BINARY_METRICS:
        return True
    vals = [r.get(metric) for r in rows]
    return bool(vals) and all(v in (0, 1, 0.0, 1.0, True, False) for v in vals)


def _ll_bytes(rows: list[dict[str, Any]], metric: str) -> tuple[list[float], list[float]]:
    pairs = [r[metric] for r in rows]
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def estimate(run: dict[str, Any], column: dict[str, Any], value: float | None) -> Estimate:
    """Value, standard error and items of one cell of one run."""
    key = Table.key(column)
    metric = column.get("metric")
    items = load_items(run, key)
    rows = list(items.values()) if items else []
    rows = [r for r in rows if metric in r]
    se = None
    ci = None
    if metric == "bits_per_byte" and rows:
        ll, nbytes = _ll_bytes(rows, metric)
        v, se, ci = bootstrap_ratio([-x for x in ll], nbytes, scale=1 / LN2)
        return Estimate(value if value is not None else v, se, len(rows), ci)
    spec = _spec_for(run, key)
    res = (run.get("results") or {}).get(spec["task"]) if spec else None
    if res and metric:
        for k, v in res.items():
            if k.split(",")[0] == f"{metric}_stderr":
                try:
                    se = float(v)
                except (TypeError, ValueError):
                    se = None
                break
    if se is None and rows and _binary(metric, rows):
        se = mean_se([float(r[metric]) for r in rows])
    n = len(rows) if rows else None
    if n is None and res is not None:
        n = None
    return Estimate(value, se, n, ci)


def estimates(table: Table, runs: list[dict[str, Any]]) -> dict[tuple[str, str], Estimate]:
    out = {}
    for row, run in zip(table.rows, runs):
        for c in table.columns:
            k = Table.key(c)
            out[(row["model"], k)] = estimate(run, c, row["scores"].get(k))
    return out


def paired_items(run_a: dict[str, Any], run_b: dict[str, Any],
                 column: dict[str, Any]) -> tuple[str, list[dict], list[dict]] | None:
    """``(metric, A's items, B's items)`` on the items both evaluated (same doc id and doc hash, both scored on the
    column's metric), in the same order; None without per-item data or with fewer than two such items."""
    key = Table.key(column)
    metric = column.get("metric")
    ia, ib = load_items(run_a, key), load_items(run_b, key)
    if not ia or not ib or not metric:
        return None
    common = [k for k in ia if k in ib and ia[k].get("doc_hash") == ib[k].get("doc_hash") and metric in ia[k] and metric in ib[k]]
    if len(common) < 2:
        return None
    return metric, [ia[k] for k in common], [ib[k] for k in common]


def paired_values(run_a: dict[str, Any], run_b: dict[str, Any], column: dict[str, Any]
                  ) -> tuple[str, list[float], list[float], list[float] | None] | None:
    """``(metric, A's values, B's values, bytes)`` on the items both evaluated (:func:`paired_items`): for bits per
    byte the negated log-likelihoods in nats and each item's bytes (the ratio's denominator), otherwise the metric's
    values and None; None without per-item data or with values that are not numbers. The paired test and the power
    analysis read the same values."""
    items = paired_items(run_a, run_b, column)
    if items is None:
        return None
    metric, ra, rb = items
    if metric == "bits_per_byte":
        (lla, nbytes), (llb, _) = _ll_bytes(ra, metric), _ll_bytes(rb, metric)
        return metric, [-x for x in lla], [-x for x in llb], nbytes
    try:
        return metric, [float(r[metric]) for r in ra], [float(r[metric]) for r in rb], None
    except (TypeError, ValueError):
        return None


def paired(run_a: dict[str, Any], run_b: dict[str, Any], column: dict[str, Any]) -> PairedResult | None:
    """A vs B on the items both evaluated (same doc id and doc hash); None without per-item data."""
    values = paired_values(run_a, run_b, column)
    if values is None:
        return None
    metric, a, b, nbytes = values
    if nbytes is not None:
        return paired_permutation_ratio(a, b, nbytes, scale=1 / LN2)
    if _binary(metric, [{metric: v} for v in a + b]):
        return mcnemar(a, b)
    return paired_permutation_mean(a, b)


def paired_tests(table: Table, runs: list[dict[str, Any]], baselines: tuple[str, ...] = DEFAULT_BASELINES) -> list[Comparison]:
    """Each run against each baseline present (a baseline against the ones listed before it)."""
    by_label = {row["model"]: run for row, run in zip(table.rows, runs)}
    present = [b for b in baselines if b in by_label]
    out = []
    for row in table.rows:
        label = row["model"]
        for b in present:
            if b == label or (label in present and present.index(label) < present.index(b)):
                continue
            for c in table.columns:
                res = paired(by_label[label], by_label[b], c)
                if res is not None:
                    out.append(Comparison(label, b, Table.key(c), c.get("metric") or "", res, bool(c.get("lower_is_better"))))
    return out


# ------------------------------------------------------------------------------------------ render
def _marks(baselines: list[str]) -> dict[str, str]:
    """A one-letter tag per baseline (its initial; the position if initials clash)."""
    tags: dict[str, str] = {}
    for i, b in enumerate(baselines):
        t = b[:1].upper()
        tags[b] = t if t not in tags.values() else str(i + 1)
    return tags


def format_estimate(e: Estimate, metric: str | None) -> str:
    if e.value is None:
        return "n/a"
    if e.se is None or (isinstance(e.se, float) and math.isnan(e.se)):
        return format_value(e.value, metric)
    if metric in PERCENT_METRICS:
        return f"{100 * e.value:.2f} ± {100 * e.se:.2f}"
    return f"{e.value:.3f} ± {e.se:.3f}"  # bits per byte: differences of a few thousandths matter


def render(table: Table, runs: list[dict[str, Any]], baselines: tuple[str, ...] = DEFAULT_BASELINES) -> str:
    """Markdown: Table 1 with ``value ± se`` and significance marks, then the list of significant differences."""
    est = estimates(table, runs)
    comps = paired_tests(table, runs, baselines)
    present = [b for b in baselines if any(r["model"] == b for r in table.rows)]
    tags = _marks(present)
    sig: dict[tuple[str, str], list[str]] = {}
    for c in comps:
        if c.result.significant:
            sig.setdefault((c.model, c.cell), []).append(("▲" if c.better else "▼") + tags[c.baseline])
    head = ["Model", "#Exp", "Added params"] + [f"{c['label']} {(c['lang'] or '').upper()}".strip() for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(table.columns)) + "|"]
    for r in table.rows:
        cells = [str(r["model"]), format_experts(r), format_params(r["added_params"])]
        for c in table.columns:
            k = Table.key(c)
            txt = format_estimate(est[(r["model"], k)], c["metric"])
            marks = sig.get((r["model"], k))
            cells.append(txt + (" " + " ".join(marks) if marks else ""))
        lines.append("| " + " | ".join(cells) + " |")
    foot = [""]
    metrics = sorted({f"{c['label']}: {c['metric']}" for c in table.columns if c["metric"]})
    if metrics:
        foot.append("Metrics: " + "; ".join(metrics) + " (accuracies in %). ± is one standard error: closed form for "
                    "accuracies, bootstrap over documents for bits per byte.")
    if table.notes:
        foot.append("; ".join(table.notes) + ".")
    if present:
        legend = ", ".join(f"{tags[b]} = {b}" for b in present)
        foot.append(f"▲X / ▼X: significantly better / worse than baseline X ({legend}) on the same items, two-sided "
                    f"p < {ALPHA} (exact McNemar test for accuracies, paired sign-flip permutation test over documents, "
                    "weighted by bytes, for bits per byte; "
                    f"{len(comps)} tests, uncorrected: about {ALPHA * len(comps):.1f} false marks expected by chance).")
    lines += foot
    lines += ["", *baselines_section(table, runs), *paired_list(comps)]
    return "\n".join(lines) + "\n"


def _run_baselines(run: dict[str, Any], key: str) -> tuple[Any, dict[str, Any]] | None:
    """(identity of the items, baseline summary) of one run's cell; None when its items carry no baselines."""
    from neuronmoe.evaluation.runner import baseline_summary

    items = load_items(run, key)
    if items:
        rows = [r for r in items.values() if isinstance(r.get("baselines"), dict)]
        if rows:
            return frozenset((r.get("task"), r.get("doc_id"), r.get("doc_hash")) for r in rows), baseline_summary(rows) or {}
    cell = ((run.get("neuronmoe") or {}).get("cells") or {}).get(key) or {}
    base = cell.get("baselines")
    return (json.dumps(base, sort_keys=True), base) if base else None


def baselines_section(table: Table, runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: the baselines every model of a cell must beat, computed on the items that cell evaluated
    (one line per set of items when runs evaluated different ones)."""
    lines = []
    for c in table.columns:
        key = Table.key(c)
        groups: dict[Any, tuple[dict[str, Any], list[str]]] = {}
        for row, run in zip(table.rows, runs):
            got = _run_baselines(run, key)
            if got is None:
                continue
            groups.setdefault(got[0], (got[1], []))[1].append(str(row["model"]))
        for base, labels in groups.values():
            who = "every run" if len(groups) == 1 else ", ".join(labels)
            cells = [f"{100 * base[b]:.2f}" + (f" ± {100 * base[f'{b}_se']:.2f}" if base.get(f"{b}_se") else "")
                     if b in base else "n/a" for b in ("chance", "unigram")]
            lines.append(f"| {c['label']} {(c['lang'] or '').upper()} | {base.get('items')} | {cells[0]} | {cells[1]} | {who} |")
    if not lines:
        return []
    return ["Baselines on the same items (accuracy in %): uniform chance, and a unigram-frequency guesser that picks the "
            "option most frequent in the language's training text (± one standard error); a model knows the language "
            "only where it beats both.", "", "| cell | items | chance | unigram guesser | runs |", "|---|---:|---:|---:|---|",
            *lines, ""]


def paired_list(comps: list[Comparison]) -> list[str]:
    """Markdown lines: every paired test with its difference, p-value and items; significant ones say which way."""
    if not comps:
        return ["No paired tests (the runs have no per-item results in common, or no baseline run is present)."]
    sig = [c for c in comps if c.result.significant]
    out = [f"Paired tests: {len(sig)} of {len(comps)} differences are significant (p < {ALPHA}).", "",
           "| model | vs | cell | difference [95% interval] | p | items | test |", "|---|---|---|---:|---:|---:|---|"]
    for c in comps:
        verdict = ("better" if c.better else "worse") if c.result.significant else "not significant"
        out.append(f"| {c.model} | {c.baseline} | {c.cell} ({c.metric}) | {format_difference(c)} "
                   f"({verdict}) | {format_p(c.result)} | {c.result.n} | {c.result.test} |")
    return out


def format_difference(c: Comparison) -> str:
    """``+15.00 pts`` for accuracies; ``-0.015 [-0.018, -0.012]`` for a permutation test's difference with the 95%
    interval that inverts it."""
    pct = c.metric in PERCENT_METRICS
    scale, fmt, unit = (100, "{:+.2f}", " pts") if pct else (1, "{:+.3f}", "")
    text = fmt.format(scale * c.result.diff) + unit
    if c.result.ci is not None:
        lo, hi = (fmt.format(scale * v) for v in c.result.ci)
        text += f" [{lo}, {hi}]"
    return text


def format_p(r: PairedResult) -> str:
    """The p-value; a Monte Carlo permutation p at its floor is shown as the bound it is (:func:`stats.format_p_value`)."""
    return format_p_value(r)


# ------------------------------------------------------------------------------------ the paper
def load_paper_tables(path: str | None = None) -> dict[str, Any]:
    from neuronmoe.config import load_yaml

    data = load_yaml(path or "paper_results")
    rows = data.get("rows")
    if not isinstance(rows, dict):
        raise ConfigError("paper_results.yaml: expected a 'rows' mapping")
    return data


#: the paper prints percentages to two decimals: its value is known to within half of the last digit
PAPER_ROUNDING = 0.005
DENSE_LABEL = "Dense"
_SEED = re.compile(r"^(.*?) \(seed (\d+)\)$")


def seed_groups(labels: list[str]) -> dict[str, list[str]]:
    """``{paper row: run labels}``: ``"NeuronMoE-S1 (seed 2)"`` counts as a run of ``"NeuronMoE-S1"``."""
    out: dict[str, list[str]] = {}
    for label in labels:
        m = _SEED.match(str(label))
        out.setdefault(m.group(1) if m else str(label), []).append(str(label))
    return out


def gap_reading(row: str, gap_pts: float, seed_values: list[float]) -> str:
    """What a gap between ours and the paper's number can mean. Both are scored on the same items, so item
    sampling explains neither: for Dense (same model) any gap beyond the paper's rounding is a protocol
    difference; for a trained row the noise left is training-seed variance, estimated only from several seeds."""
    if row == DENSE_LABEL:
        if abs(gap_pts) <= 100 * PAPER_ROUNDING + 1e-9:
            return "within rounding"
        return "protocol difference: investigate (same model, same items)"
    if len(seed_values) < 2:
        return "seed variance not estimated (one seed)"
    sd = statistics.stdev(seed_values)
    what = f"{gap_pts / sd:+.1f} seed s.d." if sd > 0 else "seeds agree exactly"
    return f"{len(seed_values)} seeds, s.d. {sd:.2f} pts: gap {what}"


def paper_comparison(table: Table, runs: list[dict[str, Any]], paper: dict[str, Any] | None = None) -> str:
    """Markdown: for every run whose label is a row of the paper (or a seed of one, ``"<row> (seed N)"``), ours
    beside the paper's value, the gap, and what the gap can mean (:func:`gap_reading`)."""
    paper = paper or load_paper_tables()
    rows = paper["rows"]
    sources = paper.get("sources") or {}
    unlike = paper.get("not_reproduced") or {}  # rows the paper quotes from another recipe: shown, not compared
    est = estimates(table, runs)
    groups = {k: v for k, v in seed_groups([r["model"] for r in table.rows]).items() if k in rows}
    lines = ["| model | cell | ours ± se | paper | difference | what the gap can mean | paper table |",
             "|---|---|---:|---:|---:|---|---|"]
    for row, labels in groups.items():
        for c in table.columns:
            k = Table.key(c)
            vals = [est[(lab, k)] for lab in labels if est[(lab, k)].value is not None]
            if k not in rows[row] or not vals:
                continue
            theirs = float(rows[row][k])
            seed_pts = [100 * e.value for e in vals]
            ours = Estimate(sum(e.value for e in vals) / len(vals), vals[0].se if len(vals) == 1 else None, vals[0].n)
            gap = 100 * ours.value - theirs
            diff, reading = (("-", "not compared (unlike runs*)") if row in unlike
                             else (f"{gap:+.2f}", gap_reading(row, gap, seed_pts)))
            lines.append(f"| {row} | {k} | {format_estimate(ours, c['metric'])} | {theirs:.2f} | {diff} | "
                         f"{reading} | {sources.get(row, '')} |")
    if len(lines) == 2:
        if groups:
            return ("These runs share no cell with the paper's tables (its cells: ARC, Belebele, HellaSwag, MMLU x "
                    "language, from `--suite paper`).\n")
        return ("No run label matches a row of the paper's tables (labels: "
                + ", ".join(sorted(rows)) + "). Label runs with --label accordingly.\n")
    note = ["", "Ours and the paper's numbers are scored on the same items, so item sampling (the ± beside ours, which "
            "compares models within our table) explains no gap between them. Dense is the same model: a gap beyond the "
            f"paper's rounding (±{100 * PAPER_ROUNDING:.3f} pts) is a protocol difference (data revision, prompt, shots, "
            "dtype) to investigate. A trained row also differs by its training seed; that variance is estimated only "
            "when several seeds were run (labels `<row> (seed N)`), and their mean is shown."]
    note += [f"* {label}: the paper's numbers are quoted, not reproduced here: {unlike[label]}"
             for label in sorted(set(groups) & set(unlike))]
    return "\n".join(lines + note) + "\n"


def report_markdown(runs: list[dict[str, Any]], relative_to: str | None = None,
                    baselines: tuple[str, ...] = DEFAULT_BASELINES, with_paper: bool = False) -> tuple[str, Table]:
    """The whole ``neuronmoe report`` Markdown (and the table, for the CSV). Runs whose shared cells read their
    dataset at different commits are refused (:func:`provenance.check_dataset_commits`)."""
    from neuronmoe.evaluation.provenance import check_dataset_commits

    notes = check_dataset_commits(runs)
    table = build_table(runs, relative_to=relative_to)
    md = render(table, runs, baselines) + "".join(f"\n{n}\n" for n in notes)
    if with_paper:
        md += "\n## Beside the paper\n\n" + paper_comparison(table, runs)
    return md, table
