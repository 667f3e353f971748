"""The documents' claims as predicates over run results, with the statistics they need.

A claim compares two arms (a recipe's runs against another's, or against the base model) on
one metric. Per seed, both arms are evaluated on the same held-out problems, so the difference
is paired by problem. The seed is the unit of replication: the estimate is the mean over seeds
of each seed's mean paired difference.

**Tests.** Each claim is a one-sided statement, or an equivalence, tested at level `alpha`
(default 5%), with the two-sided (1 - 2 alpha) interval (90%) that matches those tests:

- `greater` / `less`: a one-sided t test of "arm - against > threshold" (or "<"). `reproduced` when
  the 90% interval lies wholly beyond the threshold in the claimed direction (the one-sided test
  rejects), `not reproduced` when it lies wholly on the other side (the opposite one-sided test
  rejects), `inconclusive` otherwise. A margin states non-inferiority: "the base is at or above
  RL, within 2 points" is `greater` with threshold -0.02.
- `within`: TOST (two one-sided tests) of "|arm - against| < threshold": `reproduced` when the 90%
  interval lies inside (-threshold, +threshold), `not reproduced` when it lies wholly outside.

**Interval** (`METHOD`): a t interval over seeds (df = seeds - 1) whose standard error is at least
the least sampling error a seed's discrete scores allow, so a study whose seeds happened to agree
(or were all 0) cannot give a zero-width interval: se^2 = max(s^2 / S, mean_s(f_s) / S), s the sd of
the per-seed differences and f_s = 2 u^2 / ((n + 1)(n + 2)) (`discordant_floor`) for seed s's n
paired problems. u is the metric's own step (`metric_unit`): the most one sample can move one
problem's score, 1/m for pass@1 (and mixing, format) over m samples a problem, and K/m for the
unbiased pass@K from m >= K samples (adding the first correct sample moves 1 - C(m-c, K)/C(m, K) by
C(m-1, K-1)/C(m, K) = K/m, its largest step). f_s is then the variance of a seed's mean with one
discordant pair (+u and -u, as Bonett and Price add to matched proportions) among its n problems.
Scores that carry no sample counts count one sample a problem (u = 1 for pass@1).

Why a constant at the metric's step, and not the within-seed variance estimated from the per-problem
scores: s^2 already estimates each seed's sampling variance together with the spread that training
adds, without bias. A floor at a second estimate of the same variance takes the larger of two
unbiased estimates, which biases the standard error up: in the coverage test's regime (an arm that
did nothing, 64 problems, 4 or 16 samples) that interval covers well above the 90% asked, the excess
a floor counted in problems had. The constant binds only where the seeds agree by the accident of
discrete scores. Coverage and width are checked by simulation through `evaluate_claim` in
tests/test_claims.py. With fewer than `MIN_SEEDS` seeds a study is a pilot: it gets an estimate and
an interval, and the verdict `pilot`, not a decision.

**Family-wise error.** Each claim also gets a p-value; `holm` adjusts them across a study's claim
family (Holm's step-down), and `verdict_holm` is `reproduced` only where the adjusted p-value stays
under alpha (a claim reproduced per claim but not family-wise reads `inconclusive`).

`against: before` compares an arm with its own starting model (the runs' eval_before), for arms
that start from different models; `against: base` is the study's base model. `from_start` compares
two arms' changes from their own starting models, per seed and problem (a difference in differences).
`against: null` tests the arm's own level (for example the base model's pass@64 below a bar).

Metrics: `accuracy` (pass@1), `accuracy_lenient` (pass@1 under lenient extraction), `mixing`,
`format`, or `pass@K`, each problem's unbiased pass@K estimate from its n >= K samples (Chen et al. 2021).

Matched-compute claims (`at_pflops`) read both arms' accuracy-against-PFLOPs curves at the same
budget. `teacher_students` adds a distillation arm's teacher training to its curve, divided by the
number of students it is amortised over (1: unamortised). An arm whose runs ended (or were last
evaluated) below `MATCHED` (90%) of the budget is "short". A verdict may rest on a short arm that
comes out ahead (it won with less compute), never on one that comes out behind: then the claim
shows its estimate with the verdict `unmatched` and no test, since nothing says how that arm would
stand with the compute it did not get (the rule assumes more compute does not lower accuracy).

Per-compute claims (C5, C6) compare gains over the base per PFLOP, from the runs' FLOP counts,
paired by seed: per seed, (arm - base) / arm PFLOPs minus (against - base) / against PFLOPs on the
same problems, then the same t interval over seeds.

Arms are read from per-problem scores: {seed: {problem_id: value}}, value the mean over the K
samples of `correct` (accuracy) or `mixed` (mixing rate); `scores["samples"]` (same shape) holds each
problem's sample count, which sets the floor's step.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import statistics
from dataclasses import dataclass, field

from rlsft.io import UserError
from rlsft.scoring.metrics import percentile_interval

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "pilot", "unmatched")
MATCHED = 0.9  # a matched-compute claim needs every run of both arms read at 90% of the budget or more
ALPHA = 0.05  # each claim's test level: one-sided tests and TOST at 5%, read off a 90% two-sided interval
MIN_SEEDS = 3  # fewer seeds: a pilot (estimates, no verdict)
METHOD = ("t interval over seeds (df = seeds - 1) of each seed's paired mean difference, its standard error at least that "
          "of one discordant pair per seed at the metric's step (one sample: 1/m for pass@1 over m samples, K/m for pass@K)")
TESTS = {"greater": "one-sided t test", "less": "one-sided t test", "within": "TOST (two one-sided t tests)"}
PASS_KS = (2, 4, 8, 16, 32, 64)  # the pass@k the report reads from runs with at least k samples per problem
CLAIM_METRICS = r"accuracy|accuracy_lenient|mixing|format|length|pass@(?:" + "|".join(map(str, PASS_KS)) + ")"


@dataclass
class Claim:
    id: str
    text: str
    metric: str  # accuracy, mixing or pass@K
    arm: str  # recipe whose runs are tested ("base" = the starting model, from eval_before)
    against: str | None  # recipe, base (the study's starting model), before (the arm's own starting model) or None (the arm's level)
    direction: str  # greater or less: arm - against is claimed greater (or less) than threshold; within: |arm - against| < threshold
    threshold: float = 0.0
    alpha: float = ALPHA  # the test's level (one-sided; TOST: each of its two tests)
    per_pflop: bool = False  # compare (arm - base) / PFLOP of arm against (against - base) / PFLOP of against
    at_pflops: float | str | None = None  # compare both arms at this compute (or at a named arm's largest PFLOPs per run), each read at its last evaluated checkpoint within it
    teacher_students: int | None = None  # count the arm's teacher training, amortised over this many students (1: unamortised)
    from_start: bool = False  # compare each arm's change from its own starting model (a difference in differences)
    notes: str = ""

    def __post_init__(self):
        if self.direction not in TESTS:
            raise UserError(f"claim {self.id}: direction must be one of {', '.join(TESTS)}, got {self.direction!r}")
        if not re.fullmatch(CLAIM_METRICS, self.metric):
            raise UserError(f"claim {self.id}: metric must be accuracy, accuracy_lenient, mixing, format, length or pass@K "
                            f"(K one of {', '.join(map(str, PASS_KS))}), got {self.metric!r}")
        if not 0.0 < self.alpha < 0.5:
            raise UserError(f"claim {self.id}: alpha must be in (0, 0.5), got {self.alpha}")
        if not math.isfinite(self.threshold):
            raise UserError(f"claim {self.id}: threshold must be a number, got {self.threshold}")
        if self.direction == "within" and self.threshold <= 0:  # |difference| < 0 can never hold
            raise UserError(f"claim {self.id}: a within claim needs a positive threshold (its margin), got {self.threshold}")


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
    method: str = METHOD
    test: str | None = None  # one-sided t test or TOST
    level: float | None = None  # the test's alpha
    interval: str | None = None  # "90% two-sided", the interval whose bounds decide at that level
    p_value: float | None = None
    p_against: float | None = None  # the opposite test's p (its rejection is "not reproduced")
    verdict_holm: str | None = None  # the verdict with Holm's correction across the study's claims (set by `holm`)
    p_holm: float | None = None


def against_side(claim: Claim) -> str | None:
    """The scores' key of a claim's comparison side: `before` names the arm's own starting model.

    >>> against_side(Claim("c", "t", "accuracy", "sft", "before", "greater")), against_side(Claim("c", "t", "accuracy", "sft", "base", "greater"))
    ('before:sft', 'base')
    """
    return f"before:{claim.arm}" if claim.against == "before" else claim.against


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


def hierarchical_bootstrap(diffs: dict[int, list[float]], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, 2.5%, 97.5%) of the mean over seeds of the per-seed means; seeds then problems
    resampled. Descriptive (the report's per-arm table); claims use `seed_t_interval`.

    >>> est, lo, hi = hierarchical_bootstrap({0: [0.1] * 50, 1: [0.3] * 50})
    >>> round(est, 3), lo <= est <= hi
    (0.2, True)
    """
    seeds = sorted(diffs)

    def stat(chosen: list[int], rng: random.Random | None) -> float:
        means = []
        for s in chosen:
            d = diffs[s]
            sample = [d[rng.randrange(len(d))] for _ in d] if rng else d
            means.append(sum(sample) / len(sample))
        return sum(means) / len(means)

    lo, hi = percentile_interval(lambda rng: stat(resample_seeds(seeds, rng), rng), n_boot, seed)
    return stat(seeds, None), lo, hi


