"""Claim predicates compute what they should on hand-made run results."""

import random

import pytest

from rlsft.io import UserError
from rlsft.verdicts.claims import Claim, evaluate_claim


def arm(p_correct: float, seeds=(0, 1, 2), n=200, rng_seed=0):
    """{seed: {problem_id: mean correct over 8 samples}} drawn around p_correct."""
    rng = random.Random(rng_seed)
    return {s: {f"q{i}": sum(rng.random() < p_correct for _ in range(8)) / 8 for i in range(n)} for s in seeds}


def problems(value: float, n: int = 100) -> dict[str, float]:
    """n problems with the same score: a deterministic arm (its interval's width is the floor's)."""
    return {f"q{i}": value for i in range(n)}


C1 = Claim(id="C1", text="RL raises accuracy", metric="accuracy", arm="rl", against="base", direction="greater")


def test_reproduced_not_reproduced_inconclusive():
    base = arm(0.3, rng_seed=1)
    assert evaluate_claim(C1, {"accuracy": {"rl": arm(0.5, rng_seed=2), "base": base}}).verdict == "reproduced"
    assert evaluate_claim(C1, {"accuracy": {"rl": arm(0.1, rng_seed=2), "base": base}}).verdict == "not reproduced"
    tiny = {"accuracy": {"rl": arm(0.3, n=10, rng_seed=3), "base": arm(0.3, n=10, rng_seed=4)}}
    v = evaluate_claim(C1, tiny)
    assert v.verdict == "inconclusive" and v.ci_low < 0 < v.ci_high


def test_estimate_is_the_paired_mean_difference():
    base = {0: {"a": 0.0, "b": 0.5}, 1: {"a": 0.5, "b": 0.5, "c": 0.0}}
    rl = {0: {"a": 1.0, "b": 0.5, "c": 1.0}, 1: {"a": 1.0, "b": 1.0}}
    v = evaluate_claim(C1, {"accuracy": {"rl": rl, "base": base}})
    assert abs(v.estimate - 0.5) < 1e-9
    # on the problems both arms share: seed 0 mean diff = (1.0 + 0.0) / 2 = 0.5; seed 1 = (0.5 + 0.5) / 2 = 0.5;
    # unpaired means would give (2.5/3 - 0.25 + 1.0 - 1/3) / 2 = 0.625


def test_less_direction_and_threshold():
    claim = Claim(id="C4b", text="small cost", metric="accuracy", arm="lang", against="rl", direction="greater", threshold=-0.05)
    rl = arm(0.50, rng_seed=5)
    small_cost = {s: {k: max(0.0, v - 0.02) for k, v in d.items()} for s, d in rl.items()}
    big_cost = {s: {k: max(0.0, v - 0.20) for k, v in d.items()} for s, d in rl.items()}
    assert evaluate_claim(claim, {"accuracy": {"lang": small_cost, "rl": rl}}).verdict == "reproduced"
    assert evaluate_claim(claim, {"accuracy": {"lang": big_cost, "rl": rl}}).verdict == "not reproduced"
    mix = Claim(id="C4a", text="less mixing", metric="mixing", arm="lang", against="rl", direction="less")
    assert evaluate_claim(mix, {"mixing": {"lang": arm(0.05, rng_seed=6), "rl": arm(0.4, rng_seed=7)}}).verdict == "reproduced"


def test_per_pflop_claim():
    claim = Claim(id="C5", text="distill wins per FLOP", metric="accuracy", arm="distill", against="rl", direction="greater", per_pflop=True)
    scores = {"accuracy": {"base": arm(0.2, rng_seed=1), "distill": arm(0.4, rng_seed=2), "rl": arm(0.45, rng_seed=3)}}
    cheap = {"distill": {0: 1.0, 1: 1.0, 2: 1.0}, "rl": {0: 10.0, 1: 10.0, 2: 10.0}}
    assert evaluate_claim(claim, scores, cheap).verdict == "reproduced"  # 0.2/1 vs 0.25/10
    dear = {"distill": {0: 10.0, 1: 10.0, 2: 10.0}, "rl": {0: 1.0, 1: 1.0, 2: 1.0}}
    assert evaluate_claim(claim, scores, dear).verdict == "not reproduced"


def test_missing_arm_is_inconclusive_not_an_error():
    v = evaluate_claim(C1, {"accuracy": {"base": arm(0.3)}})
    assert v.verdict == "inconclusive" and v.detail["missing"] == ["rl"]


