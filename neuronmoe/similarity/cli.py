"""``neuronmoe similarity``: the LayerMoE baseline (per-layer cross-lingual similarity of MLP inputs)."""
from __future__ import annotations

import argparse
import logging
from typing import Any

from neuronmoe.cli_common import add_device_args, add_model_arg, add_output_dir_arg, env, source_lang_default

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity",
        help="LayerMoE baseline: per-layer cross-lingual similarity of MLP inputs -> allocation/layermoe.json",
        description="Capture each layer's MLP input for a token budget per language, compute the mean pairwise "
        "cosine similarity between languages, and allocate experts inversely to it (LayerMoE).",
    )
    add_model_arg(p)
    add_output_dir_arg(p)
    p.add_argument("--source", default=source_lang_default(),
        help="source (old) language (env SOURCE_LANG, else the first of OLD_LANGS; default en)")
    p.add_argument("--targets", default=env("NEW_LANGS", command="similarity"),
        help="new language(s), comma/space separated (env NEW_LANGS; default el)")
    p.add_argument("--old-langs", default=env("OLD_LANGS"), help="old languages to measure (env OLD_LANGS; default: the source)")
    p.add_argument("--data-dir", default=env("DATA_DIR"), help="prepared data (env DATA_DIR; default $OUTPUT_DIR/data)")
    p.add_argument("--split", default=env("SIMILARITY_SPLIT"), choices=["samples", "train", "heldout", "replay", "documents"],
                   help="which data/<split>/<lang>.jsonl to read; documents = the training documents (train/ for new, "
                   "replay/ for old languages) (env SIMILARITY_SPLIT; default samples)")
    p.add_argument("--setting", default=None,
                   help="a named setting of similarity.yaml, e.g. g1 (LayerMoE's G1: el,hu,tr vs en,es,zh, 100k tokens of "
                   "training documents, BOS included, budget 70); flags still win")
    p.add_argument("--layer-score", default=None, choices=["layermoe", "pairs"],
                   help="layermoe: mean of the new-new and new-old group means (LayerMoE); pairs: mean over those pairs "
                   "(default layermoe)")
    p.add_argument("--include-bos", action="store_true", default=None,
                   help="count the BOS token's MLP input too (LayerMoE's G1 measurement does; default off)")
    p.add_argument("--capture-site", default=env("CAPTURE_SITE"), choices=["mlp_input", "attn_input", "attn_output"],
                   help="hidden state compared per layer: mlp_input (LayerMoE's script: the MLP-input norm's output), "
                   "attn_input (the attention-input norm's output) or attn_output (the attention block's output) "
                   "(env CAPTURE_SITE; default mlp_input, see docs/allocation.md)")
    p.add_argument("--max-tokens", type=int, default=env("SIMILARITY_TOKENS"),
                   help="tokens per language (env SIMILARITY_TOKENS; default 100000 on a GPU, 1024 on CPU)")
    p.add_argument("--batch-size", type=int, default=env("SIMILARITY_BATCH_SIZE", command="similarity"),
        help="texts per forward pass (env SIMILARITY_BATCH_SIZE; default 8)")
    p.add_argument("--max-length", type=int, default=env("SIMILARITY_MAX_LENGTH", command="similarity"),
        help="tokens per text, longer ones truncated (env SIMILARITY_MAX_LENGTH; default 256)")
    p.add_argument("--budget", type=float, default=env("BUDGET"),
                   help="LayerMoE budget B in E_l = ceil((1/S_l)/sum(1/S) * B) (env BUDGET; default 2.5 x layers)")
    p.add_argument("--name", default=env("ALLOCATION_NAME"), help="allocation name (env ALLOCATION_NAME; default layermoe)")
    p.add_argument("--allocation-out", default=env("ALLOCATION_OUT"),
        help="allocation JSON (env ALLOCATION_OUT; default $OUTPUT_DIR/allocation/<name>.json)")
    p.add_argument("--reference", default=env("REFERENCE_ALLOCATION"),
        help="allocation (name or file) to compare parameters with (env REFERENCE_ALLOCATION)")
    add_device_args(p)
    p.add_argument("--config", default=None, help="YAML file overriding neuronmoe/configs/similarity.yaml")
    p.set_defaults(func=run)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    from neuronmoe.cli_common import split_langs
    from neuronmoe.config import layered

    cli = {
        "source": args.source,
        "targets": split_langs(args.targets) if args.targets else None,
        "old_langs": split_langs(args.old_langs) if args.old_langs else None,
        "split": args.split, "capture_site": args.capture_site, "batch_size": args.batch_size, "max_length": args.max_length,
        "allocation_name": args.name,
    }
    cli.update(layer_score=args.layer_score, include_bos=args.include_bos)
    if cli["old_langs"] == ["none"]:
        cli["old_langs"] = []  # --old-langs none: no old language (refused by the layermoe score)
    opts = layered("similarity", args.config, setting_preset(args.setting), cli)
    opts.pop("settings", None)
    for k in ("targets", "old_langs"):
        if isinstance(opts.get(k), str):
            opts[k] = split_langs(opts[k])
    opts.update(model=args.model, output_dir=args.output_dir, data_dir=args.data_dir, max_tokens=args.max_tokens,
                budget=args.budget if args.budget is not None else opts.get("budget"), reference=args.reference,
                allocation_out=args.allocation_out, device=args.device, dtype=args.dtype, setting=args.setting)
    return opts


def setting_preset(name: str | None) -> dict[str, Any]:
    """The keys of a named setting of similarity.yaml (``settings: {g1: {...}}``)."""
    if not name:
        return {}
    from neuronmoe.config import load_yaml

    settings = load_yaml("similarity").get("settings") or {}
    if name not in settings:
        raise ValueError(f"--setting {name!r}: not a setting of similarity.yaml (have {', '.join(settings) or 'none'})")
    return dict(settings[name])


def run(args: argparse.Namespace) -> int:
    from neuronmoe.similarity.runner import run_similarity

    run_similarity(resolve_options(args))
    return 0
