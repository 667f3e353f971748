"""Every configs/smollm2-135m/*.yaml passes --dry-run and its code path runs: a couple of steps on a
chat-template toy model here, on the real SmolLM2 in the slow test."""

import pytest
from conftest import REPO, tiny_recipe_overrides

from rlsft.cli import main as cli_main
from rlsft.launch import load_recipe_config

SMOL = REPO / "configs" / "smollm2-135m"
CONFIGS = sorted(p.name for p in SMOL.glob("*.yaml"))
SINGLE = ["distill_offline.yaml", "r1_zero.yaml", "sft_cold_start.yaml"]  # r1 and hybrid chain these
TINY = {"r1_zero.yaml": ["grpo.num_generations=4", "grpo.max_completion_length=16", "training.per_device_train_batch_size=4",
                         "training.gradient_accumulation_steps=1", "probe.prompts=2", "probe.force=true"],
        "sft_cold_start.yaml": ["examples.n=8"],
        "distill_offline.yaml": ["distill.samples_per_prompt=2", "distill.max_new_tokens=48", "distill.cache_dir=null"]}


def test_the_configs_are_the_expected_set():
    assert CONFIGS == ["distill_offline.yaml", "distill_offline_qwen.yaml", "hybrid.yaml", "r1.yaml", "r1_zero.yaml", "sft_cold_start.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_passes_a_dry_run(name, capsys):
    assert cli_main(["train", str(SMOL / name), "--dry-run"]) == 0
    assert "flops_upper_bound" in capsys.readouterr().out


@pytest.mark.parametrize("name", SINGLE)
def test_each_recipe_runs_with_its_smollm2_settings_on_a_chat_toy_model(name, chat_toy_model, tmp_path):
    extra = ["distill.teacher=micro-student"] if name.startswith("distill") else []  # a teacher that solves some
    module, cfg = load_recipe_config(str(SMOL / name), tiny_recipe_overrides(chat_toy_model, tmp_path / "run") + TINY[name] + extra)
    record = module.main(cfg)
    assert record["config"]["data"]["template"] == "chat" and record["compute"]["flops"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", SINGLE)
def test_each_recipe_runs_a_couple_of_steps_on_the_real_model(name, tmp_path):
    """SmolLM2-135M itself (converted from its package on first use): minutes on a CPU."""
    extra = ["distill.teacher=micro-student"] if name.startswith("distill") else []
    overrides = [o for o in tiny_recipe_overrides("smollm2-135m", tmp_path / "run") if not o.startswith("eval.max_new_tokens")]
    module, cfg = load_recipe_config(str(SMOL / name), overrides + ["eval.max_new_tokens=16"] + TINY[name] + extra)
    record = module.main(cfg)
    assert record["compute"]["parameters"] == 134_515_008
