"""Rewards with TRL's signature: `f(completions, **dataset_columns) -> list[float | None]`.

`completions` holds strings (standard prompts) or message lists (chat prompts; the last message's
content is used). Dataset columns arrive as keyword lists, one value per completion: `answer`
(gold), and optionally `task` (which verifier to use) and `language` (target language). TRL also
passes `prompts`: a prompt that already ends in `<think>` (`data.think_prefill`) has the tag put
back in front of its completion, so every reward scores the whole assistant turn (TRL #6966,
open-r1 #560 are format rewards that failed on exactly that).
`None` means "cannot be scored" (an unverifiable gold, a check out of time). TRL leaves a completion
out only when every reward returned None for it, and otherwise sums the others (a None adds 0); the
lab's GRPO trainer leaves it out whenever a reward marked `decides_correctness` (the accuracy
reward) returned None, so a correct answer whose check ran out of time is not trained as a wrong
one that earned only its format, and keeps the zero-weight language monitor from counting as a reward.

Each reward is a function of its arguments alone, with one deliberate exception: `accuracy_reward`
checks answers in worker processes with a time limit (`rlsft.scoring.pool`, 1 s a check, the
task looked up in `TASKS`), so a check that runs out of time scores None and is counted in
`pool.TIMEOUTS`; a hung verifier must not stop training.

`REWARDS` is a plain dict, so a config picks rewards by name. Options that a run sets once
(`extraction`, `partial_credit`) are bound by `get_reward` to the rewards that take them.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from rlsft.io import UserError
from rlsft.scoring.language import language_stats
from rlsft.scoring.tasks import THINK_PREFILL, get_task
from rlsft.scoring.verify import extract_answer, format_ok, gives_several_answers, is_hedged, reasoning_text


def completion_text(completion: Any, prompt: Any = None) -> str:
    """Text of one completion, standard (str) or conversational (list of messages), with the
    prompt's `<think>` prefill put back in front when the prompt ends in it.

    >>> completion_text([{"role": "assistant", "content": "<answer>4</answer>"}])
    '<answer>4</answer>'
    >>> completion_text(" 2 + 2 = 4 </think> <answer>4</answer>", prompt="... Assistant: <think>")
    '<think> 2 + 2 = 4 </think> <answer>4</answer>'
    """
    if isinstance(completion, str):
        text = completion
    elif isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        text = str(completion[-1].get("content", ""))
    else:
        text = str(completion)
    opened = completion_text(prompt) if prompt is not None and not isinstance(prompt, str) else prompt
    if opened and opened.rstrip().endswith(THINK_PREFILL):  # always, as evaluation does: a second <think> is malformed in both
        text = THINK_PREFILL + text
    return text


def _texts(completions: list, prompts: list | None) -> list[str]:
    return [completion_text(c, prompts[i] if prompts else None) for i, c in enumerate(completions)]


def accuracy_reward(completions: list, answer: list[str], task: list[str] | None = None, prompts: list | None = None,
                    extraction: str = "strict", partial_credit: float = 0.0, **kwargs) -> list[float | None]:
    """1.0 when the final answer (read in `extraction` mode, see `verify.EXTRACTIONS`) verifies
    against the gold; `partial_credit` (TinyZero's 0.1) when a wrong answer was given in the answer
    format (`<answer>` or `\\boxed{}`, read strictly whatever the mode, so it pays for the format and
    not for any number in prose) and is not a hedge; 0.0 otherwise; None when the gold is
    unverifiable (or a check runs out of time).
    Uses the row's task verifier when a `task` column is present; the batch is checked in parallel
    in worker processes (`Task.verify_many`).

    >>> accuracy_reward(["<think> 3 * 4 = 12 </think> <answer>12</answer>", "<answer>13</answer>"], answer=["12", "12"])
    [1.0, 0.0]
    >>> accuracy_reward(["<answer>12 or 13</answer>", "<answer>5</answer>"], answer=["12", "\\\\frac{"])
    [0.0, None]
    >>> accuracy_reward(["3 * 4 = 12", "<answer>13</answer>", "3 * 4 = 13", "<answer>12 or 13</answer>"], answer=["12"] * 4,
    ...                 extraction="lenient", partial_credit=0.1)
    [1.0, 0.1, 0.0, 0.0]
    >>> accuracy_reward(["<answer>5</answer> <answer>6</answer>"], answer=["5"], partial_credit=0.1)  # two answers: a hedge
    [0.0]
    """
    texts = _texts(completions, prompts)
    names = task or ["gsm8k"] * len(completions)  # no task column: the math-verify verifier
    out: list[float | None] = [None] * len(completions)
    for name in dict.fromkeys(names):  # one batch per task, in the batch's order
        idx = [i for i, n in enumerate(names) if n == name]
        checks = get_task(name).verify_many([texts[i] for i in idx], [answer[i] for i in idx], extraction)
        for i, ok in zip(idx, checks):
            out[i] = None if ok is None else float(ok)
    if partial_credit:
        for i, score in enumerate(out):
            given = extract_answer(texts[i]) if score == 0.0 else None
            if given and not is_hedged(given, str(answer[i])) and not gives_several_answers(texts[i]):
                out[i] = partial_credit
    return out


def format_reward(completions: list, prompts: list | None = None, **kwargs) -> list[float]:
    """1.0 when the completion follows the R1-Zero template exactly (see `verify.format_ok`).

    >>> format_reward(["<think> 2 + 2 = 4 </think> <answer>4</answer>", "4"])
    [1.0, 0.0]
    >>> format_reward([" 2 + 2 = 4 </think> <answer>4</answer>"], prompts=["Assistant: <think>"])
    [1.0]
    """
    return [float(format_ok(t)) for t in _texts(completions, prompts)]


TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def tag_count_reward(completions: list, prompts: list | None = None, **kwargs) -> list[float]:
    """open-r1's `tag_count_reward`: 0.25 for each of the four tags that occurs exactly once (a
    shaped step toward the format; the lab's tags are separated by spaces or newlines, so it counts
    tags, not open-r1's newline-wrapped ones). A prefilled `<think>` counts.

    >>> tag_count_reward(["<think> 2 + 2 = 4 </think> <answer>4</answer>", "<think> 2 + 2 = 4", "4", "<answer>4</answer><answer>4</answer>"])
    [1.0, 0.25, 0.0, 0.0]
    >>> tag_count_reward([" x </think> <answer>4</answer>"], prompts=["Assistant: <think>"])
    [1.0]
    """
    return [0.25 * sum(t.count(tag) == 1 for tag in TAGS) for t in _texts(completions, prompts)]


def language_consistency_reward(completions: list, language: list[str] | None = None, prompts: list | None = None, **kwargs) -> list[float]:
    """DeepSeek-R1's language-consistency reward: the share of target-language words in the
    reasoning (text outside `<think>` excluded), 0.0 when the reasoning has no words.

    >>> language_consistency_reward(["<think> 3 + 5 = 8 所以 answer 8 </think> <answer>8</answer>"])
    [0.3333333333333333]
    >>> language_consistency_reward(["<think> 首先 3 + 5 = 8 </think>"], language=["zh"])
    [1.0]
    """
    out = []
    for i, text in enumerate(_texts(completions, prompts)):
        stats = language_stats(reasoning_text(text), language[i] if language else "en")
        out.append(stats.consistency if stats.consistency is not None else 0.0)
    return out


# A reward that decides whether the answer is right: where it returns None (a check out of time, an
# unverifiable gold) the GRPO trainer leaves the completion out, whatever the other rewards pay
accuracy_reward.decides_correctness = True

REWARDS = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "tag_count": tag_count_reward,
    "language": language_consistency_reward,
}


def get_reward(name: str, **options):
    """The reward function registered as `name`, with those of `options` it takes bound (TRL logs
    it under its name); an unknown name lists the valid ones.

    >>> get_reward("accuracy", extraction="lenient", partial_credit=0.1).keywords
    {'extraction': 'lenient', 'partial_credit': 0.1}
    >>> get_reward("format", extraction="lenient") is format_reward
    True
    """
    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}; valid: {', '.join(REWARDS)}")
    func = REWARDS[name]
    takes = inspect.signature(func).parameters
    bound = {k: v for k, v in options.items() if k in takes}
    if not bound:
        return func
    reward = functools.partial(func, **bound)
    reward.__name__ = func.__name__  # TRL names the reward's logged mean after it
    reward.__dict__.update(func.__dict__)  # its marks (decides_correctness)
    return reward
