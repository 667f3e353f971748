"""Claim predicates compute what they should on hand-made run results."""

import random

from rlsft.analysis.claims import Claim, evaluate_claim


def arm(p_correct: float, seeds=(0, 1, 2), n=200, rng_seed=0):
    """{seed: {problem_id: mean correct over 8 samples}} drawn around p_correct."""
    rng = random.Random(rng_seed)
    return {s: {f"q{i}": sum(rng.random() < p_correct for _ in range(8)) / 8 for i in range(n)} for s in seeds}


C1 = Claim(id="C1", text="RL raises accuracy", metric="accuracy", arm="rl", against="base", direction="greater")


def test_reproduced_not_reproduced_inconclusive():
    base = arm(0.3, rng_seed=1)
    assert evaluate_claim(C1, {"accuracy": {"rl": arm(0.5, rng_seed=2), "base": base}}).verdict == "reproduced"
    assert evaluate_claim(C1, {"accuracy": {"rl": arm(0.1, rng_seed=2), "base": base}}).verdict == "not reproduced"
    tiny = {"accuracy": {"rl": arm(0.3, n=10, rng_seed=3), "base": arm(0.3, n=10, rng_seed=4)}}
    v = evaluate_claim(C1, tiny)
    assert v.verdict == "inconclusive" and v.ci_low < 0 < v.ci_high


def test_estimate_is_the_paired_mean_difference():
    base = {0: {"a": 0.0, "b": 0.5}, 1: {"a": 0.5, "b": 0.5}}
    rl = {0: {"a": 1.0, "b": 0.5}, 1: {"a": 1.0, "b": 1.0}}
    v = evaluate_claim(C1, {"accuracy": {"rl": rl, "base": base}}, n_boot=200)
    assert abs(v.estimate - 0.5) < 1e-9
    # seed 0 mean diff = (1.0 + 0.0) / 2 = 0.5; seed 1 = (0.5 + 0.5) / 2 = 0.5


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
