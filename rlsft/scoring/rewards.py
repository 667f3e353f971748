"""Rewards with TRL's signature: `f(completions, **dataset_columns) -> list[float | None]`.

`completions` holds strings (standard prompts) or message lists (chat prompts; the last message's
content is used). Dataset columns arrive as keyword lists, one value per completion: `answer`
(gold), and optionally `task` (which verifier to use) and `language` (target language).
`None` means "cannot be scored" (an unverifiable gold); TRL ignores it rather than reward it.

`REWARDS` is a plain dict, so a config picks rewards by name.
"""

from __future__ import annotations

from typing import Any

from rlsft.io import UserError
from rlsft.scoring.language import language_stats
from rlsft.scoring.tasks import get_task
from rlsft.scoring.verify import format_ok, reasoning_text


def completion_text(completion: Any) -> str:
    """Text of one completion, standard (str) or conversational (list of messages).

    >>> completion_text([{"role": "assistant", "content": "<answer>4</answer>"}])
    '<answer>4</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def accuracy_reward(completions: list, answer: list[str], task: list[str] | None = None, **kwargs) -> list[float | None]:
    """1.0 when the final answer verifies against the gold, 0.0 otherwise, None when the gold is
    unverifiable (or a check runs out of time). Uses the row's task verifier when a `task` column is
    present; the batch is checked in parallel in worker processes (`Task.verify_many`).

    >>> accuracy_reward(["<think> 3 * 4 = 12 </think> <answer>12</answer>", "<answer>13</answer>"], answer=["12", "12"])
    [1.0, 0.0]
    >>> accuracy_reward(["<answer>12 or 13</answer>", "<answer>5</answer>"], answer=["12", "\\\\frac{"])
    [0.0, None]
    """
    names = task or ["gsm8k"] * len(completions)  # no task column: the math-verify verifier
    out: list[float | None] = [None] * len(completions)
    for name in dict.fromkeys(names):  # one batch per task, in the batch's order
        idx = [i for i, n in enumerate(names) if n == name]
        checks = get_task(name).verify_many([completion_text(completions[i]) for i in idx], [answer[i] for i in idx])
        for i, ok in zip(idx, checks):
            out[i] = None if ok is None else float(ok)
    return out


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 when the completion follows the R1-Zero template exactly (see `verify.format_ok`).

    >>> format_reward(["<think> 2 + 2 = 4 </think> <answer>4</answer>", "4"])
    [1.0, 0.0]
    """
    return [float(format_ok(completion_text(c))) for c in completions]


def language_consistency_reward(completions: list, language: list[str] | None = None, **kwargs) -> list[float]:
    """DeepSeek-R1's language-consistency reward: the share of target-language words in the
    reasoning (text outside `<think>` excluded), 0.0 when the reasoning has no words.

    >>> language_consistency_reward(["<think> 3 + 5 = 8 所以 answer 8 </think> <answer>8</answer>"])
    [0.3333333333333333]
    >>> language_consistency_reward(["<think> 首先 3 + 5 = 8 </think>"], language=["zh"])
    [1.0]
    """
    out = []
    for i, c in enumerate(completions):
        stats = language_stats(reasoning_text(completion_text(c)), language[i] if language else "en")
        out.append(stats.consistency if stats.consistency is not None else 0.0)
    return out


REWARDS = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "language": language_consistency_reward,
}


def get_reward(name: str):
    """The reward function registered as `name`; an unknown name lists the valid ones."""
    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}; valid: {', '.join(REWARDS)}")
    return REWARDS[name]
