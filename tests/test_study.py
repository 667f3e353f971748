"""`rlsft study` and `rlsft report` end to end: two recipes x two seeds, a few steps each, on CPU."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_prerequisite, tiny_recipe_overrides

from rlsft.cli import main as cli_main

MICRO = REPO / "configs" / "micro"
VERDICTS = {"reproduced", "not reproduced", "inconclusive", "pilot", "unmatched"}


def test_two_recipe_two_seed_study_and_its_report(toy_model, upstream_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ and reports/ land here
    monkeypatch.setenv("RLSFT_DATA", str(upstream_data))  # GSM8K in its upstream format, for the transfer measurement
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {
        "name": "tiny-study",
        "seeds": [0, 1],
        "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml"), "sft": str(MICRO / "sft_cold_start.yaml")},
        "overrides": common,
        "arm_overrides": {
            "r1_zero": ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"],
            "sft": ["examples.n=16"],
        },
        "base_arm": "r1_zero",
        "claims": [
            {"id": "C1", "text": "RL beats the base", "metric": "accuracy", "arm": "r1_zero", "against": "base",
             "direction": "greater", "threshold": 0.0},
            {"id": "M", "text": "SFT mixes less than RL", "metric": "mixing", "arm": "sft", "against": "r1_zero",
             "direction": "less", "threshold": 0.0},
        ],
        "knobs_changed_after_results": ["nothing, this is a test"],
        "scope": ["a toy model shows nothing about real models"],
        "transfer": [{"task": "gsm8k", "n": 3, "samples": 2, "max_new_tokens": 8, "seeds": [1]}],
    }
    study["prerequisites"] = [tiny_prerequisite(toy_model, tmp_path)]  # trained once
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    from rlsft.studies import study as study_module

    resets, reset = [], study_module.reset_peak_memory  # each in-process run's peak memory is its own
    monkeypatch.setattr(study_module, "reset_peak_memory", lambda: (resets.append(1), reset()))

    assert cli_main(["study", str(path), "--report", "reports/tiny", "--allow-mixed-commits"]) == 0  # a dev tree may be dirty
    assert len(resets) == 5  # the prerequisite and the 4 runs
    printed = capsys.readouterr().out
    root = tmp_path / "runs" / "studies" / "tiny-study"
    # blind: the transfer lines say what was measured, not its figures, which only the report reads
    transfer_lines = [line for line in printed.splitlines() if "transfer:" in line]
    assert len(transfer_lines) == 6 and not any("pass@" in line for line in transfer_lines)
    assert os.environ.get("RLSFT_BLIND") is None  # the study's blindness ends with it
    for arm in ("r1_zero", "sft"):
        for seed in (0, 1):
            record = json.loads((root / arm / f"seed{seed}" / "run.json").read_text())
            assert record["config"]["run"]["seed"] == seed
            # wandb: the study is the group, arm/seed the run's name, so the arms sit side by side
            assert record["config"]["run"]["group"] == "tiny-study" and record["config"]["run"]["name"] == f"{arm}/seed{seed}"
            job = json.loads((root / arm / f"seed{seed}" / "job.json").read_text())  # in process, timed like a worker's run
            assert job["command"] == "in process" and job["exit_code"] == 0 and job["started_utc"] <= job["ended_utc"]

    assert (tmp_path / "pre" / "run.json").is_file()
    report = tmp_path / "reports" / "tiny"
    text = (report / "report.md").read_text()
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert [v["claim"] for v in verdicts] == ["C1", "M"] and {v["verdict"] for v in verdicts} <= VERDICTS
    for v in verdicts:  # the numbers behind each verdict are in the table
        assert v["claim"] in text and v["verdict"] in text
    assert "nothing, this is a test" in text  # knobs changed after results are listed
    assert "## What this study can and cannot show" in text and "- a toy model shows nothing about real models" in text
    assert {"final_vs_pflops.png", "curve_loss.png"} <= {p.name for p in report.iterdir()}
    assert all(p.stat().st_size > 10_000 for p in report.glob("*.png"))  # real plots, not empty files
    for arm in ("r1_zero", "sft"):
        assert f"| {arm} | 2 |" in text  # both seeds in the final table
    # the checkpoint table reads strict and lenient pass@1 from each run's own evaluation of its end
    final_row = next(line for line in text.splitlines() if line.startswith("| r1_zero | final | 2 |")).strip("| ").split(" | ")
    after = [json.loads((root / "r1_zero" / f"seed{s}" / "eval_after" / "micro-arith" / "metrics.json").read_text())["metrics"] for s in (0, 1)]
    assert float(final_row[5]) == pytest.approx(sum(m["pass@1_lenient"]["value"] for m in after) / 2, abs=1e-3)  # printed to 3 decimals
    assert float(final_row[4]) == pytest.approx(sum(m["pass@1"]["value"] for m in after) / 2, abs=1e-3)  # printed to 3 decimals

    # transfer: each arm's final model of seed 1 and the base, on GSM8K, after every run finished
    for out in (root / "r1_zero" / "seed1" / "eval_transfer" / "gsm8k", root / "sft" / "seed1" / "eval_transfer" / "gsm8k",
                root / "r1_zero" / "seed1" / "eval_transfer_before" / "gsm8k"):
        m = json.loads((out / "metrics.json").read_text())
        assert (m["task"], m["n_problems"], m["samples_per_problem"], m["max_new_tokens"], m["seed"]) == ("gsm8k", 3, 2, 8, 1)
    assert json.loads((root / "sft" / "seed1" / "eval_transfer" / "gsm8k" / "metrics.json").read_text())["model"].endswith("model")
    assert not (root / "r1_zero" / "seed0" / "eval_transfer").exists()  # seed 0 not listed
    transfer = text[text.index("## Transfer to gsm8k"):].split("\n## ")[0]
    assert [line.split(" | ")[:2] for line in transfer.splitlines() if line.startswith("| ") and "---" not in line][1:] == \
        [["| base", "1"], ["| r1_zero", "1"], ["| sft", "1"]]

    # a rerun skips every finished run and writes the same verdicts
    capsys.readouterr()
    assert cli_main(["study", str(path), "--report", "reports/tiny2", "--allow-mixed-commits"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished before, skipped") == 5 and "transfer:" not in out  # 4 runs and the prerequisite; transfers kept
    again = json.loads((tmp_path / "reports" / "tiny2" / "verdicts.json").read_text())
    assert [(v["claim"], v["verdict"]) for v in again] == [(v["claim"], v["verdict"]) for v in verdicts]


def test_study_with_two_jobs_runs_each_seed_in_its_own_one_thread_process(toy_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": "jobs-study", "seeds": [0, 1], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")},
             "overrides": common + ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert cli_main(["study", str(path), "--jobs", "2", "--report", "reports/jobs", "--allow-mixed-commits"]) == 0
    root = tmp_path / "runs" / "studies" / "jobs-study"
    cores = os.cpu_count()
    for seed in (0, 1):
        record = json.loads((root / "r1_zero" / f"seed{seed}" / "run.json").read_text())
        assert record["config"]["run"]["seed"] == seed
        assert record["compute"]["device"] == f"cpu, {max(1, cores // 2)} threads per process"
        log = (root / "logs" / f"r1_zero-seed{seed}.log").read_text()
        assert '"compute"' in log and "eval_after" not in log  # the run's own output, blind: no held-out figure
    start, end = [json.loads(x) for x in (root / "sessions.jsonl").read_text().splitlines()]  # written at start and at end
    assert start["started_utc"] == end["started_utc"] and start["wall_seconds"] is None
    assert end["jobs"] == 2 and end["runs_trained"] == 2 and end["wall_seconds"] > 0
    text = (tmp_path / "reports" / "jobs" / "report.md").read_text()
    assert "| r1_zero | 2 |" in text and "## Study wall time" in text


def test_study_jobs_must_be_positive(tmp_path):
    with pytest.raises(SystemExit) as e:
        cli_main(["study", str(tmp_path / "x.yaml"), "--jobs", "0"])
    assert e.value.code == 2


def test_a_failed_run_under_jobs_stops_the_study_with_one_line_naming_its_log(toy_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1 + 1?", "answer": "#### 2"}\nnot json\n')  # found at validation, broken when read
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": "bad-study", "seeds": [0, 1], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")},
             "overrides": common + ["data.task=gsm8k", f"data.source={bad}", "eval.before=false"]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert cli_main(["study", str(path), "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 study run(s) failed" in err and "bad-study/logs/r1_zero-seed" in err
    log = tmp_path / "runs" / "studies" / "bad-study" / "logs" / "r1_zero-seed0.log"
    assert "bad.jsonl" in log.read_text()  # the run's own one-line error, kept in its log
    assert not (tmp_path / "reports" / "bad-study").exists()  # no report from a failed study


def test_a_pass_at_k_claim_needs_k_samples_where_it_reads_them(tmp_path, capsys):
    """A claim on pass@8 against an arm evaluated with 4 samples a problem after training could
    never be read; the study refuses it before any run, naming the claim, arm and setting."""
    claim = {"id": "K1", "text": "base at or above RL at k = 8", "metric": "pass@8", "arm": "base", "against": "r1_zero",
             "direction": "greater", "threshold": -0.02}
    study = {"name": "k", "seeds": [0], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")}, "out_dir": str(tmp_path / "runs"),
             "arm_overrides": {"r1_zero": ["eval.samples=4", "eval.before_samples=8"]}, "claims": [claim]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert cli_main(["study", str(path), "--dry-run"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "claim K1 reads pass@8 of 'r1_zero'" in err[0] and "eval.samples to at least 8" in err[0]
    study["arm_overrides"]["r1_zero"] = ["eval.samples=8", "eval.before_samples=4"]  # now the base side is short
    path.write_text(yaml.safe_dump(study))
    assert cli_main(["study", str(path), "--dry-run"]) != 0
    assert "eval.before_samples to at least 8" in capsys.readouterr().err
    study["arm_overrides"]["r1_zero"] = ["eval.samples=8"]  # before_samples defaults to samples: both sides have 8
    path.write_text(yaml.safe_dump(study))
    assert cli_main(["study", str(path), "--dry-run"]) == 0
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_a_study_goes_on_from_its_archive_on_a_new_machine(toy_model, upstream_data, tmp_path, capsys, monkeypatch):
    """`--only` runs part of a study; `--archive` keeps each finished run (weights left out, its
    transfer measured first, on its worker) where the next machine restores it from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLSFT_DATA", str(upstream_data))
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": "arch-study", "seeds": [0, 1], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")},
             "overrides": common + ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8",
                                    "probe.prompts=2", "probe.force=true"],
             "claims": [{"id": "C1", "text": "RL beats the base", "metric": "accuracy", "arm": "r1_zero", "against": "base",
                         "direction": "greater", "threshold": 0.0}],
             "transfer": [{"task": "gsm8k", "n": 2, "samples": 1, "max_new_tokens": 8, "seeds": [0]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    archive, root = tmp_path / "reports" / "arch-study" / "runs", tmp_path / "runs" / "studies" / "arch-study"  # the report's evidence, beside it

    assert cli_main(["study", str(path), "--only", "r1_zero:0", "--archive", str(archive), "--jobs", "2", "--allow-mixed-commits"]) == 0
    out = capsys.readouterr().out
    assert "the report waits until every run has finished" in out and not list((tmp_path / "reports").rglob("report.md"))
    assert not (root / "r1_zero" / "seed1").exists()  # not selected
    kept = archive / "r1_zero" / "seed0"
    assert (kept / "run.json").is_file() and (root / "r1_zero" / "seed0" / "model").is_dir()
    assert not (kept / "model").exists() and not (kept / "checkpoints").exists()  # weights left out
    for sub in ("eval_transfer", "eval_transfer_before"):  # measured on the worker before the run was archived
        assert json.loads((kept / sub / "gsm8k" / "metrics.json").read_text())["n_problems"] == 2
    log = (archive / "logs" / "r1_zero-seed0.log").read_text()
    assert "-m rlsft.cli eval --model" in log and "--task gsm8k" in log  # the transfer's own command, in the run's log
    assert "eval_after" not in log and "pass@1" not in log and "heldout/" not in log  # blind: the worker printed no held-out figure
    assert len((archive / "sessions.jsonl").read_text().splitlines()) == 2

    import shutil

    shutil.rmtree(tmp_path / "runs")  # a new machine: only the archive is left
    assert cli_main(["study", str(path), "--status"]) == 0
    assert "| r1_zero | 0 | not started |" in capsys.readouterr().out  # the folder alone knows nothing
    assert cli_main(["study", str(path), "--status", "--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "| r1_zero | 0 | done (archive) |" in out and "| r1_zero | 1 | not started |" in out and "1/2 done" in out
    assert not (tmp_path / "runs" / "studies" / "arch-study" / "r1_zero").exists()  # a status restores nothing
    # the study's own report goes to reports/arch-study/ (the default), around the archive it did not read
    assert cli_main(["study", str(path), "--archive", str(archive), "--allow-mixed-commits"]) == 0
    out = capsys.readouterr().out
    assert "r1_zero seed 0: restored from" in out and "r1_zero seed 0: finished before, skipped" in out
    assert "transfer: base" not in out  # the restored run's measurements came with it
    assert (archive / "r1_zero" / "seed1" / "run.json").is_file() and not (archive / "r1_zero" / "seed1" / "model").exists()
    assert (archive / "r1_zero" / "seed0" / "run.json").is_file() and (archive / "sessions.jsonl").is_file()  # kept by the report
    assert "| r1_zero | 2 |" in (tmp_path / "reports" / "arch-study" / "report.md").read_text()
    # the archive alone is a study folder the report reads, and a report written around it keeps it, each time
    kept = sorted(p.relative_to(archive) for p in archive.rglob("*"))
    for _ in range(2):
        assert cli_main(["report", str(archive), "--out", "reports/arch-study", "--allow-mixed-commits"]) == 0
        text = (tmp_path / "reports" / "arch-study" / "report.md").read_text()
        assert "| r1_zero | 2 |" in text and "## Study wall time" in text
        assert sorted(p.relative_to(archive) for p in archive.rglob("*")) == kept
    capsys.readouterr()
    assert cli_main(["report", str(archive), "--out", str(archive), "--allow-mixed-commits"]) == 2  # never into the folder it reads
    assert "is a folder the report reads" in capsys.readouterr().err and (archive / "r1_zero" / "seed0" / "run.json").is_file()

    assert cli_main(["study", str(path), "--only", "sft"]) == 2  # an arm the study does not have: one line naming it
    assert "--only sft: no such run in the study" in capsys.readouterr().err


def test_a_lora_run_longer_than_a_sitting_goes_on_from_its_archive_on_a_new_machine(tmp_path, capsys, monkeypatch):
    """A run stopped mid-study on a machine that does not outlive the sitting: `--keep-unfinished`
    keeps its newest checkpoint (LoRA's adapters and their Adam moments) and its evaluations in the
    archive; on a new machine `--archive` restores it and the run resumes from that checkpoint to
    every figure of the run that was never stopped. micro-student earns rewards, so the adapters
    and their moments move every step."""
    from test_resume import GRPO_TINY, Killed, killed_at, step_metrics

    import rlsft.studies.study

    common = [o for o in tiny_recipe_overrides("micro-student", tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": "lora-study", "seeds": [0], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")},
             "overrides": common + GRPO_TINY + ["training.max_steps=8", "training.save_steps=4", "grpo.max_completion_length=48",
                                                "model.lora_r=1", "training.learning_rate=1.0e-3", "eval.curve_steps=[6]"]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    run = Path("runs") / "studies" / "lora-study" / "r1_zero" / "seed0"
    for where in (whole, stopped):
        where.mkdir()
    monkeypatch.chdir(whole)
    assert cli_main(["study", str(path), "--allow-mixed-commits"]) == 0  # the run never stopped

    monkeypatch.chdir(stopped)
    archive = stopped / "archive"
    with pytest.MonkeyPatch.context() as m:
        killed_at(m, 7)  # after checkpoint-4 and the step-6 curve point
        with pytest.raises(Killed):
            cli_main(["study", str(path), "--archive", str(archive)])
    with pytest.MonkeyPatch.context() as m:  # a state over the limit is refused whole: nothing written
        m.setattr(rlsft.studies.study, "UNFINISHED_LIMIT_MB", 0.001)
        assert cli_main(["study", str(path), "--archive", str(archive), "--keep-unfinished"]) == 2
        assert "over the 0.001 MB an archive keeps" in capsys.readouterr().err and not (archive / "r1_zero").exists()
    assert cli_main(["study", str(path), "--keep-unfinished"]) == 2
    assert "--keep-unfinished needs --archive" in capsys.readouterr().err
    assert cli_main(["study", str(path), "--archive", str(archive), "--keep-unfinished"]) == 0
    assert "r1_zero seed 0: unfinished, kept in" in capsys.readouterr().out
    kept = archive / "r1_zero" / ".seed0.unfinished"
    assert [c.name for c in (kept / "checkpoints").iterdir()] == ["checkpoint-4"]
    record = json.loads((kept / "job.json").read_text())  # its sitting timed here and closed: no start or pid for a new machine to misread
    assert record["started_utc"] is None and record["pid"] is None and 0 < record["earlier_seconds"] < 600
    assert (kept / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()  # the adapters, not the model
    assert (kept / "checkpoints" / "checkpoint-4" / "optimizer.pt").is_file() and not (kept / "model").exists()
    assert not [f for f in kept.rglob("*") if f.name in rlsft.studies.study.TOKENIZER_FILES]
    assert (kept / "eval_curve" / "step-6").is_dir()  # made in the stopped sitting: kept
    assert cli_main(["report", str(archive), "--out", str(stopped / "report"), "--allow-mixed-commits"]) == 2  # not a run to report
    capsys.readouterr()

    import shutil

    shutil.rmtree(stopped / "runs")  # a new machine: only the archive is left
    assert cli_main(["study", str(path), "--archive", str(archive), "--allow-mixed-commits"]) == 0
    out = capsys.readouterr().out
    assert "r1_zero seed 0: restored unfinished from" in out and "(checkpoint-4)" in out
    resumed, reference = step_metrics(stopped / run), step_metrics(whole / run)
    assert [r["step"] for r in resumed] == list(range(1, 9)) and any(r["grad_norm"] > 0 for r in reference[4:])
    assert resumed == reference
    r_stopped, r_whole = (json.loads((where / run / "run.json").read_text()) for where in (stopped, whole))
    assert r_stopped["eval_after"] == r_whole["eval_after"]
    # the curve point made in the stopped sitting is read back, not made again (eval_seconds: this sitting's, not training time)
    assert [{k: v for k, v in p.items() if k != "eval_seconds"} for p in r_stopped["curve"]] == \
        [{k: v for k, v in p.items() if k != "eval_seconds"} for p in r_whole["curve"]]
    assert json.loads((stopped / run / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 4
    # --status times the whole job: the stopped sitting (to its newest checkpoint) is carried on
    assert 0 < json.loads((stopped / run / "job.json").read_text())["earlier_seconds"] < 600
    assert (archive / "r1_zero" / "seed0" / "run.json").is_file() and not kept.exists()  # finished: archived, its sitting's state gone


def test_a_runs_log_goes_with_it_and_a_restore_keeps_this_machines(tmp_path):
    """`copy_log` copies `logs/<arm>-seed<k>.log` from one study folder to another: into the archive
    it replaces the older copy; back from the archive (replace=False) it never overwrites a log here."""
    from rlsft.studies.study import Job, copy_log

    job = Job(label="1/1 r1_zero seed 3", arm="r1_zero", seed=3, config="c.yaml", overrides=[], folder=str(tmp_path / "run"))
    here, archive = tmp_path / "here", tmp_path / "archive"
    (here / "logs").mkdir(parents=True)
    (here / "logs" / "r1_zero-seed3.log").write_text("sitting 1\n")
    copy_log(job, here, archive)
    assert (archive / "logs" / "r1_zero-seed3.log").read_text() == "sitting 1\n"
    (here / "logs" / "r1_zero-seed3.log").write_text("sitting 1\nsitting 2\n")
    copy_log(job, here, archive)  # the archive's copy is replaced by the longer log
    assert (archive / "logs" / "r1_zero-seed3.log").read_text() == "sitting 1\nsitting 2\n"
    (here / "logs" / "r1_zero-seed3.log").write_text("this machine's\n")
    copy_log(job, archive, here, replace=False)
    assert (here / "logs" / "r1_zero-seed3.log").read_text() == "this machine's\n"
    copy_log(job, archive, tmp_path / "new", replace=False)  # a new machine has none: restored
    assert (tmp_path / "new" / "logs" / "r1_zero-seed3.log").read_text() == "sitting 1\nsitting 2\n"
    copy_log(Job(label="sft", arm="sft", seed=0, config="c.yaml", overrides=[], folder="x"), here, archive)  # no log: nothing copied, no error
    assert not (archive / "logs" / "sft-seed0.log").exists()


def test_a_half_copied_archive_entry_is_not_a_run(tmp_path):
    """`archive_run` copies into `.seed<k>.partial` and renames; a copy killed half-way is never read as a run."""
    from rlsft.runs.folder import RunFolder

    for name in ("seed0", ".seed1.partial"):
        (tmp_path / "arm" / name).mkdir(parents=True)
        (tmp_path / "arm" / name / "run.json").write_text("{}")
    assert [r.path.name for r in RunFolder.find([tmp_path])] == ["seed0"]


def test_a_study_reads_its_own_task_not_micro_arith(tmp_path, capsys):
    """A study evaluated on GSM8K reports GSM8K: `task:` names it, else the base arm's first eval task;
    `rlsft report --claims` reads that task where it is given none."""
    from test_report import fake_run

    from rlsft.config import from_dict
    from rlsft.studies.study import StudyConfig, study_task

    recipes = {"r1_zero": str(MICRO / "r1_zero.yaml")}
    assert study_task(from_dict(StudyConfig, {"name": "s", "recipes": recipes})) == "micro-arith"
    assert study_task(from_dict(StudyConfig, {"name": "s", "recipes": recipes, "overrides": ["eval.tasks=[gsm8k]"]})) == "gsm8k"
    assert study_task(from_dict(StudyConfig, {"name": "s", "recipes": recipes, "task": "micro-countdown"})) == "micro-countdown"

    for seed in (0, 1, 2):  # samples written under gsm8k/ only
        run = tmp_path / "runs" / "r1_zero" / f"seed{seed}"
        fake_run(run, seed, before_correct=False, after_correct=True)
        for which in ("eval_before", "eval_after"):
            (run / which / "t").rename(run / which / "gsm8k")
        record = json.loads((run / "run.json").read_text())
        record.update(recipe="grpo", provenance={"git_commit": "abc"})
        record["compute"]["device"] = "cpu"
        (run / "run.json").write_text(json.dumps(record))
    study = {"name": "gsm", "recipes": recipes, "overrides": ["eval.tasks=[gsm8k]"],
             "claims": [{"id": "G", "text": "RL beats the base on GSM8K", "metric": "accuracy", "arm": "r1_zero", "against": "base",
                         "direction": "greater"}]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert cli_main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--claims", str(tmp_path / "study.yaml")]) == 0
    (verdict,) = json.loads((tmp_path / "report" / "verdicts.json").read_text())
    assert verdict["n_seeds"] == 3 and verdict["n_problems"] == 1 and "missing" not in verdict["detail"]
    assert "task `gsm8k`" in (tmp_path / "report" / "report.md").read_text()


def test_a_finished_run_whose_transfer_was_not_made_goes_on_from_its_archive(toy_model, upstream_data, tmp_path, capsys, monkeypatch):
    """A machine that ends while a finished run waits for its `transfer:` measurement: the run is
    not yet archived (its model is needed), so `--keep-unfinished` keeps it at its last step's
    checkpoint, without its run.json; on a new machine it finishes from there with no step more
    and its evaluation after training kept, then makes its transfer and is archived."""
    import shutil

    import rlsft.studies.study

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLSFT_DATA", str(upstream_data))
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": "wait-study", "seeds": [0], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")},
             "overrides": common + ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8",
                                    "probe.prompts=2", "probe.force=true"],
             "transfer": [{"task": "gsm8k", "n": 2, "samples": 1, "max_new_tokens": 8, "seeds": [0]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    archive, run = tmp_path / "archive", tmp_path / "runs" / "studies" / "wait-study" / "r1_zero" / "seed0"

    from test_resume import Killed

    def killed(*a, **kw):
        raise Killed

    with pytest.MonkeyPatch.context() as m:  # the machine ends as the transfer starts
        m.setattr(rlsft.studies.study, "evaluate", killed)
        with pytest.raises(Killed):
            cli_main(["study", str(path), "--archive", str(archive)])
    assert (run / "run.json").is_file() and not (archive / "r1_zero" / "seed0").exists()  # finished, not archived
    record, metrics = json.loads((run / "run.json").read_text()), (run / "metrics.jsonl").read_text()
    with pytest.MonkeyPatch.context() as m:  # over the limit (a full fine-tuning model): left out alone, with a line
        m.setattr(rlsft.studies.study, "UNFINISHED_LIMIT_MB", 0.001)
        assert cli_main(["study", str(path), "--archive", str(archive), "--keep-unfinished"]) == 0
        assert "r1_zero seed 0: finished, its transfer not made, not kept" in capsys.readouterr().out
        assert not (archive / "r1_zero" / ".seed0.unfinished").exists()
    assert cli_main(["study", str(path), "--archive", str(archive), "--keep-unfinished"]) == 0
    assert "r1_zero seed 0: finished, its transfer not made, kept in" in capsys.readouterr().out
    kept = archive / "r1_zero" / ".seed0.unfinished"
    last = f"checkpoint-{record['config']['training']['max_steps']}"
    assert [c.name for c in (kept / "checkpoints").iterdir()] == [last]
    assert not (kept / "run.json").exists() and not (kept / "model").exists() and (kept / "eval_after").is_dir()

    shutil.rmtree(tmp_path / "runs")  # a new machine: only the archive is left
    assert cli_main(["study", str(path), "--archive", str(archive), "--allow-mixed-commits"]) == 0
    out = capsys.readouterr().out
    assert "r1_zero seed 0: restored unfinished from" in out and f"({last})" in out and "transfer: base seed 0 on gsm8k" in out
    again = json.loads((run / "run.json").read_text())
    assert (run / "metrics.jsonl").read_text() == metrics  # no step more
    assert again["eval_after"] == record["eval_after"] and again["compute"]["train_tokens"] == record["compute"]["train_tokens"]
    finished = archive / "r1_zero" / "seed0"
    assert (finished / "run.json").is_file() and not kept.exists()  # archived; the unfinished state removed
    assert json.loads((finished / "eval_transfer" / "gsm8k" / "metrics.json").read_text())["n_problems"] == 2


def test_a_transfer_is_evaluated_as_its_run_is(tmp_path, monkeypatch):
    """A study's `transfer:` measurement takes its run's evaluation settings (sampling, dtype,
    batching, seed, backend, the prompt form as it resolved) and the base's hub revision, with the
    transfer's own problems, samples and token budget on the task's test split."""
    from rlsft.config import from_dict
    from rlsft.studies.study import StudyConfig, plan, transfer_evals

    monkeypatch.chdir(REPO)  # the pipeline names its stages' configs from the repository root
    cfg = from_dict(StudyConfig, {
        "name": "s", "seeds": [2], "recipes": {"r1": "configs/micro/r1.yaml"}, "base_arm": "r1", "out_dir": str(tmp_path / "runs"),
        "overrides": ["model.revision=v1", "model.dtype=float32", "eval.top_p=0.9", "eval.split=validation", "eval.memory_gb=2.5",
                      "eval.backend=transformers"],
        "transfer": [{"task": "gsm8k", "n": 5, "samples": 3, "max_new_tokens": 40, "seeds": [2]}]})
    _, (job,) = plan(cfg)
    assert transfer_evals(cfg, job) == []  # not finished: nothing to measure yet
    last = tmp_path / "runs" / "r1" / "seed2" / "2-grpo"
    last.mkdir(parents=True)
    (last / "run.json").write_text(json.dumps({"config": {"data": {"template": "chat"}}}))  # `auto` as it resolved
    (who, run), (base_who, base) = transfer_evals(cfg, job)
    assert (who, base_who) == ("r1", "base")
    assert run.model == str(last / "model") and run.revision is None  # a saved model has no hub revision
    assert base.model == "micro-student" and base.revision == "v1"
    assert Path(base.out) == tmp_path / "runs" / "r1" / "seed2" / "1-sft_cold_start" / "eval_transfer_before" / "gsm8k"
    for args in (run, base):
        assert (args.task, args.n, args.samples, args.max_new_tokens, args.split) == ("gsm8k", 5, 3, 40, "test")
        assert (args.top_p, args.dtype, args.memory_gb, args.backend, args.seed, args.template) == (0.9, "float32", 2.5, "transformers", 2, "chat")


def test_a_kept_runs_sitting_is_timed_on_its_own_machine(tmp_path):
    """The job.json an archive keeps of an unfinished run carries its sitting, timed where it ran
    (a killed worker's sitting: to its log's last write), and nothing open: on a new machine a
    checkout dates the log to now, which the open record would count as the sitting's end."""
    from rlsft.studies.executors import closed_sitting, earlier_seconds

    log = tmp_path / "r1_zero-seed0.log"
    log.write_text("step 3\n")
    os.utime(log, (1_000_000_100, 1_000_000_100))  # its last write: 100 s after the start below
    record = {"executor": "local", "pid": 4242, "started_utc": "2001-09-09T01:46:40Z", "exit_code": None, "ended_utc": None,
              "earlier_seconds": 30.0, "log": str(log)}
    closed = closed_sitting(record, log)
    assert closed == {**record, "pid": None, "started_utc": None, "earlier_seconds": 130.0}
    os.utime(log, None)  # the new machine's checkout
    assert earlier_seconds(closed, log) == 130.0
    assert earlier_seconds(record, log) > 20 * 365 * 86400  # what the open record would say: the years since the start


def test_a_folder_copy_cut_short_is_never_read_as_done(tmp_path, monkeypatch):
    """`copy_tree_atomic` (restoring an archived run, keeping an unfinished one): a copy killed
    midway leaves the destination as it was, never a run.json without the rest of its run."""
    import shutil

    import pytest

    import rlsft.io
    from rlsft.io import copy_tree_atomic

    src, dst = tmp_path / "archived", tmp_path / "runs" / "seed0"
    (src / "eval_after").mkdir(parents=True)
    (src / "run.json").write_text("{}")
    (src / "eval_after" / "samples.jsonl").write_text("x\n")
    real = shutil.copytree

    def killed(a, b, **kw):  # copies run.json, then dies
        Path(b).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(a) / "run.json", Path(b) / "run.json")
        raise KeyboardInterrupt

    monkeypatch.setattr(rlsft.io.shutil, "copytree", killed)
    with pytest.raises(KeyboardInterrupt):
        copy_tree_atomic(src, dst)
    assert not dst.exists() and [p.name for p in dst.parent.iterdir()] == []  # nothing half-copied, no leftovers
    monkeypatch.setattr(rlsft.io.shutil, "copytree", real)
    dst.mkdir(parents=True)
    (dst / "old.txt").write_text("old")
    copy_tree_atomic(src, dst)  # replacing a folder: the old one goes aside whole, then away
    assert sorted(p.name for p in dst.iterdir()) == ["eval_after", "run.json"] and [p.name for p in dst.parent.iterdir()] == ["seed0"]


def test_an_archived_state_further_along_wins_over_a_stale_one_here(tmp_path, capsys, monkeypatch):
    """A user alternating between machines: this machine's copy of a run stopped at step 4, and
    another took it to step 8 and kept that in the archive. The restore takes the archive's; with
    the roles swapped it keeps this machine's (steps are read from checkpoints, not file times)."""
    from rlsft.config import from_dict
    from rlsft.studies.study import Job, StudyConfig, restore_unfinished, trained_steps, unfinished_folder

    monkeypatch.chdir(tmp_path)
    cfg = from_dict(StudyConfig, {"name": "s", "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml")}})
    job = Job(label="1/1 r1_zero seed 0", arm="r1_zero", seed=0, config="c.yaml", overrides=[], folder=str(tmp_path / "here"))
    archive = tmp_path / "archive"

    def state(folder: Path, step: int) -> None:
        (folder / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (folder / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        (folder / "config.yaml").write_text("run: {}\n")
        (folder / "metrics.jsonl").write_text(json.dumps({"step": step}) + "\n")

    state(Path(job.folder), 4)
    state(unfinished_folder(archive, job), 8)
    assert (trained_steps(Path(job.folder)), trained_steps(unfinished_folder(archive, job))) == (4, 8)
    restore_unfinished(cfg, job, archive)
    assert "further along (8 steps against 4 here)" in capsys.readouterr().out and trained_steps(Path(job.folder)) == 8
    import shutil

    shutil.rmtree(unfinished_folder(archive, job))
    state(unfinished_folder(archive, job), 2)
    restore_unfinished(cfg, job, archive)
    assert "this machine's unfinished run kept" in capsys.readouterr().out and trained_steps(Path(job.folder)) == 8
    shutil.rmtree(unfinished_folder(archive, job))
    state(unfinished_folder(archive, job), 12)
    (Path(job.folder) / "job.json").write_text(json.dumps({"executor": "slurm", "job_id": "7_0", "exit_code": None}))
    restore_unfinished(cfg, job, archive)  # submitted to Slurm and not ended: never swapped under a running job
    assert "(it is running, or submitted to Slurm)" in capsys.readouterr().out and trained_steps(Path(job.folder)) == 8


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="a live process is read from /proc")
def test_a_restore_never_deletes_a_run_that_is_starting(tmp_path, capsys):
    """A run training in another invocation on this machine that has written only its config and
    job.json, still loading or in its pre-flight: the archive's state is not restored over it (its
    folder was deleted under it, and its job.json with it)."""
    import socket
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    from rlsft.studies.executors import read_job_record, write_job_record
    from rlsft.studies.study import Job, restore_unfinished

    run = tmp_path / "run"
    job = Job(label="1/1 r1_zero seed 0", arm="r1_zero", seed=0, config="c.yaml", overrides=[], folder=str(run))
    kept = tmp_path / "archive" / "r1_zero" / ".seed0.unfinished" / "checkpoints" / "checkpoint-4"
    kept.mkdir(parents=True)
    (kept / "trainer_state.json").write_text("{}")
    run.mkdir()
    (run / "config.yaml").write_text("run: {}\n")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "rlsft"])  # another invocation's process
    try:
        for _ in range(100):  # until its command line is readable (empty for a moment after the fork)
            if b"rlsft" in Path(f"/proc/{other.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        write_job_record(run, {"executor": "local", "host": socket.gethostname(), "pid": other.pid})
        restore_unfinished(SimpleNamespace(name="s"), job, tmp_path / "archive")
        assert "not restored" in capsys.readouterr().out
        assert read_job_record(run)["pid"] == other.pid and not (run / "checkpoints").exists()
    finally:
        other.kill()
        other.wait()


def test_keep_unfinished_keeps_a_pipeline_while_no_stage_has_finished(tmp_path, monkeypatch, capsys):
    """A pipeline's config.yaml is its stages': `--keep-unfinished` skipped every pipeline arm,
    without a word. One whose first stage is training is kept; one with a finished stage is not,
    said so, and the other runs are still kept."""
    from rlsft.config import load_config
    from rlsft.studies.study import StudyConfig, keep_unfinished, plan

    monkeypatch.chdir(REPO)  # the pipeline names its stages' configs from the repository root
    study = tmp_path / "p.yaml"
    study.write_text(yaml.safe_dump({"name": "p", "seeds": [0, 1], "recipes": {"r1": "configs/micro/r1.yaml"},
                                     "out_dir": str(tmp_path / "runs")}))
    jobs = plan(load_config(StudyConfig, str(study)), str(study))[1]
    for job in jobs:
        stage = Path(job.folder) / "1-sft_cold_start"
        (stage / "checkpoints" / "checkpoint-4").mkdir(parents=True)
        (stage / "config.yaml").write_text("recipe: sft\n")
        (stage / "metrics.jsonl").write_text('{"step": 4}\n')
        (stage / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (Path(jobs[1].folder) / "1-sft_cold_start" / "run.json").write_text("{}")  # seed 1's first stage finished
    kept = keep_unfinished(str(study), None, str(tmp_path / "archive"))
    out = capsys.readouterr().out
    assert [j.seed for j in kept] == [0] and "a stage has finished" in out
    assert (tmp_path / "archive" / "r1" / ".seed0.unfinished" / "1-sft_cold_start" / "checkpoints" / "checkpoint-4").is_dir()


def test_a_pipeline_arm_gets_the_studys_overrides_after_its_own(tmp_path):
    """The study's overrides reach a pipeline's stages as `stage_overrides`: written with Python's
    repr, they replaced the pipeline's own, doubled a backslash and broke on a value with both quotes."""
    from rlsft.config import from_dict
    from rlsft.studies.study import StudyConfig, run_overrides

    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("recipe: pipeline\nrun: {name: p}\nstage_overrides: ['grpo:training.max_steps=5']\n"
                    "stages:\n  - {config: configs/micro/r1_zero.yaml, name: grpo}\n")
    extra = ["eval.tasks=['micro-arith']", "run.notes=a\\b \"quoted\""]
    cfg = from_dict(StudyConfig, {"name": "s", "seeds": [0], "recipes": {"p": str(pipe)}, "overrides": extra})
    (given,) = [o for o in run_overrides(cfg, "p", 0) if o.startswith("stage_overrides=")]
    assert yaml.safe_load(given.split("=", 1)[1]) == ["grpo:training.max_steps=5", *extra]
