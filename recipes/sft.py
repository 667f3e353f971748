"""SFT cold start (the first stage of the R1 recipe): a small set of clean, single-language
worked solutions, loss on the completion only.

    rlsft train configs/micro/sft_cold_start.yaml                  # CPU, about a minute
    rlsft train configs/micro/r1.yaml                              # SFT, then GRPO from its output
    accelerate launch -m recipes.cli train configs/qwen2.5-0.5b/sft_cold_start.yaml

Sections: config, data, model, rewards (none), trainer, train, save, evaluate.
The examples come from `sft.examples`:
- `clean`: written from the task's train split. Micro tasks: an error-free English solution.
  GSM8K: the upstream solution, calculator annotations removed, as the reasoning.
- a JSONL path with `question` (or `prompt`) and `completion` per line (for example verified
  teacher traces from `recipes.distill`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recipes.common import (
    DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, Timer, compute_record, evaluate_model, finish_run,
    last_checkpoint, lora_config, metrics_logger, n_params, save_trained, start_run, trainer_args,
)
from recipes.io import UserError, read_jsonl
from recipes.tasks import build_prompt, get_task


@dataclass
class SFTSection:
    examples: str = "clean"  # clean, or a JSONL path of {question|prompt, completion}
    n_examples: int | None = 256  # cold start is small: a few hundred examples (None: all)
    language: str = "en"  # language of the clean micro solutions
    max_length: int = 256  # tokens, prompt + completion
    num_train_epochs: float = 3.0  # used when optim.max_steps <= 0


@dataclass
class SFTRecipeConfig:
    run: RunConfig
    recipe: str = "sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=1e-4, max_steps=-1, per_device_train_batch_size=16, logging_steps=5))
    eval: EvalConfig = field(default_factory=EvalConfig)


def gsm8k_solution_as_template(solution: str) -> str:
    """An upstream GSM8K solution rewritten in the R1-Zero template.

    >>> gsm8k_solution_as_template("He has 3+4=<<3+4=7>>7 apples.\\n#### 7")
    '<think> He has 3+4=7 apples. </think> <answer>7</answer>'
    """
    reasoning, _, answer = solution.rpartition("####")
    reasoning = re.sub(r"<<[^>]*>>", "", reasoning)  # calculator annotations
    return f"<think> {' '.join(reasoning.split())} </think> <answer>{answer.strip().replace(',', '')}</answer>"


def sft_examples(data: DataConfig, sft: SFTSection, seed: int) -> list[dict]:
    """Prompt/completion pairs for SFTTrainer."""
    task = get_task(data.task)
    if sft.examples != "clean":
        rows = read_jsonl(sft.examples, required=("completion",))
        pairs = []
        for i, r in enumerate(rows):
            prompt = r.get("prompt") or (build_prompt(r["question"], data.template) if r.get("question") else None)
            if prompt is None:
                raise UserError(f"{sft.examples}: line {i + 1} has neither prompt nor question")
            pairs.append({"prompt": prompt, "completion": r["completion"].lstrip()})
        return pairs[: sft.n_examples] if sft.n_examples else pairs
    if task.name.startswith("micro-"):
        from recipes.micro.world import clean_solution

        problems = task.load(task.train_split, source=data.source, n=sft.n_examples, seed=seed + 1)  # not the RL prompts' seed
        completions = [clean_solution(p, sft.language)["completion"] for p in problems]
    elif task.name == "gsm8k":
        problems = task.load(task.train_split, source=data.source, n=sft.n_examples, seed=seed + 1)
        completions = [gsm8k_solution_as_template(p["solution"]) for p in problems]
    else:
        raise UserError(f"sft.examples=clean has no clean solutions for task {task.name!r}; give a JSONL path")
    return [{"prompt": build_prompt(p["question"], data.template), "completion": c} for p, c in zip(problems, completions)]


def main(cfg: SFTRecipeConfig, resume: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from recipes.models import load_model, load_tokenizer

    # ------------------------------------------------------------------ config
    out = start_run(cfg, resume)  # a new folder with config.yaml and provenance.json (or the one resumed)
    torch.manual_seed(cfg.run.seed)

    # ------------------------------------------------------------------ data
    pairs = sft_examples(cfg.data, cfg.sft, cfg.run.seed)
    train = Dataset.from_list(pairs)

    # ------------------------------------------------------------------ model
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    tokenizer.padding_side = "right"  # training pads on the right; generation below pads on the left
    model = load_model(cfg.model.name, cfg.model.dtype, cfg.model.trust_remote_code)
    params = n_params(model)
    before = None
    if cfg.eval.before:
        tokenizer.padding_side = "left"
        before = evaluate_model(model, tokenizer, cfg.model.name, cfg.eval, out / "eval_before", cfg.run.seed, cfg.data.template)
        tokenizer.padding_side = "right"

    # ------------------------------------------------------------------ rewards: none (supervised)

    # ------------------------------------------------------------------ trainer
    args = trainer_args(
        SFTConfig, cfg.run, cfg.optim, out,
        completion_only_loss=True, max_length=cfg.sft.max_length, num_train_epochs=cfg.sft.num_train_epochs,
        eos_token=tokenizer.eos_token, pad_token=tokenizer.pad_token,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=lora_config(cfg.model),
                          callbacks=[metrics_logger(out / "metrics.jsonl")])

    # ------------------------------------------------------------------ train
    with Timer() as timer:
        trainer.train(resume_from_checkpoint=str(last_checkpoint(out)) if resume and last_checkpoint(out) else None)
    logs = trainer.state.log_history
    tokens = max([h.get("num_tokens", 0) for h in logs] + [trainer.state.num_input_tokens_seen or 0])
    compute = compute_record(params, tokens, 0, timer.seconds)

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, out / "model")  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(out / "model"), cfg.eval, out / "eval_after", cfg.run.seed, cfg.data.template)
    return finish_run(out, "sft", cfg, compute, logs, before, after, n_examples=len(pairs))
