#!/usr/bin/env bash
# Command 1: set up the environment and run the main job on the built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pixelseg quickstart "$@"
