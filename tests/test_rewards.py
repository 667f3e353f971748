"""Rewards on literal strings, with TRL's calling convention (columns as keyword lists)."""

import pytest

from rlsft.io import UserError
from rlsft.scoring.rewards import REWARDS, accuracy_reward, format_reward, get_reward, language_consistency_reward


def test_accuracy_reward_values():
    completions = [
        "<think> 3 * 4 = 12 </think> <answer>12</answer>",
        "<think> 3 * 4 = 13 </think> <answer>13</answer>",
        "<answer>12 or 13</answer>",
        "<think> the answer is 12 </think>",
        "<answer>12</answer>",
    ]
    answers = ["12", "12", "12", "12", "\\frac{"]
    assert accuracy_reward(completions, answer=answers, prompts=["p"] * 5) == [1.0, 0.0, 0.0, 0.0, None]


def test_accuracy_reward_conversational_and_task_column():
    chat = [[{"role": "assistant", "content": "<answer>(3 + 5) * 2</answer>"}], [{"role": "assistant", "content": "<answer>16</answer>"}]]
    assert accuracy_reward(chat, answer=["target: 16; numbers: 2 3 5"] * 2, task=["micro-countdown"] * 2) == [1.0, 0.0]


def test_format_reward():
    assert format_reward(["<think> a </think> <answer>1</answer>", "<answer>1</answer>", "<think> a </think><answer>1</answer><answer>1</answer>"]) == [1.0, 0.0, 0.0]


def test_language_reward_measures_reasoning_only():
    en = "<think> three plus five is eight </think> <answer>八</answer>"
    mixed = "<think> three plus five 等于 eight </think> <answer>8</answer>"
    assert language_consistency_reward([en, mixed]) == [1.0, pytest.approx(4 / 6)]
    assert language_consistency_reward([mixed], language=["zh"]) == [pytest.approx(2 / 6)]
    assert language_consistency_reward(["<think> 3 + 5 = 8 </think> <answer>8</answer>"]) == [0.0]


def test_registry():
    assert {"accuracy", "format", "language"} <= set(REWARDS)
    assert get_reward("format") is format_reward
    with pytest.raises(UserError, match=f"unknown reward 'acuracy'; valid: {', '.join(REWARDS)}"):
        get_reward("acuracy")
