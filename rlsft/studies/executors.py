"""Where a study's runs run, and where they stand.

`rlsft study CONFIG --executor local|slurm` hands the study's matrix (`study.plan`) to one of:

- `local`: this machine. A queue of workers, each pinned to its own GPUs (`CUDA_VISIBLE_DEVICES`)
  or, on a CPU, to its share of the cores (`OMP_NUM_THREADS` = cores // workers). Workers never
  outnumber the cores: two runs sharing 2 cores with 2 threads each are several times slower than
  one thread each (docs/clusters.md has the measurement).
- `slurm`: submitit's Slurm executor, the matrix as one job array (`%` array parallelism), each
  element one `accelerate launch ... -m rlsft.cli train CONFIG key=value ...` with
  `gpus_per_node = cluster.gpus_per_run` and one task (accelerate starts the processes).
  Prerequisites (the RL teacher) go first, as their own job, and the array waits for them with
  `afterok`. An element that is preempted or hits its time limit is requeued by submitit's
  checkpoint hook and resumes from its last checkpoint.

Either way each run's folder gets `job.json` (executor, job id, command, log), the command of an
element is the command a user would type, and the report reads the same run folders.

`status` is the `--status` view: arms x seeds, from the run folders and, for Slurm jobs, `sacct`.
"""

from __future__ import annotations

import calendar
import json
import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from rlsft.io import UserError, atomic_write, to_json, utc_now
from rlsft.launch import final_run
from rlsft.runs.folder import JOB_FILE, PROGRESS_FILE, RunFolder
from rlsft.runs.record import max_steps_of

EXECUTORS = ("local", "slurm")
# sacct states, by what they mean for a run (https://slurm.schedmd.com/sacct.html#SECTION_JOB-STATE-CODES)
SLURM_ACTIVE = {"PENDING": "queued", "REQUEUED": "queued", "RESIZING": "queued", "SUSPENDED": "queued",
                "RUNNING": "running", "COMPLETING": "running", "CONFIGURING": "running"}
SLURM_ENDED = {"FAILED": "failed", "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed",
               "TIMEOUT": "interrupted", "PREEMPTED": "interrupted", "CANCELLED": "interrupted", "DEADLINE": "interrupted"}


@dataclass
class ClusterConfig:
    """The study YAML's `cluster:` section: what each run asks of a Slurm cluster or a GPU node."""

    partition: str | None = None
    account: str | None = None
    gpus_per_run: int = 0  # GPUs per run (0: CPU); more than 1: accelerate launches one process per GPU
    cpus_per_run: int = 8
    mem_gb: float = 64.0
    timeout_min: int = 240  # per element; a run that needs longer is requeued and resumes from its checkpoint
    array_parallelism: int = 16  # elements of the array running at once (sbatch --array=0-N%P)
    setup: list[str] = field(default_factory=list)  # shell lines before each run (module load ..., source .venv/bin/activate)
    sbatch: dict[str, str] = field(default_factory=dict)  # extra sbatch options, e.g. {constraint: h100, qos: high}
    accelerate_config: str | None = None  # default: configs/accelerate/multi_gpu.yaml for > 1 GPU, single_gpu.yaml for 1

    def __post_init__(self):
        if self.gpus_per_run < 0 or self.cpus_per_run < 1 or self.timeout_min < 1 or self.array_parallelism < 1 or self.mem_gb <= 0:
            raise UserError("cluster: gpus_per_run >= 0, cpus_per_run >= 1, mem_gb > 0, timeout_min >= 1 and array_parallelism >= 1")


@dataclass
class Job:
    """One run of the matrix (or a prerequisite): what to train and where its folder is."""

    label: str  # "3/59 r1_zero seed 2"
    arm: str
    seed: int | None  # None for a prerequisite
    config: str
    overrides: list[str]
    folder: str
    resumable: bool = True  # a pipeline resumes its unfinished stage by itself, without --resume


