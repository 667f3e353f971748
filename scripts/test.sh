#!/usr/bin/env bash
# The test command of the README (and of CI): set up .venv, then run the fast suite.
# Run by hand: slow end-to-end tests, bash scripts/test.sh -m slow; the audits of the full GSM8K and
# MATH-500 in ../shared/data (every gold verifies against itself, no training solution reads as mixed),
# bash scripts/test.sh -m full_data.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest "$@"
