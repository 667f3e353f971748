"""Minimum detectable effects of a study's paired claims, from a pilot run's spread (`rlsft power`).

A pilot seed evaluated before training and at a checkpoint gives, per held-out problem, the change
d_i of each rate (pass@1, format, mixing: means of m 0/1 samples). A study seed's estimate is the
mean of such changes over its n problems (each seed draws its own problems), so its variance is
about Var(d_i) / n. Var(d_i) has two parts: what the samples add (binomial, p(1-p)/m on each side,
estimated without bias from the pilot's own samples) and the rest, tau^2, how differently problems
respond, which does not shrink with more samples. The study's design (n problems, m samples, S
seeds) then gives a seed's variance (tau^2 + sampling at m) / n, floored as the claims' test floors
it (`claims.discordant_floor`), and the one-sided t test over seeds at level alpha
(rlsft.verdicts.claims) detects, with power 1 - beta, effects of at least
(t_{1-alpha, S-1} + t_{1-beta, S-1}) * sqrt(variance / S).

One pilot seed cannot show how seeds differ in training itself (the same problems, another
seed's updates): that share is not in the estimate, so the MDE it gives is a floor.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rlsft.verdicts.claims import ALPHA, discordant_floor

RATES = ("accuracy", "accuracy_lenient", "format", "mixing")  # per-problem means of 0/1 samples


@dataclass(frozen=True)
class Spread:
    """A pilot's per-problem changes of one rate, split as the module docstring says."""

    change: float  # mean change over problems (after - before)
    tau2: float  # variance of the change across problems, net of sampling (>= 0)
    sampling: float  # mean over problems of p(1-p) before plus after (divide by m for a problem's sampling variance)
    problems: int


def spread(before: dict[str, float], after: dict[str, float], m_before: int, m_after: int) -> Spread:
    """The spread of the change of a rate between two evaluations of the same problems, m samples each.

    >>> s = spread({"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.25}, {"a": 0.5, "b": 0.5, "c": 1.0, "d": 0.75}, 4, 4)
    >>> round(s.change, 4), round(s.tau2, 4), round(s.sampling, 4), s.problems
    (0.25, 0.0, 0.375, 4)
    """
    ids = sorted(set(before) & set(after))
    if len(ids) < 2:
        raise ValueError("the spread needs at least two problems evaluated both times")
    diffs = [after[i] - before[i] for i in ids]

    def pq(p: float, m: int) -> float:  # unbiased p(1-p) from m samples' mean
        return p * (1 - p) * m / (m - 1) if m > 1 else 0.0

    sampling_pilot = statistics.fmean(pq(before[i], m_before) / m_before + pq(after[i], m_after) / m_after for i in ids)
    return Spread(change=statistics.fmean(diffs), tau2=max(0.0, statistics.variance(diffs) - sampling_pilot),
                  sampling=statistics.fmean(pq(before[i], m_before) + pq(after[i], m_after) for i in ids), problems=len(ids))


def minimum_detectable_effect(s: Spread, seeds: int, problems: int, samples: int, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The least true change the claims' one-sided t test over `seeds` detects with probability
    `power`, for a design of `problems` x `samples` per seed (module docstring).

    >>> s = Spread(change=0.1, tau2=0.0, sampling=0.47, problems=64)
    >>> round(minimum_detectable_effect(s, 4, 64, 4), 4), round(minimum_detectable_effect(s, 4, 128, 4), 4)
    (0.0714, 0.0505)
    """
    from scipy.stats import t

    per_seed = max((s.tau2 + s.sampling / samples) / problems, discordant_floor(problems, 1.0 / samples))
    q = float(t.ppf(1 - alpha, seeds - 1)) + float(t.ppf(power, seeds - 1))
    return q * (per_seed / seeds) ** 0.5


def power_table(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], designs: list[tuple[int, int, int]],
                alpha: float = ALPHA, power: float = 0.8) -> list[dict]:
    """Per rate: the pilot's change and spread, and the MDE of each (seeds, problems, samples) design.
    `before` and `after` are `report.per_problem` of the two evaluations."""
    rows = []
    for rate in (r for r in RATES if r in before and r in after):
        m0, m1 = int(min(before["samples"].values())), int(min(after["samples"].values()))
        s = spread(before[rate], after[rate], m0, m1)
        rows.append({"metric": rate, "before": statistics.fmean(before[rate].values()), "after": statistics.fmean(after[rate].values()),
                     "change": s.change, "tau": s.tau2 ** 0.5, "problems": s.problems,
                     "mde": {f"{S} seeds x {n} x {m}": minimum_detectable_effect(s, S, n, m, alpha, power) for S, n, m in designs}})
    return rows


def render(rows: list[dict], where: str) -> str:
    """The power table as markdown."""
    designs = list(rows[0]["mde"]) if rows else []
    lines = [f"Pilot: {where}. Minimum detectable effect (one-sided t test over seeds at 5%, 80% power; a floor: one pilot seed "
             "cannot show training's own seed-to-seed spread).", "",
             "| metric | before | at pilot checkpoint | change | tau (between problems) | " + " | ".join(f"MDE {d}" for d in designs) + " |",
             "|---|---|---|---|---|" + "---|" * len(designs)]
    for r in rows:
        lines.append(f"| {r['metric']} | {r['before']:.3f} | {r['after']:.3f} | {r['change']:+.3f} | {r['tau']:.3f} | "
                     + " | ".join(f"{r['mde'][d]:.3f}" for d in designs) + " |")
    return "\n".join(lines) + "\n"
