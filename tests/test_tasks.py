"""Task registry, data loading from local upstream-format files, prompts."""

import json

import pytest

from rlsft.io import UserError
from rlsft.scoring.tasks import TASKS, build_prompt, get_task, gsm8k_gold, load_gsm8k, load_math500


def test_registry_and_unknown_name():
    assert {"gsm8k", "math500", "micro-arith", "micro-countdown"} <= set(TASKS)
    with pytest.raises(UserError) as e:
        get_task("gsm9k")
    assert "unknown task 'gsm9k'" in str(e.value) and "gsm8k, math500" in str(e.value)


def test_prompt_templates():
    p = build_prompt("What is 2 + 3?")
    assert p.startswith("A conversation between User and Assistant.") and "<think> reasoning process here </think>" in p
    assert p.endswith("User: What is 2 + 3? Assistant:")
    chat = build_prompt("What is 2 + 3?", "chat", system_prompt="Be brief.")
    assert chat == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    with pytest.raises(UserError, match="unknown template"):
        build_prompt("q", "alpaca")


def test_gsm8k_local(upstream_data):
    rows = load_gsm8k("test", source=str(upstream_data / "gsm8k" / "test.jsonl"), n=3)
    assert [r["answer"] for r in rows] == ["6", "10", "1550"] and rows[0]["question"].startswith("A baker")
    assert gsm8k_gold("so 1,000\n#### 1,000") == "1000"


def test_gsm8k_from_env_dir(upstream_data, monkeypatch):
    from conftest import GSM8K_ROWS

    monkeypatch.setenv("RLSFT_DATA", str(upstream_data))
    assert len(load_gsm8k("test")) == len(GSM8K_ROWS)


def test_gsm8k_validation_is_a_hashed_share_of_train(tmp_path):
    from rlsft.scoring.tasks import in_validation

    rows = [{"question": f"What is {a} + {b}?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"} for a in range(20) for b in range(20)]
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, validation = load_gsm8k("train", source=str(f)), load_gsm8k("validation", source=str(f))
    assert len(train) + len(validation) == 400 and 10 <= len(validation) <= 50  # about 7%
    assert not {r["question"] for r in train} & {r["question"] for r in validation}
    assert all(in_validation(r["question"]) for r in validation)
    assert {r["id"] for r in train} | {r["id"] for r in validation} == {f"gsm8k-train-{i}" for i in range(400)}  # upstream ids kept
    with pytest.raises(UserError, match="unknown split 'dev'"):
        load_gsm8k("dev", source=str(f))


def test_math500_has_no_validation_split(upstream_data):
    with pytest.raises(UserError, match="math500 is a test set only.*gsm8k"):
        load_math500("validation", source=str(upstream_data / "math500" / "test.jsonl"))


def test_math500_local(upstream_data):
    rows = load_math500("test", source=str(upstream_data / "math500" / "test.jsonl"))
    assert len(rows) == 6 and rows[2]["answer"] == "\\left( 2, \\frac{\\pi}{6} \\right)" and rows[0]["id"] == "test/prealgebra/t1.json"


def test_math500_answer_from_solution_boxed(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "solution": "so \\boxed{2}."}) + "\n")
    assert load_math500(source=str(f)) == [{"id": "math500-test-0", "question": "1+1?", "answer": "2"}]


def test_bad_data_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("RLSFT_DATA", raising=False)
    with pytest.raises(UserError, match="file not found"):
        load_gsm8k(source=str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(UserError, match="bad.jsonl:2: not valid JSON"):
        load_gsm8k(source=str(bad))
    noans = tmp_path / "noans.jsonl"
    noans.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(UserError, match="record 1: answer does not end in '#### N'"):
        load_gsm8k(source=str(noans))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="empty"):
        load_gsm8k(source=str(empty))


def test_hub_offline_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("RLSFT_DATA", raising=False)
    with pytest.raises(UserError) as e:
        load_gsm8k("test")
    msg = str(e.value)
    assert "openai/gsm8k" in msg and "offline" in msg.lower() and "\n" not in msg


