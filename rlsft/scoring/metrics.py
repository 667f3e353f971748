"""Evaluation metrics and their confidence intervals. Pure functions over plain numbers.

Samples are grouped per problem: `correct[i][j]` is sample j of problem i (True/False/None,
None when the gold is unverifiable; such problems are dropped from accuracy metrics).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from typing import Callable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, "Evaluating Large
    Language Models Trained on Code"): 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(8, 0, 1), pass_at_k(8, 8, 1), pass_at_k(8, 2, 1)
    (0.0, 1.0, 0.25)
    >>> round(pass_at_k(8, 2, 4), 4)
    0.7857
    """
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    # product form avoids huge binomials: prod_{i=n-c+1}^{n} (1 - k/i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(groups: Sequence[object], correct: Sequence[bool | None]) -> tuple[float, bool]:
    """maj@k for one problem: (the chance that the most voted answer is correct, was the top vote
    tied?). Without a tie the chance is 1 or 0; a tie is broken at random, so it is the share of
    the tied groups whose answer is correct: the order the samples were drawn or finished in (on a
    GPU, shorter completions finish first) decides nothing.

    `groups[i]` is sample i's answer group: samples whose answers are equivalent share a group
    (`rlsft.scoring.evaluate.answer_groups`: `0.5`, `1/2` and `\\frac{1}{2}` vote together);
    None means no answer, which does not vote.

    >>> majority_vote([0, 1, 0], [True, False, True])
    (1.0, False)
    >>> majority_vote([0, 1, None], [False, True, False])
    (0.5, True)
    >>> majority_vote([None, None], [False, False])
    (0.0, False)
    """
    votes = Counter(g for g in groups if g is not None)
    if not votes:
        return 0.0, False
    top = max(votes.values())
    winners = [g for g, v in votes.items() if v == top]
    # a group scores its members' mean verdict: they can differ (the last of two <answer> blocks
    # agreeing with another sample's), and no member's place in the draw decides the group's
    right = {g: statistics.fmean(bool(c) for h, c in zip(groups, correct) if h == g) for g in winners}
    return sum(right.values()) / len(winners), len(winners) > 1


