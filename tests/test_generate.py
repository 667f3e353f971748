"""Evaluation generation batched by sequences (rlsft.scoring.evaluate.generate)."""

import json
import time

import torch

from rlsft.models import load_model, load_tokenizer
from rlsft.scoring import decode
from rlsft.scoring.evaluate import generate, sequences_per_call
from rlsft.scoring.tasks import build_prompt, get_task


def _prompts(n):
    return [build_prompt(r["question"], "r1-zero") for r in get_task("micro-arith").load("test", n=n, seed=0)]


def test_same_seed_same_samples_and_shape(toy_model):
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts = _prompts(5)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(generate(model, tok, prompts, 3, 1.0, 1.0, 20, batch_size=4, tokens_per_round=8))
    assert runs[0] == runs[1]
    assert [len(g) for g in runs[0]] == [3] * 5  # K samples per prompt, in prompt order
    for g in (g for group in runs[0] for g in group):  # within budget; truncated only at the budget
        assert 1 <= g["length"] <= 20 and (not g["truncated"] or g["length"] == 20)


def test_rounds_and_batch_size_do_not_change_greedy_text(toy_model):
    """Re-batching an unfinished sequence continues it from its own tokens: greedy decoding in
    rounds of 5 tokens, 3 sequences per call, equals one call of everything to the end."""
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts = _prompts(7)
    stats = {}
    rounds = generate(model, tok, prompts, 1, 0.0, 1.0, 30, batch_size=3, tokens_per_round=5, stats=stats)
    whole = generate(model, tok, prompts, 1, 0.0, 1.0, 30, batch_size=64, tokens_per_round=30)
    assert stats["calls"] > 3 and stats["sequences_per_call"] == 3
    assert [[g["text"] for g in group] for group in rounds] == [[g["text"] for g in group] for group in whole]
    assert [[g["length"] for g in group] for group in rounds] == [[g["length"] for g in group] for group in whole]


def test_batch_is_sized_from_memory(toy_model):
    model = load_model(toy_model)
    big, small = (sequences_per_call(model, 100, 128, gb, 10_000) for gb in (2.0, 0.001))
    assert big > small >= 1
    assert sequences_per_call(model, 100, 128, 2.0, 7) == 7  # never more than wanted


def test_cpu_calls_are_capped_and_run_in_one_round(toy_model):
    """On a CPU: at most CPU_MAX_SEQUENCES a call, each call run to the end (the measured sweep)."""
    from rlsft.scoring.evaluate import CPU_MAX_SEQUENCES

    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    assert sequences_per_call(model, 10, 16, 100.0, 10_000) == CPU_MAX_SEQUENCES
    stats: dict = {}
    generate(model, tok, ["1+1=", "2+2="], 40, 1.0, 1.0, 12, stats=stats)
    assert stats["sequences_per_call"] == 40 and stats["calls"] == 2  # 80 sequences: two calls of 40 (not 64 and 16), no re-batching


def test_a_think_prefill_opens_every_text_and_answer_ends_it():
    """data.think_prefill: the prompt ends in <think>, each text is the whole assistant turn, and
    a sequence ends at </answer> (stop_strings, filled with EOS after it)."""
    from rlsft.scoring.tasks import render_prompt

    model, tok = load_model("micro-student"), load_tokenizer("micro-student")
    prompts = _prompts(8)
    assert render_prompt(prompts[0], tok, "<think>").endswith("Assistant: <think>")
    torch.manual_seed(0)
    groups = generate(model, tok, prompts, 2, 1.0, 1.0, 96, think_prefill=True)
    texts = [g for group in groups for g in group]
    assert all(g["text"].startswith("<think>") and g["text"].count("<think>") == 1 for g in texts)
    answered = [g for g in texts if "</answer>" in g["text"]]
    assert len(answered) >= 12 and all(g["text"].endswith("</answer>") and not g["truncated"] for g in answered)


def test_a_killed_generation_continues_to_the_same_samples(toy_model, tmp_path):
    """With a progress file, a generation stopped after its first call (a study's session ending
    mid-evaluation) continues from that call and gives the uninterrupted run's samples, its wall
    seconds counting the earlier sitting too; a generation with other settings ignores the file."""
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts, progress = _prompts(6), tmp_path / "partial.json"
    torch.manual_seed(5)
    whole = generate(model, tok, prompts, 2, 1.0, 1.0, 16, batch_size=4)

    real, calls = decode.generate, []

    def killed_on_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a kill leaves: the file written after call 1
        return real(*args, **kwargs)

    decode.generate = killed_on_second_call  # each generate call of evaluate's goes through it
    torch.manual_seed(5)
    try:
        generate(model, tok, prompts, 2, 1.0, 1.0, 16, batch_size=4, progress=progress)
        raise AssertionError("the generation was not interrupted")
    except KeyboardInterrupt:
        pass
    finally:
        decode.generate = real
    saved = json.loads(progress.read_text())
    assert saved["calls"] == 1 and len(saved["done"]) + len(saved["queue"]) == 12 and saved["seconds"] > 0
    progress.write_text(json.dumps({**saved, "seconds": 1000.0}))  # as if the first sitting had taken 1000 s
    torch.manual_seed(123)  # the saved generator state, not this seed, continues the run
    stats: dict = {}
    t0 = time.time()
    resumed = generate(model, tok, prompts, 2, 1.0, 1.0, 16, batch_size=4, progress=progress, stats=stats)
    assert resumed == whole and stats["calls"] == 3
    assert 1000.0 < stats["seconds"] <= 1000.0 + time.time() - t0 + 0.01  # both sittings, this one measured
    torch.manual_seed(123)  # other settings (3 samples, not 2): the file is ignored, a fresh start
    assert sum(map(len, generate(model, tok, prompts, 3, 1.0, 1.0, 16, batch_size=4, progress=progress))) == 18


