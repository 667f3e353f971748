"""SFT cold start (the first stage of the R1 recipe): a small set of clean, single-language
worked solutions, loss on the completion only.

    rlsft train configs/micro/sft_cold_start.yaml                  # CPU, about a minute
    rlsft train configs/micro/sft_cold_start.yaml sft.packing=true sft.padding_free=true
    rlsft train configs/micro/r1.yaml                              # SFT, then GRPO from its output
    accelerate launch -m rlsft.cli train configs/qwen2.5-0.5b/sft_cold_start.yaml

Config: `examples` (where the worked solutions come from) and the sections every recipe has;
`training:` and `sft:` go unchanged into TRL's `SFTConfig` (any of its fields).
`examples.source`:
- `clean`: the task's own clean solutions (`Task.clean_solutions`): for micro tasks an error-free
  solution in `examples.language`; for GSM8K the upstream solution, calculator notes removed.
- a JSONL path with `question` (or `prompt`) and `completion` per line (for example verified
  teacher traces from `recipes/distill.py`); a line with a question is prompted in the run's own
  form (a trace's `prompt` is its teacher's), one without it by its `prompt` as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlsft.config import RecipeConfig, training_section, trl_section
from rlsft.io import UserError, read_jsonl
from rlsft.models import flop_parameters
from rlsft.runs.compute import Cost, estimate_record, param_count
from rlsft.scoring.tasks import build_prompt, get_task
from rlsft.trainer import (
    curve_callback,
    evaluate_model,
    finish_run,
    load_configured_model,
    lora_config,
    metrics_logger,
    save_trained,
    sft_pair,
    start_run,
    train_and_count,
    trl_args,
)


@dataclass
class ExamplesConfig:
    source: str = "clean"  # clean, or a JSONL path of {question|prompt, completion}
    n: int | None = 256  # a cold start is small: a few hundred examples (None: all)
    language: str = "en"  # language of the clean solutions

    def __post_init__(self):
        if self.n is not None and self.n < 1:
            raise UserError(f"examples.n must be at least 1, got {self.n} (null: all)")


@dataclass
class Config(RecipeConfig):
    recipe: str = "sft"
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    training: dict = training_section(learning_rate=1e-4, max_steps=-1, num_train_epochs=3.0, per_device_train_batch_size=16, logging_steps=5)
    sft: dict = trl_section("trl:SFTConfig", completion_only_loss=True, max_length=256)  # any SFTConfig field


def training_args(cfg: Config):
    return trl_args("trl:SFTConfig", cfg, cfg.sft)


def estimate(cfg: Config, params: int | None = None) -> dict:
    """Upper-bound compute: every example at the maximum length (see rlsft.runs.compute)."""
    a = training_args(cfg)
    if a.max_length is None:  # no cap on an example's length: no upper bound
        return estimate_record(param_count(cfg.model.name) or params, None, 0)
    if a.max_steps > 0:
        tokens = a.max_steps * a.per_device_train_batch_size * a.gradient_accumulation_steps * a.max_length
    else:  # epoch-based: every example at its maximum length, each epoch
        examples = cfg.examples.n or get_task(cfg.data.task).train_size
        tokens = int(examples * a.num_train_epochs * a.max_length) if examples else None
    return estimate_record(param_count(cfg.model.name) or params, tokens, 0)


def sft_examples(cfg: Config, tokenizer=None) -> list[dict]:
    """Prompt/completion pairs for SFTTrainer (a completion as the assistant's message in chat form;
    with `data.think_prefill`, the prompt ending in `<think>` as GRPO and the evaluations give it)."""
    ex, template, prefill = cfg.examples, cfg.data.template, cfg.data.think_prefill
    if ex.source != "clean":
        pairs = []
        for i, r in enumerate(read_jsonl(ex.source, required=("completion",))):
            # the run's own prompt form from the question (a trace file's `prompt` is in its teacher's form), else the line's prompt
            prompt = build_prompt(r["question"], template) if r.get("question") else r.get("prompt")
            if prompt is None:
                raise UserError(f"{ex.source}: line {i + 1} has neither prompt nor question")
            if not isinstance(r["completion"], str):  # a conversational completion or a number: the lab's examples are text
                raise UserError(f"{ex.source}: line {i + 1}'s completion is {type(r['completion']).__name__}, not text")
            pairs.append(sft_pair(prompt, r["completion"], tokenizer, prefill))
        return pairs[: ex.n] if ex.n else pairs
    task = get_task(cfg.data.task)
    if task.clean_solutions is None:
        raise UserError(f"examples.source=clean: task {task.name!r} has no clean solutions; give a JSONL path")
    problems = task.load(task.train_split, source=cfg.data.source, n=ex.n, seed=cfg.run.seed + 1)  # not the RL prompts' seed
    completions = task.clean_solutions(problems, ex.language)
    return [sft_pair(build_prompt(p["question"], template), c, tokenizer, prefill) for p, c in zip(problems, completions)]


def main(cfg: Config, resume: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    # ------------------------------------------------------------------ config
    folder, cfg, tokenizer = start_run(cfg, resume)  # the run folder; the config with its prompt form resolved; the tokenizer
    torch.manual_seed(cfg.run.seed)
    args = training_args(cfg)

    # ------------------------------------------------------------------ data
    pairs = sft_examples(cfg, tokenizer)
    train_set = Dataset.from_list(pairs)

    # ------------------------------------------------------------------ model
    model = load_configured_model(cfg.model)
    params = flop_parameters(model)  # N of the compute record: an untied input embedding is a lookup
    before = evaluate_model(model, tokenizer, cfg.model.name, cfg, folder, "before")

    # ------------------------------------------------------------------ rewards: none (supervised)

    # ------------------------------------------------------------------ trainer
    def cost(tokens: int) -> Cost:  # every token trains, its logits computed (the loss masks the prompt's after the head)
        return Cost(train=tokens, forward=0)

    curve: list[dict] = []
    callbacks = [metrics_logger(folder), curve_callback(folder, cfg, tokenizer, params, cost, curve)]
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                         peft_config=lora_config(cfg.model), callbacks=callbacks)

    # ------------------------------------------------------------------ train
    compute = train_and_count(trainer, folder, resume, params, cost, curve)

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, folder)  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(folder.model_dir), cfg, folder, "after")
    return finish_run(folder, "sft", cfg, compute, before, after, curve, n_examples=len(pairs))
