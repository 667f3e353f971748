"""A sweep's choice of setting, by a rule written before its runs, that cannot pick a no-op.

A sweep trains one arm per candidate setting (a learning rate, a loss) on the validation split and
evaluates each at its checkpoints; each (arm, step) is a candidate, named `arm@step`. The rule
(`SweepRule`, the study YAML's `choose:` section):

1. Each candidate is compared with the base model on the same problems, paired per problem and per
   seed. It *separates* from the base when the low end of its 90% interval lies above 0: the claims'
   one-sided test at 5% (`claims.claim_interval` over seeds; over problems for a one-seed sweep).
2. When no candidate separates, the sweep says so and the study's preregistered `fallback` applies
   (the dose the anchors use, say, or the largest affordable). A tie among candidates that are all
   within noise of the base is never resolved by taking the smallest dose: each of them is
   indistinguishable from doing nothing, and the smallest is the likeliest no-op.
3. Otherwise the best estimate among the candidates that separate wins; those within `margin` of
   it tie, and the tie goes to the first of them in `prefer` (the cheaper or gentler setting).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from rlsft.verdicts.claims import ALPHA, claim_interval, discordant_floor, paired_seed_differences


@dataclass
class SweepRule:
    metric: str = "accuracy"  # held-out metric the candidates are compared on (accuracy_lenient: lenient extraction)
    margin: float = 0.02  # candidates that separate and score within this of the best tie
    prefer: list[str] = field(default_factory=list)  # "arm@step" in the order a tie is resolved; unlisted ones come last
    fallback: str | None = None  # "arm@step" the study takes when no candidate separates from the base


@dataclass
class Choice:
    chosen: str | None  # "arm@step", or None: nothing separates and no fallback was written
    separated: bool  # whether the chosen candidate separated from the base (False: the fallback)
    line: str  # one line that says what was chosen and why
    rows: list[dict] = field(default_factory=list)  # per candidate: estimate, low, high, separates


def difference_interval(diffs: dict[int, list[float]], unit: float = 1.0) -> dict:
    """Estimate and 90% interval of the mean paired difference: over seeds with 2 or more (as the
    claims), over problems with one, its standard error floored at one discordant sample pair.

    >>> r = difference_interval({0: [0.25, 0.0, 0.5, 0.25] * 16}, unit=0.25)
    >>> round(r["estimate"], 3), r["low"] > 0
    (0.25, True)
    >>> difference_interval({0: [0.0] * 64}, unit=0.25)["low"] < 0  # no zero width
    True
    """
    from scipy.stats import t

    if len(diffs) > 1:
        floors = [discordant_floor(len(d), unit) for d in diffs.values()]
        r = claim_interval([statistics.fmean(d) for d in diffs.values()], floors, "greater", 0.0)
        return {"estimate": r["estimate"], "low": r["low"], "high": r["high"]}
    (d,) = diffs.values()
    est, n = statistics.fmean(d), len(d)
    se = max(statistics.variance(d) / n if n > 1 else 0.0, discordant_floor(n, unit)) ** 0.5
    half = float(t.ppf(1 - ALPHA, max(n - 1, 1))) * se
    return {"estimate": est, "low": est - half, "high": est + half}


def interval_text(r: dict) -> str:
    """A candidate's estimate and interval, or why it has none.

    >>> interval_text({"estimate": 0.1, "low": -0.02, "high": 0.22}), interval_text({"estimate": None})
    ('+0.100 [-0.020, +0.220]', 'missing (no seed shared with the base)')
    """
    if r["estimate"] is None:
        return "missing (no seed shared with the base)"
    return f"{r['estimate']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"


def choose(rule: SweepRule, candidates: dict[str, dict[int, dict[str, float]]], base: dict[int, dict[str, float]],
           unit: float = 1.0) -> Choice:
    """The candidate the rule picks. `candidates["arm@step"]` and `base` are {seed: {problem_id:
    value}} on the same problems; `unit` is one sample's step of the metric (`claims.metric_unit`).

    >>> base = {0: {f"q{i}": 0.0 for i in range(64)}}
    >>> tie = {name: {0: {f"q{i}": 0.25 * (i == 0) for i in range(64)}} for name in ("lr1e-6@20", "lr1e-5@40")}
    >>> choose(SweepRule(prefer=["lr1e-6@20"], fallback="lr1e-5@40"), tie, base, 0.25).chosen  # all within noise: the fallback
    'lr1e-5@40'
    """
    rows = []
    for name, scores in candidates.items():
        diffs = paired_seed_differences(scores, base)
        if not diffs:  # no seed and problems shared with the base: missing, so it cannot separate
            rows.append({"candidate": name, "estimate": None, "low": None, "high": None, "separates": False})
            continue
        r = difference_interval(diffs, unit)
        rows.append({"candidate": name, **r, "separates": r["low"] > 0})
    ahead = [r for r in rows if r["separates"]]
    if not ahead:
        shown = ", ".join(f"{r['candidate']} {interval_text(r)}" for r in rows)
        why = f"no candidate separates from the base beyond its 90% interval on {rule.metric} ({shown})"
        if rule.fallback is None:
            return Choice(None, False, f"{why}; the study wrote no fallback, so the sweep chooses nothing", rows)
        return Choice(rule.fallback, False, f"{why}: the preregistered fallback {rule.fallback} applies", rows)
    estimate = {r["candidate"]: r["estimate"] for r in ahead}
    tied = [name for name, est in estimate.items() if est >= max(estimate.values()) - rule.margin]
    order = {name: i for i, name in enumerate(rule.prefer)}
    chosen = min(tied, key=lambda name: (order.get(name, len(order)), -estimate[name]))  # unlisted ones last, best first
    how = f"ties within {rule.margin} of the best ({', '.join(tied)}) go to the first in `prefer`" if len(tied) > 1 else "the best"
    return Choice(chosen, True, f"{chosen} separates from the base on {rule.metric} ({len(ahead)} of {len(rows)} candidates do); {how}", rows)