def test_one_seed_gives_no_interval_and_no_verdict():
    """A pilot, as two seeds are (it read "inconclusive", a verdict's word, in the verdict column)."""
    v = evaluate_claim(C1, {"accuracy": {"rl": arm(0.9, seeds=(0,), rng_seed=2), "base": arm(0.1, seeds=(0,), rng_seed=1)}})
    assert v.verdict == "pilot" and v.ci_low is None and v.estimate > 0.5 and "one seed" in v.detail["why"]


@pytest.mark.parametrize("spread", [0.05, 0.10])
def test_coverage_and_width_of_evaluate_claims_interval(spread):
    """Coverage simulation through `evaluate_claim` itself (pairing, interval, `decide`): a true
    difference of 0, 3 seeds (where a wrong df shows most), 64 problems per seed, per-problem
    paired differences of 8-sample accuracies, and a between-seed spread (sd of each seed's own
    effect) like the studies'. The 90% interval must cover the truth 87-94% of the time (1,000
    runs: the coverage's own sd is 0.01) and its mean width must be within 10% of the t interval's
    analytic width, 2 t(0.95, 2) c4(3) sigma / sqrt(3), from the simulated sigma of a seed's mean. It
    fails for an interval 10x too wide, for df = seeds, and for a z quantile."""
    import math

    import numpy as np
    from scipy.stats import t

    rng = np.random.default_rng(int(spread * 100))
    claim = Claim(id="W", text="within", metric="accuracy", arm="rl", against="base", direction="within", threshold=0.5)
    covered, widths, seed_means, sims = 0, [], [], 1000
    for _ in range(sims):
        effect = rng.normal(0.0, spread, size=(3, 1))  # each seed's own true difference; their mean is 0
        q = rng.uniform(0.35, 0.65, size=(3, 64))  # per-problem accuracy, so +-effect/2 stays inside [0, 1]
        arm_acc = rng.binomial(8, np.clip(q + effect / 2, 0, 1)) / 8
        base_acc = rng.binomial(8, np.clip(q - effect / 2, 0, 1)) / 8
        scores = {"accuracy": {name: {s: {f"q{i}": float(acc[s, i]) for i in range(64)} for s in range(3)}
                               for name, acc in (("rl", arm_acc), ("base", base_acc))}}
        v = evaluate_claim(claim, scores)
        covered += v.ci_low <= 0.0 <= v.ci_high
        widths.append(v.ci_high - v.ci_low)
        seed_means.extend((arm_acc - base_acc).mean(axis=1))
    sigma = float(np.sqrt(np.mean(np.square(seed_means))))  # sd of a seed's mean difference around the truth, 0
    c4 = math.sqrt(2 / 2) * math.gamma(3 / 2) / math.gamma(2 / 2)
    analytic = 2 * float(t.ppf(0.95, 2)) * c4 * sigma / math.sqrt(3)
    assert 0.87 <= covered / sims <= 0.94, (spread, covered / sims)
    assert abs(np.mean(widths) / analytic - 1) < 0.10, (spread, np.mean(widths), analytic)


@pytest.mark.parametrize("k", [4, 16])
def test_coverage_for_an_arm_that_did_nothing_is_set_by_samples_not_problems(k):
    """The regime of a real-model study's no-op arm: seeds that agree (no effect and no spread between
    seeds), 5 seeds, 64 problems x k samples, a weak model (most problems never solved, the rest
    rarely), each arm's samples drawn afresh. The only variance is sampling, which the t interval
    over seeds estimates; a floor counted in problems (one problem's step, 1) dwarfs it and covers
    about 100%, a floor at one sample's step (1/k, from `scores["samples"]`) binds only when seeds
    agree exactly. The 90% interval must cover the truth 0 in 86-94% of 1,000 runs (the coverage's
    own sd is 0.01): too wide fails, as does too narrow."""
    import numpy as np

    rng = np.random.default_rng(k)
    claim = Claim(id="N", text="no effect", metric="accuracy", arm="rl", against="base", direction="greater")
    seeds, n, covered, sims = 5, 64, 0, 1000
    counts = {s: {f"q{i}": float(k) for i in range(n)} for s in range(seeds)}
    for _ in range(sims):
        q = np.where(rng.random(n) < 0.85, 0.0, rng.uniform(0.0, 0.3, n))  # per-problem accuracy, shared by arm and base
        acc = {name: rng.binomial(k, q, size=(seeds, n)) / k for name in ("rl", "base")}
        scores = {"accuracy": {name: {s: {f"q{i}": float(a[s, i]) for i in range(n)} for s in range(seeds)} for name, a in acc.items()},
                  "samples": {"rl": counts, "base": counts}}
        v = evaluate_claim(claim, scores)
        covered += v.ci_low <= 0.0 <= v.ci_high
    assert 0.86 <= covered / sims <= 0.94, (k, covered / sims)


