"""Answer extraction and verification with math-verify, bounded in time and hard to game.

Rules (the same for every task that has a math answer):
- Reasoning is ignored: text inside `<think>...</think>` (or after an unclosed `<think>`) is
  removed before looking for the answer, so an answer that only appears in the reasoning earns
  nothing.
- The answer is the content of the last `<answer>...</answer>`, otherwise of the last `\\boxed{}`.
- A hedged answer earns nothing: several candidates ("18 or 19", "18, 19", "{18, 19}", "18 19",
  "\\pm 3") when the gold is a single value, or several `<answer>` blocks that disagree.
- A gold answer that cannot be parsed gives `None` (unverifiable), never a reward.
- One verification is bounded: a wall-clock timer (0.7 s, main thread) around math-verify, plus
  guards that keep sympy away from inputs it could hang on in C code (power towers, huge
  exponents and factorials, very long answers), which are compared as normalised strings instead.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from contextlib import contextmanager

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# math-verify warns once that we disable its own signal.alarm timeout (integer seconds only);
# we run our own sub-second timer instead, so the warning is noise.
logging.getLogger("math_verify").setLevel(logging.ERROR)

MAX_ANSWER_CHARS = 300  # longer answers skip sympy and are compared as normalised strings
TIME_LIMIT_S = 0.7  # wall-clock budget of one verification: the contract is < 1 s, and 0.3 s is left for the untimed parts on a loaded machine

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\}|\\!)(?=\d{3}(?!\d))")
_HEDGE_WORDS = re.compile(r"\bor\b|\\lor\b|或者|或|还是|\\pm|±|\\mp|∓", re.IGNORECASE)
_SPACED_NUMBERS = re.compile(r"^\s*-?\d+(?:\.\d+)?(?:\s+-?\d+(?:\.\d+)?)+\s*$")
# Inputs that can make sympy hang inside C code, where no timer can interrupt it.
_RISKY = re.compile(
    r"(\^|\*\*).*(\^|\*\*)"  # two or more powers: a tower such as 10^{10^{10}}
    r"|(\^|\*\*)\s*\{?\s*\(?\s*-?\d{4,}"  # an exponent of 4+ digits
    r"|\d{4,}\s*!|\\(?:de)?frac\{\d{200,}",  # factorial of a big number, giant fractions
    re.DOTALL,
)


class _Timeout(BaseException):
    """A BaseException, so that the `except Exception` inside parsers (latex2sympy, math-verify)
    cannot swallow it and parse on past the deadline."""


@contextmanager
def _time_limit(seconds: float):
    """Raise _Timeout after `seconds` of wall time; a no-op outside the main thread (signals
    only reach it there), where the _RISKY guards alone bound the work."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.02)  # and again every 20 ms until the block ends
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def strip_reasoning(completion: str) -> str:
    """Remove `<think>` blocks (and an unclosed trailing one) from a completion.

    >>> strip_reasoning("<think> 2 + 2 = 4 </think> <answer>4</answer>")
    ' <answer>4</answer>'
    """
    text = _THINK_BLOCK.sub("", completion)
    open_at = text.find("<think>")
    return text if open_at < 0 else text[:open_at]


