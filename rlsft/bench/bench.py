"""`rlsft bench`: what users pay for, measured side by side against plain TRL defaults in one run.

    rlsft bench                                   # micro-student on this machine
    rlsft bench --model PATH --out reports/bench  # any local model, e.g. a random-init Qwen2.5 folder

For GRPO it splits the step into generation (`GRPOTrainer._generate`), scoring
(`_calculate_rewards`) and the rest (log-probabilities, loss, backward, optimizer: "update"), and
gives rollout tokens per second. For SFT it gives training tokens per second and model FLOPs
utilisation, MFU = 6 N tokens/s / peak, where the peak is this device's own measured matmul rate
in the dtype the row's matmuls run in (float32, or bfloat16 for bf16 weights or autocast), so MFU
is comparable across machines and precisions. Each measurement runs twice on the
same model, data and batch: with the lab's settings (rlsft.trainer.trainer_args, rlsft.models)
and with TRL's defaults (GRPOConfig/SFTConfig with only sizes set, the model from
AutoModelForCausalLM). Shared machines drift, so read the ratio, not the absolute times. The first
`warmup` steps of each run are left out of the timings.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from rlsft.config import DataConfig, ModelConfig, RunConfig
from rlsft.io import UserError, atomic_write, to_json
from rlsft.launch import recipe_module
from rlsft.micro.world import clean_solution, generate_problems
from rlsft.models import flop_parameters, load_model, load_tokenizer, matmul_params, resolve_model
from rlsft.runs.compute import peak_memory_gb
from rlsft.runs.provenance import provenance
from rlsft.scoring import pool
from rlsft.scoring.evaluate import generate
from rlsft.scoring.rewards import accuracy_reward
from rlsft.scoring.tasks import TEMPLATES, build_prompt, get_task
from rlsft.trainer import lora_config, prompt_dataset


@dataclass
class BenchArgs:
    model: str = "micro-student"
    out: str = "reports/bench"
    steps: int = 6  # timed optimizer steps per measurement, after the warm-up
    warmup: int = 2
    prompts_per_step: int = 8
    num_generations: int = 8
    max_completion_length: int = 96
    sft_batch_size: int = 16
    sft_max_length: int = 256
    reuse: int = 4  # GRPO "lab-reuse" variant: optimizer steps per generate call (1: no such variant)
    micro_batch: int = 0  # GRPO "lab-micro" variant: completions per forward/backward within a step (0: no such variant)
    isolate: bool = False  # each measurement in its own process, so each peak memory is its own
    eval_n: int = 256  # held-out micro-arith problems for the evaluation measurement
    eval_max_new_tokens: int = 128
    parts: str = "eval,grpo,sft"  # which measurements to run
    # extra GRPO variants of the lab's step: bf16 (TrainingArguments.bf16: bfloat16 autocast of the update,
    # float32 weights), bf16-weights (the model loaded in bfloat16: generation too)
    precision: str = ""
    template: str = "r1-zero"  # the prompt form of the GRPO and eval measurements (chat: the model's chat template)
    wide: int = 0  # GRPO "lab-wide" variant: this many prompts per step (x num_generations completions, one generate call),
    # trained in micro-batches of the narrow step's completions (or --micro-batch) (0: no such variant)
    lora: str = ""  # GRPO LoRA variants (alpha 32, all linear layers), a comma list of ranks, e.g. "1,16"; on the wide step if any
    eval_samples: str = "1,8"  # samples per problem of the evaluation measurements, a comma list
    profile: bool = False  # also profile one GRPO update with TRL's and the lab's log-prob head (profile-<device>-<model>.md)
    by_length: bool = False  # also the lab's step (the wide one if any) with group_by_length (micro-batches by length, trimmed)
    full_batch: bool = False  # also the lab's step (the wide one if any) and the evaluation with every sequence computed to
    # its call's end (transformers' generate, not rlsft.scoring.decode): the same-run baseline of finished sequences leaving


def cpu_features() -> list[str]:
    """The CPU's vector and matrix features that decide float32 against bfloat16 speed (Linux
    /proc/cpuinfo; [] elsewhere): avx2, avx512f, avx512_bf16 (bf16 dot products), amx_bf16 (tiles)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]


def matmul_peak_flops(n: int = 2048, repeats: int = 5, dtype: str | None = None) -> tuple[float, str]:
    """This device's measured dense matmul rate (FLOP/s, best of `repeats`) and its dtype (default:
    bfloat16 on a GPU, float32 on a CPU)."""
    import torch

    gpu = torch.cuda.is_available()
    dtype = getattr(torch, dtype) if dtype else torch.bfloat16 if gpu else torch.float32
    n = 8192 if gpu else n
    a = torch.randn(n, n, dtype=dtype, device="cuda" if gpu else "cpu")
    best = float("inf")
    for _ in range(repeats + 1):
        if gpu:
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ a
        if gpu:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best, str(dtype).replace("torch.", "")


def compute_dtype(model_dtype: str) -> str:
    """The dtype a row's matmuls run in, from its `model_dtype`: bf16 weights or bf16 autocast
    multiply in bfloat16, float16 weights in float16, the rest in float32.

    >>> compute_dtype("float32"), compute_dtype("float32 + bf16 autocast"), compute_dtype("bfloat16")
    ('float32', 'bfloat16', 'bfloat16')
    """
    if "bf16" in model_dtype or "bfloat16" in model_dtype:
        return "bfloat16"
    return "float16" if "float16" in model_dtype else "float32"


class Peaks:
    """This device's measured matmul peak (FLOP/s) per dtype, each measured in this process the
    first time a row needs it: a bfloat16 row read against a float32 peak would read several times high
    on a CPU with bf16 matrix units (AMX), a float32 row against a bfloat16 peak low on a GPU."""

    def __init__(self):
        self.flops: dict[str, float] = {}

    def __call__(self, dtype: str) -> float:
        if dtype not in self.flops:
            self.flops[dtype] = matmul_peak_flops(dtype=dtype)[0]
        return self.flops[dtype]

    def fraction(self, row: dict, achieved_tflops: float, dtype: str) -> dict:
        """`row` with the fraction of its dtype's peak that `achieved_tflops` (TFLOP/s) reaches."""
        return {**row, "achieved_tflops": achieved_tflops, "peak_dtype": dtype, "fraction_of_peak": achieved_tflops * 1e12 / self(dtype)}


