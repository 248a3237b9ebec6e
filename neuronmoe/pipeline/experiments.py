"""The paper's named experiments (``neuronmoe reproduce-paper --experiment NAME``, ``--list``).

Each experiment is a block of the paper's results (``neuronmoe/configs/experiments.yaml``): its model,
languages, training runs, and the tables and figures it produces. Every experiment is planned by
:func:`neuronmoe.pipeline.paper.paper_plan` and validated by
:func:`~neuronmoe.pipeline.paper.paper_dry_run`, the same code as the default el/tr/hu run. Only the
settings differ. Outputs go to ``<output root>/<name>/``, and :func:`write_report` writes
``<name>/report.md`` in the paper's layout.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.errors import ConfigError

EXPERIMENTS_CONFIG = "experiments"
_REQUIRED = {"title", "model", "model_config", "targets", "runs"}
_OPTIONAL = {"source", "replay", "neg_langs", "layermoe_budget", "capture_site", "capture_site_why", "expert_analysis",
             "tables", "figures", "paper_rows", "paper_results", "paper_sources"}


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    model: str
    model_config: str
    targets: tuple[str, ...]
    runs: tuple[str, ...]
    source: str = "en"
    replay: tuple[str, ...] = ("en", "zh", "es")
    neg_langs: tuple[str, ...] = ("de", "fr", "ja")
    layermoe_budget: float = 70
    capture_site: str = "mlp_input"
    capture_site_why: str | None = None
    expert_analysis: bool = False
    tables: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    paper_rows: tuple[str, ...] = ()
    paper_results: dict[str, dict[str, float]] = field(default_factory=dict)
    paper_sources: dict[str, str] = field(default_factory=dict)

    def plan_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~neuronmoe.pipeline.paper.paper_plan` this experiment sets."""
        return {"source": self.source, "replay": self.replay, "neg_langs": self.neg_langs, "runs": self.runs,
                "layermoe_budget": self.layermoe_budget, "capture_site": self.capture_site,
                "expert_analysis": self.expert_analysis}


def load_experiments(path: str | None = None) -> dict[str, Experiment]:
    """Every experiment of ``experiments.yaml`` (or ``path``), checked field by field."""
    from neuronmoe.config import check_keys, load_yaml
    from neuronmoe.pipeline.paper import plan_runs

    where = path or "neuronmoe/configs/experiments.yaml"
    data = load_yaml(path or EXPERIMENTS_CONFIG).get("experiments")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}: expected an 'experiments' mapping")
    out = {}
    for name, d in data.items():
        check_keys(d, _REQUIRED | _OPTIONAL, f"{where}: experiment {name!r}")
        missing = sorted(_REQUIRED - set(d))
        if missing:
            raise ConfigError(f"{where}: experiment {name!r}: missing field(s) {', '.join(missing)}")
        tuples = {k: tuple(d[k]) for k in ("targets", "runs", "replay", "neg_langs", "paper_rows") if k in d}
        exp = Experiment(name=name, **{**d, **tuples})
        try:
            plan_runs(exp.targets, exp.runs)
        except ValueError as e:
            raise ConfigError(f"{where}: experiment {name!r}: {e}") from None
        out[name] = exp
    return out


def get_experiment(name: str, path: str | None = None) -> Experiment:
    experiments = load_experiments(path)
    if name not in experiments:
        from neuronmoe.utils.checks import did_you_mean

        raise ConfigError(f"--experiment: no experiment {name!r}{did_you_mean(name, experiments)}; "
                         f"experiments: {', '.join(experiments)} (--list describes them)")
    return experiments[name]


def experiment_dir(output_root: str, exp: Experiment) -> str:
    return str(Path(output_root) / exp.name)


def report_command(exp: Experiment, output_root: str) -> list[str]:
    return ["neuronmoe", "reproduce-paper", "--experiment", exp.name, "--output-dir", output_root, "--report"]


def experiment_dry_run(exp: Experiment, output_root: str = "outputs/paper", model: str | None = None,
                       model_config: str | None = None, deepspeed: str = "zero2", nproc: int = 8,
                       allocations: str = "computed", **plan_extra: Any) -> dict[str, Any]:
    """:func:`~neuronmoe.pipeline.paper.paper_dry_run` with the experiment's settings, plus its report command.

    ``model_config`` (default: the experiment's) is the config the checks and budgets use; the published
    allocations are always the experiment's model's, so a config whose layer count contradicts them fails.
    """
    from neuronmoe.pipeline.paper import paper_dry_run

    facts = paper_dry_run(exp.model_config, experiment_dir(output_root, exp), exp.targets, deepspeed, nproc,
                          model or exp.model, allocations, check_config=model_config, **exp.plan_options(), **plan_extra)
    facts["experiment"] = describe(exp)
    facts["commands"].append(shlex.join(report_command(exp, output_root)))
    return facts


