#!/usr/bin/env bash
# Quickstart 1: the miniature reproduction end to end on the embedded default model
# (smollm2-135m, en -> el) on 2 CPU cores (README: Results on the embedded default, for its time).
#
#   scripts/run_pipeline.sh                       # everything; a rerun skips complete stages
#   OUTPUT_DIR=/tmp/run BASE_MODEL_PATH=gemma3-270m NEW_LANGS=tr scripts/run_pipeline.sh
#   scripts/run_pipeline.sh --dry-run             # print the stage commands that would run
#
# Environment (each also a flag of `neuronmoe pipeline`, see --help):
#   OUTPUT_DIR (./outputs)  BASE_MODEL_PATH (smollm2-135m)  NEW_LANGS (el, one language)  OLD_LANGS (en)
#   SOURCE_LANG (the first of OLD_LANGS)  NEG_LANGS (tr,hu,de,es,fr,ja,zh)  NUM_SENTENCES (200)  TRAIN_PROFILE (auto)
#   EVAL_SUITE (local)  PIPELINE_ONLY  PIPELINE_RERUN; and every stage variable it does not set itself
#   (it prints the variables it ignores, and its resolved languages and model, before the first stage)
# Stages: prepare-data, neurons, similarity (LayerMoE), allocate (NeuronMoE, NeuronMoE-EN),
# train stage 1 x3 + stage 2, evaluate x5, analyze-experts, figures, report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_pipeline.sh  # the CLI names variables of ours that this run ignores
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export OUTPUT_DIR="${OUTPUT_DIR:-outputs}"
start=$(date +%s)
python -m neuronmoe pipeline "$@"
echo "[run_pipeline] finished in $(( $(date +%s) - start ))s; report: $OUTPUT_DIR/report.md"