class _Clock:
    """Accumulates the seconds spent in wrapped methods, per name, from step `warmup` on."""

    def __init__(self, warmup: int):
        self.warmup, self.step, self.seconds = warmup, 0, {}

    def wrap(self, name: str, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if self.step >= self.warmup:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
        return timed

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class StepClock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                clock.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if clock.step >= clock.warmup:
                    clock.seconds["step"] = clock.seconds.get("step", 0.0) + time.perf_counter() - clock.t0
                clock.step += 1

        return StepClock()


def step_flops(body: int, head: int, prompt_tokens: float, completion_tokens: float, train: int = 6, adapters: int = 0) -> float:
    """A GRPO step's useful matmul FLOPs: every prompt and completion token through the body, 2 per
    parameter to generate (or prefill) and `train` to train on (6: forward and backward; 4 for LoRA,
    whose frozen weights need no weight gradient), plus 6 per LoRA `adapters` parameter per trained
    token (their forward, backward and weight gradient, as the compute record's 4N + 6T); the output
    head only where a token is sampled or scored, the completion tokens. Attention's own FLOPs,
    2 x layers x d_model x context per token against the weights' 2N, are left out, so the fraction
    of peak reads low by their share (a few percent at the real models' lengths, more for the
    small micro models).

    >>> step_flops(100, 10, prompt_tokens=5, completion_tokens=3)  # 8 x 100 x 8 + 8 x 10 x 3
    6640
    >>> step_flops(100, 10, prompt_tokens=5, completion_tokens=3, train=4, adapters=2)  # + 6 x 2 x 8
    5076
    """
    return (2 + train) * (body * (prompt_tokens + completion_tokens) + head * completion_tokens) \
        + 6 * adapters * (prompt_tokens + completion_tokens)


def grpo_variant(args: BenchArgs, variant: str) -> dict:
    """A GRPO variant's settings: trainer (lab or trl), config (lab or TRL's defaults), prompts per
    step, completions per forward/backward, steps per generate call, LoRA rank, dtype.

    `lab-trl-trainer` is the lab's config on TRL's own trainer: the lab's step before
    rlsft.grpo_trainer. `lab-wide` is a step of `args.wide` prompts. `lab[-wide]-lora-rN` is LoRA of
    rank N on the wide step (if any) or the narrow one. A `-full-batch` suffix: the same step with
    every completion computed to its generate call's end (transformers' `generate` itself)."""
    narrow = args.prompts_per_step * args.num_generations
    v = {"trainer": "lab", "config": "lab", "prompts": args.prompts_per_step, "micro": narrow, "reuse": 1, "lora_r": 0,
         "dtype": "auto", "bf16": False, "compact": not variant.endswith("-full-batch"), "by_length": variant.endswith("-by-length")}
    variant = variant.removesuffix("-full-batch").removesuffix("-by-length")
    if variant == "trl-defaults":
        v.update(trainer="trl", config="trl")
    elif variant == "lab-trl-trainer":
        v.update(trainer="trl")
    elif variant == "lab-reuse":
        v.update(reuse=args.reuse)
    elif variant == "lab-micro":
        v.update(micro=args.micro_batch)
    elif variant in ("lab-bf16", "lab-bf16-weights"):
        v.update(micro=args.micro_batch or narrow, bf16=variant == "lab-bf16", dtype="bfloat16" if variant == "lab-bf16-weights" else "auto")
    elif variant.startswith("lab-wide") or variant.startswith("lab-lora"):
        if variant.startswith("lab-wide"):
            v.update(prompts=args.wide, micro=args.micro_batch or narrow)
        if "-lora-r" in variant:
            v.update(lora_r=int(variant.rsplit("-r", 1)[1]))
    elif variant != "lab":
        raise ValueError(variant)
    return v


def bench_grpo(args: BenchArgs, variant: str, work: Path) -> dict:
    """One GRPO measurement of `variant` (`grpo_variant`). Its roofline: the step's useful matmul
    FLOPs (`step_flops`) per second, `achieved_tflops`, which `run_bench` puts against the measured
    matmul peak of the row's dtype."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from rlsft import grpo_trainer  # imports torch and trl at its top
    from rlsft.scoring import decode  # imports torch at its top

    torch.manual_seed(0)
    v = grpo_variant(args, variant)
    tokenizer = load_tokenizer(args.model)  # every variant: the tokenizer as saved (see README)
    batch = v["prompts"] * args.num_generations  # completions per optimizer step
    reuse, micro = v["reuse"], v["micro"]
    accumulation = batch // micro  # the step's gradient is accumulated over the micro-batches
    warmup, timed = -(-args.warmup // reuse) * reuse, -(-args.steps // reuse) * reuse  # whole generate cycles
    steps = warmup + timed
    train = prompt_dataset(DataConfig(task="micro-arith", n_train=steps * v["prompts"], template=args.template), seed=0)
    if v["config"] == "lab":
        model = load_model(args.model, v["dtype"])
        cfg = recipe_module("grpo").Config(
            run=RunConfig(name="bench", out_dir=str(work), report_to="none"), rewards={"accuracy": 1.0},
            model=ModelConfig(name=args.model, lora_r=v["lora_r"]),
            training=dict(learning_rate=1e-4, max_steps=steps, per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation,
                          logging_steps=1, save_strategy="no"),
            grpo=dict(num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                      loss_type="dapo", beta=0.0, steps_per_generation=reuse * accumulation))
        config = recipe_module("grpo").training_args(cfg)  # the recipe's own TRL config
        config.reward_weights = [1.0]  # no monitor here
        config.bf16 = v["bf16"]  # bfloat16 autocast of the forward and backward passes
        peft_config = lora_config(cfg.model)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model))
        gpu = torch.cuda.is_available()
        config = GRPOConfig(output_dir=str(work / "checkpoints"), report_to="none", save_strategy="no", use_cpu=not gpu, bf16=gpu,
                            learning_rate=1e-4, per_device_train_batch_size=batch, num_generations=args.num_generations,
                            max_completion_length=args.max_completion_length, max_steps=steps, logging_steps=1)
        peft_config = None
    body, head = matmul_params(model)
    trainer_class = grpo_trainer.GRPOTrainer if v["trainer"] == "lab" else GRPOTrainer
    trainer = trainer_class(model=model, args=config, train_dataset=train, reward_funcs=[accuracy_reward], processing_class=tokenizer,
                            peft_config=peft_config)
    clock = _Clock(warmup)
    trainer.add_callback(clock.callback())
    trainer._generate = clock.wrap("generation", trainer._generate)
    trainer._calculate_rewards = clock.wrap("scoring", trainer._calculate_rewards)
    trainer.group_by_length = v["by_length"] and v["trainer"] == "lab"
    with decode.full_batch(not v["compact"]):
        trainer.train()
    # one log per generate call (of reuse x batch completions), at the step that made it (1-based)
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h and h["step"] > warmup]
    completion_tokens = sum(h["completions/mean_length"] for h in logs) * batch * reuse
    seen = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]  # cumulative prompt + completion tokens
    tokens_per_step = (seen[-1] - seen[warmup - 1]) / timed if warmup and len(seen) > warmup else seen[-1] / steps
    completions_per_step = completion_tokens / timed
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    step_tflops = step_flops(body, head, tokens_per_step - completions_per_step, completions_per_step, 4 if v["lora_r"] else 6,
                             adapters=trainable if v["lora_r"] else 0) / 1e12
    s = clock.seconds
    update = s["step"] - s.get("generation", 0.0) - s.get("scoring", 0.0)  # includes the old-log-prob pass
    return {
        "variant": variant, "trainer": v["trainer"], "lora_r": v["lora_r"], "steps_timed": timed, "steps_per_generation": reuse,
        "finished_leave_batch": v["compact"] and v["trainer"] == "lab", "group_by_length": v["by_length"],
        "completions_per_step": batch, "micro_batch": micro, "tokens_per_step": tokens_per_step, "model_tflops_per_step": step_tflops,
        "achieved_tflops": step_tflops / (s["step"] / timed),
        "step_seconds": s["step"] / timed, "generation_seconds": s.get("generation", 0.0) / timed,
        "scoring_seconds": s.get("scoring", 0.0) / timed, "update_seconds": update / timed,
        "rollouts_per_hour": batch * 3600 / (s["step"] / timed),
        "rollout_tokens_per_second": completion_tokens / s["generation"] if s.get("generation") else None,
        "mean_completion_tokens": completion_tokens / (batch * reuse * len(logs)) if logs else None,
        "model_use_cache": bool(getattr(model.config, "use_cache", None)),
        "model_dtype": str(next(model.parameters()).dtype).replace("torch.", "") + (" + bf16 autocast" if config.bf16 else ""),
        "trainable_parameters": trainable,
        "reward_mean": sum(h["reward"] for h in logs) / len(logs) if logs and all("reward" in h for h in logs) else None,
        "peak_memory_gb": peak_memory_gb(),
    }


def bench_profile(args: BenchArgs, work: Path) -> dict:
    """torch.profiler over one GRPO update (loss, forward and backward; no generation, no
    optimizer) of the narrow step's completions, on one generated batch, with TRL's log-prob head
    and with the lab's (`rlsft.grpo_trainer`): seconds, the top operators by own time, and the
    head's share. For each head an untimed pass comes first (allocation, caches), then a timed
    pass without the profiler (its seconds), then the profiled pass (its operators)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from rlsft import grpo_trainer  # imports torch and trl at its top

    torch.manual_seed(0)
    batch = args.prompts_per_step * args.num_generations
    cfg = recipe_module("grpo").Config(
        run=RunConfig(name="bench", out_dir=str(work), report_to="none"), rewards={"accuracy": 1.0}, model=ModelConfig(name=args.model),
        training=dict(learning_rate=1e-4, max_steps=1, per_device_train_batch_size=batch, logging_steps=1, save_strategy="no"),
        grpo=dict(num_generations=args.num_generations, max_completion_length=args.max_completion_length, loss_type="dapo", beta=0.0))
    config = recipe_module("grpo").training_args(cfg)
    config.reward_weights = [1.0]
    train = prompt_dataset(DataConfig(task="micro-arith", n_train=args.prompts_per_step, template=args.template), seed=0)
    trainer = grpo_trainer.GRPOTrainer(model=load_model(args.model), args=config, train_dataset=train, reward_funcs=[accuracy_reward],
                                       processing_class=load_tokenizer(args.model))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which this bypasses
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))  # generates the batch
    inputs["advantages"] = torch.linspace(-1, 1, batch)  # a non-zero gradient whatever the rewards were
    prompt_tokens, completion_tokens = int(inputs["prompt_mask"].sum()), int(inputs["completion_mask"].sum())
    body, head = matmul_params(trainer.model)
    useful = step_flops(body, head, prompt_tokens, completion_tokens, train=6) * 6 / 8  # training only, no generation
    gpu = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * gpu
    rows = []
    for name, lab_head in (("trl-head", False), ("lab-head", True)):
        trainer.completion_head = lab_head
        for kind in ("warm", "timed", "profiled"):
            trainer.model.zero_grad(set_to_none=True)
            with profile(activities=activities) if kind == "profiled" else contextlib.nullcontext() as prof:
                if gpu:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                trainer.compute_loss(trainer.model, inputs).backward()
                if gpu:  # kernels run asynchronously: wait for the backward's last one
                    torch.cuda.synchronize()
                if kind == "timed":
                    seconds = time.perf_counter() - t
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        head_ops = [e for e in prof.key_averages() if e.key in ("ChunkedLogProbFunction", "ChunkedLogProbFunctionBackward",
                                                                "_CompletionLogProbs", "_CompletionLogProbsBackward")]
        rows.append({"head": name, "seconds": seconds, "achieved_tflops": useful / seconds / 1e12,
                     "head_seconds": sum(e.cpu_time_total for e in head_ops) / 1e6,
                     "top": [{"op": e.key, "self_seconds": e.self_cpu_time_total / 1e6, "calls": e.count} for e in ops[:12]]})
    return {"completions": batch, "model_dtype": str(next(trainer.model.parameters()).dtype).replace("torch.", ""), "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "padded_tokens": int(inputs["prompt_mask"].numel() + inputs["completion_mask"].numel()), "useful_tflops": useful / 1e12,
            "rows": rows}


