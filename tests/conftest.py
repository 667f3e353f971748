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
