"""The micro pipeline end to end at toy size: corpus -> tokenizer -> model -> it learns."""

import json
from collections import Counter

import pytest
import torch

from rlsft.io import to_jsonl
from rlsft.micro.pretrain import ModelShape, PretrainConfig, main
from rlsft.micro.tokenizer import TAGS, train_tokenizer
from rlsft.micro.world import ArithConfig, CorpusConfig, corpus_rows, generate_problems
from rlsft.models import load_tokenizer
from rlsft.scoring.tasks import build_prompt

TEXTS = [
    "<think> First, 12 + 7 = 19. So the answer is 19. </think> <answer>19</answer>",
    "<think> 先算 12 加 7 等于 19。 所以答案是 19。 </think> <answer>19</answer>",
    "<think> First, 3 * 4 = 12. 再算 12 减 5 等于 7。 So the answer is 7. </think> <answer>7</answer>",
]


def test_tokenizer_round_trips_through_the_recipes_loading_path(tmp_path):
    rows = corpus_rows(400, seed=0)
    tok = train_tokenizer([build_prompt(r["question"]) + r["completion"] for r in rows], vocab_size=400)
    tok.save_pretrained(tmp_path)
    # a qwen2 model type beside it: the case where AutoTokenizer could swap in Qwen2's pre-tokenizer
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}')
    loaded = load_tokenizer(str(tmp_path))  # the loader every recipe uses
    # the very tokenizer that was saved: no pre-tokenizer or normaliser swapped in by a model-type mapping
    assert json.loads(loaded.backend_tokenizer.to_str())["pre_tokenizer"] == json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"]
    for text in TEXTS + [r["completion"] for r in rows[:50]]:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]  # same pre-tokenizer after loading
        assert loaded.decode(ids, skip_special_tokens=True) == text
    for tag in TAGS:  # one id each, never split
        assert len(loaded(tag, add_special_tokens=False)["input_ids"]) == 1
    for r in rows[:50]:  # prompt and completion tokenise apart as they do together (no merge across "Assistant:<think>")
        prompt = build_prompt(r["question"])
        enc = lambda t: loaded(t, add_special_tokens=False)["input_ids"]  # noqa: E731
        assert enc(prompt + r["completion"]) == enc(prompt) + enc(r["completion"])
    digits = loaded("123", add_special_tokens=False)["input_ids"]
    assert len(digits) == 3  # digits are tokenised one by one


def tiny_pretrain_and_eval(tmp_path, max_steps: int) -> tuple[dict, float]:
    """Pretrain a toy model on one-step additions; return its greedy held-out metrics and the best constant guess."""
    # operands to 40: 1,600 sums, enough for 24 held out by step chain (test: 14% of chains, whose
    # question is also outside the pretraining region: about 3% of them)
    easy = ArithConfig(min_steps=1, max_steps=1, max_operand=40, operations=("+",), word_share=0.0)
    cfg = PretrainConfig(
        name="tiny", out_dir=str(tmp_path / "tiny"), n_documents=3000, countdown_share=0.0, arith=easy,
        corpus=CorpusConfig(language_shares={"en": 0.8, "zh": 0.2}, error_rate={"en": 0.0, "zh": 0.0}),
        vocab_size=800, model=ModelShape(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=384, max_positions=512),
        batch_size=16, learning_rate=5e-3, warmup_steps=10, max_steps=max_steps, eval_n=0, threads=1,
    )
    threads = torch.get_num_threads()
    out = main(cfg)
    card = json.loads((out / "rlsft_card.json").read_text())
    # it trained on 1 thread and gave this process its own count back (later in-process runs' sums depend on it)
    assert card["threads"] == 1 and torch.get_num_threads() == threads
    losses = [loss for _, loss in card["loss_curve"]]
    assert losses[-1] < 0.5 * losses[0]

    from rlsft.scoring.evaluate import EvalArgs, evaluate

    problems = generate_problems("micro-arith", "test", 24, seed=0, arith=easy)  # 24 distinct held-out sums
    src = tmp_path / "easy.jsonl"
    src.write_text(to_jsonl([{k: p[k] for k in ("id", "question", "answer")} for p in problems]))
    res = evaluate(EvalArgs(model=str(out), task="micro-arith", out=str(tmp_path / "eval"), source=str(src), n=24,
                            temperature=0.0, max_new_tokens=40, batch_size=24))
    baseline = Counter(p["answer"] for p in problems).most_common(1)[0][1] / len(problems)
    return res["metrics"], baseline


def test_tiny_pipeline_learns_the_template(tmp_path):
    # 150 steps teach the R1-Zero template (and halve the loss); the sums themselves take longer (see below)
    m, _ = tiny_pretrain_and_eval(tmp_path, max_steps=150)
    assert m["format_rate"]["value"] > 0.9


@pytest.mark.slow
def test_tiny_pipeline_learns_to_add(tmp_path):
    # about 4 minutes on 2 cores: greedy held-out accuracy well above the best constant guess
    m, baseline = tiny_pretrain_and_eval(tmp_path, max_steps=300)
    assert m["format_rate"]["value"] > 0.9
    assert m["pass@1"]["value"] > baseline + 0.2, (m["pass@1"], baseline)


def test_publish_swaps_a_whole_model_in_and_refuses_other_folders(tmp_path):
    """An older model is replaced whole (renamed aside, then deleted), and a folder that holds
    anything but a micro model is never deleted: publishing once emptied a checkout named as out_dir."""
    from rlsft.io import UserError
    from rlsft.micro.pretrain import check_out, publish

    out = tmp_path / "models" / "m"
    out.mkdir(parents=True)
    (out / "rlsft_card.json").write_text("{}")
    (out / "old.safetensors").write_text("old")
    staging = tmp_path / "models" / ".m-new"
    staging.mkdir()
    (staging / "rlsft_card.json").write_text('{"new": 1}')
    publish(staging, out)
    assert sorted(f.name for f in out.iterdir()) == ["rlsft_card.json"] and "new" in (out / "rlsft_card.json").read_text()
    assert sorted(f.name for f in (tmp_path / "models").iterdir()) == ["m"]  # nothing aside is left
    other = tmp_path / "checkout"
    other.mkdir()
    (other / "README.md").write_text("keep me")
    with pytest.raises(UserError, match="no micro model"):
        check_out(other)
    check_out(tmp_path / "empty-or-new")  # a new folder is fine
    assert (other / "README.md").read_text() == "keep me"
