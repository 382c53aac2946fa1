#!/usr/bin/env bash
# Create/refresh the project's virtual environment in .venv (idempotent): installs pixelseg in
# editable mode with the pinned versions of constraints.txt. EXTRAS=test adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
key=$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
stamp=".venv/.installed-${key}${EXTRAS:+-$EXTRAS}${TORCH_INDEX_URL:+-custom-torch}"
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first run installs PyTorch and friends; about 2 minutes) ..." >&2
  spec="."
  [ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    # e.g. https://download.pytorch.org/whl/cpu: PyTorch without the CUDA libraries (about 1 GB instead of 6 on a
    # machine with no GPU); the pinned version still applies (2.14.1+cpu satisfies torch==2.14.1)
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt --index-url "$TORCH_INDEX_URL" \
      torch torchvision
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$spec"
  touch "$stamp"
fi