def _header(r: dict) -> str:
    """A bench table's provenance line: the measured peaks, the commit and the command that ran.

    >>> print(_header({"matmul_peak_tflops": 0.1, "matmul_dtype": "float32", "matmul_peaks_tflops": {"float32": 0.1, "bfloat16": 0.5},
    ...                "provenance": {"git_commit": "abc-dirty", "time_utc": "t", "command": "rlsft bench --steps 2"}}))
    Measured matmul peak: 0.100 TFLOP/s (float32), 0.500 TFLOP/s (bfloat16); each row against its dtype's. Commit `abc-dirty` (uncommitted changes), t. Produced by `rlsft bench --steps 2`.
    """
    peaks = r.get("matmul_peaks_tflops") or {r["matmul_dtype"]: r["matmul_peak_tflops"]}
    line = "Measured matmul peak: " + ", ".join(f"{v:.3f} TFLOP/s ({k})" for k, v in peaks.items())
    line += "; each row against its dtype's. " if len(peaks) > 1 else ". "
    prov = r["provenance"]
    dirty = " (uncommitted changes)" if str(prov["git_commit"]).endswith("-dirty") else ""
    command = prov.get("command", "rlsft bench")
    command = "rlsft " + command.split("rlsft ", 1)[1] if "rlsft " in command else command  # the console script's path left out
    return line + f"Commit `{prov['git_commit']}`{dirty}, {prov['time_utc']}. Produced by `{command}`."


