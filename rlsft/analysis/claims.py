"""The documents' claims as predicates over run results, with the statistics they need.

A claim compares two arms (a recipe's runs against another's, or against the base model) on
one metric. Per seed, both arms are evaluated on the same held-out problems, so the difference
is paired by problem. The estimate is the mean over seeds of the mean paired difference; its
95% interval comes from a hierarchical bootstrap (seeds resampled, then problems within each
seed). The verdict compares the interval with the claim's threshold in the claim's direction:

- `reproduced`: the whole interval lies beyond the threshold in the claimed direction;
- `not reproduced`: the whole interval lies on the other side of the threshold;
- `inconclusive`: the interval straddles it.

Per-compute claims (C5, C6) compare gains over the base per PFLOP, from the runs' FLOP counts.

Arms are read from per-problem scores: {seed: {problem_id: value}}, value the mean over the K
samples of `correct` (accuracy) or `mixed` (mixing rate).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rlsft.scoring.metrics import percentile_interval

VERDICTS = ("reproduced", "not reproduced", "inconclusive")


@dataclass
class Claim:
    id: str
    text: str
    metric: str  # accuracy or mixing
    arm: str  # recipe whose runs are tested ("base" = the starting model, from eval_before)
    against: str  # recipe (or base) it is compared with
    direction: str  # greater or less: arm - against is claimed greater (or less) than threshold
    threshold: float = 0.0
    per_pflop: bool = False  # compare (arm - base) / PFLOP of arm against (against - base) / PFLOP of against
    task: str = "micro-arith"
    notes: str = ""


@dataclass
class Verdict:
    claim: str
    verdict: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int
    n_problems: int
    detail: dict = field(default_factory=dict)


def paired_seed_differences(arm: dict[int, dict[str, float]], against: dict[int, dict[str, float]]) -> dict[int, list[float]]:
    """Per seed present in both arms, the per-problem differences arm - against over shared problems.

    >>> paired_seed_differences({0: {"a": 1.0, "b": 0.5}}, {0: {"a": 0.5, "b": 0.5, "c": 1.0}})
    {0: [0.5, 0.0]}
    """
    out = {}
    for seed in sorted(set(arm) & set(against)):
        ids = sorted(set(arm[seed]) & set(against[seed]))
        if ids:
            out[seed] = [arm[seed][i] - against[seed][i] for i in ids]
    return out


def hierarchical_bootstrap(diffs: dict[int, list[float]], n_boot: int = 2000, seed: int = 0, scale: dict[int, float] | None = None) -> tuple[float, float, float]:
    """(estimate, 2.5%, 97.5%) of the mean over seeds of the per-seed mean difference (each
    seed's mean optionally multiplied by `scale[seed]`); seeds then problems resampled.

    >>> est, lo, hi = hierarchical_bootstrap({0: [0.1] * 50, 1: [0.3] * 50})
    >>> round(est, 3), lo <= est <= hi
    (0.2, True)
    """
    seeds = sorted(diffs)
    sc = scale or {s: 1.0 for s in seeds}

    def stat(chosen: list[int], rng: random.Random | None) -> float:
        means = []
        for s in chosen:
            d = diffs[s]
            sample = [d[rng.randrange(len(d))] for _ in d] if rng else d
            means.append(sc[s] * sum(sample) / len(sample))
        return sum(means) / len(means)

    lo, hi = percentile_interval(lambda rng: stat(resample_seeds(seeds, rng), rng), n_boot, seed)
    return stat(seeds, None), lo, hi


def resample_seeds(seeds: list[int], rng: random.Random) -> list[int]:
    """Seeds drawn with replacement (one seed is kept as it is)."""
    return [seeds[rng.randrange(len(seeds))] for _ in seeds] if len(seeds) > 1 else seeds


def decide(direction: str, threshold: float, lo: float, hi: float) -> str:
    """The verdict from an interval.

    >>> decide("greater", 0.0, 0.02, 0.10), decide("greater", 0.0, -0.1, -0.01), decide("less", 0.0, -0.05, 0.03)
    ('reproduced', 'not reproduced', 'inconclusive')
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be greater or less, got {direction!r}")
    if direction == "greater":
        return "reproduced" if lo > threshold else "not reproduced" if hi <= threshold else "inconclusive"
    return "reproduced" if hi < threshold else "not reproduced" if lo >= threshold else "inconclusive"


def evaluate_claim(claim: Claim, scores: dict[str, dict[str, dict[int, dict[str, float]]]], pflops: dict[str, dict[int, float]] | None = None,
                   n_boot: int = 2000) -> Verdict:
    """Check `claim` on `scores[metric][arm] = {seed: {problem_id: value}}`.

    For per-PFLOP claims, `pflops[arm][seed]` is the run's compute and the compared quantity is
    (arm - base) / PFLOP of the arm minus (against - base) / PFLOP of the against arm.
    """
    by_arm = scores.get(claim.metric, {})
    missing = [a for a in (claim.arm, claim.against, *(["base"] if claim.per_pflop else [])) if a not in by_arm]
    if missing:
        return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": missing})
    if not claim.per_pflop:
        diffs = paired_seed_differences(by_arm[claim.arm], by_arm[claim.against])
        if not diffs:
            return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": "no shared seeds"})
        est, lo, hi = hierarchical_bootstrap(diffs, n_boot)
        detail = {"arm_mean": _mean_of(by_arm[claim.arm]), "against_mean": _mean_of(by_arm[claim.against])}
    else:
        base = by_arm["base"]
        a = paired_seed_differences(by_arm[claim.arm], base)
        b = paired_seed_differences(by_arm[claim.against], base)
        seeds = sorted(set(a) & set(b) & set(pflops[claim.arm]) & set(pflops[claim.against]))
        if not seeds:
            return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": "no shared seeds"})
        # gain per PFLOP of each arm, per seed; the difference is bootstrapped over seeds and problems
        ga = {s: a[s] for s in seeds}
        gb = {s: b[s] for s in seeds}
        ea, la, ha = hierarchical_bootstrap(ga, n_boot, scale={s: 1 / pflops[claim.arm][s] for s in seeds})
        eb, lb, hb = hierarchical_bootstrap(gb, n_boot, scale={s: 1 / pflops[claim.against][s] for s in seeds})
        # difference of the two per-PFLOP gains: bootstrap both arms independently and subtract

        def draw(rng: random.Random) -> float:
            chosen = resample_seeds(seeds, rng)
            va = [pflop_gain(ga[s], pflops[claim.arm][s], rng) for s in chosen]
            vb = [pflop_gain(gb[s], pflops[claim.against][s], rng) for s in chosen]
            return sum(va) / len(va) - sum(vb) / len(vb)

        est, (lo, hi) = ea - eb, percentile_interval(draw, n_boot, seed=1)
        detail = {"arm_gain_per_pflop": [ea, la, ha], "against_gain_per_pflop": [eb, lb, hb],
                  "arm_pflops": _mean_list(pflops[claim.arm][s] for s in seeds), "against_pflops": _mean_list(pflops[claim.against][s] for s in seeds)}
        diffs = a
    verdict = decide(claim.direction, claim.threshold, lo, hi)
    n_problems = min(len(v) for v in diffs.values())
    return Verdict(claim.id, verdict, est, lo, hi, len(diffs), n_problems, detail)


def pflop_gain(diffs: list[float], pflop: float, rng: random.Random) -> float:
    sample = [diffs[rng.randrange(len(diffs))] for _ in diffs]
    return sum(sample) / len(sample) / pflop


def _mean_list(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _mean_of(by_seed: dict[int, dict[str, float]]) -> float:
    return _mean_list(_mean_list(v.values()) for v in by_seed.values())
