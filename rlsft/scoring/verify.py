"""Answer extraction and verification with math-verify, bounded in time and hard to game.

Rules (the same for every task that has a math answer):
- Reasoning is ignored: text inside `<think>...</think>` (or after an unclosed `<think>`) is
  removed before looking for the answer, so an answer that only appears in the reasoning earns
  nothing.
- Extraction has two modes (`EXTRACTIONS`), shared by the rewards and evaluation, so the grader
  that trains is the grader that scores (open-r1 #194, #655 are about two graders that disagree):
  - `strict` (the default): the content of the last `<answer>...</answer>`, otherwise of the last
    `\\boxed{}`; nothing else.
  - `lenient` (SimpleRL-Zoo's `extract_answer` order): the same, then the last "the answer is ...",
    then the last number. It reads a base model that does not yet write the tags. A completion
    with an `<answer>` block is read exactly as in strict mode, and a lenient answer goes through
    the same hedge checks, so it earns nothing that strict mode denies for a hedge.
- An unevaluated answer earns nothing when the gold is a plain number: "(2 * 4) - 3" for 5
  (`is_unevaluated`).
- A hedged answer earns nothing: several candidates ("18 or 19", "18, 19", "{18, 19}", "18 19",
  "\\pm 3") when the gold is a single value, or several `<answer>` blocks that disagree.
- A gold answer that cannot be parsed gives `None` (unverifiable), never a reward.
- Guards keep sympy away from inputs it could hang on in C code (power towers, huge exponents and
  factorials, very long answers), which are compared as normalised strings instead. The time
  bound is not here: the lab runs these functions in worker processes with a hard wall-time
  limit (`rlsft.scoring.pool`, through `Task.verify_many`), so no timer or signal ever runs in
  the training or evaluation process.
"""

from __future__ import annotations

import logging
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# math-verify warns once that we disable its own signal.alarm timeout (integer seconds, main
# thread only); the worker pool bounds the time instead, so the warning is noise.
logging.getLogger("math_verify").setLevel(logging.ERROR)

MAX_ANSWER_CHARS = 300  # longer answers skip sympy and are compared as normalised strings

EXTRACTIONS = ("strict", "lenient")

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*|,|\\!|\\,)(?=\d{3}(?!\d))")  # 1,000 1{,}000 11,\! 111 10\,080 (thin spaces)
_LATEX_SPACE = re.compile(r"\\[,;:! ]|\\q?quad\b")  # \, \; \: \! \quad: spacing, not punctuation
_HEDGE_WORDS = re.compile(r"\bor\b|\\lor\b|或者|或|还是|\\pm|±|\\mp|∓", re.IGNORECASE)
_SPACED_NUMBERS = re.compile(r"^\s*-?\d+(?:\.\d+)?(?:\s+-?\d+(?:\.\d+)?)+\s*$")
# Inputs that can make sympy hang inside C code, where no timer can interrupt it (a power tower is
# `has_power_tower`, which needs balanced braces, so not a regex).
_RISKY = re.compile(
    r"(\^|\*\*)\s*\{?\s*\(?\s*-?\d{4,}"  # an exponent of 4+ digits
    r"|\d{4,}\s*!|\\(?:de)?frac\{\d{200,}",  # factorial of a big number, giant fractions
    re.DOTALL,
)


_POWER = re.compile(r"\^|\*\*")
_EXPONENT_TOKEN = re.compile(r"\s*(?:[\d.]+|\\[A-Za-z]+|\w)")  # an exponent without braces: 10 in 2^10, n in 2^n


def has_power_tower(text: str) -> bool:
    """True when an exponent holds another power, the one shape whose value sympy may compute for
    ever in C code: 10^{10^{10}}, 2^2^2, and 9^{\\frac{9^{9}}{1}}, where the inner power sits
    in a nested brace (a regex without brace matching missed it, and the check was killed at the
    pool's time limit and scored None instead of False). Powers side by side are no tower: an
    equation such as x^2/16+y^2/12=1/4 goes to math-verify, which accepts it against its scaled
    form.

    >>> has_power_tower("10^{10^{10}}"), has_power_tower("2^2^2"), has_power_tower("9^{\\frac{9^{9}}{1}}")
    (True, True, True)
    >>> has_power_tower("x^2/16+y^2/12=1/4"), has_power_tower("x^{2}y^{2}"), has_power_tower("(x^2)^3")
    (False, False, False)
    """
    for power in _POWER.finditer(text):
        start = power.end()
        while start < len(text) and text[start].isspace():
            start += 1
        opener = text[start:start + 1]
        if opener in ("{", "("):  # the exponent is the balanced group, or the rest when unbalanced
            closer, depth, end = "}" if opener == "{" else ")", 0, len(text)
            for i in range(start, len(text)):
                depth += (text[i] == opener) - (text[i] == closer)
                if depth == 0:
                    end = i + 1
                    break
            if _POWER.search(text, start, end):
                return True
        else:  # one token: a tower only when another power follows it at once (2^10^10)
            token = _EXPONENT_TOKEN.match(text, start)
            end = token.end() if token else start
        if _POWER.match(text, end):  # 10^{10}^{10}: a power raised again
            return True
    return False


