"""Every real (Qwen2.5) config runs its own code path on CPU with the micro model swapped in.

The hub is out of reach here, so the models become the toy micro model (student) and the shipped
micro-student (teacher), and $RLSFT_DATA points at a folder laid out like ../shared/data whose
GSM8K and MATH-500 files hold micro-arith problems in the upstream formats. Everything else, the
recipe, the task loaders and verifiers, the trainer settings (gradient checkpointing, loss type,
KL, evaluation on both tasks), comes from the real YAML.
"""

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from rlsft.io import to_jsonl
from rlsft.launch import load_recipe_config, pipeline_stages
from rlsft.micro.world import generate_problems

REAL = sorted(p for d in ("qwen2.5-0.5b", "qwen2.5-1.5b") for p in (REPO / "configs" / d).glob("*.yaml"))
RECIPE_CONFIGS = [p for p in REAL if yaml.safe_load(p.read_text())["recipe"] != "pipeline"]
PIPELINES = [p for p in REAL if yaml.safe_load(p.read_text())["recipe"] == "pipeline"]


@pytest.fixture(scope="module")
def upstream_shaped_data(tmp_path_factory) -> Path:
    """GSM8K (`question`, `answer` ending '#### N') and MATH-500 (`problem`, `answer`) files of micro problems."""
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "test"):
        rows = [{"question": p["question"], "answer": f"Work it out step by step.\n#### {p['answer']}"}
                for p in generate_problems("micro-arith", split, 32, seed=0)]
        (root / "gsm8k").mkdir(exist_ok=True)
        (root / "gsm8k" / f"{split}.jsonl").write_text(to_jsonl(rows))
    math = [{"problem": p["question"], "answer": p["answer"], "solution": f"\\boxed{{{p['answer']}}}"}
            for p in generate_problems("micro-arith", "test", 16, seed=1)]
    (root / "math500").mkdir()
    (root / "math500" / "test.jsonl").write_text(to_jsonl(math))
    return root


def tiny(recipe: str, model: str, out: Path) -> list[str]:
    """Shrink a real config to seconds; the code path stays the config's own."""
    common = [
        f"model.name={model}", "model.dtype=float32", f"run.out_dir={out}", "run.report_to=none",
        "training.max_steps=2", "training.logging_steps=1", "training.per_device_train_batch_size=8", "training.gradient_accumulation_steps=1",
        "data.n_train=16", "eval.n=4", "eval.samples=2", "eval.max_new_tokens=24", "eval.batch_size=8",
    ]
    return common + {
        "grpo": ["grpo.num_generations=4", "grpo.max_completion_length=24", "probe.prompts=2",
                 "probe.force=true"],
        "sft": ["examples.n=16", "sft.max_length=256"],
        # micro-student solves micro-arith, so rejection sampling keeps traces
        "distill": ["distill.teacher=micro-student", "distill.samples_per_prompt=2", "distill.max_new_tokens=48",
                    "sft.max_length=256", "distillation.max_completion_length=48", "distill.generation_batch_size=16",
                    "distill.cache_dir=null"],
    }[recipe]


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_real_config_code_path_with_micro_model(path, toy_model, upstream_shaped_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RLSFT_DATA", str(upstream_shaped_data))
    recipe = yaml.safe_load(path.read_text())["recipe"]
    overrides = tiny(recipe, toy_model, tmp_path / "run")
    if recipe == "distill" and "on_policy" in path.read_text():
        overrides = [o.replace(f"model.name={toy_model}", "model.name=micro-student") for o in overrides]  # one vocabulary
    module, cfg = load_recipe_config(str(path), overrides)
    record = module.main(cfg)
    assert record["compute"]["flops"] > 0
    real_eval_tasks = yaml.safe_load(path.read_text())["eval"]["tasks"]
    assert set(record["eval_after"]) == set(real_eval_tasks)  # gsm8k and math500 as the config asks
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["task"] == "gsm8k"
    if recipe == "distill" and cfg.distill.mode == "offline":
        assert record["teacher_traces"]["kept"] > 0


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_real_pipelines_resolve_their_stages(path):
    pipe, stages = pipeline_stages(str(path))
    (first, _, sft_cfg, sft_out), (_, _, grpo_cfg, _) = stages
    assert sft_cfg.recipe == "sft" and grpo_cfg.recipe == "grpo"
    assert grpo_cfg.model.name == str(sft_out.model_dir)  # stage 2 starts from stage 1's output
    if path.stem == "r1":
        assert grpo_cfg.rewards.get("language", 0) > 0  # R1 adds the language-consistency reward
    else:
        assert sft_cfg.examples.n is None  # hybrid: the whole SFT set


def test_lora_trains_and_saves_a_merged_model(toy_model, tmp_path):
    pytest.importorskip("peft")
    from rlsft.models import load_model

    path = REPO / "configs" / "micro" / "sft_cold_start.yaml"
    overrides = tiny("sft", toy_model, tmp_path / "lora") + ["model.lora_r=4", "eval.tasks=[micro-arith]"]
    module, cfg = load_recipe_config(str(path), [o for o in overrides if not o.startswith("model.dtype")])
    module.main(cfg)
    saved = tmp_path / "lora" / "model"
    assert not (saved / "adapter_config.json").exists()  # merged: a plain model the next stage can load
    base, tuned = load_model(toy_model), load_model(str(saved))
    changed = [n for (n, a), (_, b) in zip(base.named_parameters(), tuned.named_parameters()) if not (a == b).all()]
    assert changed and all("proj" in n for n in changed)  # LoRA touched the linear layers only
    # its compute: no weight gradients for the frozen weights, so 4N + 6T FLOPs a trained token (the adapters' own forward, backward and weight gradients), not 6N
    c = json.loads((tmp_path / "lora" / "run.json").read_text())["compute"]
    n, t = c["parameters"], c["trainable_parameters"]
    assert 0 < t < n / 10 and c["flops"] == (4 * n + 6 * t) * c["train_tokens"] > 0


def stage_configs():
    """(id, module, typed config) of every real recipe config and every stage of a real pipeline."""
    out = [(f"{p.parent.name}/{p.stem}", *load_recipe_config(str(p))) for p in RECIPE_CONFIGS]
    for p in PIPELINES:
        out += [(f"{p.parent.name}/{p.stem}:{name}", module, cfg) for name, module, cfg, _ in pipeline_stages(str(p))[1]]
    return out


@pytest.mark.parametrize("name,module,cfg", stage_configs(), ids=lambda x: x if isinstance(x, str) else "")
def test_real_configs_keep_their_step_and_split_it_into_micro_batches_that_fit_24_gb(name, module, cfg):
    """The sizing docs/recipes.md states: checkpointing on, GRPO 128 completions a step in micro-batches
    of 8 (0.5B) or 4 (1.5B), SFT and distillation 16 examples a step in 4s (2s for the 1.5B
    distillation configs, whose sequences are longer or share the card with a teacher)."""
    args = module.training_args(cfg)
    assert args.gradient_checkpointing, name
    assert cfg.model.dtype == "float32", name  # bf16 weights lose AdamW's small updates (stalled_update_share); autocast computes in bf16
    step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    big = "1.5b" in name
    if cfg.recipe == "grpo":
        assert step == 128 and args.per_device_train_batch_size == (4 if big else 8), name
    else:
        assert step == 16 and args.per_device_train_batch_size == (2 if big and cfg.recipe == "distill" else 4), name
