"""Compute accounting and the process's place in a launch.

FLOPs follow the usual dense-transformer estimate (Kaplan et al. 2020):
- a training token (forward + backward) costs 6 * N FLOPs, N = the parameters a token multiplies by
  (`models.flop_parameters`: all of them less an untied input embedding, a lookup; records
  without `flops_formula` counted every parameter);
  when only T of them train (LoRA adapters beside N frozen ones), 4 * N + 6 * T: the frozen
  weights' forward and the backward through them to reach the adapters (no weight gradients
  for them), and the adapters' forward, backward and weight gradients (since 2026-12-05; 4N + 2T
  before, which left out the adapters' forward and backward);
- a generated or scored token (forward only) costs 2 * N FLOPs;
- the output head's H of the N only on tokens whose logits the algorithm needs (useful FLOPs): a
  token read but never scored (GRPO's prompt tokens, in its training, scoring and generation's
  prefill; TRL's own CPU path, which the lab's trainer falls back to under DDP or an entropy bonus,
  scores every position anyway) costs the body's N - H alone (`Cost.train_unscored`, `Cost.forward_unscored`; records since this count say
  `head_parameters`, and runs that count no such token, SFT's, price the head on every token);
- attention's extra FLOPs are ignored (contexts here are short next to the model width).
GPU-hours are wall hours times GPUs; on a CPU the record gives CPU core-hours instead.
Estimates (`rlsft train --dry-run`) count every completion at its maximum length and every
prompt at `PROMPT_TOKENS`.
"""

from __future__ import annotations

import resource
import sys
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from rlsft.models import MODEL_CARDS, flop_parameters, matmul_params, model_config, numel

# What a record's `flops` counts, written into it (records without it count N as every parameter)
FLOPS_FORMULA = ("6N a trained token (4N + 6T under LoRA), 2N a forward-only token; N: parameters a token multiplies by (no untied "
                 "input embedding), less the output head on tokens whose logits are not computed (GRPO's prompts)")
PROMPT_TOKENS = 128  # prompt length assumed by the estimates, tokens
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s, for the GPU-hour floor of an estimate
ASSUMED_MFU = 0.3


DISTRIBUTED_TIMEOUT_S = 4 * 3600  # how long a rank waits at a collective call for the others (rank 0's evaluations)


def distributed_state():
    """This process's place in the launch: one process per data-parallel worker under `accelerate launch`.

    Without a GPU the workers are CPU processes joined over gloo, which accelerate sets up only when
    asked (`cpu=True`); otherwise each of them would think it ran alone. The state is shared, so the
    first call decides it for the Trainer too.
    """
    import torch
    from accelerate import PartialState

    accelerator = torch.cuda.is_available() or torch.backends.mps.is_available()
    # the first call opens the process group, so TrainingArguments' ddp_timeout never reaches it: the
    # other ranks wait at a barrier while rank 0 alone evaluates (minutes to hours with the transformers
    # backend), past NCCL's 10-minute default
    return PartialState(cpu=not accelerator, timeout=timedelta(seconds=DISTRIBUTED_TIMEOUT_S))


def is_main_process() -> bool:
    """True on the process that writes files and evaluates (rank 0 under `accelerate launch`)."""
    return distributed_state().is_main_process


class Cost(NamedTuple):
    """A recipe's token counts for `flops`, from the tokens its Trainer consumed (each recipe's `cost`)."""

    train: int  # tokens through forward + backward (a generation trained num_iterations times counts that often)
    forward: int  # tokens through forward alone: generated, or scored by a reference or the sampling policy
    other_flops: int = 0  # another model's work (a teacher's sampling or scoring)
    train_unscored: int = 0  # of `train`, tokens whose logits are not computed (GRPO: prompt tokens)
    forward_unscored: int = 0  # of `forward`, likewise (generation's prefill, scoring's prompt tokens)


def flops(params: int, train_tokens: int, forward_tokens: int, extra_flops: int = 0, trainable: int | None = None,
          head: int = 0, train_unscored: int = 0, forward_unscored: int = 0) -> int:
    """6N per trained token (4N + 6T when only `trainable` = T adapter parameters train beside
    the N frozen ones), 2N per forward-only token, plus another model's work (a teacher's); the
    output head's `head` of the N left out on the tokens whose logits are never computed.

    >>> flops(1_000_000, 10_000, 5_000), flops(1_000_000, 10_000, 5_000, trainable=10_000)
    (70000000000, 50600000000)
    >>> flops(1_000_000, 10_000, 5_000, head=100_000, train_unscored=4_000, forward_unscored=2_000)  # less 6 x 0.1M x 4k, 2 x 0.1M x 2k
    67200000000
    """
    per_train_token = 6 * params if trainable is None else 4 * params + 6 * trainable
    per_unscored_train_token = 6 * head if trainable is None else 4 * head  # LoRA: the frozen head gets no weight gradient
    return int(per_train_token * train_tokens + 2 * params * forward_tokens + extra_flops
               - per_unscored_train_token * train_unscored - 2 * head * forward_unscored)


