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