def reproduce_facts(experiment: str | None, targets: list[str] | None, model_config: str | None, model: str | None,
                    output_root: str, deepspeed: str = "zero2", nproc: int = 8, allocations: str = "computed",
                    **plan_extra: Any) -> dict[str, Any]:
    """``reproduce-paper``'s dry run: one experiment's (its model, config and languages unless given), or the
    el/tr/hu plan, whose model follows ``model_config`` (the model of the experiment with that config).
    The facts also hold the resolved ``targets``, ``model_config`` and ``model``."""
    from neuronmoe.pipeline.paper import PAPER_TARGETS, paper_dry_run

    if experiment:
        exp = get_experiment(experiment)
        if targets and list(targets) != list(exp.targets):
            raise ConfigError(f"--targets {','.join(targets)} (env NEW_LANGS): experiment {exp.name} extends to "
                             f"{','.join(exp.targets)}; drop --targets or choose another experiment (--list)")
        targets, model_config, model = list(exp.targets), model_config or exp.model_config, model or exp.model
        facts = experiment_dry_run(exp, output_root, model, model_config, deepspeed, nproc, allocations, **plan_extra)
    else:
        from neuronmoe.config import load_yaml

        targets, model_config = list(targets or PAPER_TARGETS), model_config or "llama-3.2-3b"
        same = next((e for e in load_experiments().values() if e.model_config == model_config), None)
        model = model or (same.model if same else None)
        if model is None:
            raise ConfigError(f"--model (env BASE_MODEL_PATH): give the model to train for --model-config {model_config}")
        # that model's LayerMoE budget where it is not the G1 setting's (Qwen: 60)
        g1_budget = load_yaml("similarity")["settings"]["g1"].get("budget")
        opts = {"layermoe_budget": same.layermoe_budget} if same and same.layermoe_budget != g1_budget else {}
        facts = paper_dry_run(model_config, output_root, targets, deepspeed, nproc, model, allocations, **opts, **plan_extra)
    return {**facts, "targets": targets, "model_config": model_config, "model": model}


def describe(exp: Experiment) -> dict[str, Any]:
    return {"name": exp.name, "title": exp.title, "model": exp.model, "model_config": exp.model_config,
            "source": exp.source, "targets": list(exp.targets), "runs": list(exp.runs), "tables": exp.tables,
            "figures": exp.figures, "capture_site": exp.capture_site, "capture_site_why": exp.capture_site_why}


def list_lines(experiments: dict[str, Experiment] | None = None) -> list[str]:
    """``--list``: one block per experiment (name, title, model, languages, runs, tables, figures)."""
    lines = []
    for exp in (experiments or load_experiments()).values():
        lines += [f"{exp.name}: {exp.title}",
                  f"    model {exp.model} ({exp.model_config}); {exp.source} -> {','.join(exp.targets)}; "
                  f"runs {', '.join(exp.runs)}",
                  f"    tables: {'; '.join(exp.tables) or '-'}",
                  f"    figures: {'; '.join(exp.figures) or '-'}"]
    return lines


# --------------------------------------------------------------------------------------------- report
def paper_numbers(exp: Experiment) -> dict[str, Any]:
    """The paper's numbers of this experiment's rows, in ``paper_results.yaml``'s layout
    (``{"rows": {label: {cell: %}}, "sources": {label: table}}``)."""
    rows: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if exp.paper_rows:
        from neuronmoe.evaluation.report import load_paper_tables

        table = load_paper_tables()
        unknown = [r for r in exp.paper_rows if r not in table["rows"]]
        if unknown:
            raise ConfigError(f"experiment {exp.name!r}: paper_rows {unknown} are not rows of paper_results.yaml")
        langs = {exp.source, *exp.targets}
        for r in exp.paper_rows:  # only this experiment's languages (Dense holds every table's)
            rows[r] = {k: v for k, v in table["rows"][r].items() if k.split("/")[-1] in langs}
            sources[r] = (table.get("sources") or {}).get(r, "")
    rows.update(exp.paper_results)
    sources.update(exp.paper_sources)
    from neuronmoe.config import load_yaml

    quoted = {k: v for k, v in (load_yaml("paper_results").get("not_reproduced") or {}).items() if k in rows}
    return {"rows": rows, "sources": sources, "not_reproduced": quoted}


