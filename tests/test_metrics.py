"""pass@k, maj@k and intervals against hand-computed values."""

import math
from itertools import combinations

import pytest

from rlsft.scoring.metrics import bootstrap_ci, majority_vote, pass_at_k, summarise


@pytest.mark.parametrize("n, c, k", [(8, 3, 1), (8, 3, 2), (8, 3, 5), (5, 1, 3), (10, 0, 4), (6, 6, 2)])
def test_pass_at_k_matches_enumeration(n, c, k):
    # brute force: the share of k-subsets of the n samples that contain a correct one
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    expected = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_majority_vote():
    assert majority_vote(["3", "4", "4"], [True, False, False]) == (0.0, False)
    assert majority_vote(["3", None, None], [True, False, False]) == (1.0, False)
    assert majority_vote(["3", "4"], [False, True]) == majority_vote(["4", "3"], [True, False]) == (0.5, True)  # a tie: either order


def test_maj_votes_by_equivalence_and_counts_ties():
    from rlsft.scoring.evaluate import answer_groups

    # 0.5, 1/2 and \frac{1}{2} are one answer: three votes against two for 3
    answers = ["3", "0.5", "1/2", "3", "\\frac{1}{2}"]
    assert answer_groups([answers]) == [[0, 1, 1, 0, 1]]
    correct = [False, True, True, False, True]

    def sample(a, c, g):
        return {"correct": c, "format_ok": True, "mixed": False, "language_consistency": 1.0, "length": 5, "truncated": False,
                "extracted": a, "answer_group": g}

    groups = answer_groups([answers, ["3", "4"]])
    problems = [[sample(a, c, g) for a, c, g in zip(answers, correct, groups[0])],
                [sample(a, c, g) for a, c, g in zip(["3", "4"], [False, True], groups[1])]]
    m = summarise(problems, ks=(1,))
    # uneven sample counts: maj@2 is over each problem's first 2 samples, and says so; both are ties of a right and a wrong answer
    assert "maj@2" in m and m["maj@2"]["value"] == 0.5 and m["maj_ties"] == 2
    by_string = summarise([[dict(s, answer_group=s["extracted"]) for s in problems[0]]])
    full = summarise([problems[0]])
    assert full["maj@5"]["value"] == 1.0 and by_string["maj@5"]["value"] == 0.0  # strings alone would vote for 3


def test_bootstrap():
    lo, hi = bootstrap_ci([0.0] * 50 + [1.0] * 50, seed=1)
    assert 0.38 < lo < 0.46 and 0.54 < hi < 0.62


def test_summarise():
    def s(correct, mixed=False):
        return {"correct": correct, "format_ok": True, "mixed": mixed, "language_consistency": 1.0, "length": 10, "truncated": False, "extracted": "1" if correct else "2"}

    per_problem = [[s(True), s(False)], [s(False), s(False, mixed=True)], [s(None), s(None)]]
    m = summarise(per_problem, ks=(1, 2))
    assert m["n_unverifiable"] == 1
    assert m["pass@1"]["value"] == pytest.approx(0.25)
    assert m["pass@2"]["value"] == pytest.approx(0.5)
    assert m["mixing_rate"]["value"] == pytest.approx(1 / 6)  # problem means 0, .5, 0
    assert m["pass@1"]["ci_low"] <= 0.25 <= m["pass@1"]["ci_high"]
    assert not math.isnan(m["mean_length"]["value"])


def test_majority_vote_does_not_depend_on_the_samples_order():
    """Samples are stored in finishing order; maj@k must not change with it. An unevaluated
    expression grouped with the number it equals in one order only (the grouping read one side as
    the gold), and a group scored by its first member, made maj@4 0.5 in one order and 0.0 in the
    other. Now they are one vote in every order, scored by its members' mean verdict, tied with 7."""
    from rlsft.scoring.evaluate import answer_groups

    answers = ["5", "(2*4)-3", "7", "7"]
    correct = [True, False, False, False]  # gold 5: the expression is no final answer
    results = set()
    for order in ([0, 1, 2, 3], [1, 0, 2, 3], [2, 3, 1, 0]):
        (groups,) = answer_groups([[answers[i] for i in order]])
        results.add(majority_vote(groups, [correct[i] for i in order]))
    assert results == {(0.25, True)}  # {5, (2*4)-3} (half right) ties {7, 7} (wrong): (0.5 + 0) / 2
    # a group whose members' verdicts differ scores their mean, wherever each stands
    assert majority_vote([0, 0], [False, True]) == majority_vote([0, 0], [True, False]) == (0.5, False)
