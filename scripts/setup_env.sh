#!/usr/bin/env bash
# Source this file: it makes `neuronmoe` importable, creating ./.venv on first use.
#
#   source scripts/setup_env.sh
#
# * If the current python already imports neuronmoe (your own env), nothing is installed.
# * Otherwise a virtual environment is made at $NEURONMOE_VENV (default ./.venv), torch is
#   installed with the CPU pin (torch==2.13.0) where this machine offers it, then the package
#   with its test extras and DeepSpeed (ZeRO-2 tests), all under constraints.txt.
# * Reinstalls when pyproject.toml or constraints.txt change (a stamp in the venv).
# Set NEURONMOE_SKIP_SETUP=1 to use whatever python is on PATH as it is.

_nm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NEURONMOE_ROOT="$_nm_root"
export NEURONMOE_CACHE="${NEURONMOE_CACHE:-$HOME/.cache/neuronmoe}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export HF_HUB_DISABLE_TELEMETRY=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1

_nm_setup() {
  if [ "${NEURONMOE_SKIP_SETUP:-0}" = "1" ]; then return 0; fi
  local venv="${NEURONMOE_VENV:-$_nm_root/.venv}"
  local py="${PYTHON:-python3}"
  local stamp_src
  stamp_src="$(cat "$_nm_root/pyproject.toml" "$_nm_root/constraints.txt" | sha256sum | cut -c1-16)"
  # an outside environment that already has neuronmoe (and is not our venv): use it
  if [ -z "${VIRTUAL_ENV:-}" ] && "$py" -c "import neuronmoe, torch, transformers, peft" >/dev/null 2>&1 \
     && [ ! -d "$venv" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment at $venv" >&2
    "$py" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  if [ "$(cat "$venv/.neuronmoe-stamp" 2>/dev/null)" != "$stamp_src" ] || ! python -c "import neuronmoe" >/dev/null 2>&1; then
    echo "[setup] installing neuronmoe and its dependencies into $venv (a few minutes, once)" >&2
    if ! python -c "import torch" >/dev/null 2>&1; then
      # the CPU build that lies on our machines; elsewhere fall back to the default wheel
      python -m pip install -q "torch==${NEURONMOE_TORCH_VERSION:-2.13.0}" \
        || python -m pip install -q "torch>=2.4" || return 1
    fi
    python -m pip install -q -c "$_nm_root/constraints.txt" -e "$_nm_root[dev]" || return 1
    if ! python -c "import deepspeed" >/dev/null 2>&1; then
      DS_BUILD_OPS=0 python -m pip install -q --no-build-isolation -c "$_nm_root/constraints.txt" deepspeed \
        || echo "[setup] warning: DeepSpeed did not install; ZeRO-2 tests will be skipped" >&2
    fi
    echo "$stamp_src" > "$venv/.neuronmoe-stamp"
  fi
}

_nm_setup || { echo "[setup] failed to set up the environment" >&2; return 1 2>/dev/null || exit 1; }
