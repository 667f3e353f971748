"""`rlsft study CONFIG`: a matrix of recipes x seeds from one YAML, then the claims checked.

Each (arm, seed) runs in `RunFolder.in_study(root, arm, seed)` with `run.seed=k`; a finished run
is skipped and an unfinished one resumes from its latest checkpoint, so an interrupted study goes
on where it stopped. Pipelines run their stages under that folder the same way. Every run logs to
wandb with the study's name as its group and `<arm>/seed<k>` as its name.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlsft.analysis.claims import Claim
from rlsft.config import load_config
from rlsft.io import UserError
from rlsft.runs.folder import RunFolder


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


def study_root(cfg: StudyConfig) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir else Path("runs") / "studies" / cfg.name


def run_overrides(cfg: StudyConfig, arm: str, seed: int) -> list[str]:
    """What the study sets on one run: its folder, seed, wandb group and name, and the study's overrides."""
    from rlsft.launch import is_pipeline

    folder = RunFolder.in_study(study_root(cfg), arm, seed)
    placed = [f"run.out_dir={folder.path}", f"run.seed={seed}", f"run.group={cfg.name}", f"run.name={arm}/seed{seed}"]
    extra = cfg.overrides + cfg.arm_overrides.get(arm, [])
    if is_pipeline(cfg.recipes[arm]):  # a pipeline hands the study's overrides to each stage
        return placed + [f"stage_overrides={extra}"]
    return extra + placed


def run_study(path: str, overrides: list[str] | None = None, jobs: int = 1) -> StudyConfig:
    """Run the study's prerequisites, then its runs: in this process, or `jobs` at a time in subprocesses."""
    from rlsft.launch import final_run, is_pipeline, load_recipe_config, train_from_config
    from rlsft.trainer import run_folder

    cfg = load_config(StudyConfig, path, overrides)
    unknown = (set(cfg.arm_overrides) | set(cfg.arm_seeds)) - set(cfg.recipes)
    if unknown:
        raise UserError(f"{path}: arm_overrides or arm_seeds name unknown arm(s) {sorted(unknown)}; arms: {', '.join(cfg.recipes)}")
    for arm, rpath in cfg.recipes.items():  # validate everything before running anything
        if not Path(rpath).is_file():
            raise UserError(f"{path}: recipe config for arm {arm!r} not found: {rpath}")
        if not is_pipeline(rpath):
            load_recipe_config(rpath, cfg.overrides + cfg.arm_overrides.get(arm, []))
    for pre in cfg.prerequisites:  # once, before any arm; finished ones are skipped, unfinished ones resume
        if not Path(pre).is_file():
            raise UserError(f"{path}: prerequisite config not found: {pre}")
        _, pre_cfg = load_recipe_config(pre)
        done = run_folder(pre_cfg.run)
        if done.finished:
            print(f"[study {cfg.name}] prerequisite {pre}: finished before, skipped ({done.path})")
            continue
        print(f"[study {cfg.name}] prerequisite {pre} -> {done.path}")
        train_from_config(pre, resume=str(done.path) if done.started else None)
    todo = []  # (label, config path, overrides, resume folder or None, run folder), seed-major order
    matrix = sorted(((seed, arm) for arm in cfg.recipes for seed in cfg.arm_seeds.get(arm, cfg.seeds)),
                    key=lambda sa: (sa[0], list(cfg.recipes).index(sa[1])))  # seed-major: a study stopped early has whole seeds
    total = len(matrix)
    for i, (seed, arm) in enumerate(matrix, 1):
        rpath = cfg.recipes[arm]
        label = f"{i}/{total} {arm} seed {seed}"
        folder, overrides = RunFolder.in_study(study_root(cfg), arm, seed), run_overrides(cfg, arm, seed)
        if final_run(rpath, overrides).finished:
            print(f"[study {cfg.name}] {label}: finished before, skipped")
            continue
        if is_pipeline(rpath):  # a pipeline resumes its unfinished stage by itself
            todo.append((label, rpath, overrides, None, folder))
            continue
        if folder.path.exists() and not folder.started:  # killed before it wrote its config: nothing to keep
            import shutil

            shutil.rmtree(folder.path)
        # an interrupted run goes on from its latest checkpoint
        todo.append((label, rpath, overrides, str(folder.path) if folder.started else None, folder))
    # How long this invocation took, for the report (skipped runs cost nothing): one line when it
    # starts and one when it ends, so an invocation that was killed still shows, as interrupted.
    t0 = time.time()
    session = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "jobs": jobs,
               "torch_threads_per_run": threads_per_run(jobs), "runs_trained": len(todo), "runs_skipped": total - len(todo),
               "wall_seconds": None}
    if todo:
        log_session(study_root(cfg), session)
    if jobs <= 1:
        for label, rpath, overrides, resume, folder in todo:
            print(f"[study {cfg.name}] {label} -> {folder.path}")
            train_from_config(rpath, overrides, resume=resume)
    else:
        run_parallel(cfg.name, todo, jobs, study_root(cfg) / "logs")
    if todo:
        log_session(study_root(cfg), {**session, "wall_seconds": round(time.time() - t0, 1)})
    return cfg


def log_session(root: Path, session: dict) -> None:
    """Append one line to `root/sessions.jsonl` (appended, never rewritten: an earlier line survives a kill)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sessions.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(session) + "\n")


def run_parallel(name: str, todo: list[tuple], jobs: int, logs: Path) -> None:
    """Run `rlsft train` for each job, `jobs` at a time, each with cores // jobs torch threads.

    On a CPU the micro models are too small for two threads to halve a step, so two one-thread
    runs side by side finish a study sooner than one two-thread run after another. Each run's output
    goes to logs/<arm>-seed<k>.log. A failed run does not stop the others; once all have ended,
    the study fails with one line naming the first failed run's log.
    """
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_run(jobs)))

    def one(job):
        label, rpath, overrides, resume, folder = job
        arm, seed = folder.arm_and_seed()
        log = logs / f"{arm}-seed{seed}.log"
        sys.stdout.write(f"[study {name}] {label} -> {folder.path} (log: {log})\n")  # one write: jobs print side by side
        sys.stdout.flush()
        cmd = [sys.executable, "-m", "rlsft.cli", "train", rpath, *overrides] + (["--resume", resume] if resume else [])
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        sys.stdout.write(f"[study {name}] {label}: {'done' if rc == 0 else f'failed (exit {rc})'}\n")
        sys.stdout.flush()
        return label, rc, log

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [(label, rc, log) for label, rc, log in pool.map(one, todo) if rc != 0]
    if failed:
        label, rc, log = failed[0]
        raise UserError(f"{len(failed)} study run(s) failed, first {label} (exit {rc}); see {log}")


def threads_per_run(jobs: int) -> int:
    """Torch threads of each run: all cores for one run in this process, cores // jobs otherwise."""
    import torch

    return torch.get_num_threads() if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)