def reasoning_text(completion: str) -> str:
    """The reasoning of a completion: the content of its `<think>` blocks (and of an unclosed
    one); with no `<think>` tag at all, everything outside `<answer>` blocks.

    >>> reasoning_text("<think> 2 + 2 = 4 </think> <answer>4</answer>")
    ' 2 + 2 = 4 '
    """
    if "<think>" not in completion:
        return _ANSWER_BLOCK.sub(" ", completion)
    parts = re.findall(r"<think>(.*?)(?:</think>|$)", completion, re.DOTALL)
    return " ".join(parts)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` with balanced braces, or None.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and done")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{12") is None
    True
    """
    start = text.rfind("\\boxed")
    while start >= 0:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: last `<answer>` block outside the reasoning, else last
    `\\boxed{}` outside it; None when there is neither.

    >>> extract_answer("<think> 3 * 4 = 12 </think> <answer> 12 </answer>")
    '12'
    >>> extract_answer("We get \\\\boxed{7}.")
    '7'
    >>> extract_answer("<think> the answer is <answer>5</answer> </think>") is None
    True
    """
    visible = strip_reasoning(completion)
    blocks = _ANSWER_BLOCK.findall(visible)
    if blocks:
        return blocks[-1].strip()
    return last_boxed(visible)


def normalise(answer: str) -> str:
    """Canonical string form used for the string fallback: no spaces, `$`, `\\boxed`, thousands
    separators or trailing period.

    >>> normalise(" $1{,}000$. ")
    '1000'
    """
    s = answer.strip().rstrip(".").strip().strip("$").strip()
    inner = last_boxed(s)
    if inner is not None and s.startswith("\\boxed"):
        s = inner
    s = _THOUSANDS.sub("", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s


def is_hedged(answer: str, gold: str) -> bool:
    """True when `answer` offers several candidates while `gold` is a single value.

    >>> is_hedged("18 or 19", "19"), is_hedged("18, 19", "19"), is_hedged("1,000", "1000")
    (True, True, False)
    >>> is_hedged("(1, 2)", "(1,2)")
    False
    """
    a, g = _THOUSANDS.sub("", answer), _THOUSANDS.sub("", gold)
    if _HEDGE_WORDS.search(a) and not _HEDGE_WORDS.search(g):
        return True
    if re.search(r"[,;]", a) and not re.search(r"[,;]", g):
        return True
    if "\\{" in a and "\\{" not in g:
        return True
    return bool(_SPACED_NUMBERS.match(a)) and not _SPACED_NUMBERS.match(g)


def _parse(text: str) -> list:
    """math-verify parse of a bare answer: as a boxed LaTeX answer first, then as plain text."""
    parsed = parse(
        "\\boxed{" + text + "}",
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
        parsing_timeout=None,
    )
    if not parsed:
        parsed = parse(text, extraction_config=[ExprExtractionConfig(), LatexExtractionConfig()], parsing_timeout=None)
    return parsed


def verify_answer(completion: str, gold: str) -> bool | None:
    """Is the completion's final answer equal to `gold`? None when `gold` cannot be parsed.

    >>> verify_answer("<think> 6 * 12 = 72 </think> <answer>72</answer>", "72")
    True
    >>> verify_answer("<think> ... </think> <answer>18 or 19</answer>", "19")
    False
    >>> verify_answer("<answer>0.5</answer>", "\\\\frac{1}{2}")
    True
    >>> verify_answer("<answer>3</answer>", "\\\\frac{") is None
    True
    """
    gold = str(gold).strip()
    if not gold or len(gold) > 100_000:
        return None
    risky_gold = len(gold) > MAX_ANSWER_CHARS or bool(_RISKY.search(gold))
    gold_parsed: list = []
    if not risky_gold:
        try:
            with _time_limit(TIME_LIMIT_S / 2):
                gold_parsed = _parse(gold)
        except (Exception, _Timeout):  # math-verify/sympy raise many kinds; a gold we cannot read is unverifiable
            return None
        if not any(not isinstance(x, str) for x in gold_parsed):  # only the raw-string fallback
            return None

    visible = strip_reasoning(completion)
    blocks = [b.strip() for b in _ANSWER_BLOCK.findall(visible)]
    if len(set(blocks)) > 1:  # several disagreeing answers: a hedge
        return False
    answer = extract_answer(completion)
    if not answer or is_hedged(answer, gold):
        return False
    if risky_gold or len(answer) > MAX_ANSWER_CHARS or _RISKY.search(answer):
        return normalise(answer) == normalise(gold)
    try:
        with _time_limit(TIME_LIMIT_S / 2):
            answer_parsed = _parse(answer)
            if not answer_parsed:
                return normalise(answer) == normalise(gold)
            return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
    except (Exception, _Timeout):  # a timeout or a sympy failure on the prediction: it earns nothing
        return False


_FORMAT = re.compile(r"\s*<think>(.+?)</think>\s*<answer>(.+?)</answer>\s*", re.DOTALL)


def format_ok(completion: str) -> bool:
    """Strict R1-Zero format: `<think>…</think>` then `<answer>…</answer>`, each exactly once,
    both non-empty, nothing before or after.

    >>> format_ok("<think> 2 + 2 = 4 </think> <answer>4</answer>")
    True
    >>> format_ok("<think> x </think> <answer>4</answer> extra")
    False
    """
    if any(completion.count(tag) != 1 for tag in ("<think>", "</think>", "<answer>", "</answer>")):
        return False
    m = _FORMAT.fullmatch(completion)
    return bool(m and m.group(1).strip() and m.group(2).strip())
