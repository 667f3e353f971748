"""The report reads the base model from the right runs, and tells where the reasoning's language went."""

import json

from rlsft.runs.folder import RunFolder
from rlsft.verdicts.report import language_composition, load_results


def fake_run(folder, seed, before_correct, after_correct, completion="<think> so 1 + 1 = 2 </think> <answer>2</answer>"):
    """A hand-made run folder: run.json, metrics.jsonl, eval_before/ and eval_after/ samples for one problem."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"config": {"run": {"seed": seed, "name": folder.name}}, "compute": {"flops": 1e12, "wall_seconds": 60.0}}))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.1}) + "\n")
    for which, correct in (("eval_before", before_correct), ("eval_after", after_correct)):
        (folder / which / "t").mkdir(parents=True)
        row = {"id": "p1", "question": "q", "completion": completion, "correct": correct, "mixed": False, "format_ok": True, "length": 9}
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
        assert set(scores["accuracy"]) == {"base", "zero", "pipe", "before:zero", "before:pipe"}
        assert scores["accuracy"]["before:pipe"][0] == {"p1": 0.0}  # a pipeline's own start: its first stage's
    results = load_results(runs, "t", "zero")  # a pipeline's cost is all its stages
    assert results["minutes"] == {"zero": {0: 1.0}, "pipe": {0: 2.0}}
    assert results["pflops"] == {"zero": {0: 0.001}, "pipe": {0: 0.002}}


def test_sample_completions_show_the_base_from_the_base_arm_beside_each_arm(tmp_path):
    from rlsft.verdicts.report import sample_completions

    fake_run(tmp_path / "zero" / "seed0", 0, False, True, completion="zero's")
    fake_run(tmp_path / "pipe" / "seed0" / "1-sft", 0, False, True, completion="sft stage's")
    fake_run(tmp_path / "pipe" / "seed0" / "2-grpo", 0, True, True, completion="grpo stage's")
    runs = RunFolder.find([str(tmp_path)])
    shown = sample_completions(runs, "t", base_arm="zero")
    assert sorted(shown) == ["base", "pipe", "zero"] and shown["base"][0]["correct"] is False  # zero's eval_before
    assert shown["pipe"][0]["completion"] == "grpo stage's"  # an arm's own: its last stage's eval_after


def test_language_composition(tmp_path):
    fake_run(tmp_path / "r", 0, True, True, completion="<think> 先算 1 加 1 so 2 </think> <answer>2</answer>")
    assert language_composition(tmp_path / "r" / "eval_after", "t") == {"target": 0.0, "other": 0.0, "switched": 1.0, "none": 0.0}
    assert language_composition(tmp_path / "r" / "eval_after", "missing-task") is None


def test_a_report_refuses_runs_from_mixed_or_dirty_commits(tmp_path):
    import pytest

    from rlsft.io import UserError
    from rlsft.verdicts.report import make_report

    for name, commit in (("a-seed0", "abc123"), ("b-seed0", "def456-dirty")):
        fake_run(tmp_path / "runs" / name, 0, False, True)
        record = json.loads((tmp_path / "runs" / name / "run.json").read_text())
        record.update(recipe="grpo", provenance={"git_commit": commit})
        record["compute"]["device"] = "cpu"
        (tmp_path / "runs" / name / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="not one clean commit"):
        make_report([str(tmp_path / "runs")], str(tmp_path / "report"), task="t")
    assert not (tmp_path / "report").exists()
    out = make_report([str(tmp_path / "runs")], str(tmp_path / "report"), task="t", allow_mixed_commits=True)
    text = (out / "report.md").read_text()
    assert "Runs from more than one commit" in text.split("\n## ")[0] and "`def456-dirty` (1 runs)" in text


def test_a_run_resumed_at_another_commit_counts_at_both(tmp_path):
    """run.json has the last sitting's commit; one that trained at another commit and finished at
    this one is a mix, which the one-commit check sees and the provenance names."""
    import pytest

    from rlsft.io import UserError
    from rlsft.verdicts.report import make_report

    for name in ("a-seed0", "a-seed1"):
        run = tmp_path / "runs" / name
        fake_run(run, 0, False, True)
        record = json.loads((run / "run.json").read_text())
        record.update(recipe="grpo", provenance={"git_commit": "def456"})
        record["compute"]["device"] = "cpu"
        (run / "run.json").write_text(json.dumps(record))
        (run / "provenance.json").write_text(json.dumps({"git_commit": "abc123" if name == "a-seed0" else "def456"}))
    (tmp_path / "runs" / "a-seed0" / "resumes.jsonl").write_text(json.dumps({"from_step": 8, "git_commit": "def456"}) + "\n")
    assert RunFolder(tmp_path / "runs" / "a-seed0").commits == ["abc123", "def456"]
    assert RunFolder(tmp_path / "runs" / "a-seed1").commits == ["def456"]
    with pytest.raises(UserError, match="not one clean commit"):
        make_report([str(tmp_path / "runs")], str(tmp_path / "report"), task="t")
    text = (make_report([str(tmp_path / "runs")], str(tmp_path / "report"), task="t", allow_mixed_commits=True) / "report.md").read_text()
    assert "`abc123` (1 runs), `def456` (2 runs)" in text
    assert "commit `def456` (earlier sittings at `abc123`)," in text and text.count("earlier sittings") == 1


def test_compute_curve_spans_a_pipelines_stages(tmp_path):
    """The curve of a pipeline starts at its base model (0 PFLOPs) and adds each stage's compute."""
    sft, grpo = tmp_path / "pipe" / "seed0" / "1-sft", tmp_path / "pipe" / "seed0" / "2-grpo"
    fake_run(sft, 0, before_correct=False, after_correct=True)
    fake_run(grpo, 0, before_correct=True, after_correct=True)
    for stage in (sft, grpo):
        record = json.loads((stage / "run.json").read_text())
        record["curve"] = [{"step": "final", "pflops": 0.001, "pass@1": 1.0}]
        (stage / "run.json").write_text(json.dumps(record))
    from rlsft.verdicts.report import compute_curve

    points = compute_curve(RunFolder(grpo), "t")
    assert [round(p, 6) for p, _ in points] == [0.0, 0.001, 0.002]
    assert [p["accuracy"]["p1"] for _, p in points] == [0.0, 1.0, 1.0]