def test_the_floor_steps_by_one_sample_and_binds_only_where_seeds_agree():
    """Seeds whose differences are all exactly 0 (an arm identical to the base) get the floor of one
    discordant sample pair among 64 problems x 4 samples, not of a problem pair; pass@K steps by K/m."""
    import math

    zero = {s: problems(0.0, 64) for s in range(5)}
    counts = {s: problems(4.0, 64) for s in range(5)}
    v = evaluate_claim(C1, {"accuracy": {"rl": zero, "base": zero}, "samples": {"rl": counts, "base": counts}})
    assert math.isclose(v.detail["se"], math.sqrt(2 * 0.25**2 / (65 * 66) / 5))
    without_counts = evaluate_claim(C1, {"accuracy": {"rl": zero, "base": zero}})  # one sample a problem
    assert math.isclose(without_counts.detail["se"], 4 * v.detail["se"])
    p4 = Claim(id="P", text="pass@4", metric="pass@4", arm="rl", against="base", direction="greater")
    m16 = {s: problems(16.0, 64) for s in range(5)}
    v4 = evaluate_claim(p4, {"pass@4": {"rl": zero, "base": zero}, "samples": {"rl": m16, "base": m16}})
    assert math.isclose(v4.detail["se"], v.detail["se"])  # K/m = 4/16, the step of pass@1 over 4 samples


def test_matched_compute_reads_each_arm_within_the_budget():
    """At 0.002 PFLOPs, distillation (already at 0.6 there) beats RL (0.4 there), although RL ends higher
    at its own, larger budget; a budget below an arm's first point is inconclusive, never extrapolated."""
    claim = Claim(id="C5", text="distill beats RL at matched compute", metric="accuracy", arm="distill", against="rl",
                  direction="greater", at_pflops=0.002)

    def curve(values: list[tuple[float, float]], seed: int):
        return [(x, {f"q{i}": v + 0.01 * ((i + seed) % 3 - 1) for i in range(50)}) for x, v in values]

    curves = {"accuracy": {
        "distill": {s: curve([(0.0, 0.3), (0.001, 0.5), (0.002, 0.6)], s) for s in range(3)},
        "rl": {s: curve([(0.0, 0.3), (0.0019, 0.4), (0.003, 0.55), (0.009, 0.9)], s) for s in range(3)},
    }}
    v = evaluate_claim(claim, {}, None, curves)
    assert v.verdict == "reproduced" and abs(v.estimate - 0.2) < 1e-9 and v.detail["at_pflops"] == 0.002
    late = Claim(**{**claim.__dict__, "at_pflops": 0.01})
    v = evaluate_claim(late, {}, None, curves)  # distillation's end (0.002, 0.6) loses to RL at 0.009 (0.9) with a fifth of its compute
    assert v.verdict == "unmatched" and v.p_value is None and "distill read at 0.002" in v.detail["why"]
    assert abs(v.estimate + 0.3) < 1e-9  # the estimate is still shown
    ahead = Claim(**{**claim.__dict__, "at_pflops": 0.0033})  # distillation (short: 0.002) ahead of RL at 0.003: the verdict stands
    v = evaluate_claim(ahead, {}, None, curves)
    assert v.verdict == "reproduced" and "comes out ahead" in v.detail["short"]
    early = Claim(**{**claim.__dict__, "at_pflops": -1.0})
    assert evaluate_claim(early, {}, None, curves).verdict == "inconclusive"
    # with the arms' final scores at hand too, a budget before their first point is still missing, not read at their ends
    final = {"accuracy": {arm: {s: points[-1][1] for s, points in by_seed.items()} for arm, by_seed in curves["accuracy"].items()}}
    v = evaluate_claim(early, final, None, curves)
    assert v.verdict == "inconclusive" and v.detail["missing"] == ["distill", "rl"]


