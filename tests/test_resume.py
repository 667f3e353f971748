"""Determinism and resume: the same seed gives the same metrics, a run killed with SIGKILL in
the middle of GRPO goes on with `rlsft train CONFIG --resume RUN_DIR` to the same result, and a
resumed run's compute counts every sitting."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, tiny_recipe_overrides

from rlsft.cli import main as cli_main

CONFIG = str(REPO / "configs" / "micro" / "r1_zero.yaml")
SFT_CONFIG = str(REPO / "configs" / "micro" / "sft_cold_start.yaml")
DISTILL_CONFIG = str(REPO / "configs" / "micro" / "distill_onpolicy.yaml")
GRPO_TINY = ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"]
COMPARED = ("learning_rate", "loss", "reward", "rewards/accuracy_reward/mean", "completions/mean_length", "entropy", "grad_norm")


def overrides(model, out, steps=12):
    return tiny_recipe_overrides(model, out) + GRPO_TINY + [f"training.max_steps={steps}", "training.save_steps=4"]


def step_metrics(out) -> list[dict]:
    """Per-step training figures from metrics.jsonl (the final summary line left out)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: r.get(k) for k in ("step", *COMPARED)} for r in rows if "loss" in r]


def test_same_seed_same_metrics(toy_model, tmp_path):
    for name in ("a", "b"):
        assert cli_main(["train", CONFIG, *overrides(toy_model, tmp_path / name, steps=4)]) == 0
    a, b = step_metrics(tmp_path / "a"), step_metrics(tmp_path / "b")
    assert len(a) == 4 and a == b
    ra, rb = (json.loads((tmp_path / n / "run.json").read_text()) for n in ("a", "b"))
    assert ra["eval_after"] == rb["eval_after"]


