#!/usr/bin/env bash
# Saves in .whl/ the wheels that scripts/gpu_check.sh installs on a GPU machine with no network
# (Python 3.12, manylinux x86_64): the lab's needs that its image lacks, and transformers at the lab's
# tested version (the image's is older). Run here, where pip reaches the package registries; .whl/
# is git-ignored and travels as a carried path (22 MB of the 64 MiB limit).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# versions: those the lab's own environment resolved (pip freeze in .venv); transformers checks the
# versions of huggingface-hub, safetensors, tokenizers and regex as it is imported, so they come too
pins=$(.venv/bin/python -m pip freeze | grep -iE '^(trl|transformers|huggingface[-_]hub|safetensors|tokenizers|regex|datasets|math-verify|latex2sympy2[-_]extended|antlr4-python3-runtime|pebble|dill|multiprocess|gguf|langdetect)==' )
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $(echo "$pins" | grep -v langdetect)
# langdetect publishes only a source archive: build its (pure-Python) wheel here
.venv/bin/python -m pip wheel -q --no-deps -w .whl $(echo "$pins" | grep langdetect)
ls -la .whl
