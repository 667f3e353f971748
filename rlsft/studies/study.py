"""`rlsft study CONFIG`: a matrix of recipes x seeds from one YAML, then the claims checked.

Each (arm, seed) runs in `RunFolder.in_study(root, arm, seed)` with `run.seed=k`; a finished run
is skipped and an unfinished one resumes from its latest checkpoint, so an interrupted study goes
on where it stopped. Pipelines run their stages under that folder the same way. Every run logs to
wandb with the study's name as its group and `<arm>/seed<k>` as its name. Where the runs run
(this machine, or a Slurm cluster) is the executor's business: `rlsft.studies.executors`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from rlsft.config import load_config, read_yaml
from rlsft.io import UserError, blind, copy_tree_atomic
from rlsft.launch import dry_run as check_run
from rlsft.launch import final_run, is_pipeline, load_recipe_config, pipeline_stages, stage_configs, train_from_config
from rlsft.runs.compute import reset_peak_memory
from rlsft.runs.folder import RunFolder, checkpoint_step
from rlsft.scoring.evaluate import EvalArgs, evaluate
from rlsft.scoring.tasks import get_task
from rlsft.studies.executors import (
    EXECUTORS,
    SLURM_ACTIVE,
    ClusterConfig,
    Job,
    closed_sitting,
    earlier_seconds,
    local_workers,
    read_job_record,
    run_local,
    running_elsewhere,
    sacct_states,
    status,
    submit_slurm,
    train_command,
    utc_now,
    write_job_record,
)
from rlsft.trainer import eval_args, run_folder
from rlsft.verdicts.claims import Claim
from rlsft.verdicts.sweep import SweepRule


@dataclass
class TransferConfig:
    """A measurement after the runs (not a claim): each arm's final model, and the base, on another
    task, evaluated as its run evaluates (`transfer_evals`) with these problems, samples and budget."""

    task: str = "gsm8k"
    n: int | None = 64  # held-out problems of that task's test split
    samples: int = 4  # completions per problem
    max_new_tokens: int = 320  # its own budget: the task's solutions can be longer than the training task's
    seeds: list[int] = field(default_factory=lambda: [0])  # which seeds' runs (each evaluated with its own seed)


@dataclass
class StudyConfig:
    name: str
    recipes: dict[str, str]  # arm name -> recipe or pipeline config path
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arm_seeds: dict[str, list[int]] = field(default_factory=dict)  # arms run with other seeds than `seeds` (e.g. more for pure RL)
    out_dir: str | None = None  # default runs/studies/<name>
    overrides: list[str] = field(default_factory=list)  # applied to every run (and every pipeline stage)
    arm_overrides: dict[str, list[str]] = field(default_factory=dict)  # per arm
    base_arm: str = "r1_zero"  # whose eval_before is the base model
    prerequisites: list[str] = field(default_factory=list)  # configs trained once before the matrix (e.g. an RL-trained teacher)
    claims: list[Claim] = field(default_factory=list)
    knobs_changed_after_results: list[str] = field(default_factory=list)  # listed in the report, honestly
    scope: list[str] = field(default_factory=list)  # what the study can and cannot show; the report prints it under the claims
    panels: dict[str, list[str]] = field(default_factory=dict)  # the headline figure's small multiples: panel title -> arms
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # what each run asks of a Slurm cluster or a GPU node (--executor)
    transfer: list[TransferConfig] = field(default_factory=list)  # measured once every run has finished (`run_transfer`)
    task: str | None = None  # the held-out task the claims and the report read (default: the base arm's first eval task)
    choose: SweepRule | None = None  # a sweep's preregistered rule for the setting it picks (`rlsft.verdicts.sweep`)


def study_root(cfg: StudyConfig) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir else Path("runs") / "studies" / cfg.name


def run_overrides(cfg: StudyConfig, arm: str, seed: int) -> list[str]:
    """What the study sets on one run: its folder, seed, wandb group and name, and the study's overrides."""
    folder = RunFolder.in_study(study_root(cfg), arm, seed)
    placed = [f"run.out_dir={folder.path}", f"run.seed={seed}", f"run.group={cfg.name}", f"run.name={arm}/seed{seed}"]
    extra = cfg.overrides + cfg.arm_overrides.get(arm, [])
    if is_pipeline(cfg.recipes[arm]):  # a pipeline hands the study's overrides to each stage, after its own
        own = read_yaml(cfg.recipes[arm]).get("stage_overrides") or []
        return placed + [f"stage_overrides={json.dumps(own + extra, ensure_ascii=False)}"]  # JSON: YAML that quotes any value
    return extra + placed


ARM_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a folder name under the study's folder: no path separators, no leading dot
SIDES = ("base", "before")  # what a claim's sides name besides arms: the study's starting model, the arm's own


