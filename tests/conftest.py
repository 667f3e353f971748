import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $RLSFT_DATA): GSM8K and MATH-500 in upstream formats; skip when absent."""
    root = Path(os.environ.get("RLSFT_DATA", REPO.parent / "shared" / "data"))
    if not (root / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"shared data not found at {root}")
    return root


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory) -> str:
    """A toy micro model (about 60k parameters, ~10 s to build) for running recipes in tests.
    Built by the lab's own pretraining code, so it has the real tokenizer and card."""
    from rlsft.micro.pretrain import ModelShape, PretrainConfig, main

    out = tmp_path_factory.mktemp("toy") / "toy-model"
    cfg = PretrainConfig(
        name="toy", out_dir=str(out), n_documents=600, vocab_size=512, eval_n=0, max_steps=30, batch_size=8,
        model=ModelShape(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=256),
    )
    return str(main(cfg))


def tiny_recipe_overrides(model: str, out: Path) -> list[str]:
    """Overrides that shrink any micro recipe config to seconds on a CPU."""
    return [
        f"model.name={model}", f"run.out_dir={out}", "run.report_to=none", "training.max_steps=2", "training.logging_steps=1",
        "data.n_train=16", "eval.n=4", "eval.samples=2", "eval.max_new_tokens=24", "eval.tasks=[micro-arith]",
    ]
