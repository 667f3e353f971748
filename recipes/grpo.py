"""Pure RL with GRPO (the R1-Zero recipe): rule-based rewards only, no labelled reasoning.

    rlsft train configs/micro/r1_zero.yaml                                       # CPU, minutes
    rlsft train configs/micro/r1_zero.yaml "rewards={accuracy: 1.0, language: 0.2}" grpo.epsilon_high=0.28
    accelerate launch -m rlsft.cli train configs/qwen2.5-0.5b/r1_zero.yaml       # one GPU

    rlsft probe configs/smollm2-135m/r1_zero.yaml                                # the pre-flight check alone

Config: `rewards` (name -> weight, from `rlsft.scoring.rewards.REWARDS`), `extraction` (how the
accuracy reward reads an answer: strict or lenient), `partial_credit`, `group_by_length`, `probe` (the pre-flight
signal check, rlsft/preflight.py), `monitor`, and the sections every recipe has; `training:` and
`grpo:` go unchanged into TRL's `GRPOConfig` (any of its fields). vLLM: `grpo.use_vllm` unset
means on (colocated) when vllm is installed and a GPU is present, HF generate otherwise.

Writes <out>/probe.json, <out>/model, <out>/eval_before and <out>/eval_after (per-task
metrics.json and samples.jsonl), <out>/metrics.jsonl, <out>/samples_train.jsonl and <out>/run.json.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from dataclasses import dataclass, field

from rlsft.config import RecipeConfig, training_section, trl_section
from rlsft.io import UserError, atomic_write, to_json
from rlsft.models import flop_parameters
from rlsft.preflight import ProbeConfig, refusal, run_probe, summary_line
from rlsft.runs.compute import PROMPT_TOKENS, Cost, distributed_state, estimate_record, is_main_process, param_count
from rlsft.runs.folder import RunFolder
from rlsft.scoring.language import language_stats
from rlsft.scoring.rewards import completion_text, get_reward
from rlsft.scoring.tasks import ANSWER_STOP
from rlsft.scoring.verify import EXTRACTIONS
from rlsft.trainer import (
    curve_callback,
    evaluate_model,
    finish_run,
    load_configured_model,
    lora_config,
    metrics_logger,
    prompt_dataset,
    save_trained,
    start_run,
    train_and_count,
    trl_args,
)


@dataclass
class MonitorConfig:
    every: int = 10  # write 8 training completions to samples_train.jsonl every N generation batches
    language: str = "en"  # the language whose mixing rate the monitor logs


@dataclass
class Config(RecipeConfig):
    recipe: str = "grpo"
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0})  # reward name -> weight
    # how the accuracy reward reads an answer (rlsft.scoring.verify.EXTRACTIONS): strict (<answer> or
    # \boxed{}) or lenient (then "the answer is", then the last number). Evaluation scores both.
    extraction: str = "strict"
    partial_credit: float = 0.0  # accuracy reward for a wrong answer given in <answer> or \boxed{}, not hedged (TinyZero: 0.1)
    # train each generate call's completions in micro-batches of similar length, each trimmed of padding
    # (rlsft.grpo_trainer, 4): the same gradient in another floating-point order; loss_type dapo, dr_grpo or grpo
    group_by_length: bool = False
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # the pre-flight signal check (rlsft/preflight.py)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    training: dict = training_section(max_steps=100)
    grpo: dict = trl_section("trl:GRPOConfig")  # any GRPOConfig field, e.g. loss_type, beta, num_generations, epsilon_high

    def __post_init__(self):
        super().__post_init__()
        if self.extraction not in EXTRACTIONS:
            raise UserError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}")
        if not self.rewards:  # here, so a dry run, a study's check and `train` refuse it before any folder is made
            raise UserError("rewards is empty; give at least one reward name with a weight")


def training_args(cfg: Config):
    """TRL's GRPOConfig for this run; the reward weights follow `cfg.rewards`, plus 0 for the monitor."""

    import torch

    grpo = dict(cfg.grpo)
    if "use_vllm" not in grpo:  # the auto switch: colocated vLLM where it can run
        grpo["use_vllm"] = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
        if grpo["use_vllm"]:
            grpo.setdefault("vllm_mode", "colocate")
    elif grpo["use_vllm"] and importlib.util.find_spec("vllm") is None:
        raise UserError("grpo.use_vllm=true needs the vllm package (pip install 'rlsft[vllm]'); leave it unset to fall back to HF generate")
    if cfg.data.think_prefill:  # stop at </answer>, and fill a stopped sequence with EOS so TRL's mask ends it there
        # transformers' generate takes `stop_strings`; vLLM's SamplingParams, where TRL sends these kwargs, takes `stop`
        stop = {"stop": [ANSWER_STOP], "include_stop_str_in_output": True} if grpo["use_vllm"] else {"stop_strings": [ANSWER_STOP]}
        grpo["generation_kwargs"] = {**stop, **(grpo.get("generation_kwargs") or {})}
    args = trl_args("trl:GRPOConfig", cfg, grpo, reward_weights=[*cfg.rewards.values(), 0.0])
    if cfg.group_by_length:
        from rlsft.grpo_trainer import LENGTH_GROUPED_LOSSES  # imports torch and trl at its top

        if args.loss_type not in LENGTH_GROUPED_LOSSES:
            raise UserError(f"group_by_length needs grpo.loss_type one of {', '.join(LENGTH_GROUPED_LOSSES)} (its normaliser spans "
                            f"the micro-batch), got {args.loss_type!r}")
    return args


