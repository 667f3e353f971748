"""`rlsft train CONFIG [key=value ...] [--dry-run]`: run the recipe named by the config's
`recipe:` key, or a pipeline of recipes.

`RECIPES` maps a recipe name to (module, config class name); each module has `main(cfg)`.

A pipeline config chains stages (SFT -> GRPO, distill -> GRPO):

    recipe: pipeline
    run: {name: micro-r1}
    stages:
      - {config: configs/micro/stages/sft_cold_start.yaml}
      - {config: configs/micro/stages/grpo.yaml, overrides: ["grpo.rewards.language=0.2"]}

Stage i runs in runs/<name>/<i>-<stage>/; from stage 2 on, `model.name` is the previous
stage's `model/` folder. A stage whose run.json exists has finished and is skipped, so an
interrupted pipeline resumes where it stopped.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from recipes.config import apply_overrides, from_dict, read_yaml, to_dict
from recipes.io import UserError

RECIPES: dict[str, tuple[str, str]] = {
    "grpo": ("recipes.grpo", "GRPORecipeConfig"),
    "sft": ("recipes.sft", "SFTRecipeConfig"),
    "distill": ("recipes.distill", "DistillRecipeConfig"),
}


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


@dataclass
class PipelineConfig:
    run: PipelineRun
    stages: list[Stage]
    recipe: str = "pipeline"
    stage_overrides: list[str] = field(default_factory=list)  # key=value applied to every stage


def load_recipe_config(path: str, overrides: list[str] | None = None):
    """(recipe module, typed config) from a YAML file plus overrides; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    name = data.get("recipe")
    if name not in RECIPES:
        raise UserError(f"{path}: recipe must be one of {', '.join(RECIPES)} or pipeline, got {name!r}")
    module_name, cls_name = RECIPES[name]
    module = importlib.import_module(module_name)
    try:
        cfg = from_dict(getattr(module, cls_name), data)
        check_names(cfg)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return module, cfg


def check_names(cfg) -> None:
    """Fail before anything runs on a task or reward name the registries do not know."""
    from recipes.rewards import get_reward
    from recipes.tasks import get_task

    get_task(cfg.data.task)
    for task in cfg.eval.tasks:
        get_task(task)
    for reward in getattr(getattr(cfg, "grpo", None), "rewards", {}):
        get_reward(reward)


