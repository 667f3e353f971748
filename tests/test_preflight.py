"""The pre-flight signal check: it passes settings where GRPO groups get differing rewards, and
refuses, in one line naming the remedies, settings where none can."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

from rlsft.io import UserError
from rlsft.launch import load_recipe_config, probe_from_config
from rlsft.preflight import REMEDIES

R1_ZERO = str(REPO / "configs" / "micro" / "r1_zero.yaml")
SMALL = ["probe.prompts=8", "grpo.num_generations=4"]


def test_the_micro_config_has_signal(tmp_path):
    record = probe_from_config(R1_ZERO, SMALL, str(tmp_path))
    assert record["passed"] and 0 < record["signal_share"] <= 1
    assert record["frac_reward_zero_std"] == pytest.approx(1 - record["signal_share"])
    assert record["prompts"] == 8 and record["num_generations"] == 4 and 0 < record["pass@4"] <= 1
    assert 0 < record["rewards"]["accuracy"] < 1
    assert json.loads((tmp_path / "probe.json").read_text())["signal_share"] == record["signal_share"]


def test_settings_without_signal_are_refused_in_one_line():
    """One new token cannot hold an answer: every reward is 0, every group has zero advantage."""
    overrides = [*SMALL, "grpo.max_completion_length=1"]
    record = probe_from_config(R1_ZERO, overrides)
    assert record["signal_share"] == 0 and not record["passed"] and record["truncation_rate"] == 1.0
    done = subprocess.run([sys.executable, "-m", "rlsft.cli", "probe", R1_ZERO, *overrides], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pre-flight: 0 of 8 groups (0.0%)") and "extraction=lenient" in last and "probe.force=true" in last
    assert all(r.split(" (")[0] in last for r in REMEDIES)


def test_grpo_refuses_before_training_and_force_goes_on(toy_model, tmp_path):
    from conftest import tiny_recipe_overrides

    base = tiny_recipe_overrides(toy_model, tmp_path / "run") + ["grpo.num_generations=4", "grpo.max_completion_length=1",
                                                                 "training.per_device_train_batch_size=8", "probe.prompts=4"]
    module, cfg = load_recipe_config(R1_ZERO, base)
    with pytest.raises(UserError, match="below probe.min_signal"):
        module.main(cfg)
    assert not (tmp_path / "run").exists()  # nothing was trained, and the same command can run again
    module, cfg = load_recipe_config(R1_ZERO, [*base, "probe.force=true"])
    record = module.main(cfg)
    assert record["probe"]["forced"] and record["probe"]["signal_share"] == 0 and record["config"]["extraction"] == "strict"


def test_a_pipeline_or_another_recipe_is_not_probed(capsys):
    from rlsft.cli import main as cli_main

    with pytest.raises(UserError, match="recipe, 'sft', has none"):
        probe_from_config(str(REPO / "configs" / "micro" / "sft_cold_start.yaml"))
    assert cli_main(["probe", str(REPO / "configs" / "micro" / "sft_cold_start.yaml")]) == 2  # one line, exit 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "this one's recipe, 'sft', has none" in err, err
    with pytest.raises(UserError, match="a pipeline"):
        probe_from_config(str(REPO / "configs" / "micro" / "r1.yaml"))