def test_evaluation_reads_the_split_it_is_given(toy_model, tmp_path):
    """`eval.split: validation` (what sweeps set) reads validation problems and records it; no
    validation problem is a test problem."""
    from rlsft.scoring.evaluate import EvalArgs, evaluate

    got = {split: evaluate(EvalArgs(model=toy_model, task="micro-arith", out=str(tmp_path / split), n=3, split=split, max_new_tokens=8))
           for split in ("test", "validation")}
    assert {s: r["split"] for s, r in got.items()} == {"test": "test", "validation": "validation"}
    questions = {s: {json.loads(line)["question"] for line in (tmp_path / s / "samples.jsonl").read_text().splitlines()} for s in got}
    assert len(questions["validation"]) == 3 and not questions["validation"] & questions["test"]
    with pytest.raises(UserError, match="'math500' has no validation split"):
        evaluate(EvalArgs(model=toy_model, task="math500", out=str(tmp_path / "m"), n=1, split="validation"))


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"  # the field's benchmarks, in their upstream formats


def test_the_fields_benchmarks_load_from_their_local_files_and_score(monkeypatch):
    monkeypatch.setenv("RLSFT_DATA", str(FIXTURES))  # laid out as ../shared/data: nothing is downloaded
    aime = get_task("aime24").load("test")
    assert len(aime) == 3 and aime[1]["answer"] == "370" and aime[1]["id"] == "aime24-61"
    assert get_task("aime24").verify_many(["<think> (x+y)^3 - 3xy(x+y) </think> <answer>370</answer>", "<answer>371</answer>"],
                                          ["370", "370"]) == [True, False]
    # Countdown: TinyZero's instruction; its test rows are the last eighth of a copy smaller than the upstream
    train, test = get_task("countdown").load("train"), get_task("countdown").load("test")
    assert len(test) == 2 and 12 <= len(train) <= 14  # 16 rows: 2 for test, the rest train less a hashed 7% validation share
    first = json.loads((FIXTURES / "countdown" / "train.jsonl").read_text().splitlines()[0])
    row = next(r for r in train + test if r["id"] == "countdown-0")
    assert str(first["nums"]) in row["question"] and f"equals {first['target']}" in row["question"]
    every_number_once = " + ".join(map(str, first["nums"]))  # the fixture's targets are their numbers' sums
    all_but_one = " + ".join(map(str, first["nums"][:-1]))
    assert get_task("countdown").verify_many([f"<answer>{every_number_once}</answer>", f"<answer>{all_but_one}</answer>"],
                                             [row["answer"]] * 2) == [True, False]  # each number exactly once, as TinyZero checks
    # MGSM: one task per language, whose completions are held to that language
    zh = get_task("mgsm-zh")
    rows = zh.load("test")
    assert zh.language == "zh" and rows[0]["answer"] == "12" and "苹果" in rows[0]["question"]
    assert get_task("mgsm-en").load("test", n=2)[1]["answer"] == "8"


def test_the_fields_benchmarks_refuse_bad_files_and_missing_splits_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"target": 5, "numbers": [2, 3]}) + "\n")
    with pytest.raises(UserError, match=r"record 1 needs a whole-number 'target' and a non-empty list of whole numbers 'nums'"):
        get_task("countdown").load("test", source=str(bad))
    for values in ({"target": "abc", "nums": [2, 3]}, {"target": 5, "nums": [1, "x"]}, {"target": 5, "nums": []}):
        (tmp_path / "values.jsonl").write_text(json.dumps(values) + "\n")
        with pytest.raises(UserError, match="record 1 needs a whole-number 'target'"):
            get_task("countdown").load("test", source=str(tmp_path / "values.jsonl"))
    (tmp_path / "mgsm.jsonl").write_text(json.dumps({"question": "q", "answer_number": "four"}) + "\n")
    with pytest.raises(UserError, match="numeric 'answer_number'"):
        get_task("mgsm-zh").load("test", source=str(tmp_path / "mgsm.jsonl"))
    (tmp_path / "gsm.jsonl").write_text(json.dumps({"question": "q", "answer": "so 2\n#### "}) + "\n")
    with pytest.raises(UserError, match="nothing follows '####'"):
        get_task("gsm8k").load("test", source=str(tmp_path / "gsm.jsonl"))
    with pytest.raises(UserError, match=r"record 1 needs 'problem' and 'answer'"):
        get_task("aime24").load("test", source=str(bad))
    with pytest.raises(UserError, match=r"record 1 needs a text 'question' and a numeric 'answer_number'"):
        get_task("mgsm-zh").load("test", source=str(bad))
    with pytest.raises(UserError, match="aime24 is a test set only"):
        get_task("aime24").load("validation", source=str(FIXTURES / "aime_2024" / "train.jsonl"))
    with pytest.raises(UserError, match="cannot load dataset 'juletxara/mgsm'.*HF_HUB_OFFLINE"):
        get_task("mgsm-ja").load("test")  # offline and not cached: one line naming the hub id