def cost_flops(params: int, cost: Cost, trainable: int | None = None, head: int = 0) -> int:
    """`flops` of a recipe's `Cost`."""
    return flops(params, cost.train, cost.forward, cost.other_flops, trainable, head, cost.train_unscored, cost.forward_unscored)


def head_parameters(model) -> int:
    """The output head's parameters (`models.matmul_params`), through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return matmul_params(base)[1]


def stalled_update_share(model, learning_rate: float) -> float:
    """Share of the trainable weights that an update the size of `learning_rate` cannot change
    (an AdamW step moves a weight by about the learning rate): a bfloat16 or float16 weight in
    [2**(e-1), 2**e) sits on a grid of spacing eps * 2**(e-1), so a step under half of it rounds
    back to the same weight. Pure half-precision training (weights loaded in bf16, no float32
    master copy: plain Trainer, no DeepSpeed) at RL's learning rates moves almost nothing.
    0.0 when every trainable weight is float32 (LoRA's adapters, float32 weights under autocast).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1e-5, 1e-3, 0.02, 0.5], dtype=torch.bfloat16))
    >>> stalled_update_share(torch.nn.ParameterList([w]), 1e-6)  # bf16 spacing at 1e-3 is 7.6e-6
    0.75
    >>> stalled_update_share(torch.nn.ParameterList([w.float()]), 1e-6)
    0.0
    """
    import torch

    stalled = total = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        total += p.numel()
        if p.dtype not in (torch.bfloat16, torch.float16):
            continue
        flat = p.detach().reshape(-1)
        for chunk in flat.split(1 << 22):  # 4M weights at a time: a 150k x 1.5k embedding never doubles in float32 at once
            _, exponent = torch.frexp(chunk.float())
            half_spacing = torch.finfo(p.dtype).eps * torch.exp2(exponent.float() - 2)  # eps * 2**(e-1) / 2
            stalled += int(((half_spacing >= learning_rate) & (chunk != 0)).sum())
    return stalled / total if total else 0.0


def trainable_parameters(model) -> int | None:
    """The parameters that get gradients when fewer than all do (LoRA adapters); None when every
    parameter trains (full fine-tuning: `flops` counts 6N).

    >>> import torch
    >>> m = torch.nn.Linear(4, 2); trainable_parameters(m) is None
    True
    >>> _ = m.bias.requires_grad_(False); trainable_parameters(m)  # the 4 x 2 weight
    8
    """
    params = list(model.parameters())
    trainable = sum(numel(p) for p in params if p.requires_grad)
    return None if trainable == sum(numel(p) for p in params) else trainable


def compute_record(params: int, cost: Cost, seconds: float, trainable: int | None = None, head: int = 0,
                   earlier_peak_gb: float | None = None) -> dict:
    """FLOPs and device-hours of a run of `params` = N (`flop_parameters`), of which `head` are the
    output head's, that consumed `cost`. `seconds` is the Trainer's own `train_runtime` (plus any
    teacher sampling before it); `trainable`: the parameters that trained, when not all did;
    `earlier_peak_gb`: a resumed run's peak memory in its earlier sittings (this process saw only its own)."""
    import torch

    processes = distributed_state().num_processes  # data-parallel workers (accelerate launch)
    gpu = torch.cuda.is_available()
    return {
        "parameters": params,  # N: the parameters a token multiplies by (FLOPS_FORMULA)
        **({"trainable_parameters": trainable} if trainable is not None else {}),  # LoRA: 4N + 6T per trained token
        "head_parameters": head,  # of N, the output head's: priced only on tokens whose logits are computed
        "train_tokens": int(cost.train),  # tokens through forward + backward
        "forward_tokens": int(cost.forward),  # tokens generated or scored without backward
        "train_tokens_unscored": int(cost.train_unscored),  # of those, tokens whose logits are not computed (GRPO's prompts)
        "forward_tokens_unscored": int(cost.forward_unscored),
        "flops": cost_flops(params, cost, trainable, head),
        "flops_formula": FLOPS_FORMULA,
        "wall_seconds": round(seconds, 1),
        "processes": processes,
        "gpu_hours": round(processes * seconds / 3600, 4) if gpu else 0.0,
        "cpu_core_hours": 0.0 if gpu else round(processes * torch.get_num_threads() * seconds / 3600, 4),
        "device": torch.cuda.get_device_name(0) if gpu else f"cpu, {torch.get_num_threads()} threads per process",
        "peak_memory_gb": higher_peak(peak_memory_gb(), earlier_peak_gb),
    }


def trained_tokens(trainer) -> int:
    """Tokens the Trainer has consumed so far (prompt + completion), from its own running counts:
    GRPO and on-policy distillation count in `state.num_input_tokens_seen`, TRL's SFTTrainer in
    `_total_train_tokens` (which each of its log lines shows as `num_tokens`; the live count also
    holds the steps after the last log line).

    >>> from types import SimpleNamespace as NS
    >>> trained_tokens(NS(state=NS(log_history=[{"num_tokens": 90.0}], num_input_tokens_seen=0), _total_train_tokens=120))
    120
    """
    logs = trainer.state.log_history
    return int(max([h.get("num_tokens", 0) for h in logs]
                   + [trainer.state.num_input_tokens_seen or 0, getattr(trainer, "_total_train_tokens", 0)]))


def continue_token_count(trainer, tokens: int) -> None:
    """On a resumed sitting, carry the Trainer's running token count on from `tokens`, the count at
    the checkpoint it resumed from, so that it counts every sitting. `state.num_input_tokens_seen`
    (GRPO, on-policy distillation) comes back with the checkpoint's trainer_state.json; TRL's
    SFTTrainer keeps its count on the trainer object, which starts at zero in every process.

    >>> from types import SimpleNamespace as NS
    >>> sft = NS(state=NS(log_history=[], num_input_tokens_seen=0), _total_train_tokens=0)
    >>> continue_token_count(sft, 20_241); sft._total_train_tokens
    20241
    """
    if hasattr(trainer, "_total_train_tokens") and not trainer.state.num_input_tokens_seen:
        trainer._total_train_tokens = int(tokens)


def peak_memory_gb() -> float | None:
    """Peak accelerator memory (GB, 10^9 bytes) on GPU; peak resident memory of the process on CPU,
    since the process began or since `reset_peak_memory` (Linux and GPU). Linux reports kibibytes
    (records before 2026-12-06 divided them by 10^6: 2.4% low)."""

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    if (high_water_kb := _linux_high_water_kb()) is not None:
        return round(high_water_kb * 1024 / 1e9, 3)
    per_gb = 1e9 if sys.platform == "darwin" else 1e9 / 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_gb, 3)


