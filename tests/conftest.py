import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub
os.environ.pop("RLSFT_DATA", None)  # tests choose their data themselves
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# transformers prints "[INFO] Running in WANDB offline mode" when its integrations are first
# imported: here, once, rather than inside whichever test imports them first (a test that checks
# an error is one line would otherwise fail when run alone)
import transformers.integrations.integration_utils  # noqa: E402, F401

REPO = Path(__file__).resolve().parent.parent


SHARED_DATA = REPO.parent / "shared" / "data"  # the full GSM8K and MATH-500, where a machine has them

# Small sets in the upstream formats, written for the tests (GSM8K: a worked solution ending in
# "#### N", with calculator notes, money and thousands separators; MATH-500: problem, solution
# with \boxed{}, answer), so that a clone of the project alone runs every test.
GSM8K_ROWS = [
    {"question": "A baker makes 24 muffins and sells 3 boxes of 6. How many muffins are left?",
     "answer": "He sells 3*6=<<3*6=18>>18 muffins.\nSo 24-18=<<24-18=6>>6 are left.\n#### 6"},
    {"question": "Lena buys 4 notebooks at $2.50 each and pays with a $20 bill. How much change does she get?",
     "answer": "The notebooks cost 4*$2.50=$<<4*2.5=10>>10.\nHer change is $20-$10=$<<20-10=10>>10.\n#### 10"},
    {"question": "A town has 1,200 houses and builds 350 more. How many houses are there now?",
     "answer": "There are 1,200+350=<<1200+350=1550>>1,550 houses.\n#### 1,550"},
    {"question": "Maria earns $1,000 a month and saves 15% of it. How much does she save in a year?",
     "answer": "She saves 1000*0.15=$<<1000*0.15=150>>150 a month.\nIn a year she saves 150*12=$<<150*12=1800>>1,800.\n#### 1800"},
    {"question": "A tank holds 50 liters and loses 7.5 liters a day. How many liters are left after 4 days?",
     "answer": "It loses 7.5*4=<<7.5*4=30>>30 liters.\nSo 50-30=<<50-30=20>>20 liters are left.\n#### 20"},
    {"question": "Sam reads 15 pages a day for 12 days. How many pages does he read?",
     "answer": "Sam reads 15*12=<<15*12=180>>180 pages.\n#### 180"},
]
MATH500_ROWS = [
    {"problem": "Compute $\\frac{1}{2} + \\frac{1}{3}$.", "solution": "$\\frac{3}{6} + \\frac{2}{6} = \\boxed{\\frac{5}{6}}$.",
     "answer": "\\frac{5}{6}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/t1.json"},
    {"problem": "Solve $2x - 4 \\le 0$.", "solution": "So $x \\le 2$, that is $x \\in \\boxed{(-\\infty, 2]}$.",
     "answer": "(-\\infty, 2]", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/t2.json"},
    {"problem": "Convert $(\\sqrt{3}, 1)$ to polar coordinates.", "solution": "$r = 2$, $\\theta = \\frac{\\pi}{6}$: $\\boxed{\\left( 2, \\frac{\\pi}{6} \\right)}$.",
     "answer": "\\left( 2, \\frac{\\pi}{6} \\right)", "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/t3.json"},
    {"problem": "Who ran farther, Evelyn (5 km) or Ana (3 km)?", "solution": "$5 > 3$, so $\\boxed{\\text{Evelyn}}$.",
     "answer": "\\text{Evelyn}", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/t4.json"},
    {"problem": "Simplify $\\sqrt{12}$.", "solution": "$\\sqrt{12} = \\boxed{2\\sqrt{3}}$.", "answer": "2\\sqrt{3}",
     "subject": "Algebra", "level": 1, "unique_id": "test/algebra/t5.json"},
    {"problem": "An angle of a right triangle is $60^\\circ$. What is the other acute angle?", "solution": "$90 - 60 = \\boxed{30^\\circ}$.",
     "answer": "30^\\circ", "subject": "Geometry", "level": 1, "unique_id": "test/geometry/t6.json"},
]


@pytest.fixture(scope="session")
def upstream_data(tmp_path_factory) -> Path:
    """A folder laid out like ../shared/data (gsm8k/{train,test}.jsonl, math500/test.jsonl) with the small sets above."""
    import json

    root = tmp_path_factory.mktemp("data")
    for rel, rows in (("gsm8k/train.jsonl", GSM8K_ROWS), ("gsm8k/test.jsonl", GSM8K_ROWS), ("math500/test.jsonl", MATH500_ROWS)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def full_data() -> Path:
    """../shared/data, the full sets, for the audits marked `full_data` (never in the default run: a
    clone of the project alone runs every test it selects, on conftest's own small fixtures)."""
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.fail(f"{SHARED_DATA}: no gsm8k/test.jsonl; the full_data audits read the full sets there")
    return SHARED_DATA


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


def tiny_prerequisite(model: str, tmp_path: Path) -> str:
    """A one-step SFT config with its own run folder (tmp_path/pre): a study's prerequisite in tests."""
    import yaml

    pre = yaml.safe_load((REPO / "configs" / "micro" / "sft_cold_start.yaml").read_text())
    pre.update(run={"name": "pre", "out_dir": str(tmp_path / "pre"), "report_to": "none"}, model={"name": model})
    pre["training"].update(max_steps=1)
    pre["eval"].update(n=2, samples=1, max_new_tokens=8, tasks=["micro-arith"])
    pre["examples"].update(n=8)
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre))
    return str(tmp_path / "pre.yaml")


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def chat_toy_model(toy_model, tmp_path_factory) -> str:
    """The toy model with a ChatML chat template, like an instruct model (SmolLM2's form)."""
    import shutil

    from rlsft.models import load_tokenizer

    out = tmp_path_factory.mktemp("chat") / "chat-toy-model"
    shutil.copytree(toy_model, out)
    tok = load_tokenizer(str(out))
    tok.chat_template = CHATML
    tok.save_pretrained(str(out))
    return str(out)
