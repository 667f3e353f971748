"""The micro world: a seeded, bilingual synthetic math world that runs offline on a CPU.

Two task shapes, both with English prompts in the R1-Zero template:
- `micro-arith`: a left-to-right chain of operations (2-3 by default, `ArithConfig`), shown as a bracketed expression
  (`((3 + 5) * 2) - 4`) or as an English word problem; the gold answer is an integer.
- `micro-countdown`: reach a target from given numbers with + - * (each number at most once);
  the verifier checks the expression, so many answers are right.

Splits are structural (`split_of`): a problem's split is a hash of its step chain (micro-arith:
the operations, so an expression and every word problem over the same chain share a split;
micro-countdown: its numbers and target, which its question spells out), never the draw order.
RL prompts and SFT data (train) never share a step chain with the validation or test problems.
Validation and test problems also never appear word for word in the pretraining corpus, which
draws only from questions whose own hash is outside the held-out region (`in_pretraining_region`);
how many held-out step chains the corpus shows in other words is measured by `corpus_overlap`.

The pretraining corpus pairs problems from the pretraining region with worked solutions in the template. The
reasoning is in English, in Chinese, or code-switched mid-solution, as in web data. Each step
can be wrong with a per-language probability (the error propagates, so the final answer is
wrong too). These are the knobs of `CorpusConfig`; the model card records them.

One module, over 300 lines on purpose: the problem generator, the worked solutions and the
countdown checker share one problem format and are read together.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from rlsft.io import UserError
from rlsft.scoring.countdown import check_countdown, parse_countdown_gold  # noqa: F401 (the micro world's callers read them here)

OPERATIONS = ("+", "-", "*")
LANGUAGES = ("en", "zh", "mixed")


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class ArithConfig:
    """Difficulty of `micro-arith`: steps per problem, operand range, operations."""

    min_steps: int = 2
    max_steps: int = 3
    max_operand: int = 9  # operands are drawn from 1..max_operand
    operations: tuple[str, ...] = OPERATIONS
    word_share: float = 0.5  # share of problems written as English word problems
    allow_negative: bool = False  # intermediate results may go below zero

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps <= 8:
            raise ValueError(f"arith: need 1 <= min_steps <= max_steps <= 8, got {self.min_steps}..{self.max_steps}")
        if self.max_operand < 2:
            raise ValueError(f"arith: max_operand must be >= 2, got {self.max_operand}")
        _check_operations(self.operations, "arith")
        if not 0.0 <= self.word_share <= 1.0:
            raise ValueError(f"arith: word_share must be in [0, 1], got {self.word_share}")


@dataclass(frozen=True)
class CountdownConfig:
    """Difficulty of `micro-countdown`: how many numbers, their range, operations."""

    n_numbers: int = 3
    max_operand: int = 12  # numbers are drawn from 1..max_operand (3 numbers <= 12: ~860 test problems)
    operations: tuple[str, ...] = OPERATIONS

    def __post_init__(self):
        if not 2 <= self.n_numbers <= 6:
            raise ValueError(f"countdown: n_numbers must be in 2..6, got {self.n_numbers}")
        if self.max_operand < 2:
            raise ValueError(f"countdown: max_operand must be >= 2, got {self.max_operand}")
        _check_operations(self.operations, "countdown")


@dataclass(frozen=True)
class CorpusConfig:
    """Language knobs of the pretraining corpus.

    - `language_shares`: share of solutions reasoned in English, Chinese, or code-switched.
    - `error_rate`: per-step probability that a step written in that language is wrong.
    - `switch_rate`: in a code-switched solution, probability of switching language at each step.
    """

    language_shares: dict[str, float] = field(default_factory=lambda: {"en": 0.6, "zh": 0.25, "mixed": 0.15})
    error_rate: dict[str, float] = field(default_factory=lambda: {"en": 0.10, "zh": 0.05})
    switch_rate: float = 0.3

    def __post_init__(self):
        bad = set(self.language_shares) - set(LANGUAGES)
        if bad:
            raise ValueError(f"corpus: unknown language(s) {sorted(bad)} in language_shares; valid: {', '.join(LANGUAGES)}")
        if any(v < 0 for v in self.language_shares.values()) or abs(sum(self.language_shares.values()) - 1.0) > 1e-6:
            raise ValueError(f"corpus: language_shares must be >= 0 and sum to 1, got {self.language_shares}")
        if set(self.error_rate) != {"en", "zh"} or not all(0.0 <= v <= 1.0 for v in self.error_rate.values()):
            raise ValueError(f"corpus: error_rate needs en and zh in [0, 1], got {self.error_rate}")
        if not 0.0 <= self.switch_rate <= 1.0:
            raise ValueError(f"corpus: switch_rate must be in [0, 1], got {self.switch_rate}")


def _check_operations(ops: tuple[str, ...], where: str) -> None:
    if not ops or any(op not in OPERATIONS for op in ops):
        raise ValueError(f"{where}: operations must be a non-empty subset of {list(OPERATIONS)}, got {list(ops)}")


def _apply(left: int, op: str, right: int) -> int:
    return left + right if op == "+" else left - right if op == "-" else left * right


# --------------------------------------------------------------------------- problems

_NAMES = ("Ann", "Ben", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Max")
_ITEMS = ("apples", "coins", "books", "stamps", "marbles", "cards", "shells", "pens")
_WORD_STEP = {
    "+": "{name} gets {r} more {item}.",
    "-": "{name} gives away {r} {item}.",
    "*": "The number of {item} {name} has is multiplied by {r}.",
}


def make_arith_problem(rng: random.Random, cfg: ArithConfig = ArithConfig()) -> dict:
    """One `micro-arith` problem: {question, answer, steps=[(left, op, right, result), ...]}.

    >>> p = make_arith_problem(random.Random(0), ArithConfig(min_steps=2, max_steps=2, word_share=0.0))
    >>> p["question"], p["answer"]
    ('Compute (7 + 5) * 8.', '96')
    """
    n_steps = rng.randint(cfg.min_steps, cfg.max_steps)
    value = rng.randint(1, cfg.max_operand)
    steps = []
    for _ in range(n_steps):
        for _try in range(100):  # redraw a step that would go negative
            op, right = rng.choice(cfg.operations), rng.randint(1, cfg.max_operand)
            result = _apply(value, op, right)
            if cfg.allow_negative or result >= 0:
                break
        else:
            op, right, result = "+", right, value + right
        steps.append((value, op, right, result))
        value = result
    if rng.random() < cfg.word_share:
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        parts = [f"{name} has {steps[0][0]} {item}."]
        parts += [_WORD_STEP[op].format(name=name, item=item, r=r) for _, op, r, _ in steps]
        parts.append(f"How many {item} does {name} have now?")
        question = " ".join(parts)
        return {"question": question, "answer": str(value), "steps": steps, "words": [name, item]}
    else:
        expr = str(steps[0][0])
        for i, (_, op, r, _) in enumerate(steps):
            expr = f"{expr} {op} {r}" if i == 0 else f"({expr}) {op} {r}"
        question = f"Compute {expr}."
    return {"question": question, "answer": str(value), "steps": steps}


def make_countdown_problem(rng: random.Random, cfg: CountdownConfig = CountdownConfig()) -> dict:
    """One `micro-countdown` problem: reach `target` from `numbers`, each used at most once.

    The target is built from a left-to-right chain over all the numbers, so it is reachable.

    >>> p = make_countdown_problem(random.Random(1))
    >>> p["answer"], check_countdown(p["solution"], p["numbers"], p["target"])
    ('target: 5; numbers: 2 3 10', True)
    """
    for _try in range(1000):
        numbers = [rng.randint(1, cfg.max_operand) for _ in range(cfg.n_numbers)]
        order = rng.sample(numbers, len(numbers))
        value, steps, expr = order[0], [], str(order[0])
        for i, right in enumerate(order[1:]):
            op = rng.choice(cfg.operations)
            result = _apply(value, op, right)
            steps.append((value, op, right, result))
            expr = f"{expr} {op} {right}" if i == 0 else f"({expr}) {op} {right}"
            value = result
        if value > 0 and all(s[3] >= 0 for s in steps) and value not in numbers:
            break
    else:  # no chain of these settings reaches a new positive target (e.g. small numbers and "-" alone)
        raise UserError(f"countdown: no valid problem in 1,000 draws with n_numbers={cfg.n_numbers}, max_operand={cfg.max_operand}, "
                        f"operations={list(cfg.operations)}")
    shown = sorted(numbers)
    nums = " ".join(map(str, shown))
    return {  # the operations as configured ("+ - *" by default, the text every shipped problem has)
        "question": f"Using the numbers {nums}, each at most once, with {' '.join(cfg.operations)} and brackets, make {value}.",
        "answer": f"target: {value}; numbers: {nums}",
        "numbers": shown,
        "target": value,
        "steps": steps,
        "solution": expr,
    }


_ITEMS_ZH = {"apples": "苹果", "coins": "硬币", "books": "书", "stamps": "邮票", "marbles": "弹珠", "cards": "卡片", "shells": "贝壳", "pens": "笔"}
_WORD_STEP_ZH = {"+": "{name}又得到{r}个{item}。", "-": "{name}送出{r}个{item}。", "*": "{name}的{item}数量乘以{r}。"}


def question_zh(problem: dict) -> str:
    """The problem's question written in Chinese (the prompts of the multilingual-prompt arm).

    >>> question_zh(make_arith_problem(random.Random(0), ArithConfig(min_steps=2, max_steps=2, word_share=0.0)))
    '计算 (7 + 5) * 8。'
    >>> question_zh({"steps": [(3, "+", 2, 5)], "words": ["Mia", "pens"]})
    'Mia有3个笔。Mia又得到2个笔。Mia现在有多少个笔？'
    >>> question_zh(make_countdown_problem(random.Random(1)))
    '用数字 2 3 10（每个最多用一次）和 + - * 以及括号，得到 5。'
    """
    if "target" in problem:
        return f"用数字 {' '.join(map(str, problem['numbers']))}（每个最多用一次）和 + - * 以及括号，得到 {problem['target']}。"
    steps = problem["steps"]
    if "words" in problem:
        name, item = problem["words"][0], _ITEMS_ZH[problem["words"][1]]
        parts = [f"{name}有{steps[0][0]}个{item}。"] + [_WORD_STEP_ZH[op].format(name=name, item=item, r=r) for _, op, r, _ in steps]
        return "".join(parts + [f"{name}现在有多少个{item}？"])
    expr = str(steps[0][0])
    for i, (_, op, r, _) in enumerate(steps):
        expr = f"{expr} {op} {r}" if i == 0 else f"({expr}) {op} {r}"
    return f"计算 {expr}。"


MAKERS = {"micro-arith": (make_arith_problem, ArithConfig), "micro-countdown": (make_countdown_problem, CountdownConfig)}


SPLITS = ("train", "validation", "test")
HELD_OUT = {"test": (0.0, 0.14), "validation": (0.14, 0.20)}  # bands of the step-chain hash; train: [0.20, 1)


def _unit(text: str) -> float:
    """A stable hash of `text` in [0, 1) (the same on every run and machine)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def in_pretraining_region(question: str) -> bool:
    """Whether a question may appear in the pretraining corpus: the hash of its wording is at or
    above 0.2 (the rule the shipped micro models were pretrained under; held-out problems are
    drawn from below it).

    >>> in_pretraining_region("Compute 3 + 4."), in_pretraining_region("Compute 3 + 5.")
    (False, True)
    """
    return _unit(question) >= HELD_OUT["validation"][1]


