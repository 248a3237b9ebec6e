"""``neuronmoe similarity``: the LayerMoE baseline (per-layer cross-lingual similarity of MLP inputs)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from neuronmoe.cli_common import add_device_args, add_model_arg, add_output_dir_arg, env

log = logging.getLogger(__name__)


def _int_or_none(v: str | None) -> int | None:
    return None if v in (None, "") else int(v)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity",
        help="LayerMoE baseline: per-layer cross-lingual similarity of MLP inputs -> allocation/layermoe.json",
        description="Capture each layer's MLP input for a token budget per language, compute the mean pairwise "
        "cosine similarity between languages, and allocate experts inversely to it (LayerMoE).",
    )
    add_model_arg(p)
    add_output_dir_arg(p)
    p.add_argument("--source", default=env("SOURCE_LANG"), help="source (old) language (env SOURCE_LANG; default en)")
    p.add_argument("--targets", default=env("TARGET_LANGS"), help="new language(s), comma/space separated (env TARGET_LANGS; default el)")
    p.add_argument("--old-langs", default=env("OLD_LANGS"), help="old languages to measure (env OLD_LANGS; default: the source)")
    p.add_argument("--data-dir", default=env("DATA_DIR"), help="prepared data (env DATA_DIR; default $OUTPUT_DIR/data)")
    p.add_argument("--split", default=env("SIMILARITY_SPLIT"), choices=["samples", "train", "heldout", "replay"],
                   help="which data/<split>/<lang>.jsonl to read (env SIMILARITY_SPLIT; default samples)")
    p.add_argument("--max-tokens", type=int, default=_int_or_none(env("SIMILARITY_TOKENS")),
                   help="tokens per language (env SIMILARITY_TOKENS; default 100000 on a GPU, 1024 on CPU)")
    p.add_argument("--batch-size", type=int, default=_int_or_none(env("BATCH_SIZE")), help="texts per forward pass (env BATCH_SIZE; default 8)")
    p.add_argument("--max-length", type=int, default=_int_or_none(env("MAX_LENGTH")), help="tokens per text, longer ones truncated (env MAX_LENGTH; default 256)")
    p.add_argument("--budget", type=float, default=None if env("BUDGET") is None else float(env("BUDGET")),
                   help="LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) (env BUDGET; default 2.5 x layers)")
    p.add_argument("--name", default=env("ALLOCATION_NAME"), help="allocation name (env ALLOCATION_NAME; default layermoe)")
    p.add_argument("--allocation-out", default=env("ALLOCATION_OUT"), help="allocation JSON (env ALLOCATION_OUT; default $OUTPUT_DIR/allocation/<name>.json)")
    p.add_argument("--reference", default=env("REFERENCE_ALLOCATION"), help="allocation (name or file) to compare parameters with (env REFERENCE_ALLOCATION)")
    add_device_args(p)
    p.add_argument("--config", default=None, help="YAML file overriding neuronmoe/configs/similarity.yaml")
    p.set_defaults(func=run)


def read_texts(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file (run `neuronmoe prepare-data` for this language, or set --data-dir/--split)")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"{path}:{lineno}: expected an object with a string field 'text'")
            texts.append(obj["text"])
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    from neuronmoe.cli_common import split_langs
    from neuronmoe.config import check_keys, load_yaml, merge

    base = load_yaml("similarity")
    user = load_yaml(args.config) if args.config else None
    if user:
        check_keys(user, set(base), args.config)
    cli = {
        "source": args.source,
        "targets": split_langs(args.targets) if args.targets else None,
        "old_langs": split_langs(args.old_langs) if args.old_langs else None,
        "split": args.split, "batch_size": args.batch_size, "max_length": args.max_length,
        "allocation_name": args.name,
    }
    opts = merge(base, user, cli)
    for k in ("targets", "old_langs"):
        if isinstance(opts.get(k), str):
            opts[k] = split_langs(opts[k])
    return opts


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from neuronmoe.allocation import core as acore
    from neuronmoe.allocation.store import build_record, load_allocation, write_allocation
    from neuronmoe.languages import check_languages
    from neuronmoe.models import load_config, load_model, load_tokenizer, model_identity, num_layers
    from neuronmoe.similarity.capture import capture_unit_sums
    from neuronmoe.similarity.core import layer_scores
    from neuronmoe.utils import Manifest, atomic_dir, read_json, sha256_file, write_manifest
    from neuronmoe.utils.device import resolve_device
    from neuronmoe.utils.fingerprint import config_fingerprint, tokenizer_fingerprint
    from neuronmoe.utils.io import atomic_write_text

    opts = resolve_options(args)
    source = opts["source"]
    targets = check_languages(list(opts["targets"] or []), "--targets")
    old = check_languages(list(opts["old_langs"] or [source]), "--old-langs")
    check_languages([source], "--source")
    clash = sorted(set(targets) & set(old))
    if clash:
        raise ValueError(f"--targets: {', '.join(clash)} cannot be both new and old")
    languages = old + targets
    for k in ("batch_size", "max_length"):
        if int(opts[k]) < 1:
            raise ValueError(f"--{k.replace('_', '-')}: must be >= 1, got {opts[k]}")
    out_root = Path(args.output_dir)
    data_dir = Path(args.data_dir) if args.data_dir else out_root / "data"
    files = {lang: data_dir / opts["split"] / f"{lang}.jsonl" for lang in languages}
    texts = {lang: read_texts(f) for lang, f in files.items()}  # all present and readable before any work

    config = load_config(args.model)
    n_layers = num_layers(config)
    budget = args.budget if args.budget is not None else round(float(opts["budget_per_layer"]) * n_layers)
    if not budget > 0:
        raise ValueError(f"--budget: must be positive, got {budget}")
    reference = load_allocation(args.reference, config, output_dir=out_root, flag="--reference") if args.reference else None
    tok = load_tokenizer(args.model)
    data_manifest = data_dir / "manifest.json"
    tok_fp = tokenizer_fingerprint(tok)
    if data_manifest.exists():
        recorded = read_json(data_manifest).get("tokenizer_fingerprint")
        if recorded and recorded != tok_fp:
            raise ValueError(
                f"{data_manifest}: data prepared with tokenizer {recorded}, but --model {args.model} has {tok_fp}; "
                f"prepare the data for this model"
            )
    device = resolve_device(args.device)
    max_tokens = args.max_tokens or int(
        opts["tokens_per_language"] if device.type == "cuda" else opts["tokens_per_language_cpu"]
    )
    dtype = args.dtype
    if dtype in (None, "", "auto") and device.type == "cpu" and opts.get("cpu_dtype"):
        dtype = opts["cpu_dtype"]
    model = load_model(args.model, dtype=dtype, device=device)
    acc, used = capture_unit_sums(model, tok, texts, max_tokens, int(opts["batch_size"]), int(opts["max_length"]))
    sim = acc.similarity()
    scores = layer_scores(sim, languages, targets)

    name = opts["allocation_name"]
    alloc_error = None
    record = None
    try:
        experts = acore.layermoe_allocate([float(s) for s in scores], budget)
        record = build_record(
            experts, name=name, mode="similarity", source=source, targets=targets, e_min=1, e_max=None,
            rounding="ceil", scores=[float(s) for s in scores], model=model_identity(args.model), config=config,
            reference=reference,
            extra={"label": "LayerMoE", "budget": budget, "old_langs": old,
                   "inputs": {"similarity_dir": str(out_root / "similarity")}},
        )
    except ValueError as e:  # e.g. a non-positive similarity: keep the measurement, then report
        alloc_error = e

    sim_dir = out_root / "similarity"
    with atomic_dir(sim_dir, overwrite=True) as tmp:
        np.savez(tmp / "similarity.npz", sim=sim.astype(np.float64), languages=np.array(languages),
                 token_counts=np.array([used[x] for x in languages]), scores=np.asarray(scores, dtype=np.float64))
        atomic_write_text(tmp / "scores.csv", "layer,score\n" + "".join(f"{i},{float(s):.10g}\n" for i, s in enumerate(scores)))
        man = Manifest(
            stage="similarity",
            config={"model": model_identity(args.model), "source": source, "targets": targets, "old_langs": old,
                    "languages": languages, "split": opts["split"], "max_tokens": max_tokens,
                    "batch_size": int(opts["batch_size"]), "max_length": int(opts["max_length"]),
                    "budget": budget, "num_layers": n_layers, "device": str(device), "dtype": str(dtype),
                    "layer_score": "mean sim over new-new and new-old language pairs"},
            inputs={"data": {lang: {"path": str(f), "sha256": sha256_file(f)} for lang, f in files.items()},
                    "base_model_fingerprint": config_fingerprint(config), "tokenizer_fingerprint": tok_fp},
            counts={"tokens": used},
        )
        from neuronmoe.utils.manifest import describe_files

        man.files = describe_files(tmp, ["similarity.npz", "scores.csv"])
        write_manifest(tmp, man)
    print(f"{sim_dir}: similarity of {', '.join(languages)} over {n_layers} layers "
          f"(tokens: {', '.join(f'{k}={v}' for k, v in used.items())})")
    if alloc_error is not None:
        raise alloc_error
    out = Path(args.allocation_out) if args.allocation_out else out_root / "allocation" / f"{name}.json"
    json_path, _ = write_allocation(record, out)
    print(f"{json_path}: {record['total_experts']} experts (budget {budget:g}) {record['experts_per_layer']}")
    return 0