def test_teacher_training_moves_the_distilled_arm_right_on_the_compute_axis():
    """Counting a teacher's 0.0025 PFLOPs of training in full moves distillation's trained point
    (0.001 of its own) past a 0.003 budget, so it is read at its start (0.0025, short of the
    budget) and loses: unmatched, not a verdict. Amortised over 5 students (0.0005 each) it is read
    trained, at 0.0015, and wins with less compute than RL: the verdict stands."""
    curves = {"accuracy": {
        "distill": {s: [(0.0, problems(0.3 + 0.01 * s)), (0.001, problems(0.6 + 0.01 * s))] for s in range(3)},
        "rl": {s: [(0.0, problems(0.3 + 0.01 * s)), (0.003, problems(0.5 - 0.01 * s))] for s in range(3)},
    }}
    claim = Claim(id="C5b", text="t", metric="accuracy", arm="distill", against="rl", direction="greater", at_pflops=0.003)
    teacher = {"distill": 0.0025}
    assert evaluate_claim(claim, {}, None, curves, teacher).verdict == "reproduced"  # teacher not counted
    full = evaluate_claim(Claim(**{**claim.__dict__, "teacher_students": 1}), {}, None, curves, teacher)
    assert full.verdict == "unmatched" and abs(full.detail["read_at_pflops"]["distill"] - 0.0025) < 1e-12
    shared = evaluate_claim(Claim(**{**claim.__dict__, "teacher_students": 5}), {}, None, curves, teacher)
    assert shared.verdict == "reproduced" and abs(shared.detail["read_at_pflops"]["distill"] - 0.0015) < 1e-12
    assert shared.detail["read_at_pflops"]["teacher_pflops_counted"] == 0.0005


def test_within_claim_and_against_the_arms_own_start():
    scores = {"mixing": {"rl": arm(0.50, rng_seed=1), "before:rl": arm(0.50, rng_seed=2), "base": arm(0.2, rng_seed=3)}}
    same = Claim(id="C2a", text="no drift", metric="mixing", arm="rl", against="before", direction="within", threshold=0.05)
    v = evaluate_claim(same, scores)
    assert v.verdict == "reproduced" and abs(v.estimate) < 0.05  # read against before:rl, not base (0.3 away)
    assert evaluate_claim(Claim(**{**same.__dict__, "against": "base"}), scores).verdict == "not reproduced"


def test_from_start_compares_changes_not_levels():
    """Both arms end at 0.6 mixing, but one started at 0.3 and the other at 0.5: the first moved more."""
    scores = {"mixing": {"adv": arm(0.6, rng_seed=1), "before:adv": arm(0.3, rng_seed=2),
                         "even": arm(0.6, rng_seed=3), "before:even": arm(0.5, rng_seed=4)}}
    levels = Claim(id="C2m3", text="t", metric="mixing", arm="adv", against="even", direction="greater", threshold=0.0)
    assert evaluate_claim(levels, scores).verdict != "reproduced"
    v = evaluate_claim(Claim(**{**levels.__dict__, "from_start": True}), scores)
    assert v.verdict == "reproduced" and abs(v.estimate - 0.2) < 0.05


def test_a_level_claim_reads_the_arm_alone():
    scores = {"pass@64": {"base": arm(0.05, rng_seed=5)}}
    low = Claim(id="S0", text="the base rarely succeeds", metric="pass@64", arm="base", against=None, direction="less", threshold=0.2)
    v = evaluate_claim(low, scores)
    assert v.verdict == "reproduced" and abs(v.estimate - 0.05) < 0.02


def test_matched_compute_at_a_named_arms_budget():
    curves = {"accuracy": {a: {s: [(0.0, problems(0.3)), (x, problems(v + 0.01 * s))] for s in range(3)}
                           for a, x, v in (("distill", 0.002, 0.6), ("rl", 0.004, 0.8))}}
    claim = Claim(id="S3", text="t", metric="accuracy", arm="distill", against="rl", direction="greater", at_pflops="distill")
    v = evaluate_claim(claim, {}, {"distill": {0: 0.002, 1: 0.002, 2: 0.002}}, curves)
    # distill read trained, rl at its start (0.004 is past the budget): RL loses with no compute at all, so no verdict
    assert v.verdict == "unmatched" and abs(v.estimate - 0.31) < 1e-9
    assert v.detail["at_pflops"] == 0.002 and v.detail["read_at_pflops"] == {"distill": 0.002, "rl": 0.0}


def test_a_named_arms_budget_reads_every_one_of_its_runs_at_its_end():
    """Runs of one arm differ in FLOPs (completion lengths): at their mean, the costlier seed would
    be read at an earlier checkpoint, not at the arm's whole budget."""
    curves = {"accuracy": {"distill": {0: [(0.0, {"q": 0.0}), (0.001, {"q": 0.1}), (0.0021, {"q": 0.5})],
                                       1: [(0.0, {"q": 0.0}), (0.001, {"q": 0.2}), (0.0019, {"q": 0.7})]},
                           "rl": {s: [(0.0, {"q": 0.0}), (0.00205, {"q": 0.4})] for s in (0, 1)}}}
    claim = Claim(id="S3", text="t", metric="accuracy", arm="distill", against="rl", direction="greater", at_pflops="distill")
    v = evaluate_claim(claim, {}, {"distill": {0: 0.0021, 1: 0.0019}}, curves)
    assert v.detail["at_pflops"] == 0.0021 and v.detail["arm_mean"] == 0.6  # both seeds at their ends (0.5, 0.7)
    assert v.detail["against_mean"] == 0.4  # rl read at 0.00205, within the budget


