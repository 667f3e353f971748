#!/usr/bin/env bash
# The main job of the README: pure RL (GRPO, the R1-Zero recipe) on the shipped micro-student,
# offline on a CPU, with held-out evaluation before and after training, in a new run folder.
# Extra arguments are config overrides, e.g.:  bash scripts/main.sh training.max_steps=50
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
out=runs/main-$(date -u +%Y%m%d-%H%M%S)
.venv/bin/rlsft train configs/micro/r1_zero.yaml "run.out_dir=$out" "$@"
echo
echo "run folder: $out  (run.json: compute and before/after metrics; metrics.jsonl: every logged step)"
