"""What every training recipe shares: config sections, the prompt dataset, TRL arguments,
compute accounting and the run record. Each recipe's `main` reads top to bottom in the same
sections: config, data, model, rewards, trainer, train, save, evaluate.

Compute accounting (the usual dense-transformer estimate, Kaplan et al. 2020):
- a training token (forward + backward) costs 6 * N FLOPs, N = all parameters (embeddings included);
- a generated or scored token (forward only) costs 2 * N FLOPs;
- attention's extra FLOPs are ignored (contexts here are short next to the model width).
GPU-hours are wall hours times GPUs; on a CPU the record gives CPU core-hours instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from recipes.io import UserError, atomic_write, to_json
from recipes.tasks import build_prompt, get_task


# --------------------------------------------------------------------------- config sections


@dataclass
class RunConfig:
    name: str  # run name (wandb run name, and the default output folder runs/<name>)
    out_dir: str | None = None
    seed: int = 0
    report_to: str = "wandb"  # wandb (offline when there is no key) or none
    wandb_project: str = "rlsft"


@dataclass
class ModelConfig:
    name: str = "micro-student"  # micro model name, local folder or hub id
    dtype: str = "auto"  # auto: bf16 on GPU, float32 on CPU
    trust_remote_code: bool = False
    lora_r: int = 0  # LoRA rank through peft (0: full fine-tuning); the saved model is merged, so stages chain
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"


@dataclass
class DataConfig:
    task: str = "micro-arith"
    n_train: int | None = 2000  # training prompts (None: the whole train split)
    source: str | None = None  # local JSONL or hub id replacing the task's default data
    template: str = "r1-zero"  # r1-zero (plain prompt) or chat (system prompt + chat template)


@dataclass
class OptimConfig:
    learning_rate: float = 1e-5
    max_steps: int = 100
    per_device_train_batch_size: int = 8  # for grpo: completions per device step
    gradient_accumulation_steps: int = 1
    warmup_steps: float = 0.0  # steps, or a ratio of max_steps when below 1
    lr_scheduler_type: str = "constant_with_warmup"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    save_steps: int = 50  # checkpoint every N optimizer steps, the latest kept, for --resume (0: none)


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: ["micro-arith"])  # held-out evaluation after training
    n: int | None = 256  # problems per task (None: whole split)
    samples: int = 8  # K of pass@K
    temperature: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 32
    before: bool = True  # also evaluate the starting model, with the same settings


# --------------------------------------------------------------------------- helpers


def run_dir(run: RunConfig) -> Path:
    return Path(run.out_dir) if run.out_dir else Path("runs") / run.name


def prompt_dataset(data: DataConfig, seed: int, tokenizer=None):
    """The training prompts as a `datasets.Dataset` with columns prompt, answer, task, language.

    `answer` and `task` reach the reward functions as keyword arguments (TRL passes extra columns).
    """
    from datasets import Dataset

    task = get_task(data.task)
    rows = task.load(task.train_split, source=data.source, n=data.n_train, seed=seed)
    if task.train_split == task.eval_split:
        raise UserError(f"task {task.name!r} has no train split (it is an evaluation set)")
    return Dataset.from_list([
        {"prompt": build_prompt(r["question"], data.template), "answer": str(r["answer"]), "task": task.name, "language": task.language}
        for r in rows
    ])


def setup_reporting(run: RunConfig) -> list[str]:
    """TRL `report_to`: wandb runs offline without a key (sync later with `wandb sync`)."""
    if run.report_to == "none":
        return []
    if run.report_to != "wandb":
        raise UserError(f"run.report_to must be wandb or none, got {run.report_to!r}")
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") not in ("online", "disabled"):
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_PROJECT", run.wandb_project)
    os.environ.setdefault("WANDB_DIR", str(Path("runs").resolve()))
    Path(os.environ["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)
    return ["wandb"]


def trainer_args(config_cls, run: RunConfig, optim: OptimConfig, out: Path, **extra):
    """TRL config (`GRPOConfig`, `SFTConfig`, ...) from the shared sections plus recipe extras."""
    import torch

    gpu = torch.cuda.is_available()
    return config_cls(
        output_dir=str(out / "checkpoints"),
        run_name=run.name,
        seed=run.seed,
        report_to=setup_reporting(run),
        learning_rate=optim.learning_rate,
        max_steps=optim.max_steps,
        per_device_train_batch_size=optim.per_device_train_batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        warmup_steps=optim.warmup_steps,
        lr_scheduler_type=optim.lr_scheduler_type,
        max_grad_norm=optim.max_grad_norm,
        weight_decay=optim.weight_decay,
        logging_steps=optim.logging_steps,
        gradient_checkpointing=optim.gradient_checkpointing,
        bf16=gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not gpu,
        save_strategy="steps" if optim.save_steps > 0 else "no",
        save_steps=optim.save_steps if optim.save_steps > 0 else 500,
        save_total_limit=1,  # the latest checkpoint is all a resume needs
        dataloader_num_workers=0,
        **extra,
    )


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def compute_record(params: int, train_tokens: int, forward_tokens: int, seconds: float, extra_flops: int = 0) -> dict:
    """FLOPs and device-hours of a run (see the module docstring for the estimate).

    `extra_flops` adds work done by another model (a teacher's sampling or scoring).

    >>> compute_record(1_000_000, 10_000, 5_000, 3600.0)["flops"]
    70000000000
    """
    import torch

    processes = distributed_state().num_processes  # data-parallel workers (accelerate launch)
    gpu = torch.cuda.is_available()
    return {
        "parameters": params,
        "train_tokens": int(train_tokens),  # tokens through forward + backward
        "forward_tokens": int(forward_tokens),  # tokens generated or scored without backward
        "flops": int(6 * params * train_tokens + 2 * params * forward_tokens + extra_flops),
        "wall_seconds": round(seconds, 1),
        "processes": processes,
        "gpu_hours": round(processes * seconds / 3600, 4) if gpu else 0.0,
        "cpu_core_hours": 0.0 if gpu else round(processes * torch.get_num_threads() * seconds / 3600, 4),
        "device": torch.cuda.get_device_name(0) if gpu else f"cpu, {torch.get_num_threads()} threads per process",
        "peak_memory_gb": peak_memory_gb(),
    }


def evaluate_model(model, tokenizer, name: str, eval_cfg: EvalConfig, out: Path, seed: int, template: str) -> dict:
    """Held-out evaluation of an in-memory model on each task; returns {task: metrics}
    (on the main process only; {} elsewhere)."""
    from recipes.evaluate import EvalArgs, evaluate

    results = {}
    if not is_main_process():
        return results
    for task in eval_cfg.tasks:
        finished = out / task / "metrics.json"
        if finished.is_file():  # a resumed run keeps what it evaluated before it stopped
            results[task] = json.loads(finished.read_text())["metrics"]
            continue
        args = EvalArgs(model=name, task=task, out=str(out / task), n=eval_cfg.n, samples=eval_cfg.samples,
                        temperature=eval_cfg.temperature, max_new_tokens=eval_cfg.max_new_tokens,
                        batch_size=eval_cfg.batch_size, seed=seed, template=template)
        results[task] = evaluate(args, model=model, tokenizer=tokenizer)["metrics"]
    return results


def headline(metrics: dict, k: int) -> dict:
    """The few numbers a comparison reads: pass@1, pass@k, format, mixing, length."""
    keys = ("pass@1", f"pass@{k}", "format_rate", "mixing_rate", "mean_consistency", "mean_length")
    return {key: metrics[key]["value"] for key in keys if key in metrics}


def finish_run(out: Path, recipe: str, cfg, compute: dict, logs: list[dict], before: dict | None, after: dict, **extra) -> dict:
    """The run record (`run.json`): config, compute, the logged steps, and headline metrics before
    and after training; written by the main process. Returns it."""
    from recipes.config import to_dict

    k = cfg.eval.samples
    record = {
        "recipe": recipe,
        "out": str(out),
        "config": to_dict(cfg),
        **extra,
        "compute": compute,
        "train_log": [h for h in logs if "loss" in h or "reward" in h],
        "eval_before": {t: headline(m, k) for t, m in before.items()} if before else None,
        "eval_after": {t: headline(m, k) for t, m in after.items()},
    }
    write_record(out, record)
    return record


def write_record(out: Path, record: dict) -> None:
    from recipes.provenance import provenance

    if is_main_process():
        atomic_write(out / "run.json", to_json({**record, "provenance": provenance()}))


class Timer:
    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.start


# --------------------------------------------------------------------------- run folders and logs


def prepare_run_dir(run: RunConfig) -> Path:
    """The run's folder, new: an existing run is never overwritten."""
    out = run_dir(run)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"run folder {out} already exists; pick another run.name or run.out_dir (runs are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def metrics_logger(path: Path):
    """A TrainerCallback appending every logged step (TRL's loss, reward, length, clip, KL,
    entropy, ... figures) to `path` as JSONL, flushed as it goes."""
    import json

    from transformers import TrainerCallback

    from recipes.io import json_safe

    class MetricsLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and state.is_world_process_zero:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(json_safe({"step": state.global_step, **logs})) + "\n")

    return MetricsLogger()


