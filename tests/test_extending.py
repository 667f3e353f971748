"""The extension points: TRL's config fields pass straight through the YAML, and the registries
(rewards, tasks, recipes) are the only things to edit to add a reward, a task or a recipe."""

import dataclasses
import json
import sys
import types
from dataclasses import dataclass

import pytest
import yaml
from conftest import REPO

from rlsft.cli import main as cli_main
from rlsft.config import OWNED_BY_THE_LAB, check_trl_section, trl_class, trl_fields
from rlsft.io import UserError
from rlsft.launch import RECIPES, dry_run, recipe_module
from rlsft.scoring.rewards import REWARDS, completion_text
from rlsft.scoring.tasks import TASKS, Task
from rlsft.scoring.verify import verify_answer

GRPO = str(REPO / "configs" / "micro" / "r1_zero.yaml")
SFT = str(REPO / "configs" / "micro" / "sft_cold_start.yaml")
TRL_CLASSES = ["transformers:TrainingArguments", "trl:GRPOConfig", "trl:SFTConfig", "trl:DistillationConfig"]


def trl_config_of(plan: dict) -> dict:
    return plan["stages"][0]["trl_config"]["differs_from_trl_defaults"]


def test_a_trl_field_the_lab_never_declares_reaches_trl(capsys):
    lab_code = "".join(p.read_text() for p in (REPO / "rlsft").rglob("*.py"))
    assert "epsilon_high" not in lab_code and "mask_truncated_completions" not in lab_code
    assert cli_main(["train", GRPO, "grpo.epsilon_high=0.28", "grpo.mask_truncated_completions=true", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epsilon_high: 0.28" in out
    differs = trl_config_of(yaml.safe_load(out))
    assert differs["epsilon_high"] == 0.28 and differs["mask_truncated_completions"] is True
    assert differs["max_completion_length"] == 96 and differs["learning_rate"] == 1e-4


def test_sft_fields_pass_through():
    differs = trl_config_of(dry_run(SFT, ["sft.packing=true", "sft.padding_free=true", "training.weight_decay=0.1"]))
    assert differs["packing"] is True and differs["padding_free"] is True and differs["weight_decay"] == 0.1


@pytest.mark.parametrize("override, culprit", [
    ("grpo.epsilon_hihg=0.28", "unknown key 'epsilon_hihg'; did you mean 'epsilon_high'?"),
    ("sft.pading_free=true", "unknown key 'pading_free'; did you mean 'padding_free'?"),
    ("training.lerning_rate=1e-4", "unknown key 'lerning_rate'; did you mean 'learning_rate'?"),
    ("grpo.num_generations=many", "grpo.num_generations: expected int, got 'many'"),
    ("grpo.seed=3", "grpo.seed is set by the lab; set run.seed instead"),
    ("grpo.num_generations=3", "GRPOConfig:"),  # TRL's own validation: 64 completions are not groups of 3
    ("rewards={}", "rewards is empty; give at least one reward name with a weight"),
    ("model.dtype=bf16", "model.dtype must be one of auto, float32, bfloat16, float16, got 'bf16'"),
])
def test_a_bad_trl_key_fails_on_one_line_naming_it(override, culprit, capsys):
    config = SFT if override.startswith("sft.") else GRPO
    assert cli_main(["train", config, override, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and culprit in err, err


@pytest.mark.parametrize("config_class", TRL_CLASSES)
def test_every_field_of_trls_classes_is_accepted_with_its_own_default(config_class):
    """What a new TRL release adds needs no edit: the fields are read from the class itself."""
    fields = {f.name: f for f in dataclasses.fields(trl_class(config_class)) if f.init}
    assert set(trl_fields(trl_class(config_class))) == set(fields)
    settable = {}
    for name, f in fields.items():
        if name in OWNED_BY_THE_LAB or f.default is dataclasses.MISSING:
            continue
        settable[name] = f.default
    assert check_trl_section(config_class, settable, {}, "section") == settable


def test_recipes_keep_trainer_fields_apart_from_training_fields():
    """A recipe's default for a shared TrainingArguments field lives in its `training:` section only,
    so the order of `rlsft.trainer.trl_args` can never silently override the user's `training:`."""
    shared = set(trl_fields(trl_class("transformers:TrainingArguments")))
    for name in RECIPES:
        module = recipe_module(name)
        assert {"Config", "main", "training_args", "estimate"} <= set(vars(module)), name
        cfg_fields = {f.name: f for f in dataclasses.fields(module.Config)}
        assert cfg_fields["recipe"].default == name
        for f in cfg_fields.values():
            trl = f.metadata.get("trl")
            if trl and trl != "transformers:TrainingArguments":
                assert not set(f.default_factory()) & shared, (name, f.name)


def brevity_reward(completions, prompts=None, **columns):
    """A reward a user adds (docs/extending.md's): shorter completions score higher, standard or
    conversational.

    >>> brevity_reward(["ab", "abcd", [{"role": "assistant", "content": "abcd"}]])
    [0.5, 0.25, 0.25]
    """
    prompts = prompts or [None] * len(completions)
    return [1.0 / max(1, len(completion_text(c, p))) for c, p in zip(completions, prompts)]


def load_sums(split="test", source=None, n=None, seed=0):
    rows = [{"id": f"sums-{split}-{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 21)]
    return rows[:n] if n else rows


def verify_last_word(completion, gold):
    """A verifier a user adds, with no extraction mode: the completion's last word is the gold."""
    return completion.split()[-1] == gold


def test_a_two_argument_verifier_serves_both_modes_and_a_lambda_is_refused():
    """A verifier without `mode` is called without it in lenient mode too (it has its own
    extraction), not given a third argument that fails every check as unverifiable; one the
    answer-check workers cannot receive (a lambda) is refused by name."""
    task = Task("words", load_sums, verify_last_word)
    for mode in ("strict", "lenient"):
        assert task.verify_many(["so 4", "so 5"], ["4", "4"], mode=mode) == [True, False]
    with pytest.raises(UserError, match="task words: its verify .* must be a module-level function"):
        Task("words", load_sums, lambda c, g: True).verify_many(["so 4"], ["4"])


def test_a_new_reward_and_task_work_everywhere_with_only_a_registry_entry(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(REWARDS, "brevity", brevity_reward)
    monkeypatch.setitem(TASKS, "sums", Task("sums", load_sums, verify_answer, train_size=20, description="toy sums"))

    # score: the task's verifier
    rows = [{"completion": "<think> 3 + 3 = 6 </think> <answer>6</answer>", "answer": "6"},
            {"completion": "<answer>7</answer>", "answer": "6"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_main(["score", "--task", "sums", "--completions", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.5

    # train --dry-run: the task as training data and held-out evaluation, the reward with a weight
    plan = dry_run(GRPO, ["data.task=sums", "eval.tasks=[sums]", "rewards={accuracy: 1.0, brevity: 0.5}"])
    assert trl_config_of(plan)["reward_weights"] == [1.0, 0.5, 0.0]  # + the zero-weight language monitor
    assert plan["stages"][0]["config"]["data"]["task"] == "sums"

    # report: the new reward's training curve, from a run's metrics.jsonl
    run = tmp_path / "runs" / "x-seed0"
    (run / "eval_after" / "sums").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"recipe": "grpo", "config": {"run": {"seed": 0, "name": "x-seed0"}},
                                              "compute": {"flops": 1e12, "wall_seconds": 6.0, "device": "cpu"},
                                              "provenance": {"git_commit": "test"}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "rewards/brevity_reward/mean": 0.1 * s}) + "\n" for s in (1, 2)))
    sample = {"id": "sums-test-1", "question": "q", "completion": "<answer>2</answer>", "correct": True, "mixed": False,
              "format_ok": False, "length": 3}
    (run / "eval_after" / "sums" / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    assert cli_main(["report", str(run), "--out", str(tmp_path / "report"), "--task", "sums"]) == 0
    assert (tmp_path / "report" / "curve_rewards_brevity_reward_mean.png").is_file()


def test_a_fourth_recipe_dry_runs_with_only_a_registry_entry(monkeypatch, tmp_path):
    from rlsft.config import RecipeConfig, training_section, trl_section
    from rlsft.runs.compute import estimate_record
    from rlsft.trainer import trl_args

    @dataclass
    class Config(RecipeConfig):
        recipe: str = "kto"
        training: dict = training_section()
        sft: dict = trl_section("trl:SFTConfig")

    module = types.SimpleNamespace(Config=Config, main=None, training_args=lambda cfg: trl_args("trl:SFTConfig", cfg, cfg.sft),
                                   estimate=lambda cfg, params=None: estimate_record(params, 0, 0))
    monkeypatch.setitem(sys.modules, "kto_recipe", module)  # a recipe is registered by its module's name
    monkeypatch.setitem(RECIPES, "kto", "kto_recipe")
    path = tmp_path / "kto.yaml"
    path.write_text("recipe: kto\nrun: {name: kto}\nsft: {max_length: 64}\n")
    plan = dry_run(str(path))
    assert plan["stages"][0]["recipe"] == "kto" and trl_config_of(plan)["max_length"] == 64
