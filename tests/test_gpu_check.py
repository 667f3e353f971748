"""scripts/gpu_check.sh --check: the GPU check's code path on CPU with a tiny model, so it cannot rot."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_on_cpu_in_check_mode():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for section in ("# GPU check:", "## Evaluation", "## GRPO step", "## SFT", "## One micro-claims arm on this device",
                    "## The real configs on this device"):
        assert section in done.stdout
    # a real config's one step, in its own process, with its peak memory (the code path; sizes are tiny on a CPU)
    assert "| `configs/qwen2.5-0.5b/r1_zero.yaml` | qwen2.5-0.5b |" in done.stdout and "**Failed**" not in done.stdout


def test_a_real_configs_smoke_run_keeps_its_own_sizes():
    """On a GPU the smoke run changes only what it must (models, one step, a token evaluation), so
    the peak memory is that of the config's own batch sizes and lengths."""
    import yaml

    from rlsft.bench.gpucheck import REAL_CONFIGS, architecture_of, smoke_overrides

    for path in REAL_CONFIGS:
        cfg = yaml.safe_load((ROOT / path).read_text())
        models = {m: Path(f"random-{architecture_of(m)}") for m in filter(None, (cfg["model"]["name"], (cfg.get("distill") or {}).get("teacher")))}
        keys = {o.split("=")[0] for o in smoke_overrides(cfg, models, Path("out"), small=False)}
        assert not keys & {"training.per_device_train_batch_size", "training.gradient_accumulation_steps", "grpo.max_completion_length",
                           "grpo.num_generations", "sft.max_length", "distillation.max_completion_length", "model.dtype"}
        assert "training.max_steps" in keys and ("distill.teacher" in keys) == ("distill" in cfg)


def test_card_peak_and_architectures():
    from rlsft.bench.gpucheck import card_peak
    from rlsft.models import ARCHITECTURES

    assert card_peak("NVIDIA H100 PCIe") == 756e12 and card_peak("NVIDIA H200") == 989e12
    assert card_peak("NVIDIA H100 NVL") == 835e12  # its data sheet: 1,671 TFLOP/s bf16 with sparsity
    q = ARCHITECTURES["qwen2.5-0.5b"]
    assert (q["hidden_size"], q["num_hidden_layers"], q["vocab_size"]) == (896, 24, 151936)


def test_gpu_check_stopped_part_way_keeps_what_it_measured(tmp_path):
    """A lent GPU's time limit sends SIGTERM: the running part is marked failed, the bench rows
    finished before it stay in the report, and the exit status is non-zero."""
    import signal
    import sys
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "rlsft.bench.gpucheck", "--check", "--out", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".gpu-check-work" / "sft" / "bench-cpu-random-tiny.md"  # the first part, written as it ends
    deadline = time.time() + 120
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-2000:]
    report = (tmp_path / "gpu-cpu-check.md").read_text()
    assert "**Failed**: Stopped: stopped by SIGTERM" in report
    assert "## SFT" in report and "tokens/s" in report  # the first part, finished before the signal


def test_bench_table_marks_partial_results():
    from rlsft.bench.bench import bench_table

    row = {"variant": "prompts-16", "samples": 1, "problems": 4, "sequences_per_call": 16, "calls": 1, "seconds": 1.0,
           "generated_tokens": 10, "useful_tflops": 0.0, "fraction_of_peak": 0.1, "pass@1": 0.0}
    r = {"model": "m", "device": "cpu", "matmul_peak_tflops": 1.0, "matmul_dtype": "float32", "provenance": {"git_commit": "abc", "time_utc": "t"},
         "settings": {"eval_max_new_tokens": 8}, "ratios": {}, "eval": [row], "grpo": [], "sft": [], "partial": True}
    table = bench_table(r)
    assert "**Partial**" in table and "| 1 | prompts-16 |" in table and "x** with --samples" not in table


def test_load_model_puts_the_model_on_the_gpu_when_there_is_one(monkeypatch):
    """On a GPU machine `rlsft eval` and teachers generate on the GPU (the first H100 check found
    evaluation running on the CPU beside an idle GPU)."""
    import torch
    from transformers import PreTrainedModel

    from rlsft.models import load_model

    moved = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(PreTrainedModel, "to", lambda self, *a, **k: moved.append(a) or self)
    monkeypatch.setenv("LOCAL_RANK", "1")
    load_model("micro-student", dtype="float32")
    assert moved == [("cuda:1",)]
