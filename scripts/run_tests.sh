#!/usr/bin/env bash
# The test suite (Quickstart command 2): the linter (ruff, rules in pyproject.toml, and the function-shape rule of
# scripts/check_shape.py), then pytest. Extra arguments go to pytest.
#   bash scripts/run_tests.sh            # everything (what CI runs, .ci/run)
#   bash scripts/run_tests.sh --fast     # the fast lane: every stage touched, tests marked slow left out (< 3 min)
# NEURONMOE_SKIP_LINT=1 skips the linter (CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export NEURONMOE_SETUP=test  # the package with its test extras and DeepSpeed (scripts/setup_env.sh)
source scripts/setup_env.sh
export NEURONMOE_TEST_OUTPUT="${NEURONMOE_TEST_OUTPUT:-}"
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
if [ "${NEURONMOE_SKIP_LINT:-0}" != "1" ]; then
  python -m ruff --version >/dev/null 2>&1 || { echo "[run_tests] ruff is missing: pip install -e '.[dev]'" >&2; exit 1; }
  python -m ruff check . || { echo "[run_tests] ruff found problems (above); fix them or run ruff check --fix ." >&2; exit 1; }
  python scripts/check_shape.py || { echo "[run_tests] functions over the shape limits (above)" >&2; exit 1; }
fi
exec python -m pytest ${args[@]+"${args[@]}"}