def strip_reasoning(completion: str) -> str:
    """Remove `<think>` blocks (and an unclosed trailing one) from a completion.

    >>> strip_reasoning("<think> 2 + 2 = 4 </think> <answer>4</answer>"), strip_reasoning("so \\\\boxed{6} </think> <answer>7</answer>")
    (' <answer>4</answer>', ' <answer>7</answer>')
    """
    completion = completion[opened_by_prompt(completion):]
    text = _THINK_BLOCK.sub("", completion)
    open_at = text.find("<think>")
    return text if open_at < 0 else text[:open_at]


def opened_by_prompt(completion: str) -> int:
    """Where the reasoning of a completion whose `<think>` was opened by its prompt ends (after
    its first `</think>`, when no `<think>` comes before it and an answer, `<answer>` or
    `\\boxed{}`, follows it: a chat template that opens the tag itself, as DeepSeek-R1-Distill's
    does); 0 otherwise (the completion opens its own, or a stray `</think>` follows its answer).

    >>> opened_by_prompt(" 6 * 2 = 12 </think> <answer>12</answer>"), opened_by_prompt("<think> x </think> 12")
    (20, 0)
    >>> opened_by_prompt("<answer>5</answer> </think>")
    0
    """
    close, open_ = completion.find("</think>"), completion.find("<think>")
    if close < 0 or 0 <= open_ < close:
        return 0
    after = completion[close + len("</think>"):]
    return close + len("</think>") if _ANSWER_BLOCK.search(after) or last_boxed(after) else 0


def reasoning_text(completion: str) -> str:
    """The reasoning of a completion: the content of its `<think>` blocks (and of an unclosed
    one); with no `<think>` tag at all, everything outside `<answer>` blocks.

    >>> reasoning_text("<think> 2 + 2 = 4 </think> <answer>4</answer>")
    ' 2 + 2 = 4 '
    >>> reasoning_text(" 2 + 2 = 4 </think> <answer>4</answer>")  # the prompt opened <think>
    ' 2 + 2 = 4 '
    """
    opened = opened_by_prompt(completion)  # reasoning the prompt's <think> opened
    head, completion = completion[:max(opened - len("</think>"), 0)], completion[opened:]
    if "<think>" not in completion:
        return head + (_ANSWER_BLOCK.sub(" ", completion) if not head else "")
    parts = re.findall(r"<think>(.*?)(?:</think>|$)", completion, re.DOTALL)
    return " ".join([head, *parts] if head else parts)


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


# "the answer is 12." / "Final answer: 12" / "答案是 12": what follows, up to the end of its sentence
_ANSWER_PHRASE = re.compile(r"(?:\banswer\s*(?:is\b\s*:?|:|=)|答案(?:是|为|:|：))\s*(.+?)(?:\.(?:\s|$)|。|\n|$)", re.IGNORECASE)
_NEGATED = re.compile(r"\banswer\s+is\s*n[o'’]t\s+|答案(?:不是|不为)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?")
# what joins the candidates of a hedge or a list: "12 or 13", "12, 13, 14", "12/13" is a fraction
_JOINER = re.compile(r"^\s*(?:,|;|\bor\b|\band\b|或者?|还是|、|\s)\s*$", re.IGNORECASE)


def last_number(text: str) -> str | None:
    """The last number of a text, with the numbers listed before it when they form a list or a
    hedge ("12 or 13", "12, 13, 14"), so that the hedge check sees every candidate.

    >>> last_number("3 + 4 = 7, so she has 7 apples.")
    '7'
    >>> last_number("It is 12 or 13."), last_number("maybe 12, 13, 14"), last_number("no digits") is None
    ('12 or 13', '12, 13, 14', True)
    """
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    start = len(matches) - 1
    while start > 0 and _JOINER.match(text[matches[start - 1].end():matches[start].start()]):
        start -= 1
    return text[matches[start].start():matches[-1].end()].strip()