def train_command(job: Job, gpus: int = 0, accelerate_config: str | None = None, python: str | None = None) -> list[str]:
    """The command that trains `job`: `python -m rlsft.cli train ...` on a CPU, `accelerate launch`
    with one process per GPU otherwise. `--resume` is added when the element starts (`run_job`),
    from the folder's state then, not at submission.

    >>> job = Job("1/1 r1_zero seed 0", "r1_zero", 0, "configs/micro/r1_zero.yaml", ["run.seed=0"], "runs/s/r1_zero/seed0")
    >>> " ".join(train_command(job, python="python"))
    'python -m rlsft.cli train configs/micro/r1_zero.yaml run.seed=0'
    >>> " ".join(train_command(job, gpus=4))
    'accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 4 -m rlsft.cli train configs/micro/r1_zero.yaml run.seed=0'
    """
    args = ["-m", "rlsft.cli", "train", job.config, *job.overrides]
    if gpus < 1:
        return [python or sys.executable, *args]
    config = accelerate_config or ("configs/accelerate/multi_gpu.yaml" if gpus > 1 else "configs/accelerate/single_gpu.yaml")
    return ["accelerate", "launch", "--config_file", config, "--num_processes", str(gpus), *args]


def with_resume(job: Job, command: list[str]) -> list[str] | None:
    """The command to run now: None when the run finished before, `--resume FOLDER` added when it
    started and was stopped (killed, preempted, out of time)."""
    folder = RunFolder(job.folder)
    if job.resumable and folder.finished:
        return None
    return command + (["--resume", job.folder] if job.resumable and folder.started else [])


def write_job_record(folder: str | Path, record: dict) -> None:
    """`job.json` in a run's folder: merged with what is there (submission, then start, then end)."""
    path = Path(folder) / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write(path, to_json({**old, **record}))


def read_job_record(folder: str | Path) -> dict:
    path = Path(folder) / JOB_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def running_elsewhere(folder: str | Path) -> int | None:
    """The pid of another live `rlsft` process on this machine that is running this run now (by
    its `job.json`: started here, no exit code yet), else None. Two invocations whose `--only`
    name the same run would otherwise both train it into one folder."""
    r = read_job_record(folder)
    pid = r.get("pid")
    if r.get("executor") != "local" or r.get("exit_code") is not None or r.get("host") != socket.gethostname() or not pid or pid == os.getpid():
        return None
    return pid if _runs_rlsft(pid) else None


