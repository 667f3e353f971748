"""rlsft.scoring.decode: finished sequences leave the batch, and the tokens stay generate's."""

import functools

import pytest
import torch

from rlsft.models import load_model, load_tokenizer
from rlsft.scoring import decode

QUESTIONS = ["Tom has 3 apples and buys 5 more. How many?", "What is 12 + 30 - 7?",
             "Ana has 9 pens and gives 4 away. How many are left?", "Compute 6 * 7."]


@pytest.fixture(scope="module")
def student():
    model, tok = load_model("micro-student"), load_tokenizer("micro-student")
    enc = tok([QUESTIONS[i % 4] for i in range(24)], return_tensors="pt", padding=True)  # left-padded
    return model.eval(), tok, enc


@pytest.mark.parametrize("sampling", [
    dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0),
    dict(do_sample=True, temperature=0.7, top_p=0.9, top_k=0),
    dict(do_sample=True, temperature=1.0, top_k=20, min_p=0.05),
    dict(do_sample=False),
])
def test_the_tokens_are_generates_while_finished_sequences_leave(student, sampling):
    """Same seed, same settings: the same (B, L + T) tensor as model.generate, pad after EOS, while
    some sequences end well before the call does (so rows really left the batch)."""
    model, tok, enc = student
    kw = dict(sampling, max_new_tokens=80, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    assert decode.plan(model, None, kw, enc["input_ids"].shape[1]) is not None  # the loop runs, not generate
    torch.manual_seed(7)
    expected = model.generate(**enc, **kw)
    state_after_generate = torch.get_rng_state()
    torch.manual_seed(7)
    got = decode.generate(model, enc["input_ids"], enc["attention_mask"], None, **kw)
    assert got.shape == expected.shape and torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), state_after_generate)  # the same draws: later sampling is unchanged too
    ended = (got[:, enc["input_ids"].shape[1]:] == tok.eos_token_id).int().argmax(1)
    lengths = torch.where((got[:, enc["input_ids"].shape[1]:] == tok.eos_token_id).any(1), ended + 1, got.shape[1])
    assert lengths.min() < 0.7 * lengths.max()


def test_what_the_loop_does_not_do_goes_to_generate(student):
    """Stop strings, a repetition penalty or several return sequences: no plan, and decode.generate
    is model.generate."""
    model, tok, enc = student
    base = dict(do_sample=True, max_new_tokens=24, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    for extra in (dict(stop_strings=["</answer>"], tokenizer=tok), dict(repetition_penalty=1.2), dict(num_return_sequences=2)):
        kw = {**base, **extra}
        assert decode.plan(model, None, kw, enc["input_ids"].shape[1]) is None, extra
        torch.manual_seed(1)
        expected = model.generate(**enc, **kw)
        torch.manual_seed(1)
        assert torch.equal(decode.generate(model, enc["input_ids"], enc["attention_mask"], None, **kw), expected)


def test_compacting_routes_model_generate_and_restores_it(student):
    """Inside `compacting`, `model.generate` (as TRL's trainer calls it, with a GenerationConfig)
    runs the loop; outside it is transformers' method again."""
    from transformers import GenerationConfig

    model, tok, enc = student
    config = GenerationConfig(max_new_tokens=40, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                              pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id])
    torch.manual_seed(3)
    expected = model.generate(**enc, generation_config=config)
    calls = []
    original = decode.sample
    decode.sample = lambda *a: calls.append(1) or original(*a)
    try:
        with decode.compacting(model):
            torch.manual_seed(3)
            got = model.generate(**enc, generation_config=config)
    finally:
        decode.sample = original
    assert calls and torch.equal(got, expected)
    assert "generate" not in vars(model)  # the class's method again

    bound = functools.partial(model.generate, max_new_tokens=8)  # an instance's own binding (the recipe's stop-string tokenizer)
    model.generate = bound
    try:
        with decode.compacting(model):
            assert model.generate is not bound
        assert model.generate is bound  # kept, not dropped
    finally:
        del model.generate


def test_full_batch_sends_every_call_to_generate(student, monkeypatch):
    """Inside `full_batch()` (the bench's baseline) the loop never runs; outside it does again."""
    model, tok, enc = student
    kw = dict(do_sample=True, max_new_tokens=16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    calls = []
    original = decode.sample
    monkeypatch.setattr(decode, "sample", lambda *a: calls.append(1) or original(*a))
    with decode.full_batch():
        decode.generate(model, enc["input_ids"], enc["attention_mask"], None, **kw)
    assert calls == [] and decode.COMPACT
    decode.generate(model, enc["input_ids"], enc["attention_mask"], None, **kw)
    assert calls == [1]