def _published_vs_ours(exp: Experiment, out: Path) -> list[str]:
    """Table 2 / 8 / 9 layout: per stage-1 run, the experts per layer it trained and the paper's."""
    from neuronmoe.allocation import load_allocation
    from neuronmoe.pipeline.paper import plan_runs, published_allocation, run_label

    lines = ["| run | ours: experts per layer (total) | paper (total) |", "|---|---|---|"]
    for kind, stage, t in plan_runs(exp.targets, exp.runs):
        if stage != 1:
            continue
        ours = None
        cfg = out / "train" / f"{kind}-{t}-s1" / "adapter" / "adapter_config.json"
        if cfg.exists():
            ours = json.loads(cfg.read_text()).get("experts_per_layer")
        pub = published_allocation(exp.model_config, kind, t)
        theirs = list(load_allocation(pub).experts_per_layer) if pub else None
        fmt = lambda e: f"{','.join(map(str, e))} ({sum(e)})" if e else "n/a"  # noqa: E731
        lines.append(f"| {run_label(kind, 1, t)} | {fmt(ours) if ours else 'not trained yet'} | "
                     f"{fmt(theirs) if theirs else 'not published'} |")
    return lines


def _counts_vs_paper(exp: Experiment, out: Path) -> list[str]:
    """Table 5 layout where the paper prints per-layer counts for this model and language: ours beside its."""
    from neuronmoe.pipeline.paper import PUBLISHED_COUNTS

    lines = []
    for t in exp.targets:
        published = PUBLISHED_COUNTS.get((exp.model_config, t))
        path = out / "allocation" / f"neuronmoe-{t}.json"
        if not published or not path.exists():
            continue
        ours = json.loads(path.read_text()).get("scores") or []
        lines += [f"### {published[0]}, {exp.source}+{t}", "", "| layer | ours | paper |", "|---:|---:|---:|"]
        lines += [f"| {i} | {ours[i] if i < len(ours) else 'n/a'} | {v} |" for i, v in enumerate(published[1])]
        lines += [f"| total | {sum(ours) if ours else 'n/a'} | {sum(published[1])} |", ""]
    return lines


def build_report(exp: Experiment, output_root: str) -> str:
    """``<root>/<name>/report.md``: the tables of this experiment in the paper's layout, each number read from
    the experiment's outputs, with the paper's own numbers beside ours."""
    from neuronmoe.evaluation.report import paper_comparison, report_markdown
    from neuronmoe.evaluation.table import load_run
    from neuronmoe.pipeline.paper import plan_runs

    out = Path(experiment_dir(output_root, exp))
    lines = [f"# {exp.title}", "",
             f"Experiment `{exp.name}`: {exp.model} ({exp.model_config}), {exp.source} -> {', '.join(exp.targets)}; "
             f"runs {', '.join(exp.runs)}. Every number of ours is read from {out}/; see docs/pipeline.md.", "",
             "| paper | here |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in {**exp.tables, **exp.figures}.items()]
    from neuronmoe.allocation.stability_report import report_section
    from neuronmoe.pipeline.gate import report_lines

    lines += ["", "## Allocations", "", *_published_vs_ours(exp, out), "", *_counts_vs_paper(exp, out), *report_lines(out)]
    names = sorted(p.name[: -len(".stability.json")] for p in (out / "allocation").glob("*.stability.json"))
    lines += report_section(out, names)  # allocate --bootstrap: the stability of each allocation that has one
    if exp.capture_site_why:
        lines += [f"LayerMoE similarity: capture site `{exp.capture_site}`. {exp.capture_site_why}", ""]
    wanted = ["dense"] + [f"{k}-{t}-s{s}" for k, s, t in plan_runs(exp.targets, exp.runs)]
    present = [out / "eval" / r / "results.json" for r in wanted if (out / "eval" / r / "results.json").exists()]
    missing = [r for r in wanted if not (out / "eval" / r / "results.json").exists()]
    lines += ["## Results", ""]
    if present:
        runs = [load_run(p) for p in present]
        relative = next((r["neuronmoe"]["label"] for r in runs if r["neuronmoe"]["label"].startswith("LayerMoE-S1")), None)
        md, table = report_markdown(runs, relative_to=relative)
        lines += [md, "## Beside the paper", "", paper_comparison(table, runs, paper_numbers(exp))]
    if missing:
        lines += [f"Not evaluated yet: {', '.join(missing)}.", ""]
    ana = out / "analysis" / "expert_ap_el.md"
    if exp.expert_analysis and ana.exists():
        lines += ["## Language-specific units inside the experts (Tables 4 and 10, Figure 3)", "", ana.read_text(encoding="utf-8"), ""]
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    if figs:
        lines += ["## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figs] + [""]
    return "\n".join(lines)


def write_report(exp: Experiment, output_root: str) -> Path:
    from neuronmoe.utils import atomic_write_text

    path = Path(experiment_dir(output_root, exp)) / "report.md"
    atomic_write_text(path, build_report(exp, output_root))
    return path