def profile_table(r: dict) -> str:
    """The Markdown summary of a profile measurement (`bench_profile`)."""
    p = r["profile"]
    lines = [f"# rlsft bench --profile: one GRPO update of {r['model']} on {r['device']}", "",
             _header(r), "",
             f"One update (loss, forward, backward; no generation, no optimizer) of {p['completions']} completions: "
             f"{p['prompt_tokens']:,} prompt and {p['completion_tokens']:,} completion tokens ({p['padded_tokens']:,} with padding), "
             f"{p['useful_tflops']:.2f} useful TFLOP (6 per body parameter per token, 6 per head parameter per completion token).", "",
             "| log-prob head | seconds | head seconds (forward + backward) | fraction of peak |", "|---|---|---|---|"]
    for row in p["rows"]:
        lines.append(f"| {row['head']} | {row['seconds']:.2f} | {row['head_seconds']:.2f} | {row['fraction_of_peak']:.1%} |")
    for row in p["rows"]:
        lines += ["", f"## Top operators by own time, {row['head']}", "", "| operator | own seconds | calls |", "|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['self_seconds']:.2f} | {o['calls']} |" for o in row["top"]]
    lines += ["", "trl-head: TRL's fused LM head, which on a CPU (no Triton) scores every position, prompt and padding included, "
              "and recomputes each logits tile in its backward. lab-head: rlsft.grpo_trainer's, on the real completion tokens only, "
              "its probabilities kept for the backward.", ""]
    return "\n".join(lines)


def bench_sft(args: BenchArgs, variant: str, work: Path) -> dict:
    """One SFT measurement on clean micro-arith solutions."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    steps = args.warmup + args.steps
    problems = generate_problems("micro-arith", "train", steps * args.sft_batch_size, seed=0)
    train = Dataset.from_list([{"prompt": build_prompt(p["question"]), "completion": clean_solution(p, "en")["completion"]} for p in problems])
    sizes = dict(per_device_train_batch_size=args.sft_batch_size, max_steps=steps, logging_steps=1, max_length=args.sft_max_length)
    if variant == "lab":
        model = load_model(args.model)
        cfg = recipe_module("sft").Config(
            run=RunConfig(name="bench", out_dir=str(work), report_to="none"),
            training=dict(learning_rate=1e-4, max_steps=steps, per_device_train_batch_size=args.sft_batch_size, logging_steps=1, save_strategy="no"),
            sft=dict(completion_only_loss=True, max_length=args.sft_max_length))
        config = recipe_module("sft").training_args(cfg)  # the recipe's own TRL config
    else:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model))
        gpu = torch.cuda.is_available()
        config = SFTConfig(output_dir=str(work / "checkpoints"), report_to="none", save_strategy="no", use_cpu=not gpu, bf16=gpu,
                           learning_rate=1e-4, **sizes)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    clock = _Clock(args.warmup)
    trainer.add_callback(clock.callback())
    trainer.train()
    tokens_by_step = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]  # cumulative
    timed_tokens = tokens_by_step[-1] - tokens_by_step[args.warmup - 1] if args.warmup else tokens_by_step[-1]
    tps = timed_tokens / clock.seconds["step"]
    n = flop_parameters(model)  # SFT computes the head on every token: 6N a token, N as the compute record's
    return {"variant": variant, "steps_timed": args.steps, "step_seconds": clock.seconds["step"] / args.steps,
            "train_tokens_per_second": tps, "parameters": n, "achieved_tflops": 6 * n * tps / 1e12,
            "model_dtype": str(next(model.parameters()).dtype).replace("torch.", "") + (" + bf16 autocast" if trainer.args.bf16 else ""),
            "peak_memory_gb": peak_memory_gb()}


DECODE_ROWS = (1, 8, 16, 32, 64, 128)  # sequences a decode step multiplies at once; the lab's CPU calls take at most 64


def decode_rates(model, rows: tuple[int, ...] = DECODE_ROWS, repeats: int = 3) -> list[dict]:
    """The matmul rate a decode step can reach with `m` sequences in its batch, for each `m` in
    `rows`: every linear layer's own weight (body and output head, in module order, so each step
    reads all the weights from memory as generation does) times an m-row input, best of `repeats`.
    Attention, norms and sampling are left out, so this is the ceiling of generation's useful rate
    at that batch: a small m reads every weight for few rows, and a 2048-square matmul's peak is
    out of reach.

    >>> import torch
    >>> [r["tflop"] for r in decode_rates(torch.nn.Sequential(torch.nn.Linear(4, 3)), rows=(1, 2), repeats=1)]
    [2.4e-11, 4.8e-11]
    """
    import torch

    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not weights:
        raise UserError(f"{type(model).__name__} has no torch.nn.Linear layer to time (decode_rates reads those)")
    params = sum(w.numel() for w in weights)
    out = []
    with torch.no_grad():
        for m in rows:
            inputs = {w.shape[1]: torch.randn(m, w.shape[1], dtype=w.dtype, device=w.device) for w in weights}
            best = float("inf")
            for _ in range(repeats + 1):  # the first pass warms the allocator and the kernels' choice
                t = time.perf_counter()
                for w in weights:
                    torch.nn.functional.linear(inputs[w.shape[1]], w)
                if weights[0].is_cuda:
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            out.append({"sequences": m, "seconds_per_token_step": best, "tflop": 2 * m * params / 1e12})
    return out


def bench_decode(args: BenchArgs, peaks: Peaks) -> list[dict]:
    """`decode_rates` of the bench's model as `rlsft eval` loads it (float32 on a CPU, the stored
    dtype on a GPU), each against the measured matmul peak of the weights' dtype."""
    model = load_model(args.model)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return [peaks.fraction({**r, "tflops": r["tflop"] / r["seconds_per_token_step"]}, r["tflop"] / r["seconds_per_token_step"], dtype)
            for r in decode_rates(model)]