def test_per_problem_reads_pass_at_k_up_to_the_samples_taken(tmp_path):
    from rlsft.verdicts.report import per_problem

    folder = tmp_path / "eval_after" / "t"
    folder.mkdir(parents=True)
    rows = [{"id": "p1", "correct": c, "mixed": False, "format_ok": True, "length": 5} for c in (True, False, False, False)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = per_problem(tmp_path / "eval_after", "t")
    assert scores["accuracy"] == {"p1": 0.25} and scores["pass@2"] == {"p1": 0.5} and scores["pass@4"] == {"p1": 1.0}
    assert "pass@8" not in scores  # never more than the samples taken


def test_a_problem_with_an_unverifiable_sample_is_left_out_not_the_seeds_pass_at_k(tmp_path):
    """A checker timeout (correct None) on one of p2's 4 samples once left p2 with 3 samples, so
    pass@4 vanished for the whole seed (and a pass@64 claim lost that seed). Now p2 is left out of
    accuracy and pass@k, as the run's own summary does, and p1 keeps its pass@4; mixing keeps p2."""
    from rlsft.verdicts.report import per_problem

    folder = tmp_path / "eval_after" / "t"
    folder.mkdir(parents=True)
    rows = [{"id": "p1", "correct": c, "correct_lenient": c, "mixed": False, "format_ok": True, "length": 5} for c in (True, False, False, False)]
    rows += [{"id": "p2", "correct": c, "correct_lenient": c, "mixed": True, "format_ok": True, "length": 5} for c in (True, None, False, False)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = per_problem(tmp_path / "eval_after", "t")
    assert scores["accuracy"] == {"p1": 0.25} and scores["accuracy_lenient"] == {"p1": 0.25}
    assert scores["pass@4"] == {"p1": 1.0}
    assert scores["mixing"] == {"p1": 0.0, "p2": 1.0}


def test_the_report_and_the_runs_summary_leave_out_the_same_problems(tmp_path):
    """One rule for unverifiable samples (`metrics.verdicts`), per extraction: p2's lenient check
    timed out on one sample (strict found no answer there), p3's strict and lenient both did. The
    report's per-problem means average to the summary's pass@1 under each extraction."""
    from rlsft.scoring.metrics import summarise
    from rlsft.verdicts.report import per_problem

    def sample(i, strict, lenient):
        return {"id": i, "correct": strict, "correct_lenient": lenient, "mixed": False, "format_ok": True, "language_consistency": 1.0,
                "length": 5, "truncated": False, "extracted": None}

    problems = [[sample("p1", True, True), sample("p1", False, True)],
                [sample("p2", False, None), sample("p2", True, True)],
                [sample("p3", None, None), sample("p3", False, False)]]
    folder = tmp_path / "eval_after" / "t"
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for p in problems for s in p))
    scores, summary = per_problem(tmp_path / "eval_after", "t"), summarise(problems)
    assert scores["accuracy"] == {"p1": 0.5, "p2": 0.5} and scores["accuracy_lenient"] == {"p1": 1.0}
    assert summary["pass@1"]["value"] == 0.5 and summary["pass@1_lenient"]["value"] == 1.0
    assert summary["pass@1"]["n"] == 2 and summary["pass@1_lenient"]["n"] == 1


