#!/usr/bin/env bash
# Stage 2 (router training): routers only, new-language + replay data, LPR + balance loss.
# Reads $OUTPUT_DIR/train/<allocation>-s1/adapter (or STAGE1_ADAPTER), writes $OUTPUT_DIR/train/<run>/.
#
#   BASE_MODEL_PATH=smollm2-135m OUTPUT_DIR=outputs ALLOCATION=neuronmoe bash scripts/run_stage2.sh [extra flags]
#
# Environment (besides those of run_stage1.sh):
#   STAGE1_ADAPTER      the stage-1 adapter folder (default $OUTPUT_DIR/train/<allocation>-s1/adapter)
#   OLD_LANGS           replay languages "en zh es" (cpu profile: "en"; old name REPLAY_LANGS, deprecated)
#   REPLAY_MAX_SAMPLES  50000 documents per replay language
#   MAX_SAMPLES         50000 new-language documents       LPR_LOSS_COEF       0.1
#   NUM_TRAIN_EPOCHS    1 (MAX_STEPS=-1)                   LEARNING_RATE       5e-5
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_stage2.sh  # the CLI names variables of ours that this run ignores
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ] || [ "${NNODES:-1}" -gt 1 ]; then
  exec python -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    --nproc_per_node "$NPROC" -m neuronmoe train --stage 2 "$@"
fi
exec python -m neuronmoe train --stage 2 "$@"
