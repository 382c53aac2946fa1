#!/usr/bin/env bash
# Command 2: set up the environment with the test extras and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