def test_a_completion_holding_a_unicode_line_separator_is_one_sample(tmp_path):
    """SmolLM2 wrote a U+2028 in a completion; `json.dumps(ensure_ascii=False)` leaves it raw, and a
    reader that split lines with `str.splitlines` broke the record in two (a JSONDecodeError traceback)."""
    from rlsft.io import to_jsonl
    from rlsft.verdicts.report import per_problem, sample_completions

    completion = "1 + 4 = 5" + chr(0x2028) + "so" + chr(0x85) + "<answer>5</answer>"
    fake_run(tmp_path / "r" / "seed0", 0, True, True, completion="x")
    for which in ("eval_before", "eval_after"):  # written raw, as the lab's writer did before it escaped them
        row = {"id": "p1", "question": "q", "completion": completion, "correct": True, "mixed": False, "format_ok": True, "length": 9}
        (tmp_path / "r" / "seed0" / which / "t" / "samples.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert per_problem(tmp_path / "r" / "seed0" / "eval_after", "t")["accuracy"] == {"p1": 1.0}
    runs = RunFolder.find([str(tmp_path)])
    assert load_results(runs, "t")["scores"]["accuracy"]["r"][0] == {"p1": 1.0}
    assert sample_completions(runs, "t")["r"][0]["completion"] == completion
    assert language_composition(tmp_path / "r" / "seed0" / "eval_after", "t")["none"] + language_composition(tmp_path / "r" / "seed0" / "eval_after", "t")["target"] == 1.0
    assert len(to_jsonl([{"completion": completion}]).splitlines()) == 1  # and the writer now escapes them


def test_an_interrupted_study_invocation_shows_in_the_wall_time_table(tmp_path):
    from rlsft.verdicts.report import study_sessions

    t1, t2, t3 = "2026-11-30T17:00:00Z", "2026-11-30T18:00:00Z", "2026-11-30T18:05:00Z"
    rows = [{"started_utc": t1, "jobs": 2, "torch_threads_per_run": 1, "runs_trained": 10, "runs_skipped": 0, "wall_seconds": None},
            {"started_utc": t2, "jobs": 2, "torch_threads_per_run": 1, "runs_trained": 4, "runs_skipped": 6, "wall_seconds": None},
            {"started_utc": t2, "jobs": 2, "torch_threads_per_run": 1, "runs_trained": 4, "runs_skipped": 6, "wall_seconds": 600.0},
            {"started_utc": t3, "jobs": 1, "torch_threads_per_run": 1, "runs_trained": 1, "runs_skipped": 0, "wall_seconds": None}]
    (tmp_path / "sessions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = [line for line in study_sessions([str(tmp_path)]) if line.startswith("| 2026")]
    # t1 was interrupted before t2 started, as far as anyone can tell; t3 started while t2 ran (t2: 10 min from 18:00)
    assert table == [f"| {t1} | 2 | 1 | 10 | 0 | interrupted | - |", f"| {t2} | 2 | 1 | 4 | 6 | 10.0 | {t3} |",
                     f"| {t3} | 1 | 1 | 1 | 0 | interrupted | {t2} |"]


def test_the_costs_say_how_the_records_count_flops_and_when_they_count_differently(tmp_path):
    """A record says what its FLOPs count (`flops_formula`; older records: every parameter as N);
    runs that count differently are flagged rather than set side by side silently."""
    from rlsft.runs.compute import FLOPS_FORMULA
    from rlsft.runs.record import OLD_FLOPS_FORMULA
    from rlsft.verdicts.report import cost_table

    fake_run(tmp_path / "zero" / "seed0", 0, False, True)
    fake_run(tmp_path / "zero" / "seed1", 1, False, True)
    runs = RunFolder.find([str(tmp_path)])
    about = cost_table(load_results(runs, "t", "zero"))[2]
    assert OLD_FLOPS_FORMULA in about and "do not compare" not in about
    record = json.loads((tmp_path / "zero" / "seed1" / "run.json").read_text())
    record["compute"]["flops_formula"] = FLOPS_FORMULA
    (tmp_path / "zero" / "seed1" / "run.json").write_text(json.dumps(record))
    about = cost_table(load_results(RunFolder.find([str(tmp_path)]), "t", "zero"))[2]
    assert "do not compare" in about and FLOPS_FORMULA in about and OLD_FLOPS_FORMULA in about


def test_a_claim_across_prompt_forms_is_flagged(tmp_path):
    """An arm evaluated with a `<think>` prefill against one evaluated without: the report says the
    estimate holds the prompt form's effect, naming both forms; same forms say nothing."""
    from rlsft.verdicts.claims import Claim, Verdict
    from rlsft.verdicts.report import form_mismatches

    for arm, prefill in (("zero", True), ("sft", False)):
        fake_run(tmp_path / arm / "seed0", 0, False, True)
        record = json.loads((tmp_path / arm / "seed0" / "run.json").read_text())
        record["config"]["data"] = {"template": "r1-zero", "think_prefill": prefill}
        (tmp_path / arm / "seed0" / "run.json").write_text(json.dumps(record))
    forms = load_results(RunFolder.find([str(tmp_path)]), "t", "zero")["forms"]
    assert forms == {"zero": {"r1-zero, <think> prefilled"}, "before:zero": {"r1-zero, <think> prefilled"},
                     "base": {"r1-zero, <think> prefilled"}, "sft": {"r1-zero"}, "before:sft": {"r1-zero"}}
    claims = {"A": Claim("A", "sft beats the base", "accuracy", "sft", "base", "greater"),
              "B": Claim("B", "zero beats the base", "accuracy", "zero", "base", "greater")}
    verdicts = [Verdict(c, "inconclusive", 0.0, None, None, 1, 1) for c in claims]
    lines = form_mismatches(verdicts, claims, forms)
    assert len([line for line in lines if line]) == 1 and "**A compares" in lines[0]
    assert "sft under r1-zero, base under r1-zero, <think> prefilled" in lines[0]


def test_seeds_of_one_arm_that_ran_different_configs_are_flagged(tmp_path):
    """A study whose overrides changed after some runs finished: the report says where the seeds
    of the arm differ (run names, seeds and folders differ by design and are not compared)."""
    import yaml

    from rlsft.verdicts.report import config_mismatches

    for seed, steps in ((0, 20), (1, 20), (2, 40)):
        folder = tmp_path / "zero" / f"seed{seed}"
        fake_run(folder, seed, False, True)
        (folder / "config.yaml").write_text(yaml.safe_dump({"run": {"name": f"zero-{seed}", "seed": seed}, "training": {"max_steps": steps}}))
    results = load_results(RunFolder.find([str(tmp_path)]), "t", "zero")
    assert config_mismatches(results) == [("zero", 1, ["training.max_steps"])]
    (tmp_path / "zero" / "seed2" / "config.yaml").write_text(yaml.safe_dump({"run": {"seed": 2}, "training": {"max_steps": 20}}))
    assert config_mismatches(load_results(RunFolder.find([str(tmp_path)]), "t", "zero")) == []
    # the same config on 8 processes trains 8x the completions a step (TRL's batch sizes are per process)
    record = json.loads((tmp_path / "zero" / "seed1" / "run.json").read_text())
    record.setdefault("compute", {})["processes"] = 8
    (tmp_path / "zero" / "seed1" / "run.json").write_text(json.dumps(record))
    assert config_mismatches(load_results(RunFolder.find([str(tmp_path)]), "t", "zero")) == [("zero", 1, ["launch.processes"])]


def test_a_change_under_reports_leaves_the_commit_clean(tmp_path):
    """A study archiving into a committed archive (`--archive reports/NAME/runs`) changes tracked
    files as it runs; its later runs recorded `-dirty` and the report refused them as mixed."""
    import subprocess

    from rlsft.runs.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports" / "s" / "runs").mkdir(parents=True)
    (tmp_path / "reports" / "s" / "runs" / "sessions.jsonl").write_text("{}\n")
    (tmp_path / "rlsft").mkdir()
    (tmp_path / "rlsft" / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    (tmp_path / "reports" / "s" / "runs" / "sessions.jsonl").write_text("{}\n{}\n")
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "rlsft" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("-dirty")