def completion_monitor(path: Path, every: int, language: str = "en"):
    """A zero-weight GRPO "reward" that measures instead of rewarding: it returns 1.0 for each
    training completion that mixes languages (TRL then logs the mixing rate of the training
    completions as `rewards/language_monitor/mean`) and writes 8 completions to `path` every
    `every` calls. With weight 0 it never changes the gradient."""
    import json

    from recipes.language import language_stats
    from recipes.rewards import completion_text

    calls = [0]
    main = is_main_process()

    def language_monitor(completions, prompts=None, answer=None, **kwargs):
        texts = [completion_text(c) for c in completions]
        stats = [language_stats(t, language) for t in texts]
        if main and calls[0] % every == 0:
            with open(path, "a", encoding="utf-8") as f:
                for i, t in enumerate(texts[:8]):
                    f.write(json.dumps({"call": calls[0], "answer": answer[i] if answer else None, "completion": t,
                                        "mixed": stats[i].mixed}, ensure_ascii=False) + "\n")
        calls[0] += 1
        return [1.0 if s.mixed else 0.0 for s in stats]

    return language_monitor


def distributed_state():
    """This process's place in the launch: one process per data-parallel worker under `accelerate launch`.

    Without a GPU the workers are CPU processes joined over gloo, which accelerate sets up only when
    asked (`cpu=True`); otherwise each of them would think it ran alone. The state is shared, so the
    first call decides it for the Trainer too.
    """
    import torch
    from accelerate import PartialState

    accelerator = torch.cuda.is_available() or torch.backends.mps.is_available()
    return PartialState(cpu=not accelerator)


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


