#!/usr/bin/env bash
# The lab's GPU check, in parts written as each ends: SFT tokens/s and MFU, then a GRPO step's split
# (both beside TRL's defaults, on a randomly initialised Qwen2.5-0.5B architecture), then one short
# micro recipe end to end (pure RL, 20 steps), then, while time is left, evaluation batching and one
# step of each real config with its peak memory. Writes reports/bench/gpu-<device>.md and .json
# (`--parts configs`: that part alone, with the whole budget, to gpu-<device>-configs.md).
#
#   bash scripts/gpu_check.sh            # on a GPU machine with no network: the essential parts in under 5 minutes, wheels included
#   bash scripts/gpu_check.sh --check    # on CPU, CI-sized: the same code path with a tiny model,
#                                        # written to a temporary folder (run by the test suite)
#
# The GPU machine has torch, transformers, accelerate and peft but not trl, datasets or
# math-verify: `bash scripts/gpu_wheels.sh` (here, with the package registries) saves their wheels
# in .whl/, which travels with the working tree; this script installs them offline.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--check" ]; then
  bash scripts/setup.sh >/dev/null
  out=$(mktemp -d)
  # micro sizes under the same 5-minute limit as the GPU run: a part that overruns fails the check
  HF_HUB_OFFLINE=1 WANDB_MODE=disabled timeout 300 .venv/bin/python -m rlsft.bench.gpucheck --check --out "$out"
  test -s "$out/gpu-cpu-check.md"
  rm -rf "$out"
  exit 0
fi
if ! python3 -c "import trl, datasets, math_verify, langdetect" 2>/dev/null; then
  if [ ! -d .whl ]; then echo "gpu_check: trl, datasets or math-verify missing and no .whl/ (run scripts/gpu_wheels.sh where pip can reach the registries)" >&2; exit 2; fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 WANDB_MODE=disabled
exec timeout 300 python3 -m rlsft.bench.gpucheck --out reports/bench "$@"  # exec: a time limit's SIGTERM reaches the check; "$@": e.g. --parts configs