def reset_peak_memory() -> None:
    """Start the peak memory over, so that a run trained in a process that ran others before it
    (an in-process study) records its own peak, not the process's. On GPU torch's allocator
    statistics; on Linux the resident high-water mark (VmHWM; writing 5 to /proc/self/clear_refs
    resets it to the current resident set). Elsewhere (macOS) the peak stays the process's."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    elif sys.platform.startswith("linux"):
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:  # a sandbox without /proc's write access: the peak stays the process's
            pass


def _linux_high_water_kb() -> int | None:
    """The process's peak resident set (VmHWM in /proc/self/status, KB) on Linux; None elsewhere.
    getrusage's ru_maxrss is the same figure but never resets."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def higher_peak(*peaks_gb: float | None) -> float | None:
    """The highest of some sittings' peak memories (GB), those unknown (None) left out.

    >>> higher_peak(11.4, None, 3.2), higher_peak(None)
    (11.4, None)
    """
    return max((m for m in peaks_gb if m is not None), default=None)


def param_count(model_name: str) -> int | None:
    """The compute record's N of a model (`flop_parameters`) from its config alone (no weights
    loaded, no network: cached or local configs only, then the model-card table); None when unknown (for example a stage
    whose input model does not exist yet)."""
    card = MODEL_CARDS.get(model_name)
    try:
        import torch
        from transformers import AutoModelForCausalLM

        config = model_config(model_name)  # a dry run never converts a packaged model nor downloads
        if config is None:
            return card.parameters if card else None
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return flop_parameters(model)
    except Exception:  # a model not built yet, or a config transformers cannot build
        return card.parameters if card else None


def estimate_record(params: int | None, train_tokens: int | None, forward_tokens: int,
                    teacher_params: int | None = None, teacher_tokens: int = 0) -> dict:
    """An upper-bound compute estimate, with a GPU-hour floor: FLOPs at `ASSUMED_MFU` of an H100's
    dense bf16 peak (a floor: generation is memory-bound and runs far below it). None where a count
    is unknown (a model config offline, an epoch-based length).

    >>> estimate_record(1_000_000, 10_000, 0)["flops_upper_bound"]
    60000000000
    """
    est = {"parameters": params, "train_tokens": train_tokens, "forward_tokens": forward_tokens}
    if teacher_tokens:
        est.update(teacher_parameters=teacher_params, teacher_forward_tokens=teacher_tokens)
    known = params is not None and train_tokens is not None and (teacher_params is not None or not teacher_tokens)
    total = flops(params, train_tokens, forward_tokens, 2 * (teacher_params or 0) * teacher_tokens) if known else None
    est["flops_upper_bound"] = total
    est["gpu_hours_floor"] = None if total is None else round(total / (H100_BF16_PEAK * ASSUMED_MFU) / 3600, 3)
    est["gpu_hours_assumes"] = f"{H100_BF16_PEAK / 1e12:.0f} TFLOP/s peak at {ASSUMED_MFU:.0%} utilisation"
    return est
