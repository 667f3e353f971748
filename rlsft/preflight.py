"""The pre-flight signal check: can GRPO learn anything from these settings, before it spends compute?

GRPO's advantage is a completion's reward minus its group's mean. A group of `num_generations`
completions whose rewards are all equal has zero advantage, so it adds nothing to the gradient;
when every group is like that, loss and grad_norm are 0 and the weights never move (TRL #3452,
#3857; this lab's own SmolLM2 study spent 0.072 PFLOPs that way). TRL logs
`frac_reward_zero_std` after each step, once the compute is spent. This check samples the
completions of a few dozen training prompts first, at the training temperature, top-p and
length, scores them with the run's own rewards and weights, and reports:

- `signal_share`: the share of groups whose total rewards differ (TRL's `frac_reward_zero_std`
  is its complement), and the same for each reward alone;
- the mean of each reward, and `pass@G`: the share of prompts with at least one correct completion;
- the answer-tag and truncation rates, which say why a reward does not fire.

Below `probe.min_signal` the GRPO recipe stops with one line naming the remedies, unless
`probe.force` is set. `rlsft probe CONFIG` runs it alone. The torch RNG is restored afterwards,
so a run with the check trains exactly as one without it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rlsft.io import UserError
from rlsft.models import gpu_of
from rlsft.scoring.evaluate import generate
from rlsft.scoring.tasks import THINK_PREFILL

REMEDIES = ("extraction=lenient (read answers without tags)", "a shaped format reward (rewards.tag_count)",
            "partial_credit for a parsable wrong answer", "data.think_prefill=true", "an easier task", "a cold start (SFT first)")


@dataclass
class ProbeConfig:
    enabled: bool = True  # run the check before GRPO trains
    prompts: int = 32  # training prompts sampled, num_generations completions each
    min_signal: float = 0.05  # least share of groups with differing rewards for GRPO to go on
    force: bool = False  # go on below min_signal (the result is still recorded)

    def __post_init__(self):
        if self.prompts < 1 or not 0.0 <= self.min_signal <= 1.0:
            raise UserError(f"probe: prompts must be at least 1 and min_signal in [0, 1], got {self.prompts} and {self.min_signal}")


def group_signal(totals: list[list[float]]) -> float:
    """Share of groups whose total rewards are not all equal (GRPO's groups with an advantage).

    >>> group_signal([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.1, 0.0, 1.0]])
    0.5
    """
    return sum(max(g) - min(g) > 1e-9 for g in totals) / len(totals) if totals else 0.0


def weighted_totals(per_reward: dict[str, list[float | None]], weights: dict[str, float]) -> list[float]:
    """Each completion's total reward as TRL sums it: the weighted rewards, a None (unscorable) left out.

    >>> weighted_totals({"accuracy": [1.0, 0.0, None], "tag_count": [0.5, 0.25, 0.0]}, {"accuracy": 1.0, "tag_count": 0.5})
    [1.25, 0.125, 0.0]
    """
    n = len(next(iter(per_reward.values())))
    return [sum(weights[name] * r[i] for name, r in per_reward.items() if r[i] is not None) for i in range(n)]


def run_probe(model, tokenizer, train_set, reward_funcs: dict, weights: dict[str, float], probe: ProbeConfig, *,
              num_generations: int, temperature: float, top_p: float, max_completion_length: int, think_prefill: bool,
              extraction: str, seed: int) -> dict:
    """Sample `num_generations` completions for the first `probe.prompts` training prompts and
    score them with `reward_funcs` ({name: function}); returns the record described above, with
    `passed` (signal_share >= min_signal)."""
    import torch

    rows = train_set.select(range(min(probe.prompts, len(train_set))))
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=gpu_of(model)):  # training's generators (CPU and GPU) as they were
        torch.manual_seed(seed)
        groups = generate(model, tokenizer, list(rows["prompt"]), num_generations, temperature, top_p, max_completion_length,
                          desc="pre-flight", think_prefill=think_prefill)
    seconds = time.perf_counter() - t0
    # what TRL hands a reward: the completion without the prefill, with its prompt and the row's columns
    texts = [g["text"][len(THINK_PREFILL):] if think_prefill else g["text"] for group in groups for g in group]
    columns = {k: [v for v in rows[k] for _ in range(num_generations)] for k in rows.column_names if k != "prompt"}
    prompts = [p for p in rows["prompt"] for _ in range(num_generations)]
    per_reward = {name: func(completions=texts, prompts=prompts, **columns) for name, func in reward_funcs.items()}
    totals = weighted_totals(per_reward, weights)
    G = num_generations
    grouped = [totals[i:i + G] for i in range(0, len(totals), G)]
    record = {
        "prompts": len(rows),
        "num_generations": G,
        "temperature": temperature,
        "top_p": top_p,
        "max_completion_length": max_completion_length,
        "think_prefill": think_prefill,
        "extraction": extraction,
        "rewards": {name: _mean(r) for name, r in per_reward.items()},  # mean of each reward, unweighted
        "reward_weights": dict(weights),
        "mean_total_reward": _mean(totals),
        "signal_share": group_signal(grouped),  # groups whose rewards differ: GRPO's learning signal
        # the same for each reward alone: a shaped format reward can carry all of the signal while accuracy has none
        "signal_share_by_reward": {name: group_signal([[x or 0.0 for x in r[i:i + G]] for i in range(0, len(r), G)])
                                   for name, r in per_reward.items()},
        "min_signal": probe.min_signal,
        "answer_tag_rate": _mean([float("<answer>" in t) for t in texts]),
        "truncation_rate": _mean([float(g["truncated"]) for group in groups for g in group]),
        "seconds": round(seconds, 1),
        "example": (texts[0][:400] if texts else None),
    }
    record["frac_reward_zero_std"] = 1.0 - record["signal_share"]
    if "accuracy" in per_reward:
        acc = per_reward["accuracy"]
        record[f"pass@{G}"] = _mean([float(any((a or 0.0) >= 1.0 for a in acc[i:i + G])) for i in range(0, len(acc), G)])
    record["passed"] = record["signal_share"] >= probe.min_signal
    return record


def _mean(xs: list) -> float:
    vals = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(vals) / len(vals) if vals else 0.0


def summary_line(record: dict) -> str:
    """One line: the share of groups with signal, pass@G and each reward's mean.

    >>> summary_line({"signal_share": 0.25, "prompts": 32, "num_generations": 8, "pass@8": 0.3, "rewards": {"accuracy": 0.05}})
    'pre-flight: 8 of 32 groups (25.0%) have rewards that differ; pass@8 0.300; mean rewards: accuracy 0.050'
    """
    G, n = record["num_generations"], record["prompts"]
    with_signal = round(record["signal_share"] * n)
    parts = [f"pre-flight: {with_signal} of {n} groups ({100 * record['signal_share']:.1f}%) have rewards that differ"]
    if f"pass@{G}" in record:
        parts.append(f"pass@{G} {record[f'pass@{G}']:.3f}")
    parts.append("mean rewards: " + ", ".join(f"{k} {v:.3f}" for k, v in record["rewards"].items()))
    return "; ".join(parts)


def refusal(record: dict) -> str:
    """The one-line refusal of settings without signal, naming the remedies."""
    return (f"{summary_line(record)}; below probe.min_signal={record['min_signal']:g}, so GRPO would get zero advantage "
            f"from almost every group. Remedies: {'; '.join(REMEDIES)}. Or set probe.force=true to train anyway")
