"""Studies beyond one machine without a cluster: `--executor slurm` against fake sbatch, sacct,
squeue, srun and scancel on PATH; the local executor's queue, resumption and status view."""

import json
import os
import shlex
import socket
import stat
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, tiny_prerequisite, tiny_recipe_overrides

from rlsft.cli import main as cli_main
from rlsft.runs.folder import PROGRESS_FILE
from rlsft.studies.executors import (
    ClusterConfig,
    Job,
    StudyElement,
    read_job_record,
    run_local,
    running_elsewhere,
    train_command,
    write_job_record,
)

MICRO = REPO / "configs" / "micro"
RL = ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"]

FAKE = {  # each tool logs its call; sbatch numbers jobs from 1001 and keeps the submitted file
    "sbatch": 'n=$(( $(cat "$FAKE_SLURM/counter" 2>/dev/null || echo 1000) + 1 )); echo $n > "$FAKE_SLURM/counter"; '
              'cp "$1" "$FAKE_SLURM/sbatch-$n.sh"; echo "Submitted batch job $n"',
    "sacct": 'cat "$FAKE_SLURM/sacct" 2>/dev/null; true',
    "squeue": "true",
    "srun": "true",
    "scancel": "true",
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "fake-bin", tmp_path / "fake-slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKE.items():
        tool = bin_dir / name
        tool.write_text(f'#!/bin/bash\necho "{name} $*" >> "$FAKE_SLURM/calls"\n{body}\n')
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    return state


def write_study(tmp_path, toy_model, name="cluster-study", prerequisite=True, cluster=None) -> str:
    common = [o for o in tiny_recipe_overrides(toy_model, tmp_path) if not o.startswith("run.out_dir")]
    study = {"name": name, "seeds": [0, 1], "recipes": {"r1_zero": str(MICRO / "r1_zero.yaml"), "sft": str(MICRO / "sft_cold_start.yaml")},
             "overrides": common, "arm_overrides": {"r1_zero": RL, "sft": ["examples.n=16"]}, "base_arm": "r1_zero",
             "claims": [{"id": "C1", "text": "RL beats the base", "metric": "accuracy", "arm": "r1_zero", "against": "base",
                         "direction": "greater", "threshold": 0.0}]}
    if cluster:
        study["cluster"] = cluster
    if prerequisite:
        study["prerequisites"] = [tiny_prerequisite(toy_model, tmp_path)]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


CLUSTER = {"partition": "gpu", "gpus_per_run": 2, "cpus_per_run": 6, "mem_gb": 48, "timeout_min": 30, "array_parallelism": 3,
           "sbatch": {"constraint": "h100"}, "setup": ["source .venv/bin/activate"]}


def test_slurm_dry_run_prints_the_array_and_every_command_and_submits_nothing(toy_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, toy_model, cluster=CLUSTER)
    assert cli_main(["study", path, "--executor", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-3%3" in out and "#SBATCH --gpus-per-node=2" in out and "#SBATCH --ntasks-per-node=1" in out
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --time=30" in out and "#SBATCH --constraint=h100" in out
    assert "#SBATCH --mem=48GB" in out and "#SBATCH --cpus-per-task=6" in out and "source .venv/bin/activate" in out
    assert "--dependency='afterok:<prerequisite job ids>'" in out  # the array waits for the RL teacher's job
    elements = [line for line in out.splitlines() if line.startswith("# [array ")]
    assert len(elements) == 4
    for line in elements:  # each element is the command a user would type
        assert "accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 2 -m rlsft.cli train" in line
    assert "run.out_dir=runs/studies/cluster-study/sft/seed1" in elements[-1]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "fake-slurm").exists()  # nothing submitted, nothing written


def test_fake_slurm_submission_records_job_ids_and_status_reads_sacct(toy_model, tmp_path, capsys, monkeypatch, fake_slurm):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, toy_model, cluster=CLUSTER)
    assert cli_main(["study", path, "--executor", "slurm"]) == 0
    assert "submitted 1 prerequisite job(s) ['1001'] and 4 array element(s)" in capsys.readouterr().out
    prerequisite, array = (fake_slurm / "sbatch-1001.sh").read_text(), (fake_slurm / "sbatch-1002.sh").read_text()
    assert "--array" not in prerequisite and "#SBATCH --array=0-3%3" in array
    assert "#SBATCH --dependency=afterok:1001" in array and "#SBATCH --gpus-per-node=2" in array and "#SBATCH --partition=gpu" in array
    root = tmp_path / "runs" / "studies" / "cluster-study"
    ids = {}
    for i, (seed, arm) in enumerate([(0, "r1_zero"), (0, "sft"), (1, "r1_zero"), (1, "sft")]):
        record = read_job_record(root / arm / f"seed{seed}")
        ids[(arm, seed)] = record["job_id"]
        assert record["executor"] == "slurm" and record["job_id"] == f"1002_{i}"
        assert record["command"].startswith("accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 2 -m rlsft.cli train")
        assert f"run.out_dir=runs/studies/cluster-study/{arm}/seed{seed}" in record["command"]
    assert read_job_record(tmp_path / "pre")["job_id"] == "1001"
    assert len((root / "submissions.jsonl").read_text().splitlines()) == 5

    (fake_slurm / "sacct").write_text("1001|COMPLETED\n1002_0|RUNNING\n1002_[1%3]|PENDING\n1002_2|FAILED\n1002_3|PREEMPTED\n")  # sacct lists a pending array element as a range
    assert cli_main(["study", path, "--status"]) == 0
    table = capsys.readouterr().out
    assert "| r1_zero | 0 | running | 1002_0 |" in table and "| sft | 0 | queued | 1002_1 |" in table
    assert "| r1_zero | 1 | failed | 1002_2 |" in table and "slurm FAILED" in table
    assert "| sft | 1 | interrupted | 1002_3 |" in table
    assert "| pre | - | failed | 1001 |" in table and "slurm COMPLETED without run.json" in table  # the fake ran nothing
    assert "0/5 done, 1 running, 1 queued, 2 failed, 1 interrupted" in table

    # submitting again leaves queued and running elements alone and resubmits the rest
    calls = (fake_slurm / "calls").read_text().count("sbatch ")
    assert cli_main(["study", path, "--executor", "slurm"]) == 0
    out = capsys.readouterr().out
    assert out.count("queued or running on Slurm, skipped") == 2
    assert (fake_slurm / "calls").read_text().count("sbatch ") == calls + 2  # the prerequisite and an array of the other two
    assert "#SBATCH --array=0-1%2" in (fake_slurm / "sbatch-1004.sh").read_text()
    assert "#SBATCH --dependency=afterok:1003" in (fake_slurm / "sbatch-1004.sh").read_text()
    assert read_job_record(root / "r1_zero" / "seed0")["job_id"] == "1002_0"  # untouched
    assert [read_job_record(root / a / "seed1")["job_id"] for a in ("r1_zero", "sft")] == ["1004_0", "1004_1"]

    # a local invocation leaves what Slurm holds alone too: two trainings of one folder write over each other
    assert cli_main(["study", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "r1_zero seed 0: queued or running on Slurm, skipped" in out and "[1/4 r1_zero seed 0]" not in out
    # the prerequisite submitted again (1003) still running: arms submitted now wait for it too (they
    # went out with no dependency, students before their teacher), and a local invocation refuses to start them
    (fake_slurm / "sacct").write_text("1003|RUNNING\n1002_0|RUNNING\n1002_1|PENDING\n1004_0|FAILED\n1004_1|FAILED\n")
    assert cli_main(["study", path, "--executor", "slurm"]) == 0
    assert "prerequisite" in capsys.readouterr().out and (fake_slurm / "calls").read_text().count("sbatch ") == calls + 3
    assert "#SBATCH --dependency=afterok:1003" in (fake_slurm / "sbatch-1005.sh").read_text()
    assert cli_main(["study", path]) == 2 and "is still training" in capsys.readouterr().err

    # sacct gives no answer: which runs are queued is unknown, so submitting again is refused
    sacct = tmp_path / "fake-bin" / "sacct"
    sacct.write_text("#!/bin/bash\nexit 1\n")
    assert cli_main(["study", path, "--executor", "slurm"]) == 2
    assert "sacct gave no answer" in capsys.readouterr().err
    assert (fake_slurm / "calls").read_text().count("sbatch ") == calls + 3  # nothing submitted


def test_an_element_resumes_a_stopped_run_and_skips_a_finished_one(tmp_path):
    """What a Slurm element does on the node, run here with `python` standing in for the trainer."""
    folder = tmp_path / "run"
    job = Job("1/1 a seed 0", "a", 0, "c.yaml", [], str(folder))
    argv_file = tmp_path / "argv.json"
    command = ["python", "-c", f"import json, sys; json.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))"]
    element = StudyElement()
    assert element(job.__dict__, command) == 0 and json.loads(argv_file.read_text()) == []  # a fresh run
    (folder / "config.yaml").write_text("run: {}\n")  # it started, then was preempted
    assert element(job.__dict__, command) == 0 and json.loads(argv_file.read_text()) == ["--resume", str(folder)]
    assert read_job_record(folder)["command"].endswith(f"--resume {folder}")
    checkpoint = element.checkpoint(job.__dict__, command)  # preemption: submitit requeues the same call
    assert checkpoint.function is element and checkpoint.args == (job.__dict__, command)
    (folder / "run.json").write_text("{}")
    argv_file.unlink()
    assert element(job.__dict__, command) == 0 and not argv_file.exists()  # finished: nothing runs


def test_local_two_by_two_study_status_and_a_killed_run_resumed(toy_model, tmp_path, capsys, monkeypatch):
    """The local executor runs the 2 x 2 matrix, two workers of one thread each; the report from the
    run folders is the one the in-process path writes on the same runs; a run killed after it
    started is resumed on resubmission."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, toy_model, name="local-study", prerequisite=False)
    assert cli_main(["study", path, "--jobs", "2", "--report", "reports/a", "--allow-mixed-commits"]) == 0
    root = tmp_path / "runs" / "studies" / "local-study"
    for arm in ("r1_zero", "sft"):
        for seed in (0, 1):
            record = read_job_record(root / arm / f"seed{seed}")
            assert record["executor"] == "local" and record["exit_code"] == 0 and record["env"] == {"OMP_NUM_THREADS": str(max(1, os.cpu_count() // 2))}
            assert shlex.split(record["command"])[1:4] == ["-m", "rlsft.cli", "train"]
    capsys.readouterr()
    assert cli_main(["study", path, "--status"]) == 0
    assert "4/4 done" in capsys.readouterr().out
    # the same runs reported by the in-process path (every run skipped): the same report
    assert cli_main(["study", path, "--report", "reports/b", "--allow-mixed-commits"]) == 0
    a, b = ([line for line in (tmp_path / "reports" / r / "report.md").read_text().splitlines() if not line.startswith("- report written")]
            for r in ("a", "b"))
    assert a == b and (tmp_path / "reports" / "a" / "verdicts.json").read_text() == (tmp_path / "reports" / "b" / "verdicts.json").read_text()

    killed = root / "r1_zero" / "seed1"  # killed after training, before it finished
    (killed / "run.json").unlink()
    log = root / "logs" / "r1_zero-seed1.log"
    first_sitting = log.read_text()
    os.utime(log, (1_000_000_100, 1_000_000_100))  # its log's last write: 100 s after the start below
    write_job_record(killed, {"started_utc": "2001-09-09T01:46:40Z", "ended_utc": None, "exit_code": None})  # killed: no end
    capsys.readouterr()
    assert cli_main(["study", path, "--status"]) == 0
    assert "| r1_zero | 1 | interrupted, step 2 of 2 |" in capsys.readouterr().out  # trained to its last step
    # the run left is estimated at its arm's finished run's pace (a whole job, never less than its
    # training, even from a job.json that timed only a run's last sitting), less the training it has
    # done: here, as if killed at step 1 of 2, half
    from rlsft.studies.executors import _job_hours
    from rlsft.studies.study import study_status

    done = root / "r1_zero" / "seed0"
    kept = read_job_record(done)
    training = json.loads((done / "run.json").read_text())["compute"]["wall_seconds"] / 3600
    metrics = (killed / "metrics.jsonl").read_text()
    (killed / "metrics.jsonl").write_text("".join(line + "\n" for line in metrics.splitlines() if json.loads(line).get("step") != 2))
    assert "| r1_zero | 1 | interrupted, step 1 of 2 |" in (cli_main(["study", path, "--status"]), capsys.readouterr().out)[1]
    assert study_status(path)["totals"]["train_hours_left_estimate"] == pytest.approx(max(_job_hours(kept), training) - training / 2)
    write_job_record(done, {"started_utc": kept["ended_utc"], "earlier_seconds": training * 3600 / 2})  # a job.json that says half of it
    assert study_status(path)["totals"]["train_hours_left_estimate"] == pytest.approx(training - training / 2)
    write_job_record(done, kept)
    (killed / "metrics.jsonl").write_text(metrics)
    assert cli_main(["study", path, "--jobs", "2", "--report", "reports/c", "--allow-mixed-commits"]) == 0
    assert (killed / "run.json").is_file()
    assert read_job_record(killed)["command"].endswith(f"--resume {killed.relative_to(tmp_path)}")
    assert read_job_record(killed)["earlier_seconds"] == 100.0  # the killed sitting is counted, not lost
    assert log.read_text().startswith(first_sitting) and "resumed, after 100 s in earlier sittings" in log.read_text()
    assert "finished before, skipped" in capsys.readouterr().out


def test_a_run_another_invocation_is_running_is_not_started_twice(toy_model, tmp_path, capsys, monkeypatch):
    """Two invocations whose --only name the same run: the second skips it, at selection and again
    when a worker comes free, as long as the job.json's process lives."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, toy_model, name="twice", prerequisite=False)
    root = tmp_path / "runs" / "studies" / "twice"
    other = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)", "rlsft.cli", "train"],
                             stdout=subprocess.PIPE, text=True)  # the other invocation's run
    try:
        assert other.stdout.readline() == "up\n"  # started: its command line is its own now, not this process's
        folders = [root / arm / f"seed{seed}" for arm in ("r1_zero", "sft") for seed in (0, 1)]
        for folder in folders:
            write_job_record(folder, {"executor": "local", "host": socket.gethostname(), "pid": other.pid, "exit_code": None})
        assert running_elsewhere(folders[0]) == other.pid
        assert cli_main(["study", path, "--jobs", "2"]) == 0
        out = capsys.readouterr().out
        assert out.count(f"running in another invocation (pid {other.pid}), skipped") == 4 and "report waits" in out
        assert [p.name for p in folders[0].iterdir()] == ["job.json"] and not list(root.glob("logs/*.log"))  # nothing started
        job = Job("1/1 r1_zero seed 0", "r1_zero", 0, str(MICRO / "r1_zero.yaml"), [], str(folders[0]))
        run_local("twice", [job], [{"OMP_NUM_THREADS": "1"}], tmp_path / "logs")  # the check a free worker makes
        assert "skipped" in capsys.readouterr().out and not (tmp_path / "logs" / "r1_zero-seed0.log").exists()
    finally:
        other.kill()
        other.wait()
    assert running_elsewhere(folders[0]) is None  # a dead process runs nothing: the run resumes
    write_job_record(folders[1], {"pid": os.getpid()})
    assert running_elsewhere(folders[1]) is None  # this process is not another invocation
    write_job_record(folders[2], {"exit_code": 0})
    assert running_elsewhere(folders[2]) is None  # ended


def test_local_workers_never_outnumber_the_cores(toy_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, toy_model, name="too-many", prerequisite=False)
    assert cli_main(["study", path, "--jobs", str((os.cpu_count() or 1) + 1)]) == 2
    assert "more than the" in capsys.readouterr().err and not (tmp_path / "runs" / "studies" / "too-many").exists()


def test_cluster_section_is_checked():
    with pytest.raises(Exception, match="gpus_per_run >= 0"):
        ClusterConfig(gpus_per_run=-1)
    job = Job("x", "a", 0, "c.yaml", ["k=v"], "f")
    assert train_command(job, gpus=1)[:6] == ["accelerate", "launch", "--config_file", "configs/accelerate/single_gpu.yaml", "--num_processes", "1"]


def test_a_killed_in_process_sitting_counts_to_its_newest_checkpoint(tmp_path):
    """A run trained in the study's own process has no log of its own: a killed sitting is timed
    to its newest checkpoint's `saved_utc`, which survives a copy to another machine (files'
    modification times there are the copy's)."""
    from rlsft.studies.executors import earlier_seconds

    run = tmp_path / "run"
    write_job_record(run, {"started_utc": "2001-09-09T01:46:40Z", "ended_utc": None, "earlier_seconds": 30.0})
    for step, at in ((4, "2001-09-09T01:47:20Z"), (8, "2001-09-09T01:48:20Z")):
        (run / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (run / "checkpoints" / f"checkpoint-{step}" / "rlsft_progress.json").write_text(json.dumps({"step": step, "saved_utc": at}))
    (run / "metrics.jsonl").write_text("{}")  # written now: its time says nothing
    assert earlier_seconds(read_job_record(run), run) == 130.0
    assert earlier_seconds(read_job_record(run), tmp_path / "absent") == 30.0  # no end known: the earlier sittings alone
    # checkpoints written before saved_utc was kept: the trainer state's file time, on the machine that wrote it
    old = tmp_path / "old"
    write_job_record(old, {"started_utc": "2001-09-09T01:46:40Z", "ended_utc": None})
    (old / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (old / "checkpoints" / "checkpoint-4" / PROGRESS_FILE).write_text(json.dumps({"step": 4}))
    (old / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    os.utime(old / "checkpoints" / "checkpoint-4" / "trainer_state.json", (1_000_000_050, 1_000_000_050))
    assert earlier_seconds(read_job_record(old), old) == 50.0
