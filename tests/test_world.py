import random

import pytest
from conftest import REPO

from rlsft.io import UserError
from rlsft.micro.world import (
    ArithConfig,
    CorpusConfig,
    CountdownConfig,
    check_countdown,
    clean_solution,
    corpus_overlap,
    corpus_rows,
    generate_problems,
    in_pretraining_region,
    make_arith_problem,
    make_countdown_problem,
    split_of,
    step_chain,
)
from rlsft.scoring.language import is_mixed
from rlsft.scoring.tasks import get_task


@pytest.mark.parametrize("task", ["micro-arith", "micro-countdown"])
def test_splits_never_share_a_step_chain(task):
    rows = {split: generate_problems(task, split, 400 if split != "validation" else 200, seed=0) for split in ("train", "validation", "test")}
    chains = {split: {step_chain(r) for r in got} for split, got in rows.items()}
    assert not chains["train"] & chains["test"] and not chains["train"] & chains["validation"] and not chains["validation"] & chains["test"]
    assert all(split_of(r) == split for split, got in rows.items() for r in got)
    # the held-out splits are never in the pretraining corpus word for word
    assert not any(in_pretraining_region(r["question"]) for split in ("validation", "test") for r in rows[split])


def test_an_expression_and_its_word_problems_share_a_split():
    rng = random.Random(5)
    problems = [make_arith_problem(rng) for _ in range(3000)]
    by_chain: dict[str, set] = {}
    for p in problems:
        by_chain.setdefault(step_chain(p), set()).add(split_of(p) == "train")
    assert any(len(ps) > 1 for ps in [{q["question"] for q in problems if step_chain(q) == c} for c in list(by_chain)[:200]])
    assert all(len(v) == 1 for v in by_chain.values())  # train or held out, never both, across wordings


def test_corpus_draws_from_the_pretraining_region_and_its_overlap_is_measured():
    test = generate_problems("micro-arith", "test", 300, seed=0)
    rows = corpus_rows(3000, seed=0)
    assert all(in_pretraining_region(r["question"]) for r in rows)
    overlap = corpus_overlap(rows, test)
    assert overlap["question_share"] == 0.0
    assert 0.0 < overlap["chain_share"] < 1.0  # held-out chains seen in other wording: the figure docs/micro-world.md reports


def test_generation_is_reproducible_from_seed():
    a = generate_problems("micro-arith", "test", 20, seed=3)
    assert a == generate_problems("micro-arith", "test", 20, seed=3)
    assert a != generate_problems("micro-arith", "test", 20, seed=4)


@pytest.mark.parametrize("steps", [2, 5])
def test_arith_difficulty_and_gold_follow_config(steps):
    cfg = ArithConfig(min_steps=steps, max_steps=steps, max_operand=20, operations=("+", "*"))
    rng = random.Random(0)
    for _ in range(200):
        p = make_arith_problem(rng, cfg)
        assert len(p["steps"]) == steps
        assert all(op in "+*" and 1 <= r <= 20 for _, op, r, _ in p["steps"])
        # the gold is the chain evaluated left to right, and the expression form agrees with it
        if p["question"].startswith("Compute "):
            assert str(eval(p["question"][len("Compute "):-1])) == p["answer"]


def test_gold_answers_verify_with_the_task_verifiers():
    for name in ("micro-arith", "micro-countdown"):
        task = get_task(name)
        for p in task.load("test", n=100):
            sol = clean_solution(p)
            assert task.verify(sol["completion"], p["answer"]) is True, (p, sol)
            assert task.verify("<think> no idea </think> <answer>-12345</answer>", p["answer"]) is False