def check_names(cfg: StudyConfig, path: str = "study") -> None:
    """Refuse a study whose names do not resolve: arms, seeds, the base arm, each claim's sides
    and matched-compute arm, the panels' arms and the tasks. A misspelt arm in a claim would
    otherwise reach the report as an "inconclusive" verdict with nothing under it."""
    if not cfg.recipes:
        raise UserError(f"{path}: recipes is empty; name at least one arm (arm: recipe config)")
    for arm in cfg.recipes:
        if not re.fullmatch(ARM_NAME, str(arm)) or arm in SIDES:
            raise UserError(f"{path}: arm name {arm!r}: letters, digits, '_', '.', '-' (a folder name), and not {' or '.join(SIDES)}")
    for arm, seeds in [("seeds", cfg.seeds), *((f"arm_seeds.{a}", s) for a, s in cfg.arm_seeds.items())]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise UserError(f"{path}: {arm} must list distinct seeds, got {seeds}")
    reads_base = any("base" in (c.arm, c.against) for c in cfg.claims) or any("base" in names for names in cfg.panels.values())
    if reads_base and cfg.base_arm not in cfg.recipes:  # "base" is that arm's evaluation before training
        raise UserError(f"{path}: base_arm {cfg.base_arm!r} is no arm, and the claims or panels read the base; arms: {', '.join(cfg.recipes)}")
    arms = ", ".join(cfg.recipes)
    for c in cfg.claims:
        for key, side, allowed in (("arm", c.arm, ("base",)), ("against", c.against, (*SIDES, None))):
            if side not in cfg.recipes and side not in allowed:
                raise UserError(f"{path}: claim {c.id}: {key} {side!r} is no arm; arms: {arms} (or {', '.join(s for s in allowed if s)})")
        if isinstance(c.at_pflops, str) and c.at_pflops not in cfg.recipes:
            raise UserError(f"{path}: claim {c.id}: at_pflops {c.at_pflops!r} names no arm; arms: {arms}")
    for title, names in cfg.panels.items():
        if unknown := [a for a in names if a not in cfg.recipes and a != "base"]:
            raise UserError(f"{path}: panel {title!r} names unknown arm(s) {unknown}; arms: {arms}")
    for task in [cfg.task, *(t.task for t in cfg.transfer)]:
        if task is not None:
            try:
                get_task(task)
            except UserError as e:
                raise UserError(f"{path}: {e}") from None


def plan(cfg: StudyConfig, path: str = "study") -> tuple[list[Job], list[Job]]:
    """The study's prerequisites and its matrix of runs (seed-major, so a study stopped early has
    whole seeds), each a `Job`; everything is validated before anything runs."""
    check_names(cfg, path)
    unknown = (set(cfg.arm_overrides) | set(cfg.arm_seeds)) - set(cfg.recipes)
    if unknown:
        raise UserError(f"{path}: arm_overrides or arm_seeds name unknown arm(s) {sorted(unknown)}; arms: {', '.join(cfg.recipes)}")
    for arm, rpath in cfg.recipes.items():
        if not Path(rpath).is_file():
            raise UserError(f"{path}: recipe config for arm {arm!r} not found: {rpath}")
        if not is_pipeline(rpath):
            load_recipe_config(rpath, cfg.overrides + cfg.arm_overrides.get(arm, []))
    check_claims_readable(cfg, path)
    for name in ([cfg.choose.fallback] if cfg.choose and cfg.choose.fallback else []) + (cfg.choose.prefer if cfg.choose else []):
        arm, _, step = name.partition("@")
        if arm not in cfg.recipes or not step.isdigit():
            raise UserError(f"{path}: choose names {name!r}; a candidate is arm@step with an arm of {', '.join(cfg.recipes)}")
    prerequisites = []
    for pre in cfg.prerequisites:
        if not Path(pre).is_file():
            raise UserError(f"{path}: prerequisite config not found: {pre}")
        _, pre_cfg = load_recipe_config(pre)
        prerequisites.append(Job(f"prerequisite {pre}", Path(pre).stem, None, pre, [], str(run_folder(pre_cfg.run).path)))
    matrix = sorted(((seed, arm) for arm in cfg.recipes for seed in cfg.arm_seeds.get(arm, cfg.seeds)),
                    key=lambda sa: (sa[0], list(cfg.recipes).index(sa[1])))
    jobs = [Job(f"{i}/{len(matrix)} {arm} seed {seed}", arm, seed, cfg.recipes[arm], run_overrides(cfg, arm, seed),
                str(RunFolder.in_study(study_root(cfg), arm, seed).path), resumable=not is_pipeline(cfg.recipes[arm]))
            for i, (seed, arm) in enumerate(matrix, 1)]
    return prerequisites, jobs


def arm_evals(cfg: StudyConfig, arm: str):
    """The `eval` sections of an arm's first and last stage (the same for a single recipe), as the
    study's overrides leave them."""
    overrides = run_overrides(cfg, arm, (cfg.arm_seeds.get(arm) or cfg.seeds)[0])
    if is_pipeline(cfg.recipes[arm]):
        stages = [c for _, _, c, _ in pipeline_stages(cfg.recipes[arm], overrides)[1]]
    else:
        stages = [load_recipe_config(cfg.recipes[arm], overrides)[1]]
    return stages[0].eval, stages[-1].eval


