"""Every environment variable of NeuronMoE, in one table: name, the flag it sets per command, default, meaning.

The published scripts' names are canonical (``NEW_LANGS``, ``OLD_LANGS``, ``BASE_MODEL_PATH``, ``OUTPUT_DIR``,
``PEFT_MODEL_PATH``, ...). Older spellings still work where they worked before, with a deprecation
warning (:class:`Alias`). A name means one thing everywhere: where a stage needs its own batch size,
seed, length or top-k, the variable carries the stage's prefix (``TRAIN_BATCH_SIZE``, ``EVAL_SEED``, ...).

* CLIs read defaults with :func:`get` (through :func:`neuronmoe.cli_common.env`);
* ``neuronmoe <command>`` calls :func:`report` at start: it warns about deprecated names in use and names
  every variable of ours that is set but that the command (or the script that launched it) does not read;
* the README's variable table is :func:`markdown_table` (``python -m neuronmoe.envvars`` prints it).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

log = logging.getLogger("neuronmoe.env")

#: set by the pipeline for its stages (it reports once for all of them)
REPORTED = "NEURONMOE_ENV_REPORTED"
#: set by scripts/*.sh: the script's file name, so that its own variables (NPROC, ...) count as read
SCRIPT = "NEURONMOE_SCRIPT"


@dataclass(frozen=True)
class Alias:
    """A deprecated name of a variable, honoured (with a warning) by ``commands`` (empty: all of the variable's)."""

    name: str
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Var:
    name: str
    reads: dict[str, str]  # command (or "scripts/x.sh") -> the flag it sets there
    default: str
    help: str
    aliases: tuple[Alias, ...] = ()
    everywhere: bool = False  # read by every script (set-up), never reported as ignored


_DATA, _NEU, _SIM, _ALLOC, _TRAIN = "prepare-data", "neurons", "similarity", "allocate", "train"
_EVAL, _REP, _ANA, _FIG, _PIPE, _PAPER = "evaluate", "report", "analyze-experts", "figures", "pipeline", "reproduce-paper"
_GATE = "allocation-gate"
_ALL = (_DATA, _NEU, _SIM, _ALLOC, _TRAIN, _EVAL, _REP, _ANA, _FIG, _PIPE, _PAPER, _GATE)
_LAUNCH = ("scripts/run_neuron_analysis.sh", "scripts/run_stage1.sh", "scripts/run_stage2.sh", "scripts/run_eval.sh")
_NODES = ("scripts/run_stage1.sh", "scripts/run_stage2.sh")
_SCRIPTS = ("scripts/prepare_data.sh", "scripts/run_neuron_analysis.sh", "scripts/run_similarity.sh",
            "scripts/run_expert_allocation.sh", "scripts/run_stage1.sh", "scripts/run_stage2.sh", "scripts/run_eval.sh",
            "scripts/run_pipeline.sh", "scripts/reproduce_paper.sh", "scripts/run_tests.sh")


def _v(name: str, reads: dict[str, str], default: str, help: str, *aliases: Alias, everywhere: bool = False) -> Var:
    return Var(name, reads, default, help, tuple(aliases), everywhere)


VARS: list[Var] = [
    # ---- shared by the stages ---------------------------------------------------------------------------
    _v("BASE_MODEL_PATH", {c: "--model" for c in (_DATA, _NEU, _SIM, _ALLOC, _TRAIN, _EVAL, _ANA, _PIPE, _PAPER)},
       "smollm2-135m (allocate: the neuron stage's model; reproduce-paper: meta-llama/Llama-3.2-3B)",
       "base model: built-in alias, local HF folder, hub id (allocate: also a shipped config)",
       Alias("PAPER_MODEL", (_PAPER,))),
    _v("OUTPUT_DIR", {c: "--output-dir" for c in _ALL}, "outputs (reproduce-paper: outputs/paper)",
       "root folder of every stage's outputs"),
    _v("NEW_LANGS", {_DATA: "--new-langs", _SIM: "--targets", _ALLOC: "--targets", _TRAIN: "--languages",
                     _PIPE: "--target", _PAPER: "--targets", _ANA: "--target", _FIG: "--target"},
       "el (reproduce-paper: el,tr,hu; analyze-experts/figures: the adapter's new language)",
       "new (target) languages the model is extended to, comma separated (pipeline, analyze-experts, figures: one)",
       Alias("TARGET_LANG", (_PIPE, _ANA, _FIG)), Alias("TARGET_LANGS", (_SIM, _ALLOC, _TRAIN)),
       Alias("PAPER_TARGETS", (_PAPER,))),
    _v("OLD_LANGS", {_DATA: "--old-langs", _SIM: "--old-langs", _TRAIN: "--replay-languages (stage 2)",
                     _PIPE: "--old-langs"},
       "en (train: the profile's replay languages: en,zh,es for paper, en for cpu)",
       "old languages to keep: replay data and stage-2 replay, LayerMoE's old group",
       Alias("REPLAY_LANGS", (_TRAIN,))),
    _v("SOURCE_LANG", {_SIM: "--source", _ALLOC: "--source", _PIPE: "--source"}, "the first of OLD_LANGS, else en",
       "the old language allocations are computed against (expert 0's language)"),
    _v("NEG_LANGS", {_DATA: "--neg-langs", _PIPE: "--neg-langs"}, "tr,hu,de,es,fr,ja,zh",
       "extra neuron-analysis languages (samples + held-out only)"),
    _v("LANGUAGES", {_NEU: "--languages", _DATA: "--neg-langs (LANGUAGES minus new and old)",
                     _PIPE: "--neg-langs (LANGUAGES minus new and old)"},
       "en,el,tr,hu,de,es,fr,ja,zh", "every neuron-analysis language"),
    _v("DATA_DIR", {_NEU: "--data-dir", _SIM: "--data-dir", _TRAIN: "--data-dir"}, "$OUTPUT_DIR/data",
       "prepared data folder"),
    _v("DEVICE", {_NEU: "--device", _SIM: "--device", _TRAIN: "--device", _EVAL: "--device", _ANA: "--device"}, "auto",
       "torch device: auto, cpu, cuda, cuda:1 ..."),
    _v("DTYPE", {_NEU: "--dtype", _SIM: "--dtype", _EVAL: "--dtype", _ANA: "--dtype"},
       "auto (neurons: fast)", "compute dtype: fast (bf16 where computed natively), auto, bfloat16, float32 ..."),
    _v("NUM_SENTENCES", {_DATA: "--num-sentences", _PIPE: "--num-sentences"}, "500 (pipeline: 200)",
       "neuron-analysis sentences per language"),
    _v("NPROC", {**{s: "processes (torchrun)" for s in _LAUNCH}, _PAPER: "--nproc"}, "1 (reproduce-paper: 8)",
       "processes (GPUs) per node", Alias("NPROC_PER_NODE", (_PAPER,))),
    _v("DEEPSPEED_CONFIG", {_TRAIN: "--deepspeed", _PAPER: "--deepspeed"}, "none (reproduce-paper: zero2)",
       "DeepSpeed config: zero2 (shipped) or a JSON path"),
    _v("TRAIN_PROFILE", {_TRAIN: "--profile", _PIPE: "--profile"}, "auto", "training profile: auto, paper, cpu"),
    _v("EVAL_SUITE", {_EVAL: "--suite", _PIPE: "--eval-suite"}, "local", "evaluation suite: local (offline) or paper"),
    _v("ANALYSIS_LIMIT", {_ANA: "--limit", _PIPE: "--analysis-limit"}, "0 (all)",
       "samples per language for the expert analysis"),
    _v("BUDGET", {_SIM: "--budget", _ALLOC: "--budget"}, "2.5 x layers", "LayerMoE expert budget B"),
    _v("ALLOCATION_NAME", {_SIM: "--name", _ALLOC: "--name"}, "layermoe / neuronmoe / ...", "allocation name written"),
    _v("ALLOCATION_OUT", {_SIM: "--allocation-out", _ALLOC: "--out"}, "$OUTPUT_DIR/allocation/<name>.json",
       "allocation JSON path"),
    _v("REFERENCE_ALLOCATION", {_SIM: "--reference", _ALLOC: "--reference"}, "none",
       "allocation whose parameters the new one is compared with"),
    # ---- prepare-data -----------------------------------------------------------------------------------
    _v("SOURCE", {_DATA: "--source"}, "bundled", "text source: bundled, jsonl:PATH, txt:PATH, hf:NAME[:CONFIG]"),
    _v("MAX_TOKENS", {_DATA: "--max-tokens"}, "all (hf: 2e9)", "per-language token budget of train/replay text"),
    _v("MAX_SAMPLE_TOKENS", {_DATA: "--max-sample-tokens"}, "256", "longest neuron-analysis sentence, in tokens"),
    _v("MIN_SAMPLE_CHARS", {_DATA: "--min-sample-chars"}, "10", "shortest neuron-analysis sentence, in characters"),
    _v("HELDOUT_FRACTION", {_DATA: "--heldout-fraction"}, "0.1", "share of documents held out"),
    _v("MAX_HELDOUT_DOCS", {_DATA: "--max-heldout-docs"}, "1000", "held-out documents per language"),
    _v("REPLAY_DOCS", {_DATA: "--replay-docs"}, "50000", "replay documents per old language"),
    _v("TEXT_FIELD", {_DATA: "--text-field"}, "text", "text field of jsonl/hf records"),
    _v("HF_SPLIT", {_DATA: "--hf-split"}, "train", "split of an hf: dataset"),
    _v("DATA_NUM_PROC", {_DATA: "--num-proc"}, "1", "prepare-data: worker processes splitting, hashing and tokenising "
       "(same output for any value)"),
    _v("DATA_SEED", {_DATA: "--seed"}, "42", "seed of data preparation's random choices", Alias("SEED", (_DATA,))),
    _v("NO_UDHR", {_DATA: "--no-udhr"}, "0", "1: skip the UDHR"),
    _v("DATA_CONFIG", {_DATA: "--config"}, "none", "YAML overriding configs/data.yaml"),
    _v("FORCE", {_DATA: "--force"}, "0", "1: rebuild the data even when up to date"),
    # ---- neurons ----------------------------------------------------------------------------------------
    _v("NEURONS_CONFIG", {_NEU: "--config"}, "none", "YAML overriding configs/neurons.yaml"),
    _v("METRIC", {_NEU: "--metric"}, "ap", "ap or lape"),
    _v("NEURONS_TOP_K", {_NEU: "--top-k"}, "1000", "language-specific units kept per language",
       Alias("TOP_K", (_NEU,))),
    _v("AP_THRESHOLD", {_NEU: "--ap-threshold"}, "0.5", "keep units with AP above this"),
    _v("POOL", {_NEU: "--pool"}, "mean", "pooling over a sentence's tokens: mean or max"),
    _v("INCLUDE_BOS", {_NEU: "--include-bos"}, "true", "pool the BOS token too"),
    _v("MODULES", {_NEU: "--modules"}, "all seven", "projections whose units are scored"),
    _v("NEURONS_BATCH_SIZE", {_NEU: "--batch-size"}, "8", "neuron analysis: sentences per forward pass",
       Alias("BATCH_SIZE", (_NEU,))),
    _v("NEURONS_MAX_LENGTH", {_NEU: "--max-length"}, "256", "neuron analysis: drop samples with more tokens",
       Alias("MAX_LENGTH", (_NEU,))),
    _v("LAPE_QUANTILE", {_NEU: "--lape-quantile"}, "0.95", "LAPE activation bar quantile"),
    _v("AP_CHUNK_MB", {_NEU: "--ap-chunk-mb"}, "256", "working-memory bound of the AP step (MiB)"),
    # ---- similarity / allocate --------------------------------------------------------------------------
    _v("SIMILARITY_SPLIT", {_SIM: "--split"}, "samples", "data split the similarity reads"),
    _v("SIMILARITY_TOKENS", {_SIM: "--max-tokens"}, "100000 (CPU: 1024)", "tokens per language"),
    _v("SIMILARITY_BATCH_SIZE", {_SIM: "--batch-size"}, "8", "similarity: texts per forward pass",
       Alias("BATCH_SIZE", (_SIM,))),
    _v("SIMILARITY_MAX_LENGTH", {_SIM: "--max-length"}, "256", "similarity: tokens per text (longer ones truncated)",
       Alias("MAX_LENGTH", (_SIM,))),
    _v("CAPTURE_SITE", {_SIM: "--capture-site"}, "mlp_input", "similarity: hidden state compared (mlp_input, attn_input, attn_output)"),
    _v("MODE", {_ALLOC: "--mode"}, "pair", "pair, multi, source-only, uniform, similarity"),
    _v("E_MIN", {_ALLOC: "--e-min"}, "1", "fewest experts per layer"),
    _v("E_MAX", {_ALLOC: "--e-max"}, "6", "most experts per layer"),
    _v("ROUNDING", {_ALLOC: "--rounding"}, "floor", "floor (published allocations) or round"),
    _v("SCORES_CSV", {_ALLOC: "--scores-csv"}, "none", "allocate from a layer,score CSV"),
    _v("NUM_EXPERTS", {_ALLOC: "--num-experts"}, "E_MAX", "uniform mode: experts per layer"),
    _v("NEURONS_DIR", {_ALLOC: "--neurons-dir"}, "$OUTPUT_DIR/neurons", "neuron-analysis results"),
    _v("SIMILARITY_DIR", {_ALLOC: "--similarity-dir"}, "$OUTPUT_DIR/similarity", "similarity results"),
    _v("COMPARE_WITH", {_ALLOC: "--compare-with"}, "none", "draw Figure 1 against this allocation"),
    _v("ALLOCATION_FIGURE", {_ALLOC: "--figure"}, "$OUTPUT_DIR/figures/allocation_<a>_vs_<b>", "figure path stem"),
    # ---- train ------------------------------------------------------------------------------------------
    _v("STAGE", {_TRAIN: "--stage"}, "required", "training stage: 1 or 2"),
    _v("ALLOCATION", {_TRAIN: "--allocation"}, "neuronmoe", "allocation name or JSON path (also names the run)"),
    _v("RUN_NAME", {_TRAIN: "--run-name"}, "<allocation>-s<stage>", "run folder name"),
    _v("STAGE1_ADAPTER", {_TRAIN: "--init-adapter"}, "$OUTPUT_DIR/train/<allocation>-s1/adapter",
       "stage 2: the stage-1 adapter"),
    _v("TRAIN_CONFIG", {_TRAIN: "--config"}, "none", "YAML of overrides over the training profile"),
    _v("MAX_SAMPLES", {_TRAIN: "--max-samples"}, "profile", "documents per new language"),
    _v("REPLAY_MAX_SAMPLES", {_TRAIN: "--replay-max-samples"}, "profile", "documents per replay language"),
    _v("CUTOFF_LEN", {_TRAIN: "--cutoff-len"}, "profile (1024)", "packed block length in tokens"),
    _v("TRAIN_MAX_TOKENS", {_TRAIN: "--max-tokens"}, "profile (stage 1 auto; stage 2 and cpu all)",
       "training tokens packed: auto (what max_steps sees), all, or a number"),
    _v("TRAIN_TOP_K", {_TRAIN: "--top-k"}, "profile (2)", "experts per token", Alias("TOPK", (_TRAIN,))),
    _v("AUX_LOSS_COEF", {_TRAIN: "--aux-loss-coef"}, "profile (0.01)", "load-balancing loss weight"),
    _v("LPR_LOSS_COEF", {_TRAIN: "--lpr-loss-coef"}, "profile (0.1)", "language-prior routing loss weight"),
    _v("AUX_LOSS_FORM", {_TRAIN: "--aux-loss-form"}, "profile (hf)", "balance loss convention: hf or normalized"),
    _v("LPR_INPUT", {_TRAIN: "--lpr-input"}, "profile (probs)", "LPR loss on router probs or logits"),
    _v("EFFECTIVE_BATCH_SIZE", {_TRAIN: "--effective-batch-size"}, "profile (32; cpu: 4)",
       "sequences per optimizer step over all processes"),
    _v("LEARNING_RATE", {_TRAIN: "--learning-rate"}, "profile", "peak learning rate"),
    _v("TRAIN_BATCH_SIZE", {_TRAIN: "--batch-size"}, "derived (effective batch / world size)", "training: per-device batch size",
       Alias("BATCH_SIZE", (_TRAIN,))),
    _v("GRADIENT_ACCUMULATION_STEPS", {_TRAIN: "--grad-accum"}, "derived (1)", "gradient accumulation steps"),
    _v("MAX_STEPS", {_TRAIN: "--max-steps"}, "profile", "optimizer steps (-1: epochs)"),
    _v("NUM_TRAIN_EPOCHS", {_TRAIN: "--epochs"}, "profile", "epochs when MAX_STEPS is -1"),
    _v("LOGGING_STEPS", {_TRAIN: "--logging-steps"}, "profile", "log every N steps"),
    _v("SAVE_STEPS", {_TRAIN: "--save-steps"}, "profile", "checkpoint every N steps"),
    _v("REPORT_TO", {_TRAIN: "--report-to"}, "auto", "auto, none, tensorboard, wandb"),
    _v("TRAIN_SEED", {_TRAIN: "--seed"}, "profile (42)", "training seed (initialisation, data order)",
       Alias("SEED", (_TRAIN,))),
    _v("BF16", {_TRAIN: "--set bf16=..."}, "profile (cpu: auto)", "bf16 autocast: 1, 0 or auto (where computed natively)"),
    _v("RESUME", {_TRAIN: "--resume"}, "0", "1: continue the run from its last checkpoint"),
    _v("OVERWRITE", {_TRAIN: "--overwrite"}, "0", "1: delete the run folder and start again"),
    _v("NNODES", {s: "torchrun --nnodes" for s in _NODES}, "1", "multi-node training: nodes"),
    _v("NODE_RANK", {s: "torchrun --node_rank" for s in _NODES}, "0", "multi-node training: this node"),
    _v("MASTER_ADDR", {s: "torchrun --master_addr" for s in _NODES}, "127.0.0.1", "multi-node rendezvous address"),
    _v("MASTER_PORT", {s: "torchrun --master_port" for s in _NODES}, "29500", "multi-node rendezvous port"),
    # ---- evaluate / report ------------------------------------------------------------------------------
    _v("PEFT_MODEL_PATH", {_EVAL: "--adapter"}, "none (dense)", "MoE adapter folder to evaluate"),
    _v("EVAL_TASKS", {_EVAL: "--tasks"}, "none", "extra lm-eval tasks"),
    _v("EVAL_LANGUAGES", {_EVAL: "--languages"}, "the suite's", "evaluation languages"),
    _v("EVAL_NUM_FEWSHOT", {_EVAL: "--num-fewshot"}, "the suite's", "shots for every task"),
    _v("EVAL_PROFILE", {_EVAL: "--profile"}, "paper", "shots profile of the suite: paper or published-script"),
    _v("EVAL_SHOTS", {_EVAL: "--shots"}, "none", "shots per benchmark or cell, e.g. mmlu/tr=5@validation"),
    _v("EVAL_ALLOW_UNPINNED", {_EVAL: "--allow-unpinned"}, "0", "1: the paper suite may read unpinned datasets"),
    _v("EVAL_BATCH_SIZE", {_EVAL: "--batch-size"}, "8", "evaluation: lm-eval batch size"),
    _v("EVAL_LIMIT", {_EVAL: "--limit"}, "none", "documents per task (smoke tests)"),
    _v("EVAL_RUN_NAME", {_EVAL: "--run-name"}, "<adapter run>-<suite>", "evaluation run folder"),
    _v("OUTPUT_PATH", {_EVAL: "--results-dir"}, "$OUTPUT_DIR/eval/<run>", "results folder"),
    _v("EVAL_LABEL", {_EVAL: "--label"}, "the run name", "row name in the report"),
    _v("EVAL_SEED", {_EVAL: "--seed"}, "1234", "lm-eval seeds", Alias("SEED", (_EVAL,))),
    _v("EVAL_LOCAL_SIZES", {_EVAL: "--local-sizes"}, "eval_suites.yaml", "local suite sizes, key=value,..."),
    _v("REPORT_PATH", {_REP: "--out"}, "$OUTPUT_DIR/eval/table", "report output stem"),
    _v("REPORT_BASELINES", {_REP: "--baselines"}, "Dense,LayerMoE-S1", "runs the others are paired-tested against"),
    # ---- analyze-experts / figures ----------------------------------------------------------------------
    _v("ANALYSIS_RUN", {_ANA: "--run"}, "neuronmoe-s1", "training run analysed"),
    _v("ANALYSIS_ADAPTER", {_ANA: "--adapter"}, "$OUTPUT_DIR/train/<run>/adapter", "adapter analysed (none: dense)"),
    _v("ANALYSIS_LANGUAGES", {_ANA: "--languages"}, "every data/samples language", "languages ranked"),
    _v("ANALYSIS_AP_THRESHOLD", {_ANA: "--threshold"}, "0.9", "high-AP threshold"),
    _v("ANALYSIS_NO_TOKEN", {_ANA: "--no-token"}, "exclude", "sentences routing no token to an expert"),
    _v("ANALYSIS_DENSE_LAYERS", {_ANA: "--dense-layers"}, "1", "also analyse single-expert layers"),
    _v("ANALYSIS_BATCH_SIZE", {_ANA: "--batch-size"}, "8", "expert analysis: sentences per forward pass"),
    _v("ANALYSIS_MAX_LENGTH", {_ANA: "--max-length"}, "256", "expert analysis: truncate sentences to this"),
    _v("ANALYSIS_KEEP_ACTIVATIONS", {_ANA: "--keep-activations"}, "0", "1: keep the pooled-activation memmaps"),
    _v("FIGURES_DIR", {_FIG: "--figures-dir"}, "$OUTPUT_DIR/figures", "where figures are written"),
    # ---- pipeline / reproduce-paper ---------------------------------------------------------------------
    _v("PIPELINE_ONLY", {_PIPE: "--only"}, "all stages", "run only these pipeline stages"),
    _v("PIPELINE_RERUN", {_PIPE: "--rerun"}, "none", "rerun these pipeline stages even if complete"),
    _v("PAPER_MODEL_CONFIG", {_PAPER: "--model-config", _GATE: "--model-config"}, "llama-3.2-3b",
       "shipped config the dry run checks against"),
    _v("PAPER_ALLOCATIONS", {_PAPER: "--allocations"}, "computed", "computed or published allocations"),
    _v("PAPER_EXPERIMENT", {_PAPER: "--experiment"}, "none (the el/tr/hu plan)", "named experiment of the paper (--list names them)"),
    _v("PAPER_GPU", {_PAPER: "--gpu"}, "GH200", "card the paper plan's budget is computed for (neuronmoe/configs/budget.yaml)"),
    _v("PAPER_GPU_MEMORY", {_PAPER: "--gpu-memory"}, "the card's", "memory per device in GiB for the budget's fit check"),
    _v("PAPER_MFU", {_PAPER: "--mfu"}, "measured, else 0.30 (assumed)", "model FLOP utilisation for the budget's GPU-hours"),
    _v("ACCEPT_ALLOCATION_DIFF", {_PAPER: "--accept-allocation-diff", _GATE: "--accept-allocation-diff"}, "0",
       "1: train computed allocations that differ from the paper's (recorded in the report)"),
    # ---- set-up and tooling -----------------------------------------------------------------------------
    _v("NEURONMOE_CACHE", {s: "(set-up)" for s in _SCRIPTS}, "~/.cache/neuronmoe", "model and corpus cache",
       everywhere=True),
    _v("NEURONMOE_VENV", {s: "(set-up)" for s in _SCRIPTS}, "./.venv", "virtual environment the scripts use",
       everywhere=True),
    _v("NEURONMOE_SKIP_SETUP", {s: "(set-up)" for s in _SCRIPTS}, "0", "1: use the python on PATH as it is",
       everywhere=True),
    _v("NEURONMOE_TORCH_VERSION", {s: "(set-up)" for s in _SCRIPTS}, "2.13.0", "torch pinned on first set-up",
       everywhere=True),
    _v("NEURONMOE_PRINT_ARGS", {c: "(any command)" for c in _ALL}, "0",
       "1: print the command's resolved arguments as JSON and exit (how the scripts' plans are tested)",
       everywhere=True),
]
BY_NAME: dict[str, Var] = {v.name: v for v in VARS}


def _aliases_for(var: Var, command: str | None) -> list[str]:
    return [a.name for a in var.aliases if command is None or not a.commands or command in a.commands]


def lookup(name: str, environ: Mapping[str, str] | None = None, command: str | None = None) -> tuple[str | None, str | None]:
    """``(value, the name it came from)`` of canonical variable ``name`` or of a deprecated alias valid for
    ``command``; ``(None, None)`` when none is set. Empty values count as unset."""
    environ = os.environ if environ is None else environ
    var = BY_NAME.get(name)
    for n in [name, *(_aliases_for(var, command) if var else [])]:
        v = environ.get(n)
        if v not in (None, ""):
            return v, n
    return None, None


def get(name: str, default: str | None = None, command: str | None = None,
        environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``name`` (or its alias, see :func:`lookup`), else ``default``."""
    v, _ = lookup(name, environ, command)
    return default if v is None else v


def reads(command: str, script: str | None = None) -> set[str]:
    """Canonical names ``command`` (and the script that launched it) reads."""
    keys = {command} | ({f"scripts/{script}"} if script else set())
    return {v.name for v in VARS if v.everywhere or keys & set(v.reads)}


def report(command: str, environ: Mapping[str, str] | None = None, script: str | None = None,
           honoured: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """Log (and return) one line per deprecated name in use and per variable of ours set but not read.

    ``honoured``: ``{canonical name: commands that read it}`` when not the registry's for ``command`` (the
    pipeline passes what it and its stages read); a command's old names of a variable count where it reads it.
    """
    environ = os.environ if environ is None else environ
    honoured = {k: list(v) for k, v in (honoured or {}).items()}
    for name in reads(command, script) if script or not honoured else ():
        honoured.setdefault(name, [command])
    where = f"scripts/{script}" if script else f"`neuronmoe {command}`"
    ok: set[str] = set()
    lines: list[str] = []
    for var in VARS:
        if var.name not in honoured:
            continue
        valid = list(dict.fromkeys(a for c in honoured[var.name] for a in _aliases_for(var, c)))
        ok.update([var.name, *valid])
        used = next((n for n in [var.name, *valid] if environ.get(n) not in (None, "")), None)
        if used is not None and used != var.name:
            lines.append(f"{used} is deprecated, use {var.name} ({var.help})")
    old_of: dict[str, list[str]] = {}
    for var in VARS:
        old_of.setdefault(var.name, [])
        for a in var.aliases:
            old_of.setdefault(a.name, []).append(var.name)
    for name, canon in old_of.items():
        if environ.get(name) in (None, "") or name in ok:
            continue
        why = f" (an old name of {' / '.join(dict.fromkeys(canon))})" if canon else ""
        lines.append(f"{name} is set but {where} does not read it{why}; it has no effect on this run")
    lines += misspelled(environ, set(old_of))
    for line in lines:
        log.warning("%s", line)
    return lines


#: prefixes of other software's variables: never taken for a misspelling of ours
_FOREIGN = ("LC_", "XDG_", "SSH_", "CONDA", "PYTHON", "SLURM", "PBS_", "NCCL", "CUDA", "OMP_", "MKL_", "KMP_",
            "TORCH", "TRANSFORMERS_", "HF_", "GIT_", "PIP_", "VIRTUAL_ENV", "NVIDIA", "LD_", "DBUS", "TERM", "_")


def misspelled(environ: Mapping[str, str], known: set[str]) -> list[str]:
    """One line per set variable that is not ours but looks like one of ours (``MAX_STEP``, ``LERNING_RATE``):
    ``... did you mean MAX_STEPS?``. The one place every command and script checks this (:func:`report`)."""
    import difflib

    out = []
    for name in sorted(environ):
        if name in known or not name.isupper() or len(name) < 5 or (name.startswith(_FOREIGN) and not any(
                k.startswith(name.split("_")[0] + "_") for k in known)):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            var = BY_NAME.get(close[0])
            what = f" ({var.help})" if var else ""
            out.append(f"{name} is not a NeuronMoE variable: did you mean {close[0]}{what}? {name} has no effect "
                       f"on this run")
    return out


def report_at_start(command: str) -> None:
    """:func:`report` for a CLI start, once per run: not on non-zero ranks, not inside the pipeline's stages."""
    if os.environ.get(REPORTED) == "1" or os.environ.get("RANK", "0") not in ("", "0"):
        return
    report(command, script=os.environ.get(SCRIPT) or None)


def print_args_requested(environ: Mapping[str, str] | None = None) -> bool:
    """``NEURONMOE_PRINT_ARGS=1``: commands print their resolved arguments and exit."""
    return (os.environ if environ is None else environ).get("NEURONMOE_PRINT_ARGS", "") in ("1", "true", "yes")


def _flags(v: Var) -> str:
    cmds = set(v.reads)
    if cmds == set(_ALL) and len(set(v.reads.values())) == 1:
        return f"`{next(iter(v.reads.values()))}` (every command)" if v.name == "OUTPUT_DIR" else "(every command)"
    if cmds == set(_SCRIPTS):
        return "(set-up of every script)"
    by_flag: dict[str, list[str]] = {}
    for cmd, flag in v.reads.items():
        by_flag.setdefault(flag, []).append(cmd.removeprefix("scripts/"))
    def fmt(f: str) -> str:
        head, _, rest = f.partition(" ")
        return f"`{head}`" + (f" {rest}" if rest else "") if f.startswith("-") else f

    return "; ".join(f"{fmt(f)} ({', '.join(c)})" for f, c in by_flag.items())


def markdown_table() -> str:
    """The README's table: variable, flag (commands), default, meaning, old names."""
    rows = ["| variable | flag (commands) | default | meaning | old names (deprecated; where) |", "|---|---|---|---|---|"]
    for v in VARS:
        old = ", ".join(f"`{a.name}`" + (f" ({', '.join(a.commands)})" if a.commands else "") for a in v.aliases)
        rows.append(f"| `{v.name}` | {_flags(v)} | {v.default} | {v.help} | {old} |")
    return "\n".join(rows)


def _check_registry(vars_: list[Var] = VARS) -> None:
    """Every name once; an alias never shadows a canonical name in a command that reads both."""
    names = [v.name for v in vars_]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise AssertionError(f"variables listed twice: {sorted(dup)}")
    seen: dict[tuple[str, str], str] = {}
    for v in vars_:
        for a in v.aliases:
            other = BY_NAME.get(a.name)
            if other is not None and set(other.reads) & set(a.commands or v.reads):
                raise AssertionError(f"{a.name} is both canonical and an alias of {v.name} in one command")
            for c in a.commands or v.reads:
                if seen.setdefault((a.name, c), v.name) != v.name:
                    raise AssertionError(f"{a.name} is an old name of two variables in {c}")


_check_registry()


if __name__ == "__main__":  # pragma: no cover - prints the README table
    print(markdown_table())
