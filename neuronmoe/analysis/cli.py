"""``neuronmoe analyze-experts`` (per-expert AP after MoE training) and ``neuronmoe figures``."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from neuronmoe.cli_common import add_device_args, add_model_arg, add_output_dir_arg, env, split_langs

log = logging.getLogger(__name__)
STAGE = "analyze-experts"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze-experts",
        help="routing-aware per-expert AP of a trained MoE adapter (paper eq. 5-6, Tables 4/10, Figure 3)",
        description="Runs the neuron-analysis samples through base + adapter, pools every expert's units "
        "(gate pre-activation, up, down) over the tokens routed to it per sentence, computes AP per unit "
        "and language, and writes high-AP counts per layer and expert (CSV, Markdown, JSON) and a heatmap.",
    )
    add_output_dir_arg(p)
    add_model_arg(p)
    p.add_argument("--run", default=env("ANALYSIS_RUN", "neuronmoe-s1"),
                   help="training run whose adapter is analysed: $OUTPUT_DIR/train/<run>/adapter (env ANALYSIS_RUN; default neuronmoe-s1)")
    p.add_argument("--adapter", default=env("ANALYSIS_ADAPTER"),
                   help="adapter folder (overrides --run); 'none' analyses the dense base model, every MLP as a single 'base' expert (env ANALYSIS_ADAPTER)")
    p.add_argument("--languages", default=env("ANALYSIS_LANGUAGES"),
                   help="languages whose samples are ranked, e.g. 'en,el' (env ANALYSIS_LANGUAGES; default: every data/samples/<lang>.jsonl)")
    p.add_argument("--target", default=env("TARGET_LANG"),
                   help="language of the tables and heatmap (env TARGET_LANG; default: the adapter's new language from its allocation, else the last language)")
    p.add_argument("--threshold", type=float, default=float(env("ANALYSIS_AP_THRESHOLD", "0.9")),
                   help="high-AP threshold, AP >= this (env ANALYSIS_AP_THRESHOLD; default 0.9 as in the paper)")
    p.add_argument("--no-token", dest="no_token", choices=["exclude", "bottom", "zero"], default=env("ANALYSIS_NO_TOKEN", "exclude"),
                   help="sentences that routed no token to an expert: exclude them from its ranking (default), rank them "
                   "below every other sentence, or score them 0 (env ANALYSIS_NO_TOKEN); see docs/analysis.md")
    p.add_argument("--dense-layers", action=argparse.BooleanOptionalAction, default=env("ANALYSIS_DENSE_LAYERS", "1") == "1",
                   help="also analyse single-expert (dense) layers, the MLP as 'base' (env ANALYSIS_DENSE_LAYERS=1|0; default on)")
    p.add_argument("--batch-size", type=int, default=env("ANALYSIS_BATCH_SIZE", "8"), help="sentences per forward pass (env ANALYSIS_BATCH_SIZE; default 8)")
    p.add_argument("--max-length", type=int, default=env("ANALYSIS_MAX_LENGTH", "256"), help="truncate sentences to this many tokens (env ANALYSIS_MAX_LENGTH; default 256)")
    p.add_argument("--limit", type=int, default=env("ANALYSIS_LIMIT", "0"), help="use at most this many samples per language, 0 = all (env ANALYSIS_LIMIT)")
    p.add_argument("--keep-activations", action="store_true", default=env("ANALYSIS_KEEP_ACTIVATIONS", "0") == "1",
                   help="keep the pooled-activation memmaps under analysis/activations/ (env ANALYSIS_KEEP_ACTIVATIONS=1)")
    p.add_argument("--force", action="store_true", help="recompute even if analysis/manifest.json says the outputs are up to date")
    add_device_args(p)
    p.set_defaults(func=run)

    f = sub.add_parser("figures", help="draw every figure that the stage outputs under --output-dir allow (PNG + PDF)")
    add_output_dir_arg(f)
    f.add_argument("--figures-dir", default=env("FIGURES_DIR"), help="where to write (env FIGURES_DIR; default $OUTPUT_DIR/figures)")
    f.add_argument("--target", default=env("TARGET_LANG"), help="language of the expert heatmap (env TARGET_LANG; default: the one analysed)")
    f.set_defaults(func=run_figures)


def _adapter_dir(args: argparse.Namespace) -> Path | None:
    if args.adapter and args.adapter.lower() == "none":
        return None
    d = Path(args.adapter) if args.adapter else Path(args.output_dir) / "train" / args.run / "adapter"
    if not (d / "adapter_config.json").exists():
        raise FileNotFoundError(f"{d}: no adapter_config.json (train the run first, or pass --adapter)")
    return d


def _languages(args: argparse.Namespace, samples_dir: Path) -> list[str]:
    langs = split_langs(args.languages)
    if not langs:
        langs = sorted(p.stem for p in samples_dir.glob("*.jsonl"))
    if len(langs) < 2:
        raise ValueError(f"--languages: AP needs at least two languages with samples in {samples_dir} (got {langs})")
    return langs


def _experts_per_layer(model: Any, adapter: Path | None, n_layers: int) -> list[int]:
    if adapter is None:
        return [1] * n_layers
    cfg = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    epl = getattr(cfg, "experts_per_layer", None)
    if epl is None:
        epl = json.loads((adapter / "adapter_config.json").read_text()).get("experts_per_layer")
    if not epl or len(epl) != n_layers:
        raise ValueError(f"{adapter}: experts_per_layer {epl} does not match the model's {n_layers} layers")
    return [int(x) for x in epl]


def _default_target(adapter: Path | None, langs: list[str]) -> str:
    if adapter is not None:
        alloc = adapter.parent / "allocation.json"
        if alloc.exists():
            targets = json.loads(alloc.read_text()).get("targets") or []
            targets = [t for t in ([targets] if isinstance(targets, str) else targets) if t in langs]
            if targets:
                return targets[0]
    return langs[-1]


def inputs_fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    """What the outputs depend on: the samples, the adapter's files and the base model identity."""
    from neuronmoe.utils.io import sha256_file

    out_dir = Path(args.output_dir)
    samples_dir = out_dir / "data" / "samples"
    langs = _languages(args, samples_dir)
    adapter = _adapter_dir(args)
    fp: dict[str, Any] = {"model": args.model, "samples": {l: sha256_file(samples_dir / f"{l}.jsonl") for l in langs}}
    if adapter is not None:
        fp["adapter"] = {p.name: sha256_file(p) for p in sorted(adapter.glob("adapter_*")) if p.is_file()}
    else:
        fp["adapter"] = None
    return fp


