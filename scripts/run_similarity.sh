#!/usr/bin/env bash
# LayerMoE baseline: per-layer cross-lingual similarity of MLP inputs -> $OUTPUT_DIR/similarity/
# and $OUTPUT_DIR/allocation/layermoe.json (+ .env).
#
#   OUTPUT_DIR=outputs NEW_LANGS=el OLD_LANGS=en scripts/run_similarity.sh
#
# Environment (all optional; flags after the script name are passed on to `neuronmoe similarity`):
#   OUTPUT_DIR          root of all outputs (default ./outputs); reads $OUTPUT_DIR/data/<split>/<lang>.jsonl
#   BASE_MODEL_PATH     model (alias / folder / hub id; default smollm2-135m)
#   NEW_LANGS           new language(s) (default el; old name TARGET_LANGS, deprecated)
#   OLD_LANGS           old languages measured (default: the source)
#   SOURCE_LANG         the source language (default: the first of OLD_LANGS, else en)
#   SIMILARITY_BATCH_SIZE, SIMILARITY_MAX_LENGTH  texts per forward (8), tokens per text (256)
#   SIMILARITY_SPLIT    samples | train | heldout | replay (default samples)
#   SIMILARITY_TOKENS   tokens per language (default 100000 on a GPU, 1024 on CPU)
#   BUDGET              LayerMoE budget B (default 2.5 x layers; 70 for Llama-3.2-3B's 28 layers)
#   ALLOCATION_NAME     allocation name (default layermoe)
#   DEVICE, DTYPE       torch device / dtype (default auto)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_similarity.sh  # the CLI names variables of ours that this run ignores
exec python -m neuronmoe similarity "$@"