def study_task(cfg: StudyConfig) -> str:
    """The held-out task a study's claims and report read: its `task:`, or else the first task its
    base arm is evaluated on (a GSM8K study reads GSM8K without saying so twice)."""
    if cfg.task:
        return cfg.task
    arm = cfg.base_arm if cfg.base_arm in cfg.recipes else next(iter(cfg.recipes))
    return arm_evals(cfg, arm)[1].tasks[0]


def eval_samples(cfg: StudyConfig, arm: str) -> dict[str, int]:
    """Samples per problem an arm's runs are evaluated with: `before` (its starting model), `after`
    (its final model) and `curve` (its checkpoints on the way; 0 without any); a pipeline's are
    its first stage's start and its last stage's end and checkpoints."""
    first, last = arm_evals(cfg, arm)
    return {"before": first.before_samples or first.samples, "after": last.samples,
            "curve": (last.curve_samples or last.samples) if last.curve_steps else 0}


def check_claims_readable(cfg: StudyConfig, path: str = "study") -> None:
    """Refuse, before anything runs, a claim on pass@K whose arms are not sampled K times a problem
    where it reads them: the base (`base_arm` before training) and the arm's own start at `before`,
    other arms at their end, and at their checkpoints too for a matched-compute claim."""

    for claim in cfg.claims:
        m = re.fullmatch(r"(?:pass|maj)@(\d+)(?:_lenient)?", claim.metric)
        if not m or int(m.group(1)) <= 1:
            continue
        k = int(m.group(1))
        for side in (claim.arm, claim.against):
            if side is None:
                continue
            arm, when = {"base": (cfg.base_arm, "before"), "before": (claim.arm, "before")}.get(side, (side, "after"))
            have = eval_samples(cfg, arm)
            reads = [when] + (["curve"] if claim.at_pflops is not None and when == "after" and have["curve"] else [])
            for w in reads:
                if have[w] < k:
                    field_name = {"before": "eval.before_samples", "after": "eval.samples", "curve": "eval.curve_samples"}[w]
                    where = {"before": "before training", "after": "after training", "curve": "at its checkpoints"}[w]
                    raise UserError(f"{path}: claim {claim.id} reads {claim.metric} of {side!r}, but arm {arm!r} is evaluated with "
                                    f"{have[w]} sample(s) a problem {where}; set {field_name} to at least {k}")


def still_to_run(cfg: StudyConfig, selected: list[Job], prerequisites: list[Job], executor: str, queued: set) -> tuple[list[Job], list[Job]]:
    """(runs, prerequisites) this invocation still has to train: finished ones, runs going on in
    another invocation on this machine and runs queued or running on Slurm (`queued`, whichever
    executor this invocation uses: two trainings of one folder would write over each other) are
    skipped with a line; a folder killed before it wrote its config is removed, so the run starts clean."""

    def busy(job: Job, label: str) -> bool:
        if job.folder in queued:
            print(f"[study {cfg.name}] {label}: queued or running on Slurm, skipped")
            return True
        if pid := running_elsewhere(job.folder):
            print(f"[study {cfg.name}] {label}: running in another invocation (pid {pid}), skipped")
            return True
        return False

    todo = []
    for job in selected:
        if final_run(job.config, job.overrides).finished:
            print(f"[study {cfg.name}] {job.label}: finished before, skipped")
            continue
        if busy(job, job.label):
            continue
        folder = RunFolder(job.folder)
        if job.resumable and folder.path.exists() and not folder.started:  # killed before it wrote its config
            shutil.rmtree(folder.path)
        todo.append(job)
    pending_pre = []
    for pre in prerequisites:
        if RunFolder(pre.folder).finished:
            print(f"[study {cfg.name}] prerequisite {pre.config}: finished before, skipped ({pre.folder})")
        elif not busy(pre, f"prerequisite {pre.config}"):
            pending_pre.append(pre)
    return todo, pending_pre


def train_in_process(job: Job, resume: bool) -> None:
    """Train one run (or prerequisite) in this process, its job.json recording start and end, and
    its peak memory its own (not that of the runs this process trained before it)."""
    reset_peak_memory()
    earlier = earlier_seconds(read_job_record(job.folder), Path(job.folder))  # a resumed run's earlier sittings, for --status
    write_job_record(job.folder, {"executor": "local", "host": socket.gethostname(), "pid": os.getpid(), "worker": 0,
                                  "command": "in process", "started_utc": utc_now(), "exit_code": None, "ended_utc": None,
                                  "earlier_seconds": earlier})
    train_from_config(job.config, job.overrides, resume=job.folder if resume else None)
    write_job_record(job.folder, {"exit_code": 0, "ended_utc": utc_now()})