def seed_t_interval(per_seed: list[float], alpha: float = 0.05) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of per-seed values with a t interval on len - 1 degrees of freedom; the
    interval is (None, None) with one seed, which says nothing about how seeds vary.

    >>> est, lo, hi = seed_t_interval([0.10, 0.12, 0.08, 0.11, 0.09])
    >>> round(est, 3), round(lo, 4), round(hi, 4)
    (0.1, 0.0804, 0.1196)
    >>> seed_t_interval([0.1])
    (0.1, None, None)
    """

    from scipy.stats import t

    est = statistics.fmean(per_seed)
    if len(per_seed) < 2:
        return est, None, None
    half = float(t.ppf(1 - alpha / 2, len(per_seed) - 1)) * statistics.stdev(per_seed) / len(per_seed) ** 0.5
    return est, est - half, est + half


def claim_interval(per_seed: list[float], floors: list[float], direction: str, threshold: float, alpha: float = ALPHA) -> dict:
    """Estimate, (1 - 2 alpha) interval, p-value of the claim's test, standard error and df, from
    per-seed mean differences and each seed's least sampling variance (`discordant_floor`; see the
    module docstring); the interval and p-value are None with one seed.

    >>> r = claim_interval([0.10, 0.12, 0.08], [1e-4] * 3, "greater", 0.0)
    >>> round(r["estimate"], 3), round(r["low"], 4), round(r["high"], 4), r["p_value"] < 0.05
    (0.1, 0.0663, 0.1337, True)
    >>> claim_interval([0.0, 0.0, 0.0], [discordant_floor(32)] * 3, "within", 0.03)["low"] < 0  # no zero width
    True
    """

    from scipy.stats import t

    S = len(per_seed)
    est = statistics.fmean(per_seed)
    out = {"estimate": est, "low": None, "high": None, "p_value": None, "p_against": None, "se": None, "df": S - 1}
    if S < 2:
        return out
    se = max(statistics.variance(per_seed) / S, statistics.fmean(floors) / S) ** 0.5
    q = float(t.ppf(1 - alpha, S - 1))
    out.update(low=est - q * se, high=est + q * se, se=se)
    # p_value: the claim's test; p_against: the test on the other side, whose rejection is "not reproduced"
    if direction == "greater":
        out["p_value"] = float(t.sf((est - threshold) / se, S - 1))
        out["p_against"] = float(t.cdf((est - threshold) / se, S - 1))
    elif direction == "less":
        out["p_value"] = float(t.cdf((est - threshold) / se, S - 1))
        out["p_against"] = float(t.sf((est - threshold) / se, S - 1))
    else:  # TOST: both one-sided tests must reject; its p-value is the larger of theirs. Against: outside on either side
        out["p_value"] = max(float(t.sf((est + threshold) / se, S - 1)), float(t.cdf((est - threshold) / se, S - 1)))
        out["p_against"] = min(float(t.cdf((est + threshold) / se, S - 1)), float(t.sf((est - threshold) / se, S - 1)))
    return out


def holm(verdicts: list["Verdict"], alpha: float = ALPHA) -> list["Verdict"]:
    """Holm's step-down adjustment across the family of tested claims (pilots and unmatched ones
    have no test), setting `p_holm` and `verdict_holm` on each verdict (which it returns). Each
    claim enters with the p-value of the test its verdict rests on: the claim's own for
    "reproduced", the opposite side's for "not reproduced", the smaller of the two otherwise; a
    verdict whose adjusted p is above `alpha` is inconclusive under Holm, in either direction.

    >>> vs = [Verdict(c, "reproduced", 0.1, 0.0, 0.2, 5, 50, p_value=p) for c, p in (("a", 0.01), ("b", 0.02), ("c", 0.04))]
    >>> [(v.claim, round(v.p_holm, 2), v.verdict_holm) for v in holm(vs)]
    [('a', 0.03, 'reproduced'), ('b', 0.04, 'reproduced'), ('c', 0.04, 'reproduced')]
    >>> vs[1].p_value = 0.03
    >>> [(v.claim, round(v.p_holm, 2), v.verdict_holm) for v in holm(vs)]
    [('a', 0.03, 'reproduced'), ('b', 0.06, 'inconclusive'), ('c', 0.06, 'inconclusive')]
    >>> vs = [Verdict("q1", "reproduced", 0.1, 0.07, 0.13, 4, 128, p_value=0.001, p_against=0.999),
    ...       Verdict("q2", "inconclusive", 0.01, -0.01, 0.03, 4, 128, p_value=0.2, p_against=0.8),
    ...       Verdict("q3", "not reproduced", -0.005, -0.0096, -0.0004, 4, 128, p_value=0.958, p_against=0.042)]
    >>> [(v.claim, round(v.p_holm, 3), v.verdict_holm) for v in holm(vs)]  # q3's opposite test, second of three: x 2
    [('q1', 0.003, 'reproduced'), ('q2', 0.2, 'inconclusive'), ('q3', 0.084, 'inconclusive')]
    """

    def decisive(v: "Verdict") -> float:
        if v.verdict == "not reproduced" and v.p_against is not None:
            return v.p_against
        return v.p_value if v.verdict == "reproduced" or v.p_against is None else min(v.p_value, v.p_against)

    tested = sorted((v for v in verdicts if v.p_value is not None and v.verdict not in ("pilot", "unmatched")), key=decisive)
    m, running = len(tested), 0.0
    for i, v in enumerate(tested):
        running = max(running, min(1.0, (m - i) * decisive(v)))
        v.p_holm = running
    for v in verdicts:
        if v.verdict in ("reproduced", "not reproduced") and (v.p_holm is None or v.p_holm > alpha):
            v.verdict_holm = "inconclusive"
        else:
            v.verdict_holm = v.verdict
    return verdicts


def resample_seeds(seeds: list[int], rng: random.Random) -> list[int]:
    """Seeds drawn with replacement (one seed is kept as it is)."""
    return [seeds[rng.randrange(len(seeds))] for _ in seeds] if len(seeds) > 1 else seeds


def decide(direction: str, threshold: float, lo: float, hi: float) -> str:
    """The verdict from an interval.

    >>> decide("greater", 0.0, 0.02, 0.10), decide("greater", 0.0, -0.1, -0.01), decide("less", 0.0, -0.05, 0.03)
    ('reproduced', 'not reproduced', 'inconclusive')
    >>> decide("within", 0.05, -0.02, 0.03), decide("within", 0.05, 0.06, 0.2), decide("within", 0.05, -0.01, 0.08)
    ('reproduced', 'not reproduced', 'inconclusive')
    """
    if direction not in ("greater", "less", "within"):
        raise ValueError(f"direction must be greater, less or within, got {direction!r}")
    if direction == "within":  # equivalence: the whole interval inside (-threshold, +threshold)
        return "reproduced" if -threshold < lo and hi < threshold else "not reproduced" if hi <= -threshold or lo >= threshold else "inconclusive"
    if direction == "greater":
        return "reproduced" if lo > threshold else "not reproduced" if hi <= threshold else "inconclusive"
    return "reproduced" if hi < threshold else "not reproduced" if lo >= threshold else "inconclusive"


def at_budget(points: list[tuple[float, dict[str, float]]], budget: float) -> tuple[float, dict[str, float]] | None:
    """The evaluated point (PFLOPs, per-problem scores) with the most compute within `budget`; None
    when even the first is over it. Never extrapolated: an arm that finished under the budget is
    read at its end.

    >>> at_budget([(0.001, {"a": 0.5}), (0.002, {"a": 0.7}), (0.004, {"a": 0.9})], 0.003)
    (0.002, {'a': 0.7})
    """
    within = [p for p in points if p[0] <= budget * (1 + 1e-9)]
    return max(within, key=lambda p: p[0]) if within else None


def read_at_budget(claim: Claim, curves: dict, teacher_pflops: dict[str, float]) -> tuple[dict, dict, dict]:
    """Each arm of a matched-compute claim read at its last evaluated point within `claim.at_pflops`:
    ({arm: {seed: {problem_id: value}}}, the same for sample counts, {arm: {seed: PFLOPs read at}}).
    An arm that is missing a seed's point within the budget is left out (the claim reads it as missing)."""
    by_arm, counts, read_points = {}, {}, {}
    for name in (claim.arm, claim.against):
        shift = teacher_pflops.get(name, 0.0) / claim.teacher_students if claim.teacher_students and name == claim.arm else 0.0

        def read(metric: str) -> dict[int, tuple[float, dict] | None]:
            return {seed: at_budget([(x + shift, v) for x, v in points], claim.at_pflops)
                    for seed, points in curves.get(metric, {}).get(name, {}).items()}

        per_seed = read(claim.metric)
        if per_seed and all(per_seed.values()):
            by_arm[name] = {seed: point[1] for seed, point in per_seed.items()}
            counts[name] = {seed: point[1] for seed, point in read("samples").items() if point}
            read_points[name] = {seed: point[0] for seed, point in per_seed.items()}
    return by_arm, counts, read_points


