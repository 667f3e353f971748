"""Pure RL with GRPO (the R1-Zero recipe): rule-based rewards only, no labelled reasoning.

    rlsft train configs/micro/r1_zero.yaml                                  # CPU, minutes
    rlsft train configs/micro/r1_zero.yaml "grpo.rewards={accuracy: 1.0, language: 0.2}"
    accelerate launch -m recipes.cli train configs/qwen2.5-0.5b/r1_zero.yaml  # one GPU

Sections: config, data, model, rewards, trainer, train, save, evaluate.
Writes <out>/model (weights + tokenizer), <out>/eval_before and <out>/eval_after (per-task
metrics.json and samples.jsonl), and <out>/run.json (config, compute, headline metrics, provenance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recipes.common import (
    DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, Timer, compute_record, evaluate_model, finish_run,
    completion_monitor, last_checkpoint, lora_config, metrics_logger, n_params, prompt_dataset, save_trained, start_run, trainer_args,
)
from recipes.io import UserError


@dataclass
class GRPOSection:
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0})  # reward name -> weight
    loss_type: str = "dapo"  # TRL's: grpo, dr_grpo, dapo, bnpo, ...
    beta: float = 0.0  # KL coefficient to the starting model (0: no reference model, as in DAPO / Dr. GRPO)
    num_generations: int = 8  # completions per prompt (the group)
    max_completion_length: int = 128  # tokens
    temperature: float = 1.0
    epsilon: float = 0.2  # PPO clip
    num_iterations: int = 1  # optimisation passes per generation batch
    steps_per_generation: int = 1  # optimizer steps fed by one generate call (TRL: generation batch = batch x this)
    scale_rewards: str = "group"  # group (GRPO), batch, or none (Dr. GRPO)
    mask_truncated_completions: bool = False
    sample_every: int = 10  # write 8 training completions to samples_train.jsonl every N generation batches
    vllm: bool | None = None  # generate with vLLM in colocate mode; None: when vllm is installed and a GPU is present


def forward_passes(grpo: GRPOSection, gradient_accumulation_steps: int) -> int:
    """Forward-only passes over each rollout token: generation, plus the reference model's scoring
    when beta > 0, plus the sampling policy's scoring (TRL's "old" log-probs for importance
    sampling) when a generation batch serves more than one optimizer step.

    >>> forward_passes(GRPOSection(), 1), forward_passes(GRPOSection(beta=0.04, steps_per_generation=4), 1)
    (1, 3)
    """
    reused = gradient_accumulation_steps % (grpo.steps_per_generation * grpo.num_iterations) != 0
    return 1 + (grpo.beta > 0) + reused


@dataclass
class GRPORecipeConfig:
    run: RunConfig
    recipe: str = "grpo"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def vllm_args(wanted: bool | None) -> dict:
    """GRPOConfig arguments for generation: vLLM colocated on the training GPU, or HF generate.

    >>> vllm_args(False)
    {'use_vllm': False}
    """
    import importlib.util

    import torch

    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if wanted and not available:
        raise UserError("grpo.vllm=true needs the vllm package and a GPU; set grpo.vllm=null to fall back to HF generate")
    use = available if wanted is None else wanted
    return {"use_vllm": True, "vllm_mode": "colocate"} if use else {"use_vllm": False}


def main(cfg: GRPORecipeConfig, resume: bool = False) -> dict:
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from recipes.models import load_model, load_tokenizer
    from recipes.rewards import get_reward

    # ------------------------------------------------------------------ config
    out = start_run(cfg, resume)  # a new folder with config.yaml and provenance.json (or the one resumed)
    torch.manual_seed(cfg.run.seed)
    rewards = {name: get_reward(name) for name in cfg.grpo.rewards}  # fails early on an unknown name
    if not rewards:
        raise UserError("grpo.rewards is empty; give at least one reward name with a weight")

    # ------------------------------------------------------------------ data
    train = prompt_dataset(cfg.data, cfg.run.seed)

    # ------------------------------------------------------------------ model
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    model = load_model(cfg.model.name, cfg.model.dtype, cfg.model.trust_remote_code)
    params = n_params(model)
    before = evaluate_model(model, tokenizer, cfg.model.name, cfg.eval, out / "eval_before", cfg.run.seed, cfg.data.template) if cfg.eval.before else None

    # ------------------------------------------------------------------ rewards
    reward_funcs, reward_weights = list(rewards.values()), list(cfg.grpo.rewards.values())
    # a zero-weight monitor: logs the training completions' mixing rate and writes samples
    reward_funcs.append(completion_monitor(out / "samples_train.jsonl", every=cfg.grpo.sample_every))
    reward_weights.append(0.0)

    # ------------------------------------------------------------------ trainer
    args = trainer_args(
        GRPOConfig, cfg.run, cfg.optim, out,
        loss_type=cfg.grpo.loss_type, beta=cfg.grpo.beta, num_generations=cfg.grpo.num_generations,
        max_completion_length=cfg.grpo.max_completion_length, temperature=cfg.grpo.temperature,
        epsilon=cfg.grpo.epsilon, num_iterations=cfg.grpo.num_iterations, scale_rewards=cfg.grpo.scale_rewards,
        steps_per_generation=cfg.grpo.steps_per_generation, mask_truncated_completions=cfg.grpo.mask_truncated_completions, reward_weights=reward_weights,
        **vllm_args(cfg.grpo.vllm),
    )
    trainer = GRPOTrainer(model=model, args=args, train_dataset=train, reward_funcs=reward_funcs, processing_class=tokenizer, peft_config=lora_config(cfg.model),
                          callbacks=[metrics_logger(out / "metrics.jsonl")])

    # ------------------------------------------------------------------ train
    with Timer() as timer:
        trainer.train(resume_from_checkpoint=str(last_checkpoint(out)) if resume and last_checkpoint(out) else None)
    logs = trainer.state.log_history
    tokens = max([h.get("num_tokens", 0) for h in logs] + [trainer.state.num_input_tokens_seen or 0])  # prompt + completion
    forward = tokens * forward_passes(cfg.grpo, cfg.optim.gradient_accumulation_steps)
    compute = compute_record(params, tokens * cfg.grpo.num_iterations, forward, timer.seconds)

    # ------------------------------------------------------------------ save
    model = save_trained(trainer, tokenizer, out / "model")  # LoRA merged; KV cache back on

    # ------------------------------------------------------------------ evaluate
    after = evaluate_model(model, tokenizer, str(out / "model"), cfg.eval, out / "eval_after", cfg.run.seed, cfg.data.template)
    return finish_run(out, "grpo", cfg, compute, logs, before, after)