def run_study(path: str, overrides: list[str] | None = None, jobs: int = 1, executor: str = "local", dry_run: bool = False,
              only: list[str] | None = None, archive: str | None = None) -> StudyConfig:
    """Run the study's prerequisites, then its runs. `local`: in this process (jobs = 1 on a CPU), or
    `jobs` at a time in subprocesses pinned to their GPUs or CPU threads; `slurm`: submitted as a
    job array (`executors.submit_slurm`). Finished runs are skipped; stopped ones resume.

    `only` (["r1_zero", "hybrid:2"]): just these arms or runs, in that order. `archive`: a folder
    that outlives this machine (`archive_run`): finished runs found there are restored before
    anything runs, and each run is archived as soon as it and its transfer measurements finish.
    It runs `blind`: no held-out figure reaches the console or a worker's log before the report."""
    with blind():
        return _run_study(path, overrides, jobs, executor, dry_run, only, archive)


def _run_study(path, overrides, jobs, executor, dry_run, only, archive) -> StudyConfig:
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    cfg = load_config(StudyConfig, path, overrides)
    prerequisites, matrix = plan(cfg, path)
    if archive and not dry_run:
        restore_runs(cfg, matrix, Path(archive))
    selected = select_runs(matrix, only) if only else matrix
    records = {j.folder: read_job_record(j.folder) for j in prerequisites + matrix}
    slurm_ids = [r["job_id"] for r in records.values() if r.get("executor") == "slurm" and r.get("job_id")]
    states = sacct_states(slurm_ids)  # one sacct call for the whole study ({} when nothing was submitted; None when sacct failed)
    if states is None:
        unknown = [f for f, r in records.items() if r.get("executor") == "slurm" and r.get("job_id") and r.get("exit_code") is None]
        if unknown and executor == "slurm":
            raise UserError(f"sacct gave no answer, so whether {len(unknown)} submitted run(s) are still queued or running is unknown "
                            f"(first: {unknown[0]}); submitting them again would train them twice: run again when sacct answers")
        if unknown:
            print(f"[study {cfg.name}] sacct gave no answer: {len(unknown)} run(s) submitted to Slurm are taken as not running")
        states = {}
    queued = {folder for folder, r in records.items() if states.get(r.get("job_id")) in SLURM_ACTIVE}  # pending or running on Slurm
    todo, pending_pre = still_to_run(cfg, selected, prerequisites, executor, queued)
    # a prerequisite still training elsewhere: the arms must not start before it ends (a student before its teacher)
    on_slurm = tuple(records[p.folder]["job_id"] for p in prerequisites if p.folder in queued)
    elsewhere = [p for p in prerequisites if p.folder not in queued and not RunFolder(p.folder).finished and running_elsewhere(p.folder)]
    if todo and (elsewhere or (on_slurm and executor != "slurm")):
        busy = (elsewhere or [p for p in prerequisites if p.folder in queued])[0]
        raise UserError(f"prerequisite {busy.config} is still training ({busy.folder}), and the arms need it: run the study again "
                        f"once it has finished" + ("" if elsewhere else " (or with --executor slurm, which waits for it)"))
    if dry_run:  # each run checked as `train --dry-run` checks it (model names, data, backend), before anything is printed
        built = tuple(str(pre.folder) for pre in prerequisites)
        notes = dict.fromkeys(w for j in pending_pre + todo for w in check_run(j.config, j.overrides, built_by_others=built).get("warnings", []))
        for note in notes:
            print(f"[study {cfg.name}] warning: {note}")
    if executor == "slurm":
        ids = submit_slurm(cfg.name, study_root(cfg), pending_pre, todo, cfg.cluster, dry_run=dry_run, waiting_on=on_slurm)
        if not dry_run:
            print(f"[study {cfg.name}] submitted {len(ids['prerequisites'])} prerequisite job(s) {ids['prerequisites']} and "
                  f"{len(ids['array'])} array element(s); follow with: rlsft study {path} --status")
        return cfg
    if dry_run:
        for j in pending_pre + todo:
            print(f"[{j.label}] {shlex.join(train_command(j, python='python'))}")
        return cfg
    for pre in pending_pre:  # once, before any arm, in this process with every core; an unfinished one resumes
        print(f"[study {cfg.name}] prerequisite {pre.config} -> {pre.folder}")
        train_in_process(pre, resume=RunFolder(pre.folder).started)
    # How long this invocation took, for the report (skipped runs cost nothing): one line when it
    # starts and one when it ends, so an invocation that was killed still shows, as interrupted.
    t0 = time.time()
    workers = local_workers(jobs, cfg.cluster.gpus_per_run)
    in_process = jobs <= 1 and "CUDA_VISIBLE_DEVICES" not in workers[0]
    session = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "jobs": jobs, "executor": executor,
               "torch_threads_per_run": threads_per_run(jobs), "runs_trained": len(todo), "runs_skipped": len(selected) - len(todo),
               "wall_seconds": None}
    if todo:
        log_session(study_root(cfg), session)
    keep = (lambda job: archive_run(cfg, job, Path(archive))) if archive else None
    if in_process:
        for job in todo:
            if pid := running_elsewhere(job.folder):  # started by another invocation since this one began
                print(f"[study {cfg.name}] {job.label}: running in another invocation (pid {pid}), skipped")
                continue
            print(f"[study {cfg.name}] {job.label} -> {job.folder}")
            train_in_process(job, resume=job.resumable and RunFolder(job.folder).started)
            run_transfer(cfg, [job])
            if keep:
                keep(job)
    else:  # each run's transfer measurements follow it on its worker, while its model is on this machine
        run_local(cfg.name, todo, workers, study_root(cfg) / "logs", cfg.cluster.gpus_per_run, cfg.cluster.accelerate_config,
                  then=lambda job: [eval_command(a) for _, a in transfer_evals(cfg, job)], done=keep)
    if todo:
        log_session(study_root(cfg), {**session, "wall_seconds": round(time.time() - t0, 1)})
    run_transfer(cfg, selected)  # what is still missing: runs finished before this invocation
    if archive:
        for job in selected:
            archive_run(cfg, job, Path(archive))
    return cfg


