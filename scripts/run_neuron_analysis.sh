#!/usr/bin/env bash
# Step 2 of the pipeline: language-specific neurons (AP, Kojima et al. 2024) -> $OUTPUT_DIR/neurons/.
#
#   BASE_MODEL_PATH=smollm2-135m OUTPUT_DIR=outputs bash scripts/run_neuron_analysis.sh [extra flags]
#
# Environment (each maps to a flag of `neuronmoe neurons`; unset = neuronmoe/configs/neurons.yaml):
#   BASE_MODEL_PATH  model alias / folder / hub id          OUTPUT_DIR    outputs root (reads data/, writes neurons/)
#   LANGUAGES        "en el tr hu de es fr ja zh"            METRIC        ap | lape
#   NEURONS_TOP_K    units per language (1000)               AP_THRESHOLD  keep AP > this (0.5; 0 = published code)
#   NEURONS_BATCH_SIZE sentences per forward (8)             POOL          mean | max
#   NEURONS_MAX_LENGTH drop longer samples (256)
#   (old names TOP_K, BATCH_SIZE, MAX_LENGTH still work, deprecated)
#   INCLUDE_BOS      true | false                            MODULES       e.g. "gate_proj up_proj"
#   DTYPE            bfloat16 | float32 | auto               DEVICE        auto | cpu | cuda:0
#   NPROC            processes (GPUs) to shard the collection over (default 1; >1 uses torchrun)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_neuron_analysis.sh  # the CLI names variables of ours that this run ignores
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ]; then
  exec python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m neuronmoe neurons "$@"
fi
exec python -m neuronmoe neurons "$@"
