"""`rlsft bench` runs both variants and writes its JSON and table (no timing is asserted)."""

import json

from rlsft.cli import main as cli_main


def test_bench_writes_both_variants_and_ratios(toy_model, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--model", toy_model, "--out", str(out), "--steps", "1", "--warmup", "1",
                     "--max-completion-length", "16", "--reuse", "2"]) == 0
    r = json.loads(next(out.glob("bench-*.json")).read_text())
    assert [g["variant"] for g in r["grpo"]] == ["trl-defaults", "lab", "lab-reuse"]
    assert [s["variant"] for s in r["sft"]] == ["trl-defaults", "lab"]
    assert [g["steps_per_generation"] for g in r["grpo"]] == [1, 1, 2] and r["grpo"][2]["steps_timed"] == 2  # whole cycles
    for g in r["grpo"]:  # the split adds up to the step
        assert abs(g["generation_seconds"] + g["scoring_seconds"] + g["update_seconds"] - g["step_seconds"]) < 1e-6
        assert g["generation_seconds"] > 0 and g["rollout_tokens_per_second"] > 0
    assert all(0 < s["mfu"] < 1 for s in r["sft"])
    assert set(r["ratios"]) == {"grpo_step_speedup", "sft_tokens_per_second_ratio", "grpo_reuse_step_speedup"}
    assert "| lab |" in next(out.glob("bench-*.md")).read_text()
