#!/usr/bin/env bash
# LayerMoE baseline: per-layer cross-lingual similarity of MLP inputs -> $OUTPUT_DIR/similarity/
# and $OUTPUT_DIR/allocation/layermoe.json (+ .env).
#
#   OUTPUT_DIR=outputs SOURCE_LANG=en TARGET_LANGS=el scripts/run_similarity.sh
#
# Environment (all optional; flags after the script name are passed on to `neuronmoe similarity`):
#   OUTPUT_DIR          root of all outputs (default ./outputs); reads $OUTPUT_DIR/data/<split>/<lang>.jsonl
#   BASE_MODEL_PATH     model (alias / folder / hub id; default smollm2-135m)
#   SOURCE_LANG         old language (default en);  OLD_LANGS: more old languages (default: the source)
#   TARGET_LANGS        new language(s) (default el)
#   SIMILARITY_SPLIT    samples | train | heldout | replay (default samples)
#   SIMILARITY_TOKENS   tokens per language (default 100000 on a GPU, 1024 on CPU)
#   BUDGET              LayerMoE budget B (default 2.5 x layers; 70 for Llama-3.2-3B's 28 layers)
#   ALLOCATION_NAME     allocation name (default layermoe)
#   DEVICE, DTYPE       torch device / dtype (default auto)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python -m neuronmoe similarity "$@"