def test_sigkilled_grpo_run_resumes_to_the_same_result(tmp_path):
    """micro-student earns rewards, so its weights and Adam state move every step; the kill lands
    after checkpoint-10, in the second epoch (16 prompts, 2 a step), so the resume must restore the
    weights, the optimizer, the RNG and that epoch's prompt order (rlsft/grpo_trainer.py, 5)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # the curve point (step 4) is evaluated in the first sitting; 48 tokens: micro-student's answers end inside them
    extra = ["eval.curve_steps=[4]", "training.save_steps=5", "grpo.max_completion_length=48"]
    assert cli_main(["train", CONFIG, *overrides("micro-student", whole), *extra]) == 0

    # the same run in a real subprocess, killed (SIGKILL) once its step-10 checkpoint is on disk
    cmd = [sys.executable, "-m", "rlsft.cli", "train", CONFIG, *overrides("micro-student", killed), *extra]
    # on this process's thread count: float sums (entropy, grad_norm) depend on it, to the 7th digit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    marker = killed / "checkpoints" / "checkpoint-10" / "rlsft_progress.json"
    deadline = time.time() + 300
    while not marker.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the run finished (or failed) before it could be killed; make it longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "run.json").exists()

    first_sitting = json.loads(marker.read_text())
    assert cli_main(["train", CONFIG, *overrides("micro-student", killed), *extra, "--resume", str(killed)]) == 0
    resumed, reference = step_metrics(killed), step_metrics(whole)
    assert [r["step"] for r in resumed] == list(range(1, 13))  # no gap, no duplicate
    assert any(r["grad_norm"] > 0 for r in reference[10:])  # the steps after the checkpoint train
    assert resumed == reference  # every logged figure of every step, the resumed ones included
    r_killed, r_whole = (json.loads((out / "run.json").read_text()) for out in (killed, whole))
    assert r_killed["eval_after"] == r_whole["eval_after"]
    assert json.loads((killed / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 10
    # the step-4 curve point, evaluated before the kill, is in run.json as in the uninterrupted run's,
    # and the training seconds count the first sitting's 10 steps too, not only the resumed 2
    assert [p["step"] for p in r_killed["curve"]] == [p["step"] for p in r_whole["curve"]] == [4, "final"]
    assert r_killed["curve"][0]["pass@1"] == r_whole["curve"][0]["pass@1"] and first_sitting["curve"][0]["step"] == 4
    assert r_killed["compute"]["wall_seconds"] > first_sitting["train_seconds"] > 0
    # the completion-token count (the output head's share of the FLOPs) went on from checkpoint-10's
    assert same_compute(r_killed, r_whole)


class Killed(Exception):
    """Stands for SIGKILL, in process: nothing after it runs, the run folder stays as it was."""


def killed_at(monkeypatch, step: int) -> None:
    """The next run dies once it has logged `step`: as a kill would, after its earlier checkpoint is
    on disk and before any later one. (`rlsft.trainer.train` is wrapped to add the callback to the
    recipe's Trainer; in process, so the kill lands at the same step every time.)"""
    from transformers import TrainerCallback

    import rlsft.trainer

    class Kill(TrainerCallback):
        def on_log(self, args, state, control, **kw):
            if state.global_step == step:
                raise Killed

    train = rlsft.trainer.train
    monkeypatch.setattr(rlsft.trainer, "train", lambda trainer, *a, **k: trainer.add_callback(Kill()) or train(trainer, *a, **k))


def killed_after_training(*a, **k):
    """Stands for a kill after the last step's checkpoint, in saving or evaluating the model (the
    recipe's `save_trained`, patched)."""
    raise Killed


def test_a_run_stopped_after_its_last_checkpoint_resumes_without_another_step(toy_model, tmp_path, monkeypatch):
    """A sitting that ends in the evaluation after training leaves the checkpoint of the last step;
    transformers' loop, resumed there, would take one more step (it checks max_steps after a step)."""
    import recipes.grpo

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli_main(["train", CONFIG, *overrides(toy_model, whole, steps=4)]) == 0

    with monkeypatch.context() as m:
        m.setattr(recipes.grpo, "save_trained", killed_after_training)
        with pytest.raises(Killed):
            cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4)])
    first_sitting = json.loads((killed / "checkpoints" / "checkpoint-4" / "rlsft_progress.json").read_text())
    samples = (killed / "samples_train.jsonl").read_text()
    assert {json.loads(line)["step"] for line in samples.splitlines()} == {1}  # monitor.every: the first generation's
    # this process's peak memory is its whole life's; the resumed sitting reports a tiny one of its own
    monkeypatch.setattr("rlsft.runs.compute.peak_memory_gb", lambda: 0.001)
    assert cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4), "--resume", str(killed)]) == 0

    assert json.loads((killed / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 4
    assert [r["step"] for r in step_metrics(killed)] == [1, 2, 3, 4]  # no step 5
    assert step_metrics(killed) == step_metrics(whole)
    assert (killed / "samples_train.jsonl").read_text() == samples  # nothing generated for training
    assert (killed / "model" / "model.safetensors").read_bytes() == (whole / "model" / "model.safetensors").read_bytes()
    r_killed, r_whole = (json.loads((out / "run.json").read_text()) for out in (killed, whole))
    assert r_killed["eval_after"] == r_whole["eval_after"]
    assert r_killed["compute"]["train_tokens"] == r_whole["compute"]["train_tokens"] > 0 and same_compute(r_killed, r_whole)
    assert r_killed["compute"]["wall_seconds"] == round(first_sitting["train_seconds"], 1)  # this sitting trained nothing (the record has 0.1 s)
    assert r_killed["compute"]["peak_memory_gb"] == first_sitting["peak_memory_gb"] > 0.001  # the training sitting's peak


def test_a_grpo_run_that_reuses_its_completions_resumes_mid_reuse_to_the_same_result(tmp_path, monkeypatch):
    """With `num_iterations=2` each generation trains two optimizer steps (steps 1-2, 3-4, 5-6).
    Checkpoint-3 falls between the two steps of a generation: the resume must train step 4 on the
    completions generated at step 3, kept with the checkpoint, and generate next at step 5, as the
    run that was never stopped did. (TRL's trainer, resumed, starts its step count over and
    generates afresh at once, shifting every later generation by one step.)"""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    extra = ["grpo.num_iterations=2", "training.save_steps=3", "grpo.max_completion_length=48"]
    assert cli_main(["train", CONFIG, *overrides("micro-student", whole, steps=6), *extra]) == 0
    with monkeypatch.context() as m:
        killed_at(m, 4)  # after checkpoint-3, in the second step of the generation made at step 3
        with pytest.raises(Killed):
            cli_main(["train", CONFIG, *overrides("micro-student", killed, steps=6), *extra])
    assert (killed / "checkpoints" / "checkpoint-3" / "grpo_reuse-0.pt").is_file()  # the generation still to be reused
    assert cli_main(["train", CONFIG, *overrides("micro-student", killed, steps=6), *extra, "--resume", str(killed)]) == 0
    resumed, reference = step_metrics(killed), step_metrics(whole)
    assert [r["step"] for r in resumed] == list(range(1, 7)) and any(r["grad_norm"] > 0 for r in reference[3:])
    assert resumed == reference
    r_killed, r_whole = (json.loads((out / "run.json").read_text()) for out in (killed, whole))
    assert r_killed["eval_after"] == r_whole["eval_after"] and same_compute(r_killed, r_whole)


def same_compute(a: dict, b: dict) -> bool:
    """Two records count the same tokens, the same unscored ones (GRPO's prompts) and the same FLOPs."""
    keys = ("train_tokens", "forward_tokens", "train_tokens_unscored", "forward_tokens_unscored", "flops")
    return all(a["compute"][k] == b["compute"][k] for k in keys) and a["compute"]["train_tokens_unscored"] > 0


def sft_overrides(model, out) -> list[str]:
    # logs every 2 steps, a checkpoint every 3: the step-3 checkpoint's token count is in no log line
    return [*tiny_recipe_overrides(model, out), "examples.n=32", "training.per_device_train_batch_size=4",
            "training.max_steps=6", "training.save_steps=3", "training.logging_steps=2"]


def test_a_resumed_sft_run_counts_the_compute_of_every_sitting(toy_model, tmp_path, monkeypatch):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, whole)]) == 0

    with monkeypatch.context() as m:
        killed_at(m, 4)  # one step past the step-3 checkpoint: that step's work is lost, and done again
        with pytest.raises(Killed):
            cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, killed)])
    assert not (killed / "run.json").exists()
    first_sitting = json.loads((killed / "checkpoints" / "checkpoint-3" / "rlsft_progress.json").read_text())
    assert cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, killed), "--resume", str(killed)]) == 0
    assert json.loads((killed / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 3

    # the same seed trains on the same batches in one sitting or two: the same tokens, to the token
    c_whole, c_killed = (json.loads((out / "run.json").read_text())["compute"] for out in (whole, killed))
    assert c_killed["train_tokens"] == c_whole["train_tokens"] > 0
    assert c_killed["flops"] == pytest.approx(c_whole["flops"], rel=1e-12)
    assert 0 < first_sitting["train_tokens"] < c_killed["train_tokens"]  # the checkpoint's count, which the resume went on from
    assert c_killed["wall_seconds"] > first_sitting["train_seconds"] > 0  # both sittings' training time
    # and the training log's running count goes on from the checkpoint rather than from zero
    tokens = [[r["num_tokens"] for r in logged_rows(out, "num_tokens")] for out in (whole, killed)]
    assert tokens[0] == tokens[1] and tokens[0][-1] == c_whole["train_tokens"]


def test_an_sft_run_stopped_after_its_last_checkpoint_counts_its_tokens_once(toy_model, tmp_path, monkeypatch):
    """TRL's SFT trainer keeps its token count on the trainer object, not in the checkpoint: a
    resume that trains nothing still carries it on from the checkpoint."""
    import recipes.sft

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, whole)]) == 0
    with monkeypatch.context() as m:
        m.setattr(recipes.sft, "save_trained", killed_after_training)
        with pytest.raises(Killed):
            cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, killed)])
    assert cli_main(["train", SFT_CONFIG, *sft_overrides(toy_model, killed), "--resume", str(killed)]) == 0

    assert json.loads((killed / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 6
    assert max(r["step"] for r in logged_rows(killed, "loss")) == 6  # no step 7
    assert (killed / "model" / "model.safetensors").read_bytes() == (whole / "model" / "model.safetensors").read_bytes()
    c_whole, c_killed = (json.loads((out / "run.json").read_text())["compute"] for out in (whole, killed))
    assert c_killed["train_tokens"] == c_whole["train_tokens"] > 0 and c_killed["flops"] == c_whole["flops"]


def test_a_resumed_on_policy_distillation_trains_on_the_same_prompts_past_its_first_epoch(tmp_path, monkeypatch):
    """16 prompts, 4 a step: the second epoch starts at step 5. Killed at step 6 and resumed from
    checkpoint-5, the run must draw the second epoch's order, not the first's again
    (rlsft/epoch_order.py). The shipped pair (micro-teacher teaching micro-student, one vocabulary)
    differ, so each step's loss reads its prompts."""
    def argv(out):
        return ["train", DISTILL_CONFIG, *tiny_recipe_overrides("micro-student", out), "distill.teacher=micro-teacher",
                "distillation.max_completion_length=16", "training.per_device_train_batch_size=4", "training.max_steps=8",
                "training.save_steps=5"]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli_main(argv(whole)) == 0
    with monkeypatch.context() as m:
        killed_at(m, 6)
        with pytest.raises(Killed):
            cli_main(argv(killed))
    assert cli_main([*argv(killed), "--resume", str(killed)]) == 0
    assert json.loads((killed / "resumes.jsonl").read_text().splitlines()[0])["from_step"] == 5
    resumed, reference = step_metrics(killed), step_metrics(whole)
    assert [r["step"] for r in reference] == list(range(1, 9)) and len({r["loss"] for r in reference}) > 1
    assert resumed == reference


def logged_rows(out, key: str) -> list[dict]:
    """The rows of a run's metrics.jsonl that log `key`."""
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if key in r]


def test_a_record_from_before_the_fix_is_recounted_from_its_log(tmp_path):
    """An SFT stage resumed at step 16 whose run.json counted one sitting (as the SmolLM2 study's
    hybrid seed 0 did): its log's two counts add up, once, and run.json says what changed."""
    from rlsft.runs.folder import RunFolder
    from rlsft.runs.recount import correct_runs

    run = RunFolder(tmp_path / "hybrid" / "seed0" / "1-sft")
    run.path.mkdir(parents=True)
    log = [(4, 5058), (8, 10090), (12, 15169), (16, 20241), (20, 5044), (24, 10094), (28, 15135), (32, 20180)]
    for step, n in log:
        run.append_metrics({"step": step, "loss": 0.1, "num_tokens": float(n)})
    run.append_metrics({"step": 32, "train_runtime": 375.4})
    run.resumes_file.write_text(json.dumps({"from_step": 16, "checkpoint": "checkpoints/checkpoint-16"}) + "\n")
    params = 134_515_008
    compute = {"parameters": params, "train_tokens": 20241, "forward_tokens": 0, "flops": 6 * params * 20241, "wall_seconds": 726.4}
    run.write_record({"recipe": "sft", "compute": compute, "curve": [{"step": "final", "pflops": 6 * params * 20241 / 1e15, "pass@1": 0.5}]})

    assert correct_runs([tmp_path / "hybrid"]) == [run]
    record = json.loads(run.record_file.read_text())
    assert record["compute"]["train_tokens"] == 40421 and record["compute"]["flops"] == 6 * params * 40421
    assert record["curve"][-1]["pflops"] == record["compute"]["flops"] / 1e15 and record["compute"]["wall_seconds"] == 726.4
    assert record["compute_corrected"]["before"] == {"train_tokens": 20241, "flops": 6 * params * 20241}
    assert correct_runs([tmp_path / "hybrid"]) == []  # once
    # a LoRA stage: the tokens the first count missed cost what LoRA's training does, 4 N + 6 T
    lora = RunFolder(tmp_path / "lora" / "seed0" / "1-sft")
    lora.path.mkdir(parents=True)
    for row in run.metrics:
        lora.append_metrics(row)
    lora.resumes_file.write_text(run.resumes_file.read_text())
    t = 1_000_000
    lora.write_record({"recipe": "sft", "compute": {**compute, "trainable_parameters": t, "flops": (4 * params + 6 * t) * 20241},
                       "curve": [{"step": "final", "pflops": (4 * params + 6 * t) * 20241 / 1e15, "pass@1": 0.5}]})
    assert correct_runs([tmp_path / "lora"]) == [lora]
    assert json.loads(lora.record_file.read_text())["compute"]["flops"] == (4 * params + 6 * t) * 40421


def test_resume_refuses_a_changed_config(toy_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", CONFIG, *overrides(toy_model, out, steps=2)]) == 0
    (out / "run.json").unlink()  # pretend it was killed
    capsys.readouterr()
    assert cli_main(["train", CONFIG, *overrides(toy_model, out, steps=2), "training.learning_rate=0.5", "--resume", str(out)]) == 2
    assert "its config differs at training.learning_rate" in capsys.readouterr().err


def test_kept_completions_are_restored_on_every_process_or_none(tmp_path):
    """A checkpoint saved by 2 processes, resumed by 2: each takes its own file back; resumed by
    1 (or with a file missing), none does, with a warning, and the run generates afresh as TRL's."""
    from types import SimpleNamespace as NS

    from rlsft.grpo_trainer import GRPOTrainer

    for i in range(2):
        torch.save({"step": 3, "processes": 2, "inputs": [{"advantages": torch.full((2,), float(i))}]}, tmp_path / f"grpo_reuse-{i}.pt")

    def resumed(processes, index):
        t = NS(REUSE_FILE=GRPOTrainer.REUSE_FILE, _step=0, _buffered_inputs=None,
               accelerator=NS(num_processes=processes, process_index=index, device="cpu"))
        GRPOTrainer._restore_reuse(t, tmp_path)
        return t

    second = resumed(2, 1)
    assert second._step == 3 and second._buffered_inputs[0]["advantages"].tolist() == [1.0, 1.0]
    with pytest.warns(UserWarning, match="another number of processes"):
        alone = resumed(1, 0)
    assert alone._step == 0 and alone._buffered_inputs is None
    (tmp_path / "grpo_reuse-1.pt").unlink()
    with pytest.warns(UserWarning):
        assert resumed(2, 0)._buffered_inputs is None


def test_a_grpo_run_resumed_from_a_checkpoint_without_its_completion_count_says_how_it_priced(toy_model, tmp_path, monkeypatch):
    """A checkpoint written before completion tokens were counted: the resumed record prices the
    output head on every token, and its flops_formula says so (a report then flags the mix)."""
    import recipes.grpo

    killed = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(recipes.grpo, "save_trained", killed_after_training)
        with pytest.raises(Killed):
            cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4)])
    progress = killed / "checkpoints" / "checkpoint-4" / "rlsft_progress.json"
    saved = json.loads(progress.read_text())
    assert saved.pop("completion_tokens") > 0
    progress.write_text(json.dumps(saved))
    assert cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4), "--resume", str(killed)]) == 0
    c = json.loads((killed / "run.json").read_text())["compute"]
    assert c["train_tokens_unscored"] == 0 and "prices the output head on every token" in c["flops_formula"]