def step_chain(problem: dict) -> str:
    """A problem's structure, the key of its split: micro-arith's chain of (left, op, right) steps,
    shared by the expression and every word problem over it; micro-countdown's question, which
    is its numbers and target (many chains reach one target, and any of them is an answer).

    >>> step_chain({"question": "Compute (7 + 5) * 8.", "steps": [(7, "+", 5, 12), (12, "*", 8, 96)]})
    'chain 7 + 5 * 8'
    """
    if "target" in problem:
        return problem["question"]
    first, *_ = problem["steps"]
    return "chain " + " ".join([str(first[0])] + [f"{op} {right}" for _, op, right, _ in problem["steps"]])


def split_of(problem: dict) -> str | None:
    """'train', 'validation' or 'test' from the hash of the problem's step chain; None for a
    held-out chain whose wording lies in the pretraining region (used by no split).

    >>> split_of(make_arith_problem(random.Random(0), ArithConfig(min_steps=2, max_steps=2, word_share=0.0)))
    'train'
    >>> rows = generate_problems("micro-arith", "test", 2, seed=0)
    >>> [split_of(r) for r in rows], [in_pretraining_region(r["question"]) for r in rows]
    (['test', 'test'], [False, False])
    """
    h = _unit(step_chain(problem))
    if h >= HELD_OUT["validation"][1]:
        return "train"
    if in_pretraining_region(problem["question"]):
        return None
    return "test" if h < HELD_OUT["test"][1] else "validation"


