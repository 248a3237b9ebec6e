#!/usr/bin/env bash
# Step 1: data preparation -> $OUTPUT_DIR/data (see docs/data.md).
#
#   bash scripts/prepare_data.sh                       # defaults: smollm2-135m, el new, en old, bundled texts
#   NEW_LANGS=el,tr,hu SOURCE=hf:uonlp/CulturaX bash scripts/prepare_data.sh
#
# Environment (all optional; flags given after the script name win; every variable: README, "Environment variables"):
#   BASE_MODEL_PATH  model alias / folder / hub id whose tokenizer counts tokens (smollm2-135m)
#   OUTPUT_DIR       root of all outputs (outputs)
#   NEW_LANGS        languages to add: samples + train + heldout (el)
#   OLD_LANGS        languages to keep: samples + replay + heldout (en)
#   NEG_LANGS        extra neuron-analysis languages (tr,hu,de,es,fr,ja,zh); or LANGUAGES = all analysis languages
#   NUM_SENTENCES    neuron-analysis sentences per language (500)
#   SOURCE           bundled | jsonl:PATH | txt:PATH | hf:NAME[:CONFIG] (bundled)
#   DATA_SEED        random seed (42; the old name SEED still works, deprecated)
#   DATA_NUM_PROC    worker processes splitting, hashing and counting (1; same files for any value)
#   MAX_TOKENS, MAX_SAMPLE_TOKENS, HELDOUT_FRACTION, MAX_HELDOUT_DOCS, REPLAY_DOCS, TEXT_FIELD, HF_SPLIT,
#   NO_UDHR=1, FORCE=1, DATA_CONFIG (YAML overriding neuronmoe/configs/data.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_SCRIPT=prepare_data.sh  # the CLI names variables of ours that this run ignores
exec neuronmoe prepare-data "$@"