def per_pflop_stats(claim: Claim, by_arm: dict, pflops: dict[str, dict[int, float]], counts: dict) -> tuple[dict, dict, dict] | None:
    """A per-compute claim's interval (`claim_interval`), detail and per-seed differences from the
    base: per seed, (arm - base) / arm PFLOPs minus (against - base) / against PFLOPs on the same
    problems; None without a seed both arms and their compute share."""
    base = by_arm["base"]
    a = paired_seed_differences(by_arm[claim.arm], base)
    b = paired_seed_differences(by_arm[claim.against], base)
    seeds = sorted(set(a) & set(b) & set(pflops[claim.arm]) & set(pflops[claim.against]))
    if not seeds:
        return None
    # per seed, each arm's gain over the base per PFLOP; paired: the same seed and problems
    ga = [_mean_list(a[s]) / pflops[claim.arm][s] for s in seeds]
    gb = [_mean_list(b[s]) / pflops[claim.against][s] for s in seeds]
    # each seed's floor, in gain per PFLOP: one discordant pair in each arm's differences from the base
    ua, ub = seed_units(claim.metric, counts, [claim.arm, "base"]), seed_units(claim.metric, counts, [claim.against, "base"])
    floors = [discordant_floor(len(a[s]), ua.get(s, 1.0)) / pflops[claim.arm][s] ** 2
              + discordant_floor(len(b[s]), ub.get(s, 1.0)) / pflops[claim.against][s] ** 2 for s in seeds]
    stats = claim_interval([x - y for x, y in zip(ga, gb)], floors, claim.direction, claim.threshold, claim.alpha)
    # each arm's own gain with the claims' 90% interval, as the verdict's
    detail = {"arm_gain_per_pflop": list(seed_t_interval(ga, 2 * ALPHA)), "against_gain_per_pflop": list(seed_t_interval(gb, 2 * ALPHA)),
              "arm_pflops": _mean_list(pflops[claim.arm][s] for s in seeds), "against_pflops": _mean_list(pflops[claim.against][s] for s in seeds)}
    return stats, detail, {s: a[s] for s in seeds}


