"""`rlsft bench` runs both variants and writes its JSON and table (no timing is asserted)."""

import json

from rlsft.cli import main as cli_main


def test_bench_writes_both_variants_and_ratios(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--steps", "1", "--warmup", "1",
                     "--max-completion-length", "16", "--reuse", "2", "--eval-n", "6", "--micro-batch", "16"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert [g["variant"] for g in r["grpo"]] == ["trl-defaults", "lab", "lab-reuse", "lab-micro"]
    assert [g["micro_batch"] for g in r["grpo"]] == [64, 64, 64, 16]  # lab-micro: the same 64-completion step in 4 parts
    assert all(0 < g["fraction_of_peak"] < 1 and g["tokens_per_step"] > 64 for g in r["grpo"])
    assert [s["variant"] for s in r["sft"]] == ["trl-defaults", "lab"]
    assert [g["steps_per_generation"] for g in r["grpo"]] == [1, 1, 2, 1] and r["grpo"][2]["steps_timed"] == 2  # whole cycles
    for g in r["grpo"]:  # the split adds up to the step
        assert abs(g["generation_seconds"] + g["scoring_seconds"] + g["update_seconds"] - g["step_seconds"]) < 1e-6
        assert g["generation_seconds"] > 0 and g["rollout_tokens_per_second"] > 0
    assert all(0 < s["mfu"] < 1 for s in r["sft"])
    assert [(e["samples"], e["variant"]) for e in r["eval"]] == [(1, "prompts-16"), (1, "sequences"), (8, "prompts-16"), (8, "sequences")]
    for e in r["eval"]:
        assert e["sequences"] == 6 * e["samples"] and 0 < e["fraction_of_peak"] < 1 and 0 <= e["pass@1"] <= 1
    assert set(r["ratios"]) == {"grpo_step_speedup", "sft_tokens_per_second_ratio", "grpo_reuse_step_speedup", "grpo_micro_step_speedup",
                                "eval_samples1_speedup", "eval_samples8_speedup"}
    assert "| lab |" in next(out.glob("bench-*.md")).read_text()


def test_bench_parts_and_bad_parts(toy_model, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "eval", "--eval-n", "4"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert r["grpo"] == [] and r["sft"] == [] and len(r["eval"]) == 4
    assert "## GRPO" not in next(out.glob("bench-*.md")).read_text()
    assert cli_main(["bench", "--model", toy_model, "--out", str(tmp_path / "b2"), "--parts", "eval,rl"]) == 2
    assert "--parts" in capsys.readouterr().err and not (tmp_path / "b2").exists()



def test_isolated_measurements_each_report_their_own_peak(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--parts", "grpo", "--steps", "1", "--warmup", "1", "--reuse", "1",
                     "--prompts-per-step", "2", "--num-generations", "4", "--max-completion-length", "8", "--micro-batch", "2", "--isolate"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert [g["variant"] for g in r["grpo"]] == ["trl-defaults", "lab", "lab-micro"] and all(g["peak_memory_gb"] > 0 for g in r["grpo"])
    assert "its own process" in next(out.glob("bench-*.md")).read_text()
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--micro-batch", "3"]) == 2  # 64 completions: not divisible
