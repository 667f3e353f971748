"""`rlsft train CONFIG [key=value ...] [--dry-run] [--resume RUN_DIR]`: run the recipe named by the
config's `recipe:` key, or a pipeline of recipes.

`RECIPES` is the registry of recipes: name -> the module (by name, imported when used, so the
library never imports its recipes at import time) exporting `Config`, `main`, `training_args` and
`estimate` (see recipes/__init__.py). Adding a recipe is one file and one entry here.

A pipeline config chains stages (SFT -> GRPO, distill -> GRPO):

    recipe: pipeline
    run: {name: micro-r1}
    stages:
      - {config: configs/micro/sft_cold_start.yaml}
      - {config: configs/micro/r1_zero.yaml, name: grpo, overrides: ["rewards={accuracy: 1.0, language: 0.2}"]}

Stage i runs in `RunFolder.stage(i, name)` of the pipeline's folder; from stage 2 on, `model.name`
is the previous stage's model. A finished stage is skipped and an unfinished one resumes, so an
interrupted pipeline goes on where it stopped.
"""

from __future__ import annotations

import importlib
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from rlsft.config import apply_overrides, from_dict, read_yaml, to_dict
from rlsft.io import HubUnreachable, UserError, atomic_write, to_json
from rlsft.models import check_model_name, load_tokenizer
from rlsft.runs.folder import RunFolder
from rlsft.scoring.evaluate import resolve_backend
from rlsft.scoring.rewards import get_reward
from rlsft.scoring.tasks import get_task
from rlsft.trainer import (
    TRAINING_DEFAULTS,
    check_data,
    differs_from_defaults,
    load_configured_model,
    prompt_dataset,
    run_folder,
    with_resolved_template,
)

RECIPES: dict[str, str] = {
    "grpo": "recipes.grpo",
    "sft": "recipes.sft",
    "distill": "recipes.distill",
}


def recipe_module(name: str) -> ModuleType:
    """The registered recipe `name`'s module, imported on first use."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name])


@dataclass
class Stage:
    config: str  # path of a recipe YAML (relative to the working directory)
    overrides: list[str] = field(default_factory=list)  # key=value, applied to that stage
    name: str | None = None  # default: the config file's stem


@dataclass
class PipelineRun:
    name: str
    out_dir: str | None = None
    seed: int = 0
    group: str | None = None  # wandb group (a study's name)


@dataclass
class PipelineConfig:
    run: PipelineRun
    stages: list[Stage]
    recipe: str = "pipeline"
    stage_overrides: list[str] = field(default_factory=list)  # key=value for every stage, or stage:key=value for one; they win over a stage's own


def load_recipe_config(path: str, overrides: list[str] | None = None) -> tuple[ModuleType, object]:
    """(recipe module, typed config) from a YAML file plus overrides; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    name = data.get("recipe")
    if name not in RECIPES:
        raise UserError(f"{path}: recipe must be one of {', '.join(RECIPES)} or pipeline, got {name!r}")
    module = recipe_module(name)
    try:
        cfg = from_dict(module.Config, data)
        check_names(cfg)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return module, cfg


def check_names(cfg) -> None:
    """Fail before anything runs on a task or reward name the registries do not know."""
    get_task(cfg.data.task)
    for task in cfg.eval.tasks:
        get_task(task)
    every = cfg.training.get("logging_steps", TRAINING_DEFAULTS["logging_steps"])
    off = [s for s in cfg.eval.curve_steps if s <= 0 or s % every]
    if off:
        raise UserError(f"eval.curve_steps {off} are not positive multiples of training.logging_steps ({every}): the curve is read where TRL logs")
    for reward in getattr(cfg, "rewards", {}):
        get_reward(reward)


def run_recipe(module: ModuleType, cfg, resume: bool = False) -> dict:
    """`module.main(cfg)`; a run that fails before it trained leaves no folder behind: on a user
    error, and on any other error while the folder holds only its config (a pre-flight record or an
    evaluation before training, even a partial one, is kept for `--resume`)."""
    folder = run_folder(cfg.run)
    existed = folder.path.exists()
    try:
        return module.main(cfg, resume=resume)
    except Exception as e:
        worth_keeping = folder.path.is_dir() and any(p.name == "probe.json" or p.name.startswith("eval") for p in folder.path.iterdir())
        if not existed and folder.path.is_dir() and not folder.trained and (isinstance(e, UserError) or not worth_keeping):
            shutil.rmtree(folder.path, ignore_errors=True)
        raise