def _missing_sides(claim: Claim, scored: dict, by_arm: dict) -> list:
    """The sides `claim` reads that have no scores: its arms, the base of a per-compute claim, and
    both starting models of a from_start one (a start missing must not turn it into a plain comparison)."""
    needed = (claim.arm, claim.against, *(["base"] if claim.per_pflop else []),
              *([f"before:{claim.arm}", f"before:{claim.against}"] if claim.from_start else []))
    return [a for a in needed if a not in scored and a not in by_arm]


def evaluate_claim(claim: Claim, scores: dict[str, dict[str, dict[int, dict[str, float]]]], pflops: dict[str, dict[int, float]] | None = None,
                   curves: dict[str, dict[str, dict[int, list]]] | None = None, teacher_pflops: dict[str, float] | None = None) -> Verdict:
    """Check `claim` on `scores[metric][arm] = {seed: {problem_id: value}}`; a matched-compute claim
    (`at_pflops`) reads `curves[metric][arm][seed] = [(pflops, {problem_id: value}), ...]` instead.

    For per-PFLOP claims, `pflops[arm][seed]` is the run's compute and the compared quantity is
    (arm - base) / PFLOP of the arm minus (against - base) / PFLOP of the against arm.
    `teacher_pflops[arm]` is the training compute of an arm's teacher (for `teacher_students`).
    """
    counts = scores.get("samples", {})  # arm -> seed -> problem -> samples drawn: the floor's step
    read_at: dict[str, float] = {}  # matched-compute claims: mean PFLOPs at which each arm was read (over the paired seeds)
    short: dict[str, float] = {}  # ... and each arm's least over the paired seeds, where it is under MATCHED of the budget
    if isinstance(claim.at_pflops, str):  # the whole budget of a named arm: its largest PFLOPs per run
        runs = (pflops or {}).get(claim.at_pflops)  # (not the mean: FLOPs vary with completion lengths, and
        if not runs:                                 # a seed above the mean would be read before its end)
            return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": [claim.at_pflops]})
        claim = dataclasses.replace(claim, at_pflops=max(runs.values()))
    claim = dataclasses.replace(claim, against=against_side(claim))
    if claim.at_pflops is not None:
        by_arm, read_counts, read_points = read_at_budget(claim, curves or {}, teacher_pflops or {})
        counts = {**counts, **read_counts}  # the compared arms' counts as read; the base's and starts' stay (the floor's step)
        # the compared arms as read within the budget, and only so: one with no point inside it is
        # missing (inconclusive), never read at its end past the budget
        kept = {k: v for k, v in scores.get(claim.metric, {}).items() if k not in (claim.arm, claim.against)}
        scores = {claim.metric: {**kept, **by_arm}}
        if claim.teacher_students:
            read_at["teacher_pflops_counted"] = (teacher_pflops or {}).get(claim.arm, 0.0) / claim.teacher_students
    by_arm = scores.get(claim.metric, {})
    if claim.from_start:  # each arm minus its own start, on the problems both share
        starts = [f"before:{claim.arm}", f"before:{claim.against}"]
        if all(a in by_arm for a in (claim.arm, claim.against, *starts)):
            by_arm = {a: {s: {i: v - by_arm[f"before:{a}"][s][i] for i, v in per.items() if i in by_arm[f"before:{a}"].get(s, {})}
                          for s, per in by_arm[a].items() if s in by_arm[f"before:{a}"]}
                      for a in (claim.arm, claim.against)}
    if claim.against is None:  # a level, not a difference: the arm's own values against the threshold
        by_arm = {**by_arm, None: {s: {i: 0.0 for i in per} for s, per in by_arm.get(claim.arm, {}).items()}}
    if missing := _missing_sides(claim, scores.get(claim.metric, {}), by_arm):
        return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": missing})
    if not claim.per_pflop:
        diffs = paired_seed_differences(by_arm[claim.arm], by_arm[claim.against])
        if not diffs:
            return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": "no shared seeds"})
        involved = [claim.arm, claim.against] + ([f"before:{claim.arm}", f"before:{claim.against}"] if claim.from_start else [])
        units = seed_units(claim.metric, counts, involved)
        floors = [discordant_floor(len(d), units.get(s, 1.0)) for s, d in diffs.items()]
        stats = claim_interval([_mean_list(d) for d in diffs.values()], floors, claim.direction, claim.threshold, claim.alpha)
        paired = {a: {s: by_arm[a][s] for s in diffs} for a in (claim.arm, claim.against)}  # the seeds the estimate pairs
        detail = {"arm_mean": _mean_of(paired[claim.arm]), "against_mean": _mean_of(paired[claim.against])}
        if unpaired := sorted(set(by_arm[claim.arm]) ^ set(by_arm[claim.against])):  # a seed one side lacks: left out, said so
            detail["unpaired_seeds"] = unpaired
        if claim.at_pflops is not None:  # read and judged "short" on the seeds the estimate pairs, not on every seed an arm has
            for name, points in read_points.items():
                read_at[name] = _mean_list(points[s] for s in diffs)
                if (least := min(points[s] for s in diffs)) < MATCHED * claim.at_pflops:
                    short[name] = least
            detail.update(at_pflops=claim.at_pflops, read_at_pflops=read_at)
    else:
        per_pflop = per_pflop_stats(claim, by_arm, pflops, counts)
        if per_pflop is None:
            return Verdict(claim.id, "inconclusive", None, None, None, 0, 0, {"missing": "no shared seeds"})
        stats, detail, diffs = per_pflop
    n_problems = min(len(v) for v in diffs.values())
    est, lo, hi = stats["estimate"], stats["low"], stats["high"]
    how = {"test": TESTS[claim.direction], "level": claim.alpha, "interval": f"{1 - 2 * claim.alpha:.0%} two-sided",
           "p_value": stats["p_value"], "p_against": stats["p_against"]}
    detail["se"], detail["df"] = stats["se"], stats["df"]
    if lo is None:  # one seed: no interval, no verdict
        return Verdict(claim.id, "pilot", est, None, None, len(diffs), n_problems,
                       {**detail, "why": f"one seed gives no interval: a pilot, below the {MIN_SEEDS} a verdict needs"}, **how)
    if len(diffs) < MIN_SEEDS:
        return Verdict(claim.id, "pilot", est, lo, hi, len(diffs), n_problems,
                       {**detail, "why": f"{len(diffs)} seeds: a pilot, below the {MIN_SEEDS} a verdict needs"}, **how)
    verdict = decide(claim.direction, claim.threshold, lo, hi)
    if short:  # an arm short of the budget: the verdict may not rest on it coming out behind
        notes = "; ".join(f"{name} read at {x:.3g} PFLOPs, under {MATCHED:.0%} of the budget ({claim.at_pflops:.3g})" for name, x in short.items())
        if any(name in short for name in behind(claim, verdict)):
            return Verdict(claim.id, "unmatched", est, lo, hi, len(diffs), n_problems,
                           {**detail, "why": f"not matched compute: {notes}, and behind"}, **{**how, "p_value": None, "p_against": None})
        detail["short"] = notes + ("" if verdict == "inconclusive" else "; it comes out ahead with less compute, so the verdict stands")
    return Verdict(claim.id, verdict, est, lo, hi, len(diffs), n_problems, detail, **how)


