#!/usr/bin/env bash
# Stage 1 (expert initialisation): new experts + routers on the new language(s) -> $OUTPUT_DIR/train/<run>/.
#
#   BASE_MODEL_PATH=smollm2-135m OUTPUT_DIR=outputs ALLOCATION=neuronmoe bash scripts/run_stage1.sh [extra flags]
#
# Environment (each maps to a flag of `neuronmoe train`; unset = the profile YAML):
#   BASE_MODEL_PATH  model alias / folder / hub id     OUTPUT_DIR    outputs root (reads data/, allocation/)
#   ALLOCATION       allocation name or JSON path       RUN_NAME      run folder name (default <allocation>-s1)
#   TRAIN_PROFILE    auto | paper | cpu                 TRAIN_CONFIG  a YAML of overrides
#   NEW_LANGS        "el"                               CUTOFF_LEN    packed block length (1024)
#   LEARNING_RATE    1e-4     TRAIN_BATCH_SIZE 32       GRADIENT_ACCUMULATION_STEPS 1
#   MAX_STEPS        15000    SAVE_STEPS 1000           LOGGING_STEPS 10
#   TRAIN_TOP_K 2  AUX_LOSS_COEF 0.01  MAX_SAMPLES (all)  TRAIN_SEED 42   BF16 1   REPORT_TO auto
#   TRAIN_MAX_TOKENS auto (what MAX_STEPS sees: 491.5M tokens in Table 7) | all | N: tokens packed
#   (old names TARGET_LANGS, BATCH_SIZE, TOPK, SEED still work, deprecated)
#   DEEPSPEED_CONFIG zero2 | path.json (multi-GPU)      RESUME=1 / OVERWRITE=1
#   NPROC            processes on this node (>1 -> torchrun; add DEEPSPEED_CONFIG=zero2 for ZeRO-2)
#   NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT   multi-node torchrun rendezvous
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=run_stage1.sh  # the CLI names variables of ours that this run ignores
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ] || [ "${NNODES:-1}" -gt 1 ]; then
  exec python -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    --nproc_per_node "$NPROC" -m neuronmoe train --stage 1 "$@"
fi
exec python -m neuronmoe train --stage 1 "$@"