def run_recipe(module, cfg, resume: bool = False) -> dict:
    """`module.main(cfg)`, and a run that fails on a user error before it trained leaves no folder behind."""
    from recipes.common import run_dir

    out = run_dir(cfg.run)
    existed = out.exists()
    try:
        return module.main(cfg, resume=resume)
    except UserError:
        trained = (out / "metrics.jsonl").exists() or any((out / "checkpoints").glob("checkpoint-*"))
        if not existed and out.is_dir() and not trained:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def pipeline_stages(path: str, overrides: list[str] | None = None) -> tuple[PipelineConfig, list]:
    """The pipeline config and, per stage, (name, module, typed config, out folder)."""
    data = apply_overrides(read_yaml(path), overrides or [])
    try:
        pipe = from_dict(PipelineConfig, data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if not pipe.stages:
        raise UserError(f"{path}: a pipeline needs at least one stage")
    root = Path(pipe.run.out_dir) if pipe.run.out_dir else Path("runs") / pipe.run.name
    stages, previous = [], None
    for i, st in enumerate(pipe.stages, 1):
        name = st.name or Path(st.config).stem
        out = root / f"{i}-{name}"
        forced = [f"run.name={pipe.run.name}-{name}", f"run.out_dir={out}", f"run.seed={pipe.run.seed}"]
        if previous is not None:
            forced.append(f"model.name={previous / 'model'}")
        module, cfg = load_recipe_config(st.config, pipe.stage_overrides + st.overrides + forced)
        stages.append((name, module, cfg, out))
        previous = out
    return pipe, stages


def is_pipeline(path: str) -> bool:
    return read_yaml(path).get("recipe") == "pipeline"


def train_from_config(path: str, overrides: list[str] | None = None, resume: str | None = None) -> dict:
    """Run a recipe or a pipeline; returns the last stage's run record.

    `resume`: a run folder (a pipeline's folder for a pipeline) killed before it finished; the
    run goes on from its latest checkpoint. Pipelines always resume an unfinished stage.
    """
    import json

    overrides = list(overrides or []) + ([f"run.out_dir={resume}"] if resume else [])
    if resume and not Path(resume).is_dir():
        raise UserError(f"--resume {resume}: no such run folder")
    if not is_pipeline(path):
        module, cfg = load_recipe_config(path, overrides)
        if resume and (Path(resume) / "run.json").is_file():
            print(f"{resume}: finished before (run.json), nothing to resume")
            return json.loads((Path(resume) / "run.json").read_text())
        return run_recipe(module, cfg, resume=bool(resume))
    pipe, stages = pipeline_stages(path, overrides)
    record = None
    for i, (name, module, cfg, out) in enumerate(stages, 1):
        done = out / "run.json"
        if done.is_file():
            print(f"[{pipe.run.name}] stage {i}/{len(stages)} {name}: finished before, skipped ({done})")
            record = json.loads(done.read_text())
            continue
        unfinished = (out / "config.yaml").is_file()
        if out.exists() and not unfinished:  # killed before it wrote its config: nothing to keep
            import shutil

            shutil.rmtree(out)
        verb = "resuming from its latest checkpoint" if unfinished else "starting"
        print(f"[{pipe.run.name}] stage {i}/{len(stages)} {name}: {cfg.recipe} -> {out} ({verb})")
        record = run_recipe(module, cfg, resume=unfinished)
    return record


# --------------------------------------------------------------------------- dry run


# Parameter counts from the models' cards, for dry runs of hub models that are not cached.
KNOWN_PARAMETERS: dict[str, int] = {
    "Qwen/Qwen2.5-0.5B": 494_000_000,
    "Qwen/Qwen2.5-1.5B": 1_540_000_000,
    "Qwen/Qwen2.5-1.5B-Instruct": 1_540_000_000,
    "Qwen/Qwen2.5-7B-Instruct": 7_610_000_000,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": 7_620_000_000,
}
# Train-split sizes, for epoch-based SFT and distillation estimates of tasks whose data is not generated.
KNOWN_TRAIN_SIZES: dict[str, int] = {"gsm8k": 7473}


def _param_count(model_name: str) -> int | None:
    """Parameters of a model from its config alone (no weights loaded, no network: cached or
    local configs only, then the model-card table); None when unknown (for example a stage
    whose input model does not exist yet)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from recipes.models import resolve_model

        config = AutoConfig.from_pretrained(resolve_model(model_name), local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # a hub id not in the cache, or a model not built yet
        return KNOWN_PARAMETERS.get(model_name)


def estimate(cfg, params: int | None = None, peak_flops: float = 989e12, mfu: float = 0.3) -> dict:
    """Upper-bound compute of a recipe config: every completion at its maximum length, prompts
    counted at 128 tokens. FLOPs as in recipes.common (6N per trained token, 2N per forward token).

    GPU-hours = FLOPs / (peak_flops x mfu) / 3600, by default an H100's dense bf16 peak (989 TFLOP/s)
    at 30% utilisation: a floor, since generation with HF generate is memory-bound and runs far
    below it. `params` stands in for a stage whose input model does not exist yet."""
    prompt = 128
    n = _param_count(cfg.model.name) or params
    steps = cfg.optim.max_steps
    n_train = cfg.data.n_train or KNOWN_TRAIN_SIZES.get(cfg.data.task)  # prompts (None: unknown)
    batch = cfg.optim.per_device_train_batch_size * cfg.optim.gradient_accumulation_steps
    est = {"parameters": n, "max_steps": steps}
    if cfg.recipe == "grpo":
        from recipes.grpo import forward_passes

        tokens = steps * batch * (prompt + cfg.grpo.max_completion_length)
        est["train_tokens"] = tokens * cfg.grpo.num_iterations
        est["forward_tokens"] = tokens * forward_passes(cfg.grpo, cfg.optim.gradient_accumulation_steps)
    elif cfg.recipe == "sft":
        examples = cfg.sft.n_examples or KNOWN_TRAIN_SIZES.get(cfg.data.task)  # None: the whole train split
        if steps > 0:
            est["train_tokens"] = steps * batch * cfg.sft.max_length
        else:  # epoch-based: every example at its maximum length, each epoch
            est["train_tokens"] = int(examples * cfg.sft.num_train_epochs * cfg.sft.max_length) if examples else None
        est["forward_tokens"] = 0
    else:
        d = cfg.distill
        nt = _param_count(d.teacher)
        est["teacher_parameters"] = nt
        if d.mode == "offline":
            teacher_tokens = (n_train or 0) * d.samples_per_prompt * (prompt + d.max_new_tokens)
            est["teacher_forward_tokens"] = teacher_tokens
            kept = (n_train or 0) * d.keep_per_prompt  # at most this many traces survive verification
            est["train_tokens"] = steps * batch * d.max_length if steps > 0 else (int(kept * d.num_train_epochs * d.max_length) or None)
            est["forward_tokens"] = 0
        else:
            tokens = steps * batch * (prompt + d.max_new_tokens)
            est["teacher_forward_tokens"] = tokens
            est["train_tokens"] = est["forward_tokens"] = tokens
    if n is None or est["train_tokens"] is None or (cfg.recipe == "distill" and est["teacher_parameters"] is None):
        est["flops_upper_bound"] = None  # unknown: model config offline, or an epoch-based length
    else:
        est["flops_upper_bound"] = 6 * n * est["train_tokens"] + 2 * n * est["forward_tokens"] + 2 * (est.get("teacher_parameters") or 0) * est.get("teacher_forward_tokens", 0)
    flops = est["flops_upper_bound"]
    est["gpu_hours_floor"] = None if flops is None else round(flops / (peak_flops * mfu) / 3600, 3)
    est["gpu_hours_assumes"] = f"{peak_flops / 1e12:.0f} TFLOP/s peak at {mfu:.0%} utilisation"
    return est


def dry_run(path: str, overrides: list[str] | None = None) -> dict:
    """Validate a config and describe what `train` would do, training nothing."""
    if is_pipeline(path):
        pipe, stages = pipeline_stages(path, overrides)
        items = [(name, cfg, out) for name, _, cfg, out in stages]
    else:
        _, cfg = load_recipe_config(path, overrides)
        from recipes.common import run_dir

        items = [(cfg.recipe, cfg, run_dir(cfg.run))]
    plan, previous = [], None
    for name, cfg, out in items:
        est = estimate(cfg, params=previous)  # a later stage trains the previous stage's model
        previous = est["parameters"]
        plan.append({"stage": name, "recipe": cfg.recipe, "out": str(out), "finished": (out / "run.json").is_file(),
                     "estimate": est, "config": to_dict(cfg)})
    return {"config": path, "stages": plan}
