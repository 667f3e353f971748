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


def test_tag_count_counts_each_well_formed_tag_once():
    assert REWARDS["tag_count"](["<think> a </think> <answer>1</answer>", "<think> a </think>", "<think><think> a", "1"]) == [1.0, 0.5, 0.0, 0.0]


def test_format_rewards_see_a_prefilled_think():
    """TRL #6966, open-r1 #560: with `<think>` in the prompt, the completion lacks it and a naive
    format reward scores 0; the lab's rewards put the prefill back."""
    completions = [" 2 + 2 = 4 </think> <answer>4</answer>"]
    plain, prefilled = ["User: 2 + 2? Assistant:"], ["User: 2 + 2? Assistant: <think>"]
    assert format_reward(completions, prompts=plain) == [0.0]
    assert format_reward(completions, prompts=prefilled) == [1.0]
    assert REWARDS["tag_count"](completions, prompts=plain) == [0.75]
    assert REWARDS["tag_count"](completions, prompts=prefilled) == [1.0]
    chat = [[{"role": "system", "content": "s"}, {"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "<think>"}]]
    assert format_reward(completions, prompts=chat) == [1.0]
    assert accuracy_reward(["4 </think> <answer>4</answer>"], answer=["4"], prompts=prefilled) == [1.0]
    assert language_consistency_reward([" three plus one </think> <answer>4</answer>"], prompts=prefilled) == [1.0]


def test_partial_credit_for_a_wrong_answer_given_in_the_answer_format():
    completions = ["<answer>12</answer>", "<answer>13</answer>", "<answer>12 or 13</answer>", "no answer", "<answer>5</answer>"]
    answers = ["12", "12", "12", "12", "\\frac{"]
    assert accuracy_reward(completions, answer=answers, partial_credit=0.1) == [1.0, 0.1, 0.0, 0.0, None]


def test_get_reward_binds_the_runs_options():
    reward = get_reward("accuracy", extraction="lenient", partial_credit=0.1)
    assert reward.__name__ == "accuracy_reward"
    assert reward(["so it is 12", "so it is 13", "<answer>13</answer>"], answer=["12"] * 3) == [1.0, 0.0, 0.1]
    assert get_reward("accuracy")(["so it is 12"], answer=["12"]) == [0.0]


def test_a_second_think_after_the_prefill_is_malformed_for_the_reward_as_for_evaluation():
    """After a `<think>` prefill, a completion that opens `<think>` again was fully rewarded while
    evaluation (which always puts the prefill back) counted it malformed."""
    prompt = "Question: 2 + 2? Assistant: <think>"
    again = " <think> 2 + 2 = 4 </think> <answer>4</answer>"
    once = " 2 + 2 = 4 </think> <answer>4</answer>"
    assert format_reward([again], prompts=[prompt]) == [0.0] and format_reward([once], prompts=[prompt]) == [1.0]