def test_short_arm_notes_read_the_seeds_the_claim_pairs():
    """RL has 5 seeds, distillation 3: the claim pairs seeds 0-2, so RL's seeds 3 and 4, which ended
    under the budget, neither make RL "short" nor lower the PFLOPs it is read at."""
    claim = Claim(id="R4", text="distill beats RL at matched compute", metric="accuracy", arm="distill", against="rl",
                  direction="greater", at_pflops=0.002)

    def curve(values, seed):
        return [(x, {f"q{i}": v + 0.01 * ((i + seed) % 3 - 1) for i in range(50)}) for x, v in values]

    curves = {"accuracy": {
        "distill": {s: curve([(0.0, 0.3), (0.002, 0.6)], s) for s in range(3)},
        "rl": {**{s: curve([(0.0, 0.3), (0.002, 0.4)], s) for s in range(3)}, **{s: curve([(0.0, 0.3), (0.0005, 0.3)], s) for s in (3, 4)}},
    }}
    v = evaluate_claim(claim, {}, None, curves)
    assert v.n_seeds == 3 and "short" not in v.detail, v.detail
    assert v.detail["read_at_pflops"]["rl"] == 0.002 and v.verdict == "reproduced"


def test_a_missing_start_is_missing_not_a_plain_comparison():
    """A from_start claim whose against arm has no evaluation before training is inconclusive (it
    silently compared the levels instead)."""
    scores = {"mixing": {"adv": arm(0.6, rng_seed=1), "before:adv": arm(0.3, rng_seed=2), "even": arm(0.4, rng_seed=3)}}
    claim = Claim(id="C2m3", text="t", metric="mixing", arm="adv", against="even", direction="greater", from_start=True)
    v = evaluate_claim(claim, scores)
    assert v.verdict == "inconclusive" and v.detail["missing"] == ["before:even"]


def test_a_within_claim_needs_a_positive_margin():
    with pytest.raises(UserError, match="positive threshold"):  # |d| < 0 never holds; below 0 two equal arms read "not reproduced"
        Claim(id="W", text="t", metric="mixing", arm="rl", against="base", direction="within", threshold=0.0)


def test_matched_compute_keeps_the_starts_sample_counts():
    """A from_start claim read at a budget steps its floor by one sample of 16 for the starts too:
    it stepped by one problem there (a 16x wider standard error) when the budget's counts replaced
    the study's."""
    flat = {s: problems(0.5, 64) for s in range(3)}
    sixteen = {s: problems(16, 64) for s in range(3)}
    scores = {"accuracy": {"a": flat, "b": flat, "before:a": flat, "before:b": flat},
              "samples": {"a": sixteen, "b": sixteen, "before:a": sixteen, "before:b": sixteen}}
    curves = {m: {name: {s: [(0.001, by_seed[s])] for s in range(3)} for name, by_seed in scores[m].items() if name in ("a", "b")}
              for m in ("accuracy", "samples")}
    claim = Claim(id="F", text="t", metric="accuracy", arm="a", against="b", direction="greater", from_start=True)
    plain = evaluate_claim(claim, scores)
    budget = evaluate_claim(Claim(**{**claim.__dict__, "at_pflops": 0.002}), scores, None, curves)
    assert budget.detail["se"] == pytest.approx(plain.detail["se"]) and plain.detail["se"] < 0.002


def test_seeds_one_side_lacks_are_left_out_and_named():
    v = evaluate_claim(C1, {"accuracy": {"rl": arm(0.6, seeds=(0, 1, 2, 3, 4), rng_seed=2), "base": arm(0.3, rng_seed=1)}})
    assert v.n_seeds == 3 and v.detail["unpaired_seeds"] == [3, 4]


def test_a_claim_at_its_own_level_says_so_beside_its_interval():
    from rlsft.verdicts.report import claims_section

    loose = Claim(**{**C1.__dict__, "alpha": 0.1})
    scores = {"accuracy": {"rl": arm(0.6, rng_seed=2), "base": arm(0.3, rng_seed=1)}}
    v = evaluate_claim(loose, scores)
    assert v.interval == "80% two-sided"
    (row,) = [line for line in claims_section([v], {"C1": loose}) if line.startswith("| C1 |")]
    assert "(80% two-sided CI, alpha 0.1)" in row
