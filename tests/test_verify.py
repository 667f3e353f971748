"""Verifier: extraction, hedges, unparseable golds, format, and the 1 s bound on nasty input."""

import time

import pytest

from rlsft.scoring.verify import extract_answer, format_ok, is_hedged, verify_answer


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("<think> 6 * 12 = 72 </think> <answer>72</answer>", "72", True),
        ("<think> 6 * 12 = 72 </think> <answer>71</answer>", "72", False),
        ("<answer> 1,000 </answer>", "1000", True),
        ("<answer>0.5</answer>", "\\frac{1}{2}", True),
        ("<answer>\\frac{2}{4}</answer>", "\\frac{1}{2}", True),
        ("The answer is \\boxed{7}.", "7", True),
        ("<answer>7</answer> but \\boxed{8}", "7", True),  # <answer> wins over \boxed
        ("<think> x </think> <answer>$\\frac{\\sqrt{3}}{2}$</answer>", "\\frac{\\sqrt{3}}{2}", True),
        ("<answer>(1, 2)</answer>", "(1,2)", True),
        ("no answer at all", "5", False),
        ("<answer></answer>", "5", False),
    ],
)
def test_verify_literal(completion, gold, expected):
    assert verify_answer(completion, gold) is expected


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>18 or 19</answer>",
        "<answer>18, 19</answer>",
        "<answer>\\{18, 19\\}</answer>",
        "<answer>18 19</answer>",
        "<answer>18 或 19</answer>",
        "<answer>\\pm 19</answer>",
        "<answer>18</answer> <answer>19</answer>",  # repeated, disagreeing answer tags
        "<think> it is <answer>19</answer> </think>",  # answer only inside the reasoning
        "<think> so \\boxed{19} </think> I am done",
    ],
)
def test_hacks_earn_nothing(completion):
    assert verify_answer(completion, "19") is False


def test_repeated_agreeing_tags_still_verify():
    assert verify_answer("<answer>19</answer> <answer>19</answer>", "19") is True


@pytest.mark.parametrize("gold", ["", "\\frac{", "{{", "#"])
def test_unparseable_gold_is_none(gold):
    assert verify_answer(f"<answer>{gold}</answer>", gold) is None
    assert verify_answer("<answer>5</answer>", gold) is None


def test_hedge_rules():
    assert is_hedged("18 or 19", "19")
    assert not is_hedged("19", "19")
    assert not is_hedged("1,000,000", "1000000")
    assert not is_hedged("\\pm 3", "\\pm 3")


@pytest.mark.parametrize(
    "answer",
    [
        "10^{10^{10^{10}}}",
        "9" * 5000,
        "2^{99999999}",
        "99999!",
        "{" * 200,
        "}" * 200 + "\\frac{",
        "\\frac{1}{" * 100,
        "(" * 500 + "1",
        "x" * 100_000,
    ],
)
def test_adversarial_answers_are_fast(answer):
    for gold in ("19", answer):
        t = time.process_time()  # CPU time: other jobs on a shared machine cannot stretch it
        result = verify_answer(f"<think> hm </think> <answer>{answer}</answer>", gold)
        assert time.process_time() - t < 1.0
        assert result in (True, False, None)
    assert verify_answer(f"<answer>{answer}</answer>", "19") is False


def test_huge_number_equal_to_itself():
    n = "7" * 5000
    assert verify_answer(f"<answer>{n}</answer>", n) is True
    assert verify_answer(f"<answer>{n}8</answer>", n) is False


def test_extract_answer():
    assert extract_answer("<answer> a </answer> <answer> b </answer>") == "b"
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{12") is None
    assert extract_answer("<think> \\boxed{3}") is None  # unclosed reasoning hides everything after it


@pytest.mark.parametrize(
    "completion, ok",
    [
        ("<think> 2 + 2 = 4 </think> <answer>4</answer>", True),
        ("<think>a</think><answer>4</answer>\n", True),
        ("<answer>4</answer>", False),
        ("<think> a </think> <answer>4</answer> trailing", False),
        ("<think> </think> <answer>4</answer>", False),
        ("<think> a </think> <think> b </think> <answer>4</answer>", False),
        ("<think> a <answer>4</answer>", False),
        ("prefix <think> a </think> <answer>4</answer>", False),
    ],
)
def test_format(completion, ok):
    assert format_ok(completion) is ok


def test_every_gsm8k_gold_verifies_against_itself(shared_data):
    from rlsft.scoring.tasks import load_gsm8k

    rows = load_gsm8k("test", source=str(shared_data / "gsm8k" / "test.jsonl"))
    assert len(rows) == 1319
    bad = [r["answer"] for r in rows if verify_answer(f"<answer>{r['answer']}</answer>", r["answer"]) is not True]
    assert bad == []


def test_every_math500_gold_verifies_against_itself(shared_data):
    from rlsft.scoring.tasks import load_math500

    rows = load_math500("test", source=str(shared_data / "math500" / "test.jsonl"))
    assert len(rows) == 500
    bad = [r["answer"] for r in rows if verify_answer(f"<answer>{r['answer']}</answer>", r["answer"]) is not True]
    assert bad == []
