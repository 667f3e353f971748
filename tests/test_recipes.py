"""Every recipe runs end to end on a toy model and writes the run folder a user reads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_recipe_overrides

from rlsft.io import UserError
from rlsft.launch import load_recipe_config, train_from_config

MICRO = REPO / "configs" / "micro"
GRPO_TINY = ["grpo.num_generations=4", "grpo.max_completion_length=24", "training.per_device_train_batch_size=8", "probe.prompts=2", "probe.force=true"]


def run_recipe(config: Path, overrides: list[str]) -> dict:
    module, cfg = load_recipe_config(str(config), overrides)
    return module.main(cfg)


def check_run_folder(out: Path, recipe: str):
    for name in ("config.yaml", "provenance.json", "metrics.jsonl", "run.json", "model/config.json", "eval_after/micro-arith/metrics.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "run.json").read_text())
    assert record["recipe"] == recipe
    c = record["compute"]
    assert c["flops"] > 0 and c["train_tokens"] > 0 and c["wall_seconds"] > 0
    assert set(record["eval_after"]["micro-arith"]) >= {"pass@1", "pass@2", "format_rate", "mixing_rate"}
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in s for s in steps)
    return record, steps


def test_grpo_run_folder(toy_model, tmp_path):
    out = tmp_path / "grpo"
    run_recipe(MICRO / "grpo_langreward.yaml", tiny_recipe_overrides(toy_model, out) + GRPO_TINY + ["eval.before=true", "eval.before_samples=4"])
    record, steps = check_run_folder(out, "grpo")
    logged = {k for s in steps for k in s}
    # TRL's figures, each reward, and the training completions' mixing rate (zero-weight monitor)
    assert {"reward", "completions/mean_length", "entropy", "rewards/accuracy_reward/mean",
            "rewards/language_consistency_reward/mean", "rewards/language_monitor/mean"} <= logged
    assert (out / "samples_train.jsonl").read_text().strip()
    assert record["eval_before"]["micro-arith"]["pass@1"] is not None
    # the starting model with its own sample count (eval.before_samples), the trained one with eval.samples
    assert "pass@4" in record["eval_before"]["micro-arith"] and "pass@4" not in record["eval_after"]["micro-arith"]
    c = record["compute"]
    assert c["forward_tokens"] == c["train_tokens"]  # beta 0: generation only
    # the output head is priced on the completion tokens alone: 8 a step (GRPO_TINY), one generation a step
    completions = round(sum(8 * s["completions/mean_length"] for s in steps if "completions/mean_length" in s))
    assert 0 < c["train_tokens"] - c["train_tokens_unscored"] == completions < c["train_tokens"]
    n, head = c["parameters"], c["head_parameters"]
    assert 0 < head < n and c["flops"] == 6 * n * c["train_tokens"] + 2 * n * c["forward_tokens"] - head * (
        6 * c["train_tokens_unscored"] + 2 * c["forward_tokens_unscored"])


def test_an_existing_run_is_never_overwritten(toy_model, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    with pytest.raises(UserError, match="already exists"):
        run_recipe(MICRO / "r1_zero.yaml", tiny_recipe_overrides(toy_model, out) + GRPO_TINY)
    assert (out / "run.json").read_text() == "{}"


def test_sft_trains_on_clean_examples(toy_model, tmp_path):
    out = tmp_path / "sft"
    record = run_recipe(MICRO / "sft_cold_start.yaml", tiny_recipe_overrides(toy_model, out) + ["examples.n=32"])
    check_run_folder(out, "sft")
    assert record["n_examples"] == 32


def test_compute_record_prices_the_parameters_a_token_multiplies_by(toy_model, tmp_path):
    """An untied input embedding is a lookup: the record's N leaves it out (the output head stays),
    and says which formula it used."""
    import shutil

    from transformers import AutoModelForCausalLM

    from rlsft.models import flop_parameters, load_model, n_params
    from rlsft.runs.compute import FLOPS_FORMULA

    untied = tmp_path / "untied"
    shutil.copytree(toy_model, untied)
    tied = load_model(toy_model)
    config = tied.config
    config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(tied.state_dict(), strict=False)
    model.lm_head.weight.data.copy_(tied.get_input_embeddings().weight.data)  # the same head, held apart
    model.save_pretrained(untied)
    embedding = tied.get_input_embeddings().weight.numel()
    assert n_params(model) == n_params(tied) + embedding and flop_parameters(model) == flop_parameters(tied) == n_params(tied)
    assert n_params(load_model(str(untied))) == n_params(model)  # it loads untied, as the recipe will

    record = run_recipe(MICRO / "sft_cold_start.yaml", tiny_recipe_overrides(str(untied), tmp_path / "sft") + ["examples.n=8"])
    c = record["compute"]
    assert c["parameters"] == n_params(tied) and c["flops_formula"] == FLOPS_FORMULA
    assert c["flops"] == 6 * c["parameters"] * c["train_tokens"] > 0


# micro-student solves micro-arith (the toy model, barely trained, rarely does), so its traces pass the verifier
TEACHER = ["distill.teacher=micro-student", "distill.samples_per_prompt=2", "distill.max_new_tokens=48"]


@pytest.mark.parametrize("mode", ["offline", "onpolicy"])
def test_distill(toy_model, tmp_path, mode):
    out = tmp_path / mode
    if mode == "offline":
        record = run_recipe(MICRO / "distill_offline.yaml", tiny_recipe_overrides(toy_model, out) + TEACHER + ["distill.cache_dir=null"])
        t = record["teacher_traces"]  # keep_per_prompt 1: one verified trace at most per prompt
        assert 0 < t["kept"] == t["prompts_with_a_kept_trace"] <= min(t["prompts"], t["correct_samples"])
        assert len((out / "teacher_traces.jsonl").read_text().splitlines()) == t["kept"]
    else:
        extra = ["distill.samples_per_prompt=2", "distill.max_new_tokens=24", f"distill.teacher={toy_model}", "training.per_device_train_batch_size=4"]
        record = run_recipe(MICRO / "distill_onpolicy.yaml", tiny_recipe_overrides(toy_model, out) + extra)
    check_run_folder(out, f"distill-{'offline' if mode == 'offline' else 'on_policy'}")
    assert record["compute"]["teacher_flops"] > 0


def test_a_teacher_with_no_verified_trace_stops_offline_distillation_before_training(toy_model, tmp_path):
    out = tmp_path / "run"
    cut = ["distill.max_new_tokens=1", "distill.cache_dir=null"]  # one token: every trace is cut off, and a cut trace is never kept
    with pytest.raises(UserError, match="no verified-correct trace on 16 prompts"):
        run_recipe(MICRO / "distill_offline.yaml", tiny_recipe_overrides(toy_model, out) + TEACHER + cut)
    assert not (out / "model").exists() and not (out / "run.json").exists()
    assert not (out / "eval_before").exists()  # refused before the student loads: its evaluation before training is not paid


def test_offline_distillation_loads_its_teacher_only_to_sample_traces_the_cache_lacks(toy_model, tmp_path, monkeypatch):
    import recipes.distill
    from rlsft.models import count_parameters, load_model, n_params

    assert count_parameters(toy_model) == n_params(load_model(toy_model))  # counted on the meta device, no weights read
    loads = []
    monkeypatch.setattr(recipes.distill, "load_model", lambda name, *a, **k: loads.append(name) or load_model(name, *a, **k))
    outcomes = []
    for run in ("miss", "hit"):
        loads.clear()
        record = run_recipe(MICRO / "distill_offline.yaml", tiny_recipe_overrides(toy_model, tmp_path / run) + TEACHER
                            + [f"distill.cache_dir={tmp_path / 'cache'}"])
        outcomes.append((record["teacher_traces"]["cache"].split(":")[0], record["compute"]["teacher_parameters"]))
        assert loads.count("micro-student") == (1 if run == "miss" else 0)  # the toy student is loaded by its own name
    assert outcomes == [("written", count_parameters("micro-student")), ("hit", count_parameters("micro-student"))]
    traces = [(tmp_path / run / "teacher_traces.jsonl").read_text() for run in ("miss", "hit")]
    assert traces[0] == traces[1] != ""


def test_pipeline_chains_stages_and_skips_finished_ones(toy_model, tmp_path, capsys):
    tiny = tiny_recipe_overrides(toy_model, tmp_path / "ignored")
    tiny = [o for o in tiny if not o.startswith(("run.out_dir", "model.name"))]
    pipe = {
        "recipe": "pipeline",
        "run": {"name": "tiny-r1", "out_dir": str(tmp_path / "pipe")},
        "stages": [
            {"config": str(MICRO / "sft_cold_start.yaml"), "overrides": tiny + [f"model.name={toy_model}", "examples.n=16"]},
            {"config": str(MICRO / "r1_zero.yaml"), "name": "grpo", "overrides": tiny + GRPO_TINY},
        ],
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(pipe))
    record = train_from_config(str(path))
    stage1, stage2 = tmp_path / "pipe" / "1-sft_cold_start", tmp_path / "pipe" / "2-grpo"
    assert record["recipe"] == "grpo"
    assert yaml.safe_load((stage2 / "config.yaml").read_text())["model"]["name"] == str(stage1 / "model")
    before = (stage2 / "run.json").stat().st_mtime_ns
    train_from_config(str(path))  # a rerun skips both finished stages
    assert "stage 2/2 grpo: finished before, skipped" in capsys.readouterr().out
    assert (stage2 / "run.json").stat().st_mtime_ns == before


def test_two_process_launch_under_accelerate(toy_model, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
           "-m", "rlsft.cli", "train", str(MICRO / "r1_zero.yaml"), *tiny_recipe_overrides(toy_model, out), *GRPO_TINY]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    record, _ = check_run_folder(out, "grpo")
    assert record["compute"]["processes"] == 2
    probed = [line for line in p.stdout.splitlines() if line.startswith("pre-flight: ")]
    assert len(probed) == 1, probed  # the first process probes, the other takes its record


def test_two_process_offline_distillation_samples_the_teacher_once(toy_model, tmp_path):
    out, cache = tmp_path / "ddp-distill", tmp_path / "cache"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
           "-m", "rlsft.cli", "train", str(MICRO / "distill_offline.yaml"), *tiny_recipe_overrides(toy_model, out), *TEACHER,
           f"distill.cache_dir={cache}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    record, _ = check_run_folder(out, "distill-offline")
    assert record["compute"]["processes"] == 2
    assert record["teacher_traces"]["cache"].startswith("written")  # the first process sampled; the other read its cache
    assert p.stderr.count("teacher traces:   0%") == 1, p.stderr[-2000:]  # one sampling progress bar: one process sampled
    assert len(list(cache.iterdir())) == 1


def test_teacher_traces_are_cached_and_reused(toy_model, tmp_path):
    from recipes.distill import Config, DistillConfig, cached_teacher_traces
    from rlsft.config import DataConfig, RunConfig
    from rlsft.models import load_model, load_tokenizer

    d = DistillConfig(teacher=toy_model, samples_per_prompt=2, max_new_tokens=16, cache_dir=str(tmp_path / "cache"))
    cfg = Config(run=RunConfig(name="t"), data=DataConfig(task="micro-arith", n_train=6), distill=d)
    tok, loads = load_tokenizer(toy_model), []

    def loader():
        loads.append(1)
        return load_model(toy_model)

    rows1, stats1 = cached_teacher_traces(loader, tok, cfg)
    rows2, stats2 = cached_teacher_traces(loader, tok, cfg)
    assert len(loads) == 1 and stats1["cache"].startswith("written") and stats2["cache"].startswith("hit")
    assert rows1 == rows2 and stats1["samples"] == stats2["samples"] == 12
    cfg.distill = DistillConfig(**{**d.__dict__, "temperature": 0.5})
    cached_teacher_traces(loader, tok, cfg)
    assert len(loads) == 2  # other sampling settings: other traces
    cfg.distill, cfg.run = DistillConfig(**{**d.__dict__, "trace_seed": 0}), RunConfig(name="t", seed=1)
    _, stats3 = cached_teacher_traces(loader, tok, cfg)  # seed 1 with trace_seed 0: seed 0's traces
    assert len(loads) == 2 and stats3["cache"].startswith("hit")
    cfg.distill = d
    cached_teacher_traces(loader, tok, cfg)
    assert len(loads) == 3  # seed 1 without trace_seed: its own prompts and samples


def test_the_trace_cache_is_keyed_on_what_makes_the_traces_not_on_the_commit(toy_model, monkeypatch):
    import recipes.distill as distill
    import rlsft.runs.provenance
    from rlsft.config import DataConfig, RunConfig
    from rlsft.models import load_tokenizer

    tok = load_tokenizer(toy_model)

    def key(n_train=6, **distill_fields):
        d = distill.DistillConfig(teacher=toy_model, **distill_fields)
        return distill.trace_cache_key(distill.Config(run=RunConfig(name="t"), data=DataConfig(task="micro-arith", n_train=n_train), distill=d,
                                                      training={"learning_rate": 3e-5}), tok)

    first = key()
    monkeypatch.setattr(rlsft.runs.provenance, "git_commit", lambda *a, **k: "another-commit")
    assert key() == first  # an edit elsewhere in the lab reuses hours of traces
    assert key(n_train=5) != first and key(teacher_template="r1-zero") == first  # the prompts as the teacher reads them
    assert key(max_new_tokens=64) != first and key(trace_seed=3) != first
    monkeypatch.setattr(distill, "teacher_prompts", lambda cfg, tokenizer: ([{"answer": "1"}], ["other prompt"]))
    assert key() != first
    with pytest.raises(UserError, match="distill.teacher_template must be one of"):
        distill.DistillConfig(teacher_template="r1")


def test_a_run_logs_to_wandb_offline_with_its_group_name_and_config(toy_model, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    seen = []  # the real wandb.init runs; this records what the run was opened with
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.append(kw) or real_init(**kw))
    overrides = [o for o in tiny_recipe_overrides(toy_model, tmp_path / "run") if o != "run.report_to=none"]
    run_recipe(MICRO / "r1_zero.yaml", overrides + GRPO_TINY + ["run.report_to=wandb", "run.group=my-study", "run.name=r1_zero/seed0",
                                                           "eval.curve_steps=[1]"])
    # the study is the group, arm/seed the name, and the lab's own config travels with TRL's
    wandb.teardown()  # the service writes the run's file asynchronously; stopping it flushes every record before the file is read
    (kw,) = seen
    assert kw["group"] == "my-study" and kw["name"] == "r1_zero/seed0" and kw["config"]["rlsft"]["data"]["task"] == "micro-arith"
    (log,) = (tmp_path / "wandb").rglob("offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert b"my-study" in data and b"train/loss" in data  # TRL's callback logged into the same run
    # held-out results too: history beside training's, the summary, and tables of completions with their flags
    assert b"heldout/micro-arith/pass@1" in data and b"heldout/after/micro-arith/mixing_rate" in data
    tables = {p.name.split("_")[1] for p in (tmp_path / "wandb").rglob("media/table/heldout/micro-arith/*.table.json")}
    assert tables == {"before", "step-1", "after"}  # the curve's checkpoint too
    (after,) = (tmp_path / "wandb").rglob("media/table/heldout/micro-arith/samples_after*.table.json")
    table = json.loads(after.read_text())
    assert "mixed" in table["columns"] and len(table["data"]) == 4 * 2  # eval.n x eval.samples of the tiny run


def test_the_accuracy_curve_leaves_training_unchanged(toy_model, tmp_path):
    """Evaluating at curve steps restores the RNG, so the logged training steps are the same as without it."""
    base = tiny_recipe_overrides(toy_model, tmp_path / "plain") + GRPO_TINY + ["training.max_steps=3"]
    run_recipe(MICRO / "r1_zero.yaml", base)
    with_curve = [o.replace(str(tmp_path / "plain"), str(tmp_path / "curve")) for o in base] + ["eval.curve_steps=[1, 2]"]
    record = run_recipe(MICRO / "r1_zero.yaml", with_curve)
    assert [p["step"] for p in record["curve"]] == [1, 2, "final"]
    assert record["curve"][0]["pflops"] < record["curve"][1]["pflops"] < record["curve"][2]["pflops"]
    assert record["curve"][0]["eval_seconds"] > 0 and record["compute"]["wall_seconds"] > 0  # evaluation time is not training time
    assert (tmp_path / "curve" / "eval_curve" / "step-1" / "micro-arith" / "samples.jsonl").is_file()

    def steps(out):
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("step_time",)} for r in rows if "loss" in r]

    assert steps(tmp_path / "plain") == steps(tmp_path / "curve")


def test_grpo_with_a_think_prefill_and_lenient_shaped_rewards(chat_toy_model, tmp_path):
    """The prefill path through TRL: chat prompts rendered with <think> opened, generation that
    stops at </answer>, lenient extraction, tag_count and partial credit; all of it recorded."""
    out = tmp_path / "prefill"
    record = run_recipe(MICRO / "r1_zero.yaml", tiny_recipe_overrides(chat_toy_model, out) + GRPO_TINY + [
        "data.think_prefill=true", "extraction=lenient", "partial_credit=0.1", "rewards={accuracy: 1.0, tag_count: 0.5}"])
    assert record["config"]["extraction"] == "lenient" and record["probe"]["think_prefill"] and record["probe"]["extraction"] == "lenient"
    assert set(record["probe"]["rewards"]) == {"accuracy", "tag_count"}
    metrics = json.loads((out / "eval_after" / "micro-arith" / "metrics.json").read_text())
    assert metrics["think_prefill"] and "pass@1_lenient" in metrics["metrics"]
    samples = [json.loads(line) for line in (out / "eval_after" / "micro-arith" / "samples.jsonl").read_text().splitlines()]
    assert all(s["completion"].startswith("<think>") for s in samples)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/tag_count_reward/mean" in s for s in steps)


def test_arms_of_one_seed_share_their_evaluation_before_training(toy_model, tmp_path, monkeypatch):
    """`eval.before_cache`: the first run evaluates the starting model, a second arm of the same seed
    (other training prompts) copies it, the same samples, and evaluates nothing before training; a
    run with another seed makes its own."""
    import rlsft.trainer

    calls = []
    real = rlsft.trainer.evaluate
    monkeypatch.setattr(rlsft.trainer, "evaluate", lambda args, **kw: calls.append(Path(args.out).parts[-2]) or real(args, **kw))
    cache = tmp_path / "before"

    def run(name: str, *extra: str) -> Path:
        out = tmp_path / name
        run_recipe(MICRO / "r1_zero.yaml", [*tiny_recipe_overrides(toy_model, out), *GRPO_TINY, f"eval.before_cache={cache}", *extra])
        return out

    first, second = run("a"), run("b", "data.zh_prompt_share=0.5")
    assert calls.count("eval_before") == 1 and calls.count("eval_after") == 2
    same = "eval_before/micro-arith/samples.jsonl"
    assert (first / same).read_text() == (second / same).read_text()
    assert json.loads((second / "run.json").read_text())["eval_before"] == json.loads((first / "run.json").read_text())["eval_before"]
    run("c", "run.seed=1")
    assert calls.count("eval_before") == 2 and len(list(cache.iterdir())) == 2
    monkeypatch.setattr(rlsft.trainer, "git_commit", lambda: "another-commit")  # the same seed, after the lab's code moved on
    run("d")
    assert calls.count("eval_before") == 3 and len(list(cache.iterdir())) == 3


@pytest.mark.parametrize("how", ["netrc", "key", "none", "other-host"])
def test_wandb_goes_online_after_wandb_login_and_stays_offline_without_a_key(tmp_path, monkeypatch, how):
    """`wandb login` writes the key to ~/.netrc; that alone (no WANDB_API_KEY) must log online."""
    import os

    from rlsft.config import RunConfig
    from rlsft.trainer import setup_reporting

    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    host = "example.org" if how == "other-host" else "api.wandb.ai"
    netrc.write_text(f"machine {host}\n  login user\n  password {'x' * 40}\n" if how in ("netrc", "other-host") else "")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    if how == "key":
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    import wandb

    monkeypatch.setattr(wandb, "init", lambda **kw: None)  # nothing is opened or sent

    import recipes.grpo

    setup_reporting(recipes.grpo.Config(run=RunConfig(name="r", report_to="wandb")))
    assert os.environ.get("WANDB_MODE") == (None if how in ("netrc", "key") else "offline")


def test_half_precision_weights_an_update_cannot_move_are_named(toy_model, tmp_path):
    """Full fine-tuning with bfloat16 weights at an RL learning rate: AdamW updates the weights in
    their own precision, and most steps round back to the same weight. The run warns with the share
    measured on its own weights, and at least that share is indeed unchanged after training."""
    import torch

    from rlsft.models import load_model

    out = tmp_path / "bf16"
    overrides = tiny_recipe_overrides(toy_model, out) + ["examples.n=16", "training.learning_rate=1e-6", "model.dtype=bfloat16",
                                                         "eval.before=false"]
    with pytest.warns(UserWarning, match=r"of the trainable weights are held in bfloat16 .* learning_rate 1e-06") as caught:
        run_recipe(MICRO / "sft_cold_start.yaml", overrides)
    share = float(next(str(w.message) for w in caught if "trainable weights" in str(w.message)).split("%")[0]) / 100
    before, after = load_model(toy_model, "bfloat16"), load_model(str(out / "model"), "bfloat16")
    same = sum(int((a == b).sum()) for a, b in zip(before.parameters(), after.parameters()))
    assert share > 0.5 and same / sum(p.numel() for p in before.parameters()) >= share - 0.01
    assert after.dtype == torch.bfloat16


def test_sft_with_a_think_prefill_trains_on_the_prompt_form_grpo_and_evaluation_use(toy_model, tmp_path):
    """`data.think_prefill`: the SFT prompt ends in the `<think>` that GRPO's prompts and the
    evaluations open, and the completion goes on from it (no second `<think>`)."""
    from recipes.sft import sft_examples
    from rlsft.trainer import prompt_dataset

    overrides = tiny_recipe_overrides(toy_model, tmp_path / "sft") + ["examples.n=8", "data.think_prefill=true", "data.template=r1-zero"]
    _, cfg = load_recipe_config(str(MICRO / "sft_cold_start.yaml"), overrides)
    pairs = sft_examples(cfg)
    grpo_prompt = prompt_dataset(cfg.data, cfg.run.seed)[0]["prompt"]
    assert all(p["prompt"].endswith(" <think>") and not p["completion"].lstrip().startswith("<think>") for p in pairs)
    assert grpo_prompt.endswith(" <think>") and pairs[0]["prompt"][-19:] == grpo_prompt[-19:] == " Assistant: <think>"
    record = run_recipe(MICRO / "sft_cold_start.yaml", overrides)
    assert record["eval_after"]["micro-arith"]["pass@1"] is not None
    metrics = json.loads((tmp_path / "sft" / "eval_after" / "micro-arith" / "metrics.json").read_text())
    assert metrics["think_prefill"] and metrics["checks"] == {"timeouts": 0, "failures": 0}  # every answer check gave a verdict


def test_sft_from_a_trace_file_prompts_in_the_runs_own_form(toy_model, tmp_path):
    """A teacher's trace file keeps the teacher's prompt (chat messages here); the student's SFT
    builds its own from the question, and takes a line's prompt only when it has no question."""
    from recipes.sft import sft_examples

    traces = tmp_path / "traces.jsonl"
    lines = [{"question": "Compute 2 + 2.", "prompt": [{"role": "user", "content": "Compute 2 + 2."}], "completion": "<think> 4 </think> <answer>4</answer>"},
             {"prompt": "Q: 3 + 3? A:", "completion": "<answer>6</answer>"}]
    traces.write_text("".join(json.dumps(x) + "\n" for x in lines))
    overrides = tiny_recipe_overrides(toy_model, tmp_path / "sft") + [f"examples.source={traces}", "data.template=r1-zero"]
    pairs = sft_examples(load_recipe_config(str(MICRO / "sft_cold_start.yaml"), overrides)[1])
    assert isinstance(pairs[0]["prompt"], str) and pairs[0]["prompt"].endswith("User: Compute 2 + 2. Assistant:")
    assert pairs[1]["prompt"] == "Q: 3 + 3? A:"


def test_offline_distillation_with_a_think_prefill_trains_on_traces_that_open_it(toy_model, tmp_path):
    """The student's prompt ends in `<think>`: a verified trace that opens the tag too continues it
    (micro-student's do); one that does not is left out and counted, rather than stopping the run."""
    out = tmp_path / "distill"
    record = run_recipe(MICRO / "distill_offline.yaml", tiny_recipe_overrides(toy_model, out) + TEACHER
                        + ["data.think_prefill=true", "data.template=r1-zero"])
    stats = record["teacher_traces"]
    assert 0 < stats["kept_opening_think"] <= stats["kept"]
    assert json.loads((out / "eval_after" / "micro-arith" / "metrics.json").read_text())["think_prefill"]
