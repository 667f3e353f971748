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
