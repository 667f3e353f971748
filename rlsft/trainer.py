"""What every recipe shares around a TRL trainer: the lab's config sections, TRL's config built
from a recipe's sections, the prompt dataset, callbacks, saving and held-out evaluation.

Each recipe's `main` reads top to bottom in the same sections (config, data, model, rewards,
GRPO's pre-flight, trainer, train, save, evaluate) and calls these small functions; TRL's trainer owns the loop.

TRL's config for a run is built in one order (`trl_args`), later entries winning:
1. `TRAINING_DEFAULTS` below, where the lab departs from TRL's defaults, and the device's precision;
2. the recipe's `training:` section (any `transformers.TrainingArguments` field: learning rate,
   steps, batch, schedule), shared by every trainer, so a study or pipeline sets it once;
3. the trainer's own section (`grpo:`, `sft:`, `distillation:`: any field of its TRL config class);
4. what the lab owns: the output folder, run name, seed, reporting (and GRPO's reward weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import netrc
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from rlsft.config import DataConfig, ModelConfig, RunConfig, to_dict, trl_class
from rlsft.io import UserError, atomic_write, copy_tree_atomic, read_jsonl, utc_now
from rlsft.models import compute_dtype, gpu_of, load_model, load_tokenizer, native_bf16
from rlsft.runs.compute import (
    Cost,
    compute_record,
    continue_token_count,
    cost_flops,
    distributed_state,
    head_parameters,
    higher_peak,
    is_main_process,
    peak_memory_gb,
    stalled_update_share,
    trainable_parameters,
    trained_tokens,
)
from rlsft.runs.folder import PROGRESS_FILE, RunFolder
from rlsft.runs.provenance import git_commit
from rlsft.scoring.evaluate import EvalArgs, evaluate, resolve_backend
from rlsft.scoring.tasks import THINK_PREFILL, build_prompt, get_task, render_prompt, resolve_template

# Where the lab departs from TRL's defaults; each can be overridden in a recipe's `training:`.
TRAINING_DEFAULTS = {
    "gradient_checkpointing": False,  # TRL turns it on; for models this small it only costs time (reports/micro-speed)
    "lr_scheduler_type": "constant_with_warmup",  # no decay (TRL's is linear to 0): every step after warmup trains at the set rate, whatever max_steps
    "learning_rate": 1e-5,  # one default for every recipe, between TRL's SFT (2e-5) and GRPO (1e-6); every shipped config sets its own
    "logging_steps": 10,  # TRL's value (transformers' is 500): a metrics row every 10 optimizer steps; curve steps are multiples of it
    "save_strategy": "steps",  # a checkpoint every save_steps optimizer steps, for --resume
    "save_steps": 50,
    "save_total_limit": 1,  # the latest checkpoint is all a resume needs
    "dataloader_num_workers": 0,  # prompts are a few KB in memory: worker processes would only cost fork time and memory
}


# --------------------------------------------------------------------------- TRL's config


def run_folder(run: RunConfig) -> RunFolder:
    return RunFolder(run.out_dir if run.out_dir else Path("runs") / run.name)


def trl_args(config_class: str, cfg, section: dict, **owned):
    """TRL's config object for this run, built in the order of the module docstring."""
    import torch

    gpu = torch.cuda.is_available()
    cls = trl_class(config_class)
    for key in ("model_init_kwargs", "teacher_model_init_kwargs"):  # TRL reads them only when it loads a model from a name; the lab loads both
        if section.get(key):
            raise UserError(f"{cls.__name__}.{key} is ignored for a model the lab loads; set model.dtype, model.revision, "
                            "model.attn_implementation or model.trust_remote_code instead")
    if {**cfg.training, **section}.get("include_num_input_tokens_seen") not in (None, False, "no"):
        # transformers' own count (padding included under "all") would race TRL's in `trained_tokens`, which the compute record reads
        raise UserError(f"{cls.__name__}.include_num_input_tokens_seen: the lab counts trained tokens itself (TRL's counts, "
                        "rlsft.runs.compute.trained_tokens); leave it unset")
    if zero_stage({**cfg.training, **section}.get("deepspeed")) == 3:
        raise UserError("DeepSpeed ZeRO-3 is not supported: the pre-flight and the evaluations generate from the model "
                        "before DeepSpeed gathers its sharded weights, and the saved model would be empty; use "
                        "configs/accelerate/zero2.yaml (a 0.5-1.5B model's weights fit one GPU)")
    sizes = {**cfg.training, **section}
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "max_completion_length", "max_length"):
        if isinstance(sizes.get(key), (int, float)) and sizes[key] < 1:
            raise UserError(f"{cls.__name__}.{key} must be at least 1, got {sizes[key]!r}")
    if os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16" and gpu and not native_bf16():
        # TrainingArguments takes accelerate's setting over its own bf16 flag: emulated bf16 would run slowly, and vLLM refuses it
        raise UserError("accelerate launch asked for bf16 mixed precision, which this GPU only emulates; launch with "
                        "mixed_precision 'no' (as configs/accelerate/ do) and the lab trains in float32 here")
    kwargs = {
        "bf16": native_bf16(), "use_cpu": not gpu,
        **TRAINING_DEFAULTS, **cfg.training, **section, **owned,
        "output_dir": str(run_folder(cfg.run).checkpoints_dir), "run_name": cfg.run.name, "seed": cfg.run.seed,
        "report_to": [] if cfg.run.report_to == "none" else [cfg.run.report_to],
    }
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, ZeroDivisionError) as e:  # TRL's own validation of the combination
        raise UserError(f"{cls.__name__}: {str(e).splitlines()[0]}") from None