def save_trained(trainer, tokenizer, path: Path):
    """Save the trained model and its tokenizer to `path` and return the model to evaluate.

    LoRA adapters are merged first, so every stage writes a plain model the next stage can load.
    The Trainer turns `use_cache` off; generation needs the KV cache (about 8x faster here).
    """
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    model.config.use_cache = True
    if is_main_process():
        model.save_pretrained(str(path), safe_serialization=True)
        tokenizer.padding_side = "left"  # generation pads on the left
        tokenizer.save_pretrained(str(path))
    distributed_state().wait_for_everyone()
    return model


def is_main_process() -> bool:
    """True on the process that writes files and evaluates (rank 0 under `accelerate launch`)."""
    return distributed_state().is_main_process


def start_run(cfg, resume: bool = False) -> Path:
    """Create the run folder and write the resolved config and provenance before anything runs
    (on the main process; the others wait for it).

    With `resume`, an existing folder is continued instead: its config must match this one, and
    metrics.jsonl loses the steps logged after the checkpoint the run resumes from (they are
    logged again), so it has no gap and no duplicate.
    """
    import yaml

    from recipes.config import to_dict
    from recipes.provenance import provenance

    state = distributed_state()
    out = run_dir(cfg.run)
    resuming = resume and (out / "config.yaml").is_file()
    if state.is_main_process and resuming:
        saved = yaml.safe_load((out / "config.yaml").read_text())
        now = yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
        changed = sorted(config_differences(saved, now))
        if changed:
            raise UserError(f"cannot resume {out}: its config differs at {', '.join(changed[:5])}; resume with the same config and overrides")
        checkpoint = last_checkpoint(out)
        step = checkpoint_step(checkpoint) if checkpoint else 0
        truncate_metrics(out / "metrics.jsonl", step)
        with open(out / "resumes.jsonl", "a", encoding="utf-8") as f:  # when and from where it went on
            f.write(json.dumps({"from_step": step, "checkpoint": str(checkpoint) if checkpoint else None, **provenance()}) + "\n")
    elif state.is_main_process:
        out = prepare_run_dir(cfg.run)
        atomic_write(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
        atomic_write(out / "provenance.json", to_json(provenance()))
    state.wait_for_everyone()
    return out


def config_differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two nested config dicts differ.

    >>> config_differences({"optim": {"lr": 1, "steps": 2}}, {"optim": {"lr": 1, "steps": 3}})
    ['optim.steps']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in config_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete Trainer checkpoint of a run (one whose trainer_state.json was written), or None."""
    folder = out / "checkpoints"
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return max(done, key=checkpoint_step, default=None)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics.jsonl lines logged at or before `step` (atomically)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        atomic_write(path, "".join(line + "\n" for line in lines))


def peak_memory_gb() -> float | None:
    """Peak accelerator memory (GB) on GPU; peak resident memory of the process on CPU."""
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)  # KB on Linux
