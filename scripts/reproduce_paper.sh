#!/usr/bin/env bash
# The paper-scale run: Llama-3.2-3B extended to Greek, Turkish and Hungarian with the paper's
# hyper-parameters (Table 7), DeepSpeed ZeRO-2 on a multi-GPU node.
#
#   scripts/reproduce_paper.sh --dry-run     # here: validate every config, print allocations,
#                                            # parameter budgets and the exact commands
#   scripts/reproduce_paper.sh               # on the cluster: validate, then run the stages (skips finished ones)
#   scripts/reproduce_paper.sh --list        # the paper's named experiments (model, languages, tables)
#   scripts/reproduce_paper.sh --experiment qwen-el [--dry-run]   # one of them, outputs in $OUTPUT_DIR/qwen-el/
#
# Presets (environment):
#   PAPER_EXPERIMENT (none: the el/tr/hu plan)
#   BASE_MODEL_PATH (meta-llama/Llama-3.2-3B)  PAPER_MODEL_CONFIG (llama-3.2-3b)  NEW_LANGS (el,tr,hu)
#   (an experiment sets its own model, model config and languages)
#   PAPER_ALLOCATIONS (computed | published: train the paper's own Tables 2/8 allocations)
#   NPROC (8)  DEEPSPEED_CONFIG (zero2)  OUTPUT_DIR (outputs/paper)
#   (old names PAPER_MODEL, PAPER_TARGETS, NPROC_PER_NODE still work, deprecated)
# Every command skips or resumes work that is already complete, so rerunning after a failure is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=reproduce_paper.sh  # the CLI names variables of ours that this run ignores
export OUTPUT_DIR="${OUTPUT_DIR:-outputs/paper}"
dry=0
args=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    --list|--report|-h|--help) exec python -m neuronmoe reproduce-paper "$@" ;;  # prints or writes, runs nothing
    *) args+=("$a") ;;
  esac
done
if [ "$dry" = 1 ]; then
  exec python -m neuronmoe reproduce-paper --dry-run ${args[@]+"${args[@]}"}
fi
python -m neuronmoe reproduce-paper --dry-run ${args[@]+"${args[@]}"} >&2
export NEURONMOE_ENV_REPORTED=1  # the environment report is done: not again for every stage
# the plan's stages through the pipeline's runner: finished stages are skipped, changed inputs rerun what reads
# them, training resumes from its checkpoint; PIPELINE_ONLY / PIPELINE_RERUN pick stages
exec python -m neuronmoe reproduce-paper --run ${args[@]+"${args[@]}"}