def test_a_models_own_repetition_penalty_does_not_reach_evaluation(toy_model):
    """A model whose generation_config.json asks a repetition penalty (Qwen2.5-Instruct's: 1.1)
    samples in evaluation as it does without one, as TRL's training and vLLM sample it: the lab's
    sampling is only its own settings."""
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts, runs = _prompts(4), []
    for penalty in (1.0, 1.5):
        model.generation_config.repetition_penalty = penalty
        torch.manual_seed(5)
        runs.append(generate(model, tok, prompts, 2, 1.0, 1.0, 24, batch_size=8))
    assert runs[0] == runs[1]
    torch.manual_seed(5)  # the penalty would have changed them: applied by hand, generate's own path differs
    penalised = model.generate(**tok([prompts[0]], return_tensors="pt"), do_sample=True, max_new_tokens=24, top_k=0,
                               repetition_penalty=1.5, pad_token_id=tok.eos_token_id)
    torch.manual_seed(5)
    plain = model.generate(**tok([prompts[0]], return_tensors="pt"), do_sample=True, max_new_tokens=24, top_k=0,
                           repetition_penalty=1.0, pad_token_id=tok.eos_token_id)
    assert not torch.equal(penalised, plain)


def test_a_completion_ends_at_any_of_the_models_end_tokens(toy_model):
    """A model whose generation_config lists another end token (Qwen2.5-Instruct's `<|endoftext|>`
    beside `<|im_end|>`) stops there in evaluation, as TRL's GRPO rollouts stop."""
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts = _prompts(2)
    free = generate(model, tok, prompts, 1, 0.0, 1.0, 12, batch_size=2)
    first = tok(prompts[0] + free[0][0]["text"], add_special_tokens=False)["input_ids"][len(tok(prompts[0], add_special_tokens=False)["input_ids"])]
    model.generation_config.eos_token_id = [tok.eos_token_id, first]
    ended = generate(model, tok, prompts, 1, 0.0, 1.0, 12, batch_size=2)
    assert free[0][0]["length"] > 1 and ended[0][0] == {"text": "", "length": 1, "truncated": False}


def test_a_sequence_that_stops_at_answer_ends_there_in_every_call():
    """transformers fills EOS after a stop string only for rows that stopped before the call's
    last: the last row to stop (and one stopped at its budget's last token) ends on the stop
    token. It ends there all the same, and is never sent back to run on past </answer>. A model
    that cannot write EOS (a hook masks it) stands for a base model that runs on."""
    from rlsft.scoring.verify import format_ok

    model, tok = load_model("micro-student"), load_tokenizer("micro-student")
    model.register_forward_hook(lambda mod, inp, out: out.logits.__setitem__((..., tok.eos_token_id), -1e9))
    torch.manual_seed(0)
    stats = {}
    groups = generate(model, tok, _prompts(16), 4, 1.0, 1.0, 64, batch_size=8, think_prefill=True, stats=stats)
    texts = [g for group in groups for g in group]
    answered = [g for g in texts if "</answer>" in g["text"]]
    assert len(answered) >= 48 and all(g["text"].endswith("</answer>") and not g["truncated"] for g in answered)
    assert sum(format_ok(g["text"]) for g in texts) >= 48 and stats["calls"] == 8  # 64 sequences, 8 a call: none sent back


def test_a_models_own_generation_settings_do_not_reach_evaluation(toy_model):
    """A generation_config.json's `no_repeat_ngram_size` (or `min_new_tokens`, suppressed tokens,
    ...) would shape the samples, as transformers fills unset settings from it; evaluation samples
    with the settings it asks for alone, as vLLM does, and leaves the model's config as it was."""
    model, tok = load_model(toy_model), load_tokenizer(toy_model)
    prompts = _prompts(4)
    torch.manual_seed(5)
    plain = generate(model, tok, prompts, 2, 1.0, 1.0, 24, batch_size=8)
    model.generation_config.no_repeat_ngram_size, model.generation_config.min_new_tokens = 1, 20
    torch.manual_seed(5)
    assert generate(model, tok, prompts, 2, 1.0, 1.0, 24, batch_size=8) == plain
    assert model.generation_config.no_repeat_ngram_size == 1


def test_a_lora_models_own_generation_settings_do_not_reach_evaluation(toy_model):
    """A curve point evaluates the peft-wrapped model, whose generate reads its base model's
    generation_config: that is the one evaluation reduces."""
    from peft import LoraConfig, get_peft_model

    from rlsft.scoring.evaluate import plain_generation_config

    model = get_peft_model(load_model(toy_model), LoraConfig(r=1, target_modules="all-linear"))
    model.get_base_model().generation_config.no_repeat_ngram_size = 2
    with plain_generation_config(model):
        assert not model.get_base_model().generation_config.no_repeat_ngram_size
    assert model.get_base_model().generation_config.no_repeat_ngram_size == 2
