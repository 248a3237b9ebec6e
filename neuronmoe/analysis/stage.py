"""The ``neuronmoe analyze-experts`` and ``neuronmoe figures`` stages (settings:
:mod:`neuronmoe.analysis.settings`).

``run_expert_analysis``: inputs check (languages, adapter, target, tokenizer), model + adapter,
the streaming per-expert AP of :func:`neuronmoe.analysis.runner.analyse`, then the tables, heatmap
and manifest under ``$OUTPUT_DIR/analysis/``. Up-to-date outputs (same inputs fingerprint and
config) are kept unless ``force``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.analysis.settings import AnalysisSettings, FiguresSettings
from neuronmoe.errors import ConfigError, InputError, MissingInputError
from neuronmoe.layout import Layout

log = logging.getLogger("neuronmoe.analysis")
STAGE = "analyze-experts"


def samples_dir(s: AnalysisSettings) -> Path:
    """``$OUTPUT_DIR/data/samples``: the neuron-analysis sentences ranked."""
    return Layout(s.output_dir).data_file("samples", "_").parent


def analysis_dir(s: AnalysisSettings) -> Path:
    return Layout(s.output_dir).analysis


@dataclass
class ExpertRun:
    """One run of the stage: what :func:`check_inputs` resolved, and the model's expert layout."""

    settings: AnalysisSettings
    languages: list[str]
    adapter: Path | None
    target: str
    fingerprint: dict[str, Any]
    experts_per_layer: list[int] = field(default_factory=list)
    layout: Any = None
    t0: float = field(default_factory=time.time)

    @property
    def out_dir(self) -> Path:
        return analysis_dir(self.settings)


def main(settings: AnalysisSettings) -> int:
    """``neuronmoe analyze-experts``."""
    run_expert_analysis(settings)
    return 0


def figures_main(settings: FiguresSettings) -> int:
    """``neuronmoe figures``."""
    run_figures(settings)
    return 0


def run_expert_analysis(s: AnalysisSettings) -> dict[str, Any] | None:
    """The stage; returns the manifest counts (None when the outputs were up to date)."""
    t0 = time.time()
    out = analysis_dir(s)
    if not s.force and is_complete(s):
        print(f"analyze-experts: {out} is up to date (use --force to recompute)")
        return None
    langs, adapter, target = check_inputs(s)
    run = ExpertRun(settings=s, languages=langs, adapter=adapter, target=target, fingerprint=inputs_fingerprint(s), t0=t0)
    from neuronmoe.analysis.runner import PassOptions, analyse, cleanup, read_samples
    from neuronmoe.utils.lock import output_lock

    with output_lock(out, f"analysis folder {out}"):  # a second run into it stops here
        model, tok, run.experts_per_layer, run.layout = load_models(s, adapter)
        samples = read_samples(samples_dir(s), langs, limit=s.limit or None)
        log.info("analyze-experts: %d sentences (%s), %d MoE layers, %d units per expert",
                 len(samples), ",".join(langs), sum(e > 1 for e in run.experts_per_layer), run.layout.total)
        work = out / "activations"
        how = PassOptions(batch_size=s.batch_size, max_length=s.max_length, policy=s.no_token,
                          dense_layers=s.dense_layers or adapter is None,
                          progress_key=json.dumps(run.fingerprint, sort_keys=True))
        results, facts = analyse(model, tok, samples, langs, run.experts_per_layer, run.layout, work, how)
        counts = write_outputs(run, results, facts)
        if not s.keep_activations:
            cleanup(work)
    print(f"analyze-experts: wrote {out} in {time.time() - t0:.0f}s")
    return counts


def adapter_dir(s: AnalysisSettings) -> Path | None:
    """The adapter analysed (``--adapter``, else the run's), or None for the dense base (``--adapter none``)."""
    if s.adapter and s.adapter.lower() == "none":
        return None
    d = Path(s.adapter) if s.adapter else Layout(s.output_dir).adapter(s.run, "--run")
    if not (d / "adapter_config.json").exists():
        raise MissingInputError(f"{d}: no adapter_config.json (train the run first, or pass --adapter)")
    from neuronmoe.models.adapter import check_adapter_folder

    check_adapter_folder(d, "--adapter")  # weights present, whole and unchanged, before anything is written
    return d


