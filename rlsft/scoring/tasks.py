"""Tasks: each keeps together its data source, its prompt template and its verifier.

A task row is `{"id": str, "question": str, "answer": str}` (the gold answer as a string).
`TASKS` is a plain dict; `get_task(name)` fails with the list of valid names.

Data sources, in order: an explicit `source` (a local JSONL path or a hub dataset id), then
`$RLSFT_DATA/<task dir>/<split>.jsonl` when the environment variable points at a folder laid out
like ../shared/data, then the hub id. Hub loading fails with one clear line when offline.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rlsft.io import HubUnreachable, UserError, read_jsonl
from rlsft.scoring.countdown import verify_countdown_exact
from rlsft.scoring.pool import check_many
from rlsft.scoring.verify import EXTRACTIONS, last_boxed, verify_answer

# DeepSeek-R1-Zero's template (DeepSeek-R1 paper, Table 1), with the question in place of `prompt`.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. User: {question} Assistant:"
)
# The chat variant: the same instruction as a system prompt, the question as the user turn.
R1_SYSTEM_PROMPT = (
    "The user asks a question, and you solve it. First think about the reasoning process, then give "
    "the answer. Enclose the reasoning in <think> </think> and the answer in <answer> </answer>, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>."
)
TEMPLATES = ("auto", "r1-zero", "chat")  # auto: chat when the model's tokenizer has a chat template
# `data.think_prefill`: the prompt already opens the reasoning (understand-r1-zero, open-instruct),
# and generation stops once the answer is closed.
THINK_PREFILL, ANSWER_STOP = "<think>", "</answer>"


def resolve_template(template: str, tokenizer) -> str:
    """`auto` becomes `chat` for a model whose tokenizer has a chat template (an instruct model),
    `r1-zero` otherwise; `r1-zero` and `chat` stay as they are.

    >>> class Plain: chat_template = None
    >>> resolve_template("auto", Plain()), resolve_template("chat", Plain())
    ('r1-zero', 'chat')
    """
    if template not in TEMPLATES:
        raise UserError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    if template != "auto":
        return template
    return "chat" if getattr(tokenizer, "chat_template", None) else "r1-zero"


def build_prompt(question: str, template: str = "r1-zero", system_prompt: str | None = None) -> str | list[dict]:
    """The prompt for a question: a plain string (`r1-zero`) or chat messages (`chat`, the R1
    instruction as the system prompt; the chat template then opens the assistant's turn, so the
    completion itself starts with `<think>`).

    >>> build_prompt("What is 2 + 3?").endswith("User: What is 2 + 3? Assistant:")
    True
    >>> [m["role"] for m in build_prompt("What is 2 + 3?", "chat")]
    ['system', 'user']
    """
    if template == "r1-zero":
        return R1_ZERO_TEMPLATE.format(question=question)
    if template == "chat":
        return [
            {"role": "system", "content": system_prompt or R1_SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
    raise UserError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")


def render_prompt(prompt: str | list[dict], tokenizer, prefill: str = "") -> str:
    """The text a model is given: a plain prompt as it is, chat messages through the tokenizer's
    chat template (transformers' sandboxed Jinja) with the assistant turn opened; then `prefill`
    (a plain prompt gets a space before it).

    >>> render_prompt("User: 2 + 3? Assistant:", None, THINK_PREFILL)
    'User: 2 + 3? Assistant: <think>'
    """
    if isinstance(prompt, str):
        return prompt + (" " + prefill if prefill else "")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) + prefill


# --------------------------------------------------------------------------- data loading


def _load_source(source: str, split: str, hub_config: str | None) -> list[dict]:
    """Rows from a local JSONL path or a hub dataset id (raw upstream fields)."""
    path = Path(source).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists() or source.startswith((".", "/", "~")):
        if path.is_dir():
            path = path / f"{split}.jsonl"
        return read_jsonl(path)
    try:
        import datasets

        ds = datasets.load_dataset(source, hub_config, split=split)
    except Exception as e:  # offline, unknown id, no such split: one line, naming the source
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(e).lower() or "connect" in str(e).lower()
        hint = " (HF_HUB_OFFLINE is set or the hub is unreachable, and it is not cached; pass a local JSONL instead)" if offline else ""
        error = HubUnreachable if offline else UserError
        raise error(f"cannot load dataset {source!r} split {split!r}{hint}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return [dict(r) for r in ds]


def _resolve_source(source: str | None, data_dir: str, split: str, hub_id: str) -> str:
    if source:
        return source
    root = os.environ.get("RLSFT_DATA")
    if root and (Path(root) / data_dir / f"{split}.jsonl").is_file():
        return str(Path(root) / data_dir / f"{split}.jsonl")
    return hub_id


def gsm8k_gold(solution: str) -> str:
    """Final answer of a GSM8K worked solution: the text after `####`, commas removed.

    >>> gsm8k_gold("Natalia sold 48/2 = 24 clips ... 48+24 = 72\\n#### 72")
    '72'
    """
    if "####" not in solution:
        raise ValueError("no '#### N' line")
    return solution.split("####")[-1].strip().replace(",", "")


SPLITS = ("train", "validation", "test")
VALIDATION_SHARE = 0.07  # of an upstream train split held out for validation, by a hash of the question (GSM8K: 542 of 7,473, counted on the upstream file)


def whole(x) -> bool:
    """A whole number as an upstream file writes one (an int, or a string of digits).

    >>> whole(12), whole("12"), whole("abc"), whole(1.5), whole(None), whole(True)
    (True, True, False, False, False, False)
    """
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, str) and x.strip().lstrip("-").isdigit())


def number_like(x) -> bool:
    """A number as an upstream file writes one (int, float or a numeric string).

    >>> number_like(4), number_like("4.5"), number_like("four"), number_like(None)
    (True, True, False, False)
    """
    if isinstance(x, bool) or x is None:
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def in_validation(question: str, share: float = VALIDATION_SHARE) -> bool:
    """Whether an upstream train row belongs to the validation split: a stable hash of its question
    (the same on every machine, independent of file order).

    >>> in_validation("What is 2 + 3?"), in_validation("What is 3 + 9?")
    (False, True)
    """

    return int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") / 2**64 < share


def _check_split(split: str, task: str) -> None:
    if split not in SPLITS:
        raise UserError(f"{task}: unknown split {split!r}; valid: {', '.join(SPLITS)}")


def load_gsm8k(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
    """GSM8K rows; `validation` is a hashed share of the upstream train split, and `train` the rest."""
    _check_split(split, "gsm8k")
    upstream = "test" if split == "test" else "train"
    src = _resolve_source(source, "gsm8k", upstream, "openai/gsm8k")
    rows = []
    for i, r in enumerate(_load_source(src, upstream, "main")):
        if not isinstance(r.get("question"), str) or "answer" not in r:
            raise UserError(f"{src}: record {i + 1} lacks a text 'question' or an 'answer' (GSM8K upstream format)")
        try:
            gold = gsm8k_gold(str(r["answer"]))
        except ValueError:
            raise UserError(f"{src}: record {i + 1}: answer does not end in '#### N'") from None
        if not gold:
            raise UserError(f"{src}: record {i + 1}: nothing follows '####' in its answer")
        if upstream == "train" and in_validation(r["question"]) != (split == "validation"):
            continue
        rows.append({"id": f"gsm8k-{upstream}-{i}", "question": r["question"], "answer": gold, "solution": r["answer"]})
    return _take(rows, n, f"{src} ({split})")


def load_math500(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
    """MATH-500 is a test set only: choosing settings on it would read the test split."""
    _check_split(split, "math500")
    if split == "validation":
        raise UserError("math500 is a test set only and has no validation split; choose settings on gsm8k's (eval.split=validation)")
    src = _resolve_source(source, "math500", split, "HuggingFaceH4/MATH-500")
    rows = []
    for i, r in enumerate(_load_source(src, split, None)):
        question = r.get("problem", r.get("question"))
        gold = r.get("answer") or (last_boxed(str(r["solution"])) if r.get("solution") else None)
        if question is None or not gold:
            raise UserError(f"{src}: record {i + 1} needs 'problem'/'question' and 'answer' or a 'solution' with \\boxed{{}}")
        rows.append({"id": r.get("unique_id", f"math500-{split}-{i}"), "question": question, "answer": str(gold)})
    return _take(rows, n, src)


def load_aime24(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
    """AIME 2024's 30 problems (HuggingFaceH4/aime_2024, upstream split `train`): a test set only."""
    _check_split(split, "aime24")
    if split != "test":
        raise UserError(f"aime24 is a test set only (30 problems) and has no {split} split")
    src = _resolve_source(source, "aime_2024", "train", "HuggingFaceH4/aime_2024")
    rows = []
    for i, r in enumerate(_load_source(src, "train", None)):
        if not r.get("problem") or r.get("answer") in (None, ""):
            raise UserError(f"{src}: record {i + 1} needs 'problem' and 'answer' (the HuggingFaceH4/aime_2024 format)")
        rows.append({"id": f"aime24-{r.get('id', i)}", "question": r["problem"], "answer": str(r["answer"]).strip()})
    return _take(rows, n, src)


# TinyZero's Countdown split of the upstream rows (its examples/data_preprocess/countdown.py): train
# from the first 327,680, test the next 1,024.
COUNTDOWN_TRAIN_ROWS, COUNTDOWN_TEST_ROWS = 327_680, 1_024


def countdown_question(target: int, numbers: list[int]) -> str:
    """TinyZero's Countdown instruction (its answer-format sentence is the lab's template's job).

    >>> countdown_question(24, [3, 8, 1])
    'Using the numbers [3, 8, 1], create an equation that equals 24. You can use basic arithmetic operations (+, -, *, /) and each number can only be used once.'
    """
    return (f"Using the numbers {list(numbers)}, create an equation that equals {target}. "
            "You can use basic arithmetic operations (+, -, *, /) and each number can only be used once.")


def countdown_split(i: int, n_rows: int, question: str) -> str:
    """The split of upstream row `i` of `n_rows`: TinyZero's test range, or train less a hashed
    validation share; a smaller copy than the upstream (a local sample) keeps its last eighth for test.

    >>> countdown_split(327_680, 490_364, "q"), countdown_split(15, 16, "q"), countdown_split(0, 16, "What is 2 + 3?")
    ('test', 'test', 'train')
    """
    test = (COUNTDOWN_TRAIN_ROWS <= i < COUNTDOWN_TRAIN_ROWS + COUNTDOWN_TEST_ROWS if n_rows >= COUNTDOWN_TRAIN_ROWS + COUNTDOWN_TEST_ROWS
            else i >= n_rows - max(1, n_rows // 8))
    return "test" if test else "validation" if in_validation(question) else "train"


def load_countdown(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
    """TinyZero's Countdown (Jiayi-Pan/Countdown-Tasks-3to4: `target`, `nums`, 3 or 4 numbers), checked
    with every number used exactly once; splits by `countdown_split`."""
    _check_split(split, "countdown")
    src = _resolve_source(source, "countdown", "train", "Jiayi-Pan/Countdown-Tasks-3to4")
    upstream = _load_source(src, "train", None)
    rows = []
    for i, r in enumerate(upstream):
        if not (whole(r.get("target")) and isinstance(r.get("nums"), list) and r["nums"] and all(whole(x) for x in r["nums"])):
            raise UserError(f"{src}: record {i + 1} needs a whole-number 'target' and a non-empty list of whole numbers 'nums' "
                            "(the Jiayi-Pan/Countdown-Tasks-3to4 format)")
        question = countdown_question(int(r["target"]), [int(x) for x in r["nums"]])
        if countdown_split(i, len(upstream), question) == split:
            rows.append({"id": f"countdown-{i}", "question": question,
                         "answer": f"target: {int(r['target'])}; numbers: {' '.join(str(int(x)) for x in r['nums'])}"})
    return _take(rows, n, f"{src} ({split})")


MGSM_LANGUAGES = ("en", "zh", "ja", "de", "fr", "es", "ru", "th", "sw", "bn", "te")  # all eleven of MGSM's languages


def mgsm_loader(language: str):
    """A loader of MGSM's 250 test problems in `language` (juletxara/mgsm, config = language)."""

    def load(split: str = "test", source: str | None = None, n: int | None = None, seed: int = 0) -> list[dict]:
        _check_split(split, f"mgsm-{language}")
        if split != "test":
            raise UserError(f"mgsm-{language} is a test set only (250 problems) and has no {split} split")
        src = _resolve_source(source, f"mgsm/{language}", "test", "juletxara/mgsm")
        rows = []
        for i, r in enumerate(_load_source(src, "test", language)):
            if not isinstance(r.get("question"), str) or not r["question"] or not number_like(r.get("answer_number")):
                raise UserError(f"{src}: record {i + 1} needs a text 'question' and a numeric 'answer_number' (the juletxara/mgsm format)")
            number = float(r["answer_number"])
            rows.append({"id": f"mgsm-{language}-{i}", "question": r["question"], "answer": str(int(number)) if number.is_integer() else str(number)})
        return _take(rows, n, src)

    load.__name__ = f"load_mgsm_{language}"
    return load


def _take(rows: list[dict], n: int | None, src: str) -> list[dict]:
    if not rows:
        raise UserError(f"{src}: the dataset is empty")
    return rows if n is None else rows[:n]


# --------------------------------------------------------------------------- registry


def gsm8k_solution_as_template(solution: str) -> str:
    """An upstream GSM8K solution rewritten in the R1-Zero template.

    >>> gsm8k_solution_as_template("He has 3+4=<<3+4=7>>7 apples.\\n#### 7")
    '<think> He has 3+4=7 apples. </think> <answer>7</answer>'
    """
    reasoning, _, answer = solution.rpartition("####")
    reasoning = re.sub(r"<<[^>]*>>", "", reasoning)  # calculator annotations
    return f"<think> {' '.join(reasoning.split())} </think> <answer>{answer.strip().replace(',', '')}</answer>"


def gsm8k_clean_solutions(problems: list[dict], language: str = "en") -> list[str]:
    """GSM8K's own worked solutions as SFT completions (English only)."""
    if language != "en":
        raise UserError(f"gsm8k's clean solutions are in English, not {language!r}")
    return [gsm8k_solution_as_template(p["solution"]) for p in problems]


@dataclass(frozen=True)
class Task:
    """A task keeps together its data, its verifier, its clean solutions for SFT and its size."""

    name: str
    load: Callable[..., list[dict]]  # (split, source, n, seed) -> rows {"id", "question", "answer"}
    verify: Callable[..., bool | None]  # (completion, gold[, mode]) -> correct; None = unverifiable gold; mode: an EXTRACTIONS name
    clean_solutions: Callable[[list[dict], str], list[str]] | None = None  # (train rows, language) -> SFT completions
    train_size: int | None = None  # train-split size, for epoch-based estimates (None: generated or unknown)
    language: str = "en"  # language the reasoning is meant to be in
    eval_split: str = "test"
    train_split: str = "train"
    validation_split: str | None = "validation"  # where sweeps and settings chosen from runs read (None: none)
    description: str = ""
    translate: Callable[[dict, str], str] | None = None  # (row, language) -> its question in that language

    def verify_many(self, completions: Sequence[str], golds: Sequence[str], mode: str = "strict") -> list[bool | None]:
        """`verify` over a batch, in worker processes with a hard time limit per check
        (`rlsft.scoring.pool`): what every scorer, reward and filter of the lab calls. `mode` is
        the answer extraction (`verify.EXTRACTIONS`); a verifier that takes two arguments is
        called without it (its own extraction, whatever the mode). `verify` must be a module-level
        function: the workers receive it by pickling, so a lambda is refused in one line rather
        than failing every check (each a None, unverifiable)."""
        if mode not in EXTRACTIONS:
            raise UserError(f"unknown extraction {mode!r}; valid: {', '.join(EXTRACTIONS)}")
        try:
            pickle.dumps(self.verify)
        except Exception:
            raise UserError(f"task {self.name}: its verify ({self.verify!r}) must be a module-level function, "
                            f"which the answer-check workers can receive") from None
        extra = (mode,) if mode != "strict" and takes_third_argument(self.verify) else ()
        return check_many(self.verify, [(c, str(g), *extra) for c, g in zip(completions, golds)])


def takes_third_argument(verify: Callable) -> bool:
    """Whether `verify` can be called with a third positional argument (the extraction mode).

    >>> takes_third_argument(verify_answer), takes_third_argument(lambda c, g: True), takes_third_argument(lambda c, g, **kw: True)
    (True, False, False)
    """
    try:
        params = inspect.signature(verify).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: called without it
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


# The registry of tasks. The micro world adds its own (rlsft/micro/tasks.py); so can any module.
TASKS: dict[str, Task] = {
    "gsm8k": Task("gsm8k", load_gsm8k, verify_answer, gsm8k_clean_solutions, train_size=6931,  # 7,473 less the 542 held out for validation
                  description="grade-school math word problems (openai/gsm8k)"),
    "math500": Task("math500", load_math500, verify_answer, train_split="test", validation_split=None,
                    description="500 MATH competition problems (HuggingFaceH4/MATH-500), test only"),
    "aime24": Task("aime24", load_aime24, verify_answer, train_split="test", validation_split=None,
                   description="AIME 2024's 30 problems (HuggingFaceH4/aime_2024), test only"),
    "countdown": Task("countdown", load_countdown, verify_countdown_exact,
                      description="TinyZero's Countdown: reach a target with 3-4 numbers, each once (Jiayi-Pan/Countdown-Tasks-3to4)"),
    **{f"mgsm-{lang}": Task(f"mgsm-{lang}", mgsm_loader(lang), verify_answer, train_split="test", validation_split=None, language=lang,
                            description=f"MGSM's 250 grade-school problems in {lang} (juletxara/mgsm), test only; mixing is read against {lang}")
       for lang in MGSM_LANGUAGES},
}


def get_task(name: str) -> Task:
    """The registered task `name`.

    >>> get_task("gsm8k").name
    'gsm8k'
    >>> get_task("gsm9k")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: unknown task 'gsm9k'; valid: gsm8k, math500, aime24, countdown, ...
    """
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