def is_pipeline(path: str) -> bool:
    return read_yaml(path).get("recipe") == "pipeline"


def pipeline_stages(path: str, overrides: list[str] | None = None) -> tuple[PipelineConfig, list]:
    """The pipeline config and, per stage, (name, module, typed config, RunFolder)."""
    data = apply_overrides(read_yaml(path), overrides or [])
    try:
        pipe = from_dict(PipelineConfig, data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if not pipe.stages:
        raise UserError(f"{path}: a pipeline needs at least one stage")
    root = RunFolder(pipe.run.out_dir or f"runs/{pipe.run.name}")
    stages, previous = [], None
    names = [st.name or st.config.rsplit("/", 1)[-1].removesuffix(".yaml") for st in pipe.stages]
    for o in pipe.stage_overrides:  # "grpo:key=value" must name a stage: a misspelt one would be dropped silently
        key = o.split("=", 1)[0]
        if ":" in key and key.split(":", 1)[0] not in names:
            raise UserError(f"{path}: stage override {o!r} names no stage; stages: {', '.join(names)}")
    for i, st in enumerate(pipe.stages, 1):
        name = names[i - 1]
        folder = root.stage(i, name)
        forced = [f"run.name={pipe.run.name}-{name}", f"run.out_dir={folder.path}", f"run.seed={pipe.run.seed}"]
        forced.append(f"run.group={pipe.run.group or pipe.run.name}")  # a pipeline's stages side by side in wandb
        if previous is not None:
            forced.append(f"model.name={previous.model_dir}")
        mine = [o.split(":", 1)[1] if ":" in o.split("=", 1)[0] else o for o in pipe.stage_overrides
                if ":" not in o.split("=", 1)[0] or o.split(":", 1)[0] == name]  # "grpo:key=value" is for stage grpo only
        # the pipeline file's stage overrides first, then the caller's (command line, study arm), which win
        module, cfg = load_recipe_config(st.config, st.overrides + mine + forced)
        stages.append((name, module, cfg, folder))
        previous = folder
    prefilled = [name for name, _, cfg, _ in stages if cfg.data.think_prefill]
    if prefilled and len(prefilled) < len(stages):  # a stage learns to open <think> that the next stage's prompt already holds
        warnings.warn(f"{path}: stage(s) {', '.join(prefilled)} set data.think_prefill and the others do not, so the stages train "
                      f"and are evaluated on different prompt forms; set it on every stage (for example "
                      f"'{next(n for n, *_ in stages if n not in prefilled)}:data.think_prefill=true') or on none")
    return pipe, stages


def stage_configs(path: str, overrides: list[str] | None = None) -> list[tuple[object, RunFolder]]:
    """(typed config, RunFolder) of each stage of a pipeline, in order; of its one run for a recipe config."""
    if is_pipeline(path):
        return [(cfg, folder) for _, _, cfg, folder in pipeline_stages(path, overrides)[1]]
    cfg = load_recipe_config(path, overrides)[1]
    return [(cfg, run_folder(cfg.run))]


def final_run(path: str, overrides: list[str] | None = None) -> RunFolder:
    """The folder whose run.json holds a config's final result (a pipeline's last stage)."""
    return stage_configs(path, overrides)[-1][1]


def train_from_config(path: str, overrides: list[str] | None = None, resume: str | None = None) -> dict:
    """Run a recipe or a pipeline; returns the last stage's run record.

    `resume`: a run folder (a pipeline's folder for a pipeline) killed before it finished; the
    run goes on from its latest checkpoint. Pipelines always resume an unfinished stage.
    """
    overrides = list(overrides or []) + ([f"run.out_dir={resume}"] if resume else [])
    if resume and not RunFolder(resume).path.is_dir():
        raise UserError(f"--resume {resume}: no such run folder")
    if not is_pipeline(path):
        module, cfg = load_recipe_config(path, overrides)
        if resume and RunFolder(resume).finished:
            ran = RunFolder(resume).config.get("recipe")
            if ran != cfg.recipe:
                raise UserError(f"--resume {resume}: that folder holds a finished {ran} run, and {path} is a {cfg.recipe} config")
            print(f"{resume}: finished before (run.json), nothing to resume")
            return RunFolder(resume).record
        return run_recipe(module, cfg, resume=bool(resume))
    pipe, stages = pipeline_stages(path, overrides)
    for _, _, cfg, folder in stages:  # every stage's data is readable before the first stage trains
        if not folder.finished:
            check_data(cfg)
    record = None
    for i, (name, module, cfg, folder) in enumerate(stages, 1):
        if folder.finished:
            print(f"[{pipe.run.name}] stage {i}/{len(stages)} {name}: finished before, skipped ({folder.record_file})")
            record = folder.record
            continue
        if folder.path.exists() and not folder.started:  # killed before it wrote its config: nothing to keep
            shutil.rmtree(folder.path)
        verb = "resuming from its latest checkpoint" if folder.started else "starting"
        print(f"[{pipe.run.name}] stage {i}/{len(stages)} {name}: {cfg.recipe} -> {folder.path} ({verb})")
        record = run_recipe(module, cfg, resume=folder.started)
    return record


def probe_from_config(path: str, overrides: list[str] | None = None, out: str | None = None) -> dict:
    """`rlsft probe`: a recipe's pre-flight signal check (GRPO's `probe`, rlsft/preflight.py) on a config's
    model, prompts, rewards and sampling settings, without a run folder; the record is returned
    (and written to OUT/probe.json)."""

    if is_pipeline(path):
        raise UserError(f"{path}: a pipeline; probe its GRPO stage's config (with the previous stage's model as model.name)")
    module, cfg = load_recipe_config(path, overrides)
    if not hasattr(module, "probe"):  # a recipe with a pre-flight exports it (GRPO's)
        raise UserError(f"{path}: rlsft probe checks recipes with a pre-flight (grpo); this one's recipe, {cfg.recipe!r}, has none")
    args = module.training_args(cfg)
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    cfg = with_resolved_template(cfg, tokenizer)
    model = load_configured_model(cfg.model)
    train_set = prompt_dataset(cfg.data, cfg.run.seed, tokenizer)
    record = module.probe(cfg, args, model, tokenizer, train_set)
    record = {"config": path, "overrides": list(overrides or []), "model": cfg.model.name, "task": cfg.data.task, **record}
    if out:
        atomic_write(Path(out) / "probe.json", to_json(record))
    return record


def dry_run(path: str, overrides: list[str] | None = None, built_by_others: tuple[str, ...] = ()) -> dict:
    """Validate a config and describe what `train` would do, training nothing: per stage, the run
    folder, a compute estimate, the resolved config, and TRL's config fields that differ from TRL's
    defaults. What a run would refuse at its start is refused here too (a model name that is no
    model, a generation backend that cannot run, data that cannot be read), without loading
    weights or building a packaged model; a hub data set this machine cannot reach is a warning.
    Models under `built_by_others` (a study's prerequisites' folders) are taken as they will be."""
    if is_pipeline(path):
        items = [(name, module, cfg, folder) for name, module, cfg, folder in pipeline_stages(path, overrides)[1]]
    else:
        module, cfg = load_recipe_config(path, overrides)
        items = [(cfg.recipe, module, cfg, run_folder(cfg.run))]
    plan, previous, warnings_ = [], None, []
    for i, (name, module, cfg, folder) in enumerate(items):
        models = [cfg.model.name] * (i == 0) + [getattr(getattr(cfg, "distill", None), "teacher", None)]  # a later stage's model is the one before's
        for model in filter(None, models):
            try:
                check_model_name(model)
            except UserError as e:  # a folder another run writes (a teacher trained first) is reported; a misspelt name refused
                if "/" not in model:
                    raise
                if not any(model.startswith(prefix) for prefix in built_by_others):
                    warnings_.append(f"{name}: {e} (train refuses it until a run writes it)")
        resolve_backend(cfg.eval.backend)
        try:
            check_data(cfg)
        except HubUnreachable as e:
            warnings_.append(f"{name}: {e}")
        if folder.started and not folder.finished and not is_pipeline(path):  # a pipeline goes on with its unfinished stage
            warnings_.append(f"{name}: run folder {folder.path} holds an unfinished run: train refuses it, train --resume goes on with it")
        est = module.estimate(cfg, params=previous)  # a later stage trains the previous stage's model
        previous = est["parameters"]
        args = module.training_args(cfg)
        plan.append({"stage": name, "recipe": cfg.recipe, "out": str(folder.path), "finished": folder.finished, "estimate": est,
                     "trl_config": {"class": type(args).__name__, "differs_from_trl_defaults": differs_from_defaults(args)},
                     "config": to_dict(cfg)})
    return {"config": path, "stages": plan, **({"warnings": warnings_} if warnings_ else {})}
