"""A sweep picks its setting by its preregistered rule, and never a no-op on a tie within noise."""

import json

from rlsft.verdicts.sweep import SweepRule, choose

N = 64  # problems; 4 samples each (one sample's step: 0.25)


def scores(correct_first: int, seeds=(0,)) -> dict[int, dict[str, float]]:
    """{seed: {problem: accuracy}}: one sample right on each of the first `correct_first` problems."""
    return {s: {f"q{i}": 0.25 * (i < correct_first) for i in range(N)} for s in seeds}


RULE = SweepRule(metric="accuracy_lenient", margin=0.02, prefer=["lr3e-6@20", "lr1e-5@20", "lr3e-6@40", "lr1e-5@40"],
                 fallback="lr1e-5@40")


def test_a_tie_within_noise_of_the_base_takes_the_fallback_not_the_smallest_dose():
    """The real SmolLM2 sweep's pattern: every candidate within one correct answer in 256 of the base.
    The old rule (best, then fewer steps, then the lower rate) took lr3e-6@20 by construction."""
    base = scores(4)
    tie = {"lr3e-6@20": scores(1), "lr1e-5@20": scores(1), "lr3e-6@40": scores(1), "lr1e-5@40": scores(0)}
    c = choose(RULE, tie, base, unit=0.25)
    assert c.chosen == "lr1e-5@40" and not c.separated
    assert "no candidate separates from the base" in c.line and "fallback lr1e-5@40" in c.line and "\n" not in c.line
    assert not any(r["separates"] for r in c.rows) and len(c.rows) == 4
    assert choose(SweepRule(prefer=RULE.prefer), tie, base, 0.25).chosen is None  # no fallback written: nothing chosen, said so


def test_a_candidate_with_no_seed_shared_with_the_base_is_missing_not_a_crash():
    base = scores(0)
    c = choose(RULE, {"lr1e-5@20": scores(40), "lr1e-5@40": scores(60, seeds=(7,))}, base, unit=0.25)
    assert c.chosen == "lr1e-5@20" and c.rows[1]["estimate"] is None and not c.rows[1]["separates"]
    c = choose(RULE, {"lr1e-5@40": scores(60, seeds=(7,))}, base, unit=0.25)
    assert c.chosen == "lr1e-5@40" and not c.separated and "missing (no seed shared with the base)" in c.line


def test_candidates_that_separate_are_ranked_and_ties_among_them_go_to_prefer():
    base = scores(0)
    sweep = {"lr3e-6@20": scores(1), "lr1e-5@20": scores(40), "lr3e-6@40": scores(41), "lr1e-5@40": scores(60)}
    c = choose(RULE, sweep, base, unit=0.25)
    assert c.chosen == "lr1e-5@40" and c.separated  # the best by far
    close = {**sweep, "lr1e-5@40": scores(42)}  # 0.164 vs 0.160 and 0.156: a tie within 0.02
    c = choose(RULE, close, base, unit=0.25)
    assert c.chosen == "lr1e-5@20" and "ties within 0.02" in c.line  # first in prefer among the tied; lr3e-6@20 never separated
    assert [r["separates"] for r in c.rows] == [False, True, True, True]


def test_a_sweep_study_reports_its_choice(tmp_path):
    """Through `make_report` with the study's `choose:`: the section, its one line, and sweep.json."""
    from rlsft.verdicts.report import make_report

    for arm, (mid, end) in {"lr3e-6": (1, 1), "lr1e-5": (1, 0)}.items():
        run = tmp_path / "runs" / arm / "seed0"
        rows = {"eval_before/t": 4, "eval_after/t": end, "eval_curve/step-20/t": mid}
        for where, k in rows.items():
            (run / where).mkdir(parents=True)
            lines = [json.dumps({"id": f"q{i}", "question": "q", "completion": "<answer>1</answer>", "correct": i < k and j == 0,
                                 "correct_lenient": i < k and j == 0, "mixed": False, "format_ok": True, "length": 5})
                     for i in range(N) for j in range(4)]
            (run / where / "samples.jsonl").write_text("\n".join(lines) + "\n")
        record = {"recipe": "grpo", "config": {"run": {"seed": 0}, "training": {"max_steps": 40}},
                  "compute": {"flops": 1e12, "wall_seconds": 60.0, "device": "cpu"}, "provenance": {"git_commit": "abc"},
                  "curve": [{"step": 20, "pflops": 0.0005, "pass@1": 0.0}, {"step": "final", "pflops": 0.001, "pass@1": 0.0}]}
        (run / "run.json").write_text(json.dumps(record))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.1}) + "\n")
    out = make_report([str(tmp_path / "runs")], str(tmp_path / "report"), task="t", choose=RULE)
    text = (out / "report.md").read_text()
    choice = json.loads((out / "sweep.json").read_text())
    assert choice["chosen"] == "lr1e-5@40" and not choice["separated"]
    assert "## Sweep choice" in text and choice["line"] in text
    assert {r["candidate"] for r in choice["rows"]} == {"lr3e-6@20", "lr3e-6@40", "lr1e-5@20", "lr1e-5@40"}


def test_a_choose_rule_naming_an_unknown_candidate_is_refused_before_anything_runs(tmp_path):
    import pytest
    import yaml
    from conftest import REPO

    from rlsft.config import load_config
    from rlsft.io import UserError
    from rlsft.studies.study import StudyConfig, plan

    study = {"name": "s", "recipes": {"lr1e-5": str(REPO / "configs" / "micro" / "r1_zero.yaml")},
             "choose": {"fallback": "lr3e-5@40"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(UserError, match="choose names 'lr3e-5@40'"):
        plan(load_config(StudyConfig, str(tmp_path / "s.yaml")), "s.yaml")
