"""`rlsft study CONFIG`: a matrix of recipes x seeds from one YAML, then the claims checked.

Each (recipe, seed) runs in <out_dir>/<recipe>/seed<k>/ with `run.seed=k`; a run whose
run.json exists is skipped and an unfinished one resumes from its latest checkpoint, so an
interrupted study goes on where it stopped. Pipelines run
their stages under that folder the same way.
"""

from __future__ import annotations

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


def run_study(path: str, overrides: list[str] | None = None) -> StudyConfig:
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
    total = len(cfg.recipes) * len(cfg.seeds)
    i = 0
    for seed in cfg.seeds:
        for arm, rpath in cfg.recipes.items():
            i += 1
            out = run_folder(cfg, arm, seed)
            final = final_run_dirs(cfg, arm, seed)
            if (final / "run.json").is_file():
                print(f"[study {cfg.name}] {i}/{total} {arm} seed {seed}: finished before, skipped")
                continue
            print(f"[study {cfg.name}] {i}/{total} {arm} seed {seed} -> {out}")
            extra = cfg.overrides + cfg.arm_overrides.get(arm, [])
            if is_pipeline(rpath):
                train_from_config(rpath, [f"run.out_dir={out}", f"run.seed={seed}", f"stage_overrides={extra}"])
            else:
                resume = (out / "config.yaml").is_file()  # an interrupted run goes on from its latest checkpoint
                if out.exists() and not resume:
                    import shutil

                    shutil.rmtree(out)
                train_from_config(rpath, extra + [f"run.out_dir={out}", f"run.seed={seed}", f"run.name={cfg.name}-{arm}-seed{seed}"],
                                  resume=str(out) if resume else None)
    return cfg