def forward_passes(beta: float, steps_per_generation: int, num_iterations: int, gradient_accumulation_steps: int,
                   vllm_correction: bool = False) -> int:
    """Forward-only passes over each rollout token: generation, plus the reference model's scoring
    when beta > 0, plus the sampling policy's scoring (TRL's "old" log-probs) when a generation
    batch serves more than one optimizer step or when vLLM generated it and TRL corrects for the
    sampler's mismatch (`use_vllm` with `vllm_importance_sampling_correction`, TRL's default).

    >>> forward_passes(0.0, 1, 1, 1), forward_passes(0.04, 4, 1, 1), forward_passes(0.0, 1, 1, 1, vllm_correction=True)
    (1, 3, 2)
    """
    reused = gradient_accumulation_steps % (steps_per_generation * num_iterations) != 0 or vllm_correction
    return 1 + (beta > 0) + reused


def vllm_correction(args) -> bool:
    """Whether TRL scores each rollout again with the policy to correct for vLLM's sampling."""
    return bool(getattr(args, "use_vllm", False) and getattr(args, "vllm_importance_sampling_correction", False))


def estimate(cfg: Config, params: int | None = None) -> dict:
    """Upper-bound compute: every completion at its maximum length (see rlsft.runs.compute)."""
    a = training_args(cfg)
    n = param_count(cfg.model.name) or params
    # rollout tokens generated: each optimizer step trains per-device batch x processes x accumulation
    # sequences, each generation serving num_iterations of them (cost() counts the same way)
    sequences = a.max_steps * a.per_device_train_batch_size * a.world_size * a.gradient_accumulation_steps / a.num_iterations
    tokens = int(sequences * (PROMPT_TOKENS + a.max_completion_length))
    passes = forward_passes(a.beta, a.steps_per_generation, a.num_iterations, a.gradient_accumulation_steps, vllm_correction(a))
    return estimate_record(n, tokens * a.num_iterations, tokens * passes)


def completion_monitor(folder: RunFolder, monitor: MonitorConfig):
    """A zero-weight GRPO "reward" that measures instead of rewarding: it returns 1.0 for each
    training completion that mixes languages (TRL then logs the mixing rate of the training
    completions as `rewards/language_monitor/mean`) and writes 8 completions, with the step they
    train, to samples_train.jsonl every `monitor.every` calls. With weight 0 it never changes the
    gradient."""

    calls = [0]
    main = is_main_process()

    def language_monitor(completions, prompts=None, answer=None, trainer_state=None, **kwargs):
        texts = [completion_text(c) for c in completions]
        stats = [language_stats(t, monitor.language) for t in texts]
        if main and calls[0] % monitor.every == 0:
            # step: the first optimizer step these completions train (global_step counts finished
            # ones); `call` restarts at 0 in each sitting of a resumed run, the step does not
            step = trainer_state.global_step + 1 if trainer_state is not None else None
            with open(folder.samples_train_file, "a", encoding="utf-8") as f:
                for i, t in enumerate(texts[:8]):
                    f.write(json.dumps({"step": step, "call": calls[0], "answer": answer[i] if answer else None, "completion": t,
                                        "mixed": stats[i].mixed}, ensure_ascii=False) + "\n")
        calls[0] += 1
        return [1.0 if s.mixed else 0.0 for s in stats]

    language_monitor.is_monitor = True  # the trainer keeps it from making an unscored completion look scored (rlsft.grpo_trainer)
    return language_monitor


def reward_functions(cfg: Config) -> dict:
    """{name: reward function} of the config's rewards, with the run's extraction and partial credit bound."""
    return {name: get_reward(name, extraction=cfg.extraction, partial_credit=cfg.partial_credit) for name in cfg.rewards}


def probe(cfg: Config, args, model, tokenizer, train_set) -> dict:
    """The pre-flight check's record with this run's sampling settings (`args`: its GRPOConfig),
    rewards, extraction and seed; what `preflight` and `rlsft probe` both run."""
    return run_probe(model, tokenizer, train_set, reward_functions(cfg), cfg.rewards, cfg.probe,
                     num_generations=args.num_generations, temperature=args.temperature, top_p=args.top_p,
                     max_completion_length=args.max_completion_length, think_prefill=cfg.data.think_prefill,
                     extraction=cfg.extraction, seed=cfg.run.seed)