def select_runs(matrix: list[Job], only: list[str]) -> list[Job]:
    """The runs `--only` names (an arm, or arm:seed), in the order named.

    >>> m = [Job("1/3 a seed 0", "a", 0, "a.yaml", [], "r/a/seed0"), Job("2/3 b seed 0", "b", 0, "b.yaml", [], "r/b/seed0"),
    ...      Job("3/3 a seed 1", "a", 1, "a.yaml", [], "r/a/seed1")]
    >>> [j.label for j in select_runs(m, ["b", "a:1"])]
    ['2/3 b seed 0', '3/3 a seed 1']
    >>> select_runs(m, ["a:7"])
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: --only a:7: no such run in the study; its runs: a:0, b:0, a:1
    """
    chosen = []
    for spec in only:
        arm, _, seed = spec.partition(":")
        found = [j for j in matrix if j.arm == arm and (not seed or str(j.seed) == seed)]
        if not found:
            raise UserError(f"--only {spec}: no such run in the study; its runs: {', '.join(f'{j.arm}:{j.seed}' for j in matrix)}")
        chosen += [j for j in found if j not in chosen]
    return chosen


def all_finished(cfg: StudyConfig, path: str = "study") -> bool:
    """Every run of the study's matrix has finished (its report can be written)."""
    return all(final_run(j.config, j.overrides).finished for j in plan(cfg, path)[1])


# ---------------------------------------------------------------------------- the archive
# A study on a machine that does not outlive its session (a laptop, a preemptible node, a fresh
# checkout each sitting) keeps its finished runs in an archive: each run folder without its weights
# (model/ and checkpoints/: 0.5 to 2 GB a run for a real model; no reader of a finished run needs
# them), with its log. `--archive DIR` restores them on the next machine, so the study goes on
# where it stopped, and `rlsft report DIR` reads the archive as it reads a study folder.
LEFT_OUT = ("model", "checkpoints", "generation.partial.json")
_ARCHIVE_LOCK = threading.Lock()  # local workers archive from their own threads


def copy_log(job: Job, src: Path, dst: Path, replace: bool = True) -> None:
    """Copy a run's log, `src/logs/<arm>-seed<k>.log`, to the same place under `dst`, if it exists
    (and, with replace=False, only where `dst` has none: a restore never overwrites this machine's log)."""
    name = f"{job.arm}-seed{job.seed}.log"
    log, to = Path(src) / "logs" / name, Path(dst) / "logs" / name
    if log.is_file() and (replace or not to.exists()):
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, to)


def archived_folder(archive: Path, job: Job) -> Path:
    """Where `archive` keeps a run: `<arm>/seed<k>/`, as in the study folder."""
    return Path(archive) / job.arm / f"seed{job.seed}"


def archive_run(cfg: StudyConfig, job: Job, archive: Path) -> bool:
    """Copy a finished run (with its transfer measurements) into `archive/<arm>/seed<k>/`, weights
    left out, once; True when it was copied now. Written under a temporary name and renamed, so
    an archive never holds half a run. The study's sessions.jsonl lines are merged in too."""
    with _ARCHIVE_LOCK:
        return _archive_run(cfg, job, archive)


def _archive_run(cfg: StudyConfig, job: Job, archive: Path) -> bool:
    src, dst = Path(job.folder), archived_folder(archive, job)
    merge_sessions(study_root(cfg), archive)
    if dst.exists() or not final_run(job.config, job.overrides).finished or transfer_evals(cfg, job):
        return False
    tmp = dst.with_name(f".{dst.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*LEFT_OUT))
    copy_log(job, study_root(cfg), archive)
    tmp.rename(dst)
    if unfinished_folder(archive, job).exists():
        shutil.rmtree(unfinished_folder(archive, job))  # the finished run supersedes its sitting's state
    print(f"[study {cfg.name}] {job.label}: archived in {dst} (weights left out)")
    return True


# A run longer than a sitting, on machines that do not outlive the sitting, needs its state to
# outlive it too: `--keep-unfinished` copies each stopped run's newest checkpoint and what it has
# made so far into the archive, which is small enough to commit only where the checkpoint is small
# (LoRA: its adapters and their Adam moments, a few MB for a 0.5B model at rank 1; full fine-tuning
# of the same model: the weights and both moments, about 6 GB).
UNFINISHED_LIMIT_MB = 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "tokenizer.model")  # a checkpoint's copy; a resume reads none