def extract_answer(completion: str, mode: str = "strict") -> str | None:
    """The final answer of a completion, outside the reasoning; None when there is none.

    strict: the last `<answer>` block, else the last `\\boxed{}`. lenient: then the last "the
    answer is ...", then the last number (of the whole completion when no number lies outside an
    unclosed `<think>`: a base model that opens the tag and never closes it).

    >>> extract_answer("<think> 3 * 4 = 12 </think> <answer> 12 </answer>")
    '12'
    >>> extract_answer("We get \\\\boxed{7}.")
    '7'
    >>> extract_answer("<think> the answer is <answer>5</answer> </think>") is None
    True
    >>> extract_answer("3 * 4 = 12. The answer is 12.", "lenient"), extract_answer("3 * 4 = 12", "lenient")
    ('12', '12')
    >>> extract_answer("The answer is 12 apples.", "lenient"), extract_answer("the answer is \\\\frac{1}{2}", "lenient")
    ('12', '\\\\frac{1}{2}')
    >>> extract_answer("The answer is: 1,000.", "lenient"), extract_answer("The answer is **18**.", "lenient")
    ('1,000', '18')
    >>> extract_answer("The answer is not 18.", "lenient"), extract_answer("The answer is therefore 18.", "lenient")
    ('not 18', '18')
    >>> extract_answer("The answer isn't 18.", "lenient"), extract_answer("答案不是 18", "lenient")
    ('not 18', 'not 18')
    """
    if mode not in EXTRACTIONS:
        raise ValueError(f"unknown extraction {mode!r}; valid: {', '.join(EXTRACTIONS)}")
    visible = strip_reasoning(completion)
    blocks = _ANSWER_BLOCK.findall(visible)
    if blocks:
        return blocks[-1].strip()
    boxed = last_boxed(visible)
    if boxed is not None or mode == "strict":
        return boxed
    phrases = _ANSWER_PHRASE.findall(_NEGATED.sub("answer is not ", visible))  # "isn't 18" and "答案不是 18" fail as "not 18" does
    if phrases and phrases[-1].strip():
        phrase = phrases[-1].strip().strip("*$").strip()  # "**18**", "$18$"
        if has_words(phrase) and not _HEDGE_WORDS.search(phrase):  # the quantity before any explanation ("18 apples, since ...")
            head = re.split(r",|\(|;|\s(?:since|because|which|as|so|for|but|when|if)\s", phrase, maxsplit=1)[0].strip()
            head = re.sub(r"^(?:(?:therefore|thus|hence|so|then|simply|just|exactly|clearly|indeed|equal|equals|to)\s+)+", "", head, flags=re.I)
            return with_unit(head) or head  # "not 18", "at least 18" stay as written and fail, as in strict mode
        return phrase
    if "</think>" not in completion and not _NUMBER.search(visible):  # an unclosed <think> holds everything
        return last_number(completion.replace("<think>", " "))
    return last_number(visible)


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
    >>> is_hedged("(1, 2)", "(1,2)"), is_hedged("10\\,080", "10080"), is_hedged("\\{1, 2\\}", "1,2")
    (False, False, False)
    """
    a, g = (_LATEX_SPACE.sub(" ", _THOUSANDS.sub("", x)) for x in (answer, gold))
    if _HEDGE_WORDS.search(a) and not _HEDGE_WORDS.search(g):
        return True
    if re.search(r"[,;]", a) and not re.search(r"[,;]", g):
        return True
    if "\\{" in a and "\\{" not in g and not re.search(r"[,;]", g):  # a set where a single value is due
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


_EQUALS = re.compile(r"==|\\equiv|(?<![<>!=:\\])=(?!=)")  # an equals sign (or ==, \equiv), not <=, >=, !=, :=
_NUMERIC_LATEX = re.compile(r"\\(?:[dt]?frac|cdot|times|div|sqrt|left|right|pi|[,!;:]|\s)")


def states_false_equation(answer: str) -> bool:
    """True when an answer written as equalities has number-only sides that disagree: `2*8 = 17`
    states something false and earns nothing, whatever the gold. Sides with a variable (`x = 17`)
    are not checked.

    >>> states_false_equation("2*8 = 17"), states_false_equation("2*8 = 16"), states_false_equation("x = 17")
    (True, False, False)
    >>> states_false_equation("\\\\frac{1}{2} = 0.5"), states_false_equation("3")
    (False, False)
    """
    sides = [side.strip() for side in _EQUALS.split(answer)]
    numeric = [side for side in sides if side and not re.search(r"[A-Za-z]", _NUMERIC_LATEX.sub("", side))]
    if len(sides) < 2 or len(numeric) < 2:
        return False
    parsed = [_parse(side) for side in numeric]
    if not all(parsed):
        return False
    return not all(verify(parsed[0], p, timeout_seconds=None) for p in parsed[1:])


_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_OPERATION = re.compile(r"(?:\d|\))\s*(?:[-+*×÷·^]|\\times|\\cdot|\\div)\s*(?:\d|\(|-)")
_SIMPLE_FRACTION = re.compile(r"^-?\d+\s*/\s*\d+$")


def is_unevaluated(answer: str, gold: str) -> bool:
    """True when the gold is a plain number and the answer (its last side, for an equation) is
    still arithmetic to be done: "(2 * 4) - 3" for 5 restates the question, it does not answer it,
    although math-verify would evaluate it to 5. A simple fraction ("1/2" for 0.5) is an answer.
    Found by GRPO on SmolLM2, which learned to copy micro-arith's expression into `<answer>`.

    >>> is_unevaluated("(2 * 4) - 3", "5"), is_unevaluated("2*8 = 16", "16"), is_unevaluated("-7", "-7")
    (True, False, False)
    >>> is_unevaluated("1/2", "0.5"), is_unevaluated("3 \\\\times 4", "12"), is_unevaluated("2 + 3", "x + 5")
    (False, True, False)
    """
    if not _PLAIN_NUMBER.match(normalise(gold)):
        return False
    final = _EQUALS.split(answer)[-1].strip().strip("$").strip()
    return bool(_OPERATION.search(final)) and not _SIMPLE_FRACTION.match(final)


def gives_several_answers(completion: str) -> bool:
    """Does a completion give `<answer>` blocks that disagree (a hedge), outside its reasoning?

    >>> gives_several_answers("<answer>5</answer> <answer>6</answer>"), gives_several_answers("<answer>5</answer> <answer> 5 </answer>")
    (True, False)
    """
    return len({b.strip() for b in _ANSWER_BLOCK.findall(strip_reasoning(completion))}) > 1


# A quantity's unit words: an allowlist, since a blocklist of the words that change a quantity
# ("not", "approx", "max", "k", "x", "I guess", ...) keeps leaking. Any other plural noun counts too
# ("18 marbles"), less the plurals that scale or count other things (`_NOT_UNITS`).
_UNITS = frozenset("""dollar cent usd eur euro pound yen rupee hour hr minute min second sec day week month year meter metre
cm mm km kg mg lb oz ounce mile mph kph foot feet ft inch liter litre ml gallon degree percent per each a an""".split())
_NOT_UNITS = frozenset("""times thousands hundreds millions billions dozens pairs halves quarters thirds fourths fifths tenths
hundredths thousandths tops odds ones tens""".split())
_WITH_UNIT = re.compile(r"^(?:\\?\$)?\s*(-?\d+(?:\.\d+)?)\s+((?:\\text\s*\{[^{}]*\}|[A-Za-z]+)(?:\s+(?:\\text\s*\{[^{}]*\}|[A-Za-z]+)){0,2})$")


def is_unit(word: str) -> bool:
    """A word that names what a number counts, and leaves the number as it is.

    >>> [is_unit(w) for w in ("dollars", "marbles", "per", "day", "times", "approx", "k", "wrong", "x")]
    [True, True, True, True, False, False, False, False, False]
    """
    w = word.lower()
    singular = w[:-2] if w.endswith("es") and w[:-2] in _UNITS else w[:-1] if w.endswith("s") else w
    return w in _UNITS or singular in _UNITS or (len(w) > 3 and w.endswith("s") and w not in _NOT_UNITS)


def with_unit(answer: str) -> str | None:
    """The number of an answer that is one quantity followed by up to three unit words ("18
    dollars", "18 \\text{ marbles}", "$18 per day"); None for anything else: words before the
    number, a second number, brackets, or a word that is no unit (`is_unit`).

    >>> with_unit("18 dollars"), with_unit("18 \\\\text{ marbles}"), with_unit("$18 per day"), with_unit("1,000 eggs")
    ('18', '18', '18', '1000')
    >>> [with_unit(a) for a in ("not 18", "at least 18", "18 squared", "18 (possibly twenty)", "18 or so", "18 wrong", "18 k", "18")]
    [None, None, None, None, None, None, None, None]
    """
    m = _WITH_UNIT.match(_LATEX_SPACE.sub(" ", _THOUSANDS.sub("", answer.strip())))  # 5\,\text{cm}: LaTeX's spacing is a space
    if not m:
        return None
    words = re.findall(r"[A-Za-z]+", re.sub(r"\\text\s*", "", m.group(2)))
    return m.group(1) if words and all(is_unit(w) for w in words) else None


def tidy(answer: str) -> str:
    """An extracted answer without the markdown, closing period and `$` signs around it, and without
    thin spaces between digit groups.

    >>> tidy(" **18**. "), tidy("$18."), tidy("x = 0.5."), tidy("\\\\frac{1}{2}")
    ('18', '18', 'x = 0.5', '\\\\frac{1}{2}')
    """
    answer = answer.strip().rstrip(".").strip()
    answer = re.sub(r"^\*\*(.+)\*\*$", r"\1", answer)  # markdown around the whole answer ("2**3**2" is arithmetic)
    answer = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", answer)  # 10\,080: a thin space between digit groups (math-verify reads 90)
    return re.sub(r"^(?:\\?\$)+|(?:\\?\$)+$", "", answer.rstrip(".").strip()).strip()  # $18, 18\$


def has_words(answer: str) -> bool:
    """Does an answer hold words (two letters or more outside LaTeX commands)?

    >>> has_words("18 dollars"), has_words("18 \\\\text{ marbles}"), has_words("x = 18"), has_words("\\\\frac{1}{2}")
    (True, True, False, False)
    """
    return bool(re.search(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", "", answer)))


def same_answer(a: str, b: str) -> bool:
    """Do two extracted answers mean the same (math-verify equivalence, either read as the other's
    gold, so their order never matters)? maj@k groups by it, and a group scores its members' mean
    verdict, since members can differ (`5` is a final answer for a gold of 5, `(2*4)-3` is not).

    >>> same_answer("0.5", "\\\\frac{1}{2}"), same_answer("1/2", "0.5"), same_answer("2", "3")
    (True, True, False)
    >>> same_answer("5", "(2*4)-3"), same_answer("(2*4)-3", "5"), same_answer("18", "18 dollars"), same_answer("18 dollars", "18")
    (True, True, True, True)
    """
    return verify_answer(f"<answer>{a}</answer>", b) is True or verify_answer(f"<answer>{b}</answer>", a) is True


def verify_answer(completion: str, gold: str, mode: str = "strict") -> bool | None:
    """Is the completion's final answer (extracted in `mode`) equal to `gold`? None when `gold`
    cannot be parsed.

    >>> verify_answer("<think> 6 * 12 = 72 </think> <answer>72</answer>", "72")
    True
    >>> verify_answer("<think> ... </think> <answer>18 or 19</answer>", "19")
    False
    >>> verify_answer("<answer>0.5</answer>", "\\\\frac{1}{2}")
    True
    >>> verify_answer("<answer>3</answer>", "\\\\frac{") is None
    True
    >>> verify_answer("<answer>2*8 = 17</answer>", "17"), verify_answer("<answer>x = 17</answer>", "17")
    (False, True)
    >>> verify_answer("so she has 72 clips", "72"), verify_answer("so she has 72 clips", "72", "lenient")
    (False, True)
    >>> verify_answer("it is 71 or 72", "72", "lenient")
    False
    """
    gold = str(gold).strip()
    if not gold or len(gold) > 100_000:
        return None
    risky_gold = len(gold) > MAX_ANSWER_CHARS or bool(_RISKY.search(gold)) or has_power_tower(gold)
    gold_parsed: list = []
    if not risky_gold:
        try:
            gold_parsed = _parse(gold)
        except Exception:  # math-verify/sympy raise many kinds; a gold we cannot read is unverifiable
            return None
        if not any(not isinstance(x, str) for x in gold_parsed):  # only the raw-string fallback
            return None

    if gives_several_answers(completion):
        return False
    answer = tidy(extract_answer(completion, mode) or "")
    if not answer or is_hedged(answer, gold) or is_unevaluated(answer, gold):
        return False
    if _PLAIN_NUMBER.match(normalise(gold)) and has_words(answer):  # words around a number: a quantity with its units, or nothing
        if (quantity := with_unit(answer)) is None:  # "not 18", "18 \text{ at most}" (math-verify would drop the \text)
            return False
        answer = quantity  # "18 dollars", "$18 per day"
    if risky_gold or len(answer) > MAX_ANSWER_CHARS or _RISKY.search(answer) or has_power_tower(answer):
        return normalise(answer) == normalise(gold)
    try:
        if states_false_equation(answer):
            return False
        answer_parsed = _parse(answer)
        if not answer_parsed:
            return normalise(answer) == normalise(gold)
        return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
    except Exception:  # a sympy failure on the prediction: it earns nothing
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
