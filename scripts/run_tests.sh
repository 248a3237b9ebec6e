#!/usr/bin/env bash
# The test suite (Quickstart command 2). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export NEURONMOE_TEST_OUTPUT="${NEURONMOE_TEST_OUTPUT:-}"
exec python -m pytest "$@"