def _runs_rlsft(pid: int) -> bool:
    """Is `pid` a live `rlsft` process? A dead pid, or one another program has taken since, is not."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc").is_dir() else (b"rlsft" if _alive(pid) else b"")
    except OSError:
        return False
    return b"rlsft" in cmdline


# --------------------------------------------------------------------------- local


def local_workers(jobs: int, gpus_per_run: int, visible_gpus: int | None = None, cores: int | None = None) -> list[dict[str, str]]:
    """Each worker's environment: its own GPUs when the node has them, else its share of the cores.

    >>> local_workers(2, 0, visible_gpus=0, cores=2)
    [{'OMP_NUM_THREADS': '1'}, {'OMP_NUM_THREADS': '1'}]
    >>> local_workers(8, 2, visible_gpus=8)
    [{'CUDA_VISIBLE_DEVICES': '0,1'}, {'CUDA_VISIBLE_DEVICES': '2,3'}, {'CUDA_VISIBLE_DEVICES': '4,5'}, {'CUDA_VISIBLE_DEVICES': '6,7'}]
    >>> local_workers(3, 0, visible_gpus=0, cores=2)
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: --jobs 3 is more than the 2 CPU cores: runs would share cores and each would slow down several times; use --jobs 2 or fewer
    """
    cores = cores or os.cpu_count() or 1
    if visible_gpus is None:
        import torch

        visible_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus_per_run > 0 and visible_gpus > 0:
        slots = min(jobs, visible_gpus // gpus_per_run)  # jobs caps the workers; the node's GPUs cap them too
        if slots < 1:
            raise UserError(f"cluster.gpus_per_run {gpus_per_run} is more than the {visible_gpus} GPUs this node has")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(i * gpus_per_run, (i + 1) * gpus_per_run))} for i in range(slots)]
    if jobs > cores:
        raise UserError(f"--jobs {jobs} is more than the {cores} CPU cores: runs would share cores and each would slow down "
                        f"several times; use --jobs {cores} or fewer")
    return [{"OMP_NUM_THREADS": str(max(1, cores // jobs))} for _ in range(jobs)]


def run_local(name: str, jobs: list[Job], workers: list[dict[str, str]], logs: Path, gpus_per_run: int = 0,
              accelerate_config: str | None = None, then: Callable[[Job], list[list[str]]] | None = None,
              done: Callable[[Job], object] | None = None) -> None:
    """Run `jobs` on this machine, one per free worker, in subprocesses; each run's output goes to
    logs/<arm>-seed<k>.log and its `job.json` records the worker, pid and exit code. A failed run
    does not stop the others; once all have ended, the study fails with one line naming the first.
    After a run succeeds, `then(job)`'s commands run on the same worker, into the same log (the
    study's transfer measurements, while the model is here), and `done(job)` is called."""

    logs.mkdir(parents=True, exist_ok=True)
    free: queue.Queue = queue.Queue()
    for i, env in enumerate(workers):
        free.put((i, env))

    def one(job: Job):
        command = with_resume(job, train_command(job, gpus_per_run if "CUDA_VISIBLE_DEVICES" in workers[0] else 0, accelerate_config))
        if command is None:
            return job.label, 0, None
        slot, env = free.get()
        pid = running_elsewhere(job.folder)  # checked again here: another invocation may have started it while this one waited
        if pid:
            free.put((slot, env))
            sys.stdout.write(f"[study {name}] {job.label}: running in another invocation (pid {pid}), skipped\n")
            return job.label, 0, None
        try:
            log = logs / (f"{job.arm}-seed{job.seed}.log" if job.seed is not None else f"prerequisite-{job.arm}.log")
            sys.stdout.write(f"[study {name}] {job.label} -> {job.folder} (worker {slot}: {env}; log: {log})\n")
            sys.stdout.flush()
            earlier = earlier_seconds(read_job_record(job.folder), log)  # before the log grows again
            with open(log, "a") as f:  # a resumed run's log keeps its earlier sittings' output
                if earlier:
                    f.write(f"\n==== {utc_now()}: resumed, after {earlier:.0f} s in earlier sittings ====\n")
                    f.flush()
                proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env})
                write_job_record(job.folder, {"executor": "local", "host": socket.gethostname(), "pid": proc.pid, "worker": slot,
                                              "env": env, "command": shlex.join(command), "log": str(log), "started_utc": utc_now(),
                                              "exit_code": None, "ended_utc": None, "earlier_seconds": earlier})
                rc = proc.wait()
                write_job_record(job.folder, {"exit_code": rc, "ended_utc": utc_now()})
                for extra in (then(job) if then and rc == 0 else []):
                    f.write(f"\n==== {utc_now()}: {shlex.join(extra)} ====\n")
                    f.flush()
                    rc = subprocess.run(extra, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
                    if rc != 0:
                        break
            if done and rc == 0:
                done(job)
        finally:
            free.put((slot, env))
        sys.stdout.write(f"[study {name}] {job.label}: {'done' if rc == 0 else f'failed (exit {rc})'}\n")
        sys.stdout.flush()
        return job.label, rc, log

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        failed = [(label, rc, log) for label, rc, log in pool.map(one, jobs) if rc != 0]
    if failed:
        label, rc, log = failed[0]
        raise UserError(f"{len(failed)} study run(s) failed, first {label} (exit {rc}); see {log}")


# --------------------------------------------------------------------------- slurm


class StudyElement:
    """One element of the array, run on the node by submitit: it trains its job (resuming it when
    its folder holds a stopped run) and, preempted or out of time, asks submitit to requeue it
    (`checkpoint`), so the next start resumes from the last checkpoint."""

    def __call__(self, job: dict, command: list[str]) -> int:
        job = Job(**job)
        now = with_resume(job, command)
        if now is None:
            return 0
        env = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_JOB_ID")
        write_job_record(job.folder, {"started_utc": utc_now(), "host": socket.gethostname(), "slurm_env": list(env), "command": shlex.join(now)})
        rc = subprocess.run(now).returncode
        write_job_record(job.folder, {"exit_code": rc, "ended_utc": utc_now()})
        if rc:
            raise RuntimeError(f"{job.label}: `{shlex.join(now)}` exited {rc}")
        return rc

    def checkpoint(self, job: dict, command: list[str]):
        import submitit

        return submitit.helpers.DelayedSubmission(self, job, command)  # resumes from the run's own checkpoints


def slurm_parameters(name: str, cluster: ClusterConfig, dependency: str | None = None) -> dict:
    """submitit `SlurmExecutor.update_parameters` arguments from the study's `cluster:` section.

    >>> p = slurm_parameters("s", ClusterConfig(partition="gpu", gpus_per_run=2, sbatch={"constraint": "h100"}), "afterok:7")
    >>> p["partition"], p["gpus_per_node"], p["ntasks_per_node"], p["additional_parameters"]
    ('gpu', 2, 1, {'constraint': 'h100', 'dependency': 'afterok:7'})
    """
    extra = {k: str(v) for k, v in cluster.sbatch.items()}
    if dependency:
        extra["dependency"] = dependency
    params = {"time": cluster.timeout_min, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": cluster.cpus_per_run,
              "mem": f"{int(cluster.mem_gb)}GB" if cluster.mem_gb == int(cluster.mem_gb) else f"{int(cluster.mem_gb * 1024)}MB",
              "array_parallelism": cluster.array_parallelism, "job_name": f"rlsft-{name}", "setup": list(cluster.setup),
              "additional_parameters": extra}
    if cluster.gpus_per_run:
        params["gpus_per_node"] = cluster.gpus_per_run  # one task; accelerate starts one process per GPU
    if cluster.partition:
        params["partition"] = cluster.partition
    if cluster.account:
        params["account"] = cluster.account
    return params


def slurm_executor(root: Path, params: dict):
    """submitit's `SlurmExecutor` (not `AutoExecutor`, whose plugin lookup needs setuptools'
    pkg_resources), logs under root/slurm/. It needs `srun` on PATH, as on a cluster."""
    import submitit

    ex = submitit.SlurmExecutor(folder=root / "slurm" / "%j")
    ex.update_parameters(**params)
    return ex


def sbatch_text(root: Path, params: dict, count: int) -> str:
    """The sbatch file submitit writes for an array of `count` elements (what `--dry-run` prints;
    built without a cluster)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = root / "slurm" / "%j"
    command = f"{sys.executable} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=count if count > 1 else None, **params)


def submit_slurm(name: str, root: Path, prerequisites: list[Job], jobs: list[Job], cluster: ClusterConfig, dry_run: bool = False,
                 waiting_on: tuple[str, ...] = ()) -> dict:
    """Submit the prerequisites (one job each), then the matrix as one array that waits for them
    (`afterok`) and for `waiting_on`, prerequisites submitted before and still queued or running. Writes `job.json` into each run folder and one line per submission to
    root/submissions.jsonl; with `dry_run`, prints the sbatch files and every element's command
    and submits nothing. Returns {prerequisites: [job ids], array: [job ids]}."""
    commands = {id(j): train_command(j, cluster.gpus_per_run, cluster.accelerate_config, python="python") for j in prerequisites + jobs}
    out: dict = {"prerequisites": [], "array": []}
    if dry_run:
        for kind, group in (("prerequisite", prerequisites), ("array", jobs)):
            if not group:
                continue
            ids = ["<prerequisite job ids>"] * bool(prerequisites) + list(waiting_on)
            params = slurm_parameters(name, cluster, "afterok:" + ":".join(ids) if kind == "array" and ids else None)
            print(f"# --- {kind}: {len(group)} element(s); sbatch file:\n{sbatch_text(root, params, len(group) if kind == 'array' else 1)}")
            for i, j in enumerate(group):
                print(f"# [{kind} {i}] {j.label}: {shlex.join(commands[id(j)])}")
        return out
    waits = None
    for j in prerequisites:
        (sub,) = slurm_executor(root, slurm_parameters(name, cluster)).map_array(StudyElement(), [asdict(j)], [commands[id(j)]])
        out["prerequisites"].append(sub.job_id)
        _record_submission(root, j, sub, commands[id(j)])
    if out["prerequisites"] or waiting_on:
        waits = "afterok:" + ":".join([*out["prerequisites"], *waiting_on])
    if jobs:
        ex = slurm_executor(root, slurm_parameters(name, cluster, waits))
        subs = ex.map_array(StudyElement(), [asdict(j) for j in jobs], [commands[id(j)] for j in jobs])
        for j, sub in zip(jobs, subs):
            out["array"].append(sub.job_id)
            _record_submission(root, j, sub, commands[id(j)])
    return out


def _record_submission(root: Path, job: Job, sub, command: list[str]) -> None:
    record = {"executor": "slurm", "job_id": sub.job_id, "label": job.label, "command": shlex.join(command),
              "log": str(sub.paths.stdout), "submitted_utc": utc_now(), "exit_code": None, "ended_utc": None}
    write_job_record(job.folder, record)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "submissions.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "folder": job.folder}) + "\n")


def sacct_states(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: sacct state} for Slurm job ids ("123" or array elements "123_4"); {} for no ids;
    None when sacct is missing or fails (nothing is known of those jobs)."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(sorted({i.split("_")[0] for i in job_ids}))],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return parse_sacct(out.stdout)


def parse_sacct(text: str) -> dict[str, str]:
    r"""`sacct -n -P -o JobID,State` lines as {job id: state}; a pending array's range is expanded.

    >>> parse_sacct("7|COMPLETED\n8_0|RUNNING\n8_[1-3,5%2]|PENDING\n9_4|CANCELLED by 42\n")
    {'7': 'COMPLETED', '8_0': 'RUNNING', '8_1': 'PENDING', '8_2': 'PENDING', '8_3': 'PENDING', '8_5': 'PENDING', '9_4': 'CANCELLED'}
    """

    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[1].split():
            continue
        state = parts[1].split()[0]  # "CANCELLED by 123" -> CANCELLED
        array = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", parts[0])
        if not array:
            states[parts[0]] = state
            continue
        for piece in array.group(2).split(","):
            first, _, last = piece.partition("-")
            for i in range(int(first), int(last or first) + 1):
                states[f"{array.group(1)}_{i}"] = state
    return states


# --------------------------------------------------------------------------- status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(job: Job, slurm: dict[str, str]) -> tuple[str, str]:
    """(state, last error line) of one run: done, running, queued, failed, interrupted or not started."""
    folder = RunFolder(job.folder)
    if _final_folder(job).finished:
        return "done", ""
    record = read_job_record(job.folder)
    if record.get("executor") == "slurm" and record.get("job_id") in slurm:
        state = slurm[record["job_id"]]
        if state in SLURM_ACTIVE:
            return SLURM_ACTIVE[state], ""
        if state in SLURM_ENDED:
            kind = SLURM_ENDED[state]
            return kind, f"slurm {state}" + (f": {_last_error(record.get('log'))}" if kind == "failed" else "")
        if state == "COMPLETED":  # the job ended well but the run left no run.json
            return "failed", f"slurm COMPLETED without run.json: {_last_error(record.get('log'))}"
    if record.get("executor") == "local" and record.get("exit_code") is None and record.get("pid"):
        if record.get("host") == socket.gethostname() and _runs_rlsft(int(record["pid"])):
            return "running", ""
        return "interrupted", "killed before it ended"
    if record.get("exit_code"):
        return "failed", _last_error(record.get("log"))
    if record.get("executor") == "slurm":
        return "queued", ""
    return ("interrupted", "stopped before it finished") if folder.started or (folder.path.is_dir() and any(folder.path.glob("*/config.yaml"))) else ("not started", "")


def _final_folder(job: Job) -> RunFolder:
    """The folder whose run.json holds the job's result (a pipeline's last stage)."""
    return final_run(job.config, job.overrides)


def _last_error(log: str | None) -> str:
    """The last line of a log that reads like an error (error:, Error, Traceback's last line)."""
    if not log or not Path(log).is_file():
        return "no log"
    lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0] or line.startswith("RuntimeError")]
    return (errors or lines or ["empty log"])[-1][:200]


