"""The ``neuronmoe analyze-experts`` and ``neuronmoe figures`` stages (the CLI only parses into
:class:`ExpertAnalysisOptions`).

``run_expert_analysis``: inputs check (languages, adapter, target, tokenizer), model + adapter,
the streaming per-expert AP of :func:`neuronmoe.analysis.runner.analyse`, then the tables, heatmap
and manifest under ``$OUTPUT_DIR/analysis/``. Up-to-date outputs (same inputs fingerprint and
config) are kept unless ``force``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("neuronmoe.analysis")
STAGE = "analyze-experts"


@dataclass
class ExpertAnalysisOptions:
    output_dir: str = "outputs"
    model: str | None = None
    run: str = "neuronmoe-s1"
    adapter: str | None = None
    languages: str | None = None
    target: str | None = None
    threshold: float = 0.9
    no_token: str = "exclude"
    dense_layers: bool = True
    batch_size: int = 8
    max_length: int = 256
    limit: int = 0
    keep_activations: bool = False
    force: bool = False
    device: str = "auto"
    dtype: str = "auto"

    @property
    def samples_dir(self) -> Path:
        return Path(self.output_dir) / "data" / "samples"

    @property
    def analysis_dir(self) -> Path:
        return Path(self.output_dir) / "analysis"


def run_expert_analysis(opts: ExpertAnalysisOptions) -> dict[str, Any] | None:
    """The stage; returns the manifest counts (None when the outputs were up to date)."""
    t0 = time.time()
    if not opts.force and is_complete(opts):
        print(f"analyze-experts: {opts.analysis_dir} is up to date (use --force to recompute)")
        return None
    langs, adapter, target = check_inputs(opts)
    fp = inputs_fingerprint(opts)
    from neuronmoe.analysis.runner import analyse, cleanup, read_samples
    from neuronmoe.utils.lock import output_lock

    with output_lock(opts.analysis_dir, f"analysis folder {opts.analysis_dir}"):  # a second run into it stops here
        model, tok, epl, layout = load_models(opts, adapter)
        samples = read_samples(opts.samples_dir, langs, limit=opts.limit or None)
        log.info("analyze-experts: %d sentences (%s), %d MoE layers, %d units per expert",
                 len(samples), ",".join(langs), sum(e > 1 for e in epl), layout.total)
        work = opts.analysis_dir / "activations"
        results, facts = analyse(
            model, tok, samples, langs, epl, layout, work, batch_size=opts.batch_size, max_length=opts.max_length,
            policy=opts.no_token, dense_layers=opts.dense_layers or adapter is None,
            progress_key=json.dumps(fp, sort_keys=True),
        )
        counts = write_outputs(opts, results, facts, langs, target, epl, layout, fp, t0)
        if not opts.keep_activations:
            cleanup(work)
    print(f"analyze-experts: wrote {opts.analysis_dir} in {time.time() - t0:.0f}s")
    return counts


def adapter_dir(opts: ExpertAnalysisOptions) -> Path | None:
    if opts.adapter and opts.adapter.lower() == "none":
        return None
    d = Path(opts.adapter) if opts.adapter else Path(opts.output_dir) / "train" / opts.run / "adapter"
    if not (d / "adapter_config.json").exists():
        raise FileNotFoundError(f"{d}: no adapter_config.json (train the run first, or pass --adapter)")
    return d


def languages(opts: ExpertAnalysisOptions) -> list[str]:
    from neuronmoe.cli_common import split_langs

    langs = split_langs(opts.languages)
    if not langs:
        langs = sorted(p.stem for p in opts.samples_dir.glob("*.jsonl"))
    if len(langs) < 2:
        raise ValueError(f"--languages: AP needs at least two languages with samples in {opts.samples_dir} (got {langs})")
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


def one_language(value: str | None) -> str | None:
    """``--target`` (or NEW_LANGS) names one language."""
    from neuronmoe.cli_common import split_langs

    langs = split_langs(value)
    if len(langs) > 1:
        raise ValueError(f"--target {value!r}: give one language (NEW_LANGS names {len(langs)}; pass --target)")
    return langs[0] if langs else None


def check_inputs(opts: ExpertAnalysisOptions) -> tuple[list[str], Path | None, str]:
    """(languages, adapter folder or None for the dense base, target language), all checked."""
    from neuronmoe.utils.checks import check_range

    check_range("--threshold", opts.threshold, 0, 1, lo_open=True)
    check_range("--limit", opts.limit, 0, hint="0 = all samples")
    check_range("--batch-size", opts.batch_size, 1)
    check_range("--max-length", opts.max_length, 1)
    langs = languages(opts)
    adapter = adapter_dir(opts)
    target = one_language(opts.target) or default_target(adapter, langs)
    if target not in langs:
        raise ValueError(f"--target {target!r} is not among the analysed languages {langs}")
    return langs, adapter, target


def inputs_fingerprint(opts: ExpertAnalysisOptions) -> dict[str, Any]:
    """What the outputs depend on: the samples, the adapter's files and the base model identity."""
    from neuronmoe.utils.io import sha256_file

    adapter = adapter_dir(opts)
    fp: dict[str, Any] = {"model": opts.model,
                          "samples": {lang: sha256_file(opts.samples_dir / f"{lang}.jsonl") for lang in languages(opts)}}
    fp["adapter"] = ({p.name: sha256_file(p) for p in sorted(adapter.glob("adapter_*")) if p.is_file()}
                     if adapter is not None else None)
    return fp


