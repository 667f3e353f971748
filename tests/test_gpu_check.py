"""scripts/gpu_check.sh --check: the GPU check's code path on CPU with a tiny model, so it cannot rot."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_on_cpu_in_check_mode():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for section in ("# GPU check:", "## Evaluation", "## GRPO step", "## SFT", "## One micro-claims arm on this device"):
        assert section in done.stdout


def test_card_peak_and_architectures():
    from rlsft.analysis.gpucheck import ARCHITECTURES, card_peak

    assert card_peak("NVIDIA H100 PCIe") == 756e12 and card_peak("NVIDIA H200") == 989e12
    q = ARCHITECTURES["qwen2.5-0.5b"]
    assert (q["hidden_size"], q["num_hidden_layers"], q["vocab_size"]) == (896, 24, 151936)
