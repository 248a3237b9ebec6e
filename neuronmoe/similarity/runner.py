"""The ``neuronmoe similarity`` stage: prepared texts -> per-layer similarity -> LayerMoE allocation.

:func:`run_similarity` takes the resolved options (``neuronmoe/configs/similarity.yaml`` merged with
``--config``, environment and flags by :func:`neuronmoe.similarity.cli.resolve_options`) and runs the
stage as named steps: check the languages, read every text (all present before any work), check the
tokenizer, measure, allocate, write ``$OUTPUT_DIR/similarity/`` and the allocation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def run_similarity(opts: dict[str, Any]) -> dict[str, Any]:
    """Run the stage; returns the allocation record. Writes nothing before every input is checked."""
    from neuronmoe.allocation.store import load_allocation, write_allocation
    from neuronmoe.models import load_config, load_tokenizer, num_layers
    from neuronmoe.utils.checks import check_data_tokenizer, check_input_files
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.lock import output_lock

    source, targets, old = check_languages(opts)
    check_numbers(opts)
    languages = old + targets
    out_root = Path(opts["output_dir"])
    data_dir = Path(opts["data_dir"]) if opts.get("data_dir") else out_root / "data"
    files = data_files(data_dir, opts["split"], targets, old)
    texts = read_all(files)
    config = load_config(opts["model"])
    n_layers = num_layers(config)
    budget = layermoe_budget(opts, n_layers)
    reference = load_allocation(opts["reference"], config, output_dir=out_root, flag="--reference") if opts.get("reference") else None
    tok = load_tokenizer(opts["model"])
    tok_fp = tokenizer_fingerprint(tok)
    check_input_files(data_dir, check_data_tokenizer(data_dir, tok_fp, opts["model"]), list(files.values()))

    sim_dir = out_root / "similarity"
    with output_lock(sim_dir, f"similarity output folder {sim_dir}"):  # a second run into it stops here
        sim, scores, used, run_facts = measure(opts, tok, texts, languages, targets)
        record, alloc_error = layermoe_record(opts, scores, budget, config, reference, source, targets, old)
        write_similarity(sim_dir, opts, sim, scores, used, languages, files, config, tok_fp,
                         {"source": source, "targets": targets, "old_langs": old, "languages": languages,
                          "budget": budget, "num_layers": n_layers, **run_facts})
        print(f"{sim_dir}: similarity of {', '.join(languages)} over {n_layers} layers "
              f"(tokens: {', '.join(f'{k}={v}' for k, v in used.items())})")
        if alloc_error is not None:
            raise alloc_error
        out = Path(opts["allocation_out"]) if opts.get("allocation_out") else out_root / "allocation" / f"{record['name']}.json"
        json_path, _ = write_allocation(record, out)
    print(f"{json_path}: {record['total_experts']} experts (budget {budget:g}) {record['experts_per_layer']}")
    return record


def check_numbers(opts: dict[str, Any]) -> None:
    """Sizes >= 1 (``--max-tokens`` unset = the config default for the device; 0 is an error, not a default)."""
    from neuronmoe.utils.checks import check_range

    check_range("--max-tokens", opts.get("max_tokens"), 1)
    check_range("--batch-size", opts.get("batch_size"), 1)
    check_range("--max-length", opts.get("max_length"), 1)
    check_range("--budget", opts.get("budget"), 0, lo_open=True)


def check_languages(opts: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(source, targets, old languages), known codes, new and old disjoint; sizes >= 1."""
    from neuronmoe.languages import check_languages as check
    from neuronmoe.similarity.core import LAYER_SCORES

    source = opts["source"]
    targets = check(list(opts["targets"] or []), "--targets")
    old = list(opts["old_langs"]) if opts["old_langs"] is not None else [source]
    score = opts.get("layer_score") or "layermoe"
    if score not in LAYER_SCORES:
        raise ValueError(f"--layer-score must be one of {', '.join(LAYER_SCORES)}, got {score!r}")
    if not old and score == "layermoe":
        where = f" (setting {opts['setting']})" if opts.get("setting") else ""
        raise ValueError(f"--old-langs: LayerMoE's layer score{where} needs at least one old language (the new-old group)")
    old = check(old, "--old-langs") if old else []
    check([source], "--source")
    clash = sorted(set(targets) & set(old))
    if clash:
        raise ValueError(f"--targets: {', '.join(clash)} cannot be both new and old")
    for k in ("batch_size", "max_length"):
        if int(opts[k]) < 1:
            raise ValueError(f"--{k.replace('_', '-')}: must be >= 1, got {opts[k]}")
    return source, targets, old


def data_files(data_dir: Path, split: str, targets: list[str], old: list[str]) -> dict[str, Path]:
    """Each language's jsonl: ``data/<split>/<lang>.jsonl``; ``documents``: train/ (new) and replay/ (old)."""
    if split == "documents":
        return {**{x: data_dir / "replay" / f"{x}.jsonl" for x in old}, **{x: data_dir / "train" / f"{x}.jsonl" for x in targets}}
    return {lang: data_dir / split / f"{lang}.jsonl" for lang in old + targets}


def read_all(files: dict[str, Path]) -> dict[str, Any]:
    """Every language's texts, each file checked before any work; read lazily (training documents can be GBs:
    the capture stops at the token budget)."""
    from neuronmoe.utils.io import iter_texts, read_texts

    for lang, f in files.items():
        read_texts(f, lang, limit=1)  # present, with a valid first text
    return {lang: _Texts(f, lang, iter_texts) for lang, f in files.items()}


