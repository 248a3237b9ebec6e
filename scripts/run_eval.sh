#!/usr/bin/env bash
# Evaluate a dense base or base + NeuronMoE adapter with lm-eval -> $OUTPUT_DIR/eval/<run>/, then
# rebuild the Table-1 report over every run ($OUTPUT_DIR/eval/table.md + .csv).
#
#   scripts/run_eval.sh                                             # dense smollm2-135m, local suite (offline)
#   PEFT_MODEL_PATH=outputs/train/neuronmoe-s1/adapter EVAL_LABEL=NeuronMoE-S1 scripts/run_eval.sh
#   BASE_MODEL_PATH=meta-llama/Llama-3.2-3B EVAL_SUITE=paper EVAL_LANGUAGES=en,el scripts/run_eval.sh
#   EVAL_SUITE=paper scripts/run_eval.sh --check                     # load + check every cell's data (network), no model
#
# Environment (each maps to a flag of `neuronmoe evaluate`; extra flags after the script are passed on):
#   BASE_MODEL_PATH  base model (default smollm2-135m)     PEFT_MODEL_PATH  adapter folder (omit: dense)
#   OUTPUT_DIR       outputs root (default ./outputs)      OUTPUT_PATH      results folder (default $OUTPUT_DIR/eval/<run>)
#   EVAL_SUITE       local | paper (default local)         EVAL_TASKS       extra lm-eval tasks, comma separated
#   EVAL_LANGUAGES   e.g. en,el (default: the suite's)     EVAL_RUN_NAME    run folder name   EVAL_LABEL  table row name
#   EVAL_BATCH_SIZE  lm-eval batch size (8, auto)          DTYPE / DEVICE   auto | bf16 | fp32 ... / auto | cpu | cuda:1
#   EVAL_PROFILE     paper | published-script             EVAL_SHOTS       e.g. mmlu/tr=5@validation,hellaswag=10
#   EVAL_ALLOW_UNPINNED=1  let the paper suite read datasets without a pinned revision (recorded in the manifest)
#   EVAL_LOCAL_SIZES local suite sizes, e.g. cloze_items=80,heldout_docs=16
#   NPROC            >1: one process per GPU through torchrun (data parallel, see docs/evaluation.md)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_eval.sh  # the CLI names variables of ours that this run ignores
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ]; then
  python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m neuronmoe evaluate "$@"
else
  python -m neuronmoe evaluate "$@"
fi
case " $* " in *" --check "*) exit 0 ;; esac
NEURONMOE_ENV_REPORTED=1 python -m neuronmoe report --output-dir "${OUTPUT_DIR:-outputs}"