def test_a_checkpoint_without_its_progress_file_is_resumed_with_a_warning(toy_model, tmp_path, monkeypatch):
    """A kill between transformers' checkpoint and the lab's progress file: the run resumes, and
    says that its record leaves out the earlier sittings' seconds and curve points."""
    import recipes.grpo

    killed = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(recipes.grpo, "save_trained", killed_after_training)
        with pytest.raises(Killed):
            cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4)])
    (killed / "checkpoints" / "checkpoint-4" / "rlsft_progress.json").unlink()
    with pytest.warns(UserWarning, match="has no rlsft_progress.json"):
        assert cli_main(["train", CONFIG, *overrides(toy_model, killed, steps=4), "--resume", str(killed)]) == 0


def test_reopening_drops_the_training_samples_of_steps_trained_again(tmp_path):
    """samples_train.jsonl kept the completions of steps after the checkpoint, which the resumed
    run trains and writes again: those steps appeared twice."""
    from rlsft.io import read_jsonl, to_jsonl
    from rlsft.runs.folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.create({"recipe": "grpo"})
    (run.path / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run.path / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (run.path / "metrics.jsonl").write_text(to_jsonl({"step": s} for s in range(1, 7)))
    run.samples_train_file.write_text(to_jsonl([{"completion": "old"}, *({"step": s, "completion": "c"} for s in (1, 4, 5, 6))]))
    assert run.reopen({"recipe": "grpo"}) == 4
    assert [r.get("step") for r in read_jsonl(run.samples_train_file)] == [None, 1, 4]
    assert [r["step"] for r in read_jsonl(run.metrics_file)] == [1, 2, 3, 4]