def behind(claim: Claim, verdict: str) -> list:
    """The arm(s) a verdict has coming out behind: the ones a matched-compute verdict may not rest on
    when they are short of the budget.

    >>> c = Claim("R4", "", "accuracy", "distill", "rl", "greater")
    >>> behind(c, "reproduced"), behind(c, "not reproduced"), behind(c, "inconclusive")
    (['rl'], ['distill'], [])
    """
    if claim.direction == "within":
        return [claim.arm, claim.against] if verdict != "inconclusive" else []
    return {("greater", "reproduced"): [claim.against], ("greater", "not reproduced"): [claim.arm],
            ("less", "reproduced"): [claim.arm], ("less", "not reproduced"): [claim.against]}.get((claim.direction, verdict), [])


def discordant_floor(n: int, unit: float = 1.0) -> float:
    """The least sampling variance a seed's mean paired difference over n problems is given: that
    of n differences all 0 but for one discordant pair (+unit and -unit, as Bonett and Price add to
    matched proportions), 2 unit^2 / ((n + 1)(n + 2)). `unit` is the metric's step
    (`metric_unit`): one sample's move of one problem's score. It binds only where seeds agree by
    the accident of discrete scores (all 0, say); elsewhere the spread over seeds is larger.

    >>> round(discordant_floor(32), 6)  # one sample a problem
    0.001783
    >>> round(discordant_floor(64, unit=0.25) ** 0.5, 4)  # 64 problems x 4 samples: a seed's least standard error
    0.0054
    """
    return 2.0 * unit * unit / ((n + 1) * (n + 2)) if n else 0.0


