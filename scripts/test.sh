#!/usr/bin/env bash
# The test command of the README (and of CI): set up .venv, then run the fast suite.
# Slow end-to-end tests are run by hand: bash scripts/test.sh -m slow
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export RLSFT_DATA=${RLSFT_DATA:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest "$@"
