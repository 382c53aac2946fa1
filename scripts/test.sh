#!/usr/bin/env bash
# Command 2: set up the environment with the test extras and run the whole test suite (slow tests included).
# The browser tests (serve page, HTML report) drive Debian's Chromium; it is installed here when
# missing and we may use apt (root), otherwise those tests say why they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser tests ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
# Every test, the slow ones too (pyproject.toml's addopts leave them out of a plain `pytest`); a -m of the caller's
# comes later and wins (`bash scripts/test.sh -m "not slow"`: the fast subset). --durations=25: each run ends with
# its slowest tests, to keep the slow marker honest (tests/README.md).
set -- -m "slow or not slow" --durations=25 "$@"
exec .venv/bin/python -m pytest "$@"