MAX_MISSES = 50_000  # draws in a row without a new problem before a split counts as exhausted (a few seconds)


def generate_problems(task: str, split: str, n: int, seed: int = 0, arith: ArithConfig | None = None,
                      countdown: CountdownConfig | None = None) -> list[dict]:
    """`n` distinct problems of `task` from `split`, reproducible from `seed`.

    Rows: {id, question, answer, task, steps, ...}. Raises UserError when the world (at this
    difficulty) has fewer than `n` distinct problems in the split, ValueError for an unknown task
    or split (a caller's mistake: the lab checks both before).

    >>> rows = generate_problems("micro-arith", "validation", 3, seed=0)
    >>> [split_of(r) for r in rows]
    ['validation', 'validation', 'validation']
    """
    if task not in MAKERS:
        raise ValueError(f"unknown micro task {task!r}; valid: {', '.join(MAKERS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    make, default_cfg = MAKERS[task]
    cfg = (arith if task == "micro-arith" else countdown) or default_cfg()
    rng = random.Random(f"{task}/{split}/{seed}")
    rows, seen = [], set()
    misses = 0  # draws since the last new problem: a held-out split takes about 1 draw in 80 (its band of the hash)
    while len(rows) < n:
        p = make(rng, cfg)
        if p["question"] in seen or split_of(p) != split:
            misses += 1
            if misses > MAX_MISSES:
                raise UserError(f"{task}: no new {split} problem in {MAX_MISSES:,} draws after {len(rows)}; "
                                f"the split holds fewer distinct problems than the {n} asked for (n)")
            continue
        misses = 0
        seen.add(p["question"])
        rows.append({"id": f"{task}-{split}-{len(rows)}", "task": task, **p})
    return rows


# --------------------------------------------------------------------------- worked solutions

_OP_ZH = {"+": "加", "-": "减", "*": "乘以"}


def _step_text(left: int, op: str, right: int, result: int, language: str, first: bool) -> str:
    if language == "zh":
        return f"{'先' if first else '再'}算 {left} {_OP_ZH[op]} {right} 等于 {result}。"
    return f"{'First' if first else 'Then'}, {left} {op} {right} = {result}."


def _conclusion(answer: str, language: str) -> str:
    return f"所以答案是 {answer}。" if language == "zh" else f"So the answer is {answer}."


def _step_languages(n: int, rng: random.Random, language: str, switch_rate: float) -> list[str]:
    """Language of each step and of the conclusion (n + 1 entries)."""
    if language != "mixed":
        return [language] * (n + 1)
    current = rng.choice(("en", "zh"))
    out = [current]
    for _ in range(n):
        if rng.random() < switch_rate:
            current = "zh" if current == "en" else "en"
        out.append(current)
    if len(set(out)) == 1:  # a code-switched solution switches at least once
        out[-1] = "zh" if current == "en" else "en"
    return out


def _solve(problem: dict, rng: random.Random, langs: list[str], error_rate: dict[str, float]) -> tuple[list[str], str]:
    """Replay the problem's steps, each wrong with its language's error rate; return (texts, answer)."""
    texts = []
    is_countdown = "target" in problem
    value = problem["steps"][0][0]
    expr = str(value)
    for i, (_, op, right, _) in enumerate(problem["steps"]):
        lang = langs[i]
        if is_countdown and rng.random() < error_rate[lang]:  # a wrong choice of operation
            op = rng.choice([o for o in OPERATIONS if o != op])
        result = _apply(value, op, right)
        if not is_countdown and rng.random() < error_rate[lang]:  # a slip in the arithmetic
            result += rng.choice((-2, -1, 1, 2))
        texts.append(_step_text(value, op, right, result, lang, first=i == 0))
        expr = f"{expr} {op} {right}" if i == 0 else f"({expr}) {op} {right}"
        value = result
    return texts, expr if is_countdown else str(value)


def worked_solution(problem: dict, rng: random.Random, corpus: CorpusConfig = CorpusConfig()) -> dict:
    """A corpus solution in the template: {completion, answer, language, correct}.

    >>> p = make_arith_problem(random.Random(0), ArithConfig(min_steps=2, max_steps=2, word_share=0.0))
    >>> worked_solution(p, random.Random(0), CorpusConfig(language_shares={"zh": 1.0}, error_rate={"en": 0, "zh": 0}))["completion"]
    '<think> 先算 7 加 5 等于 12。 再算 12 乘以 8 等于 96。 所以答案是 96。 </think> <answer>96</answer>'
    """
    languages, weights = zip(*corpus.language_shares.items())
    language = rng.choices(languages, weights)[0]
    langs = _step_languages(len(problem["steps"]), rng, language, corpus.switch_rate)
    texts, answer = _solve(problem, rng, langs, corpus.error_rate)
    if "target" in problem:
        correct = check_countdown(answer, problem["numbers"], problem["target"])
    else:
        correct = answer == problem["answer"]
    texts.append(_conclusion(answer, langs[-1]))
    completion = f"<think> {' '.join(texts)} </think> <answer>{answer}</answer>"
    return {"completion": completion, "answer": answer, "language": language, "correct": correct}


def clean_solution(problem: dict, language: str = "en") -> dict:
    """An error-free, single-language solution (the cold-start SFT data of SFT-then-RL).

    >>> clean_solution(make_countdown_problem(random.Random(1)))["completion"]
    '<think> First, 10 - 3 = 7. Then, 7 - 2 = 5. So the answer is (10 - 3) - 2. </think> <answer>(10 - 3) - 2</answer>'
    """
    langs = [language] * (len(problem["steps"]) + 1)
    texts, answer = _solve(problem, random.Random(0), langs, {"en": 0.0, "zh": 0.0})
    texts.append(_conclusion(answer, language))
    return {"completion": f"<think> {' '.join(texts)} </think> <answer>{answer}</answer>", "answer": answer,
            "language": language, "correct": True}


def corpus_rows(n: int, seed: int = 0, corpus: CorpusConfig = CorpusConfig(), arith: ArithConfig = ArithConfig(),
                countdown: CountdownConfig = CountdownConfig(), countdown_share: float = 0.3) -> list[dict]:
    """`n` pretraining documents over problems of the pretraining region (`in_pretraining_region`):
    {task, question, answer, chain, completion, language, correct}.

    >>> rows = corpus_rows(50, seed=0)
    >>> all(in_pretraining_region(r["question"]) for r in rows), {r["task"] for r in rows} == {"micro-arith", "micro-countdown"}
    (True, True)
    """
    if not 0.0 <= countdown_share <= 1.0:
        raise ValueError(f"countdown_share must be in [0, 1], got {countdown_share}")
    rng = random.Random(f"corpus/{seed}")
    rows = []
    while len(rows) < n:
        if rng.random() < countdown_share:
            task, p = "micro-countdown", make_countdown_problem(rng, countdown)
        else:
            task, p = "micro-arith", make_arith_problem(rng, arith)
        if not in_pretraining_region(p["question"]):
            continue
        sol = worked_solution(p, rng, corpus)
        rows.append({"task": task, "question": p["question"], "answer": p["answer"], "chain": step_chain(p), "completion": sol["completion"],
                     "language": sol["language"], "correct": sol["correct"]})
    return rows


def corpus_overlap(corpus: list[dict], problems: list[dict]) -> dict:
    """How much of a problem set the pretraining corpus shows: the share of problems whose exact
    question is a corpus document, and the share whose step chain is (in any wording).

    >>> rows = generate_problems("micro-arith", "test", 2, seed=0)
    >>> corpus_overlap([{"question": "x", "chain": step_chain(rows[0])}], rows)
    {'problems': 2, 'question_share': 0.0, 'chain_share': 0.5}
    """
    questions, chains = {r["question"] for r in corpus}, {r["chain"] for r in corpus}
    n = len(problems)
    return {"problems": n, "question_share": sum(p["question"] in questions for p in problems) / n,
            "chain_share": sum(step_chain(p) in chains for p in problems) / n}
