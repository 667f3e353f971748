"""Every YAML under configs/ (subfolders included) parses into its typed config, dry-runs
without network, and config mistakes fail loudly."""

from pathlib import Path

import pytest
import yaml

from rlsft.cli import main as cli_main
from rlsft.config import load_config
from rlsft.io import UserError
from rlsft.launch import RECIPES, dry_run, load_recipe_config, pipeline_stages
from rlsft.micro.pretrain import PretrainConfig

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))


def kind(path: Path) -> str:
    data = yaml.safe_load(path.read_text())
    if path.parent.name == "accelerate":
        return "accelerate"
    if path.parent.name == "studies":
        return "study"
    if "recipe" in data:
        return "pipeline" if data["recipe"] == "pipeline" else "recipe"
    return "pretrain"


def test_configs_are_found():
    assert {kind(p) for p in ALL} == {"accelerate", "pipeline", "recipe", "pretrain", "study"}
    assert len(ALL) >= 20


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_parses(path, monkeypatch):
    monkeypatch.chdir(REPO)  # pipeline stages name their configs from the repository root
    text = path.read_text()
    assert text.startswith("#"), "every YAML opens with a comment: what it runs, what it needs, the command"
    assert "Run:" in text.split("\n\n")[0] or "Run:" in "".join(text.splitlines(True)[:6])
    k = kind(path)
    if k == "accelerate":
        data = yaml.safe_load(text)
        assert data["distributed_type"] in {"NO", "MULTI_GPU", "DEEPSPEED", "MULTI_CPU"} and data["num_processes"] >= 1
    elif k == "study":
        from rlsft.studies.study import StudyConfig

        study = load_config(StudyConfig, path)
        if study.claims:  # a claims study needs the seeds a verdict needs, or says it is a pilot (estimates, no verdicts)
            from rlsft.verdicts.claims import MIN_SEEDS

            assert len(study.seeds) >= MIN_SEEDS or any("pilot" in line.lower() for line in study.scope), study.name
        assert set(study.arm_overrides) <= set(study.recipes)
        assert all(c.arm in study.recipes or c.arm == "base" for c in study.claims)
        assert all(Path(REPO / p).is_file() for p in study.recipes.values())
    elif k == "pretrain":
        assert load_config(PretrainConfig, path).name.startswith("micro-")
    elif k == "pipeline":
        pipe, stages = pipeline_stages(str(path))
        assert len(stages) == len(pipe.stages) >= 2
        assert all(cfg.recipe in RECIPES for _, _, cfg, _ in stages)
    else:
        module, cfg = load_recipe_config(str(path))
        assert module.__name__ == RECIPES[cfg.recipe] and cfg.run.name
    if k in ("recipe", "pipeline"):
        plan = dry_run(str(path))
        assert plan["stages"] and all(s["out"].startswith("runs/") for s in plan["stages"])


def test_dry_run_estimates_real_configs_offline(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(["train", "configs/qwen2.5-0.5b/r1_zero.yaml", "--dry-run"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)  # JSON is YAML
    est = out["stages"][0]["estimate"]
    # 6N per trained token + 2N per generated token, N from the model card table
    assert est["flops_upper_bound"] == 6 * est["parameters"] * est["train_tokens"] + 2 * est["parameters"] * est["forward_tokens"]
    assert not (REPO / "runs" / "qwen0.5b-grpo-zero-gsm8k").exists()  # trains nothing, writes nothing
    # reusing each generation twice: the same optimizer steps train as many tokens from half the
    # rollouts, each generated once and scored once more by the policy before its reuse (forward: 2 x half)
    again = dry_run("configs/qwen2.5-0.5b/r1_zero.yaml", ["grpo.num_iterations=2"])["stages"][0]["estimate"]
    assert (again["train_tokens"], again["forward_tokens"]) == (est["train_tokens"], est["forward_tokens"])


def test_config_mistakes_name_the_culprit(tmp_path):
    path = CONFIGS / "micro" / "r1_zero.yaml"
    with pytest.raises(UserError, match="unknown key 'lerning_rate'; did you mean 'learning_rate'"):
        load_recipe_config(str(path), ["training.lerning_rate=1e-4"])
    with pytest.raises(UserError, match="num_generations: expected int"):
        load_recipe_config(str(path), ["grpo.num_generations=many"])
    with pytest.raises(UserError, match="recipe must be one of"):
        load_recipe_config(str(path), ["recipe=ppo"])
    with pytest.raises(UserError, match="config file not found"):
        load_recipe_config(str(tmp_path / "nope.yaml"))


def test_cli_reports_a_bad_config_on_one_line(capsys):
    assert cli_main(["train", str(CONFIGS / "micro" / "r1_zero.yaml"), "rewardz={accuracy: 1}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'rewardz'; did you mean 'rewards'" in err


def test_a_studys_stage_override_wins_over_the_pipelines_own(monkeypatch):
    # the hybrid's file sets its SFT stage to 96 steps; a study arm asking for 32 gets 32
    from rlsft.studies.study import StudyConfig, run_overrides

    monkeypatch.chdir(REPO)
    assert pipeline_stages("configs/micro/hybrid.yaml")[1][0][2].training["max_steps"] == 96
    study = StudyConfig(name="s", recipes={"hybrid": "configs/micro/hybrid.yaml"}, seeds=[0],
                        overrides=["training.learning_rate=0.001"], arm_overrides={"hybrid": ["sft:training.max_steps=32"]})
    (_, _, sft, _), (_, _, grpo, _) = pipeline_stages("configs/micro/hybrid.yaml", run_overrides(study, "hybrid", 0))[1]
    assert sft.training["max_steps"] == 32 and grpo.training["max_steps"] == 50  # the GRPO stage keeps its own
    assert sft.training["learning_rate"] == grpo.training["learning_rate"] == 0.001


def test_estimates_of_epoch_based_and_uncapped_runs():
    """On-policy distillation by epochs (max_steps -1, the recipe's default) estimated negative
    tokens, and an uncapped length (TRL accepts null) crashed the dry run."""
    from rlsft.launch import dry_run

    epochs = dry_run(str(REPO / "configs" / "micro" / "distill_onpolicy.yaml"), ["training.max_steps=-1"])["stages"][0]["estimate"]
    assert epochs["train_tokens"] > 0 and epochs["flops_upper_bound"] > 0
    for config, override in (("sft_cold_start", "sft.max_length=null"), ("distill_onpolicy", "distillation.max_completion_length=null"),
                             ("distill_offline", "sft.max_length=null")):
        assert dry_run(str(REPO / "configs" / "micro" / f"{config}.yaml"), [override])["stages"][0]["estimate"]["train_tokens"] is None
