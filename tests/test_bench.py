"""`rlsft bench` runs both variants and writes its JSON and table (no timing is asserted)."""

import json
import sys

import pytest

from rlsft.bench.bench import step_flops
from rlsft.cli import main as cli_main
from rlsft.models import load_model, matmul_params


def test_bench_writes_both_variants_and_ratios(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--steps", "1", "--warmup", "1",
                     "--max-completion-length", "16", "--reuse", "2", "--eval-n", "20", "--micro-batch", "16"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert [g["variant"] for g in r["grpo"]] == ["trl-defaults", "lab-trl-trainer", "lab", "lab-reuse", "lab-micro"]
    assert [g["trainer"] for g in r["grpo"]] == ["trl", "trl", "lab", "lab", "lab"]
    assert [g["micro_batch"] for g in r["grpo"]] == [64, 64, 64, 64, 16]  # lab-micro: the same 64-completion step in 4 parts
    assert all(0 < g["fraction_of_peak"] < 1 and g["tokens_per_step"] > 64 for g in r["grpo"])
    assert [s["variant"] for s in r["sft"]] == ["trl-defaults", "lab"]
    assert [g["steps_per_generation"] for g in r["grpo"]] == [1, 1, 1, 2, 1] and r["grpo"][3]["steps_timed"] == 2  # whole cycles
    for g in r["grpo"]:  # generation and scoring are timed inside the step, each part of it
        assert 0 < g["generation_seconds"] and 0 < g["scoring_seconds"] and g["generation_seconds"] + g["scoring_seconds"] < g["step_seconds"]
        assert g["rollout_tokens_per_second"] > 0
        assert g["fraction_of_peak"] == pytest.approx(g["achieved_tflops"] / r["matmul_peaks_tflops"][g["peak_dtype"]])
    assert all(0 < s["mfu"] < 1 for s in r["sft"])
    assert [(e["samples"], e["variant"]) for e in r["eval"]] == [(1, "prompts-16"), (1, "sequences"), (8, "prompts-16"), (8, "sequences")]
    for e in r["eval"]:
        assert e["sequences"] == 20 * e["samples"] and 0 < e["fraction_of_peak"] < 1 and 0 <= e["pass@1"] <= 1
    assert set(r["ratios"]) == {"grpo_step_speedup", "sft_tokens_per_second_ratio", "grpo_reuse_step_speedup", "grpo_micro_step_speedup",
                                "grpo_trl_trainer_step_speedup", "grpo_lab_trainer_vs_trl_trainer", "eval_samples1_speedup", "eval_samples8_speedup"}
    table = next(out.glob("bench-*.md")).read_text()
    assert "| lab |" in table and "one generate call per 2 steps (lab-reuse)" in table  # lab-reuse's own row, wherever it sits
    assert "after 1 warm-up steps" in table and "Produced by `" in table


def test_bench_parts_and_bad_parts(toy_model, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "eval", "--eval-n", "4"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert r["grpo"] == [] and r["sft"] == [] and len(r["eval"]) == 2  # 4 problems: sequences alone, at 1 and 8 samples
    table = next(out.glob("bench-*.md")).read_text()
    assert "## GRPO" not in table and "The ceiling of generation" in table
    assert [d["sequences"] for d in r["decode"]] == [1, 8, 16, 32, 64, 128]  # the ceiling at each decode batch
    assert all(d["tflops"] == pytest.approx(d["tflop"] / d["seconds_per_token_step"]) and 0 < d["fraction_of_peak"] for d in r["decode"])
    assert r["decode"][-1]["tflop"] == pytest.approx(128 * r["decode"][0]["tflop"])  # 2 x rows x the linear layers' weights
    assert cli_main(["bench", "--model", toy_model, "--out", str(tmp_path / "b2"), "--parts", "eval,rl"]) == 2
    assert "--parts" in capsys.readouterr().err and not (tmp_path / "b2").exists()
    # a misspelt template is refused before the first measurement, which would replace out's earlier report
    before = next(out.glob("bench-*.md")).read_text()
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "eval", "--eval-n", "4", "--template", "r1zero"]) == 2
    assert "--template" in capsys.readouterr().err and next(out.glob("bench-*.md")).read_text() == before