def preflight(cfg: Config, args, model, tokenizer, train_set, folder: RunFolder | None = None) -> dict | None:
    """The pre-flight signal check with the run's own sampling settings and rewards
    (rlsft/preflight.py): written to <out>/probe.json, and a refusal (UserError) below
    `probe.min_signal` unless `probe.force`, which removes the run folder (it holds nothing
    trained), so the same command runs again once the settings are fixed. A resumed run reuses
    its probe.json."""

    if not cfg.probe.enabled:
        return None
    path = folder.path / "probe.json" if folder else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    state = distributed_state()
    # under accelerate the first process probes and the others take its record: one decision for all
    # (processes that decided apart would leave some waiting for the others' training forever)
    record = probe(cfg, args, model, tokenizer, train_set) if state.is_main_process else None
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        record = broadcast_object_list([record])[0]
    record["forced"] = not record["passed"] and cfg.probe.force
    if state.is_main_process:
        if path is not None:
            atomic_write(path, to_json(record))
        print(summary_line(record), flush=True)
    if not record["passed"] and not cfg.probe.force:
        if state.is_main_process and folder is not None and folder.last_checkpoint() is None:
            shutil.rmtree(folder.path, ignore_errors=True)
        raise UserError(refusal(record))
    return record


def stop_at_answer(model, tokenizer) -> None:
    """Let TRL's generate honour `stop_strings` (data.think_prefill): transformers needs the
    tokenizer for them, and TRL 1.x calls `model.generate` without it, so it is bound here."""

    model.generate = functools.partial(model.generate, tokenizer=tokenizer)


def main(cfg: Config, resume: bool = False) -> dict:
    import torch

    from rlsft.grpo_trainer import GRPOTrainer  # TRL's, with completion-only log-probs on a CPU and LoRA merged for generation

    # ------------------------------------------------------------------ config
    folder, cfg, tokenizer = start_run(cfg, resume)  # the run folder; the config with its prompt form resolved; the tokenizer
    torch.manual_seed(cfg.run.seed)
    args = training_args(cfg)

    # ------------------------------------------------------------------ data
    train_set = prompt_dataset(cfg.data, cfg.run.seed, tokenizer)  # the tokenizer renders a <think> prefill

    # ------------------------------------------------------------------ model
    model = load_configured_model(cfg.model)
    params = flop_parameters(model)  # N of the compute record: an untied input embedding is a lookup

    # ------------------------------------------------------------------ rewards
    # the config's rewards, then a zero-weight monitor: the training completions' mixing rate, and samples
    reward_funcs = [*reward_functions(cfg).values(), completion_monitor(folder, cfg.monitor)]

    # ------------------------------------------------------------------ pre-flight
    probed = preflight(cfg, args, model, tokenizer, train_set, folder)  # refuses settings where no group has signal
    before = evaluate_model(model, tokenizer, cfg.model.name, cfg, folder, "before")  # after the pre-flight: a refused run pays none

    # ------------------------------------------------------------------ trainer
    passes = forward_passes(args.beta, args.steps_per_generation, args.num_iterations, args.gradient_accumulation_steps, vllm_correction(args))

    # the compute of `tokens` prompt + completion tokens: each generation is trained num_iterations
    # times and read in `passes` forward-only passes; GRPO computes logits only for the completion
    # tokens (`completion_tokens_seen`, counted by the trainer built below), never for the prompt's
    def cost(tokens: int) -> Cost:
        completions = trainer.completion_tokens_seen
        prompts = tokens - completions if completions is not None else 0  # None: a resume from a checkpoint without the count
        return Cost(train=tokens * args.num_iterations, forward=tokens * passes,
                    train_unscored=prompts * args.num_iterations, forward_unscored=prompts * passes)

    curve: list[dict] = []
    callbacks = [metrics_logger(folder), curve_callback(folder, cfg, tokenizer, params, cost, curve)]
    trainer = GRPOTrainer(model=model, args=args, train_dataset=train_set, reward_funcs=reward_funcs, processing_class=tokenizer,
                          peft_config=lora_config(cfg.model), callbacks=callbacks)
    trainer.group_by_length = cfg.group_by_length
    if cfg.data.think_prefill:
        stop_at_answer(trainer.model, tokenizer)

    # ------------------------------------------------------------------ train
    compute = train_and_count(trainer, folder, resume, params, cost, curve)
    if trainer.completion_tokens_seen is None:  # resumed from a checkpoint written before completion tokens were counted
        compute["flops_formula"] += "; this run prices the output head on every token (its completion tokens were not counted)"

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, folder)  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(folder.model_dir), cfg, folder, "after")
    return finish_run(folder, "grpo", cfg, compute, before, after, curve, probe=probed)
