"""Distillation from a larger teacher into a small student, both kinds (`distill.mode`):

- `offline` (how DeepSeek built R1-Distill): the teacher samples K completions per training
  prompt, only verified-correct ones are kept (rejection sampling), and the student is
  SFT-trained on them (TRL's SFTTrainer, loss on completions only; `sft:` is its SFTConfig).
- `on_policy`: the student generates, the teacher scores every token, and the student
  minimises the generalised Jensen-Shannon divergence to the teacher (TRL's DistillationTrainer;
  `distillation:` is its DistillationConfig: beta, temperature, max_completion_length, ...).

    rlsft train configs/micro/distill_offline.yaml
    rlsft train configs/micro/distill_onpolicy.yaml distillation.beta=1.0
    accelerate launch -m rlsft.cli train configs/qwen2.5-0.5b/distill_offline.yaml

Compute counts the teacher too: its sampling (offline; a cache hit still counts it) or scoring (on-policy).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import rlsft.scoring.countdown
import rlsft.scoring.tasks
import rlsft.scoring.verify
from rlsft.config import DTYPES, RecipeConfig, training_section, trl_section
from rlsft.io import UserError, atomic_write, read_jsonl, to_json, to_jsonl
from rlsft.models import count_parameters, flop_parameters, load_model, load_tokenizer, resolve_model, vocab_size
from rlsft.runs.compute import PROMPT_TOKENS, Cost, distributed_state, estimate_record, is_main_process, param_count
from rlsft.scoring.evaluate import BACKENDS, generate, resolve_backend, vllm_generate
from rlsft.scoring.tasks import TEMPLATES, THINK_PREFILL, build_prompt, get_task, render_prompt, resolve_template
from rlsft.trainer import (
    curve_callback,
    evaluate_model,
    finish_run,
    load_configured_model,
    lora_config,
    metrics_logger,
    prompt_dataset,
    save_trained,
    sft_pair,
    start_run,
    train_and_count,
    trl_args,
)

MODES = ("offline", "on_policy")


@dataclass
class DistillConfig:
    mode: str = "offline"  # offline (rejection-sampled teacher traces + SFT) or on_policy
    teacher: str = "micro-teacher"  # micro model name, folder or hub id (on-policy: same vocabulary as the student)
    # offline: the teacher's sampling
    samples_per_prompt: int = 4  # K teacher samples per prompt
    keep_per_prompt: int = 1  # verified-correct, distinct samples kept per prompt
    max_new_tokens: int = 128  # teacher completion budget, tokens
    temperature: float = 1.0
    generation_batch_size: int | None = None  # sequences per teacher generate call (None: sized from generation_memory_gb)
    generation_memory_gb: float = 2.0
    cache_dir: str | None = "runs/cache/teacher_traces"  # traces are cached here and reused (None: off)
    # the seed of the teacher's prompts and sampling (None: the run's seed). Set it, and every seed
    # of a study learns from the same cached traces: the teacher samples once (its cost still
    # counts in every run), and seeds differ in the student's training alone
    trace_seed: int | None = None
    # the teacher's prompt form: auto, r1-zero or chat (None: the run's data.template). An R1-Distill
    # teacher wants chat with its own template while the student learns from plain r1-zero prompts
    teacher_template: str | None = None
    backend: str = "auto"  # the teacher's sampling: auto (vLLM where it is installed and a GPU is present), transformers, vllm
    # the teacher's weights (auto: the checkpoint's own on a GPU, bf16 for Qwen2.5; float32 on a CPU).
    # Not model.dtype: the teacher never trains, so half precision costs it nothing, while the
    # student's weights may need float32 for its updates to land (rlsft.runs.compute.stalled_update_share)
    teacher_dtype: str = "auto"

    def __post_init__(self):
        for key in ("samples_per_prompt", "keep_per_prompt", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise UserError(f"distill.{key} must be at least 1, got {getattr(self, key)}")
        if not self.temperature >= 0:  # 0: greedy, K identical samples
            raise UserError(f"distill.temperature must be at least 0, got {self.temperature}")
        if self.teacher_template not in (None, *TEMPLATES):
            raise UserError(f"distill.teacher_template must be one of {', '.join(TEMPLATES)} (or unset), got {self.teacher_template!r}")
        if self.backend not in BACKENDS:
            raise UserError(f"distill.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.teacher_dtype not in DTYPES:
            raise UserError(f"distill.teacher_dtype must be one of {', '.join(DTYPES)}, got {self.teacher_dtype!r}")


@dataclass
class Config(RecipeConfig):
    recipe: str = "distill"
    distill: DistillConfig = field(default_factory=DistillConfig)
    training: dict = training_section(learning_rate=1e-4, max_steps=-1, num_train_epochs=2.0, per_device_train_batch_size=16, logging_steps=5)
    sft: dict = trl_section("trl:SFTConfig", completion_only_loss=True, max_length=256)  # offline: any SFTConfig field
    distillation: dict = trl_section("trl:DistillationConfig", beta=0.5, max_completion_length=128)  # on_policy: any DistillationConfig field


def training_args(cfg: Config):
    if cfg.distill.mode not in MODES:
        raise UserError(f"distill.mode must be one of {', '.join(MODES)}, got {cfg.distill.mode!r}")
    if cfg.distill.mode == "offline":
        return trl_args("trl:SFTConfig", cfg, cfg.sft)
    return trl_args("trl:DistillationConfig", cfg, cfg.distillation)


def check_vocabularies(cfg: Config, download: bool = False) -> None:
    """On-policy distillation compares teacher and student logits row for row, so their
    `config.vocab_size` must be equal: Qwen2.5-7B's 152,064 rows against Qwen2.5-1.5B's 151,936 are
    not, though their tokenizers agree. Read from configs (cached, the model cards, or downloaded
    with `download`), never weights; a size that is unknown here is checked when `main` loads.

    >>> from rlsft.config import ModelConfig, RunConfig
    >>> cfg = Config(run=RunConfig(name="x"), model=ModelConfig(name="Qwen/Qwen2.5-1.5B"),
    ...              distill=DistillConfig(mode="on_policy", teacher="Qwen/Qwen2.5-7B-Instruct"))
    >>> check_vocabularies(cfg)
    Traceback (most recent call last):
    rlsft.io.UserError: teacher 'Qwen/Qwen2.5-7B-Instruct' has 152064 logit rows (config.vocab_size) and student 'Qwen/Qwen2.5-1.5B' 151936; on-policy distillation needs the same number: choose a teacher of the student's vocabulary (Qwen2.5 up to 3B has 151,936, 7B and larger 152,064)
    """
    if cfg.distill.mode != "on_policy":
        return  # offline distillation trains on the teacher's text: any vocabulary
    m, teacher = cfg.model, cfg.distill.teacher
    s, t = vocab_size(m.name, m.trust_remote_code, download), vocab_size(teacher, m.trust_remote_code, download)
    if s and t and s != t:
        hint = " (Qwen2.5 up to 3B has 151,936, 7B and larger 152,064)" if "Qwen2.5" in teacher + m.name else ""
        raise UserError(f"teacher {teacher!r} has {t} logit rows (config.vocab_size) and student {m.name!r} {s}; on-policy "
                        f"distillation needs the same number: choose a teacher of the student's vocabulary{hint}")


def estimate(cfg: Config, params: int | None = None) -> dict:
    """Upper-bound compute, the teacher's sampling or scoring included (see rlsft.runs.compute)."""
    check_vocabularies(cfg)  # a dry run refuses a teacher that cannot fit
    a, d = training_args(cfg), cfg.distill
    n = param_count(cfg.model.name) or params
    batch = a.per_device_train_batch_size * a.gradient_accumulation_steps
    if d.mode == "offline":
        n_train = cfg.data.n_train or get_task(cfg.data.task).train_size or 0
        teacher_tokens = n_train * d.samples_per_prompt * (PROMPT_TOKENS + d.max_new_tokens)
        kept = n_train * d.keep_per_prompt  # at most this many traces survive verification
        if a.max_length is None:  # no cap on a trace's length: no upper bound on the student's tokens
            train_tokens = None
        else:
            train_tokens = a.max_steps * batch * a.max_length if a.max_steps > 0 else (int(kept * a.num_train_epochs * a.max_length) or None)
        return estimate_record(n, train_tokens, 0, param_count(d.teacher), teacher_tokens)
    # on-policy: every step's batch of prompts, each completion at its maximum length (epochs: every train prompt, each epoch)
    steps = a.max_steps if a.max_steps > 0 else -(-(cfg.data.n_train or get_task(cfg.data.task).train_size or 0) // batch) * a.num_train_epochs
    tokens = int(steps * batch * (PROMPT_TOKENS + a.max_completion_length)) if a.max_completion_length and steps else None
    return estimate_record(n, tokens, tokens or 0, param_count(d.teacher), tokens or 0)


def teacher_traces(teacher, tokenizer, cfg: Config, progress=None, work: tuple[list, list] | None = None) -> tuple[list[dict], dict]:
    """Rejection sampling: K teacher samples per train prompt, keep verified-correct distinct ones.
    `teacher` is the model, or a function that loads it (not called when vLLM samples: `distill.backend`);
    `work`: `teacher_prompts`' result when the caller has it.
    Prompts are in the teacher's form (`teacher_template`): text, or chat messages rendered with its
    chat template. `progress` (a file) lets a killed sampling continue (see `generate`).

    Returns (rows {question, answer, completion, prompt}, stats {prompts, samples, kept, forward_tokens, seconds}).
    """
    import torch

    d = cfg.distill
    seed = cfg.run.seed if d.trace_seed is None else d.trace_seed
    task = get_task(cfg.data.task)
    problems, prompts = work or teacher_prompts(cfg, tokenizer)
    torch.manual_seed(seed)
    generation: dict = {}  # receives the sampling's wall seconds, every sitting of a continued one included
    loaded = hasattr(teacher, "generate")  # a model, else a function that loads one
    if not loaded and resolve_backend(d.backend) == "vllm":  # vLLM loads the teacher from its own files
        groups = vllm_generate(resolve_model(d.teacher), tokenizer, prompts, d.samples_per_prompt, d.temperature, 1.0, d.max_new_tokens,
                               seed, stats=generation, dtype=d.teacher_dtype)
    else:
        groups = generate(teacher if loaded else teacher(), tokenizer, prompts, d.samples_per_prompt, d.temperature, 1.0,
                          d.max_new_tokens, d.generation_batch_size, d.generation_memory_gb, desc="teacher traces", stats=generation,
                          progress=progress, progress_key=f"{d.teacher} seed={seed}")
    t0 = time.time()
    rendered = [render_prompt(p, tokenizer) for p in prompts]
    # tokens of each prompt as the teacher read it (chat messages rendered), for its forward FLOPs
    prompt_tokens = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    # a chat template that opens <think> itself (DeepSeek-R1-Distill's): the trace gets the opener back, so a student learns to write it
    opener = [r[r.rindex("<think>"):] if r.rstrip().endswith("<think>") else "" for r in rendered]
    texts = [[o + g["text"] for g in group] for o, group in zip(opener, groups)]
    checks = iter(task.verify_many([t for group in texts for t in group], [p["answer"] for p, group in zip(problems, groups) for _ in group]))
    rows, forward_tokens, n_correct = [], 0, 0
    for p, prompt, n_prompt, group, group_texts in zip(problems, prompts, prompt_tokens, groups, texts):
        kept = []
        for g, text in zip(group, group_texts):
            forward_tokens += n_prompt + g["length"]
            ok = next(checks) is True and not g["truncated"]
            n_correct += ok
            if ok and text not in kept and len(kept) < d.keep_per_prompt:
                kept.append(text)
        rows += [{"question": p["question"], "answer": p["answer"], "prompt": prompt, "completion": c} for c in kept]
    stats = {"prompts": len(problems), "samples": len(problems) * d.samples_per_prompt, "correct_samples": n_correct,
             "kept": len(rows), "prompts_with_a_kept_trace": len({r["question"] for r in rows}), "forward_tokens": forward_tokens,
             "seconds": round(generation["seconds"] + time.time() - t0, 1)}  # sampling + verification
    return rows, stats


def opening_think(traces: list[dict], stats: dict) -> list[dict]:
    """The traces whose completion opens with `<think>`, counted in `stats` (`kept_opening_think`);
    a one-line error when none does."""
    kept = [r for r in traces if r["completion"].lstrip().startswith(THINK_PREFILL)]
    stats["kept_opening_think"] = len(kept)
    if not kept:
        raise UserError(f"data.think_prefill: none of the teacher's {stats['kept']} verified traces opens with {THINK_PREFILL}, "
                        "which the student's prompt then holds; turn the prefill off or choose a teacher that writes the tag")
    return kept


def teacher_template(cfg: Config, teacher_tokenizer) -> str:
    """The teacher samples in its own form: `distill.teacher_template`, else the run's, unless that
    is chat and the teacher has no chat template (a micro teacher for a chat student); its traces
    are text, so any student can learn them."""
    template = resolve_template(cfg.distill.teacher_template or cfg.data.template, teacher_tokenizer)
    return template if template != "chat" or getattr(teacher_tokenizer, "chat_template", None) else "r1-zero"


def teacher_prompts(cfg: Config, tokenizer) -> tuple[list[dict], list]:
    """(train problems, prompts in the teacher's form) that the teacher samples traces for."""
    d, data = cfg.distill, cfg.data
    task = get_task(data.task)
    problems = task.load(task.train_split, source=data.source, n=data.n_train, seed=cfg.run.seed if d.trace_seed is None else d.trace_seed)
    return problems, [build_prompt(p["question"], teacher_template(cfg, tokenizer)) for p in problems]


def trace_cache_key(cfg: Config, tokenizer, work: tuple[list, list] | None = None) -> str:
    """What the teacher's traces depend on, hashed, and nothing else (an edit of the lab elsewhere
    reuses them): the teacher (and its weights' size and date when it is a local folder), the
    prompts exactly as the teacher reads them with their gold answers, the sampling settings, seed
    and generation backend, and the verifier that filters them (math-verify's version and the
    lab's verify, countdown and task code, by content)."""

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    d = cfg.distill
    teacher = resolve_model(d.teacher)
    weights = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(teacher).glob("*.safetensors")) if Path(teacher).is_dir() else []
    problems, prompts = work or teacher_prompts(cfg, tokenizer)
    verifier = [metadata.version("math-verify")] + [digest(Path(m.__file__).read_text())
                                                    for m in (rlsft.scoring.verify, rlsft.scoring.countdown, rlsft.scoring.tasks)]
    key = {"teacher": str(Path(teacher).resolve()) if Path(teacher).is_dir() else teacher, "weights": weights,
           "prompts": digest(json.dumps([[render_prompt(q, tokenizer), p["answer"]] for q, p in zip(prompts, problems)])),
           "seed": cfg.run.seed if d.trace_seed is None else d.trace_seed, "verifier": verifier,
           "backend": resolve_backend(d.backend),  # vLLM and generate draw different samples for one seed
           **({"dtype": d.teacher_dtype} if d.teacher_dtype != "auto" else {}),  # a set dtype samples otherwise; auto keeps older keys
           **{k: getattr(d, k) for k in ("samples_per_prompt", "keep_per_prompt", "temperature", "max_new_tokens",
                                         "generation_batch_size", "generation_memory_gb")}}
    return digest(json.dumps(key, sort_keys=True))[:16]