def _utc_seconds(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def earlier_seconds(record: dict, log: Path | None = None) -> float:
    """Seconds a job has run before the sitting about to start, from its `job.json`: what earlier
    sittings carried, plus the last one, from its start to its end or, if it was killed (no end),
    to the last write of `log` (a worker's log file; for a run trained in process, which has none,
    its run folder: its newest checkpoint's time).

    >>> earlier_seconds({"earlier_seconds": 60.0, "started_utc": "2026-01-01T00:00:00Z", "ended_utc": "2026-01-01T00:10:00Z"})
    660.0
    >>> earlier_seconds({})
    0.0
    """
    total = float(record.get("earlier_seconds") or 0.0)
    if record.get("started_utc"):
        end = _utc_seconds(record["ended_utc"]) if record.get("ended_utc") else _last_write(log) if log is not None else None
        if end is not None:
            total += max(0.0, end - _utc_seconds(record["started_utc"]))
    return total


def closed_sitting(record: dict, log: Path) -> dict:
    """`record` (a job.json) with its sitting so far folded into `earlier_seconds` (timed here, by
    `earlier_seconds`) and nothing left open: no start, no pid. What an archive keeps of an
    unfinished run, so another machine times it without this machine's file times (a checkout
    there dates a worker's log to the checkout) and never takes a live pid there for this run.

    >>> closed_sitting({"pid": 7, "started_utc": "2026-01-01T00:00:00Z", "ended_utc": "2026-01-01T00:10:00Z", "earlier_seconds": 60.0}, None)
    {'pid': None, 'started_utc': None, 'ended_utc': None, 'earlier_seconds': 660.0}
    """
    return {**record, "pid": None, "started_utc": None, "ended_utc": None, "earlier_seconds": earlier_seconds(record, log)}


def _last_write(path: Path) -> float | None:
    """When a killed sitting last did something: a worker's log file's modification time; for a
    run folder (a run trained in process has no log of its own), the newest checkpoint's
    `saved_utc` (`PROGRESS_FILE`), which a copy or a git checkout on another machine keeps,
    unlike files' times. None when there is none."""
    if path.is_file():
        return path.stat().st_mtime
    stamps = [json.loads(f.read_text()).get("saved_utc") for f in path.rglob(PROGRESS_FILE)] if path.is_dir() else []
    if any(stamps):
        return max(_utc_seconds(t) for t in stamps if t)
    # checkpoints from before saved_utc was kept: their trainer state's file time, right on the
    # machine that wrote it (where --keep-unfinished closes the sitting, `closed_sitting`)
    return max((f.stat().st_mtime for f in path.rglob("trainer_state.json")), default=None) if path.is_dir() else None


def _job_hours(record: dict) -> float | None:
    """Hours a finished job ran, every sitting counted, from its `job.json` record (None when its start or end is missing)."""
    if not record.get("started_utc") or not record.get("ended_utc"):
        return None
    return earlier_seconds(record) / 3600


def status(name: str, jobs: list[Job], archived: dict[str, Path] | None = None) -> dict:
    """The `--status` view: each run's state and last error, the compute spent by finished runs
    (PFLOPs, wall hours) and what the rest should take, from the finished runs of the same arm
    (or of all arms), as {rows, totals}. `archived` maps a job's folder to its copy in a study's
    archive: a run finished there but not here is done, read from the archive (`in_archive`)."""
    archived = archived or {}
    records = {j.folder: read_job_record(j.folder) for j in jobs}
    slurm = sacct_states([r["job_id"] for r in records.values() if r.get("executor") == "slurm" and r.get("job_id")]) or {}  # the folders alone
    rows, walls, trains, stage_seconds = [], {}, {}, {}
    for j in jobs:
        state, error = run_state(j, slurm)
        final, record, in_archive = _final_folder(j), records[j.folder], False
        if state != "done" and j.folder in archived:
            kept = RunFolder(archived[j.folder] / final.path.relative_to(j.folder))
            if kept.finished:
                state, error, final, record, in_archive = "done", "", kept, read_job_record(archived[j.folder]), True
        progress = training_progress(final) if state in ("running", "interrupted") else None
        row = {"arm": j.arm, "seed": j.seed, "state": state, "error": error, "job_id": record.get("job_id"),
               "pflops": None, "wall_hours": None, "in_archive": in_archive,
               "progress": progress[0] if progress else None, "where": progress[1:] if progress else None}
        if state == "done":
            if final.stage_index:  # a pipeline: how its training time splits among its stages
                stage_seconds.setdefault(j.arm, []).append([st.run_record.compute.wall_seconds for st in final.pipeline.stages()])
            cost = final.total_compute()
            row.update(pflops=cost["flops"] / 1e15, wall_hours=cost["wall_seconds"] / 3600)
            # the whole job (evaluations too) where known; never less than its training (a job.json
            # written before earlier sittings were carried in process times only the last one)
            walls.setdefault(j.arm, []).append(max(_job_hours(record) or 0.0, row["wall_hours"]))
            trains.setdefault(j.arm, []).append(row["wall_hours"])
        rows.append(row)
    for row in rows:
        row["trained_share"] = trained_share(*row.pop("where"), stage_seconds.get(row["arm"], [])) if row["where"] else 0.0
    every, every_train = [w for ws in walls.values() for w in ws], [t for ts in trains.values() for t in ts]

    def left_of(row: dict) -> float:
        """Hours a run not done should take: a finished run's whole job (its arm's mean, else every
        arm's), less the training a started one has done (its share of steps at the finished runs'
        training pace). Conservative: its evaluation before training, if done, is still counted."""
        job, train = (walls[row["arm"]], trains[row["arm"]]) if row["arm"] in walls else (every, every_train)
        return sum(job) / len(job) - row["trained_share"] * sum(train) / len(train)

    left = sum(left_of(r) for r in rows if r["state"] != "done") if every else None
    done = [r for r in rows if r["state"] == "done"]
    return {"study": name, "rows": rows,
            "totals": {"runs": len(rows), **{s: sum(r["state"] == s for r in rows) for s in ("done", "running", "queued", "failed", "interrupted", "not started")},
                       "pflops_done": sum(r["pflops"] for r in done), "train_hours_done": sum(r["wall_hours"] for r in done),
                       "train_hours_left_estimate": left}}


def training_progress(final: RunFolder) -> tuple[str, int, int, float] | None:
    """Where an unfinished run's training stands: ("step s of N" in the stage it is in, a pipeline's
    "stage k, step s of N"; k; the number of stages; s / N), from its logged steps and its config's
    max_steps; None before any stage has started or when max_steps is not set (an epoch-based run)."""
    started = [s for s in (final.pipeline.stages() if final.stage_index else [final]) if s.started]
    if not started:
        return None
    stage = started[-1]
    max_steps = max_steps_of(stage.config)
    if max_steps is None:
        return None
    step = max((row["step"] for row in stage.metrics if isinstance(row.get("step"), int)), default=0)
    text = ("" if not final.stage_index else f"stage {stage.stage_index}, ") + f"step {step} of {max_steps}"
    return text, stage.stage_index or 1, final.stage_index or 1, min(step / max_steps, 1.0)  # final: the last stage


def trained_share(stage: int, stages: int, fraction: float, stage_seconds: list[list[float]]) -> float:
    """The share of a run's training done at `fraction` of stage `stage` of `stages`, each stage
    weighed by its training seconds in the same arm's finished runs (`stage_seconds`: one list per
    run), or as an equal part when none has finished: a short SFT stage before long RL is a small share.

    >>> trained_share(2, 2, 0.0, [[600.0, 5400.0]])  # the SFT stage done, GRPO not begun
    0.1
    >>> trained_share(2, 2, 0.5, [])  # no finished run to weigh the stages by
    0.75
    """
    runs = [r for r in stage_seconds if len(r) == stages]
    weights = [sum(r[i] for r in runs) / len(runs) for i in range(stages)] if runs else [1.0] * stages
    return (sum(weights[:stage - 1]) + weights[stage - 1] * fraction) / sum(weights) if sum(weights) else 0.0


def status_table(view: dict) -> str:
    """`status` as the text `rlsft study --status` prints."""
    lines = [f"study {view['study']}", "", "| arm | seed | state | job | PFLOPs | train h | last error |", "|---|---|---|---|---|---|---|"]
    for r in view["rows"]:
        pf = "" if r["pflops"] is None else f"{r['pflops']:.4g}"
        h = "" if r["wall_hours"] is None else f"{r['wall_hours']:.3f}"
        state = r["state"] + (" (archive)" if r.get("in_archive") else "") + (f", {r['progress']}" if r.get("progress") else "")
        lines.append(f"| {r['arm']} | {'-' if r['seed'] is None else r['seed']} | {state} | {r['job_id'] or ''} | {pf} | {h} | {r['error']} |")
    t = view["totals"]
    left = ("unknown (no run finished yet)" if t["train_hours_left_estimate"] is None else
            f"about {t['train_hours_left_estimate']:.2f} hours of runs at the finished runs' pace (whole jobs where job.json "
            "times them, else training alone), summed over the runs left, less the steps a started run has trained: "
            "divide by the workers for wall time")
    lines += ["", f"{t['done']}/{t['runs']} done, {t['running']} running, {t['queued']} queued, {t['failed']} failed, "
              f"{t['interrupted']} interrupted, {t['not started']} not started; {t['pflops_done']:.4g} PFLOPs and "
              f"{t['train_hours_done']:.2f} train hours spent; left: {left}"]
    return "\n".join(lines) + "\n"
