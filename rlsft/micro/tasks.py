"""The micro world's tasks, added to the task registry (`rlsft.scoring.tasks.TASKS`) when `rlsft`
is imported. Problems are generated (seeded, split by a hash of the question), so a
`source` JSONL of saved problems is optional.
"""

from __future__ import annotations

from rlsft.io import UserError, read_jsonl
from rlsft.micro.world import clean_solution, generate_problems, question_zh
from rlsft.scoring.countdown import verify_countdown
from rlsft.scoring.tasks import TASKS, Task, _take
from rlsft.scoring.verify import verify_answer


def _loader(task: str):
    def load(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
        if source:  # a saved set of micro problems
            return _take(read_jsonl(source, required=("question", "answer")), n, source)
        return generate_problems(task, split, n or 500, seed)

    load.__name__ = f"load_{task.replace('-', '_')}"
    return load


def clean_solutions(problems: list[dict], language: str = "en") -> list[str]:
    """Error-free solutions in one language (the cold-start SFT data of SFT-then-RL)."""
    return [clean_solution(p, language)["completion"] for p in problems]


def translate(row: dict, language: str) -> str:
    """A generated problem's question in `language` (en or zh), for multilingual RL prompts."""
    if language == "en":
        return row["question"]
    if language != "zh" or "steps" not in row:
        raise UserError(f"cannot write problem {row.get('id')!r} in {language!r}: micro problems translate to zh, and only as generated (not from a source file)")
    return question_zh(row)


TASKS["micro-arith"] = Task("micro-arith", _loader("micro-arith"), verify_answer, clean_solutions, translate=translate,
                            description="micro world: 2-3 step arithmetic (ArithConfig), expressions and word problems")
TASKS["micro-countdown"] = Task("micro-countdown", _loader("micro-countdown"), verify_countdown, clean_solutions, translate=translate,
                                description="micro world: reach a target from given numbers")
