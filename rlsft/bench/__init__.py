"""Benchmarking the machine: `rlsft bench` (bench.py: SFT, GRPO and evaluation speed against the
measured matmul peak) and the GPU check (gpucheck.py, run by scripts/gpu_check.sh)."""