def bench_eval(args: BenchArgs, samples: int, variant: str) -> dict:
    """One evaluation measurement (generation only, as in `rlsft eval`): `variant` "prompts-16" is
    the lab's former batching, 16 prompts (x samples) per call run to the longest; "sequences" is
    today's (`rlsft.scoring.evaluate.generate` defaults); "sequences-full-batch" the same calls with
    every sequence computed to its call's end (`generate` itself, not rlsft.scoring.decode). Same
    model, problems and seed."""
    import torch

    from rlsft.scoring import decode  # imports torch at its top

    task = get_task("micro-arith")
    rows = task.load(task.eval_split, n=args.eval_n, seed=0)
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    prompts = [build_prompt(r["question"], args.template) for r in rows]  # the bench's prompt form, as the GRPO measurement
    kw = dict(batch_size=16 * samples, tokens_per_round=args.eval_max_new_tokens) if variant == "prompts-16" else {}
    torch.manual_seed(0)
    stats: dict = {}
    t = time.perf_counter()
    with decode.full_batch(variant == "sequences-full-batch"):
        groups = generate(model, tokenizer, prompts, samples, 1.0, 1.0, args.eval_max_new_tokens, desc=f"bench eval {variant}", stats=stats, **kw)
    seconds = time.perf_counter() - t
    correct = task.verify_many([g["text"] for group in groups for g in group], [r["answer"] for r, group in zip(rows, groups) for _ in group])
    body, head = matmul_params(model)
    useful = step_flops(body, head, stats["prompt_tokens"], stats["generated_tokens"], train=0)  # forward FLOPs of real tokens
    return {"variant": variant, "samples": samples, "problems": len(rows), "seconds": seconds, **stats,
            "tokens_per_second": stats["generated_tokens"] / seconds,
            "pass@1": sum(bool(c) for c in correct) / len(correct), "useful_tflops": useful / 1e12,
            "achieved_tflops": useful / seconds / 1e12, "model_dtype": str(next(model.parameters()).dtype).replace("torch.", "")}


def _run_and_close(fn, *args):
    """fn(*args), then the answer-check workers closed: a spawned process joins its children
    before its atexit handlers run, so open workers would keep it from ever exiting."""
    try:
        return fn(*args)
    finally:
        pool.close()


def _isolated(fn, *args):
    """fn(*args) in a fresh spawned process: its peak resident memory is its own, not the
    high-water mark of every measurement before it."""

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run_and_close, fn, *args).result()


def grpo_ratios(rows: list[dict], precision: list[str], micro_batch: int) -> dict:
    """Same-run ratios of the GRPO rows (> 1: the later variant is faster): each against TRL's
    defaults (step seconds); the lab's trainer against the lab's config on TRL's trainer; rollouts
    an hour of the wide step (and LoRA) against the lab's step before rlsft.grpo_trainer; precision
    variants against the lab's float32 step; LoRA against full fine-tuning of the same step."""
    by = {g["variant"]: g for g in rows}
    out = {}
    for g in rows[1:]:
        name = "grpo_step_speedup" if g["variant"] == "lab" else f"grpo_{g['variant'].removeprefix('lab-').replace('-', '_')}_step_speedup"
        if "trl-defaults" in by:
            out[name] = by["trl-defaults"]["step_seconds"] / g["step_seconds"]
    if "lab" in by and "lab-trl-trainer" in by:
        out["grpo_lab_trainer_vs_trl_trainer"] = by["lab-trl-trainer"]["step_seconds"] / by["lab"]["step_seconds"]
    for g in rows:
        key = g["variant"].removeprefix("lab-").replace("-", "_")
        if g["variant"] in precision:  # against the lab's own float32 step of the same run
            lab = by.get("lab-micro" if micro_batch else "lab")
            if lab:
                out[f"grpo_{key}_vs_float32"] = lab["step_seconds"] / g["step_seconds"]
        if g.get("lora_r"):
            full = by.get(g["variant"].split("-lora-")[0])
            if full:
                out[f"grpo_{key}_vs_full"] = full["step_seconds"] / g["step_seconds"]
        padded = by.get(g["variant"].removesuffix("-by-length")) if g["variant"].endswith("-by-length") else None
        if padded:  # micro-batches by length, against the same step padded to the call's longest
            out[f"grpo_{key.removesuffix('_by_length')}_by_length_speedup"] = padded["step_seconds"] / g["step_seconds"]
        leaving = by.get(g["variant"].removesuffix("-full-batch")) if g["variant"].endswith("-full-batch") else None
        if leaving:  # the same step with finished completions leaving the batch, against this one
            out[f"grpo_{key.removesuffix('_full_batch')}_finished_leave_speedup"] = g["step_seconds"] / leaving["step_seconds"]
        if (g["variant"].startswith("lab-wide") or g.get("lora_r")) and "lab-trl-trainer" in by:
            out[f"grpo_{key}_rollouts_per_hour_vs_before"] = g["rollouts_per_hour"] / by["lab-trl-trainer"]["rollouts_per_hour"]
    return out


