#!/usr/bin/env bash
# Create/refresh the project's virtual environment in .venv (idempotent): installs pixelseg in
# editable mode with the pinned versions of constraints.txt. EXTRAS=test adds the test tools.
# PyTorch comes from the index scripts/torch_index.py chooses (CPU-only wheels on Linux without an NVIDIA GPU
# when download.pytorch.org answers, else PyPI); TORCH_INDEX_URL=<url> or TORCH_INDEX_URL=pypi decides instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
key=$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
base=".venv/.installed-${key}${EXTRAS:+-$EXTRAS}"
# Without TORCH_INDEX_URL the choice is made once per stamp: an install already done (from any index) is kept, so
# later runs neither probe the network nor wait. The stamp is $base for PyPI, $base.torch-<hash of the URL> else.
if [ -z "${TORCH_INDEX_URL:-}" ] && { [ -f "$base" ] || compgen -G "$base.torch-*" >/dev/null; }; then
  exit 0
fi
echo "choosing where PyTorch comes from ..." >&2
chooser=("$PYTHON" scripts/torch_index.py)
command -v timeout >/dev/null 2>&1 && chooser=(timeout 10 "${chooser[@]}")
index=$("${chooser[@]}") || { index=""; echo "torch from PyPI: the chooser failed or timed out" >&2; }
stamp="$base${index:+.torch-$(printf %s "$index" | sha1sum | cut -c1-8)}"
previous=$(cat .venv/.torch-index 2>/dev/null) || previous=""      # where the installed torch came from
# a torch installed before that record existed came from PyPI
[ -z "$previous" ] && compgen -G ".venv/lib/python*/site-packages/torch-*.dist-info" >/dev/null && previous=pypi
changed=""
[ -n "$previous" ] && [ "$previous" != "${index:-pypi}" ] && changed=1
if [ ! -f "$stamp" ] || [ -n "$changed" ]; then
  echo "setting up .venv (first run installs PyTorch and friends; about 2 minutes) ..." >&2
  spec="."
  [ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt)
  from=()
  [ -n "$index" ] && from=(--index-url "$index")
  # The torch==X pin in constraints.txt also admits X+cpu, so it holds on either index. pip keeps an installed
  # torch that meets the pin, so a changed choice reinstalls torch and torchvision by force (the CUDA libraries of
  # an earlier PyPI install stay in .venv; remove .venv for a clean one).
  if [ -n "$changed" ]; then
    "${pip[@]}" --force-reinstall --no-deps "${from[@]}" torch torchvision
  fi
  "${pip[@]}" "${from[@]}" torch torchvision
  echo "${index:-pypi}" > .venv/.torch-index
  "${pip[@]}" -e "$spec"
  rm -f "$base" "$base".torch-*
  touch "$stamp"
fi
