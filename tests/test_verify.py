"""Verifier: extraction, hedges, unparseable golds, format, and the 1 s bound on nasty input."""


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


ADVERSARIAL = [
    "10^{10^{10^{10}}}",
    "9" * 5000,
    "2^{99999999}",
    "99999!",
    "{" * 200,
    "}" * 200 + "\\frac{",
    "\\frac{1}{" * 100,
    "(" * 500 + "1",
    "x" * 100_000,
]


@pytest.mark.parametrize("answer", ADVERSARIAL)
def test_adversarial_answers_are_bounded(answer):
    """Through the worker pool (what the lab calls): an answer, or None when a check ran out of time."""
    from rlsft.scoring.tasks import get_task

    gsm8k = get_task("gsm8k")
    results = gsm8k.verify_many([f"<think> hm </think> <answer>{answer}</answer>"] * 2, ["19", answer])
    assert set(results) <= {True, False, None}
    assert gsm8k.verify_many([f"<answer>{answer}</answer>"], ["19"]) in ([False], [None])


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


@pytest.mark.full_data
def test_every_gsm8k_gold_verifies_against_itself(full_data):
    from rlsft.scoring.tasks import TASKS, load_gsm8k

    rows = load_gsm8k("test", source=str(full_data / "gsm8k" / "test.jsonl"))
    assert len(rows) == 1319
    checks = TASKS["gsm8k"].verify_many([f"<answer>{r['answer']}</answer>" for r in rows], [r["answer"] for r in rows])
    assert [r["answer"] for r, ok in zip(rows, checks) if ok is not True] == []


@pytest.mark.full_data
def test_every_math500_gold_verifies_against_itself(full_data):
    from rlsft.scoring.tasks import TASKS, load_math500

    rows = load_math500("test", source=str(full_data / "math500" / "test.jsonl"))
    assert len(rows) == 500
    checks = TASKS["math500"].verify_many([f"<answer>{r['answer']}</answer>" for r in rows], [r["answer"] for r in rows])
    assert [r["answer"] for r, ok in zip(rows, checks) if ok is not True] == []


@pytest.mark.parametrize("answer, gold, expected", [
    ("2*8 = 17", "17", False),  # a false statement earns nothing, whatever the gold
    ("2*8 = 16", "16", True),
    ("x = 17", "17", True),  # a variable's value still counts
    ("\\frac{1}{2} = 0.5", "0.5", True),
    ("3 + 4 = 7 = 8", "8", False),
])
def test_equations_as_answers(answer, gold, expected):
    assert verify_answer(f"<answer>{answer}</answer>", gold) is expected


@pytest.mark.parametrize("answer, expected", [
    ("2*8 = 17", False),  # a false equation: the right side is the target, the statement is not
    ("2*8 = 16", True), ("(3 - 2) * 8 * 2 = 16", False), ("8 * 2 = 16", True), ("2 * 8", True),
    ("16 = 2 * 8", False),  # the expression comes first: "16" alone does not use the numbers as the rules say
    ("2 * 8 = 4 * 4", True), ("2 * 8 = 4 * 5", False),
])
def test_countdown_equations(answer, expected):
    from rlsft.scoring.tasks import get_task

    assert get_task("micro-countdown").verify(f"<answer>{answer}</answer>", "target: 16; numbers: 2 8 3") is expected


@pytest.mark.parametrize("answer, gold", [
    (r"11,\! 111,\! 111,\! 100", "11111111100"),  # MATH's thin-space thousands separators
    ("11111111100", r"11,\! 111,\! 111,\! 100"),
    ("x^2/16+y^2/12=1/4", r"\frac{x^2}{4}+\frac{y^2}{3}=1"),  # an equation, scaled: two powers, not a tower
    (r"\frac{x^2}{4}+\frac{y^2}{3}=1", "x^2/16+y^2/12=1/4"),
])
def test_answers_math_verify_accepts_are_accepted(answer, gold):
    from math_verify import parse, verify

    assert verify(parse(f"${gold}$"), parse(f"${answer}$"))  # math-verify's own word, the authority
    assert verify_answer(f"<think> ... </think> <answer>{answer}</answer>", gold) is True
    assert verify_answer("<answer>x^2/16+y^2/12=1/3</answer>", r"\frac{x^2}{4}+\frac{y^2}{3}=1") is False  # a different ellipse


@pytest.mark.parametrize("answer, gold", [
    (r"11,\! 111,\! 111,\! 100", "11111111100"),
    ("x^2/16+y^2/12=1/4", r"\frac{x^2}{4}+\frac{y^2}{3}=1"),
    (r"\frac{x^2}{4}+\frac{y^2}{3}=1", "x^2/16+y^2/12=1/4"),
])
@pytest.mark.parametrize("wrap", ["\\boxed{{{}}}", "$\\boxed{{{}}}$", "<answer>${}$</answer>", "The answer is ${}$."])
def test_accepted_pairs_in_every_answer_form(answer, gold, wrap):
    """The same pairs where a model writes them: boxed in prose, in `$`, or after "the answer is"
    (lenient), through the worker pool and the reward that trains on them."""
    from rlsft.scoring.rewards import accuracy_reward
    from rlsft.scoring.tasks import get_task

    completion = "<think> ... </think> " + wrap.format(answer)
    assert get_task("math500").verify_many([completion], [gold], "lenient") == [True]
    assert accuracy_reward([completion], answer=[gold], task=["math500"], extraction="lenient") == [1.0]