def _config(args: argparse.Namespace, langs: list[str], target: str) -> dict[str, Any]:
    return {"languages": langs, "target": target, "threshold": args.threshold, "no_token": args.no_token,
            "dense_layers": args.dense_layers, "max_length": args.max_length, "limit": args.limit,
            "run": args.run, "adapter": args.adapter}


def is_complete(args: argparse.Namespace) -> bool:
    from neuronmoe.utils.io import read_json

    m = Path(args.output_dir) / "analysis" / "manifest.json"
    if not m.exists():
        return False
    try:
        man = read_json(m)
        samples_dir = Path(args.output_dir) / "data" / "samples"
        langs = _languages(args, samples_dir)
        target = args.target or _default_target(_adapter_dir(args), langs)
        return man.get("inputs") == inputs_fingerprint(args) and man.get("config") == _config(args, langs, target)
    except (ValueError, FileNotFoundError):
        return False


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from neuronmoe.analysis.expert_ap import expert_units, summarize, table_rows, to_markdown
    from neuronmoe.analysis.figures import expert_heatmap_figure
    from neuronmoe.analysis.runner import analyse, cleanup, read_samples
    from neuronmoe.models import load_model, load_tokenizer, model_dims
    from neuronmoe.utils import Manifest, atomic_write_json, atomic_write_text, write_manifest
    from neuronmoe.utils.io import atomic_open, read_json
    from neuronmoe.utils.manifest import describe_files

    t0 = time.time()
    out_dir = Path(args.output_dir)
    samples_dir = out_dir / "data" / "samples"
    ana = out_dir / "analysis"
    if not args.force and is_complete(args):
        print(f"analyze-experts: {ana} is up to date (use --force to recompute)")
        return 0
    langs = _languages(args, samples_dir)
    adapter = _adapter_dir(args)
    target = args.target or _default_target(adapter, langs)
    if target not in langs:
        raise ValueError(f"--target {target!r} is not among the analysed languages {langs}")
    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold {args.threshold}: must be in (0, 1]")
    fp = inputs_fingerprint(args)

    tok = load_tokenizer(args.model)
    data_man = out_dir / "data" / "manifest.json"
    if data_man.exists():
        from neuronmoe.utils.fingerprint import tokenizer_fingerprint

        want = read_json(data_man).get("tokenizer_fingerprint")
        if want and want != tokenizer_fingerprint(tok):
            raise ValueError(f"{data_man}: the samples were prepared for another tokenizer than --model {args.model}")
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    dims = model_dims(model)
    if adapter is not None:
        import neuronmoe  # noqa: F401  (registers the NEURONMOE PEFT method)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        model.eval()
    epl = _experts_per_layer(model, adapter, dims["num_layers"])
    layout = expert_units(dims["intermediate_size"], dims["hidden_size"])
    samples = read_samples(samples_dir, langs, limit=args.limit or None)
    log.info("analyze-experts: %d sentences (%s), %d MoE layers, %d units per expert",
             len(samples), ",".join(langs), sum(e > 1 for e in epl), layout.total)
    work = ana / "activations"
    results, facts = analyse(
        model, tok, samples, langs, epl, layout, work, batch_size=args.batch_size, max_length=args.max_length,
        policy=args.no_token, dense_layers=args.dense_layers or adapter is None,
        progress_key=json.dumps(fp, sort_keys=True),
    )
    summary = summarize(results, langs, layout, threshold=args.threshold)
    rows = table_rows(summary, target)
    files = []
    ana.mkdir(parents=True, exist_ok=True)
    payload = {"target": target, "languages": langs, "threshold": args.threshold, "no_token": args.no_token,
               "units_per_expert": layout.total, "unit_layout": layout.sizes, "experts_per_layer": epl,
               "experts": summary}
    files.append(atomic_write_json(ana / "expert_ap.json", payload))
    csv_path = ana / f"expert_ap_{target}.csv"
    with atomic_open(csv_path) as fh:
        import csv

        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    files.append(csv_path)
    md = to_markdown(rows, target, args.threshold)
    multi = table_rows(summary, target, multi_expert_only=True)
    if multi and len(multi) != len(rows):
        md += "\nMulti-expert layers only (paper Table 10):\n\n" + to_markdown(multi, target, args.threshold).split("\n", 2)[2]
    files.append(atomic_write_text(ana / f"expert_ap_{target}.md", md))
    arrays = {f"L{r.layer:03d}_{r.name}": r.ap.astype(np.float32) for r in results}
    with atomic_open(ana / "ap.npz", "wb") as fh:
        np.savez_compressed(fh, languages=np.array(langs), **arrays)
    files.append(ana / "ap.npz")
    files += expert_heatmap_figure(summary, target, ana / f"expert_heatmap_{target}", args.threshold)
    if not args.keep_activations:
        cleanup(work)
    counts = {"sentences": facts["sentences"], "experts_analysed": len(results), "units_per_expert": layout.total,
              "high_ap_total": {l: int(sum(s["high_ap"][l] for s in summary)) for l in langs},
              "seconds": round(time.time() - t0, 1)}
    write_manifest(ana, Manifest(stage=STAGE, config=_config(args, langs, target), inputs=fp, counts=counts,
                                 files=describe_files(ana, [Path(f) for f in files])))
    print(md)
    print(f"analyze-experts: wrote {ana} in {time.time() - t0:.0f}s")
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from neuronmoe.analysis.figures import make_figures

    from neuronmoe.utils import Manifest, write_manifest
    from neuronmoe.utils.manifest import describe_files

    made = make_figures(args.output_dir, args.figures_dir, target=args.target)
    if not made:
        raise FileNotFoundError(f"{args.output_dir}: no stage outputs to draw (neurons/, allocation/, analysis/, train/)")
    for name, files in made.items():
        print(f"{name}: {', '.join(files)}")
    fig_dir = Path(args.figures_dir) if args.figures_dir else Path(args.output_dir) / "figures"
    files = [Path(f) for fs in made.values() for f in fs if Path(f).parent.resolve() == fig_dir.resolve()]
    write_manifest(fig_dir, Manifest(stage="figures", config={"target": args.target}, counts={"figures": len(made)},
                                     files=describe_files(fig_dir, files), extra={"figures": made}))
    return 0
