"""Bad input, everywhere a user types something: one clear line naming the culprit, exit status 2,
and nothing half-written (no run folder is left behind)."""

import pytest
from conftest import REPO, tiny_recipe_overrides

from rlsft.cli import main as cli_main

MICRO = REPO / "configs" / "micro"
GRPO = str(MICRO / "r1_zero.yaml")


def bad_files(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"question": "1+1", "answer": "2"}\nnot json at all\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "1+1?", "answer": "1+1=2\\n#### 2"}\n')
    (tmp_path / "pipe.yaml").write_text(
        "# a pipeline whose first stage is missing\nrecipe: pipeline\nrun: {name: p}\n"
        "stages:\n  - {config: configs/micro/nope.yaml}\n  - {config: configs/micro/r1_zero.yaml}\n")
    (tmp_path / "latin1.jsonl").write_bytes('{"question": "caf\u00e9 1+1?", "answer": "1+1=2\\n#### 2"}\n'.encode("latin-1"))
    (tmp_path / "twice.yaml").write_text("recipe: grpo\ntraining: {max_steps: 48}\ntraining: {learning_rate: 1.0e-4}\n")
    (tmp_path / "conv.jsonl").write_text('{"question": "1+1?", "completion": [{"role": "assistant", "content": "2"}]}\n')
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "sft_done").mkdir()
    (tmp_path / "sft_done" / "config.yaml").write_text("recipe: sft\n")
    (tmp_path / "sft_done" / "run.json").write_text("{}\n")
    (tmp_path / "completions.jsonl").write_text('{"id": "q1", "answer": "2", "completion": "<answer>2</answer>"}\n')
    study = "name: s\nrecipes: {r1_zero: configs/micro/r1_zero.yaml}\nseeds: %s\nclaims:\n  - {id: C1, text: t, metric: %s, arm: %s, against: base, direction: %s}\n"
    (tmp_path / "st_ok.yaml").write_text(study % ("[0]", "accuracy", "r1_zero", "greater"))
    for name, fields in {"st_arm": ("[0]", "accuracy", "r1_zeroo", "greater"), "st_dir": ("[0]", "accuracy", "r1_zero", "bigger"),
                         "st_metric": ("[0]", "acuracy", "r1_zero", "greater"), "st_seeds": ("[0, 0]", "accuracy", "r1_zero", "greater")}.items():
        (tmp_path / f"{name}.yaml").write_text(study % fields)
    (tmp_path / "st_model.yaml").write_text((study % ("[0]", "accuracy", "r1_zero", "greater")) + "arm_overrides: {r1_zero: [model.name=micro-studnet]}\n")