def checked(args: BenchArgs) -> dict:
    """The bench's settings as lists, each refused in one line before anything runs: parts, eval
    sample counts, GRPO variants."""

    def ints(text: str, flag: str, what: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",") if x]
        except ValueError:
            values = [0]
        if any(v < 1 for v in values):
            raise UserError(f"{flag} takes a comma list of {what} (positive integers), got {text!r}")
        return values

    parts = set(args.parts.split(","))
    if parts - {"eval", "grpo", "sft"} or not parts:
        raise UserError(f"--parts takes a comma list of eval, grpo and sft, got {args.parts!r}")
    narrow = args.prompts_per_step * args.num_generations
    for n, flag in ((narrow, "--micro-batch"), (args.wide * args.num_generations, "--micro-batch (with --wide)")):
        if args.micro_batch and n and n % args.micro_batch:
            raise UserError(f"{flag} {args.micro_batch} must divide the step's {n} completions")
    if args.wide and not args.micro_batch and (args.wide * args.num_generations) % narrow:
        raise UserError(f"--wide {args.wide}: its {args.wide * args.num_generations} completions must be a multiple of the narrow step's {narrow}")
    precision = [f"lab-{p}" for p in args.precision.split(",") if p]
    if set(precision) - {"lab-bf16", "lab-bf16-weights"}:
        raise UserError(f"--precision takes a comma list of bf16 and bf16-weights, got {args.precision!r}")
    eval_samples = ints(args.eval_samples, "--eval-samples", "sample counts")
    if not eval_samples:
        raise UserError("--eval-samples is empty")
    ranks = ints(args.lora, "--lora", "LoRA ranks")
    if args.template not in TEMPLATES:  # before the first measurement, whose save would replace an earlier report
        raise UserError(f"--template takes one of {', '.join(TEMPLATES)}, got {args.template!r}")
    grpo = (["trl-defaults", "lab-trl-trainer", "lab"] + ["lab-reuse"] * (args.reuse > 1) + ["lab-micro"] * bool(args.micro_batch)
            + precision + ["lab-wide"] * bool(args.wide) + [f"{'lab-wide' if args.wide else 'lab'}-lora-r{r}" for r in ranks]
            + [f"{'lab-wide' if args.wide else 'lab'}-full-batch"] * args.full_batch
            + [f"{'lab-wide' if args.wide else 'lab'}-by-length"] * args.by_length)
    return {"parts": parts, "eval_samples": eval_samples, "precision": precision, "grpo": grpo if "grpo" in parts else []}


def run_bench(args: BenchArgs) -> Path:
    import torch

    plan = checked(args)
    parts, eval_samples, precision = plan["parts"], plan["eval_samples"], plan["precision"]
    peaks = Peaks()
    peak_dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    peak = peaks(peak_dtype)  # the device's headline peak; rows in another dtype measure theirs when they need it
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"cpu, {torch.get_num_threads()} threads, {' '.join(cpu_features()) or 'no AVX2'}"
    results = {"model": args.model, "device": device, "matmul_peak_tflops": peak / 1e12, "matmul_dtype": peak_dtype,
               "matmul_peaks_tflops": {}, "settings": vars(args), "eval": [], "grpo": [], "sft": []}
    results["ratios"] = {}  # > 1: the lab is faster than the baseline
    results["provenance"] = provenance()
    out = Path(args.out)  # made by the first save: a bench that fails before its first measurement leaves no folder
    stem = "bench-" + ("gpu" if torch.cuda.is_available() else "cpu") + "-" + Path(args.model).name

    def save(done: bool) -> None:
        """Results so far, rewritten after each measurement: a bench stopped part-way (a time limit
        on a lent GPU) keeps what it measured, marked partial."""
        results["partial"] = not done
        results["matmul_peaks_tflops"] = {dtype: flops / 1e12 for dtype, flops in peaks.flops.items()}
        atomic_write(out / f"{stem}.json", to_json(results))
        atomic_write(out / f"{stem}.md", bench_table(results))

    if "eval" in parts:
        results["decode"] = bench_decode(args, peaks)
        save(False)
        for samples in eval_samples:
            # 16 prompts or fewer: prompts-16 is one call of them all, the same batch as sequences
            variants = ("prompts-16",) * (args.eval_n > 16) + ("sequences-full-batch",) * args.full_batch + ("sequences",)
            for variant in variants:
                e = bench_eval(args, samples, variant)
                results["eval"].append(peaks.fraction(e, e["achieved_tflops"], compute_dtype(e["model_dtype"])))
                save(False)
            rows = {e["variant"]: e for e in results["eval"][-len(variants):]}
            for before, name in (("prompts-16", "speedup"), ("sequences-full-batch", "finished_leave_speedup")):
                if before in rows:
                    results["ratios"][f"eval_samples{samples}_{name}"] = rows[before]["seconds"] / rows["sequences"]["seconds"]
    measure = _isolated if args.isolate else (lambda fn, *a: fn(*a))
    with tempfile.TemporaryDirectory() as tmp:
        # the baseline first; without --isolate later rows run in a warmer process than the first
        # (allocator, kernels' choice), which --warmup steps leave out of every row's timing
        for variant in plan["grpo"]:
            try:
                g = measure(bench_grpo, args, variant, Path(tmp) / f"grpo-{variant}")
                results["grpo"].append(peaks.fraction(g, g["achieved_tflops"], compute_dtype(g["model_dtype"])))
            except BrokenProcessPool:  # its process was killed (out of memory, or by hand after too long): say so, go on
                results.setdefault("failed", []).append(f"grpo {variant}: its process was killed before it finished")
                save(False)
                continue
            results["ratios"].update(grpo_ratios(results["grpo"], precision, args.micro_batch))
            save(False)
        if args.profile:
            prof = measure(bench_profile, args, Path(tmp) / "profile")
            dtype = compute_dtype(prof["model_dtype"])
            results["profile"] = {**prof, "rows": [peaks.fraction(row, row["achieved_tflops"], dtype) for row in prof["rows"]]}
            atomic_write(out / f"profile-{stem.removeprefix('bench-')}.md", profile_table(results))
            save(False)
        for variant in ("trl-defaults", "lab") if "sft" in parts else ():
            sft = measure(bench_sft, args, variant, Path(tmp) / f"sft-{variant}")
            sft = peaks.fraction(sft, sft["achieved_tflops"], compute_dtype(sft["model_dtype"]))
            results["sft"].append({**sft, "mfu": sft["fraction_of_peak"]})  # 6N tokens/s over the peak of its dtype
            save(False)
    if len(results["sft"]) == 2:
        results["ratios"]["sft_tokens_per_second_ratio"] = results["sft"][1]["train_tokens_per_second"] / results["sft"][0]["train_tokens_per_second"]
    save(True)
    return out / f"{stem}.md"


