"""Strict and lenient answer extraction: one grader for rewards and evaluation, and lenient mode
opens no hack that strict mode closes."""

import pytest

from rlsft.scoring.evaluate import score_samples
from rlsft.scoring.rewards import accuracy_reward
from rlsft.scoring.tasks import get_task
from rlsft.scoring.verify import extract_answer, verify_answer

# Each earns nothing in strict mode, for a hedge or for a list of candidates; lenient mode must agree.
HACKS = [
    "<answer>18 or 19</answer>",
    "<answer>18, 19</answer>",
    "<answer>18 19</answer>",
    "<answer>18</answer> <answer>19</answer>",  # a repeated, disagreeing answer block
    "<answer>18</answer> <answer>19</answer> the answer is 19",
    "<think> it is <answer>19</answer> </think>",  # the answer only inside the reasoning
    "<think> so \\boxed{19} </think> I am done",
    "The answer is 18 or 19.",  # the hedge, without tags
    "It could be 17, 18, 19",  # a list of candidate numbers
    "maybe 18 或 19",
    "the answer is \\pm 19",
    "<think> 19 </think> 18 or 19",
    "<answer>(4 * 4) + 3</answer>",  # the question's expression, unevaluated (SmolLM2's GRPO found it)
    "<think> computation here </think> <answer> 16 + 3 </answer>",
    "The answer is 16 + 3.",
]


@pytest.mark.parametrize("completion", HACKS)
def test_lenient_extraction_opens_no_hack(completion):
    assert verify_answer(completion, "19") is False
    assert verify_answer(completion, "19", "lenient") is False


@pytest.mark.parametrize("completion,strict,lenient", [
    ("<think> 3 * 4 = 12 </think> <answer>12</answer>", "12", "12"),  # tags: both modes read the same
    ("we get \\boxed{12}", "12", "12"),
    ("3 * 4 = 12. So the answer is 12.", None, "12"),
    ("Final answer: 12", None, "12"),
    ("所以答案是 12。", None, "12"),
    ("She has 3 bags of 4, that is 12 apples.", None, "12"),
    ("<think> 3 * 4 = 12", None, "12"),  # an unclosed <think> holds all of it
    ("<answer></answer> so 12", "", ""),  # an (empty) answer block is the answer in both modes
    ("no number here", None, None),
])
def test_what_each_mode_reads(completion, strict, lenient):
    assert extract_answer(completion) == strict
    assert extract_answer(completion, "lenient") == lenient


def test_a_committed_wrong_answer_is_not_rescued_by_a_later_number():
    assert verify_answer("<answer>13</answer> 12", "12", "lenient") is False
    assert verify_answer("\\boxed{13} so 12", "12", "lenient") is False


def test_reward_and_evaluation_grade_alike():
    completions = ["<think> 6 * 12 = 72 </think> <answer>72</answer>", "so 72 clips", "71 or 72", "<answer>70</answer> 72"]
    golds = ["72"] * 4
    scores = score_samples(get_task("gsm8k"), completions, golds, ["en"] * 4)
    assert [s["correct"] for s in scores] == [True, False, False, False]
    assert [s["correct_lenient"] for s in scores] == [True, True, False, False]
    assert accuracy_reward(completions, answer=golds) == [float(s["correct"]) for s in scores]
    assert accuracy_reward(completions, answer=golds, extraction="lenient") == [float(s["correct_lenient"]) for s in scores]


def test_unknown_extraction_is_refused():
    from rlsft.io import UserError

    with pytest.raises(UserError, match="unknown extraction 'loose'"):
        get_task("gsm8k").verify_many(["<answer>1</answer>"], ["1"], "loose")
