"""Language metric: words, consistency and mixing in both directions."""

import pytest

from rlsft.scoring.language import is_mixed, language_consistency, language_stats, words


def test_pure_english_and_pure_chinese():
    en = "<think> First, 3 + 5 = 8. Then 8 * 2 = 16. So the answer is 16. </think> <answer>16</answer>"
    zh = "<think> 首先，3 + 5 = 8。然后 8 * 2 = 16。所以答案是 16。 </think> <answer>16</answer>"
    assert language_consistency(en, "en") == 1.0 and not is_mixed(en, "en")
    assert language_consistency(zh, "zh") == 1.0 and not is_mixed(zh, "zh")
    assert language_consistency(en, "zh") == 0.0 and is_mixed(en, "zh")
    assert language_consistency(zh, "en") == 0.0 and is_mixed(zh, "en")


def test_single_chinese_word_in_english_counts():
    text = "First 3 + 5 = 8, 所以 the answer is 8"
    stats = language_stats(text, "en")
    assert stats.mixed
    assert stats.n_words == 6  # First, the, answer, is + 所, 以 (each CJK character is a word)
    assert stats.consistency == pytest.approx(4 / 6)


def test_english_word_in_chinese_counts():
    assert is_mixed("首先 3 + 5 = 8，then 答案是 8", "zh")
    assert language_consistency("首先 3 + 5 = 8，then 答案是 8", "zh") == pytest.approx(5 / 6)


def test_tags_latex_numbers_code_and_variables_do_not_count():
    text = "<think> $\\frac{x}{2}$ \\cdot 12 = 3.5 `print(len(s))` ```\ndef f(): return 1\n``` x y </think> <answer>\\boxed{7}</answer>"
    assert words(text) == []
    assert language_consistency(text, "en") is None
    assert not is_mixed(text, "en")


def test_other_scripts_and_languages():
    assert language_consistency("Привет мир", "ru") == 1.0
    assert is_mixed("Привет world", "ru")
    assert language_consistency("こんにちは 世界", "ja") == 1.0
    # MGSM's Bengali and Telugu: vowel signs are marks inside words, digits are not letters
    assert not is_mixed("রামের কাছে ৫টি আপেল আছে। মোট ১২টি।", "bn") and is_mixed("রামের কাছে 5 apples আছে।", "bn")
    assert not is_mixed("రాముడి దగ్గర 5 ఆపిల్స్ ఉన్నాయి. మొత్తం 12.", "te") and is_mixed("రాముడి దగ్గర so మొత్తం 12.", "te")
    assert is_mixed("Rama has 5 apples ఉన్నాయి.", "en")
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        language_stats("hi", "xx")


def test_language_id_where_scripts_do_not_tell():
    french = "Nous avons trois pommes et nous en achetons encore cinq au marché ce matin"
    assert language_stats(french, "fr").consistency == 1.0
    # English target: scripts alone don't tell; language ID is opt-in
    assert not language_stats(french, "en").mixed
    assert language_stats(french, "en", language_id=True).mixed


@pytest.mark.parametrize("text, mixed", [
    ("The area is πr^2 = 4π since r = 2.", False),  # π is a math symbol
    ("Let θ be the angle; sin θ = 1/2 so θ = 30°.", False),
    ("The set ℝ of reals contains x = 2.", False),  # letterlike symbols are not words
    ("Take 𝑥 and ⁿ as symbols, and ℕ too.", False),  # mathematical alphanumerics, superscripts
    ("She pays $5 所以 she has $10 left.", True),  # $5 ... $10 is money, not math mode
    ("We solve $\\text{所以} x = 2$ and stop.", True),  # \text{} holds words
    ("We solve $x = 2$ and $\\textbf{hence} y = 3$.", False),
    ("```python\nx = 1  # 所以 the loop\n``` done", True),  # non-Latin prose counts inside code
    ("```python\nresult = compute_total(items)\n``` done", False),  # Latin identifiers in code do not
    ("The total is １２３ 。", False),  # full-width digits and punctuation are not words
    ("Costs $12.50, then $1,000 more; so $3.", False),
])
def test_language_metric_on_real_text(text, mixed):
    assert language_stats(text, "en").mixed is mixed, words(text)


def test_dollar_rule():
    assert words("so $a + b$ is") == [("so", "Latin"), ("is", "Latin")]  # math: removed
    assert [w for w, _ in words("pay $5 and $10 now")] == ["pay", "and", "now"]  # money: kept as prose
    assert [w for w, _ in words("price $5$ here")] == ["price", "here"]  # $5$ opens and closes: math


def test_greek_counts_for_a_greek_target():
    assert language_stats("γεια σου κόσμε", "el").consistency == 1.0
    assert language_stats("γεια σου κόσμε", "en").n_words == 0  # for another target, Greek letters are symbols


def test_money_in_gsm8k_style_solutions_is_not_mixed(upstream_data):
    from conftest import GSM8K_ROWS

    assert not any(language_stats(r["answer"], "en").mixed for r in GSM8K_ROWS)


@pytest.mark.full_data
def test_no_gsm8k_training_solution_comes_out_mixed(full_data):
    import json

    rows = [json.loads(line) for line in (full_data / "gsm8k" / "train.jsonl").open()]
    assert len(rows) == 7473
    assert [r["answer"][:80] for r in rows if language_stats(r["answer"], "en").mixed] == []