def zero_stage(deepspeed) -> int | None:
    """The DeepSpeed ZeRO stage of this launch: `accelerate launch` with a DeepSpeed config sets
    ACCELERATE_DEEPSPEED_ZERO_STAGE; TrainingArguments' `deepspeed` takes a config dict or JSON file.

    >>> zero_stage({"zero_optimization": {"stage": 3}}), zero_stage(None) if "ACCELERATE_DEEPSPEED_ZERO_STAGE" not in os.environ else None
    (3, None)
    """
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        return int(os.environ["ACCELERATE_DEEPSPEED_ZERO_STAGE"])
    if isinstance(deepspeed, str) and Path(deepspeed).is_file():
        deepspeed = json.loads(Path(deepspeed).read_text())
    stage = deepspeed.get("zero_optimization", {}).get("stage") if isinstance(deepspeed, dict) else None
    return int(stage) if isinstance(stage, (int, str)) and str(stage).isdigit() else None


def differs_from_defaults(args) -> dict:
    """The fields of a TRL config object that differ from that class's defaults (on this device)."""
    cls = type(args)
    mine = args.to_dict()
    try:
        theirs = cls(output_dir=args.output_dir, use_cpu=args.use_cpu, bf16=args.bf16).to_dict()
    except (ValueError, TypeError):
        theirs = {}
    skip = {"output_dir", "logging_dir", "use_cpu"}
    return {k: v for k, v in mine.items() if k not in skip and (k not in theirs or theirs[k] != v)}


