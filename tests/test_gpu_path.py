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


def test_vllm_evaluation_gets_the_models_revision_dtype_and_the_memory_that_is_free(monkeypatch, toy_model, tmp_path):
    """vLLM cannot run here: a stand-in module records what the lab hands it, and returns texts
    that the lab then scores as it scores generate's."""
    import json
    import sys
    import types

    import torch

    import rlsft.scoring.evaluate as ev

    made, asked = [], []

    class Output:  # one sample of vLLM's RequestOutput.outputs
        def __init__(self, text, ended):
            self.text, self.token_ids, self.finish_reason = text, [0] * 5, "stop" if ended else "length"

    class LLM:
        def __init__(self, **kw):
            made.append(kw)

        def generate(self, prompts, params):
            asked.append((prompts, [p.kw for p in params]))
            return [types.SimpleNamespace(outputs=[Output("<think>1+1</think><answer>7</answer>", True), Output("so", False)]) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (20 * 2**30, 24 * 2**30))  # a trainer holds 4 GiB
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    result = ev.evaluate(ev.EvalArgs(model=toy_model, task="micro-arith", out=str(tmp_path / "e"), n=3, samples=2, temperature=0.6, top_p=0.9,
                                     max_new_tokens=32, seed=5, dtype="bfloat16", revision="v1", backend="vllm"))
    (kw,) = made
    ((prompts, params),) = asked
    # the prompts' token ids as generate reads them (no second BOS), the context only as long as the longest request needs
    from rlsft.models import load_tokenizer
    from rlsft.scoring.tasks import build_prompt, get_task

    tok = load_tokenizer(toy_model)
    rendered = [build_prompt(r["question"], "r1-zero") for r in get_task("micro-arith").load("test", n=3, seed=5)]
    assert [p["prompt_token_ids"] for p in prompts] == tok(rendered, add_special_tokens=False)["input_ids"]
    assert kw == {"model": toy_model, "revision": "v1", "dtype": "bfloat16", "seed": 5, "gpu_memory_utilization": 0.783,
                  "max_model_len": max(len(p["prompt_token_ids"]) for p in prompts) + 32}
    # each prompt its own seed, the rest the lab's sampling
    assert [p.pop("seed") for p in params] == [5, 5 + 1_000_003, 5 + 2_000_006]
    assert params == [{"n": 2, "temperature": 0.6, "top_p": 0.9, "max_tokens": 32}] * 3
    samples = [json.loads(line) for line in (tmp_path / "e" / "samples.jsonl").read_text().splitlines()]
    assert [s["truncated"] for s in samples] == [False, True] * 3 and result["generation"]["backend"] == "vllm"
    with pytest.raises(UserError, match="1.0 of 24.0 GiB is free"):
        ev.vllm_memory_share(2**30, 24 * 2**30)


def test_the_teachers_sampling_backend_and_init_kwargs_are_refused_before_anything_runs(monkeypatch, toy_model, tmp_path):
    import recipes.distill as distill
    from rlsft.launch import load_recipe_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    module, cfg = load_recipe_config("configs/micro/distill_offline.yaml", [f"model.name={toy_model}", f"distill.teacher={toy_model}",
                                                                          f"run.out_dir={tmp_path / 'run'}", "run.report_to=none",
                                                                          "distill.backend=vllm"])
    with pytest.raises(UserError, match="vllm asked for, but vLLM is not installed"):
        module.main(cfg)  # before a folder, the student's weights or its evaluation before training
    assert not (tmp_path / "run").exists()
    _, cfg = load_recipe_config("configs/micro/distill_onpolicy.yaml", ["distillation.teacher_model_init_kwargs={dtype: bfloat16}"])
    with pytest.raises(UserError, match="teacher_model_init_kwargs is ignored for a model the lab loads"):
        distill.training_args(cfg)


def test_data_that_cannot_be_read_stops_a_run_or_a_pipeline_before_anything_is_written(monkeypatch, toy_model, tmp_path):
    from rlsft.launch import load_recipe_config, train_from_config
    from rlsft.trainer import start_run

    monkeypatch.delenv("RLSFT_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = [f"model.name={toy_model}", f"run.out_dir={tmp_path / 'run'}", "run.report_to=none"]
    # a held-out task whose data is neither local nor cached: refused before the run folder, not at the evaluation
    _, cfg = load_recipe_config("configs/micro/r1_zero.yaml", base + ["eval.tasks=[micro-arith, aime24]"])
    with pytest.raises(UserError, match="cannot load dataset 'HuggingFaceH4/aime_2024'.*HF_HUB_OFFLINE"):
        start_run(cfg)
    # training prompts whose fields do not match the task
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1", "solution": "2"}\n')
    _, cfg = load_recipe_config("configs/micro/r1_zero.yaml", base + ["data.task=gsm8k", f"data.source={bad}"])
    with pytest.raises(UserError, match=str(bad)):
        start_run(cfg)
    # a held-out split the task does not have
    _, cfg = load_recipe_config("configs/micro/r1_zero.yaml", base + ["eval.tasks=[math500]", "eval.split=validation"])
    with pytest.raises(UserError, match="task 'math500' has no validation split"):
        start_run(cfg)
    assert not (tmp_path / "run").exists()
    # a pipeline's last stage with unreadable data stops before its first stage trains
    with pytest.raises(UserError, match="aime_2024"):
        train_from_config("configs/micro/r1.yaml", [f"run.out_dir={tmp_path / 'pipe'}",
                                                    f'stage_overrides=["model.name={toy_model}", "run.report_to=none", "grpo:eval.tasks=[aime24]"]'])
    assert not any((tmp_path / "pipe").rglob("config.yaml"))


def test_a_pipelines_stages_share_one_wandb_group_unless_a_study_names_it():
    from rlsft.launch import pipeline_stages

    pipe, stages = pipeline_stages("configs/micro/r1.yaml")
    assert len(stages) > 1 and {cfg.run.group for _, _, cfg, _ in stages} == {pipe.run.name}
    assert len({cfg.run.name for _, _, cfg, _ in stages}) == len(stages)  # each stage its own wandb run in that group
    _, stages = pipeline_stages("configs/micro/r1.yaml", ["run.group=my-study"])
    assert {cfg.run.group for _, _, cfg, _ in stages} == {"my-study"}


def test_float32_weights_are_evaluated_in_bf16_on_a_bf16_gpu(monkeypatch):
    """The GPU configs train float32 weights under bf16 autocast: every evaluation of such a run
    (before, after, a transfer; vLLM or transformers) computes in bf16 too, so a gain before to
    after is not a change of precision. On a CPU, float32 stays."""
    import torch

    from rlsft.config import ModelConfig, RecipeConfig, RunConfig
    from rlsft.models import compute_dtype
    from rlsft.trainer import eval_args

    cfg = RecipeConfig(run=RunConfig(name="r"), model=ModelConfig(dtype="float32", trust_remote_code=True))
    assert compute_dtype("float32") == "float32" and eval_args(cfg, "m", "gsm8k", "o", 1).dtype == "float32"  # this CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    args = eval_args(cfg, "m", "gsm8k", "o", 1)
    assert (args.dtype, args.trust_remote_code) == ("bfloat16", True)
    assert [compute_dtype(d) for d in ("auto", "bfloat16", "float16")] == ["auto", "bfloat16", "float16"]