def config_record(opts: ExpertAnalysisOptions, langs: list[str], target: str) -> dict[str, Any]:
    return {"languages": langs, "target": target, "threshold": opts.threshold, "no_token": opts.no_token,
            "dense_layers": opts.dense_layers, "max_length": opts.max_length, "limit": opts.limit,
            "run": opts.run, "adapter": opts.adapter}


def is_complete(opts: ExpertAnalysisOptions) -> bool:
    from neuronmoe.utils.io import read_json

    m = opts.analysis_dir / "manifest.json"
    if not m.exists():
        return False
    try:
        man = read_json(m)
        langs = languages(opts)
        target = one_language(opts.target) or default_target(adapter_dir(opts), langs)
        return man.get("inputs") == inputs_fingerprint(opts) and man.get("config") == config_record(opts, langs, target)
    except (ValueError, FileNotFoundError):
        return False


def load_models(opts: ExpertAnalysisOptions, adapter: Path | None) -> tuple[Any, Any, list[int], Any]:
    """(base + adapter in eval mode, tokenizer, experts per layer, unit layout); checks the data's tokenizer."""
    from neuronmoe.analysis.expert_ap import expert_units
    from neuronmoe.models import load_model, load_tokenizer, model_dims
    from neuronmoe.utils.checks import check_data_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    tok = load_tokenizer(opts.model)
    check_data_tokenizer(Path(opts.output_dir) / "data", tokenizer_fingerprint(tok), opts.model)
    model = load_model(opts.model, dtype=opts.dtype, device=opts.device)
    dims = model_dims(model)
    if adapter is not None:
        from peft import PeftModel

        import neuronmoe  # noqa: F401  (registers the NEURONMOE PEFT method)

        model = PeftModel.from_pretrained(model, str(adapter))
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
        raise ValueError(f"{adapter}: experts_per_layer {epl} does not match the model's {n_layers} layers")
    return [int(x) for x in epl]


def write_outputs(opts: ExpertAnalysisOptions, results: list[Any], facts: dict[str, Any], langs: list[str],
                  target: str, epl: list[int], layout: Any, fp: dict[str, Any], t0: float) -> dict[str, Any]:
    """expert_ap.json, the Table 4/10 CSV and Markdown, ap.npz, the heatmap, then the manifest."""
    import csv

    import numpy as np

    from neuronmoe.analysis.expert_ap import summarize, table_rows, to_markdown
    from neuronmoe.analysis.figures import expert_heatmap_figure
    from neuronmoe.utils import Manifest, atomic_write_json, atomic_write_text, write_manifest
    from neuronmoe.utils.io import atomic_open
    from neuronmoe.utils.manifest import describe_files

    ana = opts.analysis_dir
    summary = summarize(results, langs, layout, threshold=opts.threshold)
    rows = table_rows(summary, target)
    ana.mkdir(parents=True, exist_ok=True)
    payload = {"target": target, "languages": langs, "threshold": opts.threshold, "no_token": opts.no_token,
               "units_per_expert": layout.total, "unit_layout": layout.sizes, "experts_per_layer": epl,
               "experts": summary}
    files = [atomic_write_json(ana / "expert_ap.json", payload)]
    csv_path = ana / f"expert_ap_{target}.csv"
    with atomic_open(csv_path) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    files.append(csv_path)
    md = to_markdown(rows, target, opts.threshold)
    multi = table_rows(summary, target, multi_expert_only=True)
    if multi and len(multi) != len(rows):
        md += "\nMulti-expert layers only (paper Table 10):\n\n" + to_markdown(multi, target, opts.threshold).split("\n", 2)[2]
    files.append(atomic_write_text(ana / f"expert_ap_{target}.md", md))
    arrays = {f"L{r.layer:03d}_{r.name}": r.ap.astype(np.float32) for r in results}
    with atomic_open(ana / "ap.npz", "wb") as fh:
        np.savez_compressed(fh, languages=np.array(langs), **arrays)
    files.append(ana / "ap.npz")
    files += expert_heatmap_figure(summary, target, ana / f"expert_heatmap_{target}", opts.threshold)
    counts = {"sentences": facts["sentences"], "experts_analysed": len(results), "units_per_expert": layout.total,
              "high_ap_total": {lang: int(sum(s["high_ap"][lang] for s in summary)) for lang in langs},
              "seconds": round(time.time() - t0, 1)}
    write_manifest(ana, Manifest(stage=STAGE, config=config_record(opts, langs, target), inputs=fp, counts=counts,
                                 files=describe_files(ana, [Path(f) for f in files])))
    print(md)
    return counts


def run_figures(output_dir: str, figures_dir: str | None, target: str | None) -> dict[str, list[str]]:
    """``neuronmoe figures``: every figure the stage outputs allow, and the figures manifest."""
    from neuronmoe.analysis.figures import make_figures
    from neuronmoe.utils import Manifest, write_manifest
    from neuronmoe.utils.manifest import describe_files

    target = one_language(target)
    made = make_figures(output_dir, figures_dir, target=target)
    if not made:
        raise FileNotFoundError(f"{output_dir}: no stage outputs to draw (neurons/, allocation/, analysis/, train/)")
    for name, files in made.items():
        print(f"{name}: {', '.join(files)}")
    fig_dir = Path(figures_dir) if figures_dir else Path(output_dir) / "figures"
    files = [Path(f) for fs in made.values() for f in fs if Path(f).parent.resolve() == fig_dir.resolve()]
    write_manifest(fig_dir, Manifest(stage="figures", config={"target": target}, counts={"figures": len(made)},
                                     files=describe_files(fig_dir, files), extra={"figures": made}))
    return made