def metric_unit(metric: str, samples: int | None) -> float:
    """The most one sample can move one problem's score: 1/m for a mean over m samples (pass@1,
    mixing, format), K/m for the unbiased pass@K from m samples (its step when the first correct
    sample comes in); 1 where the sample count is unknown (one sample a problem).

    >>> metric_unit("accuracy", 4), metric_unit("pass@4", 16), metric_unit("mixing", None), metric_unit("pass@8", 8)
    (0.25, 0.25, 1.0, 1.0)
    """
    k = int(metric.split("@")[1]) if metric.startswith("pass@") else 1
    return min(1.0, k / samples) if samples else 1.0


def seed_units(metric: str, counts: dict[str, dict[int, dict[str, float]]], arms: list) -> dict[int, float]:
    """Per seed, the step of a difference between `arms` (`metric_unit` at the fewest samples any of
    them drew for a problem): the larger arm's step, since one sample of either moves the difference.
    `counts[arm][seed][problem_id]` = samples; a seed or arm without counts steps by 1.

    >>> seed_units("accuracy", {"rl": {0: {"a": 4, "b": 4}}, "base": {0: {"a": 16}}}, ["rl", "base"])
    {0: 0.25}
    >>> seed_units("accuracy", {"rl": {0: {"a": 4}}}, ["rl", "base"])
    {0: 1.0}
    """
    arms = [a for a in arms if a is not None]  # a level claim's zero arm draws no samples
    out = {}
    for s in sorted({s for a in arms for s in counts.get(a, {})}):
        fewest = [min(counts.get(a, {}).get(s, {}).values(), default=0) for a in arms]
        out[s] = max(metric_unit(metric, int(m)) for m in fewest) if all(fewest) else 1.0
    return out


def _mean_list(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _mean_of(by_seed: dict[int, dict[str, float]]) -> float:
    return _mean_list(_mean_list(v.values()) for v in by_seed.values())