class _Texts:
    """A re-iterable view of one language's texts (a fresh read per iteration)."""

    def __init__(self, path: Path, lang: str, reader: Any) -> None:
        self.path, self.lang, self.reader = path, lang, reader

    def __iter__(self) -> Any:
        return self.reader(self.path, self.lang)


def layermoe_budget(opts: dict[str, Any], n_layers: int) -> float:
    budget = opts["budget"] if opts.get("budget") is not None else round(float(opts["budget_per_layer"]) * n_layers)
    if not budget > 0:
        raise ValueError(f"--budget: must be positive, got {budget}")
    return budget


def measure(opts: dict[str, Any], tok: Any, texts: dict[str, list[str]], languages: list[str],
            targets: list[str]) -> tuple[np.ndarray, Any, dict[str, int], dict[str, Any]]:
    """Load the model, capture the MLP inputs, return (similarity [L, n, n], layer scores, tokens used, facts)."""
    from neuronmoe.models import load_model
    from neuronmoe.similarity.capture import capture_unit_sums
    from neuronmoe.similarity.core import layer_scores
    from neuronmoe.utils.device import resolve_device

    device = resolve_device(opts["device"])
    max_tokens = opts["max_tokens"] if opts.get("max_tokens") is not None else int(
        opts["tokens_per_language"] if device.type == "cuda" else opts["tokens_per_language_cpu"])
    dtype = opts["dtype"]
    if dtype in (None, "", "auto") and device.type == "cpu" and opts.get("cpu_dtype"):
        dtype = opts["cpu_dtype"]
    model = load_model(opts["model"], dtype=dtype, device=device)
    acc, used = capture_unit_sums(model, tok, texts, max_tokens, int(opts["batch_size"]), int(opts["max_length"]),
                                  include_bos=bool(opts.get("include_bos")), site=opts["capture_site"])
    sim = acc.similarity()
    score = opts.get("layer_score") or "layermoe"
    return sim, layer_scores(sim, languages, targets, score), used, {
        "max_tokens": max_tokens, "device": str(device), "dtype": str(dtype), "layer_score": score,
        "include_bos": bool(opts.get("include_bos"))}


def layermoe_record(opts: dict[str, Any], scores: Any, budget: float, config: Any, reference: Any, source: str,
                    targets: list[str], old: list[str]) -> tuple[dict[str, Any] | None, ValueError | None]:
    """The LayerMoE allocation record, or the error that prevents it (e.g. a non-positive similarity):
    the measurement is kept either way."""
    from neuronmoe.allocation import core as acore
    from neuronmoe.allocation.store import build_record
    from neuronmoe.models import model_identity

    try:
        experts = acore.layermoe_allocate([float(s) for s in scores], budget)
        return build_record(
            experts, name=opts["allocation_name"], mode="similarity", source=source, targets=targets, e_min=1,
            e_max=None, rounding="ceil", scores=[float(s) for s in scores], model=model_identity(opts["model"]),
            config=config, reference=reference,
            extra={"label": "LayerMoE", "budget": budget, "old_langs": old, "capture_site": opts["capture_site"],
                   "layer_score": opts.get("layer_score") or "layermoe", "setting": opts.get("setting"),
                   "inputs": {"similarity_dir": str(Path(opts["output_dir"]) / "similarity")}},
        ), None
    except ValueError as e:
        return None, e


def write_similarity(sim_dir: Path, opts: dict[str, Any], sim: np.ndarray, scores: Any, used: dict[str, int],
                     languages: list[str], files: dict[str, Path], config: Any, tok_fp: str,
                     facts: dict[str, Any]) -> None:
    """``similarity.npz``, ``scores.csv`` and the manifest, as one atomic folder."""
    from neuronmoe.models import model_identity
    from neuronmoe.utils import Manifest, atomic_dir, sha256_file, write_manifest
    from neuronmoe.utils.fingerprint import config_fingerprint
    from neuronmoe.utils.io import atomic_write_text
    from neuronmoe.utils.manifest import describe_files

    with atomic_dir(sim_dir, overwrite=True) as tmp:
        np.savez(tmp / "similarity.npz", sim=sim.astype(np.float64), languages=np.array(languages),
                 token_counts=np.array([used[x] for x in languages]), scores=np.asarray(scores, dtype=np.float64))
        atomic_write_text(tmp / "scores.csv", "layer,score\n" + "".join(f"{i},{float(s):.10g}\n" for i, s in enumerate(scores)))
        config_rec = {"model": model_identity(opts["model"]), "source": facts["source"], "targets": facts["targets"],
                      "old_langs": facts["old_langs"], "languages": languages, "split": opts["split"],
                      "capture_site": opts["capture_site"], "max_tokens": facts["max_tokens"], "batch_size": int(opts["batch_size"]),
                      "max_length": int(opts["max_length"]), "budget": facts["budget"], "num_layers": facts["num_layers"],
                      "device": facts["device"], "dtype": facts["dtype"], "setting": opts.get("setting"),
                      "include_bos": facts["include_bos"], "layer_score": facts["layer_score"],
                      "layer_score_means": {"layermoe": "mean of the new-new group mean and the new-old group mean",
                                            "pairs": "mean over the new-new and new-old pairs"}[facts["layer_score"]]}
        man = Manifest(
            stage="similarity", config=config_rec,
            inputs={"data": {lang: {"path": str(f), "sha256": sha256_file(f)} for lang, f in files.items()},
                    "base_model_fingerprint": config_fingerprint(config), "tokenizer_fingerprint": tok_fp},
            counts={"tokens": used},
        )
        man.files = describe_files(tmp, ["similarity.npz", "scores.csv"])
        write_manifest(tmp, man)
