"""The report reads the base model from the right runs, and tells where the reasoning's language went."""

import json

from rlsft.analysis.report import language_composition, load_results
from rlsft.runs.folder import RunFolder


def fake_run(folder, seed, before_correct, after_correct, completion="<think> so 1 + 1 = 2 </think> <answer>2</answer>"):
    """A hand-made run folder: run.json, metrics.jsonl, eval_before/ and eval_after/ samples for one problem."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"config": {"run": {"seed": seed, "name": folder.name}}, "compute": {"flops": 1e12, "wall_seconds": 60.0}}))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.1}) + "\n")
    for which, correct in (("eval_before", before_correct), ("eval_after", after_correct)):
        (folder / which / "t").mkdir(parents=True)
        row = {"id": "p1", "completion": completion, "correct": correct, "mixed": False, "format_ok": True, "length": 9}
        (folder / which / "t" / "samples.jsonl").write_text(json.dumps(row) + "\n")


def test_base_comes_from_the_base_arm_never_from_a_later_pipeline_stage(tmp_path):
    fake_run(tmp_path / "zero" / "seed0", 0, before_correct=False, after_correct=True)  # base: wrong
    fake_run(tmp_path / "pipe" / "seed0" / "1-sft", 0, before_correct=False, after_correct=True)
    fake_run(tmp_path / "pipe" / "seed0" / "2-grpo", 0, before_correct=True, after_correct=True)  # starts from the SFT model
    runs = RunFolder.find([str(tmp_path)])
    assert sorted(r.path.name for r in runs) == ["2-grpo", "seed0"]  # a pipeline is its last stage
    for base_arm in (None, "zero"):
        scores = load_results(runs, "t", base_arm)["scores"]
        assert scores["accuracy"]["base"][0] == {"p1": 0.0}  # not the 2-grpo stage's eval_before (1.0)
        assert set(scores["accuracy"]) == {"base", "zero", "pipe"}
    results = load_results(runs, "t", "zero")  # a pipeline's cost is all its stages
    assert results["minutes"] == {"zero": {0: 1.0}, "pipe": {0: 2.0}}
    assert results["pflops"] == {"zero": {0: 0.001}, "pipe": {0: 0.002}}


def test_language_composition(tmp_path):
    fake_run(tmp_path / "r", 0, True, True, completion="<think> 先算 1 加 1 so 2 </think> <answer>2</answer>")
    assert language_composition(tmp_path / "r" / "eval_after", "t") == {"target": 0.0, "other": 0.0, "switched": 1.0, "none": 0.0}
    assert language_composition(tmp_path / "r" / "eval_after", "missing-task") is None
