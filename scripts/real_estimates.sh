#!/usr/bin/env bash
# docs/recipes.md's table of estimated compute for the real (Qwen2.5) configs, from `rlsft train --dry-run`:
# FLOPs at every completion's maximum length, and a GPU-hour floor (H100 dense bf16 at 30% utilisation).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echo "| config | stages | FLOPs (upper bound) | GPU-hours (floor) |"
echo "|---|---|---|---|"
for f in configs/qwen2.5-0.5b/*.yaml configs/qwen2.5-1.5b/*.yaml; do
  .venv/bin/rlsft train "$f" --dry-run | .venv/bin/python -c "
import yaml, sys
st = yaml.safe_load(sys.stdin)['stages']
flops = sum(s['estimate']['flops_upper_bound'] for s in st)
hours = sum(s['estimate']['gpu_hours_floor'] for s in st)
print(f'| \`$f\` | ' + ' + '.join(s['stage'] for s in st) + f' | {flops:.2g} | {hours:.2f} |')"
done
