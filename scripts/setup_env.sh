#!/usr/bin/env bash
# Source this file: it makes `neuronmoe` importable, creating ./.venv on first use.
#
#   source scripts/setup_env.sh
#
# * If the current python already imports neuronmoe (your own env), nothing is installed.
# * Otherwise a virtual environment is made at $NEURONMOE_VENV (default ./.venv), torch is
#   installed with the CPU pin (torch==2.13.0) where this machine offers it, then the package,
#   all under constraints.txt. What else, by NEURONMOE_SETUP:
#     runtime (default)  the package alone: every stage, the pipeline (Quickstart 1); DeepSpeed too
#                        when DEEPSPEED_CONFIG is set
#     test               + its test extras (pytest, hypothesis, ruff, tensorboard) and DeepSpeed (the
#                        ZeRO-2 tests): scripts/run_tests.sh sets it (Quickstart 2); ~20 s more
# * Reinstalls when pyproject.toml or constraints.txt change, and adds the test extras to a runtime
#   venv when they are asked for (a stamp in the venv).
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
  local stamp_src level="${NEURONMOE_SETUP:-runtime}" have
  case "$level" in
    runtime|test) ;;
    *) echo "[setup] NEURONMOE_SETUP=$level: expected runtime or test" >&2; return 1 ;;
  esac
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
  # the stamp: "<hash of pyproject.toml + constraints.txt> <level>" (a bare hash: an older full install)
  have="$(cat "$venv/.neuronmoe-stamp" 2>/dev/null)"
  [ "$have" = "$stamp_src" ] && have="$stamp_src test"
  if [ "$have" = "$stamp_src test" ] || { [ "$have" = "$stamp_src runtime" ] && [ "$level" = runtime ]; }; then
    # a test install already tried DeepSpeed; a runtime one adds it when DEEPSPEED_CONFIG asks
    python -c "import neuronmoe" >/dev/null 2>&1 && { [ "$have" = "$stamp_src test" ] || _nm_deepspeed "$level"; return 0; }
  fi
  echo "[setup] installing neuronmoe ($level) and its dependencies into $venv (a few minutes, once)" >&2
  if ! python -c "import torch" >/dev/null 2>&1; then
    # the CPU build that lies on our machines; elsewhere fall back to the default wheel
    python -m pip install -q "torch==${NEURONMOE_TORCH_VERSION:-2.13.0}" \
      || python -m pip install -q "torch>=2.4" || return 1
  fi
  if [ "$level" = test ]; then
    python -m pip install -q -c "$_nm_root/constraints.txt" -e "$_nm_root[dev]" || return 1
  else
    python -m pip install -q -c "$_nm_root/constraints.txt" -e "$_nm_root" || return 1
  fi
  _nm_deepspeed "$level"
  echo "$stamp_src $level" > "$venv/.neuronmoe-stamp"
}

# DeepSpeed: for the tests (ZeRO-2) and for training with DEEPSPEED_CONFIG set; nothing else needs it
# (installed = found on the path: importing it to check costs 2-5 s on every set-up)
_nm_deepspeed() {
  if [ "$1" != test ] && [ -z "${DEEPSPEED_CONFIG:-}" ]; then return 0; fi
  python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('deepspeed') is None)" && return 0
  DS_BUILD_OPS=0 python -m pip install -q --no-build-isolation -c "$_nm_root/constraints.txt" deepspeed \
    || echo "[setup] warning: DeepSpeed did not install; ZeRO-2 tests and DEEPSPEED_CONFIG training will not run" >&2
}

_nm_setup || { echo "[setup] failed to set up the environment" >&2; return 1 2>/dev/null || exit 1; }
