"""`rlsft score` end to end through the real console script, and its bad-input table."""

import json
import subprocess
import sys

import pytest

RLSFT = [sys.executable, "-m", "rlsft.cli"]


def run(*args, **kw):
    return subprocess.run([*RLSFT, *args], capture_output=True, text=True, timeout=120, **kw)


def score_golds(task: str, rows: list[dict], tmp_path) -> dict:
    """`rlsft score` on each gold answer given as a completion (the gold audit)."""
    inp = tmp_path / f"{task}-golds.jsonl"
    inp.write_text("".join(json.dumps({"completion": f"<answer>{r['answer']}</answer>", "answer": r["answer"]}) + "\n" for r in rows))
    out = tmp_path / f"{task}-scored.jsonl"
    p = run("score", "--task", task, "--completions", str(inp), "--out", str(out))
    assert p.returncode == 0, p.stderr
    scored = [json.loads(line) for line in out.open()]
    assert len(scored) == len(rows) and set(scored[0]) == {"completion", "answer", "correct", "correct_lenient", "format_ok", "language_consistency", "mixed"}
    return json.loads(p.stdout)


def test_score_golds_upstream_format(upstream_data, tmp_path):
    from rlsft.scoring.tasks import load_gsm8k, load_math500

    for task, rows in (("gsm8k", load_gsm8k("test", source=str(upstream_data / "gsm8k" / "test.jsonl"))),
                       ("math500", load_math500("test", source=str(upstream_data / "math500" / "test.jsonl")))):
        summary = score_golds(task, rows, tmp_path)
        assert summary["accuracy"] == 1.0 and summary["n_unverifiable"] == 0 and summary["n"] == len(rows)
        assert summary["accuracy_lenient"] == 1.0
        assert summary["format_rate"] == 0.0  # no <think> block: strict format fails, correctness doesn't


@pytest.mark.full_data
def test_score_every_gsm8k_and_math500_gold(full_data, tmp_path):
    from rlsft.scoring.tasks import load_gsm8k, load_math500

    for task, rows, n in (("gsm8k", load_gsm8k("test", source=str(full_data / "gsm8k" / "test.jsonl")), 1319),
                          ("math500", load_math500("test", source=str(full_data / "math500" / "test.jsonl")), 500)):
        summary = score_golds(task, rows, tmp_path)
        assert summary["n"] == n and summary["accuracy"] == 1.0 and summary["n_unverifiable"] == 0


def test_score_fields_and_languages(tmp_path):
    inp = tmp_path / "in.jsonl"
    lines = [
        {"completion": "<think> 3 + 5 = 8 所以 </think> <answer>8</answer>", "answer": "8"},
        {"completion": "<think> 首先 3 + 5 = 8 </think> <answer>8</answer>", "answer": "8", "language": "zh", "prompt": "p"},
        {"completion": "<think> so </think> <answer>9</answer>", "answer": "\\frac{"},
    ]
    inp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    p = run("score", "--task", "micro-arith", "--completions", str(inp), "--out", str(out))
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["accuracy"], s["n_unverifiable"], s["mixing_rate"], s["format_rate"]) == (1.0, 1, pytest.approx(1 / 3), 1.0)
    rows = [json.loads(line) for line in out.open()]
    assert [r["mixed"] for r in rows] == [True, False, False]
    assert rows[1]["prompt"] == "p" and rows[2]["correct"] is None


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, ["--task", "gsm9k"], "unknown task 'gsm9k'; valid: gsm8k"),
        (None, ["--task", "gsm8k", "--completions", "/nonexistent.jsonl"], "file not found: /nonexistent.jsonl"),
        ('{"completion": "a", "answer": "1"}\n{oops}\n', ["--task", "gsm8k"], "in.jsonl:2: not valid JSON"),
        ('{"completion": "a"}\n', ["--task", "gsm8k"], "in.jsonl:1: missing field(s) answer"),
        ('[1, 2]\n', ["--task", "gsm8k"], "in.jsonl:1: expected a JSON object"),
        ('{"completion": "a", "answer": "1"}\n', ["--task", "gsm8k", "--language", "klingon"], "unknown language 'klingon'"),
        ('{"completion": "a", "answer": "1", "language": "xx"}\n', ["--task", "gsm8k"], "unknown language 'xx'"),
        ("", ["--task", "gsm8k"], "no records to score"),
        (None, ["--task", "gsm8k", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    ],
)
def test_score_bad_input(tmp_path, content, args, message):
    inp = tmp_path / "in.jsonl"
    if content is not None:
        inp.write_text(content)
    out = tmp_path / "out.jsonl"
    if "--completions" not in args:
        args = [*args, "--completions", str(inp)]
    p = run("score", *args, "--out", str(out))
    assert p.returncode == 2
    assert message in p.stderr and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert not out.exists()  # nothing half-written


def test_eval_offline_hub_id_fails_cleanly(tmp_path):
    p = run("eval", "--model", "Qwen/Qwen2.5-0.5B", "--task", "micro-arith", "--n", "2", "--out", str(tmp_path / "e"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "cannot load tokenizer 'Qwen/Qwen2.5-0.5B'" in p.stderr and "offline" in p.stderr
    assert not (tmp_path / "e").exists()