def percentile_interval(draw: Callable[[random.Random], float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """The lab's one bootstrap: the (alpha/2, 1 - alpha/2) percentiles of `n_boot` statistics, each
    `draw(rng)` computed on a resample that `draw` makes with the shared, seeded `rng`.

    >>> percentile_interval(lambda rng: rng.random(), n_boot=1000)[1] > 0.9
    True
    """
    rng = random.Random(seed)
    stats = sorted(draw(rng) for _ in range(n_boot))
    return stats[int(alpha / 2 * n_boot)], stats[min(n_boot - 1, int((1 - alpha / 2) * n_boot))]


def bootstrap_ci(
    values: Sequence[float], stat: Callable[[Sequence[float]], float] | None = None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` (the mean by default) over `values`, resampling
    units (problems), so per-problem averages over K samples keep their correlation.

    >>> bootstrap_ci([1.0] * 10)
    (1.0, 1.0)
    >>> lo, hi = bootstrap_ci([0.0, 1.0] * 50); lo < 0.5 < hi
    True
    """
    if not values:
        return (float("nan"), float("nan"))
    stat = stat or (lambda v: sum(v) / len(v))
    n = len(values)
    return percentile_interval(lambda rng: stat([values[rng.randrange(n)] for _ in range(n)]), n_boot, seed, alpha)


def mean(values: Sequence[float]) -> float:
    """Mean, NaN when empty.

    >>> mean([1, 2, 3]), math.isnan(mean([]))
    (2.0, True)
    """
    return sum(values) / len(values) if values else float("nan")


def verdicts(samples: Sequence[dict], key: str = "correct") -> list[bool] | None:
    """One problem's verdicts under `key` (`correct`: strict extraction, `correct_lenient`:
    lenient), or None when a sample has none: the checker could not verify it (it ran past its
    time limit, see rlsft.scoring.pool) or its gold is unverifiable. Such a problem is left out of
    that extraction's accuracy and pass@k, here and in reports (`rlsft.verdicts.report.per_problem`),
    so one slow check cannot leave a problem with fewer than k samples.

    >>> verdicts([{"correct": True}, {"correct": False}])
    [True, False]
    >>> verdicts([{"correct": True, "correct_lenient": None}], "correct_lenient") is None, verdicts([]) is None
    (True, True)
    """
    values = [s.get(key) for s in samples]
    return None if not values or any(v is None for v in values) else [bool(v) for v in values]


def summarise(per_problem: list[list[dict]], ks: Sequence[int] = (1,), seed: int = 0) -> dict:
    """Aggregate scored samples into metrics, each `{"value", "ci_low", "ci_high", "n"}`.

    `per_problem[i]` lists sample dicts with `correct` (strict extraction; `correct_lenient`, when
    present, gives `pass@k_lenient` too), `format_ok`, `mixed`,
    `language_consistency`, `length` (tokens), `truncated` and `extracted` (answer or None).
    Accuracy metrics (pass@k, maj@k) use the problems every sample of which has a verdict under
    that extraction (`verdicts`); CIs are bootstraps over problems.

    >>> s = summarise([[{"correct": True, "format_ok": True, "mixed": False, "language_consistency": 1.0,
    ...                  "length": 10, "truncated": False, "extracted": "4"}]])
    >>> s["pass@1"]["value"], s["format_rate"]["value"], s["mixing_rate"]["value"]
    (1.0, 1.0, 0.0)
    """
    verifiable = [p for p in per_problem if verdicts(p) is not None]
    strict = [verdicts(p) for p in verifiable]
    # lenient verdicts when the samples carry them (verify.EXTRACTIONS)
    lenient = [v for p in per_problem if (v := verdicts(p, "correct_lenient")) is not None] \
        if all("correct_lenient" in s for p in verifiable for s in p) else []
    out: dict = {"n_problems": len(per_problem), "n_unverifiable": len(per_problem) - len(verifiable)}

    def metric(per_unit: list[float], index: int) -> dict:
        lo, hi = bootstrap_ci(per_unit, seed=seed + index)
        return {"value": mean(per_unit), "ci_low": lo, "ci_high": hi, "n": len(per_unit)}

    k_samples = min((len(p) for p in verifiable), default=0)
    for idx, k in enumerate(sorted(set(ks))):
        if 1 <= k <= k_samples:
            out[f"pass@{k}"] = metric([pass_at_k(len(v), sum(v), k) for v in strict], idx)
            if lenient and k <= min(len(v) for v in lenient):
                out[f"pass@{k}_lenient"] = metric([pass_at_k(len(v), sum(v), k) for v in lenient], 20 + idx)
    if k_samples >= 1:  # over each problem's first k_samples samples, so the label is what was computed
        votes = [majority_vote([s.get("answer_group", s["extracted"]) for s in p[:k_samples]], [s["correct"] for s in p[:k_samples]])
                 for p in verifiable]
        out[f"maj@{k_samples}"] = metric([score for score, _ in votes], 50)
        out["maj_ties"] = sum(tied for _, tied in votes)  # problems whose top vote was tied (scored as a random tie-break)

    def per_problem_mean(key: str, skip_none: bool = False) -> list[float]:
        vals = []
        for p in per_problem:
            xs = [float(s[key]) for s in p if not (skip_none and s[key] is None)]
            if xs:
                vals.append(mean(xs))
        return vals

    out["format_rate"] = metric(per_problem_mean("format_ok"), 60)
    out["mixing_rate"] = metric(per_problem_mean("mixed"), 61)
    out["mean_consistency"] = metric(per_problem_mean("language_consistency", skip_none=True), 62)
    out["mean_length"] = metric(per_problem_mean("length"), 63)
    out["truncation_rate"] = metric(per_problem_mean("truncated"), 64)
    return out