def cached_teacher_traces(teacher_loader, tokenizer, cfg: Config) -> tuple[list[dict], dict]:
    """`teacher_traces`, read from the cache when the same traces were made before."""

    if cfg.distill.cache_dir is None:
        return teacher_traces(teacher_loader, tokenizer, cfg)
    work = teacher_prompts(cfg, tokenizer)  # loaded and rendered once, for the key and the sampling
    folder = Path(cfg.distill.cache_dir) / trace_cache_key(cfg, tokenizer, work)
    if (folder / "stats.json").is_file():
        try:
            stats = json.loads((folder / "stats.json").read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{folder / 'stats.json'}: not valid JSON ({e}); delete {folder} to sample the traces again") from None
        rows = read_jsonl(folder / "traces.jsonl", required=("question", "prompt", "completion")) if stats["kept"] else []
        return rows, {**stats, "cache": f"hit: {folder}"}
    # a sampling killed part way (a study's sitting ending) continues from its last generate call
    rows, stats = teacher_traces(teacher_loader, tokenizer, cfg, progress=folder / "generation.partial.json", work=work)
    atomic_write(folder / "traces.jsonl", to_jsonl(rows))
    atomic_write(folder / "stats.json", to_json(stats))  # written last: its presence marks a complete entry
    (folder / "generation.partial.json").unlink(missing_ok=True)
    return rows, {**stats, "cache": f"written: {folder}"}


def traces_sampled_once(teacher_loader, tokenizer, cfg: Config) -> tuple[list[dict], dict]:
    """`cached_teacher_traces` under accelerate: the first process samples into the cache, the
    others then read it (each sampling on its own would pay the teacher N times, and N vLLM engines
    would share GPU 0)."""
    state = distributed_state()
    if cfg.distill.cache_dir is None and state.num_processes > 1:  # checked outside the barrier, which every process must reach
        raise UserError("distill.cache_dir: needed under several processes (the first samples the traces into it, the others read them)")
    with state.main_process_first():
        return cached_teacher_traces(teacher_loader, tokenizer, cfg)


def main(cfg: Config, resume: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from rlsft.epoch_order import DistillationTrainer  # TRL's, resuming past its first epoch on the same prompts

    # ------------------------------------------------------------------ config
    check_vocabularies(cfg, download=True)  # before a folder is made, weights load or the "before" evaluation is paid
    resolve_backend(cfg.distill.backend)  # the teacher's sampling asks for vLLM where it cannot run: refused as early
    folder, cfg, tokenizer = start_run(cfg, resume)  # the run folder; the config with its prompt form resolved; the tokenizer
    d = cfg.distill
    torch.manual_seed(cfg.run.seed)
    args = training_args(cfg)

    # ------------------------------------------------------------------ data (offline: the teacher's verified traces)
    m = cfg.model
    teacher_tokenizer = load_tokenizer(d.teacher, m.trust_remote_code)

    def load_teacher():
        return load_model(d.teacher, d.teacher_dtype, m.trust_remote_code, attn_implementation=m.attn_implementation)

    trace_stats = None
    if d.mode == "offline":
        # text traces, so any teacher vocabulary works; cached, and reused by later runs. Sampled
        # before the student loads: the teacher's weights (2 GB for a 0.5B teacher in float32) are
        # loaded only for traces the cache lacks and freed with them, and a run without a verified
        # trace stops before its evaluation before training is paid
        traces, trace_stats = traces_sampled_once(load_teacher, teacher_tokenizer, cfg)
        if not traces:
            raise UserError(f"the teacher produced no verified-correct trace on {trace_stats['prompts']} prompts; nothing to distil")
        if is_main_process():
            atomic_write(folder.teacher_traces_file, to_jsonl(traces))
        if cfg.data.think_prefill:  # the student's prompt opens <think>: only a trace that opens it too continues that prompt
            traces = opening_think(traces, trace_stats)
        # the student's own prompt form for each question (the teacher's may differ)
        train_set = Dataset.from_list([sft_pair(build_prompt(r["question"], cfg.data.template), r["completion"], tokenizer, cfg.data.think_prefill)
                                       for r in traces])
    else:
        train_set = prompt_dataset(cfg.data, cfg.run.seed, tokenizer)  # the tokenizer renders a <think> prefill

    # ------------------------------------------------------------------ model (student and teacher)
    if d.mode == "on_policy" and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"teacher {d.teacher!r} and student {m.name!r} have different tokenizers; on-policy distillation needs one vocabulary")
    model = load_configured_model(m)
    teacher = load_teacher() if d.mode == "on_policy" else None  # on-policy, the teacher scores every step
    # N of each for the compute record (an untied input embedding is a lookup, left out)
    params, teacher_params = flop_parameters(model), count_parameters(d.teacher, m.trust_remote_code, count=flop_parameters)
    before = evaluate_model(model, tokenizer, cfg.model.name, cfg, folder, "before")

    # ------------------------------------------------------------------ rewards: none (the verifier chose offline traces; on-policy, the teacher's logits)

    # ------------------------------------------------------------------ trainer
    def cost(tokens: int) -> Cost:
        """Trained and forward-only student tokens and the teacher's FLOPs for `tokens` student
        tokens. Offline: the teacher's sampling (a cache hit still counts it: it is part of what the
        recipe costs) and student SFT; on-policy: student generation and training, and the teacher
        scoring every token."""
        if d.mode == "offline":
            return Cost(train=tokens, forward=0, other_flops=2 * teacher_params * trace_stats["forward_tokens"])
        return Cost(train=tokens, forward=tokens, other_flops=2 * teacher_params * tokens)

    curve: list[dict] = []
    callbacks = [metrics_logger(folder), curve_callback(folder, cfg, tokenizer, params, cost, curve)]
    common = dict(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                  peft_config=lora_config(cfg.model), callbacks=callbacks)
    trainer = SFTTrainer(**common) if d.mode == "offline" else DistillationTrainer(teacher_model=teacher, **common)

    # ------------------------------------------------------------------ train
    compute = train_and_count(trainer, folder, resume, params, cost, curve, other_seconds=(trace_stats or {}).get("seconds", 0.0))
    compute["teacher_parameters"], compute["teacher_flops"] = teacher_params, cost(compute["train_tokens"]).other_flops

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, folder)  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(folder.model_dir), cfg, folder, "after")
    return finish_run(folder, f"distill-{d.mode}", cfg, compute, before, after, curve, teacher_traces=trace_stats)
