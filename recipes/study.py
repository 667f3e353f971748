"""`rlsft study CONFIG`: a matrix of recipes x seeds from one YAML, then the claims checked.

Each (recipe, seed) runs in <out_dir>/<recipe>/seed<k>/ with `run.seed=k`; a run whose
run.json exists is skipped and an unfinished one resumes from its latest checkpoint, so an
interrupted study goes on where it stopped. Pipelines run
their stages under that folder the same way.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from recipes.claims import Claim
from recipes.config import load_config
from recipes.io import UserError


@dataclass
class StudyConfig:
    name: str
    recipes: dict[str, str]  # arm name -> recipe or pipeline config path
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str | None = None  # default runs/studies/<name>
    overrides: list[str] = field(default_factory=list)  # applied to every run (and every pipeline stage)
    arm_overrides: dict[str, list[str]] = field(default_factory=dict)  # per arm
    base_arm: str = "r1_zero"  # whose eval_before is the base model
    prerequisites: list[str] = field(default_factory=list)  # configs trained once before the matrix (e.g. an RL-trained teacher)
    claims: list[Claim] = field(default_factory=list)
    knobs_changed_after_results: list[str] = field(default_factory=list)  # listed in the report, honestly


def study_root(cfg: StudyConfig) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir else Path("runs") / "studies" / cfg.name


def run_folder(cfg: StudyConfig, arm: str, seed: int) -> Path:
    return study_root(cfg) / arm / f"seed{seed}"


def final_run_dirs(cfg: StudyConfig, arm: str, seed: int) -> Path:
    """The folder whose run.json holds the arm's final result (a pipeline's last stage)."""
    from recipes.train import is_pipeline, pipeline_stages

    path = cfg.recipes[arm]
    out = run_folder(cfg, arm, seed)
    if is_pipeline(path):
        _, stages = pipeline_stages(path, [f"run.out_dir={out}", f"run.seed={seed}"])
        return stages[-1][3]
    return out


def run_study(path: str, overrides: list[str] | None = None, jobs: int = 1) -> StudyConfig:
    """Run the study's prerequisites, then its runs: in this process, or `jobs` at a time in subprocesses."""
    from recipes.common import run_dir
    from recipes.train import is_pipeline, load_recipe_config, train_from_config

    cfg = load_config(StudyConfig, path, overrides)
    unknown = set(cfg.arm_overrides) - set(cfg.recipes)
    if unknown:
        raise UserError(f"{path}: arm_overrides names unknown arm(s) {sorted(unknown)}; arms: {', '.join(cfg.recipes)}")
    for arm, rpath in cfg.recipes.items():  # validate everything before running anything
        if not Path(rpath).is_file():
            raise UserError(f"{path}: recipe config for arm {arm!r} not found: {rpath}")
        if not is_pipeline(rpath):
            load_recipe_config(rpath, cfg.overrides + cfg.arm_overrides.get(arm, []))
    for pre in cfg.prerequisites:  # once, before any arm; finished ones are skipped, unfinished ones resume
        if not Path(pre).is_file():
            raise UserError(f"{path}: prerequisite config not found: {pre}")
        _, pre_cfg = load_recipe_config(pre)
        done = run_dir(pre_cfg.run)
        if (done / "run.json").is_file():
            print(f"[study {cfg.name}] prerequisite {pre}: finished before, skipped ({done})")
            continue
        print(f"[study {cfg.name}] prerequisite {pre} -> {done}")
        train_from_config(pre, resume=str(done) if (done / "config.yaml").is_file() else None)
    todo = []  # (label, config path, overrides, resume folder or None, run folder), seed-major order
    total, i = len(cfg.recipes) * len(cfg.seeds), 0
    for seed in cfg.seeds:
        for arm, rpath in cfg.recipes.items():
            i += 1
            label = f"{i}/{total} {arm} seed {seed}"
            out = run_folder(cfg, arm, seed)
            if (final_run_dirs(cfg, arm, seed) / "run.json").is_file():
                print(f"[study {cfg.name}] {label}: finished before, skipped")
                continue
            extra = cfg.overrides + cfg.arm_overrides.get(arm, [])
            if is_pipeline(rpath):  # a pipeline resumes its unfinished stage by itself
                todo.append((label, rpath, [f"run.out_dir={out}", f"run.seed={seed}", f"stage_overrides={extra}"], None, out))
                continue
            resume = (out / "config.yaml").is_file()  # an interrupted run goes on from its latest checkpoint
            if out.exists() and not resume:
                import shutil

                shutil.rmtree(out)
            todo.append((label, rpath, extra + [f"run.out_dir={out}", f"run.seed={seed}", f"run.name={cfg.name}-{arm}-seed{seed}"],
                         str(out) if resume else None, out))
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.time()
    if jobs <= 1:
        for label, rpath, overrides, resume, out in todo:
            print(f"[study {cfg.name}] {label} -> {out}")
            train_from_config(rpath, overrides, resume=resume)
    else:
        run_parallel(cfg.name, todo, jobs, study_root(cfg) / "logs")
    if todo:  # how long this invocation took, for the report (skipped runs cost nothing)
        session = {"started_utc": started, "jobs": jobs, "torch_threads_per_run": threads_per_run(jobs),
                   "runs_trained": len(todo), "runs_skipped": total - len(todo), "wall_seconds": round(time.time() - t0, 1)}
        with open(study_root(cfg) / "sessions.jsonl", "a") as f:
            f.write(json.dumps(session) + "\n")
    return cfg


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
        label, rpath, overrides, resume, out = job
        log = logs / f"{out.parent.name}-{out.name}.log"
        sys.stdout.write(f"[study {name}] {label} -> {out} (log: {log})\n")  # one write: jobs print side by side
        sys.stdout.flush()
        cmd = [sys.executable, "-m", "recipes.cli", "train", rpath, *overrides] + (["--resume", resume] if resume else [])
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
