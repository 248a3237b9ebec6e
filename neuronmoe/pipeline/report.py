"""``$OUTPUT_DIR/report.md`` of the miniature reproduction: Table 1, allocations, expert analysis, figures,
stage times, every number read from this run's outputs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neuronmoe.pipeline.plan import TABLE_ROWS
from neuronmoe.pipeline.settings import PipelineSettings


def _alloc_facts(out_dir: Path, name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    p = out_dir / "allocation" / f"{name}.json"
    if not p.exists():
        return {}
    d = json.loads(p.read_text())
    added = d.get("added_params")
    if isinstance(added, dict):
        added = added.get("added_params")
    return {"experts": d.get("total_experts"), "added_params": added, "experts_per_layer": d.get("experts_per_layer")}


def build_report(cfg: PipelineSettings, timings: dict[str, Any] | None = None) -> str:
    """``report.md``: the miniature Table 1, the allocations, the expert analysis and every figure,
    with every number read from this run's outputs."""
    out_dir = Path(cfg.output_dir)
    lines = [f"# NeuronMoE miniature reproduction: {cfg.model}, {cfg.source} -> {cfg.target}", ""]
    lines += ["Every number below is read from this run's outputs under this folder; see docs/pipeline.md.", ""]
    lines += _table_section(out_dir)
    lines += _allocation_section(out_dir)
    lines += _analysis_section(out_dir, cfg.target)
    lines += _figure_section(out_dir)
    lines += (stage_table(timings) if timings else [])
    return "\n".join(lines)


