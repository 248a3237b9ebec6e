"""``neuronmoe neurons``: language-specific units (AP or LAPE) -> top-K per language -> counts."""
from __future__ import annotations

import argparse

from neuronmoe.cli_common import add_model_arg, add_output_dir_arg, env
from neuronmoe.utils.device import DTYPE_CHOICES


def _bool(v: str) -> bool:
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "neurons",
        help="find language-specific units (AP, Kojima et al.; or LAPE) and count them per layer",
        description="Pool every linear projection's outputs per sentence in one batched pass over all "
        "languages, score every (layer, module, index) unit one-vs-rest per language, keep the top-K per "
        "language and write $OUTPUT_DIR/neurons/ (see docs/neuron_analysis.md). Defaults: neuronmoe/configs/neurons.yaml.",
    )
    add_model_arg(p)
    add_output_dir_arg(p)
    p.add_argument("--data-dir", default=env("DATA_DIR"),
        help="folder with samples/<lang>.jsonl and manifest.json (env DATA_DIR; default $OUTPUT_DIR/data)")
    p.add_argument("--config", default=env("NEURONS_CONFIG"), help="YAML overriding neuronmoe/configs/neurons.yaml (env NEURONS_CONFIG)")
    p.add_argument("--languages", default=env("LANGUAGES"),
        help="languages, comma or space separated (env LANGUAGES; default en el tr hu de es fr ja zh)")
    p.add_argument("--metric", default=env("METRIC"), choices=["ap", "lape"],
        help="ap: average precision (the paper); lape: Tang et al. 2024 over MLP activations (env METRIC; default ap)")
    p.add_argument("--top-k", type=int, default=env("NEURONS_TOP_K", command="neurons"),
        help="units kept per language across the model (env NEURONS_TOP_K; default 1000)")
    p.add_argument("--ap-threshold", type=float, default=env("AP_THRESHOLD"),
        help="keep only units with score > this (env AP_THRESHOLD; default 0.5 as in the paper; 0 = published code)")
    p.add_argument("--pool", default=env("POOL"), choices=["mean", "max"],
        help="pooling over a sentence's real tokens (env POOL; default mean)")
    p.add_argument("--include-bos", type=_bool, default=env("INCLUDE_BOS"), metavar="BOOL",
        help="keep the BOS token in the pooling, as the published code does (env INCLUDE_BOS; default true)")
    p.add_argument("--modules", default=env("MODULES"),
        help="restrict the units to these projections, e.g. gate_proj,up_proj (env MODULES; default all seven)")
    p.add_argument("--batch-size", type=int, default=env("NEURONS_BATCH_SIZE", command="neurons"),
        help="sentences per forward pass, padded (env NEURONS_BATCH_SIZE; default 8)")
    p.add_argument("--max-length", type=int, default=env("NEURONS_MAX_LENGTH", command="neurons"),
        help="drop samples with more tokens (env NEURONS_MAX_LENGTH; default 256)")
    p.add_argument("--device", default=env("DEVICE", "auto"),
        help="torch device: auto (this rank's GPU, else CPU), cpu, cuda:1 ... (env DEVICE)")
    p.add_argument("--dtype", default=env("DTYPE"), choices=DTYPE_CHOICES,
                   help="forward compute dtype; pooling is fp32 and storage fp16 (env DTYPE; default fast = bf16 where computed "
                        "natively: a GPU, or a CPU with AVX512-BF16/AMX; else fp32; auto = bf16 on GPU, fp32 on CPU)")
    p.add_argument("--lape-quantile", type=float, default=env("LAPE_QUANTILE"),
        help="LAPE activation bar quantile (env LAPE_QUANTILE; default 0.95)")
    p.add_argument("--ap-chunk-mb", type=int, default=env("AP_CHUNK_MB"),
        help="working-memory bound of the AP step in MiB (env AP_CHUNK_MB; default 256)")
    p.add_argument("--force", action="store_true", help="recompute even when neurons/manifest.json matches this config and these inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> dict:
    from neuronmoe.cli_common import split_langs
    from neuronmoe.config import layered
    from neuronmoe.neuron_analysis.analysis import CONFIG_KEYS

    def num(flag: str, v, typ):
        if v is None:
            return None
        try:
            return typ(v)
        except ValueError:
            raise ValueError(f"{flag}: expected a number, got {v!r}") from None

    over = {
        "languages": split_langs(args.languages) or None,
        "metric": args.metric,
        "top_k": num("--top-k", args.top_k, int),
        "ap_threshold": num("--ap-threshold", args.ap_threshold, float),
        "pool": args.pool,
        "include_bos": _bool(args.include_bos) if isinstance(args.include_bos, str) else args.include_bos,
        "modules": split_langs(args.modules) or None,
        "batch_size": num("--batch-size", args.batch_size, int),
        "max_length": num("--max-length", args.max_length, int),
        "dtype": args.dtype,
        "lape_quantile": num("--lape-quantile", args.lape_quantile, float),
        "ap_chunk_mb": num("--ap-chunk-mb", args.ap_chunk_mb, int),
    }
    cfg = layered("neurons", args.config, over, allowed=CONFIG_KEYS)
    if isinstance(cfg.get("languages"), str):
        cfg["languages"] = split_langs(cfg["languages"])
    cfg.update(model=args.model, output_dir=args.output_dir, data_dir=args.data_dir, device=args.device, force=args.force)
    return cfg


def run(args: argparse.Namespace) -> int:
    from neuronmoe.neuron_analysis.analysis import run_neuron_analysis

    cfg = resolve_config(args)
    res = run_neuron_analysis(cfg, progress=not args.no_progress)
    if res.get("skipped"):
        print(f"{res['out_dir']}: up to date (use --force to recompute)")
    elif res.get("complete"):
        print(f"wrote {res['out_dir']} ({res['timings']['total_s']:.1f}s)")
    return 0