def unfinished_folder(archive: Path, job: Job) -> Path:
    """Where `archive` keeps a stopped run's state: `<arm>/.seed<k>.unfinished/` (a dot: no report reads it as a run)."""
    return Path(archive) / job.arm / f".seed{job.seed}.unfinished"


def keep_unfinished(path: str, overrides: list[str] | None, archive: str) -> list[Job]:
    """`rlsft study CONFIG --archive DIR --keep-unfinished`: copy each started, unfinished run of the
    study into `unfinished_folder` (replacing an older
    copy, atomically), for a later `--archive` on another machine to resume: its config, logs and
    metrics, the evaluations it has made (a stopped evaluation's `generation.partial.json` too) and
    its newest complete checkpoint, less `model/` and the checkpoint's tokenizer files. Run it with
    the study stopped. Checks every run first and writes nothing if one cannot be kept: a state over
    `UNFINISHED_LIMIT_MB`. A pipeline is kept while no stage has finished; one with a finished
    stage is not kept, said so (the next stage starts from that stage's model/, GBs). A run that has finished but not yet made its `transfer:` measurements is kept
    the same way without its run.json: the next machine resumes it at its last step's checkpoint,
    which trains nothing (`rlsft.trainer.train`), keeps its evaluations, and remakes its model for
    the transfer. Returns the runs kept."""
    cfg, archive = load_config(StudyConfig, path, overrides), Path(archive)
    started, waiting = [], []  # unfinished runs; finished single-stage runs still to be transferred
    for job in plan(cfg, path)[1]:
        run = RunFolder(job.folder)
        if not (run.started or any(stage.started for stage in run.stages())):  # a pipeline's config is its stages'
            continue
        if not final_run(job.config, job.overrides).finished:
            if any(stage.finished or stage.model_dir.is_dir() for stage in run.stages()):
                print(f"[study {cfg.name}] {job.label}: unfinished, not kept (a stage has finished, and the next starts from its "
                      f"model/, GBs); finish the pipeline on this machine")
                continue
            started.append(job)
        elif transfer_evals(cfg, job):
            if RunFolder(job.folder).stages():
                print(f"[study {cfg.name}] {job.label}: finished, its transfer not made, not kept (a pipeline's final "
                      f"stage starts from an earlier stage's model/, GBs); its transfer needs this machine")
            else:
                waiting.append(job)
    plans, limit = [(job, _unfinished_ignore(Path(job.folder))) for job in started + waiting], UNFINISHED_LIMIT_MB * 2**20
    too_big = [(job, kept) for job, kept in plans if job in waiting and kept[1] > limit]  # skipped alone: an unfinished run refuses all
    for job, (_, size) in too_big:
        print(f"[study {cfg.name}] {job.label}: finished, its transfer not made, not kept ({size / 2**20:,.0f} MB, over "
              f"{UNFINISHED_LIMIT_MB} MB); its transfer needs this machine")
    plans = [p for p in plans if p not in too_big]
    behind = [(job, kept) for job, kept in plans if trained_steps(unfinished_folder(archive, job)) > trained_steps(Path(job.folder))]
    for job, _ in behind:  # another machine took it further since: this older state must not replace that one
        print(f"[study {cfg.name}] {job.label}: not kept, the archive's state ({unfinished_folder(archive, job)}) is further along "
              f"({trained_steps(unfinished_folder(archive, job))} steps against {trained_steps(Path(job.folder))} here)")
    plans = [p for p in plans if p not in behind]
    for job, (ignore, size) in plans:
        if size > limit:
            raise UserError(f"{job.label}: its state is {size / 2**20:,.0f} MB, over the {UNFINISHED_LIMIT_MB} MB an archive keeps of an "
                            f"unfinished run (full fine-tuning's checkpoint holds every weight and two Adam moments; LoRA's a few MB): "
                            f"finish it in one sitting, or train with model.lora_r > 0")
    for job, (ignore, size) in plans:
        with _ARCHIVE_LOCK:
            merge_sessions(study_root(cfg), archive)
            copy_tree_atomic(job.folder, unfinished_folder(archive, job), ignore=ignore)
            copy_log(job, study_root(cfg), archive)
            record = read_job_record(job.folder)  # timed here: a worker's log, or in process the run's newest checkpoint
            if record:
                write_job_record(unfinished_folder(archive, job), closed_sitting(record, Path(record["log"]) if record.get("log") else Path(job.folder)))
        steps = ", ".join(c.name for c in newest_checkpoints(Path(job.folder))) or "no checkpoint yet"
        state = "finished, its transfer not made" if job in waiting else "unfinished"
        print(f"[study {cfg.name}] {job.label}: {state}, kept in {unfinished_folder(archive, job)} ({steps}, {size / 2**20:.1f} MB)")
    return [job for job, _ in plans]


