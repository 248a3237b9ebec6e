#!/usr/bin/env bash
# Expert allocation (NeuronMoE): per-layer neuron scores -> $OUTPUT_DIR/allocation/<name>.json + .env
#
#   OUTPUT_DIR=outputs MODE=pair NEW_LANGS=el OLD_LANGS=en scripts/run_expert_allocation.sh
#
# Environment (all optional; flags after the script name are passed on to `neuronmoe allocate`):
#   OUTPUT_DIR        root of all outputs (default ./outputs); reads $OUTPUT_DIR/neurons/
#   BASE_MODEL_PATH   model (alias / folder / hub id / shipped config such as llama-3.2-3b);
#                     default: the model the neuron stage recorded
#   MODE              pair | multi | source-only | uniform | similarity   (default pair)
#   SOURCE_LANG       source language (default: the first of OLD_LANGS, else en)
#   NEW_LANGS         target language(s), comma separated (default el; old name TARGET_LANGS, deprecated)
#   E_MIN, E_MAX      experts per layer bounds (default 1, 6; E counts the original MLP)
#   ROUNDING          floor (default, reproduces the published allocations) | round
#   SCORES_CSV        allocate from a layer,score CSV instead of neuron results
#   NUM_EXPERTS       MODE=uniform: experts per layer (default E_MAX)
#   BUDGET            MODE=similarity: LayerMoE budget B (default 2.5 x layers)
#   ALLOCATION_NAME   output name (default neuronmoe / neuronmoe-en / neuronmoe-multi / layermoe / uniform-N)
#   REFERENCE_ALLOCATION  allocation to compare parameters with (name or file)
#   COMPARE_WITH      draw the paper's Figure 1 against this allocation (e.g. layermoe)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_expert_allocation.sh  # the CLI names variables of ours that this run ignores
exec python -m neuronmoe allocate "$@"
