#!/usr/bin/env bash
# Every GPU check of docs/benchmarks.md in one run (< 8 minutes on one H100/H200), one JSON file:
#
#   bash benchmarks/gpu_check.sh OUT_DIR            # on a GPU machine: OUT_DIR/gpu_check.json
#   bash benchmarks/gpu_check.sh OUT_DIR --tiny     # anywhere (CPU, toy sizes): the same code paths
#
# Then record the card's figures: `summary.mfu_for_budget` under neuronmoe/configs/budget.yaml measured_mfu
# (with the docs/benchmarks.md entry it comes from), and the measured peak beside the memory estimate in
# docs/benchmarks.md ("GPU"). Options after OUT_DIR: --only moe_throughput,ap,neuron_stage,stage1_step, --budget-s.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [--tiny] [--only CHECKS] [--budget-s SECONDS]}"
shift
source scripts/setup_env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"  # nothing is downloaded
exec python benchmarks/gpu_check.py run --out-dir "$out" "$@"