def _unfinished_ignore(run: Path):
    """(`shutil.copytree` ignore function, bytes it keeps) for an unfinished run's state: no
    `model/` or run.json, only each `checkpoints/` folder's newest complete checkpoint, without tokenizer files."""
    top, record = run.resolve(), RunFolder(run).record_file.name
    keep = {c.resolve() for c in newest_checkpoints(run)}

    def ignore(directory, names):
        d = Path(directory).resolve()
        left_out = {n for n in names if n == "model" or (d == top and n == record)}  # run.json: a finished run waiting for its transfer
        if d.name == "checkpoints":
            left_out |= {n for n in names if (d / n).resolve() not in keep}
        if d in keep:
            left_out |= {n for n in names if n in TOKENIZER_FILES}
        return left_out

    size = 0
    for directory, dirs, files in os.walk(run):
        skipped = ignore(directory, dirs + files)
        dirs[:] = [x for x in dirs if x not in skipped]
        size += sum(os.path.getsize(os.path.join(directory, f)) for f in files if f not in skipped)
    return ignore, size


def restore_runs(cfg: StudyConfig, matrix: list[Job], archive: Path) -> None:
    """Copy each archived run that is not finished here into the study's folder (with its log); and
    each run kept unfinished there (`keep_unfinished`) that this machine has not started, to resume."""

    for job in matrix:
        src, dst = archived_folder(archive, job), Path(job.folder)
        if final_run(job.config, job.overrides).finished:
            continue
        if not src.is_dir():
            restore_unfinished(cfg, job, archive)
            continue
        if dst.exists():
            if RunFolder(dst).trained or any(s.trained for s in RunFolder(dst).stages()):
                raise UserError(f"{dst} holds an unfinished run and {src} the finished one; remove one of them")
            if pid := running_elsewhere(dst):  # still loading or in its pre-flight here: never deleted under it
                print(f"[study {cfg.name}] {job.label}: running in another invocation (pid {pid}); the archive's finished copy not restored")
                continue
            shutil.rmtree(dst)  # only a job.json or a config: nothing trained
        copy_tree_atomic(src, dst)  # a copy cut short is never read as a finished run (its run.json may be copied early)
        copy_log(job, archive, study_root(cfg), replace=False)
        print(f"[study {cfg.name}] {job.label}: restored from {src}")
    merge_sessions(archive, study_root(cfg))


def restore_unfinished(cfg: StudyConfig, job: Job, archive: Path) -> None:
    """Copy `unfinished_folder(archive, job)` into the run's folder when this machine has not
    started the run, or when the archive's state is further along (`trained_steps`) and the run is
    not running here or on Slurm; otherwise a folder with something trained or evaluated here is
    this machine's, and is kept."""
    src, dst = unfinished_folder(archive, job), Path(job.folder)
    if not src.is_dir():
        return
    if dst.exists():
        made_here = RunFolder(dst).trained or any(s.trained for s in RunFolder(dst).stages()) or any(dst.rglob("generation.partial.json")) \
            or any(dst.rglob("metrics.json"))
        live = _live(dst)
        if not made_here and running_elsewhere(dst):  # started here and still loading or in its pre-flight: never deleted under it
            print(f"[study {cfg.name}] {job.label}: running in another invocation; the archive's unfinished state ({src}) not restored")
            return
        if made_here and (trained_steps(src) <= trained_steps(dst) or live):  # a run training now is never swapped under it
            print(f"[study {cfg.name}] {job.label}: this machine's unfinished run kept; the archive's ({src}) not restored"
                  + (" (it is running, or submitted to Slurm)" if live and trained_steps(src) > trained_steps(dst) else ""))
            return
        if made_here:  # another machine took it further since this one stopped: its state wins
            print(f"[study {cfg.name}] {job.label}: the archive's state is further along ({trained_steps(src)} steps against "
                  f"{trained_steps(dst)} here); this machine's replaced")
        else:
            shutil.rmtree(dst)  # only a job.json or a config: nothing made
    copy_tree_atomic(src, dst)
    copy_log(job, archive, study_root(cfg), replace=False)
    checkpoint = RunFolder(dst).last_checkpoint()
    print(f"[study {cfg.name}] {job.label}: restored unfinished from {src} ({checkpoint.name if checkpoint else 'no checkpoint yet'})")


def _live(folder: Path) -> bool:
    """Is the run in `folder` training in another invocation here, or submitted to Slurm and not ended?"""
    record = read_job_record(folder)
    return bool(running_elsewhere(folder)) or (record.get("executor") == "slurm" and record.get("exit_code") is None)


def trained_steps(run: Path) -> int:
    """Optimizer steps a run's newest checkpoints hold, summed over its stages (a pipeline's): how far
    along a state is, whichever machine's files (file times, which a checkout resets, are not read).

    >>> trained_steps(Path("no-such-run"))
    0
    """
    return sum(checkpoint_step(c) for c in newest_checkpoints(run))


