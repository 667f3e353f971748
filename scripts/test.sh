#!/usr/bin/env bash
# The test command of the README (and of CI): set up .venv, then run the fast suite.
# Slow end-to-end tests are run by hand: bash scripts/test.sh -m slow. Tests marked full_data read
# ../shared/data (the full GSM8K and MATH-500) and are deselected where it is absent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest "$@"