@pytest.mark.parametrize("tower", [r"9^{\frac{9^{9}}{1}}", r"10^{\frac{10^{10}}{2}}", r"10^{10}^{10}"])
def test_tower_in_a_nested_brace_is_refused_not_timed_out(tower):
    """A power inside a nested brace of an exponent is a tower too: it is compared as a string
    (False), never handed to sympy, which runs until the pool kills it (None, and a second lost)."""
    from rlsft.scoring import pool
    from rlsft.scoring.tasks import get_task
    from rlsft.scoring.verify import has_power_tower

    assert has_power_tower(tower)
    before = pool.TIMEOUTS["count"]
    assert get_task("math500").verify_many([f"<answer>{tower}</answer>", "<answer>5</answer>"], ["5", tower]) == [False, False]
    assert pool.TIMEOUTS["count"] == before


@pytest.mark.parametrize("completion, gold, mode, expected", [
    ("<answer>18 dollars</answer>", "18", "strict", True),  # one quantity with its unit
    ("<answer>$18 per day.</answer>", "18", "strict", True),
    ("<answer>Janet makes $18 every day.</answer>", "18", "strict", False),  # words before the number: not read as one quantity
    ("<answer>18 \\text{ marbles}.</answer>", "18", "strict", True),
    ("<answer>**18**</answer>", "18", "strict", True),  # markdown
    ("<answer>$18.</answer>", "18", "strict", True),  # a closing period
    ("<answer>x=18.</answer>", "18", "strict", True),
    ("<answer>10\\,080</answer>", "10080", "strict", True),  # a thin space between digit groups
    ("<answer>5\\,\\text{cm}</answer>", "5", "strict", True),  # LaTeX spacing is no hedge
    ("<answer>\\{1, 2\\}</answer>", "1,2", "strict", True),  # a set where the gold lists values
    ("The answer is: 18", "18", "lenient", True),
    ("The answer is **18**.", "18", "lenient", True),
    ("<answer>3 apples and 4 pears</answer>", "4", "strict", False),  # two quantities stay two
    ("<answer>18 dollars or 19 dollars</answer>", "19", "strict", False),  # still a hedge
    ("<answer>1.8 dollars</answer>", "18", "strict", False),
    ("so it is \\boxed{6} </think> <answer>7</answer>", "6", "strict", False),  # the prompt opened <think>: reasoning earns nothing
    ("so it is 6 </think> <answer>6</answer>", "6", "strict", True),
    ("<answer>5</answer> </think>", "5", "strict", True),  # a stray </think> after the answer cuts nothing
    # words that change the quantity are no unit: a policy cannot hedge or negate around the gold
    ("<answer>not 18</answer>", "18", "strict", False),
    ("<answer>half of 18</answer>", "18", "strict", False),
    ("<answer>at least 18</answer>", "18", "strict", False),
    ("<answer>18 squared</answer>", "18", "strict", False),
    ("<answer>18 (possibly twenty)</answer>", "18", "strict", False),
    ("<answer>eighteen minus 3</answer>", "3", "strict", False),
    ("<answer>2**3**2</answer>", "232", "strict", False),  # arithmetic, not markdown
    ("The answer is not 18.", "18", "lenient", False),  # lenient reads the phrase's words the same way
    ("The answer is at least 18.", "18", "lenient", False),
    ("The answer is therefore 18.", "18", "lenient", True),
    # found by an adversarial review: words after the number that are no unit
    *[(f"<answer>{a}</answer>", g, "strict", False) for a, g in (
        ("18 wrong", "18"), ("18 is wrong", "18"), ("18ish", "18"), ("18 approx", "18"), ("18 max", "18"), ("18k", "18"),
        ("18 k dollars", "18"), ("18 pairs", "18"), ("18 tenths", "18"), ("5x", "5"), ("5 pi", "5"), ("18 I guess", "18"),
        ("18 \\text{ at most}", "18"), ("18 \\text{ not}", "18"), ("18 == 19", "19"))],
    *[(f"<answer>{a}</answer>", g, "strict", True) for a, g in (
        ("18\\$", "18"), ("-3 degrees", "-3"), ("0.5 liters", "0.5"), ("18 USD", "18"), ("$18", "18"), ("18%", "18"))],
    *[(f"The answer is {a}", "18", "lenient", True) for a in (
        "18 (eighteen).", "18, and she is happy.", "18 since 9 times 2 is 18.", "18 dollars per hour for three hours.",
        "18 apples.", "equal to 18.")],
    *[(f"The answer is {a}", "18", "lenient", False) for a in ("18 apples, or 19 apples.", "12 apples and 18 pears.", "not 18.")],
    ("The answer isnt 18.", "18", "lenient", True),  # no phrase: the last-number rule (lenient's own, SimpleRL-Zoo's)
    ("<answer>18</answer> </think> I won't use \\boxed", "18", "strict", True),  # a bare \boxed mention cuts nothing
])
def test_answers_written_as_people_write_them(completion, gold, mode, expected):
    """Found by a review: correct answers with a unit, markdown, a closing period or LaTeX spacing
    were scored wrong, and reasoning opened by the prompt's `<think>` was read as the answer."""
    assert verify_answer(completion, gold, mode) is expected