def eval_table(r: dict) -> list[str]:
    """The evaluation section of a bench result's table (no lines without evaluation rows)."""
    ra, lines = r["ratios"], []
    if r["eval"]:
        lines += ["## Evaluation (generation, `rlsft eval` at temperature 1)", "",
                  f"{r['eval'][0]['problems']} held-out micro-arith problems, up to {r['settings']['eval_max_new_tokens']} new tokens, seed 0. "
                  "`prompts-16`: 16 prompts (x samples) per call, each call run until its longest sequence ends; "
                  "`sequences`: the lab's batching by sequences, sized from memory (on a CPU at most 64 a call, a finished sequence leaving it; "
                  "on a GPU up to 512, with unfinished sequences re-batched); `sequences-full-batch`: the same calls, each sequence "
                  "computed to its call's end. "
                  "Useful FLOPs: 2 per matmul parameter of the body for each real prompt and generated token, and of the "
                  "output head for each generated token (no padding, no input embedding).", "",
                  "| samples | variant | sequences | sequences per call | calls | seconds | generated tokens | tokens/s | useful TFLOP | fraction of peak | pass@1 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in r["eval"]:
            tps = e.get("tokens_per_second", e["generated_tokens"] / e["seconds"])
            lines.append(f"| {e['samples']} | {e['variant']} | {e.get('sequences', e['problems'] * e['samples'])} | {e['sequences_per_call']} | {e['calls']} | {e['seconds']:.2f} | "
                         f"{e['generated_tokens']:,} | {tps:.1f} | {e['useful_tflops']:.4f} | {e['fraction_of_peak']:.1%} | {e['pass@1']:.3f} |")
        batching = {k: v for k, v in ra.items() if re.fullmatch(r"eval_samples\d+_speedup", k)}
        leaving = {k: v for k, v in ra.items() if re.fullmatch(r"eval_samples\d+_finished_leave_speedup", k)}
        if batching:
            lines += ["", "Speed-up of batching by sequences: " + ", ".join(f"**{v:.2f}x** with --samples {k.split('samples')[1].split('_')[0]}"
                                                                     for k, v in batching.items())
                      + " (same run, same model and problems; the samples differ, the pass@1 columns show the same distribution).", ""]
        if leaving:
            lines += ["", "Finished sequences leaving the batch (`sequences` against `sequences-full-batch`, rlsft.scoring.decode): "
                      + ", ".join(f"**{v:.2f}x** with --samples {k.split('samples')[1].split('_')[0]}" for k, v in leaving.items())
                      + " (same run; the same samples, token for token).", ""]
    if r.get("decode"):
        lines += ["", "### The ceiling of generation at each batch", "",
                  "Each linear layer's weight (body and output head) times an input of that many sequences' rows, as one decode "
                  "step multiplies them (`rlsft.bench.bench.decode_rates`, best of 3; attention, norms and sampling left out). "
                  "A decode step reads every weight for few rows, so at the batches generation runs (at most 64 sequences a call "
                  "on a CPU, fewer as they finish) its attainable fraction of the matmul peak is this, not 100%.", "",
                  "| sequences | matmul seconds per token step | TFLOP/s | fraction of peak |", "|---|---|---|---|"]
        lines += [f"| {d['sequences']} | {d['seconds_per_token_step']:.4f} | {d['tflops']:.3f} | {d['fraction_of_peak']:.1%} |" for d in r["decode"]] + [""]
    return lines


def bench_table(r: dict) -> str:
    """The Markdown table of a bench result."""
    lines = [f"# rlsft bench: {r['model']} on {r['device']}", "", _header(r), ""]
    if r.get("partial"):
        lines += ["**Partial**: the bench stopped before its last measurement; the rows below are those it finished.", ""]
    lines += [f"**Not measured**: {f}." for f in r.get("failed", [])] + ([""] if r.get("failed") else [])
    ra = r["ratios"]
    lines += eval_table(r)
    if not r["grpo"] and not r["sft"]:
        return "\n".join(lines)
    st = r["settings"]
    warm = f"after {st['warmup']} warm-up steps" if st.get("warmup") else "**no warm-up: the first step, cold**"
    lines += [f"## GRPO step (per step: the mean of {st.get('steps', '?')} or more timed steps, whole generate cycles, {warm})", "",
              "| variant | trainer | completions per step | steps per generate | micro-batch | dtype | trainable parameters | step s | generation s | "
              "scoring s | update s | rollouts/h | rollout tokens/s | fraction of peak | mean reward | peak memory GB* |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in r["grpo"]:
        reward = "" if g.get("reward_mean") is None else f"{g['reward_mean']:.3f}"
        per_hour = g.get("rollouts_per_hour", g["completions_per_step"] * 3600 / g["step_seconds"])
        lines.append(f"| {g['variant']} | {g.get('trainer', '')} | {g['completions_per_step']} | {g.get('steps_per_generation', 1)} | "
                     f"{g.get('micro_batch', g['completions_per_step'])} | {g['model_dtype']} | "
                     f"{g.get('trainable_parameters', 0):,} | {g['step_seconds']:.3f} | {g['generation_seconds']:.3f} | {g['scoring_seconds']:.3f} | "
                     f"{g['update_seconds']:.3f} | {per_hour:.0f} | {g['rollout_tokens_per_second'] or 0:.0f} | {g.get('fraction_of_peak', 0):.1%} | "
                     f"{reward} | {g['peak_memory_gb']} |")
    lines += ["", "Trainer: `lab` is rlsft.grpo_trainer.GRPOTrainer (completion-only log-probabilities on a CPU, LoRA merged for "
              "generation, finished completions leaving the generate batch), `trl` is trl.GRPOTrainer; `lab-trl-trainer` is the lab's step before that trainer. "
              "Fraction of peak: the step's useful matmul FLOPs per second over the measured matmul peak of the dtype its matmuls "
              "run in; per token, 2 per body parameter to generate or prefill it and 6 to train on it (4 with LoRA: frozen weights "
              "need no weight gradient, plus 6 per adapter parameter), the output head counted on completion tokens only, "
              "attention's own FLOPs left out (rlsft.bench.bench.step_flops)."]
    lines += ["", "## SFT", "", "| variant | dtype | step s | tokens/s | MFU | peak memory GB* |", "|---|---|---|---|---|---|"] if r["sft"] else []
    for s in r["sft"]:
        lines.append(f"| {s['variant']} | {s['model_dtype']} | {s['step_seconds']:.3f} | {s['train_tokens_per_second']:.0f} | {s['mfu']:.1%} | {s['peak_memory_gb']} |")
    lines += ["", "*On a GPU, torch's peak allocation; on a CPU, the process's resident high-water mark: "
              + ("each measurement ran in its own process (--isolate)." if r["settings"].get("isolate") else "so far, so later rows include earlier ones.")]
    if "grpo_step_speedup" in ra:
        lines.append(f"GRPO step speed-up of the lab over TRL's defaults: **{ra['grpo_step_speedup']:.2f}x** (same run, same model, data and batch).")
    if "sft_tokens_per_second_ratio" in ra:
        lines.append(f"SFT tokens/s ratio of the lab over TRL's defaults: **{ra['sft_tokens_per_second_ratio']:.2f}x** (same run, same model, data and batch).")
    if "grpo_micro_step_speedup" in ra:
        lines.append(f"With each step's {r['grpo'][0]['completions_per_step']} completions trained in micro-batches of {r['settings']['micro_batch']} "
                     f"(lab-micro, the same step): **{ra['grpo_micro_step_speedup']:.2f}x** over TRL's defaults.")
    if "grpo_lab_trainer_vs_trl_trainer" in ra:
        lines.append(f"The lab's trainer against TRL's, same config and step: **{ra['grpo_lab_trainer_vs_trl_trainer']:.2f}x** (same run; > 1 is faster).")
    for key, value in ra.items():
        if key.endswith("_rollouts_per_hour_vs_before"):
            name = "lab-" + key.removeprefix("grpo_").removesuffix("_rollouts_per_hour_vs_before").replace("_", "-")
            lines.append(f"{name}: **{value:.2f}x** the rollouts an hour of the lab's step before rlsft.grpo_trainer (same run).")
        if key.endswith("_by_length_speedup"):
            name = "lab-" + key.removeprefix("grpo_").removesuffix("_by_length_speedup").replace("_", "-")
            lines.append(f"{name}-by-length (micro-batches by completion length, each trimmed of padding) against {name}: "
                         f"**{value:.2f}x** (same run, the same rollouts).")
        if key.startswith("grpo_") and key.endswith("_finished_leave_speedup"):
            name = "lab-" + key.removeprefix("grpo_").removesuffix("_finished_leave_speedup").replace("_", "-")
            lines.append(f"{name} against the same step with every completion computed to its generate call's end ({name}-full-batch): "
                         f"**{value:.2f}x** (same run, the same rollouts).")
        if key.endswith("_vs_full"):
            name = "lab-" + key.removeprefix("grpo_").removesuffix("_vs_full").replace("_", "-")
            lines.append(f"{name} against full fine-tuning of the same step: **{value:.2f}x** (same run; > 1 is faster).")
    for p in ("bf16", "bf16-weights"):
        key = f"grpo_{p.replace('-', '_')}_vs_float32"
        if key in ra:
            lines.append(f"lab-{p} against the lab's float32 step{' in micro-batches' if r['settings']['micro_batch'] else ''}: "
                         f"**{ra[key]:.2f}x** (same run; > 1 is faster).")
    if "grpo_reuse_step_speedup" in ra:
        reuse = {g["variant"]: g for g in r["grpo"]}["lab-reuse"]["steps_per_generation"]
        lines.append(f"With one generate call per {reuse} steps (lab-reuse): **{ra['grpo_reuse_step_speedup']:.2f}x** "
                     "over TRL's defaults; its update includes TRL's extra scoring pass for importance sampling, and the "
                     "samples of later steps are up to that many steps stale.")
    lines.append("")
    return "\n".join(lines)


def main_bench(args: BenchArgs) -> None:
    path = run_bench(args)
    print(Path(path).read_text())
    print(json.dumps({"report": str(path)}))