def test_isolated_measurements_each_report_their_own_peak(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "grpo", "--steps", "1", "--warmup", "1", "--reuse", "1",
                     "--prompts-per-step", "2", "--num-generations", "4", "--max-completion-length", "8", "--micro-batch", "2", "--isolate"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert [g["variant"] for g in r["grpo"]] == ["trl-defaults", "lab-trl-trainer", "lab", "lab-micro"]
    assert all(g["peak_memory_gb"] > 0 for g in r["grpo"])
    assert "its own process" in next(out.glob("bench-*.md")).read_text()
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--micro-batch", "3"]) == 2  # 64 completions: not divisible


def test_the_wide_step_and_lora_rows_say_what_they_ran(toy_model, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "grpo,eval", "--steps", "1", "--warmup", "1", "--reuse", "1",
                     "--prompts-per-step", "1", "--num-generations", "4", "--max-completion-length", "8", "--wide", "4",
                     "--lora", "1,4", "--eval-n", "8", "--eval-samples", "4", "--precision", "bf16"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    rows = {g["variant"]: g for g in r["grpo"]}
    assert list(rows) == ["trl-defaults", "lab-trl-trainer", "lab", "lab-bf16", "lab-wide", "lab-wide-lora-r1", "lab-wide-lora-r4"]
    # each row against the peak of the dtype its matmuls run in: bf16 autocast against bfloat16's
    assert (rows["lab"]["peak_dtype"], rows["lab-bf16"]["peak_dtype"]) == ("float32", "bfloat16")
    assert set(r["matmul_peaks_tflops"]) == {"float32", "bfloat16"}
    assert rows["lab-bf16"]["fraction_of_peak"] == pytest.approx(rows["lab-bf16"]["achieved_tflops"] / r["matmul_peaks_tflops"]["bfloat16"])
    # LoRA's step counts its adapters' forward, backward and weight gradient (6 per parameter per trained token)
    body, head = matmul_params(load_model(toy_model))
    g = rows["lab-wide-lora-r4"]
    completion = g["mean_completion_tokens"] * g["completions_per_step"]
    flops = step_flops(body, head, g["tokens_per_step"] - completion, completion, 4, adapters=g["trainable_parameters"])
    assert g["model_tflops_per_step"] * 1e12 == pytest.approx(flops)
    assert (rows["lab"]["completions_per_step"], rows["lab-wide"]["completions_per_step"], rows["lab-wide"]["micro_batch"]) == (4, 16, 4)
    assert rows["lab-wide"]["steps_per_generation"] == 1  # one generate call a step: steps_per_generation = accumulation in TRL's terms
    assert [rows[v]["lora_r"] for v in rows] == [0, 0, 0, 0, 0, 1, 4]
    assert rows["lab-wide-lora-r1"]["trainable_parameters"] < rows["lab-wide-lora-r4"]["trainable_parameters"] < rows["lab-wide"]["trainable_parameters"]
    for g in r["grpo"]:
        assert g["rollouts_per_hour"] == pytest.approx(g["completions_per_step"] * 3600 / g["step_seconds"])
    assert {"grpo_wide_rollouts_per_hour_vs_before", "grpo_wide_lora_r1_vs_full", "grpo_wide_lora_r4_vs_full"} <= set(r["ratios"])
    assert [(e["variant"], e["sequences"]) for e in r["eval"]] == [("sequences", 32)]  # 8 prompts: prompts-16 would be the same call
    assert r["eval"][0]["tokens_per_second"] > 0
    table = next(out.glob("bench-*.md")).read_text()
    assert "| lab-wide-lora-r1 | lab | 16 |" in table and "rollouts/h" in table
    assert cli_main(["bench", "--model", toy_model, "--out", str(tmp_path / "b2"), "--lora", "0"]) == 2
    assert "--lora" in capsys.readouterr().err and not (tmp_path / "b2").exists()


def test_the_profile_times_one_update_with_each_head(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "eval", "--eval-n", "2", "--eval-samples", "1",
                     "--prompts-per-step", "1", "--num-generations", "4", "--max-completion-length", "8", "--profile"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    rows = {row["head"]: row for row in r["profile"]["rows"]}
    assert list(rows) == ["trl-head", "lab-head"] and r["profile"]["completions"] == 4
    assert all(row["head_seconds"] > 0 and row["seconds"] > row["head_seconds"] for row in rows.values())  # each head really ran
    assert "| lab-head |" in next(out.glob("profile-*.md")).read_text()


def test_the_full_batch_rows_are_the_same_samples_computed_to_the_end(toy_model, tmp_path):
    """--full-batch: the lab's step and the evaluation once more with every sequence computed to
    its call's end. Finished sequences leaving the batch changes no sample: the same rewards,
    completion lengths and pass@1, with a same-run ratio for each. --by-length adds the step with
    micro-batches by length."""
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "grpo,eval", "--steps", "2", "--warmup", "0", "--reuse", "1",
                     "--prompts-per-step", "2", "--num-generations", "4", "--max-completion-length", "24", "--wide", "4",
                     "--eval-n", "8", "--eval-samples", "4", "--full-batch", "--by-length"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    rows = {g["variant"]: g for g in r["grpo"]}
    assert list(rows) == ["trl-defaults", "lab-trl-trainer", "lab", "lab-wide", "lab-wide-full-batch", "lab-wide-by-length"]
    assert [rows[v]["finished_leave_batch"] for v in rows] == [False, False, True, True, False, True]
    assert [rows[v]["group_by_length"] for v in rows] == [False] * 5 + [True]
    for key in ("reward_mean", "mean_completion_tokens", "tokens_per_step"):  # the first step's samples, the same in all three
        assert rows["lab-wide"][key] == rows["lab-wide-full-batch"][key], key
    evals = {e["variant"]: e for e in r["eval"]}
    assert list(evals) == ["sequences-full-batch", "sequences"]
    for key in ("pass@1", "generated_tokens", "calls"):
        assert evals["sequences"][key] == evals["sequences-full-batch"][key], key
    assert {"grpo_wide_finished_leave_speedup", "grpo_wide_by_length_speedup", "eval_samples4_finished_leave_speedup"} <= set(r["ratios"])


def test_peak_memory_reads_each_systems_unit(monkeypatch):
    """getrusage's ru_maxrss is KiB on Linux and bytes on macOS: a laptop's 2.5 GB (10^9 bytes) is
    2.5 on both, and 2,500,000 KiB is 2.56 GB, not 2.5."""
    from types import SimpleNamespace

    from rlsft.runs import compute

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(compute, "_linux_high_water_kb", lambda: None)  # no /proc: getrusage alone
    for platform, maxrss, gb in (("linux", 2_441_407, 2.5), ("darwin", 2_500_000_000, 2.5), ("linux", 2_500_000, 2.56)):
        monkeypatch.setattr(compute.sys, "platform", platform)
        monkeypatch.setattr(compute.resource, "getrusage", lambda who, m=maxrss: SimpleNamespace(ru_maxrss=m))
        assert compute.peak_memory_gb() == gb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resettable high-water mark is Linux's")
def test_reset_peak_memory_starts_a_runs_peak_over(monkeypatch):
    """An in-process study's second run records its own peak: 400 MB touched and freed before the
    reset counts in the process's peak, not in the peak after it."""
    import numpy as np

    from rlsft.runs import compute

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    compute.reset_peak_memory()  # the tests before this one may have peaked higher
    before = compute._linux_high_water_kb()
    big = np.ones(50_000_000)  # 400 MB (390,625 KiB), touched
    during = compute._linux_high_water_kb()
    del big
    compute.reset_peak_memory()
    after = compute._linux_high_water_kb()
    assert during - before > 300_000 and during - after > 300_000, (before, during, after)  # KiB
    assert compute.peak_memory_gb() < during / 1e6 - 0.3  # what a run records: the peak since the reset (GB)