def newest_checkpoints(run: Path) -> list[Path]:
    """The newest complete checkpoint of each stage of a run (one for a single run; none when absent)."""
    if not run.is_dir():
        return []
    return [c for c in (RunFolder(d.parent).last_checkpoint() for d in run.rglob("checkpoints") if d.is_dir()) if c]


def merge_sessions(src: Path, dst: Path) -> None:
    """Append to dst/sessions.jsonl the lines of src/sessions.jsonl it lacks (order kept)."""
    if not (src / "sessions.jsonl").is_file():
        return
    have = (dst / "sessions.jsonl").read_text().splitlines() if (dst / "sessions.jsonl").is_file() else []
    new = [line for line in (src / "sessions.jsonl").read_text().splitlines() if line.strip() and line not in have]
    if new:
        dst.mkdir(parents=True, exist_ok=True)
        with open(dst / "sessions.jsonl", "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in new))


def transfer_evals(cfg: StudyConfig, job: Job) -> list[tuple[str, "EvalArgs"]]:
    """The `transfer:` measurements of one finished run still to make, as (who, EvalArgs): its
    final model into its `transfer_dir(task)` for each listed seed and, for `base_arm`'s run, the
    base model (its first stage's, at its hub revision) into that stage's
    `transfer_dir(task, before=True)`. Both are evaluated as the run evaluates (`eval_args` of its
    last stage: prompt form, sampling, dtype, batching, seed) on the task's test split, with the
    transfer's problems, samples and token budget."""
    stages = stage_configs(job.config, job.overrides)
    (first_cfg, first), (last_cfg, run) = stages[0], stages[-1]
    if not run.finished:
        return []
    # the run's prompt form as it resolved (config.yaml keeps `auto`)
    last_cfg = replace(last_cfg, data=replace(last_cfg.data, template=run.run_record.template))
    todo = []
    for t in cfg.transfer:
        if job.seed not in t.seeds:
            continue
        targets = [(run.transfer_dir(t.task), str(run.model_dir), None, job.arm)]
        if job.arm == cfg.base_arm:
            targets.append((first.transfer_dir(t.task, before=True), first_cfg.model.name, first_cfg.model.revision, "base"))
        todo += [(who, replace(eval_args(last_cfg, model, t.task, out, t.samples, revision=revision),
                                           n=t.n, split="test", max_new_tokens=t.max_new_tokens))
                 for out, model, revision, who in targets if not (out / "metrics.json").is_file()]
    return todo


def eval_command(args: "EvalArgs", python: str | None = None) -> list[str]:
    """The `rlsft eval` command line of `args` (its fields that differ from the defaults).

    >>> from rlsft.scoring.evaluate import EvalArgs
    >>> " ".join(eval_command(EvalArgs(model="m", task="gsm8k", out="o", n=64, think_prefill=True), python="python"))
    'python -m rlsft.cli eval --model m --task gsm8k --out o --n 64 --think-prefill'
    """

    command = [python or sys.executable, "-m", "rlsft.cli", "eval"]
    for f in fields(args):
        value = getattr(args, f.name)
        if f.name in ("model", "task", "out") or value != f.default:
            flag = "--" + f.name.replace("_", "-")
            command += [flag] if value is True else [flag, str(value)]
    return command


def run_transfer(cfg: StudyConfig, jobs: list[Job]) -> None:
    """The `transfer:` measurements still missing for the finished runs among `jobs`, in this
    process. A finished one is kept; a killed one continues (evaluate's progress file). A run
    restored from an archive without its measurement cannot be measured (its weights were not
    kept): it is named, not skipped silently."""

    for job in jobs:
        for who, args in transfer_evals(cfg, job):
            if who != "base" and not Path(args.model).is_dir():
                print(f"[study {cfg.name}] transfer: {job.label} on {args.task} cannot be measured: its model was not kept ({args.model})")
                continue
            print(f"[study {cfg.name}] transfer: {who} seed {job.seed} on {args.task} -> {args.out}")
            evaluate(args)
            print(f"[study {cfg.name}] transfer: {who} seed {job.seed} on {args.task}: done (the report reads it)")


def study_status(path: str, overrides: list[str] | None = None, archive: str | None = None) -> dict:
    """`rlsft study CONFIG --status [--archive DIR]`: where each run of the study stands
    (`executors.status`); a run finished only in the archive (not restored yet) counts as done."""
    cfg = load_config(StudyConfig, path, overrides)
    prerequisites, matrix = plan(cfg, path)
    kept = {j.folder: archived_folder(archive, j) for j in matrix} if archive else {}
    return status(cfg.name, prerequisites + matrix, archived={f: p for f, p in kept.items() if p.is_dir()})


def log_session(root: Path, session: dict) -> None:
    """Append one line to `root/sessions.jsonl` (appended, never rewritten: an earlier line survives a kill)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sessions.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(session) + "\n")


def threads_per_run(jobs: int) -> int:
    """Torch threads of each run: all cores for one run in this process, cores // jobs otherwise."""
    import torch

    return torch.get_num_threads() if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)