def languages(s: AnalysisSettings) -> list[str]:
    """``--languages``, else every language with samples; at least two."""
    langs = list(s.languages or [])
    if not langs:
        langs = sorted(p.stem for p in samples_dir(s).glob("*.jsonl"))
    if len(langs) < 2:
        raise ConfigError(f"{s.origin('languages')}: AP needs at least two languages with samples in {samples_dir(s)} "
                          f"(got {langs})")
    return langs


def default_target(adapter: Path | None, langs: list[str]) -> str:
    """The adapter's new language (from the run's allocation.json), else the last language."""
    if adapter is not None:
        alloc = adapter.parent / "allocation.json"
        if alloc.exists():
            targets = json.loads(alloc.read_text()).get("targets") or []
            targets = [t for t in ([targets] if isinstance(targets, str) else targets) if t in langs]
            if targets:
                return targets[0]
    return langs[-1]


def check_inputs(s: AnalysisSettings) -> tuple[list[str], Path | None, str]:
    """(languages, adapter folder or None for the dense base, target language), all checked (the settings'
    ranges are checked when they are resolved)."""
    langs = languages(s)
    adapter = adapter_dir(s)
    target = s.target or default_target(adapter, langs)
    if target not in langs:
        raise ConfigError(f"{s.origin('target')} {target!r} is not among the analysed languages {langs}")
    return langs, adapter, target


def inputs_fingerprint(s: AnalysisSettings) -> dict[str, Any]:
    """What the outputs depend on: the samples, the adapter's files and the base model identity."""
    from neuronmoe.utils.io import sha256_file

    adapter = adapter_dir(s)
    layout = Layout(s.output_dir)
    fp: dict[str, Any] = {"model": s.model,
                          "samples": {lang: sha256_file(layout.data_file("samples", lang)) for lang in languages(s)}}
    fp["adapter"] = ({p.name: sha256_file(p) for p in sorted(adapter.glob("adapter_*")) if p.is_file()}
                     if adapter is not None else None)
    return fp


def config_record(s: AnalysisSettings, langs: list[str], target: str) -> dict[str, Any]:
    """The settings that decide the outputs (the manifest's ``config``)."""
    return {"languages": langs, "target": target, "threshold": s.threshold, "no_token": s.no_token,
            "dense_layers": s.dense_layers, "max_length": s.max_length, "limit": s.limit,
            "run": s.run, "adapter": s.adapter}


def is_complete(s: AnalysisSettings) -> bool:
    from neuronmoe.utils.io import read_json

    m = analysis_dir(s) / "manifest.json"
    if not m.exists():
        return False
    try:
        man = read_json(m)
        langs = languages(s)
        target = s.target or default_target(adapter_dir(s), langs)
        return man.get("inputs") == inputs_fingerprint(s) and man.get("config") == config_record(s, langs, target)
    except (ValueError, FileNotFoundError):
        return False


def load_models(s: AnalysisSettings, adapter: Path | None) -> tuple[Any, Any, list[int], Any]:
    """(base + adapter in eval mode, tokenizer, experts per layer, unit layout); checks the data's tokenizer."""
    from neuronmoe.analysis.expert_ap import expert_units
    from neuronmoe.models import load_model, load_tokenizer, model_dims
    from neuronmoe.utils.checks import check_data_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    tok = load_tokenizer(s.model)
    check_data_tokenizer(Layout(s.output_dir).data, tokenizer_fingerprint(tok), s.model)
    model = load_model(s.model, dtype=s.dtype, device=s.device)
    dims = model_dims(model)
    if adapter is not None:
        from neuronmoe.models.adapter import load_adapter

        model = load_adapter(model, adapter, "--adapter")
        model.eval()
    epl = experts_per_layer(model, adapter, dims["num_layers"])
    return model, tok, epl, expert_units(dims["intermediate_size"], dims["hidden_size"])


def experts_per_layer(model: Any, adapter: Path | None, n_layers: int) -> list[int]:
    if adapter is None:
        return [1] * n_layers
    cfg = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    epl = getattr(cfg, "experts_per_layer", None)
    if epl is None:
        epl = json.loads((adapter / "adapter_config.json").read_text()).get("experts_per_layer")
    if not epl or len(epl) != n_layers:
        raise InputError(f"{adapter}: experts_per_layer {epl} does not match the model's {n_layers} layers")
    return [int(x) for x in epl]