# (id, argv after "rlsft", [overrides from tiny_recipe_overrides?], text the error line must contain)
CASES = [
    # configs
    ("config: unknown key", ["train", GRPO, "training.lerning_rate=1e-4"], True, "did you mean 'learning_rate'"),
    ("config: wrong type", ["train", GRPO, "training.max_steps=many"], True, "max_steps"),
    ("config: missing config file", ["train", "configs/micro/nope.yaml"], False, "nope.yaml"),
    ("config: stage config missing", ["train", "{tmp}/pipe.yaml"], False, "nope.yaml"),
    ("config: stage input missing", ["train", GRPO, "model.name={tmp}/no-such-stage/model"], True, "no-such-stage"),
    ("config: unknown reward", ["train", GRPO, "rewards={accurcy: 1.0}"], True, "accurcy"),
    ("config: unknown task", ["train", GRPO, "data.task=micro-arithmetic"], True, "micro-arithmetic"),
    ("config: unknown eval task", ["train", GRPO, "eval.tasks=[gsm9k]"], True, "gsm9k"),
    ("config: unknown extraction", ["train", GRPO, "extraction=loose"], True, "'loose'"),
    ("config: extraction outside GRPO", ["train", str(MICRO / "sft_cold_start.yaml"), "extraction=lenient"], True, "extraction"),
    ("config: DeepSpeed ZeRO-3", ["train", GRPO, "training.deepspeed={zero_optimization: {stage: 3}}"], True, "ZeRO-3"),
    ("config: a token count that races the lab's", ["train", str(MICRO / "sft_cold_start.yaml"), "training.include_num_input_tokens_seen=all"], True,
     "include_num_input_tokens_seen"),
    # data
    ("data: missing file", ["train", GRPO, "data.source={tmp}/missing.jsonl"], True, "missing.jsonl"),
    ("data: an SFT completion that is no text", ["train", str(MICRO / "sft_cold_start.yaml"), "examples.source={tmp}/conv.jsonl"], True,
     "conv.jsonl: line 1's completion is list"),
    ("config: a teacher that samples nothing", ["train", str(MICRO / "distill_offline.yaml"), "distill.samples_per_prompt=0"], True,
     "samples_per_prompt"),
    # offline distillation's teacher sampled its traces from an evaluation set's problems (a test set)
    ("data: distillation from an evaluation set", ["train", str(MICRO / "distill_offline.yaml"), "data.task=math500"], True, "no train split"),
    ("data: bad JSONL line", ["train", GRPO, "data.source={tmp}/bad.jsonl"], True, "bad.jsonl:2"),
    ("data: empty dataset", ["train", GRPO, "data.source={tmp}/empty.jsonl"], True, "empty.jsonl"),
    ("data: not UTF-8", ["train", GRPO, "data.task=gsm8k", "data.source={tmp}/latin1.jsonl"], True, "not UTF-8"),
    ("data: a folder for a file", ["score", "--task", "gsm8k", "--completions", "{tmp}/a_folder", "--out", "{tmp}/o.jsonl"], False, "a_folder"),
    ("data: write over a folder", ["score", "--task", "gsm8k", "--completions", "{tmp}/completions.jsonl", "--out", "{tmp}/a_folder"], False,
     "a_folder"),
    ("config: a key twice", ["train", "{tmp}/twice.yaml"], False, "'training' twice"),
    ("config: an override that is no YAML value", ["train", GRPO, "training.max_steps=[1"], True, "training.max_steps=[1"),
    ("config: a key twice in an override", ["train", GRPO, "rewards={accuracy: 1.0, accuracy: 0.5}"], True, "'accuracy' twice"),
    ("config: zero batch", ["train", GRPO, "training.per_device_train_batch_size=0"], True, "per_device_train_batch_size"),
    ("config: more problems than the split holds", ["eval", "--model", "{toy}", "--task", "micro-countdown", "--split", "validation",
                                                    "--n", "600", "--out", "{tmp}/e"], False, "distinct problems"),
    ("data: score into the input", ["score", "--task", "gsm8k", "--completions", "{tmp}/completions.jsonl", "--out", "{tmp}/completions.jsonl"],
     False, "overwrite its input"),
    ("config: a stage override for no stage", ["train", str(MICRO / "r1.yaml"), "stage_overrides=[grpp:training.max_steps=5]"], False, "grpp"),
    ("study: --only names nothing", ["study", "{tmp}/st_ok.yaml", "--only", ",", "--dry-run"], False, "--only"),
    ("eval: top-p 0", ["eval", "--model", "{toy}", "--task", "micro-arith", "--top-p", "0", "--out", "{tmp}/e"], False, "top_p"),
    ("eval: temperature nan", ["eval", "--model", "{toy}", "--task", "micro-arith", "--temperature", "nan", "--out", "{tmp}/e"], False,
     "temperature"),
    ("bench: zero steps", ["bench", "--steps", "0", "--out", "{tmp}/run"], False, "--steps"),
    ("bench: unknown model", ["bench", "--model", "{tmp}/no-model", "--out", "{tmp}/run"], False, "no-model"),
    ("data: score a missing file", ["score", "--task", "gsm8k", "--completions", "{tmp}/none.jsonl", "--out", "{tmp}/o.jsonl"], False, "none.jsonl"),
    # models
    ("model: missing path", ["train", GRPO, "model.name={tmp}/no-model"], True, "no-model"),
    ("model: hub id while offline", ["eval", "--model", "Qwen/Qwen2.5-0.5B", "--task", "gsm8k", "--source", "{tmp}/gsm8k.jsonl", "--out", "{tmp}/e"], False, "Qwen/Qwen2.5-0.5B"),
    ("model: teacher with another tokenizer", ["train", str(MICRO / "distill_onpolicy.yaml"), "distill.teacher={toy}"], True, "logit rows"),
    ("config: negative training prompts", ["train", GRPO, "data.n_train=-3"], True, "data.n_train"),
    ("config: unknown prompt form", ["train", GRPO, "data.template=chatml"], True, "'chatml'"),
    ("config: no eval task", ["train", GRPO, "eval.tasks=[]"], True, "eval.tasks"),
    ("config: a zero token budget", ["train", GRPO, "eval.max_new_tokens=0"], True, "eval.max_new_tokens"),
    ("config: negative examples", ["train", str(MICRO / "sft_cold_start.yaml"), "examples.n=-3"], True, "examples.n"),
    # studies and reports: a misspelt name never becomes a verdict
    ("study: claim names no arm", ["study", "{tmp}/st_arm.yaml", "--dry-run"], False, "'r1_zeroo'"),
    ("study: claim direction", ["study", "{tmp}/st_dir.yaml", "--dry-run"], False, "'bigger'"),
    ("study: claim metric", ["study", "{tmp}/st_metric.yaml", "--dry-run"], False, "'acuracy'"),
    ("study: a seed twice", ["study", "{tmp}/st_seeds.yaml", "--dry-run"], False, "seeds"),
    ("report: unknown task", ["report", "{tmp}", "--task", "gsm9k", "--out", "{tmp}/rep"], False, "gsm9k"),
    # CLI
    ("cli: unknown flag", ["train", GRPO, "--dryrun"], False, "--dryrun"),
    ("cli: unknown command", ["trian", GRPO], False, "trian"),
    ("cli: resume a missing folder", ["train", GRPO, "--resume", "{tmp}/gone"], False, "gone"),
    ("cli: resume a missing folder, dry run", ["train", GRPO, "--resume", "{tmp}/gone", "--dry-run"], False, "gone"),
    # a dry run refuses what the run would refuse at its start
    ("dry run: a misspelt model", ["train", GRPO, "model.name=micro-studnet", "--dry-run"], False, "micro-studnet"),
    ("dry run: a split the eval task lacks", ["train", GRPO, "eval.tasks=[math500]", "eval.split=validation", "--dry-run"], False,
     "no validation split"),
    ("dry run: a missing data file", ["train", GRPO, "data.source={tmp}/missing.jsonl", "--dry-run"], False, "missing.jsonl"),
    ("study dry run: a misspelt model in an arm's overrides", ["study", "{tmp}/st_model.yaml", "--dry-run"], False, "micro-studnet"),
    ("cli: resume another recipe's run", ["train", GRPO, "--resume", "{tmp}/sft_done"], False, "finished sft run"),
    # pretraining: a shape torch would refuse only at the first step, a corpus too small for one batch, and an
    # out_dir holding other files (publishing deleted it whole, a repository's checkout included)
    ("pretrain: heads that do not divide the width", ["pretrain", str(MICRO / "student.yaml"), "out_dir={tmp}/run", "model.hidden_size=130"],
     False, "multiple of num_heads"),
    ("pretrain: KV heads that do not divide the heads", ["pretrain", str(MICRO / "student.yaml"), "out_dir={tmp}/run", "model.num_kv_heads=3"],
     False, "num_kv_heads"),
    ("pretrain: no documents", ["pretrain", str(MICRO / "student.yaml"), "out_dir={tmp}/run", "n_documents=0"], False, "n_documents"),
    ("pretrain: a corpus smaller than a batch", ["pretrain", str(MICRO / "student.yaml"), "out_dir={tmp}/run", "n_documents=3"], False,
     "raise n_documents"),
    ("pretrain: an out_dir that is no model", ["pretrain", str(MICRO / "student.yaml"), "out_dir={tmp}/sft_done"], False, "no micro model"),
]


@pytest.mark.parametrize("argv, tiny, culprit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(argv, tiny, culprit, toy_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # configs/... paths as a user types them
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad_files(tmp_path)
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{toy}", toy_model) for a in argv]
    if tiny:
        argv += [o for o in tiny_recipe_overrides(toy_model, out) if o.split("=")[0] not in {a.split("=")[0] for a in argv}]
    if "distill_onpolicy" in argv[1]:
        argv = [a.replace(f"model.name={toy_model}", "model.name=micro-student") for a in argv]
    try:
        code = cli_main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("wandb", "\x1b"))]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-2000:]
    assert culprit in lines[0], lines[0]
    assert not out.exists(), "a failed run left a folder behind"


def test_a_line_that_is_not_utf8_is_named_by_its_number(tmp_path):
    from rlsft.io import UserError, read_jsonl

    path = tmp_path / "late.jsonl"
    path.write_bytes(b'{"question": "1+1?", "answer": "2"}\n' * 700 + '{"question": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"late.jsonl:701: not UTF-8 text \(byte 0xe9\)"):
        read_jsonl(path)