def test_corpus_knobs_shape_the_corpus():
    zh_only = CorpusConfig(language_shares={"zh": 1.0}, error_rate={"en": 0.0, "zh": 0.0}, switch_rate=0.0)
    rows = corpus_rows(300, 0, zh_only)
    assert all(r["correct"] and r["language"] == "zh" for r in rows)
    assert all(is_mixed(r["completion"], "en") for r in rows)

    en_clean = CorpusConfig(language_shares={"en": 1.0}, error_rate={"en": 0.0, "zh": 0.0})
    assert not any(is_mixed(r["completion"], "en") for r in corpus_rows(300, 0, en_clean))

    always_wrong = CorpusConfig(language_shares={"en": 1.0}, error_rate={"en": 1.0, "zh": 0.0})
    rows = corpus_rows(300, 0, always_wrong, countdown_share=0.0)
    assert sum(r["correct"] for r in rows) / len(rows) < 0.1  # two slips can cancel, rarely

    mixed = CorpusConfig(language_shares={"mixed": 1.0}, error_rate={"en": 0.0, "zh": 0.0}, switch_rate=0.5)
    rows = corpus_rows(300, 0, mixed)
    assert all(is_mixed(r["completion"], "en") and not is_mixed(r["completion"], "zh") is False for r in rows)

    default = corpus_rows(3000, 0)
    shares = {lang: sum(r["language"] == lang for r in default) / len(default) for lang in ("en", "zh", "mixed")}
    assert abs(shares["en"] - 0.6) < 0.04 and abs(shares["zh"] - 0.25) < 0.04
    assert 0.6 < sum(r["correct"] for r in default) / len(default) < 0.95


@pytest.mark.parametrize("bad", [
    dict(language_shares={"en": 0.5}),
    dict(language_shares={"en": 0.5, "fr": 0.5}),
    dict(error_rate={"en": 2.0, "zh": 0.0}),
    dict(switch_rate=-0.1),
])
def test_corpus_config_rejects_bad_knobs(bad):
    with pytest.raises(ValueError, match="corpus"):
        CorpusConfig(**bad)


def test_difficulty_configs_reject_bad_values():
    with pytest.raises(ValueError, match="operations"):
        ArithConfig(operations=("+", "^"))
    with pytest.raises(ValueError, match="min_steps"):
        ArithConfig(min_steps=4, max_steps=2)
    with pytest.raises(ValueError, match="n_numbers"):
        CountdownConfig(n_numbers=1)


def test_too_small_world_fails_clearly():
    with pytest.raises(UserError, match="distinct"):
        generate_problems("micro-arith", "test", 500, 0, arith=ArithConfig(min_steps=1, max_steps=1, max_operand=2, word_share=0.0))


@pytest.mark.parametrize("seed", [1, 2])
def test_a_held_out_split_serves_the_default_evaluation_size_at_any_seed(seed):
    """The validation split is about 1 draw in 80: a limit on all misses together refused 256
    validation problems at seeds 1 and 2 ("only 247"), though the split holds thousands."""
    rows = generate_problems("micro-arith", "validation", 256, seed)
    assert len({r["question"] for r in rows}) == 256 and {split_of(r) for r in rows} == {"validation"}


@pytest.mark.parametrize("expr,ok", [
    ("(3 + 5) * 2", True),
    ("2 * (5 + 3)", True),
    ("16", False),  # a number not given
    ("(3 + 5) * 2 = 16", True),
    ("3 * 5 + 2 - 1", False),  # 1 is not given
    ("(3 + 3) * 2", False),  # 3 used twice
    ("2 ** 4", False),
    ("__import__('os').system('true')", False),
    ("(" * 500, False),
    ("9" * 5000, False),
    ("8 / 0", False),
    ("", False),
])
def test_check_countdown(expr, ok):
    assert check_countdown(expr, [2, 3, 5], 16) is ok


def test_countdown_says_its_operations_and_refuses_settings_with_no_problem():
    """The question names the configured operations (it said "+ - *" whatever they were), and
    settings no chain can satisfy are refused (a target of -6 came back after 1,000 tries)."""
    p = make_countdown_problem(random.Random(0), CountdownConfig(operations=("+", "*")))
    assert "with + * and brackets" in p["question"] and check_countdown(p["solution"], p["numbers"], p["target"])
    with pytest.raises(UserError, match="no valid problem"):
        make_countdown_problem(random.Random(0), CountdownConfig(n_numbers=6, max_operand=2, operations=("-",)))


def test_a_sections_own_check_is_named_once():
    from rlsft.config import load_config
    from rlsft.micro.pretrain import PretrainConfig

    with pytest.raises(UserError) as e:
        load_config(PretrainConfig, str(REPO / "configs" / "micro" / "student.yaml"), ["arith.max_operand=1"])
    assert "arith: max_operand" in str(e.value) and "arith: arith:" not in str(e.value)