def _table_rows(out_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(the evaluation results of every Table-1 row present, labelled with its experts; the runs missing)."""
    from neuronmoe.evaluation.table import load_run

    runs, missing = [], []
    for label, run, alloc in TABLE_ROWS:
        p = out_dir / "eval" / run / "results.json"
        if not p.exists():
            missing.append(run)
            continue
        r = load_run(p)
        nm = r.setdefault("neuronmoe", {})
        nm["label"] = label
        facts = _alloc_facts(out_dir, alloc)
        nm["experts"], nm["added_params"] = (facts["experts"], facts["added_params"]) if facts else (None, None)
        runs.append(r)
    return runs, missing


def _table_section(out_dir: Path) -> list[str]:
    runs, missing = _table_rows(out_dir)
    lines = ["## Table 1 (miniature)", ""]
    if runs:
        from neuronmoe.evaluation.power import power_section
        from neuronmoe.evaluation.report import report_markdown

        layer = "LayerMoE-S1" if any(r["neuronmoe"]["label"] == "LayerMoE-S1" for r in runs) else None
        md, table = report_markdown(runs, relative_to=layer)
        lines += [md, *power_section(table, runs)]
    if missing:
        lines += [f"Not evaluated yet: {', '.join(missing)}.", ""]
    return lines + ["#Exp = experts summed over layers, the original MLP of every layer included (the paper's count); "
                    "added params = new experts + routers (what stage 1 trains).", ""]


def _allocation_section(out_dir: Path) -> list[str]:
    names = dict.fromkeys(a for _, _, a in TABLE_ROWS if a)
    allocs = [p for p in (out_dir / "allocation" / f"{a}.json" for a in names) if p.exists()]
    if not allocs:
        return []
    lines = ["## Allocations (experts per layer)", "", "| allocation | total | per layer |", "|---|---:|---|"]
    for p in allocs:
        d = json.loads(p.read_text())
        lines.append(f"| {p.stem} | {d.get('total_experts')} | {','.join(str(x) for x in d.get('experts_per_layer', []))} |")
    lines.append("")
    from neuronmoe.allocation.stability_report import report_section

    return lines + report_section(out_dir, list(names))  # allocation/<name>.stability.json (allocate --bootstrap)


def _analysis_section(out_dir: Path, target: str) -> list[str]:
    if not (out_dir / "analysis" / "expert_ap.json").exists():
        return []
    md = out_dir / "analysis" / f"expert_ap_{target}.md"
    lines = ["## Language-specific units inside the experts (NeuronMoE-S1; paper Tables 4/10, Figure 3)", ""]
    return lines + ([md.read_text(encoding="utf-8"), ""] if md.exists() else [])


def _figure_section(out_dir: Path) -> list[str]:
    figs = sorted((out_dir / "figures").glob("*.png")) if (out_dir / "figures").is_dir() else []
    if not figs:
        return []
    lines = ["## Figures", ""]
    for f in figs:
        lines += [f"![{f.stem}](figures/{f.name})", ""]
    return lines


def _fmt(v: Any, scale: float = 1.0, digits: int = 0) -> str:
    if v is None or v == "":
        return "n/a"
    return f"{v / scale:,.{digits}f}"


def stage_table(timings: dict[str, Any]) -> list[str]:
    """The stage table: wall and CPU time, tokens forward/backward, FLOPs, achieved FLOP/s and its share of this machine's
    matmul rate (the calibration in ``timings["_machine"]``), peak RSS. Counts come from the stage's own process
    (:mod:`neuronmoe.utils.work`); FLOPs are those of the linear layers (attention products excluded), backward
    estimated as twice the forward of the passes run with gradients."""
    mach = timings.get("_machine") or {}
    rate = mach.get("flops_per_s")
    lines = ["## Stage times and work (this machine)", ""]
    key = mach.get("key") or {}
    rates = mach.get("rates") or ({key.get("dtype", "float32"): rate} if rate else {})
    if rates:
        each = ", ".join(f"{r / 1e9:,.1f} GFLOP/s {d}" for d, r in rates.items())
        lines += [f"Matmul calibration: {each} ({key.get('device', '?')}, {key.get('threads', '?')} threads, "
                  f"{key.get('cpu', '?')}; native bf16: {'yes' if mach.get('native_bf16') else 'no'}; measured "
                  f"{mach.get('measured', '?')}); each stage is compared with the rate of the dtype it computed in.", ""]
    lines += ["| stage | wall s | CPU s | dtype | tokens fwd | tokens bwd | GFLOP | GFLOP/s | % of matmul rate | peak RSS MB | "
              "last run |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for k, v in timings.items():
        if k.startswith("_") or not isinstance(v, dict):
            continue
        fps, r = v.get("flops_per_s"), rates.get(v.get("dtype") or "", rate)
        share = f"{100 * fps / r:.0f}" if fps and r else "n/a"
        lines.append(f"| {k} | {v.get('seconds', 'n/a')} | {_fmt(v.get('cpu_s'), digits=1)} | {v.get('dtype') or 'n/a'} | "
                     f"{_fmt(v.get('tokens_forward'))} | {_fmt(v.get('tokens_backward'))} | {_fmt(v.get('flops'), 1e9, 1)} | "
                     f"{_fmt(fps, 1e9, 1)} | {share} | {_fmt(v.get('peak_rss_mb'))} | "
                     f"{'skipped (up to date)' if v.get('skipped_last') else 'ran'} |")
    if "_last_run_seconds" in timings:
        lines.append(f"| total (last invocation) | {timings['_last_run_seconds']} | | | | | | | | | |")
    lines += ["", "Tokens: what the stage's model forwards read (the decoder stack, with or without the LM head; padding "
              "excluded where a forward has an attention mask of its width: the cloze option rows' right padding, "
              "run on the contexts' cache, counts; backward = forwards run with gradients). "
              "GFLOP: the linear layers' multiply-adds x 2 (attention score/value products excluded), backward estimated as "
              "2 x forward. A low share of the matmul rate marks time spent outside the model (start-up, loading, tokenising, "
              "Python) or in small matrices; docs/benchmarks.md compares each stage with a plain forward/backward of the "
              "same model on the same tokens.", ""]
    return lines


def write_report(cfg: PipelineSettings, timings: dict[str, Any] | None = None) -> Path:
    from neuronmoe.utils import atomic_write_text

    path = Path(cfg.output_dir) / "report.md"
    atomic_write_text(path, build_report(cfg, timings))
    return path