def write_outputs(run: ExpertRun, results: list[Any], facts: dict[str, Any]) -> dict[str, Any]:
    """expert_ap.json, the Table 4/10 CSV and Markdown, ap.npz, the heatmap, then the manifest."""
    from neuronmoe.analysis.expert_ap import summarize
    from neuronmoe.utils import Manifest, write_manifest
    from neuronmoe.utils.manifest import describe_files

    s, ana, langs, layout = run.settings, run.out_dir, run.languages, run.layout
    summary = summarize(results, langs, layout, threshold=s.threshold)
    ana.mkdir(parents=True, exist_ok=True)
    files, md = _write_tables(run, results, summary)
    counts = {"sentences": facts["sentences"], "experts_analysed": len(results), "units_per_expert": layout.total,
              "high_ap_total": {lang: int(sum(x["high_ap"][lang] for x in summary)) for lang in langs},
              "seconds": round(time.time() - run.t0, 1)}
    write_manifest(ana, Manifest(stage=STAGE, config=config_record(s, langs, run.target), inputs=run.fingerprint,
                                 counts=counts, files=describe_files(ana, [Path(f) for f in files]), settings=s))
    print(md)
    return counts


def _write_tables(run: ExpertRun, results: list[Any], summary: list[dict[str, Any]]) -> tuple[list[Path], str]:
    """The summary JSON, the Table 4/10 CSV and Markdown, the AP arrays and the heatmap; (files, Markdown)."""
    import csv

    import numpy as np

    from neuronmoe.analysis.expert_ap import table_rows, to_markdown
    from neuronmoe.analysis.figures import expert_heatmap_figure
    from neuronmoe.utils import atomic_write_json, atomic_write_text
    from neuronmoe.utils.io import atomic_open

    s, ana, target, layout = run.settings, run.out_dir, run.target, run.layout
    rows = table_rows(summary, target)
    payload = {"target": target, "languages": run.languages, "threshold": s.threshold, "no_token": s.no_token,
               "units_per_expert": layout.total, "unit_layout": layout.sizes, "experts_per_layer": run.experts_per_layer,
               "experts": summary}
    files = [atomic_write_json(ana / "expert_ap.json", payload)]
    csv_path = ana / f"expert_ap_{target}.csv"
    with atomic_open(csv_path) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    files.append(csv_path)
    md = to_markdown(rows, target, s.threshold)
    multi = table_rows(summary, target, multi_expert_only=True)
    if multi and len(multi) != len(rows):
        md += "\nMulti-expert layers only (paper Table 10):\n\n" + to_markdown(multi, target, s.threshold).split("\n", 2)[2]
    files.append(atomic_write_text(ana / f"expert_ap_{target}.md", md))
    arrays = {f"L{r.layer:03d}_{r.name}": r.ap.astype(np.float32) for r in results}
    with atomic_open(ana / "ap.npz", "wb") as fh:
        np.savez_compressed(fh, languages=np.array(run.languages), **arrays)
    files.append(ana / "ap.npz")
    files += expert_heatmap_figure(summary, target, ana / f"expert_heatmap_{target}", s.threshold)
    return files, md


def run_figures(s: FiguresSettings) -> dict[str, list[str]]:
    """``neuronmoe figures``: every figure the stage outputs allow, and the figures manifest."""
    from neuronmoe.analysis.figures import make_figures
    from neuronmoe.utils import Manifest, write_manifest
    from neuronmoe.utils.manifest import describe_files

    made = make_figures(s.output_dir, s.figures_dir, target=s.target)
    if not made:
        raise MissingInputError(f"{s.output_dir}: no stage outputs to draw (neurons/, allocation/, analysis/, train/)")
    for name, files in made.items():
        print(f"{name}: {', '.join(files)}")
    fig_dir = Path(s.figures_dir) if s.figures_dir else Layout(s.output_dir).figures
    files = [Path(f) for fs in made.values() for f in fs if Path(f).parent.resolve() == fig_dir.resolve()]
    write_manifest(fig_dir, Manifest(stage="figures", config={"target": s.target}, counts={"figures": len(made)},
                                     files=describe_files(fig_dir, files), extra={"figures": made}, settings=s))
    return made