def setup_reporting(cfg) -> None:
    """Open the run's wandb run (on the main process), which TRL's wandb callback then logs into:
    named `run.name`, grouped by `run.group` (a study's runs share their study's name, so its arms
    sit side by side in wandb's UI), with the lab's resolved config (TRL adds its own). Online with
    a key (`wandb login` or WANDB_API_KEY: `wandb_credentials`), offline without one: sync later
    with `wandb sync runs/wandb/offline-run-*`."""
    run = cfg.run
    if run.report_to == "none" or not is_main_process():
        return
    if not wandb_credentials() and os.environ.get("WANDB_MODE") not in ("online", "disabled"):
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_PROJECT", run.wandb_project)
    os.environ.setdefault("WANDB_DIR", str(Path("runs").resolve()))
    Path(os.environ["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)
    import wandb

    wandb.init(project=os.environ["WANDB_PROJECT"], name=run.name, group=run.group, job_type=cfg.recipe, config={"rlsft": to_dict(cfg)},
               dir=os.environ["WANDB_DIR"], reinit="finish_previous")


def wandb_credentials() -> bool:
    """Whether wandb has a key to log online with: `WANDB_API_KEY`, or the entry `wandb login` writes
    to ~/.netrc (or `$NETRC`) for the wandb host (`WANDB_BASE_URL`'s, default api.wandb.ai). Read with
    the standard library's netrc; nothing is sent anywhere."""

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def lora_config(model: ModelConfig):
    """The peft LoraConfig the trainers take as `peft_config`, or None for full fine-tuning."""
    if model.lora_r <= 0:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise UserError(f"model.lora_r={model.lora_r} needs peft: pip install 'rlsft[lora]' (or set model.lora_r=0)") from None
    return LoraConfig(r=model.lora_r, lora_alpha=model.lora_alpha, lora_dropout=model.lora_dropout,
                      target_modules=model.lora_target_modules, task_type="CAUSAL_LM")


# --------------------------------------------------------------------------- run lifecycle


def with_resolved_template(cfg, tokenizer):
    """A copy of `cfg` whose `data.template` is the form it resolves to with `tokenizer` (`auto`
    becomes chat or r1-zero); `cfg` itself is left as it was loaded."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, template=resolve_template(cfg.data.template, tokenizer)))


def check_data(cfg) -> None:
    """Read the first problem of each data set the run reads (its task's training prompts, unless
    an SFT run learns from a file of examples, and each held-out task's split), so a wrong hub id,
    a data set that is not cached offline, or a file whose fields do not match its task fails in
    one line before a folder exists, weights load or anything is paid."""
    if getattr(getattr(cfg, "examples", None), "source", "clean") == "clean":
        task = get_task(cfg.data.task)
        if task.train_split == task.eval_split:  # every recipe that reads its prompts (offline distillation's teacher too)
            raise UserError(f"data.task: task {task.name!r} has no train split (it is an evaluation set)")
        task.load(task.train_split, source=cfg.data.source, n=1, seed=cfg.run.seed)
    for name in cfg.eval.tasks:
        task = get_task(name)
        split = task.eval_split if cfg.eval.split == "test" else task.validation_split
        if split is None:
            raise UserError(f"eval.tasks: task {name!r} has no {cfg.eval.split} split")
        task.load(split, n=1, seed=cfg.run.seed)


def start_run(cfg, resume: bool = False):
    """(folder, cfg, tokenizer): the run's tokenizer (loaded first: a bad model name fails before
    anything is written), the run folder created with the config as given and provenance, or a
    killed one reopened (`resume`), and a copy of the config with its prompt form resolved
    (`data.template: auto` becomes chat or r1-zero; config.yaml keeps `auto`), which the run uses
    from here on. The loaded config is never changed. On the main process; the others wait."""
    resolve_backend(cfg.eval.backend)  # vLLM asked for where it cannot run: refused before a folder exists
    check_data(cfg)  # so are data sets that cannot be read
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    folder = run_folder(cfg.run)
    if is_main_process():
        if resume and folder.started:
            folder.reopen(to_dict(cfg))
        else:
            folder.create(to_dict(cfg))
    cfg = with_resolved_template(cfg, tokenizer)
    setup_reporting(cfg)
    distributed_state().wait_for_everyone()
    return folder, cfg, tokenizer


def prompt_dataset(data: DataConfig, seed: int, tokenizer=None):
    """The training prompts as a `datasets.Dataset` with columns prompt, answer, task, language
    (the language the reasoning is meant to be in) and prompt_language.

    `answer`, `task` and `language` reach the reward functions as keyword arguments (TRL passes
    extra columns). With `data.zh_prompt_share`, that share of the prompts, drawn with the seed,
    is written in Chinese. With `data.think_prefill`, each prompt is the rendered text ending in
    `<think>` (TRL always closes a chat prompt with a new assistant turn, so a chat prefill has to
    be rendered here, with `tokenizer`'s template); the rewards see the prefill in `prompts`.
    """

    from datasets import Dataset

    task = get_task(data.task)
    if task.train_split == task.eval_split:
        raise UserError(f"task {task.name!r} has no train split (it is an evaluation set)")
    if data.zh_prompt_share and task.translate is None:
        raise UserError(f"data.zh_prompt_share: task {task.name!r} cannot write its problems in Chinese")
    rows = task.load(task.train_split, source=data.source, n=data.n_train, seed=seed)
    draw = random.Random(f"zh-prompts/{seed}")
    langs = ["zh" if data.zh_prompt_share and draw.random() < data.zh_prompt_share else "en" for _ in rows]
    if data.think_prefill and data.template == "chat" and tokenizer is None:
        raise UserError("data.think_prefill with the chat form needs the model's tokenizer to render the prompt")

    def prompt(question: str):
        built = build_prompt(question, data.template)
        return render_prompt(built, tokenizer, THINK_PREFILL) if data.think_prefill else built

    return Dataset.from_list([
        {"prompt": prompt(task.translate(r, lang) if lang != "en" else r["question"]),
         "answer": str(r["answer"]), "task": task.name, "language": task.language, "prompt_language": lang}
        for r, lang in zip(rows, langs)
    ])


def sft_pair(prompt: str | list[dict], completion: str, tokenizer=None, think_prefill: bool = False) -> dict:
    """One SFT example in TRL's prompt-completion format: with a chat prompt, the completion is the
    assistant's message (TRL's conversational form), so both sides go through the chat template.
    With `think_prefill` (the run's `data.think_prefill`) the example takes the form GRPO and the
    evaluations give the model: the prompt rendered to text ending in `<think>` (`render_prompt`,
    with `tokenizer`'s chat template for a chat prompt) and the completion from what follows its
    opening `<think>`.

    >>> sft_pair("User: 2 + 2? Assistant:", " <answer>4</answer>")
    {'prompt': 'User: 2 + 2? Assistant:', 'completion': '<answer>4</answer>'}
    >>> sft_pair([{"role": "user", "content": "2 + 2?"}], "<answer>4</answer>")["completion"]
    [{'role': 'assistant', 'content': '<answer>4</answer>'}]
    >>> sft_pair("User: 2 + 2? Assistant:", "<think> so 4 </think> <answer>4</answer>", think_prefill=True)
    {'prompt': 'User: 2 + 2? Assistant: <think>', 'completion': ' so 4 </think> <answer>4</answer>'}
    """
    completion = completion.lstrip()
    if think_prefill:
        if not completion.startswith(THINK_PREFILL):
            raise UserError(f"data.think_prefill: an SFT completion must open with {THINK_PREFILL}, which the prompt then "
                            f"holds; this one starts {completion[:40]!r}")
        if isinstance(prompt, list) and tokenizer is None:
            raise UserError("data.think_prefill with the chat form needs the model's tokenizer to render the prompt")
        prompt, completion = render_prompt(prompt, tokenizer, THINK_PREFILL), completion[len(THINK_PREFILL):]
        return {"prompt": prompt, "completion": joined_cleanly(prompt, completion, tokenizer)}
    if isinstance(prompt, list):
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}
    return {"prompt": prompt, "completion": joined_cleanly(prompt, completion, tokenizer)}


def joined_cleanly(prompt: str, completion: str, tokenizer=None) -> str:
    """The completion, with a space put before it when `tokenizer` would merge the prompt's last
    characters with its first (Qwen2.5 reads "Assistant:<think>" as "Assistant", ":<", ...). TRL
    joins a text prompt and completion as they are, so the model would learn to go on from a
    token that the evaluations' prompt, ending in ":", never gives it. Unchanged without a
    tokenizer, or where the prompt's tokens stay whole (the micro world's).

    >>> from rlsft.models import load_tokenizer
    >>> tok = load_tokenizer("micro-student")
    >>> joined_cleanly("Assistant:", "<think> 7 </think>", tok)
    '<think> 7 </think>'
    """
    if tokenizer is None:
        return completion
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    whole = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    return completion if whole[:len(ids)] == ids else " " + completion


def load_configured_model(model: ModelConfig):
    """The config's model with its dtype, trust setting, revision and attention implementation."""
    return load_model(model.name, model.dtype, model.trust_remote_code, model.revision, model.attn_implementation)


def metrics_logger(folder: RunFolder):
    """A TrainerCallback appending every logged step (TRL's loss, reward, length, clip, KL,
    entropy, ... figures) to the run's metrics.jsonl, flushed as it goes."""
    from transformers import TrainerCallback

    class MetricsLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and state.is_world_process_zero:
                folder.append_metrics({"step": state.global_step, **logs})

    return MetricsLogger()


def curve_callback(folder: RunFolder, cfg, tokenizer, params: int, cost: Callable[[int], Cost], points: list[dict]):
    """A TrainerCallback that evaluates the model on the first eval task at `cfg.eval.curve_steps`
    (at logging steps, where TRL has logged the tokens so far) and appends
    {step, tokens, pflops, pass@1 [CI]} to `points`; `cost(tokens)` is the recipe's own compute
    formula (as for `train_and_count`), counted for a model of `params` parameters and whichever of
    them train. The global RNG states (CPU and GPU) are restored afterwards, so training goes on exactly as without it."""
    from transformers import TrainerCallback

    steps, task = set(cfg.eval.curve_steps), cfg.eval.tasks[0]

    class CurveCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, model=None, **kw):
            if state.global_step not in steps or not logs or "loss" not in logs or any(p["step"] == state.global_step for p in points):
                return
            import torch

            tokens = max([h.get("num_tokens", 0) for h in state.log_history] + [state.num_input_tokens_seen or 0])
            t0, was_training = time.perf_counter(), model.training
            with torch.random.fork_rng(devices=gpu_of(model)):  # the CPU's and the GPU's generators, as training left them
                metrics = evaluate_model(model, tokenizer, f"{cfg.model.name}@step-{state.global_step}", cfg, folder, "curve",
                                         step=state.global_step, tasks=[task]).get(task)
            model.train(was_training)
            if metrics is not None:
                p1 = metrics["pass@1"]
                pflops = cost_flops(params, cost(int(tokens)), trainable_parameters(model), head_parameters(model)) / 1e15
                points.append({"step": state.global_step, "tokens": int(tokens), "pflops": pflops,
                               "pass@1": p1["value"], "ci_low": p1["ci_low"], "ci_high": p1["ci_high"],
                               "eval_seconds": round(time.perf_counter() - t0, 4)})  # not training time: recipes subtract it

    return CurveCallback()




def train(trainer, folder: RunFolder, resume: bool, curve: list[dict]) -> tuple[float, float | None]:
    """Train (from the run's latest checkpoint when resuming); returns the training seconds, curve
    evaluations excluded, of every sitting up to the end, and the earlier sittings' peak memory (GB;
    None without one). The Trainer's own runtime, TRL's SFT token count and the process's peak memory
    cover only this sitting, so each checkpoint also keeps the seconds, the tokens (GRPO's completion
    tokens too), the peak and the curve points up to it (`PROGRESS_FILE`); a resumed run starts from those, and its run.json has
    the whole curve and the compute of every sitting.

    What a sitting did after its last checkpoint is lost with it and done again after the resume: it
    counts in neither the seconds nor the tokens. The record is the training that made the model
    (the sum of its sittings' training time, each up to the checkpoint the next one resumed from),
    not the time the machine was busy. A run that stopped after its last step's checkpoint trains
    no further: the resume loads that checkpoint's weights."""

    from transformers import TrainerCallback, TrainerState

    checkpoint = folder.last_checkpoint() if resume else None
    saved = {}
    if checkpoint is not None and not (checkpoint / PROGRESS_FILE).is_file():  # killed between transformers' save and the lab's
        warnings.warn(f"{checkpoint} has no {PROGRESS_FILE} (the run was stopped while saving it): the record will leave out the "
                      "earlier sittings' training seconds and curve points")
    if checkpoint is not None and (checkpoint / PROGRESS_FILE).is_file():
        saved = json.loads((checkpoint / PROGRESS_FILE).read_text())
        curve[:] = saved["curve"]  # the points evaluated before the checkpoint
    earlier, earlier_peak = saved.get("train_seconds", 0.0), saved.get("peak_memory_gb")
    if checkpoint is not None and hasattr(trainer, "completion_tokens_seen"):  # GRPO's (None: a checkpoint from before the count)
        trainer.completion_tokens_seen = saved.get("completion_tokens")

    if checkpoint is not None:
        state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
        if state.global_step >= state.max_steps > 0:
            # The run stopped after its last step's checkpoint (saving the model, evaluating it).
            # transformers' loop checks max_steps only after a step, so `train(resume_from_checkpoint=)`
            # would take one step more; the Trainer's own loader restores the trained weights instead.
            trainer._load_from_checkpoint(str(checkpoint))
            trainer.state = state
            continue_token_count(trainer, saved.get("train_tokens", trained_tokens(trainer)))
            return earlier, earlier_peak
    kept, t0 = len(curve), time.perf_counter()

    def seconds_so_far() -> float:  # this sitting's curve evaluations are not training time
        return earlier + time.perf_counter() - t0 - sum(p["eval_seconds"] for p in curve[kept:])

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if checkpoint is not None:  # the checkpoint's state is loaded by now: its log history, its step
                # a checkpoint from before the count was kept here: the restored log's count (exact when
                # the checkpoint's step was a logging step)
                continue_token_count(trainer, saved.get("train_tokens", trained_tokens(trainer)))

        def on_save(self, args, state, control, **kw):
            saved_to = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and saved_to.is_dir():
                atomic_write(saved_to / PROGRESS_FILE, json.dumps({"step": state.global_step, "train_seconds": seconds_so_far(),
                                                                   "train_tokens": trained_tokens(trainer), "curve": curve,
                                                                   "completion_tokens": getattr(trainer, "completion_tokens_seen", None),
                                                                   "peak_memory_gb": higher_peak(peak_memory_gb(), earlier_peak),
                                                                   "saved_utc": utc_now()}))

    trainer.add_callback(Progress())
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return earlier + output.metrics["train_runtime"] - sum(p["eval_seconds"] for p in curve[kept:]), earlier_peak


def train_and_count(trainer, folder: RunFolder, resume: bool, params: int, cost: Callable[[int], Cost],
                    curve: list[dict], other_seconds: float = 0.0) -> dict:
    """Train, then the run's compute record, over every sitting of a resumed run. `cost(tokens)` is
    the recipe's own formula (`compute.Cost`: trained and forward-only tokens, other models' FLOPs,
    tokens whose logits are not computed) for the tokens the Trainer consumed, with `params`
    parameters (the output head's among them) of which those that train (LoRA's
    adapters, `trainable_parameters`) set the backward's cost. Seconds are the Trainer's runtime
    without the curve evaluations, plus `other_seconds` (a teacher's sampling). Warns when the
    trainable weights are half precision without a float32 master copy (`stalled_update_share`)."""
    import torch

    dtypes = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    if dtypes & {torch.bfloat16, torch.float16} and not trainer.is_deepspeed_enabled:  # DeepSpeed keeps float32 master weights
        share = stalled_update_share(trainer.model, trainer.args.learning_rate)
        if share > 0:
            held = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
            warnings.warn(f"{share:.0%} of the trainable weights are held in {held} at a magnitude where an update of learning_rate "
                          f"{trainer.args.learning_rate:g} rounds back to the same weight: train with model.dtype=float32 (a bf16 GPU "
                          f"still computes in bf16 autocast) or LoRA (model.lora_r > 0)")
    seconds, earlier_peak = train(trainer, folder, resume, curve)
    seconds += other_seconds
    return compute_record(params, cost(trained_tokens(trainer)), seconds, trainable=trainable_parameters(trainer.model),
                          head=head_parameters(trainer.model), earlier_peak_gb=earlier_peak)


def save_trained(trainer, tokenizer, folder: RunFolder):
    """Save the trained model and its tokenizer to the run's model/ and return the model to evaluate.

    LoRA adapters are merged first, so every stage writes a plain model the next stage can load.
    The Trainer turns `use_cache` off; generation needs the KV cache (about 8x faster here).
    """
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    model.config.use_cache = True
    if is_main_process():
        model.save_pretrained(str(folder.model_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(folder.model_dir))
    distributed_state().wait_for_everyone()
    return model


def eval_args(cfg, model: str, task: str, out, samples: int, revision: str | None = None, backend: str | None = None) -> EvalArgs:
    """How the lab evaluates `model` for a run whose config is `cfg` (its eval, model, data and run
    sections; data.template as resolved): the run's split, sampling, token budget, batching, seed,
    prompt form and dtype, wherever that happens (before and after training, at curve steps, a
    study's transfer), so that no measurement of a run drifts from its others. `revision` is the hub
    revision of `model` (None for a saved model); `backend` defaults to eval.backend.

    >>> from rlsft.config import EvalConfig, RecipeConfig, RunConfig
    >>> cfg = RecipeConfig(run=RunConfig(name="r", seed=3), eval=EvalConfig(top_p=0.95))
    >>> a = eval_args(cfg, "runs/r/model", "gsm8k", "runs/r/transfer/gsm8k", samples=4)
    >>> (a.n, a.samples, a.top_p, a.seed, a.backend)
    (256, 4, 0.95, 3, 'auto')
    """
    e = cfg.eval
    return EvalArgs(model=model, task=task, out=str(out), n=e.n, split=e.split, samples=samples, temperature=e.temperature, top_p=e.top_p,
                    max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, memory_gb=e.memory_gb, seed=cfg.run.seed,
                    template=cfg.data.template, think_prefill=cfg.data.think_prefill, dtype=compute_dtype(cfg.model.dtype),
                    trust_remote_code=cfg.model.trust_remote_code, revision=revision, backend=backend or e.backend)


def evaluate_model(model, tokenizer, name: str, cfg, folder: RunFolder, when: str, step: int = 0, tasks: list[str] | None = None) -> dict | None:
    """Held-out evaluation of an in-memory model on each of `cfg.eval.tasks`, into the run's
    eval_before/, eval_after/ or (when = "curve") eval_curve/step-N/; returns {task: metrics} on the
    main process ({} elsewhere), None for `before` when the config skips it. A resumed run keeps
    what it evaluated before it stopped."""

    if when == "before" and not cfg.eval.before:
        return None
    results = {}
    if not is_main_process():
        return results
    e = cfg.eval
    for task in tasks or e.tasks:
        out = folder.curve_dir(step, task) if when == "curve" else folder.eval_dir(when, task)
        if (out / "metrics.json").is_file():
            results[task] = json.loads((out / "metrics.json").read_text())["metrics"]
            continue
        samples = {"curve": e.curve_samples, "before": e.before_samples}.get(when) or e.samples
        args = eval_args(cfg, name, task, out, samples,
                         revision=cfg.model.revision if name == cfg.model.name else None,  # a saved model has no hub revision
                         backend="transformers" if when == "curve" else e.backend)  # a curve checkpoint is only in memory
        shared = before_cache_dir(e.before_cache, args, git_commit()) if when == "before" and e.before_cache else None
        if shared is not None and (shared / "metrics.json").is_file():
            copy_tree_atomic(shared, out)  # the same model, settings and seed: the same samples, made once
        else:
            # float32 weights on a bf16 GPU compute in bf16 autocast, as training does (accelerate
            # wraps the forward only once the trainer is built: the evaluation before it needs this)
            import torch

            bf16 = args.dtype != cfg.model.dtype and model is not None and next(model.parameters()).device.type == "cuda"
            with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                evaluate(args, model=model, tokenizer=tokenizer)
            if shared is not None:
                copy_tree_atomic(out, shared)
        results[task] = json.loads((out / "metrics.json").read_text())["metrics"]
        log_heldout(cfg, when, step, task, out, results[task], samples)
    return results


WANDB_SAMPLE_ROWS = 64  # sample completions per evaluation in the wandb table (the run folder keeps them all)
SAMPLE_COLUMNS = ("id", "sample", "question", "answer", "completion", "extracted", "correct", "correct_lenient", "format_ok",
                  "mixed", "language_consistency", "length", "truncated")


def log_heldout(cfg, when: str, step: int, task: str, out: Path, metrics: dict, samples: int) -> None:
    """An evaluation's held-out results into the run's wandb run, beside TRL's training metrics:
    headline metrics as history at the training step (`heldout/<task>/<metric>` against
    train/global_step: 0 before training, the curve's steps, the last step after), each evaluation's
    first `WANDB_SAMPLE_ROWS` completions with their scores and language flags as a table, and
    `heldout/<when>/<task>/<metric>` in the summary, where wandb's runs table compares arms."""
    if cfg.run.report_to != "wandb" or not is_main_process():
        return
    import wandb

    if wandb.run is None:
        return

    values = headline(metrics, samples)
    if when == "after":
        step = int(wandb.run.summary.get("train/global_step", step) or step)
    rows = read_jsonl(out / "samples.jsonl")[:WANDB_SAMPLE_ROWS]
    table = wandb.Table(columns=list(SAMPLE_COLUMNS), data=[[r.get(c) for c in SAMPLE_COLUMNS] for r in rows])
    name = f"step-{step}" if when == "curve" else when
    wandb.log({"train/global_step": step, f"heldout/{task}/samples_{name}": table, **{f"heldout/{task}/{key}": v for key, v in values.items()}})
    if when != "curve":
        wandb.run.summary.update({f"heldout/{when}/{task}/{key}": v for key, v in values.items()})


def before_cache_dir(root: str, args, commit: str) -> Path:
    """Where an evaluation before training is shared (`eval.before_cache`): keyed on everything that
    decides its samples (the starting model's name, task, split, problems, samples, sampling,
    batching, seed, prompt form) and on the lab's `commit` (the code that samples and scores
    them), not on the run, so a study's arms of one seed share it, and a study moved to another
    commit makes it again.

    >>> from rlsft.scoring.evaluate import EvalArgs
    >>> a = EvalArgs(model="m", task="micro-arith", out="runs/x/eval_before/micro-arith", seed=0)
    >>> before_cache_dir("cache", a, "abc") == before_cache_dir("cache", EvalArgs(**{**vars(a), "out": "runs/y"}), "abc")
    True
    >>> before_cache_dir("cache", a, "abc") == before_cache_dir("cache", EvalArgs(**{**vars(a), "seed": 1}), "abc")
    False
    >>> before_cache_dir("cache", a, "abc") == before_cache_dir("cache", a, "def")
    False
    """

    # revision only where one is set: the keys of caches written before it existed stay valid
    decides = {k: v for k, v in dataclasses.asdict(args).items() if k != "out" and not (k == "revision" and v is None)}
    key = hashlib.sha256(json.dumps({**decides, "lab_commit": commit}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / f"{args.task}-seed{args.seed}-{key}"


def _pass1(metrics: dict) -> dict:
    p1 = metrics["pass@1"]
    return {"pass@1": p1["value"], "ci_low": p1["ci_low"], "ci_high": p1["ci_high"]}


def headline(metrics: dict, k: int) -> dict:
    """The few numbers a comparison reads: pass@1 and pass@k (strict and lenient extraction), format,
    mixing, length."""
    keys = ("pass@1", f"pass@{k}", "pass@1_lenient", f"pass@{k}_lenient", "format_rate", "mixing_rate", "mean_consistency",
            "mean_length", "truncation_rate")
    return {key: metrics[key]["value"] for key in keys if key in metrics}


def finish_run(folder: RunFolder, recipe: str, cfg, compute: dict, before: dict | None, after: dict,
               curve: list[dict] | None = None, **extra) -> dict:
    """The run record (`run.json`): config, compute, headline metrics before and after training, and
    the accuracy-against-compute curve (the first eval task at each curve step, then the trained
    model at the run's whole compute), written by the main process. The training log stays in
    metrics.jsonl alone. Returns it."""
    k = cfg.eval.samples
    record = {
        "recipe": recipe,
        "out": str(folder.path),
        "config": to_dict(cfg),
        **extra,
        "compute": compute,
        "eval_before": {t: headline(m, cfg.eval.before_samples or k) for t, m in before.items()} if before else None,
        "eval_after": {t: headline(m, k) for t, m in after.items()},
        "curve": (curve or []) + ([{"step": "final", "pflops": compute["flops"] / 1e15, **_pass1(after[cfg.eval.tasks[0]])}]
                                  if after else []),
    }
    if is_main_process():
        folder.write_record(record)
        if cfg.run.report_to == "wandb":
            import wandb

            wandb.finish()  # the next run in this process (a study's) opens its own
    return record
