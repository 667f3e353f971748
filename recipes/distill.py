"""Distillation from a larger teacher into a small student, both kinds:

- `offline` (how DeepSeek built R1-Distill): the teacher samples K completions per training
  prompt, only verified-correct ones are kept (rejection sampling), and the student is
  SFT-trained on them (TRL's SFTTrainer, loss on completions only).
- `on_policy`: the student generates, the teacher scores every token, and the student
  minimises the generalised Jensen-Shannon divergence to the teacher (TRL's DistillationTrainer,
  GKD-style).

    rlsft train configs/micro/distill_offline.yaml
    rlsft train configs/micro/distill_on_policy.yaml
    accelerate launch -m recipes.cli train configs/qwen2.5-0.5b/distill_offline.yaml

Sections: config, data, model, rewards (the verifier filters teacher traces), trainer, train,
save, evaluate. Compute counts the teacher too: its sampling (offline) or scoring (on-policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recipes.common import (
    DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, Timer, compute_record, evaluate_model, finish_run,
    last_checkpoint, lora_config, metrics_logger, n_params, prompt_dataset, save_trained, start_run, trainer_args,
)
from recipes.io import UserError, atomic_write, to_jsonl


@dataclass
class DistillSection:
    mode: str = "offline"  # offline (rejection-sampled teacher traces + SFT) or on_policy
    teacher: str = "micro-teacher"  # micro model name, folder or hub id (on-policy: same vocabulary as the student)
    max_new_tokens: int = 128  # completion budget, tokens (teacher sampling, or student on-policy generation)
    temperature: float = 1.0
    # offline
    samples_per_prompt: int = 4  # K teacher samples per prompt
    keep_per_prompt: int = 1  # verified-correct, distinct samples kept per prompt
    max_length: int = 256  # SFT sequence length, tokens
    num_train_epochs: float = 2.0  # used when optim.max_steps <= 0
    generation_batch_size: int = 64  # prompts per teacher generate call
    cache_dir: str | None = "runs/cache/teacher_traces"  # offline traces are cached here and reused (None: off)
    # on-policy
    beta: float = 0.5  # generalised JSD: 0 forward KL, 1 reverse KL, 0.5 JSD


@dataclass
class DistillRecipeConfig:
    run: RunConfig
    recipe: str = "distill"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillSection = field(default_factory=DistillSection)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=1e-4, max_steps=-1, per_device_train_batch_size=16, logging_steps=5))
    eval: EvalConfig = field(default_factory=EvalConfig)


def teacher_traces(teacher, tokenizer, data: DataConfig, d: DistillSection, seed: int) -> tuple[list[dict], dict]:
    """Rejection sampling: K teacher samples per train prompt, keep verified-correct distinct ones.

    Returns (rows {question, answer, completion, prompt}, stats {prompts, samples, kept, forward_tokens}).
    """
    import torch

    from recipes.evaluate import generate
    from recipes.tasks import build_prompt, get_task

    task = get_task(data.task)
    problems = task.load(task.train_split, source=data.source, n=data.n_train, seed=seed)
    prompts = [build_prompt(p["question"], data.template) for p in problems]
    torch.manual_seed(seed)
    groups = generate(teacher, tokenizer, prompts, d.samples_per_prompt, d.temperature, 1.0, d.max_new_tokens,
                      d.generation_batch_size, desc="teacher traces")
    prompt_tokens = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    rows, forward_tokens, n_correct = [], 0, 0
    for p, prompt, n_prompt, group in zip(problems, prompts, prompt_tokens, groups):
        kept = []
        for g in group:
            forward_tokens += n_prompt + g["length"]
            ok = not g["truncated"] and task.verify(g["text"], p["answer"]) is True
            n_correct += ok
            if ok and g["text"] not in kept and len(kept) < d.keep_per_prompt:
                kept.append(g["text"])
        rows += [{"question": p["question"], "answer": p["answer"], "prompt": prompt, "completion": c} for c in kept]
    stats = {"prompts": len(problems), "samples": len(problems) * d.samples_per_prompt, "correct_samples": n_correct,
             "kept": len(rows), "prompts_with_a_kept_trace": len({r["question"] for r in rows}), "forward_tokens": forward_tokens}
    return rows, stats


def trace_cache_key(d: DistillSection, data: DataConfig, seed: int) -> str:
    """Everything the teacher's traces depend on, hashed: the teacher (and its weights' size and
    date when it is a local folder), the prompts and the sampling settings."""
    import hashlib
    import json
    from pathlib import Path

    from recipes.models import resolve_model

    teacher = resolve_model(d.teacher)
    weights = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(teacher).glob("*.safetensors")) if Path(teacher).is_dir() else []
    key = {"teacher": str(Path(teacher).resolve()) if Path(teacher).is_dir() else teacher, "weights": weights,
           "task": data.task, "source": data.source, "n_train": data.n_train, "template": data.template, "seed": seed,
           "samples_per_prompt": d.samples_per_prompt, "keep_per_prompt": d.keep_per_prompt,
           "temperature": d.temperature, "max_new_tokens": d.max_new_tokens}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cached_teacher_traces(teacher_loader, tokenizer, data: DataConfig, d: DistillSection, seed: int) -> tuple[list[dict], dict]:
    """`teacher_traces`, read from the cache when the same traces were made before."""
    import json
    from pathlib import Path

    from recipes.io import read_jsonl, to_json

    if d.cache_dir is None:
        return teacher_traces(teacher_loader(), tokenizer, data, d, seed)
    folder = Path(d.cache_dir) / trace_cache_key(d, data, seed)
    if (folder / "stats.json").is_file():
        stats = json.loads((folder / "stats.json").read_text())
        rows = read_jsonl(folder / "traces.jsonl", required=("prompt", "completion")) if stats["kept"] else []
        return rows, {**stats, "cache": f"hit: {folder}"}
    rows, stats = teacher_traces(teacher_loader(), tokenizer, data, d, seed)
    atomic_write(folder / "traces.jsonl", to_jsonl(rows))
    atomic_write(folder / "stats.json", to_json(stats))  # written last: its presence marks a complete entry
    return rows, {**stats, "cache": f"written: {folder}"}


def main(cfg: DistillRecipeConfig, resume: bool = False) -> dict:
    import torch
    from datasets import Dataset

    from recipes.models import load_model, load_tokenizer

    # ------------------------------------------------------------------ config
    out = start_run(cfg, resume)  # a new folder with config.yaml and provenance.json (or the one resumed)
    d = cfg.distill
    if d.mode not in ("offline", "on_policy"):
        raise UserError(f"distill.mode must be offline or on_policy, got {d.mode!r}")
    torch.manual_seed(cfg.run.seed)

    # ------------------------------------------------------------------ model (student and teacher)
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    teacher_tokenizer = load_tokenizer(d.teacher, cfg.model.trust_remote_code)
    if d.mode == "on_policy" and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"teacher {d.teacher!r} and student {cfg.model.name!r} have different tokenizers; on-policy distillation needs one vocabulary")
    model = load_model(cfg.model.name, cfg.model.dtype, cfg.model.trust_remote_code)
    teacher = load_model(d.teacher, cfg.model.dtype, cfg.model.trust_remote_code)
    params, teacher_params = n_params(model), n_params(teacher)  # (offline: the cache may spare its sampling)
    before = evaluate_model(model, tokenizer, cfg.model.name, cfg.eval, out / "eval_before", cfg.run.seed, cfg.data.template) if cfg.eval.before else None

    # ------------------------------------------------------------------ data (+ rewards: the verifier filters offline traces)
    trace_stats = None
    with Timer() as timer:
        if d.mode == "offline":
            # text traces, so any teacher vocabulary works; cached, and reused by later runs
            traces, trace_stats = cached_teacher_traces(lambda: teacher, teacher_tokenizer, cfg.data, d, cfg.run.seed)
            if not traces:
                raise UserError(f"the teacher produced no verified-correct trace on {trace_stats['prompts']} prompts; nothing to distil")
            atomic_write(out / "teacher_traces.jsonl", to_jsonl(traces))
            train = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"].lstrip()} for r in traces])
        else:
            train = prompt_dataset(cfg.data, cfg.run.seed)

        # -------------------------------------------------------------- trainer
        if d.mode == "offline":
            from trl import SFTConfig, SFTTrainer

            del teacher  # not needed while the student trains
            tokenizer.padding_side = "right"
            args = trainer_args(SFTConfig, cfg.run, cfg.optim, out, completion_only_loss=True, max_length=d.max_length,
                                num_train_epochs=d.num_train_epochs, eos_token=tokenizer.eos_token, pad_token=tokenizer.pad_token)
            trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=lora_config(cfg.model),
                          callbacks=[metrics_logger(out / "metrics.jsonl")])
        else:
            from trl import DistillationConfig, DistillationTrainer

            args = trainer_args(DistillationConfig, cfg.run, cfg.optim, out, beta=d.beta, temperature=d.temperature,
                                max_completion_length=d.max_new_tokens)
            trainer = DistillationTrainer(model=model, teacher_model=teacher, args=args, train_dataset=train, processing_class=tokenizer, peft_config=lora_config(cfg.model),
                          callbacks=[metrics_logger(out / "metrics.jsonl")])

        # -------------------------------------------------------------- train
        trainer.train(resume_from_checkpoint=str(last_checkpoint(out)) if resume and last_checkpoint(out) else None)
    logs = trainer.state.log_history
    tokens = max([h.get("num_tokens", 0) for h in logs] + [trainer.state.num_input_tokens_seen or 0])
    if d.mode == "offline":
        # teacher sampling (forward, teacher-sized) + student SFT (forward + backward); a cache hit
        # still counts the teacher's sampling: it is part of what the recipe costs
        teacher_flops = 2 * teacher_params * trace_stats["forward_tokens"]
        compute = compute_record(params, tokens, 0, timer.seconds, extra_flops=teacher_flops)
    else:
        # student generation (forward) + teacher scoring (forward, teacher-sized) + student training
        teacher_flops = 2 * teacher_params * tokens
        compute = compute_record(params, tokens, tokens, timer.seconds, extra_flops=teacher_flops)
    compute["teacher_parameters"], compute["teacher_flops"] = teacher_params, teacher_flops

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, out / "model")  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(out / "model"), cfg.eval, out / "eval_after", cfg.run.seed, cfg.data.template)
    return finish_run(out, f"distill-{d.mode}", cfg, compute, logs, before, after, teacher_traces=trace_stats)
