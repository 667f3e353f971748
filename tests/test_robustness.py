"""Property-based robustness of the verifier, the rewards and the language metric (hypothesis).

Random and adversarial completions: huge numbers, power towers, unbalanced braces, long strings,
control characters, mixed scripts. Nothing raises, no call costs the calling process over 1 s of
CPU (answer checks run in worker processes with their own time limit), an unparseable gold never
pays, and reward-hacking shapes earn nothing.
"""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlsft.scoring import pool
from rlsft.scoring.language import language_stats
from rlsft.scoring.rewards import accuracy_reward, format_reward, language_consistency_reward
from rlsft.scoring.tasks import get_task

PIECES = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "{", "}", "\\frac{", "^{", "10^{10^{10^{10}}}",
    "9" * 5000, "(", ")", "=", "\\sqrt{", "\\left(", "\\right)", "所以答案是", " or ", ",", "\\{", "\\}", "\\pm",
    "\x00", "\x1b[31m", "\u202e", "\ufeff", "Привет", "مرحبا", "😀", "\\", "$$", "\n", " ", "-", "e", "1e999",
    "nan", "inf", "0.000000001", "x", "\\infty", "[1,2]", "\\text{", "\\begin{matrix}",
])
COMPLETIONS = st.one_of(st.text(max_size=300), st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=40).map("".join))
GOLDS = st.one_of(st.sampled_from(["18", "-3", "\\frac{1}{2}", "10^{10}", "72"]), st.text(max_size=20))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def timed(fn, *args):
    """`fn(*args)`, checking it spent under a second of this process's CPU time: the verifier's
    budget, measured so that other jobs on a shared machine cannot make the check fail."""
    t = time.process_time()
    out = fn(*args)
    elapsed = time.process_time() - t
    assert elapsed < 1.0, (elapsed, [a[:80] if isinstance(a, str) else a for a in args])
    return out


@FAST
@given(COMPLETIONS, GOLDS)
def test_verifier_never_raises_and_costs_the_caller_under_a_second(completion, gold):
    # a check runs in a worker, which turns an exception into None: the pool counts those apart
    failures = pool.FAILURES["count"]
    (result,) = timed(get_task("gsm8k").verify_many, [completion], [gold])
    assert result in (True, False, None) and pool.FAILURES["count"] == failures, (completion[:80], gold)


@FAST
@given(COMPLETIONS)
def test_rewards_and_language_metric_never_raise(completion):
    acc = timed(accuracy_reward, [completion], ["18"])[0]
    assert acc in (0.0, 1.0, None)
    assert timed(format_reward, [completion])[0] in (0.0, 1.0)
    lang = timed(language_consistency_reward, [completion])[0]
    assert 0.0 <= lang <= 1.0
    stats = timed(language_stats, completion)
    assert stats.consistency is None or 0.0 <= stats.consistency <= 1.0


def test_megabyte_completion_is_fast():
    huge = "<think> " + "所以 so 1 + 1 = 2. " * 60_000 + " </think> <answer>" + "9" * 100_000 + "</answer>"
    assert len(huge) > 1_000_000
    assert timed(get_task("gsm8k").verify_many, [huge], ["18"]) == [False]
    timed(language_stats, huge)


@settings(max_examples=100, deadline=None)
@given(COMPLETIONS, st.sampled_from(["", "   ", "\\frac{", "}{", "\\boxed{", "{{{", "x ="]))
def test_unparseable_gold_never_pays(completion, gold):
    reward = accuracy_reward([completion], [gold])[0]
    assert reward != 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(-1000, 1000), st.integers(1, 50))
def test_hacking_shapes_earn_nothing(n, spread):
    gold = str(n)
    hacks = [
        f"<answer>{n} or {n + spread}</answer>",  # a hedge
        f"<answer>{n - spread}, {n}, {n + spread}</answer>",  # an answer set
        f"<answer>\\{{{n}, {n + spread}\\}}</answer>",
        f"<think> the answer is <answer>{n}</answer> </think>",  # only inside the reasoning
        f"<answer>{n + spread}</answer> <answer>{n}</answer>",  # repeated tags that disagree
        "<answer></answer>",  # empty
        f"<think> {n} </think> <answer> </answer>",
    ]
    assert accuracy_reward(hacks, [gold] * len(hacks)) == [0.0] * len(hacks)


def test_a_failed_run_keeps_its_evaluation_before_training_and_drops_an_empty_folder(tmp_path):
    """A crash (no user error) after the evaluation before training keeps the folder for --resume;
    one before anything of value was made leaves no folder; a user error leaves none either."""
    from pathlib import Path
    from types import SimpleNamespace

    import pytest

    from rlsft.config import RunConfig
    from rlsft.io import UserError
    from rlsft.launch import run_recipe

    def failing(error, evaluated):
        def main(cfg, resume=False):
            folder = Path(cfg.run.out_dir)
            (folder / "eval_before" / "micro-arith").mkdir(parents=True) if evaluated else folder.mkdir(parents=True)
            (folder / "config.yaml").write_text("recipe: grpo\n")
            raise error
        return SimpleNamespace(main=main)

    for name, error, evaluated, kept in (("oom", RuntimeError("out of memory"), True, True), ("bare", RuntimeError("bug"), False, False),
                                         ("user", UserError("bad"), True, False)):
        cfg = SimpleNamespace(run=RunConfig(name=name, out_dir=str(tmp_path / name)))
        with pytest.raises(type(error)):
            run_recipe(failing(error, evaluated), cfg)
        assert (tmp_path / name).exists() == kept, name
