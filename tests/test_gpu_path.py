"""The single-GPU user's path, as far as it can be checked without a GPU: what reaches TRL's config."""

import importlib.util

import pytest

import recipes.grpo
from rlsft.config import DataConfig, RunConfig
from rlsft.io import UserError


def grpo_args(monkeypatch, tmp_path, vllm: bool, **grpo):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" and vllm else real(name, *a))
    cfg = recipes.grpo.Config(run=RunConfig(name="g", out_dir=str(tmp_path), report_to="none"),
                              data=DataConfig(think_prefill=True, template="r1-zero"), grpo={"use_vllm": vllm, **grpo})
    return recipes.grpo.training_args(cfg)


def test_the_answer_stop_reaches_vllm_as_stop_and_generate_as_stop_strings(monkeypatch, tmp_path):
    assert grpo_args(monkeypatch, tmp_path, vllm=False).generation_kwargs == {"stop_strings": ["</answer>"]}
    # vLLM's SamplingParams has no stop_strings (it raised there); its own `stop`, keeping the tag as generate does
    assert grpo_args(monkeypatch, tmp_path, vllm=True).generation_kwargs == {"stop": ["</answer>"], "include_stop_str_in_output": True}


def test_model_init_kwargs_is_refused_for_a_model_the_lab_loads(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="model_init_kwargs is ignored.*model.dtype"):
        grpo_args(monkeypatch, tmp_path, vllm=False, model_init_kwargs={"dtype": "bfloat16"})


def test_eval_top_p_reaches_generation(toy_model, tmp_path, monkeypatch):
    import rlsft.scoring.evaluate as ev
    from rlsft.launch import load_recipe_config
    from rlsft.trainer import evaluate_model, run_folder

    seen = []
    real = ev.generate
    monkeypatch.setattr(ev, "generate", lambda *a, **k: seen.append(a[5]) or real(*a, **k))
    _, cfg = load_recipe_config("configs/micro/r1_zero.yaml", [f"model.name={toy_model}", f"run.out_dir={tmp_path / 'run'}", "eval.n=2", "eval.samples=1", "eval.max_new_tokens=8",
                                                             "eval.top_p=0.9", "data.template=r1-zero"])
    folder = run_folder(cfg.run)
    folder.path.mkdir(parents=True)
    evaluate_model(None, None, toy_model, cfg, folder, "after", tasks=["micro-arith"])
    assert seen == [0.9]  # generate(model, tokenizer, prompts, samples, temperature, top_p, ...)
    with pytest.raises(UserError, match="eval.top_p"):
        load_recipe_config("configs/micro/r1_zero.yaml", ["eval.top_p=0"])


def test_a_teacher_with_other_logit_rows_is_refused_by_the_dry_run_and_before_any_folder(toy_model, tmp_path):
    import json
    import shutil

    from rlsft.launch import dry_run, load_recipe_config

    # the shipped on-policy config fits (Qwen2.5-3B-Instruct: 151,936 rows, as its 1.5B student), 7B does not
    assert dry_run("configs/qwen2.5-1.5b/distill_onpolicy.yaml")["stages"][0]["estimate"]["parameters"]
    with pytest.raises(UserError, match="152064 logit rows.*student 'Qwen/Qwen2.5-1.5B' 151936"):
        dry_run("configs/qwen2.5-1.5b/distill_onpolicy.yaml", ["distill.teacher=Qwen/Qwen2.5-7B-Instruct"])
    # two local models with the same tokenizer but one padded to more rows, as Qwen2.5-7B is: main refuses
    # them before it writes a run folder, loads weights or evaluates anything
    wide = tmp_path / "wide"
    shutil.copytree(toy_model, wide)
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 128}))
    module, cfg = load_recipe_config("configs/micro/distill_onpolicy.yaml", [f"model.name={toy_model}", f"distill.teacher={wide}",
                                                                           f"run.out_dir={tmp_path / 'run'}", "run.report_to=none"])
    with pytest.raises(UserError, match="logit rows"):
        module.main(cfg)
    assert not (tmp_path / "run").exists()


def test_attention_and_revision_reach_the_model_and_a_wrong_one_is_one_line(toy_model, tmp_path):
    from rlsft.launch import dry_run
    from rlsft.models import load_model

    plan = dry_run("configs/qwen2.5-0.5b/r1_zero.yaml", ["model.attn_implementation=sdpa", "model.revision=main"])
    assert plan["stages"][0]["config"]["model"]["attn_implementation"] == "sdpa"
    assert load_model(toy_model, attn_implementation="eager").config._attn_implementation == "eager"
    assert load_model(toy_model, attn_implementation="sdpa").config._attn_implementation == "sdpa"
    with pytest.raises(UserError, match="must be one of eager, sdpa"):
        dry_run("configs/qwen2.5-0.5b/r1_zero.yaml", ["model.attn_implementation=flash"])
    with pytest.raises(UserError, match="needs a CUDA GPU"):  # refused before any weights load, here
        load_model(toy_model, attn_implementation="flash_attention_2")


def test_generation_backends_map_the_labs_sampling_to_vllm_and_refuse_vllm_where_it_cannot_run(monkeypatch, toy_model, tmp_path):
    import rlsft.scoring.evaluate as ev
    from rlsft.launch import load_recipe_config

    # what can be checked without vLLM: the settings it would get, and the switch
    assert ev.sampling_params(8, 0.6, 0.95, 1024, 1, think_prefill=True) == {
        "n": 8, "temperature": 0.6, "top_p": 0.95, "max_tokens": 1024, "seed": 1, "stop": ["</answer>"], "include_stop_str_in_output": True}
    assert ev.resolve_backend("auto") == "transformers"  # no GPU here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(UserError, match="vllm asked for, but vLLM is not installed"):
        ev.resolve_backend("vllm")
    # a recipe asking for it stops before its run folder exists; a bad name is refused as the config loads
    _, cfg = load_recipe_config("configs/micro/r1_zero.yaml", [f"model.name={toy_model}", f"run.out_dir={tmp_path / 'run'}", "run.report_to=none",
                                                             "eval.backend=vllm"])
    from rlsft.trainer import start_run

    with pytest.raises(UserError, match="vLLM is not installed"):
        start_run(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="eval.backend must be one of auto, transformers, vllm"):
        load_recipe_config("configs/micro/r1_zero.yaml", ["eval.backend=sglang"])
